//! The pool as the proxies share it: one short lock around the sans-IO
//! `Pool` (a pick is a few hundred nanoseconds of arithmetic, so a mutex is
//! cheaper than a message round trip to an owner task), a bounded queue for
//! requests that find every backend at maxconn, and a `Lease` that gives the
//! slot back when dropped, on every path, errors and panics included.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::health::CheckResult;
use super::pool::{Admin, BackendView, Desired, Pick, Pool, PoolEvent, PoolSettings};

/// Why no backend could be had; each maps to a 503 (HTTP) or a closed
/// connection (TCP), and none may be retried on another front end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AcquireError {
    #[error("no backend is up")]
    NoBackend,
    #[error("every backend is at maxconn and the queue is full")]
    QueueFull,
    #[error("every backend stayed at maxconn for the whole queue timeout")]
    QueueTimeout,
}

pub struct SharedPool {
    pool: Mutex<Pool>,
    /// Woken whenever a slot frees, so queued requests try again.
    freed: Notify,
    queued: AtomicU32,
    queue_cap: AtomicU32,
    /// Pool events from `Lease::drop` (a leaver finishing), for whoever
    /// records events: the role's shell drains it.
    pending_events: Mutex<Vec<PoolEvent>>,
}

/// One request's or connection's claim on a backend.
pub struct Lease {
    pub addr: SocketAddr,
    pool: Arc<SharedPool>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        let events = self.pool.lock().release(self.addr);
        if !events.is_empty() {
            self.pool.push_events(events);
        }
        self.pool.freed.notify_waiters();
    }
}

impl SharedPool {
    pub fn new(settings: PoolSettings, queue_cap: u32) -> Arc<SharedPool> {
        Arc::new(SharedPool {
            pool: Mutex::new(Pool::new(settings)),
            freed: Notify::new(),
            queued: AtomicU32::new(0),
            queue_cap: AtomicU32::new(queue_cap),
            pending_events: Mutex::new(Vec::new()),
        })
    }

    /// A poisoned lock means a panic mid-update of plain counters; the state
    /// is still usable, and a balancer that stops balancing is worse.
    fn lock(&self) -> MutexGuard<'_, Pool> {
        self.pool.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn push_events(&self, events: Vec<PoolEvent>) {
        self.pending_events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(events);
    }

    /// Events produced outside the role's own calls (drains completing).
    pub fn take_events(&self) -> Vec<PoolEvent> {
        std::mem::take(
            &mut *self
                .pending_events
                .lock()
                .unwrap_or_else(|p| p.into_inner()),
        )
    }

    /// A backend for `client`, waiting in the bounded queue while all are at
    /// maxconn. `exclude` keeps a retry off the backend that just failed.
    pub async fn acquire(
        self: &Arc<Self>,
        client: IpAddr,
        exclude: Option<SocketAddr>,
        queue_timeout: Duration,
    ) -> Result<Lease, AcquireError> {
        match self.try_pick(client, exclude) {
            Pick::Chosen(addr) => return Ok(self.lease(addr)),
            Pick::NoBackend => return Err(AcquireError::NoBackend),
            Pick::AllBusy => {}
        }
        let cap = self.queue_cap.load(Ordering::Relaxed);
        if self.queued.fetch_add(1, Ordering::AcqRel) >= cap {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            return Err(AcquireError::QueueFull);
        }
        let _queued = QueuedGuard(self);
        let deadline = tokio::time::Instant::now() + queue_timeout;
        loop {
            // Register interest before looking, so a release between the
            // look and the wait is not missed.
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            match self.try_pick(client, exclude) {
                Pick::Chosen(addr) => return Ok(self.lease(addr)),
                Pick::NoBackend => return Err(AcquireError::NoBackend),
                Pick::AllBusy => {}
            }
            if tokio::time::timeout_at(deadline, freed).await.is_err() {
                return Err(AcquireError::QueueTimeout);
            }
        }
    }

    fn try_pick(&self, client: IpAddr, exclude: Option<SocketAddr>) -> Pick {
        self.lock().pick(client, Instant::now(), exclude)
    }

    fn lease(self: &Arc<Self>, addr: SocketAddr) -> Lease {
        Lease {
            addr,
            pool: self.clone(),
        }
    }

    /// Requests waiting for a slot now.
    pub fn queued(&self) -> u32 {
        self.queued.load(Ordering::Relaxed)
    }

    pub fn sync(&self, desired: &[Desired]) -> Vec<PoolEvent> {
        let events = self.lock().sync(desired, Instant::now());
        self.freed.notify_waiters();
        events
    }

    pub fn on_check(&self, addr: SocketAddr, result: CheckResult) -> Vec<PoolEvent> {
        let events = self.lock().on_check(addr, result);
        if !events.is_empty() {
            // A backend that came up can take queued requests.
            self.freed.notify_waiters();
        }
        events
    }

    pub fn on_strike(&self, addr: SocketAddr, why: &str) -> Vec<PoolEvent> {
        self.lock().on_strike(addr, Instant::now(), why)
    }

    /// Whether panic routing is on, and how many picks it has made.
    pub fn panic(&self) -> (bool, u64) {
        let pool = self.lock();
        (pool.panicking(), pool.panic_picks())
    }

    pub fn set_admin(&self, which: &str, admin: Admin) -> bool {
        let found = self.lock().set_admin(which, admin);
        self.freed.notify_waiters();
        found
    }

    pub fn set_weight(&self, which: &str, weight: Option<u32>) -> bool {
        self.lock().set_weight(which, weight)
    }

    pub fn set_settings(&self, settings: PoolSettings, queue_cap: u32) {
        self.lock().set_settings(settings);
        self.queue_cap.store(queue_cap, Ordering::Relaxed);
    }

    pub fn view(&self) -> Vec<BackendView> {
        self.lock().view(Instant::now())
    }

    /// Addresses to health-check: every backend that is not leaving.
    pub fn check_targets(&self) -> Vec<SocketAddr> {
        self.lock()
            .backends()
            .iter()
            .filter(|b| !b.leaving)
            .map(|b| b.addr)
            .collect()
    }
}

struct QueuedGuard<'a>(&'a SharedPool);

impl Drop for QueuedGuard<'_> {
    fn drop(&mut self) {
        self.0.queued.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balancer::pool::Source;
    use crate::config::Algorithm;

    const CLIENT: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(198, 51, 100, 7));

    fn one_backend(maxconn: u32, queue: u32) -> (Arc<SharedPool>, SocketAddr) {
        let p = SharedPool::new(
            PoolSettings {
                algorithm: Algorithm::LeastConn,
                slow_start: Duration::ZERO,
                rise: 1,
                fall: 1,
                maxconn,
                panic: false,
            },
            queue,
        );
        let addr: SocketAddr = "192.0.2.1:8080".parse().unwrap();
        p.sync(&[Desired {
            name: "pi-1".into(),
            addr,
            weight: 1,
            source: Source::Static,
        }]);
        p.on_check(
            addr,
            CheckResult {
                ok: true,
                answered: true,
                at: Instant::now(),
                detail: String::new(),
            },
        );
        (p, addr)
    }

    #[tokio::test]
    async fn a_queued_request_gets_the_slot_a_lease_gives_back() {
        let (p, addr) = one_backend(1, 4);
        let first = p
            .acquire(CLIENT, None, Duration::from_secs(5))
            .await
            .unwrap();
        let p2 = p.clone();
        let waiter = tokio::spawn(async move {
            p2.acquire(CLIENT, None, Duration::from_secs(5))
                .await
                .map(|l| l.addr)
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(p.queued(), 1);
        drop(first);
        assert_eq!(waiter.await.unwrap(), Ok(addr));
        assert_eq!(p.queued(), 0);
    }

    #[tokio::test]
    async fn the_queue_is_bounded_and_times_out() {
        let (p, _) = one_backend(1, 1);
        let _held = p
            .acquire(CLIENT, None, Duration::from_secs(5))
            .await
            .unwrap();
        let p2 = p.clone();
        let waiter = tokio::spawn(async move {
            p2.acquire(CLIENT, None, Duration::from_millis(200))
                .await
                .err()
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        let full = p.acquire(CLIENT, None, Duration::from_secs(5)).await.err();
        assert_eq!(full, Some(AcquireError::QueueFull));
        assert_eq!(waiter.await.unwrap(), Some(AcquireError::QueueTimeout));
        assert_eq!(p.queued(), 0);
    }

    #[tokio::test]
    async fn no_backend_fails_fast() {
        let (p, _) = one_backend(1, 1);
        p.set_admin("pi-1", Admin::Maint);
        let err = p.acquire(CLIENT, None, Duration::from_secs(5)).await.err();
        assert_eq!(err, Some(AcquireError::NoBackend));
    }
}
