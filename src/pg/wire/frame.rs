//! Message framing: a type byte and a 4-byte length that counts itself.
//! The length is checked against the limit *before* the body is awaited or
//! any buffer grows, so a peer announcing 2 GiB costs nothing (the bug
//! PgCat's `read_message` has, and the class of PgBouncer's CVEs).

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt};

use super::WireError;

/// One complete message at the start of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    pub tag: u8,
    /// Total bytes, type byte included.
    pub len: usize,
}

impl Frame {
    /// The body: what follows the type byte and length.
    pub fn body<'a>(&self, buf: &'a [u8]) -> &'a [u8] {
        &buf[5..self.len]
    }
}

/// The next complete frame at the start of `buf`, if all of it is there.
pub fn peek(buf: &[u8], max: usize) -> Result<Option<Frame>, WireError> {
    if buf.len() < 5 {
        return Ok(None);
    }
    let declared = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]);
    if declared < 4 {
        return Err(WireError::Malformed("message length (below 4)"));
    }
    // In u64: where usize has 32 bits (armv7), `declared + 1` of a length
    // of u32::MAX would wrap to 0 and yield a frame shorter than its header.
    let total = u64::from(declared) + 1;
    let len = match usize::try_from(total) {
        Ok(len) if len <= max => len,
        _ => {
            return Err(WireError::TooLarge {
                what: "a message",
                len: usize::try_from(total).unwrap_or(usize::MAX),
                max,
            });
        }
    };
    Ok((buf.len() >= len).then_some(Frame { tag: buf[0], len }))
}

/// Reads until `buf` starts with a complete frame. `Closed` when the peer
/// hangs up between messages; `Malformed` when it hangs up inside one.
pub async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
    buf: &mut BytesMut,
    max: usize,
) -> Result<Frame, WireError> {
    loop {
        if let Some(frame) = peek(buf, max)? {
            return Ok(frame);
        }
        // The announced size is known to be within `max`; grow towards it
        // a few KiB at a time (this reads logins and the pooler's own small
        // answers; relaying uses `fill`).
        if buf.capacity() - buf.len() < 1024 {
            buf.reserve(4096);
        }
        if reader.read_buf(buf).await? == 0 {
            return Err(if buf.is_empty() {
                WireError::Closed
            } else {
                WireError::Malformed("message (the peer closed in the middle of it)")
            });
        }
    }
}

/// Reads more bytes into `buf`, with room for at least `chunk`; `Closed`
/// on EOF. The chunk is what an idle connection holds while it waits, so
/// client sides use a small one (a thousand idle clients on a Pi).
pub async fn fill<R: AsyncRead + Unpin>(
    reader: &mut R,
    buf: &mut BytesMut,
    chunk: usize,
) -> Result<usize, WireError> {
    if buf.capacity() - buf.len() < chunk / 4 {
        buf.reserve(chunk);
    }
    match reader.read_buf(buf).await? {
        0 => Err(WireError::Closed),
        n => Ok(n),
    }
}

/// Cursor over the NUL-terminated strings and integers of a message body.
pub struct Fields<'a> {
    rest: &'a [u8],
}

impl<'a> Fields<'a> {
    pub fn new(body: &'a [u8]) -> Fields<'a> {
        Fields { rest: body }
    }

    pub fn cstr(&mut self) -> Result<&'a str, WireError> {
        let end = self
            .rest
            .iter()
            .position(|&b| b == 0)
            .ok_or(WireError::Malformed("string (no terminating NUL)"))?;
        let s = std::str::from_utf8(&self.rest[..end])
            .map_err(|_| WireError::Malformed("string (not UTF-8)"))?;
        self.rest = &self.rest[end + 1..];
        Ok(s)
    }

    pub fn i32(&mut self) -> Result<i32, WireError> {
        let (head, tail) = self
            .rest
            .split_first_chunk::<4>()
            .ok_or(WireError::Malformed("message (too short for an int32)"))?;
        self.rest = tail;
        Ok(i32::from_be_bytes(*head))
    }

    pub fn i16(&mut self) -> Result<i16, WireError> {
        let (head, tail) = self
            .rest
            .split_first_chunk::<2>()
            .ok_or(WireError::Malformed("message (too short for an int16)"))?;
        self.rest = tail;
        Ok(i16::from_be_bytes(*head))
    }

    pub fn byte(&mut self) -> Result<u8, WireError> {
        let (&b, tail) = self
            .rest
            .split_first()
            .ok_or(WireError::Malformed("message (too short for a byte)"))?;
        self.rest = tail;
        Ok(b)
    }

    pub fn rest(&self) -> &'a [u8] {
        self.rest
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_are_checked_before_the_body_arrives() {
        assert!(peek(b"Q\0\0", 100).expect("short").is_none());
        assert!(matches!(
            peek(b"Q\0\0\0\x02", 100),
            Err(WireError::Malformed(_))
        ));
        assert!(matches!(
            peek(b"Q\x7f\xff\xff\xff", 1 << 20),
            Err(WireError::TooLarge { .. })
        ));
        assert_eq!(
            peek(b"Q\0\0\0\x05x..", 100).expect("ok"),
            Some(Frame { tag: b'Q', len: 6 })
        );
    }

    #[test]
    fn the_largest_length_never_wraps() {
        // 0xffff_ffff + 1 does not fit a 32-bit usize; even without a
        // limit that is "not complete yet" (64 bits) or too large (32
        // bits), never a frame shorter than its own header.
        let buf = b"Q\xff\xff\xff\xffrest";
        assert!(!matches!(peek(buf, usize::MAX), Ok(Some(_))));
        match peek(buf, 1 << 30) {
            Err(WireError::TooLarge { len, .. }) => assert!(len as u64 >= u64::from(u32::MAX)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn fields_never_read_past_the_body() {
        let mut f = Fields::new(b"ab\0\0\0");
        assert_eq!(f.cstr().expect("str"), "ab");
        assert!(f.i32().is_err());
        assert!(Fields::new(b"no-nul").cstr().is_err());
    }
}
