//! Byte-level helpers shared by the hint reader and the fast path. They
//! never allocate and never look inside string literals: wherever a literal
//! or a comment could fool them, it can only make them see *more* words and
//! brackets than there are, which sends the statement to the full parser.

use super::Target;

/// Whitespace as PostgreSQL's scanner defines it (`[ \t\n\r\f\v]`).
pub(super) fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

/// A byte that continues an identifier or keyword. Bytes of multi-byte
/// UTF-8 characters are identifier characters in PostgreSQL but count as
/// separators here, so `éFOR` shows the word `FOR`: more words, never fewer.
const fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'$'
}

/// What `plain_select` needs to know of a byte, looked up in one load: the
/// tests one by one cost the fast path ~30 instructions a byte (callgrind),
/// and every pgbench-style statement passes through it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Class {
    Word,
    Open,
    Semicolon,
    Other,
}

static CLASS: [Class; 256] = {
    let mut table = [Class::Other; 256];
    let mut b = 0;
    while b < 256 {
        let byte = b as u8;
        table[b] = if is_word_byte(byte) {
            Class::Word
        } else if byte == b'(' {
            Class::Open
        } else if byte == b';' {
            Class::Semicolon
        } else {
            Class::Other
        };
        b += 1;
    }
    table
};

/// The leading comments of a statement, the hint they carry, and the text
/// from the first token on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Lead<'a> {
    /// `/* piha:primary */` or `/* piha:standby */` among the leading
    /// comments; when both appear, the primary wins.
    pub hint: Option<Target>,
    /// The text after the leading whitespace and comments (empty when the
    /// statement is only comments, or a block comment is not closed).
    pub rest: &'a str,
}

/// Reads the whitespace and comments before the first token, as PostgreSQL's
/// scanner does: block comments nest, and a line comment ends at `\n` or
/// `\r`. A comment is a hint when its text, trimmed, is `piha:primary` or
/// `piha:standby` (ASCII case-insensitive), in either comment form.
pub(super) fn leading(sql: &str) -> Lead<'_> {
    let bytes = sql.as_bytes();
    let mut hint = None;
    let mut i = 0;
    loop {
        while i < bytes.len() && is_space(bytes[i]) {
            i += 1;
        }
        let body = if bytes[i..].starts_with(b"/*") {
            let start = i + 2;
            let mut depth = 1usize;
            let mut j = start;
            while depth > 0 {
                if j + 1 >= bytes.len() {
                    // Not closed: PostgreSQL rejects the whole string.
                    return Lead { hint, rest: "" };
                }
                if bytes[j] == b'/' && bytes[j + 1] == b'*' {
                    depth += 1;
                    j += 2;
                } else if bytes[j] == b'*' && bytes[j + 1] == b'/' {
                    depth -= 1;
                    j += 2;
                } else {
                    j += 1;
                }
            }
            i = j;
            &sql[start..j - 2]
        } else if bytes[i..].starts_with(b"--") {
            let start = i + 2;
            let mut j = start;
            while j < bytes.len() && bytes[j] != b'\n' && bytes[j] != b'\r' {
                j += 1;
            }
            i = j;
            &sql[start..j]
        } else {
            return Lead {
                hint,
                rest: &sql[i..],
            };
        };
        let body = body.trim_matches(|c: char| c.is_ascii() && is_space(c as u8));
        if body.eq_ignore_ascii_case("piha:primary") {
            hint = Some(Target::Primary);
        } else if body.eq_ignore_ascii_case("piha:standby") && hint.is_none() {
            hint = Some(Target::Standby);
        }
    }
}

/// The first word of `text`: the letters, digits, `_` and `$` it starts
/// with (empty when it starts with anything else).
pub(super) fn first_word(text: &str) -> &str {
    let end = text
        .bytes()
        .position(|b| !is_word_byte(b))
        .unwrap_or(text.len());
    &text[..end]
}

/// Whether `text` is one statement without brackets and without the words
/// `INTO` and `FOR` (ASCII case-insensitive), inside literals and comments
/// too (see module docs): the test the fast path puts a `SELECT` to, in one
/// pass over the bytes.
pub(super) fn plain_select(text: &str) -> bool {
    let bytes = text.as_bytes();
    // One pass with no lookups by index: the length of the word being read
    // (0 between words) is all the state, and a word is looked at only
    // where it ends and only when it is 3 or 4 bytes long.
    let mut word = 0usize;
    for (i, &b) in bytes.iter().enumerate() {
        let class = CLASS[usize::from(b)];
        if class == Class::Word {
            word += 1;
            continue;
        }
        if word != 0 {
            if is_into_or_for(&bytes[i - word..i]) {
                return false;
            }
            word = 0;
        }
        match class {
            Class::Open => return false,
            Class::Semicolon => return single_statement(&text[i..]),
            Class::Word | Class::Other => {}
        }
    }
    !is_into_or_for(&bytes[bytes.len() - word..])
}

fn is_into_or_for(word: &[u8]) -> bool {
    match word.len() {
        3 => word.eq_ignore_ascii_case(b"for"),
        4 => word.eq_ignore_ascii_case(b"into"),
        _ => false,
    }
}

/// Whether `needle` appears anywhere in `text`, ASCII case-insensitively.
pub(super) fn contains_ci(text: &str, needle: &str) -> bool {
    let hay = text.as_bytes();
    let needle = needle.as_bytes();
    needle.is_empty()
        || hay
            .windows(needle.len())
            .any(|w| w.eq_ignore_ascii_case(needle))
}

/// Whether `text` holds at most one statement by the crudest test: every
/// `;` is followed only by whitespace and more `;`. A `;` inside a literal
/// or comment fails the test, which only costs a parse.
pub(super) fn single_statement(text: &str) -> bool {
    match text.bytes().position(|b| b == b';') {
        None => true,
        Some(at) => text.as_bytes()[at..]
            .iter()
            .all(|&b| b == b';' || is_space(b)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leading_skips_comments_and_reads_hints() {
        assert_eq!(
            leading("  SELECT 1"),
            Lead {
                hint: None,
                rest: "SELECT 1"
            }
        );
        let lead = leading("/* piha:standby */ SELECT 1");
        assert_eq!(lead.hint, Some(Target::Standby));
        assert_eq!(lead.rest, "SELECT 1");
        let lead = leading("/*PIHA:PRIMARY*/\n-- note\nselect 1");
        assert_eq!(lead.hint, Some(Target::Primary));
        assert_eq!(lead.rest, "select 1");
        // Both: the primary wins, in either order.
        let lead = leading("/* piha:primary */ /* piha:standby */ SELECT 1");
        assert_eq!(lead.hint, Some(Target::Primary));
        let lead = leading("-- piha:standby\n/* piha:primary */ SELECT 1");
        assert_eq!(lead.hint, Some(Target::Primary));
        // Not a hint: other text in the comment.
        assert_eq!(leading("/* piha:standby please */ SELECT 1").hint, None);
    }

    #[test]
    fn block_comments_nest_and_line_comments_end_at_cr() {
        let lead = leading("/* a /* piha:standby */ b */ SELECT 1");
        assert_eq!(lead.hint, None);
        assert_eq!(lead.rest, "SELECT 1");
        assert_eq!(leading("-- x\rDELETE FROM t").rest, "DELETE FROM t");
        assert_eq!(leading("/* open /* */ SELECT 1").rest, "");
        assert_eq!(leading("/*").rest, "");
        assert_eq!(leading("/*/ SELECT 1").rest, "");
        assert_eq!(leading("--").rest, "");
        assert_eq!(leading("").rest, "");
    }

    #[test]
    fn words() {
        assert_eq!(first_word("SELECT*FROM t"), "SELECT");
        assert_eq!(first_word("begin;"), "begin");
        assert_eq!(first_word("(SELECT 1)"), "");
        assert!(plain_select("SELECT a FROM t WHERE b = $1;  \n"));
        assert!(plain_select(
            "SELECT format, before_x, fort, \"into_x\" FROM t"
        ));
        assert!(plain_select(""));
        assert!(!plain_select("SELECT a FROM t FOR UPDATE"));
        assert!(!plain_select("select a\nfor\tshare"));
        assert!(!plain_select("SELECT a INTO b"));
        assert!(!plain_select("SELECT a into"));
        assert!(!plain_select("SELECT éFOR"));
        assert!(!plain_select("SELECT \"for\""));
        assert!(!plain_select("SELECT count(*) FROM t"));
        assert!(!plain_select("SELECT 1; SELECT 2"));
        assert!(!plain_select("SELECT ';' FROM t"));
        assert!(contains_ci("SELECT PG_CATALOG.SET_CONFIG", "set_config"));
        assert!(!contains_ci("abc", "abcd"));
    }

    #[test]
    fn single_statements() {
        assert!(single_statement("SELECT 1"));
        assert!(single_statement("SELECT 1;"));
        assert!(single_statement("SELECT 1 ; ;\n"));
        assert!(!single_statement("SELECT 1; SELECT 2"));
        assert!(!single_statement("SELECT ';' FROM t"));
    }
}
