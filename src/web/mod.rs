//! The web role: static files from the document root (the Apache
//! replacement), the built-in endpoints (`/health`, `/api/random/*`) and the
//! notes demo app (`/api/notes`), over HTTP/1.1 and h2c on the plain port
//! and h1/h2 over TLS.
//!
//! - `role`: the supervised service (`run`), health and reload handling;
//! - `server`: accept loop and per-connection bounds, reusable by the
//!   balancer;
//! - `app`: routing and the access log hook; `endpoints`: the built-ins;
//! - `notes`: the demo app on the cluster's database, for failure drills;
//! - `files`: ServeDir plus path safety, ETags, conditionals, ranges;
//! - `tls`: server config, reloading certificates, the self-signed one;
//! - `access_log`: combined-format lines off the request path.
//!
//! LIFECYCLE.md beside this file draws the request path and its bounds.

mod access_log;
mod app;
mod endpoints;
pub mod files;
pub mod httpdate;
pub mod notes;
mod respond;
mod role;
mod server;
pub mod tls;

pub use access_log::{AccessLogger, Entry as AccessLogEntry};
pub use app::{WebApp, router, router_with};
pub use role::run;
pub use server::{Body, BoxError, ConnInfo, Handler, Limits, serve};
