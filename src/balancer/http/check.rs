//! Active health checks: one task per backend target, spawned when a
//! backend appears and stopped when it goes (or starts draining away), each
//! sending `GET <path>` every `interval` on a fresh connection (as Pingora
//! does by default: a reused connection can hide a firewall or a dead
//! listener) and expecting `expect_status` within `timeout`. The result goes
//! to the pool, whose rise/fall rules decide.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::Empty;
use hyper::Request;
use hyper::body::Bytes;
use hyper::header;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::Handle;
use crate::balancer::health::CheckResult;
use crate::config::HttpHealthCheck;

/// Runs the checks of `handle`'s backends until `shutdown`.
pub async fn health_checks(handle: Arc<Handle>, shutdown: CancellationToken) {
    let mut changed = handle.targets_changed();
    let mut tasks = Tasks::default();
    loop {
        let targets = handle.pool.check_targets();
        tasks.0.retain(|addr, task| {
            let keep = targets.contains(addr);
            if !keep {
                task.abort();
            }
            keep
        });
        for addr in targets {
            tasks.0.entry(addr).or_insert_with(|| {
                let handle = handle.clone();
                tokio::spawn(check_loop(handle, addr))
            });
        }
        tokio::select! {
            r = changed.changed() => if r.is_err() { return },
            _ = shutdown.cancelled() => return,
        }
    }
}

/// The per-target tasks; aborted when dropped, however the loop ends.
#[derive(Default)]
struct Tasks(HashMap<SocketAddr, JoinHandle<()>>);

impl Drop for Tasks {
    fn drop(&mut self) {
        for task in self.0.values() {
            task.abort();
        }
    }
}

/// Checks at once (a new backend gets traffic as soon as `rise` checks pass),
/// then every interval; a slow check delays the next rather than piling up.
async fn check_loop(handle: Arc<Handle>, addr: SocketAddr) {
    let hc = handle.settings.health.clone();
    let mut tick = tokio::time::interval(hc.interval.max(Duration::from_millis(10)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let result = probe(addr, &hc).await;
        handle.on_check(addr, result);
    }
}

/// One check: connect, ask, read the status line; bounded by `timeout`.
pub async fn probe(addr: SocketAddr, hc: &HttpHealthCheck) -> CheckResult {
    let started = Instant::now();
    let outcome = tokio::time::timeout(hc.timeout, ask(addr, &hc.path)).await;
    let took = started.elapsed();
    let answered = matches!(outcome, Ok(Ok(_)));
    let (ok, detail) = match outcome {
        Err(_) => (
            false,
            format!("timeout after {} ms", hc.timeout.as_millis()),
        ),
        Ok(Err(why)) => (false, why),
        Ok(Ok(status)) if status == hc.expect_status => {
            (true, format!("{status} in {} ms", took.as_millis()))
        }
        Ok(Ok(status)) => (
            false,
            format!("status {status}, expected {}", hc.expect_status),
        ),
    };
    CheckResult {
        ok,
        answered,
        at: Instant::now(),
        detail,
    }
}

async fn ask(addr: SocketAddr, path: &str) -> Result<u16, String> {
    let stream = TcpStream::connect(addr).await.map_err(|e| match e.kind() {
        std::io::ErrorKind::ConnectionRefused => "connect refused".to_owned(),
        _ => format!("connect failed: {e}"),
    })?;
    let _ = stream.set_nodelay(true);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("handshake failed: {e}"))?;
    let req = Request::get(path)
        .header(header::HOST, addr.to_string())
        .header(header::USER_AGENT, "piha-check")
        .header(header::CONNECTION, "close")
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("bad check path {path:?}: {e}"))?;
    // The connection runs beside the request; it is aborted (and the socket
    // closed) when this check ends, answered or timed out.
    let driver = AbortOnDrop(tokio::spawn(conn));
    let resp = sender.send_request(req).await;
    drop(driver);
    match resp {
        Ok(resp) => Ok(resp.status().as_u16()),
        Err(e) if e.is_incomplete_message() || e.is_canceled() => {
            Err("closed before answering".to_owned())
        }
        Err(e) => Err(format!("request failed: {e}")),
    }
}

pub(crate) struct AbortOnDrop<T>(pub(crate) JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}
