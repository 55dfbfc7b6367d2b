//! Header rewriting, pure functions over `HeaderMap`: hop-by-hop headers are
//! dropped in both directions (RFC 9110 §7.6.1), and requests gain
//! X-Forwarded-For/-Proto/-Host, RFC 7239 `Forwarded` and `Via` so the web
//! role knows who really asked.

use std::net::IpAddr;

use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};

/// Always connection-scoped, whatever `Connection` says.
const HOP_BY_HOP: [&str; 7] = [
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-connection",
];

/// Removes hop-by-hop headers: the fixed list, every `Proxy-*` (and the bare
/// `Proxy`, the "httpoxy" vector), and whatever `Connection` names. With
/// `upgrade` set, `Connection: upgrade` and `Upgrade` are kept, because
/// passing them on is how the upgrade reaches the other side.
pub fn strip_hop_by_hop(headers: &mut HeaderMap, upgrade: bool) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    for name in named {
        if !(upgrade && name == header::UPGRADE) {
            headers.remove(name);
        }
    }
    for name in HOP_BY_HOP {
        if !(upgrade && (name == "upgrade" || name == "connection")) {
            headers.remove(name);
        }
    }
    let proxy: Vec<HeaderName> = headers
        .keys()
        .filter(|k| k.as_str() == "proxy" || k.as_str().starts_with("proxy-"))
        .cloned()
        .collect();
    for name in proxy {
        headers.remove(name);
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

/// Who asked and how, for the forwarding headers.
#[derive(Debug, Clone)]
pub struct Origin<'a> {
    pub client: IpAddr,
    /// "http" or "https": the scheme the client used to reach us.
    pub proto: &'static str,
    /// The Host the client asked for (`Host` header or h2 `:authority`).
    pub host: Option<&'a str>,
}

/// Appends the client to X-Forwarded-For and to `Forwarded`, sets
/// X-Forwarded-Proto and -Host (overwriting: only we know them), and adds
/// `Via`. Existing X-Forwarded-For entries are kept, as HAProxy's
/// `option forwardfor` does; the backend decides how far to trust them.
pub fn add_forwarding(headers: &mut HeaderMap, origin: &Origin<'_>) {
    let client = origin.client.to_string();
    append_list(headers, HeaderName::from_static("x-forwarded-for"), &client);
    set(headers, "x-forwarded-proto", origin.proto);
    match origin.host {
        Some(host) => set(headers, "x-forwarded-host", host),
        None => {
            headers.remove("x-forwarded-host");
        }
    }
    let for_value = match origin.client {
        IpAddr::V4(_) => client,
        IpAddr::V6(_) => format!("\"[{client}]\""),
    };
    let mut element = format!("for={for_value}");
    if let Some(host) = origin.host {
        element.push_str(";host=");
        element.push_str(&token_or_quoted(host));
    }
    element.push_str(";proto=");
    element.push_str(origin.proto);
    append_list(headers, header::FORWARDED, &element);
    append_list(headers, header::VIA, "1.1 piha");
}

fn set(headers: &mut HeaderMap, name: &'static str, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        headers.insert(HeaderName::from_static(name), v);
    }
}

/// Joins every existing value of a list header and `item` into one line.
fn append_list(headers: &mut HeaderMap, name: HeaderName, item: &str) {
    let existing: Vec<&str> = headers
        .get_all(&name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .collect();
    let joined = if existing.is_empty() {
        item.to_owned()
    } else {
        format!("{}, {item}", existing.join(", "))
    };
    if let Ok(v) = HeaderValue::from_str(&joined) {
        headers.insert(name, v);
    }
}

/// RFC 7239 values are tokens or quoted strings; a host with a port has a
/// colon, which is not a token character.
fn token_or_quoted(value: &str) -> String {
    let token = !value.is_empty()
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if token {
        value.to_owned()
    } else {
        let escaped = value.replace('\\', "\\\\").replace('"', "\\\"");
        format!("\"{escaped}\"")
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
        let origin = Origin {
            client: "2001:db8::7".parse().unwrap(),
            proto: "https",
            host: Some("example.org:8443"),
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
    fn h2_cookie_crumbs_are_joined() {
        let mut h = map(&[("cookie", "a=1"), ("cookie", "b=2")]);
        join_cookies(&mut h);
        assert_eq!(h.get_all("cookie").iter().count(), 1);
        assert_eq!(h["cookie"], "a=1; b=2");
    }
}
