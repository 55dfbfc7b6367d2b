//! The storage role on the status page, the JSON API and /metrics: what
//! the role publishes, with the age of its data computed when asked (so a
//! poll that is stuck still shows how old the answer is).

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::metrics::Out;
use crate::gluster::health::{BrickState, Glusterd, VolumeState};
use crate::gluster::status::StorageStatus;
use crate::node::context::NodeContext;
use crate::node::events::now_ms;

/// The storage role's latest status, if this node runs it.
pub fn running(ctx: &NodeContext) -> Option<Arc<StorageStatus>> {
    ctx.roles
        .storage
        .borrow()
        .as_ref()
        .map(|h| h.status.borrow().clone())
}

/// `storage` of `/api/v1/status`; null without the storage role.
pub fn section(ctx: &NodeContext) -> Option<Value> {
    running(ctx).map(|s| to_json(&s, now_ms()))
}

/// The status with `data_age_ms`: how old the volume data shown is.
pub fn to_json(s: &StorageStatus, now_ms: i64) -> Value {
    let mut v = serde_json::to_value(s).unwrap_or(Value::Null);
    if let Value::Object(map) = &mut v {
        let age = s.last_good_ms.map(|t| now_ms.saturating_sub(t).max(0));
        map.insert("data_age_ms".into(), age.into());
        map.insert("summary".into(), s.summary().into());
    }
    v
}

/// `GET /api/v1/storage/answers`: what this node got from gluster itself,
/// for the storage nodes that take its answers instead of asking
/// (`gluster::share`).
pub async fn answers(State(ctx): State<Arc<NodeContext>>) -> Response {
    let handle = ctx.roles.storage.borrow().clone();
    match handle {
        Some(h) => {
            let kept = h.answers.borrow().clone();
            Json(kept.served(&ctx.identity.hostname, std::time::Instant::now())).into_response()
        }
        None => (
            StatusCode::NOT_FOUND,
            Json(serde_json::json!({"error": "this node has no storage role"})),
        )
            .into_response(),
    }
}

/// `GET /api/v1/storage`.
pub async fn status(State(ctx): State<Arc<NodeContext>>) -> Response {
    match section(&ctx) {
        Some(v) => Json(v).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            Json(serde_json::json!({"error": "this node has no storage role"})),
        )
            .into_response(),
    }
}

type Series = Vec<(Vec<(&'static str, String)>, f64)>;

/// Named after gluster-prometheus's metrics where one exists
/// (`gluster_brick_up`, `gluster_brick_capacity_*`, `gluster_volume_heal_count`...),
/// with piha_ prefixes for what it has no name for.
pub(super) fn metrics(
    s: &StorageStatus,
    now_ms: i64,
    out: &mut Out,
) -> Result<(), std::fmt::Error> {
    let flag = |b: bool| f64::from(u8::from(b));
    let Some(view) = &s.view else {
        return Ok(());
    };
    out.gauge(
        "piha_gluster_glusterd_up",
        "1 while the local glusterd answers the CLI in time",
        flag(view.glusterd == Glusterd::Running),
    )?;
    if let Some(t) = s.last_good_ms {
        out.gauge(
            "piha_gluster_data_age_seconds",
            "Age of the newest volume data gluster gave (grows while glusterd does not answer)",
            now_ms.saturating_sub(t).max(0) as f64 / 1000.0,
        )?;
    }
    out.gauge(
        "piha_gluster_poll_seconds",
        "Wall time of the last poll of gluster",
        s.poll_took_ms as f64 / 1000.0,
    )?;
    let mut up = Series::new();
    let mut state = Series::new();
    let mut heal = Series::new();
    let mut split = Series::new();
    let mut brick_up = Series::new();
    let mut total = Series::new();
    let mut free = Series::new();
    let mut used = Series::new();
    let mut inodes_total = Series::new();
    let mut inodes_free = Series::new();
    let mut brick_heal = Series::new();
    for v in &view.volumes {
        let vol = || vec![("volume", v.name.clone())];
        up.push((
            vol(),
            flag(matches!(v.state, VolumeState::Up | VolumeState::Degraded)),
        ));
        for st in [
            VolumeState::Up,
            VolumeState::Degraded,
            VolumeState::Unknown,
            VolumeState::Down,
        ] {
            let mut l = vol();
            l.push(("state", st.name().to_owned()));
            state.push((l, flag(v.state == st)));
        }
        if let Some(n) = v.heal_pending {
            heal.push((vol(), n as f64));
        }
        if let Some(n) = v.split_brain {
            split.push((vol(), n as f64));
        }
        for b in &v.bricks {
            let labels = || {
                vec![
                    ("volume", v.name.clone()),
                    ("hostname", b.host.clone()),
                    ("brick_path", b.path.clone()),
                ]
            };
            match b.state {
                BrickState::Online => brick_up.push((labels(), 1.0)),
                BrickState::Offline => brick_up.push((labels(), 0.0)),
                // Not known: no sample, rather than a made-up 0 or 1.
                BrickState::Unknown => {}
            }
            if let (Some(t), Some(f)) = (b.size_total, b.size_free) {
                total.push((labels(), t as f64));
                free.push((labels(), f as f64));
                used.push((labels(), t.saturating_sub(f) as f64));
            }
            if let (Some(t), Some(f)) = (b.inodes_total, b.inodes_free) {
                inodes_total.push((labels(), t as f64));
                inodes_free.push((labels(), f as f64));
            }
            if let Some(n) = b.heal_pending {
                brick_heal.push((labels(), n as f64));
            }
        }
    }
    out.gauges(
        "gluster_volume_up",
        "1 while the volume takes writes (UP or DEGRADED)",
        &up,
    )?;
    out.gauges(
        "piha_gluster_volume_state",
        "1 for the volume's state (UP, DEGRADED, UNKNOWN, DOWN), 0 for the others",
        &state,
    )?;
    out.gauges(
        "gluster_volume_heal_count",
        "Entries waiting to be healed (per replica set the largest brick count, summed)",
        &heal,
    )?;
    out.gauges(
        "gluster_volume_split_brain_heal_count",
        "Entries in split brain",
        &split,
    )?;
    out.gauges(
        "gluster_brick_up",
        "1 while the brick process runs, 0 when it does not; no sample while unknown",
        &brick_up,
    )?;
    out.gauges(
        "gluster_brick_capacity_bytes_total",
        "Size of the brick's file system",
        &total,
    )?;
    out.gauges(
        "gluster_brick_capacity_free_bytes",
        "Free space on the brick's file system",
        &free,
    )?;
    out.gauges(
        "gluster_brick_capacity_used_bytes",
        "Used space on the brick's file system",
        &used,
    )?;
    out.gauges(
        "gluster_brick_inodes_total",
        "Inodes of the brick's file system",
        &inodes_total,
    )?;
    out.gauges(
        "gluster_brick_inodes_free",
        "Free inodes of the brick's file system",
        &inodes_free,
    )?;
    out.gauges(
        "gluster_brick_heal_count",
        "Entries this brick holds for others to heal",
        &brick_heal,
    )?;
    let peers: Series = view
        .peers
        .iter()
        .filter(|p| !p.is_self)
        .map(|p| (vec![("hostname", p.hostname.clone())], flag(p.connected)))
        .collect();
    out.gauges(
        "gluster_peer_connected",
        "1 while the peer's glusterd is connected to this node's",
        &peers,
    )?;
    out.gauge(
        "piha_gluster_volume_mounted",
        "1 while the cluster's volume is mounted on [storage] mount",
        flag(s.mounted == Some(true)),
    )?;
    out.counter(
        "piha_gluster_mount_remounts",
        "Mounts found without their FUSE client and mounted again",
        s.remounts,
    )?;
    out.counter(
        "piha_gluster_fenced_connections",
        "Stalled connections to a down node's bricks cut so the volume goes on without it",
        s.fenced,
    )
}
