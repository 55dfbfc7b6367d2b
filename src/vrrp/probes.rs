//! The probes behind tracking: the local HTTP balancer and pooler (their
//! service is running and their listener accepts), and the operator's check
//! commands. Each probe is a task that reports results; one loop owns the
//! `Tracker` and publishes its verdict for the VRRP thread.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::status::TrackInfo;
use super::track::{Tracker, Verdict};
use crate::config::VrrpCheck;
use crate::node::context::NodeContext;
use crate::node::health::ServiceState;

/// How often the local services are probed. With fall 2 a dead balancer
/// lowers the priority within about a second.
const SERVICE_EVERY: Duration = Duration::from_millis(500);
const SERVICE_TIMEOUT: Duration = Duration::from_millis(400);
const SERVICE_FALL: u32 = 2;
const SERVICE_RISE: u32 = 2;
/// How often readiness to preempt is looked at (cheap: in-memory state).
const READY_EVERY: Duration = Duration::from_millis(200);
/// Results waiting for the tracker; probes are few and slow.
const RESULTS_QUEUE: usize = 64;

/// What tracking currently says, for the VRRP thread and the status page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tracking {
    pub verdict: Verdict,
    pub items: std::collections::BTreeMap<String, TrackInfo>,
    /// Why this node cannot yet serve what the VIP brings, if so: then it
    /// does not preempt a lower priority master (`Machine::set_ready_to_preempt`).
    pub unready: Option<String>,
}

/// One local service to watch: the supervisor's name for it and the port
/// its listener has on the node's address.
pub struct ServiceProbe {
    pub name: &'static str,
    pub service: &'static str,
    pub port: u16,
    pub weight: u8,
}

/// One probe's result, on its way to the tracker.
struct Outcome {
    name: String,
    ok: bool,
    detail: String,
}

/// Runs the probes until `stop`, publishing every change of the verdict.
pub async fn run(
    ctx: Arc<NodeContext>,
    configured: u8,
    services: Vec<ServiceProbe>,
    checks: Vec<VrrpCheck>,
    out: watch::Sender<Tracking>,
    stop: CancellationToken,
) {
    let mut tracker = Tracker::default();
    let (tx, mut rx) = mpsc::channel(RESULTS_QUEUE);
    let mut probes = JoinSet::new();
    for s in services {
        tracker.add(s.name, s.weight, SERVICE_FALL, SERVICE_RISE);
        probes.spawn(service_loop(ctx.clone(), s, tx.clone()));
    }
    for c in checks {
        tracker.add(&c.name, c.weight, c.fall, c.rise);
        probes.spawn(check_loop(c, tx.clone()));
    }
    drop(tx);
    let mut unready_now = unready(&ctx);
    publish(&tracker, configured, &unready_now, &out);
    let mut ready_tick = tokio::time::interval(READY_EVERY);
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            r = rx.recv() => {
                let Some(r) = r else { break };
                tracker.report(&r.name, r.ok, r.detail);
                publish(&tracker, configured, &unready_now, &out);
            }
            _ = ready_tick.tick() => {
                let now = unready(&ctx);
                if now != unready_now {
                    unready_now = now;
                    publish(&tracker, configured, &unready_now, &out);
                }
            }
        }
    }
    probes.abort_all();
}

fn publish(
    tracker: &Tracker,
    configured: u8,
    unready: &Option<String>,
    out: &watch::Sender<Tracking>,
) {
    let now = Tracking {
        verdict: tracker.verdict(configured),
        items: tracker.snapshot(),
        unready: unready.clone(),
    };
    out.send_if_modified(|t| {
        let changed = *t != now;
        *t = now;
        changed
    });
}

/// Whether this node can serve what the VIP brings: its HTTP balancer has
/// a backend up (when it has any), its pooler knows a primary. A master
/// that came back used to take the VIP before its health checks had found
/// the web nodes up, and answered 503 for half a second (the drill).
fn unready(ctx: &NodeContext) -> Option<String> {
    let http = ctx.roles.http_balancer.borrow().clone();
    if let Some(h) = http {
        let backends = h.pool.view();
        if !backends.is_empty() && !backends.iter().any(|b| b.state == "UP") {
            return Some("no HTTP backend is up yet".into());
        }
    }
    let pooler = ctx.roles.pooler.borrow().clone();
    if pooler.is_some_and(|p| p.router().primary().is_none()) {
        return Some("the pooler knows no PostgreSQL primary yet".into());
    }
    None
}

async fn service_loop(ctx: Arc<NodeContext>, probe: ServiceProbe, tx: mpsc::Sender<Outcome>) {
    let mut tick = tokio::time::interval(SERVICE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let (ok, detail) = probe_service(&ctx, &probe).await;
        let r = Outcome {
            name: probe.name.to_owned(),
            ok,
            detail,
        };
        if tx.send(r).await.is_err() {
            return;
        }
    }
}

/// Healthy = the supervisor has the service running and its listener
/// accepts a connection: a hung or stopped balancer fails the second part.
/// The pooler must also know a primary.
async fn probe_service(ctx: &NodeContext, probe: &ServiceProbe) -> (bool, String) {
    let state = ctx
        .health
        .snapshot()
        .services
        .get(probe.service)
        .map(|s| s.state);
    if state != Some(ServiceState::Running) {
        let state = state.map_or("not started".to_owned(), |s| format!("{s:?}"));
        return (false, format!("service {} is {state}", probe.service));
    }
    let ip = match ctx.identity.address {
        IpAddr::V4(a) if a.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        a => a,
    };
    let addr = SocketAddr::new(ip, probe.port);
    if probe.service == "pooler" {
        // A pooler that accepts but knows no primary fails every write.
        let pooler = ctx.roles.pooler.borrow().clone();
        if pooler.is_some_and(|p| p.router().primary().is_none()) {
            return (false, "the pooler knows no PostgreSQL primary".into());
        }
    }
    match tokio::time::timeout(SERVICE_TIMEOUT, tokio::net::TcpStream::connect(addr)).await {
        Ok(Ok(_)) => (true, format!("{addr} accepts")),
        Ok(Err(e)) => (false, format!("{addr}: {e}")),
        Err(_) => (false, format!("{addr}: no answer in {SERVICE_TIMEOUT:?}")),
    }
}

async fn check_loop(check: VrrpCheck, tx: mpsc::Sender<Outcome>) {
    let mut tick = tokio::time::interval(check.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let (ok, detail) = run_check(&check).await;
        let r = Outcome {
            name: check.name.clone(),
            ok,
            detail,
        };
        if tx.send(r).await.is_err() {
            return;
        }
    }
}

/// Runs the command without a shell; a check that overruns its timeout
/// has failed and is killed (keepalived's hung track scripts are a
/// classic cause of flapping).
async fn run_check(check: &VrrpCheck) -> (bool, String) {
    let Some((program, args)) = check.command.split_first() else {
        return (false, "empty command".into());
    };
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true);
    let child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return (false, format!("{program}: {e}")),
    };
    let mut child = child;
    match tokio::time::timeout(check.timeout, child.wait()).await {
        Ok(Ok(status)) if status.success() => (true, "exit 0".into()),
        Ok(Ok(status)) => (false, format!("{status}")),
        Ok(Err(e)) => (false, format!("{program}: {e}")),
        Err(_) => {
            let _ = child.kill().await;
            (false, format!("no exit in {:?}", check.timeout))
        }
    }
}
