//! Real client drivers through the pooler in transaction mode: tokio-postgres,
//! psycopg 3 and node-postgres each run a scripted workload of named
//! prepared statements, transactions and deliberate errors with more client
//! connections than server connections (`pool_size = 2`, 6 clients), so a
//! statement is prepared on one server and bound on another, which is what
//! breaks poolers that do not track them. Every test also checks that the
//! pooler logged no desync or protocol error.
//!
//! Nets 127.61.40-42 belong to these tests.

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::node::wait_until;
use common::pooler::{APP_DB, APP_PASSWORD, APP_USER, PoolerRig};

/// Concurrent client connections each workload opens: three times the pool.
const CLIENTS: usize = 6;
const POOL: &str = "pool_mode = \"transaction\"\npool_size = 2";

/// A rig whose node logs the pooler at debug, so a client session that
/// ends on a desync or protocol error leaves its reason in the log.
fn start_rig(net: u8) -> PoolerRig {
    let mut rig = PoolerRig::start(net, 0, POOL);
    rig.node.kill(0);
    rig.node
        .start_with_env(0, &[("PIHA_LOG", "info,piha::pg::pooler=debug")]);
    if let Err(e) = wait_until(Duration::from_secs(20), || rig.try_psql("SELECT 1")) {
        panic!(
            "the pooler did not come back: {e}\nnode log:\n{}",
            rig.node.log(0)
        );
    }
    rig.psql(
        "CREATE TABLE items (id bigserial PRIMARY KEY, worker int NOT NULL, \
         n int NOT NULL, val bigint NOT NULL)",
    );
    rig
}

/// No client session of the pooler ended on a desync, a protocol error or a
/// lost server connection. A client that ends cleanly (Terminate or EOF)
/// logs nothing; any other end logs "pooler client ended" with its reason.
fn assert_clean_log(rig: &PoolerRig) {
    let log = rig.node.log(0);
    let bad: Vec<&str> = log
        .lines()
        .filter(|l| {
            let l = l.to_ascii_lowercase();
            [
                "pooler client ended",
                "desync",
                "does not match the request",
                "protocol",
                "connection was lost",
                "malformed",
                "unexpected message",
                "internal:",
                "panicked",
            ]
            .iter()
            .any(|w| l.contains(w))
        })
        .collect();
    assert!(
        bad.is_empty(),
        "the pooler logged errors:\n{}",
        bad.join("\n")
    );
}

fn password_conninfo(rig: &PoolerRig) -> String {
    format!("{} password={APP_PASSWORD}", rig.conninfo(APP_USER, APP_DB))
}

// ---------------------------------------------------------------- Rust

mod rust {
    use tokio_postgres::error::SqlState;
    use tokio_postgres::types::{ToSql, Type};
    use tokio_postgres::{Client, NoTls};

    /// What one worker did, to compare with the database afterwards.
    #[derive(Default, Debug)]
    pub struct Tally {
        pub rows: i64,
        pub sum: i64,
        pub deliberate_errors: u32,
    }

    fn err(step: &str) -> impl Fn(tokio_postgres::Error) -> String + '_ {
        move |e| format!("{step}: {e} ({:?})", e.as_db_error())
    }

    fn check(ok: bool, what: impl FnOnce() -> String) -> Result<(), String> {
        if ok { Ok(()) } else { Err(what()) }
    }

    pub async fn worker(conninfo: String, w: i32) -> Result<Tally, String> {
        let (mut client, conn) = tokio_postgres::connect(&conninfo, NoTls)
            .await
            .map_err(err("connect"))?;
        let conn = tokio::spawn(conn);
        let tally = run(&mut client, w).await;
        drop(client);
        match conn.await {
            Ok(Ok(())) => tally,
            Ok(Err(e)) => Err(format!("worker {w}: connection: {e}")),
            Err(e) => Err(format!("worker {w}: connection task: {e}")),
        }
        .map_err(|e| format!("worker {w}: {e}"))
    }

    async fn run(client: &mut Client, w: i32) -> Result<Tally, String> {
        let mut t = Tally::default();
        let ins = client
            .prepare("INSERT INTO items (worker, n, val) VALUES ($1, $2, $3) RETURNING id, val")
            .await
            .map_err(err("prepare insert"))?;
        let get = client
            .prepare("SELECT val, n FROM items WHERE id = $1")
            .await
            .map_err(err("prepare get"))?;
        let upd = client
            .prepare("UPDATE items SET val = val + $2 WHERE worker = $1 AND n % 2 = 0")
            .await
            .map_err(err("prepare update"))?;
        let sum = client
            .prepare("SELECT count(*), coalesce(sum(val), 0)::bigint FROM items WHERE worker = $1")
            .await
            .map_err(err("prepare sum"))?;
        let div = client
            .prepare("SELECT 100 / $1::int")
            .await
            .map_err(err("prepare div"))?;

        // Autocommit: each execution is its own transaction, so the server
        // changes between them and statements get prepared where missing.
        let mut n = 0;
        for _ in 0..30 {
            n += 1;
            let val = i64::from(w) * 1000 + i64::from(n);
            let row = client
                .query_one(&ins, &[&w, &n, &val])
                .await
                .map_err(err("insert"))?;
            let id: i64 = row.get(0);
            check(row.get::<_, i64>(1) == val, || "insert returned".into())?;
            t.rows += 1;
            t.sum += val;
            let row = client.query_one(&get, &[&id]).await.map_err(err("get"))?;
            check(
                row.get::<_, i64>(0) == val && row.get::<_, i32>(1) == n,
                || format!("get {id}: {row:?}"),
            )?;
        }

        // One statement, prepared once, in many transactions.
        for _ in 0..10 {
            let tx = client.transaction().await.map_err(err("begin"))?;
            for _ in 0..3 {
                n += 1;
                let val = i64::from(n);
                tx.query_one(&ins, &[&w, &n, &val])
                    .await
                    .map_err(err("insert in tx"))?;
                t.rows += 1;
                t.sum += val;
            }
            let row = tx.query_one(&sum, &[&w]).await.map_err(err("sum in tx"))?;
            check(
                row.get::<_, i64>(0) == t.rows && row.get::<_, i64>(1) == t.sum,
                || format!("sum in tx: {row:?} != {t:?}"),
            )?;
            tx.commit().await.map_err(err("commit"))?;
        }

        // Rolled back: nothing stays.
        let tx = client.transaction().await.map_err(err("begin"))?;
        tx.query_one(&ins, &[&w, &-1i32, &1_000_000i64])
            .await
            .map_err(err("insert to roll back"))?;
        tx.rollback().await.map_err(err("rollback"))?;

        // Updates through a prepared statement, rows affected checked.
        let even = client
            .query_one(
                "SELECT count(*) FROM items WHERE worker = $1 AND n % 2 = 0",
                &[&w],
            )
            .await
            .map_err(err("count even"))?
            .get::<_, i64>(0);
        let changed = client
            .execute(&upd, &[&w, &5i64])
            .await
            .map_err(err("update"))?;
        check(changed as i64 == even, || {
            format!("update changed {changed}, {even} even rows")
        })?;
        t.sum += 5 * even;

        // The unnamed statement: Parse "" + Bind + Describe + Execute + Sync.
        for i in 0..10i32 {
            let row = client
                .query_typed_one(
                    "SELECT $1::int + $2::int",
                    &[(&i, Type::INT4), (&w, Type::INT4)],
                )
                .await
                .map_err(err("unnamed"))?;
            check(row.get::<_, i32>(0) == i + w, || "unnamed result".into())?;
        }

        // Describe only: prepared, its description read, never executed,
        // then dropped (tokio-postgres sends Close).
        let described = client
            .prepare("SELECT id, worker, val, now() AS at FROM items WHERE worker = $1 AND n > $2")
            .await
            .map_err(err("prepare describe-only"))?;
        let cols: Vec<(&str, Type)> = described
            .columns()
            .iter()
            .map(|c| (c.name(), c.type_().clone()))
            .collect();
        check(
            cols == [
                ("id", Type::INT8),
                ("worker", Type::INT4),
                ("val", Type::INT8),
                ("at", Type::TIMESTAMPTZ),
            ] && described.params() == [Type::INT4, Type::INT4],
            || format!("describe-only: {cols:?} {:?}", described.params()),
        )?;
        drop(described);

        // Close and prepare again: the name goes, the same text comes back.
        for round in 0..5 {
            let st = client
                .prepare("SELECT count(*) FROM items WHERE worker = $1 AND n <= $2")
                .await
                .map_err(err("prepare again"))?;
            let c: i64 = client
                .query_one(&st, &[&w, &round])
                .await
                .map_err(err("execute reprepared"))?
                .get(0);
            check(c == i64::from(round), || format!("count n <= {round}: {c}"))?;
            drop(st);
        }

        // An error inside a transaction, rolled back; then more work.
        let tx = client.transaction().await.map_err(err("begin"))?;
        tx.query_one(&ins, &[&w, &-2i32, &1i64])
            .await
            .map_err(err("insert before error"))?;
        match tx.query_one(&div, &[&0i32]).await {
            Err(e) if e.code() == Some(&SqlState::DIVISION_BY_ZERO) => t.deliberate_errors += 1,
            other => return Err(format!("division by zero in tx: {other:?}")),
        }
        match tx.query_one(&get, &[&1i64]).await {
            Err(e) if e.code() == Some(&SqlState::IN_FAILED_SQL_TRANSACTION) => {
                t.deliberate_errors += 1
            }
            other => return Err(format!("in a failed transaction: {other:?}")),
        }
        tx.rollback().await.map_err(err("rollback after error"))?;

        // The same error outside a transaction (extended protocol, then Sync).
        match client.query_one(&div, &[&0i32]).await {
            Err(e) if e.code() == Some(&SqlState::DIVISION_BY_ZERO) => t.deliberate_errors += 1,
            other => return Err(format!("division by zero: {other:?}")),
        }
        let q: i32 = client
            .query_one(&div, &[&4i32])
            .await
            .map_err(err("div after error"))?
            .get(0);
        check(q == 25, || format!("100 / 4 = {q}"))?;

        // Pipelined: several requests sent before the first answer.
        let five: [&(dyn ToSql + Sync); 1] = [&5i32];
        let ten: [&(dyn ToSql + Sync); 1] = [&10i32];
        let me: [&(dyn ToSql + Sync); 1] = [&w];
        let (a, b, c) = tokio::join!(
            client.query_one(&div, &five),
            client.query_one(&sum, &me),
            client.query_one(&div, &ten),
        );
        let a: i32 = a.map_err(err("pipelined a"))?.get(0);
        let b = b.map_err(err("pipelined b"))?;
        let c: i32 = c.map_err(err("pipelined c"))?.get(0);
        check(a == 20 && c == 10, || format!("pipelined {a} {c}"))?;
        check(
            b.get::<_, i64>(0) == t.rows && b.get::<_, i64>(1) == t.sum,
            || format!("pipelined sum {b:?} != {t:?}"),
        )?;

        // A portal read in steps (PortalSuspended) inside a transaction.
        let tx = client.transaction().await.map_err(err("begin"))?;
        let portal = tx
            .bind("SELECT val FROM items WHERE worker = $1 ORDER BY id", &[&w])
            .await
            .map_err(err("bind portal"))?;
        let mut seen = 0i64;
        loop {
            let rows = tx.query_portal(&portal, 7).await.map_err(err("portal"))?;
            if rows.is_empty() {
                break;
            }
            seen += rows.len() as i64;
        }
        check(seen == t.rows, || {
            format!("portal saw {seen} of {}", t.rows)
        })?;
        drop(portal);
        tx.commit().await.map_err(err("commit portal"))?;

        // Simple protocol still works alongside.
        client
            .batch_execute("SELECT 1; SELECT 2")
            .await
            .map_err(err("batch_execute"))?;

        // DEALLOCATE ALL inside a transaction, as the unnamed statement:
        // the same text prepared again in that transaction must be prepared
        // on the server again (it no longer has it).
        let tx = client.transaction().await.map_err(err("begin"))?;
        tx.query_typed("DEALLOCATE ALL", &[])
            .await
            .map_err(err("DEALLOCATE ALL (unnamed)"))?;
        let ins = tx
            .prepare("INSERT INTO items (worker, n, val) VALUES ($1, $2, $3) RETURNING id, val")
            .await
            .map_err(err("prepare after DEALLOCATE ALL"))?;
        n += 1;
        tx.query_one(&ins, &[&w, &n, &7i64])
            .await
            .map_err(err("insert after DEALLOCATE ALL"))?;
        t.rows += 1;
        t.sum += 7;
        tx.commit().await.map_err(err("commit"))?;
        // The client's old statements are gone, as on PostgreSQL.
        match client.query_one(&get, &[&1i64]).await {
            Err(e) if e.code() == Some(&SqlState::INVALID_SQL_STATEMENT_NAME) => {
                t.deliberate_errors += 1
            }
            other => return Err(format!("a statement after DEALLOCATE ALL: {other:?}")),
        }
        // Again as a named statement (prepared, then bound).
        client
            .execute("DEALLOCATE ALL", &[])
            .await
            .map_err(err("DEALLOCATE ALL (named)"))?;
        match client.query_one(&ins, &[&w, &0i32, &0i64]).await {
            Err(e) if e.code() == Some(&SqlState::INVALID_SQL_STATEMENT_NAME) => {
                t.deliberate_errors += 1
            }
            other => return Err(format!("a statement after DEALLOCATE ALL: {other:?}")),
        }

        // Finally the sum, prepared again.
        let sum = client
            .prepare("SELECT count(*), coalesce(sum(val), 0)::bigint FROM items WHERE worker = $1")
            .await
            .map_err(err("prepare sum again"))?;
        let row = client.query_one(&sum, &[&w]).await.map_err(err("sum"))?;
        check(
            row.get::<_, i64>(0) == t.rows && row.get::<_, i64>(1) == t.sum,
            || format!("final sum {row:?} != {t:?}"),
        )?;
        Ok(t)
    }
}

#[test]
fn tokio_postgres_prepared_statements_in_transaction_mode() {
    let rig = start_rig(40);
    let conninfo = password_conninfo(&rig);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let started = Instant::now();
    let results = rt.block_on(async {
        let tasks: Vec<_> = (1..=CLIENTS as i32)
            .map(|w| {
                let run = rust::worker(conninfo.clone(), w);
                tokio::spawn(async move {
                    match tokio::time::timeout(WORKLOAD_LIMIT, run).await {
                        Ok(r) => r,
                        Err(_) => Err(format!(
                            "worker {w}: still running after {WORKLOAD_LIMIT:?}"
                        )),
                    }
                })
            })
            .collect();
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.expect("worker task"));
        }
        out
    });
    let failures: Vec<&String> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(
        failures.is_empty(),
        "tokio-postgres workers failed:\n{}\nnode log:\n{}",
        failures
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join("\n"),
        rig.node.log(0)
    );
    let tallies: Vec<&rust::Tally> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    let rows: i64 = tallies.iter().map(|t| t.rows).sum();
    let sum: i64 = tallies.iter().map(|t| t.sum).sum();
    let errors: u32 = tallies.iter().map(|t| t.deliberate_errors).sum();
    assert_eq!(errors, 5 * CLIENTS as u32, "deliberate errors seen");
    assert_eq!(
        rig.psql("SELECT count(*) || ' ' || sum(val) FROM items"),
        format!("{rows} {sum}")
    );
    eprintln!(
        "tokio-postgres: {CLIENTS} clients, {rows} rows, sum {sum}, {errors} deliberate errors, {:?}",
        started.elapsed()
    );
    assert_clean_log(&rig);
}

// ---------------------------------------------------------------- scripts

fn drivers_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/drivers")
}

/// Longest a workload may run: a pooler that loses track of a reply leaves
/// its client waiting forever, and that must fail, not hang the suite.
const WORKLOAD_LIMIT: Duration = Duration::from_secs(180);

/// Runs a workload script and returns its stdout; panics with both
/// streams and the node log when it fails or outlives [`WORKLOAD_LIMIT`].
fn run_workload(rig: &PoolerRig, what: &str, cmd: &mut Command) -> String {
    let started = Instant::now();
    let mut child = cmd
        .env("PGPASSWORD", APP_PASSWORD)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run the {what} workload: {e}"));
    let drain = |r: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            if let Some(mut r) = r {
                let _ = r.read_to_string(&mut text);
            }
            text
        })
    };
    let stdout = drain(child.stdout.take().map(|r| Box::new(r) as _));
    let stderr = drain(child.stderr.take().map(|r| Box::new(r) as _));
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the workload") {
            break Some(status);
        }
        if started.elapsed() > WORKLOAD_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stdout = stdout.join().unwrap_or_default();
    let stderr = stderr.join().unwrap_or_default();
    let outcome = match status {
        Some(s) if s.success() => None,
        Some(s) => Some(s.to_string()),
        None => Some(format!("killed after {WORKLOAD_LIMIT:?}")),
    };
    if let Some(outcome) = outcome {
        panic!(
            "the {what} workload failed ({outcome}):\n{stdout}\n{stderr}\nnode log:\n{}",
            rig.node.log(0)
        );
    }
    eprintln!("{} ({:?})", stdout.trim(), started.elapsed());
    stdout
}

/// The "rows R sum S" a script reports matches the table.
fn assert_totals(rig: &PoolerRig, summary: &str) {
    let words: Vec<&str> = summary.split_whitespace().collect();
    let after = |key: &str| {
        words
            .iter()
            .position(|w| *w == key)
            .and_then(|i| words.get(i + 1))
            .map(|s| s.trim_matches(','))
            .unwrap_or_else(|| panic!("no {key} in {summary:?}"))
            .to_string()
    };
    assert_eq!(
        rig.psql("SELECT count(*) || ' ' || sum(val) FROM items"),
        format!("{} {}", after("rows"), after("sum")),
        "{summary}"
    );
}

/// Debian's python3 (`/usr/bin/python3`, where python3-psycopg lives), not
/// whatever `python3` comes first on PATH.
fn python_with_psycopg() -> PathBuf {
    let debian = PathBuf::from("/usr/bin/python3");
    let python = if debian.exists() {
        debian
    } else {
        PathBuf::from("python3")
    };
    let probe = Command::new(&python)
        .args(["-c", "import psycopg; print(psycopg.__version__)"])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));
    assert!(
        probe.status.success(),
        "{} cannot import psycopg (scripts/install-deps installs python3-psycopg): {}",
        python.display(),
        String::from_utf8_lossy(&probe.stderr)
    );
    python
}

#[test]
fn psycopg3_prepared_statements_in_transaction_mode() {
    let rig = start_rig(41);
    let python = python_with_psycopg();
    let summary = run_workload(
        &rig,
        "psycopg",
        Command::new(python)
            .arg(drivers_dir().join("psycopg_workload.py"))
            .arg(rig.addr.ip().to_string())
            .arg(rig.addr.port().to_string())
            .args([APP_USER, APP_DB])
            .arg(CLIENTS.to_string()),
    );
    assert_totals(&rig, &summary);
    assert_clean_log(&rig);
}

/// `npm ci` in tests/drivers/node, once per test process, unless
/// node_modules already holds the locked `pg`. npm must reach its registry:
/// when it cannot, the test fails and says so.
fn node_modules() -> Result<PathBuf, String> {
    static READY: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    READY
        .get_or_init(|| {
            let dir = drivers_dir().join("node");
            let lock = std::fs::read_to_string(dir.join("package-lock.json"))
                .map_err(|e| format!("package-lock.json: {e}"))?;
            let lock: serde_json::Value =
                serde_json::from_str(&lock).map_err(|e| format!("package-lock.json: {e}"))?;
            let want = lock["packages"]["node_modules/pg"]["version"]
                .as_str()
                .ok_or("package-lock.json locks no pg")?
                .to_string();
            let installed = std::fs::read_to_string(dir.join("node_modules/pg/package.json"))
                .ok()
                .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
                .and_then(|v| v["version"].as_str().map(str::to_string));
            if installed.as_deref() == Some(want.as_str()) {
                return Ok(dir);
            }
            let out = Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund"])
                .current_dir(&dir)
                .output()
                .map_err(|e| format!("cannot run npm (scripts/install-deps installs it): {e}"))?;
            if !out.status.success() {
                return Err(format!(
                    "npm ci in {} failed ({}): is the npm registry reachable?\n{}\n{}",
                    dir.display(),
                    out.status,
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
            Ok(dir)
        })
        .clone()
}

#[test]
fn node_postgres_prepared_statements_in_transaction_mode() {
    let dir = node_modules().unwrap_or_else(|e| panic!("node-postgres is not installed: {e}"));
    let rig = start_rig(42);
    let summary = run_workload(
        &rig,
        "node-postgres",
        Command::new("node")
            .arg(dir.join("workload.js"))
            .arg(rig.addr.ip().to_string())
            .arg(rig.addr.port().to_string())
            .args([APP_USER, APP_DB])
            .arg(CLIENTS.to_string()),
    );
    assert_totals(&rig, &summary);
    assert_clean_log(&rig);
}
