//! Gratuitous ARP and unsolicited neighbour advertisements: after taking
//! the VIP, tell the link which MAC now answers for it.
//!
//! Hand-rolled, as keepalived, FRR and Holo do: a GARP is 42 bytes and an
//! NA 32, every field fixed but two addresses, so a packet crate would add
//! weight and nothing else.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddrV6};
use std::os::fd::AsFd;

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use super::sys::{self, context};

const BROADCAST_MAC: [u8; 6] = [0xff; 6];
const ETH_P_ARP: u16 = 0x0806;
const ETH_P_IP: u16 = 0x0800;
const ARPHRD_ETHER: u16 = 1;
const ARPOP_REQUEST: u16 = 1;
const ICMPV6_NEIGHBOR_ADVERT: u8 = 136;
/// NA flags byte: Router 0x80, Solicited 0x40, Override 0x20.
const NA_OVERRIDE: u8 = 0x20;
const ND_OPT_TARGET_LL_ADDR: u8 = 2;
const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
/// Receivers drop neighbour discovery messages with any other hop limit
/// (RFC 4861 §7.1.2).
const ND_HOP_LIMIT: u32 = 255;

/// A broadcast ARP *request* with sender = target = `ip` and target MAC
/// ff:ff:ff:ff:ff:ff: keepalived's form (vrrp_arp.c), also FRR's and
/// Holo's. Linux neighbours take the new MAC from a request as readily as
/// from a reply, and some old stacks only learn from requests.
pub fn garp_frame(mac: [u8; 6], ip: Ipv4Addr) -> [u8; 42] {
    let mut frame = [0u8; 42];
    frame[0..6].copy_from_slice(&BROADCAST_MAC);
    frame[6..12].copy_from_slice(&mac);
    frame[12..14].copy_from_slice(&ETH_P_ARP.to_be_bytes());
    let arp = &mut frame[14..];
    arp[0..2].copy_from_slice(&ARPHRD_ETHER.to_be_bytes());
    arp[2..4].copy_from_slice(&ETH_P_IP.to_be_bytes());
    arp[4] = 6; // hardware address length
    arp[5] = 4; // protocol address length
    arp[6..8].copy_from_slice(&ARPOP_REQUEST.to_be_bytes());
    arp[8..14].copy_from_slice(&mac);
    arp[14..18].copy_from_slice(&ip.octets());
    arp[18..24].copy_from_slice(&BROADCAST_MAC);
    arp[24..28].copy_from_slice(&ip.octets());
    frame
}

/// An unsolicited neighbour advertisement (RFC 4861 §4.4, §7.2.6) for
/// `ip`, with the target link-layer address option carrying `mac`.
///
/// Override is set so neighbours replace the cached MAC. Router is clear:
/// a piha node serves on the VIP but does not forward, and R=1 would make
/// hosts treat the VIP as a router (RFC 5798's R=1 is for VRRP routers).
/// The checksum stays 0: Linux always fills the ICMPv6 checksum of raw
/// ICMPv6 sockets itself (and refuses IPV6_CHECKSUM on them), because it
/// covers the pseudo-header with the source address it chooses.
pub fn unsolicited_na(mac: [u8; 6], ip: Ipv6Addr) -> [u8; 32] {
    let mut na = [0u8; 32];
    na[0] = ICMPV6_NEIGHBOR_ADVERT;
    // na[1] code 0, na[2..4] checksum left to the kernel.
    na[4] = NA_OVERRIDE;
    na[8..24].copy_from_slice(&ip.octets());
    na[24] = ND_OPT_TARGET_LL_ADDR;
    na[25] = 1; // option length in units of 8 bytes
    na[26..32].copy_from_slice(&mac);
    na
}

/// Sends GARPs and NAs out of one interface.
#[derive(Debug)]
pub struct Announcer {
    ifindex: u32,
    ifname: String,
    mac: [u8; 6],
    arp: Socket,
    ndisc: Socket,
    arp_dst: SockAddr,
}

impl Announcer {
    pub fn open(ifindex: u32, ifname: &str, mac: [u8; 6]) -> io::Result<Announcer> {
        Ok(Announcer {
            ifindex,
            ifname: ifname.to_owned(),
            mac,
            arp: open_arp(ifname)?,
            ndisc: open_ndisc(ifindex, ifname)?,
            arp_dst: sys::link_layer_addr(ifindex, ETH_P_ARP, BROADCAST_MAC)?,
        })
    }

    /// One GARP (IPv4) or NA (IPv6) for `ip`. Never blocks: a full send
    /// queue is reported as an error rather than stalling the VRRP thread.
    pub fn announce(&self, ip: IpAddr) -> io::Result<()> {
        let what = || format!("announcing {ip} on {}", self.ifname);
        let (sent, len) = match ip {
            IpAddr::V4(v4) => {
                let frame = garp_frame(self.mac, v4);
                (self.arp.send_to(&frame, &self.arp_dst), frame.len())
            }
            IpAddr::V6(v6) => {
                let na = unsolicited_na(self.mac, v6);
                let dst = SocketAddrV6::new(ALL_NODES, 0, 0, self.ifindex);
                (self.ndisc.send_to(&na, &dst.into()), na.len())
            }
        };
        match sent {
            Ok(n) if n == len => Ok(()),
            Ok(_) => Err(context(io::Error::from(io::ErrorKind::WriteZero), what())),
            Err(e) => Err(context(e, what())),
        }
    }
}

/// Protocol 0: the socket only sends (the ethertype comes with each
/// frame's address), so the ARP traffic on the link never queues up in it.
fn open_arp(ifname: &str) -> io::Result<Socket> {
    let what = |step: &str| format!("{step} for GARP on {ifname}");
    let socket = Socket::new(Domain::PACKET, Type::RAW, Some(Protocol::from(0)))
        .map_err(|e| context(e, what("opening a packet socket")))?;
    socket
        .set_nonblocking(true)
        .map_err(|e| context(e, what("making the socket non-blocking")))?;
    Ok(socket)
}

fn open_ndisc(ifindex: u32, ifname: &str) -> io::Result<Socket> {
    let what = |step: &str| format!("{step} for NA on {ifname}");
    let socket = Socket::new(Domain::IPV6, Type::RAW, Some(Protocol::ICMPV6))
        .map_err(|e| context(e, what("opening a raw ICMPv6 socket")))?;
    socket
        .bind_device(Some(ifname.as_bytes()))
        .map_err(|e| context(e, what("binding the socket")))?;
    socket
        .set_multicast_if_v6(ifindex)
        .map_err(|e| context(e, what("choosing the interface")))?;
    socket
        .set_multicast_hops_v6(ND_HOP_LIMIT)
        .map_err(|e| context(e, what("setting the hop limit")))?;
    socket
        .set_multicast_loop_v6(false)
        .map_err(|e| context(e, what("turning multicast loop off")))?;
    sys::block_all_icmpv6(socket.as_fd()).map_err(|e| context(e, what("filtering out input")))?;
    socket
        .set_nonblocking(true)
        .map_err(|e| context(e, what("making the socket non-blocking")))?;
    Ok(socket)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: [u8; 6] = [0x02, 0x00, 0x5e, 0x10, 0x20, 0x30];

    #[test]
    fn garp_is_a_broadcast_arp_request_for_the_vip_itself() {
        let expected: [u8; 42] = [
            // Ethernet: broadcast destination, our source, type ARP.
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, //
            0x02, 0x00, 0x5e, 0x10, 0x20, 0x30, //
            0x08, 0x06, //
            // ARP: Ethernet, IPv4, lengths 6 and 4, op 1 (request).
            0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01, //
            // Sender MAC and IP.
            0x02, 0x00, 0x5e, 0x10, 0x20, 0x30, 192, 0, 2, 100, //
            // Target MAC (broadcast, as keepalived) and IP (= sender IP).
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 192, 0, 2, 100,
        ];
        assert_eq!(garp_frame(MAC, Ipv4Addr::new(192, 0, 2, 100)), expected);
    }

    #[test]
    fn na_overrides_and_carries_the_target_link_layer_address() {
        let vip = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0x100);
        let expected: [u8; 32] = [
            136, 0, // type NA, code 0
            0x00, 0x00, // checksum, filled in by the kernel
            0x20, 0x00, 0x00, 0x00, // R=0 S=0 O=1, reserved
            0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0x00, // target
            2, 1, // option: target link-layer address, 8 bytes
            0x02, 0x00, 0x5e, 0x10, 0x20, 0x30,
        ];
        assert_eq!(unsolicited_na(MAC, vip), expected);
    }
}
