//! The backends of one front end (the HTTP balancer, or one TCP service) and
//! everything the balancer decides about them, sans IO: which exist (synced
//! from membership and the cluster file), which are healthy, drained or in
//! maintenance, their effective weight during slow start, and which one a
//! request gets. The proxies call `pick` and `release`; the checkers call
//! `on_check`; nothing here touches a socket or reads the clock.
//!
//! Churn without drops: a backend that leaves the desired set while requests
//! are in flight stops getting new ones at once and is removed when its last
//! request ends.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::health::{CheckResult, Health, HealthState};
use super::pick::{self, Candidate};
use crate::config::Algorithm;

/// Slow start ramps weights in sixteenths, so a weight-1 backend still ramps.
const WEIGHT_SCALE: u64 = 16;

#[derive(Debug, Clone)]
pub struct PoolSettings {
    pub algorithm: Algorithm,
    pub slow_start: Duration,
    pub rise: u32,
    pub fall: u32,
    /// Requests or connections in flight per backend; more wait in a queue.
    pub maxconn: u32,
    /// Panic routing: when no backend is up but some still answer their
    /// checks (with the wrong status), send to those rather than refusing
    /// everything. Every backend failing at once points at something they
    /// share (a stalled Gluster volume behind every web node's `/health`),
    /// and the requests that do not need it still work. Envoy does the
    /// same below its panic threshold; here only at zero backends up, and
    /// never to a backend that does not answer at all.
    pub panic: bool,
}

/// Where a backend comes from: it decides nothing but is shown in stats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// A web-role node that membership reports up.
    Member,
    /// Listed in the cluster file.
    Static,
}

/// Set through the admin API, as HAProxy's `set server state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Admin {
    Ready,
    /// No new requests; in-flight ones finish.
    Drain,
    /// No traffic at all (checks go on, so its health stays known).
    Maint,
}

/// One backend the pool should have.
#[derive(Debug, Clone, PartialEq)]
pub struct Desired {
    pub name: String,
    pub addr: SocketAddr,
    pub weight: u32,
    pub source: Source,
}

#[derive(Debug, Clone)]
pub struct Backend {
    pub name: String,
    pub addr: SocketAddr,
    pub source: Source,
    /// From the file or membership; an admin override wins while set.
    pub weight: u32,
    pub weight_override: Option<u32>,
    pub admin: Admin,
    pub health: HealthState,
    /// Gone from the desired set with requests still in flight.
    pub leaving: bool,
    pub active: u32,
    key: u64,
}

/// What `pick` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pick {
    /// Counted as active until `release`.
    Chosen(SocketAddr),
    /// Backends that can take traffic exist but all are at maxconn: wait
    /// and retry.
    AllBusy,
    /// No backend can take traffic.
    NoBackend,
}

/// A change worth an event.
#[derive(Debug, Clone, PartialEq)]
pub enum PoolEvent {
    Added {
        name: String,
        addr: SocketAddr,
    },
    Leaving {
        name: String,
        in_flight: u32,
    },
    Removed {
        name: String,
    },
    Up {
        name: String,
    },
    Down {
        name: String,
        reason: String,
    },
    /// No backend is up, and these still answer their checks: traffic goes
    /// to them (see `PoolSettings::panic`).
    PanicStarted {
        answering: Vec<String>,
    },
    /// A backend is up again (or none answers any more): panic routing ends.
    PanicEnded {
        reason: String,
    },
}

#[derive(Debug, Clone, Serialize)]
pub struct BackendView {
    pub name: String,
    pub addr: SocketAddr,
    pub source: Source,
    /// "UP", "DOWN", "DRAIN" or "MAINT", as HAProxy's stats page says it.
    pub state: &'static str,
    pub weight: u32,
    /// Weight in effect now (lower during slow start), in sixteenths.
    pub effective_weight_16: u64,
    pub active: u32,
    pub since_ms_ago: u64,
    pub last_check: Option<String>,
    pub last_check_ok: Option<bool>,
}

#[derive(Debug)]
pub struct Pool {
    settings: PoolSettings,
    backends: Vec<Backend>,
    /// Smooth round-robin state, parallel to `backends`.
    rr: Vec<i64>,
    cursor: usize,
    /// `pick`'s working list, kept between calls.
    scratch: Vec<Candidate>,
    /// Whether panic routing was on at the last health change, so that its
    /// start and end are events.
    panicking: bool,
    /// Requests or connections sent by panic routing, for the stats.
    panic_picks: u64,
}

impl Pool {
    pub fn new(settings: PoolSettings) -> Pool {
        Pool {
            settings,
            backends: Vec::new(),
            rr: Vec::new(),
            cursor: 0,
            scratch: Vec::new(),
            panicking: false,
            panic_picks: 0,
        }
    }

    pub fn settings(&self) -> &PoolSettings {
        &self.settings
    }

    pub fn set_settings(&mut self, settings: PoolSettings) {
        self.settings = settings;
    }

    pub fn backends(&self) -> &[Backend] {
        &self.backends
    }

    /// Makes the pool hold exactly `desired`: new backends start down until
    /// their checks pass; vanished ones leave (at once if idle, else when
    /// their last request ends).
    pub fn sync(&mut self, desired: &[Desired], now: Instant) -> Vec<PoolEvent> {
        let mut events = Vec::new();
        for d in desired {
            match self.backends.iter_mut().find(|b| b.addr == d.addr) {
                Some(b) => {
                    b.name.clone_from(&d.name);
                    b.weight = d.weight;
                    b.source = d.source;
                    b.leaving = false;
                }
                None => {
                    self.backends.push(Backend {
                        name: d.name.clone(),
                        addr: d.addr,
                        source: d.source,
                        weight: d.weight,
                        weight_override: None,
                        admin: Admin::Ready,
                        health: HealthState::new(now),
                        leaving: false,
                        active: 0,
                        key: pick::key_of(&d.addr),
                    });
                    self.rr.push(0);
                    events.push(PoolEvent::Added {
                        name: d.name.clone(),
                        addr: d.addr,
                    });
                }
            }
        }
        let gone: Vec<SocketAddr> = self
            .backends
            .iter()
            .filter(|b| !desired.iter().any(|d| d.addr == b.addr))
            .map(|b| b.addr)
            .collect();
        for addr in gone {
            if let Some(i) = self.position(addr) {
                let b = &mut self.backends[i];
                if b.active == 0 {
                    events.push(PoolEvent::Removed {
                        name: b.name.clone(),
                    });
                    self.remove(i);
                } else if !b.leaving {
                    b.leaving = true;
                    events.push(PoolEvent::Leaving {
                        name: b.name.clone(),
                        in_flight: b.active,
                    });
                }
            }
        }
        events
    }

    /// The backend for a new request from `client`, never `exclude` (the one
    /// a retry is moving away from).
    pub fn pick(&mut self, client: IpAddr, now: Instant, exclude: Option<SocketAddr>) -> Pick {
        // Every request picks: the candidate list reuses one allocation.
        let mut candidates = std::mem::take(&mut self.scratch);
        let mut eligible = self.gather(&mut candidates, exclude, now, Route::Healthy);
        let panic = eligible == 0 && self.settings.panic;
        if panic {
            eligible = self.gather(&mut candidates, exclude, now, Route::Panic);
        }
        let chosen = if eligible == 0 {
            Err(Pick::NoBackend)
        } else if candidates.is_empty() {
            Err(Pick::AllBusy)
        } else {
            Ok(pick::pick(
                self.settings.algorithm,
                &candidates,
                client,
                &mut self.rr,
                &mut self.cursor,
            ))
        };
        self.scratch = candidates;
        match chosen {
            Err(none) => none,
            Ok(chosen) => match chosen.and_then(|i| self.backends.get_mut(i)) {
                Some(b) => {
                    b.active += 1;
                    if panic {
                        self.panic_picks += 1;
                    }
                    Pick::Chosen(b.addr)
                }
                None => Pick::NoBackend,
            },
        }
    }

    /// Fills `candidates` with the backends `route` may use that have a
    /// free slot; returns how many it may use, full or not.
    fn gather(
        &self,
        candidates: &mut Vec<Candidate>,
        exclude: Option<SocketAddr>,
        now: Instant,
        route: Route,
    ) -> usize {
        let maxconn = self.settings.maxconn.max(1);
        candidates.clear();
        let mut eligible = 0;
        for (i, b) in self.backends.iter().enumerate() {
            if !route.takes(b) || Some(b.addr) == exclude {
                continue;
            }
            eligible += 1;
            if b.active < maxconn {
                candidates.push(Candidate {
                    index: i,
                    weight: match route {
                        Route::Healthy => self.effective_weight(b, now),
                        // Slow start ramps from the moment a backend came
                        // up; a down one's `since` says when it went down.
                        Route::Panic => full_weight(b),
                    },
                    load: u64::from(b.active),
                    key: b.key,
                });
            }
        }
        eligible
    }

    /// Whether panic routing is on: no backend can take traffic by its
    /// health, and some answer their checks.
    pub fn panicking(&self) -> bool {
        self.settings.panic
            && !self.backends.iter().any(|b| Route::Healthy.takes(b))
            && self.backends.iter().any(|b| Route::Panic.takes(b))
    }

    /// Requests or connections panic routing has sent since the start.
    pub fn panic_picks(&self) -> u64 {
        self.panic_picks
    }

    /// A request or connection picked earlier has ended. Returns events when
    /// that completes a leaving backend's drain.
    pub fn release(&mut self, addr: SocketAddr) -> Vec<PoolEvent> {
        let Some(i) = self.position(addr) else {
            return Vec::new();
        };
        let b = &mut self.backends[i];
        b.active = b.active.saturating_sub(1);
        if b.leaving && b.active == 0 {
            let name = b.name.clone();
            self.remove(i);
            return vec![PoolEvent::Removed { name }];
        }
        Vec::new()
    }

    /// An active check's result: the backend's transition, if any, and
    /// panic routing starting or ending.
    pub fn on_check(&mut self, addr: SocketAddr, result: CheckResult) -> Vec<PoolEvent> {
        let (rise, fall) = (self.settings.rise, self.settings.fall);
        let Some(i) = self.position(addr) else {
            return Vec::new();
        };
        let b = &mut self.backends[i];
        let detail = result.detail.clone();
        let changed = b.health.on_check(result, rise, fall);
        let mut events: Vec<PoolEvent> = changed
            .map(|h| transition(b, h, detail))
            .into_iter()
            .collect();
        events.extend(self.panic_change());
        events
    }

    /// Real traffic failed on this backend before any response byte: a
    /// passive strike.
    pub fn on_strike(&mut self, addr: SocketAddr, now: Instant, why: &str) -> Vec<PoolEvent> {
        let fall = self.settings.fall;
        let Some(i) = self.position(addr) else {
            return Vec::new();
        };
        let b = &mut self.backends[i];
        let changed = b.health.on_strike(now, fall);
        let mut events: Vec<PoolEvent> = changed
            .map(|h| transition(b, h, format!("traffic failed: {why}")))
            .into_iter()
            .collect();
        events.extend(self.panic_change());
        events
    }

    /// The event when panic routing has just started or ended.
    fn panic_change(&mut self) -> Option<PoolEvent> {
        let now = self.panicking();
        if now == self.panicking {
            return None;
        }
        self.panicking = now;
        Some(if now {
            let mut answering: Vec<String> = self
                .backends
                .iter()
                .filter(|b| Route::Panic.takes(b))
                .map(|b| b.name.clone())
                .collect();
            // By name, not in the order membership happened to add them.
            answering.sort();
            PoolEvent::PanicStarted { answering }
        } else if self.backends.iter().any(|b| Route::Healthy.takes(b)) {
            PoolEvent::PanicEnded {
                reason: "a backend is up again".into(),
            }
        } else {
            PoolEvent::PanicEnded {
                reason: "no backend answers its checks any more".into(),
            }
        })
    }

    /// Admin API: drain, maintenance or ready, by backend name or address.
    pub fn set_admin(&mut self, which: &str, admin: Admin) -> bool {
        self.find_mut(which).map(|b| b.admin = admin).is_some()
    }

    /// Admin API: a runtime weight (None = back to the configured one).
    pub fn set_weight(&mut self, which: &str, weight: Option<u32>) -> bool {
        self.find_mut(which)
            .map(|b| b.weight_override = weight.map(|w| w.clamp(1, 256)))
            .is_some()
    }

    pub fn view(&self, now: Instant) -> Vec<BackendView> {
        self.backends
            .iter()
            .map(|b| BackendView {
                name: b.name.clone(),
                addr: b.addr,
                source: b.source,
                state: state_name(b),
                weight: b.weight_override.unwrap_or(b.weight),
                effective_weight_16: if b.health.health == Health::Up {
                    self.effective_weight(b, now)
                } else {
                    0
                },
                active: b.active,
                since_ms_ago: now.saturating_duration_since(b.health.since).as_millis() as u64,
                last_check: b.health.last_check.as_ref().map(|c| c.detail.clone()),
                last_check_ok: b.health.last_check.as_ref().map(|c| c.ok),
            })
            .collect()
    }

    /// Weight ramps linearly from 1/16 to full over `slow_start` after the
    /// backend came up.
    fn effective_weight(&self, b: &Backend, now: Instant) -> u64 {
        let full = full_weight(b);
        let ramp = self.settings.slow_start;
        if ramp.is_zero() {
            return full;
        }
        let up_for = now.saturating_duration_since(b.health.since);
        if up_for >= ramp {
            return full;
        }
        let frac = up_for.as_secs_f64() / ramp.as_secs_f64();
        ((full as f64 * frac) as u64).max(1)
    }

    fn position(&self, addr: SocketAddr) -> Option<usize> {
        self.backends.iter().position(|b| b.addr == addr)
    }

    fn find_mut(&mut self, which: &str) -> Option<&mut Backend> {
        self.backends
            .iter_mut()
            .find(|b| b.name == which || b.addr.to_string() == which)
    }

    fn remove(&mut self, i: usize) {
        self.backends.remove(i);
        self.rr.remove(i);
    }
}

/// Which backends a pick may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    /// Up by its checks, ready, staying: the normal case.
    Healthy,
    /// Down, but answering its checks, and up before (and ready, staying):
    /// panic routing.
    Panic,
}

impl Route {
    fn takes(self, b: &Backend) -> bool {
        let open = b.admin == Admin::Ready && !b.leaving;
        open && match self {
            Route::Healthy => b.health.health == Health::Up,
            Route::Panic => {
                b.health.health == Health::Down && b.health.answering && b.health.been_up
            }
        }
    }
}

fn full_weight(b: &Backend) -> u64 {
    u64::from(b.weight_override.unwrap_or(b.weight).max(1)) * WEIGHT_SCALE
}

fn transition(b: &Backend, health: Health, detail: String) -> PoolEvent {
    match health {
        Health::Up => PoolEvent::Up {
            name: b.name.clone(),
        },
        Health::Down => PoolEvent::Down {
            name: b.name.clone(),
            reason: detail,
        },
    }
}

fn state_name(b: &Backend) -> &'static str {
    match (b.admin, b.leaving, b.health.health) {
        (Admin::Maint, _, _) => "MAINT",
        (Admin::Drain, _, _) | (_, true, _) => "DRAIN",
        (_, _, Health::Up) => "UP",
        (_, _, Health::Down) => "DOWN",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: Duration = Duration::from_secs(1);

    fn settings(algorithm: Algorithm) -> PoolSettings {
        PoolSettings {
            algorithm,
            slow_start: Duration::ZERO,
            rise: 2,
            fall: 3,
            maxconn: 2,
            panic: true,
        }
    }

    fn addr(n: u8) -> SocketAddr {
        SocketAddr::from(([192, 0, 2, n], 8080))
    }

    fn desired(ns: &[u8]) -> Vec<Desired> {
        ns.iter()
            .map(|n| Desired {
                name: format!("pi-{n}"),
                addr: addr(*n),
                weight: 1,
                source: Source::Member,
            })
            .collect()
    }

    fn ok(at: Instant) -> CheckResult {
        CheckResult {
            ok: true,
            answered: true,
            at,
            detail: "200".into(),
        }
    }

    fn fail(at: Instant) -> CheckResult {
        CheckResult {
            ok: false,
            answered: false,
            at,
            detail: "connect refused".into(),
        }
    }

    /// Alive, but its `/health` says it cannot serve.
    fn degraded(at: Instant) -> CheckResult {
        CheckResult {
            ok: false,
            answered: true,
            at,
            detail: "status 503, expected 200".into(),
        }
    }

    /// A pool of backends `ns`, all up.
    fn up_pool(ns: &[u8], algorithm: Algorithm, t0: Instant) -> Pool {
        let mut p = Pool::new(settings(algorithm));
        p.sync(&desired(ns), t0);
        for n in ns {
            p.on_check(addr(*n), ok(t0));
            p.on_check(addr(*n), ok(t0));
        }
        p
    }

    const CLIENT: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(198, 51, 100, 7));

    #[test]
    fn new_backends_get_no_traffic_until_rise_checks_pass() {
        let t0 = Instant::now();
        let mut p = Pool::new(settings(Algorithm::RoundRobin));
        let ev = p.sync(&desired(&[1]), t0);
        assert_eq!(
            ev,
            [PoolEvent::Added {
                name: "pi-1".into(),
                addr: addr(1)
            }]
        );
        assert_eq!(p.pick(CLIENT, t0, None), Pick::NoBackend);
        // Answering, but not up yet: not even panic routing sends to it.
        assert_eq!(p.on_check(addr(1), ok(t0)), []);
        assert_eq!(p.pick(CLIENT, t0, None), Pick::NoBackend);
        assert_eq!(
            p.on_check(addr(1), ok(t0 + SEC)),
            [PoolEvent::Up {
                name: "pi-1".into()
            }]
        );
        assert_eq!(p.pick(CLIENT, t0 + SEC, None), Pick::Chosen(addr(1)));
    }

    #[test]
    fn failures_take_a_backend_out_and_strikes_count() {
        let t0 = Instant::now();
        let mut p = up_pool(&[1, 2], Algorithm::RoundRobin, t0);
        p.on_check(addr(1), fail(t0));
        p.on_strike(addr(1), t0, "reset");
        let ev = p.on_check(addr(1), fail(t0));
        assert!(matches!(ev[..], [PoolEvent::Down { .. }]), "{ev:?}");
        for _ in 0..4 {
            let Pick::Chosen(a) = p.pick(CLIENT, t0, None) else {
                panic!("no pick")
            };
            assert_eq!(a, addr(2));
            p.release(a);
        }
    }

    #[test]
    fn maxconn_makes_callers_wait_and_release_frees_a_slot() {
        let t0 = Instant::now();
        let mut p = up_pool(&[1], Algorithm::LeastConn, t0);
        assert_eq!(p.pick(CLIENT, t0, None), Pick::Chosen(addr(1)));
        assert_eq!(p.pick(CLIENT, t0, None), Pick::Chosen(addr(1)));
        assert_eq!(p.pick(CLIENT, t0, None), Pick::AllBusy);
        p.release(addr(1));
        assert_eq!(p.pick(CLIENT, t0, None), Pick::Chosen(addr(1)));
    }

    #[test]
    fn a_leaving_backend_finishes_in_flight_work_then_goes() {
        let t0 = Instant::now();
        let mut p = up_pool(&[1, 2], Algorithm::RoundRobin, t0);
        let Pick::Chosen(first) = p.pick(CLIENT, t0, None) else {
            panic!()
        };
        let keep = if first == addr(1) { 2 } else { 1 };
        let ev = p.sync(&desired(&[keep]), t0);
        assert_eq!(ev.len(), 1);
        assert!(
            matches!(ev[0], PoolEvent::Leaving { in_flight: 1, .. }),
            "{ev:?}"
        );
        // No new request goes to the leaver.
        for _ in 0..4 {
            let Pick::Chosen(a) = p.pick(CLIENT, t0, None) else {
                panic!()
            };
            assert_eq!(a, addr(keep));
            p.release(a);
        }
        assert_eq!(
            p.view(t0).iter().find(|b| b.addr == first).map(|b| b.state),
            Some("DRAIN")
        );
        assert!(matches!(p.release(first)[..], [PoolEvent::Removed { .. }]));
        assert_eq!(p.backends().len(), 1);
    }

    #[test]
    fn an_idle_backend_is_removed_at_once_and_can_come_back() {
        let t0 = Instant::now();
        let mut p = up_pool(&[1, 2], Algorithm::RoundRobin, t0);
        let ev = p.sync(&desired(&[1]), t0);
        assert_eq!(
            ev,
            [PoolEvent::Removed {
                name: "pi-2".into()
            }]
        );
        let ev = p.sync(&desired(&[1, 2]), t0);
        assert!(matches!(ev[..], [PoolEvent::Added { .. }]));
        // Back, but down until checked again.
        assert_eq!(p.view(t0)[1].state, "DOWN");
    }

    #[test]
    fn drain_and_maint_stop_new_requests() {
        let t0 = Instant::now();
        let mut p = up_pool(&[1, 2], Algorithm::RoundRobin, t0);
        assert!(p.set_admin("pi-1", Admin::Drain));
        assert!(p.set_admin("192.0.2.2:8080", Admin::Maint));
        assert_eq!(p.pick(CLIENT, t0, None), Pick::NoBackend);
        let states: Vec<_> = p.view(t0).iter().map(|b| b.state).collect();
        assert_eq!(states, ["DRAIN", "MAINT"]);
        assert!(p.set_admin("pi-1", Admin::Ready));
        assert_eq!(p.pick(CLIENT, t0, None), Pick::Chosen(addr(1)));
        assert!(!p.set_admin("pi-9", Admin::Drain));
    }

    #[test]
    fn a_retry_never_goes_back_to_the_excluded_backend() {
        let t0 = Instant::now();
        let mut p = up_pool(&[1, 2], Algorithm::Source, t0);
        for _ in 0..10 {
            let Pick::Chosen(a) = p.pick(CLIENT, t0, Some(addr(1))) else {
                panic!()
            };
            assert_eq!(a, addr(2));
            p.release(a);
        }
        let mut solo = up_pool(&[1], Algorithm::RoundRobin, t0);
        assert_eq!(solo.pick(CLIENT, t0, Some(addr(1))), Pick::NoBackend);
    }

    #[test]
    fn slow_start_ramps_a_new_backends_share() {
        let t0 = Instant::now();
        let mut s = settings(Algorithm::RoundRobin);
        s.slow_start = Duration::from_secs(10);
        s.maxconn = 1_000_000;
        let mut p = Pool::new(s);
        p.sync(&desired(&[1]), t0);
        p.on_check(addr(1), ok(t0));
        p.on_check(addr(1), ok(t0));
        let later = t0 + Duration::from_secs(60);
        p.sync(&desired(&[1, 2]), later);
        p.on_check(addr(2), ok(later));
        p.on_check(addr(2), ok(later)); // pi-2 up at `later`
        let share = |p: &mut Pool, at: Instant| {
            let mut n2 = 0;
            for _ in 0..1600 {
                if let Pick::Chosen(a) = p.pick(CLIENT, at, None) {
                    n2 += usize::from(a == addr(2));
                    p.release(a);
                }
            }
            n2 as f64 / 1600.0
        };
        let early = share(&mut p, later + Duration::from_secs(1)); // 1/10 of full weight
        let mid = share(&mut p, later + Duration::from_secs(5)); // 1/2
        let done = share(&mut p, later + Duration::from_secs(11)); // full
        assert!(early < 0.12, "early share {early}");
        assert!((0.28..0.38).contains(&mid), "mid share {mid}");
        assert!((0.45..0.55).contains(&done), "full share {done}");
    }

    #[test]
    fn with_every_backend_down_traffic_goes_to_those_that_still_answer() {
        let t0 = Instant::now();
        let mut p = up_pool(&[1, 2, 3], Algorithm::RoundRobin, t0);
        p.settings.maxconn = 1_000_000;
        // pi-1 and pi-2 answer 503 (a shared dependency is stuck), pi-3
        // does not answer at all.
        let mut events = Vec::new();
        for _ in 0..3 {
            events.extend(p.on_check(addr(1), degraded(t0)));
            events.extend(p.on_check(addr(2), degraded(t0)));
            events.extend(p.on_check(addr(3), fail(t0)));
        }
        assert_eq!(
            events.last(),
            Some(&PoolEvent::PanicStarted {
                answering: vec!["pi-1".into(), "pi-2".into()]
            }),
            "{events:?}"
        );
        assert!(p.panicking());
        let mut seen = std::collections::BTreeMap::new();
        for _ in 0..100 {
            let Pick::Chosen(a) = p.pick(CLIENT, t0, None) else {
                panic!("no pick in panic")
            };
            *seen.entry(a).or_insert(0) += 1;
            p.release(a);
        }
        assert_eq!(
            seen.get(&addr(3)),
            None,
            "never to the one that does not answer"
        );
        assert_eq!(seen.get(&addr(1)), Some(&50), "{seen:?}");
        assert_eq!(seen.get(&addr(2)), Some(&50), "{seen:?}");
        assert_eq!(p.panic_picks(), 100);
        // A retry still avoids the backend it leaves.
        assert_eq!(p.pick(CLIENT, t0, Some(addr(1))), Pick::Chosen(addr(2)));
        p.release(addr(2));
        // A request that fails on one makes it no longer answering.
        p.on_strike(addr(1), t0, "reset");
        for _ in 0..10 {
            assert_eq!(p.pick(CLIENT, t0, None), Pick::Chosen(addr(2)));
            p.release(addr(2));
        }
        // pi-3 comes back: normal routing, and the event says so.
        let mut back = p.on_check(addr(3), ok(t0));
        back.extend(p.on_check(addr(3), ok(t0)));
        assert!(
            back.contains(&PoolEvent::PanicEnded {
                reason: "a backend is up again".into()
            }),
            "{back:?}"
        );
        assert!(!p.panicking());
        for _ in 0..10 {
            assert_eq!(p.pick(CLIENT, t0, None), Pick::Chosen(addr(3)));
            p.release(addr(3));
        }
    }

    #[test]
    fn panic_routing_spares_drained_backends_and_can_be_turned_off() {
        let t0 = Instant::now();
        let mut p = up_pool(&[1, 2], Algorithm::RoundRobin, t0);
        for _ in 0..3 {
            p.on_check(addr(1), degraded(t0));
            p.on_check(addr(2), degraded(t0));
        }
        assert!(p.set_admin("pi-1", Admin::Drain));
        assert!(p.set_admin("pi-2", Admin::Maint));
        assert_eq!(p.pick(CLIENT, t0, None), Pick::NoBackend);
        assert!(p.set_admin("pi-2", Admin::Ready));
        assert_eq!(p.pick(CLIENT, t0, None), Pick::Chosen(addr(2)));
        p.release(addr(2));
        p.settings.panic = false;
        assert_eq!(p.pick(CLIENT, t0, None), Pick::NoBackend);
        assert!(!p.panicking());
    }

    #[test]
    fn runtime_weight_override_changes_the_split() {
        let t0 = Instant::now();
        let mut p = up_pool(&[1, 2], Algorithm::RoundRobin, t0);
        p.settings.maxconn = 1_000_000;
        assert!(p.set_weight("pi-1", Some(3)));
        let mut n1 = 0;
        for _ in 0..400 {
            let Pick::Chosen(a) = p.pick(CLIENT, t0, None) else {
                panic!()
            };
            n1 += usize::from(a == addr(1));
            p.release(a);
        }
        assert_eq!(n1, 300);
    }
}
