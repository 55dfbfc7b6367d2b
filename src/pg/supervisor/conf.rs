//! The files piha owns in the data directory, rewritten before every start
//! so they always match the cluster file:
//! - `piha.conf`, included from the end of `postgresql.conf` (so it wins
//!   over initdb's values; `ALTER SYSTEM` still wins over it, as an operator
//!   expects);
//! - `pg_hba.conf`: trust on the private unix socket, scram-sha-256 from
//!   the cluster's networks, nothing else;
//! - `standby.signal` on a standby, absent on a primary;
//! - the replication password file, outside the data directory.
//!
//! Everything else in `postgresql.conf` is the owner's to tune.

use std::fmt::Write as _;
use std::path::PathBuf;

use super::command::write_private;
use super::error::DbError;
use super::settings::{DbPeer, DbPlan, slot_name};

const INCLUDE_LINE: &str = "include_if_exists = 'piha.conf'";

/// Where a standby streams from, or `None`: a standby that waits read-only
/// (a fenced old primary, or a standby before the primary is known).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode<'a> {
    Primary,
    Standby { upstream: Option<&'a DbPeer> },
}

pub fn pgpass_path(plan: &DbPlan) -> PathBuf {
    plan.run.join("pgpass")
}

/// Writes every piha-owned file for starting in `mode`.
pub fn write_all(plan: &DbPlan, mode: Mode<'_>) -> Result<(), DbError> {
    write_settings(plan, mode)?;
    set_standby_signal(plan, matches!(mode, Mode::Standby { .. }))
}

/// The settings files only, for a running server: `standby.signal` is
/// the server's own while it runs (a promotion removes it, and fails if
/// it is already gone).
pub fn write_settings(plan: &DbPlan, mode: Mode<'_>) -> Result<(), DbError> {
    ensure_include(plan)?;
    write_private(
        plan,
        &plan.data.join("piha.conf"),
        &render_conf(plan, mode),
        0o600,
    )?;
    write_private(
        plan,
        &plan.data.join("pg_hba.conf"),
        &render_hba(plan),
        0o600,
    )?;
    write_pgpass(plan)
}

pub fn write_pgpass(plan: &DbPlan) -> Result<(), DbError> {
    // libpq ignores a password file others can read.
    let line = format!(
        "*:*:*:{}:{}\n",
        escape_pgpass(&plan.replication_user),
        escape_pgpass(&plan.replication_password)
    );
    write_private(plan, &pgpass_path(plan), &line, 0o600)
}

pub fn set_standby_signal(plan: &DbPlan, standby: bool) -> Result<(), DbError> {
    let path = plan.data.join("standby.signal");
    if standby {
        write_private(plan, &path, "", 0o600)
    } else {
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(DbError::io(format!("cannot remove {}", path.display()))(e)),
        }
    }
}

/// Appends the include line to `postgresql.conf` once.
fn ensure_include(plan: &DbPlan) -> Result<(), DbError> {
    let path = plan.data.join("postgresql.conf");
    let text = std::fs::read_to_string(&path)
        .map_err(DbError::io(format!("cannot read {}", path.display())))?;
    if text.lines().any(|l| l.trim() == INCLUDE_LINE) {
        return Ok(());
    }
    let mut new = text;
    if !new.ends_with('\n') {
        new.push('\n');
    }
    new.push_str("\n# Added by piha: the cluster's settings (rewritten on every start).\n");
    new.push_str(INCLUDE_LINE);
    new.push('\n');
    write_private(plan, &path, &new, 0o600)
}

pub fn render_conf(plan: &DbPlan, mode: Mode<'_>) -> String {
    let mut s = String::from(
        "# Written by piha before every start of PostgreSQL; edits are lost.\n\
         # Put your own settings in postgresql.conf above the include line,\n\
         # or use ALTER SYSTEM.\n",
    );
    let mut set = |k: &str, v: String| {
        let _ = writeln!(s, "{k} = {v}");
    };
    set("listen_addresses", quote(&plan.listen.ip().to_string()));
    set("port", plan.listen.port().to_string());
    set(
        "unix_socket_directories",
        quote(&plan.run.to_string_lossy()),
    );
    set("unix_socket_permissions", "0700".into());
    set("cluster_name", quote(&plan.hostname));
    set("password_encryption", "scram-sha-256".into());
    set("wal_level", "replica".into());
    // pg_rewind needs to know every page changed since the timelines
    // forked; without data checksums this is what records it.
    set("wal_log_hints", "on".into());
    set("max_wal_senders", "10".into());
    set("max_replication_slots", "10".into());
    // A standby that stays away keeps its slot's WAL on the primary; on an
    // SD card that must stop somewhere. Past it the standby re-clones.
    set("max_slot_wal_keep_size", quote("1GB"));
    set("hot_standby", "on".into());
    set("hot_standby_feedback", "on".into());
    set("wal_receiver_status_interval", quote("1s"));
    set("wal_retrieve_retry_interval", quote("1s"));
    set("recovery_target_timeline", quote("latest"));
    // Bounded logs on the SD card: a week of daily files, each cut at 10 MB.
    set("logging_collector", "on".into());
    set("log_directory", quote("log"));
    set("log_filename", quote("postgresql-%a.log"));
    set("log_truncate_on_rotation", "on".into());
    set("log_rotation_age", quote("1d"));
    set("log_rotation_size", quote("10MB"));
    // Written on every node, so that a standby promoted by a failover
    // already waits for the others; a standby ignores it.
    let others: Vec<String> = plan
        .peers
        .iter()
        .map(|p| format!("\"{}\"", p.hostname))
        .collect();
    if plan.synchronous && !others.is_empty() {
        set(
            "synchronous_standby_names",
            quote(&format!("ANY 1 ({})", others.join(", "))),
        );
    } else {
        set("synchronous_standby_names", quote(""));
    }
    match mode {
        Mode::Standby {
            upstream: Some(peer),
        } => {
            set("primary_conninfo", quote(&conninfo(plan, peer)));
            set("primary_slot_name", quote(&slot_name(&plan.hostname)));
        }
        _ => {
            set("primary_conninfo", quote(""));
            set("primary_slot_name", quote(""));
        }
    }
    s
}

/// libpq connection string to a peer as the replication user.
pub fn conninfo(plan: &DbPlan, peer: &DbPeer) -> String {
    format!(
        "host={} port={} user={} passfile={} application_name={} connect_timeout=2 \
         keepalives_idle=5 keepalives_interval=2 keepalives_count=3",
        peer.addr.ip(),
        peer.addr.port(),
        conninfo_value(&plan.replication_user),
        conninfo_value(&pgpass_path(plan).to_string_lossy()),
        conninfo_value(&plan.hostname),
    )
}

pub fn render_hba(plan: &DbPlan) -> String {
    let mut s = String::from(
        "# Written by piha before every start of PostgreSQL; edits are lost.\n\
         # The unix socket is in a folder only PostgreSQL's user (and root)\n\
         # can enter: that folder is the lock for `trust`.\n\
         local   all           all                  trust\n\
         local   replication   all                  trust\n",
    );
    for net in &plan.networks {
        // IpNet's Display ignores width: pad its text.
        let net = net.to_string();
        let _ = writeln!(
            s,
            "host    replication   {:<12} {:<20} scram-sha-256",
            hba_name(&plan.replication_user),
            net
        );
        let _ = writeln!(
            s,
            "host    all           all          {net:<20} scram-sha-256"
        );
    }
    s
}

/// A postgresql.conf string value.
fn quote(v: &str) -> String {
    format!("'{}'", v.replace('\\', "\\\\").replace('\'', "''"))
}

fn conninfo_value(v: &str) -> String {
    if !v.is_empty()
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./".contains(&b))
    {
        v.to_owned()
    } else {
        format!("'{}'", v.replace('\\', "\\\\").replace('\'', "\\'"))
    }
}

fn escape_pgpass(v: &str) -> String {
    v.replace('\\', "\\\\").replace(':', "\\:")
}

fn hba_name(v: &str) -> String {
    if v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        v.to_owned()
    } else {
        format!("\"{}\"", v.replace('"', "\"\""))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn plan(synchronous: bool) -> DbPlan {
        DbPlan {
            hostname: "pi-2".into(),
            listen: "192.0.2.12:5433".parse().expect("addr"),
            bindir: "/usr/lib/postgresql/15/bin".into(),
            data: PathBuf::from("/var/lib/piha/postgresql/data"),
            run: PathBuf::from("/var/lib/piha/postgresql/run"),
            os_user: None,
            initial_primary: false,
            replication_user: "replicator".into(),
            replication_password: "pw".into(),
            synchronous,
            peers: vec![
                DbPeer {
                    hostname: "pi-1".into(),
                    addr: "192.0.2.11:5433".parse().expect("addr"),
                },
                DbPeer {
                    hostname: "pi-3".into(),
                    addr: "192.0.2.13:5433".parse().expect("addr"),
                },
            ],
            networks: vec!["192.0.2.0/24".parse().expect("net")],
            voters: vec!["pi-1".into(), "pi-2".into(), "pi-3".into()],
            service: None,
            auth_query: false,
            users: vec![],
            databases: vec![],
            backup: None,
            failover: true,
        }
    }

    #[test]
    fn a_standby_streams_from_its_upstream_through_its_slot() {
        let p = plan(false);
        let conf = render_conf(
            &p,
            Mode::Standby {
                upstream: Some(&p.peers[0]),
            },
        );
        assert!(conf.contains(
            "primary_conninfo = 'host=192.0.2.11 port=5433 user=replicator \
             passfile=/var/lib/piha/postgresql/run/pgpass application_name=pi-2"
        ));
        assert!(conf.contains("primary_slot_name = 'pi_2'"));
        assert!(conf.contains("listen_addresses = '192.0.2.12'"));
        assert!(conf.contains("synchronous_standby_names = ''"));
    }

    #[test]
    fn synchronous_mode_waits_for_any_one_other_db_node() {
        let conf = render_conf(&plan(true), Mode::Primary);
        assert!(conf.contains("synchronous_standby_names = 'ANY 1 (\"pi-1\", \"pi-3\")'"));
        assert!(conf.contains("primary_conninfo = ''"));
    }

    #[test]
    fn hba_allows_scram_from_the_cluster_network_only() {
        let hba = render_hba(&plan(false));
        assert!(hba.contains("host    replication   replicator   192.0.2.0/24"));
        assert!(
            hba.contains("host    all           all          192.0.2.0/24         scram-sha-256")
        );
        assert!(!hba.contains("0.0.0.0/0"));
    }

    #[test]
    fn conf_values_are_quoted_safely() {
        assert_eq!(quote("it's"), "'it''s'");
        assert_eq!(conninfo_value("a b"), "'a b'");
        assert_eq!(escape_pgpass("a:b"), "a\\:b");
    }
}
