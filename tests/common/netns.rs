//! Network-namespace labs for multi-node tests: a "switch" namespace with a
//! Linux bridge `br0`, N node namespaces each with an `eth0` on the bridge
//! at 192.0.2.(10+i)/24 (or from another first address), and optionally a client at 192.0.2.200/24.
//!
//! Tests using it need root and the `iproute2` package (`ip`). Everything stays inside the lab: the
//! veth pairs are created with both ends directly in lab namespaces, so the
//! root namespace gets no interface, and only 192.0.2.0/24 and IPv6
//! link-local addresses are used. Names carry the process id and a counter
//! (`pl<pid>-<n>-...`), so tests in parallel processes never collide.
//! `Drop` kills what still runs in the namespaces and deletes them, also
//! when the test panics; a new `Lab` also removes labs left by processes
//! that died without dropping theirs.

use std::fs::File;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6, UdpSocket};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

static LABS: AtomicUsize = AtomicUsize::new(0);
const PREFIX: &str = "pl";
/// Bounds every wait on the kernel (carrier, link-local addresses).
const SETTLE: Duration = Duration::from_secs(3);

/// One namespace of the lab and its interface on the bridge.
#[derive(Debug, Clone)]
pub struct NetnsNode {
    pub name: String,
    pub addr: Ipv4Addr,
    pub ifname: String,
}

#[derive(Debug)]
pub struct Lab {
    prefix: String,
    switch: String,
    nodes: Vec<NetnsNode>,
    client: Option<NetnsNode>,
    /// Every namespace made so far, so a half-built lab is removed too.
    made: Vec<String>,
}

impl Lab {
    pub fn new(nodes: usize, client: bool) -> Lab {
        Lab::with_first_octet(nodes, client, 10)
    }

    /// Like `new`, with node `i` at 192.0.2.(first+i): the four-node
    /// layout of `pi-configs/cluster.toml` starts at .11, the VIP at .10.
    pub fn with_first_octet(nodes: usize, client: bool, first: u8) -> Lab {
        assert!(
            first >= 10 && usize::from(first) + nodes <= 110,
            "addresses 192.0.2.10..=109 are for nodes"
        );
        sweep_stale_labs();
        let prefix = format!(
            "{PREFIX}{}-{}",
            std::process::id(),
            LABS.fetch_add(1, Ordering::Relaxed)
        );
        let mut lab = Lab {
            switch: format!("{prefix}-sw"),
            prefix,
            nodes: Vec::new(),
            client: None,
            made: Vec::new(),
        };
        lab.make_switch();
        for i in 0..nodes {
            let octet = u8::try_from(usize::from(first) + i).expect("node octet");
            let node = lab.make_host(&format!("n{i}"), Ipv4Addr::new(192, 0, 2, octet));
            lab.nodes.push(node);
        }
        if client {
            lab.client = Some(lab.make_host("cl", Ipv4Addr::new(192, 0, 2, 200)));
        }
        lab.wait_for_carrier();
        lab
    }

    pub fn node(&self, i: usize) -> &NetnsNode {
        &self.nodes[i]
    }

    pub fn nodes(&self) -> &[NetnsNode] {
        &self.nodes
    }

    pub fn has_client(&self) -> bool {
        self.client.is_some()
    }

    pub fn client(&self) -> &NetnsNode {
        self.client
            .as_ref()
            .expect("this lab was built without a client")
    }

    /// Runs `cmd` with `sh -c` in namespace `ns`; panics with its stderr if
    /// it fails, else returns its stdout.
    pub fn sh(&self, ns: &str, cmd: &str) -> String {
        let mut command = self.command(ns, "sh");
        command.args(["-c", cmd]);
        checked(command, &format!("[{ns}] {cmd}"))
    }

    /// `program` to be run inside namespace `ns` (`ip netns exec NS ...`).
    pub fn command(&self, ns: &str, program: &str) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", ns, program]);
        command
    }

    pub fn link_down(&self, i: usize) {
        let node = self.node(i);
        self.sh(&node.name, &format!("ip link set {} down", node.ifname));
    }

    /// Node `i`'s namespace drops every packet in and out but loopback's
    /// and those to and from `except`, with nftables (table `cut`, which
    /// [`Lab::restore_traffic`] deletes). Unlike a link going down, the
    /// node's own sockets hear nothing of it: a cut cable or a power cut
    /// as the other nodes see it.
    pub fn drop_traffic(&self, i: usize, except: Option<Ipv4Addr>) {
        let ns = &self.node(i).name;
        let mut cmd = String::from(
            "nft add table inet cut && \
             nft add chain inet cut in '{ type filter hook input priority 0; policy drop; }' && \
             nft add rule inet cut in iif lo accept && \
             nft add chain inet cut out '{ type filter hook output priority 0; policy drop; }' && \
             nft add rule inet cut out oif lo accept",
        );
        if let Some(ip) = except {
            cmd.push_str(&format!(
                " && nft add rule inet cut in ip saddr {ip} accept \
                 && nft add rule inet cut out ip daddr {ip} accept"
            ));
        }
        self.sh(ns, &cmd);
    }

    pub fn restore_traffic(&self, i: usize) {
        self.sh(&self.node(i).name, "nft delete table inet cut");
    }

    pub fn link_up(&self, i: usize) {
        let node = self.node(i);
        self.sh(&node.name, &format!("ip link set {} up", node.ifname));
    }

    /// Which nodes have `vip` on their interface right now.
    pub fn vip_holders(&self, vip: IpAddr) -> Vec<usize> {
        let needle = format!(" {vip}/");
        let holds = |node: &NetnsNode| {
            self.sh(&node.name, &format!("ip -o addr show dev {}", node.ifname))
                .contains(&needle)
        };
        (0..self.nodes.len())
            .filter(|&i| holds(&self.nodes[i]))
            .collect()
    }

    /// The MAC the client's neighbour table has for `ip`, if any.
    pub fn client_neigh(&self, ip: IpAddr) -> Option<String> {
        let client = self.client();
        let line = self.sh(
            &client.name,
            &format!("ip neigh show {ip} dev {}", client.ifname),
        );
        let mut words = line.split_whitespace();
        words.find(|w| *w == "lladdr")?;
        words.next().map(str::to_owned)
    }

    /// Makes the client resolve `ip` (one UDP datagram to the discard
    /// port: no tool like ping needed) and waits for the neighbour entry.
    pub fn client_resolve(&self, ip: IpAddr) -> String {
        let client = self.client();
        in_netns(&client.name, || {
            let ifindex =
                nix::net::if_::if_nametoindex(client.ifname.as_str()).expect("client ifindex");
            let (bind, dst): (SocketAddr, SocketAddr) = match ip {
                IpAddr::V4(v4) => ((Ipv4Addr::UNSPECIFIED, 0).into(), (v4, 9).into()),
                IpAddr::V6(v6) => (
                    (Ipv6Addr::UNSPECIFIED, 0).into(),
                    SocketAddrV6::new(v6, 9, 0, ifindex).into(),
                ),
            };
            let socket = UdpSocket::bind(bind).expect("client socket");
            socket.send_to(b"resolve", dst).expect("client send");
        });
        poll(SETTLE, || self.client_neigh(ip))
            .unwrap_or_else(|| panic!("the client did not resolve {ip}"))
    }

    /// The MAC of a lab namespace's interface.
    pub fn mac(&self, node: &NetnsNode) -> String {
        let out = self.sh(
            &node.name,
            &format!("cat /sys/class/net/{}/address", node.ifname),
        );
        out.trim().to_owned()
    }

    /// The IPv6 link-local address of a lab namespace's interface (the lab
    /// turns DAD off, so it is usable as soon as it exists).
    pub fn link_local(&self, node: &NetnsNode) -> Ipv6Addr {
        let cmd = format!("ip -6 -o addr show dev {} scope link", node.ifname);
        let found = poll(SETTLE, || {
            let out = self.sh(&node.name, &cmd);
            let word = out
                .split_whitespace()
                .skip_while(|w| *w != "inet6")
                .nth(1)?;
            word.split('/').next()?.parse().ok()
        });
        found.unwrap_or_else(|| panic!("{} got no link-local address", node.name))
    }

    fn make_switch(&mut self) {
        self.add_namespace(&self.switch.clone());
        let cmd = "ip link set lo up && \
                   ip link add br0 type bridge stp_state 0 mcast_snooping 0 && \
                   ip link set br0 up";
        self.sh(&self.switch, cmd);
    }

    /// A namespace with `eth0` on the bridge; `role` also names the bridge port.
    fn make_host(&mut self, role: &str, addr: Ipv4Addr) -> NetnsNode {
        let name = format!("{}-{role}", self.prefix);
        self.add_namespace(&name);
        // Before eth0 exists, so its link-local address is never tentative.
        self.sh(
            &name,
            "echo 0 > /proc/sys/net/ipv6/conf/all/accept_dad && \
             echo 0 > /proc/sys/net/ipv6/conf/default/accept_dad && \
             ip link set lo up",
        );
        root(&format!(
            "ip link add eth0 netns {name} type veth peer name {role} netns {}",
            self.switch
        ));
        self.sh(
            &self.switch,
            &format!("ip link set dev {role} master br0 up"),
        );
        self.sh(
            &name,
            &format!("ip addr add {addr}/24 dev eth0 && ip link set eth0 up"),
        );
        NetnsNode {
            name,
            addr,
            ifname: "eth0".to_owned(),
        }
    }

    fn add_namespace(&mut self, name: &str) {
        root(&format!("ip netns add {name}"));
        self.made.push(name.to_owned());
    }

    fn wait_for_carrier(&self) {
        for node in self.nodes.iter().chain(&self.client) {
            let cmd = format!("ip -o link show dev {}", node.ifname);
            let up = poll(SETTLE, || {
                self.sh(&node.name, &cmd).contains("LOWER_UP").then_some(())
            });
            assert!(up.is_some(), "{} has no carrier", node.name);
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for name in self.made.iter().rev() {
            remove_namespace(name);
        }
    }
}

/// Runs `f` on a fresh thread that has entered namespace `ns`, so sockets
/// and netlink connections it opens belong there. Build a current-thread
/// tokio runtime inside `f` for async code (a multi-thread runtime's
/// workers would be outside the namespace). A panic in `f` is re-raised.
pub fn in_netns<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> T {
    let path = format!("/run/netns/{ns}");
    std::thread::scope(|scope| {
        let thread = scope.spawn(|| {
            let file = File::open(&path).unwrap_or_else(|e| panic!("opening {path}: {e}"));
            nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
                .unwrap_or_else(|e| panic!("entering {ns}: {e}"));
            f()
        });
        match thread.join() {
            Ok(value) => value,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

/// Calls `f` every 20 ms until it gives a value or `limit` passes.
pub fn poll<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let start = Instant::now();
    loop {
        if let Some(value) = f() {
            return Some(value);
        }
        if start.elapsed() > limit {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn root(cmd: &str) -> String {
    let mut command = Command::new("sh");
    command.args(["-c", cmd]);
    checked(command, cmd)
}

fn checked(mut command: Command, what: &str) -> String {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("{what}: {e} (the netns lab needs root and iproute2)"));
    if !output.status.success() {
        panic!("{what}: {}\n{}", output.status, stderr(&output));
    }
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Best effort and quiet about what is already gone: it runs from `Drop`,
/// possibly while a test is panicking.
fn remove_namespace(name: &str) {
    let me = std::process::id().to_string();
    if let Ok(out) = Command::new("ip").args(["netns", "pids", name]).output() {
        let pids = String::from_utf8_lossy(&out.stdout).into_owned();
        for pid in pids.split_whitespace().filter(|p| *p != me) {
            let _ = Command::new("kill").args(["-9", pid]).output();
        }
    }
    match Command::new("ip").args(["netns", "del", name]).output() {
        Ok(out) if out.status.success() => {}
        Ok(out) => eprintln!("ip netns del {name}: {}", stderr(&out)),
        Err(e) => eprintln!("ip netns del {name}: {e}"),
    }
}

/// Labs of processes that are gone (killed before their `Drop` ran).
fn sweep_stale_labs() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    let list = String::from_utf8_lossy(&out.stdout).into_owned();
    for name in list
        .lines()
        .filter_map(|line| line.split_whitespace().next())
    {
        if let Some(pid) = lab_owner(name) {
            if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
                remove_namespace(name);
            }
        }
    }
}

/// The pid in a lab namespace name `pl<pid>-<n>-<role>`.
fn lab_owner(name: &str) -> Option<u32> {
    let rest = name.strip_prefix(PREFIX)?;
    let (pid, tail) = rest.split_once('-')?;
    let (counter, _role) = tail.split_once('-')?;
    counter.parse::<usize>().ok()?;
    pid.parse().ok()
}
