//! What the pool and volume still lack, from the cluster file and what
//! gluster says (sans-IO). The first storage node in cluster order is the
//! one that acts (probes peers, creates, starts, sets options), so two
//! nodes never race to create the same volume; every storage node mounts.
//!
//! Safe on every boot: a step is only ever "make what is missing". A volume
//! that exists is never recreated; one whose bricks differ from the file is
//! left alone and reported; a volume an operator stopped stays stopped.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::model::{Peer, RunState, VolumeInfo};
use crate::config::{ClusterConfig, Role};

/// The volume the cluster file describes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub volume: String,
    /// Bricks per replica set, as gluster counts them (an arbiter too).
    pub replica: usize,
    /// The last brick of each set is an arbiter.
    pub arbiter: bool,
    /// Consecutive `replica` bricks form one set: the storage nodes in
    /// cluster order, and with pairs each pair's arbiter after it.
    pub bricks: Vec<PlannedBrick>,
    pub ping_timeout: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedBrick {
    pub node: String,
    /// Peers and bricks are named by address: no name service needed.
    pub address: IpAddr,
    pub path: PathBuf,
    /// Holds names and metadata only: a tie-breaker, little space.
    pub arbiter: bool,
}

impl PlannedBrick {
    pub fn name(&self) -> String {
        format!("{}:{}", self.address, self.path.display())
    }

    /// The arbiter brick this node holds for another pair: a sibling of
    /// its data brick (`/srv/piha/brick` -> `/srv/piha/brick-arbiter`),
    /// since gluster needs one folder per brick.
    fn arbiter_beside(&self) -> PlannedBrick {
        let mut path = self.path.clone().into_os_string();
        path.push("-arbiter");
        PlannedBrick {
            path: PathBuf::from(path),
            arbiter: true,
            ..self.clone()
        }
    }
}

impl Layout {
    /// From the file's `[[node]]`s with the storage role (pattern nodes are
    /// not part of the volume they find: adding bricks is an operator's
    /// decision). Err says why no volume can be formed.
    pub fn from_config(config: &ClusterConfig) -> Result<Layout, String> {
        let s = &config.storage;
        let bricks: Vec<PlannedBrick> = config
            .nodes
            .iter()
            .filter(|n| n.roles.contains(&Role::Storage))
            .filter_map(|n| {
                let brick = n.settings.storage.as_ref()?.brick.clone();
                Some(PlannedBrick {
                    node: n.hostname.clone(),
                    address: n.address,
                    path: brick,
                    arbiter: false,
                })
            })
            .collect();
        let count = bricks.len();
        if count == 0 {
            return Err("no [[node]] has the storage role".into());
        }
        let replica = match s.replica {
            Some(r) => r as usize,
            None if count == 1 => 1,
            None if count % 2 == 0 => 2,
            None if count % 3 == 0 => 3,
            None => {
                return Err(format!(
                    "{count} storage nodes fit neither pairs nor triples: set [storage] replica (and add or remove a storage node)"
                ));
            }
        };
        if count % replica != 0 {
            return Err(format!(
                "{count} storage nodes cannot form replica-{replica} sets: the count must be a multiple of {replica}"
            ));
        }
        let layout = |replica, arbiter, bricks| Layout {
            volume: s.volume.clone(),
            replica,
            arbiter,
            bricks,
            ping_timeout: s.ping_timeout,
        };
        match (replica, s.arbiter) {
            // Pairs get a third, metadata-only brick on a node outside the
            // pair whenever there is one. Plain pairs under gluster's
            // quorum rule lose a pair's files when its *first* brick goes
            // (the second alone may neither write nor even look a file
            // up: ENOTCONN), so a four-Pi cluster lost half its site with
            // pi-1 or pi-3. With the arbiter any one node may go.
            (2, None) if count >= 4 => Ok(layout(3, true, with_arbiters(&bricks))),
            (2, Some(true)) if count >= 4 => Ok(layout(3, true, with_arbiters(&bricks))),
            (2, Some(true)) => Err(format!(
                "[storage] arbiter = true with pairs puts each pair's arbiter on a node outside it: that needs at least 4 storage nodes (found {count})"
            )),
            (3, Some(true)) => {
                let mut bricks = bricks;
                for b in bricks.iter_mut().skip(2).step_by(3) {
                    b.arbiter = true;
                }
                Ok(layout(3, true, bricks))
            }
            (r, Some(true)) => Err(format!(
                "[storage] arbiter = true needs replica = 2 (pairs, at least 4 nodes) or 3 (found {r})"
            )),
            (r, _) => Ok(layout(r, false, bricks)),
        }
    }

    /// How gluster would describe the layout, for `piha check` and events:
    /// "replica 2 x 2", "replica 3 arbiter 1, 2 x (2 + 1)".
    pub fn shape(&self) -> String {
        let sets = self.bricks.len() / self.replica.max(1);
        match (self.replica, self.arbiter, sets) {
            (1, _, n) => format!("distributed over {n} bricks, no copies"),
            (r, false, 1) => format!("replica {r}"),
            (r, false, n) => format!("replica {r} x {n}"),
            (r, true, 1) => format!("replica {r} arbiter 1"),
            (r, true, n) => format!("replica {r} arbiter 1, {n} x ({} + 1)", r - 1),
        }
    }

    /// The storage nodes, each once, in brick order.
    pub fn nodes(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for b in &self.bricks {
            if !out.contains(&b.node.as_str()) {
                out.push(&b.node);
            }
        }
        out
    }

    /// Who acts: the first storage node in cluster order.
    pub fn former(&self) -> Option<&str> {
        self.bricks.first().map(|b| b.node.as_str())
    }

    /// `volume create` arguments. `force`: on a Pi the brick is usually on
    /// the SD card's root file system, which gluster refuses without it;
    /// `force` does not let gluster take a brick that belongs to another
    /// volume.
    pub fn create_args(&self) -> Vec<String> {
        let mut args = vec!["volume".into(), "create".into(), self.volume.clone()];
        if self.replica > 1 {
            args.push("replica".into());
            args.push(self.replica.to_string());
            if self.arbiter {
                args.push("arbiter".into());
                args.push("1".into());
            }
        }
        args.extend(self.bricks.iter().map(PlannedBrick::name));
        args.push("force".into());
        args
    }

    /// The options piha sets on the volume, and why each.
    pub fn options(&self) -> Vec<(&'static str, String)> {
        let mut out = vec![
            // gluster's 42 s stalls every write that long when a Pi dies.
            (
                "network.ping-timeout",
                self.ping_timeout.as_secs().to_string(),
            ),
        ];
        if self.replica > 1 {
            // Writes need a majority of each set (the first brick breaks a
            // tie): the rule the health model reports DOWN from.
            out.push(("cluster.quorum-type", "auto".into()));
        }
        out
    }
}

/// Pairs in cluster order, each followed by an arbiter on the node after
/// the pair (the last pair's on the first node): every node holds at most
/// one arbiter, never for its own pair.
fn with_arbiters(data: &[PlannedBrick]) -> Vec<PlannedBrick> {
    let mut out = Vec::with_capacity(data.len() / 2 * 3);
    for (k, pair) in data.chunks(2).enumerate() {
        out.extend(pair.iter().cloned());
        out.push(data[(2 * k + 2) % data.len()].arbiter_beside());
    }
    out
}

/// One thing to do next, or why nothing can be done yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Probe {
        address: IpAddr,
        node: String,
    },
    Create,
    Start,
    SetOption {
        key: &'static str,
        value: String,
    },
    /// Waiting for something outside our hands; the text says what.
    Wait(String),
    /// The volume exists and differs from the file: left alone.
    Conflict(String),
}

pub struct FormInput<'a> {
    pub layout: &'a Layout,
    /// Storage nodes membership reports up (by hostname), this one included.
    pub alive: &'a BTreeSet<String>,
    /// `pool list` of this node.
    pub pool: &'a [Peer],
    pub volumes: &'a [VolumeInfo],
}

/// The former's next steps, in order; empty when everything is in place.
pub fn next_steps(input: &FormInput<'_>) -> Vec<Step> {
    let layout = input.layout;
    let Some(former) = layout.former() else {
        return Vec::new();
    };
    if let Some(volume) = input.volumes.iter().find(|v| v.name == layout.volume) {
        return existing_volume(layout, volume);
    }
    let mut steps = Vec::new();
    let mut missing = Vec::new();
    let mut seen = BTreeSet::new();
    for brick in layout.bricks.iter().filter(|b| b.node != former) {
        // A node with a data brick and an arbiter is one peer.
        if !seen.insert(&brick.node) {
            continue;
        }
        let address = brick.address.to_string();
        let peer = input
            .pool
            .iter()
            .find(|p| !p.is_self && (p.hostname == address || p.hostname == brick.node));
        match peer {
            Some(p) if p.connected => {}
            Some(_) => missing.push(format!("{} is in the pool but not connected", brick.node)),
            None if input.alive.contains(&brick.node) => steps.push(Step::Probe {
                address: brick.address,
                node: brick.node.clone(),
            }),
            None => missing.push(format!("{} is not up yet", brick.node)),
        }
    }
    if !steps.is_empty() {
        return steps;
    }
    if !missing.is_empty() {
        return vec![Step::Wait(format!(
            "volume {} is created once every storage node is in the pool: {}",
            layout.volume,
            missing.join("; ")
        ))];
    }
    vec![Step::Create]
}

fn existing_volume(layout: &Layout, volume: &VolumeInfo) -> Vec<Step> {
    let want: Vec<String> = layout.bricks.iter().map(PlannedBrick::name).collect();
    let have: Vec<String> = volume.bricks.iter().map(|b| b.name()).collect();
    if want != have {
        return vec![Step::Conflict(format!(
            "volume {} exists with bricks [{}], not the file's [{}]: piha leaves it as it is",
            volume.name,
            have.join(", "),
            want.join(", ")
        ))];
    }
    let mut steps = Vec::new();
    match &volume.state {
        RunState::Created => steps.push(Step::Start),
        RunState::Started => {}
        RunState::Stopped => {
            return vec![Step::Wait(format!(
                "volume {} was stopped by an operator; piha leaves it stopped (gluster volume start {} serves it again)",
                volume.name, volume.name
            ))];
        }
        RunState::Other(s) => return vec![Step::Wait(format!("volume {} is {s:?}", volume.name))],
    }
    for (key, value) in layout.options() {
        if volume.options.get(key) != Some(&value) {
            steps.push(Step::SetOption { key, value });
        }
    }
    steps
}

#[cfg(test)]
#[path = "form/tests.rs"]
mod tests;
