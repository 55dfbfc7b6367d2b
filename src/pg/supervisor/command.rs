//! Running PostgreSQL's own programs (initdb, pg_basebackup, pg_rewind,
//! pg_controldata): as PostgreSQL's OS user when we are root, with a clean
//! environment, a deadline after which the program is killed, and only the
//! tail of its output kept for the error message.

use std::ffi::OsStr;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use super::error::DbError;
use super::settings::DbPlan;

/// Output kept from a program, from each stream: the end is where the
/// error is.
const KEEP_OUTPUT: usize = 4096;
/// Output read at most from a program; past it, the rest is discarded
/// unread so a chatty program cannot fill memory.
const READ_LIMIT: u64 = crate::node::program::READ_LIMIT;

/// A PostgreSQL program of the configured bindir, ready to run.
pub fn command(plan: &DbPlan, program: &str) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(plan.program(program));
    // No PG* variable of ours (PGHOST, PGPASSWORD...) may steer it.
    cmd.env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("LC_ALL", "C")
        .env("HOME", &plan.run)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    if plan.run.is_dir() {
        cmd.current_dir(&plan.run);
    }
    if let Some(u) = plan.os_user {
        cmd.uid(u.uid).gid(u.gid);
    }
    cmd
}

/// Runs `program args`, killed after `limit`. Ok(stdout) on exit 0.
pub async fn run<S: AsRef<OsStr>>(
    plan: &DbPlan,
    program: &str,
    args: &[S],
    limit: Duration,
) -> Result<String, DbError> {
    let mut cmd = command(plan, program);
    cmd.args(args);
    run_command(cmd, program, limit).await
}

pub async fn run_command(
    cmd: tokio::process::Command,
    program: &str,
    limit: Duration,
) -> Result<String, DbError> {
    let (status, out, err) = output(cmd, program, limit).await?;
    if status.success() {
        Ok(out)
    } else {
        Err(DbError::Program {
            program: program.to_owned(),
            status: status.to_string(),
            output: tail(&format!("{}{}", err.trim_end(), out.trim_end())),
        })
    }
}

/// Like `run_command`, but Ok(stderr then stdout): for programs that
/// report what they did on stderr (pg_rewind).
pub async fn run_merged(
    cmd: tokio::process::Command,
    program: &str,
    limit: Duration,
) -> Result<String, DbError> {
    let (status, out, err) = output(cmd, program, limit).await?;
    let text = format!("{err}{out}");
    if status.success() {
        Ok(text)
    } else {
        Err(DbError::Program {
            program: program.to_owned(),
            status: status.to_string(),
            output: tail(text.trim_end()),
        })
    }
}

/// Runs `cmd` to its end within `limit` (killed otherwise), reading at
/// most READ_LIMIT of each stream.
async fn output(
    cmd: tokio::process::Command,
    program: &str,
    limit: Duration,
) -> Result<(std::process::ExitStatus, String, String), DbError> {
    use crate::node::program::{self, ProgramError};
    match program::output(cmd, limit, READ_LIMIT).await {
        Ok(ran) => Ok((ran.status, ran.stdout, ran.stderr)),
        Err(ProgramError::Deadline { .. }) => Err(DbError::Timeout {
            program: program.to_owned(),
            limit_s: limit.as_secs(),
        }),
        Err(ProgramError::Spawn { program, source }) => {
            Err(DbError::io(format!("cannot start {program}"))(source))
        }
        Err(ProgramError::Wait { source, .. }) => {
            Err(DbError::io(format!("waiting for {program}"))(source))
        }
    }
}

fn tail(s: &str) -> String {
    if s.len() <= KEEP_OUTPUT {
        return s.to_owned();
    }
    let mut start = s.len() - KEEP_OUTPUT;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    format!("...{}", &s[start..])
}

/// Makes `path` belong to PostgreSQL's OS user (when we are root), so the
/// server can write what we prepared for it.
pub fn give_to_postgres(plan: &DbPlan, path: &Path) -> Result<(), DbError> {
    if let Some(u) = plan.os_user {
        std::os::unix::fs::chown(path, Some(u.uid), Some(u.gid))
            .map_err(DbError::io(format!("cannot chown {}", path.display())))?;
    }
    Ok(())
}

/// Writes a file only PostgreSQL's user can read, atomically and durably
/// (`node::atomic_file`), so a crash or a power cut never leaves half a
/// config, or an empty one, for PostgreSQL to start from.
pub fn write_private(plan: &DbPlan, path: &Path, text: &str, mode: u32) -> Result<(), DbError> {
    let owner = plan.os_user.map(|u| (u.uid, u.gid));
    crate::node::atomic_file::write_owned(path, text.as_bytes(), mode, owner)
        .map_err(DbError::io(format!("cannot write {}", path.display())))
}

/// Creates `dir` (and parents) owned by PostgreSQL's user with `mode`.
pub fn private_dir(plan: &DbPlan, dir: &Path, mode: u32) -> Result<(), DbError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir)
        .map_err(DbError::io(format!("cannot create {}", dir.display())))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))
        .map_err(DbError::io(format!("cannot chmod {}", dir.display())))?;
    give_to_postgres(plan, dir)
}
