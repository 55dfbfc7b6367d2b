//! Client settings that must follow a client from server to server in
//! transaction mode: what it gave at startup (client_encoding, DateStyle,
//! application_name...) and what PostgreSQL later reports it changed.
//! Before a leased server runs the client's query, the values that differ
//! are SET on it (PgBouncer's approach).

use std::collections::HashMap;
use std::sync::Arc;

/// Startup parameters that are not settings and are not passed on.
const NOT_SETTINGS: &[&str] = &["user", "database"];
/// Startup parameters piha refuses: `options` can set anything, invisibly
/// to the pooler; `replication` asks for a walsender, which cannot be pooled.
pub const REFUSED: &[&str] = &["options", "replication"];
/// Reported parameters that describe the server or the login rather than
/// the session's settings: no `SET` or `RESET` can change them, and they may
/// differ between the servers of one pool (`in_hot_standby` is `on` on a
/// standby, `off` on the primary the baseline was learned from). They are
/// never synced; a client's copy (from a ParameterStatus during its lease)
/// is ignored.
const READ_ONLY: &[&str] = &[
    "in_hot_standby",
    "integer_datetimes",
    "is_superuser",
    "server_encoding",
    "server_version",
    "session_authorization",
];

fn settable(name: &str) -> bool {
    !READ_ONLY.contains(&name)
}

/// Whether `name` (lower case) describes the server or the login rather
/// than the session: never SET, RESET or passed at login.
pub fn is_server_only(name: &str) -> bool {
    !settable(name)
}

/// The client's settings, by lower-case name.
#[derive(Default, Clone)]
pub struct ClientParams {
    values: HashMap<String, String>,
    /// The same settings, sorted by name, as one shared value: what a
    /// [`SyncMark`] holds, so that a server connection can tell that it
    /// already matches a client without hashing every setting (that
    /// comparison cost a quarter of a pooled SELECT).
    sorted: Arc<[(String, String)]>,
}

/// What a server connection's settings were last brought in line with: a
/// client's settings over a pool's baseline. While the connection reports
/// no change, a client whose mark [`matches`](SyncMark::matches) needs no
/// `SET`.
#[derive(Clone)]
pub struct SyncMark {
    settings: Arc<[(String, String)]>,
    baseline: Arc<HashMap<String, String>>,
}

impl SyncMark {
    /// Same baseline (it is replaced, never changed in place) and the same
    /// settings: often the very same value, else a few string compares.
    pub fn matches(&self, client: &ClientParams, baseline: &Arc<HashMap<String, String>>) -> bool {
        Arc::ptr_eq(&self.baseline, baseline)
            && (Arc::ptr_eq(&self.settings, &client.sorted) || *self.settings == *client.sorted)
    }
}

impl ClientParams {
    pub fn from_startup(params: &[(String, String)]) -> ClientParams {
        let values = params
            .iter()
            .filter(|(k, _)| !NOT_SETTINGS.contains(&k.as_str()))
            .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
            .collect();
        let mut c = ClientParams {
            values,
            sorted: Arc::default(),
        };
        c.sort();
        c
    }

    /// The client's value of `name` (lower case).
    pub fn get(&self, name: &str) -> Option<&String> {
        self.values.get(name)
    }

    /// Records a setting the client changed (`name` in lower case).
    pub fn set(&mut self, name: String, value: String) {
        if self.values.get(&name) != Some(&value) {
            self.values.insert(name, value);
            self.sort();
        }
    }

    fn sort(&mut self) {
        let mut sorted: Vec<(String, String)> = self
            .values
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        sorted.sort_unstable();
        self.sorted = sorted.into();
    }

    /// The mark a server connection keeps once it matches these settings
    /// over `baseline`.
    pub fn mark(&self, baseline: &Arc<HashMap<String, String>>) -> SyncMark {
        SyncMark {
            settings: self.sorted.clone(),
            baseline: baseline.clone(),
        }
    }

    /// `SET` statements for the settings the server has otherwise, and
    /// `RESET` for those a previous client changed (or had SET, reported or
    /// not) that this one did not ask for; `None` when the server matches
    /// already (the common case, at no cost). `baseline` is what a fresh
    /// server of the pool reports.
    pub fn sync_sql(
        &self,
        server: &HashMap<String, String>,
        baseline: &HashMap<String, String>,
    ) -> Option<String> {
        let mut sql = String::new();
        for (k, v) in &self.values {
            if settable(k) && server.get(k) != Some(v) {
                sql.push_str(&format!("SET {} TO {};", quote_ident(k), quote_literal(v)));
            }
        }
        for (k, v) in server {
            if settable(k) && !self.values.contains_key(k) && baseline.get(k) != Some(v) {
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
        // A setting the baseline does not know was SET for a client; RESET
        // put it back to the server's default, which nothing tracks.
        server
            .retain(|k, _| !settable(k) || self.values.contains_key(k) || baseline.contains_key(k));
        for (k, v) in server.iter_mut() {
            if settable(k) && !self.values.contains_key(k) {
                if let Some(b) = baseline.get(k) {
                    v.clone_from(b);
                }
            }
        }
        for (k, v) in &self.values {
            if settable(k) {
                server.insert(k.clone(), v.clone());
            }
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
    fn a_setting_only_a_previous_client_had_is_reset() {
        // A JDBC client's startup extra_float_digits (not a reported
        // parameter, so not in the baseline) was SET on the server.
        let jdbc = ClientParams::from_startup(&[("extra_float_digits".into(), "3".into())]);
        let baseline = HashMap::from([("datestyle".to_string(), "ISO, MDY".to_string())]);
        let mut server = baseline.clone();
        assert_eq!(
            jdbc.sync_sql(&server, &baseline).as_deref(),
            Some("SET \"extra_float_digits\" TO '3';")
        );
        jdbc.apply_to(&mut server, &baseline);
        let psql = ClientParams::from_startup(&[]);
        assert_eq!(
            psql.sync_sql(&server, &baseline).as_deref(),
            Some("RESET \"extra_float_digits\";")
        );
        psql.apply_to(&mut server, &baseline);
        assert_eq!(server, baseline);
        assert_eq!(psql.sync_sql(&server, &baseline), None);
    }

    #[test]
    fn a_mark_holds_for_equal_settings_over_the_same_baseline_only() {
        let startup = [
            ("user".to_string(), "u".to_string()),
            ("application_name".to_string(), "pgbench".to_string()),
            ("client_encoding".to_string(), "UTF8".to_string()),
        ];
        let a = ClientParams::from_startup(&startup);
        let mut b = ClientParams::from_startup(&startup);
        let baseline = Arc::new(HashMap::from([(
            "client_encoding".to_string(),
            "UTF8".to_string(),
        )]));
        let mark = a.mark(&baseline);
        assert!(mark.matches(&a, &baseline));
        assert!(mark.matches(&b, &baseline), "another client, same settings");
        // A pool that learned its baseline again: compare anew.
        let relearned = Arc::new((*baseline).clone());
        assert!(!mark.matches(&a, &relearned));
        // The same value again changes nothing; a new one does.
        b.set("application_name".into(), "pgbench".into());
        assert!(mark.matches(&b, &baseline));
        b.set("application_name".into(), "psql".into());
        assert!(!mark.matches(&b, &baseline));
        b.set("timezone".into(), "UTC".into());
        assert!(!mark.matches(&b, &baseline));
    }

    #[test]
    fn what_describes_the_server_is_never_set_or_reset() {
        // A client that was leased a standby when it was promoted heard
        // in_hot_standby = off; the next server is a standby.
        let mut c = ClientParams::from_startup(&[]);
        c.set("in_hot_standby".into(), "off".into());
        c.set("is_superuser".into(), "on".into());
        let mut baseline = HashMap::new();
        baseline.insert("in_hot_standby".to_string(), "off".to_string());
        baseline.insert("server_version".to_string(), "15.4".to_string());
        let mut standby = HashMap::new();
        standby.insert("in_hot_standby".to_string(), "on".to_string());
        standby.insert("server_version".to_string(), "15.5".to_string());
        assert_eq!(c.sync_sql(&standby, &baseline), None);
        c.apply_to(&mut standby, &baseline);
        assert_eq!(standby["in_hot_standby"], "on");
        assert_eq!(standby["server_version"], "15.5");
        assert!(!standby.contains_key("is_superuser"));
    }
}
