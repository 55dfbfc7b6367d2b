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
}

#[derive(Debug, Clone, Serialize)]
pub struct WebSettings {
    /// Document root served by the web role.
    pub root: PathBuf,
}

#[derive(Debug, Clone, Serialize)]
pub struct DbSettings {
    /// This node runs initdb and starts as primary on first boot. Exactly one
    /// db node of the cluster has it.
    pub initial_primary: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct StorageSettings {
    /// Directory that holds this node's Gluster brick.
    pub brick: PathBuf,
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
