//! Read/write routing: which backend a statement may run on, and whether it
//! leaves state behind in the server session.
//!
//! # Why it is built this way
//!
//! A standby refuses every write with "cannot execute … in a read-only
//! transaction", so a write routed to a standby is an application error and
//! a pooler that makes one is broken. The poolers we studied
//! (`/work/shared/research/pooler.md` §1.3) get this wrong in known ways:
//!
//! * **PgCat** looks only at the statement kind and at `FOR UPDATE/SHARE`. A
//!   `SELECT nextval('s')`, a `SELECT my_function_that_writes()` or a writable
//!   CTE nested in a query all go to a replica, and when its parser fails the
//!   statement goes to the *default* role, which can be a replica (PgCat #884,
//!   #887: `FOR NO KEY UPDATE` does not parse, lands on a replica and fails;
//!   #410: pgbench's UPDATE on a replica). So here every doubt goes to the
//!   primary: parse failures, unknown functions, unknown statement kinds,
//!   multi-statement strings.
//! * **Pgpool-II** gets the function question right (volatility from
//!   `pg_proc`, cached), which we copy ([`FunctionCache`], [`CATALOG_QUERY`]),
//!   but it kept shipping fixes for statements that change the *session*
//!   (`SET transaction_read_only = 0` to a standby, temp tables routed through
//!   its relcache to a standby, fixed in 4.6.7). That is why the classifier
//!   also reports [`Classified::session_state`]: the pooler must know when a
//!   server connection carries something a later client must not inherit, or
//!   that a client has state that only one server holds.
//! * **Odyssey** refuses SQL-based splitting because `select func()` can
//!   write. That objection is answered by the volatility lookup, and where it
//!   cannot be answered (an unknown function) the statement goes to the
//!   primary; `/* piha:primary */` and `/* piha:standby */` hints let the
//!   application override both ways.
//!
//! The classifier sees one query string and knows nothing of the client's
//! transaction: inside an explicit transaction the pooler sends everything
//! to the primary whatever [`classify`] says (it says primary for `BEGIN`).
//!
//! Classification must cost next to nothing on the hot path (pgbench `-S` is
//! a single SELECT per transaction), so a byte scanner decides the common
//! shapes without allocating ([`classify_fast`]) and only the rest goes to
//! `sqlparser` (about 100 ns against 40 µs on an x86 VM; see the `cost` test
//! in `classify.rs`). The pooler classifies a prepared statement once, at
//! Parse, and keeps the answer with the statement; Bind/Execute never
//! re-classify.
//!
//! # What no classifier here can see
//!
//! The decision is taken on the statement text. A view whose definition calls
//! `nextval()`, a user-defined operator or cast backed by a volatile function,
//! and a trigger or function body that calls `set_config(.., false)` are not
//! visible in the text. A read of such a view fails on the standby (the client
//! sees the error; nothing is written), and a hidden session change is not
//! reported. Use `/* piha:primary */` for the first; for the second there is
//! no cure short of resetting every connection. Reading a temporary table is
//! a plain read by the text, but the table only exists in one server session:
//! the pooler must keep a client whose earlier statement reported
//! `session_state` on the server that holds that state.

mod catalog;
mod classify;
mod fast_path;
mod functions;
mod lex;

pub use catalog::{CATALOG_QUERY, FunctionCache};
pub use classify::classify;
pub use fast_path::classify_fast;

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

/// Volatility of a function as `pg_proc.provolatile` says, ordered from
/// least to most volatile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Volatility {
    Immutable,
    Stable,
    Volatile,
}

/// Looks up function volatility; `None` for a function it does not know.
///
/// The key is formed from the name as the statement spells it, folded the
/// way PostgreSQL folds identifiers: an unquoted identifier is lower-cased
/// (ASCII only, as PostgreSQL does in UTF-8 databases), a quoted one is kept
/// as written, without the quotes. An unqualified call `Now()` asks for
/// `now`; a qualified call `Public."MyFn"()` asks for `public.MyFn` (the last
/// two parts, `schema.name`, of however many were written). An unqualified
/// name stands for every function of that name in any schema, since the
/// client's `search_path` is not known here; [`FunctionCache`] answers with
/// the most volatile of them.
pub trait FunctionCatalog {
    fn volatility(&self, name: &str) -> Option<Volatility>;
}
