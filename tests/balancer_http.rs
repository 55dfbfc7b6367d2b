//! The HTTP balancer against real sockets: real hyper backends made here,
//! the real `serve` and health checks on 127.0.0.1, clients that are either
//! hyper or raw bytes over a TcpStream (for the cases a well-behaved client
//! cannot produce). Every loop is bounded in count and time.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Frame, Incoming};
use hyper::header::HeaderMap;
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

use piha::balancer::http::{Handle, health_checks, serve};
use piha::balancer::pool::{Desired, Source};
use piha::config::{Algorithm, BalancerSettings};

// ---------------------------------------------------------------- backends

/// A web backend: counts what it sees, and can be killed (listener and every
/// connection dropped at once, like a crashed process).
#[derive(Clone)]
struct Backend {
    name: String,
    addr: SocketAddr,
    state: Arc<BackendState>,
    server: Arc<Mutex<Option<JoinHandle<()>>>>,
}

#[derive(Default)]
struct BackendState {
    name: String,
    /// Requests other than health checks.
    hits: AtomicUsize,
    /// Request bodies read to the end by the dying routes.
    bodies_read: AtomicUsize,
    slow_in_flight: AtomicUsize,
    first_check: Mutex<Option<Instant>>,
    first_hit: Mutex<Option<Instant>>,
}

type Reply = Response<BoxBody<Bytes, Infallible>>;

/// A body fed from a channel, frame by frame: what a streaming client or
/// backend sends.
struct ChanBody(tokio::sync::mpsc::Receiver<Bytes>);

impl hyper::body::Body for ChanBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|b| b.map(|b| Ok(Frame::data(b))))
    }
}

impl Backend {
    async fn start(name: &str) -> Backend {
        Backend::start_at(name, "127.0.0.1:0".parse().unwrap()).await
    }

    async fn start_at(name: &str, at: SocketAddr) -> Backend {
        let listener = TcpListener::bind(at).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(BackendState {
            name: name.to_owned(),
            ..BackendState::default()
        });
        let st = state.clone();
        let server = tokio::spawn(async move {
            let mut conns = JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let st = st.clone();
                conns.spawn(async move {
                    let svc = hyper::service::service_fn(move |req| route(req, st.clone()));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .with_upgrades()
                        .await;
                });
                while conns.try_join_next().is_some() {}
            }
        });
        Backend {
            name: name.to_owned(),
            addr,
            state,
            server: Arc::new(Mutex::new(Some(server))),
        }
    }

    fn kill(&self) {
        if let Some(task) = self.server.lock().unwrap().take() {
            task.abort();
        }
    }

    fn hits(&self) -> usize {
        self.state.hits.load(Ordering::SeqCst)
    }

    fn desired(&self) -> Desired {
        Desired {
            name: self.name.clone(),
            addr: self.addr,
            weight: 1,
            source: Source::Static,
        }
    }
}

fn reply(st: &BackendState, status: StatusCode, body: impl Into<Bytes>) -> Reply {
    let mut r = Response::new(Full::new(body.into()).boxed());
    *r.status_mut() = status;
    r.headers_mut()
        .insert("x-backend", st.name.parse().unwrap());
    r
}

async fn route(mut req: Request<Incoming>, st: Arc<BackendState>) -> Result<Reply, std::io::Error> {
    let path = req.uri().path().to_owned();
    if path == "/health" {
        st.first_check
            .lock()
            .unwrap()
            .get_or_insert_with(Instant::now);
        return Ok(reply(&st, StatusCode::OK, "ok"));
    }
    st.hits.fetch_add(1, Ordering::SeqCst);
    st.first_hit
        .lock()
        .unwrap()
        .get_or_insert_with(Instant::now);
    match path.as_str() {
        "/slow" => {
            let ms: u64 = req
                .uri()
                .query()
                .and_then(|q| q.strip_prefix("ms="))
                .and_then(|v| v.parse().ok())
                .unwrap_or(1000);
            st.slow_in_flight.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            st.slow_in_flight.fetch_sub(1, Ordering::SeqCst);
            Ok(reply(&st, StatusCode::OK, st.name.clone()))
        }
        "/headers" => {
            let mut seen: BTreeMap<String, Vec<String>> = BTreeMap::new();
            for (k, v) in req.headers() {
                seen.entry(k.to_string())
                    .or_default()
                    .push(v.to_str().unwrap_or("?").to_owned());
            }
            let mut r = reply(&st, StatusCode::OK, serde_json::to_vec(&seen).unwrap());
            let h = r.headers_mut();
            h.insert("keep-alive", "timeout=3".parse().unwrap());
            h.insert("connection", "x-resp-hop".parse().unwrap());
            h.insert("x-resp-hop", "1".parse().unwrap());
            Ok(r)
        }
        // Reads the whole body, then the process "dies": no answer.
        "/die" => {
            let _ = req.body_mut().collect().await;
            st.bodies_read.fetch_add(1, Ordering::SeqCst);
            Err(std::io::Error::other("backend dies mid-request"))
        }
        // Echoes each body frame as soon as it arrives.
        "/echo-stream" => {
            let (tx, rx) = tokio::sync::mpsc::channel(4);
            let mut body = req.into_body();
            tokio::spawn(async move {
                while let Some(Ok(frame)) = body.frame().await {
                    if let Ok(data) = frame.into_data() {
                        if tx.send(data).await.is_err() {
                            break;
                        }
                    }
                }
            });
            let mut r = Response::new(ChanBody(rx).boxed());
            r.headers_mut()
                .insert("x-backend", st.name.parse().unwrap());
            Ok(r)
        }
        "/body" => match req.body_mut().collect().await {
            Ok(b) => Ok(reply(&st, StatusCode::OK, b.to_bytes().len().to_string())),
            Err(_) => Ok(reply(&st, StatusCode::BAD_REQUEST, "broken body")),
        },
        "/ws" if req.headers().get("upgrade").is_some() => {
            let on_upgrade = hyper::upgrade::on(&mut req);
            tokio::spawn(async move {
                if let Ok(up) = on_upgrade.await {
                    let mut io = TokioIo::new(up);
                    let mut buf = [0u8; 1024];
                    while let Ok(n) = io.read(&mut buf).await {
                        if n == 0 || io.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                }
            });
            let mut r = reply(&st, StatusCode::SWITCHING_PROTOCOLS, Bytes::new());
            r.headers_mut().insert("upgrade", "echo".parse().unwrap());
            r.headers_mut()
                .insert("connection", "upgrade".parse().unwrap());
            Ok(r)
        }
        _ => Ok(reply(&st, StatusCode::OK, st.name.clone())),
    }
}

// ---------------------------------------------------------------- balancer

struct Lb {
    addr: SocketAddr,
    handle: Arc<Handle>,
    stop: CancellationToken,
}

impl Drop for Lb {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

fn settings() -> BalancerSettings {
    let mut s = BalancerSettings {
        algorithm: Algorithm::RoundRobin,
        slow_start: Duration::ZERO,
        ..BalancerSettings::default()
    };
    s.health.interval = Duration::from_millis(200);
    s.health.timeout = Duration::from_millis(500);
    s.health.rise = 2;
    s.health.fall = 3;
    s.limits.header_timeout = Duration::from_secs(2);
    s.limits.connect_timeout = Duration::from_secs(1);
    s.limits.server_timeout = Duration::from_secs(5);
    s.limits.idle_timeout = Duration::from_secs(5);
    s.limits.queue_timeout = Duration::from_secs(3);
    s
}

async fn start_lb(settings: BalancerSettings, backends: &[&Backend]) -> Lb {
    let desired: Vec<Desired> = backends.iter().map(|b| b.desired()).collect();
    start_lb_for(settings, &desired).await
}

/// A balancer in front of `desired`, once every one of them is UP.
async fn start_lb_for(settings: BalancerSettings, desired: &[Desired]) -> Lb {
    let handle = Handle::with_connection_cap(&settings, 512);
    handle.sync(desired);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    tokio::spawn(serve(listener, handle.clone(), None, stop.clone()));
    tokio::spawn(health_checks(handle.clone(), stop.clone()));
    let lb = Lb { addr, handle, stop };
    for d in desired {
        assert!(
            wait_until(Duration::from_secs(5), || lb.state(&d.name).as_deref()
                == Some("UP"))
            .await,
            "{} never came up",
            d.name
        );
    }
    lb
}

impl Lb {
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn state(&self, name: &str) -> Option<String> {
        self.handle
            .stats()
            .backends
            .iter()
            .find(|b| b.pool.name == name)
            .map(|b| b.pool.state.to_owned())
    }
}

async fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    done()
}

// ---------------------------------------------------------------- clients

type TestClient = Client<HttpConnector, Full<Bytes>>;

fn client() -> TestClient {
    Client::builder(TokioExecutor::new()).build_http()
}

struct Got {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

async fn send(c: &TestClient, req: Request<Full<Bytes>>) -> Result<Got, String> {
    let resp = tokio::time::timeout(Duration::from_secs(10), c.request(req))
        .await
        .map_err(|_| "timeout".to_owned())?
        .map_err(|e| format!("{e:?}"))?;
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("body: {e}"))?
        .to_bytes();
    Ok(Got {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

async fn get(c: &TestClient, url: &str) -> Result<Got, String> {
    send(c, Request::get(url).body(Full::default()).unwrap()).await
}

/// Writes `bytes`, then reads until the balancer closes (or 5 s pass).
/// Returns what was read and whether the connection was closed.
async fn raw(addr: SocketAddr, bytes: &[u8]) -> (String, bool) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let end = tokio::time::Instant::now() + Duration::from_secs(5);
    let closed = loop {
        match tokio::time::timeout_at(end, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break true,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => break false,
        }
    };
    (String::from_utf8_lossy(&out).into_owned(), closed)
}

fn statuses(response_text: &str) -> Vec<u16> {
    response_text
        .match_indices("HTTP/1.1 ")
        .filter_map(|(i, _)| response_text.get(i + 9..i + 12)?.parse().ok())
        .collect()
}

// ---------------------------------------------------------------- tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_spreads_requests_over_three_backends() {
    let bs = [
        Backend::start("a").await,
        Backend::start("b").await,
        Backend::start("c").await,
    ];
    let lb = start_lb(settings(), &[&bs[0], &bs[1], &bs[2]]).await;
    let c = client();
    for _ in 0..300 {
        let got = get(&c, &lb.url("/")).await.unwrap();
        assert_eq!(got.status, StatusCode::OK);
    }
    for b in &bs {
        let hits = b.hits();
        assert!((90..=110).contains(&hits), "{} got {hits} of 300", b.name);
    }
    let stats = lb.handle.stats();
    assert_eq!(stats.frontend.requests, 300);
    assert_eq!(stats.frontend.responses.xx2, 300);
    let per_backend: u64 = stats.backends.iter().map(|b| b.requests).sum();
    assert_eq!(per_backend, 300);
    assert!(stats.backends.iter().all(|b| b.latency.count >= 90));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_backend_costs_no_failed_get_and_is_marked_down_in_time() {
    let bs = [
        Backend::start("a").await,
        Backend::start("b").await,
        Backend::start("c").await,
    ];
    let s = settings();
    let bound = s.health.interval * s.health.fall + Duration::from_millis(500);
    let lb = start_lb(s, &[&bs[0], &bs[1], &bs[2]]).await;
    let handle = lb.handle.clone();
    let killed_at = Arc::new(Mutex::new(None::<Instant>));
    let watcher = {
        let killed_at = killed_at.clone();
        tokio::spawn(async move {
            let end = Instant::now() + Duration::from_secs(30);
            while Instant::now() < end {
                let down = handle
                    .stats()
                    .backends
                    .iter()
                    .any(|b| b.pool.name == "b" && b.pool.state == "DOWN");
                if down {
                    if let Some(k) = *killed_at.lock().unwrap() {
                        return Some(k.elapsed());
                    }
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            None
        })
    };
    let c = client();
    let mut failed = Vec::new();
    let started = Instant::now();
    for i in 0..500 {
        if i == 100 {
            bs[1].kill();
            *killed_at.lock().unwrap() = Some(Instant::now());
        }
        match get(&c, &lb.url("/")).await {
            Ok(g) if g.status == StatusCode::OK => {}
            Ok(g) => failed.push(format!("#{i}: {} {}", g.status, g.body)),
            Err(e) => failed.push(format!("#{i}: {e}")),
        }
        assert!(started.elapsed() < Duration::from_secs(60), "loop too slow");
    }
    assert!(failed.is_empty(), "client saw failures: {failed:?}");
    let took = watcher.await.unwrap().expect("b never marked DOWN");
    assert!(took <= bound, "DOWN after {took:?}, bound {bound:?}");
    let stats = lb.handle.stats();
    assert!(stats.frontend.retries >= 1, "no retry counted");
    let b = stats.backends.iter().find(|x| x.pool.name == "b").unwrap();
    assert!(b.connect_errors + b.response_errors >= 1);
    assert!(
        lb.handle.take_events().iter().any(
            |e| matches!(e, piha::balancer::pool::PoolEvent::Down { name, .. } if name == "b")
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_added_backend_gets_traffic_soon_after_its_first_passing_check() {
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let lb = start_lb(settings(), &[&a, &b]).await;
    let n = Backend::start("new").await;
    lb.handle.sync(&[a.desired(), b.desired(), n.desired()]);
    let c = client();
    let end = Instant::now() + Duration::from_secs(10);
    while n.hits() == 0 && Instant::now() < end {
        get(&c, &lb.url("/")).await.unwrap();
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let first_check = n.state.first_check.lock().unwrap().expect("never checked");
    let first_hit = n
        .state
        .first_hit
        .lock()
        .unwrap()
        .expect("never got traffic");
    let lag = first_hit.duration_since(first_check);
    assert!(
        lag < Duration::from_secs(2),
        "traffic {lag:?} after the first check"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_backend_finishes_its_slow_request() {
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let lb = start_lb(settings(), &[&a, &b]).await;
    let url = lb.url("/slow?ms=1500");
    let slow = tokio::spawn(async move { get(&client(), &url).await });
    assert!(
        wait_until(Duration::from_secs(3), || {
            a.state.slow_in_flight.load(Ordering::SeqCst)
                + b.state.slow_in_flight.load(Ordering::SeqCst)
                > 0
        })
        .await
    );
    let (serving, other) = if a.state.slow_in_flight.load(Ordering::SeqCst) > 0 {
        (&a, &b)
    } else {
        (&b, &a)
    };
    lb.handle.sync(&[other.desired()]);
    assert_eq!(lb.state(&serving.name).as_deref(), Some("DRAIN"));
    // New requests go elsewhere meanwhile.
    let c = client();
    for _ in 0..5 {
        let got = get(&c, &lb.url("/")).await.unwrap();
        assert_eq!(got.body, other.name);
    }
    let got = slow.await.unwrap().unwrap();
    assert_eq!(
        (got.status, got.body.as_str()),
        (StatusCode::OK, serving.name.as_str())
    );
    assert!(wait_until(Duration::from_secs(2), || lb.state(&serving.name).is_none()).await);
    let events = lb.handle.take_events();
    let removed = events.iter().any(
        |e| matches!(e, piha::balancer::pool::PoolEvent::Removed { name } if *name == serving.name),
    );
    assert!(removed, "{events:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_that_reached_a_dying_backend_is_never_replayed() {
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let lb = start_lb(settings(), &[&a, &b]).await;
    let c = client();
    let req = Request::post(lb.url("/die"))
        .body(Full::new(Bytes::from_static(b"order #1")))
        .unwrap();
    let got = send(&c, req).await.unwrap();
    assert_eq!(got.status, StatusCode::BAD_GATEWAY, "{}", got.body);
    assert!(got.body.contains("backend_failed"), "{}", got.body);
    let seen =
        a.state.bodies_read.load(Ordering::SeqCst) + b.state.bodies_read.load(Ordering::SeqCst);
    assert_eq!(seen, 1, "the POST reached backends {seen} times");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_get_that_dies_before_its_answer_is_retried_exactly_once() {
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let c3 = Backend::start("c").await;
    let lb = start_lb(settings(), &[&a, &b, &c3]).await;
    let got = get(&client(), &lb.url("/die")).await.unwrap();
    assert_eq!(got.status, StatusCode::BAD_GATEWAY);
    let seen: usize = [&a, &b, &c3]
        .iter()
        .map(|x| x.state.bodies_read.load(Ordering::SeqCst))
        .sum();
    assert_eq!(seen, 2, "one try and one retry, no more");
    assert_eq!(lb.handle.stats().frontend.retries, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_stream_both_ways_without_buffering() {
    let a = Backend::start("a").await;
    let lb = start_lb(settings(), &[&a]).await;
    let stream = TcpStream::connect(lb.addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let req = Request::post("/echo-stream")
        .header("host", "a")
        .body(ChanBody(rx))
        .unwrap();
    let pending = tokio::spawn(sender.send_request(req));
    tx.send(Bytes::from_static(b"ping 1")).await.unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(5), pending)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let mut body = resp.into_body();
    // Each piece comes back while the request body is still open: neither
    // direction waits for the whole body.
    for n in 1..=3 {
        if n > 1 {
            tx.send(Bytes::from(format!("ping {n}"))).await.unwrap();
        }
        let frame = tokio::time::timeout(Duration::from_secs(2), body.frame())
            .await
            .expect("a piece was held back")
            .unwrap()
            .unwrap();
        assert_eq!(frame.into_data().unwrap(), format!("ping {n}"));
    }
    drop(tx);
    let rest = tokio::time::timeout(Duration::from_secs(2), body.collect())
        .await
        .unwrap()
        .unwrap();
    assert!(rest.to_bytes().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_too_slow_to_answer_is_a_504_not_a_retry() {
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let mut s = settings();
    s.limits.server_timeout = Duration::from_millis(500);
    let lb = start_lb(s, &[&a, &b]).await;
    let started = Instant::now();
    let got = get(&client(), &lb.url("/slow?ms=3000")).await.unwrap();
    assert_eq!(got.status, StatusCode::GATEWAY_TIMEOUT);
    assert!(got.body.contains("backend_timeout"), "{}", got.body);
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(a.hits() + b.hits(), 1);
    assert_eq!(lb.handle.stats().frontend.gateway_timeout, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_answers_503_with_retry_after() {
    let a = Backend::start("a").await;
    let mut s = settings();
    s.limits.maxconn = 1;
    s.limits.queue = 1;
    let lb = start_lb(s, &[&a]).await;
    let url = lb.url("/slow?ms=1500");
    let first = tokio::spawn({
        let url = url.clone();
        async move { get(&client(), &url).await }
    });
    assert!(
        wait_until(Duration::from_secs(3), || a
            .state
            .slow_in_flight
            .load(Ordering::SeqCst)
            == 1)
        .await
    );
    let second = tokio::spawn({
        let url = url.clone();
        async move { get(&client(), &url).await }
    });
    let pool = lb.handle.pool().clone();
    assert!(wait_until(Duration::from_secs(3), || pool.queued() == 1).await);
    let third = get(&client(), &url).await.unwrap();
    assert_eq!(third.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(third.headers["retry-after"], "1");
    assert!(third.body.contains("queue_full"), "{}", third.body);
    assert_eq!(first.await.unwrap().unwrap().status, StatusCode::OK);
    assert_eq!(second.await.unwrap().unwrap().status, StatusCode::OK);
    let f = lb.handle.stats().frontend;
    assert_eq!(
        (f.unavailable.queue_full, f.unavailable.queue_timeout),
        (1, 0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_waits_too_long_in_the_queue_gets_503() {
    let a = Backend::start("a").await;
    let mut s = settings();
    s.limits.maxconn = 1;
    s.limits.queue_timeout = Duration::from_millis(300);
    let lb = start_lb(s, &[&a]).await;
    let url = lb.url("/slow?ms=1500");
    let first = tokio::spawn({
        let url = url.clone();
        async move { get(&client(), &url).await }
    });
    assert!(
        wait_until(Duration::from_secs(3), || a
            .state
            .slow_in_flight
            .load(Ordering::SeqCst)
            == 1)
        .await
    );
    let waited = get(&client(), &url).await.unwrap();
    assert_eq!(waited.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(waited.body.contains("queue_timeout"), "{}", waited.body);
    assert_eq!(first.await.unwrap().unwrap().status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_backend_up_is_a_503_naming_why() {
    let a = Backend::start("a").await;
    let lb = start_lb(settings(), &[&a]).await;
    assert!(lb.handle.set_admin("a", piha::balancer::pool::Admin::Maint));
    let got = get(&client(), &lb.url("/")).await.unwrap();
    assert_eq!(got.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(got.headers["retry-after"], "1");
    assert!(got.body.contains("no_backend"), "{}", got.body);
    assert_eq!(a.hits(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slowloris_client_is_closed_within_the_header_timeout() {
    let a = Backend::start("a").await;
    let s = settings();
    let header_timeout = s.limits.header_timeout;
    let lb = start_lb(s, &[&a]).await;
    let mut stream = TcpStream::connect(lb.addr).await.unwrap();
    let started = Instant::now();
    let head = b"GET / HTTP/1.1\r\nHost: slow\r\nX-Padding: aaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    let mut closed_after = None;
    for &byte in head {
        if stream.write_all(&[byte]).await.is_err() {
            closed_after = Some(started.elapsed());
            break;
        }
        // One byte per second; the read notices a close at once.
        let mut buf = [0u8; 512];
        match tokio::time::timeout(Duration::from_secs(1), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                closed_after = Some(started.elapsed());
                break;
            }
            Ok(Ok(_)) | Err(_) => {}
        }
    }
    let closed_after = closed_after.expect("the slow client was never closed");
    assert!(
        closed_after <= header_timeout + Duration::from_secs(1),
        "closed after {closed_after:?}"
    );
    assert!(closed_after >= header_timeout - Duration::from_millis(300));
    assert_eq!(a.hits(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_never_speaks_is_closed_within_the_header_timeout() {
    let a = Backend::start("a").await;
    let s = settings();
    let header_timeout = s.limits.header_timeout;
    let lb = start_lb(s, &[&a]).await;
    // Nothing sent (an h2 client with no stream looks the same before its
    // preface); and a bare h2 preface with no stream after it.
    for opening in [&b""[..], &b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"[..]] {
        let started = Instant::now();
        let (_, closed) = raw(lb.addr, opening).await;
        assert!(closed);
        let took = started.elapsed();
        assert!(took <= header_timeout + Duration::from_secs(1), "{took:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smuggling_shaped_requests_get_400_and_a_closed_connection() {
    let a = Backend::start("a").await;
    let lb = start_lb(settings(), &[&a]).await;
    let head_cases: [&[u8]; 12] = [
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nContent-Length: 4\r\n\r\nabcd",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +4\r\n\r\nabcd",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4, 4\r\n\r\nabcd",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\n\r\n",
        b"POST / HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length : 4\r\n\r\nabcd",
        b"POST / HTTP/1.1\r\nHost: a\r\nX-Fold: x\r\n Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    ];
    for case in head_cases {
        let (text, closed) = raw(lb.addr, case).await;
        let shown = String::from_utf8_lossy(case);
        assert!(text.starts_with("HTTP/1.1 400"), "{shown:?} got {text:?}");
        assert!(closed, "{shown:?} left the connection open");
    }
    assert_eq!(a.hits(), 0, "a refused head reached the backend");

    // Bad chunking: the head is fine and goes through; the body is not.
    let chunk_cases: [&[u8]; 4] = [
        b"POST /body HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
        b"POST /body HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\nabc\r\n0\r\n\r\n",
        b"POST /body HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcdef\r\n0\r\n\r\n",
        b"POST /body HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffff\r\n",
    ];
    for case in chunk_cases {
        let (text, closed) = raw(lb.addr, case).await;
        let shown = String::from_utf8_lossy(case);
        assert!(text.starts_with("HTTP/1.1 400"), "{shown:?} got {text:?}");
        assert!(closed, "{shown:?} left the connection open");
    }

    // The bad request behind a good one on a keep-alive connection.
    let (text, closed) = raw(
        lb.addr,
        b"GET / HTTP/1.1\r\nHost: a\r\n\r\nPOST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    )
    .await;
    assert_eq!(statuses(&text), [200, 400], "{text:?}");
    assert!(closed);

    // And well-formed framing still works, pipelined.
    let (text, closed) = raw(
        lb.addr,
        b"POST /body HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\nPOST /body HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\nConnection: close\r\n\r\nxy",
    )
    .await;
    assert_eq!(statuses(&text), [200, 200], "{text:?}");
    assert!(
        text.contains("\r\n\r\n5") && text.ends_with("\r\n\r\n2"),
        "{text:?}"
    );
    assert!(closed);
    assert!(lb.handle.stats().frontend.bad_requests >= 12);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_head_or_body_is_refused() {
    let a = Backend::start("a").await;
    let mut s = settings();
    s.limits.max_header_bytes = 8192;
    s.limits.max_body_bytes = Some(10);
    let lb = start_lb(s, &[&a]).await;
    let big = format!(
        "GET / HTTP/1.1\r\nHost: a\r\nX-Big: {}\r\n\r\n",
        "a".repeat(10_000)
    );
    let (text, closed) = raw(lb.addr, big.as_bytes()).await;
    assert!(text.starts_with("HTTP/1.1 4"), "{text:?}");
    assert!(closed);
    let (text, _) = raw(
        lb.addr,
        b"POST /body HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\nhello world",
    )
    .await;
    assert!(text.starts_with("HTTP/1.1 413"), "{text:?}");
    let (text, closed) = raw(
        lb.addr,
        b"POST /body HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nhello \r\n5\r\nworld\r\n0\r\n\r\n",
    )
    .await;
    assert!(text.starts_with("HTTP/1.1 413"), "{text:?}");
    assert!(closed);
    let (text, _) = raw(
        lb.addr,
        b"POST /body HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\nConnection: close\r\n\r\nhelloworld",
    )
    .await;
    assert!(text.starts_with("HTTP/1.1 200"), "{text:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgraded_connection_is_tunnelled_both_ways() {
    let a = Backend::start("a").await;
    let lb = start_lb(settings(), &[&a]).await;
    let mut s = TcpStream::connect(lb.addr).await.unwrap();
    s.write_all(b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
        .await
        .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut byte))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            n,
            1,
            "closed during the 101 head: {:?}",
            String::from_utf8_lossy(&head)
        );
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("upgrade: echo"), "{head}");
    for msg in [&b"hello"[..], &b"\x00binary\xff"[..]] {
        s.write_all(msg).await.unwrap();
        let mut back = vec![0u8; msg.len()];
        tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut back))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(back, msg);
    }
    // The tunnel holds its backend slot until it ends.
    let active = |lb: &Lb| lb.handle.stats().backends[0].pool.active;
    assert_eq!(active(&lb), 1);
    drop(s);
    assert!(wait_until(Duration::from_secs(3), || active(&lb) == 0).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarding_headers_are_added_and_hop_by_hop_ones_dropped() {
    let a = Backend::start("a").await;
    let lb = start_lb(settings(), &[&a]).await;
    let (text, _) = raw(
        lb.addr,
        b"GET /headers HTTP/1.1\r\nHost: shop.example:8080\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\nKeep-Alive: timeout=5\r\nProxy-Authorization: Basic eA==\r\nProxy: http://evil/\r\nTE: trailers\r\nX-Forwarded-For: 192.0.2.9\r\nX-Forwarded-Proto: gopher\r\nX-Kept: yes\r\n\r\n",
    )
    .await;
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let seen: BTreeMap<String, Vec<String>> = serde_json::from_str(body).unwrap();
    let one = |k: &str| seen.get(k).map(|v| v.join(" | "));
    assert_eq!(
        one("x-forwarded-for").as_deref(),
        Some("192.0.2.9, 127.0.0.1")
    );
    assert_eq!(one("x-forwarded-proto").as_deref(), Some("http"));
    assert_eq!(
        one("x-forwarded-host").as_deref(),
        Some("shop.example:8080")
    );
    assert_eq!(
        one("forwarded").as_deref(),
        Some("for=127.0.0.1;host=\"shop.example:8080\";proto=http")
    );
    assert_eq!(one("host").as_deref(), Some("shop.example:8080"));
    assert_eq!(one("via").as_deref(), Some("1.1 piha"));
    assert_eq!(one("x-kept").as_deref(), Some("yes"));
    for gone in ["x-hop", "keep-alive", "proxy-authorization", "proxy", "te"] {
        assert!(!seen.contains_key(gone), "{gone} reached the backend");
    }
    // A keep-alive toward the backend is the balancer's business, not the
    // client's Connection header's.
    assert_ne!(one("connection").as_deref(), Some("keep-alive, X-Hop"));
    let head = head.to_lowercase();
    assert!(head.contains("x-backend: a"), "{head}");
    assert!(!head.contains("x-resp-hop"), "{head}");
    assert!(!head.contains("keep-alive: timeout=3"), "{head}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_clients_are_served_by_prior_knowledge() {
    let a = Backend::start("a").await;
    let lb = start_lb(settings(), &[&a]).await;
    let c: TestClient = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http();
    for _ in 0..3 {
        let got = get(&c, &lb.url("/headers")).await.unwrap();
        assert_eq!(got.status, StatusCode::OK);
        let seen: BTreeMap<String, Vec<String>> = serde_json::from_str(&got.body).unwrap();
        assert_eq!(seen["host"], [lb.addr.to_string()]);
    }
    assert_eq!(a.hits(), 3);
}

// ---------------------------------------------------------------- the node service

/// `run` inside a node built here: the shipped cluster file moved onto
/// 127.62.1.0/24 (used by no other test; binding port 80 needs root, as on
/// a Pi), membership and config changes sent by hand.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_service_follows_membership_and_config_live() {
    use piha::config::Role;
    use piha::membership::{MemberView, MembershipView, NodeReport, PeerState};
    use piha::node::context::{Identity, NodeContext, Running};
    use piha::node::events::Events;
    use piha::node::health::{HealthBoard, RoleState};

    if !running_as_root() {
        eprintln!("skipped: binding port 80 needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let shipped = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("pi-configs/cluster.toml"),
    )
    .unwrap();
    let path = dir.path().join("cluster.toml");
    std::fs::write(&path, shipped.replace("192.0.2.", "127.62.1.")).unwrap();
    let config = piha::config::load(&path).unwrap();
    let plan = config.plan_for("pi-1").unwrap();
    let web_port = plan.settings.web.as_ref().unwrap().port;
    let http_port = plan.settings.balancer.as_ref().unwrap().http_port;
    let me: SocketAddr = format!("127.62.1.11:{web_port}").parse().unwrap();
    let pi2: SocketAddr = format!("127.62.1.12:{web_port}").parse().unwrap();
    let own_web = Backend::start_at("pi-1", me).await;
    let peer_web = Backend::start_at("pi-2", pi2).await;
    let extra = Backend::start_at("extra", "127.62.1.50:0".parse().unwrap()).await;

    let (store, worker, _) = piha::store::open(
        &dir.path().join("data"),
        piha::store::StoreConfig::default(),
    )
    .unwrap();
    let running = Arc::new(Running {
        config: Arc::new(config),
        plan,
        loaded_at_ms: 0,
    });
    let (config_tx, config_rx) = tokio::sync::watch::channel(running.clone());
    let ctx = Arc::new(NodeContext {
        identity: Identity {
            hostname: "pi-1".into(),
            address: "127.62.1.11".parse().unwrap(),
            incarnation: 1,
            started_at_ms: 0,
            version: "test",
            data_dir: dir.path().to_path_buf(),
        },
        config: config_rx,
        events: Events::new(store.clone(), "pi-1"),
        store,
        health: HealthBoard::default(),
        system: tokio::sync::watch::channel(Arc::default()).0,
        membership: tokio::sync::watch::channel(Arc::default()).0,
        reload: tokio::sync::mpsc::channel(1).0,
        shutdown: CancellationToken::new(),
        roles: Default::default(),
        held: Default::default(),
    });
    let service = tokio::spawn(piha::balancer::http::run(ctx.clone()));
    let published = || ctx.roles.http_balancer.borrow().clone();
    assert!(wait_until(Duration::from_secs(5), || published().is_some()).await);
    let handle = published().unwrap();
    let state = |name: &str| {
        handle
            .stats()
            .backends
            .iter()
            .find(|b| b.pool.name == name)
            .map(|b| b.pool.state.to_owned())
    };
    // This node's own web role is a backend from the start.
    assert!(
        wait_until(Duration::from_secs(5), || state("pi-1").as_deref()
            == Some("UP"))
        .await
    );

    // A peer with the web role comes up: it joins without a restart.
    let member = |st: PeerState| MemberView {
        hostname: "pi-2".into(),
        state: st,
        since_ms: 0,
        last_heard_ms: None,
        gossip: None,
        report: Some(NodeReport {
            address: Some(pi2.ip()),
            roles: vec!["balancer".into(), "web".into()],
            ..NodeReport::default()
        }),
    };
    ctx.membership.send_replace(Arc::new(MembershipView {
        members: vec![member(PeerState::Up)],
        ..MembershipView::default()
    }));
    assert!(
        wait_until(Duration::from_secs(5), || state("pi-2").as_deref()
            == Some("UP"))
        .await
    );
    let c = client();
    // Through this node's address and through the VIP, bound before held.
    for host in ["127.62.1.11", "127.62.1.10"] {
        for _ in 0..4 {
            let got = get(&c, &format!("http://{host}:{http_port}/"))
                .await
                .unwrap();
            assert_eq!(got.status, StatusCode::OK, "via {host}");
        }
    }
    assert!(own_web.hits() >= 2 && peer_web.hits() >= 2);
    let healthy = || {
        ctx.health
            .snapshot()
            .roles
            .get(&Role::Balancer)
            .map(|r| r.state)
    };
    assert!(
        wait_until(Duration::from_secs(3), || healthy()
            == Some(RoleState::Healthy))
        .await
    );

    // A static backend added by a reload: followed live, no restart.
    let mut plan = running.plan.clone();
    if let Some(b) = plan.settings.balancer.as_mut() {
        b.backends.push(piha::config::StaticBackend {
            address: extra.addr,
            weight: 1,
        });
    }
    config_tx.send_replace(Arc::new(Running {
        config: running.config.clone(),
        plan: plan.clone(),
        loaded_at_ms: 1,
    }));
    let extra_name = extra.addr.to_string();
    assert!(
        wait_until(Duration::from_secs(5), || state(&extra_name).as_deref()
            == Some("UP"))
        .await
    );
    assert!(!service.is_finished());

    // Membership loses the peer (a crash): it stays in the pool, where its
    // health checks decide (its web server here still answers, so UP).
    ctx.membership.send_replace(Arc::new(MembershipView {
        members: vec![member(PeerState::Down)],
        ..MembershipView::default()
    }));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(state("pi-2").is_some(), "a down member stays listed");
    // The peer stops gracefully (left): it leaves the pool.
    ctx.membership.send_replace(Arc::new(MembershipView {
        members: vec![member(PeerState::Left)],
        ..MembershipView::default()
    }));
    assert!(wait_until(Duration::from_secs(3), || state("pi-2").is_none()).await);

    // Slow requests in flight, each on a connection of its own (so each
    // front thread most likely has some): the restart must let them finish.
    let in_flight = || {
        own_web.state.slow_in_flight.load(Ordering::SeqCst)
            + extra.state.slow_in_flight.load(Ordering::SeqCst)
    };
    let slow: Vec<_> = (0..6)
        .map(|_| {
            let url = format!("http://127.62.1.11:{http_port}/slow?ms=1500");
            tokio::spawn(async move { get(&client(), &url).await })
        })
        .collect();
    assert!(wait_until(Duration::from_secs(5), || in_flight() == 6).await);

    // A setting that needs a rebuild: `run` returns Ok to be restarted.
    if let Some(b) = plan.settings.balancer.as_mut() {
        b.limits.maxconn += 1;
    }
    config_tx.send_replace(Arc::new(Running {
        config: running.config.clone(),
        plan,
        loaded_at_ms: 2,
    }));
    let ended = tokio::time::timeout(Duration::from_secs(10), service).await;
    assert!(matches!(ended, Ok(Ok(Ok(())))), "{ended:?}");
    assert!(published().is_none(), "the handle outlived the service");
    for request in slow {
        let got = request.await.unwrap().unwrap();
        assert_eq!(
            got.status,
            StatusCode::OK,
            "a request in flight at the restart"
        );
    }
    // Every front thread let go of the ports: the restarted service can
    // bind them again (as it does, with SO_REUSEADDR for the connections
    // in TIME_WAIT; a listener still open would make this fail).
    for host in ["127.62.1.11", "127.62.1.10"] {
        let addr: SocketAddr = format!("{host}:{http_port}").parse().unwrap();
        if let Err(e) = piha::balancer::http::bind(addr, false) {
            panic!("{addr} still bound after the restart: {e}");
        }
    }
    tokio::task::spawn_blocking(move || worker.shutdown(Duration::from_secs(5)))
        .await
        .unwrap()
        .unwrap();
}

fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

// ---------------------------------------------------------------- HTTPS front end

/// A self-signed certificate for "localhost" and an acceptor offering h2
/// and HTTP/1.1, plus a client config trusting it.
fn tls_pair() -> (tokio_rustls::TlsAcceptor, Arc<rustls::ClientConfig>) {
    use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert = ck.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ck.key_pair.serialize_der()));
    let mut server = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)
        .unwrap();
    server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert).unwrap();
    let client = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    (
        tokio_rustls::TlsAcceptor::from(Arc::new(server)),
        Arc::new(client),
    )
}

async fn tls_connect(
    addr: SocketAddr,
    client: &Arc<rustls::ClientConfig>,
    alpn: &[u8],
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let mut config = (**client).clone();
    config.alpn_protocols = vec![alpn.to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    connector.connect(name, tcp).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_clients_are_served_over_http1_and_h2_by_alpn() {
    let a = Backend::start("a").await;
    let lb = start_lb(settings(), &[&a]).await;
    let (acceptor, client_config) = tls_pair();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let tls_addr = listener.local_addr().unwrap();
    tokio::spawn(serve(
        listener,
        lb.handle.clone(),
        Some(acceptor),
        lb.stop.clone(),
    ));

    // HTTP/1.1 over TLS, raw bytes: the smuggling guard is on here too.
    let mut s = tls_connect(tls_addr, &client_config, b"http/1.1").await;
    s.write_all(b"GET /headers HTTP/1.1\r\nHost: shop.example\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut text = String::new();
    let _ = s.read_to_string(&mut text).await;
    assert!(text.starts_with("HTTP/1.1 200"), "{text:?}");
    let body = text.split_once("\r\n\r\n").unwrap().1;
    let seen: BTreeMap<String, Vec<String>> = serde_json::from_str(body).unwrap();
    assert_eq!(seen["x-forwarded-proto"], ["https"]);
    assert_eq!(
        seen["forwarded"],
        ["for=127.0.0.1;host=shop.example;proto=https"]
    );
    let mut s = tls_connect(tls_addr, &client_config, b"http/1.1").await;
    s.write_all(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
        .await
        .unwrap();
    let mut text = String::new();
    let _ = s.read_to_string(&mut text).await;
    assert!(text.starts_with("HTTP/1.1 400"), "{text:?}");

    // h2 by ALPN, with hyper's client.
    let s = tls_connect(tls_addr, &client_config, b"h2").await;
    assert_eq!(s.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(s))
            .await
            .unwrap();
    tokio::spawn(conn);
    for _ in 0..3 {
        let req = Request::get("https://localhost/headers")
            .body(Full::<Bytes>::default())
            .unwrap();
        let resp = sender.send_request(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        let seen: BTreeMap<String, Vec<String>> = serde_json::from_slice(&body).unwrap();
        assert_eq!(seen["host"], ["localhost"]);
        assert_eq!(seen["x-forwarded-proto"], ["https"]);
    }
    assert_eq!(lb.handle.stats().frontend.tls_handshake_failures, 0);
}

// ------------------------------------------------- raw backend framings

/// A backend written byte by byte, for the response framings a hyper server
/// never produces on its own: chunks with extensions and trailers split
/// across writes, 1xx before the answer, a body that ends when the
/// connection does, a conflicting head. Counts the connections that served
/// `/reuse`, so reuse shows. Every answer to a path it does not know is
/// `ok`.
struct RawBackend {
    addr: SocketAddr,
    reuse_conns: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Drop for RawBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl RawBackend {
    async fn start() -> RawBackend {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let reuse_conns = Arc::new(AtomicUsize::new(0));
        let count = reuse_conns.clone();
        let task = tokio::spawn(async move {
            let mut conns = JoinSet::new();
            while let Ok((stream, _)) = listener.accept().await {
                conns.spawn(raw_backend_connection(stream, count.clone()));
                while conns.try_join_next().is_some() {}
            }
        });
        RawBackend {
            addr,
            reuse_conns,
            task,
        }
    }

    fn desired(&self) -> Desired {
        Desired {
            name: "raw".to_owned(),
            addr: self.addr,
            weight: 1,
            source: Source::Static,
        }
    }
}

async fn raw_backend_connection(mut s: TcpStream, reuse_conns: Arc<AtomicUsize>) {
    let mut counted = false;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    for _ in 0..1000 {
        let end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            match tokio::time::timeout(Duration::from_secs(10), s.read(&mut chunk)).await {
                Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
                _ => return,
            }
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        buf.drain(..end);
        let mut words = head.split(' ');
        let method = words.next().unwrap_or_default().to_owned();
        let path = words.next().unwrap_or_default().to_owned();
        if path == "/reuse" && !counted {
            counted = true;
            reuse_conns.fetch_add(1, Ordering::SeqCst);
        }
        let pieces: Vec<&[u8]> = match path.as_str() {
            "/chunked" => vec![
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r",
                b"\nhello\r\n7;x=y\r\n, wo",
                b"rld\r\n0\r\nX-Trailer: 1\r\n",
                b"\r\n",
            ],
            "/continue" => vec![
                b"HTTP/1.1 100 Continue\r\n\r\n",
                b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\ncontinued",
            ],
            "/until-close" => vec![b"HTTP/1.1 200 OK\r\n\r\nuntil ", b"closed"],
            "/conflict" => {
                vec![b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nx"]
            }
            "/head" if method == "HEAD" => {
                vec![b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n"]
            }
            "/not-modified" => vec![b"HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n\r\n"],
            "/then-close" => vec![b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nclosed"],
            _ => vec![b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"],
        };
        for piece in pieces {
            if s.write_all(piece).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if path == "/until-close" || path == "/conflict" {
            return;
        }
        if path == "/then-close" {
            // A keep-alive connection the backend closes while it idles
            // in the balancer's pool.
            tokio::time::sleep(Duration::from_millis(50)).await;
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_response_framing_is_passed_on_and_connections_are_reused() {
    let backend = RawBackend::start().await;
    let lb = start_lb_for(settings(), &[backend.desired()]).await;
    let c = client();
    let got = get(&c, &lb.url("/chunked")).await.unwrap();
    assert_eq!(
        (got.status, got.body.as_str()),
        (StatusCode::OK, "hello, world")
    );
    assert!(!got.headers.contains_key("x-trailer"));
    let got = get(&c, &lb.url("/continue")).await.unwrap();
    assert_eq!(
        (got.status, got.body.as_str()),
        (StatusCode::OK, "continued")
    );
    let got = get(&c, &lb.url("/until-close")).await.unwrap();
    assert_eq!(
        (got.status, got.body.as_str()),
        (StatusCode::OK, "until closed")
    );
    let got = get(&c, &lb.url("/not-modified")).await.unwrap();
    assert_eq!(
        (got.status, got.body.as_str()),
        (StatusCode::NOT_MODIFIED, "")
    );
    let head = Request::head(lb.url("/head"))
        .body(Full::default())
        .unwrap();
    let got = send(&c, head).await.unwrap();
    assert_eq!((got.status, got.body.as_str()), (StatusCode::OK, ""));
    assert_eq!(got.headers["content-length"], "11");
    let got = get(&c, &lb.url("/conflict")).await.unwrap();
    assert_eq!(got.status, StatusCode::BAD_GATEWAY, "{}", got.body);
    assert!(
        got.body.contains("conflicting Content-Length"),
        "{}",
        got.body
    );

    // Twenty requests one after another ride on one backend connection.
    for _ in 0..20 {
        let got = get(&c, &lb.url("/reuse")).await.unwrap();
        assert_eq!(got.body, "ok");
    }
    let opened = backend.reuse_conns.load(Ordering::SeqCst);
    assert_eq!(opened, 1, "connections used for 20 requests in a row");

    // A pooled connection the backend closed is noticed, not used: every
    // request after such a close still succeeds, even a POST (which is
    // never retried).
    for _ in 0..5 {
        let got = get(&c, &lb.url("/then-close")).await.unwrap();
        assert_eq!(got.body, "closed");
        tokio::time::sleep(Duration::from_millis(150)).await;
        let post = Request::post(lb.url("/")).body(Full::from("x")).unwrap();
        let got = send(&c, post).await.unwrap();
        assert_eq!((got.status, got.body.as_str()), (StatusCode::OK, "ok"));
    }
}
