//! Byte ranges (RFC 9110 §14). ServeDir serves one range and answers 416 to
//! more; here the whole `Range` header is judged first, with the limits
//! RFC 9110 §14.2 permits a server to set (the "Apache Killer" requests of
//! CVE-2011-3192 asked for thousands of overlapping ranges).

use hyper::header::HeaderValue;

/// More ranges than this and the header is ignored (nginx's `max_ranges`
/// does the same): a 200 with the whole file is always a correct answer.
pub const MAX_RANGES: usize = 16;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// No usable Range header: send the whole file.
    Full,
    /// Inclusive byte ranges, in the order the client listed them.
    Partial(Vec<(u64, u64)>),
    /// Valid syntax, but none of the ranges lies within the file: 416.
    Unsatisfiable,
}

pub fn decide(header: Option<&HeaderValue>, size: u64) -> Decision {
    let Some(text) = header.and_then(|h| h.to_str().ok()) else {
        return Decision::Full;
    };
    let Some(specs) = parse(text) else {
        // Unknown unit or bad syntax: the header is ignored (§14.2).
        return Decision::Full;
    };
    if specs.len() > MAX_RANGES {
        return Decision::Full;
    }
    let ranges: Vec<(u64, u64)> = specs.iter().filter_map(|s| s.resolve(size)).collect();
    if ranges.is_empty() {
        return Decision::Unsatisfiable;
    }
    // Overlapping ranges ask for the same bytes twice: refuse the game and
    // send the file once.
    let mut sorted = ranges.clone();
    sorted.sort_unstable();
    if sorted.windows(2).any(|w| w[1].0 <= w[0].1) {
        return Decision::Full;
    }
    Decision::Partial(ranges)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Spec {
    /// `first-last` or `first-`.
    From { first: u64, last: Option<u64> },
    /// `-n`: the last n bytes.
    Suffix(u64),
}

impl Spec {
    /// The inclusive range within a file of `size` bytes, if any.
    fn resolve(self, size: u64) -> Option<(u64, u64)> {
        match self {
            Spec::From { first, last } if first < size => {
                Some((first, last.map_or(size - 1, |l| l.min(size - 1))))
            }
            Spec::Suffix(n) if n > 0 && size > 0 => Some((size - n.min(size), size - 1)),
            _ => None,
        }
    }
}

/// `bytes=0-99, 200-, -50` -> specs; `None` for any syntax error, so a
/// malformed header is ignored as a whole.
fn parse(text: &str) -> Option<Vec<Spec>> {
    let (unit, set) = text.split_once('=')?;
    if !unit.trim().eq_ignore_ascii_case("bytes") {
        return None;
    }
    let mut specs = Vec::new();
    for item in set.split(',') {
        let item = item.trim();
        if item.is_empty() {
            continue; // `1-2,,3-4` is allowed by the list syntax
        }
        if specs.len() > MAX_RANGES {
            break; // decided already; don't parse a megabyte of ranges
        }
        let (first, last) = item.split_once('-')?;
        let spec = if first.is_empty() {
            Spec::Suffix(number(last)?)
        } else {
            let first = number(first)?;
            let last = if last.is_empty() {
                None
            } else {
                Some(number(last)?)
            };
            if last.is_some_and(|l| l < first) {
                return None;
            }
            Spec::From { first, last }
        };
        specs.push(spec);
    }
    (!specs.is_empty()).then_some(specs)
}

fn number(s: &str) -> Option<u64> {
    (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.parse().ok())
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(value: &str, size: u64) -> Decision {
        decide(Some(&HeaderValue::from_str(value).unwrap()), size)
    }

    #[test]
    fn single_ranges() {
        assert_eq!(d("bytes=0-9", 100), Decision::Partial(vec![(0, 9)]));
        assert_eq!(d("bytes=90-", 100), Decision::Partial(vec![(90, 99)]));
        assert_eq!(d("bytes=90-1000", 100), Decision::Partial(vec![(90, 99)]));
        assert_eq!(d("bytes=-10", 100), Decision::Partial(vec![(90, 99)]));
        assert_eq!(d("bytes=-1000", 100), Decision::Partial(vec![(0, 99)]));
        assert_eq!(d("BYTES = 5-5", 100), Decision::Partial(vec![(5, 5)]));
    }

    #[test]
    fn several_ranges_keep_their_order() {
        assert_eq!(
            d("bytes=50-59, 0-9,-5", 100),
            Decision::Partial(vec![(50, 59), (0, 9), (95, 99)])
        );
        // Adjacent is not overlapping.
        assert_eq!(
            d("bytes=0-9,10-19", 100),
            Decision::Partial(vec![(0, 9), (10, 19)])
        );
        // Unsatisfiable members are dropped, the rest served.
        assert_eq!(d("bytes=0-9,500-600", 100), Decision::Partial(vec![(0, 9)]));
    }

    #[test]
    fn unsatisfiable() {
        assert_eq!(d("bytes=100-", 100), Decision::Unsatisfiable);
        assert_eq!(d("bytes=200-300,400-", 100), Decision::Unsatisfiable);
        assert_eq!(d("bytes=-0", 100), Decision::Unsatisfiable);
        assert_eq!(d("bytes=0-", 0), Decision::Unsatisfiable);
        assert_eq!(d("bytes=-5", 0), Decision::Unsatisfiable);
    }

    #[test]
    fn abuse_and_nonsense_get_the_whole_file() {
        assert_eq!(d("bytes=0-9,5-15", 100), Decision::Full, "overlap");
        assert_eq!(d("bytes=0-,0-", 100), Decision::Full, "overlap");
        let many: Vec<String> = (0..17).map(|i| format!("{}-{}", i * 2, i * 2)).collect();
        assert_eq!(d(&format!("bytes={}", many.join(",")), 100), Decision::Full);
        let ok: Vec<String> = (0..16).map(|i| format!("{}-{}", i * 2, i * 2)).collect();
        assert!(
            matches!(d(&format!("bytes={}", ok.join(",")), 100), Decision::Partial(r) if r.len() == 16)
        );
        for bad in [
            "items=0-9",
            "bytes=9-0",
            "bytes=a-b",
            "bytes=",
            "bytes=-",
            "0-9",
            "bytes=1-2-3",
            "bytes=+1-2",
        ] {
            assert_eq!(d(bad, 100), Decision::Full, "{bad}");
        }
        assert_eq!(decide(None, 100), Decision::Full);
    }
}
