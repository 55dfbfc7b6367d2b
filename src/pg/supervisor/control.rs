//! Talking to the local server as its superuser over the private unix
//! socket (tokio-postgres): the status poll, promotion, and the roles,
//! databases and replication slots the primary keeps in place. Every call
//! has a deadline; a server that does not answer is treated as not running.

use std::time::Duration;

use tokio_postgres::{Client, NoTls};

use super::error::DbError;
use super::settings::{DbPlan, slot_name};
use super::status::{DbRole, ReplicaView};
use crate::pg::auth::ScramKeys;
use crate::pg::auth::secret::DEFAULT_ITERATIONS;
use crate::pg::pooler::backends::parse_lsn;

/// initdb's bootstrap superuser; clones inherit it.
pub const SUPERUSER: &str = "postgres";
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Longer than any of our queries should take; promotion has its own wait.
const QUERY_TIMEOUT: Duration = Duration::from_secs(10);

/// One connection to the local server.
pub struct Local {
    client: Client,
    /// Ends with the connection; aborted when `Local` is dropped.
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Local {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What one status query says.
#[derive(Debug, Clone, PartialEq)]
pub struct Polled {
    pub role: DbRole,
    pub timeline: u32,
    pub lsn: u64,
    pub receive_lsn: u64,
    pub replay_delay_s: Option<f64>,
    pub system_id: u64,
}

const STATUS_SQL: &str = "SELECT pg_catalog.pg_is_in_recovery(), \
    (CASE WHEN pg_catalog.pg_is_in_recovery() THEN pg_catalog.pg_last_wal_replay_lsn() \
          ELSE pg_catalog.pg_current_wal_lsn() END)::text, \
    (CASE WHEN pg_catalog.pg_is_in_recovery() THEN pg_catalog.pg_last_wal_receive_lsn() \
          ELSE pg_catalog.pg_current_wal_lsn() END)::text, \
    (CASE WHEN pg_catalog.pg_is_in_recovery() \
          THEN GREATEST((SELECT timeline_id FROM pg_catalog.pg_control_checkpoint()), \
                        (SELECT received_tli FROM pg_catalog.pg_stat_wal_receiver)) \
          ELSE ('x' || substr(pg_catalog.pg_walfile_name(pg_catalog.pg_current_wal_lsn()), 1, 8))::bit(32)::int \
     END), \
    EXTRACT(epoch FROM now() - pg_catalog.pg_last_xact_replay_timestamp())::float8, \
    (SELECT system_identifier FROM pg_catalog.pg_control_system())::text";

impl Local {
    pub async fn connect(plan: &DbPlan) -> Result<Local, DbError> {
        let mut config = tokio_postgres::Config::new();
        config
            .host_path(&plan.run)
            .port(plan.listen.port())
            .user(SUPERUSER)
            .dbname("postgres")
            .application_name("piha-db")
            // Our own writes (roles, slots) must not wait for a
            // synchronous standby: at bootstrap none exists yet, and the
            // standbys need those very roles to connect.
            .options("-c synchronous_commit=local")
            .connect_timeout(CONNECT_TIMEOUT);
        let (client, connection) = tokio::time::timeout(CONNECT_TIMEOUT, config.connect(NoTls))
            .await
            .map_err(|_| DbError::Sql("connect timed out".into()))??;
        let task = tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(Local { client, task })
    }

    pub fn is_closed(&self) -> bool {
        self.client.is_closed()
    }

    pub async fn poll(&self) -> Result<Polled, DbError> {
        let row = bounded(self.client.query_one(STATUS_SQL, &[])).await?;
        let in_recovery: bool = row.try_get(0)?;
        let lsn = |i: usize| -> Result<u64, DbError> {
            let text: Option<String> = row.try_get(i)?;
            Ok(text.as_deref().and_then(parse_lsn).unwrap_or(0))
        };
        let timeline: Option<i32> = row.try_get(3)?;
        let system_id: String = row.try_get(5)?;
        Ok(Polled {
            role: if in_recovery {
                DbRole::Standby
            } else {
                DbRole::Primary
            },
            lsn: lsn(1)?,
            receive_lsn: lsn(2)?,
            timeline: timeline.and_then(|t| u32::try_from(t).ok()).unwrap_or(0),
            replay_delay_s: row.try_get(4)?,
            system_id: system_id.parse().unwrap_or(0),
        })
    }

    pub async fn replicas(&self) -> Result<Vec<ReplicaView>, DbError> {
        let rows = bounded(self.client.query(
            "SELECT application_name, client_addr::text, state, sync_state, replay_lsn::text, \
                    pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_current_wal_lsn(), replay_lsn)::float8 \
             FROM pg_catalog.pg_stat_replication ORDER BY application_name",
            &[],
        ))
        .await?;
        rows.iter()
            .map(|r| {
                let replay: Option<String> = r.try_get(4)?;
                let lag: Option<f64> = r.try_get(5)?;
                Ok(ReplicaView {
                    name: r.try_get::<_, Option<String>>(0)?.unwrap_or_default(),
                    client_addr: r.try_get(1)?,
                    state: r.try_get::<_, Option<String>>(2)?.unwrap_or_default(),
                    sync_state: r.try_get::<_, Option<String>>(3)?.unwrap_or_default(),
                    replay_lsn: replay.as_deref().and_then(parse_lsn),
                    lag_bytes: lag.map(|l| l.max(0.0) as u64),
                })
            })
            .collect()
    }

    /// `pg_promote(wait => true)`: returns once the server accepts writes.
    pub async fn promote(&self) -> Result<(), DbError> {
        let row = tokio::time::timeout(
            Duration::from_secs(70),
            self.client
                .query_one("SELECT pg_catalog.pg_promote(true, 60)", &[]),
        )
        .await
        .map_err(|_| DbError::Sql("pg_promote did not return".into()))??;
        let done: bool = row.try_get(0)?;
        if done {
            Ok(())
        } else {
            Err(DbError::Sql(
                "the promotion did not finish within 60 s".into(),
            ))
        }
    }

    pub async fn reload(&self) -> Result<(), DbError> {
        bounded(
            self.client
                .query_one("SELECT pg_catalog.pg_reload_conf()", &[]),
        )
        .await?;
        Ok(())
    }

    pub async fn checkpoint(&self) -> Result<(), DbError> {
        tokio::time::timeout(
            Duration::from_secs(120),
            self.client.batch_execute("CHECKPOINT"),
        )
        .await
        .map_err(|_| DbError::Sql("CHECKPOINT did not finish".into()))??;
        Ok(())
    }

    /// On the primary: the replication role (with the rights pg_rewind
    /// needs), the pooler's service login, the cluster file's users and
    /// databases, and a slot per other db node. Idempotent: run at every
    /// start as primary and after every promotion.
    pub async fn ensure_cluster_objects(&self, plan: &DbPlan) -> Result<Vec<String>, DbError> {
        let mut done = Vec::new();
        let repl = &plan.replication_user;
        let verifier = ScramKeys::derive(&plan.replication_password, &salt(), DEFAULT_ITERATIONS)
            .verifier()
            .to_text();
        if self
            .ensure_role(repl, "LOGIN REPLICATION", &verifier)
            .await?
        {
            done.push(format!("created role {repl}"));
        }
        for f in [
            "pg_catalog.pg_ls_dir(text, boolean, boolean)",
            "pg_catalog.pg_stat_file(text, boolean)",
            "pg_catalog.pg_read_binary_file(text)",
            "pg_catalog.pg_read_binary_file(text, bigint, bigint, boolean)",
        ] {
            self.exec(&format!("GRANT EXECUTE ON FUNCTION {f} TO {}", ident(repl)))
                .await?;
        }
        if let Some(service) = &plan.service {
            let keys = ScramKeys::parse(&service.keys).map_err(DbError::Config)?;
            let attrs = if plan.auth_query {
                // auth_query reads pg_authid, which only a superuser may.
                "LOGIN SUPERUSER"
            } else {
                "LOGIN"
            };
            if self
                .ensure_role(&service.user, attrs, &keys.verifier().to_text())
                .await?
            {
                done.push(format!("created role {}", service.user));
            }
            self.exec(&format!("GRANT pg_monitor TO {}", ident(&service.user)))
                .await?;
        }
        for user in &plan.users {
            if self.ensure_role(&user.name, "LOGIN", &user.secret).await? {
                done.push(format!("created role {}", user.name));
            }
        }
        for db in &plan.databases {
            if self.ensure_database(&db.name, &plan.users).await? {
                done.push(format!("created database {}", db.name));
            }
        }
        for peer in &plan.peers {
            let slot = slot_name(&peer.hostname);
            let created = bounded(self.client.query_opt(
                "SELECT pg_catalog.pg_create_physical_replication_slot($1, true) \
                 WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_replication_slots WHERE slot_name = $1)",
                &[&slot],
            ))
            .await?;
            if created.is_some() {
                done.push(format!("created replication slot {slot}"));
            }
        }
        Ok(done)
    }

    /// Creates the role if missing, and sets its attributes and secret
    /// either way (the cluster file is the truth). True when created.
    async fn ensure_role(&self, name: &str, attrs: &str, secret: &str) -> Result<bool, DbError> {
        let exists = bounded(self.client.query_opt(
            "SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = $1",
            &[&name],
        ))
        .await?
        .is_some();
        let verb = if exists { "ALTER" } else { "CREATE" };
        // The secret is a verifier or md5 hash, never a password: logging
        // the statement (log_statement) reveals nothing that logs in.
        self.exec(&format!(
            "{verb} ROLE {} WITH {attrs} PASSWORD {}",
            ident(name),
            literal(secret)
        ))
        .await?;
        Ok(!exists)
    }

    async fn ensure_database(
        &self,
        name: &str,
        users: &[crate::config::PgUser],
    ) -> Result<bool, DbError> {
        let exists = bounded(self.client.query_opt(
            "SELECT 1 FROM pg_catalog.pg_database WHERE datname = $1",
            &[&name],
        ))
        .await?
        .is_some();
        if exists {
            return Ok(false);
        }
        // Owned by the user of the same name if there is one: the usual
        // "database app for user app" layout.
        let owner = users
            .iter()
            .find(|u| u.name == name)
            .map(|u| format!(" OWNER {}", ident(&u.name)))
            .unwrap_or_default();
        self.exec(&format!("CREATE DATABASE {}{owner}", ident(name)))
            .await?;
        Ok(true)
    }

    async fn exec(&self, sql: &str) -> Result<(), DbError> {
        bounded(self.client.batch_execute(sql)).await
    }
}

async fn bounded<T>(
    f: impl std::future::Future<Output = Result<T, tokio_postgres::Error>>,
) -> Result<T, DbError> {
    tokio::time::timeout(QUERY_TIMEOUT, f)
        .await
        .map_err(|_| DbError::Sql(format!("no answer within {} s", QUERY_TIMEOUT.as_secs())))?
        .map_err(DbError::from)
}

fn salt() -> [u8; 16] {
    use rand::RngCore;
    let mut s = [0u8; 16];
    rand::rng().fill_bytes(&mut s);
    s
}

/// A quoted SQL identifier.
pub fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A quoted SQL string literal (standard_conforming_strings is on).
pub fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_and_literals_are_quoted() {
        assert_eq!(ident("app"), "\"app\"");
        assert_eq!(ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(literal("it's"), "'it''s'");
    }
}
