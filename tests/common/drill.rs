//! The failure drill of the hand-built clusters, made repeatable: a client
//! on the LAN keeps using the service through the VIP and checks every
//! answer, while nodes are hurt one fault at a time and brought back.
//!
//! The client (`Traffic`, in the lab's client namespace) runs four kinds of
//! request side by side, one thread each (so notes waiting out a failover
//! do not hold up the file GETs), every request on a new connection with a
//! 5 s limit: a static file (its bytes compared with what was
//! written), `/api/random/int` (a JSON int from one of the four nodes), a
//! note insert with a client-chosen id (the answer must echo it), and a read
//! of a note acknowledged earlier (it must be there, with its text). An
//! answer is *failed* when the request errs, times out or gets a 5xx; it is
//! *wrong* when it arrives with the wrong content (a missing acknowledged
//! note, a 404 for a file that exists, another text).
//!
//! Each fault has a *window*, from the moment it is made until the node is
//! back and every status page reports the cluster healthy again. Failed
//! requests are allowed only inside a window, and only until the window's
//! bound after the fault (`Fault::bound`). The drill is bounded: at most
//! `MAX_REQUESTS` requests, and every wait has a limit.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::full_cluster::{
    APP_DB, APP_PASSWORD, APP_USER, FullCluster, NODES, SERVER_PORT, Storage, VIP, VOLUME,
    http_here,
};
use super::netns::{in_netns, poll};

/// Upper bound on the client's requests over a whole drill.
const MAX_REQUESTS: usize = 200_000;
/// One request's limit, connect to last byte.
const REQUEST_LIMIT: Duration = Duration::from_secs(5);
/// Between two requests of one kind.
const PACE: Duration = Duration::from_millis(40);
/// Static files the client reads.
const FILES: usize = 16;
/// Client-side note ids start here, so they never meet the app's own.
const FIRST_NOTE_ID: i64 = 1_000_000;
/// Requests may fail for at most this long after a node is brought back:
/// a VIP moving back to a returning master (preempt) cuts the requests in
/// flight on the old one. The old master resets those connections as it
/// steps down (`vrrp::io::sock_diag`), so they fail at once rather than at
/// the client's receive timeout; what is left is the returning node's
/// start-up and the link-cut row's Gluster and Postgres rejoin.
const RETURN_BOUND: Duration = Duration::from_secs(6);
/// How long each restarted node has to be back on every status page.
const BACK_LIMIT: Duration = Duration::from_secs(120);

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    File,
    Random,
    Insert,
    Read,
}

#[derive(Debug, Clone)]
pub enum Verdict {
    Ok,
    Failed(String),
    Wrong(String),
}

#[derive(Debug, Clone)]
pub struct Outcome {
    pub kind: Kind,
    pub start: Instant,
    pub end: Instant,
    pub verdict: Verdict,
}

/// The site the drill reads: `drill/file-N.txt`, each a different size.
pub fn site() -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = (0..FILES)
        .map(|n| (format!("drill/file-{n}.txt"), file_body(n)))
        .collect();
    files.push((
        "index.html".into(),
        b"<!doctype html><title>piha</title><p>Served from the Gluster volume. \
          Notes demo app: <a href=\"/api/notes\">/api/notes</a></p>\n"
            .to_vec(),
    ));
    files
}

fn file_body(n: usize) -> Vec<u8> {
    let line = format!("drill file {n}: the same bytes from every web node\n");
    line.repeat(1 + n * 37).into_bytes()
}

/// The client's request stream, on its own thread in the client namespace.
pub struct Traffic {
    stop: Arc<AtomicBool>,
    outcomes: Arc<Mutex<Vec<Outcome>>>,
    acked: Arc<Mutex<Vec<(i64, String)>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Traffic {
    pub fn start(ns: &str, limit: Duration) -> Traffic {
        let stop = Arc::new(AtomicBool::new(false));
        let outcomes = Arc::new(Mutex::new(Vec::new()));
        let acked = Arc::new(Mutex::new(Vec::new()));
        let threads = [Kind::File, Kind::Random, Kind::Insert, Kind::Read]
            .into_iter()
            .map(|kind| {
                let (s, o, a, ns) = (stop.clone(), outcomes.clone(), acked.clone(), ns.to_owned());
                std::thread::spawn(move || {
                    in_netns(&ns, || client_loop(kind, &s, &o, &a, limit));
                })
            })
            .collect();
        Traffic {
            stop,
            outcomes,
            acked,
            threads,
        }
    }

    /// The outcomes so far (a copy).
    pub fn outcomes(&self) -> Vec<Outcome> {
        lock(&self.outcomes).clone()
    }

    pub fn finish(mut self) -> (Vec<Outcome>, Vec<(i64, String)>) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        (lock(&self.outcomes).clone(), lock(&self.acked).clone())
    }
}

impl Drop for Traffic {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn client_loop(
    kind: Kind,
    stop: &AtomicBool,
    outcomes: &Mutex<Vec<Outcome>>,
    acked: &Mutex<Vec<(i64, String)>>,
    limit: Duration,
) {
    let began = Instant::now();
    let vip = SocketAddr::new(IpAddr::V4(VIP), 80);
    let mut next_id = FIRST_NOTE_ID;
    for n in 0..MAX_REQUESTS / 4 {
        if stop.load(Ordering::SeqCst) || began.elapsed() > limit {
            break;
        }
        let start = Instant::now();
        let verdict = match kind {
            Kind::File => get_file(vip, n % FILES),
            Kind::Random => get_random(vip),
            Kind::Insert => {
                next_id += 1;
                let text = format!("note {next_id} from the drill");
                let v = insert(vip, next_id, &text);
                if matches!(v, Verdict::Ok) {
                    lock(acked).push((next_id, text));
                }
                v
            }
            Kind::Read => {
                let pick = {
                    let a = lock(acked);
                    // Spread over old and new notes alike.
                    (!a.is_empty()).then(|| a[(n * 7919) % a.len()].clone())
                };
                match pick {
                    Some((id, text)) => read_note(vip, id, &text),
                    None => {
                        std::thread::sleep(PACE);
                        continue;
                    }
                }
            }
        };
        lock(outcomes).push(Outcome {
            kind,
            start,
            end: Instant::now(),
            verdict,
        });
        std::thread::sleep(PACE);
    }
}

/// A 5xx or no answer is a failure; any other unexpected answer is wrong.
fn classify(
    result: Result<(u16, String), String>,
    check: impl Fn(u16, &str) -> Verdict,
) -> Verdict {
    match result {
        Err(e) => Verdict::Failed(e),
        Ok((code, body)) if code >= 500 => Verdict::Failed(format!(
            "{code}: {}",
            body.chars().take(120).collect::<String>()
        )),
        Ok((code, body)) => check(code, &body),
    }
}

fn get_file(vip: SocketAddr, n: usize) -> Verdict {
    let path = format!("/drill/file-{n}.txt");
    classify(
        http_here(vip, "GET", &path, None, REQUEST_LIMIT),
        |code, body| {
            if code == 200 && body.as_bytes() == file_body(n).as_slice() {
                Verdict::Ok
            } else {
                Verdict::Wrong(format!("{path}: {code}, {} bytes", body.len()))
            }
        },
    )
}

fn get_random(vip: SocketAddr) -> Verdict {
    classify(
        http_here(vip, "GET", "/api/random/int", None, REQUEST_LIMIT),
        |code, body| {
            let doc: Value = serde_json::from_str(body).unwrap_or(Value::Null);
            let node_ok = doc["node"]
                .as_str()
                .is_some_and(|n| (1..=NODES).any(|i| n == format!("pi-{i}")));
            if code == 200 && node_ok && doc["value"].is_i64() {
                Verdict::Ok
            } else {
                Verdict::Wrong(format!("/api/random/int: {code} {body}"))
            }
        },
    )
}

fn insert(vip: SocketAddr, id: i64, text: &str) -> Verdict {
    let body = serde_json::json!({"id": id, "text": text}).to_string();
    classify(
        http_here(vip, "POST", "/api/notes", Some(&body), REQUEST_LIMIT),
        |code, answer| {
            let doc: Value = serde_json::from_str(answer).unwrap_or(Value::Null);
            if (code == 201 || code == 200) && doc["id"] == id && doc["text"] == text {
                Verdict::Ok
            } else {
                Verdict::Wrong(format!("insert {id}: {code} {answer}"))
            }
        },
    )
}

fn read_note(vip: SocketAddr, id: i64, text: &str) -> Verdict {
    let path = format!("/api/notes/{id}");
    classify(
        http_here(vip, "GET", &path, None, REQUEST_LIMIT),
        |code, answer| {
            let doc: Value = serde_json::from_str(answer).unwrap_or(Value::Null);
            if code == 200 && doc["id"] == id && doc["text"] == text {
                Verdict::Ok
            } else {
                Verdict::Wrong(format!("read of acknowledged note {id}: {code} {answer}"))
            }
        },
    )
}

/// One fault as it happened.
#[derive(Debug, Clone)]
pub struct Fault {
    pub name: String,
    pub node: String,
    pub at: Instant,
    /// When the node was brought back (restarted, link up...): what fails
    /// after this is the return's doing, e.g. a VIP moving back.
    pub restored: Instant,
    /// Until the node was back and every status page healthy.
    pub closed: Instant,
    pub detected: Option<Duration>,
    pub back: Option<Duration>,
    /// Failed requests must end within this long after `at`.
    pub bound: Duration,
    /// What else happened, e.g. where the VIP went and how fast.
    pub notes: Vec<String>,
}

/// A fault's row of the table.
#[derive(Debug, Clone)]
pub struct Row {
    pub fault: Fault,
    pub requests: usize,
    pub failed: usize,
    pub wrong: usize,
    /// From the fault to the first good answer after its last failed one.
    pub recovered: Option<Duration>,
    /// The longest time between two good answers in the window.
    pub longest_gap: Duration,
    /// From the fault to the end of its last failed request before the
    /// node was brought back.
    pub failing_for: Duration,
    /// Failed requests after the node was brought back, and from then to
    /// the end of the last of them.
    pub failed_on_return: usize,
    pub return_failing_for: Duration,
    /// Per kind: how many failed, the first and last failure's end after
    /// the fault.
    pub failed_by_kind: BTreeMap<Kind, (usize, Duration, Duration)>,
    /// A few distinct reasons, for the table's notes.
    pub sample_errors: Vec<String>,
}

pub struct Report {
    pub rows: Vec<Row>,
    pub outcomes: Vec<Outcome>,
    pub acked: usize,
    pub lost: Vec<i64>,
    /// Failed requests outside every window, and wrong answers anywhere.
    pub failed_outside: Vec<Outcome>,
    pub wrong: Vec<Outcome>,
    pub unhealthy_at_end: Option<String>,
    pub total: Duration,
}

impl Report {
    /// Everything the acceptance asks, as a list of broken promises.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        for o in self.wrong.iter().take(10) {
            out.push(format!("wrong answer {}: {:?}", self.when(o), o.verdict));
        }
        for o in self.failed_outside.iter().take(10) {
            out.push(format!(
                "failed outside every fault window {}: {:?}",
                self.when(o),
                o.verdict
            ));
        }
        if !self.lost.is_empty() {
            out.push(format!(
                "{} acknowledged notes missing, e.g. {:?}",
                self.lost.len(),
                &self.lost[..self.lost.len().min(10)]
            ));
        }
        for r in &self.rows {
            if r.failing_for >= r.fault.bound {
                out.push(format!(
                    "{}: requests failed for {:.2} s, bound {:.1} s",
                    r.fault.name,
                    r.failing_for.as_secs_f64(),
                    r.fault.bound.as_secs_f64()
                ));
            }
            if r.return_failing_for >= RETURN_BOUND {
                out.push(format!(
                    "{}: requests failed for {:.2} s after the node came back, bound {:.1} s",
                    r.fault.name,
                    r.return_failing_for.as_secs_f64(),
                    RETURN_BOUND.as_secs_f64()
                ));
            }
            if r.fault.detected.is_none() {
                out.push(format!("{}: never detected", r.fault.name));
            }
            if r.fault.back.is_none() {
                out.push(format!("{}: not back within {BACK_LIMIT:?}", r.fault.name));
            }
        }
        if let Some(why) = &self.unhealthy_at_end {
            out.push(format!("not healthy at the end: {why}"));
        }
        out
    }

    /// Every failed or wrong answer, one per line, for a look afterwards.
    pub fn bad_answers(&self) -> String {
        self.outcomes
            .iter()
            .filter(|o| !matches!(o.verdict, Verdict::Ok))
            .map(|o| format!("{} {:?} {:?}\n", self.when(o), o.kind, o.verdict))
            .collect()
    }

    /// Where an outcome sits: seconds after the latest fault before it.
    pub fn when(&self, o: &Outcome) -> String {
        let last = self.rows.iter().rev().find(|r| r.fault.at <= o.end);
        match last {
            Some(r) => format!(
                "{:.2} s after \"{}\"",
                (o.end - r.fault.at).as_secs_f64(),
                r.fault.name
            ),
            None => "before the first fault".into(),
        }
    }

    /// The table, as Markdown.
    pub fn table(&self) -> String {
        let secs =
            |d: Option<Duration>| d.map_or("-".into(), |d| format!("{:.2} s", d.as_secs_f64()));
        let mut t = String::from(
            "| fault | node | detected | recovered | requests | failed (fault + return, return window) | longest gap | wrong | back after restart | bound |\n\
             | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n",
        );
        for r in &self.rows {
            let _ = writeln!(
                t,
                "| {} | {} | {} | {} | {} | {} + {} ({:.2} s) | {:.2} s | {} | {} | {:.0} s |",
                r.fault.name,
                r.fault.node,
                secs(r.fault.detected),
                r.recovered
                    .map_or("no failure".into(), |d| format!("{:.2} s", d.as_secs_f64())),
                r.requests,
                r.failed - r.failed_on_return,
                r.failed_on_return,
                r.return_failing_for.as_secs_f64(),
                r.longest_gap.as_secs_f64(),
                r.wrong,
                secs(r.fault.back),
                r.fault.bound.as_secs_f64()
            );
        }
        let per_kind = self.per_kind();
        let _ = writeln!(
            t,
            "\n{} requests in {:.0} s ({}); {} wrong answers; {} failed outside the fault windows; \
             {} note inserts acknowledged, {} missing from the database afterwards.",
            self.outcomes.len(),
            self.total.as_secs_f64(),
            per_kind,
            self.wrong.len(),
            self.failed_outside.len(),
            self.acked,
            self.lost.len()
        );
        for r in &self.rows {
            let mut notes = r.fault.notes.clone();
            if r.failed > 0 {
                let by_kind: Vec<String> = r
                    .failed_by_kind
                    .iter()
                    .map(|(k, (n, first, last))| {
                        format!(
                            "{n} {} between {:.2} s and {:.2} s",
                            kind_name(*k),
                            first.as_secs_f64(),
                            last.as_secs_f64()
                        )
                    })
                    .collect();
                notes.push(format!("failed: {}", by_kind.join(", ")));
                notes.push(format!("e.g. {}", r.sample_errors.join(" / ")));
            }
            if !notes.is_empty() {
                let _ = writeln!(t, "- {}: {}", r.fault.name, notes.join("; "));
            }
        }
        t
    }

    fn per_kind(&self) -> String {
        let mut counts: BTreeMap<Kind, usize> = BTreeMap::new();
        for o in &self.outcomes {
            *counts.entry(o.kind).or_default() += 1;
        }
        counts
            .iter()
            .map(|(k, n)| format!("{n} {}", kind_name(*k)))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn kind_name(k: Kind) -> &'static str {
    match k {
        Kind::File => "file GETs",
        Kind::Random => "random GETs",
        Kind::Insert => "note inserts",
        Kind::Read => "note reads",
    }
}

/// Where and whether to take the status page screenshots.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub screenshots: Option<PathBuf>,
    /// Printed as the drill goes (the test and the script both want it).
    pub verbose: bool,
}

/// Runs the whole drill on a cluster that is up and healthy.
pub fn run(c: &mut FullCluster, opts: &Options) -> Report {
    let began = Instant::now();
    let say = |msg: &str| {
        if opts.verbose {
            eprintln!("[drill {:6.1} s] {msg}", began.elapsed().as_secs_f64());
        }
    };
    let mut shots = Vec::new();
    if let Some(dir) = &opts.screenshots {
        // Before the load, so Chromium's start costs the drill nothing.
        shots.push(screenshot(c, 1, dir, "1-all-healthy.png"));
    }
    let traffic = Traffic::start(&c.client_ns(), Duration::from_secs(540));
    std::thread::sleep(Duration::from_secs(5));
    say("traffic running; faults begin");
    let mut faults = Vec::new();

    let web = 3;
    faults.push(fault(
        c,
        "web node killed (SIGKILL of piha)",
        web,
        Duration::from_secs(3),
        &say,
        |c| c.kill(web),
        |c, h| backend_state(c, h, web).is_some_and(|s| s != "UP"),
        |_c, _f| {},
        |c| c.start(web),
    ));

    let master = c.vip_holders().first().copied().unwrap_or(0);
    let shot_dir = opts.screenshots.clone();
    let mut master_shot = None;
    faults.push(fault(
        c,
        "VRRP master killed (SIGKILL of piha)",
        master,
        Duration::from_secs(10),
        &say,
        |c| c.kill(master),
        |c, _h| c.vip_holders().iter().any(|&h| h != master),
        |c, f| {
            if let Some(dir) = &shot_dir {
                // Once the new master's page also shows the old one down.
                let survivor = c.vip_holders().first().copied().unwrap_or(1);
                poll(Duration::from_secs(5), || {
                    (member_state(c, survivor, master).as_deref() == Some("down")).then_some(())
                });
                master_shot = Some(screenshot(c, survivor, dir, "2-master-down.png"));
            }
            let new = c.vip_holders();
            f.notes.push(format!(
                "VIP on {} after {:.2} s",
                names(&new),
                f.detected.map_or(0.0, |d| d.as_secs_f64())
            ));
            primary_moved(c, f, master);
        },
        |c| c.start(master),
    ));
    shots.extend(master_shot);

    let primary = c.primary().unwrap_or(0);
    faults.push(fault(
        c,
        "PostgreSQL primary killed (piha and postmaster)",
        primary,
        Duration::from_secs(10),
        &say,
        |c| {
            let pm = c.postmaster_pid(primary);
            c.kill(primary);
            if let Some(pid) = pm {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        },
        |c, h| pooler_backend_down(c, h, primary),
        |c, f| primary_moved(c, f, primary),
        |c| c.start(primary),
    ));

    if c.storage == Storage::On {
        let brick = 3;
        faults.push(fault(
            c,
            "Gluster brick killed (SIGKILL of glusterfsd)",
            brick,
            Duration::from_secs(3),
            &say,
            |c| {
                let path = c.brick(brick);
                c.gl.kill_brick(brick, VOLUME, &path);
            },
            |c, h| brick_state(c, h, brick).is_some_and(|s| s != "online"),
            |_c, _f| {},
            |c| {
                c.gl.gluster_ok(brick, &["volume", "start", VOLUME, "force"]);
            },
        ));
    }

    let holder = c.vip_holders().first().copied();
    let primary = c.primary();
    let cut = [2, 1, 3]
        .into_iter()
        .find(|i| Some(*i) != holder && Some(*i) != primary)
        .unwrap_or(3);
    faults.push(fault(
        c,
        "link cut (ip link set down), restored after 5 s",
        cut,
        Duration::from_secs(12),
        &say,
        |c| c.gl.lab.link_down(cut),
        |c, h| member_state(c, h, cut).is_some_and(|s| s == "down"),
        |_c, _f| std::thread::sleep(Duration::from_secs(5)),
        |c| c.gl.lab.link_up(cut),
    ));

    std::thread::sleep(Duration::from_secs(3));
    let unhealthy_at_end = c.unhealthy();
    if let Some(dir) = &opts.screenshots {
        shots.push(screenshot(c, 1, dir, "3-recovered.png"));
    }
    let (outcomes, acked) = traffic.finish();
    say("traffic stopped; counting notes on the primary");
    let lost = lost_notes(c, &acked);
    for shot in shots {
        if let Err(e) = shot
            .join()
            .unwrap_or(Err("screenshot thread panicked".into()))
        {
            eprintln!("screenshot: {e}");
        }
    }
    report(
        faults,
        outcomes,
        acked.len(),
        lost,
        unhealthy_at_end,
        began.elapsed(),
    )
}

/// Makes one fault and sees it through: `inject`, wait for `detected` (as
/// the VIP holder's status page shows it, at most 20 s), `after` (more
/// observation), `restore`, then wait until every page is healthy again.
#[allow(clippy::too_many_arguments)]
fn fault(
    c: &mut FullCluster,
    name: &str,
    node: usize,
    bound: Duration,
    say: &dyn Fn(&str),
    inject: impl FnOnce(&mut FullCluster),
    detected: impl Fn(&FullCluster, usize) -> bool,
    after: impl FnOnce(&FullCluster, &mut Fault),
    restore: impl FnOnce(&mut FullCluster),
) -> Fault {
    let holder = c.vip_holders().first().copied().unwrap_or(0);
    say(&format!("{name}: pi-{}", node + 1));
    let at = Instant::now();
    inject(c);
    let seen = poll(Duration::from_secs(20), || {
        // The holder may be the node just hurt: then ask any other node.
        let h = if holder == node {
            c.vip_holders()
                .first()
                .copied()
                .unwrap_or((node + 1) % NODES)
        } else {
            holder
        };
        detected(c, h).then(Instant::now)
    });
    let mut f = Fault {
        name: name.to_owned(),
        node: format!("pi-{}", node + 1),
        at,
        restored: at,
        closed: at,
        detected: seen.map(|t| t - at),
        back: None,
        bound,
        notes: Vec::new(),
    };
    say(&format!("  detected after {:?}", f.detected));
    after(c, &mut f);
    let restored = Instant::now();
    f.restored = restored;
    restore(c);
    f.back = c.wait_healthy(BACK_LIMIT).ok().map(|_| restored.elapsed());
    say(&format!("  back and healthy after {:?}", f.back));
    // A little longer in the window: the last re-elections settle.
    std::thread::sleep(Duration::from_secs(2));
    f.closed = Instant::now();
    f
}

/// Waits (15 s at most) for another node to run the primary; notes when.
fn primary_moved(c: &FullCluster, f: &mut Fault, old: usize) {
    let found = poll(Duration::from_secs(15), || {
        c.primary()
            .filter(|p| *p != old)
            .map(|p| (p, Instant::now()))
    });
    match found {
        Some((p, t)) => f.notes.push(format!(
            "pi-{} primary after {:.2} s",
            p + 1,
            (t - f.at).as_secs_f64()
        )),
        None => f.notes.push("no new primary within 15 s".into()),
    }
}

fn names(nodes: &[usize]) -> String {
    nodes
        .iter()
        .map(|i| format!("pi-{}", i + 1))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The HTTP backend `node`'s state on node `at`'s balancer.
fn backend_state(c: &FullCluster, at: usize, node: usize) -> Option<String> {
    let doc = c.status(at).ok()?;
    let name = format!("pi-{}", node + 1);
    doc["balancer"]["http"]["backends"]
        .as_array()?
        .iter()
        .find(|b| b["name"] == name.as_str())
        .and_then(|b| b["state"].as_str().map(str::to_owned))
}

fn pooler_backend_down(c: &FullCluster, at: usize, node: usize) -> bool {
    let Ok(doc) = c.status(at) else {
        return false;
    };
    let name = format!("pi-{}", node + 1);
    doc["pooler"]["backends"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|b| b["name"] == name.as_str() && b["role"] == "down")
}

fn brick_state(c: &FullCluster, at: usize, node: usize) -> Option<String> {
    let s = c.admin_get(at, "/api/v1/storage").ok()?;
    let path = c.brick(node).display().to_string();
    let host = c.addr(node).to_string();
    s["view"]["volumes"]
        .as_array()?
        .iter()
        .find(|v| v["name"] == VOLUME)?["bricks"]
        .as_array()?
        .iter()
        .find(|b| b["host"] == host.as_str() && b["path"] == path.as_str())
        .and_then(|b| b["state"].as_str().map(str::to_owned))
}

fn member_state(c: &FullCluster, at: usize, node: usize) -> Option<String> {
    let doc = c.status(at).ok()?;
    let name = format!("pi-{}", node + 1);
    doc["members"]
        .as_array()?
        .iter()
        .find(|m| m["hostname"] == name.as_str())
        .and_then(|m| m["state"].as_str().map(str::to_owned))
}

/// Node `i`'s status page as a PNG in `dir`, by headless Chromium in the
/// client namespace, on its own thread (it takes a few seconds).
fn screenshot(
    c: &FullCluster,
    i: usize,
    dir: &std::path::Path,
    name: &str,
) -> std::thread::JoinHandle<Result<(), String>> {
    let (ns, url, path) = (c.client_ns(), c.status_url(i), dir.join(name));
    std::thread::spawn(move || {
        super::browser::screenshot_in(Some(&ns), &url, &path, (1280, 1800), 1500, &[])
    })
}

/// Acknowledged notes that the primary does not have (with their text),
/// read straight from PostgreSQL on the primary, not through the pooler.
fn lost_notes(c: &FullCluster, acked: &[(i64, String)]) -> Vec<i64> {
    let Some(p) = c.primary() else {
        return acked.iter().map(|(id, _)| *id).collect();
    };
    let addr = c.addr(p);
    let stored: Result<BTreeMap<i64, String>, String> = in_netns(&c.client_ns(), || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        rt.block_on(async {
            let conninfo = format!(
                "host={addr} port={SERVER_PORT} user={APP_USER} password={APP_PASSWORD} dbname={APP_DB} connect_timeout=5"
            );
            let (client, conn) = tokio_postgres::connect(&conninfo, tokio_postgres::NoTls)
                .await
                .map_err(|e| e.to_string())?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            let rows = tokio::time::timeout(
                Duration::from_secs(30),
                client.query("SELECT id, text FROM piha_notes", &[]),
            )
            .await
            .map_err(|_| "query timed out".to_string())?
            .map_err(|e| e.to_string())?;
            Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
        })
    });
    let stored = match stored {
        Ok(s) => s,
        Err(e) => {
            eprintln!("reading notes from pi-{}: {e}", p + 1);
            return acked.iter().map(|(id, _)| *id).collect();
        }
    };
    acked
        .iter()
        .filter(|(id, text)| stored.get(id) != Some(text))
        .map(|(id, _)| *id)
        .collect()
}

fn report(
    faults: Vec<Fault>,
    outcomes: Vec<Outcome>,
    acked: usize,
    lost: Vec<i64>,
    unhealthy_at_end: Option<String>,
    total: Duration,
) -> Report {
    let mut outcomes = outcomes;
    // Four client threads pushed them; the gaps need them in time order.
    outcomes.sort_by_key(|o| o.end);
    let in_window = |o: &Outcome| faults.iter().any(|f| o.end >= f.at && o.end <= f.closed);
    let failed = |o: &Outcome| matches!(o.verdict, Verdict::Failed(_));
    let wrong: Vec<Outcome> = outcomes
        .iter()
        .filter(|o| matches!(o.verdict, Verdict::Wrong(_)))
        .cloned()
        .collect();
    let failed_outside = outcomes
        .iter()
        .filter(|o| failed(o) && !in_window(o))
        .cloned()
        .collect();
    let rows = faults.into_iter().map(|f| row(f, &outcomes)).collect();
    Report {
        rows,
        outcomes,
        acked,
        lost,
        failed_outside,
        wrong,
        unhealthy_at_end,
        total,
    }
}

fn row(fault: Fault, outcomes: &[Outcome]) -> Row {
    let window: Vec<&Outcome> = outcomes
        .iter()
        .filter(|o| o.end >= fault.at && o.end <= fault.closed)
        .collect();
    let is_failed = |o: &&&Outcome| matches!(o.verdict, Verdict::Failed(_));
    let last_failure = window.iter().filter(is_failed).map(|o| o.end).max();
    let in_fault = |o: &&&Outcome| o.end < fault.restored;
    let last_fault_failure = window
        .iter()
        .filter(is_failed)
        .filter(in_fault)
        .map(|o| o.end)
        .max();
    let on_return: Vec<Instant> = window
        .iter()
        .filter(is_failed)
        .filter(|o| !in_fault(o))
        .map(|o| o.end)
        .collect();
    let recovered = last_failure.and_then(|lf| {
        window
            .iter()
            .find(|o| o.start >= lf && matches!(o.verdict, Verdict::Ok))
            .map(|o| o.end - fault.at)
    });
    // The gap includes the last good answer before the fault.
    let mut last_ok = outcomes
        .iter()
        .filter(|o| o.end < fault.at && matches!(o.verdict, Verdict::Ok))
        .map(|o| o.end)
        .max();
    let mut longest_gap = Duration::ZERO;
    for o in &window {
        if matches!(o.verdict, Verdict::Ok) {
            if let Some(prev) = last_ok {
                longest_gap = longest_gap.max(o.end.saturating_duration_since(prev));
            }
            last_ok = Some(o.end);
        }
    }
    let mut failed_by_kind: BTreeMap<Kind, (usize, Duration, Duration)> = BTreeMap::new();
    let mut sample_errors: Vec<String> = Vec::new();
    for o in window.iter().filter(is_failed) {
        let after = o.end - fault.at;
        let e = failed_by_kind.entry(o.kind).or_insert((0, after, after));
        e.0 += 1;
        e.2 = after;
        if let Verdict::Failed(why) = &o.verdict {
            let why: String = why.chars().take(80).collect();
            if sample_errors.len() < 3 && !sample_errors.contains(&why) {
                sample_errors.push(why);
            }
        }
    }
    Row {
        failed_by_kind,
        sample_errors,
        requests: window.len(),
        failed: window.iter().filter(is_failed).count(),
        wrong: window
            .iter()
            .filter(|o| matches!(o.verdict, Verdict::Wrong(_)))
            .count(),
        recovered,
        longest_gap,
        failing_for: last_fault_failure.map_or(Duration::ZERO, |t| t - fault.at),
        failed_on_return: on_return.len(),
        return_failing_for: on_return
            .iter()
            .max()
            .map_or(Duration::ZERO, |t| *t - fault.restored),
        fault,
    }
}
