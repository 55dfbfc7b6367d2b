//! The node agent: loads the plan, starts and supervises every task, handles
//! signals and systemd. (Being written.)

pub fn run(_args: crate::cli::RunArgs) -> anyhow::Result<()> {
    anyhow::bail!("piha run is being written")
}
