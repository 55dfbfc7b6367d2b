//! One client's life after login: read a request, route it, lease a server
//! connection, relay until the transaction (or, in session mode, the
//! client) ends, give the server back clean. See ../LIFECYCLE.md.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use tokio::io::AsyncWriteExt;

use super::login::LoggedIn;
use super::params::{ClientParams, is_server_only};
use crate::config::PoolMode;
use crate::pg::pooler::backends::{Backend, parse_lsn};
use crate::pg::pooler::cancel::{CancelSlot, LeaseKey};
use crate::pg::pooler::error::PoolError;
use crate::pg::pooler::pool::{Checkout, Lease, ServerView, UserPool, deadline};
use crate::pg::pooler::prepared::{
    ClientStatements, MAX_PER_CLIENT, deallocate_target, drops_all_statements,
};
use crate::pg::pooler::relay::{Effects, Pending, Verdict};
use crate::pg::pooler::route::{Classified, Target};
use crate::pg::pooler::server::{ConnectParams, ServerConn, connect};
use crate::pg::pooler::settings::PoolerSettings;
use crate::pg::pooler::shared::{ClientInfo, Pooler};
use crate::pg::pooler::stream::PgStream;
use crate::pg::wire::WireError;
use crate::pg::wire::backend::{self, sqlstate};
use crate::pg::wire::frame::{Frame, fill, peek};
use crate::pg::wire::frontend::{self as fe};

/// A batch buffered before routing may grow to this before it is sent to
/// the primary as it is (a client streaming Binds without a Sync).
const MAX_BATCH: usize = 1024 * 1024;
/// A server statement name no client statement ever has: closing it is how
/// a client's Close gets its CloseComplete in order from the server.
const NO_STATEMENT: &str = "piha_closed";
/// Read size on the client side: what an idle client's buffer holds.
const CLIENT_CHUNK: usize = 2 * 1024;
/// Read size on the server side, where result sets arrive.
const SERVER_CHUNK: usize = 16 * 1024;
/// Buffers that grew past this for one big message are let go afterwards,
/// so one large COPY does not pin memory for the life of the connection.
const KEEP_BUFFER: usize = 64 * 1024;

/// The server connection a client holds.
struct Leased {
    conn: Box<ServerConn>,
    backend: Arc<Backend>,
    since: Instant,
    /// Leased for the primary: the client may have written.
    primary: bool,
    /// Extended-protocol messages sent since the last Sync: not a point
    /// where the server may be given back.
    open_batch: bool,
    /// When the request now running was sent (SHOW STATS' query time).
    query_started: Option<Instant>,
}

/// Counts a client as about to hold a server connection while it gets one,
/// so PAUSE cannot miss a lease in flight.
struct Leasing(Arc<UserPool>);

impl Drop for Leasing {
    fn drop(&mut self) {
        self.0.leasing.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Counts a client as waiting, while it waits for a server that can take
/// its request, the way a pool's queue counts its waiters.
struct QueueWait<'a> {
    pooler: &'a Pooler,
    pool: &'a UserPool,
}

impl<'a> QueueWait<'a> {
    /// Joins the wait, or refuses it when `max_wait_clients` wait already.
    fn join(pooler: &'a Pooler, pool: &'a UserPool) -> Result<QueueWait<'a>, PoolError> {
        let queue = &pooler.pools.queue;
        if queue.waiting.fetch_add(1, Ordering::Relaxed) >= queue.max {
            queue.waiting.fetch_sub(1, Ordering::Relaxed);
            return Err(PoolError::QueueFull(queue.max));
        }
        pool.waiting.fetch_add(1, Ordering::Relaxed);
        Ok(QueueWait { pooler, pool })
    }
}

impl Drop for QueueWait<'_> {
    fn drop(&mut self) {
        self.pooler
            .pools
            .queue
            .waiting
            .fetch_sub(1, Ordering::Relaxed);
        self.pool.waiting.fetch_sub(1, Ordering::Relaxed);
    }
}

/// How often a request that no server can take looks again, besides at
/// once when the prober reports a change: a server found dead by a failed
/// connect is still named until `fall` probes failed, and a fence set by
/// the failover decider brings no report.
const RETRY_EVERY: Duration = Duration::from_millis(250);

/// Why the session ends.
enum End {
    /// Terminate, or the client closed.
    Client,
    /// Told the client (FATAL) already, or it is gone.
    Failed(String),
}

struct Session {
    pooler: Arc<Pooler>,
    pool: Arc<UserPool>,
    mode: PoolMode,
    client: PgStream,
    /// Client bytes not handled yet.
    cbuf: BytesMut,
    /// To the client.
    out: BytesMut,
    /// To the server.
    sout: BytesMut,
    params: ClientParams,
    statements: ClientStatements,
    lease: Option<Leased>,
    cancel: Arc<CancelSlot>,
    pid: i32,
    info: Arc<ClientInfo>,
    max_message: usize,
    /// Read-your-writes: the primary's WAL position after this client's
    /// last write; reads go only to standbys that have replayed past it.
    write_lsn: u64,
    /// A request failed before reaching a server while the client had not
    /// sent Sync yet: drop its messages up to Sync, then answer
    /// ReadyForQuery.
    discard_until_sync: bool,
}

pub async fn run(pooler: Arc<Pooler>, c: LoggedIn) {
    let LoggedIn {
        stream,
        buf,
        params,
        pool,
        pid,
        cancel,
        info,
        ..
    } = c;
    let Some(pool) = pool else {
        crate::pg::pooler::admin::serve(&pooler, stream, buf, &info).await;
        pooler.cancels.unregister(pid);
        pooler.remove_client(info.id);
        return;
    };
    pool.clients.fetch_add(1, Ordering::Relaxed);
    let settings = pooler.settings.load();
    let mut s = Session {
        mode: pool.mode,
        max_message: settings.pg.max_message_bytes as usize,
        pooler: pooler.clone(),
        pool: pool.clone(),
        client: stream,
        cbuf: buf,
        out: BytesMut::new(),
        sout: BytesMut::new(),
        params,
        statements: ClientStatements::default(),
        lease: None,
        cancel,
        pid,
        info: info.clone(),
        write_lsn: 0,
        discard_until_sync: false,
    };
    drop(settings);
    let end = s.main().await;
    if let End::Failed(reason) = &end {
        tracing::debug!(client = info.id, %reason, "pooler client ended");
        // The FATAL that says why (a protocol violation, a lost server) is
        // still in `out`: the client hears it before the close.
        if !s.out.is_empty() {
            let out = std::mem::take(&mut s.out);
            let _ =
                tokio::time::timeout(std::time::Duration::from_secs(1), s.client.write_all(&out))
                    .await;
        }
    }
    s.release(true).await;
    pool.clients.fetch_sub(1, Ordering::Relaxed);
    pooler.cancels.unregister(s.pid);
    pooler.remove_client(info.id);
}

impl Session {
    async fn main(&mut self) -> End {
        loop {
            if self.lease.is_none() {
                match self.next_request().await {
                    Ok(true) => {}
                    Ok(false) => return End::Client,
                    Err(e) => return e,
                }
                continue;
            }
            if let Err(e) = self.pump().await {
                return e;
            }
            if self.may_release() {
                self.release(false).await;
            }
        }
    }

    /// Idle: reads the next request, routes it and sends it. Ok(false) when
    /// the client said goodbye.
    async fn next_request(&mut self) -> Result<bool, End> {
        // Gather complete frames up to a routing point.
        let Batch {
            len,
            target,
            terminate,
            query,
        } = loop {
            match self.scan_batch()? {
                Some(b) => break b,
                None => self.read_client().await?,
            }
        };
        if self.discard_until_sync {
            let sync = ends_with_sync(&self.cbuf[..len]);
            self.cbuf.advance(len);
            if sync {
                self.discard_until_sync = false;
                backend::ready_for_query(&mut self.out, b'I');
                self.flush_client().await?;
            }
            return Ok(!terminate);
        }
        if terminate && len == 0 {
            return Ok(false);
        }
        if let Err(e) = self.acquire(target).await {
            self.fail_request(len, &e).await?;
            return Ok(!terminate);
        }
        self.forward_client(len, query)?;
        self.flush_server().await?;
        Ok(!terminate)
    }

    /// The complete frames at the start of `cbuf` that make one request:
    /// a Query, or extended messages up to Sync or Flush.
    fn scan_batch(&mut self) -> Result<Option<Batch>, End> {
        loop {
            let scanned = scan(
                &self.cbuf,
                self.max_message,
                &self.statements,
                &self.pooler,
                &self.pool.database,
            );
            match scanned {
                Ok(Scan::More) => return Ok(None),
                Ok(Scan::Batch(len, target, terminate)) => {
                    return Ok(Some(Batch {
                        len,
                        target,
                        terminate,
                        query: None,
                    }));
                }
                Ok(Scan::Query(len, classified)) => {
                    return Ok(Some(Batch {
                        len,
                        target: classified.target,
                        terminate: false,
                        query: Some(classified),
                    }));
                }
                Ok(Scan::Skip(len)) => self.cbuf.advance(len),
                Err(e) => return Err(self.protocol_error_sync(e)),
            }
        }
    }

    async fn read_client(&mut self) -> Result<(), End> {
        if self.cbuf.is_empty() && self.cbuf.capacity() > KEEP_BUFFER {
            self.cbuf = BytesMut::new();
        }
        match fill(&mut self.client, &mut self.cbuf, CLIENT_CHUNK).await {
            Ok(_) => Ok(()),
            Err(WireError::Closed) => Err(End::Client),
            Err(e) => Err(End::Failed(e.to_string())),
        }
    }

    /// Gets a server for `target`: picks the backend, waits for a
    /// connection, brings its settings in line with the client's.
    async fn acquire(&mut self, target: Target) -> Result<(), PoolError> {
        let target = if self.mode == PoolMode::Session {
            // A session is pinned to one server; only the primary can take
            // every statement it may send.
            Target::Primary
        } else {
            target
        };
        let asked = Instant::now();
        self.info
            .request_us
            .store(self.pooler.micros(asked), Ordering::Relaxed);
        self.info
            .state
            .store(ClientInfo::WAITING, Ordering::Relaxed);
        let got = self.wait_for_server(target, asked).await;
        self.info.state.store(ClientInfo::IDLE, Ordering::Relaxed);
        let (backend, mut conn, _leasing) = got?;
        let primary = backend.role() == Some(crate::pg::pooler::backends::PgRole::Primary);
        self.cancel.lease(LeaseKey {
            addr: conn.addr,
            pid: conn.pid,
            secret: conn.secret,
        });
        backend.outstanding.fetch_add(1, Ordering::Relaxed);
        backend.routed.fetch_add(1, Ordering::Relaxed);
        let baseline = self.pool.baseline();
        if !conn.is_synced_to(&self.params, &baseline) {
            let sql = self.params.sync_sql(conn.params(), &baseline);
            if let Some(sql) = &sql {
                let timeout = self.pooler.settings.load().pg.wait_timeout;
                if let Err(e) = conn.simple_query(sql, timeout).await {
                    backend.outstanding.fetch_sub(1, Ordering::Relaxed);
                    self.cancel.release();
                    self.pool.lost(conn.addr);
                    return Err(e);
                }
            }
            conn.synced_to(&self.params, &baseline, sql.is_some());
        }
        // One clock reading starts the lease and its first request: the
        // client's frames go out right after this.
        let now = Instant::now();
        self.info.state.store(ClientInfo::ACTIVE, Ordering::Relaxed);
        self.info.link(Some(ServerView {
            last_used: now,
            ..ServerView::of(&conn)
        }));
        self.pool
            .stats
            .server_assignments
            .fetch_add(1, Ordering::Relaxed);
        self.lease = Some(Leased {
            conn,
            backend,
            since: now,
            primary,
            open_batch: false,
            query_started: Some(now),
        });
        Ok(())
    }

    /// A server connection for `target`, waiting while no server can take
    /// the request: between a primary's death and the promotion of a
    /// standby a write waits for the new primary instead of failing, as a
    /// PgBouncer client waits out a server that is down. The whole wait is
    /// bounded by `wait_timeout`; after it the client hears why no server
    /// took the request. Nothing of the client's is sent before a server
    /// is leased, so waiting and trying again is always safe. `asked`: when
    /// the client asked.
    async fn wait_for_server(
        &mut self,
        target: Target,
        asked: Instant,
    ) -> Result<(Arc<Backend>, Box<ServerConn>, Leasing), PoolError> {
        // Loaded once for the deadline, the route and the checkout: each
        // arc-swap load was about 1 % of the pooler's instructions per
        // transaction. A retry loads them again.
        let mut settings = self.pooler.settings.load_full();
        let deadline = deadline(asked, settings.pg.wait_timeout);
        let mut asked = asked;
        loop {
            // What had happened before this try: news after it (a change
            // of servers, a cancel) ends the wait below at once.
            let events = self.pooler.backend_events.load(Ordering::SeqCst);
            let cancels = self.cancel.wait_cancels.load(Ordering::SeqCst);
            let e = match self.try_server(target, asked, deadline, &settings).await {
                Ok(got) => return Ok(got),
                Err(e) => e,
            };
            let now = Instant::now();
            if !e.may_pass_later() || now >= deadline {
                return Err(e);
            }
            // Counted as waiting, as in a pool's queue: SHOW POOLS'
            // cl_waiting shows them, and max_wait_clients bounds them.
            let _waiting = QueueWait::join(&self.pooler, &self.pool)?;
            tracing::debug!(client = self.info.id, error = %e, "pooler: no server can take the request now; waiting");
            // A `Notified` hears every notify_waiters() from its making
            // on, and the counters (bumped before each) tell of any
            // before: nothing between the try and the wait is lost.
            let changed = self.pooler.backends_changed.notified();
            let canceled = self.cancel.waiting.notified();
            if self.cancel.wait_cancels.load(Ordering::SeqCst) != cancels {
                return Err(PoolError::Canceled);
            }
            if self.pooler.backend_events.load(Ordering::SeqCst) == events {
                tokio::select! {
                    _ = changed => {}
                    _ = tokio::time::sleep(RETRY_EVERY.min(deadline - now)) => {}
                    _ = canceled => return Err(PoolError::Canceled),
                }
            }
            asked = Instant::now();
            settings = self.pooler.settings.load_full();
        }
    }

    /// One try of `wait_for_server`: waits out a PAUSE, picks the backend
    /// and waits (until `deadline`) for a connection to it. The `Leasing`
    /// count must outlive the lease's start.
    async fn try_server(
        &mut self,
        target: Target,
        asked: Instant,
        deadline: Instant,
        settings: &Arc<PoolerSettings>,
    ) -> Result<(Arc<Backend>, Box<ServerConn>, Leasing), PoolError> {
        let (leasing, paused) = self.start_lease().await?;
        // After a PAUSE, `asked` is too old to date the checkout by: the
        // pool's check of a connection idle for a second or more compares
        // with it.
        let asked = if paused { Instant::now() } else { asked };
        // A RELOAD may have come during the PAUSE.
        let reloaded;
        let settings = if paused {
            reloaded = self.pooler.settings.load_full();
            &reloaded
        } else {
            settings
        };
        let backend = self.route(target, None, settings)?;
        match self.checkout(&backend, asked, deadline, settings).await {
            Ok(conn) => Ok((backend, conn, leasing)),
            // A read whose server could not take it (a standby restarting
            // to follow a new primary, or stopped before the prober saw
            // it): nothing of the client's was sent, so it goes once to
            // another server that may take it, as with nginx's
            // proxy_next_upstream. A write has only the one primary.
            Err(e) if target == Target::Standby && e.server_unavailable() => {
                let Ok(other) = self.route(target, Some(backend.addr), settings) else {
                    return Err(e);
                };
                backend.redispatched.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(server = %backend.name, error = %e, "pooler: a read goes to {} instead", other.name);
                let conn = self
                    .checkout(&other, Instant::now(), deadline, settings)
                    .await?;
                Ok((other, conn, leasing))
            }
            Err(e) => Err(e),
        }
    }

    /// The backend a statement for `target` goes to now, leaving out
    /// `avoid`.
    fn route(
        &self,
        target: Target,
        avoid: Option<std::net::SocketAddr>,
        settings: &PoolerSettings,
    ) -> Result<Arc<Backend>, PoolError> {
        let picked = self
            .pooler
            .router_with(settings)
            .pick_avoiding(target, self.write_lsn, avoid)
            .cloned();
        picked.ok_or(PoolError::NoBackend(match target {
            Target::Primary => "primary",
            Target::Standby => "PostgreSQL server",
        }))
    }

    /// Counts this client as leasing (PAUSE waits for it), after waiting
    /// while its database is paused. SeqCst on both sides: PAUSE sets the
    /// flag then reads the count, a lease bumps the count then reads the
    /// flag, so one of them sees the other. Also says whether it waited.
    async fn start_lease(&self) -> Result<(Leasing, bool), PoolError> {
        let mut waited = false;
        loop {
            self.pool.leasing.fetch_add(1, Ordering::SeqCst);
            let leasing = Leasing(self.pool.clone());
            if !self.pooler.is_paused(&self.pool.database) {
                return Ok((leasing, waited));
            }
            drop(leasing);
            self.wait_resume().await?;
            waited = true;
        }
    }

    async fn checkout(
        &mut self,
        backend: &Arc<Backend>,
        now: Instant,
        deadline: Instant,
        settings: &PoolerSettings,
    ) -> Result<Box<ServerConn>, PoolError> {
        let checkout = Checkout {
            addr: backend.addr,
            now,
            wait_timeout: settings.pg.wait_timeout,
            deadline,
            lifetime: settings.pg.server_lifetime,
            queue: &self.pooler.pools.queue,
            canceled: Some(&self.cancel.waiting),
        };
        match self.pool.checkout(&checkout).await? {
            Lease::Ready(conn) => Ok(conn),
            Lease::Open => {
                // None of the client's settings at startup: every server of
                // the pool then goes back to the same values (the baseline)
                // on RESET and DISCARD ALL; `acquire` SETs the client's.
                // Boxed: the connect future (TLS, SCRAM) is the largest
                // part of a session's; inline, every idle client's task
                // would carry its room (print-type-sizes: 2.2 of 5.2 KB).
                let pool = &self.pool;
                let tls = self.pooler.server_tls.as_ref();
                let connecting = Box::pin(async move {
                    connect(ConnectParams {
                        addr: backend.addr,
                        user: &pool.user,
                        database: &pool.database,
                        startup: &[],
                        credentials: &pool.credentials(),
                        timeout: settings.pg.login_timeout,
                        tls,
                        tcp_user_timeout: settings.pg.tcp_user_timeout,
                    })
                    .await
                });
                // Nothing of the client's is sent yet: giving up is safe,
                // and the error lets `wait_for_server` route again. Boxed
                // for the same reason as the connect.
                let down = Box::pin(self.pooler.until_down(backend));
                let made = tokio::select! {
                    made = connecting => made,
                    () = down => Err(PoolError::Connect {
                        addr: backend.addr,
                        reason: "the health probe found it down while connecting".into(),
                    }),
                };
                match made {
                    Ok(conn) => {
                        self.pool.opened(backend.addr);
                        Ok(conn)
                    }
                    Err(e) => {
                        self.pool.open_failed(backend.addr);
                        Err(e)
                    }
                }
            }
        }
    }

    async fn wait_resume(&self) -> Result<(), PoolError> {
        let timeout = self.pooler.settings.load().pg.wait_timeout;
        let deadline = tokio::time::Instant::now() + timeout;
        while self.pooler.is_paused(&self.pool.database) {
            tokio::select! {
                _ = self.pooler.resumed.notified() => {}
                _ = tokio::time::sleep_until(deadline) => return Err(PoolError::WaitTimeout(timeout)),
                // PAUSE may end between the check and the wait.
                _ = tokio::time::sleep(std::time::Duration::from_millis(100)) => {}
            }
        }
        Ok(())
    }

    /// A request that got no server: the client hears why and may go on.
    async fn fail_request(&mut self, len: usize, e: &PoolError) -> Result<(), End> {
        let synced = ends_with_sync(&self.cbuf[..len]);
        self.cbuf.advance(len);
        backend::error(&mut self.out, e.sqlstate(), &e.to_string());
        if synced {
            backend::ready_for_query(&mut self.out, b'I');
        } else {
            self.discard_until_sync = true;
        }
        self.flush_client().await
    }

    /// Sends the first `len` bytes of client frames to the leased server,
    /// rewriting statement names and injecting Parses where needed. `query`:
    /// how `scan` classified them when they are one Query.
    fn forward_client(&mut self, len: usize, query: Option<Classified>) -> Result<(), End> {
        let mut frames = self.cbuf.split_to(len);
        let Some(lease) = self.lease.as_mut() else {
            return Err(End::Failed("internal: no server leased".into()));
        };
        if lease.query_started.is_none() {
            lease.query_started = Some(Instant::now());
        }
        let mut t = Translator {
            sout: &mut self.sout,
            out: &mut self.out,
            lease,
            statements: &mut self.statements,
            pooler: &self.pooler,
            pool: &self.pool,
            fx: Effects::default(),
            query,
        };
        while !frames.is_empty() {
            let frame = match peek(&frames, self.max_message) {
                Ok(Some(f)) => f,
                _ => return Err(End::Failed("internal: partial frame in a batch".into())),
            };
            let msg = frames.split_to(frame.len);
            t.translate(frame, &msg)?;
        }
        let fx = t.fx;
        self.apply_effects(fx);
        Ok(())
    }

    fn apply_effects(&mut self, fx: Effects) {
        for _ in 0..fx.parse_completes {
            backend::parse_complete(&mut self.out);
        }
        if let Some(lease) = self.lease.as_mut() {
            for id in fx.unprepared {
                lease.conn.prepared.remove(&id);
            }
        }
    }

    /// Leased: waits for either side and passes on what arrives.
    async fn pump(&mut self) -> Result<(), End> {
        // Frames the client sent ahead (pipelining) go first.
        self.forward_ready_client()?;
        self.flush_server().await?;
        self.flush_client().await?;
        let Some(lease) = self.lease.as_mut() else {
            return Ok(());
        };
        enum Ready {
            Client(Result<usize, WireError>),
            Server(Result<usize, WireError>),
        }
        let ready = tokio::select! {
            r = fill(&mut self.client, &mut self.cbuf, CLIENT_CHUNK) => Ready::Client(r),
            r = fill(&mut lease.conn.stream, &mut lease.conn.buf, SERVER_CHUNK) => Ready::Server(r),
        };
        match ready {
            Ready::Client(Ok(_)) => {
                self.forward_ready_client()?;
                self.flush_server().await
            }
            Ready::Client(Err(WireError::Closed)) => Err(End::Client),
            Ready::Client(Err(e)) => Err(End::Failed(e.to_string())),
            Ready::Server(Ok(_)) => {
                let direct = self.relay_server()?;
                if direct > 0 {
                    self.write_direct(direct).await
                } else {
                    self.flush_client().await
                }
            }
            Ready::Server(Err(e)) => Err(self.server_lost(&e.to_string())),
        }
    }

    /// Forwards every complete client frame while a server is leased.
    fn forward_ready_client(&mut self) -> Result<(), End> {
        let mut len = 0;
        loop {
            match peek(&self.cbuf[len..], self.max_message) {
                Ok(Some(f)) => {
                    if f.tag == fe::TERMINATE {
                        if len > 0 {
                            self.forward_client(len, None)?;
                        }
                        return Err(End::Client);
                    }
                    len += f.len;
                }
                Ok(None) => break,
                Err(e) => return Err(self.protocol_error_sync(e)),
            }
        }
        if len > 0 {
            self.forward_client(len, None)?;
        }
        Ok(())
    }

    /// Passes the server's complete frames to the client; frames the
    /// client must not see are dropped, owed ones added. Without either
    /// (nearly always), the bytes go out without being copied: the return
    /// value is how many bytes at the start of the server buffer the caller
    /// writes to the client as they are (0 when they were copied to `out`).
    fn relay_server(&mut self) -> Result<usize, End> {
        let Some(lease) = self.lease.as_mut() else {
            return Ok(0);
        };
        let max = self.max_message;
        let mut at = 0;
        let mut direct = self.out.is_empty();
        let mut fx = Effects::default();
        loop {
            let frame = match peek(&lease.conn.buf[at..], max) {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => {
                    let reason = e.to_string();
                    return Err(self.server_lost(&reason));
                }
            };
            let verdict = match lease.conn.relay.on_server(frame.tag, &mut fx) {
                Ok(v) => v,
                Err(desync) => {
                    let reason = desync.to_string();
                    return Err(self.server_lost(&reason));
                }
            };
            let body = &lease.conn.buf[at + 5..at + frame.len];
            match frame.tag {
                b'Z' => {
                    if let Some(at) = lease.query_started.take() {
                        self.pool
                            .stats
                            .query_time_us
                            .fetch_add(at.elapsed().as_micros() as u64, Ordering::Relaxed);
                    }
                    lease.conn.tx_status = body.first().copied().unwrap_or(b'I');
                    if lease.conn.tx_status == b'I' {
                        self.pool.stats.xact_count.fetch_add(1, Ordering::Relaxed);
                    }
                }
                b'S' => {
                    let body = body.to_vec();
                    let mut f = crate::pg::wire::frame::Fields::new(&body);
                    if let (Ok(k), Ok(v)) = (f.cstr(), f.cstr()) {
                        let k = k.to_ascii_lowercase();
                        // A promotion reports in_hot_standby = off: news
                        // about this server, not a setting of the client's.
                        if !is_server_only(&k) {
                            self.params.set(k, v.to_string());
                        }
                    }
                    lease.conn.note_parameter(&body);
                }
                _ => {}
            }
            let local = fx.parse_completes > 0;
            if direct && (verdict == Verdict::Drop || local) {
                // From here on, copy: the client's stream differs from the server's.
                self.out.extend_from_slice(&lease.conn.buf[..at]);
                direct = false;
            }
            if !direct {
                if verdict == Verdict::Forward {
                    self.out
                        .extend_from_slice(&lease.conn.buf[at..at + frame.len]);
                }
                for _ in 0..fx.parse_completes {
                    backend::parse_complete(&mut self.out);
                }
                fx.parse_completes = 0;
            }
            at += frame.len;
        }
        for id in fx.unprepared.drain(..) {
            lease.conn.prepared.remove(&id);
        }
        self.pool
            .stats
            .bytes_sent
            .fetch_add(at as u64, Ordering::Relaxed);
        if direct {
            return Ok(at);
        }
        lease.conn.buf.advance(at);
        Ok(0)
    }

    /// Writes the first `len` bytes of the server buffer to the client.
    async fn write_direct(&mut self, len: usize) -> Result<(), End> {
        let Some(lease) = self.lease.as_mut() else {
            return Ok(());
        };
        let r = self.client.write_all(&lease.conn.buf[..len]).await;
        lease.conn.buf.advance(len);
        r.map_err(|e| End::Failed(e.to_string()))
    }

    fn may_release(&self) -> bool {
        let Some(lease) = &self.lease else {
            return false;
        };
        self.mode == PoolMode::Transaction
            && lease.conn.relay.is_idle()
            && !lease.open_batch
            && lease.conn.tx_status == b'I'
            && self.cbuf.is_empty()
    }

    /// Gives the server back (or closes it when it is not safe to reuse).
    /// `ending`: the client is gone, so whatever it left open is undone.
    async fn release(&mut self, ending: bool) {
        let Some(mut lease) = self.lease.take() else {
            return;
        };
        let canceled = self.cancel.release();
        lease.backend.outstanding.fetch_sub(1, Ordering::Relaxed);
        self.info.state.store(ClientInfo::IDLE, Ordering::Relaxed);
        self.info.link(None);
        let now = Instant::now();
        let stats = &self.pool.stats;
        stats.xact_time_us.fetch_add(
            now.saturating_duration_since(lease.since).as_micros() as u64,
            Ordering::Relaxed,
        );
        let settings = self.pooler.settings.load();
        let timeout = settings
            .pg
            .wait_timeout
            .min(std::time::Duration::from_secs(5));
        let addr = lease.conn.addr;
        let healthy = !canceled && lease.conn.relay.is_idle() && lease.conn.buf.is_empty();
        if !healthy {
            tokio::spawn(lease.conn.terminate());
            self.pool.lost(addr);
            return;
        }
        let conn = &mut lease.conn;
        if settings.pg.read_your_writes && lease.primary && !ending {
            if let Ok(rows) = conn
                .simple_query("SELECT pg_catalog.pg_current_wal_insert_lsn()", timeout)
                .await
            {
                if let Some(lsn) = rows
                    .first()
                    .and_then(|r| r.first())
                    .and_then(|v| v.as_deref())
                    .and_then(parse_lsn)
                {
                    self.write_lsn = lsn;
                }
            }
        }
        let mut ok = true;
        if conn.tx_status != b'I' {
            ok = conn.simple_query("ROLLBACK", timeout).await.is_ok();
        }
        if ok && (conn.dirty || (ending && self.mode == PoolMode::Session)) {
            ok = conn.simple_query("DISCARD ALL", timeout).await.is_ok();
            conn.prepared.clear();
            conn.dirty = false;
            // DISCARD ALL put every setting back to the server's default.
            conn.reset_params(&self.pool.baseline());
        }
        if ok && conn.tx_status == b'I' {
            // After a ROLLBACK or DISCARD ALL, `now` is a little old; it
            // only dates the connection's last use.
            self.pool
                .checkin(lease.conn, settings.pg.server_lifetime, now);
        } else {
            tokio::spawn(lease.conn.terminate());
            self.pool.lost(addr);
        }
    }

    /// The server connection broke: the client hears it and is closed, as
    /// PostgreSQL would close it; it reconnects through the same address.
    fn server_lost(&mut self, reason: &str) -> End {
        if let Some(lease) = self.lease.take() {
            lease.backend.outstanding.fetch_sub(1, Ordering::Relaxed);
            self.pool.lost(lease.conn.addr);
            self.info.link(None);
            let _ = lease.conn;
        }
        let text = format!("the server connection was lost ({reason}); please reconnect");
        backend::fatal(&mut self.out, sqlstate::CONNECTION_FAILURE, &text);
        End::Failed(text)
    }

    fn fatal(&mut self, code: &str, text: &str) -> End {
        backend::fatal(&mut self.out, code, text);
        End::Failed(text.to_string())
    }

    fn protocol_error_sync(&mut self, e: WireError) -> End {
        let text = e.to_string();
        let code = match e {
            WireError::TooLarge { .. } => sqlstate::PROGRAM_LIMIT_EXCEEDED,
            _ => sqlstate::PROTOCOL_VIOLATION,
        };
        self.fatal(code, &text)
    }

    async fn flush_client(&mut self) -> Result<(), End> {
        if self.out.is_empty() {
            return Ok(());
        }
        let r = self.client.write_all(&self.out).await;
        self.out.clear();
        if self.out.capacity() > KEEP_BUFFER {
            self.out = BytesMut::new();
        }
        r.map_err(|e| End::Failed(e.to_string()))
    }

    async fn flush_server(&mut self) -> Result<(), End> {
        if self.sout.is_empty() {
            return Ok(());
        }
        let Some(lease) = self.lease.as_mut() else {
            self.sout.clear();
            return Ok(());
        };
        self.pool
            .stats
            .bytes_received
            .fetch_add(self.sout.len() as u64, Ordering::Relaxed);
        let r = lease.conn.stream.write_all(&self.sout).await;
        self.sout.clear();
        if self.sout.capacity() > KEEP_BUFFER {
            self.sout = BytesMut::new();
        }
        match r {
            Ok(()) => Ok(()),
            Err(e) => Err(self.server_lost(&e.to_string())),
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        // A session dropped with a lease (the task aborted at shutdown):
        // the connection's place must not stay counted forever.
        if let Some(lease) = self.lease.take() {
            lease.backend.outstanding.fetch_sub(1, Ordering::Relaxed);
            self.pool.lost(lease.conn.addr);
        }
    }
}

/// One request at the start of the client buffer, as `scan` found it.
struct Batch {
    len: usize,
    target: Target,
    /// A Terminate follows it.
    terminate: bool,
    /// The classification of a request that is one Query: kept so that
    /// `Translator` does not classify the same text again (the fast path
    /// was a quarter of the pooler's instructions when it ran twice).
    query: Option<Classified>,
}

enum Scan {
    /// No complete request yet.
    More,
    /// Length, target, and whether a Terminate follows it.
    Batch(usize, Target, bool),
    /// One Query: its length and classification.
    Query(usize, Classified),
    /// Bytes to drop (COPY data with no COPY running, as PostgreSQL does).
    Skip(usize),
}

fn scan(
    buf: &[u8],
    max_message: usize,
    statements: &ClientStatements,
    pooler: &Pooler,
    database: &str,
) -> Result<Scan, WireError> {
    let mut at = 0;
    let mut target: Option<Target> = None;
    let mut unnamed: Option<Classified> = None;
    let route = |c: Classified, t: &mut Option<Target>| {
        *t = Some(match (*t, c.target) {
            (Some(Target::Primary), _) | (_, Target::Primary) => Target::Primary,
            _ => Target::Standby,
        });
    };
    loop {
        let Some(frame) = peek(&buf[at..], max_message)? else {
            if at >= MAX_BATCH {
                return Ok(Scan::Batch(at, Target::Primary, false));
            }
            return Ok(Scan::More);
        };
        let body = &buf[at + 5..at + frame.len];
        match frame.tag {
            fe::TERMINATE => return Ok(Scan::Batch(at, target.unwrap_or(Target::Primary), true)),
            fe::QUERY if at == 0 => {
                let c = pooler.classify(database, fe::query_text(body)?);
                return Ok(Scan::Query(frame.len, c));
            }
            fe::FUNCTION_CALL if at == 0 => {
                return Ok(Scan::Batch(frame.len, Target::Primary, false));
            }
            // A Query after extended messages without Sync: what came
            // before is routed on its own.
            fe::QUERY | fe::FUNCTION_CALL => return Ok(Scan::Batch(at, Target::Primary, false)),
            fe::PARSE => {
                let p = fe::parse(body)?;
                let c = pooler.classify(database, p.query);
                if p.name.is_empty() {
                    unnamed = Some(c);
                }
                route(c, &mut target);
            }
            fe::BIND => {
                let b = fe::bind(body)?;
                let c = if b.statement.is_empty() {
                    unnamed
                } else {
                    statements.by_name.get(b.statement).map(|s| s.classified)
                };
                match c {
                    Some(c) => route(c, &mut target),
                    None => target = Some(Target::Primary),
                }
            }
            fe::DESCRIBE | fe::EXECUTE | fe::CLOSE => {}
            fe::SYNC | fe::FLUSH => {
                return Ok(Scan::Batch(
                    at + frame.len,
                    target.unwrap_or(Target::Primary),
                    false,
                ));
            }
            fe::COPY_DATA | fe::COPY_DONE | fe::COPY_FAIL if at == 0 => {
                return Ok(Scan::Skip(frame.len));
            }
            fe::COPY_DATA | fe::COPY_DONE | fe::COPY_FAIL => {}
            b'p' => {
                return Err(WireError::Malformed(
                    "password message outside authentication",
                ));
            }
            _ => return Err(WireError::Malformed("message: unknown message type")),
        }
        at += frame.len;
    }
}

/// The borrowed parts of a session that rewriting client frames needs.
struct Translator<'a> {
    sout: &'a mut BytesMut,
    out: &'a mut BytesMut,
    lease: &'a mut Leased,
    statements: &'a mut ClientStatements,
    pooler: &'a Arc<Pooler>,
    pool: &'a Arc<UserPool>,
    fx: Effects,
    /// `scan`'s classification of the batch's Query, if it is one.
    query: Option<Classified>,
}

impl Translator<'_> {
    fn classify(&self, sql: &str) -> Classified {
        self.pooler.classify(&self.pool.database, sql)
    }

    fn fatal(&mut self, code: &str, text: &str) -> End {
        backend::fatal(self.out, code, text);
        End::Failed(text.to_string())
    }

    /// The client runs DEALLOCATE ALL or DISCARD ALL: from here on the
    /// server has none of the pooler's statements (the next use prepares
    /// again) and the client none of its names, as PostgreSQL would have it.
    /// Done as the message goes out, so that what the client sends after it
    /// is translated against the server's state after it.
    fn forget_statements(&mut self) {
        self.lease.conn.prepared.clear();
        self.statements.by_name.clear();
    }

    /// `DEALLOCATE name` of one of the client's names: the name goes (the
    /// pooler's statement stays for others). The server knows only
    /// `piha_s<N>` and would answer that the client's name does not exist,
    /// so the statement is turned into the DEALLOCATE of a placeholder.
    fn forget_client_statement(&mut self, sql: &str) -> bool {
        match deallocate_target(sql) {
            Some(name) => self.statements.by_name.remove(&name).is_some(),
            None => false,
        }
    }

    /// Prepares an empty statement under a name used once, for a client's
    /// `DEALLOCATE name` to drop instead: same reply, nothing left behind.
    fn placeholder_statement(&mut self) -> String {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let name = format!("piha_dealloc{}", NEXT.fetch_add(1, Ordering::Relaxed));
        fe::write_parse(self.sout, &name, "", &[0, 0]);
        let parse = Pending::Parse {
            statement: None,
            to_client: false,
        };
        self.lease.conn.relay.push(parse, &mut self.fx);
        name
    }

    /// A client message that does not parse (sent while a server is
    /// leased, so `scan` never saw it): FATAL, as PostgreSQL answers it.
    fn wire<T>(&mut self, r: Result<T, WireError>) -> Result<T, End> {
        r.map_err(|e| self.fatal(sqlstate::PROTOCOL_VIOLATION, &e.to_string()))
    }

    fn translate(&mut self, frame: Frame, msg: &[u8]) -> Result<(), End> {
        let body = &msg[5..];
        let stats = &self.pool.stats;
        match frame.tag {
            fe::QUERY => {
                stats.query_count.fetch_add(1, Ordering::Relaxed);
                // `scan` read and checked the text when it classified it;
                // only a statement with session state needs it again (its
                // UTF-8 check was 1 % of the instructions per transaction).
                let classified = match self.query.take() {
                    Some(c) => c,
                    None => {
                        let sql = self.wire(fe::query_text(body))?;
                        self.classify(sql)
                    }
                };
                if classified.session_state {
                    let sql = self.wire(fe::query_text(body))?;
                    // Only on a quiet server not in a failed transaction: the
                    // injected Parse must not fail, or the server would skip
                    // the Query while waiting for a Sync that never comes. A
                    // DEALLOCATE always has session state (classify's tests
                    // hold it to that): other statements skip the look.
                    let quiet =
                        self.lease.conn.relay.is_idle() && self.lease.conn.tx_status != b'E';
                    if quiet && self.forget_client_statement(sql) {
                        let dummy = self.placeholder_statement();
                        let sql = format!("DEALLOCATE {dummy}");
                        let _ = postgres_protocol::message::frontend::query(&sql, self.sout);
                        self.lease.conn.relay.push(Pending::Query, &mut self.fx);
                        return Ok(());
                    }
                    self.lease.conn.dirty = true;
                    if drops_all_statements(sql) {
                        self.forget_statements();
                    }
                }
                self.sout.extend_from_slice(msg);
                self.lease.conn.relay.push(Pending::Query, &mut self.fx);
            }
            fe::FUNCTION_CALL => {
                self.lease.conn.dirty = true;
                self.sout.extend_from_slice(msg);
                self.lease.conn.relay.push(Pending::Query, &mut self.fx);
            }
            fe::PARSE => {
                self.lease.open_batch = true;
                let p = self.wire(fe::parse(body))?;
                if p.name.is_empty() {
                    if self.forget_client_statement(p.query) {
                        // An error before it (a failed transaction) skips
                        // both Parses, as PostgreSQL would the client's.
                        let dummy = self.placeholder_statement();
                        let sql = format!("DEALLOCATE {dummy}");
                        fe::write_parse(self.sout, "", &sql, p.rest);
                        let parse = Pending::Parse {
                            statement: None,
                            to_client: true,
                        };
                        self.lease.conn.relay.push(parse, &mut self.fx);
                        return Ok(());
                    }
                    if self.classify(p.query).session_state {
                        self.lease.conn.dirty = true;
                        // Its Bind and Execute follow in this batch.
                        if drops_all_statements(p.query) {
                            self.forget_statements();
                        }
                    }
                    self.sout.extend_from_slice(msg);
                    let parse = Pending::Parse {
                        statement: None,
                        to_client: true,
                    };
                    self.lease.conn.relay.push(parse, &mut self.fx);
                    return Ok(());
                }
                if self.statements.by_name.len() >= MAX_PER_CLIENT
                    && !self.statements.by_name.contains_key(p.name)
                {
                    let text =
                        format!("more than {MAX_PER_CLIENT} prepared statements on one connection");
                    return Err(self.fatal(sqlstate::PROGRAM_LIMIT_EXCEEDED, &text));
                }
                let pooler = self.pooler;
                let database = &self.pool.database;
                let stmt = pooler
                    .statements
                    .intern(database, p.query, p.rest, |q| pooler.classify(database, q));
                self.statements
                    .by_name
                    .insert(p.name.to_string(), stmt.clone());
                let lease = &mut *self.lease;
                if lease.conn.has_prepared(stmt.id) {
                    lease
                        .conn
                        .relay
                        .push(Pending::LocalParseComplete, &mut self.fx);
                } else {
                    prepare(self.sout, lease, &stmt, true, &mut self.fx);
                }
            }
            fe::BIND => {
                self.lease.open_batch = true;
                stats.query_count.fetch_add(1, Ordering::Relaxed);
                let b = self.wire(fe::bind(body))?;
                let lease = &mut *self.lease;
                let mut drops_all = false;
                match (
                    b.statement.is_empty(),
                    self.statements.by_name.get(b.statement),
                ) {
                    (false, Some(stmt)) => {
                        if stmt.classified.session_state {
                            lease.conn.dirty = true;
                            drops_all = drops_all_statements(&stmt.query);
                        }
                        if !lease.conn.has_prepared(stmt.id) {
                            prepare(self.sout, lease, stmt, false, &mut self.fx);
                        }
                        fe::write_bind(self.sout, b.portal, &stmt.server_name, b.rest);
                    }
                    // Unnamed, or a name the client never prepared: as is
                    // (PostgreSQL answers the latter with its own error).
                    _ => self.sout.extend_from_slice(msg),
                }
                lease.conn.relay.push(Pending::Bind, &mut self.fx);
                if drops_all {
                    self.forget_statements();
                }
            }
            fe::DESCRIBE => {
                self.lease.open_batch = true;
                let (kind, name) = self.wire(fe::target(body))?;
                let lease = &mut *self.lease;
                match (kind, self.statements.by_name.get(name)) {
                    (b'S', Some(stmt)) if !name.is_empty() => {
                        if !lease.conn.has_prepared(stmt.id) {
                            prepare(self.sout, lease, stmt, false, &mut self.fx);
                        }
                        fe::write_target(self.sout, fe::DESCRIBE, b'S', &stmt.server_name);
                    }
                    _ => self.sout.extend_from_slice(msg),
                }
                lease.conn.relay.push(Pending::Describe, &mut self.fx);
            }
            fe::CLOSE => {
                self.lease.open_batch = true;
                let (kind, name) = self.wire(fe::target(body))?;
                if kind == b'S' && !name.is_empty() {
                    // The server keeps the pooler's statement for others;
                    // the client's name goes. Closing a name that does not
                    // exist gets CloseComplete in the right place.
                    self.statements.by_name.remove(name);
                    fe::write_target(self.sout, fe::CLOSE, b'S', NO_STATEMENT);
                } else {
                    self.sout.extend_from_slice(msg);
                }
                let close = Pending::Close { to_client: true };
                self.lease.conn.relay.push(close, &mut self.fx);
            }
            fe::EXECUTE => {
                self.lease.open_batch = true;
                self.sout.extend_from_slice(msg);
                self.lease.conn.relay.push(Pending::Execute, &mut self.fx);
            }
            fe::SYNC => {
                self.lease.open_batch = false;
                self.sout.extend_from_slice(msg);
                self.lease.conn.relay.push(Pending::Sync, &mut self.fx);
            }
            fe::FLUSH | fe::COPY_DATA | fe::COPY_DONE | fe::COPY_FAIL => {
                self.sout.extend_from_slice(msg);
            }
            fe::TERMINATE => return Err(End::Client),
            other => {
                let text = format!("unexpected message type '{}'", other as char);
                return Err(self.fatal(sqlstate::PROTOCOL_VIOLATION, &text));
            }
        }
        Ok(())
    }
}

/// Sends the pooler's Parse for `stmt` and records it as prepared here.
fn prepare(
    sout: &mut BytesMut,
    lease: &mut Leased,
    stmt: &crate::pg::pooler::prepared::Statement,
    to_client: bool,
    fx: &mut Effects,
) {
    if let Some(evicted) = lease.conn.add_prepared(stmt.id) {
        fe::write_target(sout, fe::CLOSE, b'S', &format!("piha_s{evicted}"));
        // That CloseComplete is ours, not the client's.
        lease
            .conn
            .relay
            .push(Pending::Close { to_client: false }, fx);
    }
    fe::write_parse(sout, &stmt.server_name, &stmt.query, &stmt.types);
    lease.conn.relay.push(
        Pending::Parse {
            statement: Some(stmt.id),
            to_client,
        },
        fx,
    );
}

fn ends_with_sync(frames: &[u8]) -> bool {
    let mut at = 0;
    let mut last = 0u8;
    while let Ok(Some(f)) = peek(&frames[at..], usize::MAX) {
        last = f.tag;
        at += f.len;
    }
    last == fe::SYNC || last == fe::QUERY || last == fe::FUNCTION_CALL
}
