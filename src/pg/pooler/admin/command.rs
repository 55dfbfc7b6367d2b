//! What a console query asks for. The grammar is PgBouncer's: one word,
//! perhaps one argument (a bare word or a "quoted" name), perhaps a
//! semicolon; keywords in any case.

/// One parsed console command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// An empty query (psql sends one for a lone `;`).
    Empty,
    Show(Show),
    Pause(Option<String>),
    Resume(Option<String>),
    Reload,
    /// `SET name = value` of one of the session settings drivers like to
    /// set: accepted and ignored, as PgBouncer does.
    SetIgnored,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Show {
    Help,
    Pools,
    Clients,
    Servers,
    Stats,
    StatsTotals,
    StatsAverages,
    Databases,
    Users,
    Lists,
    Config,
    Version,
    State,
    /// `SHOW client_encoding` and the like: a fixed value (PgBouncer's
    /// "fake" parameters, for drivers that ask).
    Param(&'static str, &'static str),
}

/// Why a query is not a command: SQLSTATE and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub code: &'static str,
    pub message: String,
}

/// What SHOW HELP prints and an unknown command's error lists.
pub const USAGE: &str = "\
SHOW HELP|POOLS|CLIENTS|SERVERS|DATABASES|USERS|VERSION|STATE
SHOW STATS|STATS_TOTALS|STATS_AVERAGES|LISTS|CONFIG
PAUSE [<db>]
RESUME [<db>]
RELOAD";

/// Session settings a driver may SET or SHOW on connecting (PgBouncer's
/// list): answered with a fixed value, never an error.
const PARAMS: &[(&str, &str)] = &[
    ("client_encoding", "UTF8"),
    ("default_transaction_isolation", "read committed"),
    ("standard_conforming_strings", "on"),
    ("datestyle", "ISO"),
    ("timezone", "GMT"),
    ("extra_float_digits", "2"),
];

const SHOWS: &[(&str, Show)] = &[
    ("help", Show::Help),
    ("pools", Show::Pools),
    ("clients", Show::Clients),
    ("servers", Show::Servers),
    ("stats", Show::Stats),
    ("stats_totals", Show::StatsTotals),
    ("stats_averages", Show::StatsAverages),
    ("databases", Show::Databases),
    ("users", Show::Users),
    ("lists", Show::Lists),
    ("config", Show::Config),
    ("version", Show::Version),
    ("state", Show::State),
];

fn syntax(message: impl Into<String>) -> Refused {
    Refused {
        code: crate::pg::wire::backend::sqlstate::SYNTAX_ERROR,
        message: message.into(),
    }
}

fn unknown(text: &str) -> Refused {
    let shown: String = text.chars().take(80).collect();
    syntax(format!(
        "invalid command '{shown}'; the piha console knows: {}",
        USAGE.replace('\n', "; ")
    ))
}

pub fn parse(text: &str) -> Result<Command, Refused> {
    let trimmed = text.trim();
    let body = trimmed.strip_suffix(';').unwrap_or(trimmed).trim_end();
    if body.is_empty() {
        return Ok(Command::Empty);
    }
    if body.contains(';') {
        return Err(syntax(
            "one command per query: the piha console does not run several at once",
        ));
    }
    let (word, rest) = match body.split_once(char::is_whitespace) {
        Some((w, r)) => (w, r.trim()),
        None => (body, ""),
    };
    let word = word.to_ascii_lowercase();
    if word == "set" {
        return set(rest).ok_or_else(|| unknown(trimmed));
    }
    let arg = argument(rest).ok_or_else(|| unknown(trimmed))?;
    match (word.as_str(), arg) {
        ("show", Some(what)) => show(&what).ok_or_else(|| unknown(trimmed)),
        ("pause", db) => Ok(Command::Pause(db)),
        ("resume", db) => Ok(Command::Resume(db)),
        ("reload", None) => Ok(Command::Reload),
        _ => Err(unknown(trimmed)),
    }
}

/// No argument, one bare word, or one double-quoted name (`""` inside
/// stands for `"`). `None` when it is anything else.
fn argument(rest: &str) -> Option<Option<String>> {
    if rest.is_empty() {
        return Some(None);
    }
    if let Some(inner) = rest.strip_prefix('"') {
        let inner = inner.strip_suffix('"')?;
        let unquoted = inner.replace("\"\"", "\"");
        // A lone quote left inside means the quoting did not close where
        // it seemed to.
        if unquoted.is_empty() || inner.replace("\"\"", "").contains('"') {
            return None;
        }
        return Some(Some(unquoted));
    }
    let bare = rest
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.');
    bare.then(|| Some(rest.to_string()))
}

fn show(what: &str) -> Option<Command> {
    let lower = what.to_ascii_lowercase();
    if let Some((_, s)) = SHOWS.iter().find(|(name, _)| *name == lower) {
        return Some(Command::Show(*s));
    }
    PARAMS
        .iter()
        .find(|(name, _)| *name == lower)
        .map(|(name, value)| Command::Show(Show::Param(name, value)))
}

/// `SET name = value` / `SET name TO value` for a known session setting.
fn set(rest: &str) -> Option<Command> {
    let name_end = rest.find(|c: char| c.is_whitespace() || c == '=')?;
    let name = rest[..name_end].to_ascii_lowercase();
    let after = rest[name_end..].trim_start();
    let has_value = match after.strip_prefix('=') {
        Some(v) => !v.trim().is_empty(),
        None => after
            .get(..3)
            .is_some_and(|to| to.eq_ignore_ascii_case("to ") && !after[3..].trim().is_empty()),
    };
    (has_value && PARAMS.iter().any(|(p, _)| *p == name)).then_some(Command::SetIgnored)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_in_any_case_with_or_without_a_semicolon() {
        assert_eq!(parse("SHOW POOLS"), Ok(Command::Show(Show::Pools)));
        assert_eq!(parse("  show pools ;  "), Ok(Command::Show(Show::Pools)));
        assert_eq!(
            parse("Show Stats_Totals;"),
            Ok(Command::Show(Show::StatsTotals))
        );
        assert_eq!(parse("pause"), Ok(Command::Pause(None)));
        assert_eq!(parse("PAUSE app;"), Ok(Command::Pause(Some("app".into()))));
        assert_eq!(
            parse(r#"RESUME "My ""db""";"#),
            Ok(Command::Resume(Some(r#"My "db""#.into())))
        );
        assert_eq!(parse("reload;"), Ok(Command::Reload));
        assert_eq!(parse(";"), Ok(Command::Empty));
        assert_eq!(parse(""), Ok(Command::Empty));
        assert_eq!(
            parse("show client_encoding"),
            Ok(Command::Show(Show::Param("client_encoding", "UTF8")))
        );
        assert_eq!(parse("SET extra_float_digits = 3"), Ok(Command::SetIgnored));
        assert_eq!(parse("set DateStyle to ISO"), Ok(Command::SetIgnored));
    }

    #[test]
    fn anything_else_is_a_syntax_error_that_lists_the_commands() {
        for bad in [
            "SELECT 1",
            "SHOW",
            "SHOW NOPE",
            "RELOAD now",
            "PAUSE a b",
            "PAUSE \"open",
            "PAUSE \"a\"b\"",
            "SHOW POOLS; SHOW STATS",
            "SET pool_size = 3",
            "SET client_encoding",
        ] {
            let e = parse(bad).expect_err(bad);
            assert_eq!(e.code, "42601", "{bad}");
            if !bad.contains("; S") {
                assert!(
                    e.message.contains("SHOW HELP|POOLS"),
                    "{bad}: {}",
                    e.message
                );
            }
        }
    }
}
