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

    /// Whether another server may be tried, for an error met while getting
    /// a server connection (the pooler's own login, before anything of the
    /// client's was sent): this server could not be reached, broke off, or
    /// is not taking logins now (starting up, shutting down: 57P03). A
    /// login refused for the user's keys or the database would be refused
    /// alike everywhere, and a full queue is not the server's fault, so
    /// those are not. An error once a client's statement was sent is never
    /// asked this: that statement may have run.
    pub fn server_unavailable(&self) -> bool {
        match self {
            PoolError::Connect { .. } | PoolError::Wire { .. } | PoolError::Timeout { .. } => true,
            PoolError::Login { code, .. } => code == sqlstate::CANNOT_CONNECT_NOW,
            _ => false,
        }
    }

    /// Whether the same request may find a server if it waits a little:
    /// none can take it now (no primary while a failover is under way, or
    /// every server down) or the one picked could not be reached. Nothing
    /// of the client's was sent, so trying again is safe, as PgBouncer's
    /// clients wait out a server that is down (query_wait_timeout).
    pub fn may_pass_later(&self) -> bool {
        matches!(self, PoolError::NoBackend(_)) || self.server_unavailable()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr() -> SocketAddr {
        "127.0.0.1:5432".parse().expect("addr")
    }

    fn login(code: &str) -> PoolError {
        PoolError::Login {
            addr: addr(),
            code: code.to_string(),
            message: "refused".to_string(),
        }
    }

    #[test]
    fn another_server_helps_only_when_this_one_is_not_taking_logins() {
        let unreachable = PoolError::Connect {
            addr: addr(),
            reason: "connection refused".to_string(),
        };
        assert!(unreachable.server_unavailable());
        let slow = PoolError::Timeout {
            addr: addr(),
            what: "connect",
        };
        assert!(slow.server_unavailable());
        // "the database system is shutting down" / "is starting up".
        assert!(login(sqlstate::CANNOT_CONNECT_NOW).server_unavailable());
        // Every server would refuse these alike.
        assert!(!login(sqlstate::INVALID_PASSWORD).server_unavailable());
        assert!(!login("3D000").server_unavailable());
        assert!(!PoolError::NoCredential("no keys".to_string()).server_unavailable());
        assert!(!PoolError::QueueFull(10).server_unavailable());
    }

    #[test]
    fn waiting_helps_when_no_server_can_take_the_request_yet() {
        // A failover under way, or the picked server unreachable.
        assert!(PoolError::NoBackend("primary").may_pass_later());
        assert!(
            PoolError::Connect {
                addr: addr(),
                reason: "connection refused".to_string(),
            }
            .may_pass_later()
        );
        assert!(login(sqlstate::CANNOT_CONNECT_NOW).may_pass_later());
        // The client's own wait is over, or waiting would not change it.
        assert!(!PoolError::WaitTimeout(std::time::Duration::from_secs(1)).may_pass_later());
        assert!(!PoolError::Canceled.may_pass_later());
        assert!(!PoolError::QueueFull(10).may_pass_later());
        assert!(!PoolError::Shutdown.may_pass_later());
        assert!(!login(sqlstate::INVALID_PASSWORD).may_pass_later());
    }
}
