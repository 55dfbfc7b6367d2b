//! The HTTP balancer's stats in the API's shape (docs/api.md): what the
//! status page's balancer panel and scripts read.

use std::sync::Arc;

use serde_json::{Value, json};

use super::balancer::backend_base;
use crate::balancer::http::Handle;
use crate::balancer::shared::SharedPool;
use crate::node::events::now_ms;

pub fn http_json(h: &Handle) -> Value {
    let stats = h.stats();
    let settings = h.settings();
    let now = now_ms();
    let f = &stats.frontend;
    let backends: Vec<Value> = stats
        .backends
        .iter()
        .map(|b| {
            let mut m = backend_base(&b.pool, now);
            m.insert("requests_total".into(), json!(b.requests));
            m.insert("rate_per_s".into(), json!(b.rate_10s));
            m.insert("responses".into(), json!(b.responses));
            m.insert(
                "connection_errors".into(),
                json!(b.connect_errors + b.response_errors),
            );
            m.insert("timeouts".into(), json!(b.timeouts));
            m.insert("retries".into(), json!(b.retries));
            m.insert("bytes_in".into(), json!(b.bytes_in));
            m.insert("bytes_out".into(), json!(b.bytes_out));
            let latency = (b.latency.count > 0).then(|| {
                json!({"p50": b.latency.p50_ms, "p90": b.latency.p90_ms, "p99": b.latency.p99_ms,
                       "mean": b.latency.mean_ms, "count": b.latency.count})
            });
            m.insert("latency_ms".into(), json!(latency));
            Value::Object(m)
        })
        .collect();
    json!({
        "algorithm": settings.algorithm.name(),
        "frontend": {
            "requests_total": f.requests,
            "rate_per_s": f.rate_10s,
            "responses": f.responses,
            "open_connections": f.connections_open,
            "connections_total": f.connections_total,
            "queued": f.queued,
            "rejected_total": f.unavailable,
            "bad_requests": f.bad_requests,
            "too_large": f.too_large,
            "bad_gateway": f.bad_gateway,
            "gateway_timeout": f.gateway_timeout,
            "retries": f.retries,
            "tls_handshake_failures": f.tls_handshake_failures,
            "timed_out_connections": f.timed_out_connections,
            "panic": f.panic,
            "panic_requests_total": f.panic_requests,
        },
        "backends": backends,
    })
}

pub fn pool_of(h: &Handle) -> Arc<SharedPool> {
    h.pool().clone()
}
