//! The PostgreSQL v3 wire protocol, as far as the pooler needs it: frames
//! read under a size limit (`frame`), the startup packet (`startup`), the
//! client messages it inspects or rewrites (`frontend`) and the messages it
//! answers with itself, acting as the server (`backend`).
//!
//! Messages to PostgreSQL are built with postgres-protocol's
//! `message::frontend` and server replies during login are parsed with its
//! `message::backend`; the halves written here are the ones postgres-protocol
//! lacks (it is a client library: it neither parses client messages nor
//! builds server ones).

pub mod backend;
pub mod error;
pub mod frame;
pub mod frontend;
pub mod startup;

pub use error::WireError;
pub use frame::Frame;
