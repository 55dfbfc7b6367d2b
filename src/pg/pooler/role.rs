//! The pooler as a node service of the balancer role: binds VIP:port and
//! the node's address, starts the prober, the idle-connection reaper and the
//! function-catalog refresher, and serves clients until the node stops or a
//! reload changes where it listens or which servers it knows. Other
//! changes (users, limits, pool sizes for new pools) apply in place.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::prober::{self, ProbeEvent, ProbeSettings};
use super::server::Credentials;
use super::settings::PoolerSettings;
use super::shared::Pooler;
use crate::balancer::listen::bind_front;
use crate::config::PgTls;
use crate::node::context::{NodeContext, Running};

const COMPONENT: &str = "pooler";
/// How often idle server connections are looked at.
const REAP_EVERY: Duration = Duration::from_secs(5);
/// How often function volatility is read again from the primary (new
/// functions are routed to the primary until then, which is safe).
const CATALOG_EVERY: Duration = Duration::from_secs(60);
/// SHOW STATS' averages cover the last one to two of these (PgBouncer's
/// `stats_period`).
pub const STATS_PERIOD: Duration = Duration::from_secs(15);

pub async fn run(ctx: Arc<NodeContext>) -> anyhow::Result<()> {
    let running = ctx.running();
    let key = restart_key(&running);
    let settings = PoolerSettings::from_config(&running.config);
    if settings.backends.is_empty() {
        // No db node and no static backend: nothing to pool.
        wait_for_change(&ctx, &key, None).await;
        return Ok(());
    }
    let front = bind_front(running.config.vip, ctx.identity.address, settings.pg.port)
        .with_context(|| {
            format!(
                "postgres pooler: cannot listen on port {}",
                settings.pg.port
            )
        })?;
    if let Some((addr, e)) = &front.vip_unavailable {
        ctx.events.warning(
            COMPONENT,
            format!(
                "not listening on the VIP {addr} ({e}): another process on this machine holds it"
            ),
            json!({"vip": addr.to_string()}),
        );
    }
    let tls = match &settings.pg.tls {
        PgTls::Off => None,
        PgTls::NodeCert => Some(crate::web::tls::node_acceptor(&ctx, None, COMPONENT)?),
        PgTls::Files(files) => Some(crate::web::tls::node_acceptor(
            &ctx,
            Some(files),
            COMPONENT,
        )?),
    };
    let server_tls = settings.pg.server_tls.then(super::tls::prefer_config);
    let mut pooler = Pooler::new(settings, tls, server_tls);
    // RELOAD on the admin console re-reads the cluster file, as SIGHUP does.
    pooler.reload = Some(ctx.reload.clone());
    let pooler = Arc::new(pooler);
    ctx.roles.pooler.send_replace(Some(pooler.clone()));
    let stop = CancellationToken::new();
    let tasks = start(pooler.clone(), front.listeners, events(&ctx), stop.clone());
    ctx.events.info(
        COMPONENT,
        format!(
            "postgres pooler listening on port {} for {} servers",
            pooler.settings.load().pg.port,
            pooler.backends.len()
        ),
        json!({}),
    );
    wait_for_change(&ctx, &key, Some(&pooler)).await;
    ctx.roles.pooler.send_replace(None);
    stop.cancel();
    drop(tasks);
    Ok(())
}

/// Starts everything of a pooler on bound listeners; usable without a node
/// (tests, benchmarks). Dropping the returned set aborts client sessions.
pub fn start(
    pooler: Arc<Pooler>,
    listeners: Vec<TcpListener>,
    sink: prober::ProbeSink,
    stop: CancellationToken,
) -> JoinSet<()> {
    let mut tasks = JoinSet::new();
    let s = pooler.settings.load();
    let probe = Arc::new(ProbeSettings {
        interval: s.pg.probe.interval,
        timeout: s.pg.probe.timeout,
        fall: s.pg.probe.fall,
        user: s.service_user.clone(),
        database: s.service_database.clone(),
        credentials: Credentials {
            scram: s.service_keys.clone(),
            md5: None,
        },
        max_lag_bytes: s.pg.max_lag_bytes,
        tcp_user_timeout: s.pg.tcp_user_timeout,
    });
    let sink: prober::ProbeSink = {
        let pooler = pooler.clone();
        Arc::new(move |e: ProbeEvent| {
            pooler.note_backends_changed();
            sink(e)
        })
    };
    tasks.spawn(prober::run(
        pooler.backends.clone(),
        probe,
        sink,
        stop.clone(),
    ));
    tasks.spawn(reaper(pooler.clone(), stop.clone()));
    tasks.spawn(stats_periods(pooler.clone(), stop.clone()));
    tasks.spawn(super::catalog_loader::run(
        pooler.clone(),
        CATALOG_EVERY,
        stop.clone(),
    ));
    for listener in listeners {
        tasks.spawn(accept(pooler.clone(), listener, stop.clone()));
    }
    tasks
}

async fn accept(pooler: Arc<Pooler>, listener: TcpListener, stop: CancellationToken) {
    let mut clients = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => break,
            a = listener.accept() => a,
            // Reap finished sessions so the set does not grow.
            Some(_) = clients.join_next(), if !clients.is_empty() => continue,
        };
        match accepted {
            Ok((tcp, peer)) => {
                clients.spawn(super::client::serve(pooler.clone(), tcp, peer));
            }
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(error = %e, "pooler accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    // Stop accepting at once; give sessions a moment to finish a
    // transaction, then abort the rest (their servers are closed).
    drop(listener);
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while clients.join_next().await.is_some() {}
    })
    .await;
}

async fn reaper(pooler: Arc<Pooler>, stop: CancellationToken) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(REAP_EVERY) => {}
        }
        let idle_timeout = pooler.settings.load().pg.server_idle_timeout;
        for pool in pooler.pools.all() {
            for conn in pool.reap_idle(idle_timeout) {
                tokio::spawn(conn.terminate());
            }
        }
    }
}

async fn stats_periods(pooler: Arc<Pooler>, stop: CancellationToken) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(STATS_PERIOD) => {}
        }
        pooler.rotate_stats();
    }
}

fn events(ctx: &NodeContext) -> prober::ProbeSink {
    let events = ctx.events.clone();
    Arc::new(move |e: ProbeEvent| match e {
        ProbeEvent::Role { backend, role } => events.info(
            COMPONENT,
            format!("PostgreSQL {backend} is up as {}", role.name()),
            json!({"backend": backend, "role": role.name()}),
        ),
        ProbeEvent::Down { backend, error } => events.warning(
            COMPONENT,
            format!("PostgreSQL {backend} is down: {error}"),
            json!({"backend": backend, "error": error}),
        ),
    })
}

/// What needs a restart: where it listens and which servers exist.
fn restart_key(running: &Running) -> String {
    let pg = &running.config.postgres;
    let settings = PoolerSettings::from_config(&running.config);
    let backends: Vec<_> = settings.backends.iter().map(|b| b.addr).collect();
    serde_json::to_string(&(
        running.config.vip,
        pg.port,
        &pg.tls,
        pg.server_tls,
        backends,
        &pg.service,
        &pg.probe,
    ))
    .unwrap_or_default()
}

/// Until a change that needs a restart; other changes are stored into the
/// running pooler, which reads its settings per client.
async fn wait_for_change(ctx: &NodeContext, key: &str, pooler: Option<&Arc<Pooler>>) {
    ctx.wait_for_restart(|running| {
        if restart_key(running) != key {
            return true;
        }
        if let Some(p) = pooler {
            p.settings
                .store(Arc::new(PoolerSettings::from_config(&running.config)));
        }
        false
    })
    .await;
}
