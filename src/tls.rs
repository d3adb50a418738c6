//! TLS termination: loads the PEM certificate chain and key, checks them the way a
//! client would (key matches, not expired), and builds the rustls server config
//! (TLS 1.2 and 1.3 only, ALPN h2 and http/1.1, aws-lc-rs).

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

/// A certificate or key problem, always naming the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: cannot read: {words}")]
    Read { path: PathBuf, words: String },
    #[error("{path}: no PEM certificate found (expected \"-----BEGIN CERTIFICATE-----\")")]
    NoCertificate { path: PathBuf },
    #[error("{path}: bad PEM certificate: {detail}")]
    BadCertificate { path: PathBuf, detail: String },
    #[error("{path}: no PEM private key found (PKCS#8 \"BEGIN PRIVATE KEY\", PKCS#1 \"BEGIN RSA PRIVATE KEY\" or SEC1 \"BEGIN EC PRIVATE KEY\")")]
    NoKey { path: PathBuf },
    #[error("{path}: certificate expired on {when} (UTC)")]
    Expired { path: PathBuf, when: String },
    #[error("{path}: certificate is not valid before {when} (UTC)")]
    NotYetValid { path: PathBuf, when: String },
    #[error("{key}: private key does not match the certificate in {cert}")]
    KeyMismatch { key: PathBuf, cert: PathBuf },
    #[error("{key}: unusable private key: {detail}")]
    BadKey { key: PathBuf, detail: String },
}

/// A loaded, checked certificate chain and key.
pub struct Identity {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| TlsError::Read {
        path: path.to_path_buf(),
        words: crate::files::io_error_words(&e),
    })
}

/// Load and check a certificate chain and key from PEM files.
pub fn load_identity(cert_path: &Path, key_path: &Path) -> Result<Identity, TlsError> {
    let cert_pem = read(cert_path)?;
    let key_pem = read(key_path)?;
    let mut chain = Vec::new();
    for c in CertificateDer::pem_slice_iter(&cert_pem) {
        chain.push(c.map_err(|e| TlsError::BadCertificate {
            path: cert_path.to_path_buf(),
            detail: e.to_string(),
        })?);
    }
    let Some(leaf) = chain.first() else {
        return Err(TlsError::NoCertificate {
            path: cert_path.to_path_buf(),
        });
    };
    let (_, parsed) =
        x509_parser::parse_x509_certificate(leaf).map_err(|e| TlsError::BadCertificate {
            path: cert_path.to_path_buf(),
            detail: e.to_string(),
        })?;
    let validity = parsed.validity();
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    if validity.not_after.timestamp() < now {
        return Err(TlsError::Expired {
            path: cert_path.to_path_buf(),
            when: validity.not_after.to_string(),
        });
    }
    if validity.not_before.timestamp() > now {
        return Err(TlsError::NotYetValid {
            path: cert_path.to_path_buf(),
            when: validity.not_before.to_string(),
        });
    }
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|_| TlsError::NoKey {
        path: key_path.to_path_buf(),
    })?;
    Ok(Identity { chain, key })
}

/// The crypto provider every TLS object in the process uses.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Build the server config: TLS 1.2 + 1.3, ALPN h2 then http/1.1.
pub fn server_config(
    id: Identity,
    cert_path: &Path,
    key_path: &Path,
) -> Result<Arc<ServerConfig>, TlsError> {
    let builder = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsError::BadKey {
            key: key_path.to_path_buf(),
            detail: e.to_string(),
        })?
        .with_no_client_auth();
    let mut config = builder
        .with_single_cert(id.chain, id.key)
        .map_err(|e| match e {
            rustls::Error::InconsistentKeys(_) => TlsError::KeyMismatch {
                key: key_path.to_path_buf(),
                cert: cert_path.to_path_buf(),
            },
            other => TlsError::BadKey {
                key: key_path.to_path_buf(),
                detail: other.to_string(),
            },
        })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    // Stateless resumption: docker and skopeo open many short connections per push.
    if let Ok(t) = rustls::crypto::aws_lc_rs::Ticketer::new() {
        config.ticketer = t;
    }
    Ok(Arc::new(config))
}

/// Load, check and build in one step.
pub fn load_server_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, TlsError> {
    let id = load_identity(cert, key)?;
    server_config(id, cert, key)
}
