//! The request phases, in order: route → client rule → authenticate → backend →
//! finish headers → log. Each phase is a plain function that may answer early, so
//! each is testable without sockets (CONVENTIONS.md §4).

use crate::auth::{Authenticator, Outcome};
use crate::body::{self, Body, Idle, Watched};
use crate::clients::{self, Route};
use crate::config::{Backend as BackendConfig, Config};
use crate::error::{oci_error, Code, API_VERSION, API_VERSION_HEADER};
use crate::registry::storage::Backend as Storage;
use crate::registry::Registry;
use crate::upstream::Pool;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Where authorised requests are dispatched.
pub enum Backend {
    Upstream(Arc<Pool>),
    /// The bundled registry, served in-process (no loopback hop).
    Registry(Registry<Storage>),
}

/// Everything a request needs, built whole from one configuration (a reload builds a
/// new one and swaps it in; requests in flight keep the one they began with).
pub struct State {
    pub config: Config,
    pub tls: tokio_rustls::TlsAcceptor,
    pub auth: Arc<Authenticator>,
    pub backend: Backend,
}

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
    #[error("{file}: registry.root: {path}: {words}")]
    Storage {
        file: String,
        path: String,
        words: String,
    },
}

impl State {
    /// Load certificates (creating them when allowed), the htpasswd file and the backend.
    pub fn build(config: Config) -> Result<State, BuildError> {
        crate::ensure_certificates(&config)?;
        let tls = crate::tls::load_server_config(&config.tls.certificate, &config.tls.key)?;
        let auth = Arc::new(Authenticator::load(
            &config.auth.htpasswd,
            &config.auth.realm,
        )?);
        let backend = match &config.backend {
            BackendConfig::Upstream(u) => {
                let pool = Arc::new(Pool::new(u, config.server.read_timeout)?);
                pool.start_health_checks();
                Backend::Upstream(pool)
            }
            BackendConfig::Registry(r) => {
                let store = crate::registry::storage::open(r);
                let secret = store.secret_blocking(r.secret.as_deref()).map_err(|e| {
                    BuildError::Storage {
                        file: config.path.display().to_string(),
                        path: r.root.display().to_string(),
                        words: crate::io_error_words(&e.source),
                    }
                })?;
                let registry = Registry::new(store, r.delete, secret);
                registry.start_maintenance(
                    r.gc_interval.map(|every| (every, r.gc_grace)),
                    r.upload_purge,
                );
                Backend::Registry(registry)
            }
        };
        Ok(State {
            tls: tokio_rustls::TlsAcceptor::from(tls),
            config,
            auth,
            backend,
        })
    }
}

/// Handle one request from `peer`, on the configuration current when it arrives (a
/// reload applies to the next request, even on a kept-alive connection; this one
/// finishes on the state it began with).
pub async fn handle<B>(shared: crate::Shared, peer: SocketAddr, req: Request<B>) -> Response<Body>
where
    B: http_body::Body<Data = bytes::Bytes> + Send + Unpin + 'static,
    B::Error: Into<body::BoxError>,
{
    let state = shared.load_full();
    let started = Instant::now();
    let time = std::time::SystemTime::now();
    let read_timeout = state.config.server.read_timeout;
    let bytes_in = Arc::new(AtomicU64::new(0));
    let counter = bytes_in.clone();
    let leftover = Leftover::default();
    let req = req.map(|b| {
        leftover.wrap(Watched::new(Idle::new(b, read_timeout)).on_data(move |n| {
            counter.fetch_add(n as u64, Ordering::Relaxed);
        }))
    });
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let route = clients::route(&path);
    let repository = crate::registry::repository_of(&path).map(str::to_string);
    let version = req.version();
    let expects_continue = req
        .headers()
        .get(header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    let mut unanswered = Unanswered {
        entry: Some(crate::access::Entry {
            time,
            peer,
            user: None,
            method: method.to_string(),
            repository: repository.clone(),
            path,
            status: CLIENT_CLOSED_REQUEST,
            bytes_in: 0,
            bytes_out: 0,
            duration: std::time::Duration::ZERO,
            upstream: None,
            retries: Vec::new(),
        }),
        started,
        bytes_in: bytes_in.clone(),
        format: state.config.log_format,
    };
    let (mut resp, outcome) = answer(
        &state,
        req,
        peer,
        route,
        repository.as_deref(),
        &mut unanswered,
    )
    .await;
    if version < http::Version::HTTP_2 {
        keep_connection_usable(&leftover, expects_continue, &mut resp).await;
    }
    finish_headers(route, &method, &mut resp);
    // Answered: the one entry of this request moves from the 499 guard to the end of
    // the response body.
    let Some(mut entry) = unanswered.entry.take() else {
        return resp;
    };
    entry.status = resp.status().as_u16();
    entry.upstream = outcome.upstream;
    entry.retries = outcome.retries;
    let format = state.config.log_format;
    let bytes_out = Arc::new(AtomicU64::new(0));
    let counter = bytes_out.clone();
    resp.map(|b| {
        body::boxed(
            Watched::new(b)
                .on_data(move |n| {
                    counter.fetch_add(n as u64, Ordering::Relaxed);
                })
                .on_drop(move || {
                    let mut e = entry;
                    e.duration = started.elapsed();
                    e.bytes_in = bytes_in.load(Ordering::Relaxed);
                    e.bytes_out = bytes_out.load(Ordering::Relaxed);
                    record(&e, format);
                }),
        )
    })
}

/// The phases up to the backend's answer: route, client rule, authentication,
/// dispatch. Takes the request by value so that whatever the answer leaves of its
/// body is released when it returns. The authenticated user goes into the request's
/// access-log entry (held by `unanswered` until there is an answer).
async fn answer(
    state: &State,
    req: Request<Body>,
    peer: SocketAddr,
    route: Route,
    repository: Option<&str>,
    unanswered: &mut Unanswered,
) -> (Response<Body>, crate::upstream::forward::Outcome) {
    let m = crate::metrics::get();
    match route {
        Route::Other => (
            oci_error(StatusCode::NOT_FOUND, Code::NotFound, "not found"),
            Default::default(),
        ),
        Route::V2NoSlash => (redirect_to_v2(&req), Default::default()),
        Route::Ping => dispatch(state, req, peer, repository).await,
        Route::V2 => {
            if let Some(r) = client_rule(&state.config, &req) {
                return (r, Default::default());
            }
            match state
                .auth
                .authenticate(req.headers().get(header::AUTHORIZATION))
                .await
            {
                Outcome::Allowed(u) => {
                    m.auth_successes.inc();
                    if let Some(e) = &mut unanswered.entry {
                        e.user = Some(u);
                    }
                    dispatch(state, req, peer, repository).await
                }
                Outcome::Missing => (state.auth.challenge(), Default::default()),
                Outcome::Refused(u) => {
                    m.auth_failures.inc();
                    match u {
                        Some(u) => tracing::info!(
                            %peer, user = %crate::access::Escaped(&u), "authentication failed"
                        ),
                        None => tracing::info!(%peer, "authentication failed (unknown user)"),
                    }
                    (state.auth.challenge(), Default::default())
                }
            }
        }
    }
}

/// Most of an unread request body that is read and thrown away after an early answer
/// (401, 404, a 4xx before the body was needed), so that an HTTP/1.1 connection stays
/// usable for the client's next request, as Go's server and nginx do. A longer body
/// (or one that does not arrive within [`DISCARD_TIME`]) is not worth waiting for:
/// the answer says `Connection: close` and the connection ends cleanly after it.
const DISCARD_LIMIT: u64 = 256 << 10;
const DISCARD_TIME: std::time::Duration = std::time::Duration::from_secs(1);

/// Where a request body that the answer did not read to its end comes back to.
#[derive(Default, Clone)]
struct Leftover(Arc<std::sync::Mutex<Option<(Body, bool)>>>);

impl Leftover {
    fn wrap<B>(&self, inner: B) -> Body
    where
        B: http_body::Body<Data = bytes::Bytes> + Send + Unpin + 'static,
        B::Error: Into<body::BoxError>,
    {
        body::boxed(Reclaim {
            inner: Some(inner),
            slot: self.clone(),
            polled: false,
            ended: false,
        })
    }

    fn take(&self) -> Option<(Body, bool)> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

/// A request body that, when dropped before its end, hands the rest back to its
/// [`Leftover`] (with whether anyone had started reading it).
struct Reclaim<B>
where
    B: http_body::Body<Data = bytes::Bytes> + Send + Unpin + 'static,
    B::Error: Into<body::BoxError>,
{
    inner: Option<B>,
    slot: Leftover,
    polled: bool,
    ended: bool,
}

impl<B> http_body::Body for Reclaim<B>
where
    B: http_body::Body<Data = bytes::Bytes> + Send + Unpin + 'static,
    B::Error: Into<body::BoxError>,
{
    type Data = bytes::Bytes;
    type Error = body::BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, body::BoxError>>> {
        let this = &mut *self;
        this.polled = true;
        let Some(inner) = this.inner.as_mut() else {
            return std::task::Poll::Ready(None);
        };
        let r = std::pin::Pin::new(inner).poll_frame(cx);
        if let std::task::Poll::Ready(None | Some(Err(_))) = r {
            this.ended = true;
        }
        r.map(|f| f.map(|f| f.map_err(Into::into)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(|b| b.is_end_stream())
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner
            .as_ref()
            .map(|b| b.size_hint())
            .unwrap_or_default()
    }
}

impl<B> Drop for Reclaim<B>
where
    B: http_body::Body<Data = bytes::Bytes> + Send + Unpin + 'static,
    B::Error: Into<body::BoxError>,
{
    fn drop(&mut self) {
        if self.ended {
            return;
        }
        if let Some(b) = self.inner.take() {
            if !b.is_end_stream() {
                *self.slot.0.lock().unwrap_or_else(|p| p.into_inner()) =
                    Some((body::boxed(b), self.polled));
            }
        }
    }
}

/// nginx's status for a request whose client went away before the answer.
const CLIENT_CLOSED_REQUEST: u16 = 499;

/// The access-log line of a request dropped before it had a response (the client reset
/// the stream or closed the connection, e.g. while its password was checked): without
/// this, such requests left no trace. Disarmed by taking `entry` once a response exists;
/// from then on the response body's drop writes the line.
struct Unanswered {
    entry: Option<crate::access::Entry>,
    started: Instant,
    bytes_in: Arc<AtomicU64>,
    format: crate::access::Format,
}

impl Drop for Unanswered {
    fn drop(&mut self) {
        if let Some(mut e) = self.entry.take() {
            e.duration = self.started.elapsed();
            e.bytes_in = self.bytes_in.load(Ordering::Relaxed);
            record(&e, self.format);
        }
    }
}

/// HTTP/1: an answer that left the request body unread would otherwise make hyper
/// close the connection after a response that promised keep-alive, and a client's
/// next request on it (the authenticated retry after a 401) dies with EOF.
async fn keep_connection_usable(
    leftover: &Leftover,
    expects_continue: bool,
    resp: &mut Response<Body>,
) {
    let Some((mut rest, polled)) = leftover.take() else {
        return;
    };
    // A client waiting for "100 Continue" has not sent its body: reading now would
    // invite it. Decline it and close instead.
    let drained = if expects_continue && !polled {
        false
    } else {
        let mut seen = 0u64;
        tokio::time::timeout(DISCARD_TIME, async {
            while let Some(frame) = http_body_util::BodyExt::frame(&mut rest).await {
                match frame {
                    Ok(f) => {
                        seen += f.data_ref().map_or(0, |d| d.len() as u64);
                        if seen > DISCARD_LIMIT {
                            return false;
                        }
                    }
                    Err(_) => return false,
                }
            }
            true
        })
        .await
        .unwrap_or(false)
    };
    if !drained {
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
}

/// The end of a request: metrics and the access log line.
fn record(e: &crate::access::Entry, format: crate::access::Format) {
    let m = crate::metrics::get();
    let route = crate::registry::route_class(&e.path);
    m.requests
        .get_or_create(&crate::metrics::RequestLabels {
            method: crate::metrics::method_label(&e.method),
            route,
            status: e.status,
        })
        .inc();
    m.latency
        .get_or_create(&crate::metrics::RouteLabels { route })
        .observe(e.duration.as_secs_f64());
    m.bytes_in.inc_by(e.bytes_in);
    m.bytes_out.inc_by(e.bytes_out);
    crate::access::emit(e, format);
}

/// `/readyz`: can the backend take requests? Upstreams: at least one answers a TCP
/// connect within a second. Bundled registry: its storage says it is ready.
pub async fn backend_ready(state: &State) -> Result<(), String> {
    match &state.backend {
        Backend::Upstream(pool) => {
            for peer in pool.peers() {
                let host = peer
                    .base
                    .host()
                    .unwrap_or("")
                    .trim_matches(|c| c == '[' || c == ']')
                    .to_string();
                let port =
                    peer.base
                        .port_u16()
                        .unwrap_or(if peer.base.scheme_str() == Some("https") {
                            443
                        } else {
                            80
                        });
                let connect = tokio::net::TcpStream::connect((host.as_str(), port));
                if let Ok(Ok(_)) =
                    tokio::time::timeout(std::time::Duration::from_secs(1), connect).await
                {
                    return Ok(());
                }
            }
            Err("no upstream accepts connections".into())
        }
        Backend::Registry(r) => {
            use crate::registry::storage::Storage as _;
            r.storage().ready().await
        }
    }
}

/// Phase: the nginx-recipe user-agent rule (404, before authentication, as nginx's
/// rewrite phase runs before its access phase).
pub fn client_rule<B>(config: &Config, req: &Request<B>) -> Option<Response<Body>> {
    if !config.clients.reject_old_docker {
        return None;
    }
    let ua = req
        .headers()
        .get(header::USER_AGENT)
        .map(HeaderValue::as_bytes)
        .unwrap_or_default();
    clients::is_old_docker(ua).then(|| {
        oci_error(
            StatusCode::NOT_FOUND,
            Code::NotFound,
            "client not supported: docker 1.6 or later is required",
        )
    })
}

/// nginx's answer to `/v2` for a `location /v2/` with proxy_pass: 301 to the same
/// URI with the slash, absolute, built from the client's Host.
pub fn redirect_to_v2<B>(req: &Request<B>) -> Response<Body> {
    let host = clients::host(req.headers(), req.uri());
    let query = req
        .uri()
        .query()
        .map(|q| format!("?{q}"))
        .unwrap_or_default();
    let location = match host {
        Some(h) => format!("https://{h}/v2/{query}"),
        None => format!("/v2/{query}"),
    };
    let mut r = Response::new(body::empty());
    *r.status_mut() = StatusCode::MOVED_PERMANENTLY;
    if let Ok(v) = HeaderValue::from_str(&location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r.headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    r
}

async fn dispatch(
    state: &State,
    req: Request<Body>,
    peer: SocketAddr,
    repository: Option<&str>,
) -> (Response<Body>, crate::upstream::forward::Outcome) {
    match &state.backend {
        Backend::Upstream(pool) => pool.forward(req, peer, repository).await,
        Backend::Registry(r) => (r.handle(req).await, Default::default()),
    }
}

/// Phase: headers every answer leaves with. The API-version header is added to /v2
/// answers that lack it and never duplicated (the recipe's `map` trick).
pub fn finish_headers(route: Route, method: &Method, resp: &mut Response<Body>) {
    let h = resp.headers_mut();
    if matches!(route, Route::V2 | Route::V2NoSlash) && !h.contains_key(API_VERSION_HEADER) {
        h.insert(API_VERSION_HEADER, API_VERSION);
    }
    if !h.contains_key("x-content-type-options") {
        h.insert(
            "x-content-type-options",
            HeaderValue::from_static("nosniff"),
        );
    }
    if method == Method::HEAD {
        // Keep Content-Length (it describes the GET), send no body on either protocol.
        let size = http_body::Body::size_hint(resp.body()).exact();
        if let (Some(n), false) = (size, resp.headers().contains_key(header::CONTENT_LENGTH)) {
            resp.headers_mut()
                .insert(header::CONTENT_LENGTH, HeaderValue::from(n));
        }
        *resp.body_mut() = body::empty();
    }
}
