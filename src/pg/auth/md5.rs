//! md5 password authentication, for clients too old for SCRAM. The stored
//! secret is md5(password || user); the client answers a 4-byte salt with
//! "md5" + hex(md5(hex(secret) || salt)).

use ::md5::{Digest, Md5};
use rand::RngCore;

pub fn salt() -> [u8; 4] {
    let mut salt = [0u8; 4];
    rand::rng().fill_bytes(&mut salt);
    salt
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What a client must answer for this stored secret and salt.
pub fn expected_response(secret: &[u8; 16], salt: [u8; 4]) -> String {
    let mut h = Md5::new();
    h.update(hex(secret).as_bytes());
    h.update(salt);
    format!("md5{}", hex(&h.finalize()))
}

/// The stored form of a password, as PostgreSQL makes it.
pub fn secret(password: &str, user: &str) -> [u8; 16] {
    let mut h = Md5::new();
    h.update(password.as_bytes());
    h.update(user.as_bytes());
    h.finalize().into()
}

/// Checks a client's PasswordMessage text (without its trailing NUL).
pub fn check(secret: &[u8; 16], salt: [u8; 4], response: &[u8]) -> bool {
    let want = expected_response(secret, salt);
    want.len() == response.len()
        && want
            .bytes()
            .zip(response)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_postgres_stored_form_and_checks_responses() {
        // SELECT 'md5' || md5('secret' || 'alice') in PostgreSQL.
        let s = secret("secret", "alice");
        assert_eq!(hex(&s).len(), 32);
        let salt = [1, 2, 3, 4];
        let good = expected_response(&s, salt);
        assert!(check(&s, salt, good.as_bytes()));
        assert!(!check(&s, [4, 3, 2, 1], good.as_bytes()));
        assert!(!check(&s, salt, b"md5"));
    }
}
