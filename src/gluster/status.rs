//! What the storage role publishes for the status page, the JSON API and
//! /metrics: the monitor's view plus the role's own progress (formation,
//! mount) and the cost of its polls.

use std::path::PathBuf;
use std::sync::Arc;

use serde::Serialize;
use tokio::sync::watch;

use super::health::{StorageView, VolumeState, VolumeView};

#[derive(Debug, Clone, Serialize)]
pub struct StorageStatus {
    /// The cluster's volume (`[storage] volume`).
    pub volume: String,
    pub mount: PathBuf,
    /// `None` until first checked; false too while the mount is listed
    /// but its client is gone.
    pub mounted: Option<bool>,
    /// Mounts found without their client and unmounted to be mounted again
    /// since the role started (each piha restart under systemd, which kills
    /// the client with piha, makes one).
    pub remounts: u64,
    /// Connections to a down node's bricks cut since the role started, so
    /// the volume went on without waiting for gluster's ping timeout
    /// (`fence.rs`).
    pub fenced: u64,
    /// The node that forms the pool and the volume.
    pub former: Option<String>,
    /// What formation waits for or last failed on; empty when done.
    pub forming: Vec<String>,
    /// Why no volume can be formed from the file, if so.
    pub layout_error: Option<String>,
    /// `None` until the first poll ends.
    pub view: Option<StorageView>,
    /// Wall clock (unix ms) of the last poll's end, and of the last poll in
    /// which `volume info` answered: the age of the data shown.
    pub polled_at_ms: Option<i64>,
    pub last_good_ms: Option<i64>,
    pub poll_took_ms: u64,
    pub polls: u64,
    /// The node whose answers to the lock-taking questions the last poll
    /// used (`share.rs`); `None` when this node asked gluster itself.
    pub answers_from: Option<String>,
}

impl StorageStatus {
    pub fn new(volume: String, mount: PathBuf) -> StorageStatus {
        StorageStatus {
            volume,
            mount,
            mounted: None,
            remounts: 0,
            fenced: 0,
            former: None,
            forming: Vec::new(),
            layout_error: None,
            view: None,
            polled_at_ms: None,
            last_good_ms: None,
            poll_took_ms: 0,
            polls: 0,
            answers_from: None,
        }
    }

    /// The cluster's own volume in the latest view.
    pub fn own_volume(&self) -> Option<&VolumeView> {
        self.view
            .as_ref()?
            .volumes
            .iter()
            .find(|v| v.name == self.volume)
    }

    /// One line for the role's health and `piha status`.
    pub fn summary(&self) -> String {
        if let Some(e) = &self.layout_error {
            return format!("cannot form volume {}: {e}", self.volume);
        }
        let Some(view) = &self.view else {
            return "waiting for the first answer from gluster".into();
        };
        if view.glusterd != super::health::Glusterd::Running {
            return format!("glusterd: {}", view.glusterd.describe());
        }
        let Some(v) = self.own_volume() else {
            return match self.forming.first() {
                Some(f) => format!("forming volume {}: {f}", self.volume),
                None => format!("volume {} does not exist yet", self.volume),
            };
        };
        let mount = match self.mounted {
            Some(true) => format!(", mounted on {}", self.mount.display()),
            Some(false) => format!(", not mounted on {} yet", self.mount.display()),
            None => String::new(),
        };
        let heal = match v.heal_pending {
            Some(n) if n > 0 => format!(", {n} entries to heal"),
            _ => String::new(),
        };
        format!(
            "volume {} {}: {}{heal}{mount}",
            v.name,
            v.state.name(),
            v.why
        )
    }

    /// Healthy only when the volume is UP and mounted.
    pub fn healthy(&self) -> bool {
        self.layout_error.is_none()
            && self
                .own_volume()
                .is_some_and(|v| v.state == VolumeState::Up)
            && self.mounted == Some(true)
    }
}

/// What the role hands the status server.
pub struct StorageHandle {
    pub status: watch::Receiver<Arc<StorageStatus>>,
    /// What this node got from gluster itself, served to the storage nodes
    /// that take its answers instead of asking (`share.rs`).
    pub answers: watch::Receiver<Arc<super::share::Kept>>,
}
