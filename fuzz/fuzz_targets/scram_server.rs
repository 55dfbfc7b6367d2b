//! The server half of SCRAM-SHA-256 as the pooler runs it against a client:
//! a fuzzed client-first and client-final, either raw or built around the
//! real nonce (so the proof check is reached), or an honest client whose
//! messages the fuzzer tampers with. Also the secrets the pooler parses
//! (the cluster file, or rows auth_query reads from PostgreSQL) and the md5
//! check.

#![no_main]

use std::sync::OnceLock;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use piha::pg::auth::scram::{ClientExchange, ScramError, ServerExchange};
use piha::pg::auth::{ScramKeys, Secret, md5};

#[derive(Arbitrary, Debug)]
enum Input {
    /// Both messages as the fuzzer made them.
    Raw {
        known_user: bool,
        first: Vec<u8>,
        last: Vec<u8>,
    },
    /// A client-final that carries the right channel binding and nonce,
    /// then whatever the fuzzer adds (a proof, more attributes).
    Shaped {
        known_user: bool,
        first: Vec<u8>,
        binding: bool,
        tail: Vec<u8>,
    },
    /// An honest client (right or wrong password); the fuzzer may change
    /// one byte of either message.
    Honest {
        right_password: bool,
        tamper_first: Option<(u16, u8)>,
        tamper_last: Option<(u16, u8)>,
    },
    Secrets {
        text: String,
        answer: Vec<u8>,
        salt: [u8; 4],
    },
}

/// A user's keys, made once (few iterations: the exchange is what is fuzzed).
fn keys() -> &'static ScramKeys {
    static KEYS: OnceLock<ScramKeys> = OnceLock::new();
    KEYS.get_or_init(|| ScramKeys::derive("pencil", b"fuzz-salt-16byte", 2))
}

fn wrong_keys() -> &'static ScramKeys {
    static KEYS: OnceLock<ScramKeys> = OnceLock::new();
    KEYS.get_or_init(|| ScramKeys::derive("crayon", b"fuzz-salt-16byte", 2))
}

fn server(known_user: bool) -> ServerExchange {
    ServerExchange::new(known_user.then(|| keys().verifier()))
}

fn attribute<'a>(msg: &'a str, key: &str) -> Option<&'a str> {
    msg.split(',').find_map(|p| p.strip_prefix(key))
}

fn tamper(mut msg: Vec<u8>, t: Option<(u16, u8)>) -> Vec<u8> {
    if let Some((at, x)) = t {
        if !msg.is_empty() {
            let i = at as usize % msg.len();
            msg[i] ^= x.max(1);
        }
    }
    msg
}

/// A success must be a real user whose recovered keys match the verifier.
fn check_success(known_user: bool, r: Result<piha::pg::auth::scram::ServerSuccess, ScramError>) {
    if let Ok(ok) = r {
        assert!(known_user, "an unknown user logged in");
        let v = ok.keys.verifier();
        let want = keys().verifier();
        assert!(
            v.stored_key == want.stored_key && v.server_key == want.server_key,
            "a login with keys that do not match the verifier"
        );
        assert!(ok.server_final.starts_with("v="));
    }
}

fuzz_target!(|input: Input| {
    match input {
        Input::Raw {
            known_user,
            first,
            last,
        } => {
            let mut s = server(known_user);
            let first_ok = s.client_first(&first).is_ok();
            // A second client-first is always out of order.
            assert!(s.client_first(&first).is_err());
            let r = s.client_final(&last);
            if !first_ok {
                assert!(r.is_err(), "client-final accepted without a client-first");
            }
            check_success(known_user, r);
            // Done: nothing more is accepted.
            assert!(s.client_final(&last).is_err());
        }
        Input::Shaped {
            known_user,
            first,
            binding,
            tail,
        } => {
            let mut s = server(known_user);
            let Ok(server_first) = s.client_first(&first) else {
                return;
            };
            let nonce = attribute(&server_first, "r=").expect("server-first has r=");
            let mut last = Vec::new();
            if binding {
                // base64("n,,")
                last.extend_from_slice(b"c=biws,");
            }
            last.extend_from_slice(format!("r={nonce}").as_bytes());
            last.extend_from_slice(&tail);
            check_success(known_user, s.client_final(&last));
        }
        Input::Honest {
            right_password,
            tamper_first,
            tamper_last,
        } => {
            let client_keys = if right_password { keys() } else { wrong_keys() };
            let mut client = ClientExchange::new(client_keys.clone());
            let mut s = server(true);
            let first = tamper(client.client_first().into_bytes(), tamper_first);
            let Ok(server_first) = s.client_first(&first) else {
                return;
            };
            let Ok(last) = client.server_first(server_first.as_bytes()) else {
                return;
            };
            let last = tamper(last.into_bytes(), tamper_last);
            let r = s.client_final(&last);
            if tamper_first.is_none() && tamper_last.is_none() {
                assert_eq!(r.is_ok(), right_password, "an honest exchange");
            }
            if !right_password {
                assert!(r.is_err(), "a wrong password logged in");
            }
            if let Ok(ok) = &r {
                // Our own client half agrees with what the server signed
                // unless the fuzzer changed what was signed.
                let verdict = client.server_final(ok.server_final.as_bytes());
                if tamper_first.is_none() && tamper_last.is_none() {
                    assert!(verdict.is_ok(), "the client rejects an honest server");
                }
            }
            check_success(true, r);
        }
        Input::Secrets { text, answer, salt } => {
            match Secret::parse(&text) {
                Ok(Secret::Md5(hash)) => {
                    let _ = md5::check(&hash, salt, &answer);
                }
                Ok(Secret::Scram(v)) => {
                    let mut s = ServerExchange::new(Some(v));
                    if s.client_first(b"n,,n=,r=abc").is_ok() {
                        let _ = s.client_final(&answer);
                    }
                }
                Err(_) => {}
            }
            if let Ok(k) = ScramKeys::parse(&text) {
                // What parses prints back to something that parses the same.
                let again = ScramKeys::parse(&k.to_text()).expect("to_text parses");
                assert!(again == k, "ScramKeys text does not round-trip");
            }
        }
    }
});
