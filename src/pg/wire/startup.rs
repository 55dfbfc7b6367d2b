//! The first packet of a connection: no type byte, a length, then a code
//! that says what it is (a protocol version, or a request for TLS, GSS
//! encryption or a cancel).

use tokio::io::{AsyncRead, AsyncReadExt};

use super::WireError;
use super::frame::Fields;

const SSL_REQUEST: u32 = 80877103;
const GSSENC_REQUEST: u32 = 80877104;
const CANCEL_REQUEST: u32 = 80877102;
const PROTOCOL_3_0: u32 = 196608;
/// PostgreSQL's own limit for a startup packet (MAX_STARTUP_PACKET_LENGTH).
pub const MAX_STARTUP: usize = 10_000;

#[derive(Debug, PartialEq, Eq)]
pub enum Startup {
    /// StartupMessage v3.0: parameters in order (`user`, `database`, ...).
    Params(Vec<(String, String)>),
    Ssl,
    GssEnc,
    Cancel {
        pid: i32,
        secret: i32,
    },
}

impl Startup {
    pub fn param<'a>(params: &'a [(String, String)], key: &str) -> Option<&'a str> {
        params
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

pub async fn read<R: AsyncRead + Unpin>(reader: &mut R) -> Result<Startup, WireError> {
    let mut len = [0u8; 4];
    match reader.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Err(WireError::Closed),
        Err(e) => return Err(e.into()),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len < 8 {
        return Err(WireError::Malformed("startup packet (length below 8)"));
    }
    if len > MAX_STARTUP {
        return Err(WireError::TooLarge {
            what: "a startup packet",
            len,
            max: MAX_STARTUP,
        });
    }
    let mut body = vec![0u8; len - 4];
    reader.read_exact(&mut body).await.map_err(|_| {
        WireError::Malformed("startup packet (the peer closed in the middle of it)")
    })?;
    parse(&body)
}

/// Parses the packet after its length word.
pub fn parse(body: &[u8]) -> Result<Startup, WireError> {
    let mut f = Fields::new(body);
    let code = f.i32()? as u32;
    match code {
        SSL_REQUEST => Ok(Startup::Ssl),
        GSSENC_REQUEST => Ok(Startup::GssEnc),
        CANCEL_REQUEST => {
            let pid = f.i32()?;
            let secret = f.i32()?;
            Ok(Startup::Cancel { pid, secret })
        }
        PROTOCOL_3_0 => {
            let mut params = Vec::new();
            loop {
                let key = f.cstr()?;
                if key.is_empty() {
                    break;
                }
                let value = f.cstr()?;
                if params.iter().any(|(k, _): &(String, String)| k == key) {
                    return Err(WireError::Malformed(
                        "startup packet (a parameter given twice)",
                    ));
                }
                params.push((key.to_string(), value.to_string()));
            }
            Ok(Startup::Params(params))
        }
        other => Err(WireError::UnsupportedProtocol {
            major: (other >> 16) as u16,
            minor: (other & 0xffff) as u16,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_every_kind_and_refuses_garbage() {
        let mut p = PROTOCOL_3_0.to_be_bytes().to_vec();
        p.extend_from_slice(b"user\0bob\0database\0db\0\0");
        assert_eq!(
            parse(&p).expect("params"),
            Startup::Params(vec![
                ("user".into(), "bob".into()),
                ("database".into(), "db".into())
            ])
        );
        assert_eq!(
            parse(&SSL_REQUEST.to_be_bytes()).expect("ssl"),
            Startup::Ssl
        );
        assert!(matches!(
            parse(&0x0002_0000u32.to_be_bytes()),
            Err(WireError::UnsupportedProtocol { major: 2, minor: 0 })
        ));
        let mut dup = PROTOCOL_3_0.to_be_bytes().to_vec();
        dup.extend_from_slice(b"user\0a\0user\0b\0\0");
        assert!(parse(&dup).is_err());
        let mut open = PROTOCOL_3_0.to_be_bytes().to_vec();
        open.extend_from_slice(b"user\0a");
        assert!(parse(&open).is_err());
    }
}
