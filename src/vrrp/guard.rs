//! The VIP guard: keepalived's most reported split brain is a daemon killed
//! (OOM killer, `kill -9`) while master, leaving its VIP on the interface
//! where the kernel keeps answering ARP for it next to the new master. A
//! process cannot clean up after SIGKILL, so each VRRP instance starts a
//! small child, `piha vip-guard`, holding the write end of its stdin. When
//! the parent dies for any reason the pipe closes, and the guard takes the
//! VIPs off at once. On a graceful stop the parent has removed them
//! already and the guard's removal finds nothing.
//!
//! The guard ignores SIGTERM, SIGINT and SIGHUP: a service manager or a
//! terminal signals the whole process group, and the guard must outlive
//! its parent's handover to be of use.

use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use ipnet::IpNet;

use super::io::netlink::Netlink;
use crate::cli::VipGuardArgs;

/// How long a stopping instance waits for its guard to finish.
const RELEASE_WAIT: Duration = Duration::from_secs(1);

/// The running guard of one instance.
pub struct Guard {
    child: Child,
}

impl Guard {
    /// Starts `exe vip-guard` for `vips` on interface `ifindex`.
    pub fn spawn(exe: &Path, ifindex: u32, vips: &[IpNet]) -> std::io::Result<Guard> {
        let mut cmd = Command::new(exe);
        cmd.arg("vip-guard")
            .arg("--ifindex")
            .arg(ifindex.to_string());
        for vip in vips {
            cmd.arg("--vip").arg(vip.to_string());
        }
        let child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()?;
        Ok(Guard { child })
    }

    /// Closes the pipe and waits (bounded) for the guard to exit, so that
    /// its removal cannot hit a VIP that a restarted instance adds next.
    pub fn release(mut self) {
        drop(self.child.stdin.take());
        let deadline = Instant::now() + RELEASE_WAIT;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `piha vip-guard`: blocks until stdin closes, then removes the VIPs.
pub fn run(args: &VipGuardArgs) -> anyhow::Result<()> {
    let vips = args
        .vips
        .iter()
        .map(|v| v.parse::<IpNet>().with_context(|| format!("--vip {v}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    ignore_stop_signals();
    wait_for_parent();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let netlink = Netlink::new().await?;
        for vip in vips {
            if netlink.del_address(args.ifindex, vip).await? {
                eprintln!("piha vip-guard: the VRRP instance died; removed {vip}");
            }
        }
        Ok(())
    })
}

/// Reads stdin until EOF; the parent never writes, so EOF means it closed
/// the pipe or died.
fn wait_for_parent() {
    let mut stdin = std::io::stdin();
    let mut buf = [0u8; 64];
    loop {
        match stdin.read(&mut buf) {
            Ok(0) => return,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return,
        }
    }
}

fn ignore_stop_signals() {
    for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
        // SAFETY: SIG_IGN installs no handler code; nothing else in this
        // short-lived process depends on these signals.
        unsafe {
            libc::signal(sig, libc::SIG_IGN);
        }
    }
}
