//! The built-in endpoints: `/health` for the balancer's checks, and the
//! stateless drill endpoints `/api/random/*` that show which node answered.

use std::path::Path;
use std::time::Duration;

use hyper::{Method, Response, StatusCode, header};
use serde_json::json;

use super::files::resolve::serving_problem;
use super::respond;
use super::server::Body;

/// A health check must answer before the checker's own timeout (1 s by
/// default); a root that takes longer to stat is as good as unusable.
const ROOT_CHECK_TIMEOUT: Duration = Duration::from_millis(800);

/// Whether the path is one of ours (these take precedence over files).
pub fn is_endpoint(path: &str) -> bool {
    path == "/health" || path.starts_with("/api/random/")
}

pub async fn handle(method: &Method, path: &str, hostname: &str, root: &Path) -> Response<Body> {
    if method != Method::GET && method != Method::HEAD {
        let mut resp = respond::text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
        resp.headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static("GET, HEAD"));
        return resp;
    }
    match path {
        "/health" => health(hostname, root).await,
        _ => random(path.trim_start_matches("/api/random/"), hostname),
    }
}

/// 200 while files can be served, 503 (with the reason) when the document
/// root is unusable or, on a Gluster mount, part of the volume is out of
/// this node's reach, so balancers stop sending file requests here.
async fn health(hostname: &str, root: &Path) -> Response<Body> {
    let check_root = root.to_path_buf();
    let problem = tokio::time::timeout(
        ROOT_CHECK_TIMEOUT,
        tokio::task::spawn_blocking(move || serving_problem(&check_root)),
    )
    .await;
    let problem = match problem {
        Ok(Ok(problem)) => problem,
        Ok(Err(_)) => Some("root check failed".to_owned()),
        Err(_) => Some(format!("document root {} is not answering", root.display())),
    };
    match problem {
        None => respond::json(StatusCode::OK, &json!({"status": "ok", "node": hostname})),
        Some(reason) => respond::json(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({"status": "degraded", "node": hostname, "reason": reason}),
        ),
    }
}

/// Java-style names, as the drills that used the old Apache setup expect:
/// int is 32-bit (exact in JavaScript), float and double are in [0, 1).
fn random(kind: &str, hostname: &str) -> Response<Body> {
    let value = match kind {
        "bool" => json!(rand::random::<bool>()),
        "int" => json!(rand::random::<i32>()),
        "float" => json!(rand::random::<f32>()),
        "double" => json!(rand::random::<f64>()),
        _ => {
            return respond::json(
                StatusCode::NOT_FOUND,
                &json!({"error": "no such endpoint", "try": ["bool", "int", "float", "double"]}),
            );
        }
    };
    respond::json(StatusCode::OK, &json!({"node": hostname, "value": value}))
}
