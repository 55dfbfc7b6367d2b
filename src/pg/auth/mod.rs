//! Authentication, both ways: checking a client against a stored secret
//! (`scram::ServerExchange`, `md5`), and logging in to PostgreSQL
//! (`scram::ClientExchange`) with keys instead of a password.
//!
//! Written by hand on top of hmac/sha2/base64 because postgres-protocol only
//! has the client half, and only from a cleartext password: piha must never
//! need one on disk.

pub mod md5;
pub mod scram;
pub mod secret;

pub use secret::{ScramKeys, Secret, Verifier};
