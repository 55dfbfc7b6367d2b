//! What every service of a node shares: who the node is, the current config
//! snapshot, where events go, and the published views other parts read.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::events::Events;
use super::health::HealthBoard;
use super::system_metrics::SystemView;
use crate::config::{ClusterConfig, NodePlan};
use crate::membership::MembershipView;
use crate::store::Store;

/// The config in force: the whole file and this node's plan from it.
/// Swapped whole on reload, never changed in place.
#[derive(Debug)]
pub struct Running {
    pub config: Arc<ClusterConfig>,
    pub plan: NodePlan,
    /// When this config was loaded (unix ms), for the status page.
    pub loaded_at_ms: i64,
}

impl Running {
    /// Heartbeats go to every node the file names, with their gossip port.
    pub fn seeds(&self) -> Vec<(String, SocketAddr)> {
        self.config
            .nodes
            .iter()
            .map(|n| (n.hostname.clone(), n.gossip_addr()))
            .collect()
    }

    /// Whether a host we have not met belongs to the cluster.
    pub fn admits(&self, hostname: &str) -> bool {
        self.config.plan_for(hostname).is_ok()
    }
}

/// Facts fixed for the life of the process.
#[derive(Debug, Clone)]
pub struct Identity {
    pub hostname: String,
    /// This node's address: from the file, `--address`, or found at start.
    pub address: IpAddr,
    /// Random per process start: peers use it to notice a restart.
    pub incarnation: u64,
    pub started_at_ms: i64,
    pub version: &'static str,
    pub data_dir: std::path::PathBuf,
}

pub struct NodeContext {
    pub identity: Identity,
    pub config: watch::Receiver<Arc<Running>>,
    pub store: Store,
    pub events: Events,
    pub health: HealthBoard,
    pub system: watch::Sender<Arc<SystemView>>,
    pub membership: watch::Sender<Arc<MembershipView>>,
    /// Asks the agent to re-read the cluster file (admin API); the answer
    /// says what happened.
    pub reload: tokio::sync::mpsc::Sender<super::reload::ReloadRequest>,
    /// Cancelled once, when the node is stopping.
    pub shutdown: CancellationToken,
    /// Handles the running roles publish for the status page and admin API.
    pub roles: RoleHandles,
    /// Services an operator stopped through the admin API (a balancer taken
    /// out for maintenance); the supervisor keeps them stopped until started
    /// again. Not kept across restarts of the node.
    pub held: watch::Sender<std::collections::BTreeSet<String>>,
}

/// Each role that has something to show or control publishes its handle
/// here when it starts and `None` (or empty) when it stops.
#[derive(Default)]
pub struct RoleHandles {
    pub http_balancer: watch::Sender<Option<Arc<crate::balancer::http::Handle>>>,
    pub tcp_services: watch::Sender<Vec<Arc<crate::balancer::tcp::Handle>>>,
    pub pooler: watch::Sender<Option<Arc<crate::pg::pooler::shared::Pooler>>>,
    pub vrrp: watch::Sender<Option<Arc<crate::vrrp::status::VrrpStatus>>>,
    /// The db role: its status and the commands it takes (promote, follow,
    /// fence) from the admin API.
    pub db: watch::Sender<Option<Arc<crate::pg::supervisor::DbHandle>>>,
    /// The storage role: the Gluster volume as this node sees it.
    pub storage: watch::Sender<Option<Arc<crate::gluster::status::StorageHandle>>>,
    /// The failover decider of a balancer node: takes switchover requests.
    pub failover: watch::Sender<Option<Arc<crate::pg::failover::FailoverHandle>>>,
}

impl RoleHandles {
    /// Forgets what the service `name` (as the supervisor calls it)
    /// published. A role clears its handle itself when it returns; an
    /// operator's stop or a panic ends its task before that line runs, and
    /// the page, `/metrics` and VRRP's readiness would go on reading a role
    /// that is gone (a stopped pooler's frozen counters, say).
    pub fn withdraw(&self, service: &str) {
        match service {
            "balancer-http" => drop(self.http_balancer.send_replace(None)),
            "balancer-tcp" => drop(self.tcp_services.send_replace(Vec::new())),
            "pooler" => drop(self.pooler.send_replace(None)),
            "vrrp" => drop(self.vrrp.send_replace(None)),
            "db" => drop(self.db.send_replace(None)),
            "storage" => drop(self.storage.send_replace(None)),
            "failover" => drop(self.failover.send_replace(None)),
            _ => {}
        }
    }
}

/// A token cancelled when the node stops or when a new config changes the
/// key a role restarts for (see [`NodeContext::restart_watch`]). Dropping
/// it ends the watching task.
pub struct RestartWatch {
    pub stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for RestartWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl NodeContext {
    /// For a role that must start over when `key` of the config changes
    /// (where it runs, as whom): its `stop` is cancelled at shutdown or at
    /// the first config whose key differs from the current one's.
    pub fn restart_watch(self: &Arc<Self>, key: fn(&Running) -> String) -> RestartWatch {
        let stop = CancellationToken::new();
        let now = key(&self.running());
        let task = {
            let ctx = self.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                ctx.wait_for_restart(|r| key(r) != now).await;
                stop.cancel();
            })
        };
        RestartWatch { stop, task }
    }

    pub fn running(&self) -> Arc<Running> {
        self.config.borrow().clone()
    }

    /// Waits until the node stops or a new config makes `restart` say
    /// true: how a service that binds or builds from config learns that it
    /// must start over. `restart` sees every new config, so a service can
    /// also apply in place what needs no restart.
    pub async fn wait_for_restart(&self, mut restart: impl FnMut(&Arc<Running>) -> bool) {
        let mut config = self.config.clone();
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                changed = config.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    let running = config.borrow_and_update().clone();
                    if restart(&running) {
                        return;
                    }
                }
            }
        }
    }
}
