//! VRRP: the balancer nodes elect one master, which holds the VIP.
//!
//! - `packet`: adverts on the wire (v2/v3, IPv4/IPv6), decode with drop
//!   reasons, encode with either v3 IPv4 checksum.
//! - `machine`: the sans-IO state machine (Initialize / Backup / Master /
//!   Fault), driven by adverts, time and priority changes; returns actions.
//! - `io`: raw sockets, netlink (VIPs, links), gratuitous ARP / NA, the
//!   real-time thread.
//! - `instance`: the shell that runs a machine on the VRRP thread.
//! - `track` + `probes`: tracking of local services and check commands.
//! - `guard`: the child process that removes the VIPs if piha is killed.
//! - `notify`: ordered notify commands. `status`: what the page shows.
//! - `role`: the node service that ties them together.

pub mod guard;
pub mod instance;
pub mod io;
pub mod machine;
pub mod notify;
pub mod packet;
pub mod probes;
pub mod role;
pub mod status;
pub mod track;
