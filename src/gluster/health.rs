//! What the gluster answers mean, as a plain struct driven by observations
//! and a clock (sans-IO): per brick online / offline / unknown, per volume
//! UP / DEGRADED / DOWN / UNKNOWN from the replica layout of `volume info`,
//! heal backlog, peers, and the transitions between two views (which the
//! shell turns into events and `volume heal` calls).
//!
//! The rule throughout: a question gluster did not answer leaves the last
//! good answer in place, marked with its age, and the state UNKNOWN. A
//! brick missing from `volume status` (its node's glusterd is down) is
//! UNKNOWN, never gone; an empty list is never "no volumes".

use std::collections::BTreeMap;

use serde::Serialize;

use super::model::{BrickStatus, HealBrick, HealCount, Peer, RunState, VolumeInfo, VolumeStatus};
use super::reply::CliError;

/// One poll's answers, as the shell got them.
#[derive(Debug, Clone)]
pub struct Observation {
    /// `volume info`: the truth about which volumes exist and their layout.
    pub volumes: Result<Vec<VolumeInfo>, CliError>,
    /// `volume status <vol> detail`, per started volume asked.
    pub status: BTreeMap<String, Result<VolumeStatus, CliError>>,
    /// How old a status answer was when it came, for those taken from the
    /// node that asks for the cluster (`share.rs`); absent: asked here,
    /// this poll.
    pub status_age_ms: BTreeMap<String, u64>,
    /// `volume heal <vol> statistics heal-count`, per healing volume asked
    /// (not every poll while nothing is healing or down); the last answer
    /// stands for a volume not asked.
    pub heal_count: BTreeMap<String, Result<Vec<HealCount>, CliError>>,
    /// `volume heal <vol> info summary` (asked less often: it walks every
    /// pending entry), for split-brain counts.
    pub heal_summary: BTreeMap<String, Result<Vec<HealBrick>, CliError>>,
    /// `pool list`.
    /// `pool list`; `None` when not asked this poll (peers change rarely;
    /// it is asked every few polls to spare the Pi's CPU).
    pub peers: Option<Result<Vec<Peer>, CliError>>,
}

/// Thresholds from the cluster file.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// A brick with less free space than this share is "low on space".
    pub min_free: f64,
    pub min_free_inodes: f64,
    /// A question that failed while its last good answer is younger than
    /// this keeps that answer in force (with its age): a gluster operation
    /// (a heal, an operator's command) may hold the cluster lock for a
    /// while, and one lost round is not news. Older than this, the state
    /// becomes UNKNOWN.
    pub grace_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum VolumeState {
    Up,
    Degraded,
    Unknown,
    Down,
}

impl VolumeState {
    pub fn name(self) -> &'static str {
        match self {
            VolumeState::Up => "UP",
            VolumeState::Degraded => "DEGRADED",
            VolumeState::Unknown => "UNKNOWN",
            VolumeState::Down => "DOWN",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BrickState {
    Online,
    Offline,
    Unknown,
}

impl BrickState {
    pub fn name(self) -> &'static str {
        match self {
            BrickState::Online => "online",
            BrickState::Offline => "offline",
            BrickState::Unknown => "unknown",
        }
    }
}

/// Whether the local glusterd answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", content = "why", rename_all = "snake_case")]
pub enum Glusterd {
    Running,
    /// Not running or not listening.
    Down(String),
    /// Running but not answering in time (or says it timed out).
    Hung(String),
    /// Answers, but the answer was not usable.
    Erratic(String),
}

impl Glusterd {
    /// "running", "down (why)", ... for events and the role's summary.
    pub fn describe(&self) -> String {
        match self {
            Glusterd::Running => "running".into(),
            Glusterd::Down(why) => format!("down ({why})"),
            Glusterd::Hung(why) => format!("not answering ({why})"),
            Glusterd::Erratic(why) => format!("answers badly ({why})"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BrickView {
    pub host: String,
    pub path: String,
    pub state: BrickState,
    /// Why the state is what it is, when not plainly online.
    pub why: Option<String>,
    pub arbiter: bool,
    pub pid: Option<u32>,
    pub port: Option<u16>,
    pub size_total: Option<u64>,
    pub size_free: Option<u64>,
    pub inodes_total: Option<u64>,
    pub inodes_free: Option<u64>,
    pub low_space: bool,
    pub low_inodes: bool,
    /// Entries this brick holds for others to heal (`None`: not known).
    pub heal_pending: Option<u64>,
    /// The state comes from an earlier poll's answer (this poll's failed).
    pub stale: bool,
}

impl BrickView {
    pub fn name(&self) -> String {
        format!("{}:{}", self.host, self.path)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VolumeView {
    pub name: String,
    pub state: VolumeState,
    /// One line on why, e.g. "brick pi-3:/srv/brick offline; every
    /// replica set keeps quorum".
    pub why: String,
    /// The state before gluster stopped answering, for an UNKNOWN volume.
    pub last_known: Option<VolumeState>,
    pub kind: String,
    pub run_state: RunState,
    pub replica_count: usize,
    pub arbiter_count: usize,
    pub bricks: Vec<BrickView>,
    /// Entries waiting to be healed: per replica set the largest brick
    /// count (each good brick of a set lists the same entries), summed.
    pub heal_pending: Option<u64>,
    pub split_brain: Option<u64>,
    /// How old the brick data shown is (ms); 0 when from this poll.
    pub data_age_ms: u64,
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StorageView {
    pub glusterd: Glusterd,
    pub volumes: Vec<VolumeView>,
    pub peers: Vec<Peer>,
    /// When the view was made (monitor clock, ms).
    pub at_ms: u64,
    /// Age of the volume list shown (ms): 0 when `volume info` answered
    /// this poll; the last good list's age when it did not.
    pub volumes_age_ms: u64,
    /// What went wrong this poll, if anything: "could not tell" reasons.
    pub errors: Vec<String>,
}

/// What changed between two views, for events and heals.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    Glusterd {
        from: Glusterd,
        to: Glusterd,
    },
    Volume {
        name: String,
        from: Option<VolumeState>,
        to: VolumeState,
        why: String,
    },
    Brick {
        volume: String,
        brick: String,
        from: BrickState,
        to: BrickState,
        why: Option<String>,
    },
    /// A brick came back (a fresh answer shows it online after one that
    /// showed it offline or missing): what was written meanwhile must be
    /// copied to it, so its volume should heal.
    BrickBack {
        volume: String,
        brick: String,
    },
    Peer {
        hostname: String,
        connected: bool,
    },
    LowSpace {
        volume: String,
        brick: String,
        low: bool,
    },
}

/// Keeps the last good answer of each question with the time it came.
#[derive(Debug, Default)]
pub struct Monitor {
    volumes: Option<(Vec<VolumeInfo>, u64)>,
    status: BTreeMap<String, (VolumeStatus, u64)>,
    heal_count: BTreeMap<String, Vec<HealCount>>,
    split_brain: BTreeMap<String, u64>,
    peers: Option<Vec<Peer>>,
    view: Option<StorageView>,
    /// Each brick's state as last seen in a fresh answer, by (volume,
    /// brick): a brick seen offline (or missing) and now online has come
    /// back and needs a heal, however many polls failed in between.
    observed: BTreeMap<(String, String), BrickState>,
}

impl Monitor {
    pub fn new() -> Monitor {
        Monitor::default()
    }

    pub fn view(&self) -> Option<&StorageView> {
        self.view.as_ref()
    }

    /// Takes one poll's answers at `now_ms`; returns the new view and what
    /// changed since the last one.
    pub fn observe(
        &mut self,
        obs: Observation,
        now_ms: u64,
        limits: Limits,
    ) -> (StorageView, Vec<Change>) {
        let mut errors = Vec::new();
        let glusterd = self.glusterd_state(&obs);
        match obs.volumes {
            Ok(v) => self.volumes = Some((v, now_ms)),
            Err(e) => errors.push(format!("volume info: {e}")),
        }
        // Status answers that are whole replace the last good ones; a reply
        // that does not list the volume asked for is not believed.
        let mut status_errors = BTreeMap::new();
        // Volumes whose status this poll brought a newer answer for: only
        // their bricks count as seen afresh.
        let mut refreshed = std::collections::BTreeSet::new();
        for (name, answer) in obs.status {
            match answer {
                Ok(s) if s.name == name => {
                    let age = obs.status_age_ms.get(&name).copied().unwrap_or(0);
                    let at = now_ms.saturating_sub(age);
                    // A peer may hand over the same answer twice, or one
                    // older than a node's own: never go back in time. (A
                    // kept answer from the future: the wall clock was set
                    // back, as on a Pi that boots without a clock.)
                    let newer = |kept: u64| kept < at || kept > now_ms;
                    if self.status.get(&name).is_none_or(|(_, kept)| newer(*kept)) {
                        self.status.insert(name.clone(), (s, at));
                        refreshed.insert(name);
                    }
                }
                Ok(s) => {
                    let e = format!("status of {name} answered for {:?}", s.name);
                    errors.push(e.clone());
                    status_errors.insert(name, e);
                }
                Err(e) => {
                    errors.push(format!("volume status {name}: {e}"));
                    status_errors.insert(name, e.to_string());
                }
            }
        }
        for (name, answer) in obs.heal_count {
            match answer {
                Ok(c) => {
                    // Above this the split-brain count is no longer asked
                    // (poll.rs): an old count would pass for a current one.
                    let pending: u64 = c.iter().filter_map(|b| b.entries).sum();
                    if pending > super::poll::SUMMARY_MAX_PENDING {
                        self.split_brain.remove(&name);
                    }
                    self.heal_count.insert(name, c);
                }
                Err(e) => {
                    errors.push(format!("heal-count {name}: {e}"));
                    self.heal_count.remove(&name);
                }
            }
        }
        for (name, answer) in obs.heal_summary {
            match answer {
                Ok(bricks) => {
                    let n = bricks
                        .iter()
                        .filter_map(|b| b.split_brain)
                        .max()
                        .unwrap_or(0);
                    self.split_brain.insert(name, n);
                }
                Err(e) => errors.push(format!("heal info summary {name}: {e}")),
            }
        }
        match obs.peers {
            Some(Ok(p)) => self.peers = Some(p),
            Some(Err(e)) => errors.push(format!("pool list: {e}")),
            None => {}
        }
        let volumes_age_ms = self
            .volumes
            .as_ref()
            .map_or(0, |(_, at)| now_ms.saturating_sub(*at));
        let fresh_info = volumes_age_ms == 0 && self.volumes.is_some();
        let volumes = self
            .volumes
            .as_ref()
            .map(|(vols, _)| {
                vols.iter()
                    .map(|info| {
                        let status = self.status.get(&info.name);
                        let status_age = status.map(|(_, at)| now_ms.saturating_sub(*at));
                        let within_grace =
                            |age: Option<u64>| age.is_some_and(|a| a <= limits.grace_ms);
                        let problem = if !fresh_info && !within_grace(Some(volumes_age_ms)) {
                            errors
                                .first()
                                .cloned()
                                .or_else(|| Some("volume info did not answer".into()))
                        } else if within_grace(status_age) {
                            None
                        } else {
                            status_errors.get(&info.name).cloned()
                        };
                        let last = self.last_state(&info.name);
                        volume_view(VolumeInput {
                            info,
                            status,
                            fresh: refreshed.contains(&info.name),
                            heal_count: self.heal_count.get(&info.name),
                            split_brain: self.split_brain.get(&info.name).copied(),
                            problem,
                            last,
                            now_ms,
                            limits,
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        let view = StorageView {
            glusterd,
            volumes,
            peers: self.peers.clone().unwrap_or_default(),
            at_ms: now_ms,
            volumes_age_ms,
            errors,
        };
        let mut changes = changes(self.view.as_ref(), &view);
        changes.extend(self.returned_bricks(&view));
        self.view = Some(view.clone());
        // What is kept of volumes that no longer exist is forgotten.
        if let Some((vols, _)) = &self.volumes {
            let exists = |name: &str| vols.iter().any(|v| v.name == name);
            self.status.retain(|n, _| exists(n));
            self.heal_count.retain(|n, _| exists(n));
            self.split_brain.retain(|n, _| exists(n));
            self.observed.retain(|(n, _), _| exists(n));
        }
        (view, changes)
    }

    /// Bricks that a fresh answer shows online after a fresh answer showed
    /// them offline or missing.
    fn returned_bricks(&mut self, view: &StorageView) -> Vec<Change> {
        let mut out = Vec::new();
        for v in view
            .volumes
            .iter()
            .filter(|v| v.run_state == RunState::Started)
        {
            for b in v.bricks.iter().filter(|b| !b.stale) {
                let key = (v.name.clone(), b.name());
                let before = self.observed.insert(key, b.state);
                if b.state == BrickState::Online && before.is_some_and(|s| s != BrickState::Online)
                {
                    out.push(Change::BrickBack {
                        volume: v.name.clone(),
                        brick: b.name(),
                    });
                }
            }
        }
        out
    }

    fn last_state(&self, volume: &str) -> Option<VolumeState> {
        let v = self
            .view
            .as_ref()?
            .volumes
            .iter()
            .find(|v| v.name == volume)?;
        match v.state {
            VolumeState::Unknown => v.last_known,
            s => Some(s),
        }
    }

    fn glusterd_state(&self, obs: &Observation) -> Glusterd {
        match &obs.volumes {
            Ok(_) => Glusterd::Running,
            Err(e @ CliError::GlusterdDown { .. }) => Glusterd::Down(e.to_string()),
            Err(e @ CliError::Spawn { .. }) => Glusterd::Down(e.to_string()),
            Err(e) if e.glusterd_unusable() => Glusterd::Hung(e.to_string()),
            Err(e) => Glusterd::Erratic(e.to_string()),
        }
    }
}

struct VolumeInput<'a> {
    info: &'a VolumeInfo,
    status: Option<&'a (VolumeStatus, u64)>,
    /// This poll brought `status` (else it is an earlier poll's).
    fresh: bool,
    heal_count: Option<&'a Vec<HealCount>>,
    split_brain: Option<u64>,
    /// Why this poll could not tell (the status call failed, or volume info
    /// itself did not answer).
    problem: Option<String>,
    last: Option<VolumeState>,
    now_ms: u64,
    limits: Limits,
}

fn volume_view(input: VolumeInput<'_>) -> VolumeView {
    let info = input.info;
    let started = info.state == RunState::Started;
    let bricks: Vec<BrickView> = info
        .bricks
        .iter()
        .map(|b| {
            let found = input.status.filter(|_| started).and_then(|(s, _)| {
                s.bricks
                    .iter()
                    .find(|x| x.host == b.host && x.path == b.path)
            });
            let mut view = brick_view(
                b.host.clone(),
                b.path.clone(),
                b.arbiter,
                found,
                input.limits,
            );
            view.stale = input.status.is_some() && !input.fresh;
            if !started {
                view.state = BrickState::Offline;
                view.why = Some("the volume is not started".into());
            } else if input.status.is_none() {
                view.state = BrickState::Unknown;
                view.why = Some("no answer from volume status yet".into());
            } else if found.is_none() {
                view.why =
                    Some("missing from volume status: its node's glusterd did not answer".into());
            }
            if input.problem.is_some() && view.state == BrickState::Online {
                // Last good data, shown as such.
                view.state = BrickState::Unknown;
                view.why = Some("last known online; gluster has not answered since".into());
                view.stale = true;
            }
            view.heal_pending = input
                .heal_count
                .and_then(|c| c.iter().find(|c| c.brick == view.name()))
                .and_then(|c| c.entries);
            view
        })
        .collect();
    let data_age_ms = input
        .status
        .map_or(0, |(_, at)| input.now_ms.saturating_sub(*at));
    let (state, why) = match (&info.state, &input.problem) {
        (RunState::Created, _) => (VolumeState::Down, "created, never started".to_owned()),
        (RunState::Stopped, _) => (VolumeState::Down, "stopped".to_owned()),
        (RunState::Other(s), _) => (VolumeState::Unknown, format!("volume state {s:?}")),
        (RunState::Started, Some(problem)) => {
            (VolumeState::Unknown, format!("could not tell: {problem}"))
        }
        (RunState::Started, None) => layout_state(info, &bricks),
    };
    let warnings = bricks
        .iter()
        .flat_map(|b| {
            let space = b
                .low_space
                .then(|| format!("brick {} is low on space", b.name()));
            let inodes = b
                .low_inodes
                .then(|| format!("brick {} is low on inodes", b.name()));
            space.into_iter().chain(inodes)
        })
        .collect();
    let heal_pending = heal_backlog(info, &bricks, input.heal_count.is_some());
    VolumeView {
        name: info.name.clone(),
        state,
        why,
        last_known: (state == VolumeState::Unknown)
            .then_some(input.last)
            .flatten(),
        kind: info.kind.clone(),
        run_state: info.state.clone(),
        replica_count: info.replica_count,
        arbiter_count: info.arbiter_count,
        heal_pending,
        split_brain: input.split_brain,
        data_age_ms,
        warnings,
        bricks,
    }
}

fn brick_view(
    host: String,
    path: String,
    arbiter: bool,
    found: Option<&BrickStatus>,
    limits: Limits,
) -> BrickView {
    let Some(s) = found else {
        return BrickView {
            host,
            path,
            state: BrickState::Unknown,
            why: None,
            arbiter,
            pid: None,
            port: None,
            size_total: None,
            size_free: None,
            inodes_total: None,
            inodes_free: None,
            low_space: false,
            low_inodes: false,
            heal_pending: None,
            stale: false,
        };
    };
    let low = |free: Option<u64>, total: Option<u64>, min: f64| match (free, total) {
        (Some(f), Some(t)) if t > 0 => (f as f64) < (t as f64) * min,
        _ => false,
    };
    BrickView {
        state: if s.online {
            BrickState::Online
        } else {
            BrickState::Offline
        },
        why: (!s.online).then(|| "its brick process is not running".to_owned()),
        arbiter,
        pid: s.pid,
        port: s.port,
        size_total: s.space.size_total,
        size_free: s.space.size_free,
        inodes_total: s.space.inodes_total,
        inodes_free: s.space.inodes_free,
        // An arbiter holds metadata only: its space is not the volume's.
        low_space: !arbiter && low(s.space.size_free, s.space.size_total, limits.min_free),
        low_inodes: low(
            s.space.inodes_free,
            s.space.inodes_total,
            limits.min_free_inodes,
        ),
        heal_pending: None,
        stale: false,
        host,
        path,
    }
}

/// The volume's state from its sets: every brick online is UP; a set that
/// keeps write quorum with a brick missing is DEGRADED; a set below quorum
/// is DOWN for writes; a set whose quorum depends on bricks we could not
/// see is UNKNOWN. The worst set decides.
fn layout_state(info: &VolumeInfo, bricks: &[BrickView]) -> (VolumeState, String) {
    let size = info.set_size().max(1);
    let mut worst = VolumeState::Up;
    let mut notes = Vec::new();
    for (i, set) in bricks.chunks(size).enumerate() {
        let online = set.iter().filter(|b| b.state == BrickState::Online).count();
        let unknown = set
            .iter()
            .filter(|b| b.state == BrickState::Unknown)
            .count();
        let first_online = set.first().is_some_and(|b| b.state == BrickState::Online);
        let first_maybe = set.first().is_some_and(|b| b.state != BrickState::Offline);
        let state = if online == set.len() {
            VolumeState::Up
        } else if writable(info, set.len(), online, first_online) {
            VolumeState::Degraded
        } else if writable(info, set.len(), online + unknown, first_maybe) {
            VolumeState::Unknown
        } else {
            VolumeState::Down
        };
        for b in set.iter().filter(|b| b.state != BrickState::Online) {
            notes.push(format!("brick {} {}", b.name(), b.state.name()));
        }
        if state != VolumeState::Up && size > 1 {
            notes.push(format!(
                "set {} has {online} of {} bricks online{}",
                i + 1,
                set.len(),
                match state {
                    VolumeState::Degraded => " and keeps quorum",
                    VolumeState::Down => ", below quorum: no writes",
                    _ => ", quorum unknown",
                }
            ));
        }
        worst = worst.max(state);
    }
    let why = if notes.is_empty() {
        format!("all {} bricks online", bricks.len())
    } else {
        notes.join("; ")
    };
    (worst, why)
}

/// gluster's client quorum: replica sets need more than half their bricks
/// (exactly half counts when the first brick is among them, as with
/// `cluster.quorum-type auto`); disperse sets need all but `redundancy`; a
/// distribute "set" is one brick and needs it.
fn writable(info: &VolumeInfo, n: usize, online: usize, first_online: bool) -> bool {
    if info.disperse_count > 0 {
        return online >= n.saturating_sub(info.redundancy_count);
    }
    if n == 1 {
        return online == 1;
    }
    online * 2 > n || (online * 2 == n && first_online)
}

fn heal_backlog(info: &VolumeInfo, bricks: &[BrickView], asked: bool) -> Option<u64> {
    if !info.heals() || !asked {
        return None;
    }
    let mut total = 0;
    for set in bricks.chunks(info.set_size().max(1)) {
        total += set.iter().filter_map(|b| b.heal_pending).max().unwrap_or(0);
    }
    Some(total)
}

/// The differences worth an event between the previous view and this one.
fn changes(before: Option<&StorageView>, now: &StorageView) -> Vec<Change> {
    let mut out = Vec::new();
    match before {
        Some(b) if b.glusterd != now.glusterd => out.push(Change::Glusterd {
            from: b.glusterd.clone(),
            to: now.glusterd.clone(),
        }),
        None if now.glusterd != Glusterd::Running => out.push(Change::Glusterd {
            from: Glusterd::Running,
            to: now.glusterd.clone(),
        }),
        _ => {}
    }
    for v in &now.volumes {
        let old = before.and_then(|b| b.volumes.iter().find(|o| o.name == v.name));
        if old.map(|o| o.state) != Some(v.state) {
            out.push(Change::Volume {
                name: v.name.clone(),
                from: old.map(|o| o.state),
                to: v.state,
                why: v.why.clone(),
            });
        }
        for b in &v.bricks {
            let was = old.and_then(|o| {
                o.bricks
                    .iter()
                    .find(|x| x.host == b.host && x.path == b.path)
            });
            let Some(was) = was else { continue };
            if was.state != b.state {
                out.push(Change::Brick {
                    volume: v.name.clone(),
                    brick: b.name(),
                    from: was.state,
                    to: b.state,
                    why: b.why.clone(),
                });
            }
            if was.low_space != b.low_space {
                out.push(Change::LowSpace {
                    volume: v.name.clone(),
                    brick: b.name(),
                    low: b.low_space,
                });
            }
        }
    }
    if let Some(b) = before {
        for p in now.peers.iter().filter(|p| !p.is_self) {
            let was = b
                .peers
                .iter()
                .find(|o| o.uuid == p.uuid)
                .map(|o| o.connected);
            if was.is_some_and(|w| w != p.connected) {
                out.push(Change::Peer {
                    hostname: p.hostname.clone(),
                    connected: p.connected,
                });
            }
        }
    }
    out
}

#[cfg(test)]
#[path = "health/tests.rs"]
mod tests;
