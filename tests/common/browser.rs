//! Drive Debian's headless Chromium from tests: dump a page's DOM after its
//! scripts ran, or take a screenshot. Only std: a child process, a private
//! profile directory, and a hard timeout so a stuck browser never hangs a test.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long one Chromium run may take, whatever the page does.
pub const HARD_TIMEOUT: Duration = Duration::from_secs(60);

/// Flags every run needs here: headless without a sandbox (tests run as root
/// in a container) and without the background traffic that stalls on a
/// closed network.
const BASE_FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-dev-shm-usage",
    "--mute-audio",
];

/// Chromium's binary: /usr/bin/chromium, else whatever `chromium` is on PATH.
pub fn chromium_path() -> Option<PathBuf> {
    let fixed = PathBuf::from("/usr/bin/chromium");
    if fixed.is_file() {
        return Some(fixed);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("chromium"))
        .find(|candidate| candidate.is_file())
}

/// Load `url`, let its scripts run for `budget_ms` of virtual time (timers and
/// fetches included), and return the serialized DOM.
pub fn dump_dom(url: &str, budget_ms: u64) -> Result<String, String> {
    dump_dom_in(None, url, budget_ms)
}

/// [`dump_dom`] with Chromium run inside network namespace `netns` (a lab
/// node's page is only reachable from inside the lab).
pub fn dump_dom_in(netns: Option<&str>, url: &str, budget_ms: u64) -> Result<String, String> {
    let budget = format!("--virtual-time-budget={budget_ms}");
    let out = run_chromium(netns, &[&budget, "--dump-dom", url])?;
    if out.trim().is_empty() {
        return Err(format!("chromium printed no DOM for {url}"));
    }
    Ok(out)
}

/// Load `url` in a `width`x`height` window, let it run for `budget_ms` of
/// virtual time, and write a PNG of the viewport to `path`.
pub fn screenshot(
    url: &str,
    path: &Path,
    width: u32,
    height: u32,
    budget_ms: u64,
) -> Result<(), String> {
    screenshot_with(url, path, width, height, budget_ms, &[])
}

/// [`screenshot`] with extra Chromium flags, e.g. `--force-dark-mode` to
/// render the page as a browser in dark mode would.
pub fn screenshot_with(
    url: &str,
    path: &Path,
    width: u32,
    height: u32,
    budget_ms: u64,
    extra_flags: &[&str],
) -> Result<(), String> {
    screenshot_in(None, url, path, (width, height), budget_ms, extra_flags)
}

/// [`screenshot_with`] with Chromium run inside network namespace `netns`.
pub fn screenshot_in(
    netns: Option<&str>,
    url: &str,
    path: &Path,
    (width, height): (u32, u32),
    budget_ms: u64,
    extra_flags: &[&str],
) -> Result<(), String> {
    if let Some(dir) = path.parent() {
        if !dir.as_os_str().is_empty() {
            std::fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
        }
    }
    // Chromium only overwrites; remove an old file so success is provable.
    let _ = std::fs::remove_file(path);
    let shot = format!("--screenshot={}", path.display());
    let size = format!("--window-size={width},{height}");
    let budget = format!("--virtual-time-budget={budget_ms}");
    let mut args: Vec<&str> = vec![&shot, &size, "--hide-scrollbars", &budget];
    args.extend_from_slice(extra_flags);
    args.push(url);
    run_chromium(netns, &args)?;
    match std::fs::metadata(path) {
        Ok(meta) if meta.len() > 0 => Ok(()),
        _ => Err(format!(
            "chromium wrote no screenshot to {}",
            path.display()
        )),
    }
}

/// Run Chromium with BASE_FLAGS + `args` in a fresh profile (inside
/// network namespace `netns` when given); return stdout.
fn run_chromium(netns: Option<&str>, args: &[&str]) -> Result<String, String> {
    let exe = chromium_path().ok_or("chromium not found (apt-get install chromium)")?;
    let profile = TempDir::new()?;

    let mut cmd = match netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns]).arg(&exe);
            c
        }
        None => Command::new(&exe),
    };
    cmd.args(BASE_FLAGS)
        .arg(format!("--user-data-dir={}", profile.0.display()))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // Own process group, so on timeout the renderer and GPU helpers die too.
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        cmd.process_group(0);
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("spawn {}: {e}", exe.display()))?;

    // Read both pipes on threads: a full pipe would otherwise block Chromium,
    // and a helper that keeps a pipe open must not block us past the timeout.
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());

    let deadline = Instant::now() + HARD_TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() >= deadline => {
                kill_group(&mut child);
                return Err(format!(
                    "chromium did not finish within {HARD_TIMEOUT:?}: {args:?}"
                ));
            }
            Ok(None) => thread::sleep(Duration::from_millis(50)),
            Err(e) => {
                kill_group(&mut child);
                return Err(format!("waiting for chromium: {e}"));
            }
        }
    };
    // Chromium's helpers normally exit with it; make sure none lingers
    // (holding our pipes open or eating CPU) before reading the output.
    signal_group(&child);
    let out = stdout
        .recv_timeout(Duration::from_secs(10))
        .unwrap_or_default();
    let err = stderr
        .recv_timeout(Duration::from_secs(2))
        .unwrap_or_default();
    if !status.success() {
        return Err(format!(
            "chromium exited with {status}; stderr:\n{}",
            tail(&err, 2000)
        ));
    }
    Ok(out)
}

fn drain<R: Read + Send + 'static>(pipe: Option<R>) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut buf);
        }
        let _ = tx.send(String::from_utf8_lossy(&buf).into_owned());
    });
    rx
}

fn kill_group(child: &mut Child) {
    signal_group(child);
    let _ = child.kill();
    let _ = child.wait();
}

/// SIGKILL the child's process group (the child leads it, see spawn).
fn signal_group(child: &Child) {
    #[cfg(unix)]
    {
        // std has no killpg; kill(1) with a negative pid signals the group.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", child.id())])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
    #[cfg(not(unix))]
    let _ = child;
}

fn tail(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut start = s.len() - max;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}

/// A uniquely named directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Result<Self, String> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let name = format!(
            "piha-chromium-{}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed),
            nanos
        );
        let dir = std::env::temp_dir().join(name);
        std::fs::create_dir(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
        Ok(TempDir(dir))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
