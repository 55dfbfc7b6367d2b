//! TLS for the web role, written to be shared with the balancer's HTTPS
//! front end: the server config (ring provider, cipher order suited to the
//! CPU, ALPN h2 + http/1.1, session tickets), certificates that reload from
//! disk without a restart, and the first-boot self-signed certificate.

mod acceptor;
mod reload;
mod self_signed;

use std::path::PathBuf;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::server::ResolvesServerCert;
use rustls::{CipherSuite, ServerConfig};

pub use acceptor::node_acceptor;
pub use reload::{ReloadEvent, ReloadingCert};
pub use self_signed::{CERT_FILE, KEY_FILE, ensure_self_signed, generate_self_signed};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Pem { path: PathBuf, message: String },
    #[error("{path} holds no certificate")]
    NoCertificate { path: PathBuf },
    #[error("{path}: unusable private key: {source}")]
    Key {
        path: PathBuf,
        source: rustls::Error,
    },
    #[error("the key in {key} does not belong to the certificate in {cert}")]
    Mismatch { cert: PathBuf, key: PathBuf },
    #[error("cannot generate a certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("tls setup: {0}")]
    Rustls(#[from] rustls::Error),
}

/// ALPN: HTTP/2 preferred, HTTP/1.1 for the rest.
pub const ALPN_H2_H1: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// Whether this CPU has AES instructions. Without them (Pi 4's Cortex-A72,
/// any 32-bit ARM build) AES-GCM runs in software at a fraction of
/// ChaCha20-Poly1305's speed.
pub fn cpu_has_aes() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("aes")
    }
    #[cfg(target_arch = "aarch64")]
    {
        std::fs::read_to_string("/proc/cpuinfo")
            .map(|info| cpuinfo_has_aes(&info))
            .unwrap_or(false)
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        // armv7: ring's 32-bit ARM AES does not use the ARMv8 crypto
        // extensions even where the CPU has them.
        false
    }
}

/// `Features : fp asimd evtstrm aes pmull ...` on any CPU line says aes.
pub fn cpuinfo_has_aes(cpuinfo: &str) -> bool {
    cpuinfo.lines().any(|line| {
        let mut kv = line.splitn(2, ':');
        let key = kv.next().unwrap_or("").trim();
        key == "Features"
            && kv
                .next()
                .unwrap_or("")
                .split_whitespace()
                .any(|f| f == "aes")
    })
}

/// ring's provider, with the ChaCha20-Poly1305 suites moved to the front
/// when `prefer_chacha`. The order is otherwise ring's own.
pub fn provider(prefer_chacha: bool) -> CryptoProvider {
    let mut provider = rustls::crypto::ring::default_provider();
    if prefer_chacha {
        provider
            .cipher_suites
            .sort_by_key(|s| !is_chacha(s.suite()));
    }
    provider
}

fn is_chacha(suite: CipherSuite) -> bool {
    matches!(
        suite,
        CipherSuite::TLS13_CHACHA20_POLY1305_SHA256
            | CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
            | CipherSuite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256
    )
}

/// A server config for HTTPS with certificates from `resolver`: TLS 1.2
/// and 1.3, ALPN h2 then http/1.1, stateless session tickets. When the CPU
/// lacks AES the server's suite order (ChaCha first) wins over the
/// client's, since clients put AES first assuming hardware support.
pub fn server_config(resolver: Arc<dyn ResolvesServerCert>) -> Result<Arc<ServerConfig>, TlsError> {
    server_config_for(resolver, !cpu_has_aes())
}

/// `server_config` with the cipher choice made by the caller (tests, or a
/// config override).
pub fn server_config_for(
    resolver: Arc<dyn ResolvesServerCert>,
    prefer_chacha: bool,
) -> Result<Arc<ServerConfig>, TlsError> {
    let mut config = ServerConfig::builder_with_provider(Arc::new(provider(prefer_chacha)))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.ignore_client_order = prefer_chacha;
    config.alpn_protocols = ALPN_H2_H1.iter().map(|p| p.to_vec()).collect();
    // Resumed sessions skip the signature: the expensive part on a Pi.
    config.ticketer = rustls::crypto::ring::Ticketer::new()?;
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_aes_from_cpuinfo() {
        let pi4 = "processor\t: 0\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm crc32 cpuid\n";
        let pi5 = "processor\t: 0\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32\n";
        assert!(!cpuinfo_has_aes(pi4));
        assert!(cpuinfo_has_aes(pi5));
        assert!(
            !cpuinfo_has_aes("flags : aes\n"),
            "x86 says flags, not Features"
        );
    }

    #[test]
    fn chacha_goes_first_only_when_asked() {
        let first = |p: CryptoProvider| p.cipher_suites[0].suite();
        assert!(is_chacha(first(provider(true))));
        assert!(!is_chacha(first(provider(false))));
        let preferred = provider(true);
        let n = preferred
            .cipher_suites
            .iter()
            .filter(|s| is_chacha(s.suite()))
            .count();
        assert!(n >= 2);
        assert!(
            preferred.cipher_suites[..n]
                .iter()
                .all(|s| is_chacha(s.suite()))
        );
    }
}
