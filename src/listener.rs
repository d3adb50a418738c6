//! Listeners: accept TCP within the connection caps (`admission`), complete the TLS
//! handshake (ALPN picks h2 or http/1.1, served by `protocol`), close connections that
//! are silent or idle too long, and drain gracefully on shutdown.

mod admission;
mod coalesce;
mod protocol;

use admission::Admission;

use crate::proxy;
use crate::state::Shared;
use http::Request;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

/// Runs a closure when dropped (connection gauge, whatever way the task ends).
struct Defer<F: FnMut()>(F);

impl<F: FnMut()> Drop for Defer<F> {
    fn drop(&mut self) {
        (self.0)();
    }
}

/// Ciphertext buffered by all TLS connections before their writes push back, shared
/// like the storage's read budget: a connection alone writes 256 KiB per syscall
/// (a quarter of the syscalls per MiB of rustls's 64 KiB default), hundreds of them
/// (slow readers fill the buffer) hold 16 KiB each (issue 13: 128 KiB per download
/// in all; tests/memory.rs).
const TLS_SEND_BUDGET: usize = 2 << 20;
const TLS_SEND_MAX: usize = 256 << 10;
const TLS_SEND_MIN: usize = 16 << 10;

/// TLS connections open in this process (past the handshake), for their share of
/// [`TLS_SEND_BUDGET`].
static TLS_OPEN: AtomicUsize = AtomicUsize::new(0);

/// A TLS connection's share of [`TLS_SEND_BUDGET`] now.
fn tls_send_share() -> usize {
    (TLS_SEND_BUDGET / TLS_OPEN.load(Ordering::Relaxed).max(1)).clamp(TLS_SEND_MIN, TLS_SEND_MAX)
}

/// A stream whose send buffer bound can change while it runs.
trait SendLimit {
    fn set_send_limit(&mut self, bytes: usize);
}

impl<IO> SendLimit for tokio_rustls::server::TlsStream<IO> {
    fn set_send_limit(&mut self, bytes: usize) {
        // A ceiling, not an allocation: only a slow reader fills it.
        self.get_mut().1.set_buffer_limit(Some(bytes));
    }
}

impl<T: SendLimit> SendLimit for coalesce::Coalesce<T> {
    fn set_send_limit(&mut self, bytes: usize) {
        // Runs no larger than what TLS may queue: many connections, smaller runs (still
        // whole records).
        self.set_run(bytes);
        self.inner_mut().set_send_limit(bytes);
    }
}

/// After an idle connection is asked to close (HTTP/2: GOAWAY), how long it may take
/// before it is dropped anyway: a client that ignores GOAWAY costs no more than this.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// What one connection's timers need to know: requests in flight, when it last
/// became idle, and whether bytes of a new HTTP/1 request head are arriving.
struct Activity {
    accepted: Instant,
    in_flight: AtomicUsize,
    served: AtomicU64,
    h2: AtomicBool,
    state: Mutex<Marks>,
}

struct Marks {
    idle_since: Instant,
    /// First byte read while no request was in flight (HTTP/1: a request head under way).
    head_since: Option<Instant>,
}

/// Why a connection's timer fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expiry {
    /// No (complete) request head in time: dropped at once, nothing to say to it.
    Head,
    /// Kept alive with nothing in flight: closed politely (GOAWAY on HTTP/2).
    Idle,
}

impl Activity {
    fn new(accepted: Instant) -> Activity {
        Activity {
            accepted,
            in_flight: AtomicUsize::new(0),
            served: AtomicU64::new(0),
            h2: AtomicBool::new(false),
            state: Mutex::new(Marks {
                idle_since: accepted,
                head_since: None,
            }),
        }
    }

    fn marks(&self) -> std::sync::MutexGuard<'_, Marks> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A request head is complete and the request starts.
    fn begin(self: &Arc<Self>, version: http::Version) -> InFlight {
        if version == http::Version::HTTP_2 {
            self.h2.store(true, Ordering::Relaxed);
        }
        self.served.fetch_add(1, Ordering::Relaxed);
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.marks().head_since = None;
        InFlight(self.clone())
    }

    /// Bytes arrived from the client. The first ones after the connection went idle
    /// start the head timer.
    fn read(&self) {
        if self.in_flight.load(Ordering::Acquire) == 0 {
            let mut m = self.marks();
            if m.head_since.is_none() {
                m.head_since = Some(Instant::now());
            }
        }
    }

    /// When the connection must close if nothing changes, and how.
    fn deadline(
        &self,
        header_timeout: Duration,
        idle_timeout: Duration,
    ) -> Option<(Instant, Expiry)> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        if self.served.load(Ordering::Relaxed) == 0 {
            // TLS handshake and the first request head, together.
            return Some((self.accepted + header_timeout, Expiry::Head));
        }
        let m = self.marks();
        match m.head_since {
            // HTTP/2 reads bytes while idle (pings, window updates): only requests count.
            Some(t) if !self.h2.load(Ordering::Relaxed) => Some((t + header_timeout, Expiry::Head)),
            _ => Some((m.idle_since + idle_timeout, Expiry::Idle)),
        }
    }
}

/// One request in flight on a connection; dropped when its response has been sent
/// (or abandoned), which restarts the connection's idle timer.
///
/// Nothing here wakes the connection's task: a wake-up per request costs a scheduler
/// round trip (often a worker thread unparked) that measured ~25% more CPU per small
/// request. The task looks at [`Activity`] on its own timer instead, at least every
/// `header_timeout`, so a deadline is noticed at most that late.
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let a = &self.0;
        {
            let mut m = a.marks();
            m.idle_since = Instant::now();
            m.head_since = None;
        }
        a.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A response body that holds its request's [`InFlight`] mark until it is dropped.
struct Tracked<B> {
    inner: B,
    _mark: InFlight,
}

impl<B: http_body::Body + Unpin> http_body::Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<B::Data>, B::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// The client's byte stream, telling [`Activity`] when bytes arrive.
struct Tap<T: SendLimit> {
    inner: T,
    activity: Arc<Activity>,
    /// The send buffer bound last set, re-read before each write: connections opening
    /// and closing change every connection's share.
    limit: usize,
}

impl<T: SendLimit> Tap<T> {
    fn new(inner: T, activity: Arc<Activity>) -> Tap<T> {
        TLS_OPEN.fetch_add(1, Ordering::Relaxed);
        Tap {
            inner,
            activity,
            limit: 0,
        }
    }

    fn tune(&mut self) {
        let share = tls_send_share();
        if share != self.limit {
            self.limit = share;
            self.inner.set_send_limit(share);
        }
    }
}

impl<T: SendLimit> Drop for Tap<T> {
    fn drop(&mut self) {
        TLS_OPEN.fetch_sub(1, Ordering::Relaxed);
    }
}

impl<T: AsyncRead + Unpin + SendLimit> AsyncRead for Tap<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.activity.read();
        }
        r
    }
}

impl<T: AsyncWrite + Unpin + SendLimit> AsyncWrite for Tap<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        this.tune();
        Pin::new(&mut this.inner).poll_write(cx, data)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        this.tune();
        Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// Where the server is in its life: connections close politely on `Draining` and are
/// dropped on `Closed` (the shutdown grace period is over).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Serving,
    Draining,
    Closed,
}

/// Serve `listeners` until `shutdown` resolves, then stop accepting and let requests
/// in flight finish for up to the configured grace period.
pub async fn serve(state: Shared, listeners: Vec<TcpListener>, shutdown: impl Future<Output = ()>) {
    let grace = state.load().config.server.shutdown_grace;
    let admission = Arc::new(Admission::default());
    let (phase_tx, phase_rx) = tokio::sync::watch::channel(Phase::Serving);
    // Every connection task holds a sender; the receiver sees the channel close once
    // the last one has ended.
    let (open_tx, mut open_rx) = tokio::sync::mpsc::channel::<()>(1);
    let mut accept_tasks = Vec::new();
    for listener in listeners {
        let state = state.clone();
        let admission = admission.clone();
        let open = open_tx.clone();
        let mut phase = phase_rx.clone();
        accept_tasks.push(tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    _ = phase.changed() => break,
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
                // The caps of the configuration in force now: a reload applies to the
                // next connection. A refused one is dropped here, before any TLS work.
                let ticket = {
                    let s = state.load();
                    let c = &s.config.server;
                    admission.admit(peer.ip(), c.max_connections, c.max_connections_per_address)
                };
                let Ok(ticket) = ticket else {
                    continue;
                };
                let _ = tcp.set_nodelay(true);
                let conn = Connection {
                    shared: state.clone(),
                    peer,
                    accepted: Instant::now(),
                };
                let phase = phase.clone();
                let open = open.clone();
                tokio::spawn(async move {
                    conn.serve(tcp, phase).await;
                    drop(ticket);
                    drop(open);
                });
            }
        }));
    }
    drop(open_tx);
    shutdown.await;
    let _ = phase_tx.send(Phase::Draining);
    for t in accept_tasks {
        let _ = t.await;
    }
    tracing::info!(grace = ?grace, "shutting down: waiting for requests in flight");
    if tokio::time::timeout(grace, open_rx.recv()).await.is_err() {
        tracing::warn!("shutdown grace period over; closing remaining connections");
        let _ = phase_tx.send(Phase::Closed);
    }
}

/// One accepted TCP connection.
struct Connection {
    shared: Shared,
    peer: SocketAddr,
    accepted: Instant,
}

impl Connection {
    /// TLS, then HTTP until the client leaves, a timer expires or the server stops.
    async fn serve(self, tcp: TcpStream, mut phase: tokio::sync::watch::Receiver<Phase>) {
        let Connection {
            shared,
            peer,
            accepted,
        } = self;
        let m = crate::metrics::get();
        m.connections.inc();
        let _open = Defer(|| {
            crate::metrics::get().connections.dec();
        });
        // The connection keeps the limits it was accepted under, across reloads.
        let (limits, acceptor) = {
            let s = shared.load();
            (s.config.server.clone(), s.tls.clone())
        };
        let (header_timeout, idle_timeout) = (limits.header_timeout, limits.idle_timeout);
        let tls =
            match tokio::time::timeout_at((accepted + header_timeout).into(), acceptor.accept(tcp))
                .await
            {
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
        drop(acceptor);
        let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
        let activity = Arc::new(Activity::new(accepted));
        let io = TokioIo::new(Tap::new(coalesce::Coalesce::new(tls, h2), activity.clone()));
        let tracker = activity.clone();
        let svc = service_fn(move |req: Request<Incoming>| {
            let st = shared.clone();
            let mark = tracker.begin(req.version());
            async move {
                let resp = proxy::handle(st, peer, req).await;
                Ok::<_, Infallible>(resp.map(|inner| Tracked { inner, _mark: mark }))
            }
        });
        let mut conn = protocol::serve(h2, &limits, io, svc);
        drop(limits);
        // Set once the connection has been asked to close: it is dropped if still
        // open at this instant.
        let mut closing: Option<Instant> = None;
        loop {
            let now = Instant::now();
            let timer = match closing {
                Some(at) => Some((at, None)),
                None => activity
                    .deadline(header_timeout, idle_timeout)
                    .map(|(at, why)| (at, Some(why))),
            };
            // Wake for the deadline, or sooner to look again: requests starting and
            // ending, and heads starting, change the deadline without waking us.
            let recheck = now + header_timeout.min(idle_timeout);
            let wake = timer.map_or(recheck, |(at, _)| at.min(recheck));
            let sleep = tokio::time::sleep_until(wake.into());
            tokio::select! {
                r = &mut conn => {
                    if let Err(e) = r {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                    return;
                }
                changed = phase.changed() => {
                    let now = *phase.borrow_and_update();
                    if changed.is_err() || now == Phase::Closed {
                        return;
                    }
                    if closing.is_none() {
                        conn.graceful_shutdown();
                        // The drain's own grace period bounds this connection now.
                        closing = Some(Instant::now() + Duration::from_secs(86_400));
                    }
                }
                _ = sleep => {
                    let Some((at, why)) = timer else { continue };
                    if Instant::now() < at {
                        continue;
                    }
                    match why {
                        // Asked to close and still open: drop it.
                        None => return,
                        Some(Expiry::Head) => {
                            // The state may have moved on since the timer was set
                            // (a request began): look again before acting.
                            if activity.deadline(header_timeout, idle_timeout)
                                .is_some_and(|(d, w)| w == Expiry::Head && d <= Instant::now())
                            {
                                tracing::debug!(%peer, ?header_timeout, "no request head in time; connection closed");
                                return;
                            }
                        }
                        Some(Expiry::Idle) => {
                            if activity.deadline(header_timeout, idle_timeout)
                                .is_some_and(|(d, w)| w == Expiry::Idle && d <= Instant::now())
                            {
                                tracing::debug!(%peer, ?idle_timeout, "idle connection closed");
                                conn.graceful_shutdown();
                                closing = Some(Instant::now() + CLOSE_GRACE);
                            }
                        }
                    }
                }
            }
        }
    }
}
