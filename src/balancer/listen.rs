//! Listening sockets of the balancer's front ends (HTTP and TCP services):
//! on the VIP, which this node may not hold yet (VRRP moves it here later,
//! and then the listener must already be there: `IP_FREEBIND`), and on the
//! node's own address, so a front end can be reached and tested on each
//! balancer directly.

use std::io;
use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::TcpListener;

/// Pending connections the kernel holds per listener; beyond it SYNs wait.
const BACKLOG: i32 = 1024;

/// Where a service on `port` listens, each with whether it needs
/// `IP_FREEBIND`: the VIP (if any), then the node's address.
pub fn listen_addrs(vip: Option<IpNet>, node: IpAddr, port: u16) -> Vec<(SocketAddr, bool)> {
    // A wildcard node address already covers the VIP, and Linux refuses a
    // second listener on a specific address of the same port.
    if node.is_unspecified() {
        return vec![(SocketAddr::new(node, port), false)];
    }
    let mut addrs = Vec::with_capacity(2);
    if let Some(vip) = vip.map(|v| v.addr()).filter(|v| *v != node) {
        addrs.push((SocketAddr::new(vip, port), true));
    }
    addrs.push((SocketAddr::new(node, port), false));
    addrs
}

/// A listener on `addr`. `SO_REUSEADDR` lets a restarted service bind again
/// while tunnels accepted by the previous listener are still open.
pub fn bind_listener(addr: SocketAddr, freebind: bool) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    // Inherited by accepted sockets: proxied bytes go out at once.
    socket.set_tcp_nodelay(true)?;
    if freebind {
        match addr {
            SocketAddr::V4(_) => socket.set_freebind_v4(true)?,
            SocketAddr::V6(_) => socket.set_freebind_v6(true)?,
        }
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    TcpListener::from_std(socket.into())
}

/// The listeners of one front end, and the VIP listener that could not be
/// had, if any.
pub struct Front {
    pub listeners: Vec<TcpListener>,
    pub vip_unavailable: Option<(SocketAddr, io::Error)>,
}

/// Binds the front end on `port`. The node's own address must bind. The VIP
/// may already be held by another process on this machine: on a one-machine
/// cluster every balancer node shares the loopback stack, and before VRRP
/// decides who holds the VIP they would all claim it. That costs the caller
/// a warning, not the front end.
pub fn bind_front(vip: Option<IpNet>, node: IpAddr, port: u16) -> io::Result<Front> {
    let mut front = Front {
        listeners: Vec::new(),
        vip_unavailable: None,
    };
    for (addr, freebind) in listen_addrs(vip, node, port) {
        match bind_listener(addr, freebind) {
            Ok(l) => front.listeners.push(l),
            Err(e) if freebind && e.kind() == io::ErrorKind::AddrInUse => {
                front.vip_unavailable = Some((addr, e));
            }
            Err(e) => return Err(io::Error::new(e.kind(), format!("{addr}: {e}"))),
        }
    }
    Ok(front)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn vip_first_with_freebind_then_the_node_address() {
        let vip: IpNet = "192.0.2.100/24".parse().unwrap();
        assert_eq!(
            listen_addrs(Some(vip), ip("192.0.2.1"), 6379),
            [
                ("192.0.2.100:6379".parse().unwrap(), true),
                ("192.0.2.1:6379".parse().unwrap(), false)
            ]
        );
        assert_eq!(listen_addrs(None, ip("192.0.2.1"), 6379).len(), 1);
        assert_eq!(listen_addrs(Some(vip), ip("0.0.0.0"), 6379).len(), 1);
    }

    #[tokio::test]
    async fn a_vip_held_elsewhere_costs_a_warning_not_the_front() {
        let vip: IpNet = "127.61.99.10/24".parse().unwrap();
        let first = bind_front(Some(vip), ip("127.61.99.11"), 0).unwrap();
        assert_eq!(first.listeners.len(), 2);
        let port = first.listeners[0].local_addr().unwrap().port();
        let second = bind_front(Some(vip), ip("127.61.99.12"), port).unwrap();
        assert_eq!(second.listeners.len(), 1);
        assert!(second.vip_unavailable.is_some());
        // The node address, though, must bind.
        assert!(bind_front(Some(vip), ip("127.61.99.12"), port).is_err());
    }

    #[tokio::test]
    async fn binds_an_address_this_host_does_not_have() {
        // 192.0.2.0/24 is documentation space, never configured here.
        let l = bind_listener("192.0.2.231:0".parse().unwrap(), true).unwrap();
        assert_eq!(l.local_addr().unwrap().ip(), ip("192.0.2.231"));
        assert!(bind_listener("192.0.2.232:0".parse().unwrap(), false).is_err());
    }
}
