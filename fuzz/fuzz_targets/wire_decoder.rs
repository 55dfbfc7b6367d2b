//! Everything the pooler decodes from a peer's bytes: the startup packet,
//! message framing under a size limit, the client messages it looks into
//! (Query, Parse, Bind, Describe/Close) and the fields of an ErrorResponse.
//!
//! Input: one byte that picks the limit, then the bytes as they would sit in
//! a connection's buffer (also read as a startup packet body).

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use piha::pg::wire::backend;
use piha::pg::wire::frame::{self, Fields};
use piha::pg::wire::frontend;
use piha::pg::wire::startup::{self, Startup};
use piha::pg::wire::{Frame, WireError};

fuzz_target!(|data: &[u8]| {
    let Some((&pick, buf)) = data.split_first() else {
        return;
    };
    let max = match pick % 5 {
        0 => 5,
        1 => 64,
        2 => 1024,
        3 => 1 << 20,
        _ => usize::MAX,
    };

    startup_packet(buf);

    // Frame after frame, as session::scan walks a client buffer.
    let mut at = 0;
    loop {
        match frame::peek(&buf[at..], max) {
            Ok(Some(f)) => {
                check_frame(f, &buf[at..], max);
                message(f, &buf[at..at + f.len]);
                at += f.len;
            }
            Ok(None) => break,
            Err(WireError::TooLarge { len, max: m, .. }) => {
                assert_eq!(m, max);
                assert!(len > max, "TooLarge for {len} bytes under a limit of {max}");
                break;
            }
            Err(WireError::Malformed(_)) => break,
            Err(other) => panic!("peek cannot fail with {other:?}"),
        }
    }
    assert!(at <= buf.len());

    // Every parser on the whole buffer as a body, whatever its tag says.
    bodies(buf);
});

fn check_frame(f: Frame, buf: &[u8], max: usize) {
    assert!(f.len >= 5, "a frame shorter than its header: {f:?}");
    assert!(f.len <= buf.len(), "a frame longer than the input: {f:?}");
    assert!(f.len <= max, "a frame over the limit {max}: {f:?}");
    assert_eq!(f.tag, buf[0]);
    let declared = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
    assert_eq!(f.len, declared + 1);
    assert_eq!(f.body(buf).len(), f.len - 5);
}

fn startup_packet(body: &[u8]) {
    match startup::parse(body) {
        Ok(Startup::Params(params)) => {
            for (i, (k, _)) in params.iter().enumerate() {
                assert!(!k.is_empty(), "an empty parameter name ends the list");
                assert!(
                    params[..i].iter().all(|(other, _)| other != k),
                    "parameter {k:?} given twice was accepted"
                );
                assert_eq!(
                    Startup::param(&params, k),
                    Some(params[i].1.as_str()),
                    "lookup of {k:?}"
                );
            }
        }
        Ok(Startup::Ssl | Startup::GssEnc | Startup::Cancel { .. }) => {}
        Err(WireError::UnsupportedProtocol { major, minor }) => {
            assert!((major, minor) != (3, 0), "3.0 is supported");
        }
        Err(WireError::Malformed(_)) => {}
        Err(other) => panic!("startup::parse cannot fail with {other:?}"),
    }
}

/// A frame by its tag, as the session handles it; what parses must also
/// survive being written back (the statement-name rewrite).
fn message(f: Frame, msg: &[u8]) {
    let body = f.body(msg);
    match f.tag {
        frontend::QUERY => {
            if let Ok(text) = frontend::query_text(body) {
                error_round_trip(text);
            }
        }
        frontend::PARSE => {
            if let Ok(p) = frontend::parse(body) {
                // Parse takes the whole body, so writing it back is identity.
                let mut out = BytesMut::new();
                frontend::write_parse(&mut out, p.name, p.query, p.rest);
                assert_eq!(&out[..], msg, "Parse does not round-trip");
                let mut renamed = BytesMut::new();
                frontend::write_parse(&mut renamed, "piha_s1", p.query, p.rest);
                let again = reframe(&renamed);
                let q = frontend::parse(again).expect("a rewritten Parse parses");
                assert_eq!((q.name, q.query, q.rest), ("piha_s1", p.query, p.rest));
            }
        }
        frontend::BIND => {
            if let Ok(b) = frontend::bind(body) {
                let mut out = BytesMut::new();
                frontend::write_bind(&mut out, b.portal, b.statement, b.rest);
                assert_eq!(&out[..], msg, "Bind does not round-trip");
            }
        }
        frontend::DESCRIBE | frontend::CLOSE => {
            if let Ok((kind, name)) = frontend::target(body) {
                assert!(kind == b'S' || kind == b'P');
                let mut out = BytesMut::new();
                frontend::write_target(&mut out, f.tag, kind, name);
                let again = reframe(&out);
                assert_eq!(frontend::target(again).expect("rewritten"), (kind, name));
            }
        }
        b'E' | b'N' => {
            let _ = backend::error_fields(body);
        }
        _ => {}
    }
}

fn bodies(body: &[u8]) {
    let _ = frontend::query_text(body);
    let _ = frontend::parse(body);
    let _ = frontend::bind(body);
    let _ = frontend::target(body);
    let (code, text) = backend::error_fields(body);
    assert!(code.len() <= body.len() * 3 && text.len() <= body.len() * 3);
    let mut f = Fields::new(body);
    while f.cstr().is_ok() || f.i16().is_ok() || f.byte().is_ok() {}
    assert!(f.rest().is_empty());
}

/// The body of the one message `out` holds, checked by `peek` first.
fn reframe(out: &[u8]) -> &[u8] {
    let f = frame::peek(out, usize::MAX)
        .expect("a written message frames")
        .expect("complete");
    assert_eq!(f.len, out.len());
    f.body(out)
}

/// An ErrorResponse the pooler writes carrying peer text reads back the same.
fn error_round_trip(text: &str) {
    let mut out = BytesMut::new();
    backend::error(&mut out, "08P01", text);
    let body = reframe(&out);
    let (code, got) = backend::error_fields(body);
    assert_eq!(code, "08P01");
    assert_eq!(got, text.replace('\0', " "));
}
