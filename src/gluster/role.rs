//! The storage role's service: the thin async shell around the sans-IO
//! parts. Every `poll` it asks gluster (poll.rs), feeds the answers to the
//! monitor (health.rs), turns what changed into events and heals, lets the
//! former take the next formation steps (form.rs), mounts the volume, and
//! publishes the status. See LIFECYCLE.md.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use serde_json::json;
use tokio::sync::watch;

use super::form::{FormInput, Layout, Step, next_steps};
use super::health::{BrickState, Change, Glusterd, Limits, Monitor, VolumeState};
use super::model::VolumeInfo;
use super::runner::Runner;
use super::share::{self, Kept, Shared};
use super::status::{StorageHandle, StorageStatus};
use super::{fence, mount, poll, xml};
use crate::config::Role;
use crate::membership::PeerState;
use crate::node::context::{NodeContext, Running};
use crate::node::events::now_ms;
use crate::node::health::{RoleHealth, RoleState};
use crate::node::peer_api::PeerApi;

/// A formation or heal command may take longer than a status question
/// (`volume start` spawns every brick), but not forever.
const ACTION_LIMIT: std::time::Duration = std::time::Duration::from_secs(30);
/// How many polls in a row a heal is asked for after a brick returns.
const HEAL_TRIES: u32 = 10;
/// How long after the asker's next answers should be ready a node takes
/// them: the asker's estimate is its last poll's length.
const ALIGN_AFTER: std::time::Duration = std::time::Duration::from_millis(300);
/// The least time between two rounds: each one runs the CLI.
const MIN_GAP: std::time::Duration = std::time::Duration::from_millis(500);

pub async fn run(ctx: Arc<NodeContext>) -> anyhow::Result<()> {
    let running = ctx.running();
    let restart = ctx.restart_watch(restart_key);
    let stop = restart.stop.clone();
    let settings = running.config.storage.clone();
    let layout = Layout::from_config(&running.config);
    let mut status = StorageStatus::new(settings.volume.clone(), settings.mount.clone());
    status.former = layout
        .as_ref()
        .ok()
        .and_then(|l| l.former().map(str::to_owned));
    status.layout_error = layout.as_ref().err().cloned();
    let (tx, rx) = watch::channel(Arc::new(status.clone()));
    let (answers, answers_rx) = watch::channel(Arc::new(Kept::default()));
    ctx.roles.storage.send_replace(Some(Arc::new(StorageHandle {
        status: rx,
        answers: answers_rx,
    })));
    // Beside the rounds, not in them: a round may wait seconds on the CLI,
    // and a down node's bricks are cut within a second of membership
    // saying so.
    let fenced = Arc::new(AtomicU64::new(0));
    let _fence = AbortOnDrop(tokio::spawn(fence::run(
        ctx.clone(),
        tx.clone(),
        fenced.clone(),
        settings.ping_timeout,
        stop.clone(),
    )));
    // The brick folder is not made here: glusterd makes it on each node
    // when the volume is created, and a node that never joins a volume
    // (a loopback test, a misconfigured card) gets no stray folders.
    let mut shell = Shell {
        ctx: ctx.clone(),
        runner: Runner::new(settings.gluster.clone()),
        monitor: Monitor::new(),
        limits: Limits {
            min_free: f64::from(settings.min_free) / 100.0,
            min_free_inodes: 0.05,
            // Two polls' answers may be lost to a held cluster lock before
            // a volume turns UNKNOWN.
            grace_ms: 2 * settings.poll.as_millis() as u64 + poll::POLL_BUDGET.as_millis() as u64,
        },
        layout: layout.ok(),
        status,
        tx,
        heal_wanted: Default::default(),
        liveness: mount::Liveness::default(),
        fenced,
        peers: PeerApi::new(running.config.admin_token.clone()),
        kept: Kept::default(),
        answers,
        // A working asker's answer is at most a poll old when its next poll
        // starts, and that poll may take its whole budget (a busy Pi, a
        // held lock asked again): anything older means its polls fail, and
        // this node asks itself. (Two polls were too few: CI's loaded
        // machine saw answers 2 s old at a 1 s poll.)
        fresh_for: settings.poll + poll::POLL_BUDGET,
        share_error: None,
        poll: settings.poll,
        align: None,
    };
    let mut next = Instant::now();
    for poll_no in 0u64.. {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep_until(next.into()) => {}
        }
        let started = Instant::now();
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = shell.round(poll_no) => {}
        }
        next = shell.next_round(started);
    }
    drop(restart);
    ctx.roles.storage.send_replace(None);
    Ok(())
}

/// Ends the fence however the role ends: an operator's stop aborts the
/// role's task, and a task spawned from it would outlive it.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What a change of the file restarts the role for.
fn restart_key(running: &Running) -> String {
    let storage_nodes: Vec<_> = running
        .config
        .nodes
        .iter()
        .filter(|n| n.roles.contains(&Role::Storage))
        .map(|n| {
            (
                &n.hostname,
                n.address,
                n.settings.storage.as_ref().map(|s| &s.brick),
            )
        })
        .collect();
    serde_json::to_string(&(
        &running.config.storage,
        storage_nodes,
        running.plan.settings.storage.as_ref().map(|s| &s.brick),
    ))
    .unwrap_or_default()
}

struct Shell {
    ctx: Arc<NodeContext>,
    runner: Runner,
    monitor: Monitor,
    limits: Limits,
    /// `None` when the file describes no volume that can be formed.
    layout: Option<Layout>,
    status: StorageStatus,
    tx: watch::Sender<Arc<StorageStatus>>,
    /// Volumes whose returned brick still waits for gluster to take a heal
    /// request: the brick, and how many polls asked so far.
    heal_wanted: std::collections::BTreeMap<String, (String, u32)>,
    /// Asks the mount whether its FUSE client still answers.
    liveness: mount::Liveness,
    /// Connections the fence task cut, copied into the status each round.
    fenced: Arc<AtomicU64>,
    /// Takes the asker's answers (`share.rs`).
    peers: PeerApi,
    /// What this node got from gluster itself, and where it is served.
    kept: Kept,
    answers: watch::Sender<Arc<Kept>>,
    /// How old the asker's answers may be to stand for asking.
    fresh_for: std::time::Duration,
    /// Why the asker's answers could not be taken last time, said once.
    share_error: Option<String>,
    /// `[storage] poll`.
    poll: std::time::Duration,
    /// When the asker's next answers should be ready, if the last round
    /// took its answers: the next round goes just after.
    align: Option<Instant>,
}

impl Shell {
    async fn round(&mut self, poll_no: u64) {
        let started = Instant::now();
        // While this round runs, its answers are due at its end, as long
        // as the last round took: a node that asks meanwhile comes back
        // then, not a whole poll later.
        let last_took = std::time::Duration::from_millis(self.status.poll_took_ms);
        self.kept.expect_next(started + last_took);
        self.answers.send_replace(Arc::new(self.kept.clone()));
        let shared = self.asker_answers().await;
        let fetched = Instant::now();
        let obs = poll::poll(
            &self.runner,
            poll_no,
            self.focus(),
            shared.as_ref(),
            self.fresh_for,
        )
        .await;
        // Stamped with the poll's start: an answer is never younger than
        // the peers are told.
        self.kept.keep(&obs, started);
        // This node's next round starts a poll after this one (at once if
        // this one ran late) and should take about as long.
        let now = Instant::now();
        self.kept
            .expect_next((started + self.poll).max(now) + (now - started));
        self.answers.send_replace(Arc::new(self.kept.clone()));
        let shared = shared.filter(|_| !obs.status_age_ms.is_empty());
        self.align = shared
            .as_ref()
            .and_then(|s| s.next_in_ms)
            .map(|ms| fetched + std::time::Duration::from_millis(ms) + ALIGN_AFTER);
        self.status.answers_from = shared.map(|s| s.from);
        let info_answered = obs.volumes.is_ok();
        // Formation acts only on answers from this poll, never on stale
        // ones: a failed `volume info` must not look like "no volume".
        let fresh: Option<(Vec<VolumeInfo>, Vec<super::model::Peer>)> =
            match (&obs.volumes, &obs.peers) {
                (Ok(v), Some(Ok(p))) => Some((v.clone(), p.clone())),
                _ => None,
            };
        let (view, changes) = self.monitor.observe(obs, now_ms() as u64, self.limits);
        self.status.poll_took_ms = started.elapsed().as_millis() as u64;
        self.status.polls = poll_no + 1;
        self.status.polled_at_ms = Some(now_ms());
        // The age the page shows: of the last `volume info` that answered
        // (`pool list`, asked only every few polls, does not count).
        if info_answered {
            self.status.last_good_ms = Some(now_ms());
        }
        self.status.view = Some(view);
        self.report(&changes);
        self.heal_returned(&changes).await;
        if let Some((volumes, pool)) = fresh {
            self.form(&volumes, &pool).await;
        }
        self.mount().await;
        self.publish();
    }

    /// When the next round starts: a poll after `started`, or, when this
    /// round took the asker's answers, just after its next ones should be
    /// ready (within half a poll of that, and never at once).
    fn next_round(&self, started: Instant) -> Instant {
        let now = Instant::now();
        let regular = (started + self.poll).max(now);
        match self.align {
            Some(at) => at.max(now + MIN_GAP).min(regular + self.poll / 2),
            None => regular,
        }
    }

    /// Whether to count the heal backlog every poll: while a started
    /// volume heals or has a brick that is not online (a stopped volume's
    /// bricks are offline by design and heal nothing).
    fn focus(&self) -> poll::Focus {
        let healing = self.monitor.view().is_some_and(|v| {
            v.volumes
                .iter()
                .filter(|v| v.run_state == super::model::RunState::Started)
                .any(|v| {
                    v.heal_pending.is_some_and(|n| n > 0)
                        || v.bricks.iter().any(|b| b.state != BrickState::Online)
                })
        });
        let forming = self.status.own_volume().is_none() || !self.status.forming.is_empty();
        poll::Focus { healing, forming }
    }

    fn publish(&mut self) {
        self.status.fenced = self.fenced.load(Ordering::Relaxed);
        let s = &self.status;
        let state = if s.layout_error.is_some() {
            RoleState::Failed
        } else if s.healthy() {
            RoleState::Healthy
        } else if s
            .view
            .as_ref()
            .is_some_and(|v| !matches!(v.glusterd, Glusterd::Running))
        {
            RoleState::Failed
        } else {
            RoleState::Degraded
        };
        self.ctx.health.set_role(RoleHealth {
            role: Role::Storage,
            state,
            detail: s.summary(),
        });
        self.tx.send_replace(Arc::new(s.clone()));
    }

    /// Storage nodes membership reports up, this one included.
    fn alive(&self) -> BTreeSet<String> {
        let view = self.ctx.membership.borrow().clone();
        let mut up: BTreeSet<String> = view
            .members
            .iter()
            .filter(|m| m.state == PeerState::Up)
            .map(|m| m.hostname.clone())
            .collect();
        up.insert(self.ctx.identity.hostname.clone());
        up
    }

    fn me(&self) -> &str {
        &self.ctx.identity.hostname
    }

    /// The node that asks gluster for the cluster and asks it to heal: the
    /// first storage node in cluster order that is up.
    fn lead(&self) -> Option<String> {
        let alive = self.alive();
        let layout = self.layout.as_ref()?;
        layout
            .bricks
            .iter()
            .find(|b| alive.contains(&b.node))
            .map(|b| b.node.clone())
    }

    /// The lead's answers to the lock-taking questions, unless this node is
    /// the lead or they cannot be had (then this node asks gluster).
    async fn asker_answers(&mut self) -> Option<Shared> {
        let lead = self.lead().filter(|l| l != self.me())?;
        let admin = self
            .ctx
            .running()
            .config
            .nodes
            .iter()
            .find(|n| n.hostname == lead)
            .map(|n| n.admin_addr())?;
        let got = match self.peers.get(admin, share::PATH, share::FETCH_LIMIT).await {
            Ok(value) => Shared::from_json(value, &lead),
            Err(e) => Err(e.message),
        };
        match got {
            Ok(shared) => {
                if self.share_error.take().is_some() {
                    tracing::info!("storage: taking {lead}'s answers from gluster again");
                }
                Some(shared)
            }
            Err(e) => {
                if self.share_error.as_ref() != Some(&e) {
                    tracing::info!("storage: {e}; asking gluster here");
                }
                self.share_error = Some(e);
                None
            }
        }
    }

    /// The formation steps this poll: only on the former, stopping at the
    /// first failure (it is tried again next poll).
    async fn form(&mut self, volumes: &[VolumeInfo], pool: &[super::model::Peer]) {
        let Some(layout) = self.layout.clone() else {
            return;
        };
        if layout.former() != Some(self.me()) {
            self.status.forming.clear();
            return;
        }
        let alive = self.alive();
        let steps = next_steps(&FormInput {
            layout: &layout,
            alive: &alive,
            pool,
            volumes,
        });
        let mut waiting = Vec::new();
        for step in steps {
            match self.take(&layout, &step).await {
                Ok(Some(note)) => waiting.push(note),
                Ok(None) => {}
                Err(e) => {
                    waiting.push(e);
                    break;
                }
            }
        }
        if waiting != self.status.forming {
            for w in waiting.iter().filter(|w| !self.status.forming.contains(w)) {
                self.ctx.events.info("storage", w.clone(), json!({}));
            }
        }
        self.status.forming = waiting;
    }

    /// Ok(Some(text)): nothing done, waiting for what the text says.
    async fn take(&self, layout: &Layout, step: &Step) -> Result<Option<String>, String> {
        let volume = layout.volume.as_str();
        let (args, done): (Vec<String>, String) = match step {
            Step::Wait(why) => return Ok(Some(why.clone())),
            Step::Conflict(why) => return Ok(Some(why.clone())),
            Step::Probe { address, node } => (
                vec!["peer".into(), "probe".into(), address.to_string()],
                format!("added {node} ({address}) to the gluster pool"),
            ),
            Step::Create => (
                layout.create_args(),
                format!(
                    "created volume {volume}: {} bricks, {}",
                    layout.bricks.len(),
                    layout.shape()
                ),
            ),
            Step::Start => (
                vec!["volume".into(), "start".into(), volume.into()],
                format!("started volume {volume}"),
            ),
            Step::SetOption { key, value } => (
                vec![
                    "volume".into(),
                    "set".into(),
                    volume.into(),
                    (*key).into(),
                    value.clone(),
                ],
                format!("set {key} = {value} on volume {volume}"),
            ),
        };
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let until = Instant::now() + ACTION_LIMIT;
        match self.runner.ask(&args, until, xml::done).await {
            Ok(()) => {
                self.ctx
                    .events
                    .info("storage", done, json!({"command": args}));
                Ok(None)
            }
            Err(e) => {
                let msg = format!("gluster {}: {e}", args.join(" "));
                self.ctx.events.warning("storage", msg.clone(), json!({}));
                Err(msg)
            }
        }
    }

    /// A brick that came back gets `volume heal`, from one node only: the
    /// first storage node in cluster order that is up. Asked again each
    /// poll until gluster takes it (right after a brick returns, its
    /// self-heal daemon may not answer yet), at most HEAL_TRIES times.
    async fn heal_returned(&mut self, changes: &[Change]) {
        if self.lead().as_deref() != Some(self.me()) {
            self.heal_wanted.clear();
            return;
        }
        for change in changes {
            if let Change::BrickBack { volume, brick } = change {
                self.heal_wanted.insert(volume.clone(), (brick.clone(), 0));
            }
        }
        let wanted: Vec<(String, String, u32)> = self
            .heal_wanted
            .iter()
            .map(|(v, (b, n))| (v.clone(), b.clone(), *n))
            .collect();
        for (volume, brick, tries) in wanted {
            let until = Instant::now() + ACTION_LIMIT;
            let args = ["volume", "heal", volume.as_str()];
            match self.runner.ask(&args, until, xml::heal_launched).await {
                Ok(()) => {
                    self.heal_wanted.remove(&volume);
                    self.ctx.events.info(
                        "storage",
                        format!(
                            "brick {brick} of {volume} is back: asked gluster to heal {volume}"
                        ),
                        json!({"volume": volume, "brick": brick}),
                    );
                }
                Err(e) if tries + 1 >= HEAL_TRIES => {
                    self.heal_wanted.remove(&volume);
                    self.ctx.events.warning(
                        "storage",
                        format!("brick {brick} of {volume} is back, but gluster volume heal {volume} failed {HEAL_TRIES} times (the self-heal daemon still heals on its own schedule): {e}"),
                        json!({"volume": volume, "brick": brick}),
                    );
                }
                Err(e) => {
                    tracing::info!("gluster volume heal {volume}: {e}; asking again next poll");
                    self.heal_wanted.insert(volume, (brick, tries + 1));
                }
            }
        }
    }

    /// Mounts the volume once it is started, if it is not mounted yet, and
    /// again when its mount lost its client.
    async fn mount(&mut self) {
        if self.layout.is_none() {
            return;
        }
        let started = self
            .status
            .own_volume()
            .is_some_and(|v| v.run_state == super::model::RunState::Started);
        let dir = self.status.mount.clone();
        let mounted = match self.liveness.state(&dir).await {
            Ok(mount::MountState::Live) => true,
            Ok(mount::MountState::Absent) | Err(_) => false,
            Ok(mount::MountState::Dead(why)) => {
                self.note_mounted(false);
                if !self.detach_dead(&dir, &why).await {
                    return;
                }
                false
            }
        };
        if mounted || !started {
            self.note_mounted(mounted);
            return;
        }
        let Some(layout) = &self.layout else {
            return;
        };
        let me = self.ctx.identity.address;
        let mut backups: Vec<IpAddr> = Vec::new();
        for b in &layout.bricks {
            // A node with a data brick and an arbiter is listed once.
            if b.address != me && !backups.contains(&b.address) {
                backups.push(b.address);
            }
        }
        match mount::mount(&layout.volume, me, &backups, &dir).await {
            Ok(()) => {
                self.ctx.events.info(
                    "storage",
                    format!("mounted volume {} on {}", layout.volume, dir.display()),
                    json!({}),
                );
                self.note_mounted(true);
            }
            Err(e) => {
                self.ctx.events.warning("storage", e, json!({}));
                self.note_mounted(false);
            }
        }
    }

    /// Unmounts a mount whose client is gone, so that it can be mounted
    /// again; false when it could not be.
    async fn detach_dead(&mut self, dir: &std::path::Path, why: &str) -> bool {
        let volume = &self.status.volume;
        match mount::detach(dir).await {
            Ok(()) => {
                self.status.remounts += 1;
                self.ctx.events.warning(
                    "storage",
                    format!(
                        "the mount of volume {volume} on {} had lost its client ({why}): \
                         unmounted it to mount it again",
                        dir.display()
                    ),
                    json!({"reason": why}),
                );
                true
            }
            Err(e) => {
                self.ctx.events.warning(
                    "storage",
                    format!(
                        "the mount of volume {volume} on {} has lost its client ({why}); {e}",
                        dir.display()
                    ),
                    json!({"reason": why}),
                );
                false
            }
        }
    }

    fn note_mounted(&mut self, mounted: bool) {
        if self.status.mounted == Some(true) && !mounted {
            self.ctx.events.warning(
                "storage",
                format!(
                    "volume {} is no longer mounted on {}",
                    self.status.volume,
                    self.status.mount.display()
                ),
                json!({}),
            );
        }
        self.status.mounted = Some(mounted);
    }

    /// Changes become events: worse states as warnings, recoveries as info.
    fn report(&self, changes: &[Change]) {
        let events = &self.ctx.events;
        for change in changes {
            match change {
                Change::Glusterd {
                    to: Glusterd::Running,
                    ..
                } => events.info("storage", "glusterd answers again", json!({})),
                Change::Glusterd { to, .. } => {
                    events.error("storage", format!("glusterd: {}", to.describe()), json!({}))
                }
                Change::Volume {
                    name,
                    from,
                    to,
                    why,
                } => {
                    let was = from.map_or(String::new(), |f| format!(" (was {})", f.name()));
                    let msg = format!("volume {name} is {}{was}: {why}", to.name());
                    let details = json!({"volume": name, "state": to.name()});
                    match to {
                        VolumeState::Up => events.info("storage", msg, details),
                        VolumeState::Down => events.error("storage", msg, details),
                        _ => events.warning("storage", msg, details),
                    }
                }
                Change::Brick {
                    volume,
                    brick,
                    from,
                    to,
                    why,
                } => {
                    let why = why.as_deref().map_or(String::new(), |w| format!(": {w}"));
                    let msg = format!(
                        "brick {brick} of {volume} is {} (was {}){why}",
                        to.name(),
                        from.name()
                    );
                    let details = json!({"volume": volume, "brick": brick, "state": to.name()});
                    if *to == BrickState::Online {
                        events.info("storage", msg, details);
                    } else {
                        events.warning("storage", msg, details);
                    }
                }
                Change::BrickBack { .. } => {}
                Change::Peer {
                    hostname,
                    connected,
                } => {
                    let msg = format!(
                        "gluster peer {hostname} {}",
                        if *connected {
                            "connected"
                        } else {
                            "disconnected"
                        }
                    );
                    if *connected {
                        events.info("storage", msg, json!({}));
                    } else {
                        events.warning("storage", msg, json!({}));
                    }
                }
                Change::LowSpace { volume, brick, low } => {
                    if *low {
                        events.warning(
                            "storage",
                            format!("brick {brick} of {volume} is low on space"),
                            json!({}),
                        );
                    } else {
                        events.info(
                            "storage",
                            format!("brick {brick} of {volume} has space again"),
                            json!({}),
                        );
                    }
                }
            }
        }
    }
}
