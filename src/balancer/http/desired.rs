//! Which backends the HTTP balancer should have, from what the node knows:
//! every member with the web role that membership reports up or down (at the
//! address it reported and the web port its plan gives), this node if it has
//! the web role itself, and the static `backends` of the cluster file. This
//! replaces the ZooKeeper watcher that rewrote HAProxy's server lines.
//!
//! A member that crashed (down) stays: its failing checks take it out of
//! rotation and the stats show it DOWN, as an operator of HAProxy expects,
//! and it is back in rotation as soon as its checks pass again. A member
//! that stopped gracefully (left) is removed, draining its in-flight
//! requests; a forgotten one disappears.

use std::net::{IpAddr, SocketAddr};

use crate::balancer::pool::{Desired, Source};
use crate::config::StaticBackend;
use crate::membership::{MemberView, PeerState};

/// This node, which membership does not list.
#[derive(Debug, Clone)]
pub struct Me<'a> {
    pub hostname: &'a str,
    pub address: IpAddr,
    /// `Some` when this node has the web role.
    pub web_port: Option<u16>,
}

/// The desired set, sorted by name; an address is listed once (members
/// first, then this node, then static entries).
pub fn desired(
    me: &Me<'_>,
    members: &[MemberView],
    web_port_of: impl Fn(&str) -> Option<u16>,
    statics: &[StaticBackend],
) -> Vec<Desired> {
    let mut out: Vec<Desired> = Vec::new();
    let mut push = |d: Desired| {
        if !out.iter().any(|o| o.addr == d.addr) {
            out.push(d);
        }
    };
    let known = |m: &&MemberView| matches!(m.state, PeerState::Up | PeerState::Down);
    for m in members.iter().filter(known) {
        let Some(report) = &m.report else { continue };
        if !report.roles.iter().any(|r| r == "web") {
            continue;
        }
        let (Some(ip), Some(port)) = (report.address, web_port_of(&m.hostname)) else {
            continue;
        };
        push(Desired {
            name: m.hostname.clone(),
            addr: SocketAddr::new(ip, port),
            weight: 1,
            source: Source::Member,
        });
    }
    if let Some(port) = me.web_port {
        push(Desired {
            name: me.hostname.to_owned(),
            addr: SocketAddr::new(me.address, port),
            weight: 1,
            source: Source::Member,
        });
    }
    for s in statics {
        push(Desired {
            name: s.address.to_string(),
            addr: s.address,
            weight: s.weight,
            source: Source::Static,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::membership::NodeReport;

    fn member(host: &str, state: PeerState, ip: &str, roles: &[&str]) -> MemberView {
        MemberView {
            hostname: host.to_owned(),
            state,
            since_ms: 0,
            last_heard_ms: None,
            gossip: None,
            report: Some(NodeReport {
                address: Some(ip.parse().unwrap()),
                roles: roles.iter().map(|r| r.to_string()).collect(),
                ..NodeReport::default()
            }),
        }
    }

    #[test]
    fn up_web_members_this_node_and_static_backends() {
        let members = [
            member("pi-2", PeerState::Up, "192.0.2.12", &["balancer", "web"]),
            member("pi-3", PeerState::Left, "192.0.2.13", &["web"]),
            member("pi-6", PeerState::Down, "192.0.2.16", &["web"]),
            member("pi-4", PeerState::Up, "192.0.2.14", &["storage"]),
            member("pi-5", PeerState::Up, "192.0.2.15", &["web"]),
        ];
        let me = Me {
            hostname: "pi-1",
            address: "192.0.2.11".parse().unwrap(),
            web_port: Some(8080),
        };
        let port_of = |h: &str| match h {
            "pi-5" => Some(8081),
            "nope" => None,
            _ => Some(8080),
        };
        let statics = [
            StaticBackend {
                address: "198.51.100.7:80".parse().unwrap(),
                weight: 3,
            },
            // Same as a member: listed once, as the member.
            StaticBackend {
                address: "192.0.2.12:8080".parse().unwrap(),
                weight: 9,
            },
        ];
        let d = desired(&me, &members, port_of, &statics);
        let got: Vec<(String, String, u32)> = d
            .iter()
            .map(|d| (d.name.clone(), d.addr.to_string(), d.weight))
            .collect();
        assert_eq!(
            got,
            [
                ("198.51.100.7:80".into(), "198.51.100.7:80".into(), 3),
                ("pi-1".into(), "192.0.2.11:8080".into(), 1),
                ("pi-2".into(), "192.0.2.12:8080".into(), 1),
                ("pi-5".into(), "192.0.2.15:8081".into(), 1),
                ("pi-6".into(), "192.0.2.16:8080".into(), 1),
            ]
        );
    }

    #[test]
    fn a_member_without_address_or_plan_is_skipped() {
        let mut m = member("pi-2", PeerState::Up, "192.0.2.12", &["web"]);
        if let Some(r) = m.report.as_mut() {
            r.address = None;
        }
        let me = Me {
            hostname: "pi-1",
            address: "192.0.2.11".parse().unwrap(),
            web_port: None,
        };
        assert!(desired(&me, &[m], |_| Some(8080), &[]).is_empty());
        let m = member("pi-9", PeerState::Up, "192.0.2.19", &["web"]);
        assert!(desired(&me, &[m], |_| None, &[]).is_empty());
    }
}
