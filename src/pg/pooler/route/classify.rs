//! The full classifier: hints, the fast path, and `sqlparser` for the rest.
//!
//! The parsed path proves a read instead of looking for a write. A statement
//! goes to a standby only when it is one query whose every nested statement
//! is a query (no `INSERT`/`UPDATE`/`DELETE`/`MERGE` inside a CTE), that
//! carries no locking clause and no `SELECT … INTO` at any depth, and whose
//! every call, wherever it sits (select list, `FROM`, `LATERAL`, `WHERE`,
//! `ORDER BY`, windows, subqueries, CTEs), is known immutable or stable.
//! The walk is `sqlparser`'s derived visitor, so no corner of the syntax tree
//! is skipped because a hand-written walk forgot it.

use std::ops::ControlFlow;

use sqlparser::ast::{
    ContextModifier, Expr, Function, FunctionArg, FunctionArgExpr, FunctionArguments, ObjectName,
    ObjectNamePart, Query, Select, Set, Statement, TableFactor, Value, Visit, Visitor,
};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::{Token, Tokenizer};

use super::fast_path::classify_fast;
use super::functions::{SessionEffect, always_primary, safe_builtin, session_effect};
use super::lex::{contains_ci, leading};
use super::{Classified, FunctionCatalog, Target, Volatility};

/// Longer statements are not parsed: they go to the primary and count as
/// leaving session state. Bulk `INSERT`s take the fast path whatever their
/// length; this bounds the parser's time and memory for the rest.
const PARSE_LIMIT: usize = 1 << 20;

/// Classifies one query string: a simple-protocol Query (which may hold
/// several statements) or the text of one Parse.
///
/// * A `/* piha:primary */` or `/* piha:standby */` comment before the first
///   token sets the target, overriding the classifier both ways: the standby
///   hint is the application's promise that the statement is a read, and a
///   write sent with it fails on the standby. A hint does not change
///   `session_state`, which is computed as without it. Hints later in the
///   text are ignored.
/// * Otherwise the target is the standby only for a proven plain read
///   (module docs); everything else, including statements `sqlparser`
///   cannot parse and strings of several statements, goes to the primary.
/// * `session_state` is true for `SET`/`RESET` (not `SET LOCAL`,
///   `SET TRANSACTION`), `SET ROLE`, `SET SESSION AUTHORIZATION`,
///   `SET SESSION CHARACTERISTICS`, temporary tables, views and sequences
///   (`TEMP`, `SELECT … INTO TEMP`, or anything naming `pg_temp`), `LISTEN`,
///   `UNLISTEN`, `PREPARE`, `DEALLOCATE`, `DECLARE … WITH HOLD`, `LOAD`,
///   `DISCARD`, `CALL`, calls to `set_config` (unless `is_local` is the
///   literal `true`), session advisory locks, `dblink*` and `setseed`, and
///   for every statement kind not known to leave none, text that does not
///   parse included.
///
/// Pure and cheap: the pooler calls it once per simple Query and once per
/// Parse, and keeps a prepared statement's answer for its Executes.
pub fn classify(sql: &str, catalog: &dyn FunctionCatalog) -> Classified {
    if let Some(classified) = classify_fast(sql) {
        return classified;
    }
    let mut classified = classify_parsed(sql, catalog);
    if let Some(target) = leading(sql).hint {
        classified.target = target;
    }
    classified
}

/// Primary, and the session possibly changed: the answer for anything not
/// understood.
const UNKNOWN: Classified = Classified {
    target: Target::Primary,
    session_state: true,
};

fn classify_parsed(sql: &str, catalog: &dyn FunctionCatalog) -> Classified {
    if sql.len() > PARSE_LIMIT || has_unicode_identifier(sql) {
        return UNKNOWN;
    }
    let Some(statements) = parse(sql) else {
        return UNKNOWN;
    };
    let mut walk = Walk {
        catalog,
        read_only: statements.len() == 1,
        session_state: contains_ci(sql, "pg_temp"),
    };
    // The walk never breaks; it records.
    let _ = statements.visit(&mut walk);
    Classified {
        target: if walk.read_only {
            Target::Standby
        } else {
            Target::Primary
        },
        session_state: walk.session_state,
    }
}

/// `U&"…"` identifiers may spell any name in escapes (`U&"\0073et_config"`),
/// and `sqlparser` keeps the escapes, so a name lookup could miss a function
/// PostgreSQL would call.
fn has_unicode_identifier(sql: &str) -> bool {
    sql.as_bytes()
        .windows(3)
        .any(|w| w[0].eq_ignore_ascii_case(&b'u') && w[1] == b'&' && w[2] == b'"')
}

/// Tokenizes and parses as PostgreSQL would, closing two gaps between
/// `sqlparser` and PostgreSQL's scanner:
/// * PostgreSQL ends a `--` comment at `\r` as well as `\n`; `sqlparser`
///   only at `\n`, so `SELECT 1 --x\r; DELETE …` would hide the DELETE.
///   Every `\r` becomes `\n` before tokenizing (inside literals too, which
///   changes nothing the classifier looks at).
/// * `sqlparser` 0.63 cannot parse `FOR NO KEY UPDATE` and `FOR KEY SHARE`
///   (PgCat #884/#887). The tokens `NO KEY` and `KEY` are dropped after `FOR`
///   so the statement still parses as a locking read, which goes to the
///   primary, and need not count as leaving session state.
fn parse(sql: &str) -> Option<Vec<Statement>> {
    let dialect = PostgreSqlDialect {};
    let text;
    let sql = if sql.contains('\r') {
        text = sql.replace('\r', "\n");
        &text
    } else {
        sql
    };
    let mut tokens = Tokenizer::new(&dialect, sql).tokenize().ok()?;
    weaken_row_locks(&mut tokens);
    Parser::new(&dialect)
        .with_tokens(tokens)
        .parse_statements()
        .ok()
}

/// `FOR NO KEY UPDATE` → `FOR UPDATE`, `FOR KEY SHARE` → `FOR SHARE`.
fn weaken_row_locks(tokens: &mut Vec<Token>) {
    fn is_word(token: &Token, word: &str) -> bool {
        matches!(token, Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(word))
    }
    let mut i = 0;
    while i < tokens.len() {
        if is_word(&tokens[i], "for") {
            let next: Vec<usize> = (i + 1..tokens.len())
                .filter(|&j| !matches!(tokens[j], Token::Whitespace(_)))
                .take(3)
                .collect();
            let word = |n: usize, w: &str| next.get(n).is_some_and(|&j| is_word(&tokens[j], w));
            let drop: &[usize] = if word(0, "no") && word(1, "key") && word(2, "update") {
                &next[..2]
            } else if word(0, "key") && word(1, "share") {
                &next[..1]
            } else {
                &[]
            };
            for &j in drop.iter().rev() {
                tokens.remove(j);
            }
        }
        i += 1;
    }
}

/// What the walk has found so far.
struct Walk<'a> {
    catalog: &'a dyn FunctionCatalog,
    /// Still provably a plain read.
    read_only: bool,
    session_state: bool,
}

impl Visitor for Walk<'_> {
    type Break = ();

    fn pre_visit_statement(&mut self, statement: &Statement) -> ControlFlow<()> {
        if !matches!(statement, Statement::Query(_)) {
            self.read_only = false;
        }
        self.session_state |= statement_session_state(statement);
        ControlFlow::Continue(())
    }

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
        if !query.locks.is_empty() || query.for_clause.is_some() {
            self.read_only = false;
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_select(&mut self, select: &Select) -> ControlFlow<()> {
        if let Some(into) = &select.into {
            self.read_only = false;
            self.session_state |= into.temporary;
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
        if let Expr::Function(function) = expr {
            self.call(&function.name, set_config_is_local(function));
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<()> {
        match factor {
            TableFactor::Table {
                name,
                args: Some(_),
                ..
            }
            | TableFactor::Function { name, .. } => self.call(name, false),
            _ => {}
        }
        ControlFlow::Continue(())
    }
}

impl Walk<'_> {
    /// One function call: its session effect, and whether a read may make it.
    fn call(&mut self, name: &ObjectName, local_set_config: bool) {
        let mut parts = Vec::with_capacity(name.0.len());
        for part in &name.0 {
            match part {
                ObjectNamePart::Identifier(ident) => parts.push(match ident.quote_style {
                    None => ident.value.to_ascii_lowercase(),
                    Some(_) => ident.value.clone(),
                }),
                // A name computed by a function: not a PostgreSQL call.
                ObjectNamePart::Function(_) => {
                    self.read_only = false;
                    return;
                }
            }
        }
        let Some(bare) = parts.last() else {
            self.read_only = false;
            return;
        };
        match session_effect(bare) {
            SessionEffect::None => {}
            SessionEffect::SetConfig => self.session_state |= !local_set_config,
            SessionEffect::Session => self.session_state = true,
        }
        if always_primary(bare) {
            self.read_only = false;
            return;
        }
        let schema = parts.len().checked_sub(2).map(|i| parts[i].as_str());
        let key = match schema {
            Some(schema) => format!("{schema}.{bare}"),
            None => bare.clone(),
        };
        let safe = match self.catalog.volatility(&key) {
            Some(v) => v != Volatility::Volatile,
            None => matches!(schema, None | Some("pg_catalog")) && safe_builtin(bare),
        };
        if !safe {
            self.read_only = false;
        }
    }
}

/// `set_config(_, _, true)` with the literal `true`: transaction-local.
fn set_config_is_local(function: &Function) -> bool {
    let FunctionArguments::List(list) = &function.args else {
        return false;
    };
    matches!(
        list.args.as_slice(),
        [_, _, FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::Value(v)))]
            if v.value == Value::Boolean(true)
    )
}

/// Whether one statement (not counting the calls it makes, which the walk
/// sees) may leave state in the session. True for every kind not listed as
/// known to leave none.
fn statement_session_state(statement: &Statement) -> bool {
    match statement {
        // Reads, writes, transaction control: state ends with the
        // transaction or is shared by every session.
        Statement::Query(_)
        | Statement::Insert(_)
        | Statement::Update(_)
        | Statement::Delete(_)
        | Statement::Merge(_)
        | Statement::StartTransaction { .. }
        | Statement::Commit { .. }
        | Statement::Rollback { .. }
        | Statement::Savepoint { .. }
        | Statement::ReleaseSavepoint { .. }
        | Statement::Copy { .. }
        | Statement::Explain { .. }
        | Statement::Execute { .. }
        | Statement::Fetch { .. }
        | Statement::Close { .. }
        | Statement::NOTIFY { .. }
        | Statement::Lock(_)
        | Statement::Truncate(_)
        | Statement::Analyze(_)
        | Statement::Vacuum(_)
        | Statement::ShowVariable { .. } => false,
        // Persistent DDL: visible to every session, nothing stays behind in
        // this one (objects in `pg_temp` are caught by name).
        Statement::CreateIndex(_)
        | Statement::CreateSchema { .. }
        | Statement::CreateDatabase { .. }
        | Statement::CreateFunction(_)
        | Statement::CreateTrigger(_)
        | Statement::CreateType { .. }
        | Statement::CreateDomain(_)
        | Statement::CreateExtension(_)
        | Statement::CreateRole(_)
        | Statement::CreatePolicy(_)
        | Statement::AlterTable(_)
        | Statement::AlterIndex { .. }
        | Statement::AlterView { .. }
        | Statement::AlterRole { .. }
        | Statement::AlterSchema(_)
        | Statement::AlterType(_)
        | Statement::AlterFunction(_)
        | Statement::AlterPolicy(_)
        | Statement::Drop { .. }
        | Statement::DropFunction(_)
        | Statement::DropDomain(_)
        | Statement::DropExtension(_)
        | Statement::DropTrigger(_)
        | Statement::DropPolicy(_)
        | Statement::Grant(_)
        | Statement::Revoke(_)
        | Statement::Comment { .. } => false,
        Statement::CreateTable(table) => table.temporary,
        Statement::CreateView(view) => view.temporary,
        Statement::CreateSequence { temporary, .. } => *temporary,
        Statement::Declare { stmts } => stmts.iter().any(|d| d.hold == Some(true)),
        Statement::Set(set) => !matches!(
            set,
            Set::SingleAssignment {
                scope: Some(ContextModifier::Local),
                ..
            } | Set::SetRole {
                context_modifier: Some(ContextModifier::Local),
                ..
            } | Set::SetTimeZone { local: true, .. }
                | Set::SetTransaction { session: false, .. }
        ),
        // SET/RESET, PREPARE, DEALLOCATE, LISTEN, UNLISTEN, LOAD, DISCARD,
        // CALL (a procedure may run anything, COMMIT included) and all else.
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::pg::pooler::route::FunctionCache;

    fn catalog() -> FunctionCache {
        FunctionCache::from_rows([
            ("public", "my_volatile_function", 'v'),
            ("public", "my_stable_function", 's'),
            ("public", "my_immutable_function", 'i'),
            ("app", "report", 's'),
            ("pg_catalog", "now", 's'),
            ("pg_catalog", "random", 'v'),
            // A catalog that (wrongly) calls nextval stable must not win.
            ("pg_catalog", "nextval", 's'),
            ("public", "lower", 'v'),
            ("public", "Shout", 'v'),
            ("public", "calm", 'i'),
        ])
    }

    fn check(sql: &str) -> Classified {
        classify(sql, &catalog())
    }

    fn standby(sql: &str) {
        assert_eq!(
            check(sql),
            Classified {
                target: Target::Standby,
                session_state: false
            },
            "{sql}"
        );
    }

    fn primary(sql: &str, session_state: bool) {
        assert_eq!(
            check(sql),
            Classified {
                target: Target::Primary,
                session_state
            },
            "{sql}"
        );
    }

    #[test]
    fn plain_reads_go_to_a_standby() {
        standby("SELECT count(*) FROM t WHERE a = ANY($1)");
        standby("WITH x AS (SELECT id FROM t) SELECT * FROM x JOIN u USING (id)");
        standby("SELECT my_stable_function(a), my_immutable_function(b) FROM t");
        standby("SELECT app.report(1)");
        standby("SELECT pg_catalog.now(), CURRENT_TIMESTAMP, coalesce(a, 0) FROM t");
        standby("VALUES (1), (2)");
        standby("SELECT 1 UNION ALL SELECT 2");
        standby("SELECT * FROM generate_series(1, 3)");
        standby("SELECT \"calm\"(1)");
        // public.lower is volatile, pg_catalog.lower is the built-in.
        standby("SELECT pg_catalog.lower(name) FROM t");
    }

    #[test]
    fn hidden_writes_go_to_the_primary() {
        primary(
            "WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d",
            false,
        );
        primary(
            "SELECT * FROM (WITH i AS (INSERT INTO t VALUES (1) RETURNING id) SELECT id FROM i) s",
            false,
        );
        primary("SELECT my_volatile_function()", false);
        primary("SELECT nextval('s')", false);
        primary("SELECT NextVal('s')", false);
        primary("SELECT \"nextval\"('s')", false);
        primary("SELECT * FROM nextval('s')", false);
        primary("SELECT pg_catalog.nextval('s')", false);
        primary(
            "SELECT * FROM t WHERE id = (SELECT max(id) FROM u WHERE my_volatile_function())",
            false,
        );
        primary("SELECT * FROM t ORDER BY random()", false);
        primary(
            "SELECT * FROM t, LATERAL my_volatile_function(t.id) f",
            false,
        );
        primary("SELECT unknown_function(1)", false);
        primary("SELECT lower(name) FROM t", false); // public.lower is volatile
        primary("SELECT shout(1)", false); // "Shout" is another function
        primary("SELECT * FROM t FOR UPDATE", false);
        primary("SELECT * FROM t FOR NO KEY UPDATE", false);
        primary("SELECT * FROM t FOR KEY SHARE SKIP LOCKED", false);
        primary("SELECT * FROM (SELECT * FROM t FOR SHARE) s", false);
        primary("SELECT a INTO b FROM t", false);
        primary("SELECT 1; SELECT 2", false);
        primary("SELECT 1; DELETE FROM t", false);
        primary("EXPLAIN SELECT 1", false);
    }

    #[test]
    fn session_state() {
        primary("SET search_path = app", true);
        primary("SET SESSION work_mem = '64MB'", true);
        primary("SET LOCAL work_mem = '64MB'", false);
        primary("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE", false);
        primary("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY", true);
        primary("SET ROLE admin", true);
        primary("SET SESSION AUTHORIZATION bob", true);
        primary("RESET ALL", true);
        primary("CREATE TEMP TABLE x (a int)", true);
        primary("CREATE TEMPORARY VIEW v AS SELECT 1", true);
        primary("CREATE TABLE pg_temp.x (a int)", true);
        primary("CREATE TABLE x (a int)", false);
        primary("SELECT * INTO TEMP x FROM t", true);
        primary("LISTEN ch", true);
        primary("UNLISTEN *", true);
        primary("NOTIFY ch", false);
        primary("PREPARE p AS SELECT 1", true);
        primary("EXECUTE p", false);
        primary("DEALLOCATE p", true);
        // The session relies on these to look for a client statement to
        // forget only in statements with session state.
        primary("deallocate prepare \"Q\"", true);
        primary("DEALLOCATE ALL", true);
        primary("/* c */ DEALLOCATE p; SELECT 1", true);
        primary("DECLARE c CURSOR WITH HOLD FOR SELECT 1", true);
        primary("DECLARE c CURSOR FOR SELECT 1", false);
        primary("LOAD 'auto_explain'", true);
        primary("DISCARD ALL", true);
        primary("CALL p(1)", true);
        primary("SELECT set_config('a', 'b', false)", true);
        primary("SELECT set_config('a', 'b', $1)", true);
        primary("SELECT set_config('a', 'b', true)", false);
        primary("SELECT pg_advisory_lock(1)", true);
        primary("SELECT pg_try_advisory_lock_shared(1)", true);
        primary("SELECT pg_advisory_xact_lock(1)", false);
        primary("INSERT INTO t VALUES (pg_advisory_lock(1))", true);
        primary("SELECT 1; SET x = 1", true);
        primary("EXPLAIN ANALYZE SELECT set_config('a', 'b', false)", true);
        primary("SELECT U&\"\\0073et_config\"('a', 'b', false)", true);
        primary("DO $$ BEGIN END $$", true);
        primary("this is not sql", true);
        primary("SELECT 1 --x\r; SET search_path = evil", true);
    }

    #[test]
    fn hints() {
        assert_eq!(
            check("/* piha:primary */ WITH x AS (SELECT 1) SELECT * FROM x").target,
            Target::Primary
        );
        assert_eq!(
            check("/* piha:standby */ SELECT my_volatile_function()"),
            Classified {
                target: Target::Standby,
                session_state: false
            }
        );
        assert_eq!(
            check("/* piha:standby */ SET search_path = app"),
            Classified {
                target: Target::Standby,
                session_state: true
            },
            "a hint leaves session_state alone"
        );
        assert_eq!(
            check("SELECT my_volatile_function() /* piha:standby */").target,
            Target::Primary
        );
    }

    #[test]
    fn row_lock_rewrite_keeps_literals() {
        let dialect = PostgreSqlDialect {};
        let mut tokens = Tokenizer::new(
            &dialect,
            "SELECT 'for no key update' FROM t FOR NO KEY UPDATE",
        )
        .tokenize()
        .ok()
        .unwrap_or_default();
        weaken_row_locks(&mut tokens);
        let text: String = tokens.iter().map(|t| t.to_string()).collect();
        assert_eq!(text, "SELECT 'for no key update' FROM t FOR   UPDATE");
    }

    #[test]
    fn empty_and_huge() {
        primary("", false);
        primary(";", false);
        primary("-- nothing", false);
        let huge = format!("SELECT abs(1) {}", "+ 1 ".repeat(PARSE_LIMIT / 4));
        let classified = check(&huge);
        assert_eq!(classified, UNKNOWN, "{}", &huge[..40]);
    }

    /// Cost per call, release build: `cargo test --release --lib
    /// route::classify::tests::cost -- --ignored --nocapture`. Measured on
    /// a shared 2-core AMD EPYC VM (best of four runs; the load made single
    /// runs vary 2-3×): fast path (pgbench `-S`) ~100 ns/op, parsed 3-table
    /// join with a CTE ~41 µs/op, nearly all of it `sqlparser`. A parsed
    /// statement is worth caching by text in the pooler when it repeats
    /// over the simple protocol; a prepared one is classified once at Parse.
    #[test]
    #[ignore]
    fn cost() {
        let catalog = catalog();
        let cases = [
            (
                "fast path, pgbench -S",
                "SELECT abalance FROM pgbench_accounts WHERE aid = $1;",
            ),
            (
                "parsed, 3-table join with a CTE",
                "WITH recent AS (SELECT customer_id, max(created_at) AS last FROM orders \
                 WHERE created_at > now() - interval '30 days' GROUP BY customer_id) \
                 SELECT c.id, c.name, r.last, count(i.id) FROM customers c \
                 JOIN recent r ON r.customer_id = c.id \
                 LEFT JOIN invoices i ON i.customer_id = c.id AND i.status = $1 \
                 GROUP BY c.id, c.name, r.last ORDER BY r.last DESC LIMIT 50",
            ),
        ];
        for (label, sql) in cases {
            let rounds = 200_000;
            let start = Instant::now();
            for _ in 0..rounds {
                std::hint::black_box(classify(std::hint::black_box(sql), &catalog));
            }
            let ns = start.elapsed().as_nanos() / rounds;
            println!("{label}: {ns} ns/op");
        }
    }
}
