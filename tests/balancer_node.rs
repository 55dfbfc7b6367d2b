//! The balancer role on real nodes: a balancer node in front of piha web
//! nodes on loopback, clients going through the VIP. What an operator of the
//! hand-built HAProxy clusters checked: spread, a killed backend costs no
//! failed GET, a new node gets traffic right after its checks pass, drain
//! through the admin API, and slowloris does not starve normal clients.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::node::{Cluster, TOKEN, http, wait_until};
use serde_json::Value;

/// lb (balancer) in front of w1..w3 (web), checks every 500 ms.
fn lb_cluster(net: u8, extra_balancer: &str) -> Cluster {
    let root = tempfile::tempdir().expect("www").keep();
    lb_cluster_on(net, extra_balancer, &root)
}

/// `lb_cluster` with every web node serving `root`.
fn lb_cluster_on(net: u8, extra_balancer: &str, root: &std::path::Path) -> Cluster {
    std::fs::write(root.join("index.html"), "hello from piha\n").expect("index");
    let text = format!(
        r#"[cluster]
name = "lbtest"
vip = "127.61.{net}.10/24"
admin_token = "{TOKEN}"

[defaults.balancer]
health = {{ interval = "500ms", timeout = "500ms", rise = 2, fall = 3 }}
slow_start = "0s"
{extra_balancer}

[defaults.web]
root = "{root}"
access_log = "off"

[[node]]
hostname = "lb"
address = "127.61.{net}.11/24"
roles = ["balancer"]

[[node]]
hostname = "w1"
address = "127.61.{net}.12/24"
roles = ["web"]

[[node]]
hostname = "w2"
address = "127.61.{net}.13/24"
roles = ["web"]

[[node]]
hostname = "w3"
address = "127.61.{net}.14/24"
roles = ["web"]
"#,
        root = root.display()
    );
    Cluster::with_hosts(
        net,
        &text,
        &[("lb", 11), ("w1", 12), ("w2", 13), ("w3", 14)],
    )
}

/// Tests that measure rates or put a steady load on the machine take turns:
/// run side by side on two cores they would measure each other.
static LOAD: Mutex<()> = Mutex::new(());

fn load_turn() -> std::sync::MutexGuard<'static, ()> {
    LOAD.lock().unwrap_or_else(|p| p.into_inner())
}

fn vip(net: u8) -> SocketAddr {
    format!("127.61.{net}.10:80").parse().expect("vip")
}

/// Which node answered a GET of /api/random/int through the balancer.
fn served_by(addr: SocketAddr) -> Result<String, String> {
    let (code, body) = http(addr, "GET", "/api/random/int", &[])?;
    if code != 200 {
        return Err(format!("answered {code}: {body}"));
    }
    let v: Value = serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))?;
    v["node"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("no node in {body}"))
}

/// The balancer's view of its backends: name -> state.
fn backend_states(c: &Cluster, lb: usize) -> Result<BTreeMap<String, String>, String> {
    let doc = c.status(lb)?;
    let backends = doc["balancer"]["http"]["backends"]
        .as_array()
        .ok_or_else(|| format!("no balancer.http.backends in status: {}", doc["balancer"]))?;
    Ok(backends
        .iter()
        .map(|b| {
            (
                b["name"].as_str().unwrap_or("?").to_owned(),
                b["state"].as_str().unwrap_or("?").to_owned(),
            )
        })
        .collect())
}

fn all_up(c: &Cluster, lb: usize, hosts: &[&str]) -> Result<(), String> {
    let states = backend_states(c, lb)?;
    hosts
        .iter()
        .all(|h| states.get(*h).map(String::as_str) == Some("UP"))
        .then_some(())
        .ok_or(format!("{states:?}"))
}

/// `lb_cluster` started, with w1..w3 up on the balancer.
fn running_lb_cluster(net: u8, extra_balancer: &str) -> (Cluster, usize) {
    let mut c = lb_cluster(net, extra_balancer);
    start_all(&mut c);
    let lb = c.index("lb");
    wait_until(Duration::from_secs(8), || {
        all_up(&c, lb, &["w1", "w2", "w3"])
    })
    .unwrap_or_else(|e| panic!("backends not up: {e}\n{}", c.log(lb)));
    (c, lb)
}

fn start_all(c: &mut Cluster) {
    for i in 0..c.nodes.len() {
        c.start(i);
    }
}

#[test]
fn requests_spread_evenly_and_a_killed_backend_costs_no_failed_get() {
    let _turn = load_turn();
    let net = 20;
    let (mut c, lb) = running_lb_cluster(net, "");

    // Spread: round robin over three equal backends.
    let mut spread: BTreeMap<String, usize> = BTreeMap::new();
    for _ in 0..300 {
        *spread.entry(served_by(vip(net)).expect("GET")).or_default() += 1;
    }
    assert_eq!(spread.len(), 3, "{spread:?}");
    assert!(
        spread.values().all(|n| (90..=110).contains(n)),
        "{spread:?}"
    );

    // Steady GETs from four clients while w2 is SIGKILLed.
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(Mutex::new(Vec::new()));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (stop, ok, failures) = (stop.clone(), ok.clone(), failures.clone());
            std::thread::spawn(move || {
                let deadline = Instant::now() + Duration::from_secs(20);
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    match served_by(vip(net)) {
                        Ok(_) => ok.fetch_add(1, Ordering::Relaxed),
                        Err(e) => {
                            failures.lock().map(|mut f| f.push(e)).ok();
                            0
                        }
                    };
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(1));
    let w2 = c.index("w2");
    c.kill(w2);
    let killed = Instant::now();
    let (_, took) = wait_until(Duration::from_secs(5), || {
        let s = backend_states(&c, lb)?;
        match s.get("w2").map(String::as_str) {
            Some("UP") => Err(format!("{s:?}")),
            _ => Ok(()),
        }
    })
    .expect("w2 taken out of rotation");
    println!("w2 out of rotation {took:?} after SIGKILL");
    assert!(
        killed.elapsed() <= Duration::from_millis(3 * 500 + 500 + 300),
        "marked down within fall x interval + 0.5 s (+ poll slack): {took:?}"
    );
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::Relaxed);
    for t in clients {
        t.join().expect("client thread");
    }
    let failures = failures.lock().map(|f| f.clone()).unwrap_or_default();
    println!(
        "{} GETs answered, {} failed",
        ok.load(Ordering::Relaxed),
        failures.len()
    );
    assert!(ok.load(Ordering::Relaxed) > 100, "load really ran");
    assert!(
        failures.is_empty(),
        "failed GETs seen by clients: {failures:?}"
    );
}

/// The document root every web node serves goes away at once (what a
/// stalled Gluster volume does to them all): every `/health` answers 503,
/// every backend goes DOWN, and yet the requests that do not need the files
/// still work, because the balancer sends to the backends that still answer
/// their checks rather than answering 503 itself (panic routing).
#[test]
fn with_every_backend_failing_its_checks_requests_still_reach_those_that_answer() {
    let net = 26;
    let www = tempfile::tempdir().expect("www");
    let root = www.path().join("root");
    std::fs::create_dir(&root).expect("root");
    let mut c = lb_cluster_on(net, "", &root);
    start_all(&mut c);
    let lb = c.index("lb");
    wait_until(Duration::from_secs(8), || {
        all_up(&c, lb, &["w1", "w2", "w3"])
    })
    .unwrap_or_else(|e| panic!("backends not up: {e}\n{}", c.log(lb)));
    let panic_state = |c: &Cluster| -> Result<(bool, u64), String> {
        let fe = &c.status(lb)?["balancer"]["http"]["frontend"];
        Ok((
            fe["panic"].as_bool().ok_or(format!("no panic in {fe}"))?,
            fe["panic_requests_total"].as_u64().unwrap_or(0),
        ))
    };
    assert_eq!(panic_state(&c), Ok((false, 0)));

    let moved = www.path().join("gone");
    std::fs::rename(&root, &moved).expect("take the root away");
    wait_until(Duration::from_secs(8), || {
        let s = backend_states(&c, lb)?;
        s.values()
            .all(|st| st == "DOWN")
            .then_some(())
            .ok_or(format!("{s:?}"))
    })
    .unwrap_or_else(|e| panic!("backends not all down: {e}\n{}", c.log(lb)));
    assert_eq!(panic_state(&c).map(|p| p.0), Ok(true));

    let mut spread: BTreeMap<String, usize> = BTreeMap::new();
    for _ in 0..60 {
        let node = served_by(vip(net)).unwrap_or_else(|e| panic!("in panic routing: {e}"));
        *spread.entry(node).or_default() += 1;
    }
    assert_eq!(
        spread.len(),
        3,
        "spread over every answering node: {spread:?}"
    );
    // A file still fails, but with the web node's own reason, not the
    // balancer's "no backend is up".
    let (code, body) = http(vip(net), "GET", "/index.html", &[]).expect("GET a file");
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("document root"), "{body}");
    let (on, sent) = panic_state(&c).expect("status");
    assert!(on && sent >= 61, "panic {on}, {sent} requests counted");
    let doc = c.status(lb).expect("status");
    let events = common::node::events(&doc);
    assert!(
        events.iter().any(
            |e| e.contains("panic routing to those that still answer their checks: w1, w2, w3")
        ),
        "{events:#?}"
    );
    let metrics = http(c.nodes[lb].admin, "GET", "/metrics", &[])
        .map(|(_, body)| body)
        .unwrap_or_default();
    assert!(metrics.contains("piha_frontend_panic 1"), "{metrics}");

    // The root comes back: the backends rise, and panic routing ends.
    std::fs::rename(&moved, &root).expect("put the root back");
    wait_until(Duration::from_secs(8), || {
        all_up(&c, lb, &["w1", "w2", "w3"])
    })
    .unwrap_or_else(|e| panic!("backends not back up: {e}"));
    assert_eq!(panic_state(&c).map(|p| p.0), Ok(false));
    let doc = c.status(lb).expect("status");
    assert!(
        common::node::events(&doc)
            .iter()
            .any(|e| e.contains("panic routing ended: a backend is up again")),
        "{:#?}",
        common::node::events(&doc)
    );
}

#[test]
fn a_joining_web_node_gets_traffic_right_after_its_checks_pass() {
    let net = 21;
    let mut c = lb_cluster(net, "");
    let (lb, w1, w2, w3) = (c.index("lb"), c.index("w1"), c.index("w2"), c.index("w3"));
    for i in [lb, w1, w2] {
        c.start(i);
    }
    wait_until(Duration::from_secs(8), || all_up(&c, lb, &["w1", "w2"])).expect("two up");
    c.start(w3);
    let started = Instant::now();
    // Poll the balancer's view for the first passing check of w3 and the
    // client side for the first answer from w3.
    let mut first_check_ok: Option<Instant> = None;
    let mut first_traffic: Option<Instant> = None;
    while started.elapsed() < Duration::from_secs(10) && first_traffic.is_none() {
        if first_check_ok.is_none() {
            let doc = c.status(lb).unwrap_or_default();
            let passed = doc["balancer"]["http"]["backends"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|b| b["name"] == "w3" && b["last_check_ok"] == true);
            if passed {
                first_check_ok = Some(Instant::now());
            }
        }
        if served_by(vip(net)).ok().as_deref() == Some("w3") {
            first_traffic = Some(Instant::now());
        }
    }
    let first_traffic = first_traffic.expect("w3 got traffic within 10 s of starting");
    let first_check_ok = first_check_ok.unwrap_or(first_traffic);
    let gap = first_traffic.saturating_duration_since(first_check_ok);
    println!(
        "w3: first passing check {:?} after start, first request {:?} after start",
        first_check_ok - started,
        first_traffic - started
    );
    assert!(
        gap <= Duration::from_secs(2),
        "traffic {gap:?} after the first passing check"
    );
}

#[test]
fn drain_through_the_admin_api_moves_new_requests_away() {
    let net = 22;
    let (c, lb) = running_lb_cluster(net, "");
    let admin = c.nodes[lb].admin;
    let bearer = format!("Bearer {TOKEN}");
    let set = |state: &str| {
        let body = format!("{{\"state\":\"{state}\"}}");
        http_with_body(admin, "/api/v1/balancer/backends/w1", &bearer, &body)
    };
    let (code, body) = http(admin, "POST", "/api/v1/balancer/backends/w1", &[]).expect("http");
    assert_eq!(code, 401, "token required: {body}");
    let (code, body) = set("drain");
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        backend_states(&c, lb)
            .expect("states")
            .get("w1")
            .map(String::as_str),
        Some("DRAIN")
    );
    for _ in 0..60 {
        assert_ne!(
            served_by(vip(net)).expect("GET"),
            "w1",
            "a drained backend got a new request"
        );
    }
    let (code, _) = set("ready");
    assert_eq!(code, 200);
    let back = (0..60).any(|_| served_by(vip(net)).ok().as_deref() == Some("w1"));
    assert!(back, "w1 serves again after ready");
    let (code, _) = http_with_body(
        admin,
        "/api/v1/balancer/backends/nope",
        &bearer,
        "{\"state\":\"drain\"}",
    );
    assert_eq!(code, 404);
}

fn http_with_body(addr: SocketAddr, path: &str, bearer: &str, body: &str) -> (u16, String) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: {bearer}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).expect("write");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let code = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (code, body)
}

#[test]
fn slowloris_does_not_starve_normal_clients() {
    let _turn = load_turn();
    let net = 23;
    let (_nodes_alive, _) = running_lb_cluster(net, "limits = { header_timeout = \"3s\" }");

    let rate = |secs: u64| -> f64 {
        let stop = Instant::now() + Duration::from_secs(secs);
        let done = Arc::new(AtomicU64::new(0));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let done = done.clone();
                std::thread::spawn(move || {
                    while Instant::now() < stop {
                        if served_by(vip(net)).is_ok() {
                            done.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            let _ = t.join();
        }
        done.load(Ordering::Relaxed) as f64 / secs as f64
    };
    let baseline = rate(3);

    // 1,000 connections each sending one header byte per second.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let closed_after: Arc<Mutex<Vec<Duration>>> = Arc::new(Mutex::new(Vec::new()));
    let opened = Arc::new(AtomicU64::new(0));
    for _ in 0..1000 {
        let (closed_after, opened) = (closed_after.clone(), opened.clone());
        rt.spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let Ok(s) = tokio::net::TcpStream::connect(vip(net)).await else {
                return;
            };
            opened.fetch_add(1, Ordering::Relaxed);
            let start = Instant::now();
            let (mut rd, mut wr) = s.into_split();
            let head = b"GET / HTTP/1.1\r\nHost: slow\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaa";
            let writer = async {
                for byte in head.iter().take(30) {
                    if wr.write_all(&[*byte]).await.is_err() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            };
            // The server's close shows up here at once (EOF or reset).
            let reader = async {
                let mut buf = [0u8; 1024];
                while let Ok(n) = rd.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                }
            };
            tokio::select! {
                _ = reader => {}
                _ = writer => {}
            }
            closed_after
                .lock()
                .map(|mut v| v.push(start.elapsed()))
                .ok();
        });
    }
    std::thread::sleep(Duration::from_millis(500));
    let under_attack = rate(3);
    println!(
        "normal clients: {baseline:.0} req/s before, {under_attack:.0} req/s with {} slow connections",
        opened.load(Ordering::Relaxed)
    );
    assert!(
        opened.load(Ordering::Relaxed) >= 900,
        "the slow connections were made"
    );
    // Starved means next to nothing gets through. 1,000 extra sockets cost
    // some CPU on a 2-core machine shared with the test's own clients, so
    // the rate may dip (83 % seen once in CI); half is far from starved.
    assert!(
        under_attack >= 0.5 * baseline,
        "{under_attack:.0} < 50% of {baseline:.0}: normal clients starved"
    );

    // Every slow connection is closed within header_timeout + 1 s.
    std::thread::sleep(Duration::from_secs(2));
    let closed = closed_after.lock().map(|v| v.clone()).unwrap_or_default();
    let late: Vec<_> = closed
        .iter()
        .filter(|d| **d > Duration::from_secs(3 + 1))
        .collect();
    println!(
        "{} slow connections closed, slowest after {:?}",
        closed.len(),
        closed.iter().max()
    );
    assert!(
        closed.len() >= 900,
        "only {} of the slow connections were closed",
        closed.len()
    );
    assert!(
        late.is_empty(),
        "{} closed late: {:?}",
        late.len(),
        late.iter().max()
    );
    rt.shutdown_timeout(Duration::from_secs(1));
}

/// A static backend run by the test: answers the GETs the web nodes answer
/// (so it can share the load) and upgrades `Upgrade: websocket` requests to
/// an echo tunnel, to check that backend churn never drops a tunnel.
fn upgrade_echo_backend(addr: SocketAddr, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    let listener = std::net::TcpListener::bind(addr).expect("bind static backend");
    listener.set_nonblocking(true).expect("nonblocking");
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            let Ok((mut s, _)) = listener.accept() else {
                std::thread::sleep(Duration::from_millis(5));
                continue;
            };
            let stop = stop.clone();
            std::thread::spawn(move || {
                let _ = s.set_nonblocking(false);
                let _ = s.set_read_timeout(Some(Duration::from_secs(90)));
                loop {
                    let Some(head) = read_head(&mut s) else {
                        return;
                    };
                    let lower = head.to_ascii_lowercase();
                    if lower.contains("upgrade: websocket") {
                        let _ = s.write_all(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n");
                        let mut buf = [0u8; 1024];
                        while !stop.load(Ordering::Relaxed) {
                            match s.read(&mut buf) {
                                Ok(0) | Err(_) => return,
                                Ok(n) => {
                                    if s.write_all(&buf[..n]).is_err() {
                                        return;
                                    }
                                }
                            }
                        }
                        return;
                    }
                    let body = if lower.starts_with("get /health") {
                        "{\"status\":\"ok\"}".to_owned()
                    } else {
                        "{\"node\":\"static\",\"value\":1}".to_owned()
                    };
                    let resp = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if s.write_all(resp.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    })
}

/// One request head (to the blank line), bounded; None on EOF or error.
fn read_head(s: &mut TcpStream) -> Option<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < 16 * 1024 {
        match s.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return None,
        }
    }
    Some(String::from_utf8_lossy(&head).into_owned())
}

#[test]
fn backend_churn_every_second_for_a_minute_drops_nothing() {
    let _turn = load_turn();
    let net = 24;
    let static_addr: SocketAddr = format!("127.61.{net}.50:8080").parse().expect("addr");
    let mut c = lb_cluster(
        net,
        &format!("backends = [ {{ address = \"{static_addr}\", weight = 1 }} ]"),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let backend = upgrade_echo_backend(static_addr, stop.clone());
    start_all(&mut c);
    let lb = c.index("lb");
    let static_name = static_addr.to_string();
    wait_until(Duration::from_secs(8), || {
        all_up(&c, lb, &["w1", "w2", "w3", static_name.as_str()])
    })
    .unwrap_or_else(|e| panic!("backends not up: {e}\n{}", c.log(lb)));

    // A tunnel through the balancer to the static backend (the handshake may
    // land on a web node, which refuses to upgrade: then ask again).
    let mut tunnel = None;
    for _ in 0..20 {
        let mut s = TcpStream::connect(vip(net)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        s.write_all(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
            .expect("handshake");
        if read_head(&mut s).is_some_and(|h| h.starts_with("HTTP/1.1 101")) {
            tunnel = Some(s);
            break;
        }
    }
    let mut tunnel = tunnel.expect("an upgraded tunnel through the balancer");

    let ok = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(Mutex::new(Vec::new()));
    let clients: Vec<_> = (0..3)
        .map(|_| {
            let (stop, ok, failures) = (stop.clone(), ok.clone(), failures.clone());
            std::thread::spawn(move || {
                let deadline = Instant::now() + Duration::from_secs(90);
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    match served_by(vip(net)) {
                        Ok(_) => {
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => {
                            failures.lock().map(|mut f| f.push(e)).ok();
                        }
                    }
                }
            })
        })
        .collect();

    // Every second one of w2/w3 stops (SIGTERM: it leaves and drains) or
    // starts again, for a minute; the tunnel echoes every tick.
    let (w2, w3) = (c.index("w2"), c.index("w3"));
    let started = Instant::now();
    let mut changes = 0;
    let mut tick = 0u32;
    while started.elapsed() < Duration::from_secs(60) {
        let target = if tick % 4 < 2 { w2 } else { w3 };
        if c.is_running(target) {
            c.signal(target, "TERM");
            c.wait_exit(target, Duration::from_secs(8))
                .expect("stops in time");
        } else {
            c.start(target);
        }
        changes += 1;
        tick += 1;
        let msg = format!("ping {tick}\n");
        tunnel.write_all(msg.as_bytes()).expect("tunnel write");
        let mut back = vec![0u8; msg.len()];
        tunnel.read_exact(&mut back).expect("tunnel still echoes");
        assert_eq!(back, msg.as_bytes());
        let next = started + Duration::from_secs(u64::from(tick));
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
    stop.store(true, Ordering::Relaxed);
    for t in clients {
        t.join().expect("client");
    }
    drop(tunnel);
    let _ = backend.join();
    let failures = failures.lock().map(|f| f.clone()).unwrap_or_default();
    println!(
        "{changes} backend changes in 60 s; {} requests answered, {} failed; tunnel intact",
        ok.load(Ordering::Relaxed),
        failures.len()
    );
    assert!(changes >= 55, "churned {changes} times");
    assert!(ok.load(Ordering::Relaxed) > 1000, "load really ran");
    assert!(
        failures.is_empty(),
        "failed requests: {:?}",
        &failures[..failures.len().min(5)]
    );
}

/// scripts/conformance-smuggling against the balancer's front end (strict:
/// 400 for every case) and a web node (one 4xx and a close; it may refuse a
/// POST before reading its body).
#[test]
fn request_smuggling_attempts_get_400_from_balancer_and_web() {
    let net = 25;
    let (_nodes_alive, _) = running_lb_cluster(net, "");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/conformance-smuggling");
    for (host, port) in [
        (format!("127.61.{net}.10"), "80"),
        (format!("127.61.{net}.12"), "8080"),
    ] {
        let out = std::process::Command::new("bash")
            .args([script, &host, port])
            .output()
            .expect("run conformance-smuggling");
        let text = String::from_utf8_lossy(&out.stdout);
        println!("{host}:{port}\n{text}");
        assert!(out.status.success(), "{host}:{port}\n{text}");
        assert!(text.contains("8 passed, 0 failed"), "{text}");
    }
}
