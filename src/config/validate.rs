//! Second pass: typed raw fields -> the model, one section at a time. Each
//! check that fails records a diagnostic and falls back to a placeholder so
//! the remaining checks still run; the model is only handed out when nothing
//! failed.

use std::collections::BTreeSet;
use std::io::Read;
use std::path::Path;
use std::time::Duration;

use ipnet::IpNet;
use toml::Spanned;

use super::checks;
use super::db_settings;
use super::diagnostic::{Report, Span};
use super::listeners;
use super::model::*;
use super::postgres_settings;
use super::raw::*;
use super::roles::{Owner, RoleDefaults, required_roles, role_settings};
use super::storage_settings;
use super::values;
use super::vrrp_settings::{self, Members};
use super::web_settings;

/// A `[[node]]` as far as it could be checked, with its raw entry kept for
/// pointing at it from the checks that compare nodes.
pub struct NodeFacts<'r> {
    pub raw: &'r RawNode,
    pub hostname: Option<String>,
    pub net: Option<IpNet>,
    pub admin_port: u16,
    pub gossip_port: u16,
    /// Lowercase, colon-separated.
    pub mac: Option<String>,
    pub roles: BTreeSet<Role>,
    pub settings: RoleSettings,
}

impl NodeFacts<'_> {
    /// How messages name this node.
    pub fn label(&self) -> String {
        match &self.hostname {
            Some(h) => format!("node \"{h}\""),
            None => "this node".to_string(),
        }
    }
}

pub struct PatternFacts<'r> {
    pub raw: &'r RawPattern,
    pub rule: Option<PatternRule>,
}

/// What `[cluster]` yields.
pub struct ClusterFacts {
    pub span: Span,
    pub name: String,
    pub vip: Option<Spanned<IpNet>>,
    /// A `vip` was written, even if it did not parse.
    pub vip_written: bool,
    pub admin_token: Option<String>,
}

pub fn validate(
    raw: &RawFile,
    source: ConfigSource,
    report: &mut Report<'_>,
) -> Option<ClusterConfig> {
    let cluster = cluster(raw.cluster.as_ref(), &raw.reported, report);
    let (defaults, role_defaults) = defaults(&raw.defaults, report);
    let membership = membership(&raw.membership, report);
    let store = store(&raw.store, report);
    let metrics = MetricsSettings {
        sample_interval: duration_or(&raw.metrics.sample_interval, 5, report),
    };
    let nodes: Vec<NodeFacts<'_>> = raw
        .nodes
        .iter()
        .map(|n| node(n, &defaults, &role_defaults, report))
        .collect();
    let patterns: Vec<PatternFacts<'_>> = raw
        .patterns
        .iter()
        .map(|p| pattern(p, &role_defaults, report))
        .collect();
    if !(raw.reported.contains("node") || raw.reported.contains("pattern")) {
        checks::has_members(&cluster, &nodes, &patterns, report);
    }
    checks::across_nodes(&cluster, &nodes, &patterns, report);
    let postgres = postgres_settings::postgres(raw.postgres.as_ref(), &nodes, report);
    let pooler = listeners::Pooler {
        settings: &postgres,
        raw: raw.postgres.as_ref(),
    };
    listeners::no_shared_ports(&raw.defaults, &defaults, pooler, &nodes, &patterns, report);
    let members = Members {
        nodes: &nodes,
        patterns: &patterns,
    };
    let vrrp = vrrp_settings::vrrp(raw.vrrp.as_ref(), &cluster, members, report);
    web_settings::notes_reach_the_pooler(raw, cluster.vip_written, report);
    let db = db_settings::db(raw.db.as_ref(), report);
    let storage = storage_settings::storage(raw.storage.as_ref(), report);

    if report.has_errors() {
        return None;
    }
    let cluster_span = cluster.span.clone();
    let storage_span = raw
        .storage
        .as_ref()
        .and_then(|s| s.replica.as_ref().map(|r| r.span()));
    let config = ClusterConfig {
        name: cluster.name,
        vip: cluster.vip.map(Spanned::into_inner),
        admin_token: cluster.admin_token,
        defaults,
        membership,
        store,
        metrics,
        postgres,
        vrrp,
        db,
        storage,
        nodes: nodes
            .into_iter()
            .filter_map(NodeFacts::into_config)
            .collect(),
        patterns: patterns.into_iter().filter_map(|p| p.rule).collect(),
        source,
    };
    storage_layout(&config, storage_span.unwrap_or(cluster_span), report);
    (!report.has_errors()).then_some(config)
}

/// The storage nodes must be able to form the volume `[storage]` describes
/// (a count that fits the replica sets, arbiter only with replica 3): the
/// storage role would refuse to start otherwise, so `piha check` says it
/// first.
fn storage_layout(config: &ClusterConfig, span: Span, report: &mut Report<'_>) {
    let storage_nodes = config
        .nodes
        .iter()
        .filter(|n| n.roles.contains(&super::model::Role::Storage))
        .count();
    if storage_nodes == 0 {
        return;
    }
    if let Err(why) = crate::gluster::form::Layout::from_config(config) {
        report
            .error(span, format!("the storage nodes cannot form the Gluster volume: {why}"))
            .help("the volume's bricks are the [[node]] entries with the storage role, in file order; consecutive `replica` of them hold the same files");
    }
}

impl NodeFacts<'_> {
    fn into_config(self) -> Option<NodeConfig> {
        let net = self.net?;
        Some(NodeConfig {
            hostname: self.hostname?,
            address: net.addr(),
            network: net,
            admin_port: self.admin_port,
            gossip_port: self.gossip_port,
            mac: self.mac,
            roles: self.roles,
            settings: self.settings,
        })
    }
}

fn cluster(
    raw: Option<&RawCluster>,
    top_reported: &Reported,
    report: &mut Report<'_>,
) -> ClusterFacts {
    let Some(raw) = raw else {
        if !top_reported.contains("cluster") {
            report
                .error(0..0, "missing the [cluster] section")
                .help("start the file with [cluster] and name = \"piha\"");
        }
        return ClusterFacts {
            span: 0..0,
            name: String::new(),
            vip: None,
            vip_written: false,
            admin_token: None,
        };
    };
    let name = match &raw.name {
        None if raw.reported.contains("name") => String::new(),
        None => {
            report
                .error(
                    raw.span.clone(),
                    "[cluster] is missing the required key `name`",
                )
                .help("add name = \"piha\" (lowercase letters, digits and '-')");
            String::new()
        }
        Some(name) => {
            if let Err(why) = values::cluster_name(name.get_ref()) {
                report.error(name.span(), why);
            }
            name.get_ref().clone()
        }
    };
    let vip = raw.vip.as_ref().and_then(|vip| {
        match values::address_with_prefix(vip.get_ref(), "192.0.2.10/24") {
            Ok(net) => Some(Spanned::new(vip.span(), net)),
            Err(why) => {
                report.error(vip.span(), format!("invalid VIP: {why}"));
                None
            }
        }
    });
    ClusterFacts {
        span: raw.span.clone(),
        name,
        vip,
        vip_written: raw.vip.is_some() || raw.reported.contains("vip"),
        admin_token: admin_token(raw, report),
    }
}

/// Shorter than this, a token can be guessed by anyone on the LAN who cares.
const MIN_TOKEN_CHARS: usize = 16;

fn admin_token(raw: &RawCluster, report: &mut Report<'_>) -> Option<String> {
    match (&raw.admin_token, &raw.admin_token_file) {
        (None, None) => None,
        (Some(token), Some(file)) => {
            let line = report.line_of(token.span().start);
            report
                .error(
                    file.span(),
                    "set either `admin_token` or `admin_token_file`, not both",
                )
                .note(format!("`admin_token` is set at line {line}"));
            None
        }
        (Some(token), None) => check_token(token.get_ref(), token.span(), "admin_token", report),
        (None, Some(file)) => {
            let path = resolve(report.path(), file.get_ref());
            match read_token_file(&path) {
                Ok(token) => {
                    let what = format!("the token in {}", path.display());
                    check_token(&token, file.span(), &what, report)
                }
                Err(e) => {
                    report.error(
                        file.span(),
                        format!("cannot read admin_token_file {}: {e}", path.display()),
                    );
                    None
                }
            }
        }
    }
}

fn check_token(token: &str, span: Span, what: &str, report: &mut Report<'_>) -> Option<String> {
    let len = token.chars().count();
    if len < MIN_TOKEN_CHARS {
        report.error(
            span,
            format!("{what} is {len} characters long; it must be at least {MIN_TOKEN_CHARS}"),
        );
        return None;
    }
    if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
        report.error(
            span,
            format!("{what} must not contain spaces or control characters"),
        );
        return None;
    }
    Some(token.to_string())
}

/// A relative token path is taken from the cluster file's folder, so a token
/// kept next to cluster.toml on the boot partition works wherever piha runs.
fn resolve(config: &Path, file: &str) -> std::path::PathBuf {
    let file = Path::new(file);
    match config.parent() {
        Some(dir) if file.is_relative() => dir.join(file),
        _ => file.to_path_buf(),
    }
}

fn read_token_file(path: &Path) -> std::io::Result<String> {
    const LIMIT: u64 = 4096;
    let mut text = String::new();
    std::fs::File::open(path)?
        .take(LIMIT)
        .read_to_string(&mut text)?;
    Ok(text.trim().to_string())
}

fn defaults(raw: &RawDefaults, report: &mut Report<'_>) -> (Defaults, RoleDefaults) {
    let defaults = Defaults {
        admin_port: port_or(&raw.admin_port, 9000, report),
        gossip_port: port_or(&raw.gossip_port, 7946, report),
    };
    (defaults, RoleDefaults::new(&raw.sections, report))
}

fn membership(raw: &RawMembership, report: &mut Report<'_>) -> MembershipSettings {
    let heartbeat_interval = duration_or(&raw.heartbeat_interval, 1, report);
    let down_after = duration_or(&raw.down_after, 3, report);
    if down_after <= heartbeat_interval {
        // Point at whichever of the two was written; if both were, the fix
        // is as likely in either, and down_after is the one that reads wrong.
        let span = raw
            .down_after
            .as_ref()
            .or(raw.heartbeat_interval.as_ref())
            .map_or(0..0, Spanned::span);
        report
            .error(
                span,
                format!(
                    "down_after ({}) must be longer than heartbeat_interval ({})",
                    humantime::format_duration(down_after),
                    humantime::format_duration(heartbeat_interval)
                ),
            )
            .help("a peer is marked down after missing a few heartbeats; 3 x heartbeat_interval is usual");
    }
    MembershipSettings {
        heartbeat_interval,
        down_after,
    }
}

fn store(raw: &RawStore, report: &mut Report<'_>) -> StoreSettings {
    let max_bytes = match &raw.max_size {
        None => 64 << 20,
        Some(size) => values::size(size.get_ref()).unwrap_or_else(|why| {
            report.error(size.span(), why);
            64 << 20
        }),
    };
    StoreSettings {
        retention: duration_or(&raw.retention, 7 * 86_400, report),
        max_bytes,
        flush_interval: duration_or(&raw.flush_interval, 5, report),
    }
}

fn duration_or(raw: &Option<Spanned<String>>, secs: u64, report: &mut Report<'_>) -> Duration {
    let fallback = Duration::from_secs(secs);
    let Some(text) = raw else {
        return fallback;
    };
    values::duration(text.get_ref()).unwrap_or_else(|why| {
        report.error(text.span(), why);
        fallback
    })
}

fn port_or(raw: &Option<Spanned<i64>>, fallback: u16, report: &mut Report<'_>) -> u16 {
    let Some(n) = raw else {
        return fallback;
    };
    values::port(*n.get_ref()).unwrap_or_else(|why| {
        report.error(n.span(), why);
        fallback
    })
}

fn node<'r>(
    raw: &'r RawNode,
    defaults: &Defaults,
    role_defaults: &RoleDefaults,
    report: &mut Report<'_>,
) -> NodeFacts<'r> {
    let hostname = match &raw.hostname {
        None if raw.reported.contains("hostname") => None,
        None => {
            report
                .error(
                    raw.span.clone(),
                    "[[node]] is missing the required key `hostname`",
                )
                .help("add hostname = \"pi-1\", the name the Pi reports with `hostname`");
            None
        }
        Some(h) => match values::hostname(h.get_ref()) {
            Ok(()) => Some(h.get_ref().clone()),
            Err(why) => {
                report.error(h.span(), why);
                None
            }
        },
    };
    let who = hostname
        .as_ref()
        .map_or("this node".to_string(), |h| format!("node \"{h}\""));
    let net = match &raw.address {
        None if raw.reported.contains("address") => None,
        None => {
            report
                .error(
                    raw.span.clone(),
                    format!("{who} is missing the required key `address`"),
                )
                .help(
                    "add its LAN address with the prefix length, like address = \"192.0.2.11/24\"",
                );
            None
        }
        Some(a) => match values::address_with_prefix(a.get_ref(), "192.0.2.11/24") {
            Ok(net) => Some(net),
            Err(why) => {
                report.error(a.span(), why);
                None
            }
        },
    };
    let roles = required_roles(&raw.roles, &raw.reported, raw.span.clone(), &who, report);
    let settings = role_settings(
        &roles,
        &raw.sections,
        role_defaults,
        &who,
        Owner::Node,
        report,
    );
    NodeFacts {
        raw,
        hostname,
        net,
        admin_port: port_or(&raw.admin_port, defaults.admin_port, report),
        gossip_port: port_or(&raw.gossip_port, defaults.gossip_port, report),
        mac: raw
            .mac
            .as_ref()
            .and_then(|m| match values::mac(m.get_ref()) {
                Ok(mac) => Some(mac),
                Err(why) => {
                    report.error(m.span(), why);
                    None
                }
            }),
        roles,
        settings,
    }
}

fn pattern<'r>(
    raw: &'r RawPattern,
    role_defaults: &RoleDefaults,
    report: &mut Report<'_>,
) -> PatternFacts<'r> {
    let glob = match &raw.glob {
        None if raw.reported.contains("match") => None,
        None => {
            report
                .error(
                    raw.span.clone(),
                    "[[pattern]] is missing the required key `match`",
                )
                .help("add the hostname glob it applies to, like match = \"pi-*\"");
            None
        }
        Some(g) => match glob::Pattern::new(g.get_ref()) {
            Ok(_) => Some(g.get_ref().clone()),
            Err(e) => {
                report.error(
                    g.span(),
                    format!(
                        "invalid hostname pattern \"{}\": {} (near character {}); use * for any run of characters, ? for one, [0-9] for a range",
                        g.get_ref(),
                        e.msg,
                        e.pos + 1
                    ),
                );
                None
            }
        },
    };
    let who = glob
        .as_ref()
        .map_or("this pattern".to_string(), |g| format!("pattern \"{g}\""));
    let roles = required_roles(&raw.roles, &raw.reported, raw.span.clone(), &who, report);
    let settings = role_settings(
        &roles,
        &raw.sections,
        role_defaults,
        &who,
        Owner::Pattern,
        report,
    );
    let rule = glob.map(|pattern| PatternRule {
        pattern,
        roles,
        settings,
    });
    PatternFacts { raw, rule }
}
