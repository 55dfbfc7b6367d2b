//! What a boot must do, decided from facts alone (no IO): which hostname the
//! card takes and why, and which steps run. `apply.rs` carries them out.
//!
//! Steps come in two kinds. Once-only steps (grow the root file system, make
//! SSH host keys, make the TLS certificate) leave a marker when they succeed
//! and are skipped on every later boot. Every-boot steps follow the boot
//! partition, which the owner may edit at any time: the hostname it names,
//! keys newly pasted into it, and the node address from the cluster file.

use std::collections::BTreeSet;
use std::net::IpAddr;

use ipnet::IpNet;

use super::sysconf::Sysconf;
use crate::config::ClusterConfig;

/// Steps that run on the first boot only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Once {
    GrowRoot,
    SshHostKeys,
    TlsCert,
}

impl Once {
    /// The marker's file name under `<data_dir>/firstboot/`.
    pub fn marker(self) -> &'static str {
        match self {
            Once::GrowRoot => "grow-root.done",
            Once::SshHostKeys => "ssh-host-keys.done",
            Once::TlsCert => "tls-cert.done",
        }
    }

    pub const ALL: [Once; 3] = [Once::GrowRoot, Once::SshHostKeys, Once::TlsCert];
}

/// Everything the plan is made from.
pub struct Facts<'a> {
    /// `None`: there is no firstboot.txt (or it was refused as a whole).
    pub sysconf: Option<&'a Sysconf>,
    /// The hostname the system has now (`/etc/hostname`).
    pub current_hostname: &'a str,
    /// `(interface, mac)` of every network interface, MACs lowercase.
    pub macs: &'a [(String, String)],
    /// The cluster file, when it loaded.
    pub config: Option<&'a ClusterConfig>,
    /// Once-only steps done on an earlier boot.
    pub done: &'a BTreeSet<Once>,
}

/// Where the hostname came from, for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostnameSource {
    /// `hostname=` on this line of firstboot.txt.
    FirstbootFile(usize),
    /// The cluster file's `mac` of a node matched this interface.
    Mac { interface: String, mac: String },
    /// Nothing named another one: the card keeps what it has.
    Unchanged,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Write /etc/hostname and /etc/hosts and tell the kernel.
    SetHostname(String),
    /// Append these keys to the admin user's authorized_keys, then take
    /// them out of firstboot.txt.
    InstallSshKeys(Vec<String>),
    /// Grow the root partition to the end of the card, then its file system.
    GrowRoot,
    /// Make the SSH host keys the image ships without (each card its own).
    SshHostKeys,
    /// Make the node's self-signed TLS certificate.
    TlsCert { hostname: String, address: IpAddr },
    /// Put the node's cluster address on the wired interface (every boot, in
    /// /run: the cluster file may have changed) and publish it over mDNS.
    NodeAddress { hostname: String, address: IpNet },
    /// The hostname has no node entry: drop any address an earlier boot set.
    NoNodeAddress,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub hostname: String,
    pub source: HostnameSource,
    pub steps: Vec<Step>,
    /// Once-only steps skipped because an earlier boot did them.
    pub skipped: Vec<Once>,
}

pub fn plan(facts: &Facts<'_>) -> Plan {
    let (hostname, source) = choose_hostname(facts);
    let mut steps = Vec::new();
    if hostname != facts.current_hostname {
        steps.push(Step::SetHostname(hostname.clone()));
    }
    if let Some(conf) = facts.sysconf {
        if !conf.ssh_keys.is_empty() {
            steps.push(Step::InstallSshKeys(
                conf.ssh_keys.iter().map(|(_, k)| k.clone()).collect(),
            ));
        }
    }
    let node = facts
        .config
        .and_then(|c| c.nodes.iter().find(|n| n.hostname == hostname));
    let mut skipped = Vec::new();
    for once in Once::ALL {
        if facts.done.contains(&once) {
            skipped.push(once);
            continue;
        }
        match once {
            Once::GrowRoot => steps.push(Step::GrowRoot),
            Once::SshHostKeys => steps.push(Step::SshHostKeys),
            // A card that is not a node yet gets its certificate on the
            // boot where it becomes one (piha also makes it when the web
            // role starts, so this is only about having it early).
            Once::TlsCert => match node {
                Some(n) => steps.push(Step::TlsCert {
                    hostname: hostname.clone(),
                    address: n.address,
                }),
                None => skipped.push(once),
            },
        }
    }
    steps.push(match node {
        Some(n) => Step::NodeAddress {
            hostname: hostname.clone(),
            address: n.network,
        },
        None => Step::NoNodeAddress,
    });
    Plan {
        hostname,
        source,
        steps,
        skipped,
    }
}

/// firstboot.txt first (the owner's explicit word), then the cluster file's
/// MAC map, then whatever the card has.
fn choose_hostname(facts: &Facts<'_>) -> (String, HostnameSource) {
    if let Some((line, name)) = facts.sysconf.and_then(|c| c.hostname.as_ref()) {
        return (name.clone(), HostnameSource::FirstbootFile(*line));
    }
    if let Some(config) = facts.config {
        for (interface, mac) in facts.macs {
            let node = config
                .nodes
                .iter()
                .find(|n| n.mac.as_deref() == Some(mac.as_str()));
            if let Some(node) = node {
                return (
                    node.hostname.clone(),
                    HostnameSource::Mac {
                        interface: interface.clone(),
                        mac: mac.clone(),
                    },
                );
            }
        }
    }
    (facts.current_hostname.to_owned(), HostnameSource::Unchanged)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::firstboot::sysconf;

    fn config() -> ClusterConfig {
        let text = include_str!("../../pi-configs/cluster.toml").replace(
            "hostname = \"pi-3\"",
            "hostname = \"pi-3\"\nmac = \"DC:A6:32:00:00:03\"",
        );
        let dir = tempfile::tempdir().unwrap();
        crate::config::parse(&text, &dir.path().join("cluster.toml")).unwrap()
    }

    fn facts<'a>(
        sysconf: Option<&'a Sysconf>,
        config: &'a ClusterConfig,
        macs: &'a [(String, String)],
        done: &'a BTreeSet<Once>,
    ) -> Facts<'a> {
        Facts {
            sysconf,
            current_hostname: "piha",
            macs,
            config: Some(config),
            done,
        }
    }

    #[test]
    fn first_boot_with_a_hostname_does_everything() {
        let conf = sysconf::parse(b"hostname=pi-1\n").unwrap();
        let config = config();
        let done = BTreeSet::new();
        let plan = plan(&facts(Some(&conf), &config, &[], &done));
        assert_eq!(plan.hostname, "pi-1");
        assert_eq!(plan.source, HostnameSource::FirstbootFile(1));
        assert_eq!(
            plan.steps,
            vec![
                Step::SetHostname("pi-1".into()),
                Step::GrowRoot,
                Step::SshHostKeys,
                Step::TlsCert {
                    hostname: "pi-1".into(),
                    address: "192.0.2.11".parse().unwrap()
                },
                Step::NodeAddress {
                    hostname: "pi-1".into(),
                    address: "192.0.2.11/24".parse().unwrap()
                },
            ]
        );
        assert!(plan.skipped.is_empty());
    }

    #[test]
    fn a_later_boot_skips_what_is_done_and_keeps_the_address() {
        let conf = sysconf::parse(b"hostname=pi-1\n").unwrap();
        let config = config();
        let done: BTreeSet<Once> = Once::ALL.into_iter().collect();
        let mut f = facts(Some(&conf), &config, &[], &done);
        f.current_hostname = "pi-1";
        let plan = plan(&f);
        assert_eq!(
            plan.steps,
            vec![Step::NodeAddress {
                hostname: "pi-1".into(),
                address: "192.0.2.11/24".parse().unwrap()
            }]
        );
        assert_eq!(plan.skipped, Once::ALL.to_vec());
    }

    #[test]
    fn without_a_hostname_line_the_mac_map_names_the_card() {
        let conf = sysconf::parse(b"# nothing\n").unwrap();
        let config = config();
        let macs = [
            ("wlan0".to_owned(), "b8:27:eb:00:00:01".to_owned()),
            ("eth0".to_owned(), "dc:a6:32:00:00:03".to_owned()),
        ];
        let done = BTreeSet::new();
        let plan = plan(&facts(Some(&conf), &config, &macs, &done));
        assert_eq!(plan.hostname, "pi-3");
        assert_eq!(
            plan.source,
            HostnameSource::Mac {
                interface: "eth0".into(),
                mac: "dc:a6:32:00:00:03".into()
            }
        );
    }

    #[test]
    fn a_hostname_the_cluster_file_does_not_know_gets_no_address_or_cert() {
        let conf = sysconf::parse(b"hostname=kitchen\n").unwrap();
        let config = config();
        let done = BTreeSet::new();
        let plan = plan(&facts(Some(&conf), &config, &[], &done));
        assert_eq!(plan.hostname, "kitchen");
        assert!(plan.steps.contains(&Step::NoNodeAddress));
        assert!(
            !plan
                .steps
                .iter()
                .any(|s| matches!(s, Step::TlsCert { .. } | Step::NodeAddress { .. }))
        );
        assert_eq!(plan.skipped, vec![Once::TlsCert]);
    }

    #[test]
    fn pasted_keys_are_installed_on_any_boot() {
        let text = "ssh_authorized_key=ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJfMlgf78kwFmQ6O16OlhM9ynb0XkpD5t0AUft405WU0 me\n";
        let conf = sysconf::parse(text.as_bytes()).unwrap();
        let config = config();
        let done: BTreeSet<Once> = Once::ALL.into_iter().collect();
        let plan = plan(&facts(Some(&conf), &config, &[], &done));
        assert!(matches!(&plan.steps[0], Step::InstallSshKeys(k) if k.len() == 1));
    }
}
