//! The background prober: every backend, every interval, over one kept
//! connection per backend (a new login per probe would cost PostgreSQL a
//! fork each second). It is what makes a promotion done by hand visible
//! within an interval or two, and what keeps writes off a server in
//! recovery without any client paying for the check.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::backends::{Backend, PgRole, Router, parse_lsn};
use super::server::{ConnectParams, Credentials, ServerConn, connect};

/// `pg_current_wal_lsn()` fails on a standby, so the CASE picks the one
/// that applies (CASE evaluates only the branch taken for volatile calls).
pub const PROBE_SQL: &str = "SELECT pg_catalog.pg_is_in_recovery(), \
     CASE WHEN pg_catalog.pg_is_in_recovery() \
          THEN pg_catalog.pg_last_wal_replay_lsn() \
          ELSE pg_catalog.pg_current_wal_lsn() END";

/// A change worth an event on the node's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeEvent {
    /// First good probe, or a role change (a promotion shows up here).
    Role {
        backend: String,
        role: PgRole,
    },
    Down {
        backend: String,
        error: String,
    },
}

pub type ProbeSink = Arc<dyn Fn(ProbeEvent) + Send + Sync>;

pub struct ProbeSettings {
    pub interval: Duration,
    pub timeout: Duration,
    pub fall: u32,
    pub user: String,
    pub database: String,
    pub credentials: Credentials,
    pub max_lag_bytes: u64,
    /// For its kept connection, as for the pools' (see `connect`).
    pub tcp_user_timeout: Duration,
}

/// Probes every backend until `stop`.
pub async fn run(
    backends: Arc<Vec<Arc<Backend>>>,
    settings: Arc<ProbeSettings>,
    sink: ProbeSink,
    stop: CancellationToken,
) {
    let mut tasks = tokio::task::JoinSet::new();
    for b in backends.iter() {
        tasks.spawn(probe_one(
            b.clone(),
            backends.clone(),
            settings.clone(),
            sink.clone(),
            stop.clone(),
        ));
    }
    while tasks.join_next().await.is_some() {}
}

async fn probe_one(
    backend: Arc<Backend>,
    all: Arc<Vec<Arc<Backend>>>,
    s: Arc<ProbeSettings>,
    sink: ProbeSink,
    stop: CancellationToken,
) {
    let mut conn: Option<Box<ServerConn>> = None;
    let mut ticker = tokio::time::interval(s.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = ticker.tick() => {}
        }
        let started = Instant::now();
        let result = probe(&backend, &mut conn, &s).await;
        let event = record(&backend, result, started, s.fall);
        Router {
            backends: &all,
            max_lag_bytes: s.max_lag_bytes,
        }
        .update_lag();
        if let Some(e) = event {
            sink(e);
        }
    }
    if let Some(c) = conn {
        c.terminate().await;
    }
}

async fn probe(
    backend: &Backend,
    conn: &mut Option<Box<ServerConn>>,
    s: &ProbeSettings,
) -> Result<(PgRole, u64), String> {
    if conn.is_none() {
        let c = connect(ConnectParams {
            addr: backend.addr,
            user: &s.user,
            database: &s.database,
            startup: &[("application_name".to_string(), "piha-prober".to_string())],
            credentials: &s.credentials,
            timeout: s.timeout,
            tls: None,
            tcp_user_timeout: s.tcp_user_timeout,
        })
        .await
        .map_err(|e| e.to_string())?;
        *conn = Some(c);
    }
    let Some(c) = conn.as_mut() else {
        return Err("no connection".into());
    };
    let rows = match c.simple_query(PROBE_SQL, s.timeout).await {
        Ok(rows) => rows,
        Err(e) => {
            *conn = None;
            return Err(e.to_string());
        }
    };
    let row = rows.first().ok_or("the probe query returned no row")?;
    let in_recovery = match row.first().and_then(|v| v.as_deref()) {
        Some("t") => true,
        Some("f") => false,
        _ => return Err("the probe query returned no recovery state".into()),
    };
    let lsn = row
        .get(1)
        .and_then(|v| v.as_deref())
        .and_then(parse_lsn)
        .unwrap_or(0);
    let role = if in_recovery {
        PgRole::Standby
    } else {
        PgRole::Primary
    };
    Ok((role, lsn))
}

/// Applies one probe's outcome; returns the event, if the state changed.
fn record(
    backend: &Backend,
    result: Result<(PgRole, u64), String>,
    started: Instant,
    fall: u32,
) -> Option<ProbeEvent> {
    let mut p = backend.probed.lock().unwrap_or_else(|e| e.into_inner());
    match result {
        Ok((role, lsn)) => {
            let changed = p.role != Some(role);
            p.role = Some(role);
            p.lsn = lsn;
            p.failures = 0;
            p.last_error = None;
            p.last_ok = Some(Instant::now());
            p.probe_ms = started.elapsed().as_secs_f64() * 1000.0;
            changed.then(|| ProbeEvent::Role {
                backend: backend.name.clone(),
                role,
            })
        }
        Err(error) => {
            p.failures = p.failures.saturating_add(1);
            p.last_error = Some(error.clone());
            if p.failures >= fall && p.role.is_some() {
                p.role = None;
                return Some(ProbeEvent::Down {
                    backend: backend.name.clone(),
                    error,
                });
            }
            None
        }
    }
}
