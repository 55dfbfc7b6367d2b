//! Typed parsing of `gluster --mode=script --xml` output with quick-xml's
//! serde support: `raw.rs` mirrors the XML, this file checks it and builds
//! the model. A number gluster writes as "N/A" or "-" becomes `None`; any
//! other non-number is an error naming the field, never a silent 0.

mod raw;

use std::collections::BTreeMap;

use super::model::{
    BrickRef, BrickStatus, HealBrick, Peer, RunState, Space, VolumeInfo, VolumeStatus,
};
use super::reply::{CliError, check_op, xml_body};

/// The largest document read. `volume info` of a big pool is a few hundred
/// KiB; `heal info` without `summary` (which piha never asks for) is what
/// grows without bound.
pub const MAX_XML: usize = 8 << 20;

/// Any document gluster prints, for callers (and tests) that do not know
/// which command produced it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Document {
    VolumeInfo(Vec<VolumeInfo>),
    VolumeStatus(Vec<VolumeStatus>),
    Heal(Vec<HealBrick>),
    Peers(Vec<Peer>),
    VolumeList(Vec<String>),
    /// A command that succeeded and prints no body we read (`volume stop`,
    /// `volume set`, `volume profile`, ...).
    Done,
}

/// Reads stdout of any gluster command: the envelope, then whichever body
/// is there.
pub fn document(stdout: &str, exit: Option<i32>) -> Result<Document, CliError> {
    let out = envelope(stdout, exit)?;
    if let Some(info) = out.vol_info {
        return volumes_of_info(info).map(Document::VolumeInfo);
    }
    if let Some(status) = out.vol_status {
        return status_volumes(status).map(Document::VolumeStatus);
    }
    if let Some(heal) = out.heal_info {
        return heal_bricks(heal).map(Document::Heal);
    }
    if let Some(peers) = out.peer_status {
        return peers_of(peers).map(Document::Peers);
    }
    if let Some(list) = out.vol_list {
        return volume_names(list).map(Document::VolumeList);
    }
    Ok(Document::Done)
}

/// `volume info [<vol>]`.
pub fn volume_info(stdout: &str, exit: Option<i32>) -> Result<Vec<VolumeInfo>, CliError> {
    let info = envelope(stdout, exit)?
        .vol_info
        .ok_or_else(|| missing("<volInfo>"))?;
    volumes_of_info(info)
}

/// `volume status <vol> detail`.
pub fn volume_status(stdout: &str, exit: Option<i32>) -> Result<Vec<VolumeStatus>, CliError> {
    let status = envelope(stdout, exit)?
        .vol_status
        .ok_or_else(|| missing("<volStatus>"))?;
    status_volumes(status)
}

/// `volume heal <vol> info summary`.
pub fn heal_summary(stdout: &str, exit: Option<i32>) -> Result<Vec<HealBrick>, CliError> {
    let heal = envelope(stdout, exit)?
        .heal_info
        .ok_or_else(|| missing("<healInfo>"))?;
    heal_bricks(heal)
}

/// `pool list` (includes this node as "localhost") or `peer status`.
pub fn peers(stdout: &str, exit: Option<i32>) -> Result<Vec<Peer>, CliError> {
    let peers = envelope(stdout, exit)?
        .peer_status
        .ok_or_else(|| missing("<peerStatus>"))?;
    peers_of(peers)
}

/// A command whose answer is only success or failure (`peer probe`,
/// `volume create`, `volume set`, ...).
pub fn done(stdout: &str, exit: Option<i32>) -> Result<(), CliError> {
    envelope(stdout, exit).map(|_| ())
}

/// `volume heal <vol>`: gluster 10 answers it in text even with `--xml`
/// ("Launching heal operation to perform index self heal on volume piha
/// has been successful"); failures may come as XML or text.
pub fn heal_launched(stdout: &str, exit: Option<i32>) -> Result<(), CliError> {
    let text = stdout.trim_start();
    if text.starts_with("Launching heal operation") {
        if text.contains("has been successful") && exit == Some(0) {
            return Ok(());
        }
        let text = super::reply::short(text);
        // Worth asking again: another node's operation held the lock.
        if text.contains("Another transaction is in progress") || text.contains("Locking failed") {
            return Err(CliError::Busy { text });
        }
        return Err(CliError::Refused { op_errno: 0, text });
    }
    done(stdout, exit)
}

/// Finds and parses the document and fails on `opRet` != 0.
fn envelope(stdout: &str, exit: Option<i32>) -> Result<raw::CliOutput, CliError> {
    if stdout.len() > MAX_XML {
        return Err(CliError::Malformed {
            why: format!("{} bytes of output, more than {MAX_XML}", stdout.len()),
        });
    }
    let body = xml_body(stdout, exit)?;
    let out: raw::CliOutput =
        quick_xml::de::from_str(body).map_err(|e| CliError::Malformed { why: e.to_string() })?;
    let op_ret =
        int(out.op_ret.as_deref(), "opRet")?.ok_or_else(|| missing("a number in <opRet>"))?;
    let op_errno = int(out.op_errno.as_deref(), "opErrno")?.unwrap_or(0);
    check_op(op_ret, op_errno, out.op_errstr.as_deref().unwrap_or(""))?;
    Ok(out)
}

fn volumes_of_info(info: raw::VolInfo) -> Result<Vec<VolumeInfo>, CliError> {
    let Some(volumes) = info.volumes else {
        return Err(missing("<volumes> in <volInfo>"));
    };
    let listed = volumes.volume.len();
    // A count that disagrees with the list means the list is not whole.
    if let Some(count) = count(volumes.count.as_deref(), "volumes/count")? {
        if count != listed {
            return Err(CliError::Inconsistent {
                why: format!("volume info says {count} volumes and lists {listed}"),
            });
        }
    }
    volumes.volume.into_iter().map(info_volume).collect()
}

fn info_volume(v: raw::InfoVolume) -> Result<VolumeInfo, CliError> {
    let name = text(v.name, "volume/name")?;
    let at = |field: &str| format!("volume {name}: {field}");
    let bricks = v
        .bricks
        .map(|b| b.brick)
        .unwrap_or_default()
        .into_iter()
        .map(|b| info_brick(b, &name))
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(n) = count(v.brick_count.as_deref(), &at("brickCount"))? {
        if n != bricks.len() {
            return Err(CliError::Inconsistent {
                why: format!("volume {name} says {n} bricks and lists {}", bricks.len()),
            });
        }
    }
    let options = v
        .options
        .map(|o| o.option)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|o| Some((o.name?, o.value.unwrap_or_default())))
        .collect::<BTreeMap<_, _>>();
    let state = match v.status_str.as_deref().map(str::trim) {
        Some("Created") => RunState::Created,
        Some("Started") => RunState::Started,
        Some("Stopped") => RunState::Stopped,
        Some(other) => RunState::Other(other.to_owned()),
        None => return Err(missing(&at("statusStr"))),
    };
    Ok(VolumeInfo {
        id: v.id.unwrap_or_default(),
        state,
        kind: v.type_str.unwrap_or_default(),
        replica_count: count(v.replica_count.as_deref(), &at("replicaCount"))?.unwrap_or(1),
        arbiter_count: count(v.arbiter_count.as_deref(), &at("arbiterCount"))?.unwrap_or(0),
        disperse_count: count(v.disperse_count.as_deref(), &at("disperseCount"))?.unwrap_or(0),
        redundancy_count: count(v.redundancy_count.as_deref(), &at("redundancyCount"))?
            .unwrap_or(0),
        bricks,
        options,
        name,
    })
}

fn info_brick(b: raw::InfoBrick, volume: &str) -> Result<BrickRef, CliError> {
    let name = b
        .name
        .or(b.text)
        .map(|n| n.trim().to_owned())
        .filter(|n| !n.is_empty())
        .ok_or_else(|| missing(&format!("volume {volume}: a brick's name")))?;
    let (host, path) = split_brick(&name).ok_or_else(|| CliError::Malformed {
        why: format!("volume {volume}: brick {name:?} is not host:/path"),
    })?;
    Ok(BrickRef {
        host,
        path,
        host_uuid: b.host_uuid.or(b.uuid).filter(|u| u != "-"),
        arbiter: flag(b.is_arbiter.as_deref(), &format!("brick {name}: isArbiter"))?,
    })
}

/// `host:/path` at the first ":/" (an IPv6 host has colons of its own).
pub fn split_brick(name: &str) -> Option<(String, String)> {
    let at = name.find(":/")?;
    let (host, path) = (&name[..at], &name[at + 1..]);
    (!host.is_empty()).then(|| (host.to_owned(), path.to_owned()))
}

fn status_volumes(status: raw::VolStatus) -> Result<Vec<VolumeStatus>, CliError> {
    let volumes = status.volumes.map(|v| v.volume).unwrap_or_default();
    volumes.into_iter().map(status_volume).collect()
}

fn status_volume(v: raw::StatusVolume) -> Result<VolumeStatus, CliError> {
    let name = text(v.vol_name, "volume/volName")?;
    let mut bricks = Vec::new();
    for node in v.node {
        // Daemons (self-heal, NFS, quota...) are listed as nodes too, with
        // a host name like "Self-heal Daemon" and no brick path.
        if !node.path.as_deref().is_some_and(|p| p.starts_with('/')) {
            continue;
        }
        bricks.push(status_brick(node, &name)?);
    }
    Ok(VolumeStatus { name, bricks })
}

fn status_brick(n: raw::StatusNode, volume: &str) -> Result<BrickStatus, CliError> {
    let host = text(n.hostname, &format!("volume {volume}: node/hostname"))?;
    let path = n.path.unwrap_or_default();
    let at = |field: &str| format!("volume {volume} brick {host}:{path}: {field}");
    let online = flag(n.status.as_deref(), &at("status"))?;
    let port = n.ports.and_then(|p| p.tcp).or(n.port);
    let port = int(port.as_deref(), &at("port"))?
        .map(|p| u16::try_from(p).map_err(|_| bad(&at("port"), &p.to_string())))
        .transpose()?;
    let pid = int(n.pid.as_deref(), &at("pid"))?
        .filter(|p| *p > 0)
        .map(|p| u32::try_from(p).map_err(|_| bad(&at("pid"), &p.to_string())))
        .transpose()?;
    let space = Space {
        size_total: number(n.size_total.as_deref(), &at("sizeTotal"))?,
        size_free: number(n.size_free.as_deref(), &at("sizeFree"))?,
        inodes_total: number(n.inodes_total.as_deref(), &at("inodesTotal"))?,
        inodes_free: number(n.inodes_free.as_deref(), &at("inodesFree"))?,
        device: n.device.filter(|d| !d.is_empty()),
        fs_name: n.fs_name.filter(|d| !d.is_empty()),
    };
    Ok(BrickStatus {
        peer_id: n.peerid.filter(|p| !p.is_empty() && p != "-"),
        online,
        port,
        pid,
        space,
        host,
        path,
    })
}

fn heal_bricks(heal: raw::HealInfo) -> Result<Vec<HealBrick>, CliError> {
    let bricks = heal.bricks.map(|b| b.brick).unwrap_or_default();
    bricks.into_iter().map(heal_brick).collect()
}

fn heal_brick(b: raw::HealBrick) -> Result<HealBrick, CliError> {
    let brick = text(b.name, "healInfo brick/name")?;
    let status = b.status.unwrap_or_default().trim().to_owned();
    // Only "Connected" carries counts worth reading; a dead brick's status
    // is an error text, sometimes with a counter glued on (seen in 10.3).
    let connected = status == "Connected";
    let at = |field: &str| format!("heal info brick {brick}: {field}");
    let read = |value: Option<String>, field: &str| match connected {
        true => number(value.as_deref(), &at(field)),
        false => Ok(None),
    };
    let total = match b.total {
        Some(t) => read(Some(t), "totalNumberOfEntries")?,
        None => read(b.number_of_entries, "numberOfEntries")?,
    };
    Ok(HealBrick {
        connected,
        total,
        pending: read(b.pending, "numberOfEntriesInHealPending")?,
        split_brain: read(b.split_brain, "numberOfEntriesInSplitBrain")?,
        possibly_healing: read(b.possibly_healing, "numberOfEntriesPossiblyHealing")?,
        status,
        brick,
    })
}

fn peers_of(peers: raw::PeerStatus) -> Result<Vec<Peer>, CliError> {
    peers
        .peer
        .into_iter()
        .map(|p| {
            let hostname = text(p.hostname, "peer/hostname")?;
            let at = format!("peer {hostname}: connected");
            Ok(Peer {
                uuid: p.uuid.unwrap_or_default(),
                connected: flag(p.connected.as_deref(), &at)?,
                state: p.state_str,
                is_self: hostname == "localhost",
                hostname,
            })
        })
        .collect()
}

fn volume_names(list: raw::VolList) -> Result<Vec<String>, CliError> {
    if let Some(n) = count(list.count.as_deref(), "volList/count")? {
        if n != list.volume.len() {
            return Err(CliError::Inconsistent {
                why: format!(
                    "volume list says {n} volumes and lists {}",
                    list.volume.len()
                ),
            });
        }
    }
    Ok(list.volume)
}

fn missing(what: &str) -> CliError {
    CliError::Malformed {
        why: format!("no {what}"),
    }
}

fn bad(field: &str, value: &str) -> CliError {
    CliError::Malformed {
        why: format!(
            "{field} = {:?} is not a valid value",
            super::reply::short(value)
        ),
    }
}

fn text(value: Option<String>, field: &str) -> Result<String, CliError> {
    value
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
        .ok_or_else(|| missing(field))
}

/// A signed integer; "N/A", "-" and an empty element are "not said".
fn int(value: Option<&str>, field: &str) -> Result<Option<i64>, CliError> {
    match value.map(str::trim) {
        None | Some("" | "N/A" | "-") => Ok(None),
        Some(v) => v.parse().map(Some).map_err(|_| bad(field, v)),
    }
}

fn number(value: Option<&str>, field: &str) -> Result<Option<u64>, CliError> {
    match value.map(str::trim) {
        None | Some("" | "N/A" | "-") => Ok(None),
        Some(v) => v.parse().map(Some).map_err(|_| bad(field, v)),
    }
}

fn count(value: Option<&str>, field: &str) -> Result<Option<usize>, CliError> {
    number(value, field)?
        .map(|n| usize::try_from(n).map_err(|_| bad(field, &n.to_string())))
        .transpose()
}

/// gluster's booleans: "1" or "0".
fn flag(value: Option<&str>, field: &str) -> Result<bool, CliError> {
    match value.map(str::trim) {
        Some("1") => Ok(true),
        Some("0") | None => Ok(false),
        Some(v) => Err(bad(field, v)),
    }
}
