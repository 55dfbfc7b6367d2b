//! Everything the db role needs to know, computed once per config from the
//! cluster file and the node's identity: where things live, who the peers
//! are, which roles to create. The rest of the module reads only this.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use hmac::{Hmac, Mac};
use ipnet::IpNet;
use sha2::Sha256;

use super::error::DbError;
use crate::config::{ClusterConfig, DbBackup, PgDatabase, PgUser, Role, ServiceLogin};
use crate::node::context::{Identity, Running};

/// Another db node: a replication source or a standby to make a slot for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbPeer {
    pub hostname: String,
    /// Where its PostgreSQL listens.
    pub addr: SocketAddr,
}

/// The OS account PostgreSQL runs as (when piha runs as root).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OsUser {
    pub uid: u32,
    pub gid: u32,
}

#[derive(Debug, Clone)]
pub struct DbPlan {
    pub hostname: String,
    /// Where this node's PostgreSQL listens (the node address).
    pub listen: SocketAddr,
    pub bindir: PathBuf,
    /// The data directory.
    pub data: PathBuf,
    /// Private to PostgreSQL's OS user: the unix socket (trusted, so the
    /// folder's mode is the only lock), the password file, startup output.
    pub run: PathBuf,
    pub os_user: Option<OsUser>,
    pub initial_primary: bool,
    pub replication_user: String,
    pub replication_password: String,
    pub synchronous: bool,
    /// Every other db node named in the cluster file.
    pub peers: Vec<DbPeer>,
    /// Subnets allowed to connect (scram-sha-256): every node's network.
    pub networks: Vec<IpNet>,
    /// The hostnames whose majority a primary must see: the db and
    /// balancer nodes of the file (see `fence.rs`).
    pub voters: Vec<String>,
    /// Roles and databases the primary makes sure exist.
    pub service: Option<ServiceLogin>,
    pub auth_query: bool,
    pub users: Vec<PgUser>,
    pub databases: Vec<PgDatabase>,
    pub backup: Option<DbBackup>,
    pub failover: bool,
}

impl DbPlan {
    pub fn new(running: &Running, identity: &Identity) -> Result<DbPlan, DbError> {
        let config = &running.config;
        let db = &config.db;
        let token = config.admin_token.as_deref().ok_or_else(|| {
            DbError::Config(
                "the db role needs the cluster's admin_token: nodes promote and re-point \
                 standbys through the admin API, and the replication password is derived \
                 from it"
                    .into(),
            )
        })?;
        let root = db
            .data_dir
            .clone()
            .unwrap_or_else(|| identity.data_dir.join("postgresql"));
        let os_user = if rustix::process::geteuid().is_root() {
            Some(lookup_user(&db.os_user)?)
        } else {
            None
        };
        let port = config.postgres.server_port;
        let mut networks: Vec<IpNet> = config.nodes.iter().map(|n| n.network).collect();
        networks.push(IpNet::from(identity.address));
        if identity.address.is_loopback() {
            // Nodes on loopback (tests, a try-out on one machine) connect
            // to each other from 127.0.0.1, whatever address they listen on.
            networks.extend(
                ["127.0.0.0/8", "::1/128"]
                    .iter()
                    .filter_map(|n| n.parse::<IpNet>().ok()),
            );
        }
        networks.sort();
        networks.dedup();
        Ok(DbPlan {
            hostname: identity.hostname.clone(),
            listen: SocketAddr::new(identity.address, port),
            bindir: db.bindir.clone(),
            data: root.join("data"),
            run: root.join("run"),
            os_user,
            initial_primary: running
                .plan
                .settings
                .db
                .as_ref()
                .is_some_and(|d| d.initial_primary),
            replication_user: db.replication_user.clone(),
            replication_password: replication_password(token),
            synchronous: db.synchronous,
            peers: peers(config, &identity.hostname),
            networks,
            voters: voters(config),
            service: config.postgres.service.clone(),
            auth_query: config.postgres.auth_query.is_some(),
            users: config.postgres.users.clone(),
            databases: config.postgres.databases.clone(),
            backup: db.backup.clone(),
            failover: db.failover,
        })
    }

    pub fn root(&self) -> PathBuf {
        self.data
            .parent()
            .map(PathBuf::from)
            .unwrap_or_else(|| self.data.clone())
    }

    pub fn peer(&self, hostname: &str) -> Option<&DbPeer> {
        self.peers.iter().find(|p| p.hostname == hostname)
    }

    pub fn program(&self, name: &str) -> PathBuf {
        self.bindir.join(name)
    }
}

/// A slot or application name from a hostname: PostgreSQL's slot names
/// allow only lowercase letters, digits and '_'.
pub fn slot_name(hostname: &str) -> String {
    hostname
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect::<String>()
        .to_ascii_lowercase()
}

pub fn peers(config: &ClusterConfig, me: &str) -> Vec<DbPeer> {
    config
        .nodes
        .iter()
        .filter(|n| n.roles.contains(&Role::Db) && n.hostname != me)
        .map(|n| DbPeer {
            hostname: n.hostname.clone(),
            addr: SocketAddr::new(n.address, config.postgres.server_port),
        })
        .collect()
}

/// The nodes whose majority counts: those that hold data (db) or make
/// decisions (balancer). Web-only and storage-only nodes do not vote, so
/// rebooting them never fences the primary.
pub fn voters(config: &ClusterConfig) -> Vec<String> {
    config
        .nodes
        .iter()
        .filter(|n| n.roles.contains(&Role::Db) || n.roles.contains(&Role::Balancer))
        .map(|n| n.hostname.clone())
        .collect()
}

/// The replication role's password: an HMAC of the admin token, so every
/// node computes the same one and the owner keeps a single secret. It is
/// never written anywhere but the 0600 password file of PostgreSQL's user.
pub fn replication_password(admin_token: &str) -> String {
    // HMAC accepts keys of any length; the error case cannot happen.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(admin_token.as_bytes()) else {
        return String::new();
    };
    mac.update(b"piha replication password v1");
    let bytes = mac.finalize().into_bytes();
    bytes[..20].iter().map(|b| format!("{b:02x}")).collect()
}

fn lookup_user(name: &str) -> Result<OsUser, DbError> {
    match super::os_user::lookup(name) {
        Ok(Some((uid, gid))) => Ok(OsUser { uid, gid }),
        Ok(None) => Err(DbError::Config(format!(
            "there is no OS user `{name}` to run PostgreSQL as (install postgresql-15, \
             or set [db] os_user)"
        ))),
        Err(e) => Err(DbError::Config(format!(
            "cannot look up OS user `{name}` in /etc/passwd: {e}"
        ))),
    }
}

/// Whether `ip` may connect: inside one of the networks.
pub fn allowed(networks: &[IpNet], ip: IpAddr) -> bool {
    networks.iter().any(|n| n.contains(&ip))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_names_are_what_postgres_accepts() {
        assert_eq!(slot_name("pi-2"), "pi_2");
        assert_eq!(slot_name("DB.Node-3"), "db_node_3");
    }

    #[test]
    fn the_replication_password_depends_only_on_the_token() {
        let a = replication_password("test-admin-token-0123456789");
        assert_eq!(a, replication_password("test-admin-token-0123456789"));
        assert_ne!(a, replication_password("another-admin-token-0123456789"));
        assert_eq!(a.len(), 40);
    }
}
