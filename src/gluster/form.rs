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
    pub replica: usize,
    pub arbiter: bool,
    /// In cluster order: consecutive `replica` bricks form one set.
    pub bricks: Vec<PlannedBrick>,
    pub ping_timeout: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedBrick {
    pub node: String,
    /// Peers and bricks are named by address: no name service needed.
    pub address: IpAddr,
    pub path: PathBuf,
}

impl PlannedBrick {
    pub fn name(&self) -> String {
        format!("{}:{}", self.address, self.path.display())
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
        if s.arbiter && replica != 3 {
            return Err(format!(
                "[storage] arbiter = true needs replica = 3 (found {replica})"
            ));
        }
        Ok(Layout {
            volume: s.volume.clone(),
            replica,
            arbiter: s.arbiter,
            bricks,
            ping_timeout: s.ping_timeout,
        })
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
    for brick in layout.bricks.iter().filter(|b| b.node != former) {
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
