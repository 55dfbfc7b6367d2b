//! From accept to the first ReadyForQuery: TLS negotiation, the startup
//! packet, authentication against the cluster file's verifiers (or the
//! primary's, through auth_query), and the greeting (ParameterStatus,
//! BackendKeyData). A cancel request ends here too.
//!
//! The whole login runs under `login_timeout`, so a client that connects
//! and says nothing holds a socket for that long at most.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::params::{ClientParams, REFUSED};
use crate::pg::auth::scram::{MECHANISM, ServerExchange};
use crate::pg::auth::{Secret, md5};
use crate::pg::pooler::cancel::CancelSlot;
use crate::pg::pooler::error::PoolError;
use crate::pg::pooler::pool::{Checkout, Lease, UserPool, deadline};
use crate::pg::pooler::server::{ConnectParams, connect};
use crate::pg::pooler::shared::{ClientInfo, ClientInfoInit, Pooler};
use crate::pg::pooler::stream::PgStream;
use crate::pg::wire::WireError;
use crate::pg::wire::backend::{self, sqlstate};
use crate::pg::wire::frame::{Fields, read_frame};
use crate::pg::wire::startup::{self, Startup};

/// Authentication messages are tiny; anything bigger is not a client.
const MAX_AUTH_MESSAGE: usize = 16 * 1024;
/// The admin console's virtual database.
pub const ADMIN_DATABASE: &str = "piha";

pub struct LoggedIn {
    pub stream: PgStream,
    pub buf: BytesMut,
    pub user: String,
    pub database: String,
    pub params: ClientParams,
    pub pool: Option<Arc<UserPool>>,
    pub pid: i32,
    pub cancel: Arc<CancelSlot>,
    pub info: Arc<ClientInfo>,
}

/// A login that failed: what to tell the client (FATAL), if anything.
struct Refusal {
    code: &'static str,
    text: String,
}

fn refusal(code: &'static str, text: impl Into<String>) -> Refusal {
    Refusal {
        code,
        text: text.into(),
    }
}

impl From<WireError> for Refusal {
    fn from(e: WireError) -> Refusal {
        refusal(sqlstate::PROTOCOL_VIOLATION, e.to_string())
    }
}

/// `None` when the connection ended here (a cancel, a refusal, a timeout).
pub async fn login(pooler: &Arc<Pooler>, tcp: TcpStream, peer: SocketAddr) -> Option<LoggedIn> {
    let timeout = pooler.settings.load().pg.login_timeout;
    let mut stream = PgStream::Plain(tcp);
    let result = tokio::time::timeout(timeout, negotiate(pooler, &mut stream, peer)).await;
    let refusal = match result {
        Ok(Ok(Some(done))) => return Some(done),
        Ok(Ok(None)) => return None,
        Ok(Err(r)) => r,
        Err(_) => refusal(
            sqlstate::PROTOCOL_VIOLATION,
            format!("the login did not finish within {timeout:?}"),
        ),
    };
    tracing::debug!(%peer, error = %refusal.text, "pooler login refused");
    let mut out = BytesMut::new();
    backend::fatal(&mut out, refusal.code, &refusal.text);
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), stream.write_all(&out)).await;
    None
}

async fn negotiate(
    pooler: &Arc<Pooler>,
    stream: &mut PgStream,
    peer: SocketAddr,
) -> Result<Option<LoggedIn>, Refusal> {
    // SSLRequest and GSSENCRequest may each come once before the startup.
    let (mut ssl_asked, mut gss_asked) = (false, false);
    let params = loop {
        let packet = match startup::read(stream).await {
            Ok(p) => p,
            Err(WireError::Closed) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        match packet {
            Startup::Ssl if ssl_asked => {
                return Err(refusal(
                    sqlstate::PROTOCOL_VIOLATION,
                    "SSLRequest sent twice",
                ));
            }
            Startup::GssEnc if gss_asked => {
                return Err(refusal(
                    sqlstate::PROTOCOL_VIOLATION,
                    "GSSENCRequest sent twice",
                ));
            }
            Startup::Ssl if !stream.is_tls() => match &pooler.tls {
                Some(acceptor) => {
                    write(stream, b"S").await?;
                    let PgStream::Plain(tcp) = std::mem::replace(stream, PgStream::Closed) else {
                        return Err(refusal(sqlstate::PROTOCOL_VIOLATION, "TLS requested twice"));
                    };
                    let tls = acceptor.accept(tcp).await.map_err(|e| {
                        refusal(
                            sqlstate::PROTOCOL_VIOLATION,
                            format!("TLS handshake failed: {e}"),
                        )
                    })?;
                    *stream = PgStream::ServerTls(Box::new(tls));
                }
                None => {
                    ssl_asked = true;
                    write(stream, b"N").await?
                }
            },
            // No GSSAPI here: 'N' makes libpq go on without it, as it would
            // with a PostgreSQL built without GSSAPI.
            Startup::GssEnc if !stream.is_tls() => {
                gss_asked = true;
                write(stream, b"N").await?
            }
            Startup::Ssl | Startup::GssEnc => {
                return Err(refusal(
                    sqlstate::PROTOCOL_VIOLATION,
                    "encryption requested after it was already negotiated",
                ));
            }
            Startup::Cancel { pid, secret } => {
                let outcome = pooler.cancels.cancel(pid, secret).await;
                tracing::debug!(%peer, ?outcome, "cancel request");
                return Ok(None);
            }
            Startup::Params(params) => break params,
        }
    };
    for key in REFUSED {
        if Startup::param(&params, key).is_some() {
            return Err(refusal(
                sqlstate::FEATURE_NOT_SUPPORTED,
                format!("the startup parameter \"{key}\" is not supported by the piha pooler"),
            ));
        }
    }
    let user = Startup::param(&params, "user")
        .filter(|u| !u.is_empty())
        .ok_or_else(|| {
            refusal(
                sqlstate::INVALID_AUTHORIZATION,
                "no PostgreSQL user name specified in startup packet",
            )
        })?
        .to_string();
    let database = Startup::param(&params, "database")
        .filter(|d| !d.is_empty())
        .unwrap_or(&user)
        .to_string();
    if user.len() > 63 || database.len() > 63 {
        return Err(refusal(
            sqlstate::INVALID_AUTHORIZATION,
            "user and database names are at most 63 bytes",
        ));
    }

    let mut buf = BytesMut::new();
    let secret = lookup_secret(pooler, &user, &database).await;
    let keys = authenticate(stream, &mut buf, &user, secret).await?;

    let admin = database == ADMIN_DATABASE;
    let pool = if admin {
        None
    } else {
        let pool = pooler.pool(&database, &user);
        if let Some(keys) = keys {
            if let Ok(mut c) = pool.credentials.lock() {
                c.scram = Some(keys);
            }
        }
        Some(pool)
    };
    let client_params = ClientParams::from_startup(&params);
    let server_params = match &pool {
        Some(pool) => greeting_params(pooler, pool).await?,
        None => vec![
            (
                "server_version".to_string(),
                "15.0 (piha admin console)".to_string(),
            ),
            ("client_encoding".to_string(), "UTF8".to_string()),
            ("server_encoding".to_string(), "UTF8".to_string()),
        ],
    };
    let (pid, cancel) = pooler.cancels.register();
    let mut out = BytesMut::with_capacity(512);
    backend::auth_ok(&mut out);
    for (k, v) in &server_params {
        let value = client_params.get(&k.to_ascii_lowercase()).unwrap_or(v);
        backend::parameter_status(&mut out, k, value);
    }
    backend::backend_key_data(&mut out, pid, cancel.secret);
    backend::ready_for_query(&mut out, b'I');
    if let Err(e) = stream.write_all(&out).await {
        pooler.cancels.unregister(pid);
        return Err(WireError::from(e).into());
    }
    let info = pooler.add_client(ClientInfoInit {
        user: user.clone(),
        database: database.clone(),
        addr: peer,
        application_name: client_params
            .get("application_name")
            .cloned()
            .unwrap_or_default(),
        tls: stream.is_tls(),
        pid,
        local: stream.local_addr(),
    });
    let stream = std::mem::replace(stream, PgStream::Closed);
    Ok(Some(LoggedIn {
        stream,
        buf,
        user,
        database,
        params: client_params,
        pool,
        pid,
        cancel,
        info,
    }))
}

async fn write(stream: &mut PgStream, bytes: &[u8]) -> Result<(), Refusal> {
    stream
        .write_all(bytes)
        .await
        .map_err(|e| WireError::from(e).into())
}

/// The user's stored secret: the cluster file first, then (for the admin
/// console) the service login's own keys, then auth_query.
async fn lookup_secret(pooler: &Pooler, user: &str, database: &str) -> Option<Secret> {
    let settings = pooler.settings.load();
    if let Some(u) = settings.users.get(user) {
        return Some(u.secret.clone());
    }
    if database == ADMIN_DATABASE && user == settings.service_user {
        // The operator logs in to the console with the service user's
        // password; the verifier follows from the keys the file holds.
        if let Some(keys) = &settings.service_keys {
            return Some(Secret::Scram(keys.verifier()));
        }
    }
    let query = settings.pg.auth_query.as_ref()?;
    super::super::auth_query::lookup(pooler, query, user).await
}

/// Runs the exchange the secret calls for. Returns the client's SCRAM keys
/// (for passthrough to PostgreSQL) when it used SCRAM.
async fn authenticate(
    stream: &mut PgStream,
    buf: &mut BytesMut,
    user: &str,
    secret: Option<Secret>,
) -> Result<Option<crate::pg::auth::ScramKeys>, Refusal> {
    let failed = || {
        refusal(
            sqlstate::INVALID_PASSWORD,
            format!("password authentication failed for user \"{user}\""),
        )
    };
    let mut out = BytesMut::new();
    match secret {
        Some(Secret::Md5(hash)) => {
            let salt = md5::salt();
            backend::auth_md5(&mut out, salt);
            write(stream, &out).await?;
            let answer = read_password(stream, buf).await?;
            let text = answer.strip_suffix(&[0]).unwrap_or(&answer);
            if md5::check(&hash, salt, text) {
                Ok(None)
            } else {
                Err(failed())
            }
        }
        scram => {
            // An unknown user goes through a SCRAM exchange that fails at
            // the end, so the answer does not tell which users exist.
            let verifier = match scram {
                Some(Secret::Scram(v)) => Some(v),
                _ => None,
            };
            let mut exchange = ServerExchange::new(verifier);
            backend::auth_sasl(&mut out, MECHANISM);
            write(stream, &out).await?;
            let initial = read_password(stream, buf).await?;
            let mut f = Fields::new(&initial);
            let mechanism = f.cstr()?;
            if mechanism != MECHANISM {
                return Err(refusal(
                    sqlstate::PROTOCOL_VIOLATION,
                    format!("SASL mechanism \"{mechanism}\" is not supported; use {MECHANISM}"),
                ));
            }
            let len = f.i32()?;
            let data = f.rest();
            if len < 0 || len as usize != data.len() {
                return Err(WireError::Malformed("SASLInitialResponse (length)").into());
            }
            let first = exchange
                .client_first(data)
                .map_err(|e| refusal(sqlstate::PROTOCOL_VIOLATION, e.to_string()))?;
            out.clear();
            backend::auth_sasl_continue(&mut out, first.as_bytes());
            write(stream, &out).await?;
            let response = read_password(stream, buf).await?;
            let success = exchange.client_final(&response).map_err(|e| match e {
                crate::pg::auth::scram::ScramError::Rejected => failed(),
                other => refusal(sqlstate::PROTOCOL_VIOLATION, other.to_string()),
            })?;
            out.clear();
            backend::auth_sasl_final(&mut out, success.server_final.as_bytes());
            write(stream, &out).await?;
            Ok(Some(success.keys))
        }
    }
}

/// Reads one PasswordMessage / SASL response ('p') and returns its body.
async fn read_password(stream: &mut PgStream, buf: &mut BytesMut) -> Result<Vec<u8>, Refusal> {
    let frame = read_frame(stream, buf, MAX_AUTH_MESSAGE).await?;
    let msg = buf.split_to(frame.len);
    if frame.tag != b'p' {
        return Err(refusal(
            sqlstate::PROTOCOL_VIOLATION,
            format!(
                "expected a password message during authentication, got message type '{}'",
                frame.tag as char
            ),
        ));
    }
    Ok(msg[5..].to_vec())
}

/// The ParameterStatus values a client sees at login: those of a real
/// server of its pool (learned once per pool), opened like every other with
/// none of a client's settings, so they are also the pool's baseline.
///
/// Any server of the cluster will do, so a server that cannot be reached
/// is not the client's problem: after a primary dies and before the prober
/// has noticed (a few seconds), the router still names it, and a new pool
/// learns from a standby instead of refusing the login.
async fn greeting_params(
    pooler: &Pooler,
    pool: &Arc<UserPool>,
) -> Result<Vec<(String, String)>, Refusal> {
    let known = pool
        .server_params
        .lock()
        .map(|p| p.clone())
        .unwrap_or_default();
    if !known.is_empty() {
        return Ok(known);
    }
    let candidates = pooler.answering_once_probed().await;
    let mut last_error = None;
    for (i, backend) in candidates.iter().enumerate() {
        let last = i + 1 == candidates.len();
        let timeout = pooler.attempt_timeout(last);
        match learn_params(pooler, pool, backend.addr, timeout).await {
            Ok(params) => return Ok(params),
            Err(e) if e.server_unavailable() && !last => {
                tracing::warn!(
                    server = %backend.name, error = %e,
                    "pooler: no greeting for a new pool of {}@{}; trying the next server",
                    pool.user, pool.database
                );
                last_error = Some(e);
            }
            Err(e) => return Err(greeting_refusal(e)),
        }
    }
    Err(match last_error {
        Some(e) => greeting_refusal(e),
        None => refusal(
            sqlstate::CANNOT_CONNECT_NOW,
            "no PostgreSQL server is available right now",
        ),
    })
}

/// What the client is told when no server greeted: PostgreSQL's own
/// refusals of the login as they are, anything else "try again later".
fn greeting_refusal(e: PoolError) -> Refusal {
    Refusal {
        code: match e.sqlstate() {
            s if s == sqlstate::INVALID_PASSWORD => sqlstate::INVALID_PASSWORD,
            s if s == sqlstate::TOO_MANY_CONNECTIONS => sqlstate::TOO_MANY_CONNECTIONS,
            _ => sqlstate::CANNOT_CONNECT_NOW,
        },
        text: e.to_string(),
    }
}

/// Leases (or opens) a connection of `pool` to the server at `addr`, keeps
/// its ParameterStatus values as the pool's greeting and baseline, and
/// gives it back.
async fn learn_params(
    pooler: &Pooler,
    pool: &Arc<UserPool>,
    addr: SocketAddr,
    timeout: std::time::Duration,
) -> Result<Vec<(String, String)>, PoolError> {
    let settings = pooler.settings.load();
    let now = std::time::Instant::now();
    let checkout = Checkout {
        addr,
        now,
        wait_timeout: settings.pg.wait_timeout,
        deadline: deadline(now, settings.pg.wait_timeout),
        lifetime: settings.pg.server_lifetime,
        queue: &pooler.pools.queue,
        canceled: None,
    };
    let conn = match pool.checkout(&checkout).await? {
        Lease::Ready(conn) => conn,
        Lease::Open => {
            let opened = connect(ConnectParams {
                addr,
                user: &pool.user,
                database: &pool.database,
                startup: &[],
                credentials: &pool.credentials(),
                timeout,
                tls: pooler.server_tls.as_ref(),
                tcp_user_timeout: settings.pg.tcp_user_timeout,
            })
            .await;
            match opened {
                Ok(conn) => {
                    pool.opened(addr);
                    conn
                }
                Err(e) => {
                    pool.open_failed(addr);
                    return Err(e);
                }
            }
        }
    };
    let params: Vec<(String, String)> = conn
        .params()
        .iter()
        .map(|(k, v)| (canonical_name(k), v.clone()))
        .collect();
    if let Ok(mut p) = pool.server_params.lock() {
        *p = params.clone();
    }
    if let Ok(mut b) = pool.baseline.lock() {
        *b = Arc::new(conn.params().clone());
    }
    pool.checkin(conn, settings.pg.server_lifetime, std::time::Instant::now());
    Ok(params)
}

/// ParameterStatus names as PostgreSQL spells them (we store lower case).
fn canonical_name(lower: &str) -> String {
    match lower {
        "datestyle" => "DateStyle",
        "intervalstyle" => "IntervalStyle",
        "timezone" => "TimeZone",
        other => other,
    }
    .to_string()
}
