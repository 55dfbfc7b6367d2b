//! `GET /api/v1/status`: the node and the cluster as this node sees them.
//! The same types are used by `piha status` to read it back, so the document
//! and its reader cannot drift. Documented field by field in docs/api.md.

use serde::{Deserialize, Serialize};

use crate::membership::SystemSummary;
use crate::node::context::NodeContext;
use crate::node::events::now_ms;
use crate::node::health::{RoleHealth, ServiceHealth};
use crate::node::system_metrics::{SERIES, SystemSample, percent};
use crate::store::Event;

pub const API_VERSION: u32 = 1;
/// Events shown on the page and returned by the API.
pub const RECENT_EVENTS: usize = 50;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatusDoc {
    pub api_version: u32,
    pub generated_at_ms: i64,
    pub cluster: ClusterInfo,
    pub node: NodeInfo,
    pub system: Option<serde_json::Value>,
    pub history: History,
    pub events: Vec<Event>,
    pub members: Vec<Member>,
    /// The balancer role's front ends and backends; null without the role.
    #[serde(default)]
    pub balancer: Option<serde_json::Value>,
    /// The Postgres pooler's backends and pools; null when this node runs
    /// no pooler.
    #[serde(default)]
    pub pooler: Option<serde_json::Value>,
    /// The VRRP instance (state, priority, master, counters); null when
    /// this node runs none.
    #[serde(default)]
    pub vrrp: Option<serde_json::Value>,
    /// This node's PostgreSQL (null without the db role) and every db
    /// node as its heartbeat reports it; null when the cluster has no db
    /// node at all.
    #[serde(default)]
    pub db: Option<serde_json::Value>,
    /// The Gluster volume as this node's storage role sees it (bricks,
    /// heals, peers, data age); null without the storage role.
    #[serde(default)]
    pub storage: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClusterInfo {
    pub name: String,
    pub vip: Option<String>,
    pub config_path: String,
    pub config_hash: String,
    pub config_loaded_at_ms: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeInfo {
    pub hostname: String,
    pub address: String,
    pub version: String,
    pub started_at_ms: i64,
    pub roles: Vec<serde_json::Value>,
    pub services: Vec<serde_json::Value>,
    /// Where the notes demo app answers when this node runs it (through
    /// the balancer on the VIP); null when it does not.
    #[serde(default)]
    pub notes_url: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct History {
    pub series: Vec<String>,
    pub points: Vec<HistoryPoint>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HistoryPoint {
    pub at_ms: i64,
    pub values: Vec<Option<f64>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Member {
    pub hostname: String,
    pub address: Option<String>,
    pub admin_url: Option<String>,
    /// "up", "down", "left" or "unknown".
    pub state: String,
    pub is_self: bool,
    pub since_ms: i64,
    pub last_heard_ms: Option<i64>,
    pub roles: Vec<String>,
    pub version: Option<String>,
    /// The heartbeat's system summary; for this node, its latest sample.
    pub system: Option<SystemSummary>,
}

/// Assembles the document from the snapshots; touches no lock for long and
/// no disk.
pub fn build(ctx: &NodeContext) -> StatusDoc {
    let running = ctx.running();
    let health = ctx.health.snapshot();
    let system = ctx.system.borrow().clone();
    let membership = ctx.membership.borrow().clone();
    let id = &ctx.identity;

    let mut members: Vec<Member> = vec![self_member(ctx, system.latest.as_ref())];
    for m in &membership.members {
        let report = m.report.as_ref();
        let address = report
            .and_then(|r| r.address)
            .or_else(|| m.gossip.map(|g| g.ip()));
        let admin_url = match (address, report) {
            (Some(a), Some(r)) => Some(url_of(a, r.admin_port)),
            (Some(a), None) => running
                .config
                .nodes
                .iter()
                .find(|n| n.hostname == m.hostname)
                .map(|n| url_of(a, n.admin_port)),
            _ => None,
        };
        let live = m.state == crate::membership::PeerState::Up;
        members.push(Member {
            hostname: m.hostname.clone(),
            address: address.map(|a| a.to_string()),
            admin_url,
            state: m.state.name().to_owned(),
            is_self: false,
            since_ms: m.since_ms,
            last_heard_ms: m.last_heard_ms,
            roles: report
                .map(|r| r.roles.clone())
                .unwrap_or_else(|| file_roles(&running.config, &m.hostname)),
            version: report.map(|r| r.version.clone()),
            system: report
                .and_then(|r| r.system.as_ref())
                .filter(|_| live)
                .cloned(),
        });
    }
    members[1..].sort_by(|a, b| a.hostname.cmp(&b.hostname));

    StatusDoc {
        api_version: API_VERSION,
        generated_at_ms: now_ms(),
        cluster: ClusterInfo {
            name: running.config.name.clone(),
            vip: running.config.vip.map(|v| v.to_string()),
            config_path: running.config.source.path.display().to_string(),
            config_hash: running.config.source.hash.clone(),
            config_loaded_at_ms: running.loaded_at_ms,
        },
        node: NodeInfo {
            hostname: id.hostname.clone(),
            address: id.address.to_string(),
            version: id.version.to_owned(),
            started_at_ms: id.started_at_ms,
            roles: health.roles.values().map(role_json).collect(),
            services: health.services.values().map(service_json).collect(),
            notes_url: running
                .plan
                .settings
                .web
                .as_ref()
                .and_then(|web| crate::web::notes::public_url(&running.config, web, id.address)),
        },
        system: system
            .latest
            .as_ref()
            .and_then(|s| serde_json::to_value(s).ok()),
        history: History {
            series: SERIES.iter().map(|s| (*s).to_owned()).collect(),
            points: system
                .history
                .iter()
                .map(|p| HistoryPoint {
                    at_ms: p.at_ms,
                    values: p.values.to_vec(),
                })
                .collect(),
        },
        events: ctx.store.recent_events(RECENT_EVENTS),
        members,
        balancer: super::balancer::section(ctx),
        pooler: super::pooler::section(ctx),
        vrrp: super::vrrp::section(ctx),
        db: super::db::section(ctx),
        storage: super::storage::section(ctx),
    }
}

fn self_member(ctx: &NodeContext, latest: Option<&SystemSample>) -> Member {
    let running = ctx.running();
    let id = &ctx.identity;
    Member {
        hostname: id.hostname.clone(),
        address: Some(id.address.to_string()),
        admin_url: Some(url_of(id.address, running.plan.admin_port)),
        state: "up".to_owned(),
        is_self: true,
        since_ms: id.started_at_ms,
        last_heard_ms: Some(now_ms()),
        roles: running
            .plan
            .roles
            .iter()
            .map(|r| r.name().to_owned())
            .collect(),
        version: Some(id.version.to_owned()),
        system: latest.map(|s| SystemSummary {
            cpu_percent: s.cpu_percent,
            memory_percent: percent(s.memory_used_bytes, s.memory_total_bytes),
            temperature_c: s.temperature_c,
            load1: s.load[0],
            uptime_s: s.uptime_s,
        }),
    }
}

fn file_roles(config: &crate::config::ClusterConfig, host: &str) -> Vec<String> {
    config
        .plan_for(host)
        .map(|p| p.roles.iter().map(|r| r.name().to_owned()).collect())
        .unwrap_or_default()
}

fn url_of(addr: std::net::IpAddr, port: u16) -> String {
    match addr {
        std::net::IpAddr::V6(v6) => format!("http://[{v6}]:{port}/"),
        std::net::IpAddr::V4(v4) => format!("http://{v4}:{port}/"),
    }
}

fn role_json(r: &RoleHealth) -> serde_json::Value {
    serde_json::to_value(r).unwrap_or_default()
}

fn service_json(s: &ServiceHealth) -> serde_json::Value {
    serde_json::to_value(s).unwrap_or_default()
}
