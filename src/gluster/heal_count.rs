//! The text of `volume heal <vol> statistics heal-count`. gluster prints it
//! as text even with `--xml`, but it answers in about 0.1 s where `heal info`
//! walks every pending entry (seconds at thousands), so the monitor polls
//! this one and asks `info summary` only for split-brain counts.
//!
//! ```text
//! Gathering count of entries to be healed on volume gv0 has been successful
//!
//! Brick pi-storage1:/mnt/gluster/gv0
//! Number of entries: 3002
//!
//! Brick pi-storage3:/mnt/gluster/gv0
//! Status: Brick is not connected
//! No gathered input for this brick
//! ```

use super::model::HealCount;
use super::reply::{CliError, short, xml_body};

/// The most bricks one answer may list; more means the text is not what
/// we think it is.
const MAX_BRICKS: usize = 4096;

pub fn parse(stdout: &str, exit: Option<i32>) -> Result<Vec<HealCount>, CliError> {
    let text = stdout.trim_start();
    if !text.starts_with("Gathering count") {
        // An error may come as XML (opRet -1) or as a known message.
        return match xml_body(text, exit) {
            Ok(xml) => crate::gluster::xml::done(xml, exit).and_then(|()| {
                Err(CliError::Malformed {
                    why: "heal-count printed XML and no counts".into(),
                })
            }),
            Err(e) => Err(e),
        };
    }
    let first = text.lines().next().unwrap_or_default();
    if !first.contains("has been successful") {
        return Err(CliError::Refused {
            op_errno: 0,
            text: short(first),
        });
    }
    let mut out: Vec<HealCount> = Vec::new();
    for line in text.lines().skip(1).map(str::trim) {
        if let Some(brick) = line.strip_prefix("Brick ") {
            if out.len() == MAX_BRICKS {
                return Err(CliError::Malformed {
                    why: format!("heal-count lists more than {MAX_BRICKS} bricks"),
                });
            }
            out.push(HealCount {
                brick: brick.trim().to_owned(),
                entries: None,
            });
        } else if let Some(n) = line.strip_prefix("Number of entries:") {
            let Some(last) = out.last_mut() else {
                return Err(CliError::Malformed {
                    why: "heal-count: a count before any brick".into(),
                });
            };
            let n = n.trim();
            last.entries = Some(n.parse().map_err(|_| CliError::Malformed {
                why: format!(
                    "heal-count for {}: {:?} is not a number",
                    last.brick,
                    short(n)
                ),
            })?);
        }
        // "Status: Brick is not connected", "No gathered input...": the
        // brick keeps `entries: None`.
    }
    Ok(out)
}
