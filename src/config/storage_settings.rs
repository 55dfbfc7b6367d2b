//! The cluster-wide `[storage]` section over the built-in values. Only the
//! values are checked here; whether the storage nodes' count fits the
//! replica layout is told by the storage role (it knows which nodes are
//! storage nodes once roles are resolved) and by `piha check`'s plan.

use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::time::Duration;

use super::diagnostic::Report;
use super::model::StorageClusterSettings;
use super::overlay::field_with_help;
use super::raw::RawStorageCluster;
use super::values;

const REPLICA: RangeInclusive<u32> = 1..=4;
const MIN_FREE: RangeInclusive<u32> = 1..=50;
/// Polling more often than this mostly measures gluster's CLI.
const MIN_POLL: Duration = Duration::from_secs(1);

const VOLUME_HELP: &str = "a Gluster volume name: letters, digits, '-' and '_', like \"piha\"";
const REPLICA_HELP: &str = "how many bricks hold each file: 2 (pairs; with 4 or more storage nodes each pair also gets an arbiter on another node, as in the four-Pi default) or 3; leave it out to pick 2 for an even number of storage nodes and 3 for a multiple of three";
const MOUNT_HELP: &str = "the folder every storage node mounts the volume on; the web role serves from it when it is the web root, like \"/srv/piha/www\"";
const POLL_HELP: &str = "how often the storage role asks gluster for the state of bricks and heals, like \"5s\" (at least 1s)";
const PING_HELP: &str = "how long clients wait for a brick that stops answering before they give up on it (gluster's network.ping-timeout), like \"10s\"; gluster's own 42s stalls every write for that long when a Pi dies";
const MIN_FREE_HELP: &str =
    "warn when a brick has less than this percentage of its space free, like min_free = 10";
const GLUSTER_HELP: &str =
    "the path of the gluster CLI, like \"/usr/sbin/gluster\" (Debian's glusterfs-server package)";

pub fn storage(raw: Option<&RawStorageCluster>, report: &mut Report<'_>) -> StorageClusterSettings {
    let base = StorageClusterSettings::builtin();
    let Some(raw) = raw else {
        return base;
    };
    StorageClusterSettings {
        volume: field_with_help(
            &raw.volume,
            &base.volume,
            |t| volume(t),
            VOLUME_HELP,
            report,
        ),
        replica: field_with_help(
            &raw.replica,
            &base.replica,
            |n| values::count(*n, "replica", REPLICA).map(Some),
            REPLICA_HELP,
            report,
        ),
        arbiter: raw.arbiter.as_ref().map(|b| *b.get_ref()).or(base.arbiter),
        mount: field_with_help(
            &raw.mount,
            &base.mount,
            |t| dir(t, "mount"),
            MOUNT_HELP,
            report,
        ),
        poll: field_with_help(&raw.poll, &base.poll, |t| poll(t), POLL_HELP, report),
        ping_timeout: field_with_help(
            &raw.ping_timeout,
            &base.ping_timeout,
            |t| ping(t),
            PING_HELP,
            report,
        ),
        min_free: field_with_help(
            &raw.min_free,
            &base.min_free,
            |n| values::count(*n, "min_free", MIN_FREE),
            MIN_FREE_HELP,
            report,
        ),
        gluster: field_with_help(
            &raw.gluster,
            &base.gluster,
            |t| values::absolute_file(t).map_err(|why| format!("`gluster`: {why}")),
            GLUSTER_HELP,
            report,
        ),
    }
}

/// gluster's own rule for volume names, stricter on length: it becomes part
/// of file names under /var/lib/glusterd and of the mount's log file name.
fn volume(name: &str) -> Result<String, String> {
    let len = name.chars().count();
    if !(1..=64).contains(&len) {
        return Err(format!(
            "`volume` must be 1 to 64 characters long, not {len}"
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
    {
        return Err(format!(
            "`volume` may hold only letters, digits, '-' and '_', not {c:?}"
        ));
    }
    if name.starts_with('-') {
        return Err("`volume` must not start with '-'".into());
    }
    Ok(name.to_owned())
}

fn dir(text: &str, key: &str) -> Result<PathBuf, String> {
    values::absolute_dir(text).map_err(|why| format!("`{key}`: {why}"))
}

fn poll(text: &str) -> Result<Duration, String> {
    let d = values::duration(text).map_err(|why| format!("`poll`: {why}"))?;
    if d < MIN_POLL {
        return Err(format!(
            "`poll` must be at least 1s, found {}",
            humantime::format_duration(d)
        ));
    }
    Ok(d)
}

/// gluster takes whole seconds from 1 to 1013.
fn ping(text: &str) -> Result<Duration, String> {
    let d = values::duration(text).map_err(|why| format!("`ping_timeout`: {why}"))?;
    if !(1..=1013).contains(&d.as_secs()) || d.subsec_nanos() != 0 {
        return Err(format!(
            "`ping_timeout` must be whole seconds from 1s to 1013s, found {}",
            humantime::format_duration(d)
        ));
    }
    Ok(d)
}
