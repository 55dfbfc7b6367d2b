//! Read/write routing through the pooler against a real primary and two
//! streaming standbys (tests/common/pooler.rs): where each kind of statement
//! runs, standbys that lag, read-your-writes, a promotion done by hand, 500
//! clients on 20 server connections, and session mode.
//!
//! Where a statement ran is read from `inet_server_port()`: every server of
//! the harness listens on its own port. That function is stable but not in
//! the classifier's built-in list, so a statement calling it goes to the
//! primary until the function catalog has been loaded from the primary
//! (about a second after the pooler starts); [`wait_catalog`] waits for it.

mod common;

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::node::wait_until;
use common::pg::{PgServer, SERVICE_PASSWORD, SERVICE_USER};
use common::pooler::{APP_DB, APP_PASSWORD, APP_USER, PoolerRig};
use piha::pg::pooler::auth_query;
use tokio_postgres::SimpleQueryMessage;

/// How long one statement through the pooler may take before the test fails.
const STATEMENT_LIMIT: Duration = Duration::from_secs(30);

/// One client connection through the pooler: statements go one by one, each
/// its own simple-protocol Query (so in transaction mode each one leases a
/// server on its own), on the same connection.
struct Client {
    rt: tokio::runtime::Runtime,
    client: tokio_postgres::Client,
}

impl Client {
    fn connect(rig: &PoolerRig, db: &str) -> Client {
        Client::try_connect(rig, db).unwrap_or_else(|e| {
            panic!(
                "cannot connect through the pooler: {e}\nnode log:\n{}",
                rig.node.log(0)
            )
        })
    }

    fn try_connect(rig: &PoolerRig, db: &str) -> Result<Client, String> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        let conninfo = format!("{} password={APP_PASSWORD}", rig.conninfo(APP_USER, db));
        let client = rt.block_on(async {
            let connect = tokio_postgres::connect(&conninfo, tokio_postgres::NoTls);
            let (client, conn) = tokio::time::timeout(STATEMENT_LIMIT, connect)
                .await
                .map_err(|_| "connect timed out".to_string())?
                .map_err(|e| e.to_string())?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            Ok::<_, String>(client)
        })?;
        Ok(Client { rt, client })
    }

    /// Runs a call of the client (the extended protocol: prepare,
    /// query...), bounded by [`STATEMENT_LIMIT`].
    fn wait<T>(&self, call: impl Future<Output = Result<T, tokio_postgres::Error>>) -> T {
        self.rt
            .block_on(async { tokio::time::timeout(STATEMENT_LIMIT, call).await })
            .unwrap_or_else(|_| panic!("no answer within {STATEMENT_LIMIT:?}"))
            .unwrap_or_else(|e| panic!("through the pooler: {e}"))
    }

    /// The rows of `sql`, each as its columns joined by `|`.
    fn try_query(&self, sql: &str) -> Result<Vec<String>, String> {
        let messages = self
            .rt
            .block_on(async {
                tokio::time::timeout(STATEMENT_LIMIT, self.client.simple_query(sql)).await
            })
            .map_err(|_| format!("{sql}: no answer within {STATEMENT_LIMIT:?}"))?
            // A server's error shows as "db error" alone: its message and
            // code are what a test looks at.
            .map_err(|e| match e.as_db_error() {
                Some(d) => format!("{}: {}", d.code().code(), d.message()),
                None => e.to_string(),
            })?;
        Ok(messages
            .iter()
            .filter_map(|m| match m {
                SimpleQueryMessage::Row(row) => Some(
                    (0..row.len())
                        .map(|i| row.get(i).unwrap_or(""))
                        .collect::<Vec<_>>()
                        .join("|"),
                ),
                _ => None,
            })
            .collect())
    }

    fn query(&self, sql: &str) -> Vec<String> {
        self.try_query(sql)
            .unwrap_or_else(|e| panic!("through the pooler: {e}\nSQL: {sql}"))
    }

    /// The first row of `sql`.
    fn one(&self, sql: &str) -> String {
        self.query(sql)
            .into_iter()
            .next()
            .unwrap_or_else(|| panic!("no row: {sql}"))
    }

    /// The server port a statement answering `inet_server_port()` in its
    /// last column ran on.
    fn port(&self, sql: &str) -> u16 {
        last_port(&self.one(sql))
    }

    /// Runs `sql` `n` times and counts the runs per server port (the last
    /// column of its first row).
    fn spread(&self, sql: &str, n: usize) -> BTreeMap<u16, usize> {
        let mut seen = BTreeMap::new();
        for _ in 0..n {
            *seen.entry(self.port(sql)).or_insert(0) += 1;
        }
        seen
    }
}

fn last_port(row: &str) -> u16 {
    row.rsplit('|')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("not a port in its last column: {row:?}"))
}

/// The ports of the primary and the two standbys.
fn ports(rig: &PoolerRig) -> (u16, u16, u16) {
    let pg = &rig.pg;
    let s = pg.standbys();
    (pg.primary().port, s[0].port, s[1].port)
}

/// Waits until `SELECT inet_server_port()` is routed to a standby: the
/// function catalog has been loaded from the primary.
/// Sets the flag when dropped, also while a failed assertion unwinds.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

fn wait_catalog(rig: &PoolerRig, c: &Client) {
    let (primary, ..) = ports(rig);
    if let Err(e) = wait_until(Duration::from_secs(15), || {
        match c.port("SELECT inet_server_port()") {
            p if p == primary => Err("still on the primary".to_string()),
            _ => Ok(()),
        }
    }) {
        panic!(
            "a stable function's call never went to a standby: {e}\nnode log:\n{}",
            rig.node.log(0)
        );
    }
}

/// `pg_wal_replay_pause()` on `standby`, and waits until PostgreSQL has
/// taken the request (from then on it applies no new record).
fn pause_replay(standby: &PgServer) {
    standby.psql("SELECT pg_wal_replay_pause()");
    let state = standby.psql("SELECT pg_get_wal_replay_pause_state()");
    assert_ne!(state, "not paused", "{}: replay not paused", standby.name);
}

fn resume_replay(standby: &PgServer) {
    standby.psql("SELECT pg_wal_replay_resume()");
}

/// How many bytes `standby` has replayed less than the primary has written.
fn lag_bytes(rig: &PoolerRig, standby: &PgServer) -> u64 {
    let replayed = standby.lsn();
    rig.pg
        .primary()
        .psql(&format!(
            "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '{replayed}')::bigint"
        ))
        .parse()
        .expect("a byte count")
}

/// Polls `sql` (answering a port in its last column) until it runs on
/// `want`, within 10 s: the prober has seen the change.
fn wait_routed(rig: &PoolerRig, c: &Client, sql: &str, want: u16) -> Duration {
    match wait_until(Duration::from_secs(10), || match c.port(sql) {
        p if p == want => Ok(()),
        p => Err(format!("still routed to port {p}")),
    }) {
        Ok(((), took)) => took,
        Err(e) => panic!(
            "{sql} never went to port {want}: {e}\nnode log:\n{}",
            rig.node.log(0)
        ),
    }
}

/// `sql` in the app database on the primary itself (not through the pooler).
fn on_primary(rig: &PoolerRig, sql: &str) -> String {
    rig.pg.primary().psql_in(APP_DB, sql)
}

fn pgbench_ok(rig: &PoolerRig, args: &[&str], db: &str) -> String {
    let host = rig.addr.ip().to_string();
    let port = rig.addr.port().to_string();
    let mut all = vec!["-h", host.as_str(), "-p", port.as_str(), "-U", APP_USER];
    all.extend_from_slice(args);
    all.push(db);
    let out = rig.command("pgbench", &all);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "pgbench {args:?} failed: {stdout}\n{stderr}\nnode log:\n{}",
        rig.node.log(0)
    );
    stdout
}

/// The number after `prefix` on the line that starts with it.
fn figure(text: &str, prefix: &str) -> Option<f64> {
    let line = text.lines().find(|l| l.starts_with(prefix))?;
    line[prefix.len()..]
        .split_whitespace()
        .next()?
        .split('/')
        .next()?
        .parse()
        .ok()
}

/// Acceptance: reads are observed on the standbys and writes on the
/// primary, writes hidden in reads (a writable CTE, a volatile function,
/// nextval) and locking reads included; a transaction stays on the
/// primary; a standby lagging more than `max_lag` gets no reads, and with
/// none left the primary takes them.
#[test]
fn reads_go_to_standbys_within_max_lag_and_every_write_to_the_primary() {
    let mut rig = PoolerRig::start(31, 2, r#"max_lag = "256KiB""#);
    let (primary, s1, s2) = ports(&rig);
    let c = Client::connect(&rig, APP_DB);
    wait_catalog(&rig, &c);

    // Reads: only standbys, both of them.
    let reads = c.spread("SELECT inet_server_port()", 40);
    assert!(
        reads.keys().all(|p| *p == s1 || *p == s2),
        "a read ran on the primary ({primary}): {reads:?}"
    );
    assert!(
        reads.len() == 2 && reads.values().all(|n| *n >= 10),
        "reads not spread over both standbys ({s1}, {s2}): {reads:?}"
    );
    // The same through the extended protocol (a prepared statement).
    let prepared = c.wait(c.client.prepare("SELECT inet_server_port()"));
    let mut extended = BTreeMap::new();
    for _ in 0..20 {
        let row = c.wait(c.client.query_one(&prepared, &[]));
        *extended.entry(row.get::<_, i32>(0) as u16).or_insert(0) += 1;
    }
    assert!(
        extended.keys().all(|p| *p == s1 || *p == s2) && extended.len() == 2,
        "prepared reads: {extended:?} (standbys {s1}, {s2})"
    );

    // Writes: the primary, and the primary has them.
    c.query(
        "CREATE TABLE items (id int PRIMARY KEY, note text);
         CREATE TABLE calls (port int);
         CREATE TABLE filler (id int, pad text);
         CREATE SEQUENCE seq;
         CREATE FUNCTION my_volatile_function() RETURNS int LANGUAGE plpgsql VOLATILE AS
           $$ BEGIN INSERT INTO calls VALUES (inet_server_port()); RETURN inet_server_port(); END $$;
         CREATE FUNCTION my_stable_function() RETURNS int LANGUAGE sql STABLE AS
           'SELECT inet_server_port()';",
    );
    assert_eq!(
        c.port("INSERT INTO items VALUES (1, 'one'), (2, 'two') RETURNING inet_server_port()"),
        primary
    );
    assert_eq!(
        on_primary(&rig, "SELECT string_agg(note, ',' ORDER BY id) FROM items"),
        "one,two"
    );
    // A write inside a CTE of a SELECT: a standby would refuse it.
    assert_eq!(
        c.one(
            "WITH d AS (DELETE FROM items WHERE id = 2 RETURNING id) \
             SELECT count(*), inet_server_port() FROM d"
        ),
        format!("1|{primary}")
    );
    assert_eq!(
        on_primary(&rig, "SELECT count(*) FROM items WHERE id = 2"),
        "0"
    );
    for n in 1..=3 {
        assert_eq!(
            c.one("SELECT nextval('seq'), inet_server_port()"),
            format!("{n}|{primary}")
        );
    }
    assert_eq!(on_primary(&rig, "SELECT last_value FROM seq"), "3");
    let next = c.wait(
        c.client
            .query_one("SELECT nextval('seq')::int, inet_server_port()", &[]),
    );
    assert_eq!(
        (next.get::<_, i32>(0), next.get::<_, i32>(1) as u16),
        (4, primary)
    );
    // Locking reads.
    for lock in ["UPDATE", "NO KEY UPDATE", "SHARE", "KEY SHARE"] {
        assert_eq!(
            c.port(&format!(
                "SELECT id, inet_server_port() FROM items WHERE id = 1 FOR {lock}"
            )),
            primary,
            "FOR {lock}"
        );
    }
    // Everything inside a transaction, reads included.
    c.query("BEGIN");
    for _ in 0..3 {
        assert_eq!(c.port("SELECT inet_server_port()"), primary, "inside BEGIN");
    }
    c.query("INSERT INTO items VALUES (3, 'three')");
    assert_eq!(
        c.port("SELECT count(*), inet_server_port() FROM items"),
        primary
    );
    c.query("COMMIT");
    // Hints.
    assert_eq!(
        c.port("/* piha:primary */ SELECT inet_server_port()"),
        primary
    );
    assert_ne!(
        c.port("/* piha:standby */ SELECT inet_server_port()"),
        primary
    );

    // Functions the catalog does not know yet (made after it was loaded):
    // the primary, whatever they do.
    assert_eq!(c.port("SELECT my_volatile_function()"), primary);
    assert_eq!(c.port("SELECT my_stable_function()"), primary);
    // Restarted, the pooler loads them with the catalog: the stable one goes
    // to a standby, the volatile one still to the primary.
    drop(c);
    rig.node.kill(0);
    rig.node.start(0);
    let c = match wait_until(Duration::from_secs(20), || {
        Client::try_connect(&rig, APP_DB)
    }) {
        Ok((c, _)) => c,
        Err(e) => panic!(
            "the restarted pooler did not answer: {e}\n{}",
            rig.node.log(0)
        ),
    };
    if let Err(e) = wait_until(Duration::from_secs(15), || {
        match c.port("SELECT my_stable_function()") {
            p if p == primary => Err("still on the primary".to_string()),
            _ => Ok(()),
        }
    }) {
        panic!(
            "the catalog never knew my_stable_function: {e}\n{}",
            rig.node.log(0)
        );
    }
    for _ in 0..5 {
        assert_eq!(c.port("SELECT my_volatile_function()"), primary);
    }
    assert_eq!(
        on_primary(&rig, "SELECT count(*), min(port), max(port) FROM calls"),
        format!("6|{primary}|{primary}")
    );

    // Lag. Both standbys paused, a few bytes behind: still read from, and
    // (read_your_writes is off) a row just written is not there.
    rig.pg.wait_replayed();
    let standbys = rig.pg.standbys();
    for s in standbys {
        pause_replay(s);
    }
    c.query("INSERT INTO items VALUES (100, 'after the pause')");
    let stale = c.spread(
        "SELECT count(*), inet_server_port() FROM items WHERE id = 100",
        10,
    );
    assert!(
        stale.keys().all(|p| *p == s1 || *p == s2),
        "paused standbys within max_lag get reads: {stale:?}"
    );
    for _ in 0..4 {
        let row = c.one("SELECT count(*), inet_server_port() FROM items WHERE id = 100");
        assert!(row.starts_with("0|"), "a paused standby saw the row: {row}");
    }

    // ~1.3 MiB of WAL: both further behind than max_lag, so no standby
    // qualifies and reads go to the primary (and find the row).
    c.query("INSERT INTO filler SELECT g, repeat('x', 500) FROM generate_series(1, 2500) g");
    for s in standbys {
        let lag = lag_bytes(&rig, s);
        assert!(lag > 256 * 1024, "{} only {lag} bytes behind", s.name);
    }
    let read_100 = "SELECT count(*), inet_server_port() FROM items WHERE id = 100";
    let took = wait_routed(&rig, &c, read_100, primary);
    println!("reads fell back to the primary {took:?} after the standbys fell behind");
    for _ in 0..10 {
        assert_eq!(c.one(read_100), format!("1|{primary}"));
    }

    // standby2 catches up, standby1 stays paused and behind: reads go to
    // standby2 only.
    resume_replay(&standbys[1]);
    standbys[1].wait_replay(&rig.pg.primary().lsn());
    let took = wait_routed(&rig, &c, read_100, s2);
    println!("standby2 got reads again {took:?} after it caught up");
    let reads = c.spread(read_100, 30);
    assert_eq!(
        reads,
        BTreeMap::from([(s2, 30)]),
        "standby1 ({s1}) is {} bytes behind, over max_lag",
        lag_bytes(&rig, &standbys[0])
    );
    assert!(lag_bytes(&rig, &standbys[0]) > 256 * 1024);

    // standby1 catches up: both get reads again.
    resume_replay(&standbys[0]);
    standbys[0].wait_replay(&rig.pg.primary().lsn());
    let took = wait_routed(&rig, &c, read_100, s1);
    println!("standby1 got reads again {took:?} after it caught up");
    let reads = c.spread(read_100, 40);
    assert!(
        reads.len() == 2 && reads.keys().all(|p| *p == s1 || *p == s2),
        "{reads:?}"
    );
    for _ in 0..4 {
        assert!(c.one(read_100).starts_with("1|"));
    }
}

/// Acceptance: with `read_your_writes`, a client's read after its write
/// finds the write, even with a standby that is stale; its reads come back
/// to a standby once one has replayed the write. Session mode: a client
/// keeps one server (pgbench with prepared and extended statements works).
#[test]
fn read_your_writes_and_session_mode() {
    let rig = PoolerRig::start(
        32,
        2,
        "read_your_writes = true\ndatabases = [{ name = \"sess\", pool_mode = \"session\" }]",
    );
    let (primary, s1, s2) = ports(&rig);
    let c = Client::connect(&rig, APP_DB);
    wait_catalog(&rig, &c);
    c.query("CREATE TABLE ryw (id int PRIMARY KEY)");
    rig.pg.wait_replayed();
    let standbys = rig.pg.standbys();
    pause_replay(&standbys[0]);

    let mut misses = Vec::new();
    let mut ran_on: BTreeMap<u16, usize> = BTreeMap::new();
    let started = Instant::now();
    for id in 1..=200 {
        c.query(&format!("INSERT INTO ryw VALUES ({id})"));
        let row = c.one(&format!(
            "SELECT count(*), inet_server_port() FROM ryw WHERE id = {id}"
        ));
        *ran_on.entry(last_port(&row)).or_insert(0) += 1;
        if !row.starts_with("1|") {
            misses.push((id, row));
        }
    }
    println!(
        "read-your-writes: 200 INSERT+SELECT pairs in {:?}; the SELECTs ran on {ran_on:?} \
         (primary {primary}, standby1 {s1} paused, standby2 {s2})",
        started.elapsed()
    );
    assert!(
        misses.is_empty(),
        "reads missed the client's own write: {misses:?}"
    );
    assert!(
        !ran_on.contains_key(&s1),
        "a read ran on the stale standby1: {ran_on:?}"
    );

    // Reads a little after the write: the prober may have seen standby2
    // replay it by then, and the read may go there; it finds the row
    // wherever it runs.
    let mut ran_on: BTreeMap<u16, usize> = BTreeMap::new();
    for id in 201..=206 {
        c.query(&format!("INSERT INTO ryw VALUES ({id})"));
        std::thread::sleep(Duration::from_millis(700));
        let row = c.one(&format!(
            "SELECT count(*), inet_server_port() FROM ryw WHERE id = {id}"
        ));
        *ran_on.entry(last_port(&row)).or_insert(0) += 1;
        assert!(
            row.starts_with("1|"),
            "read-your-writes missed row {id}: {row}"
        );
    }
    println!("read-your-writes, reads 0.7 s after the write: ran on {ran_on:?}");
    assert!(
        !ran_on.contains_key(&s1),
        "a read ran on the stale standby1: {ran_on:?}"
    );

    // No more writes: once standby2 has replayed them (and the prober has
    // seen it), this client's reads go to it again; never to standby1,
    // which has not.
    let took = wait_routed(&rig, &c, "SELECT inet_server_port()", s2);
    println!("reads back on a standby {took:?} after the last write");
    let reads = c.spread("SELECT count(*), inet_server_port() FROM ryw", 10);
    assert_eq!(reads, BTreeMap::from([(s2, 10)]));
    assert_eq!(c.one("SELECT count(*) FROM ryw"), "206");
    resume_replay(&standbys[0]);

    // Session mode (database "sess"): pgbench prepared and extended.
    rig.pg.create_database("sess", APP_USER);
    pgbench_ok(&rig, &["-i", "-s", "1", "-q"], "sess");
    for mode in ["prepared", "extended"] {
        let out = pgbench_ok(
            &rig,
            &["-n", "-c", "8", "-j", "2", "-t", "100", "-M", mode],
            "sess",
        );
        assert!(
            out.contains("number of failed transactions: 0")
                && out.contains("number of transactions actually processed: 800/800"),
            "session mode, pgbench -M {mode}: {out}"
        );
    }
    // One client, one server, for its whole life: the same backend pid,
    // and session state (a temp table, a setting) stays.
    let sc = Client::connect(&rig, "sess");
    let first = sc.one("SELECT pg_backend_pid()");
    sc.query("CREATE TEMP TABLE mine (x int)");
    sc.query("SET application_name = 'kept'");
    for x in 0..20 {
        assert_eq!(sc.one("SELECT pg_backend_pid()"), first);
        sc.query(&format!("INSERT INTO mine VALUES ({x})"));
    }
    assert_eq!(sc.one("SELECT count(*) FROM mine"), "20");
    assert_eq!(sc.one("SHOW application_name"), "kept");
    assert_eq!(sc.port("SELECT inet_server_port()"), primary);
}

/// Acceptance: after the primary dies and a standby is promoted by hand,
/// writes through the pooler reach the new primary within 5 s, and no
/// write ever runs on a server in recovery. Meanwhile a write waits for
/// the new primary instead of failing (as a PgBouncer client waits out a
/// server that is down), and a cancel ends that wait.
#[test]
fn a_manual_promotion_is_followed_within_five_seconds() {
    let rig = PoolerRig::start(33, 2, "");
    let (primary, s1, s2) = ports(&rig);
    let c = Client::connect(&rig, APP_DB);
    c.query("CREATE TABLE w (id serial PRIMARY KEY, port int)");
    drop(c);
    rig.pg.wait_replayed();
    let write = "INSERT INTO w (port) VALUES (inet_server_port()) RETURNING port";
    // A client connected before the primary dies, for the cancel below.
    let canceler = Client::connect(&rig, APP_DB);

    // A writer that keeps trying, one new connection per attempt, from
    // before the primary dies until after the new one takes writes.
    let stop = AtomicBool::new(false);
    let attempts: Mutex<Vec<Result<String, String>>> = Mutex::new(Vec::new());
    let (follow, main_errors) = std::thread::scope(|scope| {
        // The writer ends only when told: a failed assertion below would
        // otherwise wait for it forever. (A waiting write ends by itself,
        // after wait_timeout.)
        let _stop = StopOnDrop(&stop);
        scope.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                let r = rig.try_psql(write);
                attempts.lock().expect("attempts").push(r);
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        // Until the writer has written on the old primary.
        let written = wait_until(Duration::from_secs(10), || {
            let done = attempts.lock().expect("attempts").iter().any(|a| a.is_ok());
            if done {
                Ok(())
            } else {
                Err("no write yet".to_string())
            }
        });
        assert!(written.is_ok(), "no write through the pooler: {attempts:?}");
        rig.pg.primary().stop_immediate();
        // Until the prober has called the primary down (`fall` probes).
        let down = format!("PostgreSQL {} is down", rig.pg.primary().socket_addr());
        let seen = wait_until(Duration::from_secs(10), || {
            if rig.node.log(0).contains(&down) {
                Ok(())
            } else {
                Err("not yet".to_string())
            }
        });
        // While there is no primary, reads go on on the standbys (as with
        // Pgpool-II). Which server answers, without a function the router
        // may not know yet (its catalog is loaded from the primary).
        let read = rig.try_psql("SELECT setting FROM pg_settings WHERE name = 'port'");
        let on_standby = read
            .as_ref()
            .is_ok_and(|p| *p == s1.to_string() || *p == s2.to_string());
        // A write waits, and a cancel ends its wait at once.
        let (cancel_waited, canceled, cancel_took) = canceler.rt.block_on(async {
            let token = canceler.client.cancel_token();
            let query = canceler.client.simple_query(write);
            tokio::pin!(query);
            if let Ok(answer) = tokio::time::timeout(Duration::from_secs(1), &mut query).await {
                // Answered without waiting: nothing to cancel.
                return (false, (Ok(()), Ok(answer)), Duration::ZERO);
            }
            let asked = Instant::now();
            let sent = token.cancel_query(tokio_postgres::NoTls).await;
            let answer = tokio::time::timeout(Duration::from_secs(10), query).await;
            (true, (sent, answer), asked.elapsed())
        });
        // And a write sent now is answered by the new primary once there is one.
        let waiting = scope.spawn(|| {
            let r = rig.try_psql(write);
            (r, Instant::now())
        });
        std::thread::sleep(Duration::from_secs(1));
        let still_waiting = !waiting.is_finished();
        // The console counts it as waiting, as it would a client queued
        // for a busy pool.
        let conninfo = format!(
            "{} password={SERVICE_PASSWORD}",
            rig.conninfo(SERVICE_USER, "piha")
        );
        let pools = rig.command("psql", &["-XAtq", "-F,", "-c", "SHOW POOLS", &conninfo]);
        let pools = String::from_utf8_lossy(&pools.stdout).into_owned();
        let app_row: Option<Vec<&str>> = pools
            .lines()
            .map(|l| l.split(',').collect::<Vec<_>>())
            .find(|row| row.first() == Some(&APP_DB) && row.get(1) == Some(&APP_USER));
        let column = |i: usize| -> Option<u64> { app_row.as_ref()?.get(i)?.parse().ok() };
        let cl_waiting = column(3);
        // maxwait and maxwait_us: dashboards alert on them.
        let max_wait_us = column(13).zip(column(14)).map(|(s, us)| s * 1_000_000 + us);
        assert!(
            seen.is_ok(),
            "the pooler never saw the primary go:\n{}",
            rig.node.log(0)
        );
        assert!(on_standby, "a read while there was no primary: {read:?}");
        assert!(
            cancel_waited,
            "a write with no primary did not wait: {canceled:?}"
        );
        let (code, message) = match &canceled {
            (Ok(()), Ok(Err(e))) => (
                e.code().map(|c| c.code().to_string()),
                e.as_db_error().map(|d| d.message().to_string()),
            ),
            other => panic!("the canceled write: {other:?}"),
        };
        assert_eq!(code.as_deref(), Some("57014"), "{message:?}");
        assert_eq!(
            message.as_deref(),
            Some("the query was canceled while waiting for a server connection")
        );
        assert!(
            cancel_took < Duration::from_secs(2),
            "the cancel took {cancel_took:?}"
        );
        assert!(still_waiting, "a write with no primary did not wait");
        assert!(
            cl_waiting.is_some_and(|n| n >= 1),
            "SHOW POOLS while a write waits for a primary:\n{pools}"
        );
        assert!(
            max_wait_us.is_some_and(|us| us >= 500_000),
            "SHOW POOLS' maxwait while a write has waited a second for a primary:\n{pools}"
        );
        let promote = Instant::now();
        rig.pg.standbys()[0].promote();
        let promoted = promote.elapsed();
        let (waited_write, answered) = waiting.join().expect("the waiting write");
        assert_eq!(
            waited_write,
            Ok(s1.to_string()),
            "the write sent while there was no primary\n{}",
            rig.node.log(0)
        );
        println!(
            "a write sent while there was no primary was answered {:?} after the promote call",
            answered.saturating_duration_since(promote)
        );
        let mut errors = Vec::new();
        let follow = loop {
            match rig.try_psql(write) {
                Ok(port) if port == s1.to_string() => break promote.elapsed(),
                Ok(port) => errors.push(format!("written on port {port}")),
                Err(e) => errors.push(e),
            }
            assert!(
                promote.elapsed() < Duration::from_secs(15),
                "no write on the new primary 15 s after the promotion: {errors:?}\n{}",
                rig.node.log(0)
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        println!(
            "promotion: pg_promote took {promoted:?}; the first write through the pooler \
             landed on the new primary {follow:?} after the promote call"
        );
        // Let the writer run on the new primary for a moment.
        std::thread::sleep(Duration::from_millis(500));
        stop.store(true, Ordering::Relaxed);
        (follow, errors)
    });
    assert!(
        follow <= Duration::from_secs(5),
        "the pooler followed the promotion after {follow:?}\n{}",
        rig.node.log(0)
    );
    let attempts = attempts.into_inner().expect("attempts");
    let mut by_port: BTreeMap<String, usize> = BTreeMap::new();
    let mut errors = main_errors;
    for a in &attempts {
        match a {
            Ok(port) => *by_port.entry(port.clone()).or_insert(0) += 1,
            Err(e) => errors.push(e.clone()),
        }
    }
    println!(
        "writer: {} attempts, written on {by_port:?} (old primary {primary}, standby1 {s1}), \
         {} failed",
        attempts.len(),
        errors.len()
    );
    let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
    for e in &errors {
        let line = e.lines().next().unwrap_or_default();
        let kind = line;
        *kinds.entry(kind).or_insert(0) += 1;
    }
    println!("errors: {kinds:?}");
    // Only writes caught on the dying primary may fail; the others waited.
    let refused: Vec<&String> = errors
        .iter()
        .filter(|e| e.contains("no primary is available") || e.contains("cannot connect"))
        .collect();
    assert!(
        refused.is_empty(),
        "writes refused instead of waiting: {refused:?}"
    );
    let read_only: Vec<&String> = errors.iter().filter(|e| e.contains("read-only")).collect();
    assert!(
        read_only.is_empty(),
        "a write ran on a standby: {read_only:?}"
    );
    assert!(
        !by_port.contains_key(&s2.to_string()),
        "a write on standby2: {by_port:?}"
    );
    assert!(
        by_port.contains_key(&primary.to_string()) && by_port.contains_key(&s1.to_string()),
        "{by_port:?}"
    );
    // What was written is on the new primary; it is the primary now.
    assert!(!rig.pg.standbys()[0].is_in_recovery());
    let rows: usize = rig.pg.standbys()[0]
        .psql_in(APP_DB, &format!("SELECT count(*) FROM w WHERE port = {s1}"))
        .parse()
        .expect("count");
    assert!(rows >= 1);
    let log = rig.node.log(0);
    assert!(
        log.contains(&format!(
            "{} is up as primary",
            rig.pg.standbys()[0].socket_addr()
        )),
        "the node did not report the new primary:\n{log}"
    );
}

/// Between a server's death and the prober's noticing it (`fall` probes),
/// the router still names the dead server. Meanwhile a read routed to a
/// dead standby goes once to another server, and a new pool's first login
/// (its greeting) and an auth_query lookup, which need some server and
/// not the primary, go to a standby when the primary is dead; before,
/// each failed although a server that could answer was up. The prober
/// here looks once a minute, so the router names the stopped servers for
/// the whole test.
#[test]
fn while_dead_servers_are_still_named_reads_and_new_logins_go_to_live_ones() {
    // The auth_query the README suggests (pg_authid, honouring VALID UNTIL).
    let extra = format!(
        "probe = {{ interval = \"60s\", timeout = \"1s\", fall = 3 }}\nauth_query = \"{}\"\n\
         wait_timeout = \"2s\"\n",
        auth_query::SUGGESTED
    );
    let rig = PoolerRig::start(32, 2, &extra);
    let primary = rig.pg.primary().port;
    let (standby, dead_standby) = (rig.pg.standbys()[0].port, rig.pg.standbys()[1].port);
    // A user the cluster file does not know: auth_query finds it.
    rig.pg
        .primary()
        .psql("CREATE ROLE late LOGIN PASSWORD 'late-test-password'");
    rig.pg.primary().psql("CREATE DATABASE other OWNER late");
    let port_sql = "SELECT setting FROM pg_settings WHERE name = 'port'";
    let late = |db: &str| {
        let conninfo = format!("{} password=late-test-password", rig.conninfo("late", db));
        let out = rig.command("psql", &["-XAtq", "-c", port_sql, &conninfo]);
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    };
    // With the primary up, auth_query works (looked up on the primary).
    late(APP_DB).unwrap_or_else(|e| panic!("auth_query login: {e}\n{}", rig.node.log(0)));
    rig.pg.wait_replayed();

    // Reads take turns over the standbys: half of them are meant for the
    // stopped one, and every one is answered elsewhere.
    rig.pg.standbys()[1].stop_immediate();
    let reader = Client::connect(&rig, APP_DB);
    let answered = reader.spread(port_sql, 10);
    assert!(
        !answered.contains_key(&dead_standby) && answered.values().sum::<usize>() == 10,
        "reads with a standby stopped: {answered:?} (primary {primary}, standbys {standby}, \
         {dead_standby})"
    );
    drop(reader);
    // The status page counts them against the stopped standby.
    let status = rig.node.status(0).expect("status");
    let redispatched = status["pooler"]["backends"]
        .as_array()
        .and_then(|all| {
            all.iter().find(|b| {
                b["address"]
                    .as_str()
                    .is_some_and(|a| a.ends_with(&format!(":{dead_standby}")))
            })
        })
        .and_then(|b| b["redispatched_total"].as_u64());
    assert!(
        redispatched.is_some_and(|n| n >= 1),
        "redispatched from the stopped standby: {redispatched:?}"
    );

    rig.pg.primary().stop_immediate();
    // A user of the file, into a pool nobody has used yet.
    let c = Client::try_connect(&rig, "other")
        .unwrap_or_else(|e| panic!("a new pool's login: {e}\n{}", rig.node.log(0)));
    assert_eq!(c.one(port_sql), standby.to_string());
    // An auth_query user, into another new pool.
    let read = late("other");
    assert_eq!(
        read.as_deref(),
        Ok(standby.to_string().as_str()),
        "{}",
        rig.node.log(0)
    );
    // The router did name the dead primary: writes still go there. Each
    // try is refused, so the write waits for the primary to come back or
    // another to be named, and fails with the reason once `wait_timeout`
    // has passed.
    let asked = Instant::now();
    let write = c.try_query("CREATE TABLE t (id int)");
    let took = asked.elapsed();
    assert!(
        write.as_ref().is_err_and(|e| e.contains(&format!(
            "cannot connect to PostgreSQL at {}",
            rig.pg.primary().socket_addr()
        ))),
        "{write:?}"
    );
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(4),
        "the write failed after {took:?}, not after wait_timeout (2 s)"
    );
}

/// Acceptance: 500 clients through a pool of 20 server connections per
/// server: no failed transaction, and PostgreSQL never sees more than 20
/// of the pooler's connections for the app user on any server.
#[test]
fn five_hundred_clients_share_twenty_server_connections() {
    let rig = PoolerRig::start(34, 2, "pool_size = 20");
    pgbench_ok(&rig, &["-i", "-s", "1", "-q"], APP_DB);
    rig.pg.wait_replayed();

    let done = AtomicBool::new(false);
    let (out, most) = std::thread::scope(|scope| {
        let sampler = scope.spawn(|| {
            let mut most = vec![0usize; rig.pg.servers().len()];
            let mut samples = 0;
            while !done.load(Ordering::Relaxed) {
                for (i, server) in rig.pg.servers().iter().enumerate() {
                    let n: usize = server
                        .psql("SELECT count(*) FROM pg_stat_activity WHERE usename = 'app'")
                        .parse()
                        .expect("count");
                    most[i] = most[i].max(n);
                }
                samples += 1;
                std::thread::sleep(Duration::from_millis(100));
            }
            (most, samples)
        });
        // 500 SCRAM logins take a few seconds on a loaded machine; -T
        // includes them.
        let out = pgbench_ok(
            &rig,
            &[
                "-n", "-S", "-c", "500", "-j", "2", "-T", "15", "-M", "simple",
            ],
            APP_DB,
        );
        done.store(true, Ordering::Relaxed);
        let (most, samples) = sampler.join().expect("sampler");
        println!("{samples} samples of pg_stat_activity");
        (out, most)
    });
    let connecting = figure(&out, "initial connection time = ").unwrap_or(0.0);
    let tps = figure(&out, "tps = ").unwrap_or(0.0);
    let processed = figure(&out, "number of transactions actually processed: ").unwrap_or(0.0);
    println!(
        "500 clients, pool_size 20: {processed} transactions, {tps:.0} tps, {connecting:.0} ms \
         to connect them all; most app connections seen per server (primary, standby1, \
         standby2): {most:?}"
    );
    assert!(
        out.contains("number of clients: 500") && out.contains("number of failed transactions: 0"),
        "{out}"
    );
    assert!(processed > 500.0, "{out}");
    assert!(
        most.iter().all(|n| *n <= 20),
        "more than 20 server connections on a server: {most:?}"
    );
    assert!(
        most[1] > 0 && most[2] > 0,
        "the standbys took no reads: {most:?}"
    );
}
