//! VRRP: the balancer nodes elect one master, which holds the VIP.
//!
//! - `packet`: adverts on the wire (v2/v3, IPv4/IPv6), decode with drop
//!   reasons, encode with either v3 IPv4 checksum.
//! - `machine`: the sans-IO state machine (Initialize / Backup / Master /
//!   Fault), driven by adverts, time and priority changes; returns actions.
//! - `io`: raw sockets, netlink (VIPs, links), gratuitous ARP / NA, the
//!   real-time thread.
//! - `track`: tracking of local services and check commands.
//! - `status`: what the page shows.

pub mod io;
pub mod machine;
pub mod packet;
pub mod status;
pub mod track;
