//! Carrying out the plan's steps. Every path is under `Paths::root`, so a
//! test runs the whole of it in a temporary folder; the steps that act on
//! the running system itself (the kernel's hostname, growing the root
//! partition) only run when the root is `/`.

use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, bail};
use ipnet::IpNet;

use crate::node::program;

/// Where things are. All absolute; `root` is `/` on a Pi.
#[derive(Debug, Clone)]
pub struct Paths {
    pub root: PathBuf,
    /// The boot partition's mount point, holding `piha/firstboot.txt`.
    pub boot: PathBuf,
    /// piha's data directory (markers, TLS certificate).
    pub data_dir: PathBuf,
}

/// The systemd-networkd file the image ships for the wired interface; the
/// node address goes into a drop-in beside it.
pub const NETWORK_FILE: &str = "10-piha-wired.network";

/// Growing a 64 GB card's file system online takes tens of seconds on a Pi.
const RESIZE_LIMIT: Duration = Duration::from_secs(600);
const TOOL_LIMIT: Duration = Duration::from_secs(120);

impl Paths {
    pub fn under_root(&self, path: &str) -> PathBuf {
        self.root.join(path.trim_start_matches('/'))
    }

    pub fn is_live(&self) -> bool {
        self.root == Path::new("/")
    }

    pub fn firstboot_file(&self) -> PathBuf {
        self.boot.join("piha").join("firstboot.txt")
    }

    pub fn marker_dir(&self) -> PathBuf {
        self.data_dir.join("firstboot")
    }
}

/// /etc/hostname, /etc/hosts' 127.0.1.1 line, and the kernel's name (so
/// that avahi, sshd and piha, which start after this, all see it).
pub fn set_hostname(paths: &Paths, name: &str) -> anyhow::Result<()> {
    write_atomic(
        &paths.under_root("/etc/hostname"),
        format!("{name}\n").as_bytes(),
        0o644,
    )?;
    let hosts_path = paths.under_root("/etc/hosts");
    let hosts = std::fs::read_to_string(&hosts_path).unwrap_or_default();
    write_atomic(&hosts_path, hosts_with_name(&hosts, name).as_bytes(), 0o644)?;
    if paths.is_live() {
        rustix::system::sethostname(name.as_bytes())
            .with_context(|| format!("cannot set the kernel's hostname to {name}"))?;
    }
    Ok(())
}

/// Debian's convention: the machine's own name on 127.0.1.1, so that
/// `sudo` and friends resolve it without DNS.
pub fn hosts_with_name(hosts: &str, name: &str) -> String {
    let mut out: String = hosts
        .lines()
        .filter(|l| !l.trim_start().starts_with("127.0.1.1"))
        .map(|l| format!("{l}\n"))
        .collect();
    out.push_str(&format!("127.0.1.1\t{name}\n"));
    out
}

/// Appends the keys the admin user does not have yet to its
/// `~/.ssh/authorized_keys`; returns how many were new.
pub fn install_ssh_keys(paths: &Paths, user: &str, keys: &[String]) -> anyhow::Result<usize> {
    let passwd = std::fs::read_to_string(paths.under_root("/etc/passwd"))
        .context("cannot read /etc/passwd")?;
    let Some(account) = find_account(&passwd, user) else {
        bail!("there is no user {user} to install the SSH key for");
    };
    let ssh_dir = paths.under_root(&account.home).join(".ssh");
    std::fs::create_dir_all(&ssh_dir)
        .with_context(|| format!("cannot create {}", ssh_dir.display()))?;
    std::fs::set_permissions(&ssh_dir, std::fs::Permissions::from_mode(0o700))?;
    let file = ssh_dir.join("authorized_keys");
    let existing = std::fs::read_to_string(&file).unwrap_or_default();
    let mut text = existing.clone();
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    let mut added = 0;
    for key in keys {
        if !has_key(&text, key) {
            text.push_str(key);
            text.push('\n');
            added += 1;
        }
    }
    if text != existing {
        write_atomic(&file, text.as_bytes(), 0o600)?;
    }
    for path in [&ssh_dir, &file] {
        std::os::unix::fs::chown(path, Some(account.uid), Some(account.gid))
            .with_context(|| format!("cannot give {} to {user}", path.display()))?;
    }
    Ok(added)
}

/// The same key (type and data) is there already, whatever its comment.
fn has_key(authorized: &str, key: &str) -> bool {
    let wanted: Vec<&str> = key.split_whitespace().take(2).collect();
    authorized
        .lines()
        .any(|l| l.split_whitespace().take(2).eq(wanted.iter().copied()))
}

pub struct Account {
    pub uid: u32,
    pub gid: u32,
    pub home: String,
}

pub fn find_account(passwd: &str, user: &str) -> Option<Account> {
    passwd.lines().find_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() < 7 || f[0] != user {
            return None;
        }
        Some(Account {
            uid: f[2].parse().ok()?,
            gid: f[3].parse().ok()?,
            home: f[5].to_owned(),
        })
    })
}

/// Host keys for sshd, each card its own: the image ships none (a shared
/// host key would let one card impersonate another). Ed25519 and ECDSA
/// only: RSA key generation takes long on a Pi and every client since
/// OpenSSH 6.5 (2014) speaks Ed25519.
pub async fn ssh_host_keys(paths: &Paths, hostname: &str) -> anyhow::Result<Vec<String>> {
    let mut made = Vec::new();
    for kind in ["ed25519", "ecdsa"] {
        let key = paths.under_root(&format!("/etc/ssh/ssh_host_{kind}_key"));
        if key.exists() {
            continue;
        }
        let mut cmd = tokio::process::Command::new("ssh-keygen");
        cmd.args(["-q", "-t", kind, "-N", "", "-C"])
            .arg(format!("root@{hostname}"))
            .arg("-f")
            .arg(&key);
        run_checked(cmd, TOOL_LIMIT).await?;
        made.push(kind.to_owned());
    }
    Ok(made)
}

/// What growing the root did.
#[derive(Debug, PartialEq, Eq)]
pub enum Grown {
    /// The partition grew by this many bytes, and the file system with it.
    Grew {
        partition: String,
        from: u64,
        to: u64,
    },
    /// The partition already reached the end of the card.
    AlreadyFull { partition: String },
}

/// Grows the root partition to the end of the card with `growpart` (which
/// edits the partition table and tells the kernel, while the partition is
/// in use), then the ext4 file system online with `resize2fs`.
pub async fn grow_root(paths: &Paths) -> anyhow::Result<Grown> {
    if !paths.is_live() {
        bail!("growing the root is only done on the running system");
    }
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")?;
    let devno = root_device_number(&mountinfo).context("/ is not in /proc/self/mountinfo")?;
    let (disk, number, partition) = partition_of(&devno)?;
    let before = block_device_size(&partition)?;
    let mut grow = tokio::process::Command::new("growpart");
    grow.arg(format!("/dev/{disk}")).arg(number.to_string());
    let ran = program::output(grow, TOOL_LIMIT, program::READ_LIMIT).await?;
    // growpart: 0 grown, 1 with "NOCHANGE" nothing to do, anything else an error.
    match ran.status.code() {
        Some(0) => {}
        Some(1) if ran.stdout.contains("NOCHANGE") => {
            return Ok(Grown::AlreadyFull { partition });
        }
        _ => bail!(
            "growpart /dev/{disk} {number} failed ({}): {}{}",
            ran.status,
            ran.stdout.trim(),
            ran.stderr.trim()
        ),
    }
    let mut resize = tokio::process::Command::new("resize2fs");
    resize.arg(format!("/dev/{partition}"));
    run_checked(resize, RESIZE_LIMIT).await?;
    let after = block_device_size(&partition)?;
    Ok(Grown::Grew {
        partition,
        from: before,
        to: after,
    })
}

/// `major:minor` of the device mounted on `/` (the third field of its
/// mountinfo line; the fifth is the mount point).
pub fn root_device_number(mountinfo: &str) -> Option<String> {
    mountinfo.lines().find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        (f.get(4) == Some(&"/")).then(|| f.get(2).map(|s| (*s).to_owned()))?
    })
}

/// `(disk, partition number, partition name)` of a block device number,
/// from sysfs: `/sys/dev/block/254:2` -> `.../block/vda/vda2`.
fn partition_of(devno: &str) -> anyhow::Result<(String, u32, String)> {
    let sys = std::fs::canonicalize(format!("/sys/dev/block/{devno}"))
        .with_context(|| format!("no block device {devno} in sysfs"))?;
    let number: u32 = std::fs::read_to_string(sys.join("partition"))
        .with_context(|| format!("the root ({}) is not a partition", sys.display()))?
        .trim()
        .parse()
        .context("unreadable partition number in sysfs")?;
    let name = |p: &Path| p.file_name().map(|n| n.to_string_lossy().into_owned());
    let partition = name(&sys).context("sysfs path without a name")?;
    let disk = sys
        .parent()
        .and_then(name)
        .context("partition without a disk")?;
    Ok((disk, number, partition))
}

fn block_device_size(name: &str) -> anyhow::Result<u64> {
    let sectors: u64 = std::fs::read_to_string(format!("/sys/class/block/{name}/size"))?
        .trim()
        .parse()
        .context("unreadable size in sysfs")?;
    Ok(sectors * 512)
}

/// The node's address on the wired interface, as a drop-in to the image's
/// networkd file. Written under /run at every boot: the cluster file may
/// have changed, and /run costs the SD card nothing.
pub fn node_address(paths: &Paths, hostname: &str, address: Option<IpNet>) -> anyhow::Result<()> {
    let dir = paths.under_root(&format!("/run/systemd/network/{NETWORK_FILE}.d"));
    let file = dir.join("piha-node-address.conf");
    match address {
        Some(net) => {
            std::fs::create_dir_all(&dir)?;
            let text = format!(
                "# Written by `piha firstboot` at boot from the cluster file: node {hostname}.\n\
                 [Network]\nAddress={net}\n"
            );
            write_atomic(&file, text.as_bytes(), 0o644)
        }
        None => match std::fs::remove_file(&file) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        },
    }
}

/// avahi's settings for this boot: where piha puts them, and the avahi
/// unit's drop-in in the image points `avahi-daemon -f` there.
pub const AVAHI_CONF: &str = "/run/piha/avahi-daemon.conf";

/// `<hostname>.local` must lead to the status page, which listens on the
/// node address. avahi by default publishes every address of the Pi, and
/// a resolver picks one: the DHCP lease or the VIP (a balancer holds it)
/// as often as the node address. So a node publishes exactly its cluster
/// address, from /etc/avahi/hosts, with avahi's own address records off.
/// A card with no node address (not in the cluster file yet) publishes
/// all of its addresses: the page that says so listens on all of them.
pub fn mdns(paths: &Paths, hostname: &str, address: Option<IpAddr>) -> anyhow::Result<()> {
    let hosts_path = paths.under_root("/etc/avahi/hosts");
    let hosts = match address {
        Some(ip) => format!(
            "# Written by `piha firstboot` at every boot: {hostname}.local is the node address.\n\
             {ip} {hostname}.local\n"
        ),
        None => "# Written by `piha firstboot`: no node address, avahi publishes all addresses.\n"
            .to_owned(),
    };
    // Only written when it changes: /etc is on the SD card.
    if std::fs::read_to_string(&hosts_path).ok().as_deref() != Some(hosts.as_str()) {
        if let Some(dir) = hosts_path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        write_atomic(&hosts_path, hosts.as_bytes(), 0o644)?;
    }
    let conf_path = paths.under_root(AVAHI_CONF);
    if let Some(dir) = conf_path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    write_atomic(&conf_path, avahi_conf(address.is_none()).as_bytes(), 0o644)
}

/// Debian's avahi-daemon.conf as shipped, but wide-area DNS-SD off (a
/// cluster on a LAN has no use for it) and address publishing chosen.
pub fn avahi_conf(publish_addresses: bool) -> String {
    let publish = if publish_addresses { "yes" } else { "no" };
    format!(
        "# Written by `piha firstboot` at every boot (see /etc/avahi/hosts).\n\
         [server]\nuse-ipv4=yes\nuse-ipv6=yes\nratelimit-interval-usec=1000000\nratelimit-burst=1000\n\n\
         [wide-area]\nenable-wide-area=no\n\n\
         [publish]\npublish-addresses={publish}\npublish-hinfo=no\npublish-workstation=no\n\n\
         [reflector]\n\n[rlimits]\n"
    )
}

/// Records that a once-only step is done.
pub fn mark_done(paths: &Paths, marker: &str, what: &str) -> anyhow::Result<()> {
    let dir = paths.marker_dir();
    std::fs::create_dir_all(&dir)?;
    write_atomic(&dir.join(marker), format!("{what}\n").as_bytes(), 0o644)
}

async fn run_checked(cmd: tokio::process::Command, limit: Duration) -> anyhow::Result<()> {
    let ran = program::output(cmd, limit, program::READ_LIMIT).await?;
    if !ran.status.success() {
        bail!("{}: {}", ran.status, ran.stderr.trim());
    }
    Ok(())
}

/// `node::atomic_file::write`, with the path in the error.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
    crate::node::atomic_file::write(path, bytes, mode)
        .with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_gets_exactly_one_line_for_the_name() {
        let hosts = "127.0.0.1\tlocalhost\n127.0.1.1\tpiha\n::1\tlocalhost\n";
        assert_eq!(
            hosts_with_name(hosts, "pi-1"),
            "127.0.0.1\tlocalhost\n::1\tlocalhost\n127.0.1.1\tpi-1\n"
        );
    }

    #[test]
    fn finds_the_root_device_in_mountinfo() {
        let info = "22 1 254:2 / / rw,noatime shared:1 - ext4 /dev/vda2 rw\n\
                    23 22 254:1 / /boot/firmware rw shared:2 - vfat /dev/vda1 rw\n";
        assert_eq!(root_device_number(info).as_deref(), Some("254:2"));
    }

    #[test]
    fn a_key_is_not_added_twice_whatever_its_comment() {
        let have = "ssh-ed25519 AAAA1 old-comment\n";
        assert!(has_key(have, "ssh-ed25519 AAAA1 new-comment"));
        assert!(!has_key(have, "ssh-ed25519 AAAA2 new-comment"));
    }
}
