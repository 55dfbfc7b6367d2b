//! The notes demo app: `POST /api/notes`, `GET /api/notes/{id}` and
//! `GET /api/notes?after=&limit=`, keeping notes in the cluster's
//! PostgreSQL through the pooler on the VIP.
//!
//! It exists for the failure drill (issue 9): a client writes and reads
//! notes through the VIP's HTTP balancer while nodes are killed, and every
//! answer must be right. That needs an app whose answers can be checked
//! against what was acknowledged, using the database the way real apps do
//! (over the VIP, through the pooler, reads on standbys). It is also the
//! smallest example of an app on piha. What makes its answers right:
//!
//! - an insert is idempotent by id (`ON CONFLICT DO NOTHING`, then the
//!   row's text decides between 200 and 409), so a client that lost an
//!   answer retries safely, and so may the app itself when a connection
//!   breaks under a statement (`db`);
//! - a read that a standby cannot answer (no row yet, or an error) is
//!   asked again with the pooler's `/* piha:primary */` hint, so a note
//!   acknowledged a moment ago is never reported missing;
//! - every database trouble is a 503 with `Retry-After: 1`, never a guess.
//!
//! The list is read on a standby and may lag the primary by the pooler's
//! `max_lag`; a single note is always found once acknowledged.

mod db;
mod request;

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::{Duration, SystemTime};

use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Response, StatusCode, Uri};
use serde_json::{Value, json};
use tokio::io::AsyncReadExt;

use self::db::{Db, DbError, Note, Params, Rows};
pub use self::request::is_path;
use self::request::{BodyError, Route};
use super::respond;
use super::server::{Body, BoxError};
use crate::config::{ClusterConfig, NotesSettings, WebSettings};

/// A password file larger than this is not a password file.
const MAX_PASSWORD_FILE_BYTES: u64 = 4096;
/// Reading it must not hold up the role's start (an SD card that stalls).
const PASSWORD_READ_TIMEOUT: Duration = Duration::from_secs(2);
/// Server-chosen ids stay below 2^53, exact in JavaScript.
const MAX_CHOSEN_ID: i64 = 1 << 53;
/// Tries to find a free random id; at 2^53 ids, more than one is luck.
const CHOSEN_ID_TRIES: usize = 3;

/// The app of one web node. Cheap to hold in the router's `Arc`.
pub struct Notes {
    hostname: String,
    state: State,
}

enum State {
    Ready(Box<Db>),
    /// Configured but unusable (no password, no address): every request
    /// is told why.
    Off(String),
}

impl Notes {
    /// The app connecting to `target` with the login of `settings`.
    pub fn new(
        hostname: &str,
        target: SocketAddr,
        settings: &NotesSettings,
        password: &str,
    ) -> Notes {
        Notes {
            hostname: hostname.to_owned(),
            state: State::Ready(Box::new(Db::new(
                target,
                &settings.database,
                &settings.user,
                password,
            ))),
        }
    }

    /// The app configured but unable to run, for `reason`.
    pub fn off(hostname: &str, reason: String) -> Notes {
        Notes {
            hostname: hostname.to_owned(),
            state: State::Off(reason),
        }
    }

    pub async fn handle<B>(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        body: B,
    ) -> Response<Body>
    where
        B: hyper::body::Body,
        B::Error: Into<BoxError>,
    {
        let route = request::route(uri.path()).unwrap_or(Route::BadId(String::new()));
        let reading = *method == Method::GET || *method == Method::HEAD;
        let allowed = match (&route, reading, *method == Method::POST) {
            (Route::BadId(id), ..) => {
                let why = format!("{id:?} is not a note id: ids are whole numbers from 1");
                return self.error(StatusCode::BAD_REQUEST, &why);
            }
            (Route::Collection, true, _) | (Route::Collection, _, true) => None,
            (Route::One(_), true, _) => None,
            (Route::Collection, ..) => Some("GET, HEAD, POST"),
            (Route::One(_), ..) => Some("GET, HEAD"),
        };
        if let Some(allow) = allowed {
            let mut resp = self.error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
            resp.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static(allow));
            return resp;
        }
        let db = match &self.state {
            State::Ready(db) => db,
            State::Off(why) => {
                let why = format!("the notes app cannot run on this node: {why}");
                return self.unavailable(&why);
            }
        };
        match route {
            Route::One(id) => self.get(db, id).await,
            _ if reading => self.list(db, uri.query()).await,
            _ => self.create(db, headers, body).await,
        }
    }

    /// `POST /api/notes`.
    async fn create<B>(&self, db: &Db, headers: &HeaderMap, body: B) -> Response<Body>
    where
        B: hyper::body::Body,
        B::Error: Into<BoxError>,
    {
        let length = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let max = request::MAX_BODY_BYTES;
        let bytes = match request::read_body(body, length, max, request::BODY_TIMEOUT).await {
            Ok(bytes) => bytes,
            Err(BodyError::TooLarge) => {
                let why = format!("the body is larger than {} KiB", max / 1024);
                return self.error(StatusCode::PAYLOAD_TOO_LARGE, &why);
            }
            Err(BodyError::Timeout) => {
                let why = format!(
                    "the body did not arrive within {}s",
                    request::BODY_TIMEOUT.as_secs()
                );
                return self.error(StatusCode::REQUEST_TIMEOUT, &why);
            }
            Err(BodyError::Broken(why)) => {
                return self.error(StatusCode::BAD_REQUEST, &format!("bad body: {why}"));
            }
        };
        let new = match request::new_note(&bytes) {
            Ok(new) => new,
            Err(why) => return self.error(StatusCode::BAD_REQUEST, &why),
        };
        let outcome = match new.id {
            Some(id) => self.insert(db, id, &new.text).await.map(|o| (id, o)),
            None => self.insert_with_chosen_id(db, &new.text).await,
        };
        match outcome {
            Ok((_, Inserted::New(note))) => {
                let mut doc = note_json(&note);
                doc["answered_by"] = json!(self.hostname);
                respond::json(StatusCode::CREATED, &doc)
            }
            Ok((_, Inserted::Existing(note))) if note.text == new.text => {
                // Most likely this client's own earlier try whose answer
                // was lost: the note is stored, which is what it asked.
                let mut doc = note_json(&note);
                doc["answered_by"] = json!(self.hostname);
                respond::json(StatusCode::OK, &doc)
            }
            Ok((id, Inserted::Existing(_))) => {
                let doc = json!({
                    "error": format!("note {id} exists with another text"),
                    "id": id,
                    "node": self.hostname,
                });
                respond::json(StatusCode::CONFLICT, &doc)
            }
            Err(e) => self.db_error(&e),
        }
    }

    /// Inserts the note, or reads the one already stored under `id` (on
    /// the primary, where the conflict was found).
    async fn insert(&self, db: &Db, id: i64, text: &str) -> Result<Inserted, DbError> {
        let params = Params::Insert {
            id,
            text,
            node: &self.hostname,
        };
        let rows = db.query(db::INSERT, &params).await?;
        if let Some(note) = rows.notes.into_iter().next() {
            return Ok(Inserted::New(note));
        }
        let rows = db.query(db::GET_ON_PRIMARY, &Params::Id(id)).await?;
        match rows.notes.into_iter().next() {
            Some(note) => Ok(Inserted::Existing(note)),
            None => Err(DbError::Unavailable(format!(
                "note {id} was in the way of the insert but cannot be read back"
            ))),
        }
    }

    /// Without a client id a taken id is a collision, not a retry: another
    /// one is drawn. The exception is a note with this very text from this
    /// node, which is this request's own insert answered by the retry after
    /// a broken connection.
    async fn insert_with_chosen_id(&self, db: &Db, text: &str) -> Result<(i64, Inserted), DbError> {
        for _ in 0..CHOSEN_ID_TRIES {
            let id = rand::random_range(1..MAX_CHOSEN_ID);
            match self.insert(db, id, text).await? {
                Inserted::Existing(note) if note.text != text || note.node != self.hostname => {
                    continue;
                }
                Inserted::Existing(note) => return Ok((id, Inserted::New(note))),
                inserted => return Ok((id, inserted)),
            }
        }
        Err(DbError::Unavailable(format!(
            "no free note id in {CHOSEN_ID_TRIES} random tries"
        )))
    }

    /// `GET /api/notes/{id}`: a standby first; the primary when the
    /// standby has no such row (it may not have replayed it yet) or cannot
    /// answer the statement.
    async fn get(&self, db: &Db, id: i64) -> Response<Body> {
        let found = match db.query(db::GET, &Params::Id(id)).await {
            Ok(rows) if !rows.notes.is_empty() => Ok(rows),
            Ok(_) | Err(DbError::Query { .. }) => {
                db.query(db::GET_ON_PRIMARY, &Params::Id(id)).await
            }
            Err(e) => Err(e),
        };
        let rows = match found {
            Ok(rows) => rows,
            Err(e) => return self.db_error(&e),
        };
        let Some(note) = rows.notes.first() else {
            let doc = json!({"error": format!("no note {id}"), "id": id, "node": self.hostname});
            return respond::json(StatusCode::NOT_FOUND, &doc);
        };
        let mut doc = note_json(note);
        doc["server"] = server_json(rows.server);
        doc["answered_by"] = json!(self.hostname);
        respond::json(StatusCode::OK, &doc)
    }

    /// `GET /api/notes?after=&limit=`, in id order.
    async fn list(&self, db: &Db, query: Option<&str>) -> Response<Body> {
        let page = match request::page(query) {
            Ok(page) => page,
            Err(why) => return self.error(StatusCode::BAD_REQUEST, &why),
        };
        let params = Params::Page {
            after: page.after,
            limit: page.limit,
        };
        let rows = match db.query(db::LIST, &params).await {
            Err(DbError::Query { .. }) => db.query(db::LIST_ON_PRIMARY, &params).await,
            other => other,
        };
        match rows {
            Ok(rows) => respond::json(StatusCode::OK, &self.page_json(&rows, page.limit)),
            Err(e) => self.db_error(&e),
        }
    }

    fn page_json(&self, rows: &Rows, limit: i64) -> Value {
        let full = i64::try_from(rows.notes.len()).unwrap_or(i64::MAX) >= limit;
        let next = rows.notes.last().filter(|_| full).map(|n| n.id);
        json!({
            "notes": rows.notes.iter().map(note_json).collect::<Vec<_>>(),
            "next_after": next,
            "server": server_json(rows.server),
            "answered_by": self.hostname,
        })
    }

    fn db_error(&self, e: &DbError) -> Response<Body> {
        self.unavailable(&format!("database unavailable: {e}"))
    }

    /// 503 with `Retry-After: 1`: the next try, here or on another node,
    /// may well succeed.
    fn unavailable(&self, why: &str) -> Response<Body> {
        let mut resp = self.error(StatusCode::SERVICE_UNAVAILABLE, why);
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        resp
    }

    fn error(&self, status: StatusCode, why: &str) -> Response<Body> {
        respond::json(status, &json!({"error": why, "node": self.hostname}))
    }
}

enum Inserted {
    New(Note),
    /// The id was taken; this is what is stored under it.
    Existing(Note),
}

fn note_json(note: &Note) -> Value {
    json!({
        "id": note.id,
        "text": note.text,
        "node": note.node,
        "created_at": rfc3339(note.created_at),
    })
}

fn rfc3339(at: SystemTime) -> String {
    humantime::format_rfc3339_micros(at).to_string()
}

fn server_json(server: Option<IpAddr>) -> Value {
    server.map_or(Value::Null, |ip| json!(ip.to_string()))
}

/// The answer on a web node where the app is not configured: a 404 that
/// says how to turn it on, rather than a file lookup that would also 404.
pub fn not_configured(hostname: &str) -> Response<Body> {
    let doc = json!({
        "error": "the notes app is off on this node: set `notes` in its web settings",
        "node": hostname,
    });
    respond::json(StatusCode::NOT_FOUND, &doc)
}

/// Where the app connects: `address` if written, else the pooler on the
/// VIP.
pub fn target(settings: &NotesSettings, config: &ClusterConfig) -> Result<SocketAddr, String> {
    if let Some(address) = settings.address {
        return Ok(address);
    }
    config
        .vip
        .map(|vip| SocketAddr::new(vip.addr(), config.postgres.port))
        .ok_or_else(|| "the cluster has no VIP and `notes` no `address`".to_owned())
}

/// The password in `path`: at most 4 KiB, one trailing newline dropped.
pub async fn read_password(path: &Path) -> Result<String, String> {
    let shown = path.display();
    let read = async {
        let mut bytes = Vec::new();
        tokio::fs::File::open(path)
            .await?
            .take(MAX_PASSWORD_FILE_BYTES + 1)
            .read_to_end(&mut bytes)
            .await?;
        Ok::<_, std::io::Error>(bytes)
    };
    let bytes = match tokio::time::timeout(PASSWORD_READ_TIMEOUT, read).await {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(e)) => return Err(format!("cannot read password_file {shown}: {e}")),
        Err(_) => return Err(format!("password_file {shown} did not read within 2s")),
    };
    password_from(&bytes).map_err(|why| format!("password_file {shown} {why}"))
}

fn password_from(bytes: &[u8]) -> Result<String, String> {
    if bytes.len() as u64 > MAX_PASSWORD_FILE_BYTES {
        return Err(format!(
            "is larger than {MAX_PASSWORD_FILE_BYTES} bytes: not a password"
        ));
    }
    let text = std::str::from_utf8(bytes).map_err(|_| "is not UTF-8 text".to_owned())?;
    let text = text
        .strip_suffix("\r\n")
        .or_else(|| text.strip_suffix('\n'))
        .unwrap_or(text);
    if text.is_empty() {
        return Err("is empty".into());
    }
    if text.contains(['\0', '\n']) {
        return Err("holds more than one line".into());
    }
    Ok(text.to_owned())
}

/// The app as a visitor reaches it, for the status page: through the
/// balancer on the VIP, or this node's own web port in a cluster without
/// one. `None` when the app is off here.
pub fn public_url(config: &ClusterConfig, web: &WebSettings, node: IpAddr) -> Option<String> {
    web.notes.as_ref()?;
    let (ip, port) = match config.vip {
        Some(vip) => {
            let balancer_port = config
                .nodes
                .iter()
                .find_map(|n| n.settings.balancer.as_ref().map(|b| b.http_port))
                .unwrap_or(80);
            (vip.addr(), balancer_port)
        }
        None => (node, web.port),
    };
    let host = match ip {
        IpAddr::V6(v6) => format!("[{v6}]"),
        IpAddr::V4(v4) => v4.to_string(),
    };
    Some(match port {
        80 => format!("http://{host}/api/notes"),
        port => format!("http://{host}:{port}/api/notes"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, Full};
    use hyper::body::Bytes;

    fn config(text: &str) -> ClusterConfig {
        crate::config::parse(text, Path::new("t.toml")).unwrap_or_else(|e| panic!("{e}"))
    }

    const WITH_VIP: &str = r#"
[cluster]
name = "t"
vip = "192.0.2.10/24"
[postgres]
port = 6432
users = [ { name = "app", secret = "md5aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" } ]
[defaults.web]
notes = { database = "app", user = "app", password_file = "/etc/piha/notes-password" }
[[node]]
hostname = "a"
address = "192.0.2.11/24"
roles = ["balancer", "web"]
balancer = { http_port = 8000 }
"#;

    #[test]
    fn the_pooler_on_the_vip_unless_an_address_is_written() {
        let c = config(WITH_VIP);
        let web = c.plan_for("a").unwrap().settings.web.unwrap();
        let notes = web.notes.clone().unwrap();
        assert_eq!(target(&notes, &c), Ok("192.0.2.10:6432".parse().unwrap()));
        let own = NotesSettings {
            address: Some("198.51.100.7:5432".parse().unwrap()),
            ..notes
        };
        assert_eq!(target(&own, &c), Ok("198.51.100.7:5432".parse().unwrap()));
        let node: IpAddr = "192.0.2.11".parse().unwrap();
        assert_eq!(
            public_url(&c, &web, node).as_deref(),
            Some("http://192.0.2.10:8000/api/notes")
        );
        let off = WebSettings {
            notes: None,
            ..web.clone()
        };
        assert_eq!(public_url(&c, &off, node), None);
        let mut no_vip = c.clone();
        no_vip.vip = None;
        assert!(target(&web.notes.clone().unwrap(), &no_vip).is_err());
        assert_eq!(
            public_url(&no_vip, &web, node).as_deref(),
            Some("http://192.0.2.11:8080/api/notes")
        );
    }

    #[test]
    fn password_files() {
        assert_eq!(password_from(b"s3cret\n"), Ok("s3cret".into()));
        assert_eq!(password_from(b"s3cret\r\n"), Ok("s3cret".into()));
        assert_eq!(password_from(b"with space "), Ok("with space ".into()));
        assert_eq!(password_from(b"\n"), Err("is empty".into()));
        assert_eq!(password_from(b""), Err("is empty".into()));
        assert!(password_from(b"a\nb\n").is_err());
        assert!(password_from(&[0xff, 0xfe]).is_err());
        assert!(password_from(&[b'a'; 4097]).unwrap_err().contains("larger"));
    }

    #[tokio::test]
    async fn a_missing_password_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope");
        let why = read_password(&missing).await.unwrap_err();
        assert!(why.contains("cannot read password_file"), "{why}");
        assert!(why.contains("nope"), "{why}");
        let file = dir.path().join("pw");
        std::fs::write(&file, "pw\n").unwrap();
        assert_eq!(read_password(&file).await, Ok("pw".into()));
    }

    async fn answer(
        notes: &Notes,
        method: Method,
        uri: &str,
        body: &'static str,
    ) -> (StatusCode, HeaderMap, Value) {
        let uri: Uri = uri.parse().unwrap();
        let body = Full::new(Bytes::from_static(body.as_bytes()));
        let resp = notes.handle(&method, &uri, &HeaderMap::new(), body).await;
        let (parts, body) = resp.into_parts();
        let bytes = body.collect().await.unwrap().to_bytes();
        let doc = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (parts.status, parts.headers, doc)
    }

    /// Requests that are wrong are told so before any database is asked:
    /// here there is none, and nothing listens where it would be.
    #[tokio::test]
    async fn bad_requests_are_answered_without_a_database() {
        let settings = NotesSettings {
            database: "app".into(),
            user: "app".into(),
            password_file: "/nonexistent".into(),
            address: None,
        };
        // Bound, then let go: nothing listens there.
        let nowhere = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap();
        let notes = Notes::new("pi-1", nowhere, &settings, "pw");
        let post = |body| answer(&notes, Method::POST, "/api/notes", body);

        let (status, _, doc) = post("{").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(
            doc["error"].as_str().unwrap().contains("not valid JSON"),
            "{doc}"
        );
        assert_eq!(doc["node"], "pi-1");
        let (status, _, doc) = post(r#"{"id": -1, "text": "x"}"#).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(doc["error"].as_str().unwrap().contains("positive"), "{doc}");

        let (status, _, _) = answer(&notes, Method::GET, "/api/notes/abc", "").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        let (status, _, _) = answer(&notes, Method::GET, "/api/notes?limit=0", "").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        let (status, headers, _) = answer(&notes, Method::DELETE, "/api/notes/1", "").await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(headers[header::ALLOW], "GET, HEAD");
        let (status, headers, _) = answer(&notes, Method::PUT, "/api/notes", "").await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(headers[header::ALLOW], "GET, HEAD, POST");

        // A declared body over the limit is refused unread.
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(16 * 1024 + 1));
        let uri: Uri = "/api/notes".parse().unwrap();
        let resp = notes
            .handle(&Method::POST, &uri, &headers, Full::new(Bytes::new()))
            .await;
        assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);

        // A good request reaches for the database, which is not there.
        let (status, headers, doc) = post(r#"{"text": "x"}"#).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{doc}");
        assert_eq!(headers[header::RETRY_AFTER], "1");
        assert!(
            doc["error"]
                .as_str()
                .unwrap()
                .contains("database unavailable"),
            "{doc}"
        );
    }

    #[tokio::test]
    async fn an_app_that_cannot_run_says_why() {
        let notes = Notes::off("pi-1", "cannot read password_file /x: gone".into());
        let (status, headers, doc) = answer(&notes, Method::GET, "/api/notes/1", "").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(headers[header::RETRY_AFTER], "1");
        assert!(
            doc["error"].as_str().unwrap().contains("password_file /x"),
            "{doc}"
        );
    }
}
