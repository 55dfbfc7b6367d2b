//! VRRP between real piha processes in network namespaces (see
//! tests/common/vrrp_rig.rs): elections, failures of the master, the VIP
//! always on exactly one node afterwards, and the outage a client sees.
//! Needs root and iproute2.

mod common;

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
    // address stays on node 0's interface.
    let ns = rig.lab.node(0).name.clone();
    rig.lab.sh(
        &ns,
        "ip netns pids \"$(ip netns identify $$)\" | grep -v \"^$$\\$\" | xargs -r kill -9 || true",
    );
    rig.children[0] = None;
    rig.wait_state(1, "master", Duration::from_secs(3));
    assert_eq!(rig.lab.vip_holders(VIP), [0, 1], "the stale VIP stayed");
    rig.start(0);
    rig.wait_state(0, "master", Duration::from_secs(5));
    assert_converged_on(&rig, 0);
    let log = rig.log(0);
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
