//! The web role's request handler: the notes app and the built-in
//! endpoints first, then files, with the access log wrapped around all.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Instant, SystemTime};

use http_body_util::BodyExt;
use hyper::body::{Body as _, Bytes, Frame, Incoming, SizeHint};
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, Version};

use super::access_log::{AccessLogger, Entry};
use super::endpoints;
use super::files::StaticFiles;
use super::notes::{self, Notes};
use super::server::{Body, BoxError, ConnInfo, Handler};
use crate::config::WebSettings;

/// Cheap to clone (one `Arc`); one per listener set.
#[derive(Clone)]
pub struct WebApp {
    inner: Arc<Inner>,
}

struct Inner {
    hostname: String,
    files: StaticFiles,
    log: Option<AccessLogger>,
    /// `None` when the settings have no `notes`.
    notes: Option<Notes>,
}

/// The web role's handler for `settings`, answering as `hostname`, without
/// the notes app. Starts the access log writer (a thread) when the
/// settings ask for one.
pub fn router(settings: &WebSettings, hostname: &str) -> WebApp {
    router_with(settings, hostname, None)
}

/// `router` with the notes app the role made from the settings' `notes`.
pub fn router_with(settings: &WebSettings, hostname: &str, notes: Option<Notes>) -> WebApp {
    WebApp {
        inner: Arc::new(Inner {
            hostname: hostname.to_owned(),
            files: StaticFiles::new(settings.root.clone(), settings.follow_symlinks),
            log: AccessLogger::start(&settings.access_log),
            notes,
        }),
    }
}

impl WebApp {
    /// The access log, if any (for its dropped-lines counter).
    pub fn access_log(&self) -> Option<&AccessLogger> {
        self.inner.log.as_ref()
    }

    /// Answers one request. Only the notes app reads a request body; the
    /// rest ignore it.
    pub async fn respond<B>(&self, req: Request<B>) -> Response<Body>
    where
        B: hyper::body::Body,
        B::Error: Into<BoxError>,
    {
        let started = (Instant::now(), SystemTime::now());
        let (parts, body) = req.into_parts();
        let path = parts.uri.path();
        let mut resp = if notes::is_path(path) {
            match &self.inner.notes {
                Some(app) => {
                    app.handle(&parts.method, &parts.uri, &parts.headers, body)
                        .await
                }
                None => notes::not_configured(&self.inner.hostname),
            }
        } else if endpoints::is_endpoint(path) {
            let inner = &self.inner;
            endpoints::handle(&parts.method, path, &inner.hostname, inner.files.root()).await
        } else {
            self.inner
                .files
                .serve(&parts.method, &parts.uri, &parts.headers)
                .await
        };
        if parts.method == Method::HEAD {
            resp = without_body(resp);
        }
        match &self.inner.log {
            Some(log) => with_log(resp, log.clone(), &parts, started),
            None => resp,
        }
    }
}

impl Handler for WebApp {
    async fn handle(self, req: Request<Incoming>) -> Response<Body> {
        self.respond(req).await
    }
}

/// HEAD keeps the headers of the GET, Content-Length included, and sends no
/// body (hyper does this for HTTP/1 but not for every HTTP/2 path).
fn without_body(resp: Response<Body>) -> Response<Body> {
    let (mut parts, body) = resp.into_parts();
    if !parts.headers.contains_key(header::CONTENT_LENGTH) {
        if let Some(len) = body.size_hint().exact() {
            parts
                .headers
                .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
        }
    }
    let empty = http_body_util::Empty::new()
        .map_err(|never| match never {})
        .boxed_unsync();
    Response::from_parts(parts, empty)
}

fn with_log(
    resp: Response<Body>,
    log: AccessLogger,
    req: &hyper::http::request::Parts,
    started: (Instant, SystemTime),
) -> Response<Body> {
    let header = |name| {
        req.headers
            .get(name)
            .map(|v: &HeaderValue| v.as_bytes().to_vec())
    };
    let pending = Pending {
        log,
        client: req
            .extensions
            .get::<ConnInfo>()
            .map(|c| c.peer.ip())
            .unwrap_or(std::net::Ipv4Addr::UNSPECIFIED.into()),
        method: req.method.to_string(),
        target: req
            .uri
            .path_and_query()
            .map_or_else(|| req.uri.to_string(), |p| p.as_str().to_owned()),
        version: version_name(req.version),
        status: resp.status().as_u16(),
        referer: header(header::REFERER),
        user_agent: header(header::USER_AGENT),
        started,
    };
    resp.map(|body| {
        Logged {
            body,
            sent: 0,
            pending: Some(pending),
        }
        .boxed_unsync()
    })
}

fn version_name(v: Version) -> &'static str {
    match v {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_11 => "HTTP/1.1",
        Version::HTTP_2 => "HTTP/2.0",
        Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/?",
    }
}

/// What the log line needs, kept until the body is done.
struct Pending {
    log: AccessLogger,
    client: std::net::IpAddr,
    method: String,
    target: String,
    version: &'static str,
    status: u16,
    referer: Option<Vec<u8>>,
    user_agent: Option<Vec<u8>>,
    started: (Instant, SystemTime),
}

/// Counts the body bytes really sent and writes the log line when the body
/// is dropped: after the last byte, or when the client went away, so the
/// line has the true size and the full duration.
struct Logged {
    body: Body,
    sent: u64,
    pending: Option<Pending>,
}

impl hyper::body::Body for Logged {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(data) = frame.data_ref() {
                self.sent += data.len() as u64;
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Drop for Logged {
    fn drop(&mut self) {
        if let Some(p) = self.pending.take() {
            let line = Entry {
                client: p.client,
                at: p.started.1,
                method: &p.method,
                target: &p.target,
                version: p.version,
                status: p.status,
                bytes: self.sent,
                referer: p.referer.as_deref(),
                user_agent: p.user_agent.as_deref(),
                duration: p.started.0.elapsed(),
            }
            .combined();
            p.log.log(line);
        }
    }
}
