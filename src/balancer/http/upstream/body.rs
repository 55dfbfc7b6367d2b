//! A backend's response body, read from its connection as the client takes
//! it (polled by hyper from the client connection's task: no other task is
//! involved), and the connection given back to the idle pool when the body
//! ended cleanly.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use hyper::body::{Body, Frame, SizeHint};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

use super::Upstream;
use super::conn::Conn;
use super::head::BodyLen;
use crate::http1::chunked::{self, Chunked};

/// The most a read asks for: a 64 KiB file takes a few reads rather than
/// one buffer per connection as large as the largest body.
const MAX_READ: usize = 32 * 1024;

pub struct BackendBody {
    /// `None` once given back, or after a failure (dropping it closes it).
    conn: Option<Conn>,
    left: Left,
    /// The connection may serve another request once `left` is `Done`:
    /// the backend allows it and the whole request body went out.
    reusable: bool,
    /// Still writing the request body (a full-duplex exchange); stopped
    /// when the response is done with.
    writer: Option<JoinHandle<()>>,
    upstream: Arc<Upstream>,
    addr: SocketAddr,
}

enum Left {
    Length(u64),
    Chunked(Chunked),
    UntilClose,
    Upgrade,
    Done,
}

impl BackendBody {
    pub(super) fn new(
        conn: Conn,
        len: BodyLen,
        keep_alive: bool,
        writer: Option<JoinHandle<()>>,
        upstream: Arc<Upstream>,
        addr: SocketAddr,
    ) -> BackendBody {
        let left = match len {
            BodyLen::Empty => Left::Done,
            BodyLen::Length(n) => Left::Length(n),
            // Trailers are bounded like a head; they are not passed on.
            BodyLen::Chunked => Left::Chunked(Chunked::new(16 * 1024)),
            BodyLen::UntilClose => Left::UntilClose,
            BodyLen::Upgrade => Left::Upgrade,
        };
        BackendBody {
            conn: Some(conn),
            left,
            reusable: keep_alive && writer.is_none(),
            writer,
            upstream,
            addr,
        }
    }

    /// The body was read to its end: the connection goes back to the idle
    /// pool if it may serve another request (and nothing unasked follows).
    pub fn give_back(&mut self) {
        let Some(conn) = self.conn.take() else {
            return;
        };
        if self.reusable && matches!(self.left, Left::Done) && conn.buf.is_empty() {
            self.upstream.put(self.addr, conn);
        }
    }

    /// After a 101: the backend's stream, and what it already sent of the
    /// new protocol.
    pub fn into_upgraded(mut self) -> Option<(TcpStream, Bytes)> {
        if !matches!(self.left, Left::Upgrade) {
            return None;
        }
        let conn = self.conn.take()?;
        // Shared only with a request body writer, which an upgrade
        // request (no body) does not have.
        let stream = Arc::try_unwrap(conn.stream).ok()?;
        Some((stream, conn.buf.freeze()))
    }

    /// Ends the body with an error; the connection is closed.
    fn fail(&mut self, e: io::Error) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        self.conn = None;
        self.left = Left::Done;
        Poll::Ready(Some(Err(e)))
    }
}

impl Drop for BackendBody {
    fn drop(&mut self) {
        if let Some(writer) = self.writer.take() {
            writer.abort();
        }
    }
}

impl Body for BackendBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = &mut *self;
        loop {
            let Some(conn) = this.conn.as_mut() else {
                return Poll::Ready(None);
            };
            if !conn.buf.is_empty() {
                let buf = &mut conn.buf;
                match &mut this.left {
                    Left::Done | Left::Upgrade => return Poll::Ready(None),
                    Left::Length(n) => {
                        let take = (*n).min(buf.len() as u64);
                        *n -= take;
                        if *n == 0 {
                            this.left = Left::Done;
                        }
                        let data = buf.split_to(take as usize).freeze();
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                    Left::UntilClose => {
                        let data = buf.split().freeze();
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                    Left::Chunked(c) => match c.step(buf) {
                        Ok(chunked::Step::Data(n)) => {
                            let data = buf.split_to(n).freeze();
                            return Poll::Ready(Some(Ok(Frame::data(data))));
                        }
                        Ok(chunked::Step::Framing(n)) => {
                            buf.advance(n);
                            continue;
                        }
                        Ok(chunked::Step::End(n)) => {
                            buf.advance(n);
                            this.left = Left::Done;
                            return Poll::Ready(None);
                        }
                        Err(bad) => {
                            let e = io::Error::new(io::ErrorKind::InvalidData, bad.reason);
                            return this.fail(e);
                        }
                    },
                }
            }
            let want = match this.left {
                Left::Done | Left::Upgrade => return Poll::Ready(None),
                Left::Length(n) => usize::try_from(n).unwrap_or(MAX_READ).min(MAX_READ),
                Left::Chunked(_) | Left::UntilClose => MAX_READ / 2,
            };
            conn.buf.reserve(want);
            match std::task::ready!(conn.poll_read(cx)) {
                Ok(0) if matches!(this.left, Left::UntilClose) => {
                    this.left = Left::Done;
                    this.reusable = false;
                    return Poll::Ready(None);
                }
                Ok(0) => {
                    let e = io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the backend closed the connection mid-body",
                    );
                    return this.fail(e);
                }
                Ok(_) => {}
                Err(e) => return this.fail(e),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.left, Left::Done | Left::Upgrade)
    }

    fn size_hint(&self) -> SizeHint {
        match self.left {
            Left::Length(n) => SizeHint::with_exact(n),
            Left::Done | Left::Upgrade => SizeHint::with_exact(0),
            Left::Chunked(_) | Left::UntilClose => SizeHint::default(),
        }
    }
}
