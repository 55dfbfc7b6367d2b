//! piha nodes with the db role on loopback: PostgreSQL set up, started and
//! supervised by piha itself (no harness-made servers).
//!
//! The cluster file is the shipped one (pi-1 initial primary, pi-2 and
//! pi-3 standbys, pi-4 web only) moved onto 127.61.`net`.x, with the app
//! user and database and the pooler's service login in `[postgres]`, so
//! the db role creates them and the pooler on pi-1/pi-2 routes to them.
//! The temp dir is opened to others (0755) because PostgreSQL runs as the
//! `postgres` OS user and must reach its data directory.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use piha::pg::auth::ScramKeys;
use serde_json::Value;

use super::node::{Cluster, cluster_file, http_get, wait_until};
use super::pg::{SERVICE_PASSWORD, SERVICE_USER};
use super::pooler::{APP_DB, APP_PASSWORD, APP_USER, POOLER_PORT};

pub const SERVER_PORT: u16 = 5433;

pub struct DbRig {
    pub cluster: Cluster,
}

/// The `[postgres]` lines that make the app user, its database and the
/// pooler's login exist.
pub fn postgres_lines() -> String {
    let app = ScramKeys::derive(APP_PASSWORD, b"db-rig-app-salt!", 4096)
        .verifier()
        .to_text();
    let service = ScramKeys::derive(SERVICE_PASSWORD, b"db-rig-svc-salt!", 4096).to_text();
    format!(
        "users = [ {{ name = \"{APP_USER}\", secret = \"{app}\" }} ]\n\
         databases = [ {{ name = \"{APP_DB}\" }} ]\n\
         service = {{ user = \"{SERVICE_USER}\", database = \"postgres\", keys = \"{service}\" }}\n"
    )
}

/// The shipped cluster file on 127.61.`net`.x with the rig's `[postgres]`
/// lines and `extra` appended at the end. An `extra` starting with
/// `[db]` has its lines put into the file's own `[db]` section (TOML
/// allows a table once). Backups are off unless `extra` sets `backup`, so
/// no test writes to the built-in folder under /srv.
pub fn rig_file(net: u8, extra: &str) -> String {
    let mut text = cluster_file(net).replacen(
        "[postgres]\n",
        &format!("[postgres]\n{}", postgres_lines()),
        1,
    );
    let (db, rest) = match extra.strip_prefix("[db]\n") {
        Some(body) => {
            let end = body.find("\n[").map_or(body.len(), |i| i + 1);
            (&body[..end], &body[end..])
        }
        None => ("", extra),
    };
    let db = if db.contains("backup") {
        db.to_string()
    } else {
        format!("backup = false\n{db}")
    };
    assert!(
        text.contains("\n[db]\n"),
        "the shipped file has a [db] section"
    );
    text = text.replacen("\n[db]\n", &format!("\n[db]\n{db}"), 1);
    format!("{text}\n{rest}\n")
}

impl DbRig {
    /// Writes the file; starts nothing. `@RIG_DIR@` in `extra` becomes the
    /// rig's temp dir (e.g. for a backup folder).
    pub fn new(net: u8, extra: &str) -> DbRig {
        let cluster = Cluster::with_file(net, &rig_file(net, extra));
        std::fs::set_permissions(cluster.dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod temp dir");
        if extra.contains("@RIG_DIR@") {
            let text = std::fs::read_to_string(&cluster.config).expect("read cluster file");
            let dir = cluster.dir.path().to_string_lossy().into_owned();
            std::fs::write(&cluster.config, text.replace("@RIG_DIR@", &dir))
                .expect("write cluster file");
        }
        DbRig { cluster }
    }

    pub fn start(&mut self, i: usize) {
        self.cluster.start(i);
    }

    pub fn start_all(&mut self) {
        for i in 0..self.cluster.nodes.len() {
            self.cluster.start(i);
        }
    }

    /// `GET /api/v1/db` of node `i`.
    pub fn db(&self, i: usize) -> Result<Value, String> {
        let (code, body) = http_get(self.cluster.nodes[i].admin, "/api/v1/db")?;
        if code != 200 {
            return Err(format!("{code}: {body}"));
        }
        serde_json::from_str(&body).map_err(|e| format!("bad JSON: {e}"))
    }

    /// Waits until node `i` runs PostgreSQL as `role` ("primary"/"standby").
    pub fn wait_role(&self, i: usize, role: &str, limit: Duration) -> Value {
        match wait_until(limit, || {
            let d = self.db(i)?;
            if d["state"] == "running" && d["role"] == role {
                Ok(d)
            } else {
                Err(format!(
                    "state {} role {} ({})",
                    d["state"], d["role"], d["detail"]
                ))
            }
        }) {
            Ok((d, _)) => d,
            Err(e) => panic!(
                "{} did not run as {role}: {e}\nlog:\n{}",
                self.cluster.nodes[i].hostname,
                self.cluster.log(i)
            ),
        }
    }

    /// Node `i`'s PostgreSQL address.
    pub fn server(&self, i: usize) -> SocketAddr {
        format!("{}:{SERVER_PORT}", self.cluster.nodes[i].address)
            .parse()
            .expect("addr")
    }

    /// The pooler on node `i`.
    pub fn pooler(&self, i: usize) -> SocketAddr {
        format!("{}:{POOLER_PORT}", self.cluster.nodes[i].address)
            .parse()
            .expect("addr")
    }

    /// psql as the app user to `addr` (a server or a pooler).
    pub fn try_psql(&self, addr: SocketAddr, sql: &str) -> Result<String, String> {
        psql(addr, sql)
    }

    pub fn psql(&self, addr: SocketAddr, sql: &str) -> String {
        psql(addr, sql).unwrap_or_else(|e| panic!("psql {addr}: {e}\nSQL: {sql}"))
    }

    /// Node `i`'s db events (messages), oldest first.
    pub fn db_events(&self, i: usize) -> Vec<String> {
        self.cluster
            .status(i)
            .map(|doc| super::node::events(&doc))
            .unwrap_or_default()
    }
}

/// psql `-XAtq` as the app user; stdout trimmed.
pub fn psql(addr: SocketAddr, sql: &str) -> Result<String, String> {
    let program = super::pg::pg_bin().join("psql");
    psql_with(std::process::Command::new(program), addr, sql)
}

/// `psql` (a command that runs psql, perhaps inside a namespace) as the
/// app user against `addr`.
pub fn psql_with(
    mut cmd: std::process::Command,
    addr: SocketAddr,
    sql: &str,
) -> Result<String, String> {
    let out = cmd
        .args([
            "-XAtq",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            sql,
            &format!(
                "host={} port={} user={APP_USER} dbname={APP_DB} sslmode=disable connect_timeout=3",
                addr.ip(),
                addr.port()
            ),
        ])
        .env("PGPASSWORD", APP_PASSWORD)
        .output()
        .map_err(|e| format!("cannot run psql: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}
