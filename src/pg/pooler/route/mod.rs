//! Read/write routing: which backend a statement may run on.
//!
//! (Being written for issue 4: the classifier, its corpus and the
//! function-volatility cache. The contract the pooler relies on is below.)

/// Where a statement may run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Only the primary: writes, and everything not proven a plain read.
    Primary,
    /// Any healthy standby (or the primary when none qualifies).
    Standby,
}

/// What the classifier says about one query string (simple Query or Parse).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Classified {
    pub target: Target,
    /// The statement may leave state in the server session beyond its
    /// transaction (SET without LOCAL, temp tables, session advisory locks,
    /// LISTEN, PREPARE, DECLARE WITH HOLD, ...), or it is not known not to.
    /// In transaction mode the server connection is then reset on release.
    pub session_state: bool,
}

/// Volatility of a function as `pg_proc.provolatile` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Volatility {
    Immutable,
    Stable,
    Volatile,
}

/// Looks up function volatility; `None` for a function it does not know.
pub trait FunctionCatalog {
    fn volatility(&self, name: &str) -> Option<Volatility>;
}

/// Until the real classifier lands: everything to the primary, and every
/// statement counted as leaving session state, which is always safe.
pub fn classify(_sql: &str, _catalog: &dyn FunctionCatalog) -> Classified {
    Classified {
        target: Target::Primary,
        session_state: true,
    }
}
