//! Three db nodes in network namespaces (`vrrp_rig::Rig` on a `netns::Lab`):
//! pi-1 (balancer + db, initial primary, VRRP priority 150), pi-2
//! (balancer + db, 100) and pi-3 (db), the VIP 192.0.2.100 with the pooler
//! on it, and a client namespace that writes numbered rows through the
//! VIP, as an application would.

#![allow(dead_code)]

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::db_rig::postgres_lines;
use super::netns::{in_netns, poll};
use super::pooler::{APP_DB, APP_PASSWORD, APP_USER, POOLER_PORT};
use super::vrrp_rig::{Rig, TOKEN, VIP};

pub const SERVER_PORT: u16 = 5433;

/// The cluster file; `db` is the body of `[db]` (empty: built-in values).
pub fn cluster_file(db: &str) -> String {
    cluster_file_with(db, [150, 100], "")
}

/// [`cluster_file`] with the VRRP priorities of pi-1 and pi-2 (`[100,
/// 150]` puts the VIP, and the pooler clients use, on pi-2, away from the
/// initial primary on pi-1) and more `[postgres]` lines.
pub fn cluster_file_with(db: &str, priorities: [u8; 2], postgres: &str) -> String {
    let [p1, p2] = priorities;
    format!(
        "[cluster]\nname = \"db-test\"\nvip = \"192.0.2.100/24\"\nadmin_token = \"{TOKEN}\"\n\n\
         [defaults]\nadmin_port = 9000\n\n\
         [membership]\nheartbeat_interval = \"200ms\"\ndown_after = \"1s\"\n\n\
         [postgres]\n{pg}{postgres}probe = {{ interval = \"500ms\", timeout = \"500ms\", fall = 3 }}\n\n\
         [vrrp]\ninterval = \"100ms\"\n\n\
         {db}\n\n\
         [[node]]\nhostname = \"pi-1\"\naddress = \"192.0.2.10/24\"\nroles = [\"balancer\", \"db\"]\n\
         balancer = {{ priority = {p1} }}\ndb = {{ initial_primary = true }}\n\n\
         [[node]]\nhostname = \"pi-2\"\naddress = \"192.0.2.11/24\"\nroles = [\"balancer\", \"db\"]\n\
         balancer = {{ priority = {p2} }}\n\n\
         [[node]]\nhostname = \"pi-3\"\naddress = \"192.0.2.12/24\"\nroles = [\"db\"]\n",
        pg = postgres_lines(),
    )
}

pub struct DbNet {
    pub rig: Rig,
}

impl DbNet {
    pub fn new(db: &str) -> DbNet {
        DbNet::with(db, [150, 100], "")
    }

    /// See [`cluster_file_with`].
    pub fn with(db: &str, priorities: [u8; 2], postgres: &str) -> DbNet {
        DbNet {
            rig: Rig::with_config(3, &cluster_file_with(db, priorities, postgres)),
        }
    }

    /// Starts every node and waits until pi-1 is primary with pi-2 and
    /// pi-3 streaming from it, node `vip_holder` alone holds the VIP, and
    /// the pooler on the VIP has made the `numbers` table the loads write.
    pub fn start_with_numbers(&mut self, vip_holder: usize, limit: Duration) {
        self.rig.start_all();
        self.wait_role(0, "primary", None, limit);
        self.wait_role(1, "standby", Some("pi-1"), limit);
        self.wait_role(2, "standby", Some("pi-1"), limit);
        // Another node may hold the VIP for a moment before the one with
        // the highest priority takes it.
        let alone = poll(limit, || {
            (self.rig.lab.vip_holders(VIP) == [vip_holder]).then_some(())
        });
        assert!(
            alone.is_some(),
            "pi-{} does not hold the VIP alone: {:?}\n{}",
            vip_holder + 1,
            self.rig.lab.vip_holders(VIP),
            self.rig.logs()
        );
        let created = poll(limit, || {
            self.psql(
                self.vip_pooler(),
                "CREATE TABLE IF NOT EXISTS numbers (id bigint PRIMARY KEY)",
            )
            .ok()
        });
        assert!(
            created.is_some(),
            "the pooler on the VIP answers:\n{}",
            self.rig.logs()
        );
    }

    pub fn db(&self, i: usize) -> Result<Value, String> {
        let body = self.rig.admin_get(i, "/api/v1/db")?;
        serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))
    }

    /// Waits until node `i` runs as `role` (and, for a standby, streams
    /// from `upstream` when given).
    pub fn wait_role(
        &self,
        i: usize,
        role: &str,
        upstream: Option<&str>,
        limit: Duration,
    ) -> Value {
        let found = poll(limit, || {
            let d = self.db(i).ok()?;
            let ok = d["state"] == "running"
                && d["role"] == role
                && upstream.is_none_or(|u| d["upstream"] == u);
            ok.then_some(d)
        });
        found.unwrap_or_else(|| {
            panic!(
                "pi-{} is not {role} (upstream {upstream:?}) within {limit:?}: {:?}\n{}\n--- its PostgreSQL log ---\n{}",
                i + 1,
                self.db(i),
                self.rig.logs(),
                self.pg_log(i)
            )
        })
    }

    /// The end of node `i`'s PostgreSQL server log, for failure messages.
    pub fn pg_log(&self, i: usize) -> String {
        let dir = self
            .rig
            .dir
            .path()
            .join(format!("data-{i}/postgresql/data/log"));
        let mut text = String::new();
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            text.push_str(&std::fs::read_to_string(e.path()).unwrap_or_default());
        }
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// The node that runs the primary now, by its own report.
    pub fn primary(&self) -> Option<usize> {
        (0..3).find(|i| {
            self.db(*i)
                .is_ok_and(|d| d["state"] == "running" && d["role"] == "primary")
        })
    }

    pub fn server(&self, i: usize) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(self.rig.lab.node(i).addr), SERVER_PORT)
    }

    pub fn vip_pooler(&self) -> SocketAddr {
        SocketAddr::new(VIP, POOLER_PORT)
    }

    /// psql from the client namespace as the app user.
    pub fn psql(&self, addr: SocketAddr, sql: &str) -> Result<String, String> {
        let client = self.rig.lab.client().name.clone();
        let psql = super::pg::pg_bin().join("psql");
        let cmd = self.rig.lab.command(&client, &psql.to_string_lossy());
        super::db_rig::psql_with(cmd, addr, sql)
    }

    /// Every id in `numbers`, read through `addr`.
    pub fn ids(&self, addr: SocketAddr) -> Result<BTreeSet<i64>, String> {
        let text = self.psql(addr, "SELECT id FROM numbers ORDER BY id")?;
        Ok(text.lines().filter_map(|l| l.trim().parse().ok()).collect())
    }

    /// The postmaster's pid on node `i` (from its db status).
    pub fn postmaster_pid(&self, i: usize) -> u32 {
        self.db(i)
            .ok()
            .and_then(|d| d["pid"].as_u64())
            .expect("postmaster pid") as u32
    }
}

/// One insert's outcome, as the client saw it.
#[derive(Debug, Clone)]
pub struct Write {
    pub id: i64,
    /// When the answer (or the give-up) came.
    pub at: Instant,
    /// How long the client waited for it.
    pub took: Duration,
    pub ok: bool,
    pub error: Option<String>,
}

/// Numbered inserts through `addr` from the client namespace, one after
/// another, reconnecting after an error, until `stop` is set, `limit`
/// passes or `max` inserts were tried. Each insert is given up on after
/// 5 s, or after the `insert_timeout` of [`Load::with_timeout`].
pub struct Load {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<Vec<Write>>>,
}

impl Load {
    pub fn start(ns: &str, addr: SocketAddr, limit: Duration, max: i64) -> Load {
        Load::with_timeout(ns, addr, limit, 1..max + 1, Duration::from_secs(5))
    }

    /// An application with no statement timeout of its own waits as long
    /// as the pooler makes it: a long `insert_timeout` shows how long.
    /// It inserts the `ids` in turn, so that loads side by side do not
    /// collide.
    pub fn with_timeout(
        ns: &str,
        addr: SocketAddr,
        limit: Duration,
        ids: std::ops::Range<i64>,
        insert_timeout: Duration,
    ) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let ns = ns.to_owned();
        let thread = std::thread::spawn(move || {
            in_netns(&ns, move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                rt.block_on(write_loop(addr, flag, limit, ids, insert_timeout))
            })
        });
        Load {
            stop,
            thread: Some(thread),
        }
    }

    pub fn finish(mut self) -> Vec<Write> {
        self.stop.store(true, Ordering::SeqCst);
        self.thread
            .take()
            .map(|t| t.join().expect("load thread"))
            .unwrap_or_default()
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

async fn write_loop(
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    limit: Duration,
    ids: std::ops::Range<i64>,
    insert_timeout: Duration,
) -> Vec<Write> {
    let started = Instant::now();
    let mut writes = Vec::new();
    let mut id = ids.start - 1;
    let max = ids.end - 1;
    let mut client: Option<(tokio_postgres::Client, tokio::task::JoinHandle<()>)> = None;
    while !stop.load(Ordering::SeqCst) && started.elapsed() < limit && id < max {
        if client.is_none() {
            let conninfo = format!(
                "host={} port={} user={APP_USER} password={APP_PASSWORD} dbname={APP_DB} connect_timeout=1",
                addr.ip(),
                addr.port()
            );
            match tokio::time::timeout(
                Duration::from_secs(2),
                tokio_postgres::connect(&conninfo, tokio_postgres::NoTls),
            )
            .await
            {
                Ok(Ok((c, conn))) => {
                    let task = tokio::spawn(async move {
                        let _ = conn.await;
                    });
                    client = Some((c, task));
                }
                _ => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            }
        }
        let Some((c, _)) = client.as_ref() else {
            continue;
        };
        id += 1;
        let asked = Instant::now();
        let result = tokio::time::timeout(
            insert_timeout,
            c.execute("INSERT INTO numbers (id) VALUES ($1)", &[&id]),
        )
        .await;
        let at = Instant::now();
        let took = at - asked;
        match result {
            Ok(Ok(_)) => writes.push(Write {
                id,
                at,
                took,
                ok: true,
                error: None,
            }),
            Ok(Err(e)) => {
                writes.push(Write {
                    id,
                    at,
                    took,
                    ok: false,
                    // tokio-postgres shows a server's error as "db error".
                    error: Some(match e.as_db_error() {
                        Some(db) => format!("{}: {}", db.code().code(), db.message()),
                        None => e.to_string(),
                    }),
                });
                client = None;
            }
            Err(_) => {
                writes.push(Write {
                    id,
                    at,
                    took,
                    ok: false,
                    error: Some("timed out".into()),
                });
                client = None;
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    writes
}

/// From a write log and the moment of a fault: the last acknowledged
/// write before it, the first failure after it, and the first success
/// after that failure.
pub struct Outage {
    pub first_failure: Option<Instant>,
    pub recovered: Option<Instant>,
    pub failed: usize,
}

pub fn outage(writes: &[Write], fault: Instant) -> Outage {
    let after: Vec<&Write> = writes.iter().filter(|w| w.at >= fault).collect();
    let first_failure = after.iter().find(|w| !w.ok).map(|w| w.at);
    let recovered =
        first_failure.and_then(|f| after.iter().find(|w| w.ok && w.at > f).map(|w| w.at));
    Outage {
        first_failure,
        recovered,
        failed: after.iter().filter(|w| !w.ok).count(),
    }
}
