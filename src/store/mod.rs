//! Event store: node events and metric samples in one SQLite file per node.
//!
//! Built for SD cards: one worker thread owns the connection and commits
//! buffered writes in one transaction per `flush_interval`, so the card sees
//! about one commit per interval. A corrupt database never stops the node: it
//! is moved aside (the newest three are kept for a post-mortem) and a fresh one
//! takes its place, at open and at runtime.
//!
//! Layout: [`handle`] (the cheap [`Store`] handle), [`worker`] (the thread that
//! owns the connection and batches writes), [`schema`] (pragmas, migrations),
//! [`db`] (SQL for rows), [`recovery`] (integrity check, move aside),
//! [`retention`] (age and size limits), [`sanitize`] (size caps on input).

mod db;
mod error;
mod handle;
mod recovery;
mod retention;
mod sanitize;
mod schema;
mod worker;

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use error::StoreError;
pub use handle::{
    MAX_EVENTS_PER_QUERY, MAX_SAMPLES_PER_CALL, MAX_SAMPLES_PER_QUERY, QUEUE_BYTES, QUEUE_ITEMS,
    RING_EVENTS, Store,
};
pub use retention::RetentionOutcome;
pub use sanitize::{MAX_DETAILS_BYTES, MAX_MESSAGE_BYTES, MAX_NAME_BYTES};
pub use schema::SCHEMA_VERSION;
pub use worker::{FLUSH_ROWS, StoreWorker};

/// Name of the database file inside the store directory.
pub const DB_FILE: &str = "piha.db";

/// How many moved-aside corrupt databases are kept; older ones are deleted so
/// repeated corruption cannot fill the card.
pub const KEEP_CORRUPT: usize = 3;

/// How bad an event is. Ordered, so `>= Severity::Warning` filters work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    Error,
}

impl Severity {
    /// The lowercase name, as stored in the database and used by serde.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }

    /// Parses the stored form; `None` for anything else.
    pub fn parse(s: &str) -> Option<Severity> {
        match s {
            "info" => Some(Severity::Info),
            "warning" => Some(Severity::Warning),
            "error" => Some(Severity::Error),
            _ => None,
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Something that happened on a node, worth showing an operator later.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Event {
    /// When it happened, Unix milliseconds (the caller's clock).
    pub at_ms: i64,
    /// Hostname of the node it happened on.
    pub node: String,
    /// Which part of piha reported it ("vrrp", "pg", "store", ...).
    pub component: String,
    /// How urgent it is; drives colour on the status page and alerting.
    pub severity: Severity,
    /// One line for humans; capped at [`MAX_MESSAGE_BYTES`].
    pub message: String,
    /// Structured context for tools; capped at [`MAX_DETAILS_BYTES`] of JSON.
    pub details: serde_json::Value,
}

/// One value of one metric series at one time.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Sample {
    /// Unix milliseconds.
    pub at_ms: i64,
    /// Series name ("cpu.load1", "disk./.used_bytes", ...).
    pub series: String,
    /// NaN round-trips (SQLite stores it as NULL).
    pub value: f64,
}

/// Limits and pacing; can be changed at runtime with [`Store::set_config`].
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// Rows older than this are deleted.
    pub retention: Duration,
    /// The database is trimmed (oldest samples first, then events) to stay
    /// under this many bytes of used pages. The WAL (a few MiB) comes on top.
    pub max_bytes: u64,
    /// Buffered writes are committed at most this often in steady state.
    pub flush_interval: Duration,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            retention: Duration::from_secs(7 * 24 * 3600),
            max_bytes: 64 << 20,
            flush_interval: Duration::from_secs(5),
        }
    }
}

/// What open() had to do; the caller turns `recovered` into an event.
#[derive(Debug, Clone)]
pub struct OpenReport {
    /// Set when the existing database was unusable and replaced by a fresh one.
    pub recovered: Option<Recovery>,
}

/// A corrupt or unusable database that was moved aside.
#[derive(Debug, Clone, Serialize)]
pub struct Recovery {
    /// Where the old file now is (`piha.db.corrupt-<unix_ms>`); its WAL, if
    /// any, sits next to it with a `-wal` suffix.
    pub moved_to: PathBuf,
    /// Why it was unusable (the SQLite error or the integrity check output).
    pub reason: String,
}

/// Counters for the status page and /metrics. A snapshot, not live.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StoreStats {
    /// Items accepted by `record*` and not yet committed (queue + batch).
    pub queued: u64,
    /// Items thrown away: queue full, worker gone, or a batch that kept failing.
    pub dropped: u64,
    /// Committed batches; about one per flush interval in steady state.
    pub flushes: u64,
    /// Unix ms of the last successful commit of a batch.
    pub last_flush_ms: Option<i64>,
    /// Size of the database file in pages (used and free), without the WAL.
    pub db_bytes: u64,
    /// Rows in the events table (kept up to date without counting).
    pub event_rows: u64,
    /// Rows in the samples table.
    pub sample_rows: u64,
    /// Failed attempts to commit a batch or run retention.
    pub write_errors: u64,
    /// Times this process replaced an unusable database: at open (also in
    /// `OpenReport`) and while running (also as an error event).
    pub recoveries: u64,
}

/// Opens (or creates) `<dir>/piha.db` and starts the worker thread.
///
/// A corrupt or unusable database is moved aside and replaced by a fresh one;
/// `OpenReport::recovered` then says so. Fails only when not even a fresh
/// database can be made (directory not writable, disk full, or the file is
/// locked by another process).
pub fn open(
    dir: &Path,
    config: StoreConfig,
) -> Result<(Store, StoreWorker, OpenReport), StoreError> {
    std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir {
        path: dir.to_path_buf(),
        source,
    })?;
    let path = dir.join(DB_FILE);
    let (opened, recovered) = recovery::open_or_recover(dir, &path)?;
    if let Some(r) = &recovered {
        tracing::warn!(
            moved_to = %r.moved_to.display(),
            reason = %r.reason,
            "event store was unusable; started a fresh database"
        );
    }
    let (store, worker) =
        worker::spawn(dir.to_path_buf(), path, opened, config, recovered.is_some())?;
    Ok((store, worker, OpenReport { recovered }))
}

/// Wall-clock Unix milliseconds; 0 if the clock is before 1970 (an RTC-less Pi
/// before NTP can be wrong, but never panics here).
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
