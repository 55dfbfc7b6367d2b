//! Replacing an unusable database: move it (and its WAL) aside as
//! `piha.db.corrupt-<unix_ms>`, keep only the newest few, start fresh.
//!
//! The WAL goes with its database: it may hold the newest pages (evidence for
//! a post-mortem) and belongs to the old file, not to the fresh one.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use rusqlite::ErrorCode;

use super::handle::RING_EVENTS;
use super::schema::{OpenFailure, Opened, open_validated};
use super::{KEEP_CORRUPT, Recovery, StoreError, now_ms};

/// `DB_FILE` plus the marker; spelled out because `concat!` takes literals only.
const CORRUPT_PREFIX: &str = "piha.db.corrupt-";

/// Opens the database, replacing it with a fresh one if it is unusable.
pub(crate) fn open_or_recover(
    dir: &Path,
    path: &Path,
) -> Result<(Opened, Option<Recovery>), StoreError> {
    match open_validated(path, RING_EVENTS) {
        Ok(opened) => Ok((opened, None)),
        Err(OpenFailure::Environment(source)) => Err(StoreError::Environment {
            path: path.to_path_buf(),
            source,
        }),
        Err(OpenFailure::Unusable { reason, source }) => {
            if !any_db_file_exists(path) {
                // Nothing to move: the directory itself is the problem.
                return Err(match source {
                    Some(source) => StoreError::Open {
                        path: path.to_path_buf(),
                        source,
                    },
                    None => StoreError::Unavailable {
                        path: path.to_path_buf(),
                        reason,
                    },
                });
            }
            let (opened, recovery) = recover_fresh(dir, path, reason)?;
            Ok((opened, Some(recovery)))
        }
    }
}

/// Moves the current files aside and opens a fresh database. The caller must
/// have closed its connection to the old one first.
pub(crate) fn recover_fresh(
    dir: &Path,
    path: &Path,
    reason: String,
) -> Result<(Opened, Recovery), StoreError> {
    let moved_to = move_aside(dir, path)?;
    prune(dir, KEEP_CORRUPT);
    let opened = match open_validated(path, RING_EVENTS) {
        Ok(opened) => opened,
        Err(OpenFailure::Environment(source)) => {
            return Err(StoreError::Environment {
                path: path.to_path_buf(),
                source,
            });
        }
        Err(OpenFailure::Unusable {
            source: Some(source),
            ..
        }) => {
            return Err(StoreError::Open {
                path: path.to_path_buf(),
                source,
            });
        }
        Err(OpenFailure::Unusable {
            reason,
            source: None,
        }) => {
            return Err(StoreError::Unavailable {
                path: path.to_path_buf(),
                reason: format!("a fresh database is unusable too: {reason}"),
            });
        }
    };
    Ok((opened, Recovery { moved_to, reason }))
}

/// Errors that mean the file's contents are damaged (as opposed to IO,
/// locking or constraint problems).
pub(crate) fn is_corruption(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase)
    )
}

fn sidecar(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

fn any_db_file_exists(path: &Path) -> bool {
    ["", "-wal", "-shm"]
        .iter()
        .any(|suffix| fs::symlink_metadata(sidecar(path, suffix)).is_ok())
}

/// Renames `piha.db` and `piha.db-wal` to `piha.db.corrupt-<ms>[-wal]` and
/// deletes `piha.db-shm` (only an index into the WAL, rebuilt on open).
fn move_aside(dir: &Path, path: &Path) -> Result<PathBuf, StoreError> {
    let mut ms = now_ms();
    // Two recoveries in one millisecond (tests, or a crash loop) must not
    // overwrite each other.
    let target = loop {
        let candidate = dir.join(format!("{CORRUPT_PREFIX}{ms}"));
        if !any_db_file_exists(&candidate) {
            break candidate;
        }
        ms += 1;
    };
    let fail = |source: io::Error| StoreError::MoveAside {
        path: path.to_path_buf(),
        source,
    };
    rename_if_exists(path, &target).map_err(fail)?;
    let wal = sidecar(path, "-wal");
    if let Err(e) = rename_if_exists(&wal, &sidecar(&target, "-wal")) {
        // The old WAL must not sit beside the fresh file: delete it rather
        // than fail; the main file is already safe aside.
        tracing::warn!(path = %wal.display(), error = %e, "cannot move WAL aside; deleting it");
        remove_if_exists(&wal).map_err(fail)?;
    }
    remove_if_exists(&sidecar(path, "-shm")).map_err(fail)?;
    Ok(target)
}

fn rename_if_exists(from: &Path, to: &Path) -> io::Result<()> {
    match fs::rename(from, to) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

fn remove_if_exists(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// Keeps the `keep` newest moved-aside databases (each with its WAL) and
/// deletes the rest. Best effort: a file that cannot be deleted is logged.
pub(crate) fn prune(dir: &Path, keep: usize) {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot list store directory to prune");
            return;
        }
    };
    let mut groups: BTreeMap<i64, Vec<PathBuf>> = BTreeMap::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(ms) = corrupt_stamp(name) {
            groups.entry(ms).or_default().push(entry.path());
        }
    }
    let excess = groups.len().saturating_sub(keep);
    for (_, files) in groups.into_iter().take(excess) {
        for file in files {
            if let Err(e) = remove_if_exists(&file) {
                tracing::warn!(path = %file.display(), error = %e, "cannot delete old corrupt database");
            }
        }
    }
}

/// `piha.db.corrupt-1700000000000[-wal]` -> 1700000000000.
fn corrupt_stamp(name: &str) -> Option<i64> {
    let rest = name.strip_prefix(CORRUPT_PREFIX)?;
    let digits = rest.split('-').next()?;
    let ms = digits.parse().ok()?;
    let suffix = &rest[digits.len()..];
    matches!(suffix, "" | "-wal" | "-shm").then_some(ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_parse_only_our_names() {
        assert_eq!(corrupt_stamp("piha.db.corrupt-123"), Some(123));
        assert_eq!(corrupt_stamp("piha.db.corrupt-123-wal"), Some(123));
        assert_eq!(corrupt_stamp("piha.db.corrupt-123-journal"), None);
        assert_eq!(corrupt_stamp("piha.db.corrupt-"), None);
        assert_eq!(corrupt_stamp("piha.db"), None);
        assert_eq!(corrupt_stamp("other.db.corrupt-1"), None);
    }

    #[test]
    fn prune_keeps_the_newest_groups_and_leaves_other_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        for ms in [10, 20, 30, 40, 50] {
            fs::write(dir.path().join(format!("{CORRUPT_PREFIX}{ms}")), b"x").expect("write");
            fs::write(dir.path().join(format!("{CORRUPT_PREFIX}{ms}-wal")), b"x").expect("write");
        }
        fs::write(dir.path().join("piha.db"), b"").expect("write");
        prune(dir.path(), 3);
        let mut names: Vec<String> = fs::read_dir(dir.path())
            .expect("read_dir")
            .flatten()
            .filter_map(|e| e.file_name().to_str().map(str::to_owned))
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                "piha.db",
                "piha.db.corrupt-30",
                "piha.db.corrupt-30-wal",
                "piha.db.corrupt-40",
                "piha.db.corrupt-40-wal",
                "piha.db.corrupt-50",
                "piha.db.corrupt-50-wal",
            ]
        );
    }
}
