//! The XML as gluster prints it, mirrored field by field for quick-xml's
//! serde support. Every leaf is a `String` (or absent): gluster prints
//! "N/A" and "-" where a number would go, so numbers are read in
//! `convert.rs`, where a bad one gets an error naming its field.
//! Elements not listed here (`cliOp`, `output`, `volProfile`, `file`
//! lists, ...) are skipped.

use serde::Deserialize;

#[derive(Debug, Deserialize)]
pub struct CliOutput {
    #[serde(rename = "opRet")]
    pub op_ret: Option<String>,
    #[serde(rename = "opErrno")]
    pub op_errno: Option<String>,
    #[serde(rename = "opErrstr")]
    pub op_errstr: Option<String>,
    #[serde(rename = "volInfo")]
    pub vol_info: Option<VolInfo>,
    #[serde(rename = "volStatus")]
    pub vol_status: Option<VolStatus>,
    #[serde(rename = "healInfo")]
    pub heal_info: Option<HealInfo>,
    #[serde(rename = "peerStatus")]
    pub peer_status: Option<PeerStatus>,
    #[serde(rename = "volList")]
    pub vol_list: Option<VolList>,
}

#[derive(Debug, Deserialize)]
pub struct VolInfo {
    pub volumes: Option<InfoVolumes>,
}

#[derive(Debug, Deserialize)]
pub struct InfoVolumes {
    #[serde(default)]
    pub volume: Vec<InfoVolume>,
    pub count: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct InfoVolume {
    pub name: Option<String>,
    pub id: Option<String>,
    #[serde(rename = "statusStr")]
    pub status_str: Option<String>,
    #[serde(rename = "typeStr")]
    pub type_str: Option<String>,
    #[serde(rename = "brickCount")]
    pub brick_count: Option<String>,
    #[serde(rename = "replicaCount")]
    pub replica_count: Option<String>,
    #[serde(rename = "arbiterCount")]
    pub arbiter_count: Option<String>,
    #[serde(rename = "disperseCount")]
    pub disperse_count: Option<String>,
    #[serde(rename = "redundancyCount")]
    pub redundancy_count: Option<String>,
    pub bricks: Option<InfoBricks>,
    pub options: Option<InfoOptions>,
}

#[derive(Debug, Deserialize)]
pub struct InfoBricks {
    #[serde(default)]
    pub brick: Vec<InfoBrick>,
}

/// `<brick uuid="...">host:/path<name>host:/path</name>...</brick>`: the
/// text and `<name>` say the same; `<name>` is read, the text kept as the
/// fallback for gluster versions that print only the text.
#[derive(Debug, Deserialize)]
pub struct InfoBrick {
    #[serde(rename = "@uuid")]
    pub uuid: Option<String>,
    #[serde(rename = "$text")]
    pub text: Option<String>,
    pub name: Option<String>,
    #[serde(rename = "hostUuid")]
    pub host_uuid: Option<String>,
    #[serde(rename = "isArbiter")]
    pub is_arbiter: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct InfoOptions {
    #[serde(default)]
    pub option: Vec<InfoOption>,
}

#[derive(Debug, Deserialize)]
pub struct InfoOption {
    pub name: Option<String>,
    pub value: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct VolStatus {
    pub volumes: Option<StatusVolumes>,
}

#[derive(Debug, Deserialize)]
pub struct StatusVolumes {
    #[serde(default)]
    pub volume: Vec<StatusVolume>,
}

#[derive(Debug, Deserialize)]
pub struct StatusVolume {
    #[serde(rename = "volName")]
    pub vol_name: Option<String>,
    #[serde(default)]
    pub node: Vec<StatusNode>,
}

#[derive(Debug, Deserialize)]
pub struct StatusNode {
    pub hostname: Option<String>,
    pub path: Option<String>,
    pub peerid: Option<String>,
    pub status: Option<String>,
    pub port: Option<String>,
    pub ports: Option<StatusPorts>,
    pub pid: Option<String>,
    #[serde(rename = "sizeTotal")]
    pub size_total: Option<String>,
    #[serde(rename = "sizeFree")]
    pub size_free: Option<String>,
    pub device: Option<String>,
    #[serde(rename = "fsName")]
    pub fs_name: Option<String>,
    #[serde(rename = "inodesTotal")]
    pub inodes_total: Option<String>,
    #[serde(rename = "inodesFree")]
    pub inodes_free: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct StatusPorts {
    pub tcp: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct HealInfo {
    pub bricks: Option<HealBricks>,
}

#[derive(Debug, Deserialize)]
pub struct HealBricks {
    #[serde(default)]
    pub brick: Vec<HealBrick>,
}

#[derive(Debug, Deserialize)]
pub struct HealBrick {
    pub name: Option<String>,
    pub status: Option<String>,
    #[serde(rename = "totalNumberOfEntries")]
    pub total: Option<String>,
    /// Older gluster (and `heal info` without `summary`) prints only this.
    #[serde(rename = "numberOfEntries")]
    pub number_of_entries: Option<String>,
    #[serde(rename = "numberOfEntriesInHealPending")]
    pub pending: Option<String>,
    #[serde(rename = "numberOfEntriesInSplitBrain")]
    pub split_brain: Option<String>,
    #[serde(rename = "numberOfEntriesPossiblyHealing")]
    pub possibly_healing: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct PeerStatus {
    #[serde(default)]
    pub peer: Vec<RawPeer>,
}

#[derive(Debug, Deserialize)]
pub struct RawPeer {
    pub uuid: Option<String>,
    pub hostname: Option<String>,
    pub connected: Option<String>,
    #[serde(rename = "stateStr")]
    pub state_str: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct VolList {
    pub count: Option<String>,
    #[serde(default)]
    pub volume: Vec<String>,
}
