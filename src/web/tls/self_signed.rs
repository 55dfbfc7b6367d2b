//! The certificate a node makes for itself on first start when the cluster
//! file names none: HTTPS works out of the box (with a browser warning) and
//! the same certificate is reused across restarts, so a browser exception
//! or a pinned fingerprint keeps working.

use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use rcgen::{CertificateParams, DnType, KeyPair};

use super::TlsError;
use crate::config::TlsFiles;

pub const CERT_FILE: &str = "web-cert.pem";
pub const KEY_FILE: &str = "web-key.pem";

/// `<data_dir>/tls/web-cert.pem` and `web-key.pem`, made now if either is
/// missing. Existing files are returned as they are (loading checks them).
pub fn ensure_self_signed(
    data_dir: &Path,
    hostname: &str,
    address: IpAddr,
) -> Result<TlsFiles, TlsError> {
    let _one_at_a_time = lock();
    let files = paths(data_dir);
    if files.cert.is_file() && files.key.is_file() {
        return Ok(files);
    }
    generate_unlocked(data_dir, hostname, address)
}

/// Makes a new certificate and key, replacing any there were (see
/// `generate_unlocked`).
pub fn generate_self_signed(
    data_dir: &Path,
    hostname: &str,
    address: IpAddr,
) -> Result<TlsFiles, TlsError> {
    let _one_at_a_time = lock();
    generate_unlocked(data_dir, hostname, address)
}

/// The web role and the balancer both ask for the node's certificate when
/// they start, at the same moment: without this they would write the same
/// temporary files and one rename would fail.
fn lock() -> std::sync::MutexGuard<'static, ()> {
    static GENERATING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    GENERATING.lock().unwrap_or_else(|p| p.into_inner())
}

/// Makes a new key and certificate for the hostname, `<hostname>.local`
/// (mDNS) and the node's address, replacing any old pair. Each file is
/// written to a temporary name, synced and renamed, so a power cut leaves
/// either the old file or the new one, never half of one.
fn generate_unlocked(
    data_dir: &Path,
    hostname: &str,
    address: IpAddr,
) -> Result<TlsFiles, TlsError> {
    let files = paths(data_dir);
    let dir = data_dir.join("tls");
    std::fs::create_dir_all(&dir).map_err(|source| TlsError::Write {
        path: dir.clone(),
        source,
    })?;
    let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700));
    let mut names = vec![hostname.to_owned()];
    if !hostname.ends_with(".local") {
        names.push(format!("{hostname}.local"));
    }
    names.push(address.to_string());
    let mut params = CertificateParams::new(names)?;
    params
        .distinguished_name
        .push(DnType::CommonName, hostname.to_owned());
    params
        .distinguished_name
        .push(DnType::OrganizationName, "piha (self-signed)");
    // ECDSA P-256: cheap to sign with on a Pi, accepted everywhere.
    let key = KeyPair::generate()?;
    let cert = params.self_signed(&key)?;
    write_atomic(&files.key, key.serialize_pem().as_bytes(), 0o600)?;
    write_atomic(&files.cert, cert.pem().as_bytes(), 0o644)?;
    Ok(files)
}

fn paths(data_dir: &Path) -> TlsFiles {
    let dir = data_dir.join("tls");
    TlsFiles {
        cert: dir.join(CERT_FILE),
        key: dir.join(KEY_FILE),
    }
}

fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), TlsError> {
    crate::node::atomic_file::write(path, bytes, mode).map_err(|source| TlsError::Write {
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn roles_starting_together_get_one_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let addr: IpAddr = "192.0.2.10".parse().unwrap();
        let path = dir.path().to_path_buf();
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let path = path.clone();
                std::thread::spawn(move || ensure_self_signed(&path, "pi-1", addr))
            })
            .collect();
        let results: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        assert!(
            results.iter().all(|r| r.is_ok()),
            "{:?}",
            results.iter().find(|r| r.is_err())
        );
        let certs: Vec<Vec<u8>> = results
            .iter()
            .flatten()
            .map(|f| std::fs::read(&f.cert).unwrap())
            .collect();
        assert!(
            certs.windows(2).all(|w| w[0] == w[1]),
            "one certificate for all"
        );
    }

    #[test]
    fn made_once_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let addr: IpAddr = "192.0.2.10".parse().unwrap();
        let files = ensure_self_signed(dir.path(), "pi-1", addr).unwrap();
        assert_eq!(files.cert, dir.path().join("tls/web-cert.pem"));
        let mode = std::fs::metadata(&files.key).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let first = std::fs::read(&files.cert).unwrap();
        let again = ensure_self_signed(dir.path(), "pi-1", addr).unwrap();
        assert_eq!(
            std::fs::read(&again.cert).unwrap(),
            first,
            "reused, not remade"
        );
        super::super::reload::load_pair(&files.cert, &files.key).unwrap();
        let made = generate_self_signed(dir.path(), "pi-1", addr).unwrap();
        assert_ne!(std::fs::read(&made.cert).unwrap(), first);
    }
}
