//! One logged-in server connection and what the pooler knows about its
//! session: which of the pooler's statements are prepared on it, whether a
//! client left state behind (dirty), the GUC values PostgreSQL reported.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use postgres_protocol::message::frontend;
use tokio::io::AsyncWriteExt;

use crate::pg::pooler::client::params::{ClientParams, SyncMark};
use crate::pg::pooler::error::PoolError;
use crate::pg::pooler::relay::Relay;
use crate::pg::pooler::stream::PgStream;
use crate::pg::wire::WireError;
use crate::pg::wire::backend::error_fields;
use crate::pg::wire::frame::{Fields, read_frame};

/// Statements the pooler keeps prepared per server connection; beyond it
/// the least recently used one is closed. PgBouncer's default is 200.
pub const MAX_PREPARED: usize = 256;

/// Bound for the pooler's own queries (reset, parameter sync, probes):
/// their answers are a few rows.
const MAX_INTERNAL_MESSAGE: usize = 1024 * 1024;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// A row of a simple query's result, as text.
pub type Row = Vec<Option<String>>;

/// Always handled as `Box<ServerConn>`: it is a few hundred bytes, and a
/// lease moves it through checkout, the session and checkin a dozen times
/// per transaction; by value those moves were 9 % of the pooler's
/// instructions (memcpy, scripts/profile-pooler). One allocation per
/// connection instead.
pub struct ServerConn {
    pub stream: PgStream,
    /// Bytes read from the server and not yet handled.
    pub buf: BytesMut,
    pub addr: SocketAddr,
    /// For SHOW SERVERS and logs.
    pub id: u64,
    /// BackendKeyData: what a CancelRequest for this connection must carry.
    pub pid: i32,
    pub secret: i32,
    /// ParameterStatus values as PostgreSQL last reported them (lower-case
    /// names), to tell whether a client's settings need a SET.
    params: HashMap<String, String>,
    /// The client settings `params` were last found to match; cleared by
    /// every change to `params`.
    synced: Option<SyncMark>,
    /// Pooler statement ids prepared here, with a use counter for LRU.
    pub prepared: HashMap<u64, u64>,
    use_clock: u64,
    /// A client did something that outlives its transaction: reset before
    /// anyone else gets this connection.
    pub dirty: bool,
    /// Transaction status of the last ReadyForQuery ('I', 'T' or 'E').
    pub tx_status: u8,
    /// What the leased client sent here that is still owed an answer. It
    /// lives with the connection, not the lease, so its queue is allocated
    /// once per connection; a connection goes back to the pool only when
    /// nothing is owed, so the next client finds it empty.
    pub relay: Relay,
    pub created: Instant,
    pub last_used: Instant,
    /// This end of the connection, and whether it is TLS (SHOW SERVERS).
    pub local: Option<SocketAddr>,
    pub tls: bool,
}

impl ServerConn {
    pub fn new(
        stream: PgStream,
        addr: SocketAddr,
        (pid, secret): (i32, i32),
        params: Vec<(String, String)>,
        buf: BytesMut,
    ) -> Box<ServerConn> {
        let now = Instant::now();
        let local = stream.local_addr();
        let tls = stream.is_tls();
        Box::new(ServerConn {
            local,
            tls,
            stream,
            buf,
            addr,
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            pid,
            secret,
            params: params
                .into_iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v))
                .collect(),
            synced: None,
            prepared: HashMap::new(),
            use_clock: 0,
            dirty: false,
            tx_status: b'I',
            relay: Relay::default(),
            created: now,
            last_used: now,
        })
    }

    pub fn has_prepared(&mut self, id: u64) -> bool {
        self.use_clock += 1;
        match self.prepared.get_mut(&id) {
            Some(used) => {
                *used = self.use_clock;
                true
            }
            None => false,
        }
    }

    /// Records a statement as prepared; returns one to close if over the
    /// bound.
    pub fn add_prepared(&mut self, id: u64) -> Option<u64> {
        self.use_clock += 1;
        self.prepared.insert(id, self.use_clock);
        if self.prepared.len() <= MAX_PREPARED {
            return None;
        }
        let (&oldest, _) = self
            .prepared
            .iter()
            .filter(|(k, _)| **k != id)
            .min_by_key(|(_, used)| **used)?;
        self.prepared.remove(&oldest);
        Some(oldest)
    }

    /// Runs one simple query of the pooler's own and returns its rows.
    /// Any ErrorResponse becomes `Err` (after reading up to ReadyForQuery,
    /// so the connection stays usable); ParameterStatus updates `params`.
    pub async fn simple_query(
        &mut self,
        sql: &str,
        timeout: Duration,
    ) -> Result<Vec<Row>, PoolError> {
        let addr = self.addr;
        match tokio::time::timeout(timeout, self.simple_query_inner(sql)).await {
            Ok(r) => r,
            Err(_) => Err(PoolError::Timeout {
                addr,
                what: "the pooler's own query",
            }),
        }
    }

    async fn simple_query_inner(&mut self, sql: &str) -> Result<Vec<Row>, PoolError> {
        let addr = self.addr;
        let wire = |source: WireError| PoolError::Wire { addr, source };
        let mut out = BytesMut::new();
        frontend::query(sql, &mut out).map_err(|e| wire(WireError::Io(e)))?;
        self.stream
            .write_all(&out)
            .await
            .map_err(|e| wire(e.into()))?;
        let mut rows = Vec::new();
        let mut failure = None;
        loop {
            let frame = read_frame(&mut self.stream, &mut self.buf, MAX_INTERNAL_MESSAGE)
                .await
                .map_err(wire)?;
            let msg = self.buf.split_to(frame.len);
            let body = &msg[5..];
            match frame.tag {
                b'D' => rows.push(data_row(body).map_err(wire)?),
                b'E' => {
                    let (code, message) = error_fields(body);
                    failure = Some(PoolError::Login {
                        addr,
                        code,
                        message,
                    });
                }
                b'S' => self.note_parameter(body),
                b'Z' => {
                    self.tx_status = body.first().copied().unwrap_or(b'I');
                    return match failure {
                        Some(e) => Err(e),
                        None => Ok(rows),
                    };
                }
                // RowDescription, CommandComplete, notices, notifications.
                _ => {}
            }
        }
    }

    /// Records a ParameterStatus message body.
    pub fn note_parameter(&mut self, body: &[u8]) {
        let mut f = Fields::new(body);
        if let (Ok(k), Ok(v)) = (f.cstr(), f.cstr()) {
            self.params.insert(k.to_ascii_lowercase(), v.to_string());
            self.synced = None;
        }
    }

    /// The settings PostgreSQL reported for this connection.
    pub fn params(&self) -> &HashMap<String, String> {
        &self.params
    }

    /// After DISCARD ALL: every setting is back at the pool's baseline
    /// (when the pool has learned it), and no client's settings are in place.
    pub fn reset_params(&mut self, baseline: &HashMap<String, String>) {
        if !baseline.is_empty() {
            self.params = baseline.clone();
        }
        self.synced = None;
    }

    /// Whether this connection is known to match `client` over
    /// `baseline` already (no comparison needed).
    pub fn is_synced_to(
        &self,
        client: &ClientParams,
        baseline: &Arc<HashMap<String, String>>,
    ) -> bool {
        self.synced
            .as_ref()
            .is_some_and(|m| m.matches(client, baseline))
    }

    /// Records that `client`'s settings are in place, after the SETs
    /// `sync_sql` asked for (if any) ran.
    pub fn synced_to(
        &mut self,
        client: &ClientParams,
        baseline: &Arc<HashMap<String, String>>,
        set: bool,
    ) {
        if set {
            client.apply_to(&mut self.params, baseline);
        }
        self.synced = Some(client.mark(baseline));
    }

    /// Says goodbye; errors do not matter, the socket closes either way.
    pub async fn terminate(mut self: Box<Self>) {
        let mut out = BytesMut::new();
        frontend::terminate(&mut out);
        let _ = tokio::time::timeout(Duration::from_millis(200), self.stream.write_all(&out)).await;
    }
}

fn data_row(body: &[u8]) -> Result<Row, WireError> {
    let mut f = Fields::new(body);
    let n = f.i16()?;
    let mut row = Vec::with_capacity(n.max(0) as usize);
    for _ in 0..n {
        let len = f.i32()?;
        if len < 0 {
            row.push(None);
            continue;
        }
        let rest = f.rest();
        let len = len as usize;
        if rest.len() < len {
            return Err(WireError::Malformed(
                "DataRow (value longer than the message)",
            ));
        }
        row.push(Some(String::from_utf8_lossy(&rest[..len]).into_owned()));
        f = Fields::new(&rest[len..]);
    }
    Ok(row)
}
