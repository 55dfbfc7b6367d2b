//! Re-reading the cluster file (SIGHUP or the admin API). A new file is used
//! only if it is valid and still has a place for this host; otherwise the
//! node keeps running on the config it has, and an event says why.

use std::path::Path;
use std::sync::Arc;

use serde::Serialize;
use tokio::sync::oneshot;

use super::context::Running;
use super::events::now_ms;
use crate::config::{self, ClusterConfig};

/// A reload asked for through the admin API, answered on `reply`.
pub struct ReloadRequest {
    pub reply: oneshot::Sender<ReloadOutcome>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum ReloadOutcome {
    Applied {
        from_hash: String,
        to_hash: String,
        changes: Vec<String>,
    },
    Unchanged {
        hash: String,
    },
    Rejected {
        error: String,
    },
}

/// Loads `path` and decides; `Ok` carries the new snapshot to swap in.
pub fn reload(
    path: &Path,
    hostname: &str,
    current: &Running,
) -> (ReloadOutcome, Option<Arc<Running>>) {
    let config = match config::load(path) {
        Ok(c) => c,
        Err(e) => {
            return (
                ReloadOutcome::Rejected {
                    error: e.to_string(),
                },
                None,
            );
        }
    };
    if config.source.hash == current.config.source.hash {
        return (
            ReloadOutcome::Unchanged {
                hash: config.source.hash,
            },
            None,
        );
    }
    let plan = match config.plan_for(hostname) {
        Ok(p) => p,
        Err(e) => {
            return (
                ReloadOutcome::Rejected {
                    error: format!("the new file has no place for this host: {e}"),
                },
                None,
            );
        }
    };
    let changes = describe_changes(&current.config, &config, current, &plan);
    let outcome = ReloadOutcome::Applied {
        from_hash: current.config.source.hash.clone(),
        to_hash: config.source.hash.clone(),
        changes,
    };
    let running = Running {
        config: Arc::new(config),
        plan,
        loaded_at_ms: now_ms(),
    };
    (outcome, Some(Arc::new(running)))
}

/// What a person wants to read in the event: which nodes and settings moved.
fn describe_changes(
    old: &ClusterConfig,
    new: &ClusterConfig,
    current: &Running,
    plan: &crate::config::NodePlan,
) -> Vec<String> {
    let mut out = Vec::new();
    for n in &new.nodes {
        match old.nodes.iter().find(|o| o.hostname == n.hostname) {
            None => out.push(format!("node {} added", n.hostname)),
            Some(o) if o.address != n.address || o.gossip_port != n.gossip_port => {
                out.push(format!("node {} moved to {}", n.hostname, n.address))
            }
            Some(o) if o.roles != n.roles => out.push(format!("node {} roles changed", n.hostname)),
            Some(_) => {}
        }
    }
    for o in &old.nodes {
        if !new.nodes.iter().any(|n| n.hostname == o.hostname) {
            out.push(format!("node {} removed", o.hostname));
        }
    }
    if current.plan.roles != plan.roles {
        let names: Vec<&str> = plan.roles.iter().map(|r| r.name()).collect();
        out.push(format!(
            "this node's roles become {} when piha restarts (roles start and stop only at start)",
            names.join(", ")
        ));
    }
    if old.patterns.len() != new.patterns.len()
        || old
            .patterns
            .iter()
            .zip(&new.patterns)
            .any(|(a, b)| a.pattern != b.pattern || a.roles != b.roles)
    {
        out.push("hostname patterns changed".to_owned());
    }
    if old.vip != new.vip {
        out.push("VIP changed".to_owned());
    }
    if old.admin_token != new.admin_token {
        out.push("admin token changed".to_owned());
    }
    if old.membership.heartbeat_interval != new.membership.heartbeat_interval
        || old.membership.down_after != new.membership.down_after
    {
        out.push("membership timing changed".to_owned());
    }
    if old.store.retention != new.store.retention
        || old.store.max_bytes != new.store.max_bytes
        || old.store.flush_interval != new.store.flush_interval
    {
        out.push("store settings changed".to_owned());
    }
    if old.metrics.sample_interval != new.metrics.sample_interval {
        out.push("metrics interval changed".to_owned());
    }
    if current.plan.admin_port != plan.admin_port {
        out.push(format!(
            "admin port {} -> {} (applies at the next restart)",
            current.plan.admin_port, plan.admin_port
        ));
    }
    if out.is_empty() {
        out.push("comments or formatting only".to_owned());
    }
    out
}
