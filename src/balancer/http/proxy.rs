//! One request through the balancer: admit it, take a backend lease (maybe
//! waiting in the queue), rewrite the head, forward it on a backend
//! keep-alive connection (`upstream`), and stream the answer back, or answer
//! locally.
//!
//! Retries follow nginx's `proxy_next_upstream error` with the safety rule of
//! the research notes: a request moves to another backend at most once, and
//! only when nothing of it can have been acted on twice:
//! - the connection to the backend failed (nothing was sent), any method;
//! - the backend closed or reset before its response head, for idempotent
//!   methods (GET, HEAD, OPTIONS, TRACE, PUT, DELETE) whose body (if any)
//!   was never read.
//!
//! A POST that reached the backend is never replayed: the client gets 502.
//! Both kinds of failure are passive strikes against the backend; a missing
//! response head within `server_timeout` is a 504 and not retried (the
//! backend may still be working on it, and the wait would double).

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use hyper::body::{Body, Incoming};
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::http::request::Parts;
use hyper::http::uri::PathAndQuery;
use hyper::{Method, Request, Response, StatusCode, Uri, Version};
use tokio_util::sync::CancellationToken;

use super::Handle;
use super::body::{BodySlot, Fault, RequestBody, ResponseBody};
use super::conn::ConnState;
use super::headers::{self, Origin};
use super::reply::Local;
use super::stats::BackendCounters;
use super::upgrade;
use super::upstream::{self, Checkin};
use crate::balancer::shared::Lease;

/// What a request's handling needs from its connection.
pub struct RequestCtx {
    pub peer: SocketAddr,
    pub tls: bool,
    /// The forwarding headers' view of `peer`, formatted once.
    pub client: headers::Client,
    pub conn: Arc<ConnState>,
    pub handle: Arc<Handle>,
    pub shutdown: CancellationToken,
}

/// hyper's service entry: every request gets an answer, never an error
/// (an error would make hyper drop the connection without a word).
pub async fn handle(req: Request<Incoming>, cx: &RequestCtx) -> Response<ResponseBody> {
    let in_flight = cx.conn.begin();
    let stats = &cx.handle.stats;
    stats.front.requests.fetch_add(1, Ordering::Relaxed);
    stats.front.rate.record(stats.second());
    let mut resp = proxy(req, cx).await;
    stats.front.responses.record(resp.status().as_u16());
    resp.body_mut().hold(in_flight);
    resp
}

async fn proxy(mut req: Request<Incoming>, cx: &RequestCtx) -> Response<ResponseBody> {
    let h = &cx.handle;
    let limits = &h.settings.limits;
    let http1 = req.version() <= Version::HTTP_11;
    let local = |l: Local| l.response(&h.stats.front, http1);
    if req.method() == Method::CONNECT {
        return local(Local::NotAllowed(
            "CONNECT is not served by a reverse proxy",
        ));
    }
    if let (Some(limit), Some(len)) = (limits.max_body_bytes, req.body().size_hint().exact()) {
        if len > limit {
            return local(Local::TooLarge(limit));
        }
    }
    let upgrade = http1 && headers::wants_upgrade(req.headers());
    let on_client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let (parts, body) = req.into_parts();
    let idempotent = is_idempotent(&parts.method);
    let mut head = match Head::new(parts, cx, upgrade) {
        Ok(head) => head,
        Err(why) => return local(Local::BadRequest(why)),
    };
    let slot = BodySlot::new(body);
    let mut exclude = None;
    let mut failed: Option<Failure> = None;
    loop {
        let lease = match h
            .pool
            .acquire(cx.peer.ip(), exclude, limits.queue_timeout)
            .await
        {
            Ok(lease) => lease,
            Err(e) => {
                return local(match failed {
                    None => Local::Unavailable(e),
                    // The retry found no other backend: report the failure.
                    Some(f) => Local::BadGateway(f.detail),
                });
            }
        };
        let addr = lease.addr;
        let counters = h.stats.backend(addr);
        counters.requests.fetch_add(1, Ordering::Relaxed);
        counters.rate.record(h.stats.second());
        let body = RequestBody::new(slot.clone(), limits.max_body_bytes, counters.clone());
        // A connect failure is retried before the request is built, so only
        // an idempotent request can need its head again.
        let last = failed.is_some() || !idempotent;
        let request = head.request(addr, body, last);
        let sent = Instant::now();
        let outcome =
            tokio::time::timeout(limits.server_timeout, h.upstream.send(addr, request)).await;
        let error = match outcome {
            Ok(Ok((resp, checkin))) => {
                counters.latency.record(sent.elapsed());
                counters.responses.record(resp.status().as_u16());
                return respond(
                    resp,
                    lease,
                    checkin,
                    counters,
                    on_client_upgrade,
                    cx,
                    &local,
                );
            }
            Err(_elapsed) => {
                counters.timeouts.fetch_add(1, Ordering::Relaxed);
                return local(Local::GatewayTimeout);
            }
            Ok(Err(e)) => e,
        };
        match slot.fault() {
            Some(Fault::TooLarge) => {
                return local(Local::TooLarge(limits.max_body_bytes.unwrap_or(0)));
            }
            Some(Fault::Client) => {
                return local(Local::BadRequest(
                    "the request body was malformed or cut short",
                ));
            }
            None => {}
        }
        let failure = classify(&error);
        failure.count(&counters);
        if failure.kind != Kind::Other {
            h.strike(addr, &failure.detail);
        }
        let retry = failed.is_none()
            && slot.untouched()
            && match failure.kind {
                Kind::Connect => true,
                Kind::BeforeHead => idempotent,
                Kind::Other => false,
            };
        if !retry {
            return local(Local::BadGateway(failure.detail));
        }
        tracing::debug!(
            "retrying {} away from {addr}: {}",
            head.path,
            failure.detail
        );
        counters.retries.fetch_add(1, Ordering::Relaxed);
        h.stats.front.retries.fetch_add(1, Ordering::Relaxed);
        exclude = Some(addr);
        failed = Some(failure);
        drop(lease);
    }
}

/// The backend's answer on its way to the client: hop-by-hop headers
/// dropped, or for a 101 the tunnel started.
#[allow(clippy::too_many_arguments)]
fn respond(
    mut resp: Response<Incoming>,
    lease: Lease,
    checkin: Checkin,
    counters: Arc<BackendCounters>,
    on_client_upgrade: Option<hyper::upgrade::OnUpgrade>,
    cx: &RequestCtx,
    local: &dyn Fn(Local) -> Response<ResponseBody>,
) -> Response<ResponseBody> {
    *resp.version_mut() = Version::HTTP_11;
    if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        headers::strip_hop_by_hop(resp.headers_mut(), false);
        return resp.map(|body| ResponseBody::proxied(body, lease, checkin, counters));
    }
    let Some(on_client) = on_client_upgrade else {
        return local(Local::BadGateway(
            "the backend switched protocols unasked".to_owned(),
        ));
    };
    let on_backend = hyper::upgrade::on(&mut resp);
    headers::strip_hop_by_hop(resp.headers_mut(), true);
    tokio::spawn(upgrade::tunnel(
        on_client,
        on_backend,
        lease,
        cx.conn.clone(),
        cx.handle.settings.limits.idle_timeout,
        cx.shutdown.clone(),
    ));
    let (parts, _) = resp.into_parts();
    Response::from_parts(parts, ResponseBody::empty())
}

/// The request head as every attempt sends it; only the backend differs.
struct Head {
    method: Method,
    /// Origin-form: what the backend sees as the request target.
    path: PathAndQuery,
    headers: HeaderMap,
}

impl Head {
    /// Takes the client's head apart (no copy of its headers) and rewrites
    /// it for the backends.
    fn new(parts: Parts, cx: &RequestCtx, upgrade: bool) -> Result<Head, &'static str> {
        let path = match parts.uri.path_and_query() {
            Some(p) => p.clone(),
            None => PathAndQuery::from_static("/"),
        };
        if !path.as_str().starts_with('/') {
            return Err("the request target must be a path");
        }
        let mut headers = parts.headers;
        headers::strip_hop_by_hop(&mut headers, upgrade);
        // hyper already answered any 100-continue to the client, when the
        // body was first asked for; the backend need not send another.
        headers.remove(header::EXPECT);
        if parts.version == Version::HTTP_2 {
            headers::join_cookies(&mut headers);
        }
        if !headers.contains_key(header::HOST) {
            if let Some(authority) = parts.uri.authority() {
                if let Ok(v) = HeaderValue::from_str(authority.as_str()) {
                    headers.insert(header::HOST, v);
                }
            }
        }
        let host = headers.get(header::HOST).cloned();
        let origin = Origin {
            client: &cx.client,
            proto: if cx.tls { "https" } else { "http" },
            host: host.as_ref(),
        };
        headers::add_forwarding(&mut headers, &origin);
        Ok(Head {
            method: parts.method,
            path,
            headers,
        })
    }

    /// The request for one attempt. `last`: no attempt can follow, so the
    /// headers move instead of being copied.
    fn request(&mut self, addr: SocketAddr, body: RequestBody, last: bool) -> Request<RequestBody> {
        let mut req = Request::new(body);
        *req.method_mut() = self.method.clone();
        *req.uri_mut() = Uri::from(self.path.clone());
        *req.version_mut() = Version::HTTP_11;
        *req.headers_mut() = if last {
            std::mem::take(&mut self.headers)
        } else {
            self.headers.clone()
        };
        // A client without Host (HTTP/1.0) gets the backend's, as an
        // absolute-form request to it would have.
        if !req.headers().contains_key(header::HOST) {
            if let Ok(v) = HeaderValue::from_str(&addr.to_string()) {
                req.headers_mut().insert(header::HOST, v);
            }
        }
        req
    }
}

/// RFC 9110 §9.2.2.
fn is_idempotent(m: &Method) -> bool {
    matches!(
        *m,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// No connection: nothing was sent.
    Connect,
    /// Connected, then closed or reset before any response byte.
    BeforeHead,
    /// Anything else (an invalid response head...).
    Other,
}

#[derive(Debug, Clone)]
struct Failure {
    kind: Kind,
    detail: String,
}

impl Failure {
    fn count(&self, c: &BackendCounters) {
        let counter = match self.kind {
            Kind::Connect => &c.connect_errors,
            Kind::BeforeHead | Kind::Other => &c.response_errors,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Reads the error's cause chain: `upstream` marks connect errors; the rest
/// is told by hyper's own error kinds and the IO error beneath.
fn classify(e: &upstream::Error) -> Failure {
    let io_kind = io_kind(e);
    if e.is_connect() {
        let detail = match io_kind {
            Some(io::ErrorKind::ConnectionRefused) => "connect refused".to_owned(),
            Some(io::ErrorKind::TimedOut) => "connect timeout".to_owned(),
            _ => format!("connect failed: {}", chain(e)),
        };
        return Failure {
            kind: Kind::Connect,
            detail,
        };
    }
    let hyper_error = causes(e).find_map(|s| s.downcast_ref::<hyper::Error>());
    let before_head = hyper_error.is_some_and(|h| h.is_incomplete_message() || h.is_canceled())
        || matches!(
            io_kind,
            Some(
                io::ErrorKind::ConnectionReset
                    | io::ErrorKind::ConnectionAborted
                    | io::ErrorKind::BrokenPipe
                    | io::ErrorKind::UnexpectedEof
            )
        );
    if before_head {
        let detail = match io_kind {
            Some(io::ErrorKind::ConnectionReset) => "reset before the response",
            _ => "closed before the response",
        };
        return Failure {
            kind: Kind::BeforeHead,
            detail: detail.to_owned(),
        };
    }
    Failure {
        kind: Kind::Other,
        detail: chain(e),
    }
}

/// `e` and its sources, outermost first.
fn causes<'a>(
    e: &'a (dyn std::error::Error + 'static),
) -> impl Iterator<Item = &'a (dyn std::error::Error + 'static)> {
    std::iter::successors(Some(e), |&s| s.source())
}

fn io_kind(e: &(dyn std::error::Error + 'static)) -> Option<io::ErrorKind> {
    causes(e)
        .find_map(|s| s.downcast_ref::<io::Error>())
        .map(io::Error::kind)
}

/// "client error (SendRequest): connection closed..." as one line.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    causes(e)
        .map(|s| s.to_string())
        .collect::<Vec<_>>()
        .join(": ")
}
