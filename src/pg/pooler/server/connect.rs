//! Opening a server connection: TCP (with a deadline), optional TLS,
//! StartupMessage, authentication, then ParameterStatus/BackendKeyData up to
//! the first ReadyForQuery. Server messages are parsed with
//! postgres-protocol's backend parser, after our own frame check has
//! bounded their size.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use postgres_protocol::message::backend::Message;
use postgres_protocol::message::frontend;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::conn::ServerConn;
use crate::pg::auth::ScramKeys;
use crate::pg::auth::scram::{ClientExchange, MECHANISM};
use crate::pg::pooler::error::PoolError;
use crate::pg::pooler::stream::PgStream;
use crate::pg::wire::frame::read_frame;
use crate::pg::wire::{WireError, backend::error_fields};
use crate::tcp_timeout;

/// What piha may log in with. Either is enough when the server asks for it;
/// a server that trusts the address needs neither.
#[derive(Clone, Default)]
pub struct Credentials {
    pub scram: Option<ScramKeys>,
    pub md5: Option<[u8; 16]>,
}

/// Server messages during login are small; a huge one is not PostgreSQL.
const MAX_LOGIN_MESSAGE: usize = 64 * 1024;

pub struct ConnectParams<'a> {
    pub addr: SocketAddr,
    pub user: &'a str,
    pub database: &'a str,
    /// Extra startup parameters (application_name, client_encoding...).
    pub startup: &'a [(String, String)],
    pub credentials: &'a Credentials,
    pub timeout: Duration,
    pub tls: Option<&'a Arc<rustls::ClientConfig>>,
    /// `[postgres] tcp_user_timeout`: see [`tcp_timeout`].
    pub tcp_user_timeout: Duration,
}

/// Connects and logs in within `timeout` (the whole login, not each step).
pub async fn connect(p: ConnectParams<'_>) -> Result<Box<ServerConn>, PoolError> {
    let addr = p.addr;
    let deadline = p.timeout;
    match tokio::time::timeout(deadline, login(p)).await {
        Ok(r) => r,
        Err(_) => Err(PoolError::Timeout {
            addr,
            what: "connect",
        }),
    }
}

async fn login(p: ConnectParams<'_>) -> Result<Box<ServerConn>, PoolError> {
    let addr = p.addr;
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|e| PoolError::Connect {
            addr,
            reason: e.to_string(),
        })?;
    let _ = tcp.set_nodelay(true);
    tcp_timeout::apply(&tcp, p.tcp_user_timeout);
    let wire = |source: WireError| PoolError::Wire { addr, source };
    let mut stream = match p.tls {
        Some(config) => start_tls(tcp, addr, config).await?,
        None => PgStream::Plain(tcp),
    };
    let mut out = BytesMut::with_capacity(256);
    let mut params: Vec<(&str, &str)> = vec![("user", p.user), ("database", p.database)];
    params.extend(p.startup.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    frontend::startup_message(params.iter().copied(), &mut out)
        .map_err(|e| wire(WireError::Io(e)))?;
    stream.write_all(&out).await.map_err(|e| wire(e.into()))?;

    let mut buf = BytesMut::with_capacity(1024);
    let mut scram: Option<ClientExchange> = None;
    let mut server_params = Vec::new();
    let mut key = (0, 0);
    loop {
        let frame = read_frame(&mut stream, &mut buf, MAX_LOGIN_MESSAGE)
            .await
            .map_err(wire)?;
        let raw = buf.split_to(frame.len);
        if frame.tag == b'E' {
            let (code, message) = error_fields(&raw[5..]);
            return Err(PoolError::Login {
                addr,
                code,
                message,
            });
        }
        if frame.tag == b'R' && raw.len() >= 9 && raw[5..9] == 10i32.to_be_bytes() {
            // AuthenticationSASL: read the mechanism list ourselves, as
            // postgres-protocol hands it out as a fallible iterator only.
            let offered = sasl_mechanisms(&raw[9..]).any(|m| m == MECHANISM);
            out.clear();
            let keys = p.credentials.scram.clone().ok_or_else(|| {
                PoolError::NoCredential(format!(
                    "PostgreSQL asks for SCRAM for user \"{}\", and piha has no keys for it yet: \
                     they are learned from the first client that logs in with SCRAM, \
                     or given as the service keys",
                    p.user
                ))
            })?;
            if !offered {
                return Err(PoolError::NoCredential(
                    "PostgreSQL offers no SCRAM-SHA-256 mechanism piha can use".into(),
                ));
            }
            let exchange = ClientExchange::new(keys);
            frontend::sasl_initial_response(
                MECHANISM,
                exchange.client_first().as_bytes(),
                &mut out,
            )
            .map_err(|e| wire(WireError::Io(e)))?;
            scram = Some(exchange);
            stream.write_all(&out).await.map_err(|e| wire(e.into()))?;
            continue;
        }
        let mut one = raw;
        let message = Message::parse(&mut one)
            .map_err(|e| wire(WireError::Io(e)))?
            .ok_or_else(|| wire(WireError::Malformed("server message during login")))?;
        out.clear();
        match message {
            Message::AuthenticationOk => {}
            Message::AuthenticationSaslContinue(body) => {
                let exchange = scram
                    .as_mut()
                    .ok_or_else(|| wire(WireError::Malformed("SASL continue before SASL start")))?;
                let reply = exchange
                    .server_first(body.data())
                    .map_err(|e| PoolError::NoCredential(e.to_string()))?;
                frontend::sasl_response(reply.as_bytes(), &mut out)
                    .map_err(|e| wire(WireError::Io(e)))?;
            }
            Message::AuthenticationSaslFinal(body) => {
                let exchange = scram
                    .as_ref()
                    .ok_or_else(|| wire(WireError::Malformed("SASL final before SASL start")))?;
                exchange
                    .server_final(body.data())
                    .map_err(|e| PoolError::Login {
                        addr,
                        code: String::new(),
                        message: e.to_string(),
                    })?;
            }
            Message::AuthenticationMd5Password(body) => {
                let secret = p.credentials.md5.ok_or_else(|| {
                    PoolError::NoCredential(format!(
                        "PostgreSQL asks for md5 for user \"{}\", and piha has no md5 secret for it",
                        p.user
                    ))
                })?;
                let answer = crate::pg::auth::md5::expected_response(&secret, body.salt());
                frontend::password_message(answer.as_bytes(), &mut out)
                    .map_err(|e| wire(WireError::Io(e)))?;
            }
            Message::AuthenticationCleartextPassword => {
                return Err(PoolError::NoCredential(
                    "PostgreSQL asks for a cleartext password, which piha never holds: \
                     use scram-sha-256 in pg_hba.conf"
                        .into(),
                ));
            }
            Message::ParameterStatus(body) => {
                if let (Ok(k), Ok(v)) = (body.name(), body.value()) {
                    server_params.push((k.to_string(), v.to_string()));
                }
            }
            Message::BackendKeyData(body) => key = (body.process_id(), body.secret_key()),
            Message::NoticeResponse(_) => {}
            Message::ReadyForQuery(_) => {
                return Ok(ServerConn::new(stream, addr, key, server_params, buf));
            }
            _ => {
                return Err(wire(WireError::Malformed(
                    "unexpected server message during login",
                )));
            }
        }
        if !out.is_empty() {
            stream.write_all(&out).await.map_err(|e| wire(e.into()))?;
        }
    }
}

fn sasl_mechanisms(body: &[u8]) -> impl Iterator<Item = &str> {
    body.split(|&b| b == 0)
        .take_while(|m| !m.is_empty())
        .filter_map(|m| std::str::from_utf8(m).ok())
}

/// `prefer`: ask for TLS; use it when the server says 'S', go on in plain
/// text when it says 'N' (as libpq's sslmode=prefer does).
async fn start_tls(
    mut tcp: TcpStream,
    addr: SocketAddr,
    config: &Arc<rustls::ClientConfig>,
) -> Result<PgStream, PoolError> {
    use tokio::io::AsyncReadExt;
    let wire = |source: WireError| PoolError::Wire { addr, source };
    let mut out = BytesMut::new();
    frontend::ssl_request(&mut out);
    tcp.write_all(&out).await.map_err(|e| wire(e.into()))?;
    let mut answer = [0u8; 1];
    tcp.read_exact(&mut answer)
        .await
        .map_err(|e| wire(e.into()))?;
    match answer[0] {
        b'S' => {
            let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
            let connector = tokio_rustls::TlsConnector::from(config.clone());
            let tls = connector
                .connect(name, tcp)
                .await
                .map_err(|e| PoolError::Connect {
                    addr,
                    reason: format!("TLS handshake: {e}"),
                })?;
            Ok(PgStream::ClientTls(Box::new(tls)))
        }
        b'N' => Ok(PgStream::Plain(tcp)),
        _ => Err(wire(WireError::Malformed("answer to SSLRequest"))),
    }
}
