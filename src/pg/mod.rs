//! PostgreSQL: the wire protocol (`wire`), authentication (`auth`) and the
//! pooler/router the balancer role runs on the VIP (`pooler`). Managing the
//! PostgreSQL server itself (the db role) lives beside them later.

pub mod auth;
pub mod pooler;
pub mod wire;
