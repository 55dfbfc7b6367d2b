//! VRRP: the balancer nodes elect one master, which holds the VIP.
//!
//! - `packet`: adverts on the wire (v2/v3, IPv4/IPv6), decode with drop
//!   reasons, encode with either v3 IPv4 checksum.
//! - `machine`: the sans-IO state machine (Initialize / Backup / Master),
//!   driven by adverts, time and priority changes; returns actions.
//! - `io`: raw sockets, netlink, GARP/NA and the realtime thread underneath.

pub mod io;
pub mod machine;
pub mod packet;
