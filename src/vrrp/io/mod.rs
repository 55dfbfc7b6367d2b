//! The IO layer under the VRRP state machine: it moves bytes and asks the
//! kernel for things, and decides nothing.
//!
//! - `socket`: raw IP protocol 112 sockets that send and receive adverts.
//! - `netlink`: links, addresses and VIPs through rtnetlink; link events.
//! - `announce`: gratuitous ARP and unsolicited neighbour advertisements.
//! - `realtime`: the dedicated SCHED_FIFO thread the VRRP engine runs on.
//!
//! Everything here needs CAP_NET_RAW and CAP_NET_ADMIN (realtime wants
//! CAP_SYS_NICE, and degrades without it).

pub mod announce;
pub mod netlink;
pub mod realtime;
pub mod socket;
mod sys;
