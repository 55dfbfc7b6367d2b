//! System metrics: CPU, load, memory, disks, temperature, uptime, network,
//! sampled every few seconds into the store and into an in-memory hour of
//! history for the status page's charts.
//!
//! Sampling runs on a blocking thread under a deadline: a disk stat on a hung
//! FUSE mount (a Gluster volume whose bricks are gone) can block forever, and
//! that must cost a missed sample, not a stuck node.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::json;
use sysinfo::{Components, Networks, System};

use super::context::NodeContext;
use super::events::now_ms;

/// The series kept for the charts, in this order in every history point.
pub const SERIES: [&str; 5] = [
    "cpu_percent",
    "memory_percent",
    "temperature_c",
    "net_rx_bytes_per_s",
    "net_tx_bytes_per_s",
];
const HISTORY: Duration = Duration::from_secs(3600);
const SAMPLE_DEADLINE: Duration = Duration::from_secs(3);

#[derive(Debug, Clone, Serialize)]
pub struct SystemSample {
    pub at_ms: i64,
    pub cpu_percent: f64,
    pub load: [f64; 3],
    pub memory_used_bytes: u64,
    pub memory_total_bytes: u64,
    /// `None` where the machine has no readable sensor (most VMs).
    pub temperature_c: Option<f64>,
    pub uptime_s: u64,
    pub net_rx_bytes_per_s: f64,
    pub net_tx_bytes_per_s: f64,
    /// Totals since boot, for Prometheus counters.
    pub net_rx_bytes_total: u64,
    pub net_tx_bytes_total: u64,
    pub disks: Vec<DiskUsage>,
}

impl SystemSample {
    pub fn memory_percent(&self) -> f64 {
        percent(self.memory_used_bytes, self.memory_total_bytes)
    }

    fn series_values(&self) -> [Option<f64>; 5] {
        [
            Some(self.cpu_percent),
            Some(self.memory_percent()),
            self.temperature_c,
            Some(self.net_rx_bytes_per_s),
            Some(self.net_tx_bytes_per_s),
        ]
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct DiskUsage {
    pub mount: String,
    pub used_bytes: u64,
    pub total_bytes: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct HistoryPoint {
    pub at_ms: i64,
    pub values: [Option<f64>; 5],
}

/// What the status API and heartbeats read.
#[derive(Debug, Clone, Default)]
pub struct SystemView {
    pub latest: Option<SystemSample>,
    /// Oldest first, at most an hour.
    pub history: VecDeque<HistoryPoint>,
}

impl SystemView {
    fn push(&mut self, point: HistoryPoint) {
        let horizon = point.at_ms - HISTORY.as_millis() as i64;
        self.history.push_back(point);
        while self.history.front().is_some_and(|p| p.at_ms < horizon) {
            self.history.pop_front();
        }
    }
}

pub fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}

/// Runs until shutdown: preloads the last hour from the store, then samples.
pub async fn run(ctx: Arc<NodeContext>) -> anyhow::Result<()> {
    preload_history(&ctx).await;
    let data_dir = ctx.identity.data_dir.clone();
    let mut sampler = Some(Sampler::new(data_dir.clone()));
    let mut hung_reported = false;
    loop {
        let interval = ctx.running().config.metrics.sample_interval;
        let taken = sampler
            .take()
            .unwrap_or_else(|| Sampler::new(data_dir.clone()));
        let job = tokio::task::spawn_blocking(move || {
            let mut s = taken;
            let sample = s.sample();
            (s, sample)
        });
        match tokio::time::timeout(SAMPLE_DEADLINE, job).await {
            Ok(Ok((s, sample))) => {
                sampler = Some(s);
                hung_reported = false;
                record(&ctx, sample);
            }
            Ok(Err(e)) => anyhow::bail!("sampling failed: {e}"),
            Err(_) if !hung_reported => {
                hung_reported = true;
                ctx.events.warning(
                    "metrics",
                    "system metrics sample took over 3 s (a hung mount?); skipping it",
                    json!({}),
                );
            }
            Err(_) => {}
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = ctx.shutdown.cancelled() => return Ok(()),
        }
    }
}

fn record(ctx: &NodeContext, sample: SystemSample) {
    let values = sample.series_values();
    let stored: Vec<(&str, f64)> = SERIES
        .iter()
        .zip(values)
        .filter_map(|(name, v)| v.map(|v| (*name, v)))
        .chain([("load1", sample.load[0])])
        .collect();
    ctx.store.record_samples(sample.at_ms, &stored);
    let point = HistoryPoint {
        at_ms: sample.at_ms,
        values,
    };
    ctx.system.send_modify(|view| {
        let view = Arc::make_mut(view);
        view.push(point);
        view.latest = Some(sample);
    });
}

/// The chart survives a restart: the last hour comes back from the store.
async fn preload_history(ctx: &NodeContext) {
    let since = now_ms() - HISTORY.as_millis() as i64;
    let samples = match ctx.store.samples_since(since).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!("could not load metric history: {e}");
            return;
        }
    };
    let mut points: Vec<HistoryPoint> = Vec::new();
    for s in samples {
        let Some(idx) = SERIES.iter().position(|n| *n == s.series) else {
            continue;
        };
        if points.last().is_none_or(|p| p.at_ms != s.at_ms) {
            points.push(HistoryPoint {
                at_ms: s.at_ms,
                values: [None; 5],
            });
        }
        if let Some(p) = points.last_mut() {
            p.values[idx] = Some(s.value);
        }
    }
    ctx.system.send_modify(|view| {
        let view = Arc::make_mut(view);
        for p in points {
            view.push(p);
        }
    });
}

/// Owns sysinfo's state between samples (CPU usage and network rates are
/// differences to the previous refresh).
struct Sampler {
    system: System,
    networks: Networks,
    components: Components,
    data_dir: PathBuf,
    last_net: Option<(Instant, u64, u64)>,
}

impl Sampler {
    fn new(data_dir: PathBuf) -> Sampler {
        let mut system = System::new();
        system.refresh_cpu_usage();
        Sampler {
            system,
            networks: Networks::new_with_refreshed_list(),
            components: Components::new_with_refreshed_list(),
            data_dir,
            last_net: None,
        }
    }

    fn sample(&mut self) -> SystemSample {
        self.system.refresh_cpu_usage();
        self.system.refresh_memory();
        let load = System::load_average();
        let (rx_rate, tx_rate, rx_total, tx_total) = self.network();
        SystemSample {
            at_ms: now_ms(),
            cpu_percent: f64::from(self.system.global_cpu_usage()),
            load: [load.one, load.five, load.fifteen],
            memory_used_bytes: self.system.used_memory(),
            memory_total_bytes: self.system.total_memory(),
            temperature_c: self.temperature(),
            uptime_s: System::uptime(),
            net_rx_bytes_per_s: rx_rate,
            net_tx_bytes_per_s: tx_rate,
            net_rx_bytes_total: rx_total,
            net_tx_bytes_total: tx_total,
            disks: disks(&self.data_dir),
        }
    }

    /// Rates over every interface but loopback, since the previous sample.
    fn network(&mut self) -> (f64, f64, u64, u64) {
        self.networks.refresh(true);
        let (rx, tx) = self
            .networks
            .iter()
            .filter(|(name, _)| name.as_str() != "lo")
            .fold((0u64, 0u64), |(rx, tx), (_, data)| {
                (
                    rx.saturating_add(data.total_received()),
                    tx.saturating_add(data.total_transmitted()),
                )
            });
        let now = Instant::now();
        let rates = match self.last_net {
            Some((then, prx, ptx)) => {
                let secs = now.duration_since(then).as_secs_f64().max(0.001);
                (
                    rx.saturating_sub(prx) as f64 / secs,
                    tx.saturating_sub(ptx) as f64 / secs,
                )
            }
            None => (0.0, 0.0),
        };
        self.last_net = Some((now, rx, tx));
        (rates.0, rates.1, rx, tx)
    }

    /// The SoC sensor on a Pi is `cpu_thermal`; elsewhere take the CPU
    /// package sensor, and finally the kernel's first thermal zone.
    fn temperature(&mut self) -> Option<f64> {
        self.components.refresh(true);
        let preferred = ["cpu_thermal", "soc", "package", "tctl", "coretemp"];
        let by_label = preferred.iter().find_map(|want| {
            self.components
                .iter()
                .find(|c| c.label().to_lowercase().contains(want))
                .and_then(|c| c.temperature())
        });
        by_label
            .map(f64::from)
            .or_else(|| thermal_zone(Path::new("/sys/class/thermal/thermal_zone0/temp")))
    }
}

fn thermal_zone(path: &Path) -> Option<f64> {
    let text = std::fs::read_to_string(path).ok()?;
    let millis: f64 = text.trim().parse().ok()?;
    Some(millis / 1000.0)
}

/// The root file system and the one holding the data directory (the same
/// one on a default Pi: then shown once).
fn disks(data_dir: &Path) -> Vec<DiskUsage> {
    let mut out: Vec<DiskUsage> = Vec::new();
    let mut seen_devices = Vec::new();
    for (label, path) in [("/", Path::new("/")), ("data", data_dir)] {
        let Ok(meta) = std::fs::metadata(path) else {
            continue;
        };
        let dev = std::os::unix::fs::MetadataExt::dev(&meta);
        if seen_devices.contains(&dev) {
            continue;
        }
        seen_devices.push(dev);
        let Ok(st) = rustix::fs::statvfs(path) else {
            continue;
        };
        let total = st.f_blocks.saturating_mul(st.f_frsize);
        let free = st.f_bfree.saturating_mul(st.f_frsize);
        let mount = if label == "/" {
            "/".to_owned()
        } else {
            path.display().to_string()
        };
        out.push(DiskUsage {
            mount,
            used_bytes: total.saturating_sub(free),
            total_bytes: total,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_keeps_one_hour() {
        let mut view = SystemView::default();
        for i in 0..1000i64 {
            view.push(HistoryPoint {
                at_ms: i * 5000,
                values: [Some(1.0); 5],
            });
        }
        let span = view.history.back().map(|p| p.at_ms).unwrap_or(0)
            - view.history.front().map(|p| p.at_ms).unwrap_or(0);
        assert!(span <= 3_600_000, "span {span}");
        assert_eq!(view.history.len(), 721);
    }

    #[test]
    fn a_real_sample_is_plausible() {
        let dir = std::env::temp_dir();
        let mut s = Sampler::new(dir.clone());
        let sample = s.sample();
        assert!(sample.memory_total_bytes > 0);
        assert!(sample.memory_used_bytes <= sample.memory_total_bytes);
        assert!((0.0..=100.0).contains(&sample.cpu_percent));
        assert!(sample.uptime_s > 0);
        assert!(
            sample
                .disks
                .iter()
                .any(|d| d.mount == "/" && d.total_bytes > 0)
        );
    }

    #[test]
    fn thermal_zone_reads_millidegrees() {
        let dir = std::env::temp_dir().join(format!("piha-tz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("temp");
        std::fs::write(&f, "48312\n").unwrap();
        assert_eq!(thermal_zone(&f), Some(48.312));
        std::fs::write(&f, "garbage").unwrap();
        assert_eq!(thermal_zone(&f), None);
        let _ = std::fs::remove_dir_all(dir);
    }
}
