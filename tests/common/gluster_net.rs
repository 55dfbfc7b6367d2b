//! Real GlusterFS nodes for the storage tests: several `glusterd`s (Debian
//! bookworm's glusterfs-server) on one machine, each in its own network,
//! mount and UTS namespace, on the bridge lab of `netns.rs`. Node `i` is
//! 192.0.2.(10+i)/24 (or the lab's own addresses, `GlusterLab::on`) in namespace `lab.node(i).name`, with hostname
//! `pi-(i+1)`; the optional client is 192.0.2.200, hostname `client`.
//!
//! Why the mount namespace: glusterd, its bricks, the self-heal daemon, the
//! FUSE client and the `gluster` CLI find each other through fixed paths.
//! The CLI talks to glusterd through the unix socket `/run/glusterd.socket`
//! (filesystem sockets are not per network namespace, so nodes sharing it
//! would talk to one another's glusterd), bricks keep pid files and sockets
//! under `/run/gluster`, state lives in `/var/lib/glusterd` (the node's UUID,
//! peers, volumes) and logs in `/var/log/glusterfs`. So each node has a
//! long-lived "holder" process (`sleep infinity`) in its network namespace
//! with a private mount and UTS namespace, where per-node folders of the
//! rig's temp dir are bind-mounted over `/run` (the whole of it: the socket
//! sits directly in it), `/var/lib/glusterd` and `/var/log/glusterfs`, and a
//! lab `/etc/hosts` (pi-N and `client` names, so reverse lookups of lab
//! addresses give the node names as on a real cluster) over `/etc/hosts`.
//! Everything else (the temp dir under /tmp, /dev/fuse, binaries) is shared,
//! so brick and mount paths are the same inside a node and in the test.
//! Every later command enters the holder's namespaces with `nsenter`.
//!
//! Processes of different nodes have the same names; the rig tells them
//! apart by their mount namespace (`/proc/PID/ns/mnt` equal to the holder's).
//! `Drop` detaches FUSE mounts, SIGKILLs every process of every node and the
//! holders, then the `Lab` deletes the namespaces; also when a test panics,
//! and with bounded waits only. The package's hook scripts (samba, CTDB,
//! ganesha, SELinux) are not copied into a node: they would touch the
//! machine's `/etc`. Bricks on the root file system need `force` at
//! `volume create`. Tests using it need root, `iproute2`, util-linux
//! (`nsenter`, `unshare`) and `glusterfs-server`.

#![allow(dead_code)]

use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::netns::{Lab, poll};

/// How long `start_glusterd` waits for the CLI to get an answer.
const GLUSTERD_START: Duration = Duration::from_secs(20);
/// Bounds `sh`, `sh_output` and `gluster`, so a wedged command fails the
/// test instead of hanging it (the CLI's own default timeout is 120 s).
const COMMAND_LIMIT: Duration = Duration::from_secs(180);
/// Bounds each wait on processes to die and on cleanup commands.
const SETTLE: Duration = Duration::from_secs(5);

pub struct GlusterLab {
    pub lab: Lab,
    pub dir: tempfile::TempDir,
    /// One per node, then the client's if any; index = node index.
    holders: Vec<Holder>,
    nodes: usize,
    /// glusterd started by `start_glusterd`, kept to reap it when killed.
    glusterd: Mutex<Vec<Option<Child>>>,
}

struct Holder {
    child: Child,
    /// `/proc/PID/ns/mnt` of the holder, e.g. `mnt:[4026532391]`.
    mnt_ns: String,
}

/// A process of one node, as seen in `/proc`.
#[derive(Debug, Clone)]
pub struct NodeProcess {
    pub pid: u32,
    pub argv: Vec<String>,
}

impl NodeProcess {
    /// The program's file name (`glusterd`, `glusterfsd`, `glusterfs`...).
    pub fn name(&self) -> &str {
        let argv0 = self.argv.first().map(String::as_str).unwrap_or_default();
        argv0.rsplit('/').next().unwrap_or(argv0)
    }

    /// The value following `flag` on the command line.
    pub fn arg(&self, flag: &str) -> Option<&str> {
        let at = self.argv.iter().position(|a| a == flag)?;
        self.argv.get(at + 1).map(String::as_str)
    }
}

impl GlusterLab {
    /// A lab of `nodes` nodes (and a client namespace at 192.0.2.200 if
    /// `client`), each with its holder running; starts no glusterd.
    pub fn new(nodes: usize, client: bool) -> GlusterLab {
        GlusterLab::on(Lab::new(nodes, client))
    }

    /// The same on a lab made by the caller (e.g. with other addresses).
    pub fn on(lab: Lab) -> GlusterLab {
        let nodes = lab.nodes().len();
        let client = lab.has_client();
        let dir = tempfile::tempdir().expect("temp dir");
        // Bricks and mounts live below it; glusterfs runs as root, but the
        // tests may look around as another user.
        set_mode(dir.path(), 0o755);
        let mut rig = GlusterLab {
            lab,
            dir,
            holders: Vec::new(),
            nodes,
            glusterd: Mutex::new((0..nodes).map(|_| None).collect()),
        };
        let hosts = rig.hosts_file(client);
        // Pushed one by one: if a holder fails, `Drop` ends those before it.
        for i in 0..nodes + usize::from(client) {
            let holder = rig.start_holder(i, &hosts);
            rig.holders.push(holder);
        }
        rig
    }

    /// The number of nodes (without the client).
    pub fn nodes(&self) -> usize {
        self.nodes
    }

    /// The index under which the client namespace is reached with
    /// `command`, `sh`, `mount_volume`... (one past the last node). Panics
    /// if the lab has no client.
    pub fn client(&self) -> usize {
        assert!(
            self.holders.len() > self.nodes,
            "this lab was built without a client"
        );
        self.nodes
    }

    /// Node `i`'s lab address as text (`192.0.2.(10+i)`, or the client's).
    pub fn addr(&self, i: usize) -> String {
        self.netns_node(i).addr.to_string()
    }

    /// Node `i`'s hostname inside its UTS namespace.
    pub fn hostname(&self, i: usize) -> String {
        if i == self.nodes {
            "client".to_owned()
        } else {
            format!("pi-{}", i + 1)
        }
    }

    /// A folder for the test's use in node `i` (bricks, mount points),
    /// world-readable; the same path inside the node and in the test.
    pub fn node_dir(&self, i: usize) -> PathBuf {
        self.node_name_dir("node", i)
    }

    /// Node `i`'s `/var/log/glusterfs`, as seen from the test.
    pub fn log_dir(&self, i: usize) -> PathBuf {
        self.state_dir(i).join("log")
    }

    /// Node `i`'s `/var/lib/glusterd`, as seen from the test.
    pub fn glusterd_dir(&self, i: usize) -> PathBuf {
        self.state_dir(i).join("lib")
    }

    /// Node `i`'s `/run`, as seen from the test.
    pub fn run_dir(&self, i: usize) -> PathBuf {
        self.state_dir(i).join("run")
    }

    /// The last `lines` lines of node `i`'s glusterd log (and of what
    /// glusterd wrote to stderr), for assertion messages.
    pub fn glusterd_log(&self, i: usize, lines: usize) -> String {
        let log = std::fs::read_to_string(self.log_dir(i).join("glusterd.log"));
        let out = std::fs::read_to_string(self.state_dir(i).join("glusterd.out"));
        format!(
            "--- pi-{} glusterd.log (tail) ---\n{}\n--- stderr ---\n{}",
            i + 1,
            tail(&log.unwrap_or_default(), lines),
            tail(&out.unwrap_or_default(), lines)
        )
    }

    /// The pid of node `i`'s holder: `nsenter --target` it to enter the node.
    pub fn holder_pid(&self, i: usize) -> u32 {
        self.holders[i].child.id()
    }

    /// `path` as node `i` sees it, reachable from the test process through
    /// the holder's root (`/proc/PID/root/...`), e.g. a file in a FUSE mount
    /// that exists only in the node's mount namespace. A stopped FUSE client
    /// blocks such accesses, as it would in the node.
    pub fn node_view(&self, i: usize, path: &Path) -> PathBuf {
        let rel = path.strip_prefix("/").unwrap_or(path);
        PathBuf::from(format!("/proc/{}/root", self.holder_pid(i))).join(rel)
    }

    /// `program` to be run in node `i`'s network, mount and UTS namespaces
    /// (`nsenter`, which execs it: the child's pid is the program's). Its
    /// working directory is the node's `/`.
    pub fn command(&self, i: usize, program: &str) -> Command {
        let mut command = Command::new("nsenter");
        command
            .arg(format!("--target={}", self.holder_pid(i)))
            .args(["--net", "--mount", "--uts", "--", program]);
        command
    }

    /// Runs `cmd` with `sh -c` in node `i`; panics with its stderr if it
    /// fails (or runs longer than 180 s), else returns its stdout.
    pub fn sh(&self, i: usize, cmd: &str) -> String {
        let output = self.sh_output(i, cmd);
        if !output.status.success() {
            panic!(
                "[pi-{}] {cmd}: {}\n{}{}",
                i + 1,
                output.status,
                text(&output.stdout),
                text(&output.stderr)
            );
        }
        text(&output.stdout)
    }

    /// Runs `cmd` with `sh -c` in node `i`, whatever comes of it (a command
    /// still running after 180 s is killed and reported as killed).
    pub fn sh_output(&self, i: usize, cmd: &str) -> Output {
        let mut command = self.command(i, "sh");
        command.args(["-c", cmd]);
        output_within(command, COMMAND_LIMIT)
    }

    /// `gluster --mode=script ARGS` in node `i` (no questions asked; add
    /// `--timeout=N` or `--xml` to `args` as needed).
    pub fn gluster(&self, i: usize, args: &[&str]) -> Output {
        let mut command = self.command(i, "gluster");
        command.arg("--mode=script").args(args);
        output_within(command, COMMAND_LIMIT)
    }

    /// Like `gluster`, but panics unless it succeeds; returns its stdout.
    /// A held cluster lock ("Another transaction is in progress", opErrno
    /// 30802: the storage roles' own polls take it every second) is asked
    /// again, for up to 30 s, as an operator would.
    pub fn gluster_ok(&self, i: usize, args: &[&str]) -> String {
        let start = Instant::now();
        let output = loop {
            let output = self.gluster(i, args);
            let all = format!("{}{}", text(&output.stdout), text(&output.stderr));
            let busy = all.contains("Another transaction is in progress")
                || all.contains("Locking failed")
                || all.contains("<opErrno>30802</opErrno>");
            if !busy || start.elapsed() > Duration::from_secs(30) {
                break output;
            }
            std::thread::sleep(Duration::from_millis(500));
        };
        if !output.status.success() {
            panic!(
                "[pi-{}] gluster {}: {}\n{}{}\n{}",
                i + 1,
                args.join(" "),
                output.status,
                text(&output.stdout),
                text(&output.stderr),
                self.glusterd_log(i, 20)
            );
        }
        text(&output.stdout)
    }

    /// Starts glusterd in node `i` (in the foreground, `-N`, as a child of
    /// the test, its stderr in the node's state dir) and waits until
    /// `gluster pool list` answers (about 2 s: glusterd sets up
    /// geo-replication folders first). Panics if it is already running or
    /// does not answer within 20 s.
    pub fn start_glusterd(&self, i: usize) {
        assert!(i < self.nodes, "glusterd runs on nodes, not the client");
        if let Some(pid) = self.glusterd_pid(i) {
            panic!("glusterd already runs on pi-{} (pid {pid})", i + 1);
        }
        self.reap_glusterd(i);
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.state_dir(i).join("glusterd.out"))
            .expect("glusterd.out");
        let err = out.try_clone().expect("glusterd.out");
        let child = self
            .command(i, "glusterd")
            .arg("-N")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("start glusterd (apt-get install glusterfs-server)");
        let pid = child.id();
        self.glusterd.lock().unwrap()[i] = Some(child);
        let answered = poll(GLUSTERD_START, || {
            if !alive(pid) {
                return Some(false);
            }
            let out = self.gluster(i, &["--timeout=2", "pool", "list"]);
            out.status.success().then_some(true)
        });
        if answered != Some(true) {
            panic!(
                "glusterd on pi-{} did not answer within {GLUSTERD_START:?} (alive: {})\n{}",
                i + 1,
                alive(pid),
                self.glusterd_log(i, 30)
            );
        }
    }

    /// Node `i`'s glusterd, if one runs (started by `start_glusterd` or by
    /// anything else in the node, e.g. piha).
    pub fn glusterd_pid(&self, i: usize) -> Option<u32> {
        self.processes(i)
            .into_iter()
            .find(|p| p.name() == "glusterd")
            .map(|p| p.pid)
    }

    /// SIGKILL of node `i`'s glusterd only (bricks, self-heal daemon and
    /// FUSE clients keep running, as when glusterd crashes). Panics if none
    /// runs; returns when it is gone.
    pub fn kill_glusterd(&self, i: usize) {
        let pid = self
            .glusterd_pid(i)
            .unwrap_or_else(|| panic!("no glusterd runs on pi-{}", i + 1));
        signal(pid, Signal::SIGKILL);
        self.reap_glusterd(i);
        wait_gone(&[pid], SETTLE);
    }

    /// SIGSTOP of node `i`'s glusterd: it keeps its sockets but answers
    /// nothing, like a hung daemon. A CLI call to it, or one on another
    /// node that needs it (`volume status`), fails after its `--timeout`
    /// with "Request timed out"; the other node then keeps the volume's
    /// lock ("Another transaction is in progress") until this one answers.
    pub fn stop_glusterd(&self, i: usize) {
        let pid = self
            .glusterd_pid(i)
            .unwrap_or_else(|| panic!("no glusterd runs on pi-{}", i + 1));
        signal(pid, Signal::SIGSTOP);
    }

    /// SIGCONT of node `i`'s glusterd after `stop_glusterd`.
    pub fn cont_glusterd(&self, i: usize) {
        let pid = self
            .glusterd_pid(i)
            .unwrap_or_else(|| panic!("no glusterd runs on pi-{}", i + 1));
        signal(pid, Signal::SIGCONT);
    }

    /// SIGKILL of every gluster process of node `i` (glusterd, bricks, the
    /// self-heal daemon, FUSE clients, CLIs), as a crash of the node's
    /// storage would; then its glusterfs mounts are detached, as a reboot
    /// would leave none, so a later `mount_volume` on the same mount point
    /// works. Returns when they are gone.
    pub fn kill_all_gluster(&self, i: usize) {
        let is_gluster = |p: &NodeProcess| p.name().starts_with("gluster");
        let mut killed = Vec::new();
        let end = Instant::now() + SETTLE;
        loop {
            let found: Vec<u32> = self
                .processes(i)
                .into_iter()
                .filter(is_gluster)
                .map(|p| p.pid)
                .collect();
            if found.is_empty() || Instant::now() > end {
                break;
            }
            for &pid in &found {
                signal(pid, Signal::SIGKILL);
            }
            killed.extend(found);
            std::thread::sleep(Duration::from_millis(20));
        }
        self.reap_glusterd(i);
        wait_gone(&killed, SETTLE);
        self.detach_fuse_mounts(i);
    }

    /// The glusterfsd serving `brick_path` of `volume` in node `i`, found
    /// by its command line (`--volfile-id VOLUME.HOST.PATH --brick-name
    /// PATH`) among node `i`'s processes.
    pub fn brick_pid(&self, i: usize, volume: &str, brick_path: &Path) -> Option<u32> {
        let path = brick_path.to_string_lossy();
        let prefix = format!("{volume}.");
        self.processes(i)
            .into_iter()
            .find(|p| {
                p.name() == "glusterfsd"
                    && p.arg("--brick-name") == Some(path.as_ref())
                    && p.arg("--volfile-id")
                        .is_some_and(|id| id.starts_with(&prefix))
            })
            .map(|p| p.pid)
    }

    /// SIGKILL of that brick's glusterfsd (glusterd does not restart it by
    /// itself). Panics if it does not run; returns its pid once it is gone.
    pub fn kill_brick(&self, i: usize, volume: &str, brick_path: &Path) -> u32 {
        let pid = self.brick_pid(i, volume, brick_path).unwrap_or_else(|| {
            panic!(
                "no brick {} of {volume} runs on pi-{}",
                brick_path.display(),
                i + 1
            )
        });
        signal(pid, Signal::SIGKILL);
        wait_gone(&[pid], SETTLE);
        pid
    }

    /// SIGKILL of the FUSE client serving `mountpoint` in node `i` (the
    /// `glusterfs` process whose last argument is the mount point), as
    /// systemd does to it when it restarts piha, whose child it is. The
    /// mount stays listed and answers ENOTCONN. Panics if no such client
    /// runs; returns once it is gone.
    pub fn kill_fuse_client(&self, i: usize, mountpoint: &Path) -> u32 {
        let want = mountpoint.to_string_lossy();
        let pid = self
            .processes(i)
            .into_iter()
            .find(|p| p.name() == "glusterfs" && p.argv.last().is_some_and(|a| *a == want))
            .map(|p| p.pid)
            .unwrap_or_else(|| {
                panic!(
                    "no FUSE client for {} runs on {}: {:#?}",
                    mountpoint.display(),
                    self.hostname(i),
                    self.processes(i)
                )
            });
        signal(pid, Signal::SIGKILL);
        wait_gone(&[pid], SETTLE);
        pid
    }

    /// Mounts `volume` from node `server`'s glusterd (by address) on
    /// `mountpoint` in node `i` (or the client) with `mount -t glusterfs`;
    /// creates the mount point. The mount exists only in that node's mount
    /// namespace (see `node_view`). Panics with the client's log if it fails.
    pub fn mount_volume(&self, i: usize, server: usize, volume: &str, mountpoint: &Path) {
        let source = format!("{}:/{volume}", self.addr(server));
        let mut command = self.command(i, "sh");
        command.args([
            "-c",
            "mkdir -p \"$2\" && exec mount -t glusterfs \"$1\" \"$2\"",
            "sh",
            &source,
        ]);
        command.arg(mountpoint);
        let output = output_within(command, COMMAND_LIMIT);
        if !output.status.success() {
            // mount.glusterfs logs to /var/log/glusterfs/<mount point, / as ->.log
            let name = mountpoint
                .to_string_lossy()
                .trim_start_matches('/')
                .replace('/', "-");
            let log = std::fs::read_to_string(self.log_dir(i).join(format!("{name}.log")));
            panic!(
                "[{}] mount {source} on {}: {}\n{}{}\n--- client log (tail) ---\n{}",
                self.hostname(i),
                mountpoint.display(),
                output.status,
                text(&output.stdout),
                text(&output.stderr),
                tail(&log.unwrap_or_default(), 30)
            );
        }
    }

    /// Unmounts `mountpoint` in node `i` (lazily: a dead or stopped server
    /// does not make it hang). Panics if it was not mounted.
    pub fn umount(&self, i: usize, mountpoint: &Path) {
        let mut command = self.command(i, "umount");
        command
            .args(["--lazy", "--no-canonicalize"])
            .arg(mountpoint);
        let output = output_within(command, SETTLE);
        if !output.status.success() {
            panic!(
                "[{}] umount {}: {}\n{}",
                self.hostname(i),
                mountpoint.display(),
                output.status,
                text(&output.stderr)
            );
        }
    }

    /// Whether node `i`'s FUSE client of `volume` at `mountpoint` is
    /// connected to brick number `brick` (0-based, in volume order), as the
    /// client itself says in its `.meta` folder. A brick restarted a moment
    /// ago is not yet: the client retries every few seconds, and until then
    /// writes go to the other bricks only.
    pub fn client_connected(
        &self,
        i: usize,
        mountpoint: &Path,
        volume: &str,
        brick: usize,
    ) -> bool {
        let private = mountpoint.join(format!(
            ".meta/graphs/active/{volume}-client-{brick}/private"
        ));
        std::fs::read_to_string(self.node_view(i, &private))
            .map(|text| text.lines().any(|l| l.replace(' ', "") == "connected=1"))
            .unwrap_or(false)
    }

    /// The FUSE mount points in node `i`'s mount namespace.
    pub fn fuse_mounts(&self, i: usize) -> Vec<PathBuf> {
        let mounts = std::fs::read_to_string(format!("/proc/{}/mounts", self.holder_pid(i)));
        mounts
            .unwrap_or_default()
            .lines()
            .filter_map(|line| {
                let mut fields = line.split_whitespace();
                let (_source, target, fstype) = (fields.next()?, fields.next()?, fields.next()?);
                fstype
                    .starts_with("fuse")
                    .then(|| PathBuf::from(unescape_mount_path(target)))
            })
            .collect()
    }

    /// Every live process in node `i`'s mount namespace, the holder too.
    pub fn processes(&self, i: usize) -> Vec<NodeProcess> {
        let ns = &self.holders[i].mnt_ns;
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        let mut found = Vec::new();
        for entry in entries.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            // Fails for zombies (their namespaces are released) and for
            // processes gone meanwhile: neither counts.
            match std::fs::read_link(entry.path().join("ns/mnt")) {
                Ok(link) if link.as_os_str() == ns.as_str() => {}
                _ => continue,
            }
            let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
                continue;
            };
            let argv = cmdline
                .split(|b| *b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            found.push(NodeProcess { pid, argv });
        }
        found
    }

    fn netns_node(&self, i: usize) -> &super::netns::NetnsNode {
        if i == self.nodes {
            self.lab.client()
        } else {
            self.lab.node(i)
        }
    }

    fn node_name_dir(&self, kind: &str, i: usize) -> PathBuf {
        let name = if i == self.nodes {
            format!("{kind}-client")
        } else {
            format!("{kind}-{i}")
        };
        self.dir.path().join(name)
    }

    /// Node `i`'s own `/run`, `/var/lib/glusterd`, `/var/log/glusterfs`,
    /// hosts file and glusterd stderr.
    fn state_dir(&self, i: usize) -> PathBuf {
        self.node_name_dir("state", i)
    }

    fn hosts_file(&self, client: bool) -> String {
        let mut hosts =
            String::from("127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n");
        for i in 0..self.nodes + usize::from(client) {
            hosts.push_str(&format!("{} {}\n", self.addr(i), self.hostname(i)));
        }
        hosts
    }

    /// Makes node `i`'s folders and starts its holder; returns once the
    /// holder sleeps with its mounts and hostname in place.
    fn start_holder(&self, i: usize, hosts: &str) -> Holder {
        let state = self.state_dir(i);
        for sub in ["run/gluster", "lib/groups", "log"] {
            std::fs::create_dir_all(state.join(sub)).expect("node state dir");
        }
        let node_dir = self.node_dir(i);
        std::fs::create_dir_all(&node_dir).expect("node dir");
        for d in [&state, &node_dir] {
            set_mode(d, 0o755);
        }
        // The option groups (`volume set V group virt`) ship in the
        // package's /var/lib/glusterd; its hooks do not come along.
        if let Ok(groups) = std::fs::read_dir("/var/lib/glusterd/groups") {
            for g in groups.flatten() {
                let _ = std::fs::copy(g.path(), state.join("lib/groups").join(g.file_name()));
            }
        }
        std::fs::write(state.join("hosts"), hosts).expect("hosts file");
        let err = std::fs::File::create(state.join("holder.err")).expect("holder.err");
        // The copy of the mount table that unshare makes holds the lab
        // namespaces' nsfs mounts (/run/netns/...), which would keep them
        // alive: detach those first. /run goes first so that anything the
        // mount tools write there stays in the node.
        let script = r#"set -e
for m in $(awk '$3 == "nsfs" { print $2 }' /proc/self/mounts); do umount -l "$m" 2>/dev/null || true; done
mount --bind "$1/run" /run
mount --bind "$1/lib" /var/lib/glusterd
mount --bind "$1/log" /var/log/glusterfs
mount --bind "$1/hosts" /etc/hosts
hostname "$2"
exec sleep infinity"#;
        let ns = &self.netns_node(i).name;
        let mut child = self
            .lab
            .command(ns, "unshare")
            .args(["--mount", "--uts", "--propagation", "private", "sh", "-c"])
            .args([script, "sh"])
            .arg(&state)
            .arg(self.hostname(i))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(err)
            .spawn()
            .expect("start holder (needs root, iproute2 and util-linux)");
        // `ip netns exec`, unshare and sh all exec: the child is the sleep.
        let pid = child.id();
        let ready = poll(SETTLE, || {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(Err(status));
            }
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
            (comm.trim() == "sleep").then_some(Ok(()))
        });
        match ready {
            Some(Ok(())) => {}
            Some(Err(status)) => self.holder_failed(i, &mut child, format!("exited: {status}")),
            None => self.holder_failed(i, &mut child, format!("not ready within {SETTLE:?}")),
        }
        let mnt_ns = match std::fs::read_link(format!("/proc/{pid}/ns/mnt")) {
            Ok(link) => link.to_string_lossy().into_owned(),
            Err(e) => self.holder_failed(i, &mut child, format!("its mount namespace: {e}")),
        };
        Holder { child, mnt_ns }
    }

    fn holder_failed(&self, i: usize, child: &mut Child, why: String) -> ! {
        let _ = child.kill();
        let _ = child.wait();
        let err = std::fs::read_to_string(self.state_dir(i).join("holder.err"));
        panic!(
            "holder of {}: {why}\n{}",
            self.hostname(i),
            err.unwrap_or_default()
        );
    }

    /// Reaps node `i`'s glusterd child after it was killed or died (else
    /// it would stay a zombie); bounded.
    fn reap_glusterd(&self, i: usize) {
        let mut children = self.glusterd.lock().unwrap_or_else(|e| e.into_inner());
        let Some(slot) = children.get_mut(i) else {
            return;
        };
        let Some(child) = slot.as_mut() else {
            return;
        };
        let end = Instant::now() + SETTLE;
        loop {
            match child.try_wait() {
                Ok(None) if Instant::now() < end => std::thread::sleep(Duration::from_millis(10)),
                Ok(None) => return,
                _ => break,
            }
        }
        *slot = None;
    }

    /// Lazily unmounts node `i`'s FUSE mounts, each bounded.
    fn detach_fuse_mounts(&self, i: usize) {
        for mountpoint in self.fuse_mounts(i) {
            let mut command = self.command(i, "umount");
            command
                .args(["--lazy", "--no-canonicalize"])
                .arg(&mountpoint);
            let out = output_within(command, SETTLE);
            if !out.status.success() {
                eprintln!(
                    "[{}] umount {}: {}",
                    self.hostname(i),
                    mountpoint.display(),
                    text(&out.stderr)
                );
            }
        }
    }

    /// SIGKILL of every process in node `i`'s mount namespace, the holder
    /// too, until none is left (bounded); returns the pids killed.
    fn kill_node(&mut self, i: usize) -> Vec<u32> {
        let mut killed = Vec::new();
        let end = Instant::now() + SETTLE;
        loop {
            let found: Vec<u32> = self.processes(i).iter().map(|p| p.pid).collect();
            if found.is_empty() {
                break;
            }
            if Instant::now() > end {
                eprintln!("[{}] processes left: {found:?}", self.hostname(i));
                break;
            }
            for &pid in &found {
                signal(pid, Signal::SIGKILL);
            }
            killed.extend(found);
            std::thread::sleep(Duration::from_millis(20));
        }
        let holder = &mut self.holders[i].child;
        let _ = holder.kill();
        let _ = holder.wait();
        killed
    }
}

impl Drop for GlusterLab {
    fn drop(&mut self) {
        // Mounts first, so no access to them blocks on a client being killed.
        for i in 0..self.holders.len() {
            self.detach_fuse_mounts(i);
        }
        let mut killed = Vec::new();
        for i in 0..self.holders.len() {
            killed.extend(self.kill_node(i));
        }
        let children = self.glusterd.get_mut().unwrap_or_else(|e| e.into_inner());
        for child in children.iter_mut().flatten() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // Daemons that forked away (bricks, self-heal, FUSE clients) are
        // reaped by init; waiting a little for that leaves a clean process
        // table for the next test. Then the lab deletes the namespaces.
        wait_gone(&killed, SETTLE);
    }
}

/// Runs `command` with stdout and stderr in unnamed temp files (not pipes:
/// a daemon it forks may keep them open forever), killing it after
/// `limit`; a command killed so reports signal 9 and says why on stderr.
fn output_within(mut command: Command, limit: Duration) -> Output {
    let mut out = tempfile::tempfile().expect("temp file");
    let mut err = tempfile::tempfile().expect("temp file");
    command
        .stdin(Stdio::null())
        .stdout(out.try_clone().expect("temp file"))
        .stderr(err.try_clone().expect("temp file"));
    let mut child = command
        .spawn()
        .unwrap_or_else(|e| panic!("{command:?}: {e} (needs root and util-linux)"));
    let end = Instant::now() + limit;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < end => std::thread::sleep(Duration::from_millis(5)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                break ExitStatus::from_raw(9);
            }
        }
    };
    let read = |file: &mut std::fs::File| {
        let mut buf = Vec::new();
        let _ = file.seek(SeekFrom::Start(0));
        let _ = file.read_to_end(&mut buf);
        buf
    };
    let stdout = read(&mut out);
    let mut stderr = read(&mut err);
    if status.signal() == Some(9) && Instant::now() >= end {
        stderr.extend_from_slice(format!("\n(killed after {limit:?})\n").as_bytes());
    }
    Output {
        status,
        stdout,
        stderr,
    }
}

fn signal(pid: u32, sig: Signal) {
    let _ = kill(Pid::from_raw(pid as i32), sig);
}

/// Whether `pid` exists and is not a zombie.
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z') && !rest.starts_with('X')),
        Err(_) => false,
    }
}

/// Waits (bounded) until none of `pids` is in /proc any more (zombies of
/// daemons are reaped by init, not by us).
fn wait_gone(pids: &[u32], limit: Duration) {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if !pids
            .iter()
            .any(|pid| Path::new(&format!("/proc/{pid}")).exists())
        {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn set_mode(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
}

/// /proc/mounts writes space, tab, newline and backslash as octal escapes.
fn unescape_mount_path(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(at) = rest.find('\\') {
        out.push_str(&rest[..at]);
        let code = rest
            .get(at + 1..at + 4)
            .and_then(|o| u8::from_str_radix(o, 8).ok());
        match code {
            Some(c) => {
                out.push(char::from(c));
                rest = &rest[at + 4..];
            }
            None => {
                out.push('\\');
                rest = &rest[at + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn tail(s: &str, lines: usize) -> String {
    let all: Vec<&str> = s.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
