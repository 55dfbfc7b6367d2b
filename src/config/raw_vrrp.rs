//! The cluster-wide `[vrrp]` section as written: how the balancer nodes
//! elect the holder of the VIP, what they track and what they run. Shape
//! only, like the rest of `raw`; `vrrp_settings` checks the values.

use toml::Spanned;
use toml::de::DeValue;

use super::diagnostic::{Report, Span};
use super::raw::{DURATION, Fields, OrOff, Reported, Table};
use super::raw_sections::{RawTable, nested};

pub struct RawVrrp {
    /// The `vrrp` of the `[vrrp]` header (or of `vrrp = { ... }`): where
    /// "needs the cluster's `vip`" points.
    pub key_span: Span,
    /// Keys written but reported already (a typo, a wrong type), so that a
    /// misspelt `mode` is not followed by "`unicast_peers` needs unicast".
    pub reported: Reported,
    pub version: Option<Spanned<i64>>,
    pub vrid: Option<Spanned<i64>>,
    pub interface: Option<Spanned<String>>,
    pub interval: Option<Spanned<String>>,
    pub preempt: Option<Spanned<bool>>,
    pub preempt_delay: Option<Spanned<String>>,
    pub mode: Option<Spanned<String>>,
    pub unicast_peers: Option<Spanned<Vec<Spanned<String>>>>,
    pub auth: Option<Spanned<String>>,
    pub checksum: Option<Spanned<String>>,
    pub announce: Option<RawTable<RawAnnounce>>,
    pub track: Option<RawTable<RawTrack>>,
    pub checks: Option<Spanned<Vec<RawVrrpCheck>>>,
    pub notify: Option<Spanned<Vec<Spanned<String>>>>,
    /// A priority, or `false` (normal scheduling).
    pub realtime_priority: Option<Spanned<OrOff<i64>>>,
}

/// `announce = { count = 3, gap = "10ms", refresh = "60s" }`.
pub struct RawAnnounce {
    pub count: Option<Spanned<i64>>,
    pub gap: Option<Spanned<String>>,
    /// A duration or `"off"`, or `false`.
    pub refresh: Option<Spanned<OrOff<String>>>,
}

/// `track = { http = 100, pooler = 100 }`: weights, or `false`.
pub struct RawTrack {
    pub http: Option<Spanned<OrOff<i64>>>,
    pub pooler: Option<Spanned<OrOff<i64>>>,
}

/// One `checks` entry: `{ name = "disk", command = [...], weight = 50 }`.
pub type RawVrrpCheck = RawTable<RawVrrpCheckFields>;

pub struct RawVrrpCheckFields {
    pub name: Option<Spanned<String>>,
    pub command: Option<Spanned<Vec<Spanned<String>>>>,
    pub interval: Option<Spanned<String>>,
    pub timeout: Option<Spanned<String>>,
    pub fall: Option<Spanned<i64>>,
    pub rise: Option<Spanned<i64>>,
    pub weight: Option<Spanned<i64>>,
}

const WEIGHT: &str = "a priority to lose from 0 to 254";
const COUNT: &str = "a whole number from 1 to 100";
const CHECK_EXAMPLE: &str =
    "{ name = \"disk\", command = [\"/usr/bin/test\", \"-w\", \"/srv\"], weight = 50 }";

pub(super) fn read_vrrp(t: Table<'_, '_>, report: &mut Report<'_>) -> RawVrrp {
    let mut f = Fields::new(t.table, "[vrrp]", report);
    let mut vrrp = RawVrrp {
        key_span: t.key_span,
        reported: Reported::default(),
        version: f.integer("version", "2 or 3"),
        vrid: f.integer("vrid", "a virtual router id from 1 to 255"),
        interface: f.string("interface", "an interface name in quotes, like \"eth0\""),
        interval: f.string("interval", DURATION),
        preempt: f.boolean("preempt"),
        preempt_delay: f.string("preempt_delay", DURATION),
        mode: f.string("mode", "\"multicast\" or \"unicast\""),
        unicast_peers: f.string_array(
            "unicast_peers",
            "a list of addresses, like [\"192.0.2.12\"]",
            "an IP address in quotes, like \"192.0.2.12\"",
        ),
        auth: f.string("auth", "a password of 1 to 8 characters in quotes"),
        checksum: f.string(
            "checksum",
            "\"auto\", \"pseudo_header\" or \"message_only\"",
        ),
        announce: f
            .inline_table(
                "announce",
                "{ count = 3, gap = \"10ms\", refresh = \"60s\" }",
            )
            .map(|t| read_announce(t, f.report)),
        track: f
            .inline_table("track", "{ http = 100, pooler = 100 }")
            .map(|t| {
                nested(t, "`vrrp.track`", f.report, |s| RawTrack {
                    http: integer_or_off(s, ("http", WEIGHT), "100"),
                    pooler: integer_or_off(s, ("pooler", WEIGHT), "100"),
                })
            }),
        checks: f.table_list("checks", CHECK_EXAMPLE).map(|list| {
            let span = list.span();
            let checks = list.into_inner().into_iter();
            Spanned::new(span, checks.map(|t| read_check(t, f.report)).collect())
        }),
        notify: f.string_array(
            "notify",
            "a list of programs, like [\"/usr/local/bin/on-vrrp\"]",
            "a program's absolute path in quotes, like \"/usr/local/bin/on-vrrp\"",
        ),
        realtime_priority: integer_or_off(
            &mut f,
            ("realtime_priority", "a real-time priority from 1 to 99"),
            "50",
        ),
    };
    vrrp.reported = f.finish();
    vrrp
}

fn read_announce(t: Table<'_, '_>, report: &mut Report<'_>) -> RawTable<RawAnnounce> {
    nested(t, "`vrrp.announce`", report, |s| RawAnnounce {
        count: s.integer("count", COUNT),
        gap: s.string("gap", DURATION),
        refresh: duration_or_off(s, "refresh"),
    })
}

fn read_check(t: Table<'_, '_>, report: &mut Report<'_>) -> RawVrrpCheck {
    nested(t, "a `vrrp.checks` entry", report, |s| {
        RawVrrpCheckFields {
        name: s.string("name", "a check name in quotes, like \"disk\""),
        command: s.string_array(
            "command",
            "the program and its arguments as a list, like [\"/usr/bin/test\", \"-w\", \"/srv\"] (run without a shell)",
            "a program or an argument in quotes",
        ),
        interval: s.string("interval", DURATION),
        timeout: s.string("timeout", DURATION),
        fall: s.integer("fall", COUNT),
        rise: s.integer("rise", COUNT),
        weight: s.integer("weight", WEIGHT),
    }
    })
}

/// A number, or `false` for off (`expected` names the number, `example`
/// is one).
fn integer_or_off(
    f: &mut Fields<'_, '_, '_, '_>,
    (key, expected): (&'static str, &str),
    example: &str,
) -> Option<Spanned<OrOff<i64>>> {
    let value = f.get(key)?;
    match value.get_ref() {
        DeValue::Boolean(false) => Some(Spanned::new(value.span(), OrOff::Off)),
        DeValue::Integer(_) => f
            .integer_value(key, value)
            .map(|n| Spanned::new(value.span(), OrOff::On(n))),
        other => {
            let on = matches!(other, DeValue::Boolean(true));
            let d = f.wrong_type(key, value, &format!("{expected}, or false for off"));
            if on {
                d.help(format!(
                    "true says nothing about how much: write the number, like {key} = {example}"
                ));
            }
            None
        }
    }
}

/// A duration in quotes, or `false` / `"off"` for off.
fn duration_or_off(
    f: &mut Fields<'_, '_, '_, '_>,
    key: &'static str,
) -> Option<Spanned<OrOff<String>>> {
    let value = f.get(key)?;
    match value.get_ref() {
        DeValue::String(s) => Some(Spanned::new(value.span(), OrOff::On(s.to_string()))),
        DeValue::Boolean(false) => Some(Spanned::new(value.span(), OrOff::Off)),
        _ => {
            let expected = "a duration in quotes, like \"60s\", or false for off";
            f.wrong_type(key, value, expected);
            None
        }
    }
}
