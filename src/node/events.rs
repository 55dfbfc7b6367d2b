//! Recording an event: one call that stamps time and node, logs it through
//! tracing (journald on a Pi) and queues it for the event store.

use serde_json::Value;

use crate::store::{Event, Severity, Store};

/// Cheap to clone; every service holds one.
#[derive(Clone)]
pub struct Events {
    store: Store,
    node: String,
}

impl Events {
    pub fn new(store: Store, node: &str) -> Events {
        Events {
            store,
            node: node.to_owned(),
        }
    }

    pub fn info(&self, component: &str, message: impl Into<String>, details: Value) {
        self.record(Severity::Info, component, message.into(), details);
    }

    pub fn warning(&self, component: &str, message: impl Into<String>, details: Value) {
        self.record(Severity::Warning, component, message.into(), details);
    }

    pub fn error(&self, component: &str, message: impl Into<String>, details: Value) {
        self.record(Severity::Error, component, message.into(), details);
    }

    fn record(&self, severity: Severity, component: &str, message: String, details: Value) {
        match severity {
            Severity::Info => tracing::info!(component, %details, "{message}"),
            Severity::Warning => tracing::warn!(component, %details, "{message}"),
            Severity::Error => tracing::error!(component, %details, "{message}"),
        }
        self.store.record(Event {
            at_ms: now_ms(),
            node: self.node.clone(),
            component: component.to_owned(),
            severity,
            message,
            details,
        });
    }
}

/// Wall-clock time for events and the API. Before NTP has set the clock a
/// Pi (no RTC) may say 1970; times are then wrong but never a reason to fail.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
