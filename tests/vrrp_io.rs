//! The VRRP IO layer against the real kernel, in network namespaces (see
//! `common::netns`: needs root and iproute2). Each test builds its own lab
//! and the lab removes itself, also when the test fails.

mod common;

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use common::netns::{Lab, NetnsNode, in_netns, poll};
use piha::vrrp::io::announce::Announcer;
use piha::vrrp::io::netlink::{self, Link, Netlink};
use piha::vrrp::io::realtime::{self, Scheduling};
use piha::vrrp::io::socket::{AdvertSocket, Datagram, GROUP_V4, GROUP_V6, SocketConfig};
use tokio::time::timeout;

const PAYLOAD: &[u8] = b"piha vrrp io test";
const WAIT: Duration = Duration::from_secs(3);
/// How long a socket must stay silent to count as "did not receive".
const QUIET: Duration = Duration::from_millis(300);
const VIP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 100);
const VIP6: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0x100);

fn block_on<F: Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(future)
}

async fn eth0() -> (Netlink, Link) {
    let netlink = Netlink::new().await.expect("netlink");
    let link = netlink
        .link_by_name("eth0")
        .await
        .expect("lookup")
        .expect("eth0");
    (netlink, link)
}

async fn open(local: IpAddr, unicast_peers: Vec<IpAddr>) -> AdvertSocket {
    let (_, link) = eth0().await;
    let cfg = SocketConfig {
        ifindex: link.index,
        ifname: link.name,
        local,
        unicast_peers,
    };
    AdvertSocket::open(&cfg).expect("open advert socket")
}

/// Opens a socket in `node`, says when it is ready, and returns the first
/// datagram it receives.
fn receive_one(
    node: &NetnsNode,
    local: IpAddr,
    peers: Vec<IpAddr>,
    ready: mpsc::Sender<()>,
) -> (Datagram, Vec<u8>) {
    in_netns(&node.name, move || {
        block_on(async move {
            let socket = open(local, peers).await;
            ready.send(()).expect("ready");
            let mut buf = [0u8; 1500];
            let datagram = timeout(WAIT, socket.recv(&mut buf))
                .await
                .expect("an advert in time")
                .expect("recv");
            (datagram, buf[..datagram.len].to_vec())
        })
    })
}

/// Sends PAYLOAD to every destination; returns whether the sender then
/// heard anything itself.
fn send_and_listen(node: &NetnsNode, local: IpAddr, peers: Vec<IpAddr>) -> bool {
    in_netns(&node.name, move || {
        block_on(async move {
            let socket = open(local, peers).await;
            for dst in socket.destinations() {
                socket.send_to(PAYLOAD, dst).await.expect("send");
            }
            let mut buf = [0u8; 1500];
            timeout(QUIET, socket.recv(&mut buf)).await.is_ok()
        })
    })
}

/// Runs a receiver in `to` and a sender in `from` at the same time.
fn exchange(
    lab: &Lab,
    from: usize,
    to: usize,
    local: [IpAddr; 2],
    peers: [Vec<IpAddr>; 2],
) -> (Datagram, Vec<u8>, bool) {
    let [sender_peers, receiver_peers] = peers;
    thread::scope(|scope| {
        let (ready, is_ready) = mpsc::channel();
        let receiver = scope.spawn(|| receive_one(lab.node(to), local[1], receiver_peers, ready));
        is_ready.recv_timeout(WAIT).expect("receiver ready");
        let heard_itself = send_and_listen(lab.node(from), local[0], sender_peers);
        let (datagram, bytes) = receiver.join().expect("receiver");
        (datagram, bytes, heard_itself)
    })
}

/// The fields of the IPv4 header the kernel wrote, checked by hand.
fn assert_ipv4_header(bytes: &[u8], src: Ipv4Addr, dst: Ipv4Addr) {
    assert_eq!(bytes[0] >> 4, 4, "version");
    let header_len = usize::from(bytes[0] & 0x0f) * 4;
    assert_eq!(bytes[1], 0xc0, "TOS internetwork control");
    assert_eq!(bytes[8], 255, "TTL");
    assert_eq!(bytes[9], 112, "protocol VRRP");
    assert_eq!(bytes[12..16], src.octets(), "source");
    assert_eq!(bytes[16..20], dst.octets(), "destination");
    assert_eq!(&bytes[header_len..], PAYLOAD);
}

#[test]
fn multicast_v4_reaches_the_peer_with_ttl_255_and_not_the_sender() {
    let lab = Lab::new(2, false);
    let local = [IpAddr::V4(lab.node(0).addr), IpAddr::V4(lab.node(1).addr)];
    let (datagram, bytes, heard_itself) = exchange(&lab, 0, 1, local, [vec![], vec![]]);

    assert!(datagram.ip_header_included);
    assert_eq!(datagram.src, local[0]);
    assert_eq!(datagram.dst, Some(IpAddr::V4(GROUP_V4)));
    assert_eq!(datagram.hop_limit, Some(255));
    assert_ipv4_header(&bytes, lab.node(0).addr, GROUP_V4);
    assert!(!heard_itself, "multicast loop is off");
}

#[test]
fn unicast_v4_goes_to_the_peer() {
    let lab = Lab::new(2, false);
    let local = [IpAddr::V4(lab.node(0).addr), IpAddr::V4(lab.node(1).addr)];
    let peers = [vec![local[1]], vec![local[0]]];
    let (datagram, bytes, heard_itself) = exchange(&lab, 0, 1, local, peers);

    assert_eq!(datagram.src, local[0]);
    assert_eq!(datagram.dst, Some(local[1]));
    assert_ipv4_header(&bytes, lab.node(0).addr, lab.node(1).addr);
    assert!(!heard_itself);
}

#[test]
fn multicast_v6_from_link_local_with_hop_limit_and_pktinfo() {
    let lab = Lab::new(2, false);
    let local = [0, 1].map(|i| IpAddr::V6(lab.link_local(lab.node(i))));
    let (datagram, bytes, heard_itself) = exchange(&lab, 0, 1, local, [vec![], vec![]]);

    assert!(!datagram.ip_header_included);
    assert_eq!(datagram.src, local[0]);
    assert_eq!(datagram.dst, Some(IpAddr::V6(GROUP_V6)));
    assert_eq!(datagram.hop_limit, Some(255));
    assert_eq!(bytes, PAYLOAD);
    assert!(!heard_itself);
}

#[test]
fn netlink_finds_the_interface_and_its_addresses() {
    let lab = Lab::new(1, false);
    let node = lab.node(0);
    in_netns(&node.name, || {
        block_on(async {
            let (netlink, link) = eth0().await;
            assert!(link.up);
            assert!(link.mac.is_some());
            assert_eq!(
                netlink.link_by_index(link.index).await.expect("by index"),
                Some(link.clone())
            );
            assert_eq!(
                netlink.link_by_name("nosuch0").await.expect("by name"),
                None
            );
            let holder = netlink
                .link_holding(IpAddr::V4(node.addr))
                .await
                .expect("holding");
            assert_eq!(holder.map(|l| l.name), Some("eth0".to_owned()));
            assert_eq!(
                netlink.primary_v4(link.index).await.expect("primary"),
                Some(node.addr)
            );
            let ll = netlink.link_local_v6(link.index).await.expect("link-local");
            assert_eq!(ll, Some(lab.link_local(node)));
            let all = netlink.addresses(link.index).await.expect("addresses");
            assert!(
                all.contains(&format!("{}/24", node.addr).parse().expect("net")),
                "{all:?}"
            );
        })
    });
}

#[test]
fn add_and_del_address_are_idempotent_and_v6_skips_dad() {
    let lab = Lab::new(1, false);
    let node = lab.node(0);
    let shown = |needle: &str| {
        lab.sh(&node.name, "ip -o addr show dev eth0")
            .contains(needle)
    };
    in_netns(&node.name, || {
        block_on(async {
            let (netlink, link) = eth0().await;
            let vip = format!("{VIP}/24").parse().expect("net");
            assert!(netlink.add_address(link.index, vip).await.expect("add"));
            assert!(shown("192.0.2.100/24"));
            assert!(
                !netlink
                    .add_address(link.index, vip)
                    .await
                    .expect("add again")
            );
            // The VIP went in as secondary: the advert source stays put.
            assert_eq!(
                netlink.primary_v4(link.index).await.expect("primary"),
                Some(node.addr)
            );
            assert!(netlink.del_address(link.index, vip).await.expect("del"));
            assert!(!shown("192.0.2.100/24"));
            assert!(
                !netlink
                    .del_address(link.index, vip)
                    .await
                    .expect("del again")
            );

            let vip6 = format!("{VIP6}/64").parse().expect("net");
            assert!(netlink.add_address(link.index, vip6).await.expect("add v6"));
            let line = lab.sh(&node.name, "ip -o -6 addr show dev eth0 to fe80::100/128");
            assert!(
                line.contains("nodad") && !line.contains("tentative"),
                "{line}"
            );
            assert!(
                !netlink
                    .add_address(link.index, vip6)
                    .await
                    .expect("add v6 again")
            );
            assert!(netlink.del_address(link.index, vip6).await.expect("del v6"));
            assert!(!shown("fe80::100/64"));
            assert!(
                !netlink
                    .del_address(link.index, vip6)
                    .await
                    .expect("del v6 again")
            );
        })
    });
}

#[test]
fn address_errors_say_what_failed() {
    let lab = Lab::new(1, false);
    in_netns(&lab.node(0).name, || {
        block_on(async {
            let netlink = Netlink::new().await.expect("netlink");
            let vip = format!("{VIP}/24").parse().expect("net");
            let err = netlink
                .add_address(9999, vip)
                .await
                .expect_err("no such link");
            assert!(
                err.to_string()
                    .starts_with("adding 192.0.2.100/24 to link 9999: "),
                "{err}"
            );
        })
    });
}

/// The client learns the VIP's MAC from node 1, then only a GARP from node 0
/// can change it: the client sends nothing after resolving the VIP.
#[test]
fn garp_moves_the_clients_arp_entry() {
    let lab = Lab::new(2, true);
    let vip = IpAddr::V4(VIP);
    let cmd = "ip addr add 192.0.2.100/24 dev eth0";
    lab.sh(&lab.node(1).name, cmd);
    assert_eq!(lab.client_resolve(vip), lab.mac(lab.node(1)));

    lab.sh(&lab.node(1).name, "ip addr del 192.0.2.100/24 dev eth0");
    take_over_and_announce(&lab, format!("{VIP}/24"), vip);
}

/// The same for IPv6: an unsolicited NA (O=1, checksum from the kernel)
/// replaces the client's neighbour entry.
#[test]
fn unsolicited_na_moves_the_clients_neighbour_entry() {
    let lab = Lab::new(2, true);
    let vip = IpAddr::V6(VIP6);
    lab.sh(&lab.node(1).name, "ip addr add fe80::100/64 dev eth0 nodad");
    assert_eq!(lab.client_resolve(vip), lab.mac(lab.node(1)));

    lab.sh(&lab.node(1).name, "ip addr del fe80::100/64 dev eth0");
    take_over_and_announce(&lab, format!("{VIP6}/64"), vip);
}

/// Node 0 adds the VIP, which alone must not move the client (the kernel
/// announces nothing on `ip addr add`), then announces it, which must.
fn take_over_and_announce(lab: &Lab, net: String, vip: IpAddr) {
    let node = lab.node(0);
    let link = in_netns(&node.name, || {
        block_on(async {
            let (netlink, link) = eth0().await;
            let net = net.parse().expect("net");
            assert!(netlink.add_address(link.index, net).await.expect("add"));
            link
        })
    });
    assert_eq!(lab.vip_holders(vip), vec![0]);
    thread::sleep(QUIET);
    assert_eq!(
        lab.client_neigh(vip),
        Some(lab.mac(lab.node(1))),
        "moved before the announcement"
    );

    in_netns(&node.name, || {
        let mac = link.mac.expect("mac");
        let announcer = Announcer::open(link.index, &link.name, mac).expect("announcer");
        announcer.announce(vip).expect("announce");
    });
    let mac = lab.mac(node);
    let moved = poll(Duration::from_secs(2), || {
        (lab.client_neigh(vip).as_deref() == Some(&*mac)).then_some(())
    });
    let table = lab.sh(&lab.client().name, "ip neigh show dev eth0");
    assert!(
        moved.is_some(),
        "client still has {:?}, want {mac}:\n{table}",
        lab.client_neigh(vip)
    );
}

#[test]
fn watch_links_reports_eth0_going_down() {
    let lab = Lab::new(1, false);
    let node = lab.node(0);
    let down = in_netns(&node.name, || {
        block_on(async {
            let mut links = netlink::watch_links().await.expect("watch");
            lab.link_down(0);
            timeout(WAIT, async {
                while let Some(link) = links.recv().await {
                    if link.name == "eth0" && !link.up {
                        return Some(link);
                    }
                }
                None
            })
            .await
            .expect("an event in time")
        })
    });
    assert!(down.is_some(), "the watch ended without eth0 down");
}

#[test]
fn realtime_thread_runs_the_future_at_fifo_priority() {
    let (done, ran) = mpsc::channel();
    let (thread, scheduling) = realtime::spawn("vrrp-rt-test", 10, move || async move {
        // SAFETY: sched_getscheduler(0) only reads the calling thread's policy.
        let policy = unsafe { libc::sched_getscheduler(0) };
        tokio::time::sleep(Duration::from_millis(1)).await;
        done.send(policy).expect("report");
    })
    .expect("spawn");
    thread.join().expect("join");
    assert_eq!(
        scheduling,
        Scheduling::Realtime { priority: 10 },
        "tests run as root"
    );
    assert_eq!(ran.recv_timeout(WAIT).expect("ran"), libc::SCHED_FIFO);
}
