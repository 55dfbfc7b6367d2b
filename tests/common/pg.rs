//! Real PostgreSQL for the integration tests: a primary and N streaming
//! standbys (Debian's postgresql-15 binaries: initdb, pg_basebackup, pg_ctl,
//! psql) on loopback, each test with its own temp dir and its own ports.
//!
//! ```ignore
//! let pg = PgCluster::start(2);              // primary + standby1 + standby2
//! let verifier = pg.create_user("app", "app-pw");   // for piha's cluster file
//! pg.primary().psql("CREATE TABLE t (id int)");
//! pg.wait_replayed();
//! assert_eq!(pg.standbys()[0].psql("SELECT count(*) FROM t"), "0");
//! ```
//!
//! - Everything lives in one temp dir (`piha-pg-*`, see `parent_dir`): data
//!   dirs, unix sockets, logs. Every server listens on `addr:port` (TCP, SCRAM
//!   for 127.0.0.0/8, replication included) and on a unix socket in its own
//!   directory (trust; the harness's own `psql` uses it).
//! - Ports: a free one per server, found by binding port 0 on the server's
//!   address; if another process takes it before PostgreSQL binds, the server
//!   is started again on a new one. A fixed port can be asked for
//!   ([`PgClusterBuilder::port`]) when every server has its own address.
//! - PostgreSQL refuses to run as root: as root every PostgreSQL program runs
//!   as the `postgres` OS user (Debian's package creates it; the temp dir is
//!   chowned to it), through `Command::uid/gid` (what `setpriv` does, no PAM
//!   session). As any other user, they run as that user.
//! - Roles: `postgres` (superuser, the bootstrap user), [`REPLICATION_USER`]
//!   (pg_basebackup and the standbys' streaming), [`SERVICE_USER`] (piha's own
//!   login: a superuser here for simplicity; a real cluster would give it
//!   pg_monitor and the lookups it needs), and whatever [`PgCluster::create_user`]
//!   makes. Passwords are stored as SCRAM-SHA-256 verifiers.
//! - Speed: a fresh `initdb` takes about a second, so its output is kept
//!   once under `target/tmp` (`CARGO_TARGET_TMPDIR`) and copied for the next
//!   clusters (set `PIHA_PG_NO_TEMPLATE=1` to always run initdb). Every
//!   cluster made from it shares one system identifier; nothing here relies
//!   on it differing. fsync and full_page_writes are off: a crash of the
//!   machine loses test data, nothing else. synchronous_commit stays on (see
//!   COMMON_CONF). The temp dir is made in /dev/shm when it has room (1 GiB
//!   free): copying a data dir there took 0.12 s against 0.7-2.3 s on the
//!   (busy, shared) ext4 /tmp. `PIHA_PG_TMPDIR` names another parent.
//! - `PIHA_PG_KEEP=1` keeps the temp dir (servers stopped) for a post-mortem.
//! - Cleanup: `Drop` stops every server (`pg_ctl -m immediate stop`, all at
//!   once), kills a postmaster that is still there, and removes the temp dir,
//!   also when the test panics. pg_ctl puts the postmaster in its own session,
//!   so a test binary killed outright (SIGKILL, or Ctrl-C, which skips Drop)
//!   leaves its servers running: the next `PgCluster::start` in any test
//!   binary stops the servers of temp dirs whose owning process is gone and
//!   removes those dirs.
//! - `PIHA_PG_BIN` overrides the binaries' directory
//!   (`/usr/lib/postgresql/15/bin`).

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{OnceLock, mpsc};
use std::time::{Duration, Instant};

/// The bootstrap superuser; the harness's own `psql` logs in as it.
pub const SUPERUSER: &str = "postgres";
/// The role pg_basebackup and the standbys stream as.
pub const REPLICATION_USER: &str = "replicator";
pub const REPLICATION_PASSWORD: &str = "replicator-test-password";
/// piha's own login (health probes, lookups). A superuser in these tests.
pub const SERVICE_USER: &str = "piha";
pub const SERVICE_PASSWORD: &str = "piha-service-test-password";

/// How long one PostgreSQL program (initdb, pg_ctl, pg_basebackup, psql) may
/// run before it is killed and the test fails.
const COMMAND_LIMIT: Duration = Duration::from_secs(60);
/// How long a standby has to show up as streaming, and to replay a given LSN.
const REPLICATION_LIMIT: Duration = Duration::from_secs(30);

/// Arguments of every initdb; part of the template's cache key.
const INITDB_ARGS: &[&str] = &[
    "-U",
    SUPERUSER,
    "-E",
    "UTF8",
    "--locale=C",
    "--auth-local=trust",
    "--auth-host=scram-sha-256",
    "--no-sync",
    // 1 MiB WAL segments instead of 16: a base backup and a standby's start
    // write (zero-filled) segment files, and 16 MiB each is most of the
    // disk traffic of a test cluster.
    "--wal-segsize=1",
];

/// Settings of every server, appended to the postgresql.conf initdb wrote.
/// Per-server settings (address, port, socket dir) live in `server.conf`,
/// included from it, so a standby's copy of the primary's file is rewritten
/// in one place.
const COMMON_CONF: &str = "
# ---- piha test harness (tests/common/pg.rs) ----
wal_level = replica
max_wal_senders = 10
max_replication_slots = 10
hot_standby = on
hot_standby_feedback = on
wal_log_hints = on
wal_receiver_status_interval = 1s
wal_retrieve_retry_interval = 500ms
max_connections = 200
shared_buffers = 16MB
fsync = off
# on, not off: with fsync off a commit costs one write(), and off lets the
# walsender wait for the WAL writer (wal_writer_delay): measured 160 ms from
# commit to a standby seeing the row, against 3-4 ms with on.
synchronous_commit = on
full_page_writes = off
logging_collector = off
log_line_prefix = '%m [%p] %q%u@%d '
log_connections = on
password_encryption = scram-sha-256
include = 'server.conf'
";

const HBA: &str = "
# piha test harness: trust on the unix socket (the harness's own psql),
# SCRAM on loopback TCP, replication included.
local   all             all                     trust
local   replication     all                     trust
host    all             all     127.0.0.0/8     scram-sha-256
host    replication     all     127.0.0.0/8     scram-sha-256
";

/// The directory of the PostgreSQL programs.
pub fn pg_bin() -> PathBuf {
    std::env::var_os("PIHA_PG_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/lib/postgresql/15/bin"))
}

/// `Some((uid, gid))` of the `postgres` OS user when we run as root (the
/// programs are run as it), `None` otherwise (they run as we do).
pub fn run_as() -> Option<(u32, u32)> {
    static RUN_AS: OnceLock<Option<(u32, u32)>> = OnceLock::new();
    *RUN_AS.get_or_init(|| {
        if !rustix::process::geteuid().is_root() {
            return None;
        }
        let id = |flag: &str| -> u32 {
            let out = Command::new("id")
                .args([flag, "postgres"])
                .output()
                .expect("run id");
            assert!(
                out.status.success(),
                "running as root, but there is no `postgres` OS user to run PostgreSQL as \
                 (install postgresql-15: scripts/install-deps): {}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8_lossy(&out.stdout)
                .trim()
                .parse()
                .expect("numeric id")
        };
        Some((id("-u"), id("-g")))
    })
}

/// A PostgreSQL program with a clean environment (no PG* variable of the
/// caller leaks in), run as the `postgres` OS user when we are root.
fn pg_command(program: &str, home: &Path) -> Command {
    let mut cmd = Command::new(pg_bin().join(program));
    cmd.env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("HOME", home)
        .env("LC_ALL", "C")
        .current_dir(home)
        .stdin(Stdio::null());
    if let Some((uid, gid)) = run_as() {
        cmd.uid(uid).gid(gid);
    }
    cmd
}

fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Runs `cmd` (stdin from `input`), bounded by `limit`. Ok(stdout) when it
/// exits 0, else Err with the command, status, stderr and stdout.
fn run(mut cmd: Command, input: Option<&str>, limit: Duration) -> Result<String, String> {
    let what = describe(&cmd);
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    if input.is_some() {
        cmd.stdin(Stdio::piped());
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("{what}: cannot start: {e}"))?;
    if let (Some(mut w), Some(text)) = (child.stdin.take(), input) {
        let text = text.to_owned();
        std::thread::spawn(move || {
            let _ = w.write_all(text.as_bytes());
        });
    }
    let (tx, rx) = mpsc::channel();
    for (i, pipe) in [
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    ]
    .into_iter()
    .enumerate()
    {
        let tx = tx.clone();
        let mut pipe = pipe.expect("piped");
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = pipe.read_to_end(&mut buf);
            let _ = tx.send((i, buf));
        });
    }
    drop(tx);
    let status = wait_bounded(&mut child, limit).ok_or_else(|| {
        let _ = child.kill();
        let _ = child.wait();
        format!("{what}: still running after {limit:?}, killed")
    })?;
    // A grandchild that kept the pipes (it should not: pg_ctl sends the
    // postmaster's output to its log) must not hang the test.
    let mut outs = [Vec::new(), Vec::new()];
    for _ in 0..2 {
        match rx.recv_timeout(Duration::from_secs(5)) {
            Ok((i, buf)) => outs[i] = buf,
            Err(_) => break,
        }
    }
    let stdout = String::from_utf8_lossy(&outs[0]).into_owned();
    if status.success() {
        Ok(stdout)
    } else {
        Err(format!(
            "{what}: {status}\nstderr: {}\nstdout: {}",
            String::from_utf8_lossy(&outs[1]).trim_end(),
            stdout.trim_end()
        ))
    }
}

fn wait_bounded(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    let mut nap = Duration::from_millis(1);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(nap);
        nap = (nap * 2).min(Duration::from_millis(20));
    }
}

/// A port nobody listens on at `addr` right now (bound, read, released).
fn free_port(addr: IpAddr) -> u16 {
    TcpListener::bind((addr, 0))
        .and_then(|l| l.local_addr())
        .unwrap_or_else(|e| panic!("cannot bind {addr}:0 to find a free port: {e}"))
        .port()
}

/// `'text'` as an SQL string literal (standard_conforming_strings is on).
pub fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// `"name"` as an SQL identifier.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// One PostgreSQL server of a [`PgCluster`].
#[derive(Debug)]
pub struct PgServer {
    /// `primary`, `standby1`, `standby2`, ...; also the standby's
    /// application_name in pg_stat_replication.
    pub name: String,
    pub addr: IpAddr,
    pub port: u16,
    pub data_dir: PathBuf,
    /// Where its unix socket (`.s.PGSQL.<port>`) lives.
    pub socket_dir: PathBuf,
    /// Its stderr log (pg_ctl -l).
    pub log: PathBuf,
    /// The cluster's temp dir: the programs' HOME and working directory.
    home: PathBuf,
    /// Whether `port` may be changed when it turns out to be taken.
    fixed_port: bool,
}

impl PgServer {
    fn new(home: &Path, name: &str, addr: IpAddr, port: Option<u16>) -> PgServer {
        assert!(
            addr.is_loopback(),
            "{name}: {addr} is not a loopback address (pg_hba.conf allows 127.0.0.0/8)"
        );
        PgServer {
            name: name.to_owned(),
            addr,
            port: port.unwrap_or_else(|| free_port(addr)),
            data_dir: home.join(name),
            socket_dir: home.join(format!("{name}.sock")),
            log: home.join(format!("{name}.log")),
            home: home.to_owned(),
            fixed_port: port.is_some(),
        }
    }

    /// `addr:port`.
    pub fn socket_addr(&self) -> SocketAddr {
        SocketAddr::new(self.addr, self.port)
    }

    /// A libpq key/value connection string over TCP.
    pub fn conninfo(&self, user: &str, password: &str, dbname: &str) -> String {
        format!(
            "host={} port={} user={} password={} dbname={}",
            self.addr,
            self.port,
            conn_value(user),
            conn_value(password),
            conn_value(dbname)
        )
    }

    /// The replication slot of this server when it is a standby.
    pub fn slot(&self) -> String {
        format!("slot_{}", self.name)
    }

    /// Runs `sql` (one or more statements) as `postgres` in database
    /// `postgres` over the unix socket: `psql -XAtq -v ON_ERROR_STOP=1`.
    /// Returns stdout without its last newline (rows on lines, columns
    /// separated by `|`); panics with psql's stderr and the log tail on error.
    pub fn psql(&self, sql: &str) -> String {
        self.psql_in("postgres", sql)
    }

    /// [`PgServer::psql`] in database `db`.
    pub fn psql_in(&self, db: &str, sql: &str) -> String {
        self.try_psql_in(db, sql)
            .unwrap_or_else(|e| panic!("{}: {e}\n{}", self.name, self.log_tail(20)))
    }

    /// [`PgServer::psql`], returning psql's error instead of panicking.
    pub fn try_psql(&self, sql: &str) -> Result<String, String> {
        self.try_psql_in("postgres", sql)
    }

    pub fn try_psql_in(&self, db: &str, sql: &str) -> Result<String, String> {
        let mut cmd = pg_command("psql", &self.home);
        cmd.args(["-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-h"])
            .arg(&self.socket_dir)
            .args([
                "-p",
                &self.port.to_string(),
                "-U",
                SUPERUSER,
                "-d",
                db,
                "-f",
                "-",
            ]);
        run(cmd, Some(sql), COMMAND_LIMIT).map(trim_newline)
    }

    /// Runs `sql` as `user` with `password` over TCP (`addr:port`, SCRAM), the
    /// way an application would log in.
    pub fn try_psql_tcp(
        &self,
        user: &str,
        password: &str,
        db: &str,
        sql: &str,
    ) -> Result<String, String> {
        let mut cmd = pg_command("psql", &self.home);
        cmd.args([
            "-X",
            "-A",
            "-t",
            "-q",
            "-w",
            "-v",
            "ON_ERROR_STOP=1",
            "-f",
            "-",
        ])
        .arg(self.conninfo(user, password, db));
        run(cmd, Some(sql), COMMAND_LIMIT).map(trim_newline)
    }

    /// Starts the server (again) with `pg_ctl -w start`. Panics with the log
    /// tail when it does not come up.
    pub fn start(&self) {
        if let Err(e) = self.try_start() {
            panic!("{}: {e}\n{}", self.name, self.log_tail(30));
        }
    }

    fn try_start(&self) -> Result<(), String> {
        let mut cmd = pg_command("pg_ctl", &self.home);
        cmd.arg("-D")
            .arg(&self.data_dir)
            .arg("-l")
            .arg(&self.log)
            .args(["-w", "-t", "30", "start"]);
        run(cmd, None, COMMAND_LIMIT).map(|_| ())
    }

    /// Writes `server.conf` (address, port, socket dir) into the data dir.
    fn write_server_conf(&self) {
        std::fs::create_dir_all(&self.socket_dir).expect("socket dir");
        if let Some((uid, gid)) = run_as() {
            chown(&self.socket_dir, uid, gid);
        }
        let conf = format!(
            "listen_addresses = '{}'\nport = {}\nunix_socket_directories = '{}'\ncluster_name = '{}'\n",
            self.addr,
            self.port,
            self.socket_dir.display(),
            self.name
        );
        let path = self.data_dir.join("server.conf");
        std::fs::write(&path, conf).expect("write server.conf");
        if let Some((uid, gid)) = run_as() {
            chown(&path, uid, gid);
        }
    }

    /// First start: on a port found free, and on a new one if something took
    /// it in between (other tests run in parallel).
    fn first_start(&mut self) {
        for attempt in 1..=5 {
            self.write_server_conf();
            let before = std::fs::metadata(&self.log).map_or(0, |m| m.len() as usize);
            match self.try_start() {
                Ok(()) => return,
                Err(e) => {
                    let log = std::fs::read(&self.log).unwrap_or_default();
                    let log = String::from_utf8_lossy(log.get(before..).unwrap_or_default());
                    let taken = log.contains("could not bind") || log.contains("already in use");
                    if !taken || self.fixed_port || attempt == 5 {
                        panic!("{}: {e}\n{}", self.name, self.log_tail(30));
                    }
                    self.port = free_port(self.addr);
                }
            }
        }
    }

    /// `pg_ctl -m immediate stop` (like pulling the plug: no checkpoint).
    pub fn stop_immediate(&self) {
        let mut cmd = pg_command("pg_ctl", &self.home);
        cmd.arg("-D")
            .arg(&self.data_dir)
            .args(["-m", "immediate", "-w", "-t", "30", "stop"]);
        if let Err(e) = run(cmd, None, COMMAND_LIMIT) {
            panic!("{}: {e}\n{}", self.name, self.log_tail(20));
        }
    }

    /// Whether its postmaster is running (postmaster.pid names a live pid).
    pub fn is_running(&self) -> bool {
        self.postmaster_pid().is_some_and(pid_alive)
    }

    /// The pid in postmaster.pid, if the file is there.
    pub fn postmaster_pid(&self) -> Option<i32> {
        let text = std::fs::read_to_string(self.data_dir.join("postmaster.pid")).ok()?;
        text.lines().next()?.trim().parse().ok()
    }

    /// `SELECT pg_promote()`: waits (up to 30 s) until it accepts writes.
    pub fn promote(&self) {
        let done = self.psql("SELECT pg_promote(true, 30)");
        assert_eq!(done, "t", "{}: pg_promote did not finish", self.name);
    }

    pub fn is_in_recovery(&self) -> bool {
        self.psql("SELECT pg_is_in_recovery()") == "t"
    }

    /// Its WAL position: the insert LSN on a primary, the replay LSN on a
    /// standby.
    pub fn lsn(&self) -> String {
        self.psql(
            "SELECT CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() \
             ELSE pg_current_wal_lsn() END",
        )
    }

    /// Waits (bounded) until this standby has replayed `lsn`.
    pub fn wait_replay(&self, lsn: &str) {
        let sql = format!(
            "SELECT coalesce(pg_last_wal_replay_lsn() >= {}::pg_lsn, false)",
            quote_literal(lsn)
        );
        let start = Instant::now();
        loop {
            if self.psql(&sql) == "t" {
                return;
            }
            if start.elapsed() > REPLICATION_LIMIT {
                panic!(
                    "{}: has not replayed {lsn} within {REPLICATION_LIMIT:?} (at {})\n{}",
                    self.name,
                    self.lsn(),
                    self.log_tail(20)
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Makes this standby stream from `primary` (a promoted sibling, say):
    /// creates its slot there if missing, points primary_conninfo and
    /// primary_slot_name at it and reloads (the walreceiver restarts with
    /// them; recovery_target_timeline is `latest`, so it follows the new
    /// timeline). Works when this standby has not replayed past the point
    /// where `primary` was promoted.
    pub fn follow(&self, primary: &PgServer) {
        let slot = self.slot();
        primary.psql(&format!(
            "SELECT pg_create_physical_replication_slot({0}) \
             WHERE NOT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = {0})",
            quote_literal(&slot)
        ));
        let conninfo = format!(
            "{} application_name={}",
            primary.conninfo(REPLICATION_USER, REPLICATION_PASSWORD, "replication"),
            self.name
        );
        self.psql(&format!(
            "ALTER SYSTEM SET primary_conninfo = {};\n\
             ALTER SYSTEM SET primary_slot_name = {};\n\
             SELECT pg_reload_conf();",
            quote_literal(&conninfo),
            quote_literal(&slot)
        ));
    }

    /// Waits (bounded) until every one of `standbys` streams from this
    /// server (pg_stat_replication, by application_name).
    pub fn wait_streaming(&self, standbys: &[PgServer]) {
        if standbys.is_empty() {
            return;
        }
        let names: Vec<String> = standbys.iter().map(|s| quote_literal(&s.name)).collect();
        let sql = format!(
            "SELECT count(DISTINCT application_name) FROM pg_stat_replication \
             WHERE application_name IN ({}) AND state = 'streaming'",
            names.join(", ")
        );
        let start = Instant::now();
        loop {
            if self.psql(&sql) == standbys.len().to_string() {
                return;
            }
            if start.elapsed() > REPLICATION_LIMIT {
                let tails: Vec<String> = standbys.iter().map(|s| s.log_tail(20)).collect();
                panic!(
                    "not all of [{}] stream from {} within {REPLICATION_LIMIT:?}; \
                     pg_stat_replication: [{}]\n{}\n{}",
                    names.join(", "),
                    self.name,
                    self.psql("SELECT application_name, state FROM pg_stat_replication"),
                    self.log_tail(20),
                    tails.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The last `lines` lines of its log, headed by its name.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        let from = all.len().saturating_sub(lines);
        format!(
            "---- {} log ({}) ----\n{}",
            self.name,
            self.log.display(),
            all[from..].join("\n")
        )
    }
}

fn trim_newline(mut s: String) -> String {
    if s.ends_with('\n') {
        s.pop();
    }
    s
}

/// A libpq connection-string value, quoted when it needs to be.
fn conn_value(v: &str) -> String {
    if !v.is_empty() && !v.contains([' ', '\'', '\\', '=']) {
        return v.to_owned();
    }
    format!("'{}'", v.replace('\\', "\\\\").replace('\'', "\\'"))
}

fn chown(path: &Path, uid: u32, gid: u32) {
    rustix::fs::chown(
        path,
        Some(rustix::fs::Uid::from_raw(uid)),
        Some(rustix::fs::Gid::from_raw(gid)),
    )
    .unwrap_or_else(|e| panic!("chown {}: {e}", path.display()));
}

fn pid_alive(pid: i32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Field 22 of /proc/<pid>/stat (start time in clock ticks since boot):
/// with the pid, it names one process even after pids wrap.
fn start_time(pid: u32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_comm = &stat[stat.rfind(')')? + 1..];
    after_comm.split_whitespace().nth(19).map(str::to_owned)
}

/// Options of a cluster; [`PgCluster::builder`].
#[derive(Debug, Clone)]
pub struct PgClusterBuilder {
    standbys: usize,
    addrs: Vec<IpAddr>,
    port: Option<u16>,
    settings: Vec<String>,
}

impl PgClusterBuilder {
    /// How many streaming standbys (default 2).
    pub fn standbys(mut self, n: usize) -> Self {
        self.standbys = n;
        self
    }

    /// Every server listens on `addr` (default 127.0.0.1), each on its own port.
    pub fn addr(mut self, addr: IpAddr) -> Self {
        self.addrs = vec![addr];
        self
    }

    /// One address per server, primary first (127.61.N.x, say). Must have
    /// as many as servers.
    pub fn addrs(mut self, addrs: &[IpAddr]) -> Self {
        self.addrs = addrs.to_vec();
        self
    }

    /// Every server on this port (piha's `server_port`); needs one address
    /// per server. Without it, each gets a free port.
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    /// An extra postgresql.conf line (`"max_connections = 300"`) for every
    /// server; it overrides the harness's own.
    pub fn setting(mut self, line: &str) -> Self {
        self.settings.push(line.to_owned());
        self
    }

    pub fn start(self) -> PgCluster {
        PgCluster::start_with(self)
    }
}

/// A primary and its streaming standbys. Dropping it stops them all and
/// removes their files.
pub struct PgCluster {
    /// Servers, primary first. Declared before `dir` so that nothing is
    /// removed before `Drop::drop` stopped the servers (it runs first anyway).
    servers: Vec<PgServer>,
    service_verifier: String,
    dir: tempfile::TempDir,
}

impl PgCluster {
    /// A primary and `standbys` streaming standbys on 127.0.0.1, free ports.
    pub fn start(standbys: usize) -> PgCluster {
        PgCluster::builder().standbys(standbys).start()
    }

    pub fn builder() -> PgClusterBuilder {
        PgClusterBuilder {
            standbys: 2,
            addrs: vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
            port: None,
            settings: Vec::new(),
        }
    }

    fn start_with(opts: PgClusterBuilder) -> PgCluster {
        sweep_leftovers();
        let n = opts.standbys + 1;
        let addrs: Vec<IpAddr> = match opts.addrs.len() {
            1 => vec![opts.addrs[0]; n],
            k if k == n => opts.addrs.clone(),
            k => panic!("{k} addresses for {n} servers"),
        };
        if opts.port.is_some() {
            let mut distinct = addrs.clone();
            distinct.sort();
            distinct.dedup();
            assert_eq!(
                distinct.len(),
                n,
                "a fixed port needs one address per server"
            );
        }

        let dir = tempfile::Builder::new()
            .prefix("piha-pg-")
            .tempdir_in(parent_dir())
            .expect("temp dir");
        // Marks whose servers these are, for sweep_leftovers.
        let me = std::process::id();
        std::fs::write(
            dir.path().join("owner"),
            format!("{me} {}", start_time(me).unwrap_or_default()),
        )
        .expect("write owner");
        if let Some((uid, gid)) = run_as() {
            chown(dir.path(), uid, gid);
        }
        let home = dir.path().to_owned();

        let mut cluster = PgCluster {
            servers: Vec::new(),
            service_verifier: String::new(),
            dir,
        };
        // Pushed before starting, so that a panic half-way still stops what
        // did start (Drop).
        cluster
            .servers
            .push(PgServer::new(&home, "primary", addrs[0], opts.port));
        for (i, addr) in addrs.iter().enumerate().skip(1) {
            cluster.servers.push(PgServer::new(
                &home,
                &format!("standby{i}"),
                *addr,
                opts.port,
            ));
        }

        let extra: String = opts.settings.iter().map(|l| format!("{l}\n")).collect();
        let primary = &mut cluster.servers[0];
        init_data_dir(primary);
        append(
            &primary.data_dir.join("postgresql.conf"),
            &format!("{COMMON_CONF}{extra}"),
        );
        std::fs::write(primary.data_dir.join("pg_hba.conf"), HBA).expect("write pg_hba.conf");
        primary.first_start();
        // Roles and the standbys' slots in one psql run (each run is a
        // process and a connection). The slots are made here, reserving WAL
        // at once: with `pg_basebackup -C` a slot appears only after the
        // backup's checkpoint, and the checkpoint of a backup running beside
        // it can recycle the WAL it needs.
        let mut setup = format!(
            "CREATE ROLE {} WITH REPLICATION LOGIN PASSWORD {};\n\
             CREATE ROLE {} WITH SUPERUSER LOGIN PASSWORD {};\n\
             SELECT rolpassword FROM pg_authid WHERE rolname = {};\n",
            quote_ident(REPLICATION_USER),
            quote_literal(REPLICATION_PASSWORD),
            quote_ident(SERVICE_USER),
            quote_literal(SERVICE_PASSWORD),
            quote_literal(SERVICE_USER)
        );
        for standby in &cluster.servers[1..] {
            setup.push_str(&format!(
                "SELECT FROM pg_create_physical_replication_slot({}, true);\n",
                quote_literal(&standby.slot())
            ));
        }
        let out = cluster.servers[0].psql(&setup);
        cluster.service_verifier = out.lines().next().unwrap_or_default().to_owned();

        // Standbys side by side: base backup, configure, start.
        let (primary, standbys) = cluster.servers.split_first_mut().expect("primary");
        let primary = &*primary;
        std::thread::scope(|s| {
            for standby in standbys.iter_mut() {
                s.spawn(move || {
                    base_backup(primary, standby);
                    standby.first_start();
                });
            }
        });
        cluster.primary().wait_streaming(cluster.standbys());
        cluster
    }

    pub fn primary(&self) -> &PgServer {
        &self.servers[0]
    }

    pub fn standbys(&self) -> &[PgServer] {
        &self.servers[1..]
    }

    /// Primary first, then the standbys.
    pub fn servers(&self) -> &[PgServer] {
        &self.servers
    }

    /// The temp dir holding every data dir, socket and log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Creates a login role with `password` on the primary and returns its
    /// stored SCRAM-SHA-256 verifier (pg_authid.rolpassword), what piha's
    /// cluster file holds for it.
    pub fn create_user(&self, name: &str, password: &str) -> String {
        self.primary().psql(&format!(
            "CREATE ROLE {} WITH LOGIN PASSWORD {}",
            quote_ident(name),
            quote_literal(password)
        ));
        self.verifier(name)
    }

    /// A database owned by `owner` (so the owner can create tables in it).
    pub fn create_database(&self, name: &str, owner: &str) {
        self.primary().psql(&format!(
            "CREATE DATABASE {} OWNER {}",
            quote_ident(name),
            quote_ident(owner)
        ));
    }

    /// The stored verifier of role `name` on the primary.
    pub fn verifier(&self, name: &str) -> String {
        let v = self.primary().psql(&format!(
            "SELECT rolpassword FROM pg_authid WHERE rolname = {}",
            quote_literal(name)
        ));
        assert!(!v.is_empty(), "role {name} has no password");
        v
    }

    /// The stored verifier of [`SERVICE_USER`] (its password is
    /// [`SERVICE_PASSWORD`]).
    pub fn service_verifier(&self) -> &str {
        &self.service_verifier
    }

    /// Waits (bounded) until every standby has replayed the primary's current
    /// WAL position.
    pub fn wait_replayed(&self) {
        let lsn = self.primary().lsn();
        for standby in self.standbys() {
            standby.wait_replay(&lsn);
        }
    }

    /// The last lines of every server's log, for failure messages.
    pub fn log_tails(&self) -> String {
        self.servers
            .iter()
            .map(|s| s.log_tail(20))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        stop_all(&self.servers);
        if std::env::var_os("PIHA_PG_KEEP").is_some() {
            eprintln!("PIHA_PG_KEEP: leaving {}", self.dir.path().display());
            self.dir.disable_cleanup(true);
        }
    }
}

/// `pg_ctl -m immediate stop` on every running server at once, then SIGKILL
/// for a postmaster still there.
fn stop_all(servers: &[PgServer]) {
    let mut stops = Vec::new();
    for s in servers.iter().filter(|s| s.is_running()) {
        let mut cmd = pg_command("pg_ctl", &s.home);
        cmd.arg("-D")
            .arg(&s.data_dir)
            .args(["-m", "immediate", "-w", "-t", "10", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Ok(child) = cmd.spawn() {
            stops.push(child);
        }
    }
    for mut child in stops {
        if wait_bounded(&mut child, Duration::from_secs(15)).is_none() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
    for s in servers {
        if let Some(pid) = s.postmaster_pid().filter(|p| pid_alive(*p)) {
            kill(pid, rustix::process::Signal::KILL);
        }
    }
}

fn kill(pid: i32, sig: rustix::process::Signal) {
    if let Some(pid) = rustix::process::Pid::from_raw(pid) {
        let _ = rustix::process::kill_process(pid, sig);
    }
}

fn append(path: &Path, text: &str) {
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    f.write_all(text.as_bytes()).expect("append");
}

/// The primary's data dir: a copy of the cached initdb output, or a fresh
/// initdb (then cached for the next clusters).
fn init_data_dir(server: &PgServer) {
    // One initdb per process at a time: the tests running beside this one
    // wait for the template rather than run initdb too.
    static MAKING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _making = MAKING.lock().unwrap_or_else(|e| e.into_inner());
    let template = template_path();
    if let Some(t) = template
        .as_ref()
        .filter(|t| t.join("global/pg_control").exists())
    {
        copy_dir(t, &server.data_dir).unwrap_or_else(|e| panic!("{e}"));
        return;
    }
    let mut cmd = pg_command("initdb", &server.home);
    cmd.arg("-D").arg(&server.data_dir).args(INITDB_ARGS);
    run(cmd, None, COMMAND_LIMIT).unwrap_or_else(|e| panic!("{e}"));
    if let Some(t) = template {
        // Copy aside, then rename into place: atomic, so another test binary
        // sees either no template or a whole one. Losing the race is fine.
        // The staging name is this process's (one initdb at a time in it);
        // a leftover of a killed process with the same pid goes first.
        let staging = t.with_extension(format!("tmp-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&staging);
        if copy_dir(&server.data_dir, &staging).is_err() || std::fs::rename(&staging, &t).is_err() {
            let _ = std::fs::remove_dir_all(&staging);
        } else {
            remove_stale_templates(&t);
        }
    }
}

/// Where the initdb output is cached: under target/tmp, keyed by the
/// binaries, initdb's arguments and the OS user the files belong to.
fn template_path() -> Option<PathBuf> {
    if std::env::var_os("PIHA_PG_NO_TEMPLATE").is_some() {
        return None;
    }
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"));
    std::fs::create_dir_all(dir).ok()?;
    // FNV-1a: stable across runs and Rust versions (DefaultHasher is not).
    let mut h: u64 = 0xcbf29ce484222325;
    let key = format!("{}|{}", pg_bin().display(), INITDB_ARGS.join(" "));
    for b in key.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x100000001b3);
    }
    let owner = run_as().map_or(rustix::process::geteuid().as_raw(), |(uid, _)| uid);
    Some(dir.join(format!("pg-template-u{owner}-{h:016x}")))
}

/// Removes templates of this owner made with other binaries or initdb
/// arguments (a harness change makes a new key; the old copy would stay).
fn remove_stale_templates(current: &Path) {
    let (Some(parent), Some(name)) = (current.parent(), current.file_name()) else {
        return;
    };
    let name = name.to_string_lossy();
    let Some((prefix, _)) = name.rsplit_once('-') else {
        return;
    };
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let other = entry.file_name().to_string_lossy().into_owned();
        if other != name && other.starts_with(&format!("{prefix}-")) && !other.contains(".tmp-") {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// `cp -a from to` (keeps owner and modes; `to` must not exist).
fn copy_dir(from: &Path, to: &Path) -> Result<(), String> {
    let mut cmd = Command::new("cp");
    cmd.arg("-a").arg(from).arg(to);
    run(cmd, None, COMMAND_LIMIT).map(|_| ())
}

/// `pg_basebackup -R -X stream -S slot` (the slot exists already) from
/// `primary` into the standby's data dir, streaming as application_name = its
/// name.
fn base_backup(primary: &PgServer, standby: &PgServer) {
    let mut cmd = pg_command("pg_basebackup", &standby.home);
    cmd.arg("-d")
        .arg(format!(
            "{} application_name={}",
            primary.conninfo(REPLICATION_USER, REPLICATION_PASSWORD, "replication"),
            standby.name
        ))
        .arg("-D")
        .arg(&standby.data_dir)
        .args(["-R", "-X", "stream", "-S", &standby.slot()])
        .args(["--checkpoint=fast", "--no-sync"]);
    if let Err(e) = run(cmd, None, COMMAND_LIMIT) {
        panic!("{}: {e}\n{}", standby.name, primary.log_tail(20));
    }
}

/// Where the clusters' temp dirs are made: `PIHA_PG_TMPDIR`, else /dev/shm
/// (tmpfs: no journal, no disk) when it has 1 GiB free (a container's
/// 64 MiB /dev/shm has not), else `$TMPDIR`.
fn parent_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("PIHA_PG_TMPDIR") {
        return PathBuf::from(dir);
    }
    let shm = Path::new("/dev/shm");
    let roomy = rustix::fs::statvfs(shm)
        .map(|v| v.f_bavail.saturating_mul(v.f_frsize) >= 1 << 30)
        .unwrap_or(false);
    if roomy && rustix::fs::access(shm, rustix::fs::Access::WRITE_OK).is_ok() {
        shm.to_owned()
    } else {
        std::env::temp_dir()
    }
}

/// Stops the servers of `piha-pg-*` temp dirs whose test process is gone
/// (killed before its Drop ran) and removes the dirs. Once per process.
fn sweep_leftovers() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let mut parents = vec![
            parent_dir(),
            std::env::temp_dir(),
            PathBuf::from("/dev/shm"),
        ];
        parents.sort();
        parents.dedup();
        let entries = parents
            .iter()
            .filter_map(|p| std::fs::read_dir(p).ok())
            .flatten();
        for entry in entries.flatten() {
            let path = entry.path();
            if !entry.file_name().to_string_lossy().starts_with("piha-pg-") {
                continue;
            }
            let Ok(owner) = std::fs::read_to_string(path.join("owner")) else {
                continue;
            };
            let mut it = owner.split_whitespace();
            let (Some(pid), started) = (it.next().and_then(|p| p.parse::<u32>().ok()), it.next())
            else {
                continue;
            };
            let alive = match started {
                Some(t) => start_time(pid).as_deref() == Some(t),
                None => pid_alive(pid as i32),
            };
            if alive {
                continue; // its test binary still runs
            }
            let Ok(subdirs) = std::fs::read_dir(&path) else {
                continue;
            };
            for sub in subdirs.flatten() {
                let data_dir = sub.path();
                let Some(pid) = std::fs::read_to_string(data_dir.join("postmaster.pid"))
                    .ok()
                    .and_then(|t| t.lines().next().and_then(|l| l.trim().parse::<i32>().ok()))
                else {
                    continue;
                };
                // Only a postmaster working in this very data dir (the pid
                // may have been reused since).
                let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).ok();
                if cwd.as_deref() != Some(data_dir.as_path()) {
                    continue;
                }
                kill(pid, rustix::process::Signal::QUIT);
                let deadline = Instant::now() + Duration::from_secs(5);
                while pid_alive(pid) && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(20));
                }
                kill(pid, rustix::process::Signal::KILL);
            }
            let _ = std::fs::remove_dir_all(&path);
        }
    });
}
