//! Messages piha sends to clients when it answers itself: login, errors,
//! and the rows of the admin console. Each appends one message to `out`.

use bytes::{BufMut, BytesMut};

/// SQLSTATE codes piha raises itself.
pub mod sqlstate {
    pub const PROTOCOL_VIOLATION: &str = "08P01";
    pub const CONNECTION_FAILURE: &str = "08006";
    pub const CANNOT_CONNECT_NOW: &str = "57P03";
    pub const TOO_MANY_CONNECTIONS: &str = "53300";
    pub const INVALID_PASSWORD: &str = "28P01";
    pub const INVALID_AUTHORIZATION: &str = "28000";
    pub const FEATURE_NOT_SUPPORTED: &str = "0A000";
    pub const QUERY_CANCELED: &str = "57014";
    pub const ADMIN_SHUTDOWN: &str = "57P01";
    pub const PROGRAM_LIMIT_EXCEEDED: &str = "54000";
    pub const SYNTAX_ERROR: &str = "42601";
    pub const INVALID_CATALOG_NAME: &str = "3D000";
    pub const INSUFFICIENT_PRIVILEGE: &str = "42501";
    pub const OBJECT_NOT_IN_PREREQUISITE_STATE: &str = "55000";
    pub const CONFIG_FILE_ERROR: &str = "F0000";
}

/// Writes the type byte and a length placeholder, runs `body`, then fills
/// in the length.
fn message(out: &mut BytesMut, tag: u8, body: impl FnOnce(&mut BytesMut)) {
    out.put_u8(tag);
    let at = out.len();
    out.put_u32(0);
    body(out);
    let len = (out.len() - at) as u32;
    out[at..at + 4].copy_from_slice(&len.to_be_bytes());
}

fn cstr(out: &mut BytesMut, s: &str) {
    // A NUL inside would end the string early and desync the peer.
    out.put_slice(s.replace('\0', " ").as_bytes());
    out.put_u8(0);
}

pub fn error(out: &mut BytesMut, code: &str, text: &str) {
    fields(out, b'E', "ERROR", code, text);
}

pub fn fatal(out: &mut BytesMut, code: &str, text: &str) {
    fields(out, b'E', "FATAL", code, text);
}

pub fn notice(out: &mut BytesMut, text: &str) {
    fields(out, b'N', "NOTICE", "00000", text);
}

/// A NoticeResponse with a DETAIL (psql prints it on its own lines).
pub fn notice_detail(out: &mut BytesMut, text: &str, detail: &str) {
    with_detail(out, b'N', "NOTICE", "00000", text, Some(detail));
}

fn fields(out: &mut BytesMut, tag: u8, severity: &str, code: &str, text: &str) {
    with_detail(out, tag, severity, code, text, None);
}

fn with_detail(
    out: &mut BytesMut,
    tag: u8,
    severity: &str,
    code: &str,
    text: &str,
    detail: Option<&str>,
) {
    message(out, tag, |b| {
        b.put_u8(b'S');
        cstr(b, severity);
        b.put_u8(b'V');
        cstr(b, severity);
        b.put_u8(b'C');
        cstr(b, code);
        b.put_u8(b'M');
        cstr(b, text);
        if let Some(detail) = detail {
            b.put_u8(b'D');
            cstr(b, detail);
        }
        b.put_u8(0);
    });
}

pub fn auth_ok(out: &mut BytesMut) {
    message(out, b'R', |b| b.put_i32(0));
}

pub fn auth_md5(out: &mut BytesMut, salt: [u8; 4]) {
    message(out, b'R', |b| {
        b.put_i32(5);
        b.put_slice(&salt);
    });
}

pub fn auth_sasl(out: &mut BytesMut, mechanism: &str) {
    message(out, b'R', |b| {
        b.put_i32(10);
        cstr(b, mechanism);
        b.put_u8(0);
    });
}

pub fn auth_sasl_continue(out: &mut BytesMut, data: &[u8]) {
    message(out, b'R', |b| {
        b.put_i32(11);
        b.put_slice(data);
    });
}

pub fn auth_sasl_final(out: &mut BytesMut, data: &[u8]) {
    message(out, b'R', |b| {
        b.put_i32(12);
        b.put_slice(data);
    });
}

pub fn parameter_status(out: &mut BytesMut, key: &str, value: &str) {
    message(out, b'S', |b| {
        cstr(b, key);
        cstr(b, value);
    });
}

pub fn backend_key_data(out: &mut BytesMut, pid: i32, secret: i32) {
    message(out, b'K', |b| {
        b.put_i32(pid);
        b.put_i32(secret);
    });
}

pub fn ready_for_query(out: &mut BytesMut, status: u8) {
    message(out, b'Z', |b| b.put_u8(status));
}

pub fn parse_complete(out: &mut BytesMut) {
    message(out, b'1', |_| {});
}

pub fn command_complete(out: &mut BytesMut, tag: &str) {
    message(out, b'C', |b| cstr(b, tag));
}

pub fn empty_query(out: &mut BytesMut) {
    message(out, b'I', |_| {});
}

/// RowDescription with every column as text (type oid 25).
pub fn row_description(out: &mut BytesMut, columns: &[&str]) {
    message(out, b'T', |b| {
        b.put_i16(columns.len() as i16);
        for name in columns {
            cstr(b, name);
            b.put_i32(0); // table oid
            b.put_i16(0); // column number
            b.put_i32(25); // text
            b.put_i16(-1); // variable length
            b.put_i32(-1); // no modifier
            b.put_i16(0); // text format
        }
    });
}

pub fn data_row(out: &mut BytesMut, values: &[Option<String>]) {
    message(out, b'D', |b| {
        b.put_i16(values.len() as i16);
        for v in values {
            match v {
                Some(v) => {
                    b.put_i32(v.len() as i32);
                    b.put_slice(v.as_bytes());
                }
                None => b.put_i32(-1),
            }
        }
    });
}

/// The ErrorResponse/NoticeResponse fields PostgreSQL sent, for logs and
/// for errors the pooler passes on.
pub fn error_fields(body: &[u8]) -> (String, String) {
    let mut code = String::new();
    let mut text = String::new();
    let mut rest = body;
    while let Some((&kind, tail)) = rest.split_first() {
        if kind == 0 {
            break;
        }
        let end = tail.iter().position(|&b| b == 0).unwrap_or(tail.len());
        let value = String::from_utf8_lossy(&tail[..end]).into_owned();
        match kind {
            b'C' => code = value,
            b'M' => text = value,
            _ => {}
        }
        rest = tail.get(end + 1..).unwrap_or(&[]);
    }
    (code, text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_count_themselves_and_fields_round_trip() {
        let mut out = BytesMut::new();
        error(&mut out, "53300", "too many");
        let len = u32::from_be_bytes([out[1], out[2], out[3], out[4]]) as usize;
        assert_eq!(len + 1, out.len());
        assert_eq!(
            error_fields(&out[5..]),
            ("53300".to_string(), "too many".to_string())
        );
    }
}
