//! One TCP service without a node: accept loops on its listeners and its
//! health checker, until shutdown. The node shell (`run`) binds the
//! listeners and calls this; tests call it on 127.0.0.1.
//!
//! Tunnels are spawned detached: stopping a service (a reload that changed
//! some TCP setting) stops accepting but leaves established tunnels to end
//! on their own or at the idle timeout, so a reload does not cut every
//! database connection. Their lease keeps the old pool alive until then.
//!
//! No connection cap of its own: every accepted connection holds a lease
//! (at most maxconn per backend), waits in the pool's bounded queue, or is
//! closed at once.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::check::run_checks;
use super::conn::serve_client;
use super::handle::Handle;
use crate::balancer::pool::PoolEvent;

/// Where pool events of a service go (the node records them; tests collect
/// them). Called from connection tasks and the checker: keep it quick.
pub type EventSink = Arc<dyn Fn(&Handle, &PoolEvent) + Send + Sync>;

/// Pause after a failed accept (EMFILE and friends) instead of spinning.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Serves `handle`'s service on `listeners` and health-checks its backends
/// until `shutdown` is cancelled; returns once the listeners are closed.
pub async fn serve_service(
    listeners: Vec<TcpListener>,
    handle: Arc<Handle>,
    events: EventSink,
    shutdown: CancellationToken,
) {
    let mut tasks = JoinSet::new();
    tasks.spawn(run_checks(handle.clone(), events.clone()));
    for listener in listeners {
        if let Ok(addr) = listener.local_addr() {
            handle.add_listening(addr);
        }
        tasks.spawn(accept_loop(listener, handle.clone(), events.clone()));
    }
    shutdown.cancelled().await;
    // Aborting drops the listeners; wait for it, so a restarted service can
    // bind the same addresses as soon as this returns.
    tasks.shutdown().await;
}

async fn accept_loop(listener: TcpListener, handle: Arc<Handle>, events: EventSink) {
    loop {
        match listener.accept().await {
            Ok((stream, _peer)) => {
                tokio::spawn(serve_client(handle.clone(), stream, events.clone()));
            }
            Err(e) => {
                tracing::warn!(service = %handle.name, "accept failed: {e}");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
}
