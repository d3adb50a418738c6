//! Running as a Linux service: sd_notify (READY, RELOADING, STOPPING, WATCHDOG,
//! STATUS), socket activation (`LISTEN_FDS`), SIGHUP reload and SIGTERM/SIGINT drain.

use crate::{Config, Shared, State};
use sd_notify::NotifyState;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Tell systemd (when `NOTIFY_SOCKET` is set; a no-op otherwise).
pub fn notify(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(false, states) {
        tracing::debug!(error = %e, "sd_notify failed");
    }
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
        crate::proxy::Backend::Upstream(p) => format!("{} upstream(s)", p.peers().len()),
        crate::proxy::Backend::Registry(r) => {
            use crate::registry::storage::Storage as _;
            format!("bundled registry on {}", r.storage().describe())
        }
    };
    format!(
        "serving {} ; {backend}; {} user(s)",
        listen.join(", "),
        state.auth.users()
    )
}

/// Listeners handed over by systemd socket activation, if any.
pub fn inherited_listeners() -> std::io::Result<Option<Vec<tokio::net::TcpListener>>> {
    let mut fds = listenfd::ListenFd::from_env();
    if fds.len() == 0 {
        return Ok(None);
    }
    let mut out = Vec::new();
    for i in 0..fds.len() {
        if let Some(l) = fds.take_tcp_listener(i)? {
            l.set_nonblocking(true)?;
            out.push(tokio::net::TcpListener::from_std(l)?);
        }
    }
    Ok(Some(out))
}

/// Send WATCHDOG=1 at half the interval systemd asked for (`WatchdogSec=`).
pub fn start_watchdog() {
    // sd_watchdog_enabled(3): WATCHDOG_USEC set, and WATCHDOG_PID either unset or ours.
    let usec: u64 = match std::env::var("WATCHDOG_USEC")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        Some(u) if u > 0 => u,
        _ => return,
    };
    if let Some(pid) = std::env::var("WATCHDOG_PID")
        .ok()
        .and_then(|v| v.parse::<u32>().ok())
    {
        if pid != std::process::id() {
            return;
        }
    }
    let every = Duration::from_micros(usec / 2).max(Duration::from_millis(100));
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            notify(&[NotifyState::Watchdog]);
        }
    });
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
    let built = tokio::task::spawn_blocking(move || {
        let config = Config::load(&p).map_err(|e| e.to_string())?;
        State::build(config).map_err(|e| e.to_string())
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
