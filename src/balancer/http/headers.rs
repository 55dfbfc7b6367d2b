//! Header rewriting, pure functions over `HeaderMap`: hop-by-hop headers are
//! dropped in both directions (RFC 9110 §7.6.1), and requests gain
//! X-Forwarded-For/-Proto/-Host, RFC 7239 `Forwarded` and `Via` so the web
//! role knows who really asked.

use std::net::IpAddr;

use hyper::header::{self, Entry, HeaderMap, HeaderName, HeaderValue};

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const VIA_PIHA: HeaderValue = HeaderValue::from_static("1.1 piha");

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
    /// The Host the client asked for (`Host` header or h2 `:authority`),
    /// when it is visible ASCII.
    pub host: Option<&'a HeaderValue>,
}

/// Appends the client to X-Forwarded-For and to `Forwarded`, sets
/// X-Forwarded-Proto and -Host (overwriting: only we know them), and adds
/// `Via`. Existing X-Forwarded-For entries are kept, as HAProxy's
/// `option forwardfor` does; the backend decides how far to trust them.
pub fn add_forwarding(headers: &mut HeaderMap, origin: &Origin<'_>) {
    append_list(headers, X_FORWARDED_FOR, origin.client.addr.clone());
    headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(origin.proto));
    let host = origin.host.and_then(|h| Some((h, h.to_str().ok()?)));
    match host {
        Some((value, _)) => headers.insert(X_FORWARDED_HOST, value.clone()),
        None => headers.remove(X_FORWARDED_HOST),
    };
    let mut element = String::with_capacity(64);
    element.push_str(&origin.client.forwarded_for);
    if let Some((_, host)) = host {
        element.push_str(";host=");
        push_token_or_quoted(&mut element, host);
    }
    element.push_str(";proto=");
    element.push_str(origin.proto);
    if let Ok(v) = HeaderValue::from_maybe_shared(bytes::Bytes::from(element)) {
        append_list(headers, header::FORWARDED, v);
    }
    append_list(headers, header::VIA, VIA_PIHA);
}

/// Joins every existing value of a list header and `item` into one line;
/// with none, `item` goes in as it is (no copy: most requests). One lookup
/// of the name either way.
fn append_list(headers: &mut HeaderMap, name: HeaderName, item: HeaderValue) {
    let mut present = match headers.entry(name) {
        Entry::Vacant(v) => {
            v.insert(item);
            return;
        }
        Entry::Occupied(o) => o,
    };
    let existing: Vec<&str> = present
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .collect();
    let joined = match (existing.is_empty(), item.to_str()) {
        (true, _) => None,
        (false, Ok(item)) => Some(format!("{}, {item}", existing.join(", "))),
        (false, Err(_)) => return,
    };
    match joined {
        None => {
            present.insert(item);
        }
        Some(joined) => {
            if let Ok(v) = HeaderValue::from_str(&joined) {
                present.insert(v);
            }
        }
    }
}

/// RFC 7239 values are tokens or quoted strings; a host with a port has a
/// colon, which is not a token character.
fn push_token_or_quoted(out: &mut String, value: &str) {
    let token = !value.is_empty()
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if token {
        out.push_str(value);
    } else {
        out.push('"');
        for c in value.chars() {
            if c == '\\' || c == '"' {
                out.push('\\');
            }
            out.push(c);
        }
        out.push('"');
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

    #[test]
    fn forwarding_headers_append_and_quote() {
        let mut h = map(&[
            ("x-forwarded-for", "192.0.2.9"),
            ("forwarded", "for=192.0.2.9"),
            ("x-forwarded-proto", "gopher"),
        ]);
        let client = Client::new("2001:db8::7".parse().unwrap());
        let host = HeaderValue::from_static("example.org:8443");
        let origin = Origin {
            client: &client,
            proto: "https",
            host: Some(&host),
        };
        add_forwarding(&mut h, &origin);
        assert_eq!(h["x-forwarded-for"], "192.0.2.9, 2001:db8::7");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["x-forwarded-host"], "example.org:8443");
        assert_eq!(
            h["forwarded"],
            "for=192.0.2.9, for=\"[2001:db8::7]\";host=\"example.org:8443\";proto=https"
        );
        assert_eq!(h["via"], "1.1 piha");
    }

    #[test]
    fn forwarding_headers_on_a_plain_request() {
        let mut h = map(&[("host", "example.org")]);
        let client = Client::new("192.0.2.9".parse().unwrap());
        let host = h["host"].clone();
        add_forwarding(
            &mut h,
            &Origin {
                client: &client,
                proto: "http",
                host: Some(&host),
            },
        );
        assert_eq!(h["x-forwarded-for"], "192.0.2.9");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-host"], "example.org");
        assert_eq!(h["forwarded"], "for=192.0.2.9;host=example.org;proto=http");
        assert_eq!(h["via"], "1.1 piha");
    }

    #[test]
    fn h2_cookie_crumbs_are_joined() {
        let mut h = map(&[("cookie", "a=1"), ("cookie", "b=2")]);
        join_cookies(&mut h);
        assert_eq!(h.get_all("cookie").iter().count(), 1);
        assert_eq!(h["cookie"], "a=1; b=2");
    }
}
