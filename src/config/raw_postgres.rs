//! The cluster-wide `[postgres]` section as written: the pooler's ports,
//! pools, timeouts, TLS, extra servers, its own login and the users it lets
//! in. Shape only, like the rest of `raw`; `postgres_settings` checks the
//! values.

use toml::Spanned;
use toml::de::DeValue;

use super::diagnostic::Report;
use super::raw::{DURATION, Fields, OrOff, PORT, RawSize, Reported, Table};
use super::raw_sections::{RawTable, RawTls, TLS_EXAMPLE, nested, read_tls};

pub struct RawPostgres {
    /// Keys written but reported already (a typo, a wrong type), so that
    /// "`auth_query` needs `service`" does not follow a misspelt `service`.
    pub reported: Reported,
    pub port: Option<Spanned<i64>>,
    pub server_port: Option<Spanned<i64>>,
    pub pool_mode: Option<Spanned<String>>,
    pub pool_size: Option<Spanned<i64>>,
    pub min_pool_size: Option<Spanned<i64>>,
    pub max_client_conn: Option<Spanned<i64>>,
    pub max_wait_clients: Option<Spanned<i64>>,
    pub wait_timeout: Option<Spanned<String>>,
    pub server_idle_timeout: Option<Spanned<String>>,
    pub server_lifetime: Option<Spanned<String>>,
    pub login_timeout: Option<Spanned<String>>,
    pub tcp_user_timeout: Option<Spanned<String>>,
    pub client_tcp_user_timeout: Option<Spanned<String>>,
    pub max_message_size: Option<Spanned<RawSize>>,
    pub max_lag: Option<Spanned<RawSize>>,
    pub read_your_writes: Option<Spanned<bool>>,
    pub tls: Option<Spanned<RawPgTls>>,
    pub server_tls: Option<Spanned<bool>>,
    pub backends: Option<Spanned<Vec<Spanned<String>>>>,
    pub service: Option<RawService>,
    /// The query, or `false` (off).
    pub auth_query: Option<Spanned<OrOff<String>>>,
    pub users: Option<Spanned<Vec<RawPgUser>>>,
    pub databases: Option<Spanned<Vec<RawPgDatabase>>>,
    pub probe: Option<RawTable<RawProbe>>,
}

/// `tls = true`, `tls = false` or `tls = { cert = "...", key = "..." }`.
pub enum RawPgTls {
    Switch(bool),
    Files(RawTls),
}

/// `service = { user = "piha", database = "postgres", keys = "..." }`.
pub type RawService = RawTable<RawServiceFields>;

pub struct RawServiceFields {
    pub user: Option<Spanned<String>>,
    pub database: Option<Spanned<String>>,
    pub keys: Option<Spanned<String>>,
}

/// One `users` entry: `{ name = "app", secret = "SCRAM-SHA-256$...", pool_mode = "session" }`.
pub type RawPgUser = RawTable<RawPgUserFields>;

pub struct RawPgUserFields {
    pub name: Option<Spanned<String>>,
    pub secret: Option<Spanned<String>>,
    pub pool_mode: Option<Spanned<String>>,
}

/// One `databases` entry: `{ name = "app", pool_mode = "transaction", pool_size = 10 }`.
pub type RawPgDatabase = RawTable<RawPgDatabaseFields>;

pub struct RawPgDatabaseFields {
    pub name: Option<Spanned<String>>,
    pub pool_mode: Option<Spanned<String>>,
    pub pool_size: Option<Spanned<i64>>,
}

/// `probe = { interval = "1s", timeout = "1s", fall = 3 }`.
pub struct RawProbe {
    pub interval: Option<Spanned<String>>,
    pub timeout: Option<Spanned<String>>,
    pub fall: Option<Spanned<i64>>,
}

const POOL_MODE: &str = "\"transaction\" or \"session\"";
const CONNECTIONS: &str = "a number of connections like 20";
const PG_NAME: &str = "a name in quotes, like \"app\"";
const USER_EXAMPLE: &str = "{ name = \"app\", secret = \"SCRAM-SHA-256$4096:...\" }";
const DATABASE_EXAMPLE: &str = "{ name = \"app\", pool_size = 10 }";
const SERVICE_EXAMPLE: &str = "{ user = \"piha\", keys = \"SCRAM-SHA-256$4096:...\" }";

pub(super) fn read_postgres(t: Table<'_, '_>, report: &mut Report<'_>) -> RawPostgres {
    let mut f = Fields::new(t.table, "[postgres]", report);
    let mut pg = RawPostgres {
        reported: Reported::default(),
        port: f.integer("port", PORT),
        server_port: f.integer("server_port", PORT),
        pool_mode: f.string("pool_mode", POOL_MODE),
        pool_size: f.integer("pool_size", CONNECTIONS),
        min_pool_size: f.integer("min_pool_size", CONNECTIONS),
        max_client_conn: f.integer("max_client_conn", "a number of connections like 2000"),
        max_wait_clients: f.integer("max_wait_clients", "a number of clients like 2000"),
        wait_timeout: f.string("wait_timeout", DURATION),
        server_idle_timeout: f.string("server_idle_timeout", DURATION),
        server_lifetime: f.string("server_lifetime", DURATION),
        login_timeout: f.string("login_timeout", DURATION),
        tcp_user_timeout: f.string("tcp_user_timeout", DURATION),
        client_tcp_user_timeout: f.string("client_tcp_user_timeout", DURATION),
        max_message_size: f.size("max_message_size"),
        max_lag: f.size("max_lag"),
        read_your_writes: f.boolean("read_your_writes"),
        tls: read_pg_tls(&mut f),
        server_tls: f.boolean("server_tls"),
        backends: f.string_array(
            "backends",
            "a list of addresses, like [\"192.0.2.50:5432\"]",
            "an IP address and port in quotes, like \"192.0.2.50:5432\"",
        ),
        service: f.inline_table("service", SERVICE_EXAMPLE).map(|t| {
            nested(t, "`postgres.service`", f.report, |s| RawServiceFields {
                user: s.string("user", PG_NAME),
                database: s.string("database", "a database name in quotes, like \"postgres\""),
                keys: s.string("keys", "the keys `piha pg-secret` prints, in quotes"),
            })
        }),
        auth_query: read_auth_query(&mut f),
        users: f.table_list("users", USER_EXAMPLE).map(|list| {
            let span = list.span();
            let users = list.into_inner().into_iter().map(|t| {
                nested(t, "a `postgres.users` entry", f.report, |s| {
                    RawPgUserFields {
                        name: s.string("name", PG_NAME),
                        secret: s.string(
                            "secret",
                            "a SCRAM-SHA-256 verifier or an md5 hash in quotes",
                        ),
                        pool_mode: s.string("pool_mode", POOL_MODE),
                    }
                })
            });
            Spanned::new(span, users.collect())
        }),
        databases: f.table_list("databases", DATABASE_EXAMPLE).map(|list| {
            let span = list.span();
            let databases = list.into_inner().into_iter().map(|t| {
                nested(t, "a `postgres.databases` entry", f.report, |s| {
                    RawPgDatabaseFields {
                        name: s.string("name", PG_NAME),
                        pool_mode: s.string("pool_mode", POOL_MODE),
                        pool_size: s.integer("pool_size", CONNECTIONS),
                    }
                })
            });
            Spanned::new(span, databases.collect())
        }),
        probe: f
            .inline_table("probe", "{ interval = \"1s\", timeout = \"1s\", fall = 3 }")
            .map(|t| {
                nested(t, "`postgres.probe`", f.report, |s| RawProbe {
                    interval: s.string("interval", DURATION),
                    timeout: s.string("timeout", DURATION),
                    fall: s.integer("fall", "a whole number from 1 to 100"),
                })
            }),
    };
    pg.reported = f.finish();
    pg
}

/// `true` (the node's own certificate), `false`, or a table of files.
fn read_pg_tls(f: &mut Fields<'_, '_, '_, '_>) -> Option<Spanned<RawPgTls>> {
    let value = f.get("tls")?;
    let span = value.span();
    match value.get_ref() {
        DeValue::Boolean(b) => Some(Spanned::new(span, RawPgTls::Switch(*b))),
        DeValue::Table(table) => {
            let t = Table {
                table,
                span: span.clone(),
                key_span: span.clone(),
            };
            let files = read_tls(t, "`postgres.tls`", f.report);
            Some(Spanned::new(span, RawPgTls::Files(files)))
        }
        _ => {
            let expected =
                format!("true (the node's own certificate), false, or a table like {TLS_EXAMPLE}");
            f.wrong_type("tls", value, &expected);
            None
        }
    }
}

/// `auth_query = "SELECT ... $1"`, or `false` for off.
fn read_auth_query(f: &mut Fields<'_, '_, '_, '_>) -> Option<Spanned<OrOff<String>>> {
    let value = f.get("auth_query")?;
    let span = value.span();
    match value.get_ref() {
        DeValue::String(s) => Some(Spanned::new(span, OrOff::On(s.to_string()))),
        DeValue::Boolean(false) => Some(Spanned::new(span, OrOff::Off)),
        other => {
            let expected = "an SQL query in quotes with $1 for the user name, or false";
            let on = matches!(other, DeValue::Boolean(true));
            let d = f.wrong_type("auth_query", value, expected);
            if on {
                d.help("there is no built-in query: write the one to run, like auth_query = \"SELECT rolpassword FROM pg_catalog.pg_authid WHERE rolname = $1\"");
            }
            None
        }
    }
}
