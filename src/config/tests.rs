//! Loader tests on in-memory files; the broken fixtures and the binary are
//! exercised by tests/check.rs.

use std::path::Path;
use std::time::Duration;

use super::*;

const SHIPPED: &str = include_str!("../../pi-configs/cluster.toml");

fn shipped() -> ClusterConfig {
    match parse(SHIPPED, Path::new("pi-configs/cluster.toml")) {
        Ok(c) => c,
        Err(e) => panic!("shipped file rejected:\n{e}"),
    }
}

fn diagnostics(text: &str) -> Vec<Diagnostic> {
    match parse(text, Path::new("t.toml")) {
        Err(ConfigError::Invalid { diagnostics, .. }) => diagnostics,
        Err(e) => panic!("expected diagnostics, got {e}"),
        Ok(_) => panic!("expected diagnostics, file was accepted"),
    }
}

const SMALL: &str = r#"
[cluster]
name = "t"

[[node]]
hostname = "a"
address = "192.0.2.11/24"
roles = ["web"]
"#;

#[test]
fn shipped_file_has_the_documented_layout() {
    let c = shipped();
    assert_eq!(c.name, "piha");
    assert_eq!(c.vip, Some("192.0.2.10/24".parse().unwrap()));
    assert!(c.admin_token.is_none());
    assert_eq!(c.nodes.len(), 4);
    assert_eq!(c.source.hash.len(), 16);
    assert!(c.source.hash.chars().all(|ch| ch.is_ascii_hexdigit()));
    assert_eq!(c.membership.down_after, Duration::from_secs(3));
    assert_eq!(c.store.max_bytes, 64 << 20);
    assert_eq!(c.store.retention, Duration::from_secs(7 * 86_400));

    let pi1 = c.plan_for("pi-1").unwrap();
    assert_eq!(pi1.roles, Role::ALL.into_iter().collect());
    assert_eq!(pi1.settings.balancer.as_ref().unwrap().priority, 150);
    assert!(pi1.settings.db.as_ref().unwrap().initial_primary);
    assert_eq!(pi1.address, Some("192.0.2.11".parse().unwrap()));
    assert_eq!((pi1.admin_port, pi1.gossip_port), (9000, 7946));

    let pi3 = c.plan_for("pi-3").unwrap();
    assert!(pi3.settings.balancer.is_none());
    assert!(!pi3.settings.db.as_ref().unwrap().initial_primary);
    assert_eq!(
        pi3.settings.web.as_ref().unwrap().root,
        Path::new("/srv/piha/www")
    );

    let pi4 = c.plan_for("pi-4").unwrap();
    assert_eq!(pi4.roles, [Role::Web, Role::Storage].into_iter().collect());
    assert!(pi4.settings.db.is_none());
    assert_eq!(c.nodes[3].network.to_string(), "192.0.2.14/24");
}

#[test]
fn loopback_copy_of_the_shipped_file_is_valid() {
    // The test scripts derive a one-machine cluster this way.
    let loopback = SHIPPED.replace("192.0.2.", "127.0.2.");
    let c = parse(&loopback, Path::new("lo.toml")).unwrap();
    assert_eq!(
        c.nodes[0].address,
        "127.0.2.11".parse::<std::net::IpAddr>().unwrap()
    );
}

#[test]
fn unknown_host_names_known_hosts_and_patterns() {
    let c = shipped();
    let mut without_pattern = c.clone();
    without_pattern.patterns.clear();
    let e = without_pattern.plan_for("web-7").unwrap_err();
    assert_eq!(
        e.to_string(),
        "no node \"web-7\" in pi-configs/cluster.toml: known hosts: pi-1, pi-2, pi-3, pi-4; patterns: none"
    );
    let e = c.plan_for("web-7").unwrap_err();
    assert!(e.to_string().ends_with("patterns: pi-*"), "{e}");
}

#[test]
fn pattern_match_gives_a_plan_without_address() {
    let c = shipped();
    let p = c.plan_for("pi-5").unwrap();
    assert_eq!(p.from_pattern.as_deref(), Some("pi-*"));
    assert_eq!(p.address, None);
    assert_eq!((p.admin_port, p.gossip_port), (9000, 7946));
    assert_eq!(p.roles, [Role::Web, Role::Storage].into_iter().collect());
    assert_eq!(
        p.settings.storage.as_ref().unwrap().brick,
        Path::new("/srv/piha/brick")
    );
    assert!(p.settings.db.is_none());
    // A named node wins over a pattern that also matches it.
    assert_eq!(c.plan_for("pi-2").unwrap().from_pattern, None);
    // Case and domain do not matter.
    assert_eq!(c.plan_for("PI-2.lan").unwrap().hostname, "pi-2");
    assert_eq!(c.plan_for("Pi-9.local").unwrap().hostname, "pi-9");
}

#[test]
fn first_matching_pattern_in_file_order_wins() {
    let text = format!(
        "{SMALL}\n[[pattern]]\nmatch = \"edge-?\"\nroles = [\"storage\"]\n\
         [[pattern]]\nmatch = \"edge-*\"\nroles = [\"web\"]\n"
    );
    let c = parse(&text, Path::new("t.toml")).unwrap();
    assert_eq!(
        c.plan_for("edge-1").unwrap().from_pattern.as_deref(),
        Some("edge-?")
    );
    assert_eq!(
        c.plan_for("edge-10").unwrap().from_pattern.as_deref(),
        Some("edge-*")
    );
    assert!(c.plan_for("core-1").is_err());
}

#[test]
fn sections_override_defaults_field_by_field() {
    let text = r#"
[cluster]
name = "t"
vip = "192.0.2.10/24"
[defaults]
admin_port = 9100
balancer = { priority = 120 }
web = { root = "/srv/site" }
[[node]]
hostname = "a"
address = "192.0.2.11/24"
roles = ["balancer", "web"]
admin_port = 9200
balancer = {}
[[node]]
hostname = "b"
address = "192.0.2.12/24"
roles = ["balancer"]
balancer = { priority = 90 }
"#;
    let c = parse(text, Path::new("t.toml")).unwrap();
    let a = c.plan_for("a").unwrap();
    assert_eq!(a.admin_port, 9200);
    assert_eq!(a.settings.balancer.unwrap().priority, 120);
    assert_eq!(a.settings.web.unwrap().root, Path::new("/srv/site"));
    let b = c.plan_for("b").unwrap();
    assert_eq!(b.admin_port, 9100);
    assert_eq!(b.settings.balancer.unwrap().priority, 90);
    assert!(b.settings.web.is_none());
}

#[test]
fn reports_every_mistake_not_just_the_first() {
    let text = r#"[cluster]
name = "t"
[[node]]
hostname = "a"
adress = "192.0.2.11/24"
roles = ["webb"]
[[node]]
address = "192.0.2.12"
roles = []
admin_port = "9000"
"#;
    let d = diagnostics(text);
    let got: Vec<(usize, &str)> = d.iter().map(|d| (d.line, d.message.as_str())).collect();
    let has = |line: usize, phrase: &str| got.iter().any(|(l, m)| *l == line && m.contains(phrase));
    assert!(has(5, "did you mean `address`?"), "{got:?}");
    assert!(has(6, "unknown role \"webb\""), "{got:?}");
    assert!(has(7, "missing the required key `hostname`"), "{got:?}");
    assert!(has(8, "no prefix length"), "{got:?}");
    assert!(has(10, "expected a port number"), "{got:?}");
    // The misspelt `adress` is one mistake: no second "missing `address`".
    assert_eq!(d.len(), 5, "{got:?}");
    let shown = parse(text, Path::new("t.toml")).unwrap_err().to_string();
    assert!(shown.starts_with("t.toml:5:1: error: "), "{shown}");
    assert!(shown.ends_with("t.toml: 5 errors"), "{shown}");
}

#[test]
fn column_points_at_the_value() {
    let d = diagnostics(&SMALL.replace("192.0.2.11/24", "192.0.2.300/24"));
    assert_eq!((d[0].line, d[0].column), (7, 11));
}

#[test]
fn file_over_the_size_limit_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.toml");
    let mut text = SMALL.to_string();
    while (text.len() as u64) <= MAX_FILE_BYTES {
        text.push_str("# padding padding padding padding padding padding padding\n");
    }
    std::fs::write(&path, &text).unwrap();
    let e = load(&path).unwrap_err();
    assert!(matches!(e, ConfigError::TooLarge { .. }), "{e}");
    assert!(e.to_string().contains("larger than 1024 KiB"), "{e}");

    // Right at the limit is fine.
    text.truncate(MAX_FILE_BYTES as usize - 1);
    text.push('\n');
    std::fs::write(&path, &text).unwrap();
    load(&path).unwrap();
}

#[test]
fn non_utf8_file_points_at_the_bad_byte() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("latin1.toml");
    let mut bytes = SMALL.as_bytes().to_vec();
    bytes.extend_from_slice(b"# caf\xe9\n");
    std::fs::write(&path, &bytes).unwrap();
    match load(&path) {
        Err(ConfigError::Invalid { diagnostics, .. }) => {
            assert_eq!(diagnostics[0].line, 9);
            assert_eq!(diagnostics[0].column, 6);
            assert!(diagnostics[0].message.contains("not UTF-8"));
        }
        other => panic!("expected a diagnostic, got {other:?}"),
    }
}

#[test]
fn admin_token_file_is_read_relative_to_the_cluster_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("token"), "  0123456789abcdefXYZ\n").unwrap();
    std::fs::write(dir.path().join("short"), "abc\n").unwrap();
    let path = dir.path().join("cluster.toml");
    let with = |line: &str| SMALL.replace("name = \"t\"", &format!("name = \"t\"\n{line}"));

    std::fs::write(&path, with("admin_token_file = \"token\"")).unwrap();
    let c = load(&path).unwrap();
    assert_eq!(c.admin_token.as_deref(), Some("0123456789abcdefXYZ"));

    std::fs::write(&path, with("admin_token_file = \"short\"")).unwrap();
    let e = load(&path).unwrap_err().to_string();
    assert!(
        e.contains("is 3 characters long; it must be at least 16"),
        "{e}"
    );

    std::fs::write(&path, with("admin_token_file = \"nope\"")).unwrap();
    let e = load(&path).unwrap_err().to_string();
    assert!(e.contains("cannot read admin_token_file"), "{e}");
}

#[test]
fn plan_table_lists_nodes_and_patterns() {
    let table = shipped().plan_table();
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].starts_with(
            "cluster \"piha\": 4 nodes, 1 pattern, VIP 192.0.2.10/24, config pi-configs/cluster.toml (hash "
        ),
        "{table}"
    );
    assert!(lines[2].starts_with("HOST  ADDRESS"), "{table}");
    let pi1 = lines.iter().find(|l| l.starts_with("pi-1 ")).unwrap();
    assert!(pi1.contains("balancer, web, db, storage"), "{table}");
    assert!(pi1.contains("vrrp priority 150"), "{table}");
    assert!(pi1.contains("db initial primary"), "{table}");
    let pattern = lines.iter().find(|l| l.starts_with("pi-* ")).unwrap();
    assert!(pattern.contains("(joins by pattern)"), "{table}");
    // Columns line up: ROLES starts at the same place on every row.
    let col = lines[2].find("ROLES").unwrap();
    assert_eq!(pi1.find("balancer"), Some(col), "{table}");
}

/// Every new web and balancer key, in `[defaults.web]` / `[defaults.balancer]`
/// header form, with a tcp service written as `[[defaults.balancer.tcp]]`.
const EVERY_KEY: &str = r#"
[cluster]
name = "t"
vip = "192.0.2.10/24"

[defaults.web]
root = "/srv/site"
port = 8081
tls_port = false
tls = { cert = "/etc/piha/tls/web.pem", key = "/etc/piha/tls/web.key" }
access_log = { path = "/var/log/piha/access.log" }
follow_symlinks = true

[defaults.balancer]
priority = 120
http_port = 8000
https_port = 4443
tls = { cert = "/etc/piha/tls/lb.pem", key = "/etc/piha/tls/lb.key" }
algorithm = "source"
slow_start = "0s"
health = { path = "/up", expect = 204, interval = "2s", timeout = "500ms", rise = 3, fall = 5, panic = false }
limits = { maxconn = 64, queue = 0, queue_timeout = "1s", header_timeout = "3s", connect_timeout = "4s", server_timeout = "20s", tcp_user_timeout = "0s", idle_timeout = "30s", max_header_size = "8KiB", max_body_size = "1MiB" }
backends = [ { address = "192.0.2.50:8080", weight = 3 }, { address = "[2001:db8::50]:80" } ]

[[defaults.balancer.tcp]]
name = "redis"
port = 6379
backends = [ { address = "192.0.2.60:6379", weight = 2 } ]
algorithm = "random2"
health = { interval = "5s", timeout = "2s", rise = 1, fall = 2 }
limits = { maxconn = 8, queue = 16, queue_timeout = "6s", connect_timeout = "7s", idle_timeout = "1h" }

[[defaults.balancer.tcp]]
name = "pg"
port = 6432
backends = [ { address = "192.0.2.61:5432" } ]

[[node]]
hostname = "a"
address = "192.0.2.11/24"
roles = ["balancer", "web"]
"#;

#[test]
fn header_form_sets_every_new_web_key() {
    let c = parse(EVERY_KEY, Path::new("t.toml")).unwrap();
    let web = c.plan_for("a").unwrap().settings.web.unwrap();
    assert_eq!(web.root, Path::new("/srv/site"));
    assert_eq!((web.port, web.tls_port), (8081, None));
    let tls = web.tls.unwrap();
    assert_eq!(tls.cert, Path::new("/etc/piha/tls/web.pem"));
    assert_eq!(tls.key, Path::new("/etc/piha/tls/web.key"));
    match web.access_log {
        AccessLog::File { path, max_bytes } => {
            assert_eq!(path, Path::new("/var/log/piha/access.log"));
            assert_eq!(max_bytes, 16 << 20, "max_size defaults to 16MiB");
        }
        other => panic!("expected a log file, got {other:?}"),
    }
    assert!(web.follow_symlinks);
}

#[test]
fn header_form_sets_every_new_balancer_key() {
    let c = parse(EVERY_KEY, Path::new("t.toml")).unwrap();
    let b = c.plan_for("a").unwrap().settings.balancer.unwrap();
    let ms = Duration::from_millis;
    let secs = Duration::from_secs;
    assert_eq!(b.priority, 120);
    assert_eq!((b.http_port, b.https_port), (8000, Some(4443)));
    assert_eq!(b.tls.unwrap().cert, Path::new("/etc/piha/tls/lb.pem"));
    assert_eq!(b.algorithm, Algorithm::Source);
    assert_eq!(b.slow_start, Duration::ZERO);
    let h = &b.health;
    assert_eq!((h.path.as_str(), h.expect_status), ("/up", 204));
    assert_eq!(
        (h.interval, h.timeout, h.rise, h.fall, h.panic),
        (secs(2), ms(500), 3, 5, false)
    );
    let l = &b.limits;
    assert_eq!((l.maxconn, l.queue), (64, 0));
    assert_eq!(
        [
            l.queue_timeout,
            l.header_timeout,
            l.connect_timeout,
            l.server_timeout,
            l.tcp_user_timeout,
            l.idle_timeout
        ],
        [secs(1), secs(3), secs(4), secs(20), secs(0), secs(30)]
    );
    assert_eq!(
        (l.max_header_bytes, l.max_body_bytes),
        (8 << 10, Some(1 << 20))
    );
    let backends: Vec<(String, u32)> = b
        .backends
        .iter()
        .map(|s| (s.address.to_string(), s.weight))
        .collect();
    assert_eq!(
        backends,
        [
            ("192.0.2.50:8080".to_string(), 3),
            ("[2001:db8::50]:80".to_string(), 1)
        ]
    );
}

#[test]
fn tcp_services_from_header_tables_with_their_own_defaults() {
    let c = parse(EVERY_KEY, Path::new("t.toml")).unwrap();
    let tcp = c.plan_for("a").unwrap().settings.balancer.unwrap().tcp;
    let names: Vec<(&str, u16)> = tcp.iter().map(|t| (t.name.as_str(), t.port)).collect();
    assert_eq!(names, [("redis", 6379), ("pg", 6432)]);
    let redis = &tcp[0];
    assert_eq!(redis.backends[0].address.to_string(), "192.0.2.60:6379");
    assert_eq!(redis.backends[0].weight, 2);
    assert_eq!(redis.algorithm, Algorithm::Random2);
    let h = &redis.health;
    let secs = Duration::from_secs;
    assert_eq!(
        (h.interval, h.timeout, h.rise, h.fall),
        (secs(5), secs(2), 1, 2)
    );
    let l = &redis.limits;
    assert_eq!((l.maxconn, l.queue), (8, 16));
    assert_eq!(
        [l.queue_timeout, l.connect_timeout, l.idle_timeout],
        [secs(6), secs(7), secs(3600)]
    );
    // Unwritten keys of a service: built-in values, not the HTTP settings.
    let pg = &tcp[1];
    assert_eq!(pg.algorithm, Algorithm::LeastConn);
    assert_eq!(pg.health.interval, TcpHealthCheck::default().interval);
    assert_eq!(pg.limits.maxconn, ProxyLimits::default().maxconn);
    assert_eq!(pg.backends[0].weight, 1);
}

#[test]
fn unwritten_keys_keep_the_built_in_values() {
    let c = parse(
        &SMALL
            .replace("roles = [\"web\"]", "roles = [\"web\", \"balancer\"]")
            .replace("name = \"t\"", "name = \"t\"\nvip = \"192.0.2.10/24\""),
        Path::new("t.toml"),
    )
    .unwrap();
    let s = c.plan_for("a").unwrap().settings;
    let (web, builtin_web) = (s.web.unwrap(), WebSettings::default());
    assert_eq!(
        (web.port, web.tls_port),
        (builtin_web.port, builtin_web.tls_port)
    );
    assert!(matches!(web.access_log, AccessLog::Journal));
    assert!(web.tls.is_none() && !web.follow_symlinks);
    let (b, builtin) = (s.balancer.unwrap(), BalancerSettings::default());
    assert_eq!((b.http_port, b.https_port), (80, Some(443)));
    assert_eq!(
        (b.algorithm, b.slow_start),
        (builtin.algorithm, builtin.slow_start)
    );
    assert_eq!(b.health.path, builtin.health.path);
    assert_eq!(b.limits.max_body_bytes, None);
    assert!(b.backends.is_empty() && b.tcp.is_empty());
}

/// The same keys inline, and a node that overrides one key of the health
/// check while keeping the rest from [defaults].
#[test]
fn inline_form_overlays_defaults_key_by_key() {
    let text = r#"
[cluster]
name = "t"
vip = "192.0.2.10/24"
[defaults]
balancer = { algorithm = "leastconn", health = { path = "/up", interval = "3s", timeout = "2s", rise = 4, fall = 6 }, limits = { maxconn = 50, max_body_size = "2MiB" }, backends = [ { address = "192.0.2.50:80" } ], tcp = [ { name = "redis", port = 6379, backends = [ { address = "192.0.2.60:6379" } ] } ] }
web = { port = 8081, access_log = "off" }
[[node]]
hostname = "a"
address = "192.0.2.11/24"
roles = ["balancer", "web"]
balancer = { health = { interval = "5s" }, limits = { max_body_size = false }, https_port = false }
web = { tls_port = 9443 }
[[node]]
hostname = "b"
address = "192.0.2.12/24"
roles = ["balancer"]
balancer = { backends = [], tcp = [ { name = "pg", port = 6432, backends = [ { address = "192.0.2.61:5432" } ] } ] }
"#;
    let c = parse(text, Path::new("t.toml")).unwrap();
    let a = c.plan_for("a").unwrap().settings;
    let b = a.balancer.unwrap();
    let h = &b.health;
    let secs = Duration::from_secs;
    assert_eq!(h.interval, secs(5), "the node's own key");
    assert_eq!(
        (h.path.as_str(), h.timeout, h.rise, h.fall),
        ("/up", secs(2), 4, 6)
    );
    assert_eq!(h.expect_status, 200, "built-in, under both");
    assert_eq!((b.limits.maxconn, b.limits.max_body_bytes), (50, None));
    assert_eq!((b.algorithm, b.https_port), (Algorithm::LeastConn, None));
    assert_eq!(b.backends.len(), 1);
    assert_eq!(b.tcp[0].name, "redis");
    let web = a.web.unwrap();
    assert_eq!((web.port, web.tls_port), (8081, Some(9443)));
    assert!(matches!(web.access_log, AccessLog::Off));
    // Lists replace the ones in [defaults] as a whole.
    let other = c.plan_for("b").unwrap().settings.balancer.unwrap();
    assert!(other.backends.is_empty());
    let names: Vec<&str> = other.tcp.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["pg"]);
    assert_eq!(other.limits.max_body_bytes, Some(2 << 20));
}

#[test]
fn node_sub_tables_and_tcp_array_headers() {
    let text = r#"
[cluster]
name = "t"
vip = "192.0.2.10/24"
[[node]]
hostname = "a"
address = "192.0.2.11/24"
roles = ["balancer", "web"]
[node.web]
port = 8090
[node.web.access_log]
path = "/var/log/piha/a.log"
max_size = "64KiB"
[node.balancer.health]
path = "/ping"
[[node.balancer.tcp]]
name = "mqtt"
port = 1883
[[node.balancer.tcp.backends]]
address = "192.0.2.70:1883"
"#;
    let c = parse(text, Path::new("t.toml")).unwrap();
    let s = c.plan_for("a").unwrap().settings;
    let web = s.web.unwrap();
    assert_eq!(web.port, 8090);
    assert!(matches!(
        web.access_log,
        AccessLog::File {
            max_bytes: 65536,
            ..
        }
    ));
    let b = s.balancer.unwrap();
    assert_eq!(b.health.path, "/ping");
    assert_eq!(b.tcp[0].name, "mqtt");
    assert_eq!(b.tcp[0].backends[0].address.to_string(), "192.0.2.70:1883");
}

#[test]
fn plan_table_shows_ports_algorithm_and_services() {
    let table = parse(EVERY_KEY, Path::new("t.toml")).unwrap().plan_table();
    let row = table.lines().find(|l| l.starts_with("a ")).unwrap();
    assert!(
        row.ends_with(
            "vrrp priority 120, http :8000/:4443 source, 2 static backends, tcp redis :6379, tcp pg :6432, web :8081 root /srv/site"
        ),
        "{table}"
    );
    let shipped = shipped().plan_table();
    let pi1 = shipped.lines().find(|l| l.starts_with("pi-1 ")).unwrap();
    assert!(
        pi1.contains(
            "vrrp priority 150, http :80/:443 roundrobin, web :8080/:8443 root /srv/piha/www,"
        ),
        "{shipped}"
    );
}

/// (line, column, message) of every diagnostic, for exact comparisons.
fn found(text: &str) -> Vec<(usize, usize, String)> {
    diagnostics(text)
        .into_iter()
        .map(|d| (d.line, d.column, d.message))
        .collect()
}

/// Asserts that `got` holds exactly one diagnostic per `(line, phrase)`.
fn assert_found(got: &[(usize, usize, String)], expected: &[(usize, &str)]) {
    for (line, phrase) in expected {
        assert!(
            got.iter().any(|(l, _, m)| l == line && m.contains(phrase)),
            "no error at line {line} containing {phrase:?} in {got:#?}"
        );
    }
    assert_eq!(got.len(), expected.len(), "{got:#?}");
}

const BALANCER_NODE: &str = r#"[cluster]
name = "t"
vip = "192.0.2.10/24"
[[node]]
hostname = "a"
address = "192.0.2.11/24"
roles = ["balancer", "web"]
"#;

#[test]
fn new_web_mistakes_point_at_the_value() {
    let text = format!(
        "{BALANCER_NODE}{}",
        r#"[node.web]
port = 0
tls_port = true
tls = { cert = "cert.pem" }
access_log = "jornal"
follow_symlinks = "no"
[node.balancer]
algorithm = "round-robin"
slow_start = "soon"
https_port = "443"
"#
    );
    let got = found(&text);
    assert_found(
        &got,
        &[
            (9, "expected a port number from 1 to 65535, found 0"),
            (
                10,
                "wrong type for `tls_port`: expected a port number like 443, or false",
            ),
            (
                11,
                "a `tls` table needs both `cert` and `key`; `key` is missing",
            ),
            (
                11,
                "expected an absolute file path starting with '/', found \"cert.pem\"",
            ),
            (12, "found \"jornal\" (did you mean \"journal\"?)"),
            (13, "wrong type for `follow_symlinks`"),
            (
                15,
                "unknown algorithm \"round-robin\"; valid ones are roundrobin, leastconn, source, random2 (did you mean \"roundrobin\"?)",
            ),
            (
                16,
                "expected a duration like \"1s\", \"500ms\" or \"7d\", found \"soon\" (or \"0s\" for off)",
            ),
            (17, "wrong type for `https_port`"),
        ],
    );
    let cols: Vec<usize> = got.iter().map(|g| g.1).collect();
    assert_eq!(cols, [8, 12, 7, 16, 14, 19, 13, 14, 14], "{got:#?}");
}

#[test]
fn new_balancer_mistakes_point_at_the_value() {
    let text = format!(
        "{BALANCER_NODE}{}",
        r#"[node.balancer]
health = { path = "health", expect = 700, interval = "1s", timeout = "2s", rise = 0, fall = 101 }
limits = { maxconn = 0, queue = 100001, queue_timeout = "0s", max_header_size = "512B", max_body_size = 0, idle_timout = "1s" }
backends = [
  { address = "192.0.2.50" },
  { address = "web.lan:80" },
  { weight = 257 },
  { address = "192.0.2.51:80" },
  { address = "192.0.2.51:80" },
  "192.0.2.52:80",
]
"#
    );
    assert_found(
        &found(&text),
        &[
            (9, "the health check path must start with '/'"),
            (9, "`expect` must be an HTTP status from 100 to 599"),
            (
                9,
                "the health check timeout (2s) is longer than its interval (1s)",
            ),
            (9, "`rise` must be from 1 to 100, found 0"),
            (9, "`fall` must be from 1 to 100, found 101"),
            (10, "`maxconn` must be from 1 to 1000000, found 0"),
            (10, "`queue` must be from 0 to 100000, found 100001"),
            (10, "it must be longer than zero"),
            (
                10,
                "`max_header_size` must be from 1KiB to 1MiB, found 512 bytes",
            ),
            (10, "`max_body_size` of 0 would refuse every request body"),
            (
                10,
                "unknown key `idle_timout` in `balancer.limits`; did you mean `idle_timeout`?",
            ),
            (12, "\"192.0.2.50\" has no port (e.g. \"192.0.2.50:8080\")"),
            (13, "\"web.lan\" is not an IP address"),
            (14, "a backend is missing the required key `address`"),
            (14, "`weight` must be from 1 to 256, found 257"),
            (16, "backend 192.0.2.51:80 is listed twice"),
            (17, "expected a table in `backends`"),
        ],
    );
}

#[test]
fn tcp_service_mistakes() {
    let text = format!(
        "{BALANCER_NODE}{}",
        r#"[[node.balancer.tcp]]
name = "Redis"
port = 6379
backends = []
health = { path = "/x", timeout = "5s" }
limits = { header_timeout = "1s", tcp_user_timeout = "5s" }
[[node.balancer.tcp]]
port = 6380
[[node.balancer.tcp]]
nmae = "mqtt"
port = 1883
backends = [ { address = "192.0.2.70:1883" } ]
[[node.balancer.tcp]]
name = "pg"
port = 6432
backends = [ { address = "192.0.2.61:5432" } ]
algorithm = "fastest"
[[node.balancer.tcp]]
name = "pg"
port = 6433
backends = [ { address = "192.0.2.61:5432" } ]
"#
    );
    assert_found(
        &found(&text),
        &[
            (
                9,
                "a tcp service name may hold only lowercase letters, digits and '-', not 'R'",
            ),
            (
                11,
                "this tcp service has no backends; it needs at least one",
            ),
            (
                12,
                "`path`: a tcp service's health check only opens a connection",
            ),
            (
                12,
                "the health check timeout (5s) is longer than its interval (1s)",
            ),
            (13, "`header_timeout`: a tcp service passes bytes through"),
            (
                13,
                "`tcp_user_timeout`: a tcp service's connections keep plain keepalive probes",
            ),
            (14, "a tcp service is missing the required key `name`"),
            (
                14,
                "this tcp service is missing the required key `backends`",
            ),
            // A misspelt name is one mistake, not also a missing one.
            (
                17,
                "unknown key `nmae` in a `balancer.tcp` service; did you mean `name`?",
            ),
            (24, "unknown algorithm \"fastest\""),
            (26, "there are two tcp services named \"pg\""),
        ],
    );
}

#[test]
fn a_node_breaking_the_timeout_rule_with_defaults_is_told() {
    let text = r#"[cluster]
name = "t"
vip = "192.0.2.10/24"
[defaults]
balancer = { health = { interval = "2s", timeout = "2s" } }
[[node]]
hostname = "a"
address = "192.0.2.11/24"
roles = ["balancer"]
balancer = { health = { interval = "1s" } }
"#;
    // The node's interval is the mistake: [defaults] alone is fine.
    assert_found(
        &found(text),
        &[(
            10,
            "the health check timeout (2s) is longer than its interval (1s)",
        )],
    );
}

#[test]
fn listeners_of_one_node_need_their_own_ports() {
    let text = r#"[cluster]
name = "t"
vip = "192.0.2.10/24"
[defaults]
admin_port = 8080
gossip_port = 80
[[node]]
hostname = "a"
address = "192.0.2.11/24"
roles = ["balancer", "web"]
[[node]]
hostname = "b"
address = "192.0.2.12/24"
roles = ["balancer", "web"]
admin_port = 9000
web = { port = 9000, tls_port = false }
balancer = { https_port = 0, tcp = [ { name = "x", port = 80, backends = [ { address = "192.0.2.60:1" } ] } ] }
[[pattern]]
match = "p-*"
roles = ["web"]
"#;
    let d = diagnostics(text);
    let got: Vec<(usize, usize, String)> = d
        .iter()
        .map(|d| (d.line, d.column, d.message.clone()))
        .collect();
    assert_found(
        &got,
        &[
            // From [defaults]: told once, though node "a" and the pattern
            // both have it. The gossip port is UDP and clashes with nothing.
            (
                5,
                "node \"a\" would listen on port 8080 twice: `admin_port` and `web.port`",
            ),
            (
                16,
                "node \"b\" would listen on port 9000 twice: `web.port` and `admin_port`",
            ),
            (17, "expected a port number from 1 to 65535, found 0"),
            (
                17,
                "node \"b\" would listen on port 80 twice: tcp service \"x\" and `balancer.http_port`",
            ),
        ],
    );
    assert!(
        d[0].notes
            .iter()
            .any(|n| n.contains("`web.port` is 8080 unless set")),
        "{:?}",
        d[0].notes
    );
    assert!(
        d[1].notes
            .iter()
            .any(|n| n.contains("`admin_port` is set at line 15")),
        "{:?}",
        d[1].notes
    );
    // https_port = 0 was refused and falls back to 443: no clash is made up
    // from the stand-in value.
    assert_eq!(d.len(), 4);
}

/// A balancer and db node, for the `[postgres]` tests: line 9 is next.
const PG_NODE: &str = r#"[cluster]
name = "t"
vip = "192.0.2.10/24"
[[node]]
hostname = "a"
address = "192.0.2.11/24"
roles = ["balancer", "db"]
db = { initial_primary = true }
"#;

/// Keys as `piha pg-secret` makes them, and the verifier PostgreSQL keeps.
fn scram(password: &str) -> (String, String) {
    let keys = crate::pg::auth::ScramKeys::derive(password, b"0123456789abcdef", 4096);
    (keys.to_text(), keys.verifier().to_text())
}

const MD5: &str = "md5a3556571e93b0d20722ba62be61e8c2d";

#[test]
fn postgres_section_sets_every_field() {
    let (keys, verifier) = scram("service password");
    let text = format!(
        r#"{PG_NODE}[postgres]
port = 6432
server_port = 5434
pool_mode = "session"
pool_size = 30
min_pool_size = 2
max_client_conn = 500
max_wait_clients = 100
wait_timeout = "10s"
server_idle_timeout = "5min"
server_lifetime = "2h"
login_timeout = "5s"
tcp_user_timeout = "12s"
client_tcp_user_timeout = "0s"
max_message_size = "4MiB"
max_lag = 1048576
read_your_writes = true
tls = {{ cert = "/etc/piha/tls/pg.pem", key = "/etc/piha/tls/pg.key" }}
server_tls = true
backends = ["192.0.2.50:5432", "[2001:db8::50]:5433"]
service = {{ user = "piha", database = "ops", keys = "{keys}" }}
auth_query = "SELECT rolpassword FROM pg_catalog.pg_authid WHERE rolname = $1"
users = [ {{ name = "app", secret = "{verifier}", pool_mode = "transaction" }}, {{ name = "old", secret = "{MD5}" }} ]
databases = [ {{ name = "app", pool_mode = "transaction", pool_size = 10 }}, {{ name = "reports" }} ]
probe = {{ interval = "2s", timeout = "500ms", fall = 5 }}
"#
    );
    let c = parse(&text, Path::new("t.toml")).unwrap_or_else(|e| panic!("{e}"));
    let pg = &c.postgres;
    let secs = Duration::from_secs;
    assert_eq!((pg.port, pg.server_port), (6432, 5434));
    assert_eq!(pg.pool_mode, PoolMode::Session);
    assert_eq!(
        (
            pg.pool_size,
            pg.min_pool_size,
            pg.max_client_conn,
            pg.max_wait_clients
        ),
        (30, 2, 500, 100)
    );
    assert_eq!(
        [
            pg.wait_timeout,
            pg.server_idle_timeout,
            pg.server_lifetime,
            pg.login_timeout,
            pg.tcp_user_timeout,
            pg.client_tcp_user_timeout
        ],
        [secs(10), secs(300), secs(7200), secs(5), secs(12), secs(0)]
    );
    assert_eq!((pg.max_message_bytes, pg.max_lag_bytes), (4 << 20, 1 << 20));
    assert!(pg.read_your_writes && pg.server_tls);
    match &pg.tls {
        PgTls::Files(f) => {
            assert_eq!(f.cert, Path::new("/etc/piha/tls/pg.pem"));
            assert_eq!(f.key, Path::new("/etc/piha/tls/pg.key"));
        }
        other => panic!("expected files, got {other:?}"),
    }
    let backends: Vec<String> = pg.backends.iter().map(|b| b.to_string()).collect();
    assert_eq!(backends, ["192.0.2.50:5432", "[2001:db8::50]:5433"]);
    let service = pg.service.as_ref().unwrap();
    assert_eq!(
        (service.user.as_str(), service.database.as_str()),
        ("piha", "ops")
    );
    assert_eq!(service.keys, keys);
    assert_eq!(
        pg.auth_query.as_deref(),
        Some("SELECT rolpassword FROM pg_catalog.pg_authid WHERE rolname = $1")
    );
    let users: Vec<(&str, &str, Option<PoolMode>)> = pg
        .users
        .iter()
        .map(|u| (u.name.as_str(), u.secret.as_str(), u.pool_mode))
        .collect();
    assert_eq!(
        users,
        [
            ("app", verifier.as_str(), Some(PoolMode::Transaction)),
            ("old", MD5, None)
        ]
    );
    let dbs: Vec<(&str, Option<PoolMode>, Option<u32>)> = pg
        .databases
        .iter()
        .map(|d| (d.name.as_str(), d.pool_mode, d.pool_size))
        .collect();
    assert_eq!(
        dbs,
        [
            ("app", Some(PoolMode::Transaction), Some(10)),
            ("reports", None, None)
        ]
    );
    let p = &pg.probe;
    assert_eq!(
        (p.interval, p.timeout, p.fall),
        (secs(2), Duration::from_millis(500), 5)
    );
}

#[test]
fn postgres_defaults_apply_without_the_section_or_its_keys() {
    let built_in = format!("{:?}", PostgresSettings::default());
    let without = parse(PG_NODE, Path::new("t.toml")).unwrap();
    assert_eq!(format!("{:?}", without.postgres), built_in);
    let empty = parse(&format!("{PG_NODE}[postgres]\n"), Path::new("t.toml")).unwrap();
    assert_eq!(format!("{:?}", empty.postgres), built_in);
    let pg = PostgresSettings::default();
    assert_eq!((pg.port, pg.server_port), (5432, 5433));
    assert_eq!((pg.pool_mode, pg.pool_size), (PoolMode::Transaction, 20));
    assert!(matches!(pg.tls, PgTls::Off));
    assert!(pg.users.is_empty() && pg.service.is_none() && pg.auth_query.is_none());
}

/// Written keys replace the built-in values one by one; entries override
/// the pool mode and size for their user or database only; the lists may
/// be written as `[[postgres.users]]` sections.
#[test]
fn postgres_keys_override_one_by_one() {
    let (_, verifier) = scram("pw");
    let text = format!(
        r#"{PG_NODE}[postgres]
pool_mode = "session"
tls = true
auth_query = false
min_pool_size = 20
[[postgres.users]]
name = "app"
secret = "{verifier}"
[[postgres.users]]
name = "batch"
secret = "{MD5}"
pool_mode = "transaction"
[[postgres.databases]]
name = "big"
pool_size = 50
"#
    );
    let c = parse(&text, Path::new("t.toml")).unwrap_or_else(|e| panic!("{e}"));
    let pg = &c.postgres;
    let built_in = PostgresSettings::default();
    assert_eq!(pg.pool_mode, PoolMode::Session);
    assert!(matches!(pg.tls, PgTls::NodeCert));
    assert_eq!(pg.auth_query, None);
    assert_eq!((pg.pool_size, pg.min_pool_size), (20, 20));
    assert_eq!(
        (pg.port, pg.max_client_conn, pg.wait_timeout),
        (
            built_in.port,
            built_in.max_client_conn,
            built_in.wait_timeout
        )
    );
    assert_eq!(pg.probe.interval, built_in.probe.interval);
    let modes: Vec<Option<PoolMode>> = pg.users.iter().map(|u| u.pool_mode).collect();
    assert_eq!(modes, [None, Some(PoolMode::Transaction)]);
    assert_eq!(pg.databases[0].pool_size, Some(50));
    assert_eq!(pg.databases[0].pool_mode, None);
}

#[test]
fn postgres_mistakes_point_at_the_value() {
    let (keys, verifier) = scram("pw");
    let text = format!(
        r#"{PG_NODE}[postgres]
pool_mode = "transactoin"
max_client_conn = 10
max_wait_clients = 20
max_message_size = "2GiB"
tls = "on"
backends = ["192.0.2.50:5432", "192.0.2.50:5432", "192.0.2.11:5433", 5432]
service = {{ user = "piha" }}
auth_query = true
users = [
  {{ name = "app", secret = "hunter2hunter2" }},
  {{ name = "{long}", secret = "{verifier}" }},
  {{ secret = "{verifier}" }},
  {{ name = "app", secret = "{MD5}", pool_mode = "statement" }},
  {{ name = "nosecret" }},
]
databases = [ {{ name = "app", pool_size = 0 }}, {{ name = "app" }}, {{ name = "x", pool_size = 1 }} ]
min_pool_size = 2
probe = {{ interval = "1s", timeout = "2s", fal = 3 }}
tcp_user_timeout = "2h"
"#,
        long = "u".repeat(64),
    );
    let got = found(&text);
    assert_found(
        &got,
        &[
            (
                10,
                "unknown pool mode \"transactoin\"; valid ones are transaction, session (did you mean \"transaction\"?)",
            ),
            (
                12,
                "`max_wait_clients` (20) is larger than `max_client_conn` (10)",
            ),
            (
                13,
                "`max_message_size` must be from 1KiB to 1GiB, found 2GiB",
            ),
            (
                14,
                "wrong type for `tls`: expected true (the node's own certificate), false, or a table",
            ),
            (15, "backend 192.0.2.50:5432 is listed twice"),
            (
                15,
                "backend 192.0.2.11:5433 is the PostgreSQL of node \"a\", which the pooler uses already",
            ),
            (
                15,
                "expected an IP address and port in quotes, like \"192.0.2.50:5432\", found the number 5432",
            ),
            (16, "`postgres.service` is missing the required key `keys`"),
            (17, "wrong type for `auth_query`"),
            (
                19,
                "the `secret` of user \"app\" is not valid: expected a SCRAM-SHA-256 verifier",
            ),
            (20, "a user name must be at most 63 bytes long"),
            (
                21,
                "a `postgres.users` entry is missing the required key `name`",
            ),
            (22, "user \"app\" is listed twice"),
            (22, "unknown pool mode \"statement\""),
            (23, "user \"nosecret\" is missing the required key `secret`"),
            (25, "`pool_size` must be from 1 to 10000, found 0"),
            (25, "database \"app\" is listed twice"),
            (
                25,
                "this database's `pool_size` (1) is below `min_pool_size` (2)",
            ),
            (
                27,
                "the probe timeout (2s) is longer than its interval (1s)",
            ),
            (
                27,
                "unknown key `fal` in `postgres.probe`; did you mean `fall`?",
            ),
            (28, "`tcp_user_timeout` must be at most 1h, found 2h"),
        ],
    );
    // Secrets are pointed at, never repeated.
    assert!(
        got.iter()
            .all(|(_, _, m)| !m.contains("hunter2") && !m.contains(&keys)),
        "{got:#?}"
    );
}

#[test]
fn auth_query_needs_a_service_login_and_a_parameter() {
    let text = format!(
        "{PG_NODE}[postgres]\nauth_query = \"SELECT rolpassword FROM pg_catalog.pg_authid WHERE rolname = 'app'\"\n"
    );
    assert_found(
        &found(&text),
        &[
            (10, "`auth_query` must contain $1"),
            (10, "`auth_query` needs `service`"),
        ],
    );
    // A misspelt `service` is one mistake: no "needs `service`" after it.
    let (keys, _) = scram("pw");
    let text = format!(
        "{PG_NODE}[postgres]\nservise = {{ user = \"piha\", keys = \"{keys}\" }}\nauth_query = \"SELECT $1\"\n"
    );
    assert_found(&found(&text), &[(10, "did you mean `service`?")]);
}

#[test]
fn pooler_and_postgresql_ports_are_listeners_of_their_nodes() {
    let text = r#"[cluster]
name = "t"
vip = "192.0.2.10/24"
[postgres]
port = 9000
server_port = 8080
[[node]]
hostname = "a"
address = "192.0.2.11/24"
roles = ["balancer", "db"]
db = { initial_primary = true }
[[node]]
hostname = "b"
address = "192.0.2.12/24"
roles = ["web"]
[[node]]
hostname = "c"
address = "192.0.2.13/24"
roles = ["db", "web"]
"#;
    assert_found(
        &found(text),
        &[
            // Told once, though it holds on "a" only; "b" has no pooler.
            (
                5,
                "node \"a\" would listen on port 9000 twice: `postgres.port` and `admin_port`",
            ),
            // PostgreSQL on a db node that is also a web node.
            (
                6,
                "node \"c\" would listen on port 8080 twice: `postgres.server_port` and `web.port`",
            ),
        ],
    );
    // The built-in pooler port against a node's own front end.
    let text = format!("{PG_NODE}balancer = {{ http_port = 5432 }}\n");
    assert_found(
        &found(&text),
        &[(
            9,
            "node \"a\" would listen on port 5432 twice: `balancer.http_port` and `postgres.port`",
        )],
    );
}

#[test]
fn plan_table_sums_up_vrrp() {
    let table = shipped().plan_table();
    assert!(
        table.contains("\nvrrp: v3 vrid 51, adverts every 100ms, multicast, preempt\n"),
        "{table}"
    );
}

/// `SMALL`'s node as the one db node.
const DB_NODE: &str = "roles = [\"db\"]\ndb = { initial_primary = true }";

#[test]
fn plan_table_sums_up_db() {
    let table = shipped().plan_table();
    assert!(
        table.contains(
            "\ndb: PostgreSQL from /usr/lib/postgresql/15/bin, asynchronous replication, automatic failover, backups every 24h to /srv/piha/backups/postgresql (keep 7)\n"
        ),
        "{table}"
    );
    let text = format!(
        "{SMALL}[db]\ndata_dir = \"/srv/pg\"\nsynchronous = true\nfailover = false\nbackup = false\n"
    )
    .replace("roles = [\"web\"]", DB_NODE);
    let table = parse(&text, Path::new("t.toml")).unwrap().plan_table();
    assert!(
        table.contains(
            "\ndb: PostgreSQL from /usr/lib/postgresql/15/bin, data in /srv/pg, synchronous replication, no automatic failover (only `piha switchover` changes the primary), no scheduled backups\n"
        ),
        "{table}"
    );
    let text = format!("{SMALL}[db]\nbackup = {{ every = \"90min\" }}\n")
        .replace("roles = [\"web\"]", DB_NODE);
    let table = parse(&text, Path::new("t.toml")).unwrap().plan_table();
    assert!(table.contains(", backups every 1h 30m to "), "{table}");
    // Without a db node the section has nothing to run.
    let table = parse(SMALL, Path::new("t.toml")).unwrap().plan_table();
    assert!(
        table.contains("\ndb: none (no node has the db role)\n"),
        "{table}"
    );
}

#[test]
fn plan_table_sums_up_the_pooler() {
    let table = shipped().plan_table();
    assert!(
        table.contains(
            "postgres pooler: port 5432 (PostgreSQL 5433), transaction mode, pool 20, 0 users, auth_query off"
        ),
        "{table}"
    );
}

/// `SHIPPED` with the `# key = value` lines from `start` up to `end`
/// uncommented, and how many lines of that part are then outside comments.
fn uncommented(start: &str, end: &str) -> (String, usize) {
    let start = SHIPPED.find(start).unwrap();
    let end = start + SHIPPED[start..].find(end).unwrap();
    let block: Vec<String> = SHIPPED[start..end]
        .lines()
        .map(|line| {
            let Some(rest) = line.strip_prefix("# ") else {
                return line.to_string();
            };
            let key = rest.split(" = ").next().unwrap_or("");
            let is_key = !key.is_empty() && key.chars().all(|c| c.is_ascii_lowercase() || c == '_');
            if is_key && rest.contains(" = ") {
                rest.to_string()
            } else {
                line.to_string()
            }
        })
        .collect();
    let count = block
        .iter()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .count();
    let text = format!(
        "{}{}{}",
        &SHIPPED[..start],
        block.join("\n"),
        &SHIPPED[end..]
    );
    (text, count)
}

/// The shipped file's `[postgres]` block shows the built-in values: with
/// its `# key = value` lines uncommented, the settings are the same.
#[test]
fn shipped_postgres_comments_show_the_built_in_values() {
    let (text, count) = uncommented("\n[postgres]\n", "\n# Who may log in");
    assert_eq!(count, 1 + 20, "[postgres] and every key:\n{text}");
    let mut pg = parse(&text, Path::new("t.toml"))
        .unwrap_or_else(|e| panic!("{e}"))
        .postgres;
    let example: Vec<String> = pg.backends.iter().map(|b| b.to_string()).collect();
    assert_eq!(example, ["192.0.2.50:5432"]);
    pg.backends.clear();
    assert_eq!(
        format!("{pg:?}"),
        format!("{:?}", PostgresSettings::default())
    );
}

/// Two balancer nodes, for the `[vrrp]` tests: line 12 is next.
const VRRP_NODES: &str = r#"[cluster]
name = "t"
vip = "192.0.2.10/24"
[[node]]
hostname = "a"
address = "192.0.2.11/24"
roles = ["balancer"]
[[node]]
hostname = "b"
address = "192.0.2.12/24"
roles = ["balancer", "web"]
"#;

fn vrrp_of(text: &str) -> VrrpSettings {
    parse(text, Path::new("t.toml"))
        .unwrap_or_else(|e| panic!("{e}"))
        .vrrp
}

#[test]
fn vrrp_section_sets_every_field() {
    let v = vrrp_of(&format!(
        r#"{VRRP_NODES}[vrrp]
version = 2
vrid = 7
interface = "eth1"
interval = "3s"
preempt = false
preempt_delay = "30s"
mode = "unicast"
unicast_peers = ["192.0.2.12", "192.0.2.13"]
auth = "s3cr:t!"
checksum = "message_only"
announce = {{ count = 5, gap = "0s", refresh = false }}
track = {{ http = 0, pooler = false }}
checks = [
  {{ name = "disk", command = ["/usr/bin/test", "-w", "/srv"], interval = "2s", timeout = "1s", fall = 3, rise = 4, weight = 50 }},
  {{ name = "gw", command = ["/usr/local/bin/ping-gw"], weight = 0 }},
]
notify = ["/usr/local/bin/on-vrrp", "/usr/bin/logger"]
realtime_priority = false
"#
    ));
    let ms = Duration::from_millis;
    assert_eq!((v.version, v.vrid), (VrrpVersion::V2, 7));
    assert_eq!(v.interface.as_deref(), Some("eth1"));
    assert_eq!(v.interval, Duration::from_secs(3));
    assert!(!v.preempt);
    assert_eq!(v.preempt_delay, Duration::from_secs(30));
    let peers = ["192.0.2.12", "192.0.2.13"].map(|p| p.parse().unwrap());
    assert_eq!(
        v.mode,
        VrrpMode::Unicast {
            peers: peers.to_vec()
        }
    );
    assert_eq!(v.auth.as_deref(), Some("s3cr:t!"));
    assert_eq!(v.checksum, VrrpChecksum::MessageOnly);
    assert_eq!(
        (v.announce_count, v.announce_gap, v.announce_refresh),
        (5, Duration::ZERO, None)
    );
    assert_eq!((v.track_http, v.track_pooler), (Some(0), None));
    let checks: Vec<_> = v
        .checks
        .iter()
        .map(|c| {
            let command: Vec<&str> = c.command.iter().map(String::as_str).collect();
            let timing = (c.interval, c.timeout, c.fall, c.rise, c.weight);
            (c.name.as_str(), command, timing)
        })
        .collect();
    assert_eq!(
        checks,
        [
            (
                "disk",
                vec!["/usr/bin/test", "-w", "/srv"],
                (ms(2000), ms(1000), 3, 4, 50)
            ),
            // The built-in timing: every second, timeout the interval, 2 and 2.
            (
                "gw",
                vec!["/usr/local/bin/ping-gw"],
                (ms(1000), ms(1000), 2, 2, 0)
            ),
        ]
    );
    let notify: Vec<&Path> = v.notify.iter().map(PathBuf::as_path).collect();
    assert_eq!(
        notify,
        [
            Path::new("/usr/local/bin/on-vrrp"),
            Path::new("/usr/bin/logger")
        ]
    );
    assert_eq!(v.realtime_priority, None);
}

/// The other spellings: v3 intervals in 10 ms steps, `"off"` for refresh,
/// a priority for the real-time thread, track weights key by key, checks
/// as `[[vrrp.checks]]` sections.
#[test]
fn vrrp_v3_values_and_partial_tables() {
    let v = vrrp_of(&format!(
        r#"{VRRP_NODES}[vrrp]
interval = "40s 950ms"
checksum = "pseudo_header"
announce = {{ refresh = "off" }}
track = {{ pooler = 20 }}
realtime_priority = 99
[[vrrp.checks]]
name = "gw"
command = ["/usr/local/bin/ping-gw"]
interval = "500ms"
weight = 10
"#
    ));
    let base = VrrpSettings::default();
    let ms = Duration::from_millis;
    assert_eq!(v.version, VrrpVersion::V3);
    assert_eq!(v.interval, ms(40_950));
    assert_eq!(v.checksum, VrrpChecksum::PseudoHeader);
    assert_eq!(v.announce_refresh, None);
    assert_eq!(
        (v.announce_count, v.announce_gap),
        (base.announce_count, base.announce_gap)
    );
    assert_eq!((v.track_http, v.track_pooler), (base.track_http, Some(20)));
    assert_eq!(v.realtime_priority, Some(99));
    let gw = &v.checks[0];
    assert_eq!((gw.name.as_str(), gw.weight), ("gw", 10));
    // The timeout follows an interval shorter than the built-in one.
    assert_eq!((gw.interval, gw.timeout), (ms(500), ms(500)));
}

#[test]
fn vrrp_defaults_apply_without_the_section_or_its_keys() {
    let built_in = format!("{:?}", VrrpSettings::default());
    assert_eq!(format!("{:?}", vrrp_of(VRRP_NODES)), built_in);
    let empty = vrrp_of(&format!("{VRRP_NODES}[vrrp]\n"));
    assert_eq!(format!("{empty:?}"), built_in);
    let v = VrrpSettings::default();
    assert_eq!((v.version, v.vrid), (VrrpVersion::V3, 51));
    assert_eq!(v.interval, Duration::from_millis(100));
    assert_eq!(v.mode, VrrpMode::Multicast);
    assert!(v.preempt && v.auth.is_none() && v.interface.is_none());

    // The interval's default follows the version: v2 cannot say 100ms.
    let v2 = vrrp_of(&format!("{VRRP_NODES}[vrrp]\nversion = 2\n"));
    assert_eq!(v2.version, VrrpVersion::V2);
    assert_eq!(v2.interval, Duration::from_secs(1));
    let mut as_v3 = v2.clone();
    as_v3.version = VrrpVersion::V3;
    as_v3.interval = Duration::from_millis(100);
    assert_eq!(format!("{as_v3:?}"), built_in);
}

/// Without `unicast_peers`, every balancer node with an address, its own
/// included: the file is the same on every node.
#[test]
fn unicast_without_peers_sends_to_the_balancer_nodes() {
    let text = format!(
        "{VRRP_NODES}[[node]]\nhostname = \"c\"\naddress = \"192.0.2.13/24\"\nroles = [\"web\"]\n[vrrp]\nmode = \"unicast\"\n"
    );
    let peers = ["192.0.2.11", "192.0.2.12"].map(|p| p.parse().unwrap());
    assert_eq!(
        vrrp_of(&text).mode,
        VrrpMode::Unicast {
            peers: peers.to_vec()
        }
    );
}

#[test]
fn vrrp_mistakes_point_at_the_value() {
    let text = format!(
        r#"{VRRP_NODES}[vrrp]
version = 4
vrid = 256
interface = "eth0:1"
interval = "soon"
prempt = true
preempt_delay = "2h"
mode = "broadcast"
unicast_peers = ["192.0.2.12", "pi-2", "2001:db8::12", "192.0.2.12"]
auth = "pässwort"
checksum = "pseudo-header"
announce = {{ count = 0, gap = "2s", refresh = "500ms" }}
track = {{ http = true, pooler = 255, balancer = 1 }}
checks = [
  {{ name = "disk", command = ["test", "-w"], interval = "1s", timeout = "2s", weight = 1 }},
  {{ name = "disk", command = [], weight = 300 }},
  {{ name = "fast", command = ["/bin/true"], interval = "50ms", timeout = "1s" }},
  {{ command = ["/bin/true"], weight = 1, fal = 2 }},
]
notify = ["on-vrrp"]
realtime_priority = 0
"#
    );
    assert_found(
        &found(&text),
        &[
            (13, "`version` must be 2 or 3, found 4"),
            (14, "`vrid` must be from 1 to 255, found 256"),
            (15, "invalid interface name \"eth0:1\""),
            (16, "expected a duration like \"1s\""),
            (
                17,
                "unknown key `prempt` in [vrrp]; did you mean `preempt`?",
            ),
            (18, "`preempt_delay` must be at most 1h, found 2h"),
            (
                19,
                "unknown mode \"broadcast\"; valid ones are multicast, unicast",
            ),
            (
                20,
                "expected an IP address, like \"192.0.2.12\", found \"pi-2\"",
            ),
            (
                20,
                "peer 2001:db8::12 is IPv6, but the VIP 192.0.2.10 is IPv4",
            ),
            (20, "peer 192.0.2.12 is listed twice"),
            // The version was refused: no "v3 has no auth" made up from it.
            (21, "`auth` may hold only printable ASCII characters"),
            (22, "(did you mean \"pseudo_header\"?)"),
            (23, "`count` must be from 1 to 100, found 0"),
            (23, "`gap` must be at most 1s, found 2s"),
            (23, "`refresh` must be at least 1s, or false for off"),
            (24, "wrong type for `http`"),
            (
                24,
                "`pooler` must be from 0 to 254 (0 gives up the VIP), or false for not tracked, found 255",
            ),
            (24, "unknown key `balancer` in `vrrp.track`"),
            (
                26,
                "the program of a check: expected an absolute file path starting with '/', found \"test\"",
            ),
            (
                26,
                "the check \"disk\" timeout (2s) is longer than its interval (1s)",
            ),
            (27, "check \"disk\" is listed twice"),
            (27, "a check's `command` must not be empty"),
            (27, "`weight` must be from 0 to 254"),
            (
                28,
                "a check's `interval` must be at least 100ms, found 50ms",
            ),
            (28, "check \"fast\" is missing the required key `weight`"),
            (
                29,
                "a `vrrp.checks` entry is missing the required key `name`",
            ),
            (
                29,
                "unknown key `fal` in a `vrrp.checks` entry; did you mean `fall`?",
            ),
            (31, "a `notify` program: expected an absolute file path"),
            (
                32,
                "`realtime_priority` must be from 1 to 99, or false for normal scheduling, found 0",
            ),
        ],
    );
}

/// Settings that would be ignored, and the rules of each version.
#[test]
fn vrrp_refuses_what_it_would_ignore() {
    let cases: &[(&str, (usize, &str))] = &[
        (
            "auth = \"secret\"\n",
            (13, "VRRPv3 has no authentication (RFC 5798 removed it)"),
        ),
        (
            "version = 2\nauth = \"123456789\"\n",
            (14, "`auth` must be 1 to 8 characters long"),
        ),
        (
            "unicast_peers = [\"192.0.2.12\"]\n",
            (
                13,
                "`unicast_peers` is set, but `mode` is \"multicast\" (the built-in value)",
            ),
        ),
        (
            "mode = \"unicast\"\nunicast_peers = []\n",
            (14, "unicast mode needs at least one peer"),
        ),
        (
            "interval = \"15ms\"\n",
            (
                13,
                "`interval` must be a multiple of 10ms from 10ms to 40.95s, found 15ms",
            ),
        ),
        ("interval = \"41s\"\n", (13, "found 41s")),
        (
            "version = 2\ninterval = \"1500ms\"\n",
            (
                14,
                "with version = 2, `interval` must be whole seconds from 1s to 255s, found 1s 500ms",
            ),
        ),
    ];
    for (section, expected) in cases {
        let text = format!("{VRRP_NODES}[vrrp]\n{section}");
        assert_found(&found(&text), &[*expected]);
    }
    // A misspelt mode is one mistake: no "peers would be ignored" after it.
    let text =
        format!("{VRRP_NODES}[vrrp]\nmdoe = \"unicast\"\nunicast_peers = [\"192.0.2.12\"]\n");
    assert_found(&found(&text), &[(13, "did you mean `mode`?")]);
}

#[test]
fn vrrp_and_the_vip() {
    let ipv6 = VRRP_NODES
        .replace("192.0.2.", "2001:db8::")
        .replace("/24", "/64");
    assert_found(
        &found(&format!("{ipv6}[vrrp]\nversion = 2\n")),
        &[(
            13,
            "VRRPv2 is IPv4 only (RFC 3768), but the VIP 2001:db8::10/64 is IPv6",
        )],
    );
    let v3 = vrrp_of(&format!("{ipv6}[vrrp]\nversion = 3\n"));
    assert_eq!(v3.version, VrrpVersion::V3);

    // No balancer and no VIP: the section is pointed at.
    let text = format!("{SMALL}[vrrp]\nvrid = 9\n");
    assert_found(&found(&text), &[(9, "[vrrp] needs the cluster's `vip`")]);
    // With a balancer the missing VIP is told once, at the role.
    let text = VRRP_NODES.replace("vip = \"192.0.2.10/24\"\n", "") + "[vrrp]\n";
    let got = found(&text);
    assert!(
        got.iter()
            .all(|(_, _, m)| m.contains("has the balancer role, but [cluster] has no `vip`")),
        "{got:#?}"
    );
}

/// The shipped `[vrrp]` block shows the built-in values; its examples
/// below parse as they say, and the password is refused on version 3.
#[test]
fn shipped_vrrp_comments_show_the_built_in_values() {
    let (text, count) = uncommented("\n[vrrp]\n", "\n#\n# Your own checks");
    assert_eq!(count, 1 + 10, "[vrrp] and every key with a value:\n{text}");
    assert_eq!(
        format!("{:?}", vrrp_of(&text)),
        format!("{:?}", VrrpSettings::default())
    );

    let (text, count) = uncommented("\n# Your own checks", "\n# A password for");
    assert_eq!(count, 3, "checks, notify, interface:\n{text}");
    let v = vrrp_of(&text);
    let check = &v.checks[0];
    assert_eq!((check.name.as_str(), check.weight), ("disk", 50));
    assert_eq!(v.notify, [PathBuf::from("/usr/local/bin/on-vrrp")]);
    assert_eq!(v.interface.as_deref(), Some("eth0"));

    let (text, count) = uncommented("\n# A password for", "\n[db]\n");
    assert_eq!(count, 1, "{text}");
    let got = found(&text);
    assert!(
        got.len() == 1 && got[0].2.contains("VRRPv3 has no authentication"),
        "{got:#?}"
    );
}

fn db_of(text: &str) -> DbClusterSettings {
    parse(text, Path::new("t.toml"))
        .unwrap_or_else(|e| panic!("{e}"))
        .db
}

#[test]
fn db_defaults_apply_without_the_section_or_its_keys() {
    let built_in = format!("{:?}", DbClusterSettings::builtin());
    assert_eq!(format!("{:?}", db_of(SMALL)), built_in);
    assert_eq!(format!("{:?}", db_of(&format!("{SMALL}[db]\n"))), built_in);
    // An empty backup table is the built-in backup, not none.
    let empty = db_of(&format!("{SMALL}[db]\nbackup = {{}}\n"));
    assert_eq!(format!("{empty:?}"), built_in);

    let d = DbClusterSettings::builtin();
    assert_eq!(d.bindir, Path::new("/usr/lib/postgresql/15/bin"));
    assert_eq!(d.data_dir, None);
    assert_eq!(
        (d.os_user.as_str(), d.replication_user.as_str()),
        ("postgres", "replicator")
    );
    assert!(!d.synchronous && d.failover);
    let b = d.backup.unwrap();
    assert_eq!(b.dir, Path::new("/srv/piha/backups/postgresql"));
    assert_eq!((b.every, b.keep), (Duration::from_secs(24 * 3600), 7));
}

#[test]
fn db_section_sets_every_field() {
    let d = db_of(&format!(
        r#"{SMALL}[db]
bindir = "/usr/lib/postgresql/16/bin"
data_dir = "/srv/postgresql"
os_user = "pg_16-a"
replication_user = "Standby Copier"
synchronous = true
failover = false
backup = {{ dir = "/mnt/backups/pg", every = "6h 30min", keep = 365 }}
"#
    ));
    assert_eq!(d.bindir, Path::new("/usr/lib/postgresql/16/bin"));
    assert_eq!(d.data_dir.as_deref(), Some(Path::new("/srv/postgresql")));
    assert_eq!(d.os_user, "pg_16-a");
    // Any PostgreSQL role name: piha quotes it wherever it writes it.
    assert_eq!(d.replication_user, "Standby Copier");
    assert!(d.synchronous && !d.failover);
    let b = d.backup.unwrap();
    assert_eq!(b.dir, Path::new("/mnt/backups/pg"));
    assert_eq!(
        (b.every, b.keep),
        (Duration::from_secs(6 * 3600 + 1800), 365)
    );
}

/// `backup = false` turns backups off; a partial table keeps the rest of
/// the built-in backup; `[db.backup]` is the same table as a section.
#[test]
fn db_backup_off_partial_and_as_a_section() {
    assert!(
        db_of(&format!("{SMALL}[db]\nbackup = false\n"))
            .backup
            .is_none()
    );

    let b = db_of(&format!("{SMALL}[db]\nbackup = {{ keep = 1 }}\n"))
        .backup
        .unwrap();
    let base = DbBackup::builtin();
    assert_eq!((&b.dir, b.every, b.keep), (&base.dir, base.every, 1));

    let b = db_of(&format!(
        "{SMALL}[db]\nfailover = true\n[db.backup]\nevery = \"1m\"\n"
    ))
    .backup
    .unwrap();
    assert_eq!(
        (&b.dir, b.every, b.keep),
        (&base.dir, Duration::from_secs(60), base.keep)
    );
}

#[test]
fn db_mistakes_point_at_the_value() {
    let text = format!(
        r#"{SMALL}[db]
bindir = "usr/lib/postgresql/15/bin"
data_dir = ""
os_user = "Postgres"
replication_user = "{long}"
synchronous = "yes"
failover = 1
backup = {{ dir = "backups", every = "10s", keep = 0 }}
falover = false
initial_primary = true
"#,
        long = "r".repeat(64)
    );
    assert_found(
        &found(&text),
        &[
            (
                10,
                "`bindir`: expected an absolute directory path starting with '/', found \"usr/lib/postgresql/15/bin\"",
            ),
            (11, "`data_dir`: expected an absolute directory path"),
            (
                12,
                "`os_user` may hold only lowercase letters, digits, '_' and '-', not 'P'",
            ),
            (
                13,
                "`replication_user` must be at most 63 bytes long (PostgreSQL cuts longer names), not 64",
            ),
            (14, "wrong type for `synchronous`: expected true or false"),
            (15, "wrong type for `failover`: expected true or false"),
            (16, "`dir`: expected an absolute directory path"),
            (16, "`every` must be at least 1m, found 10s"),
            (16, "`keep` must be from 1 to 365, found 0"),
            (
                17,
                "unknown key `falover` in [db]; did you mean `failover`?",
            ),
            (18, "`initial_primary` belongs to one node, not to [db]"),
        ],
    );
}

/// Each value check on its own, with the help that says what to write.
#[test]
fn db_value_checks_one_by_one() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "bindir = \"bin\"\n",
            "`bindir`: expected an absolute directory path starting with '/', found \"bin\"",
            "`pg_config --bindir` prints it",
        ),
        (
            "os_user = \"\"\n",
            "`os_user` must be 1 to 32 characters long, not 0",
            "like \"postgres\"",
        ),
        (
            "os_user = \"a23456789012345678901234567890123\"\n",
            "`os_user` must be 1 to 32 characters long, not 33",
            "like \"postgres\"",
        ),
        (
            "os_user = \"-postgres\"\n",
            "`os_user` must not start with '-'",
            "like \"postgres\"",
        ),
        (
            "replication_user = \"\"\n",
            "`replication_user` must not be empty",
            "like \"replicator\"",
        ),
        (
            "replication_user = \"rep\\u0000\"\n",
            "`replication_user` must not contain a NUL character",
            "like \"replicator\"",
        ),
        (
            "backup = { every = \"10s\" }\n",
            "`every` must be at least 1m, found 10s",
            "at least a minute apart",
        ),
        (
            "backup = { every = \"daily\" }\n",
            "`every`: expected a duration like \"1s\"",
            "like every = \"24h\"",
        ),
        (
            "backup = { keep = 366 }\n",
            "`keep` must be from 1 to 365, found 366",
            "like keep = 7",
        ),
        (
            "backup = true\n",
            "wrong type for `backup`: expected a table, like backup = { dir = ",
            "backups are on by default",
        ),
    ];
    for (line, message, help) in cases {
        let d = diagnostics(&format!("{SMALL}[db]\n{line}"));
        assert_eq!(d.len(), 1, "{line}: {d:#?}");
        assert_eq!(d[0].line, 10, "{line}");
        assert!(d[0].message.contains(message), "{line}: {:?}", d[0].message);
        let helps = d[0].notes.join("\n");
        assert!(helps.contains(help), "{line}: no help {help:?} in {helps}");
    }
}

#[test]
fn db_unknown_keys_suggest_the_nearest() {
    let text = format!("{SMALL}[db]\nsynchronus = true\nbackup = {{ kep = 3, when = \"1h\" }}\n");
    assert_found(
        &found(&text),
        &[
            (
                10,
                "unknown key `synchronus` in [db]; did you mean `synchronous`?",
            ),
            (11, "unknown key `kep` in `db.backup`; did you mean `keep`?"),
            (11, "unknown key `when` in `db.backup`"),
        ],
    );
    // Without a near key, the message lists the keys allowed.
    let d = diagnostics(&format!("{SMALL}[db]\nversion = 15\n"));
    assert_eq!(d.len(), 1, "{d:#?}");
    assert_eq!(
        d[0].notes,
        [
            "help: keys allowed here: bindir, data_dir, os_user, replication_user, synchronous, failover, backup, initial_primary"
        ]
    );
}

/// The shipped `[db]` block shows the built-in values, and its `data_dir`
/// example parses as it says.
#[test]
fn shipped_db_comments_show_the_built_in_values() {
    assert_eq!(
        format!("{:?}", shipped().db),
        format!("{:?}", DbClusterSettings::builtin())
    );
    let (text, count) = uncommented("\n[db]\n", "\n# Where PostgreSQL keeps");
    assert_eq!(count, 1 + 6, "[db] and every key with a value:\n{text}");
    assert_eq!(
        format!("{:?}", db_of(&text)),
        format!("{:?}", DbClusterSettings::builtin())
    );

    let (text, count) = uncommented("\n# Where PostgreSQL keeps", "\n[storage]");
    assert_eq!(count, 1, "{text}");
    assert_eq!(
        db_of(&text).data_dir.as_deref(),
        Some(Path::new("/srv/postgresql"))
    );
}

fn storage_of(text: &str) -> StorageClusterSettings {
    parse(text, Path::new("t.toml"))
        .unwrap_or_else(|e| panic!("{e}"))
        .storage
}

/// The shipped `[storage]` block shows the built-in values (with replica
/// and arbiter written out as the pairs with arbiters that four storage
/// Pis get anyway).
#[test]
fn shipped_storage_comments_show_the_built_in_values() {
    assert_eq!(shipped().storage, StorageClusterSettings::builtin());
    let (text, count) = uncommented("\n[storage]\n", "\n# ------");
    assert_eq!(
        count,
        1 + 8,
        "[storage] and every key with a value:\n{text}"
    );
    let written = storage_of(&text);
    assert_eq!((written.replica, written.arbiter), (Some(2), Some(true)));
    assert_eq!(
        StorageClusterSettings {
            replica: None,
            arbiter: None,
            ..written
        },
        StorageClusterSettings::builtin()
    );
}

#[test]
fn storage_values_are_checked_with_help() {
    let s = storage_of(&format!(
        "{SMALL}[storage]\nvolume = \"web_files\"\nreplica = 3\narbiter = true\nmount = \"/srv/site\"\npoll = \"2s\"\nping_timeout = \"5s\"\nmin_free = 20\n"
    ));
    assert_eq!(s.volume, "web_files");
    assert_eq!((s.replica, s.arbiter), (Some(3), Some(true)));
    assert_eq!(s.mount, Path::new("/srv/site"));
    assert_eq!(
        (s.poll, s.ping_timeout),
        (Duration::from_secs(2), Duration::from_secs(5))
    );
    assert_eq!(s.min_free, 20);
    let cases = [
        ("volume = \"my volume\"\n", "may hold only letters, digits"),
        ("volume = \"-x\"\n", "must not start with '-'"),
        ("replica = 7\n", "`replica` must be from 1 to 4"),
        ("mount = \"www\"\n", "absolute"),
        ("poll = \"100ms\"\n", "`poll` must be at least 1s"),
        ("ping_timeout = \"1500ms\"\n", "whole seconds"),
        ("ping_timeout = \"2h\"\n", "whole seconds from 1s to 1013s"),
        ("min_free = 0\n", "`min_free` must be from 1 to 50"),
        ("brick = \"/srv/b\"\n", "belongs to one node"),
    ];
    for (line, message) in cases {
        let d = diagnostics(&format!("{SMALL}[storage]\n{line}"));
        assert_eq!(d.len(), 1, "{line}: {d:#?}");
        assert_eq!(d[0].line, 10, "{line}");
        assert!(d[0].message.contains(message), "{line}: {:?}", d[0].message);
    }
}

#[test]
fn storage_nodes_that_cannot_form_the_volume_are_an_error() {
    let five = format!(
        "{SMALL}{}",
        (2..=6)
            .map(|i| format!(
                "\n[[node]]\nhostname = \"s{i}\"\naddress = \"192.0.2.{}/24\"\nroles = [\"storage\"]\n",
                20 + i
            ))
            .collect::<String>()
    );
    let d = diagnostics(&five);
    assert_eq!(d.len(), 1, "{d:#?}");
    assert!(
        d[0].message
            .contains("5 storage nodes fit neither pairs nor triples"),
        "{}",
        d[0].message
    );
    let four = format!(
        "{SMALL}{}\n[storage]\nreplica = 3\n",
        (2..=5)
            .map(|i| format!(
                "\n[[node]]\nhostname = \"s{i}\"\naddress = \"192.0.2.{}/24\"\nroles = [\"storage\"]\n",
                20 + i
            ))
            .collect::<String>()
    );
    let d = diagnostics(&four);
    assert_eq!(d.len(), 1, "{d:#?}");
    assert!(
        d[0].message.contains("cannot form replica-3 sets"),
        "{}",
        d[0].message
    );
    assert!(d[0].line > 20, "points at `replica`: line {}", d[0].line);
}

/// A cluster with the notes app's login known to the pooler; line 11 is
/// next.
const NOTES_BASE: &str = r#"[cluster]
name = "t"
vip = "192.0.2.10/24"
[postgres]
users = [ { name = "app", secret = "md5aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" } ]
[[node]]
hostname = "a"
address = "192.0.2.11/24"
roles = ["balancer", "web"]
[[node]]
"#;

#[test]
fn notes_in_defaults_a_node_turning_it_off_and_one_with_its_own_address() {
    let text = r#"[cluster]
name = "t"
vip = "192.0.2.10/24"
[postgres]
users = [ { name = "app", secret = "md5aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" } ]
[defaults.web]
notes = { database = "notes", user = "app", password_file = "/etc/piha/notes-password" }
[[node]]
hostname = "a"
address = "192.0.2.11/24"
roles = ["balancer", "web"]
[[node]]
hostname = "b"
address = "192.0.2.12/24"
roles = ["web"]
web = { notes = false }
[[node]]
hostname = "c"
address = "192.0.2.13/24"
roles = ["web"]
[node.web.notes]
database = "other"
user = "someone"
password_file = "/etc/piha/other"
address = "198.51.100.5:5432"
"#;
    let c = parse(text, Path::new("t.toml")).unwrap_or_else(|e| panic!("{e}"));
    let notes = |host: &str| c.plan_for(host).unwrap().settings.web.unwrap().notes;
    assert_eq!(
        notes("a"),
        Some(NotesSettings {
            database: "notes".into(),
            user: "app".into(),
            password_file: "/etc/piha/notes-password".into(),
            address: None,
        })
    );
    assert_eq!(notes("b"), None);
    let own = notes("c").unwrap();
    assert_eq!(
        (own.database.as_str(), own.user.as_str()),
        ("other", "someone")
    );
    assert_eq!(own.address, Some("198.51.100.5:5432".parse().unwrap()));
    assert_eq!(WebSettings::default().notes, None, "off unless written");
    let row = c.plan_table();
    let a = row.lines().find(|l| l.starts_with("a ")).unwrap();
    assert!(a.contains("notes app as app@notes via the pooler"), "{a}");
    let c_row = row.lines().find(|l| l.starts_with("c ")).unwrap();
    assert!(c_row.contains("via 198.51.100.5:5432"), "{c_row}");
}

#[test]
fn notes_mistakes_point_at_the_value() {
    let text = format!(
        "{NOTES_BASE}{}",
        r#"hostname = "b"
address = "192.0.2.12/24"
roles = ["web"]
[node.web.notes]
database = ""
user = 5
password_file = "notes-password"
address = "192.0.2.10"
passwort = "x"
[[node]]
hostname = "c"
address = "192.0.2.13/24"
roles = ["web"]
web = { notes = true }
[[node]]
hostname = "d"
address = "192.0.2.14/24"
roles = ["web"]
web = { notes = { user = "app" } }
"#
    );
    let got = found(&text);
    let cols: Vec<usize> = got.iter().map(|g| g.1).collect();
    assert_eq!(cols, [12, 8, 17, 11, 1, 17, 17, 17], "{got:#?}");
    assert_found(
        &got,
        &[
            (15, "a database name must not be empty"),
            (
                16,
                "wrong type for `user`: expected a PostgreSQL name in quotes",
            ),
            (
                17,
                "`password_file`: expected an absolute file path starting with '/', found \"notes-password\"",
            ),
            (18, "\"192.0.2.10\" has no port"),
            (19, "unknown key `passwort` in `web.notes`"),
            (
                24,
                "wrong type for `notes`: expected a table like notes = {",
            ),
            (
                29,
                "the `notes` table is missing the required key `database`",
            ),
            (
                29,
                "the `notes` table is missing the required key `password_file`",
            ),
        ],
    );
}

#[test]
fn notes_need_a_vip_or_an_address_and_a_user_the_pooler_knows() {
    // No VIP: the default address does not exist.
    let text = r#"[cluster]
name = "t"
[postgres]
users = [ { name = "app", secret = "md5aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" } ]
[[node]]
hostname = "a"
address = "192.0.2.11/24"
roles = ["web"]
web = { notes = { database = "app", user = "app", password_file = "/p" } }
"#;
    let got = diagnostics(text);
    assert_eq!(got.len(), 1, "{got:#?}");
    assert_eq!(got[0].line, 9);
    assert!(
        got[0].message.contains("[cluster] has no `vip`"),
        "{got:#?}"
    );
    assert!(got[0].notes.iter().any(|n| n.contains("add address = ")));
    // With an address no pooler is involved: anything goes.
    let with_address = text.replace(
        "password_file = \"/p\"",
        "password_file = \"/p\", address = \"192.0.2.50:5432\"",
    );
    parse(&with_address, Path::new("t.toml")).unwrap_or_else(|e| panic!("{e}"));

    // A user the pooler would refuse.
    let text = format!(
        "{NOTES_BASE}{}",
        r#"hostname = "b"
address = "192.0.2.12/24"
roles = ["web"]
web = { notes = { database = "app", user = "stranger", password_file = "/p" } }
"#
    );
    let got = diagnostics(&text);
    assert_eq!(got.len(), 1, "{got:#?}");
    assert_eq!((got[0].line, got[0].column), (14, 44));
    assert!(
        got[0]
            .message
            .contains("user \"stranger\" cannot log in through the pooler"),
        "{got:#?}"
    );
    // ... unless auth_query may look it up.
    let looked_up = text.replace(
        "[postgres]\n",
        "[postgres]\nservice = { user = \"piha\", database = \"postgres\", keys = \"KEYS\" }\nauth_query = \"SELECT rolpassword FROM pg_authid WHERE rolname = $1\"\n",
    );
    let keys = scram("service-pw").1;
    let looked_up = looked_up.replace("KEYS", &keys);
    parse(&looked_up, Path::new("t.toml")).unwrap_or_else(|e| panic!("{e}"));
}

/// The commented `notes` line of the shipped file works once uncommented,
/// with its user among the pooler's users.
#[test]
fn shipped_notes_example_is_valid() {
    let line = SHIPPED
        .lines()
        .find(|l| l.starts_with("# notes = "))
        .expect("a commented notes line in [defaults.web]");
    let users = "# users = [ { name = \"app\", secret = \"SCRAM-SHA-256$4096:...\" } ]";
    assert!(SHIPPED.contains(users));
    let text = SHIPPED.replacen(line, &line[2..], 1).replacen(
        users,
        "users = [ { name = \"app\", secret = \"md5aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\" } ]",
        1,
    );
    let c = parse(&text, Path::new("t.toml")).unwrap_or_else(|e| panic!("{e}"));
    let web = c.plan_for("pi-4").unwrap().settings.web.unwrap();
    assert_eq!(web.notes.map(|n| n.user), Some("app".to_string()));
}
