//! Which precompressed sibling a client gets: `Accept-Encoding` parsed into
//! q-values for the codings we keep files for. We pick the variant ourselves
//! (rather than leaving it to ServeDir) because the ETag and the conditional
//! checks must describe exactly the bytes that will be sent.

use hyper::header::{ACCEPT_ENCODING, HeaderMap};

/// The representations a file may have on disk, least preferred first: at
/// equal q-value the smaller brotli file wins over gzip over the original.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Encoding {
    Identity,
    Gzip,
    Brotli,
}

impl Encoding {
    /// The precompressed variants we look for, in the order we stat them.
    pub const COMPRESSED: [Encoding; 2] = [Encoding::Brotli, Encoding::Gzip];

    /// The file name suffix of this variant's sibling (`style.css.br`).
    pub fn suffix(self) -> &'static str {
        match self {
            Encoding::Identity => "",
            Encoding::Gzip => ".gz",
            Encoding::Brotli => ".br",
        }
    }

    /// The coding's token in `Accept-Encoding` / `Content-Encoding`.
    pub fn token(self) -> &'static str {
        match self {
            Encoding::Identity => "identity",
            Encoding::Gzip => "gzip",
            Encoding::Brotli => "br",
        }
    }
}

/// q-values in thousandths (RFC 9110 §12.4.2 allows three decimals), per
/// coding we can serve. 0 = not acceptable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Accepted {
    brotli: u16,
    gzip: u16,
    identity: u16,
}

impl Accepted {
    /// No `Accept-Encoding` at all: the original only (RFC 9110 §12.5.3 says
    /// any coding is acceptable then, but no client means that and curl or a
    /// health checker would get bytes it cannot read).
    pub const IDENTITY_ONLY: Accepted = Accepted {
        brotli: 0,
        gzip: 0,
        identity: 1000,
    };

    pub fn from_headers(headers: &HeaderMap) -> Accepted {
        let mut values = headers.get_all(ACCEPT_ENCODING).iter().peekable();
        if values.peek().is_none() {
            return Accepted::IDENTITY_ONLY;
        }
        let (mut br, mut gz, mut id, mut star) = (None, None, None, None);
        for value in values {
            let Ok(value) = value.to_str() else { continue };
            for item in value.split(',') {
                let mut params = item.split(';');
                let coding = params.next().unwrap_or("").trim();
                let q = params
                    .filter_map(|p| p.trim().strip_prefix("q=").or(p.trim().strip_prefix("Q=")))
                    .find_map(parse_q)
                    .unwrap_or(1000);
                let slot = if coding.eq_ignore_ascii_case("br") {
                    &mut br
                } else if coding.eq_ignore_ascii_case("gzip")
                    || coding.eq_ignore_ascii_case("x-gzip")
                {
                    &mut gz
                } else if coding.eq_ignore_ascii_case("identity") {
                    &mut id
                } else if coding == "*" {
                    &mut star
                } else {
                    continue;
                };
                *slot = Some(q);
            }
        }
        // `*` covers every coding not named; identity stays acceptable unless
        // refused by name or by `*;q=0`.
        Accepted {
            brotli: br.or(star).unwrap_or(0),
            gzip: gz.or(star).unwrap_or(0),
            identity: id.or(star).unwrap_or(1000),
        }
    }

    pub fn q(&self, encoding: Encoding) -> u16 {
        match encoding {
            Encoding::Identity => self.identity,
            Encoding::Gzip => self.gzip,
            Encoding::Brotli => self.brotli,
        }
    }

    /// The best of the variants that exist on disk. The original is the
    /// fallback even when the client refused it: a 406 would help nobody.
    pub fn choose(&self, available: impl IntoIterator<Item = Encoding>) -> Encoding {
        available
            .into_iter()
            .filter(|e| self.q(*e) > 0)
            .max_by_key(|e| (self.q(*e), *e))
            .unwrap_or(Encoding::Identity)
    }
}

/// `0`, `0.5`, `1.000` -> thousandths; anything else is not a q-value.
fn parse_q(s: &str) -> Option<u16> {
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let whole: u16 = match int {
        "0" => 0,
        "1" => 1000,
        _ => return None,
    };
    let mut thousandths = 0u16;
    for (i, b) in frac
        .bytes()
        .chain(std::iter::repeat(b'0'))
        .take(3)
        .enumerate()
    {
        thousandths += u16::from(b - b'0') * [100, 10, 1][i];
    }
    if whole == 1000 && thousandths > 0 {
        return None;
    }
    Some(whole + thousandths)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    fn accepted(value: &str) -> Accepted {
        let mut h = HeaderMap::new();
        h.insert(ACCEPT_ENCODING, HeaderValue::from_str(value).unwrap());
        Accepted::from_headers(&h)
    }

    const ALL: [Encoding; 3] = [Encoding::Identity, Encoding::Gzip, Encoding::Brotli];

    #[test]
    fn browsers_get_brotli_when_it_exists() {
        let a = accepted("gzip, deflate, br, zstd");
        assert_eq!(a.choose(ALL), Encoding::Brotli);
        assert_eq!(
            a.choose([Encoding::Identity, Encoding::Gzip]),
            Encoding::Gzip
        );
        assert_eq!(a.choose([Encoding::Identity]), Encoding::Identity);
    }

    #[test]
    fn q_values_rank_before_preference() {
        assert_eq!(accepted("br;q=0.5, gzip").choose(ALL), Encoding::Gzip);
        assert_eq!(accepted("br;q=0, gzip;q=0").choose(ALL), Encoding::Identity);
        assert_eq!(
            accepted("identity;q=0.1, gzip;q=0.2").choose(ALL),
            Encoding::Gzip
        );
        assert_eq!(accepted("*").choose(ALL), Encoding::Brotli);
        assert_eq!(accepted("*;q=0.5, br;q=0").choose(ALL), Encoding::Gzip);
        assert_eq!(accepted("x-gzip").choose(ALL), Encoding::Gzip);
    }

    #[test]
    fn no_header_or_identity_means_the_original() {
        assert_eq!(
            Accepted::from_headers(&HeaderMap::new()).choose(ALL),
            Encoding::Identity
        );
        assert_eq!(accepted("identity").choose(ALL), Encoding::Identity);
        assert_eq!(accepted("").choose(ALL), Encoding::Identity);
    }

    #[test]
    fn parses_q_values_strictly() {
        assert_eq!(parse_q("1"), Some(1000));
        assert_eq!(parse_q("1.000"), Some(1000));
        assert_eq!(parse_q("0.25"), Some(250));
        assert_eq!(parse_q("0"), Some(0));
        assert_eq!(parse_q("1.5"), None);
        assert_eq!(parse_q("0.1234"), None);
        assert_eq!(parse_q("2"), None);
        assert_eq!(parse_q("x"), None);
    }
}
