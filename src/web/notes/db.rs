//! The notes app's few PostgreSQL connections: made on demand, kept while
//! they work, and thrown away together when one breaks (after a VIP move or
//! a failover every idle one is as dead as the one that failed).
//!
//! Statements go through tokio-postgres' `query_typed`: unnamed statements
//! sent with their parameters in one round trip, so no prepared statement
//! has to survive a change of server behind the pooler.

use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, NoTls, Row};

/// Connections per web node: a Pi's share of the pooler's clients.
pub const MAX_CONNECTIONS: usize = 4;
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a request waits for one of the connections to be free.
const SLOT_TIMEOUT: Duration = Duration::from_secs(5);

const CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS piha_notes (\
    id bigint PRIMARY KEY, \
    text text NOT NULL, \
    node text NOT NULL, \
    created_at timestamptz NOT NULL DEFAULT now())";

/// Every statement answers these columns, so one reader serves them all.
/// `inet_server_addr()` is stable: the pooler lets a read that calls it go
/// to a standby (`pg_is_in_recovery()`, volatile, would send it to the
/// primary).
pub const INSERT: &str = "INSERT INTO piha_notes (id, text, node) VALUES ($1, $2, $3) \
    ON CONFLICT (id) DO NOTHING \
    RETURNING id, text, node, created_at, inet_server_addr()";
/// A plain read: the pooler sends it to a standby.
pub const GET: &str =
    "SELECT id, text, node, created_at, inet_server_addr() FROM piha_notes WHERE id = $1";
/// The same on the primary, by the pooler's hint: what a standby that has
/// not replayed a note yet cannot answer.
pub const GET_ON_PRIMARY: &str = "/* piha:primary */ \
    SELECT id, text, node, created_at, inet_server_addr() FROM piha_notes WHERE id = $1";
pub const LIST: &str = "SELECT id, text, node, created_at, inet_server_addr() FROM piha_notes \
    WHERE id > $1 ORDER BY id LIMIT $2";
pub const LIST_ON_PRIMARY: &str = "/* piha:primary */ \
    SELECT id, text, node, created_at, inet_server_addr() FROM piha_notes \
    WHERE id > $1 ORDER BY id LIMIT $2";

/// One row of `piha_notes`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub id: i64,
    pub text: String,
    /// The web node that inserted it.
    pub node: String,
    pub created_at: SystemTime,
}

/// What a statement answered, and which PostgreSQL answered it (`None`
/// when it returned no row, or over a Unix socket).
#[derive(Debug)]
pub struct Rows {
    pub notes: Vec<Note>,
    pub server: Option<IpAddr>,
}

/// A statement's parameters, owned so that a retry can send them again.
pub enum Params<'a> {
    Id(i64),
    Insert {
        id: i64,
        text: &'a str,
        node: &'a str,
    },
    Page {
        after: i64,
        limit: i64,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DbError {
    /// No answer to be had now: cannot connect, no server behind the
    /// pooler, timed out, or the connection broke twice.
    #[error("{0}")]
    Unavailable(String),
    /// The server refused the statement itself (`code` is the SQLSTATE).
    #[error("{message} (SQLSTATE {code})")]
    Query { code: String, message: String },
}

/// The pool. Cheap to share behind the app's `Arc`.
pub struct Db {
    config: tokio_postgres::Config,
    target: SocketAddr,
    idle: Mutex<Vec<Conn>>,
    slots: Semaphore,
    /// Set once `CREATE TABLE IF NOT EXISTS` went through, so the
    /// statement is sent once per pool, not per request.
    table_ready: AtomicBool,
}

/// A connection and the task that drives it; dropping it ends both.
struct Conn {
    client: Client,
    task: JoinHandle<()>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// How one try of a statement went.
enum Failure {
    /// The connection is gone (reset, closed, the pooler lost the server
    /// mid-statement): worth once more on a fresh one.
    Broken(String),
    /// Trying again now would not help.
    Unavailable(String),
    Query {
        code: String,
        message: String,
    },
}

impl Db {
    pub fn new(target: SocketAddr, database: &str, user: &str, password: &str) -> Db {
        let mut config = tokio_postgres::Config::new();
        config
            .hostaddr(target.ip())
            .port(target.port())
            .dbname(database)
            .user(user)
            .password(password)
            .application_name("piha-notes")
            .connect_timeout(CONNECT_TIMEOUT)
            // A server that vanished without a reset fails the next write
            // within this rather than after the kernel's 15 minutes.
            .tcp_user_timeout(QUERY_TIMEOUT);
        Db {
            config,
            target,
            idle: Mutex::new(Vec::new()),
            slots: Semaphore::new(MAX_CONNECTIONS),
            table_ready: AtomicBool::new(false),
        }
    }

    /// Runs one statement. A connection that broke under it is replaced
    /// and the statement sent once more: every statement here is a read or
    /// an insert that is idempotent by id, so a second run is safe.
    pub async fn query(&self, sql: &str, params: &Params<'_>) -> Result<Rows, DbError> {
        let _slot = match tokio::time::timeout(SLOT_TIMEOUT, self.slots.acquire()).await {
            Ok(Ok(permit)) => permit,
            Ok(Err(_)) => return Err(DbError::Unavailable("the app is stopping".into())),
            Err(_) => {
                return Err(DbError::Unavailable(format!(
                    "all {MAX_CONNECTIONS} database connections stayed busy for {}s",
                    SLOT_TIMEOUT.as_secs()
                )));
            }
        };
        let mut conn = match self.take_idle() {
            Some(conn) => conn,
            None => self.connect().await?,
        };
        for attempt in 0..2 {
            match self.attempt(&conn, sql, params).await {
                Ok(rows) => {
                    self.put_back(conn);
                    return Ok(rows);
                }
                Err(Failure::Broken(why)) if attempt == 0 => {
                    tracing::info!(
                        "notes: connection to {} broke ({why}); once more on a new one",
                        self.target
                    );
                    drop(conn);
                    self.idle_lock().clear();
                    conn = self.connect().await?;
                }
                Err(Failure::Broken(why) | Failure::Unavailable(why)) => {
                    return Err(DbError::Unavailable(why));
                }
                Err(Failure::Query { code, message }) => {
                    if code == SqlState::UNDEFINED_TABLE.code() {
                        self.table_ready.store(false, Ordering::Relaxed);
                    }
                    self.put_back(conn);
                    return Err(DbError::Query { code, message });
                }
            }
        }
        Err(DbError::Unavailable("retry budget spent".into()))
    }

    /// The table first if it is not known to exist, then the statement,
    /// each within [`QUERY_TIMEOUT`].
    async fn attempt(&self, conn: &Conn, sql: &str, params: &Params<'_>) -> Result<Rows, Failure> {
        if !self.table_ready.load(Ordering::Relaxed) {
            match self.create_table(conn).await {
                Ok(()) => self.table_ready.store(true, Ordering::Relaxed),
                Err(broken @ (Failure::Broken(_) | Failure::Unavailable(_))) => return Err(broken),
                // A primary that is read-only for now refuses even a
                // CREATE that would do nothing: the statement says whether
                // the table is there.
                Err(Failure::Query { code, message }) => {
                    tracing::debug!("notes: creating the table: {message} ({code})");
                }
            }
        }
        let run = async {
            let client = &conn.client;
            match params {
                Params::Id(id) => client.query_typed(sql, &[(id, Type::INT8)]).await,
                Params::Insert { id, text, node } => {
                    let p: [(&(dyn ToSql + Sync), Type); 3] =
                        [(id, Type::INT8), (text, Type::TEXT), (node, Type::TEXT)];
                    client.query_typed(sql, &p).await
                }
                Params::Page { after, limit } => {
                    client
                        .query_typed(sql, &[(after, Type::INT8), (limit, Type::INT8)])
                        .await
                }
            }
        };
        let rows = bounded(run).await?;
        read_rows(&rows)
    }

    /// Four nodes starting at once all find the table missing; PostgreSQL
    /// then lets all but one fail on the catalog's unique index (or with
    /// "already exists"). The table is there after that, which a second
    /// try confirms.
    async fn create_table(&self, conn: &Conn) -> Result<(), Failure> {
        for _ in 0..2 {
            match bounded(conn.client.batch_execute(CREATE_TABLE)).await {
                Err(Failure::Query { code, .. })
                    if code == SqlState::UNIQUE_VIOLATION.code()
                        || code == SqlState::DUPLICATE_TABLE.code() =>
                {
                    continue;
                }
                other => return other,
            }
        }
        Ok(())
    }

    async fn connect(&self) -> Result<Conn, DbError> {
        let target = self.target;
        match tokio::time::timeout(CONNECT_TIMEOUT, self.config.connect(NoTls)).await {
            Err(_) => Err(DbError::Unavailable(format!(
                "no connection to {target} within {}s",
                CONNECT_TIMEOUT.as_secs()
            ))),
            Ok(Err(e)) => Err(DbError::Unavailable(format!(
                "cannot connect to {target}: {}",
                describe(&e)
            ))),
            Ok(Ok((client, connection))) => {
                let task = tokio::spawn(async move {
                    if let Err(e) = connection.await {
                        tracing::debug!("notes: connection to {target} ended: {e}");
                    }
                });
                Ok(Conn { client, task })
            }
        }
    }

    fn take_idle(&self) -> Option<Conn> {
        let mut idle = self.idle_lock();
        while let Some(conn) = idle.pop() {
            if !conn.client.is_closed() {
                return Some(conn);
            }
        }
        None
    }

    fn put_back(&self, conn: Conn) {
        if conn.client.is_closed() {
            return;
        }
        let mut idle = self.idle_lock();
        if idle.len() < MAX_CONNECTIONS {
            idle.push(conn);
        }
    }

    fn idle_lock(&self) -> std::sync::MutexGuard<'_, Vec<Conn>> {
        // Nothing panics while holding it; a poisoned list is still a list.
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A call on a connection within [`QUERY_TIMEOUT`], its error sorted.
async fn bounded<T>(
    call: impl Future<Output = Result<T, tokio_postgres::Error>>,
) -> Result<T, Failure> {
    match tokio::time::timeout(QUERY_TIMEOUT, call).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(sort(&e)),
        // The statement may still be running; the connection is dropped
        // with it. Not retried: the request has waited long enough.
        Err(_) => Err(Failure::Unavailable(format!(
            "no answer within {}s",
            QUERY_TIMEOUT.as_secs()
        ))),
    }
}

/// Which failures a fresh connection may cure.
fn sort(e: &tokio_postgres::Error) -> Failure {
    let Some(db) = e.as_db_error() else {
        // No server message: the socket closed or failed, or the answer
        // could not be read. A new connection starts clean.
        return Failure::Broken(describe(e));
    };
    let code = db.code();
    let message = db.message().to_owned();
    // Class 08 (the pooler lost the server under the statement), a server
    // shutting down, or a primary turned read-only (fenced, or demoted in a
    // switchover): a new connection gets a new server.
    if code.code().starts_with("08")
        || *code == SqlState::ADMIN_SHUTDOWN
        || *code == SqlState::CRASH_SHUTDOWN
        || *code == SqlState::READ_ONLY_SQL_TRANSACTION
    {
        return Failure::Broken(format!("{message} ({})", code.code()));
    }
    // No server to be had (57P03), or too many clients (53300): at once
    // again would get the same answer.
    if *code == SqlState::CANNOT_CONNECT_NOW || code.code().starts_with("53") {
        return Failure::Unavailable(format!("{message} ({})", code.code()));
    }
    Failure::Query {
        code: code.code().to_owned(),
        message,
    }
}

/// One line for a log or an answer: the server's message if there is one,
/// else the error and its causes.
fn describe(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!("{} ({})", db.message(), db.code().code());
    }
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

fn read_rows(rows: &[Row]) -> Result<Rows, Failure> {
    let mut notes = Vec::with_capacity(rows.len());
    let mut server = None;
    for row in rows {
        let note = (|| {
            server = row.try_get::<_, Option<IpAddr>>(4)?;
            Ok::<_, tokio_postgres::Error>(Note {
                id: row.try_get(0)?,
                text: row.try_get(1)?,
                node: row.try_get(2)?,
                created_at: row.try_get(3)?,
            })
        })();
        notes.push(note.map_err(|e| Failure::Query {
            code: String::new(),
            message: format!("unexpected row: {e}"),
        })?);
    }
    Ok(Rows { notes, server })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The router must send the plain reads to a standby and everything
    /// else to the primary; this is what the app's correctness rests on.
    #[test]
    fn the_pooler_routes_the_statements_as_intended() {
        use crate::pg::pooler::route::{FunctionCache, Target, classify};
        let no_catalog = FunctionCache::default();
        let target = |sql| classify(sql, &no_catalog).target;
        assert_eq!(target(GET), Target::Standby);
        assert_eq!(target(LIST), Target::Standby);
        assert_eq!(target(GET_ON_PRIMARY), Target::Primary);
        assert_eq!(target(LIST_ON_PRIMARY), Target::Primary);
        assert_eq!(target(INSERT), Target::Primary);
        assert_eq!(target(CREATE_TABLE), Target::Primary);
    }

    #[tokio::test]
    async fn nothing_listening_is_unavailable_quickly() {
        // Bind then drop: a loopback port with no listener refuses at once.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap();
        let db = Db::new(SocketAddr::from(([127, 0, 0, 1], port)), "app", "app", "pw");
        let started = std::time::Instant::now();
        match db.query(GET, &Params::Id(1)).await {
            Err(DbError::Unavailable(why)) => {
                assert!(why.contains("cannot connect to 127.0.0.1"), "{why}")
            }
            other => panic!("{other:?}"),
        }
        assert!(started.elapsed() < CONNECT_TIMEOUT);
    }
}
