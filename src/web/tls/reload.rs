//! A certificate resolver that picks up new files on disk: renewing a
//! certificate (certbot, a copied-in file) needs no restart and drops no
//! connection. The files are looked at during handshakes, at most once per
//! `check_every`, and parsed again only when their mtime, size or inode
//! changed. A bad new pair (half-written, key not matching) is reported and
//! the old certificate stays in use; the next change is tried again.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use super::TlsError;
use crate::config::TlsFiles;

/// What a reload did, for the caller's events.
#[derive(Debug, Clone)]
pub enum ReloadEvent {
    Loaded { cert: PathBuf },
    Failed { cert: PathBuf, error: String },
}

type Hook = Box<dyn Fn(&ReloadEvent) + Send + Sync>;

pub struct ReloadingCert {
    files: TlsFiles,
    check_every: Duration,
    state: Mutex<State>,
    hook: Option<Hook>,
}

struct State {
    current: Arc<CertifiedKey>,
    stamp: Stamp,
    checked: Instant,
}

/// Identity of the two files' current contents, cheaply: (mtime, size, inode).
type Stamp = [Option<(SystemTime, u64, u64)>; 2];

impl ReloadingCert {
    /// Loads the pair now; an error here means no HTTPS at all.
    pub fn load(files: TlsFiles) -> Result<ReloadingCert, TlsError> {
        let stamp = stamp(&files);
        let current = Arc::new(load_pair(&files.cert, &files.key)?);
        Ok(ReloadingCert {
            files,
            check_every: Duration::from_secs(5),
            state: Mutex::new(State {
                current,
                stamp,
                checked: Instant::now(),
            }),
            hook: None,
        })
    }

    /// How often the files are looked at (default 5 s).
    pub fn check_every(mut self, every: Duration) -> Self {
        self.check_every = every;
        self
    }

    /// Called after every reload attempt (from a handshake: keep it short).
    pub fn on_reload(mut self, hook: impl Fn(&ReloadEvent) + Send + Sync + 'static) -> Self {
        self.hook = Some(Box::new(hook));
        self
    }

    /// The certificate to present now, reloading first if the files changed.
    pub fn current(&self) -> Arc<CertifiedKey> {
        let mut state = match self.state.lock() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        };
        if state.checked.elapsed() >= self.check_every {
            state.checked = Instant::now();
            let now = stamp(&self.files);
            if now != state.stamp {
                state.stamp = now;
                let event = match load_pair(&self.files.cert, &self.files.key) {
                    Ok(key) => {
                        state.current = Arc::new(key);
                        ReloadEvent::Loaded {
                            cert: self.files.cert.clone(),
                        }
                    }
                    Err(e) => ReloadEvent::Failed {
                        cert: self.files.cert.clone(),
                        error: e.to_string(),
                    },
                };
                if let Some(hook) = &self.hook {
                    hook(&event);
                }
            }
        }
        state.current.clone()
    }
}

impl std::fmt::Debug for ReloadingCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReloadingCert")
            .field("files", &self.files)
            .field("check_every", &self.check_every)
            .finish_non_exhaustive()
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

fn stamp(files: &TlsFiles) -> Stamp {
    use std::os::unix::fs::MetadataExt;
    let one = |p: &Path| {
        std::fs::metadata(p).ok().map(|m| {
            (
                m.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                m.len(),
                m.ino(),
            )
        })
    };
    [one(&files.cert), one(&files.key)]
}

/// Reads a PEM certificate chain and its private key and checks that they
/// belong together, so a half-renewed pair is never presented.
pub fn load_pair(cert: &Path, key: &Path) -> Result<CertifiedKey, TlsError> {
    let pem_error = |path: &Path, e: rustls::pki_types::pem::Error| match e {
        rustls::pki_types::pem::Error::Io(source) => TlsError::Read {
            path: path.to_owned(),
            source,
        },
        other => TlsError::Pem {
            path: path.to_owned(),
            message: other.to_string(),
        },
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(|e| pem_error(cert, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(cert, e))?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            path: cert.to_owned(),
        });
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| pem_error(key, e))?;
    let signing = rustls::crypto::ring::sign::any_supported_type(&key_der).map_err(|source| {
        TlsError::Key {
            path: key.to_owned(),
            source,
        }
    })?;
    let certified = CertifiedKey::new(chain, signing);
    match certified.keys_match() {
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {
            Ok(certified)
        }
        Err(rustls::Error::InconsistentKeys(_)) => Err(TlsError::Mismatch {
            cert: cert.to_owned(),
            key: key.to_owned(),
        }),
        Err(e) => Err(TlsError::Pem {
            path: cert.to_owned(),
            message: format!("not a usable certificate: {e}"),
        }),
    }
}
