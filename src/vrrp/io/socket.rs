//! Raw IP protocol 112 sockets: one per VRRP interface and address family,
//! sending and receiving adverts. Bytes only; the codec and the state
//! machine judge what arrives.
//!
//! The socket is never `bind`-ed to the node address: Linux delivers a
//! datagram to a raw IPv4 socket only if its destination equals the bound
//! address, so a bound socket would never see 224.0.0.18. The source address
//! is pinned per datagram with IP_PKTINFO / IPV6_PKTINFO instead, which also
//! picks the outgoing interface.

use std::io::{self, IoSlice, IoSliceMut};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsFd, AsRawFd};

use nix::sys::socket::{
    self as nixsock, ControlMessage, ControlMessageOwned, MsgFlags, SockaddrIn, SockaddrIn6,
    SockaddrStorage, sockopt,
};
use socket2::{Domain, InterfaceIndexOrAddress, Protocol, Socket, Type};
use tokio::io::unix::AsyncFd;

use super::sys::{self, context};

/// IANA protocol number of VRRP.
pub const IPPROTO_VRRP: i32 = 112;
/// Where IPv4 adverts go in multicast mode (RFC 5798 §5.1.1.2).
pub const GROUP_V4: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 18);
/// Where IPv6 adverts go in multicast mode (RFC 5798 §5.1.2.2).
pub const GROUP_V6: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x12);

/// Receivers must drop adverts with any other TTL / hop limit, so a
/// packet cannot have come from off the link (RFC 5798 §5.1.1.3).
const TTL: u32 = 255;
/// DSCP CS6 "internetwork control", as keepalived and FRR send: switches
/// that honour it queue adverts ahead of bulk traffic.
const TOS_INTERNETWORK_CONTROL: u32 = 0xc0;
const IPV4_HEADER_MIN: usize = 20;

/// What one advert socket is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocketConfig {
    pub ifindex: u32,
    pub ifname: String,
    /// Source address of adverts: the interface's primary IPv4 address, or
    /// its IPv6 link-local address (RFC 5798 §5.1.2.1).
    pub local: IpAddr,
    /// Empty = multicast to 224.0.0.18 / ff02::12.
    pub unicast_peers: Vec<IpAddr>,
}

/// One received datagram, as the kernel described it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Datagram {
    /// Bytes written to the caller's buffer.
    pub len: usize,
    /// IPv4 raw sockets hand over the IP header too; IPv6 ones do not.
    pub ip_header_included: bool,
    pub src: IpAddr,
    /// IPv6: from IPV6_PKTINFO. IPv4: copied from the header.
    pub dst: Option<IpAddr>,
    /// IPv6: from the IPV6_HOPLIMIT cmsg. IPv4: the header's TTL.
    pub hop_limit: Option<u8>,
}

/// A raw VRRP socket bound to one interface. Must be created inside a
/// tokio runtime.
#[derive(Debug)]
pub struct AdvertSocket {
    fd: AsyncFd<Socket>,
    ifindex: u32,
    local: IpAddr,
    destinations: Vec<IpAddr>,
}

impl AdvertSocket {
    pub fn open(cfg: &SocketConfig) -> io::Result<AdvertSocket> {
        check_families(cfg)?;
        let socket = match cfg.local {
            IpAddr::V4(_) => open_v4(cfg)?,
            IpAddr::V6(_) => open_v6(cfg)?,
        };
        socket
            .set_nonblocking(true)
            .map_err(|e| context(e, "making the VRRP socket non-blocking"))?;
        let fd = register(socket)?;
        Ok(AdvertSocket {
            fd,
            ifindex: cfg.ifindex,
            local: cfg.local,
            destinations: destinations(cfg),
        })
    }

    /// The multicast group, or the unicast peers.
    pub fn destinations(&self) -> Vec<IpAddr> {
        self.destinations.clone()
    }

    /// Waits for the next datagram. A datagram longer than `buf` is cut
    /// to fit (the rest is lost), so pass at least the interface MTU.
    pub async fn recv(&self, buf: &mut [u8]) -> io::Result<Datagram> {
        loop {
            let mut guard = self.fd.readable().await?;
            let result = guard.try_io(|inner| match self.local {
                IpAddr::V4(_) => recv_v4(inner.get_ref(), buf),
                IpAddr::V6(_) => recv_v6(inner.get_ref(), buf),
            });
            if let Ok(result) = result {
                return result;
            }
        }
    }

    pub async fn send_to(&self, payload: &[u8], dst: IpAddr) -> io::Result<()> {
        loop {
            let mut guard = self.fd.writable().await?;
            let result = guard.try_io(|inner| self.send_once(inner.get_ref(), payload, dst));
            if let Ok(result) = result {
                return result.map_err(|e| context(e, format!("sending an advert to {dst}")));
            }
        }
    }

    fn send_once(&self, socket: &Socket, payload: &[u8], dst: IpAddr) -> io::Result<()> {
        let sent = match (self.local, dst) {
            (IpAddr::V4(local), IpAddr::V4(dst)) => {
                send_v4(socket, payload, self.ifindex, local, dst)?
            }
            (IpAddr::V6(local), IpAddr::V6(dst)) => {
                send_v6(socket, payload, self.ifindex, local, dst)?
            }
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "address family mismatch",
                ));
            }
        };
        if sent == payload.len() {
            Ok(())
        } else {
            Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "advert sent only in part",
            ))
        }
    }
}

/// AsyncFd panics outside a runtime; the caller gets an error instead.
fn register(socket: Socket) -> io::Result<AsyncFd<Socket>> {
    tokio::runtime::Handle::try_current()
        .map_err(|e| io::Error::other(format!("the VRRP socket needs a tokio runtime: {e}")))?;
    // SAFETY: the Socket owns its descriptor, keeps it open until it is
    // dropped, and always reports the same one; the AsyncFd owns the
    // Socket and only lends out shared references.
    let registered = unsafe { AsyncFd::register(socket) };
    registered.map_err(|e| context(e, "registering the VRRP socket with tokio"))
}

fn check_families(cfg: &SocketConfig) -> io::Result<()> {
    match cfg
        .unicast_peers
        .iter()
        .find(|peer| peer.is_ipv4() != cfg.local.is_ipv4())
    {
        Some(peer) => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("unicast peer {peer} is not in the family of {}", cfg.local),
        )),
        None => Ok(()),
    }
}

fn destinations(cfg: &SocketConfig) -> Vec<IpAddr> {
    if !cfg.unicast_peers.is_empty() {
        return cfg.unicast_peers.clone();
    }
    match cfg.local {
        IpAddr::V4(_) => vec![IpAddr::V4(GROUP_V4)],
        IpAddr::V6(_) => vec![IpAddr::V6(GROUP_V6)],
    }
}

fn open_v4(cfg: &SocketConfig) -> io::Result<Socket> {
    let on = |what: &str| format!("{what} on {}", cfg.ifname);
    let socket = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(IPPROTO_VRRP)))
        .map_err(|e| context(e, on("opening a raw IPv4 VRRP socket")))?;
    socket
        .bind_device(Some(cfg.ifname.as_bytes()))
        .map_err(|e| context(e, on("binding the VRRP socket")))?;
    socket
        .set_multicast_ttl_v4(TTL)
        .map_err(|e| context(e, on("setting the multicast TTL")))?;
    socket
        .set_ttl_v4(TTL)
        .map_err(|e| context(e, on("setting the TTL")))?;
    socket
        .set_tos_v4(TOS_INTERNETWORK_CONTROL)
        .map_err(|e| context(e, on("setting the TOS")))?;
    sys::set_multicast_if_v4_index(socket.as_fd(), cfg.ifindex)
        .map_err(|e| context(e, on("choosing the multicast interface")))?;
    socket
        .set_multicast_loop_v4(false)
        .map_err(|e| context(e, on("turning multicast loop off")))?;
    if cfg.unicast_peers.is_empty() {
        socket
            .join_multicast_v4_n(&GROUP_V4, &InterfaceIndexOrAddress::Index(cfg.ifindex))
            .map_err(|e| context(e, on(&format!("joining {GROUP_V4}"))))?;
    }
    Ok(socket)
}

/// IPV6_CHECKSUM is left off on purpose: with it the kernel drops adverts
/// with bad checksums silently, and the codec wants to count them.
fn open_v6(cfg: &SocketConfig) -> io::Result<Socket> {
    let on = |what: &str| format!("{what} on {}", cfg.ifname);
    let socket = Socket::new(Domain::IPV6, Type::RAW, Some(Protocol::from(IPPROTO_VRRP)))
        .map_err(|e| context(e, on("opening a raw IPv6 VRRP socket")))?;
    socket
        .bind_device(Some(cfg.ifname.as_bytes()))
        .map_err(|e| context(e, on("binding the VRRP socket")))?;
    socket
        .set_multicast_hops_v6(TTL)
        .map_err(|e| context(e, on("setting the multicast hop limit")))?;
    socket
        .set_unicast_hops_v6(TTL)
        .map_err(|e| context(e, on("setting the unicast hop limit")))?;
    nixsock::setsockopt(&socket, sockopt::Ipv6RecvPacketInfo, &true)
        .map_err(|e| context(e, on("asking for IPV6_PKTINFO")))?;
    socket
        .set_recv_hoplimit_v6(true)
        .map_err(|e| context(e, on("asking for IPV6_HOPLIMIT")))?;
    socket
        .set_multicast_if_v6(cfg.ifindex)
        .map_err(|e| context(e, on("choosing the multicast interface")))?;
    socket
        .set_multicast_loop_v6(false)
        .map_err(|e| context(e, on("turning multicast loop off")))?;
    if cfg.unicast_peers.is_empty() {
        socket
            .join_multicast_v6(&GROUP_V6, cfg.ifindex)
            .map_err(|e| context(e, on(&format!("joining {GROUP_V6}"))))?;
    }
    Ok(socket)
}

fn send_v4(
    socket: &Socket,
    payload: &[u8],
    ifindex: u32,
    local: Ipv4Addr,
    dst: Ipv4Addr,
) -> io::Result<usize> {
    let info = libc::in_pktinfo {
        ipi_ifindex: ifindex_c(ifindex)?,
        ipi_spec_dst: libc::in_addr {
            s_addr: u32::from(local).to_be(),
        },
        ipi_addr: libc::in_addr { s_addr: 0 },
    };
    let cmsgs = [ControlMessage::Ipv4PacketInfo(&info)];
    let addr = SockaddrIn::from(SocketAddrV4::new(dst, 0));
    let iov = [IoSlice::new(payload)];
    Ok(nixsock::sendmsg(
        socket.as_raw_fd(),
        &iov,
        &cmsgs,
        MsgFlags::empty(),
        Some(&addr),
    )?)
}

fn send_v6(
    socket: &Socket,
    payload: &[u8],
    ifindex: u32,
    local: Ipv6Addr,
    dst: Ipv6Addr,
) -> io::Result<usize> {
    let info = libc::in6_pktinfo {
        ipi6_addr: libc::in6_addr {
            s6_addr: local.octets(),
        },
        ipi6_ifindex: ifindex,
    };
    let cmsgs = [ControlMessage::Ipv6PacketInfo(&info)];
    // Link-local and multicast destinations mean nothing without a scope.
    let scope = if needs_scope(dst) { ifindex } else { 0 };
    let addr = SockaddrIn6::from(SocketAddrV6::new(dst, 0, 0, scope));
    let iov = [IoSlice::new(payload)];
    Ok(nixsock::sendmsg(
        socket.as_raw_fd(),
        &iov,
        &cmsgs,
        MsgFlags::empty(),
        Some(&addr),
    )?)
}

fn needs_scope(addr: Ipv6Addr) -> bool {
    addr.is_multicast() || addr.is_unicast_link_local()
}

fn ifindex_c(ifindex: u32) -> io::Result<libc::c_int> {
    libc::c_int::try_from(ifindex)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "interface index too large"))
}

fn recv_v4(socket: &Socket, buf: &mut [u8]) -> io::Result<Datagram> {
    let mut iov = [IoSliceMut::new(buf)];
    let msg =
        nixsock::recvmsg::<SockaddrIn>(socket.as_raw_fd(), &mut iov, None, MsgFlags::empty())?;
    let src = msg
        .address
        .map(|a| IpAddr::V4(a.ip()))
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "datagram without a source"))?;
    let len = msg.bytes;
    let header = &buf[..len.min(buf.len())];
    Ok(Datagram {
        len,
        ip_header_included: true,
        src,
        dst: header_dst(header),
        hop_limit: header
            .get(8)
            .copied()
            .filter(|_| header.len() >= IPV4_HEADER_MIN),
    })
}

fn header_dst(header: &[u8]) -> Option<IpAddr> {
    let bytes: [u8; 4] = header.get(16..20)?.try_into().ok()?;
    Some(IpAddr::V4(Ipv4Addr::from(bytes)))
}

fn recv_v6(socket: &Socket, buf: &mut [u8]) -> io::Result<Datagram> {
    let mut iov = [IoSliceMut::new(buf)];
    let mut cmsg = nix::cmsg_space!(libc::in6_pktinfo, libc::c_int);
    let msg = nixsock::recvmsg::<SockaddrStorage>(
        socket.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::empty(),
    )?;
    let src = msg
        .address
        .as_ref()
        .and_then(|a| a.as_sockaddr_in6())
        .map(|a| IpAddr::V6(a.ip()))
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "datagram without a source"))?;
    let mut datagram = Datagram {
        len: msg.bytes,
        ip_header_included: false,
        src,
        dst: None,
        hop_limit: None,
    };
    for cmsg in msg.cmsgs()? {
        match cmsg {
            ControlMessageOwned::Ipv6PacketInfo(info) => {
                datagram.dst = Some(IpAddr::V6(Ipv6Addr::from(info.ipi6_addr.s6_addr)));
            }
            ControlMessageOwned::Ipv6HopLimit(hops) => datagram.hop_limit = u8::try_from(hops).ok(),
            _ => {}
        }
    }
    Ok(datagram)
}
