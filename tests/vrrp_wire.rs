//! The VRRP codec judged by an independent decoder: adverts from `encode`,
//! in every mode, wrapped in IP headers built here, written to a pcap and
//! read back by tshark's VRRP dissector, which must see the same fields and
//! call every checksum good.
//!
//! tshark is required (CI installs it): without it the test fails, so a
//! missing oracle is never mistaken for a pass.

use std::fs;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::process::Command;

use piha::vrrp::packet::{Advert, Checksum, Version, encode};

/// pcap's link type for packets that start at the IP header.
const LINKTYPE_RAW: u32 = 101;
const PASSWORD: [u8; 8] = *b"piha\0\0\0\0";

const V4_SRC: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const V4_DST: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 18);
const V6_SRC: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1);
const V6_DST: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x12);

/// One advert and what tshark must report for it.
struct Case {
    what: &'static str,
    advert: Advert,
    checksum: Checksum,
    auth: Option<[u8; 8]>,
}

impl Case {
    fn src(&self) -> IpAddr {
        match self.advert.addresses.first() {
            Some(IpAddr::V6(_)) => IpAddr::V6(V6_SRC),
            _ => IpAddr::V4(V4_SRC),
        }
    }

    fn dst(&self) -> IpAddr {
        match self.src() {
            IpAddr::V4(_) => IpAddr::V4(V4_DST),
            IpAddr::V6(_) => IpAddr::V6(V6_DST),
        }
    }

    fn packet(&self) -> Vec<u8> {
        let msg = encode(
            &self.advert,
            self.src(),
            self.dst(),
            self.checksum,
            self.auth,
        )
        .unwrap_or_else(|e| panic!("{}: encode: {e}", self.what));
        match (self.src(), self.dst()) {
            (IpAddr::V4(s), IpAddr::V4(d)) => ipv4(s, d, &msg),
            (IpAddr::V6(s), IpAddr::V6(d)) => ipv6(s, d, &msg),
            _ => unreachable!("one family per case"),
        }
    }

    /// tshark's fields, in the order `FIELDS` asks for them.
    fn expected(&self) -> Vec<String> {
        let a = &self.advert;
        let v4: Vec<String> = addresses(a, |ip| ip.is_ipv4());
        let v6: Vec<String> = addresses(a, |ip| ip.is_ipv6());
        let (interval_v3, interval_v2, auth_type, auth_string) = match a.version {
            Version::V3 => (a.interval_cs.to_string(), String::new(), "", String::new()),
            Version::V2 => {
                let seconds = (a.interval_cs / 100).to_string();
                match self.auth {
                    Some(p) => (String::new(), seconds, "1", password_text(p)),
                    None => (String::new(), seconds, "0", String::new()),
                }
            }
        };
        let version = match a.version {
            Version::V2 => "2",
            Version::V3 => "3",
        };
        vec![
            "VRRP".to_string(),
            version.to_string(),
            "1".to_string(),
            a.vrid.to_string(),
            a.priority.to_string(),
            a.addresses.len().to_string(),
            interval_v3,
            interval_v2,
            auth_type.to_string(),
            auth_string,
            v4.join(","),
            v6.join(","),
            // Checksum status: 1 is "Good" ("[correct]" in -V output).
            "1".to_string(),
        ]
    }
}

fn addresses(a: &Advert, keep: fn(&IpAddr) -> bool) -> Vec<String> {
    a.addresses
        .iter()
        .filter(|ip| keep(ip))
        .map(ToString::to_string)
        .collect()
}

fn password_text(p: [u8; 8]) -> String {
    p.iter()
        .take_while(|b| **b != 0)
        .map(|b| char::from(*b))
        .collect()
}

const FIELDS: [&str; 13] = [
    "_ws.col.Protocol",
    "vrrp.version",
    "vrrp.type",
    "vrrp.virt_rtr_id",
    "vrrp.prio",
    "vrrp.addr_count",
    "vrrp.short_adver_int",
    "vrrp.adver_int",
    "vrrp.auth_type",
    "vrrp.auth_string",
    "vrrp.ip_addr",
    "vrrp.ipv6_addr",
    "vrrp.checksum.status",
];

fn advert(version: Version, vrid: u8, priority: u8, interval_cs: u16, ips: &[IpAddr]) -> Advert {
    Advert {
        version,
        vrid,
        priority,
        interval_cs,
        addresses: ips.to_vec(),
    }
}

fn v4(d: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(192, 0, 2, d))
}

fn v6(last: u16) -> IpAddr {
    IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, last))
}

/// Frames tshark should check with its default, pseudo-header v3 checksum
/// (v2 and IPv6 have only one checksum, whatever the preference).
fn pseudo_header_cases() -> Vec<Case> {
    vec![
        Case {
            what: "v3 IPv4 pseudo-header",
            advert: advert(Version::V3, 51, 150, 100, &[v4(100), v4(101)]),
            checksum: Checksum::PseudoHeader,
            auth: None,
        },
        Case {
            what: "v3 IPv6",
            advert: advert(Version::V3, 52, 100, 4095, &[v6(0x100), v6(0x101)]),
            checksum: Checksum::PseudoHeader,
            auth: None,
        },
        Case {
            what: "v2 with simple-text auth",
            advert: advert(Version::V2, 53, 254, 300, &[v4(102)]),
            checksum: Checksum::MessageOnly,
            auth: Some(PASSWORD),
        },
        Case {
            what: "v2 without auth",
            advert: advert(Version::V2, 54, 0, 100, &[v4(103)]),
            checksum: Checksum::MessageOnly,
            auth: None,
        },
    ]
}

/// Frames tshark checks with `vrrp.v3_checksum_as_in_v2` on.
fn message_only_cases() -> Vec<Case> {
    vec![Case {
        what: "v3 IPv4 message-only",
        advert: advert(Version::V3, 55, 255, 1, &[v4(104)]),
        checksum: Checksum::MessageOnly,
        auth: None,
    }]
}

#[test]
fn tshark_decodes_every_encoding_with_a_good_checksum() {
    let dir = tempfile::tempdir().expect("temp dir");
    check_with_tshark(
        &dir.path().join("pseudo.pcap"),
        &pseudo_header_cases(),
        false,
    );
    check_with_tshark(&dir.path().join("plain.pcap"), &message_only_cases(), true);
}

/// The message-only frame must fail tshark's default (pseudo-header)
/// check: proof that the preference, and so the test, tells them apart.
#[test]
fn tshark_sees_the_checksum_trap() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("trap.pcap");
    write_pcap(&path, &message_only_cases());
    let rows = tshark(&path, false);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].last().map(String::as_str), Some("0"), "{rows:?}");
}

fn check_with_tshark(path: &Path, cases: &[Case], v3_checksum_as_in_v2: bool) {
    write_pcap(path, cases);
    let rows = tshark(path, v3_checksum_as_in_v2);
    assert_eq!(rows.len(), cases.len(), "one line per frame: {rows:?}");
    for (case, row) in cases.iter().zip(&rows) {
        assert_eq!(row, &case.expected(), "{}", case.what);
    }
}

fn tshark(path: &Path, v3_checksum_as_in_v2: bool) -> Vec<Vec<String>> {
    let pref = format!("vrrp.v3_checksum_as_in_v2:{}", upper(v3_checksum_as_in_v2));
    let mut cmd = Command::new("tshark");
    cmd.arg("-n").arg("-r").arg(path).args(["-o", &pref]);
    cmd.args(["-T", "fields", "-E", "separator=|", "-E", "occurrence=a"]);
    cmd.args(["-E", "aggregator=,"]);
    for f in FIELDS {
        cmd.args(["-e", f]);
    }
    let out = match cmd.output() {
        Ok(out) => out,
        Err(e) => panic!(
            "cannot run tshark ({e}): it is this test's oracle, install it \
             (apt-get install tshark); the test fails rather than skip"
        ),
    };
    // stderr carries a warning when run as root; only the status matters.
    assert!(
        out.status.success(),
        "tshark failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.split('|').map(str::to_string).collect())
        .collect()
}

fn upper(b: bool) -> &'static str {
    if b { "TRUE" } else { "FALSE" }
}

// ===== pcap and IP headers =====

fn write_pcap(path: &Path, cases: &[Case]) {
    let mut file = Vec::new();
    // Global header: magic, version 2.4, GMT offset, accuracy, snaplen, link type.
    file.extend(0xa1b2_c3d4u32.to_le_bytes());
    file.extend(2u16.to_le_bytes());
    file.extend(4u16.to_le_bytes());
    file.extend(0i32.to_le_bytes());
    file.extend(0u32.to_le_bytes());
    file.extend(65535u32.to_le_bytes());
    file.extend(LINKTYPE_RAW.to_le_bytes());
    for (i, case) in cases.iter().enumerate() {
        let packet = case.packet();
        let len = u32::try_from(packet.len()).expect("small packet");
        let seconds = u32::try_from(i + 1).expect("few frames");
        file.extend(seconds.to_le_bytes());
        file.extend(0u32.to_le_bytes());
        file.extend(len.to_le_bytes());
        file.extend(len.to_le_bytes());
        file.extend(packet);
    }
    fs::write(path, file).expect("write pcap");
}

/// What the kernel sends: TOS 0xc0 (network control), TTL 255, protocol 112.
fn ipv4(src: Ipv4Addr, dst: Ipv4Addr, msg: &[u8]) -> Vec<u8> {
    let total = u16::try_from(20 + msg.len()).expect("small packet");
    let mut h = vec![0x45, 0xc0];
    h.extend(total.to_be_bytes());
    h.extend([0, 1, 0, 0, 255, 112, 0, 0]);
    h.extend(src.octets());
    h.extend(dst.octets());
    let sum = !fold(
        h.chunks(2)
            .map(|w| u32::from(w[0]) << 8 | u32::from(w[1]))
            .sum(),
    );
    h[10..12].copy_from_slice(&sum.to_be_bytes());
    h.extend(msg);
    h
}

fn ipv6(src: Ipv6Addr, dst: Ipv6Addr, msg: &[u8]) -> Vec<u8> {
    let payload = u16::try_from(msg.len()).expect("small packet");
    let mut h = vec![0x60, 0, 0, 0];
    h.extend(payload.to_be_bytes());
    h.extend([112, 255]);
    h.extend(src.octets());
    h.extend(dst.octets());
    h.extend(msg);
    h
}

fn fold(mut sum: u32) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    u16::try_from(sum).expect("folded")
}
