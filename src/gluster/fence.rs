//! Cutting the Gluster client's connections to the brick of a node that
//! went silent, so the volume goes on with the other bricks at once instead
//! of stalling for `network.ping-timeout`.
//!
//! Why: a replica client sends each operation to every brick and waits for
//! all of them. A node that dies without closing its sockets (power cut,
//! kernel hang, unplugged cable) answers nothing, so every file operation
//! on every node waits until gluster's ping timer gives up on it (10 s
//! here, 42 s by gluster's default). The failure drill saw every web node's
//! `/health` fail for that long on a cut link, and after the link came back
//! the stalled connection waited out TCP's retransmission backoff too.
//! Lowering the ping timeout is what gluster's documentation warns against:
//! a brick that is merely busy misses pings, and each reconnect costs lock
//! recovery and heals.
//!
//! piha has a better signal than gluster's ping: membership, whose
//! heartbeats come from another process over UDP and do not depend on the
//! brick keeping up. A connection is cut only when both say the peer is
//! gone: membership reports the node down (silent for `down_after`) AND the
//! kernel says the socket has data out that a retransmission timeout passed
//! without acknowledgement. A node where only piha died (its bricks still
//! answer) keeps its connections; so does an idle one, until an operation
//! is sent on it and stalls. The kernel aborts a cut socket (sock_diag,
//! `crate::sock_diag`); the client sees the disconnect, answers the waiting
//! operations from the other bricks and reconnects by itself once the node
//! is back (every 3 s), healing what changed meanwhile.
//!
//! The same holds for glusterd's own connections to the silent node's
//! glusterd (port 24007). A cluster transaction (`volume status`, a heal)
//! sends its lock request to every peer on them and waits: measured with
//! four glusterd and one node's link cut, the first `volume status` after
//! the cut held the cluster lock for the whole cut and 9 s after it (45 s
//! cut: every node's every question refused "Another transaction is in
//! progress" for 54 s), so every node's volume turned UNKNOWN. Cut, the
//! transaction fails at once, glusterd counts the peer disconnected and
//! the next questions leave it out.
//!
//! When the node comes back, what was cut is reconnecting, but a connect
//! begun while it was away waits out TCP's SYN backoff (1, 2, 4 ... 64 s):
//! measured, two of three glusterd still did not see the returned node 25 s
//! after its link came back. For `RETURN_WINDOW` after membership reports
//! it up again, such half-open connects to its glusterd and bricks are cut
//! too, and gluster's next retry (every 3 s) connects at once: all three
//! saw it within 6 s.
//!
//! `Fence` is the decision, without IO; `run` is the shell that feeds it
//! membership and the storage status and asks the kernel.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::json;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::health::VolumeView;
use super::status::StorageStatus;
use crate::membership::PeerState;
use crate::node::context::NodeContext;
use crate::sock_diag::{self, TIMER_RETRANSMIT, TcpSocket, state};

/// How often the sockets are looked at while a brick's node is down. The
/// delay adds to membership's `down_after` in the stall every node sees;
/// one kernel dump of a Pi's few hundred sockets costs well under a
/// millisecond.
const EVERY: Duration = Duration::from_millis(500);
/// glusterd's management port: gluster's fixed default, which piha never
/// changes. Every glusterd keeps a connection to every peer's, and clients
/// ask it for brick ports.
pub const GLUSTERD_PORT: u16 = 24007;
/// How long after a node comes back its half-open connects are cut: Linux
/// gives a connect up after 127 s of SYN retries (`tcp_syn_retries` 6).
const RETURN_WINDOW: Duration = Duration::from_secs(130);

/// What the fence knows: where each node's bricks listen.
#[derive(Debug, Default)]
pub struct Fence {
    /// Brick ports per node address, from the latest status that listed
    /// them. A node that goes down vanishes from `volume status`, which is
    /// exactly when its ports are needed, so they are kept until a later
    /// status lists that node's bricks again.
    ports: BTreeMap<IpAddr, BTreeSet<u16>>,
}

impl Fence {
    /// Takes the brick ports of a fresh status. Bricks are named by
    /// address (formation does so); a brick named by hostname is skipped,
    /// and is left to gluster's ping timeout.
    pub fn learn<'a>(&mut self, bricks: impl IntoIterator<Item = (&'a str, Option<u16>)>) {
        let mut fresh: BTreeMap<IpAddr, BTreeSet<u16>> = BTreeMap::new();
        for (host, port) in bricks {
            if let (Ok(host), Some(port)) = (host.parse::<IpAddr>(), port) {
                fresh.entry(host).or_default().insert(port);
            }
        }
        self.ports.extend(fresh);
    }

    /// The gluster endpoints on the nodes in `nodes`: their glusterd and
    /// their bricks.
    pub fn targets(&self, nodes: &BTreeSet<IpAddr>) -> Targets {
        let bricks = nodes
            .iter()
            .filter_map(|ip| self.ports.get(ip).map(|ports| (ip, ports)))
            .flat_map(|(ip, ports)| ports.iter().map(|p| SocketAddr::new(*ip, *p)));
        let glusterd = nodes.iter().map(|ip| SocketAddr::new(*ip, GLUSTERD_PORT));
        Targets {
            nodes: nodes.clone(),
            endpoints: bricks.chain(glusterd).collect(),
        }
    }
}

/// The connections to cut for a set of nodes: to their glusterd or bricks,
/// and from their glusterd to ours.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Targets {
    nodes: BTreeSet<IpAddr>,
    endpoints: BTreeSet<SocketAddr>,
}

impl Targets {
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Whether `s` talks to gluster on one of the nodes.
    pub fn matches(&self, s: &TcpSocket) -> bool {
        let remote = canonical(s.id.remote());
        self.endpoints.contains(&remote)
            || (self.nodes.contains(&remote.ip()) && s.id.local_port() == GLUSTERD_PORT)
    }
}

/// Whether a connection is stuck on a silent peer: established, with data
/// out, and at least one retransmission timeout (≥ 200 ms) passed with no
/// acknowledgement. A peer that acknowledges resets the count to 0.
pub fn stalled(s: &TcpSocket) -> bool {
    u32::from(s.state) == state::ESTABLISHED && s.timer == TIMER_RETRANSMIT && s.retransmits >= 1
}

/// Whether a connect is waiting out its SYN backoff: at least one SYN went
/// unanswered. (A node that is up but does not listen answers with a
/// reset, which ends the connect by itself.)
pub fn backing_off(s: &TcpSocket) -> bool {
    u32::from(s.state) == state::SYN_SENT && s.retransmits >= 1
}

/// Watches membership and cuts stalled gluster connections to down nodes
/// until `stop`. `cut` counts the connections cut; the count also goes
/// into the published status at once, since a round may be stuck for its
/// whole budget on the CLI while a node is down.
pub async fn run(
    ctx: Arc<NodeContext>,
    status: watch::Sender<Arc<StorageStatus>>,
    cut: Arc<AtomicU64>,
    ping_timeout: Duration,
    stop: CancellationToken,
) {
    let mut fence = Fence::default();
    let mut last_error: Option<String> = None;
    // Down at the last tick, and when each node came back.
    let mut was_down: BTreeMap<IpAddr, String> = BTreeMap::new();
    let mut returned: BTreeMap<IpAddr, (String, tokio::time::Instant)> = BTreeMap::new();
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        if let Some(view) = &status.borrow().view {
            fence.learn(bricks(&view.volumes));
        }
        let down = down_nodes(&ctx);
        let now = tokio::time::Instant::now();
        for (ip, name) in &was_down {
            if !down.contains_key(ip) {
                returned.insert(*ip, (name.clone(), now));
            }
        }
        returned.retain(|ip, (_, at)| !down.contains_key(ip) && now - *at < RETURN_WINDOW);
        was_down = down.clone();
        let stalled_to = fence.targets(&down.keys().copied().collect());
        let connecting_to = fence.targets(&returned.keys().copied().collect());
        if stalled_to.is_empty() && connecting_to.is_empty() {
            continue;
        }
        let found = tokio::task::spawn_blocking(move || {
            let states = (1 << state::ESTABLISHED) | (1 << state::SYN_SENT);
            sock_diag::reset_where(states, |s| {
                (stalled_to.matches(s) && stalled(s))
                    || (connecting_to.matches(s) && backing_off(s))
            })
        })
        .await;
        match found {
            Ok(Ok(resets)) => {
                last_error = None;
                let (stuck, connects): (Vec<TcpSocket>, Vec<TcpSocket>) = resets
                    .reset
                    .into_iter()
                    .partition(|s| u32::from(s.state) == state::ESTABLISHED);
                if !stuck.is_empty() {
                    let total =
                        cut.fetch_add(stuck.len() as u64, Ordering::Relaxed) + stuck.len() as u64;
                    status.send_modify(|s| Arc::make_mut(s).fenced = total);
                    report(&ctx, &down, &stuck, ping_timeout);
                }
                if !connects.is_empty() {
                    report_returned(&ctx, &returned, &connects);
                }
            }
            Ok(Err(e)) => {
                let text = e.to_string();
                if last_error.as_ref() != Some(&text) {
                    ctx.events.warning(
                        "storage",
                        format!(
                            "cannot cut the connections to a down node's brick ({text}): \
                             the volume waits for network.ping-timeout instead"
                        ),
                        json!({}),
                    );
                    last_error = Some(text);
                }
            }
            Err(_) => {} // the blocking thread panicked: try again next tick
        }
    }
}

fn bricks(volumes: &[VolumeView]) -> impl Iterator<Item = (&str, Option<u16>)> {
    volumes
        .iter()
        .flat_map(|v| &v.bricks)
        .map(|b| (b.host.as_str(), b.port))
}

/// The nodes membership reports down or gone, by address (the cluster
/// file's, else the one the node last reported), with their hostnames.
fn down_nodes(ctx: &NodeContext) -> BTreeMap<IpAddr, String> {
    let running = ctx.running();
    let view = ctx.membership.borrow().clone();
    view.members
        .iter()
        .filter(|m| matches!(m.state, PeerState::Down | PeerState::Left))
        .filter_map(|m| {
            let from_file = running
                .config
                .nodes
                .iter()
                .find(|n| n.hostname == m.hostname)
                .map(|n| n.address);
            let address = from_file.or(m.report.as_ref().and_then(|r| r.address))?;
            Some((address, m.hostname.clone()))
        })
        .collect()
}

/// A dual-stack socket names an IPv4 peer by its IPv4-mapped address.
fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

/// The far ends of `cut`, by node.
fn by_node(cut: &[TcpSocket]) -> BTreeMap<IpAddr, Vec<SocketAddr>> {
    let mut out: BTreeMap<IpAddr, Vec<SocketAddr>> = BTreeMap::new();
    for s in cut {
        let remote = canonical(s.id.remote());
        out.entry(remote.ip()).or_default().push(remote);
    }
    out
}

/// One note per returned node whose pending connects were cut.
fn report_returned(
    ctx: &NodeContext,
    returned: &BTreeMap<IpAddr, (String, tokio::time::Instant)>,
    cut: &[TcpSocket],
) {
    for (ip, endpoints) in by_node(cut) {
        let name = returned.get(&ip).map_or("?", |(n, _)| n.as_str());
        // Several connects to one glusterd (its own, a client's port
        // lookup) read better once.
        let list: Vec<String> = endpoints
            .iter()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .map(ToString::to_string)
            .collect();
        ctx.events.info(
            "storage",
            format!(
                "{name} is back: {} to its gluster ({}) waited out TCP's backoff; \
                 cut, so gluster connects again at once",
                match endpoints.len() {
                    1 => "a connect".to_owned(),
                    n => format!("{n} connects"),
                },
                list.join(", ")
            ),
            json!({"node": name, "address": ip, "connections": list}),
        );
    }
}

/// One warning per node whose connections were cut this round.
fn report(
    ctx: &NodeContext,
    down: &BTreeMap<IpAddr, String>,
    cut: &[TcpSocket],
    ping_timeout: Duration,
) {
    for (ip, endpoints) in by_node(cut) {
        let name = down.get(&ip).map_or("?", String::as_str);
        let list: Vec<String> = endpoints.iter().map(ToString::to_string).collect();
        ctx.events.warning(
            "storage",
            format!(
                "{name} is down and {} with it ({}) had data unacknowledged: \
                 cut, so the volume goes on with the other bricks, and gluster's own \
                 questions without it, instead of waiting up to {} s \
                 (network.ping-timeout)",
                match endpoints.len() {
                    1 => "a gluster connection".to_owned(),
                    n => format!("{n} gluster connections"),
                },
                list.join(", "),
                ping_timeout.as_secs()
            ),
            json!({"node": name, "address": ip, "connections": list}),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sock_diag::SocketId;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("an address")
    }

    /// A TCP socket of an IPv4 dump: `local_port` here, to `remote`.
    fn socket(local_port: u16, remote: &str, state: u32, timer: u8, retransmits: u8) -> TcpSocket {
        let remote: SocketAddr = remote.parse().expect("an endpoint");
        let mut raw = [0u8; 48];
        raw[0..2].copy_from_slice(&local_port.to_be_bytes());
        raw[2..4].copy_from_slice(&remote.port().to_be_bytes());
        raw[4..8].copy_from_slice(&[192, 0, 2, 10]);
        if let IpAddr::V4(v4) = remote.ip() {
            raw[20..24].copy_from_slice(&v4.octets());
        }
        TcpSocket {
            id: SocketId {
                family: libc::AF_INET as u8,
                raw,
            },
            state: state as u8,
            timer,
            retransmits,
        }
    }

    fn to(local_port: u16, remote: &str) -> TcpSocket {
        socket(local_port, remote, state::ESTABLISHED, TIMER_RETRANSMIT, 1)
    }

    #[test]
    fn a_down_node_keeps_the_ports_its_last_status_listed() {
        let mut f = Fence::default();
        f.learn([
            ("192.0.2.11", Some(49152)),
            ("192.0.2.12", Some(49152)),
            ("192.0.2.12", Some(49153)),
            ("pi-4", Some(49152)),
        ]);
        // pi-3 went down: volume status no longer lists a port for it.
        f.learn([("192.0.2.11", Some(49152)), ("192.0.2.12", None)]);
        let down = f.targets(&BTreeSet::from([ip("192.0.2.12")]));
        assert!(down.matches(&to(40000, "192.0.2.12:49152")));
        assert!(down.matches(&to(40000, "192.0.2.12:49153")));
        // Its glusterd: ours to it, and its to ours.
        assert!(down.matches(&to(40000, "192.0.2.12:24007")));
        assert!(down.matches(&to(GLUSTERD_PORT, "192.0.2.12:49150")));
        // Not gluster, or not that node.
        assert!(!down.matches(&to(40000, "192.0.2.12:22")));
        assert!(!down.matches(&to(40000, "192.0.2.11:49152")));
        assert!(!down.matches(&to(GLUSTERD_PORT, "192.0.2.11:49150")));
        // A brick that restarted on another port replaces the old ones.
        f.learn([("192.0.2.12", Some(49160))]);
        let down = f.targets(&BTreeSet::from([ip("192.0.2.12")]));
        assert!(down.matches(&to(40000, "192.0.2.12:49160")));
        assert!(!down.matches(&to(40000, "192.0.2.12:49152")));
        assert!(f.targets(&BTreeSet::new()).is_empty());
        let unknown = f.targets(&BTreeSet::from([ip("192.0.2.99")]));
        assert!(unknown.matches(&to(40000, "192.0.2.99:24007")));
        assert!(!unknown.matches(&to(40000, "192.0.2.99:49152")));
    }

    #[test]
    fn only_a_connect_with_an_unanswered_syn_is_backing_off() {
        assert!(backing_off(&socket(
            40000,
            "192.0.2.12:24007",
            state::SYN_SENT,
            TIMER_RETRANSMIT,
            1
        )));
        assert!(backing_off(&socket(
            40000,
            "192.0.2.12:24007",
            state::SYN_SENT,
            TIMER_RETRANSMIT,
            5
        )));
        // Its first SYN is still out: it may yet be answered.
        assert!(!backing_off(&socket(
            40000,
            "192.0.2.12:24007",
            state::SYN_SENT,
            TIMER_RETRANSMIT,
            0
        )));
        assert!(!backing_off(&socket(
            40000,
            "192.0.2.12:24007",
            state::ESTABLISHED,
            TIMER_RETRANSMIT,
            3
        )));
    }

    #[test]
    fn only_an_established_connection_past_a_retransmission_timeout_is_stalled() {
        let socket = |state: u32, timer: u8, retransmits: u8| TcpSocket {
            id: SocketId {
                family: libc::AF_INET as u8,
                raw: [0; 48],
            },
            state: state as u8,
            timer,
            retransmits,
        };
        assert!(stalled(&socket(state::ESTABLISHED, TIMER_RETRANSMIT, 1)));
        assert!(stalled(&socket(state::ESTABLISHED, TIMER_RETRANSMIT, 6)));
        // Data out, but acknowledged so far: a busy brick, not a dead one.
        assert!(!stalled(&socket(state::ESTABLISHED, TIMER_RETRANSMIT, 0)));
        // Idle (no timer) or keepalive (2) or zero-window probes (4: the
        // peer is alive, its receive buffer is full).
        assert!(!stalled(&socket(state::ESTABLISHED, 0, 0)));
        assert!(!stalled(&socket(state::ESTABLISHED, 2, 3)));
        assert!(!stalled(&socket(state::ESTABLISHED, 4, 3)));
        // A reconnect that is not answered fails by itself.
        assert!(!stalled(&socket(state::SYN_SENT, TIMER_RETRANSMIT, 2)));
    }

    #[test]
    fn an_ipv4_peer_of_a_dual_stack_socket_matches_its_address() {
        let mapped = SocketAddr::new(
            IpAddr::V6(std::net::Ipv4Addr::new(192, 0, 2, 12).to_ipv6_mapped()),
            49152,
        );
        assert_eq!(
            canonical(mapped),
            "192.0.2.12:49152".parse().expect("an endpoint")
        );
    }
}
