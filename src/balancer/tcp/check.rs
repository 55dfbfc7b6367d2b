//! Active health checks of a TCP service's backends: a TCP connect every
//! `interval`, bounded by `timeout`, closed at once (HAProxy's plain `check`
//! on a TCP backend, results named as its L4OK / L4CON / L4TOUT). Results go
//! to the pool's rise/fall state; transitions become events.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tokio::time::MissedTickBehavior;

use super::handle::Handle;
use super::serve::EventSink;
use crate::balancer::health::CheckResult;

/// Floor for a configured interval, so a zero in the file cannot spin.
const MIN_INTERVAL: Duration = Duration::from_millis(50);

/// Checks every backend of `handle` each interval until dropped (the caller
/// aborts the task). The first round runs at once, so a service is usable
/// `rise` intervals after start rather than `rise + 1`.
pub(super) async fn run_checks(handle: Arc<Handle>, events: EventSink) {
    let health = &handle.settings.health;
    let timeout = health.timeout;
    let mut tick = tokio::time::interval(health.interval.max(MIN_INTERVAL));
    // A round slower than the interval (timeout > interval) delays the next
    // rather than firing a burst to catch up.
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let mut round = JoinSet::new();
        for addr in handle.pool.check_targets() {
            round.spawn(async move { (addr, check(addr, timeout).await) });
        }
        while let Some(done) = round.join_next().await {
            let Ok((addr, result)) = done else { continue };
            for event in handle.pool.on_check(addr, result) {
                events(&handle, &event);
            }
        }
        // Drains that completed when a connection ended.
        for event in handle.pool.take_events() {
            events(&handle, &event);
        }
    }
}

/// One connect check.
pub async fn check(addr: SocketAddr, timeout: Duration) -> CheckResult {
    let started = Instant::now();
    let outcome = tokio::time::timeout(timeout, TcpStream::connect(addr)).await;
    let took = started.elapsed();
    let (ok, detail) = match outcome {
        Ok(Ok(_stream)) => (true, format!("L4OK in {} ms", took.as_millis())),
        Ok(Err(e)) => (false, format!("L4CON {e}")),
        Err(_) => (false, format!("L4TOUT after {} ms", timeout.as_millis())),
    };
    CheckResult {
        ok,
        // A connect check fails only by not being answered.
        answered: ok,
        at: Instant::now(),
        detail,
    }
}
