//! VRRP interop with keepalived, both directions: piha runs on lab node 0
//! and keepalived (Debian's 2.2.7, the version the research measured) on
//! lab node 1, one virtual router between them. In each cell of
//! {v3, v2 + PASS auth} × {multicast, unicast}: the higher priority wins
//! whichever implementation it is, the other stays backup, and when the
//! master is killed with SIGKILL the other takes over and ends up the only
//! VIP holder. piha's adverts are also captured on the wire and must decode
//! in tshark's VRRP dissector with a good checksum.
//!
//! keepalived 2.2.7 has no `v3_checksum_as_v2` (that arrived in a later
//! release; 2.2.7 only has `old_unicast_checksum`, which puts the multicast
//! group in a unicast advert's pseudo-header): it always sends the v3
//! IPv4 checksum with the pseudo-header. So the checksum cells here are
//! piha's side of it: `auto` (learns pseudo_header from keepalived),
//! explicit `pseudo_header`, and `message_only`, which must NOT
//! interoperate (the checksum trap: each side drops the other's adverts).
//!
//! Needs root, iproute2, keepalived and tshark; a missing tool fails the
//! test rather than skipping it.

mod common;

use std::process::Command;
use std::time::Duration;

use common::netns::poll;
use common::vrrp_rig::{Rig, VIP};

const PIHA: usize = 0;
const KEEPALIVED: usize = 1;
const HIGH: u8 = 150;
const LOW: u8 = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Version {
    V3,
    /// v2 with `auth_type PASS`, 1 s adverts.
    V2Auth,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Multicast,
    Unicast,
}

#[derive(Debug, Clone, Copy)]
struct Cell {
    version: Version,
    mode: Mode,
    /// piha's `checksum` setting (v3 only).
    checksum: &'static str,
}

impl Cell {
    const fn new(version: Version, mode: Mode) -> Cell {
        Cell {
            version,
            mode,
            checksum: "auto",
        }
    }

    fn name(&self) -> String {
        format!(
            "{:?}/{:?}/checksum={}",
            self.version, self.mode, self.checksum
        )
    }

    /// The body of piha's `[vrrp]` section.
    fn piha_vrrp(&self) -> String {
        let mut s = match self.version {
            Version::V3 => format!("interval = \"100ms\"\nchecksum = \"{}\"\n", self.checksum),
            Version::V2Auth => "version = 2\ninterval = \"1s\"\nauth = \"secret\"\n".to_owned(),
        };
        if self.mode == Mode::Unicast {
            // The default peers: every other balancer node in the file,
            // here the keepalived node's address.
            s.push_str("mode = \"unicast\"\n");
        }
        s
    }

    fn keepalived_conf(&self, rig: &Rig, priority: u8) -> String {
        let me = rig.lab.node(KEEPALIVED).addr;
        let peer = rig.lab.node(PIHA).addr;
        let (version, interval, auth) = match self.version {
            Version::V3 => (3, "0.1", String::new()),
            Version::V2Auth => (
                2,
                "1",
                "    authentication {\n        auth_type PASS\n        auth_pass secret\n    }\n"
                    .to_owned(),
            ),
        };
        let unicast = match self.mode {
            Mode::Multicast => String::new(),
            Mode::Unicast => {
                format!("    unicast_src_ip {me}\n    unicast_peer {{\n        {peer}\n    }}\n")
            }
        };
        format!(
            "global_defs {{\n    router_id ka-test\n    vrrp_version {version}\n}}\n\n\
             vrrp_instance VI_1 {{\n    state BACKUP\n    interface eth0\n    \
             virtual_router_id 51\n    priority {priority}\n    advert_int {interval}\n\
             {auth}{unicast}    virtual_ipaddress {{\n        {VIP}/24\n    }}\n}}\n"
        )
    }

    /// Election, takeover and (multicast) startup bounds: v2's
    /// Master_Down_Interval is about 3.6 s.
    fn patience(&self) -> Duration {
        match self.version {
            Version::V3 => Duration::from_secs(5),
            Version::V2Auth => Duration::from_secs(12),
        }
    }

    /// The checksum piha must report having learned from keepalived.
    fn expected_checksum(&self) -> &'static str {
        match (self.version, self.checksum) {
            // v2 is message-only by definition; piha reports its v3 IPv4
            // send setting, which stays at the pseudo-header default.
            (Version::V2Auth, _) => "pseudo_header",
            (Version::V3, "message_only") => "message_only",
            (Version::V3, _) => "pseudo_header",
        }
    }

    fn rig(&self, piha_priority: u8, keepalived_priority: u8) -> Rig {
        let mut rig = Rig::new(&[piha_priority, keepalived_priority], &self.piha_vrrp());
        let conf = self.keepalived_conf(&rig, keepalived_priority);
        // piha first, up to its status API, so keepalived does not win an
        // uncontested election only because piha is slower to start.
        rig.start(PIHA);
        let up = poll(Duration::from_secs(5), || rig.vrrp_status(PIHA));
        assert!(up.is_some(), "piha did not start\n{}", rig.logs());
        rig.start_keepalived(KEEPALIVED, &conf);
        rig
    }
}

/// Waits until `expected` alone holds the VIP (a single holder that is
/// another node may be a moment of a correct election, e.g. before a
/// preemption), then checks it stays so for a while.
fn wait_holder(rig: &Rig, expected: usize, limit: Duration, what: &str) {
    let found = poll(limit, || {
        (rig.lab.vip_holders(VIP) == [expected]).then_some(())
    });
    assert!(
        found.is_some(),
        "{what}: node {expected} is not the only VIP holder within {limit:?}: {:?}\n{}",
        rig.lab.vip_holders(VIP),
        rig.logs()
    );
    rig.assert_only_holder(expected, Duration::from_millis(300));
}

/// piha has the higher priority: it becomes master, keepalived stays backup
/// (it takes no VIP, so it accepts piha's adverts); piha's adverts decode in
/// tshark when `capture` asks; then piha is killed with SIGKILL and
/// keepalived takes over (piha's VIP guard removes piha's VIP).
fn piha_master_then_killed(cell: Cell, capture: bool) {
    let what = cell.name();
    let mut rig = cell.rig(HIGH, LOW);
    wait_holder(&rig, PIHA, cell.patience(), &format!("{what}: piha (150)"));
    rig.wait_state(PIHA, "master", cell.patience());
    if capture {
        assert_tshark_likes_piha_adverts(&rig, cell);
    }
    let s = rig.vrrp_status(PIHA).expect("piha status");
    assert_eq!(s["state"], "master", "{what}: {s}");
    assert_eq!(
        s["counters"]["became_master"], 1,
        "{what}: one election: {s}"
    );

    rig.kill(PIHA);
    let takeover = format!("{what}: keepalived takes over");
    wait_holder(&rig, KEEPALIVED, cell.patience(), &takeover);
}

/// keepalived has the higher priority: it becomes master, piha backup with
/// keepalived as the master it knows, and the checksum piha learned; then
/// keepalived is killed with SIGKILL and piha takes over.
fn keepalived_master_then_killed(cell: Cell) {
    let what = cell.name();
    let mut rig = cell.rig(LOW, HIGH);
    let ka_addr = rig.lab.node(KEEPALIVED).addr.to_string();
    let elected = format!("{what}: keepalived (150)");
    wait_holder(&rig, KEEPALIVED, cell.patience(), &elected);
    rig.wait_state(PIHA, "backup", cell.patience());
    let s = rig.vrrp_status(PIHA).expect("piha status");
    assert_eq!(s["state"], "backup", "{what}: {s}");
    assert_eq!(s["master"]["address"], ka_addr.as_str(), "{what}: {s}");
    assert_eq!(s["master"]["priority"], HIGH, "{what}: {s}");
    assert_eq!(s["checksum"], cell.expected_checksum(), "{what}: {s}");
    assert!(
        s["counters"]["adverts_received"].as_u64().unwrap_or(0) > 0,
        "{what}: piha accepts keepalived's adverts: {s}"
    );
    assert_no_error_drops(&s, &what);

    rig.kill_namespace(KEEPALIVED);
    let took_over = poll(cell.patience(), || {
        rig.lab.vip_holders(VIP).contains(&PIHA).then_some(())
    });
    assert!(
        took_over.is_some(),
        "{what}: piha did not take over\n{}",
        rig.logs()
    );
    // keepalived killed with -9 cannot remove its VIP; a supervisor restart
    // would (keepalived removes stale VIPs at start). Stand in for that
    // restart by deleting it, only after piha's takeover was observed.
    let ns = rig.lab.node(KEEPALIVED).name.clone();
    rig.lab.sh(
        &ns,
        &format!("ip addr del {VIP}/24 dev eth0 2>/dev/null || true"),
    );
    wait_holder(&rig, PIHA, cell.patience(), &format!("{what}: piha"));
    rig.wait_state(PIHA, "master", cell.patience());
}

/// No advert of keepalived's was dropped for a reason that means
/// disagreement (other_vrid would be another router; none exists here).
fn assert_no_error_drops(s: &serde_json::Value, what: &str) {
    let dropped = s["counters"]["dropped"].as_object().expect("dropped map");
    for (reason, n) in dropped {
        assert_eq!(n, 0, "{what}: piha dropped {n} adverts as {reason}: {s}");
    }
}

/// Captures one to a few adverts on piha's namespace and has tshark decode
/// them: every advert from piha's address must be VRRP with a good checksum
/// (tshark checks the v3 IPv4 checksum with the pseudo-header by default).
fn assert_tshark_likes_piha_adverts(rig: &Rig, cell: Cell) {
    let what = cell.name();
    let node = rig.lab.node(PIHA);
    let file = rig.dir.path().join("piha.pcap");
    // v2 sends one advert a second: capture long enough for two.
    let seconds = match cell.version {
        Version::V3 => "1",
        Version::V2Auth => "3",
    };
    let out = rig
        .lab
        .command(&node.name, "tshark")
        .args(["-n", "-q", "-i", "eth0", "-f", "ip proto 112"])
        .args(["-a", &format!("duration:{seconds}"), "-w"])
        .arg(&file)
        .output()
        .expect("run tshark (apt-get install tshark): the oracle of this check");
    assert!(
        out.status.success(),
        "{what}: tshark capture: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let as_v2 = cell.checksum == "message_only";
    let out = Command::new("tshark")
        .arg("-n")
        .arg("-r")
        .arg(&file)
        .args([
            "-o",
            &format!(
                "vrrp.v3_checksum_as_in_v2:{}",
                if as_v2 { "TRUE" } else { "FALSE" }
            ),
        ])
        .args(["-Y", &format!("ip.src == {}", node.addr)])
        .args(["-T", "fields", "-E", "separator=|"])
        .args(["-e", "_ws.col.Protocol", "-e", "vrrp.version"])
        .args(["-e", "vrrp.prio", "-e", "vrrp.checksum.status"])
        .output()
        .expect("run tshark");
    assert!(
        out.status.success(),
        "{what}: tshark read: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let rows: Vec<&str> = text.lines().collect();
    assert!(
        !rows.is_empty(),
        "{what}: no advert from piha captured in {seconds} s"
    );
    let version = match cell.version {
        Version::V3 => "3",
        Version::V2Auth => "2",
    };
    let want = format!("VRRP|{version}|{HIGH}|1");
    for row in &rows {
        // Checksum status 1 is "Good".
        assert_eq!(*row, want, "{what}: tshark on piha's advert: {text}");
    }
}

// ===== the matrix =====

const V3_MCAST: Cell = Cell::new(Version::V3, Mode::Multicast);
const V3_UCAST: Cell = Cell::new(Version::V3, Mode::Unicast);
const V2_MCAST: Cell = Cell::new(Version::V2Auth, Mode::Multicast);
const V2_UCAST: Cell = Cell::new(Version::V2Auth, Mode::Unicast);
const V3_MCAST_PSEUDO: Cell = Cell {
    checksum: "pseudo_header",
    ..V3_MCAST
};

#[test]
fn v3_multicast_piha_master() {
    piha_master_then_killed(V3_MCAST, true);
}

#[test]
fn v3_multicast_keepalived_master() {
    keepalived_master_then_killed(V3_MCAST);
}

#[test]
fn v3_multicast_pseudo_header_piha_master() {
    piha_master_then_killed(V3_MCAST_PSEUDO, false);
}

#[test]
fn v3_multicast_pseudo_header_keepalived_master() {
    keepalived_master_then_killed(V3_MCAST_PSEUDO);
}

#[test]
fn v3_unicast_piha_master() {
    piha_master_then_killed(V3_UCAST, false);
}

#[test]
fn v3_unicast_keepalived_master() {
    keepalived_master_then_killed(V3_UCAST);
}

#[test]
fn v2_auth_multicast_piha_master() {
    piha_master_then_killed(V2_MCAST, true);
}

#[test]
fn v2_auth_multicast_keepalived_master() {
    keepalived_master_then_killed(V2_MCAST);
}

#[test]
fn v2_auth_unicast_piha_master() {
    piha_master_then_killed(V2_UCAST, false);
}

#[test]
fn v2_auth_unicast_keepalived_master() {
    keepalived_master_then_killed(V2_UCAST);
}

/// The checksum trap, shown against the real thing. piha accepts both v3
/// IPv4 checksums whatever it sends (`checksum` only chooses what it
/// sends), but keepalived 2.2.7 only accepts the pseudo-header one: piha
/// set to RFC 9568's message-only checksum and elected master is not heard
/// by keepalived, which becomes master too. Both hold the VIP; piha, the
/// higher, hears keepalived's lower adverts and stays master. This is what
/// `checksum = "auto"` (the default) avoids.
#[test]
fn v3_message_only_master_is_not_heard_by_keepalived() {
    let cell = Cell {
        checksum: "message_only",
        ..V3_MCAST
    };
    let rig = cell.rig(HIGH, LOW);
    let what = cell.name();
    let both = poll(cell.patience(), || {
        (rig.lab.vip_holders(VIP) == [PIHA, KEEPALIVED]).then_some(())
    });
    assert!(
        both.is_some(),
        "{what}: expected the split brain of the checksum trap, holders {:?}\n{}",
        rig.lab.vip_holders(VIP),
        rig.logs()
    );
    let heard = poll(cell.patience(), || {
        let s = rig.vrrp_status(PIHA)?;
        (s["counters"]["adverts_received"].as_u64()? > 0).then_some(s)
    });
    let s = heard.unwrap_or_else(|| panic!("{what}: piha never heard keepalived\n{}", rig.logs()));
    assert_eq!(s["state"], "master", "{what}: {s}");
    assert_eq!(s["checksum"], "message_only", "{what}: {s}");
    assert_no_error_drops(&s, &what);
    // The operator is told why, and what to set.
    rig.wait_log(
        PIHA,
        "will not hear this node's adverts",
        Duration::from_secs(2),
    );
}
