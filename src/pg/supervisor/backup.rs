//! Base backups: `pg_basebackup` of the local server into the cluster
//! file's backup folder (`[db] backup = { dir, every, keep }`), the
//! Gluster volume by default, so a backup outlives the Pi it was taken on.
//!
//! - A backup is a folder `piha-<UTC yyyymmddThhmmssZ>-<hostname>` holding
//!   `base.tar.gz`, `pg_wal.tar.gz` (the WAL it needs: it restores alone)
//!   and `backup_manifest`. It is written as `<name>.partial` and renamed
//!   only once pg_basebackup has finished, so a crash never leaves
//!   something that looks complete; leftovers are removed by the next run.
//! - The primary checks every minute (and as soon as it runs) whether the
//!   newest backup in the folder is older than `every`, takes one if so,
//!   then removes the oldest beyond `keep`. The folder is shared, so a new
//!   primary after a failover continues from the newest one there.
//! - `POST /api/v1/db/backup` takes one now, on any db node (a standby's
//!   backup costs the primary nothing).
//!
//! Only names of our own pattern are ever listed or removed: anything else
//! in the folder is the owner's. Restoring is `restore.rs`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::json;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::command;
use super::control::SUPERUSER;
use super::error::DbError;
use super::settings::DbPlan;
use super::status::{BackupView, DbRole, DbState, DbStatus};
use crate::config::DbBackup;
use crate::node::context::NodeContext;

const COMPONENT: &str = "db";
const PREFIX: &str = "piha-";
const PARTIAL: &str = ".partial";
/// `yyyymmddThhmmssZ`.
const STAMP_LEN: usize = 16;
/// A base backup copies the whole database (over the LAN to the Gluster
/// volume): hours for a big one on a Pi. Stopping the node kills it.
pub const TAKE_LIMIT: Duration = Duration::from_secs(6 * 3600);
/// How often the primary looks whether a backup is due.
pub const CHECK_EVERY: Duration = Duration::from_secs(60);
/// After a failed scheduled backup the next attempt waits this long, then
/// twice as long after each further failure, up to `RETRY_AFTER_MAX` (or
/// `every`, if shorter). A first backup cut off by the new primary's own
/// setup (roles and slots created right after it comes up, seen in CI) is
/// retried within a minute; a full disk is still not hammered.
const RETRY_AFTER: Duration = Duration::from_secs(30);
const RETRY_AFTER_MAX: Duration = Duration::from_secs(600);
/// Files and folders looked at in one backup when adding up its size.
const MAX_ENTRIES: usize = 10_000;

/// The folder name of a backup started at `at` by `hostname`.
pub fn backup_name(at: SystemTime, hostname: &str) -> String {
    let text = humantime::format_rfc3339_seconds(at).to_string();
    let compact: String = text.chars().filter(|c| *c != '-' && *c != ':').collect();
    format!("{PREFIX}{compact}-{hostname}")
}

/// A name of our pattern: (start in ms since the epoch, hostname). `None`
/// for anything else, `.partial` folders included.
pub fn parse_name(name: &str) -> Option<(i64, String)> {
    if name.ends_with(PARTIAL) {
        return None;
    }
    let rest = name.strip_prefix(PREFIX)?;
    let stamp = rest.get(..STAMP_LEN)?;
    let host = rest.get(STAMP_LEN..)?.strip_prefix('-')?;
    if host.is_empty()
        || !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
    {
        return None;
    }
    let b = stamp.as_bytes();
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    if !(digits(0..8) && b[8] == b'T' && digits(9..15) && b[15] == b'Z') {
        return None;
    }
    let rfc = format!(
        "{}-{}-{}T{}:{}:{}Z",
        &stamp[0..4],
        &stamp[4..6],
        &stamp[6..8],
        &stamp[9..11],
        &stamp[11..13],
        &stamp[13..15]
    );
    let at = humantime::parse_rfc3339(&rfc).ok()?;
    let ms = at.duration_since(UNIX_EPOCH).ok()?.as_millis();
    Some((i64::try_from(ms).ok()?, host.to_owned()))
}

/// A `.partial` folder of our pattern.
fn parse_partial(name: &str) -> Option<(i64, String)> {
    parse_name(name.strip_suffix(PARTIAL)?)
}

/// Whether a new backup is due: none yet, or the newest started `every`
/// or longer ago (a newest one "in the future", from a peer whose clock is
/// ahead, counts as fresh).
pub fn due(newest: Option<&BackupView>, every: Duration, now_ms: i64) -> bool {
    match newest {
        None => true,
        Some(b) => {
            let every_ms = i64::try_from(every.as_millis()).unwrap_or(i64::MAX);
            now_ms.saturating_sub(b.taken_at_ms) >= every_ms
        }
    }
}

/// The complete backups in `dir`, newest first. A missing or unreadable
/// folder has none.
pub fn list(dir: &Path) -> Vec<BackupView> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found: Vec<BackupView> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_str()?.to_owned();
            let (taken_at_ms, node) = parse_name(&name)?;
            let path = e.path();
            if !e.file_type().ok()?.is_dir() || !path.join("backup_manifest").is_file() {
                return None;
            }
            Some(BackupView {
                bytes: size_of(&path),
                name,
                path,
                taken_at_ms,
                node,
            })
        })
        .collect();
    found.sort_by(|a, b| {
        b.taken_at_ms
            .cmp(&a.taken_at_ms)
            .then_with(|| b.name.cmp(&a.name))
    });
    found
}

/// Removes the oldest complete backups beyond `keep` (at least one is
/// always kept); answers the names removed.
pub fn prune(dir: &Path, keep: u32) -> Result<Vec<String>, DbError> {
    let keep = usize::try_from(keep.max(1)).unwrap_or(usize::MAX);
    let mut removed = Vec::new();
    for old in list(dir).into_iter().skip(keep) {
        remove_tree(&old.path)?;
        removed.push(old.name);
    }
    Ok(removed)
}

/// Removes `.partial` leftovers: this node's (it takes one backup at a
/// time, so none of them is still being written) and other nodes' that
/// started longer ago than pg_basebackup may run (theirs was killed).
pub fn remove_partials(dir: &Path, hostname: &str, now_ms: i64) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let limit_ms = i64::try_from(TAKE_LIMIT.as_millis()).unwrap_or(i64::MAX);
    let mut removed = Vec::new();
    for e in entries.flatten() {
        let Some(name) = e.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        let Some((at, host)) = parse_partial(&name) else {
            continue;
        };
        let dead = host == hostname || now_ms.saturating_sub(at) > limit_ms + 60_000;
        if dead && remove_tree(&e.path()).is_ok() {
            removed.push(name);
        }
    }
    removed
}

/// Takes a base backup of the local server into `plan.backup`'s folder,
/// as `piha-<time>-<hostname>`. The folder is created (owned by
/// PostgreSQL's user, 0750) when missing; an existing one is left as it
/// is. Dropping the future kills pg_basebackup; the `.partial` it leaves
/// is removed by the next run.
pub async fn take(plan: &DbPlan, hostname: &str) -> Result<BackupView, DbError> {
    let settings = plan
        .backup
        .as_ref()
        .ok_or_else(|| DbError::Refused(OFF.into()))?;
    let dir = settings.dir.clone();
    {
        let (plan, dir, host) = (plan.clone(), dir.clone(), hostname.to_owned());
        blocking(move || {
            if !dir.is_dir() {
                command::private_dir(&plan, &dir, 0o750)?;
            }
            remove_partials(&dir, &host, crate::node::events::now_ms());
            Ok(())
        })
        .await?;
    }
    let name = free_name(&dir, hostname).await?;
    let partial = dir.join(format!("{name}{PARTIAL}"));
    let args: Vec<std::ffi::OsString> = vec![
        "-h".into(),
        plan.run.clone().into(),
        "-p".into(),
        plan.listen.port().to_string().into(),
        "-U".into(),
        SUPERUSER.into(),
        "-D".into(),
        partial.clone().into(),
        "-Ft".into(),
        "-z".into(),
        "-X".into(),
        "stream".into(),
        "-c".into(),
        "fast".into(),
        "--no-password".into(),
    ];
    if let Err(e) = command::run(plan, "pg_basebackup", &args, TAKE_LIMIT).await {
        let _ = blocking(move || remove_tree(&partial)).await;
        return Err(e);
    }
    let done = dir.join(&name);
    blocking(move || {
        if !partial.join("backup_manifest").is_file() {
            return Err(DbError::Program {
                program: "pg_basebackup".into(),
                status: "exit status: 0".into(),
                output: format!("it left no backup_manifest in {}", partial.display()),
            });
        }
        std::fs::rename(&partial, &done).map_err(DbError::io(format!(
            "cannot rename {} to {}",
            partial.display(),
            done.display()
        )))?;
        sync_dir(&dir);
        let (taken_at_ms, node) = parse_name(&name).unwrap_or_default();
        Ok(BackupView {
            bytes: size_of(&done),
            name,
            path: done,
            taken_at_ms,
            node,
        })
    })
    .await
}

const OFF: &str = "backups are off in the cluster file ([db] backup = false); set \
                   backup = { dir = ..., every = ..., keep = ... } to take them";

/// A name no folder has yet (a second backup within the same second
/// waits for the next one).
async fn free_name(dir: &Path, hostname: &str) -> Result<String, DbError> {
    for _ in 0..3 {
        let name = backup_name(SystemTime::now(), hostname);
        let taken = dir.join(&name).exists() || dir.join(format!("{name}{PARTIAL}")).exists();
        if !taken {
            return Ok(name);
        }
        tokio::time::sleep(Duration::from_millis(1000)).await;
    }
    Err(DbError::Refused(format!(
        "cannot find a free backup name in {}",
        dir.display()
    )))
}

/// Runs file-system work off the async threads: the folder is usually on
/// the Gluster volume, which may stall.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, DbError> + Send + 'static,
) -> Result<T, DbError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| DbError::Refused(format!("backup file work did not finish: {e}")))?
}

fn remove_tree(path: &Path) -> Result<(), DbError> {
    match std::fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(DbError::io(format!("cannot remove {}", path.display()))(e)),
    }
}

fn sync_dir(dir: &Path) {
    if let Ok(f) = std::fs::File::open(dir) {
        let _ = f.sync_all();
    }
}

/// The sizes of the files under `path` (bounded walk, symlinks not
/// followed).
fn size_of(path: &Path) -> u64 {
    let mut total = 0u64;
    let mut todo: Vec<PathBuf> = vec![path.to_path_buf()];
    let mut seen = 0usize;
    while let Some(dir) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            seen += 1;
            if seen > MAX_ENTRIES {
                return total;
            }
            match e.file_type() {
                Ok(t) if t.is_dir() => todo.push(e.path()),
                Ok(t) if t.is_file() => {
                    total = total.saturating_add(e.metadata().map(|m| m.len()).unwrap_or(0));
                }
                _ => {}
            }
        }
    }
    total
}

/// Why a backup was not taken.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{OFF}")]
    Off,
    #[error("a backup is already running on this node")]
    Busy,
    #[error("{0}")]
    Failed(DbError),
}

/// Why a backup starts, for its events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    Scheduled,
    Requested,
}

/// The backups of one life of the db role: the schedule on the primary
/// and the admin API's requests, one backup at a time on this node.
pub struct Backups {
    ctx: Arc<NodeContext>,
    /// Where the server is and who runs it: fixed for the role's life.
    /// The backup settings are read afresh from the running config, so a
    /// reload applies them.
    plan: DbPlan,
    status: watch::Sender<Arc<DbStatus>>,
    stop: CancellationToken,
    busy: Arc<tokio::sync::Mutex<()>>,
}

impl Backups {
    pub fn new(
        ctx: Arc<NodeContext>,
        plan: DbPlan,
        status: watch::Sender<Arc<DbStatus>>,
        stop: CancellationToken,
    ) -> Backups {
        Backups {
            ctx,
            plan,
            status,
            stop,
            busy: Arc::new(tokio::sync::Mutex::new(())),
        }
    }

    /// `[db] backup` as the running cluster file has it.
    pub fn settings(&self) -> Option<DbBackup> {
        self.ctx.running().config.db.backup.clone()
    }

    /// Takes a backup now, then removes those beyond `keep`. One at a time
    /// per node; the work runs in its own task, so a client that hangs up
    /// does not cancel it (stopping the node does).
    pub async fn take_now(self: &Arc<Self>, why: Why) -> Result<BackupView, BackupError> {
        let settings = self.settings().ok_or(BackupError::Off)?;
        let guard = self
            .busy
            .clone()
            .try_lock_owned()
            .map_err(|_| BackupError::Busy)?;
        {
            let s = self.status.borrow();
            if !matches!(s.state, DbState::Running | DbState::Fenced) || s.role.is_none() {
                return Err(BackupError::Failed(DbError::Refused(format!(
                    "PostgreSQL is not running here ({})",
                    s.state.name()
                ))));
            }
        }
        let mut plan = self.plan.clone();
        plan.backup = Some(settings);
        let this = self.clone();
        let work = tokio::spawn(async move {
            let _guard = guard;
            this.run_take(plan, why).await
        });
        work.await.map_err(|e| {
            BackupError::Failed(DbError::Refused(format!("the backup task ended: {e}")))
        })?
    }

    async fn run_take(&self, plan: DbPlan, why: Why) -> Result<BackupView, BackupError> {
        let Some(settings) = plan.backup.clone() else {
            return Err(BackupError::Off);
        };
        let started = Instant::now();
        let reason = match why {
            Why::Scheduled => "scheduled",
            Why::Requested => "requested through the admin API",
        };
        self.ctx.events.info(
            COMPONENT,
            format!(
                "base backup started ({reason}) into {}",
                settings.dir.display()
            ),
            json!({"dir": settings.dir, "reason": reason}),
        );
        let host = self.plan.hostname.clone();
        let result = tokio::select! {
            r = take(&plan, &host) => r,
            _ = self.stop.cancelled() => Err(DbError::Refused("the node is stopping".into())),
        };
        let ms = started.elapsed().as_millis() as u64;
        let view = match result {
            Ok(v) => v,
            Err(e) => {
                self.ctx.events.error(
                    COMPONENT,
                    format!("base backup failed after {ms} ms: {e}"),
                    json!({"ms": ms, "error": e.to_string(), "reason": reason}),
                );
                return Err(BackupError::Failed(e));
            }
        };
        let dir = settings.dir.clone();
        let keep = settings.keep;
        let pruned = blocking(move || {
            let removed = prune(&dir, keep);
            Ok((removed, list(&dir)))
        })
        .await;
        let (removed, newest) = match pruned {
            Ok((removed, listed)) => (removed, listed.into_iter().next()),
            Err(e) => (Err(e), None),
        };
        let removed = match removed {
            Ok(r) => r,
            Err(e) => {
                self.ctx.events.warning(
                    COMPONENT,
                    format!("cannot remove old backups: {e}"),
                    json!({"error": e.to_string()}),
                );
                Vec::new()
            }
        };
        self.show(Some(newest.unwrap_or_else(|| view.clone())));
        self.ctx.events.info(
            COMPONENT,
            format!(
                "base backup {} complete: {} in {ms} ms{}",
                view.name,
                human_bytes(view.bytes),
                if removed.is_empty() {
                    String::new()
                } else {
                    format!("; removed {}", removed.join(", "))
                }
            ),
            json!({
                "name": view.name,
                "path": view.path,
                "bytes": view.bytes,
                "ms": ms,
                "removed": removed,
                "reason": reason,
            }),
        );
        Ok(view)
    }

    /// The schedule, until the role stops: right away and then every
    /// minute, refresh `last_backup` from the folder; while this node runs
    /// the primary, take a backup when the newest is older than `every`.
    pub async fn schedule(self: Arc<Self>, mut status: watch::Receiver<Arc<DbStatus>>) {
        let mut was_primary = false;
        let mut next = tokio::time::Instant::now();
        let mut failed_at: Option<Instant> = None;
        let mut failures: u32 = 0;
        loop {
            tokio::select! {
                _ = self.stop.cancelled() => return,
                _ = tokio::time::sleep_until(next) => {}
                changed = status.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    let primary = is_running_primary(&status.borrow_and_update());
                    let became = primary && !was_primary;
                    was_primary = primary;
                    if !became {
                        continue;
                    }
                }
            }
            was_primary = is_running_primary(&status.borrow());
            next = tokio::time::Instant::now() + CHECK_EVERY;
            let Some(settings) = self.settings() else {
                self.show(None);
                continue;
            };
            let dir = settings.dir.clone();
            let newest = blocking(move || Ok(list(&dir).into_iter().next()))
                .await
                .ok()
                .flatten();
            self.show(newest.clone());
            if !was_primary
                || !due(
                    newest.as_ref(),
                    settings.every,
                    crate::node::events::now_ms(),
                )
            {
                continue;
            }
            let retry = retry_after(failures).min(settings.every);
            if let Some(waited) = failed_at.map(|t| t.elapsed()) {
                if waited < retry {
                    // Wake when the retry is due, not a minute later.
                    next = tokio::time::Instant::now() + (retry - waited).min(CHECK_EVERY);
                    continue;
                }
            }
            match self.take_now(Why::Scheduled).await {
                Ok(_) => {
                    failed_at = None;
                    failures = 0;
                }
                // A backup requested through the API is running: it
                // counts, the next check sees it.
                Err(BackupError::Busy) => {}
                Err(_) => {
                    failed_at = Some(Instant::now());
                    failures = failures.saturating_add(1);
                    next = tokio::time::Instant::now() + retry_after(failures).min(CHECK_EVERY);
                }
            }
        }
    }

    fn show(&self, newest: Option<BackupView>) {
        self.status.send_if_modified(|arc| {
            if arc.last_backup == newest {
                return false;
            }
            Arc::make_mut(arc).last_backup = newest;
            true
        });
    }
}

/// The wait before the next attempt after `failures` failed ones in a row.
fn retry_after(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(10);
    (RETRY_AFTER * 2u32.pow(doublings)).min(RETRY_AFTER_MAX)
}

fn is_running_primary(s: &DbStatus) -> bool {
    s.state == DbState::Running && s.role == Some(DbRole::Primary)
}

fn human_bytes(n: u64) -> String {
    const MIB: f64 = 1024.0 * 1024.0;
    if n >= 1 << 30 {
        format!("{:.1} GiB", n as f64 / (MIB * 1024.0))
    } else {
        format!("{:.1} MiB", n as f64 / MIB)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_backup_is_retried_soon_then_less_and_less_often() {
        let waits: Vec<u64> = (1..=7).map(|n| retry_after(n).as_secs()).collect();
        assert_eq!(waits, vec![30, 60, 120, 240, 480, 600, 600]);
        assert_eq!(retry_after(u32::MAX), RETRY_AFTER_MAX);
    }

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn view(name: &str) -> BackupView {
        let (taken_at_ms, node) = parse_name(name).expect("our name");
        BackupView {
            name: name.into(),
            path: PathBuf::from(name),
            taken_at_ms,
            bytes: 0,
            node,
        }
    }

    #[test]
    fn names_carry_the_utc_start_and_the_host() {
        // 2024-03-05 06:07:08 UTC.
        let name = backup_name(at(1_709_618_828), "pi-1");
        assert_eq!(name, "piha-20240305T060708Z-pi-1");
        assert_eq!(
            parse_name(&name),
            Some((1_709_618_828_000, "pi-1".to_string()))
        );
        assert_eq!(
            parse_partial(&format!("{name}.partial")),
            Some((1_709_618_828_000, "pi-1".to_string()))
        );
    }

    #[test]
    fn other_names_are_not_ours() {
        for name in [
            "piha-20240305T060708Z-pi-1.partial",
            "piha-20240305T060708Z-",
            "piha-20240305T060708Z",
            "piha-20240305X060708Z-pi-1",
            "piha-2024030ST060708Z-pi-1",
            "piha-20241305T060708Z-pi-1",
            "piha-20240305T060708Z-pi 1",
            "piha-20240305T060708Z-pi/1",
            "base-20240305T060708Z-pi-1",
            "notes",
            "piha-é0240305T060708Z-pi-1",
        ] {
            assert_eq!(parse_name(name), None, "{name}");
        }
        assert_eq!(parse_partial("piha-20240305T060708Z-pi-1"), None);
    }

    #[test]
    fn a_backup_is_due_when_none_is_younger_than_every() {
        let b = view("piha-20240305T060708Z-pi-1");
        let hour = Duration::from_secs(3600);
        assert!(due(None, hour, 0));
        assert!(!due(Some(&b), hour, b.taken_at_ms + 3_599_999));
        assert!(due(Some(&b), hour, b.taken_at_ms + 3_600_000));
        // A peer's clock ahead of ours: fresh, not due.
        assert!(!due(Some(&b), hour, b.taken_at_ms - 10_000));
    }

    fn make(dir: &Path, name: &str, complete: bool) {
        let p = dir.join(name);
        std::fs::create_dir_all(&p).unwrap();
        std::fs::write(p.join("base.tar.gz"), vec![0u8; 100]).unwrap();
        if complete {
            std::fs::write(p.join("backup_manifest"), b"{}").unwrap();
        }
    }

    #[test]
    fn list_and_prune_see_only_complete_backups_of_our_pattern() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        make(d, "piha-20240101T000000Z-pi-1", true);
        make(d, "piha-20240102T000000Z-pi-2", true);
        make(d, "piha-20240103T000000Z-pi-1", true);
        make(d, "piha-20240104T000000Z-pi-1.partial", true);
        make(d, "piha-20240105T000000Z-pi-3", false);
        make(d, "my-own-backup", true);
        std::fs::write(d.join("piha-20240106T000000Z-pi-1"), b"a file").unwrap();
        let names = |v: Vec<BackupView>| v.into_iter().map(|b| b.name).collect::<Vec<_>>();
        let found = list(d);
        assert_eq!(found[0].bytes, 102);
        assert_eq!(found[0].node, "pi-1");
        assert_eq!(
            names(found),
            [
                "piha-20240103T000000Z-pi-1",
                "piha-20240102T000000Z-pi-2",
                "piha-20240101T000000Z-pi-1"
            ]
        );
        assert_eq!(prune(d, 2).unwrap(), ["piha-20240101T000000Z-pi-1"]);
        assert_eq!(prune(d, 0).unwrap(), ["piha-20240102T000000Z-pi-2"]);
        assert_eq!(names(list(d)), ["piha-20240103T000000Z-pi-1"]);
        for kept in [
            "piha-20240104T000000Z-pi-1.partial",
            "piha-20240105T000000Z-pi-3",
            "my-own-backup",
            "piha-20240106T000000Z-pi-1",
        ] {
            assert!(d.join(kept).exists(), "{kept}");
        }
        assert!(list(&d.join("missing")).is_empty());
    }

    #[test]
    fn partials_of_this_node_and_dead_ones_of_others_are_removed() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        let now = parse_name("piha-20240110T120000Z-x").unwrap().0;
        make(d, "piha-20240110T115900Z-pi-1.partial", false);
        make(d, "piha-20240110T115900Z-pi-2.partial", false);
        make(d, "piha-20240110T010000Z-pi-3.partial", false);
        make(d, "other.partial", false);
        let mut removed = remove_partials(d, "pi-1", now);
        removed.sort();
        assert_eq!(
            removed,
            [
                "piha-20240110T010000Z-pi-3.partial",
                "piha-20240110T115900Z-pi-1.partial"
            ]
        );
        assert!(d.join("piha-20240110T115900Z-pi-2.partial").exists());
        assert!(d.join("other.partial").exists());
    }
}
