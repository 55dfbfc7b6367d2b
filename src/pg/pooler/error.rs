//! The pooler's one error type. Like Pingora's, it knows what the client
//! should be told (SQLSTATE and text) and whether trying another backend
//! could help, so callers never match on strings.

use std::net::SocketAddr;

use crate::pg::wire::WireError;
use crate::pg::wire::backend::sqlstate;

#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("cannot connect to PostgreSQL at {addr}: {reason}")]
    Connect { addr: SocketAddr, reason: String },
    /// PostgreSQL refused the login (wrong keys, no such database...):
    /// passed on to the client with PostgreSQL's own code.
    #[error("PostgreSQL at {addr} refused the login: {message}")]
    Login {
        addr: SocketAddr,
        code: String,
        message: String,
    },
    /// piha holds no credential that PostgreSQL accepts for this user.
    #[error("{0}")]
    NoCredential(String),
    #[error("PostgreSQL at {addr}: {source}")]
    Wire {
        addr: SocketAddr,
        #[source]
        source: WireError,
    },
    #[error("PostgreSQL at {addr} did not answer within {what}")]
    Timeout {
        addr: SocketAddr,
        what: &'static str,
    },
    #[error("no {0} is available")]
    NoBackend(&'static str),
    #[error("too many clients are waiting for a server connection ({0}); try again later")]
    QueueFull(u32),
    #[error("no server connection became free within {0:?}")]
    WaitTimeout(std::time::Duration),
    #[error("the query was canceled while waiting for a server connection")]
    Canceled,
    #[error("the pooler is shutting down")]
    Shutdown,
}

impl PoolError {
    /// The SQLSTATE a client sees.
    pub fn sqlstate(&self) -> &str {
        match self {
            PoolError::Login { code, .. } if !code.is_empty() => code,
            PoolError::Login { .. } | PoolError::NoCredential(_) => sqlstate::INVALID_PASSWORD,
            PoolError::QueueFull(_) | PoolError::WaitTimeout(_) => sqlstate::TOO_MANY_CONNECTIONS,
            PoolError::Canceled => sqlstate::QUERY_CANCELED,
            PoolError::Shutdown => sqlstate::ADMIN_SHUTDOWN,
            PoolError::NoBackend(_) => sqlstate::CANNOT_CONNECT_NOW,
            PoolError::Connect { .. } | PoolError::Wire { .. } | PoolError::Timeout { .. } => {
                sqlstate::CONNECTION_FAILURE
            }
        }
    }

    /// Whether the same request may be tried on another backend (or again):
    /// only when nothing of it reached a server.
    pub fn retry_allowed(&self) -> bool {
        matches!(
            self,
            PoolError::Connect { .. }
                | PoolError::Timeout {
                    what: "connect",
                    ..
                }
        )
    }
}
