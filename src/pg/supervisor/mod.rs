//! The db role: the local PostgreSQL from first boot to failover and back.
//! Start with `LIFECYCLE.md` beside this file.
//!
//! - `settings`: what the role needs from the cluster file, computed once.
//! - `inspect`: what is in the data directory (pg_controldata).
//! - `plan`: how to start, from the disk and the cluster's reports (sans-IO).
//! - `fence`: when a primary must stop taking writes (sans-IO).
//! - `conf`: the files piha owns in the data directory.
//! - `command`, `postmaster`, `control`: the PostgreSQL programs, the server
//!   process, and SQL on the private socket.
//! - `node`: the shell that runs all of it (the service of the db role).
//! - `status`: what the role shows, locally and in heartbeats.
//! - `backup`, `restore`: scheduled base backups, and `piha db-restore`.

pub mod backup;
pub mod command;
pub mod conf;
pub mod control;
pub mod error;
pub mod fence;
pub mod inspect;
pub mod node;
pub mod os_user;
pub mod plan;
pub mod postmaster;
pub mod restore;
pub mod settings;
pub mod status;

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{mpsc, oneshot, watch};

pub use status::{DbReport, DbRole, DbState, DbStatus};

/// What the admin API (and through it the failover decider) asks of the
/// local db role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Make this standby the primary.
    Promote,
    /// Stream from `primary` (a hostname), rewinding first if this node's
    /// history forked from it.
    Follow { primary: String },
    /// Stop taking writes now: immediate stop, restart read-only with no
    /// upstream. What a primary that lost the cluster does to itself.
    Fence,
    /// A switchover's first step: a clean (fast) shutdown, so every
    /// committed transaction reaches the standbys, then restart read-only.
    /// Answers with the LSN a standby must have replayed past.
    Demote,
}

impl Request {
    pub fn name(&self) -> &'static str {
        match self {
            Request::Promote => "promote",
            Request::Follow { .. } => "follow",
            Request::Fence => "fence",
            Request::Demote => "demote",
        }
    }
}

/// What a request did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Outcome {
    pub message: String,
    /// Demote: the last LSN the old primary wrote.
    pub lsn: Option<String>,
    pub timeline: Option<u32>,
}

pub type Reply = Result<Outcome, String>;

pub struct Command {
    pub request: Request,
    pub reply: oneshot::Sender<Reply>,
}

/// The running db role, as the rest of the node sees it.
pub struct DbHandle {
    status: watch::Receiver<Arc<DbStatus>>,
    commands: mpsc::Sender<Command>,
    /// `None` when the role cannot run at all (its settings are wrong).
    backups: Option<Arc<backup::Backups>>,
}

impl DbHandle {
    pub fn new(status: watch::Receiver<Arc<DbStatus>>, commands: mpsc::Sender<Command>) -> Self {
        DbHandle {
            status,
            commands,
            backups: None,
        }
    }

    pub fn with_backups(mut self, backups: Option<Arc<backup::Backups>>) -> Self {
        self.backups = backups;
        self
    }

    pub fn backups(&self) -> Option<&Arc<backup::Backups>> {
        self.backups.as_ref()
    }

    pub fn status(&self) -> Arc<DbStatus> {
        self.status.borrow().clone()
    }

    /// Sends `request` and waits for its outcome, at most `limit`.
    pub async fn ask(&self, request: Request, limit: Duration) -> Reply {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command { request, reply })
            .await
            .map_err(|_| "the db role is stopping".to_string())?;
        match tokio::time::timeout(limit, answer).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err("the db role dropped the request (it is restarting)".into()),
            Err(_) => Err(format!("no answer within {} s", limit.as_secs())),
        }
    }
}
