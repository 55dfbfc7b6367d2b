//! A backend's response head, sans IO: parsed by httparse from the bytes
//! read so far, turned into hyper's `Response` parts without copying a
//! header value, and read for what the proxy must know about the body
//! behind it (RFC 9112 §6.3) and about the connection (may it serve
//! another request).

use bytes::{Bytes, BytesMut};
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Response, StatusCode, Version};

/// As many as hyper's client accepts by default.
const MAX_HEADERS: usize = 100;
/// Enough for nearly every response.
const FEW_HEADERS: usize = 24;

/// How the response body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyLen {
    /// No body (HEAD, 204, 304).
    Empty,
    Length(u64),
    Chunked,
    /// Until the backend closes the connection.
    UntilClose,
    /// A 101: what follows is another protocol.
    Upgrade,
}

#[derive(Debug)]
pub struct Head {
    /// Status, version and headers as the backend sent them (hop-by-hop
    /// ones included: the proxy strips them).
    pub response: Response<()>,
    pub body: BodyLen,
    /// The backend allows another request on this connection once the
    /// body has been read.
    pub keep_alive: bool,
}

/// What the bytes read so far hold.
#[derive(Debug)]
pub enum Parsed {
    /// A final response head (taken off the front of the buffer).
    Head(Head),
    /// A 1xx other than 101 (taken off the buffer): skip it, read on.
    Informational,
    /// The head is not complete yet.
    Partial,
}

/// Parses a response head at the front of `buf`, taking it off when
/// complete. `head_request`: the request was HEAD, so no body follows
/// whatever the headers say. `max` bounds the head's size.
pub fn parse(buf: &mut BytesMut, head_request: bool, max: usize) -> Result<Parsed, &'static str> {
    // Most heads have a dozen headers: room for that costs little to set
    // up on the stack; only a head with more pays for a second parse.
    match parse_with::<FEW_HEADERS>(buf, head_request, max) {
        Err(Why::Parse(httparse::Error::TooManyHeaders)) => {
            parse_with::<MAX_HEADERS>(buf, head_request, max)
        }
        other => other,
    }
    .map_err(Why::told)
}

/// A failed parse: httparse's own error (so the caller can retry with room
/// for more headers), or ours.
enum Why {
    Parse(httparse::Error),
    Other(&'static str),
}

impl Why {
    fn told(self) -> &'static str {
        match self {
            Why::Parse(e) => describe(e),
            Why::Other(why) => why,
        }
    }
}

fn parse_with<const N: usize>(
    buf: &mut BytesMut,
    head_request: bool,
    max: usize,
) -> Result<Parsed, Why> {
    let mut slots = [httparse::EMPTY_HEADER; N];
    let mut res = httparse::Response::new(&mut slots);
    let len = match res.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() >= max => {
            return Err(Why::Other("response head too large"));
        }
        Ok(httparse::Status::Partial) => return Ok(Parsed::Partial),
        Err(e) => return Err(Why::Parse(e)),
    };
    if len > max {
        return Err(Why::Other("response head too large"));
    }
    let code = res.code.unwrap_or(0);
    let version = match res.version {
        Some(1) => Version::HTTP_11,
        Some(0) => Version::HTTP_10,
        _ => return Err(Why::Other("invalid HTTP version in the response")),
    };
    let status = StatusCode::from_u16(code).map_err(|_| Why::Other("invalid response status"))?;
    if status.is_informational() && status != StatusCode::SWITCHING_PROTOCOLS {
        let _ = buf.split_to(len);
        return Ok(Parsed::Informational);
    }
    // Where each name and value sits in the head, so the values can be
    // slices of one frozen buffer once httparse's borrow ends.
    let base = buf.as_ptr() as usize;
    let mut spans = [(0usize, 0usize, 0usize, 0usize); N];
    let count = res.headers.len();
    for (span, h) in spans.iter_mut().zip(res.headers.iter()) {
        let name = h.name.as_ptr() as usize - base;
        let value = h.value.as_ptr() as usize - base;
        *span = (name, h.name.len(), value, h.value.len());
    }
    let bytes: Bytes = buf.split_to(len).freeze();
    let mut headers = HeaderMap::with_capacity(count);
    let mut framing = Framing::default();
    for &(name, name_len, value, value_len) in &spans[..count] {
        let name = HeaderName::from_bytes(&bytes[name..name + name_len])
            .map_err(|_| Why::Other("invalid header name in the response"))?;
        let value = HeaderValue::from_maybe_shared(bytes.slice(value..value + value_len))
            .map_err(|_| Why::Other("invalid header value in the response"))?;
        framing.note(&name, &value);
        headers.append(name, value);
    }
    let (body, framed_twice) = body_len(status, &framing, head_request).map_err(Why::Other)?;
    let keep_alive = !framed_twice && body != BodyLen::UntilClose && framing.persistent(version);
    let mut response = Response::new(());
    *response.status_mut() = status;
    *response.version_mut() = version;
    *response.headers_mut() = headers;
    Ok(Parsed::Head(Head {
        response,
        body,
        keep_alive,
    }))
}

/// What the framing rules need from a response's headers, noted as its
/// map is built: comparing each name with three standard ones costs less
/// than four lookups in the finished map.
#[derive(Debug, Default)]
struct Framing {
    /// Content-Length: its value, or why it cannot be used (reported only
    /// when the body's length depends on it).
    length: Option<Result<u64, &'static str>>,
    /// Transfer-Encoding was present; `chunked_last`: its last coding (over
    /// every line) is chunked.
    transfer_encoding: bool,
    chunked_last: bool,
    /// Connection tokens.
    close: bool,
    keep_alive: bool,
}

impl Framing {
    fn note(&mut self, name: &HeaderName, value: &HeaderValue) {
        if *name == header::CONTENT_LENGTH {
            self.content_length(value.as_bytes());
        } else if *name == header::TRANSFER_ENCODING {
            self.transfer_encoding = true;
            let last = value
                .to_str()
                .ok()
                .and_then(|v| v.split(',').map(str::trim).rfind(|t| !t.is_empty()));
            if let Some(coding) = last {
                self.chunked_last = coding.eq_ignore_ascii_case("chunked");
            }
        } else if *name == header::CONNECTION {
            for token in value.to_str().unwrap_or("").split(',').map(str::trim) {
                self.close |= token.eq_ignore_ascii_case("close");
                self.keep_alive |= token.eq_ignore_ascii_case("keep-alive");
            }
        }
    }

    /// Repeated or listed values must all agree, as hyper requires.
    fn content_length(&mut self, value: &[u8]) {
        for item in value.split(|&b| b == b',') {
            let next = match (digits(item.trim_ascii()), self.length) {
                (_, Some(Err(_))) => return,
                (None, _) => Err("invalid Content-Length in the response"),
                (Some(n), Some(Ok(l))) if n != l => {
                    Err("conflicting Content-Length in the response")
                }
                (Some(n), _) => Ok(n),
            };
            self.length = Some(next);
        }
    }

    /// HTTP/1.1 keeps the connection unless told `close`; HTTP/1.0 closes
    /// it unless told `keep-alive`.
    fn persistent(&self, version: Version) -> bool {
        if version == Version::HTTP_11 {
            !self.close
        } else {
            self.keep_alive
        }
    }
}

/// RFC 9112 §6.3, for a response. Also says whether the message carried
/// both Transfer-Encoding and Content-Length (answered by the former; the
/// connection must not be reused after it).
fn body_len(
    status: StatusCode,
    framing: &Framing,
    head_request: bool,
) -> Result<(BodyLen, bool), &'static str> {
    if status == StatusCode::SWITCHING_PROTOCOLS {
        return Ok((BodyLen::Upgrade, false));
    }
    if head_request || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED {
        return Ok((BodyLen::Empty, false));
    }
    let has_length = framing.length.is_some();
    if framing.transfer_encoding {
        let len = if framing.chunked_last {
            BodyLen::Chunked
        } else {
            BodyLen::UntilClose
        };
        return Ok((len, has_length));
    }
    match framing.length {
        None => Ok((BodyLen::UntilClose, false)),
        Some(Err(why)) => Err(why),
        Some(Ok(0)) => Ok((BodyLen::Empty, false)),
        Some(Ok(n)) => Ok((BodyLen::Length(n), false)),
    }
}

fn digits(value: &[u8]) -> Option<u64> {
    if value.is_empty() || value.len() > 19 || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(value).ok()?.parse().ok()
}

fn describe(e: httparse::Error) -> &'static str {
    match e {
        httparse::Error::HeaderName => "invalid header name in the response",
        httparse::Error::HeaderValue => "invalid header value in the response",
        httparse::Error::NewLine => "invalid line ending in the response head",
        httparse::Error::Status => "invalid response status",
        httparse::Error::Token => "invalid token in the response head",
        httparse::Error::TooManyHeaders => "too many headers in the response",
        httparse::Error::Version => "invalid HTTP version in the response",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(text: &str, head_request: bool) -> Result<Head, &'static str> {
        let mut buf = BytesMut::from(text.as_bytes());
        match parse(&mut buf, head_request, 8192)? {
            Parsed::Head(h) => Ok(h),
            other => panic!("not a final head: {other:?}"),
        }
    }

    #[test]
    fn lengths_and_reuse() {
        let h = head("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", false).unwrap();
        assert_eq!((h.body, h.keep_alive), (BodyLen::Length(5), true));
        let h = head("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", true).unwrap();
        assert_eq!(h.body, BodyLen::Empty, "HEAD has no body");
        let h = head(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            false,
        )
        .unwrap();
        assert_eq!((h.body, h.keep_alive), (BodyLen::Chunked, true));
        let h = head(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
            false,
        )
        .unwrap();
        assert_eq!((h.body, h.keep_alive), (BodyLen::Chunked, false));
        let h = head("HTTP/1.1 200 OK\r\n\r\n", false).unwrap();
        assert_eq!((h.body, h.keep_alive), (BodyLen::UntilClose, false));
        let h = head(
            "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\n",
            false,
        )
        .unwrap();
        assert!(!h.keep_alive);
        let h = head("HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n", false).unwrap();
        assert!(!h.keep_alive, "HTTP/1.0 closes unless told otherwise");
        let h = head(
            "HTTP/1.0 200 OK\r\nConnection: x, Keep-Alive\r\nContent-Length: 1\r\n\r\n",
            false,
        )
        .unwrap();
        assert!(h.keep_alive);
        let h = head(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n",
            false,
        )
        .unwrap();
        assert_eq!(h.body, BodyLen::UntilClose, "the last coding decides");
        let h = head(
            "HTTP/1.1 200 OK\r\nContent-Length: 4, 4\r\nContent-Length: 4\r\n\r\n",
            false,
        )
        .unwrap();
        assert_eq!(
            h.body,
            BodyLen::Length(4),
            "agreeing repeats are one length"
        );
        let h = head(
            "HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n",
            false,
        )
        .unwrap();
        assert_eq!(h.body, BodyLen::Empty);
        let h = head(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n",
            false,
        )
        .unwrap();
        assert_eq!(h.body, BodyLen::Upgrade);
    }

    #[test]
    fn headers_arrive_whole() {
        let h = head(
            "HTTP/1.1 404 Not Found\r\nX-A: 1\r\nx-a: 2\r\nContent-Type: text/plain\r\nContent-Length: 0\r\n\r\n",
            false,
        )
        .unwrap();
        assert_eq!(h.response.status(), StatusCode::NOT_FOUND);
        let a: Vec<_> = h.response.headers().get_all("x-a").iter().collect();
        assert_eq!(a, ["1", "2"]);
        assert_eq!(h.response.headers()["content-type"], "text/plain");
    }

    #[test]
    fn bad_heads_are_named() {
        for (text, why) in [
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
                "conflicting Content-Length in the response",
            ),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
                "invalid Content-Length in the response",
            ),
            (
                "HTTP/2.0 200 OK\r\n\r\n",
                "invalid HTTP version in the response",
            ),
            ("HTTP/1.1 2000 OK\r\n\r\n", "invalid response status"),
            (
                "HTTP/1.1 200 OK\r\nBad Name: 1\r\n\r\n",
                "invalid header name in the response",
            ),
        ] {
            assert_eq!(head(text, false).unwrap_err(), why, "{text:?}");
        }
    }

    #[test]
    fn partial_informational_and_too_large() {
        let mut buf = BytesMut::from(&b"HTTP/1.1 200 OK\r\nContent-Le"[..]);
        assert!(matches!(parse(&mut buf, false, 8192), Ok(Parsed::Partial)));
        let mut buf =
            BytesMut::from(&b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n"[..]);
        assert!(matches!(
            parse(&mut buf, false, 8192),
            Ok(Parsed::Informational)
        ));
        assert!(matches!(parse(&mut buf, false, 8192), Ok(Parsed::Head(_))));
        assert!(buf.is_empty());
        let mut buf =
            BytesMut::from(format!("HTTP/1.1 200 OK\r\nX: {}", "a".repeat(9000)).as_bytes());
        assert_eq!(
            parse(&mut buf, false, 8192).unwrap_err(),
            "response head too large"
        );
    }
}
