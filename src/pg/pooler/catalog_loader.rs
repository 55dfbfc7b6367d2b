//! Reads function volatility from the primary's pg_proc, at start and then
//! periodically, as the service user. Until the first load every function
//! is unknown, and a statement calling an unknown function goes to the
//! primary: slower, never wrong.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::route::{CATALOG_QUERY, FunctionCache};
use super::server::{ConnectParams, Credentials, connect};
use super::shared::Pooler;

pub async fn run(pooler: Arc<Pooler>, every: Duration, stop: CancellationToken) {
    // The prober needs a round to find the primary.
    let mut wait = Duration::from_secs(1);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        wait = match load(&pooler).await {
            Ok(catalog) => {
                pooler.set_catalog(catalog);
                every
            }
            Err(e) => {
                tracing::debug!(error = %e, "function catalog not loaded");
                Duration::from_secs(2)
            }
        };
    }
}

async fn load(pooler: &Pooler) -> Result<FunctionCache, String> {
    let settings = pooler.settings.load();
    let primary = pooler.router().primary().cloned().ok_or("no primary yet")?;
    let mut conn = connect(ConnectParams {
        addr: primary.addr,
        user: &settings.service_user,
        database: &settings.service_database,
        startup: &[("application_name".to_string(), "piha-catalog".to_string())],
        credentials: &Credentials {
            scram: settings.service_keys.clone(),
            md5: None,
        },
        timeout: settings.pg.login_timeout,
        tls: pooler.server_tls.as_ref(),
    })
    .await
    .map_err(|e| e.to_string())?;
    let rows = conn
        .simple_query(CATALOG_QUERY, Duration::from_secs(10))
        .await
        .map_err(|e| e.to_string());
    conn.terminate().await;
    let mut cache = FunctionCache::empty();
    for row in rows? {
        if let (Some(Some(schema)), Some(Some(name)), Some(Some(v))) =
            (row.first(), row.get(1), row.get(2))
        {
            cache.insert(schema, name, v.chars().next().unwrap_or('v'));
        }
    }
    Ok(cache)
}
