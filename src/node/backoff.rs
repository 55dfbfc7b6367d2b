//! Restart backoff for supervised services, as plain arithmetic so it is
//! tested without waiting: 1 s, 2 s, 4 s ... up to 30 s; a service that then
//! ran well for a minute starts again from 1 s.

use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Backoff {
    failures_in_a_row: u32,
    base: Duration,
    max: Duration,
    /// A run at least this long counts as healthy and resets the backoff.
    healthy_after: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            failures_in_a_row: 0,
            base: Duration::from_secs(1),
            max: Duration::from_secs(30),
            healthy_after: Duration::from_secs(60),
        }
    }
}

impl Backoff {
    /// The wait before the next start, given how long the failed run lasted.
    pub fn after_failure(&mut self, ran_for: Duration) -> Duration {
        if ran_for >= self.healthy_after {
            self.failures_in_a_row = 0;
        }
        let exp = self.failures_in_a_row.min(16);
        self.failures_in_a_row = self.failures_in_a_row.saturating_add(1);
        self.base.saturating_mul(1 << exp).min(self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_to_a_cap_and_resets_after_a_healthy_run() {
        let mut b = Backoff::default();
        let quick = Duration::from_millis(10);
        let waits: Vec<u64> = (0..7).map(|_| b.after_failure(quick).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 30, 30]);
        assert_eq!(b.after_failure(Duration::from_secs(61)).as_secs(), 1);
        assert_eq!(b.after_failure(quick).as_secs(), 2);
    }

    #[test]
    fn never_overflows() {
        let mut b = Backoff::default();
        for _ in 0..1000 {
            assert!(b.after_failure(Duration::ZERO) <= Duration::from_secs(30));
        }
    }
}
