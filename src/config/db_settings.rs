//! The cluster-wide `[db]` section over the built-in values: which
//! PostgreSQL the db nodes run and as whom, how standbys replicate, whether
//! the VRRP master promotes a standby on its own, and the scheduled base
//! backups. Only the values are checked here, not the machine: `piha check`
//! runs anywhere, so a `bindir` that is missing on this computer may well be
//! there on the Pis.

use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::time::Duration;

use toml::Spanned;

use super::diagnostic::Report;
use super::model::{DbBackup, DbClusterSettings};
use super::overlay::field_with_help;
use super::raw::{OrOff, RawDbBackup, RawDbCluster};
use super::values;

/// Each backup copies the whole database: more often than this is a typo
/// (`"10s"` for `"10h"`) rather than a plan.
const MIN_EVERY: Duration = Duration::from_secs(60);
const KEEP: RangeInclusive<u32> = 1..=365;
/// `useradd`'s limit on Debian (and the utmp field's size).
const MAX_OS_USER: usize = 32;

const BINDIR_HELP: &str = "the folder of PostgreSQL's programs (postgres, initdb, pg_basebackup); Debian's postgresql-15 package puts them in \"/usr/lib/postgresql/15/bin\", and `pg_config --bindir` prints it";
const DATA_DIR_HELP: &str = "a folder on the Pi's own disk, like \"/srv/postgresql\", never on the Gluster volume; leave `data_dir` out for the built-in one in piha's data directory (/var/lib/piha/postgresql)";
const OS_USER_HELP: &str = "the system user PostgreSQL runs as when piha runs as root, like \"postgres\" (Debian's PostgreSQL package creates it)";
const REPLICATION_USER_HELP: &str = "the PostgreSQL role standbys copy the primary as, like \"replicator\"; piha creates it, with a password derived from the admin token";
const BACKUP_DIR_HELP: &str = "the folder the primary writes base backups to, like \"/srv/piha/backups/postgresql\" on the Gluster volume, so a backup outlives the Pi it was taken on";
const EVERY_HELP: &str = "how often the primary takes a base backup, like every = \"24h\"; each one copies the whole database, so at least a minute apart";
const KEEP_HELP: &str = "how many complete backups to keep, like keep = 7; the oldest is removed once a newer one is complete";

pub fn db(raw: Option<&RawDbCluster>, report: &mut Report<'_>) -> DbClusterSettings {
    let base = DbClusterSettings::builtin();
    let Some(raw) = raw else {
        return base;
    };
    let flag =
        |raw: &Option<Spanned<bool>>, base: bool| raw.as_ref().map_or(base, |b| *b.get_ref());
    DbClusterSettings {
        bindir: field_with_help(
            &raw.bindir,
            &base.bindir,
            |t| absolute_dir(t, "bindir"),
            BINDIR_HELP,
            report,
        ),
        data_dir: field_with_help(
            &raw.data_dir,
            &base.data_dir,
            |t| absolute_dir(t, "data_dir").map(Some),
            DATA_DIR_HELP,
            report,
        ),
        os_user: field_with_help(
            &raw.os_user,
            &base.os_user,
            |t| os_user(t),
            OS_USER_HELP,
            report,
        ),
        replication_user: field_with_help(
            &raw.replication_user,
            &base.replication_user,
            |t| values::pg_name(t, "`replication_user`").map(|()| t.clone()),
            REPLICATION_USER_HELP,
            report,
        ),
        synchronous: flag(&raw.synchronous, base.synchronous),
        failover: flag(&raw.failover, base.failover),
        backup: match &raw.backup {
            None => base.backup,
            Some(OrOff::Off) => None,
            Some(OrOff::On(table)) => Some(backup(table, report)),
        },
    }
}

/// `backup = { ... }`: a key left out takes the built-in value.
fn backup(raw: &RawDbBackup, report: &mut Report<'_>) -> DbBackup {
    let base = DbBackup::builtin();
    let f = &raw.fields;
    DbBackup {
        dir: field_with_help(
            &f.dir,
            &base.dir,
            |t| absolute_dir(t, "dir"),
            BACKUP_DIR_HELP,
            report,
        ),
        every: field_with_help(&f.every, &base.every, |t| every(t), EVERY_HELP, report),
        keep: field_with_help(
            &f.keep,
            &base.keep,
            |n| values::count(*n, "keep", KEEP),
            KEEP_HELP,
            report,
        ),
    }
}

fn absolute_dir(text: &str, key: &str) -> Result<PathBuf, String> {
    values::absolute_dir(text).map_err(|why| format!("`{key}`: {why}"))
}

fn every(text: &str) -> Result<Duration, String> {
    let d = values::duration(text).map_err(|why| format!("`every`: {why}"))?;
    if d < MIN_EVERY {
        return Err(format!(
            "`every` must be at least {}, found {}",
            humantime::format_duration(MIN_EVERY),
            humantime::format_duration(d)
        ));
    }
    Ok(d)
}

/// A system user name as `useradd` takes it by default: lowercase letters,
/// digits, '_' and '-', not starting with '-' (it would read as an option).
fn os_user(name: &str) -> Result<String, String> {
    let len = name.chars().count();
    if !(1..=MAX_OS_USER).contains(&len) {
        return Err(format!(
            "`os_user` must be 1 to {MAX_OS_USER} characters long, not {len}"
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_' || *c == '-'))
    {
        return Err(format!(
            "`os_user` may hold only lowercase letters, digits, '_' and '-', not {c:?}"
        ));
    }
    if name.starts_with('-') {
        return Err("`os_user` must not start with '-'".to_string());
    }
    Ok(name.to_string())
}
