//! What is in the data directory before anything starts: nothing (first
//! boot), a PostgreSQL cluster (which one, on which timeline, primary or
//! standby), or something else that must not be touched. A directory from
//! an earlier life is read, never overwritten.

use std::path::Path;
use std::time::Duration;

use super::command;
use super::error::DbError;
use super::settings::DbPlan;
use crate::pg::pooler::backends::parse_lsn;

/// What pg_controldata says (the fields the role decides by).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlData {
    pub system_id: u64,
    /// "in production", "shut down", "shut down in recovery", "in archive
    /// recovery", "in crash recovery", ...
    pub state: String,
    /// The latest checkpoint's timeline.
    pub timeline: u32,
    /// Where the latest checkpoint record starts. After a clean shutdown of
    /// a primary it is the last thing it wrote: a standby that replayed
    /// past it has every transaction.
    pub checkpoint_lsn: u64,
}

impl ControlData {
    pub fn shut_down_cleanly(&self) -> bool {
        self.state == "shut down" || self.state == "shut down in recovery"
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// No directory, or an empty one: first boot.
    Empty,
    Cluster {
        control: ControlData,
        /// `standby.signal` is there: it starts in recovery.
        standby: bool,
    },
}

/// Looks at the data directory. A directory with files but no PostgreSQL
/// cluster in it (or one of another major version) is an error that no
/// retry fixes: the role reports it and leaves the files alone.
pub async fn inspect(plan: &DbPlan) -> Result<Found, DbError> {
    let data = &plan.data;
    if is_empty(data)? {
        return Ok(Found::Empty);
    }
    let version = std::fs::read_to_string(data.join("PG_VERSION")).map_err(|_| {
        DbError::DataDir(format!(
            "{} holds files but is not a PostgreSQL data directory (no PG_VERSION); \
             move them away to let this node set it up",
            data.display()
        ))
    })?;
    let server = server_major(plan).await?;
    if version.trim() != server {
        return Err(DbError::DataDir(format!(
            "{} is a PostgreSQL {} data directory but the server in {} is {server}; \
             upgrade it with pg_upgrade or move it away",
            data.display(),
            version.trim(),
            plan.bindir.display()
        )));
    }
    let text = command::run(
        plan,
        "pg_controldata",
        &[data.as_os_str()],
        Duration::from_secs(30),
    )
    .await?;
    let control = parse_controldata(&text)
        .map_err(|e| DbError::DataDir(format!("pg_controldata on {}: {e}", data.display())))?;
    Ok(Found::Cluster {
        control,
        standby: data.join("standby.signal").exists(),
    })
}

fn is_empty(dir: &Path) -> Result<bool, DbError> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => Ok(entries.next().is_none()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(true),
        Err(e) => Err(DbError::io(format!("cannot read {}", dir.display()))(e)),
    }
}

/// "15" from `postgres --version` ("postgres (PostgreSQL) 15.14 (Debian ...)").
pub async fn server_major(plan: &DbPlan) -> Result<String, DbError> {
    let out = command::run(plan, "postgres", &["--version"], Duration::from_secs(10)).await?;
    major_of(&out).ok_or_else(|| {
        DbError::Config(format!(
            "cannot tell the PostgreSQL version from `postgres --version`: {}",
            out.trim()
        ))
    })
}

fn major_of(version_line: &str) -> Option<String> {
    let v = version_line.split_whitespace().nth(2)?;
    let major = v.split(['.', 'b', 'r']).next()?;
    (!major.is_empty() && major.bytes().all(|b| b.is_ascii_digit())).then(|| major.to_owned())
}

/// Parses pg_controldata's text (`Label:   value` lines, C locale).
pub fn parse_controldata(text: &str) -> Result<ControlData, String> {
    let field = |label: &str| -> Result<&str, String> {
        text.lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                (k.trim() == label).then(|| v.trim())
            })
            .ok_or_else(|| format!("no \"{label}\" line"))
    };
    let number = |label: &str| -> Result<u64, String> {
        field(label)?
            .parse::<u64>()
            .map_err(|_| format!("\"{label}\" is not a number"))
    };
    let lsn = |label: &str| -> Result<u64, String> {
        parse_lsn(field(label)?).ok_or_else(|| format!("\"{label}\" is not an LSN"))
    };
    Ok(ControlData {
        system_id: number("Database system identifier")?,
        state: field("Database cluster state")?.to_owned(),
        timeline: u32::try_from(number("Latest checkpoint's TimeLineID")?)
            .map_err(|_| "the timeline is out of range".to_string())?,
        checkpoint_lsn: lsn("Latest checkpoint location")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "pg_control version number:            1300
Catalog version number:               202209061
Database system identifier:           7441178001178362262
Database cluster state:               shut down in recovery
pg_control last modified:             Sun 22 Nov 2026 10:00:00 AM UTC
Latest checkpoint location:           0/3000060
Latest checkpoint's REDO location:    0/3000028
Latest checkpoint's REDO WAL file:    000000020000000000000003
Latest checkpoint's TimeLineID:       2
Latest checkpoint's PrevTimeLineID:   2
";

    #[test]
    fn controldata_gives_identity_state_timeline_and_checkpoint() {
        let c = parse_controldata(SAMPLE).expect("parses");
        assert_eq!(c.system_id, 7441178001178362262);
        assert_eq!(c.state, "shut down in recovery");
        assert!(c.shut_down_cleanly());
        assert_eq!(c.timeline, 2);
        assert_eq!(c.checkpoint_lsn, 0x3000060);
    }

    #[test]
    fn controldata_without_a_field_names_it() {
        let broken = SAMPLE.replace("Latest checkpoint's TimeLineID:       2\n", "");
        assert_eq!(
            parse_controldata(&broken),
            Err("no \"Latest checkpoint's TimeLineID\" line".into())
        );
    }

    #[test]
    fn server_versions_give_their_major() {
        assert_eq!(
            major_of("postgres (PostgreSQL) 15.14 (Debian 15.14-0+deb12u1)").as_deref(),
            Some("15")
        );
        assert_eq!(
            major_of("postgres (PostgreSQL) 16beta2").as_deref(),
            Some("16")
        );
        assert_eq!(major_of("nonsense"), None);
    }
}
