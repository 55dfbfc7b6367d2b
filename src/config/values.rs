//! Single values of the cluster file: names, addresses, durations, sizes.
//! Each check returns the message to show on failure; where the value sits in
//! the file is the caller's business.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;

use super::model::{Algorithm, PoolMode, VrrpVersion};
use super::raw::{OrOff, RawSize};
use super::suggest::closest;

/// `[cluster] name`: it tags every heartbeat, so keep it plain.
pub fn cluster_name(name: &str) -> Result<(), String> {
    let len = name.chars().count();
    if !(1..=63).contains(&len) {
        return Err(format!(
            "the cluster name must be 1 to 63 characters long, not {len}"
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        return Err(format!(
            "the cluster name may hold only lowercase letters, digits and '-', not {c:?}"
        ));
    }
    Ok(())
}

/// A host name as the node's own `hostname` reports it: one RFC 1123 label.
pub fn hostname(name: &str) -> Result<(), String> {
    const RULE: &str = "a hostname is 1 to 63 lowercase letters, digits and '-', \
                        not starting or ending with '-'";
    let why = if name.is_empty() {
        "it is empty".to_string()
    } else if name.chars().count() > 63 {
        format!("it is {} characters long", name.chars().count())
    } else if name.contains('.') {
        "it contains '.': use the short name, without the domain".to_string()
    } else if name.chars().any(|c| c.is_ascii_uppercase()) {
        format!(
            "it has uppercase letters (write \"{}\")",
            name.to_lowercase()
        )
    } else if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        format!("it contains {c:?}")
    } else if name.starts_with('-') || name.ends_with('-') {
        "it starts or ends with '-'".to_string()
    } else {
        return Ok(());
    };
    Err(format!("invalid hostname \"{name}\": {why}; {RULE}"))
}

/// An Ethernet address, `dc:a6:32:01:02:03` (or with '-'), as the lowercase
/// colon form that `/sys/class/net/*/address` shows.
pub fn mac(text: &str) -> Result<String, String> {
    let parts: Vec<&str> = text.split([':', '-']).collect();
    let ok = parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.chars().all(|c| c.is_ascii_hexdigit()));
    if !ok {
        return Err(format!(
            "invalid MAC address \"{text}\": write six pairs of hex digits separated by ':', \
             like \"dc:a6:32:01:02:03\" (`ip link` shows it after \"link/ether\")"
        ));
    }
    Ok(parts.join(":").to_lowercase())
}

/// An address written with its prefix length, like `192.0.2.11/24`, which
/// must name a host (not the network or broadcast address of its subnet).
pub fn address_with_prefix(text: &str, example: &str) -> Result<IpNet, String> {
    let net = match text.parse::<IpNet>() {
        Ok(net) => net,
        Err(_) => return Err(why_not_address(text, example)),
    };
    if net.prefix_len() < net.max_prefix_len().saturating_sub(1) {
        if net.addr() == net.network() {
            return Err(format!(
                "{} is the network address of {}, not a host address",
                net.addr(),
                net.trunc()
            ));
        }
        if net.addr().is_ipv4() && net.addr() == net.broadcast() {
            return Err(format!(
                "{} is the broadcast address of {}, not a host address",
                net.addr(),
                net.trunc()
            ));
        }
    }
    Ok(net)
}

fn why_not_address(text: &str, example: &str) -> String {
    let expected = format!("expected an IP address with a prefix length, like {example}");
    if let Ok(addr) = text.trim().parse::<IpAddr>() {
        let prefix = if addr.is_ipv4() { 24 } else { 64 };
        return format!("{expected}: \"{text}\" has no prefix length (e.g. \"{addr}/{prefix}\")");
    }
    if let Some((addr, prefix)) = text.split_once('/') {
        if let Ok(addr) = addr.parse::<IpAddr>() {
            let max = if addr.is_ipv4() { 32 } else { 128 };
            return format!(
                "{expected}: the prefix length \"{prefix}\" is not a number from 0 to {max}"
            );
        }
        return format!("{expected}: \"{addr}\" is not an IP address");
    }
    format!("{expected}, found \"{text}\"")
}

/// humantime strings: "1s", "500ms", "7d", "1h 30m". Zero would mean "never"
/// or "always" depending on the setting, so it is refused.
pub fn duration(text: &str) -> Result<Duration, String> {
    let expected = "expected a duration like \"1s\", \"500ms\" or \"7d\"";
    match humantime::parse_duration(text.trim()) {
        Ok(d) if d.is_zero() => Err(format!("{expected}: it must be longer than zero")),
        Ok(d) => Ok(d),
        // Only the unit error says something the example does not already.
        Err(e @ humantime::DurationError::UnknownUnit { .. }) => {
            Err(format!("{expected}, found \"{text}\": {e}"))
        }
        Err(_) => Err(format!("{expected}, found \"{text}\"")),
    }
}

/// The smallest store worth having: below this the trimming would thrash.
pub const MIN_STORE_BYTES: u64 = 1 << 20;

/// "64MiB", "512 KiB", "1GiB", "4096B" or a plain number of bytes.
pub fn size(raw: &RawSize) -> Result<u64, String> {
    let bytes = size_bytes(raw)?;
    if bytes < MIN_STORE_BYTES {
        return Err(format!("the store needs at least 1MiB, not {bytes} bytes"));
    }
    Ok(bytes)
}

/// A size for `key` from `min` to `max` bytes (both inclusive).
pub fn size_in(raw: &RawSize, min: u64, max: Option<u64>, key: &str) -> Result<u64, String> {
    let bytes = size_bytes(raw)?;
    match max {
        Some(max) if !(min..=max).contains(&bytes) => Err(format!(
            "`{key}` must be from {} to {}, found {}",
            show_size(min),
            show_size(max),
            show_size(bytes)
        )),
        None if bytes < min => Err(format!(
            "`{key}` must be at least {}, found {}",
            show_size(min),
            show_size(bytes)
        )),
        _ => Ok(bytes),
    }
}

/// `max_body_size`: a size, or `false` for no limit. Zero is refused: it
/// would refuse every upload, and reads like "no limit" (nginx's meaning).
pub fn body_limit(raw: &OrOff<RawSize>) -> Result<Option<u64>, String> {
    let OrOff::On(size) = raw else {
        return Ok(None);
    };
    match size_bytes(size)? {
        0 => Err(
            "`max_body_size` of 0 would refuse every request body; write max_body_size = false for no limit"
                .to_string(),
        ),
        bytes => Ok(Some(bytes)),
    }
}

fn size_bytes(raw: &RawSize) -> Result<u64, String> {
    let expected = "expected a size like \"64MiB\" (units B, KiB, MiB, GiB) or a number of bytes";
    match raw {
        RawSize::Bytes(n) => u64::try_from(*n).map_err(|_| format!("{expected}, found {n}")),
        RawSize::Text(text) => size_text(text).map_err(|why| format!("{expected}: {why}")),
    }
}

/// "16KiB" when the size is a whole number of a unit, else "1000 bytes".
pub fn show_size(bytes: u64) -> String {
    for (unit, factor) in [("GiB", 1u64 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)] {
        if bytes >= factor && bytes % factor == 0 {
            return format!("{}{unit}", bytes / factor);
        }
    }
    format!("{bytes} bytes")
}

fn size_text(text: &str) -> Result<u64, String> {
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(trimmed.len());
    let (digits, unit) = trimmed.split_at(split);
    let number: u64 = digits
        .parse()
        .map_err(|_| format!("\"{text}\" does not start with a whole number"))?;
    let factor: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "KB" | "kB" | "MB" | "GB" | "K" | "M" | "G" => {
            return Err(format!(
                "unit \"{}\" is ambiguous: write KiB, MiB or GiB (powers of 1024)",
                unit.trim()
            ));
        }
        other => return Err(format!("unknown unit \"{other}\"")),
    };
    number
        .checked_mul(factor)
        .ok_or_else(|| format!("\"{text}\" is too large"))
}

/// `root` / `brick`: absolute, so the meaning does not hang on the working
/// directory systemd happens to start piha in.
pub fn absolute_dir(text: &str) -> Result<PathBuf, String> {
    let path = PathBuf::from(text);
    if text.is_empty() || !path.is_absolute() {
        return Err(format!(
            "expected an absolute directory path starting with '/', found \"{text}\""
        ));
    }
    Ok(path)
}

/// `tls` cert and key, an access log: absolute for the same reason.
pub fn absolute_file(text: &str) -> Result<PathBuf, String> {
    let path = PathBuf::from(text);
    if text.is_empty() || !path.is_absolute() {
        return Err(format!(
            "expected an absolute file path starting with '/', found \"{text}\""
        ));
    }
    Ok(path)
}

/// Ports are written as TOML integers; 0 would mean "any port".
pub fn port(n: i64) -> Result<u16, String> {
    match u16::try_from(n) {
        Ok(p) if p != 0 => Ok(p),
        _ => Err(format!("expected a port number from 1 to 65535, found {n}")),
    }
}

/// VRRP priority: 255 belongs to the owner of the address and 0 means "I am
/// leaving", so configured priorities are 1..=254.
pub fn priority(n: i64) -> Result<u8, String> {
    match u8::try_from(n) {
        Ok(p) if (1..=254).contains(&p) => Ok(p),
        _ => Err(format!(
            "priority must be from 1 to 254, found {n} (255 is reserved for the address owner, 0 for leaving)"
        )),
    }
}

/// `https_port = 443` or `https_port = false` (off).
pub fn port_or_off(raw: &OrOff<i64>) -> Result<Option<u16>, String> {
    match raw {
        OrOff::Off => Ok(None),
        OrOff::On(n) => port(*n).map(Some),
    }
}

/// A whole number for `key` within `range`, like `rise` 1..=100.
pub fn count(n: i64, key: &str, range: std::ops::RangeInclusive<u32>) -> Result<u32, String> {
    match u32::try_from(n) {
        Ok(c) if range.contains(&c) => Ok(c),
        _ => Err(format!(
            "`{key}` must be from {} to {}, found {n}",
            range.start(),
            range.end()
        )),
    }
}

/// Like `duration`, but "0s" is allowed and means "off" (`slow_start`).
pub fn duration_or_zero(text: &str) -> Result<Duration, String> {
    match humantime::parse_duration(text.trim()) {
        Ok(d) => Ok(d),
        Err(_) => duration(text).map_err(|why| format!("{why} (or \"0s\" for off)")),
    }
}

/// The HTTP status a healthy backend answers the health check with.
pub fn status_code(n: i64) -> Result<u16, String> {
    match u16::try_from(n) {
        Ok(s) if (100..=599).contains(&s) => Ok(s),
        _ => Err(format!(
            "`expect` must be an HTTP status from 100 to 599, like 200, found {n}"
        )),
    }
}

/// The path the health check asks for; it goes into the request line as is.
pub fn health_path(text: &str) -> Result<String, String> {
    if !text.starts_with('/') {
        return Err(format!(
            "the health check path must start with '/', like \"/health\", found \"{text}\""
        ));
    }
    if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "the health check path must not contain spaces or control characters: \"{text}\""
        ));
    }
    Ok(text.to_string())
}

const ALGORITHMS: [Algorithm; 4] = [
    Algorithm::RoundRobin,
    Algorithm::LeastConn,
    Algorithm::Source,
    Algorithm::Random2,
];

/// `algorithm = "leastconn"`: unknown names list the valid ones.
pub fn algorithm(text: &str) -> Result<Algorithm, String> {
    if let Some(a) = ALGORITHMS.into_iter().find(|a| a.name() == text) {
        return Ok(a);
    }
    let valid: Vec<&str> = ALGORITHMS.iter().map(|a| a.name()).collect();
    let mut message = format!(
        "unknown algorithm \"{text}\"; valid ones are {}",
        valid.join(", ")
    );
    if let Some(s) = closest(&text.replace(['-', '_', ' '], ""), &valid) {
        message.push_str(&format!(" (did you mean \"{s}\"?)"));
    }
    Err(message)
}

/// A static backend: an IP address and a port, like `192.0.2.50:8080` or
/// `[2001:db8::50]:8080`. Names are refused: the balancer never resolves
/// DNS, so a backend cannot vanish with a resolver.
pub fn backend_address(text: &str) -> Result<SocketAddr, String> {
    socket_address(text, 8080)
}

/// An IP address and port; messages show `example_port` in their examples
/// (8080 for a web backend, 5432 for a PostgreSQL server).
pub fn socket_address(text: &str, example_port: u16) -> Result<SocketAddr, String> {
    let expected = format!("expected an IP address and port, like \"192.0.2.50:{example_port}\"");
    if let Ok(addr) = text.trim().parse::<SocketAddr>() {
        if addr.port() == 0 {
            return Err(format!("{expected}: port 0 is not a port to connect to"));
        }
        return Ok(addr);
    }
    if let Ok(ip) = text.trim().parse::<IpAddr>() {
        let example = SocketAddr::new(ip, example_port);
        return Err(format!(
            "{expected}: \"{text}\" has no port (e.g. \"{example}\")"
        ));
    }
    let host = text.rsplit_once(':').map_or(text, |(host, _)| host);
    if host.parse::<IpAddr>().is_err() {
        return Err(format!(
            "{expected}: \"{host}\" is not an IP address (host names are not resolved)"
        ));
    }
    Err(format!(
        "{expected}: the port in \"{text}\" is not a number from 1 to 65535"
    ))
}

const POOL_MODES: [PoolMode; 2] = [PoolMode::Transaction, PoolMode::Session];

/// `pool_mode = "transaction"`: unknown names list the valid ones.
pub fn pool_mode(text: &str) -> Result<PoolMode, String> {
    if let Some(m) = POOL_MODES.into_iter().find(|m| m.name() == text) {
        return Ok(m);
    }
    let valid: Vec<&str> = POOL_MODES.iter().map(|m| m.name()).collect();
    let mut message = format!(
        "unknown pool mode \"{text}\"; valid ones are {}",
        valid.join(", ")
    );
    if text == "statement" {
        message.push_str(
            " (statement pooling breaks multi-statement transactions; piha has no such mode)",
        );
    } else if let Some(s) = closest(text, &valid) {
        message.push_str(&format!(" (did you mean \"{s}\"?)"));
    }
    Err(message)
}

/// A PostgreSQL role or database name (`what` is "a user name", ...): at
/// most 63 bytes, as PostgreSQL truncates longer ones (NAMEDATALEN), and no
/// NUL, which the wire protocol cannot carry.
pub fn pg_name(name: &str, what: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err(format!("{what} must not be empty"));
    }
    if name.len() > 63 {
        return Err(format!(
            "{what} must be at most 63 bytes long (PostgreSQL cuts longer names), not {}",
            name.len()
        ));
    }
    if name.contains('\0') {
        return Err(format!("{what} must not contain a NUL character"));
    }
    Ok(())
}

/// `auth_query`: the pooler runs it with the user name as its one parameter.
pub fn auth_query(text: &str) -> Result<String, String> {
    if !text.contains("$1") {
        return Err(
            "`auth_query` must contain $1, where the user name goes: the pooler passes it as a parameter"
                .to_string(),
        );
    }
    Ok(text.to_string())
}

/// A tcp service's name, shown in stats and used in metric labels.
pub fn service_name(name: &str) -> Result<(), String> {
    let len = name.chars().count();
    if !(1..=63).contains(&len) {
        return Err(format!(
            "a tcp service name must be 1 to 63 characters long, not {len}"
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        return Err(format!(
            "a tcp service name may hold only lowercase letters, digits and '-', not {c:?}"
        ));
    }
    Ok(())
}

/// A name from a fixed list (`what` is "mode", "checksum"): an unknown one
/// lists the valid ones and the nearest of them.
pub fn one_of<T: Copy>(text: &str, what: &str, choices: &[(&str, T)]) -> Result<T, String> {
    if let Some((_, value)) = choices.iter().find(|(name, _)| *name == text) {
        return Ok(*value);
    }
    let valid: Vec<&str> = choices.iter().map(|(name, _)| *name).collect();
    let mut message = format!(
        "unknown {what} \"{text}\"; valid ones are {}",
        valid.join(", ")
    );
    if let Some(s) = closest(&text.replace(['-', ' '], "_"), &valid) {
        message.push_str(&format!(" (did you mean \"{s}\"?)"));
    }
    Err(message)
}

/// `[vrrp] version`: 2 (RFC 3768) or 3 (RFC 5798).
pub fn vrrp_version(n: i64) -> Result<VrrpVersion, String> {
    match n {
        2 => Ok(VrrpVersion::V2),
        3 => Ok(VrrpVersion::V3),
        _ => Err(format!("`version` must be 2 or 3, found {n}")),
    }
}

/// The advert interval as each version's packet carries it: v3 in
/// hundredths of a second in 12 bits, v2 in whole seconds in 8 bits.
pub fn advert_interval(d: Duration, version: VrrpVersion) -> Result<Duration, String> {
    let shown = humantime::format_duration(d);
    match version {
        VrrpVersion::V3 => {
            let step = Duration::from_millis(10);
            let whole_steps = d.as_nanos() % step.as_nanos() == 0;
            if whole_steps && (step..=Duration::from_millis(40_950)).contains(&d) {
                return Ok(d);
            }
            Err(format!(
                "`interval` must be a multiple of 10ms from 10ms to 40.95s, found {shown}"
            ))
        }
        VrrpVersion::V2 => {
            if d.subsec_nanos() == 0 && (1..=255).contains(&d.as_secs()) {
                return Ok(d);
            }
            Err(format!(
                "with version = 2, `interval` must be whole seconds from 1s to 255s, found {shown}"
            ))
        }
    }
}

/// A duration from zero up to `max`, named `key` in the message.
pub fn duration_at_most(text: &str, key: &str, max: Duration) -> Result<Duration, String> {
    let d = duration_or_zero(text)?;
    if d > max {
        return Err(format!(
            "`{key}` must be at most {}, found {}",
            humantime::format_duration(max),
            humantime::format_duration(d)
        ));
    }
    Ok(d)
}

/// A `tcp_user_timeout` (`crate::tcp_timeout`), named `key` in the
/// message: zero (the kernel's defaults) up to an hour. The kernel takes
/// TCP_USER_TIMEOUT in milliseconds (a u32); beyond an hour it no longer
/// does what the setting is for, noticing a peer that lost its power.
pub fn tcp_user_timeout(text: &str, key: &str) -> Result<Duration, String> {
    duration_at_most(text, key, Duration::from_secs(3600))
}

/// A network interface name as the kernel takes it (`dev_valid_name`):
/// 1 to 15 bytes, not "." or "..", no '/', ':' or white space.
pub fn interface_name(text: &str) -> Result<String, String> {
    let bad = text.is_empty()
        || text.len() > 15
        || text == "."
        || text == ".."
        || text
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control());
    if bad {
        return Err(format!(
            "invalid interface name \"{text}\": 1 to 15 characters without '/', ':' or spaces, like \"eth0\""
        ));
    }
    Ok(text.to_string())
}

/// VRRPv2 simple-text authentication: 8 bytes in the packet, printable
/// ASCII so that keepalived's config can hold the same. The message never
/// repeats the password.
pub fn vrrp_auth(text: &str) -> Result<String, String> {
    if !text.bytes().all(|b| (0x20..=0x7e).contains(&b)) {
        return Err("`auth` may hold only printable ASCII characters".to_string());
    }
    // ASCII: a byte is a character.
    if text.is_empty() || text.len() > 8 {
        return Err(format!(
            "`auth` must be 1 to 8 characters long (VRRPv2 carries 8 bytes), not {}",
            text.len()
        ));
    }
    Ok(text.to_string())
}

/// A priority to lose (`track`, a check's `weight`): 0..=254, 0 = Fault.
pub fn weight(n: i64, key: &str) -> Result<u8, String> {
    match u8::try_from(n) {
        Ok(w) if w <= 254 => Ok(w),
        _ => Err(format!(
            "`{key}` must be from 0 to 254 (0 gives up the VIP), found {n}"
        )),
    }
}

/// A `track` weight, or `false` for not tracked.
pub fn weight_or_off(raw: &OrOff<i64>, key: &str) -> Result<Option<u8>, String> {
    match raw {
        OrOff::Off => Ok(None),
        OrOff::On(n) => weight(*n, key).map(Some).map_err(|_| {
            format!(
                "`{key}` must be from 0 to 254 (0 gives up the VIP), or false for not tracked, found {n}"
            )
        }),
    }
}

/// SCHED_FIFO priority 1..=99, or `false` for normal scheduling.
pub fn realtime_priority(raw: &OrOff<i64>) -> Result<Option<u8>, String> {
    match raw {
        OrOff::Off => Ok(None),
        OrOff::On(n) => match u8::try_from(*n) {
            Ok(p) if (1..=99).contains(&p) => Ok(Some(p)),
            _ => Err(format!(
                "`realtime_priority` must be from 1 to 99, or false for normal scheduling, found {n}"
            )),
        },
    }
}

/// A VRRP check's name, shown in logs and status: short and on one line.
pub fn check_name(name: &str) -> Result<(), String> {
    let len = name.chars().count();
    if !(1..=63).contains(&len) {
        return Err(format!(
            "a check name must be 1 to 63 characters long, not {len}"
        ));
    }
    if name.chars().any(|c| c.is_control()) {
        return Err("a check name must not contain control characters".to_string());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostnames() {
        assert!(hostname("pi-1").is_ok());
        assert!(hostname("a").is_ok());
        for bad in [
            "",
            "-pi",
            "pi-",
            "Pi-1",
            "pi_1",
            "pi-1.lan",
            &"x".repeat(64),
        ] {
            assert!(hostname(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn addresses() {
        assert!(address_with_prefix("192.0.2.11/24", "x").is_ok());
        assert!(address_with_prefix("2001:db8::11/64", "x").is_ok());
        assert!(address_with_prefix("192.0.2.11/32", "x").is_ok());
        let no_prefix = address_with_prefix("192.0.2.11", "x").unwrap_err();
        assert!(no_prefix.contains("no prefix length"), "{no_prefix}");
        assert!(address_with_prefix("192.0.2.11/33", "x").is_err());
        assert!(address_with_prefix("192.0.2.300/24", "x").is_err());
        assert!(address_with_prefix("192.0.2.0/24", "x").is_err());
        assert!(address_with_prefix("192.0.2.255/24", "x").is_err());
    }

    #[test]
    fn durations_and_sizes() {
        assert_eq!(duration("1s"), Ok(Duration::from_secs(1)));
        assert_eq!(duration("7d"), Ok(Duration::from_secs(7 * 86400)));
        assert!(duration("0s").is_err());
        assert!(duration("soon").is_err());
        assert_eq!(size(&RawSize::Text("64MiB".into())), Ok(64 << 20));
        assert_eq!(size(&RawSize::Text("2 GiB".into())), Ok(2 << 30));
        assert_eq!(size(&RawSize::Bytes(1 << 21)), Ok(1 << 21));
        assert!(size(&RawSize::Text("64MB".into())).is_err());
        assert!(size(&RawSize::Text("MiB".into())).is_err());
        assert!(size(&RawSize::Bytes(-1)).is_err());
        assert!(size(&RawSize::Text("99999999999999GiB".into())).is_err());
    }

    #[test]
    fn new_balancer_values() {
        assert_eq!(algorithm("leastconn"), Ok(Algorithm::LeastConn));
        let e = algorithm("round_robin").unwrap_err();
        assert!(e.contains("(did you mean \"roundrobin\"?)"), "{e}");
        assert!(!algorithm("fastest").unwrap_err().contains("did you mean"));
        assert_eq!(
            backend_address("192.0.2.50:8080").map(|a| a.to_string()),
            Ok("192.0.2.50:8080".to_string())
        );
        assert!(backend_address("[2001:db8::5]:80").is_ok());
        for (bad, why) in [
            ("192.0.2.50", "has no port (e.g. \"192.0.2.50:8080\")"),
            ("2001:db8::5", "has no port (e.g. \"[2001:db8::5]:8080\")"),
            ("web.lan:80", "\"web.lan\" is not an IP address"),
            ("192.0.2.50:0", "port 0"),
            ("192.0.2.50:http", "is not a number from 1 to 65535"),
        ] {
            let e = backend_address(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
        assert_eq!(duration_or_zero("0s"), Ok(Duration::ZERO));
        assert_eq!(duration_or_zero("10s"), Ok(Duration::from_secs(10)));
        assert!(duration_or_zero("soon").is_err());
        assert_eq!(count(100, "rise", 1..=100), Ok(100));
        assert!(count(-1, "queue", 0..=5).is_err());
        assert!(health_path("/health ok").is_err());
        assert!(service_name("redis-2").is_ok() && service_name("").is_err());
    }

    #[test]
    fn postgres_values() {
        assert_eq!(pool_mode("session"), Ok(PoolMode::Session));
        let e = pool_mode("sesion").unwrap_err();
        assert!(e.ends_with("(did you mean \"session\"?)"), "{e}");
        assert!(pg_name("app", "a user name").is_ok());
        assert!(pg_name(&"é".repeat(31), "x").is_ok(), "62 bytes");
        assert!(pg_name(&"é".repeat(32), "x").is_err(), "64 bytes");
        assert!(pg_name("", "x").is_err() && pg_name("a\0b", "x").is_err());
        assert!(auth_query("SELECT 1").is_err() && auth_query("SELECT $1").is_ok());
        let e = socket_address("192.0.2.50", 5432).unwrap_err();
        assert!(e.contains("(e.g. \"192.0.2.50:5432\")"), "{e}");
    }

    #[test]
    fn bounded_sizes_and_switches() {
        let text = |t: &str| RawSize::Text(t.to_string());
        assert_eq!(size_in(&text("1KiB"), 1024, Some(1 << 20), "k"), Ok(1024));
        let e = size_in(&text("2MiB"), 1024, Some(1 << 20), "k").unwrap_err();
        assert_eq!(e, "`k` must be from 1KiB to 1MiB, found 2MiB");
        let e = size_in(&RawSize::Bytes(1000), 64 << 10, None, "max_size").unwrap_err();
        assert_eq!(e, "`max_size` must be at least 64KiB, found 1000 bytes");
        assert_eq!(body_limit(&OrOff::Off), Ok(None));
        assert_eq!(body_limit(&OrOff::On(text("64MiB"))), Ok(Some(64 << 20)));
        assert!(body_limit(&OrOff::On(RawSize::Bytes(0))).is_err());
        assert_eq!(port_or_off(&OrOff::Off), Ok(None));
        assert_eq!(port_or_off(&OrOff::On(443)), Ok(Some(443)));
        assert!(port_or_off(&OrOff::On(0)).is_err());
        assert_eq!(show_size(3 << 30), "3GiB");
        assert_eq!(show_size(1536), "1536 bytes");
    }

    #[test]
    fn vrrp_values() {
        let ms = Duration::from_millis;
        for ok in [10, 100, 990, 40_950] {
            assert_eq!(advert_interval(ms(ok), VrrpVersion::V3), Ok(ms(ok)));
        }
        for bad in [0, 5, 15, 40_960, 41_000] {
            assert!(advert_interval(ms(bad), VrrpVersion::V3).is_err(), "{bad}");
        }
        for ok in [1000, 255_000] {
            assert_eq!(advert_interval(ms(ok), VrrpVersion::V2), Ok(ms(ok)));
        }
        for bad in [0, 100, 1500, 256_000] {
            assert!(advert_interval(ms(bad), VrrpVersion::V2).is_err(), "{bad}");
        }
        assert!(interface_name("eth0").is_ok() && interface_name("wlan0.100").is_ok());
        for bad in ["", ".", "..", "eth0:1", "a/b", "a b", "abcdefghijklmnop"] {
            assert!(interface_name(bad).is_err(), "{bad:?}");
        }
        assert!(vrrp_auth("12345678").is_ok());
        let e = vrrp_auth("pässe").unwrap_err();
        assert!(!e.contains("pässe"), "{e}");
        assert!(vrrp_auth("").is_err() && vrrp_auth("123456789").is_err());
        assert_eq!(weight(254, "w"), Ok(254));
        assert!(weight(255, "w").is_err() && weight(-1, "w").is_err());
        assert_eq!(realtime_priority(&OrOff::Off), Ok(None));
        assert!(realtime_priority(&OrOff::On(100)).is_err());
        let choices = [("pseudo_header", 1), ("message_only", 2)];
        let e = one_of("pseudo header", "checksum", &choices).unwrap_err();
        assert!(e.ends_with("(did you mean \"pseudo_header\"?)"), "{e}");
        assert_eq!(duration_at_most("0s", "d", ms(1)), Ok(Duration::ZERO));
        assert!(duration_at_most("2ms", "d", ms(1)).is_err());
    }
}
