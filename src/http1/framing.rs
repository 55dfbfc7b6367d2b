//! Request smuggling guard, sans IO: follows the HTTP/1 request framing of a
//! client connection byte by byte, ahead of hyper, and says where the stream
//! must be cut.
//!
//! Why a second look when hyper parses anyway: hyper accepts, per RFC 9112,
//! a request with both Content-Length and Transfer-Encoding (chunked wins,
//! the connection closes afterwards) and collapses repeated identical
//! Content-Length headers, and it hides both from the service. A front door
//! must refuse those outright (400 and close), as HAProxy does: they are the
//! classic desync vectors between a proxy and the server behind it. So this
//! tracker reads every request head and every body frame as they arrive,
//! and rejects:
//!
//! - Content-Length together with Transfer-Encoding;
//! - more than one Content-Length, or one that is not plain digits;
//! - Transfer-Encoding other than exactly one `chunked`, or in HTTP/1.0;
//! - header names that are not tokens (`Content-Length :`), obsolete line
//!   folding, bare CR;
//! - bad chunk framing (non-hex size, overflow, missing CRLF, LF in an
//!   extension, oversized trailers);
//! - a head longer than the limit.
//!
//! It is at least as strict as hyper on everything hyper accepts, so the two
//! never disagree on where a message ends. After an HTTP/2 preface or a
//! request asking for an upgrade (hyper upgrades on any `Upgrade` header and
//! on CONNECT) it stops looking: what follows is not HTTP/1 framing, and if
//! the upgrade is refused hyper's own parser still guards the rest.

use super::chunked::{self, Chunked};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Every byte fed may go on to hyper.
    Pass,
    /// Only the first `keep` bytes of this feed may go on; the request is
    /// refused for `reason`.
    Reject { keep: usize, reason: &'static str },
}

#[derive(Debug)]
pub struct Framing {
    state: State,
    /// The head being collected (bounded by `max_head`).
    head: Vec<u8>,
    max_head: usize,
    /// No head completed yet: only the first may be the h2 preface.
    first: bool,
    /// The message being read asked for an upgrade: stop after its body.
    upgrade_after_body: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Head,
    Fixed(u64),
    Chunk(Chunked),
    /// Not HTTP/1 framing any more (h2, upgraded), or already refused.
    Done,
}

/// What a complete, acceptable head says about the body behind it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    Body(BodyLen),
    /// The HTTP/2 connection preface: the rest is h2 frames.
    H2,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyLen {
    None { upgrade: bool },
    Fixed { len: u64, upgrade: bool },
    Chunked { upgrade: bool },
}

enum Step {
    /// Consumed this many bytes; go on.
    Took(usize),
    Reject(&'static str),
}

impl Framing {
    pub fn new(max_head: usize) -> Framing {
        Framing {
            state: State::Head,
            head: Vec::new(),
            max_head,
            first: true,
            upgrade_after_body: false,
        }
    }

    /// Looks at the next bytes the client sent.
    pub fn feed(&mut self, data: &[u8]) -> Verdict {
        let mut at = 0;
        while at < data.len() {
            let step = match self.state {
                State::Done => return Verdict::Pass,
                State::Head if self.head.is_empty() => match self.whole_head(&data[at..]) {
                    Some((len, Step::Reject(reason))) => {
                        // As on the line-by-line path, the refused head's
                        // last byte is the first one held back.
                        at += len - 1;
                        Step::Reject(reason)
                    }
                    Some((_, took)) => took,
                    None => self.head_line(&data[at..]),
                },
                State::Head => self.head_line(&data[at..]),
                State::Fixed(left) => {
                    let take = left.min((data.len() - at) as u64);
                    self.state = State::Fixed(left - take);
                    if left == take {
                        self.body_done();
                    }
                    Step::Took(take as usize)
                }
                State::Chunk(mut c) => match c.step(&data[at..]) {
                    Ok(chunked::Step::Data(n) | chunked::Step::Framing(n)) => {
                        self.state = State::Chunk(c);
                        Step::Took(n)
                    }
                    Ok(chunked::Step::End(n)) => {
                        self.body_done();
                        Step::Took(n)
                    }
                    Err(bad) => {
                        at += bad.at;
                        Step::Reject(bad.reason)
                    }
                },
            };
            match step {
                Step::Took(n) => at += n,
                Step::Reject(reason) => {
                    self.state = State::Done;
                    return Verdict::Reject { keep: at, reason };
                }
            }
        }
        Verdict::Pass
    }

    /// The fast path for a head that arrived whole in one read (nearly
    /// every request): checked where it lies, without collecting it line by
    /// line. `None` when the head is not all here, or too large, or starts
    /// with the empty lines the slow path skips: `head_line` takes those.
    /// Also gives the head's length.
    fn whole_head(&mut self, data: &[u8]) -> Option<(usize, Step)> {
        if data[0] == b'\r' || data[0] == b'\n' {
            return None;
        }
        let len = whole_head_len(data)?;
        if len > self.max_head {
            return None;
        }
        Some((len, self.head_done(&data[..len], len)))
    }

    /// Takes head bytes up to and including the next LF (a whole line at a
    /// time: the head is only looked at when a line ends), or as many as
    /// fit under `max_head`.
    fn head_line(&mut self, data: &[u8]) -> Step {
        // Empty lines before a request line are skipped, as httparse does.
        if self.head.is_empty() && (data[0] == b'\r' || data[0] == b'\n') {
            return Step::Took(1);
        }
        if self.head.len() >= self.max_head {
            return Step::Reject("request head too large");
        }
        let line = memchr::memchr(b'\n', data).map_or(data.len(), |i| i + 1);
        let n = line.min(self.max_head - self.head.len());
        self.head.extend_from_slice(&data[..n]);
        if data[n - 1] != b'\n' || !(self.head.ends_with(b"\n\n") || self.head.ends_with(b"\n\r\n"))
        {
            return Step::Took(n);
        }
        if n > 1 {
            // The head ends here: its last byte goes alone, so a refusal
            // keeps everything before it (hyper never sees a whole bad head).
            self.head.pop();
            return Step::Took(n - 1);
        }
        let head = std::mem::take(&mut self.head);
        let step = self.head_done(&head, n);
        // Keep the allocation for the next head that trickles in.
        self.head = head;
        self.head.clear();
        step
    }

    /// A complete head (ending in its empty line), of which the last `n`
    /// bytes are in the current feed: judged, and the state moved on.
    fn head_done(&mut self, head: &[u8], n: usize) -> Step {
        let parsed = parse_head(head, self.first);
        self.first = false;
        match parsed {
            Err(reason) => Step::Reject(reason),
            Ok(Next::H2) => {
                self.state = State::Done;
                Step::Took(n)
            }
            Ok(Next::Body(body)) => {
                self.start_body(body);
                Step::Took(n)
            }
        }
    }

    fn start_body(&mut self, body: BodyLen) {
        match body {
            BodyLen::None { upgrade } => {
                self.upgrade_after_body = upgrade;
                self.body_done();
            }
            BodyLen::Fixed { len, upgrade } => {
                self.upgrade_after_body = upgrade;
                self.state = State::Fixed(len);
                if len == 0 {
                    self.body_done();
                }
            }
            BodyLen::Chunked { upgrade } => {
                self.upgrade_after_body = upgrade;
                self.state = State::Chunk(Chunked::new(self.max_head));
            }
        }
    }

    fn body_done(&mut self) {
        self.state = if self.upgrade_after_body {
            State::Done
        } else {
            State::Head
        };
    }
}

/// The length of the head at the front of `data`, through the LF of its
/// empty line (`\n\n` or `\n\r\n`, as the line-by-line path ends it), if
/// it is all there.
fn whole_head_len(data: &[u8]) -> Option<usize> {
    for lf in memchr::memchr_iter(b'\n', data) {
        match data.get(lf + 1..)? {
            [b'\n', ..] => return Some(lf + 2),
            [b'\r', b'\n', ..] => return Some(lf + 3),
            [b'\r'] => return None,
            _ => {}
        }
    }
    None
}

/// Checks one complete request head (ending in an empty line).
fn parse_head(head: &[u8], first: bool) -> Result<Next, &'static str> {
    let mut lines = head
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let request_line = lines.next().unwrap_or_default();
    if request_line.contains(&b'\r') {
        return Err("bare CR in the request line");
    }
    let mut parts = request_line.split(|&b| b == b' ');
    let (method, _target, version) = match (parts.next(), parts.next(), parts.next(), parts.next())
    {
        (Some(m), Some(t), Some(v), None) if !m.is_empty() && !t.is_empty() => (m, t, v),
        _ => return Err("malformed request line"),
    };
    if first && request_line == b"PRI * HTTP/2.0" {
        return Ok(Next::H2);
    }
    let http11 = match version {
        b"HTTP/1.1" => true,
        b"HTTP/1.0" => false,
        _ => return Err("unsupported HTTP version"),
    };
    let mut content_length: Option<u64> = None;
    let mut chunked = false;
    let mut upgrade = method == b"CONNECT";
    for line in lines.filter(|l| !l.is_empty()) {
        if line[0] == b' ' || line[0] == b'\t' {
            return Err("obsolete header line folding");
        }
        if line.contains(&b'\r') {
            return Err("bare CR in a header");
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            return Err("header line without a colon");
        };
        let name = &line[..colon];
        if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
            return Err("invalid header name");
        }
        let value = line[colon + 1..].trim_ascii();
        if name.eq_ignore_ascii_case(b"content-length") {
            if content_length.is_some() {
                return Err("more than one Content-Length");
            }
            content_length = Some(digits(value).ok_or("invalid Content-Length")?);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            if chunked {
                return Err("more than one Transfer-Encoding");
            }
            if !value.eq_ignore_ascii_case(b"chunked") {
                return Err("Transfer-Encoding other than chunked");
            }
            chunked = true;
        } else if name.eq_ignore_ascii_case(b"upgrade") {
            upgrade |= http11;
        }
    }
    match (content_length, chunked) {
        (Some(_), true) => Err("both Content-Length and Transfer-Encoding"),
        (None, true) if !http11 => Err("Transfer-Encoding in HTTP/1.0"),
        (None, true) => Ok(Next::Body(BodyLen::Chunked { upgrade })),
        (Some(len), false) => Ok(Next::Body(BodyLen::Fixed { len, upgrade })),
        (None, false) => Ok(Next::Body(BodyLen::None { upgrade })),
    }
}

/// Plain ASCII digits, as hyper reads Content-Length (no sign, no list).
fn digits(value: &[u8]) -> Option<u64> {
    if value.is_empty() || value.len() > 19 || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(value).ok()?.parse().ok()
}

/// RFC 9110 token characters. A table: every header name's every byte is
/// looked up here.
fn is_tchar(b: u8) -> bool {
    TCHAR[usize::from(b)]
}

const TCHAR: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'!' | b'#'
                    | b'$'
                    | b'%'
                    | b'&'
                    | b'\''
                    | b'*'
                    | b'+'
                    | b'-'
                    | b'.'
                    | b'^'
                    | b'_'
                    | b'`'
                    | b'|'
                    | b'~'
            );
        b += 1;
    }
    t
};

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(input: &[u8]) -> Verdict {
        Framing::new(8192).feed(input)
    }

    /// Feeds one byte at a time, as a trickling client would arrive.
    fn verdict_bytewise(input: &[u8]) -> Verdict {
        let mut f = Framing::new(8192);
        for (i, b) in input.iter().enumerate() {
            if let Verdict::Reject { keep, reason } = f.feed(std::slice::from_ref(b)) {
                return Verdict::Reject {
                    keep: i + keep,
                    reason,
                };
            }
        }
        Verdict::Pass
    }

    fn rejected(input: &[u8]) -> &'static str {
        match (verdict(input), verdict_bytewise(input)) {
            (Verdict::Reject { reason, keep }, Verdict::Reject { keep: k2, .. }) => {
                assert_eq!(keep, k2, "same cut whichever way the bytes arrive");
                reason
            }
            other => panic!(
                "not rejected: {other:?} for {:?}",
                String::from_utf8_lossy(input)
            ),
        }
    }

    fn passes(input: &[u8]) {
        assert_eq!(
            verdict(input),
            Verdict::Pass,
            "{}",
            String::from_utf8_lossy(input)
        );
        assert_eq!(verdict_bytewise(input), Verdict::Pass);
    }

    #[test]
    fn ordinary_requests_pass_including_pipelined_bodies() {
        passes(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
        passes(b"\r\nGET / HTTP/1.1\nHost: a\n\n");
        passes(
            b"POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhelloGET /b HTTP/1.1\r\n\r\n",
        );
        passes(
            b"POST / HTTP/1.1\r\nTransfer-Encoding: Chunked\r\n\r\n5;ext=1\r\nhello\r\n0\r\nX-T: 1\r\n\r\nGET / HTTP/1.0\r\n\r\n",
        );
    }

    #[test]
    fn smuggling_heads_are_rejected_at_their_last_byte() {
        let cl_te = b"POST / HTTP/1.1\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(rejected(cl_te), "both Content-Length and Transfer-Encoding");
        let Verdict::Reject { keep, .. } = verdict(cl_te) else {
            panic!()
        };
        assert_eq!(
            keep,
            cl_te.len() - 1,
            "hyper never sees a complete bad head"
        );
        let te_cl = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n";
        assert_eq!(rejected(te_cl), "both Content-Length and Transfer-Encoding");
        assert_eq!(
            rejected(b"POST / HTTP/1.1\r\nContent-Length: 4\r\nContent-Length: 4\r\n\r\n"),
            "more than one Content-Length"
        );
        assert_eq!(
            rejected(b"POST / HTTP/1.1\r\nContent-Length: +4\r\n\r\n"),
            "invalid Content-Length"
        );
        assert_eq!(
            rejected(b"POST / HTTP/1.1\r\nContent-Length: 4, 4\r\n\r\n"),
            "invalid Content-Length"
        );
        for te in ["gzip, chunked", "chunked, identity", "identity", "xchunked"] {
            let req = format!("POST / HTTP/1.1\r\nTransfer-Encoding: {te}\r\n\r\n");
            assert_eq!(
                rejected(req.as_bytes()),
                "Transfer-Encoding other than chunked"
            );
        }
        assert_eq!(
            rejected(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"),
            "more than one Transfer-Encoding"
        );
        assert_eq!(
            rejected(b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"),
            "Transfer-Encoding in HTTP/1.0"
        );
        assert_eq!(
            rejected(b"POST / HTTP/1.1\r\nContent-Length : 4\r\n\r\n"),
            "invalid header name"
        );
        assert_eq!(
            rejected(b"POST / HTTP/1.1\r\nX: a\r\n chunked\r\n\r\n"),
            "obsolete header line folding"
        );
    }

    #[test]
    fn the_second_request_of_a_keep_alive_connection_is_checked_too() {
        let input = b"GET / HTTP/1.1\r\n\r\nPOST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
        let Verdict::Reject { keep, .. } = verdict(input) else {
            panic!()
        };
        assert_eq!(keep, input.len() - 1);
        // A body that hides a head is body, not a head.
        passes(b"POST / HTTP/1.1\r\nContent-Length: 40\r\n\r\nGET / HTTP/1.1\r\nTransfer-Encoding: x\r\n\r\n\r\n");
    }

    #[test]
    fn a_head_in_pieces_then_a_whole_bad_one_is_cut_at_its_last_byte() {
        let mut f = Framing::new(8192);
        assert_eq!(f.feed(b"GET / HTTP/1.1\r\nHo"), Verdict::Pass);
        let rest =
            b"st: a\r\n\r\nPOST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n";
        assert_eq!(
            f.feed(rest),
            Verdict::Reject {
                keep: rest.len() - 1,
                reason: "more than one Content-Length"
            }
        );
    }

    #[test]
    fn bad_chunking_is_rejected_where_it_goes_wrong() {
        let head = "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
        for (body, reason) in [
            ("zz\r\n", "bad chunk size"),
            ("5\nhello\r\n0\r\n\r\n", "chunk size line without CRLF"),
            ("3\r\nhello\r\n", "chunk data longer than its size"),
            ("5;a\nb\r\n", "line feed in a chunk extension"),
            ("fffffffffffffffff\r\n", "chunk size overflows"),
            ("0\r\n\r\x00", "chunked body without final CRLF"),
        ] {
            let input = format!("{head}{body}");
            assert_eq!(rejected(input.as_bytes()), reason, "{body:?}");
        }
    }

    #[test]
    fn h2_preface_and_upgrades_end_the_checks() {
        passes(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x12\x04\x00");
        passes(
            b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n\x81\x85binary",
        );
        // Not first: a PRI line later is just an unsupported version.
        assert_eq!(
            rejected(b"GET / HTTP/1.1\r\n\r\nPRI * HTTP/2.0\r\n\r\n"),
            "unsupported HTTP version"
        );
    }

    #[test]
    fn oversized_heads_and_trailers_are_bounded() {
        let mut f = Framing::new(64);
        let big = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(100));
        assert!(matches!(
            f.feed(big.as_bytes()),
            Verdict::Reject {
                keep: 64,
                reason: "request head too large"
            }
        ));
        let mut f = Framing::new(64);
        let trailers = format!(
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: {}\r\n\r\n",
            "a".repeat(100)
        );
        assert!(matches!(
            f.feed(trailers.as_bytes()),
            Verdict::Reject {
                reason: "trailers too large",
                ..
            }
        ));
    }
}
