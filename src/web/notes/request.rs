//! What a notes request asks for, read without touching the database: the
//! route, the JSON body of a new note, the page of a list. Every mistake
//! becomes a message that names what was wrong, for a 400.

use std::time::Duration;

use http_body_util::{BodyExt, Limited};
use hyper::body::Bytes;
use serde_json::Value;

use crate::web::BoxError;

/// A request body larger than this is refused (413) before it is read.
pub const MAX_BODY_BYTES: usize = 16 * 1024;
/// A note's text, in bytes of UTF-8.
pub const MAX_TEXT_BYTES: usize = 4096;
/// The whole body must arrive within this: a client that trickles it would
/// otherwise hold a connection slot and a task forever.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// Notes in one list answer, unless `limit` says otherwise.
pub const DEFAULT_LIMIT: i64 = 100;
pub const MAX_LIMIT: i64 = 1000;

const EXAMPLE: &str = r#"{"id": 42, "text": "hello"}"#;

/// The app's paths; anything else under the prefix is a bad id.
#[derive(Debug, PartialEq, Eq)]
pub enum Route {
    /// `/api/notes`: list (GET) and create (POST).
    Collection,
    /// `/api/notes/{id}`.
    One(i64),
    /// `/api/notes/{something that is not an id}`.
    BadId(String),
}

pub fn is_path(path: &str) -> bool {
    path == "/api/notes" || path.starts_with("/api/notes/")
}

pub fn route(path: &str) -> Option<Route> {
    if path == "/api/notes" || path == "/api/notes/" {
        return Some(Route::Collection);
    }
    let rest = path.strip_prefix("/api/notes/")?;
    Some(match rest.parse::<i64>() {
        Ok(id) if id > 0 && rest.bytes().all(|b| b.is_ascii_digit()) => Route::One(id),
        _ => Route::BadId(rest.to_owned()),
    })
}

/// The body of `POST /api/notes`.
#[derive(Debug, PartialEq, Eq)]
pub struct NewNote {
    /// `None`: the app picks one.
    pub id: Option<i64>,
    pub text: String,
}

pub fn new_note(body: &[u8]) -> Result<NewNote, String> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| format!("the body is not valid JSON ({e}); send an object like {EXAMPLE}"))?;
    let Value::Object(fields) = value else {
        return Err(format!(
            "expected a JSON object like {EXAMPLE}, found {}",
            kind(&value)
        ));
    };
    if let Some(key) = fields.keys().find(|k| *k != "id" && *k != "text") {
        return Err(format!(
            "unknown field `{key}`: a note has `text` and, optionally, `id`"
        ));
    }
    let id = match fields.get("id") {
        None | Some(Value::Null) => None,
        Some(v) => Some(note_id(v)?),
    };
    let text = match fields.get("text") {
        Some(Value::String(s)) => s.clone(),
        Some(other) => return Err(format!("`text` must be a string, found {}", kind(other))),
        None => return Err(format!("missing `text`; send an object like {EXAMPLE}")),
    };
    if text.len() > MAX_TEXT_BYTES {
        return Err(format!(
            "`text` is {} bytes long; at most {MAX_TEXT_BYTES} bytes are allowed",
            text.len()
        ));
    }
    if text.contains('\0') {
        return Err(
            "`text` must not contain NUL characters (PostgreSQL text cannot hold them)".into(),
        );
    }
    Ok(NewNote { id, text })
}

/// A positive whole number that fits PostgreSQL's bigint.
fn note_id(v: &Value) -> Result<i64, String> {
    let Value::Number(n) = v else {
        let mut message = format!("`id` must be a positive whole number, found {}", kind(v));
        if let Some(s) = v.as_str() {
            if s.trim().parse::<i64>().is_ok() {
                message.push_str(&format!(": write it without quotes, \"id\": {}", s.trim()));
            }
        }
        return Err(message);
    };
    match (n.as_i64(), n.as_u64()) {
        (Some(id), _) if id > 0 => Ok(id),
        (Some(id), _) => Err(format!("`id` must be positive, found {id}")),
        (None, Some(_)) => Err(format!("`id` must be at most {}, found {n}", i64::MAX)),
        (None, None) => Err(format!("`id` must be a whole number, found {n}")),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "true or false",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// `?after=<id>&limit=<n>` of a list.
#[derive(Debug, PartialEq, Eq)]
pub struct Page {
    /// Notes with an id above this.
    pub after: i64,
    pub limit: i64,
}

/// Unknown parameters are ignored (a cache buster like `_=1700000000` is
/// common in browsers); known ones must be valid.
pub fn page(query: Option<&str>) -> Result<Page, String> {
    let mut page = Page {
        after: 0,
        limit: DEFAULT_LIMIT,
    };
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "after" => {
                page.after = value
                    .parse::<i64>()
                    .ok()
                    .filter(|n| *n >= 0)
                    .ok_or_else(|| format!("`after` must be a note id or 0, found {value:?}"))?;
            }
            "limit" => {
                page.limit = value
                    .parse::<i64>()
                    .ok()
                    .filter(|n| (1..=MAX_LIMIT).contains(n))
                    .ok_or_else(|| {
                        format!("`limit` must be a number from 1 to {MAX_LIMIT}, found {value:?}")
                    })?;
            }
            _ => {}
        }
    }
    Ok(page)
}

/// Why a body could not be had.
#[derive(Debug, PartialEq, Eq)]
pub enum BodyError {
    /// Over [`MAX_BODY_BYTES`] (413).
    TooLarge,
    /// Not all there within [`BODY_TIMEOUT`] (408).
    Timeout,
    /// The client broke it off or framed it wrong (400).
    Broken(String),
}

/// The whole body, at most `limit` bytes, within `timeout`. A declared
/// Content-Length over the limit is refused before a byte is read.
pub async fn read_body<B>(
    body: B,
    content_length: Option<u64>,
    limit: usize,
    timeout: Duration,
) -> Result<Bytes, BodyError>
where
    B: hyper::body::Body,
    B::Error: Into<BoxError>,
{
    if content_length.is_some_and(|n| n > limit as u64) {
        return Err(BodyError::TooLarge);
    }
    let collected = tokio::time::timeout(timeout, Limited::new(body, limit).collect()).await;
    match collected {
        Err(_) => Err(BodyError::Timeout),
        Ok(Ok(all)) => Ok(all.to_bytes()),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(BodyError::TooLarge),
        Ok(Err(e)) => Err(BodyError::Broken(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{Full, StreamBody};
    use hyper::body::Frame;

    #[test]
    fn routes() {
        assert_eq!(route("/api/notes"), Some(Route::Collection));
        assert_eq!(route("/api/notes/"), Some(Route::Collection));
        assert_eq!(route("/api/notes/42"), Some(Route::One(42)));
        assert_eq!(
            route("/api/notes/9223372036854775807"),
            Some(Route::One(i64::MAX))
        );
        for bad in ["0", "-1", "+5", "x", "4/2", "9223372036854775808", " 1"] {
            assert_eq!(
                route(&format!("/api/notes/{bad}")),
                Some(Route::BadId(bad.into())),
                "{bad}"
            );
        }
        assert_eq!(route("/api/notesx"), None);
        assert!(is_path("/api/notes") && is_path("/api/notes/1"));
        assert!(!is_path("/api/notesx") && !is_path("/api/random/int"));
    }

    #[test]
    fn a_new_note_with_and_without_id() {
        assert_eq!(
            new_note(br#"{"id": 42, "text": "hello"}"#),
            Ok(NewNote {
                id: Some(42),
                text: "hello".into()
            })
        );
        assert_eq!(
            new_note(br#"{"text": ""}"#),
            Ok(NewNote {
                id: None,
                text: String::new()
            })
        );
        assert_eq!(
            new_note(br#"{"id": null, "text": "x"}"#).map(|n| n.id),
            Ok(None)
        );
        let max = MAX_TEXT_BYTES;
        let at_limit = format!(r#"{{"text": "{}"}}"#, "é".repeat(max / 2));
        assert!(new_note(at_limit.as_bytes()).is_ok());
    }

    /// The message of a refused body, which must contain `phrase`.
    fn refused(body: &str, phrase: &str) {
        match new_note(body.as_bytes()) {
            Ok(n) => panic!("{body} accepted as {n:?}"),
            Err(why) => assert!(why.contains(phrase), "{body}: {why:?} lacks {phrase:?}"),
        }
    }

    #[test]
    fn bad_bodies_say_what_is_wrong() {
        refused("", "not valid JSON");
        refused("{\"text\": \"a\"", "not valid JSON");
        refused("text=hello", "not valid JSON");
        refused("[1]", "expected a JSON object like");
        refused("\"hello\"", "found a string");
        refused("{}", "missing `text`");
        refused(r#"{"text": 5}"#, "`text` must be a string, found a number");
        refused(r#"{"text": "a", "txt": "b"}"#, "unknown field `txt`");
        refused(r#"{"text": "a\u0000b"}"#, "NUL");
        let long = format!(r#"{{"text": "{}"}}"#, "a".repeat(MAX_TEXT_BYTES + 1));
        refused(&long, "`text` is 4097 bytes long; at most 4096");
    }

    #[test]
    fn bad_ids_say_what_is_wrong() {
        refused(
            r#"{"id": 0, "text": "a"}"#,
            "`id` must be positive, found 0",
        );
        refused(r#"{"id": -3, "text": "a"}"#, "found -3");
        refused(r#"{"id": 1.5, "text": "a"}"#, "whole number, found 1.5");
        refused(r#"{"id": 1e3, "text": "a"}"#, "whole number");
        refused(
            r#"{"id": 9223372036854775808, "text": "a"}"#,
            "at most 9223372036854775807",
        );
        refused(r#"{"id": "7", "text": "a"}"#, "write it without quotes");
        refused(r#"{"id": true, "text": "a"}"#, "found true or false");
    }

    #[test]
    fn pages() {
        let p = |q| page(q);
        assert_eq!(
            p(None),
            Ok(Page {
                after: 0,
                limit: 100
            })
        );
        assert_eq!(
            p(Some("after=7&limit=1000&_=1")),
            Ok(Page {
                after: 7,
                limit: 1000
            })
        );
        assert!(p(Some("limit=0")).unwrap_err().contains("from 1 to 1000"));
        assert!(p(Some("limit=1001")).is_err());
        assert!(p(Some("limit=")).is_err());
        assert!(p(Some("after=-1")).unwrap_err().contains("`after`"));
        assert!(p(Some("after=x")).is_err());
    }

    fn full(bytes: &'static [u8]) -> Full<Bytes> {
        Full::new(Bytes::from_static(bytes))
    }

    #[tokio::test]
    async fn bodies_are_bounded_in_size_and_time() {
        let t = Duration::from_secs(1);
        let ok = read_body(full(b"{}"), Some(2), MAX_BODY_BYTES, t).await;
        assert_eq!(ok, Ok(Bytes::from_static(b"{}")));

        // Declared too large: refused before reading.
        let declared = read_body(full(b"{}"), Some(16 * 1024 + 1), MAX_BODY_BYTES, t).await;
        assert_eq!(declared, Err(BodyError::TooLarge));

        // Undeclared (chunked) and too large: refused once over the limit.
        let big = vec![b'a'; MAX_BODY_BYTES + 1];
        let body = Full::new(Bytes::from(big));
        assert_eq!(
            read_body(body, None, MAX_BODY_BYTES, t).await,
            Err(BodyError::TooLarge)
        );
        let exact = Full::new(Bytes::from(vec![b'a'; MAX_BODY_BYTES]));
        assert!(read_body(exact, None, MAX_BODY_BYTES, t).await.is_ok());

        // A body that never ends.
        let stalled = StreamBody::new(futures_util::stream::pending::<
            Result<Frame<Bytes>, std::io::Error>,
        >());
        let started = std::time::Instant::now();
        let r = read_body(stalled, None, MAX_BODY_BYTES, Duration::from_millis(100)).await;
        assert_eq!(r, Err(BodyError::Timeout));
        assert!(started.elapsed() < Duration::from_secs(2));

        // A client that broke off.
        let broken = StreamBody::new(futures_util::stream::iter(vec![
            Ok(Frame::data(Bytes::from_static(b"{\"te"))),
            Err(std::io::Error::other("connection reset")),
        ]));
        match read_body(broken, None, MAX_BODY_BYTES, t).await {
            Err(BodyError::Broken(why)) => assert!(why.contains("reset"), "{why}"),
            other => panic!("{other:?}"),
        }
    }
}
