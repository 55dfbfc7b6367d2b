//! The page a Pi serves when it cannot run as a node because of something
//! its owner fixes on the SD card: no cluster file, a cluster file with
//! mistakes, or a hostname the file does not know. Without it the card would
//! boot into a restart loop that only `journalctl` shows; with it, the owner
//! opens `http://<hostname>.local:9000/` and reads what to change.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use serde::Serialize;
use tokio::sync::watch;

/// What is wrong, as the page and the JSON API show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// The system's hostname, which the cluster file was searched for.
    pub hostname: String,
    /// The cluster file's path, when one was found.
    pub config_path: Option<String>,
    /// The error as `piha check` prints it (file, line, column, help).
    pub detail: String,
    /// What the owner can do about it, in one or two sentences.
    pub fix: String,
}

pub fn router(problem: watch::Receiver<Arc<Problem>>) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/api/v1/status", get(api))
        .route("/healthz", get(health))
        .fallback(|| async { (StatusCode::NOT_FOUND, "no such page\n") })
        .with_state(problem)
}

async fn index(State(problem): State<watch::Receiver<Arc<Problem>>>) -> Response {
    let page = render(&problem.borrow());
    let mut resp = (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        page,
    )
        .into_response();
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// The JSON a script (or the boot test) reads: `configured` is false, so no
/// client mistakes this for a node's status.
async fn api(State(problem): State<watch::Receiver<Arc<Problem>>>) -> Response {
    let problem = problem.borrow().clone();
    let body = serde_json::json!({
        "configured": false,
        "node": {"hostname": problem.hostname, "roles": []},
        "problem": *problem,
    });
    (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
}

/// Balancers and monitors must see this Pi as not serving.
async fn health() -> Response {
    (StatusCode::SERVICE_UNAVAILABLE, "not set up\n").into_response()
}

/// The whole page: no script, no external files, readable on a phone.
pub fn render(problem: &Problem) -> String {
    let file = problem
        .config_path
        .as_deref()
        .unwrap_or("/boot/firmware/piha/cluster.toml");
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta http-equiv=\"refresh\" content=\"10\">\
         <title>piha: {host} is not set up</title>\
         <style>body{{font:16px/1.5 system-ui,sans-serif;max-width:48em;margin:2em auto;padding:0 1em}}\
         h1{{color:#a00}}pre{{background:#f4f4f4;padding:1em;overflow-x:auto;white-space:pre-wrap}}</style>\
         </head><body>\
         <h1>This Pi ({host}) is not part of the cluster yet</h1>\
         <p>{fix}</p>\
         <h2>What piha found</h2><pre>{detail}</pre>\
         <p>Cluster file: <code>{file}</code> (on the SD card's boot partition: <code>piha/cluster.toml</code>).\
         piha checks again every few seconds and starts as soon as the problem is gone; \
         this page reloads by itself.</p>\
         </body></html>\n",
        host = escape(&problem.hostname),
        fix = escape(&problem.fix),
        detail = escape(&problem.detail),
        file = escape(file),
    )
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_names_the_hostname_and_escapes_what_it_quotes() {
        let page = render(&Problem {
            hostname: "raspberrypi".into(),
            config_path: Some("/boot/firmware/piha/cluster.toml".into()),
            detail: "no node \"<script>\" in cluster.toml".into(),
            fix: "Set hostname= in piha/firstboot.txt".into(),
        });
        assert!(page.contains("This Pi (raspberrypi) is not part of the cluster yet"));
        assert!(page.contains("no node &quot;&lt;script&gt;&quot;"));
        assert!(!page.contains("<script>"));
    }
}
