//! A piha node running the Postgres pooler in front of a real primary and
//! standbys ([`super::pg::PgCluster`]): the setup of every pooler test.
//!
//! ```ignore
//! let rig = PoolerRig::start(30, 2, "pool_size = 5");
//! rig.psql("SELECT 1");                        // as APP_USER through piha
//! rig.pgbench(&["-S", "-c", "10", "-T", "3"]);
//! ```
//!
//! The node is a balancer-only piha on 127.61.`net`.1; its pooler listens on
//! that address at [`POOLER_PORT`]. The cluster file has a `[postgres]`
//! section with the harness's servers as static backends, the service keys
//! of [`super::pg::SERVICE_USER`] (derived from its password and the salt
//! PostgreSQL stored), and [`APP_USER`] with the verifier PostgreSQL stored.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::process::{Command, Output};
use std::time::Duration;

use piha::pg::auth::{ScramKeys, Secret};

use super::node::{Cluster, TOKEN, wait_until};
use super::pg::{PgCluster, SERVICE_PASSWORD, SERVICE_USER};

pub const APP_USER: &str = "app";
pub const APP_PASSWORD: &str = "app-test-password";
pub const APP_DB: &str = "app";
pub const POOLER_PORT: u16 = 5432;

pub struct PoolerRig {
    // Field order is drop order: the node goes before PostgreSQL.
    pub node: Cluster,
    pub pg: PgCluster,
    pub addr: SocketAddr,
}

/// The keys that log in as `user` to a server holding `verifier`.
pub fn keys_for(password: &str, verifier: &str) -> String {
    let Ok(Secret::Scram(v)) = Secret::parse(verifier) else {
        panic!("not a SCRAM verifier: {verifier}");
    };
    ScramKeys::derive(password, &v.salt, v.iterations).to_text()
}

/// The app user and database on `pg`, and the `[postgres]` lines that
/// put the pooler in front of its servers: port, backends, the service
/// keys and the app user's verifier. The header is not included.
pub fn postgres_lines(pg: &PgCluster) -> String {
    let verifier = pg.create_user(APP_USER, APP_PASSWORD);
    pg.create_database(APP_DB, APP_USER);
    let service = keys_for(SERVICE_PASSWORD, &pg.verifier(SERVICE_USER));
    let backends: Vec<String> = pg
        .servers()
        .iter()
        .map(|s| format!("\"{}\"", s.socket_addr()))
        .collect();
    format!(
        "port = {POOLER_PORT}\n\
         backends = [{}]\n\
         service = {{ user = \"{SERVICE_USER}\", database = \"postgres\", keys = \"{service}\" }}\n\
         users = [ {{ name = \"{APP_USER}\", secret = \"{verifier}\" }} ]\n",
        backends.join(", ")
    )
}

impl PoolerRig {
    /// PostgreSQL with `standbys` standbys, the app user and database, and
    /// a piha node whose `[postgres]` section also holds `extra` (TOML
    /// lines). Returns once the pooler answers a query.
    pub fn start(net: u8, standbys: usize, extra: &str) -> PoolerRig {
        let pg = PgCluster::start(standbys);
        let text = format!(
            r#"[cluster]
name = "pooltest"
vip = "127.61.{net}.100/24"
admin_token = "{TOKEN}"

[postgres]
{lines}{extra}

[[node]]
hostname = "pi-1"
address = "127.61.{net}.1/24"
roles = ["balancer"]
"#,
            lines = postgres_lines(&pg),
        );
        let mut node = Cluster::with_hosts(net, &text, &[("pi-1", 1)]);
        node.start(0);
        let addr: SocketAddr = format!("127.61.{net}.1:{POOLER_PORT}")
            .parse()
            .expect("addr");
        let rig = PoolerRig { node, pg, addr };
        if let Err(e) = wait_until(Duration::from_secs(20), || rig.try_psql("SELECT 1")) {
            panic!(
                "the pooler did not answer: {e}\nnode log:\n{}",
                rig.node.log(0)
            );
        }
        rig
    }

    pub fn conninfo(&self, user: &str, db: &str) -> String {
        format!(
            "host={} port={} user={user} dbname={db} sslmode=disable connect_timeout=5",
            self.addr.ip(),
            self.addr.port()
        )
    }

    /// psql through the pooler as the app user: `-XAtq`, stdout trimmed.
    pub fn try_psql(&self, sql: &str) -> Result<String, String> {
        let out = self.command(
            "psql",
            &[
                "-XAtq",
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                sql,
                &self.conninfo(APP_USER, APP_DB),
            ],
        );
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    pub fn psql(&self, sql: &str) -> String {
        self.try_psql(sql)
            .unwrap_or_else(|e| panic!("psql through the pooler failed: {e}\nSQL: {sql}"))
    }

    /// pgbench through the pooler against the app database.
    pub fn pgbench(&self, args: &[&str]) -> Output {
        let mut all: Vec<&str> = vec!["-h", "", "-p", "", "-U", APP_USER];
        let host = self.addr.ip().to_string();
        let port = self.addr.port().to_string();
        all[1] = &host;
        all[3] = &port;
        all.extend_from_slice(args);
        all.push(APP_DB);
        self.command("pgbench", &all)
    }

    /// A PostgreSQL client program with the app password in its environment.
    pub fn command(&self, program: &str, args: &[&str]) -> Output {
        Command::new(super::pg::pg_bin().join(program))
            .args(args)
            .env("PGPASSWORD", APP_PASSWORD)
            .env("PGCONNECT_TIMEOUT", "5")
            .output()
            .unwrap_or_else(|e| panic!("cannot run {program}: {e}"))
    }
}
