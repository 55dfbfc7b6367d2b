//! Answers the balancer gives itself, when no backend answer can be had.
//! Each is a small JSON body naming why, so a person with curl and a
//! monitoring script both see the reason; 503s carry `Retry-After: 1`: the
//! condition is usually brief (a full queue, a backend restarting).

use std::sync::atomic::Ordering;

use hyper::header::{self, HeaderValue};
use hyper::{Response, StatusCode};
use serde_json::json;

use super::body::ResponseBody;
use super::stats::FrontCounters;
use crate::balancer::shared::AcquireError;

/// A local answer and which front-end counter it bumps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Local {
    Unavailable(AcquireError),
    BadRequest(&'static str),
    TooLarge(u64),
    BadGateway(String),
    GatewayTimeout,
    NotAllowed(&'static str),
}

impl Local {
    pub fn status(&self) -> StatusCode {
        match self {
            Local::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Local::BadRequest(_) => StatusCode::BAD_REQUEST,
            Local::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Local::BadGateway(_) => StatusCode::BAD_GATEWAY,
            Local::GatewayTimeout => StatusCode::GATEWAY_TIMEOUT,
            Local::NotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
        }
    }

    /// Short machine-readable reason.
    pub fn reason(&self) -> &'static str {
        match self {
            Local::Unavailable(AcquireError::NoBackend) => "no_backend",
            Local::Unavailable(AcquireError::QueueFull) => "queue_full",
            Local::Unavailable(AcquireError::QueueTimeout) => "queue_timeout",
            Local::BadRequest(_) => "bad_request",
            Local::TooLarge(_) => "body_too_large",
            Local::BadGateway(_) => "backend_failed",
            Local::GatewayTimeout => "backend_timeout",
            Local::NotAllowed(_) => "method_not_allowed",
        }
    }

    pub fn message(&self) -> String {
        match self {
            Local::Unavailable(e) => e.to_string(),
            Local::BadRequest(why) => format!("bad request: {why}"),
            Local::TooLarge(limit) => format!("request body larger than {limit} bytes"),
            Local::BadGateway(why) => format!("the backend failed: {why}"),
            Local::GatewayTimeout => "the backend did not answer in time".to_owned(),
            Local::NotAllowed(why) => (*why).to_owned(),
        }
    }

    /// After these the client's byte stream cannot be trusted or was not
    /// read to the end: close the (HTTP/1) connection.
    fn closes(&self) -> bool {
        matches!(self, Local::BadRequest(_) | Local::TooLarge(_))
    }

    fn count(&self, f: &FrontCounters) {
        let c = match self {
            Local::Unavailable(AcquireError::NoBackend) => &f.no_backend,
            Local::Unavailable(AcquireError::QueueFull) => &f.queue_full,
            Local::Unavailable(AcquireError::QueueTimeout) => &f.queue_timeout,
            Local::BadRequest(_) | Local::NotAllowed(_) => &f.bad_requests,
            Local::TooLarge(_) => &f.too_large,
            Local::BadGateway(_) => &f.bad_gateway,
            Local::GatewayTimeout => &f.gateway_timeout,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// The response; `http1` says whether `Connection: close` means anything.
    pub fn response(&self, front: &FrontCounters, http1: bool) -> Response<ResponseBody> {
        self.count(front);
        let body = json!({"error": self.message(), "reason": self.reason()}).to_string() + "\n";
        let mut resp = Response::new(ResponseBody::local(body));
        *resp.status_mut() = self.status();
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if matches!(self, Local::Unavailable(_)) {
            h.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if matches!(self, Local::NotAllowed(_)) {
            h.insert(
                header::ALLOW,
                HeaderValue::from_static("GET, HEAD, OPTIONS, POST, PUT, PATCH, DELETE"),
            );
        }
        if http1 && self.closes() {
            h.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        resp
    }
}
