//! Errors at the store's boundary. Each names the database path so a log line
//! alone tells the operator which file on which card is affected.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store directory is missing and cannot be created.
    #[error("cannot create store directory {path}: {source}")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Not even a fresh database could be opened at this path.
    #[error("cannot open database {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    /// Something a fresh file would not fix: another process holds the lock,
    /// the disk is full, memory ran out. The file is left untouched.
    #[error("cannot use database {path} (left untouched): {source}")]
    Environment {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    /// The unusable database could not be renamed or its WAL removed.
    #[error("cannot move unusable database {path} aside: {source}")]
    MoveAside {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A query or write failed at runtime.
    #[error("database {path}: {source}")]
    Sqlite {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    /// There is no usable database right now (a fresh one was unusable too, or
    /// recovery failed); the worker keeps trying on later flushes.
    #[error("database {path} is unavailable: {reason}")]
    Unavailable { path: PathBuf, reason: String },
    /// The worker thread has ended (shutdown, or all handles dropped).
    #[error("event store worker for {path} has stopped")]
    Closed { path: PathBuf },
    /// Too many queries/flushes are already waiting for the worker.
    #[error("event store worker for {path} is busy ({limit} requests already waiting)")]
    Busy { path: PathBuf, limit: usize },
    /// The worker thread could not be started.
    #[error("cannot start event store worker thread for {path}: {source}")]
    Spawn {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Shutdown did not finish in time; the thread is left to finish alone.
    #[error("event store worker for {path} did not stop within {timeout:?}")]
    ShutdownTimeout { path: PathBuf, timeout: Duration },
    /// The worker thread panicked (a bug); queued writes are lost.
    #[error("event store worker for {path} panicked")]
    WorkerPanicked { path: PathBuf },
}
