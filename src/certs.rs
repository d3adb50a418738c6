//! Certificate generation (`portcullis certs`, `tls.generate_if_missing`): a private CA
//! and a server certificate it signs, the openssl steps of the recipe in one call.

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use std::path::{Path, PathBuf};

/// What was written, for the log and the terminal.
#[derive(Debug)]
pub struct Generated {
    pub ca_cert: PathBuf,
    /// false when an existing CA in the folder signed the new server certificate.
    pub new_ca: bool,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum CertsError {
    #[error("{path}: {words}")]
    Io { path: PathBuf, words: String },
    #[error("{path}: already exists; remove it first (or pass --force) so a working certificate is never overwritten by accident")]
    Exists { path: PathBuf },
    #[error("{path}: cannot use the existing CA: {detail}")]
    BadCa { path: PathBuf, detail: String },
    #[error("host {host:?}: {detail}")]
    BadHost { host: String, detail: String },
    #[error("certificate generation failed: {0}")]
    Rcgen(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CertsError + '_ {
    move |e| CertsError::Io {
        path: path.to_path_buf(),
        words: crate::files::io_error_words(&e),
    }
}

/// Where a certificate folder's files live. The server files may be named by the
/// config (`tls.certificate`, `tls.key`); the CA sits beside the server certificate.
#[derive(Debug, Clone)]
pub struct Layout {
    pub ca_cert: PathBuf,
    pub ca_key: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
}

impl Layout {
    /// `ca.crt`, `ca.key`, `server.crt`, `server.key` in one folder.
    pub fn in_dir(dir: &Path) -> Layout {
        Layout {
            ca_cert: dir.join("ca.crt"),
            ca_key: dir.join("ca.key"),
            server_cert: dir.join("server.crt"),
            server_key: dir.join("server.key"),
        }
    }

    /// The server files the config names, with the CA beside the certificate.
    pub fn for_server(cert: &Path, key: &Path) -> Layout {
        let dir = cert.parent().unwrap_or(Path::new("."));
        Layout {
            ca_cert: dir.join("ca.crt"),
            ca_key: dir.join("ca.key"),
            server_cert: cert.to_path_buf(),
            server_key: key.to_path_buf(),
        }
    }
}

/// Create (or reuse) the CA and issue a server certificate for `hosts` (DNS names and
/// IP addresses). Refuses to overwrite an existing server certificate or key unless
/// `force`. An existing CA pair is reused so clients that already trust it keep working.
pub fn generate(layout: &Layout, hosts: &[String], force: bool) -> Result<Generated, CertsError> {
    if hosts.is_empty() {
        return Err(CertsError::BadHost {
            host: String::new(),
            detail: "give at least one --host".into(),
        });
    }
    if !force {
        for p in [&layout.server_cert, &layout.server_key] {
            if p.exists() {
                return Err(CertsError::Exists { path: p.clone() });
            }
        }
    }
    let rc = |e: rcgen::Error| CertsError::Rcgen(e.to_string());
    let (ca_cert, ca_key, ca_pem, new_ca) = if layout.ca_cert.exists() && layout.ca_key.exists() {
        let bad = |path: &Path| {
            let path = path.to_path_buf();
            move |e: rcgen::Error| CertsError::BadCa {
                path,
                detail: e.to_string(),
            }
        };
        let cert_pem = std::fs::read_to_string(&layout.ca_cert).map_err(io(&layout.ca_cert))?;
        let key_pem = std::fs::read_to_string(&layout.ca_key).map_err(io(&layout.ca_key))?;
        let key = KeyPair::from_pem(&key_pem).map_err(bad(&layout.ca_key))?;
        let params =
            CertificateParams::from_ca_cert_pem(&cert_pem).map_err(bad(&layout.ca_cert))?;
        // Re-signing the same subject with the same key reproduces the issuer name and
        // key identifier that the existing ca.crt carries, which is all chaining needs.
        let cert = params.self_signed(&key).map_err(bad(&layout.ca_cert))?;
        (cert, key, cert_pem, false)
    } else {
        let key = KeyPair::generate().map_err(rc)?;
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(rc)?;
        params
            .distinguished_name
            .push(DnType::CommonName, "Portcullis private CA");
        params
            .distinguished_name
            .push(DnType::OrganizationName, "Portcullis");
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let (nb, na) = validity(10 * 365);
        params.not_before = nb;
        params.not_after = na;
        let cert = params.self_signed(&key).map_err(rc)?;
        write_atomic(&layout.ca_key, key.serialize_pem().as_bytes(), true)?;
        let pem = cert.pem();
        write_atomic(&layout.ca_cert, pem.as_bytes(), false)?;
        (cert, key, pem, true)
    };

    let mut params = CertificateParams::new(hosts.to_vec()).map_err(|e| CertsError::BadHost {
        host: hosts.join(","),
        detail: e.to_string(),
    })?;
    params
        .distinguished_name
        .push(DnType::CommonName, hosts[0].clone());
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    let (nb, na) = validity(825);
    params.not_before = nb;
    params.not_after = na;
    let key = KeyPair::generate().map_err(rc)?;
    let cert = params.signed_by(&key, &ca_cert, &ca_key).map_err(rc)?;
    // The chain file carries the server certificate then the CA, as nginx's
    // ssl_certificate expects a bundle.
    let chain = format!("{}{}", cert.pem(), ca_pem);
    write_atomic(&layout.server_key, key.serialize_pem().as_bytes(), true)?;
    write_atomic(&layout.server_cert, chain.as_bytes(), false)?;
    Ok(Generated {
        ca_cert: layout.ca_cert.clone(),
        new_ca,
        server_cert: layout.server_cert.clone(),
        server_key: layout.server_key.clone(),
    })
}

/// Validity from one hour ago (clock skew between hosts) for `days` days.
fn validity(days: i64) -> (time::OffsetDateTime, time::OffsetDateTime) {
    let now = time::OffsetDateTime::now_utc();
    (
        now - time::Duration::hours(1),
        now + time::Duration::days(days),
    )
}

/// Keys 0600 before any byte is written, certificates 0644; atomically.
fn write_atomic(path: &Path, data: &[u8], secret: bool) -> Result<(), CertsError> {
    crate::files::write_atomic(path, data, if secret { 0o600 } else { 0o644 }).map_err(io(path))
}
