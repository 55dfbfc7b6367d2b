//! What the db role shows of itself. Two views of one state:
//! - [`DbStatus`], the full local picture (status page, JSON API, metrics);
//! - [`DbReport`], the few fields every peer needs, sent in each heartbeat:
//!   who is primary on which timeline (a returning node must know before it
//!   starts PostgreSQL) and how far each standby has received (the failover
//!   decider promotes the one furthest ahead).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// What PostgreSQL is doing on this node, from the db role's side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DbState {
    /// Looking at the data directory and at the cluster before starting.
    Preparing,
    /// Waiting for something outside this node (a primary to clone or
    /// follow, a majority of the cluster); `detail` says what.
    Waiting,
    /// initdb (the initial primary's first boot).
    Initializing,
    /// pg_basebackup from the primary.
    Cloning,
    /// pg_rewind onto the current primary's timeline.
    Rewinding,
    /// The postmaster is up but not yet accepting connections (crash
    /// recovery, or a standby catching up to consistency).
    Starting,
    Running,
    /// Running read-only with no upstream, because this node was primary
    /// and lost the majority of the cluster (or an operator fenced it).
    Fenced,
    /// The postmaster died; it is restarted after a backoff.
    Restarting,
    /// Something this role cannot fix by itself (a foreign data directory,
    /// a missing program); `detail` says what to do.
    Failed,
    Stopped,
}

impl DbState {
    pub fn name(self) -> &'static str {
        match self {
            DbState::Preparing => "preparing",
            DbState::Waiting => "waiting",
            DbState::Initializing => "initializing",
            DbState::Cloning => "cloning",
            DbState::Rewinding => "rewinding",
            DbState::Starting => "starting",
            DbState::Running => "running",
            DbState::Fenced => "fenced",
            DbState::Restarting => "restarting",
            DbState::Failed => "failed",
            DbState::Stopped => "stopped",
        }
    }

    /// Every state, for metrics that export one series per state.
    pub const ALL: [DbState; 11] = [
        DbState::Preparing,
        DbState::Waiting,
        DbState::Initializing,
        DbState::Cloning,
        DbState::Rewinding,
        DbState::Starting,
        DbState::Running,
        DbState::Fenced,
        DbState::Restarting,
        DbState::Failed,
        DbState::Stopped,
    ];
}

/// Primary or standby, as PostgreSQL itself says (`pg_is_in_recovery()`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DbRole {
    Primary,
    Standby,
}

impl DbRole {
    pub fn name(self) -> &'static str {
        match self {
            DbRole::Primary => "primary",
            DbRole::Standby => "standby",
        }
    }
}

/// The heartbeat's db section. Small and bounded: it rides in every
/// heartbeat datagram.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DbReport {
    pub state: DbState,
    /// From the running server; `None` while it is not accepting queries.
    pub role: Option<DbRole>,
    /// The timeline the server is on (from pg_controldata while stopped).
    pub timeline: u32,
    /// WAL position: written on a primary, replayed on a standby (from
    /// pg_controldata's last checkpoint while stopped).
    pub lsn: u64,
    /// A standby's WAL received and flushed to its disk: what it would have
    /// after a promotion. Equal to `lsn` on a primary.
    pub receive_lsn: u64,
    /// The node a standby streams from.
    pub upstream: Option<String>,
    /// pg_controldata's "Database system identifier": two data directories
    /// with different ones are different clusters and never follow each
    /// other. 0 while there is no data directory.
    pub system_id: u64,
}

impl DbReport {
    /// A server that accepts writes right now.
    pub fn is_running_primary(&self) -> bool {
        self.state == DbState::Running && self.role == Some(DbRole::Primary)
    }

    pub fn is_running_standby(&self) -> bool {
        matches!(self.state, DbState::Running | DbState::Fenced)
            && self.role == Some(DbRole::Standby)
    }

    /// Bounds a peer's report must respect before it is believed.
    pub fn within_bounds(&self) -> bool {
        self.upstream
            .as_deref()
            .is_none_or(crate::membership::message::is_hostname)
    }
}

/// One standby as the primary sees it (`pg_stat_replication`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReplicaView {
    /// The standby's application_name: its hostname.
    pub name: String,
    pub client_addr: Option<String>,
    /// streaming, catchup, backup, ...
    pub state: String,
    /// async, sync, quorum, potential.
    pub sync_state: String,
    pub replay_lsn: Option<u64>,
    /// Bytes between the primary's current WAL position and its replay.
    pub lag_bytes: Option<u64>,
}

/// A completed base backup, as found in the backup folder.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BackupView {
    pub name: String,
    pub path: PathBuf,
    pub taken_at_ms: i64,
    pub bytes: u64,
    pub node: String,
}

/// The full local picture.
#[derive(Debug, Clone, Serialize)]
pub struct DbStatus {
    pub state: DbState,
    /// What the state is waiting for, or the last failure.
    pub detail: String,
    pub since_ms: i64,
    pub role: Option<DbRole>,
    pub timeline: u32,
    pub lsn: u64,
    pub receive_lsn: u64,
    /// Standby: bytes received but not yet replayed.
    pub replay_lag_bytes: Option<u64>,
    /// Standby: seconds since the last replayed transaction committed on
    /// the primary (grows while the primary is idle, too).
    pub replay_delay_s: Option<f64>,
    pub upstream: Option<String>,
    pub system_id: u64,
    pub data_dir: PathBuf,
    pub server: String,
    pub pid: Option<u32>,
    /// Postmaster restarts since the node started.
    pub restarts: u32,
    pub synchronous: bool,
    /// Primary: its standbys.
    pub replicas: Vec<ReplicaView>,
    pub last_backup: Option<BackupView>,
    /// Whether this node sees a majority of the cluster's voters (the db and
    /// balancer nodes); a primary without it fences itself.
    pub quorum: bool,
}

impl DbStatus {
    pub fn new(data_dir: PathBuf, server: String, synchronous: bool) -> DbStatus {
        DbStatus {
            state: DbState::Preparing,
            detail: String::new(),
            since_ms: crate::node::events::now_ms(),
            role: None,
            timeline: 0,
            lsn: 0,
            receive_lsn: 0,
            replay_lag_bytes: None,
            replay_delay_s: None,
            upstream: None,
            system_id: 0,
            data_dir,
            server,
            pid: None,
            restarts: 0,
            synchronous,
            replicas: Vec::new(),
            last_backup: None,
            quorum: false,
        }
    }

    pub fn report(&self) -> DbReport {
        DbReport {
            state: self.state,
            role: self.role,
            timeline: self.timeline,
            lsn: self.lsn,
            receive_lsn: self.receive_lsn,
            upstream: self.upstream.clone(),
            system_id: self.system_id,
        }
    }
}
