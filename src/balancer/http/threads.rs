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
//!
//! Why a thread that accepted a connection may hand it to another
//! (`Placement`): whichever thread the kernel woke accepts, and under load
//! that was mostly the same one. Measured with 64 keep-alive clients, one
//! thread got 73 % of the CPU time and the other 27 %: one core saturated,
//! the other half idle, and the tail latency worse than with one shared
//! runtime. So each connection goes to the thread serving the fewest, as
//! HAProxy's listeners spread their connections over its threads. It costs
//! a channel send and a socket moved between reactors once per connection,
//! never per request.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, mpsc};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use super::Handle;
use super::serve::{DRAIN, Front, serve_with};

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
    // The threads stop on `stop`, or on `early` when one of them failed or
    // this future was dropped: an operator's stop aborts the balancer's
    // task, and threads left running would keep serving and keep the ports.
    let early = stop.child_token();
    let _stop_threads = early.clone().drop_guard();
    let mut sockets = Vec::with_capacity(listeners.len());
    for l in listeners {
        sockets.push((l.listener.into_std()?, l.tls));
    }
    let threads = handle.front_threads();
    // Every thread's copies first: a failure leaves no thread running.
    let mut copies = Vec::with_capacity(threads);
    for _ in 0..threads {
        let mut own = Vec::with_capacity(sockets.len());
        for (socket, tls) in &sockets {
            own.push((socket.try_clone()?, tls.clone()));
        }
        copies.push(own);
    }
    // The threads hold their own copies; these would keep the ports bound.
    drop(sockets);
    let (spread, inboxes) = Spread::new(threads);
    let (ended_tx, mut ended) = mpsc::unbounded_channel();
    for (index, (own, inbox)) in copies.into_iter().zip(inboxes).enumerate() {
        let place = Place {
            index,
            handle: handle.clone(),
            spread: spread.clone(),
            inbox,
            stop: early.clone(),
        };
        let ended = Ended {
            index,
            tx: ended_tx.clone(),
        };
        let spawned = std::thread::Builder::new()
            .name(format!("piha-front-{index}"))
            .spawn(move || front_thread(place, own, ended));
        if let Err(e) = spawned {
            early.cancel();
            return Err(e);
        }
    }
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

/// What one front thread needs besides its sockets.
struct Place {
    index: usize,
    handle: Arc<Handle>,
    spread: Arc<Spread>,
    /// Connections other threads accepted for this one.
    inbox: mpsc::UnboundedReceiver<Handoff>,
    stop: CancellationToken,
}

fn front_thread(
    place: Place,
    sockets: Vec<(std::net::TcpListener, Option<TlsAcceptor>)>,
    ended: Ended,
) {
    let Place {
        index,
        handle,
        spread,
        inbox,
        stop,
    } = place;
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
        let mut fronts = Vec::with_capacity(sockets.len());
        let mut accepting = JoinSet::new();
        for (listener, (socket, tls)) in sockets.into_iter().enumerate() {
            let front = Arc::new(Front::new(
                handle.clone(),
                upstream.clone(),
                tls,
                stop.clone(),
            ));
            fronts.push(front.clone());
            let placement = Placement {
                me: index,
                listener,
                spread: spread.clone(),
            };
            match TcpListener::from_std(socket) {
                Ok(socket) => {
                    accepting.spawn(serve_with(socket, front, Some(placement)));
                }
                Err(e) => tracing::error!("front thread {index}: {e}"),
            }
        }
        let inbox = tokio::spawn(serve_inbox(inbox, fronts, index, stop.clone()));
        while let Some(done) = accepting.join_next().await {
            match done {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!("front thread {index}: {e}"),
                Err(e) => tracing::warn!("front thread {index}: accept loop: {e}"),
            }
        }
        let _ = inbox.await;
        // Accepting stopped (here, or on every thread): the connections
        // of this thread are finished by this runtime or not at all.
        handle.wait_idle(DRAIN).await;
    });
    // Dropped before `ended` says so: the runtime's sockets are closed by
    // then, so a restarted balancer can bind the ports again.
    drop(runtime);
    drop(ended);
}

/// Serves the connections other threads handed to this one, until `stop`.
/// One handed over as the balancer stops is closed: it was accepted in the
/// last moment, and its client sees what it would see a moment later.
async fn serve_inbox(
    mut inbox: mpsc::UnboundedReceiver<Handoff>,
    fronts: Vec<Arc<Front>>,
    index: usize,
    stop: CancellationToken,
) {
    loop {
        let handoff = tokio::select! {
            handoff = inbox.recv() => match handoff {
                Some(handoff) => handoff,
                None => return,
            },
            _ = stop.cancelled() => return,
        };
        let Some(front) = fronts.get(handoff.listener) else {
            continue;
        };
        match TcpStream::from_std(handoff.stream) {
            Ok(stream) => {
                front
                    .clone()
                    .spawn(stream, handoff.peer, handoff.slot, Some(handoff.live))
            }
            Err(e) => tracing::debug!(
                "front thread {index}: a connection from {} handed over: {e}",
                handoff.peer
            ),
        }
    }
}

/// The front threads' connection counts and inboxes, shared by all. The
/// inboxes need no bound of their own: every connection in one holds a
/// slot of the balancer's connection cap.
pub(super) struct Spread {
    live: Vec<AtomicUsize>,
    inboxes: Vec<mpsc::UnboundedSender<Handoff>>,
}

impl Spread {
    fn new(threads: usize) -> (Arc<Spread>, Vec<mpsc::UnboundedReceiver<Handoff>>) {
        let (senders, receivers) = (0..threads).map(|_| mpsc::unbounded_channel()).unzip();
        let spread = Spread {
            live: (0..threads).map(|_| AtomicUsize::new(0)).collect(),
            inboxes: senders,
        };
        (Arc::new(spread), receivers)
    }

    /// The thread serving the fewest connections; `me` on a tie, so an
    /// even spread moves nothing.
    fn least_loaded(&self, me: usize) -> usize {
        let load = |i: usize| {
            self.live
                .get(i)
                .map_or(usize::MAX, |n| n.load(Ordering::Relaxed))
        };
        let mut best = me;
        for i in 0..self.live.len() {
            if load(i) < load(best) {
                best = i;
            }
        }
        best
    }

    /// Counts a connection for thread `index` until the guard drops.
    fn count(self: &Arc<Self>, index: usize) -> Live {
        if let Some(n) = self.live.get(index) {
            n.fetch_add(1, Ordering::Relaxed);
        }
        Live {
            spread: self.clone(),
            index,
        }
    }
}

/// One connection counted for a front thread.
pub(super) struct Live {
    spread: Arc<Spread>,
    index: usize,
}

impl Drop for Live {
    fn drop(&mut self) {
        if let Some(n) = self.spread.live.get(self.index) {
            n.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// A connection accepted by one thread for another.
pub(super) struct Handoff {
    /// Which of the receiving thread's fronts (listeners) serves it.
    listener: usize,
    stream: std::net::TcpStream,
    peer: SocketAddr,
    slot: OwnedSemaphorePermit,
    live: Live,
}

/// Where the connections one thread accepts from one listener go.
pub(super) struct Placement {
    me: usize,
    listener: usize,
    spread: Arc<Spread>,
}

/// Where `Placement::place` put a connection.
pub(super) enum Placed {
    /// Served by the thread that accepted it.
    Here(TcpStream, OwnedSemaphorePermit, Live),
    /// Handed to another thread, or closed when that could not be done.
    Elsewhere,
}

impl Placement {
    pub(super) fn place(
        &self,
        stream: TcpStream,
        peer: SocketAddr,
        slot: OwnedSemaphorePermit,
    ) -> Placed {
        let to = self.spread.least_loaded(self.me);
        let live = self.spread.count(to);
        if to == self.me {
            return Placed::Here(stream, slot, live);
        }
        // Off this runtime's reactor, to be registered with the other's.
        let stream = match stream.into_std() {
            Ok(stream) => stream,
            Err(e) => {
                tracing::debug!("a connection from {peer} could not be handed over: {e}");
                return Placed::Elsewhere;
            }
        };
        let handoff = Handoff {
            listener: self.listener,
            stream,
            peer,
            slot,
            live,
        };
        if let Some(inbox) = self.spread.inboxes.get(to) {
            // A closed inbox: that thread is stopping; the connection closes.
            let _ = inbox.send(handoff);
        }
        Placed::Elsewhere
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_goes_to_the_thread_serving_the_fewest_and_stays_on_a_tie() {
        let (spread, _inboxes) = Spread::new(3);
        assert_eq!(spread.least_loaded(1), 1, "a tie keeps it here");
        let a = spread.count(1);
        let _b = spread.count(1);
        let _c = spread.count(0);
        assert_eq!(spread.least_loaded(1), 2);
        let _d = spread.count(2);
        // 1, 2, 1: thread 0 and thread 2 tie below thread 1.
        assert_eq!(spread.least_loaded(0), 0);
        assert_eq!(spread.least_loaded(1), 0);
        drop(a);
        // A connection that ended no longer counts: 1, 1, 1.
        assert_eq!(spread.least_loaded(1), 1);
    }

    #[tokio::test]
    async fn a_connection_handed_over_arrives_with_its_count() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let _client = TcpStream::connect(addr).await.unwrap();
        let (stream, peer) = listener.accept().await.unwrap();
        let (spread, mut inboxes) = Spread::new(2);
        let _busy = spread.count(0);
        let slots = Arc::new(tokio::sync::Semaphore::new(1));
        let slot = slots.clone().try_acquire_owned().unwrap();
        let placement = Placement {
            me: 0,
            listener: 0,
            spread: spread.clone(),
        };
        assert!(matches!(
            placement.place(stream, peer, slot),
            Placed::Elsewhere
        ));
        let handoff = inboxes[1].try_recv().expect("thread 1's inbox");
        assert_eq!(handoff.peer, peer);
        assert_eq!(spread.live[1].load(Ordering::Relaxed), 1);
        assert_eq!(slots.available_permits(), 0, "the slot travels with it");
        drop(handoff);
        assert_eq!(spread.live[1].load(Ordering::Relaxed), 0);
        assert_eq!(slots.available_permits(), 1);
    }
}
