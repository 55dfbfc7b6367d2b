//! Replacing a small file so that a power cut (the usual way a Pi is
//! switched off) leaves the old file or the new one, never half of one:
//! write a temporary file beside it, sync, rename. Used for the TLS key and
//! certificate and for what `piha firstboot` writes. (The db role's
//! `write_private` does the same with a chown before the rename.)

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

/// Writes `bytes` to `path` with `mode`, atomically.
pub fn write(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
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
    std::fs::rename(&tmp, path)
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
}
