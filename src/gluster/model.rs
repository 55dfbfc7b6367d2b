//! What gluster told us, typed: the values the XML parsers produce and the
//! health model reads. Nothing here is a health judgement yet; an absent
//! number stays `None` ("gluster did not say"), never 0.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Whether a volume serves clients (`statusStr` of `volume info`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    /// Made by `volume create`, never started: bricks are not running.
    Created,
    Started,
    Stopped,
    /// A state this parser does not know, kept as gluster printed it.
    Other(String),
}

/// One volume from `volume info`: its layout and options.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VolumeInfo {
    pub name: String,
    pub id: String,
    pub state: RunState,
    /// `typeStr`, e.g. "Replicate", "Distributed-Replicate", "Distribute".
    pub kind: String,
    /// Bricks per replica set; 1 for a plain distribute volume.
    pub replica_count: usize,
    pub arbiter_count: usize,
    /// Bricks per disperse set (erasure coding); 0 when not dispersed.
    pub disperse_count: usize,
    pub redundancy_count: usize,
    /// In volume order: consecutive groups of `set_size()` bricks form one
    /// replica (or disperse) set.
    pub bricks: Vec<BrickRef>,
    pub options: BTreeMap<String, String>,
}

impl VolumeInfo {
    /// How many bricks make one set that holds the same files.
    pub fn set_size(&self) -> usize {
        if self.disperse_count > 0 {
            self.disperse_count
        } else {
            self.replica_count.max(1)
        }
    }

    /// Whether `volume heal` applies (replicate or disperse volumes).
    pub fn heals(&self) -> bool {
        self.replica_count > 1 || self.disperse_count > 0
    }
}

/// A brick as `volume info` names it: `host:/path`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BrickRef {
    pub host: String,
    pub path: String,
    /// The peer uuid of the brick's node, when gluster printed one.
    pub host_uuid: Option<String>,
    /// An arbiter brick holds metadata only: it counts for quorum, never
    /// for free space.
    pub arbiter: bool,
}

impl BrickRef {
    /// `host:/path`, gluster's own name for the brick.
    pub fn name(&self) -> String {
        format!("{}:{}", self.host, self.path)
    }
}

/// One volume from `volume status <vol> detail`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeStatus {
    pub name: String,
    /// The bricks gluster reported. A brick whose node is down is missing
    /// here (not "offline"): the health model compares with `volume info`.
    pub bricks: Vec<BrickStatus>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrickStatus {
    pub host: String,
    pub path: String,
    pub peer_id: Option<String>,
    /// `status` 1: the brick process runs and answers its node's glusterd.
    pub online: bool,
    pub port: Option<u16>,
    pub pid: Option<u32>,
    pub space: Space,
}

/// The brick's file system, from `status detail`. `None`: not printed
/// (older gluster prints no inode counts; an offline brick may print none).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Space {
    pub size_total: Option<u64>,
    pub size_free: Option<u64>,
    pub inodes_total: Option<u64>,
    pub inodes_free: Option<u64>,
    pub device: Option<String>,
    pub fs_name: Option<String>,
}

/// One brick's line of `volume heal <vol> info summary`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealBrick {
    /// `host:/path`.
    pub brick: String,
    /// Whether the heal daemon reached the brick ("Connected").
    pub connected: bool,
    /// gluster's status text as printed (for a dead brick it is an error
    /// message, sometimes with a counter glued to it).
    pub status: String,
    pub total: Option<u64>,
    pub pending: Option<u64>,
    pub split_brain: Option<u64>,
    pub possibly_healing: Option<u64>,
}

/// One brick's entry count from `volume heal <vol> statistics heal-count`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealCount {
    pub brick: String,
    /// `None`: "Brick is not connected", so no count (not zero).
    pub entries: Option<u64>,
}

/// One member of the trusted pool (`pool list` / `peer status`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Peer {
    pub uuid: String,
    pub hostname: String,
    pub connected: bool,
    /// `stateStr`, e.g. "Peer in Cluster"; `pool list` prints none for self.
    pub state: Option<String>,
    /// `pool list` lists the node it ran on as "localhost".
    pub is_self: bool,
}
