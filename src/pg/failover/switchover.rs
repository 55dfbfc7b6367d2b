//! Planned switchover (`piha switchover --to pi-2`), run by the VRRP
//! master. No committed transaction is lost, and clients of the pooler in
//! transaction mode see a pause, not an error:
//!
//! 1. pause the pooler: new transactions wait, running ones finish;
//! 2. demote the primary with a clean shutdown: PostgreSQL sends every
//!    byte of WAL to its standbys before it exits, and reports the LSN of
//!    its last record;
//! 3. wait until the target has replayed past that LSN;
//! 4. promote the target; wait until the pooler's prober sees it primary;
//! 5. resume the pooler; re-point the old primary and the other standbys.
//!
//! If the target does not catch up in time, the old primary is promoted
//! back and nothing changed but a short pause.

use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::json;

use super::service::{CALL_LIMIT, Shell};
use crate::pg::pooler::backends::{PgRole, parse_lsn};
use crate::pg::supervisor::Request;

const COMPONENT: &str = "switchover";
/// Transactions running when the pause began get this long to finish.
const DRAIN_LIMIT: Duration = Duration::from_secs(10);
const CATCH_UP_LIMIT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub from: String,
    pub to: String,
    /// The old primary's last LSN, which the new one replayed.
    pub lsn: String,
    /// Each step and how long it took.
    pub steps: Vec<(String, u64)>,
    pub total_ms: u64,
}

pub(super) async fn run(shell: &mut Shell, to: &str) -> Result<Report, String> {
    if !shell.is_master() {
        return Err("this node is not the VRRP master; only the master runs a switchover".into());
    }
    let obs = shell.observe();
    let from = obs
        .nodes
        .iter()
        .find(|n| n.alive && n.report.as_ref().is_some_and(|r| r.is_running_primary()))
        .map(|n| n.hostname.clone())
        .ok_or("no primary is running: nothing to switch over from")?;
    if from == to {
        return Err(format!("{to} is the primary already"));
    }
    let target = obs
        .nodes
        .iter()
        .find(|n| n.hostname == to)
        .ok_or_else(|| format!("{to} is not a db node of the cluster file"))?;
    if !(target.alive
        && target
            .report
            .as_ref()
            .is_some_and(|r| r.is_running_standby()))
    {
        return Err(format!(
            "{to} is not running as a standby: cannot switch over to it"
        ));
    }
    let started = Instant::now();
    let mut steps = Vec::new();
    let mut step = |name: &str, t: &mut Instant| {
        steps.push((name.to_owned(), t.elapsed().as_millis() as u64));
        *t = Instant::now();
    };
    let events = shell.ctx.events.clone();
    events.info(
        COMPONENT,
        format!("switchover from {from} to {to} started"),
        json!({"from": from, "to": to}),
    );
    let pooler = shell.ctx.roles.pooler.borrow().clone();
    let mut t = Instant::now();
    let paused = pooler.as_ref().is_some_and(|p| p.pause(None).is_ok());
    if let Some(p) = &pooler {
        let deadline = Instant::now() + DRAIN_LIMIT;
        while p.busy_servers(None) > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    step("pause the pooler", &mut t);
    let resume = |shell: &Shell| {
        if paused {
            if let Some(p) = shell.ctx.roles.pooler.borrow().as_ref() {
                let _ = p.resume(None);
            }
        }
    };
    shell.fence_in_pooler(&from);
    let demoted = shell
        .request(&from, Request::Demote, Duration::from_secs(60))
        .await;
    let lsn_text = match demoted {
        Ok(m) => m.rsplit(" at ").next().unwrap_or_default().to_owned(),
        Err(e) => {
            shell.unfence_in_pooler(&from);
            resume(shell);
            return Err(format!("demoting {from} failed: {e}"));
        }
    };
    let lsn = parse_lsn(&lsn_text).ok_or_else(|| format!("{from} reported no final LSN"))?;
    step("demote the primary (clean shutdown)", &mut t);
    let caught_up = wait_replayed(shell, to, lsn).await;
    step("the target replays the last WAL", &mut t);
    if let Err(e) = caught_up {
        events.error(
            COMPONENT,
            format!("{to} did not catch up ({e}); promoting {from} back"),
            json!({}),
        );
        let _ = shell
            .request(&from, Request::Promote, Duration::from_secs(75))
            .await;
        shell.unfence_in_pooler(&from);
        resume(shell);
        return Err(format!(
            "{to} did not catch up with {from}: {e}; {from} stays primary"
        ));
    }
    if let Err(e) = shell
        .request(to, Request::Promote, Duration::from_secs(75))
        .await
    {
        let _ = shell
            .request(&from, Request::Promote, Duration::from_secs(75))
            .await;
        shell.unfence_in_pooler(&from);
        resume(shell);
        return Err(format!("promoting {to} failed: {e}; {from} promoted back"));
    }
    shell.decider.set_primary(to);
    step("promote the target", &mut t);
    wait_pooler_sees_primary(shell, to).await;
    resume(shell);
    step("the pooler routes to the new primary", &mut t);
    for node in obs.nodes.iter().filter(|n| n.alive && n.hostname != to) {
        if let Err(e) = shell
            .request(
                &node.hostname,
                Request::Follow {
                    primary: to.to_owned(),
                },
                CALL_LIMIT,
            )
            .await
        {
            events.warning(
                COMPONENT,
                format!("could not re-point {} to {to}: {e}", node.hostname),
                json!({}),
            );
        }
    }
    step("re-point the old primary and the standbys", &mut t);
    let report = Report {
        from: from.clone(),
        to: to.to_owned(),
        lsn: lsn_text,
        steps,
        total_ms: started.elapsed().as_millis() as u64,
    };
    events.info(
        COMPONENT,
        format!(
            "switchover from {from} to {to} done in {} ms",
            report.total_ms
        ),
        json!({"report": report}),
    );
    Ok(report)
}

/// Until `node` has replayed past `lsn` (its own fresh status, not a
/// heartbeat that may be a second old).
async fn wait_replayed(shell: &Shell, node: &str, lsn: u64) -> Result<(), String> {
    let deadline = Instant::now() + CATCH_UP_LIMIT;
    loop {
        let replayed = fresh_lsn(shell, node).await?;
        if replayed > lsn {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "replayed up to {} of {}",
                crate::pg::pooler::backends::format_lsn(replayed),
                crate::pg::pooler::backends::format_lsn(lsn)
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn fresh_lsn(shell: &Shell, node: &str) -> Result<u64, String> {
    if node == shell.ctx.identity.hostname {
        let h = shell.local_db()?;
        // The local status is at most one poll old; good enough here too.
        return Ok(h.status().lsn);
    }
    let addr = shell.admin_addr(node).ok_or("unknown node")?;
    let doc = shell
        .api
        .get(addr, "/api/v1/db", Duration::from_secs(5))
        .await?;
    doc.get("lsn")
        .and_then(|v| v.as_u64())
        .ok_or_else(|| "its db status has no lsn".to_string())
}

async fn wait_pooler_sees_primary(shell: &Shell, node: &str) {
    let Some(p) = shell.ctx.roles.pooler.borrow().clone() else {
        return;
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if p.backends
            .iter()
            .any(|b| b.name == node && b.role() == Some(PgRole::Primary))
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
