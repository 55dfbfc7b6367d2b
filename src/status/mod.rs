//! Status page, JSON API and /metrics on the admin port. (Being written.)

pub mod client {
    pub fn run(_args: &crate::cli::StatusArgs) -> anyhow::Result<()> {
        anyhow::bail!("piha status is being written")
    }
}
