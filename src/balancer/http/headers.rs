//! Header rewriting, pure functions over `HeaderMap`: hop-by-hop headers are
//! dropped in both directions (RFC 9110 §7.6.1), and requests gain
//! X-Forwarded-For/-Proto/-Host, RFC 7239 `Forwarded` and `Via` so the web
//! role knows who really asked (`Forwarding`, written as the head is
//! encoded).

use std::net::IpAddr;

use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Always connection-scoped, whatever `Connection` says: the fixed list of
/// RFC 9110 §7.6.1 (plus `proxy-connection`), every `Proxy-*`, and the bare
/// `Proxy` (the "httpoxy" vector).
fn always_hop_by_hop(name: &str) -> bool {
    matches!(
        name,
        "connection" | "keep-alive" | "te" | "trailer" | "transfer-encoding" | "upgrade" | "proxy"
    ) || name.starts_with("proxy-")
}

/// Removes hop-by-hop headers: the fixed list, every `Proxy-*` (and the bare
/// `Proxy`), and whatever `Connection` names. With `upgrade` set,
/// `Connection: upgrade` and `Upgrade` are kept, because passing them on is
/// how the upgrade reaches the other side.
///
/// Every request and response goes through here, and most carry none of
/// these (`Connection` itself is hop-by-hop, so nothing can be named without
/// it): one pass over the names settles that case without allocating.
pub fn strip_hop_by_hop(headers: &mut HeaderMap, upgrade: bool) {
    if headers.keys().any(|k| always_hop_by_hop(k.as_str())) {
        let mut doomed: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
            .collect();
        doomed.extend(
            headers
                .keys()
                .filter(|k| always_hop_by_hop(k.as_str()))
                .cloned(),
        );
        for name in doomed {
            if !(upgrade && (name == header::UPGRADE || name == header::CONNECTION)) {
                headers.remove(name);
            }
        }
    }
    if upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
}

/// Whether a request asks to switch protocols (WebSocket and friends):
/// `Connection: upgrade` plus an `Upgrade` header.
pub fn wants_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
}

/// The client's part of the forwarding headers, formatted once per
/// connection rather than once per request.
#[derive(Debug, Clone)]
pub struct Client {
    /// The X-Forwarded-For item: `192.0.2.7`, `2001:db8::7`.
    addr: HeaderValue,
    /// The start of the `Forwarded` element: `for=192.0.2.7`,
    /// `for="[2001:db8::7]"`.
    forwarded_for: String,
}

impl Client {
    pub fn new(ip: IpAddr) -> Client {
        let text = ip.to_string();
        let forwarded_for = match ip {
            IpAddr::V4(_) => format!("for={text}"),
            IpAddr::V6(_) => format!("for=\"[{text}]\""),
        };
        Client {
            addr: HeaderValue::from_str(&text).expect("an IP address is a valid header value"),
            forwarded_for,
        }
    }
}

/// Who asked and how, for the forwarding headers.
#[derive(Debug, Clone)]
pub struct Origin<'a> {
    pub client: &'a Client,
    /// "http" or "https": the scheme the client used to reach us.
    pub proto: &'static str,
    /// The Host the client asked for (`Host` header or h2 `:authority`).
    pub host: Option<HeaderValue>,
}

/// The forwarding headers a request gains: the client is appended to
/// X-Forwarded-For and to `Forwarded`, X-Forwarded-Proto and -Host are set
/// (overwriting: only we know them), and `Via` gains us. Existing
/// X-Forwarded-For entries are kept, as HAProxy's `option forwardfor` does;
/// the backend decides how far to trust them.
///
/// They are written straight into the encoded head (`write`), not inserted
/// into the request's `HeaderMap`: five inserts hashed five names and, for
/// a request with few headers, grew the map, about a thirtieth of a proxied
/// request's cost (callgrind, `scripts/profile-proxy`).
#[derive(Debug)]
pub struct Forwarding<'a> {
    client: &'a Client,
    proto: &'static str,
    /// The Host, when it is visible ASCII (and so can be quoted).
    host: Option<HeaderValue>,
    /// What the client sent of these headers itself, to append to; `None`
    /// for nearly every request, which sends none.
    prior: Option<Box<Prior>>,
}

/// The client's own forwarding lists, each joined into one line.
#[derive(Debug, Default)]
struct Prior {
    x_forwarded_for: String,
    forwarded: String,
    via: String,
}

impl<'a> Forwarding<'a> {
    /// Takes the client's own forwarding headers out of `headers` (to be
    /// appended to or replaced when written).
    pub fn take(headers: &mut HeaderMap, origin: Origin<'a>) -> Forwarding<'a> {
        let sent_some = headers.keys().any(|k| {
            matches!(
                k.as_str(),
                "x-forwarded-for" | "x-forwarded-proto" | "x-forwarded-host" | "forwarded" | "via"
            )
        });
        let prior = sent_some.then(|| {
            let prior = Prior {
                x_forwarded_for: joined(headers, &X_FORWARDED_FOR),
                forwarded: joined(headers, &header::FORWARDED),
                via: joined(headers, &header::VIA),
            };
            for name in [
                X_FORWARDED_FOR,
                X_FORWARDED_PROTO,
                X_FORWARDED_HOST,
                header::FORWARDED,
                header::VIA,
            ] {
                headers.remove(name);
            }
            Box::new(prior)
        });
        Forwarding {
            client: origin.client,
            proto: origin.proto,
            host: origin.host.filter(|h| h.to_str().is_ok()),
            prior,
        }
    }

    /// Appends the header lines (each ending in CRLF) to an encoded head.
    pub fn write(&self, out: &mut Vec<u8>) {
        let prior = self.prior.as_deref();
        out.extend_from_slice(b"x-forwarded-for: ");
        push_prior(out, prior.map(|p| p.x_forwarded_for.as_str()));
        out.extend_from_slice(self.client.addr.as_bytes());
        out.extend_from_slice(b"\r\nx-forwarded-proto: ");
        out.extend_from_slice(self.proto.as_bytes());
        if let Some(host) = &self.host {
            out.extend_from_slice(b"\r\nx-forwarded-host: ");
            out.extend_from_slice(host.as_bytes());
        }
        out.extend_from_slice(b"\r\nforwarded: ");
        push_prior(out, prior.map(|p| p.forwarded.as_str()));
        out.extend_from_slice(self.client.forwarded_for.as_bytes());
        if let Some(host) = self.host.as_ref().and_then(|h| h.to_str().ok()) {
            out.extend_from_slice(b";host=");
            push_token_or_quoted(out, host);
        }
        out.extend_from_slice(b";proto=");
        out.extend_from_slice(self.proto.as_bytes());
        out.extend_from_slice(b"\r\nvia: ");
        push_prior(out, prior.map(|p| p.via.as_str()));
        out.extend_from_slice(b"1.1 piha\r\n");
    }
}

/// Every value of a list header as one line: trimmed, empty items dropped.
fn joined(headers: &HeaderMap, name: &HeaderName) -> String {
    let items: Vec<&str> = headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .collect();
    items.join(", ")
}

/// The earlier items of a list and the separator before ours, if any.
fn push_prior(out: &mut Vec<u8>, prior: Option<&str>) {
    if let Some(p) = prior.filter(|p| !p.is_empty()) {
        out.extend_from_slice(p.as_bytes());
        out.extend_from_slice(b", ");
    }
}

/// RFC 7239 values are tokens or quoted strings; a host with a port has a
/// colon, which is not a token character.
fn push_token_or_quoted(out: &mut Vec<u8>, value: &str) {
    let token = !value.is_empty()
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if token {
        out.extend_from_slice(value.as_bytes());
    } else {
        out.push(b'"');
        for b in value.bytes() {
            if b == b'\\' || b == b'"' {
                out.push(b'\\');
            }
            out.push(b);
        }
        out.push(b'"');
    }
}

/// HTTP/2 splits `Cookie` into one field per crumb; HTTP/1 wants one line
/// joined with "; " (RFC 9113 §8.2.3).
pub fn join_cookies(headers: &mut HeaderMap) {
    if headers.get_all(header::COOKIE).iter().nth(1).is_none() {
        return;
    }
    let joined: Vec<&str> = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    if let Ok(v) = HeaderValue::from_str(&joined.join("; ")) {
        headers.insert(header::COOKIE, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn hop_by_hop_headers_go_including_those_connection_names() {
        let mut h = map(&[
            ("connection", "keep-alive, X-Secret"),
            ("x-secret", "1"),
            ("keep-alive", "timeout=5"),
            ("proxy-authorization", "Basic x"),
            ("proxy", "http://evil"),
            ("te", "trailers"),
            ("trailer", "x"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("x-kept", "yes"),
        ]);
        strip_hop_by_hop(&mut h, false);
        let left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, ["x-kept"]);
    }

    #[test]
    fn an_upgrade_keeps_its_upgrade_headers_only() {
        let mut h = map(&[
            ("connection", "Upgrade, keep-alive"),
            ("upgrade", "websocket"),
            ("keep-alive", "timeout=5"),
            ("sec-websocket-key", "abc"),
        ]);
        assert!(wants_upgrade(&h));
        strip_hop_by_hop(&mut h, true);
        assert_eq!(h["connection"], "upgrade");
        assert_eq!(h["upgrade"], "websocket");
        assert!(h.get("keep-alive").is_none());
        assert!(h.get("sec-websocket-key").is_some());
        assert!(!wants_upgrade(&map(&[("upgrade", "websocket")])));
    }

    /// The forwarding lines as a backend gets them, and what is left of
    /// the client's headers.
    fn forward(mut h: HeaderMap, origin: Origin<'_>) -> (Vec<String>, HeaderMap) {
        let f = Forwarding::take(&mut h, origin);
        let mut out = Vec::new();
        f.write(&mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(text.ends_with("\r\n"));
        let lines = text.split_terminator("\r\n").map(str::to_owned).collect();
        (lines, h)
    }

    #[test]
    fn forwarding_headers_append_and_quote() {
        let h = map(&[
            ("x-forwarded-for", "192.0.2.9"),
            ("forwarded", "for=192.0.2.9"),
            ("x-forwarded-proto", "gopher"),
            ("x-forwarded-host", "evil.example"),
            ("via", "1.0 squid"),
            ("x-kept", "yes"),
        ]);
        let client = Client::new("2001:db8::7".parse().unwrap());
        let origin = Origin {
            client: &client,
            proto: "https",
            host: Some(HeaderValue::from_static("example.org:8443")),
        };
        let (lines, left) = forward(h, origin);
        assert_eq!(
            lines,
            [
                "x-forwarded-for: 192.0.2.9, 2001:db8::7",
                "x-forwarded-proto: https",
                "x-forwarded-host: example.org:8443",
                "forwarded: for=192.0.2.9, for=\"[2001:db8::7]\";host=\"example.org:8443\";proto=https",
                "via: 1.0 squid, 1.1 piha",
            ]
        );
        let left: Vec<&str> = left.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, ["x-kept"], "the client's own copies are replaced");
    }

    #[test]
    fn forwarding_headers_on_a_plain_request() {
        let h = map(&[("host", "example.org")]);
        let client = Client::new("192.0.2.9".parse().unwrap());
        let host = h["host"].clone();
        let origin = Origin {
            client: &client,
            proto: "http",
            host: Some(host),
        };
        let (lines, left) = forward(h, origin);
        assert_eq!(
            lines,
            [
                "x-forwarded-for: 192.0.2.9",
                "x-forwarded-proto: http",
                "x-forwarded-host: example.org",
                "forwarded: for=192.0.2.9;host=example.org;proto=http",
                "via: 1.1 piha",
            ]
        );
        assert_eq!(left.len(), 1);
    }

    #[test]
    fn a_host_that_is_not_visible_ascii_is_left_out() {
        let client = Client::new("192.0.2.9".parse().unwrap());
        let origin = Origin {
            client: &client,
            proto: "http",
            host: Some(HeaderValue::from_bytes(b"caf\xc3\xa9.example").unwrap()),
        };
        let (lines, _) = forward(HeaderMap::new(), origin);
        assert!(!lines.iter().any(|l| l.contains("host")), "{lines:?}");
    }

    #[test]
    fn h2_cookie_crumbs_are_joined() {
        let mut h = map(&[("cookie", "a=1"), ("cookie", "b=2")]);
        join_cookies(&mut h);
        assert_eq!(h.get_all("cookie").iter().count(), 1);
        assert_eq!(h["cookie"], "a=1; b=2");
    }
}
