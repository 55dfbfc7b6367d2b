//! The Postgres pooler's part of the status API and of /metrics: the
//! backends as the prober sees them and the pools with their counters, in
//! one documented shape (docs/api.md) taken from the running `Pooler`.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use serde_json::{Value, json};

use crate::node::context::NodeContext;
use crate::node::events::now_ms;
use crate::pg::pooler::backends::format_lsn;
use crate::pg::pooler::client::login::ADMIN_DATABASE;
use crate::pg::pooler::shared::{ClientInfo, Pooler};

/// What the page, the API and /metrics show of one pooler, read once.
#[derive(Debug, Clone)]
pub struct PoolerView {
    pub port: u16,
    pub pool_mode: &'static str,
    pub paused: bool,
    pub paused_databases: Vec<String>,
    pub clients: ClientCounts,
    pub backends: Vec<BackendRow>,
    pub pools: Vec<PoolRow>,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct ClientCounts {
    pub active: u32,
    pub waiting: u32,
    pub idle: u32,
    /// Connections open now, logging-in ones included.
    pub total: u32,
    pub max: u32,
    pub connections_total: u64,
}

#[derive(Debug, Clone)]
pub struct BackendRow {
    pub name: String,
    pub address: String,
    /// "primary", "standby" or "down".
    pub role: &'static str,
    pub lsn: Option<String>,
    pub lag_bytes: Option<u64>,
    pub outstanding: u32,
    pub routed_total: u64,
    /// Reads that could not get a connection here and went elsewhere.
    pub redispatched_total: u64,
    pub failures: u32,
    pub probe_ms: f64,
    pub last_ok_ms: Option<i64>,
    pub last_error: Option<String>,
}

#[derive(Debug, Clone)]
pub struct PoolRow {
    pub database: String,
    pub user: String,
    pub mode: &'static str,
    pub size: u32,
    pub min_size: u32,
    pub active: u32,
    pub idle: u32,
    pub connecting: u32,
    pub clients: u32,
    pub waiting: u32,
    pub max_wait_ms: u64,
    pub transactions_total: u64,
    pub queries_total: u64,
    pub wait_seconds_total: f64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub server_connects_total: u64,
}

/// The running pooler, if this node runs one.
pub fn running(ctx: &NodeContext) -> Option<Arc<Pooler>> {
    ctx.roles.pooler.borrow().clone()
}

/// `pooler` of `/api/v1/status`: null when this node runs no pooler.
pub fn section(ctx: &NodeContext) -> Option<Value> {
    running(ctx).map(|p| to_json(&view(&p)))
}

pub fn view(pooler: &Pooler) -> PoolerView {
    let settings = pooler.settings.load();
    let pause = pooler.pause_state();
    let now = Instant::now();
    let now_us = pooler.micros(now);
    let wall_ms = now_ms();
    let clients = pooler.client_snapshot();

    let mut counts = ClientCounts {
        total: pooler.clients.load(Ordering::Relaxed),
        max: settings.pg.max_client_conn,
        connections_total: pooler.clients_total.load(Ordering::Relaxed),
        ..ClientCounts::default()
    };
    for c in &clients {
        match c.state.load(Ordering::Relaxed) {
            ClientInfo::ACTIVE => counts.active += 1,
            ClientInfo::WAITING => counts.waiting += 1,
            _ => counts.idle += 1,
        }
    }

    let backends = pooler
        .backends
        .iter()
        .map(|b| {
            let p = b.snapshot();
            let lag = b.lag_bytes.load(Ordering::Relaxed);
            BackendRow {
                name: b.name.clone(),
                address: b.addr.to_string(),
                role: p.role.map_or("down", |r| r.name()),
                lsn: (p.lsn > 0).then(|| format_lsn(p.lsn)),
                lag_bytes: (lag != u64::MAX).then_some(lag),
                outstanding: b.outstanding.load(Ordering::Relaxed),
                routed_total: b.routed.load(Ordering::Relaxed),
                redispatched_total: b.redispatched.load(Ordering::Relaxed),
                failures: p.failures,
                probe_ms: p.probe_ms,
                last_ok_ms: p
                    .last_ok
                    .map(|at| wall_ms - now.saturating_duration_since(at).as_millis() as i64),
                last_error: p.last_error,
            }
        })
        .collect();

    let pools = pooler
        .pools
        .all()
        .iter()
        .filter(|p| p.database != ADMIN_DATABASE)
        .map(|pool| {
            let (mut active, mut idle, mut connecting) = (0, 0, 0);
            for slot in pool.view() {
                active += slot.active;
                idle += slot.idle;
                connecting += slot.connecting;
            }
            let mine = clients
                .iter()
                .filter(|c| c.database == pool.database && c.user == pool.user);
            let (mut n, mut waiting, mut max_wait_us) = (0, 0, 0u64);
            for c in mine {
                n += 1;
                if c.state.load(Ordering::Relaxed) == ClientInfo::WAITING {
                    waiting += 1;
                    let since = c.request_us.load(Ordering::Relaxed);
                    max_wait_us = max_wait_us.max(now_us.saturating_sub(since));
                }
            }
            let s = pool.stats.snapshot();
            PoolRow {
                database: pool.database.clone(),
                user: pool.user.clone(),
                mode: pool.mode.name(),
                size: pool.size,
                min_size: pool.min_size,
                active,
                idle,
                connecting,
                clients: n,
                waiting,
                max_wait_ms: max_wait_us / 1000,
                transactions_total: s.xact_count,
                queries_total: s.query_count,
                wait_seconds_total: s.wait_time_us as f64 / 1e6,
                bytes_in: s.bytes_received,
                bytes_out: s.bytes_sent,
                server_connects_total: s.server_connects,
            }
        })
        .collect();

    PoolerView {
        port: settings.pg.port,
        pool_mode: settings.pg.pool_mode.name(),
        paused: pause.all,
        paused_databases: pause.databases.into_iter().collect(),
        clients: counts,
        backends,
        pools,
    }
}

pub fn to_json(v: &PoolerView) -> Value {
    let backends: Vec<Value> = v
        .backends
        .iter()
        .map(|b| {
            json!({
                "name": b.name,
                "address": b.address,
                "role": b.role,
                "lsn": b.lsn,
                "lag_bytes": b.lag_bytes,
                "outstanding": b.outstanding,
                "routed_total": b.routed_total,
                "redispatched_total": b.redispatched_total,
                "failures": b.failures,
                "probe_ms": b.probe_ms,
                "last_ok_ms": b.last_ok_ms,
                "last_error": b.last_error,
            })
        })
        .collect();
    let pools: Vec<Value> = v
        .pools
        .iter()
        .map(|p| {
            json!({
                "database": p.database,
                "user": p.user,
                "mode": p.mode,
                "size": p.size,
                "min_size": p.min_size,
                "server_connections": {
                    "active": p.active,
                    "idle": p.idle,
                    "connecting": p.connecting,
                },
                "clients": p.clients,
                "waiting": p.waiting,
                "max_wait_ms": p.max_wait_ms,
                "transactions_total": p.transactions_total,
                "queries_total": p.queries_total,
                "wait_seconds_total": p.wait_seconds_total,
                "bytes_in": p.bytes_in,
                "bytes_out": p.bytes_out,
                "server_connects_total": p.server_connects_total,
            })
        })
        .collect();
    let c = &v.clients;
    json!({
        "port": v.port,
        "pool_mode": v.pool_mode,
        "paused": v.paused,
        "paused_databases": v.paused_databases,
        "clients": {
            "active": c.active,
            "waiting": c.waiting,
            "idle": c.idle,
            "total": c.total,
            "max": c.max,
            "connections_total": c.connections_total,
        },
        "backends": backends,
        "pools": pools,
    })
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::config::PostgresSettings;
    use crate::pg::pooler::backends::PgRole;
    use crate::pg::pooler::settings::{BackendAddr, PoolerSettings};
    use crate::pg::pooler::shared::ClientInfoInit;

    fn pooler() -> Pooler {
        let backends = ["pg-1", "pg-2"]
            .iter()
            .enumerate()
            .map(|(i, name)| BackendAddr {
                name: (*name).into(),
                addr: format!("127.0.0.{}:5433", i + 1).parse().expect("addr"),
            })
            .collect();
        let settings = PoolerSettings {
            pg: PostgresSettings::default(),
            users: Default::default(),
            service_keys: None,
            service_user: "piha".into(),
            service_database: "postgres".into(),
            backends,
        };
        let pooler = Pooler::new(settings, None, None);
        if let Ok(mut p) = pooler.backends[0].probed.lock() {
            p.role = Some(PgRole::Primary);
            p.lsn = 0x16_B374_D848;
        }
        pooler.router().update_lag();
        pooler.backends[0].routed.store(7, Ordering::Relaxed);
        pooler.backends[0].redispatched.store(2, Ordering::Relaxed);
        pooler
    }

    /// A view with a primary, a backend that is down, and one pool with a
    /// waiting client: what the metrics test encodes.
    pub fn sample_view() -> PoolerView {
        let mut v = view(&pooler());
        v.pools.push(PoolRow {
            database: "app".into(),
            user: "app".into(),
            mode: "transaction",
            size: 20,
            min_size: 0,
            active: 1,
            idle: 2,
            connecting: 0,
            clients: 3,
            waiting: 1,
            max_wait_ms: 40,
            transactions_total: 5,
            queries_total: 9,
            wait_seconds_total: 1.5,
            bytes_in: 10,
            bytes_out: 20,
            server_connects_total: 3,
        });
        v.clients.waiting = 1;
        v
    }

    #[test]
    fn the_section_shows_roles_lag_pools_and_clients() {
        let p = pooler();
        let pool = p.pool("app", "app");
        pool.stats.xact_count.store(4, Ordering::Relaxed);
        pool.stats.query_count.store(6, Ordering::Relaxed);
        pool.stats.wait_time_us.store(2_500_000, Ordering::Relaxed);
        let info = p.add_client(ClientInfoInit {
            user: "app".into(),
            database: "app".into(),
            addr: "127.0.0.9:40000".parse().expect("addr"),
            application_name: "psql".into(),
            tls: false,
            pid: 1,
            local: None,
        });
        info.state.store(ClientInfo::WAITING, Ordering::Relaxed);
        p.pause(Some("app")).expect("pause");

        let doc = to_json(&view(&p));
        assert_eq!(doc["port"], 5432);
        assert_eq!(doc["pool_mode"], "transaction");
        assert_eq!(doc["paused"], false);
        assert_eq!(doc["paused_databases"], json!(["app"]));
        let b = &doc["backends"];
        assert_eq!(b[0]["role"], "primary");
        assert_eq!(b[0]["lsn"], "16/B374D848");
        assert_eq!(b[0]["lag_bytes"], 0);
        assert_eq!(b[0]["routed_total"], 7);
        assert_eq!(b[0]["redispatched_total"], 2);
        assert_eq!(b[1]["role"], "down");
        assert_eq!(b[1]["lsn"], Value::Null);
        assert_eq!(b[1]["lag_bytes"], Value::Null);
        let pool = &doc["pools"][0];
        assert_eq!(pool["database"], "app");
        assert_eq!(pool["mode"], "transaction");
        assert_eq!(pool["size"], 20);
        assert_eq!(pool["clients"], 1);
        assert_eq!(pool["waiting"], 1);
        assert_eq!(pool["transactions_total"], 4);
        assert_eq!(pool["queries_total"], 6);
        assert_eq!(pool["wait_seconds_total"], 2.5);
        assert_eq!(
            pool["server_connections"],
            json!({"active": 0, "idle": 0, "connecting": 0})
        );
        assert_eq!(doc["clients"]["waiting"], 1);
        assert_eq!(doc["clients"]["max"], 2000);
    }
}
