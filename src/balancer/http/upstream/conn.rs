//! One keep-alive HTTP/1.1 connection to a backend, driven from the task of
//! the request that holds it: write the request, read the response head
//! (`head`), then hand the connection to the response body (`body`), which
//! reads the rest as the client takes it.
//!
//! Why not hyper's client: hyper drives each client connection from its own
//! task and talks to it over channels, so every proxied request crossed
//! tasks four times (request in, head out, body frames, "ready again").
//! Measured with callgrind (`scripts/profile-proxy`), that client was the
//! largest single cost of a proxied request, more than the request head
//! rewrite, the pool and the smuggling guard together. A proxy needs far
//! less than a general client: the head it sends is already checked, and
//! the response is passed on, not interpreted. hyper still serves the
//! client side.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::BytesMut;
use http_body_util::BodyExt;
use hyper::body::Body;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

use super::Error;
use super::head::{self, Head, Parsed};
use crate::balancer::http::body::RequestBody;

/// Room for a typical response head and a small body in one read.
const FIRST_READ: usize = 8 * 1024;

/// A request ready to go: its head already encoded.
pub struct Outgoing {
    /// Request line, headers and the empty line, as the backend gets them.
    pub head: Vec<u8>,
    /// A HEAD request: whatever the response says, no body follows.
    pub head_request: bool,
    pub body: RequestBody,
    /// The body goes chunked (its length is unknown).
    pub chunked: bool,
    /// The most bytes a response head may take.
    pub max_head: usize,
}

pub struct Conn {
    /// Shared only while a request body is still being written after the
    /// response began (a full-duplex exchange): then a task of its own
    /// writes the rest while the response body reads.
    pub(super) stream: Arc<TcpStream>,
    /// Bytes read and not yet handed on: the rest of a head, or the body
    /// bytes that came with it.
    pub(super) buf: BytesMut,
}

/// What `exchange` hands on with the head.
pub struct Exchanged {
    pub head: Head,
    pub conn: Conn,
    /// The rest of the request body, still being written when the
    /// response head came (`None`: the whole request went out).
    pub writer: Option<JoinHandle<()>>,
}

impl Conn {
    /// `user_timeout`: see `crate::tcp_timeout`; a web node that lost its
    /// power then fails a request early enough for a retry elsewhere.
    pub async fn connect(
        addr: SocketAddr,
        timeout: Duration,
        user_timeout: Duration,
    ) -> Result<Conn, Error> {
        let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| {
                Error::Connect(io::Error::new(io::ErrorKind::TimedOut, "connect timeout"))
            })?
            .map_err(Error::Connect)?;
        // Heads and bodies are written whole; Nagle would only delay them.
        let _ = stream.set_nodelay(true);
        crate::tcp_timeout::apply(&stream, user_timeout);
        Ok(Conn {
            stream: Arc::new(stream),
            buf: BytesMut::with_capacity(FIRST_READ),
        })
    }

    /// Whether an idle connection can take a request: the backend has not
    /// closed it, nor sent anything unasked. Costs a system call only when
    /// the socket has something to read (or readiness is stale).
    pub fn is_alive(&self) -> bool {
        if !self.buf.is_empty() {
            return false;
        }
        let mut cx = Context::from_waker(Waker::noop());
        match self.stream.poll_read_ready(&mut cx) {
            Poll::Pending => true,
            Poll::Ready(Err(_)) => false,
            Poll::Ready(Ok(())) => {
                let mut probe = [0u8; 1];
                matches!(self.stream.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
            }
        }
    }

    /// Reads what the backend sent into `buf` (0: it closed).
    ///
    /// Through `AsyncRead` while the stream is not shared: tokio then takes
    /// a short read as the socket drained and forgets its readiness, so the
    /// next idle check or read does not pay a system call to find it empty.
    /// With `try_read` it did: one EAGAIN recvfrom per proxied request
    /// (strace). A stream shared with a body writer reads the other way.
    pub(super) fn poll_read(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if let Some(stream) = Arc::get_mut(&mut self.stream) {
            return tokio_util::io::poll_read_buf(Pin::new(stream), cx, &mut self.buf);
        }
        loop {
            std::task::ready!(self.stream.poll_read_ready(cx))?;
            match self.stream.try_read_buf(&mut self.buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                done => return Poll::Ready(done),
            }
        }
    }

    /// Sends the request and reads the response head, which may come
    /// before the whole request body went out (a 413, or a backend that
    /// echoes as it reads): the rest is then written by a task of its own.
    pub async fn exchange(mut self, req: Outgoing) -> Result<Exchanged, Error> {
        let Outgoing {
            head,
            head_request,
            body,
            chunked,
            max_head,
        } = req;
        if self.buf.capacity() < FIRST_READ {
            self.buf.reserve(FIRST_READ);
        }
        write_all(&self.stream, &head).await.map_err(|e| match e {
            WriteError::Io(e) => Error::Closed(Some(e)),
            WriteError::Body => Error::RequestBody,
        })?;
        if body.is_end_stream() {
            // Most requests: nothing more to send, one thing to wait for.
            let head = read_head(&mut self, head_request, max_head).await?;
            return Ok(Exchanged {
                head,
                conn: self,
                writer: None,
            });
        }
        // Boxed: only requests with a body pay for it, and an unfinished
        // one moves to a task of its own.
        let mut write = Box::pin(write_body(self.stream.clone(), body, chunked));
        let (result, sent, write_error) = {
            let read = read_head(&mut self, head_request, max_head);
            tokio::pin!(read);
            let mut sent = false;
            let mut write_error = None;
            let result = loop {
                tokio::select! {
                    biased;
                    written = &mut write, if !sent && write_error.is_none() => match written {
                        Ok(()) => sent = true,
                        Err(WriteError::Body) => return Err(Error::RequestBody),
                        Err(WriteError::Io(e)) => write_error = Some(e),
                    },
                    head = &mut read => break head,
                }
            };
            (result, sent, write_error)
        };
        let writing = !sent && write_error.is_none();
        let head = match (result, write_error) {
            (Ok(head), _) => head,
            // The write failed and nothing came back: the write's error (a
            // reset, usually) says more than the end of the stream.
            (Err(Error::Closed(None)), Some(e)) => return Err(Error::Closed(Some(e))),
            (Err(e), _) => return Err(e),
        };
        let writer = writing.then(|| {
            tokio::spawn(async move {
                if let Err(WriteError::Io(e)) = write.await {
                    tracing::debug!("request body to the backend: {e}");
                }
            })
        });
        Ok(Exchanged {
            head,
            conn: self,
            writer,
        })
    }
}

enum WriteError {
    Io(io::Error),
    /// The client's body failed (its slot records why).
    Body,
}

/// Writes all of `data` through a shared stream (`&TcpStream` can write:
/// no lock, no split needed).
async fn write_all(stream: &TcpStream, mut data: &[u8]) -> Result<(), WriteError> {
    while !data.is_empty() {
        match stream.try_write(data) {
            Ok(0) => {
                return Err(WriteError::Io(io::ErrorKind::WriteZero.into()));
            }
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                stream.writable().await.map_err(WriteError::Io)?;
            }
            Err(e) => return Err(WriteError::Io(e)),
        }
    }
    Ok(())
}

async fn write_body(
    stream: Arc<TcpStream>,
    mut body: RequestBody,
    chunked: bool,
) -> Result<(), WriteError> {
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|_| WriteError::Body)?;
        let Ok(data) = frame.into_data() else {
            // Trailers are not passed on.
            continue;
        };
        if data.is_empty() {
            continue;
        }
        if chunked {
            write_all(&stream, format!("{:x}\r\n", data.len()).as_bytes()).await?;
            write_all(&stream, &data).await?;
            write_all(&stream, b"\r\n").await?;
        } else {
            write_all(&stream, &data).await?;
        }
    }
    if chunked {
        write_all(&stream, b"0\r\n\r\n").await?;
    }
    Ok(())
}

/// Reads until a final response head is complete (skipping 1xx ones).
async fn read_head(conn: &mut Conn, head_request: bool, max: usize) -> Result<Head, Error> {
    let mut answered = false;
    loop {
        if !conn.buf.is_empty() {
            answered = true;
            match head::parse(&mut conn.buf, head_request, max).map_err(Error::Response)? {
                Parsed::Head(head) => return Ok(head),
                Parsed::Informational => continue,
                Parsed::Partial => {}
            }
        }
        if conn.buf.capacity() == conn.buf.len() {
            conn.buf.reserve(FIRST_READ);
        }
        let n = match std::future::poll_fn(|cx| conn.poll_read(cx)).await {
            Ok(n) => n,
            Err(e) if !answered => return Err(Error::Closed(Some(e))),
            Err(_) => return Err(Error::Response("the connection failed mid-head")),
        };
        if n == 0 {
            return Err(if answered {
                Error::Response("the backend closed mid-head")
            } else {
                Error::Closed(None)
            });
        }
    }
}
