//! The `web` role section over the settings below it: document root, ports,
//! certificate, access log.

use toml::Spanned;

use super::diagnostic::Report;
use super::model::{AccessLog, WebSettings};
use super::overlay::{field, port, port_or_off, tls_files};
use super::raw::{RawAccessLog, RawLogFile, RawTable, RawWeb, Section};
use super::suggest::closest;
use super::values;

/// An access log file is rotated once it reaches this size unless told.
const ACCESS_LOG_BYTES: u64 = 16 << 20;

/// Smaller than this, a busy site would rotate the log every few seconds.
const MIN_ACCESS_LOG_BYTES: u64 = 64 << 10;

pub fn web(
    base: &WebSettings,
    section: Option<&Section<RawWeb>>,
    report: &mut Report<'_>,
) -> WebSettings {
    let Some(section) = section else {
        return base.clone();
    };
    let f = &section.fields;
    let root = |text: &String| {
        values::absolute_dir(text).map_err(|why| format!("invalid web root: {why}"))
    };
    WebSettings {
        root: field(&f.root, &base.root, root, report),
        port: port(&f.port, base.port, report),
        tls_port: port_or_off(&f.tls_port, base.tls_port, report),
        tls: tls_files(f.tls.as_ref(), &base.tls, report),
        access_log: access_log(&f.access_log, &base.access_log, report),
        follow_symlinks: f
            .follow_symlinks
            .as_ref()
            .map_or(base.follow_symlinks, |b| *b.get_ref()),
    }
}

/// A mode or a file; either replaces the access log below as a whole.
fn access_log(
    raw: &Option<Spanned<RawAccessLog>>,
    base: &AccessLog,
    report: &mut Report<'_>,
) -> AccessLog {
    let Some(raw) = raw else {
        return base.clone();
    };
    match raw.get_ref() {
        RawAccessLog::File(file) => log_file(file, base, report),
        RawAccessLog::Mode(mode) => log_mode(mode).unwrap_or_else(|why| {
            report.error(raw.span(), why);
            base.clone()
        }),
    }
}

/// `access_log = "off"` or `"journal"`.
fn log_mode(mode: &str) -> Result<AccessLog, String> {
    match mode {
        "off" => return Ok(AccessLog::Off),
        "journal" => return Ok(AccessLog::Journal),
        _ => {}
    }
    let expected =
        "expected \"off\", \"journal\" or a table like { path = \"/var/log/piha/access.log\" }";
    if mode.starts_with('/') {
        return Err(format!(
            "{expected}: for a log file write access_log = {{ path = \"{mode}\" }}"
        ));
    }
    let mut message = format!("{expected}, found \"{mode}\"");
    if let Some(s) = closest(mode, &["off", "journal"]) {
        message.push_str(&format!(" (did you mean \"{s}\"?)"));
    }
    Err(message)
}

/// `access_log = { path = "/var/log/piha/access.log", max_size = "16MiB" }`.
fn log_file(raw: &RawTable<RawLogFile>, base: &AccessLog, report: &mut Report<'_>) -> AccessLog {
    let f = &raw.fields;
    let size = |size: &_| values::size_in(size, MIN_ACCESS_LOG_BYTES, None, "max_size");
    let max_bytes = field(&f.max_size, &ACCESS_LOG_BYTES, size, report);
    let Some(path) = &f.path else {
        if !raw.reported.contains("path") {
            report
                .error(raw.span.clone(), "the access log table needs a `path`")
                .help("access_log = { path = \"/var/log/piha/access.log\" }, or \"journal\" for the node's log");
        }
        return base.clone();
    };
    match values::absolute_file(path.get_ref()) {
        Ok(path) => AccessLog::File { path, max_bytes },
        Err(why) => {
            report.error(path.span(), why);
            base.clone()
        }
    }
}
