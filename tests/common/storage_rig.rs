//! piha storage nodes on real glusterd (`gluster_net.rs`): node `i` runs
//! glusterd and `piha run` as `pi-(i+1)` inside its own network + mount +
//! UTS namespace, so the role's CLI calls, its FUSE mount and its
//! /proc/self/mountinfo are the node's own. The client namespace reads the
//! admin API. Everything is killed with the lab, also when a test fails.

#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::Child;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::gluster_net::GlusterLab;
use super::netns::poll;
use super::node::BIN;
use super::vrrp_rig::{http, spawn_piha};

pub const VOLUME: &str = "piha";
const ADMIN_PORT: u16 = 9000;

pub struct StorageNet {
    pub gl: GlusterLab,
    pub config: PathBuf,
    /// Where every node mounts the volume (the same path; each node's
    /// mount is in its own namespace).
    pub mount: PathBuf,
    children: Vec<Option<Child>>,
}

impl StorageNet {
    /// `n` storage nodes with glusterd running, a cluster file with
    /// `storage` as the body of `[storage]`; no piha started yet.
    pub fn new(n: usize, storage: &str) -> StorageNet {
        let gl = GlusterLab::new(n, true);
        for i in 0..n {
            gl.start_glusterd(i);
        }
        let mount = gl.dir.path().join("www");
        let mut text = format!(
            "[cluster]\nname = \"storage-test\"\n\n\
             [defaults]\nadmin_port = {ADMIN_PORT}\n\n\
             [membership]\nheartbeat_interval = \"200ms\"\ndown_after = \"1s\"\n\n\
             [storage]\nvolume = \"{VOLUME}\"\nmount = \"{}\"\n{storage}\n\n",
            mount.display()
        );
        for i in 0..n {
            text.push_str(&format!(
                "[[node]]\nhostname = \"pi-{}\"\naddress = \"{}/24\"\nroles = [\"storage\"]\n\
                 storage = {{ brick = \"{}\" }}\n\n",
                i + 1,
                gl.addr(i),
                Self::brick_of(&gl, i).display()
            ));
        }
        let config = gl.dir.path().join("cluster.toml");
        std::fs::write(&config, text).expect("cluster file");
        StorageNet {
            gl,
            config,
            mount,
            children: (0..n).map(|_| None).collect(),
        }
    }

    fn brick_of(gl: &GlusterLab, i: usize) -> PathBuf {
        gl.node_dir(i).join("brick")
    }

    pub fn brick(&self, i: usize) -> PathBuf {
        Self::brick_of(&self.gl, i)
    }

    pub fn start(&mut self, i: usize) {
        let child = spawn_piha(
            self.gl.command(i, BIN),
            &self.config,
            &format!("pi-{}", i + 1),
            &self.gl.node_dir(i).join("piha-data"),
            &self.log_path(i),
        );
        self.children[i] = Some(child);
    }

    pub fn start_all(&mut self) {
        for i in 0..self.children.len() {
            self.start(i);
        }
    }

    /// SIGKILL piha on node `i` (glusterd and bricks keep running).
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.children[i].take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn pid(&self, i: usize) -> Option<u32> {
        self.children[i].as_ref().map(Child::id)
    }

    fn log_path(&self, i: usize) -> PathBuf {
        self.gl.dir.path().join(format!("piha-{i}.log"))
    }

    pub fn log(&self, i: usize) -> String {
        std::fs::read_to_string(self.log_path(i)).unwrap_or_default()
    }

    pub fn logs(&self) -> String {
        (0..self.children.len())
            .map(|i| {
                let log = self.log(i);
                let lines: Vec<&str> = log.lines().collect();
                let tail = lines[lines.len().saturating_sub(25)..].join("\n");
                format!("--- piha on pi-{} (tail) ---\n{tail}", i + 1)
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    pub fn admin_get(&self, i: usize, path: &str) -> Result<String, String> {
        let addr = SocketAddr::new(
            IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10 + i as u8)),
            ADMIN_PORT,
        );
        http(&self.gl.lab.client().name, addr, "GET", path, None)
    }

    /// `/api/v1/storage` of node `i`.
    pub fn storage(&self, i: usize) -> Result<Value, String> {
        let body = self.admin_get(i, "/api/v1/storage")?;
        serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))
    }

    /// The cluster volume in node `i`'s view.
    pub fn volume(&self, i: usize) -> Option<Value> {
        let s = self.storage(i).ok()?;
        s["view"]["volumes"]
            .as_array()?
            .iter()
            .find(|v| v["name"] == VOLUME)
            .cloned()
    }

    /// Messages of node `i`'s recent events from the storage role.
    pub fn events(&self, i: usize) -> Vec<String> {
        let Ok(body) = self.admin_get(i, "/api/v1/status") else {
            return Vec::new();
        };
        let doc: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        doc["events"]
            .as_array()
            .map(|e| {
                e.iter()
                    .filter(|e| e["component"] == "storage")
                    .filter_map(|e| e["message"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Waits until node `i` reports the volume in `state` (and, for "UP",
    /// mounted); returns when it first saw it.
    pub fn wait_volume(&self, i: usize, state: &str, limit: Duration) -> Instant {
        let seen = poll(limit, || {
            let v = self.volume(i)?;
            let mounted = state != "UP" || self.storage(i).ok()?["mounted"] == true;
            (v["state"] == state && mounted).then(Instant::now)
        });
        seen.unwrap_or_else(|| {
            panic!(
                "pi-{} does not report volume {VOLUME} {state} within {limit:?}: {:#?}\n{}\n--- glusterd log of pi-{} ---\n{}",
                i + 1,
                self.storage(i),
                self.logs(),
                i + 1,
                self.gl.glusterd_log(i, 20)
            )
        })
    }

    /// The state of brick `host:path` in node `i`'s view.
    pub fn brick_state(&self, i: usize, brick_node: usize) -> Option<String> {
        let v = self.volume(i)?;
        let want = format!("{}", self.brick(brick_node).display());
        let host = self.gl.addr(brick_node);
        v["bricks"]
            .as_array()?
            .iter()
            .find(|b| b["host"] == host.as_str() && b["path"] == want.as_str())
            .and_then(|b| b["state"].as_str().map(str::to_owned))
    }
}

impl Drop for StorageNet {
    fn drop(&mut self) {
        for i in 0..self.children.len() {
            self.kill(i);
        }
    }
}
