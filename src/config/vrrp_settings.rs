//! The cluster-wide `[vrrp]` section over the built-in values: which VRRP
//! the balancer nodes speak, how fast, to whom, what lowers a node's
//! priority and what runs when the VIP moves. Settings that would be
//! silently ignored (peers in multicast mode, a password on VRRPv3) are
//! errors: a setting that does nothing is a surprise during an outage.

use std::collections::HashSet;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use toml::Spanned;

use super::diagnostic::Report;
use super::model::*;
use super::overlay::{count, duration, field, required, timeout_within_interval, unique};
use super::raw::{OrOff, RawAnnounce, RawTable, RawTrack, RawVrrp, RawVrrpCheck};
use super::roles::role_span;
use super::validate::{ClusterFacts, NodeFacts, PatternFacts};
use super::values;

const MODES: &[(&str, bool)] = &[("multicast", false), ("unicast", true)];
const CHECKSUMS: &[(&str, VrrpChecksum)] = &[
    ("auto", VrrpChecksum::Auto),
    ("pseudo_header", VrrpChecksum::PseudoHeader),
    ("message_only", VrrpChecksum::MessageOnly),
];
const COUNT: std::ops::RangeInclusive<u32> = 1..=100;
/// A master that waits longer than this to take back the VIP is more
/// likely a typo than a warm-up.
const MAX_PREEMPT_DELAY: Duration = Duration::from_secs(3600);
/// More than this between the announcements of one takeover and switches
/// keep forwarding to the old master for too long.
const MAX_ANNOUNCE_GAP: Duration = Duration::from_secs(1);
/// Refreshing the neighbours' caches more often only adds traffic.
const MIN_REFRESH: Duration = Duration::from_secs(1);
/// Below this a check would start a process several times a second.
const MIN_CHECK_INTERVAL: Duration = Duration::from_millis(100);
const CHECK_INTERVAL: Duration = Duration::from_secs(1);
const CHECK_FALL_RISE: u32 = 2;
const RFC_5798: &str = "RFC 5798";

/// The nodes and patterns, for the checks that look at the balancers.
pub struct Members<'a, 'r> {
    pub nodes: &'a [NodeFacts<'r>],
    pub patterns: &'a [PatternFacts<'r>],
}

pub fn vrrp(
    raw: Option<&RawVrrp>,
    cluster: &ClusterFacts,
    members: Members<'_, '_>,
    report: &mut Report<'_>,
) -> VrrpSettings {
    let base = VrrpSettings::default();
    let Some(raw) = raw else {
        return base;
    };
    needs_vip(raw, cluster, &members, report);
    let version = version(raw, report);
    if let Some(version) = version {
        v2_is_ipv4_only(raw, version, cluster, report);
    }
    let announce = announce(raw.announce.as_ref(), &base, report);
    let (track_http, track_pooler) = track(raw.track.as_ref(), &base, report);
    let preempt_delay =
        |t: &String| values::duration_at_most(t, "preempt_delay", MAX_PREEMPT_DELAY);
    VrrpSettings {
        version: version.unwrap_or(base.version),
        vrid: field(&raw.vrid, &base.vrid, |n| vrid(*n), report),
        interface: field(
            &raw.interface,
            &base.interface,
            |t| values::interface_name(t).map(Some),
            report,
        ),
        interval: interval(raw, version, report),
        preempt: raw.preempt.as_ref().map_or(base.preempt, |b| *b.get_ref()),
        preempt_delay: field(
            &raw.preempt_delay,
            &base.preempt_delay,
            preempt_delay,
            report,
        ),
        mode: mode(raw, cluster, members.nodes, report),
        auth: auth(raw, version, report),
        checksum: field(
            &raw.checksum,
            &base.checksum,
            |t| values::one_of(t, "checksum", CHECKSUMS),
            report,
        ),
        announce_count: announce.count,
        announce_gap: announce.gap,
        announce_refresh: announce.refresh,
        track_http,
        track_pooler,
        checks: checks(raw.checks.as_ref(), report),
        notify: notify(raw.notify.as_ref(), report),
        realtime_priority: field(
            &raw.realtime_priority,
            &base.realtime_priority,
            values::realtime_priority,
            report,
        ),
    }
}

fn vrid(n: i64) -> Result<u8, String> {
    let id = values::count(n, "vrid", 1..=255)?;
    u8::try_from(id).map_err(|_| format!("`vrid` must be from 1 to 255, found {n}"))
}

/// Without a VIP there is nothing to elect a holder for. When a node or
/// pattern has the balancer role, that is told already, at the role.
fn needs_vip(
    raw: &RawVrrp,
    cluster: &ClusterFacts,
    members: &Members<'_, '_>,
    report: &mut Report<'_>,
) {
    let balancer = members
        .nodes
        .iter()
        .map(|n| &n.raw.roles)
        .chain(members.patterns.iter().map(|p| &p.raw.roles))
        .any(|roles| role_span(roles, Role::Balancer).is_some());
    if cluster.vip.is_some() || cluster.vip_written || balancer {
        return;
    }
    report
        .error(
            raw.key_span.clone(),
            "[vrrp] needs the cluster's `vip`: it elects the balancer node that holds it",
        )
        .help("add the virtual IP to [cluster], like vip = \"192.0.2.10/24\", and the balancer role to the nodes that may hold it; or remove [vrrp]");
}

/// The version in effect; `None` when the one written was refused, so that
/// the checks that depend on it are not made against a stand-in.
fn version(raw: &RawVrrp, report: &mut Report<'_>) -> Option<VrrpVersion> {
    let Some(n) = &raw.version else {
        let refused = raw.reported.contains("version");
        return (!refused).then_some(VrrpVersion::V3);
    };
    values::vrrp_version(*n.get_ref())
        .map_err(|why| {
            report.error(n.span(), why).help(format!(
                "3 ({RFC_5798}) unless a router that speaks only VRRPv2 (RFC 3768) must take part"
            ));
        })
        .ok()
}

fn v2_is_ipv4_only(
    raw: &RawVrrp,
    version: VrrpVersion,
    cluster: &ClusterFacts,
    report: &mut Report<'_>,
) {
    let (Some(written), Some(vip)) = (&raw.version, &cluster.vip) else {
        return;
    };
    if version != VrrpVersion::V2 || vip.get_ref().addr().is_ipv4() {
        return;
    }
    let line = report.line_of(vip.span().start);
    report
        .error(
            written.span(),
            format!(
                "VRRPv2 is IPv4 only (RFC 3768), but the VIP {} is IPv6",
                vip.get_ref()
            ),
        )
        .note(format!("the VIP is set at line {line}"))
        .help(format!(
            "use version = 3 ({RFC_5798}), which carries IPv6 addresses"
        ));
}

/// The written interval as the version's adverts can carry it, else the
/// version's own default: 100ms for v3, 1s (the smallest v2 can say) for v2.
fn interval(raw: &RawVrrp, version: Option<VrrpVersion>, report: &mut Report<'_>) -> Duration {
    let default = match version {
        Some(VrrpVersion::V2) => Duration::from_secs(1),
        _ => VrrpSettings::default().interval,
    };
    let Some(text) = &raw.interval else {
        return default;
    };
    let written = match values::duration(text.get_ref()) {
        Ok(d) => d,
        Err(why) => {
            report.error(text.span(), why);
            return default;
        }
    };
    let Some(version) = version else {
        return written;
    };
    values::advert_interval(written, version).unwrap_or_else(|why| {
        let help = match version {
            VrrpVersion::V3 => format!(
                "VRRPv3 adverts carry the interval in hundredths of a second ({RFC_5798}), like interval = \"100ms\""
            ),
            VrrpVersion::V2 => "VRRPv2 adverts carry the interval in whole seconds (RFC 3768); for less than a second use version = 3".to_string(),
        };
        report.error(text.span(), why).help(help);
        default
    })
}

/// Multicast, or unicast to the peers written, else to every balancer
/// node (each node leaves out its own address when it sends).
fn mode(
    raw: &RawVrrp,
    cluster: &ClusterFacts,
    nodes: &[NodeFacts<'_>],
    report: &mut Report<'_>,
) -> VrrpMode {
    let written = written_peers(raw, cluster, report);
    let unicast = match &raw.mode {
        None if raw.reported.contains("mode") => return VrrpMode::Multicast,
        None => false,
        Some(m) => match values::one_of(m.get_ref(), "mode", MODES) {
            Ok(unicast) => unicast,
            Err(why) => {
                report.error(m.span(), why);
                return VrrpMode::Multicast;
            }
        },
    };
    if !unicast {
        multicast_takes_no_peers(raw, report);
        return VrrpMode::Multicast;
    }
    let peers = written.unwrap_or_else(|| balancer_addresses(nodes));
    if peers.is_empty() {
        no_peers(raw, report);
    }
    VrrpMode::Unicast { peers }
}

/// The `unicast_peers` that are addresses of the VIP's family, each once;
/// `None` when not written.
fn written_peers(
    raw: &RawVrrp,
    cluster: &ClusterFacts,
    report: &mut Report<'_>,
) -> Option<Vec<IpAddr>> {
    let list = raw.unicast_peers.as_ref()?;
    let vip = cluster.vip.as_ref().map(|v| v.get_ref().addr());
    let mut seen = HashSet::new();
    let mut peers = Vec::new();
    for text in list.get_ref() {
        let Some(peer) = peer(text, vip, report) else {
            continue;
        };
        if !seen.insert(peer) {
            report
                .error(text.span(), format!("peer {peer} is listed twice"))
                .help("list each peer once");
            continue;
        }
        peers.push(peer);
    }
    Some(peers)
}

fn peer(text: &Spanned<String>, vip: Option<IpAddr>, report: &mut Report<'_>) -> Option<IpAddr> {
    let Ok(peer) = text.get_ref().trim().parse::<IpAddr>() else {
        report.error(
            text.span(),
            format!(
                "expected an IP address, like \"192.0.2.12\", found \"{}\" (host names are not resolved)",
                text.get_ref()
            ),
        );
        return None;
    };
    let vip = vip?;
    if peer.is_ipv4() != vip.is_ipv4() {
        let family = |a: IpAddr| if a.is_ipv4() { "IPv4" } else { "IPv6" };
        report
            .error(
                text.span(),
                format!(
                    "peer {peer} is {}, but the VIP {vip} is {}",
                    family(peer),
                    family(vip)
                ),
            )
            .help("adverts for the VIP go over its own IP version: list the peers' addresses of that version");
        return None;
    }
    Some(peer)
}

fn multicast_takes_no_peers(raw: &RawVrrp, report: &mut Report<'_>) {
    let Some(list) = &raw.unicast_peers else {
        return;
    };
    let mode = if raw.mode.is_some() {
        "`mode` is \"multicast\""
    } else {
        "`mode` is \"multicast\" (the built-in value)"
    };
    report
        .error(
            list.span(),
            format!("`unicast_peers` is set, but {mode}: the peers would be ignored"),
        )
        .help(
            "add mode = \"unicast\" to send adverts to these peers only, or remove `unicast_peers`",
        );
}

/// Told where the empty list came from: the list written, or the mode
/// (no list, and no balancer node with an address to send to).
fn no_peers(raw: &RawVrrp, report: &mut Report<'_>) {
    let (span, why) = match (&raw.unicast_peers, &raw.mode) {
        (Some(list), _) if list.get_ref().is_empty() => (list.span(), "`unicast_peers` is empty"),
        (None, Some(mode)) => (
            mode.span(),
            "`unicast_peers` is not set and no balancer node has an address",
        ),
        // Every address written was refused, and told already.
        _ => return,
    };
    report
        .error(span, format!("unicast mode needs at least one peer: {why}"))
        .help("list the other routers' addresses, like unicast_peers = [\"192.0.2.12\"], or use mode = \"multicast\"; piha does not fall back to multicast on its own");
}

fn balancer_addresses(nodes: &[NodeFacts<'_>]) -> Vec<IpAddr> {
    nodes
        .iter()
        .filter(|n| n.roles.contains(&Role::Balancer))
        .filter_map(|n| n.net.map(|net| net.addr()))
        .collect()
}

/// The VRRPv2 password; on v3 it would be ignored, and a peer relying on
/// it would not be protected by anything.
fn auth(raw: &RawVrrp, version: Option<VrrpVersion>, report: &mut Report<'_>) -> Option<String> {
    let text = raw.auth.as_ref()?;
    if version == Some(VrrpVersion::V3) {
        report
            .error(
                text.span(),
                format!("`auth` is for VRRPv2 only: VRRPv3 has no authentication ({RFC_5798} removed it)"),
            )
            .help("remove `auth`, or write version = 2 to join keepalived routers set up with auth_type PASS");
        return None;
    }
    values::vrrp_auth(text.get_ref())
        .map_err(|why| {
            report.error(text.span(), why);
        })
        .ok()
}

struct Announce {
    count: u32,
    gap: Duration,
    refresh: Option<Duration>,
}

fn announce(
    raw: Option<&RawTable<RawAnnounce>>,
    base: &VrrpSettings,
    report: &mut Report<'_>,
) -> Announce {
    let Some(raw) = raw else {
        return Announce {
            count: base.announce_count,
            gap: base.announce_gap,
            refresh: base.announce_refresh,
        };
    };
    let f = &raw.fields;
    let gap = |t: &String| values::duration_at_most(t, "gap", MAX_ANNOUNCE_GAP);
    Announce {
        count: count(&f.count, base.announce_count, ("count", COUNT), report),
        gap: field(&f.gap, &base.announce_gap, gap, report),
        refresh: field(&f.refresh, &base.announce_refresh, refresh, report),
    }
}

/// `"60s"`, or `"off"` / `false`.
fn refresh(raw: &OrOff<String>) -> Result<Option<Duration>, String> {
    let text = match raw {
        OrOff::Off => return Ok(None),
        OrOff::On(text) if text.trim() == "off" => return Ok(None),
        OrOff::On(text) => text,
    };
    let d = values::duration(text).map_err(|why| format!("{why}, or false for off"))?;
    if d < MIN_REFRESH {
        return Err(format!(
            "`refresh` must be at least 1s, or false for off, found {}",
            humantime::format_duration(d)
        ));
    }
    Ok(Some(d))
}

fn track(
    raw: Option<&RawTable<RawTrack>>,
    base: &VrrpSettings,
    report: &mut Report<'_>,
) -> (Option<u8>, Option<u8>) {
    let Some(raw) = raw else {
        return (base.track_http, base.track_pooler);
    };
    let f = &raw.fields;
    let http = field(
        &f.http,
        &base.track_http,
        |w| values::weight_or_off(w, "http"),
        report,
    );
    let pooler = field(
        &f.pooler,
        &base.track_pooler,
        |w| values::weight_or_off(w, "pooler"),
        report,
    );
    (http, pooler)
}

fn checks(list: Option<&Spanned<Vec<RawVrrpCheck>>>, report: &mut Report<'_>) -> Vec<VrrpCheck> {
    let Some(list) = list else {
        return Vec::new();
    };
    let checks: Vec<_> = list
        .get_ref()
        .iter()
        .filter_map(|raw| check(raw, report))
        .collect();
    unique(checks, "check", report)
}

/// One check with where its name is written; `None` without a valid name.
/// The check itself is `None` if anything else is wrong, but its name still
/// counts against a second entry of the same name.
fn check(
    raw: &RawVrrpCheck,
    report: &mut Report<'_>,
) -> Option<(Option<VrrpCheck>, Spanned<String>)> {
    let f = &raw.fields;
    let name = required(raw, &f.name, "name", "a `vrrp.checks` entry", report).and_then(|n| {
        match values::check_name(n.get_ref()) {
            Ok(()) => Some(n.clone()),
            Err(why) => {
                report.error(n.span(), why);
                None
            }
        }
    });
    let who = name.as_ref().map_or("this check".to_string(), |n| {
        format!("check \"{}\"", n.get_ref())
    });
    let command =
        required(raw, &f.command, "command", &who, report).and_then(|c| command(c, report));
    let timing = check_timing(raw, &who, report);
    let weight = check_weight(raw, &who, report);
    let name = name?;
    let check = match (command, weight) {
        (Some(command), Some(weight)) => Some(VrrpCheck {
            name: name.get_ref().clone(),
            command,
            interval: timing.interval,
            timeout: timing.timeout,
            fall: timing.fall,
            rise: timing.rise,
            weight,
        }),
        _ => None,
    };
    Some((check, name))
}

/// The program is run without a shell and without `PATH`, so it must be
/// named by its whole path.
fn command(list: &Spanned<Vec<Spanned<String>>>, report: &mut Report<'_>) -> Option<Vec<String>> {
    let Some(program) = list.get_ref().first() else {
        report
            .error(list.span(), "a check's `command` must not be empty")
            .help("write the program and its arguments, like command = [\"/usr/bin/test\", \"-w\", \"/srv\"]");
        return None;
    };
    if let Err(why) = values::absolute_file(program.get_ref()) {
        report
            .error(program.span(), format!("the program of a check: {why}"))
            .help("checks run without a shell and without PATH: write the whole path, like \"/usr/bin/test\"");
        return None;
    }
    Some(list.get_ref().iter().map(|a| a.get_ref().clone()).collect())
}

struct CheckTiming {
    interval: Duration,
    timeout: Duration,
    fall: u32,
    rise: u32,
}

/// A check's `timeout` defaults to its `interval`: it may run until the
/// next run is due, never longer.
fn check_timing(raw: &RawVrrpCheck, who: &str, report: &mut Report<'_>) -> CheckTiming {
    let f = &raw.fields;
    let interval = check_interval(&f.interval, report);
    let timeout = duration(&f.timeout, interval.unwrap_or(CHECK_INTERVAL), report);
    if let Some(interval) = interval {
        timeout_within_interval(who, (interval, timeout), (&f.interval, &f.timeout), report);
    }
    CheckTiming {
        interval: interval.unwrap_or(CHECK_INTERVAL),
        timeout,
        fall: count(&f.fall, CHECK_FALL_RISE, ("fall", COUNT), report),
        rise: count(&f.rise, CHECK_FALL_RISE, ("rise", COUNT), report),
    }
}

/// `None` when the interval written was refused: the timeout is then not
/// compared with a stand-in.
fn check_interval(raw: &Option<Spanned<String>>, report: &mut Report<'_>) -> Option<Duration> {
    let Some(text) = raw else {
        return Some(CHECK_INTERVAL);
    };
    let checked = values::duration(text.get_ref()).and_then(|d| {
        if d < MIN_CHECK_INTERVAL {
            return Err(format!(
                "a check's `interval` must be at least 100ms, found {}",
                humantime::format_duration(d)
            ));
        }
        Ok(d)
    });
    checked
        .map_err(|why| {
            report.error(text.span(), why);
        })
        .ok()
}

/// Required: how much a failing check should matter depends entirely on the
/// priorities, so no value would be a safe default.
fn check_weight(raw: &RawVrrpCheck, who: &str, report: &mut Report<'_>) -> Option<u8> {
    let Some(n) = &raw.fields.weight else {
        if !raw.reported.contains("weight") {
            report
                .error(
                    raw.span.clone(),
                    format!("{who} is missing the required key `weight`"),
                )
                .help("weight is the priority a node loses while the check fails, like weight = 50; 0 gives up the VIP whatever the priorities");
        }
        return None;
    };
    values::weight(*n.get_ref(), "weight")
        .map_err(|why| {
            report.error(n.span(), why);
        })
        .ok()
}

fn notify(list: Option<&Spanned<Vec<Spanned<String>>>>, report: &mut Report<'_>) -> Vec<PathBuf> {
    let Some(list) = list else {
        return Vec::new();
    };
    let mut programs = Vec::new();
    for text in list.get_ref() {
        match values::absolute_file(text.get_ref()) {
            Ok(path) => programs.push(path),
            Err(why) => {
                report
                    .error(text.span(), format!("a `notify` program: {why}"))
                    .help("notify programs run without a shell and without PATH: write the whole path");
            }
        }
    }
    programs
}
