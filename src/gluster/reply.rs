//! What one run of the `gluster` CLI meant, before any XML body is read.
//!
//! The CLI does not deserve trust (tests/fixtures/gluster/README.md): in
//! `--xml` mode it exits 0 when `opRet` is -1, a hung glusterd makes it
//! print `Error : Request timed out` followed by a well-formed document
//! claiming success with zero volumes, and a glusterd that is down gets
//! plain text and exit 1. Every such case becomes a [`CliError`] here, so
//! that no caller can mistake "could not tell" for "nothing there".

use std::time::Duration;

use serde::Serialize;

/// The opErrno glusterd returns when another node holds the cluster-wide
/// lock ("Another transaction is in progress"): worth a retry.
pub const ERRNO_LOCKED: i64 = 30802;

/// Why a gluster call gave no usable answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum CliError {
    /// We killed the CLI at its deadline.
    #[error("gluster did not answer within {}", humantime::format_duration(*after))]
    Deadline { after: Duration },
    /// The CLI gave up on glusterd ("Request timed out"): glusterd (ours or
    /// a peer's) is hung. Whatever XML follows is not an answer.
    #[error("glusterd did not answer the CLI (\"Request timed out\"): it or a peer is hung")]
    RequestTimedOut,
    /// The local glusterd is not running or not listening.
    #[error("glusterd is not reachable: {text}")]
    GlusterdDown { text: String },
    /// Another operation holds the cluster lock (opErrno 30802).
    #[error("gluster is busy: {text}")]
    Busy { text: String },
    /// glusterd answered that the operation failed (`opRet` -1).
    #[error("gluster said no (opErrno {op_errno}): {text}")]
    Refused { op_errno: i64, text: String },
    /// Output that is neither XML nor a known message.
    #[error("gluster printed no XML (exit code {exit:?}): {text}")]
    NotXml { exit: Option<i32>, text: String },
    /// XML that does not have the shape this command prints.
    #[error("gluster's XML could not be read: {why}")]
    Malformed { why: String },
    /// The answer contradicts itself or what we asked (a volume missing
    /// from its own status, a count that does not match the list).
    #[error("gluster's answer is inconsistent: {why}")]
    Inconsistent { why: String },
    /// The CLI could not be run at all.
    #[error("cannot run gluster: {why}")]
    Spawn { why: String },
}

impl CliError {
    /// Whether asking again at once may help: only a held lock is worth it;
    /// a hung or absent glusterd is asked again at the next poll.
    pub fn retryable(&self) -> bool {
        matches!(self, CliError::Busy { .. })
    }

    /// Whether the local glusterd itself failed us (down or hung), as
    /// opposed to one question going wrong.
    pub fn glusterd_unusable(&self) -> bool {
        matches!(
            self,
            CliError::Deadline { .. } | CliError::RequestTimedOut | CliError::GlusterdDown { .. }
        )
    }
}

/// The longest piece of gluster's text kept in an error.
const TEXT_LIMIT: usize = 300;

/// Finds the XML document in the CLI's stdout, or says why there is none.
pub fn xml_body(stdout: &str, exit: Option<i32>) -> Result<&str, CliError> {
    let text = stdout.trim_start();
    // Checked first: the document that follows this line is a lie.
    if text.starts_with("Error : Request timed out") {
        return Err(CliError::RequestTimedOut);
    }
    if text.starts_with("<?xml") || text.starts_with("<cliOutput") {
        return Ok(text);
    }
    let text = short(text);
    if text.contains("Connection failed") || text.contains("gluster daemon is operational") {
        return Err(CliError::GlusterdDown { text });
    }
    if text.contains("Another transaction is in progress") || text.contains("Locking failed") {
        return Err(CliError::Busy { text });
    }
    Err(CliError::NotXml { exit, text })
}

/// `opRet`/`opErrno`/`opErrstr` of a parsed document, turned into an error
/// when the operation failed.
pub fn check_op(op_ret: i64, op_errno: i64, op_errstr: &str) -> Result<(), CliError> {
    if op_ret == 0 {
        return Ok(());
    }
    let text = short(op_errstr);
    // "Locking failed on <peer>" (opErrno 30800) is the same contention seen
    // from the other side: a peer's glusterd held its lock.
    if op_errno == ERRNO_LOCKED
        || text.contains("Another transaction is in progress")
        || text.contains("Locking failed")
    {
        return Err(CliError::Busy { text });
    }
    Err(CliError::Refused { op_errno, text })
}

/// The first [`TEXT_LIMIT`] bytes of `text` (on a char boundary), trimmed.
pub fn short(text: &str) -> String {
    let text = text.trim();
    let mut end = text.len().min(TEXT_LIMIT);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timed_out_wins_over_the_document_that_follows() {
        let out = "Error : Request timed out\n<?xml version=\"1.0\"?><cliOutput><opRet>0</opRet></cliOutput>";
        assert_eq!(xml_body(out, Some(0)), Err(CliError::RequestTimedOut));
    }

    #[test]
    fn plain_text_is_classified() {
        let down = "Connection failed. Please check if gluster daemon is operational.\n";
        assert!(matches!(
            xml_body(down, Some(1)),
            Err(CliError::GlusterdDown { .. })
        ));
        assert!(matches!(
            xml_body("something else", Some(2)),
            Err(CliError::NotXml { exit: Some(2), .. })
        ));
    }

    #[test]
    fn op_failures_name_busy_separately() {
        assert!(check_op(0, 0, "").is_ok());
        assert!(
            check_op(-1, ERRNO_LOCKED, "Another transaction")
                .unwrap_err()
                .retryable()
        );
        assert!(
            !check_op(-1, 30806, "Volume does not exist")
                .unwrap_err()
                .retryable()
        );
    }

    #[test]
    fn long_text_is_cut_on_a_char_boundary() {
        let text = "é".repeat(400);
        assert!(short(&text).len() <= TEXT_LIMIT);
    }
}
