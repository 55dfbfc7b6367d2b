//! The VRRP instance's part of the status API and of /metrics: the snapshot
//! the instance publishes (`VrrpStatus`), in the shape docs/api.md
//! documents. The snapshot is serialized as it is, so the test below pins
//! every field: a field added to `VrrpStatus` must be documented before it
//! becomes API.

use std::sync::Arc;

use serde_json::Value;

use crate::node::context::NodeContext;
use crate::vrrp::status::VrrpStatus;

/// The instance's latest snapshot, if this node runs one.
pub fn running(ctx: &NodeContext) -> Option<Arc<VrrpStatus>> {
    ctx.roles.vrrp.borrow().clone()
}

/// `vrrp` of `/api/v1/status`: null when this node runs no instance.
pub fn section(ctx: &NodeContext) -> Option<Value> {
    running(ctx).map(|s| to_json(&s))
}

pub fn to_json(s: &VrrpStatus) -> Value {
    // Only plain data and string maps: serializing cannot fail, and a
    // status page must not go blank if it somehow did.
    serde_json::to_value(s).unwrap_or(Value::Null)
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::BTreeMap;
    use std::path::Path;

    use serde_json::json;
    use tokio::sync::watch;
    use tokio_util::sync::CancellationToken;

    use super::*;
    use crate::node::context::{Identity, Running};
    use crate::node::events::Events;
    use crate::node::health::HealthBoard;
    use crate::vrrp::machine::{Reason, State};
    use crate::vrrp::packet::Version;
    use crate::vrrp::status::{Counters, MasterInfo, TrackInfo, TransitionInfo};

    /// A master whose priority tracking lowered (one item failing), with a
    /// few drops: what the metrics test encodes.
    pub fn sample() -> VrrpStatus {
        let dropped: BTreeMap<&'static str, u64> = [
            ("auth_mismatch", 0),
            ("bad_checksum", 2),
            ("bad_ttl", 0),
            ("not_a_peer", 1),
        ]
        .into_iter()
        .collect();
        let tracking = [
            (
                "http".to_owned(),
                TrackInfo {
                    healthy: false,
                    weight: 60,
                    detail: "connect: connection refused".into(),
                },
            ),
            (
                "pooler".to_owned(),
                TrackInfo {
                    healthy: true,
                    weight: 50,
                    detail: "ok".into(),
                },
            ),
        ]
        .into_iter()
        .collect();
        VrrpStatus {
            name: "vrid 51 on eth0".into(),
            version: Version::V3,
            vrid: 51,
            interface: "eth0".into(),
            state: State::Master,
            configured_priority: 150,
            effective_priority: 90,
            interval_ms: 1000,
            master_interval_ms: 1000,
            master: Some(MasterInfo {
                address: "192.0.2.11".parse().expect("address"),
                priority: 90,
            }),
            vips: vec!["192.0.2.10/24".into()],
            mode: "multicast",
            checksum: "pseudo_header",
            scheduling: "SCHED_FIFO priority 10".into(),
            last_transition: Some(TransitionInfo {
                from: State::Backup,
                to: State::Master,
                reason: Reason::HigherPriority {
                    from: "192.0.2.12".parse().expect("address"),
                    priority: 100,
                },
                at_ms: 1_763_799_000_000,
            }),
            tracking,
            counters: Counters {
                adverts_sent: 1234,
                adverts_received: 56,
                priority_zero_sent: 1,
                priority_zero_received: 3,
                became_master: 4,
                announcements_sent: 20,
                dropped,
                io_errors: 7,
                connections_reset: 2,
            },
        }
    }

    #[test]
    fn the_section_has_the_documented_shape() {
        let doc = to_json(&sample());
        let keys = |v: &Value| -> Vec<String> {
            v.as_object()
                .expect("object")
                .keys()
                .cloned()
                .collect::<Vec<_>>()
        };
        let mut want = vec![
            "name",
            "version",
            "vrid",
            "interface",
            "state",
            "configured_priority",
            "effective_priority",
            "interval_ms",
            "master_interval_ms",
            "master",
            "vips",
            "mode",
            "checksum",
            "scheduling",
            "last_transition",
            "tracking",
            "counters",
        ];
        want.sort_unstable();
        assert_eq!(keys(&doc), want, "documented in docs/api.md");
        assert_eq!(doc["version"], "v3");
        assert_eq!(doc["state"], "master");
        assert_eq!(doc["vrid"], 51);
        assert_eq!(doc["configured_priority"], 150);
        assert_eq!(doc["effective_priority"], 90);
        assert_eq!(
            doc["master"],
            json!({"address": "192.0.2.11", "priority": 90})
        );
        assert_eq!(doc["vips"], json!(["192.0.2.10/24"]));
        assert_eq!(
            doc["last_transition"],
            json!({
                "from": "backup",
                "to": "master",
                "reason": {"kind": "higher_priority", "from": "192.0.2.12", "priority": 100},
                "at_ms": 1_763_799_000_000i64,
            })
        );
        assert_eq!(
            doc["tracking"]["http"],
            json!({"healthy": false, "weight": 60, "detail": "connect: connection refused"})
        );
        let mut counters = vec![
            "adverts_sent",
            "adverts_received",
            "priority_zero_sent",
            "priority_zero_received",
            "became_master",
            "announcements_sent",
            "dropped",
            "io_errors",
            "connections_reset",
        ];
        counters.sort_unstable();
        assert_eq!(keys(&doc["counters"]), counters);
        assert_eq!(doc["counters"]["dropped"]["bad_ttl"], 0, "zeros kept");

        // The reasons without data are a bare kind.
        let mut s = sample();
        s.last_transition = Some(TransitionInfo {
            from: State::Initialize,
            to: State::Backup,
            reason: Reason::Started,
            at_ms: 0,
        });
        s.master = None;
        let doc = to_json(&s);
        assert_eq!(doc["last_transition"]["reason"], json!({"kind": "started"}));
        assert_eq!(doc["master"], Value::Null);
    }

    /// A node context on `pi-configs/cluster.toml` as pi-1, for tests of
    /// what reads it.
    pub(crate) fn context(dir: &Path) -> (NodeContext, crate::store::StoreWorker) {
        let text = include_str!("../../pi-configs/cluster.toml");
        let config = crate::config::parse(text, &dir.join("cluster.toml")).expect("config");
        let plan = config.plan_for("pi-1").expect("plan");
        let running = Arc::new(Running {
            config: Arc::new(config),
            plan,
            loaded_at_ms: 0,
        });
        let (store, worker, _) =
            crate::store::open(&dir.join("data"), crate::store::StoreConfig::default())
                .expect("store");
        let ctx = NodeContext {
            identity: Identity {
                hostname: "pi-1".into(),
                address: "192.0.2.11".parse().expect("address"),
                incarnation: 1,
                started_at_ms: 0,
                version: "test",
                data_dir: dir.to_path_buf(),
            },
            config: watch::channel(running).1,
            events: Events::new(store.clone(), "pi-1"),
            store,
            health: HealthBoard::default(),
            system: watch::channel(Arc::default()).0,
            membership: watch::channel(Arc::default()).0,
            reload: tokio::sync::mpsc::channel(1).0,
            shutdown: CancellationToken::new(),
            roles: Default::default(),
            held: Default::default(),
        };
        (ctx, worker)
    }

    /// What the instance publishes is what the API and /metrics show, and
    /// both forget it when the instance stops.
    #[test]
    fn the_document_and_metrics_follow_what_the_instance_publishes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (ctx, _worker) = context(dir.path());
        let series = r#"piha_vrrp_state{vrid="51",interface="eth0",state="master"}"#;

        let doc = super::super::api::build(&ctx);
        assert!(doc.vrrp.is_none());
        let text = super::super::metrics::render(&ctx).expect("metrics");
        assert!(!text.contains("piha_vrrp_"), "{text}");

        ctx.roles.vrrp.send_replace(Some(Arc::new(sample())));
        let doc = super::super::api::build(&ctx);
        let vrrp = doc.vrrp.as_ref().expect("vrrp section");
        assert_eq!(vrrp["state"], "master");
        assert_eq!(vrrp["interface"], "eth0");
        // `piha status` reads the document back.
        let back: super::super::api::StatusDoc =
            serde_json::from_str(&serde_json::to_string(&doc).expect("json")).expect("read");
        assert_eq!(back.vrrp.as_ref(), Some(vrrp));
        let text = super::super::metrics::render(&ctx).expect("metrics");
        assert_eq!(
            super::super::metrics::find_value(&text, series),
            Some(1.0),
            "{text}"
        );

        ctx.roles.vrrp.send_replace(None);
        assert!(super::super::api::build(&ctx).vrrp.is_none());
        let text = super::super::metrics::render(&ctx).expect("metrics");
        assert!(!text.contains("piha_vrrp_"), "{text}");
    }
}
