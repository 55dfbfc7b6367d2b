//! The heartbeat datagram: what a node tells every peer about itself once per
//! interval. JSON, because a person debugging a Pi with `tcpdump -A` can read
//! it, and at four to a dozen nodes once a second the size does not matter.
//! Every field a peer sends is bounded and checked before it is believed.

use std::net::{IpAddr, SocketAddr};

use serde::{Deserialize, Serialize};

/// Largest datagram we send or accept. Well under a 1500-byte MTU is not
/// needed (the kernel fragments UDP), but a bound is: a peer cannot make us
/// parse megabytes.
pub const MAX_DATAGRAM: usize = 8 * 1024;
/// Wire format version; a node drops what it cannot read and says why.
pub const WIRE_VERSION: u32 = 1;
const MAX_PEERS_LISTED: usize = 64;
const MAX_SHORT_STRING: usize = 64;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Heartbeat {
    pub v: u32,
    /// Cluster name: two clusters on one LAN must never merge.
    pub cluster: String,
    /// Sender's hostname, its identity in the cluster.
    pub from: String,
    /// The sender's start time (unix ms). A new value means the process
    /// restarted, even if it came back faster than `down_after`.
    pub incarnation: u64,
    /// Increases with every heartbeat of one incarnation; older ones are
    /// stale (UDP reorders) and ignored.
    pub seq: u64,
    /// Sent once on a graceful stop so peers mark the node "left" at once
    /// instead of waiting out the timeout (as VRRP's priority-0 advert does).
    #[serde(default)]
    pub leaving: bool,
    /// Where the sender listens for heartbeats.
    pub gossip: SocketAddr,
    pub report: NodeReport,
    /// Peers the sender currently sees up, so a node that joined by a
    /// hostname pattern becomes known to everyone, not only to the nodes it
    /// greeted first.
    #[serde(default)]
    pub peers: Vec<PeerAddr>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeerAddr {
    pub hostname: String,
    pub gossip: SocketAddr,
}

/// What a node reports about itself: shown on every other node's status page.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeReport {
    pub address: Option<IpAddr>,
    pub admin_port: u16,
    pub version: String,
    pub config_hash: String,
    pub roles: Vec<String>,
    /// (role, health state) as the node itself sees it.
    #[serde(default)]
    pub role_health: Vec<(String, String)>,
    pub system: Option<SystemSummary>,
    /// The db role's state, on db nodes.
    #[serde(default)]
    pub db: Option<crate::pg::supervisor::status::DbReport>,
    /// Whether this node is the VRRP master right now: the one node that
    /// may make cluster decisions (promote a standby, run a switchover).
    #[serde(default)]
    pub vrrp_master: bool,
}

/// The few system figures a cluster overview needs; the full series stay on
/// the node itself.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SystemSummary {
    pub cpu_percent: f64,
    pub memory_percent: f64,
    pub temperature_c: Option<f64>,
    pub load1: f64,
    pub uptime_s: u64,
}

/// Why a datagram was dropped; counted per reason in /metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, thiserror::Error)]
pub enum DropReason {
    #[error("datagram larger than {MAX_DATAGRAM} bytes")]
    TooLarge,
    #[error("not a heartbeat (malformed JSON or missing fields)")]
    Malformed,
    #[error("unsupported wire version")]
    Version,
    #[error("heartbeat from another cluster")]
    OtherCluster,
    #[error("field out of bounds (hostname, string or list too long)")]
    OutOfBounds,
    #[error("sender not in the cluster file and matching no pattern")]
    UnknownHost,
    #[error("another node claims this node's hostname")]
    DuplicateHostname,
    #[error("stale heartbeat (older sequence number)")]
    Stale,
}

impl DropReason {
    pub const ALL: [DropReason; 8] = [
        DropReason::TooLarge,
        DropReason::Malformed,
        DropReason::Version,
        DropReason::OtherCluster,
        DropReason::OutOfBounds,
        DropReason::UnknownHost,
        DropReason::DuplicateHostname,
        DropReason::Stale,
    ];

    /// Label value for /metrics.
    pub fn label(self) -> &'static str {
        match self {
            DropReason::TooLarge => "too_large",
            DropReason::Malformed => "malformed",
            DropReason::Version => "version",
            DropReason::OtherCluster => "other_cluster",
            DropReason::OutOfBounds => "out_of_bounds",
            DropReason::UnknownHost => "unknown_host",
            DropReason::DuplicateHostname => "duplicate_hostname",
            DropReason::Stale => "stale",
        }
    }
}

impl Heartbeat {
    pub fn encode(&self) -> Vec<u8> {
        // Serializing plain data structs cannot fail; an empty datagram would
        // be dropped by every peer as malformed, which is the safe outcome.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Parses and bounds-checks one datagram from `cluster`'s peers.
    pub fn decode(bytes: &[u8], cluster: &str) -> Result<Heartbeat, DropReason> {
        if bytes.len() > MAX_DATAGRAM {
            return Err(DropReason::TooLarge);
        }
        let hb: Heartbeat = serde_json::from_slice(bytes).map_err(|_| DropReason::Malformed)?;
        if hb.v != WIRE_VERSION {
            return Err(DropReason::Version);
        }
        if hb.cluster != cluster {
            return Err(DropReason::OtherCluster);
        }
        hb.check_bounds()?;
        Ok(hb)
    }

    fn check_bounds(&self) -> Result<(), DropReason> {
        let short = |s: &str| s.len() <= MAX_SHORT_STRING;
        let ok = is_hostname(&self.from)
            && self.peers.len() <= MAX_PEERS_LISTED
            && self.peers.iter().all(|p| is_hostname(&p.hostname))
            && short(&self.report.version)
            && short(&self.report.config_hash)
            && self.report.roles.len() <= 8
            && self.report.roles.iter().all(|r| short(r))
            && self.report.role_health.len() <= 8
            && self
                .report
                .role_health
                .iter()
                .all(|(r, s)| short(r) && short(s))
            && self.report.db.as_ref().is_none_or(|d| d.within_bounds());
        if ok {
            Ok(())
        } else {
            Err(DropReason::OutOfBounds)
        }
    }
}

/// An RFC 1123 label, as the cluster file requires of hostnames.
pub fn is_hostname(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && !s.starts_with('-')
        && !s.ends_with('-')
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Heartbeat {
        Heartbeat {
            v: WIRE_VERSION,
            cluster: "piha".into(),
            from: "pi-1".into(),
            incarnation: 1,
            seq: 7,
            leaving: false,
            gossip: "192.0.2.11:7946".parse().unwrap(),
            report: NodeReport {
                roles: vec!["web".into()],
                ..NodeReport::default()
            },
            peers: vec![],
        }
    }

    #[test]
    fn round_trips() {
        let hb = sample();
        assert_eq!(Heartbeat::decode(&hb.encode(), "piha"), Ok(hb));
    }

    #[test]
    fn rejects_by_reason() {
        let hb = sample();
        assert_eq!(
            Heartbeat::decode(&hb.encode(), "other"),
            Err(DropReason::OtherCluster)
        );
        assert_eq!(
            Heartbeat::decode(b"\x00\xffnot json", "piha"),
            Err(DropReason::Malformed)
        );
        assert_eq!(
            Heartbeat::decode(&vec![b' '; MAX_DATAGRAM + 1], "piha"),
            Err(DropReason::TooLarge)
        );
        let mut bad = sample();
        bad.v = 99;
        assert_eq!(
            Heartbeat::decode(&bad.encode(), "piha"),
            Err(DropReason::Version)
        );
        let mut bad = sample();
        bad.from = "Not A Host!".into();
        assert_eq!(
            Heartbeat::decode(&bad.encode(), "piha"),
            Err(DropReason::OutOfBounds)
        );
        let mut bad = sample();
        bad.report.version = "x".repeat(1000);
        assert_eq!(
            Heartbeat::decode(&bad.encode(), "piha"),
            Err(DropReason::OutOfBounds)
        );
    }

    #[test]
    fn hostnames() {
        assert!(is_hostname("pi-1"));
        assert!(!is_hostname("-pi"));
        assert!(!is_hostname("PI"));
        assert!(!is_hostname(&"a".repeat(64)));
    }
}
