//! systemd: sd_notify (READY, RELOADING, STOPPING, WATCHDOG, STATUS) and socket
//! activation (`LISTEN_FDS`). What a reload or a signal does is `app`'s.

use sd_notify::NotifyState;
use std::time::Duration;

/// Tell systemd (when `NOTIFY_SOCKET` is set; a no-op otherwise).
pub fn notify(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(false, states) {
        tracing::debug!(error = %e, "sd_notify failed");
    }
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
