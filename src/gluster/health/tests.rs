//! The health model over real captures (tests/fixtures/gluster/multinode)
//! with a simulated clock.

use super::*;
use crate::gluster::{heal_count, xml};

const LIMITS: Limits = Limits {
    min_free: 0.10,
    min_free_inodes: 0.05,
    grace_ms: 2_000,
};

macro_rules! fixture {
    ($name:literal) => {
        include_str!(concat!(
            "../../../tests/fixtures/gluster/multinode/lab10.3__",
            $name
        ))
    };
}

fn info(text: &str) -> Vec<VolumeInfo> {
    xml::volume_info(text, Some(0)).expect("volume info fixture")
}

/// Only gv0 of the captures' volumes, as a piha cluster would have.
fn gv0_info(text: &str) -> Result<Vec<VolumeInfo>, CliError> {
    Ok(info(text).into_iter().filter(|v| v.name == "gv0").collect())
}

fn status(text: &str) -> Result<VolumeStatus, CliError> {
    let mut all = xml::volume_status(text, Some(0))?;
    all.retain(|v| v.name == "gv0");
    all.pop().ok_or(CliError::Inconsistent {
        why: "no gv0".into(),
    })
}

fn obs(
    volumes: Result<Vec<VolumeInfo>, CliError>,
    gv0: Option<Result<VolumeStatus, CliError>>,
) -> Observation {
    Observation {
        volumes,
        status: gv0.map(|s| ("gv0".to_owned(), s)).into_iter().collect(),
        status_age_ms: BTreeMap::new(),
        heal_count: BTreeMap::new(),
        heal_summary: BTreeMap::new(),
        peers: Some(xml::peers(fixture!("healthy__pool_list.xml"), Some(0))),
    }
}

fn healthy() -> Observation {
    obs(
        gv0_info(fixture!("healthy__volume_info.xml")),
        Some(status(fixture!("healthy__volume_status_gv0_detail.xml"))),
    )
}

#[test]
fn all_bricks_online_is_up() {
    let (view, changes) = Monitor::new().observe(healthy(), 1_000, LIMITS);
    assert_eq!(view.glusterd, Glusterd::Running);
    assert_eq!(view.volumes.len(), 1);
    let v = &view.volumes[0];
    assert_eq!(v.state, VolumeState::Up, "{}", v.why);
    assert!(
        v.bricks
            .iter()
            .all(|b| b.state == BrickState::Online && b.size_free.is_some())
    );
    assert!(matches!(
        &changes[..],
        [Change::Volume {
            to: VolumeState::Up,
            from: None,
            ..
        }]
    ));
}

#[test]
fn a_killed_brick_degrades_the_volume_in_one_poll_with_events() {
    let mut m = Monitor::new();
    m.observe(healthy(), 1_000, LIMITS);
    let down = obs(
        gv0_info(fixture!("healthy__volume_info.xml")),
        Some(status(fixture!("brickdown__volume_status_gv0_detail.xml"))),
    );
    let (view, changes) = m.observe(down, 6_000, LIMITS);
    let v = &view.volumes[0];
    assert_eq!(v.state, VolumeState::Degraded, "{}", v.why);
    assert!(
        v.why.contains("pi-storage3:/mnt/gluster/gv0 offline"),
        "{}",
        v.why
    );
    assert!(changes.iter().any(|c| matches!(
        c,
        Change::Volume {
            from: Some(VolumeState::Up),
            to: VolumeState::Degraded,
            ..
        }
    )));
    assert!(changes.iter().any(|c| matches!(c, Change::Brick { to: BrickState::Offline, brick, .. } if brick.starts_with("pi-storage3"))));
    // And back: the brick's return asks for a heal.
    let (view, changes) = m.observe(healthy(), 11_000, LIMITS);
    assert_eq!(view.volumes[0].state, VolumeState::Up);
    assert!(
        changes
            .iter()
            .any(|c| matches!(c, Change::BrickBack { volume, .. } if volume == "gv0"))
    );
}

#[test]
fn a_node_missing_from_status_leaves_its_brick_unknown_not_gone() {
    let mut m = Monitor::new();
    m.observe(healthy(), 1_000, LIMITS);
    let nodedown = obs(
        gv0_info(fixture!("nodedown__volume_info.xml")),
        Some(status(fixture!("nodedown__volume_status_all_detail.xml"))),
    );
    let (view, _) = m.observe(nodedown, 6_000, LIMITS);
    let v = &view.volumes[0];
    assert_eq!(v.bricks.len(), 3, "the dead node's brick is still listed");
    assert_eq!(v.bricks[2].state, BrickState::Unknown);
    assert!(
        v.bricks[2]
            .why
            .as_deref()
            .is_some_and(|w| w.contains("missing from volume status"))
    );
    // Two of three known online: writes keep quorum whatever the third is.
    assert_eq!(v.state, VolumeState::Degraded, "{}", v.why);
}

#[test]
fn a_hung_glusterd_keeps_the_last_good_data_with_its_age() {
    let mut m = Monitor::new();
    m.observe(healthy(), 1_000, LIMITS);
    let hung = fixture!("glusterd_hung_local_timeout5__volume_info.NOT_XML.out.txt");
    let mut o = obs(xml::volume_info(hung, Some(0)), None);
    o.peers = Some(Err(CliError::Deadline {
        after: std::time::Duration::from_secs(5),
    }));
    let (view, changes) = m.observe(o, 31_000, LIMITS);
    assert!(
        matches!(view.glusterd, Glusterd::Hung(_)),
        "{:?}",
        view.glusterd
    );
    assert_eq!(view.volumes.len(), 1, "never \"0 volumes\"");
    let v = &view.volumes[0];
    assert_eq!(v.state, VolumeState::Unknown);
    assert_eq!(v.last_known, Some(VolumeState::Up));
    assert_eq!(view.volumes_age_ms, 30_000);
    assert_eq!(v.data_age_ms, 30_000);
    assert!(v.bricks[0].size_free.is_some(), "last good figures stay");
    assert!(changes.iter().any(|c| matches!(
        c,
        Change::Glusterd {
            to: Glusterd::Hung(_),
            ..
        }
    )));
}

#[test]
fn an_empty_status_from_concurrent_calls_is_not_believed() {
    let mut m = Monitor::new();
    m.observe(healthy(), 1_000, LIMITS);
    let empty = status(fixture!("concurrent_empty__volume_status_all_detail.xml"));
    assert!(empty.is_err(), "the capture lists no volume");
    let (view, _) = m.observe(
        obs(gv0_info(fixture!("healthy__volume_info.xml")), Some(empty)),
        6_000,
        LIMITS,
    );
    let v = &view.volumes[0];
    assert_eq!(v.state, VolumeState::Unknown);
    assert_eq!(v.last_known, Some(VolumeState::Up));
    assert_eq!(v.bricks.len(), 3);
}

#[test]
fn stale_lock_is_could_not_tell() {
    let mut m = Monitor::new();
    m.observe(healthy(), 1_000, LIMITS);
    let busy = xml::volume_status(
        fixture!("stale_lock_after_peer_hang__volume_status_gv0_detail.xml"),
        Some(0),
    )
    .map(|mut v| v.remove(0));
    let (view, _) = m.observe(
        obs(gv0_info(fixture!("healthy__volume_info.xml")), Some(busy)),
        6_000,
        LIMITS,
    );
    assert_eq!(view.volumes[0].state, VolumeState::Unknown);
    assert!(
        view.volumes[0].why.contains("busy"),
        "{}",
        view.volumes[0].why
    );
}

#[test]
fn heal_backlog_counts_each_replica_set_once() {
    let mut o = obs(
        gv0_info(fixture!("healthy__volume_info.xml")),
        Some(status(fixture!("brickdown__volume_status_gv0_detail.xml"))),
    );
    let counts = heal_count::parse(
        fixture!("brickdown3000__volume_heal_gv0_statistics_heal-count__NOT_XML.txt"),
        Some(0),
    );
    o.heal_count.insert("gv0".into(), counts);
    o.heal_summary.insert(
        "gv0".into(),
        xml::heal_summary(
            fixture!("healthy__volume_heal_gv0_info_summary.xml"),
            Some(0),
        ),
    );
    let mut m = Monitor::new();
    let (view, _) = m.observe(o.clone(), 1_000, LIMITS);
    assert_eq!(
        view.volumes[0].split_brain,
        Some(0),
        "counted with the summary"
    );
    o.heal_summary.clear();
    let (view, _) = m.observe(o, 2_000, LIMITS);
    let v = &view.volumes[0];
    assert_eq!(
        v.split_brain, None,
        "not counted above the backlog limit: unknown"
    );
    assert_eq!(v.heal_pending, Some(3002));
    assert_eq!(v.bricks[0].heal_pending, Some(3002));
    assert_eq!(v.bricks[2].heal_pending, None);
}

/// A synthetic volume of `replica` x `sets` with `offline` bricks down.
fn layout(replica: usize, sets: usize, arbiter: bool, offline: &[usize]) -> VolumeView {
    let n = replica * sets;
    let info = VolumeInfo {
        name: "v".into(),
        id: String::new(),
        state: RunState::Started,
        kind: String::new(),
        replica_count: replica,
        arbiter_count: usize::from(arbiter),
        disperse_count: 0,
        redundancy_count: 0,
        bricks: (0..n)
            .map(|i| crate::gluster::model::BrickRef {
                host: format!("h{i}"),
                path: "/b".into(),
                host_uuid: None,
                arbiter: arbiter && i % replica == replica - 1,
            })
            .collect(),
        options: BTreeMap::new(),
    };
    let status = VolumeStatus {
        name: "v".into(),
        bricks: (0..n)
            .map(|i| BrickStatus {
                host: format!("h{i}"),
                path: "/b".into(),
                peer_id: None,
                online: !offline.contains(&i),
                port: None,
                pid: None,
                space: crate::gluster::model::Space {
                    size_total: Some(100),
                    size_free: Some(if i == 0 { 5 } else { 50 }),
                    ..Default::default()
                },
            })
            .collect(),
    };
    let o = Observation {
        volumes: Ok(vec![info]),
        status: [("v".to_owned(), Ok(status))].into(),
        status_age_ms: BTreeMap::new(),
        heal_count: BTreeMap::new(),
        heal_summary: BTreeMap::new(),
        peers: Some(Ok(vec![])),
    };
    Monitor::new().observe(o, 0, LIMITS).0.volumes.remove(0)
}

#[test]
fn quorum_follows_the_replica_layout() {
    use VolumeState::*;
    // replica 3: one down keeps quorum, two down lose it.
    assert_eq!(layout(3, 1, false, &[]).state, Up);
    assert_eq!(layout(3, 1, false, &[2]).state, Degraded);
    assert_eq!(layout(3, 1, false, &[1, 2]).state, Down);
    // replica 3 arbiter 1: the arbiter counts for quorum.
    assert_eq!(layout(3, 1, true, &[2]).state, Degraded);
    // replica 2 x 2 (the four-Pi default): the first brick of a pair
    // alone keeps writes, the second alone does not.
    assert_eq!(layout(2, 2, false, &[1]).state, Degraded);
    assert_eq!(layout(2, 2, false, &[2]).state, Down);
    assert_eq!(layout(2, 2, false, &[1, 3]).state, Degraded);
    // Pairs with arbiters (the four-Pi default, 2 x (2 + 1)): a pair's
    // first brick may go, and one node's two bricks (pi-3: set 1's
    // arbiter, set 2's first brick) at once too.
    assert_eq!(layout(3, 2, true, &[0]).state, Degraded);
    assert_eq!(layout(3, 2, true, &[2, 3]).state, Degraded);
    assert_eq!(layout(3, 2, true, &[0, 1]).state, Down);
    // Plain distribute: a missing brick takes its files away.
    assert_eq!(layout(1, 3, false, &[1]).state, Down);
}

#[test]
fn low_space_is_a_warning_not_an_outage() {
    let v = layout(3, 1, false, &[]);
    assert_eq!(v.state, VolumeState::Up);
    assert!(v.bricks[0].low_space && !v.bricks[1].low_space);
    assert_eq!(v.warnings.len(), 1, "{:?}", v.warnings);
}

#[test]
fn stopped_and_never_started_volumes_are_down() {
    let all = info(fixture!("healthy__volume_info.xml"));
    let o = Observation {
        volumes: Ok(all),
        status: BTreeMap::new(),
        status_age_ms: BTreeMap::new(),
        heal_count: BTreeMap::new(),
        heal_summary: BTreeMap::new(),
        peers: Some(Ok(vec![])),
    };
    let (view, _) = Monitor::new().observe(o, 0, LIMITS);
    let gvnew = view
        .volumes
        .iter()
        .find(|v| v.name == "gvnew")
        .expect("gvnew");
    assert_eq!(
        (gvnew.state, gvnew.why.as_str()),
        (VolumeState::Down, "created, never started")
    );
    // Started volumes not asked yet: unknown, not up.
    let gv0 = view.volumes.iter().find(|v| v.name == "gv0").expect("gv0");
    assert_ne!(gv0.state, VolumeState::Up);
}

#[test]
fn one_lost_round_within_the_grace_keeps_the_last_answer() {
    let mut m = Monitor::new();
    m.observe(healthy(), 1_000, LIMITS);
    let busy = Err(CliError::Busy {
        text: "Another transaction is in progress".into(),
    });
    let (view, changes) = m.observe(
        obs(
            gv0_info(fixture!("healthy__volume_info.xml")),
            Some(busy.clone()),
        ),
        2_000,
        LIMITS,
    );
    let v = &view.volumes[0];
    assert_eq!(
        v.state,
        VolumeState::Up,
        "one lost round is not news: {}",
        v.why
    );
    assert_eq!(v.data_age_ms, 1_000);
    assert!(v.bricks.iter().all(|b| b.stale));
    assert!(changes.is_empty(), "{changes:?}");
    // Past the grace: could not tell.
    let (view, _) = m.observe(
        obs(gv0_info(fixture!("healthy__volume_info.xml")), Some(busy)),
        4_000,
        LIMITS,
    );
    assert_eq!(view.volumes[0].state, VolumeState::Unknown);
}

#[test]
fn an_answer_from_the_asking_node_counts_from_when_gluster_gave_it() {
    let mut m = Monitor::new();
    let taken = |status_fixture: &str, age_ms: u64| {
        let mut o = obs(
            gv0_info(fixture!("healthy__volume_info.xml")),
            Some(status(status_fixture)),
        );
        o.status_age_ms.insert("gv0".into(), age_ms);
        o
    };
    let (view, _) = m.observe(
        taken(fixture!("healthy__volume_status_gv0_detail.xml"), 3_000),
        10_000,
        LIMITS,
    );
    let v = &view.volumes[0];
    assert_eq!(v.state, VolumeState::Up, "{}", v.why);
    assert_eq!(v.data_age_ms, 3_000);
    assert!(v.bricks.iter().all(|b| !b.stale), "a new answer is fresh");
    // The same answer handed over again: it ages, and is not seen afresh.
    let (view, _) = m.observe(
        taken(fixture!("healthy__volume_status_gv0_detail.xml"), 5_000),
        12_000,
        LIMITS,
    );
    assert_eq!(view.volumes[0].data_age_ms, 5_000);
    assert!(view.volumes[0].bricks.iter().all(|b| b.stale));
    // An answer older than the one kept never replaces it.
    let (view, changes) = m.observe(
        taken(fixture!("brickdown__volume_status_gv0_detail.xml"), 8_000),
        13_000,
        LIMITS,
    );
    assert_eq!(view.volumes[0].state, VolumeState::Up);
    assert!(changes.is_empty(), "{changes:?}");
    // A newer one does, at once.
    let (view, _) = m.observe(
        taken(fixture!("brickdown__volume_status_gv0_detail.xml"), 1_000),
        14_000,
        LIMITS,
    );
    assert_eq!(view.volumes[0].state, VolumeState::Degraded);
    assert_eq!(view.volumes[0].data_age_ms, 1_000);
    // The wall clock set back: the kept answer is from the
    // future, and the next one still replaces it.
    let (view, _) = m.observe(healthy(), 5_000, LIMITS);
    assert_eq!(view.volumes[0].state, VolumeState::Up);
}

#[test]
fn a_brick_back_after_unanswered_polls_still_asks_for_a_heal() {
    let mut m = Monitor::new();
    m.observe(healthy(), 1_000, LIMITS);
    let down = || {
        obs(
            gv0_info(fixture!("healthy__volume_info.xml")),
            Some(status(fixture!("brickdown__volume_status_gv0_detail.xml"))),
        )
    };
    m.observe(down(), 2_000, LIMITS);
    let hung = Err(CliError::RequestTimedOut);
    for t in [10_000, 20_000] {
        let (_, changes) = m.observe(
            obs(
                gv0_info(fixture!("healthy__volume_info.xml")),
                Some(hung.clone()),
            ),
            t,
            LIMITS,
        );
        assert!(
            !changes
                .iter()
                .any(|c| matches!(c, Change::BrickBack { .. }))
        );
    }
    let (_, changes) = m.observe(healthy(), 30_000, LIMITS);
    let back: Vec<_> = changes
        .iter()
        .filter(|c| matches!(c, Change::BrickBack { .. }))
        .collect();
    assert_eq!(back.len(), 1, "{changes:?}");
    // And an unanswered round alone is no return.
    m.observe(
        obs(gv0_info(fixture!("healthy__volume_info.xml")), Some(hung)),
        40_000,
        LIMITS,
    );
    let (_, changes) = m.observe(healthy(), 50_000, LIMITS);
    assert!(
        !changes
            .iter()
            .any(|c| matches!(c, Change::BrickBack { .. })),
        "{changes:?}"
    );
}

#[test]
fn peers_that_disconnect_are_changes() {
    let mut m = Monitor::new();
    m.observe(healthy(), 1_000, LIMITS);
    let mut o = healthy();
    o.peers = Some(xml::peers(fixture!("nodedown__pool_list.xml"), Some(0)));
    let (_, changes) = m.observe(o, 6_000, LIMITS);
    assert!(changes.contains(&Change::Peer {
        hostname: "pi-storage3".into(),
        connected: false
    }));
}
