//! Rise/fall health of one backend, sans IO: check results and passive
//! strikes go in, transitions come out. The same rules as HAProxy's `rise`
//! and `fall`: `rise` passes in a row bring a backend up, `fall` failures in
//! a row (an active check or a passive strike from real traffic) take it down.

use std::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    Up,
    Down,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CheckResult {
    pub ok: bool,
    /// The backend answered, whatever it said (an HTTP status, a TCP
    /// connect that succeeded): it is alive. A 503 from `/health` is an
    /// answer; a refused connect or a timeout is not.
    pub answered: bool,
    pub at: Instant,
    /// "200 in 3 ms", "connect refused", "timeout after 1 s"...
    pub detail: String,
}

#[derive(Debug, Clone)]
pub struct HealthState {
    pub health: Health,
    /// When `health` last changed.
    pub since: Instant,
    passes: u32,
    failures: u32,
    pub last_check: Option<CheckResult>,
    /// Its last check was answered and no real request has failed on it
    /// since: down, maybe, but alive. Panic routing (`Pool::pick`) sends
    /// only to such backends.
    pub answering: bool,
    /// It was up once: panic routing never sends to a backend that has not
    /// passed its checks yet (a node that joins gets traffic only then).
    pub been_up: bool,
}

impl HealthState {
    /// A backend starts down: it gets traffic only once its checks pass.
    pub fn new(now: Instant) -> HealthState {
        HealthState {
            health: Health::Down,
            since: now,
            passes: 0,
            failures: 0,
            last_check: None,
            answering: false,
            been_up: false,
        }
    }

    /// An active check's result. Returns the new health when it changed.
    pub fn on_check(&mut self, result: CheckResult, rise: u32, fall: u32) -> Option<Health> {
        let (ok, now) = (result.ok, result.at);
        self.answering = result.answered;
        self.last_check = Some(result);
        if ok {
            self.pass(now, rise)
        } else {
            self.fail(now, fall)
        }
    }

    /// Real traffic failed on this backend before any response byte (connect
    /// refused, reset): it counts as a failed check.
    pub fn on_strike(&mut self, now: Instant, fall: u32) -> Option<Health> {
        self.answering = false;
        self.fail(now, fall)
    }

    fn pass(&mut self, now: Instant, rise: u32) -> Option<Health> {
        self.failures = 0;
        self.passes = self.passes.saturating_add(1);
        (self.health == Health::Down && self.passes >= rise.max(1))
            .then(|| self.set(Health::Up, now))
    }

    fn fail(&mut self, now: Instant, fall: u32) -> Option<Health> {
        self.passes = 0;
        self.failures = self.failures.saturating_add(1);
        (self.health == Health::Up && self.failures >= fall.max(1))
            .then(|| self.set(Health::Down, now))
    }

    fn set(&mut self, health: Health, now: Instant) -> Health {
        self.been_up |= health == Health::Up;
        self.health = health;
        self.since = now;
        health
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn result(ok: bool, at: Instant) -> CheckResult {
        CheckResult {
            ok,
            answered: ok,
            at,
            detail: String::new(),
        }
    }

    #[test]
    fn rises_after_rise_passes_and_falls_after_fall_failures() {
        let t0 = Instant::now();
        let mut h = HealthState::new(t0);
        assert_eq!(h.on_check(result(true, t0), 2, 3), None);
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(h.on_check(result(true, t1), 2, 3), Some(Health::Up));
        assert_eq!(h.since, t1);
        assert_eq!(h.on_check(result(false, t1), 2, 3), None);
        assert_eq!(h.on_check(result(false, t1), 2, 3), None);
        assert_eq!(h.on_check(result(false, t1), 2, 3), Some(Health::Down));
    }

    #[test]
    fn a_pass_resets_the_failure_count() {
        let t0 = Instant::now();
        let mut h = HealthState::new(t0);
        h.on_check(result(true, t0), 1, 2);
        assert_eq!(h.health, Health::Up);
        h.on_check(result(false, t0), 1, 2);
        h.on_check(result(true, t0), 1, 2);
        assert_eq!(h.on_check(result(false, t0), 1, 2), None);
        assert_eq!(h.health, Health::Up);
    }

    #[test]
    fn passive_strikes_count_like_failed_checks() {
        let t0 = Instant::now();
        let mut h = HealthState::new(t0);
        h.on_check(result(true, t0), 1, 2);
        assert_eq!(h.on_strike(t0, 2), None);
        assert_eq!(h.on_check(result(false, t0), 1, 2), Some(Health::Down));
    }

    #[test]
    fn an_answered_failing_check_keeps_the_backend_answering_until_a_strike() {
        let t0 = Instant::now();
        let mut h = HealthState::new(t0);
        assert!(!h.answering, "not before its first check");
        let degraded = CheckResult {
            ok: false,
            answered: true,
            at: t0,
            detail: "status 503, expected 200".into(),
        };
        h.on_check(degraded, 1, 1);
        assert_eq!(h.health, Health::Down);
        assert!(h.answering);
        h.on_strike(t0, 1);
        assert!(!h.answering, "a request failed on it since");
        h.on_check(result(false, t0), 1, 1);
        assert!(!h.answering, "a timeout is no answer");
    }
}
