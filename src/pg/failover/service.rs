//! The failover service of a balancer node: twice a second it turns what
//! VRRP, membership, the db role and the pooler's prober say into an
//! observation for the decider, and carries out the decider's actions.
//! It also runs switchovers, which need the same view and the same calls.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::sync::mpsc;

use super::decider::{Action, Decider, NodeView, Observation, Settings};
use super::{FailoverHandle, SwitchoverRequest, switchover};
use crate::config::Role;
use crate::membership::PeerState;
use crate::node::context::{NodeContext, Running};
use crate::node::events::now_ms;
use crate::node::peer_api::PeerApi;
use crate::pg::pooler::backends::PgRole;
use crate::pg::supervisor::status::DbState;
use crate::pg::supervisor::{Request, settings::voters};

const COMPONENT: &str = "failover";
const TICK: Duration = Duration::from_millis(500);
/// Margin after the old primary's node went silent: it fenced itself when
/// it lost its majority, the moment we lost it; this covers its immediate
/// shutdown.
const FENCE_GRACE: Duration = Duration::from_secs(2);
const RESTART_GRACE: Duration = Duration::from_secs(20);
const PROMOTE_LIMIT: Duration = Duration::from_secs(75);
pub(super) const CALL_LIMIT: Duration = Duration::from_secs(10);

pub async fn run(ctx: Arc<NodeContext>) -> anyhow::Result<()> {
    let running = ctx.running();
    let key = restart_key(&running);
    let restart = ctx.wait_for_restart(|r| restart_key(r) != key);
    tokio::pin!(restart);
    if !running
        .config
        .nodes
        .iter()
        .any(|n| n.roles.contains(&Role::Db))
    {
        restart.await;
        return Ok(());
    }
    let (tx, mut requests) = mpsc::channel::<SwitchoverRequest>(4);
    ctx.roles
        .failover
        .send_replace(Some(Arc::new(FailoverHandle::new(tx))));
    let mut shell = Shell::new(ctx.clone(), &running);
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = &mut restart => break,
            Some(req) = requests.recv() => {
                let result = shell.switchover(&req.to).await;
                let _ = req.reply.send(result);
            }
            _ = tick.tick() => shell.tick().await,
        }
    }
    ctx.roles.failover.send_replace(None);
    Ok(())
}

fn restart_key(running: &Running) -> String {
    let c = &running.config;
    let db_nodes: Vec<_> = c
        .nodes
        .iter()
        .filter(|n| n.roles.contains(&Role::Db))
        .map(|n| (&n.hostname, n.admin_addr()))
        .collect();
    serde_json::to_string(&(
        db_nodes,
        c.admin_token.is_some(),
        c.db.failover,
        &c.postgres.probe,
    ))
    .unwrap_or_default()
}

pub(super) struct Shell {
    pub ctx: Arc<NodeContext>,
    pub decider: Decider,
    pub api: PeerApi,
    /// When each node's db report stopped saying "running".
    not_running_since: HashMap<String, Instant>,
    /// When the current outage of the primary began (first failed probe
    /// seen), for the failover's timing events.
    outage_started: Option<Instant>,
}

impl Shell {
    fn new(ctx: Arc<NodeContext>, running: &Running) -> Shell {
        let c = &running.config;
        Shell {
            decider: Decider::new(Settings {
                fall: c.postgres.probe.fall,
                fence_grace: FENCE_GRACE,
                restart_grace: RESTART_GRACE,
                promote_timeout: PROMOTE_LIMIT,
                retry_after: Duration::from_secs(10),
                enabled: c.db.failover,
            }),
            api: PeerApi::new(c.admin_token.clone()),
            ctx,
            not_running_since: HashMap::new(),
            outage_started: None,
        }
    }

    async fn tick(&mut self) {
        self.unfence_rejoined();
        let obs = self.observe();
        self.track_outage(&obs);
        let actions = self.decider.step(&obs);
        for action in actions {
            self.act(action, &obs).await;
        }
    }

    pub fn is_master(&self) -> bool {
        self.ctx
            .roles
            .vrrp
            .borrow()
            .as_ref()
            .is_some_and(|v| v.state == crate::vrrp::machine::State::Master)
    }

    pub fn observe(&mut self) -> Observation {
        let now = Instant::now();
        let running = self.ctx.running();
        let config = &running.config;
        let me = self.ctx.identity.hostname.clone();
        let members = self.ctx.membership.borrow().clone();
        let pooler = self.ctx.roles.pooler.borrow().clone();
        let fall = config.postgres.probe.fall;
        let mut alive = std::collections::BTreeSet::new();
        for m in &members.members {
            if m.state == PeerState::Up {
                alive.insert(m.hostname.clone());
            }
        }
        let now_unix = now_ms();
        let mut nodes = Vec::new();
        for n in config.nodes.iter().filter(|n| n.roles.contains(&Role::Db)) {
            let (is_alive, down_since, report) = if n.hostname == me {
                let report = self
                    .ctx
                    .roles
                    .db
                    .borrow()
                    .as_ref()
                    .map(|h| h.status().report());
                (true, None, report)
            } else {
                let m = members.members.iter().find(|m| m.hostname == n.hostname);
                let up = m.is_some_and(|m| m.state == PeerState::Up);
                let down_since = m
                    .filter(|m| matches!(m.state, PeerState::Down | PeerState::Left))
                    .map(|m| {
                        let ago = u64::try_from(now_unix - m.since_ms).unwrap_or(0);
                        now.checked_sub(Duration::from_millis(ago)).unwrap_or(now)
                    });
                let report = m.and_then(|m| m.report.as_ref()?.db.clone());
                (up, down_since, report)
            };
            let (probe_failures, probed_primary) = match pooler
                .as_ref()
                .and_then(|p| p.backends.iter().find(|b| b.name == n.hostname).cloned())
            {
                Some(b) => {
                    let s = b.snapshot();
                    (s.failures, s.role == Some(PgRole::Primary))
                }
                // No pooler here: the node's silence is all we have.
                None => (if is_alive { 0 } else { fall }, false),
            };
            let running_now = report.as_ref().is_some_and(|r| r.state == DbState::Running);
            let not_running_since = if running_now {
                self.not_running_since.remove(&n.hostname);
                None
            } else {
                Some(
                    *self
                        .not_running_since
                        .entry(n.hostname.clone())
                        .or_insert(now),
                )
            };
            nodes.push(NodeView {
                hostname: n.hostname.clone(),
                alive: is_alive,
                down_since,
                report,
                probe_failures,
                probed_primary,
                not_running_since,
            });
        }
        Observation {
            now,
            is_master: self.is_master(),
            quorum: crate::pg::supervisor::fence::has_quorum(&voters(config), &me, &alive),
            nodes,
        }
    }

    fn track_outage(&mut self, obs: &Observation) {
        let Some(primary) = self.decider.primary() else {
            return;
        };
        let failing = obs
            .nodes
            .iter()
            .any(|n| n.hostname == primary && n.probe_failures > 0);
        if failing && self.outage_started.is_none() {
            self.outage_started = Some(obs.now);
        } else if !failing
            && obs.nodes.iter().any(|n| {
                n.hostname == primary && n.report.as_ref().is_some_and(|r| r.is_running_primary())
            })
        {
            self.outage_started = None;
        }
    }

    async fn act(&mut self, action: Action, obs: &Observation) {
        let events = self.ctx.events.clone();
        match action {
            Action::Note { message } => events.warning(COMPONENT, message, json!({})),
            Action::Fence { node } => {
                self.fence_in_pooler(&node);
                let since = self
                    .outage_started
                    .map(|t| t.elapsed().as_millis() as u64)
                    .unwrap_or(0);
                events.warning(
                    COMPONENT,
                    format!(
                        "failover: the primary {node} is down ({since} ms since the first failed \
                         probe); fenced from the pooler"
                    ),
                    json!({"node": node, "detect_ms": since}),
                );
                // If it can still hear us, it stops taking writes too.
                if let Some(addr) = self.admin_addr(&node) {
                    if obs.nodes.iter().any(|n| n.hostname == node && n.alive) {
                        let _ = self
                            .api
                            .post(addr, "/api/v1/db/fence", json!({}), Duration::from_secs(3))
                            .await;
                    }
                }
            }
            Action::Promote { node } => {
                let lsn = obs
                    .nodes
                    .iter()
                    .find(|n| n.hostname == node)
                    .and_then(|n| n.report.as_ref())
                    .map(|r| crate::pg::pooler::backends::format_lsn(r.receive_lsn))
                    .unwrap_or_default();
                events.info(
                    COMPONENT,
                    format!("failover: promoting {node} (received WAL up to {lsn}, the furthest)"),
                    json!({"node": node, "lsn": lsn}),
                );
                let started = Instant::now();
                match self.request(&node, Request::Promote, PROMOTE_LIMIT).await {
                    Ok(answer) => {
                        let total = self
                            .outage_started
                            .map(|t| t.elapsed().as_millis() as u64)
                            .unwrap_or(0);
                        events.info(
                            COMPONENT,
                            format!(
                                "failover: {node} is the primary ({answer}; promotion took {} ms, \
                                 {total} ms since the first failed probe)",
                                started.elapsed().as_millis()
                            ),
                            json!({"node": node, "promote_ms": started.elapsed().as_millis() as u64,
                                   "total_ms": total}),
                        );
                        self.decider.set_primary(&node);
                        // Re-point the others now rather than on the next
                        // tick: each second here is replication lag.
                        let obs = self.observe();
                        for n in obs.nodes.iter().filter(|n| n.alive && n.hostname != node) {
                            if n.report
                                .as_ref()
                                .is_some_and(|r| r.upstream.as_deref() != Some(node.as_str()))
                            {
                                Box::pin(self.act(
                                    Action::Follow {
                                        node: n.hostname.clone(),
                                        primary: node.clone(),
                                    },
                                    &obs,
                                ))
                                .await;
                            }
                        }
                    }
                    Err(e) => {
                        events.error(
                            COMPONENT,
                            format!("failover: promoting {node} failed: {e}"),
                            json!({"node": node, "error": e}),
                        );
                        self.decider.promotion_failed(&node, Instant::now());
                    }
                }
            }
            Action::Follow { node, primary } => {
                let result = self
                    .request(
                        &node,
                        Request::Follow {
                            primary: primary.clone(),
                        },
                        CALL_LIMIT,
                    )
                    .await;
                match result {
                    Ok(_) => events.info(
                        COMPONENT,
                        format!("re-pointed {node} to the primary {primary}"),
                        json!({"node": node, "primary": primary}),
                    ),
                    Err(e) => events.warning(
                        COMPONENT,
                        format!("could not re-point {node} to {primary}: {e} (it follows by itself once it sees the new primary)"),
                        json!({"node": node, "primary": primary, "error": e}),
                    ),
                }
            }
        }
    }

    /// Sends a db request to `node`: through the channel when it is this
    /// node, over the admin API otherwise. Ok(the outcome's message).
    pub async fn request(
        &self,
        node: &str,
        request: Request,
        limit: Duration,
    ) -> Result<String, String> {
        if node == self.ctx.identity.hostname {
            return self.local_db()?.ask(request, limit).await.map(|o| {
                let mut m = o.message;
                if let Some(lsn) = o.lsn {
                    m = format!("{m} at {lsn}");
                }
                m
            });
        }
        let addr = self
            .admin_addr(node)
            .ok_or_else(|| format!("{node} is not a node of the cluster file"))?;
        let (path, body) = match &request {
            Request::Promote => ("/api/v1/db/promote", json!({})),
            Request::Fence => ("/api/v1/db/fence", json!({})),
            Request::Demote => ("/api/v1/db/demote", json!({})),
            Request::Follow { primary } => ("/api/v1/db/follow", json!({"primary": primary})),
        };
        let answer = self.api.post(addr, path, body, limit).await?;
        let mut m = answer
            .get("message")
            .and_then(|v| v.as_str())
            .unwrap_or("done")
            .to_owned();
        if let Some(lsn) = answer.get("lsn").and_then(|v| v.as_str()) {
            m = format!("{m} at {lsn}");
        }
        Ok(m)
    }

    /// This node's own db role, for requests a decider makes of itself.
    pub fn local_db(&self) -> Result<Arc<crate::pg::supervisor::DbHandle>, String> {
        self.ctx
            .roles
            .db
            .borrow()
            .clone()
            .ok_or_else(|| "the db role is not running on this node".to_string())
    }

    pub fn admin_addr(&self, node: &str) -> Option<SocketAddr> {
        self.ctx
            .running()
            .config
            .nodes
            .iter()
            .find(|n| n.hostname == node)
            .map(|n| n.admin_addr())
    }

    pub fn fence_in_pooler(&self, node: &str) {
        if let Some(p) = self.ctx.roles.pooler.borrow().as_ref() {
            for b in p.backends.iter().filter(|b| b.name == node) {
                b.fenced.store(true, Ordering::Relaxed);
            }
        }
    }

    pub fn unfence_in_pooler(&self, node: &str) {
        if let Some(p) = self.ctx.roles.pooler.borrow().as_ref() {
            for b in p.backends.iter().filter(|b| b.name == node) {
                b.fenced.store(false, Ordering::Relaxed);
            }
        }
    }

    /// A fenced server that the prober now sees as a standby has rejoined:
    /// the fence is lifted (a standby gets no writes anyway, and a later
    /// promotion must be able to route to it).
    fn unfence_rejoined(&self) {
        let Some(p) = self.ctx.roles.pooler.borrow().clone() else {
            return;
        };
        for b in p.backends.iter() {
            if b.fenced.load(Ordering::Relaxed) && b.role() == Some(PgRole::Standby) {
                b.fenced.store(false, Ordering::Relaxed);
                self.ctx.events.info(
                    COMPONENT,
                    format!("{} rejoined as a standby; fence lifted", b.name),
                    json!({"node": b.name}),
                );
            }
        }
    }

    async fn switchover(&mut self, to: &str) -> Result<switchover::Report, String> {
        switchover::run(self, to).await
    }
}
