//! One storage node asks gluster the questions that take its cluster-wide
//! lock (`volume status <vol> detail`, the heal counts); the others take
//! its answers over the admin API instead of asking themselves.
//!
//! Why: each of those questions is a cluster transaction. The asking
//! glusterd locks every peer's glusterd, and every peer collects its own
//! bricks' details. With every node asking every poll, a four-node cluster
//! ran four transactions per poll on every glusterd, and they collided
//! ("Another transaction is in progress", "Locking failed on <peer>").
//! gluster's maintainers name this as a cause of lock failures: "a
//! cluster-wide operation executed continuously from multiple nodes". (A
//! silent node holding the lock is the other cause: `fence.rs`.) The
//! answer is the same whichever node asks (the cluster's view), so one asks
//! and every node reads it; every glusterd then serves one transaction per
//! poll instead of one per node.
//!
//! The asker is the first storage node in cluster order that membership
//! reports up: the node that asks for heals too. The lock-free questions
//! (`volume info`, `pool list`) are still asked on every node, so a node's
//! own glusterd being down is still its own news. A node that cannot get a
//! recent answer from the asker (its piha is down or restarting, its own
//! polls fail) asks gluster itself, as before: sharing only saves
//! questions, it never costs an answer.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::health::Observation;
use super::model::{HealBrick, HealCount, VolumeStatus};

/// Where a node serves the answers it got from gluster itself.
pub const PATH: &str = "/api/v1/storage/answers";
/// How long taking the answers from the asker may take. They are a few
/// KiB on a LAN; a poll that waits longer would be better off asking
/// gluster.
pub const FETCH_LIMIT: Duration = Duration::from_secs(1);

/// The lock-taking answers this node got from gluster itself (never ones
/// taken from a peer, so two nodes that each think the other asks can not
/// pass an old answer back and forth), each with when it came.
#[derive(Debug, Default, Clone)]
pub struct Kept {
    volumes: BTreeMap<String, KeptVolume>,
    /// When this node's next answers should be ready: the others time
    /// their polls to just after it, so that what the asker sees reaches
    /// them within a fraction of a poll, not up to a whole one later.
    next_at: Option<Instant>,
}

#[derive(Debug, Default, Clone)]
struct KeptVolume {
    status: Option<(VolumeStatus, Instant)>,
    heal_count: Option<(Vec<HealCount>, Instant)>,
    heal_summary: Option<(Vec<HealBrick>, Instant)>,
}

impl Kept {
    /// Keeps the good answers of a poll made at `at`, except those it took
    /// from a peer, and forgets volumes that no longer exist.
    pub fn keep(&mut self, obs: &Observation, at: Instant) {
        for (name, answer) in &obs.status {
            if let (Ok(s), false) = (answer, obs.status_age_ms.contains_key(name)) {
                self.entry(name).status = Some((s.clone(), at));
            }
        }
        for (name, answer) in &obs.heal_count {
            if let (Ok(c), false) = (answer, obs.status_age_ms.contains_key(name)) {
                self.entry(name).heal_count = Some((c.clone(), at));
            }
        }
        for (name, answer) in &obs.heal_summary {
            if let (Ok(s), false) = (answer, obs.status_age_ms.contains_key(name)) {
                self.entry(name).heal_summary = Some((s.clone(), at));
            }
        }
        if let Ok(volumes) = &obs.volumes {
            self.volumes
                .retain(|name, _| volumes.iter().any(|v| &v.name == name));
        }
    }

    /// Says when the next answers should be ready.
    pub fn expect_next(&mut self, at: Instant) {
        self.next_at = Some(at);
    }

    fn entry(&mut self, volume: &str) -> &mut KeptVolume {
        self.volumes.entry(volume.to_owned()).or_default()
    }

    /// What `from` serves at `now`: every answer with its age.
    pub fn served(&self, from: &str, now: Instant) -> Shared {
        fn aged<T: Clone>(kept: &Option<(T, Instant)>, now: Instant) -> Option<Aged<T>> {
            kept.as_ref().map(|(answer, at)| Aged {
                age_ms: now.saturating_duration_since(*at).as_millis() as u64,
                answer: answer.clone(),
            })
        }
        Shared {
            from: from.to_owned(),
            next_in_ms: self
                .next_at
                .map(|at| at.saturating_duration_since(now).as_millis() as u64),
            volumes: self
                .volumes
                .iter()
                .map(|(name, k)| {
                    let v = SharedVolume {
                        status: aged(&k.status, now),
                        heal_count: aged(&k.heal_count, now),
                        heal_summary: aged(&k.heal_summary, now),
                    };
                    (name.clone(), v)
                })
                .collect(),
        }
    }
}

/// The answers as served, each with its age on the serving node's clock
/// (ages, not times: the two nodes' wall clocks need not agree).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Shared {
    /// The node that asked gluster.
    pub from: String,
    /// In how long its next answers should be ready (0: any moment).
    #[serde(default)]
    pub next_in_ms: Option<u64>,
    pub volumes: BTreeMap<String, SharedVolume>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SharedVolume {
    pub status: Option<Aged<VolumeStatus>>,
    pub heal_count: Option<Aged<Vec<HealCount>>>,
    pub heal_summary: Option<Aged<Vec<HealBrick>>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Aged<T> {
    pub age_ms: u64,
    pub answer: T,
}

impl Shared {
    /// Reads a served document, checking that it comes from `asker`.
    pub fn from_json(value: serde_json::Value, asker: &str) -> Result<Shared, String> {
        let shared: Shared = serde_json::from_value(value)
            .map_err(|e| format!("{asker}'s storage answers could not be read: {e}"))?;
        if shared.from != asker {
            return Err(format!(
                "asked {asker} for its storage answers, {} answered",
                shared.from
            ));
        }
        Ok(shared)
    }

    /// Puts `volume`'s answers into `obs` when its status is at most
    /// `fresh_for` old (older means the asker's polls fail); false when
    /// this node must ask gluster.
    pub fn answer(&self, volume: &str, fresh_for: Duration, obs: &mut Observation) -> bool {
        let Some(v) = self.volumes.get(volume) else {
            return false;
        };
        let Some(status) = v
            .status
            .as_ref()
            .filter(|s| Duration::from_millis(s.age_ms) <= fresh_for && s.answer.name == volume)
        else {
            return false;
        };
        obs.status
            .insert(volume.to_owned(), Ok(status.answer.clone()));
        obs.status_age_ms.insert(volume.to_owned(), status.age_ms);
        if let Some(c) = &v.heal_count {
            obs.heal_count
                .insert(volume.to_owned(), Ok(c.answer.clone()));
        }
        if let Some(s) = &v.heal_summary {
            obs.heal_summary
                .insert(volume.to_owned(), Ok(s.answer.clone()));
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gluster::model::{BrickStatus, RunState, Space, VolumeInfo};
    use crate::gluster::reply::CliError;

    fn status(name: &str) -> VolumeStatus {
        VolumeStatus {
            name: name.into(),
            bricks: vec![BrickStatus {
                host: "192.0.2.11".into(),
                path: "/srv/brick".into(),
                peer_id: None,
                online: true,
                port: Some(49152),
                pid: Some(42),
                space: Space::default(),
            }],
        }
    }

    fn observation() -> Observation {
        let info = |name: &str| VolumeInfo {
            name: name.into(),
            id: String::new(),
            state: RunState::Started,
            kind: "Replicate".into(),
            replica_count: 3,
            arbiter_count: 0,
            disperse_count: 0,
            redundancy_count: 0,
            bricks: Vec::new(),
            options: BTreeMap::new(),
        };
        Observation {
            volumes: Ok(vec![info("piha"), info("other")]),
            status: BTreeMap::new(),
            status_age_ms: BTreeMap::new(),
            heal_count: BTreeMap::new(),
            heal_summary: BTreeMap::new(),
            peers: None,
        }
    }

    #[test]
    fn answers_are_served_with_their_age_and_read_back() {
        let t0 = Instant::now();
        let mut kept = Kept::default();
        let mut obs = observation();
        obs.status.insert("piha".into(), Ok(status("piha")));
        obs.heal_count.insert(
            "piha".into(),
            Ok(vec![HealCount {
                brick: "192.0.2.11:/srv/brick".into(),
                entries: Some(3),
            }]),
        );
        // A failed question keeps nothing.
        obs.status.insert(
            "other".into(),
            Err(CliError::Busy {
                text: "Another transaction is in progress".into(),
            }),
        );
        kept.keep(&obs, t0);
        kept.expect_next(t0 + Duration::from_secs(5));
        let served = kept.served("pi-1", t0 + Duration::from_millis(1500));
        assert_eq!(served.next_in_ms, Some(3500));
        let json = serde_json::to_value(&served).expect("serializes");
        let back = Shared::from_json(json.clone(), "pi-1").expect("reads back");
        assert_eq!(back, served);
        let v = &back.volumes["piha"];
        assert_eq!(v.status.as_ref().map(|s| s.age_ms), Some(1500));
        assert_eq!(v.heal_count.as_ref().map(|c| c.answer.len()), Some(1));
        assert!(v.heal_summary.is_none());
        assert!(!back.volumes.contains_key("other"));
        let wrong = Shared::from_json(json, "pi-2").expect_err("another node answered");
        assert!(wrong.contains("pi-1 answered"), "{wrong}");
        let junk = Shared::from_json(serde_json::json!({"from": 3}), "pi-1");
        assert!(junk.is_err_and(|e| e.contains("could not be read")));
    }

    #[test]
    fn only_a_recent_status_stands_for_asking() {
        let t0 = Instant::now();
        let mut kept = Kept::default();
        let mut obs = observation();
        obs.status.insert("piha".into(), Ok(status("piha")));
        kept.keep(&obs, t0);
        let served = kept.served("pi-1", t0 + Duration::from_secs(4));
        let mut into = observation();
        assert!(served.answer("piha", Duration::from_secs(10), &mut into));
        assert_eq!(into.status_age_ms.get("piha"), Some(&4000));
        assert!(into.status.get("piha").is_some_and(|s| s.is_ok()));
        // Older than the bound: the asker's polls fail; ask gluster here.
        let mut into = observation();
        assert!(!served.answer("piha", Duration::from_secs(3), &mut into));
        assert!(into.status.is_empty() && into.status_age_ms.is_empty());
        // A volume the asker has no answer for.
        assert!(!served.answer("other", Duration::from_secs(10), &mut into));
    }

    #[test]
    fn answers_taken_from_a_peer_are_not_served_again() {
        let t0 = Instant::now();
        let mut kept = Kept::default();
        let mut obs = observation();
        obs.status.insert("piha".into(), Ok(status("piha")));
        obs.status_age_ms.insert("piha".into(), 2000);
        kept.keep(&obs, t0);
        assert!(kept.served("pi-2", t0).volumes.is_empty());
    }

    #[test]
    fn a_volume_that_is_gone_is_forgotten() {
        let t0 = Instant::now();
        let mut kept = Kept::default();
        let mut obs = observation();
        obs.status.insert("other".into(), Ok(status("other")));
        kept.keep(&obs, t0);
        assert!(kept.served("pi-1", t0).volumes.contains_key("other"));
        let mut later = observation();
        if let Ok(v) = &mut later.volumes {
            v.retain(|v| v.name != "other");
        }
        kept.keep(&later, t0);
        assert!(kept.served("pi-1", t0).volumes.is_empty());
    }
}
