//! A client stream with the request-smuggling guard in front of hyper: every
//! byte read goes through `Framing`, and when a request must be refused the
//! stream hands hyper a poisoned head instead of the rest, so hyper answers
//! 400 and closes the connection. Used by every HTTP/1 front end of piha
//! (the balancer and the web role), which must agree on where a request ends.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::framing::{Framing, Verdict};

/// Bytes that are invalid in every part of a request head (method, target,
/// header name or value, and right after a CR), so hyper answers 400 and
/// closes, whatever part of the head it already holds.
pub const POISON: &[u8] = b"\x00\r\n\r\n";

pub struct GuardedIo<S> {
    inner: S,
    /// `None` once the guard has nothing more to check.
    framing: Option<Framing>,
    /// After a refusal: what is left of `POISON` to hand out, then EOF.
    poison: Option<&'static [u8]>,
    /// Why the last request was refused, until the owner takes it.
    rejected: Option<&'static str>,
}

impl<S> GuardedIo<S> {
    /// `guard`: follow HTTP/1 framing (`None` for a connection known to be
    /// HTTP/2, e.g. by ALPN).
    pub fn new(inner: S, guard: Option<Framing>) -> GuardedIo<S> {
        GuardedIo {
            inner,
            framing: guard,
            poison: None,
            rejected: None,
        }
    }

    /// The reason a request was refused, once (for counters).
    pub fn take_rejection(&mut self) -> Option<&'static str> {
        self.rejected.take()
    }

    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for GuardedIo<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if let Some(rest) = this.poison.as_mut() {
            let n = rest.len().min(buf.remaining());
            buf.put_slice(&rest[..n]);
            *rest = &rest[n..];
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        std::task::ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
        let new = &buf.filled()[before..];
        let Some(framing) = this.framing.as_mut().filter(|_| !new.is_empty()) else {
            return Poll::Ready(Ok(()));
        };
        if let Verdict::Reject { keep, reason } = framing.feed(new) {
            tracing::debug!("refused a request: {reason}");
            this.rejected = Some(reason);
            this.framing = None;
            buf.set_filled(before + keep);
            // There is room: at least the refused bytes were cut.
            let n = POISON.len().min(buf.remaining());
            buf.put_slice(&POISON[..n]);
            this.poison = Some(&POISON[n..]);
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for GuardedIo<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
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
