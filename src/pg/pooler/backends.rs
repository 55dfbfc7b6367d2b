//! The PostgreSQL servers the pooler routes to, with what the prober last
//! learned about each: up or down, primary or standby, how far it has
//! replayed. Routing reads only this; it never connects to find out.

use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Instant;

use super::route::Target;
use super::settings::BackendAddr;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PgRole {
    Primary,
    Standby,
}

impl PgRole {
    pub fn name(self) -> &'static str {
        match self {
            PgRole::Primary => "primary",
            PgRole::Standby => "standby",
        }
    }
}

/// What the last probes said.
#[derive(Debug, Clone)]
pub struct Probed {
    /// `None` until the first probe answers, and after `fall` failures.
    pub role: Option<PgRole>,
    /// Current WAL LSN on a primary, last replayed LSN on a standby.
    pub lsn: u64,
    /// Failed probes in a row.
    pub failures: u32,
    pub last_error: Option<String>,
    pub last_ok: Option<Instant>,
    /// Round trip of the last good probe.
    pub probe_ms: f64,
}

pub struct Backend {
    pub name: String,
    pub addr: SocketAddr,
    pub probed: Mutex<Probed>,
    /// Queries running on it through this pooler: the "least outstanding"
    /// of read balancing.
    pub outstanding: AtomicU32,
    /// Statements routed here, for SHOW STATS and /metrics.
    pub routed: AtomicU64,
    /// Reads routed here that could not get a connection (the server was
    /// unreachable, broke off or was starting or stopping) and went to
    /// another server instead: HAProxy's per-server redispatches. A count
    /// that climbs names a standby that keeps failing between probes.
    pub redispatched: AtomicU64,
    /// Lag behind the primary in bytes, as of the last probe round (u64::MAX
    /// when unknown).
    pub lag_bytes: AtomicU64,
    /// Set by the failover decider when it declares this server's primary
    /// dead: writes never go to it again, even if it comes back saying it
    /// is primary, until it has rejoined as a standby (or a switchover
    /// makes it primary on purpose).
    pub fenced: AtomicBool,
}

impl Backend {
    pub fn new(b: &BackendAddr) -> Backend {
        Backend {
            name: b.name.clone(),
            addr: b.addr,
            probed: Mutex::new(Probed {
                role: None,
                lsn: 0,
                failures: 0,
                last_error: None,
                last_ok: None,
                probe_ms: 0.0,
            }),
            outstanding: AtomicU32::new(0),
            routed: AtomicU64::new(0),
            redispatched: AtomicU64::new(0),
            lag_bytes: AtomicU64::new(u64::MAX),
            fenced: AtomicBool::new(false),
        }
    }

    pub fn snapshot(&self) -> Probed {
        lock(&self.probed).clone()
    }

    pub fn role(&self) -> Option<PgRole> {
        lock(&self.probed).role
    }

    /// Whether a probe has answered or failed yet: false only from the
    /// node's start until its first probe of this server ends.
    pub fn probed_yet(&self) -> bool {
        let p = lock(&self.probed);
        p.role.is_some() || p.failures > 0
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic elsewhere while holding it leaves plain data: still usable.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Decides where a statement goes, from the probed state.
pub struct Router<'a> {
    pub backends: &'a [std::sync::Arc<Backend>],
    pub max_lag_bytes: u64,
}

impl Router<'_> {
    /// The primary: the backend that says it is not in recovery. With more
    /// than one (a split brain the db role must resolve), the one furthest
    /// ahead, since the other is the stale one.
    pub fn primary(&self) -> Option<&std::sync::Arc<Backend>> {
        self.backends
            .iter()
            .filter(|b| !b.fenced.load(Ordering::Relaxed))
            .filter_map(|b| {
                let p = lock(&b.probed);
                (p.role == Some(PgRole::Primary)).then_some((b, p.lsn))
            })
            .max_by_key(|(_, lsn)| *lsn)
            .map(|(b, _)| b)
    }

    /// Where a statement goes. A read goes to the standby with the fewest
    /// queries running whose lag is within the bound and, with
    /// read-your-writes, which has replayed past `min_lsn`; else the primary.
    pub fn pick(&self, target: Target, min_lsn: u64) -> Option<&std::sync::Arc<Backend>> {
        self.pick_avoiding(target, min_lsn, None)
    }

    /// [`Router::pick`] with the server at `avoid` left out: where a read
    /// goes when that server just failed to take it.
    pub fn pick_avoiding(
        &self,
        target: Target,
        min_lsn: u64,
        avoid: Option<SocketAddr>,
    ) -> Option<&std::sync::Arc<Backend>> {
        if target == Target::Standby {
            let eligible = |b: &&std::sync::Arc<Backend>| {
                let p = lock(&b.probed);
                Some(b.addr) != avoid
                    && p.role == Some(PgRole::Standby)
                    && p.lsn >= min_lsn
                    && b.lag_bytes.load(Ordering::Relaxed) <= self.max_lag_bytes
            };
            let busy = |b: &&std::sync::Arc<Backend>| b.outstanding.load(Ordering::Relaxed);
            if let Some(least) = self
                .backends
                .iter()
                .filter(eligible)
                .map(|b| busy(&b))
                .min()
            {
                // Ties take turns: every pick adds one to some backend's
                // `routed`, so their sum moves on by one per statement and
                // one client's reads, one after the other, go round the
                // standbys instead of always to the first.
                let tied = || {
                    self.backends
                        .iter()
                        .filter(eligible)
                        .filter(move |b| busy(b) == least)
                };
                let turn: u64 = self
                    .backends
                    .iter()
                    .map(|b| b.routed.load(Ordering::Relaxed))
                    .sum();
                let n = tied().count().max(1) as u64;
                // Another client may have changed a count between the two
                // passes: then any tie will do.
                let best = tied()
                    .nth((turn % n) as usize)
                    .or_else(|| tied().next())
                    .or_else(|| self.backends.iter().find(eligible));
                if best.is_some() {
                    return best;
                }
            }
        }
        self.primary().filter(|p| Some(p.addr) != avoid)
    }

    /// Every server whose last probes answered, the primary first, then
    /// the standbys: where a request that any server of the cluster can
    /// answer (a new pool's greeting) may go, in the order to try them.
    /// Fenced servers are left out, as they are for writes.
    pub fn answering(&self) -> Vec<std::sync::Arc<Backend>> {
        let mut order: Vec<_> = self.primary().into_iter().cloned().collect();
        order.extend(
            self.backends
                .iter()
                .filter(|b| !b.fenced.load(Ordering::Relaxed))
                .filter(|b| b.role() == Some(PgRole::Standby))
                .cloned(),
        );
        order
    }

    /// Recomputes every standby's lag from the primary's latest LSN.
    pub fn update_lag(&self) {
        let primary_lsn = self.primary().map(|p| lock(&p.probed).lsn);
        for b in self.backends {
            let p = lock(&b.probed);
            let lag = match (p.role, primary_lsn) {
                (Some(PgRole::Primary), _) => 0,
                (Some(PgRole::Standby), Some(at)) => at.saturating_sub(p.lsn),
                // No primary: it died and a failover is under way. Nothing
                // new is written meanwhile, so a standby is no further
                // behind than when the primary was last seen: it keeps
                // that lag, and reads go on on the standbys (as with
                // Pgpool-II) instead of failing with the writes. A standby
                // never measured against a primary stays unknown.
                (Some(PgRole::Standby), None) => continue,
                _ => u64::MAX,
            };
            b.lag_bytes.store(lag, Ordering::Relaxed);
        }
    }
}

/// "16/B374D848" → 0x16_B374D848.
pub fn parse_lsn(text: &str) -> Option<u64> {
    let (hi, lo) = text.split_once('/')?;
    Some((u64::from_str_radix(hi, 16).ok()? << 32) | u64::from_str_radix(lo, 16).ok()?)
}

pub fn format_lsn(lsn: u64) -> String {
    format!("{:X}/{:X}", lsn >> 32, lsn & 0xffff_ffff)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn backend(name: &str, role: Option<PgRole>, lsn: u64) -> Arc<Backend> {
        let b = Backend::new(&BackendAddr {
            name: name.into(),
            addr: "127.0.0.1:1".parse().expect("addr"),
        });
        {
            let mut p = lock(&b.probed);
            p.role = role;
            p.lsn = lsn;
        }
        Arc::new(b)
    }

    #[test]
    fn reads_go_to_a_standby_in_bounds_else_the_primary() {
        let all = vec![
            backend("p", Some(PgRole::Primary), 1000),
            backend("s1", Some(PgRole::Standby), 990),
            backend("s2", Some(PgRole::Standby), 100),
        ];
        let r = Router {
            backends: &all,
            max_lag_bytes: 50,
        };
        r.update_lag();
        assert_eq!(
            r.pick(Target::Standby, 0).map(|b| b.name.as_str()),
            Some("s1")
        );
        assert_eq!(
            r.pick(Target::Primary, 0).map(|b| b.name.as_str()),
            Some("p")
        );
        // Read-your-writes past what s1 has replayed: the primary.
        assert_eq!(
            r.pick(Target::Standby, 995).map(|b| b.name.as_str()),
            Some("p")
        );
        all[1].outstanding.store(5, Ordering::Relaxed);
        let r = Router {
            backends: &all,
            max_lag_bytes: 10_000,
        };
        r.update_lag();
        assert_eq!(
            r.pick(Target::Standby, 0).map(|b| b.name.as_str()),
            Some("s2")
        );
    }

    #[test]
    fn a_read_avoiding_a_failed_server_goes_to_another() {
        let mut all = vec![
            backend("p", Some(PgRole::Primary), 1000),
            backend("s1", Some(PgRole::Standby), 1000),
            backend("s2", Some(PgRole::Standby), 1000),
        ];
        // Distinct addresses: avoiding is by address.
        for (i, b) in all.iter_mut().enumerate() {
            let mut copy = Backend::new(&BackendAddr {
                name: b.name.clone(),
                addr: format!("127.0.0.{}:5433", i + 1).parse().expect("addr"),
            });
            copy.probed = Mutex::new(b.snapshot());
            *b = Arc::new(copy);
        }
        let r = Router {
            backends: &all,
            max_lag_bytes: 0,
        };
        r.update_lag();
        let pick = |avoid: &Arc<Backend>| {
            r.pick_avoiding(Target::Standby, 0, Some(avoid.addr))
                .map(|b| b.name.clone())
        };
        for _ in 0..4 {
            assert_eq!(pick(&all[1]).as_deref(), Some("s2"));
            all[2].routed.fetch_add(1, Ordering::Relaxed);
        }
        // The only standby failed: the primary takes the read.
        lock(&all[2].probed).role = None;
        assert_eq!(pick(&all[1]).as_deref(), Some("p"));
        // A write's primary failed: there is no other.
        assert!(
            r.pick_avoiding(Target::Primary, 0, Some(all[0].addr))
                .is_none()
        );
    }

    #[test]
    fn any_server_requests_try_the_primary_then_the_standbys() {
        let all = vec![
            backend("s1", Some(PgRole::Standby), 900),
            backend("down", None, 0),
            backend("p", Some(PgRole::Primary), 1000),
            backend("fenced", Some(PgRole::Standby), 1000),
            backend("s2", Some(PgRole::Standby), 10),
        ];
        all[3].fenced.store(true, Ordering::Relaxed);
        let r = Router {
            backends: &all,
            max_lag_bytes: 0,
        };
        r.update_lag();
        let names = |r: &Router<'_>| -> Vec<String> {
            r.answering().iter().map(|b| b.name.clone()).collect()
        };
        // Lag does not matter: every server greets alike.
        assert_eq!(names(&r), ["p", "s1", "s2"]);
        // No primary (it died, a failover is under way): the standbys.
        lock(&all[2].probed).role = None;
        assert_eq!(names(&r), ["s1", "s2"]);
    }

    #[test]
    fn reads_one_after_another_take_turns_over_the_standbys() {
        let all = vec![
            backend("p", Some(PgRole::Primary), 1000),
            backend("s1", Some(PgRole::Standby), 1000),
            backend("s2", Some(PgRole::Standby), 1000),
            backend("s3", Some(PgRole::Standby), 1000),
        ];
        let r = Router {
            backends: &all,
            max_lag_bytes: 0,
        };
        r.update_lag();
        let mut seen = std::collections::BTreeMap::new();
        for _ in 0..30 {
            let b = r.pick(Target::Standby, 0).expect("a standby");
            // What the session does with the pick.
            b.routed.fetch_add(1, Ordering::Relaxed);
            *seen.entry(b.name.clone()).or_insert(0) += 1;
        }
        assert_eq!(
            seen.into_iter().collect::<Vec<_>>(),
            [("s1".into(), 10), ("s2".into(), 10), ("s3".into(), 10)]
        );
    }

    #[test]
    fn a_fenced_primary_gets_no_writes() {
        let all = vec![
            backend("old", Some(PgRole::Primary), 2000),
            backend("new", Some(PgRole::Primary), 1000),
        ];
        all[0].fenced.store(true, Ordering::Relaxed);
        let r = Router {
            backends: &all,
            max_lag_bytes: u64::MAX,
        };
        assert_eq!(
            r.pick(Target::Primary, 0).map(|b| b.name.as_str()),
            Some("new")
        );
    }

    #[test]
    fn reads_go_on_on_the_standbys_while_there_is_no_primary() {
        let all = vec![
            backend("p", Some(PgRole::Primary), 1000),
            backend("s1", Some(PgRole::Standby), 990),
            backend("s2", Some(PgRole::Standby), 100),
            backend("new", Some(PgRole::Standby), 0),
        ];
        let r = Router {
            backends: &all,
            max_lag_bytes: 50,
        };
        // "new" joined after the primary's last probe: never measured.
        r.update_lag();
        all[3].lag_bytes.store(u64::MAX, Ordering::Relaxed);
        lock(&all[3].probed).lsn = 1000;
        // The primary dies: its probe finds nothing.
        lock(&all[0].probed).role = None;
        r.update_lag();
        assert!(r.pick(Target::Primary, 0).is_none());
        // s1 was in bounds and stays so; s2 was not; "new" is unknown.
        for _ in 0..3 {
            assert_eq!(
                r.pick(Target::Standby, 0).map(|b| b.name.as_str()),
                Some("s1")
            );
        }
        // Read-your-writes still holds: past s1's replay, nowhere to go.
        assert!(r.pick(Target::Standby, 995).is_none());
        // A new primary: lag is measured against it again.
        lock(&all[2].probed).role = Some(PgRole::Primary);
        lock(&all[2].probed).lsn = 2000;
        r.update_lag();
        assert_eq!(all[1].lag_bytes.load(Ordering::Relaxed), 1010);
        assert_eq!(
            r.pick(Target::Standby, 0).map(|b| b.name.as_str()),
            Some("s2")
        );
    }

    #[test]
    fn a_write_never_goes_to_a_standby_even_with_no_primary() {
        let all = vec![
            backend("s1", Some(PgRole::Standby), 10),
            backend("x", None, 0),
        ];
        let r = Router {
            backends: &all,
            max_lag_bytes: u64::MAX,
        };
        assert!(r.pick(Target::Primary, 0).is_none());
    }

    #[test]
    fn lsns_parse_like_postgres_prints_them() {
        assert_eq!(parse_lsn("16/B374D848"), Some(0x16_B374_D848));
        assert_eq!(format_lsn(0x16_B374_D848), "16/B374D848");
        assert_eq!(parse_lsn("nope"), None);
    }
}
