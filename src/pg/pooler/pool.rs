//! Server connection pools, one per (database, user), each with a slot per
//! backend: idle connections, how many are open, and the clients waiting.
//!
//! A connection given back goes straight to the longest-waiting client
//! (strict FIFO hand-off over a oneshot, as pg_doorman does), so a waiter
//! never loses a race to a client that just arrived. A waiter that gives up
//! (timeout, cancel) closes its receiver and takes back anything already
//! sent to it, so no connection or permit is ever lost in a dropped channel.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, oneshot};

use super::error::PoolError;
use super::server::{Credentials, ServerConn};
use crate::config::PoolMode;

/// What a waiting client is handed.
enum Grant {
    /// An idle connection, ready to use.
    Conn(Box<ServerConn>),
    /// Room to open a new connection (counted as open already).
    Permit,
}

/// The slots of one pool by backend address. A list, not a map: a pool
/// has a slot per backend (a handful), and every lease and release looks
/// one up; SipHash of the address made up 8 % of the pooler's
/// instructions per transaction (callgrind, scripts/profile-pooler).
#[derive(Default)]
struct Slots(Vec<(SocketAddr, Slot)>);

impl Slots {
    /// The slot of `addr`, made empty on first use.
    fn entry(&mut self, addr: SocketAddr) -> &mut Slot {
        let i = match self.0.iter().position(|(a, _)| *a == addr) {
            Some(i) => i,
            None => {
                self.0.push((addr, Slot::default()));
                self.0.len() - 1
            }
        };
        &mut self.0[i].1
    }

    fn get_mut(&mut self, addr: &SocketAddr) -> Option<&mut Slot> {
        self.0.iter_mut().find(|(a, _)| a == addr).map(|(_, s)| s)
    }

    fn iter(&self) -> impl Iterator<Item = (&SocketAddr, &Slot)> {
        self.0.iter().map(|(a, s)| (a, s))
    }

    fn values(&self) -> impl Iterator<Item = &Slot> {
        self.0.iter().map(|(_, s)| s)
    }

    fn values_mut(&mut self) -> impl Iterator<Item = &mut Slot> {
        self.0.iter_mut().map(|(_, s)| s)
    }
}

#[derive(Default)]
struct Slot {
    /// Boxed as everywhere else (see ServerConn): a connection taken from
    /// here is then moved as a pointer.
    #[allow(clippy::vec_box)]
    idle: Vec<Box<ServerConn>>,
    /// Connections counted against the pool size: idle, leased and being
    /// opened.
    open: u32,
    /// Of `open`, being opened now (SHOW POOLS' sv_login).
    connecting: u32,
    waiters: VecDeque<(Instant, oneshot::Sender<Grant>)>,
}

/// Counters for SHOW STATS and /metrics. Relaxed atomics: each is a
/// monotonic count read for display, never used for synchronisation.
#[derive(Default)]
pub struct PoolStats {
    pub xact_count: AtomicU64,
    pub query_count: AtomicU64,
    pub bytes_received: AtomicU64,
    pub bytes_sent: AtomicU64,
    pub xact_time_us: AtomicU64,
    pub query_time_us: AtomicU64,
    pub wait_time_us: AtomicU64,
    pub wait_count: AtomicU64,
    pub server_connects: AtomicU64,
    /// Times a server connection was leased to a client.
    pub server_assignments: AtomicU64,
}

/// `PoolStats` read at one moment, for totals and averages.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct StatsSnapshot {
    pub xact_count: u64,
    pub query_count: u64,
    pub bytes_received: u64,
    pub bytes_sent: u64,
    pub xact_time_us: u64,
    pub query_time_us: u64,
    pub wait_time_us: u64,
    pub wait_count: u64,
    pub server_connects: u64,
    pub server_assignments: u64,
}

impl PoolStats {
    pub fn snapshot(&self) -> StatsSnapshot {
        let r = |a: &AtomicU64| a.load(Ordering::Relaxed);
        StatsSnapshot {
            xact_count: r(&self.xact_count),
            query_count: r(&self.query_count),
            bytes_received: r(&self.bytes_received),
            bytes_sent: r(&self.bytes_sent),
            xact_time_us: r(&self.xact_time_us),
            query_time_us: r(&self.query_time_us),
            wait_time_us: r(&self.wait_time_us),
            wait_count: r(&self.wait_count),
            server_connects: r(&self.server_connects),
            server_assignments: r(&self.server_assignments),
        }
    }
}

impl StatsSnapshot {
    /// Field by field sum (a database's pools together).
    pub fn add(&mut self, o: &StatsSnapshot) {
        self.xact_count += o.xact_count;
        self.query_count += o.query_count;
        self.bytes_received += o.bytes_received;
        self.bytes_sent += o.bytes_sent;
        self.xact_time_us += o.xact_time_us;
        self.query_time_us += o.query_time_us;
        self.wait_time_us += o.wait_time_us;
        self.wait_count += o.wait_count;
        self.server_connects += o.server_connects;
        self.server_assignments += o.server_assignments;
    }

    /// Field by field difference, never below zero.
    pub fn since(&self, o: &StatsSnapshot) -> StatsSnapshot {
        StatsSnapshot {
            xact_count: self.xact_count.saturating_sub(o.xact_count),
            query_count: self.query_count.saturating_sub(o.query_count),
            bytes_received: self.bytes_received.saturating_sub(o.bytes_received),
            bytes_sent: self.bytes_sent.saturating_sub(o.bytes_sent),
            xact_time_us: self.xact_time_us.saturating_sub(o.xact_time_us),
            query_time_us: self.query_time_us.saturating_sub(o.query_time_us),
            wait_time_us: self.wait_time_us.saturating_sub(o.wait_time_us),
            wait_count: self.wait_count.saturating_sub(o.wait_count),
            server_connects: self.server_connects.saturating_sub(o.server_connects),
            server_assignments: self.server_assignments.saturating_sub(o.server_assignments),
        }
    }
}

pub struct UserPool {
    pub database: String,
    pub user: String,
    pub mode: PoolMode,
    pub size: u32,
    pub min_size: u32,
    /// Learned from a client's SCRAM login (passthrough) or given by the
    /// cluster file (md5).
    pub credentials: Mutex<Credentials>,
    /// ParameterStatus of a server of this pool, shown to clients at login.
    pub server_params: Mutex<Vec<(String, String)>>,
    /// The same by lower-case name: what a fresh server has, for telling
    /// which settings a previous client left changed.
    pub baseline: Mutex<Arc<HashMap<String, String>>>,
    slots: Mutex<Slots>,
    /// Clients logged in to this pool (cl_active + cl_waiting).
    pub clients: AtomicU32,
    /// Clients waiting for a server connection now.
    pub waiting: AtomicU32,
    /// Clients between the PAUSE check and holding a counted lease: PAUSE
    /// waits for these too, so no lease slips past it.
    pub leasing: AtomicU32,
    pub stats: PoolStats,
}

/// What `checkout` needs besides the pool itself.
pub struct Checkout<'a> {
    pub addr: SocketAddr,
    /// When the client asked: the caller's clock reading, shared with its
    /// own bookkeeping (clock reads were 5 % of the pooler's instructions
    /// per transaction, scripts/profile-pooler).
    pub now: Instant,
    /// `wait_timeout`, for the error that says it passed.
    pub wait_timeout: Duration,
    /// When the wait ends: the client's whole wait for a server, of which
    /// this checkout may be the last part (after waiting for a primary to
    /// appear, say), is bounded by one `wait_timeout`.
    pub deadline: Instant,
    pub lifetime: Duration,
    /// All pools share one bound on waiting clients.
    pub queue: &'a WaitQueueLimit,
    /// Fired when the client's query is canceled while it waits.
    pub canceled: Option<&'a Notify>,
}

/// The global bound on waiting clients (`max_wait_clients`).
pub struct WaitQueueLimit {
    pub waiting: AtomicU32,
    pub max: u32,
}

/// The result of asking for a connection: one to use, or the right to open
/// a new one (the caller connects, then reports with `opened`).
pub enum Lease {
    Ready(Box<ServerConn>),
    Open,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// `wait` after `now`. The cluster file may give any duration
/// ("100000000y"), and `Instant + Duration` panics past the clock's range:
/// such a wait is as good as a century.
pub fn deadline(now: Instant, wait: Duration) -> Instant {
    const CENTURY: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
    now.checked_add(wait.min(CENTURY)).unwrap_or(now)
}

impl UserPool {
    pub fn new(database: &str, user: &str, mode: PoolMode, size: u32, min_size: u32) -> UserPool {
        UserPool {
            database: database.to_string(),
            user: user.to_string(),
            mode,
            size: size.max(1),
            min_size,
            credentials: Mutex::new(Credentials::default()),
            server_params: Mutex::new(Vec::new()),
            baseline: Mutex::new(Arc::new(HashMap::new())),
            slots: Mutex::new(Slots::default()),
            clients: AtomicU32::new(0),
            waiting: AtomicU32::new(0),
            leasing: AtomicU32::new(0),
            stats: PoolStats::default(),
        }
    }

    pub fn baseline(&self) -> Arc<HashMap<String, String>> {
        lock(&self.baseline).clone()
    }

    pub fn credentials(&self) -> Credentials {
        lock(&self.credentials).clone()
    }

    /// Waits (bounded) for a connection to `c.addr`.
    pub async fn checkout(&self, c: &Checkout<'_>) -> Result<Lease, PoolError> {
        let started = c.now;
        let mut rx = {
            let mut slots = lock(&self.slots);
            let slot = slots.entry(c.addr);
            while let Some(mut conn) = slot.idle.pop() {
                if started.saturating_duration_since(conn.created) > c.lifetime
                    || is_closed(&mut conn, started)
                {
                    slot.open -= 1;
                    continue;
                }
                return Ok(Lease::Ready(conn));
            }
            if slot.open < self.size {
                slot.open += 1;
                slot.connecting += 1;
                return Ok(Lease::Open);
            }
            if c.queue.waiting.load(Ordering::Relaxed) >= c.queue.max {
                return Err(PoolError::QueueFull(c.queue.max));
            }
            let (tx, rx) = oneshot::channel();
            slot.waiters.push_back((started, tx));
            rx
        };
        c.queue.waiting.fetch_add(1, Ordering::Relaxed);
        self.waiting.fetch_add(1, Ordering::Relaxed);
        let never = Notify::new();
        let canceled = c.canceled.unwrap_or(&never);
        let outcome = tokio::select! {
            grant = &mut rx => grant.map_err(|_| PoolError::Shutdown),
            _ = tokio::time::sleep_until(c.deadline.into()) => Err(PoolError::WaitTimeout(c.wait_timeout)),
            _ = canceled.notified() => Err(PoolError::Canceled),
        };
        c.queue.waiting.fetch_sub(1, Ordering::Relaxed);
        self.waiting.fetch_sub(1, Ordering::Relaxed);
        self.stats.wait_count.fetch_add(1, Ordering::Relaxed);
        self.stats
            .wait_time_us
            .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        let grant = match outcome {
            Ok(g) => g,
            Err(e) => {
                // Something may have been handed over just as we gave up.
                rx.close();
                match rx.try_recv() {
                    Ok(Grant::Conn(conn)) => self.checkin(conn, c.lifetime, Instant::now()),
                    Ok(Grant::Permit) => self.lost(c.addr),
                    Err(_) => {}
                }
                return Err(e);
            }
        };
        Ok(match grant {
            Grant::Conn(conn) => Lease::Ready(conn),
            Grant::Permit => {
                lock(&self.slots).entry(c.addr).connecting += 1;
                Lease::Open
            }
        })
    }

    /// A connection asked for with `Lease::Open` is logged in.
    pub fn opened(&self, addr: SocketAddr) {
        if let Some(slot) = lock(&self.slots).get_mut(&addr) {
            slot.connecting = slot.connecting.saturating_sub(1);
        }
        self.stats.server_connects.fetch_add(1, Ordering::Relaxed);
    }

    /// Opening failed: the place is free again.
    pub fn open_failed(&self, addr: SocketAddr) {
        if let Some(slot) = lock(&self.slots).get_mut(&addr) {
            slot.connecting = slot.connecting.saturating_sub(1);
        }
        self.lost(addr);
    }

    /// A connection goes back: to the longest waiter, else to the idle list.
    /// `now`: the caller's clock reading.
    pub fn checkin(&self, mut conn: Box<ServerConn>, lifetime: Duration, now: Instant) {
        let addr = conn.addr;
        if now.saturating_duration_since(conn.created) > lifetime {
            // Closed at release (server_lifetime); its place goes to a waiter.
            tokio::spawn(conn.terminate());
            self.lost(addr);
            return;
        }
        conn.last_used = now;
        let mut slots = lock(&self.slots);
        let slot = slots.entry(addr);
        let mut conn = Some(conn);
        while let Some((_, tx)) = slot.waiters.pop_front() {
            let Some(c) = conn.take() else { return };
            match tx.send(Grant::Conn(c)) {
                Ok(()) => return,
                Err(Grant::Conn(back)) => conn = Some(back),
                // `send` gives back what was sent, and only a Conn was sent.
                Err(Grant::Permit) => {}
            }
        }
        if let Some(c) = conn {
            slot.idle.push(c);
        }
    }

    /// A leased connection was closed (broken, or not safe to reuse).
    pub fn lost(&self, addr: SocketAddr) {
        let mut slots = lock(&self.slots);
        let slot = slots.entry(addr);
        slot.open = slot.open.saturating_sub(1);
        while let Some((_, tx)) = slot.waiters.pop_front() {
            if tx.send(Grant::Permit).is_ok() {
                slot.open += 1;
                return;
            }
        }
    }

    /// Closes idle connections unused for `idle_timeout`, keeping
    /// `min_size` per backend. Returns them for the caller to terminate.
    pub fn reap_idle(&self, idle_timeout: Duration) -> Vec<Box<ServerConn>> {
        let mut out = Vec::new();
        let mut slots = lock(&self.slots);
        for slot in slots.values_mut() {
            let mut keep = Vec::with_capacity(slot.idle.len());
            for conn in slot.idle.drain(..) {
                if conn.last_used.elapsed() > idle_timeout && slot.open > self.min_size {
                    slot.open -= 1;
                    out.push(conn);
                } else {
                    keep.push(conn);
                }
            }
            slot.idle = keep;
        }
        out
    }

    /// Closes every idle connection (RECONNECT, a backend gone).
    pub fn drain_idle(&self) -> Vec<Box<ServerConn>> {
        let mut slots = lock(&self.slots);
        let mut out = Vec::new();
        for slot in slots.values_mut() {
            slot.open = slot.open.saturating_sub(slot.idle.len() as u32);
            out.append(&mut slot.idle);
        }
        out
    }

    /// Per-backend numbers for SHOW POOLS / SHOW SERVERS.
    pub fn view(&self) -> Vec<SlotView> {
        lock(&self.slots)
            .iter()
            .map(|(addr, s)| SlotView {
                addr: *addr,
                idle: s.idle.len() as u32,
                active: s.open.saturating_sub(s.idle.len() as u32 + s.connecting),
                connecting: s.connecting,
                waiting: s.waiters.len() as u32,
                max_wait: s
                    .waiters
                    .front()
                    .map(|(since, _)| since.elapsed())
                    .unwrap_or_default(),
                idle_servers: s.idle.iter().map(|c| ServerView::of(c)).collect(),
            })
            .collect()
    }

    /// Server connections in use or being opened, plus clients about to
    /// hold one: what PAUSE waits to see reach zero.
    pub fn busy(&self) -> u32 {
        let servers: u32 = lock(&self.slots)
            .values()
            .map(|s| s.open.saturating_sub(s.idle.len() as u32))
            .sum();
        servers + self.leasing.load(Ordering::SeqCst)
    }
}

pub struct SlotView {
    pub addr: SocketAddr,
    pub idle: u32,
    pub active: u32,
    pub connecting: u32,
    pub waiting: u32,
    pub max_wait: Duration,
    pub idle_servers: Vec<ServerView>,
}

/// One server connection as SHOW SERVERS lists it.
#[derive(Debug, Clone, Copy)]
pub struct ServerView {
    pub id: u64,
    pub pid: i32,
    pub addr: SocketAddr,
    pub local: Option<SocketAddr>,
    pub tls: bool,
    pub created: Instant,
    pub last_used: Instant,
    /// Statements the pooler has prepared on it.
    pub prepared: u32,
}

impl ServerView {
    pub fn of(c: &ServerConn) -> ServerView {
        ServerView {
            id: c.id,
            pid: c.pid,
            addr: c.addr,
            local: c.local,
            tls: c.tls,
            created: c.created,
            last_used: c.last_used,
            prepared: c.prepared.len() as u32,
        }
    }
}

/// A connection back within this long is not checked: the check costs a
/// syscall per lease, and a server that died in the last second costs its
/// client an error, as with PgBouncer's server_check_delay.
const CHECK_AFTER_IDLE: Duration = Duration::from_secs(1);

/// Whether an idle connection was closed by the server (restart, idle
/// timeout, pg_terminate_backend) while it sat in the pool: any byte or EOF
/// on an idle connection means it is not usable. TLS ones are checked by
/// their first use instead.
fn is_closed(conn: &mut ServerConn, now: Instant) -> bool {
    if !conn.buf.is_empty() {
        return true;
    }
    if now.saturating_duration_since(conn.last_used) < CHECK_AFTER_IDLE {
        return false;
    }
    match &conn.stream {
        super::stream::PgStream::Plain(tcp) => {
            let mut byte = [0u8; 1];
            !matches!(tcp.try_read(&mut byte), Err(ref e) if e.kind() == std::io::ErrorKind::WouldBlock)
        }
        _ => false,
    }
}

/// Every pool, created on first login.
pub struct Pools {
    map: Mutex<HashMap<(String, String), Arc<UserPool>>>,
    pub queue: WaitQueueLimit,
}

impl Pools {
    pub fn new(max_waiting: u32) -> Pools {
        Pools {
            map: Mutex::new(HashMap::new()),
            queue: WaitQueueLimit {
                waiting: AtomicU32::new(0),
                max: max_waiting,
            },
        }
    }

    pub fn get_or_create(
        &self,
        database: &str,
        user: &str,
        make: impl FnOnce() -> UserPool,
    ) -> Arc<UserPool> {
        lock(&self.map)
            .entry((database.to_string(), user.to_string()))
            .or_insert_with(|| Arc::new(make()))
            .clone()
    }

    pub fn all(&self) -> Vec<Arc<UserPool>> {
        let mut v: Vec<_> = lock(&self.map).values().cloned().collect();
        v.sort_by(|a, b| (&a.database, &a.user).cmp(&(&b.database, &b.user)));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_wait_the_cluster_file_gives_makes_a_deadline() {
        let now = Instant::now();
        assert_eq!(
            deadline(now, Duration::from_secs(2)),
            now + Duration::from_secs(2)
        );
        // humantime reads "100000000y"; Instant + that would panic.
        let far = deadline(now, Duration::MAX);
        assert!(far >= now + Duration::from_secs(99 * 365 * 24 * 3600));
    }
}
