//! The worker thread: sole owner of the connection. It gathers writes into a
//! batch and commits the batch in one transaction per flush interval (or
//! earlier when it gets large), answers queries, runs retention, and replaces
//! the database if SQLite reports it corrupt.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, TrySendError};
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::Connection;
use serde_json::json;
use tokio::sync::oneshot;

use super::db::{self, Inserted, QueuedEvent, Write};
use super::handle::{
    CONTROL_SLOTS, Inner, MAX_SAMPLES_PER_QUERY, QUEUE_ITEMS, Shared, Store, lock,
};
use super::retention::{self, RetentionOutcome};
use super::schema::{self, Opened};
use super::{Event, Sample, Severity, StoreConfig, StoreError, now_ms, recovery, sanitize};

/// Rows that make a batch flush before its interval is up.
pub const FLUSH_ROWS: usize = 1000;
/// Rows kept while commits keep failing; further writes are dropped, so a
/// dead card cannot make the worker eat the Pi's memory.
const MAX_BATCH_ROWS: usize = 10 * FLUSH_ROWS;
/// Failed commits of one batch before it is given up (and counted dropped).
const MAX_ATTEMPTS: u32 = 3;
/// How often retention runs in steady state.
const RETENTION_EVERY: Duration = Duration::from_secs(300);
/// Time budget of one retention run.
const RETENTION_BUDGET: Duration = Duration::from_secs(2);
/// Least time between attempts to reopen after a failed recovery: each
/// attempt runs quick_check, and queries must not trigger one apiece.
const REOPEN_BACKOFF: Duration = Duration::from_secs(5);
/// Never sleep less than this between batch flushes, whatever the config says:
/// a zero interval would turn every record into a commit.
const MIN_FLUSH_INTERVAL: Duration = Duration::from_millis(10);

pub(crate) type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

/// Messages from `Store` handles to the worker.
pub(crate) enum Command {
    /// `bytes` is what the handle reserved in the queue gate.
    Write {
        write: Write,
        bytes: usize,
    },
    Flush(Reply<()>),
    EventsSince {
        since_ms: i64,
        limit: usize,
        reply: Reply<Vec<Event>>,
    },
    SamplesSince {
        since_ms: i64,
        reply: Reply<Vec<Sample>>,
    },
    RunRetention(Reply<RetentionOutcome>),
    /// A new config is in `Shared::pending_config`.
    ConfigChanged,
    /// From `StoreWorker::shutdown`: flush and end.
    Shutdown,
}

/// Owns the worker thread. Call `shutdown` before the process exits so queued
/// writes reach the card; dropping it without that leaves the thread running
/// until every `Store` handle is gone.
pub struct StoreWorker {
    /// Lets `shutdown` reach the thread while handles live, without keeping
    /// the channel open itself (that is what lets dropped handles end it).
    inner: Weak<Inner>,
    /// Yields the final flush's result.
    thread: JoinHandle<Result<(), StoreError>>,
    /// Disconnects when the thread ends: `recv_timeout` gives a join with a
    /// deadline, which `JoinHandle` lacks.
    done: Receiver<()>,
    /// The database file, for error messages.
    path: PathBuf,
}

impl StoreWorker {
    /// Flushes queued writes, closes the database and joins the thread, all
    /// within `timeout`. On timeout the thread is left to finish on its own.
    pub fn shutdown(self, timeout: Duration) -> Result<(), StoreError> {
        let deadline = Instant::now() + timeout;
        let timed_out = || StoreError::ShutdownTimeout {
            path: self.path.clone(),
            timeout,
        };
        if let Some(inner) = self.inner.upgrade() {
            let mut cmd = Command::Shutdown;
            loop {
                match inner.tx.try_send(cmd) {
                    Ok(()) | Err(TrySendError::Disconnected(_)) => break,
                    Err(TrySendError::Full(back)) => {
                        if Instant::now() >= deadline {
                            return Err(timed_out());
                        }
                        cmd = back;
                        std::thread::sleep(Duration::from_millis(5));
                    }
                }
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match self.done.recv_timeout(left) {
            Err(RecvTimeoutError::Timeout) => Err(timed_out()),
            Ok(()) | Err(RecvTimeoutError::Disconnected) => match self.thread.join() {
                Ok(result) => result,
                Err(_) => Err(StoreError::WorkerPanicked { path: self.path }),
            },
        }
    }
}

/// Starts the worker thread with an opened database.
pub(crate) fn spawn(
    dir: PathBuf,
    path: PathBuf,
    opened: Opened,
    config: StoreConfig,
    recovered_at_open: bool,
) -> Result<(Store, StoreWorker), StoreError> {
    let Opened {
        conn,
        recent,
        event_rows,
        sample_rows,
        db_bytes,
    } = opened;
    let shared = Arc::new(Shared::new(path.clone(), recent));
    let c = &shared.counters;
    Shared::add(&c.event_rows, event_rows);
    Shared::add(&c.sample_rows, sample_rows);
    Shared::add(&c.db_bytes, db_bytes);
    Shared::add(&c.recoveries, u64::from(recovered_at_open));

    let (tx, rx) = mpsc::sync_channel(QUEUE_ITEMS + CONTROL_SLOTS);
    let (done_tx, done) = mpsc::channel::<()>();
    let inner = Arc::new(Inner {
        tx,
        shared: shared.clone(),
    });
    let worker = Worker {
        dir,
        path: path.clone(),
        db: Some(conn),
        shared,
        config,
        batch: Vec::new(),
        batch_rows: 0,
        batch_since: None,
        attempts: 0,
        next_retention: Instant::now(),
        reopen_after: None,
    };
    let thread = std::thread::Builder::new()
        .name("piha-store".into())
        .spawn(move || {
            let _done = done_tx;
            worker.run(rx)
        })
        .map_err(|source| StoreError::Spawn {
            path: path.clone(),
            source,
        })?;
    let handle = StoreWorker {
        inner: Arc::downgrade(&inner),
        thread,
        done,
        path,
    };
    Ok((Store::new(inner), handle))
}

struct Worker {
    /// The store directory, where corrupt files are moved aside.
    dir: PathBuf,
    /// `<dir>/piha.db`.
    path: PathBuf,
    /// `None` only when recovery failed; writes are retried (and reopening
    /// attempted) at each flush.
    db: Option<Connection>,
    /// Counters and ring, shared with the handles.
    shared: Arc<Shared>,
    /// The config in force; replaced from `Shared::pending_config`.
    config: StoreConfig,
    /// Writes received and not yet committed, in arrival order.
    batch: Vec<Write>,
    /// Rows the batch will insert (a samples item is several rows).
    batch_rows: usize,
    /// When the oldest uncommitted write arrived (or the last failed attempt):
    /// the batch is due one flush interval later.
    batch_since: Option<Instant>,
    /// Failed commits of the current batch.
    attempts: u32,
    /// When retention runs next.
    next_retention: Instant,
    /// While there is no database: no reopen attempt before this.
    reopen_after: Option<Instant>,
}

impl Worker {
    fn run(mut self, rx: Receiver<Command>) -> Result<(), StoreError> {
        loop {
            self.apply_pending_config();
            self.run_due_work();
            let wait = self.next_wakeup().saturating_duration_since(Instant::now());
            match rx.recv_timeout(wait) {
                Ok(Command::Shutdown) | Err(RecvTimeoutError::Disconnected) => break,
                Ok(cmd) => self.handle(cmd),
                Err(RecvTimeoutError::Timeout) => {}
            }
        }
        // Writes that raced with shutdown are still owed a commit; queries are
        // answered "closed" by dropping their reply.
        while let Ok(cmd) = rx.try_recv() {
            if let Command::Write { write, bytes } = cmd {
                self.shared.release(bytes);
                self.add_to_batch(write);
            }
        }
        self.flush()
    }

    fn interval(&self) -> Duration {
        self.config.flush_interval.max(MIN_FLUSH_INTERVAL)
    }

    fn next_wakeup(&self) -> Instant {
        match self.batch_since {
            Some(since) => (since + self.interval()).min(self.next_retention),
            None => self.next_retention,
        }
    }

    fn run_due_work(&mut self) {
        let now = Instant::now();
        let full = self.attempts == 0 && self.batch_rows >= FLUSH_ROWS;
        let due = self
            .batch_since
            .is_some_and(|since| now >= since + self.interval());
        if full || due {
            // Errors are counted and logged inside; nobody is waiting here.
            let _ = self.flush();
        }
        if now >= self.next_retention {
            let _ = self.retention();
        }
    }

    fn handle(&mut self, cmd: Command) {
        match cmd {
            Command::Write { write, bytes } => {
                self.shared.release(bytes);
                self.add_to_batch(write);
            }
            Command::Flush(reply) => {
                let _ = reply.send(self.flush());
            }
            Command::EventsSince {
                since_ms,
                limit,
                reply,
            } => {
                let _ = reply.send(self.events_since(since_ms, limit));
            }
            Command::SamplesSince { since_ms, reply } => {
                let _ = reply.send(self.samples_since(since_ms));
            }
            Command::RunRetention(reply) => {
                let _ = reply.send(self.retention());
            }
            Command::ConfigChanged => self.apply_pending_config(),
            // Handled by the loop.
            Command::Shutdown => {}
        }
    }

    fn add_to_batch(&mut self, write: Write) {
        let c = &self.shared.counters;
        if self.batch_rows >= MAX_BATCH_ROWS {
            Shared::sub(&c.queued, 1);
            Shared::add(&c.dropped, 1);
            return;
        }
        self.batch_rows += write.rows();
        self.batch.push(write);
        self.batch_since.get_or_insert_with(Instant::now);
    }

    fn apply_pending_config(&mut self) {
        if let Some(config) = lock(&self.shared.pending_config).take() {
            tracing::info!(?config, "event store config changed");
            self.config = config;
            // A shorter retention or smaller size should take effect now.
            self.next_retention = Instant::now();
        }
    }

    /// Commits the batch in one transaction. On failure the batch is kept for
    /// the next interval, up to `MAX_ATTEMPTS`; on corruption the database is
    /// replaced and the batch written to the fresh one.
    fn flush(&mut self) -> Result<(), StoreError> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let mut result = self.try_insert();
        if let Some(Err(e)) = &result {
            if recovery::is_corruption(e) {
                self.recover(e.to_string());
                result = self.try_insert();
            }
        }
        match result {
            Some(Ok(n)) => {
                self.batch_committed(n);
                Ok(())
            }
            Some(Err(source)) => {
                self.batch_failed(&source.to_string());
                Err(self.sqlite_error(source))
            }
            None => {
                self.batch_failed("no usable database");
                Err(self.unavailable())
            }
        }
    }

    /// `None` when there is no database to write to.
    fn try_insert(&mut self) -> Option<rusqlite::Result<Inserted>> {
        self.ensure_conn();
        let conn = self.db.as_mut()?;
        Some(db::insert_batch(conn, &self.batch))
    }

    /// Reopens (with recovery) if an earlier recovery left no database.
    fn ensure_conn(&mut self) {
        if self.db.is_some() {
            return;
        }
        let now = Instant::now();
        if self.reopen_after.is_some_and(|t| now < t) {
            return;
        }
        self.reopen_after = Some(now + REOPEN_BACKOFF);
        match recovery::open_or_recover(&self.dir, &self.path) {
            Ok((opened, recovered)) => {
                self.adopt(opened);
                if let Some(r) = recovered {
                    self.note_recovery(&r.moved_to, &r.reason);
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "event store still has no usable database");
            }
        }
    }

    fn batch_committed(&mut self, n: Inserted) {
        let c = &self.shared.counters;
        let items = self.batch.len() as u64;
        self.batch.clear();
        self.batch_rows = 0;
        self.batch_since = None;
        self.attempts = 0;
        Shared::sub(&c.queued, items);
        Shared::add(&c.flushes, 1);
        c.last_flush_ms.store(now_ms(), Ordering::Relaxed);
        Shared::add(&c.event_rows, n.events);
        Shared::add(&c.sample_rows, n.samples);
        self.refresh_db_bytes();
    }

    fn batch_failed(&mut self, e: &str) {
        let c = &self.shared.counters;
        Shared::add(&c.write_errors, 1);
        self.attempts += 1;
        if self.attempts >= MAX_ATTEMPTS {
            let items = self.batch.len() as u64;
            tracing::error!(error = %e, items, path = %self.path.display(), "event store gave up on a batch");
            Shared::sub(&c.queued, items);
            Shared::add(&c.dropped, items);
            self.batch.clear();
            self.batch_rows = 0;
            self.batch_since = None;
            self.attempts = 0;
        } else {
            tracing::warn!(error = %e, attempt = self.attempts, path = %self.path.display(), "event store commit failed; will retry");
            // Retry one interval from now, not on the next write.
            self.batch_since = Some(Instant::now());
        }
    }

    fn events_since(&mut self, since_ms: i64, limit: usize) -> Result<Vec<Event>, StoreError> {
        let mut events = self.query(|conn| db::events_since(conn, since_ms, limit))?;
        // Uncommitted events come after committed ones with the same at_ms;
        // the stable sort keeps that order.
        events.extend(self.batch.iter().filter_map(|w| match w {
            Write::Event(q) if q.event.at_ms >= since_ms => Some(q.event.clone()),
            _ => None,
        }));
        events.sort_by_key(|e| e.at_ms);
        events.truncate(limit);
        Ok(events)
    }

    fn samples_since(&mut self, since_ms: i64) -> Result<Vec<Sample>, StoreError> {
        let mut samples =
            self.query(|conn| db::samples_since(conn, since_ms, MAX_SAMPLES_PER_QUERY))?;
        for write in &self.batch {
            if let Write::Samples { at_ms, values } = write {
                if *at_ms >= since_ms {
                    samples.extend(values.iter().map(|(series, value)| Sample {
                        at_ms: *at_ms,
                        series: series.clone(),
                        value: *value,
                    }));
                }
            }
        }
        samples.sort_by_key(|s| s.at_ms);
        samples.truncate(MAX_SAMPLES_PER_QUERY);
        Ok(samples)
    }

    /// Runs a read; a corrupt database found by a read is replaced too (the
    /// caller still gets the error for this query).
    fn query<T>(
        &mut self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        self.ensure_conn();
        let result = match &self.db {
            Some(conn) => f(conn),
            None => return Err(self.unavailable()),
        };
        result.map_err(|e| {
            if recovery::is_corruption(&e) {
                self.recover(e.to_string());
            }
            self.sqlite_error(e)
        })
    }

    fn retention(&mut self) -> Result<RetentionOutcome, StoreError> {
        self.ensure_conn();
        let result = match self.db.as_mut() {
            Some(conn) => retention::run(conn, &self.config, now_ms(), RETENTION_BUDGET),
            None => {
                self.next_retention = Instant::now() + RETENTION_EVERY;
                return Err(self.unavailable());
            }
        };
        match result {
            Ok(out) => {
                let c = &self.shared.counters;
                Shared::sub(&c.event_rows, out.deleted_events());
                Shared::sub(&c.sample_rows, out.deleted_samples());
                self.refresh_db_bytes();
                // Unfinished work comes back after one flush interval, so
                // writes get their turn in between.
                self.next_retention = Instant::now()
                    + if out.complete {
                        RETENTION_EVERY
                    } else {
                        self.interval()
                    };
                if out.deleted_events() + out.deleted_samples() > 0 {
                    tracing::debug!(?out, "event store retention");
                }
                Ok(out)
            }
            Err(e) => {
                Shared::add(&self.shared.counters.write_errors, 1);
                self.next_retention = Instant::now() + RETENTION_EVERY;
                if recovery::is_corruption(&e) {
                    self.recover(e.to_string());
                } else {
                    tracing::warn!(error = %e, "event store retention failed");
                }
                Err(self.sqlite_error(e))
            }
        }
    }

    /// Replaces a corrupt database with a fresh one, keeping the batch (it is
    /// written to the fresh file by the caller) and the ring.
    fn recover(&mut self, reason: String) {
        tracing::error!(path = %self.path.display(), %reason, "event store database is corrupt; replacing it");
        // Close before moving: the old connection must not write into the
        // renamed file, nor checkpoint a WAL we are about to move.
        if let Some(conn) = self.db.take() {
            // Leave the WAL as it is, for the post-mortem.
            let _ = schema::set_checkpoint_on_close(&conn, false);
            if let Err((_, e)) = conn.close() {
                tracing::warn!(error = %e, "closing the corrupt event store database failed");
            }
        }
        match recovery::recover_fresh(&self.dir, &self.path, reason.clone()) {
            Ok((opened, r)) => {
                self.adopt(opened);
                self.note_recovery(&r.moved_to, &reason);
            }
            Err(e) => {
                tracing::error!(error = %e, "event store recovery failed; will retry on a later flush");
                self.reopen_after = Some(Instant::now() + REOPEN_BACKOFF);
            }
        }
    }

    fn adopt(&mut self, opened: Opened) {
        let c = &self.shared.counters;
        let store = |a: &AtomicU64, v| a.store(v, Ordering::Relaxed);
        store(&c.event_rows, opened.event_rows);
        store(&c.sample_rows, opened.sample_rows);
        store(&c.db_bytes, opened.db_bytes);
        self.db = Some(opened.conn);
        self.reopen_after = None;
    }

    /// Counts the recovery and tells the node: an error event in the ring and
    /// at the front of the batch, so it lands in the fresh database first.
    fn note_recovery(&mut self, moved_to: &Path, reason: &str) {
        Shared::add(&self.shared.counters.recoveries, 1);
        let node = self.node_name();
        let (event, details_json) = sanitize::event(Event {
            at_ms: now_ms(),
            node,
            component: "store".into(),
            severity: Severity::Error,
            message: format!(
                "event store database was corrupt ({reason}); moved it to {} and started a fresh one",
                moved_to.display()
            ),
            details: json!({
                "moved_to": moved_to.display().to_string(),
                "reason": reason,
            }),
        });
        self.shared.push_ring(event.clone());
        Shared::add(&self.shared.counters.queued, 1);
        self.batch.insert(
            0,
            Write::Event(Box::new(QueuedEvent {
                event,
                details_json,
            })),
        );
        self.batch_rows += 1;
        self.batch_since.get_or_insert_with(Instant::now);
    }

    /// The store is not told the node's name; the newest event knows it, and
    /// the kernel's hostname is the fallback (it is the node name in piha).
    fn node_name(&self) -> String {
        if let Some(e) = lock(&self.shared.ring).back() {
            return e.node.clone();
        }
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|s| s.trim().to_owned())
            .ok()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "unknown".to_owned())
    }

    fn refresh_db_bytes(&self) {
        if let Some(conn) = &self.db {
            if let Ok(bytes) = db::db_bytes(conn) {
                self.shared
                    .counters
                    .db_bytes
                    .store(bytes, Ordering::Relaxed);
            }
        }
    }

    fn sqlite_error(&self, source: rusqlite::Error) -> StoreError {
        if self.db.is_none() {
            return self.unavailable();
        }
        StoreError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    fn unavailable(&self) -> StoreError {
        StoreError::Unavailable {
            path: self.path.clone(),
            reason: "no usable database (recovery failed; retried every few seconds)".into(),
        }
    }
}
