//! The cluster file (`cluster.toml`): schema, validation with line/column
//! diagnostics, the search order, and the hostname -> role plan.

mod model;

pub use model::*;

use std::path::{Path, PathBuf};

/// Every way the cluster file can be unusable. `Display` is what a person
/// reads: each diagnostic names file, line and column.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("placeholder: config loading is being written")]
    Placeholder,
}

/// Reads, parses and validates the file at `path`.
pub fn load(_path: &Path) -> Result<ClusterConfig, ConfigError> {
    Err(ConfigError::Placeholder)
}

/// `--config` if given, else the first that exists of
/// /boot/firmware/piha/cluster.toml and /etc/piha/cluster.toml.
pub fn find_config(_explicit: Option<&Path>) -> Result<PathBuf, ConfigError> {
    Err(ConfigError::Placeholder)
}

impl ClusterConfig {
    /// The plan of `hostname`: its own entry, else the first matching pattern.
    pub fn plan_for(&self, _hostname: &str) -> Result<NodePlan, ConfigError> {
        Err(ConfigError::Placeholder)
    }

    /// The role plan of every node and pattern as a table for `piha check`.
    pub fn plan_table(&self) -> String {
        String::new()
    }
}
