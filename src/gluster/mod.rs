//! The storage role: forms the GlusterFS pool and volume from the cluster
//! file, mounts it where the web role serves from, and watches it.
//! Start with LIFECYCLE.md.
//!
//! - `runner.rs`: runs the `gluster` CLI with a deadline, one call at a
//!   time, retrying a held cluster lock.
//! - `reply.rs`, `xml/`, `heal_count.rs`: what the CLI printed, typed; every
//!   way it fails becomes a [`reply::CliError`], never "0 volumes".
//! - `model.rs`: the typed values; `health.rs`: what they mean (sans-IO).
//! - `form.rs`: what the pool and volume still lack (sans-IO); `mount.rs`.
//! - `share.rs`: one node asks the questions that take gluster's cluster
//!   lock; the others read its answers.
//! - `role.rs`: the thin async shell that polls, forms, heals and publishes.

pub mod fence;
pub mod form;
pub mod heal_count;
pub mod health;
pub mod model;
pub mod mount;
pub mod poll;
pub mod reply;
pub mod role;
pub mod runner;
pub mod share;
pub mod status;
pub mod xml;
