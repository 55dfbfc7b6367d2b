//! Links and addresses through rtnetlink: find the VRRP interface, its
//! source addresses, add and remove VIPs, and hear about links going down.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use futures_util::{StreamExt, TryStreamExt};
use ipnet::IpNet;
use rtnetlink::packet_core::{NetlinkMessage, NetlinkPayload};
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::packet_route::address::{AddressAttribute, AddressHeaderFlags, AddressMessage};
use rtnetlink::packet_route::link::{LinkAttribute, LinkFlags, LinkMessage, State};
use rtnetlink::{AddressMessageBuilder, Handle, MulticastGroup};
use tokio::sync::mpsc;

use super::sys::context;

/// How many link events may wait for the consumer. Link changes are rare;
/// past this the forwarder waits and the kernel-side queue absorbs bursts.
const LINK_EVENTS_QUEUE: usize = 64;

/// One network interface as VRRP cares about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    pub mac: Option<[u8; 6]>,
    /// Administratively up (IFF_UP) and with carrier (IFF_LOWER_UP or
    /// operstate up): able to carry adverts.
    pub up: bool,
}

/// A route-netlink connection; its connection task runs on the runtime
/// `new` was called in and ends when the `Netlink` is dropped.
#[derive(Debug, Clone)]
pub struct Netlink {
    handle: Handle,
}

impl Netlink {
    pub async fn new() -> io::Result<Netlink> {
        let (conn, handle, _unsolicited) = rtnetlink::new_connection()
            .map_err(|e| context(e, "opening a route netlink socket"))?;
        spawn_on_current(conn)?;
        Ok(Netlink { handle })
    }

    pub async fn link_by_name(&self, name: &str) -> io::Result<Option<Link>> {
        let request = self.handle.link().get().match_name(name).execute();
        first_link(request)
            .await
            .map_err(|e| context(e, format!("looking up link {name}")))
    }

    pub async fn link_by_index(&self, index: u32) -> io::Result<Option<Link>> {
        let request = self.handle.link().get().match_index(index).execute();
        first_link(request)
            .await
            .map_err(|e| context(e, format!("looking up link {index}")))
    }

    /// The interface that has `addr`: the VRRP interface is found from the
    /// node's address rather than configured by name.
    pub async fn link_holding(&self, addr: IpAddr) -> io::Result<Option<Link>> {
        let what = || format!("looking for the interface holding {addr}");
        let mut dump = self
            .handle
            .address()
            .get()
            .set_address_filter(addr)
            .execute();
        let found = dump
            .try_next()
            .await
            .map_err(|e| context(nl_error(e), what()))?;
        match found {
            Some(msg) => self.link_by_index(msg.header.index).await,
            None => Ok(None),
        }
    }

    pub async fn addresses(&self, ifindex: u32) -> io::Result<Vec<IpNet>> {
        let messages = self.address_messages(ifindex).await?;
        Ok(messages.iter().filter_map(address_of).collect())
    }

    /// The first IPv4 address that is not secondary: what the kernel uses
    /// as source, and what VRRPv2/v3 adverts must carry (RFC 5798 §5.1.1.1).
    pub async fn primary_v4(&self, ifindex: u32) -> io::Result<Option<Ipv4Addr>> {
        let messages = self.address_messages(ifindex).await?;
        Ok(messages
            .iter()
            .filter(|m| !m.header.flags.contains(AddressHeaderFlags::Secondary))
            .filter_map(address_of)
            .find_map(|net| match net.addr() {
                IpAddr::V4(a) => Some(a),
                IpAddr::V6(_) => None,
            }))
    }

    /// The first link-local IPv6 address that is usable as a source: one
    /// still doing (or failed at) duplicate address detection is skipped.
    pub async fn link_local_v6(&self, ifindex: u32) -> io::Result<Option<Ipv6Addr>> {
        let unusable = AddressHeaderFlags::Tentative | AddressHeaderFlags::Dadfailed;
        let messages = self.address_messages(ifindex).await?;
        Ok(messages
            .iter()
            .filter(|m| !m.header.flags.intersects(unusable))
            .filter_map(address_of)
            .find_map(|net| match net.addr() {
                IpAddr::V6(a) if a.is_unicast_link_local() => Some(a),
                _ => None,
            }))
    }

    /// Adds a VIP. IPv6 ones skip duplicate address detection (IFA_F_NODAD),
    /// as keepalived does: otherwise the new master cannot use the VIP for
    /// about a second, and an overlap with the old holder marks it dadfailed.
    /// Returns false if the address was already there.
    pub async fn add_address(&self, ifindex: u32, net: IpNet) -> io::Result<bool> {
        let mut request = self
            .handle
            .address()
            .add(ifindex, net.addr(), net.prefix_len());
        if net.addr().is_ipv6() {
            request.message_mut().header.flags |= AddressHeaderFlags::Nodad;
        }
        match request.execute().await {
            Ok(()) => Ok(true),
            Err(e) if errno(&e) == Some(libc::EEXIST) => Ok(false),
            Err(e) => Err(self.failed(nl_error(e), "adding", net, "to", ifindex).await),
        }
    }

    /// Removes a VIP. Returns false if it was not there.
    pub async fn del_address(&self, ifindex: u32, net: IpNet) -> io::Result<bool> {
        let message = address_message(ifindex, net);
        match self.handle.address().del(message).execute().await {
            Ok(()) => Ok(true),
            Err(e) if errno(&e) == Some(libc::EADDRNOTAVAIL) => Ok(false),
            Err(e) => Err(self
                .failed(nl_error(e), "removing", net, "from", ifindex)
                .await),
        }
    }

    async fn address_messages(&self, ifindex: u32) -> io::Result<Vec<AddressMessage>> {
        let dump = self
            .handle
            .address()
            .get()
            .set_link_index_filter(ifindex)
            .execute();
        dump.try_collect().await.map_err(|e| {
            context(
                nl_error(e),
                format!("listing the addresses of link {ifindex}"),
            )
        })
    }

    /// "adding 192.0.2.100/24 to eth0: Operation not permitted".
    async fn failed(
        &self,
        err: io::Error,
        verb: &str,
        net: IpNet,
        prep: &str,
        ifindex: u32,
    ) -> io::Error {
        let name = match self.link_by_index(ifindex).await {
            Ok(Some(link)) => link.name,
            _ => format!("link {ifindex}"),
        };
        context(err, format!("{verb} {net} {prep} {name}"))
    }
}

/// Link changes pushed by the kernel (RTNLGRP_LINK), for tracking. Every
/// RTM_NEWLINK is passed on, also ones that change nothing VRRP cares
/// about; a removed link arrives with `up: false`. The channel closing
/// means the subscription died: subscribe again and re-read the links.
pub async fn watch_links() -> io::Result<mpsc::Receiver<Link>> {
    let (conn, _handle, messages) = rtnetlink::new_multicast_connection(&[MulticastGroup::Link])
        .map_err(|e| context(e, "subscribing to link events"))?;
    spawn_on_current(conn)?;
    let (tx, rx) = mpsc::channel(LINK_EVENTS_QUEUE);
    tokio::spawn(forward_links(messages, tx));
    Ok(rx)
}

type Unsolicited = (
    NetlinkMessage<RouteNetlinkMessage>,
    rtnetlink::sys::SocketAddr,
);

/// Ends when the consumer drops its receiver; dropping `messages` then
/// stops the netlink connection too.
async fn forward_links<S>(mut messages: S, tx: mpsc::Sender<Link>)
where
    S: futures_util::Stream<Item = Unsolicited> + Unpin,
{
    loop {
        let next = tokio::select! {
            _ = tx.closed() => return,
            next = messages.next() => next,
        };
        let Some((message, _)) = next else { return };
        let link = match message.payload {
            NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(m)) => link_of(&m),
            NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelLink(m)) => Link {
                up: false,
                ..link_of(&m)
            },
            _ => continue,
        };
        if tx.send(link).await.is_err() {
            return;
        }
    }
}

fn spawn_on_current<F>(future: F) -> io::Result<()>
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    let runtime = tokio::runtime::Handle::try_current()
        .map_err(|e| io::Error::other(format!("netlink needs a tokio runtime: {e}")))?;
    runtime.spawn(future);
    Ok(())
}

async fn first_link<S>(mut stream: S) -> io::Result<Option<Link>>
where
    S: futures_util::Stream<Item = Result<LinkMessage, rtnetlink::Error>> + Unpin,
{
    match stream.try_next().await {
        Ok(found) => Ok(found.as_ref().map(link_of)),
        Err(e) if errno(&e) == Some(libc::ENODEV) => Ok(None),
        Err(e) => Err(nl_error(e)),
    }
}

fn link_of(message: &LinkMessage) -> Link {
    let flags = message.header.flags;
    let mut link = Link {
        index: message.header.index,
        name: String::new(),
        mac: None,
        up: false,
    };
    let mut oper_up = false;
    for attribute in &message.attributes {
        match attribute {
            LinkAttribute::IfName(name) => link.name.clone_from(name),
            LinkAttribute::Address(bytes) => link.mac = <[u8; 6]>::try_from(bytes.as_slice()).ok(),
            LinkAttribute::OperState(state) => oper_up = *state == State::Up,
            _ => {}
        }
    }
    link.up = flags.contains(LinkFlags::Up) && (flags.contains(LinkFlags::LowerUp) || oper_up);
    link
}

/// IFA_LOCAL is the interface's own address; IFA_ADDRESS is the peer's on
/// point-to-point links and the only one IPv6 usually sends.
fn address_of(message: &AddressMessage) -> Option<IpNet> {
    let mut address = None;
    for attribute in &message.attributes {
        match attribute {
            AddressAttribute::Local(a) => address = Some(*a),
            AddressAttribute::Address(a) if address.is_none() => address = Some(*a),
            _ => {}
        }
    }
    IpNet::new(address?, message.header.prefix_len).ok()
}

fn address_message(ifindex: u32, net: IpNet) -> AddressMessage {
    match net.addr() {
        IpAddr::V4(a) => AddressMessageBuilder::<Ipv4Addr>::new()
            .index(ifindex)
            .address(a, net.prefix_len())
            .build(),
        IpAddr::V6(a) => AddressMessageBuilder::<Ipv6Addr>::new()
            .index(ifindex)
            .address(a, net.prefix_len())
            .build(),
    }
}

fn errno(err: &rtnetlink::Error) -> Option<i32> {
    match err {
        rtnetlink::Error::NetlinkError(msg) => msg.code.map(|c| c.get().abs()),
        _ => None,
    }
}

fn nl_error(err: rtnetlink::Error) -> io::Error {
    match err {
        rtnetlink::Error::NetlinkError(msg) => msg.to_io(),
        other => io::Error::other(other.to_string()),
    }
}
