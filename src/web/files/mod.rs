//! Static files from the document root.
//!
//! tower-http's ServeDir does the serving proper: opening the file, the MIME
//! type, Last-Modified, a single range, streaming. In front of it this module
//! decides everything ServeDir cannot: which file (path safety, symlinks,
//! which precompressed sibling), the strong ETag, every conditional header,
//! and the whole Range header, including `multipart/byteranges`. ServeDir
//! then gets a plain request naming exactly that file: the negotiated coding
//! as the only `Accept-Encoding`, at most one range, no conditionals.

pub mod conditional;
pub mod encoding;
pub mod multipart;
pub mod range;
pub mod resolve;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use tower_http::services::ServeDir;
use tower_service::Service;

use self::conditional::Outcome;
use self::encoding::{Accepted, Encoding};
use self::range::Decision;
use self::resolve::{Lookup, RequestPath, Target};
use super::httpdate;
use super::respond;
use super::server::Body;

/// A hung network mount (a Gluster volume that lost its bricks) blocks
/// `stat` forever; the request gets a 503 after this instead.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone)]
pub struct StaticFiles {
    root: Arc<PathBuf>,
    follow_symlinks: bool,
    serve_dir: ServeDir,
}

impl StaticFiles {
    pub fn new(root: PathBuf, follow_symlinks: bool) -> StaticFiles {
        let serve_dir = ServeDir::new(&root)
            .append_index_html_on_directories(true)
            .precompressed_br()
            .precompressed_gzip();
        StaticFiles {
            root: Arc::new(root),
            follow_symlinks,
            serve_dir,
        }
    }

    pub fn root(&self) -> &std::path::Path {
        &self.root
    }

    pub async fn serve(
        &self,
        method: &Method,
        uri: &hyper::Uri,
        headers: &HeaderMap,
    ) -> Response<Body> {
        if method != Method::GET && method != Method::HEAD {
            let mut resp = respond::text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
            resp.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            return resp;
        }
        let request = match RequestPath::parse(uri.path()) {
            Ok(r) => r,
            Err(e) => return respond::text(StatusCode::BAD_REQUEST, &format!("{e}\n")),
        };
        let accepted = Accepted::from_headers(headers);
        let (root, follow) = (self.root.clone(), self.follow_symlinks);
        let blocking = tokio::task::spawn_blocking(move || {
            resolve::lookup(&root, &request, &accepted, follow)
        });
        let lookup = match tokio::time::timeout(LOOKUP_TIMEOUT, blocking).await {
            Ok(Ok(lookup)) => lookup,
            Ok(Err(_panic)) => {
                return respond::text(StatusCode::INTERNAL_SERVER_ERROR, "lookup failed\n");
            }
            Err(_elapsed) => {
                return respond::text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the document root is not answering\n",
                );
            }
        };
        match lookup {
            Lookup::Found(target) => self.serve_target(method, uri, headers, target).await,
            Lookup::Redirect => redirect_to_directory(uri),
            Lookup::NotFound => respond::text(StatusCode::NOT_FOUND, "not found\n"),
            Lookup::RootUnavailable(why) => {
                tracing::debug!("web: {why}");
                respond::text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the document root is not available\n",
                )
            }
        }
    }

    async fn serve_target(
        &self,
        method: &Method,
        uri: &hyper::Uri,
        headers: &HeaderMap,
        target: Target,
    ) -> Response<Body> {
        let honor_range = match conditional::evaluate(headers, &target.etag, target.modified) {
            Outcome::NotModified => {
                let mut resp = respond::empty(StatusCode::NOT_MODIFIED);
                set_validators(resp.headers_mut(), &target, true);
                return resp;
            }
            Outcome::PreconditionFailed => {
                return respond::text(StatusCode::PRECONDITION_FAILED, "precondition failed\n");
            }
            Outcome::Proceed { honor_range } => honor_range,
        };
        // Range is defined for GET only (RFC 9110 §14.2): a HEAD gets the
        // headers of the full answer.
        let decision = if method == Method::GET && honor_range {
            range::decide(headers.get(header::RANGE), target.size)
        } else {
            Decision::Full
        };
        let mut resp = match decision {
            Decision::Full => self.delegate(method, uri, &target, None).await,
            Decision::Partial(ranges) if ranges.len() == 1 => {
                let (a, b) = ranges[0];
                self.delegate(method, uri, &target, Some(format!("bytes={a}-{b}")))
                    .await
            }
            Decision::Partial(ranges) => self.multipart(uri, &target, ranges).await,
            Decision::Unsatisfiable => {
                let mut resp =
                    respond::text(StatusCode::RANGE_NOT_SATISFIABLE, "range not satisfiable\n");
                let value = format!("bytes */{}", target.size);
                if let Ok(v) = HeaderValue::from_str(&value) {
                    resp.headers_mut().insert(header::CONTENT_RANGE, v);
                }
                resp
            }
        };
        if resp.status().is_success() || resp.status() == StatusCode::RANGE_NOT_SATISFIABLE {
            let served = resp
                .headers()
                .get(header::CONTENT_ENCODING)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("identity");
            // If the file changed between our look and ServeDir's open (a
            // deploy in progress), our tag may describe other bytes: send
            // none rather than a wrong one.
            let same_file = served == target.encoding.token()
                || resp.status() == StatusCode::RANGE_NOT_SATISFIABLE;
            set_validators(resp.headers_mut(), &target, same_file);
        }
        resp
    }

    /// Lets ServeDir answer a request stripped down to our decisions.
    async fn delegate(
        &self,
        method: &Method,
        uri: &hyper::Uri,
        target: &Target,
        range: Option<String>,
    ) -> Response<Body> {
        let mut builder = Request::builder()
            .method(method.clone())
            .uri(uri.path())
            .header(header::ACCEPT_ENCODING, target.encoding.token());
        if let Some(range) = range {
            builder = builder.header(header::RANGE, range);
        }
        let Ok(req) = builder.body(Empty::<hyper::body::Bytes>::new()) else {
            return respond::text(StatusCode::BAD_REQUEST, "bad request\n");
        };
        let mut serve_dir = self.serve_dir.clone();
        match serve_dir.call(req).await {
            Ok(resp) => resp.map(|body| body.map_err(Into::into).boxed_unsync()),
            Err(never) => match never {},
        }
    }

    async fn multipart(
        &self,
        uri: &hyper::Uri,
        target: &Target,
        ranges: Vec<(u64, u64)>,
    ) -> Response<Body> {
        // ServeDir knows the MIME type; a HEAD costs one stat.
        let head = self.delegate(&Method::HEAD, uri, target, None).await;
        if !head.status().is_success() {
            return head;
        }
        let content_type = head
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("application/octet-stream")
            .to_owned();
        let file = match tokio::fs::File::open(&target.path).await {
            Ok(f) => f,
            Err(_) => return respond::text(StatusCode::NOT_FOUND, "not found\n"),
        };
        let parts = multipart::Multipart::new(&content_type, target.size, ranges);
        let mut resp = Response::new(
            http_body_util::Empty::new()
                .map_err(Into::into)
                .boxed_unsync(),
        );
        *resp.status_mut() = StatusCode::PARTIAL_CONTENT;
        let h = resp.headers_mut();
        if let Ok(v) = HeaderValue::from_str(&parts.content_type()) {
            h.insert(header::CONTENT_TYPE, v);
        }
        h.insert(
            header::CONTENT_LENGTH,
            HeaderValue::from(parts.content_length()),
        );
        h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
        if target.encoding != Encoding::Identity {
            h.insert(
                header::CONTENT_ENCODING,
                HeaderValue::from_static(target.encoding.token()),
            );
        }
        if let Some(lm) = head.headers().get(header::LAST_MODIFIED) {
            h.insert(header::LAST_MODIFIED, lm.clone());
        }
        *resp.body_mut() = parts.into_body(file);
        resp
    }
}

/// ETag, Last-Modified and Vary, on every answer about a file.
fn set_validators(h: &mut HeaderMap, target: &Target, with_etag: bool) {
    if with_etag {
        if let Ok(v) = HeaderValue::from_str(&target.etag) {
            h.insert(header::ETAG, v);
        }
    }
    if !h.contains_key(header::LAST_MODIFIED) {
        if let Ok(v) = HeaderValue::from_str(&httpdate::format(target.modified)) {
            h.insert(header::LAST_MODIFIED, v);
        }
    }
    if target.has_variants {
        h.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    }
}

/// `/docs` -> `/docs/` (as Apache's mod_dir does), keeping the query.
/// Leading slashes are collapsed so `//evil.example` can never become a
/// protocol-relative Location.
fn redirect_to_directory(uri: &hyper::Uri) -> Response<Body> {
    let mut location = format!("/{}/", uri.path().trim_start_matches('/'));
    if let Some(q) = uri.query() {
        location.push('?');
        location.push_str(q);
    }
    let mut resp = respond::text(StatusCode::MOVED_PERMANENTLY, "moved\n");
    if let Ok(v) = HeaderValue::from_str(&location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}
