//! The HTTP balancer as a node service: binds the front end on this node's
//! address and the VIP, keeps the backends in step with membership and the
//! cluster file (no restart for backend churn), records pool events, sets
//! the balancer role's health, and publishes its `Handle` for the status
//! page and admin API. Returns `Ok(())` to be restarted when a setting it
//! cannot change live (ports, limits, checks, algorithm, the VIP) changed.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use serde_json::json;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use super::desired::{Me, desired};
use super::threads::{self, Listener};
use super::{Handle, health_checks, serve};
use crate::balancer::listen::bind_front;
use crate::balancer::pool::{Desired, PoolEvent};
use crate::config::{BalancerSettings, Role};
use crate::node::context::{NodeContext, Running};
use crate::node::health::{RoleHealth, RoleState};

const COMPONENT: &str = "balancer";
/// Pool events that only `take_events` sees (drains ending) and the role's
/// health are looked at this often.
const TICK: Duration = Duration::from_millis(500);

/// The node service: plain HTTP, and HTTPS when `https_port` is set, with
/// the configured certificate or the node's self-signed one. A certificate
/// that cannot be loaded turns HTTPS off with a warning; HTTP keeps serving.
pub async fn run(ctx: Arc<NodeContext>) -> anyhow::Result<()> {
    let settings = ctx.running().plan.settings.balancer.clone();
    let tls = match settings.filter(|s| s.https_port.is_some()) {
        Some(s) => match crate::web::tls::node_acceptor(&ctx, s.tls.as_ref(), COMPONENT) {
            Ok(acceptor) => Some(acceptor),
            Err(e) => {
                ctx.events.warning(
                    COMPONENT,
                    format!("HTTPS front end off: {e:#}"),
                    json!({"error": format!("{e:#}")}),
                );
                None
            }
        },
        None => None,
    };
    run_with_tls(ctx, tls).await
}

/// With `tls`, also serves HTTPS on `https_port` (when set).
pub async fn run_with_tls(ctx: Arc<NodeContext>, tls: Option<TlsAcceptor>) -> anyhow::Result<()> {
    let running = ctx.running();
    let Some(settings) = running.plan.settings.balancer.clone() else {
        return idle_until_change(&ctx).await;
    };
    let fixed = Fixed::of(&running, &settings);
    let handle = Handle::new(&settings);
    let stop = ctx.shutdown.child_token();
    let mut listeners = Vec::new();
    let mut bound = Vec::new();
    for listener in front(&ctx, &fixed, settings.http_port, "HTTP")? {
        bound.push(format!("http://{}", local(&listener)));
        listeners.push(Listener {
            listener,
            tls: None,
        });
    }
    if let (Some(acceptor), Some(port)) = (tls, settings.https_port) {
        for listener in front(&ctx, &fixed, port, "HTTPS")? {
            bound.push(format!("https://{}", local(&listener)));
            listeners.push(Listener {
                listener,
                tls: Some(acceptor.clone()),
            });
        }
    }
    let mut tasks = JoinSet::new();
    tasks.spawn(threads::run(listeners, handle.clone(), stop.clone()));
    // Aborted when dropped: an operator's stop aborts this whole task.
    let checks =
        super::check::AbortOnDrop(tokio::spawn(health_checks(handle.clone(), stop.clone())));
    let _published = Published::new(&ctx, handle.clone());
    ctx.events.info(
        COMPONENT,
        format!("HTTP balancer listening on {}", bound.join(", ")),
        json!({
            "listen": bound,
            "algorithm": settings.algorithm.name(),
            "threads": handle.front_threads(),
        }),
    );
    let mut shell = Shell {
        ctx: ctx.clone(),
        handle: handle.clone(),
        last: None,
        health: None,
        started: tokio::time::Instant::now(),
    };
    shell.resync(&running, &settings);
    let outcome = shell.watch(&fixed, &mut tasks).await;
    stop.cancel();
    drop(checks);
    let _ = tokio::time::timeout(serve::DRAIN, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    handle.wait_idle(serve::DRAIN).await;
    shell.record_events();
    outcome
}

/// Not a balancer node: nothing to do until the plan changes.
async fn idle_until_change(ctx: &NodeContext) -> anyhow::Result<()> {
    let mut config = ctx.config.clone();
    tokio::select! {
        _ = ctx.shutdown.cancelled() => {}
        _ = config.changed() => {}
    }
    Ok(())
}

/// What cannot change without rebinding or rebuilding the balancer.
#[derive(Debug, PartialEq)]
struct Fixed {
    vip: Option<IpAddr>,
    /// The settings minus `backends` (followed live) and what other parts
    /// of the balancer role own (VRRP priority, TCP services).
    settings: serde_json::Value,
}

impl Fixed {
    fn of(running: &Running, settings: &BalancerSettings) -> Fixed {
        let mut own = settings.clone();
        own.backends.clear();
        own.tcp.clear();
        own.priority = 0;
        Fixed {
            vip: running.config.vip.map(|net| net.addr()),
            settings: serde_json::to_value(&own).unwrap_or_default(),
        }
    }
}

/// The listeners on `port`: this node's address, and the VIP unless another
/// process on this machine holds it (then a warning).
fn front(
    ctx: &NodeContext,
    fixed: &Fixed,
    port: u16,
    what: &str,
) -> anyhow::Result<Vec<tokio::net::TcpListener>> {
    let vip = fixed.vip.map(ipnet::IpNet::from);
    let front = bind_front(vip, ctx.identity.address, port)
        .with_context(|| format!("cannot listen for {what} on port {port}"))?;
    if let Some((addr, e)) = &front.vip_unavailable {
        ctx.events.warning(
            COMPONENT,
            format!(
                "{what}: not listening on the VIP {addr} ({e}): another process on this machine holds it; serving on the node address"
            ),
            json!({"vip": addr.to_string()}),
        );
    }
    Ok(front.listeners)
}

fn local(listener: &tokio::net::TcpListener) -> String {
    listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| "?".to_owned())
}

struct Shell {
    ctx: Arc<NodeContext>,
    handle: Arc<Handle>,
    /// The desired set last applied: membership republishes often, the
    /// pool is synced only when the answer changes.
    last: Option<Vec<Desired>>,
    health: Option<(RoleState, String)>,
    started: tokio::time::Instant,
}

impl Shell {
    async fn watch(
        &mut self,
        fixed: &Fixed,
        tasks: &mut JoinSet<std::io::Result<()>>,
    ) -> anyhow::Result<()> {
        let mut config = self.ctx.config.clone();
        let mut members = self.ctx.membership.subscribe();
        let mut tick = tokio::time::interval(TICK);
        loop {
            tokio::select! {
                _ = self.ctx.shutdown.cancelled() => return Ok(()),
                changed = config.changed() => {
                    if changed.is_err() {
                        return Ok(());
                    }
                    let running = config.borrow_and_update().clone();
                    let Some(settings) = running.plan.settings.balancer.clone() else {
                        return Ok(());
                    };
                    if Fixed::of(&running, &settings) != *fixed {
                        self.ctx.events.info(
                            COMPONENT,
                            "HTTP balancer settings changed; restarting it",
                            json!({}),
                        );
                        return Ok(());
                    }
                    self.resync(&running, &settings);
                }
                changed = members.changed() => {
                    if changed.is_err() {
                        return Ok(());
                    }
                    let running = self.ctx.running();
                    if let Some(settings) = running.plan.settings.balancer.clone() {
                        self.resync(&running, &settings);
                    }
                }
                _ = self.handle.events_ready() => self.record_events(),
                _ = tick.tick() => {
                    self.record_events();
                    self.set_health();
                }
                Some(ended) = tasks.join_next() => {
                    if self.ctx.shutdown.is_cancelled() {
                        return Ok(());
                    }
                    return match ended {
                        Ok(Ok(())) => Err(anyhow::anyhow!("an HTTP listener stopped")),
                        Ok(Err(e)) => Err(anyhow::Error::new(e).context("HTTP listener failed")),
                        Err(e) => Err(anyhow::anyhow!("HTTP listener task: {e}")),
                    };
                }
            }
        }
    }

    fn resync(&mut self, running: &Running, settings: &BalancerSettings) {
        let me = Me {
            hostname: &self.ctx.identity.hostname,
            address: self.ctx.identity.address,
            web_port: running
                .plan
                .roles
                .contains(&Role::Web)
                .then(|| running.plan.settings.web.as_ref().map(|w| w.port))
                .flatten(),
        };
        let view = self.ctx.membership.borrow().clone();
        let port_of = |host: &str| {
            let plan = running.config.plan_for(host).ok()?;
            plan.settings.web.map(|w| w.port)
        };
        let wanted = desired(&me, &view.members, port_of, &settings.backends);
        if self.last.as_ref() != Some(&wanted) {
            self.handle.sync(&wanted);
            self.last = Some(wanted);
            self.record_events();
        }
    }

    fn record_events(&self) {
        for event in self.handle.take_events() {
            record(&self.ctx, event);
        }
    }

    /// Healthy with a backend up; degraded without; starting while the
    /// first checks cannot have passed yet.
    fn set_health(&mut self) {
        let view = self.handle.pool().view();
        let up = view.iter().filter(|b| b.state == "UP").count();
        let hc = &self.handle.settings.health;
        let warmup = hc.interval * hc.rise.max(1) + hc.timeout;
        let (state, detail) = if up > 0 {
            (
                RoleState::Healthy,
                format!("HTTP: {up} of {} backends up", view.len()),
            )
        } else if self.started.elapsed() < warmup {
            (RoleState::Starting, "HTTP: checking backends".to_owned())
        } else if view.is_empty() {
            (RoleState::Degraded, "HTTP: no backends".to_owned())
        } else {
            (
                RoleState::Degraded,
                format!("HTTP: none of {} backends up", view.len()),
            )
        };
        if self.health.as_ref() != Some(&(state, detail.clone())) {
            self.ctx.health.set_role(RoleHealth {
                role: Role::Balancer,
                state,
                detail: detail.clone(),
            });
            self.health = Some((state, detail));
        }
    }
}

fn record(ctx: &NodeContext, event: PoolEvent) {
    let e = &ctx.events;
    match event {
        PoolEvent::Added { name, addr } => e.info(
            COMPONENT,
            format!("backend {name} ({addr}) added; checking it"),
            json!({"backend": name, "addr": addr.to_string()}),
        ),
        PoolEvent::Up { name } => e.info(
            COMPONENT,
            format!("backend {name} is up"),
            json!({"backend": name}),
        ),
        PoolEvent::Down { name, reason } => e.warning(
            COMPONENT,
            format!("backend {name} is down: {reason}"),
            json!({"backend": name, "reason": reason}),
        ),
        PoolEvent::Leaving { name, in_flight } => e.info(
            COMPONENT,
            format!("backend {name} left; draining {in_flight} requests in flight"),
            json!({"backend": name, "in_flight": in_flight}),
        ),
        PoolEvent::Removed { name } => e.info(
            COMPONENT,
            format!("backend {name} removed"),
            json!({"backend": name}),
        ),
        PoolEvent::PanicStarted { answering } => e.warning(
            COMPONENT,
            format!(
                "no backend is up; panic routing to those that still answer their checks: {}",
                answering.join(", ")
            ),
            json!({"answering": answering}),
        ),
        PoolEvent::PanicEnded { reason } => e.info(
            COMPONENT,
            format!("panic routing ended: {reason}"),
            json!({"reason": reason}),
        ),
    }
}

/// The handle is visible to the status page while this guard lives.
struct Published(Arc<NodeContext>);

impl Published {
    fn new(ctx: &Arc<NodeContext>, handle: Arc<Handle>) -> Published {
        ctx.roles.http_balancer.send_replace(Some(handle));
        Published(ctx.clone())
    }
}

impl Drop for Published {
    fn drop(&mut self) {
        self.0.roles.http_balancer.send_replace(None);
    }
}
