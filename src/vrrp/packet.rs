//! VRRP advertisements on the wire: version 3 (RFC 9568, IPv4 and IPv6) and
//! version 2 (RFC 3768, IPv4, with the simple-text authentication of RFC
//! 2338 that keepalived still speaks). Decoding checks every receive-side
//! MUST of the RFCs and says which one failed; nothing here does IO.
//!
//! The checksum trap: for v3 over IPv4, RFC 5798 §5.2.8 has the checksum
//! cover an RFC 2460 pseudo-header, while RFC 9568 §5.2.8 limits the
//! pseudo-header to IPv6. Cisco and Juniper send the message-only sum;
//! keepalived and FRR send the pseudo-header one by default. Each side drops
//! the other's adverts as corrupt and both become master. So the v3 IPv4
//! checksum is a setting ([`Checksum`]), receive can accept either
//! ([`ChecksumPolicy::Auto`], like keepalived's compat detection) and says
//! which one the peer used. v2 (message only) and IPv6 (pseudo-header
//! always) have one correct checksum each, whatever the setting.
//!
//! Left to the caller, because the codec cannot know them: whether this
//! router is the address owner (an owner ignores adverts, RFC 5798 §7.1),
//! and what the TTL rule is for unicast peers.

use std::net::{IpAddr, Ipv4Addr};

/// IP protocol number of VRRP (IPv4 protocol, IPv6 next header).
pub const PROTOCOL: u8 = 112;

/// The TTL / hop limit every advert is sent with. Anything else has crossed
/// a router, so it is not from our link (GTSM, RFC 5082).
pub const TTL: u8 = 255;

/// The largest message decoded or encoded: what one 1500-byte Ethernet
/// frame carries under a 40-byte IPv6 header. Adverts are never fragmented,
/// so anything longer is not an advert (it bounds IPv6 to 90 addresses;
/// IPv4 never gets there, as the count byte stops at 255).
pub const MAX_MESSAGE: usize = 1460;

/// Version/type, VRID, priority, count, then auth type + interval (v2) or
/// reserved + interval (v3), then the checksum.
const FIXED: usize = 8;
/// The byte offset of the checksum in the fixed part.
const CHECKSUM_AT: usize = 6;
/// v2 ends with 8 bytes of authentication data.
const AUTH_DATA: usize = 8;
const TYPE_ADVERTISEMENT: u8 = 1;
const AUTH_NONE: u8 = 0;
/// RFC 2338's simple text password; RFC 3768 keeps the number reserved.
const AUTH_SIMPLE_TEXT: u8 = 1;
/// v3's interval field is 12 bits; the top 4 of its 16 are reserved.
const V3_INTERVAL_MASK: u16 = 0x0fff;
const V2_MAX_SECONDS: u16 = 255;

/// The protocol version of an advert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Version {
    V2,
    V3,
}

/// What a VRRP advert says, independent of its encoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advert {
    pub version: Version,
    pub vrid: u8,
    /// 0 = the master is leaving; 255 = the address owner.
    pub priority: u8,
    /// Advert interval in centiseconds. Version 2 carries whole seconds,
    /// kept here as seconds × 100 so both versions share one unit.
    pub interval_cs: u16,
    pub addresses: Vec<IpAddr>,
}

/// Which v3 IPv4 checksum an advert carries or should carry.
///
/// Only v3 over IPv4 has a choice: v2 is always message-only (RFC 3768
/// §5.2.8) and IPv6 always includes the pseudo-header (RFC 5798 and 9568
/// agree), so for those this value is ignored by [`encode`] and reported
/// as the one that applies by [`decode`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Checksum {
    /// The message alone: RFC 9568 §5.2.8; Cisco, Juniper, Holo.
    MessageOnly,
    /// The message after an IPv4 pseudo-header: RFC 5798 §5.2.8 read
    /// literally; the keepalived and FRR default.
    PseudoHeader,
}

/// Which v3 IPv4 checksums to accept on receive. Ignored for v2 and IPv6,
/// which have one correct checksum each (see [`Checksum`]).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum ChecksumPolicy {
    /// Either; [`Decoded::checksum`] says which one matched, so a mixed
    /// LAN can be diagnosed. The pseudo-header one is tried first.
    #[default]
    Auto,
    MessageOnly,
    PseudoHeader,
}

/// A received packet with what the IO shell learned from the IP layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received<'a> {
    pub src: IpAddr,
    pub dst: IpAddr,
    /// IPv4 TTL, or the IPv6 hop limit (from `IPV6_RECVHOPLIMIT`).
    pub ttl: u8,
    /// The VRRP message, without the IP header.
    pub payload: &'a [u8],
}

/// What this instance expects, from its config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expect {
    pub version: Version,
    pub vrid: u8,
    /// v2 simple-text password, zero padded; `None` expects auth type 0.
    /// Ignored for v3, which has no authentication.
    pub auth: Option<[u8; 8]>,
    /// v2 only: adverts with another interval MUST be discarded (RFC 3768
    /// §7.1). `None` skips the check. v3 adopts the master's interval
    /// instead (RFC 5798 §6.4.2), so this is ignored for v3.
    pub v2_interval_s: Option<u8>,
    /// The configured VIPs. When non-empty, an advert listing others is
    /// dropped unless it comes from the owner (priority 255).
    pub addresses: Vec<IpAddr>,
    /// Which v3 IPv4 checksums to accept.
    pub checksum: ChecksumPolicy,
}

/// A received advert that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    pub advert: Advert,
    /// The checksum that matched (for v2 and IPv6, the only one there is).
    pub checksum: Checksum,
    /// The owner (priority 255) lists other addresses than ours. RFC 5798
    /// §7.1 keeps such adverts but asks for a log line about the
    /// misconfiguration.
    pub owner_address_mismatch: bool,
}

/// Why a received packet was dropped: one variant per receive-side check
/// (RFC 3768 §7.1, RFC 5798/9568 §7.1, and the packet layout). Each has a
/// stable [`name`](Drop::name) for metrics labels.
#[derive(thiserror::Error, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Drop {
    #[error("malformed IPv4 header (version, header length or total length)")]
    BadIpHeader,
    #[error("IP protocol is not VRRP (112)")]
    NotVrrp,
    #[error("message longer than {MAX_MESSAGE} bytes")]
    Oversize,
    #[error("message shorter than its fixed fields and address count say")]
    Truncated,
    #[error("bytes after the addresses (and auth data) the count announces")]
    TrailingBytes,
    /// Not an error: other virtual routers share the LAN. Counted apart so
    /// the error counters stay meaningful.
    #[error("advert for another virtual router id")]
    OtherVrid,
    #[error("address family of the message does not match the packet or the config")]
    FamilyMismatch,
    #[error("TTL / hop limit is not 255 (RFC 5798 §7.1)")]
    TtlNot255,
    #[error("VRRP version is not the configured one (RFC 5798 §7.1)")]
    WrongVersion,
    #[error("type is not Advertisement (RFC 5798 §5.2.2)")]
    NotAdvertisement,
    #[error("address count is 0 (RFC 5798 §5.2.5: minimum 1)")]
    NoAddresses,
    #[error("bad checksum (RFC 5798 §7.1)")]
    BadChecksum,
    #[error("advert interval is 0")]
    ZeroInterval,
    #[error("v2 auth type differs from ours (RFC 3768 §7.1)")]
    AuthTypeMismatch,
    #[error("v2 authentication data differs from ours (RFC 2338 §7.1)")]
    AuthDataMismatch,
    #[error("v2 advert interval differs from ours (RFC 3768 §7.1)")]
    IntervalMismatch,
    #[error("addresses differ from ours and the sender is not the owner (RFC 5798 §7.1)")]
    AddressListMismatch,
}

impl Drop {
    /// Every variant, for counters that start at zero.
    pub const ALL: [Drop; 17] = [
        Drop::BadIpHeader,
        Drop::NotVrrp,
        Drop::Oversize,
        Drop::Truncated,
        Drop::TrailingBytes,
        Drop::OtherVrid,
        Drop::FamilyMismatch,
        Drop::TtlNot255,
        Drop::WrongVersion,
        Drop::NotAdvertisement,
        Drop::NoAddresses,
        Drop::BadChecksum,
        Drop::ZeroInterval,
        Drop::AuthTypeMismatch,
        Drop::AuthDataMismatch,
        Drop::IntervalMismatch,
        Drop::AddressListMismatch,
    ];

    /// A stable snake_case name, used as a metrics label: never rename.
    pub fn name(&self) -> &'static str {
        match self {
            Drop::BadIpHeader => "bad_ip_header",
            Drop::NotVrrp => "not_vrrp",
            Drop::Oversize => "oversize",
            Drop::Truncated => "truncated",
            Drop::TrailingBytes => "trailing_bytes",
            Drop::OtherVrid => "other_vrid",
            Drop::FamilyMismatch => "family_mismatch",
            Drop::TtlNot255 => "ttl_not_255",
            Drop::WrongVersion => "wrong_version",
            Drop::NotAdvertisement => "not_advertisement",
            Drop::NoAddresses => "no_addresses",
            Drop::BadChecksum => "bad_checksum",
            Drop::ZeroInterval => "zero_interval",
            Drop::AuthTypeMismatch => "auth_type_mismatch",
            Drop::AuthDataMismatch => "auth_data_mismatch",
            Drop::IntervalMismatch => "interval_mismatch",
            Drop::AddressListMismatch => "address_list_mismatch",
        }
    }
}

/// Why an advert cannot be encoded: the values were not validated against
/// what the wire can carry.
#[derive(thiserror::Error, Debug, Clone, Copy, PartialEq, Eq)]
pub enum EncodeError {
    #[error(
        "interval of {interval_cs} cs does not fit {version:?} (v3: 1..=4095 cs; v2: 1..=255 whole seconds)"
    )]
    Interval { version: Version, interval_cs: u16 },
    #[error("an advert needs at least one address")]
    NoAddresses,
    #[error("{count} addresses; at most {max} fit one advert")]
    TooManyAddresses { count: usize, max: usize },
    #[error("source, destination and addresses must be of one family (v2: IPv4 only)")]
    FamilyMismatch,
    #[error("v3 has no authentication")]
    AuthInV3,
}

/// The IPv4 header fields the receive checks need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Header {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub ttl: u8,
    /// Always [`PROTOCOL`] when [`split_ipv4`] succeeds; kept for logs.
    pub protocol: u8,
}

// ===== receive =====

/// IPv4 raw sockets deliver the IP header too: split it off.
///
/// The kernel has already verified the header checksum and reassembled
/// fragments, so neither is checked again. The total length must match the
/// buffer exactly (as keepalived requires): a shorter buffer means the read
/// was truncated, a longer one that something is wrong with the header.
pub fn split_ipv4(packet: &[u8]) -> Result<(Ipv4Header, &[u8]), Drop> {
    let Some(fixed) = packet.get(..20) else {
        return Err(Drop::BadIpHeader);
    };
    let header_len = usize::from(fixed[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([fixed[2], fixed[3]]));
    if fixed[0] >> 4 != 4 || header_len < 20 || total < header_len {
        return Err(Drop::BadIpHeader);
    }
    if total > packet.len() {
        return Err(Drop::Truncated);
    }
    if total < packet.len() {
        return Err(Drop::BadIpHeader);
    }
    if fixed[9] != PROTOCOL {
        return Err(Drop::NotVrrp);
    }
    let header = Ipv4Header {
        src: Ipv4Addr::new(fixed[12], fixed[13], fixed[14], fixed[15]),
        dst: Ipv4Addr::new(fixed[16], fixed[17], fixed[18], fixed[19]),
        ttl: fixed[8],
        protocol: fixed[9],
    };
    let payload = packet.get(header_len..total).ok_or(Drop::BadIpHeader)?;
    Ok((header, payload))
}

/// Checks a received message against every receive-side rule and decodes it.
///
/// The VRID is checked right after the fixed fields are known to be there,
/// before anything else: adverts of other routers on the LAN (another
/// version, another checksum setting) then count as `OtherVrid`, not as
/// errors of ours. The remaining checks follow RFC 3768/5798 §7.1 order.
///
/// Strict on length: bytes beyond the announced addresses (and v2 auth data)
/// are dropped as `TrailingBytes`. keepalived only checks that the payload
/// is long enough and sums the announced length, so it tolerates them; but
/// bytes no checksum covers are bytes nobody vouches for, and no compliant
/// sender writes them.
pub fn decode(rx: &Received<'_>, expect: &Expect) -> Result<Decoded, Drop> {
    let msg = rx.payload;
    if msg.len() > MAX_MESSAGE {
        return Err(Drop::Oversize);
    }
    let Some(fixed) = msg.get(..FIXED) else {
        return Err(Drop::Truncated);
    };
    if fixed[1] != expect.vrid {
        return Err(Drop::OtherVrid);
    }
    let family = family(rx, &expect.addresses)?;
    if rx.ttl != TTL {
        return Err(Drop::TtlNot255);
    }
    let version = version(fixed[0] >> 4, expect.version)?;
    if fixed[0] & 0x0f != TYPE_ADVERTISEMENT {
        return Err(Drop::NotAdvertisement);
    }
    if version == Version::V2 && family == Family::V6 {
        return Err(Drop::FamilyMismatch);
    }
    let count = usize::from(fixed[3]);
    if count == 0 {
        return Err(Drop::NoAddresses);
    }
    check_length(msg.len(), count, version, family)?;
    let checksum = verify_checksum(rx, version, family, expect.checksum)?;
    let interval_cs = interval_cs(version, fixed)?;
    if version == Version::V2 {
        check_auth(fixed[4], msg, expect.auth)?;
    }
    let listed = FIXED..FIXED + count * family.len();
    let addresses = read_addresses(msg.get(listed).unwrap_or_default(), family);
    let priority = fixed[2];
    let owner_address_mismatch = check_addresses(&addresses, &expect.addresses, priority)?;
    if version == Version::V2 {
        check_v2_interval(fixed[5], expect.v2_interval_s)?;
    }
    let advert = Advert {
        version,
        vrid: fixed[1],
        priority,
        interval_cs,
        addresses,
    };
    Ok(Decoded {
        advert,
        checksum,
        owner_address_mismatch,
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    V4,
    V6,
}

impl Family {
    fn of(ip: IpAddr) -> Family {
        match ip {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }

    /// Bytes per address in the message.
    fn len(self) -> usize {
        match self {
            Family::V4 => 4,
            Family::V6 => 16,
        }
    }

    fn other(self) -> Family {
        match self {
            Family::V4 => Family::V6,
            Family::V6 => Family::V4,
        }
    }
}

/// The message's family comes from the IP layer; the configured VIPs must
/// agree with it (an instance is per family).
fn family(rx: &Received<'_>, configured: &[IpAddr]) -> Result<Family, Drop> {
    let family = Family::of(rx.src);
    let agree = Family::of(rx.dst) == family && configured.iter().all(|a| Family::of(*a) == family);
    if agree {
        Ok(family)
    } else {
        Err(Drop::FamilyMismatch)
    }
}

fn version(nibble: u8, expected: Version) -> Result<Version, Drop> {
    let got = match nibble {
        2 => Version::V2,
        3 => Version::V3,
        _ => return Err(Drop::WrongVersion),
    };
    if got == expected {
        Ok(got)
    } else {
        Err(Drop::WrongVersion)
    }
}

fn message_len(count: usize, version: Version, family: Family) -> usize {
    let auth = match version {
        Version::V2 => AUTH_DATA,
        Version::V3 => 0,
    };
    FIXED + count * family.len() + auth
}

/// The length must be exactly what the count announces. A length that fits
/// the other family exactly is reported as a family mismatch, since that is
/// the likelier story (an IPv4 advert handed over with IPv6 addresses).
fn check_length(len: usize, count: usize, version: Version, family: Family) -> Result<(), Drop> {
    let want = message_len(count, version, family);
    if len == want {
        Ok(())
    } else if len == message_len(count, version, family.other()) {
        Err(Drop::FamilyMismatch)
    } else if len < want {
        Err(Drop::Truncated)
    } else {
        Err(Drop::TrailingBytes)
    }
}

fn verify_checksum(
    rx: &Received<'_>,
    version: Version,
    family: Family,
    policy: ChecksumPolicy,
) -> Result<Checksum, Drop> {
    let candidates: &[Checksum] = match (version, family, policy) {
        (Version::V2, _, _) => &[Checksum::MessageOnly],
        (Version::V3, Family::V6, _) => &[Checksum::PseudoHeader],
        (Version::V3, Family::V4, ChecksumPolicy::Auto) => {
            &[Checksum::PseudoHeader, Checksum::MessageOnly]
        }
        (Version::V3, Family::V4, ChecksumPolicy::MessageOnly) => &[Checksum::MessageOnly],
        (Version::V3, Family::V4, ChecksumPolicy::PseudoHeader) => &[Checksum::PseudoHeader],
    };
    let field = read_u16(rx.payload, CHECKSUM_AT);
    candidates
        .iter()
        .copied()
        .find(|kind| same_checksum(field, compute_checksum(*kind, rx.src, rx.dst, rx.payload)))
        .ok_or(Drop::BadChecksum)
}

/// In one's complement 0x0000 and 0xffff are both zero, and a sender may
/// write either (RFC 1624 §3); the computed value is never 0xffff.
fn same_checksum(field: u16, computed: u16) -> bool {
    field == computed || (computed == 0 && field == 0xffff)
}

fn interval_cs(version: Version, fixed: &[u8]) -> Result<u16, Drop> {
    let interval_cs = match version {
        // The top 4 bits are reserved: "ignored on reception" (§5.2.6).
        Version::V3 => read_u16(fixed, 4) & V3_INTERVAL_MASK,
        Version::V2 => u16::from(fixed[5]) * 100,
    };
    if interval_cs == 0 {
        // Master_Down_Interval would be the skew alone: backups would
        // preempt between two adverts of a healthy master.
        return Err(Drop::ZeroInterval);
    }
    Ok(interval_cs)
}

/// v2 authentication: the type must match ours; for simple text the 8
/// bytes at the end must equal our password. Type 0's data is ignored on
/// reception (RFC 3768 §5.2.9).
fn check_auth(auth_type: u8, msg: &[u8], ours: Option<[u8; 8]>) -> Result<(), Drop> {
    let want_type = match ours {
        Some(_) => AUTH_SIMPLE_TEXT,
        None => AUTH_NONE,
    };
    if auth_type != want_type {
        return Err(Drop::AuthTypeMismatch);
    }
    let Some(password) = ours else {
        return Ok(());
    };
    let data = msg.get(msg.len().saturating_sub(AUTH_DATA)..);
    if data == Some(&password[..]) {
        Ok(())
    } else {
        Err(Drop::AuthDataMismatch)
    }
}

fn check_v2_interval(seconds: u8, ours: Option<u8>) -> Result<(), Drop> {
    match ours {
        Some(ours) if ours != seconds => Err(Drop::IntervalMismatch),
        _ => Ok(()),
    }
}

fn read_addresses(bytes: &[u8], family: Family) -> Vec<IpAddr> {
    match family {
        Family::V4 => bytes
            .chunks_exact(4)
            .filter_map(|c| <[u8; 4]>::try_from(c).ok())
            .map(IpAddr::from)
            .collect(),
        Family::V6 => bytes
            .chunks_exact(16)
            .filter_map(|c| <[u8; 16]>::try_from(c).ok())
            .map(IpAddr::from)
            .collect(),
    }
}

/// The optional address-list check (RFC 5798 §7.1 "MAY verify"), as a set
/// comparison: implementations list the VIPs in their own order. Returns
/// whether the owner's list differed (kept, but worth a log line).
fn check_addresses(got: &[IpAddr], ours: &[IpAddr], priority: u8) -> Result<bool, Drop> {
    if ours.is_empty() || same_set(got, ours) {
        return Ok(false);
    }
    if priority == 255 {
        Ok(true)
    } else {
        Err(Drop::AddressListMismatch)
    }
}

fn same_set(a: &[IpAddr], b: &[IpAddr]) -> bool {
    let mut a = a.to_vec();
    let mut b = b.to_vec();
    a.sort_unstable();
    b.sort_unstable();
    a == b
}

// ===== send =====

/// The VRRP message for `advert` (the kernel builds the IP header), with
/// the checksum `checksum` asks for where there is a choice (v3 over IPv4;
/// see [`Checksum`]). v2 appends the 8 bytes of auth data: auth type 1 with
/// the password when `auth` is `Some`, type 0 and zeros when `None`.
///
/// `src` and `dst` are the addresses the kernel will put in the IP header;
/// the pseudo-header checksums depend on them.
pub fn encode(
    advert: &Advert,
    src: IpAddr,
    dst: IpAddr,
    checksum: Checksum,
    auth: Option<[u8; 8]>,
) -> Result<Vec<u8>, EncodeError> {
    let family = encode_family(advert, src, dst)?;
    if advert.version == Version::V3 && auth.is_some() {
        return Err(EncodeError::AuthInV3);
    }
    let count = address_count(advert, family)?;
    let interval = interval_field(advert)?;

    let mut msg = Vec::with_capacity(message_len(advert.addresses.len(), advert.version, family));
    msg.push((version_nibble(advert.version) << 4) | TYPE_ADVERTISEMENT);
    msg.extend([advert.vrid, advert.priority, count]);
    let auth_type = match auth {
        Some(_) => AUTH_SIMPLE_TEXT,
        None => AUTH_NONE,
    };
    match advert.version {
        Version::V3 => msg.extend(interval.to_be_bytes()),
        Version::V2 => msg.extend([auth_type, interval.to_be_bytes()[1]]),
    }
    msg.extend([0, 0]);
    for address in &advert.addresses {
        match address {
            IpAddr::V4(a) => msg.extend(a.octets()),
            IpAddr::V6(a) => msg.extend(a.octets()),
        }
    }
    if advert.version == Version::V2 {
        msg.extend(auth.unwrap_or_default());
    }
    let kind = effective_checksum(advert.version, family, checksum);
    let sum = compute_checksum(kind, src, dst, &msg);
    msg[CHECKSUM_AT..CHECKSUM_AT + 2].copy_from_slice(&sum.to_be_bytes());
    Ok(msg)
}

fn encode_family(advert: &Advert, src: IpAddr, dst: IpAddr) -> Result<Family, EncodeError> {
    let family = Family::of(src);
    let one_family =
        Family::of(dst) == family && advert.addresses.iter().all(|a| Family::of(*a) == family);
    if !one_family || (advert.version == Version::V2 && family == Family::V6) {
        return Err(EncodeError::FamilyMismatch);
    }
    Ok(family)
}

fn address_count(advert: &Advert, family: Family) -> Result<u8, EncodeError> {
    let count = advert.addresses.len();
    if count == 0 {
        return Err(EncodeError::NoAddresses);
    }
    let room = MAX_MESSAGE - message_len(0, advert.version, family);
    let max = (room / family.len()).min(usize::from(u8::MAX));
    match u8::try_from(count) {
        Ok(n) if count <= max => Ok(n),
        _ => Err(EncodeError::TooManyAddresses { count, max }),
    }
}

/// The interval as the wire carries it: v3 centiseconds (12 bits), v2
/// whole seconds (8 bits).
fn interval_field(advert: &Advert) -> Result<u16, EncodeError> {
    let cs = advert.interval_cs;
    let fits = match advert.version {
        Version::V3 => (1..=V3_INTERVAL_MASK).contains(&cs),
        Version::V2 => cs % 100 == 0 && (1..=V2_MAX_SECONDS).contains(&(cs / 100)),
    };
    if !fits {
        return Err(EncodeError::Interval {
            version: advert.version,
            interval_cs: cs,
        });
    }
    Ok(match advert.version {
        Version::V3 => cs,
        Version::V2 => cs / 100,
    })
}

fn version_nibble(version: Version) -> u8 {
    match version {
        Version::V2 => 2,
        Version::V3 => 3,
    }
}

fn effective_checksum(version: Version, family: Family, wanted: Checksum) -> Checksum {
    match (version, family) {
        (Version::V2, _) => Checksum::MessageOnly,
        (Version::V3, Family::V6) => Checksum::PseudoHeader,
        (Version::V3, Family::V4) => wanted,
    }
}

// ===== checksum =====

/// The checksum field's value for `msg` (its own checksum field counted as
/// zero), with or without the pseudo-header.
fn compute_checksum(kind: Checksum, src: IpAddr, dst: IpAddr, msg: &[u8]) -> u16 {
    let mut sum = ones_sum(0, msg.get(..CHECKSUM_AT).unwrap_or_default());
    sum = ones_sum(sum, msg.get(CHECKSUM_AT + 2..).unwrap_or_default());
    if kind == Checksum::PseudoHeader {
        sum += pseudo_header_sum(src, dst, msg.len());
    }
    !fold(sum)
}

/// IPv4 (RFC 768 layout, as keepalived builds it): source, destination, a
/// zero byte, the protocol, the 16-bit message length. IPv6 (RFC 8200
/// §8.1): source, destination, the 32-bit length, three zero bytes, the
/// next header. Zero bytes add nothing, so only the rest is summed.
fn pseudo_header_sum(src: IpAddr, dst: IpAddr, len: usize) -> u64 {
    let addresses = address_sum(src) + address_sum(dst);
    let len = u64::try_from(len).unwrap_or(u64::MAX);
    let len_words = match src {
        IpAddr::V4(_) => len & 0xffff,
        IpAddr::V6(_) => ((len >> 16) & 0xffff) + (len & 0xffff),
    };
    addresses + len_words + u64::from(PROTOCOL)
}

fn address_sum(ip: IpAddr) -> u64 {
    match ip {
        IpAddr::V4(a) => ones_sum(0, &a.octets()),
        IpAddr::V6(a) => ones_sum(0, &a.octets()),
    }
}

/// RFC 1071: big-endian 16-bit words, an odd last byte padded with zero.
/// Hand-written because it is this short; u64 so no message can overflow.
fn ones_sum(mut acc: u64, bytes: &[u8]) -> u64 {
    let mut words = bytes.chunks_exact(2);
    for word in &mut words {
        acc += u64::from(u16::from_be_bytes([word[0], word[1]]));
    }
    if let [last] = words.remainder() {
        acc += u64::from(*last) << 8;
    }
    acc
}

/// Adds the carries back in (end-around carry) until 16 bits remain.
fn fold(mut acc: u64) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    u16::try_from(acc).unwrap_or(u16::MAX)
}

fn read_u16(bytes: &[u8], at: usize) -> u16 {
    match bytes.get(at..at + 2) {
        Some(&[hi, lo]) => u16::from_be_bytes([hi, lo]),
        _ => 0,
    }
}

#[cfg(test)]
mod tests;
