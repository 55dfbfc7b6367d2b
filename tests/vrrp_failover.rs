//! VRRP between real piha processes in network namespaces (see
//! tests/common/vrrp_rig.rs): elections, failures of the master, the VIP
//! always on exactly one node afterwards, and the outage a client sees.
//! Needs root and iproute2.

mod common;

use std::time::Duration;

use common::vrrp_rig::Rig;

const FAST: &str = "interval = \"100ms\"";

#[test]
fn three_nodes_elect_the_highest_priority() {
    let mut rig = Rig::new(&[100, 150, 120], FAST);
    rig.start_all();
    let holder = rig.wait_single_holder(Duration::from_secs(10));
    assert_eq!(holder, 1, "priority 150 holds the VIP\n{}", rig.logs());
    rig.wait_state(1, "master", Duration::from_secs(5));
    rig.wait_state(0, "backup", Duration::from_secs(5));
    rig.wait_state(2, "backup", Duration::from_secs(5));
    rig.assert_only_holder(1, Duration::from_millis(500));
}
