//! The decider on a simulated clock: each test is one scenario.

use super::*;
use crate::pg::supervisor::status::DbRole;

const ID: u64 = 42;

fn settings() -> Settings {
    Settings {
        fall: 3,
        fence_grace: Duration::from_secs(2),
        restart_grace: Duration::from_secs(20),
        promote_timeout: Duration::from_secs(75),
        retry_after: Duration::from_secs(10),
        enabled: true,
    }
}

fn report(role: DbRole, state: DbState, lsn: u64, upstream: Option<&str>) -> DbReport {
    DbReport {
        state,
        role: Some(role),
        timeline: 1,
        lsn,
        receive_lsn: lsn,
        upstream: upstream.map(str::to_owned),
        system_id: ID,
    }
}

fn node(host: &str, r: Option<DbReport>) -> NodeView {
    NodeView {
        hostname: host.into(),
        alive: true,
        down_since: None,
        report: r,
        probe_failures: 0,
        probed_primary: false,
        not_running_since: None,
    }
}

/// pi-1 primary, pi-2 and pi-3 standbys (pi-3 further ahead).
fn healthy(now: Instant) -> Observation {
    Observation {
        now,
        is_master: true,
        quorum: true,
        nodes: vec![
            node(
                "pi-1",
                Some(report(DbRole::Primary, DbState::Running, 1000, None)),
            ),
            node(
                "pi-2",
                Some(report(DbRole::Standby, DbState::Running, 900, Some("pi-1"))),
            ),
            node(
                "pi-3",
                Some(report(DbRole::Standby, DbState::Running, 950, Some("pi-1"))),
            ),
        ],
    }
}

/// The same cluster with pi-1's node silent since `down_at` and its
/// server failing `failures` probes.
fn primary_gone(now: Instant, down_at: Instant, failures: u32) -> Observation {
    let mut obs = healthy(now);
    obs.nodes[0].alive = false;
    obs.nodes[0].down_since = Some(down_at);
    obs.nodes[0].probe_failures = failures;
    obs
}

#[test]
fn a_healthy_cluster_needs_nothing() {
    let mut d = Decider::new(settings());
    let t0 = Instant::now();
    assert!(d.step(&healthy(t0)).is_empty());
    assert_eq!(d.primary(), Some("pi-1"));
}

#[test]
fn a_dead_primary_is_fenced_and_the_furthest_standby_promoted_after_the_grace() {
    let mut d = Decider::new(settings());
    let t0 = Instant::now();
    d.step(&healthy(t0));
    // Probes failing but the node only just went silent: wait for it to
    // have fenced itself.
    let down = t0 + Duration::from_secs(1);
    assert!(
        d.step(&primary_gone(down + Duration::from_secs(1), down, 3))
            .is_empty()
    );
    let actions = d.step(&primary_gone(down + Duration::from_secs(2), down, 3));
    assert_eq!(
        actions,
        vec![
            Action::Fence {
                node: "pi-1".into()
            },
            Action::Promote {
                node: "pi-3".into()
            }
        ]
    );
    // Nothing more while the promotion runs.
    assert!(
        d.step(&primary_gone(down + Duration::from_secs(3), down, 5))
            .is_empty()
    );
    // pi-3 runs as primary: pi-2 is re-pointed.
    let mut after = primary_gone(down + Duration::from_secs(4), down, 6);
    after.nodes[2].report = Some(report(DbRole::Primary, DbState::Running, 960, None));
    assert_eq!(
        d.step(&after),
        vec![Action::Follow {
            node: "pi-2".into(),
            primary: "pi-3".into()
        }]
    );
    assert_eq!(d.primary(), Some("pi-3"));
}

#[test]
fn too_few_failed_probes_is_not_a_death() {
    let mut d = Decider::new(settings());
    let t0 = Instant::now();
    d.step(&healthy(t0));
    let obs = primary_gone(t0 + Duration::from_secs(10), t0, 2);
    assert!(d.step(&obs).is_empty());
}

#[test]
fn only_the_vrrp_master_promotes() {
    let mut d = Decider::new(settings());
    let t0 = Instant::now();
    d.step(&healthy(t0));
    let mut obs = primary_gone(t0 + Duration::from_secs(10), t0, 5);
    obs.is_master = false;
    assert!(d.step(&obs).is_empty());
}

#[test]
fn without_a_majority_it_only_says_why_once() {
    let mut d = Decider::new(settings());
    let t0 = Instant::now();
    d.step(&healthy(t0));
    let mut obs = primary_gone(t0 + Duration::from_secs(10), t0, 5);
    obs.quorum = false;
    let first = d.step(&obs);
    assert!(matches!(first.as_slice(), [Action::Note { .. }]));
    assert!(d.step(&obs).is_empty());
}

#[test]
fn an_alive_node_gets_time_to_restart_its_postgres() {
    let mut d = Decider::new(settings());
    let t0 = Instant::now();
    d.step(&healthy(t0));
    let mut obs = healthy(t0 + Duration::from_secs(5));
    obs.nodes[0].probe_failures = 5;
    obs.nodes[0].report = Some(report(DbRole::Primary, DbState::Restarting, 1000, None));
    obs.nodes[0].not_running_since = Some(t0 + Duration::from_secs(1));
    assert!(d.step(&obs).is_empty());
    obs.now = t0 + Duration::from_secs(22);
    assert_eq!(d.step(&obs).len(), 2);
}

#[test]
fn a_node_that_says_it_cannot_run_postgres_is_replaced_at_once() {
    let mut d = Decider::new(settings());
    let t0 = Instant::now();
    d.step(&healthy(t0));
    let mut obs = healthy(t0 + Duration::from_secs(5));
    obs.nodes[0].probe_failures = 3;
    obs.nodes[0].report = Some(report(DbRole::Primary, DbState::Failed, 1000, None));
    assert!(matches!(
        d.step(&obs).as_slice(),
        [Action::Fence { .. }, Action::Promote { .. }]
    ));
}

#[test]
fn no_running_standby_means_no_promotion_and_a_note() {
    let mut d = Decider::new(settings());
    let t0 = Instant::now();
    d.step(&healthy(t0));
    let mut obs = primary_gone(t0 + Duration::from_secs(10), t0, 5);
    obs.nodes[1].alive = false;
    obs.nodes[2].report = Some(report(DbRole::Standby, DbState::Cloning, 0, None));
    assert!(matches!(d.step(&obs).as_slice(), [Action::Note { .. }]));
}

#[test]
fn a_failed_promotion_is_tried_again_after_the_retry_wait() {
    let mut d = Decider::new(settings());
    let t0 = Instant::now();
    d.step(&healthy(t0));
    let t1 = t0 + Duration::from_secs(10);
    assert_eq!(d.step(&primary_gone(t1, t0, 5)).len(), 2);
    d.promotion_failed("pi-3", t1);
    // Not at once: the promotion may have gone through regardless.
    assert!(
        d.step(&primary_gone(t1 + Duration::from_secs(5), t0, 5))
            .is_empty()
    );
    let again = d.step(&primary_gone(t1 + Duration::from_secs(11), t0, 5));
    assert!(
        matches!(again.as_slice(), [Action::Note { .. }]),
        "{again:?}"
    );
    assert_eq!(
        d.step(&primary_gone(t1 + Duration::from_secs(12), t0, 5))
            .len(),
        2
    );
}

#[test]
fn a_failed_promotion_that_went_through_is_followed_not_repeated() {
    let mut d = Decider::new(settings());
    let t0 = Instant::now();
    d.step(&healthy(t0));
    let t1 = t0 + Duration::from_secs(10);
    assert_eq!(d.step(&primary_gone(t1, t0, 5)).len(), 2);
    d.promotion_failed("pi-3", t1);
    let mut obs = primary_gone(t1 + Duration::from_secs(2), t0, 5);
    obs.nodes[2].report = Some(report(DbRole::Primary, DbState::Running, 960, None));
    assert_eq!(
        d.step(&obs),
        vec![Action::Follow {
            node: "pi-2".into(),
            primary: "pi-3".into()
        }]
    );
}

#[test]
fn a_standby_of_another_cluster_is_never_promoted() {
    let mut d = Decider::new(settings());
    let t0 = Instant::now();
    d.step(&healthy(t0));
    let mut obs = primary_gone(t0 + Duration::from_secs(10), t0, 5);
    for n in &mut obs.nodes[1..] {
        if let Some(r) = n.report.as_mut() {
            r.system_id = ID + 1;
        }
    }
    assert!(matches!(d.step(&obs).as_slice(), [Action::Note { .. }]));
}
