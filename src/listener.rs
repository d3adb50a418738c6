//! Listeners: accept TCP, complete the TLS handshake (ALPN picks h2 or http/1.1),
//! serve the connection with hyper, and drain gracefully on shutdown.

use crate::proxy::{self, State};
use arc_swap::ArcSwap;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// Runs a closure when dropped (connection gauge, whatever way the task ends).
struct Defer<F: FnMut()>(F);

impl<F: FnMut()> Drop for Defer<F> {
    fn drop(&mut self) {
        (self.0)();
    }
}

/// Most ciphertext buffered per TLS connection before writes push back.
const TLS_SEND_BUFFER: usize = 256 << 10;

/// The hyper connection settings shared by every connection.
fn builder(header_timeout: Duration) -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .keep_alive(true);
    b.http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(250)
        // Bounded per-stream buffering: a pushed layer is held at most this much in
        // flight per stream, whatever its size.
        .initial_stream_window_size(1 << 20)
        .initial_connection_window_size(4 << 20)
        .max_send_buf_size(256 << 10)
        .keep_alive_interval(Duration::from_secs(60))
        .keep_alive_timeout(Duration::from_secs(20));
    b
}

/// Serve `listeners` until `shutdown` resolves, then stop accepting and let requests
/// in flight finish for up to the configured grace period.
pub async fn serve(
    state: Arc<ArcSwap<State>>,
    listeners: Vec<TcpListener>,
    shutdown: impl Future<Output = ()>,
) {
    let graceful = Arc::new(GracefulShutdown::new());
    let (max_conns, grace) = {
        let s = state.load();
        (
            s.config.server.max_connections,
            s.config.server.shutdown_grace,
        )
    };
    let permits = Arc::new(Semaphore::new(max_conns));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut accept_tasks = Vec::new();
    for listener in listeners {
        let state = state.clone();
        let permits = permits.clone();
        let graceful = graceful.clone();
        let mut stop = stop_rx.clone();
        accept_tasks.push(tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    _ = stop.changed() => break,
                    a = listener.accept() => a,
                };
                let (tcp, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // EMFILE and friends: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let Ok(permit) = permits.clone().try_acquire_owned() else {
                    tracing::warn!(%peer, "server.max_connections reached; connection closed");
                    continue;
                };
                let _ = tcp.set_nodelay(true);
                let shared = state.clone();
                let state = state.load_full();
                let watcher = graceful.watcher();
                tokio::spawn(async move {
                    let m = crate::metrics::get();
                    m.connections.inc();
                    let _open = Defer(|| {
                        crate::metrics::get().connections.dec();
                    });
                    let header_timeout = state.config.server.header_timeout;
                    let mut tls =
                        match tokio::time::timeout(header_timeout, state.tls.accept(tcp)).await {
                            Ok(Ok(tls)) => {
                                m.tls_handshakes.inc();
                                tls
                            }
                            Ok(Err(e)) => {
                                m.tls_failures.inc();
                                tracing::debug!(%peer, error = %e, "TLS handshake failed");
                                return;
                            }
                            Err(_) => {
                                m.tls_failures.inc();
                                tracing::debug!(%peer, "TLS handshake timed out");
                                return;
                            }
                        };
                    // rustls buffers at most 64 KiB of outgoing plaintext by default,
                    // which turns a blob download into one small writev per record
                    // batch; a larger bound halves the syscalls per MiB. It is a
                    // ceiling, not an allocation: only a slow reader fills it.
                    tls.get_mut().1.set_buffer_limit(Some(TLS_SEND_BUFFER));
                    drop(state);
                    let svc = service_fn(move |req| {
                        let st = shared.clone();
                        async move { Ok::<_, Infallible>(proxy::handle(st, peer, req).await) }
                    });
                    let b = builder(header_timeout);
                    let conn = b.serve_connection(TokioIo::new(tls), svc);
                    if let Err(e) = watcher.watch(conn).await {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                    drop(permit);
                });
            }
        }));
    }
    shutdown.await;
    let _ = stop_tx.send(true);
    for t in accept_tasks {
        let _ = t.await;
    }
    tracing::info!(grace = ?grace, "shutting down: waiting for requests in flight");
    // Every accept task has ended, so this is the last handle.
    let Ok(graceful) = Arc::try_unwrap(graceful) else {
        return;
    };
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("shutdown grace period over; closing remaining connections");
    }
}
