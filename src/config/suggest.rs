//! "did you mean `address`?": the closest known word to a typo.

/// The candidate nearest to `word` by edit distance, if it is near enough to
/// be a plausible typo rather than a different word altogether.
pub fn closest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let word = word.to_lowercase();
    // Short words need a tight bound or every two-letter key "suggests" `db`.
    let limit = match word.chars().count() {
        0..=3 => 1,
        4..=8 => 2,
        n => n / 3,
    };
    candidates
        .iter()
        .map(|c| (distance(&word, c), *c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Levenshtein distance, counting a swap of two neighbours as one edit
/// (optimal string alignment), since `hostnmae` is one slip, not two.
fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let width = b.len() + 1;
    let mut d = vec![0usize; (a.len() + 1) * width];
    for (i, cell) in d.iter_mut().step_by(width).enumerate() {
        *cell = i;
    }
    for (j, cell) in d.iter_mut().take(width).enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[(i - 1) * width + j] + 1)
                .min(d[i * width + j - 1] + 1)
                .min(d[(i - 1) * width + j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[(i - 2) * width + j - 2] + 1);
            }
            d[i * width + j] = best;
        }
    }
    d[a.len() * width + b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_near_typos_only() {
        let keys = ["hostname", "address", "roles", "admin_port", "db", "web"];
        assert_eq!(closest("adress", &keys), Some("address"));
        assert_eq!(closest("hostnmae", &keys), Some("hostname"));
        assert_eq!(closest("role", &keys), Some("roles"));
        assert_eq!(closest("Address", &keys), Some("address"));
        assert_eq!(closest("ip", &keys), None);
        assert_eq!(closest("colour", &keys), None);
    }
}
