//! The SHOW tables, with PgBouncer's column names in PgBouncer's order
//! (as of 1.24, per its doc/usage.md and admin.c), so its exporters and
//! dashboards read them unchanged. Every value is text; what piha does not
//! have is 0, an empty string or NULL as PgBouncer shows it when unused.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

use bytes::BytesMut;

use super::command::{Show, USAGE};
use crate::config::PoolMode;
use crate::pg::pooler::client::login::ADMIN_DATABASE;
use crate::pg::pooler::pool::{ServerView, StatsSnapshot, UserPool};
use crate::pg::pooler::shared::{ClientInfo, Pooler};
use crate::pg::wire::backend;

pub const POOLS: &[&str] = &[
    "database",
    "user",
    "cl_active",
    "cl_waiting",
    "cl_active_cancel_req",
    "cl_waiting_cancel_req",
    "sv_active",
    "sv_active_cancel",
    "sv_being_canceled",
    "sv_idle",
    "sv_used",
    "sv_tested",
    "sv_login",
    "maxwait",
    "maxwait_us",
    "pool_mode",
    "load_balance_hosts",
];

/// SHOW CLIENTS and SHOW SERVERS share these.
pub const SOCKETS: &[&str] = &[
    "type",
    "user",
    "database",
    "replication",
    "state",
    "addr",
    "port",
    "local_addr",
    "local_port",
    "connect_time",
    "request_time",
    "wait",
    "wait_us",
    "close_needed",
    "ptr",
    "link",
    "remote_pid",
    "tls",
    "application_name",
    "prepared_statements",
    "id",
];

pub const STATS: &[&str] = &[
    "database",
    "total_server_assignment_count",
    "total_xact_count",
    "total_query_count",
    "total_received",
    "total_sent",
    "total_xact_time",
    "total_query_time",
    "total_wait_time",
    "total_client_parse_count",
    "total_server_parse_count",
    "total_bind_count",
    "avg_server_assignment_count",
    "avg_xact_count",
    "avg_query_count",
    "avg_recv",
    "avg_sent",
    "avg_xact_time",
    "avg_query_time",
    "avg_wait_time",
    "avg_client_parse_count",
    "avg_server_parse_count",
    "avg_bind_count",
];

pub const STATS_TOTALS: &[&str] = &[
    "database",
    "server_assignment_count",
    "xact_count",
    "query_count",
    "bytes_received",
    "bytes_sent",
    "xact_time",
    "query_time",
    "wait_time",
    "client_parse_count",
    "server_parse_count",
    "bind_count",
];

/// PgBouncer names the last three averages with `avg_`, unlike the rest.
pub const STATS_AVERAGES: &[&str] = &[
    "database",
    "server_assignment_count",
    "xact_count",
    "query_count",
    "bytes_received",
    "bytes_sent",
    "xact_time",
    "query_time",
    "wait_time",
    "avg_client_parse_count",
    "avg_server_parse_count",
    "avg_bind_count",
];

pub const DATABASES: &[&str] = &[
    "name",
    "host",
    "port",
    "database",
    "force_user",
    "pool_size",
    "min_pool_size",
    "reserve_pool_size",
    "server_lifetime",
    "pool_mode",
    "load_balance_hosts",
    "max_connections",
    "current_connections",
    "max_client_connections",
    "current_client_connections",
    "paused",
    "disabled",
];

pub const USERS: &[&str] = &[
    "name",
    "pool_size",
    "reserve_pool_size",
    "pool_mode",
    "max_user_connections",
    "current_connections",
    "max_user_client_connections",
    "current_client_connections",
];

pub const LISTS: &[&str] = &["list", "items"];
pub const CONFIG: &[&str] = &["key", "value", "default", "changeable"];
pub const VERSION: &[&str] = &["version"];
pub const STATE: &[&str] = &["key", "value"];

/// The version SHOW VERSION reports: what it is compatible with first, so
/// tools that pick the first `x.y.z` out of it choose the right columns.
pub fn version_string() -> String {
    format!(
        "PgBouncer 1.24.1 compatible (piha {})",
        env!("CARGO_PKG_VERSION")
    )
}

pub type Row = Vec<Option<String>>;

/// A result set: RowDescription, DataRows, CommandComplete "SHOW".
pub struct Table {
    pub columns: Vec<&'static str>,
    pub rows: Vec<Row>,
}

impl Table {
    fn new(columns: &[&'static str]) -> Table {
        Table {
            columns: columns.to_vec(),
            rows: Vec::new(),
        }
    }

    pub fn write(&self, out: &mut BytesMut) {
        backend::row_description(out, &self.columns);
        for row in &self.rows {
            backend::data_row(out, row);
        }
        backend::command_complete(out, "SHOW");
    }
}

fn t(v: impl ToString) -> Option<String> {
    Some(v.to_string())
}

/// Answers one SHOW into `out`.
pub fn answer(pooler: &Pooler, what: Show, out: &mut BytesMut) {
    let table = match what {
        Show::Help => {
            backend::notice_detail(out, "Console usage", USAGE);
            backend::command_complete(out, "SHOW");
            return;
        }
        Show::Param(name, value) => Table {
            columns: vec![name],
            rows: vec![vec![t(value)]],
        },
        other => table(pooler, other),
    };
    table.write(out);
}

/// The table of a SHOW that has one (not HELP).
pub fn table(pooler: &Pooler, what: Show) -> Table {
    let view = View::take(pooler);
    match what {
        Show::Pools => view.pools(),
        Show::Clients => view.clients(),
        Show::Servers => view.servers(),
        Show::Stats => view.stats(pooler, Stats::Both),
        Show::StatsTotals => view.stats(pooler, Stats::Totals),
        Show::StatsAverages => view.stats(pooler, Stats::Averages),
        Show::Databases => view.databases(pooler),
        Show::Users => view.users(pooler),
        Show::Lists => view.lists(pooler),
        Show::Config => config(pooler),
        Show::Version => Table {
            columns: VERSION.to_vec(),
            rows: vec![vec![t(version_string())]],
        },
        Show::State => state(pooler),
        Show::Help | Show::Param(..) => Table::new(&[]),
    }
}

/// Everything a SHOW reads, taken once so one answer is consistent.
struct View {
    now: Instant,
    now_us: u64,
    wall: SystemTime,
    pools: Vec<std::sync::Arc<UserPool>>,
    clients: Vec<std::sync::Arc<ClientInfo>>,
    service_user: String,
}

/// Clients of one (database, user), by state.
#[derive(Default)]
struct ClientCounts {
    active_or_idle: u32,
    waiting: u32,
    /// Longest wait of a waiting client, microseconds.
    max_wait_us: u64,
}

impl View {
    fn take(pooler: &Pooler) -> View {
        let now = Instant::now();
        View {
            now,
            now_us: pooler.micros(now),
            wall: SystemTime::now(),
            pools: pooler.pools.all(),
            clients: pooler.client_snapshot(),
            service_user: pooler.settings.load().service_user.clone(),
        }
    }

    /// Wall-clock text of an instant in the past.
    fn at(&self, then: Instant) -> String {
        let ago = self.now.saturating_duration_since(then);
        timestamp(self.wall.checked_sub(ago).unwrap_or(self.wall))
    }

    fn wait_us(&self, c: &ClientInfo) -> u64 {
        if c.state.load(Ordering::Relaxed) != ClientInfo::WAITING {
            return 0;
        }
        self.now_us
            .saturating_sub(c.request_us.load(Ordering::Relaxed))
    }

    fn client_counts(&self) -> BTreeMap<(String, String), ClientCounts> {
        let mut by_pool: BTreeMap<(String, String), ClientCounts> = BTreeMap::new();
        for c in &self.clients {
            let n = by_pool
                .entry((c.database.clone(), c.user.clone()))
                .or_default();
            if c.state.load(Ordering::Relaxed) == ClientInfo::WAITING {
                n.waiting += 1;
                n.max_wait_us = n.max_wait_us.max(self.wait_us(c));
            } else {
                n.active_or_idle += 1;
            }
        }
        by_pool
    }

    fn pools(&self) -> Table {
        let mut table = Table::new(POOLS);
        let mut counts = self.client_counts();
        for pool in &self.pools {
            let n = counts
                .remove(&(pool.database.clone(), pool.user.clone()))
                .unwrap_or_default();
            let (mut active, mut idle, mut login) = (0, 0, 0);
            for slot in pool.view() {
                active += slot.active;
                idle += slot.idle;
                login += slot.connecting;
            }
            table.rows.push(pool_row(
                &pool.database,
                &pool.user,
                &n,
                [active, idle, login],
                pool.mode.name(),
            ));
        }
        // The console's own clients, as PgBouncer lists its admin pool.
        for ((database, user), n) in counts {
            if database == ADMIN_DATABASE {
                table
                    .rows
                    .push(pool_row(&database, &user, &n, [0, 0, 0], "statement"));
            }
        }
        table
    }

    fn clients(&self) -> Table {
        let mut table = Table::new(SOCKETS);
        for c in &self.clients {
            let wait = self.wait_us(c);
            let request = match c.request_us.load(Ordering::Relaxed) {
                0 => c.connected,
                us => self
                    .now
                    .checked_sub(Duration::from_micros(self.now_us.saturating_sub(us)))
                    .unwrap_or(c.connected),
            };
            let link = c.linked().map(|s| server_ptr(s.id)).unwrap_or_default();
            let (local_ip, local_port) = split(c.local);
            table.rows.push(vec![
                t("C"),
                t(&c.user),
                t(&c.database),
                t("none"),
                t(c.state_name()),
                t(c.addr.ip()),
                t(c.addr.port()),
                local_ip,
                local_port,
                t(self.at(c.connected)),
                t(self.at(request)),
                t(wait / 1_000_000),
                t(wait % 1_000_000),
                t(0),
                t(client_ptr(c.id)),
                t(link),
                t(0),
                t(if c.tls { "TLS" } else { "" }),
                t(&c.application_name),
                t(0),
                t(c.id),
            ]);
        }
        table
    }

    fn servers(&self) -> Table {
        let mut table = Table::new(SOCKETS);
        // Leased servers are known through the client that holds them.
        let mut active: HashMap<(&str, &str), Vec<(ServerView, &ClientInfo)>> = HashMap::new();
        for c in &self.clients {
            if let Some(s) = c.linked() {
                active
                    .entry((c.database.as_str(), c.user.as_str()))
                    .or_default()
                    .push((s, c));
            }
        }
        for pool in &self.pools {
            let key = (pool.database.as_str(), pool.user.as_str());
            for (s, c) in active.remove(&key).unwrap_or_default() {
                table.rows.push(self.server_row(
                    pool,
                    &s,
                    "active",
                    client_ptr(c.id),
                    &c.application_name,
                ));
            }
            for slot in pool.view() {
                for s in &slot.idle_servers {
                    table
                        .rows
                        .push(self.server_row(pool, s, "idle", String::new(), ""));
                }
            }
        }
        table
    }

    fn server_row(
        &self,
        pool: &UserPool,
        s: &ServerView,
        state: &str,
        link: String,
        application_name: &str,
    ) -> Row {
        let (local_ip, local_port) = split(s.local);
        vec![
            t("S"),
            t(&pool.user),
            t(&pool.database),
            t("none"),
            t(state),
            t(s.addr.ip()),
            t(s.addr.port()),
            local_ip,
            local_port,
            t(self.at(s.created)),
            t(self.at(s.last_used)),
            t(0),
            t(0),
            t(0),
            t(server_ptr(s.id)),
            t(link),
            t(s.pid),
            t(if s.tls { "TLS" } else { "" }),
            t(application_name),
            t(s.prepared),
            t(s.id),
        ]
    }

    fn stats(&self, pooler: &Pooler, kind: Stats) -> Table {
        let mut by_db: BTreeMap<&str, StatsSnapshot> = BTreeMap::new();
        for pool in &self.pools {
            by_db
                .entry(pool.database.as_str())
                .or_default()
                .add(&pool.stats.snapshot());
        }
        let mut table = Table::new(match kind {
            Stats::Both => STATS,
            Stats::Totals => STATS_TOTALS,
            Stats::Averages => STATS_AVERAGES,
        });
        for (db, s) in by_db {
            let a = pooler.averages(db, &s);
            let totals = [
                s.server_assignments,
                s.xact_count,
                s.query_count,
                s.bytes_received,
                s.bytes_sent,
                s.xact_time_us,
                s.query_time_us,
                s.wait_time_us,
                0,
                0,
                0,
            ];
            let averages = [
                a.server_assignments,
                a.xact_count,
                a.query_count,
                a.bytes_received,
                a.bytes_sent,
                a.xact_time_us,
                a.query_time_us,
                a.wait_time_us,
                0,
                0,
                0,
            ];
            let mut row = vec![t(db)];
            if kind != Stats::Averages {
                row.extend(totals.iter().map(t));
            }
            if kind != Stats::Totals {
                row.extend(averages.iter().map(t));
            }
            table.rows.push(row);
        }
        table
    }

    fn databases(&self, pooler: &Pooler) -> Table {
        let settings = pooler.settings.load();
        let pause = pooler.pause_state();
        let primary = pooler.router().primary().map(|b| b.addr);
        // Configured databases and any a client has used, then the console.
        let mut names: Vec<String> = settings
            .pg
            .databases
            .iter()
            .map(|d| d.name.clone())
            .collect();
        for pool in &self.pools {
            if !names.contains(&pool.database) {
                names.push(pool.database.clone());
            }
        }
        names.sort();
        let mut table = Table::new(DATABASES);
        for name in &names {
            let entry = settings.pg.databases.iter().find(|d| &d.name == name);
            let servers: u32 = self
                .pools
                .iter()
                .filter(|p| &p.database == name)
                .flat_map(|p| p.view())
                .map(|s| s.active + s.idle + s.connecting)
                .sum();
            let clients = self.clients.iter().filter(|c| &c.database == name).count();
            table.rows.push(vec![
                t(name),
                primary.map(|a| a.ip().to_string()),
                primary.map(|a| a.port().to_string()),
                t(name),
                None,
                t(settings.pool_size(name)),
                t(settings.pg.min_pool_size),
                t(0),
                t(settings.pg.server_lifetime.as_secs()),
                entry
                    .and_then(|d| d.pool_mode)
                    .map(|m| m.name().to_string()),
                None,
                t(0),
                t(servers),
                t(0),
                t(clients),
                t(u8::from(pause.all || pause.databases.contains(name))),
                t(0),
            ]);
        }
        let console = self
            .clients
            .iter()
            .filter(|c| c.database == ADMIN_DATABASE)
            .count();
        table.rows.push(vec![
            t(ADMIN_DATABASE),
            None,
            t(settings.pg.port),
            t(ADMIN_DATABASE),
            t(&self.service_user),
            t(0),
            t(0),
            t(0),
            t(0),
            t("statement"),
            None,
            t(0),
            t(0),
            t(0),
            t(console),
            t(0),
            t(0),
        ]);
        table
    }

    fn users(&self, pooler: &Pooler) -> Table {
        let settings = pooler.settings.load();
        let mut names: Vec<&String> = settings.users.keys().collect();
        names.sort();
        let mut table = Table::new(USERS);
        for name in names {
            let servers: u32 = self
                .pools
                .iter()
                .filter(|p| &p.user == name)
                .flat_map(|p| p.view())
                .map(|s| s.active + s.idle + s.connecting)
                .sum();
            let clients = self.clients.iter().filter(|c| &c.user == name).count();
            let mode = settings
                .users
                .get(name)
                .and_then(|u| u.pool_mode)
                .map(|m: PoolMode| m.name().to_string());
            table.rows.push(vec![
                t(name),
                t(""),
                t(""),
                mode,
                t(0),
                t(servers),
                t(0),
                t(clients),
            ]);
        }
        table
    }

    fn lists(&self, pooler: &Pooler) -> Table {
        let settings = pooler.settings.load();
        let mut databases: Vec<&str> = self.pools.iter().map(|p| p.database.as_str()).collect();
        databases.extend(settings.pg.databases.iter().map(|d| d.name.as_str()));
        databases.sort_unstable();
        databases.dedup();
        let servers: u32 = self
            .pools
            .iter()
            .flat_map(|p| p.view())
            .map(|s| s.active + s.idle + s.connecting)
            .sum();
        let open = pooler.clients.load(Ordering::Relaxed) as usize;
        let logging_in = open.saturating_sub(self.clients.len());
        let items: [(&str, usize); 14] = [
            // The console counts as a database, as PgBouncer's does.
            ("databases", databases.len() + 1),
            ("users", settings.users.len()),
            ("peers", 0),
            ("pools", self.pools.len()),
            ("peer_pools", 0),
            ("free_clients", 0),
            ("used_clients", self.clients.len()),
            ("login_clients", logging_in),
            ("free_servers", 0),
            ("used_servers", servers as usize),
            ("dns_names", 0),
            ("dns_zones", 0),
            ("dns_queries", 0),
            ("dns_pending", 0),
        ];
        let mut table = Table::new(LISTS);
        table.rows = items.iter().map(|(k, v)| vec![t(k), t(v)]).collect();
        table
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Stats {
    Both,
    Totals,
    Averages,
}

fn pool_row(database: &str, user: &str, n: &ClientCounts, sv: [u32; 3], mode: &str) -> Row {
    let [active, idle, login] = sv;
    vec![
        t(database),
        t(user),
        t(n.active_or_idle),
        t(n.waiting),
        t(0),
        t(0),
        t(active),
        t(0),
        t(0),
        t(idle),
        t(0),
        t(0),
        t(login),
        t(n.max_wait_us / 1_000_000),
        t(n.max_wait_us % 1_000_000),
        t(mode),
        None,
    ]
}

/// SHOW CONFIG's `tcp_keepalive`: whether either side gets probes.
fn keepalive(pg: &crate::config::PostgresSettings) -> u8 {
    u8::from(!pg.tcp_user_timeout.is_zero() || !pg.client_tcp_user_timeout.is_zero())
}

fn config(pooler: &Pooler) -> Table {
    let s = pooler.settings.load();
    let d = crate::config::PostgresSettings::default();
    let secs = |d: Duration| d.as_secs().to_string();
    let rows: Vec<(&str, String, String)> = vec![
        ("listen_port", s.pg.port.to_string(), d.port.to_string()),
        (
            "pool_mode",
            s.pg.pool_mode.name().to_string(),
            d.pool_mode.name().to_string(),
        ),
        (
            "default_pool_size",
            s.pg.pool_size.to_string(),
            d.pool_size.to_string(),
        ),
        (
            "min_pool_size",
            s.pg.min_pool_size.to_string(),
            d.min_pool_size.to_string(),
        ),
        ("reserve_pool_size", "0".into(), "0".into()),
        (
            "max_client_conn",
            s.pg.max_client_conn.to_string(),
            d.max_client_conn.to_string(),
        ),
        ("max_db_connections", "0".into(), "0".into()),
        ("max_user_connections", "0".into(), "0".into()),
        (
            "server_lifetime",
            secs(s.pg.server_lifetime),
            secs(d.server_lifetime),
        ),
        (
            "server_idle_timeout",
            secs(s.pg.server_idle_timeout),
            secs(d.server_idle_timeout),
        ),
        (
            "query_wait_timeout",
            secs(s.pg.wait_timeout),
            secs(d.wait_timeout),
        ),
        (
            "client_login_timeout",
            secs(s.pg.login_timeout),
            secs(d.login_timeout),
        ),
        // PgBouncer's names and units (milliseconds); both apply to new
        // connections, as there. PgBouncer has one timeout for both sides;
        // the servers' is the one shown.
        (
            "tcp_keepalive",
            keepalive(&s.pg).to_string(),
            keepalive(&d).to_string(),
        ),
        (
            "tcp_user_timeout",
            s.pg.tcp_user_timeout.as_millis().to_string(),
            d.tcp_user_timeout.as_millis().to_string(),
        ),
        (
            "max_packet_size",
            s.pg.max_message_bytes.to_string(),
            d.max_message_bytes.to_string(),
        ),
        (
            "max_prepared_statements",
            crate::pg::pooler::server::MAX_PREPARED.to_string(),
            crate::pg::pooler::server::MAX_PREPARED.to_string(),
        ),
        (
            "stats_period",
            secs(crate::pg::pooler::role::STATS_PERIOD),
            secs(crate::pg::pooler::role::STATS_PERIOD),
        ),
        ("admin_users", s.service_user.clone(), String::new()),
    ];
    let mut table = Table::new(CONFIG);
    table.rows = rows
        .into_iter()
        .map(|(k, v, default)| {
            // Everything comes from the cluster file: change it there and
            // RELOAD; only the stats period is built in.
            let changeable = if k == "stats_period" { "no" } else { "yes" };
            vec![t(k), t(v), t(default), t(changeable)]
        })
        .collect();
    table
}

fn state(pooler: &Pooler) -> Table {
    let p = pooler.pause_state();
    let yes = |b: bool| t(if b { "yes" } else { "no" });
    let mut table = Table::new(STATE);
    table.rows = vec![
        vec![t("active"), yes(!p.all)],
        vec![t("paused"), yes(p.all)],
        vec![t("suspended"), yes(false)],
    ];
    table
}

fn split(addr: Option<SocketAddr>) -> (Option<String>, Option<String>) {
    match addr {
        Some(a) => (t(a.ip()), t(a.port())),
        None => (t(""), t(0)),
    }
}

/// PgBouncer shows object addresses in `ptr`/`link`; piha shows ids that
/// pair a client with its server the same way.
fn client_ptr(id: u64) -> String {
    format!("c{id}")
}

fn server_ptr(id: u64) -> String {
    format!("s{id}")
}

/// `2024-05-01 10:00:00 UTC`, as PgBouncer prints timestamps.
pub fn timestamp(at: SystemTime) -> String {
    humantime::format_rfc3339_seconds(at)
        .to_string()
        .replacen('T', " ", 1)
        .replace('Z', " UTC")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_look_like_pgbouncers() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_714_557_600);
        assert_eq!(timestamp(at), "2024-05-01 10:00:00 UTC");
    }

    #[test]
    fn stats_rows_are_as_wide_as_their_header() {
        assert_eq!(STATS.len(), 1 + 2 * 11);
        assert_eq!(STATS_TOTALS.len(), 1 + 11);
        assert_eq!(STATS_AVERAGES.len(), 1 + 11);
        let row = pool_row("d", "u", &ClientCounts::default(), [1, 2, 3], "session");
        assert_eq!(row.len(), POOLS.len());
    }
}
