//! The four-node layout of `pi-configs/cluster.toml` on this one machine,
//! every role for real: each node is a network + mount + UTS namespace of
//! `gluster_net.rs` (its own glusterd, `/run`, hostname) on one bridge, at
//! the shipped addresses 192.0.2.11..14 with the VIP 192.0.2.10, running
//! `piha run` as pi-1..pi-4. A client namespace at 192.0.2.200 reaches the
//! VIP as an application on the LAN would.
//!
//! The cluster file is the shipped one with only what a lab needs changed:
//! an admin token, bricks and the volume's mount under the lab's temp dir
//! (the web root is that mount, as shipped), the app user and the pooler's
//! login in `[postgres]`, synchronous replication on, backups off, and the
//! demo notes app on. Without glusterd the storage role is left out and the
//! web nodes serve a local folder instead (`Storage::Off`).
//!
//! Used by `tests/drill.rs` and by `examples/cluster.rs` (behind
//! `scripts/local-cluster`), which includes this file by path: it needs only
//! `netns.rs`, `gluster_net.rs` and the piha library, and takes the piha
//! binary as an argument (`CARGO_BIN_EXE_piha` exists for tests only).

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::gluster_net::GlusterLab;
use super::netns::{Lab, in_netns, poll};

pub const VIP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
pub const TOKEN: &str = "drill-admin-token-0123456789";
pub const ADMIN_PORT: u16 = 9000;
pub const POOLER_PORT: u16 = 5432;
pub const SERVER_PORT: u16 = 5433;
pub const APP_USER: &str = "app";
pub const APP_DB: &str = "app";
pub const APP_PASSWORD: &str = "app-password-for-the-lab";
const SERVICE_USER: &str = "piha";
const SERVICE_PASSWORD: &str = "service-password-for-the-lab";
pub const NODES: usize = 4;
/// The Gluster volume's name (the shipped default).
pub const VOLUME: &str = "piha";

/// Whether the storage role runs (it needs glusterd).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Storage {
    On,
    Off,
}

pub struct FullCluster {
    pub gl: GlusterLab,
    pub storage: Storage,
    pub bin: PathBuf,
    pub config: PathBuf,
    /// The web root: the volume's mount point in every node (each node's
    /// mount lives in its own namespace), or a plain folder without storage.
    pub www: PathBuf,
    children: Vec<Option<Child>>,
}

/// Whether glusterd can run here.
pub fn have_glusterd() -> bool {
    ["/usr/sbin/glusterd", "/usr/sbin/gluster"]
        .iter()
        .all(|p| Path::new(p).exists())
}

impl FullCluster {
    /// The lab, glusterd on every node (with `Storage::On`) and the cluster
    /// file; no piha started yet.
    pub fn new(bin: &Path, storage: Storage) -> FullCluster {
        let lab = Lab::with_first_octet(NODES, true, 11);
        let gl = GlusterLab::on(lab);
        if storage == Storage::On {
            for i in 0..NODES {
                gl.start_glusterd(i);
            }
        }
        let www = gl.dir.path().join("www");
        std::fs::create_dir_all(&www).expect("web root");
        let password = gl.dir.path().join("notes-password");
        std::fs::write(&password, format!("{APP_PASSWORD}\n")).expect("password file");
        std::fs::set_permissions(&password, std::fs::Permissions::from_mode(0o600))
            .expect("chmod password file");
        let text = cluster_file(&gl, storage, &www, &password);
        let config = gl.dir.path().join("cluster.toml");
        std::fs::write(&config, text).expect("cluster file");
        FullCluster {
            gl,
            storage,
            bin: bin.to_path_buf(),
            config,
            www,
            children: (0..NODES).map(|_| None).collect(),
        }
    }

    pub fn hostname(i: usize) -> String {
        format!("pi-{}", i + 1)
    }

    pub fn addr(&self, i: usize) -> Ipv4Addr {
        self.gl.lab.node(i).addr
    }

    pub fn client_ns(&self) -> String {
        self.gl.lab.client().name.clone()
    }

    /// `piha run` as pi-(i+1) inside node `i`; its log appended to
    /// `piha-i.log` in the lab dir.
    pub fn start(&mut self, i: usize) {
        let data = self.gl.node_dir(i).join("piha-data");
        std::fs::create_dir_all(&data).expect("data dir");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(i))
            .expect("log file");
        let child = self
            .gl
            .command(i, &self.bin.to_string_lossy())
            .args(["run", "--config"])
            .arg(&self.config)
            .args(["--hostname", &Self::hostname(i), "--data-dir"])
            .arg(&data)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start piha");
        self.children[i] = Some(child);
    }

    pub fn start_all(&mut self) {
        for i in 0..NODES {
            self.start(i);
        }
    }

    /// SIGKILL of node `i`'s piha process, as a crash or an OOM kill would.
    /// What it supervises goes with it: its VIP guard takes the VIP off the
    /// interface, and PostgreSQL gets SIGQUIT (PDEATHSIG). Gluster's own
    /// daemons and the FUSE mount keep running, as they do on a Pi.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.children[i].take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn is_running(&self, i: usize) -> bool {
        self.children[i].is_some()
    }

    /// A node whose piha was started and has exited since.
    fn exited(&self) -> Option<usize> {
        (0..NODES).find(|&i| {
            self.children[i].as_ref().is_some_and(|c| {
                std::fs::read_to_string(format!("/proc/{}/stat", c.id())).map_or(true, |s| {
                    s.rsplit_once(") ").is_some_and(|(_, r)| r.starts_with('Z'))
                })
            })
        })
    }

    /// Stops every node gracefully (SIGTERM, bounded), then kills what is
    /// left; the lab itself goes when `self` is dropped.
    pub fn stop_all(&mut self) {
        for c in self.children.iter().flatten() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(c.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        let end = Instant::now() + Duration::from_secs(15);
        for slot in &mut self.children {
            if let Some(c) = slot.as_mut() {
                while Instant::now() < end {
                    if let Ok(Some(_)) = c.try_wait() {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                let _ = c.kill();
                let _ = c.wait();
            }
            *slot = None;
        }
    }

    pub fn log_path(&self, i: usize) -> PathBuf {
        self.gl.dir.path().join(format!("piha-{i}.log"))
    }

    pub fn log(&self, i: usize) -> String {
        std::fs::read_to_string(self.log_path(i)).unwrap_or_default()
    }

    /// The last 25 lines of every node's log, for failure messages.
    pub fn logs(&self) -> String {
        (0..NODES)
            .map(|i| {
                let log = self.log(i);
                let lines: Vec<&str> = log.lines().collect();
                let tail = lines[lines.len().saturating_sub(25)..].join("\n");
                format!("--- piha on pi-{} (tail) ---\n{tail}", i + 1)
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Copies every node's log (and glusterd's) to `dest`, for a look
    /// after a failed run (the lab's own folder goes with it).
    pub fn save_logs(&self, dest: &Path) {
        let _ = std::fs::create_dir_all(dest);
        for i in 0..NODES {
            let _ = std::fs::copy(self.log_path(i), dest.join(format!("piha-{}.log", i + 1)));
            let gd = self.gl.log_dir(i);
            for e in std::fs::read_dir(&gd).into_iter().flatten().flatten() {
                let name = format!("pi-{}-{}", i + 1, e.file_name().to_string_lossy());
                let _ = std::fs::copy(e.path(), dest.join(name));
            }
        }
    }

    /// GET `path` on node `i`'s admin port from the client namespace.
    pub fn admin_get(&self, i: usize, path: &str) -> Result<Value, String> {
        let addr = SocketAddr::new(IpAddr::V4(self.addr(i)), ADMIN_PORT);
        let (code, body) = http(
            &self.client_ns(),
            addr,
            "GET",
            path,
            None,
            Duration::from_secs(2),
        )?;
        if code != 200 {
            return Err(format!("{path} on pi-{}: {code} {body}", i + 1));
        }
        serde_json::from_str(&body).map_err(|e| format!("{path} on pi-{}: {e}", i + 1))
    }

    pub fn status(&self, i: usize) -> Result<Value, String> {
        self.admin_get(i, "/api/v1/status")
    }

    /// Which nodes have the VIP on their interface now.
    pub fn vip_holders(&self) -> Vec<usize> {
        self.gl.lab.vip_holders(IpAddr::V4(VIP))
    }

    /// The node whose db role runs the primary, by its own report.
    pub fn primary(&self) -> Option<usize> {
        (0..NODES).find(|&i| {
            self.admin_get(i, "/api/v1/db")
                .is_ok_and(|d| d["state"] == "running" && d["role"] == "primary")
        })
    }

    /// The postmaster's pid on node `i`, from its db status.
    pub fn postmaster_pid(&self, i: usize) -> Option<u32> {
        let d = self.admin_get(i, "/api/v1/db").ok()?;
        d["pid"].as_u64().and_then(|p| u32::try_from(p).ok())
    }

    /// Every node's status page reports the whole cluster healthy: every
    /// member up, every role healthy, every HTTP backend UP, no PostgreSQL
    /// server down in the pooler, and (with storage) the volume up and
    /// mounted with every brick online. The first problem found, if any.
    pub fn unhealthy(&self) -> Option<String> {
        (0..NODES).find_map(|i| self.node_problem(i).err())
    }

    fn node_problem(&self, i: usize) -> Result<(), String> {
        let me = Self::hostname(i);
        let doc = self.status(i)?;
        for m in doc["members"].as_array().ok_or("no members")? {
            if m["state"] != "up" {
                return Err(format!("{me} sees {} {}", m["hostname"], m["state"]));
            }
        }
        for r in doc["node"]["roles"].as_array().ok_or("no roles")? {
            if r["state"] != "healthy" {
                return Err(format!(
                    "{me}: role {} is {} ({})",
                    r["role"], r["state"], r["detail"]
                ));
            }
        }
        for b in doc["balancer"]["http"]["backends"]
            .as_array()
            .into_iter()
            .flatten()
        {
            if b["state"] != "UP" {
                return Err(format!("{me}: backend {} is {}", b["name"], b["state"]));
            }
        }
        for b in doc["pooler"]["backends"].as_array().into_iter().flatten() {
            if b["role"] == "down" {
                return Err(format!("{me}: pooler backend {} is down", b["name"]));
            }
        }
        let standbys = doc["db"]["cluster"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|n| n["status"] == "standby")
            .count();
        if doc["db"].is_object() && (doc["db"]["primary"].is_null() || standbys != 2) {
            return Err(format!(
                "{me}: db primary {} with {standbys} standbys",
                doc["db"]["primary"]
            ));
        }
        if self.storage == Storage::On {
            let s = self.admin_get(i, "/api/v1/storage")?;
            if s["mounted"] != true {
                return Err(format!("{me}: the volume is not mounted"));
            }
            let volume = s["view"]["volumes"]
                .as_array()
                .and_then(|v| v.iter().find(|v| v["name"] == VOLUME))
                .ok_or(format!("{me}: no volume {VOLUME} in view"))?;
            if volume["state"] != "UP" {
                return Err(format!("{me}: volume is {}", volume["state"]));
            }
            for b in volume["bricks"].as_array().into_iter().flatten() {
                if b["state"] != "online" {
                    return Err(format!("{me}: brick {} is {}", b["host"], b["state"]));
                }
            }
        }
        Ok(())
    }

    /// Waits until the whole cluster is up and every status page says so,
    /// and the site answers on the VIP; returns how long it took.
    pub fn wait_healthy(&self, limit: Duration) -> Result<Duration, String> {
        let start = Instant::now();
        let mut last = String::new();
        let ok = poll(limit, || {
            std::thread::sleep(Duration::from_millis(200));
            if let Some(i) = self.exited() {
                last = format!("piha on pi-{} exited:\n{}", i + 1, self.log(i));
                return Some(());
            }
            match self.unhealthy() {
                None => Some(()),
                Some(why) => {
                    last = why;
                    None
                }
            }
        });
        match ok {
            Some(()) if self.exited().is_some() => Err(last),
            Some(()) => Ok(start.elapsed()),
            None => Err(format!("not healthy within {limit:?}: {last}")),
        }
    }

    /// The storage brick folder of node `i`.
    pub fn brick(&self, i: usize) -> PathBuf {
        self.gl.node_dir(i).join("brick")
    }

    /// Writes `files` into the site, through node `i`'s view of the web root
    /// (the volume's mount with storage: Gluster replicates them).
    pub fn write_site(&self, i: usize, files: &[(String, Vec<u8>)]) {
        let root = match self.storage {
            Storage::On => self.gl.node_view(i, &self.www),
            Storage::Off => self.www.clone(),
        };
        for (name, body) in files {
            let path = root.join(name);
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).expect("site folder");
            }
            std::fs::write(&path, body).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        }
    }

    /// The status page URL of node `i` (reachable inside the lab).
    pub fn status_url(&self, i: usize) -> String {
        format!("http://{}:{ADMIN_PORT}/", self.addr(i))
    }
}

impl Drop for FullCluster {
    fn drop(&mut self) {
        for i in 0..NODES {
            self.kill(i);
        }
    }
}

/// The shipped cluster file with the lab's changes (see the module doc).
fn cluster_file(gl: &GlusterLab, storage: Storage, www: &Path, password: &Path) -> String {
    let shipped = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("pi-configs/cluster.toml"),
    )
    .expect("pi-configs/cluster.toml is readable");
    let www = www.display();
    let mut text = shipped
        .replacen(
            "[cluster]\n",
            &format!("[cluster]\nadmin_token = \"{TOKEN}\"\n"),
            1,
        )
        .replacen(
            "root = \"/srv/piha/www\"",
            &format!(
                "root = \"{www}\"\nnotes = {{ database = \"{APP_DB}\", user = \"{APP_USER}\", password_file = \"{}\" }}",
                password.display()
            ),
            1,
        )
        .replacen("[postgres]\n", &format!("[postgres]\n{}", postgres_lines()), 1)
        .replacen(
            "[db]\n",
            "[db]\nsynchronous = true\nbackup = false\n",
            1,
        )
        .replacen("[storage]\n", &format!("[storage]\nmount = \"{www}\"\n"), 1);
    for i in 0..NODES {
        let anchor = format!("hostname = \"pi-{}\"\n", i + 1);
        let brick = format!(
            "{anchor}storage = {{ brick = \"{}\" }}\n",
            gl.node_dir(i).join("brick").display()
        );
        text = text.replacen(&anchor, &brick, 1);
    }
    if storage == Storage::Off {
        text = text.replace(", \"storage\"]", "]");
    }
    text
}

/// The app user and its database, and the pooler's own login, made by the
/// db role from these lines.
fn postgres_lines() -> String {
    use piha::pg::auth::ScramKeys;
    let app = ScramKeys::derive(APP_PASSWORD, b"full-cluster-app", 4096)
        .verifier()
        .to_text();
    let service = ScramKeys::derive(SERVICE_PASSWORD, b"full-cluster-svc", 4096).to_text();
    format!(
        "users = [ {{ name = \"{APP_USER}\", secret = \"{app}\" }} ]\n\
         databases = [ {{ name = \"{APP_DB}\" }} ]\n\
         service = {{ user = \"{SERVICE_USER}\", database = \"postgres\", keys = \"{service}\" }}\n"
    )
}

/// One HTTP/1.1 request from inside namespace `ns` on a new connection,
/// all of it within `limit`: the status code and the body.
pub fn http(
    ns: &str,
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
    limit: Duration,
) -> Result<(u16, String), String> {
    in_netns(ns, || http_here(addr, method, path, body, limit))
}

/// [`http`] from the calling thread's own namespace.
pub fn http_here(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
    limit: Duration,
) -> Result<(u16, String), String> {
    let end = Instant::now() + limit;
    let left = || {
        end.saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1))
    };
    let mut s = TcpStream::connect_timeout(&addr, left()).map_err(|e| format!("connect: {e}"))?;
    let body = body.unwrap_or("");
    let content_type = if body.is_empty() {
        ""
    } else {
        "Content-Type: application/json\r\n"
    };
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{content_type}Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.set_write_timeout(Some(left())).ok();
    s.write_all(request.as_bytes())
        .map_err(|e| format!("send: {e}"))?;
    let mut out = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        s.set_read_timeout(Some(left())).ok();
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) => return Err(format!("receive: {e}")),
        }
        if Instant::now() >= end {
            return Err("timed out".into());
        }
        // Bounded: the drill's answers are small.
        if out.len() > 1 << 20 {
            return Err("answer over 1 MiB".into());
        }
    }
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").ok_or("no HTTP head")?;
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("bad status line: {}", head.lines().next().unwrap_or("")))?;
    let chunked = head.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    let body = if chunked {
        dechunk(body).ok_or("bad chunked body")?
    } else {
        body.to_owned()
    };
    Ok((code, body))
}

/// A chunked body's data (no trailers expected from piha).
fn dechunk(mut rest: &str) -> Option<String> {
    let mut out = String::new();
    loop {
        let (size, after) = rest.split_once("\r\n")?;
        let size = usize::from_str_radix(size.split(';').next()?.trim(), 16).ok()?;
        if size == 0 {
            return Some(out);
        }
        out.push_str(after.get(..size)?);
        rest = after.get(size + 2..)?;
    }
}
