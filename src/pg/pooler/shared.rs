//! `Pooler`: everything the client sessions of one pooler share. One per
//! running balancer role; sessions hold an `Arc` to it.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use tokio::sync::Notify;
use tokio_rustls::TlsAcceptor;

use super::backends::{Backend, Router};
use super::cancel::CancelMap;
use super::pool::{Pools, ServerView, StatsSnapshot, UserPool};
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
    /// Set while anything is paused (the whole pooler or a database): the
    /// one check a lease pays when nothing is.
    pub paused: AtomicBool,
    pause: Mutex<PauseState>,
    pub resumed: Notify,
    /// Fired when the prober sees a server change role or go down: a
    /// request that no server could take (a failover under way) looks
    /// again at once instead of at its next retry.
    pub backends_changed: Notify,
    /// How many times `backends_changed` was fired. A lease reads it
    /// before trying (one load), so that a change during a failed try is
    /// not missed, without making a `Notified` on every lease.
    pub backend_events: AtomicU64,
    /// Live clients for SHOW CLIENTS.
    pub client_list: Mutex<HashMap<u64, Arc<ClientInfo>>>,
    next_client: AtomicU64,
    pub started: Instant,
    /// The node's reload channel (RELOAD on the admin console); `None`
    /// when the pooler runs without a node (tests, benchmarks).
    pub reload: Option<tokio::sync::mpsc::Sender<crate::node::reload::ReloadRequest>>,
    /// Per-database totals at the last two stats periods, for SHOW STATS'
    /// averages.
    stats_periods: Mutex<StatsPeriods>,
}

/// What PAUSE has stopped: everything, and/or some databases.
#[derive(Debug, Default, Clone)]
pub struct PauseState {
    pub all: bool,
    pub databases: BTreeSet<String>,
}

/// Totals per database taken at the last two `rotate_stats` calls.
#[derive(Default)]
struct StatsPeriods {
    older: Option<(Instant, HashMap<String, StatsSnapshot>)>,
    newer: Option<(Instant, HashMap<String, StatsSnapshot>)>,
}

/// Per-second rates and per-event means over the last stats period, as
/// PgBouncer's `avg_*` columns.
#[derive(Debug, Default, Clone, Copy)]
pub struct StatsAverages {
    pub server_assignments: u64,
    pub xact_count: u64,
    pub query_count: u64,
    pub bytes_received: u64,
    pub bytes_sent: u64,
    pub xact_time_us: u64,
    pub query_time_us: u64,
    pub wait_time_us: u64,
}

/// Parsed classifications kept per query text. The fast path needs no
/// cache; a query that needs the parser costs tens of microseconds, and an
/// application sends the same few texts over and over.
const CLASSIFIED_BOUND: usize = 4096;

/// How often a login that came before the first probes looks again.
const FIRST_PROBE_POLL: Duration = Duration::from_millis(20);

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
    /// This end of the client's connection.
    pub local: Option<SocketAddr>,
    /// When the client last asked for a server, and so (while waiting)
    /// since when it waits: microseconds since the pooler started.
    pub request_us: AtomicU64,
    /// The server connection it holds now (SHOW SERVERS' active rows; it
    /// belongs to the client's own pool).
    pub server: Mutex<Option<ServerView>>,
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

    pub fn linked(&self) -> Option<ServerView> {
        *lock(&self.server)
    }

    pub fn link(&self, server: Option<ServerView>) {
        *lock(&self.server) = server;
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Pooler {
    /// The prober saw a server change role or go down: counts it, then
    /// wakes the requests waiting for a server (`backends_changed`).
    pub fn note_backends_changed(&self) {
        self.backend_events.fetch_add(1, Ordering::SeqCst);
        self.backends_changed.notify_waiters();
    }

    /// Ends once the prober has declared `backend` down. A connect to a
    /// server that lost its power sees no RST, only SYNs going unanswered
    /// until `login_timeout`; raced against this, it is given up once the
    /// prober knows, and the request waits for a server that answers.
    pub async fn until_down(&self, backend: &Backend) {
        loop {
            // Made before the check: a notify_waiters() between the two
            // still wakes it.
            let changed = self.backends_changed.notified();
            if backend.role().is_none() {
                return;
            }
            changed.await;
        }
    }

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
            pause: Mutex::new(PauseState::default()),
            resumed: Notify::new(),
            backends_changed: Notify::new(),
            backend_events: AtomicU64::new(0),
            client_list: Mutex::new(HashMap::new()),
            next_client: AtomicU64::new(1),
            started: Instant::now(),
            reload: None,
            stats_periods: Mutex::new(StatsPeriods::default()),
        }
    }

    /// Microseconds since the pooler started, for `ClientInfo` clocks.
    pub fn micros(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.started).as_micros() as u64
    }

    /// Whether new leases for `database` must wait for RESUME.
    pub fn is_paused(&self, database: &str) -> bool {
        if !self.paused.load(Ordering::SeqCst) {
            return false;
        }
        let p = lock(&self.pause);
        p.all || p.databases.contains(database)
    }

    pub fn pause_state(&self) -> PauseState {
        lock(&self.pause).clone()
    }

    /// PAUSE (everything, or one database). Errors as PgBouncer's do:
    /// pausing while everything is paused already.
    pub fn pause(&self, database: Option<&str>) -> Result<(), String> {
        let mut p = lock(&self.pause);
        if p.all {
            return Err("already paused".into());
        }
        match database {
            None => p.all = true,
            Some(db) => {
                p.databases.insert(db.to_string());
            }
        }
        self.paused.store(true, Ordering::SeqCst);
        Ok(())
    }

    /// RESUME (everything, or one database); an error when that was not
    /// paused.
    pub fn resume(&self, database: Option<&str>) -> Result<(), String> {
        let mut p = lock(&self.pause);
        match database {
            None if !p.all => return Err("the pooler is not paused".into()),
            None => p.all = false,
            Some(db) if !p.databases.remove(db) => {
                return Err(format!("database {db} is not paused"));
            }
            Some(_) => {}
        }
        self.paused
            .store(p.all || !p.databases.is_empty(), Ordering::SeqCst);
        drop(p);
        self.resumed.notify_waiters();
        Ok(())
    }

    /// Server connections in use (or about to be) in `database`'s pools, or
    /// in all pools: zero once PAUSE has taken effect.
    pub fn busy_servers(&self, database: Option<&str>) -> u32 {
        self.pools
            .all()
            .iter()
            .filter(|p| database.is_none_or(|db| p.database == db))
            .map(|p| p.busy())
            .sum()
    }

    /// Current totals per database (its pools summed).
    pub fn totals_by_database(&self) -> std::collections::BTreeMap<String, StatsSnapshot> {
        let mut out = std::collections::BTreeMap::<String, StatsSnapshot>::new();
        for pool in self.pools.all() {
            out.entry(pool.database.clone())
                .or_default()
                .add(&pool.stats.snapshot());
        }
        out
    }

    /// Ends a stats period (called every `STATS_PERIOD` by the role).
    pub fn rotate_stats(&self) {
        let now = (
            Instant::now(),
            self.totals_by_database().into_iter().collect(),
        );
        let mut p = lock(&self.stats_periods);
        p.older = p.newer.take();
        p.newer = Some(now);
    }

    /// Averages of `database` over the time since the older of the last two
    /// period ends (since start before there is one).
    pub fn averages(&self, database: &str, current: &StatsSnapshot) -> StatsAverages {
        let p = lock(&self.stats_periods);
        let (since, base) = match p.older.as_ref().or(p.newer.as_ref()) {
            Some((at, totals)) => (*at, totals.get(database).copied().unwrap_or_default()),
            None => (self.started, StatsSnapshot::default()),
        };
        drop(p);
        let d = current.since(&base);
        let secs = since.elapsed().max(Duration::from_millis(1)).as_secs_f64();
        let rate = |n: u64| (n as f64 / secs) as u64;
        let mean = |total: u64, n: u64| total.checked_div(n).unwrap_or(0);
        StatsAverages {
            server_assignments: rate(d.server_assignments),
            xact_count: rate(d.xact_count),
            query_count: rate(d.query_count),
            bytes_received: rate(d.bytes_received),
            bytes_sent: rate(d.bytes_sent),
            xact_time_us: mean(d.xact_time_us, d.xact_count),
            query_time_us: mean(d.query_time_us, d.query_count),
            wait_time_us: mean(d.wait_time_us, d.server_assignments),
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

    /// How long the pooler's own login to one of several servers it tries
    /// in turn ([`Router::answering`]) may take: each but the last gets the
    /// probe's timeout, which a healthy server meets and a dead one would
    /// be counted down for, so that trying them all fits in one client's
    /// `login_timeout`; the last gets the whole of that.
    pub fn attempt_timeout(&self, last: bool) -> std::time::Duration {
        let pg = &self.settings.load().pg;
        if last {
            pg.login_timeout
        } else {
            pg.probe.timeout.min(pg.login_timeout)
        }
    }

    pub fn router(&self) -> Router<'_> {
        self.router_with(&self.settings.load())
    }

    /// [`Pooler::router`] for a caller that has loaded the settings
    /// already (a lease loads them once).
    pub fn router_with(&self, settings: &PoolerSettings) -> Router<'_> {
        Router {
            backends: &self.backends,
            max_lag_bytes: settings.pg.max_lag_bytes,
        }
    }

    /// [`Router::answering`], except right after the node starts: until
    /// the prober's first answers, no server is known to answer, yet the
    /// servers are most likely fine and only not asked yet. A login then
    /// waits for those answers (up to `login_timeout`) rather than being
    /// refused; PgBouncer, which connects on demand, would take it too.
    pub async fn answering_once_probed(&self) -> Vec<Arc<Backend>> {
        let deadline = tokio::time::Instant::now() + self.settings.load().pg.login_timeout;
        loop {
            let answering = self.router().answering();
            if !answering.is_empty()
                || self.backends.iter().all(|b| b.probed_yet())
                || tokio::time::Instant::now() >= deadline
            {
                return answering;
            }
            // A poll, not a notification: this only runs in the first
            // moments of a node's life, and a probe takes milliseconds.
            tokio::time::sleep(FIRST_PROBE_POLL).await;
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
            local: info.local,
            request_us: AtomicU64::new(0),
            server: Mutex::new(None),
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
    pub local: Option<SocketAddr>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::PostgresSettings;

    fn pooler() -> Pooler {
        Pooler::new(
            PoolerSettings {
                pg: PostgresSettings::default(),
                users: HashMap::new(),
                service_keys: None,
                service_user: "piha".into(),
                service_database: "postgres".into(),
                backends: Vec::new(),
            },
            None,
            None,
        )
    }

    #[test]
    fn pause_and_resume_everything_or_one_database() {
        let p = pooler();
        assert!(!p.is_paused("app"));
        p.pause(None).expect("pause");
        assert!(p.is_paused("app") && p.is_paused("other"));
        assert_eq!(p.pause(None), Err("already paused".into()));
        assert_eq!(p.pause(Some("app")), Err("already paused".into()));
        p.resume(None).expect("resume");
        assert!(!p.is_paused("app"));
        assert!(p.resume(None).is_err(), "not paused");

        p.pause(Some("app")).expect("pause app");
        assert!(p.is_paused("app") && !p.is_paused("other"));
        assert!(p.resume(Some("other")).is_err());
        p.resume(Some("app")).expect("resume app");
        assert!(
            !p.paused.load(Ordering::SeqCst),
            "the fast flag is down again"
        );
    }

    #[test]
    fn a_lease_in_flight_keeps_pause_waiting() {
        let p = pooler();
        let app = p.pool("app", "app");
        let _other = p.pool("other", "app");
        assert_eq!(p.busy_servers(None), 0);
        app.leasing.fetch_add(1, Ordering::SeqCst);
        assert_eq!(p.busy_servers(None), 1);
        assert_eq!(p.busy_servers(Some("app")), 1);
        assert_eq!(p.busy_servers(Some("other")), 0);
        app.leasing.fetch_sub(1, Ordering::SeqCst);
        assert_eq!(p.busy_servers(Some("app")), 0);
    }

    #[test]
    fn averages_are_rates_and_means_over_the_period() {
        let p = pooler();
        let app = p.pool("app", "app");
        p.rotate_stats();
        app.stats.query_count.store(10, Ordering::Relaxed);
        app.stats.query_time_us.store(5_000, Ordering::Relaxed);
        let now = p.totals_by_database()["app"];
        let a = p.averages("app", &now);
        assert_eq!(a.query_time_us, 500, "mean per query");
        assert!(a.query_count >= 10, "per second over under a second");
        assert_eq!(a.wait_time_us, 0, "no assignments, no mean");
    }
}
