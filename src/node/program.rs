//! Running an outside program with a deadline: its output read up to a
//! bound (a chatty program cannot fill memory) and the program killed when
//! the deadline passes (a hung one cannot hang the caller). Shared by the
//! db role (PostgreSQL's tools) and the storage role (the gluster CLI).

use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::io::AsyncReadExt;

/// Output read at most from each stream; past it the rest is discarded.
pub const READ_LIMIT: u64 = 1 << 20;

/// What a program that ran to its end printed.
#[derive(Debug)]
pub struct Ran {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ProgramError {
    #[error("cannot start {program}: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("{program} did not finish within {limit:?} and was killed")]
    Deadline { program: String, limit: Duration },
    #[error("waiting for {program}: {source}")]
    Wait {
        program: String,
        source: std::io::Error,
    },
}

/// Runs `cmd` to its end within `limit`, reading at most `read_limit`
/// bytes of each stream; killed (SIGKILL) when the limit passes, with every
/// process it started: the program runs in its own process group and the
/// whole group is killed. (The gluster CLI runs `glfsheal` for `heal info`;
/// killing only the CLI left glfsheal walking thousands of entries.)
pub async fn output(
    mut cmd: tokio::process::Command,
    limit: Duration,
    read_limit: u64,
) -> Result<Ran, ProgramError> {
    let program = cmd.as_std().get_program().to_string_lossy().into_owned();
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = cmd.spawn().map_err(|source| ProgramError::Spawn {
        program: program.clone(),
        source,
    })?;
    let group = child.id();
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let work = async {
        let (out, err) = tokio::join!(read_all(stdout, read_limit), read_all(stderr, read_limit));
        (child.wait().await, out, err)
    };
    let Ok((status, stdout, stderr)) = tokio::time::timeout(limit, work).await else {
        kill_group(group);
        // kill_on_drop ends the program itself when `child` goes out of
        // scope here (also if it left the group); tokio reaps it.
        return Err(ProgramError::Deadline { program, limit });
    };
    // Not after a normal exit: `mount -t glusterfs` leaves the FUSE client
    // running, which must live on.
    let status = status.map_err(|source| ProgramError::Wait { program, source })?;
    Ok(Ran {
        status,
        stdout,
        stderr,
    })
}

/// SIGKILL to process group `pgid` (the program's own: it was started with
/// `process_group(0)`, so its pid is the group id).
fn kill_group(pgid: Option<u32>) {
    let Some(pgid) = pgid.and_then(|p| i32::try_from(p).ok()) else {
        return;
    };
    if pgid > 1 {
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(pgid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

async fn read_all<R: tokio::io::AsyncRead + Unpin>(r: Option<R>, limit: u64) -> String {
    let mut buf = Vec::new();
    if let Some(r) = r {
        let _ = r.take(limit).read_to_end(&mut buf).await;
    }
    String::from_utf8_lossy(&buf).into_owned()
}
