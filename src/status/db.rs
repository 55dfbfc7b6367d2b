//! The db role's part of the status API and of /metrics: this node's
//! PostgreSQL (`DbStatus`, as the role publishes it) and the cluster's db
//! nodes as their heartbeats describe them, in the shape docs/api.md
//! documents.
//!
//! The cluster rows come from the `db` section of each peer's last
//! heartbeat, so they are at most a heartbeat old and need no connection to
//! any PostgreSQL; the lag is computed here from the running primary's LSN.

use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;

use crate::config::Role;
use crate::membership::{MembershipView, PeerState};
use crate::node::context::NodeContext;
use crate::pg::pooler::backends::format_lsn;
use crate::pg::supervisor::{DbReport, DbRole, DbState, DbStatus};

/// The db role's latest snapshot, if this node runs it.
pub fn running(ctx: &NodeContext) -> Option<Arc<DbStatus>> {
    ctx.roles.db.borrow().as_ref().map(|h| h.status())
}

/// `db` of `/api/v1/status`.
#[derive(Debug, Clone, Serialize)]
pub struct DbSection {
    /// This node's PostgreSQL; null on a node without the db role (or
    /// before the role has started).
    pub local: Option<DbStatus>,
    /// The db node running as primary (accepting writes), if one is.
    pub primary: Option<String>,
    /// The VRRP master: the node that makes the cluster's db decisions.
    /// Not necessarily a db node.
    pub vrrp_master: Option<String>,
    /// Every db node, by hostname.
    pub cluster: Vec<DbNodeRow>,
}

/// One db node as its heartbeat (or, for this node, the role) reports it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DbNodeRow {
    pub hostname: String,
    pub is_self: bool,
    /// Up in membership (this node always is).
    pub alive: bool,
    /// One word for the node's part: `primary`, `standby`, `fenced`,
    /// `down` (not alive, or its PostgreSQL failed or stopped), `unknown`
    /// (alive, no db report yet), or the state it is passing through
    /// (`preparing`, `waiting`, `cloning`, ...).
    pub status: &'static str,
    /// The db role's state; null before the node reported one.
    pub state: Option<DbState>,
    pub role: Option<DbRole>,
    pub timeline: Option<u32>,
    /// Written (primary) or replayed (standby) WAL position, as text
    /// ("0/3000060") and as a number.
    pub lsn: Option<String>,
    pub lsn_bytes: Option<u64>,
    /// Received and flushed WAL (a standby's; equal to `lsn` on a primary).
    pub receive_lsn: Option<String>,
    pub receive_lsn_bytes: Option<u64>,
    pub upstream: Option<String>,
    /// Bytes behind the running primary's LSN (0 for the primary itself);
    /// null without a running primary, or for a node that is not a
    /// running standby of the same database cluster.
    pub lag_bytes: Option<u64>,
}

/// `db` of `/api/v1/status`: null on a node that neither runs the db role
/// nor knows of any db node.
pub fn section(ctx: &NodeContext) -> Option<Value> {
    let config = ctx.running();
    let db_hosts: Vec<String> = config
        .config
        .nodes
        .iter()
        .filter(|n| n.roles.contains(&Role::Db))
        .map(|n| n.hostname.clone())
        .collect();
    let local = running(ctx);
    let self_master =
        super::vrrp::running(ctx).is_some_and(|v| v.state == crate::vrrp::machine::State::Master);
    let membership = ctx.membership.borrow().clone();
    let section = build(
        &ctx.identity.hostname,
        local.as_deref(),
        self_master,
        &membership,
        &db_hosts,
    )?;
    Some(to_json(&section))
}

pub fn to_json(s: &DbSection) -> Value {
    // Plain data only: serializing cannot fail, and the page must not go
    // blank if it somehow did.
    serde_json::to_value(s).unwrap_or(Value::Null)
}

/// The section from its parts: `me` and its status (when it runs the db
/// role), whether this node is the VRRP master, what the peers reported,
/// and the db nodes the cluster file names (listed even before they
/// speak). None when there is nothing to show.
pub fn build(
    me: &str,
    local: Option<&DbStatus>,
    self_vrrp_master: bool,
    membership: &MembershipView,
    db_hosts: &[String],
) -> Option<DbSection> {
    let mut rows: Vec<(DbNodeRow, Option<DbReport>)> = Vec::new();
    if local.is_some() || db_hosts.iter().any(|h| h == me) {
        let report = local.map(DbStatus::report);
        rows.push((row(me, true, true, report.as_ref()), report));
    }
    for m in &membership.members {
        if m.hostname == me {
            continue;
        }
        let report = m.report.as_ref().and_then(|r| r.db.clone());
        if report.is_none() && !db_hosts.contains(&m.hostname) {
            continue;
        }
        let alive = m.state == PeerState::Up;
        rows.push((row(&m.hostname, false, alive, report.as_ref()), report));
    }
    // A db node of the file that membership does not list yet.
    for host in db_hosts {
        if !rows.iter().any(|(r, _)| &r.hostname == host) {
            rows.push((row(host, false, false, None), None));
        }
    }
    if rows.is_empty() {
        return None;
    }
    rows.sort_by(|a, b| a.0.hostname.cmp(&b.0.hostname));

    let primary = rows
        .iter()
        .filter(|(r, _)| r.alive)
        .filter_map(|(r, rep)| rep.as_ref().map(|rep| (r, rep)))
        .filter(|(_, rep)| rep.is_running_primary())
        // Two running primaries should not happen (the quorum fence exists
        // so that it does not); if it does, the lag is measured against
        // the one furthest ahead.
        .max_by_key(|(_, rep)| (rep.timeline, rep.lsn))
        .map(|(r, rep)| (r.hostname.clone(), rep.clone()));
    let lag = |r: &DbNodeRow, rep: Option<&DbReport>| -> Option<u64> {
        let (host, p) = primary.as_ref()?;
        let rep = rep?;
        if *host == r.hostname {
            return Some(0);
        }
        let same_cluster = p.system_id == rep.system_id || p.system_id == 0 || rep.system_id == 0;
        (r.alive && rep.is_running_standby() && same_cluster).then(|| p.lsn.saturating_sub(rep.lsn))
    };
    for (r, rep) in &mut rows {
        r.lag_bytes = lag(r, rep.as_ref());
    }

    let vrrp_master = if self_vrrp_master {
        Some(me.to_owned())
    } else {
        membership
            .members
            .iter()
            .find(|m| m.state == PeerState::Up && m.report.as_ref().is_some_and(|r| r.vrrp_master))
            .map(|m| m.hostname.clone())
    };
    Some(DbSection {
        local: local.cloned(),
        primary: primary.map(|(h, _)| h),
        vrrp_master,
        cluster: rows.into_iter().map(|(r, _)| r).collect(),
    })
}

fn row(hostname: &str, is_self: bool, alive: bool, report: Option<&DbReport>) -> DbNodeRow {
    DbNodeRow {
        hostname: hostname.to_owned(),
        is_self,
        alive,
        status: status_word(alive, report),
        state: report.map(|r| r.state),
        role: report.and_then(|r| r.role),
        timeline: report.map(|r| r.timeline),
        lsn: report.map(|r| format_lsn(r.lsn)),
        lsn_bytes: report.map(|r| r.lsn),
        receive_lsn: report.map(|r| format_lsn(r.receive_lsn)),
        receive_lsn_bytes: report.map(|r| r.receive_lsn),
        upstream: report.and_then(|r| r.upstream.clone()),
        lag_bytes: None,
    }
}

/// What the page's badge and `piha status` say about a node.
fn status_word(alive: bool, report: Option<&DbReport>) -> &'static str {
    let Some(r) = report else {
        return if alive { "unknown" } else { "down" };
    };
    if !alive {
        return "down";
    }
    match r.state {
        DbState::Fenced => "fenced",
        DbState::Running => match r.role {
            Some(DbRole::Primary) => "primary",
            Some(DbRole::Standby) => "standby",
            None => "running",
        },
        DbState::Failed | DbState::Stopped => "down",
        other => other.name(),
    }
}

#[cfg(test)]
pub(super) mod tests {
    use std::collections::BTreeMap;
    use std::path::PathBuf;

    use serde_json::json;

    use super::*;
    use crate::membership::{MemberView, NodeReport};
    use crate::pg::supervisor::status::ReplicaView;

    /// A primary on timeline 2 with two standbys (one synchronous), a
    /// restart behind it: what the metrics test encodes.
    pub fn sample() -> DbStatus {
        let mut s = DbStatus::new(
            PathBuf::from("/var/lib/piha/pg"),
            "/usr/lib/postgresql/16/bin".into(),
            true,
        );
        s.state = DbState::Running;
        s.detail = "accepting connections".into();
        s.since_ms = 1_763_799_000_000;
        s.role = Some(DbRole::Primary);
        s.timeline = 2;
        s.lsn = 0x3_0000_0060;
        s.receive_lsn = 0x3_0000_0060;
        s.system_id = 7_301_234_567_890_123_456;
        s.pid = Some(4242);
        s.restarts = 1;
        s.quorum = true;
        s.replicas = vec![
            ReplicaView {
                name: "pi-2".into(),
                client_addr: Some("192.0.2.12".into()),
                state: "streaming".into(),
                sync_state: "sync".into(),
                replay_lsn: Some(0x3_0000_0060),
                lag_bytes: Some(0),
            },
            ReplicaView {
                name: "pi-3".into(),
                client_addr: Some("192.0.2.13".into()),
                state: "catchup".into(),
                sync_state: "async".into(),
                replay_lsn: None,
                lag_bytes: None,
            },
        ];
        s
    }

    fn standby(upstream: &str, lsn: u64) -> DbReport {
        DbReport {
            state: DbState::Running,
            role: Some(DbRole::Standby),
            timeline: 2,
            lsn,
            receive_lsn: lsn + 0x100,
            upstream: Some(upstream.into()),
            system_id: 7_301_234_567_890_123_456,
        }
    }

    fn member(host: &str, state: PeerState, db: Option<DbReport>, master: bool) -> MemberView {
        MemberView {
            hostname: host.into(),
            state,
            since_ms: 0,
            last_heard_ms: Some(0),
            gossip: None,
            report: Some(NodeReport {
                db,
                vrrp_master: master,
                ..NodeReport::default()
            }),
        }
    }

    fn view(members: Vec<MemberView>) -> MembershipView {
        MembershipView {
            members,
            received: 0,
            sent: 0,
            send_errors: 0,
            dropped: BTreeMap::new(),
        }
    }

    fn hosts(h: &[&str]) -> Vec<String> {
        h.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn the_cluster_rows_come_from_the_reports_with_lag_behind_the_primary() {
        let local = sample();
        let mut fenced = standby("pi-1", 0x2_ffff_0000);
        fenced.state = DbState::Fenced;
        fenced.upstream = None;
        let members = view(vec![
            member(
                "pi-2",
                PeerState::Up,
                Some(standby("pi-1", 0x3_0000_0000)),
                true,
            ),
            member("pi-3", PeerState::Up, Some(fenced), false),
            // Down: its last report is kept but not believed.
            member(
                "pi-4",
                PeerState::Down,
                Some(standby("pi-1", 0x1000)),
                false,
            ),
            // No db role and no report: not a db row.
            member("pi-5", PeerState::Up, None, false),
        ]);
        let s = build(
            "pi-1",
            Some(&local),
            false,
            &members,
            &hosts(&["pi-1", "pi-2", "pi-3", "pi-4", "pi-6"]),
        )
        .expect("a section");
        assert_eq!(s.primary.as_deref(), Some("pi-1"));
        assert_eq!(s.vrrp_master.as_deref(), Some("pi-2"), "from pi-2's report");
        let seen: Vec<(&str, &str, Option<u64>)> = s
            .cluster
            .iter()
            .map(|r| (r.hostname.as_str(), r.status, r.lag_bytes))
            .collect();
        assert_eq!(
            seen,
            vec![
                ("pi-1", "primary", Some(0)),
                ("pi-2", "standby", Some(0x60)),
                // A fenced standby is still a standby of that primary.
                ("pi-3", "fenced", Some(0x1_0060)),
                ("pi-4", "down", None),
                // Named in the file, never heard from.
                ("pi-6", "down", None),
            ]
        );
        assert!(s.cluster[0].is_self && s.cluster[0].alive);
        assert!(!s.cluster[3].alive && !s.cluster[4].alive);

        let doc = to_json(&s);
        let keys =
            |v: &Value| -> Vec<String> { v.as_object().expect("object").keys().cloned().collect() };
        let mut want = vec!["local", "primary", "vrrp_master", "cluster"];
        want.sort_unstable();
        assert_eq!(keys(&doc), want, "documented in docs/api.md");
        let mut row_keys = vec![
            "hostname",
            "is_self",
            "alive",
            "status",
            "state",
            "role",
            "timeline",
            "lsn",
            "lsn_bytes",
            "receive_lsn",
            "receive_lsn_bytes",
            "upstream",
            "lag_bytes",
        ];
        row_keys.sort_unstable();
        assert_eq!(
            keys(&doc["cluster"][0]),
            row_keys,
            "documented in docs/api.md"
        );
        assert_eq!(
            doc["cluster"][1],
            json!({
                "hostname": "pi-2", "is_self": false, "alive": true, "status": "standby",
                "state": "running", "role": "standby", "timeline": 2,
                "lsn": "3/0", "lsn_bytes": 0x3_0000_0000u64,
                "receive_lsn": "3/100", "receive_lsn_bytes": 0x3_0000_0100u64,
                "upstream": "pi-1", "lag_bytes": 0x60,
            })
        );
        assert_eq!(doc["cluster"][0]["lsn"], "3/60");
        assert_eq!(doc["cluster"][4]["state"], Value::Null);
        assert_eq!(doc["local"]["state"], "running");
        assert_eq!(doc["local"]["replicas"][0]["sync_state"], "sync");
        assert_eq!(doc["local"]["quorum"], true);
    }

    #[test]
    fn no_primary_no_lag_and_this_nodes_vrrp_state_wins() {
        // This node has no db role; a standby without a primary, a node of
        // another database cluster, one on its way (cloning).
        let mut other = standby("pi-9", 0x10);
        other.system_id = 1;
        let mut cloning = standby("pi-1", 0);
        cloning.state = DbState::Cloning;
        cloning.role = None;
        let members = view(vec![
            member(
                "pi-2",
                PeerState::Up,
                Some(standby("pi-1", 0x3_0000_0000)),
                true,
            ),
            member("pi-3", PeerState::Up, Some(cloning), false),
        ]);
        let s =
            build("pi-4", None, true, &members, &hosts(&["pi-2", "pi-3"])).expect("db nodes known");
        assert!(s.local.is_none() && s.primary.is_none());
        assert_eq!(
            s.vrrp_master.as_deref(),
            Some("pi-4"),
            "its own state first"
        );
        let seen: Vec<(&str, &str, Option<u64>)> = s
            .cluster
            .iter()
            .map(|r| (r.hostname.as_str(), r.status, r.lag_bytes))
            .collect();
        assert_eq!(
            seen,
            vec![("pi-2", "standby", None), ("pi-3", "cloning", None)]
        );

        // With a primary, only the same database cluster gets a lag.
        let mut primary = standby("", 0x500);
        primary.role = Some(DbRole::Primary);
        primary.upstream = None;
        let members = view(vec![
            member("pi-1", PeerState::Up, Some(primary), false),
            member("pi-2", PeerState::Up, Some(other), false),
        ]);
        let s = build("pi-4", None, false, &members, &[]).expect("reports");
        assert_eq!(s.primary.as_deref(), Some("pi-1"));
        assert_eq!(s.vrrp_master, None);
        assert_eq!(s.cluster[1].lag_bytes, None, "{:?}", s.cluster[1]);

        // Nothing db anywhere: no section.
        let members = view(vec![member("pi-2", PeerState::Up, None, true)]);
        assert!(build("pi-4", None, false, &members, &[]).is_none());
    }

    #[test]
    fn a_dead_or_alive_node_without_a_report_and_an_unfinished_start() {
        assert_eq!(status_word(false, None), "down");
        assert_eq!(status_word(true, None), "unknown");
        let mut r = standby("pi-1", 1);
        for (state, word) in [
            (DbState::Preparing, "preparing"),
            (DbState::Waiting, "waiting"),
            (DbState::Rewinding, "rewinding"),
            (DbState::Restarting, "restarting"),
            (DbState::Failed, "down"),
            (DbState::Stopped, "down"),
            (DbState::Fenced, "fenced"),
            (DbState::Running, "standby"),
        ] {
            r.state = state;
            assert_eq!(status_word(true, Some(&r)), word, "{state:?}");
            assert_eq!(status_word(false, Some(&r)), "down", "{state:?}");
        }
        r.role = None;
        assert_eq!(status_word(true, Some(&r)), "running");
    }

    /// What the role publishes is what the API and /metrics show; the
    /// cluster list is there before it (from the file) and after it stops.
    #[test]
    fn the_document_and_metrics_follow_what_the_role_publishes() {
        use crate::pg::supervisor::DbHandle;
        use tokio::sync::{mpsc, watch};

        let dir = tempfile::tempdir().expect("tempdir");
        let (ctx, _worker) = super::super::vrrp::tests::context(dir.path());
        let api = super::super::api::build;
        let render = || super::super::metrics::render(&ctx).expect("metrics");

        // pi-1 of the sample file: a db node whose role has not started.
        let doc = api(&ctx);
        let db = doc.db.as_ref().expect("db nodes in the file");
        assert_eq!(db["local"], Value::Null);
        let rows: Vec<(&str, &str)> = db["cluster"]
            .as_array()
            .expect("rows")
            .iter()
            .map(|r| {
                (
                    r["hostname"].as_str().unwrap_or("?"),
                    r["status"].as_str().unwrap_or("?"),
                )
            })
            .collect();
        assert_eq!(
            rows,
            vec![("pi-1", "unknown"), ("pi-2", "down"), ("pi-3", "down")]
        );
        assert!(!render().contains("piha_db_"));

        let (_status_tx, status_rx) = watch::channel(Arc::new(sample()));
        let (commands, _requests) = mpsc::channel(1);
        ctx.roles
            .db
            .send_replace(Some(Arc::new(DbHandle::new(status_rx, commands))));
        let doc = api(&ctx);
        let db = doc.db.as_ref().expect("db section");
        assert_eq!(db["local"]["state"], "running");
        assert_eq!(db["primary"], "pi-1");
        assert_eq!(db["cluster"][0]["status"], "primary");
        assert_eq!(db["cluster"][0]["lsn"], "3/60");
        // `piha status` reads the document back.
        let back: super::super::api::StatusDoc =
            serde_json::from_str(&serde_json::to_string(&doc).expect("json")).expect("read");
        assert_eq!(back.db.as_ref(), Some(db));
        let text = render();
        assert_eq!(
            super::super::metrics::find_value(&text, "piha_db_up"),
            Some(1.0),
            "{text}"
        );
        // Every family of the whole scrape, not only the db's, says what
        // it is.
        super::super::metrics::tests::every_family_has_help(&text, 2);

        ctx.roles.db.send_replace(None);
        assert_eq!(api(&ctx).db.expect("still db nodes")["local"], Value::Null);
        assert!(!render().contains("piha_db_"));
    }
}
