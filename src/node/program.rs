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
/// bytes of each stream; killed (SIGKILL) when the limit passes.
pub async fn output(
    mut cmd: tokio::process::Command,
    limit: Duration,
    read_limit: u64,
) -> Result<Ran, ProgramError> {
    let program = cmd.as_std().get_program().to_string_lossy().into_owned();
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().map_err(|source| ProgramError::Spawn {
        program: program.clone(),
        source,
    })?;
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let work = async {
        let (out, err) = tokio::join!(read_all(stdout, read_limit), read_all(stderr, read_limit));
        (child.wait().await, out, err)
    };
    let Ok((status, stdout, stderr)) = tokio::time::timeout(limit, work).await else {
        // kill_on_drop ends it when `child` goes out of scope here; tokio
        // reaps it in the background.
        return Err(ProgramError::Deadline { program, limit });
    };
    let status = status.map_err(|source| ProgramError::Wait { program, source })?;
    Ok(Ran {
        status,
        stdout,
        stderr,
    })
}

async fn read_all<R: tokio::io::AsyncRead + Unpin>(r: Option<R>, limit: u64) -> String {
    let mut buf = Vec::new();
    if let Some(r) = r {
        let _ = r.take(limit).read_to_end(&mut buf).await;
    }
    String::from_utf8_lossy(&buf).into_owned()
}
