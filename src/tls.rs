//! TLS for the webhook: TLS 1.2/1.3 only, certificates that reload without a
//! restart, a generated self-signed pair for local runs, optional client auth.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, ServerConfig};
use tracing::{error, info};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("failed to read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} holds no PEM certificate")]
    NoCertificate { path: PathBuf },
    #[error("failed to read the PEM private key in {path}: {reason}")]
    Key { path: PathBuf, reason: String },
    #[error("certificate {cert} and key {key} do not belong together: {reason}")]
    Mismatch {
        cert: PathBuf,
        key: PathBuf,
        reason: String,
    },
    #[error("failed to generate a self-signed certificate: {0}")]
    Generate(String),
    #[error("failed to write the CA certificate to {path}")]
    WriteCa {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to build the client CA verifier from {path}: {reason}")]
    ClientCa { path: PathBuf, reason: String },
    #[error("failed to configure TLS: {0}")]
    Config(#[from] rustls::Error),
}

/// Serves whichever certificate was loaded last; swapping is one atomic store.
pub struct Resolver {
    current: ArcSwap<CertifiedKey>,
}

impl fmt::Debug for Resolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Resolver").finish_non_exhaustive()
    }
}

impl Resolver {
    pub fn new(key: CertifiedKey) -> Arc<Self> {
        Arc::new(Self {
            current: ArcSwap::from_pointee(key),
        })
    }

    pub fn replace(&self, key: CertifiedKey) {
        self.current.store(Arc::new(key));
    }
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Builds a certified key from PEM bytes, checking the key matches the certificate.
pub fn certified_key(
    cert_pem: &[u8],
    key_pem: &[u8],
    cert: &Path,
    key: &Path,
) -> Result<CertifiedKey, TlsError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .filter_map(Result::ok)
        .collect();
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            path: cert.to_path_buf(),
        });
    }
    let private = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| TlsError::Key {
        path: key.to_path_buf(),
        reason: e.to_string(),
    })?;
    let provider = rustls::crypto::ring::default_provider();
    let certified =
        CertifiedKey::from_der(chain, private, &provider).map_err(|e| TlsError::Mismatch {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            reason: e.to_string(),
        })?;
    Ok(certified)
}

/// Loads `--tls-cert`/`--tls-key`.
pub fn load_files(cert: &Path, key: &Path) -> Result<CertifiedKey, TlsError> {
    certified_key(&read(cert)?, &read(key)?, cert, key)
}

/// A fresh CA and a serving certificate it signed, for `localhost`, `127.0.0.1`
/// and `extra_names`. Returns the key and the CA's PEM (what a client trusts).
pub fn self_signed(extra_names: &[String]) -> Result<(CertifiedKey, String), TlsError> {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    };
    let gen_err = |e: rcgen::Error| TlsError::Generate(e.to_string());
    let ca_key = KeyPair::generate().map_err(gen_err)?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(gen_err)?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "ecr-guard self-signed CA");
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca_params.self_signed(&ca_key).map_err(gen_err)?;
    let issuer = Issuer::new(ca_params, ca_key);

    let mut names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    names.extend(extra_names.iter().cloned());
    let leaf_key = KeyPair::generate().map_err(gen_err)?;
    let mut leaf_params = CertificateParams::new(names).map_err(gen_err)?;
    leaf_params
        .distinguished_name
        .push(DnType::CommonName, "ecr-guard");
    let leaf = leaf_params.signed_by(&leaf_key, &issuer).map_err(gen_err)?;

    let chain_pem = format!("{}{}", leaf.pem(), ca_cert.pem());
    let key = certified_key(
        chain_pem.as_bytes(),
        leaf_key.serialize_pem().as_bytes(),
        Path::new("(generated)"),
        Path::new("(generated)"),
    )?;
    Ok((key, ca_cert.pem()))
}

/// The rustls server configuration: TLS 1.3 and 1.2 only, h2 and http/1.1,
/// optional client certificates chained to `client_ca`.
pub fn server_config(
    resolver: Arc<Resolver>,
    client_ca: Option<&Path>,
) -> Result<ServerConfig, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let pem = read(path)?;
            let mut roots = RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(&pem).filter_map(Result::ok) {
                roots.add(cert).map_err(|e| TlsError::ClientCa {
                    path: path.to_path_buf(),
                    reason: e.to_string(),
                })?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| TlsError::ClientCa {
                    path: path.to_path_buf(),
                    reason: e.to_string(),
                })?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// Re-reads the certificate files every `interval` and swaps in a changed pair.
/// Reading by path (not watching one inode) follows Kubernetes' atomic `..data`
/// symlink swap of Secret volumes. A broken new pair keeps the old one, logged.
pub async fn reload_loop(resolver: Arc<Resolver>, cert: PathBuf, key: PathBuf, interval: Duration) {
    let mut last = (std::fs::read(&cert).ok(), std::fs::read(&key).ok());
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let now = (std::fs::read(&cert).ok(), std::fs::read(&key).ok());
        if now == last {
            continue;
        }
        match (&now.0, &now.1) {
            (Some(c), Some(k)) => match certified_key(c, k, &cert, &key) {
                Ok(new) => {
                    resolver.replace(new);
                    info!(cert = %cert.display(), "reloaded the TLS certificate");
                }
                Err(e) => {
                    error!(error = %e, "new TLS certificate rejected; still serving the previous one")
                }
            },
            _ => {
                error!(cert = %cert.display(), key = %key.display(), "TLS files unreadable; still serving the previous certificate")
            }
        }
        // Remember what was seen, good or bad, so a broken pair is logged once.
        last = now;
    }
}

/// Writes the CA PEM for `--write-ca`.
pub fn write_ca(path: &Path, pem: &str) -> Result<(), TlsError> {
    std::fs::write(path, pem).map_err(|source| TlsError::WriteCa {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_signed_pair_is_usable() {
        let (key, ca) = self_signed(&["ecr-guard.svc".into()]).unwrap();
        assert!(key.keys_match().is_ok());
        assert!(ca.starts_with("-----BEGIN CERTIFICATE-----"));
        assert_eq!(key.cert.len(), 2, "leaf and CA");
    }

    #[test]
    fn mismatched_or_garbage_files_are_clear_errors() {
        let (a, _) = self_signed(&[]).unwrap();
        let _ = a;
        let err =
            certified_key(b"not pem", b"nope", Path::new("c.pem"), Path::new("k.pem")).unwrap_err();
        assert_eq!(err.to_string(), "c.pem holds no PEM certificate");
    }
}
