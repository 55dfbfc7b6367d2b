//! The db role's service: the IO shell around `plan` and `fence`. One
//! life of PostgreSQL is: look at the disk, decide how to start (waiting
//! while the cluster cannot tell yet), initdb / clone / rewind if needed,
//! run the postmaster, and poll it every second until it exits, an
//! operator or the failover decider asks for a change, or the node stops.
//! Then the next life starts from the disk again. See LIFECYCLE.md.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use super::backup::Backups;
use super::command;
use super::conf::{self, Mode};
use super::control::Local;
use super::error::DbError;
use super::fence::has_quorum;
use super::inspect::{self, Found};
use super::plan::{self, ClusterView, PeerDb, StartPlan};
use super::postmaster::{self, Postmaster};
use super::settings::DbPlan;
use super::status::{DbRole, DbState, DbStatus};
use super::{Command, DbHandle, Outcome, Reply, Request};
use crate::membership::PeerState;
use crate::node::backoff::Backoff;
use crate::node::context::{NodeContext, Running};
use crate::pg::pooler::backends::format_lsn;

const COMPONENT: &str = "db";
const POLL_EVERY: Duration = Duration::from_secs(1);
const INITDB_LIMIT: Duration = Duration::from_secs(300);
/// A clone copies the whole database over the LAN: hours for a big one
/// on a Pi, so the bound is generous; stopping the node cancels it.
const CLONE_LIMIT: Duration = Duration::from_secs(6 * 3600);
const REWIND_LIMIT: Duration = Duration::from_secs(3600);
/// Standbys re-point themselves to a new primary at most this often, so
/// two primaries reporting at once (the moment a split heals) cannot make
/// a standby restart in a loop.
const FOLLOW_EVERY: Duration = Duration::from_secs(5);

pub async fn run(ctx: Arc<NodeContext>) -> anyhow::Result<()> {
    let running = ctx.running();
    let restart = ctx.restart_watch(restart_key);
    let stop = restart.stop.clone();
    let plan = DbPlan::new(&running, &ctx.identity);
    let data_dir = plan.as_ref().map(|p| p.data.clone()).unwrap_or_default();
    let (status_tx, status_rx) = watch::channel(Arc::new(DbStatus::new(
        data_dir,
        String::new(),
        running.config.db.synchronous,
    )));
    let (cmd_tx, cmd_rx) = mpsc::channel(8);
    let backups = plan.as_ref().ok().map(|p| {
        Arc::new(Backups::new(
            ctx.clone(),
            p.clone(),
            status_tx.clone(),
            stop.clone(),
        ))
    });
    let scheduler = backups
        .clone()
        .map(|b| tokio::spawn(b.schedule(status_rx.clone())));
    ctx.roles.db.send_replace(Some(Arc::new(
        DbHandle::new(status_rx, cmd_tx).with_backups(backups),
    )));
    let mut node = DbNode {
        ctx: ctx.clone(),
        status: status_tx,
        commands: cmd_rx,
        stop: stop.clone(),
        backoff: Backoff::default(),
        fenced: false,
        next: None,
        last_follow: None,
    };
    match plan {
        Ok(plan) => node.life(plan).await,
        Err(e) => {
            node.set(DbState::Failed, e.to_string());
            ctx.events
                .error(COMPONENT, format!("db role cannot start: {e}"), json!({}));
            node.idle_until_stop().await;
        }
    }
    drop(restart);
    // Ends the schedule and kills a backup still running.
    stop.cancel();
    if let Some(s) = scheduler {
        s.abort();
    }
    ctx.roles.db.send_replace(None);
    Ok(())
}

/// What needs a new life of the role (a restart of PostgreSQL): where it
/// runs and as whom. Users, databases, peers and synchronous mode are
/// applied in place.
fn restart_key(running: &Running) -> String {
    let db = &running.config.db;
    serde_json::to_string(&(
        &db.bindir,
        &db.data_dir,
        &db.os_user,
        &db.replication_user,
        running.config.postgres.server_port,
        running.config.admin_token.is_some(),
        running.plan.settings.db.as_ref().map(|d| d.initial_primary),
    ))
    .unwrap_or_default()
}

/// How the postmaster of this life runs.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Run {
    Primary,
    Standby { upstream: Option<String> },
}

/// A change that needs the postmaster stopped first.
enum Transition {
    Fence(Option<oneshot::Sender<Reply>>),
    Demote(oneshot::Sender<Reply>),
    Follow {
        primary: String,
        reply: Option<oneshot::Sender<Reply>>,
    },
}

struct DbNode {
    ctx: Arc<NodeContext>,
    status: watch::Sender<Arc<DbStatus>>,
    commands: mpsc::Receiver<Command>,
    /// Node shutdown or a config change that needs a new role.
    stop: CancellationToken,
    backoff: Backoff,
    /// Running read-only on purpose (lost the majority, or demoted): shown
    /// as `fenced` and never re-promoted by itself.
    fenced: bool,
    /// How the next life starts, when a transition decided it already.
    next: Option<StartPlan>,
    last_follow: Option<Instant>,
}

impl DbNode {
    async fn life(&mut self, mut plan: DbPlan) {
        self.update(|s| s.server = plan.bindir.display().to_string());
        loop {
            if self.stop.is_cancelled() {
                break;
            }
            let started = Instant::now();
            match self.one_life(&mut plan).await {
                Ok(true) => break,
                Ok(false) => continue,
                Err(e) if !e.retryable() => {
                    self.set(DbState::Failed, e.to_string());
                    self.ctx.events.error(
                        COMPONENT,
                        format!("PostgreSQL cannot run: {e}"),
                        json!({"error": e.to_string()}),
                    );
                    self.idle_until_stop().await;
                    break;
                }
                Err(e) => {
                    let wait = self.backoff.after_failure(started.elapsed());
                    self.update(|s| s.restarts += 1);
                    self.set(DbState::Restarting, e.to_string());
                    self.ctx.events.error(
                        COMPONENT,
                        format!(
                            "PostgreSQL: {e}; trying again in {}",
                            humantime::format_duration(wait)
                        ),
                        json!({"error": e.to_string(), "retry_in_ms": wait.as_millis() as u64}),
                    );
                    if self.pause(wait).await {
                        break;
                    }
                }
            }
        }
        self.set(DbState::Stopped, String::new());
    }

    /// One life; Ok(true) when the role must end (node stopping).
    async fn one_life(&mut self, plan: &mut DbPlan) -> Result<bool, DbError> {
        self.set(DbState::Preparing, String::new());
        command::private_dir(plan, &plan.root(), 0o700)?;
        command::private_dir(plan, &plan.run, 0o700)?;
        if let Some(pid) = postmaster::stop_leftover(plan).await {
            self.ctx.events.warning(
                COMPONENT,
                format!("stopped a PostgreSQL (pid {pid}) that was not under this node's care"),
                json!({"pid": pid}),
            );
        }
        let found = inspect::inspect(plan).await?;
        self.show_found(&found);
        let start = match self.next.take() {
            Some(p) => p,
            None => loop {
                let view = self.cluster_view(plan);
                match plan::decide(&found, plan.initial_primary, &view) {
                    StartPlan::Wait { why } => {
                        self.set(DbState::Waiting, why);
                        if self.pause(POLL_EVERY).await {
                            return Ok(true);
                        }
                    }
                    other => break other,
                }
            },
        };
        let run = match start {
            StartPlan::Initdb => {
                self.initdb(plan).await?;
                Run::Primary
            }
            StartPlan::Clone { from } => {
                self.clone_from(plan, &from).await?;
                Run::Standby {
                    upstream: Some(from),
                }
            }
            StartPlan::Rewind { from } => {
                self.rewind(plan, &from).await?;
                Run::Standby {
                    upstream: Some(from),
                }
            }
            StartPlan::StartPrimary => Run::Primary,
            StartPlan::StartStandby { upstream } => {
                if upstream.is_none() && matches!(found, Found::Cluster { standby: false, .. }) {
                    // A primary's data started read-only: cut off.
                    self.fenced = true;
                }
                Run::Standby { upstream }
            }
            StartPlan::Wait { .. } => return Ok(false),
        };
        if self.stop.is_cancelled() {
            return Ok(true);
        }
        self.serve(plan, run).await
    }

    /// Runs the postmaster until it exits or something needs a new life.
    async fn serve(&mut self, plan: &mut DbPlan, run: Run) -> Result<bool, DbError> {
        let upstream_peer = match &run {
            Run::Standby { upstream: Some(h) } => Some(plan.peer(h).cloned().ok_or_else(|| {
                DbError::Refused(format!("{h} is not a db node of the cluster file"))
            })?),
            _ => None,
        };
        let mode = match &run {
            Run::Primary => Mode::Primary,
            Run::Standby { .. } => Mode::Standby {
                upstream: upstream_peer.as_ref(),
            },
        };
        conf::write_all(plan, mode)?;
        let mut pm = Postmaster::spawn(plan)?;
        let upstream = match &run {
            Run::Standby { upstream } => upstream.clone(),
            Run::Primary => None,
        };
        self.update(|s| {
            s.pid = Some(pm.pid);
            s.upstream = upstream.clone();
        });
        self.set(DbState::Starting, String::new());
        let what = match &upstream {
            Some(u) => format!("standby of {u}"),
            None if run == Run::Primary => "primary".to_string(),
            None => "read-only standby with no upstream".to_string(),
        };
        self.ctx.events.info(
            COMPONENT,
            format!("starting PostgreSQL as {what}"),
            json!({"pid": pm.pid, "mode": what}),
        );
        let mut local: Option<Local> = None;
        let mut objects_done = false;
        let mut announced = false;
        let mut tick = tokio::time::interval(POLL_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let transition = loop {
            tokio::select! {
                _ = self.stop.cancelled() => {
                    drop(local.take());
                    let clean = pm.stop().await;
                    self.ctx.events.info(COMPONENT, format!("PostgreSQL stopped ({})", if clean { "clean shutdown" } else { "forced" }), json!({}));
                    self.update(|s| s.pid = None);
                    return Ok(true);
                }
                status = pm.exited() => {
                    self.update(|s| { s.pid = None; s.role = None; });
                    return Err(DbError::Program {
                        program: "postgres".into(),
                        status: format!("exited: {status}"),
                        output: startup_tail(plan),
                    });
                }
                Some(cmd) = self.commands.recv() => {
                    if let Some(t) = self.handle(plan, cmd, local.as_ref()).await {
                        break t;
                    }
                }
                _ = tick.tick() => {
                    if let Some(t) = self.tick(plan, &mut local, &mut objects_done, &mut announced).await {
                        break t;
                    }
                }
            }
        };
        drop(local);
        self.transition(plan, pm, transition).await?;
        Ok(false)
    }

    /// One poll: status, cluster objects, quorum, upstream.
    async fn tick(
        &mut self,
        plan: &mut DbPlan,
        local: &mut Option<Local>,
        objects_done: &mut bool,
        announced: &mut bool,
    ) -> Option<Transition> {
        self.apply_config(plan, local.as_ref()).await;
        if local.as_ref().is_none_or(|l| l.is_closed()) {
            *local = Local::connect(plan).await.ok();
        }
        let view = self.cluster_view(plan);
        self.update(|s| s.quorum = view.quorum);
        let l = local.as_ref()?;
        let polled = match l.poll().await {
            Ok(p) => p,
            Err(e) => {
                tracing::debug!("db poll: {e}");
                *local = None;
                return None;
            }
        };
        let replicas = if polled.role == DbRole::Primary {
            l.replicas().await.unwrap_or_default()
        } else {
            Vec::new()
        };
        let state = if self.fenced {
            DbState::Fenced
        } else {
            DbState::Running
        };
        self.update(|s| {
            s.role = Some(polled.role);
            s.timeline = polled.timeline;
            s.lsn = polled.lsn;
            s.receive_lsn = polled.receive_lsn;
            s.system_id = polled.system_id;
            s.replay_delay_s = polled.replay_delay_s;
            s.replay_lag_bytes = (polled.role == DbRole::Standby)
                .then(|| polled.receive_lsn.saturating_sub(polled.lsn));
            s.replicas = replicas;
        });
        if self.status.borrow().state != state {
            self.set(state, String::new());
        }
        if !*announced {
            *announced = true;
            self.backoff = Backoff::default();
            self.ctx.events.info(
                COMPONENT,
                format!(
                    "PostgreSQL is up as {} on timeline {} at {}",
                    polled.role.name(),
                    polled.timeline,
                    format_lsn(polled.lsn)
                ),
                json!({"role": polled.role.name(), "timeline": polled.timeline}),
            );
        }
        if polled.role == DbRole::Primary {
            if !*objects_done {
                match l.ensure_cluster_objects(plan).await {
                    Ok(done) => {
                        *objects_done = true;
                        if !done.is_empty() {
                            self.ctx.events.info(
                                COMPONENT,
                                done.join("; "),
                                json!({"created": done}),
                            );
                        }
                    }
                    Err(e) => tracing::warn!("db: cannot set up roles and slots yet: {e}"),
                }
            }
            return self.check_primary(plan, &view, polled.timeline);
        }
        self.check_upstream(plan, &view, Some(l)).await
    }

    /// A primary fences itself when it loses the majority, or when another
    /// node runs a primary on a newer timeline (it is the stale one).
    fn check_primary(
        &mut self,
        plan: &DbPlan,
        view: &ClusterView,
        timeline: u32,
    ) -> Option<Transition> {
        if !view.quorum {
            let seen = view.peers.iter().filter(|p| p.alive).count() + 1;
            self.ctx.events.error(
                COMPONENT,
                format!(
                    "lost the majority of the cluster (sees {seen} of {} voters): fencing \
                     this primary so a cut-off node never takes writes",
                    plan.voters.len()
                ),
                json!({"voters": plan.voters, "seen": seen}),
            );
            return Some(Transition::Fence(None));
        }
        let system_id = self.status.borrow().system_id;
        if let Some(p) = view.running_primary(Some(system_id)) {
            let theirs = p.report.as_ref().map(|r| r.timeline).unwrap_or(0);
            if theirs > timeline {
                self.ctx.events.error(
                    COMPONENT,
                    format!(
                        "{} runs a primary on timeline {theirs}, newer than this node's \
                         {timeline}: fencing, then rejoining as its standby",
                        p.hostname
                    ),
                    json!({"other": p.hostname, "timeline": theirs}),
                );
                return Some(Transition::Follow {
                    primary: p.hostname.clone(),
                    reply: None,
                });
            }
        }
        None
    }

    /// A standby follows whichever node runs the primary now.
    async fn check_upstream(
        &mut self,
        plan: &DbPlan,
        view: &ClusterView,
        local: Option<&Local>,
    ) -> Option<Transition> {
        let system_id = self.status.borrow().system_id;
        let primary = view.running_primary(Some(system_id))?;
        let current = self.status.borrow().upstream.clone();
        if current.as_deref() == Some(primary.hostname.as_str())
            || primary.hostname == plan.hostname
        {
            return None;
        }
        if self.last_follow.is_some_and(|t| t.elapsed() < FOLLOW_EVERY) {
            return None;
        }
        self.last_follow = Some(Instant::now());
        self.ctx.events.info(
            COMPONENT,
            format!("{} is the primary now: following it", primary.hostname),
            json!({"primary": primary.hostname}),
        );
        let primary = primary.hostname.clone();
        self.follow(plan, primary, local, None).await
    }

    /// An admin request while the postmaster runs. Those that need it
    /// stopped become a transition.
    async fn handle(
        &mut self,
        plan: &DbPlan,
        cmd: Command,
        local: Option<&Local>,
    ) -> Option<Transition> {
        let Command { request, reply } = cmd;
        let role = self.status.borrow().role;
        match request {
            Request::Fence => Some(Transition::Fence(Some(reply))),
            Request::Demote => Some(Transition::Demote(reply)),
            Request::Promote => {
                let outcome = self.promote(plan, local, role).await;
                let _ = reply.send(outcome);
                None
            }
            Request::Follow { primary } => {
                if primary == plan.hostname {
                    let _ = reply.send(Err("a node cannot follow itself".into()));
                    return None;
                }
                if plan.peer(&primary).is_none() {
                    let _ = reply.send(Err(format!("{primary} is not a db node")));
                    return None;
                }
                self.follow(plan, primary, local, Some(reply)).await
            }
        }
    }

    /// Streams from `primary`. A healthy standby on the primary's timeline
    /// re-points with a reload; anything else (a primary, a fenced old
    /// primary, a standby behind a timeline switch) stops and rewinds.
    async fn follow(
        &mut self,
        plan: &DbPlan,
        primary: String,
        local: Option<&Local>,
        reply: Option<oneshot::Sender<Reply>>,
    ) -> Option<Transition> {
        let role = self.status.borrow().role;
        let theirs = self.peer_timeline(&primary);
        let ours = self.status.borrow().timeline;
        let in_place = role == Some(DbRole::Standby) && !self.fenced && theirs <= ours;
        let (Some(l), Some(peer), true) = (local, plan.peer(&primary).cloned(), in_place) else {
            return Some(Transition::Follow { primary, reply });
        };
        let result = match conf::write_settings(
            plan,
            Mode::Standby {
                upstream: Some(&peer),
            },
        ) {
            Ok(()) => l.reload().await,
            Err(e) => Err(e),
        };
        let answer = match result {
            Ok(()) => {
                self.update(|s| s.upstream = Some(primary.clone()));
                self.last_follow = Some(Instant::now());
                self.ctx.events.info(
                    COMPONENT,
                    format!("now streaming from {primary}"),
                    json!({"primary": primary}),
                );
                Ok(Outcome {
                    message: format!("following {primary}"),
                    lsn: None,
                    timeline: Some(ours),
                })
            }
            Err(e) => Err(e.to_string()),
        };
        if let Some(r) = reply {
            let _ = r.send(answer);
        }
        None
    }

    async fn promote(
        &mut self,
        plan: &DbPlan,
        local: Option<&Local>,
        role: Option<DbRole>,
    ) -> Reply {
        let Some(l) = local else {
            return Err("PostgreSQL is not accepting connections yet".into());
        };
        if role == Some(DbRole::Primary) && !self.fenced {
            return Ok(Outcome {
                message: "already the primary".into(),
                lsn: None,
                timeline: Some(self.status.borrow().timeline),
            });
        }
        let started = Instant::now();
        conf::write_settings(plan, Mode::Primary).map_err(|e| e.to_string())?;
        if let Err(e) = l.promote().await {
            // The answer can be lost while the promotion itself went
            // through: ask the server on a new connection before saying
            // it failed (a decider told "failed" promotes someone else).
            let now = match Local::connect(plan).await {
                Ok(fresh) => fresh.poll().await.ok().map(|p| p.role),
                Err(_) => None,
            };
            if now != Some(DbRole::Primary) {
                return Err(e.to_string());
            }
        }
        self.fenced = false;
        // pg_rewind reads the new primary's timeline from its control
        // file, which a promotion updates only at its next checkpoint:
        // without this one, an old primary rewinding right away is told
        // "same timeline, no rewind required" and then cannot follow.
        if let Err(e) = l.checkpoint().await {
            tracing::warn!("db: checkpoint after the promotion failed: {e}");
        }
        let polled = l.poll().await.map_err(|e| e.to_string())?;
        self.update(|s| {
            s.role = Some(polled.role);
            s.timeline = polled.timeline;
            s.lsn = polled.lsn;
            s.receive_lsn = polled.lsn;
            s.upstream = None;
        });
        self.set(DbState::Running, String::new());
        let objects = l.ensure_cluster_objects(plan).await;
        self.ctx.events.info(
            COMPONENT,
            format!(
                "promoted to primary on timeline {} at {} in {} ms",
                polled.timeline,
                format_lsn(polled.lsn),
                started.elapsed().as_millis()
            ),
            json!({"timeline": polled.timeline, "ms": started.elapsed().as_millis() as u64,
                   "objects": objects.map_err(|e| e.to_string())}),
        );
        Ok(Outcome {
            message: format!("promoted to primary on timeline {}", polled.timeline),
            lsn: Some(format_lsn(polled.lsn)),
            timeline: Some(polled.timeline),
        })
    }

    /// Stops the postmaster as the transition needs and sets up the next
    /// life.
    async fn transition(
        &mut self,
        plan: &DbPlan,
        pm: Postmaster,
        t: Transition,
    ) -> Result<(), DbError> {
        match t {
            Transition::Fence(reply) => {
                // Immediate: the point is to stop writes now.
                pm.stop_now().await;
                conf::set_standby_signal(plan, true)?;
                self.fenced = true;
                self.next = Some(StartPlan::StartStandby { upstream: None });
                self.update(|s| {
                    s.pid = None;
                    s.role = None;
                    s.upstream = None;
                });
                self.set(DbState::Fenced, "restarting read-only".into());
                self.ctx.events.warning(
                    COMPONENT,
                    "fenced: PostgreSQL stopped and restarts read-only",
                    json!({}),
                );
                if let Some(r) = reply {
                    let _ = r.send(Ok(Outcome {
                        message: "fenced: restarting read-only".into(),
                        lsn: None,
                        timeline: None,
                    }));
                }
            }
            Transition::Demote(reply) => {
                let clean = pm.stop().await;
                let control = match inspect::inspect(plan).await {
                    Ok(Found::Cluster { control, .. }) => control,
                    Ok(Found::Empty) => {
                        let _ = reply.send(Err("the data directory is gone".into()));
                        return Err(DbError::DataDir("the data directory is gone".into()));
                    }
                    Err(e) => {
                        let _ = reply.send(Err(e.to_string()));
                        return Err(e);
                    }
                };
                conf::set_standby_signal(plan, true)?;
                self.fenced = true;
                self.next = Some(StartPlan::StartStandby { upstream: None });
                self.update(|s| {
                    s.pid = None;
                    s.role = None;
                    s.upstream = None;
                    s.timeline = control.timeline;
                    s.lsn = control.checkpoint_lsn;
                });
                self.set(DbState::Fenced, "demoted; restarting read-only".into());
                self.ctx.events.info(
                    COMPONENT,
                    format!(
                        "demoted: {} shutdown at {} on timeline {}",
                        if clean { "clean" } else { "forced" },
                        format_lsn(control.checkpoint_lsn),
                        control.timeline
                    ),
                    json!({"clean": clean, "lsn": format_lsn(control.checkpoint_lsn)}),
                );
                let _ = reply.send(if clean {
                    Ok(Outcome {
                        message: "demoted".into(),
                        lsn: Some(format_lsn(control.checkpoint_lsn)),
                        timeline: Some(control.timeline),
                    })
                } else {
                    Err(
                        "the shutdown was not clean: transactions may be missing on the \
                         standbys; not safe for a switchover"
                            .into(),
                    )
                });
            }
            Transition::Follow { primary, reply } => {
                pm.stop().await;
                conf::set_standby_signal(plan, true)?;
                self.update(|s| {
                    s.pid = None;
                    s.role = None;
                });
                self.fenced = false;
                self.last_follow = Some(Instant::now());
                self.next = Some(StartPlan::Rewind {
                    from: primary.clone(),
                });
                if let Some(r) = reply {
                    let _ = r.send(Ok(Outcome {
                        message: format!("rejoining as a standby of {primary}"),
                        lsn: None,
                        timeline: None,
                    }));
                }
            }
        }
        Ok(())
    }

    async fn initdb(&mut self, plan: &DbPlan) -> Result<(), DbError> {
        self.set(DbState::Initializing, "initdb".into());
        let started = Instant::now();
        let tmp = plan.root().join("data.initdb");
        remove_dir(&tmp)?;
        let mut args: Vec<std::ffi::OsString> = vec!["-D".into(), tmp.clone().into()];
        for a in [
            "-U",
            super::control::SUPERUSER,
            "-E",
            "UTF8",
            "--locale=C.UTF-8",
            // The Pi's SD card corrupts quietly; checksums make it loud.
            "--data-checksums",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
        ] {
            args.push(a.into());
        }
        self.cancellable(command::run(plan, "initdb", &args, INITDB_LIMIT))
            .await?;
        std::fs::rename(&tmp, &plan.data)
            .map_err(DbError::io("cannot move the new data directory in place"))?;
        self.ctx.events.info(
            COMPONENT,
            format!(
                "created the database cluster (initdb) in {} ms",
                started.elapsed().as_millis()
            ),
            json!({"data_dir": plan.data}),
        );
        Ok(())
    }

    async fn clone_from(&mut self, plan: &DbPlan, from: &str) -> Result<(), DbError> {
        let peer = plan
            .peer(from)
            .cloned()
            .ok_or_else(|| DbError::Refused(format!("{from} is not a db node")))?;
        self.set(
            DbState::Cloning,
            format!("copying the database from {from}"),
        );
        let started = Instant::now();
        conf::write_pgpass(plan)?;
        let tmp = plan.root().join("data.clone");
        remove_dir(&tmp)?;
        let args: Vec<std::ffi::OsString> = vec![
            "-D".into(),
            tmp.clone().into(),
            "-d".into(),
            conf::conninfo(plan, &peer).into(),
            "-X".into(),
            "stream".into(),
            "-c".into(),
            "fast".into(),
            "--no-password".into(),
        ];
        self.cancellable(command::run(plan, "pg_basebackup", &args, CLONE_LIMIT))
            .await?;
        std::fs::rename(&tmp, &plan.data).map_err(DbError::io(
            "cannot move the copied data directory in place",
        ))?;
        self.step_done(
            &format!("copied the database from {from}"),
            "",
            from,
            started,
        );
        Ok(())
    }

    /// pg_rewind onto `from`; when that is impossible (the WAL it needs is
    /// gone), the old directory is moved aside, never deleted, and the
    /// node clones afresh.
    async fn rewind(&mut self, plan: &DbPlan, from: &str) -> Result<(), DbError> {
        let peer = plan
            .peer(from)
            .cloned()
            .ok_or_else(|| DbError::Refused(format!("{from} is not a db node")))?;
        self.set(DbState::Rewinding, format!("rewinding onto {from}"));
        let started = Instant::now();
        conf::write_pgpass(plan)?;
        let source = format!("{} dbname=postgres", conf::conninfo(plan, &peer));
        let args: Vec<std::ffi::OsString> = vec![
            "--target-pgdata".into(),
            plan.data.clone().into(),
            "--source-server".into(),
            source.into(),
        ];
        let mut cmd = command::command(plan, "pg_rewind");
        cmd.args(&args);
        // Its progress goes to stderr; keep it for the event.
        cmd.arg("--progress");
        match self
            .cancellable(command::run_merged(cmd, "pg_rewind", REWIND_LIMIT))
            .await
        {
            Ok(out) => {
                // pg_rewind says what it did on stderr ("servers diverged
                // at ...", "no rewind required"), folded into stdout here.
                let summary = out
                    .lines()
                    .filter(|l| l.starts_with("pg_rewind:"))
                    .collect::<Vec<_>>()
                    .join("; ");
                conf::set_standby_signal(plan, true)?;
                self.step_done(&format!("rewound onto {from}"), &summary, from, started);
                Ok(())
            }
            Err(DbError::Program { output, .. }) if !self.stop.is_cancelled() => {
                let aside = plan.root().join(format!(
                    "data.before-reclone-{}",
                    crate::node::events::now_ms() / 1000
                ));
                self.ctx.events.warning(
                    COMPONENT,
                    format!(
                        "pg_rewind onto {from} failed ({output}); keeping the old data in {} \
                         and copying the database afresh",
                        aside.display()
                    ),
                    json!({"from": from, "aside": aside}),
                );
                remove_old_asides(plan);
                std::fs::rename(&plan.data, &aside)
                    .map_err(DbError::io("cannot move the old data directory aside"))?;
                self.clone_from(plan, from).await
            }
            Err(e) => Err(e),
        }
    }

    /// The event of a finished clone or rewind, with its duration.
    fn step_done(&self, what: &str, detail: &str, from: &str, started: Instant) {
        let ms = started.elapsed().as_millis() as u64;
        let detail = if detail.is_empty() {
            String::new()
        } else {
            format!(": {detail}")
        };
        self.ctx.events.info(
            COMPONENT,
            format!("{what} in {ms} ms{detail}"),
            json!({"from": from, "ms": ms}),
        );
    }

    /// Runs `work` unless the node stops first (then the program is killed
    /// by dropping it).
    async fn cancellable<T>(
        &self,
        work: impl std::future::Future<Output = Result<T, DbError>>,
    ) -> Result<T, DbError> {
        tokio::select! {
            r = work => r,
            _ = self.stop.cancelled() => Err(DbError::Refused("the node is stopping".into())),
        }
    }

    /// Peers apply config changes that need no restart: users, databases,
    /// standbys (slots, synchronous names), synchronous mode.
    async fn apply_config(&mut self, plan: &mut DbPlan, local: Option<&Local>) {
        let running = self.ctx.running();
        let Ok(new) = DbPlan::new(&running, &self.ctx.identity) else {
            return;
        };
        let changed = new.peers != plan.peers
            || new.synchronous != plan.synchronous
            || new.voters != plan.voters
            || new
                .users
                .iter()
                .map(|u| (&u.name, &u.secret))
                .ne(plan.users.iter().map(|u| (&u.name, &u.secret)))
            || new
                .databases
                .iter()
                .map(|d| &d.name)
                .ne(plan.databases.iter().map(|d| &d.name))
            || new.service.as_ref().map(|s| (&s.user, &s.keys))
                != plan.service.as_ref().map(|s| (&s.user, &s.keys))
            || new.backup.as_ref().map(|b| (&b.dir, b.every, b.keep))
                != plan.backup.as_ref().map(|b| (&b.dir, b.every, b.keep))
            || new.failover != plan.failover;
        if !changed {
            return;
        }
        let upstream = self.status.borrow().upstream.clone();
        *plan = new;
        let peer = upstream.as_deref().and_then(|u| plan.peer(u)).cloned();
        let mode = match self.status.borrow().role {
            Some(DbRole::Primary) => Mode::Primary,
            _ => Mode::Standby {
                upstream: peer.as_ref(),
            },
        };
        if let Err(e) = conf::write_settings(plan, mode) {
            tracing::warn!("db: cannot apply the new config: {e}");
            return;
        }
        if let Some(l) = local {
            let _ = l.reload().await;
            if self.status.borrow().role == Some(DbRole::Primary) {
                let _ = l.ensure_cluster_objects(plan).await;
            }
        }
        self.update(|s| s.synchronous = plan.synchronous);
        self.ctx.events.info(
            COMPONENT,
            "applied the new cluster file to PostgreSQL",
            json!({}),
        );
    }

    /// The peers' db reports, as membership has them now.
    fn cluster_view(&self, plan: &DbPlan) -> ClusterView {
        let view = self.ctx.membership.borrow().clone();
        let mut alive = BTreeSet::new();
        let mut settled = true;
        let mut peers = Vec::new();
        for m in &view.members {
            if m.state == PeerState::Up {
                alive.insert(m.hostname.clone());
            }
            if m.state == PeerState::Unknown && plan.voters.contains(&m.hostname) {
                settled = false;
            }
            let report = m.report.as_ref().and_then(|r| r.db.clone());
            if report.is_some() || plan.peer(&m.hostname).is_some() {
                peers.push(PeerDb {
                    hostname: m.hostname.clone(),
                    alive: m.state == PeerState::Up,
                    report,
                });
            }
        }
        ClusterView {
            quorum: has_quorum(&plan.voters, &plan.hostname, &alive),
            peers,
            settled,
        }
    }

    fn peer_timeline(&self, host: &str) -> u32 {
        self.ctx
            .membership
            .borrow()
            .members
            .iter()
            .find(|m| m.hostname == host)
            .and_then(|m| m.report.as_ref()?.db.as_ref().map(|d| d.timeline))
            .unwrap_or(0)
    }

    fn show_found(&self, found: &Found) {
        match found {
            Found::Empty => self.update(|s| {
                s.system_id = 0;
                s.timeline = 0;
                s.lsn = 0;
                s.receive_lsn = 0;
            }),
            Found::Cluster { control, .. } => self.update(|s| {
                s.system_id = control.system_id;
                s.timeline = control.timeline;
                s.lsn = control.checkpoint_lsn;
                s.receive_lsn = control.checkpoint_lsn;
                s.role = None;
            }),
        }
    }

    /// Waits `d`, answering requests meanwhile (nothing runs to act on).
    /// True when the role must end.
    async fn pause(&mut self, d: Duration) -> bool {
        let deadline = tokio::time::sleep(d);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                _ = self.stop.cancelled() => return true,
                _ = &mut deadline => return false,
                Some(cmd) = self.commands.recv() => self.refuse(cmd),
            }
        }
    }

    async fn idle_until_stop(&mut self) {
        loop {
            tokio::select! {
                _ = self.stop.cancelled() => return,
                Some(cmd) = self.commands.recv() => self.refuse(cmd),
            }
        }
    }

    fn refuse(&self, cmd: Command) {
        let s = self.status.borrow();
        let _ = cmd.reply.send(Err(format!(
            "PostgreSQL is not running here ({}{}{})",
            s.state.name(),
            if s.detail.is_empty() { "" } else { ": " },
            s.detail
        )));
    }

    fn set(&self, state: DbState, detail: String) {
        self.update(|s| {
            if s.state != state {
                s.since_ms = crate::node::events::now_ms();
            }
            s.state = state;
            s.detail = detail;
        });
    }

    fn update(&self, f: impl FnOnce(&mut DbStatus)) {
        self.status.send_modify(|arc| f(Arc::make_mut(arc)));
        let health = role_health(&self.status.borrow());
        self.ctx.health.set_role(health);
    }
}

/// The db role's line on the status page: healthy while PostgreSQL runs
/// (as primary or streaming standby), failed when it cannot, degraded in
/// between (starting, cloning, waiting, fenced).
fn role_health(s: &DbStatus) -> crate::node::health::RoleHealth {
    use crate::node::health::RoleState;
    let state = match s.state {
        DbState::Running => RoleState::Healthy,
        DbState::Failed => RoleState::Failed,
        _ => RoleState::Degraded,
    };
    let role = s.role.map_or(String::new(), |r| format!(" {}", r.name()));
    let detail = if s.detail.is_empty() {
        format!("{}{role}", s.state.name())
    } else {
        format!("{}{role}: {}", s.state.name(), s.detail)
    };
    crate::node::health::RoleHealth {
        role: crate::config::Role::Db,
        state,
        detail,
    }
}

fn remove_dir(path: &std::path::Path) -> Result<(), DbError> {
    match std::fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(DbError::io(format!("cannot remove {}", path.display()))(e)),
    }
}

/// Keeps at most one directory set aside by a failed rewind: the SD card
/// has room for one copy, not for one per failover.
fn remove_old_asides(plan: &DbPlan) {
    let Ok(entries) = std::fs::read_dir(plan.root()) else {
        return;
    };
    for e in entries.flatten() {
        if e.file_name()
            .to_string_lossy()
            .starts_with("data.before-reclone-")
        {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// The end of what the postmaster printed before its log collector took
/// over: why a start failed.
fn startup_tail(plan: &DbPlan) -> String {
    let text = std::fs::read_to_string(plan.run.join("startup.log")).unwrap_or_default();
    let lines: Vec<&str> = text.lines().rev().take(5).collect();
    lines.into_iter().rev().collect::<Vec<_>>().join(" | ")
}
