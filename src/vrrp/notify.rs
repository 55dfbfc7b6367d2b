//! Notify commands, run in the order of the transitions (keepalived's users
//! know the pain of notify scripts racing each other): one queue, one
//! command at a time, each with a timeout, arguments as keepalived passes
//! them (`INSTANCE <name> <STATE> <priority>`) so existing scripts work.

use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::machine::State;

/// A notify command that runs longer is killed, so one hung script cannot
/// hold back the ones after it for ever.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);
/// Transitions waiting for their commands; beyond it they are dropped with
/// a warning (a flapping instance must not pile up processes).
const QUEUE: usize = 32;

struct Job {
    state: State,
    priority: u8,
    reason: String,
}

pub struct Notifier {
    tx: Option<mpsc::Sender<Job>>,
    runner: Option<JoinHandle<()>>,
}

impl Notifier {
    pub fn new(commands: Vec<PathBuf>, instance: String) -> Notifier {
        if commands.is_empty() {
            return Notifier {
                tx: None,
                runner: None,
            };
        }
        let (tx, rx) = mpsc::channel(QUEUE);
        let runner = tokio::spawn(run(commands, instance, rx));
        Notifier {
            tx: Some(tx),
            runner: Some(runner),
        }
    }

    pub fn transition(&mut self, state: State, priority: u8, reason: String) {
        let Some(tx) = &self.tx else { return };
        let job = Job {
            state,
            priority,
            reason,
        };
        if tx.try_send(job).is_err() {
            tracing::warn!(
                component = "vrrp",
                "notify queue full: a transition to {} runs no notify command",
                state.name()
            );
        }
    }

    /// Lets the queued commands finish (each bounded by its timeout).
    pub async fn finish(mut self) {
        self.tx = None;
        if let Some(r) = self.runner.take() {
            let _ = r.await;
        }
    }
}

async fn run(commands: Vec<PathBuf>, instance: String, mut rx: mpsc::Receiver<Job>) {
    while let Some(job) = rx.recv().await {
        for cmd in &commands {
            run_one(cmd, &instance, &job).await;
        }
    }
}

async fn run_one(cmd: &PathBuf, instance: &str, job: &Job) {
    let state = match job.state {
        State::Initialize => "STOP",
        State::Backup => "BACKUP",
        State::Master => "MASTER",
        State::Fault => "FAULT",
    };
    let mut child = match tokio::process::Command::new(cmd)
        .args(["INSTANCE", instance, state, &job.priority.to_string()])
        .env("PIHA_VRRP_REASON", &job.reason)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(component = "vrrp", "notify {}: {e}", cmd.display());
            return;
        }
    };
    match tokio::time::timeout(COMMAND_TIMEOUT, child.wait()).await {
        Ok(Ok(s)) if s.success() => {}
        Ok(Ok(s)) => tracing::warn!(component = "vrrp", "notify {}: {s}", cmd.display()),
        Ok(Err(e)) => tracing::warn!(component = "vrrp", "notify {}: {e}", cmd.display()),
        Err(_) => {
            let _ = child.kill().await;
            tracing::warn!(
                component = "vrrp",
                "notify {} did not finish in {COMMAND_TIMEOUT:?}; killed",
                cmd.display()
            );
        }
    }
}
