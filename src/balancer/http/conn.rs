//! One client connection: its shared state (last activity, requests in
//! flight, the connection slot it holds) and `ConnIo`, the stream wrapper
//! between the socket (or TLS) and hyper that stamps activity and applies the
//! smuggling guard (`framing`) to every byte before hyper reads it.
//!
//! Timeouts, decided by `ConnState::deadline` from plain numbers:
//! - before the first request: `header_timeout` from accept, then dropped
//!   (covers the h1/h2 sniffing and an h2 client that opens and sends no
//!   stream; hyper's own header timer covers each HTTP/1 head, whole-head,
//!   not per read, and also bounds the wait for the next keep-alive request);
//! - idle between requests: `idle_timeout` since the last byte, then a
//!   graceful close (GOAWAY for h2);
//! - busy (a request in flight): no byte either way for the longer of
//!   `idle_timeout` and `server_timeout`, then dropped (a client that
//!   stopped reading or sending; a backend still thinking is bounded by
//!   `server_timeout`).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::OwnedSemaphorePermit;

use super::stats::Stats;
use crate::http1::{Framing, GuardedIo};
use crate::node::coarse_clock;

#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub header: Duration,
    pub idle: Duration,
    pub busy: Duration,
}

/// What the connection's watchdog should do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// Sleep until then and ask again.
    NotYet(Instant),
    /// Nothing in flight: a graceful close (GOAWAY for h2).
    CloseIdle,
    /// No request ever came, or one is in flight but nothing moved: drop
    /// the connection.
    Abort,
}

pub struct ConnState {
    born: Instant,
    /// `born` on the coarse clock: every read and write stamps the
    /// connection, so stamps are taken there (see `coarse_clock`).
    born_ms: u64,
    /// Milliseconds after `born` of the last byte read or written.
    last_ms: AtomicU64,
    started: AtomicU64,
    in_flight: AtomicU32,
    stats: Arc<Stats>,
    /// The connection's slot under the front end's cap, freed when the last
    /// holder (connection task, request, tunnel) lets go.
    _slot: OwnedSemaphorePermit,
}

impl ConnState {
    pub fn new(slot: OwnedSemaphorePermit, stats: Arc<Stats>) -> Arc<ConnState> {
        stats.front.connections_open.fetch_add(1, Ordering::Relaxed);
        stats
            .front
            .connections_total
            .fetch_add(1, Ordering::Relaxed);
        Arc::new(ConnState {
            born: Instant::now(),
            born_ms: coarse_clock::now_ms(),
            last_ms: AtomicU64::new(0),
            started: AtomicU64::new(0),
            in_flight: AtomicU32::new(0),
            stats,
            _slot: slot,
        })
    }

    pub fn touch(&self) {
        let ms = coarse_clock::now_ms().saturating_sub(self.born_ms);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    pub fn last_activity(&self) -> Instant {
        self.born + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }

    /// A request began; it counts as in flight until the guard (moved into
    /// the response body) is dropped.
    pub fn begin(self: &Arc<Self>) -> InFlight {
        self.started.fetch_add(1, Ordering::Relaxed);
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.touch();
        InFlight(self.clone())
    }

    pub fn deadline(&self, t: &Timeouts, now: Instant) -> Expiry {
        let in_flight = self.in_flight.load(Ordering::Acquire);
        // A connection that never made a request is owed no politeness (an
        // h2 GOAWAY would wait for a PING answer it may never send).
        let (at, polite) = if self.started.load(Ordering::Relaxed) == 0 {
            (self.born + t.header, false)
        } else if in_flight == 0 {
            (self.last_activity() + t.idle, true)
        } else {
            (self.last_activity() + t.busy, false)
        };
        match (now >= at, polite) {
            (false, _) => Expiry::NotYet(at),
            (true, true) => Expiry::CloseIdle,
            (true, false) => Expiry::Abort,
        }
    }
}

impl Drop for ConnState {
    fn drop(&mut self) {
        self.stats
            .front
            .connections_open
            .fetch_sub(1, Ordering::Relaxed);
    }
}

/// One request in flight on a connection.
pub struct InFlight(Arc<ConnState>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The client stream as hyper sees it: the smuggling guard, plus activity
/// tracking for the timeouts and the bad-request counter.
pub struct ConnIo<S> {
    inner: GuardedIo<S>,
    state: Arc<ConnState>,
}

impl<S> ConnIo<S> {
    /// `guard`: follow HTTP/1 framing (`None` for a connection known to be
    /// HTTP/2, e.g. by ALPN).
    pub fn new(inner: S, state: Arc<ConnState>, guard: Option<Framing>) -> ConnIo<S> {
        ConnIo {
            inner: GuardedIo::new(inner, guard),
            state,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for ConnIo<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        std::task::ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
        if buf.filled().len() > before {
            this.state.touch();
        }
        if this.inner.take_rejection().is_some() {
            this.state
                .stats
                .front
                .bad_requests
                .fetch_add(1, Ordering::Relaxed);
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for ConnIo<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let n = std::task::ready!(Pin::new(&mut self.inner).poll_write(cx, data))?;
        if n > 0 {
            self.state.touch();
        }
        Poll::Ready(Ok(n))
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let n = std::task::ready!(Pin::new(&mut self.inner).poll_write_vectored(cx, bufs))?;
        if n > 0 {
            self.state.touch();
        }
        Poll::Ready(Ok(n))
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::sync::Semaphore;

    fn state() -> Arc<ConnState> {
        let slot = Arc::new(Semaphore::new(1)).try_acquire_owned().unwrap();
        ConnState::new(slot, Arc::new(Stats::default()))
    }

    const T: Timeouts = Timeouts {
        header: Duration::from_secs(5),
        idle: Duration::from_secs(10),
        busy: Duration::from_secs(30),
    };

    #[test]
    fn deadlines_follow_the_connection_phase() {
        let s = state();
        let t0 = s.born;
        assert_eq!(s.deadline(&T, t0), Expiry::NotYet(t0 + T.header));
        assert_eq!(s.deadline(&T, t0 + T.header), Expiry::Abort);
        let guard = s.begin();
        let busy_until = s.last_activity() + T.busy;
        assert_eq!(s.deadline(&T, t0), Expiry::NotYet(busy_until));
        assert_eq!(s.deadline(&T, busy_until), Expiry::Abort);
        drop(guard);
        let idle_until = s.last_activity() + T.idle;
        assert_eq!(s.deadline(&T, idle_until), Expiry::CloseIdle);
    }

    #[tokio::test]
    async fn a_refused_head_reaches_hyper_as_poison_then_eof() {
        let (mut client, server) = tokio::io::duplex(1024);
        let s = state();
        let mut io = ConnIo::new(server, s.clone(), Some(Framing::new(8192)));
        let bad = b"GET / HTTP/1.1\r\n\r\nPOST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
        client.write_all(bad).await.unwrap();
        drop(client);
        let mut seen = Vec::new();
        // Small reads, as hyper's version sniffing does.
        let mut chunk = [0u8; 7];
        loop {
            let n = io.read(&mut chunk).await.unwrap();
            if n == 0 {
                break;
            }
            seen.extend_from_slice(&chunk[..n]);
        }
        let mut expected = bad[..bad.len() - 1].to_vec();
        expected.extend_from_slice(crate::http1::guarded::POISON);
        assert_eq!(seen, expected);
        assert_eq!(s.stats.front.bad_requests.load(Ordering::Relaxed), 1);
    }
}
