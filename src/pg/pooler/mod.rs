//! The Postgres pooler/router the balancer role runs on VIP:5432: clients log
//! in here, each statement or transaction is routed to the primary or a
//! standby, and server connections are shared between clients.

pub mod admin;
pub mod auth_query;
pub mod backends;
pub mod cancel;
pub mod catalog_loader;
pub mod client;
pub mod error;
pub mod pool;
pub mod prepared;
pub mod prober;
pub mod relay;
pub mod role;
pub mod route;
pub mod server;
pub mod settings;
pub mod shared;
pub mod stream;
pub mod tls;
