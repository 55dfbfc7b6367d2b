//! The few kernel calls that neither socket2 nor nix wrap, and the error
//! context every caller in `io` attaches.

use std::io;
use std::mem;
use std::os::fd::{AsRawFd, BorrowedFd};

/// Prefixes an OS error with what we were doing, so a log line says
/// "joining 224.0.0.18 on eth0: No such device" rather than only the errno.
pub(super) fn context(err: impl Into<io::Error>, what: impl std::fmt::Display) -> io::Error {
    let err = err.into();
    io::Error::new(err.kind(), format!("{what}: {err}"))
}

/// `setsockopt` with a plain C struct or array as the value.
pub(super) fn setsockopt<T: Copy>(
    fd: BorrowedFd<'_>,
    level: libc::c_int,
    name: libc::c_int,
    value: &T,
) -> io::Result<()> {
    let len = libc::socklen_t::try_from(mem::size_of::<T>())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: `value` points to `len` initialised bytes that live for the
    // whole call and that the kernel only reads; `fd` is borrowed, so open.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (value as *const T).cast::<libc::c_void>(),
            len,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// IP_MULTICAST_IF by interface index. socket2 only takes an address, and
/// an interface can have none, or the same one as another interface.
pub(super) fn set_multicast_if_v4_index(fd: BorrowedFd<'_>, ifindex: u32) -> io::Result<()> {
    let index = libc::c_int::try_from(ifindex)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "interface index too large"))?;
    let mreqn = libc::ip_mreqn {
        imr_multiaddr: libc::in_addr { s_addr: 0 },
        imr_address: libc::in_addr { s_addr: 0 },
        imr_ifindex: index,
    };
    setsockopt(fd, libc::IPPROTO_IP, libc::IP_MULTICAST_IF, &mreqn)
}

/// ICMP6_FILTER that blocks every type: the announcer only sends, and a raw
/// ICMPv6 socket would otherwise queue every neighbour message on the link.
pub(super) fn block_all_icmpv6(fd: BorrowedFd<'_>) -> io::Result<()> {
    const ICMP6_FILTER: libc::c_int = 1;
    // struct icmp6_filter is 256 bits, one per type; a set bit blocks it.
    let block_all = [u32::MAX; 8];
    setsockopt(fd, libc::IPPROTO_ICMPV6, ICMP6_FILTER, &block_all)
}

/// The link-layer address a frame is sent to on an AF_PACKET socket.
pub(super) fn link_layer_addr(
    ifindex: u32,
    ethertype: u16,
    dst: [u8; 6],
) -> io::Result<socket2::SockAddr> {
    let index = libc::c_int::try_from(ifindex)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "interface index too large"))?;
    let mut addr = [0u8; 8];
    addr[..6].copy_from_slice(&dst);
    let ll = libc::sockaddr_ll {
        sll_family: libc::AF_PACKET as libc::sa_family_t,
        sll_protocol: ethertype.to_be(),
        sll_ifindex: index,
        sll_hatype: 0,
        sll_pkttype: 0,
        sll_halen: 6,
        sll_addr: addr,
    };
    let mut storage = socket2::SockAddrStorage::zeroed();
    let len = libc::socklen_t::try_from(mem::size_of::<libc::sockaddr_ll>())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_ll,
    // so viewing it as one is in bounds; the length we then declare is
    // exactly the sockaddr_ll we wrote into it.
    let sockaddr = unsafe {
        *storage.view_as::<libc::sockaddr_ll>() = ll;
        socket2::SockAddr::new(storage, len)
    };
    Ok(sockaddr)
}
