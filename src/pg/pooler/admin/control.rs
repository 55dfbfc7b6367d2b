//! PAUSE, RESUME and RELOAD: the commands that change something, for the
//! service user only (the caller checks).

use std::time::Duration;

use bytes::BytesMut;
use tokio::sync::oneshot;

use crate::node::reload::{ReloadOutcome, ReloadRequest};
use crate::pg::pooler::client::login::ADMIN_DATABASE;
use crate::pg::pooler::shared::Pooler;
use crate::pg::wire::backend::{self, sqlstate};

/// How often PAUSE looks whether the last server connection came back.
const PAUSE_POLL: Duration = Duration::from_millis(20);
/// How long RELOAD waits for the node to answer.
const RELOAD_TIMEOUT: Duration = Duration::from_secs(10);

/// PAUSE [db]: no new server leases (they wait for RESUME, up to
/// `wait_timeout`); answers once no server connection is in use, as
/// PgBouncer does, but gives up after `wait_timeout` (staying paused).
pub async fn pause(pooler: &Pooler, database: Option<&str>, out: &mut BytesMut) {
    if database == Some(ADMIN_DATABASE) {
        backend::error(
            out,
            sqlstate::OBJECT_NOT_IN_PREREQUISITE_STATE,
            "cannot pause the admin console",
        );
        return;
    }
    if let Err(e) = pooler.pause(database) {
        backend::error(out, sqlstate::OBJECT_NOT_IN_PREREQUISITE_STATE, &e);
        return;
    }
    tracing::info!(database = database.unwrap_or("*"), "pooler PAUSE");
    let timeout = pooler.settings.load().pg.wait_timeout;
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let busy = pooler.busy_servers(database);
        if busy == 0 {
            backend::command_complete(out, "PAUSE");
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            let text = format!(
                "PAUSE: {busy} server connection(s) still in use after {}; \
                 new queries stay paused until RESUME",
                humantime::format_duration(timeout)
            );
            backend::error(out, sqlstate::QUERY_CANCELED, &text);
            return;
        }
        tokio::time::sleep(PAUSE_POLL).await;
    }
}

pub fn resume(pooler: &Pooler, database: Option<&str>, out: &mut BytesMut) {
    match pooler.resume(database) {
        Ok(()) => {
            tracing::info!(database = database.unwrap_or("*"), "pooler RESUME");
            backend::command_complete(out, "RESUME");
        }
        Err(e) => backend::error(out, sqlstate::OBJECT_NOT_IN_PREREQUISITE_STATE, &e),
    }
}

/// RELOAD: the node re-reads the cluster file (as on SIGHUP); the pooler
/// takes the new settings from it like any other reload.
pub async fn reload(pooler: &Pooler, out: &mut BytesMut) {
    let Some(node) = &pooler.reload else {
        backend::error(
            out,
            sqlstate::FEATURE_NOT_SUPPORTED,
            "this pooler runs outside a piha node: there is no cluster file to reload",
        );
        return;
    };
    let (reply, answer) = oneshot::channel();
    let asked = async {
        node.send(ReloadRequest { reply }).await.ok()?;
        answer.await.ok()
    };
    match tokio::time::timeout(RELOAD_TIMEOUT, asked).await {
        Ok(Some(ReloadOutcome::Applied {
            changes, to_hash, ..
        })) => {
            backend::notice_detail(
                out,
                &format!("reloaded the cluster file ({to_hash})"),
                &changes.join("\n"),
            );
            backend::command_complete(out, "RELOAD");
        }
        Ok(Some(ReloadOutcome::Unchanged { hash })) => {
            backend::notice(out, &format!("the cluster file is unchanged ({hash})"));
            backend::command_complete(out, "RELOAD");
        }
        Ok(Some(ReloadOutcome::Rejected { error })) => backend::error(
            out,
            sqlstate::CONFIG_FILE_ERROR,
            &format!("RELOAD failed, the node keeps its config: {error}"),
        ),
        Ok(None) | Err(_) => backend::error(
            out,
            sqlstate::CONFIG_FILE_ERROR,
            "RELOAD failed: the node did not answer",
        ),
    }
}
