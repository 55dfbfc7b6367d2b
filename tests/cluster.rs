//! Four real nodes on loopback form a cluster, notice a killed node, take it
//! back when it returns; a graceful stop is seen as "left"; a fifth Pi joins
//! by hostname pattern with no edit to the file; `piha status` shows it all.

mod common;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use common::node::{BIN, Cluster, wait_until};

const FIVE_S: Duration = Duration::from_secs(5);

/// Every node in `observers` reports exactly `expected` (hostname -> state).
fn all_see(
    c: &Cluster,
    observers: &[usize],
    expected: &BTreeMap<&str, &str>,
) -> Result<(), String> {
    for &i in observers {
        let seen: BTreeMap<String, String> = c.member_states(i)?.into_iter().collect();
        let want: BTreeMap<String, String> = expected
            .iter()
            .map(|(h, s)| ((*h).to_owned(), (*s).to_owned()))
            .collect();
        if seen != want {
            return Err(format!("pi-{} sees {seen:?}, want {want:?}", i + 1));
        }
    }
    Ok(())
}

fn states(pairs: &[(&'static str, &'static str)]) -> BTreeMap<&'static str, &'static str> {
    pairs.iter().copied().collect()
}

#[test]
fn four_nodes_form_a_cluster_and_track_a_killed_node() {
    let mut c = Cluster::start_all(1);
    let all_up = states(&[
        ("pi-1", "up"),
        ("pi-2", "up"),
        ("pi-3", "up"),
        ("pi-4", "up"),
    ]);
    let (_, took) = wait_until(FIVE_S, || all_see(&c, &[0, 1, 2, 3], &all_up))
        .unwrap_or_else(|e| panic!("cluster did not form: {e}\n{}", c.log(0)));
    println!("all four up on every node after {took:?}");

    c.kill(2); // SIGKILL: no goodbye, only silence tells
    let three_down = states(&[
        ("pi-1", "up"),
        ("pi-2", "up"),
        ("pi-3", "down"),
        ("pi-4", "up"),
    ]);
    let (_, took) = wait_until(FIVE_S, || all_see(&c, &[0, 1, 3], &three_down))
        .unwrap_or_else(|e| panic!("killed node not marked down: {e}"));
    println!("pi-3 down on the other three after {took:?}");

    c.start(2);
    let (_, took) = wait_until(FIVE_S, || all_see(&c, &[0, 1, 2, 3], &all_up))
        .unwrap_or_else(|e| panic!("restarted node not back up: {e}\n{}", c.log(2)));
    println!("pi-3 up again everywhere after {took:?}");

    let doc = c.status(0).expect("status");
    let log = common::node::events(&doc);
    assert!(
        log.iter()
            .any(|e| e.contains("pi-3 is down (no heartbeat for")),
        "{log:#?}"
    );
    assert!(log.iter().any(|e| e.contains("pi-3 is up")), "{log:#?}");
}

#[test]
fn sigterm_stops_in_bounded_time_and_peers_see_the_node_leave() {
    let mut c = Cluster::start_all(2);
    let all_up = states(&[
        ("pi-1", "up"),
        ("pi-2", "up"),
        ("pi-3", "up"),
        ("pi-4", "up"),
    ]);
    wait_until(FIVE_S, || all_see(&c, &[0, 1, 2, 3], &all_up)).expect("cluster forms");

    c.signal(1, "TERM");
    let status = c
        .wait_exit(1, Duration::from_secs(12))
        .expect("pi-2 exits within the drain bound after SIGTERM");
    assert!(status.success(), "exit status {status:?}\n{}", c.log(1));
    // "left" arrives with the goodbye heartbeat, well before down_after.
    let left = states(&[
        ("pi-1", "up"),
        ("pi-2", "left"),
        ("pi-3", "up"),
        ("pi-4", "up"),
    ]);
    wait_until(Duration::from_secs(2), || all_see(&c, &[0, 2, 3], &left))
        .expect("peers mark a gracefully stopped node as left at once");
}

#[test]
fn a_fifth_pi_joins_by_hostname_pattern_without_editing_the_file() {
    let mut c = Cluster::start_all(3);
    let pi5 = c.add_node("pi-5", 15);
    c.start(pi5);
    let five_up = states(&[
        ("pi-1", "up"),
        ("pi-2", "up"),
        ("pi-3", "up"),
        ("pi-4", "up"),
        ("pi-5", "up"),
    ]);
    wait_until(Duration::from_secs(8), || {
        all_see(&c, &[0, 1, 2, 3, 4], &five_up)
    })
    .unwrap_or_else(|e| panic!("pi-5 not known everywhere: {e}\n{}", c.log(pi5)));
    let doc = c.status(pi5).expect("status of pi-5");
    let roles = doc["members"][0]["roles"].clone();
    assert_eq!(
        roles,
        serde_json::json!(["web", "storage"]),
        "pattern roles"
    );

    // A host that matches no pattern is refused, with the known hosts listed.
    let out = Command::new(BIN)
        .args(["run", "--hostname", "web-7", "--data-dir"])
        .arg(c.dir.path().join("web-7"))
        .arg("--config")
        .arg(&c.config)
        .output()
        .expect("run piha");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("web-7") && err.contains("pi-1") && err.contains("pi-*"),
        "{err}"
    );
}

#[test]
fn piha_status_prints_the_cluster_as_a_table() {
    let mut c = Cluster::start_all(4);
    let all_up = states(&[
        ("pi-1", "up"),
        ("pi-2", "up"),
        ("pi-3", "up"),
        ("pi-4", "up"),
    ]);
    wait_until(FIVE_S, || all_see(&c, &[0], &all_up)).expect("cluster forms");
    c.kill(3);
    wait_until(FIVE_S, || {
        let s = c.member_states(0)?;
        s.iter()
            .any(|(h, st)| h == "pi-4" && st == "down")
            .then_some(())
            .ok_or_else(|| format!("{s:?}"))
    })
    .expect("pi-4 down");
    let url = format!("http://{}", c.nodes[0].admin);
    let out = Command::new(BIN)
        .args(["status", "--url", &url])
        .output()
        .expect("piha status");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{text}");
    let row = |host: &str| {
        text.lines()
            .find(|l| l.starts_with(host))
            .unwrap_or("")
            .to_owned()
    };
    assert!(row("pi-1*").contains(" up "), "{text}");
    assert!(row("pi-2 ").contains(" up "), "{text}");
    assert!(row("pi-4 ").contains(" down "), "{text}");
    assert!(
        text.contains("HOST") && text.contains("LAST HEARD"),
        "{text}"
    );

    let json = Command::new(BIN)
        .args(["status", "--json", "--url", &url])
        .output()
        .expect("piha status --json");
    let doc: serde_json::Value = serde_json::from_slice(&json.stdout).expect("valid JSON");
    assert_eq!(doc["api_version"], 1);

    // A node that is not there: a clear error, not a hang.
    let dead = Command::new(BIN)
        .args(["status", "--url", &format!("http://{}", c.nodes[3].admin)])
        .output()
        .expect("piha status");
    assert!(!dead.status.success());
    assert!(String::from_utf8_lossy(&dead.stderr).contains("cannot reach"));
}

/// On a Pi, `piha status` with no URL asks the node on this machine: the one
/// the cluster file gives this machine's hostname.
#[test]
fn piha_status_without_url_asks_this_machines_own_node() {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap_or_default()
        .trim()
        .to_lowercase();
    let host = host.split('.').next().unwrap_or_default().to_owned();
    let valid = !host.is_empty()
        && host.len() <= 63
        && host
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !valid {
        eprintln!("skipping: this machine's hostname {host:?} is not a valid node name");
        return;
    }
    let text = format!(
        "[cluster]\nname = \"own\"\n\n[[node]]\nhostname = \"{host}\"\naddress = \"127.61.11.11/24\"\nroles = [\"web\"]\n"
    );
    let mut c = Cluster::with_file(11, &text);
    c.nodes[0].hostname = host.clone();
    c.start(0);
    wait_until(FIVE_S, || c.status(0)).unwrap_or_else(|e| panic!("{e}\n{}", c.log(0)));
    let out = Command::new(BIN)
        .args(["status", "--config"])
        .arg(&c.config)
        .env_remove("PIHA_URL")
        .output()
        .expect("piha status");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains(&format!("seen from {host}")), "{text}");
}
