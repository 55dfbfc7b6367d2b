//! auth_query: a user not in the cluster file is looked up on the primary,
//! as the service user, so passwords changed with ALTER ROLE work at once
//! and no secret has to be copied into the file.
//!
//! The query is the operator's (configured); piha substitutes `$1` with the
//! user name as a quoted literal. The documented default is schema-qualified
//! (pg_catalog.pg_authid) and honours VALID UNTIL, the two faults of
//! PgBouncer's CVE-2025-12819 and CVE-2025-2291.

use super::client::params::quote_literal;
use super::server::{ConnectParams, Credentials, connect};
use super::shared::Pooler;
use crate::pg::auth::Secret;

/// What the README suggests for `auth_query`.
pub const SUGGESTED: &str = "SELECT rolname, CASE WHEN rolvaliduntil < pg_catalog.now() \
     THEN NULL ELSE rolpassword END FROM pg_catalog.pg_authid \
     WHERE rolname = $1 AND rolcanlogin";

/// The secret in the last column of the first row, if any.
pub async fn lookup(pooler: &Pooler, query: &str, user: &str) -> Option<Secret> {
    let settings = pooler.settings.load();
    let primary = pooler.router().primary()?.clone();
    let credentials = Credentials {
        scram: settings.service_keys.clone(),
        md5: None,
    };
    let mut conn = match connect(ConnectParams {
        addr: primary.addr,
        user: &settings.service_user,
        database: &settings.service_database,
        startup: &[("application_name".to_string(), "piha-auth".to_string())],
        credentials: &credentials,
        timeout: settings.pg.login_timeout,
        tls: pooler.server_tls.as_ref(),
    })
    .await
    {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "auth_query: cannot reach the primary");
            return None;
        }
    };
    let sql = query.replace("$1", &quote_literal(user));
    let rows = conn.simple_query(&sql, settings.pg.login_timeout).await;
    conn.terminate().await;
    let rows = match rows {
        Ok(rows) => rows,
        Err(e) => {
            tracing::warn!(error = %e, "auth_query failed");
            return None;
        }
    };
    let text = rows.first()?.last()?.as_deref()?;
    Secret::parse(text).ok()
}
