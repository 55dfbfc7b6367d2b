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
fn the_four_pi_default_is_two_pairs_each_with_an_arbiter_on_the_other_pair() {
    let l = shipped_layout();
    assert_eq!(
        (l.volume.as_str(), l.replica, l.arbiter, l.bricks.len()),
        ("piha", 3, true, 6)
    );
    assert_eq!(l.former(), Some("pi-1"));
    assert_eq!(
        l.create_args().join(" "),
        "volume create piha replica 3 arbiter 1 \
         192.0.2.11:/srv/piha/brick 192.0.2.12:/srv/piha/brick 192.0.2.13:/srv/piha/brick-arbiter \
         192.0.2.13:/srv/piha/brick 192.0.2.14:/srv/piha/brick 192.0.2.11:/srv/piha/brick-arbiter \
         force"
    );
    assert_eq!(l.shape(), "replica 3 arbiter 1, 2 x (2 + 1)");
    assert_eq!(l.nodes(), ["pi-1", "pi-2", "pi-3", "pi-4"]);
    // Without arbiters, as an operator may still ask for.
    let plain = SHIPPED.replace("\n[storage]\n", "\n[storage]\narbiter = false\n");
    let config = parse(&plain, Path::new("t.toml")).expect("plain pairs");
    let l = Layout::from_config(&config).expect("layout");
    assert_eq!(
        l.create_args().join(" "),
        "volume create piha replica 2 192.0.2.11:/srv/piha/brick 192.0.2.12:/srv/piha/brick \
         192.0.2.13:/srv/piha/brick 192.0.2.14:/srv/piha/brick force"
    );
    assert_eq!(l.shape(), "replica 2 x 2");
}

#[test]
fn six_pis_put_each_arbiter_on_another_pair() {
    let mut text = SHIPPED.to_string();
    for (host, addr) in [("pi-5", "192.0.2.15"), ("pi-6", "192.0.2.16")] {
        text.push_str(&format!(
            "\n[[node]]\nhostname = \"{host}\"\naddress = \"{addr}/24\"\nroles = [\"web\", \"storage\"]\n"
        ));
    }
    let config = parse(&text, Path::new("t.toml")).expect("six storage nodes");
    let l = Layout::from_config(&config).expect("layout");
    let sets: Vec<Vec<(String, bool)>> = l
        .bricks
        .chunks(3)
        .map(|set| set.iter().map(|b| (b.node.clone(), b.arbiter)).collect())
        .collect();
    let owned = |n: &str, a| (n.to_string(), a);
    assert_eq!(
        sets,
        [
            [
                owned("pi-1", false),
                owned("pi-2", false),
                owned("pi-3", true)
            ],
            [
                owned("pi-3", false),
                owned("pi-4", false),
                owned("pi-5", true)
            ],
            [
                owned("pi-5", false),
                owned("pi-6", false),
                owned("pi-1", true)
            ],
        ]
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
    // An arbiter for a lone pair has no node outside it: `piha check`
    // refuses it, with the layout's words.
    let two = SHIPPED
        .replace(
            "roles = [\"web\", \"storage\"]\n\n#",
            "roles = [\"web\"]\n\n#",
        )
        .replace("\n[storage]\n", "\n[storage]\narbiter = true\n");
    let two = two.replace(
        "roles = [\"web\", \"db\", \"storage\"]",
        "roles = [\"web\", \"db\"]",
    );
    let err = match parse(&two, Path::new("t.toml")) {
        Ok(c) => panic!(
            "an arbiter for a lone pair was accepted: {:?}",
            Layout::from_config(&c)
        ),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("at least 4 storage nodes"), "{err}");
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
