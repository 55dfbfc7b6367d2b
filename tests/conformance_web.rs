//! Runs `scripts/conformance-web --serve`: the script builds and starts
//! `examples/web_serve` on a temporary document root (HTTP and HTTPS on
//! loopback) and checks ranges, conditionals, precompressed variants, HTTP/2
//! and traversal attempts with curl, as an operator would.

use std::path::Path;
use std::process::Command;

#[test]
fn the_web_role_passes_the_curl_conformance_script() {
    if Command::new("curl").arg("-V").output().is_err() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must have curl (scripts/install-deps)"
        );
        eprintln!("skipping: curl is not installed (scripts/install-deps installs it)");
        return;
    }
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(repo.join("scripts/conformance-web"))
        .arg("--serve")
        // The script builds the example with the same cargo; by the time
        // tests run, `cargo test` has released the build lock.
        .env("CARGO", env!("CARGO"))
        .current_dir(repo)
        .output()
        .expect("run scripts/conformance-web");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let failures: Vec<&str> = stdout.lines().filter(|l| l.starts_with("FAIL")).collect();
    assert!(
        out.status.success() && failures.is_empty(),
        "conformance failed ({}):\n{}\n{stdout}\n--- stderr ---\n{stderr}",
        out.status,
        failures.join("\n")
    );
    let summary = stdout.lines().last().unwrap_or_default();
    assert!(summary.ends_with(" passed, 0 failed"), "{summary}");
    eprintln!("{summary}");
}
