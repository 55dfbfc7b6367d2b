//! One poll: the questions the monitor asks gluster, in order, all within
//! one budget so that a hung glusterd (ours or a peer's) never makes a poll
//! take longer than POLL_BUDGET plus one call's kill.
//!
//! Every gluster CLI run costs about 70 ms of CPU on this project's x86
//! test machine (several times that on a Pi), so a poll asks only what can
//! have changed: `volume info` and `volume status` every poll (a dead brick
//! shows within one poll); the pool and the heal backlog every few polls,
//! and the backlog every poll while something heals or a brick is away.
//! The questions that take gluster's cluster lock are asked by one node for
//! all (`share.rs`).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::health::Observation;
use super::model::RunState;
use super::reply::CliError;
use super::runner::Runner;
use super::share::Shared;
use super::{heal_count, xml};

/// Everything a poll asks must be answered within this.
pub const POLL_BUDGET: Duration = Duration::from_secs(8);
/// `pool list` and a quiet volume's heal count: every this many polls.
const SLOW_EVERY: u64 = 3;
/// `heal info summary` walks every pending entry (seconds at thousands, and
/// minutes on a busy Pi); it is asked only every this many polls, for
/// split-brain counts, only with this much budget left, and only while the
/// backlog is small. Above that the split-brain count shows as unknown.
const SUMMARY_EVERY: u64 = 6;
const SUMMARY_BUDGET: Duration = Duration::from_secs(3);
pub const SUMMARY_MAX_PENDING: u64 = 1000;

/// What the last view says about how closely to look.
#[derive(Debug, Clone, Copy, Default)]
pub struct Focus {
    /// Something heals or a brick is not online: count the backlog every
    /// poll, to show it draining.
    pub healing: bool,
    /// The volume is not formed yet: ask the pool every poll, formation
    /// acts on this poll's answers only.
    pub forming: bool,
}

/// Asks gluster, except for the lock-taking questions about a volume that
/// `shared` (the asking node's answers, `share.rs`) answers with a status
/// at most `fresh_for` old.
pub async fn poll(
    runner: &Runner,
    poll_no: u64,
    focus: Focus,
    shared: Option<&Shared>,
    fresh_for: Duration,
) -> Observation {
    let until = Instant::now() + POLL_BUDGET;
    let slow_round = poll_no % SLOW_EVERY == 0;
    let volumes = runner
        .ask(&["volume", "info"], until, xml::volume_info)
        .await;
    // With glusterd down or hung every other question would only wait out
    // its own deadline: say "could not tell" for them at once.
    if let Err(e) = &volumes {
        if e.glusterd_unusable() {
            return Observation {
                peers: Some(Err(e.clone())),
                volumes,
                status: BTreeMap::new(),
                status_age_ms: BTreeMap::new(),
                heal_count: BTreeMap::new(),
                heal_summary: BTreeMap::new(),
            };
        }
    }
    let peers = match slow_round || focus.forming {
        true => Some(runner.ask(&["pool", "list"], until, xml::peers).await),
        false => None,
    };
    let mut obs = Observation {
        volumes: Ok(Vec::new()),
        status: BTreeMap::new(),
        status_age_ms: BTreeMap::new(),
        heal_count: BTreeMap::new(),
        heal_summary: BTreeMap::new(),
        peers,
    };
    let started: Vec<(String, bool)> = volumes
        .iter()
        .flatten()
        .filter(|v| v.state == RunState::Started)
        .map(|v| (v.name.clone(), v.heals()))
        .collect();
    for (name, heals) in started {
        if shared.is_some_and(|s| s.answer(&name, fresh_for, &mut obs)) {
            continue;
        }
        let status = runner
            .ask(
                &["volume", "status", &name, "detail"],
                until,
                |out, exit| one_volume(xml::volume_status(out, exit)?, &name),
            )
            .await;
        obs.status.insert(name.clone(), status);
        if !heals || !(slow_round || focus.healing) {
            continue;
        }
        let counts = runner
            .ask(
                &["volume", "heal", &name, "statistics", "heal-count"],
                until,
                heal_count::parse,
            )
            .await;
        let small = counts
            .as_ref()
            .is_ok_and(|c| c.iter().filter_map(|b| b.entries).sum::<u64>() <= SUMMARY_MAX_PENDING);
        obs.heal_count.insert(name.clone(), counts);
        let room = until.saturating_duration_since(Instant::now());
        if small && poll_no % SUMMARY_EVERY == 0 && room > SUMMARY_BUDGET {
            let summary = runner
                .ask(
                    &["volume", "heal", &name, "info", "summary"],
                    until,
                    xml::heal_summary,
                )
                .await;
            obs.heal_summary.insert(name, summary);
        }
    }
    obs.volumes = volumes;
    obs
}

/// The status of the one volume asked for. Concurrent CLI calls (another
/// tool on the node) make glusterd answer with opRet 0 and the volume left
/// out: that is "could not tell", never "no bricks".
fn one_volume(
    mut all: Vec<super::model::VolumeStatus>,
    name: &str,
) -> Result<super::model::VolumeStatus, CliError> {
    let at = all.iter().position(|v| v.name == name);
    match (at, all.len()) {
        (Some(i), 1) => Ok(all.swap_remove(i)),
        _ => Err(CliError::Inconsistent {
            why: format!(
                "volume status {name} listed [{}]",
                all.iter()
                    .map(|v| v.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }),
    }
}
