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
