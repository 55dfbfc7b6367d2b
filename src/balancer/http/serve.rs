//! The front end's accept loop and connection tasks.
//!
//! Each connection is served by hyper-util's auto builder (HTTP/1.1, and h2
//! by prior knowledge or ALPN) over `ConnIo`, with hyper's timer really set
//! so `header_read_timeout` works, a read buffer bounded by
//! `max_header_bytes`, and a watchdog for the timeouts hyper does not have
//! (see `conn`). Accepting pauses while every connection slot is taken.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::OwnedSemaphorePermit;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use super::Handle;
use super::conn::{ConnIo, ConnState, Expiry, Timeouts};
use super::proxy::{self, RequestCtx};
use super::threads::{Live, Placed, Placement};
use super::upstream::Upstream;
use crate::http1::Framing;

/// hyper refuses an HTTP/1 read buffer below this.
const HYPER_MIN_BUF: usize = 8192;
/// A connection closed for idling gets this long to finish politely.
const CLOSE_GRACE: Duration = Duration::from_secs(1);
/// When the balancer stops, requests in flight get this long.
pub const DRAIN: Duration = Duration::from_secs(5);
/// h2 streams per connection (HAProxy's default too).
const H2_STREAMS: u32 = 100;

/// Serves clients from `listener` until `shutdown`; then stops accepting
/// and lets each connection finish (bounded by `DRAIN`). With `tls`, each
/// connection is a TLS handshake first (bounded by the header timeout).
/// This is the front end on the caller's runtime, with the first idle pool
/// of backend connections; the balancer's node service runs `serve_with`
/// on threads of its own (`threads`).
pub async fn serve(
    listener: TcpListener,
    handle: Arc<Handle>,
    tls: Option<TlsAcceptor>,
    shutdown: CancellationToken,
) -> io::Result<()> {
    let upstream = handle.upstream(0);
    let front = Arc::new(Front::new(handle, upstream, tls, shutdown));
    serve_with(listener, front, None).await
}

/// `serve` for `front`, which must belong to the runtime this runs on. With
/// `placement`, each accepted connection goes to the front thread with the
/// fewest connections, which may be another one.
pub(super) async fn serve_with(
    listener: TcpListener,
    front: Arc<Front>,
    placement: Option<Placement>,
) -> io::Result<()> {
    let local = listener.local_addr()?;
    let shutdown = front.shutdown.clone();
    loop {
        let slot = tokio::select! {
            slot = front.handle.slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => return Ok(()), // closed: the handle is going away
            },
            _ = shutdown.cancelled() => return Ok(()),
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                // EMFILE and friends: back off instead of spinning.
                Err(e) => {
                    tracing::warn!("accept on {local} failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => return Ok(()),
        };
        let _ = stream.set_nodelay(true);
        let Some(placement) = &placement else {
            front.clone().spawn(stream, peer, slot, None);
            continue;
        };
        match placement.place(stream, peer, slot) {
            Placed::Here(stream, slot, live) => front.clone().spawn(stream, peer, slot, Some(live)),
            Placed::Elsewhere => {}
        }
    }
}

/// One listener's way of serving a connection on one runtime.
pub(super) struct Front {
    handle: Arc<Handle>,
    /// This runtime's keep-alive connections to the backends.
    upstream: Arc<Upstream>,
    builder: auto::Builder<TokioExecutor>,
    tls: Option<TlsAcceptor>,
    timeouts: Timeouts,
    max_head: usize,
    shutdown: CancellationToken,
}

impl Front {
    pub(super) fn new(
        handle: Arc<Handle>,
        upstream: Arc<Upstream>,
        tls: Option<TlsAcceptor>,
        shutdown: CancellationToken,
    ) -> Front {
        let limits = &handle.settings.limits;
        let max_head = usize::try_from(limits.max_header_bytes)
            .unwrap_or(usize::MAX)
            .max(HYPER_MIN_BUF);
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_timeout)
            .max_buf_size(max_head)
            .keep_alive(true);
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_header_list_size(u32::try_from(max_head).unwrap_or(u32::MAX))
            .max_concurrent_streams(H2_STREAMS);
        let timeouts = Timeouts {
            header: limits.header_timeout,
            idle: limits.idle_timeout,
            busy: limits.idle_timeout.max(limits.server_timeout),
        };
        Front {
            handle,
            upstream,
            builder,
            tls,
            timeouts,
            max_head,
            shutdown,
        }
    }

    /// Serves `stream` on this runtime; `live` counts it for its thread.
    pub(super) fn spawn(
        self: Arc<Self>,
        stream: TcpStream,
        peer: SocketAddr,
        slot: OwnedSemaphorePermit,
        live: Option<Live>,
    ) {
        tokio::spawn(async move {
            self.connection(stream, peer, slot).await;
            drop(live);
        });
    }

    async fn connection(&self, stream: TcpStream, peer: SocketAddr, slot: OwnedSemaphorePermit) {
        let state = ConnState::new(slot, self.handle.stats.clone());
        let Some(acceptor) = &self.tls else {
            return self.serve_io(stream, peer, state, false, true).await;
        };
        match tokio::time::timeout(self.timeouts.header, acceptor.accept(stream)).await {
            Ok(Ok(tls)) => {
                let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
                self.serve_io(tls, peer, state, true, !h2).await;
            }
            Ok(Err(e)) => self.handshake_failed(peer, &e.to_string()),
            Err(_) => self.handshake_failed(peer, "timeout"),
        }
    }

    fn handshake_failed(&self, peer: SocketAddr, why: &str) {
        tracing::debug!("TLS handshake with {peer} failed: {why}");
        self.handle
            .stats
            .front
            .tls_handshake_failures
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Serves one connection until it ends, idles out or stalls.
    async fn serve_io<S>(
        &self,
        io: S,
        peer: SocketAddr,
        state: Arc<ConnState>,
        tls: bool,
        http1_guard: bool,
    ) where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let framing = http1_guard.then(|| Framing::new(self.max_head));
        let io = TokioIo::new(ConnIo::new(io, state.clone(), framing));
        let cx = Arc::new(RequestCtx {
            peer,
            tls,
            client: super::headers::Client::new(peer.ip()),
            conn: state.clone(),
            handle: self.handle.clone(),
            upstream: self.upstream.clone(),
            shutdown: self.shutdown.clone(),
        });
        let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
            let cx = cx.clone();
            async move { Ok::<_, Infallible>(proxy::handle(req, &cx).await) }
        });
        let conn = self.builder.serve_connection_with_upgrades(io, service);
        tokio::pin!(conn);
        // Set once a graceful close began: the hard deadline after it.
        let mut closing: Option<Instant> = None;
        loop {
            let wake = match closing {
                Some(hard) => hard,
                None => match state.deadline(&self.timeouts, Instant::now()) {
                    Expiry::NotYet(at) => at,
                    Expiry::CloseIdle => {
                        self.timed_out();
                        conn.as_mut().graceful_shutdown();
                        closing = Some(Instant::now() + CLOSE_GRACE);
                        continue;
                    }
                    Expiry::Abort => {
                        tracing::debug!("connection from {peer} timed out; dropping it");
                        self.timed_out();
                        return;
                    }
                },
            };
            tokio::select! {
                done = conn.as_mut() => {
                    if let Err(e) = done {
                        tracing::debug!("connection from {peer}: {e}");
                    }
                    return;
                }
                _ = tokio::time::sleep_until(wake.into()) => {
                    if closing.is_some() {
                        return;
                    }
                }
                _ = self.shutdown.cancelled(), if closing.is_none() => {
                    conn.as_mut().graceful_shutdown();
                    closing = Some(Instant::now() + DRAIN);
                }
            }
        }
    }

    fn timed_out(&self) {
        self.handle
            .stats
            .front
            .timed_out_connections
            .fetch_add(1, Ordering::Relaxed);
    }
}
