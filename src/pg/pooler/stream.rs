//! One stream type for both sides: plain TCP, or TLS (as the server to a
//! client, or as the client to PostgreSQL). An enum rather than a boxed
//! trait object: the per-message hot path should not pay a vtable call and
//! an allocation per connection for the common plain case.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

pub enum PgStream {
    Plain(TcpStream),
    ServerTls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
    ClientTls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
    /// What is left behind when the stream has been moved on: reads see
    /// EOF, writes fail.
    Closed,
}

impl PgStream {
    pub fn is_tls(&self) -> bool {
        matches!(self, PgStream::ServerTls(_) | PgStream::ClientTls(_))
    }

    /// This end's address (SHOW CLIENTS/SERVERS' local_addr).
    pub fn local_addr(&self) -> Option<std::net::SocketAddr> {
        match self {
            PgStream::Plain(s) => s.local_addr().ok(),
            PgStream::ServerTls(s) => s.get_ref().0.local_addr().ok(),
            PgStream::ClientTls(s) => s.get_ref().0.local_addr().ok(),
            PgStream::Closed => None,
        }
    }
}

impl AsyncRead for PgStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            PgStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            PgStream::ServerTls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            PgStream::ClientTls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            PgStream::Closed => Poll::Ready(Ok(())),
        }
    }
}

impl AsyncWrite for PgStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            PgStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            PgStream::ServerTls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            PgStream::ClientTls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            PgStream::Closed => Poll::Ready(Err(io::ErrorKind::NotConnected.into())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            PgStream::Plain(s) => Pin::new(s).poll_flush(cx),
            PgStream::ServerTls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            PgStream::ClientTls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            PgStream::Closed => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            PgStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            PgStream::ServerTls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            PgStream::ClientTls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            PgStream::Closed => Poll::Ready(Ok(())),
        }
    }
}
