//! Client messages the pooler looks into: the query of a Query or Parse,
//! and the statement names of Parse, Bind, Describe and Close, which it
//! rewrites so that a client's `stmt1` becomes a pooler-wide `piha_s42` that
//! can live on any server connection. Everything else passes as raw bytes.

use bytes::{BufMut, BytesMut};

use super::WireError;
use super::frame::Fields;

pub const QUERY: u8 = b'Q';
pub const PARSE: u8 = b'P';
pub const BIND: u8 = b'B';
pub const DESCRIBE: u8 = b'D';
pub const EXECUTE: u8 = b'E';
pub const CLOSE: u8 = b'C';
pub const SYNC: u8 = b'S';
pub const FLUSH: u8 = b'H';
pub const TERMINATE: u8 = b'X';
pub const FUNCTION_CALL: u8 = b'F';
pub const COPY_DATA: u8 = b'd';
pub const COPY_DONE: u8 = b'c';
pub const COPY_FAIL: u8 = b'f';
pub const PASSWORD: u8 = b'p';

/// The text of a Query message.
pub fn query_text(body: &[u8]) -> Result<&str, WireError> {
    Fields::new(body).cstr()
}

/// A Parse message's parts; `rest` is the parameter type list, kept as bytes.
pub struct Parse<'a> {
    pub name: &'a str,
    pub query: &'a str,
    pub rest: &'a [u8],
}

pub fn parse(body: &[u8]) -> Result<Parse<'_>, WireError> {
    let mut f = Fields::new(body);
    let name = f.cstr()?;
    let query = f.cstr()?;
    let rest = f.rest();
    let mut types = Fields::new(rest);
    let n = types.i16()?;
    if n < 0 || rest.len() != 2 + 4 * n as usize {
        return Err(WireError::Malformed("Parse message (parameter type list)"));
    }
    Ok(Parse { name, query, rest })
}

/// A Parse message with another statement name.
pub fn write_parse(out: &mut BytesMut, name: &str, query: &str, rest: &[u8]) {
    framed(out, PARSE, |b| {
        b.put_slice(name.as_bytes());
        b.put_u8(0);
        b.put_slice(query.as_bytes());
        b.put_u8(0);
        b.put_slice(rest);
    });
}

/// Bind's portal and statement names, and the bytes after them.
pub struct Bind<'a> {
    pub portal: &'a str,
    pub statement: &'a str,
    pub rest: &'a [u8],
}

pub fn bind(body: &[u8]) -> Result<Bind<'_>, WireError> {
    let mut f = Fields::new(body);
    let portal = f.cstr()?;
    let statement = f.cstr()?;
    Ok(Bind {
        portal,
        statement,
        rest: f.rest(),
    })
}

pub fn write_bind(out: &mut BytesMut, portal: &str, statement: &str, rest: &[u8]) {
    framed(out, BIND, |b| {
        b.put_slice(portal.as_bytes());
        b.put_u8(0);
        b.put_slice(statement.as_bytes());
        b.put_u8(0);
        b.put_slice(rest);
    });
}

/// Describe or Close: 'S' (statement) or 'P' (portal), and the name.
pub fn target(body: &[u8]) -> Result<(u8, &str), WireError> {
    let mut f = Fields::new(body);
    let kind = f.byte()?;
    if kind != b'S' && kind != b'P' {
        return Err(WireError::Malformed(
            "Describe/Close (kind is neither 'S' nor 'P')",
        ));
    }
    Ok((kind, f.cstr()?))
}

pub fn write_target(out: &mut BytesMut, tag: u8, kind: u8, name: &str) {
    framed(out, tag, |b| {
        b.put_u8(kind);
        b.put_slice(name.as_bytes());
        b.put_u8(0);
    });
}

fn framed(out: &mut BytesMut, tag: u8, body: impl FnOnce(&mut BytesMut)) {
    out.put_u8(tag);
    let at = out.len();
    out.put_u32(0);
    body(out);
    let len = (out.len() - at) as u32;
    out[at..at + 4].copy_from_slice(&len.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrites_keep_everything_but_the_name() {
        let mut out = BytesMut::new();
        write_parse(&mut out, "s1", "SELECT $1", &[0, 1, 0, 0, 0, 23]);
        let p = parse(&out[5..]).expect("parse");
        assert_eq!((p.name, p.query), ("s1", "SELECT $1"));
        let mut again = BytesMut::new();
        write_parse(&mut again, "piha_s7", p.query, p.rest);
        let q = parse(&again[5..]).expect("parse");
        assert_eq!((q.name, q.rest), ("piha_s7", p.rest));

        let mut b = BytesMut::new();
        write_bind(&mut b, "", "s1", b"\0\0\0\0\0\0");
        let parsed = bind(&b[5..]).expect("bind");
        assert_eq!((parsed.portal, parsed.statement), ("", "s1"));
    }

    #[test]
    fn bad_parse_messages_are_refused() {
        assert!(parse(b"s\0SELECT 1\0\xff\xff").is_err());
        assert!(parse(b"s\0SELECT 1\0\0\x02\0\0\0\x17").is_err());
        assert!(target(b"Xname\0").is_err());
    }
}
