//! First pass over the parsed TOML: shape only. Every key is checked against
//! the keys its table may hold and every value against the type it must have,
//! so that `validate` works on typed fields and each mistake is reported once,
//! where it was made. This is done by hand over toml's spanned tree rather than
//! with `#[derive(Deserialize)]` because serde stops at the first error, and a
//! person fixing a file on an SD card wants to hear about all of them at once.

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::diagnostic::{Diagnostic, Report, Span};
use super::suggest::closest;

pub use super::raw_db::*;
pub use super::raw_postgres::*;
pub use super::raw_sections::*;
pub use super::raw_storage::*;
pub use super::raw_vrrp::*;

#[derive(Default)]
pub struct RawFile {
    /// Top-level keys written but already reported (a wrong type), so that
    /// "missing [cluster]" does not follow "`cluster` must be a table".
    pub reported: Reported,
    pub cluster: Option<RawCluster>,
    pub defaults: RawDefaults,
    pub membership: RawMembership,
    pub store: RawStore,
    pub metrics: RawMetrics,
    /// `None` when the file has no `[postgres]`: built-in values.
    pub postgres: Option<RawPostgres>,
    /// `None` when the file has no `[vrrp]`: built-in values.
    pub vrrp: Option<RawVrrp>,
    /// `None` when the file has no `[db]`: built-in values.
    pub db: Option<RawDbCluster>,
    /// `None` when the file has no `[storage]`: built-in values.
    pub storage: Option<RawStorageCluster>,
    pub nodes: Vec<RawNode>,
    pub patterns: Vec<RawPattern>,
}

pub struct RawCluster {
    pub span: Span,
    pub reported: Reported,
    pub name: Option<Spanned<String>>,
    pub vip: Option<Spanned<String>>,
    pub admin_token: Option<Spanned<String>>,
    pub admin_token_file: Option<Spanned<String>>,
}

#[derive(Default)]
pub struct RawDefaults {
    pub admin_port: Option<Spanned<i64>>,
    pub gossip_port: Option<Spanned<i64>>,
    pub sections: RawSections,
}

#[derive(Default)]
pub struct RawMembership {
    pub heartbeat_interval: Option<Spanned<String>>,
    pub down_after: Option<Spanned<String>>,
}

#[derive(Default)]
pub struct RawStore {
    pub retention: Option<Spanned<String>>,
    pub max_size: Option<Spanned<RawSize>>,
    pub flush_interval: Option<Spanned<String>>,
}

/// `max_size = "64MiB"` or `max_size = 67108864`.
pub enum RawSize {
    Text(String),
    Bytes(i64),
}

/// A value that may also be written `false` to turn the thing off, like
/// `https_port = false`.
pub enum OrOff<T> {
    On(T),
    Off,
}

#[derive(Default)]
pub struct RawMetrics {
    pub sample_interval: Option<Spanned<String>>,
}

pub struct RawNode {
    /// The `[[node]]` header (or the inline table), for "missing key" errors.
    pub span: Span,
    pub reported: Reported,
    pub hostname: Option<Spanned<String>>,
    pub address: Option<Spanned<String>>,
    pub roles: Option<Spanned<Vec<Spanned<String>>>>,
    pub admin_port: Option<Spanned<i64>>,
    pub gossip_port: Option<Spanned<i64>>,
    pub mac: Option<Spanned<String>>,
    pub sections: RawSections,
}

pub struct RawPattern {
    pub span: Span,
    pub reported: Reported,
    pub glob: Option<Spanned<String>>,
    pub roles: Option<Spanned<Vec<Spanned<String>>>>,
    pub sections: RawSections,
}

/// Keys of a table that were written but already reported (wrong type, or
/// misspelt so that an unknown key suggests them). A later "missing key"
/// error for them would only repeat the same mistake.
#[derive(Default)]
pub struct Reported(Vec<&'static str>);

impl Reported {
    pub fn contains(&self, key: &str) -> bool {
        self.0.contains(&key)
    }
}

pub(super) const DURATION: &str = "a duration in quotes, like \"1s\", \"500ms\" or \"7d\"";
pub(super) const PORT: &str = "a port number like 9000";
const ROLES: &str = "a list of roles, like [\"web\", \"storage\"]";
const ROLE: &str = "a role name in quotes, like \"web\"";

pub fn read_file(root: &DeTable<'_>, report: &mut Report<'_>) -> RawFile {
    let mut top = Fields::new(root, "the top level of the file", report);
    let cluster = top.table("cluster").map(|t| read_cluster(t, top.report));
    let defaults = top.table("defaults").map(|t| read_defaults(t, top.report));
    let membership = top.table("membership").map(|t| {
        let mut f = Fields::new(t.table, "[membership]", top.report);
        let m = RawMembership {
            heartbeat_interval: f.string("heartbeat_interval", DURATION),
            down_after: f.string("down_after", DURATION),
        };
        f.finish();
        m
    });
    let store = top.table("store").map(|t| read_store(t, top.report));
    let metrics = top.table("metrics").map(|t| {
        let mut f = Fields::new(t.table, "[metrics]", top.report);
        let m = RawMetrics {
            sample_interval: f.string("sample_interval", DURATION),
        };
        f.finish();
        m
    });
    let postgres = top.table("postgres").map(|t| read_postgres(t, top.report));
    let vrrp = top.table("vrrp").map(|t| read_vrrp(t, top.report));
    let db = top.table("db").map(|t| read_db(t, top.report));
    let storage = top.table("storage").map(|t| read_storage(t, top.report));
    let nodes = top.array_of_tables("node");
    let nodes = nodes
        .into_iter()
        .map(|t| read_node(t, top.report))
        .collect();
    let patterns = top.array_of_tables("pattern");
    let patterns = patterns
        .into_iter()
        .map(|t| read_pattern(t, top.report))
        .collect();
    RawFile {
        reported: top.finish(),
        cluster,
        defaults: defaults.unwrap_or_default(),
        membership: membership.unwrap_or_default(),
        store: store.unwrap_or_default(),
        metrics: metrics.unwrap_or_default(),
        postgres,
        vrrp,
        db,
        storage,
        nodes,
        patterns,
    }
}

fn read_cluster(t: Table<'_, '_>, report: &mut Report<'_>) -> RawCluster {
    let mut f = Fields::new(t.table, "[cluster]", report);
    let mut cluster = RawCluster {
        span: t.span,
        reported: Reported::default(),
        name: f.string("name", "a cluster name in quotes, like \"piha\""),
        vip: f.string(
            "vip",
            "an IP address with a prefix length in quotes, like \"192.0.2.10/24\"",
        ),
        admin_token: f.string("admin_token", "a string in quotes"),
        admin_token_file: f.string("admin_token_file", "a file path in quotes"),
    };
    cluster.reported = f.finish();
    cluster
}

fn read_defaults(t: Table<'_, '_>, report: &mut Report<'_>) -> RawDefaults {
    let mut f = Fields::new(t.table, "[defaults]", report);
    let defaults = RawDefaults {
        admin_port: f.integer("admin_port", PORT),
        gossip_port: f.integer("gossip_port", PORT),
        sections: read_sections(&mut f),
    };
    f.finish();
    defaults
}

fn read_store(t: Table<'_, '_>, report: &mut Report<'_>) -> RawStore {
    let mut f = Fields::new(t.table, "[store]", report);
    let retention = f.string("retention", DURATION);
    let max_size = f.size("max_size");
    let store = RawStore {
        retention,
        max_size,
        flush_interval: f.string("flush_interval", DURATION),
    };
    f.finish();
    store
}

fn read_node(t: Table<'_, '_>, report: &mut Report<'_>) -> RawNode {
    let mut f = Fields::new(t.table, "[[node]]", report);
    let mut node = RawNode {
        span: t.span,
        reported: Reported::default(),
        hostname: f.string("hostname", "a hostname in quotes, like \"pi-1\""),
        address: f.string(
            "address",
            "an IP address with a prefix length in quotes, like \"192.0.2.11/24\"",
        ),
        roles: f.string_array("roles", ROLES, ROLE),
        admin_port: f.integer("admin_port", PORT),
        gossip_port: f.integer("gossip_port", PORT),
        mac: f.string(
            "mac",
            "the Pi's Ethernet address in quotes, like \"dc:a6:32:01:02:03\"",
        ),
        sections: read_sections(&mut f),
    };
    node.reported = f.finish();
    node
}

fn read_pattern(t: Table<'_, '_>, report: &mut Report<'_>) -> RawPattern {
    let mut f = Fields::new(t.table, "[[pattern]]", report);
    let mut pattern = RawPattern {
        span: t.span,
        reported: Reported::default(),
        glob: f.string("match", "a hostname pattern in quotes, like \"pi-*\""),
        roles: f.string_array("roles", ROLES, ROLE),
        sections: read_sections(&mut f),
    };
    pattern.reported = f.finish();
    pattern
}

/// A sub-table with where it was written.
pub(super) struct Table<'t, 'i> {
    pub table: &'t DeTable<'i>,
    pub span: Span,
    pub key_span: Span,
}

/// Typed access to one table's keys. Every key asked for counts as known;
/// `finish` reports the rest as unknown, with the closest known key.
pub(super) struct Fields<'t, 'i, 'r, 's> {
    table: &'t DeTable<'i>,
    context: &'static str,
    known: Vec<&'static str>,
    reported: Vec<&'static str>,
    pub report: &'r mut Report<'s>,
}

impl<'t, 'i, 'r, 's> Fields<'t, 'i, 'r, 's> {
    pub fn new(table: &'t DeTable<'i>, context: &'static str, report: &'r mut Report<'s>) -> Self {
        Fields {
            table,
            context,
            known: Vec::new(),
            reported: Vec::new(),
            report,
        }
    }

    pub fn get(&mut self, key: &'static str) -> Option<&'t Spanned<DeValue<'i>>> {
        self.known.push(key);
        self.table.get(key)
    }

    pub fn string(&mut self, key: &'static str, expected: &str) -> Option<Spanned<String>> {
        let value = self.get(key)?;
        match value.get_ref() {
            DeValue::String(s) => Some(Spanned::new(value.span(), s.to_string())),
            _ => {
                self.wrong_type(key, value, expected);
                None
            }
        }
    }

    pub fn integer(&mut self, key: &'static str, expected: &str) -> Option<Spanned<i64>> {
        let value = self.get(key)?;
        match value.get_ref() {
            DeValue::Integer(_) => self
                .integer_value(key, value)
                .map(|n| Spanned::new(value.span(), n)),
            DeValue::String(s) if s.trim().parse::<i64>().is_ok() => {
                self.wrong_type(key, value, expected).help(format!(
                    "write the number without quotes: {key} = {}",
                    s.trim()
                ));
                None
            }
            _ => {
                self.wrong_type(key, value, expected);
                None
            }
        }
    }

    pub fn integer_value(&mut self, key: &str, value: &Spanned<DeValue<'_>>) -> Option<i64> {
        let DeValue::Integer(n) = value.get_ref() else {
            return None;
        };
        let parsed = i64::from_str_radix(n.as_str(), n.radix()).ok();
        if parsed.is_none() {
            self.report
                .error(value.span(), format!("the number for `{key}` is too large"));
        }
        parsed
    }

    pub fn boolean(&mut self, key: &'static str) -> Option<Spanned<bool>> {
        let value = self.get(key)?;
        match value.get_ref() {
            DeValue::Boolean(b) => Some(Spanned::new(value.span(), *b)),
            _ => {
                self.wrong_type(key, value, "true or false (without quotes)");
                None
            }
        }
    }

    /// `https_port = 443`, or `https_port = false` to turn it off.
    pub fn port_or_off(&mut self, key: &'static str) -> Option<Spanned<OrOff<i64>>> {
        let value = self.get(key)?;
        match value.get_ref() {
            DeValue::Boolean(false) => Some(Spanned::new(value.span(), OrOff::Off)),
            DeValue::Integer(_) => self
                .integer_value(key, value)
                .map(|n| Spanned::new(value.span(), OrOff::On(n))),
            _ => {
                let expected = "a port number like 443, or false to turn it off";
                let d = self.wrong_type(key, value, expected);
                match value.get_ref() {
                    DeValue::Boolean(true) => {
                        d.help(format!(
                            "on is the default; to move it, write a port: {key} = 443"
                        ));
                    }
                    DeValue::String(s) if s.trim().parse::<i64>().is_ok() => {
                        d.help(format!(
                            "write the number without quotes: {key} = {}",
                            s.trim()
                        ));
                    }
                    _ => {}
                }
                None
            }
        }
    }

    /// A size: `"64MiB"` or a number of bytes.
    pub fn size(&mut self, key: &'static str) -> Option<Spanned<RawSize>> {
        let value = self.get(key)?;
        self.size_value(key, value)
            .map(|size| Spanned::new(value.span(), size))
    }

    /// A size, or `false` for no limit.
    pub fn size_or_off(&mut self, key: &'static str) -> Option<Spanned<OrOff<RawSize>>> {
        let value = self.get(key)?;
        if let DeValue::Boolean(false) = value.get_ref() {
            return Some(Spanned::new(value.span(), OrOff::Off));
        }
        self.size_value(key, value)
            .map(|size| Spanned::new(value.span(), OrOff::On(size)))
    }

    fn size_value(&mut self, key: &'static str, value: &Spanned<DeValue<'_>>) -> Option<RawSize> {
        match value.get_ref() {
            DeValue::String(s) => Some(RawSize::Text(s.to_string())),
            DeValue::Integer(_) => self.integer_value(key, value).map(RawSize::Bytes),
            _ => {
                let expected = "a size like \"64MiB\" or a number of bytes";
                self.wrong_type(key, value, expected);
                None
            }
        }
    }

    /// A table nested in a section, like `health = { ... }`.
    pub fn inline_table(&mut self, key: &'static str, example: &str) -> Option<Table<'t, 'i>> {
        self.table_or(key, &format!("a table, like {key} = {example}"))
    }

    /// A list of tables: `backends = [{ ... }, { ... }]`, or the same written
    /// as `[[...backends]]` sections, which TOML reads the same way.
    pub fn table_list(
        &mut self,
        key: &'static str,
        example: &str,
    ) -> Option<Spanned<Vec<Table<'t, 'i>>>> {
        let value = self.get(key)?;
        let DeValue::Array(items) = value.get_ref() else {
            let expected = format!("a list of tables, like {key} = [{example}]");
            self.wrong_type(key, value, &expected);
            return None;
        };
        let mut tables = Vec::new();
        for item in items.iter() {
            match item.get_ref() {
                DeValue::Table(table) => tables.push(Table {
                    table,
                    span: item.span(),
                    key_span: item.span(),
                }),
                other => {
                    let found = type_name(other);
                    self.report.error(
                        item.span(),
                        format!("expected a table in `{key}`, like {example}, found {found}"),
                    );
                }
            }
        }
        Some(Spanned::new(value.span(), tables))
    }

    /// A key that does not belong here although it does elsewhere (an HTTP
    /// limit on a tcp service): say why, rather than "unknown key".
    pub fn refuse(&mut self, key: &'static str, why: &str) {
        self.known.push(key);
        if let Some((k, _)) = self.table.get_key_value(key) {
            self.reported.push(key);
            self.report.error(k.span(), why.to_string());
        }
    }

    /// A list of strings; `each` says what one of them is, like "a role
    /// name in quotes, like \"web\"".
    pub fn string_array(
        &mut self,
        key: &'static str,
        expected: &str,
        each: &str,
    ) -> Option<Spanned<Vec<Spanned<String>>>> {
        let value = self.get(key)?;
        let DeValue::Array(items) = value.get_ref() else {
            self.wrong_type(key, value, expected);
            return None;
        };
        let mut strings = Vec::new();
        for item in items.iter() {
            match item.get_ref() {
                DeValue::String(s) => strings.push(Spanned::new(item.span(), s.to_string())),
                other => {
                    let found = type_name(other);
                    self.report
                        .error(item.span(), format!("expected {each}, found {found}"));
                }
            }
        }
        Some(Spanned::new(value.span(), strings))
    }

    pub fn table(&mut self, key: &'static str) -> Option<Table<'t, 'i>> {
        self.table_or(
            key,
            &format!("a table, like `[{key}]` or `{key} = {{ ... }}`"),
        )
    }

    /// The table under `key`; anything else is a wrong-type diagnostic saying
    /// `expected`.
    fn table_or(&mut self, key: &'static str, expected: &str) -> Option<Table<'t, 'i>> {
        self.known.push(key);
        let (k, value) = self.table.get_key_value(key)?;
        match value.get_ref() {
            DeValue::Table(table) => Some(Table {
                table,
                span: value.span(),
                key_span: k.span(),
            }),
            _ => {
                self.wrong_type(key, value, expected);
                None
            }
        }
    }

    /// `[[node]]` / `[[pattern]]`: every element must be a table.
    pub fn array_of_tables(&mut self, key: &'static str) -> Vec<Table<'t, 'i>> {
        self.known.push(key);
        let Some((k, value)) = self.table.get_key_value(key) else {
            return Vec::new();
        };
        let DeValue::Array(items) = value.get_ref() else {
            let found = type_name(value.get_ref());
            self.reported.push(key);
            let d = self.report.error(
                value.span(),
                format!("expected `[[{key}]]` with double brackets, found {found}"),
            );
            if value.get_ref().is_table() {
                d.help(format!(
                    "each {key} is its own `[[{key}]]` section; `[{key}]` makes one plain table"
                ));
            }
            return Vec::new();
        };
        let mut tables = Vec::new();
        for item in items.iter() {
            match item.get_ref() {
                DeValue::Table(table) => tables.push(Table {
                    table,
                    span: item.span(),
                    key_span: k.span(),
                }),
                other => {
                    let found = type_name(other);
                    self.report.error(
                        item.span(),
                        format!("expected a `[[{key}]]` table, found {found}"),
                    );
                }
            }
        }
        tables
    }

    pub fn wrong_type(
        &mut self,
        key: &'static str,
        value: &Spanned<DeValue<'_>>,
        expected: &str,
    ) -> &mut Diagnostic {
        let found = type_name(value.get_ref());
        self.reported.push(key);
        self.report.error(
            value.span(),
            format!("wrong type for `{key}`: expected {expected}, found {found}"),
        )
    }

    /// Reports the keys nobody asked for; returns the keys already reported.
    pub fn finish(mut self) -> Reported {
        for (key, _) in self.table.iter() {
            let name: &str = key.get_ref();
            if self.known.contains(&name) {
                continue;
            }
            let mut message = format!("unknown key `{name}` in {}", self.context);
            let suggestion = closest(name, &self.known);
            if let Some(s) = suggestion {
                message.push_str(&format!("; did you mean `{s}`?"));
                self.reported.push(s);
            }
            let d = self.report.error(key.span(), message);
            if suggestion.is_none() {
                d.help(format!("keys allowed here: {}", self.known.join(", ")));
            }
        }
        Reported(self.reported)
    }
}

/// "an integer", "a table": for "found ..." in type errors.
fn type_name(value: &DeValue<'_>) -> String {
    match value {
        DeValue::String(s) if s.chars().count() <= 40 => format!("the string \"{s}\""),
        DeValue::String(_) => "a string".to_string(),
        DeValue::Integer(n) => format!("the number {n}"),
        DeValue::Float(x) => format!("the number {x}"),
        DeValue::Boolean(b) => format!("{b}"),
        DeValue::Datetime(_) => "a date".to_string(),
        DeValue::Array(_) => "a list".to_string(),
        DeValue::Table(_) => "a table".to_string(),
    }
}
