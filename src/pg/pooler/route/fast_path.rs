//! The fast path: the statement shapes that make up nearly all of an OLTP
//! load (pgbench's five statements among them), decided by one scan of the
//! bytes, without the parser, the catalog or an allocation.
//!
//! Each rule only ever says "I am sure"; everything else returns `None` and
//! goes to the parser. The scan does not know string literals, quoted
//! identifiers or comments after the first token, and does not need to:
//! their contents can only add brackets, semicolons and words, which make a
//! rule decline, never accept.

use super::functions::SESSION_NEEDLES;
use super::lex::{contains_ci, first_word, leading, plain_select, single_statement};
use super::{Classified, Target};

/// The fast path alone: `Some` when the statement is decided without the
/// parser or the catalog, `None` when it needs [`classify`](super::classify),
/// which calls this first. Hints apply as in `classify`.
///
/// Accepted shapes, each a single statement (a `;` only at the end):
/// * `SELECT` with no `(` anywhere and no word `INTO` or `FOR`: no function
///   can be called without brackets (the SQL keywords that can, such as
///   `CURRENT_TIMESTAMP`, are stable), and only `INTO` and `FOR …` turn a
///   bracket-free SELECT into something a standby refuses → standby.
/// * `INSERT`, `UPDATE`, `DELETE`, `MERGE` → primary; free of session state
///   when the text mentions none of the functions that leave it (and no `&`,
///   which would allow a `U&"…"` name to spell one).
/// * `BEGIN`, `START`, `COMMIT`, `END`, `ROLLBACK`, `ABORT`, `SAVEPOINT`,
///   `RELEASE` → primary, no session state.
pub fn classify_fast(sql: &str) -> Option<Classified> {
    let lead = leading(sql);
    let mut classified = shape(lead.rest)?;
    if let Some(target) = lead.hint {
        classified.target = target;
    }
    Some(classified)
}

fn shape(text: &str) -> Option<Classified> {
    let word = first_word(text);
    let is = |keyword: &str| word.eq_ignore_ascii_case(keyword);
    if is("select") {
        return plain_select(text).then_some(Classified {
            target: Target::Standby,
            session_state: false,
        });
    }
    if !single_statement(text) {
        return None;
    }
    if is("insert") || is("update") || is("delete") || is("merge") {
        let stateless =
            !text.contains('&') && !SESSION_NEEDLES.iter().any(|n| contains_ci(text, n));
        stateless.then_some(Classified {
            target: Target::Primary,
            session_state: false,
        })
    } else if [
        "begin",
        "start",
        "commit",
        "end",
        "rollback",
        "abort",
        "savepoint",
        "release",
    ]
    .iter()
    .any(|k| is(k))
    {
        Some(Classified {
            target: Target::Primary,
            session_state: false,
        })
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STANDBY: Option<Classified> = Some(Classified {
        target: Target::Standby,
        session_state: false,
    });
    const PRIMARY: Option<Classified> = Some(Classified {
        target: Target::Primary,
        session_state: false,
    });

    /// The statements of pgbench's built-in scripts (tpcb-like,
    /// simple-update, select-only), as `-M simple` sends them with the
    /// variables substituted and as `-M extended/prepared` sends them.
    #[test]
    fn pgbench_statements_take_the_fast_path() {
        let cases = [
            ("BEGIN;", PRIMARY),
            ("END;", PRIMARY),
            (
                "SELECT abalance FROM pgbench_accounts WHERE aid = 123;",
                STANDBY,
            ),
            (
                "SELECT abalance FROM pgbench_accounts WHERE aid = $1",
                STANDBY,
            ),
            (
                "UPDATE pgbench_accounts SET abalance = abalance + -1 WHERE aid = 5;",
                PRIMARY,
            ),
            (
                "UPDATE pgbench_accounts SET abalance = abalance + $1 WHERE aid = $2",
                PRIMARY,
            ),
            (
                "UPDATE pgbench_tellers SET tbalance = tbalance + 42 WHERE tid = 7;",
                PRIMARY,
            ),
            (
                "UPDATE pgbench_branches SET bbalance = bbalance + $1 WHERE bid = $2",
                PRIMARY,
            ),
            (
                "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (1, 2, 3, 4, CURRENT_TIMESTAMP);",
                PRIMARY,
            ),
            (
                "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES ($1, $2, $3, $4, CURRENT_TIMESTAMP)",
                PRIMARY,
            ),
        ];
        for (sql, expected) in cases {
            assert_eq!(classify_fast(sql), expected, "{sql}");
        }
    }

    #[test]
    fn declines_what_it_cannot_prove() {
        for sql in [
            "SELECT nextval('s')",
            "SELECT * FROM t FOR UPDATE",
            "select * from t for\nshare",
            "SELECT a INTO b FROM t",
            "SELECT 1; DELETE FROM t",
            "SELECT ';'",
            "WITH x AS (DELETE FROM t RETURNING *) SELECT * FROM x",
            "(SELECT 1)",
            "SET search_path = app",
            "INSERT INTO t VALUES (pg_advisory_lock(1))",
            "UPDATE t SET a = pg_catalog.SET_CONFIG('x', 'y', false)",
            "DELETE FROM t WHERE a = dblink_exec('x')",
            "INSERT INTO t VALUES (U&\"\\0073et_config\"('a', 'b', false))",
            "BEGIN; DELETE FROM t",
            "/* open comment SELECT 1",
            "",
            "-- only a comment",
            "selector",
            "TABLE t",
        ] {
            assert_eq!(classify_fast(sql), None, "{sql}");
        }
    }

    #[test]
    fn accepts_common_shapes() {
        assert_eq!(
            classify_fast("  select * from users where id = $1 ;\n"),
            STANDBY
        );
        assert_eq!(classify_fast("SELECT*FROM t"), STANDBY);
        assert_eq!(
            classify_fast("-- find it\nSELECT name FROM t WHERE format = 'x'"),
            STANDBY
        );
        assert_eq!(classify_fast("SELECT CURRENT_TIMESTAMP"), STANDBY);
        assert_eq!(classify_fast("delete from t where id = $1"), PRIMARY);
        assert_eq!(classify_fast("ROLLBACK"), PRIMARY);
        assert_eq!(classify_fast("COMMIT;"), PRIMARY);
        assert_eq!(
            classify_fast("START TRANSACTION ISOLATION LEVEL SERIALIZABLE"),
            PRIMARY
        );
    }

    #[test]
    fn hints_override_the_target_only() {
        assert_eq!(
            classify_fast("/* piha:primary */ SELECT 1"),
            PRIMARY,
            "a read kept on the primary"
        );
        assert_eq!(
            classify_fast("/* piha:standby */ DELETE FROM t"),
            STANDBY,
            "the user promised"
        );
        assert_eq!(classify_fast("SELECT 1 /* piha:primary */"), STANDBY);
    }
}
