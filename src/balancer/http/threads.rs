//! The HTTP front end's own threads: one current-thread tokio runtime per
//! core, each accepting from the same listening sockets and serving every
//! connection it accepted from start to end, with its own idle pool of
//! backend connections.
//!
//! Why not the node's multi-thread runtime: its work stealing moves a
//! connection's task from core to core, and the task's buffers and state
//! move with it. A build with one tokio worker spent 13 % less CPU per
//! proxied request than one with two (BENCHMARKS.md, "The scheduler is a
//! measured lead"). HAProxy and nginx do what this does: a connection stays
//! on the thread that accepted it.
//!
//! Why a pool per thread: a socket is registered with the reactor of the
//! runtime that opened it. A backend connection opened on one thread and
//! reused on another would have its every readiness event cross threads.
//!
//! Why the threads share each listening socket (a `dup` of it) instead of
//! binding their own with `SO_REUSEPORT`: with that option a second
//! process on this machine could bind the same port without an error and
//! silently take a share of the connections, and the VIP listener relies on
//! that error to learn that another process holds the VIP (`bind_front`).
//! A thread busy serving is not waiting on the socket, so a new connection
//! goes to one that is idle; the other wake-ups cost an `EAGAIN`, and only
//! per connection, not per request.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use super::Handle;
use super::serve::{DRAIN, serve_with};

/// More front threads than this would only contend on a Pi's four cores
/// with the rest of the node (PostgreSQL, the pooler, the web role).
const MAX_THREADS: usize = 4;

/// How many front threads this machine gets: one per core, at most
/// `MAX_THREADS`.
pub fn count() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, MAX_THREADS)
}

/// One front end socket and whether it speaks TLS.
pub struct Listener {
    pub listener: TcpListener,
    pub tls: Option<TlsAcceptor>,
}

/// Serves `listeners` on `count()` threads of their own until `stop`, then
/// lets their connections finish (each thread at most `DRAIN`). Returns
/// when every thread has ended; early, with an error, when one ended
/// before `stop` (its runtime could not be built, or it panicked), after
/// stopping the others.
pub async fn run(
    listeners: Vec<Listener>,
    handle: Arc<Handle>,
    stop: CancellationToken,
) -> io::Result<()> {
    // The threads stop on `stop`, or on `early` when one of them failed.
    let early = stop.child_token();
    let mut sockets = Vec::with_capacity(listeners.len());
    for l in listeners {
        sockets.push((l.listener.into_std()?, l.tls));
    }
    let threads = handle.front_threads();
    let (ended_tx, mut ended) = mpsc::unbounded_channel();
    for index in 0..threads {
        let mut own = Vec::with_capacity(sockets.len());
        for (socket, tls) in &sockets {
            own.push((socket.try_clone()?, tls.clone()));
        }
        let handle = handle.clone();
        let stop = early.clone();
        let ended = Ended {
            index,
            tx: ended_tx.clone(),
        };
        let spawned = std::thread::Builder::new()
            .name(format!("piha-front-{index}"))
            .spawn(move || front_thread(index, own, handle, stop, ended));
        if let Err(e) = spawned {
            early.cancel();
            return Err(e);
        }
    }
    // The threads hold their own copies; these would keep the ports bound.
    drop(sockets);
    drop(ended_tx);
    let mut failed = None;
    let mut left = threads;
    while left > 0 {
        // After a stop, a thread gets DRAIN for its connections and a
        // little more to drop its runtime; one that hangs past that is
        // left behind rather than holding up the node's shutdown.
        let next = if early.is_cancelled() {
            match tokio::time::timeout(DRAIN + Duration::from_secs(2), ended.recv()).await {
                Ok(next) => next,
                Err(_) => break,
            }
        } else {
            ended.recv().await
        };
        let Some(index) = next else { break };
        left -= 1;
        if !early.is_cancelled() {
            failed = Some(index);
            early.cancel();
        }
    }
    match failed {
        Some(index) => Err(io::Error::other(format!(
            "front thread {index} stopped by itself"
        ))),
        None => Ok(()),
    }
}

/// Says that a front thread ended, however it ended: sent on drop, so a
/// panic says it too.
struct Ended {
    index: usize,
    tx: mpsc::UnboundedSender<usize>,
}

impl Drop for Ended {
    fn drop(&mut self) {
        let _ = self.tx.send(self.index);
    }
}

fn front_thread(
    index: usize,
    sockets: Vec<(std::net::TcpListener, Option<TlsAcceptor>)>,
    handle: Arc<Handle>,
    stop: CancellationToken,
    ended: Ended,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            tracing::error!("front thread {index}: cannot build its runtime: {e}");
            return;
        }
    };
    runtime.block_on(async {
        let upstream = handle.upstream(index);
        let mut accepting = JoinSet::new();
        for (socket, tls) in sockets {
            match TcpListener::from_std(socket) {
                Ok(listener) => {
                    accepting.spawn(serve_with(
                        listener,
                        handle.clone(),
                        upstream.clone(),
                        tls,
                        stop.clone(),
                    ));
                }
                Err(e) => tracing::error!("front thread {index}: {e}"),
            }
        }
        while let Some(done) = accepting.join_next().await {
            match done {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!("front thread {index}: {e}"),
                Err(e) => tracing::warn!("front thread {index}: accept loop: {e}"),
            }
        }
        // Accepting stopped (here, or on every thread): the connections
        // of this thread are finished by this runtime or not at all.
        handle.wait_idle(DRAIN).await;
    });
    // Dropped before `ended` says so: the runtime's sockets are closed by
    // then, so a restarted balancer can bind the ports again.
    drop(runtime);
    drop(ended);
}
