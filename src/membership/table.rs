//! The membership state machine, sans IO: heartbeats and the clock go in,
//! state changes and the datagrams to send come out. No sockets, no tasks,
//! no `Instant::now()` inside, so every timing rule is tested with a
//! simulated clock (see the tests below and `LIFECYCLE.md`).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::message::{DropReason, Heartbeat, NodeReport, PeerAddr, WIRE_VERSION};

/// A learned (pattern-joined) node that stays down this long is forgotten,
/// so a Pi taken out of the cluster does not haunt the status page forever.
/// Nodes named in the cluster file are never forgotten.
pub const FORGET_AFTER: Duration = Duration::from_secs(3600);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    pub heartbeat_interval: Duration,
    pub down_after: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PeerState {
    /// Not heard from yet, and not yet long enough to call it down.
    Unknown,
    Up,
    /// Silent for `down_after`, or never heard from since we started.
    Down,
    /// Said goodbye (graceful stop).
    Left,
}

impl PeerState {
    pub fn name(self) -> &'static str {
        match self {
            PeerState::Unknown => "unknown",
            PeerState::Up => "up",
            PeerState::Down => "down",
            PeerState::Left => "left",
        }
    }
}

/// How we know of a peer: it decides whether the peer may be forgotten.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    ClusterFile,
    /// Joined by a hostname pattern, greeted us or was listed by a peer.
    Learned,
}

#[derive(Debug, Clone)]
pub struct Peer {
    /// Where heartbeats to it go; `None` until a learned peer tells us.
    pub gossip: Option<SocketAddr>,
    pub source: Source,
    pub state: PeerState,
    /// When `state` last changed.
    pub since: Instant,
    pub last_heard: Option<Instant>,
    /// The incarnation and sequence number of its newest heartbeat, to drop
    /// reordered old ones and to notice restarts.
    incarnation: u64,
    last_seq: u64,
    /// Its latest self-report.
    pub report: Option<NodeReport>,
}

/// A state change worth an event and a log line.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    Up {
        host: String,
    },
    Down {
        host: String,
        /// `None` when it was never heard from at all.
        silent_for: Option<Duration>,
    },
    Left {
        host: String,
    },
    /// A new incarnation arrived while the peer was up: it restarted faster
    /// than `down_after`.
    Restarted {
        host: String,
    },
    Learned {
        host: String,
    },
    Forgotten {
        host: String,
    },
}

/// What `receive` asks of the shell besides the changes.
#[derive(Debug, Default, PartialEq)]
pub struct Received {
    pub changes: Vec<Change>,
    /// Answer with a heartbeat now rather than at the next interval, so a
    /// node that just came up sees us within one round trip.
    pub reply_now: bool,
}

#[derive(Debug)]
pub struct Membership {
    me: String,
    cluster: String,
    incarnation: u64,
    seq: u64,
    timing: Timing,
    peers: BTreeMap<String, Peer>,
}

impl Membership {
    /// `incarnation` must differ from any earlier run of this node; the shell
    /// uses a random number because a Pi has no real-time clock to trust.
    pub fn new(me: &str, cluster: &str, incarnation: u64, timing: Timing) -> Membership {
        Membership {
            me: me.to_owned(),
            cluster: cluster.to_owned(),
            incarnation,
            seq: 0,
            timing,
            peers: BTreeMap::new(),
        }
    }

    pub fn me(&self) -> &str {
        &self.me
    }

    pub fn timing(&self) -> Timing {
        self.timing
    }

    pub fn peers(&self) -> impl Iterator<Item = (&str, &Peer)> {
        self.peers.iter().map(|(h, p)| (h.as_str(), p))
    }

    /// Applies the cluster file's node list (at start and on reload): new
    /// nodes are added as unknown, moved ones get the new address, removed
    /// ones are forgotten unless they are still talking to us by pattern.
    pub fn set_seeds(
        &mut self,
        seeds: &[(String, SocketAddr)],
        timing: Timing,
        now: Instant,
    ) -> Vec<Change> {
        self.timing = timing;
        let mut changes = Vec::new();
        for (host, addr) in seeds.iter().filter(|(h, _)| *h != self.me) {
            let peer = self
                .peers
                .entry(host.clone())
                .or_insert_with(|| Peer::new(None, Source::ClusterFile, now));
            peer.gossip = Some(*addr);
            peer.source = Source::ClusterFile;
        }
        let removed: Vec<String> = self
            .peers
            .iter()
            .filter(|(h, p)| p.source == Source::ClusterFile && !seeds.iter().any(|(s, _)| s == *h))
            .map(|(h, _)| h.clone())
            .collect();
        for host in removed {
            self.peers.remove(&host);
            changes.push(Change::Forgotten { host });
        }
        changes
    }

    /// One heartbeat from the network, already decoded. `admit` says whether
    /// a hostname we do not know yet belongs to the cluster (a pattern).
    pub fn receive(
        &mut self,
        hb: Heartbeat,
        now: Instant,
        admit: impl Fn(&str) -> bool,
    ) -> Result<Received, DropReason> {
        if hb.from == self.me {
            return Err(DropReason::DuplicateHostname);
        }
        let mut out = Received::default();
        if !self.peers.contains_key(&hb.from) {
            if !admit(&hb.from) {
                return Err(DropReason::UnknownHost);
            }
            self.peers.insert(
                hb.from.clone(),
                Peer::new(Some(hb.gossip), Source::Learned, now),
            );
            out.changes.push(Change::Learned {
                host: hb.from.clone(),
            });
        }
        let Some(peer) = self.peers.get_mut(&hb.from) else {
            return Err(DropReason::UnknownHost);
        };
        let restarted = hb.incarnation != peer.incarnation;
        if !restarted && hb.seq <= peer.last_seq {
            return Err(DropReason::Stale);
        }
        if restarted && peer.incarnation != 0 && peer.state == PeerState::Up && !hb.leaving {
            out.changes.push(Change::Restarted {
                host: hb.from.clone(),
            });
        }
        peer.incarnation = hb.incarnation;
        peer.last_seq = hb.seq;
        peer.last_heard = Some(now);
        peer.report = Some(hb.report);
        if peer.source == Source::Learned {
            peer.gossip = Some(hb.gossip);
        }
        let next = if hb.leaving {
            PeerState::Left
        } else {
            PeerState::Up
        };
        if peer.state != next {
            peer.state = next;
            peer.since = now;
            let host = hb.from.clone();
            out.changes.push(match next {
                PeerState::Left => Change::Left { host },
                _ => Change::Up { host },
            });
            out.reply_now = next == PeerState::Up;
        }
        for listed in hb.peers {
            self.learn(listed, now, &admit, &mut out.changes);
        }
        Ok(out)
    }

    fn learn(
        &mut self,
        listed: PeerAddr,
        now: Instant,
        admit: &impl Fn(&str) -> bool,
        changes: &mut Vec<Change>,
    ) {
        if listed.hostname == self.me
            || self.peers.contains_key(&listed.hostname)
            || !admit(&listed.hostname)
        {
            return;
        }
        self.peers.insert(
            listed.hostname.clone(),
            Peer::new(Some(listed.gossip), Source::Learned, now),
        );
        changes.push(Change::Learned {
            host: listed.hostname,
        });
    }

    /// Applies the passage of time: silent peers go down, long-gone learned
    /// peers are forgotten. Call it a few times per heartbeat interval.
    pub fn tick(&mut self, now: Instant) -> Vec<Change> {
        let mut changes = Vec::new();
        let down_after = self.timing.down_after;
        for (host, peer) in self.peers.iter_mut() {
            let silent_for = now.saturating_duration_since(peer.last_heard.unwrap_or(peer.since));
            let goes_down = match peer.state {
                PeerState::Up | PeerState::Unknown => silent_for >= down_after,
                PeerState::Down | PeerState::Left => false,
            };
            if goes_down {
                changes.push(Change::Down {
                    host: host.clone(),
                    silent_for: peer.last_heard.map(|_| silent_for),
                });
                peer.state = PeerState::Down;
                peer.since = now;
            }
        }
        let forget: Vec<String> = self
            .peers
            .iter()
            .filter(|(_, p)| {
                p.source == Source::Learned
                    && matches!(p.state, PeerState::Down | PeerState::Left)
                    && now.saturating_duration_since(p.since) >= FORGET_AFTER
            })
            .map(|(h, _)| h.clone())
            .collect();
        for host in forget {
            self.peers.remove(&host);
            changes.push(Change::Forgotten { host });
        }
        changes
    }

    /// The next heartbeat and where it goes: to every peer with an address,
    /// down ones included, so that a node coming back hears from us at once.
    pub fn heartbeat(
        &mut self,
        gossip: SocketAddr,
        report: NodeReport,
        leaving: bool,
    ) -> (Heartbeat, Vec<SocketAddr>) {
        self.seq += 1;
        let peers = self
            .peers
            .iter()
            .filter(|(_, p)| p.state == PeerState::Up)
            .filter_map(|(h, p)| {
                p.gossip.map(|g| PeerAddr {
                    hostname: h.clone(),
                    gossip: g,
                })
            })
            .collect();
        let targets = self.peers.values().filter_map(|p| p.gossip).collect();
        let hb = Heartbeat {
            v: WIRE_VERSION,
            cluster: self.cluster.clone(),
            from: self.me.clone(),
            incarnation: self.incarnation,
            seq: self.seq,
            leaving,
            gossip,
            report,
            peers,
        };
        (hb, targets)
    }
}

impl Peer {
    fn new(gossip: Option<SocketAddr>, source: Source, now: Instant) -> Peer {
        Peer {
            gossip,
            source,
            state: PeerState::Unknown,
            since: now,
            last_heard: None,
            incarnation: 0,
            last_seq: 0,
            report: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: Duration = Duration::from_secs(1);
    const TIMING: Timing = Timing {
        heartbeat_interval: SEC,
        down_after: Duration::from_secs(3),
    };

    fn addr(n: u8) -> SocketAddr {
        SocketAddr::from(([192, 0, 2, n], 7946))
    }

    fn seeds() -> Vec<(String, SocketAddr)> {
        (1..=4).map(|n| (format!("pi-{n}"), addr(10 + n))).collect()
    }

    fn table(t0: Instant) -> Membership {
        let mut m = Membership::new("pi-1", "piha", 42, TIMING);
        m.set_seeds(&seeds(), TIMING, t0);
        m
    }

    /// A heartbeat as peer `host` would send it.
    fn hb(host: &str, incarnation: u64, seq: u64) -> Heartbeat {
        let n: u8 = host.trim_start_matches("pi-").parse().unwrap_or(99);
        Heartbeat {
            v: WIRE_VERSION,
            cluster: "piha".into(),
            from: host.into(),
            incarnation,
            seq,
            leaving: false,
            gossip: addr(10 + n),
            report: NodeReport::default(),
            peers: vec![],
        }
    }

    fn only_file(_: &str) -> bool {
        false
    }

    fn state(m: &Membership, host: &str) -> Option<PeerState> {
        m.peers().find(|(h, _)| *h == host).map(|(_, p)| p.state)
    }

    #[test]
    fn seeds_exclude_self_and_start_unknown() {
        let t0 = Instant::now();
        let m = table(t0);
        let hosts: Vec<_> = m.peers().map(|(h, _)| h.to_owned()).collect();
        assert_eq!(hosts, ["pi-2", "pi-3", "pi-4"]);
        assert!(m.peers().all(|(_, p)| p.state == PeerState::Unknown));
    }

    #[test]
    fn first_heartbeat_brings_peer_up_and_asks_for_a_reply() {
        let t0 = Instant::now();
        let mut m = table(t0);
        let r = m.receive(hb("pi-2", 7, 1), t0, only_file).unwrap();
        assert_eq!(
            r.changes,
            [Change::Up {
                host: "pi-2".into()
            }]
        );
        assert!(r.reply_now);
        assert_eq!(state(&m, "pi-2"), Some(PeerState::Up));
        // A second heartbeat changes nothing and needs no reply.
        let r = m.receive(hb("pi-2", 7, 2), t0 + SEC, only_file).unwrap();
        assert_eq!(r, Received::default());
    }

    #[test]
    fn silent_peer_goes_down_exactly_at_down_after() {
        let t0 = Instant::now();
        let mut m = table(t0);
        m.receive(hb("pi-2", 7, 1), t0, only_file).unwrap();
        let just_before = t0 + TIMING.down_after - Duration::from_millis(1);
        assert!(
            !m.tick(just_before)
                .iter()
                .any(|c| matches!(c, Change::Down { host, .. } if host == "pi-2"))
        );
        let changes = m.tick(t0 + TIMING.down_after);
        assert!(changes.contains(&Change::Down {
            host: "pi-2".into(),
            silent_for: Some(TIMING.down_after)
        }));
        assert_eq!(state(&m, "pi-2"), Some(PeerState::Down));
        // Going down is reported once.
        assert!(m.tick(t0 + 10 * SEC).is_empty());
    }

    #[test]
    fn never_heard_peer_is_down_after_down_after_from_start() {
        let t0 = Instant::now();
        let mut m = table(t0);
        let changes = m.tick(t0 + TIMING.down_after);
        assert_eq!(changes.len(), 3);
        assert!(changes.contains(&Change::Down {
            host: "pi-4".into(),
            silent_for: None
        }));
    }

    #[test]
    fn down_peer_comes_back_up() {
        let t0 = Instant::now();
        let mut m = table(t0);
        m.receive(hb("pi-3", 7, 1), t0, only_file).unwrap();
        m.tick(t0 + 5 * SEC);
        let r = m
            .receive(hb("pi-3", 8, 1), t0 + 6 * SEC, only_file)
            .unwrap();
        assert_eq!(
            r.changes,
            [Change::Up {
                host: "pi-3".into()
            }]
        );
        assert!(r.reply_now);
    }

    #[test]
    fn leaving_marks_left_at_once_and_never_down() {
        let t0 = Instant::now();
        let mut m = table(t0);
        m.receive(hb("pi-2", 7, 1), t0, only_file).unwrap();
        let mut bye = hb("pi-2", 7, 2);
        bye.leaving = true;
        let r = m.receive(bye, t0 + SEC, only_file).unwrap();
        assert_eq!(
            r.changes,
            [Change::Left {
                host: "pi-2".into()
            }]
        );
        assert!(
            m.tick(t0 + 10 * SEC)
                .iter()
                .all(|c| !matches!(c, Change::Down { host, .. } if host == "pi-2"))
        );
        assert_eq!(state(&m, "pi-2"), Some(PeerState::Left));
    }

    #[test]
    fn fast_restart_is_noticed_by_its_new_incarnation() {
        let t0 = Instant::now();
        let mut m = table(t0);
        m.receive(hb("pi-2", 7, 50), t0, only_file).unwrap();
        // Restarted within down_after: a new incarnation, sequence from 1.
        let r = m.receive(hb("pi-2", 99, 1), t0 + SEC, only_file).unwrap();
        assert_eq!(
            r.changes,
            [Change::Restarted {
                host: "pi-2".into()
            }]
        );
        assert_eq!(state(&m, "pi-2"), Some(PeerState::Up));
    }

    #[test]
    fn reordered_old_heartbeat_is_stale() {
        let t0 = Instant::now();
        let mut m = table(t0);
        m.receive(hb("pi-2", 7, 5), t0, only_file).unwrap();
        assert_eq!(
            m.receive(hb("pi-2", 7, 4), t0, only_file),
            Err(DropReason::Stale)
        );
        assert_eq!(
            m.receive(hb("pi-2", 7, 5), t0, only_file),
            Err(DropReason::Stale)
        );
    }

    #[test]
    fn own_hostname_from_the_network_is_a_duplicate() {
        let t0 = Instant::now();
        let mut m = table(t0);
        assert_eq!(
            m.receive(hb("pi-1", 5, 1), t0, only_file),
            Err(DropReason::DuplicateHostname)
        );
    }

    #[test]
    fn stranger_is_refused_unless_a_pattern_admits_it() {
        let t0 = Instant::now();
        let mut m = table(t0);
        assert_eq!(
            m.receive(hb("pi-5", 5, 1), t0, only_file),
            Err(DropReason::UnknownHost)
        );
        let by_pattern = |h: &str| h.starts_with("pi-");
        let r = m.receive(hb("pi-5", 5, 1), t0, by_pattern).unwrap();
        assert_eq!(
            r.changes,
            [
                Change::Learned {
                    host: "pi-5".into()
                },
                Change::Up {
                    host: "pi-5".into()
                }
            ]
        );
        let (_, targets) = m.heartbeat(addr(11), NodeReport::default(), false);
        assert!(targets.contains(&addr(15)));
    }

    #[test]
    fn peers_listed_by_a_peer_are_learned_and_greeted() {
        let t0 = Instant::now();
        let mut m = table(t0);
        let mut from_2 = hb("pi-2", 7, 1);
        from_2.peers = vec![
            PeerAddr {
                hostname: "pi-5".into(),
                gossip: addr(15),
            },
            PeerAddr {
                hostname: "pi-1".into(),
                gossip: addr(11),
            },
        ];
        let r = m.receive(from_2, t0, |h| h.starts_with("pi-")).unwrap();
        assert!(r.changes.contains(&Change::Learned {
            host: "pi-5".into()
        }));
        assert_eq!(state(&m, "pi-5"), Some(PeerState::Unknown));
        let (_, targets) = m.heartbeat(addr(11), NodeReport::default(), false);
        assert!(targets.contains(&addr(15)));
    }

    #[test]
    fn heartbeat_goes_to_every_peer_and_lists_only_up_ones() {
        let t0 = Instant::now();
        let mut m = table(t0);
        m.receive(hb("pi-2", 7, 1), t0, only_file).unwrap();
        let (hb1, targets) = m.heartbeat(addr(11), NodeReport::default(), false);
        assert_eq!(targets, [addr(12), addr(13), addr(14)]);
        assert_eq!(hb1.peers.len(), 1);
        assert_eq!(hb1.peers[0].hostname, "pi-2");
        let (hb2, _) = m.heartbeat(addr(11), NodeReport::default(), true);
        assert!(hb2.seq > hb1.seq);
        assert!(hb2.leaving);
    }

    #[test]
    fn learned_peer_is_forgotten_after_long_silence_but_file_peer_is_not() {
        let t0 = Instant::now();
        let mut m = table(t0);
        m.receive(hb("pi-5", 5, 1), t0, |_| true).unwrap();
        m.tick(t0 + 5 * SEC);
        let changes = m.tick(t0 + 5 * SEC + FORGET_AFTER);
        assert_eq!(
            changes,
            [Change::Forgotten {
                host: "pi-5".into()
            }]
        );
        assert_eq!(state(&m, "pi-4"), Some(PeerState::Down));
    }

    #[test]
    fn reload_adds_moves_and_removes_file_peers() {
        let t0 = Instant::now();
        let mut m = table(t0);
        let mut next = seeds();
        next.retain(|(h, _)| h != "pi-4");
        next[1].1 = addr(99);
        next.push(("pi-6".into(), addr(16)));
        let slower = Timing {
            heartbeat_interval: 2 * SEC,
            down_after: 6 * SEC,
        };
        let changes = m.set_seeds(&next, slower, t0);
        assert_eq!(
            changes,
            [Change::Forgotten {
                host: "pi-4".into()
            }]
        );
        assert_eq!(m.timing(), slower);
        let (_, targets) = m.heartbeat(addr(11), NodeReport::default(), false);
        assert_eq!(targets, [addr(99), addr(13), addr(16)]);
    }
}
