//! What piha's HTTP/1 code shares: the request-smuggling guard (`framing`,
//! sans IO) and the stream wrapper that applies it (`guarded`), used by every
//! HTTP/1 front end; the chunked coding (`chunked`, sans IO), used by the
//! guard and by the balancer's backend connections.

pub mod chunked;
pub mod framing;
pub mod guarded;

pub use framing::{Framing, Verdict};
pub use guarded::GuardedIo;
