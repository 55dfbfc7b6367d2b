//! Client settings that must follow a client from server to server in
//! transaction mode: what it gave at startup (client_encoding, DateStyle,
//! application_name...) and what PostgreSQL later reports it changed.
//! Before a leased server runs the client's query, the values that differ
//! are SET on it (PgBouncer's approach).

use std::collections::HashMap;

/// Startup parameters that are not settings and are not passed on.
const NOT_SETTINGS: &[&str] = &["user", "database"];
/// Startup parameters piha refuses: `options` can set anything, invisibly
/// to the pooler; `replication` asks for a walsender, which cannot be pooled.
pub const REFUSED: &[&str] = &["options", "replication"];
/// Parameters PostgreSQL reports (ParameterStatus) but nobody can set: they
/// describe the server. They differ between servers (`in_hot_standby` is
/// `on` on a standby, `off` on the primary), and `SET`/`RESET` of one, or
/// passing one at login, is refused ("parameter \"in_hot_standby\" cannot
/// be changed"). So they never follow a client from server to server.
const SERVER_ONLY: &[&str] = &[
    "in_hot_standby",
    "integer_datetimes",
    "is_superuser",
    "server_encoding",
    "server_version",
];

/// Whether `name` (lower case) describes the server rather than the session.
pub fn is_server_only(name: &str) -> bool {
    SERVER_ONLY.contains(&name)
}

/// The client's settings, by lower-case name.
#[derive(Default, Clone)]
pub struct ClientParams {
    pub values: HashMap<String, String>,
}

impl ClientParams {
    pub fn from_startup(params: &[(String, String)]) -> ClientParams {
        let values = params
            .iter()
            .filter(|(k, _)| !NOT_SETTINGS.contains(&k.as_str()))
            .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
            .collect();
        ClientParams { values }
    }

    /// `SET` statements for the settings the server has otherwise, and
    /// `RESET` for those a previous client changed that this one did not
    /// ask for; `None` when the server matches already (the common case,
    /// at no cost). `baseline` is what a fresh server of the pool reports.
    pub fn sync_sql(
        &self,
        server: &HashMap<String, String>,
        baseline: &HashMap<String, String>,
    ) -> Option<String> {
        let mut sql = String::new();
        for (k, v) in &self.values {
            if server.get(k) != Some(v) && !is_server_only(k) {
                sql.push_str(&format!("SET {} TO {};", quote_ident(k), quote_literal(v)));
            }
        }
        for (k, v) in server {
            if !self.values.contains_key(k)
                && !is_server_only(k)
                && baseline.get(k).is_some_and(|b| b != v)
            {
                sql.push_str(&format!("RESET {};", quote_ident(k)));
            }
        }
        (!sql.is_empty()).then_some(sql)
    }

    /// What the server holds after `sync_sql` ran.
    pub fn apply_to(
        &self,
        server: &mut HashMap<String, String>,
        baseline: &HashMap<String, String>,
    ) {
        for (k, v) in server.iter_mut() {
            if !self.values.contains_key(k) && !is_server_only(k) {
                if let Some(b) = baseline.get(k) {
                    v.clone_from(b);
                }
            }
        }
        for (k, v) in self.values.iter().filter(|(k, _)| !is_server_only(k)) {
            server.insert(k.clone(), v.clone());
        }
    }
}

pub fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('\0', "").replace('"', "\"\""))
}

/// A string literal for standard_conforming_strings=on (the default since
/// PostgreSQL 9.1): quotes doubled; an E'' literal is never produced.
pub fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\0', "").replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_differences_are_set_and_quoted() {
        let c = ClientParams::from_startup(&[
            ("user".into(), "u".into()),
            ("DateStyle".into(), "ISO, DMY".into()),
            ("application_name".into(), "it's".into()),
        ]);
        let mut server = HashMap::new();
        server.insert("datestyle".to_string(), "ISO, DMY".to_string());
        let baseline = server.clone();
        assert_eq!(
            c.sync_sql(&server, &baseline).as_deref(),
            Some("SET \"application_name\" TO 'it''s';")
        );
        c.apply_to(&mut server, &baseline);
        assert_eq!(c.sync_sql(&server, &baseline), None);
        // Another client left TimeZone changed; this one never set it.
        let mut baseline = server.clone();
        baseline.insert("timezone".into(), "UTC".into());
        server.insert("timezone".into(), "Asia/Tokyo".into());
        assert_eq!(
            c.sync_sql(&server, &baseline).as_deref(),
            Some("RESET \"timezone\";")
        );
    }

    #[test]
    fn what_describes_the_server_is_never_set() {
        // The pool's first server was the primary; this one is a standby.
        let mut baseline = HashMap::new();
        baseline.insert("in_hot_standby".to_string(), "off".to_string());
        baseline.insert("server_version".to_string(), "15.8".to_string());
        let mut standby = baseline.clone();
        standby.insert("in_hot_standby".to_string(), "on".to_string());
        standby.insert("server_version".to_string(), "15.9".to_string());
        let mut c = ClientParams::default();
        assert_eq!(c.sync_sql(&standby, &baseline), None);
        // Reported by a server during a lease (a promotion), then leased
        // elsewhere.
        c.values.insert("in_hot_standby".into(), "off".into());
        assert_eq!(c.sync_sql(&standby, &baseline), None);
        c.apply_to(&mut standby, &baseline);
        assert_eq!(standby["in_hot_standby"], "on");
    }
}
