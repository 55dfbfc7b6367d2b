//! Base backups of the db role, end to end, with real PostgreSQL 15 on
//! three db nodes on loopback: the primary takes one by itself as soon as
//! it runs, `POST /api/v1/db/backup` takes one on any db node, only `keep`
//! stay, a `.partial` leftover is never listed and is removed by the next
//! run, and `piha db-restore` turns a backup into a data directory that a
//! plain `postgres` starts on, with exactly the rows the backup saw.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::db_rig::DbRig;
use common::node::{BIN, TOKEN, http, wait_until};
use common::pg::{pg_bin, run_as};
use common::pooler::APP_DB;
use serde_json::Value;

const LIMIT: Duration = Duration::from_secs(120);

fn backup_section(every: &str, keep: u32) -> String {
    format!(
        "[db]\nbackup = {{ dir = \"@RIG_DIR@/backups\", every = \"{every}\", keep = {keep} }}\n"
    )
}

/// `POST /api/v1/db/backup` on node `i`: (status, JSON body).
fn post_backup(rig: &DbRig, i: usize, token: Option<&str>) -> (u16, Value) {
    let auth = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth
        .as_deref()
        .map(|a| vec![("Authorization", a)])
        .unwrap_or_default();
    let (code, body) = http(
        rig.cluster.nodes[i].admin,
        "POST",
        "/api/v1/db/backup",
        &headers,
    )
    .unwrap_or_else(|e| panic!("POST /api/v1/db/backup on node {i}: {e}"));
    let doc = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    (code, doc)
}

/// The complete backups in the folder (our names, no `.partial`), sorted.
fn complete(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().to_str().map(str::to_owned))
                .filter(|n| n.starts_with("piha-") && !n.ends_with(".partial"))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

fn last_backup(rig: &DbRig, i: usize) -> Result<String, String> {
    let d = rig.db(i)?;
    d["last_backup"]["name"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("no last_backup yet ({} {})", d["state"], d["role"]))
}

fn db_restore(from: &Path, to: &Path) -> Output {
    Command::new(BIN)
        .arg("db-restore")
        .arg("--from")
        .arg(from)
        .arg("--to")
        .arg(to)
        .arg("--bindir")
        .arg(pg_bin())
        .output()
        .expect("run piha db-restore")
}

/// A plain `postgres` on a restored data directory, on a unix socket only;
/// stopped (SIGINT: fast shutdown) when dropped, also when the test fails.
struct PlainPostgres {
    child: Option<Child>,
    socket_dir: PathBuf,
    log: PathBuf,
    port: u16,
}

impl PlainPostgres {
    fn start(data: &Path, socket_dir: &Path, log: &Path) -> PlainPostgres {
        std::fs::create_dir_all(socket_dir).expect("socket dir");
        let log_file = std::fs::File::create(log).expect("log file");
        // Unix socket only: the port is just the socket's name.
        let port = 6543;
        let mut cmd = Command::new(pg_bin().join("postgres"));
        cmd.arg("-D")
            .arg(data)
            .args(["-p", &port.to_string(), "-c", "listen_addresses="])
            .arg("-k")
            .arg(socket_dir)
            .args(["-c", "logging_collector=off"])
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("LC_ALL", "C")
            .current_dir(socket_dir)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("log"))
            .stderr(log_file);
        if let Some((uid, gid)) = run_as() {
            std::os::unix::fs::chown(socket_dir, Some(uid), Some(gid)).expect("chown socket dir");
            cmd.uid(uid).gid(gid);
        }
        let child = cmd.spawn().expect("start postgres");
        let mut pg = PlainPostgres {
            child: Some(child),
            socket_dir: socket_dir.to_path_buf(),
            log: log.to_path_buf(),
            port,
        };
        let up = wait_until(Duration::from_secs(60), || {
            if let Some(Ok(Some(status))) = pg.child.as_mut().map(|c| c.try_wait()) {
                return Ok(Err(format!("postgres exited: {status}")));
            }
            pg.psql("postgres", "SELECT 1").map(Ok)
        });
        match up {
            Ok((Ok(_), _)) => pg,
            Ok((Err(e), _)) | Err(e) => panic!("{e}\n{}", pg.log_text()),
        }
    }

    fn psql(&self, db: &str, sql: &str) -> Result<String, String> {
        let out = Command::new(pg_bin().join("psql"))
            .args(["-XAtq", "-v", "ON_ERROR_STOP=1", "-c", sql])
            .arg("-h")
            .arg(&self.socket_dir)
            .args(["-p", &self.port.to_string(), "-U", "postgres", "-d", db])
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .output()
            .map_err(|e| format!("cannot run psql: {e}"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Fast shutdown; killed if it takes longer than 30 s. True when it
    /// stopped by itself.
    fn stop(&mut self) -> bool {
        let Some(mut child) = self.child.take() else {
            return true;
        };
        let _ = Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        false
    }
}

impl Drop for PlainPostgres {
    fn drop(&mut self) {
        self.stop();
    }
}

#[test]
fn backups_are_taken_kept_and_restore_into_a_plain_postgres() {
    let mut rig = DbRig::new(72, &backup_section("1h", 2));
    let dir = rig.cluster.dir.path().to_path_buf();
    let backups = dir.join("backups");
    rig.start_all();
    rig.wait_role(0, "primary", LIMIT);

    // The schedule takes the first backup as soon as the primary runs
    // (there is none yet), without being asked.
    let (first, took) = wait_until(LIMIT, || last_backup(&rig, 0))
        .unwrap_or_else(|e| panic!("no scheduled backup: {e}\nlog:\n{}", rig.cluster.log(0)));
    eprintln!("scheduled backup {first} appeared {took:?} after the primary ran");
    assert!(first.ends_with("-pi-1"), "{first}");
    assert_eq!(complete(&backups), std::slice::from_ref(&first));
    let meta = std::fs::metadata(&backups).expect("backup folder");
    assert_eq!(meta.permissions().mode() & 0o777, 0o750);
    if let Some((uid, _)) = run_as() {
        assert_eq!(meta.uid(), uid, "the folder belongs to PostgreSQL's user");
    }
    for file in ["base.tar.gz", "pg_wal.tar.gz", "backup_manifest"] {
        assert!(backups.join(&first).join(file).is_file(), "{file}");
    }
    let events = rig.db_events(0).join("\n");
    assert!(
        events.contains("base backup started (scheduled)"),
        "{events}"
    );
    assert!(
        events.contains(&format!("base backup {first} complete")),
        "{events}"
    );

    // Rows the backup will see.
    wait_until(LIMIT, || rig.try_psql(rig.pooler(0), "SELECT 1")).expect("pooler answers");
    rig.psql(
        rig.pooler(0),
        "CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t SELECT generate_series(1, 1000)",
    );

    // A leftover of a backup of this node that never finished, and
    // things that are not ours.
    let partial = backups.join("piha-20000101T000000Z-pi-1.partial");
    std::fs::create_dir(&partial).expect("partial");
    std::fs::write(partial.join("base.tar.gz"), b"half").expect("partial file");
    std::fs::create_dir(backups.join("keep-me")).expect("foreign dir");
    std::fs::create_dir(backups.join("piha-20000101T000000Z-pi-9.partial"))
        .expect("dead partial of another node");

    // Writes need the token; pi-4 has no db role.
    assert_eq!(post_backup(&rig, 0, None).0, 401);
    assert_eq!(post_backup(&rig, 0, Some("wrong-token-0123456789")).0, 401);
    let (code, doc) = post_backup(&rig, 3, Some(TOKEN));
    assert_eq!(code, 404, "{doc}");

    let (code, taken) = post_backup(&rig, 0, Some(TOKEN));
    assert_eq!(code, 200, "{taken}");
    let name = taken["name"].as_str().expect("name").to_owned();
    assert_eq!(taken["node"], "pi-1");
    assert!(taken["bytes"].as_u64().unwrap_or(0) > 0, "{taken}");
    assert!(taken["taken_at_ms"].as_i64().unwrap_or(0) > 0, "{taken}");
    let path = PathBuf::from(taken["path"].as_str().expect("path"));
    assert_eq!(path, backups.join(&name));
    assert!(
        !partial.exists(),
        "this node's leftover .partial is removed"
    );
    assert!(backups.join("keep-me").exists(), "not ours: kept");
    // Another node's partial this old is dead (its deadline passed).
    assert!(!backups.join("piha-20000101T000000Z-pi-9.partial").exists());
    let mut want = vec![first.clone(), name.clone()];
    want.sort();
    assert_eq!(complete(&backups), want);
    assert_eq!(last_backup(&rig, 0).as_deref(), Ok(name.as_str()));

    // Rows the backup did not see.
    rig.psql(
        rig.pooler(0),
        "INSERT INTO t SELECT generate_series(1001, 1500)",
    );

    // Restore refuses a directory that holds anything.
    let full = dir.join("full");
    std::fs::create_dir(&full).expect("full dir");
    std::fs::write(full.join("precious"), b"mine").expect("file");
    let out = db_restore(&path, &full);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "refused");
    assert!(stderr.contains("exists and is not empty"), "{stderr}");
    assert_eq!(std::fs::read(full.join("precious")).expect("kept"), b"mine");
    assert_eq!(std::fs::read_dir(&full).expect("dir").count(), 1);

    // Restore into a new directory; a plain postgres starts on it and has
    // exactly the rows of the backup.
    let restored = dir.join("restored");
    let out = db_restore(&path, &restored);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "db-restore failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("pg_verifybackup"), "{stdout}");
    assert!(stdout.contains("systemctl stop piha"), "{stdout}");
    assert!(!restored.join("standby.signal").exists());
    let meta = std::fs::metadata(&restored).expect("restored");
    assert_eq!(meta.permissions().mode() & 0o777, 0o700);
    if let Some((uid, _)) = run_as() {
        assert_eq!(meta.uid(), uid);
    }
    let mut pg = PlainPostgres::start(&restored, &dir.join("plain-sock"), &dir.join("plain.log"));
    let rows = pg.psql(APP_DB, "SELECT count(*), max(id) FROM t");
    assert_eq!(rows, Ok("1000|1000".to_string()), "{}", pg.log_text());
    assert!(pg.stop(), "the restored server shuts down cleanly");

    // A standby takes one too; with keep = 2 the oldest go.
    rig.wait_role(1, "standby", LIMIT);
    wait_until(LIMIT, || {
        let n = rig.try_psql(rig.server(1), "SELECT count(*) FROM t")?;
        if n == "1500" { Ok(()) } else { Err(n) }
    })
    .expect("pi-2 replayed every row");
    let (code, on_standby) = post_backup(&rig, 1, Some(TOKEN));
    assert_eq!(code, 200, "{on_standby}");
    assert_eq!(on_standby["node"], "pi-2");
    let (code, again) = post_backup(&rig, 0, Some(TOKEN));
    assert_eq!(code, 200, "{again}");
    let mut want = vec![
        on_standby["name"].as_str().expect("name").to_owned(),
        again["name"].as_str().expect("name").to_owned(),
    ];
    want.sort();
    assert_eq!(complete(&backups), want, "keep = 2");
    assert!(backups.join("keep-me").exists());
    let events = rig.db_events(0).join("\n");
    assert!(events.contains("removed piha-"), "{events}");

    // README.md's restore procedure, with the standby's backup: stop
    // every node, restore in place of pi-1's data directory, move the
    // others' aside, start again. The cluster is back at the backup's
    // rows, pi-1 primary, the others its copies.
    rig.psql(
        rig.pooler(0),
        "INSERT INTO t SELECT generate_series(1501, 1700)",
    );
    let logged = rig.cluster.log(0).len();
    for i in 0..4 {
        rig.cluster.signal(i, "TERM");
    }
    for i in 0..4 {
        assert!(
            rig.cluster.wait_exit(i, Duration::from_secs(30)).is_some(),
            "node {i} stops"
        );
    }
    let data = |i: usize| rig.cluster.nodes[i].data_dir.join("postgresql/data");
    let aside = |i: usize| rig.cluster.nodes[i].data_dir.join("postgresql/data.old");
    let staged = rig.cluster.nodes[0]
        .data_dir
        .join("postgresql/data.restored");
    let out = db_restore(
        Path::new(on_standby["path"].as_str().expect("path")),
        &staged,
    );
    assert!(
        out.status.success(),
        "db-restore failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for i in 0..3 {
        std::fs::rename(data(i), aside(i)).expect("move the data directory aside");
    }
    std::fs::rename(&staged, data(0)).expect("move the restored one in place");
    rig.start_all();
    rig.wait_role(0, "primary", LIMIT);
    for i in 0..3 {
        if i > 0 {
            rig.wait_role(i, "standby", LIMIT);
        }
        wait_until(LIMIT, || {
            let n = rig.try_psql(rig.server(i), "SELECT count(*) FROM t")?;
            if n == "1500" { Ok(()) } else { Err(n) }
        })
        .unwrap_or_else(|e| panic!("node {i} after the restore: {e}\n{}", rig.cluster.log(i)));
    }
    let second_life = &rig.cluster.log(0)[logged..];
    assert!(
        !second_life.contains("created the database cluster"),
        "no initdb after the restore:\n{second_life}"
    );
}

#[test]
fn the_primary_takes_a_backup_every_period_and_keeps_the_newest() {
    let mut rig = DbRig::new(73, &backup_section("1m", 1));
    let backups = rig.cluster.dir.path().join("backups");
    rig.start_all();
    rig.wait_role(0, "primary", LIMIT);
    let (first, _) = wait_until(LIMIT, || last_backup(&rig, 0))
        .unwrap_or_else(|e| panic!("no scheduled backup: {e}\n{}", rig.cluster.log(0)));
    // The next one about a minute later, by itself.
    let (second, after) = wait_until(Duration::from_secs(100), || {
        let now = last_backup(&rig, 0)?;
        if now != first {
            Ok(now)
        } else {
            Err(format!("still {now}"))
        }
    })
    .unwrap_or_else(|e| panic!("no second scheduled backup: {e}\n{}", rig.cluster.log(0)));
    eprintln!("second scheduled backup {second} {after:?} after the first was seen");
    assert!(
        after >= Duration::from_secs(45),
        "{after:?}: not before `every`"
    );
    assert_eq!(complete(&backups), [second], "keep = 1");
    // Standbys take none by themselves, but show the shared folder's newest.
    let events = rig.db_events(1).join("\n");
    assert!(!events.contains("base backup started"), "{events}");
}
