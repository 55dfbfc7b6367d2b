//! The Postgres pooler/router the balancer role runs on VIP:5432: clients log
//! in here, each statement or transaction is routed to the primary or a
//! standby, and server connections are shared between clients.

pub mod route;
