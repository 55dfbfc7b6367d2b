//! After a 101: the client's connection and the backend's become one byte
//! pipe (WebSocket and friends). Copies both ways with fixed 16 KiB buffers,
//! holds the backend lease for the tunnel's life (it counts against maxconn
//! and keeps a removed backend draining), and ends on either side closing,
//! `idle_timeout` with no byte either way, or the balancer stopping.

use std::sync::Arc;
use std::time::Duration;

use hyper::body::Bytes;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::conn::ConnState;
use crate::balancer::shared::Lease;

const BUF: usize = 16 * 1024;

/// `backend`: the backend's connection, and what it sent right after its
/// 101 (already the new protocol's bytes, for the client).
pub async fn tunnel(
    client: OnUpgrade,
    backend: (TcpStream, Bytes),
    lease: Lease,
    conn: Arc<ConnState>,
    idle: Duration,
    shutdown: CancellationToken,
) {
    let client = match client.await {
        Ok(client) => client,
        Err(e) => {
            tracing::debug!("upgrade to {} did not complete: {e}", lease.addr);
            return;
        }
    };
    let (mut backend, early) = backend;
    let mut client = TokioIo::new(client);
    if !early.is_empty() {
        let sent = tokio::time::timeout(idle, client.write_all(&early)).await;
        if !matches!(sent, Ok(Ok(()))) {
            tracing::debug!("tunnel to {}: the client took nothing", lease.addr);
            return;
        }
    }
    let copy = tokio::io::copy_bidirectional_with_sizes(&mut client, &mut backend, BUF, BUF);
    tokio::pin!(copy);
    // Every byte crosses the client connection, whose IO stamps activity.
    loop {
        let quiet_until = tokio::time::Instant::from_std(conn.last_activity() + idle);
        tokio::select! {
            done = &mut copy => {
                if let Err(e) = done {
                    tracing::debug!("tunnel to {} ended: {e}", lease.addr);
                }
                break;
            }
            _ = tokio::time::sleep_until(quiet_until) => {
                if conn.last_activity() + idle <= std::time::Instant::now() {
                    tracing::debug!("tunnel to {} idle for {idle:?}; closing", lease.addr);
                    break;
                }
            }
            _ = shutdown.cancelled() => break,
        }
    }
    drop(lease);
}
