//! Where the cluster file is looked for. The boot partition comes first: it is
//! the FAT partition a Pi owner can edit from any laptop before first boot.

use std::path::{Path, PathBuf};

use super::ConfigError;

/// Searched in this order when no `--config` is given.
pub const DEFAULT_PATHS: [&str; 2] = ["/boot/firmware/piha/cluster.toml", "/etc/piha/cluster.toml"];

/// `explicit` if given (it must exist), else the first of [`DEFAULT_PATHS`]
/// that exists.
pub fn find_config(explicit: Option<&Path>) -> Result<PathBuf, ConfigError> {
    find_config_in(explicit, &DEFAULT_PATHS.map(Path::new))
}

/// [`find_config`] over a given candidate list, so the order can be tested
/// without touching `/boot` or `/etc`.
pub fn find_config_in(
    explicit: Option<&Path>,
    candidates: &[&Path],
) -> Result<PathBuf, ConfigError> {
    if let Some(path) = explicit {
        // An explicit path that is missing is an error, never a reason to
        // fall back to another file the user did not ask for.
        return if path.exists() {
            Ok(path.to_path_buf())
        } else {
            Err(ConfigError::NotFound {
                tried: vec![path.to_path_buf()],
            })
        };
    }
    candidates
        .iter()
        .find(|p| p.exists())
        .map(|p| p.to_path_buf())
        .ok_or_else(|| ConfigError::NotFound {
            tried: candidates.iter().map(|p| p.to_path_buf()).collect(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_first_then_candidates_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let boot = dir.path().join("boot.toml");
        let etc = dir.path().join("etc.toml");
        let explicit = dir.path().join("mine.toml");
        let candidates = [boot.as_path(), etc.as_path()];

        let none = find_config_in(None, &candidates).unwrap_err().to_string();
        assert!(
            none.contains("boot.toml") && none.contains("etc.toml"),
            "{none}"
        );

        std::fs::write(&etc, "").unwrap();
        assert_eq!(find_config_in(None, &candidates).unwrap(), etc);
        std::fs::write(&boot, "").unwrap();
        assert_eq!(find_config_in(None, &candidates).unwrap(), boot);

        let missing = find_config_in(Some(&explicit), &candidates).unwrap_err();
        assert!(missing.to_string().contains("mine.toml"), "{missing}");
        std::fs::write(&explicit, "").unwrap();
        assert_eq!(
            find_config_in(Some(&explicit), &candidates).unwrap(),
            explicit
        );
    }
}
