//! Small fixed answers: errors, JSON, empty. Always with a Content-Length so
//! keep-alive survives them.

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::header::{self, HeaderValue};
use hyper::{Response, StatusCode};

use super::server::Body;

pub fn bytes(status: StatusCode, content_type: &'static str, body: Bytes) -> Response<Body> {
    let len = body.len();
    let mut resp = Response::new(
        Full::new(body)
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    resp
}

pub fn text(status: StatusCode, message: &str) -> Response<Body> {
    bytes(
        status,
        "text/plain; charset=utf-8",
        Bytes::copy_from_slice(message.as_bytes()),
    )
}

pub fn json(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    let mut body = value.to_string();
    body.push('\n');
    let mut resp = bytes(status, "application/json", Bytes::from(body));
    // Health and drill answers describe this instant on this node: a cache
    // in between would make a drill lie.
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

pub fn empty(status: StatusCode) -> Response<Body> {
    let mut resp = Response::new(
        http_body_util::Empty::new()
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *resp.status_mut() = status;
    resp
}
