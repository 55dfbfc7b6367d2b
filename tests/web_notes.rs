//! The notes demo app (`/api/notes`) end to end: a real PostgreSQL primary
//! and one streaming standby (tests/common/pg.rs), a piha node running the
//! pooler and the HTTP balancer on the VIP and the web role with the app,
//! which reaches the database through the pooler on the VIP, as on a Pi.
//! Requests go through the balancer on the VIP, as the failure drill's do.
//!
//! Both servers listen on their own address, so `server` in an answer says
//! which one read the note.

mod common;

use std::io::{Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use common::node::{Cluster, TOKEN, wait_until};
use common::pg::PgCluster;
use common::pooler::{APP_DB, APP_PASSWORD, APP_USER, POOLER_PORT, postgres_lines};
use serde_json::Value;

/// 127.61.46.x: this file's addresses.
const NET: u8 = 46;
const PRIMARY: &str = "127.61.46.201";
const STANDBY: &str = "127.61.46.202";

/// One HTTP answer.
#[derive(Debug)]
struct Reply {
    status: u16,
    /// The head, header names lowercased.
    head: String,
    body: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|line| {
            let (k, v) = line.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// One request on its own connection, bounded by timeouts. `extra` is
/// sent as written after the other headers (for a declared length with
/// no body).
fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
    extra: &str,
) -> Result<Reply, String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .map_err(|e| format!("connect {addr}: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .map_err(|e| e.to_string())?;
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    match body {
        Some(b) => req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            b.len()
        )),
        None if extra.is_empty() => req.push_str("Content-Length: 0\r\n"),
        None => {}
    }
    req.push_str(extra);
    req.push_str("\r\n");
    req.push_str(body.unwrap_or(""));
    stream
        .write_all(req.as_bytes())
        .map_err(|e| format!("send to {addr}: {e}"))?;
    let mut raw = Vec::new();
    stream
        .take(4 << 20)
        .read_to_end(&mut raw)
        .map_err(|e| format!("read from {addr}: {e}"))?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").ok_or("no header end")?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or("no status code")?;
    Ok(Reply {
        status,
        head: head.to_owned(),
        body: body.to_owned(),
    })
}

fn get(addr: SocketAddr, path: &str) -> Reply {
    call(addr, "GET", path, None, "").unwrap_or_else(|e| panic!("GET {path}: {e}"))
}

fn post(addr: SocketAddr, body: &str) -> Reply {
    call(addr, "POST", "/api/notes", Some(body), "").unwrap_or_else(|e| panic!("POST {body}: {e}"))
}

/// Asserts the status, showing the answer and the node's log if not.
fn expect(c: &Cluster, reply: &Reply, status: u16) -> Value {
    assert_eq!(
        reply.status,
        status,
        "{reply:?}\nnode log (tail):\n{}",
        tail(&c.log(0), 40)
    );
    reply.json()
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// The primary, the standby, and pi-1: pooler, balancer and VRRP on the
/// VIP 127.61.46.100, web role with the notes app using the pooler on the
/// VIP (no `address`: the default a Pi gets).
fn start() -> (PgCluster, Cluster, tempfile::TempDir) {
    let addrs: Vec<IpAddr> = [PRIMARY, STANDBY]
        .iter()
        .map(|a| a.parse().expect("address"))
        .collect();
    let pg = PgCluster::builder().standbys(1).addrs(&addrs).start();
    let lines = postgres_lines(&pg);
    let files = tempfile::tempdir().expect("temp dir");
    let password = files.path().join("notes-password");
    std::fs::write(&password, format!("{APP_PASSWORD}\n")).expect("password file");
    let www = files.path().join("www");
    std::fs::create_dir(&www).expect("www");
    let text = format!(
        r#"[cluster]
name = "notestest"
vip = "127.61.{NET}.100/24"
admin_token = "{TOKEN}"

[postgres]
{lines}
[defaults.web]
root = "{www}"
tls_port = false
access_log = "off"
notes = {{ database = "{APP_DB}", user = "{APP_USER}", password_file = "{password}" }}

[defaults.balancer]
https_port = false
health = {{ interval = "500ms", timeout = "500ms", rise = 1, fall = 2 }}

[[node]]
hostname = "pi-1"
address = "127.61.{NET}.1/24"
roles = ["balancer", "web"]
"#,
        www = www.display(),
        password = password.display(),
    );
    let mut c = Cluster::with_hosts(NET, &text, &[("pi-1", 1)]);
    c.start(0);
    (pg, c, files)
}

fn vip() -> SocketAddr {
    SocketAddr::from(([127, 61, NET, 100], 80))
}

#[test]
fn notes_through_the_vip_balancer_and_pooler() {
    let (pg, c, _files) = start();
    let vip = vip();
    // Up once the VIP is held, the balancer sees pi-1's web role, and the
    // app reached the database through the pooler.
    if let Err(e) = wait_until(Duration::from_secs(40), || {
        let r = call(vip, "GET", "/api/notes?limit=1", None, "")?;
        (r.status == 200).then_some(()).ok_or(format!("{r:?}"))
    }) {
        panic!("the app never answered: {e}\nnode log:\n{}", c.log(0));
    }

    // The status page links to it.
    let doc = c.status(0).expect("status");
    assert_eq!(
        doc["node"]["notes_url"], "http://127.61.46.100/api/notes",
        "{}",
        doc["node"]
    );

    // A client-chosen id: stored, then idempotent, then a conflict.
    let first = expect(&c, &post(vip, r#"{"id": 1001, "text": "first note"}"#), 201);
    assert_eq!(first["id"], 1001);
    assert_eq!(first["text"], "first note");
    assert_eq!(first["node"], "pi-1");
    assert_eq!(first["answered_by"], "pi-1");
    let created = first["created_at"].as_str().expect("created_at");
    assert!(created.ends_with('Z') && created.len() == 27, "{created}");
    let again = expect(&c, &post(vip, r#"{"id": 1001, "text": "first note"}"#), 200);
    assert_eq!(
        (&again["id"], &again["text"]),
        (&first["id"], &first["text"])
    );
    assert_eq!(again["created_at"], first["created_at"], "the stored one");
    let clash = expect(&c, &post(vip, r#"{"text": "another", "id": 1001}"#), 409);
    assert!(
        clash["error"].as_str().unwrap().contains("another text"),
        "{clash}"
    );

    // An id chosen by the app: positive, JS-safe, readable.
    let chosen = expect(&c, &post(vip, r#"{"text": "no id given"}"#), 201);
    let id = chosen["id"].as_i64().expect("a numeric id");
    assert!((1..1 << 53).contains(&id), "{id}");
    let read = expect(&c, &get(vip, &format!("/api/notes/{id}")), 200);
    assert_eq!(read["text"], "no id given");

    // A standby that has not replayed a note: the read falls back to the
    // primary, and a just-acknowledged note is never missing.
    let standby = &pg.standbys()[0];
    standby.psql("SELECT pg_wal_replay_pause()");
    for id in 2001..=2010 {
        let body = format!(r#"{{"id": {id}, "text": "note {id}"}}"#);
        expect(&c, &post(vip, &body), 201);
        let read = expect(&c, &get(vip, &format!("/api/notes/{id}")), 200);
        assert_eq!(read["text"], format!("note {id}"));
        assert_eq!(read["server"], PRIMARY, "only the primary has it: {read}");
    }
    standby.psql("SELECT pg_wal_replay_resume()");
    pg.wait_replayed();
    // Replayed, a note is read on the standby: the plain read really is
    // routed there.
    if let Err(e) = wait_until(Duration::from_secs(10), || {
        let read = get(vip, "/api/notes/2001").json();
        (read["server"] == STANDBY)
            .then_some(())
            .ok_or(format!("{read}"))
    }) {
        panic!("reads never went to the standby: {e}");
    }

    // Unknown ids.
    let missing = expect(&c, &get(vip, "/api/notes/999999"), 404);
    assert_eq!(missing["id"], 999999);

    // Lists in id order, from `after`, paged.
    let page = expect(&c, &get(vip, "/api/notes?after=1000&limit=3"), 200);
    let ids: Vec<i64> = page["notes"]
        .as_array()
        .expect("notes")
        .iter()
        .filter_map(|n| n["id"].as_i64())
        .collect();
    assert_eq!(ids, [1001, 2001, 2002], "{page}");
    assert_eq!(page["next_after"], 2002);
    let rest = expect(&c, &get(vip, "/api/notes?after=2002&limit=1000"), 200);
    let ids: Vec<i64> = rest["notes"]
        .as_array()
        .expect("notes")
        .iter()
        .filter_map(|n| n["id"].as_i64())
        .collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    assert!((2003..=2010).all(|i| ids.contains(&i)), "{ids:?}");
    assert_eq!(rest["next_after"], Value::Null, "the last page");
    let empty = expect(
        &c,
        &get(vip, &format!("/api/notes?after={}", i64::MAX)),
        200,
    );
    assert_eq!(empty["notes"], serde_json::json!([]));

    // Requests that are wrong are told what was wrong.
    let bad = expect(&c, &post(vip, "{\"text\": "), 400);
    assert!(
        bad["error"].as_str().unwrap().contains("not valid JSON"),
        "{bad}"
    );
    let long = format!(r#"{{"text": "{}"}}"#, "x".repeat(4097));
    let bad = expect(&c, &post(vip, &long), 400);
    assert!(
        bad["error"].as_str().unwrap().contains("4097 bytes"),
        "{bad}"
    );
    let bad = expect(&c, &post(vip, r#"{"id": 0, "text": "x"}"#), 400);
    assert!(bad["error"].as_str().unwrap().contains("positive"), "{bad}");
    expect(&c, &get(vip, "/api/notes/x1"), 400);
    let huge = call(vip, "POST", "/api/notes", None, "Content-Length: 20000\r\n")
        .expect("declared too large");
    assert_eq!(huge.status, 413, "{huge:?}");

    // The node's own port answers too, and names the node.
    let direct = SocketAddr::from(([127, 61, NET, 1], 8080));
    let read = expect(&c, &get(direct, "/api/notes/1001"), 200);
    assert_eq!(read["answered_by"], "pi-1");

    connection_broken_under_a_statement_is_retried(&c);

    // The table is as documented.
    let columns = pg.primary().psql_in(
        APP_DB,
        "SELECT string_agg(column_name || ' ' || data_type, ', ' ORDER BY ordinal_position) \
         FROM information_schema.columns WHERE table_name = 'piha_notes'",
    );
    assert_eq!(
        columns,
        "id bigint, text text, node text, created_at timestamp with time zone"
    );
}

/// Web nodes whose app cannot reach a database: one with an address where
/// nothing listens, one whose password file is missing, and one without the
/// app. No PostgreSQL is needed.
#[test]
fn without_a_database_the_app_answers_503() {
    let dir = tempfile::tempdir().expect("temp dir");
    let password = dir.path().join("pw");
    std::fs::write(&password, "pw\n").expect("password file");
    let www = dir.path().join("www");
    std::fs::create_dir(&www).expect("www");
    let text = format!(
        r#"[cluster]
name = "notesdown"
admin_token = "{TOKEN}"

[defaults.web]
root = "{www}"
tls_port = false
access_log = "off"

[[node]]
hostname = "pi-2"
address = "127.61.{NET}.22/24"
roles = ["web"]
web = {{ notes = {{ database = "app", user = "app", password_file = "{password}", address = "127.61.{NET}.29:5432" }} }}

[[node]]
hostname = "pi-3"
address = "127.61.{NET}.23/24"
roles = ["web"]
web = {{ notes = {{ database = "app", user = "app", password_file = "{missing}", address = "127.61.{NET}.29:5432" }} }}

[[node]]
hostname = "pi-4"
address = "127.61.{NET}.24/24"
roles = ["web"]
"#,
        www = www.display(),
        password = password.display(),
        missing = dir.path().join("missing").display(),
    );
    let mut c = Cluster::with_hosts(NET, &text, &[("pi-2", 22), ("pi-3", 23), ("pi-4", 24)]);
    for i in 0..3 {
        c.start(i);
    }
    let web = |octet| SocketAddr::from(([127, 61, NET, octet], 8080));
    for octet in [22, 23, 24] {
        if let Err(e) = wait_until(Duration::from_secs(20), || {
            call(web(octet), "GET", "/health", None, "").map(|_| ())
        }) {
            panic!("127.61.{NET}.{octet} never served: {e}");
        }
    }

    // Nothing listens where the pooler should be.
    let started = std::time::Instant::now();
    let reply = post(web(22), r#"{"id": 1, "text": "x"}"#);
    assert_eq!(reply.status, 503, "{reply:?}\n{}", c.log(0));
    assert_eq!(reply.header("retry-after"), Some("1"), "{reply:?}");
    let doc = reply.json();
    let why = doc["error"].as_str().expect("error");
    assert!(
        why.contains("database unavailable: cannot connect to 127.61.46.29:5432"),
        "{why}"
    );
    assert_eq!(doc["node"], "pi-2");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let reply = get(web(22), "/api/notes/1");
    assert_eq!(reply.status, 503, "{reply:?}");
    let reply = get(web(22), "/api/notes");
    assert_eq!(reply.status, 503, "{reply:?}");

    // The password file is missing: every request is told, and so is the
    // role's status.
    let reply = get(web(23), "/api/notes/1");
    assert_eq!(reply.status, 503, "{reply:?}\n{}", c.log(1));
    assert_eq!(reply.header("retry-after"), Some("1"));
    let why = reply.json()["error"].as_str().unwrap_or("").to_owned();
    assert!(why.contains("cannot read password_file"), "{why}");
    if let Err(e) = wait_until(Duration::from_secs(15), || {
        let doc = c.status(1)?;
        let roles = doc["node"]["roles"].as_array().cloned().unwrap_or_default();
        let web = roles.iter().find(|r| r["role"] == "web").cloned();
        match web {
            Some(r)
                if r["state"] == "degraded"
                    && r["detail"].as_str().unwrap_or("").contains("notes app off") =>
            {
                Ok(())
            }
            other => Err(format!("{other:?}")),
        }
    }) {
        panic!(
            "the web role does not say the app is off: {e}\n{}",
            c.log(1)
        );
    }
    assert_eq!(
        c.status(1).expect("status")["node"]["notes_url"],
        "http://127.61.46.23:8080/api/notes"
    );
    // Once the file is there the role restarts with the app (it looks
    // every 5 s), which now gets as far as connecting.
    std::fs::write(dir.path().join("missing"), "pw\n").expect("password file");
    if let Err(e) = wait_until(Duration::from_secs(20), || {
        let reply = call(web(23), "GET", "/api/notes/1", None, "")?;
        let why = reply.json()["error"].as_str().unwrap_or("").to_owned();
        why.contains("cannot connect").then_some(()).ok_or(why)
    }) {
        panic!(
            "the app did not start once its password was there: {e}\n{}",
            c.log(1)
        );
    }

    // No app on this node.
    let reply = get(web(24), "/api/notes/1");
    assert_eq!(reply.status, 404, "{reply:?}");
    assert!(
        reply.json()["error"]
            .as_str()
            .unwrap_or("")
            .contains("off on this node")
    );
    assert_eq!(
        c.status(2).expect("status")["node"]["notes_url"],
        Value::Null
    );
}

/// What a VIP move does to the app's idle connections, on loopback: a TCP
/// relay to the pooler that, once `cut`, closes each connection it had the
/// moment the app sends on it, as the new VIP holder's reset would.
struct Relay {
    addr: SocketAddr,
    generation: Arc<AtomicU64>,
    accepted: Arc<AtomicUsize>,
}

impl Relay {
    fn start(bind: &str, to: SocketAddr) -> Relay {
        let listener = TcpListener::bind(bind).expect("relay bind");
        let addr = listener.local_addr().expect("relay addr");
        let generation = Arc::new(AtomicU64::new(0));
        let accepted = Arc::new(AtomicUsize::new(0));
        let (epoch, count) = (generation.clone(), accepted.clone());
        // Ends with the test process; every connection is bounded by the
        // peers' own timeouts.
        std::thread::spawn(move || {
            for app in listener.incoming().flatten() {
                let Ok(pooler) = TcpStream::connect_timeout(&to, Duration::from_secs(2)) else {
                    continue;
                };
                count.fetch_add(1, Ordering::SeqCst);
                let born = epoch.load(Ordering::SeqCst);
                let (Ok(app2), Ok(pooler2)) = (app.try_clone(), pooler.try_clone()) else {
                    continue;
                };
                let epoch = epoch.clone();
                std::thread::spawn(move || forward(app, pooler, Some((born, epoch))));
                std::thread::spawn(move || forward(pooler2, app2, None));
            }
        });
        Relay {
            addr,
            generation,
            accepted,
        }
    }

    fn cut(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
    }
}

/// Copies `from` to `to`; with `cut`, gives up (closing both) on the first
/// bytes read after the relay's generation moved past the connection's.
fn forward(mut from: TcpStream, mut to: TcpStream, cut: Option<(u64, Arc<AtomicU64>)>) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if let Some((born, epoch)) = &cut {
            if epoch.load(Ordering::SeqCst) != *born {
                break;
            }
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}

/// A web node (its own cluster, so the VIP's balancer does not send it
/// requests) whose app reaches the pooler through a [`Relay`]. After the
/// relay cuts its connections, the next insert and read still succeed: the
/// broken connection is replaced and the statement sent again.
fn connection_broken_under_a_statement_is_retried(main: &Cluster) {
    let pooler = SocketAddr::from(([127, 61, NET, 1], POOLER_PORT));
    let relay = Relay::start(&format!("127.61.{NET}.30:0"), pooler);
    let dir = tempfile::tempdir().expect("temp dir");
    let password = dir.path().join("pw");
    std::fs::write(&password, APP_PASSWORD).expect("password file");
    let text = format!(
        r#"[cluster]
name = "notesrelay"
admin_token = "{TOKEN}"

[defaults.web]
root = "{www}"
tls_port = false
access_log = "off"

[[node]]
hostname = "pi-6"
address = "127.61.{NET}.26/24"
roles = ["web"]
web = {{ notes = {{ database = "{APP_DB}", user = "{APP_USER}", password_file = "{password}", address = "{relay}" }} }}
"#,
        www = dir.path().display(),
        password = password.display(),
        relay = relay.addr,
    );
    let mut c = Cluster::with_hosts(NET, &text, &[("pi-6", 26)]);
    c.start(0);
    let web = SocketAddr::from(([127, 61, NET, 26], 8080));
    if let Err(e) = wait_until(Duration::from_secs(20), || {
        let r = call(web, "GET", "/api/notes/1001", None, "")?;
        (r.status == 200).then_some(()).ok_or(format!("{r:?}"))
    }) {
        panic!("pi-6 never read a note: {e}\n{}\n{}", c.log(0), main.log(0));
    }
    let before = relay.accepted.load(Ordering::SeqCst);
    assert!(before >= 1);

    relay.cut();
    let stored = post(web, r#"{"id": 3001, "text": "after the cut"}"#);
    assert_eq!(stored.status, 201, "{stored:?}\n{}", c.log(0));
    assert_eq!(stored.json()["node"], "pi-6");
    assert!(
        relay.accepted.load(Ordering::SeqCst) > before,
        "a new connection"
    );
    assert!(
        c.log(0).contains("once more on a new one"),
        "the insert did not meet the broken connection:\n{}",
        c.log(0)
    );
    relay.cut();
    let read = get(web, "/api/notes/3001");
    assert_eq!(read.status, 200, "{read:?}\n{}", c.log(0));
    assert_eq!(read.json()["text"], "after the cut");
}
