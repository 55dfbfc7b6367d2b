//! Bad input at the pooler: malformed, oversized and out-of-place messages
//! before and after login, over raw TCP, while a normal client keeps
//! running queries. Each one ends in an ErrorResponse or a closed
//! connection for that client only; nothing hangs (every read has a
//! timeout), nothing panics, the other client never notices.
//!
//! Net 127.61.43 belongs to this test.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::pooler::{APP_DB, APP_PASSWORD, APP_USER, PoolerRig, keys_for};
use piha::pg::auth::ScramKeys;
use piha::pg::auth::scram::ClientExchange;

const NET: u8 = 43;
const PROTOCOL_3_0: u32 = 196_608;
const SSL_REQUEST: u32 = 80_877_103;
const CANCEL_REQUEST: u32 = 80_877_102;
/// The rig's `max_message_size`.
const MAX_MESSAGE: usize = 64 * 1024;
const LOGIN_TIMEOUT: Duration = Duration::from_secs(2);
const READ_TIMEOUT: Duration = Duration::from_secs(8);

/// What the pooler did with a connection.
#[derive(Debug)]
enum Outcome {
    Error {
        severity: String,
        code: String,
        message: String,
    },
    /// EOF, or a reset (the pooler closed with our bytes unread).
    Closed,
    /// Some other message first.
    Message(u8),
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    s.set_read_timeout(Some(READ_TIMEOUT)).expect("timeout");
    s.set_write_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    s.set_nodelay(true).expect("nodelay");
    s
}

fn message(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![tag];
    m.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
    m.extend_from_slice(body);
    m
}

fn cstr(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    v
}

/// A startup packet: length, `code`, then the parameters.
fn startup(code: u32, params: &[(&str, &str)]) -> Vec<u8> {
    let mut body = code.to_be_bytes().to_vec();
    for (k, v) in params {
        body.extend(cstr(k));
        body.extend(cstr(v));
    }
    body.push(0);
    let mut p = (body.len() as u32 + 4).to_be_bytes().to_vec();
    p.extend(body);
    p
}

fn app_startup() -> Vec<u8> {
    startup(PROTOCOL_3_0, &[("user", APP_USER), ("database", APP_DB)])
}

/// Writes, ignoring a reset: the pooler may hang up before taking it all.
fn send(s: &mut TcpStream, bytes: &[u8]) {
    if let Err(e) = s.write_all(bytes) {
        assert!(
            matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::BrokenPipe),
            "write: {e}"
        );
    }
}

/// Fills `buf`; Ok(false) on EOF or reset before the first byte. A time-out
/// is a hang: the test fails.
fn read_full(s: &mut TcpStream, buf: &mut [u8], what: &str) -> Result<bool, String> {
    let mut got = 0;
    while got < buf.len() {
        match s.read(&mut buf[got..]) {
            Ok(0) => {
                return if got == 0 {
                    Ok(false)
                } else {
                    Err(format!("{what}: EOF inside a message"))
                };
            }
            Ok(n) => got += n,
            Err(e) if e.kind() == ErrorKind::ConnectionReset && got == 0 => return Ok(false),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                panic!("{what}: no answer and no close within {READ_TIMEOUT:?} (a hang)")
            }
            Err(e) => return Err(format!("{what}: {e}")),
        }
    }
    Ok(true)
}

/// The next message, or None when the pooler closed.
fn read_message(s: &mut TcpStream, what: &str) -> Option<(u8, Vec<u8>)> {
    let mut head = [0u8; 5];
    if !read_full(s, &mut head, what).unwrap_or_else(|e| panic!("{e}")) {
        return None;
    }
    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    assert!(
        (4..1 << 20).contains(&len),
        "{what}: a message of {len} bytes"
    );
    let mut body = vec![0u8; len - 4];
    assert!(
        read_full(s, &mut body, what).unwrap_or_else(|e| panic!("{e}")) || body.is_empty(),
        "{what}: closed inside a message"
    );
    Some((head[0], body))
}

fn error_fields(body: &[u8]) -> Outcome {
    let (mut severity, mut code, mut text) = (String::new(), String::new(), String::new());
    for field in body.split(|&b| b == 0) {
        let Some((&kind, value)) = field.split_first() else {
            continue;
        };
        let value = String::from_utf8_lossy(value).into_owned();
        match kind {
            b'S' => severity = value,
            b'C' => code = value,
            b'M' => text = value,
            _ => {}
        }
    }
    Outcome::Error {
        severity,
        code,
        message: text,
    }
}

/// Reads past notices and parameter reports to the first telling message.
fn outcome(s: &mut TcpStream, what: &str) -> Outcome {
    loop {
        match read_message(s, what) {
            None => return Outcome::Closed,
            Some((b'E', body)) => return error_fields(&body),
            Some((b'N' | b'S', _)) => continue,
            Some((tag, _)) => return Outcome::Message(tag),
        }
    }
}

/// The pooler closes, after nothing but notices and errors (or, with
/// `anything`, after whatever it still had to pass on).
fn assert_closed(s: &mut TcpStream, what: &str, anything: bool) {
    let deadline = Instant::now() + READ_TIMEOUT;
    while Instant::now() < deadline {
        match read_message(s, what) {
            None => return,
            Some((b'E' | b'N', _)) => {}
            Some(_) if anything => {}
            Some((tag, _)) => panic!("{what}: '{}' instead of a close", tag as char),
        }
    }
    panic!("{what}: not closed");
}

/// A FATAL (or ERROR) with one of `codes` whose text contains `needle`,
/// then a close. A reset before anything arrived is accepted when `lenient`
/// (the pooler hung up with our bytes unread, and the kernel threw its
/// answer away).
fn expect_fatal(s: &mut TcpStream, what: &str, codes: &[&str], needle: &str, lenient: bool) {
    match outcome(s, what) {
        Outcome::Error {
            severity,
            code,
            message,
        } => {
            assert!(
                codes.contains(&code.as_str()),
                "{what}: SQLSTATE {code} ({severity}: {message}), expected one of {codes:?}"
            );
            assert!(
                message.contains(needle),
                "{what}: {message:?} does not mention {needle:?}"
            );
            assert!(
                severity == "FATAL" || severity == "ERROR",
                "{what}: severity {severity}"
            );
            assert_closed(s, what, false);
        }
        Outcome::Closed if lenient => {}
        other => panic!("{what}: expected an ErrorResponse {codes:?}, got {other:?}"),
    }
}

/// A logged-in raw connection and its BackendKeyData.
struct Session {
    s: TcpStream,
    pid: i32,
    secret: i32,
}

/// SCRAM-SHA-256 as a client, with the app user's keys.
fn login(addr: SocketAddr, keys: &ScramKeys) -> Session {
    let mut s = connect(addr);
    send(&mut s, &app_startup());
    let sasl = expect_auth(&mut s, 10, "login: SASL");
    assert!(sasl.starts_with(b"SCRAM-SHA-256\0"), "{sasl:?}");
    let mut client = ClientExchange::new(keys.clone());
    let first = client.client_first();
    let mut body = cstr("SCRAM-SHA-256");
    body.extend_from_slice(&(first.len() as i32).to_be_bytes());
    body.extend_from_slice(first.as_bytes());
    send(&mut s, &message(b'p', &body));
    let server_first = expect_auth(&mut s, 11, "login: SASLContinue");
    let last = client.server_first(&server_first).expect("server-first");
    send(&mut s, &message(b'p', last.as_bytes()));
    let server_final = expect_auth(&mut s, 12, "login: SASLFinal");
    client
        .server_final(&server_final)
        .expect("server signature");
    expect_auth(&mut s, 0, "login: AuthenticationOk");
    let (mut pid, mut secret) = (0, 0);
    loop {
        match read_message(&mut s, "login: greeting") {
            Some((b'K', body)) => {
                pid = i32::from_be_bytes(body[0..4].try_into().expect("4"));
                secret = i32::from_be_bytes(body[4..8].try_into().expect("4"));
            }
            Some((b'S', _)) => {}
            Some((b'Z', _)) => break,
            other => panic!("login: unexpected {other:?}"),
        }
    }
    assert_ne!(pid, 0, "no BackendKeyData");
    Session { s, pid, secret }
}

/// An Authentication message of `code`; returns what follows the code.
fn expect_auth(s: &mut TcpStream, code: i32, what: &str) -> Vec<u8> {
    match read_message(s, what) {
        Some((b'R', body)) if body.len() >= 4 => {
            let got = i32::from_be_bytes(body[0..4].try_into().expect("4"));
            assert_eq!(got, code, "{what}");
            body[4..].to_vec()
        }
        Some((b'E', body)) => panic!("{what}: {:?}", error_fields(&body)),
        other => panic!("{what}: {other:?}"),
    }
}

/// A simple query's first column, or the error it got.
fn query(s: &mut TcpStream, sql: &str, what: &str) -> Result<Vec<String>, Outcome> {
    send(s, &message(b'Q', &cstr(sql)));
    read_result(s, what)
}

fn read_result(s: &mut TcpStream, what: &str) -> Result<Vec<String>, Outcome> {
    let mut rows = Vec::new();
    let mut error = None;
    loop {
        match read_message(s, what) {
            None => return Err(error.unwrap_or(Outcome::Closed)),
            Some((b'D', body)) => {
                let len = i32::from_be_bytes(body[2..6].try_into().expect("4"));
                let value = if len < 0 {
                    String::new()
                } else {
                    String::from_utf8_lossy(&body[6..6 + len as usize]).into_owned()
                };
                rows.push(value);
            }
            Some((b'E', body)) => error = Some(error_fields(&body)),
            Some((b'Z', _)) => return error.map_or(Ok(rows), Err),
            Some(_) => {}
        }
    }
}

fn terminate(mut s: TcpStream) {
    send(&mut s, &message(b'X', b""));
}

/// The normal client: one tokio-postgres connection running a prepared and
/// a simple query in a loop, until `stop`. Returns (queries, failures).
fn normal_client(conninfo: String, stop: Arc<AtomicBool>) -> (u64, Vec<String>) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let mut failures = Vec::new();
        let (client, conn) = match tokio_postgres::connect(&conninfo, tokio_postgres::NoTls).await {
            Ok(c) => c,
            Err(e) => return (0, vec![format!("connect: {e}")]),
        };
        let conn = tokio::spawn(conn);
        let stmt = match client.prepare("SELECT $1::int4 + 1").await {
            Ok(s) => s,
            Err(e) => return (0, vec![format!("prepare: {e}")]),
        };
        let mut n: i32 = 0;
        while !stop.load(Ordering::Relaxed) {
            let limit = Duration::from_secs(10);
            match tokio::time::timeout(limit, client.query_one(&stmt, &[&n])).await {
                Ok(Ok(row)) => {
                    let got: i32 = row.get(0);
                    if got != n + 1 {
                        failures.push(format!("query {n}: got {got}"));
                    }
                }
                Ok(Err(e)) => failures.push(format!("query {n}: {e}")),
                Err(_) => failures.push(format!("query {n}: no answer within {limit:?}")),
            }
            if n % 10 == 0 {
                match tokio::time::timeout(limit, client.simple_query("SELECT 'still here'")).await
                {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => failures.push(format!("simple query {n}: {e}")),
                    Err(_) => failures.push(format!("simple query {n}: no answer")),
                }
            }
            n += 1;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        drop(client);
        let _ = tokio::time::timeout(Duration::from_secs(2), conn).await;
        (n as u64, failures)
    })
}

#[test]
fn bad_input_gets_an_error_or_a_close_and_other_clients_never_notice() {
    let mut rig = PoolerRig::start(
        NET,
        0,
        "login_timeout = \"2s\"\nmax_message_size = \"64KiB\"",
    );
    let addr = rig.addr;
    let keys =
        ScramKeys::parse(&keys_for(APP_PASSWORD, &rig.pg.verifier(APP_USER))).expect("app keys");
    let conninfo = format!("{} password={APP_PASSWORD}", rig.conninfo(APP_USER, APP_DB));
    let stop = Arc::new(AtomicBool::new(false));
    let (normal, fresh) = std::thread::scope(|scope| {
        let normal = {
            let stop = stop.clone();
            scope.spawn(move || normal_client(conninfo, stop))
        };
        // New connections through the login path too, while the rest runs.
        let fresh = {
            let stop = stop.clone();
            let rig = &rig;
            scope.spawn(move || {
                let mut runs = 0u32;
                let mut failures = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    match rig.try_psql("SELECT 40 + 2") {
                        Ok(out) if out == "42" => {}
                        Ok(out) => failures.push(format!("psql printed {out:?}")),
                        Err(e) => failures.push(format!("psql: {e}")),
                    }
                    runs += 1;
                    std::thread::sleep(Duration::from_millis(50));
                }
                (runs, failures)
            })
        };
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            before_login(addr);
            after_login(addr, &keys);
            login_timeout(addr);
        }));
        stop.store(true, Ordering::Relaxed);
        let normal = normal.join().expect("normal client thread");
        let fresh = fresh.join().expect("psql thread");
        if let Err(panic) = result {
            eprintln!("node log:\n{}", rig.node.log(0));
            std::panic::resume_unwind(panic);
        }
        (normal, fresh)
    });

    let log = rig.node.log(0);
    assert!(rig.node.is_running(0), "the pooler died\n{log}");
    assert!(!log.contains("panicked"), "a panic in the node log:\n{log}");
    let (queries, failures) = normal;
    assert!(
        failures.is_empty(),
        "the normal client failed: {failures:?}\n{log}"
    );
    assert!(
        queries >= 20,
        "the normal client ran only {queries} queries"
    );
    let (runs, failures) = fresh;
    assert!(failures.is_empty(), "psql failed: {failures:?}\n{log}");
    assert!(runs >= 2, "psql ran {runs} times");
    assert_eq!(rig.psql("SELECT 1"), "1");
    eprintln!("normal client: {queries} queries, psql: {runs} fresh connections, no failure");
}

/// Everything a client can get wrong before it is logged in.
fn before_login(addr: SocketAddr) {
    let pv = &["08P01"][..];

    // Garbage: an HTTP request read as a startup length of 1.2 GB.
    let mut s = connect(addr);
    send(&mut s, b"GET / HTTP/1.1\r\nHost: piha\r\n\r\n");
    expect_fatal(&mut s, "garbage (HTTP)", pv, "startup packet", true);

    // Garbage, exactly as long as what is read of it.
    let mut s = connect(addr);
    send(&mut s, &[0xde, 0xad, 0xbe, 0xef]);
    expect_fatal(&mut s, "garbage (4 bytes)", pv, "startup packet", false);

    // Zeros: a length below 8.
    let mut s = connect(addr);
    send(&mut s, &[0, 0, 0, 4]);
    expect_fatal(&mut s, "startup length 4", pv, "length below 8", false);
    let mut s = connect(addr);
    send(&mut s, &[0, 0, 0, 0]);
    expect_fatal(&mut s, "startup length 0", pv, "length below 8", false);

    // 2 GiB announced: refused on the length, nothing allocated.
    let mut s = connect(addr);
    send(&mut s, &0x8000_0000u32.to_be_bytes());
    expect_fatal(
        &mut s,
        "startup length 2 GiB",
        pv,
        "larger than the limit",
        false,
    );
    let mut s = connect(addr);
    send(&mut s, &[0xff, 0xff, 0xff, 0xff]);
    expect_fatal(
        &mut s,
        "startup length 4 GiB",
        pv,
        "larger than the limit",
        false,
    );

    // A startup cut short: the pooler waits for the rest, then the client
    // hangs up.
    let mut s = connect(addr);
    let packet = app_startup();
    send(&mut s, &packet[..packet.len() - 3]);
    s.shutdown(Shutdown::Write).expect("shutdown");
    expect_fatal(&mut s, "startup cut short", pv, "startup packet", true);

    // Unknown protocol versions.
    // (1234.5678 to 1234.5680 are the cancel, SSL and GSS codes.)
    for (major, minor) in [(2u32, 0u32), (3, 99), (4, 0), (0, 0), (65535, 65535)] {
        let mut s = connect(addr);
        send(
            &mut s,
            &startup((major << 16) | minor, &[("user", APP_USER)]),
        );
        let what = format!("protocol {major}.{minor}");
        expect_fatal(
            &mut s,
            &what,
            &["08P01", "0A000"],
            &format!("{major}.{minor}"),
            false,
        );
    }

    // No user, an empty user, a user name over 63 bytes.
    let mut s = connect(addr);
    send(&mut s, &startup(PROTOCOL_3_0, &[("database", APP_DB)]));
    expect_fatal(
        &mut s,
        "no user",
        &["28000"],
        "no PostgreSQL user name",
        false,
    );
    let mut s = connect(addr);
    send(&mut s, &startup(PROTOCOL_3_0, &[("user", "")]));
    expect_fatal(
        &mut s,
        "empty user",
        &["28000"],
        "no PostgreSQL user name",
        false,
    );
    let mut s = connect(addr);
    let long = "u".repeat(200);
    send(&mut s, &startup(PROTOCOL_3_0, &[("user", &long)]));
    expect_fatal(&mut s, "user of 200 bytes", &["28000"], "63 bytes", false);

    // A parameter given twice; an unterminated parameter list.
    let mut s = connect(addr);
    send(
        &mut s,
        &startup(PROTOCOL_3_0, &[("user", APP_USER), ("user", "postgres")]),
    );
    expect_fatal(&mut s, "duplicate parameter", pv, "given twice", false);
    let mut s = connect(addr);
    let mut body = PROTOCOL_3_0.to_be_bytes().to_vec();
    body.extend_from_slice(b"user\0app");
    let mut packet = (body.len() as u32 + 4).to_be_bytes().to_vec();
    packet.extend(body);
    send(&mut s, &packet);
    expect_fatal(&mut s, "unterminated parameters", pv, "NUL", false);

    // Parameters the pooler refuses.
    for (key, value) in [("options", "-c work_mem=1GB"), ("replication", "database")] {
        let mut s = connect(addr);
        send(
            &mut s,
            &startup(PROTOCOL_3_0, &[("user", APP_USER), (key, value)]),
        );
        expect_fatal(&mut s, key, &["0A000"], key, false);
    }

    // SSLRequest: 'N' (no TLS configured), then a second one is refused.
    let mut s = connect(addr);
    let ssl = startup_code(SSL_REQUEST);
    send(&mut s, &ssl);
    let mut answer = [0u8; 1];
    assert!(read_full(&mut s, &mut answer, "SSLRequest").expect("read"));
    assert_eq!(&answer, b"N", "SSLRequest without TLS");
    send(&mut s, &ssl);
    expect_fatal(
        &mut s,
        "SSLRequest twice",
        pv,
        "SSLRequest sent twice",
        false,
    );

    // A CancelRequest with made-up keys: nothing happens, the connection
    // closes without a word.
    for (pid, secret) in [(1, 1), (-1, i32::MIN), (0x5eed, 0x0dd)] {
        let mut s = connect(addr);
        let mut c = startup_code(CANCEL_REQUEST);
        c[..4].copy_from_slice(&16u32.to_be_bytes());
        c.extend_from_slice(&i32::to_be_bytes(pid));
        c.extend_from_slice(&i32::to_be_bytes(secret));
        send(&mut s, &c);
        assert!(
            matches!(outcome(&mut s, "cancel"), Outcome::Closed),
            "a CancelRequest gets no answer"
        );
    }
    // A CancelRequest of the wrong length.
    let mut s = connect(addr);
    send(&mut s, &startup_code(CANCEL_REQUEST));
    expect_fatal(&mut s, "short CancelRequest", pv, "int32", false);

    // A login that goes wrong half-way: a wrong SASL mechanism, a SASL
    // length that lies, a client-first without a nonce, something that is
    // not a password message, an oversized one.
    let sasl = |mechanism: &str, data: &[u8], len: i32| {
        let mut body = cstr(mechanism);
        body.extend_from_slice(&len.to_be_bytes());
        body.extend_from_slice(data);
        message(b'p', &body)
    };
    let cases: Vec<(&str, Vec<u8>, &[&str], &str)> = vec![
        (
            "SASL mechanism",
            sasl("SCRAM-SHA-1", b"n,,n=,r=abc", 11),
            pv,
            "not supported",
        ),
        (
            "SASL length",
            sasl("SCRAM-SHA-256", b"n,,n=,r=abc", 99),
            pv,
            "length",
        ),
        (
            "SASL without nonce",
            sasl("SCRAM-SHA-256", b"n,,n=", 5),
            pv,
            "nonce",
        ),
        (
            "SASL channel binding",
            sasl("SCRAM-SHA-256", b"p=tls-server-end-point,,n=,r=abc", 32),
            pv,
            "channel binding",
        ),
        (
            "Query during login",
            message(b'Q', &cstr("SELECT 1")),
            pv,
            "password message",
        ),
        (
            "oversized password message",
            {
                let mut m = message(b'p', &[b'x'; 100]);
                m[1..5].copy_from_slice(&(1u32 << 20).to_be_bytes());
                m
            },
            pv,
            "larger than the limit",
        ),
    ];
    for (what, msg, codes, needle) in cases {
        let mut s = connect(addr);
        send(&mut s, &app_startup());
        expect_auth(&mut s, 10, what);
        send(&mut s, &msg);
        expect_fatal(&mut s, what, codes, needle, false);
    }
}

/// A startup packet of just a code (SSLRequest, a CancelRequest's head).
fn startup_code(code: u32) -> Vec<u8> {
    let mut p = 8u32.to_be_bytes().to_vec();
    p.extend_from_slice(&code.to_be_bytes());
    p
}

/// Everything a logged-in client can get wrong.
fn after_login(addr: SocketAddr, keys: &ScramKeys) {
    let pv = &["08P01"][..];

    // Sanity: the raw client works.
    let mut c = login(addr, keys);
    assert_eq!(query(&mut c.s, "SELECT 1", "sanity").expect("rows"), ["1"]);

    // COPY data, CopyDone and CopyFail outside COPY are ignored, as
    // PostgreSQL does; the session goes on.
    send(&mut c.s, &message(b'd', b"1\t2\n"));
    send(&mut c.s, &message(b'c', b""));
    send(&mut c.s, &message(b'f', &cstr("never mind")));
    assert_eq!(
        query(&mut c.s, "SELECT 2", "after stray COPY messages").expect("rows"),
        ["2"]
    );

    // A Bind of a statement nobody prepared, with garbage after the names:
    // PostgreSQL's own error, and the session goes on.
    let mut bind = cstr("");
    bind.extend(cstr("never_prepared"));
    bind.extend_from_slice(&[0xff, 0xff, 0, 7]);
    send(&mut c.s, &message(b'B', &bind));
    send(&mut c.s, &message(b'S', b""));
    match read_result(&mut c.s, "Bind of an unknown statement") {
        Err(Outcome::Error { severity, .. }) => assert_eq!(severity, "ERROR"),
        other => panic!("Bind of an unknown statement: {other:?}"),
    }
    assert_eq!(
        query(&mut c.s, "SELECT 3", "after a failed Bind").expect("rows"),
        ["3"]
    );

    // A CancelRequest with this session's pid but the wrong secret does
    // nothing; with the right one it cancels (so the first proves something).
    send(
        &mut c.s,
        &message(b'Q', &cstr("SELECT 'slept' FROM pg_sleep(1)")),
    );
    std::thread::sleep(Duration::from_millis(200));
    cancel(addr, c.pid, c.secret.wrapping_add(1));
    cancel(addr, c.pid.wrapping_add(1), c.secret);
    match read_result(&mut c.s, "wrong-secret cancel") {
        Ok(rows) => assert_eq!(rows, ["slept"]),
        Err(e) => panic!("a cancel with the wrong secret acted: {e:?}"),
    }
    send(&mut c.s, &message(b'Q', &cstr("SELECT pg_sleep(5)")));
    std::thread::sleep(Duration::from_millis(300));
    cancel(addr, c.pid, c.secret);
    match read_result(&mut c.s, "right-secret cancel") {
        Err(Outcome::Error { code, .. }) => assert_eq!(code, "57014"),
        other => panic!("a cancel with the right keys: {other:?}"),
    }
    assert_eq!(
        query(&mut c.s, "SELECT 4", "after cancel").expect("rows"),
        ["4"]
    );
    terminate(c.s);

    // The ones that end the session: what is sent, what the FATAL says.
    let broken_parse = {
        // Says two parameter types, gives one.
        let mut b = cstr("s1");
        b.extend(cstr("SELECT $1"));
        b.extend_from_slice(&[0, 2, 0, 0, 0, 23]);
        let mut m = message(b'P', &b);
        m.extend(message(b'S', b""));
        m
    };
    let negative_parse = {
        let mut b = cstr("s1");
        b.extend(cstr("SELECT 1"));
        b.extend_from_slice(&[0xff, 0xff]);
        let mut m = message(b'P', &b);
        m.extend(message(b'S', b""));
        m
    };
    let unterminated_query = {
        let mut m = message(b'Q', b"SELECT 1");
        m.extend(message(b'S', b""));
        m
    };
    let oversized_head = {
        // Announces 100 KiB, sends 1 KiB: refused on the length alone.
        let mut m = vec![b'Q'];
        m.extend_from_slice(&(100u32 * 1024 + 4).to_be_bytes());
        m.extend(vec![b' '; 1024]);
        m
    };
    let cases: Vec<(&str, Vec<u8>, &[&str], &str)> = vec![
        (
            "unknown message type",
            message(b'x', b"hello"),
            pv,
            "unknown message type",
        ),
        (
            "NUL message type",
            message(0, b""),
            pv,
            "unknown message type",
        ),
        (
            "Parse with a broken parameter list",
            broken_parse,
            pv,
            "parameter type list",
        ),
        (
            "Parse with a negative parameter count",
            negative_parse,
            pv,
            "parameter type list",
        ),
        ("Query without its NUL", unterminated_query, pv, "NUL"),
        (
            "password message after login",
            message(b'p', &cstr("app-test-password")),
            pv,
            "password message",
        ),
        (
            "message length below 4",
            vec![b'Q', 0, 0, 0, 2],
            pv,
            "below 4",
        ),
        (
            "100 KiB announced over a 64 KiB limit",
            oversized_head,
            &["54000", "08P01"],
            "larger than the limit",
        ),
        ("garbage bytes", vec![0xff; 64], &["54000", "08P01"], ""),
    ];
    for (what, msg, codes, needle) in cases {
        let mut c = login(addr, keys);
        send(&mut c.s, &msg);
        expect_fatal(&mut c.s, what, codes, needle, false);
    }

    // A whole 100 KiB Query over the 64 KiB limit: the same refusal (or a
    // reset, when the pooler hangs up with most of it unread).
    let mut c = login(addr, keys);
    let big = format!("SELECT '{}'", "x".repeat(100 * 1024));
    assert!(big.len() > MAX_MESSAGE);
    send(&mut c.s, &message(b'Q', &cstr(&big)));
    expect_fatal(
        &mut c.s,
        "100 KiB Query",
        &["54000", "08P01"],
        "larger than the limit",
        true,
    );
    // Just under the limit still works.
    let mut c = login(addr, keys);
    let fits = format!("SELECT length('{}')", "x".repeat(60 * 1024));
    assert_eq!(
        query(&mut c.s, &fits, "60 KiB Query").expect("rows"),
        [(60 * 1024).to_string()]
    );
    terminate(c.s);

    // Bad messages that arrive while a query runs (a server is leased, so
    // they are read by the relay, not the request scanner).
    let leased: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "unknown type while leased",
            message(b'x', b"!"),
            "unexpected message type",
        ),
        (
            "bad Describe while leased",
            message(b'D', b"X\0"),
            "Describe/Close",
        ),
        (
            "bad Parse while leased",
            {
                let mut b = cstr("s9");
                b.extend(cstr("SELECT 1"));
                b.push(0);
                message(b'P', &b)
            },
            "int16",
        ),
        (
            "password while leased",
            message(b'p', &cstr("x")),
            "unexpected message type",
        ),
    ];
    for (what, msg, needle) in leased {
        let mut c = login(addr, keys);
        send(&mut c.s, &message(b'Q', &cstr("SELECT pg_sleep(0.3)")));
        std::thread::sleep(Duration::from_millis(100));
        send(&mut c.s, &msg);
        // The query's own result may come first.
        loop {
            match outcome(&mut c.s, what) {
                Outcome::Message(tag) => {
                    assert!(b"TDCZ".contains(&tag), "{what}: '{}'", tag as char);
                }
                Outcome::Error {
                    code,
                    message,
                    severity,
                } => {
                    assert_eq!(code, "08P01", "{what}: {severity}: {message}");
                    // On a loaded machine the request scanner may still
                    // have seen it (not leased yet): its words differ.
                    assert!(
                        message.contains(needle) || message.contains("malformed"),
                        "{what}: {message}"
                    );
                    assert_closed(&mut c.s, what, true);
                    break;
                }
                Outcome::Closed => panic!("{what}: closed without a word"),
            }
        }
    }

    // Half a message, then the client hangs up: the session just ends.
    let mut c = login(addr, keys);
    let mut half = message(b'Q', &cstr("SELECT 'never finished'"));
    half.truncate(12);
    send(&mut c.s, &half);
    c.s.shutdown(Shutdown::Write).expect("shutdown");
    assert_closed(&mut c.s, "half a message, then EOF", false);

    // Half a message while a query runs, then EOF.
    let mut c = login(addr, keys);
    send(&mut c.s, &message(b'Q', &cstr("SELECT pg_sleep(0.2)")));
    send(&mut c.s, &half);
    c.s.shutdown(Shutdown::Write).expect("shutdown");
    assert_closed(&mut c.s, "half a message while leased, then EOF", true);
}

fn cancel(addr: SocketAddr, pid: i32, secret: i32) {
    let mut s = connect(addr);
    let mut c = 16u32.to_be_bytes().to_vec();
    c.extend_from_slice(&CANCEL_REQUEST.to_be_bytes());
    c.extend_from_slice(&pid.to_be_bytes());
    c.extend_from_slice(&secret.to_be_bytes());
    send(&mut s, &c);
    assert!(matches!(outcome(&mut s, "cancel"), Outcome::Closed));
}

/// A client that connects and says nothing, or stops half-way through
/// SCRAM, is cut at `login_timeout`.
fn login_timeout(addr: SocketAddr) {
    for stall_in_scram in [false, true] {
        let what = if stall_in_scram {
            "login stalled in SCRAM"
        } else {
            "silent connection"
        };
        let mut s = connect(addr);
        let start = Instant::now();
        if stall_in_scram {
            send(&mut s, &app_startup());
            expect_auth(&mut s, 10, what);
        }
        expect_fatal(&mut s, what, &["08P01"], "did not finish within", false);
        let took = start.elapsed();
        assert!(
            took >= LOGIN_TIMEOUT * 3 / 4 && took <= LOGIN_TIMEOUT * 2,
            "{what}: cut after {took:?}, login_timeout is {LOGIN_TIMEOUT:?}"
        );
    }
}
