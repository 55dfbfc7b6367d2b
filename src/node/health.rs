//! The health board: the state of every internal service and every role, as
//! the status page and the heartbeats show it. The supervisor writes service
//! states; role tasks (later issues) write role states; everyone else reads
//! a snapshot.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;
use tokio::sync::watch;

use crate::config::Role;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ServiceState {
    Starting,
    Running,
    /// Failed and waiting out its backoff before the next start.
    Restarting,
    Stopped,
}

#[derive(Debug, Clone, Serialize)]
pub struct ServiceHealth {
    pub name: String,
    pub state: ServiceState,
    /// Restarts after a failure since the node started.
    pub restarts: u32,
    pub last_error: Option<String>,
    pub since_ms: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RoleState {
    /// The plan gives this node the role but this build of piha does not
    /// contain it yet. Shown as such, never as healthy.
    NotBuilt,
    Starting,
    Healthy,
    Degraded,
    Failed,
}

impl RoleState {
    pub fn name(self) -> &'static str {
        match self {
            RoleState::NotBuilt => "not_built",
            RoleState::Starting => "starting",
            RoleState::Healthy => "healthy",
            RoleState::Degraded => "degraded",
            RoleState::Failed => "failed",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct RoleHealth {
    pub role: Role,
    pub state: RoleState,
    pub detail: String,
}

#[derive(Debug, Clone, Default)]
pub struct HealthSnapshot {
    pub services: BTreeMap<String, ServiceHealth>,
    pub roles: BTreeMap<Role, RoleHealth>,
}

/// Cheap to clone; backed by a watch channel so readers never block writers.
#[derive(Clone)]
pub struct HealthBoard {
    tx: Arc<watch::Sender<Arc<HealthSnapshot>>>,
}

impl Default for HealthBoard {
    fn default() -> Self {
        HealthBoard {
            tx: Arc::new(watch::channel(Arc::new(HealthSnapshot::default())).0),
        }
    }
}

impl HealthBoard {
    pub fn snapshot(&self) -> Arc<HealthSnapshot> {
        self.tx.borrow().clone()
    }

    pub fn set_service(&self, health: ServiceHealth) {
        self.tx.send_modify(|s| {
            Arc::make_mut(s)
                .services
                .insert(health.name.clone(), health);
        });
    }

    pub fn set_role(&self, health: RoleHealth) {
        self.tx.send_modify(|s| {
            Arc::make_mut(s).roles.insert(health.role, health);
        });
    }
}
