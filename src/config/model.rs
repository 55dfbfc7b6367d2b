//! The validated cluster file: what every other module reads. Nothing here is
//! raw user input any more; `load` has checked it and said where it was wrong.
//! A running node holds one `Arc<ClusterConfig>` snapshot at a time and swaps
//! it whole on reload, never mutating it in place.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;
use serde::Serialize;

/// The roles a node can hold. Order is the order they are shown in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Balancer,
    Web,
    Db,
    Storage,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Balancer, Role::Web, Role::Db, Role::Storage];

    pub fn name(self) -> &'static str {
        match self {
            Role::Balancer => "balancer",
            Role::Web => "web",
            Role::Db => "db",
            Role::Storage => "storage",
        }
    }

    pub fn from_name(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.name() == s)
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The whole cluster file after validation.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterConfig {
    /// Shown on every status page; peers with another name are ignored so two
    /// clusters on one LAN never merge.
    pub name: String,
    /// The virtual IP the balancer nodes share (with its prefix length).
    pub vip: Option<IpNet>,
    /// Bearer token for admin endpoints that change something. `None` means
    /// those endpoints are refused outright (reads stay open).
    #[serde(skip)]
    pub admin_token: Option<String>,
    pub defaults: Defaults,
    pub membership: MembershipSettings,
    pub store: StoreSettings,
    pub metrics: MetricsSettings,
    /// The Postgres pooler/router (defaults when the file has no `[postgres]`).
    pub postgres: PostgresSettings,
    /// How the balancer nodes elect the VIP's holder (defaults when the file
    /// has no `[vrrp]`).
    pub vrrp: VrrpSettings,
    /// How the db nodes run PostgreSQL (defaults when the file has no `[db]`).
    pub db: DbClusterSettings,
    /// The Gluster volume of the storage nodes (defaults when the file has
    /// no `[storage]`).
    pub storage: StorageClusterSettings,
    /// Nodes named in the file, in file order.
    pub nodes: Vec<NodeConfig>,
    /// Hostname patterns (`pi-*`) for nodes that join with no edit to the file.
    pub patterns: Vec<PatternRule>,
    /// Where the file came from and a hash of its bytes, to tell configs apart.
    pub source: ConfigSource,
}

#[derive(Debug, Clone, Serialize)]
pub struct ConfigSource {
    pub path: PathBuf,
    /// First 16 hex digits of the SHA-256 of the file's bytes.
    pub hash: String,
}

/// Ports and per-role settings a node gets unless its entry says otherwise.
#[derive(Debug, Clone, Serialize)]
pub struct Defaults {
    /// Status page, JSON API and /metrics.
    pub admin_port: u16,
    /// UDP port of the membership heartbeats.
    pub gossip_port: u16,
}

#[derive(Debug, Clone, Serialize)]
pub struct MembershipSettings {
    /// How often a node tells every peer it is alive.
    #[serde(with = "duration_ms")]
    pub heartbeat_interval: Duration,
    /// Silence after which a peer is marked down.
    #[serde(with = "duration_ms")]
    pub down_after: Duration,
}

#[derive(Debug, Clone, Serialize)]
pub struct StoreSettings {
    /// Events and samples older than this are deleted.
    #[serde(with = "duration_ms")]
    pub retention: Duration,
    /// The database is trimmed (oldest rows first) to stay under this size.
    pub max_bytes: u64,
    /// Writes are batched and committed at most this often: the SD card sees
    /// about one fsync per interval in steady state.
    #[serde(with = "duration_ms")]
    pub flush_interval: Duration,
}

#[derive(Debug, Clone, Serialize)]
pub struct MetricsSettings {
    /// How often system metrics are sampled.
    #[serde(with = "duration_ms")]
    pub sample_interval: Duration,
}

/// One node of the cluster file, defaults applied.
#[derive(Debug, Clone, Serialize)]
pub struct NodeConfig {
    pub hostname: String,
    pub address: IpAddr,
    /// The node's subnet (address with prefix), used to check the VIP.
    pub network: IpNet,
    pub admin_port: u16,
    pub gossip_port: u16,
    /// The Ethernet address that names this Pi on first boot when the boot
    /// partition's firstboot.txt gives no hostname (`piha firstboot`).
    pub mac: Option<String>,
    pub roles: BTreeSet<Role>,
    pub settings: RoleSettings,
}

impl NodeConfig {
    pub fn admin_addr(&self) -> SocketAddr {
        SocketAddr::new(self.address, self.admin_port)
    }
    pub fn gossip_addr(&self) -> SocketAddr {
        SocketAddr::new(self.address, self.gossip_port)
    }
}

/// Per-role settings; a section is `Some` only on a node that has the role.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RoleSettings {
    pub balancer: Option<BalancerSettings>,
    pub web: Option<WebSettings>,
    pub db: Option<DbSettings>,
    pub storage: Option<StorageSettings>,
}

#[derive(Debug, Clone, Serialize)]
pub struct BalancerSettings {
    /// VRRP priority, 1..=254 (255 is reserved for the address owner).
    pub priority: u8,
    /// Plain HTTP front end, on the VIP and the node's address. Default 80.
    pub http_port: u16,
    /// HTTPS front end (h1 and h2 by ALPN); `None` = off. Default 443.
    pub https_port: Option<u16>,
    /// Certificate for the HTTPS front end; `None` = the node's self-signed one.
    pub tls: Option<TlsFiles>,
    /// How a request picks among healthy backends.
    pub algorithm: Algorithm,
    /// A backend that just came up gets its weight ramped from ~0 to full
    /// over this time, so a cold Pi is not flooded. Zero = off.
    #[serde(with = "duration_ms")]
    pub slow_start: Duration,
    pub health: HttpHealthCheck,
    pub limits: ProxyLimits,
    /// Backends besides the web-role nodes that membership reports alive.
    pub backends: Vec<StaticBackend>,
    /// L4 services: TCP listeners with their own backends.
    pub tcp: Vec<TcpService>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Algorithm {
    /// Smooth weighted round robin (nginx's): spreads even weighted picks.
    RoundRobin,
    /// Fewest active plus queued requests, weighted.
    LeastConn,
    /// Consistent hashing of the client's IP: a client sticks to a backend
    /// while the set of backends changes little.
    Source,
    /// Power of two random choices: two at random, the less loaded wins.
    Random2,
}

impl Algorithm {
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::RoundRobin => "roundrobin",
            Algorithm::LeastConn => "leastconn",
            Algorithm::Source => "source",
            Algorithm::Random2 => "random2",
        }
    }
}

/// Active HTTP health check of each backend.
#[derive(Debug, Clone, Serialize)]
pub struct HttpHealthCheck {
    pub path: String,
    pub expect_status: u16,
    #[serde(with = "duration_ms")]
    pub interval: Duration,
    #[serde(with = "duration_ms")]
    pub timeout: Duration,
    /// Consecutive passes that bring a backend up.
    pub rise: u32,
    /// Consecutive failures (active or passive strikes) that take it down.
    pub fall: u32,
    /// With no backend up, send to those that still answer their checks
    /// (with another status) instead of answering 503 (`PoolSettings::panic`).
    pub panic: bool,
}

/// Active TCP connect check of an L4 backend.
#[derive(Debug, Clone, Serialize)]
pub struct TcpHealthCheck {
    #[serde(with = "duration_ms")]
    pub interval: Duration,
    #[serde(with = "duration_ms")]
    pub timeout: Duration,
    pub rise: u32,
    pub fall: u32,
}

/// Every bound of the proxy, so no client or backend can hold it open.
#[derive(Debug, Clone, Serialize)]
pub struct ProxyLimits {
    /// Concurrent requests (HTTP) or connections (TCP) per backend.
    pub maxconn: u32,
    /// Requests waiting for a backend slot, per front end.
    pub queue: u32,
    /// How long a request may wait in the queue before 503.
    #[serde(with = "duration_ms")]
    pub queue_timeout: Duration,
    /// The whole request head must arrive within this (slowloris).
    #[serde(with = "duration_ms")]
    pub header_timeout: Duration,
    #[serde(with = "duration_ms")]
    pub connect_timeout: Duration,
    /// Time for a backend to answer (response head).
    #[serde(with = "duration_ms")]
    pub server_timeout: Duration,
    /// HTTP only: a backend connection whose peer has answered nothing at
    /// the TCP level for this long is dropped by the kernel
    /// (`crate::tcp_timeout`), so a request sent to a web node that lost
    /// its power fails early enough to be retried elsewhere instead of
    /// ending in a 504 after `server_timeout`. Zero: the kernel's defaults.
    #[serde(with = "duration_ms")]
    pub tcp_user_timeout: Duration,
    /// Idle keep-alive time of a client connection.
    #[serde(with = "duration_ms")]
    pub idle_timeout: Duration,
    pub max_header_bytes: u64,
    /// `None` = no limit on request bodies.
    pub max_body_bytes: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct StaticBackend {
    pub address: SocketAddr,
    pub weight: u32,
}

#[derive(Debug, Clone, Serialize)]
pub struct TcpService {
    /// Shown in stats and metrics.
    pub name: String,
    pub port: u16,
    pub backends: Vec<StaticBackend>,
    pub algorithm: Algorithm,
    pub health: TcpHealthCheck,
    pub limits: ProxyLimits,
}

/// Built-in values, before `[defaults]` and a node's own sections apply.
impl Default for BalancerSettings {
    fn default() -> Self {
        let secs = Duration::from_secs;
        BalancerSettings {
            priority: 100,
            http_port: 80,
            https_port: Some(443),
            tls: None,
            algorithm: Algorithm::RoundRobin,
            slow_start: secs(10),
            health: HttpHealthCheck {
                path: "/health".to_owned(),
                expect_status: 200,
                interval: secs(1),
                timeout: secs(1),
                rise: 2,
                fall: 3,
                panic: true,
            },
            limits: ProxyLimits::default(),
            backends: Vec::new(),
            tcp: Vec::new(),
        }
    }
}

impl Default for ProxyLimits {
    fn default() -> Self {
        let secs = Duration::from_secs;
        ProxyLimits {
            maxconn: 256,
            queue: 1024,
            queue_timeout: secs(5),
            header_timeout: secs(10),
            connect_timeout: secs(2),
            server_timeout: secs(30),
            tcp_user_timeout: secs(10),
            idle_timeout: secs(60),
            max_header_bytes: 16 * 1024,
            max_body_bytes: None,
        }
    }
}

impl Default for TcpHealthCheck {
    fn default() -> Self {
        TcpHealthCheck {
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            rise: 2,
            fall: 3,
        }
    }
}

/// PEM files of a certificate chain and its private key.
#[derive(Debug, Clone, Serialize)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Clone, Serialize)]
pub struct WebSettings {
    /// Document root served by the web role.
    pub root: PathBuf,
    /// Plain HTTP (HTTP/1.1 and h2c), on the node's address. Default 8080:
    /// port 80 belongs to the balancer on the nodes that have both roles.
    pub port: u16,
    /// HTTPS (h1 and h2 by ALPN); `None` = off. Default 8443.
    pub tls_port: Option<u16>,
    /// `None` = a self-signed certificate made on first start and kept.
    pub tls: Option<TlsFiles>,
    pub access_log: AccessLog,
    /// Serve symlinks that point outside the root (off: they are 404).
    pub follow_symlinks: bool,
    /// The notes demo app (`/api/notes`); `None` = off.
    pub notes: Option<NotesSettings>,
}

/// The notes demo app's PostgreSQL login: a small app that keeps its data
/// in the cluster's database, so a failure drill can check that every
/// acknowledged write survives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NotesSettings {
    pub database: String,
    pub user: String,
    /// Read when the web role starts, never kept in the cluster file (which
    /// every node and every status page reader sees).
    pub password_file: PathBuf,
    /// Where to connect; `None` = the pooler on the VIP at `[postgres] port`.
    pub address: Option<SocketAddr>,
}

impl Default for WebSettings {
    fn default() -> Self {
        WebSettings {
            root: "/srv/piha/www".into(),
            port: 8080,
            tls_port: Some(8443),
            tls: None,
            access_log: AccessLog::Journal,
            follow_symlinks: false,
            notes: None,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AccessLog {
    Off,
    /// Through the node's log (stderr, journald under systemd).
    Journal,
    /// Combined log format to a file, rotated once at `max_bytes`.
    File {
        path: PathBuf,
        max_bytes: u64,
    },
}

#[derive(Debug, Clone, Serialize)]
pub struct DbSettings {
    /// This node runs initdb and starts as primary on first boot. Exactly one
    /// db node of the cluster has it.
    pub initial_primary: bool,
}

/// `[db]`: how every db node runs its PostgreSQL. Cluster-wide on purpose:
/// a standby must be able to become the primary with the same settings, and
/// a failover must not change how replication or backups work.
#[derive(Debug, Clone, Serialize)]
pub struct DbClusterSettings {
    /// Where the PostgreSQL programs are (`postgres`, `initdb`,
    /// `pg_basebackup`, `pg_rewind`, ...): the OS package's, never a copy of
    /// our own, so security updates arrive with `apt upgrade`.
    pub bindir: PathBuf,
    /// The folder PostgreSQL's data directory (`data/`) and socket folder
    /// (`run/`) go in. `None`: `postgresql` under the node's own data
    /// directory (`piha run --data-dir`), which keeps tests that run
    /// several nodes on one machine apart with no setting.
    pub data_dir: Option<PathBuf>,
    /// The OS user PostgreSQL runs as when piha runs as root (PostgreSQL
    /// refuses to run as root).
    pub os_user: String,
    /// The role standbys stream as and pg_rewind reads the new primary as.
    /// Its password is derived from the cluster's admin token, so the owner
    /// keeps one secret, not two.
    pub replication_user: String,
    /// `synchronous_standby_names = 'ANY 1 (...)'` on the primary: a commit
    /// is acknowledged once one standby has it, so it survives losing the
    /// primary (and writes wait while no standby is up).
    pub synchronous: bool,
    /// The VRRP master promotes a standby when the primary is gone. `false`:
    /// it only reports; an operator runs `piha switchover`.
    pub failover: bool,
    /// Scheduled base backups, or `None` when off.
    pub backup: Option<DbBackup>,
}

/// `[db] backup = { dir = ..., every = "24h", keep = 7 }`.
#[derive(Debug, Clone, Serialize)]
pub struct DbBackup {
    /// The folder the backups go to: the Gluster volume by default, so a
    /// backup survives the SD card it was taken on.
    pub dir: PathBuf,
    /// The primary takes a new one when the newest is older than this.
    #[serde(with = "duration_ms")]
    pub every: Duration,
    /// Backups kept; older ones are removed after a new one is complete.
    pub keep: u32,
}

impl DbClusterSettings {
    /// The values a file without `[db]` gets.
    pub fn builtin() -> DbClusterSettings {
        DbClusterSettings {
            bindir: PathBuf::from("/usr/lib/postgresql/15/bin"),
            data_dir: None,
            os_user: "postgres".into(),
            replication_user: "replicator".into(),
            synchronous: false,
            failover: true,
            backup: Some(DbBackup::builtin()),
        }
    }
}

impl DbBackup {
    /// What `backup` is without the key, and what a key left out of
    /// `backup = { ... }` takes.
    pub fn builtin() -> DbBackup {
        DbBackup {
            dir: PathBuf::from("/srv/piha/backups/postgresql"),
            every: Duration::from_secs(24 * 3600),
            keep: 7,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct StorageSettings {
    /// Directory that holds this node's Gluster brick.
    pub brick: PathBuf,
}

/// `[storage]`: the one Gluster volume the storage nodes form, cluster-wide
/// because every node must agree on its name, layout and mount point.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StorageClusterSettings {
    /// The volume's name in gluster.
    pub volume: String,
    /// Bricks per replica set. `None`: 2 for an even number of storage
    /// nodes, 3 for a multiple of three, 1 for a single node.
    pub replica: Option<u32>,
    /// A metadata-only brick in each set (a tie-breaker that needs little
    /// space): with replica 3 the third brick of each set; with pairs one
    /// more brick on a node outside the pair. `None`: pairs get one when
    /// there are at least 4 storage nodes, triples do not.
    pub arbiter: Option<bool>,
    /// Where every storage node mounts the volume: the web root by default,
    /// so all web nodes serve the same files.
    pub mount: PathBuf,
    /// How often the monitor asks gluster.
    pub poll: Duration,
    /// gluster's `network.ping-timeout`: how long clients wait on a brick
    /// that stopped answering. gluster's 42 s default stalls every write
    /// that long when a Pi dies.
    pub ping_timeout: Duration,
    /// Warn below this percentage of free space on a brick.
    pub min_free: u32,
    /// The gluster CLI.
    pub gluster: PathBuf,
}

impl StorageClusterSettings {
    /// The values a file without `[storage]` gets.
    pub fn builtin() -> StorageClusterSettings {
        StorageClusterSettings {
            volume: "piha".into(),
            replica: None,
            arbiter: None,
            mount: PathBuf::from("/srv/piha/www"),
            poll: Duration::from_secs(5),
            ping_timeout: Duration::from_secs(10),
            min_free: 10,
            gluster: PathBuf::from("/usr/sbin/gluster"),
        }
    }
}

/// `[[pattern]] match = "pi-*"`: a host whose name matches gets these roles.
#[derive(Debug, Clone, Serialize)]
pub struct PatternRule {
    /// The glob as written, for messages and the plan table.
    pub pattern: String,
    pub roles: BTreeSet<Role>,
    pub settings: RoleSettings,
}

/// What one host runs: the answer to "I am `hostname`, what do I do?".
#[derive(Debug, Clone, Serialize)]
pub struct NodePlan {
    pub hostname: String,
    /// From the file; `None` for a host that matched a pattern (it finds its
    /// own address at start).
    pub address: Option<IpAddr>,
    pub admin_port: u16,
    pub gossip_port: u16,
    pub roles: BTreeSet<Role>,
    pub settings: RoleSettings,
    /// The pattern that matched, when the host is not named in the file.
    pub from_pattern: Option<String>,
}

/// Durations serialize as milliseconds in the JSON API.
pub(crate) mod duration_ms {
    use std::time::Duration;

    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }
}

/// An optional duration in milliseconds (`null` = off).
pub(crate) mod duration_ms_opt {
    use std::time::Duration;

    pub fn serialize<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => super::duration_ms::serialize(d, s),
            None => s.serialize_none(),
        }
    }
}

/// `[postgres]`: the pooler/router that the balancer nodes run on the VIP,
/// and the credentials it uses. Cluster-wide on purpose: both balancers must
/// route the same way, or a client would see different users and pool modes
/// depending on which one holds the VIP.
#[derive(Debug, Clone, Serialize)]
pub struct PostgresSettings {
    /// Where clients connect: VIP:port and node-address:port on each balancer.
    pub port: u16,
    /// The port PostgreSQL itself listens on on the db nodes. Not 5432: the
    /// pooler takes 5432 on the node address, and a db node is often also a
    /// balancer node.
    pub server_port: u16,
    /// Default pool mode; a database or user entry may override it.
    pub pool_mode: PoolMode,
    /// Server connections per (database, user) on each backend.
    pub pool_size: u32,
    /// Server connections kept open per (database, user) on each backend even
    /// when idle, so the first client after a quiet night does not pay a
    /// connect + SCRAM round trip.
    pub min_pool_size: u32,
    /// Client connections accepted at once; the next one gets 53300.
    pub max_client_conn: u32,
    /// Clients that may wait for a server connection; beyond it, 53300 at once
    /// rather than an ever-growing queue.
    pub max_wait_clients: u32,
    /// How long a client waits for a server connection before 53300.
    #[serde(with = "duration_ms")]
    pub wait_timeout: Duration,
    /// Idle server connections above `min_pool_size` are closed after this.
    #[serde(with = "duration_ms")]
    pub server_idle_timeout: Duration,
    /// A server connection is closed at release once older than this, so a
    /// backend's memory bloat or a changed pg_hba.conf takes effect.
    #[serde(with = "duration_ms")]
    pub server_lifetime: Duration,
    /// How long a new client has to finish its startup and authentication.
    #[serde(with = "duration_ms")]
    pub login_timeout: Duration,
    /// How long a connection to PostgreSQL may go unanswered at the TCP
    /// level (data unacknowledged, or keepalive probes on a quiet
    /// connection) before the kernel drops it; zero leaves the kernel's
    /// own (15 minutes of retransmissions, no keepalive). A Pi that loses
    /// its power sends no FIN or RST: without this, a client whose
    /// statement was on the wire to it waits those 15 minutes.
    #[serde(with = "duration_ms")]
    pub tcp_user_timeout: Duration,
    /// The same for client connections, so that a client that died inside
    /// a transaction does not keep its locks for ever. Longer than the
    /// servers' because the kernel also counts a client that does not
    /// read (a large result, read slowly) as unanswering.
    #[serde(with = "duration_ms")]
    pub client_tcp_user_timeout: Duration,
    /// Largest message accepted from a client or server, checked before any
    /// allocation. PostgreSQL allows 1 GiB; a Pi cannot hold that per client.
    pub max_message_bytes: u32,
    /// Standbys whose replay lag is above this many bytes get no reads.
    pub max_lag_bytes: u64,
    /// After a client's write, its reads go to the primary or to a standby
    /// whose replay LSN has passed that write.
    pub read_your_writes: bool,
    /// Client-side TLS, answered on SSLRequest.
    pub tls: PgTls,
    /// Try TLS to PostgreSQL (`prefer`): use it when the server offers it.
    pub server_tls: bool,
    /// PostgreSQL servers to use besides the db-role nodes (host:port).
    pub backends: Vec<SocketAddr>,
    /// The pooler's own login to PostgreSQL, for the health prober, the
    /// function-volatility lookup and auth_query.
    pub service: Option<ServiceLogin>,
    /// SQL that looks up a user's secret on the primary, with `$1` the user
    /// name; `None` means only the users listed below can log in.
    pub auth_query: Option<String>,
    pub users: Vec<PgUser>,
    pub databases: Vec<PgDatabase>,
    pub probe: PgProbe,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PoolMode {
    /// A client keeps its server connection until it disconnects.
    Session,
    /// A client holds a server connection only for one transaction.
    Transaction,
}

impl PoolMode {
    pub fn name(self) -> &'static str {
        match self {
            PoolMode::Session => "session",
            PoolMode::Transaction => "transaction",
        }
    }
}

/// `[postgres] tls`: whether the pooler accepts TLS from clients, and with
/// which certificate.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PgTls {
    /// `tls = false`: an SSLRequest is answered 'N'; the client goes on in
    /// plain text or gives up, as its sslmode says.
    #[default]
    Off,
    /// `tls = true`: the node's own self-signed certificate, the one the web
    /// and balancer roles use when they have no `tls` files.
    NodeCert,
    /// `tls = { cert = "...", key = "..." }`: these PEM files.
    Files(TlsFiles),
}

/// The pooler's own PostgreSQL login. `keys` is a SCRAM client-key secret
/// (`SCRAM-SHA-256$<iter>:<salt>$<ClientKey>:<ServerKey>`, made by
/// `piha pg-secret`): it can log in, but is not the password, and PostgreSQL
/// stores only the matching verifier.
#[derive(Debug, Clone, Serialize)]
pub struct ServiceLogin {
    pub user: String,
    pub database: String,
    #[serde(skip)]
    pub keys: String,
}

/// A user allowed through the pooler. `secret` is what PostgreSQL keeps in
/// pg_authid.rolpassword: a SCRAM-SHA-256 verifier or an md5 hash, never the
/// password.
#[derive(Debug, Clone, Serialize)]
pub struct PgUser {
    pub name: String,
    #[serde(skip)]
    pub secret: String,
    pub pool_mode: Option<PoolMode>,
}

/// Per-database overrides.
#[derive(Debug, Clone, Serialize)]
pub struct PgDatabase {
    pub name: String,
    pub pool_mode: Option<PoolMode>,
    pub pool_size: Option<u32>,
}

/// The background prober: every backend, every `interval`.
#[derive(Debug, Clone, Serialize)]
pub struct PgProbe {
    #[serde(with = "duration_ms")]
    pub interval: Duration,
    #[serde(with = "duration_ms")]
    pub timeout: Duration,
    /// Failed probes in a row before a backend counts as down.
    pub fall: u32,
}

impl Default for PgProbe {
    fn default() -> Self {
        PgProbe {
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            fall: 3,
        }
    }
}

impl Default for PostgresSettings {
    fn default() -> Self {
        let secs = Duration::from_secs;
        PostgresSettings {
            port: 5432,
            server_port: 5433,
            pool_mode: PoolMode::Transaction,
            pool_size: 20,
            min_pool_size: 0,
            max_client_conn: 2000,
            max_wait_clients: 2000,
            wait_timeout: secs(30),
            server_idle_timeout: secs(600),
            server_lifetime: secs(3600),
            login_timeout: secs(15),
            tcp_user_timeout: secs(10),
            client_tcp_user_timeout: secs(60),
            max_message_bytes: 16 * 1024 * 1024,
            max_lag_bytes: 16 * 1024 * 1024,
            read_your_writes: false,
            tls: PgTls::Off,
            server_tls: false,
            backends: Vec::new(),
            service: None,
            auth_query: None,
            users: Vec::new(),
            databases: Vec::new(),
            probe: PgProbe::default(),
        }
    }
}

/// The cluster-wide `[vrrp]` section: one virtual router whose master holds
/// the cluster's `vip`. Each balancer node's priority is in its own entry.
#[derive(Debug, Clone, Serialize)]
pub struct VrrpSettings {
    pub version: VrrpVersion,
    /// Virtual router id, 1..=255; must differ from any other VRRP router on
    /// the LAN (a collision is keepalived's classic split brain).
    pub vrid: u8,
    /// Interface the adverts go out of and the VIP goes on; `None` = the one
    /// holding the node's address.
    pub interface: Option<String>,
    /// Advert interval. v3: 10 ms steps from 10 ms to 40.95 s (default
    /// 100 ms); v2: whole seconds (default 1 s).
    #[serde(with = "duration_ms")]
    pub interval: Duration,
    /// A backup with a higher priority takes the VIP back from a master.
    pub preempt: bool,
    /// How long a lower priority master is tolerated before preempting it,
    /// so a node that just came back can warm up first.
    #[serde(with = "duration_ms")]
    pub preempt_delay: Duration,
    pub mode: VrrpMode,
    /// v2 simple-text password (at most 8 bytes), for keepalived peers
    /// configured with `auth_type PASS`. Never on v3.
    #[serde(skip)]
    pub auth: Option<String>,
    /// Which checksum v3 IPv4 adverts carry.
    pub checksum: VrrpChecksum,
    /// Gratuitous ARPs / neighbour adverts sent on becoming master.
    pub announce_count: u32,
    /// Time between those.
    #[serde(with = "duration_ms")]
    pub announce_gap: Duration,
    /// Announce again this often while master; `None` = off.
    #[serde(with = "duration_ms_opt")]
    pub announce_refresh: Option<Duration>,
    /// Priority lost while the local HTTP balancer is unhealthy; 0 = go to
    /// Fault instead (give up the VIP whatever the priorities).
    pub track_http: Option<u8>,
    /// The same for the local Postgres pooler.
    pub track_pooler: Option<u8>,
    /// Operator check commands (keepalived's `track_script`).
    pub checks: Vec<VrrpCheck>,
    /// Commands run, in order, on every state change, with the instance
    /// name, the new state and the reason as arguments.
    pub notify: Vec<PathBuf>,
    /// SCHED_FIFO priority of the VRRP thread (keepalived's
    /// `vrrp_rt_priority`); `None` = normal scheduling.
    pub realtime_priority: Option<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum VrrpVersion {
    V2,
    V3,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum VrrpMode {
    /// To 224.0.0.18 / ff02::12.
    Multicast,
    /// To each peer, for networks that drop multicast. Never empty.
    /// Without `unicast_peers` in the file, every balancer node's address:
    /// the file is the same on every node, so the runtime leaves out its
    /// own address.
    Unicast { peers: Vec<IpAddr> },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum VrrpChecksum {
    /// Accept both; send with the IPv4 pseudo-header (keepalived's and
    /// FRR's default) until a peer is heard using message-only.
    Auto,
    PseudoHeader,
    /// RFC 9568's reading, Cisco's and Juniper's.
    MessageOnly,
}

/// One operator check: exit status 0 = healthy.
#[derive(Debug, Clone, Serialize)]
pub struct VrrpCheck {
    pub name: String,
    /// Run without a shell: program and arguments.
    pub command: Vec<String>,
    #[serde(with = "duration_ms")]
    pub interval: Duration,
    /// A check that takes longer has failed (and is killed).
    #[serde(with = "duration_ms")]
    pub timeout: Duration,
    /// Failures in a row before the weight applies, and successes before
    /// it is lifted: one slow run must not move the VIP.
    pub fall: u32,
    pub rise: u32,
    /// Priority lost while failing; 0 = Fault.
    pub weight: u8,
}

impl Default for VrrpSettings {
    fn default() -> Self {
        VrrpSettings {
            version: VrrpVersion::V3,
            vrid: 51,
            interface: None,
            interval: Duration::from_millis(100),
            preempt: true,
            preempt_delay: Duration::ZERO,
            mode: VrrpMode::Multicast,
            auth: None,
            checksum: VrrpChecksum::Auto,
            announce_count: 3,
            announce_gap: Duration::from_millis(10),
            announce_refresh: Some(Duration::from_secs(60)),
            track_http: Some(100),
            track_pooler: Some(100),
            checks: Vec::new(),
            notify: Vec::new(),
            realtime_priority: Some(50),
        }
    }
}
