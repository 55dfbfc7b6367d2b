//! `206 multipart/byteranges` (RFC 9110 §14.6), which ServeDir lacks: one
//! part per requested range, each with its own Content-Range, separated by a
//! random boundary. The length is known up front, so the response carries a
//! Content-Length and range-aware clients (PDF viewers, download managers)
//! can show progress.

use std::io::SeekFrom;
use std::pin::Pin;
use std::task::{Context, Poll};

use http_body_util::BodyExt;
use hyper::body::{Bytes, Frame, SizeHint};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::sync::mpsc;

use crate::web::server::Body;

/// Read size per chunk, as ServeDir's default.
const CHUNK: usize = 64 * 1024;

pub struct Multipart {
    boundary: String,
    content_type: String,
    size: u64,
    ranges: Vec<(u64, u64)>,
}

impl Multipart {
    pub fn new(content_type: &str, size: u64, ranges: Vec<(u64, u64)>) -> Multipart {
        // 64 random bits: a part's bytes containing the boundary by chance
        // is not a practical worry, and the boundary is not secret.
        let boundary = format!("piha-{:016x}", rand::random::<u64>());
        Multipart {
            boundary,
            content_type: content_type.to_owned(),
            size,
            ranges,
        }
    }

    /// The response's Content-Type.
    pub fn content_type(&self) -> String {
        format!("multipart/byteranges; boundary={}", self.boundary)
    }

    /// The delimiter and headers before part `i`. The first has no leading
    /// CRLF (RFC 2046 allows an empty preamble).
    fn part_head(&self, i: usize) -> String {
        let (first, last) = self.ranges[i];
        format!(
            "{}--{}\r\nContent-Type: {}\r\nContent-Range: bytes {}-{}/{}\r\n\r\n",
            if i == 0 { "" } else { "\r\n" },
            self.boundary,
            self.content_type,
            first,
            last,
            self.size
        )
    }

    fn tail(&self) -> String {
        format!("\r\n--{}--\r\n", self.boundary)
    }

    pub fn content_length(&self) -> u64 {
        let heads: u64 = (0..self.ranges.len())
            .map(|i| self.part_head(i).len() as u64)
            .sum();
        let data: u64 = self.ranges.iter().map(|(a, b)| b - a + 1).sum();
        heads + data + self.tail().len() as u64
    }

    /// The whole body at once, for a file already in memory.
    pub fn render(&self, data: &[u8]) -> Bytes {
        let mut out = Vec::with_capacity(usize::try_from(self.content_length()).unwrap_or(0));
        for (i, (first, last)) in self.ranges.iter().enumerate() {
            out.extend_from_slice(self.part_head(i).as_bytes());
            let (a, b) = (usize::try_from(*first), usize::try_from(*last));
            if let (Ok(a), Ok(b)) = (a, b) {
                out.extend_from_slice(data.get(a..=b).unwrap_or_default());
            }
        }
        out.extend_from_slice(self.tail().as_bytes());
        out.into()
    }

    /// Streams the parts from `file`. A small bounded channel between a
    /// reader task and the body gives backpressure: a slow client holds one
    /// task and two chunks, never a blocking thread.
    pub fn into_body(self, mut file: tokio::fs::File) -> Body {
        let length = self.content_length();
        let (tx, rx) = mpsc::channel::<std::io::Result<Bytes>>(2);
        tokio::spawn(async move {
            for i in 0..self.ranges.len() {
                if tx.send(Ok(self.part_head(i).into())).await.is_err() {
                    return; // client gone
                }
                let (first, last) = self.ranges[i];
                if let Err(e) = send_range(&mut file, first, last - first + 1, &tx).await {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
            }
            let _ = tx.send(Ok(self.tail().into())).await;
        });
        ChannelBody { rx, left: length }
            .map_err(Into::into)
            .boxed_unsync()
    }
}

async fn send_range(
    file: &mut tokio::fs::File,
    start: u64,
    mut left: u64,
    tx: &mpsc::Sender<std::io::Result<Bytes>>,
) -> std::io::Result<()> {
    file.seek(SeekFrom::Start(start)).await?;
    while left > 0 {
        let want = usize::try_from(left).unwrap_or(CHUNK).min(CHUNK);
        let mut buf = vec![0u8; want];
        let n = file.read(&mut buf).await?;
        if n == 0 {
            // Truncated since we measured it: the promised length cannot be
            // kept, so the connection must be broken rather than lie.
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "file shrank while being sent",
            ));
        }
        buf.truncate(n);
        left -= n as u64;
        if tx.send(Ok(buf.into())).await.is_err() {
            return Ok(());
        }
    }
    Ok(())
}

/// A body fed by a channel, with its exact length known.
struct ChannelBody {
    rx: mpsc::Receiver<std::io::Result<Bytes>>,
    left: u64,
}

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(Ok(bytes))) => {
                self.left = self.left.saturating_sub(bytes.len() as u64);
                Poll::Ready(Some(Ok(Frame::data(bytes))))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.left)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn body_matches_the_announced_length_and_ranges() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let data: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        std::fs::write(&path, &data).unwrap();
        let m = Multipart::new("text/plain", 1000, vec![(10, 19), (0, 0), (990, 999)]);
        let boundary = m.boundary.clone();
        let length = m.content_length();
        let file = tokio::fs::File::open(&path).await.unwrap();
        let body = m.into_body(file).collect().await.unwrap().to_bytes();
        assert_eq!(body.len() as u64, length);
        let text = String::from_utf8_lossy(&body).into_owned();
        assert!(text.starts_with(&format!("--{boundary}\r\n")));
        assert!(text.ends_with(&format!("\r\n--{boundary}--\r\n")));
        assert!(text.contains("Content-Range: bytes 10-19/1000\r\n"));
        assert!(text.contains("Content-Range: bytes 990-999/1000\r\n"));
        let needle = b"Content-Range: bytes 10-19/1000\r\n\r\n";
        let at = body
            .windows(needle.len())
            .position(|w| w == needle)
            .unwrap()
            + needle.len();
        assert_eq!(&body[at..at + 10], &data[10..20]);
    }

    #[tokio::test]
    async fn rendered_and_streamed_bodies_are_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let data: Vec<u8> = (0..=255u8).cycle().take(5000).collect();
        std::fs::write(&path, &data).unwrap();
        let m = Multipart::new("x/y", 5000, vec![(4000, 4999), (7, 7), (100, 199)]);
        let rendered = m.render(&data);
        assert_eq!(rendered.len() as u64, m.content_length());
        let file = tokio::fs::File::open(&path).await.unwrap();
        let streamed = m.into_body(file).collect().await.unwrap().to_bytes();
        assert_eq!(rendered, streamed);
    }

    #[tokio::test]
    async fn a_truncated_file_breaks_the_body() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, [1u8; 10]).unwrap();
        let m = Multipart::new("a/b", 100, vec![(0, 4), (50, 99)]);
        let file = tokio::fs::File::open(&path).await.unwrap();
        assert!(m.into_body(file).collect().await.is_err());
    }
}
