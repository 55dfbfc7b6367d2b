//! Compile-only stand-in with the agreed API; replaced by the real store.
#![allow(dead_code, unused_variables)]
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    Error,
}
impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
        })
    }
}
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Event {
    pub at_ms: i64,
    pub node: String,
    pub component: String,
    pub severity: Severity,
    pub message: String,
    pub details: serde_json::Value,
}
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Sample {
    pub at_ms: i64,
    pub series: String,
    pub value: f64,
}
#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub retention: Duration,
    pub max_bytes: u64,
    pub flush_interval: Duration,
}
pub struct OpenReport {
    pub recovered: Option<Recovery>,
}
pub struct Recovery {
    pub moved_to: PathBuf,
    pub reason: String,
}
#[derive(Debug, Clone, Default, Serialize)]
pub struct StoreStats {
    pub queued: u64,
    pub dropped: u64,
    pub flushes: u64,
    pub last_flush_ms: Option<i64>,
    pub db_bytes: u64,
    pub event_rows: u64,
    pub sample_rows: u64,
    pub write_errors: u64,
    pub recoveries: u64,
}
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("stand-in")]
    StandIn,
}
#[derive(Clone)]
pub struct Store;
pub struct StoreWorker;
pub fn open(
    dir: &Path,
    config: StoreConfig,
) -> Result<(Store, StoreWorker, OpenReport), StoreError> {
    Ok((Store, StoreWorker, OpenReport { recovered: None }))
}
impl Store {
    pub fn record(&self, event: Event) {}
    pub fn record_samples(&self, at_ms: i64, values: &[(&str, f64)]) {}
    pub fn recent_events(&self, limit: usize) -> Vec<Event> {
        vec![]
    }
    pub async fn samples_since(&self, since_ms: i64) -> Result<Vec<Sample>, StoreError> {
        Ok(vec![])
    }
    pub async fn flush(&self) -> Result<(), StoreError> {
        Ok(())
    }
    pub fn set_config(&self, config: StoreConfig) {}
    pub fn stats(&self) -> StoreStats {
        StoreStats::default()
    }
}
impl StoreWorker {
    pub fn shutdown(self, timeout: Duration) -> Result<(), StoreError> {
        Ok(())
    }
}
