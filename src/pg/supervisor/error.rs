//! The db role's one error type. Each variant says whether trying again can
//! help (`retryable`): a PostgreSQL program that failed or a peer that is
//! not there yet may work on the next attempt; a foreign data directory or
//! a missing admin token will not, and the role says so and waits for an
//! operator instead of looping.

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The cluster file lacks something the role needs.
    #[error("{0}")]
    Config(String),
    /// The data directory is not one this role may use as it is.
    #[error("{0}")]
    DataDir(String),
    /// A PostgreSQL program exited with an error.
    #[error("{program} failed ({status}): {output}")]
    Program {
        program: String,
        status: String,
        /// The end of its stderr and stdout.
        output: String,
    },
    #[error("{program} did not finish within {limit_s} s and was killed")]
    Timeout { program: String, limit_s: u64 },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// A query to the local server failed.
    #[error("local PostgreSQL: {0}")]
    Sql(String),
    /// A request that makes no sense in the current state (promote a
    /// primary, follow oneself).
    #[error("{0}")]
    Refused(String),
}

impl DbError {
    pub fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> DbError {
        let what = what.into();
        move |source| DbError::Io { what, source }
    }

    /// Whether the same step may succeed if tried again later.
    pub fn retryable(&self) -> bool {
        match self {
            DbError::Config(_) | DbError::DataDir(_) | DbError::Refused(_) => false,
            DbError::Program { .. } | DbError::Timeout { .. } | DbError::Io { .. } => true,
            DbError::Sql(_) => true,
        }
    }
}

impl From<tokio_postgres::Error> for DbError {
    fn from(e: tokio_postgres::Error) -> DbError {
        // The server's own message (and SQLSTATE) when it sent one.
        match e.as_db_error() {
            Some(db) => DbError::Sql(format!("{} ({})", db.message(), db.code().code())),
            None => DbError::Sql(e.to_string()),
        }
    }
}
