//! The HTTP load balancer: clients connect to the VIP (and this node's
//! address), requests go to the web role of whichever nodes are healthy.
//! It replaces an HAProxy pair, nginx's `proxy_next_upstream` and the
//! ZooKeeper script that rewrote HAProxy's backend list.
//!
//! Where things are:
//! - `run`: the node-agent shell: listeners, backends following membership
//!   and the file live, pool events as events, role health;
//! - `desired`: which backends there should be (pure);
//! - `threads`: the front end's own threads, a runtime per core;
//! - `serve` / `conn`: accept loop, connection cap, timeouts, the stream
//!   wrapper (the request smuggling guard itself is `crate::http1`);
//! - `proxy`: one request (lease, retry rules, forwarding); `upstream/`:
//!   backend connections (piha's own HTTP/1.1 client) and their idle pool;
//!   `headers`,
//!   `body`, `reply`, `upgrade`: its parts;
//! - `check`: active health checks; `stats`: counters;
//! - the pool itself (health, algorithms, drain) is `balancer::pool`, shared
//!   with the TCP proxy through `balancer::shared`.
//!
//! See LIFECYCLE.md for a request's path and a backend's.

mod body;
mod check;
mod conn;
mod desired;
mod headers;
mod listen;
mod proxy;
mod reply;
mod run;
mod serve;
mod stats;
mod threads;
mod upgrade;
mod upstream;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::sync::{Notify, Semaphore, watch};

pub use crate::balancer::listen::bind_listener as bind;
pub use check::{health_checks, probe};
pub use desired::{Me, desired};
pub use run::{run, run_with_tls};
pub use serve::serve;
pub use stats::{BackendStats, Classes, FrontendStats, HttpStats, Latency, Unavailable};

use crate::balancer::health::CheckResult;
use crate::balancer::pool::{Admin, Desired, PoolEvent, PoolSettings};
use crate::balancer::shared::SharedPool;
use crate::config::BalancerSettings;
use stats::Stats;
use upstream::Upstream;

/// Idle keep-alive connections to backends are closed after this: below
/// the idle timeouts of common servers (Apache's `KeepAliveTimeout` is 5 s,
/// piha's web role closes at its header timeout), so the balancer, not the
/// backend, ends an idle connection and no request is ever sent on one the
/// backend is closing.
const BACKEND_IDLE: std::time::Duration = std::time::Duration::from_secs(4);

/// Pool events kept for whoever records them; older ones are dropped
/// beyond this (nobody reading must not mean growing).
const MAX_PENDING_EVENTS: usize = 1024;

/// One running HTTP balancer: its backends, counters and settings. What the
/// status page and the admin API reach, and what `serve` and
/// `health_checks` run on.
pub struct Handle {
    pub(crate) pool: Arc<SharedPool>,
    pub(crate) stats: Arc<Stats>,
    /// Keep-alive connections to the backends, an idle pool per front
    /// thread (`threads`): a socket belongs to the runtime that opened it.
    upstreams: Vec<Arc<Upstream>>,
    /// Fixed for the life of the handle: a change restarts the role (except
    /// `backends`, which `sync` follows).
    pub(crate) settings: BalancerSettings,
    /// Client connection slots, shared by every listener of this balancer.
    pub(crate) slots: Arc<Semaphore>,
    slot_count: usize,
    events: Mutex<VecDeque<PoolEvent>>,
    events_ready: Notify,
    /// Bumped on every `sync`, so the health checks follow the targets.
    targets: watch::Sender<u64>,
}

impl std::fmt::Debug for Handle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handle")
            .field("backends", &self.pool.view().len())
            .field("slots", &self.slot_count)
            .finish()
    }
}

impl Handle {
    /// A balancer with no backends yet; `sync` gives it some. The client
    /// connection cap follows the file descriptor limit.
    pub fn new(settings: &BalancerSettings) -> Arc<Handle> {
        Handle::with_connection_cap(settings, listen::client_connection_cap())
    }

    pub fn with_connection_cap(settings: &BalancerSettings, cap: usize) -> Arc<Handle> {
        let limits = &settings.limits;
        let pool = SharedPool::new(
            PoolSettings {
                algorithm: settings.algorithm,
                slow_start: settings.slow_start,
                rise: settings.health.rise,
                fall: settings.health.fall,
                maxconn: limits.maxconn,
                panic: settings.health.panic,
            },
            limits.queue,
        );
        let upstreams = (0..threads::count())
            .map(|_| {
                Upstream::new(
                    limits.connect_timeout,
                    limits.tcp_user_timeout,
                    BACKEND_IDLE,
                    limits.maxconn as usize,
                )
            })
            .collect();
        let cap = cap.max(1);
        Arc::new(Handle {
            pool,
            stats: Arc::new(Stats::default()),
            upstreams,
            settings: settings.clone(),
            slots: Arc::new(Semaphore::new(cap)),
            slot_count: cap,
            events: Mutex::new(VecDeque::new()),
            events_ready: Notify::new(),
            targets: watch::channel(0).0,
        })
    }

    /// Makes the backends exactly `desired`: new ones are checked at once
    /// and get traffic once `rise` checks pass; gone ones drain.
    pub fn sync(&self, desired: &[Desired]) {
        let events = self.pool.sync(desired);
        self.push_events(events);
        let addrs: Vec<SocketAddr> = desired.iter().map(|d| d.addr).collect();
        for upstream in &self.upstreams {
            upstream.retain(&addrs);
        }
        self.targets.send_modify(|g| *g = g.wrapping_add(1));
    }

    pub fn stats(&self) -> HttpStats {
        let mut stats = self.stats.snapshot(self.pool.view(), self.pool.queued());
        (stats.frontend.panic, stats.frontend.panic_requests) = self.pool.panic();
        stats
    }

    /// Drain, maintenance or ready, by backend name or address.
    pub fn set_admin(&self, which: &str, admin: Admin) -> bool {
        self.pool.set_admin(which, admin)
    }

    /// A runtime weight (1..=256), or `None` for the configured one.
    pub fn set_weight(&self, which: &str, weight: Option<u32>) -> bool {
        self.pool.set_weight(which, weight)
    }

    /// How many front threads serve this balancer: one idle pool each.
    pub(crate) fn front_threads(&self) -> usize {
        self.upstreams.len()
    }

    /// The idle pool of front thread `index` (of `front_threads()`).
    pub(crate) fn upstream(&self, index: usize) -> Arc<Upstream> {
        // Never empty: `with_connection_cap` makes at least one.
        self.upstreams[index % self.upstreams.len()].clone()
    }

    pub fn pool(&self) -> &Arc<SharedPool> {
        &self.pool
    }

    pub fn settings(&self) -> &BalancerSettings {
        &self.settings
    }

    /// Pool events since the last call: backends added, up, down, leaving,
    /// removed.
    pub fn take_events(&self) -> Vec<PoolEvent> {
        let mut events: Vec<PoolEvent> = self.lock_events().drain(..).collect();
        events.extend(self.pool.take_events());
        events
    }

    /// Resolves when events are waiting (except drains completing, which
    /// only `take_events` sees; poll it now and then too).
    pub async fn events_ready(&self) {
        self.events_ready.notified().await;
    }

    /// Waits until no client connection is open, at most `limit`.
    pub async fn wait_idle(&self, limit: std::time::Duration) -> bool {
        let all = u32::try_from(self.slot_count).unwrap_or(u32::MAX);
        tokio::time::timeout(limit, self.slots.acquire_many(all))
            .await
            .is_ok()
    }

    pub(crate) fn on_check(&self, addr: SocketAddr, result: CheckResult) {
        let events = self.pool.on_check(addr, result);
        if !events.is_empty() {
            self.push_events(events);
        }
    }

    /// Real traffic failed on `addr` before any response byte.
    pub(crate) fn strike(&self, addr: SocketAddr, why: &str) {
        let events = self.pool.on_strike(addr, why);
        if !events.is_empty() {
            self.push_events(events);
        }
    }

    pub(crate) fn targets_changed(&self) -> watch::Receiver<u64> {
        self.targets.subscribe()
    }

    fn push_events(&self, events: Vec<PoolEvent>) {
        if events.is_empty() {
            return;
        }
        let mut q = self.lock_events();
        q.extend(events);
        while q.len() > MAX_PENDING_EVENTS {
            q.pop_front();
        }
        drop(q);
        self.events_ready.notify_one();
    }

    fn lock_events(&self) -> std::sync::MutexGuard<'_, VecDeque<PoolEvent>> {
        self.events.lock().unwrap_or_else(|p| p.into_inner())
    }
}
