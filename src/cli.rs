// The command line, as data. Kept free of any other piha module so that
// `build.rs` can `include!` it to generate the man page and shell completions
// from the very definition the binary parses with.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// piha: one binary per Raspberry Pi for a highly available web, database and
/// storage cluster. Each node takes its roles from its hostname's entry in the
/// cluster file.
#[derive(Debug, Parser)]
#[command(name = "piha", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run this node: every role its hostname has in the cluster file.
    Run(RunArgs),
    /// Validate the cluster file and print every node's role plan.
    Check(CheckArgs),
    /// Print the cluster as a node's status API sees it.
    Status(StatusArgs),
    /// Make the Postgres pooler's own login from a password read on stdin:
    /// prints the ALTER ROLE statement for PostgreSQL and the `service` line
    /// for the cluster file's [postgres] section.
    PgSecret(PgSecretArgs),
    /// Make another db node the PostgreSQL primary without losing a
    /// committed transaction (asks the VRRP master, which runs it).
    Switchover(SwitchoverArgs),
    /// Restore a PostgreSQL base backup (from `[db] backup`) into a new
    /// data directory; never writes into one that holds anything. Prints
    /// how to put it in place.
    DbRestore(DbRestoreArgs),
    /// Apply the boot partition's piha/firstboot.txt (hostname, SSH key),
    /// grow the root file system, make host keys and the node's address.
    /// Run at every boot by piha-firstboot.service on the SD-card image;
    /// what is done once is never redone.
    Firstboot(FirstbootArgs),
    /// Internal: started by `piha run` next to its VRRP instance. Waits for
    /// its parent to go away (stdin closes), then takes the VIPs off the
    /// interface, so a killed node never leaves its VIP behind.
    #[command(hide = true)]
    VipGuard(VipGuardArgs),
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Cluster file. Without it: /boot/firmware/piha/cluster.toml, then
    /// /etc/piha/cluster.toml.
    #[arg(long, short = 'c', env = "PIHA_CONFIG")]
    pub config: Option<PathBuf>,
    /// Act as this host instead of the system's hostname (tests, one-machine clusters).
    #[arg(long, env = "PIHA_HOSTNAME")]
    pub hostname: Option<String>,
    /// Where the event store and other node state live.
    #[arg(long, env = "PIHA_DATA_DIR", default_value = "/var/lib/piha")]
    pub data_dir: PathBuf,
    /// This node's address, for a node that joins by a hostname pattern and
    /// so has none in the cluster file. Default: the address the kernel would
    /// use to reach the first node of the file.
    #[arg(long, env = "PIHA_ADDRESS")]
    pub address: Option<std::net::IpAddr>,
}

#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// Cluster file. Without it: /boot/firmware/piha/cluster.toml, then
    /// /etc/piha/cluster.toml.
    #[arg(long, short = 'c', env = "PIHA_CONFIG")]
    pub config: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// Base URL of any node's admin port. Default: this machine's own node,
    /// found through the cluster file and the hostname.
    #[arg(long, env = "PIHA_URL")]
    pub url: Option<String>,
    /// Cluster file used to find this machine's node when --url is not given.
    #[arg(long, short = 'c', env = "PIHA_CONFIG")]
    pub config: Option<PathBuf>,
    /// Print the API's JSON as it came instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct SwitchoverArgs {
    /// The db node to make primary, e.g. pi-2.
    #[arg(long, value_name = "HOSTNAME")]
    pub to: String,
    /// Base URL of any node's admin port. Default: this machine's own node.
    #[arg(long, env = "PIHA_URL")]
    pub url: Option<String>,
    /// Cluster file: where the admin token comes from (and this machine's
    /// node when --url is not given).
    #[arg(long, short = 'c', env = "PIHA_CONFIG")]
    pub config: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct DbRestoreArgs {
    /// One backup's folder, like
    /// /srv/piha/backups/postgresql/piha-20240305T060708Z-pi-1.
    #[arg(long, value_name = "DIR")]
    pub from: PathBuf,
    /// The new data directory: must not exist, or be empty.
    #[arg(long, value_name = "DIR")]
    pub to: PathBuf,
    /// PostgreSQL's programs (pg_verifybackup checks the restored files).
    #[arg(long, value_name = "DIR", default_value = "/usr/lib/postgresql/15/bin")]
    pub bindir: PathBuf,
    /// The OS user PostgreSQL runs as: it gets the restored directory when
    /// db-restore runs as root.
    #[arg(long, value_name = "NAME", default_value = "postgres")]
    pub os_user: String,
}

#[derive(Debug, clap::Args)]
pub struct PgSecretArgs {
    /// The PostgreSQL role the pooler logs in as (1 to 63 bytes).
    #[arg(long, value_name = "NAME")]
    pub user: String,
}

#[derive(Debug, clap::Args)]
pub struct FirstbootArgs {
    /// The boot partition's mount point (holds piha/firstboot.txt and
    /// piha/cluster.toml).
    #[arg(long, value_name = "DIR", default_value = "/boot/firmware")]
    pub boot_dir: PathBuf,
    /// The system to configure. Anything but / (a test's folder) skips
    /// what acts on the running machine: the kernel's hostname, growing
    /// the root partition.
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub root: PathBuf,
    /// piha's data directory: first-boot markers, TLS certificate.
    #[arg(long, env = "PIHA_DATA_DIR", default_value = "/var/lib/piha")]
    pub data_dir: PathBuf,
    /// Cluster file. Without it: piha/cluster.toml on the boot partition,
    /// then /etc/piha/cluster.toml under --root.
    #[arg(long, short = 'c', env = "PIHA_CONFIG")]
    pub config: Option<PathBuf>,
    /// The user that ssh_authorized_key= keys are installed for.
    #[arg(long, value_name = "NAME", default_value = "admin")]
    pub admin_user: String,
}

#[derive(Debug, clap::Args)]
pub struct VipGuardArgs {
    /// Index of the interface the VIPs are on.
    #[arg(long)]
    pub ifindex: u32,
    /// A VIP with its prefix length; repeated for several.
    #[arg(long = "vip", required = true)]
    pub vips: Vec<String>,
}
