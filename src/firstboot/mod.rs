//! `piha firstboot`: what the SD-card image runs at every boot, before the
//! network and before `piha run` (piha-firstboot.service). On the first boot
//! it turns the one image every card was flashed with into this Pi:
//!
//! 1. the hostname, from `hostname=` in `piha/firstboot.txt` on the boot
//!    partition, else from the cluster file's `mac` map, else unchanged;
//! 2. `ssh_authorized_key=` lines, installed for the admin user and then
//!    taken out of the file (`sysconf`);
//! 3. the root partition and file system grown to the card;
//! 4. SSH host keys and piha's TLS certificate, made on the card itself;
//! 5. the node's cluster address, from the cluster file, on eth0.
//!
//! Steps 3 and 4 leave a marker under `/var/lib/piha/firstboot/` and never
//! run again; the others follow the boot partition at every boot, so an
//! owner who renames a card or pastes another key just edits the file and
//! restarts the Pi. `plan` decides (no IO, tested on its own), `apply`
//! acts. One failed step is logged and the others still run; the command
//! then exits non-zero so `systemctl --failed` shows it.

pub mod apply;
pub mod plan;
pub mod sysconf;

use std::collections::BTreeSet;
use std::path::Path;

use self::apply::{Grown, Paths};
use self::plan::{Facts, HostnameSource, Once, Step};
use self::sysconf::Sysconf;
use crate::cli::FirstbootArgs;
use crate::config::{self, ClusterConfig};

pub fn run(args: &FirstbootArgs) -> anyhow::Result<()> {
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_target(false)
        // The journal stamps each line; colour only for a terminal.
        .without_time()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
    let paths = Paths {
        root: args.root.clone(),
        boot: args.boot_dir.clone(),
        data_dir: args.data_dir.clone(),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let failed = runtime.block_on(boot(&paths, args))?;
    if failed > 0 {
        anyhow::bail!("{failed} first-boot step(s) failed (see above); the others were done");
    }
    Ok(())
}

/// Runs the plan; returns how many steps failed.
async fn boot(paths: &Paths, args: &FirstbootArgs) -> anyhow::Result<usize> {
    let sysconf = read_sysconf(paths);
    let current = current_hostname(paths);
    let macs = interface_macs(paths);
    let config = load_config(paths, args.config.as_deref());
    let done = done_markers(paths);
    let plan = plan::plan(&Facts {
        sysconf: sysconf.as_ref(),
        current_hostname: &current,
        macs: &macs,
        config: config.as_ref(),
        done: &done,
    });
    match &plan.source {
        HostnameSource::FirstbootFile(line) => {
            tracing::info!("hostname {} (firstboot.txt line {line})", plan.hostname)
        }
        HostnameSource::Mac { interface, mac } => tracing::info!(
            "hostname {} (the cluster file's mac for {interface}, {mac})",
            plan.hostname
        ),
        HostnameSource::Unchanged => tracing::info!(
            "hostname {} (unchanged: firstboot.txt names none and no node's mac matches)",
            plan.hostname
        ),
    }
    if !plan.skipped.is_empty() {
        let names: Vec<&str> = plan.skipped.iter().map(|o| o.marker()).collect();
        tracing::info!(
            "already done on an earlier boot, not redone: {}",
            names.join(", ")
        );
    }
    let mut failed = 0;
    for step in &plan.steps {
        if let Err(e) = apply_step(paths, args, sysconf.as_ref(), step).await {
            tracing::error!("{}: {e:#}", step_name(step));
            failed += 1;
        }
    }
    Ok(failed)
}

async fn apply_step(
    paths: &Paths,
    args: &FirstbootArgs,
    sysconf: Option<&Sysconf>,
    step: &Step,
) -> anyhow::Result<()> {
    match step {
        Step::SetHostname(name) => {
            apply::set_hostname(paths, name)?;
            tracing::info!("set the hostname to {name}");
        }
        Step::InstallSshKeys(keys) => {
            let added = apply::install_ssh_keys(paths, &args.admin_user, keys)?;
            tracing::info!(
                "installed {added} new SSH key(s) for user {} ({} given)",
                args.admin_user,
                keys.len()
            );
            if let Some(conf) = sysconf {
                let today = today();
                let text = conf.without_applied_keys(&args.admin_user, &today);
                apply::write_atomic(&paths.firstboot_file(), text.as_bytes(), 0o644)?;
                tracing::info!("took the installed key(s) out of firstboot.txt");
            }
        }
        Step::GrowRoot if !paths.is_live() => {
            tracing::info!("not growing the root file system: --root is not /");
        }
        Step::GrowRoot => {
            let what = match apply::grow_root(paths).await? {
                Grown::Grew {
                    partition,
                    from,
                    to,
                } => format!(
                    "grew the root file system on {partition} from {} MiB to {} MiB",
                    from >> 20,
                    to >> 20
                ),
                Grown::AlreadyFull { partition } => {
                    format!("the root partition {partition} already fills the card")
                }
            };
            tracing::info!("{what}");
            apply::mark_done(paths, Once::GrowRoot.marker(), &what)?;
        }
        Step::SshHostKeys => {
            let made = apply::ssh_host_keys(paths, &current_hostname(paths)).await?;
            let what = format!("made SSH host keys: {}", list_or_none(&made));
            tracing::info!("{what}");
            apply::mark_done(paths, Once::SshHostKeys.marker(), &what)?;
        }
        Step::TlsCert { hostname, address } => {
            let files = crate::web::tls::ensure_self_signed(&paths.data_dir, hostname, *address)?;
            let what = format!(
                "TLS certificate for {hostname} ({address}) in {}",
                files.cert.display()
            );
            tracing::info!("{what}");
            apply::mark_done(paths, Once::TlsCert.marker(), &what)?;
        }
        Step::NodeAddress { hostname, address } => {
            apply::node_address(paths, hostname, Some(*address))?;
            apply::mdns(paths, hostname, Some(address.addr()))?;
            tracing::info!(
                "node address {address} for eth0 (cluster file, node {hostname}); {hostname}.local is {} over mDNS",
                address.addr()
            );
        }
        Step::NoNodeAddress => {
            apply::node_address(paths, "", None)?;
            apply::mdns(paths, &current_hostname(paths), None)?;
            tracing::info!(
                "no node address: the hostname has no [[node]] entry in the cluster file (DHCP only)"
            );
        }
    }
    Ok(())
}

fn step_name(step: &Step) -> &'static str {
    match step {
        Step::SetHostname(_) => "setting the hostname",
        Step::InstallSshKeys(_) => "installing the SSH key",
        Step::GrowRoot => "growing the root file system",
        Step::SshHostKeys => "making SSH host keys",
        Step::TlsCert { .. } => "making the TLS certificate",
        Step::NodeAddress { .. } | Step::NoNodeAddress => "setting the node address",
    }
}

/// The file, or `None` with a log line saying why not.
fn read_sysconf(paths: &Paths) -> Option<Sysconf> {
    use std::io::Read as _;
    let path = paths.firstboot_file();
    let file = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            tracing::info!("no {}: nothing to apply from it", path.display());
            return None;
        }
        Err(e) => {
            tracing::error!("cannot read {}: {e}", path.display());
            return None;
        }
    };
    let mut bytes = Vec::new();
    // One byte over the limit is enough to know it is too large.
    if let Err(e) = file
        .take(sysconf::MAX_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
    {
        tracing::error!("cannot read {}: {e}", path.display());
        return None;
    }
    match sysconf::parse(&bytes) {
        Ok(conf) => {
            for w in &conf.warnings {
                tracing::warn!("{w}");
            }
            Some(conf)
        }
        Err(e) => {
            tracing::error!("{e}; nothing in it is applied");
            None
        }
    }
}

fn current_hostname(paths: &Paths) -> String {
    std::fs::read_to_string(paths.under_root("/etc/hostname"))
        .ok()
        .and_then(|t| t.lines().next().map(|l| l.trim().to_lowercase()))
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

/// `(interface, mac)` of every interface with an Ethernet address, in name
/// order (eth0 before wlan0), loopback left out.
fn interface_macs(paths: &Paths) -> Vec<(String, String)> {
    let dir = paths.under_root("/sys/class/net");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut macs: Vec<(String, String)> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let mac = std::fs::read_to_string(e.path().join("address")).ok()?;
            let mac = mac.trim().to_lowercase();
            (mac.len() == 17 && mac != "00:00:00:00:00:00").then_some((name, mac))
        })
        .collect();
    macs.sort();
    macs
}

fn load_config(paths: &Paths, explicit: Option<&Path>) -> Option<ClusterConfig> {
    let boot_copy = paths.boot.join("piha").join("cluster.toml");
    let etc_copy = paths.under_root("/etc/piha/cluster.toml");
    let found = match explicit {
        Some(p) => config::find_config(Some(p)),
        None => config::find_config_in(None, &[boot_copy.as_path(), etc_copy.as_path()]),
    };
    match found.and_then(|p| config::load(&p)) {
        Ok(c) => Some(c),
        Err(e) => {
            // `piha run` shows the same on the status page.
            tracing::warn!("no usable cluster file: {e}");
            None
        }
    }
}

fn done_markers(paths: &Paths) -> BTreeSet<Once> {
    Once::ALL
        .into_iter()
        .filter(|o| paths.marker_dir().join(o.marker()).exists())
        .collect()
}

fn today() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    format!("{y:04}-{m:02}-{d:02}")
}

/// Days since 1970-01-01 to a calendar date (Howard Hinnant's algorithm);
/// a whole date crate for one line in a comment is not worth it.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn list_or_none(items: &[String]) -> String {
    if items.is_empty() {
        "none needed (they exist)".to_owned()
    } else {
        items.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::civil_from_days;

    #[test]
    fn dates_from_days() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_414), (2025, 11, 22));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }
}
