//! Static files from the document root.
//!
//! What the file system says is found in one trip to tokio's blocking pool
//! (`find`): which file (path safety, symlinks, which precompressed
//! sibling), its strong ETag, and for a small file its bytes, answered from
//! memory: on a Pi most requests are for small assets, and each extra trip
//! to the blocking pool costs more than reading a few KiB. That result is
//! kept for a second (`cache`, nginx's open_file_cache). Every conditional
//! header and the whole Range header are then decided per request, off the
//! blocking pool (`decide`). Larger files are
//! streamed by tower-http's ServeDir (whole, or one range), given a plain
//! request naming exactly the chosen file: the negotiated coding as the
//! only `Accept-Encoding`, at most one range, no conditionals. Several
//! ranges of a large file are streamed as `multipart/byteranges` here,
//! which ServeDir lacks.

pub mod cache;
pub mod conditional;
pub mod encoding;
pub mod gluster_client;
pub mod multipart;
pub mod range;
pub mod resolve;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Bytes;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use tower_http::services::ServeDir;
use tower_service::Service;

use self::cache::{Found, LookupCache};
use self::conditional::Outcome;
use self::encoding::{Accepted, Encoding};
use self::multipart::Multipart;
use self::range::Decision;
use self::resolve::{Lookup, RequestPath, Target};
use super::httpdate;
use super::respond;
use super::server::Body;

/// A hung network mount (a Gluster volume that lost its bricks) blocks
/// `stat` forever; the request gets a 503 after this instead.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);
/// Files up to this size are read whole and answered from memory (ServeDir
/// reads in chunks of this size too, so memory per request is the same).
pub const INLINE_MAX: u64 = 64 * 1024;

#[derive(Clone)]
pub struct StaticFiles {
    root: Arc<PathBuf>,
    follow_symlinks: bool,
    serve_dir: ServeDir,
    cache: Arc<LookupCache>,
}

/// What to send, as decided by `plan`.
enum Plan {
    Found(Target, Action),
    Redirect,
    NotFound,
    RootUnavailable(String),
}

enum Action {
    NotModified,
    PreconditionFailed,
    Unsatisfiable,
    /// `ranges`: `None` for the whole file. `data`: the whole file when it
    /// was small enough to read (always `None` for HEAD).
    Send {
        ranges: Option<Vec<(u64, u64)>>,
        data: Option<Bytes>,
    },
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
            cache: Arc::default(),
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
        let now = Instant::now();
        let found = match self.cache.get(&request, &accepted, now) {
            Some(found) => found,
            None => {
                let (root, follow) = (self.root.clone(), self.follow_symlinks);
                let path = request.clone();
                let blocking =
                    tokio::task::spawn_blocking(move || find(&root, &path, &accepted, follow));
                let found = match tokio::time::timeout(LOOKUP_TIMEOUT, blocking).await {
                    Ok(Ok(found)) => found,
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
                self.cache.put(request, accepted, &found, now);
                found
            }
        };
        let plan = decide(
            found,
            &Conditions::from_headers(headers),
            method == Method::GET,
        );
        match plan {
            Plan::Found(target, action) => self.answer(method, uri, target, action).await,
            Plan::Redirect => redirect_to_directory(uri),
            Plan::NotFound => respond::text(StatusCode::NOT_FOUND, "not found\n"),
            Plan::RootUnavailable(why) => {
                tracing::debug!("web: {why}");
                respond::text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the document root is not available\n",
                )
            }
        }
    }

    async fn answer(
        &self,
        method: &Method,
        uri: &hyper::Uri,
        target: Target,
        action: Action,
    ) -> Response<Body> {
        let (ranges, data) = match action {
            Action::NotModified => {
                let mut resp = respond::empty(StatusCode::NOT_MODIFIED);
                set_validators(resp.headers_mut(), &target);
                return resp;
            }
            Action::PreconditionFailed => {
                return respond::text(StatusCode::PRECONDITION_FAILED, "precondition failed\n");
            }
            Action::Unsatisfiable => {
                let mut resp =
                    respond::text(StatusCode::RANGE_NOT_SATISFIABLE, "range not satisfiable\n");
                let h = resp.headers_mut();
                h.insert(header::CONTENT_RANGE, content_range(None, target.size));
                set_validators(h, &target);
                return resp;
            }
            Action::Send { ranges, data } => (ranges, data),
        };
        if method == Method::HEAD {
            return file_response(&target, StatusCode::OK, target.size, empty_body());
        }
        match (ranges, data) {
            (None, Some(data)) => {
                file_response(&target, StatusCode::OK, target.size, full_body(data))
            }
            (Some(r), Some(data)) if r.len() == 1 => {
                let (a, b) = r[0];
                let part = slice(&data, a, b);
                let mut resp = file_response(
                    &target,
                    StatusCode::PARTIAL_CONTENT,
                    b - a + 1,
                    full_body(part),
                );
                resp.headers_mut().insert(
                    header::CONTENT_RANGE,
                    content_range(Some((a, b)), target.size),
                );
                resp
            }
            (Some(r), Some(data)) => {
                let parts = Multipart::new(target.content_type, target.size, r);
                let body = parts.render(&data);
                multipart_response(&target, &parts, full_body(body))
            }
            (None, None) => self.delegate(uri, &target, None).await,
            (Some(r), None) if r.len() == 1 => {
                let (a, b) = r[0];
                self.delegate(uri, &target, Some(format!("bytes={a}-{b}")))
                    .await
            }
            (Some(r), None) => {
                let file = match tokio::fs::File::open(&target.path).await {
                    Ok(f) => f,
                    Err(_) => return respond::text(StatusCode::NOT_FOUND, "not found\n"),
                };
                let parts = Multipart::new(target.content_type, target.size, r);
                let mut resp = multipart_response(&target, &parts, empty_body());
                *resp.body_mut() = parts.into_body(file);
                resp
            }
        }
    }

    /// Lets ServeDir stream a large file (GET only), whole or one range.
    async fn delegate(
        &self,
        uri: &hyper::Uri,
        target: &Target,
        range: Option<String>,
    ) -> Response<Body> {
        let mut builder = Request::builder()
            .method(Method::GET)
            .uri(uri.path())
            .header(header::ACCEPT_ENCODING, target.encoding.token());
        if let Some(range) = range {
            builder = builder.header(header::RANGE, range);
        }
        let Ok(req) = builder.body(Empty::<Bytes>::new()) else {
            return respond::text(StatusCode::BAD_REQUEST, "bad request\n");
        };
        let mut serve_dir = self.serve_dir.clone();
        let mut resp = match serve_dir.call(req).await {
            Ok(resp) => resp.map(|body| body.map_err(Into::into).boxed_unsync()),
            Err(never) => match never {},
        };
        if resp.status().is_success() {
            let served = resp
                .headers()
                .get(header::CONTENT_ENCODING)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("identity");
            // If the file changed between our look and ServeDir's open (a
            // deploy in progress), our tag may describe other bytes: send
            // none rather than a wrong one.
            if served == target.encoding.token() {
                set_validators(resp.headers_mut(), target);
            }
        }
        resp
    }
}

/// The request headers that decide the answer (the rest are not needed).
struct Conditions(HeaderMap);

impl Conditions {
    fn from_headers(headers: &HeaderMap) -> Conditions {
        let mut kept = HeaderMap::new();
        for name in [
            header::IF_MATCH,
            header::IF_NONE_MATCH,
            header::IF_MODIFIED_SINCE,
            header::IF_UNMODIFIED_SINCE,
            header::IF_RANGE,
            header::RANGE,
        ] {
            for value in headers.get_all(&name) {
                kept.append(name.clone(), value.clone());
            }
        }
        Conditions(kept)
    }
}

/// Blocking: find the file and, if it is small, read it.
fn find(root: &Path, request: &RequestPath, accepted: &Accepted, follow_symlinks: bool) -> Found {
    let lookup = resolve::lookup(root, request, accepted, follow_symlinks);
    let data = match &lookup {
        Lookup::Found(target) if target.size <= INLINE_MAX => read_small(target),
        _ => None,
    };
    Found { lookup, data }
}

/// Judges the conditions and ranges of this request against what was found.
fn decide(found: Found, conditions: &Conditions, get: bool) -> Plan {
    let target = match found.lookup {
        Lookup::Found(t) => t,
        Lookup::Redirect => return Plan::Redirect,
        Lookup::NotFound => return Plan::NotFound,
        Lookup::RootUnavailable(why) => return Plan::RootUnavailable(why),
    };
    let honor_range = match conditional::evaluate(&conditions.0, &target.etag, target.modified) {
        Outcome::NotModified => return Plan::Found(target, Action::NotModified),
        Outcome::PreconditionFailed => return Plan::Found(target, Action::PreconditionFailed),
        Outcome::Proceed { honor_range } => honor_range,
    };
    // Range is defined for GET only (RFC 9110 §14.2): a HEAD gets the
    // headers of the full answer.
    let ranges = if get && honor_range {
        match range::decide(conditions.0.get(header::RANGE), target.size) {
            Decision::Full => None,
            Decision::Partial(r) => Some(r),
            Decision::Unsatisfiable => return Plan::Found(target, Action::Unsatisfiable),
        }
    } else {
        None
    };
    let data = if get { found.data } else { None };
    Plan::Found(target, Action::Send { ranges, data })
}

/// The whole file, if it is still the file we judged (size and mtime).
/// Otherwise `None`: it is changing under us, and ServeDir streams what is
/// there without our ETag.
fn read_small(target: &Target) -> Option<Bytes> {
    let mut file = std::fs::File::open(&target.path).ok()?;
    let meta = file.metadata().ok()?;
    let modified = meta.modified().map(httpdate::unix_secs).unwrap_or(0);
    if meta.len() != target.size || modified != target.modified {
        return None;
    }
    let mut buf = Vec::with_capacity(usize::try_from(target.size).ok()? + 1);
    // One byte more than expected, to notice a file that grew.
    (&mut file)
        .take(target.size + 1)
        .read_to_end(&mut buf)
        .ok()?;
    (buf.len() as u64 == target.size).then(|| buf.into())
}

fn slice(data: &Bytes, first: u64, last: u64) -> Bytes {
    match (usize::try_from(first), usize::try_from(last)) {
        (Ok(a), Ok(b)) if b < data.len() => data.slice(a..=b),
        _ => Bytes::new(),
    }
}

fn full_body(data: Bytes) -> Body {
    Full::new(data)
        .map_err(|never| match never {})
        .boxed_unsync()
}

fn empty_body() -> Body {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

/// A file answer's headers: what ServeDir would send, plus validators.
fn file_response(target: &Target, status: StatusCode, length: u64, body: Body) -> Response<Body> {
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(target.content_type),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if target.encoding != Encoding::Identity {
        h.insert(
            header::CONTENT_ENCODING,
            HeaderValue::from_static(target.encoding.token()),
        );
    }
    set_validators(h, target);
    resp
}

fn multipart_response(target: &Target, parts: &Multipart, body: Body) -> Response<Body> {
    let mut resp = file_response(
        target,
        StatusCode::PARTIAL_CONTENT,
        parts.content_length(),
        body,
    );
    if let Ok(v) = HeaderValue::from_str(&parts.content_type()) {
        resp.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    resp
}

/// `bytes 0-9/100`, or `bytes */100` for a 416.
fn content_range(range: Option<(u64, u64)>, size: u64) -> HeaderValue {
    let text = match range {
        Some((a, b)) => format!("bytes {a}-{b}/{size}"),
        None => format!("bytes */{size}"),
    };
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static("bytes */0"))
}

/// ETag, Last-Modified and Vary, on every answer about a file.
fn set_validators(h: &mut HeaderMap, target: &Target) {
    if let Ok(v) = HeaderValue::from_str(&target.etag) {
        h.insert(header::ETAG, v);
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
