//! The per-service handle: what a running TCP service shares with the status
//! page and admin API (its pool, for drain/maint/weights) and the counters
//! its connection tasks bump. Counters are plain atomics, bumped without a
//! lock; `stats()` reads them into a serializable snapshot.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::Serialize;

use crate::balancer::pool::{BackendView, Desired, PoolSettings, Source};
use crate::balancer::shared::{AcquireError, SharedPool};
use crate::config::TcpService;

/// One running TCP service.
pub struct Handle {
    pub name: String,
    pub port: u16,
    /// The service's backends; the admin API drains or weighs them here.
    pub pool: Arc<SharedPool>,
    pub(super) settings: TcpService,
    pub(super) counters: ServiceCounters,
    /// Per-backend counters, created on first use. Keys are the service's
    /// configured backends only, so the map stays as small as the config.
    backends: Mutex<HashMap<SocketAddr, Arc<BackendCounters>>>,
    listening: Mutex<Vec<SocketAddr>>,
}

impl std::fmt::Debug for Handle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handle")
            .field("name", &self.name)
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Default)]
pub(super) struct ServiceCounters {
    pub connections: AtomicU64,
    pub active: AtomicU64,
    pub active_max: AtomicU64,
    /// Client to backend.
    pub bytes_in: AtomicU64,
    /// Backend to client.
    pub bytes_out: AtomicU64,
    pub connect_errors: AtomicU64,
    pub retries: AtomicU64,
    pub refused_no_backend: AtomicU64,
    pub refused_queue_full: AtomicU64,
    pub refused_queue_timeout: AtomicU64,
    pub idle_timeouts: AtomicU64,
    /// Tunnels that ended on a read or write error (reset, broken pipe).
    pub aborted: AtomicU64,
}

#[derive(Debug, Default)]
pub(super) struct BackendCounters {
    pub connections: AtomicU64,
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    pub connect_errors: AtomicU64,
}

/// A snapshot of one service, for the status page and `/metrics`.
#[derive(Debug, Clone, Serialize)]
pub struct TcpStats {
    pub name: String,
    pub port: u16,
    pub algorithm: &'static str,
    /// Addresses the service accepts on (the VIP and the node's own).
    pub listening: Vec<SocketAddr>,
    /// Connections waiting for a backend slot now, and the queue's bound.
    pub queued: u32,
    pub queue_limit: u32,
    pub maxconn: u32,
    pub connections_total: u64,
    pub connections_active: u64,
    pub connections_active_max: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub connect_errors: u64,
    pub retries: u64,
    pub refused_no_backend: u64,
    pub refused_queue_full: u64,
    pub refused_queue_timeout: u64,
    pub idle_timeouts: u64,
    pub aborted: u64,
    pub backends: Vec<TcpBackendStats>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TcpBackendStats {
    /// Name, address, state (UP/DOWN/DRAIN/MAINT), weight, active, last check.
    #[serde(flatten)]
    pub view: BackendView,
    pub connections_total: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub connect_errors: u64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The guarded values are plain maps and lists, valid after any panic.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn get(c: &AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

pub(super) fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

impl Handle {
    /// A handle with a fresh pool holding the service's backends, all down
    /// until their first `rise` checks pass.
    pub fn new(service: TcpService) -> Arc<Handle> {
        let pool = SharedPool::new(pool_settings(&service), service.limits.queue);
        let desired: Vec<Desired> = service
            .backends
            .iter()
            .map(|b| Desired {
                name: b.address.to_string(),
                addr: b.address,
                weight: b.weight,
                source: Source::Static,
            })
            .collect();
        // "Added" for each backend at start says nothing worth an event.
        let _ = pool.sync(&desired);
        Arc::new(Handle {
            name: service.name.clone(),
            port: service.port,
            pool,
            settings: service,
            counters: ServiceCounters::default(),
            backends: Mutex::new(HashMap::new()),
            listening: Mutex::new(Vec::new()),
        })
    }

    pub fn settings(&self) -> &TcpService {
        &self.settings
    }

    pub fn stats(&self) -> TcpStats {
        let c = &self.counters;
        let backends = self
            .pool
            .view()
            .into_iter()
            .map(|view| {
                let b = self.backend(view.addr);
                TcpBackendStats {
                    view,
                    connections_total: get(&b.connections),
                    bytes_in: get(&b.bytes_in),
                    bytes_out: get(&b.bytes_out),
                    connect_errors: get(&b.connect_errors),
                }
            })
            .collect();
        TcpStats {
            name: self.name.clone(),
            port: self.port,
            algorithm: self.settings.algorithm.name(),
            listening: lock(&self.listening).clone(),
            queued: self.pool.queued(),
            queue_limit: self.settings.limits.queue,
            maxconn: self.settings.limits.maxconn,
            connections_total: get(&c.connections),
            connections_active: get(&c.active),
            connections_active_max: get(&c.active_max),
            bytes_in: get(&c.bytes_in),
            bytes_out: get(&c.bytes_out),
            connect_errors: get(&c.connect_errors),
            retries: get(&c.retries),
            refused_no_backend: get(&c.refused_no_backend),
            refused_queue_full: get(&c.refused_queue_full),
            refused_queue_timeout: get(&c.refused_queue_timeout),
            idle_timeouts: get(&c.idle_timeouts),
            aborted: get(&c.aborted),
            backends,
        }
    }

    pub(super) fn backend(&self, addr: SocketAddr) -> Arc<BackendCounters> {
        lock(&self.backends).entry(addr).or_default().clone()
    }

    pub(super) fn add_listening(&self, addr: SocketAddr) {
        lock(&self.listening).push(addr);
    }

    pub(super) fn count_refusal(&self, why: AcquireError) {
        let c = &self.counters;
        bump(match why {
            AcquireError::NoBackend => &c.refused_no_backend,
            AcquireError::QueueFull => &c.refused_queue_full,
            AcquireError::QueueTimeout => &c.refused_queue_timeout,
        });
    }

    /// Counts a connection for its whole life: `active` drops with the guard.
    pub(super) fn open_connection(&self) -> ActiveGuard<'_> {
        let c = &self.counters;
        bump(&c.connections);
        let now = c.active.fetch_add(1, Ordering::Relaxed) + 1;
        c.active_max.fetch_max(now, Ordering::Relaxed);
        ActiveGuard(&c.active)
    }
}

pub(super) struct ActiveGuard<'a>(&'a AtomicU64);

impl Drop for ActiveGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// TCP services have no slow start setting: a database or Redis backend is
/// either accepting connections or not, and a connection is long-lived, so a
/// ramp in new-connection share would barely change its load.
fn pool_settings(service: &TcpService) -> PoolSettings {
    PoolSettings {
        algorithm: service.algorithm,
        slow_start: Duration::ZERO,
        rise: service.health.rise,
        fall: service.health.fall,
        maxconn: service.limits.maxconn,
        // A connect check either is answered or fails: no backend is ever
        // down yet answering, so panic routing would never apply.
        panic: false,
    }
}
