use std::net::{Ipv4Addr, Ipv6Addr};

use super::*;

// ===== fixtures =====

/// keepalived 2.2.7 on the wire: v3, VRID 51, priority 150, 100 cs, VIP
/// 10.99.0.100, from 10.99.0.1 to 224.0.0.18 (research/vrrp.md §6.5).
const GOLDEN_IP: [u8; 20] = [
    0x45, 0xc0, 0x00, 0x20, 0x00, 0x01, 0x00, 0x00, 0xff, 0x70, 0xd0, 0x36, 0x0a, 0x63, 0x00, 0x01,
    0xe0, 0x00, 0x00, 0x12,
];
const GOLDEN_VRRP: [u8; 12] = [
    0x31, 0x33, 0x96, 0x01, 0x00, 0x64, 0x42, 0xad, 0x0a, 0x63, 0x00, 0x64,
];
/// The same advert with the RFC 9568 (message-only) checksum.
const GOLDEN_MESSAGE_ONLY_CHECKSUM: [u8; 2] = [0x2d, 0xa0];

const V4_SRC: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 99, 0, 1));
const V4_DST: IpAddr = IpAddr::V4(Ipv4Addr::new(224, 0, 0, 18));
const V4_VIP: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 99, 0, 100));
const V6_SRC: IpAddr = IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1));
const V6_DST: IpAddr = IpAddr::V6(Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x12));
const V6_VIP: IpAddr = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x100));
const PASSWORD: [u8; 8] = *b"piha\0\0\0\0";

fn golden_packet() -> Vec<u8> {
    [&GOLDEN_IP[..], &GOLDEN_VRRP[..]].concat()
}

fn advert(version: Version, addresses: Vec<IpAddr>) -> Advert {
    Advert {
        version,
        vrid: 51,
        priority: 150,
        interval_cs: 100,
        addresses,
    }
}

fn expect(version: Version, addresses: Vec<IpAddr>) -> Expect {
    Expect {
        version,
        vrid: 51,
        auth: None,
        v2_interval_s: None,
        addresses,
        checksum: ChecksumPolicy::Auto,
    }
}

fn v3_expect() -> Expect {
    expect(Version::V3, vec![V4_VIP])
}

fn v2_expect() -> Expect {
    Expect {
        auth: Some(PASSWORD),
        v2_interval_s: Some(1),
        ..expect(Version::V2, vec![V4_VIP])
    }
}

fn rx(src: IpAddr, dst: IpAddr, payload: &[u8]) -> Received<'_> {
    Received {
        src,
        dst,
        ttl: 255,
        payload,
    }
}

fn v4_rx(payload: &[u8]) -> Received<'_> {
    rx(V4_SRC, V4_DST, payload)
}

fn v3_message() -> Vec<u8> {
    GOLDEN_VRRP.to_vec()
}

fn v2_message() -> Vec<u8> {
    let a = advert(Version::V2, vec![V4_VIP]);
    encode(&a, V4_SRC, V4_DST, Checksum::MessageOnly, Some(PASSWORD)).expect("encodes")
}

/// Rewrites the checksum after a test changed a field, so that the check
/// under test is the one that fails.
fn rechecksum(msg: &mut [u8], kind: Checksum, src: IpAddr, dst: IpAddr) {
    let sum = compute_checksum(kind, src, dst, msg);
    msg[6..8].copy_from_slice(&sum.to_be_bytes());
}

fn decode_v3(msg: &[u8]) -> Result<Decoded, Drop> {
    decode(&v4_rx(msg), &v3_expect())
}

fn decode_v2(msg: &[u8]) -> Result<Decoded, Drop> {
    decode(&v4_rx(msg), &v2_expect())
}

/// Changes one byte of a v3 IPv4 message and repairs the checksum.
fn v3_with(at: usize, value: u8) -> Vec<u8> {
    let mut msg = v3_message();
    msg[at] = value;
    rechecksum(&mut msg, Checksum::PseudoHeader, V4_SRC, V4_DST);
    msg
}

fn v2_with(at: usize, value: u8) -> Vec<u8> {
    let mut msg = v2_message();
    msg[at] = value;
    rechecksum(&mut msg, Checksum::MessageOnly, V4_SRC, V4_DST);
    msg
}

// ===== golden vectors =====

#[test]
fn keepalived_2_2_7_golden_decodes_as_pseudo_header() {
    let packet = golden_packet();
    let (ip, payload) = split_ipv4(&packet).expect("a valid IPv4 header");
    assert_eq!(
        ip,
        Ipv4Header {
            src: Ipv4Addr::new(10, 99, 0, 1),
            dst: Ipv4Addr::new(224, 0, 0, 18),
            ttl: 255,
            protocol: 112,
        }
    );
    let received = Received {
        src: IpAddr::V4(ip.src),
        dst: IpAddr::V4(ip.dst),
        ttl: ip.ttl,
        payload,
    };
    let decoded = decode(&received, &v3_expect()).expect("keepalived's advert is accepted");
    assert_eq!(decoded.advert, advert(Version::V3, vec![V4_VIP]));
    assert_eq!(decoded.checksum, Checksum::PseudoHeader);
    assert!(!decoded.owner_address_mismatch);
}

#[test]
fn keepalived_2_2_7_golden_is_refused_by_message_only_policy() {
    let expect = Expect {
        checksum: ChecksumPolicy::MessageOnly,
        ..v3_expect()
    };
    assert_eq!(
        decode(&v4_rx(&GOLDEN_VRRP), &expect),
        Err(Drop::BadChecksum)
    );
}

#[test]
fn keepalived_2_2_7_golden_encodes_in_both_modes() {
    let a = advert(Version::V3, vec![V4_VIP]);
    let pseudo = encode(&a, V4_SRC, V4_DST, Checksum::PseudoHeader, None).expect("encodes");
    assert_eq!(pseudo, GOLDEN_VRRP);

    let plain = encode(&a, V4_SRC, V4_DST, Checksum::MessageOnly, None).expect("encodes");
    let mut want = GOLDEN_VRRP;
    want[6..8].copy_from_slice(&GOLDEN_MESSAGE_ONLY_CHECKSUM);
    assert_eq!(plain, want);

    let decoded = decode_v3(&plain).expect("message-only accepted by Auto");
    assert_eq!(decoded.checksum, Checksum::MessageOnly);
}

/// RFC 3768 §5.1 laid out by hand: version 2 type 1, VRID 7, priority 100,
/// count 2, auth type 1, interval 1 s, checksum, 192.0.2.10, 192.0.2.11,
/// then the password "piha" zero padded.
///
/// The checksum by hand: 0x2107 + 0x6402 + 0x0101 + 0xc000 + 0x020a +
/// 0xc000 + 0x020b + 0x7069 + 0x6861 = 0x2e2e9; folded 0xe2e9 + 0x2 =
/// 0xe2eb; complemented 0x1d14.
#[test]
fn rfc3768_5_1_v2_golden_by_hand() {
    let wire: [u8; 24] = [
        0x21, 0x07, 0x64, 0x02, 0x01, 0x01, 0x1d, 0x14, 192, 0, 2, 10, 192, 0, 2, 11, b'p', b'i',
        b'h', b'a', 0, 0, 0, 0,
    ];
    assert_eq!(
        independent_sum(&wire),
        0xffff,
        "the hand-made vector is sound"
    );

    let addresses = vec![
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10)),
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, 11)),
    ];
    let a = Advert {
        version: Version::V2,
        vrid: 7,
        priority: 100,
        interval_cs: 100,
        addresses: addresses.clone(),
    };
    let src = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
    // v2 is message-only whatever is asked for.
    let bytes = encode(&a, src, V4_DST, Checksum::PseudoHeader, Some(PASSWORD)).expect("encodes");
    assert_eq!(bytes, wire);

    let e = Expect {
        vrid: 7,
        ..v2_expect()
    };
    let e = Expect { addresses, ..e };
    let decoded = decode(&rx(src, V4_DST, &wire), &e).expect("accepted");
    assert_eq!(decoded.advert, a);
    assert_eq!(decoded.checksum, Checksum::MessageOnly);
}

/// v3 over IPv6, checksum computed outside this module (Python, RFC 8200
/// pseudo-header): fe80::1 -> ff02::12, VRID 51, priority 150, 100 cs,
/// 2001:db8::100.
#[test]
fn rfc5798_5_2_8_ipv6_vector() {
    let mut wire = vec![0x31, 0x33, 0x96, 0x01, 0x00, 0x64, 0x0b, 0x8f];
    wire.extend(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x100).octets());
    let a = advert(Version::V3, vec![V6_VIP]);
    // IPv6 always carries the pseudo-header, whatever is asked for.
    let bytes = encode(&a, V6_SRC, V6_DST, Checksum::MessageOnly, None).expect("encodes");
    assert_eq!(bytes, wire);
    let decoded = decode(
        &rx(V6_SRC, V6_DST, &wire),
        &expect(Version::V3, vec![V6_VIP]),
    );
    assert_eq!(decoded.map(|d| d.checksum), Ok(Checksum::PseudoHeader));
}

/// One's-complement sum of the whole message, 32 bits at a time: a second
/// way to the same answer, to check the hand-made vector.
fn independent_sum(bytes: &[u8]) -> u16 {
    let mut sum: u64 = bytes
        .chunks(4)
        .map(|c| {
            let mut w = [0u8; 4];
            w[..c.len()].copy_from_slice(c);
            u64::from(u32::from_be_bytes(w))
        })
        .sum();
    while sum > 0xffff {
        sum = (sum >> 16) + (sum & 0xffff);
    }
    sum as u16
}

// ===== round trips =====

fn round_trip(a: &Advert, src: IpAddr, dst: IpAddr, checksum: Checksum, auth: Option<[u8; 8]>) {
    let bytes = encode(a, src, dst, checksum, auth).expect("encodes");
    let e = Expect {
        auth,
        v2_interval_s: u8::try_from(a.interval_cs / 100).ok(),
        ..expect(a.version, a.addresses.clone())
    };
    let decoded = decode(&rx(src, dst, &bytes), &e).expect("decodes");
    assert_eq!(&decoded.advert, a);
}

#[test]
fn round_trip_v3_ipv4_both_checksums() {
    let a = Advert {
        priority: 254,
        interval_cs: 4095,
        ..advert(Version::V3, vec![V4_VIP, V4_SRC])
    };
    round_trip(&a, V4_SRC, V4_DST, Checksum::PseudoHeader, None);
    round_trip(&a, V4_SRC, V4_DST, Checksum::MessageOnly, None);
}

#[test]
fn round_trip_v3_ipv6() {
    let a = Advert {
        interval_cs: 1,
        ..advert(Version::V3, vec![V6_VIP, V6_SRC])
    };
    round_trip(&a, V6_SRC, V6_DST, Checksum::PseudoHeader, None);
}

#[test]
fn round_trip_v2_ipv4_with_and_without_auth() {
    let a = Advert {
        priority: 0,
        interval_cs: 25500,
        ..advert(Version::V2, vec![V4_VIP])
    };
    round_trip(&a, V4_SRC, V4_DST, Checksum::MessageOnly, Some(PASSWORD));
    round_trip(&a, V4_SRC, V4_DST, Checksum::MessageOnly, None);
}

#[test]
fn rfc3768_1_v2_over_ipv6_cannot_be_encoded() {
    let a = advert(Version::V2, vec![V6_VIP]);
    let got = encode(&a, V6_SRC, V6_DST, Checksum::MessageOnly, None);
    assert_eq!(got, Err(EncodeError::FamilyMismatch));
}

#[test]
fn round_trip_most_addresses_that_fit() {
    let v4: Vec<IpAddr> = (0..255u8)
        .map(|i| IpAddr::V4(Ipv4Addr::new(10, 99, 1, i)))
        .collect();
    round_trip(
        &advert(Version::V3, v4.clone()),
        V4_SRC,
        V4_DST,
        Checksum::MessageOnly,
        None,
    );
    round_trip(
        &advert(Version::V2, v4),
        V4_SRC,
        V4_DST,
        Checksum::MessageOnly,
        None,
    );
    let v6: Vec<IpAddr> = (0..90u16)
        .map(|i| IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, i)))
        .collect();
    round_trip(
        &advert(Version::V3, v6),
        V6_SRC,
        V6_DST,
        Checksum::PseudoHeader,
        None,
    );
}

// ===== encode refuses what the wire cannot carry =====

#[test]
fn rfc5798_5_2_7_encode_rejects_intervals_the_wire_cannot_carry() {
    for (version, interval_cs) in [
        (Version::V3, 0),
        (Version::V3, 4096),
        (Version::V2, 0),
        (Version::V2, 150),
        (Version::V2, 25600),
    ] {
        let a = Advert {
            interval_cs,
            ..advert(version, vec![V4_VIP])
        };
        let got = encode(&a, V4_SRC, V4_DST, Checksum::MessageOnly, None);
        let want = EncodeError::Interval {
            version,
            interval_cs,
        };
        assert_eq!(got, Err(want), "{version:?} {interval_cs} cs");
    }
}

#[test]
fn encode_rejects_no_or_too_many_addresses() {
    let none = advert(Version::V3, vec![]);
    let got = encode(&none, V4_SRC, V4_DST, Checksum::MessageOnly, None);
    assert_eq!(got, Err(EncodeError::NoAddresses));

    let v4 = vec![V4_VIP; 256];
    let got = encode(
        &advert(Version::V3, v4),
        V4_SRC,
        V4_DST,
        Checksum::MessageOnly,
        None,
    );
    let want = EncodeError::TooManyAddresses {
        count: 256,
        max: 255,
    };
    assert_eq!(got, Err(want));

    let v6 = vec![V6_VIP; 91];
    let got = encode(
        &advert(Version::V3, v6),
        V6_SRC,
        V6_DST,
        Checksum::MessageOnly,
        None,
    );
    let want = EncodeError::TooManyAddresses { count: 91, max: 90 };
    assert_eq!(got, Err(want));
}

#[test]
fn encode_rejects_mixed_families_and_v3_auth() {
    let mixed = advert(Version::V3, vec![V4_VIP, V6_VIP]);
    let got = encode(&mixed, V4_SRC, V4_DST, Checksum::MessageOnly, None);
    assert_eq!(got, Err(EncodeError::FamilyMismatch));
    let a = advert(Version::V3, vec![V4_VIP]);
    let got = encode(&a, V4_SRC, V6_DST, Checksum::MessageOnly, None);
    assert_eq!(got, Err(EncodeError::FamilyMismatch));
    let got = encode(&a, V4_SRC, V4_DST, Checksum::MessageOnly, Some(PASSWORD));
    assert_eq!(got, Err(EncodeError::AuthInV3));
}

// ===== receive: one test per drop reason =====

#[test]
fn rfc791_malformed_ipv4_header_is_dropped() {
    let good = golden_packet();
    let mut v6 = good.clone();
    v6[0] = 0x65;
    let mut short_ihl = good.clone();
    short_ihl[0] = 0x44;
    let mut total_below_ihl = good.clone();
    total_below_ihl[3] = 19;
    let mut longer_buffer = good.clone();
    longer_buffer.push(0);
    for bad in [
        &good[..19],
        &v6[..],
        &short_ihl,
        &total_below_ihl,
        &longer_buffer,
    ] {
        assert_eq!(split_ipv4(bad), Err(Drop::BadIpHeader), "{bad:02x?}");
    }
}

#[test]
fn rfc791_ipv4_options_are_skipped() {
    let mut packet = golden_packet();
    packet[0] = 0x46;
    packet[3] = 0x24;
    packet.splice(20..20, [1, 1, 1, 0]); // four NOP/EOL option bytes
    let (_, payload) = split_ipv4(&packet).expect("IHL 6 is fine");
    assert_eq!(payload, GOLDEN_VRRP);
}

#[test]
fn rfc5798_7_1_truncated_read_is_dropped() {
    let packet = golden_packet();
    assert_eq!(split_ipv4(&packet[..30]), Err(Drop::Truncated));
}

#[test]
fn rfc5798_5_1_1_4_protocol_not_112_is_dropped() {
    let mut packet = golden_packet();
    packet[9] = 17;
    assert_eq!(split_ipv4(&packet), Err(Drop::NotVrrp));
}

#[test]
fn oversize_message_is_dropped_before_anything_else() {
    let msg = vec![0; MAX_MESSAGE + 1];
    assert_eq!(decode_v3(&msg), Err(Drop::Oversize));
}

#[test]
fn rfc5798_7_1_ttl_not_255_is_dropped() {
    let msg = v3_message();
    let received = Received {
        ttl: 254,
        ..v4_rx(&msg)
    };
    assert_eq!(decode(&received, &v3_expect()), Err(Drop::TtlNot255));

    let a = advert(Version::V3, vec![V6_VIP]);
    let v6 = encode(&a, V6_SRC, V6_DST, Checksum::PseudoHeader, None).expect("encodes");
    let received = Received {
        ttl: 1,
        ..rx(V6_SRC, V6_DST, &v6)
    };
    let e = expect(Version::V3, vec![V6_VIP]);
    assert_eq!(decode(&received, &e), Err(Drop::TtlNot255));
}

#[test]
fn rfc3768_7_1_ttl_not_255_is_dropped() {
    let msg = v2_message();
    let received = Received {
        ttl: 64,
        ..v4_rx(&msg)
    };
    assert_eq!(decode(&received, &v2_expect()), Err(Drop::TtlNot255));
}

#[test]
fn rfc5798_7_1_wrong_version_is_dropped() {
    assert_eq!(decode_v3(&v2_message()), Err(Drop::WrongVersion));
    for nibble in [0u8, 1, 4, 15] {
        let msg = v3_with(0, (nibble << 4) | 1);
        assert_eq!(decode_v3(&msg), Err(Drop::WrongVersion), "version {nibble}");
    }
}

#[test]
fn rfc3768_7_1_wrong_version_is_dropped() {
    assert_eq!(decode_v2(&v3_message()), Err(Drop::WrongVersion));
}

#[test]
fn rfc5798_5_2_2_unknown_type_is_dropped() {
    for kind in [0u8, 2, 15] {
        assert_eq!(
            decode_v3(&v3_with(0, 0x30 | kind)),
            Err(Drop::NotAdvertisement)
        );
    }
}

#[test]
fn rfc5798_7_1_truncated_message_is_dropped() {
    let msg = v3_message();
    assert_eq!(decode_v3(&msg[..7]), Err(Drop::Truncated), "fixed part");
    let two = v3_with(3, 2);
    assert_eq!(decode_v3(&two), Err(Drop::Truncated), "count says 2");
    assert_eq!(
        decode_v2(&v2_message()[..16]),
        Err(Drop::Truncated),
        "auth data"
    );
}

/// Strict, unlike keepalived: see `decode`.
#[test]
fn rfc5798_7_1_trailing_bytes_are_dropped() {
    let mut msg = v3_message();
    msg.extend([0, 0]);
    rechecksum(&mut msg, Checksum::PseudoHeader, V4_SRC, V4_DST);
    assert_eq!(decode_v3(&msg), Err(Drop::TrailingBytes));
}

#[test]
fn rfc5798_7_1_other_vrid_is_dropped() {
    // Before any other check: another router's v2 advert is not our error.
    let mut e = v3_expect();
    e.vrid = 52;
    assert_eq!(decode(&v4_rx(&v3_message()), &e), Err(Drop::OtherVrid));
    assert_eq!(decode(&v4_rx(&v2_message()), &e), Err(Drop::OtherVrid));
}

#[test]
fn rfc5798_5_1_family_mismatch_is_dropped() {
    let msg = v3_message();
    let e = v3_expect();
    assert_eq!(
        decode(&rx(V4_SRC, V6_DST, &msg), &e),
        Err(Drop::FamilyMismatch),
        "src/dst"
    );
    let v6_config = expect(Version::V3, vec![V6_VIP]);
    assert_eq!(
        decode(&v4_rx(&msg), &v6_config),
        Err(Drop::FamilyMismatch),
        "config"
    );

    // An IPv4 advert handed over as if it came over IPv6.
    let mut v4_in_v6 = msg.clone();
    rechecksum(&mut v4_in_v6, Checksum::PseudoHeader, V6_SRC, V6_DST);
    let any = expect(Version::V3, vec![]);
    let got = decode(&rx(V6_SRC, V6_DST, &v4_in_v6), &any);
    assert_eq!(got, Err(Drop::FamilyMismatch), "v4 message over v6");

    // And an IPv6 one over IPv4.
    let a = advert(Version::V3, vec![V6_VIP]);
    let mut v6_in_v4 = encode(&a, V6_SRC, V6_DST, Checksum::PseudoHeader, None).expect("encodes");
    rechecksum(&mut v6_in_v4, Checksum::PseudoHeader, V4_SRC, V4_DST);
    let got = decode(&v4_rx(&v6_in_v4), &any);
    assert_eq!(got, Err(Drop::FamilyMismatch), "v6 message over v4");
}

#[test]
fn rfc3768_1_v2_over_ipv6_is_dropped() {
    let mut msg = v2_message();
    rechecksum(&mut msg, Checksum::MessageOnly, V6_SRC, V6_DST);
    let e = Expect {
        addresses: vec![],
        ..v2_expect()
    };
    assert_eq!(
        decode(&rx(V6_SRC, V6_DST, &msg), &e),
        Err(Drop::FamilyMismatch)
    );
}

#[test]
fn rfc5798_5_2_5_zero_count_is_dropped() {
    let mut msg = v3_with(3, 0);
    msg.truncate(8);
    rechecksum(&mut msg, Checksum::PseudoHeader, V4_SRC, V4_DST);
    assert_eq!(decode_v3(&msg), Err(Drop::NoAddresses));
}

#[test]
fn rfc5798_7_1_bad_checksum_is_dropped() {
    let mut msg = v3_message();
    msg[7] ^= 1;
    assert_eq!(decode_v3(&msg), Err(Drop::BadChecksum));

    // A pseudo-header sum where the policy wants message-only, and back.
    let pseudo_only = Expect {
        checksum: ChecksumPolicy::PseudoHeader,
        ..v3_expect()
    };
    let a = advert(Version::V3, vec![V4_VIP]);
    let plain = encode(&a, V4_SRC, V4_DST, Checksum::MessageOnly, None).expect("encodes");
    assert_eq!(decode(&v4_rx(&plain), &pseudo_only), Err(Drop::BadChecksum));

    // The pseudo-header depends on the addresses: a different source fails.
    let other_src = IpAddr::V4(Ipv4Addr::new(10, 99, 0, 2));
    let got = decode(&rx(other_src, V4_DST, &GOLDEN_VRRP), &pseudo_only);
    assert_eq!(got, Err(Drop::BadChecksum));
}

#[test]
fn rfc3768_5_2_8_v2_with_a_pseudo_header_checksum_is_dropped() {
    let mut msg = v2_message();
    rechecksum(&mut msg, Checksum::PseudoHeader, V4_SRC, V4_DST);
    assert_eq!(decode_v2(&msg), Err(Drop::BadChecksum));
}

#[test]
fn rfc5798_5_2_8_ipv6_without_the_pseudo_header_is_dropped() {
    let a = advert(Version::V3, vec![V6_VIP]);
    let mut msg = encode(&a, V6_SRC, V6_DST, Checksum::PseudoHeader, None).expect("encodes");
    rechecksum(&mut msg, Checksum::MessageOnly, V6_SRC, V6_DST);
    let e = Expect {
        checksum: ChecksumPolicy::MessageOnly,
        ..expect(Version::V3, vec![V6_VIP])
    };
    assert_eq!(
        decode(&rx(V6_SRC, V6_DST, &msg), &e),
        Err(Drop::BadChecksum)
    );
}

#[test]
fn rfc1624_3_checksum_ffff_equals_0000() {
    assert!(same_checksum(0xffff, 0x0000));
    assert!(same_checksum(0x0000, 0x0000));
    assert!(!same_checksum(0x0000, 0xffff));
    assert!(!same_checksum(0x1234, 0x0000));
}

#[test]
fn rfc5798_5_2_7_zero_interval_is_dropped() {
    let mut msg = v3_with(4, 0);
    msg[5] = 0;
    rechecksum(&mut msg, Checksum::PseudoHeader, V4_SRC, V4_DST);
    assert_eq!(decode_v3(&msg), Err(Drop::ZeroInterval));
    let e = Expect {
        v2_interval_s: None,
        ..v2_expect()
    };
    assert_eq!(decode(&v4_rx(&v2_with(5, 0)), &e), Err(Drop::ZeroInterval));
}

#[test]
fn rfc3768_7_1_auth_type_mismatch_is_dropped() {
    // Ours is simple text; theirs none, then AH (type 2).
    assert_eq!(decode_v2(&v2_with(4, 0)), Err(Drop::AuthTypeMismatch));
    assert_eq!(decode_v2(&v2_with(4, 2)), Err(Drop::AuthTypeMismatch));
    // Ours none; theirs simple text.
    let e = Expect {
        auth: None,
        ..v2_expect()
    };
    assert_eq!(
        decode(&v4_rx(&v2_message()), &e),
        Err(Drop::AuthTypeMismatch)
    );
}

#[test]
fn rfc3768_7_1_auth_data_mismatch_is_dropped() {
    let msg = v2_message();
    let last = msg.len() - 1;
    assert_eq!(decode_v2(&v2_with(last, b'x')), Err(Drop::AuthDataMismatch));
}

#[test]
fn rfc3768_5_2_9_auth_data_of_type_0_is_ignored() {
    let a = advert(Version::V2, vec![V4_VIP]);
    let mut msg = encode(&a, V4_SRC, V4_DST, Checksum::MessageOnly, None).expect("encodes");
    let last = msg.len() - 1;
    msg[last] = 0xaa;
    rechecksum(&mut msg, Checksum::MessageOnly, V4_SRC, V4_DST);
    let e = Expect {
        auth: None,
        ..v2_expect()
    };
    assert!(decode(&v4_rx(&msg), &e).is_ok());
}

#[test]
fn rfc3768_7_1_interval_mismatch_is_dropped() {
    assert_eq!(decode_v2(&v2_with(5, 2)), Err(Drop::IntervalMismatch));
}

#[test]
fn rfc5798_6_4_2_v3_interval_differing_from_ours_is_accepted() {
    let msg = v3_with(5, 200);
    let decoded = decode_v3(&msg).expect("a backup adopts the master's interval");
    assert_eq!(decoded.advert.interval_cs, 200);
}

#[test]
fn rfc5798_5_2_6_reserved_bits_are_ignored_on_reception() {
    let msg = v3_with(4, 0xf0);
    let decoded = decode_v3(&msg).expect("reserved bits set");
    assert_eq!(decoded.advert.interval_cs, 100);
}

#[test]
fn rfc5798_7_1_address_list_mismatch_is_dropped_unless_owner() {
    let other = IpAddr::V4(Ipv4Addr::new(10, 99, 0, 101));
    let e = expect(Version::V3, vec![other]);
    assert_eq!(
        decode(&v4_rx(&v3_message()), &e),
        Err(Drop::AddressListMismatch)
    );

    // Count differs: we have two VIPs, it lists one.
    let e = expect(Version::V3, vec![V4_VIP, other]);
    assert_eq!(
        decode(&v4_rx(&v3_message()), &e),
        Err(Drop::AddressListMismatch)
    );

    // The owner's advert is kept and flagged.
    let owner = v3_with(2, 255);
    let decoded = decode(&v4_rx(&owner), &e).expect("owner is processed");
    assert!(decoded.owner_address_mismatch);

    // No VIPs configured: no check.
    let e = expect(Version::V3, vec![]);
    assert!(decode(&v4_rx(&v3_message()), &e).is_ok());
}

#[test]
fn rfc5798_7_1_address_list_order_does_not_matter() {
    let second = IpAddr::V4(Ipv4Addr::new(10, 99, 0, 101));
    let a = advert(Version::V3, vec![second, V4_VIP]);
    let msg = encode(&a, V4_SRC, V4_DST, Checksum::PseudoHeader, None).expect("encodes");
    let e = expect(Version::V3, vec![V4_VIP, second]);
    let decoded = decode(&v4_rx(&msg), &e).expect("same set");
    assert_eq!(
        decoded.advert.addresses,
        vec![second, V4_VIP],
        "wire order kept"
    );
}

// ===== drop names =====

#[test]
fn drop_all_lists_every_variant_once() {
    // Exhaustive on purpose: a new variant does not compile here until it
    // gets the next number, and then the length check fails until it is in
    // ALL as well.
    fn number(d: Drop) -> usize {
        match d {
            Drop::BadIpHeader => 0,
            Drop::NotVrrp => 1,
            Drop::Oversize => 2,
            Drop::Truncated => 3,
            Drop::TrailingBytes => 4,
            Drop::OtherVrid => 5,
            Drop::FamilyMismatch => 6,
            Drop::TtlNot255 => 7,
            Drop::WrongVersion => 8,
            Drop::NotAdvertisement => 9,
            Drop::NoAddresses => 10,
            Drop::BadChecksum => 11,
            Drop::ZeroInterval => 12,
            Drop::AuthTypeMismatch => 13,
            Drop::AuthDataMismatch => 14,
            Drop::IntervalMismatch => 15,
            Drop::AddressListMismatch => 16,
        }
    }
    let mut numbers: Vec<usize> = Drop::ALL.iter().map(|d| number(*d)).collect();
    numbers.sort_unstable();
    assert_eq!(numbers, (0..=16).collect::<Vec<_>>());
}

#[test]
fn drop_names_are_unique_snake_case() {
    let mut names: Vec<&str> = Drop::ALL.iter().map(Drop::name).collect();
    for name in &names {
        let snake = name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        assert!(snake && !name.starts_with('_'), "{name}");
    }
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), Drop::ALL.len());
}
