//! SCRAM-SHA-256 (RFC 5802, RFC 7677) as PostgreSQL speaks it, both halves,
//! as sans-IO exchanges: each step takes the peer's message bytes and
//! returns the next message to send. No channel binding (`-PLUS`): a client
//! that demands it is refused with a clear error.
//!
//! The server half also recovers the client's ClientKey from its proof; with
//! the verifier's ServerKey that is exactly a `ScramKeys`, which lets the
//! pooler log in to PostgreSQL as that user without ever seeing the password
//! (what PgBouncer calls SCRAM passthrough).

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::{Digest, Sha256};

use super::secret::{ScramKeys, Verifier};

pub const MECHANISM: &str = "SCRAM-SHA-256";
const NONCE_BYTES: usize = 18;

/// Why an exchange failed. `Rejected` is a wrong password (or an unknown
/// user); `Protocol` is a peer that did not follow the protocol.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ScramError {
    #[error("password authentication failed")]
    Rejected,
    #[error("SCRAM protocol error: {0}")]
    Protocol(&'static str),
    #[error("{0}")]
    KeysMismatch(String),
}

pub fn hmac(key: &[u8], msg: &[u8]) -> [u8; 32] {
    // new_from_slice only fails for fixed-size keys; HMAC takes any length.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC accepts any key length");
    mac.update(msg);
    mac.finalize().into_bytes().into()
}

/// Hi() of RFC 5802: PBKDF2-HMAC-SHA-256 with one 32-byte block.
pub fn salted_password(password: &[u8], salt: &[u8], iterations: u32) -> [u8; 32] {
    let mut block = salt.to_vec();
    block.extend_from_slice(&1u32.to_be_bytes());
    let mut u = hmac(password, &block);
    let mut out = u;
    for _ in 1..iterations {
        u = hmac(password, &u);
        for (o, x) in out.iter_mut().zip(u.iter()) {
            *o ^= x;
        }
    }
    out
}

fn nonce() -> String {
    let mut raw = [0u8; NONCE_BYTES];
    rand::rng().fill_bytes(&mut raw);
    B64.encode(raw)
}

fn xor32(a: &[u8; 32], b: &[u8; 32]) -> [u8; 32] {
    let mut out = [0u8; 32];
    for i in 0..32 {
        out[i] = a[i] ^ b[i];
    }
    out
}

/// Constant-time comparison, so a timing probe cannot learn a key byte by byte.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `k=v` attributes of a SCRAM message, in order.
fn attribute(msg: &str, key: char) -> Option<&str> {
    msg.split(',').find_map(|part| {
        let mut chars = part.chars();
        (chars.next() == Some(key) && chars.next() == Some('=')).then(|| &part[2..])
    })
}

/// The server half: checks a client against a stored verifier.
pub struct ServerExchange {
    verifier: Verifier,
    /// False for an unknown user: the exchange runs with a made-up verifier
    /// and fails at the end, so the answer does not reveal which users exist
    /// (as PostgreSQL does).
    real: bool,
    state: ServerState,
}

enum ServerState {
    Initial,
    SentFirst {
        client_first_bare: String,
        server_first: String,
        nonce: String,
        gs2_header: String,
    },
    Done,
}

/// What the server half produced on success.
pub struct ServerSuccess {
    /// `v=<ServerSignature>`, to send in AuthenticationSASLFinal.
    pub server_final: String,
    /// The client's keys, recovered from its proof.
    pub keys: ScramKeys,
}

impl ServerExchange {
    pub fn new(verifier: Option<Verifier>) -> ServerExchange {
        let real = verifier.is_some();
        let verifier = verifier.unwrap_or_else(|| {
            let mut salt = [0u8; 16];
            rand::rng().fill_bytes(&mut salt);
            Verifier {
                iterations: super::secret::DEFAULT_ITERATIONS,
                salt: salt.to_vec(),
                stored_key: [0; 32],
                server_key: [0; 32],
            }
        });
        ServerExchange {
            verifier,
            real,
            state: ServerState::Initial,
        }
    }

    /// Takes the client-first message; returns the server-first message.
    pub fn client_first(&mut self, msg: &[u8]) -> Result<String, ScramError> {
        if !matches!(self.state, ServerState::Initial) {
            return Err(ScramError::Protocol("client-first message sent twice"));
        }
        let msg = std::str::from_utf8(msg).map_err(|_| ScramError::Protocol("not UTF-8"))?;
        // gs2 header: "n,," (no binding), "y,," (client could bind, thinks we
        // cannot: fine, we cannot), "p=..." (demands binding: refused).
        let (gs2_header, bare) = if let Some(rest) = msg.strip_prefix("n,,") {
            ("n,,", rest)
        } else if let Some(rest) = msg.strip_prefix("y,,") {
            ("y,,", rest)
        } else if msg.starts_with("p=") {
            return Err(ScramError::Protocol(
                "channel binding (SCRAM-SHA-256-PLUS) is not supported by piha",
            ));
        } else {
            return Err(ScramError::Protocol(
                "bad GS2 header in client-first message",
            ));
        };
        let client_nonce = attribute(bare, 'r')
            .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_graphic() && b != b','))
            .ok_or(ScramError::Protocol("client-first message without a nonce"))?;
        let nonce = format!("{client_nonce}{}", nonce());
        let server_first = format!(
            "r={nonce},s={},i={}",
            B64.encode(&self.verifier.salt),
            self.verifier.iterations
        );
        self.state = ServerState::SentFirst {
            client_first_bare: bare.to_string(),
            server_first: server_first.clone(),
            nonce,
            gs2_header: gs2_header.to_string(),
        };
        Ok(server_first)
    }

    /// Takes the client-final message; checks the proof.
    pub fn client_final(&mut self, msg: &[u8]) -> Result<ServerSuccess, ScramError> {
        let ServerState::SentFirst {
            client_first_bare,
            server_first,
            nonce,
            gs2_header,
        } = std::mem::replace(&mut self.state, ServerState::Done)
        else {
            return Err(ScramError::Protocol("client-final message out of order"));
        };
        let msg = std::str::from_utf8(msg).map_err(|_| ScramError::Protocol("not UTF-8"))?;
        let (without_proof, proof) = msg
            .rsplit_once(",p=")
            .ok_or(ScramError::Protocol("client-final message without a proof"))?;
        let binding = attribute(without_proof, 'c').ok_or(ScramError::Protocol(
            "client-final message without channel binding data",
        ))?;
        if binding != B64.encode(gs2_header.as_bytes()) {
            return Err(ScramError::Protocol(
                "channel binding data does not match the GS2 header",
            ));
        }
        if attribute(without_proof, 'r') != Some(nonce.as_str()) {
            return Err(ScramError::Protocol("nonce does not match"));
        }
        let proof: [u8; 32] = B64
            .decode(proof)
            .ok()
            .and_then(|p| p.try_into().ok())
            .ok_or(ScramError::Protocol("proof is not 32 bytes of base64"))?;
        let auth_message = format!("{client_first_bare},{server_first},{without_proof}");
        let client_signature = hmac(&self.verifier.stored_key, auth_message.as_bytes());
        let client_key = xor32(&proof, &client_signature);
        let stored: [u8; 32] = Sha256::digest(client_key).into();
        if !self.real || !same(&stored, &self.verifier.stored_key) {
            return Err(ScramError::Rejected);
        }
        let server_signature = hmac(&self.verifier.server_key, auth_message.as_bytes());
        Ok(ServerSuccess {
            server_final: format!("v={}", B64.encode(server_signature)),
            keys: ScramKeys {
                iterations: self.verifier.iterations,
                salt: self.verifier.salt.clone(),
                client_key,
                server_key: self.verifier.server_key,
            },
        })
    }
}

/// The client half: logs in to a server with keys.
pub struct ClientExchange {
    keys: ScramKeys,
    nonce: String,
    expected_server_signature: Option<[u8; 32]>,
}

impl ClientExchange {
    pub fn new(keys: ScramKeys) -> ClientExchange {
        ClientExchange {
            keys,
            nonce: nonce(),
            expected_server_signature: None,
        }
    }

    /// The client-first message (after the mechanism name in SASLInitialResponse).
    pub fn client_first(&self) -> String {
        format!("n,,n=,r={}", self.nonce)
    }

    /// Takes the server-first message; returns the client-final message.
    pub fn server_first(&mut self, msg: &[u8]) -> Result<String, ScramError> {
        let msg = std::str::from_utf8(msg).map_err(|_| ScramError::Protocol("not UTF-8"))?;
        let nonce =
            attribute(msg, 'r').ok_or(ScramError::Protocol("server-first without nonce"))?;
        if !nonce.starts_with(&self.nonce) || nonce.len() == self.nonce.len() {
            return Err(ScramError::Protocol("server nonce does not extend ours"));
        }
        let salt = attribute(msg, 's')
            .and_then(|s| B64.decode(s).ok())
            .ok_or(ScramError::Protocol("server-first without a valid salt"))?;
        let iterations: u32 =
            attribute(msg, 'i')
                .and_then(|i| i.parse().ok())
                .ok_or(ScramError::Protocol(
                    "server-first without valid iterations",
                ))?;
        if salt != self.keys.salt || iterations != self.keys.iterations {
            return Err(ScramError::KeysMismatch(
                "the server's verifier for this user has another salt or iteration count than \
                 piha's keys: the password was changed on the server since the keys were made"
                    .into(),
            ));
        }
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("n=,r={},{msg},{without_proof}", self.nonce);
        let stored_key: [u8; 32] = Sha256::digest(self.keys.client_key).into();
        let client_signature = hmac(&stored_key, auth_message.as_bytes());
        let proof = xor32(&self.keys.client_key, &client_signature);
        self.expected_server_signature = Some(hmac(&self.keys.server_key, auth_message.as_bytes()));
        Ok(format!("{without_proof},p={}", B64.encode(proof)))
    }

    /// Takes the server-final message; checks the server knew the verifier.
    pub fn server_final(&self, msg: &[u8]) -> Result<(), ScramError> {
        let msg = std::str::from_utf8(msg).map_err(|_| ScramError::Protocol("not UTF-8"))?;
        if let Some(err) = attribute(msg, 'e') {
            let _ = err;
            return Err(ScramError::Rejected);
        }
        let got = attribute(msg, 'v')
            .and_then(|v| B64.decode(v).ok())
            .ok_or(ScramError::Protocol("server-final without a signature"))?;
        match &self.expected_server_signature {
            Some(want) if same(want, &got) => Ok(()),
            Some(_) => Err(ScramError::Protocol(
                "the server's signature is wrong: not the real server",
            )),
            None => Err(ScramError::Protocol("server-final before server-first")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(client_keys: ScramKeys, verifier: Option<Verifier>) -> Result<ScramKeys, ScramError> {
        let mut client = ClientExchange::new(client_keys);
        let mut server = ServerExchange::new(verifier);
        let first = server.client_first(client.client_first().as_bytes())?;
        let fin = client.server_first(first.as_bytes())?;
        let ok = server.client_final(fin.as_bytes())?;
        client.server_final(ok.server_final.as_bytes())?;
        Ok(ok.keys)
    }

    #[test]
    fn both_halves_agree_and_the_server_recovers_the_client_key() {
        let keys = ScramKeys::derive("secret", b"salty-salt-salt!", 4096);
        let got = run(keys.clone(), Some(keys.verifier())).expect("logs in");
        assert!(got == keys);
    }

    #[test]
    fn wrong_password_and_unknown_user_are_rejected_alike() {
        let keys = ScramKeys::derive("secret", b"salty-salt-salt!", 4096);
        let other = ScramKeys::derive("guess", b"salty-salt-salt!", 4096);
        assert_eq!(
            run(other, Some(keys.verifier())).err(),
            Some(ScramError::Rejected)
        );
        let mut client = ClientExchange::new(keys);
        let mut server = ServerExchange::new(None);
        let first = server
            .client_first(client.client_first().as_bytes())
            .expect("first");
        // The made-up verifier has another salt: our own client notices, a
        // real one would send a proof that fails.
        assert!(client.server_first(first.as_bytes()).is_err());
    }

    #[test]
    fn rfc7677_test_vector() {
        // RFC 7677 §3: user "user", password "pencil".
        let salt = B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").expect("b64");
        let salted = salted_password(b"pencil", &salt, 4096);
        let client_key = hmac(&salted, b"Client Key");
        let stored: [u8; 32] = Sha256::digest(client_key).into();
        let server_key = hmac(&salted, b"Server Key");
        let client_first_bare = "n=user,r=rOprNGfwEbeRWgbNEkqO";
        let server_first = "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
        let without_proof = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
        let auth = format!("{client_first_bare},{server_first},{without_proof}");
        let proof = xor32(&client_key, &hmac(&stored, auth.as_bytes()));
        assert_eq!(
            B64.encode(proof),
            "dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
        );
        assert_eq!(
            B64.encode(hmac(&server_key, auth.as_bytes())),
            "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
        );
    }

    #[test]
    fn garbage_is_a_protocol_error_not_a_panic() {
        let keys = ScramKeys::derive("secret", b"salty-salt-salt!", 4096);
        for msg in [
            &b""[..],
            b"\xff\xfe",
            b"n,,",
            b"p=tls-unique,,n=,r=abc",
            b"x,,n=,r=a",
        ] {
            let mut server = ServerExchange::new(Some(keys.verifier()));
            assert!(server.client_first(msg).is_err(), "{msg:?}");
        }
        let mut server = ServerExchange::new(Some(keys.verifier()));
        server.client_first(b"n,,n=,r=abc").expect("first");
        for msg in [
            &b""[..],
            b"c=biws",
            b"c=biws,r=abc,p=!!",
            b"c=xx,r=abc,p=AAAA",
        ] {
            let mut s = ServerExchange::new(Some(keys.verifier()));
            s.client_first(b"n,,n=,r=abc").expect("first");
            assert!(s.client_final(msg).is_err(), "{msg:?}");
        }
    }
}
