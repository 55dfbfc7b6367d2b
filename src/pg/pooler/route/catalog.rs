//! The function-volatility cache, filled from the primary's `pg_proc`.
//!
//! Without it every call to a function the built-in list does not know
//! sends its statement to the primary, which is safe but wastes the
//! standbys; with it `SELECT my_stable_report(…)` can be balanced and
//! `SELECT my_volatile_function()` cannot (Pgpool-II does the same; PgCat
//! does not look, and sends such a call to a replica).

use std::collections::HashMap;

use super::{FunctionCatalog, Volatility};

/// The query the pooler runs on the primary to fill a [`FunctionCache`]:
/// one row per function (every overload, aggregate, window function and
/// procedure) as `(schema, name, provolatile)`, all as text.
pub const CATALOG_QUERY: &str = "SELECT n.nspname, p.proname, p.provolatile \
     FROM pg_catalog.pg_proc p \
     JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace";

/// Function volatility by name, as [`FunctionCatalog`] keys it: the bare
/// name (standing for that name in every schema) and `schema.name`. A name
/// with several overloads, or present in several schemas, answers with the
/// most volatile of them, because the classifier sees neither argument types
/// nor `search_path`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FunctionCache {
    by_name: HashMap<String, Volatility>,
}

impl FunctionCache {
    /// A cache that knows no function: the classifier then relies on its
    /// built-in list and sends every other call to the primary.
    pub fn empty() -> Self {
        Self::default()
    }

    /// Builds the cache from the rows of [`CATALOG_QUERY`].
    pub fn from_rows<'a>(rows: impl IntoIterator<Item = (&'a str, &'a str, char)>) -> Self {
        let mut cache = Self::empty();
        for (schema, name, provolatile) in rows {
            cache.insert(schema, name, provolatile);
        }
        cache
    }

    /// Adds one `pg_proc` row. `provolatile` is `i`, `s` or `v`; anything
    /// else counts as volatile.
    pub fn insert(&mut self, schema: &str, name: &str, provolatile: char) {
        let volatility = match provolatile {
            'i' => Volatility::Immutable,
            's' => Volatility::Stable,
            _ => Volatility::Volatile,
        };
        for key in [name.to_owned(), format!("{schema}.{name}")] {
            let slot = self.by_name.entry(key).or_insert(volatility);
            *slot = (*slot).max(volatility);
        }
    }

    /// How many keys (bare and qualified names) the cache holds.
    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }
}

impl FunctionCatalog for FunctionCache {
    fn volatility(&self, name: &str) -> Option<Volatility> {
        self.by_name.get(name).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overloads_and_schemas_take_the_most_volatile() {
        let cache = FunctionCache::from_rows([
            ("pg_catalog", "now", 's'),
            ("pg_catalog", "lower", 'i'),
            ("public", "lower", 'v'),
            ("public", "f", 'i'),
            ("public", "f", 's'),
            ("app", "MixedCase", 's'),
            ("app", "odd", '?'),
        ]);
        assert_eq!(cache.volatility("now"), Some(Volatility::Stable));
        assert_eq!(cache.volatility("pg_catalog.now"), Some(Volatility::Stable));
        assert_eq!(cache.volatility("lower"), Some(Volatility::Volatile));
        assert_eq!(
            cache.volatility("pg_catalog.lower"),
            Some(Volatility::Immutable)
        );
        assert_eq!(cache.volatility("public.lower"), Some(Volatility::Volatile));
        assert_eq!(cache.volatility("f"), Some(Volatility::Stable));
        assert_eq!(cache.volatility("MixedCase"), Some(Volatility::Stable));
        assert_eq!(cache.volatility("mixedcase"), None);
        assert_eq!(cache.volatility("odd"), Some(Volatility::Volatile));
        assert_eq!(cache.volatility("missing"), None);
        assert_eq!(cache.len(), 11);
        assert!(FunctionCache::empty().is_empty());
    }
}
