//! Keeps the database bounded in age and size. One run is one transaction (one
//! commit for the card) and has a time budget; when the budget runs out the
//! worker comes back soon instead of stalling writes behind a long delete.

use std::time::{Duration, Instant};

use rusqlite::{Connection, params};
use serde::Serialize;

use super::{StoreConfig, db};

/// Rows deleted per statement: small enough that one statement is quick on a
/// Pi, large enough that a big backlog needs few round trips.
const CHUNK_ROWS: i64 = 5000;

/// What one retention run did.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct RetentionOutcome {
    /// Events deleted for being older than `retention`.
    pub expired_events: u64,
    /// Samples deleted for being older than `retention`.
    pub expired_samples: u64,
    /// Events deleted (oldest first) to get under `max_bytes`.
    pub trimmed_events: u64,
    /// Samples deleted (oldest first) to get under `max_bytes`.
    pub trimmed_samples: u64,
    /// Free pages handed back to the filesystem by incremental vacuum.
    pub vacuumed_pages: u64,
    /// False when the time budget ran out before both limits were met.
    pub complete: bool,
}

impl RetentionOutcome {
    pub fn deleted_events(&self) -> u64 {
        self.expired_events + self.trimmed_events
    }

    pub fn deleted_samples(&self) -> u64 {
        self.expired_samples + self.trimmed_samples
    }
}

/// Deletes by age, then by size, then returns free pages to the filesystem.
pub(crate) fn run(
    conn: &mut Connection,
    config: &StoreConfig,
    now_ms: i64,
    budget: Duration,
) -> rusqlite::Result<RetentionOutcome> {
    let deadline = Instant::now() + budget;
    let retention_ms = i64::try_from(config.retention.as_millis()).unwrap_or(i64::MAX);
    let cutoff = now_ms.saturating_sub(retention_ms);
    let mut out = RetentionOutcome::default();
    let tx = conn.transaction()?;

    let expired_samples = delete_chunks(
        &tx,
        "DELETE FROM samples WHERE rowid IN (SELECT rowid FROM samples WHERE at_ms < ?1 LIMIT ?2)",
        cutoff,
        deadline,
    )?;
    out.expired_samples = expired_samples.0;
    let expired_events = delete_chunks(
        &tx,
        "DELETE FROM events WHERE id IN (SELECT id FROM events WHERE at_ms < ?1 LIMIT ?2)",
        cutoff,
        deadline,
    )?;
    out.expired_events = expired_events.0;
    let age_done = expired_samples.1 && expired_events.1;

    let size_done = trim_to_size(&tx, config.max_bytes, deadline, &mut out)?;

    out.vacuumed_pages = incremental_vacuum(&tx)?;
    tx.commit()?;
    out.complete = age_done && size_done;
    Ok(out)
}

/// Repeats a chunked delete until it deletes nothing or time runs out.
/// Returns (rows deleted, finished).
fn delete_chunks(
    conn: &Connection,
    sql: &str,
    cutoff: i64,
    deadline: Instant,
) -> rusqlite::Result<(u64, bool)> {
    let mut stmt = conn.prepare_cached(sql)?;
    let mut total = 0u64;
    loop {
        if Instant::now() >= deadline {
            return Ok((total, false));
        }
        let n = stmt.execute(params![cutoff, CHUNK_ROWS])?;
        total += n as u64;
        if (n as i64) < CHUNK_ROWS {
            return Ok((total, true));
        }
    }
}

/// Deletes the oldest samples, then the oldest events, until the used pages
/// fit in `max_bytes`. Returns whether it got there (or ran out of rows).
fn trim_to_size(
    conn: &Connection,
    max_bytes: u64,
    deadline: Instant,
    out: &mut RetentionOutcome,
) -> rusqlite::Result<bool> {
    let mut oldest_samples = conn.prepare_cached(
        "DELETE FROM samples WHERE rowid IN (SELECT rowid FROM samples ORDER BY at_ms LIMIT ?1)",
    )?;
    let mut oldest_events = conn.prepare_cached(
        "DELETE FROM events WHERE id IN (SELECT id FROM events ORDER BY at_ms, id LIMIT ?1)",
    )?;
    loop {
        let used = db::used_bytes(conn)?;
        if used <= max_bytes {
            return Ok(true);
        }
        if Instant::now() >= deadline {
            return Ok(false);
        }
        let over = used - max_bytes;
        let deleted = oldest_samples.execute(params![chunk_for(conn, "samples", over, used)?])?;
        if deleted > 0 {
            out.trimmed_samples += deleted as u64;
            continue;
        }
        let deleted = oldest_events.execute(params![chunk_for(conn, "events", over, used)?])?;
        if deleted == 0 {
            // Only the schema is left; nothing more to give.
            return Ok(true);
        }
        out.trimmed_events += deleted as u64;
    }
}

/// Rows to delete to free about `over` bytes, assuming the table holds all
/// `used` bytes. Other tables make that an underestimate, so the loop closes
/// in from below instead of deleting far more than needed. Rowids grow with
/// time and are deleted from the old end, so their span counts rows in
/// O(log n) where `count(*)` would scan the table.
fn chunk_for(conn: &Connection, table: &str, over: u64, used: u64) -> rusqlite::Result<i64> {
    let span: i64 = conn.query_row(
        &format!("SELECT coalesce(max(rowid) - min(rowid) + 1, 0) FROM {table}"),
        [],
        |r| r.get(0),
    )?;
    let rows = u128::from(db::to_u64(span));
    let estimate = rows * u128::from(over) / u128::from(used.max(1));
    Ok(i64::try_from(estimate)
        .unwrap_or(CHUNK_ROWS)
        .clamp(16, CHUNK_ROWS))
}

/// `PRAGMA incremental_vacuum` frees one page per step (it returns a row per
/// page), so it must be stepped to the end; `execute_batch` would free one.
fn incremental_vacuum(conn: &Connection) -> rusqlite::Result<u64> {
    let mut stmt = conn.prepare("PRAGMA incremental_vacuum")?;
    let mut rows = stmt.query([])?;
    let mut pages = 0u64;
    while rows.next()?.is_some() {
        pages += 1;
    }
    Ok(pages)
}
