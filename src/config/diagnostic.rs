//! One mistake in the cluster file, told the way a compiler tells it: where,
//! what, and the line itself with the spot underlined. The person reading it
//! is usually editing the file on an SD card, so the position has to be exact
//! and the message has to say what would have been right.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// Byte range into the file's text, as the TOML parser reports it.
pub type Span = Range<usize>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub path: PathBuf,
    /// 1-based.
    pub line: usize,
    /// 1-based, in characters (not bytes) from the start of the line.
    pub column: usize,
    pub message: String,
    /// `note: ...` / `help: ...` lines shown under the snippet.
    pub notes: Vec<String>,
    source_line: String,
    underline_len: usize,
}

impl Diagnostic {
    pub fn note(&mut self, text: impl fmt::Display) -> &mut Self {
        self.notes.push(format!("note: {text}"));
        self
    }

    pub fn help(&mut self, text: impl fmt::Display) -> &mut Self {
        self.notes.push(format!("help: {text}"));
        self
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: error: {}",
            self.path.display(),
            self.line,
            self.column,
            self.message
        )?;
        let number = self.line.to_string();
        let pad = " ".repeat(number.len());
        // Keep tabs before the caret so it lines up under the same column the
        // terminal shows for the source line.
        let lead: String = self
            .source_line
            .chars()
            .take(self.column - 1)
            .map(|c| if c == '\t' { '\t' } else { ' ' })
            .collect();
        write!(f, "\n{pad} |")?;
        write!(f, "\n{number} | {}", self.source_line)?;
        write!(f, "\n{pad} | {lead}{}", "^".repeat(self.underline_len))?;
        for note in &self.notes {
            write!(f, "\n{pad} = {note}")?;
        }
        Ok(())
    }
}

/// Collects diagnostics against one file's text.
pub struct Report<'a> {
    path: &'a Path,
    text: &'a str,
    line_starts: Vec<usize>,
    diagnostics: Vec<Diagnostic>,
}

impl<'a> Report<'a> {
    pub fn new(path: &'a Path, text: &'a str) -> Self {
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Report {
            path,
            text,
            line_starts,
            diagnostics: Vec::new(),
        }
    }

    pub fn path(&self) -> &'a Path {
        self.path
    }

    pub fn has_errors(&self) -> bool {
        !self.diagnostics.is_empty()
    }

    /// Records an error at `span` and returns it for notes to be added.
    pub fn error(&mut self, span: Span, message: impl Into<String>) -> &mut Diagnostic {
        let start = self.char_boundary(span.start);
        let end = self.char_boundary(span.end.max(start));
        let (line_index, line_start) = self.locate(start);
        let line_end = self.text[line_start..]
            .find('\n')
            .map_or(self.text.len(), |i| line_start + i);
        let source_line = self.text[line_start..line_end].trim_end_matches('\r');
        let column = self.text[line_start..start].chars().count() + 1;
        // A span running over several lines (an inline table, a multi-line
        // array) is underlined to the end of its first line only.
        let underlined = &self.text[start..end.min(line_end)];
        let underline_len = underlined.trim_end_matches('\r').chars().count().max(1);
        self.diagnostics.push(Diagnostic {
            path: self.path.to_path_buf(),
            line: line_index + 1,
            column,
            message: message.into(),
            notes: Vec::new(),
            source_line: source_line.to_string(),
            underline_len,
        });
        let last = self.diagnostics.len() - 1;
        &mut self.diagnostics[last]
    }

    /// 1-based line of a byte offset, for notes like "first defined at line 8".
    pub fn line_of(&self, offset: usize) -> usize {
        self.locate(self.char_boundary(offset)).0 + 1
    }

    /// Everything found, in file order.
    pub fn into_diagnostics(mut self) -> Vec<Diagnostic> {
        self.diagnostics.sort_by_key(|d| (d.line, d.column));
        self.diagnostics
    }

    /// (0-based line, byte offset where that line starts).
    fn locate(&self, offset: usize) -> (usize, usize) {
        let index = self
            .line_starts
            .partition_point(|&start| start <= offset)
            .saturating_sub(1);
        (index, self.line_starts.get(index).copied().unwrap_or(0))
    }

    /// Clamps an offset into the text and back onto a character boundary, so
    /// that slicing can never panic whatever span a caller passes.
    fn char_boundary(&self, offset: usize) -> usize {
        let mut i = offset.min(self.text.len());
        while !self.text.is_char_boundary(i) {
            i -= 1;
        }
        i
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_position_snippet_and_notes() {
        let text = "[cluster]\nname = \"piha\"\n\taddress = \"x\"\n";
        let mut report = Report::new(Path::new("c.toml"), text);
        let start = text.find("\"x\"").unwrap_or(0);
        report
            .error(start..start + 3, "bad address")
            .note("first defined at line 1");
        let diags = report.into_diagnostics();
        assert_eq!(
            diags[0].to_string(),
            "c.toml:3:12: error: bad address\n  |\n3 | \taddress = \"x\"\n  | \t          ^^^\n  = note: first defined at line 1"
        );
    }

    #[test]
    fn survives_spans_inside_multibyte_characters_and_past_the_end() {
        let text = "name = \"héllo\"\r\nx = 1";
        let mut report = Report::new(Path::new("c.toml"), text);
        let inside_e = text.find('é').unwrap_or(0) + 1;
        report.error(inside_e..inside_e + 1, "mid-char");
        report.error(1000..2000, "past the end");
        let diags = report.into_diagnostics();
        assert_eq!((diags[0].line, diags[0].column), (1, 10));
        assert_eq!((diags[1].line, diags[1].column), (2, 6));
        assert!(!diags[0].to_string().contains('\r'));
    }
}
