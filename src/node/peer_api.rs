//! Calls to another node's admin API (the db failover's promote, follow,
//! fence, demote and db status; the storage role's shared answers), with
//! the cluster's admin token. Bounded: a deadline per call and a cap on
//! the answer's size.

use std::net::SocketAddr;
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

/// An answer is a small JSON document.
const MAX_ANSWER: usize = 256 * 1024;

/// A call that failed: why, and the answer's JSON when there was one (a
/// refusal may carry details, such as which node to ask instead).
#[derive(Debug, Clone)]
pub struct PeerError {
    pub message: String,
    pub body: Option<Value>,
}

impl std::fmt::Display for PeerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<PeerError> for String {
    fn from(e: PeerError) -> String {
        e.message
    }
}

fn plain(message: String) -> PeerError {
    PeerError {
        message,
        body: None,
    }
}

pub struct PeerApi {
    client: Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
    token: Option<String>,
}

impl PeerApi {
    pub fn new(token: Option<String>) -> PeerApi {
        PeerApi {
            client: Client::builder(TokioExecutor::new()).build_http(),
            token,
        }
    }

    pub async fn get(
        &self,
        admin: SocketAddr,
        path: &str,
        limit: Duration,
    ) -> Result<Value, PeerError> {
        self.call(hyper::Method::GET, admin, path, None, limit)
            .await
    }

    pub async fn post(
        &self,
        admin: SocketAddr,
        path: &str,
        body: Value,
        limit: Duration,
    ) -> Result<Value, PeerError> {
        self.call(hyper::Method::POST, admin, path, Some(body), limit)
            .await
    }

    async fn call(
        &self,
        method: hyper::Method,
        admin: SocketAddr,
        path: &str,
        body: Option<Value>,
        limit: Duration,
    ) -> Result<Value, PeerError> {
        let url = format!("http://{admin}{path}");
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(&url)
            .header(hyper::header::CONTENT_TYPE, "application/json");
        if let Some(t) = &self.token {
            req = req.header(hyper::header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let bytes = body.map(|b| b.to_string()).unwrap_or_default();
        let req = req
            .body(Full::new(Bytes::from(bytes)))
            .map_err(|e| plain(format!("{url}: {e}")))?;
        let work = async {
            let resp = self
                .client
                .request(req)
                .await
                .map_err(|e| plain(format!("cannot reach {url}: {e}")))?;
            let status = resp.status();
            let body = Limited::new(resp.into_body(), MAX_ANSWER)
                .collect()
                .await
                .map_err(|e| plain(format!("{url}: reading the answer: {e}")))?
                .to_bytes();
            let value: Value = serde_json::from_slice(&body).unwrap_or_else(
                |_| serde_json::json!({"error": String::from_utf8_lossy(&body).into_owned()}),
            );
            if status.is_success() {
                Ok(value)
            } else {
                let why = value
                    .get("error")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
                    .unwrap_or_else(|| value.to_string());
                Err(PeerError {
                    message: format!("{url} answered {status}: {why}"),
                    body: Some(value),
                })
            }
        };
        tokio::time::timeout(limit, work)
            .await
            .map_err(|_| plain(format!("{url} did not answer within {} s", limit.as_secs())))?
    }
}
