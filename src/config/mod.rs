//! The cluster file (`cluster.toml`): schema, validation with line/column
//! diagnostics, the search order, and the hostname -> role plan.
//!
//! Loading runs in three passes: TOML syntax (toml's parser), shape (`raw`:
//! known keys, value types) and meaning (`validate`, `checks`: addresses,
//! durations, rules across nodes). Every mistake found is reported, each with
//! its line and column; only a syntax error stops the later passes, since a
//! half-parsed file would produce misleading follow-on errors.

mod balancer_settings;
mod checks;
mod db_settings;
mod diagnostic;
mod listeners;
mod model;
mod overlay;
mod plan;
mod postgres_settings;
mod raw;
mod raw_db;
mod raw_postgres;
mod raw_sections;
mod raw_storage;
mod raw_vrrp;
mod roles;
mod search;
mod storage_settings;
mod suggest;
mod validate;
pub mod values;
mod vrrp_settings;
mod web_settings;

pub use diagnostic::Diagnostic;
pub use model::*;
pub use search::{DEFAULT_PATHS, find_config, find_config_in};
pub use values::pg_name;

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use diagnostic::Report;

/// A cluster file is a few KiB; anything past this is the wrong file (an
/// image, a log) and is refused before it is parsed.
pub const MAX_FILE_BYTES: u64 = 1 << 20;

/// Every way the cluster file can be unusable. `Display` is what a person
/// reads: each diagnostic names file, line and column.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{}: the file is larger than {} KiB; a cluster file is a few KiB, is this the right file?",
        path.display(),
        limit / 1024
    )]
    TooLarge { path: PathBuf, limit: u64 },
    #[error("{}", Invalid { path, diagnostics })]
    Invalid {
        path: PathBuf,
        diagnostics: Vec<Diagnostic>,
    },
    #[error(
        "no node \"{host}\" in {}: known hosts: {}; patterns: {}",
        path.display(),
        list_or_none(known),
        list_or_none(patterns)
    )]
    UnknownHost {
        host: String,
        path: PathBuf,
        known: Vec<String>,
        patterns: Vec<String>,
    },
    #[error("{}", NotFound(tried))]
    NotFound { tried: Vec<PathBuf> },
}

/// Reads, parses and validates the file at `path`.
pub fn load(path: &Path) -> Result<ClusterConfig, ConfigError> {
    let bytes = read_limited(path)?;
    match std::str::from_utf8(&bytes) {
        Ok(text) => parse(text, path),
        Err(e) => {
            // Point at the first bad byte: usually a file saved as Latin-1 by
            // a desktop editor, with an accented letter in a comment.
            let text = String::from_utf8_lossy(&bytes);
            let at = e.valid_up_to();
            let mut report = Report::new(path, &text);
            report
                .error(at..at + 1, "the file is not UTF-8 text")
                .help("save it as UTF-8 (most editors offer this under \"Save As\")");
            Err(ConfigError::Invalid {
                path: path.to_path_buf(),
                diagnostics: report.into_diagnostics(),
            })
        }
    }
}

/// Parses and validates `text`, the contents of the file at `path` (used in
/// messages, and to find a relative `admin_token_file`).
pub fn parse(text: &str, path: &Path) -> Result<ClusterConfig, ConfigError> {
    let mut report = Report::new(path, text);
    let (root, syntax_errors) = toml::de::DeTable::parse_recoverable(text);
    if !syntax_errors.is_empty() {
        syntax(text, &syntax_errors, &mut report);
        return Err(invalid(path, report));
    }
    let raw = raw::read_file(root.get_ref(), &mut report);
    let source = ConfigSource {
        path: path.to_path_buf(),
        hash: hash(text.as_bytes()),
    };
    match validate::validate(&raw, source, &mut report) {
        Some(config) if !report.has_errors() => Ok(config),
        _ => Err(invalid(path, report)),
    }
}

fn invalid(path: &Path, report: Report<'_>) -> ConfigError {
    ConfigError::Invalid {
        path: path.to_path_buf(),
        diagnostics: report.into_diagnostics(),
    }
}

/// The parser recovers and goes on after an error, which can yield several
/// errors for one slip on one line; the first per line is the one that says
/// what happened.
fn syntax(text: &str, errors: &[toml::de::Error], report: &mut Report<'_>) {
    let mut lines_seen = Vec::new();
    for e in errors {
        let span = e.span().unwrap_or(0..0);
        let line = report.line_of(span.start);
        if lines_seen.contains(&line) {
            continue;
        }
        lines_seen.push(line);
        let message = e.message().trim().replace('\n', "; ");
        let message = match text.get(span.clone()) {
            Some(key) if message.starts_with("duplicate key") && !key.is_empty() => {
                format!("TOML syntax error: `{key}` is defined twice in the same table")
            }
            _ => format!("TOML syntax error: {message}"),
        };
        let d = report.error(span, message);
        if let Some(hint) = text.lines().nth(line - 1).and_then(unquoted_text_hint) {
            d.help(hint);
        }
    }
}

/// `address = 192.0.2.11/24`: the commonest slip in a hand-edited file,
/// which TOML reports as a malformed number. Say what was meant.
fn unquoted_text_hint(line: &str) -> Option<String> {
    let (key, value) = line.split_once('=')?;
    let key = key.trim();
    let value = value.split('#').next().unwrap_or("").trim();
    let bare_key = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    let quoted_or_structured = value.starts_with(['"', '\'', '[', '{']);
    let literal = value == "true" || value == "false" || value.parse::<f64>().is_ok();
    if !bare_key || value.is_empty() || quoted_or_structured || literal {
        return None;
    }
    Some(format!("text values need quotes: {key} = \"{value}\""))
}

fn read_limited(path: &Path) -> Result<Vec<u8>, ConfigError> {
    let io = |source| ConfigError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut bytes = Vec::new();
    // Read one byte past the limit to tell "exactly the limit" from "more".
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(ConfigError::TooLarge {
            path: path.to_path_buf(),
            limit: MAX_FILE_BYTES,
        });
    }
    Ok(bytes)
}

/// First 16 hex digits of SHA-256: enough to tell two versions of the file
/// apart in a status page or a log line.
fn hash(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn list_or_none(items: &[String]) -> String {
    if items.is_empty() {
        "none".to_string()
    } else {
        items.join(", ")
    }
}

/// Display helper: every diagnostic, then a count.
struct Invalid<'a> {
    path: &'a Path,
    diagnostics: &'a [Diagnostic],
}

impl fmt::Display for Invalid<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for d in self.diagnostics {
            writeln!(f, "{d}\n")?;
        }
        let n = self.diagnostics.len();
        let plural = if n == 1 { "" } else { "s" };
        write!(f, "{}: {n} error{plural}", self.path.display())
    }
}

/// Display helper: the paths tried.
struct NotFound<'a>(&'a [PathBuf]);

impl fmt::Display for NotFound<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            [one] => write!(f, "cluster file {} does not exist", one.display()),
            tried => {
                let list: Vec<String> = tried.iter().map(|p| p.display().to_string()).collect();
                write!(
                    f,
                    "no cluster file found; tried {} (give one with --config FILE)",
                    list.join(", ")
                )
            }
        }
    }
}

#[cfg(test)]
mod tests;
