//! Replacing a small file so that a power cut (the usual way a Pi is
//! switched off) leaves the old file or the new one, never half of one nor
//! an empty one: write a temporary file beside it, sync it, rename, sync the
//! folder (without that, the rename itself may be lost). Used for the TLS
//! key and certificate, for what `piha firstboot` writes, and for the db
//! role's PostgreSQL configuration (`write_owned`, with a chown).

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

/// Writes `bytes` to `path` with `mode`, atomically.
pub fn write(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    write_owned(path, bytes, mode, None)
}

/// As [`write`], the file owned by `owner` (uid, gid) before it takes the
/// name: PostgreSQL's own files must never be root's, not even for a moment.
pub fn write_owned(
    path: &Path,
    bytes: &[u8],
    mode: u32,
    owner: Option<(u32, u32)>,
) -> std::io::Result<()> {
    let tmp = temp_path(path);
    // A temporary file left by a crash may carry another mode: start anew so
    // the mode is set at creation, and a key is never readable by others,
    // not even for an instant.
    let _ = std::fs::remove_file(&tmp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::chown(&tmp, Some(uid), Some(gid))?;
    }
    std::fs::rename(&tmp, path)?;
    sync_parent(path)
}

/// Makes the rename durable: it lives in the folder's entries.
fn sync_parent(path: &Path) -> std::io::Result<()> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    std::fs::File::open(parent)?.sync_all()
}

/// `web-key.pem` -> `web-key.pem.piha-tmp`, in the same folder (a rename
/// only replaces atomically within one file system).
fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".piha-tmp");
    path.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn replaces_the_file_with_its_mode_even_over_a_stale_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key.pem");
        std::fs::write(&path, "old").unwrap();
        std::fs::write(temp_path(&path), "stale").unwrap();
        std::fs::set_permissions(temp_path(&path), std::fs::Permissions::from_mode(0o666)).unwrap();
        write(&path, b"new", 0o600).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(!temp_path(&path).exists());
    }

    #[test]
    fn the_file_gets_its_owner() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("postgresql.conf");
        // Only root may give a file away; anyone else gives it to itself.
        let meta = std::fs::metadata(dir.path()).unwrap();
        let owner = if meta.uid() == 0 {
            (65534, 65534)
        } else {
            (meta.uid(), meta.gid())
        };
        write_owned(&path, b"port = 5432\n", 0o600, Some(owner)).unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!((meta.uid(), meta.gid()), owner);
        assert_eq!(std::fs::read(&path).unwrap(), b"port = 5432\n");
        assert!(!temp_path(&path).exists());
    }
}
