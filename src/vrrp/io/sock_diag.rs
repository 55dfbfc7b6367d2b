//! Resetting the TCP connections on a VIP this node is about to give up,
//! through the kernel's sock_diag `SOCK_DESTROY` (what `ss -K` uses).
//!
//! Why: once the address is gone from the interface, the kernel can no
//! longer route anything from it (a source address that is not local fails
//! the route lookup), so a connection a client made to the old master goes
//! silent. Its answer never leaves, no RST ever comes, and the client hangs
//! until its own timeout; the failure drill saw 5 s hangs each time a
//! returning master took the VIP back. Aborting those connections while the
//! address is still there sends every such client an RST at once, so it
//! retries against the new master right away. Doing it in the kernel
//! reaches every process's sockets (the balancer's, the pooler's, a notes
//! app connected to the VIP) without the request path knowing about VRRP.
//!
//! The kernel needs `CONFIG_INET_DIAG_DESTROY` (Debian's kernels have it)
//! and the caller CAP_NET_ADMIN; without either the caller logs it and the
//! VIP moves as before.

use std::io;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use netlink_packet_sock_diag::constants::{AF_INET, AF_INET6, IPPROTO_TCP};
use netlink_packet_sock_diag::inet::{ExtensionFlags, InetRequest, SocketId, StateFlags};
use netlink_packet_sock_diag::{SockDiagDestroy, SockDiagMessage};
use nix::sys::socket::{setsockopt, sockopt::ReceiveTimeout};
use nix::sys::time::TimeVal;
use rtnetlink::packet_core::{
    NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST, NetlinkDeserializable, NetlinkHeader, NetlinkMessage,
    NetlinkPayload, NetlinkSerializable,
};
use rtnetlink::sys::{Socket, SocketAddr, protocols::NETLINK_SOCK_DIAG};

/// The whole reset may take this long: it runs on the VRRP thread between
/// deciding to step down and removing the VIP, so it must not stall it.
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
    pub reset: usize,
    /// Connections that closed by themselves between the dump and the reset.
    pub gone: usize,
}

/// Aborts every TCP connection whose local address is `vip`, except
/// listeners (the balancer's and the pooler's listeners on the VIP stay
/// bound for when it comes back) and sockets already in TIME_WAIT or a
/// half-open handshake, which carry no client's request.
pub fn reset_connections(vip: IpAddr) -> io::Result<Resets> {
    let deadline = Instant::now() + DEADLINE;
    let mut diag = Diag::open()?;
    let mut found = Vec::new();
    for family in [AF_INET, AF_INET6] {
        diag.dump(family, vip, &mut found, deadline)?;
    }
    let mut out = Resets::default();
    for id in found.into_iter().take(MAX_SOCKETS) {
        if Instant::now() >= deadline {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("resetting connections on {vip}: stopped after {DEADLINE:?}"),
            ));
        }
        match diag.destroy(id, deadline)? {
            true => out.reset += 1,
            false => out.gone += 1,
        }
    }
    Ok(out)
}

/// A dual-stack socket sees an IPv4 peer through an IPv4-mapped address.
fn same_address(local: IpAddr, vip: IpAddr) -> bool {
    local.to_canonical() == vip.to_canonical()
}

/// The states of a connection that may be carrying a request.
fn live_states() -> StateFlags {
    StateFlags::ESTABLISHED
        | StateFlags::SYN_SENT
        | StateFlags::FIN_WAIT1
        | StateFlags::FIN_WAIT2
        | StateFlags::CLOSE_WAIT
        | StateFlags::LAST_ACK
        | StateFlags::CLOSING
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

    /// Appends every live TCP socket of `family` whose local address is
    /// `vip` to `out`.
    fn dump(
        &mut self,
        family: u8,
        vip: IpAddr,
        out: &mut Vec<SocketId>,
        deadline: Instant,
    ) -> io::Result<()> {
        let socket_id = if family == AF_INET {
            SocketId::new_v4()
        } else {
            SocketId::new_v6()
        };
        let request = SockDiagMessage::InetRequest(InetRequest {
            family,
            protocol: IPPROTO_TCP,
            extensions: ExtensionFlags::empty(),
            states: live_states(),
            socket_id,
        });
        let seq = self.send(request, NLM_F_REQUEST | NLM_F_DUMP)?;
        loop {
            for message in self.receive::<SockDiagMessage>(deadline)? {
                if message.header.sequence_number != seq {
                    continue;
                }
                match message.payload {
                    // Past the cap the dump is still read to its end, so the
                    // next request on this socket does not meet its tail.
                    NetlinkPayload::InnerMessage(SockDiagMessage::InetResponse(r))
                        if out.len() < MAX_SOCKETS
                            && same_address(r.header.socket_id.source_address, vip) =>
                    {
                        out.push(r.header.socket_id);
                    }
                    NetlinkPayload::Done(_) => return Ok(()),
                    NetlinkPayload::Error(e) => {
                        return Err(context(e.to_io(), "listing TCP sockets"));
                    }
                    _ => {}
                }
            }
        }
    }

    /// Aborts one socket; false when it was already gone.
    fn destroy(&mut self, id: SocketId, deadline: Instant) -> io::Result<bool> {
        let family = match id.source_address {
            IpAddr::V4(_) => AF_INET,
            IpAddr::V6(_) => AF_INET6,
        };
        let request = SockDiagDestroy::new(SockDiagMessage::InetRequest(InetRequest {
            family,
            protocol: IPPROTO_TCP,
            extensions: ExtensionFlags::empty(),
            states: StateFlags::all(),
            socket_id: id,
        }));
        let seq = self.send(request, NLM_F_REQUEST | NLM_F_ACK)?;
        loop {
            for message in self.receive::<SockDiagMessage>(deadline)? {
                if message.header.sequence_number != seq {
                    continue;
                }
                if let NetlinkPayload::Error(e) = message.payload {
                    return match e.code {
                        None => Ok(true),
                        Some(code) if -code.get() == libc::ENOENT => Ok(false),
                        Some(code) if -code.get() == libc::EOPNOTSUPP => Err(io::Error::new(
                            io::ErrorKind::Unsupported,
                            "the kernel cannot reset sockets (built without \
                             CONFIG_INET_DIAG_DESTROY): clients of the VIP wait \
                             for their own timeouts instead",
                        )),
                        Some(_) => Err(context(e.to_io(), "resetting a connection")),
                    };
                }
            }
        }
    }

    fn send<M: NetlinkSerializable>(&mut self, inner: M, flags: u16) -> io::Result<u32> {
        self.seq = self.seq.wrapping_add(1);
        let mut header = NetlinkHeader::default();
        header.flags = flags;
        header.sequence_number = self.seq;
        let mut message = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(inner));
        message.finalize();
        let mut bytes = vec![0; message.buffer_len()];
        message.serialize(&mut bytes);
        self.socket
            .send(&bytes, 0)
            .map_err(|e| context(e, "sending to sock_diag"))?;
        Ok(self.seq)
    }

    /// One datagram's messages. A datagram the crate cannot parse is an
    /// error, not a skip: the caller then leaves the VIP as before.
    fn receive<M: NetlinkDeserializable>(
        &mut self,
        deadline: Instant,
    ) -> io::Result<Vec<NetlinkMessage<M>>>
    where
        M::Error: std::fmt::Display,
    {
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
        let mut out = Vec::new();
        let mut at = 0;
        while at < n {
            let message = NetlinkMessage::<M>::deserialize(&self.buf[at..n]).map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("a sock_diag answer did not parse: {e}"),
                )
            })?;
            let len = message.header.length as usize;
            if len == 0 {
                break;
            }
            at += align4(len);
            out.push(message);
        }
        Ok(out)
    }
}

/// Netlink messages sit on 4-byte boundaries.
fn align4(len: usize) -> usize {
    (len + 3) & !3
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
        assert!(!states.contains(StateFlags::LISTEN));
        assert!(!states.contains(StateFlags::TIME_WAIT));
        assert!(!states.contains(StateFlags::SYN_RECV));
        assert!(states.contains(StateFlags::ESTABLISHED | StateFlags::CLOSE_WAIT));
    }
}
