use std::io;

/// What can go wrong reading the wire. Every variant names the fault so the
/// peer (or the log) learns what was wrong.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("connection closed")]
    Closed,
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("{what} of {len} bytes is larger than the limit of {max} bytes")]
    TooLarge {
        what: &'static str,
        len: usize,
        max: usize,
    },
    #[error("malformed {0}")]
    Malformed(&'static str),
    #[error("unsupported frontend protocol {major}.{minor}: piha speaks 3.0")]
    UnsupportedProtocol { major: u16, minor: u16 },
    #[error("timed out waiting for {0}")]
    Timeout(&'static str),
}
