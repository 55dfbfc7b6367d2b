//! The PostgreSQL test harness itself (tests/common/pg.rs): a primary and two
//! streaming standbys come up, replicate, refuse writes on the standbys, log
//! in over TCP with SCRAM, and a standby can be promoted and followed.

mod common;

use common::pg::{PgCluster, SERVICE_PASSWORD, SERVICE_USER};
use std::time::Instant;

#[test]
fn primary_two_standbys_replicate_and_promote() {
    let t = Instant::now();
    let pg = PgCluster::start(2);
    eprintln!("PgCluster::start(2) took {:?}", t.elapsed());
    let primary = pg.primary();
    let [s1, s2] = pg.standbys() else {
        panic!("two standbys")
    };

    assert_eq!(primary.psql("SELECT pg_is_in_recovery()"), "f");
    assert_eq!(
        primary.psql("SELECT application_name, state FROM pg_stat_replication ORDER BY 1"),
        "standby1|streaming\nstandby2|streaming"
    );
    assert_eq!(
        primary.psql("SELECT slot_name, active FROM pg_replication_slots ORDER BY 1"),
        "slot_standby1|t\nslot_standby2|t"
    );
    for s in [s1, s2] {
        assert!(s.is_in_recovery(), "{} is a standby", s.name);
        assert_ne!(s.port, primary.port);
    }

    // Application user: a SCRAM verifier, a login over TCP, its own database.
    let verifier = pg.create_user("app", "app secret 'quoted'");
    assert!(verifier.starts_with("SCRAM-SHA-256$4096:"), "{verifier}");
    pg.create_database("appdb", "app");
    primary
        .try_psql_tcp(
            "app",
            "app secret 'quoted'",
            "appdb",
            "CREATE TABLE t (id int PRIMARY KEY, v text);\n\
             INSERT INTO t SELECT g, 'row ' || g FROM generate_series(1, 100) g;",
        )
        .expect("app logs in over TCP and writes");
    let wrong = primary
        .try_psql_tcp("app", "wrong", "appdb", "SELECT 1")
        .expect_err("a wrong password is refused");
    assert!(wrong.contains("password authentication failed"), "{wrong}");
    assert!(pg.service_verifier().starts_with("SCRAM-SHA-256$"));
    assert_eq!(
        primary
            .try_psql_tcp(
                SERVICE_USER,
                SERVICE_PASSWORD,
                "postgres",
                "SELECT rolsuper FROM pg_roles WHERE rolname = current_user"
            )
            .expect("service login"),
        "t"
    );

    // Replication: both standbys see the rows, over TCP too; writes refused.
    let t = Instant::now();
    pg.wait_replayed();
    eprintln!("wait_replayed took {:?}", t.elapsed());
    for s in [s1, s2] {
        assert_eq!(
            s.psql_in("appdb", "SELECT count(*), max(id) FROM t"),
            "100|100"
        );
        assert_eq!(
            s.try_psql_tcp(
                "app",
                "app secret 'quoted'",
                "appdb",
                "SELECT v FROM t WHERE id = 42"
            )
            .expect("read on a standby over TCP"),
            "row 42"
        );
        let err = s
            .try_psql_in("appdb", "INSERT INTO t VALUES (1000, 'x')")
            .expect_err("a standby refuses writes");
        assert!(err.contains("read-only transaction"), "{err}");
    }

    // Failover: the primary dies; the standby that got furthest is promoted,
    // the other follows it.
    primary.stop_immediate();
    assert!(!primary.is_running());
    let received = |s: &common::pg::PgServer| s.psql("SELECT pg_last_wal_receive_lsn()");
    let ahead = s1.psql(&format!(
        "SELECT '{}'::pg_lsn >= '{}'::pg_lsn",
        received(s1),
        received(s2)
    ));
    let (new_primary, other) = if ahead == "t" { (s1, s2) } else { (s2, s1) };
    new_primary.promote();
    assert!(
        !new_primary.is_in_recovery(),
        "{} promoted",
        new_primary.name
    );
    assert!(other.is_in_recovery());
    new_primary.psql_in("appdb", "INSERT INTO t VALUES (101, 'after failover')");

    other.follow(new_primary);
    new_primary.wait_streaming(std::slice::from_ref(other));
    other.wait_replay(&new_primary.lsn());
    assert_eq!(
        other.psql_in("appdb", "SELECT v FROM t WHERE id = 101"),
        "after failover"
    );
}

#[test]
fn clusters_run_side_by_side_and_on_given_addresses() {
    let ips: Vec<std::net::IpAddr> = (21..=22)
        .map(|i| format!("127.66.1.{i}").parse().unwrap())
        .collect();
    let a = PgCluster::builder()
        .standbys(1)
        .addrs(&ips)
        .port(5433)
        .start();
    let b = PgCluster::start(0);
    assert_eq!(a.primary().socket_addr().to_string(), "127.66.1.21:5433");
    assert_eq!(
        a.standbys()[0].socket_addr().to_string(),
        "127.66.1.22:5433"
    );
    assert!(b.standbys().is_empty());
    a.primary().psql("CREATE TABLE only_in_a (x int)");
    a.wait_replayed();
    assert_eq!(a.standbys()[0].psql("SELECT count(*) FROM only_in_a"), "0");
    assert!(b.primary().try_psql("SELECT * FROM only_in_a").is_err());
    let dir = a.dir().to_owned();
    drop(a);
    assert!(!dir.exists(), "dropping the cluster removes its files");
}
