//! Aborting TCP connections from outside the process that owns them,
//! through the kernel's sock_diag `SOCK_DESTROY` (what `ss -K` uses): the
//! kernel sends the peer an RST and wakes the owner with ECONNABORTED.
//!
//! Two callers, both about a peer that will never answer on a connection:
//! - VRRP, before it removes a VIP (`reset_on_local_address`): once the
//!   address is gone, the kernel can no longer route anything from it, so
//!   a connection a client made to the old master goes silent and the
//!   client hangs until its own timeout (5 s hangs in the failure drill
//!   each time a returning master took the VIP back). Aborted while the
//!   address is still there, every such client gets an RST and retries
//!   against the new master at once.
//! - The storage role, for the Gluster client's connections to the brick
//!   of a node membership reports down (`gluster::fence`).
//!
//! Doing it in the kernel reaches every process's sockets (the balancer's,
//! the pooler's, Gluster's own client) without their code knowing.
//!
//! The kernel needs `CONFIG_INET_DIAG_DESTROY` (Debian's kernels have it)
//! and the caller CAP_NET_ADMIN; without either the caller logs it and
//! things go on as before.

mod wire;

use std::io;
use std::net::IpAddr;
use std::time::{Duration, Instant};

pub use wire::{SocketId, TIMER_RETRANSMIT, TcpSocket, state};

use nix::sys::socket::{setsockopt, sockopt::ReceiveTimeout};
use nix::sys::time::TimeVal;
use rtnetlink::sys::{Socket, SocketAddr, protocols::NETLINK_SOCK_DIAG};

use wire::{AF_INET, AF_INET6, Answer};

/// A whole reset may take this long: VRRP calls it on its own thread
/// between deciding to step down and removing the VIP, so it must not
/// stall it.
const DEADLINE: Duration = Duration::from_millis(500);
/// One netlink receive waits at most this long (the kernel answers at once;
/// this only bounds a kernel that never does).
const RECV_TIMEOUT: Duration = Duration::from_millis(200);
/// Sockets reset per call at most: a Pi holds a few thousand connections,
/// and the bound keeps a pathological dump from taking the VRRP thread.
const MAX_SOCKETS: usize = 65_536;
/// Large enough for one netlink dump batch (the kernel fills up to 32 KiB).
const RECV_BUFFER: usize = 64 * 1024;

/// What one reset did, for the log.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Resets {
    /// Connections the kernel aborted (each peer got an RST).
    pub reset: Vec<TcpSocket>,
    /// Connections that closed by themselves between the dump and the reset.
    pub gone: usize,
}

/// Aborts every TCP connection whose local address is `vip`, except
/// listeners (the balancer's and the pooler's listeners on the VIP stay
/// bound for when it comes back) and sockets already in TIME_WAIT or a
/// half-open handshake, which carry no client's request.
pub fn reset_on_local_address(vip: IpAddr) -> io::Result<Resets> {
    reset_where(live_states(), |s| same_address(s.id.local(), vip))
}

/// Aborts every TCP socket in one of `states` (bits `1 << state`) that
/// `wanted` picks, within `DEADLINE` and at most `MAX_SOCKETS`. Blocking:
/// async callers run it on a blocking thread.
pub fn reset_where(states: u32, wanted: impl Fn(&TcpSocket) -> bool) -> io::Result<Resets> {
    let deadline = Instant::now() + DEADLINE;
    let mut diag = Diag::open()?;
    let mut found = Vec::new();
    for family in [AF_INET, AF_INET6] {
        diag.dump(family, states, &wanted, &mut found, deadline)?;
    }
    let mut out = Resets::default();
    for socket in found {
        if Instant::now() >= deadline {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "resetting connections: stopped after {DEADLINE:?}, {} reset",
                    out.reset.len()
                ),
            ));
        }
        match diag.destroy(&socket.id, deadline)? {
            true => out.reset.push(socket),
            false => out.gone += 1,
        }
    }
    Ok(out)
}

/// A dual-stack socket sees an IPv4 peer through an IPv4-mapped address.
fn same_address(local: IpAddr, vip: IpAddr) -> bool {
    local.to_canonical() == vip.to_canonical()
}

/// The states of a connection that may be carrying a request, as the bits
/// a dump asks for.
pub fn live_states() -> u32 {
    [
        state::ESTABLISHED,
        state::SYN_SENT,
        state::FIN_WAIT1,
        state::FIN_WAIT2,
        state::CLOSE_WAIT,
        state::LAST_ACK,
        state::CLOSING,
    ]
    .iter()
    .fold(0, |bits, s| bits | 1 << s)
}

/// A blocking sock_diag netlink socket with a receive timeout. Blocking on
/// purpose: the caller must not remove the VIP before the resets are sent.
struct Diag {
    socket: Socket,
    buf: Vec<u8>,
    seq: u32,
}

impl Diag {
    fn open() -> io::Result<Diag> {
        let mut socket = Socket::new(NETLINK_SOCK_DIAG)
            .map_err(|e| context(e, "opening a sock_diag netlink socket"))?;
        socket
            .bind_auto()
            .map_err(|e| context(e, "binding sock_diag"))?;
        socket
            .connect(&SocketAddr::new(0, 0))
            .map_err(|e| context(e, "connecting sock_diag"))?;
        let timeout = TimeVal::new(0, RECV_TIMEOUT.as_micros() as _);
        setsockopt(&socket, ReceiveTimeout, &timeout).map_err(io::Error::from)?;
        Ok(Diag {
            socket,
            buf: vec![0; RECV_BUFFER],
            seq: 0,
        })
    }

    /// Appends every TCP socket of `family` in `states` that `wanted`
    /// picks to `out`.
    fn dump(
        &mut self,
        family: u8,
        states: u32,
        wanted: &impl Fn(&TcpSocket) -> bool,
        out: &mut Vec<TcpSocket>,
        deadline: Instant,
    ) -> io::Result<()> {
        let seq = self.next_seq();
        self.send(&wire::dump_request(seq, family, states))?;
        loop {
            for (at, answer) in self.receive(deadline)? {
                if at != seq {
                    continue;
                }
                match answer {
                    // Past the cap the dump is still read to its end, so the
                    // next request on this socket does not meet its tail.
                    Answer::Socket(socket) if out.len() < MAX_SOCKETS && wanted(&socket) => {
                        out.push(socket);
                    }
                    Answer::Done => return Ok(()),
                    Answer::Status(errno) if errno != 0 => {
                        let e = io::Error::from_raw_os_error(errno);
                        return Err(context(e, "listing TCP sockets"));
                    }
                    _ => {}
                }
            }
        }
    }

    /// Aborts one socket; false when it was already gone.
    fn destroy(&mut self, id: &SocketId, deadline: Instant) -> io::Result<bool> {
        let seq = self.next_seq();
        self.send(&wire::destroy_request(seq, id))?;
        loop {
            for (at, answer) in self.receive(deadline)? {
                let Answer::Status(errno) = answer else {
                    continue;
                };
                if at != seq {
                    continue;
                }
                return match errno {
                    0 => Ok(true),
                    libc::ENOENT => Ok(false),
                    libc::EOPNOTSUPP => Err(io::Error::new(
                        io::ErrorKind::Unsupported,
                        "the kernel cannot reset sockets (built without \
                         CONFIG_INET_DIAG_DESTROY)",
                    )),
                    _ => Err(context(
                        io::Error::from_raw_os_error(errno),
                        "resetting a connection",
                    )),
                };
            }
        }
    }

    /// The sequence number of the next request, to match its answers.
    fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }

    fn send(&mut self, request: &[u8]) -> io::Result<()> {
        self.socket
            .send(request, 0)
            .map(|_| ())
            .map_err(|e| context(e, "sending to sock_diag"))
    }

    /// One datagram's messages. One that does not parse is an error, not a
    /// skip: the caller then goes on without the resets.
    fn receive(&mut self, deadline: Instant) -> io::Result<Vec<(u32, Answer)>> {
        if Instant::now() >= deadline {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("sock_diag gave no complete answer within {DEADLINE:?}"),
            ));
        }
        let n = self
            .socket
            .recv(&mut &mut self.buf[..], 0)
            .map_err(|e| context(e, "receiving from sock_diag"))?;
        wire::answers(&self.buf[..n.min(self.buf.len())])
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }
}

fn context(e: io::Error, what: &str) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    #[test]
    fn a_mapped_address_is_the_vip() {
        let vip = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10));
        let mapped = IpAddr::V6(Ipv4Addr::new(192, 0, 2, 10).to_ipv6_mapped());
        assert!(same_address(mapped, vip));
        assert!(same_address(vip, vip));
        assert!(!same_address(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 11)), vip));
        assert!(!same_address(IpAddr::V6(Ipv6Addr::LOCALHOST), vip));
    }

    #[test]
    fn listeners_and_time_wait_are_left_alone() {
        let states = live_states();
        let has = |s: u32| states & (1 << s) != 0;
        // include/net/tcp_states.h
        let (syn_recv, time_wait, listen) = (3, 6, 10);
        assert!(!has(listen));
        assert!(!has(time_wait));
        assert!(!has(syn_recv));
        assert!(has(state::ESTABLISHED) && has(state::CLOSE_WAIT));
    }
}
