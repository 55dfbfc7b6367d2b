//! A Pi loses its power (or its cable): unlike a SIGKILL
//! (`db_failover.rs`), nothing tells the pooler, no FIN, no RST; its
//! packets to the dead node just go unanswered. Two cases:
//!
//! - the primary's node, while an application writes through the pooler
//!   on the VIP, which another node holds. The application has no
//!   statement timeout of its own (it waits up to a minute), as most do,
//!   so what it waits is what the pooler makes it wait;
//! - an application's node, in the middle of a transaction that holds a
//!   row lock another client needs.
//!
//! Needs root (namespaces, nftables) and PostgreSQL 15.

mod common;

use std::time::{Duration, Instant};

use common::db_net::{DbNet, Load, outage};
use common::netns::{in_netns, poll};
use common::pooler::{APP_DB, APP_PASSWORD, APP_USER};

const START: Duration = Duration::from_secs(90);

/// The pooler's probe (3 misses of 500 ms, in the rig's cluster file)
/// plus the promotion (membership's 1 s, the decider, pg_promote) plus a
/// second of margin for this busy machine.
const WRITES_BACK_WITHIN: Duration = Duration::from_secs(10);

/// The longest one insert may wait: a client whose statement was on the
/// wire to the dead primary hears so after the pooler's
/// `tcp_user_timeout` (10 s built in), not after TCP's 15 minutes of
/// retransmissions; a few seconds of margin for this busy machine.
const LONGEST_WAIT: Duration = Duration::from_secs(15);

/// Clients that connect just after the cut.
const BURST: usize = 6;

#[test]
fn a_primary_that_loses_power_costs_writes_seconds_not_minutes() {
    // pi-2 holds the VIP (priority 150), pi-1 runs the primary.
    let mut net = DbNet::with("[db]\nbackup = false\n", [100, 150], "");
    net.start_with_numbers(1, START);

    let client = net.rig.lab.client().name.clone();
    let load = Load::with_timeout(
        &client,
        net.vip_pooler(),
        Duration::from_secs(90),
        1..50_000,
        Duration::from_secs(60),
    );
    std::thread::sleep(Duration::from_secs(3));
    let fault = net.rig.power_cut(0);
    // More clients arrive before the pooler has noticed: the pool has no
    // idle connection for them, so it opens new ones to the dead node.
    let burst: Vec<Load> = (0..BURST as i64)
        .map(|i| {
            let first = 1_000_000 * (i + 1);
            Load::with_timeout(
                &client,
                net.vip_pooler(),
                Duration::from_secs(60),
                first..first + 20,
                Duration::from_secs(60),
            )
        })
        .collect();

    let new_primary = poll(Duration::from_secs(30), || {
        [1usize, 2].into_iter().find(|i| {
            net.db(*i)
                .is_ok_and(|d| d["state"] == "running" && d["role"] == "primary")
        })
    })
    .unwrap_or_else(|| panic!("no standby was promoted:\n{}", net.rig.logs()));
    // Writes must come back; keep writing a little after they do.
    let back = poll(Duration::from_secs(70), || {
        net.ids(net.vip_pooler()).ok().filter(|ids| !ids.is_empty())
    });
    assert!(
        back.is_some(),
        "no read through the VIP:\n{}",
        net.rig.logs()
    );
    std::thread::sleep(Duration::from_secs(3));
    let mut writes = load.finish();
    for b in burst {
        writes.extend(b.finish());
    }
    writes.sort_by_key(|w| w.at);

    let after: Vec<_> = writes.iter().filter(|w| w.at >= fault).collect();
    let o = outage(&writes, fault);
    let longest = after.iter().map(|w| w.took).max().unwrap_or_default();
    // Writes are back at the first acknowledged insert asked for after
    // the cut: the new primary took it.
    let back = after
        .iter()
        .filter(|w| w.ok && w.at - w.took >= fault)
        .map(|w| w.at - fault)
        .min();
    eprintln!(
        "power cut of the primary: new primary pi-{}; {} inserts answered after the cut, {} \
         failed; longest wait for one insert {longest:?}; writes back {back:?} after the cut",
        new_primary + 1,
        after.len(),
        o.failed,
    );
    for w in after
        .iter()
        .filter(|w| !w.ok || w.took > Duration::from_secs(1))
    {
        eprintln!(
            "  insert {} answered {:?} after the cut, after waiting {:?}: {}",
            w.id,
            w.at - fault,
            w.took,
            w.error.as_deref().unwrap_or("ok")
        );
    }
    assert!(
        longest <= LONGEST_WAIT,
        "an insert waited {longest:?} (bound {LONGEST_WAIT:?}):\n{}",
        net.rig.logs()
    );
    let back = back.unwrap_or_else(|| {
        panic!(
            "no insert asked for after the cut was acknowledged:\n{}",
            net.rig.logs()
        )
    });
    assert!(
        back <= WRITES_BACK_WITHIN,
        "writes came back {back:?} after the cut (bound {WRITES_BACK_WITHIN:?})"
    );
    // Only a statement sent to the dead node may fail: the one on the
    // wire when the power went, and one given a pooled connection to it
    // before the probe noticed (the pool had at most one more). Every
    // later one waits for the new primary.
    assert!(
        o.failed <= 2,
        "{} inserts failed, not only the one in flight: {:?}",
        o.failed,
        after
            .iter()
            .filter(|w| !w.ok)
            .map(|w| &w.error)
            .collect::<Vec<_>>()
    );
}

/// The pooler's `client_tcp_user_timeout` in this test (60 s built in,
/// shorter here to keep the test short).
const CLIENT_TIMEOUT: &str = "client_tcp_user_timeout = \"5s\"\n";

/// How long a dead client's open transaction may keep its locks: that
/// timeout and a margin for this busy machine.
const LOCK_FREED_WITHIN: Duration = Duration::from_secs(10);

async fn app_client(addr: std::net::SocketAddr) -> (tokio_postgres::Client, u16) {
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect to the pooler");
    let port = tcp.local_addr().expect("local address").port();
    let (client, conn) = tokio_postgres::Config::new()
        .user(APP_USER)
        .password(APP_PASSWORD)
        .dbname(APP_DB)
        .connect_raw(tcp, tokio_postgres::NoTls)
        .await
        .expect("log in to the pooler");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    (client, port)
}

#[test]
fn a_client_that_loses_power_in_a_transaction_lets_go_of_its_locks() {
    let mut net = DbNet::with("[db]\nbackup = false\n", [150, 100], CLIENT_TIMEOUT);
    net.rig.start_all();
    net.wait_role(0, "primary", None, START);
    assert_eq!(net.rig.wait_single_holder(START), 0, "pi-1 holds the VIP");
    let created = poll(START, || {
        net.psql(
            net.vip_pooler(),
            "CREATE TABLE IF NOT EXISTS counters (id int PRIMARY KEY, n int); \
             INSERT INTO counters VALUES (1, 0) ON CONFLICT DO NOTHING",
        )
        .ok()
    });
    assert!(
        created.is_some(),
        "the pooler on the VIP answers:\n{}",
        net.rig.logs()
    );

    let client_ns = net.rig.lab.client().name.clone();
    let vip = net.vip_pooler();
    let lab = &net.rig.lab;
    let waited = in_netns(&client_ns.clone(), move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            // The client that will die holds the row's lock.
            let (dying, port) = app_client(vip).await;
            dying
                .batch_execute("BEGIN; UPDATE counters SET n = n + 1 WHERE id = 1")
                .await
                .expect("the first client's update");
            // Its node goes dark: nothing from or to its port any more.
            lab.sh(
                &client_ns,
                &format!(
                    "nft add table inet dead && \
                     nft add chain inet dead out '{{ type filter hook output priority 0; policy accept; }}' && \
                     nft add rule inet dead out tcp sport {port} drop && \
                     nft add chain inet dead in '{{ type filter hook input priority 0; policy accept; }}' && \
                     nft add rule inet dead in tcp dport {port} drop"
                ),
            );
            let dark = Instant::now();
            let (other, _) = app_client(vip).await;
            let updated = tokio::time::timeout(
                Duration::from_secs(30),
                other.execute("UPDATE counters SET n = n + 10 WHERE id = 1", &[]),
            )
            .await;
            let waited = dark.elapsed();
            // Only once the update is through: a read sent behind an
            // update still waiting for the lock would wait with it. From
            // the primary: a standby may not have replayed it yet.
            let n: Option<i32> = match updated {
                Ok(Ok(_)) => tokio::time::timeout(
                    Duration::from_secs(10),
                    other.query_one("/* piha:primary */ SELECT n FROM counters WHERE id = 1", &[]),
                )
                .await
                .ok()
                .and_then(|row| row.ok())
                .map(|row| row.get(0)),
                _ => None,
            };
            drop(dying);
            (waited, updated.map(|r| r.map_err(|e| e.to_string())), n)
        })
    });
    let (waited, updated, n) = waited;
    eprintln!(
        "a client dead in its transaction: the other client's update waited {waited:?} \
         ({updated:?}); counter {n:?}"
    );
    assert!(
        matches!(updated, Ok(Ok(1))),
        "the other client's update did not go through: {updated:?}\n{}",
        net.rig.logs()
    );
    assert!(
        waited <= LOCK_FREED_WITHIN,
        "the dead client's locks were held for {waited:?} (bound {LOCK_FREED_WITHIN:?})"
    );
    // Its transaction was rolled back, not committed.
    assert_eq!(
        n,
        Some(10),
        "the dead client's uncommitted update took effect"
    );
}
