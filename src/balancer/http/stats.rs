//! Counters in the spirit of HAProxy's stats page, kept with atomics so the
//! request path never takes the pool's lock to count: per backend (requests,
//! responses by class, connection errors, retries, bytes, a 10-second request
//! rate, a response-time histogram) and for the front end (requests, local
//! answers by reason, connections). `HttpStats` is the serializable snapshot.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde::Serialize;

use crate::balancer::pool::BackendView;
use crate::node::coarse_clock;

/// Upper bounds of the latency buckets, in milliseconds; one more bucket
/// holds everything slower. Fixed, so a snapshot is a plain array copy.
pub const BUCKETS_MS: [u64; 13] = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000];

/// Seconds of history behind `rate_10s`.
const RATE_WINDOW: usize = 10;

fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

fn get(c: &AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

/// Responses by status class.
#[derive(Debug, Default)]
pub struct ClassCounters([AtomicU64; 5]);

impl ClassCounters {
    pub fn record(&self, status: u16) {
        let i = usize::from((status / 100).clamp(1, 5)) - 1;
        add(&self.0[i], 1);
    }

    fn snapshot(&self) -> Classes {
        Classes {
            xx1: get(&self.0[0]),
            xx2: get(&self.0[1]),
            xx3: get(&self.0[2]),
            xx4: get(&self.0[3]),
            xx5: get(&self.0[4]),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Classes {
    #[serde(rename = "1xx")]
    pub xx1: u64,
    #[serde(rename = "2xx")]
    pub xx2: u64,
    #[serde(rename = "3xx")]
    pub xx3: u64,
    #[serde(rename = "4xx")]
    pub xx4: u64,
    #[serde(rename = "5xx")]
    pub xx5: u64,
}

/// Requests per second over the last ten seconds: one counter per second in
/// a ring, each stamped with its second so stale slots read as zero. Two
/// threads crossing a second boundary together may lose a count; a rate
/// shown to a human does not need more.
#[derive(Debug)]
pub struct RateWindow {
    counts: [AtomicU64; RATE_WINDOW],
    stamps: [AtomicU64; RATE_WINDOW],
}

impl Default for RateWindow {
    fn default() -> Self {
        RateWindow {
            counts: Default::default(),
            // u64::MAX: never a real second, so an untouched slot is stale.
            stamps: std::array::from_fn(|_| AtomicU64::new(u64::MAX)),
        }
    }
}

impl RateWindow {
    pub fn record(&self, second: u64) {
        let i = (second % RATE_WINDOW as u64) as usize;
        let stamp = self.stamps[i].load(Ordering::Acquire);
        if stamp != second
            && self.stamps[i]
                .compare_exchange(stamp, second, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            self.counts[i].store(0, Ordering::Release);
        }
        add(&self.counts[i], 1);
    }

    /// Average per second over the window ending at `second` (inclusive).
    pub fn per_second(&self, second: u64) -> f64 {
        let oldest = second.saturating_sub(RATE_WINDOW as u64 - 1);
        let total: u64 = (0..RATE_WINDOW)
            .filter(|&i| {
                let s = self.stamps[i].load(Ordering::Acquire);
                s != u64::MAX && s >= oldest && s <= second
            })
            .map(|i| get(&self.counts[i]))
            .sum();
        total as f64 / RATE_WINDOW as f64
    }
}

/// Response times in fixed buckets; percentiles are interpolated within the
/// bucket they fall in, which is as precise as the bucket edges.
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS_MS.len() + 1],
    sum_us: AtomicU64,
}

impl Histogram {
    pub fn record(&self, d: Duration) {
        let ms = d.as_secs_f64() * 1000.0;
        let i = BUCKETS_MS
            .iter()
            .position(|&b| ms <= b as f64)
            .unwrap_or(BUCKETS_MS.len());
        add(&self.buckets[i], 1);
        add(&self.sum_us, d.as_micros().min(u128::from(u64::MAX)) as u64);
    }

    pub fn snapshot(&self) -> Latency {
        let counts: Vec<u64> = self.buckets.iter().map(get).collect();
        let count: u64 = counts.iter().sum();
        let mean_ms = if count == 0 {
            0.0
        } else {
            get(&self.sum_us) as f64 / count as f64 / 1000.0
        };
        Latency {
            count,
            mean_ms,
            p50_ms: percentile(&counts, 0.50),
            p90_ms: percentile(&counts, 0.90),
            p99_ms: percentile(&counts, 0.99),
            buckets: counts
                .iter()
                .enumerate()
                .map(|(i, &count)| Bucket {
                    le_ms: BUCKETS_MS.get(i).copied(),
                    count,
                })
                .collect(),
        }
    }
}

/// The `q` quantile (0..1) in ms; 0 with no samples. Past the last bound it
/// says the last bound: "at least 10 s" is all the buckets know.
fn percentile(counts: &[u64], q: f64) -> f64 {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return 0.0;
    }
    let rank = (q * total as f64).max(1.0);
    let mut below = 0u64;
    for (i, &c) in counts.iter().enumerate() {
        if c > 0 && (below + c) as f64 >= rank {
            let Some(&hi) = BUCKETS_MS.get(i) else {
                return BUCKETS_MS[BUCKETS_MS.len() - 1] as f64;
            };
            let lo = if i == 0 { 0 } else { BUCKETS_MS[i - 1] };
            let frac = (rank - below as f64) / c as f64;
            return lo as f64 + frac * (hi - lo) as f64;
        }
        below += c;
    }
    BUCKETS_MS[BUCKETS_MS.len() - 1] as f64
}

#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    pub count: u64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    /// Count per bucket; `le_ms` null is the overflow bucket.
    pub buckets: Vec<Bucket>,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct Bucket {
    pub le_ms: Option<u64>,
    pub count: u64,
}

/// Everything counted about one backend.
#[derive(Debug, Default)]
pub struct BackendCounters {
    pub requests: AtomicU64,
    pub responses: ClassCounters,
    /// TCP connect failed or timed out.
    pub connect_errors: AtomicU64,
    /// The connection broke or closed before the response head.
    pub response_errors: AtomicU64,
    /// No response head within `server_timeout` (504).
    pub timeouts: AtomicU64,
    /// Requests that failed here and were retried on another backend.
    pub retries: AtomicU64,
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    pub rate: RateWindow,
    /// Request sent to response head received.
    pub latency: Histogram,
}

/// The front end: what clients saw, whichever backend (if any) served them.
#[derive(Debug, Default)]
pub struct FrontCounters {
    pub requests: AtomicU64,
    pub responses: ClassCounters,
    pub connections_open: AtomicU64,
    pub connections_total: AtomicU64,
    /// 503s, by why no backend could be had.
    pub no_backend: AtomicU64,
    pub queue_full: AtomicU64,
    pub queue_timeout: AtomicU64,
    /// Malformed or smuggling-shaped requests (400), including those hyper
    /// answered before any service saw them.
    pub bad_requests: AtomicU64,
    pub too_large: AtomicU64,
    pub bad_gateway: AtomicU64,
    pub gateway_timeout: AtomicU64,
    pub retries: AtomicU64,
    pub tls_handshake_failures: AtomicU64,
    /// Connections closed for idling or stalling past their timeouts.
    pub timed_out_connections: AtomicU64,
    pub rate: RateWindow,
}

/// All counters of one HTTP balancer.
#[derive(Debug)]
pub struct Stats {
    pub front: FrontCounters,
    backends: RwLock<HashMap<SocketAddr, Arc<BackendCounters>>>,
    /// When these stats began, on the coarse clock (two reads per request
    /// ask for the current second).
    epoch_ms: u64,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            front: FrontCounters::default(),
            backends: RwLock::default(),
            epoch_ms: coarse_clock::now_ms(),
        }
    }
}

impl Stats {
    /// Seconds since these stats began, the clock of the rate windows.
    pub fn second(&self) -> u64 {
        coarse_clock::now_ms().saturating_sub(self.epoch_ms) / 1000
    }

    /// The counters of `addr`, made on first use.
    pub fn backend(&self, addr: SocketAddr) -> Arc<BackendCounters> {
        if let Some(c) = self
            .backends
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&addr)
        {
            return c.clone();
        }
        self.backends
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .entry(addr)
            .or_default()
            .clone()
    }

    /// A snapshot joined with the pool's view; counters of backends the pool
    /// no longer has are dropped here, so memory follows the backend set.
    pub fn snapshot(&self, views: Vec<BackendView>, queued: u32) -> HttpStats {
        let second = self.second();
        let mut map = self.backends.write().unwrap_or_else(|p| p.into_inner());
        map.retain(|addr, _| views.iter().any(|v| v.addr == *addr));
        let backends = views
            .into_iter()
            .map(|view| {
                let c = map.get(&view.addr).cloned().unwrap_or_default();
                BackendStats {
                    requests: get(&c.requests),
                    responses: c.responses.snapshot(),
                    connect_errors: get(&c.connect_errors),
                    response_errors: get(&c.response_errors),
                    timeouts: get(&c.timeouts),
                    retries: get(&c.retries),
                    bytes_in: get(&c.bytes_in),
                    bytes_out: get(&c.bytes_out),
                    rate_10s: c.rate.per_second(second),
                    latency: c.latency.snapshot(),
                    pool: view,
                }
            })
            .collect();
        drop(map);
        let f = &self.front;
        HttpStats {
            frontend: FrontendStats {
                requests: get(&f.requests),
                rate_10s: f.rate.per_second(second),
                responses: f.responses.snapshot(),
                connections_open: get(&f.connections_open),
                connections_total: get(&f.connections_total),
                queued,
                unavailable: Unavailable {
                    no_backend: get(&f.no_backend),
                    queue_full: get(&f.queue_full),
                    queue_timeout: get(&f.queue_timeout),
                },
                bad_requests: get(&f.bad_requests),
                too_large: get(&f.too_large),
                bad_gateway: get(&f.bad_gateway),
                gateway_timeout: get(&f.gateway_timeout),
                retries: get(&f.retries),
                tls_handshake_failures: get(&f.tls_handshake_failures),
                timed_out_connections: get(&f.timed_out_connections),
                // The pool knows these; `Handle::stats` fills them in.
                panic: false,
                panic_requests: 0,
            },
            backends,
        }
    }
}

/// What the status page and the admin API show of the HTTP balancer.
#[derive(Debug, Clone, Serialize)]
pub struct HttpStats {
    pub frontend: FrontendStats,
    pub backends: Vec<BackendStats>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FrontendStats {
    pub requests: u64,
    pub rate_10s: f64,
    /// Every answer clients got, proxied or local.
    pub responses: Classes,
    pub connections_open: u64,
    pub connections_total: u64,
    /// Requests waiting for a backend slot now.
    pub queued: u32,
    /// 503s by reason.
    pub unavailable: Unavailable,
    pub bad_requests: u64,
    pub too_large: u64,
    pub bad_gateway: u64,
    pub gateway_timeout: u64,
    pub retries: u64,
    pub tls_handshake_failures: u64,
    pub timed_out_connections: u64,
    /// Panic routing is on: no backend is up, and requests go to those
    /// that still answer their checks (`PoolSettings::panic`).
    pub panic: bool,
    /// Requests panic routing has sent since the start.
    pub panic_requests: u64,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct Unavailable {
    pub no_backend: u64,
    pub queue_full: u64,
    pub queue_timeout: u64,
}

/// One backend: the pool's view (state, weight, active, last check) and
/// what was counted.
#[derive(Debug, Clone, Serialize)]
pub struct BackendStats {
    #[serde(flatten)]
    pub pool: BackendView,
    pub requests: u64,
    pub responses: Classes,
    pub connect_errors: u64,
    pub response_errors: u64,
    pub timeouts: u64,
    pub retries: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub rate_10s: f64,
    pub latency: Latency,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_fall_in_the_right_buckets() {
        let h = Histogram::default();
        for _ in 0..90 {
            h.record(Duration::from_micros(1500)); // (1, 2] ms
        }
        for _ in 0..9 {
            h.record(Duration::from_millis(40)); // (20, 50]
        }
        h.record(Duration::from_secs(30)); // overflow
        let l = h.snapshot();
        assert_eq!(l.count, 100);
        assert!((1.0..=2.0).contains(&l.p50_ms), "{}", l.p50_ms);
        assert!((1.0..=2.0).contains(&l.p90_ms), "{}", l.p90_ms);
        assert!((20.0..=50.0).contains(&l.p99_ms), "{}", l.p99_ms);
        assert_eq!(
            l.buckets.last().map(|b| (b.le_ms, b.count)),
            Some((None, 1))
        );
        assert_eq!(Histogram::default().snapshot().p99_ms, 0.0);
    }

    #[test]
    fn rate_counts_the_last_ten_seconds_only() {
        let r = RateWindow::default();
        for s in 0..10 {
            for _ in 0..5 {
                r.record(s);
            }
        }
        assert_eq!(r.per_second(9), 5.0);
        // Ten seconds later, the slot of second 0 is reused, not added to.
        r.record(10);
        assert_eq!(r.per_second(10), (9.0 * 5.0 + 1.0) / 10.0);
        assert_eq!(r.per_second(100), 0.0);
    }

    #[test]
    fn classes_are_counted_by_hundreds() {
        let c = ClassCounters::default();
        for s in [101, 200, 204, 302, 404, 503, 599] {
            c.record(s);
        }
        let s = c.snapshot();
        assert_eq!((s.xx1, s.xx2, s.xx3, s.xx4, s.xx5), (1, 2, 1, 1, 2));
    }
}
