//! What every HTTP/1 front end of piha shares: the request-smuggling guard
//! (`framing`, sans IO) and the stream wrapper that applies it (`guarded`).

pub mod framing;
pub mod guarded;

pub use framing::{Framing, Verdict};
pub use guarded::GuardedIo;
