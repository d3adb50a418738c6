//! Assembly: a [`State`] built from one configuration (certificates, htpasswd,
//! backend), the serving loop with its htpasswd watcher, reload on SIGHUP, and the
//! first-start files (certificates, an `admin` user).

use crate::auth::throttle::Throttle;
use crate::auth::{self, Authenticator};
use crate::config::{Backend as BackendConfig, Config};
use crate::files::io_error_words;
use crate::registry::Registry;
use crate::state::{Backend, Shared, State};
use crate::systemd::notify;
use crate::upstream::Pool;
use arc_swap::ArcSwap;
use sd_notify::NotifyState;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// How often the htpasswd file is looked at for changes.
pub const HTPASSWD_POLL: Duration = Duration::from_secs(1);

/// Errors while building a [`State`]; each names the file or key at fault.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    #[error(transparent)]
    Certs(#[from] crate::certs::CertsError),
    #[error(transparent)]
    Auth(#[from] crate::auth::AuthError),
    #[error(transparent)]
    UpstreamCa(#[from] crate::upstream::CaError),
    #[error("{file}: {key}: {at}: {words}")]
    Storage {
        file: String,
        key: &'static str,
        at: String,
        words: String,
    },
}

impl State {
    /// Load certificates (creating them when allowed), the htpasswd file and the backend.
    pub fn build(config: Config) -> Result<State, BuildError> {
        State::build_after(config, None)
    }

    /// Build the state that follows `previous` (a reload): what the process coordinates
    /// in memory among requests (upload and tag locks, running hashes, the manifest
    /// budget) carries over, so a PATCH before the reload and one after it share a lock.
    pub fn build_after(config: Config, previous: Option<&State>) -> Result<State, BuildError> {
        let inflight = previous
            .and_then(|p| match &p.backend {
                Backend::Registry(r) => Some(r.inflight()),
                Backend::Upstream(_) => None,
            })
            .unwrap_or_default();
        ensure_certificates(&config)?;
        for w in config.access.iter().flat_map(|p| p.warnings()) {
            tracing::warn!("{}: {w}", config.path.display());
        }
        let tls = crate::tls::load_server_config(&config.tls.certificate, &config.tls.key)?;
        // The failed-login buckets outlive the snapshot (a reload must not hand every
        // guesser a fresh burst); new limits are applied once the build succeeded.
        let throttle = match previous {
            Some(p) => p.auth.throttle().clone(),
            None => Arc::new(Throttle::new(config.auth.throttle)),
        };
        let auth = Arc::new(Authenticator::load(
            &config.auth.htpasswd,
            &config.auth.realm,
            throttle.clone(),
        )?);
        let backend = match &config.backend {
            BackendConfig::Upstream(u) => {
                let pool = Arc::new(Pool::new(u, config.server.read_timeout)?);
                pool.start_health_checks();
                Backend::Upstream(pool)
            }
            BackendConfig::Registry(r) => {
                let failed = |e: crate::registry::storage::StorageError| {
                    let (key, at) = r.location();
                    BuildError::Storage {
                        file: config.path.display().to_string(),
                        key,
                        at,
                        words: storage_words(r, &e),
                    }
                };
                let store = crate::registry::storage::open(r).map_err(failed)?;
                let secret = store
                    .prepare_blocking(r.secret.as_deref())
                    .map_err(failed)?;
                let mut registry = Registry::new(store, r.delete, secret, inflight)
                    .with_read_only(r.read_only)
                    .with_max_manifest_size(r.max_manifest_size);
                if let Some(Backend::Registry(p)) = previous.map(|p| &p.backend) {
                    registry = registry.with_hints_of(p);
                }
                if r.read_only {
                    // Collection and purge delete: not while the registry is read-only.
                    if r.gc_interval.is_some() || r.upload_purge.is_some() {
                        tracing::info!("read-only: online gc and upload purge do not run");
                    }
                } else {
                    registry.start_maintenance(
                        r.gc_interval.map(|every| (every, r.gc_grace)),
                        r.upload_purge,
                    );
                }
                Backend::Registry(registry)
            }
        };
        // Tokens are keyed by the TLS private key (just read above, so readable), which
        // every instance serving one name shares.
        let tokens = crate::auth::token::Tokens::from_secret(
            &std::fs::read(&config.tls.key).unwrap_or_else(|_| rand::random::<[u8; 32]>().to_vec()),
        );
        throttle.configure(config.auth.throttle);
        Ok(State {
            tls: tokio_rustls::TlsAcceptor::from(tls),
            config,
            auth,
            tokens,
            backend,
        })
    }
}

/// Wrap a built state for [`run`].
pub fn shared(state: State) -> Shared {
    Arc::new(ArcSwap::from_pointee(state))
}

/// Serve on already-bound listeners until `shutdown` resolves, then drain. A watcher
/// looks at the htpasswd file every [`HTPASSWD_POLL`] and ticks the login throttle.
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
                // Prunes refilled buckets and writes the summary line, each interval.
                auth.throttle().tick(std::time::Instant::now());
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
    crate::listener::serve(state, listeners, shutdown).await;
    watcher.abort();
}

/// Create the CA and server certificate when `tls.generate_if_missing` allows and
/// either file is absent, and say where the CA is and how clients trust it.
pub fn ensure_certificates(config: &Config) -> Result<(), crate::certs::CertsError> {
    let t = &config.tls;
    if !t.generate_if_missing || (t.certificate.exists() && t.key.exists()) {
        return Ok(());
    }
    let layout = crate::certs::Layout::for_server(&t.certificate, &t.key);
    let g = crate::certs::generate(&layout, &t.hosts, true)?;
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

/// The one-line STATUS= summary.
pub fn status_line(state: &State) -> String {
    let listen: Vec<String> = state
        .config
        .server
        .listen
        .iter()
        .map(ToString::to_string)
        .collect();
    let backend = match &state.backend {
        Backend::Upstream(p) => format!("{} upstream(s)", p.peers().len()),
        Backend::Registry(r) => {
            use crate::registry::storage::Storage as _;
            let mode = if r.read_only() { " (read-only)" } else { "" };
            format!("bundled registry on {}{mode}", r.storage().describe())
        }
    };
    format!(
        "serving {} ; {backend}; {} user(s)",
        listen.join(", "),
        state.auth.users()
    )
}

/// Re-read the configuration, certificates and htpasswd, build a whole new state and
/// swap it in. A bad configuration changes nothing (the old one keeps serving).
pub async fn reload(path: &Path, shared: &Shared) -> Result<String, String> {
    let mut states = vec![NotifyState::Reloading];
    if let Ok(now) = NotifyState::monotonic_usec_now() {
        states.push(now);
    }
    notify(&states);
    let p: PathBuf = path.to_path_buf();
    let previous = shared.load_full();
    let built = tokio::task::spawn_blocking(move || {
        let config = Config::load(&p).map_err(|e| e.to_string())?;
        State::build_after(config, Some(&previous)).map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| format!("reload task failed: {e}"))
    .and_then(|r| r);
    let m = crate::metrics::get();
    match built {
        Ok(new) => {
            let old = shared.load();
            if new.config.server.listen != old.config.server.listen {
                tracing::warn!(
                    "server.listen changed: new addresses take effect on restart, not reload"
                );
            }
            let status = status_line(&new);
            shared.store(Arc::new(new));
            m.reloads.inc();
            notify(&[
                NotifyState::Ready,
                NotifyState::Status(&format!("reloaded; {status}")),
            ]);
            Ok(status)
        }
        Err(why) => {
            m.reload_failures.inc();
            let one_line = why.replace('\n', "; ");
            notify(&[
                NotifyState::Ready,
                NotifyState::Status(&format!(
                    "reload failed, old configuration kept: {one_line}"
                )),
            ]);
            Err(why)
        }
    }
}

/// The signals a running server answers to, installed before READY=1 is sent: a
/// SIGHUP that arrives right after READY must reload, not kill the process with the
/// default disposition.
pub struct Signals {
    hup: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    /// Take over SIGHUP, SIGTERM and SIGINT from this moment on.
    pub fn install() -> std::io::Result<Signals> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Signals {
            hup: signal(SignalKind::hangup())?,
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }
}

/// Handle signals until told to stop: SIGHUP reloads; SIGTERM or SIGINT returns (and
/// says STOPPING=1), which starts the drain.
pub async fn until_stopped(path: PathBuf, shared: Shared, signals: Signals) {
    let Signals {
        mut hup,
        mut term,
        mut int,
    } = signals;
    loop {
        tokio::select! {
            _ = hup.recv() => {
                tracing::info!(config = %path.display(), "SIGHUP: reloading");
                match reload(&path, &shared).await {
                    Ok(status) => tracing::info!(%status, "reloaded"),
                    Err(why) => {
                        for line in why.lines() {
                            tracing::error!("reload refused, old configuration kept: {line}");
                        }
                    }
                }
            }
            _ = term.recv() => {
                tracing::info!("SIGTERM: stopping");
                break;
            }
            _ = int.recv() => {
                tracing::info!("SIGINT: stopping");
                break;
            }
        }
    }
    notify(&[
        NotifyState::Stopping,
        NotifyState::Status("draining requests in flight"),
    ]);
}

/// A storage failure in a configuration problem line: the folder's own words for
/// `fs` (the path is already in the line), the operation and key for object stores.
pub fn storage_words(
    r: &crate::config::Registry,
    e: &crate::registry::storage::StorageError,
) -> String {
    match r.object {
        Some(_) => e.words(),
        None => io_error_words(&e.source),
    }
}
