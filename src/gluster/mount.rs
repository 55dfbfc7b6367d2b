//! Mounting the volume where the web role serves from, with the FUSE
//! client of Debian's glusterfs-client (`mount -t glusterfs`).
//!
//! Whether it is mounted is read from /proc/self/mountinfo, never by
//! touching the mount point: a FUSE mount whose bricks are gone can block
//! any stat() on it. Whether a listed mount still has its client is asked
//! with one statfs on a thread of its own, bounded in time (`Liveness`).
//!
//! Why a mount can lose its client: the FUSE client (`glusterfs
//! --process-name fuse`) is a child of piha, so systemd's default
//! KillMode=control-group kills it with piha on every `systemctl restart
//! piha` and after every crash; the kernel's OOM killer picks it on a Pi
//! short of memory. The mount then stays listed, every access fails with
//! ENOTCONN ("Transport endpoint is not connected"), and nothing but an
//! unmount and a new mount brings it back.

use std::io::Read;
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use tokio::task::JoinHandle;

use crate::node::program;

/// mountinfo of a Pi is a few KiB; a container host's can be large.
const MOUNTINFO_LIMIT: u64 = 4 << 20;
/// mount.glusterfs waits for the volfile and the first brick connection.
pub const MOUNT_LIMIT: Duration = Duration::from_secs(30);

/// Whether `dir` is a glusterfs FUSE mount in this mount namespace.
pub fn is_mounted(dir: &Path) -> std::io::Result<bool> {
    let mut text = String::new();
    std::fs::File::open("/proc/self/mountinfo")?
        .take(MOUNTINFO_LIMIT)
        .read_to_string(&mut text)?;
    Ok(glusterfs_mounted(&text, dir))
}

/// What a look at the mount point found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountState {
    /// No glusterfs mount on the folder.
    Absent,
    /// Mounted, and the client answered (or is slow to: see `Liveness`).
    Live,
    /// Mounted, but its client is gone; the reason, for the event.
    Dead(String),
}

/// One statfs may take this long: a live client answers at once, one
/// whose bricks are all out of reach waits for gluster's ping timeout.
const PROBE_LIMIT: Duration = Duration::from_secs(2);

/// Asks a listed mount whether its client is still there. A probe that
/// outlives `PROBE_LIMIT` is kept, not abandoned, and the next look waits
/// for it rather than starting another, so a hung mount holds one blocked
/// thread at most. Slow is taken as alive. Dead takes two things: the
/// kernel's ENOTCONN and no `glusterfs` process serving the folder. A live
/// client whose bricks are all out of reach answers ENOTCONN too, and
/// unmounting it would leave the web role serving the empty folder under
/// it (404s with a healthy `/health`) instead of 503s.
#[derive(Default)]
pub struct Liveness {
    probe: Option<JoinHandle<Option<String>>>,
}

impl Liveness {
    pub async fn state(&mut self, dir: &Path) -> std::io::Result<MountState> {
        if !is_mounted(dir)? {
            return Ok(MountState::Absent);
        }
        let mut probe = match self.probe.take() {
            Some(running) => running,
            None => {
                let dir = dir.to_path_buf();
                tokio::task::spawn_blocking(move || dead_because(&dir))
            }
        };
        match tokio::time::timeout(PROBE_LIMIT, &mut probe).await {
            Err(_) => {
                self.probe = Some(probe);
                Ok(MountState::Live)
            }
            Ok(Err(join)) => Err(std::io::Error::other(join)),
            Ok(Ok(Some(why))) => Ok(MountState::Dead(why)),
            Ok(Ok(None)) => Ok(MountState::Live),
        }
    }
}

/// Why the mount on `dir` has no client, or `None` while it has one (or
/// that cannot be told). Blocking: the statfs may wait on the client.
fn dead_because(dir: &Path) -> Option<String> {
    let e = rustix::fs::statfs(dir).err()?;
    // Other errors (EACCES, say) are not the client's absence.
    if e.raw_os_error() != libc::ENOTCONN {
        return None;
    }
    match client_running(dir) {
        Ok(false) => Some(format!(
            "statfs: {}; no glusterfs process serves it",
            std::io::Error::from(e)
        )),
        Ok(true) | Err(_) => None,
    }
}

/// Processes looked at, at most (a Pi runs a few hundred).
const MAX_PROCESSES: usize = 65_536;
/// A command line read, at most: the client's is a few hundred bytes.
const MAX_CMDLINE: u64 = 4096;

/// Whether a `glusterfs` process whose last argument is `dir` runs in this
/// mount namespace: the FUSE client, started by mount.glusterfs with the
/// mount point last. (A client of the same folder in another namespace,
/// as in a test lab of several nodes on one machine, serves another mount.)
fn client_running(dir: &Path) -> std::io::Result<bool> {
    let want = dir.as_os_str().as_encoded_bytes();
    let own_namespace = std::fs::read_link("/proc/self/ns/mnt")?;
    for entry in std::fs::read_dir("/proc")?.flatten().take(MAX_PROCESSES) {
        let is_pid = entry
            .file_name()
            .to_str()
            .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()));
        let same_namespace =
            || std::fs::read_link(entry.path().join("ns/mnt")).is_ok_and(|ns| ns == own_namespace);
        if !is_pid || !same_namespace() {
            continue;
        }
        let mut cmdline = Vec::new();
        let read = std::fs::File::open(entry.path().join("cmdline"))
            .and_then(|f| f.take(MAX_CMDLINE).read_to_end(&mut cmdline));
        if read.is_ok() && serves(&cmdline, want) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// `cmdline` (NUL-separated) runs `glusterfs` with `dir` as its last
/// argument.
fn serves(cmdline: &[u8], dir: &[u8]) -> bool {
    let mut args = cmdline.split(|b| *b == 0).filter(|a| !a.is_empty());
    let Some(program) = args.next() else {
        return false;
    };
    let name = program.rsplit(|b| *b == b'/').next().unwrap_or(program);
    name == b"glusterfs" && args.next_back() == Some(dir)
}

/// mountinfo lines: `id parent major:minor root mountpoint opts... - fstype
/// source superopts`, with spaces in paths written as `\040`.
fn glusterfs_mounted(mountinfo: &str, dir: &Path) -> bool {
    let want = dir.to_string_lossy();
    mountinfo.lines().any(|line| {
        let mut halves = line.splitn(2, " - ");
        let (Some(left), Some(right)) = (halves.next(), halves.next()) else {
            return false;
        };
        let point = left.split(' ').nth(4).map(unescape);
        let fstype = right.split(' ').next();
        point.as_deref() == Some(&*want) && fstype == Some("fuse.glusterfs")
    })
}

fn unescape(field: &str) -> String {
    field
        .replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

/// Mounts `volume` from this node's own glusterd (`server`), naming the
/// other storage nodes as backup volfile servers so a later remount works
/// while this node's glusterd is down.
pub async fn mount(
    volume: &str,
    server: IpAddr,
    backups: &[IpAddr],
    dir: &Path,
) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let mut args: Vec<std::ffi::OsString> = vec!["-t".into(), "glusterfs".into()];
    if !backups.is_empty() {
        let list: Vec<String> = backups.iter().map(IpAddr::to_string).collect();
        args.push("-o".into());
        args.push(format!("backup-volfile-servers={}", list.join(":")).into());
    }
    args.push(format!("{server}:/{volume}").into());
    args.push(dir.into());
    run("mount", &args, MOUNT_LIMIT).await
}

/// Detaches a mount whose client is gone. Lazily, and without resolving
/// the path (`--no-canonicalize`): resolving it would stat the dead mount
/// and fail with ENOTCONN, and a file the web role still holds open must
/// not keep the folder from being mounted again.
pub async fn detach(dir: &Path) -> Result<(), String> {
    let args = ["--lazy".into(), "--no-canonicalize".into(), dir.into()];
    run("umount", &args, DETACH_LIMIT).await
}

/// A lazy unmount only detaches: it returns at once.
const DETACH_LIMIT: Duration = Duration::from_secs(10);

/// Runs `tool` (mount or umount) with a clean environment; the error
/// names the command line and what it printed.
async fn run(tool: &str, args: &[std::ffi::OsString], limit: Duration) -> Result<(), String> {
    let mut cmd = tokio::process::Command::new(tool);
    cmd.env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("LC_ALL", "C")
        .args(args);
    let ran = program::output(cmd, limit, 64 * 1024)
        .await
        .map_err(|e| e.to_string())?;
    if ran.status.success() {
        return Ok(());
    }
    let line: Vec<String> = args
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    Err(format!(
        "{tool} {} failed ({}): {}",
        line.join(" "),
        ran.status,
        super::reply::short(&format!("{}{}", ran.stderr, ran.stdout))
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const INFO: &str = "\
22 1 0:21 / /proc rw,nosuid shared:12 - proc proc rw
98 22 0:52 / /srv/piha/www rw,relatime shared:55 - fuse.glusterfs 192.0.2.11:/piha rw,user_id=0
99 22 0:53 / /srv/my\\040site rw,relatime - fuse.glusterfs 192.0.2.11:/other rw
100 22 0:54 / /srv/plain rw,relatime - ext4 /dev/sda1 rw
";

    #[test]
    fn the_client_is_the_glusterfs_process_with_the_folder_last() {
        let dir = b"/srv/piha/www".as_slice();
        let client = b"/usr/sbin/glusterfs\0--process-name\0fuse\0--volfile-server=192.0.2.11\0--volfile-id=/piha\0/srv/piha/www\0";
        assert!(serves(client, dir));
        let shd = b"/usr/sbin/glusterfs\0-s\0localhost\0--volfile-id\0shd/piha\0";
        assert!(!serves(shd, dir));
        let other = b"/usr/sbin/glusterfs\0--volfile-id=/piha\0/srv/piha/www2\0";
        assert!(!serves(other, dir));
        assert!(!serves(b"/bin/ls\0/srv/piha/www\0", dir));
        assert!(!serves(b"", dir));
        assert!(!serves(b"\0\0", dir));
    }

    #[test]
    fn only_glusterfs_mounts_at_that_exact_path_count() {
        assert!(glusterfs_mounted(INFO, Path::new("/srv/piha/www")));
        assert!(glusterfs_mounted(INFO, Path::new("/srv/my site")));
        assert!(!glusterfs_mounted(INFO, Path::new("/srv/plain")));
        assert!(!glusterfs_mounted(INFO, Path::new("/srv/piha")));
        assert!(!glusterfs_mounted(
            "garbage without separator",
            Path::new("/srv/piha/www")
        ));
    }
}
