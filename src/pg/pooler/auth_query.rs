//! auth_query: a user not in the cluster file is looked up on the primary
//! (on a standby while the primary cannot be reached), as the service user,
//! so passwords changed with ALTER ROLE work at once and no secret has to
//! be copied into the file.
//!
//! The query is the operator's (configured); piha substitutes `$1` with the
//! user name as a quoted literal. The documented default is schema-qualified
//! (pg_catalog.pg_authid) and honours VALID UNTIL, the two faults of
//! PgBouncer's CVE-2025-12819 and CVE-2025-2291.

use super::client::params::quote_literal;
use super::error::PoolError;
use super::server::{ConnectParams, Credentials, connect};
use super::shared::Pooler;
use crate::pg::auth::Secret;

/// What the README suggests for `auth_query`.
pub const SUGGESTED: &str = "SELECT rolname, CASE WHEN rolvaliduntil < pg_catalog.now() \
     THEN NULL ELSE rolpassword END FROM pg_catalog.pg_authid \
     WHERE rolname = $1 AND rolcanlogin";

/// The secret in the last column of the first row, if any. The primary is
/// asked first; while it cannot be reached (it died and the prober has not
/// noticed, or a failover is under way) a standby answers from its replayed
/// copy of `pg_authid`, so users of auth_query can still log in.
pub async fn lookup(pooler: &Pooler, query: &str, user: &str) -> Option<Secret> {
    let candidates = pooler.answering_once_probed().await;
    if candidates.is_empty() {
        tracing::warn!("auth_query: no PostgreSQL server is available");
    }
    for (i, backend) in candidates.iter().enumerate() {
        let last = i + 1 == candidates.len();
        let timeout = pooler.attempt_timeout(last);
        match lookup_on(pooler, backend.addr, query, user, timeout).await {
            Ok(secret) => return secret,
            Err(e) if e.server_unavailable() && !last => {
                tracing::warn!(server = %backend.name, error = %e, "auth_query: trying the next server");
            }
            Err(e) => {
                tracing::warn!(server = %backend.name, error = %e, "auth_query failed");
                return None;
            }
        }
    }
    None
}

/// Runs the query on one server, as the service user.
async fn lookup_on(
    pooler: &Pooler,
    addr: std::net::SocketAddr,
    query: &str,
    user: &str,
    timeout: std::time::Duration,
) -> Result<Option<Secret>, PoolError> {
    let settings = pooler.settings.load();
    let credentials = Credentials {
        scram: settings.service_keys.clone(),
        md5: None,
    };
    let mut conn = connect(ConnectParams {
        addr,
        user: &settings.service_user,
        database: &settings.service_database,
        startup: &[("application_name".to_string(), "piha-auth".to_string())],
        credentials: &credentials,
        timeout,
        tls: pooler.server_tls.as_ref(),
        tcp_user_timeout: settings.pg.tcp_user_timeout,
    })
    .await?;
    let sql = query.replace("$1", &quote_literal(user));
    let rows = conn.simple_query(&sql, timeout).await;
    conn.terminate().await;
    let secret = rows?
        .first()
        .and_then(|row| row.last())
        .and_then(|cell| cell.as_deref())
        .and_then(|text| Secret::parse(text).ok());
    Ok(secret)
}
