//! `piha firstboot` run against a folder laid out like a Pi's root and boot
//! partitions (`--root`, `--boot-dir`), and `piha run` on a card whose
//! hostname the cluster file does not know. The SD-card image's QEMU boot
//! test (`firmware-image/boot-test`) runs the same command on a booted
//! image, with the steps that need the real machine (the kernel's hostname,
//! growing the root partition).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::node::{BIN, http, wait_until};

const KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJfMlgf78kwFmQ6O16OlhM9ynb0XkpD5t0AUft405WU0 owner@laptop";

/// A fake Pi: root with /etc, the admin user and one interface; boot
/// partition with the shipped cluster file (plus a MAC for pi-3).
struct Card {
    _dir: tempfile::TempDir,
    root: PathBuf,
    boot: PathBuf,
    data: PathBuf,
}

impl Card {
    fn new(firstboot: &str) -> Card {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("root");
        let boot = dir.path().join("boot");
        let data = root.join("var/lib/piha");
        for d in [
            "etc/ssh",
            "home/admin",
            "sys/class/net/eth0",
            "sys/class/net/lo",
        ] {
            std::fs::create_dir_all(root.join(d)).expect("mkdir");
        }
        std::fs::create_dir_all(boot.join("piha")).expect("mkdir");
        let (uid, gid) = (
            rustix::process::getuid().as_raw(),
            rustix::process::getgid().as_raw(),
        );
        write(&root.join("etc/hostname"), "piha\n");
        write(
            &root.join("etc/hosts"),
            "127.0.0.1\tlocalhost\n127.0.1.1\tpiha\n",
        );
        write(
            &root.join("etc/passwd"),
            &format!(
                "root:x:0:0:root:/root:/bin/bash\nadmin:x:{uid}:{gid}:piha admin:/home/admin:/bin/bash\n"
            ),
        );
        write(
            &root.join("sys/class/net/eth0/address"),
            "dc:a6:32:00:00:03\n",
        );
        write(
            &root.join("sys/class/net/lo/address"),
            "00:00:00:00:00:00\n",
        );
        let config = include_str!("../pi-configs/cluster.toml").replace(
            "hostname = \"pi-3\"",
            "hostname = \"pi-3\"\nmac = \"dc:a6:32:00:00:03\"",
        );
        write(&boot.join("piha/cluster.toml"), &config);
        write(&boot.join("piha/firstboot.txt"), firstboot);
        Card {
            _dir: dir,
            root,
            boot,
            data,
        }
    }

    fn firstboot(&self) -> Output {
        Command::new(BIN)
            .arg("firstboot")
            .arg("--root")
            .arg(&self.root)
            .arg("--boot-dir")
            .arg(&self.boot)
            .arg("--data-dir")
            .arg(&self.data)
            .env_remove("PIHA_CONFIG")
            .stdin(Stdio::null())
            .output()
            .expect("run piha firstboot")
    }

    fn read(&self, path: &str) -> String {
        std::fs::read_to_string(self.root.join(path)).unwrap_or_default()
    }
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).expect("write");
}

fn succeeded(out: &Output) -> String {
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "piha firstboot failed:\n{log}");
    log
}

#[test]
fn first_boot_names_the_card_by_its_mac_installs_the_key_and_makes_keys_once() {
    let card = Card::new(&format!("# no hostname here\nssh_authorized_key={KEY}\n"));
    let log = succeeded(&card.firstboot());

    assert!(
        log.contains("hostname pi-3 (the cluster file's mac for eth0, dc:a6:32:00:00:03)"),
        "{log}"
    );
    assert_eq!(card.read("etc/hostname"), "pi-3\n");
    assert!(
        card.read("etc/hosts").ends_with("127.0.1.1\tpi-3\n"),
        "{}",
        card.read("etc/hosts")
    );
    assert!(!card.read("etc/hosts").contains("\tpiha\n"));

    assert_eq!(
        card.read("home/admin/.ssh/authorized_keys"),
        format!("{KEY}\n")
    );
    let left =
        std::fs::read_to_string(card.boot.join("piha/firstboot.txt")).expect("firstboot.txt");
    assert!(
        !left.contains("AAAAC3Nza"),
        "the key stays on the boot partition:\n{left}"
    );
    assert!(
        left.contains("ssh_authorized_key (ssh-ed25519 owner@laptop) installed for user admin"),
        "{left}"
    );

    let host_key = card.read("etc/ssh/ssh_host_ed25519_key.pub");
    assert!(
        host_key.starts_with("ssh-ed25519 "),
        "no host key made: {log}"
    );
    assert!(
        card.read("etc/ssh/ssh_host_ecdsa_key.pub")
            .starts_with("ecdsa-sha2-")
    );
    assert!(
        card.data.join("tls/web-cert.pem").is_file(),
        "no TLS certificate: {log}"
    );
    let dropin = card.read("run/systemd/network/10-piha-wired.network.d/piha-node-address.conf");
    assert!(dropin.contains("Address=192.0.2.13/24"), "{dropin}");
    assert!(
        card.read("etc/avahi/hosts")
            .contains("\n192.0.2.13 pi-3.local\n")
    );
    assert!(
        card.read("run/piha/avahi-daemon.conf")
            .contains("publish-addresses=no")
    );

    // The second boot: nothing once-only is redone, the key is not added again.
    let cert = std::fs::read(card.data.join("tls/web-cert.pem")).expect("cert");
    let log = succeeded(&card.firstboot());
    assert!(
        log.contains(
            "already done on an earlier boot, not redone: ssh-host-keys.done, tls-cert.done"
        ),
        "{log}"
    );
    assert!(!log.contains("made SSH host keys"), "{log}");
    assert!(!log.contains("set the hostname"), "{log}");
    assert_eq!(card.read("etc/ssh/ssh_host_ed25519_key.pub"), host_key);
    assert_eq!(
        std::fs::read(card.data.join("tls/web-cert.pem")).expect("cert"),
        cert
    );
    assert_eq!(
        card.read("home/admin/.ssh/authorized_keys"),
        format!("{KEY}\n")
    );
    assert!(dropin.contains("Address=192.0.2.13/24"));
}

#[test]
fn a_hostname_in_firstboot_txt_wins_and_an_unknown_one_gets_no_node_address() {
    let card = Card::new("hostname=Pi-1\n");
    succeeded(&card.firstboot());
    assert_eq!(card.read("etc/hostname"), "pi-1\n");
    let dropin = "run/systemd/network/10-piha-wired.network.d/piha-node-address.conf";
    assert!(card.read(dropin).contains("Address=192.0.2.11/24"));

    // The owner renames the card to a name the cluster file does not know.
    write(&card.boot.join("piha/firstboot.txt"), "hostname=kitchen\n");
    let log = succeeded(&card.firstboot());
    assert_eq!(card.read("etc/hostname"), "kitchen\n");
    assert!(
        !card.root.join(dropin).exists(),
        "the old node address stays: {log}"
    );
    assert!(
        log.contains("no node address: the hostname has no [[node]] entry"),
        "{log}"
    );
    // Its not-set-up page listens on every address: avahi publishes them all.
    assert!(
        card.read("run/piha/avahi-daemon.conf")
            .contains("publish-addresses=yes")
    );
    assert!(!card.read("etc/avahi/hosts").contains(".local"));
}

#[test]
fn bad_lines_in_firstboot_txt_are_reported_and_the_rest_applies() {
    let card = Card::new("hostname pi-2\nhostname=pi-2\nssh_authorized_key=ssh-rsa notbase64!\n");
    let log = succeeded(&card.firstboot());
    assert!(
        log.contains("firstboot.txt line 1: \"hostname pi-2\" is not key=value"),
        "{log}"
    );
    assert!(
        log.contains("firstboot.txt line 3: ssh_authorized_key ignored"),
        "{log}"
    );
    assert_eq!(card.read("etc/hostname"), "pi-2\n");
    assert!(card.read("home/admin/.ssh/authorized_keys").is_empty());
}

/// A free TCP port on loopback (closed again at once).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

#[test]
fn a_card_the_cluster_file_does_not_know_serves_a_page_saying_so_then_starts_once_added() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (admin, gossip) = (free_port(), free_port());
    let base = format!(
        "[cluster]\nname = \"piha\"\n\n[defaults]\nadmin_port = {admin}\ngossip_port = {gossip}\n\n\
         [[node]]\nhostname = \"pi-1\"\naddress = \"127.0.0.1/8\"\nroles = []\n"
    );
    let config = dir.path().join("cluster.toml");
    write(&config, &base);
    let child = Command::new(BIN)
        .args(["run", "--hostname", "kitchen", "--config"])
        .arg(&config)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn piha run");
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], admin));
    let result = (|| {
        let (page, _) = wait_until(Duration::from_secs(10), || {
            match http(addr, "GET", "/", &[]) {
                Ok((503, body)) => Ok(body),
                Ok((code, _)) => Err(format!("answered {code}")),
                Err(e) => Err(e),
            }
        })?;
        for phrase in [
            "This Pi (kitchen) is not part of the cluster yet",
            "no node &quot;kitchen&quot;",
            "known hosts: pi-1",
            "hostname=pi-1",
        ] {
            if !page.contains(phrase) {
                return Err(format!("the page lacks {phrase:?}:\n{page}"));
            }
        }
        let (code, api) = http(addr, "GET", "/api/v1/status", &[])?;
        let doc: serde_json::Value = serde_json::from_str(&api).map_err(|e| e.to_string())?;
        if code != 503 || doc["configured"] != false || doc["node"]["hostname"] != "kitchen" {
            return Err(format!("api answered {code}: {api}"));
        }
        // The owner adds the card to the file: the node starts by itself.
        write(
            &config,
            &base.replace("hostname = \"pi-1\"", "hostname = \"kitchen\""),
        );
        let (doc, _) = wait_until(Duration::from_secs(15), || {
            let (code, body) = http(addr, "GET", "/api/v1/status", &[])?;
            let doc: serde_json::Value = serde_json::from_str(&body).map_err(|e| e.to_string())?;
            (code == 200 && doc["node"]["hostname"] == "kitchen")
                .then_some(doc)
                .ok_or(format!("{code}: {body}"))
        })?;
        Ok::<_, String>(doc)
    })();
    let _ = Command::new("kill").arg(child.id().to_string()).status();
    let out = child.wait_with_output().expect("wait");
    let log = String::from_utf8_lossy(&out.stderr);
    let doc = result.unwrap_or_else(|e| panic!("{e}\n--- piha log ---\n{log}"));
    assert_eq!(doc["node"]["address"], "127.0.0.1");
    assert!(
        out.status.success(),
        "piha run did not stop cleanly: {:?}\n{log}",
        out.status
    );
}
