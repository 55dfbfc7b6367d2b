//! L4 TCP services (being written).

/// What the status page reaches of one running TCP service.
#[derive(Debug)]
pub struct Handle;
