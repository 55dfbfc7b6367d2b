//! VRRP between real piha processes in network namespaces (see
//! tests/common/vrrp_rig.rs): elections, failures of the master, the VIP
//! always on exactly one node afterwards, and the outage a client sees.
//! Needs root and iproute2.

mod common;

use std::io::{Read, Write};
use std::time::Duration;

use common::vrrp_rig::{Probe, Rig, VIP};

const FAST: &str = "interval = \"100ms\"";

#[test]
fn three_nodes_elect_the_highest_priority() {
    let mut rig = Rig::new(&[100, 150, 120], FAST);
    rig.start_all();
    rig.wait_state(1, "master", Duration::from_secs(10));
    rig.wait_state(0, "backup", Duration::from_secs(5));
    rig.wait_state(2, "backup", Duration::from_secs(5));
    rig.assert_only_holder(1, Duration::from_millis(500));
    assert_eq!(rig.lab.client_resolve(VIP), rig.mac(1));
}

/// Two nodes converged with node 0 (priority 150) as master, the client's
/// ARP entry on it, and a probe of the VIP running.
fn converged_pair(vrrp: &str) -> Rig {
    let mut rig = Rig::new(&[150, 100], vrrp);
    rig.start_all();
    // Node 1 may start first and hold the VIP until node 0 preempts it.
    rig.wait_state(0, "master", Duration::from_secs(10));
    rig.wait_state(1, "backup", Duration::from_secs(5));
    assert_eq!(rig.wait_single_holder(Duration::from_secs(5)), 0);
    // The client talks to the VIP, so it has an ARP entry that takeovers
    // must move (gratuitous ARP updates entries, it does not make them).
    rig.lab.client_resolve(VIP);
    rig.wait_serving(Duration::from_secs(10));
    rig
}

/// After a failover: exactly `holder` has the VIP for a second of 10 ms
/// samples, and the client's ARP entry points at it.
fn assert_converged_on(rig: &Rig, holder: usize) {
    assert_eq!(
        rig.wait_single_holder(Duration::from_secs(5)),
        holder,
        "{}",
        rig.logs()
    );
    rig.assert_only_holder(holder, Duration::from_secs(1));
    let mac = rig.mac(holder);
    let seen = common::netns::poll(Duration::from_secs(2), || {
        rig.lab.client_neigh(VIP).filter(|m| *m == mac)
    });
    assert_eq!(
        seen.as_deref(),
        Some(mac.as_str()),
        "the client's ARP entry for the VIP points at node {holder}"
    );
}

fn probe(rig: &Rig) -> Probe {
    Probe::start(
        &rig.lab.client().name,
        Duration::from_millis(10),
        Duration::from_secs(3),
    )
}

#[test]
fn sigkill_of_the_master_leaves_one_holder() {
    let mut rig = converged_pair(FAST);
    let p = probe(&rig);
    std::thread::sleep(Duration::from_millis(1000));
    rig.kill(0);
    let r = p.finish();
    println!("SIGKILL of the master: {r:?}");
    // The VIP guard took the dead node's VIP off, so node 1 is alone.
    assert_converged_on(&rig, 1);
    assert!(r.successes > 0, "the VIP answered before and after: {r:?}");
}

#[test]
fn link_down_of_the_master_leaves_one_holder() {
    let rig = converged_pair(FAST);
    let p = probe(&rig);
    std::thread::sleep(Duration::from_millis(1000));
    rig.lab.link_down(0);
    let r = p.finish();
    println!("link down of the master: {r:?}");
    assert_converged_on(&rig, 1);
    // Its admin API is behind the dead link: read its log instead.
    rig.wait_log(0, "master -> fault", Duration::from_secs(2));
    // Back up: node 0 preempts (priority 150) and takes the VIP back.
    rig.lab.link_up(0);
    rig.wait_state(0, "master", Duration::from_secs(5));
    assert_converged_on(&rig, 0);
}

#[test]
fn sigstop_and_sigcont_of_the_master_end_with_one_holder() {
    let rig = converged_pair(FAST);
    rig.signal(0, "STOP");
    rig.wait_state(1, "master", Duration::from_secs(3));
    // Both hold it while node 0 sleeps: its kernel still has the address.
    assert_eq!(rig.lab.vip_holders(VIP), [0, 1]);
    rig.signal(0, "CONT");
    // Node 0 wakes up, meets the lower priority master, and wins again.
    rig.wait_state(1, "backup", Duration::from_secs(3));
    assert_converged_on(&rig, 0);
}

#[test]
fn graceful_stop_hands_over_with_priority_zero() {
    let mut rig = converged_pair(FAST);
    let p = probe(&rig);
    std::thread::sleep(Duration::from_millis(1000));
    rig.signal(0, "TERM");
    let r = p.finish();
    println!("graceful stop: {r:?}");
    assert!(rig.wait_exit(0, Duration::from_secs(5)), "node 0 stopped");
    assert_converged_on(&rig, 1);
    // Priority 0 made node 1 wait only its skew (61 ms at priority 100),
    // not the master-down interval: the reason says which path it took.
    let s = rig.vrrp_status(1).expect("node 1 status");
    assert_eq!(
        s["last_transition"]["reason"]["kind"], "master_left",
        "{s:#}"
    );
}

#[test]
fn preempt_on_takes_the_vip_back_and_off_does_not() {
    let mut rig = converged_pair(FAST);
    rig.kill(0);
    assert_converged_on(&rig, 1);
    rig.start(0);
    rig.wait_state(0, "master", Duration::from_secs(5));
    let s = rig.vrrp_status(0).expect("node 0 status");
    assert_eq!(s["last_transition"]["reason"]["kind"], "preempted", "{s:#}");
    assert_converged_on(&rig, 0);

    let mut rig = converged_pair("interval = \"100ms\"\npreempt = false");
    rig.kill(0);
    assert_converged_on(&rig, 1);
    rig.start(0);
    rig.wait_state(0, "backup", Duration::from_secs(5));
    // Well past the master-down interval: node 1 keeps it.
    std::thread::sleep(Duration::from_millis(800));
    assert_converged_on(&rig, 1);
}

/// A master that gives the VIP up resets the connections on it: a client
/// waiting on one gets an RST as the VIP moves, where it used to wait out
/// its own timeout for an answer that could no longer be routed from an
/// address the node had dropped (the failure drill's 5 s hangs at
/// failback).
#[test]
fn a_master_giving_the_vip_up_resets_the_connections_on_it() {
    let mut rig = converged_pair(FAST);
    rig.kill(0);
    assert_converged_on(&rig, 1);
    // Half a request head: node 1's balancer waits for the rest (its
    // header timeout is 10 s), as it would wait on a slow backend.
    let (sent, ready) = std::sync::mpsc::channel();
    let ns = rig.lab.client().name.clone();
    let waiting = std::thread::spawn(move || {
        common::netns::in_netns(&ns, || {
            let addr = std::net::SocketAddr::new(VIP, 80);
            let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1))
                .expect("connect to the VIP");
            s.write_all(b"GET / HTTP/1.1\r\nHost: vip\r\n")
                .expect("half a head");
            s.set_read_timeout(Some(Duration::from_secs(8)))
                .expect("read timeout");
            let _ = sent.send(());
            let mut buf = [0u8; 256];
            let r = s.read(&mut buf);
            (r.map_err(|e| e.kind()), std::time::Instant::now())
        })
    });
    ready
        .recv_timeout(Duration::from_secs(3))
        .expect("the client is waiting");
    rig.start(0);
    rig.wait_state(0, "master", Duration::from_secs(5));
    let stepped_down = std::time::Instant::now();
    let (read, at) = waiting.join().expect("client thread");
    assert_eq!(
        read,
        Err(std::io::ErrorKind::ConnectionReset),
        "the waiting client was told at once\n{}",
        rig.logs()
    );
    let late = at.saturating_duration_since(stepped_down);
    assert!(late < Duration::from_secs(1), "the RST came {late:?} late");
    let s = rig.vrrp_status(1).expect("node 1 status");
    assert!(
        s["counters"]["connections_reset"].as_u64() >= Some(1),
        "{s:#}"
    );
    assert_converged_on(&rig, 0);
}

#[test]
fn a_stopped_local_http_balancer_moves_the_vip() {
    let rig = converged_pair(FAST);
    rig.admin_post(0, "/api/v1/services/balancer-http/stop")
        .expect("stop the balancer");
    rig.wait_state(1, "master", Duration::from_secs(5));
    assert_converged_on(&rig, 1);
    let s = rig.vrrp_status(0).expect("node 0 status");
    assert_eq!(
        s["effective_priority"], 50,
        "150 - 100 for the balancer: {s:#}"
    );
    assert_eq!(s["tracking"]["http_balancer"]["healthy"], false, "{s:#}");
    // Started again, node 0 is healthy and preempts.
    rig.admin_post(0, "/api/v1/services/balancer-http/start")
        .expect("start the balancer");
    rig.wait_state(0, "master", Duration::from_secs(5));
    assert_converged_on(&rig, 0);
}

#[test]
fn a_restarted_killed_master_removes_its_stale_vip_before_its_first_advert() {
    let mut rig = converged_pair(FAST);
    // Power-cut style: piha and its VIP guard die together, so the
    // address stays on node 0's interface. Everything is stopped first:
    // killed one after the other, the guard could see piha die and take
    // the VIP off before its own SIGKILL (a CI run caught that race).
    let ns = rig.lab.node(0).name.clone();
    rig.lab.sh(
        &ns,
        "pids=$(ip netns pids \"$(ip netns identify $$)\" | grep -v \"^$$\\$\"); \
         [ -z \"$pids\" ] || { kill -STOP $pids; kill -9 $pids; kill -CONT $pids; } 2>/dev/null || true",
    );
    rig.children[0] = None;
    rig.wait_state(1, "master", Duration::from_secs(3));
    assert_eq!(rig.lab.vip_holders(VIP), [0, 1], "the stale VIP stayed");
    rig.start(0);
    rig.wait_state(0, "master", Duration::from_secs(5));
    assert_converged_on(&rig, 0);
    // The log holds both runs: look at the second one.
    let whole = rig.log(0);
    let log = &whole[whole.rfind("starting as pi-1").unwrap_or(0)..];
    let removed = log
        .find("a previous run left it behind")
        .unwrap_or_else(|| panic!("no stale-VIP removal logged:\n{log}"));
    let first_state = log
        .find("initialize -> backup")
        .unwrap_or_else(|| panic!("no start logged:\n{log}"));
    assert!(
        removed < first_state,
        "removed before the instance started speaking:\n{log}"
    );
}

#[test]
fn two_nodes_elect_the_highest_priority_whichever_starts_first() {
    let mut rig = Rig::new(&[100, 150], FAST);
    rig.start(0);
    assert_eq!(rig.wait_single_holder(Duration::from_secs(5)), 0);
    rig.lab.client_resolve(VIP);
    rig.start(1);
    rig.wait_state(1, "master", Duration::from_secs(5));
    assert_converged_on(&rig, 1);
}

#[test]
fn unicast_peers_elect_and_fail_over_without_multicast() {
    let vrrp = "interval = \"100ms\"\nmode = \"unicast\"\nunicast_peers = [\"192.0.2.10\", \"192.0.2.11\"]";
    let mut rig = converged_pair(vrrp);
    let s = rig.vrrp_status(1).expect("node 1 status");
    assert_eq!(s["mode"], "unicast", "{s:#}");
    rig.kill(0);
    assert_converged_on(&rig, 1);
}

#[test]
fn a_failing_check_command_moves_the_vip_and_its_recovery_brings_it_back() {
    let dir = tempfile::tempdir().expect("temp dir");
    // One cluster-wide check; it fails on a node whose namespace has a
    // `down-<netns>` file, so the test can fail it on node 0 alone.
    let vrrp = format!(
        "interval = \"100ms\"\n\
         checks = [ {{ name = \"gate\", command = [\"/bin/sh\", \"-c\", \
         \"test ! -e {}/down-$(ip netns identify)\"], \
         interval = \"200ms\", fall = 2, rise = 2, weight = 80 }} ]",
        dir.path().display()
    );
    let rig = converged_pair(&vrrp);
    let down = dir.path().join(format!("down-{}", rig.lab.node(0).name));
    std::fs::write(&down, "").expect("fail node 0's check");
    rig.wait_state(1, "master", Duration::from_secs(5));
    assert_converged_on(&rig, 1);
    let s0 = rig.vrrp_status(0).expect("node 0 status");
    assert_eq!(s0["effective_priority"], 70, "150 - 80: {s0:#}");
    assert_eq!(s0["tracking"]["gate"]["healthy"], false, "{s0:#}");
    std::fs::remove_file(&down).expect("heal node 0's check");
    rig.wait_state(0, "master", Duration::from_secs(5));
    assert_converged_on(&rig, 0);
}

#[test]
fn notify_commands_run_in_the_order_of_the_transitions() {
    let dir = tempfile::tempdir().expect("temp dir");
    let script = dir.path().join("notify.sh");
    // Appends "STATE PRIORITY REASON" to a file named after the priority.
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\n[ \"$1\" = INSTANCE ] && [ \"$2\" = vrid-51 ] || exit 1\n\
             echo \"$3 $4 $PIHA_VRRP_REASON\" >> {}/log-$4\n",
            dir.path().display()
        ),
    )
    .expect("write script");
    std::process::Command::new("chmod")
        .args(["+x"])
        .arg(&script)
        .status()
        .expect("chmod");
    let vrrp = format!("interval = \"100ms\"\nnotify = [\"{}\"]", script.display());
    let mut rig = converged_pair(&vrrp);
    rig.signal(0, "TERM");
    assert!(rig.wait_exit(0, Duration::from_secs(5)));
    rig.wait_state(1, "master", Duration::from_secs(3));
    std::thread::sleep(Duration::from_millis(300));
    // Node 0 has priority 150, node 1 100: one log per node.
    let node0 = std::fs::read_to_string(dir.path().join("log-150")).expect("node 0 ran notify");
    let node1 = std::fs::read_to_string(dir.path().join("log-100")).expect("node 1 ran notify");
    let states = |log: &str| -> Vec<String> {
        log.lines()
            .map(|l| l.split_whitespace().next().unwrap_or_default().to_owned())
            .collect()
    };
    // Which node started first decides whether node 1 was master for a
    // moment before node 0 preempted it; either way each log is a chain
    // of changes (never the same state twice in a row) in this order.
    for (log, ends) in [(&node0, &["MASTER", "STOP"][..]), (&node1, &["MASTER"][..])] {
        let st = states(log);
        assert_eq!(st.first().map(String::as_str), Some("BACKUP"), "{log}");
        assert!(
            st.ends_with(&ends.iter().map(|s| s.to_string()).collect::<Vec<_>>()),
            "{log}"
        );
        assert!(st.windows(2).all(|w| w[0] != w[1]), "{log}");
    }
    assert!(
        node1
            .lines()
            .last()
            .unwrap_or_default()
            .contains("master_left"),
        "{node1}"
    );
}
