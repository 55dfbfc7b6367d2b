//! The server side: connections to PostgreSQL (`conn`), made and logged in
//! by `connect` with keys or an md5 secret, never a password.

mod conn;
mod connect;

pub use conn::{MAX_PREPARED, Row, ServerConn};
pub use connect::{ConnectParams, Credentials, connect};
