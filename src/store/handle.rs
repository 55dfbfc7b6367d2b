//! The `Store` handle: cheap to clone, never blocks on `record*`. It owns no
//! connection; everything that touches the database goes to the worker thread
//! over one bounded channel.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::oneshot;

use super::db::{QueuedEvent, Write};
use super::retention::RetentionOutcome;
use super::worker::{Command, Reply};
use super::{Event, Sample, StoreConfig, StoreError, StoreStats, sanitize};

/// Items (`record` calls) the queue holds before new ones are dropped.
pub const QUEUE_ITEMS: usize = 4096;
/// Bytes the queued items may hold, so 4096 maximal events (20 KiB each)
/// cannot take 80 MiB of a Pi's RAM.
pub const QUEUE_BYTES: usize = 16 << 20;
/// Channel slots reserved for queries, flushes and config changes, on top of
/// `QUEUE_ITEMS`, so a full write queue never locks out a query.
pub(crate) const CONTROL_SLOTS: usize = 64;
/// Events kept in memory for `recent_events`.
pub const RING_EVENTS: usize = 500;
/// Values kept from one `record_samples` call; the rest are dropped.
pub const MAX_SAMPLES_PER_CALL: usize = 1024;
/// Most events one `events_since` returns, whatever `limit` says.
pub const MAX_EVENTS_PER_QUERY: usize = 10_000;
/// Most samples one `samples_since` returns (the oldest ones); ask again from
/// the last `at_ms` for more.
pub const MAX_SAMPLES_PER_QUERY: usize = 200_000;

/// Handle to the event store. Clone freely; when the last clone is dropped the
/// worker makes a final flush and ends.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

/// What all clones of one `Store` share. The worker keeps only a `Weak` to
/// it, so dropping every `Store` closes the channel and ends the worker.
pub(crate) struct Inner {
    /// Bounded: `QUEUE_ITEMS` writes plus `CONTROL_SLOTS` requests.
    pub tx: SyncSender<Command>,
    /// Counters and ring, also held by the worker.
    pub shared: Arc<Shared>,
}

/// State shared by the handles and the worker. Only counters and the ring
/// live here; the connection is the worker's alone.
pub(crate) struct Shared {
    /// The database file, for error messages.
    pub path: PathBuf,
    /// Newest events last; filled by `record` and at open.
    pub ring: Mutex<VecDeque<Event>>,
    /// A config waiting for the worker (latest wins).
    pub pending_config: Mutex<Option<StoreConfig>>,
    /// Write items in the channel, for the `QUEUE_ITEMS` bound.
    pub queue_items: AtomicUsize,
    /// Approximate bytes of write items in the channel, for `QUEUE_BYTES`.
    pub queue_bytes: AtomicUsize,
    /// Read by `Store::stats`.
    pub counters: Counters,
}

/// Live counters behind `StoreStats`; each field means what the
/// `StoreStats` field of the same name says.
#[derive(Default)]
pub(crate) struct Counters {
    /// Bumped by `record*`, lowered by the worker on commit or drop.
    pub queued: AtomicU64,
    /// Bumped by `record*` (queue full) and the worker (batch given up).
    pub dropped: AtomicU64,
    /// Bumped by the worker per committed batch.
    pub flushes: AtomicU64,
    /// `NO_FLUSH` until the first flush.
    pub last_flush_ms: AtomicI64,
    /// Set by the worker after commits and retention.
    pub db_bytes: AtomicU64,
    /// Counted at open, then kept by inserts and deletes.
    pub event_rows: AtomicU64,
    /// Counted at open, then kept by inserts and deletes.
    pub sample_rows: AtomicU64,
    /// Bumped per failed commit or retention run.
    pub write_errors: AtomicU64,
    /// Bumped per runtime replacement of a corrupt database.
    pub recoveries: AtomicU64,
}

pub(crate) const NO_FLUSH: i64 = i64::MIN;

/// Locks a mutex, ignoring poisoning: the data (a ring, a config slot) stays
/// valid even if a holder panicked, and the store must keep going.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Shared {
    pub fn new(path: PathBuf, recent_newest_first: Vec<Event>) -> Shared {
        let ring: VecDeque<Event> = recent_newest_first
            .into_iter()
            .take(RING_EVENTS)
            .rev()
            .collect();
        let counters = Counters::default();
        counters.last_flush_ms.store(NO_FLUSH, Ordering::Relaxed);
        Shared {
            path,
            ring: Mutex::new(ring),
            pending_config: Mutex::new(None),
            queue_items: AtomicUsize::new(0),
            queue_bytes: AtomicUsize::new(0),
            counters,
        }
    }

    pub fn push_ring(&self, event: Event) {
        let mut ring = lock(&self.ring);
        if ring.len() >= RING_EVENTS {
            ring.pop_front();
        }
        ring.push_back(event);
    }

    /// Claims room in the queue; false when full (by count or by bytes).
    fn reserve(&self, bytes: usize) -> bool {
        if self.queue_items.fetch_add(1, Ordering::AcqRel) >= QUEUE_ITEMS {
            self.queue_items.fetch_sub(1, Ordering::AcqRel);
            return false;
        }
        if self
            .queue_bytes
            .fetch_add(bytes, Ordering::AcqRel)
            .saturating_add(bytes)
            > QUEUE_BYTES
        {
            self.release(bytes);
            return false;
        }
        true
    }

    /// Gives back what `reserve` claimed, once the worker has taken the item.
    pub fn release(&self, bytes: usize) {
        self.queue_items.fetch_sub(1, Ordering::AcqRel);
        self.queue_bytes.fetch_sub(bytes, Ordering::AcqRel);
    }

    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Saturating, so a miscount can never wrap to 2^64.
    pub fn sub(counter: &AtomicU64, n: u64) {
        let _ = counter.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
            Some(v.saturating_sub(n))
        });
    }

    pub fn closed(&self) -> StoreError {
        StoreError::Closed {
            path: self.path.clone(),
        }
    }
}

impl Store {
    pub(crate) fn new(inner: Arc<Inner>) -> Store {
        Store { inner }
    }

    /// Queues an event for the next batch and adds it to the in-memory ring.
    /// Never blocks, never fails: when the queue is full the event is dropped
    /// from the database (still shown by `recent_events`) and counted.
    pub fn record(&self, event: Event) {
        let (event, details_json) = sanitize::event(event);
        self.inner.shared.push_ring(event.clone());
        let bytes = 64
            + event.node.len()
            + event.component.len()
            + event.message.len()
            // Details travel twice: as text for the insert and as a Value
            // for queries that see the batch before it commits.
            + 2 * details_json.len();
        self.enqueue(
            Write::Event(Box::new(QueuedEvent {
                event,
                details_json,
            })),
            bytes,
        );
    }

    /// Queues one sample per `(series, value)`, all at `at_ms`, as one item.
    /// Same queue rules as `record`. At most `MAX_SAMPLES_PER_CALL` values
    /// are kept per call.
    pub fn record_samples(&self, at_ms: i64, values: &[(&str, f64)]) {
        if values.is_empty() {
            return;
        }
        let values: Vec<(String, f64)> = values
            .iter()
            .take(MAX_SAMPLES_PER_CALL)
            .map(|(series, value)| (sanitize::series(series), *value))
            .collect();
        let bytes = 64 + values.iter().map(|(s, _)| s.len() + 32).sum::<usize>();
        self.enqueue(Write::Samples { at_ms, values }, bytes);
    }

    /// The newest `limit` events (at most `RING_EVENTS`), newest first, from
    /// memory: no database access, so it works even while the card is stuck.
    pub fn recent_events(&self, limit: usize) -> Vec<Event> {
        let ring = lock(&self.inner.shared.ring);
        ring.iter().rev().take(limit).cloned().collect()
    }

    /// Samples at or after `since_ms`, oldest first, including ones not yet
    /// committed. At most `MAX_SAMPLES_PER_QUERY` (the oldest).
    pub async fn samples_since(&self, since_ms: i64) -> Result<Vec<Sample>, StoreError> {
        self.ask(|reply| Command::SamplesSince { since_ms, reply })
            .await
    }

    /// Events at or after `since_ms`, oldest first, including ones not yet
    /// committed; at most `limit` (capped at `MAX_EVENTS_PER_QUERY`), the
    /// oldest ones, so a caller can page forward.
    pub async fn events_since(
        &self,
        since_ms: i64,
        limit: usize,
    ) -> Result<Vec<Event>, StoreError> {
        let limit = limit.min(MAX_EVENTS_PER_QUERY);
        self.ask(|reply| Command::EventsSince {
            since_ms,
            limit,
            reply,
        })
        .await
    }

    /// Commits everything queued before this call, now.
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.ask(Command::Flush).await
    }

    /// Runs retention now (it also runs every few minutes on its own).
    pub async fn run_retention(&self) -> Result<RetentionOutcome, StoreError> {
        self.ask(Command::RunRetention).await
    }

    /// Hands a new config to the worker (config reload). Never blocks; the
    /// worker applies the latest one and runs retention with it.
    pub fn set_config(&self, config: StoreConfig) {
        *lock(&self.inner.shared.pending_config) = Some(config);
        // A full channel is fine: the worker checks the slot on every wakeup.
        let _ = self.inner.tx.try_send(Command::ConfigChanged);
    }

    pub fn stats(&self) -> StoreStats {
        let c = &self.inner.shared.counters;
        let last = c.last_flush_ms.load(Ordering::Relaxed);
        StoreStats {
            queued: c.queued.load(Ordering::Relaxed),
            dropped: c.dropped.load(Ordering::Relaxed),
            flushes: c.flushes.load(Ordering::Relaxed),
            last_flush_ms: (last != NO_FLUSH).then_some(last),
            db_bytes: c.db_bytes.load(Ordering::Relaxed),
            event_rows: c.event_rows.load(Ordering::Relaxed),
            sample_rows: c.sample_rows.load(Ordering::Relaxed),
            write_errors: c.write_errors.load(Ordering::Relaxed),
            recoveries: c.recoveries.load(Ordering::Relaxed),
        }
    }

    /// The database file this store writes.
    pub fn path(&self) -> &std::path::Path {
        &self.inner.shared.path
    }

    fn enqueue(&self, write: Write, bytes: usize) {
        let shared = &self.inner.shared;
        let c = &shared.counters;
        if !shared.reserve(bytes) {
            Shared::add(&c.dropped, 1);
            return;
        }
        Shared::add(&c.queued, 1);
        if self
            .inner
            .tx
            .try_send(Command::Write { write, bytes })
            .is_err()
        {
            // Worker gone (or, impossibly, the channel full despite the gate).
            shared.release(bytes);
            Shared::sub(&c.queued, 1);
            Shared::add(&c.dropped, 1);
        }
    }

    async fn ask<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Result<T, StoreError> {
        let shared = &self.inner.shared;
        let (reply, answer) = oneshot::channel();
        match self.inner.tx.try_send(make(reply)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                return Err(StoreError::Busy {
                    path: shared.path.clone(),
                    limit: CONTROL_SLOTS,
                });
            }
            Err(TrySendError::Disconnected(_)) => return Err(shared.closed()),
        }
        answer.await.map_err(|_| shared.closed())?
    }
}
