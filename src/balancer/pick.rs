//! The four ways a request picks among eligible backends. Pure functions
//! over a candidate list (plus the round-robin state the pool keeps), so
//! distribution is tested without a socket.

use std::hash::{Hash, Hasher};
use std::net::IpAddr;

use rand::Rng;

use crate::config::Algorithm;

/// One eligible backend as the algorithms see it.
#[derive(Debug, Clone, Copy)]
pub struct Candidate {
    /// Index into the pool's backend list.
    pub index: usize,
    /// Effective weight (slow start applied), > 0.
    pub weight: u64,
    /// Requests or connections in flight plus queued for it.
    pub load: u64,
    /// Stable identity for consistent hashing (hash of the address).
    pub key: u64,
}

/// Picks one of `candidates` (never empty); `rr` is the smooth round-robin
/// state, one slot per pool backend, `cursor` breaks least-conn ties in turn.
pub fn pick(
    algorithm: Algorithm,
    candidates: &[Candidate],
    client: IpAddr,
    rr: &mut [i64],
    cursor: &mut usize,
) -> Option<usize> {
    match algorithm {
        Algorithm::RoundRobin => smooth_round_robin(candidates, rr),
        Algorithm::LeastConn => least_loaded(candidates, cursor),
        Algorithm::Source => rendezvous(candidates, client),
        Algorithm::Random2 => two_choices(candidates, &mut rand::rng()),
    }
}

/// nginx's smooth weighted round robin: with weights 5,1,1 it yields
/// a a b a c a a rather than a a a a a b c, so no backend gets a burst.
fn smooth_round_robin(candidates: &[Candidate], rr: &mut [i64]) -> Option<usize> {
    let total: i64 = candidates.iter().map(|c| c.weight as i64).sum();
    let mut best: Option<(usize, i64)> = None;
    for c in candidates {
        let slot = rr.get_mut(c.index)?;
        *slot += c.weight as i64;
        if best.is_none_or(|(_, current)| *slot > current) {
            best = Some((c.index, *slot));
        }
    }
    let (chosen, _) = best?;
    if let Some(slot) = rr.get_mut(chosen) {
        *slot -= total;
    }
    Some(chosen)
}

/// Fewest in flight per unit of weight; ties go round the list so equal
/// backends share evenly.
fn least_loaded(candidates: &[Candidate], cursor: &mut usize) -> Option<usize> {
    let n = candidates.len();
    if n == 0 {
        return None;
    }
    *cursor = cursor.wrapping_add(1);
    let start = *cursor % n;
    let mut best = &candidates[start];
    for offset in 1..n {
        let c = &candidates[(start + offset) % n];
        // c.load / c.weight < best.load / best.weight, without division.
        if (c.load as u128) * (best.weight as u128) < (best.load as u128) * (c.weight as u128) {
            best = c;
        }
    }
    Some(best.index)
}

/// Weighted rendezvous (highest random weight) hashing of the client IP:
/// a client keeps its backend as long as that backend is eligible, and when
/// one leaves only its clients move. Hand-written: it is a dozen lines, and
/// the ring-based crates carry more than this needs.
fn rendezvous(candidates: &[Candidate], client: IpAddr) -> Option<usize> {
    candidates
        .iter()
        .map(|c| (score(client, c), c.index))
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, index)| index)
}

fn score(client: IpAddr, c: &Candidate) -> f64 {
    // DefaultHasher::new() has fixed keys: the same client maps the same way
    // on every balancer node and across restarts.
    let mut h = std::hash::DefaultHasher::new();
    client.hash(&mut h);
    c.key.hash(&mut h);
    let u = (h.finish() >> 11) as f64 / (1u64 << 53) as f64; // uniform in [0, 1)
    let u = u.max(f64::MIN_POSITIVE);
    -(c.weight as f64) / u.ln()
}

/// Power of two choices: two distinct random candidates, the less loaded
/// (per weight) wins. Nearly as even as least-conn without a global scan.
fn two_choices(candidates: &[Candidate], rng: &mut impl Rng) -> Option<usize> {
    match candidates.len() {
        0 => None,
        1 => Some(candidates[0].index),
        n => {
            let a = rng.random_range(0..n);
            let b = (a + rng.random_range(1..n)) % n;
            let (x, y) = (&candidates[a], &candidates[b]);
            let x_lighter =
                (x.load as u128) * (y.weight as u128) <= (y.load as u128) * (x.weight as u128);
            Some(if x_lighter { x.index } else { y.index })
        }
    }
}

/// Stable 64-bit identity of a backend address for hashing.
pub fn key_of(addr: &std::net::SocketAddr) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    addr.hash(&mut h);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cands(weights: &[u64]) -> Vec<Candidate> {
        weights
            .iter()
            .enumerate()
            .map(|(i, w)| Candidate {
                index: i,
                weight: *w,
                load: 0,
                key: key_of(&std::net::SocketAddr::from((
                    [192, 0, 2, i as u8 + 1],
                    8080,
                ))),
            })
            .collect()
    }

    fn counts(picks: impl Iterator<Item = usize>, n: usize) -> Vec<usize> {
        let mut c = vec![0; n];
        for p in picks {
            c[p] += 1;
        }
        c
    }

    #[test]
    fn round_robin_is_smooth_and_weighted() {
        let c = cands(&[5, 1, 1]);
        let mut rr = vec![0; 3];
        let seq: Vec<usize> = (0..7)
            .map(|_| smooth_round_robin(&c, &mut rr).unwrap())
            .collect();
        assert_eq!(seq, [0, 0, 1, 0, 2, 0, 0]);
        let total = counts(
            (0..7000).map(|_| smooth_round_robin(&c, &mut rr).unwrap()),
            3,
        );
        assert_eq!(total, [5000, 1000, 1000]);
    }

    #[test]
    fn least_conn_prefers_the_least_loaded_per_weight() {
        let mut c = cands(&[1, 1, 2]);
        c[0].load = 3;
        c[1].load = 1;
        c[2].load = 3; // 1.5 per weight
        let mut cursor = 0;
        assert_eq!(least_loaded(&c, &mut cursor), Some(1));
        c[1].load = 2; // now 2 vs 1.5
        assert_eq!(least_loaded(&c, &mut cursor), Some(2));
        // Ties rotate.
        let even = cands(&[1, 1, 1]);
        let picks = counts(
            (0..300).map(|_| least_loaded(&even, &mut cursor).unwrap()),
            3,
        );
        assert_eq!(picks, [100, 100, 100]);
    }

    #[test]
    fn source_hash_is_sticky_and_moves_only_the_leavers_clients() {
        let c = cands(&[1, 1, 1, 1]);
        let clients: Vec<IpAddr> = (0..2000u32)
            .map(|i| IpAddr::from([198, 51, (i >> 8) as u8, i as u8]))
            .collect();
        let before: Vec<usize> = clients
            .iter()
            .map(|ip| rendezvous(&c, *ip).unwrap())
            .collect();
        let again: Vec<usize> = clients
            .iter()
            .map(|ip| rendezvous(&c, *ip).unwrap())
            .collect();
        assert_eq!(before, again, "deterministic");
        let spread = counts(before.iter().copied(), 4);
        assert!(spread.iter().all(|n| (400..600).contains(n)), "{spread:?}");
        // Backend 2 leaves: only its clients move.
        let without: Vec<Candidate> = c.iter().copied().filter(|x| x.index != 2).collect();
        for (ip, was) in clients.iter().zip(&before) {
            let now = rendezvous(&without, *ip).unwrap();
            if *was != 2 {
                assert_eq!(now, *was, "client {ip} moved although its backend stayed");
            }
        }
    }

    #[test]
    fn source_hash_honours_weights() {
        let c = cands(&[3, 1]);
        let picks = counts(
            (0..8000u32).map(|i| rendezvous(&c, IpAddr::from(i.to_be_bytes())).unwrap()),
            2,
        );
        let share = picks[0] as f64 / 8000.0;
        assert!((0.70..0.80).contains(&share), "{picks:?}");
    }

    #[test]
    fn two_choices_avoids_the_loaded_backend() {
        let mut c = cands(&[1, 1, 1]);
        c[0].load = 100;
        let mut rng = rand::rng();
        let picks = counts((0..3000).map(|_| two_choices(&c, &mut rng).unwrap()), 3);
        // Backend 0 wins only when both draws are... never: two distinct
        // draws always include a lighter one.
        assert_eq!(picks[0], 0, "{picks:?}");
        assert!(picks[1] > 1200 && picks[2] > 1200, "{picks:?}");
    }
}
