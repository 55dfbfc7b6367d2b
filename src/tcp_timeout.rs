//! How long the peer of a TCP connection may stay silent before the
//! kernel gives the connection up: the pooler's `[postgres]
//! tcp_user_timeout` (connections to PostgreSQL) and
//! `client_tcp_user_timeout` (from clients), and the HTTP balancer's
//! `limits.tcp_user_timeout` (connections to web backends). PgBouncer has
//! such knobs (`tcp_keepalive`, `tcp_user_timeout`) at the kernel's
//! defaults unless set; on a cluster of Pis they matter, so piha sets them.
//!
//! A Pi that loses its power or its cable sends no FIN or RST. A request or
//! statement on the wire to it waits out 15 minutes of retransmissions, and
//! a connection idle in a pool (or waiting for a long query) never hears of
//! it at all. A client on such a node that left a transaction open keeps
//! its server connection and its locks for as long as the pooler waits for
//! its next message: without keepalive, for ever.
//!
//! Two kernel mechanisms together bound both:
//!
//! - TCP_USER_TIMEOUT bounds how long data we sent may stay
//!   unacknowledged (the peer's kernel acknowledges however busy its
//!   program is);
//! - keepalive probes, sent once nothing has come from the peer for half
//!   the timeout and nothing of ours is waiting for an acknowledgement,
//!   put a quiet connection under the same bound: with TCP_USER_TIMEOUT
//!   set, the kernel gives up on unanswered probes at the timeout, not
//!   after a count of them.
//!
//! The kernel also applies TCP_USER_TIMEOUT to a live peer that keeps its
//! receive window shut, a program that does not read: so the pooler's
//! clients, which may read a large result slowly, get a longer bound (60 s
//! built in) than servers and web backends (10 s), which read what is sent
//! to them unless their disk stalls. `tests/pooler_state.rs` holds a
//! client's reads for longer than the servers' bound and checks that it
//! gets every row. The TCP balancer's tunnels keep their plain keepalive:
//! a stream held back by its reader is normal there.

use std::time::Duration;

use tokio::net::TcpStream;

/// Gives the connection up once the peer has answered nothing for about
/// `timeout`. Zero leaves the kernel's defaults. A failure here only costs
/// the early notice, so it is not an error.
pub fn apply(tcp: &TcpStream, timeout: Duration) {
    if timeout.is_zero() {
        return;
    }
    let sock = socket2::SockRef::from(tcp);
    let (idle, interval) = keepalive_times(timeout);
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(idle)
        .with_interval(interval);
    let _ = sock.set_tcp_keepalive(&keepalive);
    let _ = sock.set_tcp_user_timeout(Some(timeout));
}

/// When the first keepalive probe goes out, and the gap to the next ones:
/// half of `timeout`, then a few more in the other half, so the kernel
/// has sent one unanswered when the timeout comes. A live idle connection
/// costs one small packet each way per half `timeout`. TCP_KEEPIDLE and
/// TCP_KEEPINTVL take whole seconds, at least one.
fn keepalive_times(timeout: Duration) -> (Duration, Duration) {
    let whole = |d: Duration| Duration::from_secs(d.as_secs().max(1));
    (whole(timeout / 2), whole(timeout / 10))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_probe_is_out_before_the_timeout() {
        assert_eq!(
            keepalive_times(Duration::from_secs(10)),
            (Duration::from_secs(5), Duration::from_secs(1))
        );
        assert_eq!(
            keepalive_times(Duration::from_secs(60)),
            (Duration::from_secs(30), Duration::from_secs(6))
        );
        // Below the kernel's one-second grain.
        assert_eq!(
            keepalive_times(Duration::from_millis(500)),
            (Duration::from_secs(1), Duration::from_secs(1))
        );
    }

    #[tokio::test]
    async fn the_kernel_is_given_the_timeout_and_the_probes() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let tcp = TcpStream::connect(addr).await.expect("connect");
        let sock = socket2::SockRef::from(&tcp);
        apply(&tcp, Duration::ZERO);
        assert!(!sock.keepalive().expect("SO_KEEPALIVE"));
        assert_eq!(sock.tcp_user_timeout().expect("TCP_USER_TIMEOUT"), None);

        apply(&tcp, Duration::from_secs(10));
        assert!(sock.keepalive().expect("SO_KEEPALIVE"));
        assert_eq!(
            sock.tcp_user_timeout().expect("TCP_USER_TIMEOUT"),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            sock.tcp_keepalive_time().expect("TCP_KEEPIDLE"),
            Duration::from_secs(5)
        );
        assert_eq!(
            sock.tcp_keepalive_interval().expect("TCP_KEEPINTVL"),
            Duration::from_secs(1)
        );
    }
}
