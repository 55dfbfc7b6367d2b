//! Runs the `gluster` CLI: `--mode=script --xml`, one call at a time on
//! this node, every call bounded by a deadline after which the process is
//! killed, and a held cluster lock (opErrno 30802) asked again with backoff
//! while the deadline allows.
//!
//! One call at a time because glusterd answers concurrent CLI calls with
//! silently incomplete documents (a `volume status all` listing 0 or 1 of
//! 3 volumes with opRet 0: tests/fixtures/gluster/multinode/*concurrent*).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use tokio::sync::Mutex;

use super::reply::{CliError, short};
use crate::node::program::{self, ProgramError};

/// The longest any one call may take; a poll's budget may cut it shorter.
pub const CALL_LIMIT: Duration = Duration::from_secs(5);
/// First wait after a busy answer; doubled each time.
const BUSY_BACKOFF: Duration = Duration::from_millis(200);
/// `volume info` of a large pool is a few hundred KiB.
const READ_LIMIT: u64 = super::xml::MAX_XML as u64;

pub struct Runner {
    program: PathBuf,
    /// Held for the whole of each call: one gluster process at a time.
    serial: Mutex<()>,
}

/// What a call printed, with how long it took (for the status page).
#[derive(Debug)]
pub struct Answer {
    pub stdout: String,
    pub exit: Option<i32>,
    pub took: Duration,
}

impl Runner {
    pub fn new(program: PathBuf) -> Runner {
        Runner {
            program,
            serial: Mutex::new(()),
        }
    }

    /// Runs `gluster args` and reads the answer with `parse`, asking again
    /// while gluster is busy and `until` allows. Every error is a
    /// [`CliError`]; none is ever turned into an empty answer.
    pub async fn ask<T>(
        &self,
        args: &[&str],
        until: Instant,
        parse: impl Fn(&str, Option<i32>) -> Result<T, CliError>,
    ) -> Result<T, CliError> {
        let mut backoff = BUSY_BACKOFF;
        loop {
            let answer = self.call(args, until).await?;
            match parse(&answer.stdout, answer.exit) {
                Err(e) if e.retryable() && Instant::now() + backoff < until => {
                    tracing::debug!(
                        "gluster {}: {e}; asking again in {backoff:?}",
                        args.join(" ")
                    );
                    tokio::time::sleep(backoff).await;
                    backoff *= 2;
                }
                other => return other,
            }
        }
    }

    /// One run of the CLI, killed at `until` (or after CALL_LIMIT).
    pub async fn call(&self, args: &[&str], until: Instant) -> Result<Answer, CliError> {
        let _one_at_a_time = self.serial.lock().await;
        let started = Instant::now();
        let limit = until.saturating_duration_since(started).min(CALL_LIMIT);
        if limit < Duration::from_millis(100) {
            return Err(CliError::Deadline { after: limit });
        }
        let mut cmd = tokio::process::Command::new(&self.program);
        cmd.env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("LC_ALL", "C")
            // The CLI's own timeout, a little inside ours, so that a hung
            // glusterd usually gets its clear "Request timed out" rather
            // than our kill.
            .arg(format!(
                "--timeout={}",
                limit.as_secs().saturating_sub(1).max(1)
            ))
            .arg("--mode=script")
            .arg("--xml")
            .args(args);
        match program::output(cmd, limit, READ_LIMIT).await {
            Ok(ran) => Ok(Answer {
                exit: ran.status.code(),
                // Some messages ("Connection failed") go to stderr in some
                // versions: read both, stdout first.
                stdout: if ran.stdout.trim().is_empty() {
                    ran.stderr
                } else {
                    ran.stdout
                },
                took: started.elapsed(),
            }),
            Err(ProgramError::Deadline { .. }) => Err(CliError::Deadline { after: limit }),
            Err(e) => Err(CliError::Spawn {
                why: short(&e.to_string()),
            }),
        }
    }
}
