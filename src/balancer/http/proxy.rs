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

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use hyper::body::{Body, Incoming};
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::http::request::Parts;
use hyper::http::uri::PathAndQuery;
use hyper::{Method, Request, Response, StatusCode, Version};
use tokio_util::sync::CancellationToken;

use super::Handle;
use super::body::{BodySlot, Fault, RequestBody, ResponseBody};
use super::conn::ConnState;
use super::headers::{self, Forwarding, Origin};
use super::reply::Local;
use super::stats::BackendCounters;
use super::upgrade;
use super::upstream::{self, BackendBody, Outgoing};
use crate::balancer::shared::Lease;

/// What a request's handling needs from its connection.
pub struct RequestCtx {
    pub peer: SocketAddr,
    pub tls: bool,
    /// The forwarding headers' view of `peer`, formatted once.
    pub client: headers::Client,
    pub conn: Arc<ConnState>,
    pub handle: Arc<Handle>,
    /// The backend connections of the runtime serving this connection.
    pub upstream: Arc<upstream::Upstream>,
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
    let head = match Head::new(parts, cx, upgrade) {
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
        let chunked = !slot.is_empty() && !head.headers.contains_key(header::CONTENT_LENGTH);
        let encoded = head.encode(addr, chunked);
        let request = Outgoing {
            head: encoded,
            head_request: head.method == Method::HEAD,
            body,
            chunked,
            max_head: limits.max_header_bytes as usize,
        };
        let sent = Instant::now();
        let outcome =
            tokio::time::timeout(limits.server_timeout, cx.upstream.send(addr, request)).await;
        let error = match outcome {
            Ok(Ok(resp)) => {
                counters.latency.record(sent.elapsed());
                counters.responses.record(resp.status().as_u16());
                return respond(resp, lease, counters, on_client_upgrade, cx, &local);
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
fn respond(
    mut resp: Response<BackendBody>,
    lease: Lease,
    counters: Arc<BackendCounters>,
    on_client_upgrade: Option<hyper::upgrade::OnUpgrade>,
    cx: &RequestCtx,
    local: &dyn Fn(Local) -> Response<ResponseBody>,
) -> Response<ResponseBody> {
    *resp.version_mut() = Version::HTTP_11;
    if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        headers::strip_hop_by_hop(resp.headers_mut(), false);
        return resp.map(|body| ResponseBody::proxied(body, lease, counters));
    }
    let Some(on_client) = on_client_upgrade else {
        return local(Local::BadGateway(
            "the backend switched protocols unasked".to_owned(),
        ));
    };
    headers::strip_hop_by_hop(resp.headers_mut(), true);
    let (parts, body) = resp.into_parts();
    let Some(backend) = body.into_upgraded() else {
        return local(Local::BadGateway(
            "the backend switched protocols without a connection to hand over".to_owned(),
        ));
    };
    tokio::spawn(upgrade::tunnel(
        on_client,
        backend,
        lease,
        cx.conn.clone(),
        cx.handle.settings.limits.idle_timeout,
        cx.shutdown.clone(),
    ));
    Response::from_parts(parts, ResponseBody::empty())
}

/// The request head as every attempt sends it; only the backend differs.
struct Head<'a> {
    method: Method,
    /// Origin-form: what the backend sees as the request target.
    path: PathAndQuery,
    /// The client's headers, less the hop-by-hop and forwarding ones.
    headers: HeaderMap,
    /// The client sent a Host (or h2 `:authority`), now in `headers`.
    has_host: bool,
    forwarding: Forwarding<'a>,
}

impl<'a> Head<'a> {
    /// Takes the client's head apart (no copy of its headers) and rewrites
    /// it for the backends.
    fn new(parts: Parts, cx: &'a RequestCtx, upgrade: bool) -> Result<Head<'a>, &'static str> {
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
        let host = match headers.get(header::HOST) {
            Some(host) => Some(host.clone()),
            None => {
                let authority = parts.uri.authority();
                let host = authority.and_then(|a| HeaderValue::from_str(a.as_str()).ok());
                if let Some(host) = &host {
                    headers.insert(header::HOST, host.clone());
                }
                host
            }
        };
        let has_host = host.is_some();
        let origin = Origin {
            client: &cx.client,
            proto: if cx.tls { "https" } else { "http" },
            host,
        };
        let forwarding = Forwarding::take(&mut headers, origin);
        Ok(Head {
            method: parts.method,
            path,
            headers,
            has_host,
            forwarding,
        })
    }

    /// The head as one attempt sends it to `addr`: request line, headers
    /// and the empty line. `chunked`: the body goes with the chunked
    /// coding (its length is unknown).
    fn encode(&self, addr: SocketAddr, chunked: bool) -> Vec<u8> {
        let size: usize = self
            .headers
            .iter()
            .map(|(n, v)| n.as_str().len() + v.len() + 4)
            .sum();
        // Room for the forwarding lines too (about 150 bytes).
        let mut out = Vec::with_capacity(size + self.path.as_str().len() + 256);
        out.extend_from_slice(self.method.as_str().as_bytes());
        out.push(b' ');
        out.extend_from_slice(self.path.as_str().as_bytes());
        out.extend_from_slice(b" HTTP/1.1\r\n");
        for (name, value) in &self.headers {
            out.extend_from_slice(name.as_str().as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        // A client without Host (HTTP/1.0) gets the backend's, as an
        // absolute-form request to it would have.
        if !self.has_host {
            out.extend_from_slice(format!("host: {addr}\r\n").as_bytes());
        }
        self.forwarding.write(&mut out);
        if chunked {
            out.extend_from_slice(b"transfer-encoding: chunked\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out
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

/// Which failures allow a retry, and how they are counted.
fn classify(e: &upstream::Error) -> Failure {
    let kind = match e {
        upstream::Error::Connect(_) => Kind::Connect,
        upstream::Error::Closed(_) => Kind::BeforeHead,
        upstream::Error::Response(_) | upstream::Error::RequestBody => Kind::Other,
    };
    Failure {
        kind,
        detail: e.to_string(),
    }
}
