//! Cluster decisions about PostgreSQL, made by the VRRP master only:
//! automatic failover when the primary dies (`decider`, sans-IO) and the
//! planned switchover an operator asks for (`switchover`). `service` is
//! the balancer-role service that runs both; `peer` calls the db nodes'
//! admin APIs.

pub mod cli;
pub mod decider;
pub mod service;
pub mod switchover;

use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

/// A switchover request and where its answer goes.
pub struct SwitchoverRequest {
    pub to: String,
    pub reply: oneshot::Sender<Result<switchover::Report, String>>,
}

/// The running failover service, as the admin API sees it.
pub struct FailoverHandle {
    requests: mpsc::Sender<SwitchoverRequest>,
}

impl FailoverHandle {
    pub fn new(requests: mpsc::Sender<SwitchoverRequest>) -> FailoverHandle {
        FailoverHandle { requests }
    }

    pub async fn switchover(
        &self,
        to: String,
        limit: Duration,
    ) -> Result<switchover::Report, String> {
        let (reply, answer) = oneshot::channel();
        self.requests
            .send(SwitchoverRequest { to, reply })
            .await
            .map_err(|_| "the failover service is stopping".to_string())?;
        match tokio::time::timeout(limit, answer).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err("the switchover was abandoned (the service restarted)".into()),
            Err(_) => Err(format!("no answer within {} s", limit.as_secs())),
        }
    }
}
