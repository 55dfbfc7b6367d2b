//! Every receive-side MUST at running piha nodes: from the lab's client
//! namespace (192.0.2.200) a raw socket sends adverts built with
//! `packet::encode` and then broken one way each, to 224.0.0.18. Each must
//! be counted under exactly its own drop reason on both nodes, and change
//! nothing else: same master, same states, no transition, the same VIP
//! holder. Then 2,000 random byte strings: nothing changes, the nodes
//! still answer. Needs root and iproute2.

mod common;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use piha::vrrp::packet::{Advert, Checksum, Drop, Version, encode};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use common::netns::{in_netns, poll};
use common::vrrp_rig::{Rig, VIP};

const CLIENT: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 200);
const GROUP: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 18);
const VRID: u8 = 51;
const PASSWORD: [u8; 8] = *b"secret\0\0";
const MASTER: usize = 0;
const BACKUP: usize = 1;

/// One crafted packet: what to send, with which TTL, and the drop reason
/// it must be counted under.
struct Bad {
    what: &'static str,
    msg: Vec<u8>,
    ttl: u32,
    reason: Drop,
}

fn bad(what: &'static str, msg: Vec<u8>, reason: Drop) -> Bad {
    Bad {
        what,
        msg,
        ttl: 255,
        reason,
    }
}

fn advert(version: Version, vrid: u8, priority: u8, interval_cs: u16, vip: Ipv4Addr) -> Advert {
    Advert {
        version,
        vrid,
        priority,
        interval_cs,
        addresses: vec![IpAddr::V4(vip)],
    }
}

fn vip4() -> Ipv4Addr {
    match VIP {
        IpAddr::V4(v) => v,
        IpAddr::V6(_) => unreachable!("the rig's VIP is IPv4"),
    }
}

/// A valid v3 advert from the client, with the pseudo-header checksum
/// (the one piha's peers use here, so nothing is learned from it).
fn v3(priority: u8) -> Vec<u8> {
    let a = advert(Version::V3, VRID, priority, 100, vip4());
    encode(
        &a,
        IpAddr::V4(CLIENT),
        IpAddr::V4(GROUP),
        Checksum::PseudoHeader,
        None,
    )
    .expect("encode v3")
}

fn v2(priority: u8, interval_cs: u16, auth: Option<[u8; 8]>) -> Vec<u8> {
    let a = advert(Version::V2, VRID, priority, interval_cs, vip4());
    encode(
        &a,
        IpAddr::V4(CLIENT),
        IpAddr::V4(GROUP),
        Checksum::MessageOnly,
        auth,
    )
    .expect("encode v2")
}

/// Rewrites the checksum after a corruption, so only the intended check
/// fails: with the IPv4 pseudo-header for v3, message-only for v2.
fn fix_checksum(mut msg: Vec<u8>, pseudo_header: bool) -> Vec<u8> {
    msg[6] = 0;
    msg[7] = 0;
    let mut sum: u64 = 0;
    for chunk in msg.chunks(2) {
        let hi = u64::from(chunk[0]) << 8;
        sum += hi + chunk.get(1).map_or(0, |b| u64::from(*b));
    }
    if pseudo_header {
        for ip in [CLIENT, GROUP] {
            let o = ip.octets();
            sum +=
                (u64::from(o[0]) << 8 | u64::from(o[1])) + (u64::from(o[2]) << 8 | u64::from(o[3]));
        }
        sum += 112 + msg.len() as u64;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    let sum = !(sum as u16);
    msg[6..8].copy_from_slice(&sum.to_be_bytes());
    msg
}

fn v3_cases() -> Vec<Bad> {
    let good = v3(100);
    let mut cases = Vec::new();
    cases.push(Bad {
        ttl: 254,
        ..bad("TTL 254", good.clone(), Drop::TtlNot255)
    });
    cases.push(Bad {
        ttl: 254,
        ..bad(
            "priority 200 (would preempt) with TTL 254",
            v3(200),
            Drop::TtlNot255,
        )
    });
    let mut m = good.clone();
    m[0] = 0x21;
    cases.push(bad("version 2", fix_checksum(m, true), Drop::WrongVersion));
    let mut m = good.clone();
    m[0] = 0x41;
    cases.push(bad("version 4", fix_checksum(m, true), Drop::WrongVersion));
    let mut m = good.clone();
    m[0] = 0x32;
    cases.push(bad("type 2", fix_checksum(m, true), Drop::NotAdvertisement));
    cases.push(bad("6 bytes", good[..6].to_vec(), Drop::Truncated));
    let mut m = good.clone();
    m[3] = 2;
    cases.push(bad(
        "count 2, one address",
        fix_checksum(m, true),
        Drop::Truncated,
    ));
    let mut m = good.clone();
    m.extend([192, 0, 2, 101]);
    cases.push(bad(
        "count 1, two addresses",
        fix_checksum(m, true),
        Drop::TrailingBytes,
    ));
    let mut m = good.clone();
    m[3] = 0;
    cases.push(bad("count 0", fix_checksum(m, true), Drop::NoAddresses));
    let mut m = good.clone();
    m[7] ^= 0x01;
    cases.push(bad("checksum off by one bit", m, Drop::BadChecksum));
    let other_dst = encode(
        &advert(Version::V3, VRID, 100, 100, vip4()),
        IpAddr::V4(CLIENT),
        IpAddr::V4(Ipv4Addr::new(224, 0, 0, 19)),
        Checksum::PseudoHeader,
        None,
    )
    .expect("encode");
    cases.push(bad(
        "pseudo-header checksum over another destination",
        other_dst,
        Drop::BadChecksum,
    ));
    let mut m = good.clone();
    m[1] = 52;
    cases.push(bad("VRID 52", fix_checksum(m, true), Drop::OtherVrid));
    let mut m = good.clone();
    m[4] = 0xf0; // the reserved bits set, the interval itself 0
    m[5] = 0;
    cases.push(bad("interval 0", fix_checksum(m, true), Drop::ZeroInterval));
    let other = encode(
        &advert(Version::V3, VRID, 100, 100, Ipv4Addr::new(192, 0, 2, 101)),
        IpAddr::V4(CLIENT),
        IpAddr::V4(GROUP),
        Checksum::PseudoHeader,
        None,
    )
    .expect("encode");
    cases.push(bad("VIP 192.0.2.101", other, Drop::AddressListMismatch));
    cases
}

fn v2_cases() -> Vec<Bad> {
    vec![
        bad(
            "password \"wrong\"",
            v2(100, 100, Some(*b"wrong\0\0\0")),
            Drop::AuthDataMismatch,
        ),
        bad("auth type 0", v2(100, 100, None), Drop::AuthTypeMismatch),
        bad(
            "interval 2 s (ours 1 s)",
            v2(100, 200, Some(PASSWORD)),
            Drop::IntervalMismatch,
        ),
        bad("a v3 advert", v3(100), Drop::WrongVersion),
        Bad {
            ttl: 254,
            ..bad(
                "priority 200 with TTL 254",
                v2(200, 100, Some(PASSWORD)),
                Drop::TtlNot255,
            )
        },
    ]
}

/// A raw IPPROTO 112 socket in the client namespace, multicast out of its
/// eth0 (the only route is the lab's 192.0.2.0/24).
fn raw_socket(rig: &Rig) -> Socket {
    in_netns(&rig.lab.client().name, || {
        let s = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(112)))
            .expect("raw socket (needs root)");
        s.set_multicast_if_v4(&CLIENT).expect("IP_MULTICAST_IF");
        s.set_multicast_loop_v4(false).expect("IP_MULTICAST_LOOP");
        s
    })
}

fn send(socket: &Socket, msg: &[u8], ttl: u32) {
    socket.set_multicast_ttl_v4(ttl).expect("IP_MULTICAST_TTL");
    socket.set_ttl_v4(ttl).expect("IP_TTL");
    let to = SockAddr::from(SocketAddr::new(IpAddr::V4(GROUP), 0));
    socket.send_to(msg, &to).expect("send");
}

/// What must not change at a node: its state, its master, its elections.
#[derive(Debug, Clone, PartialEq)]
struct Stable {
    state: serde_json::Value,
    master: serde_json::Value,
    became_master: serde_json::Value,
    last_transition: serde_json::Value,
}

struct Snapshot {
    stable: Stable,
    dropped: BTreeMap<String, u64>,
}

fn snapshot(rig: &Rig, i: usize) -> Snapshot {
    let s = rig
        .vrrp_status(i)
        .unwrap_or_else(|| panic!("node {i} answers its status API\n{}", rig.logs()));
    let dropped = s["counters"]["dropped"]
        .as_object()
        .expect("dropped map")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_u64().expect("a count")))
        .collect();
    Snapshot {
        stable: Stable {
            state: s["state"].clone(),
            master: s["master"].clone(),
            became_master: s["counters"]["became_master"].clone(),
            last_transition: s["last_transition"].clone(),
        },
        dropped,
    }
}

/// Sends each case once and checks both nodes counted it under its reason
/// and nothing else moved.
fn run_cases(rig: &Rig, cases: &[Bad]) {
    let socket = raw_socket(rig);
    let nodes = [MASTER, BACKUP];
    let mut before: Vec<Snapshot> = nodes.iter().map(|&i| snapshot(rig, i)).collect();
    let baseline: Vec<Stable> = before.iter().map(|s| s.stable.clone()).collect();
    for case in cases {
        send(&socket, &case.msg, case.ttl);
        let name = case.reason.name();
        for (k, &i) in nodes.iter().enumerate() {
            let want = before[k].dropped[name] + 1;
            let after = poll(Duration::from_secs(2), || {
                let s = snapshot(rig, i);
                (s.dropped[name] >= want).then_some(s)
            });
            let after = after.unwrap_or_else(|| {
                panic!(
                    "{}: node {i} did not count it as {name}: {:?}\n{}",
                    case.what,
                    rig.vrrp_status(i),
                    rig.logs()
                )
            });
            let mut expected = before[k].dropped.clone();
            *expected.get_mut(name).expect("reason listed") += 1;
            assert_eq!(
                after.dropped, expected,
                "{}: node {i} must count exactly one {name} drop",
                case.what
            );
            assert_eq!(
                after.stable, baseline[k],
                "{}: node {i} changed state",
                case.what
            );
            before[k] = after;
        }
        rig.assert_only_holder(MASTER, Duration::from_millis(30));
    }
    // Long enough for a takeover by any accepted advert to have shown.
    rig.assert_only_holder(MASTER, Duration::from_millis(500));
    for (k, &i) in nodes.iter().enumerate() {
        assert_eq!(snapshot(rig, i).stable, baseline[k], "node {i} at the end");
    }
}

fn elected(vrrp: &str, patience: Duration) -> Rig {
    let mut rig = Rig::new(&[150, 100], vrrp);
    rig.start_all();
    let ok = poll(patience, || {
        (rig.lab.vip_holders(VIP) == [MASTER]).then_some(())
    });
    assert!(ok.is_some(), "no election\n{}", rig.logs());
    rig.wait_state(MASTER, "master", patience);
    rig.wait_state(BACKUP, "backup", patience);
    rig.assert_only_holder(MASTER, Duration::from_millis(300));
    rig
}

#[test]
fn v3_every_receive_check_drops_and_changes_nothing() {
    let rig = elected("interval = \"100ms\"", Duration::from_secs(10));
    run_cases(&rig, &v3_cases());
}

#[test]
fn v2_auth_and_interval_checks_drop_and_change_nothing() {
    let rig = elected(
        "version = 2\ninterval = \"1s\"\nauth = \"secret\"",
        Duration::from_secs(15),
    );
    run_cases(&rig, &v2_cases());
}

/// xorshift64*: deterministic, so a failure can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

#[test]
fn random_bytes_change_nothing() {
    const PACKETS: usize = 2_000;
    let rig = elected("interval = \"100ms\"", Duration::from_secs(10));
    let socket = raw_socket(&rig);
    let nodes = [MASTER, BACKUP];
    let before: Vec<Snapshot> = nodes.iter().map(|&i| snapshot(&rig, i)).collect();
    let mut rng = Rng(0x5eed_f1ba);
    for n in 0..PACKETS {
        let len = (rng.next() % 80) as usize;
        let mut msg: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        // Half of them at our VRID, so they get past the first check.
        if n % 2 == 0 {
            if let Some(b) = msg.get_mut(1) {
                *b = VRID;
            }
        }
        send(&socket, &msg, 255);
        // Paced a little so receive buffers are not the thing tested.
        if n % 100 == 99 {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    // Every packet is dropped for some reason; count at least most of them
    // (a receive buffer may overflow on a busy machine, not a failure).
    for (k, &i) in nodes.iter().enumerate() {
        let total = |s: &Snapshot| s.dropped.values().sum::<u64>();
        let start = total(&before[k]);
        let got = poll(Duration::from_secs(3), || {
            let s = snapshot(&rig, i);
            (total(&s) >= start + PACKETS as u64).then_some(s)
        })
        .unwrap_or_else(|| snapshot(&rig, i));
        let counted = total(&got) - start;
        assert!(
            counted >= PACKETS as u64 / 2,
            "node {i} counted {counted} of {PACKETS} drops: {:?}",
            got.dropped
        );
        eprintln!("node {i}: {counted} of {PACKETS} random packets counted as drops");
        assert_eq!(got.stable, before[k].stable, "node {i} changed state");
    }
    rig.assert_only_holder(MASTER, Duration::from_millis(500));
    for &i in &nodes {
        assert!(
            rig.admin_get(i, "/api/v1/status").is_ok(),
            "node {i} answers"
        );
    }
}
