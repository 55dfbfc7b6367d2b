//! The admin port (status page, JSON API, /metrics) and `piha status`, the
//! terminal view of the same API.

pub mod api;
pub mod auth;
pub mod balancer;
mod balancer_http;
pub mod client;
pub mod db;
pub mod db_api;
pub mod metrics;
mod page;
pub mod pooler;
pub mod server;
pub mod storage;
pub mod unconfigured;
pub mod vrrp;
