//! Membership: which nodes are alive, and what each reports (roles, health,
//! addresses, a few system figures). See `LIFECYCLE.md` for the states.
//!
//! Mechanism: direct heartbeats. Every node sends one small UDP datagram to
//! every other node once per interval and marks a peer down after
//! `down_after` of silence. With the 4 to ~20 nodes of a Pi cluster that is
//! at most a few hundred datagrams a second, detection time is exact and
//! independent of cluster size (SWIM's indirect probing exists to avoid the
//! O(n²) traffic of large clusters, which we do not have), and there is no
//! coordinator to lose: each node judges for itself. Heartbeats also carry the
//! peers a node sees up, so a fifth Pi that joins by a hostname pattern is
//! learned by all nodes after greeting any of them.

pub mod message;
pub mod service;
pub mod table;

pub use message::{DropReason, Heartbeat, NodeReport, SystemSummary};
pub use service::{MemberView, MembershipHandle, MembershipView};
pub use table::{Change, Membership, PeerState, Timing};
