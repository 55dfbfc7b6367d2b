//! The db role's admin endpoints: `GET /api/v1/db` (open, like every read)
//! and the requests that change something (admin token): promote, follow,
//! fence, demote on the db node itself, switchover on the VRRP master,
//! and a base backup now (`POST /api/v1/db/backup`, on any db node).

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::auth;
use super::server::error;
use crate::node::context::NodeContext;
use crate::pg::supervisor::Request;
use crate::pg::supervisor::backup::{BackupError, Why};
use crate::pg::supervisor::error::DbError;

/// Longer than a promotion may take (pg_promote waits up to 60 s).
const REQUEST_LIMIT: Duration = Duration::from_secs(75);
/// A switchover waits for a standby to catch up and a promotion.
const SWITCHOVER_LIMIT: Duration = Duration::from_secs(180);

/// `GET /api/v1/db`: this node's db status.
pub async fn status(State(ctx): State<Arc<NodeContext>>) -> Response {
    match ctx.roles.db.borrow().as_ref() {
        Some(h) => Json(h.status().as_ref().clone()).into_response(),
        None => error(StatusCode::NOT_FOUND, "this node has no db role"),
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FollowBody {
    primary: String,
}

/// `POST /api/v1/db/{promote|fence|demote|follow}`.
pub async fn request(
    State(ctx): State<Arc<NodeContext>>,
    Path(action): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if let Some(refused) = refusal(&ctx, &headers) {
        return refused;
    }
    let request = match action.as_str() {
        "promote" => Request::Promote,
        "fence" => Request::Fence,
        "demote" => Request::Demote,
        "follow" => match serde_json::from_slice::<FollowBody>(&body) {
            Ok(b) => Request::Follow { primary: b.primary },
            Err(e) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    &format!("follow needs a JSON body {{\"primary\": \"<hostname>\"}}: {e}"),
                );
            }
        },
        _ => {
            return error(
                StatusCode::NOT_FOUND,
                "the db actions are promote, follow, fence and demote",
            );
        }
    };
    let Some(handle) = ctx.roles.db.borrow().clone() else {
        return error(StatusCode::NOT_FOUND, "this node has no db role");
    };
    match handle.ask(request, REQUEST_LIMIT).await {
        Ok(outcome) => Json(outcome).into_response(),
        Err(e) => error(StatusCode::CONFLICT, &e),
    }
}

/// `POST /api/v1/db/backup`: a base backup of this node's PostgreSQL
/// into the backup folder now (primary or standby), answered with the
/// backup once it is complete. 409 while another runs here, when backups
/// are off or PostgreSQL is not running.
pub async fn backup(State(ctx): State<Arc<NodeContext>>, headers: HeaderMap) -> Response {
    let token = ctx.running().config.admin_token.clone();
    if let Err(refusal) = auth::check(token.as_deref(), &headers) {
        return error(refusal.status(), &refusal.to_string());
    }
    let Some(handle) = ctx.roles.db.borrow().clone() else {
        return error(StatusCode::NOT_FOUND, "this node has no db role");
    };
    let Some(backups) = handle.backups().cloned() else {
        let s = handle.status();
        return error(
            StatusCode::CONFLICT,
            &format!("the db role cannot run here: {}", s.detail),
        );
    };
    match backups.take_now(Why::Requested).await {
        Ok(view) => Json(view).into_response(),
        Err(e @ (BackupError::Off | BackupError::Busy)) => {
            error(StatusCode::CONFLICT, &e.to_string())
        }
        Err(BackupError::Failed(e @ DbError::Refused(_))) => {
            error(StatusCode::CONFLICT, &e.to_string())
        }
        Err(BackupError::Failed(e)) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("the backup failed: {e}"),
        ),
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SwitchoverBody {
    to: String,
}

/// `POST /api/v1/db/switchover {"to": "pi-2"}`: runs on the VRRP master;
/// any other node answers 409 naming the master, so a client can ask it.
pub async fn switchover(
    State(ctx): State<Arc<NodeContext>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if let Some(refused) = refusal(&ctx, &headers) {
        return refused;
    }
    let body: SwitchoverBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                &format!("switchover needs a JSON body {{\"to\": \"<hostname>\"}}: {e}"),
            );
        }
    };
    let is_master = ctx
        .roles
        .vrrp
        .borrow()
        .as_ref()
        .is_some_and(|v| v.state == crate::vrrp::machine::State::Master);
    let handle = ctx.roles.failover.borrow().clone();
    let (Some(handle), true) = (handle, is_master) else {
        let master = master_admin(&ctx);
        let mut resp = (
            StatusCode::CONFLICT,
            Json(json!({
                "error": "only the VRRP master runs a switchover",
                "master": master.as_ref().map(|(h, _)| h),
                "master_admin": master.as_ref().map(|(_, a)| a),
            })),
        )
            .into_response();
        resp.headers_mut().insert(
            axum::http::header::CACHE_CONTROL,
            axum::http::HeaderValue::from_static("no-store"),
        );
        return resp;
    };
    match handle.switchover(body.to, SWITCHOVER_LIMIT).await {
        Ok(report) => Json(report).into_response(),
        Err(e) => error(StatusCode::CONFLICT, &e),
    }
}

/// The admin token check every changing endpoint makes: the answer to
/// send when it fails.
fn refusal(ctx: &NodeContext, headers: &HeaderMap) -> Option<Response> {
    let token = ctx.running().config.admin_token.clone();
    auth::check(token.as_deref(), headers)
        .err()
        .map(|r| error(r.status(), &r.to_string()))
}

/// The VRRP master as membership reports it: (hostname, admin address).
fn master_admin(ctx: &NodeContext) -> Option<(String, String)> {
    let view = ctx.membership.borrow().clone();
    let host = view
        .members
        .iter()
        .find(|m| {
            m.state == crate::membership::PeerState::Up
                && m.report.as_ref().is_some_and(|r| r.vrrp_master)
        })?
        .hostname
        .clone();
    let running = ctx.running();
    let node = running.config.nodes.iter().find(|n| n.hostname == host)?;
    Some((host, node.admin_addr().to_string()))
}
