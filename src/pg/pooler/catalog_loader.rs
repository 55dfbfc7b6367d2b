//! Reads function volatility from the primary's pg_proc, as the service
//! user, for every database clients use: functions (and extensions) belong
//! to one database, so each gets its own catalog, loaded soon after its
//! first client and then periodically. Until its first load every function
//! outside the built-in list is unknown in that database, and a statement
//! calling an unknown function goes to the primary: slower, never wrong.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::route::{CATALOG_QUERY, FunctionCache};
use super::server::{ConnectParams, Credentials, connect};
use super::shared::Pooler;

/// How often new databases (pools) are looked for.
const TICK: Duration = Duration::from_secs(1);
/// The next try after a failed load (no primary yet, a database that does
/// not exist or that the service user may not connect to).
const RETRY: Duration = Duration::from_secs(10);

pub async fn run(pooler: Arc<Pooler>, every: Duration, stop: CancellationToken) {
    let mut due: HashMap<String, Instant> = HashMap::new();
    loop {
        // The first tick also gives the prober a round to find the primary.
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(TICK) => {}
        }
        let mut databases: Vec<String> = pooler
            .pools
            .all()
            .iter()
            .map(|p| p.database.clone())
            .collect();
        databases.dedup();
        for database in databases {
            if due.get(&database).is_some_and(|at| Instant::now() < *at) {
                continue;
            }
            let next = match load(&pooler, &database).await {
                Ok(catalog) => {
                    pooler.set_catalog(&database, catalog);
                    every
                }
                Err(e) => {
                    tracing::debug!(%database, error = %e, "function catalog not loaded");
                    RETRY
                }
            };
            due.insert(database, Instant::now() + next);
        }
    }
}

async fn load(pooler: &Pooler, database: &str) -> Result<FunctionCache, String> {
    let settings = pooler.settings.load();
    let primary = pooler.router().primary().cloned().ok_or("no primary yet")?;
    let mut conn = connect(ConnectParams {
        addr: primary.addr,
        user: &settings.service_user,
        database,
        startup: &[("application_name".to_string(), "piha-catalog".to_string())],
        credentials: &Credentials {
            scram: settings.service_keys.clone(),
            md5: None,
        },
        timeout: settings.pg.login_timeout,
        tls: pooler.server_tls.as_ref(),
        tcp_user_timeout: settings.pg.tcp_user_timeout,
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
