//! The accept loop and connection handling, shared by plain HTTP and HTTPS
//! (and meant for the balancer's front ends too).
//!
//! Every connection is bounded: a cap on how many are open (a semaphore
//! permit per connection), a TLS handshake deadline, hyper's header read
//! timeout for HTTP/1 (which also ends idle keep-alive), an idle timeout of
//! our own for HTTP/2 and for connections that never send a request (hyper
//! has neither), a maximum header size, and a bounded drain on shutdown.
//! HTTP/1.1 and h2c with prior knowledge share the plain port through
//! hyper-util's auto builder; over TLS, ALPN picks and the same builder
//! follows the client's preface.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use http_body_util::BodyExt;
use hyper::body::{Bytes, Frame, Incoming, SizeHint};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;

use crate::http1::{Framing, GuardedIo};
use tokio_util::sync::CancellationToken;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The response body every handler returns.
pub type Body = http_body_util::combinators::UnsyncBoxBody<Bytes, BoxError>;

/// What a server runs for each request. Takes `self` by value (a clone per
/// request, so make it cheap: an `Arc` inside) so that the future owns what
/// it uses and can outlive the connection's borrow.
pub trait Handler: Clone + Send + Sync + 'static {
    fn handle(
        self,
        req: Request<Incoming>,
    ) -> impl Future<Output = Response<Body>> + Send + 'static;
}

/// Put in every request's extensions: who is on the other end.
#[derive(Debug, Clone, Copy)]
pub struct ConnInfo {
    pub peer: SocketAddr,
    pub local: SocketAddr,
    pub tls: bool,
}

/// Every bound of a listener.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Open connections; more are accepted and closed at once.
    pub max_connections: usize,
    /// The request head (HTTP/1), the TLS handshake, and the first request
    /// of a new connection must arrive within this.
    pub header_timeout: Duration,
    /// A connection with no request in flight is closed after this.
    pub idle_timeout: Duration,
    /// Largest request head (HTTP/1 read buffer; HTTP/2 header list).
    pub max_header_bytes: usize,
    /// Concurrent streams per HTTP/2 connection.
    pub max_h2_streams: u32,
    /// On shutdown, in-flight requests get this long before connections
    /// are dropped.
    pub drain_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            // A Pi's default soft limit is 1024 descriptors per process, and
            // each request for a file holds one more while it is sent.
            max_connections: 512,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_header_bytes: 16 * 1024,
            max_h2_streams: 128,
            drain_timeout: Duration::from_secs(5),
        }
    }
}

/// Serves `listener` until `shutdown` is cancelled, then stops accepting,
/// asks every connection to finish (HTTP/1 after its current response,
/// HTTP/2 with GOAWAY) and waits up to `drain_timeout` before dropping the
/// rest.
pub async fn serve<H: Handler>(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    app: H,
    limits: Limits,
    shutdown: CancellationToken,
) {
    let local = listener
        .local_addr()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
    let builder = Arc::new(builder(&limits));
    let limits = Arc::new(limits);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    // Cancelled when the drain time is over: connections still open then
    // are dropped, so a restart never waits on a stuck client.
    let force = CancellationToken::new();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                // EMFILE and friends: back off a little instead of spinning.
                Err(e) => {
                    tracing::warn!("accept on {local} failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => break,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::debug!("{local}: connection cap reached, closing {peer}");
            continue; // dropping the stream closes it
        };
        let _ = stream.set_nodelay(true);
        let conn = Connection {
            info: ConnInfo {
                peer,
                local,
                tls: tls.is_some(),
            },
            app: app.clone(),
            limits: limits.clone(),
            builder: builder.clone(),
            shutdown: shutdown.clone(),
            force: force.clone(),
        };
        let tls = tls.clone();
        tokio::spawn(async move {
            conn.run(stream, tls).await;
            drop(slot);
        });
    }
    drop(listener); // stop accepting at once, not after the drain
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    let drained = tokio::time::timeout(limits.drain_timeout, slots.acquire_many(all)).await;
    if drained.is_err() {
        force.cancel();
        let open = limits.max_connections - slots.available_permits();
        tracing::info!("{local}: dropped {open} connection(s) still open after the drain");
    }
}

fn builder(limits: &Limits) -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        // Without a timer hyper silently ignores header_read_timeout.
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        // hyper refuses buffers under 8 KiB.
        .max_buf_size(limits.max_header_bytes.max(8192))
        .keep_alive(true);
    b.http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
        .max_concurrent_streams(limits.max_h2_streams);
    b
}

struct Connection<H> {
    info: ConnInfo,
    app: H,
    limits: Arc<Limits>,
    builder: Arc<auto::Builder<TokioExecutor>>,
    shutdown: CancellationToken,
    force: CancellationToken,
}

impl<H: Handler> Connection<H> {
    async fn run(self, stream: TcpStream, tls: Option<TlsAcceptor>) {
        let Some(acceptor) = tls else {
            return self.drive(stream).await;
        };
        let handshake = tokio::time::timeout(self.limits.header_timeout, acceptor.accept(stream));
        let stream = tokio::select! {
            result = handshake => match result {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!("tls handshake with {}: {e}", self.info.peer);
                    return;
                }
                Err(_) => {
                    tracing::debug!("tls handshake with {} timed out", self.info.peer);
                    return;
                }
            },
            _ = self.shutdown.cancelled() => return,
        };
        self.drive(stream).await;
    }

    async fn drive<I>(self, io: I)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let activity = Arc::new(Activity::new());
        let service = {
            let (app, info, activity) = (self.app.clone(), self.info, activity.clone());
            hyper::service::service_fn(move |mut req: Request<Incoming>| {
                req.extensions_mut().insert(info);
                let guard = activity.begin();
                let response = app.clone().handle(req);
                async move {
                    let resp = response.await;
                    Ok::<_, Infallible>(resp.map(|body| {
                        Tracked {
                            body,
                            _guard: guard,
                        }
                        .boxed_unsync()
                    }))
                }
            })
        };
        // The smuggling guard reads ahead of hyper, as on the balancer: a web
        // node may be reached directly or behind another proxy, and the two
        // must agree on where a request ends. It steps aside after an HTTP/2
        // preface.
        let guard = Framing::new(self.limits.max_header_bytes);
        let io = GuardedIo::new(io, Some(guard));
        let conn = self.builder.serve_connection(TokioIo::new(io), service);
        tokio::pin!(conn);
        let mut closing = false;
        // An idle connection asked to close gets this long to do so: an
        // HTTP/2 peer that never acknowledges the GOAWAY's ping would
        // otherwise keep it open.
        let linger = tokio::time::sleep(Duration::MAX);
        tokio::pin!(linger);
        loop {
            tokio::select! {
                result = conn.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!("connection from {}: {e}", self.info.peer);
                    }
                    return;
                }
                _ = self.shutdown.cancelled(), if !closing => {
                    conn.as_mut().graceful_shutdown();
                    closing = true;
                }
                _ = activity.idle(self.limits.header_timeout, self.limits.idle_timeout), if !closing => {
                    conn.as_mut().graceful_shutdown();
                    closing = true;
                    linger.as_mut().reset(Instant::now() + self.limits.header_timeout);
                }
                _ = &mut linger => return,
                _ = self.force.cancelled() => return,
            }
        }
    }
}

/// Requests in flight on one connection and when the last one ended, for
/// the idle timeout. A request counts until its response body is dropped
/// (sent or abandoned), so a long download is never "idle".
struct Activity {
    born: Instant,
    in_flight: AtomicUsize,
    /// Milliseconds after `born` that the last request ended.
    last_end_ms: AtomicU64,
    served_any: AtomicBool,
    changed: Notify,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            born: Instant::now(),
            in_flight: AtomicUsize::new(0),
            last_end_ms: AtomicU64::new(0),
            served_any: AtomicBool::new(false),
            changed: Notify::new(),
        }
    }

    fn begin(self: &Arc<Self>) -> ActivityGuard {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        self.served_any.store(true, Ordering::SeqCst);
        self.changed.notify_waiters();
        ActivityGuard(self.clone())
    }

    /// Resolves once the connection has been idle too long: `first` before
    /// any request (covers clients that connect and say nothing, which
    /// hyper's protocol detection would wait on forever), `idle` after.
    async fn idle(&self, first: Duration, idle: Duration) {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if self.in_flight.load(Ordering::SeqCst) > 0 {
                changed.await;
                continue;
            }
            let limit = if self.served_any.load(Ordering::SeqCst) {
                idle
            } else {
                first
            };
            let since = Duration::from_millis(self.last_end_ms.load(Ordering::SeqCst));
            let deadline = self.born + since + limit;
            if Instant::now() >= deadline {
                return;
            }
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => {}
                _ = changed => {}
            }
        }
    }
}

struct ActivityGuard(Arc<Activity>);

impl Drop for ActivityGuard {
    fn drop(&mut self) {
        let a = &self.0;
        let now = u64::try_from(a.born.elapsed().as_millis()).unwrap_or(u64::MAX);
        a.last_end_ms.store(now, Ordering::SeqCst);
        a.in_flight.fetch_sub(1, Ordering::SeqCst);
        a.changed.notify_waiters();
    }
}

/// A response body that holds its request's activity guard.
struct Tracked {
    body: Body,
    _guard: ActivityGuard,
}

impl hyper::body::Body for Tracked {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
