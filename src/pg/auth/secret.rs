//! The stored forms of a credential, as PostgreSQL writes them in
//! `pg_authid.rolpassword`, plus the client-key form piha uses for its own
//! login. None of them is the password.
//!
//! - `SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey>`: a verifier. Checks
//!   a client; cannot log in anywhere by itself.
//! - the same layout with `<ClientKey>` in place of `<StoredKey>`: keys. Can
//!   log in to a server holding the matching verifier (StoredKey =
//!   SHA-256(ClientKey)). Made by `piha pg-secret`, or recovered from a
//!   client's SCRAM proof (passthrough).
//! - `md5<32 hex>`: md5(password || user), for old clients.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use sha2::{Digest, Sha256};

/// SCRAM-SHA-256 iterations PostgreSQL uses by default (scram_iterations).
pub const DEFAULT_ITERATIONS: u32 = 4096;
/// A secret with a huge iteration count would make every login burn seconds
/// of a Pi's CPU: refuse it when loading the file, not at login.
const MAX_ITERATIONS: u32 = 1 << 20;

/// A stored credential for one user.
#[derive(Clone, PartialEq, Eq)]
pub enum Secret {
    Scram(Verifier),
    Md5([u8; 16]),
}

/// A SCRAM-SHA-256 verifier: enough to check a client, not to log in.
#[derive(Clone, PartialEq, Eq)]
pub struct Verifier {
    pub iterations: u32,
    pub salt: Vec<u8>,
    pub stored_key: [u8; 32],
    pub server_key: [u8; 32],
}

/// SCRAM-SHA-256 keys: enough to log in to a server that holds the matching
/// verifier.
#[derive(Clone, PartialEq, Eq)]
pub struct ScramKeys {
    pub iterations: u32,
    pub salt: Vec<u8>,
    pub client_key: [u8; 32],
    pub server_key: [u8; 32],
}

// Secrets must never reach a log line through `{:?}`.
impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Secret::Scram(_) => f.write_str("Secret::Scram(..)"),
            Secret::Md5(_) => f.write_str("Secret::Md5(..)"),
        }
    }
}
impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Verifier {{ iterations: {}, .. }}", self.iterations)
    }
}
impl std::fmt::Debug for ScramKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ScramKeys {{ iterations: {}, .. }}", self.iterations)
    }
}

impl Secret {
    /// Parses a `pg_authid.rolpassword` value. The error says what is wrong
    /// without echoing the secret.
    pub fn parse(text: &str) -> Result<Secret, String> {
        if let Some(hex) = text.strip_prefix("md5") {
            return parse_md5(hex).map(Secret::Md5);
        }
        if text.starts_with("SCRAM-SHA-256$") {
            let (iterations, salt, a, b) = parse_scram(text)?;
            return Ok(Secret::Scram(Verifier {
                iterations,
                salt,
                stored_key: a,
                server_key: b,
            }));
        }
        Err("expected a SCRAM-SHA-256 verifier (`SCRAM-SHA-256$4096:<salt>$<StoredKey>:<ServerKey>`, \
             as in pg_authid.rolpassword) or an md5 hash (`md5` and 32 hex digits)"
            .into())
    }
}

impl ScramKeys {
    /// Parses the client-key form made by `piha pg-secret`.
    pub fn parse(text: &str) -> Result<ScramKeys, String> {
        if !text.starts_with("SCRAM-SHA-256$") {
            return Err(
                "expected SCRAM keys (`SCRAM-SHA-256$<iter>:<salt>$<ClientKey>:<ServerKey>`, \
                        as printed by `piha pg-secret`)"
                    .into(),
            );
        }
        let (iterations, salt, client_key, server_key) = parse_scram(text)?;
        Ok(ScramKeys {
            iterations,
            salt,
            client_key,
            server_key,
        })
    }

    /// Derives the keys from a password (RFC 5802 §3), as PostgreSQL does
    /// when it stores a password. Only `piha pg-secret` and tests call this.
    pub fn derive(password: &str, salt: &[u8], iterations: u32) -> ScramKeys {
        // PostgreSQL applies SASLprep; for ASCII passwords it is the identity,
        // and a password SASLprep would reject is used as-is by PostgreSQL too.
        let salted = super::scram::salted_password(password.as_bytes(), salt, iterations);
        ScramKeys {
            iterations,
            salt: salt.to_vec(),
            client_key: super::scram::hmac(&salted, b"Client Key"),
            server_key: super::scram::hmac(&salted, b"Server Key"),
        }
    }

    /// The verifier a server must hold for these keys to log in.
    pub fn verifier(&self) -> Verifier {
        Verifier {
            iterations: self.iterations,
            salt: self.salt.clone(),
            stored_key: Sha256::digest(self.client_key).into(),
            server_key: self.server_key,
        }
    }

    pub fn to_text(&self) -> String {
        format!(
            "SCRAM-SHA-256${}:{}${}:{}",
            self.iterations,
            B64.encode(&self.salt),
            B64.encode(self.client_key),
            B64.encode(self.server_key)
        )
    }
}

impl Verifier {
    /// The `rolpassword` text, for `ALTER ROLE ... PASSWORD '<this>'`.
    pub fn to_text(&self) -> String {
        format!(
            "SCRAM-SHA-256${}:{}${}:{}",
            self.iterations,
            B64.encode(&self.salt),
            B64.encode(self.stored_key),
            B64.encode(self.server_key)
        )
    }
}

fn parse_md5(hex: &str) -> Result<[u8; 16], String> {
    if hex.len() != 32 {
        return Err(format!(
            "an md5 secret is `md5` and 32 hex digits; this one has {} after `md5`",
            hex.len()
        ));
    }
    // Checked first: slicing two bytes at a time would panic inside a
    // multi-byte character, and from_str_radix would take a '+'.
    if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err("an md5 secret may only hold hex digits after `md5`".to_string());
    }
    let mut out = [0u8; 16];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16)
            .map_err(|_| "an md5 secret may only hold hex digits after `md5`".to_string())?;
    }
    Ok(out)
}

type ScramParts = (u32, Vec<u8>, [u8; 32], [u8; 32]);

fn parse_scram(text: &str) -> Result<ScramParts, String> {
    let rest = &text["SCRAM-SHA-256$".len()..];
    let (params, keys) = rest
        .split_once('$')
        .ok_or("a SCRAM secret has two `$`-separated parts after `SCRAM-SHA-256$`")?;
    let (iter, salt) = params
        .split_once(':')
        .ok_or("the first part of a SCRAM secret is `<iterations>:<salt>`")?;
    let iterations: u32 = iter
        .parse()
        .map_err(|_| format!("SCRAM iterations must be a number, not `{iter}`"))?;
    if iterations == 0 || iterations > MAX_ITERATIONS {
        return Err(format!(
            "SCRAM iterations must be 1 to {MAX_ITERATIONS}, not {iterations}"
        ));
    }
    let salt = B64
        .decode(salt)
        .map_err(|_| "the SCRAM salt is not valid base64".to_string())?;
    if salt.is_empty() {
        return Err("the SCRAM salt is empty".into());
    }
    let (a, b) = keys
        .split_once(':')
        .ok_or("the second part of a SCRAM secret is `<key>:<ServerKey>`")?;
    Ok((iterations, salt, key32(a)?, key32(b)?))
}

fn key32(text: &str) -> Result<[u8; 32], String> {
    let bytes = B64
        .decode(text)
        .map_err(|_| "a SCRAM key is not valid base64".to_string())?;
    bytes
        .try_into()
        .map_err(|_| "a SCRAM key must be 32 bytes (44 base64 characters)".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_match_their_verifier() {
        let keys = ScramKeys::derive("pencil", b"0123456789abcdef", 4096);
        let again = ScramKeys::parse(&keys.to_text()).expect("parses");
        assert!(again == keys);
        let Secret::Scram(v) = Secret::parse(&keys.verifier().to_text()).expect("parses") else {
            panic!("not scram");
        };
        assert_eq!(v.stored_key, keys.verifier().stored_key);
        let Ok(Secret::Md5(hash)) = Secret::parse("md50123456789abcdefABCDEF0123456789") else {
            panic!("md5 with upper-case digits");
        };
        assert_eq!(hash[..4], [0x01, 0x23, 0x45, 0x67]);
        assert_eq!(hash[8..12], [0xab, 0xcd, 0xef, 0x01]);
    }

    #[test]
    fn bad_secrets_say_what_is_wrong_without_echoing() {
        for (text, want) in [
            ("md5abc", "32 hex"),
            ("md5zz0123456789abcdef0123456789ab", "hex digits"),
            // Found by the scram_server fuzz target: 32 bytes with a
            // two-byte character at an odd offset panicked (slicing).
            (
                "md5ad5a2\u{4d9}a4252a4eN1\0\0\0\0F1\u{f}\0\0\x002xt\0A",
                "hex digits",
            ),
            ("md5+f+f0123456789abcdef0123456789ab", "hex digits"),
            (
                "SCRAM-SHA-256$x:c2FsdA==$a:b",
                "iterations must be a number",
            ),
            ("SCRAM-SHA-256$0:c2FsdA==$a:b", "1 to"),
            ("SCRAM-SHA-256$4096:c2FsdA==$YQ==:YQ==", "32 bytes"),
            ("hunter2", "expected a SCRAM"),
        ] {
            let err = Secret::parse(text).expect_err(text);
            assert!(err.contains(want), "{text}: {err}");
            assert!(!err.contains("hunter2"));
        }
    }
}
