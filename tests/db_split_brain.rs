//! Split brain, the worst day of a hand-built cluster: the primary's node
//! (pi-1) is cut off from the other nodes by a firewall in its namespace,
//! while a client still reaches it directly. The bound stated here: pi-1
//! stops accepting writes within FENCE_BOUND of the cut (membership calls
//! the others down after `down_after` = 1 s, then the primary fences
//! itself with an immediate stop). The other side promotes a standby; once
//! the cut heals there is one primary and one history: pi-1 rewinds and
//! streams from the new primary, and holds exactly its rows.

mod common;

use std::time::{Duration, Instant};

use common::db_net::{DbNet, Load};
use common::netns::poll;

const START: Duration = Duration::from_secs(90);
/// down_after (1 s) + the fence (an immediate stop) + a second of margin
/// for a busy machine.
const FENCE_BOUND: Duration = Duration::from_secs(3);

#[test]
fn a_cut_off_primary_stops_taking_writes_and_rejoins_with_one_history() {
    let mut net = DbNet::new("[db]\nbackup = false\n");
    net.rig.start_all();
    net.wait_role(0, "primary", None, START);
    net.wait_role(1, "standby", Some("pi-1"), START);
    net.wait_role(2, "standby", Some("pi-1"), START);
    let created = poll(START, || {
        net.psql(
            net.server(0),
            "CREATE TABLE IF NOT EXISTS numbers (id bigint PRIMARY KEY)",
        )
        .ok()
    });
    assert!(created.is_some(), "pi-1 takes writes:\n{}", net.rig.logs());

    // A client that keeps writing to pi-1 itself, as one configured with
    // the primary's address (not the VIP) would.
    let client = net.rig.lab.client().name.clone();
    let load = Load::start(&client, net.server(0), Duration::from_secs(40), 100_000);
    std::thread::sleep(Duration::from_secs(2));
    let cut = Instant::now();
    // Cut off from the other nodes, not from the client.
    net.rig.lab.drop_traffic(0, Some(net.rig.lab.client().addr));

    // The other side elects a new primary.
    let promoted = poll(Duration::from_secs(30), || {
        [1usize, 2].into_iter().find(|i| {
            net.db(*i)
                .is_ok_and(|d| d["state"] == "running" && d["role"] == "primary")
        })
    })
    .unwrap_or_else(|| panic!("the majority side promoted no one:\n{}", net.rig.logs()));
    std::thread::sleep(Duration::from_secs(2));
    let writes = load.finish();
    let last_ok = writes
        .iter()
        .filter(|w| w.ok)
        .map(|w| w.at)
        .max()
        .expect("writes before the cut");
    let accepted_after_cut = last_ok.saturating_duration_since(cut);
    let late: Vec<i64> = writes
        .iter()
        .filter(|w| w.ok && w.at > cut)
        .map(|w| w.id)
        .collect();
    eprintln!(
        "split brain: pi-1 took its last write {accepted_after_cut:?} after the cut ({} writes after \
         the cut); pi-{} promoted",
        late.len(),
        promoted + 1
    );
    assert!(
        accepted_after_cut <= FENCE_BOUND,
        "pi-1 kept taking writes {accepted_after_cut:?} after it was cut off (bound {FENCE_BOUND:?}):\n{}",
        net.rig.log(0)
    );
    let fenced = net
        .db(0)
        .expect("pi-1's status is reachable from the client");
    assert_ne!(
        fenced["role"], "primary",
        "pi-1 still runs as primary while cut off: {fenced}"
    );

    // Heal: one primary, one history.
    net.rig.lab.restore_traffic(0);
    let new_host = format!("pi-{}", promoted + 1);
    net.wait_role(0, "standby", Some(&new_host), Duration::from_secs(60));
    let primaries: Vec<usize> = (0..3)
        .filter(|i| net.db(*i).is_ok_and(|d| d["role"] == "primary"))
        .collect();
    assert_eq!(primaries, [promoted], "exactly one primary after the heal");
    let marker = 9_000_001_i64;
    net.psql(
        net.server(promoted),
        &format!("INSERT INTO numbers VALUES ({marker})"),
    )
    .unwrap_or_else(|e| panic!("write on the new primary: {e}"));
    let same = poll(Duration::from_secs(30), || {
        let theirs = net.ids(net.server(promoted)).ok()?;
        let ours = net.ids(net.server(0)).ok()?;
        (ours.contains(&marker) && ours == theirs).then_some(ours.len())
    });
    assert!(
        same.is_some(),
        "pi-1's rows differ from the new primary's after the rejoin:\n{}",
        net.pg_log(0)
    );
    let kept = net.ids(net.server(0)).unwrap_or_default();
    let discarded = late.iter().filter(|id| !kept.contains(id)).count();
    eprintln!(
        "after the heal: one primary (pi-{}), pi-1 holds the same {} rows; {discarded} writes pi-1 \
         took in its last moments alone were discarded by the rewind",
        promoted + 1,
        same.unwrap_or(0)
    );
}
