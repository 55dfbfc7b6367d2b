//! Runs each internal service as its own task and restarts it when it fails,
//! with backoff, recording each failure as an event. A panic in a service is
//! a failure like any other: it must not take the node down.
//!
//! A service is an async function that runs until the node stops. It returns
//! `Ok(())` early to ask for an immediate restart (e.g. to rebind a socket
//! after the config changed) and `Err` when it failed.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::task::JoinSet;

use super::backoff::Backoff;
use super::context::NodeContext;
use super::events::now_ms;
use super::health::{ServiceHealth, ServiceState};

pub type ServiceResult = anyhow::Result<()>;

pub struct Supervisor {
    ctx: Arc<NodeContext>,
    tasks: JoinSet<()>,
}

impl Supervisor {
    pub fn new(ctx: Arc<NodeContext>) -> Supervisor {
        Supervisor {
            ctx,
            tasks: JoinSet::new(),
        }
    }

    /// Starts `service` under supervision; `make` is called for every start.
    pub fn spawn<F, Fut>(&mut self, name: &'static str, make: F)
    where
        F: Fn(Arc<NodeContext>) -> Fut + Send + 'static,
        Fut: Future<Output = ServiceResult> + Send + 'static,
    {
        let ctx = self.ctx.clone();
        self.tasks.spawn(supervise(name, ctx, make));
    }

    /// Waits for every service to stop after shutdown was signalled; those
    /// still running after `grace` are aborted. Returns the names of none:
    /// the count of aborted services, for the log.
    pub async fn join(mut self, grace: Duration) -> usize {
        let deadline = tokio::time::sleep(grace);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                next = self.tasks.join_next() => {
                    if next.is_none() {
                        return 0;
                    }
                }
                _ = &mut deadline => {
                    let left = self.tasks.len();
                    self.tasks.abort_all();
                    return left;
                }
            }
        }
    }
}

async fn supervise<F, Fut>(name: &'static str, ctx: Arc<NodeContext>, make: F)
where
    F: Fn(Arc<NodeContext>) -> Fut + Send + 'static,
    Fut: Future<Output = ServiceResult> + Send + 'static,
{
    let mut backoff = Backoff::default();
    let mut health = ServiceHealth {
        name: name.to_owned(),
        state: ServiceState::Starting,
        restarts: 0,
        last_error: None,
        since_ms: now_ms(),
    };
    let mut held = ctx.held.subscribe();
    loop {
        if is_held(&mut held, name) {
            set_state(&ctx, &mut health, ServiceState::Stopped);
            if !wait_released(&ctx, &mut held, name).await {
                return;
            }
        }
        set_state(&ctx, &mut health, ServiceState::Running);
        let started = Instant::now();
        // A task of its own, so that a panic surfaces as a JoinError here.
        let mut task = tokio::spawn(make(ctx.clone()));
        let outcome = tokio::select! {
            outcome = &mut task => outcome,
            _ = wait_held(&mut held, name) => {
                // An operator's stop: the task's listeners close with it;
                // connections it handed off finish on their own.
                task.abort();
                let _ = task.await;
                ctx.roles.withdraw(name);
                ctx.events.info(name, format!("{name} stopped by the operator"), json!({"service": name}));
                continue;
            }
        };
        ctx.roles.withdraw(name);
        if ctx.shutdown.is_cancelled() {
            set_state(&ctx, &mut health, ServiceState::Stopped);
            return;
        }
        let error = match outcome {
            Ok(Ok(())) => {
                tracing::info!(service = name, "restarting to apply a change");
                continue;
            }
            Ok(Err(e)) => format!("{e:#}"),
            Err(join) if join.is_panic() => format!("panicked: {}", panic_text(join)),
            Err(join) => format!("task ended: {join}"),
        };
        let wait = backoff.after_failure(started.elapsed());
        health.restarts += 1;
        health.last_error = Some(error.clone());
        set_state(&ctx, &mut health, ServiceState::Restarting);
        ctx.events.error(
            name,
            format!(
                "{name} failed: {error}; restarting in {}",
                humantime::format_duration(wait)
            ),
            json!({"service": name, "error": error, "restart_in_ms": wait.as_millis() as u64,
                   "restarts": health.restarts}),
        );
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = ctx.shutdown.cancelled() => {
                set_state(&ctx, &mut health, ServiceState::Stopped);
                return;
            }
        }
    }
}

type Held = tokio::sync::watch::Receiver<std::collections::BTreeSet<String>>;

fn is_held(held: &mut Held, name: &str) -> bool {
    held.borrow_and_update().contains(name)
}

/// Resolves when an operator stops `name`.
async fn wait_held(held: &mut Held, name: &str) {
    loop {
        if is_held(held, name) {
            return;
        }
        if held.changed().await.is_err() {
            return std::future::pending().await;
        }
    }
}

/// Waits until an operator starts `name` again; false if the node stops.
async fn wait_released(ctx: &NodeContext, held: &mut Held, name: &str) -> bool {
    loop {
        if !is_held(held, name) {
            return true;
        }
        tokio::select! {
            _ = ctx.shutdown.cancelled() => return false,
            r = held.changed() => if r.is_err() { return false },
        }
    }
}

fn set_state(ctx: &NodeContext, health: &mut ServiceHealth, state: ServiceState) {
    health.state = state;
    health.since_ms = now_ms();
    ctx.health.set_service(health.clone());
}

fn panic_text(join: tokio::task::JoinError) -> String {
    let payload = join.into_panic();
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gluster::status::{StorageHandle, StorageStatus};
    use tokio::sync::watch;

    fn publish(ctx: &NodeContext) {
        let status = StorageStatus::new("piha".into(), "/srv/www".into());
        let (_tx, rx) = watch::channel(Arc::new(status));
        ctx.roles.storage.send_replace(Some(Arc::new(StorageHandle {
            status: rx,
            answers: watch::channel(Default::default()).1,
        })));
    }

    /// A role that publishes its handle and then never returns: only an
    /// abort ends it, as an operator's stop does.
    async fn publishes_and_waits(ctx: Arc<NodeContext>) -> ServiceResult {
        publish(&ctx);
        std::future::pending::<()>().await;
        Ok(())
    }

    async fn panics_after_publishing(ctx: Arc<NodeContext>) -> ServiceResult {
        publish(&ctx);
        panic!("a bug in the role");
    }

    async fn until(mut what: impl FnMut() -> bool) -> bool {
        for _ in 0..200 {
            if what() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        false
    }

    /// A node context whose supervisor runs `service` as "storage".
    struct Rig {
        ctx: Arc<NodeContext>,
        supervisor: Supervisor,
        _dir: tempfile::TempDir,
        _worker: crate::store::StoreWorker,
    }

    fn rig<F, Fut>(service: F) -> Rig
    where
        F: Fn(Arc<NodeContext>) -> Fut + Send + 'static,
        Fut: Future<Output = ServiceResult> + Send + 'static,
    {
        let dir = tempfile::tempdir().expect("tempdir");
        let (ctx, worker) = crate::status::vrrp::tests::context(dir.path());
        let ctx = Arc::new(ctx);
        let mut supervisor = Supervisor::new(ctx.clone());
        supervisor.spawn("storage", service);
        Rig {
            ctx,
            supervisor,
            _dir: dir,
            _worker: worker,
        }
    }

    impl Rig {
        async fn stop(self) {
            self.ctx.shutdown.cancel();
            self.supervisor.join(Duration::from_millis(100)).await;
        }
    }

    #[tokio::test]
    async fn a_stopped_role_leaves_nothing_on_the_page() {
        let rig = rig(publishes_and_waits);
        let ctx = rig.ctx.clone();
        assert!(until(|| ctx.roles.storage.borrow().is_some()).await);

        ctx.held.send_modify(|h| {
            h.insert("storage".into());
        });
        assert!(
            until(|| ctx.roles.storage.borrow().is_none()).await,
            "the stopped role's status is still published"
        );
        // Started again, it publishes again.
        ctx.held.send_modify(|h| {
            h.remove("storage");
        });
        assert!(until(|| ctx.roles.storage.borrow().is_some()).await);
        rig.stop().await;
    }

    #[tokio::test]
    async fn a_role_that_panicked_leaves_nothing_on_the_page() {
        let rig = rig(panics_after_publishing);
        let ctx = rig.ctx.clone();
        let failed = until(|| {
            ctx.health
                .snapshot()
                .services
                .get("storage")
                .is_some_and(|s| s.restarts >= 1)
        })
        .await;
        assert!(failed, "the panic was not seen as a failure");
        assert!(ctx.roles.storage.borrow().is_none());
        rig.stop().await;
    }
}
