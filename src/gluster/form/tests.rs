//! Formation steps over the shipped cluster file and real captures.

use std::path::Path;

use super::*;
use crate::config::parse;
use crate::gluster::xml;

const SHIPPED: &str = include_str!("../../../pi-configs/cluster.toml");

fn shipped_layout() -> Layout {
    let config = parse(SHIPPED, Path::new("pi-configs/cluster.toml")).expect("shipped file");
    Layout::from_config(&config).expect("layout")
}

fn alive(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

fn peer(hostname: &str, connected: bool) -> Peer {
    Peer {
        uuid: format!("uuid-{hostname}"),
        hostname: hostname.into(),
        connected,
        state: Some("Peer in Cluster".into()),
        is_self: false,
    }
}

fn me() -> Peer {
    Peer {
        uuid: "me".into(),
        hostname: "localhost".into(),
        connected: true,
        state: None,
        is_self: true,
    }
}

/// The volume `create_args` would make, as `volume info` reports it.
fn created(layout: &Layout, state: RunState) -> VolumeInfo {
    VolumeInfo {
        name: layout.volume.clone(),
        id: "id".into(),
        state,
        kind: "Distributed-Replicate".into(),
        replica_count: layout.replica,
        arbiter_count: 0,
        disperse_count: 0,
        redundancy_count: 0,
        bricks: layout
            .bricks
            .iter()
            .map(|b| crate::gluster::model::BrickRef {
                host: b.address.to_string(),
                path: b.path.display().to_string(),
                host_uuid: None,
                arbiter: false,
            })
            .collect(),
        options: Default::default(),
    }
}

#[test]
fn the_four_pi_default_is_replica_two_by_two_from_pi_1() {
    let l = shipped_layout();
    assert_eq!(
        (l.volume.as_str(), l.replica, l.bricks.len()),
        ("piha", 2, 4)
    );
    assert_eq!(l.former(), Some("pi-1"));
    assert_eq!(
        l.create_args().join(" "),
        "volume create piha replica 2 192.0.2.11:/srv/piha/brick 192.0.2.12:/srv/piha/brick \
         192.0.2.13:/srv/piha/brick 192.0.2.14:/srv/piha/brick force"
    );
}

#[test]
fn layouts_that_cannot_be_formed_say_why() {
    let three = SHIPPED.replace(
        "roles = [\"web\", \"storage\"]\n\n#",
        "roles = [\"web\"]\n\n#",
    );
    let config = parse(&three, Path::new("t.toml")).expect("three storage nodes");
    let l = Layout::from_config(&config).expect("three nodes make replica 3");
    assert_eq!(l.replica, 3);
    // An arbiter on pairs: `piha check` refuses it, with the layout's words.
    let arbiter = SHIPPED.replace("\n[storage]\n", "\n[storage]\narbiter = true\n");
    let err = match parse(&arbiter, Path::new("t.toml")) {
        Ok(_) => panic!("an arbiter with replica 2 was accepted"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("replica = 3"), "{err}");
}

#[test]
fn peers_are_probed_once_up_and_waited_for_otherwise() {
    let l = shipped_layout();
    let up = alive(&["pi-1", "pi-2", "pi-3"]);
    let steps = next_steps(&FormInput {
        layout: &l,
        alive: &up,
        pool: &[me()],
        volumes: &[],
    });
    let probed: Vec<_> = steps
        .iter()
        .filter_map(|s| match s {
            Step::Probe { node, .. } => Some(node.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(probed, ["pi-2", "pi-3"], "pi-4 is not up: {steps:?}");
    // Probed ones in the pool, pi-4 still away: wait, do not create.
    let pool = [me(), peer("192.0.2.12", true), peer("192.0.2.13", true)];
    let steps = next_steps(&FormInput {
        layout: &l,
        alive: &up,
        pool: &pool,
        volumes: &[],
    });
    assert!(
        matches!(&steps[..], [Step::Wait(w)] if w.contains("pi-4 is not up")),
        "{steps:?}"
    );
}

#[test]
fn the_volume_is_created_started_and_set_then_nothing_changes() {
    let l = shipped_layout();
    let up = alive(&["pi-1", "pi-2", "pi-3", "pi-4"]);
    let pool = [
        me(),
        peer("192.0.2.12", true),
        peer("192.0.2.13", true),
        peer("192.0.2.14", true),
    ];
    let input = |volumes: &[VolumeInfo]| {
        next_steps(&FormInput {
            layout: &l,
            alive: &up,
            pool: &pool,
            volumes,
        })
    };
    assert_eq!(input(&[]), [Step::Create]);
    let fresh = created(&l, RunState::Created);
    assert_eq!(
        input(std::slice::from_ref(&fresh)),
        [
            Step::Start,
            Step::SetOption {
                key: "network.ping-timeout",
                value: "10".into()
            },
            Step::SetOption {
                key: "cluster.quorum-type",
                value: "auto".into()
            },
        ]
    );
    let mut done = created(&l, RunState::Started);
    for (k, v) in l.options() {
        done.options.insert(k.into(), v);
    }
    assert_eq!(
        input(std::slice::from_ref(&done)),
        [],
        "a second run changes nothing"
    );
    // Even with peers away, an existing volume is never recreated.
    let steps = next_steps(&FormInput {
        layout: &l,
        alive: &alive(&["pi-1"]),
        pool: &[me()],
        volumes: std::slice::from_ref(&done),
    });
    assert_eq!(steps, []);
}

#[test]
fn a_volume_unlike_the_file_or_stopped_is_left_alone() {
    let l = shipped_layout();
    let up = alive(&["pi-1"]);
    let other = xml::volume_info(
        include_str!("../../../tests/fixtures/gluster/multinode/lab10.3__healthy__volume_info.xml")
            .replace("<name>gv0</name>", "<name>piha</name>")
            .as_str(),
        Some(0),
    )
    .expect("fixture");
    let steps = next_steps(&FormInput {
        layout: &l,
        alive: &up,
        pool: &[me()],
        volumes: &other,
    });
    assert!(
        matches!(&steps[..], [Step::Conflict(c)] if c.contains("leaves it")),
        "{steps:?}"
    );
    let stopped = created(&l, RunState::Stopped);
    let steps = next_steps(&FormInput {
        layout: &l,
        alive: &up,
        pool: &[me()],
        volumes: &[stopped],
    });
    assert!(
        matches!(&steps[..], [Step::Wait(w)] if w.contains("stopped by an operator")),
        "{steps:?}"
    );
}
