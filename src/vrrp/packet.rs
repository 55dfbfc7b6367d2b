//! VRRP advertisements on the wire: version 3 (RFC 9568, IPv4 and IPv6) and
//! version 2 (RFC 3768, IPv4, with the simple-text authentication of RFC
//! 2338 that keepalived still speaks). Decoding checks every receive-side
//! MUST of the RFCs and says which one failed; nothing here does IO.

use std::net::IpAddr;

/// The protocol version of an advert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Version {
    V2,
    V3,
}

/// What a VRRP advert says, independent of its encoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advert {
    pub version: Version,
    pub vrid: u8,
    /// 0 = the master is leaving; 255 = the address owner.
    pub priority: u8,
    /// Advert interval in centiseconds. Version 2 carries whole seconds,
    /// kept here as seconds × 100 so both versions share one unit.
    pub interval_cs: u16,
    pub addresses: Vec<IpAddr>,
}
