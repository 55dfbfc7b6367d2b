//! The failover decision, sans-IO: observations in, actions out, time as
//! a value. The shell (`service.rs`) builds an [`Observation`] twice a
//! second from the VRRP state, membership and the pooler's prober, and
//! carries out the actions over the admin API.
//!
//! The rules:
//! - Only the VRRP master decides, and only while it sees a majority of
//!   the voters (`supervisor::fence`). Every other node watches.
//! - The primary is declared dead when the pooler's prober failed `fall`
//!   times in a row on it, and its node is either silent in membership for
//!   `fence_grace` (by then a cut-off primary has fenced itself: it lost
//!   its majority when we lost it) or alive but unable to run PostgreSQL
//!   for `restart_grace` (its own supervisor gets to restart it first).
//! - Then: fence it from the pooler, promote the running standby that has
//!   received the most WAL, and, once it runs as primary, re-point the
//!   other standbys. Each step is an action the shell records as an event.

use std::time::{Duration, Instant};

use crate::pg::supervisor::status::{DbReport, DbState};

#[derive(Debug, Clone)]
pub struct Settings {
    /// Failed pooler probes in a row that count as "the primary is down"
    /// (the pooler's `probe.fall`).
    pub fall: u32,
    /// How long the primary's node must have been silent: covers its own
    /// fencing (it stops PostgreSQL as soon as it loses the majority).
    pub fence_grace: Duration,
    /// How long a primary whose node is alive may take to restart
    /// PostgreSQL before a standby is promoted instead.
    pub restart_grace: Duration,
    /// Give up waiting for a promoted standby to run as primary.
    pub promote_timeout: Duration,
    /// After a promotion reported failure, wait this long before choosing
    /// again: the answer may have been lost while the promotion went
    /// through, and promoting a second standby then would make two
    /// primaries. The wait lets the first one's report arrive.
    pub retry_after: Duration,
    pub enabled: bool,
}

/// One db node as the decider sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeView {
    pub hostname: String,
    /// Up in membership (this node itself is always alive).
    pub alive: bool,
    /// Since when membership has it down (or left), if it is.
    pub down_since: Option<Instant>,
    pub report: Option<DbReport>,
    /// The pooler's prober: failures in a row, and whether the server
    /// last answered as primary.
    pub probe_failures: u32,
    pub probed_primary: bool,
    /// Since when its report has not said "running" (None while it does).
    pub not_running_since: Option<Instant>,
}

#[derive(Debug, Clone)]
pub struct Observation {
    pub now: Instant,
    pub is_master: bool,
    pub quorum: bool,
    pub nodes: Vec<NodeView>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Stop routing writes to this node's server (and tell the node to
    /// fence itself, in case it can still hear us).
    Fence {
        node: String,
    },
    Promote {
        node: String,
    },
    /// Re-point a standby.
    Follow {
        node: String,
        primary: String,
    },
    /// Something worth an event that is not a step (a failover that
    /// cannot happen, and why).
    Note {
        message: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    Watching,
    Promoting { target: String, since: Instant },
}

pub struct Decider {
    settings: Settings,
    phase: Phase,
    /// The last node seen running the primary: the one whose death the
    /// decider watches for.
    primary: Option<String>,
    /// The last note, so a condition that lasts is reported once.
    last_note: Option<String>,
}

impl Decider {
    pub fn new(settings: Settings) -> Decider {
        Decider {
            settings,
            phase: Phase::Watching,
            primary: None,
            last_note: None,
        }
    }

    pub fn primary(&self) -> Option<&str> {
        self.primary.as_deref()
    }

    /// Another path (a switchover) made `node` the primary.
    pub fn set_primary(&mut self, node: &str) {
        self.primary = Some(node.to_owned());
        self.phase = Phase::Watching;
    }

    /// The shell could not promote `node`: try again (another standby,
    /// if one is better by then).
    pub fn promotion_failed(&mut self, node: &str, now: Instant) {
        if matches!(&self.phase, Phase::Promoting { target, .. } if target == node) {
            // Still "promoting" for the shell's purposes, until the retry
            // wait is over (see `Settings::retry_after`).
            let timeout = self.settings.promote_timeout;
            let wait = self.settings.retry_after.min(timeout);
            self.phase = Phase::Promoting {
                target: node.to_owned(),
                since: now.checked_sub(timeout - wait).unwrap_or(now),
            };
        }
    }

    pub fn step(&mut self, obs: &Observation) -> Vec<Action> {
        let running = obs.nodes.iter().find(|n| {
            n.alive
                && n.probe_failures == 0
                && n.report.as_ref().is_some_and(|r| r.is_running_primary())
        });
        if let Some(p) = running {
            let mut actions = Vec::new();
            if let Phase::Promoting { target, .. } = &self.phase {
                if *target == p.hostname {
                    actions = self.repoint(obs, &p.hostname);
                }
            }
            self.primary = Some(p.hostname.clone());
            self.phase = Phase::Watching;
            self.last_note = None;
            return actions;
        }
        if !obs.is_master || !self.settings.enabled {
            self.phase = Phase::Watching;
            return Vec::new();
        }
        if let Phase::Promoting { target, since } = &self.phase {
            if obs.now.saturating_duration_since(*since) < self.settings.promote_timeout {
                return Vec::new();
            }
            let note = format!("{target} did not come up as primary in time; choosing again");
            self.phase = Phase::Watching;
            return vec![Action::Note { message: note }];
        }
        let Some(dead) = self.primary.clone() else {
            return Vec::new();
        };
        let Some(old) = obs.nodes.iter().find(|n| n.hostname == dead) else {
            return Vec::new();
        };
        if !self.is_dead(old, obs.now) {
            return Vec::new();
        }
        if !obs.quorum {
            return self.note(format!(
                "the primary {dead} is down, but this node does not see a majority of the \
                 cluster: not promoting (the other side may have the primary)"
            ));
        }
        let system_id = old
            .report
            .as_ref()
            .map(|r| r.system_id)
            .filter(|id| *id != 0);
        let candidate = obs
            .nodes
            .iter()
            .filter(|n| n.alive && n.hostname != dead)
            .filter_map(|n| {
                let r = n.report.as_ref()?;
                (r.is_running_standby() && system_id.is_none_or(|id| id == r.system_id))
                    .then_some((n, r))
            })
            .max_by(|(a, ra), (b, rb)| {
                (ra.receive_lsn, ra.lsn)
                    .cmp(&(rb.receive_lsn, rb.lsn))
                    // Equal: the first hostname wins, whoever asks.
                    .then_with(|| b.hostname.cmp(&a.hostname))
            });
        let Some((target, _)) = candidate else {
            return self.note(format!(
                "the primary {dead} is down and no standby is running to promote"
            ));
        };
        self.phase = Phase::Promoting {
            target: target.hostname.clone(),
            since: obs.now,
        };
        self.last_note = None;
        vec![
            Action::Fence { node: dead },
            Action::Promote {
                node: target.hostname.clone(),
            },
        ]
    }

    fn is_dead(&self, n: &NodeView, now: Instant) -> bool {
        if n.probe_failures < self.settings.fall {
            return false;
        }
        if !n.alive {
            return n
                .down_since
                .is_some_and(|t| now.saturating_duration_since(t) >= self.settings.fence_grace);
        }
        // Alive: its own supervisor restarts PostgreSQL; wait for that,
        // unless it says it cannot.
        match n.report.as_ref().map(|r| r.state) {
            Some(DbState::Failed | DbState::Fenced | DbState::Stopped) => true,
            _ => n
                .not_running_since
                .is_some_and(|t| now.saturating_duration_since(t) >= self.settings.restart_grace),
        }
    }

    fn repoint(&self, obs: &Observation, primary: &str) -> Vec<Action> {
        obs.nodes
            .iter()
            .filter(|n| n.alive && n.hostname != primary)
            .filter(|n| {
                n.report
                    .as_ref()
                    .is_some_and(|r| r.upstream.as_deref() != Some(primary))
            })
            .map(|n| Action::Follow {
                node: n.hostname.clone(),
                primary: primary.to_owned(),
            })
            .collect()
    }

    fn note(&mut self, message: String) -> Vec<Action> {
        if self.last_note.as_deref() == Some(message.as_str()) {
            return Vec::new();
        }
        self.last_note = Some(message.clone());
        vec![Action::Note { message }]
    }
}

#[cfg(test)]
mod tests;
