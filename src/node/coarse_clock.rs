//! A cheap monotonic clock for stamps that only decide second-scale things:
//! a connection's last activity, an idle backend connection's age, the
//! second a request is counted in.
//!
//! Why not `Instant::now()`: a proxied request read the clock about 18
//! times, and each read with the subtraction after it cost as much as a
//! header lookup; together about 4 % of the request's instructions
//! (callgrind, `scripts/profile-proxy`). `CLOCK_MONOTONIC_COARSE` is the
//! same timeline as `CLOCK_MONOTONIC`, read from the vDSO without touching
//! the hardware counter, and at most one kernel tick (1-10 ms) behind it.
//! Latencies, which want the precise clock, keep `Instant`.
//!
//! Read through glibc, not rustix: rustix finds the vDSO itself, and that
//! crashes under valgrind (rustix issue #1559), which `scripts/profile-proxy`
//! runs the balancer under.

/// Milliseconds on the monotonic clock, as of the last kernel tick. Only
/// differences between two readings mean anything.
pub fn now_ms() -> u64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `t` is a valid, writable timespec for the call's duration;
    // CLOCK_MONOTONIC_COARSE exists on every Linux since 2.6.32, and on an
    // error `t` stays zero (a stamp of 0 only makes a timeout early).
    unsafe {
        libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut t);
    }
    // Both fields are non-negative on the monotonic clock; a negative one
    // would read as 0 rather than wrap.
    let secs = u64::try_from(t.tv_sec).unwrap_or(0);
    let nanos = u64::try_from(t.tv_nsec).unwrap_or(0);
    secs * 1000 + nanos / 1_000_000
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn it_follows_the_precise_clock_within_a_tick() {
        let (c0, i0) = (now_ms(), Instant::now());
        std::thread::sleep(Duration::from_millis(120));
        let (c1, i1) = (now_ms(), Instant::now());
        let coarse = c1 - c0;
        let precise = (i1 - i0).as_millis() as u64;
        // A tick is at most 10 ms (HZ=100); each reading may lag by one.
        assert!(coarse >= 100, "{coarse} ms after sleeping 120 ms");
        assert!(coarse.abs_diff(precise) <= 20, "{coarse} vs {precise} ms");
    }
}
