//! Who this node is: its hostname (the system's, or `--hostname`) and its
//! address (from the cluster file, `--address`, or found at start).

use std::net::{IpAddr, SocketAddr, UdpSocket};

use anyhow::{Context as _, bail};

use crate::config::{ClusterConfig, NodePlan};

pub fn system_hostname() -> anyhow::Result<String> {
    let uname = rustix::system::uname();
    let name = uname.nodename().to_string_lossy().trim().to_lowercase();
    // A FQDN hostname still names the node by its first label.
    let short = name.split('.').next().unwrap_or_default().to_owned();
    if short.is_empty() {
        bail!("the system has no hostname; set one or pass --hostname");
    }
    Ok(short)
}

/// A node named in the file has its address there. A node that joined by a
/// pattern takes `--address`, else the source address the kernel picks to
/// reach the first node of the file: connecting a UDP socket sends nothing,
/// it only asks the routing table.
pub fn resolve_address(
    plan: &NodePlan,
    config: &ClusterConfig,
    explicit: Option<IpAddr>,
) -> anyhow::Result<IpAddr> {
    if let Some(addr) = explicit.or(plan.address) {
        return Ok(addr);
    }
    let first = config.nodes.first().context(
        "no address for this node: the cluster file names no node to route towards; pass --address",
    )?;
    let unspecified: SocketAddr = match first.address {
        IpAddr::V4(_) => "0.0.0.0:0".parse()?,
        IpAddr::V6(_) => "[::]:0".parse()?,
    };
    let probe = UdpSocket::bind(unspecified)?;
    probe
        .connect(first.gossip_addr())
        .with_context(|| format!("no route towards {}; pass --address", first.address))?;
    Ok(probe.local_addr()?.ip())
}
