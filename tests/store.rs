//! The event store against real SQLite files in temp dirs: what a node relies
//! on (data survives restarts, the card sees few commits, nothing blocks, a
//! corrupt file never stops the node).

use std::fs::{self, OpenOptions};
use std::io::{Seek, SeekFrom, Write as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use piha::store::{
    self, Event, OpenReport, QUEUE_ITEMS, RING_EVENTS, Severity, Store, StoreConfig, StoreError,
    StoreWorker,
};
use rusqlite::Connection;
use serde_json::{Value, json};

const SHUTDOWN: Duration = Duration::from_secs(10);

fn config(flush_ms: u64) -> StoreConfig {
    StoreConfig {
        retention: Duration::from_secs(24 * 3600),
        max_bytes: 1 << 30,
        flush_interval: Duration::from_millis(flush_ms),
    }
}

fn open(dir: &Path, flush_ms: u64) -> (Store, StoreWorker, OpenReport) {
    store::open(dir, config(flush_ms)).expect("store opens")
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as i64
}

/// A recent time: well inside the one-day retention the tests configure, so
/// retention at reopen keeps the rows.
fn base() -> i64 {
    now_ms() - 3_600_000
}

fn ev(at_ms: i64, message: impl Into<String>) -> Event {
    Event {
        at_ms,
        node: "pi-1".into(),
        component: "test".into(),
        severity: Severity::Warning,
        message: message.into(),
        details: json!({"at": at_ms, "tags": ["a", "b"]}),
    }
}

fn db_path(dir: &Path) -> PathBuf {
    dir.join(store::DB_FILE)
}

fn corrupt_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .expect("read_dir")
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            name.starts_with("piha.db.corrupt-") && !name.ends_with("-wal")
        })
        .collect();
    v.sort();
    v
}

/// What SQLite itself says about a file, independent of the store.
fn quick_check_ok(path: &Path) -> bool {
    let Ok(conn) = Connection::open(path) else {
        return false;
    };
    let rows: Result<Vec<String>, _> = conn
        .prepare("PRAGMA quick_check")
        .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect());
    matches!(rows.as_deref(), Ok([ok]) if ok == "ok")
}

async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A store whose events table spans many pages, shut down cleanly (so the
/// WAL is checkpointed into the main file and removed).
async fn make_multi_page_db(dir: &Path) -> usize {
    let (s, w, _) = open(dir, 20);
    let n = 3000;
    for i in 0..n {
        s.record(ev(base() + i as i64, format!("{i:05} {}", "x".repeat(400))));
    }
    s.flush().await.expect("flush");
    drop(s);
    w.shutdown(SHUTDOWN).expect("shutdown");
    assert!(
        !dir.join("piha.db-wal").exists(),
        "WAL checkpointed on close"
    );
    let len = fs::metadata(db_path(dir)).expect("db exists").len();
    assert!(len > 1 << 20, "db is multi-page: {len} bytes");
    assert!(
        quick_check_ok(&db_path(dir)),
        "healthy before we corrupt it"
    );
    n
}

/// After a recovery: the report names a file that exists, and the fresh
/// database takes writes and reads them back.
async fn assert_recovered_and_working(dir: &Path, report: OpenReport, s: Store, w: StoreWorker) {
    let r = report.recovered.expect("open reports a recovery");
    assert!(
        r.moved_to.exists(),
        "moved-aside file {} exists",
        r.moved_to.display()
    );
    assert!(!r.reason.is_empty());
    assert_eq!(corrupt_files(dir), vec![r.moved_to.clone()]);
    assert_eq!(s.stats().recoveries, 1);
    assert_eq!(
        s.events_since(0, 10).await.expect("query").len(),
        0,
        "fresh db is empty"
    );
    s.record(ev(5, "after recovery"));
    s.record_samples(5, &[("cpu", 0.5)]);
    s.flush().await.expect("fresh db takes writes");
    let events = s.events_since(0, 10).await.expect("query");
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].message, "after recovery");
    drop(s);
    w.shutdown(SHUTDOWN).expect("shutdown");
    assert!(quick_check_ok(&db_path(dir)), "fresh db passes quick_check");
}

#[test]
fn handles_can_move_between_threads() {
    fn shared<T: Send + Sync + Clone + 'static>() {}
    fn sendable<T: Send + 'static>() {}
    shared::<Store>();
    sendable::<StoreWorker>();
}

#[tokio::test]
async fn events_and_samples_round_trip_after_shutdown_and_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (s, w, report) = open(dir.path(), 20);
    assert!(report.recovered.is_none());
    let t = base();
    let mut written = Vec::new();
    for i in 0..10 {
        let mut e = ev(t + i, format!("event {i}"));
        e.severity = [Severity::Info, Severity::Warning, Severity::Error][i as usize % 3];
        s.record(e.clone());
        written.push(e);
    }
    s.record_samples(t, &[("cpu.load1", 0.25), ("mem.used", 1e9)]);
    s.record_samples(t + 100, &[("cpu.load1", f64::NAN), ("temp", -3.5)]);
    drop(s);
    w.shutdown(SHUTDOWN).expect("shutdown flushes and joins");

    let (s, w, report) = open(dir.path(), 20);
    assert!(report.recovered.is_none());
    assert_eq!(s.events_since(0, 100).await.expect("events"), written);
    assert_eq!(
        s.events_since(t + 5, 2).await.expect("events"),
        written[5..7].to_vec()
    );

    let samples = s.samples_since(0).await.expect("samples");
    let got: Vec<(i64, &str, String)> = samples
        .iter()
        .map(|x| (x.at_ms, x.series.as_str(), format!("{}", x.value)))
        .collect();
    assert_eq!(
        got,
        [
            (t, "cpu.load1", "0.25".to_owned()),
            (t, "mem.used", "1000000000".to_owned()),
            (t + 100, "cpu.load1", "NaN".to_owned()),
            (t + 100, "temp", "-3.5".to_owned()),
        ]
    );
    assert_eq!(s.samples_since(t + 50).await.expect("samples").len(), 2);

    // The ring is preloaded from the db at open, newest first.
    let recent = s.recent_events(3);
    assert_eq!(
        recent,
        vec![written[9].clone(), written[8].clone(), written[7].clone()]
    );
    let stats = s.stats();
    assert_eq!((stats.event_rows, stats.sample_rows), (10, 4));
    assert!(stats.db_bytes > 0);
    drop(s);
    w.shutdown(SHUTDOWN).expect("shutdown");

    // The file has the settings the card needs.
    let conn = Connection::open(db_path(dir.path())).expect("raw open");
    let q = |sql: &str| -> String {
        conn.query_row(sql, [], |r| r.get::<_, rusqlite::types::Value>(0))
            .map(|v| format!("{v:?}"))
            .expect(sql)
    };
    assert_eq!(q("PRAGMA journal_mode"), "Text(\"wal\")");
    assert_eq!(q("PRAGMA auto_vacuum"), "Integer(2)", "incremental");
    assert_eq!(
        q("PRAGMA user_version"),
        format!("Integer({})", store::SCHEMA_VERSION)
    );
}

#[tokio::test]
async fn writes_are_batched_into_few_commits() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A long interval: only the size threshold can cause a commit.
    let (s, w, _) = open(dir.path(), 60_000);
    for i in 0..1000 {
        s.record(ev(i, "batched"));
    }
    wait_for("the 1000-row batch to commit", || s.stats().queued == 0).await;
    let stats = s.stats();
    assert_eq!(stats.flushes, 1, "1000 events, one commit: {stats:?}");
    assert_eq!(stats.event_rows, 1000);
    assert!(stats.last_flush_ms.is_some());

    // Below the threshold nothing is committed until the interval is up, but
    // queries already see the writes.
    for i in 0..10 {
        s.record(ev(10_000 + i, "pending"));
    }
    let seen = s.events_since(10_000, 100).await.expect("query");
    assert_eq!(seen.len(), 10, "uncommitted events are visible to queries");
    assert_eq!(s.stats().flushes, 1);
    assert_eq!(s.stats().queued, 10);
    drop(s);
    w.shutdown(SHUTDOWN).expect("shutdown");
}

#[tokio::test]
async fn batch_commits_after_the_flush_interval() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (s, w, _) = open(dir.path(), 400);
    let t0 = Instant::now();
    for i in 0..50 {
        s.record(ev(i, "x"));
        s.record_samples(i, &[("a", 1.0), ("b", 2.0)]);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(s.stats().flushes, 0, "no commit before the interval");
    wait_for("the interval flush", || s.stats().flushes >= 1).await;
    assert!(t0.elapsed() >= Duration::from_millis(350));
    let stats = s.stats();
    assert_eq!(stats.flushes, 1, "{stats:?}");
    assert_eq!(
        (stats.event_rows, stats.sample_rows, stats.queued),
        (50, 100, 0)
    );
    drop(s);
    w.shutdown(SHUTDOWN).expect("shutdown");
}

#[tokio::test]
async fn full_queue_drops_and_counts_instead_of_blocking() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (s, w, _) = open(dir.path(), 50);
    s.record(ev(0, "first"));
    s.flush().await.expect("flush");

    // Another connection holds the write lock: the worker's next commit waits
    // (SQLite busy timeout), like a stalled SD card.
    let blocker = Connection::open(db_path(dir.path())).expect("raw open");
    blocker
        .execute_batch("BEGIN IMMEDIATE")
        .expect("take write lock");

    let total = 12_000;
    let t0 = Instant::now();
    for i in 0..total {
        s.record(ev(i, "flood"));
    }
    let took = t0.elapsed();
    assert!(
        took < Duration::from_millis(1500),
        "record never blocks: {took:?}"
    );
    let stats = s.stats();
    assert!(stats.dropped > 0, "{stats:?}");
    assert!(
        stats.queued <= (QUEUE_ITEMS + store::FLUSH_ROWS + 1) as u64,
        "queue stays bounded: {stats:?}"
    );
    assert_eq!(
        stats.queued + stats.dropped,
        total as u64,
        "every item is queued or counted"
    );

    blocker.execute_batch("ROLLBACK").expect("release lock");
    drop(blocker);
    s.flush().await.expect("flush after the lock is gone");
    let stats = s.stats();
    assert_eq!(stats.queued, 0, "{stats:?}");
    let stored = s.events_since(0, 100_000).await.expect("query").len() as u64;
    assert_eq!(
        stored,
        1 + total as u64 - stats.dropped,
        "everything not dropped was kept"
    );
    drop(s);
    w.shutdown(SHUTDOWN).expect("shutdown");
}

#[tokio::test]
async fn retention_deletes_rows_older_than_the_retention_period() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (s, w, _) = open(dir.path(), 20);
    let now = now_ms();
    let hour = 3_600_000;
    for i in 0..20 {
        s.record(ev(now - 3 * hour + i, "old"));
        s.record(ev(now - 10 + i, "new"));
        s.record_samples(now - 3 * hour + i, &[("old", 1.0)]);
        s.record_samples(now - 10 + i, &[("new", 1.0)]);
    }
    s.flush().await.expect("flush");
    // Nothing is older than the configured day yet.
    let out = s.run_retention().await.expect("retention");
    assert_eq!(out.deleted_events() + out.deleted_samples(), 0);

    // A config reload shortens retention; the worker applies it at once.
    s.set_config(StoreConfig {
        retention: Duration::from_secs(3600),
        ..config(20)
    });
    wait_for("retention after config change", || {
        s.stats().event_rows == 20
    })
    .await;
    let events = s.events_since(0, 100).await.expect("query");
    assert_eq!(events.len(), 20);
    assert!(events.iter().all(|e| e.message == "new"));
    let samples = s.samples_since(0).await.expect("query");
    assert_eq!(samples.len(), 20);
    assert!(samples.iter().all(|x| x.series == "new"));
    assert_eq!(s.stats().sample_rows, 20);
    drop(s);
    w.shutdown(SHUTDOWN).expect("shutdown");
}

#[tokio::test]
async fn retention_runs_at_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (s, w, _) = open(dir.path(), 20);
    let now = now_ms();
    s.record(ev(now - 2 * 3_600_000, "old"));
    s.record(ev(now, "new"));
    drop(s);
    w.shutdown(SHUTDOWN).expect("shutdown");

    let short = StoreConfig {
        retention: Duration::from_secs(3600),
        ..config(20)
    };
    let (s, w, _) = store::open(dir.path(), short).expect("reopen");
    let events = s.events_since(0, 10).await.expect("query");
    assert_eq!(
        events
            .iter()
            .map(|e| e.message.as_str())
            .collect::<Vec<_>>(),
        ["new"]
    );
    drop(s);
    w.shutdown(SHUTDOWN).expect("shutdown");
}

#[tokio::test]
async fn retention_trims_oldest_samples_to_max_bytes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (s, w, _) = open(dir.path(), 20);
    let now = now_ms();
    for i in 0..40 {
        s.record(ev(now - 1000 + i, "keep me"));
    }
    let names: Vec<String> = (0..500).map(|i| format!("series.{i:03}")).collect();
    for t in 0..100 {
        let values: Vec<(&str, f64)> = names.iter().map(|n| (n.as_str(), t as f64)).collect();
        s.record_samples(now - 100_000 + t * 100, &values);
    }
    s.flush().await.expect("flush");
    let before = s.stats();
    assert_eq!(before.sample_rows, 50_000);
    assert!(before.db_bytes > 1 << 20, "{before:?}");

    let max_bytes = 256 * 1024;
    s.set_config(StoreConfig {
        max_bytes,
        ..config(20)
    });
    let out = s.run_retention().await.expect("retention");
    // The config change already ran retention (ahead of this request in the
    // worker's queue), so this run may find nothing left to do.
    let after = s.stats();
    assert!(out.complete, "{out:?}");
    assert!(
        after.db_bytes <= max_bytes + 16 * 4096,
        "trimmed to size: {after:?}"
    );
    assert!(
        after.sample_rows < 50_000 && after.sample_rows > 0,
        "{after:?}"
    );
    assert_eq!(
        after.event_rows, 40,
        "events kept while samples can go: {after:?}"
    );
    // The oldest went first.
    let samples = s.samples_since(0).await.expect("query");
    assert_eq!(samples.len() as u64, after.sample_rows);
    assert!(samples[0].at_ms > now - 100_000, "oldest samples deleted");
    assert_eq!(
        samples.last().map(|x| x.at_ms),
        Some(now - 100_000 + 99 * 100)
    );
    drop(s);
    w.shutdown(SHUTDOWN).expect("shutdown");
    let file = fs::metadata(db_path(dir.path())).expect("db").len();
    assert!(file <= max_bytes + 16 * 4096, "file shrank on disk: {file}");
}

#[tokio::test]
async fn size_trim_takes_events_when_no_samples_are_left() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (s, w, _) = open(dir.path(), 20);
    let now = now_ms();
    for i in 0..3000 {
        s.record(ev(now - 10_000 + i, "y".repeat(300)));
    }
    s.flush().await.expect("flush");
    s.set_config(StoreConfig {
        max_bytes: 128 * 1024,
        ..config(20)
    });
    let _ = s.run_retention().await.expect("retention");
    let stats = s.stats();
    assert!(stats.event_rows > 0 && stats.event_rows < 3000, "{stats:?}");
    assert!(stats.db_bytes <= 128 * 1024 + 16 * 4096, "{stats:?}");
    let events = s.events_since(0, 10_000).await.expect("query");
    assert_eq!(
        events.last().map(|e| e.at_ms),
        Some(now - 10_000 + 2999),
        "newest kept"
    );
    drop(s);
    w.shutdown(SHUTDOWN).expect("shutdown");
}

#[tokio::test]
async fn recovers_from_overwritten_header() {
    let dir = tempfile::tempdir().expect("tempdir");
    make_multi_page_db(dir.path()).await;
    let mut f = OpenOptions::new()
        .write(true)
        .open(db_path(dir.path()))
        .expect("open");
    f.write_all(&[0x5a; 100]).expect("overwrite header");
    drop(f);
    assert!(!quick_check_ok(&db_path(dir.path())));
    let (s, w, report) = open(dir.path(), 20);
    assert_recovered_and_working(dir.path(), report, s, w).await;
}

#[tokio::test]
async fn recovers_from_a_corrupt_page_in_the_middle() {
    let dir = tempfile::tempdir().expect("tempdir");
    make_multi_page_db(dir.path()).await;
    let path = db_path(dir.path());
    // Find a leaf page of the events btree in the middle of the file.
    let (page_size, page) = {
        let conn = Connection::open(&path).expect("raw open");
        let page_size: i64 = conn
            .query_row("PRAGMA page_size", [], |r| r.get(0))
            .expect("page_size");
        let pages: Vec<i64> = conn
            .prepare("SELECT pageno FROM dbstat WHERE name = 'events' AND pagetype = 'leaf' ORDER BY pageno")
            .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
            .expect("dbstat");
        assert!(pages.len() > 50, "events span many pages: {}", pages.len());
        (page_size, pages[pages.len() / 2])
    };
    let original_len = fs::metadata(&path).expect("db").len();
    let mut f = OpenOptions::new().write(true).open(&path).expect("open");
    f.seek(SeekFrom::Start(((page - 1) * page_size) as u64))
        .expect("seek");
    f.write_all(&vec![0xa5; page_size as usize])
        .expect("overwrite page");
    drop(f);
    assert_eq!(fs::metadata(&path).expect("db").len(), original_len);
    assert!(!quick_check_ok(&path), "the test really corrupted the file");

    let (s, w, report) = open(dir.path(), 20);
    let reason = report
        .recovered
        .as_ref()
        .map(|r| r.reason.clone())
        .unwrap_or_default();
    assert!(
        reason.contains("quick_check"),
        "reason names the check: {reason}"
    );
    assert_recovered_and_working(dir.path(), report, s, w).await;
}

#[tokio::test]
async fn recovers_from_a_truncated_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    make_multi_page_db(dir.path()).await;
    let path = db_path(dir.path());
    let len = fs::metadata(&path).expect("db").len();
    let f = OpenOptions::new().write(true).open(&path).expect("open");
    f.set_len(len / 2 + 123).expect("truncate");
    drop(f);
    assert!(!quick_check_ok(&path), "the test really corrupted the file");
    let (s, w, report) = open(dir.path(), 20);
    assert_recovered_and_working(dir.path(), report, s, w).await;
}

#[tokio::test]
async fn recovers_from_random_garbage() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let garbage: Vec<u8> = (0..64 * 1024)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect();
    fs::write(db_path(dir.path()), &garbage).expect("write garbage");
    let (s, w, report) = open(dir.path(), 20);
    let moved = report
        .recovered
        .as_ref()
        .map(|r| r.moved_to.clone())
        .expect("recovered");
    assert_eq!(
        fs::read(&moved).expect("moved file"),
        garbage,
        "kept byte for byte"
    );
    assert_recovered_and_working(dir.path(), report, s, w).await;
}

#[tokio::test]
async fn empty_file_is_a_valid_empty_database() {
    let dir = tempfile::tempdir().expect("tempdir");
    fs::write(db_path(dir.path()), b"").expect("create empty file");
    let (s, w, report) = open(dir.path(), 20);
    assert!(report.recovered.is_none(), "no recovery for an empty file");
    assert!(corrupt_files(dir.path()).is_empty());
    s.record(ev(1, "hello"));
    s.flush().await.expect("flush");
    assert_eq!(s.events_since(0, 10).await.expect("query").len(), 1);
    drop(s);
    w.shutdown(SHUTDOWN).expect("shutdown");
    let conn = Connection::open(db_path(dir.path())).expect("raw open");
    let av: i64 = conn
        .query_row("PRAGMA auto_vacuum", [], |r| r.get(0))
        .expect("pragma");
    assert_eq!(av, 2, "auto_vacuum set before the first table");
}

#[tokio::test]
async fn wal_and_shm_go_with_the_corrupt_database() {
    let dir = tempfile::tempdir().expect("tempdir");
    let wal = dir.path().join("piha.db-wal");
    let shm = dir.path().join("piha.db-shm");
    fs::write(db_path(dir.path()), [0xffu8; 4096]).expect("garbage main file");
    fs::write(&wal, [0xeeu8; 1000]).expect("garbage WAL");
    fs::write(&shm, [0xddu8; 32768]).expect("garbage shm");

    let (s, w, report) = open(dir.path(), 20);
    let moved = report
        .recovered
        .as_ref()
        .map(|r| r.moved_to.clone())
        .expect("recovered");
    let mut moved_wal = moved.into_os_string();
    moved_wal.push("-wal");
    assert_eq!(
        fs::read(&moved_wal).expect("WAL moved aside"),
        [0xeeu8; 1000]
    );
    // The fresh database's own WAL/shm, if any, are not the old bytes.
    assert_ne!(fs::read(&wal).unwrap_or_default(), [0xeeu8; 1000]);
    assert_ne!(fs::read(&shm).unwrap_or_default(), [0xddu8; 32768]);
    assert_recovered_and_working(dir.path(), report, s, w).await;
}

#[tokio::test]
async fn a_schema_from_a_newer_binary_is_moved_aside() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (s, w, _) = open(dir.path(), 20);
    drop(s);
    w.shutdown(SHUTDOWN).expect("shutdown");
    let conn = Connection::open(db_path(dir.path())).expect("raw open");
    conn.execute_batch("PRAGMA user_version = 99")
        .expect("bump version");
    drop(conn);
    let (s, w, report) = open(dir.path(), 20);
    let reason = report
        .recovered
        .as_ref()
        .map(|r| r.reason.clone())
        .unwrap_or_default();
    assert!(reason.contains("schema version 99"), "{reason}");
    assert_recovered_and_working(dir.path(), report, s, w).await;
}

#[tokio::test]
async fn at_most_three_corrupt_files_are_kept() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut moved = Vec::new();
    for round in 0..5u8 {
        fs::write(db_path(dir.path()), vec![round; 8192]).expect("garbage");
        let (s, w, report) = open(dir.path(), 20);
        moved.push(report.recovered.expect("recovered").moved_to);
        drop(s);
        w.shutdown(SHUTDOWN).expect("shutdown");
    }
    let kept = corrupt_files(dir.path());
    assert_eq!(kept, moved[2..].to_vec(), "the newest three are kept");
    for (round, path) in moved.iter().enumerate().skip(2) {
        assert_eq!(fs::read(path).expect("kept file")[0], round as u8);
    }
}

#[tokio::test]
async fn corruption_found_at_runtime_is_recovered_by_the_worker() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (s, w, _) = open(dir.path(), 20);
    s.record(ev(1, "before"));
    s.flush().await.expect("flush");

    // Point the events table at a page that does not exist, through SQLite
    // itself so the worker's connection sees the change on its next write.
    let path = db_path(dir.path());
    let conn = Connection::open(&path).expect("raw open");
    let version: i64 = conn
        .query_row("PRAGMA schema_version", [], |r| r.get(0))
        .expect("version");
    conn.execute_batch(&format!(
        "PRAGMA writable_schema = ON;
         UPDATE sqlite_master SET rootpage = 100000 WHERE name = 'events';
         PRAGMA schema_version = {};",
        version + 1
    ))
    .expect("corrupt the schema");
    drop(conn);

    s.record(ev(2, "after"));
    s.flush()
        .await
        .expect("the batch lands in the fresh database");
    let stats = s.stats();
    assert_eq!(stats.recoveries, 1, "{stats:?}");
    assert_eq!(corrupt_files(dir.path()).len(), 1);

    let newest = &s.recent_events(1)[0];
    assert_eq!(
        (newest.component.as_str(), newest.severity),
        ("store", Severity::Error)
    );
    assert!(newest.message.contains("corrupt"), "{}", newest.message);
    let events = s.events_since(0, 10).await.expect("query");
    let messages: Vec<&str> = events.iter().map(|e| e.component.as_str()).collect();
    assert!(
        messages.contains(&"store"),
        "synthetic event stored: {messages:?}"
    );
    assert!(
        events.iter().any(|e| e.message == "after"),
        "pending write kept"
    );
    assert_eq!(stats.event_rows, 2);
    drop(s);
    w.shutdown(SHUTDOWN).expect("shutdown");
    assert!(quick_check_ok(&path));
}

#[tokio::test]
async fn huge_message_and_details_are_truncated_not_rejected() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (s, w, _) = open(dir.path(), 20);
    let mut e = ev(1, "m".repeat(1 << 20));
    e.details = json!({ "blob": "d".repeat(1 << 20), "n": 1 });
    s.record(e);
    s.flush().await.expect("flush");
    let stored = &s.events_since(0, 10).await.expect("query")[0];
    assert!(stored.message.len() <= store::MAX_MESSAGE_BYTES);
    assert!(stored.message.contains("truncated"), "marker present");
    assert!(stored.message.starts_with("mmmm"));
    assert_eq!(stored.details["truncated"], Value::Bool(true));
    assert!(stored.details.to_string().len() <= store::MAX_DETAILS_BYTES);
    assert_eq!(
        &s.recent_events(1)[0],
        stored,
        "ring holds the same capped event"
    );
    drop(s);
    w.shutdown(SHUTDOWN).expect("shutdown");
}

#[tokio::test]
async fn shutdown_flushes_pending_writes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (s, w, _) = open(dir.path(), 3_600_000);
    for i in 0..5 {
        s.record(ev(base() + i, "pending"));
    }
    s.record_samples(base(), &[("x", 1.0)]);
    assert_eq!(s.stats().flushes, 0);
    w.shutdown(SHUTDOWN).expect("shutdown");
    // The handle outlives the worker: writes are dropped and counted, queries
    // say the store is closed.
    s.record(ev(9, "too late"));
    assert_eq!(s.stats().dropped, 1);
    assert!(matches!(s.flush().await, Err(StoreError::Closed { .. })));
    drop(s);

    let (s, w, _) = open(dir.path(), 20);
    assert_eq!(s.events_since(0, 10).await.expect("query").len(), 5);
    assert_eq!(s.samples_since(0).await.expect("query").len(), 1);
    drop(s);
    w.shutdown(SHUTDOWN).expect("shutdown");
}

#[tokio::test]
async fn dropping_every_handle_flushes_and_ends_the_worker() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (s, w, _) = open(dir.path(), 3_600_000);
    let s2 = s.clone();
    s.record(ev(base(), "one"));
    s2.record(ev(base(), "two"));
    drop(s);
    drop(s2);
    // Nothing left to tell; shutdown just joins the already-ending thread.
    w.shutdown(SHUTDOWN).expect("worker ended on its own");
    let (s, w, _) = open(dir.path(), 20);
    assert_eq!(s.events_since(0, 10).await.expect("query").len(), 2);
    drop(s);
    w.shutdown(SHUTDOWN).expect("shutdown");
}

#[tokio::test]
async fn recent_events_ring_is_bounded_and_newest_first() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (s, w, _) = open(dir.path(), 20);
    for i in 0..(RING_EVENTS as i64 + 100) {
        s.record(ev(i, format!("{i}")));
    }
    let recent = s.recent_events(usize::MAX);
    assert_eq!(recent.len(), RING_EVENTS);
    assert_eq!(recent[0].at_ms, RING_EVENTS as i64 + 99);
    assert_eq!(recent[RING_EVENTS - 1].at_ms, 100);
    drop(s);
    w.shutdown(SHUTDOWN).expect("shutdown");
}

#[test]
fn open_fails_clearly_when_no_database_can_be_made() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("not-a-dir");
    fs::write(&file, b"x").expect("write");
    let err = match store::open(&file.join("store"), config(20)) {
        Ok(_) => panic!("open under a regular file must fail"),
        Err(e) => e,
    };
    let msg = err.to_string();
    assert!(matches!(err, StoreError::CreateDir { .. }), "{err:?}");
    assert!(
        msg.contains("not-a-dir/store"),
        "error names the path: {msg}"
    );
}

#[tokio::test]
async fn a_directory_in_place_of_the_database_is_moved_aside() {
    let dir = tempfile::tempdir().expect("tempdir");
    fs::create_dir(db_path(dir.path())).expect("mkdir piha.db");
    let (s, w, report) = open(dir.path(), 20);
    assert!(report.recovered.is_some());
    s.record(ev(1, "ok"));
    s.flush().await.expect("flush");
    drop(s);
    w.shutdown(SHUTDOWN).expect("shutdown");
}

#[test]
fn severity_displays_and_serializes_lowercase() {
    assert_eq!(Severity::Warning.to_string(), "warning");
    assert_eq!(
        serde_json::to_string(&Severity::Error).expect("json"),
        "\"error\""
    );
    assert_eq!(
        serde_json::from_str::<Severity>("\"info\"").expect("json"),
        Severity::Info
    );
    assert!(Severity::Info < Severity::Warning && Severity::Warning < Severity::Error);
}
