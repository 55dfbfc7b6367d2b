//! What the VRRP instance shows of itself: the status page's panel, the JSON
//! API's `vrrp` section and the `piha_vrrp_*` metrics all read this one
//! snapshot, which the instance thread publishes after every change.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::Serialize;

use super::machine::{Reason, State};
use super::packet::Version;

#[derive(Debug, Clone, Serialize)]
pub struct VrrpStatus {
    /// "vrid 51 on eth0", for logs and the page.
    pub name: String,
    pub version: Version,
    pub vrid: u8,
    pub interface: String,
    pub state: State,
    pub configured_priority: u8,
    pub effective_priority: u8,
    /// Our advert interval and the master's (learned in v3), in ms.
    pub interval_ms: u64,
    pub master_interval_ms: u64,
    /// The current master's address and priority, if known.
    pub master: Option<MasterInfo>,
    pub vips: Vec<String>,
    /// "multicast" or "unicast".
    pub mode: &'static str,
    /// The v3 IPv4 checksum we send: "pseudo_header" or "message_only".
    pub checksum: &'static str,
    /// Whether the VRRP thread got real-time scheduling, and if not why.
    pub scheduling: String,
    pub last_transition: Option<TransitionInfo>,
    /// Why the priority is lowered: tracked item → weight lost.
    pub tracking: BTreeMap<String, TrackInfo>,
    pub counters: Counters,
}

#[derive(Debug, Clone, Serialize)]
pub struct MasterInfo {
    pub address: IpAddr,
    pub priority: u8,
}

#[derive(Debug, Clone, Serialize)]
pub struct TransitionInfo {
    pub from: State,
    pub to: State,
    pub reason: Reason,
    pub at_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TrackInfo {
    pub healthy: bool,
    /// Priority lost while failing; 0 = Fault.
    pub weight: u8,
    pub detail: String,
}

/// RFC 6527's statistics, more or less, plus drops by reason.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Counters {
    pub adverts_sent: u64,
    pub adverts_received: u64,
    pub priority_zero_sent: u64,
    pub priority_zero_received: u64,
    pub became_master: u64,
    pub announcements_sent: u64,
    /// Adverts that failed a check, by reason (`packet::Drop` names and
    /// `not_a_peer`), every reason present from the start.
    pub dropped: BTreeMap<&'static str, u64>,
    /// Sends, receives or netlink calls that failed.
    pub io_errors: u64,
    /// Connections on the VIP reset as it left this node.
    pub connections_reset: u64,
}
