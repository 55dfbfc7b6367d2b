//! Serves a folder with the web role's handler, outside of a cluster: for
//! `scripts/conformance-web`, benchmarks, and trying things by hand.
//!
//!   cargo run --example web_serve -- --root ./site
//!   cargo run --example web_serve -- --root ./site --listen 127.0.0.1:0 --tls-listen 127.0.0.1:0
//!
//! Prints one line per listener (`http http://127.0.0.1:8080`), then serves
//! until SIGINT or SIGTERM. HTTPS uses a self-signed certificate kept in
//! `--data-dir` (made on first start, as a node does).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use piha::config::{AccessLog, WebSettings};
use piha::web::{self, Limits, tls};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

struct Args {
    settings: WebSettings,
    listen: SocketAddr,
    tls_listen: Option<SocketAddr>,
    data_dir: PathBuf,
    hostname: String,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut settings = WebSettings {
        access_log: AccessLog::Off,
        ..WebSettings::default()
    };
    let mut root = None;
    let mut listen: SocketAddr = "127.0.0.1:8080".parse()?;
    let mut tls_listen = None;
    let mut data_dir = std::env::temp_dir().join("piha-web-serve");
    let mut hostname = "localhost".to_owned();
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--root" => root = Some(PathBuf::from(value()?)),
            "--listen" => listen = value()?.parse()?,
            "--tls-listen" => tls_listen = Some(value()?.parse()?),
            "--data-dir" => data_dir = value()?.into(),
            "--hostname" => hostname = value()?,
            "--follow-symlinks" => settings.follow_symlinks = true,
            "--access-log" => {
                settings.access_log = match value()?.as_str() {
                    "off" => AccessLog::Off,
                    "journal" => AccessLog::Journal,
                    path => AccessLog::File {
                        path: path.into(),
                        max_bytes: 10 << 20,
                    },
                }
            }
            "-h" | "--help" => {
                println!(
                    "web_serve --root DIR [--listen ADDR] [--tls-listen ADDR] [--data-dir DIR] \
                     [--hostname NAME] [--access-log off|journal|FILE] [--follow-symlinks]"
                );
                std::process::exit(0);
            }
            other => bail!("unknown argument {other}"),
        }
    }
    settings.root = root.context("--root is required")?;
    Ok(Args {
        settings,
        listen,
        tls_listen,
        data_dir,
        hostname,
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = parse_args()?;
    let app = web::router(&args.settings, &args.hostname);
    let stop = CancellationToken::new();
    let mut servers = tokio::task::JoinSet::new();

    let plain = TcpListener::bind(args.listen).await?;
    println!("http http://{}", plain.local_addr()?);
    servers.spawn(web::serve(
        plain,
        None,
        app.clone(),
        Limits::default(),
        stop.clone(),
    ));

    if let Some(addr) = args.tls_listen {
        let files = tls::ensure_self_signed(&args.data_dir, &args.hostname, addr.ip())?;
        let resolver = tls::ReloadingCert::load(files)?;
        let config = tls::server_config(Arc::new(resolver))?;
        let listener = TcpListener::bind(addr).await?;
        println!("https https://{}", listener.local_addr()?);
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        servers.spawn(web::serve(
            listener,
            Some(acceptor),
            app,
            Limits::default(),
            stop.clone(),
        ));
    }
    println!("ready");

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    stop.cancel();
    while servers.join_next().await.is_some() {}
    Ok(())
}
