//! L4 TCP services of the balancer role (HAProxy's `mode tcp`, e.g. in front
//! of Redis or a database cluster): each `[[balancer.tcp]]` service listens
//! on the VIP and the node's address and tunnels every client connection to
//! one healthy backend of its own pool.
//!
//! - `handle`: the per-service handle the status page reads (pool, counters).
//! - `listen`: binding, with `IP_FREEBIND` for a VIP not held yet.
//! - `serve`: accept loops and checker of one service, usable without a node.
//! - `conn`: one client: pool slot, connect with one retry, tunnel.
//! - `tunnel`: the byte pump with counters and the idle timeout.
//! - `check`: TCP connect health checks.
//!
//! `run` is the node service: it binds every service, publishes the handles
//! in `ctx.roles.tcp_services`, and returns `Ok` when a reload changes the
//! TCP settings or the VIP, for the supervisor to start it again.

mod check;
mod conn;
mod handle;
mod serve;
mod tunnel;

use std::sync::Arc;

use anyhow::Context as _;
use serde_json::json;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::balancer::listen::bind_front;
pub use crate::balancer::listen::{bind_listener, listen_addrs};
pub use check::check;
pub use handle::{Handle, TcpBackendStats, TcpStats};
pub use serve::{EventSink, serve_service};

use crate::balancer::pool::PoolEvent;
use crate::node::context::{NodeContext, Running};

const COMPONENT: &str = "balancer";

pub async fn run(ctx: Arc<NodeContext>) -> anyhow::Result<()> {
    let running = ctx.running();
    let key = settings_key(&running);
    let services = running
        .plan
        .settings
        .balancer
        .as_ref()
        .map(|b| b.tcp.clone())
        .unwrap_or_default();
    // Bind everything first: a port in use fails the whole start, with
    // nothing left half running.
    let mut bound = Vec::with_capacity(services.len());
    for service in services {
        let front = bind_front(running.config.vip, ctx.identity.address, service.port)
            .with_context(|| format!("tcp service {}: cannot listen", service.name))?;
        if let Some((addr, e)) = &front.vip_unavailable {
            ctx.events.warning(
                "balancer",
                format!(
                    "tcp service {}: not listening on the VIP {addr} ({e}): another process on this machine holds it; serving on the node address",
                    service.name
                ),
                json!({"service": service.name, "vip": addr.to_string()}),
            );
        }
        bound.push((Handle::new(service), front.listeners));
    }
    let stop = CancellationToken::new();
    let _published = Published::new(&ctx, bound.iter().map(|(h, _)| h.clone()).collect());
    let events = event_sink(&ctx);
    let mut services = JoinSet::new();
    for (handle, listeners) in bound {
        tracing::info!(service = %handle.name, port = handle.port, "tcp service listening");
        services.spawn(serve_service(
            listeners,
            handle,
            events.clone(),
            stop.clone(),
        ));
    }
    ctx.wait_for_restart(|r| settings_key(r) != key).await;
    stop.cancel();
    // Listeners closed before returning, so the restart can bind again.
    while services.join_next().await.is_some() {}
    Ok(())
}

/// What a restart depends on; compared as JSON since the config model has
/// `Serialize` but no `PartialEq`.
fn settings_key(running: &Running) -> String {
    let tcp = running.plan.settings.balancer.as_ref().map(|b| &b.tcp);
    serde_json::to_string(&(running.config.vip, tcp)).unwrap_or_default()
}

/// Until the node stops or a reload changes what `key` covers.
/// The handles on the status page while the services run; an empty list
/// from the moment they stop, on every path out of `run`.
struct Published<'a>(&'a NodeContext);

impl<'a> Published<'a> {
    fn new(ctx: &'a NodeContext, handles: Vec<Arc<Handle>>) -> Published<'a> {
        ctx.roles.tcp_services.send_replace(handles);
        Published(ctx)
    }
}

impl Drop for Published<'_> {
    fn drop(&mut self) {
        self.0.roles.tcp_services.send_replace(Vec::new());
    }
}

/// Backend up/down (and drains ending) as node events; a service left with
/// no backend up is an error, since its clients are now refused.
fn event_sink(ctx: &NodeContext) -> EventSink {
    let events = ctx.events.clone();
    Arc::new(move |handle: &Handle, event: &PoolEvent| {
        let service = &handle.name;
        match event {
            PoolEvent::Up { name } => events.info(
                COMPONENT,
                format!("tcp service {service}: backend {name} is up"),
                json!({"service": service, "backend": name}),
            ),
            PoolEvent::Down { name, reason } => {
                events.warning(
                    COMPONENT,
                    format!("tcp service {service}: backend {name} is down: {reason}"),
                    json!({"service": service, "backend": name, "reason": reason}),
                );
                if !handle.pool.view().iter().any(|b| b.state == "UP") {
                    events.error(
                        COMPONENT,
                        format!("tcp service {service}: no backend is up, clients are refused"),
                        json!({"service": service}),
                    );
                }
            }
            PoolEvent::Removed { name } => events.info(
                COMPONENT,
                format!("tcp service {service}: backend {name} removed"),
                json!({"service": service, "backend": name}),
            ),
            PoolEvent::Leaving { name, in_flight } => events.info(
                COMPONENT,
                format!(
                    "tcp service {service}: backend {name} leaving, {in_flight} connections left"
                ),
                json!({"service": service, "backend": name, "in_flight": in_flight}),
            ),
            // Never for a tcp service (`pool_settings`: no panic routing).
            PoolEvent::Added { .. }
            | PoolEvent::PanicStarted { .. }
            | PoolEvent::PanicEnded { .. } => {}
        }
    })
}
