//! What one client leaves on a shared server connection, and where a cancel
//! lands, in transaction mode: a real piha node in front of a real
//! PostgreSQL (tests/common/pooler.rs), clients held with tokio-postgres.
//!
//! Most tests use `pool_size = 1`, so every client of the pool is forced
//! onto the same server connection (checked with `pg_backend_pid()`).
//!
//! Nets 127.61.35-38 belong to this file. Two tests share a net by taking
//! its lock, so they never run their nodes at the same time.

mod common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use common::pooler::{APP_DB, APP_PASSWORD, APP_USER, PoolerRig};
use tokio::task::JoinHandle;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

static NET_35: Mutex<()> = Mutex::new(());
static NET_36: Mutex<()> = Mutex::new(());
static NET_37: Mutex<()> = Mutex::new(());
static NET_38: Mutex<()> = Mutex::new(());

fn hold(net: &'static Mutex<()>) -> MutexGuard<'static, ()> {
    net.lock().unwrap_or_else(|e| e.into_inner())
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// A client through the pooler; the task drives its socket (abort it to
/// drop the connection without a Terminate).
async fn connect(rig: &PoolerRig, application_name: Option<&str>) -> (Client, JoinHandle<()>) {
    let mut info = format!("{} password={APP_PASSWORD}", rig.conninfo(APP_USER, APP_DB));
    if let Some(name) = application_name {
        info.push_str(&format!(" application_name={name}"));
    }
    let (client, conn) = tokio_postgres::connect(&info, NoTls)
        .await
        .unwrap_or_else(|e| panic!("connect through the pooler: {e}"));
    let task = tokio::spawn(async move {
        let _ = conn.await;
    });
    (client, task)
}

/// The columns of the last row `sql` returns (simple protocol, so the
/// client prepares nothing on the server).
async fn row(c: &Client, sql: &str) -> Vec<String> {
    let msgs = c
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    msgs.iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => Some(
                (0..r.len())
                    .map(|i| r.get(i).unwrap_or("NULL").to_string())
                    .collect(),
            ),
            _ => None,
        })
        .next_back()
        .unwrap_or_else(|| panic!("no row from {sql}"))
}

/// The first column of the first row.
fn first_value(msgs: &[SimpleQueryMessage]) -> String {
    msgs.iter()
        .find_map(|m| match m {
            SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
            _ => None,
        })
        .unwrap_or_default()
}

async fn value(c: &Client, sql: &str) -> String {
    row(c, sql).await.remove(0)
}

async fn exec(c: &Client, sql: &str) {
    c.simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// The SQLSTATE and message of a failed query.
fn failure(r: Result<Vec<SimpleQueryMessage>, tokio_postgres::Error>) -> (String, String) {
    match r {
        Ok(_) => panic!("the query succeeded; an error was expected"),
        Err(e) => match e.as_db_error() {
            Some(db) => (db.code().code().to_string(), db.message().to_string()),
            None => panic!("not an error from the server: {e}"),
        },
    }
}

/// psql on the primary's unix socket (as the superuser, not through the
/// pooler), from inside the runtime.
fn direct(rig: &PoolerRig, sql: &str) -> String {
    tokio::task::block_in_place(|| rig.pg.primary().psql_in(APP_DB, sql))
}

/// The server backend pid running the query whose text is `query`.
async fn server_running(rig: &PoolerRig, query: &str) -> String {
    let sql =
        format!("SELECT pid FROM pg_stat_activity WHERE state = 'active' AND query = '{query}'");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let pid = direct(rig, &sql);
        if !pid.is_empty() {
            return pid;
        }
        assert!(Instant::now() < deadline, "never saw `{query}` running");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// What a fresh session of the app user shows, asked of PostgreSQL itself.
struct Defaults {
    work_mem: String,
    search_path: String,
    datestyle: String,
}

impl Defaults {
    fn of(rig: &PoolerRig) -> Defaults {
        let get = |name: &str| rig.pg.primary().psql_in(APP_DB, &format!("SHOW {name}"));
        Defaults {
            work_mem: get("work_mem"),
            search_path: get("search_path"),
            datestyle: get("DateStyle"),
        }
    }
}

/// `b`, on server backend `pid`, sees none of the state client A left.
async fn sees_clean_session(rig: &PoolerRig, b: &Client, pid: &str, d: &Defaults) {
    assert_eq!(
        value(b, "SELECT pg_backend_pid()").await,
        pid,
        "not the same server"
    );
    assert_eq!(value(b, "SHOW work_mem").await, d.work_mem);
    assert_eq!(value(b, "SHOW search_path").await, d.search_path);
    assert_eq!(
        value(b, "SELECT count(*) FROM pg_class WHERE relname = 't_a'").await,
        "0",
        "the temporary table outlived its session's client"
    );
    assert_eq!(
        value(
            b,
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
        )
        .await,
        "0",
        "an advisory lock outlived its client"
    );
    assert_eq!(value(b, "SELECT pg_try_advisory_lock(42)").await, "t");
    assert_eq!(
        value(b, "SELECT count(*) FROM pg_listening_channels()").await,
        "0"
    );
    // B's own lock went with B's transaction (B's next query was read only
    // after the pooler had given the server back): another session takes it.
    assert_eq!(direct(rig, "SELECT pg_try_advisory_lock(42)"), "t");
    assert_eq!(
        value(b, "SELECT count(*) FROM pg_prepared_statements").await,
        "0",
        "a prepared statement outlived its client"
    );
    assert_eq!(value(b, "SELECT pg_backend_pid()").await, pid);
}

/// Session state made by one client (SET, temporary table, advisory lock,
/// LISTEN, SQL PREPARE) is gone before another client gets the same server
/// connection; reported settings (DateStyle, application_name) follow
/// their client from transaction to transaction.
#[test]
fn session_state_does_not_leak_between_clients_in_transaction_mode() {
    let _net = hold(&NET_35);
    let rig = PoolerRig::start(35, 0, "pool_size = 1");
    rig.psql("CREATE SCHEMA a_schema");
    let d = Defaults::of(&rig);
    runtime().block_on(async {
        let (a, _a) = connect(&rig, None).await;
        let (b, _b) = connect(&rig, None).await;
        let pid = value(&a, "SELECT pg_backend_pid()").await;

        // One statement at a time, each its own transaction.
        for sql in [
            "SET work_mem = '77MB'",
            "SET search_path = a_schema",
            "CREATE TEMP TABLE t_a (x int)",
            "SELECT pg_advisory_lock(42)",
            "LISTEN chan_a",
            "PREPARE p AS SELECT 1",
        ] {
            exec(&a, sql).await;
        }
        assert_eq!(value(&a, "SELECT pg_backend_pid()").await, pid);
        sees_clean_session(&rig, &b, &pid, &d).await;
        // In transaction mode the state went with the transaction that made
        // it: A's next transaction does not have it either (the pooler ran
        // DISCARD ALL when A gave the server back).
        assert_eq!(value(&a, "SHOW work_mem").await, d.work_mem);

        // All of it in one Query (one lease: the COMMIT makes LISTEN take
        // effect), which also shows that it was there.
        let seen = row(
            &a,
            "SET work_mem = '77MB'; SET search_path = a_schema; \
             CREATE TEMP TABLE t_a (x int); SELECT pg_advisory_lock(42); \
             LISTEN chan_a; PREPARE p AS SELECT 1; COMMIT; \
             SELECT current_setting('work_mem'), current_setting('search_path'), \
               to_regclass('pg_temp.t_a') IS NOT NULL, \
               (SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' \
                  AND pid = pg_backend_pid()), \
               (SELECT count(*) FROM pg_listening_channels()), \
               (SELECT count(*) FROM pg_prepared_statements WHERE name = 'p'), \
               pg_backend_pid()",
        )
        .await;
        assert_eq!(seen, ["77MB", "a_schema", "t", "1", "1", "1", pid.as_str()]);
        sees_clean_session(&rig, &b, &pid, &d).await;

        // Reported settings follow their client.
        exec(&a, "SET DateStyle = 'German'").await;
        exec(&a, "SET application_name = 'client_a'").await;
        let german = ["German, DMY", "01.03.2024", "client_a"];
        let ask = "SELECT current_setting('DateStyle'), '2024-03-01'::date::text, \
                   current_setting('application_name'), pg_backend_pid()";
        let mut mine = german.map(String::from).to_vec();
        mine.push(pid.clone());
        assert_eq!(row(&a, ask).await, mine, "A lost its own settings");
        assert_eq!(
            row(&b, ask).await,
            [d.datestyle.as_str(), "2024-03-01", "", pid.as_str()],
            "B sees another client's settings"
        );
        assert_eq!(row(&a, ask).await, mine, "A lost its settings to B");
        let (c, _c) = connect(&rig, Some("client_c")).await;
        assert_eq!(
            row(&c, ask).await,
            [d.datestyle.as_str(), "2024-03-01", "client_c", pid.as_str()],
            "C's startup application_name"
        );
        assert_eq!(row(&a, ask).await, mine);
        assert_eq!(
            row(&b, ask).await,
            [d.datestyle.as_str(), "2024-03-01", "", pid.as_str()],
            "B sees C's application_name"
        );
    });
}

/// A client that goes away inside a transaction (socket closed, Terminate,
/// or after an error) leaves nothing open on the server: the next client on
/// the same server connection sees the insert rolled back and starts its
/// own transaction.
#[test]
fn a_client_gone_mid_transaction_is_rolled_back() {
    let _net = hold(&NET_35);
    let rig = PoolerRig::start(35, 0, "pool_size = 1");
    rig.psql("CREATE TABLE t6 (x int)");
    runtime().block_on(async {
        let (b, _b) = connect(&rig, None).await;
        let pid = value(&b, "SELECT pg_backend_pid()").await;
        for how in ["socket closed", "Terminate", "failed transaction"] {
            let (a, task) = connect(&rig, None).await;
            exec(&a, "BEGIN").await;
            exec(&a, "INSERT INTO t6 VALUES (1)").await;
            assert_eq!(value(&a, "SELECT pg_backend_pid()").await, pid);
            match how {
                // The socket goes without a word.
                "socket closed" => task.abort(),
                // tokio-postgres sends Terminate when the client goes.
                "Terminate" => drop(a),
                _ => {
                    let e = a.simple_query("SELECT 1/0").await;
                    assert_eq!(failure(e).0, SqlState::DIVISION_BY_ZERO.code());
                    task.abort();
                }
            }
            let seen = row(
                &b,
                "SELECT (SELECT count(*) FROM t6), now() = statement_timestamp(), \
                   (SELECT count(*) FROM pg_stat_activity \
                      WHERE state LIKE 'idle in transaction%'), pg_backend_pid()",
            )
            .await;
            assert_eq!(seen, ["0", "t", "0", pid.as_str()], "after: {how}");
        }
    });
}

/// A CancelRequest with client A's key (piha's, not PostgreSQL's) stops A's
/// query within about a second, and not client B's query running on the
/// other server connection. The server A held is closed, not reused.
#[test]
fn cancel_reaches_the_right_query() {
    let _net = hold(&NET_36);
    let rig = PoolerRig::start(36, 0, "pool_size = 2");
    runtime().block_on(async {
        let (a, _a) = connect(&rig, None).await;
        let (b, _b) = connect(&rig, None).await;
        let (a, b) = (Arc::new(a), Arc::new(b));
        let token = a.cancel_token();
        let a_query = tokio::spawn({
            let a = a.clone();
            async move { a.simple_query("SELECT pg_sleep(30)").await }
        });
        let b_query = tokio::spawn({
            let b = b.clone();
            async move { b.simple_query("SELECT pg_sleep(4)").await }
        });
        let a_pid = server_running(&rig, "SELECT pg_sleep(30)").await;
        let b_pid = server_running(&rig, "SELECT pg_sleep(4)").await;
        assert_ne!(a_pid, b_pid);

        let asked = Instant::now();
        token
            .cancel_query(NoTls)
            .await
            .unwrap_or_else(|e| panic!("cancel: {e}"));
        let r = tokio::time::timeout(Duration::from_secs(10), a_query)
            .await
            .expect("A's query was not canceled within 10 s")
            .expect("A's task");
        let took = asked.elapsed();
        let (code, message) = failure(r);
        assert_eq!(code, SqlState::QUERY_CANCELED.code(), "{message}");
        assert_eq!(message, "canceling statement due to user request");
        assert!(took < Duration::from_secs(2), "the cancel took {took:?}");

        // B's query runs on, and finishes normally.
        assert_eq!(server_running(&rig, "SELECT pg_sleep(4)").await, b_pid);
        let r = tokio::time::timeout(Duration::from_secs(10), b_query)
            .await
            .expect("B's query did not finish")
            .expect("B's task");
        assert!(r.is_ok(), "B's query failed: {:?}", r.err());

        // A goes on, on another server connection: the one a cancel was
        // sent to is never reused.
        let next = value(&a, "SELECT pg_backend_pid()").await;
        assert_ne!(next, a_pid);
        let gone = format!("SELECT count(*) FROM pg_stat_activity WHERE pid = {a_pid}");
        let deadline = Instant::now() + Duration::from_secs(5);
        while direct(&rig, &gone) != "0" {
            assert!(Instant::now() < deadline, "server {a_pid} stayed open");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(value(&b, "SELECT 1").await, "1");
    });
}

/// Two clients take turns on one server connection; A fires its cancel at
/// every moment around its short query: while it waits for the server,
/// while it runs, and right after its answer, racing the pooler giving the
/// server to B and B's query starting. B's queries are never canceled.
#[test]
fn a_cancel_never_hits_another_clients_query() {
    let _net = hold(&NET_37);
    let rig = PoolerRig::start(37, 0, "pool_size = 1");
    runtime().block_on(async {
        let (a, _a) = connect(&rig, None).await;
        let (b, _b) = connect(&rig, None).await;
        let stop = Arc::new(AtomicU32::new(0));
        let b_loop = tokio::spawn({
            let stop = stop.clone();
            async move {
                let (mut pids, mut canceled, mut other) = (Vec::new(), 0u32, Vec::new());
                while stop.load(Ordering::Relaxed) == 0 {
                    let r = b
                        .simple_query("SELECT pg_backend_pid(), pg_sleep(0.05)")
                        .await;
                    match r {
                        Ok(msgs) => pids.push(first_value(&msgs)),
                        Err(e) if e.code() == Some(&SqlState::QUERY_CANCELED) => canceled += 1,
                        Err(e) => other.push(e.to_string()),
                    }
                }
                (pids, canceled, other)
            }
        });
        let started = Instant::now();
        let mut a_pids = Vec::new();
        let (mut n, mut at_server, mut in_queue) = (0u64, 0u32, 0u32);
        while n < 300 && started.elapsed() < Duration::from_secs(25) {
            let token = a.cancel_token();
            // One round in three the cancel follows A's answer at once;
            // otherwise it is sent 0 to 60 ms after A's query (longer than
            // B's), so it lands before, during or after A's turn.
            let after = n % 3 == 0;
            let delay = Duration::from_micros(n * 7919 % 60_000);
            let cancel = (!after).then(|| {
                let token = token.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    token.cancel_query(NoTls).await
                })
            });
            match a
                .simple_query("SELECT pg_backend_pid(), pg_sleep(0.01)")
                .await
            {
                Ok(msgs) => a_pids.push(first_value(&msgs)),
                r => {
                    let (code, message) = failure(r);
                    assert_eq!(code, SqlState::QUERY_CANCELED.code(), "A: {message}");
                    if message.contains("waiting for a server connection") {
                        in_queue += 1;
                    } else {
                        at_server += 1;
                    }
                }
            }
            let sent = match cancel {
                Some(task) => task.await.expect("cancel task"),
                None => token.cancel_query(NoTls).await,
            };
            sent.unwrap_or_else(|e| panic!("cancel: {e}"));
            n += 1;
        }
        stop.store(1, Ordering::Relaxed);
        let (b_pids, b_canceled, b_other) = b_loop.await.expect("B's task");
        let mut servers: Vec<&String> = a_pids.iter().chain(&b_pids).collect();
        servers.sort();
        servers.dedup();
        println!(
            "race: {n} cancels in {:?}; A: {} answered, {at_server} canceled at the \
             server, {in_queue} canceled while waiting; B: {} queries, {b_canceled} \
             canceled; {} server connections seen (each one after the first was \
             opened because a cancel had been sent to the one before)",
            started.elapsed(),
            a_pids.len(),
            b_pids.len(),
            servers.len()
        );
        assert_eq!(b_canceled, 0, "A's cancel hit B's query");
        assert!(b_other.is_empty(), "B failed: {b_other:?}");
        assert!(
            n >= 100 && b_pids.len() >= 50,
            "too few rounds: {n}, B {}",
            b_pids.len()
        );
        assert!(at_server + in_queue > 0, "no cancel ever took effect");
        assert_eq!(value(&a, "SELECT 1").await, "1");
    });
}

/// A client waiting in the queue for the only server connection is canceled
/// at once (not after wait_timeout), and the client holding the server in
/// a transaction is not touched.
#[test]
fn a_cancel_reaches_a_client_waiting_in_the_queue() {
    let _net = hold(&NET_37);
    let rig = PoolerRig::start(37, 0, "pool_size = 1\nwait_timeout = \"30s\"");
    rig.psql("CREATE TABLE t4 (x int)");
    runtime().block_on(async {
        let (a, _a) = connect(&rig, None).await;
        let (b, _b) = connect(&rig, None).await;
        let b = Arc::new(b);
        exec(&a, "BEGIN").await;
        exec(&a, "INSERT INTO t4 VALUES (1)").await;
        let pid = value(&a, "SELECT pg_backend_pid()").await;
        let b_query = tokio::spawn({
            let b = b.clone();
            async move { b.simple_query("SELECT 1").await }
        });
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(!b_query.is_finished(), "B did not wait for the server");

        let asked = Instant::now();
        b.cancel_token()
            .cancel_query(NoTls)
            .await
            .unwrap_or_else(|e| panic!("cancel: {e}"));
        let r = tokio::time::timeout(Duration::from_secs(10), b_query)
            .await
            .expect("B's wait was not canceled within 10 s")
            .expect("B's task");
        let took = asked.elapsed();
        let (code, message) = failure(r);
        assert_eq!(code, SqlState::QUERY_CANCELED.code(), "{message}");
        assert_eq!(
            message,
            "the query was canceled while waiting for a server connection"
        );
        assert!(took < Duration::from_secs(2), "the cancel took {took:?}");

        // A's transaction goes on where it was.
        exec(&a, "INSERT INTO t4 VALUES (2)").await;
        assert_eq!(value(&a, "SELECT pg_backend_pid()").await, pid);
        exec(&a, "COMMIT").await;
        assert_eq!(value(&b, "SELECT count(*) FROM t4").await, "2");
        assert_eq!(value(&b, "SELECT pg_backend_pid()").await, pid);
    });
}

/// `max_wait_clients` bounds the queue (the next client gets 53300 at once)
/// and `wait_timeout` bounds the wait (53300 after it); both say what
/// happened, the clients stay connected, and the pool works again once the
/// server is free.
#[test]
fn the_wait_queue_is_bounded_in_length_and_time() {
    let _net = hold(&NET_38);
    let rig = PoolerRig::start(
        38,
        0,
        "pool_size = 1\nmax_wait_clients = 2\nwait_timeout = \"2s\"",
    );
    runtime().block_on(async {
        let (a, _a) = connect(&rig, None).await;
        let mut waiters = Vec::new();
        for _ in 0..3 {
            let (c, task) = connect(&rig, None).await;
            waiters.push((Arc::new(c), task));
        }
        exec(&a, "BEGIN").await;
        let pid = value(&a, "SELECT pg_backend_pid()").await;

        let queued = Instant::now();
        let mut waiting = Vec::new();
        for (c, _) in &waiters[..2] {
            let c = c.clone();
            waiting.push(tokio::spawn(async move {
                let r = c.simple_query("SELECT 1").await;
                (r, Instant::now())
            }));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            waiting.iter().all(|w| !w.is_finished()),
            "B or C did not wait"
        );

        let asked = Instant::now();
        let r = waiters[2].0.simple_query("SELECT 1").await;
        let took = asked.elapsed();
        let (code, message) = failure(r);
        assert_eq!(code, SqlState::TOO_MANY_CONNECTIONS.code(), "{message}");
        assert_eq!(
            message,
            "too many clients are waiting for a server connection (2); try again later"
        );
        assert!(took < Duration::from_secs(1), "D waited {took:?}");

        for w in waiting {
            let (r, at) = w.await.expect("waiting client");
            let waited = at - queued;
            let (code, message) = failure(r);
            assert_eq!(code, SqlState::TOO_MANY_CONNECTIONS.code(), "{message}");
            assert_eq!(message, "no server connection became free within 2s");
            assert!(
                waited >= Duration::from_millis(1900) && waited < Duration::from_secs(4),
                "gave up after {waited:?}"
            );
        }

        assert_eq!(value(&a, "SELECT pg_backend_pid()").await, pid);
        exec(&a, "COMMIT").await;
        for (c, _) in &waiters {
            assert_eq!(value(c, "SELECT pg_backend_pid()").await, pid);
        }
    });
}

/// Reads go to a standby, whose reported in_hot_standby differs from the
/// primary's: the pooler must not try to SET it (PostgreSQL refuses), and
/// the client's own settings follow it onto the standby.
#[test]
fn settings_follow_a_client_onto_a_standby() {
    let _net = hold(&NET_38);
    let rig = PoolerRig::start(38, 1, "pool_size = 1");
    // The rig is up when the pooler answers; reads go to the standby only
    // once the prober has seen it rise (on a loaded machine, not at once).
    let standby_up = common::node::wait_until(Duration::from_secs(20), || {
        match rig.try_psql("/* piha:standby */ SELECT pg_is_in_recovery()") {
            Ok(t) if t == "t" => Ok(()),
            other => Err(format!("a standby read answered {other:?}")),
        }
    });
    if let Err(e) = standby_up {
        panic!("the standby never took a read: {e}");
    }
    runtime().block_on(async {
        let (a, _a) = connect(&rig, Some("client_a")).await;
        let ask = "/* piha:standby */ SELECT pg_is_in_recovery(), \
                   current_setting('in_hot_standby'), \
                   current_setting('DateStyle'), current_setting('application_name')";
        assert_eq!(row(&a, ask).await, ["t", "on", "ISO, MDY", "client_a"]);
        exec(&a, "SET DateStyle = 'German'").await;
        assert_eq!(row(&a, ask).await, ["t", "on", "German, DMY", "client_a"]);
        let primary = "/* piha:primary */ SELECT pg_is_in_recovery(), \
                       current_setting('in_hot_standby'), current_setting('DateStyle')";
        assert_eq!(row(&a, primary).await, ["f", "off", "German, DMY"]);
        assert_eq!(row(&a, ask).await, ["t", "on", "German, DMY", "client_a"]);
    });
}

/// A client's socket whose reads can be held back, as a program busy
/// elsewhere holds them: its receive window then shuts, and the pooler's
/// writes to it wait.
struct Held {
    tcp: tokio::net::TcpStream,
    held: Arc<std::sync::atomic::AtomicBool>,
}

impl tokio::io::AsyncRead for Held {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        if self.held.load(Ordering::SeqCst) {
            let waker = cx.waker().clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(50)).await;
                waker.wake();
            });
            return std::task::Poll::Pending;
        }
        std::pin::Pin::new(&mut self.tcp).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for Held {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.tcp).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}

/// A client that reads a large result slowly is not cut off: the kernel
/// counts a peer that keeps its window shut as not answering, so clients
/// have their own, longer `client_tcp_user_timeout` (60 s built in), not
/// the servers' `tcp_user_timeout`. One that reads nothing for three times
/// the servers' timeout still gets every row.
#[test]
fn a_client_that_reads_slowly_is_not_cut_off() {
    let _net = hold(&NET_36);
    let rig = PoolerRig::start(36, 0, "tcp_user_timeout = \"2s\"");
    runtime().block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        // A small window, so that it shuts after little of the result.
        socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
        let tcp = socket.connect(rig.addr).await.expect("connect");
        let held = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stream = Held {
            tcp,
            held: held.clone(),
        };
        let (client, conn) = tokio_postgres::Config::new()
            .user(APP_USER)
            .password(APP_PASSWORD)
            .dbname(APP_DB)
            .connect_raw(stream, NoTls)
            .await
            .expect("log in through the pooler");
        let _conn = tokio::spawn(async move {
            let _ = conn.await;
        });
        held.store(true, Ordering::SeqCst);
        // About 20 MB: far more than the socket buffers on the way.
        let query = tokio::spawn(async move {
            client
                .simple_query("SELECT repeat('x', 1000) FROM generate_series(1, 20000)")
                .await
                .map(|msgs| {
                    msgs.iter()
                        .filter(|m| matches!(m, SimpleQueryMessage::Row(_)))
                        .count()
                })
        });
        tokio::time::sleep(Duration::from_secs(6)).await;
        held.store(false, Ordering::SeqCst);
        let rows = tokio::time::timeout(Duration::from_secs(60), query)
            .await
            .expect("the result arrives once the client reads again")
            .expect("query task");
        match rows {
            Ok(n) => assert_eq!(n, 20000, "rows received"),
            Err(e) => panic!(
                "the pooler gave up on a client that was only slow: {e}\nnode log:\n{}",
                rig.node.log(0)
            ),
        }
    });
}
