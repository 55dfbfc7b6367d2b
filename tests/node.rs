//! One real node at a time, driven the way an operator or a hostile LAN
//! would: SIGHUP with a broken and then a good file, a corrupted database,
//! systemd's notify socket, a port someone else holds, and garbage datagrams.

mod common;

use std::net::UdpSocket;
use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use common::node::{Cluster, TOKEN, cluster_file, events, http, http_get, wait_until};
use serde_json::{Value, json};

const FIVE_S: Duration = Duration::from_secs(5);

fn started(net: u8) -> Cluster {
    let mut c = Cluster::new(net);
    c.start(0);
    wait_until(FIVE_S, || c.status(0)).unwrap_or_else(|e| panic!("{e}\n{}", c.log(0)));
    c
}

fn has_event(c: &Cluster, needle: &str) -> Result<String, String> {
    let doc = c.status(0)?;
    events(&doc)
        .into_iter()
        .find(|e| e.contains(needle))
        .ok_or_else(|| format!("no event with {needle:?} in {:#?}", events(&doc)))
}

fn config_hash(c: &Cluster) -> String {
    c.status(0).expect("status")["cluster"]["config_hash"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn sighup_keeps_the_old_config_on_a_broken_file_and_applies_a_good_one() {
    let mut c = started(5);
    let before = config_hash(&c);
    let good = cluster_file(5);

    // A broken file: one address that does not parse.
    let broken = good.replacen("127.61.5.13/24", "127.61.5.300/24", 1);
    assert_ne!(broken, good, "the fixture edit applies");
    std::fs::write(&c.config, &broken).expect("write");
    c.signal(0, "HUP");
    let (event, _) =
        wait_until(FIVE_S, || has_event(&c, "kept the running config")).expect("event");
    assert!(
        event.contains("cluster.toml:"),
        "the event names file and line: {event}"
    );
    assert!(c.is_running(0), "node survived a broken reload");
    assert_eq!(config_hash(&c), before, "old config still in force");

    // A good file with a sixth node.
    let added = format!(
        "{good}\n[[node]]\nhostname = \"pi-6\"\naddress = \"127.61.5.16/24\"\nroles = [\"web\"]\n"
    );
    std::fs::write(&c.config, &added).expect("write");
    c.signal(0, "HUP");
    wait_until(FIVE_S, || has_event(&c, "node pi-6 added")).expect("reload applied");
    assert_ne!(config_hash(&c), before);
    let members = c.member_states(0).expect("members");
    assert!(members.iter().any(|(h, _)| h == "pi-6"), "{members:?}");

    // The same through the admin API: the token is required.
    let reload = |auth: Option<&str>| {
        let headers: Vec<(&str, &str)> = auth.map(|a| ("Authorization", a)).into_iter().collect();
        http(c.nodes[0].admin, "POST", "/api/v1/reload", &headers).expect("http")
    };
    assert_eq!(reload(None).0, 401);
    assert_eq!(reload(Some("Bearer not-the-token-at-all")).0, 401);
    let bearer = format!("Bearer {TOKEN}");
    let (code, body) = reload(Some(&bearer));
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("unchanged"), "{body}");
    std::fs::write(&c.config, &broken).expect("write");
    let (code, body) = reload(Some(&bearer));
    assert_eq!(code, 422, "{body}");
    assert!(body.contains("rejected"), "{body}");
}

#[test]
fn a_corrupted_database_does_not_stop_the_node() {
    let mut c = started(6);
    c.signal(0, "TERM");
    c.wait_exit(0, Duration::from_secs(12)).expect("clean stop");
    let db = c.nodes[0].data_dir.join("piha.db");
    let mut bytes = std::fs::read(&db).expect("the node made piha.db");
    assert!(bytes.len() >= 4096, "db has content: {} bytes", bytes.len());
    // Overwrite the header and a stretch of the first pages with garbage.
    let len = bytes.len().min(8192);
    for (i, b) in bytes[..len].iter_mut().enumerate() {
        *b = (i * 7 + 13) as u8;
    }
    std::fs::write(&db, &bytes).expect("corrupt");

    let start = Instant::now();
    c.start(0);
    wait_until(FIVE_S, || c.status(0)).unwrap_or_else(|e| panic!("{e}\n{}", c.log(0)));
    println!(
        "status page served {:?} after start on a corrupt db",
        start.elapsed()
    );
    has_event(&c, "moved it aside").expect("the recovery is an event");
    let aside = std::fs::read_dir(&c.nodes[0].data_dir)
        .expect("data dir")
        .filter_map(Result::ok)
        .any(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("piha.db.corrupt-")
        });
    assert!(aside, "the corrupt file is kept for inspection");
}

#[test]
fn systemd_hears_ready_watchdog_and_stopping() {
    let mut c = Cluster::new(7);
    let sock_path = c.dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).expect("bind notify socket");
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    c.start_as_systemd(0, &sock_path, 400_000);

    let mut heard = String::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(8);
    while Instant::now() < deadline
        && !(heard.contains("READY=1") && heard.matches("WATCHDOG=1").count() >= 3)
    {
        if let Ok(n) = sock.recv(&mut buf) {
            heard.push_str(&String::from_utf8_lossy(&buf[..n]));
            heard.push('\n');
        }
    }
    assert!(heard.contains("READY=1"), "{heard}");
    assert!(heard.matches("WATCHDOG=1").count() >= 3, "{heard}");
    // READY only once the status page answers.
    c.status(0).expect("status page served when READY was sent");

    c.signal(0, "TERM");
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline && !heard.contains("STOPPING=1") {
        if let Ok(n) = sock.recv(&mut buf) {
            heard.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    }
    assert!(heard.contains("STOPPING=1"), "{heard}");
}

#[test]
fn a_failing_service_is_restarted_with_backoff_and_recorded() {
    let mut c = Cluster::new(8);
    // Someone else holds this node's heartbeat port.
    let squatter = UdpSocket::bind("127.61.8.11:7946").expect("bind squatter");
    c.start(0);
    let membership = |c: &Cluster| -> Result<Value, String> {
        let doc = c.status(0)?;
        let services = doc["node"]["services"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        services
            .into_iter()
            .find(|s| s["name"] == "membership")
            .ok_or_else(|| "no membership service".to_owned())
    };
    let (svc, _) = wait_until(FIVE_S, || {
        let s = membership(&c)?;
        (s["restarts"].as_u64().unwrap_or(0) >= 1)
            .then_some(s.clone())
            .ok_or(format!("{s}"))
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", c.log(0)));
    let err = svc["last_error"]
        .as_str()
        .unwrap_or_default()
        .to_lowercase();
    assert!(err.contains("address") && err.contains("in use"), "{svc}");
    has_event(&c, "membership failed: cannot listen for heartbeats").expect("failure is an event");
    // The rest of the node is fine meanwhile.
    assert_eq!(c.status(0).expect("status")["node"]["hostname"], "pi-1");

    drop(squatter);
    wait_until(Duration::from_secs(20), || {
        let s = membership(&c)?;
        (s["state"] == "running")
            .then_some(())
            .ok_or(format!("{s}"))
    })
    .expect("membership recovers once the port is free");
    let (_, metrics) = http_get(c.nodes[0].admin, "/metrics").expect("metrics");
    let restarts = metrics
        .lines()
        .find(|l| l.starts_with("piha_service_restarts_total{service=\"membership\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    assert!(restarts >= 1, "{metrics}");
}

#[test]
fn garbage_from_the_network_is_dropped_counted_and_reported() {
    let mut c = started(9);
    let target = "127.61.9.11:7946";
    let sender = UdpSocket::bind("127.61.9.99:0").expect("bind");
    let heartbeat = |cluster: &str, from: &str| {
        json!({"v": 1, "cluster": cluster, "from": from, "incarnation": 5, "seq": 1,
               "gossip": "127.61.9.99:7946", "report": {"address": null, "admin_port": 9000,
               "version": "x", "config_hash": "x", "roles": [], "system": null}})
        .to_string()
    };
    let name = c.status(0).expect("status")["cluster"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let datagrams: Vec<Vec<u8>> = vec![
        b"\x00\x01\x02 definitely not json".to_vec(),
        vec![b'{'; 9000],
        heartbeat("another-cluster", "pi-2").into_bytes(),
        heartbeat(&name, "pi-1").into_bytes(),
        heartbeat(&name, "web-7").into_bytes(),
        heartbeat(&name, "NOT A HOST").into_bytes(),
    ];
    for d in &datagrams {
        sender.send_to(d, target).expect("send");
    }
    let count = |metrics: &str, reason: &str| {
        let key = format!("piha_membership_heartbeats_dropped_total{{reason=\"{reason}\"}}");
        metrics
            .lines()
            .find(|l| l.starts_with(&key))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let reasons = [
        "malformed",
        "too_large",
        "other_cluster",
        "duplicate_hostname",
        "unknown_host",
        "out_of_bounds",
    ];
    wait_until(FIVE_S, || {
        let (_, m) = http_get(c.nodes[0].admin, "/metrics")?;
        let missing: Vec<_> = reasons.iter().filter(|r| count(&m, r) < 1).collect();
        missing
            .is_empty()
            .then_some(())
            .ok_or(format!("not counted: {missing:?}"))
    })
    .expect("every bad datagram counted by reason");
    has_event(&c, "also calls itself pi-1").expect("impostor reported");
    has_event(&c, "web-7").expect("stranger reported");

    // An oversized request head is refused, and the node keeps serving.
    let huge = "x".repeat(64 * 1024);
    let answer = http(c.nodes[0].admin, "GET", "/", &[("X-Filler", &huge)]);
    if let Ok((code, _)) = answer {
        assert!(code == 431 || code == 400, "oversized head answered {code}");
    }
    assert!(c.is_running(0));
    c.status(0).expect("still serving");
    let (code, _) = http(c.nodes[0].admin, "GET", "/no/such/page", &[]).expect("http");
    assert_eq!(code, 404);
}
