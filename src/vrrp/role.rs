//! VRRP as a node service of the balancer role. The protocol runs on a
//! thread of its own (real-time scheduled when allowed), so a busy pooler or
//! proxy cannot delay an advert into a false failover; this service is its
//! node-side half: it starts the probes that feed tracking, logs the
//! thread's notices as events, runs notify commands, publishes the status,
//! and on stop or a config change waits for the thread's handover.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use super::instance::{self, Notice, Setup, Wiring};
use super::io::realtime::{self, Scheduling};
use super::machine::{self, AnnounceConfig};
use super::notify::Notifier;
use super::packet::Version;
use super::probes::{self, ServiceProbe, Tracking};
use super::status::VrrpStatus;
use super::track::Verdict;
use crate::config::{ClusterConfig, Role, VrrpMode, VrrpSettings, VrrpVersion};
use crate::node::context::{NodeContext, Running};

const COMPONENT: &str = "vrrp";
/// How long a stopping instance gets for its priority-0 advert and VIP
/// removal before the service gives up waiting.
const HANDOVER_GRACE: Duration = Duration::from_secs(2);

pub async fn run(ctx: Arc<NodeContext>) -> anyhow::Result<()> {
    let running = ctx.running();
    let key = restart_key(&running);
    let Some(setup) = setup(&ctx, &running) else {
        // No VIP, or this node has no balancer entry: nothing to elect.
        ctx.wait_for_restart(|r| restart_key(r) != key).await;
        return Ok(());
    };
    if ctx.identity.address.is_loopback() {
        // A one-machine cluster on 127.x: every node shares one stack, so
        // there is no LAN to elect on and the VIP must not be moved about.
        ctx.events.info(
            COMPONENT,
            "VRRP off: the node address is a loopback address (one-machine cluster)",
            json!({"address": ctx.identity.address.to_string()}),
        );
        ctx.wait_for_restart(|r| restart_key(r) != key).await;
        return Ok(());
    }
    let settings = &running.config.vrrp;
    let stop = CancellationToken::new();
    // However this function returns (an error included), the probes and
    // the thread are told to stop.
    let _stop_on_return = stop.clone().drop_guard();

    let (track_tx, track_rx) = watch::channel(Tracking {
        verdict: Verdict {
            priority: setup.machine.priority,
            fault: None,
        },
        items: Default::default(),
        unready: Some("not checked yet".into()),
    });
    let probes = tokio::spawn(probes::run(
        ctx.clone(),
        setup.machine.priority,
        service_probes(&running),
        settings.checks.clone(),
        track_tx,
        stop.clone(),
    ));

    let (status_tx, mut status_rx) = watch::channel(None);
    let (notice_tx, mut notices) = mpsc::channel(instance::NOTICE_QUEUE);
    let (done_tx, mut done) = oneshot::channel();
    let wiring = Wiring {
        tracking: track_rx,
        status: status_tx,
        notices: notice_tx,
        stop: stop.clone(),
    };
    let rt_priority = settings.realtime_priority.map(i32::from).unwrap_or(0);
    let thread_setup = setup.clone();
    let (thread, scheduling) = realtime::spawn("piha-vrrp", rt_priority, move || async move {
        let _ = done_tx.send(instance::run(thread_setup, wiring).await);
    })?;
    // Without a wanted priority the request above (priority 0) was refused
    // on purpose; say why in operator terms.
    let scheduling = match settings.realtime_priority {
        Some(_) => scheduling,
        None => Scheduling::Normal {
            why: "realtime_priority = false".into(),
        },
    };
    log_scheduling(&ctx, &scheduling, settings.realtime_priority);

    // keepalived passes an instance name without spaces; scripts split on them.
    let instance_name = format!("vrid-{}", setup.machine.vrid);
    let mut notifier = Notifier::new(settings.notify.clone(), instance_name);
    let mut config = ctx.config.clone();
    let result = loop {
        tokio::select! {
            _ = ctx.shutdown.cancelled() => break None,
            changed = config.changed() => {
                if changed.is_err() || restart_key(&config.borrow_and_update()) != key {
                    break None;
                }
            }
            r = &mut done => break Some(r.unwrap_or_else(|_| Err(anyhow::anyhow!("VRRP thread ended")))),
            Some(n) = notices.recv() => on_notice(&ctx, &mut notifier, n, &setup),
            Ok(()) = status_rx.changed() => {
                let s = status_rx.borrow_and_update().clone();
                ctx.roles.vrrp.send_replace(s.map(|s| with_scheduling(s, &scheduling)));
            }
        }
    };
    stop.cancel();
    let result = match result {
        Some(r) => r,
        None => match tokio::time::timeout(HANDOVER_GRACE, done).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(anyhow::anyhow!("VRRP thread ended")),
            Err(_) => Err(anyhow::anyhow!(
                "VRRP thread did not stop in {HANDOVER_GRACE:?}"
            )),
        },
    };
    // The last notices (the handover) still get logged.
    while let Ok(n) = notices.try_recv() {
        on_notice(&ctx, &mut notifier, n, &setup);
    }
    notifier.finish().await;
    let _ = probes.await;
    let _ = tokio::task::spawn_blocking(move || thread.join()).await;
    ctx.roles.vrrp.send_replace(None);
    result
}

/// The thread's scheduling is known here, not in the thread: fill it in.
fn with_scheduling(s: Arc<VrrpStatus>, scheduling: &Scheduling) -> Arc<VrrpStatus> {
    let mut s = (*s).clone();
    s.scheduling = scheduling_text(scheduling);
    Arc::new(s)
}

fn scheduling_text(s: &Scheduling) -> String {
    match s {
        Scheduling::Realtime { priority } => format!("SCHED_FIFO priority {priority}"),
        Scheduling::Normal { why } => format!("normal ({why})"),
    }
}

fn log_scheduling(ctx: &NodeContext, s: &Scheduling, wanted: Option<u8>) {
    if let (Scheduling::Normal { why }, Some(p)) = (s, wanted) {
        ctx.events.warning(
            COMPONENT,
            format!(
                "the VRRP thread runs without real-time priority {p} ({why}): a busy CPU may delay adverts"
            ),
            json!({"wanted": p, "why": why}),
        );
    }
}

fn on_notice(ctx: &NodeContext, notifier: &mut Notifier, n: Notice, setup: &Setup) {
    match n {
        Notice::Info(msg, details) => ctx.events.info(COMPONENT, msg, details),
        Notice::Warning(msg, details) => ctx.events.warning(COMPONENT, msg, details),
        Notice::Transition(t) => {
            let reason = serde_json::to_value(&t.reason).unwrap_or_default();
            ctx.events.info(
                COMPONENT,
                format!(
                    "{}: {} -> {} ({})",
                    name(setup),
                    t.from.name(),
                    t.to.name(),
                    reason_text(&reason)
                ),
                json!({"from": t.from, "to": t.to, "reason": reason}),
            );
            notifier.transition(t.to, setup.machine.priority, reason_text(&reason));
        }
    }
}

fn reason_text(reason: &serde_json::Value) -> String {
    let kind = reason["kind"].as_str().unwrap_or("unknown");
    match (reason.get("from"), reason.get("why")) {
        (Some(from), _) => format!("{kind} from {}", from.as_str().unwrap_or("?")),
        (_, Some(why)) => format!("{kind}: {}", why.as_str().unwrap_or("?")),
        _ => kind.to_owned(),
    }
}

fn name(setup: &Setup) -> String {
    format!("vrid {}", setup.machine.vrid)
}

/// The instance's settings from the config, or `None` when this node takes
/// no part in an election (no VIP, no balancer role).
fn setup(ctx: &NodeContext, running: &Running) -> Option<Setup> {
    let config = &running.config;
    let vip = config.vip?;
    let balancer = running.plan.settings.balancer.as_ref()?;
    let v = &config.vrrp;
    let node = ctx.identity.address;
    Some(Setup {
        machine: machine::Config {
            version: match v.version {
                VrrpVersion::V2 => Version::V2,
                VrrpVersion::V3 => Version::V3,
            },
            vrid: v.vrid,
            priority: balancer.priority,
            interval: v.interval,
            preempt: v.preempt,
            preempt_delay: v.preempt_delay,
            address: node,
            announce: AnnounceConfig {
                count: v.announce_count,
                gap: v.announce_gap,
                refresh: v.announce_refresh,
            },
        },
        interface: v.interface.clone(),
        node_address: node,
        vips: vec![vip],
        mode: peers_without(&v.mode, node),
        auth: v.auth.as_deref().map(auth_bytes),
        checksum: v.checksum,
        guard_exe: std::env::current_exe().ok(),
    })
}

fn peers_without(mode: &VrrpMode, me: IpAddr) -> VrrpMode {
    match mode {
        VrrpMode::Multicast => VrrpMode::Multicast,
        VrrpMode::Unicast { peers } => VrrpMode::Unicast {
            peers: peers.iter().copied().filter(|p| *p != me).collect(),
        },
    }
}

/// RFC 2338's authentication data: the password, zero padded to 8 bytes.
fn auth_bytes(pass: &str) -> [u8; 8] {
    let mut out = [0u8; 8];
    for (o, b) in out.iter_mut().zip(pass.bytes()) {
        *o = b;
    }
    out
}

/// The local services tracking watches: those this node runs.
fn service_probes(running: &Running) -> Vec<ServiceProbe> {
    let config = &running.config;
    let v = &config.vrrp;
    let mut out = Vec::new();
    if let (Some(weight), Some(b)) = (v.track_http, running.plan.settings.balancer.as_ref()) {
        out.push(ServiceProbe {
            name: "http_balancer",
            service: "balancer-http",
            port: b.http_port,
            weight,
        });
    }
    if let Some(weight) = v.track_pooler.filter(|_| has_pooler(config)) {
        out.push(ServiceProbe {
            name: "pooler",
            service: "pooler",
            port: config.postgres.port,
            weight,
        });
    }
    out
}

/// The pooler only listens when there is something to pool.
fn has_pooler(config: &ClusterConfig) -> bool {
    !crate::pg::pooler::settings::PoolerSettings::from_config(config)
        .backends
        .is_empty()
}

/// What, when changed, restarts the instance (with a handover).
fn restart_key(running: &Running) -> String {
    let priority = running.plan.settings.balancer.as_ref().map(|b| b.priority);
    let is_balancer = running.plan.roles.contains(&Role::Balancer);
    serde_json::to_string(&(
        running.config.vip,
        vrrp_key(&running.config.vrrp),
        priority,
        is_balancer,
    ))
    .unwrap_or_default()
}

fn vrrp_key(v: &VrrpSettings) -> String {
    // `auth` is not serialized (a secret); compare it separately.
    let visible = serde_json::to_string(v).unwrap_or_default();
    format!("{visible}{:?}", v.auth.as_deref().map(auth_bytes))
}
