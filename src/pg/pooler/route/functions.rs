//! Function names the classifier knows without asking the catalog.

/// Calls that send a statement to the primary whatever the catalog says:
/// they write (sequences, large objects, NOTIFY), hand out a transaction id
/// (which a standby cannot), take locks only the primary's lock table
/// coordinates, reach outside the server (dblink), or read and change state
/// that only the session holds (`currval`, `lastval`, `set_config`,
/// `setseed`). Matched on the bare name, ASCII case-insensitively, in any
/// schema.
const PRIMARY_NAMES: &[&str] = &[
    "currval",
    "lastval",
    "nextval",
    "pg_notify",
    "set_config",
    "setseed",
    "setval",
];
const PRIMARY_PREFIXES: &[&str] = &[
    "dblink",
    "lo_",
    "pg_advisory_",
    "pg_current_xact_id",
    "pg_try_advisory_",
    "txid_current",
];

/// Whether a call to `bare` always means the primary.
pub(super) fn always_primary(bare: &str) -> bool {
    PRIMARY_NAMES.iter().any(|n| bare.eq_ignore_ascii_case(n))
        || PRIMARY_PREFIXES.iter().any(|p| starts_with_ci(bare, p))
}

/// What calling a function does to the server session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SessionEffect {
    /// Nothing the classifier knows of.
    None,
    /// Leaves state in the session: session-level advisory locks (held until
    /// unlocked or the session ends), dblink connections, the random seed.
    Session,
    /// `set_config(name, value, is_local)`: session state unless `is_local`
    /// is the literal `true` (PostgREST sets its request claims that way at
    /// the start of every transaction).
    SetConfig,
}

/// Calls that leave session state; `dblink*` and `set_config` besides.
const SESSION_NAMES: &[&str] = &[
    "pg_advisory_lock",
    "pg_advisory_lock_shared",
    "pg_try_advisory_lock",
    "pg_try_advisory_lock_shared",
    "setseed",
];

/// The session effect of calling `bare` (any schema, ASCII case-insensitive).
pub(super) fn session_effect(bare: &str) -> SessionEffect {
    if bare.eq_ignore_ascii_case("set_config") {
        SessionEffect::SetConfig
    } else if SESSION_NAMES.iter().any(|n| bare.eq_ignore_ascii_case(n))
        || starts_with_ci(bare, "dblink")
    {
        SessionEffect::Session
    } else {
        SessionEffect::None
    }
}

/// Substrings the fast path looks for before it calls a write free of
/// session state: every name [`session_effect`] flags contains one of them
/// (a unit test checks), so a statement without any cannot call one.
pub(super) const SESSION_NEEDLES: &[&str] = &["advisory_lock", "dblink", "set_config", "setseed"];

/// Well-known functions a plain read may call when the catalog has not
/// been loaded or does not know the name: every overload is immutable or
/// stable in `pg_proc` (PostgreSQL 13–18), or the name is an SQL construct
/// that `sqlparser` presents as a call (`coalesce`, `greatest`, `row`,
/// `array`, `current_timestamp`, ...). Only unqualified or `pg_catalog.`
/// calls qualify, and a catalog answer always wins. Deliberately absent,
/// though they write nothing: `random`, `clock_timestamp`, `timeofday`,
/// `gen_random_uuid`, `pg_sleep`, `pg_relation_size` and the like are
/// volatile, and volatile means primary. Sorted (binary search).
const SAFE_BUILTINS: &[&str] = &[
    "abs",
    "age",
    "any_value",
    "array",
    "array_agg",
    "array_append",
    "array_cat",
    "array_length",
    "array_lower",
    "array_position",
    "array_positions",
    "array_prepend",
    "array_remove",
    "array_replace",
    "array_to_json",
    "array_to_string",
    "array_upper",
    "ascii",
    "avg",
    "bit_and",
    "bit_or",
    "bool_and",
    "bool_or",
    "btrim",
    "cardinality",
    "ceil",
    "ceiling",
    "char_length",
    "character_length",
    "chr",
    "coalesce",
    "concat",
    "concat_ws",
    "count",
    "cume_dist",
    "current_catalog",
    "current_database",
    "current_date",
    "current_role",
    "current_schema",
    "current_setting",
    "current_time",
    "current_timestamp",
    "current_user",
    "date_bin",
    "date_part",
    "date_trunc",
    "decode",
    "dense_rank",
    "div",
    "encode",
    "every",
    "exp",
    "extract",
    "first_value",
    "floor",
    "format",
    "generate_series",
    "generate_subscripts",
    "greatest",
    "inet_server_addr",
    "initcap",
    "json_agg",
    "json_array_elements",
    "json_array_elements_text",
    "json_array_length",
    "json_build_array",
    "json_build_object",
    "json_each",
    "json_each_text",
    "json_extract_path",
    "json_extract_path_text",
    "json_object_agg",
    "json_object_keys",
    "json_typeof",
    "jsonb_agg",
    "jsonb_array_elements",
    "jsonb_array_elements_text",
    "jsonb_array_length",
    "jsonb_build_array",
    "jsonb_build_object",
    "jsonb_each",
    "jsonb_each_text",
    "jsonb_extract_path",
    "jsonb_extract_path_text",
    "jsonb_insert",
    "jsonb_object_agg",
    "jsonb_object_keys",
    "jsonb_path_exists",
    "jsonb_path_query",
    "jsonb_path_query_array",
    "jsonb_path_query_first",
    "jsonb_pretty",
    "jsonb_set",
    "jsonb_strip_nulls",
    "jsonb_typeof",
    "justify_days",
    "justify_hours",
    "justify_interval",
    "lag",
    "last_value",
    "lead",
    "least",
    "left",
    "length",
    "ln",
    "localtime",
    "localtimestamp",
    "log",
    "lower",
    "lpad",
    "ltrim",
    "make_date",
    "make_interval",
    "make_time",
    "make_timestamp",
    "make_timestamptz",
    "max",
    "md5",
    "min",
    "mod",
    "mode",
    "now",
    "nth_value",
    "ntile",
    "nullif",
    "num_nonnulls",
    "num_nulls",
    "octet_length",
    "percent_rank",
    "percentile_cont",
    "percentile_disc",
    "pg_size_pretty",
    "plainto_tsquery",
    "power",
    "quote_ident",
    "quote_literal",
    "quote_nullable",
    "rank",
    "regexp_match",
    "regexp_matches",
    "regexp_replace",
    "regexp_split_to_array",
    "regexp_split_to_table",
    "repeat",
    "replace",
    "reverse",
    "right",
    "round",
    "row",
    "row_number",
    "row_to_json",
    "rpad",
    "rtrim",
    "session_user",
    "sign",
    "split_part",
    "sqrt",
    "starts_with",
    "statement_timestamp",
    "stddev",
    "stddev_pop",
    "stddev_samp",
    "string_agg",
    "string_to_array",
    "strpos",
    "substr",
    "substring",
    "sum",
    "to_char",
    "to_date",
    "to_json",
    "to_jsonb",
    "to_number",
    "to_timestamp",
    "to_tsquery",
    "to_tsvector",
    "transaction_timestamp",
    "translate",
    "trim",
    "trunc",
    "ts_headline",
    "ts_rank",
    "ts_rank_cd",
    "unnest",
    "upper",
    "user",
    "var_pop",
    "var_samp",
    "variance",
    "version",
    "websearch_to_tsquery",
    "width_bucket",
];

/// Whether `name` (already folded, see `FunctionCatalog`) is a well-known
/// immutable or stable built-in.
pub(super) fn safe_builtin(name: &str) -> bool {
    SAFE_BUILTINS.binary_search(&name).is_ok()
}

fn starts_with_ci(s: &str, prefix: &str) -> bool {
    s.len() >= prefix.len() && s.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_sorted_and_disjoint_from_primary() {
        assert!(SAFE_BUILTINS.windows(2).all(|w| w[0] < w[1]));
        for name in SAFE_BUILTINS {
            assert!(!always_primary(name), "{name}");
            assert_eq!(session_effect(name), SessionEffect::None, "{name}");
        }
        assert!(safe_builtin("count"));
        assert!(!safe_builtin("COUNT"), "names arrive folded");
        assert!(!safe_builtin("random"));
    }

    #[test]
    fn primary_names() {
        for name in [
            "nextval",
            "NEXTVAL",
            "setval",
            "currval",
            "lastval",
            "pg_advisory_lock",
            "pg_advisory_xact_lock",
            "pg_advisory_unlock_all",
            "pg_try_advisory_lock_shared",
            "set_config",
            "pg_notify",
            "lo_create",
            "lo_unlink",
            "txid_current",
            "txid_current_if_assigned",
            "pg_current_xact_id",
            "dblink_exec",
            "dblink",
            "setseed",
        ] {
            assert!(always_primary(name), "{name}");
        }
        for name in ["now", "count", "lower", "my_function", "lo", "next"] {
            assert!(!always_primary(name), "{name}");
        }
    }

    #[test]
    fn session_effects_and_needles_agree() {
        let extra = [
            "PG_TRY_ADVISORY_LOCK_SHARED",
            "dblink",
            "dblink_connect_u",
            "set_config",
        ];
        for name in SESSION_NAMES.iter().chain(&extra) {
            assert_ne!(session_effect(name), SessionEffect::None, "{name}");
            let lower = name.to_ascii_lowercase();
            assert!(
                SESSION_NEEDLES.iter().any(|n| lower.contains(n)),
                "{name} escapes the fast path's needles"
            );
        }
        assert_eq!(session_effect("set_config"), SessionEffect::SetConfig);
        for name in [
            "pg_advisory_xact_lock",
            "pg_advisory_xact_lock_shared",
            "pg_try_advisory_xact_lock",
            "pg_advisory_unlock",
            "nextval",
            "now",
        ] {
            assert_eq!(session_effect(name), SessionEffect::None, "{name}");
        }
    }
}
