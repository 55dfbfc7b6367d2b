//! One client connection: a backend slot from the pool (queued while every
//! backend is at maxconn), a connect with one retry elsewhere, then the
//! tunnel. The lease is held until the tunnel ends, so leastconn and maxconn
//! see connections, not bursts.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use socket2::{SockRef, TcpKeepalive};
use tokio::net::TcpStream;

use super::handle::{Handle, bump};
use super::serve::EventSink;
use super::tunnel::{self, End, Meters};
use crate::balancer::shared::Lease;

/// Connect attempts per client connection: the first backend and one other.
/// A retry is safe because nothing has been sent to a backend yet.
const ATTEMPTS: usize = 2;

/// Keepalive probes find peers that vanished without a FIN (a Pi unplugged)
/// on tunnels that may sit idle for long, well before a long idle timeout.
const KEEPALIVE_TIME: Duration = Duration::from_secs(60);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEPALIVE_RETRIES: u32 = 3;

pub(super) async fn serve_client(handle: Arc<Handle>, client: TcpStream, events: EventSink) {
    let _active = handle.open_connection();
    let peer_ip = match client.peer_addr() {
        Ok(peer) => peer.ip(),
        // Reset between accept and here: nothing to serve.
        Err(_) => return,
    };
    tune(&client);
    let Some((lease, backend)) = connect_backend(&handle, peer_ip, &events).await else {
        return; // dropping `client` closes it
    };
    tune(&backend);
    let counters = handle.backend(lease.addr);
    bump(&counters.connections);
    let end = tunnel::pump(
        client,
        backend,
        Meters {
            service: &handle.counters.bytes_in,
            backend: &counters.bytes_in,
        },
        Meters {
            service: &handle.counters.bytes_out,
            backend: &counters.bytes_out,
        },
        handle.settings.limits.idle_timeout,
    )
    .await;
    match end {
        End::Closed => {}
        End::Idle => bump(&handle.counters.idle_timeouts),
        End::Error(e) => {
            bump(&handle.counters.aborted);
            tracing::debug!(service = %handle.name, backend = %lease.addr, "tunnel aborted: {e}");
        }
    }
    drop(lease);
}

/// A lease and a connected backend, or `None` when the client should be
/// closed (every refusal and failure is already counted).
async fn connect_backend(
    handle: &Handle,
    client: IpAddr,
    events: &EventSink,
) -> Option<(Lease, TcpStream)> {
    let limits = &handle.settings.limits;
    let mut exclude = None;
    for attempt in 0..ATTEMPTS {
        let lease = match handle
            .pool
            .acquire(client, exclude, limits.queue_timeout)
            .await
        {
            Ok(lease) => lease,
            Err(why) => {
                handle.count_refusal(why);
                return None;
            }
        };
        if attempt > 0 {
            bump(&handle.counters.retries);
        }
        match connect(lease.addr, limits.connect_timeout).await {
            Ok(stream) => return Some((lease, stream)),
            Err(why) => {
                strike(handle, lease.addr, &why, events);
                exclude = Some(lease.addr);
            }
        }
    }
    None
}

/// Counts a failed connect and takes it as a passive health strike.
fn strike(handle: &Handle, addr: SocketAddr, why: &str, events: &EventSink) {
    bump(&handle.counters.connect_errors);
    bump(&handle.backend(addr).connect_errors);
    tracing::debug!(service = %handle.name, backend = %addr, "connect failed: {why}");
    for event in handle.pool.on_strike(addr, why) {
        events(handle, &event);
    }
}

async fn connect(addr: SocketAddr, timeout: Duration) -> Result<TcpStream, String> {
    match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(e)) => Err(connect_error(&e)),
        Err(_) => Err(format!("connect timeout after {} ms", timeout.as_millis())),
    }
}

fn connect_error(e: &io::Error) -> String {
    format!("connect: {e}")
}

/// No Nagle delay (request/response protocols such as Redis and Postgres
/// suffer from it), and keepalive probes. Failures only cost performance.
fn tune(stream: &TcpStream) {
    let _ = stream.set_nodelay(true);
    let keepalive = TcpKeepalive::new()
        .with_time(KEEPALIVE_TIME)
        .with_interval(KEEPALIVE_INTERVAL)
        .with_retries(KEEPALIVE_RETRIES);
    let _ = SockRef::from(stream).set_tcp_keepalive(&keepalive);
}
