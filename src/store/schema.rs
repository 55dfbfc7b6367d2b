//! Opening a database: integrity check, pragmas, migrations, and a check that
//! the tables have the shape the SQL in `db` expects. Everything that can go
//! wrong is sorted into "the file is unusable" (move it aside) or "the
//! environment is wrong" (leave the file alone and report).

use std::path::Path;
use std::time::Duration;

use rusqlite::config::DbConfig;
use rusqlite::{Connection, ErrorCode, OpenFlags};

use super::{Event, db};

/// The schema this binary writes. Bump it and append to `MIGRATIONS` to evolve.
pub const SCHEMA_VERSION: i32 = 1;

/// `MIGRATIONS[v]` takes a database from `user_version` v to v + 1. Each runs
/// in its own transaction together with the version bump.
const MIGRATIONS: &[&str] = &[
    // 0 -> 1. `id` is a plain rowid alias: AUTOINCREMENT would add a write to
    // sqlite_sequence on every commit for no gain here.
    "CREATE TABLE events (
        id INTEGER PRIMARY KEY,
        at_ms INTEGER NOT NULL,
        node TEXT NOT NULL,
        component TEXT NOT NULL,
        severity TEXT NOT NULL,
        message TEXT NOT NULL,
        details TEXT NOT NULL DEFAULT 'null'
    );
    CREATE INDEX events_at_ms ON events (at_ms);
    CREATE TABLE samples (
        at_ms INTEGER NOT NULL,
        series TEXT NOT NULL,
        value REAL
    );
    CREATE INDEX samples_at_ms ON samples (at_ms);",
];

/// How long a statement waits for a lock held by another connection (an
/// operator's sqlite3 shell) before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(2);

/// How many problems quick_check lists; the first few are enough for a reason.
const QUICK_CHECK_ROWS: u32 = 5;

/// A database ready for the worker, with what the handle needs preloaded.
pub(crate) struct Opened {
    /// Validated, configured, at `SCHEMA_VERSION`.
    pub conn: Connection,
    /// The newest events, newest first, to fill the in-memory ring.
    pub recent: Vec<Event>,
    /// Starting values for the stats counters of the same names.
    pub event_rows: u64,
    pub sample_rows: u64,
    pub db_bytes: u64,
}

/// Why a database could not be opened.
#[derive(Debug)]
pub(crate) enum OpenFailure {
    /// The file itself is bad (corrupt, not a database, unknown schema):
    /// moving it aside and starting fresh will help.
    Unusable {
        /// For the operator: which step failed and how.
        reason: String,
        /// The SQLite error, if there was one (quick_check output is not).
        source: Option<rusqlite::Error>,
    },
    /// Locked by another process, disk full, out of memory: a fresh file would
    /// not help, and moving a good file aside would lose data for nothing.
    Environment(rusqlite::Error),
}

impl OpenFailure {
    /// Sorts an error from one step of opening; the step goes into the reason
    /// so the operator learns whether the header, the check or a migration
    /// failed.
    fn at(step: &'static str) -> impl FnOnce(rusqlite::Error) -> OpenFailure {
        move |e| match OpenFailure::from(e) {
            OpenFailure::Unusable { reason, source } => OpenFailure::Unusable {
                reason: format!("{step}: {reason}"),
                source,
            },
            env => env,
        }
    }
}

impl From<rusqlite::Error> for OpenFailure {
    fn from(e: rusqlite::Error) -> Self {
        match e.sqlite_error_code() {
            Some(
                ErrorCode::DatabaseBusy
                | ErrorCode::DatabaseLocked
                | ErrorCode::DiskFull
                | ErrorCode::OutOfMemory,
            ) => OpenFailure::Environment(e),
            _ => OpenFailure::Unusable {
                reason: e.to_string(),
                source: Some(e),
            },
        }
    }
}

fn unusable(reason: String) -> OpenFailure {
    OpenFailure::Unusable {
        reason,
        source: None,
    }
}

/// Opens `path`, creating it if missing, and makes sure it is usable.
pub(crate) fn open_validated(path: &Path, ring_size: usize) -> Result<Opened, OpenFailure> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let mut conn = Connection::open_with_flags(path, flags).map_err(OpenFailure::at("open"))?;
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(OpenFailure::at("open"))?;
    // If this file turns out bad, closing must not checkpoint its WAL into it
    // (and delete the WAL): both go aside exactly as found.
    set_checkpoint_on_close(&conn, false).map_err(OpenFailure::at("open"))?;
    // Check before any pragma writes, so a bad file is moved aside unchanged.
    quick_check(&conn)?;
    configure(&conn).map_err(OpenFailure::at("configure"))?;
    migrate(&mut conn)?;
    check_statements(&conn)?;
    let load = OpenFailure::at("load");
    let loaded = (|| {
        let recent = db::recent_events(&conn, ring_size)?;
        let (event_rows, sample_rows) = db::row_counts(&conn)?;
        let db_bytes = db::db_bytes(&conn)?;
        Ok((recent, event_rows, sample_rows, db_bytes))
    })();
    let (recent, event_rows, sample_rows, db_bytes) = loaded.map_err(load)?;
    // A good file: a clean close folds the WAL in and removes it.
    set_checkpoint_on_close(&conn, true).map_err(OpenFailure::at("configure"))?;
    Ok(Opened {
        conn,
        recent,
        event_rows,
        sample_rows,
        db_bytes,
    })
}

/// Whether closing the connection checkpoints (and then deletes) the WAL.
pub(crate) fn set_checkpoint_on_close(conn: &Connection, on: bool) -> rusqlite::Result<()> {
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, !on)
        .map(|_| ())
}

/// `PRAGMA quick_check`: O(N) but skips the index-content cross-check of
/// integrity_check, which on a Pi is the difference between seconds and
/// minutes at boot.
fn quick_check(conn: &Connection) -> Result<(), OpenFailure> {
    let rows = conn
        .prepare(&format!("PRAGMA quick_check({QUICK_CHECK_ROWS})"))
        .and_then(|mut stmt| {
            stmt.query_map([], |row| row.get::<_, String>(0))?
                .collect::<Result<Vec<_>, _>>()
        })
        .map_err(OpenFailure::at("quick_check"))?;
    if rows.len() == 1 && rows[0] == "ok" {
        return Ok(());
    }
    let mut reason = format!("quick_check failed: {}", rows.join("; "));
    super::sanitize::cap_text(&mut reason, 1024);
    Err(unusable(reason))
}

/// Pragmas for an SD card. `auto_vacuum` first: it only takes effect before
/// the first table exists (and on an existing database it is a no-op).
fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch("PRAGMA auto_vacuum = INCREMENTAL;")?;
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        // Still usable (rollback journal), just more writes per commit.
        tracing::warn!(%mode, "event store could not switch to WAL mode");
    }
    conn.execute_batch(
        // NORMAL in WAL mode: a power cut may lose the last commit, never
        // corrupts; it saves an fsync per commit. The WAL is cut back to 4 MiB
        // after checkpoints so it cannot keep a large file around; temp data
        // (sorts) stays in RAM, off the card.
        "PRAGMA synchronous = NORMAL;
         PRAGMA journal_size_limit = 4194304;
         PRAGMA temp_store = MEMORY;",
    )
}

/// Brings the schema to `SCHEMA_VERSION`. A version newer than this binary
/// knows (a downgrade) is treated as unusable: guessing at a future schema
/// would be worse than starting fresh, and the old file is kept aside.
pub(crate) fn migrate(conn: &mut Connection) -> Result<(), OpenFailure> {
    let version: i32 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(OpenFailure::at("read schema version"))?;
    if !(0..=SCHEMA_VERSION).contains(&version) {
        return Err(unusable(format!(
            "schema version {version} is not one this binary knows (0..={SCHEMA_VERSION})"
        )));
    }
    for from in version..SCHEMA_VERSION {
        let sql = usize::try_from(from)
            .ok()
            .and_then(|i| MIGRATIONS.get(i))
            .ok_or_else(|| unusable(format!("no migration from schema version {from}")))?;
        let step = (|| {
            let tx = conn.transaction()?;
            tx.execute_batch(sql)?;
            tx.pragma_update(None, "user_version", from + 1)?;
            tx.commit()
        })();
        step.map_err(OpenFailure::at("migrate"))?;
        tracing::info!(from, to = from + 1, "event store schema migrated");
    }
    Ok(())
}

/// Compiles every statement the store uses, so a table someone altered by hand
/// is found now, at open, not as a failed write later.
fn check_statements(conn: &Connection) -> Result<(), OpenFailure> {
    for sql in db::ALL_STATEMENTS {
        conn.prepare_cached(sql).map_err(|e| {
            unusable(format!(
                "schema does not match what this binary expects: {e}"
            ))
        })?;
    }
    Ok(())
}
