//! The `web` role section over the settings below it: document root, ports,
//! certificate, access log, the notes demo app.

use std::net::SocketAddr;

use toml::Spanned;

use super::diagnostic::Report;
use super::model::{AccessLog, NotesSettings, WebSettings};
use super::overlay::{field, port, port_or_off, required, tls_files};
use super::raw::{
    OrOff, RawAccessLog, RawFile, RawLogFile, RawNotes, RawNotesFields, RawPostgres, RawTable,
    RawWeb, Section,
};
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
        notes: notes(&f.notes, &base.notes, report),
    }
}

/// `notes = false`, or a table that replaces the app's login below as a
/// whole: a user from one level with the password of another would be a
/// login nobody wrote.
fn notes(
    raw: &Option<Spanned<RawNotes>>,
    base: &Option<NotesSettings>,
    report: &mut Report<'_>,
) -> Option<NotesSettings> {
    let Some(raw) = raw else {
        return base.clone();
    };
    let table = match raw.get_ref() {
        RawNotes::Off => return None,
        RawNotes::App(table) => table,
    };
    let f = &table.fields;
    let who = "the `notes` table";
    let mut name = |raw: &Option<Spanned<String>>, key: &'static str, what: &str| {
        let value = required(table, raw, key, who, report)?;
        match values::pg_name(value.get_ref(), what) {
            Ok(()) => Some(value.get_ref().clone()),
            Err(why) => {
                report.error(value.span(), why);
                None
            }
        }
    };
    let database = name(&f.database, "database", "a database name");
    let user = name(&f.user, "user", "a user name");
    let password_file = required(table, &f.password_file, "password_file", who, report)
        .and_then(|file| {
            values::absolute_file(file.get_ref())
                .map_err(|why| {
                    report
                        .error(file.span(), format!("`password_file`: {why}"))
                        .help("the file holding the notes user's PostgreSQL password, like \"/etc/piha/notes-password\"");
                })
                .ok()
        });
    let address = notes_address(f, report);
    Some(NotesSettings {
        database: database?,
        user: user?,
        password_file: password_file?,
        address: address.ok()?,
    })
}

/// `Ok(None)` when not written (the pooler on the VIP); `Err` when written
/// wrong (and told).
fn notes_address(f: &RawNotesFields, report: &mut Report<'_>) -> Result<Option<SocketAddr>, ()> {
    let Some(raw) = &f.address else {
        return Ok(None);
    };
    values::socket_address(raw.get_ref(), 5432)
        .map(Some)
        .map_err(|why| {
            report
                .error(raw.span(), why)
                .help("leave `address` out to use the pooler on the VIP");
        })
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

/// What the notes app's default connection depends on outside `web`: the
/// pooler on the VIP needs a `vip`, and lets in only the `[postgres]` users
/// (or whoever `auth_query` finds). Checked at every `notes` table written,
/// since each one stands alone.
pub fn notes_reach_the_pooler(raw: &RawFile, vip_written: bool, report: &mut Report<'_>) {
    let sections = std::iter::once(&raw.defaults.sections)
        .chain(raw.nodes.iter().map(|n| &n.sections))
        .chain(raw.patterns.iter().map(|p| &p.sections));
    for sections in sections {
        let notes = sections.web.as_ref().and_then(|w| w.fields.notes.as_ref());
        let Some(RawNotes::App(table)) = notes.map(Spanned::get_ref) else {
            continue;
        };
        if table.fields.address.is_some() || table.reported.contains("address") {
            continue;
        }
        if !vip_written {
            report
                .error(
                    table.span.clone(),
                    "the notes app connects to the pooler on the cluster's VIP, but [cluster] has no `vip`",
                )
                .help("add address = \"192.0.2.10:5432\" to `notes` (a PostgreSQL or pooler to use)");
            // Without a VIP there is no pooler to be let into either.
            continue;
        }
        if let Some(user) = &table.fields.user {
            if !pooler_lets_in(raw.postgres.as_ref(), user.get_ref()) {
                report
                    .error(
                        user.span(),
                        format!(
                            "user \"{}\" cannot log in through the pooler: it is not one of the [postgres] `users`",
                            user.get_ref()
                        ),
                    )
                    .help(format!(
                        "add {{ name = \"{}\", secret = \"SCRAM-SHA-256$...\" }} to [postgres] users, or set `address` to reach PostgreSQL another way",
                        user.get_ref()
                    ));
            }
        }
    }
}

/// Whether the pooler could accept `user`: listed, looked up by
/// `auth_query`, or its own service login (which logs in with its
/// password). A list or query written wrong is reported already, so it
/// counts as yes here rather than a second error.
fn pooler_lets_in(postgres: Option<&RawPostgres>, user: &str) -> bool {
    let Some(pg) = postgres else {
        return false;
    };
    if pg.reported.contains("users") || pg.reported.contains("auth_query") {
        return true;
    }
    if matches!(
        pg.auth_query.as_ref().map(Spanned::get_ref),
        Some(OrOff::On(_))
    ) {
        return true;
    }
    let service = pg.service.as_ref().and_then(|s| s.fields.user.as_ref());
    if service.is_some_and(|s| s.get_ref() == user) {
        return true;
    }
    pg.users.as_ref().is_some_and(|users| {
        users.get_ref().iter().any(|u| {
            u.reported.contains("name")
                || u.fields.name.as_ref().is_some_and(|n| n.get_ref() == user)
        })
    })
}
