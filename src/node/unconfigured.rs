//! Before a node can start it needs a cluster file that parses and an entry
//! (or pattern) for its hostname. When either is missing, that is the owner's
//! to fix on the SD card, and a restart loop would hide it: piha instead
//! serves a page on the admin port that says what is wrong
//! (`status::unconfigured`), checks again every few seconds, and goes on to
//! start the node as soon as the check passes. Other errors (no hostname at
//! all, a store that cannot open) still end `piha run` with a message.

use std::net::{Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::{identity, notify};
use crate::cli::RunArgs;
use crate::config::{self, ConfigError};
use crate::status::unconfigured::Problem;

/// How often the cluster file and the hostname are looked at again.
const RECHECK: Duration = Duration::from_secs(3);
/// The admin port when the file is too broken to say which one it uses.
const FALLBACK_ADMIN_PORT: u16 = 9000;

/// What `wait_for_setup` ended with.
pub enum Setup {
    /// The node can start.
    Ready,
    /// SIGTERM or SIGINT came while waiting: stop without starting.
    Stopped,
}

/// Returns `Ready` at once when the node can start; otherwise serves the
/// problem page until it can, or until a stop signal.
pub async fn wait_for_setup(args: &RunArgs) -> anyhow::Result<Setup> {
    let Some((first, port)) = check(args)? else {
        return Ok(Setup::Ready);
    };
    tracing::error!(
        "this node cannot start: {}; serving a page that says so on port {port}",
        first.detail
    );
    let (tx, rx) = watch::channel(Arc::new(first));
    let shutdown = CancellationToken::new();
    let listener = bind(port).await?;
    let server = tokio::spawn(crate::status::server::serve(
        listener,
        crate::status::unconfigured::router(rx),
        shutdown.clone(),
    ));
    notify::ready("not set up: see the status page");
    tokio::spawn(notify::watchdog(shutdown.clone()));
    let outcome = recheck_until_ready(args, &tx).await;
    shutdown.cancel();
    let _ = server.await;
    outcome
}

async fn recheck_until_ready(
    args: &RunArgs,
    tx: &watch::Sender<Arc<Problem>>,
) -> anyhow::Result<Setup> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(RECHECK) => {}
            _ = term.recv() => return Ok(Setup::Stopped),
            _ = int.recv() => return Ok(Setup::Stopped),
        }
        match check(args)? {
            None => {
                tracing::info!("the cluster file now has this node: starting");
                return Ok(Setup::Ready);
            }
            Some((problem, _)) => {
                tx.send_if_modified(|old| {
                    let changed = **old != problem;
                    if changed {
                        *old = Arc::new(problem);
                    }
                    changed
                });
            }
        }
    }
}

/// Dual-stack when the kernel has IPv6 (mDNS gives phones an IPv6
/// link-local address as often as an IPv4 one), IPv4 otherwise.
async fn bind(port: u16) -> anyhow::Result<TcpListener> {
    let any6 = SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), port);
    match TcpListener::bind(any6).await {
        Ok(l) => Ok(l),
        Err(_) => TcpListener::bind(SocketAddr::from(([0, 0, 0, 0], port)))
            .await
            .map_err(|e| anyhow::anyhow!("cannot serve the set-up page on tcp port {port}: {e}")),
    }
}

/// `None` when the node can start; otherwise the problem and the admin port
/// to show it on. Errors that are not the owner's set-up (no hostname) are
/// returned as errors.
fn check(args: &RunArgs) -> anyhow::Result<Option<(Problem, u16)>> {
    let hostname = match &args.hostname {
        Some(h) => h.clone(),
        None => identity::system_hostname()?,
    };
    let path = match config::find_config(args.config.as_deref()) {
        Ok(p) => p,
        Err(e) => return Ok(Some((problem(&hostname, None, &e), FALLBACK_ADMIN_PORT))),
    };
    let shown = Some(path.display().to_string());
    let config = match config::load(&path) {
        Ok(c) => c,
        Err(e) => return Ok(Some((problem(&hostname, shown, &e), FALLBACK_ADMIN_PORT))),
    };
    match config.plan_for(&hostname) {
        Ok(_) => Ok(None),
        Err(e) => Ok(Some((
            problem(&hostname, shown, &e),
            config.defaults.admin_port,
        ))),
    }
}

fn problem(hostname: &str, config_path: Option<String>, error: &ConfigError) -> Problem {
    let fix = match error {
        ConfigError::UnknownHost { .. } => {
            "Its hostname matches no node and no pattern in the cluster file. Either give the \
             card a hostname the file lists (write hostname=pi-1, say, into piha/firstboot.txt \
             on the SD card's boot partition, then restart the Pi), or add a [[node]] entry \
             with this hostname to piha/cluster.toml."
        }
        ConfigError::NotFound { .. } => {
            "There is no cluster file. Copy cluster.toml into the piha folder of the SD card's \
             boot partition."
        }
        _ => {
            "The cluster file has mistakes (listed below with their line numbers). Fix them in \
             piha/cluster.toml on the SD card's boot partition; `piha check` prints the same list."
        }
    };
    Problem {
        hostname: hostname.to_owned(),
        config_path,
        detail: error.to_string(),
        fix: fix.to_owned(),
    }
}
