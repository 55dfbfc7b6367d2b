//! The status page on its own: serve `src/status/page/*` and the sample
//! status JSON from a tiny HTTP server in this test, render the page in
//! headless Chromium, and check what a person would see. Also leaves
//! screenshots under `target/screenshots/` for a human to look at.
//!
//! Needs Debian's `chromium`. Without it the test is skipped locally, but
//! fails under CI (env CI set), so a missing browser cannot pass silently.

mod common;

use common::browser;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;

const MAX_REQUEST_HEAD: usize = 16 * 1024;

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn sample_json() -> String {
    std::fs::read_to_string(manifest_dir().join("tests/fixtures/status/sample-status.json"))
        .expect("read sample-status.json")
}

/// `target/screenshots`, next to the other build output.
fn screenshot_dir() -> PathBuf {
    let target = option_env!("CARGO_TARGET_TMPDIR")
        .and_then(|tmp| Path::new(tmp).parent().map(Path::to_path_buf))
        .unwrap_or_else(|| manifest_dir().join("target"));
    let dir = target.join("screenshots");
    std::fs::create_dir_all(&dir).expect("create target/screenshots");
    dir
}

/// True when the test should be skipped (no browser, not CI); panics when
/// the browser is missing under CI.
fn no_browser() -> bool {
    if browser::chromium_path().is_some() {
        return false;
    }
    if std::env::var_os("CI").is_some() {
        panic!("chromium is required under CI (apt-get install chromium)");
    }
    println!("skipping: chromium not installed (apt-get install chromium)");
    true
}

// ------------------------------------------------------------------ server

/// How the test server answers `api/v1/status`.
#[derive(Clone, Copy)]
enum Api {
    /// Always the body.
    Healthy,
    /// The body this many times, then the connection is dropped unanswered
    /// (as if the node went away).
    DiesAfter(usize),
}

/// Serves the page and the sample on 127.0.0.1:<free port>. One thread
/// accepts; each connection gets a short-lived thread that reads one bounded
/// request, answers, and closes. The threads end with the test process.
fn serve(api: Api) -> SocketAddr {
    serve_json(sample_json(), api)
}

/// Like [`serve`], with `status` as the API's answer.
fn serve_json(status: String, api: Api) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind test server");
    let addr = listener.local_addr().unwrap();
    let api_hits = Arc::new(AtomicUsize::new(0));
    let status = Arc::new(status);
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let api_hits = Arc::clone(&api_hits);
            let status = Arc::clone(&status);
            thread::spawn(move || handle(stream, &status, api, &api_hits));
        }
    });
    addr
}

fn handle(mut stream: TcpStream, status_json: &str, api: Api, api_hits: &AtomicUsize) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(5)));
    let Some(path) = read_request_path(&mut stream) else {
        return;
    };
    let page = manifest_dir().join("src/status/page");
    let file = |name: &str| std::fs::read(page.join(name)).expect("read page file");

    let (status, ctype, body): (&str, &str, Vec<u8>) = match path.as_str() {
        "/" | "/index.html" => ("200 OK", "text/html; charset=utf-8", file("index.html")),
        "/style.css" => ("200 OK", "text/css; charset=utf-8", file("style.css")),
        "/app.js" => ("200 OK", "text/javascript; charset=utf-8", file("app.js")),
        "/api/v1/status" => {
            let n = api_hits.fetch_add(1, Ordering::SeqCst);
            if let Api::DiesAfter(limit) = api {
                if n >= limit {
                    return; // drop the connection: fetch fails like a dead node
                }
            }
            (
                "200 OK",
                "application/json",
                status_json.as_bytes().to_vec(),
            )
        }
        "/metrics" => (
            "200 OK",
            "text/plain; version=0.0.4",
            b"# piha test server\n".to_vec(),
        ),
        "/phone-check.html" => (
            "200 OK",
            "text/html; charset=utf-8",
            PHONE_CHECK.as_bytes().to_vec(),
        ),
        "/focus.html" => (
            "200 OK",
            "text/html; charset=utf-8",
            FOCUS.as_bytes().to_vec(),
        ),
        _ => (
            "404 Not Found",
            "text/plain; charset=utf-8",
            b"not found\n".to_vec(),
        ),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(&body);
    let _ = stream.flush();
}

/// Reads the request line and headers (at most MAX_REQUEST_HEAD bytes) and
/// returns the path without its query. None for anything malformed.
fn read_request_path(stream: &mut TcpStream) -> Option<String> {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        if head.len() > MAX_REQUEST_HEAD {
            return None;
        }
        let n = stream.read(&mut buf).ok()?;
        if n == 0 {
            return None;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&head);
    let mut parts = text.lines().next()?.split_whitespace();
    let (method, target) = (parts.next()?, parts.next()?);
    if method != "GET" && method != "HEAD" {
        return None;
    }
    Some(target.split(['?', '#']).next()?.to_string())
}

/// Loads the page in a 390 px wide iframe (a phone's viewport; tall, so no
/// desktop scrollbar eats into the width) and writes
/// into its own DOM every element that sticks out to the right, so a test
/// can assert that nothing makes a phone scroll sideways.
const PHONE_CHECK: &str = r#"<!doctype html>
<html><body style="margin:0">
<iframe id="f" src="/" style="width:390px;height:12000px;border:0"></iframe>
<script>
  const frame = document.getElementById('f');
  frame.addEventListener('load', () => setTimeout(() => {
    const doc = frame.contentDocument;
    const width = doc.documentElement.clientWidth;
    const offenders = [];
    for (const node of doc.querySelectorAll('body *')) {
      const r = node.getBoundingClientRect();
      if (r.width > 0 && r.right > width + 0.5) {
        offenders.push(node.tagName.toLowerCase() + '.' + (node.getAttribute('class') || '') + ' right=' + Math.round(r.right));
      }
    }
    const out = document.createElement('pre');
    out.id = 'result';
    out.dataset.width = width;
    out.dataset.cards = doc.querySelectorAll('[data-testid=member]').length;
    out.dataset.backends = doc.querySelectorAll('[data-testid=backend]').length;
    out.dataset.pgrows = doc.querySelectorAll('[data-testid=pg-server], [data-testid=pg-pool]').length;
    out.dataset.vrrp = doc.querySelectorAll('[data-testid=vrrp]').length;
    out.dataset.db = doc.querySelectorAll('[data-testid=db-node], [data-testid=db-replica]').length;
    out.dataset.offenders = offenders.length;
    out.textContent = offenders.slice(0, 20).join('\n');
    document.body.append(out);
  }, 3000));
</script>
</body></html>"#;

/// The page in an iframe as wide as the window, shifted up so that the
/// section `?id=` (default `balancer`) starts at the top: a viewport
/// screenshot of one section, which headless Chromium cannot get by
/// scrolling.
const FOCUS: &str = r#"<!doctype html>
<html><body style="margin:0;overflow:hidden">
<iframe id="f" src="/" style="width:100vw;height:12000px;border:0;display:block"></iframe>
<script>
  const frame = document.getElementById('f');
  const id = new URLSearchParams(location.search).get('id') || 'balancer';
  frame.addEventListener('load', () => setTimeout(() => {
    const target = frame.contentDocument.getElementById(id);
    if (target) frame.style.marginTop = -Math.max(0, target.getBoundingClientRect().top - 12) + 'px';
  }, 2000));
</script>
</body></html>"#;

// -------------------------------------------------------------- DOM reading

/// Every start tag (`<tag ...>`) in `dom` that contains `needle`.
fn start_tags<'a>(dom: &'a str, needle: &str) -> Vec<&'a str> {
    let mut tags = Vec::new();
    let mut from = 0;
    while let Some(pos) = dom[from..].find(needle) {
        let at = from + pos;
        let start = dom[..=at].rfind('<').expect("tag start");
        let end = at + dom[at..].find('>').expect("tag end");
        tags.push(&dom[start..=end]);
        from = end;
    }
    tags
}

/// The value of attribute `name` in a serialized start tag.
fn attr(tag: &str, name: &str) -> Option<String> {
    let key = format!(" {name}=\"");
    let start = tag.find(&key)? + key.len();
    let len = tag[start..].find('"')?;
    Some(
        tag[start..start + len]
            .replace("&quot;", "\"")
            .replace("&amp;", "&"),
    )
}

/// The markup from the start tag containing `needle` to the matching close
/// of `tag` (no nesting of the same tag expected).
fn element<'a>(dom: &'a str, needle: &str, tag: &str) -> &'a str {
    let at = dom
        .find(needle)
        .unwrap_or_else(|| panic!("{needle} not in DOM"));
    let start = dom[..=at].rfind('<').unwrap();
    let close = format!("</{tag}>");
    let end = at
        + dom[at..]
            .find(&close)
            .unwrap_or_else(|| panic!("no {close} after {needle}"));
    &dom[start..end + close.len()]
}

/// Names of the elements in serialized HTML, in order. A small scanner that
/// knows attribute quotes, so a `<` inside an attribute value (serializers
/// differ on escaping it there) is not taken for a tag.
fn element_names(dom: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut chars = dom.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '<' {
            continue;
        }
        let name: String =
            std::iter::from_fn(|| chars.next_if(|c| c.is_ascii_alphanumeric())).collect();
        if !name.is_empty() {
            names.push(name.to_ascii_lowercase());
        }
        // Skip to the end of the tag, stepping over quoted values.
        let mut quote = None;
        for c in chars.by_ref() {
            match (quote, c) {
                (None, '"' | '\'') => quote = Some(c),
                (Some(q), c) if c == q => quote = None,
                (None, '>') => break,
                _ => {}
            }
        }
    }
    names
}

/// The text of serialized HTML with every tag replaced by `|` and the
/// digit group separators of common locales dropped, so a test can look for
/// `|40211|` whatever the browser's locale made of 40211.
fn cell_text(html: &str) -> String {
    let mut out = String::new();
    let mut in_tag = false;
    for c in html.replace("&nbsp;", "\u{a0}").chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => {
                in_tag = false;
                out.push('|');
            }
            _ if in_tag => {}
            ',' | '.' | '\u{a0}' | '\u{202f}' | '\'' => {}
            c => out.push(c),
        }
    }
    out
}

/// An attribute value as serialized HTML leaves it, decoded.
fn attr_text(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&nbsp;", "\u{a0}")
}

/// The `<tr>` of backend `name` behind `frontend`.
fn backend_row<'a>(dom: &'a str, frontend: &str, name: &str) -> &'a str {
    element(
        dom,
        &format!(r#"data-frontend="{frontend}" data-name="{name}""#),
        "tr",
    )
}

/// How text content appears in serialized HTML.
fn html_text(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('\u{a0}', "&nbsp;")
}

// ------------------------------------------------------------------- tests

#[test]
fn status_page_renders_the_sample_cluster() {
    if no_browser() {
        return;
    }
    let sample: serde_json::Value = serde_json::from_str(&sample_json()).expect("sample is JSON");
    let addr = serve(Api::Healthy);
    let url = format!("http://{addr}/");
    let dom = browser::dump_dom(&url, 5000).expect("dump DOM");

    // Header.
    let host = element(&dom, r#"data-testid="self-hostname""#, "h1");
    assert!(host.contains(">pi-1<"), "header hostname: {host}");
    let banner = start_tags(&dom, r#"data-testid="stale-banner""#);
    assert_eq!(banner.len(), 1);
    assert!(
        banner[0].contains(" hidden"),
        "banner must be hidden while fresh: {}",
        banner[0]
    );

    // Members: four cards, self first then by hostname, states from the sample.
    let cards = start_tags(&dom, r#"data-testid="member""#);
    let seen: Vec<(String, String)> = cards
        .iter()
        .map(|t| {
            (
                attr(t, "data-hostname").unwrap(),
                attr(t, "data-state").unwrap(),
            )
        })
        .collect();
    let want: Vec<(String, String)> = [
        ("pi-1", "up"),
        ("pi-2", "up"),
        ("pi-3", "up"),
        ("pi-4", "down"),
    ]
    .iter()
    .map(|(h, s)| (h.to_string(), s.to_string()))
    .collect();
    assert_eq!(seen, want, "member cards (self first, then by hostname)");
    assert_eq!(seen.iter().filter(|(_, s)| s == "up").count(), 3);
    assert!(dom.contains("this node"), "self card is marked");
    assert!(dom.contains("Down since "), "down card says since when");
    assert!(
        dom.contains(r#"href="http://192.0.2.12:9000/""#),
        "member links to its own page"
    );

    // This node (a role that is not built: see the balancer-less test).
    assert!(
        dom.contains("resource temporarily unavailable"),
        "service last error shown"
    );

    // Charts: every one drew at least one non-empty path.
    for name in ["cpu", "memory", "temperature", "network"] {
        let svg = element(&dom, &format!(r#"data-chart="{name}""#), "svg");
        let paths = start_tags(svg, "<path");
        assert!(!paths.is_empty(), "chart {name} has no <path>");
        for p in &paths {
            let d = attr(p, "d").unwrap_or_default();
            assert!(
                d.starts_with('M') && d.len() > 20,
                "chart {name} path d={d:?}"
            );
        }
        assert!(svg.contains("viewBox="), "chart {name} is scalable");
    }
    // The sample's two-minute hole is shown as one.
    assert!(
        element(&dom, r#"data-chart="cpu""#, "svg").contains(r#"class="gap""#),
        "gap drawn in cpu chart"
    );

    // Disks: one bar per disk with its mount.
    for disk in sample["system"]["disks"].as_array().unwrap() {
        let mount = disk["mount"].as_str().unwrap();
        assert!(dom.contains(&format!(">{mount}<")), "disk {mount} shown");
    }

    // Events: all of them, newest first, with their severity.
    let mut events: Vec<&serde_json::Value> = sample["events"].as_array().unwrap().iter().collect();
    events.sort_by_key(|e| std::cmp::Reverse(e["at_ms"].as_u64().unwrap()));
    let rows = start_tags(&dom, r#"data-testid="event""#);
    assert_eq!(rows.len(), events.len(), "one row per event");
    let mut last = 0;
    for (row, event) in rows.iter().zip(&events) {
        assert_eq!(
            attr(row, "data-severity").as_deref(),
            event["severity"].as_str()
        );
        let msg = html_text(event["message"].as_str().unwrap());
        // Each message must come after the previous one (some repeat).
        let pos = dom[last..]
            .find(&msg)
            .unwrap_or_else(|| panic!("event {msg:?} not shown, or out of order"));
        last += pos + msg.len();
    }
    // Text from peers is text: the "<unknown>" in a message is not markup.
    assert!(
        dom.contains("&lt;unknown&gt;") && !dom.contains("<unknown>"),
        "event text escaped"
    );
    assert!(dom.contains("<details"), "event details expandable");

    // Footer links.
    assert!(dom.contains(r#"href="api/v1/status""#) && dom.contains(r#"href="metrics""#));
}

#[test]
fn status_page_keeps_data_and_warns_when_the_node_stops_answering() {
    if no_browser() {
        return;
    }
    let addr = serve(Api::DiesAfter(1));
    let dom = browser::dump_dom(&format!("http://{addr}/"), 9000).expect("dump DOM");
    let banner = element(&dom, r#"data-testid="stale-banner""#, "div");
    assert!(
        !start_tags(banner, "stale-banner")[0].contains(" hidden"),
        "banner visible: {banner}"
    );
    assert!(
        banner.contains("Lost contact with pi-1 — retrying"),
        "banner text: {banner}"
    );
    assert_eq!(
        start_tags(&dom, r#"data-testid="member""#).len(),
        4,
        "last data kept"
    );
    assert_eq!(start_tags(&dom, r#"data-chart="#).len(), 4);

    // What that looks like on a phone (a fresh server: this one's one good
    // answer is used up).
    let addr = serve(Api::DiesAfter(1));
    let path = screenshot_dir().join("status-phone-stale.png");
    browser::screenshot(&format!("http://{addr}/"), &path, 390, 844, 5000)
        .expect("stale screenshot");
    println!("screenshot: {}", path.display());
}

#[test]
fn status_page_fits_a_phone_and_leaves_screenshots() {
    if no_browser() {
        return;
    }
    let addr = serve(Api::Healthy);

    // No element may stick out of a 390 px wide viewport.
    let dom =
        browser::dump_dom(&format!("http://{addr}/phone-check.html"), 6000).expect("dump DOM");
    let result = element(&dom, r#"id="result""#, "pre");
    let tag = start_tags(result, r#"id="result""#)[0];
    assert_eq!(attr(tag, "data-width").as_deref(), Some("390"), "{result}");
    assert_eq!(
        attr(tag, "data-cards").as_deref(),
        Some("4"),
        "page rendered in the phone frame: {result}"
    );
    assert_eq!(
        attr(tag, "data-backends").as_deref(),
        Some("6"),
        "balancer rendered in the phone frame: {result}"
    );
    assert_eq!(
        attr(tag, "data-pgrows").as_deref(),
        Some("5"),
        "postgres rendered in the phone frame: {result}"
    );
    assert_eq!(
        attr(tag, "data-vrrp").as_deref(),
        Some("1"),
        "vrrp rendered in the phone frame: {result}"
    );
    assert_eq!(
        attr(tag, "data-db").as_deref(),
        Some("4"),
        "db nodes rendered in the phone frame: {result}"
    );
    assert_eq!(
        attr(tag, "data-offenders").as_deref(),
        Some("0"),
        "elements wider than a phone:\n{result}"
    );

    // Screenshots for people: viewport-sized, whole-page, and dark mode.
    let dir = screenshot_dir();
    let url = format!("http://{addr}/");
    let shots: &[(&str, u32, u32, &[&str])] = &[
        ("status-desktop.png", 1280, 900, &[]),
        ("status-phone.png", 390, 844, &[]),
        ("status-desktop-full.png", 1280, 4000, &[]),
        ("status-phone-full.png", 390, 8600, &[]),
        ("status-desktop-dark.png", 1280, 900, &["--force-dark-mode"]),
        (
            "status-phone-full-dark.png",
            390,
            8600,
            &["--force-dark-mode"],
        ),
        // The balancer section on its own (see FOCUS).
        ("status-balancer-desktop.png", 1280, 1000, &[]),
        (
            "status-balancer-desktop-dark.png",
            1280,
            1000,
            &["--force-dark-mode"],
        ),
        ("status-balancer-tablet.png", 900, 1000, &[]),
        ("status-balancer-phone.png", 390, 1900, &[]),
        (
            "status-balancer-phone-dark.png",
            390,
            1900,
            &["--force-dark-mode"],
        ),
        // The Postgres section on its own.
        ("status-postgres-desktop.png", 1280, 1000, &[]),
        (
            "status-postgres-desktop-dark.png",
            1280,
            1000,
            &["--force-dark-mode"],
        ),
        ("status-postgres-phone.png", 390, 2200, &[]),
        // The VRRP section on its own.
        ("status-vrrp-desktop.png", 1280, 600, &[]),
        (
            "status-vrrp-desktop-dark.png",
            1280,
            600,
            &["--force-dark-mode"],
        ),
        ("status-vrrp-phone.png", 390, 1200, &[]),
        // The db section on its own.
        ("status-db-desktop.png", 1280, 900, &[]),
        (
            "status-db-desktop-dark.png",
            1280,
            900,
            &["--force-dark-mode"],
        ),
        ("status-db-phone.png", 390, 1500, &[]),
    ];
    for (name, w, h, flags) in shots {
        let path = dir.join(name);
        let url = if name.starts_with("status-balancer") {
            format!("http://{addr}/focus.html?id=balancer")
        } else if name.starts_with("status-postgres") {
            format!("http://{addr}/focus.html?id=postgres")
        } else if name.starts_with("status-vrrp") {
            format!("http://{addr}/focus.html?id=vrrp")
        } else if name.starts_with("status-db") {
            format!("http://{addr}/focus.html?id=db")
        } else {
            url.clone()
        };
        let taken = if flags.is_empty() {
            browser::screenshot(&url, &path, *w, *h, 4000)
        } else {
            browser::screenshot_with(&url, &path, *w, *h, 4000, flags)
        };
        taken.unwrap_or_else(|e| panic!("{name}: {e}"));
        let png = std::fs::read(&path).unwrap();
        assert!(
            png.starts_with(b"\x89PNG") && png.len() > 10_000,
            "{name} looks empty"
        );
        println!("screenshot: {}", path.display());
    }
}

#[test]
fn status_page_copes_with_odd_and_hostile_data() {
    if no_browser() {
        return;
    }
    let mut status: serde_json::Value = serde_json::from_str(&sample_json()).unwrap();
    // Every member state, missing system data, and a peer trying to inject markup.
    status["members"] = serde_json::json!([
        { "hostname": "pi-1", "address": "192.0.2.11", "admin_url": "http://192.0.2.11:9000/", "state": "up", "is_self": true,
          "since_ms": 1763790000000u64, "last_heard_ms": 1763800000000u64, "roles": [], "version": "0.1.0",
          "system": { "cpu_percent": 0.0, "memory_percent": 0.0, "temperature_c": null, "load1": 0.0, "uptime_s": 1 } },
        { "hostname": "pi-2", "address": "192.0.2.12", "admin_url": "http://192.0.2.12:9000/", "state": "left", "is_self": false,
          "since_ms": 1763700000000u64, "last_heard_ms": 1763700000000u64, "roles": ["web"], "version": "0.1.0", "system": null },
        { "hostname": "pi-3", "address": "192.0.2.13", "admin_url": "http://192.0.2.13:9000/", "state": "unknown", "is_self": false,
          "since_ms": null, "last_heard_ms": null, "roles": [], "version": null, "system": null },
        { "hostname": "<img src=x onerror=alert(1)>", "address": "192.0.2.66", "admin_url": "javascript:alert(1)", "state": "up",
          "is_self": false, "since_ms": 1763790000000u64, "last_heard_ms": 1763800000000u64, "roles": ["<u>db</u>"], "version": "9",
          "system": { "cpu_percent": 100.0, "memory_percent": 99.0, "temperature_c": 85.0, "load1": 8.0, "uptime_s": 0 } }
    ]);
    // A short history with holes, no disks, no roles, an unknown severity.
    status["history"]["points"] = serde_json::json!([
        { "at_ms": 1763799990000u64, "values": [5.0, null, null, 10.0, 10.0] },
        { "at_ms": 1763799995000u64, "values": [6.0, 10.0, null, null, 12.0] },
        { "at_ms": 1763800000000u64, "values": [7.0, 10.5, null, 11.0, 13.0] }
    ]);
    status["system"]["disks"] = serde_json::json!([]);
    status["system"]["temperature_c"] = serde_json::Value::Null;
    status["node"]["roles"] = serde_json::json!([]);
    status["events"] = serde_json::json!([
        { "at_ms": 1763799999000u64, "node": "<script>alert(1)</script>", "component": "x", "severity": "fatal",
          "message": "<em>not emphasis</em>", "details": null }
    ]);

    // A balancer whose names, states and messages come from a hostile or
    // broken peer: markup, prototype keys, missing fields, and words too
    // long for a phone.
    let long = "x".repeat(120);
    status["balancer"] = serde_json::json!({
        "http": {
            "algorithm": "constructor",
            "listen": ["<iframe src=//evil>", long],
            "frontend": { "requests_total": 12345678901u64, "open_connections": null, "queued": 3,
                          "rejected_total": { "__proto__": 4, "toString": 1, "queue_full": 0 } },
            "backends": [
                { "name": "<img src=x onerror=alert(1)>", "address": "\"><marquee>", "source": "member", "state": "constructor",
                  "weight": 3, "effective_weight": 1.5, "active": 0, "requests_total": 0, "rate_per_s": 0.0,
                  "responses": null, "connection_errors": 0, "retries": 0, "latency_ms": null,
                  "last_check": "<em>boom</em>", "last_check_ok": false, "since_ms": null },
                { "name": long, "address": long, "source": "static", "state": "MAINT", "weight": 1,
                  "effective_weight": 0.0, "active": 1, "requests_total": 9, "rate_per_s": 1234.5,
                  "responses": { "2xx": 9 }, "latency_ms": { "p50": 0.42, "p99": 12500.0 },
                  "last_check": long, "last_check_ok": null, "since_ms": 1763799999000u64 },
                "not a backend"
            ]
        },
        "tcp": [
            { "name": "<u>redis</u>", "listen": [], "algorithm": null, "backends": [
                { "name": "toString", "state": "UP", "bytes_in": 1e15, "bytes_out": null, "last_check": null } ] },
            null
        ]
    });

    let addr = serve_json(status.to_string(), Api::Healthy);
    let dom = browser::dump_dom(&format!("http://{addr}/"), 5000).expect("dump DOM");

    let states: Vec<String> = start_tags(&dom, r#"data-testid="member""#)
        .iter()
        .map(|t| attr(t, "data-state").unwrap())
        .collect();
    assert_eq!(states.len(), 4, "{states:?}");
    for want in ["up", "left", "unknown"] {
        assert!(
            states.iter().any(|s| s == want),
            "a card with state {want}: {states:?}"
        );
    }
    assert!(dom.contains("Left the cluster") && dom.contains("Never heard from"));
    assert!(dom.contains("no sensor"), "missing temperature says so");

    // Peer-supplied text is text, and a javascript: URL is not a link.
    assert!(
        dom.contains("&lt;img src=x onerror=alert(1)&gt;"),
        "hostname shown escaped"
    );
    let names = element_names(&dom);
    for bad in ["img", "u", "em", "iframe", "marquee"] {
        assert!(!names.iter().any(|n| n == bad), "injected <{bad}> element");
    }
    assert!(
        names.iter().any(|n| n == "article"),
        "the scanner sees the cards"
    );
    assert_eq!(
        names.iter().filter(|n| *n == "script").count(),
        1,
        "only app.js is a script"
    );
    assert!(!dom.contains("javascript:"), "unsafe admin_url not linked");

    // Short, holey history still draws; the unknown severity is kept.
    let cpu = element(&dom, r#"data-chart="cpu""#, "svg");
    assert!(
        start_tags(cpu, "<path")
            .iter()
            .any(|p| attr(p, "d").is_some_and(|d| d.starts_with('M'))),
        "cpu drawn: {cpu}"
    );
    assert_eq!(start_tags(&dom, r#"data-testid="event""#).len(), 1);
    assert!(dom.contains(r#"data-severity="fatal""#));
    let banner = start_tags(&dom, r#"data-testid="stale-banner""#);
    assert!(banner[0].contains(" hidden"), "fresh data, no banner");

    // Balancer: the rows that are objects are drawn, names kept verbatim in
    // the hooks and shown as text; unknown states are styled as unknown.
    let rows: Vec<(String, String, String)> = start_tags(&dom, r#"data-testid="backend""#)
        .iter()
        .map(|t| {
            (
                attr_text(&attr(t, "data-frontend").unwrap()),
                attr_text(&attr(t, "data-name").unwrap()),
                attr(t, "data-lb").unwrap(),
            )
        })
        .collect();
    let want = [
        ("http", "<img src=x onerror=alert(1)>", "unknown"),
        ("http", long.as_str(), "maint"),
        ("<u>redis</u>", "toString", "up"),
    ];
    assert_eq!(
        rows,
        want.map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string())),
        "balancer rows"
    );
    let first = element(&dom, r#"data-testid="backend""#, "tr");
    assert!(
        first.contains(">&lt;img src=x onerror=alert(1)&gt;<")
            && dom.contains("&lt;u&gt;redis&lt;/u&gt;")
            && dom.contains("&lt;em&gt;boom&lt;/em&gt;")
            && dom.contains("&lt;iframe src=//evil&gt;"),
        "balancer text escaped"
    );
    assert!(
        dom.contains(">constructor<"),
        "unknown state and algorithm shown as given"
    );
    assert!(
        !dom.contains("function Object"),
        "API keys are not looked up on Object.prototype"
    );
    assert!(!dom.contains("[native code]"));
    // Weight 3 at 1.5 in a state that is not UP is not called ramping.
    assert!(!dom.contains("ramping"), "only UP backends ramp");
    // The first backend comes from a "member" that no member is.
    assert!(!first.contains("<a "), "no link for an unknown member");

    // And none of it makes a phone scroll sideways.
    let check = browser::dump_dom(&format!("http://{addr}/phone-check.html"), 6000)
        .expect("dump phone check");
    let result = element(&check, r#"id="result""#, "pre");
    let tag = start_tags(result, r#"id="result""#)[0];
    assert_eq!(attr(tag, "data-backends").as_deref(), Some("3"), "{result}");
    assert_eq!(
        attr(tag, "data-vrrp").as_deref(),
        Some("1"),
        "vrrp rendered in the phone frame: {result}"
    );
    assert_eq!(
        attr(tag, "data-offenders").as_deref(),
        Some("0"),
        "hostile balancer data wider than a phone:\n{result}"
    );
}

#[test]
fn status_page_shows_the_balancer() {
    if no_browser() {
        return;
    }
    let sample: serde_json::Value = serde_json::from_str(&sample_json()).expect("sample is JSON");
    let balancer = &sample["balancer"];
    let addr = serve(Api::Healthy);
    let dom = browser::dump_dom(&format!("http://{addr}/"), 5000).expect("dump DOM");

    let section = start_tags(&dom, r#"id="balancer""#);
    assert_eq!(section.len(), 1, "one balancer section");
    assert!(
        !section[0].contains(" hidden"),
        "balancer section shown: {}",
        section[0]
    );
    // After "This node", before "System".
    let at = |id: &str| dom.find(&format!(r#"id="{id}""#)).unwrap();
    assert!(at("node") < at("balancer") && at("balancer") < at("system"));

    // One row per backend, in the API's order: the HTTP ones, then each TCP
    // service's, each with its front end, name and state.
    let mut want = Vec::new();
    for be in balancer["http"]["backends"].as_array().unwrap() {
        want.push((
            "http".to_string(),
            be["name"].as_str().unwrap().to_string(),
            be["state"].as_str().unwrap().to_string(),
        ));
    }
    for svc in balancer["tcp"].as_array().unwrap() {
        for be in svc["backends"].as_array().unwrap() {
            want.push((
                svc["name"].as_str().unwrap().to_string(),
                be["name"].as_str().unwrap().to_string(),
                be["state"].as_str().unwrap().to_string(),
            ));
        }
    }
    let seen: Vec<(String, String, String)> = start_tags(&dom, r#"data-testid="backend""#)
        .iter()
        .map(|t| {
            (
                attr(t, "data-frontend").unwrap(),
                attr(t, "data-name").unwrap(),
                attr(t, "data-state").unwrap(),
            )
        })
        .collect();
    assert_eq!(seen, want, "backend rows");
    // The sample has what the panel must show: four HTTP backends (two UP,
    // one DOWN, one DRAIN) and a TCP service with two.
    let http_states: Vec<&str> = seen
        .iter()
        .filter(|r| r.0 == "http")
        .map(|r| r.2.as_str())
        .collect();
    assert_eq!(http_states, ["UP", "DRAIN", "UP", "DOWN"]);
    assert_eq!(seen.iter().filter(|r| r.0 == "redis").count(), 2);

    // Every row: a coloured state badge and how long it has been in it.
    for (frontend, name, state) in &seen {
        let row = backend_row(&dom, frontend, name);
        let badge = start_tags(row, r#"class="badge""#);
        assert_eq!(badge.len(), 1, "{name}: one state badge");
        assert_eq!(
            attr(badge[0], "data-lb").as_deref(),
            Some(state.to_ascii_lowercase().as_str()),
            "{name}: badge colour follows the state"
        );
        assert!(row.contains(&format!(">{state}<")), "{name}: state named");
        assert!(
            row.contains(r#"class="dur""#) && row.contains("for "),
            "{name}: time in state"
        );
    }

    // HTTP: counters, responses by class, latency, member link.
    let pi1 = backend_row(&dom, "http", "pi-1");
    let pi1_text = cell_text(pi1);
    for n in ["40211", "40100", "11"] {
        assert!(
            pi1_text.contains(&format!("|{n}|")),
            "pi-1 shows {n}: {pi1_text}"
        );
    }
    assert!(pi1.contains("ms<"), "pi-1 latency in ms: {pi1}");
    assert!(
        pi1.contains(r#"data-level="bad""#),
        "pi-1: non-zero 5xx highlighted"
    );
    assert!(
        pi1.contains(r#"href="http://192.0.2.11:9000/""#),
        "a member backend links to that member's page"
    );
    assert!(pi1.contains("192.0.2.11:8080") && pi1.contains(">member<"));
    let pi2 = backend_row(&dom, "http", "pi-2");
    assert!(
        !pi2.contains(r#"data-level="bad""#),
        "pi-2: zero 5xx not highlighted"
    );
    assert!(
        backend_row(&dom, "http", "pi-3").contains("ramping 40%"),
        "slow start shown on the weight"
    );
    assert!(!pi1.contains("ramping"), "full weight is not ramping");
    let nas = backend_row(&dom, "http", "nas");
    assert!(
        nas.contains(r#"data-ok="failed""#) && nas.contains("connect: connection refused"),
        "failed check shown as failed: {nas}"
    );
    assert!(!nas.contains("<a "), "a static backend has no member page");
    assert!(pi1.contains(r#"data-ok="ok""#) && pi1.contains("200 in 3 ms"));

    // HTTP header line: algorithm, listen addresses, totals, and the
    // rejection reasons that happened (and not the one that did not).
    let http = element(&dom, r#"data-frontend="http""#, "article");
    let head = element(http, r#"class="fe-head""#, "header");
    assert!(head.contains("round robin"), "algorithm: {head}");
    for listen in balancer["http"]["listen"].as_array().unwrap() {
        assert!(
            head.contains(listen.as_str().unwrap()),
            "listen {listen}: {head}"
        );
    }
    let stats = element(http, r#"class="fe-stats""#, "dl");
    let stats_text = cell_text(stats);
    assert!(
        stats_text.contains("|81586|") && stats_text.contains("|14|"),
        "{stats_text}"
    );
    assert!(
        stats.contains("queue full") && stats.contains("queue timeout"),
        "{stats}"
    );
    assert!(
        !stats.contains("no backend"),
        "zero reasons left out: {stats}"
    );

    // TCP: its own panel, bytes in binary units.
    let redis = element(&dom, r#"data-frontend="redis""#, "article");
    assert!(redis.contains("least connections") && redis.contains("192.0.2.10:6379"));
    assert!(
        redis.contains("MiB") && redis.contains("KiB"),
        "bytes formatted: {redis}"
    );
    assert!(
        !backend_row(&dom, "redis", "192.0.2.60:6379").contains("be-addr"),
        "an address that is the name is not repeated"
    );

    let note = element(&dom, r#"id="balancer-note""#, "p");
    assert!(
        note.contains("6 backends") && note.contains("1 down"),
        "{note}"
    );
}

#[test]
fn status_page_hides_the_balancer_without_the_role() {
    if no_browser() {
        return;
    }
    // A node without the balancer: the role is not built, the API says null.
    let mut status: serde_json::Value = serde_json::from_str(&sample_json()).unwrap();
    status["balancer"] = serde_json::Value::Null;
    let role = status["node"]["roles"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|r| r["role"] == "balancer")
        .expect("sample has a balancer role");
    role["state"] = "not_built".into();
    role["detail"] = "arrives with a later release".into();

    let addr = serve_json(status.to_string(), Api::Healthy);
    let dom = browser::dump_dom(&format!("http://{addr}/"), 5000).expect("dump DOM");
    let section = start_tags(&dom, r#"id="balancer""#);
    assert_eq!(section.len(), 1);
    assert!(
        section[0].contains(" hidden"),
        "section hidden: {}",
        section[0]
    );
    assert!(start_tags(&dom, r#"data-testid="backend""#).is_empty());
    assert!(
        dom.contains("not in this build"),
        "not_built role is shown honestly"
    );
    assert_eq!(
        start_tags(&dom, r#"data-testid="member""#).len(),
        4,
        "rest of the page drawn"
    );

    // The role on, but nothing configured yet: the section says so.
    status["balancer"] = serde_json::json!({ "http": null, "tcp": [] });
    let addr = serve_json(status.to_string(), Api::Healthy);
    let dom = browser::dump_dom(&format!("http://{addr}/"), 5000).expect("dump DOM");
    let section = start_tags(&dom, r#"id="balancer""#);
    assert!(
        !section[0].contains(" hidden"),
        "section shown: {}",
        section[0]
    );
    assert!(dom.contains("no front end is configured"));
    assert!(start_tags(&dom, r#"data-testid="backend""#).is_empty());
}

/// The `<tr>` of a row of the Postgres section.
fn pg_row<'a>(dom: &'a str, testid: &str, key: &str, value: &str) -> &'a str {
    element(
        dom,
        &format!(r#"data-testid="{testid}" data-{key}="{value}""#),
        "tr",
    )
}

#[test]
fn status_page_shows_the_postgres_pooler() {
    if no_browser() {
        return;
    }
    let sample: serde_json::Value = serde_json::from_str(&sample_json()).expect("sample is JSON");
    let pooler = &sample["pooler"];
    let addr = serve(Api::Healthy);
    let dom = browser::dump_dom(&format!("http://{addr}/"), 5000).expect("dump DOM");

    let section = start_tags(&dom, r#"id="postgres""#);
    assert_eq!(section.len(), 1, "one postgres section");
    assert!(
        !section[0].contains(" hidden"),
        "postgres section shown: {}",
        section[0]
    );
    // After the balancer, before "System".
    let at = |id: &str| dom.find(&format!(r#"id="{id}""#)).unwrap();
    assert!(at("balancer") < at("postgres") && at("postgres") < at("system"));

    // One row per server, in the API's order, with its role.
    let want: Vec<(String, String)> = pooler["backends"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b["name"].as_str().unwrap().to_string(),
                b["role"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let seen: Vec<(String, String)> = start_tags(&dom, r#"data-testid="pg-server""#)
        .iter()
        .map(|t| (attr(t, "data-name").unwrap(), attr(t, "data-role").unwrap()))
        .collect();
    assert_eq!(seen, want, "server rows");
    for (name, role) in &seen {
        let row = pg_row(&dom, "pg-server", "name", name);
        let badge = start_tags(row, r#"class="badge""#);
        assert_eq!(badge.len(), 1, "{name}: one role badge");
        assert_eq!(attr(badge[0], "data-pg").as_deref(), Some(role.as_str()));
        assert!(row.contains(&format!(">{role}<")), "{name}: role named");
    }
    let primary = pg_row(&dom, "pg-server", "name", "pi-2");
    assert!(primary.contains("16/B374D848"), "LSN shown: {primary}");
    assert!(primary.contains("192.0.2.12:5433"), "address shown");
    // Running queries in full; a count past a million shortened.
    assert!(cell_text(primary).contains("|3|"), "{primary}");
    assert!(cell_text(primary).contains("|120M|"), "{primary}");
    let standby = pg_row(&dom, "pg-server", "name", "pi-3");
    assert!(
        standby.contains("KiB") && cell_text(standby).contains("|480KiB|"),
        "lag in binary units: {standby}"
    );
    let down = pg_row(&dom, "pg-server", "name", "pi-4");
    assert!(
        down.contains(r#"data-ok="failed""#) && down.contains("connect: connection refused"),
        "a down server says why: {down}"
    );
    assert!(down.contains(r#"data-lb="down""#), "row marked down");

    // The pooler's header: port, pool mode, clients, health.
    let servers = element(&dom, r#"data-testid="pg-servers""#, "article");
    let head = element(servers, r#"class="fe-head""#, "header");
    assert!(
        head.contains("port 5432") && head.contains("transaction pooling"),
        "{head}"
    );
    assert!(head.contains("2 of 3 up"), "{head}");
    assert!(!head.contains("PAUSED"), "not paused: {head}");
    let stats = cell_text(element(servers, r#"class="fe-stats""#, "dl"));
    assert!(stats.contains("|23|") && stats.contains("|18|"), "{stats}");

    // Pools: one row each, waiting clients highlighted.
    let pools: Vec<(String, String)> = start_tags(&dom, r#"data-testid="pg-pool""#)
        .iter()
        .map(|t| {
            (
                attr(t, "data-database").unwrap(),
                attr(t, "data-user").unwrap(),
            )
        })
        .collect();
    assert_eq!(
        pools,
        [
            ("app".to_string(), "app".to_string()),
            ("reports".to_string(), "analyst".to_string())
        ]
    );
    let app = pg_row(&dom, "pg-pool", "database", "app");
    let app_text = cell_text(app);
    for n in ["20", "3", "9", "1", "21", "339M", "340M"] {
        assert!(
            app_text.contains(&format!("|{n}|")),
            "app shows {n}: {app_text}"
        );
    }
    assert!(
        app.contains(r#"data-level="warn""#),
        "waiting clients stand out"
    );
    assert!(app.contains(">transaction<") && app.contains("user app"));
    let reports = pg_row(&dom, "pg-pool", "database", "reports");
    assert!(reports.contains(">session<"), "{reports}");
    assert!(!reports.contains(r#"data-level="warn""#), "{reports}");

    let note = element(&dom, r#"id="postgres-note""#, "p");
    assert!(
        note.contains("3 servers")
            && note.contains("1 primary")
            && note.contains("1 standby")
            && note.contains("1 down")
            && note.contains("23 clients"),
        "{note}"
    );
}

#[test]
fn status_page_hides_postgres_without_a_pooler_and_shows_a_pause() {
    if no_browser() {
        return;
    }
    let mut status: serde_json::Value = serde_json::from_str(&sample_json()).unwrap();
    status["pooler"] = serde_json::Value::Null;
    let addr = serve_json(status.to_string(), Api::Healthy);
    let dom = browser::dump_dom(&format!("http://{addr}/"), 5000).expect("dump DOM");
    let section = start_tags(&dom, r#"id="postgres""#);
    assert_eq!(section.len(), 1);
    assert!(section[0].contains(" hidden"), "hidden: {}", section[0]);
    assert!(start_tags(&dom, r#"data-testid="pg-server""#).is_empty());
    assert_eq!(
        start_tags(&dom, r#"data-testid="member""#).len(),
        4,
        "rest of the page drawn"
    );

    // Paused, with hostile names: shown, escaped, nothing injected.
    let mut status: serde_json::Value = serde_json::from_str(&sample_json()).unwrap();
    status["pooler"]["paused"] = true.into();
    status["pooler"]["backends"][0]["name"] = "<img src=x onerror=alert(1)>".into();
    status["pooler"]["backends"][0]["role"] = "constructor".into();
    status["pooler"]["pools"][0]["database"] = "<b>db</b>".into();
    let addr = serve_json(status.to_string(), Api::Healthy);
    let dom = browser::dump_dom(&format!("http://{addr}/"), 5000).expect("dump DOM");
    let servers = element(&dom, r#"data-testid="pg-servers""#, "article");
    assert!(servers.contains("PAUSED"), "pause shown: {servers}");
    assert!(
        !dom.contains("<img src=x") && !dom.contains("<b>db</b>"),
        "names are text, not markup"
    );
    assert!(dom.contains(&html_text("<img src=x onerror=alert(1)>")));
    let odd = start_tags(&dom, r#"data-testid="pg-server""#);
    assert_eq!(
        attr(odd[0], "data-role").as_deref(),
        Some("down"),
        "an unknown role is shown as down"
    );
    let note = element(&dom, r#"id="postgres-note""#, "p");
    assert!(note.contains("paused"), "{note}");
}

/// The one `<div class="fe-stat">` of a panel (VRRP, db) labelled `label`.
fn fe_stat<'a>(panel: &'a str, label: &str) -> &'a str {
    let at = panel
        .find(&format!("<dt>{label}</dt>"))
        .unwrap_or_else(|| panic!("no {label} in {panel}"));
    let start = panel[..at].rfind("<div").unwrap();
    let end = at + panel[at..].find("</div>").unwrap();
    &panel[start..end + "</div>".len()]
}

/// The `<li>` of tracked item `item`.
fn track_row<'a>(dom: &'a str, item: &str) -> &'a str {
    element(
        dom,
        &format!(r#"data-testid="vrrp-track" data-item="{item}""#),
        "li",
    )
}

#[test]
fn status_page_shows_the_vrrp_instance() {
    if no_browser() {
        return;
    }
    let addr = serve(Api::Healthy);
    let dom = browser::dump_dom(&format!("http://{addr}/"), 5000).expect("dump DOM");

    // (`id="vrrp"` alone would also find the panel's data-testid.)
    let section = start_tags(&dom, r#" id="vrrp""#);
    assert_eq!(section.len(), 1, "one vrrp section");
    assert!(!section[0].contains(" hidden"), "shown: {}", section[0]);
    // Above the balancer: it decides whether the balancer gets traffic.
    let at = |id: &str| dom.find(&format!(r#" id="{id}""#)).unwrap();
    assert!(at("node") < at("vrrp") && at("vrrp") < at("balancer"));
    let note = element(&dom, r#"id="vrrp-note""#, "p");
    assert!(
        note.contains(">vrid 51 on eth0 · VRRPv3 · multicast<"),
        "{note}"
    );

    let panel = element(&dom, r#"data-testid="vrrp""#, "article");
    assert_eq!(
        attr(start_tags(panel, "data-testid")[0], "data-vrrp").as_deref(),
        Some("master")
    );
    let head = element(panel, r#"class="fe-head""#, "header");
    assert!(
        head.contains(">vrid 51<") && head.contains(">eth0<") && head.contains(">VRRPv3<"),
        "{head}"
    );
    let badge = start_tags(head, "vrrp-state");
    assert_eq!(badge.len(), 1, "one state badge: {head}");
    assert_eq!(attr(badge[0], "data-vrrp").as_deref(), Some("master"));
    assert!(head.contains(">MASTER<"), "{head}");

    // Lowered by tracking: highlighted, with what lowered it.
    let priority = fe_stat(panel, "Priority");
    assert!(priority.contains(r#"data-level="warn""#), "{priority}");
    assert!(
        priority.contains("<dd>110<") && priority.contains("of 150: storage −40"),
        "{priority}"
    );
    let master = fe_stat(panel, "Master");
    assert!(
        master.contains(">192.0.2.11<") && master.contains(">this node<"),
        "{master}"
    );
    assert!(fe_stat(panel, "VIP").contains(">192.0.2.10/24<"));
    let interval = fe_stat(panel, "Interval");
    assert!(interval.contains("<dd>1&nbsp;s"), "{interval}");
    assert!(
        !interval.contains("fe-stat-sub"),
        "a master's own interval is not repeated: {interval}"
    );
    let adverts = fe_stat(panel, "Adverts");
    assert!(
        cell_text(adverts).contains("|7400|sent · 12 received|"),
        "{adverts}"
    );
    // Drops: the total and the reasons that happened, not the zeros.
    let dropped = fe_stat(panel, "Dropped");
    assert!(dropped.contains(r#"data-level="warn""#), "{dropped}");
    assert!(
        cell_text(dropped).contains("|4|bad ttl 1 · not a peer 3|"),
        "{dropped}"
    );
    assert!(!panel.contains("vrid mismatch") && !panel.contains("I/O errors"));

    let facts = element(panel, r#"class="vrrp-facts""#, "dl");
    for text in [
        "backup → master",
        "preempted a master of lower priority",
        r#"data-at="1763792600000""#,
        "2&nbsp;h 3&nbsp;min ago",
        "<dd>multicast</dd>",
        ">with pseudo-header<",
        "<dd>SCHED_FIFO priority 10</dd>",
    ] {
        assert!(facts.contains(text), "{text}: {facts}");
    }

    let http = track_row(panel, "http");
    assert!(http.contains(r#"data-track="ok""#) && http.contains(">healthy<"));
    assert!(http.contains(">weight 60<") && http.contains(">200 in 3 ms<"));
    let storage = track_row(panel, "storage");
    assert!(
        storage.contains(r#"data-track="failing""#) && storage.contains(">failing<"),
        "{storage}"
    );
    assert!(
        storage.contains(">priority −40<")
            && storage.contains(">brick pi-4:/srv/gluster/brick1 offline<"),
        "{storage}"
    );
}

#[test]
fn status_page_shows_every_vrrp_state_and_hides_vrrp_without_an_instance() {
    if no_browser() {
        return;
    }
    let sample: serde_json::Value = serde_json::from_str(&sample_json()).unwrap();
    let render = |vrrp: serde_json::Value| {
        let mut status = sample.clone();
        status["vrrp"] = vrrp;
        let addr = serve_json(status.to_string(), Api::Healthy);
        browser::dump_dom(&format!("http://{addr}/"), 5000).expect("dump DOM")
    };

    // No instance on this node: no section, the rest drawn.
    let dom = render(serde_json::Value::Null);
    let section = start_tags(&dom, r#" id="vrrp""#);
    assert_eq!(section.len(), 1);
    assert!(section[0].contains(" hidden"), "hidden: {}", section[0]);
    assert!(start_tags(&dom, r#"data-testid="vrrp""#).is_empty());
    assert_eq!(start_tags(&dom, r#"data-testid="member""#).len(), 4);

    // Backup behind a master that won on priority, with the master's
    // (learned) interval, and a weight-0 item that would mean Fault.
    let mut backup = sample["vrrp"].clone();
    backup["state"] = "backup".into();
    backup["effective_priority"] = 90.into();
    backup["master"] = serde_json::json!({ "address": "192.0.2.12", "priority": 100 });
    backup["master_interval_ms"] = 2000.into();
    backup["last_transition"] = serde_json::json!({
        "from": "master", "to": "backup", "at_ms": 1763799940000u64,
        "reason": { "kind": "higher_priority", "from": "192.0.2.12", "priority": 100 }
    });
    backup["tracking"]["disk"] =
        serde_json::json!({ "healthy": true, "weight": 0, "detail": "ok" });
    backup["counters"]["io_errors"] = 2.into();
    let dom = render(backup);
    let panel = element(&dom, r#"data-testid="vrrp""#, "article");
    let badge = start_tags(panel, "vrrp-state")[0];
    assert_eq!(attr(badge, "data-vrrp").as_deref(), Some("backup"));
    assert!(panel.contains(">BACKUP<"));
    let master = fe_stat(panel, "Master");
    assert!(
        master.contains(">192.0.2.12<") && master.contains(">priority 100<"),
        "{master}"
    );
    assert!(fe_stat(panel, "Interval").contains("master’s 2&nbsp;s"));
    assert!(fe_stat(panel, "Priority").contains("of 150: storage −40"));
    let io = fe_stat(panel, "I/O errors");
    assert!(
        io.contains(r#"data-level="warn""#) && io.contains("<dd>2<"),
        "{io}"
    );
    assert!(
        panel.contains(
            ">master → backup</span> · advert from 192.0.2.12 with higher priority 100 · <time"
        ),
        "{panel}"
    );
    assert!(track_row(panel, "disk").contains(">fault if failing<"));

    // Fault, with a peer's and the kernel's strings trying to be markup,
    // and lookups by names Object has.
    let mut fault = sample["vrrp"].clone();
    fault["state"] = "fault".into();
    fault["master"] = serde_json::Value::Null;
    fault["vips"] = serde_json::json!([]);
    fault["interface"] = "<img src=x onerror=alert(1)>".into();
    fault["version"] = "constructor".into();
    fault["checksum"] = "toString".into();
    fault["last_transition"] = serde_json::json!({
        "from": "backup", "to": "fault", "at_ms": 1763799990000u64,
        "reason": { "kind": "fault", "why": "<b>link down</b>" }
    });
    fault["tracking"]["<i>x</i>"] =
        serde_json::json!({ "healthy": false, "weight": 0, "detail": "<u>exit 1</u>" });
    fault["counters"]["dropped"]["<s>odd</s>"] = 5.into();
    let dom = render(fault);
    let panel = element(&dom, r#"data-testid="vrrp""#, "article");
    let badge = start_tags(panel, "vrrp-state")[0];
    assert_eq!(attr(badge, "data-vrrp").as_deref(), Some("fault"));
    assert!(panel.contains(">FAULT<"));
    assert!(fe_stat(panel, "Master").contains("<dd>unknown</dd>"));
    assert!(fe_stat(panel, "VIPs").contains("<dd>none</dd>"));
    assert!(panel.contains(">constructor<") && panel.contains(">toString<"));
    for markup in [
        "<img src=x",
        "<b>link down</b>",
        "<i>x</i>",
        "<u>exit 1</u>",
        "<s>odd</s>",
    ] {
        assert!(!dom.contains(markup), "{markup} became markup");
    }
    assert!(panel.contains(&html_text("fault: <b>link down</b>")));
    assert!(panel.contains(&html_text("<img src=x onerror=alert(1)>")));
    assert!(cell_text(fe_stat(panel, "Dropped")).contains(&html_text("<s>odd</s> 5")));
    let bad = track_row(panel, "&lt;i&gt;x&lt;/i&gt;");
    assert!(
        bad.contains(r#"data-track="fault""#) && bad.contains(">puts the instance in fault<"),
        "{bad}"
    );

    // A state this page does not know is grey, not master.
    let mut odd = sample["vrrp"].clone();
    odd["state"] = "__proto__".into();
    let dom = render(odd);
    let panel = element(&dom, r#"data-testid="vrrp""#, "article");
    let badge = start_tags(panel, "vrrp-state")[0];
    assert_eq!(attr(badge, "data-vrrp").as_deref(), Some("unknown"));
    assert!(panel.contains(">__PROTO__<"), "{panel}");
}

/// [`cell_text`] with each run of tag marks squashed to one `|`.
fn cells(html: &str) -> String {
    let text = cell_text(html);
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if !(c == '|' && out.ends_with('|')) {
            out.push(c);
        }
    }
    out
}

/// The `<tr>` of db node `name` in the cluster table.
fn db_node_row<'a>(dom: &'a str, name: &str) -> &'a str {
    element(
        dom,
        &format!(r#"data-testid="db-node" data-name="{name}""#),
        "tr",
    )
}

#[test]
fn status_page_shows_the_db_role() {
    if no_browser() {
        return;
    }
    let addr = serve(Api::Healthy);
    let dom = browser::dump_dom(&format!("http://{addr}/"), 5000).expect("dump DOM");

    let section = start_tags(&dom, r#" id="db""#);
    assert_eq!(section.len(), 1, "one db section");
    assert!(!section[0].contains(" hidden"), "shown: {}", section[0]);
    // After the balancer, next to the pooler's section.
    let at = |id: &str| dom.find(&format!(r#" id="{id}""#)).unwrap();
    assert!(at("balancer") < at("db") && at("db") < at("postgres"));
    let note = element(&dom, r#"id="db-note""#, "p");
    assert!(
        note.contains(">4 db nodes · primary pi-2 · 2 standbys · 1 down · VRRP master pi-1<"),
        "{note}"
    );

    // This node: a standby streaming from pi-2.
    let local = element(&dom, r#"data-testid="db-local""#, "article");
    let head = element(local, r#"class="fe-head""#, "header");
    assert!(
        head.contains(">PostgreSQL<")
            && head.contains(">version 16<")
            && head.contains(">pid 812<"),
        "{head}"
    );
    let badge = start_tags(head, "db-state");
    assert_eq!(badge.len(), 1, "{head}");
    assert_eq!(attr(badge[0], "data-dbstate").as_deref(), Some("running"));
    assert!(head.contains(">RUNNING<"), "{head}");
    assert!(
        !local.contains("db-detail"),
        "no detail line while running: {local}"
    );
    assert!(fe_stat(local, "Role").contains("<dd>standby<"));
    assert!(fe_stat(local, "Timeline").contains("<dd>3<"));
    let wal = fe_stat(local, "WAL position");
    assert!(
        wal.contains(">16/B374A848<") && wal.contains(">received 16/B374D848<"),
        "{wal}"
    );
    let lag = fe_stat(local, "Replay lag");
    assert!(cells(lag).contains("|120KiB|delay 08s|"), "{lag}");
    assert!(fe_stat(local, "Upstream").contains("<dd>pi-2<"));
    let restarts = fe_stat(local, "Restarts");
    assert!(
        restarts.contains(r#"data-level="warn""#) && restarts.contains("<dd>1<"),
        "{restarts}"
    );
    let quorum = fe_stat(local, "Quorum");
    assert!(
        !quorum.contains("data-level") && quorum.contains(">majority seen<"),
        "{quorum}"
    );
    assert!(
        start_tags(local, "db-replica").is_empty() && !local.contains("No standby"),
        "a standby has no replica table: {local}"
    );

    // The cluster: one row per db node, by name, the primary highlighted.
    let rows: Vec<(String, String, Option<String>)> = start_tags(&dom, r#"data-testid="db-node""#)
        .iter()
        .map(|t| {
            (
                attr(t, "data-name").unwrap(),
                attr(t, "data-db").unwrap(),
                attr(t, "data-primary"),
            )
        })
        .collect();
    let want = [
        ("pi-1", "standby", None),
        ("pi-2", "primary", Some("true")),
        ("pi-3", "standby", None),
        ("pi-4", "down", None),
    ];
    assert_eq!(
        rows,
        want.map(|(a, b, c)| (a.to_string(), b.to_string(), c.map(str::to_string))),
    );
    let cluster = element(&dom, r#"data-testid="db-cluster""#, "article");
    assert!(
        element(cluster, r#"class="fe-health""#, "span").contains(">primary pi-2<"),
        "{cluster}"
    );
    let me = db_node_row(&dom, "pi-1");
    assert!(
        me.contains(">this node<") && me.contains(">VRRP master<"),
        "{me}"
    );
    assert!(!me.contains("<a "), "no link to the page we are on: {me}");
    assert!(cells(me).contains("|3|16/B374A848|120KiB|pi-2|"), "{me}");
    let primary = db_node_row(&dom, "pi-2");
    assert!(
        primary.contains(r#"href="http://192.0.2.12:9000/""#),
        "{primary}"
    );
    assert!(
        cells(primary).contains("|primary|3|16/B374D848|–|–|"),
        "{primary}"
    );
    assert!(cells(db_node_row(&dom, "pi-3")).contains("|200KiB|pi-2|"));
    let down = db_node_row(&dom, "pi-4");
    assert!(
        start_tags(down, "db-node")[0].contains(r#"data-alive="false""#)
            && down.contains(">unreachable<"),
        "{down}"
    );
    // Its last report is kept (the old primary, timeline 2), its lag is not.
    assert!(cells(down).contains("|2|16/A0000028|–|–|"), "{down}");
}

#[test]
fn status_page_shows_every_db_state_and_hides_db_without_one() {
    if no_browser() {
        return;
    }
    let sample: serde_json::Value = serde_json::from_str(&sample_json()).unwrap();
    let render = |db: serde_json::Value| {
        let mut status = sample.clone();
        status["db"] = db;
        let addr = serve_json(status.to_string(), Api::Healthy);
        (
            addr,
            browser::dump_dom(&format!("http://{addr}/"), 5000).expect("dump DOM"),
        )
    };

    // No db node anywhere: no section, the rest drawn.
    let (_, dom) = render(serde_json::Value::Null);
    let section = start_tags(&dom, r#" id="db""#);
    assert_eq!(section.len(), 1);
    assert!(section[0].contains(" hidden"), "hidden: {}", section[0]);
    assert!(start_tags(&dom, r#"data-testid="db-node""#).is_empty());
    assert_eq!(start_tags(&dom, r#"data-testid="member""#).len(), 4);

    // A node without the db role: only the cluster, and no primary.
    let mut db = sample["db"].clone();
    db["local"] = serde_json::Value::Null;
    db["primary"] = serde_json::Value::Null;
    db["cluster"][1]["status"] = "fenced".into();
    db["cluster"][1]["state"] = "fenced".into();
    db["cluster"][1]["role"] = "standby".into();
    let (_, dom) = render(db);
    assert!(start_tags(&dom, r#"data-testid="db-local""#).is_empty());
    let cluster = element(&dom, r#"data-testid="db-cluster""#, "article");
    let health = element(cluster, r#"class="fe-health""#, "span");
    assert!(
        health.contains(r#"data-level="bad""#) && health.contains(">no primary<"),
        "{health}"
    );
    let fenced = start_tags(db_node_row(&dom, "pi-2"), "db-node")[0];
    assert_eq!(attr(fenced, "data-db").as_deref(), Some("fenced"));
    assert_eq!(attr(fenced, "data-primary"), None);
    let note = element(&dom, r#"id="db-note""#, "p");
    assert!(
        note.contains("no primary") && note.contains("1 fenced"),
        "{note}"
    );

    // This node the primary, its standbys from pg_stat_replication, and
    // the majority lost.
    let mut db = sample["db"].clone();
    let local = &mut db["local"];
    local["role"] = "primary".into();
    local["upstream"] = serde_json::Value::Null;
    local["replay_lag_bytes"] = serde_json::Value::Null;
    local["replay_delay_s"] = serde_json::Value::Null;
    local["quorum"] = false.into();
    local["restarts"] = 0.into();
    local["replicas"] = serde_json::json!([
        { "name": "pi-2", "client_addr": "192.0.2.12", "state": "streaming", "sync_state": "sync",
          "replay_lsn": 97500059720u64, "lag_bytes": 0 },
        { "name": "pi-3", "client_addr": "192.0.2.13", "state": "catchup", "sync_state": "async",
          "replay_lsn": null, "lag_bytes": null }
    ]);
    let (addr, dom) = render(db.clone());
    let local = element(&dom, r#"data-testid="db-local""#, "article");
    assert!(fe_stat(local, "Role").contains(">takes writes<"));
    assert!(
        !local.contains("<dt>Replay lag</dt>") && !local.contains("<dt>Upstream</dt>"),
        "{local}"
    );
    assert!(!fe_stat(local, "Restarts").contains("data-level"));
    let quorum = fe_stat(local, "Quorum");
    assert!(
        quorum.contains(r#"data-level="bad""#) && quorum.contains(">majority lost<"),
        "{quorum}"
    );
    let replicas: Vec<(String, String)> = start_tags(local, r#"data-testid="db-replica""#)
        .iter()
        .map(|t| {
            (
                attr(t, "data-name").unwrap(),
                attr(t, "data-state").unwrap(),
            )
        })
        .collect();
    assert_eq!(
        replicas,
        vec![
            ("pi-2".to_string(), "streaming".to_string()),
            ("pi-3".to_string(), "catchup".to_string())
        ]
    );
    let pi2 = element(local, r#"data-testid="db-replica" data-name="pi-2""#, "tr");
    assert!(
        cells(pi2).contains("|streaming|sync|16/B374D848|0B|"),
        "{pi2}"
    );
    let pi3 = element(local, r#"data-testid="db-replica" data-name="pi-3""#, "tr");
    assert!(cells(pi3).contains("|catchup|async|–|–|"), "{pi3}");
    // The primary's page on a phone: nothing sticks out.
    let check = browser::dump_dom(&format!("http://{addr}/phone-check.html"), 6000)
        .expect("dump phone check");
    let result = element(&check, r#"id="result""#, "pre");
    let tag = start_tags(result, r#"id="result""#)[0];
    assert_eq!(attr(tag, "data-db").as_deref(), Some("6"), "{result}");
    assert_eq!(
        attr(tag, "data-offenders").as_deref(),
        Some("0"),
        "{result}"
    );

    // A primary without standbys says so.
    let mut alone = db.clone();
    alone["local"]["replicas"] = serde_json::json!([]);
    let (_, dom) = render(alone);
    assert!(dom.contains(">No standby is connected.<"));

    // Not running: the state, what it waits for, since when.
    for (state, level) in [
        ("cloning", "info"),
        ("waiting", "info"),
        ("restarting", "warn"),
        ("fenced", "warn"),
        ("failed", "bad"),
    ] {
        let mut db = sample["db"].clone();
        db["local"]["state"] = state.into();
        db["local"]["detail"] = format!("detail of {state}").into();
        let (_, dom) = render(db);
        let local = element(&dom, r#"data-testid="db-local""#, "article");
        let detail = element(local, r#"data-testid="db-detail""#, "p");
        assert!(
            detail.contains(&format!(r#"data-level="{level}""#))
                && detail.contains(&format!(">detail of {state}<"))
                && detail.contains(r#"data-since="1763792600000""#)
                && detail.contains(">for "),
            "{state}: {detail}"
        );
        assert!(
            local.contains(&format!(">{}<", state.to_uppercase())),
            "{state}: {local}"
        );
    }

    // Peers' strings are text, and names Object has find nothing.
    let mut db = sample["db"].clone();
    db["local"]["state"] = "__proto__".into();
    db["local"]["detail"] = "<b>boom</b>".into();
    db["local"]["server"] = "<img src=x onerror=alert(1)>".into();
    db["local"]["replicas"] = serde_json::json!([{ "name": "<i>r</i>", "state": "constructor", "sync_state": "<u>s</u>" }]);
    db["cluster"][2]["hostname"] = "<img src=x onerror=alert(2)>".into();
    db["cluster"][2]["status"] = "constructor".into();
    db["cluster"][2]["upstream"] = "<s>up</s>".into();
    db["cluster"][3]["lsn"] = "<em>lsn</em>".into();
    db["cluster"]
        .as_array_mut()
        .unwrap()
        .push("not a row".into());
    let (addr, dom) = render(db);
    let names = element_names(&dom);
    // (`b` is the charts' own; the peer's `<b>` is checked as text below.)
    for bad in ["img", "i", "u", "s", "em"] {
        assert!(!names.iter().any(|n| n == bad), "injected <{bad}> element");
    }
    assert!(!dom.contains("<b>boom</b>"), "injected <b> element");
    for text in [
        "<b>boom</b>",
        "<i>r</i>",
        "<u>s</u>",
        "<img src=x onerror=alert(2)>",
        "<s>up</s>",
        "<em>lsn</em>",
    ] {
        assert!(dom.contains(&html_text(text)), "{text} shown as text");
    }
    let local = element(&dom, r#"data-testid="db-local""#, "article");
    assert_eq!(
        attr(start_tags(local, "db-state")[0], "data-dbstate").as_deref(),
        Some("unknown")
    );
    assert!(!local.contains("version "), "no version from a bad path");
    let odd = start_tags(&dom, r#"data-status="constructor""#);
    assert_eq!(odd.len(), 1);
    assert_eq!(attr(odd[0], "data-db").as_deref(), Some("unknown"));
    assert_eq!(start_tags(&dom, r#"data-testid="db-node""#).len(), 4);
    assert!(!dom.contains("function Object") && !dom.contains("[native code]"));
    let check = browser::dump_dom(&format!("http://{addr}/phone-check.html"), 6000)
        .expect("dump phone check");
    let result = element(&check, r#"id="result""#, "pre");
    let tag = start_tags(result, r#"id="result""#)[0];
    assert_eq!(
        attr(tag, "data-offenders").as_deref(),
        Some("0"),
        "{result}"
    );
}

/// The brick row of `name` (host:path) in the storage panel.
fn brick_row<'a>(dom: &'a str, name: &str) -> &'a str {
    let needle = format!(r#"data-name="{name}""#);
    let at = dom
        .find(&needle)
        .unwrap_or_else(|| panic!("no brick row {name}"));
    let start = dom[..at].rfind("<tr").expect("row start");
    let end = dom[at..].find("</tr>").map_or(dom.len(), |e| at + e);
    &dom[start..end]
}

#[test]
fn status_page_shows_the_storage_role() {
    if no_browser() {
        return;
    }
    let addr = serve(Api::Healthy);
    let dom = browser::dump_dom(&format!("http://{addr}/"), 5000).expect("dump DOM");
    let section = start_tags(&dom, r#" id="storage""#);
    assert_eq!(section.len(), 1, "one storage section");
    assert!(!section[0].contains(" hidden"), "shown: {}", section[0]);
    let note = element(&dom, r#"id="storage-note""#, "p");
    assert!(
        note.contains(">volume piha DEGRADED · 4 bricks · mounted on /srv/piha/www<"),
        "{note}"
    );

    // The volume: its state, why, the heal backlog and the low-space warning.
    let volume = element(&dom, r#"data-testid="storage-volume""#, "article");
    assert_eq!(
        attr(start_tags(volume, "storage-volume")[0], "data-state").as_deref(),
        Some("DEGRADED")
    );
    assert!(
        volume.contains(">DEGRADED<") && volume.contains(">replica 2<"),
        "{volume}"
    );
    assert!(
        volume.contains("set 2 has 1 of 2 bricks online and keeps quorum"),
        "{volume}"
    );
    assert!(volume.contains("is low on space"), "{volume}");
    let heal = fe_stat(volume, "To heal");
    assert!(
        heal.contains(r#"data-level="warn""#) && heal.contains("<dd>44"),
        "{heal}"
    );
    assert!(fe_stat(volume, "Split brain").contains("<dd>0<"));
    assert!(fe_stat(volume, "Mounted").contains("<dd>yes"));

    // Bricks per node, named from the members list, with space bars.
    let bricks = element(&dom, r#"data-testid="storage-bricks""#, "article");
    assert!(bricks.contains(">3 of 4 online<"), "{bricks}");
    let pi1 = brick_row(&dom, "192.0.2.11:/srv/piha/brick");
    assert!(pi1.contains(">pi-1<") && pi1.contains("set 1"), "{pi1}");
    assert!(
        pi1.contains(r#"class="bar""#) && pi1.contains("free"),
        "{pi1}"
    );
    let pi3 = brick_row(&dom, "192.0.2.13:/srv/piha/brick");
    assert!(
        pi3.contains(r#"data-level="hot""#),
        "low space shows hot: {pi3}"
    );
    assert!(pi3.contains(">44<"), "its heal count: {pi3}");
    let pi4 = brick_row(&dom, "192.0.2.14:/srv/piha/brick");
    assert_eq!(
        attr(start_tags(pi4, "brick")[0], "data-state").as_deref(),
        Some("unknown")
    );
    assert!(pi4.contains("missing from volume status"), "{pi4}");

    // Peers: pi-4's glusterd disconnected.
    let peers = element(&dom, r#"data-testid="storage-peers""#, "article");
    assert!(peers.contains(">2 of 3 connected<"), "{peers}");
    assert!(
        peers.contains("pi-4 (192.0.2.14)") && peers.contains(">disconnected<"),
        "{peers}"
    );
}

#[test]
fn status_page_shows_stale_storage_data_and_hides_storage_without_the_role() {
    if no_browser() {
        return;
    }
    let sample: serde_json::Value = serde_json::from_str(&sample_json()).unwrap();
    let render = |storage: serde_json::Value| {
        let mut status = sample.clone();
        status["storage"] = storage;
        let addr = serve_json(status.to_string(), Api::Healthy);
        browser::dump_dom(&format!("http://{addr}/"), 5000).expect("dump DOM")
    };
    let dom = render(serde_json::Value::Null);
    let section = start_tags(&dom, r#" id="storage""#);
    assert!(section[0].contains(" hidden"), "hidden: {}", section[0]);
    assert!(start_tags(&dom, r#"data-testid="brick""#).is_empty());

    // glusterd hung for 40 s: the last good data stays, with its age.
    let mut storage = sample["storage"].clone();
    storage["view"]["glusterd"] =
        serde_json::json!({"state": "hung", "why": "gluster did not answer within 5s"});
    storage["view"]["volumes"][0]["state"] = "UNKNOWN".into();
    storage["view"]["volumes"][0]["last_known"] = "DEGRADED".into();
    storage["data_age_ms"] = 40_000.into();
    let dom = render(storage);
    let volume = element(&dom, r#"data-testid="storage-volume""#, "article");
    assert!(volume.contains(">UNKNOWN<"), "{volume}");
    assert!(volume.contains("(last known DEGRADED)"), "{volume}");
    assert!(
        volume.contains("glusterd hung: gluster did not answer within 5s"),
        "{volume}"
    );
    assert!(volume.contains("showing the last good data"), "{volume}");
    assert_eq!(
        start_tags(&dom, r#"data-testid="brick""#).len(),
        4,
        "bricks still shown"
    );
    let note = element(&dom, r#"id="storage-note""#, "p");
    assert!(note.contains("data 40"), "{note}");
}
