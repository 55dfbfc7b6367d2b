//! HTTP load balancer (being written).

mod framing;
mod headers;
mod stats;

/// What the status page and admin API reach of the running HTTP balancer.
#[derive(Debug)]
pub struct Handle;
