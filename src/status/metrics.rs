//! `GET /metrics`: Prometheus/OpenMetrics text, built per scrape from the
//! same snapshots the status page reads (a prometheus-client `Collector`), so
//! there is no second copy of any state to keep in step.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use crate::balancer::http::HttpStats;
use crate::balancer::pool::BackendView;
use crate::balancer::tcp::TcpStats;
use crate::membership::{MembershipView, PeerState};
use crate::node::context::NodeContext;
use crate::node::health::{HealthSnapshot, ServiceState};
use crate::node::system_metrics::SystemView;
use crate::store::StoreStats;

use super::pooler::PoolerView;
use crate::pg::supervisor::{DbRole, DbState, DbStatus};
use crate::vrrp::machine::State as VrrpState;
use crate::vrrp::status::VrrpStatus;

pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

pub fn render(ctx: &NodeContext) -> Result<String, std::fmt::Error> {
    let running = ctx.running();
    let snapshot = Snapshot {
        hostname: ctx.identity.hostname.clone(),
        version: ctx.identity.version,
        config_hash: running.config.source.hash.clone(),
        started_at_ms: ctx.identity.started_at_ms,
        membership: (**ctx.membership.borrow()).clone(),
        system: (**ctx.system.borrow()).clone(),
        health: (*ctx.health.snapshot()).clone(),
        store: ctx.store.stats(),
        rss_bytes: resident_memory_bytes(),
        http: ctx.roles.http_balancer.borrow().as_ref().map(|h| h.stats()),
        tcp: ctx
            .roles
            .tcp_services
            .borrow()
            .iter()
            .map(|h| h.stats())
            .collect(),
        pooler: super::pooler::running(ctx).map(|p| super::pooler::view(&p)),
        vrrp: super::vrrp::running(ctx),
        db: super::db::running(ctx),
        storage: super::storage::running(ctx),
    };
    let mut registry = Registry::default();
    registry.register_collector(Box::new(snapshot));
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &registry)?;
    Ok(out)
}

#[derive(Debug)]
struct Snapshot {
    hostname: String,
    version: &'static str,
    config_hash: String,
    started_at_ms: i64,
    membership: MembershipView,
    system: SystemView,
    health: HealthSnapshot,
    store: StoreStats,
    rss_bytes: Option<u64>,
    http: Option<HttpStats>,
    tcp: Vec<TcpStats>,
    pooler: Option<PoolerView>,
    vrrp: Option<std::sync::Arc<VrrpStatus>>,
    db: Option<std::sync::Arc<DbStatus>>,
    storage: Option<std::sync::Arc<crate::gluster::status::StorageStatus>>,
}

/// Small helpers so each metric below is one line, not six.
pub(super) struct Out<'a>(DescriptorEncoder<'a>);

impl Out<'_> {
    pub(super) fn gauge(
        &mut self,
        name: &str,
        help: &str,
        value: f64,
    ) -> Result<(), std::fmt::Error> {
        let m = ConstGauge::new(value);
        m.encode(
            self.0
                .encode_descriptor(name, help, None, m.metric_type())?,
        )
    }

    pub(super) fn counter(
        &mut self,
        name: &str,
        help: &str,
        value: u64,
    ) -> Result<(), std::fmt::Error> {
        let m = ConstCounter::new(value);
        m.encode(
            self.0
                .encode_descriptor(name, help, None, m.metric_type())?,
        )
    }

    pub(super) fn gauges(
        &mut self,
        name: &str,
        help: &str,
        series: &[(Vec<(&str, String)>, f64)],
    ) -> Result<(), std::fmt::Error> {
        let mut family = self
            .0
            .encode_descriptor(name, help, None, MetricType::Gauge)?;
        for (labels, value) in series {
            ConstGauge::new(*value).encode(family.encode_family(labels)?)?;
        }
        Ok(())
    }

    fn counters<N>(
        &mut self,
        name: &str,
        help: &str,
        series: &[(Vec<(&str, String)>, N)],
    ) -> Result<(), std::fmt::Error>
    where
        N: prometheus_client::encoding::EncodeCounterValue + Copy,
    {
        let mut family = self
            .0
            .encode_descriptor(name, help, None, MetricType::Counter)?;
        for (labels, value) in series {
            ConstCounter::new(*value).encode(family.encode_family(labels)?)?;
        }
        Ok(())
    }
}

impl Collector for Snapshot {
    fn encode(&self, encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut out = Out(encoder);
        self.node(&mut out)?;
        self.members(&mut out)?;
        self.services(&mut out)?;
        self.system(&mut out)?;
        self.store(&mut out)?;
        self.balancer(&mut out)?;
        if let Some(p) = &self.pooler {
            pooler(p, &mut out)?;
        }
        if let Some(v) = &self.vrrp {
            vrrp(v, &mut out)?;
        }
        if let Some(d) = &self.db {
            db(d, &mut out)?;
        }
        if let Some(s) = &self.storage {
            super::storage::metrics(s, crate::node::events::now_ms(), &mut out)?;
        }
        Ok(())
    }
}

impl Snapshot {
    fn node(&self, out: &mut Out) -> Result<(), std::fmt::Error> {
        out.gauges(
            "piha_build_info",
            "piha version and this node's identity (always 1)",
            &[(
                vec![
                    ("version", self.version.to_owned()),
                    ("hostname", self.hostname.clone()),
                    ("config_hash", self.config_hash.clone()),
                ],
                1.0,
            )],
        )?;
        out.gauge(
            "piha_start_time_seconds",
            "When this piha process started (unix time)",
            self.started_at_ms as f64 / 1000.0,
        )?;
        if let Some(rss) = self.rss_bytes {
            out.gauge(
                "process_resident_memory_bytes",
                "Resident memory of the piha process",
                rss as f64,
            )?;
        }
        Ok(())
    }

    fn members(&self, out: &mut Out) -> Result<(), std::fmt::Error> {
        let m = &self.membership;
        let up: Vec<_> = m
            .members
            .iter()
            .map(|p| {
                let v = if p.state == PeerState::Up { 1.0 } else { 0.0 };
                (vec![("peer", p.hostname.clone())], v)
            })
            .collect();
        out.gauges(
            "piha_member_up",
            "1 if the peer is up as this node sees it",
            &up,
        )?;
        let by_state: Vec<_> = ["up", "down", "left", "unknown"]
            .iter()
            .map(|s| {
                let peers = m.members.iter().filter(|p| p.state.name() == *s).count();
                let me = usize::from(*s == "up");
                (vec![("state", (*s).to_owned())], (peers + me) as f64)
            })
            .collect();
        out.gauges(
            "piha_members",
            "Cluster members by state, this node included",
            &by_state,
        )?;
        out.counter(
            "piha_membership_heartbeats_received",
            "Heartbeats accepted",
            m.received,
        )?;
        out.counter("piha_membership_heartbeats_sent", "Heartbeats sent", m.sent)?;
        out.counter(
            "piha_membership_send_errors",
            "Heartbeats the kernel refused to send",
            m.send_errors,
        )?;
        let dropped: Vec<_> = crate::membership::DropReason::ALL
            .iter()
            .map(|r| {
                let n = m.dropped.get(r.label()).copied().unwrap_or(0);
                (vec![("reason", r.label().to_owned())], n)
            })
            .collect();
        out.counters(
            "piha_membership_heartbeats_dropped",
            "Datagrams dropped, by reason",
            &dropped,
        )
    }

    fn services(&self, out: &mut Out) -> Result<(), std::fmt::Error> {
        let up: Vec<_> = self
            .health
            .services
            .values()
            .map(|s| {
                let v = if s.state == ServiceState::Running {
                    1.0
                } else {
                    0.0
                };
                (vec![("service", s.name.clone())], v)
            })
            .collect();
        out.gauges(
            "piha_service_up",
            "1 if the internal service is running",
            &up,
        )?;
        let restarts: Vec<_> = self
            .health
            .services
            .values()
            .map(|s| (vec![("service", s.name.clone())], u64::from(s.restarts)))
            .collect();
        out.counters(
            "piha_service_restarts",
            "Restarts of an internal service after a failure",
            &restarts,
        )?;
        let roles: Vec<_> = self
            .health
            .roles
            .values()
            .map(|r| {
                (
                    vec![
                        ("role", r.role.name().to_owned()),
                        ("state", r.state.name().to_owned()),
                    ],
                    1.0,
                )
            })
            .collect();
        out.gauges(
            "piha_role_state",
            "Each role of this node and its state (always 1)",
            &roles,
        )
    }

    fn system(&self, out: &mut Out) -> Result<(), std::fmt::Error> {
        let Some(s) = &self.system.latest else {
            return Ok(());
        };
        out.gauge(
            "piha_cpu_usage_ratio",
            "CPU busy, 0 to 1",
            s.cpu_percent / 100.0,
        )?;
        let load: Vec<_> = ["1", "5", "15"]
            .iter()
            .zip(s.load)
            .map(|(w, v)| (vec![("window", format!("{w}m"))], v))
            .collect();
        out.gauges("piha_load_average", "System load average", &load)?;
        out.gauge(
            "piha_memory_used_bytes",
            "Memory in use",
            s.memory_used_bytes as f64,
        )?;
        out.gauge(
            "piha_memory_total_bytes",
            "Memory installed",
            s.memory_total_bytes as f64,
        )?;
        if let Some(t) = s.temperature_c {
            out.gauge("piha_temperature_celsius", "SoC temperature", t)?;
        }
        out.gauge(
            "piha_host_uptime_seconds",
            "Time since the machine booted",
            s.uptime_s as f64,
        )?;
        let used: Vec<_> = s
            .disks
            .iter()
            .map(|d| (vec![("mount", d.mount.clone())], d.used_bytes as f64))
            .collect();
        let total: Vec<_> = s
            .disks
            .iter()
            .map(|d| (vec![("mount", d.mount.clone())], d.total_bytes as f64))
            .collect();
        out.gauges("piha_disk_used_bytes", "Disk space in use", &used)?;
        out.gauges("piha_disk_total_bytes", "Disk size", &total)?;
        out.counter(
            "piha_network_receive_bytes",
            "Bytes received on all interfaces but loopback",
            s.net_rx_bytes_total,
        )?;
        out.counter(
            "piha_network_transmit_bytes",
            "Bytes sent on all interfaces but loopback",
            s.net_tx_bytes_total,
        )
    }

    fn store(&self, out: &mut Out) -> Result<(), std::fmt::Error> {
        let s = &self.store;
        out.counter(
            "piha_store_flushes",
            "Batched commits to the event store",
            s.flushes,
        )?;
        out.counter(
            "piha_store_dropped",
            "Events or samples dropped because the write queue was full",
            s.dropped,
        )?;
        out.counter("piha_store_write_errors", "Failed commits", s.write_errors)?;
        out.counter(
            "piha_store_recoveries",
            "Times a corrupt database was moved aside and replaced",
            s.recoveries,
        )?;
        out.gauge(
            "piha_store_database_bytes",
            "Size of piha.db",
            s.db_bytes as f64,
        )
    }
}

impl Snapshot {
    /// HAProxy-like per-backend series; `frontend` is "http" or the TCP
    /// service's name.
    fn balancer(&self, out: &mut Out) -> Result<(), std::fmt::Error> {
        type Series = Vec<(Vec<(&'static str, String)>, f64)>;
        type Counts = Vec<(Vec<(&'static str, String)>, u64)>;
        let (mut up, mut active, mut weight): (Series, Series, Series) = Default::default();
        let (mut requests, mut responses, mut errors, mut retries): (
            Counts,
            Counts,
            Counts,
            Counts,
        ) = Default::default();
        let (mut bytes_in, mut bytes_out, mut connections): (Counts, Counts, Counts) =
            Default::default();
        let mut add_view = |frontend: &str, v: &BackendView| {
            let l = vec![
                ("frontend", frontend.to_owned()),
                ("backend", v.name.clone()),
            ];
            up.push((l.clone(), f64::from(u8::from(v.state == "UP"))));
            active.push((l.clone(), f64::from(v.active)));
            weight.push((l, v.effective_weight_16 as f64 / 16.0));
        };
        if let Some(h) = &self.http {
            for b in &h.backends {
                add_view("http", &b.pool);
                let l = vec![
                    ("frontend", "http".to_owned()),
                    ("backend", b.pool.name.clone()),
                ];
                requests.push((l.clone(), b.requests));
                let r = &b.responses;
                for (code, n) in [
                    ("1xx", r.xx1),
                    ("2xx", r.xx2),
                    ("3xx", r.xx3),
                    ("4xx", r.xx4),
                    ("5xx", r.xx5),
                ] {
                    let mut lc = l.clone();
                    lc.push(("code", code.to_owned()));
                    responses.push((lc, n));
                }
                errors.push((l.clone(), b.connect_errors + b.response_errors));
                retries.push((l.clone(), b.retries));
                bytes_in.push((l.clone(), b.bytes_in));
                bytes_out.push((l, b.bytes_out));
            }
        }
        for t in &self.tcp {
            for b in &t.backends {
                add_view(&t.name, &b.view);
                let l = vec![
                    ("frontend", t.name.clone()),
                    ("backend", b.view.name.clone()),
                ];
                connections.push((l.clone(), b.connections_total));
                errors.push((l.clone(), b.connect_errors));
                bytes_in.push((l.clone(), b.bytes_in));
                bytes_out.push((l, b.bytes_out));
            }
        }
        if self.http.is_none() && self.tcp.is_empty() {
            return Ok(());
        }
        out.gauges(
            "piha_backend_up",
            "1 if the backend is UP (in rotation)",
            &up,
        )?;
        out.gauges(
            "piha_backend_active",
            "Requests or connections in flight",
            &active,
        )?;
        out.gauges(
            "piha_backend_effective_weight",
            "Weight in effect (slow start ramps it)",
            &weight,
        )?;
        out.counters(
            "piha_backend_requests",
            "HTTP requests sent to the backend",
            &requests,
        )?;
        out.counters(
            "piha_backend_responses",
            "HTTP responses by class",
            &responses,
        )?;
        out.counters(
            "piha_backend_connection_errors",
            "Connect failures and resets before a response",
            &errors,
        )?;
        out.counters(
            "piha_backend_retries",
            "Requests moved to another backend after a failure here",
            &retries,
        )?;
        out.counters(
            "piha_backend_connections",
            "TCP connections proxied to the backend",
            &connections,
        )?;
        out.counters(
            "piha_backend_bytes_in",
            "Bytes from clients to the backend",
            &bytes_in,
        )?;
        out.counters(
            "piha_backend_bytes_out",
            "Bytes from the backend to clients",
            &bytes_out,
        )?;
        if let Some(h) = &self.http {
            self.latency(out, h)?;
            let f = &h.frontend;
            let rejected: Counts = [
                ("no_backend", f.unavailable.no_backend),
                ("queue_full", f.unavailable.queue_full),
                ("queue_timeout", f.unavailable.queue_timeout),
            ]
            .iter()
            .map(|(r, n)| (vec![("reason", (*r).to_owned())], *n))
            .collect();
            out.counters("piha_frontend_rejected", "503s by reason", &rejected)?;
            out.gauge(
                "piha_frontend_panic",
                "1 while no backend is up and requests go to those that still answer their checks",
                if f.panic { 1.0 } else { 0.0 },
            )?;
            out.counter(
                "piha_frontend_panic_requests",
                "Requests sent by panic routing (no backend up)",
                f.panic_requests,
            )?;
            out.counter(
                "piha_frontend_requests",
                "Requests received by the HTTP front end",
                f.requests,
            )?;
            out.gauge(
                "piha_frontend_connections_open",
                "Client connections open",
                f.connections_open as f64,
            )?;
            out.gauge(
                "piha_frontend_queued",
                "Requests waiting for a backend slot",
                f64::from(f.queued),
            )?;
        }
        Ok(())
    }

    fn latency(&self, out: &mut Out, h: &HttpStats) -> Result<(), std::fmt::Error> {
        let mut family = out.0.encode_descriptor(
            "piha_backend_response_latency_seconds",
            "Time to the backend's response head",
            None,
            MetricType::Histogram,
        )?;
        for b in &h.backends {
            let l = &b.latency;
            let buckets: Vec<(f64, u64)> = l
                .buckets
                .iter()
                .map(|k| {
                    (
                        k.le_ms.map_or(f64::INFINITY, |ms| ms as f64 / 1000.0),
                        k.count,
                    )
                })
                .collect();
            let labels = vec![
                ("frontend", "http".to_owned()),
                ("backend", b.pool.name.clone()),
            ];
            let sum = l.mean_ms * l.count as f64 / 1000.0;
            family
                .encode_family(&labels)?
                .encode_histogram::<prometheus_client::encoding::NoLabelSet>(
                    sum, l.count, &buckets, None,
                )?;
        }
        Ok(())
    }
}

/// The Postgres pooler: backends as the prober sees them, pools with their
/// connections and counters.
fn pooler(p: &PoolerView, out: &mut Out) -> Result<(), std::fmt::Error> {
    type Series = Vec<(Vec<(&'static str, String)>, f64)>;
    let backend = |b: &super::pooler::BackendRow| vec![("backend", b.name.clone())];
    let up: Series = p
        .backends
        .iter()
        .map(|b| {
            let mut l = backend(b);
            l.push(("role", b.role.to_owned()));
            (l, f64::from(u8::from(b.role != "down")))
        })
        .collect();
    out.gauges(
        "piha_pg_backend_up",
        "1 if the prober reaches the PostgreSQL server; role is primary, standby or down",
        &up,
    )?;
    let lag: Series = p
        .backends
        .iter()
        .filter_map(|b| b.lag_bytes.map(|l| (backend(b), l as f64)))
        .collect();
    out.gauges(
        "piha_pg_backend_lag_bytes",
        "Replay lag behind the primary (absent while unknown)",
        &lag,
    )?;
    let outstanding: Series = p
        .backends
        .iter()
        .map(|b| (backend(b), f64::from(b.outstanding)))
        .collect();
    out.gauges(
        "piha_pg_backend_outstanding",
        "Requests running on the server through the pooler",
        &outstanding,
    )?;
    let routed: Vec<_> = p
        .backends
        .iter()
        .map(|b| (backend(b), b.routed_total))
        .collect();
    out.counters(
        "piha_pg_backend_routed",
        "Requests the pooler routed to the server",
        &routed,
    )?;
    let redispatched: Vec<_> = p
        .backends
        .iter()
        .map(|b| (backend(b), b.redispatched_total))
        .collect();
    out.counters(
        "piha_pg_backend_redispatched",
        "Reads that could not get a connection to the server and went to another one",
        &redispatched,
    )?;
    let pool = |r: &super::pooler::PoolRow| {
        vec![("database", r.database.clone()), ("user", r.user.clone())]
    };
    let mut servers: Series = Vec::new();
    for r in &p.pools {
        for (state, n) in [
            ("active", r.active),
            ("idle", r.idle),
            ("connecting", r.connecting),
        ] {
            let mut l = pool(r);
            l.push(("state", state.to_owned()));
            servers.push((l, f64::from(n)));
        }
    }
    out.gauges(
        "piha_pg_pool_server_connections",
        "Server connections by pool and state",
        &servers,
    )?;
    let c = &p.clients;
    let clients: Series = [
        ("active", c.active),
        ("waiting", c.waiting),
        ("idle", c.idle),
    ]
    .iter()
    .map(|(state, n)| (vec![("state", (*state).to_owned())], f64::from(*n)))
    .collect();
    out.gauges(
        "piha_pg_pool_clients",
        "Logged-in client connections: active (holding a server), waiting (for one), idle",
        &clients,
    )?;
    let per_pool = |f: fn(&super::pooler::PoolRow) -> u64| -> Vec<_> {
        p.pools.iter().map(|r| (pool(r), f(r))).collect()
    };
    out.counters(
        "piha_pg_pool_transactions",
        "Transactions run through the pool",
        &per_pool(|r| r.transactions_total),
    )?;
    out.counters(
        "piha_pg_pool_queries",
        "Queries run through the pool",
        &per_pool(|r| r.queries_total),
    )?;
    let wait: Vec<_> = p
        .pools
        .iter()
        .map(|r| (pool(r), r.wait_seconds_total))
        .collect();
    out.counters(
        "piha_pg_pool_wait_seconds",
        "Time clients spent waiting for a server connection",
        &wait,
    )?;
    out.gauge(
        "piha_pg_pooler_paused",
        "1 while PAUSE (of everything) is in effect",
        f64::from(u8::from(p.paused)),
    )
}

/// The VRRP instance: its state as one series per state (so a dashboard
/// can graph "master" without parsing a label), priorities and RFC 6527's
/// counters.
fn vrrp(s: &VrrpStatus, out: &mut Out) -> Result<(), std::fmt::Error> {
    type Series = Vec<(Vec<(&'static str, String)>, f64)>;
    let vrid = || ("vrid", s.vrid.to_string());
    let states: Series = [
        VrrpState::Initialize,
        VrrpState::Backup,
        VrrpState::Master,
        VrrpState::Fault,
    ]
    .iter()
    .map(|st| {
        let l = vec![
            vrid(),
            ("interface", s.interface.clone()),
            ("state", st.name().to_owned()),
        ];
        (l, f64::from(u8::from(*st == s.state)))
    })
    .collect();
    out.gauges(
        "piha_vrrp_state",
        "1 for the instance's current state, 0 for the others",
        &states,
    )?;
    let priority: Series = [
        ("configured", s.configured_priority),
        ("effective", s.effective_priority),
    ]
    .iter()
    .map(|(kind, p)| (vec![vrid(), ("kind", (*kind).to_owned())], f64::from(*p)))
    .collect();
    out.gauges(
        "piha_vrrp_priority",
        "Priority configured, and in effect after tracking lowered it",
        &priority,
    )?;
    out.gauge(
        "piha_vrrp_master_interval_seconds",
        "The master's advert interval (learned from its adverts in VRRPv3)",
        s.master_interval_ms as f64 / 1000.0,
    )?;
    let c = &s.counters;
    out.counter("piha_vrrp_adverts_sent", "Adverts sent", c.adverts_sent)?;
    out.counter(
        "piha_vrrp_adverts_received",
        "Adverts accepted",
        c.adverts_received,
    )?;
    out.counter(
        "piha_vrrp_priority_zero_sent",
        "Priority-0 adverts sent (leaving master)",
        c.priority_zero_sent,
    )?;
    out.counter(
        "piha_vrrp_priority_zero_received",
        "Priority-0 adverts received (the master leaving)",
        c.priority_zero_received,
    )?;
    out.counter(
        "piha_vrrp_became_master",
        "Transitions to master",
        c.became_master,
    )?;
    out.counter(
        "piha_vrrp_announcements_sent",
        "Gratuitous ARP / unsolicited NA rounds for the VIPs",
        c.announcements_sent,
    )?;
    let dropped: Vec<_> = c
        .dropped
        .iter()
        .map(|(reason, n)| (vec![("reason", (*reason).to_owned())], *n))
        .collect();
    out.counters(
        "piha_vrrp_dropped",
        "Adverts dropped, by the check they failed",
        &dropped,
    )?;
    out.counter(
        "piha_vrrp_io_errors",
        "Sends, receives or netlink calls that failed",
        c.io_errors,
    )?;
    out.counter(
        "piha_vrrp_connections_reset",
        "Connections on the VIP reset as it left this node",
        c.connections_reset,
    )?;
    let track: Series = s
        .tracking
        .iter()
        .map(|(item, t)| (vec![("item", item.clone())], f64::from(u8::from(t.healthy))))
        .collect();
    out.gauges(
        "piha_vrrp_track_healthy",
        "1 while the tracked item is healthy; a failing one lowers the priority by its weight",
        &track,
    )
}

/// The db role: this node's PostgreSQL. The state as one series per state
/// (as for VRRP), WAL positions as plain numbers of bytes (a dashboard
/// subtracts two nodes' to get a lag), and the primary's view of each
/// standby.
fn db(s: &DbStatus, out: &mut Out) -> Result<(), std::fmt::Error> {
    type Series = Vec<(Vec<(&'static str, String)>, f64)>;
    let flag = |b: bool| f64::from(u8::from(b));
    out.gauge(
        "piha_db_up",
        "1 while this node's PostgreSQL is running normally (state running), 0 in any other state",
        flag(s.state == DbState::Running),
    )?;
    let states: Series = DbState::ALL
        .iter()
        .map(|st| (vec![("state", st.name().to_owned())], flag(*st == s.state)))
        .collect();
    out.gauges(
        "piha_db_state",
        "1 for the db role's current state, 0 for the others",
        &states,
    )?;
    out.gauge(
        "piha_db_is_primary",
        "1 while this node's PostgreSQL runs as the primary and takes writes",
        flag(s.state == DbState::Running && s.role == Some(DbRole::Primary)),
    )?;
    out.gauge(
        "piha_db_timeline",
        "The PostgreSQL timeline this node is on (it goes up by one at each promotion)",
        f64::from(s.timeline),
    )?;
    out.gauge(
        "piha_db_lsn_bytes",
        "WAL position: written on a primary, replayed on a standby",
        s.lsn as f64,
    )?;
    out.gauge(
        "piha_db_receive_lsn_bytes",
        "WAL received and flushed to disk by a standby (equal to the written position on a primary)",
        s.receive_lsn as f64,
    )?;
    if let Some(lag) = s.replay_lag_bytes {
        out.gauge(
            "piha_db_replay_lag_bytes",
            "Standby: WAL received but not yet replayed",
            lag as f64,
        )?;
    }
    if let Some(delay) = s.replay_delay_s {
        out.gauge(
            "piha_db_replay_delay_seconds",
            "Standby: time since the last replayed transaction committed on the primary (grows while the primary is idle)",
            delay,
        )?;
    }
    out.counter(
        "piha_db_restarts",
        "Times the PostgreSQL server was restarted after it died",
        u64::from(s.restarts),
    )?;
    out.gauge(
        "piha_db_quorum",
        "1 while this node sees a majority of the cluster's voters; a primary without it stops taking writes",
        flag(s.quorum),
    )?;
    let replicas: Series = s
        .replicas
        .iter()
        .filter_map(|r| {
            r.lag_bytes
                .map(|l| (vec![("replica", r.name.clone())], l as f64))
        })
        .collect();
    out.gauges(
        "piha_db_replica_lag_bytes",
        "Primary: how far each standby's replay is behind the primary's WAL position (absent while unknown)",
        &replicas,
    )
}

/// From /proc/self/statm (pages); `None` where there is no procfs.
fn resident_memory_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * rustix::param::page_size() as u64)
}

/// Used by tests and `piha status` to read a single value back.
pub fn find_value(text: &str, metric_with_labels: &str) -> Option<f64> {
    text.lines()
        .find(|l| {
            l.starts_with(metric_with_labels) && l[metric_with_labels.len()..].starts_with(' ')
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// Only the pooler's families, from a view built by hand.
    #[derive(Debug)]
    struct OnlyPooler(PoolerView);

    impl Collector for OnlyPooler {
        fn encode(&self, encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
            pooler(&self.0, &mut Out(encoder))
        }
    }

    fn encode(collector: impl Collector + 'static) -> String {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(collector));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encode");
        text
    }

    #[test]
    fn pooler_series_are_named_and_labelled_as_documented() {
        let text = encode(OnlyPooler(super::super::pooler::tests::sample_view()));
        for (series, value) in [
            (r#"piha_pg_backend_up{backend="pg-1",role="primary"}"#, 1.0),
            (r#"piha_pg_backend_up{backend="pg-2",role="down"}"#, 0.0),
            (r#"piha_pg_backend_lag_bytes{backend="pg-1"}"#, 0.0),
            (r#"piha_pg_backend_routed_total{backend="pg-1"}"#, 7.0),
            (r#"piha_pg_backend_redispatched_total{backend="pg-1"}"#, 2.0),
            (
                r#"piha_pg_pool_server_connections{database="app",user="app",state="idle"}"#,
                2.0,
            ),
            (r#"piha_pg_pool_clients{state="waiting"}"#, 1.0),
            (
                r#"piha_pg_pool_transactions_total{database="app",user="app"}"#,
                5.0,
            ),
            (
                r#"piha_pg_pool_queries_total{database="app",user="app"}"#,
                9.0,
            ),
            (
                r#"piha_pg_pool_wait_seconds_total{database="app",user="app"}"#,
                1.5,
            ),
            ("piha_pg_pooler_paused", 0.0),
        ] {
            assert_eq!(find_value(&text, series), Some(value), "{series}\n{text}");
        }
        // A lag nobody knows is left out rather than made up.
        assert!(!text.contains(r#"piha_pg_backend_lag_bytes{backend="pg-2"}"#));
    }

    /// Only the VRRP families, from a snapshot built by hand.
    #[derive(Debug)]
    struct OnlyVrrp(VrrpStatus);

    impl Collector for OnlyVrrp {
        fn encode(&self, encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
            vrrp(&self.0, &mut Out(encoder))
        }
    }

    #[test]
    fn vrrp_series_are_named_and_labelled_as_documented() {
        let text = encode(OnlyVrrp(super::super::vrrp::tests::sample()));
        let state =
            |s: &str| format!(r#"piha_vrrp_state{{vrid="51",interface="eth0",state="{s}"}}"#);
        for (series, value) in [
            (state("initialize"), 0.0),
            (state("backup"), 0.0),
            (state("master"), 1.0),
            (state("fault"), 0.0),
            (
                r#"piha_vrrp_priority{vrid="51",kind="configured"}"#.into(),
                150.0,
            ),
            (
                r#"piha_vrrp_priority{vrid="51",kind="effective"}"#.into(),
                90.0,
            ),
            ("piha_vrrp_master_interval_seconds".into(), 1.0),
            ("piha_vrrp_adverts_sent_total".into(), 1234.0),
            ("piha_vrrp_adverts_received_total".into(), 56.0),
            ("piha_vrrp_priority_zero_sent_total".into(), 1.0),
            ("piha_vrrp_priority_zero_received_total".into(), 3.0),
            ("piha_vrrp_became_master_total".into(), 4.0),
            ("piha_vrrp_announcements_sent_total".into(), 20.0),
            (
                r#"piha_vrrp_dropped_total{reason="bad_checksum"}"#.into(),
                2.0,
            ),
            (
                r#"piha_vrrp_dropped_total{reason="not_a_peer"}"#.into(),
                1.0,
            ),
            // Reasons that never happened are there too, at 0, so a rate()
            // starts from the first drop rather than from its second.
            (r#"piha_vrrp_dropped_total{reason="bad_ttl"}"#.into(), 0.0),
            (
                r#"piha_vrrp_dropped_total{reason="auth_mismatch"}"#.into(),
                0.0,
            ),
            ("piha_vrrp_io_errors_total".into(), 7.0),
            ("piha_vrrp_connections_reset_total".into(), 2.0),
            (r#"piha_vrrp_track_healthy{item="http"}"#.into(), 0.0),
            (r#"piha_vrrp_track_healthy{item="pooler"}"#.into(), 1.0),
        ] {
            assert_eq!(find_value(&text, &series), Some(value), "{series}\n{text}");
        }
        assert_eq!(
            text.lines()
                .filter(|l| l.starts_with("piha_vrrp_state{"))
                .count(),
            4,
            "one series per state:\n{text}"
        );
        assert!(text.contains("# TYPE piha_vrrp_dropped counter"), "{text}");
        assert!(text.contains("# TYPE piha_vrrp_state gauge"), "{text}");
    }

    /// Only the db families, from a status built by hand.
    #[derive(Debug)]
    struct OnlyDb(DbStatus);

    impl Collector for OnlyDb {
        fn encode(&self, encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
            db(&self.0, &mut Out(encoder))
        }
    }

    #[test]
    fn db_series_are_named_and_labelled_as_documented() {
        let text = encode(OnlyDb(super::super::db::tests::sample()));
        let state = |s: &str| format!(r#"piha_db_state{{state="{s}"}}"#);
        for (series, value) in [
            ("piha_db_up".to_owned(), 1.0),
            (state("running"), 1.0),
            (state("fenced"), 0.0),
            (state("preparing"), 0.0),
            ("piha_db_is_primary".into(), 1.0),
            ("piha_db_timeline".into(), 2.0),
            ("piha_db_lsn_bytes".into(), 12_884_901_984.0),
            ("piha_db_receive_lsn_bytes".into(), 12_884_901_984.0),
            ("piha_db_restarts_total".into(), 1.0),
            ("piha_db_quorum".into(), 1.0),
            (r#"piha_db_replica_lag_bytes{replica="pi-2"}"#.into(), 0.0),
        ] {
            assert_eq!(find_value(&text, &series), Some(value), "{series}\n{text}");
        }
        assert_eq!(
            text.lines()
                .filter(|l| l.starts_with("piha_db_state{"))
                .count(),
            DbState::ALL.len(),
            "one series per state:\n{text}"
        );
        // A lag nobody knows is left out, as are a standby's figures on a
        // primary.
        assert!(!text.contains(r#"replica="pi-3""#), "{text}");
        assert!(!text.contains("piha_db_replay_"), "{text}");
        assert!(text.contains("# TYPE piha_db_restarts counter"), "{text}");
        every_family_has_help(&text, 4);

        // A fenced standby behind its primary.
        let mut s = super::super::db::tests::sample();
        s.state = DbState::Fenced;
        s.role = Some(DbRole::Standby);
        s.replay_lag_bytes = Some(4096);
        s.replay_delay_s = Some(2.5);
        s.quorum = false;
        s.replicas.clear();
        let text = encode(OnlyDb(s));
        for (series, value) in [
            ("piha_db_up".to_owned(), 0.0),
            (state("running"), 0.0),
            (state("fenced"), 1.0),
            ("piha_db_is_primary".into(), 0.0),
            ("piha_db_replay_lag_bytes".into(), 4096.0),
            ("piha_db_replay_delay_seconds".into(), 2.5),
            ("piha_db_quorum".into(), 0.0),
        ] {
            assert_eq!(find_value(&text, &series), Some(value), "{series}\n{text}");
        }
        assert!(!text.contains("piha_db_replica_lag_bytes{"), "{text}");
        every_family_has_help(&text, 4);
    }

    /// Every `# TYPE` has a `# HELP` of at least `min_words` words.
    pub(in crate::status) fn every_family_has_help(text: &str, min_words: usize) {
        for family in text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split(' ').next())
        {
            let help = text
                .lines()
                .find_map(|l| l.strip_prefix(&format!("# HELP {family} ")))
                .unwrap_or_else(|| panic!("{family} has no HELP:\n{text}"));
            assert!(
                help.split_whitespace().count() >= min_words,
                "{family}: {help:?}"
            );
        }
    }
}
