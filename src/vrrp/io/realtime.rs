//! The VRRP engine's own OS thread, at real-time priority when allowed.
//!
//! With 10 ms adverts, keepalived on 2 oversubscribed vCPUs took over
//! spuriously 3 to 6 times in 15 s under default scheduling and never with
//! `vrrp_rt_priority` (research/vrrp.md §5.3): a busy balancer or pooler
//! must not be able to delay the timers that keep the backups quiet. The
//! kernel's RT throttling (sched_rt_runtime_us, 95% by default) still keeps
//! a runaway engine from freezing the CPU entirely.

use std::future::Future;
use std::io;
use std::sync::mpsc;
use std::thread::JoinHandle;

use super::sys::context;

/// What scheduling the thread got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scheduling {
    Realtime {
        priority: i32,
    },
    /// SCHED_FIFO was refused (no CAP_SYS_NICE, no RT budget in the
    /// cgroup, priority out of range); the thread runs anyway.
    Normal {
        why: String,
    },
}

/// Runs `f` on a dedicated OS thread named `name` with a current-thread
/// tokio runtime (enable_all), asking for SCHED_FIFO at `priority` first.
/// Returns once the thread has its scheduling and runtime and is about to
/// run `f`; the `JoinHandle` ends when `f`'s future does.
pub fn spawn<F, Fut>(name: &str, priority: i32, f: F) -> io::Result<(JoinHandle<()>, Scheduling)>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = ()>,
{
    let (report, reported) = mpsc::sync_channel::<io::Result<Scheduling>>(1);
    let thread = std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || run(priority, f, report))
        .map_err(|e| context(e, format!("starting thread {name}")))?;
    match reported.recv() {
        Ok(Ok(scheduling)) => Ok((thread, scheduling)),
        Ok(Err(e)) => {
            // The thread has already returned after sending the error.
            let _ = thread.join();
            Err(context(e, format!("building the runtime of thread {name}")))
        }
        Err(_) => {
            let _ = thread.join();
            Err(io::Error::other(format!(
                "thread {name} died before it started"
            )))
        }
    }
}

fn run<F, Fut>(priority: i32, f: F, report: mpsc::SyncSender<io::Result<Scheduling>>)
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = ()>,
{
    let scheduling = request_fifo(priority);
    trim_timer_slack();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            let _ = report.send(Err(e));
            return;
        }
    };
    if report.send(Ok(scheduling)).is_err() {
        return;
    }
    runtime.block_on(f());
}

fn request_fifo(priority: i32) -> Scheduling {
    let param = libc::sched_param {
        sched_priority: priority,
    };
    // SAFETY: pthread_self() names the calling thread, which is alive for
    // the whole call; `param` is initialised and only read.
    let rc = unsafe { libc::pthread_setschedparam(libc::pthread_self(), libc::SCHED_FIFO, &param) };
    if rc == 0 {
        Scheduling::Realtime { priority }
    } else {
        // pthread functions return the error number instead of setting errno.
        let err = io::Error::from_raw_os_error(rc);
        Scheduling::Normal {
            why: format!("SCHED_FIFO at priority {priority} refused: {err}"),
        }
    }
}

/// Timer slack 1 ns: matters only when SCHED_FIFO was refused (RT threads
/// get no slack anyway), where the default 50 µs would add to every timer.
/// Best effort: failing leaves the default, which still works.
fn trim_timer_slack() {
    const ONE_NS: libc::c_ulong = 1;
    // SAFETY: PR_SET_TIMERSLACK takes one integer argument and touches no
    // memory of ours; it only changes the calling thread.
    let _ = unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, ONE_NS) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_impossible_priority_falls_back_to_normal_and_still_runs() {
        let (done, ran) = mpsc::channel();
        let (thread, scheduling) = spawn("vrrp-test", 1000, move || async move {
            tokio::task::yield_now().await;
            let _ = done.send(std::thread::current().name().map(str::to_owned));
        })
        .expect("spawn");
        thread.join().expect("join");
        assert!(
            matches!(scheduling, Scheduling::Normal { .. }),
            "{scheduling:?}"
        );
        assert_eq!(ran.recv().expect("ran"), Some("vrrp-test".to_owned()));
    }
}
