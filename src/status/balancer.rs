//! The balancer's part of the status API, and its admin endpoint. Maps the
//! proxies' own stats types onto one documented shape (docs/api.md), so the
//! page and scripts do not depend on internal structs.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::auth;
use super::server::error;
use crate::balancer::pool::{Admin, BackendView};
use crate::balancer::shared::SharedPool;
use crate::balancer::tcp::TcpStats;
use crate::config::Role;
use crate::node::context::NodeContext;
use crate::node::events::now_ms;

/// `balancer` of `/api/v1/status`: null on a node without the role.
pub fn section(ctx: &NodeContext) -> Option<Value> {
    if !ctx.running().plan.roles.contains(&Role::Balancer) {
        return None;
    }
    let http = ctx
        .roles
        .http_balancer
        .borrow()
        .as_ref()
        .map(|h| super::balancer_http::http_json(h));
    let tcp: Vec<Value> = ctx
        .roles
        .tcp_services
        .borrow()
        .iter()
        .map(|h| tcp_json(&h.stats()))
        .collect();
    Some(json!({ "http": http, "tcp": tcp }))
}

/// The fields every backend row shares, from the pool's view.
pub fn backend_base(v: &BackendView, now_ms: i64) -> serde_json::Map<String, Value> {
    let mut m = serde_json::Map::new();
    m.insert("name".into(), json!(v.name));
    m.insert("address".into(), json!(v.addr.to_string()));
    m.insert("source".into(), json!(v.source));
    m.insert("state".into(), json!(v.state));
    m.insert("weight".into(), json!(v.weight));
    m.insert(
        "effective_weight".into(),
        json!(v.effective_weight_16 as f64 / 16.0),
    );
    m.insert("active".into(), json!(v.active));
    m.insert("last_check".into(), json!(v.last_check));
    m.insert("last_check_ok".into(), json!(v.last_check_ok));
    m.insert(
        "since_ms".into(),
        json!(now_ms - i64::try_from(v.since_ms_ago).unwrap_or(i64::MAX)),
    );
    m
}

fn tcp_json(s: &TcpStats) -> Value {
    let now = now_ms();
    let backends: Vec<Value> = s
        .backends
        .iter()
        .map(|b| {
            let mut m = backend_base(&b.view, now);
            m.insert("connections_total".into(), json!(b.connections_total));
            m.insert("bytes_in".into(), json!(b.bytes_in));
            m.insert("bytes_out".into(), json!(b.bytes_out));
            m.insert("connect_errors".into(), json!(b.connect_errors));
            Value::Object(m)
        })
        .collect();
    json!({
        "name": s.name,
        "port": s.port,
        "listen": s.listening.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
        "algorithm": s.algorithm,
        "connections_total": s.connections_total,
        "active": s.connections_active,
        "queued": s.queued,
        "retries": s.retries,
        "rejected_total": s.refused_no_backend + s.refused_queue_full + s.refused_queue_timeout,
        "backends": backends,
    })
}

#[derive(Debug, Deserialize)]
pub struct BackendChange {
    /// "ready", "drain" or "maint".
    state: Option<String>,
    /// A runtime weight 1..=256; null returns to the configured one.
    #[serde(default, deserialize_with = "some_or_null")]
    weight: Option<Option<u32>>,
}

/// Distinguishes `"weight": null` (reset) from no `weight` key at all.
fn some_or_null<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<u32>>, D::Error> {
    Option::<u32>::deserialize(d).map(Some)
}

#[derive(Debug, Deserialize)]
pub struct Which {
    /// A TCP service's name; absent = the HTTP balancer.
    frontend: Option<String>,
}

/// `POST /api/v1/balancer/backends/{name}`: drain, maint, ready, weight.
pub async fn change_backend(
    State(ctx): State<Arc<NodeContext>>,
    Path(name): Path<String>,
    Query(which): Query<Which>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let token = ctx.running().config.admin_token.clone();
    if let Err(refusal) = auth::check(token.as_deref(), &headers) {
        return error(refusal.status(), &refusal.to_string());
    }
    let change: BackendChange = match serde_json::from_slice(&body) {
        Ok(c) => c,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                &format!(
                    "expected {{\"state\": \"ready|drain|maint\", \"weight\": 1..256|null}}: {e}"
                ),
            );
        }
    };
    let admin = match change.state.as_deref() {
        None => None,
        Some("ready") => Some(Admin::Ready),
        Some("drain") => Some(Admin::Drain),
        Some("maint") => Some(Admin::Maint),
        Some(other) => {
            return error(
                StatusCode::BAD_REQUEST,
                &format!("unknown state {other:?}: expected ready, drain or maint"),
            );
        }
    };
    if let Some(Some(w)) = change.weight {
        if !(1..=256).contains(&w) {
            return error(StatusCode::BAD_REQUEST, "weight must be 1..256 (or null)");
        }
    }
    let Some(pool) = find_pool(&ctx, which.frontend.as_deref()) else {
        return error(
            StatusCode::NOT_FOUND,
            "no such balancer front end running on this node",
        );
    };
    let mut found = true;
    if let Some(admin) = admin {
        found &= pool.set_admin(&name, admin);
    }
    if let Some(weight) = change.weight {
        found &= pool.set_weight(&name, weight);
    }
    if !found {
        return error(StatusCode::NOT_FOUND, &format!("no backend {name:?}"));
    }
    ctx.events.info(
        "balancer",
        format!(
            "admin API: backend {name}{}{}",
            change
                .state
                .as_ref()
                .map(|s| format!(" set to {s}"))
                .unwrap_or_default(),
            change
                .weight
                .map(|w| w.map_or(" weight reset".to_owned(), |w| format!(" weight {w}")))
                .unwrap_or_default()
        ),
        json!({"backend": name, "frontend": which.frontend}),
    );
    let view = pool
        .view()
        .into_iter()
        .find(|b| b.name == name || b.addr.to_string() == name);
    (StatusCode::OK, Json(json!({"backend": view}))).into_response()
}

fn find_pool(ctx: &NodeContext, frontend: Option<&str>) -> Option<Arc<SharedPool>> {
    match frontend {
        None => ctx
            .roles
            .http_balancer
            .borrow()
            .as_ref()
            .map(|h| super::balancer_http::pool_of(h)),
        Some(name) => ctx
            .roles
            .tcp_services
            .borrow()
            .iter()
            .find(|h| h.name == name)
            .map(|h| h.pool.clone()),
    }
}
