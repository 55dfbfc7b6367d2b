//! Connections to the backends: hyper's low-level HTTP/1 client over a small
//! idle pool per backend address, instead of hyper-util's general client
//! (whose checkout races a connect, hashes a scheme+authority key, and
//! spawns a task per request to wait for the connection to be reusable).
//!
//! The rules:
//! - a connection goes back to the pool only when its response ended
//!   cleanly (`Checkin::give_back`); one dropped mid-body is closed, never
//!   reused with an unfinished body;
//! - it is reused only if hyper says it is ready for another request, it is
//!   not closed, and it idled less than `idle` (below the backends' own
//!   keep-alive timeouts, so we never send on one the backend is closing);
//! - the most recently used is reused first, so spare connections age out;
//!   at most `max_idle` wait per backend, and a sweeper closes stale ones;
//! - a request that a reused connection could not take (the backend had
//!   closed it; hyper hands the request back unsent) moves to another
//!   connection, as hyper-util's client does; nothing of it was sent.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::body::RequestBody;

/// Why a request got no response head from its backend.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No connection: nothing was sent.
    #[error("connect error")]
    Connect(#[source] io::Error),
    /// The connection failed while sending or before the response head.
    #[error("send error")]
    Send(#[source] hyper::Error),
}

impl Error {
    pub fn is_connect(&self) -> bool {
        matches!(self, Error::Connect(_))
    }
}

pub struct Upstream {
    /// Idle connections per backend, oldest first. A list, not a map: a
    /// balancer has a handful of backends, and a scan of a few addresses
    /// is cheaper than hashing one.
    idle: Mutex<Vec<(SocketAddr, VecDeque<Idle>)>>,
    connect_timeout: Duration,
    idle_timeout: Duration,
    max_idle: usize,
    sweeping: AtomicBool,
}

struct Idle {
    tx: SendRequest<RequestBody>,
    since: Instant,
}

/// A connection whose response is streaming: given back when it ended.
pub struct Checkin {
    upstream: Arc<Upstream>,
    addr: SocketAddr,
    tx: SendRequest<RequestBody>,
}

impl Checkin {
    /// The response ended cleanly: the connection may serve another.
    pub fn give_back(self) {
        self.upstream.checkin(self.addr, self.tx);
    }
}

impl Upstream {
    pub fn new(
        connect_timeout: Duration,
        idle_timeout: Duration,
        max_idle: usize,
    ) -> Arc<Upstream> {
        Arc::new(Upstream {
            idle: Mutex::new(Vec::new()),
            connect_timeout,
            idle_timeout,
            max_idle: max_idle.max(1),
            sweeping: AtomicBool::new(false),
        })
    }

    /// Sends `req` to `addr` on an idle connection or a new one.
    pub async fn send(
        self: &Arc<Self>,
        addr: SocketAddr,
        mut req: Request<RequestBody>,
    ) -> Result<(Response<Incoming>, Checkin), Error> {
        loop {
            let (mut tx, reused) = match self.checkout(addr) {
                Some(tx) => (tx, true),
                // Boxed: the connect future is large and rarely needed;
                // inline, every request's future would carry (and move) it.
                None => (Box::pin(self.connect(addr)).await?, false),
            };
            match tx.try_send_request(req).await {
                Ok(resp) => {
                    let checkin = Checkin {
                        upstream: self.clone(),
                        addr,
                        tx,
                    };
                    return Ok((resp, checkin));
                }
                Err(mut e) => match e.take_message() {
                    Some(unsent) if reused => req = unsent,
                    _ => return Err(Error::Send(e.into_error())),
                },
            }
        }
    }

    /// Forgets the idle connections of backends not in `keep` (closing
    /// them).
    pub fn retain(&self, keep: &[SocketAddr]) {
        self.lock().retain(|(addr, _)| keep.contains(addr));
    }

    fn checkout(&self, addr: SocketAddr) -> Option<SendRequest<RequestBody>> {
        let now = Instant::now();
        let mut idle = self.lock();
        let (_, list) = idle.iter_mut().find(|(a, _)| *a == addr)?;
        // Dropping one that cannot serve closes it.
        while let Some(c) = list.pop_back() {
            if c.tx.is_ready() && now.duration_since(c.since) < self.idle_timeout {
                return Some(c.tx);
            }
        }
        None
    }

    fn checkin(self: &Arc<Self>, addr: SocketAddr, mut tx: SendRequest<RequestBody>) {
        if tx.is_closed() {
            return;
        }
        if !tx.is_ready() {
            // The connection task has not yet noticed the response ended (it
            // may run on the other worker), or the request body is still
            // going: wait for it, a bounded while.
            let upstream = self.clone();
            tokio::spawn(async move {
                let ready = tokio::time::timeout(upstream.idle_timeout, tx.ready()).await;
                if matches!(ready, Ok(Ok(()))) {
                    upstream.put(addr, tx);
                }
            });
            return;
        }
        self.put(addr, tx);
    }

    fn put(&self, addr: SocketAddr, tx: SendRequest<RequestBody>) {
        let now = Instant::now();
        let mut idle = self.lock();
        let list = match idle.iter().position(|(a, _)| *a == addr) {
            Some(i) => &mut idle[i].1,
            None => {
                idle.push((addr, VecDeque::new()));
                &mut idle.last_mut().expect("just pushed").1
            }
        };
        while list
            .front()
            .is_some_and(|c| now.duration_since(c.since) >= self.idle_timeout)
            || list.len() >= self.max_idle
        {
            list.pop_front();
        }
        list.push_back(Idle { tx, since: now });
    }

    async fn connect(
        self: &Arc<Self>,
        addr: SocketAddr,
    ) -> Result<SendRequest<RequestBody>, Error> {
        self.start_sweeper();
        let stream = tokio::time::timeout(self.connect_timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| {
                Error::Connect(io::Error::new(io::ErrorKind::TimedOut, "connect timeout"))
            })?
            .map_err(Error::Connect)?;
        let _ = stream.set_nodelay(true);
        let (tx, conn) = http1::Builder::new()
            .handshake(TokioIo::new(stream))
            .await
            .map_err(Error::Send)?;
        tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!("backend connection to {addr}: {e}");
            }
        });
        Ok(tx)
    }

    /// Closes connections idle past `idle_timeout` even when no request
    /// comes to pick them over; ends with the last `Arc<Upstream>`.
    fn start_sweeper(self: &Arc<Self>) {
        if self.sweeping.swap(true, Ordering::Relaxed) {
            return;
        }
        let weak: Weak<Upstream> = Arc::downgrade(self);
        let every = (self.idle_timeout / 2).max(Duration::from_millis(100));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(upstream) = weak.upgrade() else {
                    return;
                };
                let now = Instant::now();
                for (_, list) in upstream.lock().iter_mut() {
                    list.retain(|c| {
                        !c.tx.is_closed() && now.duration_since(c.since) < upstream.idle_timeout
                    });
                }
            }
        });
    }

    /// A poisoned lock means a panic while moving a connection in or out;
    /// the list is still a list.
    fn lock(&self) -> MutexGuard<'_, Vec<(SocketAddr, VecDeque<Idle>)>> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }
}
