//! `piha check` as a Pi owner runs it: every broken fixture must fail with
//! the mistake's file:line and a message that names it; the shipped cluster
//! file must pass and show every node's roles. Also `piha pg-secret`, whose
//! output goes into that file.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use piha::pg::auth::{ScramKeys, Secret};

/// (fixture, the errors it must produce as (line, phrase of the message)).
const BROKEN: &[(&str, &[(usize, &str)])] = &[
    (
        "01-syntax-unquoted-address.toml",
        &[(40, "TOML syntax error")],
    ),
    (
        "02-unknown-key.toml",
        &[(
            40,
            "unknown key `adress` in [[node]]; did you mean `address`?",
        )],
    ),
    (
        "03-wrong-type.toml",
        &[(41, "wrong type for `roles`: expected a list of roles")],
    ),
    (
        "04-missing-hostname.toml",
        &[(43, "missing the required key `hostname`")],
    ),
    (
        "05-duplicate-hostname.toml",
        &[(39, "duplicate hostname \"pi-2\"")],
    ),
    (
        "06-invalid-hostname.toml",
        &[(44, "invalid hostname \"pi_4\"")],
    ),
    (
        "07-address-without-prefix.toml",
        &[(45, "has no prefix length")],
    ),
    (
        "08-same-address-and-port.toml",
        &[(
            45,
            "uses 192.0.2.13:9000 (admin) and 192.0.2.13:7946 (gossip)",
        )],
    ),
    (
        "09-unknown-role.toml",
        &[(
            46,
            "unknown role \"webserver\"; valid roles are balancer, web, db, storage",
        )],
    ),
    (
        "10-section-without-role.toml",
        &[(42, "has a `balancer` section but not the \"balancer\" role")],
    ),
    (
        "11-vip-outside-subnet.toml",
        &[(4, "outside the subnet of every balancer node")],
    ),
    (
        "12-vip-is-a-node-address.toml",
        &[(4, "is also the address of node \"pi-2\"")],
    ),
    (
        "13-balancer-without-vip.toml",
        &[(27, "has the balancer role, but [cluster] has no `vip`")],
    ),
    (
        "14-priority-out-of-range.toml",
        &[(29, "priority must be from 1 to 254, found 255")],
    ),
    (
        "15-two-initial-primaries.toml",
        &[
            (30, "`initial_primary = true` is set on 2 db nodes"),
            (37, "`initial_primary = true` is set on 2 db nodes"),
        ],
    ),
    (
        "16-no-initial-primary.toml",
        &[(28, "no db node has `initial_primary = true`")],
    ),
    (
        "17-invalid-glob.toml",
        &[(49, "invalid hostname pattern \"pi-[0-9\"")],
    ),
    (
        "18-bad-duration.toml",
        &[(14, "expected a duration like \"1s\"")],
    ),
    (
        "19-down-after-too-short.toml",
        &[(
            15,
            "down_after (1s) must be longer than heartbeat_interval (1s)",
        )],
    ),
    ("20-bad-size.toml", &[(19, "unit \"MB\" is ambiguous")]),
    (
        "21-short-admin-token.toml",
        &[(
            5,
            "admin_token is 6 characters long; it must be at least 16",
        )],
    ),
    (
        "22-token-and-token-file.toml",
        &[(
            6,
            "set either `admin_token` or `admin_token_file`, not both",
        )],
    ),
    (
        "23-node-with-single-brackets.toml",
        &[(25, "expected `[[node]]` with double brackets")],
    ),
    (
        "24-several-mistakes.toml",
        &[
            (18, "wrong type for `retention`"),
            (29, "priority must be from 1 to 254, found 0"),
            (39, "did you mean `hostname`?"),
            (45, "\"192.0.2.314\" is not an IP address"),
        ],
    ),
    (
        "25-unknown-algorithm.toml",
        &[(
            16,
            "unknown algorithm \"round-robin\"; valid ones are roundrobin, leastconn, source, random2",
        )],
    ),
    (
        "26-health-path-without-slash.toml",
        &[(16, "the health check path must start with '/'")],
    ),
    (
        "27-health-timeout-over-interval.toml",
        &[(
            16,
            "the health check timeout (3s) is longer than its interval (1s)",
        )],
    ),
    (
        "28-two-listeners-on-one-port.toml",
        &[(
            38,
            "node \"pi-3\" would listen on port 9000 twice: `web.port` and `admin_port`",
        )],
    ),
    (
        "29-backend-without-port.toml",
        &[(18, "\"192.0.2.51\" has no port")],
    ),
    (
        "30-duplicate-backend.toml",
        &[(18, "backend 192.0.2.50:8080 is listed twice")],
    ),
    (
        "31-tcp-service-without-backends.toml",
        &[(
            20,
            "tcp service \"redis\" has no backends; it needs at least one",
        )],
    ),
    (
        "32-duplicate-tcp-service.toml",
        &[(23, "there are two tcp services named \"redis\"")],
    ),
    (
        "33-tls-without-key.toml",
        &[(
            32,
            "a `tls` table needs both `cert` and `key`; `key` is missing",
        )],
    ),
    (
        "34-header-size-out-of-range.toml",
        &[(
            16,
            "`max_header_size` must be from 1KiB to 1MiB, found 4MiB",
        )],
    ),
    (
        "35-http-limit-on-tcp-service.toml",
        &[(21, "`server_timeout`: a tcp service passes bytes through")],
    ),
    (
        "36-access-log-typo.toml",
        &[(13, "found \"jornal\" (did you mean \"journal\"?)")],
    ),
    (
        "37-postgres-unknown-key.toml",
        &[(
            23,
            "unknown key `pool_sise` in [postgres]; did you mean `pool_size`?",
        )],
    ),
    (
        "38-postgres-bad-pool-mode.toml",
        &[(
            22,
            "unknown pool mode \"transactions\"; valid ones are transaction, session (did you mean \"transaction\"?)",
        )],
    ),
    (
        "39-postgres-pool-size-zero.toml",
        &[(22, "`pool_size` must be from 1 to 10000, found 0")],
    ),
    (
        "40-postgres-min-pool-over-pool.toml",
        &[(23, "`min_pool_size` (10) is larger than `pool_size` (5)")],
    ),
    (
        "41-postgres-bad-secret.toml",
        &[(23, "the `secret` of user \"app\" is not valid")],
    ),
    (
        "42-postgres-bad-keys.toml",
        &[(22, "the service `keys` are not valid: expected SCRAM keys")],
    ),
    (
        "43-postgres-duplicate-user.toml",
        &[(24, "user \"app\" is listed twice")],
    ),
    (
        "44-postgres-auth-query-without-service.toml",
        &[(
            22,
            "`auth_query` needs `service`: the pooler runs the query on the primary as its own login",
        )],
    ),
    (
        "45-postgres-auth-query-without-parameter.toml",
        &[(23, "`auth_query` must contain $1")],
    ),
    (
        "46-postgres-port-clash.toml",
        &[(
            22,
            "node \"pi-1\" would listen on port 80 twice: `postgres.port` and `balancer.http_port`",
        )],
    ),
    (
        "47-postgres-bad-backend.toml",
        &[(22, "\"192.0.2.50\" has no port (e.g. \"192.0.2.50:5432\")")],
    ),
    (
        "48-postgres-probe-timeout-over-interval.toml",
        &[(
            22,
            "the probe timeout (2s) is longer than its interval (1s)",
        )],
    ),
    (
        "49-vrrp-v3-interval-not-in-10ms-steps.toml",
        &[(
            23,
            "`interval` must be a multiple of 10ms from 10ms to 40.95s, found 15ms",
        )],
    ),
    (
        "50-vrrp-v2-sub-second-interval.toml",
        &[(
            23,
            "with version = 2, `interval` must be whole seconds from 1s to 255s, found 500ms",
        )],
    ),
    (
        "51-vrrp-auth-with-v3.toml",
        &[(23, "VRRPv3 has no authentication (RFC 5798 removed it)")],
    ),
    (
        "52-vrrp-auth-too-long.toml",
        &[(
            23,
            "`auth` must be 1 to 8 characters long (VRRPv2 carries 8 bytes), not 13",
        )],
    ),
    (
        "53-vrrp-unicast-empty-peers.toml",
        &[(
            23,
            "unicast mode needs at least one peer: `unicast_peers` is empty",
        )],
    ),
    (
        "54-vrrp-peers-with-multicast.toml",
        &[(
            23,
            "`unicast_peers` is set, but `mode` is \"multicast\": the peers would be ignored",
        )],
    ),
    (
        "55-vrrp-v2-ipv6-vip.toml",
        &[(
            22,
            "VRRPv2 is IPv4 only (RFC 3768), but the VIP 2001:db8::10/64 is IPv6",
        )],
    ),
    (
        "56-vrrp-unknown-key.toml",
        &[(
            23,
            "unknown key `prempt` in [vrrp]; did you mean `preempt`?",
        )],
    ),
    (
        "57-vrrp-check-relative-command.toml",
        &[(
            23,
            "the program of a check: expected an absolute file path starting with '/', found \"test\"",
        )],
    ),
    (
        "58-vrrp-check-timeout-over-interval.toml",
        &[(
            23,
            "the check \"disk\" timeout (3s) is longer than its interval (1s)",
        )],
    ),
    (
        "59-vrrp-without-vip.toml",
        &[(17, "[vrrp] needs the cluster's `vip`")],
    ),
    (
        "60-vrrp-unicast-without-balancer-nodes.toml",
        &[(
            19,
            "unicast mode needs at least one peer: `unicast_peers` is not set and no balancer node has an address",
        )],
    ),
    (
        "61-db-relative-bindir.toml",
        &[(
            22,
            "`bindir`: expected an absolute directory path starting with '/', found \"usr/lib/postgresql/15/bin\"",
        )],
    ),
    (
        "62-db-backups-too-often.toml",
        &[
            (22, "`every` must be at least 1m, found 10s"),
            (22, "`keep` must be from 1 to 365, found 0"),
        ],
    ),
    (
        "63-db-unknown-key.toml",
        &[(
            23,
            "unknown key `falover` in [db]; did you mean `failover`?",
        )],
    ),
    (
        "64-bad-mac.toml",
        &[(
            12,
            "invalid MAC address \"dc:a6:32:01:02\": write six pairs of hex digits",
        )],
    ),
    (
        "65-duplicate-mac.toml",
        &[(15, "duplicate MAC address \"dc:a6:32:01:02:03\"")],
    ),
    (
        "66-notes-without-vip.toml",
        &[(
            8,
            "the notes app connects to the pooler on the cluster's VIP, but [cluster] has no `vip`",
        )],
    ),
    (
        "67-notes-user-unknown-to-pooler.toml",
        &[(
            9,
            "user \"notes\" cannot log in through the pooler: it is not one of the [postgres] `users`",
        )],
    ),
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn check(config: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_piha"))
        .arg("check")
        .arg("--config")
        .arg(config)
        .env_remove("PIHA_CONFIG")
        .output()
        .expect("run piha")
}

#[test]
fn broken_fixtures_fail_with_line_and_message() {
    let dir = root().join("tests/fixtures/config/broken");
    let mut failures = Vec::new();
    for (name, expected) in BROKEN {
        let path = dir.join(name);
        let out = check(&path);
        let stderr = String::from_utf8_lossy(&out.stderr);
        if out.status.success() {
            failures.push(format!("{name}: accepted"));
            continue;
        }
        let first_lines: Vec<&str> = stderr.lines().filter(|l| l.contains(": error: ")).collect();
        for (line, phrase) in *expected {
            let at = format!("{}:{line}:", path.display());
            if !first_lines
                .iter()
                .any(|l| l.starts_with(&at) && l.contains(phrase))
            {
                failures.push(format!(
                    "{name}: no error at line {line} containing {phrase:?}:\n{stderr}"
                ));
            }
        }
        if first_lines.len() != expected.len() {
            failures.push(format!(
                "{name}: {} errors, expected {}:\n{stderr}",
                first_lines.len(),
                expected.len()
            ));
        }
        let count = if expected.len() == 1 {
            "1 error".to_string()
        } else {
            format!("{} errors", expected.len())
        };
        if !stderr
            .trim_end()
            .ends_with(&format!("{}: {count}", path.display()))
        {
            failures.push(format!("{name}: no summary line:\n{stderr}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn every_fixture_is_in_the_table() {
    let dir = root().join("tests/fixtures/config/broken");
    let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
        .expect("fixture dir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".toml"))
        .collect();
    on_disk.sort();
    let listed: Vec<String> = BROKEN.iter().map(|(n, _)| n.to_string()).collect();
    assert_eq!(on_disk, listed);
}

#[test]
fn diagnostics_show_the_source_line_and_a_caret() {
    let path = root().join("tests/fixtures/config/broken/07-address-without-prefix.toml");
    let stderr = String::from_utf8_lossy(&check(&path).stderr).into_owned();
    let expected = "\n   |\n45 | address = \"192.0.2.14\"\n   |           ^^^^^^^^^^^^\n";
    assert!(stderr.contains(expected), "{stderr}");
}

#[test]
fn shipped_cluster_file_passes_and_shows_every_node() {
    let out = check(&root().join("pi-configs/cluster.toml"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let row = |host: &str| {
        stdout
            .lines()
            .find(|l| l.starts_with(&format!("{host} ")))
            .unwrap_or_else(|| panic!("no row for {host}:\n{stdout}"))
            .to_string()
    };
    assert!(
        row("pi-1").contains("balancer, web, db, storage"),
        "{stdout}"
    );
    assert!(row("pi-1").contains("vrrp priority 150"), "{stdout}");
    assert!(row("pi-1").contains("http :80/:443 roundrobin"), "{stdout}");
    assert!(row("pi-4").contains("web :8080/:8443 root"), "{stdout}");
    assert!(row("pi-1").contains("db initial primary"), "{stdout}");
    assert!(
        row("pi-2").contains("balancer, web, db, storage"),
        "{stdout}"
    );
    assert!(row("pi-2").contains("vrrp priority 100"), "{stdout}");
    assert!(row("pi-3").contains("web, db, storage"), "{stdout}");
    assert!(!row("pi-3").contains("balancer"), "{stdout}");
    assert!(row("pi-4").contains("web, storage"), "{stdout}");
    assert!(!row("pi-4").contains("db"), "{stdout}");
    assert!(row("pi-*").contains("(joins by pattern)"), "{stdout}");
    assert!(stdout.contains("VIP 192.0.2.10/24"), "{stdout}");
    assert!(
        stdout.contains("\npostgres pooler: port 5432 (PostgreSQL 5433), transaction mode"),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "\ndb: PostgreSQL from /usr/lib/postgresql/15/bin, asynchronous replication, automatic failover, backups every 24h to /srv/piha/backups/postgresql (keep 7)\n"
        ),
        "{stdout}"
    );
    // Two pairs, each with its arbiter on the other pair: any one Pi may go.
    assert!(
        stdout.contains(
            "\nstorage: volume piha (replica 3 arbiter 1, 2 x (2 + 1)) on pi-1, pi-2, pi-3, pi-4 (arbiters on pi-3, pi-1), formed by pi-1, mounted on /srv/piha/www\n"
        ),
        "{stdout}"
    );
}

#[test]
fn oversized_and_missing_files_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let big = dir.path().join("big.toml");
    std::fs::write(&big, "#".repeat(2 << 20)).expect("write");
    let out = check(&big);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("larger than 1024 KiB"));

    let out = check(&dir.path().join("absent.toml"));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not exist"));
}

fn pg_secret(user: &str, stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_piha"))
        .args(["pg-secret", "--user", user])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run piha");
    let mut input = child.stdin.take().expect("stdin");
    input.write_all(stdin.as_bytes()).expect("write stdin");
    drop(input);
    child.wait_with_output().expect("wait for piha")
}

/// The verifier of the ALTER ROLE line and the `service` table, parsed.
fn pg_secret_output(out: &Output) -> (String, toml::Table) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{stdout}");
    assert!(
        lines[0].starts_with("-- ") && lines[2].starts_with("# "),
        "{stdout}"
    );
    let verifier = lines[1]
        .split_once(" PASSWORD '")
        .and_then(|(_, rest)| rest.strip_suffix("';"))
        .unwrap_or_else(|| panic!("no verifier in {:?}", lines[1]));
    let service: toml::Table = toml::from_str(lines[3]).expect("the service line is TOML");
    let service = service["service"].as_table().expect("a table").clone();
    (verifier.to_string(), service)
}

#[test]
fn pg_secret_prints_a_verifier_that_matches_its_keys() {
    let user = "app \"ro\"";
    let out = pg_secret(user, "s3cret pass\n");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        stdout.contains("\nALTER ROLE \"app \"\"ro\"\"\" PASSWORD 'SCRAM-SHA-256$4096:"),
        "{stdout}"
    );
    let (verifier, service) = pg_secret_output(&out);
    assert_eq!(service["user"].as_str(), Some(user));
    assert_eq!(service["database"].as_str(), Some("postgres"));
    let keys_text = service["keys"].as_str().expect("keys");
    let keys = ScramKeys::parse(keys_text).expect("the keys parse");
    assert_eq!(keys.verifier().to_text(), verifier);
    assert!(Secret::parse(&verifier).is_ok());
    // From that password (its line ending dropped), with a 16-byte salt.
    assert_eq!(keys.salt.len(), 16);
    let again = ScramKeys::derive("s3cret pass", &keys.salt, keys.iterations);
    assert_eq!(again.to_text(), keys_text);
    assert!(!stdout.contains("s3cret"), "{stdout}");

    // The line goes into the cluster file as printed.
    let file = format!(
        "[cluster]\nname = \"t\"\n[postgres]\n{}\n[[node]]\nhostname = \"a\"\naddress = \"192.0.2.11/24\"\nroles = [\"web\"]\n",
        stdout.lines().nth(3).unwrap_or_default()
    );
    let config = piha::config::parse(&file, Path::new("t.toml")).unwrap_or_else(|e| panic!("{e}"));
    let login = config.postgres.service.expect("service");
    assert_eq!(
        (login.user.as_str(), login.keys.as_str()),
        (user, keys_text)
    );

    // A new salt every time.
    let (other, _) = pg_secret_output(&pg_secret(user, "s3cret pass\n"));
    assert_ne!(other, verifier);
}

#[test]
fn pg_secret_refuses_an_empty_password_or_name() {
    for (user, input, why) in [
        ("piha", "\n", "empty password"),
        ("piha", "", "empty password"),
        ("", "pw\n", "the user name must not be empty"),
    ] {
        let out = pg_secret(user, input);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{user:?} {input:?} accepted");
        assert!(stderr.contains(why), "{stderr}");
        assert!(out.stdout.is_empty());
    }
}
