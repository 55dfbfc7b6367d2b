//! The Postgres pooler end to end: a real piha node in front of a real
//! primary and two streaming standbys (see tests/common/pooler.rs).

mod common;

use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use common::node::Cluster;
use common::pg::PgCluster;
use common::pooler::{APP_DB, APP_PASSWORD, APP_USER, POOLER_PORT, PoolerRig, postgres_lines};

/// Nets 127.61.30-39 belong to the pooler tests.
#[test]
fn psql_and_pgbench_work_through_the_pooler_in_both_modes() {
    let rig = PoolerRig::start(30, 0, "");
    assert_eq!(rig.psql("SELECT current_user"), "app");
    let init = rig.pgbench(&["-i", "-s", "1", "-q"]);
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );
    for mode in ["simple", "extended", "prepared"] {
        for script in [&["-S"][..], &[][..]] {
            let mut args = vec!["-n", "-c", "8", "-j", "2", "-t", "200", "-M", mode];
            args.extend_from_slice(script);
            let out = rig.pgbench(&args);
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success() && stdout.contains("number of failed transactions: 0"),
                "pgbench -M {mode} {script:?}: {stdout}\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(
                stdout.contains("number of transactions actually processed: 1600/1600"),
                "{stdout}"
            );
        }
    }
}

/// Right after the node starts, before its prober has heard from
/// PostgreSQL, the pooler already listens. A client that logs in then (an
/// application that kept retrying while the Pi rebooted) is let in once the
/// first probe answers, not refused with "no PostgreSQL server is available
/// right now". A relay that holds every connection to PostgreSQL for
/// 300 ms (a slow Pi, a PostgreSQL still starting) keeps the first probe
/// from ending before the client's login.
#[test]
fn a_login_right_after_the_node_starts_is_not_refused() {
    let pg = PgCluster::start(0);
    let real = pg.servers()[0].socket_addr();
    let relay = slow_relay(real, Duration::from_millis(300));
    let lines = postgres_lines(&pg).replace(&real.to_string(), &relay.to_string());
    let text = format!(
        r#"[cluster]
name = "pooltest"
vip = "127.61.39.100/24"

[postgres]
{lines}
[[node]]
hostname = "pi-1"
address = "127.61.39.1/24"
roles = ["balancer"]
"#
    );
    let mut node = Cluster::with_hosts(39, &text, &[("pi-1", 1)]);
    let addr: SocketAddr = format!("127.61.39.1:{POOLER_PORT}").parse().expect("addr");
    let conninfo = format!(
        "host={} port={} user={APP_USER} dbname={APP_DB} password={APP_PASSWORD} \
         sslmode=disable connect_timeout=10",
        addr.ip(),
        addr.port()
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    for round in 0..2 {
        node.kill(0);
        node.start(0);
        // Logs in as soon as the port takes a connection: in-process, so
        // the attempt comes within a millisecond of the listener.
        let outcome = runtime.block_on(async {
            let started = tokio::time::Instant::now();
            loop {
                match tokio_postgres::connect(&conninfo, tokio_postgres::NoTls).await {
                    Ok((client, conn)) => {
                        tokio::spawn(conn);
                        return client
                            .simple_query("SELECT 1")
                            .await
                            .map(|_| ())
                            .map_err(|e| format!("SELECT 1: {e}"));
                    }
                    // Nothing listens yet.
                    Err(e)
                        if e.as_db_error().is_none()
                            && started.elapsed() < Duration::from_secs(20) =>
                    {
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                    Err(e) => {
                        let server_said = e.as_db_error().map(|d| d.message().to_string());
                        return Err(format!("login refused: {e} {server_said:?}"));
                    }
                }
            }
        });
        if let Err(e) = outcome {
            panic!("round {round}: {e}\nnode log:\n{}", node.log(0));
        }
    }
}

/// A TCP relay on 127.0.0.1 to `to` that holds every connection for
/// `delay` before passing bytes. Its threads end with their connections;
/// the listener's with the test process.
fn slow_relay(to: SocketAddr, delay: Duration) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("relay bind");
    let addr = listener.local_addr().expect("relay addr");
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(client) = client else { continue };
            std::thread::spawn(move || {
                std::thread::sleep(delay);
                let Ok(server) = TcpStream::connect(to) else {
                    return;
                };
                let (Ok(mut c2), Ok(mut s2)) = (client.try_clone(), server.try_clone()) else {
                    return;
                };
                let up = std::thread::spawn(move || {
                    let _ = std::io::copy(&mut c2, &mut s2);
                    let _ = s2.shutdown(Shutdown::Write);
                });
                let (mut client, mut server) = (client, server);
                let _ = std::io::copy(&mut server, &mut client);
                let _ = client.shutdown(Shutdown::Write);
                let _ = up.join();
            });
        }
    });
    addr
}
