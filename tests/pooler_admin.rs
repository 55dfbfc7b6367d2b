//! The pooler's admin console (database `piha`), its status section and
//! its metrics, end to end: a real piha node in front of a real primary and
//! standby (tests/common/pooler.rs), asked with psql the way an operator or
//! pgbouncer_exporter would.

mod common;

use std::collections::HashMap;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::node::{http_get, wait_until};
use common::pg::{SERVICE_PASSWORD, SERVICE_USER, pg_bin};
use common::pooler::{APP_DB, APP_PASSWORD, APP_USER, PoolerRig};

/// Nets 127.61.44-45 belong to these tests.
const NET: u8 = 44;

/// PgBouncer's columns (1.24), as its exporters and dashboards read them.
const POOLS: &[&str] = &[
    "database",
    "user",
    "cl_active",
    "cl_waiting",
    "cl_active_cancel_req",
    "cl_waiting_cancel_req",
    "sv_active",
    "sv_active_cancel",
    "sv_being_canceled",
    "sv_idle",
    "sv_used",
    "sv_tested",
    "sv_login",
    "maxwait",
    "maxwait_us",
    "pool_mode",
    "load_balance_hosts",
];
const SOCKETS: &[&str] = &[
    "type",
    "user",
    "database",
    "replication",
    "state",
    "addr",
    "port",
    "local_addr",
    "local_port",
    "connect_time",
    "request_time",
    "wait",
    "wait_us",
    "close_needed",
    "ptr",
    "link",
    "remote_pid",
    "tls",
    "application_name",
    "prepared_statements",
    "id",
];
const STATS: &[&str] = &[
    "database",
    "total_server_assignment_count",
    "total_xact_count",
    "total_query_count",
    "total_received",
    "total_sent",
    "total_xact_time",
    "total_query_time",
    "total_wait_time",
    "total_client_parse_count",
    "total_server_parse_count",
    "total_bind_count",
    "avg_server_assignment_count",
    "avg_xact_count",
    "avg_query_count",
    "avg_recv",
    "avg_sent",
    "avg_xact_time",
    "avg_query_time",
    "avg_wait_time",
    "avg_client_parse_count",
    "avg_server_parse_count",
    "avg_bind_count",
];
const STATS_TOTALS: &[&str] = &[
    "database",
    "server_assignment_count",
    "xact_count",
    "query_count",
    "bytes_received",
    "bytes_sent",
    "xact_time",
    "query_time",
    "wait_time",
    "client_parse_count",
    "server_parse_count",
    "bind_count",
];
const STATS_AVERAGES: &[&str] = &[
    "database",
    "server_assignment_count",
    "xact_count",
    "query_count",
    "bytes_received",
    "bytes_sent",
    "xact_time",
    "query_time",
    "wait_time",
    "avg_client_parse_count",
    "avg_server_parse_count",
    "avg_bind_count",
];
const DATABASES: &[&str] = &[
    "name",
    "host",
    "port",
    "database",
    "force_user",
    "pool_size",
    "min_pool_size",
    "reserve_pool_size",
    "server_lifetime",
    "pool_mode",
    "load_balance_hosts",
    "max_connections",
    "current_connections",
    "max_client_connections",
    "current_client_connections",
    "paused",
    "disabled",
];

/// One console result: column names and rows of text (NULL as "").
struct Answer {
    columns: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Answer {
    fn col(&self, name: &str) -> usize {
        self.columns
            .iter()
            .position(|c| c == name)
            .unwrap_or_else(|| panic!("no column {name} in {:?}", self.columns))
    }

    /// Rows as column -> value maps.
    fn maps(&self) -> Vec<HashMap<&str, &str>> {
        self.rows
            .iter()
            .map(|r| {
                self.columns
                    .iter()
                    .map(String::as_str)
                    .zip(r.iter().map(String::as_str))
                    .collect()
            })
            .collect()
    }

    fn num(&self, row: &[String], name: &str) -> u64 {
        let v = &row[self.col(name)];
        v.parse()
            .unwrap_or_else(|_| panic!("{name} = {v:?} is not a number"))
    }
}

fn psql(rig: &PoolerRig, user: &str, password: &str, sql: &str) -> Output {
    Command::new(pg_bin().join("psql"))
        .args([
            "-XAq",
            "-v",
            "ON_ERROR_STOP=1",
            "-v",
            "VERBOSITY=verbose",
            "-P",
            "footer=off",
            "-F",
            "\t",
            "-c",
            sql,
            &rig.conninfo(user, "piha"),
        ])
        .env("PGPASSWORD", password)
        .env("PGCONNECT_TIMEOUT", "5")
        .output()
        .expect("run psql")
}

fn try_console(rig: &PoolerRig, user: &str, password: &str, sql: &str) -> Result<Answer, String> {
    let out = psql(rig, user, password, sql);
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let columns = lines
        .next()
        .unwrap_or_default()
        .split('\t')
        .map(str::to_owned)
        .collect();
    let rows = lines
        .map(|l| l.split('\t').map(str::to_owned).collect())
        .collect();
    Ok(Answer { columns, rows })
}

/// A console query as the service user (the console's administrator).
fn admin(rig: &PoolerRig, sql: &str) -> Answer {
    try_console(rig, SERVICE_USER, SERVICE_PASSWORD, sql).unwrap_or_else(|e| {
        panic!(
            "{sql} as {SERVICE_USER}: {e}\nnode log:\n{}",
            rig.node.log(0)
        )
    })
}

fn columns(a: &Answer) -> Vec<&str> {
    a.columns.iter().map(String::as_str).collect()
}

#[test]
fn the_console_answers_like_pgbouncer_and_the_status_shows_the_pooler() {
    // No standby: every statement then runs on the one server, which
    // keeps the console's per-server rows simple to check. (The comment
    // here used to blame a bug that RESET in_hot_standby on a standby;
    // 652ce12 fixed that, and tests/pooler_state.rs covers it.)
    let rig = PoolerRig::start(NET, 0, "");
    // A little traffic: the app pool gets a server connection and counts.
    for _ in 0..3 {
        assert_eq!(rig.psql("SELECT 41 + 1"), "42");
    }
    rig.psql("CREATE TABLE IF NOT EXISTS t (x int); INSERT INTO t VALUES (1)");

    show_commands(&rig);
    who_may_do_what(&rig);
    pause_and_resume(&rig);
    the_simple_protocol_only(&rig);
    status_and_metrics(&rig);
}

fn show_commands(rig: &PoolerRig) {
    let pools = admin(rig, "SHOW POOLS");
    assert_eq!(columns(&pools), POOLS);
    let app = pools
        .rows
        .iter()
        .find(|r| r[0] == APP_DB && r[1] == APP_USER)
        .unwrap_or_else(|| panic!("no app pool in {:?}", pools.rows));
    assert!(pools.num(app, "sv_idle") >= 1, "{app:?}");
    assert_eq!(pools.num(app, "sv_active"), 0, "{app:?}");
    assert_eq!(pools.num(app, "cl_waiting"), 0, "{app:?}");
    assert_eq!(app[pools.col("pool_mode")], "transaction");
    // The console's own pool, with this very client in it.
    let console = pools
        .rows
        .iter()
        .find(|r| r[0] == "piha")
        .unwrap_or_else(|| panic!("no console pool in {:?}", pools.rows));
    assert!(pools.num(console, "cl_active") >= 1);

    let servers = admin(rig, "show servers;");
    assert_eq!(columns(&servers), SOCKETS);
    let ports: Vec<String> = rig
        .pg
        .servers()
        .iter()
        .map(|s| s.port.to_string())
        .collect();
    let maps = servers.maps();
    let idle: Vec<_> = maps
        .iter()
        .filter(|s| s["database"] == APP_DB && s["state"] == "idle")
        .collect();
    assert!(!idle.is_empty(), "no idle app server: {:?}", servers.rows);
    for s in &idle {
        assert_eq!(s["type"], "S");
        assert_eq!(s["user"], APP_USER);
        assert!(ports.iter().any(|p| p == s["port"]), "{s:?} vs {ports:?}");
        assert!(s["remote_pid"].parse::<i32>().is_ok_and(|p| p > 0), "{s:?}");
        assert!(s["connect_time"].ends_with(" UTC"), "{s:?}");
        assert_eq!(s["link"], "");
    }

    let clients = admin(rig, "SHOW CLIENTS");
    assert_eq!(columns(&clients), SOCKETS);
    let me: Vec<_> = clients
        .maps()
        .into_iter()
        .filter(|c| c["database"] == "piha" && c["user"] == SERVICE_USER)
        .collect();
    assert_eq!(me.len(), 1, "the console client itself: {:?}", clients.rows);
    assert_eq!(me[0]["type"], "C");
    assert_eq!(me[0]["state"], "idle");
    assert!(me[0]["addr"].parse::<std::net::IpAddr>().is_ok(), "{me:?}");
    assert_eq!(me[0]["local_addr"], rig.addr.ip().to_string().as_str());
    assert_eq!(me[0]["local_port"], rig.addr.port().to_string().as_str());
    assert_eq!(me[0]["application_name"], "psql");

    let stats = admin(rig, "SHOW STATS");
    assert_eq!(columns(&stats), STATS);
    let app = stats
        .rows
        .iter()
        .find(|r| r[0] == APP_DB)
        .unwrap_or_else(|| panic!("no app stats in {:?}", stats.rows));
    assert!(stats.num(app, "total_query_count") >= 4, "{app:?}");
    assert!(stats.num(app, "total_xact_count") >= 4, "{app:?}");
    assert!(stats.num(app, "total_server_assignment_count") >= 4);
    assert!(stats.num(app, "total_received") > 0 && stats.num(app, "total_sent") > 0);
    assert!(stats.num(app, "total_query_time") > 0, "{app:?}");

    let totals = admin(rig, "SHOW STATS_TOTALS");
    assert_eq!(columns(&totals), STATS_TOTALS);
    let averages = admin(rig, "SHOW STATS_AVERAGES");
    assert_eq!(columns(&averages), STATS_AVERAGES);

    let dbs = admin(rig, "SHOW DATABASES");
    assert_eq!(columns(&dbs), DATABASES);
    let app = dbs
        .maps()
        .into_iter()
        .find(|d| d["name"] == APP_DB)
        .unwrap_or_else(|| panic!("no app database in {:?}", dbs.rows));
    let primary = rig.pg.primary().socket_addr();
    assert_eq!(app["host"], primary.ip().to_string().as_str());
    assert_eq!(app["port"], primary.port().to_string().as_str());
    assert_eq!(app["paused"], "0");

    let version = admin(rig, "SHOW VERSION");
    assert_eq!(columns(&version), ["version"]);
    assert!(version.rows[0][0].contains("piha"), "{:?}", version.rows);

    for (sql, cols) in [
        ("SHOW LISTS", &["list", "items"][..]),
        (
            "SHOW CONFIG",
            &["key", "value", "default", "changeable"][..],
        ),
        ("SHOW STATE", &["key", "value"][..]),
    ] {
        let a = admin(rig, sql);
        assert_eq!(columns(&a), cols, "{sql}");
        assert!(!a.rows.is_empty(), "{sql}");
    }
    let lists = admin(rig, "SHOW LISTS");
    let used = lists
        .rows
        .iter()
        .find(|r| r[0] == "used_clients")
        .expect("used_clients");
    assert!(used[1].parse::<u32>().is_ok_and(|n| n >= 1), "{used:?}");

    // HELP is a notice (as PgBouncer's); unknown commands list the known.
    let help = psql(rig, SERVICE_USER, SERVICE_PASSWORD, "SHOW HELP");
    let help_text = String::from_utf8_lossy(&help.stderr);
    assert!(help.status.success(), "{help_text}");
    assert!(help_text.contains("SHOW HELP|POOLS"), "{help_text}");
    let err = try_console(rig, SERVICE_USER, SERVICE_PASSWORD, "SELECT 1")
        .err()
        .expect("SELECT is not a console command");
    assert!(
        err.contains("42601") && err.contains("SHOW HELP|POOLS"),
        "{err}"
    );
    // The app user may look as well.
    let as_app = try_console(rig, APP_USER, APP_PASSWORD, "show pools").expect("app may SHOW");
    assert_eq!(columns(&as_app), POOLS);
}

fn who_may_do_what(rig: &PoolerRig) {
    for sql in ["PAUSE", "RESUME", "RELOAD"] {
        let err = try_console(rig, APP_USER, APP_PASSWORD, sql)
            .err()
            .unwrap_or_else(|| panic!("{sql} by the app user was allowed"));
        assert!(err.contains("42501"), "{sql}: {err}");
    }
    let wrong = try_console(rig, SERVICE_USER, "not-the-password", "SHOW POOLS")
        .err()
        .expect("a wrong password is refused");
    assert!(wrong.contains("password authentication failed"), "{wrong}");

    // RELOAD asks the node; the file did not change.
    let out = psql(rig, SERVICE_USER, SERVICE_PASSWORD, "RELOAD");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "RELOAD: {stderr}");
    assert!(stderr.contains("unchanged"), "{stderr}");
}

fn pause_and_resume(rig: &PoolerRig) {
    admin(rig, "PAUSE;");
    let state = admin(rig, "SHOW STATE");
    assert!(
        state.rows.iter().any(|r| r[0] == "paused" && r[1] == "yes"),
        "{:?}",
        state.rows
    );
    let again = try_console(rig, SERVICE_USER, SERVICE_PASSWORD, "PAUSE")
        .err()
        .expect("a second PAUSE is refused");
    assert!(again.contains("already paused"), "{again}");

    // A query now waits for RESUME.
    let started = Instant::now();
    let mut waiting = Command::new(pg_bin().join("psql"))
        .args([
            "-XAtq",
            "-c",
            "SELECT 'after resume'",
            &rig.conninfo(APP_USER, APP_DB),
        ])
        .env("PGPASSWORD", APP_PASSWORD)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn psql");
    wait_until(Duration::from_secs(10), || {
        let pools = admin(rig, "SHOW POOLS");
        let app = pools
            .rows
            .iter()
            .find(|r| r[0] == APP_DB && r[1] == APP_USER)
            .ok_or("no app pool")?;
        match pools.num(app, "cl_waiting") {
            0 => Err(format!("nobody waits yet: {app:?}")),
            _ => Ok(()),
        }
    })
    .expect("the query waits while paused");
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        waiting.try_wait().expect("try_wait").is_none(),
        "the query finished while paused"
    );
    admin(rig, "RESUME");
    let out = waiting.wait_with_output().expect("psql ends");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "after resume");
    assert!(started.elapsed() >= Duration::from_millis(300));
    let again = try_console(rig, SERVICE_USER, SERVICE_PASSWORD, "RESUME")
        .err()
        .expect("RESUME when not paused is refused");
    assert!(again.contains("not paused"), "{again}");

    // One database only: the app waits, the console and others do not.
    admin(rig, "PAUSE app");
    let dbs = admin(rig, "SHOW DATABASES");
    let app = dbs
        .maps()
        .into_iter()
        .find(|d| d["name"] == APP_DB)
        .map(|d| d["paused"].to_owned());
    assert_eq!(app.as_deref(), Some("1"));
    admin(rig, "RESUME app");
    assert_eq!(rig.psql("SELECT 'resumed'"), "resumed");
}

/// Extended-protocol clients get a clear error, and the connection stays
/// usable for simple queries.
fn the_simple_protocol_only(rig: &PoolerRig) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let conninfo = format!(
            "{} password={SERVICE_PASSWORD}",
            rig.conninfo(SERVICE_USER, "piha")
        );
        let (client, conn) = tokio_postgres::connect(&conninfo, tokio_postgres::NoTls)
            .await
            .expect("connect to the console");
        let driver = tokio::spawn(conn);
        let err = client
            .query("SHOW POOLS", &[])
            .await
            .expect_err("extended protocol is refused");
        let db = err.as_db_error().expect("a server error");
        assert_eq!(db.code().code(), "0A000");
        assert!(db.message().contains("simple query protocol"), "{db}");
        let rows = client
            .simple_query("SHOW VERSION")
            .await
            .expect("simple query after the error");
        assert!(
            rows.iter()
                .any(|m| matches!(m, tokio_postgres::SimpleQueryMessage::Row(_)))
        );
        drop(client);
        let _ = driver.await;
    });
}

fn status_and_metrics(rig: &PoolerRig) {
    let doc = rig.node.status(0).expect("status");
    let pooler = &doc["pooler"];
    assert!(pooler.is_object(), "no pooler section: {pooler}");
    assert_eq!(pooler["port"], 5432);
    assert_eq!(pooler["pool_mode"], "transaction");
    assert_eq!(pooler["paused"], false);
    let primary = rig.pg.primary().socket_addr().to_string();
    let backends = pooler["backends"].as_array().expect("backends");
    assert_eq!(backends.len(), 1, "{backends:?}");
    let p = backends
        .iter()
        .find(|b| b["address"] == primary.as_str())
        .unwrap_or_else(|| panic!("primary {primary} not in {backends:?}"));
    assert_eq!(p["role"], "primary", "{p}");
    assert_eq!(p["lag_bytes"], 0);
    assert!(p["lsn"].as_str().is_some_and(|l| l.contains('/')), "{p}");
    assert!(p["routed_total"].as_u64().is_some_and(|n| n > 0), "{p}");
    let pools = pooler["pools"].as_array().expect("pools");
    let app = pools
        .iter()
        .find(|p| p["database"] == APP_DB && p["user"] == APP_USER)
        .unwrap_or_else(|| panic!("no app pool: {pools:?}"));
    assert_eq!(app["mode"], "transaction");
    assert!(
        app["server_connections"]["idle"]
            .as_u64()
            .is_some_and(|n| n >= 1),
        "{app}"
    );
    assert!(
        app["transactions_total"].as_u64().is_some_and(|n| n >= 4),
        "{app}"
    );
    assert!(
        app["queries_total"].as_u64().is_some_and(|n| n >= 4),
        "{app}"
    );
    assert!(pooler["clients"]["total"].is_u64(), "{pooler}");

    let (_, metrics) = http_get(rig.node.nodes[0].admin, "/metrics").expect("metrics");
    let want = [
        format!("piha_pg_backend_up{{backend=\"{primary}\",role=\"primary\"}} 1"),
        format!("piha_pg_backend_lag_bytes{{backend=\"{primary}\"}} 0"),
    ];
    for line in &want {
        assert!(
            metrics.contains(line.as_str()),
            "{line} missing:\n{metrics}"
        );
    }
    for name in [
        "piha_pg_backend_routed_total{",
        "piha_pg_pool_server_connections{database=\"app\",user=\"app\",state=\"idle\"}",
        "piha_pg_pool_clients{state=\"active\"}",
        "piha_pg_pool_transactions_total{database=\"app\",user=\"app\"}",
        "piha_pg_pool_queries_total{database=\"app\",user=\"app\"}",
        "piha_pg_pool_wait_seconds_total{database=\"app\",user=\"app\"}",
    ] {
        assert!(metrics.contains(name), "{name} missing:\n{metrics}");
    }
}
