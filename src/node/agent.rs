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
use super::{identity, notify, system_metrics};
use crate::cli::RunArgs;
use crate::config::{self, ClusterConfig, NodePlan};
use crate::store::{self, StoreConfig, StoreWorker};
use crate::{membership, status};

/// Services get this long to finish after SIGTERM before they are aborted;
/// piha.service's TimeoutStopSec leaves room above it.
const DRAIN: Duration = Duration::from_secs(10);
/// The store's last flush and close.
const STORE_CLOSE: Duration = Duration::from_secs(5);

/// Everything up to the point the node runs; errors here stop the start
/// with a message naming what is wrong.
pub async fn run(args: RunArgs) -> anyhow::Result<StoreWorker> {
    let path = config::find_config(args.config.as_deref())?;
    let config = config::load(&path)?;
    let hostname = match args.hostname {
        Some(h) => h,
        None => identity::system_hostname()?,
    };
    let plan = config.plan_for(&hostname)?;
    let address = identity::resolve_address(&plan, &config, args.address)?;
    std::fs::create_dir_all(&args.data_dir).with_context(|| {
        format!(
            "cannot create the data directory {}",
            args.data_dir.display()
        )
    })?;
    let (store, worker, opened) = store::open(&args.data_dir, store_config(&config))
        .with_context(|| format!("cannot open the event store in {}", args.data_dir.display()))?;
    let events = Events::new(store.clone(), &hostname);
    if let Some(r) = opened.recovered {
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
    let shutdown = CancellationToken::new();
    let ctx = Arc::new(NodeContext {
        identity: Identity {
            hostname: hostname.clone(),
            address,
            incarnation: rand::random::<u64>().max(1),
            started_at_ms: now_ms(),
            version: env!("CARGO_PKG_VERSION"),
            data_dir: args.data_dir.clone(),
        },
        config: config_rx,
        store: store.clone(),
        events: events.clone(),
        health,
        system: watch::channel(Arc::default()).0,
        membership: watch::channel(Arc::default()).0,
        reload: reload_tx,
        shutdown: shutdown.clone(),
    });
    let roles: Vec<&str> = plan.roles.iter().map(|r| r.name()).collect();
    events.info(
        "node",
        format!(
            "piha {} starting as {hostname} ({address}), roles: {}{}",
            ctx.identity.version,
            if roles.is_empty() {
                "none".to_owned()
            } else {
                roles.join(", ")
            },
            plan.from_pattern
                .as_ref()
                .map(|p| format!(" (joined by pattern {p})"))
                .unwrap_or_default()
        ),
        json!({"roles": roles, "config": path.display().to_string()}),
    );

    let mut supervisor = Supervisor::new(ctx.clone());
    supervisor.spawn("status", status::server::run);
    supervisor.spawn("membership", membership::service::run);
    supervisor.spawn("metrics", system_metrics::run);
    tokio::spawn(notify::watchdog(shutdown.clone()));

    let reason = serve_signals(&ctx, &config_tx, path, reload_rx).await?;
    events.info("node", format!("stopping ({reason})"), json!({}));
    notify::stopping();
    shutdown.cancel();
    let aborted = supervisor.join(DRAIN).await;
    if aborted > 0 {
        tracing::warn!("{aborted} services did not stop within {DRAIN:?} and were aborted");
    }
    events.info("node", "stopped", json!({}));
    if let Err(e) = store.flush().await {
        tracing::warn!("last flush of the event store failed: {e}");
    }
    Ok(worker)
}

/// Closes the store after the runtime is done with it (joins its thread).
pub fn close_store(worker: StoreWorker) {
    if let Err(e) = worker.shutdown(STORE_CLOSE) {
        tracing::warn!("closing the event store: {e}");
    }
}

/// Waits for a stop signal, reloading on SIGHUP and on admin API requests
/// meanwhile. Returns which signal stopped the node.
async fn serve_signals(
    ctx: &Arc<NodeContext>,
    config_tx: &watch::Sender<Arc<Running>>,
    path: PathBuf,
    mut reload_rx: mpsc::Receiver<super::reload::ReloadRequest>,
) -> anyhow::Result<&'static str> {
    let mut term = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    let mut hup = signal(SignalKind::hangup()).context("cannot watch SIGHUP")?;
    loop {
        tokio::select! {
            _ = term.recv() => return Ok("SIGTERM"),
            _ = int.recv() => return Ok("SIGINT"),
            _ = hup.recv() => {
                apply_reload(ctx, config_tx, &path, "SIGHUP", None);
            }
            Some(request) = reload_rx.recv() => {
                apply_reload(ctx, config_tx, &path, "admin API", Some(request.reply));
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
    if let Some(next) = next {
        ctx.store.set_config(store_config(&next.config));
        ctx.health.retain_roles(|r| next.plan.roles.contains(&r));
        set_role_health(&ctx.health, &next.plan);
        config_tx.send_replace(next);
    }
    notify::ready("running");
    if let Some(reply) = reply {
        let _ = reply.send(outcome);
    }
}

/// Roles arrive with later releases; until then the plan's roles are shown
/// as what they are, planned but not in this build.
fn set_role_health(health: &HealthBoard, plan: &NodePlan) {
    for role in &plan.roles {
        health.set_role(RoleHealth {
            role: *role,
            state: RoleState::NotBuilt,
            detail: "planned for this node; not in this build of piha yet".to_owned(),
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
