//! piha: one binary per Raspberry Pi for a highly available web, database and
//! storage cluster. See DESIGN.md for the map; each folder is one role.

pub mod balancer;
pub mod cli;
pub mod config;
pub mod firstboot;
pub mod gluster;
pub mod http1;
pub mod membership;
pub mod node;
pub mod pg;
pub mod pg_secret;
pub mod sock_diag;
pub mod status;
pub mod store;
pub mod tcp_timeout;
pub mod vrrp;
pub mod web;
