//! PostgreSQL: the wire protocol (`wire`), authentication (`auth`), the
//! pooler/router the balancer role runs on the VIP (`pooler`), the db role
//! that runs the local server (`supervisor`), and the cluster decisions the
//! VRRP master makes about it: failover and switchover (`failover`).

pub mod auth;
pub mod failover;
pub mod pooler;
pub mod supervisor;
pub mod wire;
