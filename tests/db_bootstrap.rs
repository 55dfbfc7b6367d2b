//! The db role from empty disks: the initial primary runs initdb and sets
//! up replication, the standbys clone it, and a second start of every node
//! changes nothing (same cluster, same timeline, no new initdb or clone).
//! Real PostgreSQL 15 from Debian, three db nodes on loopback.

mod common;

use std::time::Duration;

use common::db_rig::DbRig;
use common::node::wait_until;

const LIMIT: Duration = Duration::from_secs(120);

#[test]
fn three_db_nodes_bootstrap_from_empty_and_a_second_start_changes_nothing() {
    let mut rig = DbRig::new(70, "");
    rig.start_all();
    let primary = rig.wait_role(0, "primary", LIMIT);
    let s2 = rig.wait_role(1, "standby", LIMIT);
    let s3 = rig.wait_role(2, "standby", LIMIT);
    let id = primary["system_id"].as_u64().expect("system id");
    assert_ne!(id, 0);
    for s in [&s2, &s3] {
        assert_eq!(s["system_id"].as_u64(), Some(id), "one cluster: {s}");
    }
    assert_eq!(primary["timeline"], 1);
    for i in [1, 2] {
        wait_until(LIMIT, || {
            let d = rig.db(i)?;
            if d["upstream"] == "pi-1" {
                Ok(())
            } else {
                Err(format!("upstream {}", d["upstream"]))
            }
        })
        .unwrap_or_else(|e| panic!("standby {i} does not follow pi-1: {e}"));
    }
    // pi-4 has no db role.
    assert!(rig.db(3).is_err());
    // Backups are off in this rig (DbRig's default): asking for one says so.
    let auth = format!("Bearer {}", common::node::TOKEN);
    let (code, body) = common::node::http(
        rig.cluster.nodes[0].admin,
        "POST",
        "/api/v1/db/backup",
        &[("Authorization", &auth)],
    )
    .expect("POST /api/v1/db/backup");
    assert_eq!(code, 409, "{body}");
    assert!(body.contains("backups are off"), "{body}");
    // The primary streams to both standbys.
    wait_until(LIMIT, || {
        let d = rig.db(0)?;
        let names: Vec<String> = d["replicas"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter(|r| r["state"] == "streaming")
                    .map(|r| r["name"].as_str().unwrap_or("").to_owned())
                    .collect()
            })
            .unwrap_or_default();
        if names == ["pi-2", "pi-3"] {
            Ok(())
        } else {
            Err(format!("streaming: {names:?}"))
        }
    })
    .expect("both standbys stream");

    // The app user and database exist (made by the db role from the
    // cluster file); a write through the pooler reaches the standbys.
    wait_until(LIMIT, || rig.try_psql(rig.pooler(0), "SELECT 1")).expect("pooler answers");
    rig.psql(
        rig.pooler(0),
        "CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t SELECT generate_series(1, 100)",
    );
    for i in [1, 2] {
        wait_until(LIMIT, || {
            let n = rig.try_psql(rig.server(i), "SELECT count(*) FROM t")?;
            if n == "100" { Ok(()) } else { Err(n) }
        })
        .unwrap_or_else(|e| panic!("standby {i} did not replay: {e}"));
        let refused = rig
            .try_psql(rig.server(i), "INSERT INTO t VALUES (1000)")
            .expect_err("a standby refuses writes");
        assert!(refused.contains("read-only"), "{refused}");
    }

    // Second start: graceful stop of every node, then start again.
    let logged: Vec<usize> = (0..4).map(|i| rig.cluster.log(i).len()).collect();
    for i in 0..4 {
        rig.cluster.signal(i, "TERM");
    }
    for i in 0..4 {
        assert!(
            rig.cluster.wait_exit(i, Duration::from_secs(30)).is_some(),
            "node {i} stops"
        );
    }
    rig.start_all();
    let again = rig.wait_role(0, "primary", LIMIT);
    for i in [1, 2] {
        let s = rig.wait_role(i, "standby", LIMIT);
        assert_eq!(s["system_id"].as_u64(), Some(id));
        // A standby may come up before the primary does and start
        // read-only; it follows the primary once that reports running.
        wait_until(LIMIT, || {
            let d = rig.db(i)?;
            if d["upstream"] == "pi-1" {
                Ok(())
            } else {
                Err(format!("upstream {}", d["upstream"]))
            }
        })
        .unwrap_or_else(|e| panic!("standby {i} does not follow pi-1: {e}"));
    }
    assert_eq!(again["system_id"].as_u64(), Some(id), "the same cluster");
    assert_eq!(again["timeline"], 1, "no promotion happened");
    assert_eq!(rig.psql(rig.server(0), "SELECT count(*) FROM t"), "100");
    for (i, before) in logged.iter().enumerate().take(3) {
        let second_life = &rig.cluster.log(i)[*before..];
        for step in [
            "created the database cluster",
            "copied the database",
            "rewound",
        ] {
            assert!(
                !second_life.contains(step),
                "node {i} did `{step}` on its second start:\n{second_life}"
            );
        }
    }
}
