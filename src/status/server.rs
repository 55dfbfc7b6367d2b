//! The admin port: status page, JSON API, /metrics, and the one endpoint
//! that changes something (reload, behind the bearer token).
//!
//! The accept loop is written out (rather than `axum::serve`) because axum's
//! helper has no header timeout and no connection cap: a phone on flaky
//! Wi-Fi or a port scanner must not be able to hold the Pi's sockets open.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower_service_shim::call;

use super::{api, auth, metrics, page};
use crate::node::context::NodeContext;
use crate::node::notify;
use crate::node::reload::ReloadRequest;

/// Status pages, Prometheus and a few curl users: far below this.
const MAX_CONNECTIONS: usize = 128;
/// A client must send its request headers within this time.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Request bodies are tiny (reload has none).
const MAX_BODY: usize = 64 * 1024;
/// hyper's read buffer, which bounds a request head.
const MAX_HEAD: usize = 16 * 1024;
/// In-flight requests get this long to finish when the node stops.
const DRAIN: Duration = Duration::from_secs(3);

pub async fn run(ctx: Arc<NodeContext>) -> anyhow::Result<()> {
    let addr = SocketAddr::new(ctx.identity.address, ctx.running().plan.admin_port);
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot serve the status page on tcp {addr}"))?;
    tracing::info!("status page on http://{addr}/");
    notify::ready(&format!("status page on http://{addr}/"));
    serve(listener, router(ctx.clone()), ctx.shutdown.clone()).await;
    Ok(())
}

/// Serves `app` on `listener` until `shutdown`, with the admin port's
/// limits (connection cap, header timeout, head size), then lets in-flight
/// requests finish for a bounded time. Also used by the page a Pi shows
/// while it is not set up (`node::unconfigured`).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let addr = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| "the admin port".to_owned());
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (stream, _peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                // EMFILE and friends: back off a little instead of spinning.
                Err(e) => {
                    tracing::warn!("accept on {addr} failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => break,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            continue; // over the cap: dropping the stream closes it
        };
        let app = app.clone();
        let service =
            hyper::service::service_fn(move |req: hyper::Request<Incoming>| call(app.clone(), req));
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_TIMEOUT)
            .max_buf_size(MAX_HEAD)
            .serve_connection(TokioIo::new(stream), service);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            let _slot = slot;
            if let Err(e) = conn.await {
                tracing::debug!("status connection: {e}");
            }
        });
    }
    let _ = tokio::time::timeout(DRAIN, graceful.shutdown()).await;
}

pub fn router(ctx: Arc<NodeContext>) -> Router {
    Router::new()
        .route("/", get(page::index))
        .route("/style.css", get(page::style))
        .route("/app.js", get(page::script))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/api/v1/status", get(status))
        .route("/metrics", get(prometheus))
        .route("/api/v1/reload", post(reload))
        .route("/api/v1/services/{name}/{action}", post(control_service))
        .route(
            "/api/v1/balancer/backends/{name}",
            post(super::balancer::change_backend),
        )
        .route("/api/v1/db", get(super::db_api::status))
        .route("/api/v1/storage", get(super::storage::status))
        .route(crate::gluster::share::PATH, get(super::storage::answers))
        .route("/api/v1/db/switchover", post(super::db_api::switchover))
        .route("/api/v1/db/backup", post(super::db_api::backup))
        .route("/api/v1/db/{action}", post(super::db_api::request))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no such page") })
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(ctx)
}

async fn status(State(ctx): State<Arc<NodeContext>>) -> Response {
    let mut resp = Json(api::build(&ctx)).into_response();
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

async fn prometheus(State(ctx): State<Arc<NodeContext>>) -> Response {
    match metrics::render(&ctx) {
        Ok(text) => ([(header::CONTENT_TYPE, metrics::CONTENT_TYPE)], text).into_response(),
        Err(_) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "could not encode metrics",
        ),
    }
}

/// `POST /api/v1/reload`: the same as SIGHUP, answered with the outcome.
async fn reload(State(ctx): State<Arc<NodeContext>>, headers: HeaderMap) -> Response {
    let token = ctx.running().config.admin_token.clone();
    if let Err(refusal) = auth::check(token.as_deref(), &headers) {
        return error(refusal.status(), &refusal.to_string());
    }
    let (reply, answer) = tokio::sync::oneshot::channel();
    if ctx.reload.send(ReloadRequest { reply }).await.is_err() {
        return error(StatusCode::SERVICE_UNAVAILABLE, "the node is stopping");
    }
    match tokio::time::timeout(Duration::from_secs(10), answer).await {
        Ok(Ok(outcome)) => {
            let code = match outcome {
                crate::node::reload::ReloadOutcome::Rejected { .. } => {
                    StatusCode::UNPROCESSABLE_ENTITY
                }
                _ => StatusCode::OK,
            };
            (code, Json(outcome)).into_response()
        }
        _ => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "reload did not answer in time",
        ),
    }
}

/// Services an operator may stop and start: the balancer role's front
/// ends, so a balancer can be taken out (VRRP tracking then moves the VIP)
/// without stopping the node. The rest keep the node itself running.
const STOPPABLE: [&str; 3] = ["balancer-http", "balancer-tcp", "pooler"];

/// `POST /api/v1/services/{name}/stop|start`.
async fn control_service(
    State(ctx): State<Arc<NodeContext>>,
    axum::extract::Path((name, action)): axum::extract::Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let token = ctx.running().config.admin_token.clone();
    if let Err(refusal) = auth::check(token.as_deref(), &headers) {
        return error(refusal.status(), &refusal.to_string());
    }
    if !STOPPABLE.contains(&name.as_str()) {
        let msg = format!(
            "{name} cannot be stopped on its own; these can: {}",
            STOPPABLE.join(", ")
        );
        return error(StatusCode::NOT_FOUND, &msg);
    }
    let stop = match action.as_str() {
        "stop" => true,
        "start" => false,
        _ => return error(StatusCode::NOT_FOUND, "the action is stop or start"),
    };
    ctx.held.send_modify(|held| {
        if stop {
            held.insert(name.clone());
        } else {
            held.remove(&name);
        }
    });
    Json(json!({"service": name, "held": stop})).into_response()
}

pub fn error(code: StatusCode, message: &str) -> Response {
    (code, Json(json!({"error": message}))).into_response()
}

/// Calls an axum Router from a hyper service without pulling in tower's
/// `ServiceExt` for one line.
mod tower_service_shim {
    use axum::Router;
    use axum::body::Body;
    use axum::response::Response;
    use tower_service::Service;

    pub async fn call(
        mut app: Router,
        req: hyper::Request<hyper::body::Incoming>,
    ) -> Result<Response, std::convert::Infallible> {
        app.call(req.map(Body::new)).await
    }
}
