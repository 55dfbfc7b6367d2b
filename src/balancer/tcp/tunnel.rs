//! The byte pump between a client and its backend: tokio's
//! `copy_bidirectional_with_sizes` (fixed 16 KiB per direction, so a tunnel
//! costs about what HAProxy's two buffers do; half-close handled: one
//! side's EOF becomes a write shutdown on the other while the other
//! direction keeps flowing), plus what it lacks: byte counters that move
//! while the tunnel runs, and an idle timeout.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// Buffer per direction.
pub(super) const BUF: usize = 16 * 1024;

/// How a tunnel ended.
#[derive(Debug)]
pub(super) enum End {
    /// Both sides closed (EOF each way).
    Closed,
    /// No byte either way for the idle timeout.
    Idle,
    Error(io::Error),
}

/// Where one direction's bytes are counted: the service's total and the
/// backend's.
pub(super) struct Meters<'a> {
    pub service: &'a AtomicU64,
    pub backend: &'a AtomicU64,
}

/// Copies until both directions are done, an error, or `idle` passes with no
/// byte moving (zero `idle` = no idle timeout).
pub(super) async fn pump(
    client: TcpStream,
    backend: TcpStream,
    upstream: Meters<'_>,
    downstream: Meters<'_>,
    idle: Duration,
) -> End {
    let activity = Activity::new();
    let mut client = Metered {
        inner: client,
        read: upstream,
        activity: &activity,
    };
    let mut backend = Metered {
        inner: backend,
        read: downstream,
        activity: &activity,
    };
    let copy = tokio::io::copy_bidirectional_with_sizes(&mut client, &mut backend, BUF, BUF);
    tokio::select! {
        done = copy => match done {
            Ok(_) => End::Closed,
            Err(e) => End::Error(e),
        },
        _ = activity.idle(idle) => End::Idle,
    }
}

/// When a byte last moved, in ms since the tunnel opened: one atomic store
/// per read or write, read by the idle timer.
struct Activity {
    start: Instant,
    last_ms: AtomicU64,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            start: Instant::now(),
            last_ms: AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        let ms = self.start.elapsed().as_millis() as u64;
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.start + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }

    /// Resolves once nothing has moved for `idle`: sleeps to the deadline of
    /// the last activity it saw, then looks again.
    async fn idle(&self, idle: Duration) {
        if idle.is_zero() {
            return std::future::pending().await;
        }
        loop {
            let deadline = self.last() + idle;
            if Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep_until(deadline).await;
        }
    }
}

/// A stream that counts what it reads and notes activity on reads and
/// writes (a slow reader draining a full buffer is not idle).
struct Metered<'a> {
    inner: TcpStream,
    read: Meters<'a>,
    activity: &'a Activity,
}

impl AsyncRead for Metered<'_> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        let n = (buf.filled().len() - before) as u64;
        if n > 0 {
            this.read.service.fetch_add(n, Ordering::Relaxed);
            this.read.backend.fetch_add(n, Ordering::Relaxed);
            this.activity.touch();
        }
        polled
    }
}

impl AsyncWrite for Metered<'_> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = polled {
            if n > 0 {
                this.activity.touch();
            }
        }
        polled
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    /// A TCP write shutdown: the FIN that carries a half-close across.
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
