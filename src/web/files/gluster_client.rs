//! Whether a Gluster FUSE mount under the document root can reach every
//! part of the volume, from the client's own view: the `.meta` folder that
//! glusterfs shows at the root of every FUSE mount (its meta xlator) has a
//! `private` file per translator of the active graph. A replicate (or
//! disperse) set says `up = 0` when none of its bricks is connected; a
//! plain distribute volume's client says `connected = 0` for a lost brick.
//!
//! Why the web role reads it: a node whose client lost one replica set can
//! still list the root (the root folder is on every brick), so the old
//! health check passed while files of the lost set came back as "not
//! found". The failure drill saw exactly that after a cut link came back:
//! 404s for files that exist. Nothing else reports this client's view
//! (`gluster volume status` is glusterd's view, not this mount's).
//! Written by hand: no crate reads glusterfs's meta xlator.

use std::path::Path;

/// Translators read at most (a 4-node volume has about 15).
const MAX_ENTRIES: usize = 256;
/// A `private` file is a few hundred bytes; anything longer is not one.
const MAX_FILE: u64 = 64 * 1024;

/// `None` when `root` is not a Gluster mount or every part of the volume is
/// reachable; else which set or brick is not. Blocking.
pub fn problem(root: &Path) -> Option<String> {
    let active = root.join(".meta/graphs/active");
    let entries = std::fs::read_dir(&active).ok()?;
    let mut sets = Vec::new();
    let mut clients = Vec::new();
    for e in entries.flatten().take(MAX_ENTRIES) {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.contains("-replicate-") || name.contains("-disperse-") {
            sets.push(name);
        } else if name.contains("-client-") {
            clients.push(name);
        }
    }
    // With replica or disperse sets, one brick of a set may be down (that
    // is what they are for); without, every brick is needed.
    let (names, key, bad) = if sets.is_empty() {
        (clients, "connected", "is not connected")
    } else {
        (sets, "up", "has no brick connected")
    };
    let mut names = names;
    names.sort();
    names.into_iter().find_map(|name| {
        let text = read_small(&active.join(&name).join("private"))?;
        (value(&text, key) == Some("0")).then(|| format!("Gluster {name} {bad} from this node"))
    })
}

fn read_small(path: &Path) -> Option<String> {
    use std::io::Read;
    let file = std::fs::File::open(path).ok()?;
    let mut text = String::new();
    file.take(MAX_FILE).read_to_string(&mut text).ok()?;
    Some(text)
}

/// The value of `key = value` on its own line.
fn value<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines().find_map(|line| {
        let (k, v) = line.split_once('=')?;
        (k.trim() == key).then(|| v.trim())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(root: &Path, name: &str, private: &str) {
        let dir = root.join(".meta/graphs/active").join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("private"), private).unwrap();
    }

    #[test]
    fn a_plain_folder_is_fine() {
        let root = tempfile::tempdir().unwrap();
        assert_eq!(problem(root.path()), None);
    }

    #[test]
    fn a_replica_set_with_one_brick_up_is_fine_one_with_none_is_not() {
        let root = tempfile::tempdir().unwrap();
        // As glusterfs 10 prints them (one brick of set 1 down).
        meta(
            root.path(),
            "piha-replicate-0",
            "[cluster/replicate.piha-replicate-0]\nchild_count = 2\nchild_up[0] = 1\nchild_up[1] = 1\nup = 1\n",
        );
        meta(
            root.path(),
            "piha-replicate-1",
            "[cluster/replicate.piha-replicate-1]\nchild_count = 2\nchild_up[0] = 0\nchild_up[1] = 1\nup = 1\n",
        );
        meta(
            root.path(),
            "piha-client-2",
            "[xlator.protocol.client.piha-client-2.priv]\nconnected = 0\n",
        );
        assert_eq!(problem(root.path()), None);
        meta(
            root.path(),
            "piha-replicate-0",
            "[cluster/replicate.piha-replicate-0]\nchild_up[0] = 0\nchild_up[1] = 0\nup = 0\n",
        );
        assert_eq!(
            problem(root.path()).as_deref(),
            Some("Gluster piha-replicate-0 has no brick connected from this node")
        );
    }

    #[test]
    fn a_distribute_volume_needs_every_brick() {
        let root = tempfile::tempdir().unwrap();
        meta(root.path(), "v-client-0", "connected = 1\n");
        meta(root.path(), "v-client-1", "connected = 0\n");
        meta(root.path(), "v-dht", "[cluster/distribute.v-dht]\n");
        assert_eq!(
            problem(root.path()).as_deref(),
            Some("Gluster v-client-1 is not connected from this node")
        );
    }
}
