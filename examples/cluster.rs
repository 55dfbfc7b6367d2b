//! The four-node cluster of `pi-configs/cluster.toml` on this one machine,
//! each node in its own network namespace on a bridge (192.0.2.0/24), every
//! role for real; behind `scripts/local-cluster` (bring-up) and
//! `scripts/drill` (the failure drill). Needs root.
//!
//!   cargo run --release --example cluster -- --bin target/release/piha
//!   cargo run --release --example cluster -- --bin target/release/piha --drill [--screenshots DIR]
//!
//! The lab code is the test suite's own (`tests/common/`), included by path
//! so the drill a person runs is the one CI runs. The lab's addresses are
//! reachable only inside its namespaces; for a browser on this machine the
//! VIP's port 80 and each node's status page are forwarded from
//! 127.0.0.1:8000 and 127.0.0.1:9001..9004.

#[path = "../tests/common/browser.rs"]
#[allow(dead_code)]
mod browser;
#[path = "../tests/common/drill.rs"]
mod drill;
#[path = "../tests/common/full_cluster.rs"]
mod full_cluster;
#[path = "../tests/common/gluster_net.rs"]
mod gluster_net;
#[path = "../tests/common/netns.rs"]
#[allow(dead_code)]
mod netns;

use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use full_cluster::{ADMIN_PORT, FullCluster, NODES, Storage, VIP, have_glusterd};

/// Connections forwarded at once, per listener.
const MAX_FORWARDED: usize = 64;

struct Args {
    bin: PathBuf,
    drill: bool,
    screenshots: Option<PathBuf>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        bin: PathBuf::from("target/release/piha"),
        drill: false,
        screenshots: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--bin" => args.bin = it.next().ok_or("--bin needs a path")?.into(),
            "--drill" => args.drill = true,
            "--screenshots" => {
                args.screenshots = Some(it.next().ok_or("--screenshots needs a folder")?.into())
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(args)
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("cluster: {e}");
            std::process::exit(2);
        }
    };
    // nsenter starts piha from the node's own `/`.
    let bin = match std::fs::canonicalize(&args.bin) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("cluster: the piha binary {}: {e}", args.bin.display());
            std::process::exit(2);
        }
    };
    if !rustix::process::geteuid().is_root() {
        eprintln!("cluster: network namespaces need root");
        std::process::exit(3);
    }
    let storage = if have_glusterd() {
        Storage::On
    } else {
        eprintln!(
            "cluster: no glusterd here (apt-get install glusterfs-server): running without the \
             storage role; the web nodes serve a local folder"
        );
        Storage::Off
    };
    eprintln!("==> starting four nodes in network namespaces (this takes a minute)");
    let mut c = FullCluster::new(&bin, storage);
    c.start_all();
    if let Err(e) = c.wait_healthy(Duration::from_secs(240)) {
        eprintln!("cluster: {e}\n{}", c.logs());
        std::process::exit(1);
    }
    c.write_site(0, &drill::site());
    if args.drill {
        let opts = drill::Options {
            screenshots: args.screenshots,
            verbose: true,
        };
        let report = drill::run(&mut c, &opts);
        println!("{}", report.table());
        let problems = report.problems();
        for p in &problems {
            println!("PROBLEM: {p}");
        }
        c.stop_all();
        std::process::exit(i32::from(!problems.is_empty()));
    }
    print_summary(&c);
    forward_ports(&c);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let _ = tokio::signal::ctrl_c().await;
    });
    eprintln!(
        "\n==> stopping (logs were in {})",
        c.gl.dir.path().display()
    );
    c.stop_all();
}

fn print_summary(c: &FullCluster) {
    println!();
    println!("piha: the four-node cluster of pi-configs/cluster.toml, in network namespaces");
    println!("  VIP {VIP}: the site http://{VIP}/, PostgreSQL {VIP}:5432 (inside the lab)");
    println!("  from this machine's browser:");
    println!("    the site through the VIP     http://127.0.0.1:8000/");
    println!("    the notes demo app            http://127.0.0.1:8000/api/notes");
    for i in 0..NODES {
        println!(
            "    pi-{} status page             http://127.0.0.1:{}/   (in the lab: {})",
            i + 1,
            9001 + i,
            c.status_url(i)
        );
    }
    println!(
        "  inside the lab: ip netns exec {} curl http://{VIP}/",
        c.client_ns()
    );
    println!("  logs: {}", c.gl.dir.path().display());
    println!("Ctrl-C stops everything and removes the namespaces.");
}

/// Forwards 127.0.0.1:8000 to the VIP's port 80 and 127.0.0.1:9001.. to
/// the status pages, connecting from inside the lab's client namespace.
fn forward_ports(c: &FullCluster) {
    let mut routes = vec![(8000, SocketAddr::new(IpAddr::V4(VIP), 80))];
    for i in 0..NODES {
        routes.push((
            9001 + i as u16,
            SocketAddr::new(IpAddr::V4(c.addr(i)), ADMIN_PORT),
        ));
    }
    for (port, target) in routes {
        let listener = match TcpListener::bind(("127.0.0.1", port)) {
            Ok(l) => l,
            Err(e) => {
                eprintln!("cluster: cannot forward 127.0.0.1:{port} to {target}: {e}");
                continue;
            }
        };
        let ns = c.client_ns();
        std::thread::spawn(move || accept_loop(listener, ns, target));
    }
}

fn accept_loop(listener: TcpListener, ns: String, target: SocketAddr) {
    let open = Arc::new(AtomicUsize::new(0));
    for conn in listener.incoming().flatten() {
        if open.load(Ordering::SeqCst) >= MAX_FORWARDED {
            continue; // dropped: closes the connection
        }
        open.fetch_add(1, Ordering::SeqCst);
        let (ns, open) = (ns.clone(), open.clone());
        std::thread::spawn(move || {
            let upstream = netns::in_netns(&ns, || {
                TcpStream::connect_timeout(&target, Duration::from_secs(3))
            });
            if let Ok(up) = upstream {
                splice(conn, up);
            }
            open.fetch_sub(1, Ordering::SeqCst);
        });
    }
}

/// Copies both ways until either side closes or stays idle for 5 minutes.
fn splice(a: TcpStream, b: TcpStream) {
    let idle = Some(Duration::from_secs(300));
    for s in [&a, &b] {
        let _ = s.set_read_timeout(idle);
    }
    let (Ok(mut a2), Ok(mut b2)) = (a.try_clone(), b.try_clone()) else {
        return;
    };
    let (mut a1, mut b1) = (a, b);
    let t = std::thread::spawn(move || {
        let _ = std::io::copy(&mut a1, &mut b1);
        let _ = b1.shutdown(std::net::Shutdown::Write);
    });
    let _ = std::io::copy(&mut b2, &mut a2);
    let _ = a2.shutdown(std::net::Shutdown::Write);
    let _ = t.join();
}
