//! `piha db-restore --from <backup> --to <new data dir>`: turns one of the
//! base backups `backup.rs` takes into a PostgreSQL data directory, ready
//! to be moved in place of a db node's data directory (or started by hand
//! to look at). It never writes into a directory that holds anything.
//!
//! Steps: check the backup (`backup_manifest`, `base.tar.gz`), extract
//! `base.tar.gz` into the target and `pg_wal.tar.gz` into its `pg_wal`
//! with the OS `tar`, check every file against the manifest with
//! `pg_verifybackup` (when installed), remove `standby.signal` and
//! `postmaster.pid`, give the directory to PostgreSQL's OS user (when run
//! as root) with mode 0700. A failure removes what was extracted.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context as _;

use super::command::run_command;
use super::error::DbError;
use crate::cli::DbRestoreArgs;

/// Extracting a big database on a Pi's SD card takes a while.
const EXTRACT_LIMIT: Duration = Duration::from_secs(6 * 3600);
/// pg_verifybackup reads every file and checks its checksum.
const VERIFY_LIMIT: Duration = Duration::from_secs(6 * 3600);
/// Files and folders chowned at most (a data directory has thousands).
const MAX_ENTRIES: usize = 10_000_000;

/// What `restore` needs.
#[derive(Debug, Clone)]
pub struct RestoreOptions {
    pub from: PathBuf,
    pub to: PathBuf,
    /// Where `pg_verifybackup` is.
    pub bindir: PathBuf,
    /// Who gets the restored directory (when we are root).
    pub os_user: Option<(u32, u32)>,
}

/// What a restore did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restored {
    /// pg_verifybackup checked the files (it was installed).
    pub verified: bool,
    /// The backup had its own WAL (`pg_wal.tar.gz`).
    pub wal: bool,
}

/// `piha db-restore`.
pub fn run(args: &DbRestoreArgs) -> anyhow::Result<()> {
    let os_user = if rustix::process::geteuid().is_root() {
        Some(lookup_user(&args.os_user)?)
    } else {
        None
    };
    let options = RestoreOptions {
        from: args.from.clone(),
        to: args.to.clone(),
        bindir: args.bindir.clone(),
        os_user,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let restored = rt.block_on(restore(&options))?;
    print!("{}", next_steps(&options, &restored));
    Ok(())
}

fn lookup_user(name: &str) -> anyhow::Result<(u32, u32)> {
    match super::os_user::lookup(name) {
        Ok(Some(ids)) => Ok(ids),
        Ok(None) => anyhow::bail!(
            "there is no OS user `{name}` to give the data directory to (install \
             postgresql-15, or pass --os-user)"
        ),
        Err(e) => anyhow::bail!("cannot look up OS user `{name}` in /etc/passwd: {e}"),
    }
}

/// Restores `from` into `to`; see the module's text.
pub async fn restore(o: &RestoreOptions) -> Result<Restored, DbError> {
    check_backup(&o.from)?;
    let created = prepare_target(&o.to)?;
    match fill(o).await {
        Ok(r) => Ok(r),
        Err(e) => {
            clear_target(&o.to, created);
            Err(e)
        }
    }
}

fn check_backup(from: &Path) -> Result<(), DbError> {
    if from
        .to_string_lossy()
        .trim_end_matches('/')
        .ends_with(".partial")
    {
        return Err(DbError::Refused(format!(
            "{} is a backup that never finished (.partial): restore a complete one",
            from.display()
        )));
    }
    if !from.is_dir() {
        return Err(DbError::Refused(format!(
            "{} is not a folder: --from takes one backup's folder, like \
             /srv/piha/backups/postgresql/piha-20240305T060708Z-pi-1",
            from.display()
        )));
    }
    for needed in ["backup_manifest", "base.tar.gz"] {
        if !from.join(needed).is_file() {
            return Err(DbError::Refused(format!(
                "{} has no {needed}: not a complete base backup in tar format \
                 (pg_basebackup -Ft -z, as piha takes them)",
                from.display()
            )));
        }
    }
    // Other archives are tablespaces, which this restore does not place.
    let Ok(entries) = std::fs::read_dir(from) else {
        return Err(DbError::Refused(format!("cannot read {}", from.display())));
    };
    let extra: Vec<String> = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str().map(str::to_owned))
        .filter(|n| n.ends_with(".tar.gz") || n.ends_with(".tar"))
        .filter(|n| n != "base.tar.gz" && n != "pg_wal.tar.gz")
        .collect();
    if !extra.is_empty() {
        return Err(DbError::Refused(format!(
            "{} holds tablespace archives ({}): restore it by hand with tar, \
             placing each tablespace where pg_tblspc points",
            from.display(),
            extra.join(", ")
        )));
    }
    Ok(())
}

/// Creates the target (0700) or accepts an empty one; true when created.
fn prepare_target(to: &Path) -> Result<bool, DbError> {
    match std::fs::read_dir(to) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(DbError::Refused(format!(
                    "{} exists and is not empty: db-restore never overwrites anything; \
                     give it a new directory",
                    to.display()
                )));
            }
            Ok(false)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(to)
                .map_err(DbError::io(format!("cannot create {}", to.display())))?;
            Ok(true)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => Err(DbError::Refused(format!(
            "{} exists and is not a directory: db-restore never overwrites anything",
            to.display()
        ))),
        Err(e) => Err(DbError::io(format!("cannot read {}", to.display()))(e)),
    }
}

/// Empties the target after a failure: it was empty (or absent) before.
fn clear_target(to: &Path, created: bool) {
    if created {
        let _ = std::fs::remove_dir_all(to);
        return;
    }
    if let Ok(entries) = std::fs::read_dir(to) {
        for e in entries.flatten() {
            let p = e.path();
            let _ = match e.file_type() {
                Ok(t) if t.is_dir() => std::fs::remove_dir_all(&p),
                _ => std::fs::remove_file(&p),
            };
        }
    }
}

async fn fill(o: &RestoreOptions) -> Result<Restored, DbError> {
    extract(&o.from.join("base.tar.gz"), &o.to).await?;
    let wal_archive = o.from.join("pg_wal.tar.gz");
    let wal = wal_archive.is_file();
    if wal {
        let pg_wal = o.to.join("pg_wal");
        std::fs::create_dir_all(&pg_wal)
            .map_err(DbError::io(format!("cannot create {}", pg_wal.display())))?;
        extract(&wal_archive, &pg_wal).await?;
    }
    let verifier = o.bindir.join("pg_verifybackup");
    let verified = verifier.is_file();
    if verified {
        let mut cmd = clean_command(&verifier);
        cmd.arg("--no-parse-wal")
            .arg("-m")
            .arg(o.from.join("backup_manifest"))
            .arg(&o.to);
        run_command(cmd, "pg_verifybackup", VERIFY_LIMIT).await?;
    }
    for leftover in ["standby.signal", "postmaster.pid"] {
        let p = o.to.join(leftover);
        match std::fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(DbError::io(format!("cannot remove {}", p.display()))(e)),
        }
    }
    if let Some((uid, gid)) = o.os_user {
        chown_tree(&o.to, uid, gid)?;
    }
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&o.to, std::fs::Permissions::from_mode(0o700))
        .map_err(DbError::io(format!("cannot chmod {}", o.to.display())))?;
    Ok(Restored { verified, wal })
}

/// `tar -xzf archive -C into`, files owned by whoever runs it (they are
/// chowned afterwards).
async fn extract(archive: &Path, into: &Path) -> Result<(), DbError> {
    let mut cmd = clean_command(Path::new("tar"));
    let args: [OsString; 6] = [
        "--extract".into(),
        "--gzip".into(),
        "--no-same-owner".into(),
        "--file".into(),
        archive.into(),
        "--directory".into(),
    ];
    cmd.args(args).arg(into);
    run_command(cmd, "tar", EXTRACT_LIMIT).await.map(|_| ())
}

fn clean_command(program: &Path) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(program);
    cmd.env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    cmd
}

/// chown -R without following symlinks.
fn chown_tree(root: &Path, uid: u32, gid: u32) -> Result<(), DbError> {
    let mut todo = vec![root.to_path_buf()];
    let mut seen = 0usize;
    while let Some(path) = todo.pop() {
        seen += 1;
        if seen > MAX_ENTRIES {
            return Err(DbError::Refused(format!(
                "more than {MAX_ENTRIES} files under {}",
                root.display()
            )));
        }
        std::os::unix::fs::lchown(&path, Some(uid), Some(gid))
            .map_err(DbError::io(format!("cannot chown {}", path.display())))?;
        let meta = std::fs::symlink_metadata(&path)
            .map_err(DbError::io(format!("cannot read {}", path.display())))?;
        if meta.is_dir() {
            let entries = std::fs::read_dir(&path)
                .map_err(DbError::io(format!("cannot read {}", path.display())))?;
            for e in entries {
                let e = e.map_err(DbError::io(format!("cannot read {}", path.display())))?;
                todo.push(e.path());
            }
        }
    }
    Ok(())
}

/// What to do with the restored directory, printed after a restore.
pub fn next_steps(o: &RestoreOptions, r: &Restored) -> String {
    let to = o.to.display();
    let postgres = o.bindir.join("postgres");
    let mut s = format!("restored {} into {to}\n", o.from.display());
    if r.verified {
        s.push_str("pg_verifybackup: every file matches the backup's manifest\n");
    } else {
        s.push_str(&format!(
            "not verified: there is no {}\n",
            o.bindir.join("pg_verifybackup").display()
        ));
    }
    if !r.wal {
        s.push_str(
            "note: the backup has no pg_wal.tar.gz; PostgreSQL needs the WAL from the \
             backup's time to start\n",
        );
    }
    s.push_str(&format!(
        "\nTo make it a db node's database (see README.md, \"Backups and restore\"):\n\
         \x20 1. stop piha on every db node:          systemctl stop piha\n\
         \x20 2. on this node, put it in place:       mv /var/lib/piha/postgresql/data /var/lib/piha/postgresql/data.old\n\
         \x20                                         mv {to} /var/lib/piha/postgresql/data\n\
         \x20 3. on the other db nodes, move the data directory aside (they copy the\n\
         \x20    restored one afresh):                mv /var/lib/piha/postgresql/data /var/lib/piha/postgresql/data.old\n\
         \x20 4. start piha on every db node:         systemctl start piha\n\
         (with [db] data_dir set, the data directory is <data_dir>/data)\n\
         \nTo look at it first, with a server of its own on a unix socket only:\n\
         \x20 mkdir -p /tmp/pg-restored && chown postgres /tmp/pg-restored\n\
         \x20 runuser -u postgres -- {} -D {to} -p 5499 -c listen_addresses= \\\n\
         \x20   -k /tmp/pg-restored -c logging_collector=off -c synchronous_standby_names=\n\
         \x20 psql -h /tmp/pg-restored -p 5499 -U postgres     (Ctrl-C in the first terminal stops it)\n",
        postgres.display()
    ));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(from: &Path, to: &Path) -> RestoreOptions {
        RestoreOptions {
            from: from.into(),
            to: to.into(),
            bindir: PathBuf::from("/nonexistent"),
            os_user: None,
        }
    }

    fn run(o: &RestoreOptions) -> Result<Restored, DbError> {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(restore(o))
    }

    /// A fake backup: base.tar.gz with a file and an empty pg_wal folder.
    fn fake_backup(dir: &Path) -> PathBuf {
        let src = dir.join("src");
        std::fs::create_dir_all(src.join("pg_wal")).unwrap();
        std::fs::write(src.join("PG_VERSION"), "15\n").unwrap();
        std::fs::write(src.join("standby.signal"), "").unwrap();
        let from = dir.join("piha-20240305T060708Z-pi-1");
        std::fs::create_dir_all(&from).unwrap();
        let ok = std::process::Command::new("tar")
            .arg("-czf")
            .arg(from.join("base.tar.gz"))
            .arg("-C")
            .arg(&src)
            .args(["PG_VERSION", "standby.signal", "pg_wal"])
            .status()
            .unwrap();
        assert!(ok.success());
        std::fs::write(from.join("backup_manifest"), "{}").unwrap();
        from
    }

    #[test]
    fn restores_into_a_new_directory_and_never_into_a_full_one() {
        let tmp = tempfile::tempdir().unwrap();
        let from = fake_backup(tmp.path());
        let to = tmp.path().join("new/data");
        let r = run(&options(&from, &to)).unwrap();
        assert_eq!(
            r,
            Restored {
                verified: false,
                wal: false
            }
        );
        assert_eq!(
            std::fs::read_to_string(to.join("PG_VERSION")).unwrap(),
            "15\n"
        );
        assert!(!to.join("standby.signal").exists());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&to).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);

        let e = run(&options(&from, &to)).unwrap_err().to_string();
        assert!(e.contains("exists and is not empty"), "{e}");
        assert_eq!(
            std::fs::read_to_string(to.join("PG_VERSION")).unwrap(),
            "15\n"
        );

        // An empty existing directory is fine.
        let empty = tmp.path().join("empty");
        std::fs::create_dir(&empty).unwrap();
        run(&options(&from, &empty)).unwrap();
        assert!(empty.join("PG_VERSION").is_file());
    }

    #[test]
    fn refuses_what_is_not_a_complete_backup() {
        let tmp = tempfile::tempdir().unwrap();
        let from = fake_backup(tmp.path());
        let to = tmp.path().join("t");
        let partial = tmp.path().join("piha-20240305T060708Z-pi-1.partial");
        std::fs::create_dir(&partial).unwrap();
        let e = run(&options(&partial, &to)).unwrap_err().to_string();
        assert!(e.contains("never finished"), "{e}");
        std::fs::remove_file(from.join("backup_manifest")).unwrap();
        let e = run(&options(&from, &to)).unwrap_err().to_string();
        assert!(e.contains("no backup_manifest"), "{e}");
        assert!(!to.exists(), "nothing was created");
    }

    #[test]
    fn a_broken_archive_leaves_nothing_behind() {
        let tmp = tempfile::tempdir().unwrap();
        let from = fake_backup(tmp.path());
        std::fs::write(from.join("base.tar.gz"), b"not gzip").unwrap();
        let to = tmp.path().join("t");
        let e = run(&options(&from, &to)).unwrap_err().to_string();
        assert!(e.contains("tar failed"), "{e}");
        assert!(!to.exists());
    }
}
