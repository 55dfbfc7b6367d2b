//! Conditional requests (RFC 9110 §13): If-Match, If-Unmodified-Since,
//! If-None-Match, If-Modified-Since and If-Range, evaluated in the order of
//! §13.2.2. ServeDir only knows the two date headers and would answer 304 to
//! an If-Modified-Since even when an If-None-Match (which takes precedence)
//! does not match, so all of it is decided here and ServeDir never sees a
//! conditional header.

use hyper::header::{
    HeaderMap, HeaderValue, IF_MATCH, IF_MODIFIED_SINCE, IF_NONE_MATCH, IF_RANGE,
    IF_UNMODIFIED_SINCE,
};

use crate::web::httpdate;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Serve; `honor_range` is false when If-Range did not match (send all).
    Proceed {
        honor_range: bool,
    },
    NotModified,
    PreconditionFailed,
}

/// `etag` is the current strong tag, `modified` the Last-Modified second.
/// Only called for GET and HEAD.
pub fn evaluate(headers: &HeaderMap, etag: &str, modified: u64) -> Outcome {
    // 1. If-Match, else 2. If-Unmodified-Since.
    if headers.contains_key(IF_MATCH) {
        if !any_tag_matches(headers, IF_MATCH, etag, Comparison::Strong) {
            return Outcome::PreconditionFailed;
        }
    } else if let Some(since) = date(headers, IF_UNMODIFIED_SINCE) {
        if modified > since {
            return Outcome::PreconditionFailed;
        }
    }
    // 3. If-None-Match, else 4. If-Modified-Since.
    if headers.contains_key(IF_NONE_MATCH) {
        if any_tag_matches(headers, IF_NONE_MATCH, etag, Comparison::Weak) {
            return Outcome::NotModified;
        }
    } else if let Some(since) = date(headers, IF_MODIFIED_SINCE) {
        if modified <= since {
            return Outcome::NotModified;
        }
    }
    // 5. If-Range decides whether a Range is honoured at all.
    let honor_range = match headers.get(IF_RANGE) {
        None => true,
        Some(value) => if_range_matches(value, etag, modified),
    };
    Outcome::Proceed { honor_range }
}

#[derive(Clone, Copy)]
enum Comparison {
    Strong,
    Weak,
}

fn any_tag_matches(
    headers: &HeaderMap,
    name: hyper::header::HeaderName,
    etag: &str,
    how: Comparison,
) -> bool {
    headers.get_all(name).iter().any(|value| {
        let Ok(text) = value.to_str() else {
            return false;
        };
        if text.trim() == "*" {
            return true; // the file exists, which is all `*` asks
        }
        EntityTags::new(text).any(|(weak, tag)| {
            tag == etag
                && match how {
                    Comparison::Strong => !weak,
                    Comparison::Weak => true,
                }
        })
    })
}

/// If-Range holds one validator: an entity tag (compared strongly; a weak
/// tag never matches) or a date, which must equal Last-Modified exactly.
fn if_range_matches(value: &HeaderValue, etag: &str, modified: u64) -> bool {
    let Ok(text) = value.to_str() else {
        return false;
    };
    let text = text.trim();
    if text.starts_with('"') || text.starts_with("W/") {
        let mut tags = EntityTags::new(text);
        matches!(tags.next(), Some((false, tag)) if tag == etag) && tags.next().is_none()
    } else {
        httpdate::parse(text) == Some(modified)
    }
}

fn date(headers: &HeaderMap, name: hyper::header::HeaderName) -> Option<u64> {
    // An invalid date is ignored (RFC 9110 §13.1.3), as if absent.
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .and_then(httpdate::parse)
}

/// Iterates `W/"a", "b"` as (weak, `"a"`) pairs, quotes kept so they
/// compare against our tag as sent. Stops at the first malformed item.
struct EntityTags<'a> {
    rest: &'a str,
}

impl<'a> EntityTags<'a> {
    fn new(text: &'a str) -> Self {
        EntityTags { rest: text }
    }
}

impl<'a> Iterator for EntityTags<'a> {
    type Item = (bool, &'a str);

    fn next(&mut self) -> Option<Self::Item> {
        let s = self.rest.trim_start_matches([' ', '\t', ',']);
        let (weak, s) = match s.strip_prefix("W/") {
            Some(r) => (true, r),
            None => (false, s),
        };
        if !s.starts_with('"') {
            self.rest = "";
            return None;
        }
        let close = s[1..].find('"')? + 2;
        self.rest = &s[close..];
        Some((weak, &s[..close]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TAG: &str = "\"10-abc-7\"";
    const MODIFIED: u64 = 784_111_777; // Sun, 06 Nov 1994 08:49:37 GMT

    fn eval(pairs: &[(&str, &str)]) -> Outcome {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                hyper::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        evaluate(&h, TAG, MODIFIED)
    }

    const SERVE: Outcome = Outcome::Proceed { honor_range: true };
    const FULL: Outcome = Outcome::Proceed { honor_range: false };

    #[test]
    fn if_none_match() {
        assert_eq!(eval(&[("if-none-match", TAG)]), Outcome::NotModified);
        assert_eq!(
            eval(&[("if-none-match", "W/\"10-abc-7\"")]),
            Outcome::NotModified
        );
        assert_eq!(
            eval(&[("if-none-match", "\"x\", \"10-abc-7\"")]),
            Outcome::NotModified
        );
        assert_eq!(
            eval(&[("if-none-match", "\"x\""), ("if-none-match", TAG)]),
            Outcome::NotModified
        );
        assert_eq!(eval(&[("if-none-match", "*")]), Outcome::NotModified);
        assert_eq!(eval(&[("if-none-match", "\"other\"")]), SERVE);
    }

    #[test]
    fn if_none_match_overrides_if_modified_since() {
        let date = "Sun, 06 Nov 1994 08:49:37 GMT";
        assert_eq!(eval(&[("if-modified-since", date)]), Outcome::NotModified);
        assert_eq!(
            eval(&[("if-none-match", "\"other\""), ("if-modified-since", date)]),
            SERVE
        );
        assert_eq!(
            eval(&[("if-modified-since", "Sun, 06 Nov 1994 08:49:36 GMT")]),
            SERVE
        );
        assert_eq!(eval(&[("if-modified-since", "garbage")]), SERVE);
    }

    #[test]
    fn if_match_and_if_unmodified_since() {
        assert_eq!(eval(&[("if-match", TAG)]), SERVE);
        assert_eq!(eval(&[("if-match", "*")]), SERVE);
        assert_eq!(
            eval(&[("if-match", "W/\"10-abc-7\"")]),
            Outcome::PreconditionFailed
        );
        assert_eq!(
            eval(&[("if-match", "\"other\"")]),
            Outcome::PreconditionFailed
        );
        assert_eq!(
            eval(&[("if-unmodified-since", "Sun, 06 Nov 1994 08:49:36 GMT")]),
            Outcome::PreconditionFailed
        );
        assert_eq!(
            eval(&[("if-unmodified-since", "Sun, 06 Nov 1994 08:49:37 GMT")]),
            SERVE
        );
    }

    #[test]
    fn if_range() {
        assert_eq!(eval(&[("if-range", TAG)]), SERVE);
        assert_eq!(eval(&[("if-range", "\"other\"")]), FULL);
        assert_eq!(eval(&[("if-range", "W/\"10-abc-7\"")]), FULL);
        assert_eq!(
            eval(&[("if-range", "Sun, 06 Nov 1994 08:49:37 GMT")]),
            SERVE
        );
        assert_eq!(eval(&[("if-range", "Sun, 06 Nov 1994 08:49:38 GMT")]), FULL);
        assert_eq!(eval(&[("if-range", "nonsense")]), FULL);
    }

    #[test]
    fn entity_tag_lists() {
        let tags: Vec<_> = EntityTags::new("W/\"a\", \"b,c\" ,\"d\"").collect();
        assert_eq!(
            tags,
            vec![(true, "\"a\""), (false, "\"b,c\""), (false, "\"d\"")]
        );
        assert_eq!(EntityTags::new("\"unterminated").count(), 0);
        assert_eq!(EntityTags::new("bare").count(), 0);
    }
}
