//! After a 101: the client's connection and the backend's become one byte
//! pipe (WebSocket and friends). Copies both ways with fixed 16 KiB buffers,
//! holds the backend lease for the tunnel's life (it counts against maxconn
//! and keeps a removed backend draining), and ends on either side closing,
//! `idle_timeout` with no byte either way, or the balancer stopping.

use std::sync::Arc;
use std::time::Duration;

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio_util::sync::CancellationToken;

use super::conn::ConnState;
use crate::balancer::shared::Lease;

const BUF: usize = 16 * 1024;

pub async fn tunnel(
    client: OnUpgrade,
    backend: OnUpgrade,
    lease: Lease,
    conn: Arc<ConnState>,
    idle: Duration,
    shutdown: CancellationToken,
) {
    let (client, backend) = match tokio::try_join!(client, backend) {
        Ok(pair) => pair,
        Err(e) => {
            tracing::debug!("upgrade to {} did not complete: {e}", lease.addr);
            return;
        }
    };
    let (mut client, mut backend) = (TokioIo::new(client), TokioIo::new(backend));
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
