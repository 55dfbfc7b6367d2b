//! `piha::web::run` as the agent runs it: with a real NodeContext (config
//! from pi-configs/cluster.toml, a real event store), on 127.0.0.1 ports.
//! Health goes Starting -> Healthy, or Degraded when the document root is
//! missing; HTTPS comes up with the self-signed certificate made in the data
//! directory; a reload that changes the web settings makes `run` return for
//! an immediate restart, one that does not is ignored; shutdown drains.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use piha::config::{self, AccessLog, Role, WebSettings};
use piha::node::context::{Identity, NodeContext, Running};
use piha::node::events::Events;
use piha::node::health::{HealthBoard, RoleHealth, RoleState};
use piha::store::{self, StoreConfig};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Node {
    ctx: Arc<NodeContext>,
    config_tx: watch::Sender<Arc<Running>>,
    worker: Option<store::StoreWorker>,
    data: tempfile::TempDir,
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(w) = self.worker.take() {
            let _ = w.shutdown(Duration::from_secs(5));
        }
    }
}

fn running(web: WebSettings) -> Arc<Running> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("pi-configs/cluster.toml");
    let cluster = config::load(&path).expect("pi-configs/cluster.toml loads");
    let mut plan = cluster.plan_for("pi-1").expect("pi-1 is in the file");
    assert!(plan.roles.contains(&Role::Web), "pi-1 has the web role");
    plan.settings.web = Some(web);
    Arc::new(Running {
        config: Arc::new(cluster),
        plan,
        loaded_at_ms: 0,
    })
}

fn node(web: WebSettings) -> Node {
    let data = tempfile::tempdir().unwrap();
    let (store, worker, _) =
        store::open(&data.path().join("store"), StoreConfig::default()).unwrap();
    let (config_tx, config_rx) = watch::channel(running(web));
    let (reload, _reload_rx) = tokio::sync::mpsc::channel(1);
    let ctx = Arc::new(NodeContext {
        identity: Identity {
            hostname: "pi-1".into(),
            address: IpAddr::from([127, 0, 0, 1]),
            incarnation: 1,
            started_at_ms: 0,
            version: "test",
            data_dir: data.path().to_path_buf(),
        },
        config: config_rx,
        events: Events::new(store.clone(), "pi-1"),
        store,
        health: HealthBoard::default(),
        system: watch::channel(Arc::default()).0,
        membership: watch::channel(Arc::default()).0,
        reload,
        shutdown: CancellationToken::new(),
        roles: Default::default(),
        held: Default::default(),
    });
    Node {
        ctx,
        config_tx,
        worker: Some(worker),
        data,
    }
}

fn web_health(ctx: &NodeContext) -> Option<RoleHealth> {
    ctx.health.snapshot().roles.get(&Role::Web).cloned()
}

async fn wait_for_health(ctx: &NodeContext, want: RoleState) -> RoleHealth {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(h) = web_health(ctx) {
            if h.state == want {
                return h;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "web role never became {want:?}: {:?}",
            web_health(ctx)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn http_status(addr: SocketAddr, path: &str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn web_settings(root: &Path) -> WebSettings {
    WebSettings {
        root: root.to_path_buf(),
        port: free_port(),
        tls_port: Some(free_port()),
        tls: None,
        access_log: AccessLog::Off,
        follow_symlinks: false,
        notes: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_reports_health_restarts_on_change_and_stops() {
    let root = tempfile::tempdir().unwrap();
    std::fs::write(root.path().join("index.html"), "pi-1 says hi").unwrap();
    let settings = web_settings(root.path());
    let n = node(settings.clone());
    let task = tokio::spawn(piha::web::run(n.ctx.clone()));

    let h = wait_for_health(&n.ctx, RoleState::Healthy).await;
    let plain = SocketAddr::from(([127, 0, 0, 1], settings.port));
    assert!(
        h.detail.contains(&format!("http://{plain}")),
        "{}",
        h.detail
    );
    assert!(h.detail.contains("https://"), "{}", h.detail);
    assert_eq!(http_status(plain, "/").await, 200);
    assert_eq!(http_status(plain, "/health").await, 200);

    // HTTPS with the certificate made in the data directory.
    let cert = n.data.path().join("tls/web-cert.pem");
    assert!(cert.is_file() && n.data.path().join("tls/web-key.pem").is_file());
    let tls_addr = SocketAddr::from(([127, 0, 0, 1], settings.tls_port.unwrap()));
    let der = {
        use rustls::pki_types::pem::PemObject;
        rustls::pki_types::CertificateDer::from_pem_file(&cert).unwrap()
    };
    let mut roots = rustls::RootCertStore::empty();
    roots.add(der).unwrap();
    let client = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(tls_addr).await.unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(client))
        .connect(
            rustls::pki_types::ServerName::IpAddress(tls_addr.ip().into()),
            tcp,
        )
        .await
        .expect("TLS handshake with the node's self-signed certificate");

    // A reload that leaves the web settings alone changes nothing...
    n.config_tx.send(running(settings.clone())).unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!task.is_finished());
    // ...one that changes them makes run return Ok for a restart.
    let mut changed = settings.clone();
    changed.follow_symlinks = true;
    n.config_tx.send(running(changed)).unwrap();
    let result = tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("run returns after a settings change");
    result.unwrap().unwrap();

    // Restarted with the new settings, then stopped with the node. The
    // board still says Healthy from the first run until the new one reports,
    // so wait for the new server itself to answer.
    let task = tokio::spawn(piha::web::run(n.ctx.clone()));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(plain).await.is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "restarted role never listened"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    wait_for_health(&n.ctx, RoleState::Healthy).await;
    assert_eq!(http_status(plain, "/").await, 200);
    n.ctx.shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("run returns on shutdown")
        .unwrap()
        .unwrap();
    assert!(
        tokio::net::TcpStream::connect(plain).await.is_err(),
        "port released"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_root_is_degraded_and_recovers() {
    let holder = tempfile::tempdir().unwrap();
    let root = holder.path().join("gluster-not-mounted");
    let settings = WebSettings {
        tls_port: None,
        ..web_settings(&root)
    };
    let n = node(settings.clone());
    let task = tokio::spawn(piha::web::run(n.ctx.clone()));
    let h = wait_for_health(&n.ctx, RoleState::Degraded).await;
    assert!(h.detail.contains("does not exist"), "{}", h.detail);
    assert!(
        h.detail.contains("serving /health and /api only"),
        "{}",
        h.detail
    );
    let plain = SocketAddr::from(([127, 0, 0, 1], settings.port));
    assert_eq!(http_status(plain, "/health").await, 503);
    assert_eq!(http_status(plain, "/api/random/bool").await, 200);
    assert_eq!(http_status(plain, "/x.html").await, 503);

    std::fs::create_dir(&root).unwrap();
    // The role checks every 5 s.
    tokio::time::sleep(Duration::from_secs(5)).await;
    wait_for_health(&n.ctx, RoleState::Healthy).await;
    assert_eq!(http_status(plain, "/health").await, 200);
    n.ctx.shutdown.cancel();
    task.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_port_in_use_fails_the_role_with_the_reason() {
    let root = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let settings = WebSettings {
        port: taken.local_addr().unwrap().port(),
        ..web_settings(root.path())
    };
    let n = node(settings);
    let err = piha::web::run(n.ctx.clone()).await.unwrap_err();
    assert!(err.to_string().contains("cannot listen"), "{err}");
    let h = web_health(&n.ctx).unwrap();
    assert_eq!(h.state, RoleState::Failed);
}
