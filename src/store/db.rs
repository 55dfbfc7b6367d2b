//! The SQL for rows: batch inserts and the read queries. Reads are tolerant:
//! a value the store did not write (bad JSON, unknown severity, NULL) is
//! mapped to something showable rather than failing the whole query.

use rusqlite::{Connection, Row, params};
use serde_json::Value;

use super::{Event, Sample, Severity};

/// One item from `record`/`record_samples`, waiting in the queue or batch.
#[derive(Debug)]
pub(crate) enum Write {
    Event(Box<QueuedEvent>),
    Samples {
        at_ms: i64,
        values: Vec<(String, f64)>,
    },
}

impl Write {
    /// Rows this item becomes; the batch is flushed early when rows pile up.
    pub fn rows(&self) -> usize {
        match self {
            Write::Event(_) => 1,
            Write::Samples { values, .. } => values.len(),
        }
    }
}

/// An event as queued: already capped, with its details serialized once.
#[derive(Debug)]
pub(crate) struct QueuedEvent {
    /// Capped; also what queries return before the batch commits.
    pub event: Event,
    /// `event.details` as JSON text, the form stored in the table.
    pub details_json: String,
}

const INSERT_EVENT: &str = "INSERT INTO events (at_ms, node, component, severity, message, details)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6)";
const INSERT_SAMPLE: &str = "INSERT INTO samples (at_ms, series, value) VALUES (?1, ?2, ?3)";
const EVENTS_SINCE: &str = "SELECT at_ms, node, component, severity, message, details FROM events
     WHERE at_ms >= ?1 ORDER BY at_ms, id LIMIT ?2";
const RECENT_EVENTS: &str = "SELECT at_ms, node, component, severity, message, details FROM events
     ORDER BY id DESC LIMIT ?1";
const SAMPLES_SINCE: &str = "SELECT at_ms, series, value FROM samples
     WHERE at_ms >= ?1 ORDER BY at_ms, rowid LIMIT ?2";

/// Compiled at open to prove the schema fits.
pub(crate) const ALL_STATEMENTS: &[&str] = &[
    INSERT_EVENT,
    INSERT_SAMPLE,
    EVENTS_SINCE,
    RECENT_EVENTS,
    SAMPLES_SINCE,
];

/// Rows a batch added, per table.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Inserted {
    /// Rows added to `events`.
    pub events: u64,
    /// Rows added to `samples`.
    pub samples: u64,
}

/// Writes the whole batch in one transaction: one commit, one WAL sync point.
pub(crate) fn insert_batch(conn: &mut Connection, batch: &[Write]) -> rusqlite::Result<Inserted> {
    let tx = conn.transaction()?;
    let mut n = Inserted::default();
    {
        let mut ins_event = tx.prepare_cached(INSERT_EVENT)?;
        let mut ins_sample = tx.prepare_cached(INSERT_SAMPLE)?;
        for write in batch {
            match write {
                Write::Event(q) => {
                    let e = &q.event;
                    ins_event.execute(params![
                        e.at_ms,
                        e.node,
                        e.component,
                        e.severity.as_str(),
                        e.message,
                        q.details_json
                    ])?;
                    n.events += 1;
                }
                Write::Samples { at_ms, values } => {
                    for (series, value) in values {
                        ins_sample.execute(params![at_ms, series, value])?;
                        n.samples += 1;
                    }
                }
            }
        }
    }
    tx.commit()?;
    Ok(n)
}

/// Events at or after `since_ms`, oldest first, at most `limit`.
pub(crate) fn events_since(
    conn: &Connection,
    since_ms: i64,
    limit: usize,
) -> rusqlite::Result<Vec<Event>> {
    let mut stmt = conn.prepare_cached(EVENTS_SINCE)?;
    let rows = stmt.query_map(params![since_ms, sql_limit(limit)], event_from_row)?;
    rows.collect()
}

/// The newest `limit` events, newest first (insertion order).
pub(crate) fn recent_events(conn: &Connection, limit: usize) -> rusqlite::Result<Vec<Event>> {
    let mut stmt = conn.prepare_cached(RECENT_EVENTS)?;
    let rows = stmt.query_map(params![sql_limit(limit)], event_from_row)?;
    rows.collect()
}

/// Samples at or after `since_ms`, oldest first, at most `limit`.
pub(crate) fn samples_since(
    conn: &Connection,
    since_ms: i64,
    limit: usize,
) -> rusqlite::Result<Vec<Sample>> {
    let mut stmt = conn.prepare_cached(SAMPLES_SINCE)?;
    let rows = stmt.query_map(params![since_ms, sql_limit(limit)], |row| {
        Ok(Sample {
            at_ms: row.get(0)?,
            series: row.get(1)?,
            // SQLite turns NaN into NULL on the way in.
            value: row.get::<_, Option<f64>>(2)?.unwrap_or(f64::NAN),
        })
    })?;
    rows.collect()
}

/// Exact row counts, once at open; the worker keeps them current after that.
pub(crate) fn row_counts(conn: &Connection) -> rusqlite::Result<(u64, u64)> {
    let events: i64 = conn.query_row("SELECT count(*) FROM events", [], |r| r.get(0))?;
    let samples: i64 = conn.query_row("SELECT count(*) FROM samples", [], |r| r.get(0))?;
    Ok((to_u64(events), to_u64(samples)))
}

/// File size in pages (used and free), without the WAL.
pub(crate) fn db_bytes(conn: &Connection) -> rusqlite::Result<u64> {
    let pages: i64 = conn.pragma_query_value(None, "page_count", |r| r.get(0))?;
    let size: i64 = conn.pragma_query_value(None, "page_size", |r| r.get(0))?;
    Ok(to_u64(pages).saturating_mul(to_u64(size)))
}

/// Bytes in pages that hold data; what `max_bytes` limits. Free pages do not
/// count: they are reused or handed back by incremental vacuum.
pub(crate) fn used_bytes(conn: &Connection) -> rusqlite::Result<u64> {
    let free: i64 = conn.pragma_query_value(None, "freelist_count", |r| r.get(0))?;
    let size: i64 = conn.pragma_query_value(None, "page_size", |r| r.get(0))?;
    let total = db_bytes(conn)?;
    Ok(total.saturating_sub(to_u64(free).saturating_mul(to_u64(size))))
}

pub(crate) fn to_u64(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

fn sql_limit(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

fn event_from_row(row: &Row<'_>) -> rusqlite::Result<Event> {
    let severity: String = row.get(3)?;
    let details: String = row.get(5)?;
    Ok(Event {
        at_ms: row.get(0)?,
        node: row.get(1)?,
        component: row.get(2)?,
        // Unknown means someone else wrote it; show it loudly, not hidden.
        severity: Severity::parse(&severity).unwrap_or(Severity::Error),
        message: row.get(4)?,
        details: serde_json::from_str(&details).unwrap_or(Value::String(details)),
    })
}
