//! Portcullis: the secure front door of a private container registry. TLS, htpasswd
//! Basic auth and the nginx-recipe rules in front of upstream registries.
#![forbid(unsafe_code)]

pub mod access;
pub mod auth;
pub mod body;
pub mod certs;
pub mod cli;
pub mod clients;
pub mod config;
pub mod error;
pub mod files;
pub mod listener;
pub mod metrics;
pub mod oci;
pub mod proxy;
pub mod registry;
pub mod service;
pub mod tls;
pub mod upstream;

use arc_swap::ArcSwap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

pub use config::Config;
pub use proxy::State;

/// How often the htpasswd file is looked at for changes.
pub const HTPASSWD_POLL: Duration = Duration::from_secs(1);

/// The live configuration snapshot: requests load it, a reload swaps it.
pub type Shared = Arc<ArcSwap<State>>;

/// Wrap a built state for [`run`].
pub fn shared(state: State) -> Shared {
    Arc::new(ArcSwap::from_pointee(state))
}

/// Serve on already-bound listeners until `shutdown` resolves, then drain.
pub async fn run(
    state: Shared,
    listeners: Vec<tokio::net::TcpListener>,
    shutdown: impl Future<Output = ()>,
) {
    let watcher = {
        let state = state.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(HTPASSWD_POLL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let auth = state.load().auth.clone();
                match auth.refresh() {
                    auth::Refresh::Unchanged => {}
                    auth::Refresh::Reloaded { users, problems } => tracing::info!(
                        file = %auth.path().display(), users, problems, "htpasswd file changed; reloaded"
                    ),
                    auth::Refresh::Failed(why) => tracing::warn!(
                        file = %auth.path().display(), error = %why, "htpasswd file unreadable; keeping the last good version"
                    ),
                }
            }
        })
    };
    listener::serve(state, listeners, shutdown).await;
    watcher.abort();
}

/// Create the CA and server certificate when `tls.generate_if_missing` allows and
/// either file is absent, and say where the CA is and how clients trust it.
pub fn ensure_certificates(config: &Config) -> Result<(), certs::CertsError> {
    let t = &config.tls;
    if !t.generate_if_missing || (t.certificate.exists() && t.key.exists()) {
        return Ok(());
    }
    let layout = certs::Layout::for_server(&t.certificate, &t.key);
    let g = certs::generate(&layout, &t.hosts, true)?;
    let port = config
        .server
        .listen
        .first()
        .map(|a| a.port())
        .unwrap_or(5443);
    let host = t
        .hosts
        .first()
        .cloned()
        .unwrap_or_else(|| "localhost".into());
    tracing::warn!(
        ca = %g.ca_cert.display(),
        certificate = %g.server_cert.display(),
        hosts = ?t.hosts,
        "generated a {} and a server certificate. Trust the CA: docker: sudo mkdir -p /etc/docker/certs.d/{host}:{port} && sudo cp {} /etc/docker/certs.d/{host}:{port}/ca.crt; skopeo/podman: sudo mkdir -p /etc/containers/certs.d/{host}:{port} && sudo cp {} /etc/containers/certs.d/{host}:{port}/ca.crt",
        if g.new_ca { "new private CA" } else { "certificate signed by the existing CA" },
        g.ca_cert.display(),
        g.ca_cert.display(),
    );
    Ok(())
}

/// First start: when the htpasswd file does not exist, create it with user `admin`
/// and a random password, and return the password so the caller can print it once.
pub fn ensure_htpasswd(config: &Config) -> Result<Option<String>, String> {
    let path = &config.auth.htpasswd;
    if path.exists() {
        return Ok(None);
    }
    use rand::Rng;
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
    let mut rng = rand::rngs::OsRng;
    let password: String = (0..20)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect();
    let hash = auth::htpasswd::hash_bcrypt(&password, 10)?;
    auth::write_file(path, &format!("admin:{hash}\n"))
        .map_err(|e| format!("{}: cannot write: {}", path.display(), io_error_words(&e)))?;
    Ok(Some(password))
}

/// An I/O error in a few lowercase words ("no such file or directory"), without
/// Rust's "(os error 2)" suffix, for one-line messages.
pub fn io_error_words(e: &std::io::Error) -> String {
    let s = e.to_string();
    let s = match s.find(" (os error") {
        Some(i) => &s[..i],
        None => &s,
    };
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_lowercase().chain(c).collect(),
        None => String::new(),
    }
}
