//! Starting real `piha run` processes on loopback for the integration tests.
//!
//! Each test takes its own 127.61.N.0/24 so tests run in parallel without
//! sharing ports, and derives its cluster file from the shipped
//! `pi-configs/cluster.toml` (addresses 192.0.2.x moved to 127.61.N.x), so the
//! tests exercise the layout users get. Every process is killed when the
//! `Cluster` is dropped, also when a test fails.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_piha");
pub const TOKEN: &str = "test-admin-token-0123456789";

pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub prefix: String,
    pub nodes: Vec<Node>,
}

pub struct Node {
    pub hostname: String,
    pub address: String,
    pub admin: SocketAddr,
    pub data_dir: PathBuf,
    pub log: PathBuf,
    pub extra_args: Vec<String>,
    /// Run as `sh -c 'WATCHDOG_PID=$$ exec piha ...'` (systemd's view of a pid).
    pub exec_via_shell: bool,
    pub child: Option<Child>,
}

/// The shipped cluster file moved onto 127.61.`net`.x, with an admin token.
pub fn cluster_file(net: u8) -> String {
    let shipped = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("pi-configs/cluster.toml"),
    )
    .expect("pi-configs/cluster.toml is readable");
    let moved = shipped.replace("192.0.2.", &format!("127.61.{net}."));
    add_token(&moved)
}

fn add_token(text: &str) -> String {
    text.replacen(
        "[cluster]\n",
        &format!("[cluster]\nadmin_token = \"{TOKEN}\"\n"),
        1,
    )
}

impl Cluster {
    /// Writes the cluster file; starts no process.
    pub fn new(net: u8) -> Cluster {
        Cluster::with_file(net, &cluster_file(net))
    }

    pub fn with_file(net: u8, text: &str) -> Cluster {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("cluster.toml");
        std::fs::write(&config, text).expect("write cluster file");
        let prefix = format!("127.61.{net}.");
        let nodes = (1..=4)
            .map(|i| {
                Node::new(
                    dir.path(),
                    &format!("pi-{i}"),
                    &format!("{prefix}{}", 10 + i),
                )
            })
            .collect();
        Cluster {
            dir,
            config,
            prefix,
            nodes,
        }
    }

    /// A cluster file of `text` with nodes `hosts` (hostname, last octet of
    /// 127.61.`net`.x); starts no process.
    pub fn with_hosts(net: u8, text: &str, hosts: &[(&str, u8)]) -> Cluster {
        let mut c = Cluster::with_file(net, text);
        c.nodes = hosts
            .iter()
            .map(|(h, octet)| Node::new(c.dir.path(), h, &format!("{}{octet}", c.prefix)))
            .collect();
        c
    }

    /// Index of the node named `hostname`.
    pub fn index(&self, hostname: &str) -> usize {
        self.nodes
            .iter()
            .position(|n| n.hostname == hostname)
            .unwrap_or_else(|| panic!("no node {hostname}"))
    }

    /// Starts all four nodes of the file.
    pub fn start_all(net: u8) -> Cluster {
        let mut c = Cluster::new(net);
        for i in 0..c.nodes.len() {
            c.start(i);
        }
        c
    }

    /// Adds a node that is not in the file (joins by pattern).
    pub fn add_node(&mut self, hostname: &str, host_octet: u8) -> usize {
        let address = format!("{}{host_octet}", self.prefix);
        let mut node = Node::new(self.dir.path(), hostname, &address);
        node.extra_args = vec!["--address".into(), address];
        self.nodes.push(node);
        self.nodes.len() - 1
    }

    pub fn start(&mut self, i: usize) {
        let config = self.config.clone();
        self.nodes[i].spawn(&config, &[]);
    }

    pub fn start_with_env(&mut self, i: usize, env: &[(&str, &str)]) {
        let config = self.config.clone();
        self.nodes[i].spawn(&config, env);
    }

    /// Starts node `i` as systemd would: NOTIFY_SOCKET, WATCHDOG_USEC and
    /// WATCHDOG_PID set to the node's own pid (a shell that execs piha, so
    /// the pid is known before piha runs).
    pub fn start_as_systemd(&mut self, i: usize, notify_socket: &Path, watchdog_usec: u64) {
        let config = self.config.clone();
        let socket = notify_socket.to_string_lossy().into_owned();
        let usec = watchdog_usec.to_string();
        let env = [
            ("NOTIFY_SOCKET", socket.as_str()),
            ("WATCHDOG_USEC", usec.as_str()),
        ];
        self.nodes[i].exec_via_shell = true;
        self.nodes[i].spawn(&config, &env);
    }

    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn signal(&self, i: usize, sig: &str) {
        let pid = self.nodes[i]
            .child
            .as_ref()
            .map(|c| c.id())
            .expect("node is running");
        let ok = Command::new("kill")
            .args([format!("-{sig}"), pid.to_string()])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "kill -{sig} {pid} failed");
    }

    /// Waits for the process to exit by itself, up to `limit`.
    pub fn wait_exit(&mut self, i: usize, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        let child = self.nodes[i].child.as_mut()?;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                self.nodes[i].child = None;
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn is_running(&mut self, i: usize) -> bool {
        match self.nodes[i].child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    pub fn status(&self, i: usize) -> Result<serde_json::Value, String> {
        let body = http_get(self.nodes[i].admin, "/api/v1/status")?;
        serde_json::from_str(&body.1).map_err(|e| format!("bad JSON: {e}"))
    }

    /// The state node `i` reports for every member, by hostname.
    pub fn member_states(&self, i: usize) -> Result<Vec<(String, String)>, String> {
        let doc = self.status(i)?;
        let members = doc["members"].as_array().ok_or("no members array")?;
        Ok(members
            .iter()
            .map(|m| {
                (
                    m["hostname"].as_str().unwrap_or("?").to_owned(),
                    m["state"].as_str().unwrap_or("?").to_owned(),
                )
            })
            .collect())
    }

    pub fn log(&self, i: usize) -> String {
        std::fs::read_to_string(&self.nodes[i].log).unwrap_or_default()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

impl Node {
    fn new(dir: &Path, hostname: &str, address: &str) -> Node {
        let admin_port = 9000;
        Node {
            hostname: hostname.to_owned(),
            address: address.to_owned(),
            admin: format!("{address}:{admin_port}")
                .parse()
                .expect("admin addr"),
            data_dir: dir.join(hostname),
            log: dir.join(format!("{hostname}.log")),
            extra_args: vec![],
            exec_via_shell: false,
            child: None,
        }
    }

    fn spawn(&mut self, config: &Path, env: &[(&str, &str)]) {
        assert!(self.child.is_none(), "{} already running", self.hostname);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log file");
        let mut cmd = if self.exec_via_shell {
            let mut sh = Command::new("sh");
            sh.args(["-c", "export WATCHDOG_PID=$$; exec \"$0\" \"$@\"", BIN]);
            sh
        } else {
            Command::new(BIN)
        };
        cmd.arg("run")
            .arg("--config")
            .arg(config)
            .arg("--hostname")
            .arg(&self.hostname)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(&self.extra_args)
            .env("PIHA_LOG", "info")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log);
        for (k, v) in env {
            cmd.env(k, v);
        }
        self.child = Some(cmd.spawn().expect("spawn piha"));
    }
}

/// Polls `check` every 100 ms until it returns Ok or `limit` passes; returns
/// how long it took, or the last complaint.
pub fn wait_until<T>(
    limit: Duration,
    mut check: impl FnMut() -> Result<T, String>,
) -> Result<(T, Duration), String> {
    let start = Instant::now();
    loop {
        match check() {
            Ok(v) => return Ok((v, start.elapsed())),
            Err(e) if start.elapsed() > limit => {
                return Err(format!("not within {limit:?}: {e}"));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// A plain HTTP/1.1 exchange over std, enough for tests: no client crate
/// needed, bounded by timeouts.
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<(u16, String), String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .map_err(|e| format!("connect {addr}: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("Content-Length: 0\r\n\r\n");
    stream
        .write_all(req.as_bytes())
        .map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    stream
        .take(8 * 1024 * 1024)
        .read_to_end(&mut raw)
        .map_err(|e| format!("read from {addr}: {e}"))?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").ok_or("no header end")?;
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or("no status code")?;
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_owned()
    };
    Ok((code, body))
}

pub fn http_get(addr: SocketAddr, path: &str) -> Result<(u16, String), String> {
    let (code, body) = http(addr, "GET", path, &[])?;
    if code != 200 {
        return Err(format!("GET {path} answered {code}: {body}"));
    }
    Ok((code, body))
}

fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || after.len() < n {
            break;
        }
        out.push_str(&after[..n]);
        rest = after[n..].trim_start_matches("\r\n");
    }
    out
}

/// Events as the node's status API lists them, newest first.
pub fn events(doc: &serde_json::Value) -> Vec<String> {
    doc["events"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| {
                    format!(
                        "{} {} {}",
                        e["severity"].as_str().unwrap_or("?"),
                        e["component"].as_str().unwrap_or("?"),
                        e["message"].as_str().unwrap_or("?")
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}
