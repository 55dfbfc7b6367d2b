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
}
