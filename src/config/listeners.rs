//! No two TCP listeners of one node on one port: the admin server, the web
//! role's HTTP and HTTPS ports, the balancer's front ends and every tcp
//! service, the Postgres pooler (on balancer nodes) and PostgreSQL itself
//! (on db nodes). Otherwise the second one fails with "address in use" when the
//! node starts. The gossip port is UDP and may share a number with any of
//! them.

use std::collections::{HashMap, HashSet};

use toml::Spanned;

use super::diagnostic::{Report, Span};
use super::model::{Defaults, PostgresSettings, RoleSettings};
use super::raw::{OrOff, RawDefaults, RawPostgres, RawSections, RawTcp};
use super::validate::{NodeFacts, PatternFacts};

/// One listening port of a node and where its value comes from.
struct Listener {
    /// How messages name it: "`web.port`", "tcp service \"redis\"".
    key: String,
    port: u16,
    origin: Origin,
}

/// Where a port was set.
enum Origin {
    BuiltIn,
    Defaults(Span),
    /// A cluster-wide section (`[postgres]`): as general as `[defaults]`.
    Cluster(Span),
    Entry(Span),
}

impl Origin {
    /// More specific origins rank higher: a node's own value is the likelier
    /// one to have been changed by hand.
    fn rank(&self) -> u8 {
        match self {
            Origin::BuiltIn => 0,
            Origin::Defaults(_) | Origin::Cluster(_) => 1,
            Origin::Entry(_) => 2,
        }
    }

    fn span(&self) -> Option<Span> {
        match self {
            Origin::BuiltIn => None,
            Origin::Defaults(s) | Origin::Cluster(s) | Origin::Entry(s) => Some(s.clone()),
        }
    }
}

/// A node or pattern, as far as its listeners go.
struct Entry<'a> {
    label: String,
    admin_port: u16,
    own_admin_port: Option<&'a Spanned<i64>>,
    sections: &'a RawSections,
    settings: &'a RoleSettings,
}

/// The `[postgres]` ports: the settings in effect and the section as
/// written (`None` if the file has none).
#[derive(Clone, Copy)]
pub struct Pooler<'a> {
    pub settings: &'a PostgresSettings,
    pub raw: Option<&'a RawPostgres>,
}

pub fn no_shared_ports(
    raw: &RawDefaults,
    defaults: &Defaults,
    pooler: Pooler<'_>,
    nodes: &[NodeFacts<'_>],
    patterns: &[PatternFacts<'_>],
    report: &mut Report<'_>,
) {
    let node_entries = nodes.iter().map(|n| Entry {
        label: n.label(),
        admin_port: n.admin_port,
        own_admin_port: n.raw.admin_port.as_ref(),
        sections: &n.raw.sections,
        settings: &n.settings,
    });
    let pattern_entries = patterns.iter().filter_map(|p| {
        let rule = p.rule.as_ref()?;
        Some(Entry {
            label: format!("pattern \"{}\"", rule.pattern),
            admin_port: defaults.admin_port,
            own_admin_port: None,
            sections: &p.raw.sections,
            settings: &rule.settings,
        })
    });
    // A clash set in [defaults] shows on every node; say it once.
    let mut told = HashSet::new();
    for entry in node_entries.chain(pattern_entries) {
        let listeners = listeners(&entry, raw, pooler);
        let mut first: HashMap<u16, &Listener> = HashMap::new();
        for listener in &listeners {
            match first.get(&listener.port) {
                None => {
                    first.insert(listener.port, listener);
                }
                Some(earlier) => clash(&entry.label, earlier, listener, &mut told, report),
            }
        }
    }
}

fn clash(
    who: &str,
    earlier: &Listener,
    later: &Listener,
    told: &mut HashSet<(usize, String)>,
    report: &mut Report<'_>,
) {
    // Point at the more specific of the two (a node's own value before
    // [defaults]); on a tie, at the later one.
    let (blamed, other) = if earlier.origin.rank() > later.origin.rank() {
        (earlier, later)
    } else {
        (later, earlier)
    };
    let Some(span) = blamed.origin.span() else {
        return;
    };
    if !told.insert((span.start, other.key.clone())) {
        return;
    }
    let where_other = match &other.origin {
        Origin::BuiltIn => format!("{} is {} unless set", other.key, other.port),
        Origin::Defaults(s) | Origin::Cluster(s) | Origin::Entry(s) => {
            format!("{} is set at line {}", other.key, report.line_of(s.start))
        }
    };
    report
        .error(
            span,
            format!(
                "{who} would listen on port {} twice: {} and {}",
                blamed.port, blamed.key, other.key
            ),
        )
        .note(where_other)
        .help("give each listener of a node its own TCP port");
}

/// Every TCP listener the entry's roles open, in a fixed order.
fn listeners(entry: &Entry<'_>, defaults: &RawDefaults, pooler: Pooler<'_>) -> Vec<Listener> {
    let mut out = Vec::new();
    let admin = origin(
        entry.own_admin_port.map(written),
        defaults.admin_port.as_ref().map(written),
        entry.admin_port,
    );
    push(&mut out, "`admin_port`", entry.admin_port, admin);
    web_listeners(entry, &defaults.sections, &mut out);
    balancer_listeners(entry, &defaults.sections, &mut out);
    postgres_listeners(entry, pooler, &mut out);
    out
}

/// The pooler on every balancer node (node address and VIP), PostgreSQL on
/// every db node (node address). Both ports are cluster-wide.
fn postgres_listeners(entry: &Entry<'_>, pooler: Pooler<'_>, out: &mut Vec<Listener>) {
    let pg = pooler.settings;
    let at = |raw: fn(&RawPostgres) -> Option<&Spanned<i64>>, value: u16| {
        let written = pooler.raw.and_then(raw).map(written);
        match written {
            None => Some(Origin::BuiltIn),
            Some((span, port)) => (port == Some(i64::from(value))).then_some(Origin::Cluster(span)),
        }
    };
    if entry.settings.balancer.is_some() {
        let origin = at(|r| r.port.as_ref(), pg.port);
        push(out, "`postgres.port`", pg.port, origin);
    }
    if entry.settings.db.is_some() {
        let origin = at(|r| r.server_port.as_ref(), pg.server_port);
        push(out, "`postgres.server_port`", pg.server_port, origin);
    }
}

fn web_listeners(entry: &Entry<'_>, defaults: &RawSections, out: &mut Vec<Listener>) {
    let Some(web) = &entry.settings.web else {
        return;
    };
    let own = entry.sections.web.as_ref().map(|s| &s.fields);
    let dflt = defaults.web.as_ref().map(|s| &s.fields);
    let at = origin(
        own.and_then(|f| f.port.as_ref()).map(written),
        dflt.and_then(|f| f.port.as_ref()).map(written),
        web.port,
    );
    push(out, "`web.port`", web.port, at);
    if let Some(port) = web.tls_port {
        let at = origin(
            own.and_then(|f| f.tls_port.as_ref()).map(written_or_off),
            dflt.and_then(|f| f.tls_port.as_ref()).map(written_or_off),
            port,
        );
        push(out, "`web.tls_port`", port, at);
    }
}

fn balancer_listeners(entry: &Entry<'_>, defaults: &RawSections, out: &mut Vec<Listener>) {
    let Some(balancer) = &entry.settings.balancer else {
        return;
    };
    let own = entry.sections.balancer.as_ref().map(|s| &s.fields);
    let dflt = defaults.balancer.as_ref().map(|s| &s.fields);
    let at = origin(
        own.and_then(|f| f.http_port.as_ref()).map(written),
        dflt.and_then(|f| f.http_port.as_ref()).map(written),
        balancer.http_port,
    );
    push(out, "`balancer.http_port`", balancer.http_port, at);
    if let Some(port) = balancer.https_port {
        let at = origin(
            own.and_then(|f| f.https_port.as_ref()).map(written_or_off),
            dflt.and_then(|f| f.https_port.as_ref()).map(written_or_off),
            port,
        );
        push(out, "`balancer.https_port`", port, at);
    }
    // The services come whole from the entry's own list, else from
    // [defaults]' list; each is found there by its (unique) name.
    let own_list = own.and_then(|f| f.tcp.as_ref());
    let (list, make): (_, fn(Span) -> Origin) = match own_list {
        Some(list) => (Some(list), Origin::Entry),
        None => (dflt.and_then(|f| f.tcp.as_ref()), Origin::Defaults),
    };
    for service in &balancer.tcp {
        let at = list.and_then(|l| port_of(l.get_ref(), &service.name));
        let key = format!("tcp service \"{}\"", service.name);
        push(out, &key, service.port, at.map(make));
    }
}

/// No origin: the value written was refused (and reported), so the port in
/// the settings is a stand-in, and comparing it would only mislead.
fn push(out: &mut Vec<Listener>, key: &str, port: u16, origin: Option<Origin>) {
    if let Some(origin) = origin {
        out.push(Listener {
            key: key.to_string(),
            port,
            origin,
        });
    }
}

/// A port key as written: where, and the port (`None` for `false`).
type Written = (Span, Option<i64>);

/// Where the value in effect was written: on the entry, else in
/// [defaults], else nowhere (built in). `None` if the value written there
/// is not the one in effect, i.e. it was refused.
fn origin(own: Option<Written>, dflt: Option<Written>, value: u16) -> Option<Origin> {
    let ((span, port), make): (Written, fn(Span) -> Origin) = match (own, dflt) {
        (Some(w), _) => (w, Origin::Entry),
        (None, Some(w)) => (w, Origin::Defaults),
        (None, None) => return Some(Origin::BuiltIn),
    };
    (port == Some(i64::from(value))).then(|| make(span))
}

fn written(raw: &Spanned<i64>) -> Written {
    (raw.span(), Some(*raw.get_ref()))
}

fn written_or_off(raw: &Spanned<OrOff<i64>>) -> Written {
    let port = match raw.get_ref() {
        OrOff::On(n) => Some(*n),
        OrOff::Off => None,
    };
    (raw.span(), port)
}

fn port_of(list: &[RawTcp], name: &str) -> Option<Span> {
    list.iter()
        .find(|t| t.fields.name.as_ref().is_some_and(|n| n.get_ref() == name))
        .and_then(|t| t.fields.port.as_ref())
        .map(Spanned::span)
}
