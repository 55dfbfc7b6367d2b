//! Connections to the backends: a small idle pool per backend address of
//! keep-alive HTTP/1.1 connections (`conn`), each driven from the task of
//! the request using it, its response head parsed by `head` and its body
//! streamed by `body`.
//!
//! The rules:
//! - a connection goes back to the pool only when its response ended
//!   cleanly, the backend allows reuse and the whole request body went
//!   out (`BackendBody::give_back`); one dropped mid-body is closed, never
//!   reused with an unfinished body;
//! - it is reused only if the backend has not closed it nor sent anything
//!   unasked, and it idled less than `idle` (below the backends' own
//!   keep-alive timeouts, so we rarely send on one the backend is closing;
//!   when we do, the proxy's retry rules apply: an idempotent request moves
//!   to another backend);
//! - the most recently used is reused first, so spare connections age out;
//!   at most `max_idle` wait per backend, and a sweeper closes stale ones.

mod body;
mod conn;
mod head;

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use hyper::Response;

pub use body::BackendBody;
use conn::Conn;
pub use conn::Outgoing;

use crate::node::coarse_clock;

/// Why a request got no response head from its backend.
#[derive(Debug)]
pub enum Error {
    /// No connection: nothing was sent.
    Connect(io::Error),
    /// Connected, then the connection closed or was reset before any byte
    /// of the response (the request may or may not have been acted on).
    Closed(Option<io::Error>),
    /// A response head that cannot be passed on, or a connection that
    /// failed in the middle of it.
    Response(&'static str),
    /// The client's body failed on the way (its slot says why).
    RequestBody,
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Connect(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                f.write_str("connect refused")
            }
            Error::Connect(e) if e.kind() == io::ErrorKind::TimedOut => {
                f.write_str("connect timeout")
            }
            Error::Connect(e) => write!(f, "connect failed: {e}"),
            Error::Closed(Some(e)) if e.kind() == io::ErrorKind::ConnectionReset => {
                f.write_str("reset before the response")
            }
            Error::Closed(_) => f.write_str("closed before the response"),
            Error::Response(why) => f.write_str(why),
            Error::RequestBody => f.write_str("the request body failed"),
        }
    }
}

pub struct Upstream {
    /// Idle connections per backend, oldest first. A list, not a map: a
    /// balancer has a handful of backends, and a scan of a few addresses
    /// is cheaper than hashing one.
    idle: Mutex<Vec<(SocketAddr, VecDeque<Idle>)>>,
    connect_timeout: Duration,
    /// `limits.tcp_user_timeout`, set on every connection it opens.
    tcp_user_timeout: Duration,
    idle_timeout: Duration,
    max_idle: usize,
    sweeping: AtomicBool,
}

struct Idle {
    conn: Conn,
    /// When it went idle, on the coarse clock (`coarse_clock`): every
    /// request checks a connection out and puts it back.
    since_ms: u64,
}

impl Idle {
    fn fresh(&self, now_ms: u64, idle_timeout: Duration) -> bool {
        u128::from(now_ms.saturating_sub(self.since_ms)) < idle_timeout.as_millis()
    }
}

impl Upstream {
    pub fn new(
        connect_timeout: Duration,
        tcp_user_timeout: Duration,
        idle_timeout: Duration,
        max_idle: usize,
    ) -> Arc<Upstream> {
        Arc::new(Upstream {
            idle: Mutex::new(Vec::new()),
            connect_timeout,
            tcp_user_timeout,
            idle_timeout,
            max_idle: max_idle.max(1),
            sweeping: AtomicBool::new(false),
        })
    }

    /// Sends `req` to `addr` on an idle connection or a new one, and
    /// returns the response head with its body still to come.
    pub async fn send(
        self: &Arc<Self>,
        addr: SocketAddr,
        req: Outgoing,
    ) -> Result<Response<BackendBody>, Error> {
        let conn = match self.checkout(addr) {
            Some(conn) => conn,
            // Boxed: the connect future is large and rarely needed;
            // inline, every request's future would carry (and move) it.
            None => {
                self.start_sweeper();
                Box::pin(Conn::connect(
                    addr,
                    self.connect_timeout,
                    self.tcp_user_timeout,
                ))
                .await?
            }
        };
        let conn::Exchanged { head, conn, writer } = conn.exchange(req).await?;
        let body = BackendBody::new(conn, head.body, head.keep_alive, writer, self.clone(), addr);
        Ok(head.response.map(|()| body))
    }

    /// Forgets the idle connections of backends not in `keep` (closing
    /// them).
    pub fn retain(&self, keep: &[SocketAddr]) {
        self.lock().retain(|(addr, _)| keep.contains(addr));
    }

    fn checkout(&self, addr: SocketAddr) -> Option<Conn> {
        let now = coarse_clock::now_ms();
        let mut idle = self.lock();
        let (_, list) = idle.iter_mut().find(|(a, _)| *a == addr)?;
        // Dropping one that cannot serve closes it.
        while let Some(c) = list.pop_back() {
            if c.fresh(now, self.idle_timeout) && c.conn.is_alive() {
                return Some(c.conn);
            }
        }
        None
    }

    fn put(&self, addr: SocketAddr, conn: Conn) {
        let now = coarse_clock::now_ms();
        let mut idle = self.lock();
        let i = match idle.iter().position(|(a, _)| *a == addr) {
            Some(i) => i,
            None => {
                idle.push((addr, VecDeque::new()));
                idle.len() - 1
            }
        };
        let list = &mut idle[i].1;
        while list
            .front()
            .is_some_and(|c| !c.fresh(now, self.idle_timeout))
            || list.len() >= self.max_idle
        {
            list.pop_front();
        }
        list.push_back(Idle {
            conn,
            since_ms: now,
        });
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
                let now = coarse_clock::now_ms();
                for (_, list) in upstream.lock().iter_mut() {
                    list.retain(|c| c.fresh(now, upstream.idle_timeout) && c.conn.is_alive());
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
