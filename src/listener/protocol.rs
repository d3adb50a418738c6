//! The HTTP side of one TLS connection: HTTP/2 when ALPN chose `h2`, HTTP/1.1
//! otherwise (RFC 9113 §3.2: over TLS, HTTP/2 is only ever negotiated by ALPN), each
//! with the limits of the configuration the connection was accepted under.

use crate::config::Server;
use hyper::body::{Body, Incoming};
use hyper::rt::bounds::Http2ServerConnExec;
use hyper::server::conn::{http1, http2};
use hyper::service::HttpService;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

/// Most response bytes one HTTP/2 stream queues ahead of the client's reading: with
/// hundreds of concurrent downloads this, not the blob size, is what memory scales with.
/// A download's read chunk is at least as large (storage/fs.rs), so a smaller buffer
/// costs no throughput: h2 takes a whole chunk whenever any room is left.
const SEND_BUFFER_PER_STREAM: usize = 32 << 10;

/// hyper's HTTP/1 buffer bound beyond the largest request head allowed: the same
/// bound limits the response bytes it queues ahead of the connection (about 400 KiB
/// by default, per connection, which a slow reader fills).
const HTTP1_BUFFER_HEADROOM: usize = 8 << 10;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A connection being served by hyper, in the protocol ALPN chose.
pub(super) enum Served<I, S: HttpService<Incoming>> {
    Http1(Pin<Box<http1::Connection<I, S>>>),
    Http2(Pin<Box<http2::Connection<I, S, TokioExecutor>>>),
}

/// Serve `io` with `svc`. Timeouts between requests are not hyper's: the listener's
/// `Activity` enforces `header_timeout` and `idle_timeout` for both protocols
/// (hyper's own HTTP/1 header timer would also cut kept-alive connections at
/// `header_timeout`).
pub(super) fn serve<I, S, B>(h2: bool, limits: &Server, io: I, svc: S) -> Served<I, S>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: HttpService<Incoming, ResBody = B> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
    TokioExecutor: Http2ServerConnExec<S::Future, B>,
{
    if h2 {
        let mut b = http2::Builder::new(TokioExecutor::new());
        b.timer(TokioTimer::new())
            .max_concurrent_streams(limits.http2_max_streams)
            // h2 answers a larger header block with 431 on that stream and resets it;
            // the connection and its other streams go on.
            .max_header_list_size(u32::try_from(limits.max_header_size).unwrap_or(u32::MAX))
            // Bounded per-stream buffering: a pushed layer is held at most this much in
            // flight per stream, whatever its size.
            .initial_stream_window_size(1 << 20)
            .initial_connection_window_size(4 << 20)
            .max_send_buf_size(SEND_BUFFER_PER_STREAM)
            .keep_alive_interval(Duration::from_secs(60))
            .keep_alive_timeout(Duration::from_secs(20));
        Served::Http2(Box::pin(b.serve_connection(io, svc)))
    } else {
        let mut b = http1::Builder::new();
        b.timer(TokioTimer::new())
            .header_read_timeout(None)
            .keep_alive(true)
            // A longer head gets hyper's own answer, 431 with an empty body, and the
            // connection is closed: hyper has no hook for a body or extra headers there.
            .max_header_size(limits.max_header_size)
            .max_buf_size(limits.max_header_size + HTTP1_BUFFER_HEADROOM);
        Served::Http1(Box::pin(b.serve_connection(io, svc)))
    }
}

impl<I, S, B> Served<I, S>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: HttpService<Incoming, ResBody = B> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
    TokioExecutor: Http2ServerConnExec<S::Future, B>,
{
    /// Finish the requests in flight and close: HTTP/1.1 stops keeping alive, HTTP/2
    /// sends GOAWAY.
    pub(super) fn graceful_shutdown(&mut self) {
        match self {
            Served::Http1(c) => c.as_mut().graceful_shutdown(),
            Served::Http2(c) => c.as_mut().graceful_shutdown(),
        }
    }
}

impl<I, S, B> Future for Served<I, S>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: HttpService<Incoming, ResBody = B> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
    TokioExecutor: Http2ServerConnExec<S::Future, B>,
{
    type Output = Result<(), hyper::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.get_mut() {
            Served::Http1(c) => c.as_mut().poll(cx),
            Served::Http2(c) => c.as_mut().poll(cx),
        }
    }
}
