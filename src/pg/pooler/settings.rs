//! The pooler's view of the cluster file: secrets parsed, backends listed.
//! Built once per config snapshot; the pooler swaps it whole on reload.

use std::collections::HashMap;
use std::net::SocketAddr;

use crate::config::{ClusterConfig, PoolMode, PostgresSettings, Role};
use crate::pg::auth::{ScramKeys, Secret};

pub struct PoolerSettings {
    pub pg: PostgresSettings,
    pub users: HashMap<String, UserEntry>,
    /// The service login's keys, when the file gives them.
    pub service_keys: Option<ScramKeys>,
    pub service_user: String,
    pub service_database: String,
    /// Every PostgreSQL server: the db-role nodes first (in file order), then
    /// the static backends.
    pub backends: Vec<BackendAddr>,
}

pub struct UserEntry {
    pub secret: Secret,
    pub pool_mode: Option<PoolMode>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendAddr {
    /// The node's hostname, or the address for a static backend.
    pub name: String,
    pub addr: SocketAddr,
}

impl PoolerSettings {
    /// The config has been validated, so secrets parse; one that does not
    /// (it cannot happen) is left out rather than panicking.
    pub fn from_config(config: &ClusterConfig) -> PoolerSettings {
        let pg = config.postgres.clone();
        let users = pg
            .users
            .iter()
            .filter_map(|u| {
                let secret = Secret::parse(&u.secret).ok()?;
                Some((
                    u.name.clone(),
                    UserEntry {
                        secret,
                        pool_mode: u.pool_mode,
                    },
                ))
            })
            .collect();
        let service_keys = pg
            .service
            .as_ref()
            .and_then(|s| ScramKeys::parse(&s.keys).ok());
        let (service_user, service_database) = match &pg.service {
            Some(s) => (s.user.clone(), s.database.clone()),
            None => ("piha".to_string(), "postgres".to_string()),
        };
        let mut backends: Vec<BackendAddr> = config
            .nodes
            .iter()
            .filter(|n| n.roles.contains(&Role::Db))
            .map(|n| BackendAddr {
                name: n.hostname.clone(),
                addr: SocketAddr::new(n.address, pg.server_port),
            })
            .collect();
        for addr in &pg.backends {
            if !backends.iter().any(|b| b.addr == *addr) {
                backends.push(BackendAddr {
                    name: addr.to_string(),
                    addr: *addr,
                });
            }
        }
        PoolerSettings {
            pg,
            users,
            service_keys,
            service_user,
            service_database,
            backends,
        }
    }

    /// Pool mode for a database and user: the user's, else the database's,
    /// else the default.
    pub fn pool_mode(&self, database: &str, user: &str) -> PoolMode {
        self.users
            .get(user)
            .and_then(|u| u.pool_mode)
            .or_else(|| {
                self.pg
                    .databases
                    .iter()
                    .find(|d| d.name == database)
                    .and_then(|d| d.pool_mode)
            })
            .unwrap_or(self.pg.pool_mode)
    }

    pub fn pool_size(&self, database: &str) -> u32 {
        self.pg
            .databases
            .iter()
            .find(|d| d.name == database)
            .and_then(|d| d.pool_size)
            .unwrap_or(self.pg.pool_size)
    }
}
