//! The IO shell around one `Machine`: runs on the VRRP thread, turns
//! adverts, timers, link changes and tracking verdicts into machine events,
//! and carries out the actions it returns (adverts, VIPs, announcements).
//! The node side talks to it only through channels: tracking in, status
//! snapshots and notices out, a token to stop.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use serde_json::json;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::guard::Guard;
use super::io::announce::Announcer;
use super::io::netlink::{self, Link, Netlink};
use super::io::socket::{AdvertSocket, Datagram, SocketConfig};
use super::machine::{Action, Machine, State};
use super::packet::{self, Advert, Checksum, ChecksumPolicy, Drop, Expect, Received, Version};
use super::probes::Tracking;
use super::status::{Counters, MasterInfo, TransitionInfo, VrrpStatus};
use crate::config::{VrrpChecksum, VrrpMode};
use crate::node::events::now_ms;
use crate::sock_diag;

/// Largest datagram read: adverts are tens of bytes; anything longer than
/// an Ethernet frame is not VRRP and is dropped as oversize by the codec.
const RECV_BUFFER: usize = 2048;
/// Notices waiting for the node side; a burst beyond this is dropped (and
/// counted) rather than blocking the protocol thread.
pub const NOTICE_QUEUE: usize = 256;
/// Pause after a failed receive.
const RECV_ERROR_PAUSE: Duration = Duration::from_millis(10);
/// Drop reason for unicast adverts from an address not in the peer list.
const NOT_A_PEER: &str = "not_a_peer";

/// Everything the instance needs, decided by the node service from config.
#[derive(Debug, Clone)]
pub struct Setup {
    pub machine: super::machine::Config,
    /// `None` = the interface holding `node_address`.
    pub interface: Option<String>,
    pub node_address: IpAddr,
    pub vips: Vec<IpNet>,
    /// Unicast peers (our own address left out), or multicast.
    pub mode: VrrpMode,
    pub auth: Option<[u8; 8]>,
    pub checksum: VrrpChecksum,
    /// The piha binary, to start the VIP guard with; `None` = no guard.
    pub guard_exe: Option<std::path::PathBuf>,
}

/// What the node side logs as events and hands to notify commands.
#[derive(Debug, Clone)]
pub enum Notice {
    Transition(TransitionInfo),
    Info(String, serde_json::Value),
    Warning(String, serde_json::Value),
}

/// The channels between the VRRP thread and the node.
pub struct Wiring {
    pub tracking: watch::Receiver<Tracking>,
    pub status: watch::Sender<Option<Arc<VrrpStatus>>>,
    pub notices: mpsc::Sender<Notice>,
    pub stop: CancellationToken,
}

/// Runs the instance until `stop`, then hands the VIP over (priority 0)
/// and removes it. An error before the first advert means the instance
/// could not start (no interface, no permission).
pub async fn run(setup: Setup, wiring: Wiring) -> anyhow::Result<()> {
    let mut inst = Instance::open(setup, wiring).await?;
    inst.remove_stale_vips().await;
    inst.start_guard();
    inst.serve().await;
    if let Some(guard) = inst.guard.take() {
        guard.release();
    }
    Ok(())
}

struct Instance {
    setup: Setup,
    machine: Machine,
    netlink: Netlink,
    link: Link,
    /// Link state changes pushed by the kernel.
    /// `None` once the kernel's subscription died: then link loss is seen
    /// only through missing adverts, as in plain VRRP.
    links: Option<mpsc::Receiver<Link>>,
    socket: AdvertSocket,
    announcer: Option<Announcer>,
    expect: Expect,
    /// The v3 IPv4 checksum we send; in auto mode it follows the peers.
    send_checksum: Checksum,
    /// Peers already warned about sending the other checksum.
    checksum_warned: std::collections::HashSet<IpAddr>,
    link_down: bool,
    counters: Counters,
    last_transition: Option<TransitionInfo>,
    /// Takes the VIPs off if this process dies without doing it itself.
    guard: Option<Guard>,
    wiring: Wiring,
}

impl Instance {
    async fn open(setup: Setup, wiring: Wiring) -> anyhow::Result<Instance> {
        let netlink = Netlink::new().await?;
        let link = find_link(&netlink, &setup).await?;
        let links = netlink::watch_links().await?;
        let local = local_address(&netlink, &link, &setup).await?;
        let peers = match &setup.mode {
            VrrpMode::Multicast => Vec::new(),
            VrrpMode::Unicast { peers } => peers.clone(),
        };
        let socket = AdvertSocket::open(&SocketConfig {
            ifindex: link.index,
            ifname: link.name.clone(),
            local,
            unicast_peers: peers,
        })
        .map_err(|e| anyhow::anyhow!("VRRP socket on {}: {e}", link.name))?;
        // An interface without a MAC (a tunnel) cannot announce; the VIP
        // still moves, clients just learn it by ARP themselves.
        let announcer = match link.mac {
            Some(mac) => Some(
                Announcer::open(link.index, &link.name, mac)
                    .map_err(|e| anyhow::anyhow!("announcing on {}: {e}", link.name))?,
            ),
            None => None,
        };
        let expect = Expect {
            version: setup.machine.version,
            vrid: setup.machine.vrid,
            auth: setup.auth,
            v2_interval_s: (setup.machine.version == Version::V2)
                .then(|| setup.machine.interval.as_secs().min(255) as u8),
            addresses: setup.vips.iter().map(|v| v.addr()).collect(),
            // Both are accepted whatever we send: the config only says
            // what to send (and `auto` follows what is heard).
            checksum: ChecksumPolicy::Auto,
        };
        let send_checksum = match setup.checksum {
            VrrpChecksum::MessageOnly => Checksum::MessageOnly,
            VrrpChecksum::Auto | VrrpChecksum::PseudoHeader => Checksum::PseudoHeader,
        };
        let mut machine_config = setup.machine.clone();
        machine_config.address = local;
        let mut counters = Counters::default();
        for d in Drop::ALL {
            counters.dropped.insert(d.name(), 0);
        }
        counters.dropped.insert(NOT_A_PEER, 0);
        Ok(Instance {
            link_down: !link.up,
            machine: Machine::new(machine_config),
            setup,
            netlink,
            link,
            links: Some(links),
            socket,
            announcer,
            expect,
            send_checksum,
            checksum_warned: Default::default(),
            counters,
            last_transition: None,
            guard: None,
            wiring,
        })
    }

    /// A process killed while master leaves its VIP on the interface: take
    /// it off before saying anything, or two nodes would answer for it.
    async fn remove_stale_vips(&mut self) {
        for vip in self.setup.vips.clone() {
            match self.netlink.del_address(self.link.index, vip).await {
                Ok(true) => self.notice(Notice::Warning(
                    format!(
                        "removed the VIP {vip} from {}: a previous run left it behind",
                        self.link.name
                    ),
                    json!({"vip": vip.to_string()}),
                )),
                Ok(false) => {}
                Err(e) => self.io_error("removing a stale VIP", &e),
            }
        }
    }

    fn start_guard(&mut self) {
        let Some(exe) = self.setup.guard_exe.clone() else {
            return;
        };
        match Guard::spawn(&exe, self.link.index, &self.setup.vips) {
            Ok(g) => self.guard = Some(g),
            Err(e) => self.notice(Notice::Warning(
                format!(
                    "no VIP guard ({e}): if this process is killed, its VIP stays until it restarts"
                ),
                json!({"error": e.to_string()}),
            )),
        }
    }

    async fn serve(&mut self) {
        let mut buf = vec![0u8; RECV_BUFFER];
        self.apply_tracking();
        if self.link_down {
            self.machine.fault(format!("{} is down", self.link.name));
        } else if self.machine.state() != State::Fault {
            self.machine.start(now());
        }
        self.execute().await;
        loop {
            let deadline = self.machine.poll_timeout();
            tokio::select! {
                biased;
                _ = self.wiring.stop.cancelled() => break,
                r = self.socket.recv(&mut buf) => match r {
                    Ok(d) => self.on_datagram(&d, &buf),
                    Err(e) => {
                        self.io_error("receiving", &e);
                        // This thread may run SCHED_FIFO: a socket failing
                        // at once, again and again, must not spin it.
                        tokio::time::sleep(RECV_ERROR_PAUSE).await;
                    }
                },
                _ = sleep_until(deadline) => self.machine.handle_timeout(now()),
                link = next_link(&mut self.links) => match link {
                    Some(l) if l.index == self.link.index => self.on_link(l),
                    Some(_) => {}
                    None => {
                        self.links = None;
                        self.notice(Notice::Warning(
                            "the kernel's link events stopped; link loss is now seen only through adverts".into(),
                            json!({}),
                        ));
                    }
                },
                r = self.wiring.tracking.changed() => {
                    if r.is_err() {
                        // The probes stopped: we are being stopped too.
                        break;
                    }
                    self.apply_tracking();
                }
            }
            self.execute().await;
        }
        self.machine.stop();
        self.execute().await;
    }

    fn on_datagram(&mut self, d: &Datagram, buf: &[u8]) {
        let bytes = &buf[..d.len.min(buf.len())];
        let received = if d.ip_header_included {
            match packet::split_ipv4(bytes) {
                Ok((h, payload)) => Received {
                    src: IpAddr::V4(h.src),
                    dst: IpAddr::V4(h.dst),
                    ttl: h.ttl,
                    payload,
                },
                Err(drop) => return self.dropped(drop.name()),
            }
        } else {
            Received {
                src: d.src,
                dst: d.dst.unwrap_or(d.src),
                ttl: d.hop_limit.unwrap_or(0),
                payload: bytes,
            }
        };
        if let VrrpMode::Unicast { peers } = &self.setup.mode {
            if !peers.contains(&received.src) {
                return self.dropped(NOT_A_PEER);
            }
        }
        match packet::decode(&received, &self.expect) {
            Ok(decoded) => {
                self.learn_checksum(received.src, decoded.checksum);
                self.on_advert(received.src, &decoded.advert);
            }
            Err(drop) => self.dropped(drop.name()),
        }
    }

    fn on_advert(&mut self, from: IpAddr, advert: &Advert) {
        self.counters.adverts_received += 1;
        if advert.priority == 0 {
            self.counters.priority_zero_received += 1;
        }
        self.machine.handle_advert(now(), from, advert);
    }

    /// In auto mode, send the v3 IPv4 checksum the peers send: keepalived
    /// and FRR include the pseudo-header, Cisco and Juniper do not.
    fn learn_checksum(&mut self, from: IpAddr, seen: Checksum) {
        let v3_ipv4 = self.setup.machine.version == Version::V3 && from.is_ipv4();
        if !v3_ipv4 || seen == self.send_checksum {
            return;
        }
        if self.setup.checksum != VrrpChecksum::Auto {
            // We hear the peer, but it will drop what we send: a split
            // brain waiting for this node to become master. Say so once
            // per peer rather than on every advert.
            if self.checksum_warned.insert(from) {
                self.notice(Notice::Warning(
                    format!(
                        "{from} sends the {} checksum but this node is set to send {}: {from} will not hear this node's adverts (set [vrrp] checksum = \"auto\")",
                        checksum_name(seen),
                        checksum_name(self.send_checksum)
                    ),
                    json!({"peer": from.to_string(), "peer_checksum": checksum_name(seen)}),
                ));
            }
            return;
        }
        self.send_checksum = seen;
        self.notice(Notice::Info(
            format!(
                "{from} uses the {} checksum; sending the same from now on",
                checksum_name(seen)
            ),
            json!({"peer": from.to_string(), "checksum": checksum_name(seen)}),
        ));
    }

    fn on_link(&mut self, link: Link) {
        let down = !link.up;
        self.link = Link {
            mac: link.mac.or(self.link.mac),
            ..link
        };
        if down != self.link_down {
            self.link_down = down;
            self.apply_faults();
        }
    }

    fn apply_tracking(&mut self) {
        let (priority, ready) = {
            let t = self.wiring.tracking.borrow_and_update();
            (t.verdict.priority, t.unready.is_none())
        };
        self.machine.set_ready_to_preempt(ready);
        let configured = self.setup.machine.priority;
        self.machine.set_priority(now(), priority.min(configured));
        self.apply_faults();
    }

    /// Fault while the interface is down or a weight-0 check fails; out of
    /// it when neither holds.
    fn apply_faults(&mut self) {
        let tracking = self.wiring.tracking.borrow().verdict.fault.clone();
        let why = if self.link_down {
            Some(format!("{} is down", self.link.name))
        } else {
            tracking
        };
        match why {
            Some(why) => self.machine.fault(why),
            None if self.machine.state() == State::Fault => self.machine.clear_fault(now()),
            None => {}
        }
    }

    /// Carries out what the machine asked for, in order, then publishes the
    /// new status.
    async fn execute(&mut self) {
        while let Some(action) = self.machine.poll_action() {
            match action {
                Action::SendAdvert { priority } => self.send_advert(priority).await,
                Action::AddVips => self.add_vips().await,
                Action::RemoveVips => self.remove_vips().await,
                Action::Announce => self.announce(),
                Action::Transition { from, to, reason } => {
                    if to == State::Master {
                        self.counters.became_master += 1;
                    }
                    let t = TransitionInfo {
                        from,
                        to,
                        reason,
                        at_ms: now_ms(),
                    };
                    self.last_transition = Some(t.clone());
                    self.notice(Notice::Transition(t));
                }
            }
        }
        self.publish();
    }

    async fn send_advert(&mut self, priority: u8) {
        let cfg = &self.setup.machine;
        let advert = Advert {
            version: cfg.version,
            vrid: cfg.vrid,
            priority,
            interval_cs: interval_cs(cfg.interval, cfg.version),
            addresses: self.expect.addresses.clone(),
        };
        let local = self.machine.config().address;
        for dst in self.socket.destinations() {
            let bytes =
                match packet::encode(&advert, local, dst, self.send_checksum, self.setup.auth) {
                    Ok(b) => b,
                    Err(e) => return self.io_error("encoding an advert", &e),
                };
            match self.socket.send_to(&bytes, dst).await {
                Ok(()) => {
                    self.counters.adverts_sent += 1;
                    if priority == 0 {
                        self.counters.priority_zero_sent += 1;
                    }
                }
                Err(e) => self.io_error("sending an advert", &e),
            }
        }
    }

    async fn add_vips(&mut self) {
        for vip in self.setup.vips.clone() {
            if let Err(e) = self.netlink.add_address(self.link.index, vip).await {
                self.io_error("adding the VIP", &e);
            }
        }
    }

    async fn remove_vips(&mut self) {
        for vip in self.setup.vips.clone() {
            // While the address is still here, or the resets could not be
            // routed (see `crate::sock_diag`).
            self.reset_connections(vip.addr());
            if let Err(e) = self.netlink.del_address(self.link.index, vip).await {
                self.io_error("removing the VIP", &e);
            }
        }
    }

    /// Sends an RST to every client connected to `vip`, so none waits for
    /// an answer that can no longer leave this node.
    fn reset_connections(&mut self, vip: IpAddr) {
        match sock_diag::reset_on_local_address(vip) {
            Ok(r) => {
                let reset = r.reset.len();
                self.counters.connections_reset += reset as u64;
                if reset > 0 {
                    self.notice(Notice::Info(
                        format!(
                            "reset {reset} connections on {vip} before giving it up, so their \
                             clients retry on the new master at once"
                        ),
                        json!({"reset": reset, "already_gone": r.gone}),
                    ));
                }
            }
            Err(e) => self.io_error("resetting the connections on the VIP", &e),
        }
    }

    fn announce(&mut self) {
        let Some(announcer) = &self.announcer else {
            return;
        };
        let mut failed = None;
        for vip in &self.setup.vips {
            match announcer.announce(vip.addr()) {
                Ok(()) => self.counters.announcements_sent += 1,
                Err(e) => failed = Some(e),
            }
        }
        if let Some(e) = failed {
            self.io_error("announcing the VIP", &e);
        }
    }

    fn dropped(&mut self, reason: &'static str) {
        *self.counters.dropped.entry(reason).or_insert(0) += 1;
    }

    /// IO failures are counted and logged; the protocol goes on, since the
    /// next advert or timer may well succeed (a link flapping, say).
    fn io_error(&mut self, what: &str, e: &dyn std::fmt::Display) {
        self.counters.io_errors += 1;
        // The first few, then one in a thousand: a dead interface must not
        // flood the journal on an SD card.
        let n = self.counters.io_errors;
        if n <= 5 || n % 1000 == 0 {
            self.notice(Notice::Warning(
                format!(
                    "VRRP {what} on {}: {e} ({n} IO errors so far)",
                    self.link.name
                ),
                json!({"error": e.to_string(), "io_errors": n}),
            ));
        }
    }

    fn notice(&self, n: Notice) {
        // Never block the protocol thread on the node side.
        let _ = self.wiring.notices.try_send(n);
    }

    fn publish(&self) {
        let status = self.status();
        self.wiring.status.send_replace(Some(Arc::new(status)));
    }

    fn status(&self) -> VrrpStatus {
        let cfg = self.machine.config();
        let tracking = self.wiring.tracking.borrow().items.clone();
        VrrpStatus {
            name: format!("vrid {} on {}", cfg.vrid, self.link.name),
            version: cfg.version,
            vrid: cfg.vrid,
            interface: self.link.name.clone(),
            state: self.machine.state(),
            configured_priority: cfg.priority,
            effective_priority: self.machine.effective_priority(),
            interval_ms: cfg.interval.as_millis() as u64,
            master_interval_ms: self.machine.master_interval().as_millis() as u64,
            master: self
                .machine
                .master()
                .map(|(address, priority)| MasterInfo { address, priority }),
            vips: self.setup.vips.iter().map(|v| v.to_string()).collect(),
            mode: match self.setup.mode {
                VrrpMode::Multicast => "multicast",
                VrrpMode::Unicast { .. } => "unicast",
            },
            checksum: checksum_name(self.send_checksum),
            // Filled in by the node side, which knows what the thread got.
            scheduling: String::new(),
            last_transition: self.last_transition.clone(),
            tracking,
            counters: self.counters.clone(),
        }
    }
}

async fn find_link(netlink: &Netlink, setup: &Setup) -> anyhow::Result<Link> {
    let found = match &setup.interface {
        Some(name) => netlink.link_by_name(name).await?,
        None => netlink.link_holding(setup.node_address).await?,
    };
    found.ok_or_else(|| match &setup.interface {
        Some(name) => anyhow::anyhow!("VRRP interface {name} does not exist"),
        None => anyhow::anyhow!(
            "no interface holds the node address {}: set [vrrp] interface",
            setup.node_address
        ),
    })
}

/// The address our adverts come from and ties are broken by: the node
/// address if it is on the interface, else the interface's primary
/// address; for IPv6, the link-local address (RFC 5798 §5.1.2.1).
async fn local_address(netlink: &Netlink, link: &Link, setup: &Setup) -> anyhow::Result<IpAddr> {
    let v6 = setup.vips.first().is_some_and(|v| v.addr().is_ipv6());
    if v6 {
        return netlink
            .link_local_v6(link.index)
            .await?
            .map(IpAddr::V6)
            .ok_or_else(|| anyhow::anyhow!("{} has no IPv6 link-local address", link.name));
    }
    let on_link = netlink
        .addresses(link.index)
        .await?
        .iter()
        .any(|a| a.addr() == setup.node_address);
    if on_link && setup.node_address.is_ipv4() {
        return Ok(setup.node_address);
    }
    netlink
        .primary_v4(link.index)
        .await?
        .map(IpAddr::V4)
        .ok_or_else(|| anyhow::anyhow!("{} has no IPv4 address to send adverts from", link.name))
}

/// v3 carries 12 bits of centiseconds; v2 whole seconds (kept as
/// seconds × 100 in `Advert`). Config validation keeps both in range.
fn interval_cs(d: Duration, version: Version) -> u16 {
    match version {
        Version::V3 => (d.as_millis() / 10).clamp(1, 4095) as u16,
        Version::V2 => (d.as_secs().clamp(1, 255) * 100) as u16,
    }
}

fn checksum_name(c: Checksum) -> &'static str {
    match c {
        Checksum::PseudoHeader => "pseudo_header",
        Checksum::MessageOnly => "message_only",
    }
}

fn now() -> std::time::Instant {
    std::time::Instant::now()
}

/// The next link event; never resolves once the subscription is gone (a
/// closed channel would otherwise wake the loop for ever).
async fn next_link(links: &mut Option<mpsc::Receiver<Link>>) -> Option<Link> {
    match links {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Sleeps until `deadline`, or forever when there is none.
async fn sleep_until(deadline: Option<std::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(tokio::time::Instant::from_std(d)).await,
        None => std::future::pending().await,
    }
}
