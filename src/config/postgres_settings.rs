//! The cluster-wide `[postgres]` section over the built-in values: the
//! pooler's ports, pools and timeouts, TLS, extra servers, its own login,
//! and the users and databases it knows. Secrets are checked here, when the
//! file is loaded, and never shown in a message: the error points at one and
//! says what is wrong with it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use toml::Spanned;

use crate::pg::auth::{ScramKeys, Secret};

use super::diagnostic::{Report, Span};
use super::model::*;
use super::overlay::{
    count, duration, field, port, required, timeout_within_interval, tls_files, unique,
};
use super::raw::{
    OrOff, RawPgDatabase, RawPgTls, RawPgUser, RawPostgres, RawProbe, RawService, RawTable,
};
use super::validate::NodeFacts;
use super::values;

/// Server connections per database and user on one backend: PostgreSQL's
/// own `max_connections` is far below this on a Pi.
const MAX_POOL: u32 = 10_000;
/// A Pi runs out of memory and file descriptors long before this.
const MAX_CLIENTS: u32 = 1_000_000;
const FALL: std::ops::RangeInclusive<u32> = 1..=100;
/// `max_message_size`: below 1 KiB ordinary queries would not fit; above
/// 1 GiB is beyond PostgreSQL's own limit.
const MIN_MESSAGE: u64 = 1 << 10;
const MAX_MESSAGE: u64 = 1 << 30;
/// The port in the examples of an address message.
const PG_PORT: u16 = 5432;

pub fn postgres(
    raw: Option<&RawPostgres>,
    nodes: &[NodeFacts<'_>],
    report: &mut Report<'_>,
) -> PostgresSettings {
    let base = PostgresSettings::default();
    let Some(raw) = raw else {
        return base;
    };
    let pools = pools(raw, &base, report);
    let server_port = port(&raw.server_port, base.server_port, report);
    let message_size = |s: &_| {
        let bytes = values::size_in(s, MIN_MESSAGE, Some(MAX_MESSAGE), "max_message_size")?;
        u32::try_from(bytes).map_err(|_| "`max_message_size` is too large".to_string())
    };
    let lag = |s: &_| values::size_in(s, 0, None, "max_lag");
    let flag =
        |raw: &Option<Spanned<bool>>, base: bool| raw.as_ref().map_or(base, |b| *b.get_ref());
    let service = service(raw.service.as_ref(), report);
    let auth_query = auth_query(raw, report);
    let databases = databases(raw.databases.as_ref(), &pools, report);
    PostgresSettings {
        port: port(&raw.port, base.port, report),
        server_port,
        pool_mode: field(
            &raw.pool_mode,
            &base.pool_mode,
            |t| values::pool_mode(t),
            report,
        ),
        pool_size: pools.pool_size,
        min_pool_size: pools.min_pool_size,
        max_client_conn: pools.max_client_conn,
        max_wait_clients: pools.max_wait_clients,
        wait_timeout: duration(&raw.wait_timeout, base.wait_timeout, report),
        server_idle_timeout: duration(&raw.server_idle_timeout, base.server_idle_timeout, report),
        server_lifetime: duration(&raw.server_lifetime, base.server_lifetime, report),
        login_timeout: duration(&raw.login_timeout, base.login_timeout, report),
        tcp_user_timeout: field(
            &raw.tcp_user_timeout,
            &base.tcp_user_timeout,
            |t| values::tcp_user_timeout(t, "tcp_user_timeout"),
            report,
        ),
        client_tcp_user_timeout: field(
            &raw.client_tcp_user_timeout,
            &base.client_tcp_user_timeout,
            |t| values::tcp_user_timeout(t, "client_tcp_user_timeout"),
            report,
        ),
        max_message_bytes: field(
            &raw.max_message_size,
            &base.max_message_bytes,
            message_size,
            report,
        ),
        max_lag_bytes: field(&raw.max_lag, &base.max_lag_bytes, lag, report),
        read_your_writes: flag(&raw.read_your_writes, base.read_your_writes),
        tls: tls(&raw.tls, report),
        server_tls: flag(&raw.server_tls, base.server_tls),
        backends: backends(raw, server_port, nodes, report),
        service,
        auth_query,
        users: users(raw.users.as_ref(), report),
        databases,
        probe: probe(raw.probe.as_ref(), report),
    }
}

/// The pool and client limits, and the two rules between them.
struct Pools {
    pool_size: u32,
    min_pool_size: u32,
    max_client_conn: u32,
    max_wait_clients: u32,
    /// `min_pool_size` is the value written (or built in), not a stand-in
    /// for a refused one: only then is it compared with a database's pool.
    min_is_real: bool,
}

fn pools(raw: &RawPostgres, base: &PostgresSettings, report: &mut Report<'_>) -> Pools {
    let min_pool_size = count(
        &raw.min_pool_size,
        base.min_pool_size,
        ("min_pool_size", 0..=MAX_POOL),
        report,
    );
    let pools = Pools {
        pool_size: count(
            &raw.pool_size,
            base.pool_size,
            ("pool_size", 1..=MAX_POOL),
            report,
        ),
        min_pool_size,
        max_client_conn: count(
            &raw.max_client_conn,
            base.max_client_conn,
            ("max_client_conn", 1..=MAX_CLIENTS),
            report,
        ),
        max_wait_clients: count(
            &raw.max_wait_clients,
            base.max_wait_clients,
            ("max_wait_clients", 0..=MAX_CLIENTS),
            report,
        ),
        min_is_real: in_effect(&raw.min_pool_size, min_pool_size),
    };
    at_most(
        ("min_pool_size", pools.min_pool_size, &raw.min_pool_size),
        ("pool_size", pools.pool_size, &raw.pool_size),
        "the pooler keeps `min_pool_size` connections open out of the `pool_size` it may open",
        report,
    );
    at_most(
        (
            "max_wait_clients",
            pools.max_wait_clients,
            &raw.max_wait_clients,
        ),
        (
            "max_client_conn",
            pools.max_client_conn,
            &raw.max_client_conn,
        ),
        "only connected clients can wait: make `max_wait_clients` at most `max_client_conn`",
        report,
    );
    pools
}

/// A count key as written and the value in effect.
type Limit<'r> = (&'static str, u32, &'r Option<Spanned<i64>>);

/// `small` must not be above `large`. Told at the smaller key if it was
/// written here, else at the larger one; not at all when either value is a
/// stand-in for one refused already (the comparison would be made up).
fn at_most(small: Limit<'_>, large: Limit<'_>, help: &str, report: &mut Report<'_>) {
    let (small_key, small_value, small_raw) = small;
    let (large_key, large_value, large_raw) = large;
    if small_value <= large_value
        || !in_effect(small_raw, small_value)
        || !in_effect(large_raw, large_value)
    {
        return;
    }
    let Some(span) = small_raw.as_ref().or(large_raw.as_ref()).map(Spanned::span) else {
        return;
    };
    report
        .error(
            span,
            format!("`{small_key}` ({small_value}) is larger than `{large_key}` ({large_value})"),
        )
        .help(help);
}

/// Whether the value in effect is the one written (true when none was).
fn in_effect(raw: &Option<Spanned<i64>>, value: u32) -> bool {
    raw.as_ref()
        .is_none_or(|n| *n.get_ref() == i64::from(value))
}

fn tls(raw: &Option<Spanned<RawPgTls>>, report: &mut Report<'_>) -> PgTls {
    match raw.as_ref().map(Spanned::get_ref) {
        None | Some(RawPgTls::Switch(false)) => PgTls::Off,
        Some(RawPgTls::Switch(true)) => PgTls::NodeCert,
        Some(RawPgTls::Files(files)) => {
            tls_files(Some(files), &None, report).map_or(PgTls::Off, PgTls::Files)
        }
    }
}

/// Extra PostgreSQL servers, each once, and none that is a db node already
/// (it would be probed and counted twice).
fn backends(
    raw: &RawPostgres,
    server_port: u16,
    nodes: &[NodeFacts<'_>],
    report: &mut Report<'_>,
) -> Vec<SocketAddr> {
    let Some(list) = &raw.backends else {
        return Vec::new();
    };
    let db_nodes: Vec<(SocketAddr, String)> = nodes
        .iter()
        .filter(|n| n.roles.contains(&Role::Db))
        .filter_map(|n| Some((SocketAddr::new(n.net?.addr(), server_port), n.label())))
        .collect();
    let server_port_is_real = raw
        .server_port
        .as_ref()
        .is_none_or(|p| *p.get_ref() == i64::from(server_port));
    let mut first: HashMap<SocketAddr, Span> = HashMap::new();
    let mut out = Vec::new();
    for text in list.get_ref() {
        let address = match values::socket_address(text.get_ref(), PG_PORT) {
            Ok(a) => a,
            Err(why) => {
                report.error(text.span(), why);
                continue;
            }
        };
        if let Some(earlier) = first.get(&address) {
            let line = report.line_of(earlier.start);
            report
                .error(text.span(), format!("backend {address} is listed twice"))
                .note(format!("first listed at line {line}"))
                .help("list each PostgreSQL server once");
            continue;
        }
        first.insert(address, text.span());
        let node = db_nodes.iter().find(|(a, _)| *a == address);
        if let (Some((_, label)), true) = (node, server_port_is_real) {
            report
                .error(
                    text.span(),
                    format!("backend {address} is the PostgreSQL of {label}, which the pooler uses already"),
                )
                .help("`backends` is for PostgreSQL servers outside the cluster; the db nodes are found by their role");
            continue;
        }
        out.push(address);
    }
    out
}

/// The pooler's own login; `None` unless every part of it is valid.
fn service(raw: Option<&RawService>, report: &mut Report<'_>) -> Option<ServiceLogin> {
    let raw = raw?;
    let f = &raw.fields;
    let who = "`postgres.service`";
    let user = required(raw, &f.user, "user", who, report)
        .and_then(|u| checked_name(u, "the service user name", report));
    let database = match &f.database {
        None => Some("postgres".to_string()),
        Some(d) => checked_name(d, "the service database name", report),
    };
    let keys = required(raw, &f.keys, "keys", who, report).and_then(|k| {
        match ScramKeys::parse(k.get_ref()) {
            Ok(_) => Some(k.get_ref().clone()),
            Err(why) => {
                report
                    .error(k.span(), format!("the service `keys` are not valid: {why}"))
                    .help("make them with `piha pg-secret --user NAME`, which also prints the ALTER ROLE statement for PostgreSQL");
                None
            }
        }
    });
    Some(ServiceLogin {
        user: user?,
        database: database?,
        keys: keys?,
    })
}

/// A query with `$1`, run as the service login: without one it cannot run.
fn auth_query(raw: &RawPostgres, report: &mut Report<'_>) -> Option<String> {
    let query = raw.auth_query.as_ref()?;
    let OrOff::On(text) = query.get_ref() else {
        return None;
    };
    let checked = values::auth_query(text)
        .map_err(|why| {
            report.error(query.span(), why).help(
                "e.g. auth_query = \"SELECT rolpassword FROM pg_catalog.pg_authid WHERE rolname = $1\"",
            );
        })
        .ok();
    if raw.service.is_none() && !raw.reported.contains("service") {
        report
            .error(
                query.span(),
                "`auth_query` needs `service`: the pooler runs the query on the primary as its own login",
            )
            .help("add service = { user = \"piha\", keys = \"...\" }; `piha pg-secret --user piha` makes the keys");
        return None;
    }
    checked
}

fn users(list: Option<&Spanned<Vec<RawPgUser>>>, report: &mut Report<'_>) -> Vec<PgUser> {
    let Some(list) = list else {
        return Vec::new();
    };
    let users: Vec<_> = list
        .get_ref()
        .iter()
        .filter_map(|raw| user(raw, report))
        .collect();
    unique(users, "user", report)
}

/// One user with where its name is written; `None` without a valid name.
/// The user itself is `None` if anything else is wrong, but its name still
/// counts against a second entry of the same name.
fn user(raw: &RawPgUser, report: &mut Report<'_>) -> Option<(Option<PgUser>, Spanned<String>)> {
    let f = &raw.fields;
    let name = required(raw, &f.name, "name", "a `postgres.users` entry", report)
        .and_then(|n| checked_name(n, "a user name", report).map(|_| n.clone()));
    let who = name.as_ref().map_or("this user".to_string(), |n| {
        format!("user \"{}\"", n.get_ref())
    });
    let secret = required(raw, &f.secret, "secret", &who, report).and_then(|s| {
        match Secret::parse(s.get_ref()) {
            Ok(_) => Some(s.get_ref().clone()),
            Err(why) => {
                report
                    .error(s.span(), format!("the `secret` of {who} is not valid: {why}"))
                    .help("write what pg_authid.rolpassword holds for the role, or the verifier in the ALTER ROLE statement `piha pg-secret` prints");
                None
            }
        }
    });
    let pool_mode = pool_mode(&f.pool_mode, report);
    let name = name?;
    let user = secret.map(|secret| PgUser {
        name: name.get_ref().clone(),
        secret,
        pool_mode,
    });
    Some((user, name))
}

fn databases(
    list: Option<&Spanned<Vec<RawPgDatabase>>>,
    pools: &Pools,
    report: &mut Report<'_>,
) -> Vec<PgDatabase> {
    let Some(list) = list else {
        return Vec::new();
    };
    let databases: Vec<_> = list
        .get_ref()
        .iter()
        .filter_map(|raw| database(raw, pools, report))
        .collect();
    unique(databases, "database", report)
}

fn database(
    raw: &RawPgDatabase,
    pools: &Pools,
    report: &mut Report<'_>,
) -> Option<(Option<PgDatabase>, Spanned<String>)> {
    let f = &raw.fields;
    let name = required(raw, &f.name, "name", "a `postgres.databases` entry", report)
        .and_then(|n| checked_name(n, "a database name", report).map(|_| n.clone()));
    let pool_mode = pool_mode(&f.pool_mode, report);
    let pool_size = f.pool_size.as_ref().and_then(|n| {
        match values::count(*n.get_ref(), "pool_size", 1..=MAX_POOL) {
            Ok(size) => Some((size, n.span())),
            Err(why) => {
                report.error(n.span(), why);
                None
            }
        }
    });
    if let Some((size, span)) = &pool_size {
        if pools.min_is_real && *size < pools.min_pool_size {
            report
                .error(
                    span.clone(),
                    format!(
                        "this database's `pool_size` ({size}) is below `min_pool_size` ({})",
                        pools.min_pool_size
                    ),
                )
                .help("the pooler keeps `min_pool_size` connections open out of a database's pool: make the pool at least that");
        }
    }
    let name = name?;
    let database = PgDatabase {
        name: name.get_ref().clone(),
        pool_mode,
        pool_size: pool_size.map(|(size, _)| size),
    };
    Some((Some(database), name))
}

fn checked_name(name: &Spanned<String>, what: &str, report: &mut Report<'_>) -> Option<String> {
    match values::pg_name(name.get_ref(), what) {
        Ok(()) => Some(name.get_ref().clone()),
        Err(why) => {
            report.error(name.span(), why);
            None
        }
    }
}

fn pool_mode(raw: &Option<Spanned<String>>, report: &mut Report<'_>) -> Option<PoolMode> {
    let raw = raw.as_ref()?;
    values::pool_mode(raw.get_ref())
        .map_err(|why| {
            report.error(raw.span(), why);
        })
        .ok()
}

fn probe(raw: Option<&RawTable<RawProbe>>, report: &mut Report<'_>) -> PgProbe {
    let base = PgProbe::default();
    let Some(raw) = raw else {
        return base;
    };
    let f = &raw.fields;
    let interval: Duration = duration(&f.interval, base.interval, report);
    let timeout = duration(&f.timeout, base.timeout, report);
    timeout_within_interval(
        "probe",
        (interval, timeout),
        (&f.interval, &f.timeout),
        report,
    );
    PgProbe {
        interval,
        timeout,
        fall: count(&f.fall, base.fall, ("fall", FALL), report),
    }
}
