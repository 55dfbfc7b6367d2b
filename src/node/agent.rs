//! The node agent's life: load the plan, open the store, start every service
//! under supervision, serve signals (SIGHUP reloads, SIGTERM/SIGINT stop),
//! and stop everything within a bounded time.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use serde_json::json;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use super::context::{Identity, NodeContext, Running};
use super::events::{Events, now_ms};
use super::health::{HealthBoard, RoleHealth, RoleState};
use super::reload::{ReloadOutcome, reload};
use super::supervisor::Supervisor;
use super::unconfigured::{Setup, wait_for_setup};
use super::{identity, notify, system_metrics};
use crate::cli::RunArgs;
use crate::config::{self, ClusterConfig, NodePlan, Role};
use crate::store::{self, Recovery, Store, StoreConfig, StoreWorker};
use crate::{membership, status};

/// Services get this long to finish after SIGTERM before they are aborted;
/// piha.service's TimeoutStopSec leaves room above it.
const DRAIN: Duration = Duration::from_secs(10);
/// The store's last flush and close.
const STORE_CLOSE: Duration = Duration::from_secs(5);

/// A node that has started: what `serve_signals` and `stop` need.
struct Started {
    ctx: Arc<NodeContext>,
    supervisor: Supervisor,
    config_tx: watch::Sender<Arc<Running>>,
    reload_rx: mpsc::Receiver<super::reload::ReloadRequest>,
    config_path: PathBuf,
    worker: StoreWorker,
}

/// Runs the node until SIGTERM or SIGINT; returns the store's worker for the
/// caller to close once the runtime is done.
/// `None` when the node was stopped before it could start (it was waiting
/// for its owner to fix the cluster file or the hostname: `unconfigured`).
pub async fn run(args: RunArgs) -> anyhow::Result<Option<StoreWorker>> {
    if let Setup::Stopped = wait_for_setup(&args).await? {
        return Ok(None);
    }
    let mut node = start(args)?;
    let reason = serve_signals(&mut node).await?;
    Ok(Some(stop(node, reason).await))
}

/// Everything up to the point the node runs; errors here stop the start
/// with a message naming what is wrong.
fn start(args: RunArgs) -> anyhow::Result<Started> {
    let config_path = config::find_config(args.config.as_deref())?;
    let config = config::load(&config_path)?;
    let hostname = match args.hostname {
        Some(h) => h,
        None => identity::system_hostname()?,
    };
    let plan = config.plan_for(&hostname)?;
    let address = identity::resolve_address(&plan, &config, args.address)?;
    let (store, worker, recovered) = open_store(&args.data_dir, &config)?;
    let events = Events::new(store.clone(), &hostname);
    if let Some(r) = recovered {
        events.error(
            "store",
            format!(
                "the event store was unusable ({}); moved it aside to {} and started a fresh one",
                r.reason,
                r.moved_to.display()
            ),
            json!({"moved_to": r.moved_to.display().to_string(), "reason": r.reason}),
        );
    }

    let health = HealthBoard::default();
    set_role_health(&health, &plan);
    let (config_tx, config_rx) = watch::channel(Arc::new(Running {
        config: Arc::new(config),
        plan: plan.clone(),
        loaded_at_ms: now_ms(),
    }));
    let (reload_tx, reload_rx) = mpsc::channel(4);
    let ctx = Arc::new(NodeContext {
        identity: Identity {
            hostname,
            address,
            incarnation: rand::random::<u64>().max(1),
            started_at_ms: now_ms(),
            version: env!("CARGO_PKG_VERSION"),
            data_dir: args.data_dir,
        },
        config: config_rx,
        store,
        events,
        health,
        system: watch::channel(Arc::default()).0,
        membership: watch::channel(Arc::default()).0,
        reload: reload_tx,
        shutdown: CancellationToken::new(),
        roles: Default::default(),
        held: Default::default(),
    });
    announce(&ctx, &plan, &config_path);

    let mut supervisor = Supervisor::new(ctx.clone());
    supervisor.spawn("status", status::server::run);
    supervisor.spawn("membership", membership::service::run);
    supervisor.spawn("metrics", system_metrics::run);
    spawn_roles(&mut supervisor, &plan);
    tokio::spawn(notify::watchdog(ctx.shutdown.clone()));
    Ok(Started {
        ctx,
        supervisor,
        config_tx,
        reload_rx,
        config_path,
        worker,
    })
}

fn open_store(
    data_dir: &std::path::Path,
    config: &ClusterConfig,
) -> anyhow::Result<(Store, StoreWorker, Option<Recovery>)> {
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("cannot create the data directory {}", data_dir.display()))?;
    let (store, worker, opened) = store::open(data_dir, store_config(config))
        .with_context(|| format!("cannot open the event store in {}", data_dir.display()))?;
    Ok((store, worker, opened.recovered))
}

fn announce(ctx: &NodeContext, plan: &NodePlan, config_path: &std::path::Path) {
    let id = &ctx.identity;
    let roles: Vec<&str> = plan.roles.iter().map(|r| r.name()).collect();
    let role_list = if roles.is_empty() {
        "none".to_owned()
    } else {
        roles.join(", ")
    };
    let by_pattern = plan
        .from_pattern
        .as_ref()
        .map(|p| format!(" (joined by pattern {p})"))
        .unwrap_or_default();
    ctx.events.info(
        "node",
        format!(
            "piha {} starting as {} ({}), roles: {role_list}{by_pattern}",
            id.version, id.hostname, id.address
        ),
        json!({"roles": roles, "config": config_path.display().to_string()}),
    );
}

/// Stops every service (bounded by `DRAIN`) and flushes the store.
async fn stop(node: Started, reason: &str) -> StoreWorker {
    let ctx = node.ctx;
    ctx.events
        .info("node", format!("stopping ({reason})"), json!({}));
    notify::stopping();
    ctx.shutdown.cancel();
    let aborted = node.supervisor.join(DRAIN).await;
    if aborted > 0 {
        tracing::warn!("{aborted} services did not stop within {DRAIN:?} and were aborted");
    }
    ctx.events.info("node", "stopped", json!({}));
    if let Err(e) = ctx.store.flush().await {
        tracing::warn!("last flush of the event store failed: {e}");
    }
    node.worker
}

/// Closes the store after the runtime is done with it (joins its thread).
pub fn close_store(worker: StoreWorker) {
    if let Err(e) = worker.shutdown(STORE_CLOSE) {
        tracing::warn!("closing the event store: {e}");
    }
}

/// Waits for a stop signal, reloading on SIGHUP and on admin API requests
/// meanwhile. Returns which signal stopped the node.
async fn serve_signals(node: &mut Started) -> anyhow::Result<&'static str> {
    let mut term = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    let mut hup = signal(SignalKind::hangup()).context("cannot watch SIGHUP")?;
    loop {
        tokio::select! {
            _ = term.recv() => return Ok("SIGTERM"),
            _ = int.recv() => return Ok("SIGINT"),
            _ = hup.recv() => {
                apply_reload(&node.ctx, &node.config_tx, &node.config_path, "SIGHUP", None);
            }
            Some(request) = node.reload_rx.recv() => {
                apply_reload(&node.ctx, &node.config_tx, &node.config_path, "admin API", Some(request.reply));
            }
        }
    }
}

fn apply_reload(
    ctx: &NodeContext,
    config_tx: &watch::Sender<Arc<Running>>,
    path: &std::path::Path,
    trigger: &str,
    reply: Option<oneshot::Sender<ReloadOutcome>>,
) {
    notify::reloading();
    let current = ctx.running();
    let (outcome, next) = reload(path, &ctx.identity.hostname, &current);
    // In force before it is reported: whoever reads the event sees the new
    // config.
    if let Some(next) = next {
        ctx.store.set_config(store_config(&next.config));
        config_tx.send_replace(next);
    }
    match &outcome {
        ReloadOutcome::Applied { from_hash, to_hash, changes } => {
            ctx.events.info(
                "config",
                format!(
                    "reloaded the cluster file on {trigger} ({from_hash} -> {to_hash}): {}",
                    changes.join("; ")
                ),
                json!({"from": from_hash, "to": to_hash, "changes": changes}),
            );
        }
        ReloadOutcome::Unchanged { hash } => ctx.events.info(
            "config",
            format!("{trigger}: the cluster file is unchanged ({hash})"),
            json!({}),
        ),
        ReloadOutcome::Rejected { error } => ctx.events.warning(
            "config",
            format!("{trigger}: kept the running config because the new cluster file is invalid:\n{error}"),
            json!({"error": error, "path": path.display().to_string()}),
        ),
    }
    notify::ready("running");
    if let Some(reply) = reply {
        let _ = reply.send(outcome);
    }
}

/// Each built role of the plan runs as a supervised service; it reports its
/// own health once running.
fn spawn_roles(supervisor: &mut Supervisor, plan: &NodePlan) {
    if plan.roles.contains(&Role::Web) {
        supervisor.spawn("web", crate::web::run);
    }
    if plan.roles.contains(&Role::Balancer) {
        supervisor.spawn("balancer-http", crate::balancer::http::run);
        supervisor.spawn("balancer-tcp", crate::balancer::tcp::run);
        supervisor.spawn("pooler", crate::pg::pooler::role::run);
        supervisor.spawn("vrrp", crate::vrrp::role::run);
        supervisor.spawn("failover", crate::pg::failover::service::run);
    }
    if plan.roles.contains(&Role::Db) {
        supervisor.spawn("db", crate::pg::supervisor::node::run);
    }
    if plan.roles.contains(&Role::Storage) {
        supervisor.spawn("storage", crate::gluster::role::run);
    }
}

/// Whether this build contains the role.
fn built(role: Role) -> bool {
    matches!(role, Role::Balancer | Role::Web | Role::Db | Role::Storage)
}

/// Built roles start as "starting" until their service reports; roles of
/// later releases are shown as what they are: planned, not in this build.
fn set_role_health(health: &HealthBoard, plan: &NodePlan) {
    for role in &plan.roles {
        let (state, detail) = if built(*role) {
            (RoleState::Starting, "starting")
        } else {
            (
                RoleState::NotBuilt,
                "planned for this node; not in this build of piha yet",
            )
        };
        health.set_role(RoleHealth {
            role: *role,
            state,
            detail: detail.to_owned(),
        });
    }
}

fn store_config(config: &ClusterConfig) -> StoreConfig {
    StoreConfig {
        retention: config.store.retention,
        max_bytes: config.store.max_bytes,
        flush_interval: config.store.flush_interval,
    }
}
