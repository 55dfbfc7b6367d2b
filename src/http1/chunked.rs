//! The chunked transfer coding (RFC 9112 §7.1), sans IO: tells which bytes
//! of a chunked body are payload and which are framing, and where the body
//! ends. Shared by the request-smuggling guard (which only needs to know
//! where a client's body ends, and refuses bad framing) and the balancer's
//! backend connections (which decode a backend's chunked answer).
//!
//! Written by hand because hyper's decoder is private to hyper, and both
//! users need the same strictness: anything hyper's decoder refuses, this
//! refuses too, so the guard and hyper never disagree on where a body ends.

/// Chunk extensions longer than this are refused (hyper's limit is similar).
const MAX_EXTENSION: usize = 4096;

/// Where a chunked body stands. `Copy`: a few words, kept inside other
/// state machines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chunked {
    state: State,
    /// The most trailer bytes accepted after the last chunk.
    max_trailers: usize,
}

/// The same steps as hyper's decoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// First hex digit of a size line.
    Start,
    Size(u64),
    /// Spaces or tabs after the size.
    Lws(u64),
    Ext(u64, usize),
    SizeLf(u64),
    Data(u64),
    DataCr,
    DataLf,
    /// After the last chunk: CR of the final CRLF, or a trailer starts.
    EndCr(usize),
    Trailer(usize),
    TrailerLf(usize),
    EndLf,
    /// The final CRLF was read.
    Ended,
}

/// What the bytes at the front of the input are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// This many bytes are payload.
    Data(usize),
    /// This many bytes are framing (size lines, CRLFs, trailers).
    Framing(usize),
    /// This many bytes are framing, and the body ends after them.
    End(usize),
}

/// Bad framing: `at` bytes of the input were fine, the next is not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bad {
    pub at: usize,
    pub reason: &'static str,
}

impl Chunked {
    pub fn new(max_trailers: usize) -> Chunked {
        Chunked {
            state: State::Start,
            max_trailers,
        }
    }

    pub fn is_ended(&self) -> bool {
        self.state == State::Ended
    }

    /// Looks at the next bytes of the body (`data` non-empty) and says
    /// what the first of them are: a run of payload, or a run of framing
    /// (up to the next payload, the end, or the end of `data`).
    pub fn step(&mut self, data: &[u8]) -> Result<Step, Bad> {
        if let State::Data(left) = self.state {
            let take = left.min(data.len() as u64);
            self.state = if left == take {
                State::DataCr
            } else {
                State::Data(left - take)
            };
            return Ok(Step::Data(take as usize));
        }
        for (at, &b) in data.iter().enumerate() {
            self.state = self.next(b).map_err(|reason| Bad { at, reason })?;
            match self.state {
                State::Ended => return Ok(Step::End(at + 1)),
                State::Data(_) => return Ok(Step::Framing(at + 1)),
                _ => {}
            }
        }
        Ok(Step::Framing(data.len()))
    }

    fn next(&self, b: u8) -> Result<State, &'static str> {
        Ok(match (self.state, b) {
            (State::Start, _) => match hex(b) {
                Some(d) => State::Size(u64::from(d)),
                None => return Err("bad chunk size"),
            },
            (State::Size(n), _) if hex(b).is_some() => {
                let d = u64::from(hex(b).unwrap_or(0));
                match n.checked_mul(16).and_then(|n| n.checked_add(d)) {
                    Some(n) => State::Size(n),
                    None => return Err("chunk size overflows"),
                }
            }
            (State::Size(n) | State::Lws(n), b' ' | b'\t') => State::Lws(n),
            (State::Size(n) | State::Lws(n), b';') => State::Ext(n, 0),
            (State::Size(n) | State::Lws(n) | State::Ext(n, _), b'\r') => State::SizeLf(n),
            (State::Size(_) | State::Lws(_), b'\n') => {
                return Err("chunk size line without CRLF");
            }
            (State::Size(_) | State::Lws(_), _) => return Err("bad chunk size"),
            (State::Ext(_, _), b'\n') => return Err("line feed in a chunk extension"),
            (State::Ext(n, len), _) => {
                if len >= MAX_EXTENSION {
                    return Err("chunk extension too long");
                }
                State::Ext(n, len + 1)
            }
            (State::SizeLf(0), b'\n') => State::EndCr(0),
            (State::SizeLf(n), b'\n') => State::Data(n),
            (State::SizeLf(_), _) => return Err("chunk size line without CRLF"),
            (State::DataCr, b'\r') => State::DataLf,
            (State::DataLf, b'\n') => State::Start,
            (State::DataCr | State::DataLf, _) => {
                return Err("chunk data longer than its size");
            }
            (State::EndCr(_), b'\r') => State::EndLf,
            (State::EndCr(len) | State::Trailer(len), _) => {
                if len >= self.max_trailers {
                    return Err("trailers too large");
                }
                if b == b'\r' {
                    State::TrailerLf(len + 1)
                } else {
                    State::Trailer(len + 1)
                }
            }
            (State::TrailerLf(len), b'\n') => State::EndCr(len + 1),
            (State::TrailerLf(_), _) => return Err("trailer line without CRLF"),
            (State::EndLf, b'\n') => State::Ended,
            (State::EndLf, _) => return Err("chunked body without final CRLF"),
            // `step` takes payload in bulk and stops at the end.
            (State::Data(_) | State::Ended, _) => return Err("bytes after the chunked body"),
        })
    }
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The payload of `input`, fed in pieces of `piece` bytes, and how many
    /// bytes the body took.
    fn decode(input: &[u8], piece: usize) -> Result<(Vec<u8>, usize), Bad> {
        let mut c = Chunked::new(1024);
        let mut out = Vec::new();
        let mut at = 0;
        while at < input.len() {
            let end = (at + piece).min(input.len());
            let step = c
                .step(&input[at..end])
                .map_err(|b| Bad { at: at + b.at, ..b })?;
            match step {
                Step::Data(n) => {
                    out.extend_from_slice(&input[at..at + n]);
                    at += n;
                }
                Step::Framing(n) => at += n,
                Step::End(n) => return Ok((out, at + n)),
            }
        }
        Err(Bad {
            at,
            reason: "unfinished",
        })
    }

    #[test]
    fn payload_and_end_whatever_the_pieces() {
        let body = b"5;ext=1\r\nhello\r\n7\r\n, world\r\n0\r\nX-T: 1\r\n\r\nNEXT";
        for piece in [1, 2, 3, 7, 100] {
            let (payload, used) = decode(body, piece).expect("valid");
            assert_eq!(payload, b"hello, world", "piece {piece}");
            assert_eq!(used, body.len() - 4, "piece {piece}");
        }
    }

    #[test]
    fn bad_framing_names_the_byte() {
        for (input, at, reason) in [
            (&b"zz\r\n"[..], 0, "bad chunk size"),
            (b"3\r\nhello\r\n", 6, "chunk data longer than its size"),
            (b"5\nhello", 1, "chunk size line without CRLF"),
            (b"0\r\n\r\x00", 4, "chunked body without final CRLF"),
        ] {
            for piece in [1, 100] {
                let bad = decode(input, piece).expect_err("refused");
                assert_eq!(
                    (bad.at, bad.reason),
                    (at, reason),
                    "{input:?} piece {piece}"
                );
            }
        }
    }

    #[test]
    fn trailers_are_bounded() {
        let mut input = b"0\r\n".to_vec();
        input.extend(std::iter::repeat_n(b'a', 2000));
        assert_eq!(
            decode(&input, 64).expect_err("too large").reason,
            "trailers too large"
        );
    }
}
