//! Named prepared statements in transaction mode (PgBouncer 1.21's design):
//! every distinct (query, parameter types) gets one pooler-wide name,
//! `piha_s<N>`, so 100 clients preparing the same text cost each server
//! connection one Parse, not 100. A client's own names map onto these; the
//! session prepares a statement on whichever server the client gets, just
//! before the first Bind or Describe that needs it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::route::Classified;

/// The database, and a Parse's query text and parameter type list. The
/// database is part of it because a text's classification depends on the
/// functions of the database it runs in.
type StatementKey = (String, String, Vec<u8>);

pub struct Statement {
    pub id: u64,
    /// The name on every server: `piha_s<id>`.
    pub server_name: String,
    pub query: String,
    /// The parameter type list of the Parse, as sent.
    pub types: Vec<u8>,
    /// Classified once, at Parse, not at every Execute.
    pub classified: Classified,
}

/// The interned statements. Entries no client refers to any more are
/// dropped when the registry grows past its bound, so a client that makes
/// unique statements forever cannot grow it without limit.
pub struct Registry {
    map: Mutex<HashMap<StatementKey, Arc<Statement>>>,
    next: AtomicU64,
    bound: usize,
}

impl Registry {
    pub fn new(bound: usize) -> Registry {
        Registry {
            map: Mutex::new(HashMap::new()),
            next: AtomicU64::new(1),
            bound,
        }
    }

    pub fn intern(
        &self,
        database: &str,
        query: &str,
        types: &[u8],
        classify: impl FnOnce(&str) -> Classified,
    ) -> Arc<Statement> {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        let key = (database.to_string(), query.to_string(), types.to_vec());
        if let Some(s) = map.get(&key) {
            return s.clone();
        }
        if map.len() >= self.bound {
            map.retain(|_, s| Arc::strong_count(s) > 1);
        }
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let stmt = Arc::new(Statement {
            id,
            server_name: format!("piha_s{id}"),
            query: query.to_string(),
            types: types.to_vec(),
            classified: classify(query),
        });
        if map.len() < self.bound {
            map.insert(key, stmt.clone());
        }
        stmt
    }

    pub fn len(&self) -> usize {
        self.map.lock().map(|m| m.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One client's statement names. Bounded: PostgreSQL has no limit, but a
/// pooler holding every client's statements must.
#[derive(Default)]
pub struct ClientStatements {
    pub by_name: HashMap<String, Arc<Statement>>,
}

/// Most named statements one client may hold at once.
pub const MAX_PER_CLIENT: usize = 10_000;

/// Whether `sql` runs `DEALLOCATE [PREPARE] ALL` or `DISCARD ALL`, which
/// drop every prepared statement of the server session: the pooler's
/// `piha_s<N>` on that server and, as PostgreSQL would, every name the
/// client prepared. psycopg sends `DEALLOCATE ALL` after a ROLLBACK or a
/// DROP, inside the transaction in the latter case. Other DEALLOCATE and
/// DISCARD forms leave the pooler's statements alone: the server knows no
/// client names, and DISCARD TEMP or PLANS keeps statements.
///
/// Looks at the first words of each `;`-separated part after leading
/// whitespace and comments. A `;` inside a literal can only split off a
/// part that is not such a statement.
pub fn drops_all_statements(sql: &str) -> bool {
    sql.split(';').any(|part| {
        let mut words = skip_comments(part)
            .split(|c: char| c.is_ascii_whitespace())
            .filter(|w| !w.is_empty());
        let is = |w: Option<&str>, k: &str| w.is_some_and(|w| w.eq_ignore_ascii_case(k));
        match words.next() {
            Some(w) if w.eq_ignore_ascii_case("deallocate") => {
                let next = words.next();
                if is(next, "prepare") {
                    is(words.next(), "all")
                } else {
                    is(next, "all")
                }
            }
            Some(w) if w.eq_ignore_ascii_case("discard") => is(words.next(), "all"),
            _ => false,
        }
    })
}

/// The statement name of `sql` when it is exactly one
/// `DEALLOCATE [PREPARE] name` (not ALL), folded as PostgreSQL folds
/// identifiers: unquoted lower-cased (ASCII), quoted kept. psycopg with a
/// libpq older than 17 sends this for its own names when it evicts one of
/// more than `prepared_max` statements; the server knows only the pooler's
/// names, so the session answers it itself (see LIFECYCLE.md).
pub fn deallocate_target(sql: &str) -> Option<String> {
    let rest = skip_comments(sql);
    let (word, rest) = rest.split_at(rest.find(|c: char| c.is_ascii_whitespace())?);
    if !word.eq_ignore_ascii_case("deallocate") {
        return None;
    }
    let mut rest = rest.trim_start();
    if let Some(i) = rest.find(|c: char| c.is_ascii_whitespace()) {
        if rest[..i].eq_ignore_ascii_case("prepare") {
            rest = rest[i..].trim_start();
        }
    }
    let (name, after) = if let Some(quoted) = rest.strip_prefix('"') {
        let mut name = String::new();
        let mut chars = quoted.char_indices();
        loop {
            let (i, c) = chars.next()?;
            if c != '"' {
                name.push(c);
            } else if quoted[i + 1..].starts_with('"') {
                name.push('"');
                chars.next();
            } else {
                break (name, &quoted[i + 1..]);
            }
        }
    } else {
        let end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '$'))
            .unwrap_or(rest.len());
        let name = &rest[..end];
        if name.is_empty()
            || name.starts_with(|c: char| c.is_ascii_digit() || c == '$')
            || name.eq_ignore_ascii_case("all")
        {
            return None;
        }
        (name.to_ascii_lowercase(), &rest[end..])
    };
    let after = after.trim_start();
    let after = after.strip_prefix(';').unwrap_or(after);
    (!name.is_empty() && skip_comments(after).is_empty()).then_some(name)
}

/// `sql` after its leading whitespace and comments (`--` lines, nested
/// `/* */` blocks).
fn skip_comments(sql: &str) -> &str {
    let mut rest = sql.trim_start();
    loop {
        if let Some(line) = rest.strip_prefix("--") {
            rest = line.find(['\n', '\r']).map_or("", |i| &line[i..]);
        } else if rest.starts_with("/*") {
            let mut depth = 0usize;
            let mut end = None;
            let bytes = rest.as_bytes();
            let mut i = 0;
            while i + 1 < bytes.len() {
                match &bytes[i..i + 2] {
                    b"/*" => {
                        depth += 1;
                        i += 2;
                    }
                    b"*/" => {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            end = Some(i);
                            break;
                        }
                    }
                    _ => i += 1,
                }
            }
            let Some(end) = end else { return "" };
            rest = &rest[end..];
        } else {
            return rest;
        }
        rest = rest.trim_start();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pg::pooler::route::Target;

    fn read(_: &str) -> Classified {
        Classified {
            target: Target::Standby,
            session_state: false,
        }
    }

    #[test]
    fn same_text_same_statement_and_the_bound_holds() {
        let r = Registry::new(2);
        let a = r.intern("app", "SELECT 1", b"\0\0", read);
        let b = r.intern("app", "SELECT 1", b"\0\0", read);
        assert_eq!(a.id, b.id);
        assert_ne!(
            r.intern("app", "SELECT 1", b"\0\x01\0\0\0\x17", read).id,
            a.id
        );
        assert_ne!(r.intern("other", "SELECT 1", b"\0\0", read).id, a.id);
        drop(b);
        let _c = r.intern("app", "SELECT 2", b"\0\0", read);
        assert!(r.len() <= 2);
    }

    #[test]
    fn a_client_deallocate_names_one_statement() {
        for (sql, name) in [
            ("DEALLOCATE _pg3_0", "_pg3_0"),
            ("deallocate prepare S1 ;", "s1"),
            ("/* evict */ DEALLOCATE \"Mixed\"\"Case\"", "Mixed\"Case"),
            ("DEALLOCATE \"all\"", "all"),
            ("DEALLOCATE prepare", "prepare"),
        ] {
            assert_eq!(deallocate_target(sql).as_deref(), Some(name), "{sql}");
        }
        for sql in [
            "DEALLOCATE ALL",
            "DEALLOCATE PREPARE ALL",
            "DEALLOCATE",
            "DEALLOCATE s1; SELECT 1",
            "DEALLOCATE s1 s2",
            "DEALLOCATE \"unclosed",
            "DEALLOCATE \"\"",
            "SELECT 1",
            "DISCARD ALL",
        ] {
            assert_eq!(deallocate_target(sql), None, "{sql}");
        }
    }

    #[test]
    fn what_drops_every_statement() {
        for sql in [
            "DEALLOCATE ALL",
            "deallocate prepare all",
            "  DISCARD   ALL ;",
            "SELECT 1; DEALLOCATE ALL",
            "/* psycopg */ -- maintenance\n DEALLOCATE\tALL",
            "/* a /* nested */ comment */ discard all",
        ] {
            assert!(drops_all_statements(sql), "{sql}");
        }
        for sql in [
            "DEALLOCATE _pg3_0",
            "DEALLOCATE PREPARE s1",
            "DEALLOCATE \"all\"",
            "DISCARD TEMP",
            "DISCARD PLANS",
            "SELECT 'DEALLOCATE ALL'",
            "-- DEALLOCATE ALL",
            "/* DISCARD ALL",
            "SELECT 1",
        ] {
            assert!(!drops_all_statements(sql), "{sql}");
        }
    }
}
