//! `Pooler`: everything the client sessions of one pooler share. One per
//! running balancer role; sessions hold an `Arc` to it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use arc_swap::ArcSwap;
use tokio::sync::Notify;
use tokio_rustls::TlsAcceptor;

use super::backends::{Backend, Router};
use super::cancel::CancelMap;
use super::pool::{Pools, UserPool};
use super::prepared::Registry;
use super::route::{Classified, FunctionCache, classify, classify_fast};
use super::settings::PoolerSettings;

/// Distinct statements kept interned across all clients.
const REGISTRY_BOUND: usize = 20_000;

pub struct Pooler {
    pub settings: ArcSwap<PoolerSettings>,
    pub pools: Pools,
    pub backends: Arc<Vec<Arc<Backend>>>,
    pub cancels: CancelMap,
    pub statements: Registry,
    /// Function volatility from the primary's pg_proc, per database: each
    /// database has its own functions (and extensions), so a name is only
    /// ever looked up in the catalog of the client's database. A database
    /// not loaded yet has none: every call of a function the built-in list
    /// does not know is then "unknown", which routes to the primary.
    pub catalogs: ArcSwap<HashMap<String, Arc<FunctionCache>>>,
    /// Parsed classifications, per database, per query text.
    classified: Mutex<HashMap<String, HashMap<String, Classified>>>,
    /// Client connections open now (bounded by max_client_conn).
    pub clients: AtomicU32,
    pub clients_total: AtomicU64,
    pub tls: Option<TlsAcceptor>,
    pub server_tls: Option<Arc<rustls::ClientConfig>>,
    /// PAUSE: no new server leases until RESUME.
    pub paused: AtomicBool,
    pub resumed: Notify,
    /// Live clients for SHOW CLIENTS.
    pub client_list: Mutex<HashMap<u64, Arc<ClientInfo>>>,
    next_client: AtomicU64,
    pub started: Instant,
}

/// Parsed classifications kept per query text. The fast path needs no
/// cache; a query that needs the parser costs tens of microseconds, and an
/// application sends the same few texts over and over.
const CLASSIFIED_BOUND: usize = 4096;

/// What SHOW CLIENTS shows about one client.
pub struct ClientInfo {
    pub id: u64,
    pub user: String,
    pub database: String,
    pub addr: SocketAddr,
    pub connected: Instant,
    pub application_name: String,
    pub tls: bool,
    /// 0 idle, 1 active (holds a server), 2 waiting.
    pub state: AtomicU32,
    pub pid: i32,
}

impl ClientInfo {
    pub const IDLE: u32 = 0;
    pub const ACTIVE: u32 = 1;
    pub const WAITING: u32 = 2;

    pub fn state_name(&self) -> &'static str {
        match self.state.load(Ordering::Relaxed) {
            ClientInfo::ACTIVE => "active",
            ClientInfo::WAITING => "waiting",
            _ => "idle",
        }
    }
}

impl Pooler {
    pub fn new(
        settings: PoolerSettings,
        tls: Option<TlsAcceptor>,
        server_tls: Option<Arc<rustls::ClientConfig>>,
    ) -> Pooler {
        let backends = Arc::new(
            settings
                .backends
                .iter()
                .map(|b| Arc::new(Backend::new(b)))
                .collect(),
        );
        Pooler {
            pools: Pools::new(settings.pg.max_wait_clients),
            settings: ArcSwap::from_pointee(settings),
            backends,
            cancels: CancelMap::default(),
            statements: Registry::new(REGISTRY_BOUND),
            catalogs: ArcSwap::from_pointee(HashMap::new()),
            classified: Mutex::new(HashMap::new()),
            clients: AtomicU32::new(0),
            clients_total: AtomicU64::new(0),
            tls,
            server_tls,
            paused: AtomicBool::new(false),
            resumed: Notify::new(),
            client_list: Mutex::new(HashMap::new()),
            next_client: AtomicU64::new(1),
            started: Instant::now(),
        }
    }

    /// Where a query sent to `database` may run, and whether it leaves
    /// session state.
    pub fn classify(&self, database: &str, sql: &str) -> Classified {
        if let Some(c) = classify_fast(sql) {
            return c;
        }
        let lock = || self.classified.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = lock().get(database).and_then(|texts| texts.get(sql)) {
            return *c;
        }
        let catalogs = self.catalogs.load();
        let c = match catalogs.get(database) {
            Some(catalog) => classify(sql, &**catalog),
            None => classify(sql, &FunctionCache::empty()),
        };
        let mut cache = lock();
        if cache.values().map(HashMap::len).sum::<usize>() >= CLASSIFIED_BOUND {
            cache.clear();
        }
        cache
            .entry(database.to_string())
            .or_default()
            .insert(sql.to_string(), c);
        c
    }

    /// A new function catalog for `database`: its cached classifications
    /// may have changed.
    pub fn set_catalog(&self, database: &str, catalog: FunctionCache) {
        let catalog = Arc::new(catalog);
        self.catalogs.rcu(|all| {
            let mut all = HashMap::clone(all);
            all.insert(database.to_string(), catalog.clone());
            all
        });
        self.classified
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(database);
    }

    pub fn router(&self) -> Router<'_> {
        Router {
            backends: &self.backends,
            max_lag_bytes: self.settings.load().pg.max_lag_bytes,
        }
    }

    pub fn pool(&self, database: &str, user: &str) -> Arc<UserPool> {
        let s = self.settings.load();
        self.pools.get_or_create(database, user, || {
            let pool = UserPool::new(
                database,
                user,
                s.pool_mode(database, user),
                s.pool_size(database),
                s.pg.min_pool_size,
            );
            if let Some(super::super::auth::Secret::Md5(h)) = s.users.get(user).map(|u| &u.secret) {
                if let Ok(mut c) = pool.credentials.lock() {
                    c.md5 = Some(*h);
                }
            }
            if user == s.service_user {
                if let Ok(mut c) = pool.credentials.lock() {
                    c.scram = s.service_keys.clone();
                }
            }
            pool
        })
    }

    pub fn add_client(&self, info: ClientInfoInit) -> Arc<ClientInfo> {
        let id = self.next_client.fetch_add(1, Ordering::Relaxed);
        let info = Arc::new(ClientInfo {
            id,
            user: info.user,
            database: info.database,
            addr: info.addr,
            connected: Instant::now(),
            application_name: info.application_name,
            tls: info.tls,
            state: AtomicU32::new(ClientInfo::IDLE),
            pid: info.pid,
        });
        self.client_list
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, info.clone());
        info
    }

    pub fn remove_client(&self, id: u64) {
        self.client_list
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
    }

    pub fn client_snapshot(&self) -> Vec<Arc<ClientInfo>> {
        let mut v: Vec<_> = self
            .client_list
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        v.sort_by_key(|c| c.id);
        v
    }
}

pub struct ClientInfoInit {
    pub user: String,
    pub database: String,
    pub addr: SocketAddr,
    pub application_name: String,
    pub tls: bool,
    pub pid: i32,
}
