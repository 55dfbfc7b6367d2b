//! `piha/firstboot.txt` on the boot partition: the few per-card settings an
//! owner writes from any computer after flashing, as `key=value` lines in the
//! style of Debian's raspi `sysconf.txt`:
//!
//! ```text
//! hostname=pi-1
//! ssh_authorized_key=ssh-ed25519 AAAAC3Nza... me@laptop
//! ```
//!
//! The file is typed on Windows as often as anywhere, so a byte-order mark,
//! CRLF line ends, spaces around `=` and quotes around a value are all
//! accepted. A bad line is reported by number and skipped; the rest still
//! applies. Lines are kept as written so the file can be rewritten with only
//! the consumed secrets taken out.

use std::fmt;

/// A firstboot file larger than this is not one (it holds a few lines).
pub const MAX_BYTES: usize = 64 * 1024;

/// The keys piha reads, for messages.
pub const KEYS: [&str; 2] = ["hostname", "ssh_authorized_key"];

/// The parsed file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sysconf {
    /// Every line as written (without its line end), for the rewrite.
    pub lines: Vec<String>,
    /// The first valid `hostname=`, with its line number (1-based).
    pub hostname: Option<(usize, String)>,
    /// Every valid `ssh_authorized_key=`, with its line number.
    pub ssh_keys: Vec<(usize, String)>,
    /// What was wrong or ignored, one message per line concerned.
    pub warnings: Vec<Warning>,
}

/// A line piha could not use, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    pub line: usize,
    pub message: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "firstboot.txt line {}: {}", self.line, self.message)
    }
}

/// Why the whole file was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SysconfError {
    #[error(
        "firstboot.txt is {0} bytes; it holds a few key=value lines and must be under {MAX_BYTES}"
    )]
    TooLarge(usize),
    #[error("firstboot.txt is not text (a NUL byte at offset {0}); is this the right file?")]
    Binary(usize),
}

/// Parses the file's bytes. Invalid UTF-8 is replaced rather than refused: a
/// comment saved as Latin-1 must not cost the card its hostname.
pub fn parse(bytes: &[u8]) -> Result<Sysconf, SysconfError> {
    if bytes.len() > MAX_BYTES {
        return Err(SysconfError::TooLarge(bytes.len()));
    }
    if let Some(at) = bytes.iter().position(|b| *b == 0) {
        return Err(SysconfError::Binary(at));
    }
    let text = String::from_utf8_lossy(bytes);
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let mut conf = Sysconf::default();
    for (i, raw) in text.lines().enumerate() {
        let number = i + 1;
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        conf.lines.push(line.to_owned());
        conf.read_line(number, line);
    }
    Ok(conf)
}

impl Sysconf {
    fn read_line(&mut self, number: usize, line: &str) {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            return;
        }
        let Some((key, value)) = trimmed.split_once('=') else {
            self.warn(
                number,
                format!("\"{}\" is not key=value; ignored", shorten(trimmed)),
            );
            return;
        };
        let key = key.trim().to_ascii_lowercase();
        let value = unquote(value.trim());
        match key.as_str() {
            "hostname" => self.read_hostname(number, value),
            "ssh_authorized_key" => match check_ssh_key(value) {
                Ok(()) => self.ssh_keys.push((number, value.to_owned())),
                Err(why) => self.warn(number, format!("ssh_authorized_key ignored: {why}")),
            },
            _ => self.warn(
                number,
                format!(
                    "unknown key \"{}\" (piha reads {}); left as it is",
                    shorten(&key),
                    KEYS.join(", ")
                ),
            ),
        }
    }

    fn read_hostname(&mut self, number: usize, value: &str) {
        if let Some((first, _)) = &self.hostname {
            let first = *first;
            self.warn(
                number,
                format!("a second hostname; the one on line {first} is used"),
            );
            return;
        }
        // Hostnames compare case-insensitively; the file may say "Pi-1".
        let name = value.to_ascii_lowercase();
        match crate::config::values::hostname(&name) {
            Ok(()) => self.hostname = Some((number, name)),
            Err(why) => self.warn(number, format!("{why}; the hostname is not changed")),
        }
    }

    fn warn(&mut self, line: usize, message: String) {
        self.warnings.push(Warning { line, message });
    }

    /// The file with every applied `ssh_authorized_key` line replaced by a
    /// comment that says where the key went, as Debian's raspi image does
    /// with its root password: a key (or, one day, a password) must not sit
    /// on a partition every computer can read once it has been applied.
    pub fn without_applied_keys(&self, user: &str, today: &str) -> String {
        let applied: Vec<usize> = self.ssh_keys.iter().map(|(n, _)| *n).collect();
        let mut out = String::new();
        for (i, line) in self.lines.iter().enumerate() {
            if applied.contains(&(i + 1)) {
                let label = key_label(line);
                out.push_str(&format!(
                    "# ssh_authorized_key ({label}) installed for user {user} on {today}; \
                     removed from this file\n"
                ));
            } else {
                out.push_str(line);
                out.push('\n');
            }
        }
        out
    }
}

/// `type AAAA… comment`: a one-line OpenSSH public key, as in
/// `~/.ssh/id_ed25519.pub`. Checked here so that a pasted private key or a
/// truncated line is refused with a reason rather than locking the owner out.
pub fn check_ssh_key(value: &str) -> Result<(), String> {
    use base64::Engine as _;
    const TYPES: [&str; 8] = [
        "ssh-ed25519",
        "ssh-rsa",
        "ecdsa-sha2-nistp256",
        "ecdsa-sha2-nistp384",
        "ecdsa-sha2-nistp521",
        "sk-ssh-ed25519@openssh.com",
        "sk-ecdsa-sha2-nistp256@openssh.com",
        "ssh-dss",
    ];
    if value.contains("PRIVATE KEY") {
        return Err("this is a private key; put the public one here (the .pub file)".into());
    }
    let mut fields = value.split_whitespace();
    let kind = fields.next().unwrap_or_default();
    if !TYPES.contains(&kind) {
        return Err(format!(
            "\"{}\" is not an SSH public key type (expected e.g. ssh-ed25519); paste the whole line of your .pub file",
            shorten(kind)
        ));
    }
    let body = fields.next().unwrap_or_default();
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(body)
        .map_err(|_| format!("the {kind} key is cut off or not base64"))?;
    // The blob starts with its own type name, length-prefixed.
    let named = decoded
        .get(4..4 + kind.len())
        .is_some_and(|name| name == kind.as_bytes());
    if !named {
        return Err(format!("the key data does not match its type {kind}"));
    }
    Ok(())
}

/// The key's type and comment, for the note that replaces it.
fn key_label(line: &str) -> String {
    let value = line
        .split_once('=')
        .map(|(_, v)| unquote(v.trim()))
        .unwrap_or("");
    let mut fields = value.split_whitespace();
    let kind = fields.next().unwrap_or("key");
    let _body = fields.next();
    let comment: Vec<&str> = fields.collect();
    if comment.is_empty() {
        kind.to_owned()
    } else {
        format!("{kind} {}", comment.join(" "))
    }
}

fn unquote(value: &str) -> &str {
    for q in ['"', '\''] {
        if let Some(inner) = value.strip_prefix(q).and_then(|v| v.strip_suffix(q)) {
            return inner.trim();
        }
    }
    value
}

fn shorten(text: &str) -> String {
    const MAX: usize = 40;
    if text.chars().count() <= MAX {
        text.to_owned()
    } else {
        let cut: String = text.chars().take(MAX).collect();
        format!("{cut}…")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJfMlgf78kwFmQ6O16OlhM9ynb0XkpD5t0AUft405WU0 me@laptop";

    #[test]
    fn reads_hostname_and_keys_as_windows_writes_them() {
        let text =
            format!("\u{feff}# my card\r\nHostname = \"Pi-1\"\r\nssh_authorized_key={KEY}\r\n");
        let conf = parse(text.as_bytes()).unwrap();
        assert_eq!(conf.hostname, Some((2, "pi-1".to_owned())));
        assert_eq!(conf.ssh_keys, vec![(3, KEY.to_owned())]);
        assert!(conf.warnings.is_empty(), "{:?}", conf.warnings);
    }

    #[test]
    fn bad_lines_are_reported_by_number_and_the_rest_applies() {
        let text = "hostname pi-1\nhostname=pi_2\nhostname=pi-3\nhostname=pi-4\ncolour=blue\n\
                    ssh_authorized_key=-----BEGIN OPENSSH PRIVATE KEY-----\n\
                    ssh_authorized_key=ssh-ed25519 AAAAC3Nza\n";
        let conf = parse(text.as_bytes()).unwrap();
        assert_eq!(conf.hostname, Some((3, "pi-3".to_owned())));
        assert!(conf.ssh_keys.is_empty());
        let lines: Vec<usize> = conf.warnings.iter().map(|w| w.line).collect();
        assert_eq!(lines, vec![1, 2, 4, 5, 6, 7]);
        let all: Vec<String> = conf.warnings.iter().map(|w| w.to_string()).collect();
        assert!(all[0].contains("is not key=value"), "{all:?}");
        assert!(all[1].contains("invalid hostname \"pi_2\""), "{all:?}");
        assert!(all[2].contains("the one on line 3 is used"), "{all:?}");
        assert!(all[3].contains("unknown key \"colour\""), "{all:?}");
        assert!(all[4].contains("private key"), "{all:?}");
        assert!(all[5].contains("cut off"), "{all:?}");
    }

    #[test]
    fn rewrite_replaces_only_applied_keys() {
        let text = format!("hostname=pi-1\n# note\nssh_authorized_key={KEY}\nfoo=bar\n");
        let conf = parse(text.as_bytes()).unwrap();
        let out = conf.without_applied_keys("admin", "2026-11-22");
        assert_eq!(
            out,
            "hostname=pi-1\n# note\n# ssh_authorized_key (ssh-ed25519 me@laptop) installed for \
             user admin on 2026-11-22; removed from this file\nfoo=bar\n"
        );
        assert!(!out.contains("AAAA"));
    }

    #[test]
    fn refuses_what_is_not_a_firstboot_file() {
        assert_eq!(
            parse(&vec![b'a'; MAX_BYTES + 1]),
            Err(SysconfError::TooLarge(MAX_BYTES + 1))
        );
        assert_eq!(parse(b"hostname=pi-1\0"), Err(SysconfError::Binary(13)));
    }
}
