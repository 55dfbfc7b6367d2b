//! piha nodes in a netns lab (`netns.rs`) for the VRRP tests: each node
//! runs `piha run` in its own namespace as a balancer + web node, with the
//! VIP 192.0.2.100/24, and a client namespace probes the VIP over HTTP.
//! Processes are killed with the lab (its `Drop` kills everything in the
//! namespaces), also when a test fails.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use super::netns::{Lab, in_netns, poll};
use super::node::BIN;

pub const VIP: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 100));
pub const TOKEN: &str = "test-admin-token-0123456789";
const ADMIN_PORT: u16 = 9000;

pub struct Rig {
    pub lab: Lab,
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub children: Vec<Option<Child>>,
}

/// A cluster file for `priorities.len()` balancer + web nodes at the lab's
/// addresses (192.0.2.10+i), with `vrrp` as the body of `[vrrp]`.
pub fn cluster_file(priorities: &[u8], vrrp: &str, root: &str) -> String {
    let mut out = format!(
        "[cluster]\nname = \"vrrp-test\"\nvip = \"192.0.2.100/24\"\nadmin_token = \"{TOKEN}\"\n\n\
         [defaults]\nadmin_port = {ADMIN_PORT}\n\n\
         [defaults.web]\nroot = \"{root}\"\n\n\
         [membership]\nheartbeat_interval = \"200ms\"\ndown_after = \"1s\"\n\n\
         [vrrp]\n{vrrp}\n\n"
    );
    for (i, p) in priorities.iter().enumerate() {
        out.push_str(&format!(
            "[[node]]\nhostname = \"pi-{}\"\naddress = \"192.0.2.{}/24\"\n\
             roles = [\"balancer\", \"web\"]\nbalancer = {{ priority = {p} }}\n\n",
            i + 1,
            10 + i
        ));
    }
    out
}

impl Rig {
    /// Builds the lab (with a client) and writes the cluster file; starts
    /// no node.
    pub fn new(priorities: &[u8], vrrp: &str) -> Rig {
        let lab = Lab::new(priorities.len(), true);
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path().join("www");
        std::fs::create_dir_all(&root).expect("web root");
        std::fs::write(root.join("index.html"), "hello from the VIP\n").expect("index");
        let config = dir.path().join("cluster.toml");
        let text = cluster_file(priorities, vrrp, &root.to_string_lossy());
        std::fs::write(&config, text).expect("cluster file");
        Rig {
            lab,
            dir,
            config,
            children: (0..priorities.len()).map(|_| None).collect(),
        }
    }

    /// A lab of `nodes` nodes (and a client) with `text` as the cluster
    /// file; starts no node. The temp dir is opened to others (0755) so a
    /// PostgreSQL that a db role runs as the `postgres` user reaches its
    /// data directory.
    pub fn with_config(nodes: usize, text: &str) -> Rig {
        use std::os::unix::fs::PermissionsExt;
        let lab = Lab::new(nodes, true);
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod temp dir");
        let config = dir.path().join("cluster.toml");
        std::fs::write(&config, text).expect("cluster file");
        Rig {
            lab,
            dir,
            config,
            children: (0..nodes).map(|_| None).collect(),
        }
    }

    pub fn start_all(&mut self) {
        for i in 0..self.children.len() {
            self.start(i);
        }
    }

    pub fn start(&mut self, i: usize) {
        let data = self.dir.path().join(format!("data-{i}"));
        let ns = self.lab.node(i).name.clone();
        let child = spawn_piha(
            self.lab.command(&ns, BIN),
            &self.config,
            &format!("pi-{}", i + 1),
            &data,
            &self.dir.path().join(format!("node-{i}.log")),
        );
        self.children[i] = Some(child);
    }

    /// Runs keepalived (VRRP only, in the foreground) in lab node `i`'s
    /// namespace instead of piha, with `conf` as its configuration. Its
    /// config, pid files and console log (`node-i.log`, so [`Rig::logs`]
    /// shows it) all live in the rig's temp dir, so parallel labs never
    /// share a file. Stopped with [`Rig::kill_namespace`] or the lab's drop.
    pub fn start_keepalived(&mut self, i: usize, conf: &str) {
        let path = |name: &str| self.dir.path().join(format!("keepalived-{i}{name}"));
        let conf_path = path(".conf");
        std::fs::write(&conf_path, conf).expect("keepalived.conf");
        let log =
            std::fs::File::create(self.dir.path().join(format!("node-{i}.log"))).expect("log file");
        let err = log.try_clone().expect("log file");
        let ns = self.lab.node(i).name.clone();
        let child = self
            .lab
            .command(&ns, "keepalived")
            .args(["--dont-fork", "--log-console", "--log-detail", "--vrrp"])
            .args(["--no-syslog", "--dont-respawn"])
            .arg("--use-file")
            .arg(&conf_path)
            .arg("--pid")
            .arg(path(".pid"))
            .arg("--vrrp_pid")
            .arg(path("-vrrp.pid"))
            .arg("--checkers_pid")
            .arg(path("-checkers.pid"))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .expect("start keepalived (apt-get install keepalived)");
        self.children[i] = Some(child);
    }

    /// SIGKILL of every process in lab node `i`'s namespace (keepalived's
    /// parent and VRRP child alike), as a crash or an OOM kill would. Not for
    /// piha nodes, whose VIP guard lives there too: use [`Rig::kill`].
    pub fn kill_namespace(&mut self, i: usize) {
        let ns = self.lab.node(i).name.clone();
        let me = std::process::id().to_string();
        // Bounded: a few rounds in case a parent respawns a child meanwhile.
        for _ in 0..5 {
            let out = std::process::Command::new("ip")
                .args(["netns", "pids", &ns])
                .output()
                .expect("ip netns pids");
            let pids = String::from_utf8_lossy(&out.stdout).into_owned();
            let pids: Vec<&str> = pids.split_whitespace().filter(|p| *p != me).collect();
            if pids.is_empty() {
                break;
            }
            for pid in pids {
                let _ = std::process::Command::new("kill")
                    .args(["-9", pid])
                    .status();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if let Some(mut c) = self.children[i].take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Node `i` loses its power, as the other nodes see it: its namespace
    /// drops every packet, then everything in it is killed, so the FINs
    /// and RSTs of its dying sockets never leave it. Returns when it went
    /// dark.
    pub fn power_cut(&mut self, i: usize) -> Instant {
        self.lab.drop_traffic(i, None);
        let dark = Instant::now();
        self.kill_namespace(i);
        dark
    }

    /// The node's log so far, for assertion messages.
    pub fn log(&self, i: usize) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("node-{i}.log"))).unwrap_or_default()
    }

    /// The pid of piha itself (`ip netns exec` execs it, so the child's pid).
    pub fn pid(&self, i: usize) -> u32 {
        self.children[i].as_ref().expect("node runs").id()
    }

    pub fn signal(&self, i: usize, sig: &str) {
        let ok = std::process::Command::new("kill")
            .args([format!("-{sig}"), self.pid(i).to_string()])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "kill -{sig} node {i}");
    }

    /// SIGKILL of piha only (its VIP guard lives on, as it would).
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.children[i].take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Waits for a signalled node to exit.
    pub fn wait_exit(&mut self, i: usize, limit: Duration) -> bool {
        let Some(c) = self.children[i].as_mut() else {
            return true;
        };
        let end = Instant::now() + limit;
        while Instant::now() < end {
            if let Ok(Some(_)) = c.try_wait() {
                self.children[i] = None;
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }

    /// Waits until exactly one node holds the VIP and returns it.
    pub fn wait_single_holder(&self, limit: Duration) -> usize {
        let found = poll(limit, || match self.lab.vip_holders(VIP).as_slice() {
            [one] => Some(*one),
            _ => None,
        });
        found.unwrap_or_else(|| {
            panic!(
                "no single VIP holder within {limit:?}: {:?}\n{}",
                self.lab.vip_holders(VIP),
                self.logs()
            )
        })
    }

    /// Samples the holders every 10 ms for `span`; panics unless it is
    /// `expected` alone every time.
    pub fn assert_only_holder(&self, expected: usize, span: Duration) {
        let end = Instant::now() + span;
        let mut samples = 0;
        while Instant::now() < end {
            let holders = self.lab.vip_holders(VIP);
            assert_eq!(
                holders,
                [expected],
                "sample {samples}: VIP holders {holders:?}\n{}",
                self.logs()
            );
            samples += 1;
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn logs(&self) -> String {
        (0..self.children.len())
            .map(|i| format!("--- node {i} log (tail) ---\n{}", tail(&self.log(i), 30)))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// GET `path` on a node's admin port, from inside the client namespace.
    pub fn admin_get(&self, i: usize, path: &str) -> Result<String, String> {
        let addr = SocketAddr::new(IpAddr::V4(self.lab.node(i).addr), ADMIN_PORT);
        http(&self.lab.client().name, addr, "GET", path, None)
    }

    pub fn admin_post(&self, i: usize, path: &str) -> Result<String, String> {
        let addr = SocketAddr::new(IpAddr::V4(self.lab.node(i).addr), ADMIN_PORT);
        http(&self.lab.client().name, addr, "POST", path, Some(TOKEN))
    }

    /// The node's `vrrp` status section.
    pub fn vrrp_status(&self, i: usize) -> Option<serde_json::Value> {
        let body = self.admin_get(i, "/api/v1/status").ok()?;
        let doc: serde_json::Value = serde_json::from_str(&body).ok()?;
        let v = doc.get("vrrp")?.clone();
        (!v.is_null()).then_some(v)
    }

    /// Waits until the node's instance reports `state`.
    pub fn wait_state(&self, i: usize, state: &str, limit: Duration) {
        let ok = poll(limit, || {
            let s = self.vrrp_status(i)?;
            (s["state"] == state).then_some(())
        });
        assert!(
            ok.is_some(),
            "node {i} not {state} within {limit:?}: {:?}\n{}",
            self.vrrp_status(i),
            self.logs()
        );
    }

    /// Waits until node `i`'s log contains `needle` (for a node whose admin
    /// API cannot be reached, e.g. with its link down).
    pub fn wait_log(&self, i: usize, needle: &str, limit: Duration) {
        let ok = poll(limit, || self.log(i).contains(needle).then_some(()));
        assert!(
            ok.is_some(),
            "node {i} never logged {needle:?}\n{}",
            self.logs()
        );
    }

    /// Waits until the VIP answers HTTP steadily (20 probes in a row): the
    /// balancers' health checks must have found the web backends first, or
    /// a probe would count their start-up as an outage.
    pub fn wait_serving(&self, limit: Duration) {
        let ns = self.lab.client().name.clone();
        let ok = in_netns(&ns, || {
            let addr = SocketAddr::new(VIP, 80);
            let end = Instant::now() + limit;
            let mut in_a_row = 0;
            while Instant::now() < end {
                in_a_row = if probe_once(addr) { in_a_row + 1 } else { 0 };
                if in_a_row >= 20 {
                    return true;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            false
        });
        assert!(
            ok,
            "the VIP did not serve steadily within {limit:?}\n{}",
            self.logs()
        );
    }

    pub fn mac(&self, i: usize) -> String {
        self.lab.mac(self.lab.node(i))
    }
}

fn tail(s: &str, lines: usize) -> String {
    let all: Vec<&str> = s.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// `piha run` as `hostname` through `cmd` (the piha binary, wrapped to run
/// inside a lab node), its data in `data`, its log appended to `log` (a
/// node started again keeps its earlier log).
pub fn spawn_piha(
    mut cmd: std::process::Command,
    config: &std::path::Path,
    hostname: &str,
    data: &std::path::Path,
    log: &std::path::Path,
) -> Child {
    std::fs::create_dir_all(data).expect("data dir");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("log file");
    cmd.args(["run", "--config"])
        .arg(config)
        .args(["--hostname", hostname, "--data-dir"])
        .arg(data)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start piha")
}

/// A bare HTTP/1.1 request from inside namespace `ns`, with short timeouts.
pub fn http(
    ns: &str,
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
) -> Result<String, String> {
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: 0\r\n{}\r\n",
        token
            .map(|t| format!("Authorization: Bearer {t}\r\n"))
            .unwrap_or_default()
    );
    in_netns(ns, || {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(500))
            .map_err(|e| format!("{addr}: {e}"))?;
        s.set_read_timeout(Some(Duration::from_secs(2))).ok();
        s.write_all(request.as_bytes()).map_err(|e| e.to_string())?;
        let mut out = String::new();
        s.read_to_string(&mut out).map_err(|e| e.to_string())?;
        let (head, body) = out.split_once("\r\n\r\n").ok_or("no HTTP head")?;
        if !head.starts_with("HTTP/1.1 2") {
            return Err(head.lines().next().unwrap_or_default().to_owned());
        }
        Ok(body.to_owned())
    })
}

/// The client's view of an outage: GET / on the VIP every `every` (a new
/// connection each time, 50 ms to connect and answer), for `span`, on a
/// thread in the client namespace. Returns the longest time between two
/// successful answers and the number of failed probes.
pub struct Probe {
    thread: std::thread::JoinHandle<ProbeResult>,
}

#[derive(Debug, Clone)]
pub struct ProbeResult {
    pub longest_gap: Duration,
    pub failures: u32,
    pub successes: u32,
    /// When failures were seen, from the probe's start: where an outage
    /// sits and whether it was one window or scattered.
    pub first_failure: Option<Duration>,
    pub last_failure: Option<Duration>,
}

impl Probe {
    pub fn start(ns: &str, every: Duration, span: Duration) -> Probe {
        let ns = ns.to_owned();
        let thread = std::thread::spawn(move || in_netns(&ns, || probe_loop(every, span)));
        Probe { thread }
    }

    pub fn finish(self) -> ProbeResult {
        self.thread.join().expect("probe thread")
    }
}

fn probe_loop(every: Duration, span: Duration) -> ProbeResult {
    let addr = SocketAddr::new(VIP, 80);
    let start = Instant::now();
    let mut last_ok: Option<Instant> = None;
    let mut result = ProbeResult {
        longest_gap: Duration::ZERO,
        failures: 0,
        successes: 0,
        first_failure: None,
        last_failure: None,
    };
    // Bounded by time and so by count: span / every probes at most.
    while start.elapsed() < span {
        let t = Instant::now();
        if probe_once(addr) {
            if let Some(prev) = last_ok {
                result.longest_gap = result.longest_gap.max(t - prev);
            }
            last_ok = Some(t);
            result.successes += 1;
        } else {
            result.failures += 1;
            let at = t - start;
            result.first_failure.get_or_insert(at);
            result.last_failure = Some(at);
        }
        if let Some(rest) = every.checked_sub(t.elapsed()) {
            std::thread::sleep(rest);
        }
    }
    result
}

fn probe_once(addr: SocketAddr) -> bool {
    let limit = Duration::from_millis(50);
    let Ok(mut s) = TcpStream::connect_timeout(&addr, limit) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(limit));
    let _ = s.set_write_timeout(Some(limit));
    if s.write_all(b"GET / HTTP/1.1\r\nHost: vip\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut buf = [0u8; 64];
    matches!(s.read(&mut buf), Ok(n) if n >= 12 && buf.starts_with(b"HTTP/1.1 200"))
}
