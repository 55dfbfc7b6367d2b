//! The postmaster as our child process: started directly (not through
//! pg_ctl, which would detach it), so its exit is an event we see at once,
//! and it dies with us: PR_SET_PDEATHSIG makes the kernel send it SIGQUIT
//! (immediate shutdown) when piha exits, even by SIGKILL. A PostgreSQL that
//! outlived its supervisor would keep accepting writes that no one fences.

use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::Signal;

use super::command::command;
use super::error::DbError;
use super::settings::DbPlan;

/// A fast shutdown ends sessions and writes a checkpoint; on a Pi with a
/// slow card the checkpoint can take a while.
const FAST_STOP: Duration = Duration::from_secs(30);
const IMMEDIATE_STOP: Duration = Duration::from_secs(10);

pub struct Postmaster {
    child: tokio::process::Child,
    pub pid: u32,
}

impl Postmaster {
    pub fn spawn(plan: &DbPlan) -> Result<Postmaster, DbError> {
        let mut cmd = command(plan, "postgres");
        cmd.arg("-D").arg(&plan.data);
        // Until the logging collector takes over: the few lines of a start
        // that fails early (a bad setting), kept for the error message.
        let early = std::fs::File::create(plan.run.join("startup.log"))
            .map_err(DbError::io("cannot create startup.log"))?;
        let early2 = early
            .try_clone()
            .map_err(DbError::io("cannot create startup.log"))?;
        cmd.stdout(Stdio::from(early))
            .stderr(Stdio::from(early2))
            // Stopping is ours to do with the right signal; dropping the
            // handle must not SIGKILL the postmaster (that would skip the
            // shutdown checkpoint).
            .kill_on_drop(false);
        // SAFETY: prctl is async-signal-safe and touches only the calling
        // (child) process; it runs after the uid change (std applies
        // uid/gid before pre_exec hooks), which would otherwise clear it.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGQUIT, 0, 0, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().map_err(DbError::io(format!(
            "cannot start {}",
            plan.program("postgres").display()
        )))?;
        let pid = child.id().unwrap_or(0);
        Ok(Postmaster { child, pid })
    }

    /// Resolves when the postmaster exits, with how it ended.
    pub async fn exited(&mut self) -> String {
        match self.child.wait().await {
            Ok(status) => status.to_string(),
            Err(e) => format!("cannot wait for it: {e}"),
        }
    }

    /// Fast shutdown (sessions end, a checkpoint is written, standbys get
    /// every byte of WAL first); immediate, then SIGKILL, if it takes too
    /// long. Returns true when the shutdown was clean.
    pub async fn stop(mut self) -> bool {
        if self.try_exited() {
            return false;
        }
        self.signal(Signal::SIGINT);
        if tokio::time::timeout(FAST_STOP, self.child.wait())
            .await
            .is_ok()
        {
            return true;
        }
        self.signal(Signal::SIGQUIT);
        if tokio::time::timeout(IMMEDIATE_STOP, self.child.wait())
            .await
            .is_ok()
        {
            return false;
        }
        let _ = self.child.kill().await;
        false
    }

    /// Immediate shutdown: no checkpoint, no goodbye to clients. What a
    /// fence does when the primary must stop accepting writes now.
    pub async fn stop_now(mut self) {
        if self.try_exited() {
            return;
        }
        self.signal(Signal::SIGQUIT);
        if tokio::time::timeout(IMMEDIATE_STOP, self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }

    fn try_exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    fn signal(&self, sig: Signal) {
        if let Ok(pid) = i32::try_from(self.pid) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig);
        }
    }
}

/// A postmaster of this data directory that is not our child (left by a
/// piha that died in a way PDEATHSIG did not cover, or started by hand) is
/// stopped before we start our own: two would not start, and one we do not
/// supervise would not be fenced. Returns its pid if there was one.
pub async fn stop_leftover(plan: &DbPlan) -> Option<u32> {
    let text = std::fs::read_to_string(plan.data.join("postmaster.pid")).ok()?;
    let pid: i32 = text.lines().next()?.trim().parse().ok()?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let exe = cmdline.split(|b| *b == 0).next().unwrap_or_default();
    if !String::from_utf8_lossy(exe).ends_with("postgres") {
        // A stale pid file whose number now belongs to someone else:
        // PostgreSQL itself handles that case on start.
        return None;
    }
    let target = nix::unistd::Pid::from_raw(pid);
    let _ = nix::sys::signal::kill(target, Signal::SIGINT);
    let gone = || !std::path::Path::new(&format!("/proc/{pid}")).exists();
    for step in 0..150 {
        if gone() {
            break;
        }
        if step == 100 {
            let _ = nix::sys::signal::kill(target, Signal::SIGQUIT);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if !gone() {
        let _ = nix::sys::signal::kill(target, Signal::SIGKILL);
    }
    u32::try_from(pid).ok()
}
