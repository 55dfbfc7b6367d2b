//! Laying one written key over the value below it (`[defaults]` over the
//! built-in value, a node's section over `[defaults]`): check it, report a
//! mistake at the value as written, and keep the value below on failure so
//! the remaining checks still run.

use std::collections::HashMap;
use std::ops::RangeInclusive;
use std::time::Duration;

use toml::Spanned;

use super::diagnostic::{Report, Span};
use super::model::TlsFiles;
use super::raw::{OrOff, RawTable, RawTls};
use super::values;

/// `base` unless `raw` was written; then `check`'s answer, or `base` with
/// an error at `raw` if the check refused it.
pub fn field<R, T: Clone>(
    raw: &Option<Spanned<R>>,
    base: &T,
    check: impl FnOnce(&R) -> Result<T, String>,
    report: &mut Report<'_>,
) -> T {
    let Some(raw) = raw else {
        return base.clone();
    };
    check(raw.get_ref()).unwrap_or_else(|why| {
        report.error(raw.span(), why);
        base.clone()
    })
}

/// Like `field`, with `help` under the error: what the key is for and
/// what a good value looks like.
pub fn field_with_help<R, T: Clone>(
    raw: &Option<Spanned<R>>,
    base: &T,
    check: impl FnOnce(&R) -> Result<T, String>,
    help: &str,
    report: &mut Report<'_>,
) -> T {
    let Some(raw) = raw else {
        return base.clone();
    };
    check(raw.get_ref()).unwrap_or_else(|why| {
        report.error(raw.span(), why).help(help);
        base.clone()
    })
}

pub fn port(raw: &Option<Spanned<i64>>, base: u16, report: &mut Report<'_>) -> u16 {
    field(raw, &base, |n| values::port(*n), report)
}

/// A port, or `false` for off.
pub fn port_or_off(
    raw: &Option<Spanned<OrOff<i64>>>,
    base: Option<u16>,
    report: &mut Report<'_>,
) -> Option<u16> {
    field(raw, &base, values::port_or_off, report)
}

/// A duration longer than zero.
pub fn duration(
    raw: &Option<Spanned<String>>,
    base: Duration,
    report: &mut Report<'_>,
) -> Duration {
    field(raw, &base, |t| values::duration(t), report)
}

/// A whole number within `range`, named `key` in the message.
pub fn count(
    raw: &Option<Spanned<i64>>,
    base: u32,
    (key, range): (&str, RangeInclusive<u32>),
    report: &mut Report<'_>,
) -> u32 {
    field(raw, &base, |n| values::count(*n, key, range), report)
}

/// `tls = { cert = "...", key = "..." }` replaces the certificate below as a
/// whole: a key without its certificate (or the reverse) is useless.
pub fn tls_files(
    raw: Option<&RawTls>,
    base: &Option<TlsFiles>,
    report: &mut Report<'_>,
) -> Option<TlsFiles> {
    let Some(raw) = raw else {
        return base.clone();
    };
    let f = &raw.fields;
    let missing: Vec<&str> = [("cert", &f.cert), ("key", &f.key)]
        .into_iter()
        .filter(|(key, value)| value.is_none() && !raw.reported.contains(key))
        .map(|(key, _)| key)
        .collect();
    if !missing.is_empty() {
        report
            .error(
                raw.span.clone(),
                format!(
                    "a `tls` table needs both `cert` and `key`; `{}` is missing",
                    missing.join("` and `")
                ),
            )
            .help("tls = { cert = \"/etc/piha/tls/cert.pem\", key = \"/etc/piha/tls/key.pem\" }, or no `tls` for a self-signed certificate");
    }
    let mut path = |raw: &Option<Spanned<String>>| {
        let raw = raw.as_ref()?;
        values::absolute_file(raw.get_ref())
            .map_err(|why| {
                report.error(raw.span(), why);
            })
            .ok()
    };
    let (cert, key) = (path(&f.cert), path(&f.key));
    match (cert, key) {
        (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
        _ => base.clone(),
    }
}

/// A check must end before the next one starts: `timeout` at most
/// `interval` (`what` is "health check", "probe"). The values are those in
/// effect; `written` are the keys as written here.
pub fn timeout_within_interval(
    what: &str,
    (interval, timeout): (Duration, Duration),
    written: (&Option<Spanned<String>>, &Option<Spanned<String>>),
    report: &mut Report<'_>,
) {
    if timeout <= interval {
        return;
    }
    // Blame a key written here and valid (a bad one is reported already);
    // if neither was, the mismatch is inherited and was reported where it
    // was made.
    let valid = |raw: &Option<Spanned<String>>| {
        raw.as_ref()
            .filter(|d| values::duration(d.get_ref()).is_ok())
            .map(Spanned::span)
    };
    let (raw_interval, raw_timeout) = written;
    if let Some(span) = valid(raw_timeout).or_else(|| valid(raw_interval)) {
        report
            .error(
                span,
                format!(
                    "the {what} timeout ({}) is longer than its interval ({})",
                    humantime::format_duration(timeout),
                    humantime::format_duration(interval)
                ),
            )
            .help("a check must end before the next one starts: make `timeout` at most `interval`");
    }
}

/// A key a table cannot do without: missing is an error at the table,
/// unless the key was written and reported already (a typo, a wrong type).
pub fn required<'r, T, U>(
    table: &RawTable<U>,
    value: &'r Option<Spanned<T>>,
    key: &'static str,
    who: &str,
    report: &mut Report<'_>,
) -> Option<&'r Spanned<T>> {
    if value.is_none() && !table.reported.contains(key) {
        report.error(
            table.span.clone(),
            format!("{who} is missing the required key `{key}`"),
        );
    }
    value.as_ref()
}

/// Entries named once each: the second of two is an error, with a note at
/// the first, and is dropped. An entry that is `None` (invalid, and told)
/// still holds its name.
pub fn unique<T>(
    entries: Vec<(Option<T>, Spanned<String>)>,
    what: &str,
    report: &mut Report<'_>,
) -> Vec<T> {
    let mut first: HashMap<String, Span> = HashMap::new();
    let mut out = Vec::new();
    for (entry, name) in entries {
        if let Some(earlier) = first.get(name.get_ref()) {
            let line = report.line_of(earlier.start);
            report
                .error(
                    name.span(),
                    format!("{what} \"{}\" is listed twice", name.get_ref()),
                )
                .note(format!("first listed at line {line}"))
                .help(format!("list each {what} once, with all its settings"));
            continue;
        }
        first.insert(name.get_ref().clone(), name.span());
        out.extend(entry);
    }
    out
}
