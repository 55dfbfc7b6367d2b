//! The read/write routing corpus (tests/fixtures/sql/routing-corpus.txt,
//! format described at its top): every statement is classified and checked
//! against the label a careful DBA gives it.

use std::fmt::Write as _;

use piha::pg::pooler::route::{
    Classified, FunctionCache, FunctionCatalog, Target, classify, classify_fast,
};

const CORPUS: &str = include_str!("fixtures/sql/routing-corpus.txt");

/// The functions the corpus header promises, as `pg_proc` would list them.
fn catalog() -> FunctionCache {
    FunctionCache::from_rows([
        ("public", "my_volatile_function", 'v'),
        ("public", "refresh_cache", 'v'),
        ("public", "create_order", 'v'),
        ("public", "log_event", 'v'),
        ("public", "volatile_srf", 'v'),
        ("app", "next_invoice_number", 'v'),
        ("public", "my_stable_function", 's'),
        ("public", "search_products", 's'),
        ("app", "current_tenant", 's'),
        ("app", "visible_projects", 's'),
        ("public", "my_immutable_function", 'i'),
        ("public", "slugify", 'i'),
        ("public", "similarity", 'i'),
        ("pg_catalog", "random", 'v'),
        ("pg_catalog", "clock_timestamp", 'v'),
        ("pg_catalog", "gen_random_uuid", 'v'),
        ("pg_catalog", "pg_sleep", 'v'),
        ("pg_catalog", "pg_is_in_recovery", 'v'),
        ("pg_catalog", "pg_relation_size", 'v'),
        ("pg_catalog", "format_type", 's'),
        ("pg_catalog", "pg_get_indexdef", 's'),
        ("pg_catalog", "pg_table_is_visible", 's'),
        ("pg_catalog", "hashtext", 'i'),
        ("pg_catalog", "now", 's'),
        ("pg_catalog", "lower", 'i'),
        ("pg_catalog", "count", 'i'),
        // Stable in pg_proc (constant within a transaction), but they hand
        // out a transaction id, which a standby cannot: the classifier's own
        // list must win over the catalog.
        ("pg_catalog", "txid_current", 's'),
        ("pg_catalog", "pg_current_xact_id", 's'),
        ("pg_catalog", "nextval", 'v'),
        ("pg_catalog", "set_config", 'v'),
    ])
}

#[derive(Debug)]
struct Entry {
    line: usize,
    target: Target,
    session: bool,
    missed: bool,
    sql: String,
}

fn corpus() -> Vec<Entry> {
    let mut entries: Vec<Entry> = Vec::new();
    for (index, line) in CORPUS.lines().enumerate() {
        let number = index + 1;
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        if line.starts_with([' ', '\t']) {
            let Some(entry) = entries.last_mut() else {
                panic!("line {number}: continuation without an entry");
            };
            if !entry.sql.is_empty() {
                entry.sql.push('\n');
            }
            entry.sql.push_str(line.trim_start());
            continue;
        }
        let Some((label, sql)) = line.split_once(':') else {
            panic!("line {number}: no `label:`");
        };
        let mut words = label.split_whitespace();
        let target = match words.next() {
            Some("standby") => Target::Standby,
            Some("primary") => Target::Primary,
            other => panic!("line {number}: unknown target {other:?}"),
        };
        let (mut session, mut missed) = (false, false);
        for flag in words {
            match flag {
                "session" => session = true,
                "missed" if target == Target::Standby => missed = true,
                other => panic!("line {number}: unknown flag {other:?}"),
            }
        }
        entries.push(Entry {
            line: number,
            target,
            session,
            missed,
            sql: sql.trim().to_owned(),
        });
    }
    for entry in &entries {
        assert!(
            !entry.sql.is_empty(),
            "line {}: empty statement",
            entry.line
        );
    }
    entries
}

fn show(entry: &Entry, got: Classified) -> String {
    format!(
        "  line {}: got {:?}{}: {}\n",
        entry.line,
        got.target,
        if got.session_state { " +session" } else { "" },
        entry.sql.replace('\n', " ")
    )
}

#[test]
fn corpus_labels_hold() {
    let catalog = catalog();
    let entries = corpus();
    let (mut to_standby, mut to_primary, mut relabel, mut leaks) =
        (String::new(), String::new(), String::new(), String::new());
    let mut conservative = String::new();
    let (mut conservative_session, mut fast, mut standby, mut missed, mut session) =
        (0, 0, 0, 0, 0);
    for entry in &entries {
        let got = classify(&entry.sql, &catalog);
        fast += usize::from(classify_fast(&entry.sql).is_some());
        standby += usize::from(entry.target == Target::Standby && !entry.missed);
        missed += usize::from(entry.missed);
        session += usize::from(entry.session);
        match (entry.target, entry.missed, got.target) {
            (Target::Primary, _, Target::Standby) => to_standby.push_str(&show(entry, got)),
            (Target::Standby, false, Target::Primary) => to_primary.push_str(&show(entry, got)),
            (Target::Standby, true, Target::Standby) => relabel.push_str(&show(entry, got)),
            _ => {}
        }
        if entry.session && !got.session_state {
            leaks.push_str(&show(entry, got));
        }
        if !entry.session && got.session_state {
            conservative_session += 1;
            conservative.push_str(&show(entry, got));
        }
    }
    println!(
        "routing corpus: {} statements ({standby} standby, {missed} standby known missed, {} primary; \
         {session} leave session state); {fast} decided by the fast path; \
         {conservative_session} conservatively flagged as leaving session state",
        entries.len(),
        entries.len() - standby - missed,
    );
    println!("flagged as leaving session state, conservatively:\n{conservative}");
    let mut report = String::new();
    if !to_standby.is_empty() {
        let _ = write!(report, "WRITES SENT TO A STANDBY:\n{to_standby}");
    }
    if !leaks.is_empty() {
        let _ = write!(report, "session state not reported:\n{leaks}");
    }
    if !to_primary.is_empty() {
        let _ = write!(report, "reads sent to the primary:\n{to_primary}");
    }
    if !relabel.is_empty() {
        let _ = write!(
            report,
            "`missed` reads now reach a standby, relabel:\n{relabel}"
        );
    }
    assert!(report.is_empty(), "{report}");
    assert!(entries.len() >= 320, "corpus too small: {}", entries.len());
}

/// Safety must not depend on the catalog having been loaded: with no
/// catalog, stable user functions fall back to the primary, and nothing
/// labelled primary may reach a standby.
#[test]
fn no_write_reaches_a_standby_without_a_catalog() {
    let empty = FunctionCache::empty();
    let mut report = String::new();
    let mut lost = 0;
    for entry in corpus() {
        let got = classify(&entry.sql, &empty);
        if entry.target == Target::Primary && got.target == Target::Standby {
            report.push_str(&show(&entry, got));
        }
        if entry.session && !got.session_state {
            report.push_str(&show(&entry, got));
        }
        lost += usize::from(entry.target == Target::Standby && got.target == Target::Primary);
    }
    println!("without a catalog, {lost} standby-labelled reads go to the primary");
    assert!(report.is_empty(), "without a catalog:\n{report}");
}

/// The shape the fast path promises to decide: a bare `SELECT` (no comment,
/// no bracket, at most a trailing `;`, no `INTO`, no `FOR`).
fn fast_path_shape(sql: &str) -> bool {
    let text = sql.trim();
    let words: Vec<String> = text
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '$'))
        .filter(|w| !w.is_empty())
        .map(str::to_ascii_lowercase)
        .collect();
    let body = text.trim_end_matches([';', ' ', '\n', '\t']);
    words.first().is_some_and(|w| w == "select")
        && !text.contains(['(', ')'])
        && !body.contains(';')
        && !text.contains("/*")
        && !text.contains("--")
        && !words.iter().any(|w| w == "into" || w == "for")
}

#[test]
fn fast_path_shapes_take_the_fast_path() {
    let catalog = catalog();
    let mut report = String::new();
    let mut shaped = 0;
    for entry in corpus() {
        if entry.target != Target::Standby || !fast_path_shape(&entry.sql) {
            continue;
        }
        shaped += 1;
        let fast = classify_fast(&entry.sql);
        if fast.map(|c| c.target) != Some(Target::Standby) {
            let _ = writeln!(report, "  line {}: {:?}: {}", entry.line, fast, entry.sql);
        }
        assert_eq!(
            fast,
            Some(classify(&entry.sql, &catalog)),
            "line {}",
            entry.line
        );
    }
    println!("{shaped} standby statements in the fast-path shape");
    assert!(
        shaped >= 20,
        "only {shaped} fast-path shaped reads in the corpus"
    );
    assert!(report.is_empty(), "fast-path shapes not taken:\n{report}");
}

/// The pooler may bring its own `FunctionCatalog`: the public contract is
/// usable from outside the crate as is.
#[test]
fn contract_is_usable_from_outside() {
    struct Nothing;
    impl FunctionCatalog for Nothing {
        fn volatility(&self, _: &str) -> Option<piha::pg::pooler::route::Volatility> {
            None
        }
    }
    let c = classify("SELECT my_stable_function()", &Nothing);
    assert_eq!(c.target, Target::Primary);
    assert!(!c.session_state);
}

/// Truncated statements (every prefix of every corpus entry), cut inside
/// literals, comments and brackets, are what a confused client or a fuzzer
/// sends: the classifier must answer, never panic.
#[test]
fn prefixes_never_panic() {
    let catalog = catalog();
    let mut calls = 0;
    for entry in corpus() {
        for (at, _) in entry.sql.char_indices() {
            std::hint::black_box(classify(&entry.sql[..at], &catalog));
            calls += 1;
        }
    }
    println!("{calls} prefixes classified");
}
