//! The cluster-wide `[db]` section as written: where the PostgreSQL programs
//! and data are, who it runs as, how standbys replicate, whether a standby
//! is promoted on its own, and the scheduled backups. Shape only, like the
//! rest of `raw`; `db_settings` checks the values.
//!
//! Not to be mixed up with a node's `db = { initial_primary = true }`
//! (`RawDb`), which is about one node, not the cluster.

use toml::Spanned;
use toml::de::DeValue;

use super::diagnostic::Report;
use super::raw::{DURATION, Fields, OrOff, Table};
use super::raw_sections::{RawTable, nested};

pub struct RawDbCluster {
    pub bindir: Option<Spanned<String>>,
    pub data_dir: Option<Spanned<String>>,
    pub os_user: Option<Spanned<String>>,
    pub replication_user: Option<Spanned<String>>,
    pub synchronous: Option<Spanned<bool>>,
    pub failover: Option<Spanned<bool>>,
    /// A table, or `false` (no scheduled backups).
    pub backup: Option<OrOff<RawDbBackup>>,
}

/// `backup = { dir = "/srv/piha/backups/postgresql", every = "24h", keep = 7 }`.
pub type RawDbBackup = RawTable<RawDbBackupFields>;

pub struct RawDbBackupFields {
    pub dir: Option<Spanned<String>>,
    pub every: Option<Spanned<String>>,
    pub keep: Option<Spanned<i64>>,
}

const DIR: &str = "an absolute directory path in quotes";
const BACKUP_EXAMPLE: &str =
    "{ dir = \"/srv/piha/backups/postgresql\", every = \"24h\", keep = 7 }";

pub(super) fn read_db(t: Table<'_, '_>, report: &mut Report<'_>) -> RawDbCluster {
    let mut f = Fields::new(t.table, "[db]", report);
    let db = RawDbCluster {
        bindir: f.string(
            "bindir",
            &format!("{DIR}, like \"/usr/lib/postgresql/15/bin\""),
        ),
        data_dir: f.string("data_dir", &format!("{DIR}, like \"/srv/postgresql\"")),
        os_user: f.string("os_user", "a user name in quotes, like \"postgres\""),
        replication_user: f.string(
            "replication_user",
            "a PostgreSQL role name in quotes, like \"replicator\"",
        ),
        synchronous: f.boolean("synchronous"),
        failover: f.boolean("failover"),
        backup: backup(&mut f),
    };
    f.refuse(
        "initial_primary",
        "`initial_primary` belongs to one node, not to [db]: write db = { initial_primary = true } in that node's [[node]] entry",
    );
    f.finish();
    db
}

/// `backup = { ... }` (or `[db.backup]`), or `false`.
fn backup(f: &mut Fields<'_, '_, '_, '_>) -> Option<OrOff<RawDbBackup>> {
    let value = f.get("backup")?;
    match value.get_ref() {
        DeValue::Boolean(false) => Some(OrOff::Off),
        DeValue::Table(table) => {
            let t = Table {
                table,
                span: value.span(),
                key_span: value.span(),
            };
            let backup = nested(t, "`db.backup`", f.report, |s| RawDbBackupFields {
                dir: s.string("dir", DIR),
                every: s.string("every", DURATION),
                keep: s.integer("keep", "a number of backups from 1 to 365"),
            });
            Some(OrOff::On(backup))
        }
        other => {
            let on = matches!(other, DeValue::Boolean(true));
            let expected = format!("a table, like backup = {BACKUP_EXAMPLE}, or false for none");
            let d = f.wrong_type("backup", value, &expected);
            if on {
                d.help(
                    "backups are on by default: remove the line, or write the table to change where, how often or how many",
                );
            }
            None
        }
    }
}
