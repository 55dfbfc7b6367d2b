//! Checks that compare entries with each other: names and sockets that must
//! be unique, the VIP against the balancers' subnets, the one first primary.
//! These catch the mistakes that would otherwise surface as a split brain or
//! a port already in use on some Pi at 3 a.m.

use std::collections::HashMap;
use std::net::IpAddr;

use super::diagnostic::{Report, Span};
use super::model::Role;
use super::roles::role_span;
use super::validate::{ClusterFacts, NodeFacts, PatternFacts};

pub fn has_members(
    cluster: &ClusterFacts,
    nodes: &[NodeFacts<'_>],
    patterns: &[PatternFacts<'_>],
    report: &mut Report<'_>,
) {
    if nodes.is_empty() && patterns.is_empty() {
        report
            .error(
                cluster.span.clone(),
                "the file has no [[node]] and no [[pattern]]: no host would get a role",
            )
            .help("add a [[node]] with hostname, address and roles for each Pi");
    }
}

pub fn across_nodes(
    cluster: &ClusterFacts,
    nodes: &[NodeFacts<'_>],
    patterns: &[PatternFacts<'_>],
    report: &mut Report<'_>,
) {
    unique_hostnames(nodes, report);
    unique_macs(nodes, report);
    unique_sockets(nodes, report);
    vip(cluster, nodes, patterns, report);
    one_initial_primary(nodes, patterns, report);
}

fn unique_hostnames(nodes: &[NodeFacts<'_>], report: &mut Report<'_>) {
    let mut first: HashMap<&str, &NodeFacts<'_>> = HashMap::new();
    for node in nodes {
        let (Some(name), Some(written)) = (&node.hostname, &node.raw.hostname) else {
            continue;
        };
        match first.get(name.as_str()) {
            None => {
                first.insert(name, node);
            }
            Some(earlier) => {
                let at = earlier.raw.hostname.as_ref().map_or(0, |h| h.span().start);
                let line = report.line_of(at);
                report
                    .error(written.span(), format!("duplicate hostname \"{name}\""))
                    .note(format!("first defined at line {line}"));
            }
        }
    }
}

/// One MAC address names one Pi: a copied entry would give two cards the
/// same hostname on first boot.
fn unique_macs(nodes: &[NodeFacts<'_>], report: &mut Report<'_>) {
    let mut first: HashMap<&str, &NodeFacts<'_>> = HashMap::new();
    for node in nodes {
        let (Some(mac), Some(written)) = (&node.mac, &node.raw.mac) else {
            continue;
        };
        match first.get(mac.as_str()) {
            None => {
                first.insert(mac, node);
            }
            Some(earlier) => {
                let at = earlier.raw.mac.as_ref().map_or(0, |m| m.span().start);
                let line = report.line_of(at);
                report
                    .error(written.span(), format!("duplicate MAC address \"{mac}\""))
                    .note(format!("also given to the node at line {line}"));
            }
        }
    }
}

/// Two nodes on one address (a one-machine test cluster) must differ in
/// ports, or the second one's listener fails at start.
fn unique_sockets(nodes: &[NodeFacts<'_>], report: &mut Report<'_>) {
    let mut admin: HashMap<(IpAddr, u16), &NodeFacts<'_>> = HashMap::new();
    let mut gossip: HashMap<(IpAddr, u16), &NodeFacts<'_>> = HashMap::new();
    for node in nodes {
        let Some(net) = node.net else {
            continue;
        };
        let addr = net.addr();
        let mut clashes = Vec::new();
        for (kind, seen, port) in [
            ("admin", &mut admin, node.admin_port),
            ("gossip", &mut gossip, node.gossip_port),
        ] {
            match seen.get(&(addr, port)) {
                Some(earlier) => clashes.push((kind, port, *earlier)),
                None => {
                    seen.insert((addr, port), node);
                }
            }
        }
        // A copied entry whose address was not changed clashes on both
        // ports with the same node: one mistake, one error.
        let Some((_, _, earlier)) = clashes.first().copied() else {
            continue;
        };
        let same_node = clashes.iter().all(|c| std::ptr::eq(c.2, earlier));
        if !same_node {
            clashes.truncate(1);
        }
        let used: Vec<String> = clashes
            .iter()
            .map(|(kind, port, _)| format!("{} ({kind})", addr_port(addr, *port)))
            .collect();
        let port_written = |kind| match kind {
            "admin" => node.raw.admin_port.as_ref(),
            _ => node.raw.gossip_port.as_ref(),
        };
        // Point at the port if this node set the one clashing port itself,
        // else at the address (the usual culprit).
        let span = match clashes.as_slice() {
            [(kind, _, _)] => port_written(*kind).map(|p| p.span()),
            _ => None,
        }
        .or_else(|| node.raw.address.as_ref().map(|a| a.span()))
        .unwrap_or(node.raw.span.clone());
        let line = report.line_of(earlier.raw.span.start);
        report
            .error(
                span,
                format!(
                    "{} uses {}, like {} already does",
                    node.label(),
                    used.join(" and "),
                    earlier.label()
                ),
            )
            .note(format!("{} is defined at line {line}", earlier.label()))
            .help("give each node its own address, or nodes sharing one different ports");
    }
}

fn vip(
    cluster: &ClusterFacts,
    nodes: &[NodeFacts<'_>],
    patterns: &[PatternFacts<'_>],
    report: &mut Report<'_>,
) {
    let balancers: Vec<&NodeFacts<'_>> = nodes
        .iter()
        .filter(|n| n.roles.contains(&Role::Balancer))
        .collect();
    let Some(vip) = &cluster.vip else {
        if cluster.vip_written {
            return;
        }
        let first = balancers
            .iter()
            .filter_map(|n| role_span(&n.raw.roles, Role::Balancer).map(|s| (n.label(), s)))
            .chain(patterns.iter().filter_map(|p| {
                let label = p.rule.as_ref().map_or("a pattern".to_string(), |r| {
                    format!("pattern \"{}\"", r.pattern)
                });
                role_span(&p.raw.roles, Role::Balancer).map(|s| (label, s))
            }))
            .next();
        if let Some((label, span)) = first {
            report
                .error(
                    span,
                    format!("{label} has the balancer role, but [cluster] has no `vip`"),
                )
                .help("add the virtual IP the balancers share to [cluster], like vip = \"192.0.2.10/24\"");
        }
        return;
    };
    let vip_addr = vip.get_ref().addr();
    for node in nodes {
        if node.net.map(|n| n.addr()) == Some(vip_addr) {
            let line = report.line_of(node.raw.span.start);
            report
                .error(
                    vip.span(),
                    format!("the VIP {vip_addr} is also the address of {}", node.label()),
                )
                .note(format!("{} is defined at line {line}", node.label()))
                .help("the VIP must be a free address that only the VRRP master holds");
        }
    }
    let with_net: Vec<(&NodeFacts<'_>, ipnet::IpNet)> = balancers
        .iter()
        .filter_map(|n| n.net.map(|net| (*n, net)))
        .collect();
    if with_net.is_empty() {
        return;
    }
    let outside: Vec<&(&NodeFacts<'_>, ipnet::IpNet)> = with_net
        .iter()
        .filter(|(_, net)| !net.contains(&vip_addr))
        .collect();
    if outside.len() == with_net.len() {
        let subnets: Vec<String> = with_net
            .iter()
            .map(|(n, net)| format!("{} is in {}", n.label(), net.trunc()))
            .collect();
        report
            .error(
                vip.span(),
                format!(
                    "the VIP {} is outside the subnet of every balancer node",
                    vip.get_ref()
                ),
            )
            .note(subnets.join("; "))
            .help("VRRP can only move the VIP between nodes on its subnet");
        return;
    }
    // Some balancers can hold the VIP: blame the ones that cannot.
    for (node, net) in outside {
        let span = node
            .raw
            .address
            .as_ref()
            .map_or(node.raw.span.clone(), |a| a.span());
        report
            .error(
                span,
                format!(
                    "balancer {} is in {}, outside the subnet of the VIP {}",
                    node.label(),
                    net.trunc(),
                    vip.get_ref()
                ),
            )
            .help("VRRP can only move the VIP between nodes on its subnet");
    }
}

/// Exactly one db node runs initdb on first boot; every other one clones it.
/// None would leave the cluster without a database, two would fork it.
fn one_initial_primary(
    nodes: &[NodeFacts<'_>],
    patterns: &[PatternFacts<'_>],
    report: &mut Report<'_>,
) {
    let db_nodes: Vec<&NodeFacts<'_>> = nodes
        .iter()
        .filter(|n| n.roles.contains(&Role::Db))
        .collect();
    let primaries: Vec<(&NodeFacts<'_>, Span)> = db_nodes
        .iter()
        .filter(|n| n.settings.db.as_ref().is_some_and(|d| d.initial_primary))
        .filter_map(|n| {
            let flag = n
                .raw
                .sections
                .db
                .as_ref()?
                .fields
                .initial_primary
                .as_ref()?;
            Some((*n, flag.span()))
        })
        .collect();
    // A flag written with the wrong type was reported already; saying
    // "nobody is primary" as well would only repeat it.
    let flag_reported = db_nodes.iter().any(|n| {
        n.raw
            .sections
            .db
            .as_ref()
            .is_some_and(|s| s.reported.contains("initial_primary"))
    });
    match primaries.len() {
        1 => {}
        0 if flag_reported => {}
        0 => {
            let first = db_nodes
                .iter()
                .filter_map(|n| role_span(&n.raw.roles, Role::Db))
                .chain(
                    patterns
                        .iter()
                        .filter_map(|p| role_span(&p.raw.roles, Role::Db)),
                )
                .next();
            let Some(span) = first else {
                return;
            };
            let names: Vec<String> = db_nodes.iter().filter_map(|n| n.hostname.clone()).collect();
            let d = report.error(
                span,
                "no db node has `initial_primary = true`; exactly one must start as primary",
            );
            if names.is_empty() {
                d.help("name one [[node]] with the db role and give it db = { initial_primary = true }");
            } else {
                d.help(format!(
                    "add db = {{ initial_primary = true }} to one of: {}",
                    names.join(", ")
                ));
            }
        }
        n => {
            let names: Vec<String> = primaries.iter().map(|(node, _)| node.label()).collect();
            for (_, span) in &primaries {
                report
                    .error(
                        span.clone(),
                        format!(
                            "`initial_primary = true` is set on {n} db nodes; exactly one may start as primary"
                        ),
                    )
                    .note(format!("set on {}", names.join(", ")));
            }
        }
    }
}

/// Node addresses as messages show them.
fn addr_port(addr: IpAddr, port: u16) -> String {
    std::net::SocketAddr::new(addr, port).to_string()
}
