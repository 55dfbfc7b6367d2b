//! Helpers shared by integration tests (`mod common;`). Not every test uses
//! every helper, hence the allow.
#![allow(dead_code)]

pub mod browser;
pub mod db_net;
pub mod db_rig;
pub mod drill;
pub mod full_cluster;
pub mod gluster_net;
pub mod netns;
pub mod node;
pub mod pg;
pub mod pooler;
pub mod storage_rig;
pub mod vrrp_rig;
