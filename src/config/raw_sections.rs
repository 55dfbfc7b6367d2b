//! The role sections (`balancer`, `web`, `db`, `storage`) as written, and the
//! tables nested in them (`tls`, `health`, `limits`, `backends`, `tcp`,
//! `access_log`). Shape only, like the rest of `raw`; `roles` and the
//! `*_settings` modules check the values.

use toml::Spanned;

use super::diagnostic::{Report, Span};
use super::raw::{DURATION, Fields, OrOff, PORT, RawSize, Reported, Table};

/// The per-role tables a node, a pattern or `[defaults]` may carry.
#[derive(Default)]
pub struct RawSections {
    pub balancer: Option<Section<RawBalancer>>,
    pub web: Option<Section<RawWeb>>,
    pub db: Option<Section<RawDb>>,
    pub storage: Option<Section<RawStorage>>,
}

pub struct Section<T> {
    /// The key (`balancer` in `balancer = { ... }`): where "this node has no
    /// balancer role" points.
    pub key_span: Span,
    pub fields: T,
    pub reported: Reported,
}

pub struct RawBalancer {
    pub priority: Option<Spanned<i64>>,
    pub http_port: Option<Spanned<i64>>,
    pub https_port: Option<Spanned<OrOff<i64>>>,
    pub tls: Option<RawTls>,
    pub algorithm: Option<Spanned<String>>,
    pub slow_start: Option<Spanned<String>>,
    pub health: Option<RawHealth>,
    pub limits: Option<RawLimits>,
    pub backends: Option<Spanned<Vec<RawBackend>>>,
    pub tcp: Option<Spanned<Vec<RawTcp>>>,
}

pub struct RawWeb {
    pub root: Option<Spanned<String>>,
    pub port: Option<Spanned<i64>>,
    pub tls_port: Option<Spanned<OrOff<i64>>>,
    pub tls: Option<RawTls>,
    pub access_log: Option<Spanned<RawAccessLog>>,
    pub follow_symlinks: Option<Spanned<bool>>,
    pub notes: Option<Spanned<RawNotes>>,
}

pub struct RawDb {
    pub initial_primary: Option<Spanned<bool>>,
}

pub struct RawStorage {
    pub brick: Option<Spanned<String>>,
}

/// A table written inline or as a `[...]` section, with the keys already
/// reported, so that a "missing key" error does not repeat a typo.
pub struct RawTable<T> {
    /// The table (or its header): where "missing key" errors point.
    pub span: Span,
    pub reported: Reported,
    pub fields: T,
}

/// `tls = { cert = "...", key = "..." }`.
pub type RawTls = RawTable<RawTlsFields>;

pub struct RawTlsFields {
    pub cert: Option<Spanned<String>>,
    pub key: Option<Spanned<String>>,
}

/// `access_log = "journal"`, or a table for a file.
pub enum RawAccessLog {
    Mode(String),
    File(RawTable<RawLogFile>),
}

/// `notes = { database = "app", ... }`, or `notes = false` to turn off on
/// one node what `[defaults.web]` turned on.
pub enum RawNotes {
    Off,
    App(RawTable<RawNotesFields>),
}

pub struct RawNotesFields {
    pub database: Option<Spanned<String>>,
    pub user: Option<Spanned<String>>,
    pub password_file: Option<Spanned<String>>,
    pub address: Option<Spanned<String>>,
}

pub struct RawLogFile {
    pub path: Option<Spanned<String>>,
    pub max_size: Option<Spanned<RawSize>>,
}

/// `health = { ... }`: of the HTTP balancer (every key), or of a tcp service
/// (no `path` or `expect`: it only connects).
#[derive(Default)]
pub struct RawHealth {
    pub path: Option<Spanned<String>>,
    pub expect: Option<Spanned<i64>>,
    pub interval: Option<Spanned<String>>,
    pub timeout: Option<Spanned<String>>,
    pub rise: Option<Spanned<i64>>,
    pub fall: Option<Spanned<i64>>,
    /// HTTP only: panic routing (`PoolSettings::panic`).
    pub panic: Option<Spanned<bool>>,
}

/// `limits = { ... }`: of the HTTP balancer (every key), or of a tcp service
/// (no request heads or bodies, so only the connection limits).
#[derive(Default)]
pub struct RawLimits {
    pub maxconn: Option<Spanned<i64>>,
    pub queue: Option<Spanned<i64>>,
    pub queue_timeout: Option<Spanned<String>>,
    pub header_timeout: Option<Spanned<String>>,
    pub connect_timeout: Option<Spanned<String>>,
    pub server_timeout: Option<Spanned<String>>,
    pub tcp_user_timeout: Option<Spanned<String>>,
    pub idle_timeout: Option<Spanned<String>>,
    pub max_header_size: Option<Spanned<RawSize>>,
    pub max_body_size: Option<Spanned<OrOff<RawSize>>>,
}

/// One `backends` entry: `{ address = "192.0.2.50:8080", weight = 1 }`.
pub type RawBackend = RawTable<RawBackendFields>;

pub struct RawBackendFields {
    pub address: Option<Spanned<String>>,
    pub weight: Option<Spanned<i64>>,
}

/// One `[[defaults.balancer.tcp]]` service.
pub type RawTcp = RawTable<RawTcpFields>;

pub struct RawTcpFields {
    pub name: Option<Spanned<String>>,
    pub port: Option<Spanned<i64>>,
    pub backends: Option<Spanned<Vec<RawBackend>>>,
    pub algorithm: Option<Spanned<String>>,
    pub health: Option<RawHealth>,
    pub limits: Option<RawLimits>,
}

/// Which proxy a `health` or `limits` table belongs to.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Proxy {
    Http,
    Tcp,
}

pub(super) const TLS_EXAMPLE: &str =
    "{ cert = \"/etc/piha/tls/cert.pem\", key = \"/etc/piha/tls/key.pem\" }";
const BACKEND_EXAMPLE: &str = "{ address = \"192.0.2.50:8080\", weight = 1 }";
const TCP_EXAMPLE: &str = "{ name = \"redis\", port = 6379, backends = [...] }";
const ALGORITHM: &str = "an algorithm name in quotes, like \"roundrobin\"";

pub(super) fn read_sections(f: &mut Fields<'_, '_, '_, '_>) -> RawSections {
    let balancer = f.table("balancer").map(|t| {
        let s = Fields::new(t.table, "the `balancer` section", f.report);
        section(t.key_span, s, read_balancer)
    });
    let web = f.table("web").map(|t| {
        let s = Fields::new(t.table, "the `web` section", f.report);
        section(t.key_span, s, read_web)
    });
    let db = f.table("db").map(|t| {
        let s = Fields::new(t.table, "the `db` section", f.report);
        section(t.key_span, s, |s| RawDb {
            initial_primary: s.boolean("initial_primary"),
        })
    });
    let storage = f.table("storage").map(|t| {
        let s = Fields::new(t.table, "the `storage` section", f.report);
        section(t.key_span, s, |s| RawStorage {
            brick: s.string(
                "brick",
                "a directory path in quotes, like \"/srv/piha/brick\"",
            ),
        })
    });
    RawSections {
        balancer,
        web,
        db,
        storage,
    }
}

fn section<T>(
    key_span: Span,
    mut s: Fields<'_, '_, '_, '_>,
    read: impl FnOnce(&mut Fields<'_, '_, '_, '_>) -> T,
) -> Section<T> {
    let fields = read(&mut s);
    Section {
        key_span,
        fields,
        reported: s.finish(),
    }
}

/// Reads one nested table with `read`, then reports its unknown keys.
pub(super) fn nested<T>(
    t: Table<'_, '_>,
    context: &'static str,
    report: &mut Report<'_>,
    read: impl FnOnce(&mut Fields<'_, '_, '_, '_>) -> T,
) -> RawTable<T> {
    let mut s = Fields::new(t.table, context, report);
    let fields = read(&mut s);
    RawTable {
        span: t.span,
        reported: s.finish(),
        fields,
    }
}

fn read_balancer(s: &mut Fields<'_, '_, '_, '_>) -> RawBalancer {
    RawBalancer {
        priority: s.integer("priority", "a VRRP priority from 1 to 254"),
        http_port: s.integer("http_port", PORT),
        https_port: s.port_or_off("https_port"),
        tls: s
            .inline_table("tls", TLS_EXAMPLE)
            .map(|t| read_tls(t, "`balancer.tls`", s.report)),
        algorithm: s.string("algorithm", ALGORITHM),
        slow_start: s.string("slow_start", DURATION),
        health: s
            .inline_table("health", "{ path = \"/health\", interval = \"1s\" }")
            .map(|t| read_health(t, Proxy::Http, s.report)),
        limits: s
            .inline_table("limits", "{ maxconn = 256, queue = 1024 }")
            .map(|t| read_limits(t, Proxy::Http, s.report)),
        backends: s
            .table_list("backends", BACKEND_EXAMPLE)
            .map(|list| read_backends(list, "a `balancer.backends` entry", s.report)),
        tcp: s.table_list("tcp", TCP_EXAMPLE).map(|list| {
            let span = list.span();
            let services = list.into_inner().into_iter();
            Spanned::new(span, services.map(|t| read_tcp(t, s.report)).collect())
        }),
    }
}

fn read_web(s: &mut Fields<'_, '_, '_, '_>) -> RawWeb {
    RawWeb {
        root: s.string("root", "a directory path in quotes, like \"/srv/piha/www\""),
        port: s.integer("port", PORT),
        tls_port: s.port_or_off("tls_port"),
        tls: s
            .inline_table("tls", TLS_EXAMPLE)
            .map(|t| read_tls(t, "`web.tls`", s.report)),
        access_log: read_access_log(s),
        follow_symlinks: s.boolean("follow_symlinks"),
        notes: read_notes(s),
    }
}

pub(super) fn read_tls(t: Table<'_, '_>, context: &'static str, report: &mut Report<'_>) -> RawTls {
    let file = "a file path in quotes, like \"/etc/piha/tls/cert.pem\"";
    nested(t, context, report, |s| RawTlsFields {
        cert: s.string("cert", file),
        key: s.string("key", file),
    })
}

/// `"off"`, `"journal"` or `{ path = "...", max_size = "16MiB" }`.
fn read_access_log(s: &mut Fields<'_, '_, '_, '_>) -> Option<Spanned<RawAccessLog>> {
    let value = s.get("access_log")?;
    let span = value.span();
    if let Some(mode) = value.get_ref().as_str() {
        return Some(Spanned::new(span, RawAccessLog::Mode(mode.to_string())));
    }
    let Some(table) = value.get_ref().as_table() else {
        let expected =
            "\"off\", \"journal\" or a table like { path = \"/var/log/piha/access.log\" }";
        s.wrong_type("access_log", value, expected);
        return None;
    };
    let t = Table {
        table,
        span: span.clone(),
        key_span: span.clone(),
    };
    let file = nested(t, "`web.access_log`", s.report, |f| RawLogFile {
        path: f.string(
            "path",
            "a file path in quotes, like \"/var/log/piha/access.log\"",
        ),
        max_size: f.size("max_size"),
    });
    Some(Spanned::new(span, RawAccessLog::File(file)))
}

pub(super) const NOTES_EXAMPLE: &str =
    "{ database = \"app\", user = \"app\", password_file = \"/etc/piha/notes-password\" }";

/// `false` or `{ database = "app", user = "app", password_file = "..." }`.
fn read_notes(s: &mut Fields<'_, '_, '_, '_>) -> Option<Spanned<RawNotes>> {
    let value = s.get("notes")?;
    let span = value.span();
    if let Some(false) = value.get_ref().as_bool() {
        return Some(Spanned::new(span, RawNotes::Off));
    }
    let Some(table) = value.get_ref().as_table() else {
        let expected = format!("a table like notes = {NOTES_EXAMPLE}, or false");
        let d = s.wrong_type("notes", value, &expected);
        if value.get_ref().as_bool() == Some(true) {
            d.help("the app needs a database login: write it as a table");
        }
        return None;
    };
    let t = Table {
        table,
        span: span.clone(),
        key_span: span.clone(),
    };
    let name = "a PostgreSQL name in quotes, like \"app\"";
    let app = nested(t, "`web.notes`", s.report, |f| RawNotesFields {
        database: f.string("database", name),
        user: f.string("user", name),
        password_file: f.string(
            "password_file",
            "a file path in quotes, like \"/etc/piha/notes-password\"",
        ),
        address: f.string(
            "address",
            "an IP address and port in quotes, like \"192.0.2.10:5432\"",
        ),
    });
    Some(Spanned::new(span, RawNotes::App(app)))
}

fn read_health(t: Table<'_, '_>, proxy: Proxy, report: &mut Report<'_>) -> RawHealth {
    let context = match proxy {
        Proxy::Http => "`balancer.health`",
        Proxy::Tcp => "the `health` of a tcp service",
    };
    let count = "a whole number from 1 to 100";
    let mut s = Fields::new(t.table, context, report);
    let mut health = RawHealth::default();
    if proxy == Proxy::Http {
        health.path = s.string("path", "a URL path in quotes, like \"/health\"");
        health.expect = s.integer("expect", "an HTTP status like 200");
        health.panic = s.boolean("panic");
    } else {
        for key in ["path", "expect", "panic"] {
            s.refuse(
                key,
                &format!("`{key}`: a tcp service's health check only opens a connection; `{key}` is for `balancer.health`"),
            );
        }
    }
    health.interval = s.string("interval", DURATION);
    health.timeout = s.string("timeout", DURATION);
    health.rise = s.integer("rise", count);
    health.fall = s.integer("fall", count);
    s.finish();
    health
}

fn read_limits(t: Table<'_, '_>, proxy: Proxy, report: &mut Report<'_>) -> RawLimits {
    let context = match proxy {
        Proxy::Http => "`balancer.limits`",
        Proxy::Tcp => "the `limits` of a tcp service",
    };
    let mut s = Fields::new(t.table, context, report);
    let mut limits = RawLimits {
        maxconn: s.integer("maxconn", "a number of connections like 256"),
        queue: s.integer("queue", "a queue length like 1024"),
        queue_timeout: s.string("queue_timeout", DURATION),
        connect_timeout: s.string("connect_timeout", DURATION),
        idle_timeout: s.string("idle_timeout", DURATION),
        ..RawLimits::default()
    };
    if proxy == Proxy::Http {
        limits.header_timeout = s.string("header_timeout", DURATION);
        limits.server_timeout = s.string("server_timeout", DURATION);
        limits.tcp_user_timeout = s.string("tcp_user_timeout", DURATION);
        limits.max_header_size = s.size("max_header_size");
        limits.max_body_size = s.size_or_off("max_body_size");
    } else {
        let why = "a tcp service passes bytes through and never reads requests; \
                   this limit is for `balancer.limits`";
        for key in [
            "header_timeout",
            "server_timeout",
            "max_header_size",
            "max_body_size",
        ] {
            s.refuse(key, &format!("`{key}`: {why}"));
        }
        s.refuse(
            "tcp_user_timeout",
            "`tcp_user_timeout`: a tcp service's connections keep plain keepalive probes, \
             since a stream held back by its reader is normal there; \
             this limit is for `balancer.limits`",
        );
    }
    s.finish();
    limits
}

fn read_backends(
    list: Spanned<Vec<Table<'_, '_>>>,
    context: &'static str,
    report: &mut Report<'_>,
) -> Spanned<Vec<RawBackend>> {
    let span = list.span();
    let backends = list
        .into_inner()
        .into_iter()
        .map(|t| {
            nested(t, context, report, |s| RawBackendFields {
                address: s.string(
                    "address",
                    "an IP address and port in quotes, like \"192.0.2.50:8080\"",
                ),
                weight: s.integer("weight", "a weight from 1 to 256"),
            })
        })
        .collect();
    Spanned::new(span, backends)
}

fn read_tcp(t: Table<'_, '_>, report: &mut Report<'_>) -> RawTcp {
    nested(t, "a `balancer.tcp` service", report, |s| RawTcpFields {
        name: s.string("name", "a service name in quotes, like \"redis\""),
        port: s.integer("port", PORT),
        backends: s
            .table_list("backends", BACKEND_EXAMPLE)
            .map(|list| read_backends(list, "a tcp service's `backends` entry", s.report)),
        algorithm: s.string("algorithm", ALGORITHM),
        health: s
            .inline_table("health", "{ interval = \"1s\", timeout = \"1s\" }")
            .map(|t| read_health(t, Proxy::Tcp, s.report)),
        limits: s
            .inline_table("limits", "{ maxconn = 256 }")
            .map(|t| read_limits(t, Proxy::Tcp, s.report)),
    })
}
