//! The request phases, in order: route → client rule → authenticate ([`admit`]) →
//! backend → finish headers → log. Each phase is a plain function that may answer
//! early, so each is testable without sockets (CONVENTIONS.md §4; tests below).

pub mod authorize;
pub mod bearer;

use crate::auth::{Authenticator, Decision};
use crate::body::{self, Body, Idle, Watched};
use crate::clients::{self, Route};
use crate::config::Config;
use crate::error::{oci_error, Code, API_VERSION, API_VERSION_HEADER};
use crate::oci::Call;
use crate::state::{Backend, Shared, State};
use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Uri};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Handle one request from `peer`, on the configuration current when it arrives (a
/// reload applies to the next request, even on a kept-alive connection; this one
/// finishes on the state it began with).
pub async fn handle<B>(shared: Shared, peer: SocketAddr, req: Request<B>) -> Response<Body>
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
    // The API request understood once: the repository for the log and the balancer,
    // the route class for metrics, the typed endpoint for the bundled registry.
    let call = (route == Route::V2).then(|| Call::parse(&method, &path, req.uri().query()));
    let class = match route {
        Route::Ping | Route::V2NoSlash => "ping",
        Route::Other => "other",
        Route::V2 => call.as_ref().map_or("other", Call::class),
    };
    let repository = call
        .as_ref()
        .and_then(|c| c.repository.as_ref())
        .map(|r| r.to_string());
    let version = req.version();
    let expects_continue = req
        .headers()
        .get(header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    let mut unanswered = Unanswered {
        entry: Some(crate::access_log::Entry {
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
        class,
    };
    let (mut resp, attempts) = answer(&state, req, peer, route, call, &mut unanswered).await;
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
    entry.upstream = attempts.upstream;
    entry.retries = attempts.retries;
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
                    record(&e, class, format);
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
    call: Option<Call>,
    unanswered: &mut Unanswered,
) -> (Response<Body>, crate::upstream::forward::Attempts) {
    // Anonymous callers are let in where a rule grants them something, but `/v2/`
    // still challenges them: clients decide there whether to send the credentials
    // they have (docker never sends any without a challenge).
    let ping = matches!(
        &call,
        Some(Call {
            endpoint: Ok(crate::oci::Endpoint::Base),
            ..
        })
    );
    // With anonymous callers in the policy, 401s challenge for a token (see `bearer`).
    let tokens_on = matches!(&state.config.access, Some(p) if p.anonymous());
    if tokens_on && route == Route::Other && req.uri().path() == bearer::PATH {
        return (
            bearer::endpoint(state, req.headers(), peer).await,
            Default::default(),
        );
    }
    let anonymous = tokens_on && !ping && authorize::without_credentials(req.headers());
    let presented = match tokens_on && route == Route::V2 {
        true => bearer::read(state, req.headers()),
        false => None,
    };
    let admission = if route == Route::V2 && (anonymous || presented.is_some()) {
        // The client rule first, as in `admit`; then the token, or nobody.
        match (client_rule(&state.config, req.headers()), presented) {
            (Some(r), _) => Admission::Answer(r),
            (None, None) => Admission::Dispatch { user: None },
            (None, Some(Ok(user))) => Admission::Dispatch { user },
            (None, Some(Err(()))) => Admission::Answer(state.auth.challenge()),
        }
    } else {
        admit(
            &state.config,
            &state.auth,
            route,
            req.headers(),
            req.uri(),
            peer,
        )
        .await
    };
    let refused = |mut r: Response<Body>| {
        if tokens_on {
            bearer::rechallenge(&mut r, req.headers(), req.uri());
        }
        (r, Default::default())
    };
    let user = match admission {
        Admission::Answer(r) => return refused(r),
        Admission::Dispatch { user } => user,
    };
    if let (Some(policy), Some(c)) = (state.config.access.as_deref(), &call) {
        if let Err(r) = authorize::authorize(policy, &state.auth, user.as_deref(), c, req.method())
        {
            return refused(r);
        }
    }
    if let (Some(u), Some(e)) = (&user, &mut unanswered.entry) {
        e.user = Some(u.clone());
    }
    // Only a listing needs to know the caller from here on.
    let viewer = state
        .config
        .access
        .clone()
        .map(|policy| authorize::Viewer { policy, user });
    dispatch(state, req, peer, call, viewer.as_ref()).await
}

/// What the phases before the backend decided about a request.
#[derive(Debug)]
pub enum Admission {
    /// Hand it to the backend; `user` when it authenticated (`/_ping` and requests the
    /// access policy lets in anonymously do not).
    Dispatch { user: Option<String> },
    /// Answered early (404, the redirect to `/v2/`, 401 with the challenge).
    Answer(Response<Body>),
}

/// Phases: route, client rule, authenticate, in nginx's order (the recipe's rewrite
/// phase, then its access phase). Reads only the request head. (Authorization comes
/// after, in [`authorize`], on the parsed call.)
pub async fn admit(
    config: &Config,
    auth: &Authenticator,
    route: Route,
    headers: &HeaderMap,
    uri: &Uri,
    peer: SocketAddr,
) -> Admission {
    match route {
        Route::Other => Admission::Answer(oci_error(
            StatusCode::NOT_FOUND,
            Code::NotFound,
            "not found",
        )),
        Route::V2NoSlash => Admission::Answer(redirect_to_v2(headers, uri)),
        // The recipe's `location = /_ping` has no auth_basic: it answers anyone.
        Route::Ping => Admission::Dispatch { user: None },
        Route::V2 => {
            if let Some(r) = client_rule(config, headers) {
                return Admission::Answer(r);
            }
            match authenticate(auth, headers, peer).await {
                Ok(user) => Admission::Dispatch { user: Some(user) },
                Err(r) => Admission::Answer(r),
            }
        }
    }
}

/// Phase: Basic authentication against the htpasswd file. The user, or the 401 that
/// asks for credentials, or the 429 of a throttled login (no log line per try: the
/// throttle writes one summary per interval).
pub async fn authenticate(
    auth: &Authenticator,
    headers: &HeaderMap,
    peer: SocketAddr,
) -> Result<String, Response<Body>> {
    let m = crate::metrics::get();
    match auth
        .authenticate(headers.get(header::AUTHORIZATION), peer.ip())
        .await
    {
        Decision::Allowed(u) => {
            m.auth_successes.inc();
            Ok(u)
        }
        Decision::Missing => Err(auth.challenge()),
        Decision::Refused(u) => {
            m.auth_failures.inc();
            match u {
                Some(u) => tracing::info!(
                    %peer, user = %crate::access_log::Escaped(&u), "authentication failed"
                ),
                None => tracing::info!(%peer, "authentication failed (unknown user)"),
            }
            Err(auth.challenge())
        }
        Decision::Throttled { retry_after } => Err(auth.throttled(retry_after)),
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
    entry: Option<crate::access_log::Entry>,
    started: Instant,
    bytes_in: Arc<AtomicU64>,
    format: crate::access_log::Format,
    /// The metrics route class.
    class: &'static str,
}

impl Drop for Unanswered {
    fn drop(&mut self) {
        if let Some(mut e) = self.entry.take() {
            e.duration = self.started.elapsed();
            e.bytes_in = self.bytes_in.load(Ordering::Relaxed);
            record(&e, self.class, self.format);
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
fn record(e: &crate::access_log::Entry, route: &'static str, format: crate::access_log::Format) {
    let m = crate::metrics::get();
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
    crate::access_log::emit(e, format);
}

/// Phase: the nginx-recipe user-agent rule (404, before authentication, as nginx's
/// rewrite phase runs before its access phase).
pub fn client_rule(config: &Config, headers: &HeaderMap) -> Option<Response<Body>> {
    if !config.clients.reject_old_docker {
        return None;
    }
    let ua = headers
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
pub fn redirect_to_v2(headers: &HeaderMap, uri: &Uri) -> Response<Body> {
    let host = clients::host(headers, uri);
    let query = uri.query().map(|q| format!("?{q}")).unwrap_or_default();
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
    call: Option<Call>,
    viewer: Option<&authorize::Viewer>,
) -> (Response<Body>, crate::upstream::forward::Attempts) {
    let listing = call
        .as_ref()
        .is_some_and(|c| matches!(c.endpoint, Ok(crate::oci::Endpoint::Catalog(_))));
    match &state.backend {
        Backend::Upstream(pool) => {
            let (resp, attempts) = {
                let repository = call.as_ref().and_then(|c| c.repository.as_deref());
                pool.forward(req, peer, repository).await
            };
            if !listing || viewer.is_none() {
                return (resp, attempts);
            }
            let read = authorize::read_catalog(resp).await;
            match (read, viewer) {
                (Ok((parts, list)), Some(v)) => (authorize::cut(parts, list, v), attempts),
                (Ok(_), None) => unreachable!("checked above"),
                (Err(r), _) => (r, attempts),
            }
        }
        Backend::Registry(r) => match call {
            Some(call) => {
                let visible = viewer.map(|v| v as &dyn crate::registry::store::Visibility);
                (r.handle(call, req, visible).await, Default::default())
            }
            // `/_ping` and `/v1/_ping`: the bundled registry has no v1 API.
            None => (
                oci_error(StatusCode::NOT_FOUND, Code::NotFound, "not found"),
                Default::default(),
            ),
        },
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

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use std::path::Path;

    const PEER: SocketAddr =
        SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 40000);

    /// A configuration in front of one upstream; `clients` is the `[clients]` table.
    fn config(dir: &Path, clients: &str) -> Config {
        let text = format!(
            "[tls]\ncertificate = \"server.crt\"\nkey = \"server.key\"\n\n[auth]\nhtpasswd = \"htpasswd\"\nrealm = \"Phase Realm\"\n\n[clients]\n{clients}\n\n[upstream]\n[[upstream.server]]\nurl = \"http://127.0.0.1:5000\"\n"
        );
        Config::parse(&dir.join("proxy.toml"), &text).unwrap_or_else(|e| panic!("{e}"))
    }

    /// An authenticator over a file with user `alice`, password `s3cret`.
    fn authenticator(dir: &Path) -> Authenticator {
        let hash = crate::auth::htpasswd::hash_bcrypt("s3cret", 4).expect("bcrypt");
        let path = dir.join("htpasswd");
        std::fs::write(&path, format!("alice:{hash}\n")).expect("write htpasswd");
        Authenticator::load(
            &path,
            "Phase Realm",
            Arc::new(crate::auth::throttle::Throttle::new(None)),
        )
        .expect("load htpasswd")
    }

    fn request(path: &str, user_agent: &str, credentials: Option<(&str, &str)>) -> Request<()> {
        let mut b = Request::get(path).header(header::USER_AGENT, user_agent);
        if let Some((u, p)) = credentials {
            let token = base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"));
            b = b.header(header::AUTHORIZATION, format!("Basic {token}"));
        }
        b.body(()).expect("request")
    }

    async fn admitted(config: &Config, auth: &Authenticator, req: &Request<()>) -> Admission {
        let route = clients::route(req.uri().path());
        admit(config, auth, route, req.headers(), req.uri(), PEER).await
    }

    const MODERN: &str = "docker/27.0.3 go/go1.21.12 git-commit/c4c9bbe os/linux arch/amd64";
    const OLD: &str =
        "docker/1.5.0 go/go1.4.1 git-commit/a8a31ef kernel/3.13.0 os/linux arch/amd64";

    #[tokio::test]
    async fn old_docker_gets_404_before_authentication() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (config, auth) = (config(dir.path(), ""), authenticator(dir.path()));
        // Without credentials, so that reaching authentication would answer 401.
        let Admission::Answer(r) = admitted(&config, &auth, &request("/v2/", OLD, None)).await
        else {
            panic!("docker 1.5 was let through");
        };
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        assert!(!r.headers().contains_key(header::WWW_AUTHENTICATE));
        // Even with good credentials the rule answers first.
        let good = request("/v2/", OLD, Some(("alice", "s3cret")));
        let Admission::Answer(r) = admitted(&config, &auth, &good).await else {
            panic!("docker 1.5 with credentials was let through");
        };
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn a_throttled_login_is_answered_429_with_retry_after_without_a_check() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = config(dir.path(), "");
        let hash = crate::auth::htpasswd::hash_bcrypt("s3cret", 4).expect("bcrypt");
        let path = dir.path().join("htpasswd");
        std::fs::write(&path, format!("alice:{hash}\n")).expect("write htpasswd");
        let limits = crate::config::Throttle {
            burst: 1,
            refill: std::time::Duration::from_secs(90),
        };
        let throttle = Arc::new(crate::auth::throttle::Throttle::new(Some(limits)));
        let auth = Authenticator::load(&path, "Phase Realm", throttle).expect("load");
        let wrong = request("/v2/", MODERN, Some(("alice", "wrong")));
        let Admission::Answer(r) = admitted(&config, &auth, &wrong).await else {
            panic!("a wrong password was let through");
        };
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        let hashes = auth.hashes();
        let Admission::Answer(r) = admitted(&config, &auth, &wrong).await else {
            panic!("a wrong password was let through");
        };
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(r.headers()[header::RETRY_AFTER], "90");
        assert_eq!(r.headers()[API_VERSION_HEADER], API_VERSION);
        assert!(!r.headers().contains_key(header::WWW_AUTHENTICATE));
        assert_eq!(auth.hashes(), hashes, "no check once throttled");
    }

    #[tokio::test]
    async fn the_client_rule_can_be_switched_off() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = config(dir.path(), "reject_old_docker = false");
        let auth = authenticator(dir.path());
        let good = request("/v2/", OLD, Some(("alice", "s3cret")));
        assert!(matches!(
            admitted(&config, &auth, &good).await,
            Admission::Dispatch { user: Some(u) } if u == "alice"
        ));
    }

    #[tokio::test]
    async fn v2_without_credentials_is_challenged_with_the_api_version() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (config, auth) = (config(dir.path(), ""), authenticator(dir.path()));
        let req = request("/v2/", MODERN, None);
        let Admission::Answer(mut r) = admitted(&config, &auth, &req).await else {
            panic!("/v2/ without credentials was let through");
        };
        finish_headers(Route::V2, req.method(), &mut r);
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        let challenge = r
            .headers()
            .get(header::WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        assert!(
            challenge.starts_with("Basic ") && challenge.contains("Phase Realm"),
            "{challenge:?}"
        );
        assert_eq!(
            r.headers().get(API_VERSION_HEADER),
            Some(&HeaderValue::from_static("registry/2.0"))
        );
    }

    #[tokio::test]
    async fn credentials_decide_between_dispatch_and_401() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (config, auth) = (config(dir.path(), ""), authenticator(dir.path()));
        let good = request(
            "/v2/library/alpine/tags/list",
            MODERN,
            Some(("alice", "s3cret")),
        );
        assert!(matches!(
            admitted(&config, &auth, &good).await,
            Admission::Dispatch { user: Some(u) } if u == "alice"
        ));
        let bad = request("/v2/", MODERN, Some(("alice", "wrong")));
        let Admission::Answer(r) = admitted(&config, &auth, &bad).await else {
            panic!("a wrong password was let through");
        };
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert!(r.headers().contains_key(header::WWW_AUTHENTICATE));
    }

    #[tokio::test]
    async fn ping_bypasses_authentication_and_the_client_rule() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (config, auth) = (config(dir.path(), ""), authenticator(dir.path()));
        for ua in [MODERN, OLD] {
            let req = request("/_ping", ua, None);
            assert!(
                matches!(
                    admitted(&config, &auth, &req).await,
                    Admission::Dispatch { user: None }
                ),
                "/_ping from {ua} was not dispatched"
            );
        }
    }

    #[tokio::test]
    async fn v2_without_slash_is_redirected_and_other_paths_are_404() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (config, auth) = (config(dir.path(), ""), authenticator(dir.path()));
        let mut req = request("/v2?x=1", MODERN, None);
        req.headers_mut()
            .insert(header::HOST, HeaderValue::from_static("reg.example:5443"));
        let Admission::Answer(r) = admitted(&config, &auth, &req).await else {
            panic!("/v2 was dispatched");
        };
        assert_eq!(r.status(), StatusCode::MOVED_PERMANENTLY);
        assert_eq!(
            r.headers().get(header::LOCATION),
            Some(&HeaderValue::from_static(
                "https://reg.example:5443/v2/?x=1"
            ))
        );
        let Admission::Answer(r) = admitted(&config, &auth, &request("/v1/", MODERN, None)).await
        else {
            panic!("/v1/ was dispatched");
        };
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
    }

    #[test]
    fn finish_headers_adds_the_api_version_once_and_keeps_an_upstreams() {
        let mut bare = Response::new(body::empty());
        finish_headers(Route::V2, &Method::GET, &mut bare);
        let values: Vec<_> = bare.headers().get_all(API_VERSION_HEADER).iter().collect();
        assert_eq!(values, [&HeaderValue::from_static("registry/2.0")]);

        let mut upstream = Response::new(body::empty());
        upstream
            .headers_mut()
            .insert(API_VERSION_HEADER, HeaderValue::from_static("registry/2.1"));
        finish_headers(Route::V2, &Method::GET, &mut upstream);
        let values: Vec<_> = upstream
            .headers()
            .get_all(API_VERSION_HEADER)
            .iter()
            .collect();
        assert_eq!(values, [&HeaderValue::from_static("registry/2.1")]);

        // Not a registry answer: no API version.
        let mut other = Response::new(body::empty());
        finish_headers(Route::Other, &Method::GET, &mut other);
        assert!(!other.headers().contains_key(API_VERSION_HEADER));
    }

    #[test]
    fn finish_headers_adds_nosniff_unless_present() {
        let mut r = Response::new(body::empty());
        finish_headers(Route::Ping, &Method::GET, &mut r);
        assert_eq!(
            r.headers().get("x-content-type-options"),
            Some(&HeaderValue::from_static("nosniff"))
        );
        let mut kept = Response::new(body::empty());
        kept.headers_mut()
            .insert("x-content-type-options", HeaderValue::from_static("other"));
        finish_headers(Route::V2, &Method::GET, &mut kept);
        let values: Vec<_> = kept
            .headers()
            .get_all("x-content-type-options")
            .iter()
            .collect();
        assert_eq!(values, [&HeaderValue::from_static("other")]);
    }

    #[test]
    fn finish_headers_empties_a_head_answer_and_keeps_its_length() {
        let mut r = Response::new(body::full("12345"));
        finish_headers(Route::V2, &Method::HEAD, &mut r);
        assert_eq!(
            r.headers().get(header::CONTENT_LENGTH),
            Some(&HeaderValue::from(5u64))
        );
        assert_eq!(http_body::Body::size_hint(r.body()).exact(), Some(0));
    }
}
