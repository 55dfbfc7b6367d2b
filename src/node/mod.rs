//! The node agent: loads the plan for this hostname, starts and supervises
//! every service, handles signals, reloads and systemd. Each file is one
//! piece: `agent` the life cycle, `supervisor` restarts, `context` what
//! services share, `reload` the cluster file re-read, `notify` systemd,
//! `peer_api` calls to another node's admin API.

pub mod agent;
pub mod atomic_file;
pub mod backoff;
pub mod coarse_clock;
pub mod context;
pub mod events;
pub mod health;
pub mod identity;
pub mod notify;
pub mod peer_api;
pub mod program;
pub mod reload;
pub mod supervisor;
pub mod system_metrics;
pub mod unconfigured;

use tracing_subscriber::EnvFilter;

/// `piha run`: logs to stderr (journald under systemd), a multi-threaded
/// runtime with two workers (a Pi has four cores, and the roles to come share
/// them), and the store closed after everything else has stopped.
pub fn run(args: crate::cli::RunArgs) -> anyhow::Result<()> {
    let filter = EnvFilter::try_from_env("PIHA_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        // Colour codes only for a terminal: under systemd they would end up
        // in the journal as escape sequences.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
    raise_open_file_limit();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("piha")
        .enable_all()
        .build()?;
    let worker = runtime.block_on(agent::run(args))?;
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    if let Some(worker) = worker {
        agent::close_store(worker);
    }
    Ok(())
}

/// A balancer holds two sockets per proxied connection; Linux's default soft
/// limit of 1024 would cap it near 500 clients (or a slowloris at 1000).
/// Raise the soft limit to the hard one, as HAProxy does; systemd's unit sets
/// the hard limit (LimitNOFILE).
fn raise_open_file_limit() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        limit.current = limit.maximum;
        if let Err(e) = setrlimit(Resource::Nofile, limit) {
            tracing::warn!("could not raise the open file limit: {e}");
        }
    }
}
