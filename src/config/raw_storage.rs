//! The cluster-wide `[storage]` section as written: the Gluster volume the
//! storage nodes form (name, replica layout), where every storage node
//! mounts it, and how it is watched. Shape only; `storage_settings` checks
//! the values. Not to be mixed up with a node's `storage = { brick = ... }`
//! (`RawStorage`), which says where that node's brick is.

use toml::Spanned;

use super::diagnostic::Report;
use super::raw::{DURATION, Fields, Table};

pub struct RawStorageCluster {
    pub volume: Option<Spanned<String>>,
    pub replica: Option<Spanned<i64>>,
    pub arbiter: Option<Spanned<bool>>,
    pub mount: Option<Spanned<String>>,
    pub poll: Option<Spanned<String>>,
    pub ping_timeout: Option<Spanned<String>>,
    pub min_free: Option<Spanned<i64>>,
    pub gluster: Option<Spanned<String>>,
}

pub(super) fn read_storage(t: Table<'_, '_>, report: &mut Report<'_>) -> RawStorageCluster {
    let mut f = Fields::new(t.table, "[storage]", report);
    let s = RawStorageCluster {
        volume: f.string("volume", "a volume name in quotes, like \"piha\""),
        replica: f.integer("replica", "a number of copies, like 2 or 3"),
        arbiter: f.boolean("arbiter"),
        mount: f.string(
            "mount",
            "an absolute directory path in quotes, like \"/srv/piha/www\"",
        ),
        poll: f.string("poll", DURATION),
        ping_timeout: f.string("ping_timeout", DURATION),
        min_free: f.integer("min_free", "a percentage from 1 to 50, like 10"),
        gluster: f.string(
            "gluster",
            "the path of the gluster program in quotes, like \"/usr/sbin/gluster\"",
        ),
    };
    f.refuse(
        "brick",
        "`brick` belongs to one node (or [defaults]), not to [storage]: write storage = { brick = \"/srv/piha/brick\" } there",
    );
    f.finish();
    s
}
