//! How to start: the decision a db node makes before PostgreSQL runs,
//! from what is on its disk and what the cluster reports. Sans-IO: a pure
//! function of both, tested below case by case.
//!
//! The rules, in words:
//! - A node starts (or initializes) a primary only while it sees a majority
//!   of the voters and no other node runs a primary or has a newer timeline.
//!   A node cut off from the others therefore never comes up writable, and
//!   a returning old primary finds the new one first.
//! - A node whose data was primary finding another primary rewinds onto it
//!   (pg_rewind says "no rewind required" when it need not).
//! - A standby follows the running primary; with none, it starts read-only
//!   and waits (the failover decider may promote it).
//! - An empty node clones the running primary; the initial primary runs
//!   initdb only when no peer has any data at all.

use super::inspect::Found;
use super::status::DbReport;

/// A peer's db state, as its heartbeats last said.
#[derive(Debug, Clone, PartialEq)]
pub struct PeerDb {
    pub hostname: String,
    /// Up in membership now.
    pub alive: bool,
    pub report: Option<DbReport>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ClusterView {
    pub peers: Vec<PeerDb>,
    /// Membership has an opinion on every peer (heard from it, or waited
    /// long enough to call it down): decisions that need "nobody else has
    /// X" are made only then.
    pub settled: bool,
    /// This node sees a majority of the voters.
    pub quorum: bool,
}

impl ClusterView {
    /// The one peer running a primary: the newest timeline, then the
    /// furthest LSN (two at once is a split brain the fence resolves; the
    /// newer one is the one to follow).
    pub fn running_primary(&self, system_id: Option<u64>) -> Option<&PeerDb> {
        self.peers
            .iter()
            .filter(|p| p.alive)
            .filter(|p| {
                p.report.as_ref().is_some_and(|r| {
                    r.is_running_primary() && system_id.is_none_or(|id| id == r.system_id)
                })
            })
            .max_by_key(|p| {
                let r = p.report.as_ref();
                (
                    r.map(|r| r.timeline).unwrap_or(0),
                    r.map(|r| r.lsn).unwrap_or(0),
                )
            })
    }

    fn newest_timeline(&self, system_id: u64) -> Option<(&str, u32)> {
        self.peers
            .iter()
            .filter(|p| p.alive)
            .filter_map(|p| {
                let r = p.report.as_ref()?;
                (r.system_id == system_id).then_some((p.hostname.as_str(), r.timeline))
            })
            .max_by_key(|(_, t)| *t)
    }

    fn any_peer_has_data(&self) -> bool {
        self.peers
            .iter()
            .any(|p| p.report.as_ref().is_some_and(|r| r.system_id != 0))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartPlan {
    /// initdb, then start as primary.
    Initdb,
    /// pg_basebackup from `from`, then start as its standby.
    Clone {
        from: String,
    },
    StartPrimary,
    /// Start in recovery, streaming from `upstream` (or from nobody yet).
    StartStandby {
        upstream: Option<String>,
    },
    /// pg_rewind onto `from`, then start as its standby.
    Rewind {
        from: String,
    },
    /// Nothing to do yet; look again later.
    Wait {
        why: String,
    },
}

pub fn decide(found: &Found, initial_primary: bool, view: &ClusterView) -> StartPlan {
    match found {
        Found::Empty => decide_empty(initial_primary, view),
        Found::Cluster { control, standby } => {
            let id = control.system_id;
            let primary = view.running_primary(Some(id));
            if *standby {
                return match primary {
                    Some(p) if peer_timeline(p) > control.timeline => StartPlan::Rewind {
                        from: p.hostname.clone(),
                    },
                    Some(p) => StartPlan::StartStandby {
                        upstream: Some(p.hostname.clone()),
                    },
                    None => StartPlan::StartStandby { upstream: None },
                };
            }
            if let Some(p) = primary {
                return StartPlan::Rewind {
                    from: p.hostname.clone(),
                };
            }
            if !view.settled {
                return StartPlan::Wait {
                    why: "waiting to hear from the other nodes before starting as primary".into(),
                };
            }
            if !view.quorum {
                // Read-only until the cluster is back: safe either way.
                return StartPlan::StartStandby { upstream: None };
            }
            match view.newest_timeline(id) {
                Some((host, t)) if t > control.timeline => StartPlan::Wait {
                    why: format!(
                        "{host} is on timeline {t}, newer than this node's {}: a failover \
                         happened while this node was away; waiting for the new primary",
                        control.timeline
                    ),
                },
                _ => StartPlan::StartPrimary,
            }
        }
    }
}

fn decide_empty(initial_primary: bool, view: &ClusterView) -> StartPlan {
    if let Some(p) = view.running_primary(None) {
        return StartPlan::Clone {
            from: p.hostname.clone(),
        };
    }
    if !initial_primary {
        return StartPlan::Wait {
            why: "waiting for a running primary to copy".into(),
        };
    }
    if !view.settled || !view.quorum {
        return StartPlan::Wait {
            why: "waiting to see a majority of the cluster before creating the database".into(),
        };
    }
    if view.any_peer_has_data() {
        return StartPlan::Wait {
            why: "other db nodes have data but none runs a primary: not creating a second \
                  database; waiting for a primary to copy"
                .into(),
        };
    }
    StartPlan::Initdb
}

fn peer_timeline(p: &PeerDb) -> u32 {
    p.report.as_ref().map(|r| r.timeline).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pg::supervisor::inspect::ControlData;
    use crate::pg::supervisor::status::{DbRole, DbState};

    const ID: u64 = 7000;

    fn report(role: Option<DbRole>, state: DbState, timeline: u32, lsn: u64) -> DbReport {
        DbReport {
            state,
            role,
            timeline,
            lsn,
            receive_lsn: lsn,
            upstream: None,
            system_id: ID,
        }
    }

    fn peer(host: &str, alive: bool, r: Option<DbReport>) -> PeerDb {
        PeerDb {
            hostname: host.into(),
            alive,
            report: r,
        }
    }

    fn view(peers: Vec<PeerDb>) -> ClusterView {
        ClusterView {
            peers,
            settled: true,
            quorum: true,
        }
    }

    fn data(timeline: u32, standby: bool) -> Found {
        Found::Cluster {
            control: ControlData {
                system_id: ID,
                state: "shut down".into(),
                timeline,
                checkpoint_lsn: 100,
            },
            standby,
        }
    }

    fn primary(host: &str, timeline: u32) -> PeerDb {
        peer(
            host,
            true,
            Some(report(
                Some(DbRole::Primary),
                DbState::Running,
                timeline,
                500,
            )),
        )
    }

    #[test]
    fn first_boot_the_initial_primary_runs_initdb_once_it_sees_a_majority() {
        let empty_peers = vec![peer("pi-2", true, None), peer("pi-3", false, None)];
        assert_eq!(
            decide(&Found::Empty, true, &view(empty_peers.clone())),
            StartPlan::Initdb
        );
        let mut alone = view(empty_peers);
        alone.quorum = false;
        assert!(matches!(
            decide(&Found::Empty, true, &alone),
            StartPlan::Wait { .. }
        ));
    }

    #[test]
    fn first_boot_a_standby_clones_the_running_primary_or_waits() {
        assert_eq!(
            decide(&Found::Empty, false, &view(vec![primary("pi-1", 1)])),
            StartPlan::Clone {
                from: "pi-1".into()
            }
        );
        assert!(matches!(
            decide(&Found::Empty, false, &view(vec![peer("pi-1", true, None)])),
            StartPlan::Wait { .. }
        ));
    }

    #[test]
    fn a_wiped_initial_primary_copies_the_cluster_instead_of_creating_a_second() {
        // pi-1's card was replaced; pi-2 runs the primary since a failover.
        assert_eq!(
            decide(&Found::Empty, true, &view(vec![primary("pi-2", 2)])),
            StartPlan::Clone {
                from: "pi-2".into()
            }
        );
        // No primary running, but a peer has data: never initdb.
        let standby_only = view(vec![peer(
            "pi-3",
            true,
            Some(report(Some(DbRole::Standby), DbState::Running, 2, 400)),
        )]);
        assert!(matches!(
            decide(&Found::Empty, true, &standby_only),
            StartPlan::Wait { .. }
        ));
    }

    #[test]
    fn a_restarted_primary_with_the_cluster_around_it_starts_as_primary() {
        let standbys = view(vec![peer(
            "pi-2",
            true,
            Some(report(Some(DbRole::Standby), DbState::Running, 1, 400)),
        )]);
        assert_eq!(
            decide(&data(1, false), true, &standbys),
            StartPlan::StartPrimary
        );
    }

    #[test]
    fn a_returning_old_primary_rewinds_onto_the_new_one() {
        assert_eq!(
            decide(&data(1, false), true, &view(vec![primary("pi-2", 2)])),
            StartPlan::Rewind {
                from: "pi-2".into()
            }
        );
    }

    #[test]
    fn an_old_primary_never_starts_writable_without_a_majority() {
        let mut cut_off = view(vec![peer("pi-2", false, None), peer("pi-3", false, None)]);
        cut_off.quorum = false;
        assert_eq!(
            decide(&data(1, false), true, &cut_off),
            StartPlan::StartStandby { upstream: None }
        );
        let mut unsure = view(vec![]);
        unsure.settled = false;
        assert!(matches!(
            decide(&data(1, false), true, &unsure),
            StartPlan::Wait { .. }
        ));
    }

    #[test]
    fn an_old_primary_seeing_a_newer_timeline_without_a_primary_waits() {
        let promoted_then_stopped = view(vec![peer(
            "pi-2",
            true,
            Some(report(None, DbState::Restarting, 2, 900)),
        )]);
        assert!(matches!(
            decide(&data(1, false), true, &promoted_then_stopped),
            StartPlan::Wait { .. }
        ));
    }

    #[test]
    fn a_standby_follows_the_primary_and_rewinds_across_a_newer_timeline() {
        assert_eq!(
            decide(&data(1, true), false, &view(vec![primary("pi-1", 1)])),
            StartPlan::StartStandby {
                upstream: Some("pi-1".into())
            }
        );
        assert_eq!(
            decide(&data(1, true), false, &view(vec![primary("pi-2", 2)])),
            StartPlan::Rewind {
                from: "pi-2".into()
            }
        );
        assert_eq!(
            decide(&data(1, true), false, &view(vec![])),
            StartPlan::StartStandby { upstream: None }
        );
    }

    #[test]
    fn a_primary_of_another_cluster_is_never_followed() {
        let mut other = primary("pi-9", 5);
        if let Some(r) = other.report.as_mut() {
            r.system_id = ID + 1;
        }
        assert_eq!(
            decide(&data(1, true), false, &view(vec![other])),
            StartPlan::StartStandby { upstream: None }
        );
    }
}
