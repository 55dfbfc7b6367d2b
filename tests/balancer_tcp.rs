//! L4 TCP services over real sockets on 127.0.0.1: echo backends spawned
//! here, a service run with `serve_service` (no node), and clients that
//! check what arrives. Every wait is bounded.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use piha::balancer::pool::PoolEvent;
use piha::balancer::tcp::{EventSink, Handle, TcpStats, bind_listener, serve_service};
use piha::config::{Algorithm, ProxyLimits, StaticBackend, TcpHealthCheck, TcpService};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const TRAILER: &[u8] = b"<bye>";
const WAIT: Duration = Duration::from_secs(10);

// ---- backends ----------------------------------------------------------

/// Echoes each connection until EOF, then sends `TRAILER` and closes.
/// `served` counts connections that sent data (health checks send none).
struct Backend {
    addr: SocketAddr,
    served: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Backend {
    async fn start() -> Backend {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        Backend::on(listener)
    }

    fn on(listener: TcpListener) -> Backend {
        let addr = listener.local_addr().unwrap();
        let served = Arc::new(AtomicUsize::new(0));
        let count = served.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                tokio::spawn(echo(stream, count.clone()));
            }
        });
        Backend { addr, served, task }
    }

    fn served(&self) -> usize {
        self.served.load(Ordering::SeqCst)
    }

    /// Closes the listener (connections in flight go on) and waits until it
    /// is really gone.
    async fn stop(self) -> SocketAddr {
        self.task.abort();
        let _ = self.task.await;
        self.addr
    }
}

async fn echo(mut stream: TcpStream, served: Arc<AtomicUsize>) {
    let mut buf = vec![0u8; 32 * 1024];
    let mut first = true;
    loop {
        match stream.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => {
                if std::mem::take(&mut first) {
                    served.fetch_add(1, Ordering::SeqCst);
                }
                if stream.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
            Err(_) => return,
        }
    }
    let _ = stream.write_all(TRAILER).await;
    let _ = stream.shutdown().await;
}

/// A port with nothing listening on it.
async fn dead_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap()
}

// ---- the service -------------------------------------------------------

fn service(backends: &[SocketAddr], algorithm: Algorithm) -> TcpService {
    TcpService {
        name: "redis".into(),
        port: 0,
        backends: backends
            .iter()
            .map(|a| StaticBackend {
                address: *a,
                weight: 1,
            })
            .collect(),
        algorithm,
        health: TcpHealthCheck {
            interval: Duration::from_millis(100),
            timeout: Duration::from_millis(500),
            rise: 1,
            fall: 1,
        },
        limits: ProxyLimits {
            connect_timeout: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(30),
            ..ProxyLimits::default()
        },
    }
}

struct Front {
    addr: SocketAddr,
    handle: Arc<Handle>,
    events: Arc<Mutex<Vec<String>>>,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl Front {
    async fn start(service: TcpService) -> Front {
        let listener = bind_listener("127.0.0.1:0".parse().unwrap(), false).unwrap();
        Front::on(listener, service)
    }

    fn on(listener: TcpListener, service: TcpService) -> Front {
        let addr = listener.local_addr().unwrap();
        let handle = Handle::new(service);
        let events = Arc::new(Mutex::new(Vec::new()));
        let log = events.clone();
        let sink: EventSink = Arc::new(move |h: &Handle, e: &PoolEvent| {
            log.lock().unwrap().push(format!("{}: {e:?}", h.name));
        });
        let stop = CancellationToken::new();
        let task = tokio::spawn(serve_service(
            vec![listener],
            handle.clone(),
            sink,
            stop.clone(),
        ));
        Front {
            addr,
            handle,
            events,
            stop,
            task,
        }
    }

    fn stats(&self) -> TcpStats {
        self.handle.stats()
    }

    fn state(&self, backend: SocketAddr) -> &'static str {
        self.stats()
            .backends
            .iter()
            .find(|b| b.view.addr == backend)
            .map(|b| b.view.state)
            .unwrap_or("absent")
    }

    async fn wait_state(&self, backend: SocketAddr, state: &str) {
        wait_until(
            || self.state(backend) == state,
            &format!("{backend} {state}"),
        )
        .await;
    }

    async fn all_up(&self) {
        wait_until(
            || self.stats().backends.iter().all(|b| b.view.state == "UP"),
            "all backends up",
        )
        .await;
    }

    fn events(&self) -> Vec<String> {
        self.events.lock().unwrap().clone()
    }
}

async fn wait_until(mut ok: impl FnMut() -> bool, what: &str) {
    let deadline = Instant::now() + WAIT;
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

// ---- clients -----------------------------------------------------------

/// Sends `data`, half-closes, and returns everything read until EOF.
async fn exchange(front: SocketAddr, data: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(front).await.unwrap();
    s.write_all(data).await.unwrap();
    s.shutdown().await.unwrap();
    read_all(&mut s).await
}

async fn read_all(s: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut out))
        .await
        .expect("read to EOF in time")
        .expect("read ok");
    out
}

/// A connected client whose tunnel is open: it sent a byte and got it back.
async fn open_tunnel(front: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(front).await.unwrap();
    s.write_all(b"x").await.unwrap();
    let mut b = [0u8; 1];
    tokio::time::timeout(WAIT, s.read_exact(&mut b))
        .await
        .expect("echo in time")
        .unwrap();
    s
}

/// How long until the peer closes `s` (EOF or reset), at most `limit`.
async fn closed_within(s: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut buf = [0u8; 64];
    loop {
        match tokio::time::timeout_at((started + limit).into(), s.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(started.elapsed()),
            Ok(Ok(_)) => {}
        }
    }
}

fn expected(data: &[u8]) -> Vec<u8> {
    [data, TRAILER].concat()
}

// ---- tests -------------------------------------------------------------

#[tokio::test]
async fn roundrobin_spreads_connections_evenly() {
    let (a, b) = (Backend::start().await, Backend::start().await);
    let front = Front::start(service(&[a.addr, b.addr], Algorithm::RoundRobin)).await;
    front.all_up().await;
    for i in 0..20 {
        let msg = format!("hello {i}");
        assert_eq!(
            exchange(front.addr, msg.as_bytes()).await,
            expected(msg.as_bytes())
        );
    }
    let (na, nb) = (a.served(), b.served());
    assert_eq!(na + nb, 20);
    assert!(na.abs_diff(nb) <= 2, "split {na}/{nb}");
    let stats = front.stats();
    assert_eq!(stats.connections_total, 20);
    assert_eq!(stats.connections_active, 0);
    assert!(stats.bytes_in >= 20 * 7, "{stats:?}");
    assert_eq!(stats.bytes_out, stats.bytes_in + 20 * TRAILER.len() as u64);
    let per_backend: u64 = stats.backends.iter().map(|b| b.connections_total).sum();
    assert_eq!(per_backend, 20);
}

#[tokio::test]
async fn leastconn_balances_open_tunnels() {
    let (a, b) = (Backend::start().await, Backend::start().await);
    let front = Front::start(service(&[a.addr, b.addr], Algorithm::LeastConn)).await;
    front.all_up().await;
    let mut held = Vec::new();
    for _ in 0..10 {
        held.push(open_tunnel(front.addr).await);
    }
    let stats = front.stats();
    assert_eq!(stats.connections_active, 10);
    let active: Vec<u32> = stats.backends.iter().map(|b| b.view.active).collect();
    assert_eq!(active, [5, 5]);
    let (na, nb) = (a.served(), b.served());
    assert_eq!((na, nb), (5, 5));
    drop(held);
    wait_until(|| front.stats().connections_active == 0, "tunnels closed").await;
}

#[tokio::test]
async fn a_large_transfer_round_trips_byte_exact() {
    let a = Backend::start().await;
    let front = Front::start(service(&[a.addr], Algorithm::RoundRobin)).await;
    front.all_up().await;
    let data: Vec<u8> = (0..8u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let s = TcpStream::connect(front.addr).await.unwrap();
    let (mut r, mut w) = s.into_split();
    let to_send = data.clone();
    let writer = tokio::spawn(async move {
        w.write_all(&to_send).await.unwrap();
        w.shutdown().await.unwrap();
    });
    let mut got = Vec::with_capacity(data.len() + TRAILER.len());
    tokio::time::timeout(Duration::from_secs(60), r.read_to_end(&mut got))
        .await
        .expect("8 MiB in time")
        .unwrap();
    writer.await.unwrap();
    assert_eq!(got.len(), data.len() + TRAILER.len());
    assert!(got == expected(&data), "bytes differ");
    let stats = front.stats();
    assert_eq!(stats.bytes_in, data.len() as u64);
    assert_eq!(stats.bytes_out, (data.len() + TRAILER.len()) as u64);
}

#[tokio::test]
async fn half_close_from_the_client_still_gets_the_whole_answer() {
    let a = Backend::start().await;
    let front = Front::start(service(&[a.addr], Algorithm::RoundRobin)).await;
    front.all_up().await;
    let mut s = TcpStream::connect(front.addr).await.unwrap();
    s.write_all(b"first ").await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    s.write_all(b"second").await.unwrap();
    s.shutdown().await.unwrap();
    // The backend only sends its trailer after it saw our EOF, so the
    // trailer proves the half-close crossed and the other way stayed open.
    assert_eq!(read_all(&mut s).await, expected(b"first second"));
}

#[tokio::test]
async fn half_close_from_the_backend_keeps_the_client_side_open() {
    // A backend that sends a banner, closes its write side, then reads what
    // the client still sends until EOF.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        // The health checks connect too: serve the first that sends data.
        let mut tx = Some(tx);
        loop {
            let (mut s, _) = listener.accept().await.unwrap();
            s.write_all(b"banner").await.ok();
            s.shutdown().await.ok();
            let mut got = Vec::new();
            let _ = s.read_to_end(&mut got).await;
            if !got.is_empty() {
                if let Some(tx) = tx.take() {
                    let _ = tx.send(got);
                }
            }
        }
    });
    let mut svc = service(&[addr], Algorithm::RoundRobin);
    svc.health.interval = Duration::from_secs(5);
    let front = Front::start(svc).await;
    front.all_up().await;
    let mut s = TcpStream::connect(front.addr).await.unwrap();
    let mut banner = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut banner))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(banner, b"banner");
    s.write_all(b"late data").await.unwrap();
    s.shutdown().await.unwrap();
    let got = tokio::time::timeout(WAIT, rx).await.unwrap().unwrap();
    assert_eq!(got, b"late data");
}

#[tokio::test]
async fn a_dead_backend_is_struck_retried_elsewhere_and_comes_back() {
    let (a, b) = (Backend::start().await, Backend::start().await);
    let mut svc = service(&[a.addr, b.addr], Algorithm::RoundRobin);
    // Checks rarely, so the failure is found by traffic, not by a check.
    svc.health.interval = Duration::from_secs(1);
    let front = Front::start(svc).await;
    front.all_up().await;
    let b_addr = b.stop().await;
    for i in 0..4 {
        let msg = format!("try {i}");
        assert_eq!(
            exchange(front.addr, msg.as_bytes()).await,
            expected(msg.as_bytes())
        );
    }
    let stats = front.stats();
    assert_eq!(stats.connect_errors, 1, "{stats:?}");
    assert_eq!(stats.retries, 1);
    assert_eq!(a.served(), 4);
    assert_eq!(front.state(b_addr), "DOWN");
    let events = front.events();
    assert!(
        events
            .iter()
            .any(|e| e.contains("Down") && e.contains("traffic failed")),
        "{events:?}"
    );
    // Back: the checks bring it up and it takes its share again.
    let b = Backend::on(bind_listener(b_addr, false).unwrap());
    front.wait_state(b_addr, "UP").await;
    for _ in 0..4 {
        assert_eq!(exchange(front.addr, b"again").await, expected(b"again"));
    }
    assert!(b.served() >= 1, "the returned backend got no connection");
    assert!(front.events().iter().any(|e| e.contains("Up")));
}

#[tokio::test]
async fn maxconn_queues_then_refuses_when_the_queue_is_full() {
    let a = Backend::start().await;
    let mut svc = service(&[a.addr], Algorithm::RoundRobin);
    svc.limits.maxconn = 1;
    svc.limits.queue = 1;
    svc.limits.queue_timeout = Duration::from_secs(10);
    let front = Front::start(svc).await;
    front.all_up().await;
    let mut first = open_tunnel(front.addr).await;
    let mut second = TcpStream::connect(front.addr).await.unwrap();
    second.write_all(b"queued").await.unwrap();
    wait_until(|| front.stats().queued == 1, "second client queued").await;
    // Queue full: the third is closed at once.
    let mut third = TcpStream::connect(front.addr).await.unwrap();
    let closed = closed_within(&mut third, Duration::from_millis(500)).await;
    assert!(closed.is_some(), "third client not closed");
    assert_eq!(front.stats().refused_queue_full, 1);
    // The second still waits, and gets through once the first closes.
    let mut b = [0u8; 6];
    let early = tokio::time::timeout(Duration::from_millis(200), second.read_exact(&mut b)).await;
    assert!(
        early.is_err(),
        "second client was served while the first held the slot"
    );
    first.shutdown().await.unwrap();
    assert_eq!(read_all(&mut first).await, TRAILER);
    second.shutdown().await.unwrap();
    assert_eq!(read_all(&mut second).await, expected(b"queued"));
    assert_eq!(a.served(), 2);
    assert_eq!(front.stats().queued, 0);
}

#[tokio::test]
async fn a_queued_client_is_closed_at_the_queue_timeout() {
    let a = Backend::start().await;
    let mut svc = service(&[a.addr], Algorithm::RoundRobin);
    svc.limits.maxconn = 1;
    svc.limits.queue_timeout = Duration::from_millis(300);
    let front = Front::start(svc).await;
    front.all_up().await;
    let _first = open_tunnel(front.addr).await;
    let mut second = TcpStream::connect(front.addr).await.unwrap();
    let closed = closed_within(&mut second, Duration::from_secs(2))
        .await
        .expect("queued client closed");
    assert!(
        closed >= Duration::from_millis(250),
        "closed after {closed:?}"
    );
    assert_eq!(front.stats().refused_queue_timeout, 1);
}

#[tokio::test]
async fn an_idle_tunnel_is_closed_after_the_idle_timeout() {
    let a = Backend::start().await;
    let mut svc = service(&[a.addr], Algorithm::RoundRobin);
    let idle = Duration::from_millis(500);
    svc.limits.idle_timeout = idle;
    let front = Front::start(svc).await;
    front.all_up().await;
    // Traffic every 200 ms keeps it open past the timeout...
    let mut s = open_tunnel(front.addr).await;
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        s.write_all(b"y").await.unwrap();
        let mut b = [0u8; 1];
        s.read_exact(&mut b).await.unwrap();
    }
    // ...silence closes it within timeout + 0.5 s.
    let closed = closed_within(&mut s, idle + Duration::from_millis(500))
        .await
        .expect("idle tunnel closed in time");
    assert!(
        closed >= idle - Duration::from_millis(50),
        "closed after {closed:?}"
    );
    wait_until(|| front.stats().idle_timeouts == 1, "idle timeout counted").await;
    assert_eq!(front.stats().connections_active, 0);
}

#[tokio::test]
async fn no_backend_closes_the_client_promptly_and_counts_it() {
    let dead = dead_addr().await;
    let front = Front::start(service(&[dead], Algorithm::RoundRobin)).await;
    // Let a check round run: the backend stays down.
    wait_until(
        || front.stats().backends[0].view.last_check_ok == Some(false),
        "a failed check",
    )
    .await;
    let mut s = TcpStream::connect(front.addr).await.unwrap();
    let closed = closed_within(&mut s, Duration::from_millis(500)).await;
    assert!(closed.is_some(), "client not closed");
    let stats = front.stats();
    assert_eq!(stats.refused_no_backend, 1);
    assert_eq!(stats.connections_total, 1);
    assert_eq!(stats.connect_errors, 0);
    let json = serde_json::to_value(&stats).unwrap();
    assert_eq!(json["backends"][0]["state"], "DOWN");
    assert_eq!(json["refused_no_backend"], 1);
}

#[tokio::test]
async fn stopping_a_service_frees_its_port_and_keeps_open_tunnels() {
    let a = Backend::start().await;
    let svc = service(&[a.addr], Algorithm::RoundRobin);
    let front = Front::start(svc.clone()).await;
    front.all_up().await;
    let mut s = open_tunnel(front.addr).await;
    front.stop.cancel();
    front.task.await.unwrap();
    // A restart (as after a reload) binds the same address at once.
    let again = Front::on(bind_listener(front.addr, false).unwrap(), svc);
    again.all_up().await;
    assert_eq!(exchange(again.addr, b"new").await, expected(b"new"));
    // The tunnel from before the restart still carries bytes.
    s.write_all(b"old").await.unwrap();
    s.shutdown().await.unwrap();
    assert_eq!(read_all(&mut s).await, expected(b"old"));
}

// ---- the node service --------------------------------------------------

mod node {
    use super::*;
    use piha::config::{BalancerSettings, NodePlan};
    use piha::node::context::{Identity, NodeContext, Running};
    use piha::node::events::Events;
    use tokio::sync::watch;

    const SHIPPED: &str = include_str!("../pi-configs/cluster.toml");

    fn running(plan: &NodePlan, config: &Arc<piha::config::ClusterConfig>) -> Arc<Running> {
        Arc::new(Running {
            config: config.clone(),
            plan: plan.clone(),
            loaded_at_ms: 0,
        })
    }

    /// pi-1 of the shipped file, on 127.0.0.1, with `tcp` as its services.
    /// The shipped VIP (192.0.2.10) is bound with IP_FREEBIND; nothing is
    /// ever sent to it.
    fn context(
        dir: &std::path::Path,
        tcp: Vec<TcpService>,
    ) -> (Arc<NodeContext>, watch::Sender<Arc<Running>>, NodePlan) {
        let config =
            Arc::new(piha::config::parse(SHIPPED, std::path::Path::new("cluster.toml")).unwrap());
        let mut plan = config.plan_for("pi-1").unwrap();
        plan.settings.balancer = Some(BalancerSettings {
            tcp,
            ..BalancerSettings::default()
        });
        let (tx, rx) = watch::channel(running(&plan, &config));
        let (store, worker, _) = piha::store::open(
            dir,
            piha::store::StoreConfig {
                retention: Duration::from_secs(3600),
                max_bytes: 1 << 24,
                flush_interval: Duration::from_secs(1),
            },
        )
        .unwrap();
        std::mem::forget(worker); // events stay in the store's ring
        let ctx = Arc::new(NodeContext {
            identity: Identity {
                hostname: "pi-1".into(),
                address: "127.0.0.1".parse().unwrap(),
                incarnation: 1,
                started_at_ms: 0,
                version: "test",
                data_dir: dir.to_path_buf(),
            },
            config: rx,
            store: store.clone(),
            events: Events::new(store, "pi-1"),
            health: Default::default(),
            system: watch::channel(Arc::default()).0,
            membership: watch::channel(Arc::default()).0,
            reload: tokio::sync::mpsc::channel(1).0,
            shutdown: CancellationToken::new(),
            roles: Default::default(),
            held: Default::default(),
        });
        (ctx, tx, plan)
    }

    async fn free_port() -> u16 {
        dead_addr().await.port()
    }

    #[tokio::test]
    async fn run_serves_publishes_and_restarts_only_when_tcp_settings_change() {
        let dir = tempfile::tempdir().unwrap();
        let a = Backend::start().await;
        let mut svc = service(&[a.addr], Algorithm::RoundRobin);
        svc.port = free_port().await;
        let (ctx, config_tx, plan) = context(dir.path(), vec![svc.clone()]);
        let config = ctx.running().config.clone();
        let task = tokio::spawn(piha::balancer::tcp::run(ctx.clone()));

        let mut handles = ctx.roles.tcp_services.subscribe();
        wait_until(
            || handles.borrow_and_update().len() == 1,
            "handle published",
        )
        .await;
        let handle = handles.borrow().first().cloned().unwrap();
        let listening = handle.stats().listening;
        assert_eq!(listening.len(), 2, "{listening:?}");
        assert!(listening.contains(&format!("192.0.2.10:{}", svc.port).parse().unwrap()));
        let front: SocketAddr = format!("127.0.0.1:{}", svc.port).parse().unwrap();
        wait_until(
            || handle.stats().backends[0].view.state == "UP",
            "backend up",
        )
        .await;
        assert_eq!(exchange(front, b"via node").await, expected(b"via node"));
        let recorded = ctx.store.recent_events(10);
        assert!(
            recorded
                .iter()
                .any(|e| e.component == "balancer" && e.message.contains("is up")),
            "{recorded:?}"
        );

        // A reload that leaves the TCP settings alone changes nothing.
        config_tx.send_replace(running(&plan, &config));
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!task.is_finished());

        // One that changes them ends the service for a restart, unpublished.
        let mut changed = plan.clone();
        if let Some(b) = changed.settings.balancer.as_mut() {
            b.tcp[0].limits.maxconn = 7;
        }
        config_tx.send_replace(running(&changed, &config));
        tokio::time::timeout(WAIT, task)
            .await
            .expect("run returns")
            .unwrap()
            .unwrap();
        assert!(ctx.roles.tcp_services.borrow().is_empty());
        // The port is free again for the restart.
        drop(bind_listener(front, false).unwrap());
    }

    #[tokio::test]
    async fn run_fails_when_a_port_is_taken_and_stops_on_shutdown() {
        let dir = tempfile::tempdir().unwrap();
        let taken = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut svc = service(&[dead_addr().await], Algorithm::RoundRobin);
        svc.port = taken.local_addr().unwrap().port();
        let (ctx, _config_tx, _) = context(dir.path(), vec![svc]);
        let err = piha::balancer::tcp::run(ctx.clone()).await.unwrap_err();
        assert!(format!("{err:#}").contains("cannot listen"), "{err:#}");
        assert!(ctx.roles.tcp_services.borrow().is_empty());

        drop(taken);
        let task = tokio::spawn(piha::balancer::tcp::run(ctx.clone()));
        let mut handles = ctx.roles.tcp_services.subscribe();
        wait_until(
            || handles.borrow_and_update().len() == 1,
            "handle published",
        )
        .await;
        ctx.shutdown.cancel();
        tokio::time::timeout(WAIT, task)
            .await
            .expect("run stops")
            .unwrap()
            .unwrap();
        assert!(ctx.roles.tcp_services.borrow().is_empty());
    }
}
