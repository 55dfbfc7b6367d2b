//! The IO shell around the membership table: one UDP socket, a heartbeat
//! timer with jitter, a tick that applies timeouts, and the published view
//! the status API reads. All decisions are the table's.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use rand::Rng;
use serde_json::json;
use tokio::net::UdpSocket;

use super::message::{DropReason, Heartbeat, MAX_DATAGRAM, NodeReport, SystemSummary};
use super::table::{Change, Membership, PeerState, Timing};
use crate::node::context::{NodeContext, Running};
use crate::node::events::now_ms;

/// How often timeouts are evaluated: a quarter of a second adds at most that
/// much to the detection time.
const TICK: Duration = Duration::from_millis(250);
/// Warnings about strangers and impostors are repeated at most this often.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// What other parts of the node read: every peer (not this node) and the
/// counters for /metrics.
#[derive(Debug, Clone, Default)]
pub struct MembershipView {
    pub members: Vec<MemberView>,
    pub received: u64,
    pub sent: u64,
    pub send_errors: u64,
    pub dropped: BTreeMap<&'static str, u64>,
}

#[derive(Debug, Clone)]
pub struct MemberView {
    pub hostname: String,
    pub state: PeerState,
    pub since_ms: i64,
    pub last_heard_ms: Option<i64>,
    pub gossip: Option<SocketAddr>,
    pub report: Option<NodeReport>,
}

/// The handle the agent keeps: nothing yet beyond the view channel, named so
/// later roles (the balancer's backend list) know where to subscribe.
pub type MembershipHandle = tokio::sync::watch::Receiver<Arc<MembershipView>>;

/// Runs until shutdown (then says goodbye to every peer) or until this
/// node's own gossip address changes in the config (then returns Ok so the
/// supervisor restarts it on the new address).
pub async fn run(ctx: Arc<NodeContext>) -> anyhow::Result<()> {
    let running = ctx.running();
    let bind = SocketAddr::new(ctx.identity.address, running.plan.gossip_port);
    let socket = UdpSocket::bind(bind)
        .await
        .with_context(|| format!("cannot listen for heartbeats on udp {bind}"))?;
    let mut shell = Shell::new(&ctx, &running, bind);
    let mut config = ctx.config.clone();
    let mut buf = vec![0u8; MAX_DATAGRAM + 1];
    let mut tick = tokio::time::interval(TICK);
    let mut next_beat = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = ctx.shutdown.cancelled() => {
                shell.send_heartbeat(&socket, true).await;
                shell.publish();
                return Ok(());
            }
            received = socket.recv_from(&mut buf) => match received {
                Ok((len, from)) => {
                    let reply = shell.on_datagram(&buf[..len], from);
                    if reply {
                        shell.send_heartbeat(&socket, false).await;
                    }
                }
                // Linux reports earlier ICMP errors on some sockets; they say
                // nothing about this datagram, so count and go on.
                Err(e) => tracing::debug!("heartbeat receive error: {e}"),
            },
            _ = tokio::time::sleep_until(next_beat) => {
                shell.send_heartbeat(&socket, false).await;
                next_beat = tokio::time::Instant::now() + jittered(shell.table.timing().heartbeat_interval);
            }
            _ = tick.tick() => {
                let changes = shell.table.tick(Instant::now());
                shell.report(changes);
                shell.publish();
            }
            changed = config.changed() => {
                if changed.is_err() {
                    return Ok(());
                }
                let running = config.borrow_and_update().clone();
                if running.plan.gossip_port != bind.port() {
                    return Ok(());
                }
                shell.apply_config(&running);
            }
        }
    }
}

/// ±10 % so that nodes started together do not send in lockstep forever.
fn jittered(interval: Duration) -> Duration {
    let factor = rand::rng().random_range(0.9..1.1);
    interval.mul_f64(factor)
}

struct Shell {
    ctx: Arc<NodeContext>,
    table: Membership,
    gossip: SocketAddr,
    counters: MembershipView,
    last_warned: BTreeMap<(DropReason, String), Instant>,
}

impl Shell {
    fn new(ctx: &Arc<NodeContext>, running: &Running, gossip: SocketAddr) -> Shell {
        let timing = timing_of(running);
        let mut table = Membership::new(
            &ctx.identity.hostname,
            &running.config.name,
            ctx.identity.incarnation,
            timing,
        );
        table.set_seeds(&running.seeds(), timing, Instant::now());
        Shell {
            ctx: ctx.clone(),
            table,
            gossip,
            counters: MembershipView::default(),
            last_warned: BTreeMap::new(),
        }
    }

    fn apply_config(&mut self, running: &Running) {
        let changes = self
            .table
            .set_seeds(&running.seeds(), timing_of(running), Instant::now());
        self.report(changes);
        self.publish();
    }

    /// Returns whether to answer with a heartbeat right away.
    fn on_datagram(&mut self, bytes: &[u8], from: SocketAddr) -> bool {
        let running = self.ctx.running();
        let hb = match Heartbeat::decode(bytes, &running.config.name) {
            Ok(hb) => hb,
            Err(reason) => {
                self.count_drop(reason);
                return false;
            }
        };
        let sender = hb.from.clone();
        match self
            .table
            .receive(hb, Instant::now(), |h| running.admits(h))
        {
            Ok(received) => {
                self.counters.received += 1;
                self.report(received.changes);
                self.publish();
                received.reply_now
            }
            Err(reason) => {
                self.warn_about(reason, &sender, from);
                self.count_drop(reason);
                false
            }
        }
    }

    fn count_drop(&mut self, reason: DropReason) {
        *self.counters.dropped.entry(reason.label()).or_default() += 1;
    }

    /// Strangers and impostors are a misconfiguration a person must fix:
    /// say so, but not sixty times a minute.
    fn warn_about(&mut self, reason: DropReason, sender: &str, from: SocketAddr) {
        let message = match reason {
            DropReason::DuplicateHostname => format!(
                "another node at {from} also calls itself {sender}: give every card its own hostname"
            ),
            DropReason::UnknownHost => format!(
                "ignoring heartbeats from {sender} at {from}: it is not in the cluster file and matches no pattern"
            ),
            _ => return,
        };
        let key = (reason, sender.to_owned());
        let now = Instant::now();
        if self
            .last_warned
            .get(&key)
            .is_some_and(|t| now.duration_since(*t) < WARN_EVERY)
        {
            return;
        }
        self.last_warned.insert(key, now);
        self.ctx.events.warning(
            "membership",
            message,
            json!({"host": sender, "from": from.to_string(), "reason": reason.label()}),
        );
    }

    async fn send_heartbeat(&mut self, socket: &UdpSocket, leaving: bool) {
        let report = self.local_report();
        let (hb, targets) = self.table.heartbeat(self.gossip, report, leaving);
        let bytes = hb.encode();
        for target in targets {
            match socket.send_to(&bytes, target).await {
                Ok(_) => self.counters.sent += 1,
                // An unreachable peer (link down, no route) is what the
                // timeouts are for; sending on is right.
                Err(e) => {
                    self.counters.send_errors += 1;
                    tracing::debug!("heartbeat to {target} failed: {e}");
                }
            }
        }
    }

    fn local_report(&self) -> NodeReport {
        let running = self.ctx.running();
        let health = self.ctx.health.snapshot();
        let system = self.ctx.system.borrow().latest.clone();
        NodeReport {
            address: Some(self.ctx.identity.address),
            admin_port: running.plan.admin_port,
            version: self.ctx.identity.version.to_owned(),
            config_hash: running.config.source.hash.clone(),
            roles: running
                .plan
                .roles
                .iter()
                .map(|r| r.name().to_owned())
                .collect(),
            role_health: health
                .roles
                .values()
                .map(|h| (h.role.name().to_owned(), h.state.name().to_owned()))
                .collect(),
            system: system.map(|s| SystemSummary {
                cpu_percent: s.cpu_percent,
                memory_percent: s.memory_percent(),
                temperature_c: s.temperature_c,
                load1: s.load[0],
                uptime_s: s.uptime_s,
            }),
            db: self
                .ctx
                .roles
                .db
                .borrow()
                .as_ref()
                .map(|h| h.status().report()),
            vrrp_master: self
                .ctx
                .roles
                .vrrp
                .borrow()
                .as_ref()
                .is_some_and(|v| v.state == crate::vrrp::machine::State::Master),
        }
    }

    fn report(&self, changes: Vec<Change>) {
        let events = &self.ctx.events;
        let down_after = self.table.timing().down_after;
        for change in changes {
            match change {
                Change::Up { host } => {
                    events.info("membership", format!("{host} is up"), json!({"peer": host}))
                }
                Change::Down { host, silent_for } => {
                    let why = match silent_for {
                        Some(d) => format!("no heartbeat for {:.1} s", d.as_secs_f64()),
                        None => format!(
                            "not heard from since this node started ({} s ago)",
                            down_after.as_secs()
                        ),
                    };
                    events.warning(
                        "membership",
                        format!("{host} is down ({why})"),
                        json!({"peer": host}),
                    )
                }
                Change::Left { host } => events.info(
                    "membership",
                    format!("{host} left (stopped gracefully)"),
                    json!({"peer": host}),
                ),
                Change::Restarted { host } => events.warning(
                    "membership",
                    format!("{host} restarted"),
                    json!({"peer": host}),
                ),
                Change::Learned { host } => events.info(
                    "membership",
                    format!("{host} joined by hostname pattern"),
                    json!({"peer": host}),
                ),
                Change::Forgotten { host } => events.info(
                    "membership",
                    format!("forgot {host} (removed from the cluster file or gone for an hour)"),
                    json!({"peer": host}),
                ),
            }
        }
    }

    fn publish(&self) {
        let now = Instant::now();
        let now_ms = now_ms();
        let ago_ms = |t: Instant| now_ms - now.saturating_duration_since(t).as_millis() as i64;
        let members = self
            .table
            .peers()
            .map(|(host, peer)| MemberView {
                hostname: host.to_owned(),
                state: peer.state,
                since_ms: ago_ms(peer.since),
                last_heard_ms: peer.last_heard.map(ago_ms),
                gossip: peer.gossip,
                report: peer.report.clone(),
            })
            .collect();
        let view = MembershipView {
            members,
            ..self.counters.clone()
        };
        self.ctx.membership.send_replace(Arc::new(view));
    }
}

fn timing_of(running: &Running) -> Timing {
    Timing {
        heartbeat_interval: running.config.membership.heartbeat_interval,
        down_after: running.config.membership.down_after,
    }
}
