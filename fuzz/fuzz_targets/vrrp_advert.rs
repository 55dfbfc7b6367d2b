//! The VRRP advert codec: `split_ipv4` and `decode` on arbitrary bytes,
//! under every receive setting; what decodes must re-encode and decode to
//! the same thing, and what the same bytes describe as an advert must
//! encode and decode back (or be refused for a reason that holds).
//!
//! Input: one byte of settings, then an IPv4 packet as a raw socket reads
//! it, or (IPv6) a hop limit byte and the VRRP message.
//!   bits 0-1  checksum policy: Auto, MessageOnly, PseudoHeader, Auto
//!   bit 2     version: 0 = v2, 1 = v3
//!   bit 3     family: 0 = IPv4 (through split_ipv4), 1 = IPv6
//!   bit 4     v2 password configured
//!   bit 5     v2 interval of 1 s configured
//!   bit 6     one VIP configured (of the packet's family)
//!   bit 7     VRID taken from the message (else 51), so decoding gets past
//!             the VRID check often

#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use libfuzzer_sys::fuzz_target;
use piha::vrrp::packet::{
    Advert, Checksum, ChecksumPolicy, Decoded, Drop, EncodeError, Expect, MAX_MESSAGE, Received,
    Version, decode, encode, split_ipv4,
};

const PASSWORD: [u8; 8] = *b"piha\0\0\0\0";
const V6_SRC: IpAddr = IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1));
const V6_DST: IpAddr = IpAddr::V6(Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x12));
const V4_VIP: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 100));
const V6_VIP: IpAddr = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x100));

fuzz_target!(|data: &[u8]| {
    let Some((&settings, rest)) = data.split_first() else {
        return;
    };
    let Some(received) = receive(settings, rest) else {
        return;
    };
    let expect = expect(settings, &received);
    match decode(&received, &expect) {
        Ok(decoded) => re_encode(&received, &expect, &decoded),
        Err(drop) => assert!(Drop::ALL.contains(&drop), "{drop:?} not in ALL"),
    }
    encode_then_decode(settings, &received, &expect);
});

fn receive(settings: u8, rest: &[u8]) -> Option<Received<'_>> {
    if settings & 0x08 == 0 {
        let (ip, payload) = split_ipv4(rest).ok()?;
        assert_eq!(ip.protocol, 112);
        return Some(Received {
            src: IpAddr::V4(ip.src),
            dst: IpAddr::V4(ip.dst),
            ttl: ip.ttl,
            payload,
        });
    }
    let (&ttl, payload) = rest.split_first()?;
    Some(Received {
        src: V6_SRC,
        dst: V6_DST,
        ttl,
        payload,
    })
}

fn expect(settings: u8, rx: &Received<'_>) -> Expect {
    let checksum = match settings & 0x03 {
        1 => ChecksumPolicy::MessageOnly,
        2 => ChecksumPolicy::PseudoHeader,
        _ => ChecksumPolicy::Auto,
    };
    let version = if settings & 0x04 == 0 {
        Version::V2
    } else {
        Version::V3
    };
    let vip = if rx.src.is_ipv4() { V4_VIP } else { V6_VIP };
    let vrid = match rx.payload.get(1) {
        Some(&vrid) if settings & 0x80 != 0 => vrid,
        _ => 51,
    };
    Expect {
        version,
        vrid,
        auth: (settings & 0x10 != 0).then_some(PASSWORD),
        v2_interval_s: (settings & 0x20 != 0).then_some(1),
        addresses: if settings & 0x40 != 0 {
            vec![vip]
        } else {
            vec![]
        },
        checksum,
    }
}

fn auth_for(expect: &Expect) -> Option<[u8; 8]> {
    match expect.version {
        Version::V2 => expect.auth,
        Version::V3 => None,
    }
}

/// Anything accepted is a well-formed advert that survives being written
/// back with the checksum it came with.
fn re_encode(rx: &Received<'_>, expect: &Expect, decoded: &Decoded) {
    let a = &decoded.advert;
    assert_eq!(a.version, expect.version);
    assert_eq!(a.vrid, expect.vrid);
    assert!(a.interval_cs > 0);
    assert!(!a.addresses.is_empty());
    assert!(
        a.addresses
            .iter()
            .all(|ip| ip.is_ipv4() == rx.src.is_ipv4())
    );
    assert_eq!(rx.ttl, 255);

    let bytes = encode(a, rx.src, rx.dst, decoded.checksum, auth_for(expect))
        .unwrap_or_else(|e| panic!("a decoded advert does not encode: {e}: {a:?}"));
    assert_eq!(bytes.len(), rx.payload.len(), "re-encoded length");
    let again = Received {
        payload: &bytes,
        ..*rx
    };
    assert_eq!(decode(&again, expect).as_ref(), Ok(decoded), "round trip");
}

/// The same bytes read as advert fields: priority, interval, addresses.
fn encode_then_decode(settings: u8, rx: &Received<'_>, expect: &Expect) {
    let Some((head, tail)) = rx.payload.split_first_chunk::<3>() else {
        return;
    };
    let v4 = rx.src.is_ipv4();
    let addresses: Vec<IpAddr> = if v4 {
        tail.chunks_exact(4)
            .filter_map(|c| <[u8; 4]>::try_from(c).ok())
            .map(IpAddr::from)
            .collect()
    } else {
        tail.chunks_exact(16)
            .filter_map(|c| <[u8; 16]>::try_from(c).ok())
            .map(IpAddr::from)
            .collect()
    };
    let advert = Advert {
        version: expect.version,
        vrid: expect.vrid,
        priority: head[0],
        interval_cs: u16::from_be_bytes([head[1], head[2]]),
        addresses,
    };
    let checksum = if settings & 0x01 == 0 {
        Checksum::PseudoHeader
    } else {
        Checksum::MessageOnly
    };
    match encode(&advert, rx.src, rx.dst, checksum, auth_for(expect)) {
        Ok(bytes) => decode_own(rx, expect, &advert, &bytes),
        Err(e) => refused_for_cause(&advert, v4, e),
    }
}

fn decode_own(rx: &Received<'_>, expect: &Expect, advert: &Advert, bytes: &[u8]) {
    assert!(bytes.len() <= MAX_MESSAGE);
    let own = Received {
        ttl: 255,
        payload: bytes,
        ..*rx
    };
    // Our own advert passes every check but the configured VIPs and the v2
    // interval, which these settings choose independently.
    let lenient = Expect {
        addresses: vec![],
        v2_interval_s: None,
        checksum: ChecksumPolicy::Auto,
        ..expect.clone()
    };
    let decoded = decode(&own, &lenient)
        .unwrap_or_else(|d| panic!("own advert dropped as {d:?}: {advert:?}"));
    assert_eq!(&decoded.advert, advert);
}

fn refused_for_cause(advert: &Advert, v4: bool, e: EncodeError) {
    let cs = advert.interval_cs;
    let count = advert.addresses.len();
    match e {
        EncodeError::Interval { .. } => match advert.version {
            Version::V3 => assert!(cs == 0 || cs > 4095, "{e}"),
            Version::V2 => assert!(cs % 100 != 0 || cs == 0 || cs > 25500, "{e}"),
        },
        EncodeError::NoAddresses => assert_eq!(count, 0),
        EncodeError::TooManyAddresses { max, .. } => {
            assert!(count > max);
            assert_eq!(max, if v4 { 255 } else { 90 });
        }
        EncodeError::FamilyMismatch => assert!(!v4 && advert.version == Version::V2),
        EncodeError::AuthInV3 => panic!("auth is only passed for v2"),
    }
}
