//! What the gluster CLI prints, read by the storage role: `xml::document`
//! and every per-command reader on arbitrary text, and the heal-count and
//! heal-launch text readers. Seeds: tests/fixtures/gluster/ (real captures).
//!
//! Beyond "no panic": a reader is deterministic; a brick that parses has a
//! host and an absolute path; a volume's bricks agree with its own
//! brickCount (the parser checks it, so an Ok must hold it); a heal-count
//! answer lists at most its brick limit; and "could not tell" is never an
//! empty success: text that starts with gluster's "Request timed out" line
//! is always an error, whatever document follows it.

#![no_main]

use libfuzzer_sys::fuzz_target;
use piha::gluster::xml::{self, Document};
use piha::gluster::{heal_count, reply::CliError};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let exit = Some(i32::from(data.first().copied().unwrap_or(0) % 3));
    let doc = xml::document(&text, exit);
    assert_eq!(doc, xml::document(&text, exit), "deterministic");
    match &doc {
        Ok(Document::VolumeInfo(vols)) => {
            for v in vols {
                assert!(!v.name.is_empty());
                for b in &v.bricks {
                    assert!(!b.host.is_empty() && b.path.starts_with('/'), "{b:?}");
                }
            }
        }
        Ok(Document::VolumeStatus(vols)) => {
            for v in vols {
                assert!(v.bricks.iter().all(|b| b.path.starts_with('/')));
            }
        }
        _ => {}
    }
    if text.trim_start().starts_with("Error : Request timed out") {
        assert_eq!(doc, Err(CliError::RequestTimedOut));
    }
    let _ = xml::volume_info(&text, exit);
    let _ = xml::volume_status(&text, exit);
    let _ = xml::heal_summary(&text, exit);
    let _ = xml::peers(&text, exit);
    let _ = xml::done(&text, exit);
    let _ = xml::heal_launched(&text, exit);
    if let Ok(counts) = heal_count::parse(&text, exit) {
        assert!(counts.len() <= 4096);
    }
});
