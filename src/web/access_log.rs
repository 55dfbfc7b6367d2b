//! The access log: one line per request in Apache/nginx "combined" format
//! plus the request's duration in seconds, written to the journal (through
//! tracing) or to a file that is rotated once at a size bound.
//!
//! Requests never wait for the log: lines go through a bounded channel to a
//! writer thread (a plain thread, since its work is blocking file IO and it
//! must not occupy tokio's blocking pool); when the channel is full the line
//! is dropped and counted, and the writer reports the count.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::time::{Duration, SystemTime};

use crate::config::AccessLog;
use crate::web::httpdate;

/// Lines waiting for the writer. At ~200 bytes a line, under 1 MiB.
const QUEUE: usize = 4096;
/// After a failure to open the file, wait this long before trying again.
const REOPEN_AFTER: Duration = Duration::from_secs(5);

/// Cheap to clone; the writer thread ends when the last clone is dropped.
#[derive(Clone)]
pub struct AccessLogger {
    tx: SyncSender<String>,
    dropped: Arc<AtomicU64>,
}

impl AccessLogger {
    /// Starts the writer for `config`; `None` when logging is off. Never
    /// fails: a file that cannot be opened is retried by the writer (the
    /// log directory may be on a mount that is not there yet).
    pub fn start(config: &AccessLog) -> Option<AccessLogger> {
        let sink = match config {
            AccessLog::Off => return None,
            AccessLog::Journal => Sink::Journal,
            AccessLog::File { path, max_bytes } => {
                Sink::File(FileSink::new(path.clone(), *max_bytes))
            }
        };
        let (tx, rx) = sync_channel(QUEUE);
        let dropped = Arc::new(AtomicU64::new(0));
        let counter = dropped.clone();
        let spawned = std::thread::Builder::new()
            .name("web-access-log".into())
            .spawn(move || writer(rx, sink, counter));
        if let Err(e) = spawned {
            tracing::warn!("web: no access log, cannot start its thread: {e}");
            return None;
        }
        Some(AccessLogger { tx, dropped })
    }

    /// Queues one line (without newline). Never blocks.
    pub fn log(&self, line: String) {
        match self.tx.try_send(line) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Lines dropped because the writer could not keep up (or write).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// The facts of one request, formatted once the response is done.
pub struct Entry<'a> {
    pub client: std::net::IpAddr,
    pub at: SystemTime,
    pub method: &'a str,
    pub target: &'a str,
    pub version: &'a str,
    pub status: u16,
    pub bytes: u64,
    pub referer: Option<&'a [u8]>,
    pub user_agent: Option<&'a [u8]>,
    pub duration: Duration,
}

impl Entry<'_> {
    /// `1.2.3.4 - - [10/Oct/2000:13:55:36 +0000] "GET / HTTP/1.1" 200 2326
    /// "http://ref/" "Mozilla/5.0" 0.002`
    pub fn combined(&self) -> String {
        format!(
            "{} - - [{}] \"{} {} {}\" {} {} \"{}\" \"{}\" {:.3}",
            self.client,
            httpdate::format_log(httpdate::unix_secs(self.at)),
            escape(self.method.as_bytes()),
            escape(self.target.as_bytes()),
            self.version,
            self.status,
            self.bytes,
            self.referer.map_or("-".into(), escape),
            self.user_agent.map_or("-".into(), escape),
            self.duration.as_secs_f64()
        )
    }
}

/// Quotes, backslashes and anything not printable ASCII as `\xHH` (what
/// nginx does), so a client cannot forge log lines or fields.
fn escape(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        match b {
            b'"' | b'\\' => {
                out.push('\\');
                out.push(b as char);
            }
            0x20..=0x7e => out.push(b as char),
            _ => out.push_str(&format!("\\x{b:02X}")),
        }
    }
    out
}

enum Sink {
    Journal,
    File(FileSink),
}

fn writer(rx: Receiver<String>, mut sink: Sink, dropped: Arc<AtomicU64>) {
    let mut reported = 0;
    // Blocks until a line arrives; ends when every sender is gone.
    while let Ok(first) = rx.recv() {
        // Take whatever else is queued, so a burst costs one write.
        let batch = std::iter::once(first).chain(rx.try_iter().take(QUEUE));
        match &mut sink {
            Sink::Journal => {
                batch.for_each(|line| tracing::info!(target: "piha::web::access", "{line}"))
            }
            Sink::File(file) => file.write_batch(batch, &dropped),
        }
        let now = dropped.load(Ordering::Relaxed);
        if now != reported {
            tracing::warn!("web: {} access log line(s) dropped", now - reported);
            reported = now;
        }
    }
}

/// A log file with its size bound.
struct FileSink {
    path: PathBuf,
    max_bytes: u64,
    out: Option<BufWriter<File>>,
    size: u64,
    failed_at: Option<std::time::Instant>,
}

impl FileSink {
    fn new(path: PathBuf, max_bytes: u64) -> FileSink {
        FileSink {
            path,
            max_bytes,
            out: None,
            size: 0,
            failed_at: None,
        }
    }

    fn write_batch(&mut self, batch: impl Iterator<Item = String>, dropped: &AtomicU64) {
        for line in batch {
            let Some(out) = self.open() else {
                dropped.fetch_add(1, Ordering::Relaxed);
                continue;
            };
            let written = out
                .write_all(line.as_bytes())
                .and_then(|()| out.write_all(b"\n"));
            if let Err(e) = written {
                tracing::warn!("web: access log {}: {e}", self.path.display());
                self.out = None;
                self.failed_at = Some(std::time::Instant::now());
                dropped.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            self.size += line.len() as u64 + 1;
            if self.size >= self.max_bytes {
                self.rotate();
            }
        }
        if let Some(out) = &mut self.out {
            if let Err(e) = out.flush() {
                tracing::warn!("web: access log {}: {e}", self.path.display());
                self.out = None;
            }
        }
    }

    fn open(&mut self) -> Option<&mut BufWriter<File>> {
        if self.out.is_none() {
            if self.failed_at.is_some_and(|t| t.elapsed() < REOPEN_AFTER) {
                return None;
            }
            match open_append(&self.path) {
                Ok((file, size)) => {
                    self.out = Some(BufWriter::new(file));
                    self.size = size;
                    self.failed_at = None;
                }
                Err(e) => {
                    tracing::warn!("web: cannot open access log {}: {e}", self.path.display());
                    self.failed_at = Some(std::time::Instant::now());
                    return None;
                }
            }
        }
        self.out.as_mut()
    }

    /// `access.log` -> `access.log.1` (replacing the previous one), then a
    /// fresh file: at most twice `max_bytes` on the SD card.
    fn rotate(&mut self) {
        if let Some(mut out) = self.out.take() {
            let _ = out.flush();
        }
        let old = rotated_path(&self.path);
        if let Err(e) = std::fs::rename(&self.path, &old) {
            tracing::warn!("web: cannot rotate access log {}: {e}", self.path.display());
        }
        self.size = 0;
    }
}

pub fn rotated_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".1");
    PathBuf::from(s)
}

fn open_append(path: &Path) -> std::io::Result<(File, u64)> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .open(path)?;
    let size = file.metadata()?.len();
    Ok((file, size))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn combined_format_escapes_what_clients_send() {
        let e = Entry {
            client: "192.0.2.7".parse().unwrap(),
            at: SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777),
            method: "GET",
            target: "/a b\"c",
            version: "HTTP/1.1",
            status: 200,
            bytes: 42,
            referer: None,
            user_agent: Some(b"curl/8 \"x\"\n"),
            duration: Duration::from_micros(2500),
        };
        assert_eq!(
            e.combined(),
            "192.0.2.7 - - [06/Nov/1994:08:49:37 +0000] \"GET /a b\\\"c HTTP/1.1\" 200 42 \"-\" \"curl/8 \\\"x\\\"\\x0A\" 0.003"
        );
    }

    fn wait_for(mut ok: impl FnMut() -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !ok() {
            assert!(std::time::Instant::now() < deadline, "timed out");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn file_rotates_once_at_its_bound() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("logs/access.log");
        let log = AccessLogger::start(&AccessLog::File {
            path: path.clone(),
            max_bytes: 100,
        })
        .unwrap();
        let line = |i: usize| format!("line {i:04} {}", "x".repeat(30)); // 40 bytes + \n
        for i in 0..3 {
            log.log(line(i));
        }
        // 3 x 41 = 123 >= 100: rotated after the third line.
        wait_for(|| rotated_path(&path).exists());
        let old = std::fs::read_to_string(rotated_path(&path)).unwrap();
        assert_eq!(old.lines().count(), 3);
        for i in 3..8 {
            log.log(line(i));
        }
        // 3 more fill and rotate again (overwriting .1), 2 stay in the file.
        let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
        wait_for(|| {
            read(&path).lines().count() == 2 && read(&rotated_path(&path)).starts_with("line 0003")
        });
        let old = std::fs::read_to_string(rotated_path(&path)).unwrap();
        assert!(old.starts_with("line 0003"), "{old}");
        assert_eq!(old.lines().count(), 3);
        let current = std::fs::read_to_string(&path).unwrap();
        assert!(current.starts_with("line 0006"), "{current}");
        assert_eq!(log.dropped(), 0);
        assert!(!dir.path().join("logs/access.log.2").exists());
    }

    #[test]
    fn off_means_no_writer() {
        assert!(AccessLogger::start(&AccessLog::Off).is_none());
    }
}
