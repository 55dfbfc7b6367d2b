//! `piha pg-secret --user NAME`: the credentials of the Postgres pooler's own
//! login, made from a password that is then forgotten. PostgreSQL gets the
//! SCRAM verifier (it can check a login, not make one); the cluster file
//! gets the SCRAM keys (they can log in, so the file must stay private, but
//! they are not the password and work nowhere else).

use std::io::{BufRead, IsTerminal, Write};

use anyhow::{Context, bail};
use rand::RngCore;

use crate::cli::PgSecretArgs;
use crate::pg::auth::ScramKeys;
use crate::pg::auth::secret::DEFAULT_ITERATIONS;

/// Longer than any password a person types or pastes; a longer stdin is
/// the wrong input (a file piped by mistake).
const MAX_PASSWORD_BYTES: u64 = 4096;

pub fn run(args: &PgSecretArgs) -> anyhow::Result<()> {
    crate::config::pg_name(&args.user, "the user name").map_err(anyhow::Error::msg)?;
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        // No echo suppression: the prompt only says what is awaited.
        eprint!("password for PostgreSQL role {}: ", args.user);
        std::io::stderr().flush().ok();
    }
    let password = read_password(stdin.lock())?;
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let keys = ScramKeys::derive(&password, &salt, DEFAULT_ITERATIONS);
    let mut out = std::io::stdout().lock();
    out.write_all(render(&args.user, &keys).as_bytes())
        .context("cannot write to stdout")?;
    Ok(())
}

/// The first line of `input`, without its line ending.
pub fn read_password(input: impl BufRead) -> anyhow::Result<String> {
    let mut line = Vec::new();
    input
        .take(MAX_PASSWORD_BYTES + 1)
        .read_until(b'\n', &mut line)
        .context("cannot read the password from stdin")?;
    if line.last() == Some(&b'\n') {
        line.pop();
        if line.last() == Some(&b'\r') {
            line.pop();
        }
    } else if line.len() as u64 > MAX_PASSWORD_BYTES {
        bail!(
            "the password is longer than {MAX_PASSWORD_BYTES} bytes; give it as one line on stdin"
        );
    }
    if line.is_empty() {
        bail!(
            "empty password: give it as one line on stdin, e.g. piha pg-secret --user piha < password-file"
        );
    }
    String::from_utf8(line).context("the password is not UTF-8 text")
}

/// The four lines printed: what each is for, then the thing itself.
pub fn render(user: &str, keys: &ScramKeys) -> String {
    let verifier = keys.verifier().to_text();
    format!(
        "-- For PostgreSQL, run as a superuser (the role must exist): stores the verifier, not the password\n\
         ALTER ROLE {} PASSWORD {};\n\
         # For the cluster file's [postgres] section: the keys log in as this role, so keep the file private\n\
         service = {{ user = {}, database = \"postgres\", keys = {} }}\n",
        sql_identifier(user),
        sql_literal(&verifier),
        toml_string(user),
        toml_string(&keys.to_text()),
    )
}

/// `"name"`, with any `"` doubled, as PostgreSQL reads a quoted identifier.
pub fn sql_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `'text'`, with any `'` doubled (a standard SQL string literal).
fn sql_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// A TOML basic string.
fn toml_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(sql_identifier("app"), "\"app\"");
        assert_eq!(sql_identifier("a\"b"), "\"a\"\"b\"");
        assert_eq!(sql_literal("it's"), "'it''s'");
        assert_eq!(toml_string("a\"b\\c\u{1}"), "\"a\\\"b\\\\c\\u0001\"");
    }

    #[test]
    fn password_is_one_line_and_not_empty() {
        let read = |s: &str| read_password(s.as_bytes());
        assert_eq!(read("pw\n").ok().as_deref(), Some("pw"));
        assert_eq!(read("pw\r\nnext\n").ok().as_deref(), Some("pw"));
        assert_eq!(read("no newline").ok().as_deref(), Some("no newline"));
        assert_eq!(read(" spaced \n").ok().as_deref(), Some(" spaced "));
        for bad in ["", "\n", "\r\n"] {
            let e = read(bad).expect_err(bad).to_string();
            assert!(e.contains("empty password"), "{e}");
        }
        assert!(read(&"x".repeat(5000)).is_err());
    }
}
