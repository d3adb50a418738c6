//! Forwarding one request: the headers the recipe's nginx set (`Host` unchanged,
//! `X-Forwarded-For` appended, `X-Real-IP`, `X-Forwarded-Proto`), hop-by-hop headers
//! dropped both ways, bodies streamed both ways with an idle timeout, and failover to
//! the next peer while nothing has been sent.

use super::balance::RequestKey;
use super::{Peer, Pool};
use crate::body::{self, Body, Idle, Watched};
use crate::error::{oci_error, Code};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::request::Parts;
use http::{Request, Response, StatusCode, Uri, Version};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The upstreams one forwarded request tried (which answered, which failed first),
/// for the access log.
#[derive(Debug, Default, Clone)]
pub struct Attempts {
    /// The peer that answered (or the last one tried).
    pub upstream: Option<String>,
    /// Failed attempts before the answer, with their reasons.
    pub retries: Vec<String>,
}

/// Headers that describe one connection, not the message (RFC 9110 §7.6.1), plus the
/// ones nginx never passes on.
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

fn strip_hop_by_hop(h: &mut HeaderMap) {
    // Names listed in Connection are hop-by-hop too.
    let listed: Vec<HeaderName> = h
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for n in listed {
        h.remove(n);
    }
    for n in HOP_BY_HOP {
        h.remove(n);
    }
}

/// The request body, shared by the attempts of one request: an attempt takes it on
/// its first poll. Until then a failed attempt (connect refused, say) leaves it in
/// place for the next peer; once taken, bytes may have left and no retry is allowed.
/// It also records how the client's side of the body went, so that a client's fault
/// (malformed chunking, a reset, a stall) is never blamed on the upstream.
struct Slot {
    body: std::sync::Mutex<Option<Body>>,
    taken: AtomicBool,
    /// Waiting for the client's next body bytes (the upstream is not the one stalling).
    waiting_on_client: AtomicBool,
    /// When the upstream last took (or asked for) body bytes, for the response-head
    /// timer; milliseconds since `started`.
    last_poll_ms: AtomicU64,
    started: Instant,
    client_fault: std::sync::Mutex<Option<ClientFault>>,
}

/// The client's side of a request body failed.
#[derive(Debug, Clone)]
struct ClientFault {
    timed_out: bool,
    why: String,
}

impl Slot {
    fn touch(&self) {
        let ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_poll_ms.store(ms, Ordering::Relaxed);
    }

    fn last_poll(&self) -> Instant {
        self.started + Duration::from_millis(self.last_poll_ms.load(Ordering::Relaxed))
    }

    fn client_fault(&self) -> Option<ClientFault> {
        self.client_fault
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// The body one attempt sends.
struct AttemptBody {
    slot: Arc<Slot>,
    inner: Option<Body>,
    end: bool,
    hint: http_body::SizeHint,
}

impl http_body::Body for AttemptBody {
    type Data = bytes::Bytes;
    type Error = body::BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, body::BoxError>>> {
        let this = &mut *self;
        let slot = &this.slot;
        slot.touch();
        if this.inner.is_none() {
            let taken = slot.body.lock().unwrap_or_else(|p| p.into_inner()).take();
            slot.taken.store(true, Ordering::SeqCst);
            match taken {
                Some(b) => this.inner = Some(b),
                None => return std::task::Poll::Ready(None),
            }
        }
        let Some(b) = this.inner.as_mut() else {
            return std::task::Poll::Ready(None);
        };
        let r = std::pin::Pin::new(b).poll_frame(cx);
        slot.waiting_on_client
            .store(r.is_pending(), Ordering::Relaxed);
        if let std::task::Poll::Ready(Some(Err(e))) = &r {
            *slot.client_fault.lock().unwrap_or_else(|p| p.into_inner()) = Some(ClientFault {
                timed_out: e.is::<body::IdleTimeout>(),
                why: e.to_string(),
            });
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.end
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.hint
    }
}

/// Methods nginx never passes to a second server once the request was sent
/// (`proxy_next_upstream ... non_idempotent` off by default).
fn idempotent(m: &http::Method) -> bool {
    !matches!(m.as_str(), "POST" | "PATCH" | "LOCK")
}

/// Both `Content-Length` and `Transfer-Encoding` on a response: a sign of smuggling or
/// a broken upstream (RFC 9112 §6.3); its length cannot be trusted either way.
fn ambiguous_length(h: &HeaderMap) -> bool {
    h.contains_key(header::CONTENT_LENGTH) && h.contains_key(header::TRANSFER_ENCODING)
}

impl Pool {
    /// Send `req` to the group; `client` is the client's address. Tries peers in the
    /// balancer's order: on a connect error, a timeout or an invalid response head the
    /// next peer gets the request, as long as no request body byte has gone out and,
    /// for POST and PATCH, the request was never sent (nginx). A fault of the client's
    /// (its body broke off, was malformed or stalled) ends the request with 400/408
    /// and counts against no upstream. `repository` is the one the path names, for
    /// `repository_hash`.
    pub async fn forward(
        &self,
        req: Request<Body>,
        client: SocketAddr,
        repository: Option<&str>,
    ) -> (Response<Body>, Attempts) {
        let (parts, body) = req.into_parts();
        let end = http_body::Body::is_end_stream(&body);
        let hint = http_body::Body::size_hint(&body);
        let slot = Arc::new(Slot {
            body: std::sync::Mutex::new(Some(body)),
            taken: AtomicBool::new(false),
            waiting_on_client: AtomicBool::new(false),
            last_poll_ms: AtomicU64::new(0),
            started: Instant::now(),
            client_fault: std::sync::Mutex::new(None),
        });
        let headers = upstream_headers(&parts, client);
        let key = RequestKey {
            client: client.ip(),
            repository,
        };
        let mut attempts = Attempts::default();
        let mut selection = self.balancer.select(key);
        let mut last_status = StatusCode::BAD_GATEWAY;
        while let Some(i) = selection.next_at(Instant::now()) {
            let peer = &self.peers()[i];
            attempts.upstream = Some(peer.label.clone());
            peer.selections.inc();
            let attempt_body = body::boxed(AttemptBody {
                slot: slot.clone(),
                inner: None,
                end,
                hint,
            });
            let upstream_req = build_request(&parts, &headers, peer, attempt_body);
            slot.touch();
            let attempt = self
                .await_head(&slot, self.client.request(upstream_req))
                .await;
            let mut connect_failed = false;
            let why = match attempt {
                Some(Ok(resp)) if ambiguous_length(resp.headers()) => {
                    last_status = StatusCode::BAD_GATEWAY;
                    "invalid response: both Content-Length and Transfer-Encoding".to_string()
                }
                Some(Ok(resp)) => {
                    self.balancer.report(i, false, Instant::now());
                    let (mut rparts, rbody) = resp.into_parts();
                    strip_hop_by_hop(&mut rparts.headers);
                    rparts.version = Version::default();
                    // The peer's connection count drops when the transfer ends, so
                    // least_conn and max_conns count whole transfers, not just heads.
                    let balancer = self.balancer.clone();
                    let rbody = body::boxed(
                        Watched::new(Idle::new(rbody, self.read_timeout))
                            .on_drop(move || balancer.release(i)),
                    );
                    return (Response::from_parts(rparts, rbody), attempts);
                }
                _ if slot.client_fault().is_some() => {
                    return (self.client_failed(i, &slot), attempts);
                }
                Some(Err(e)) => {
                    last_status = StatusCode::BAD_GATEWAY;
                    connect_failed = e.is_connect();
                    describe(&e)
                }
                None => {
                    last_status = StatusCode::GATEWAY_TIMEOUT;
                    format!("no response head within {:?}", self.read_timeout)
                }
            };
            self.balancer.finish(i, true, Instant::now());
            peer.failures.inc();
            tracing::warn!(upstream = %peer.label, reason = %why, "upstream attempt failed");
            attempts.retries.push(format!("{}: {why}", peer.label));
            if slot.taken.load(Ordering::SeqCst) {
                // Body bytes may have gone to this peer: replaying is not safe.
                break;
            }
            if !connect_failed && !idempotent(&parts.method) {
                // The request may have been acted on: nginx does not send a POST or
                // PATCH to a second server once it went to one.
                break;
            }
        }
        let message = if attempts.retries.is_empty() {
            "no upstream registry is available".to_string()
        } else {
            format!(
                "upstream registry unavailable ({})",
                attempts.retries.join("; ")
            )
        };
        (
            oci_error(last_status, Code::Unavailable, &message),
            attempts,
        )
    }

    /// The client's body failed: nothing to hold against peer `i`; 408 for a stall,
    /// 400 for anything else (malformed chunking, a reset).
    fn client_failed(&self, i: usize, slot: &Slot) -> Response<Body> {
        self.balancer.finish(i, false, Instant::now());
        let fault = slot.client_fault().unwrap_or(ClientFault {
            timed_out: false,
            why: "broken off".into(),
        });
        tracing::info!(upstream = %self.peers()[i].label, reason = %fault.why, "request body failed on the client's side");
        let (status, code) = if fault.timed_out {
            (StatusCode::REQUEST_TIMEOUT, "REQUEST_TIMEOUT")
        } else {
            (StatusCode::BAD_REQUEST, "BAD_REQUEST")
        };
        crate::error::oci(status, code, &format!("request body: {}", fault.why))
    }

    /// Wait for the response head. The `read_timeout` runs from the later of the
    /// attempt's start and the upstream's last taking of body bytes, and never while
    /// we wait for the client's bytes (that is the client body's own idle timer): a
    /// long upload is not a slow upstream, and a stalled client is not either.
    async fn await_head<F, T>(&self, slot: &Slot, fut: F) -> Option<T>
    where
        F: std::future::Future<Output = T>,
    {
        tokio::pin!(fut);
        let mut due = slot.last_poll() + self.read_timeout;
        loop {
            tokio::select! {
                r = &mut fut => return Some(r),
                _ = tokio::time::sleep_until(due.into()) => {
                    let now = Instant::now();
                    if slot.waiting_on_client.load(Ordering::Relaxed) {
                        // The client body's idle timer ends this if the client stalls.
                        due = now + self.read_timeout;
                        continue;
                    }
                    due = slot.last_poll() + self.read_timeout;
                    if due > now {
                        continue;
                    }
                    return None;
                }
            }
        }
    }
}

/// Put an error chain in a few words without leaking anything but the cause.
pub fn describe(e: &hyper_util::client::legacy::Error) -> String {
    use std::error::Error as _;
    let mut s = if e.is_connect() {
        "connect failed".to_string()
    } else {
        "request failed".to_string()
    };
    let mut src = e.source();
    while let Some(cause) = src {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        src = cause.source();
    }
    s
}

/// The headers every attempt sends, computed once per request.
fn upstream_headers(parts: &Parts, client: SocketAddr) -> HeaderMap {
    let mut h = parts.headers.clone();
    strip_hop_by_hop(&mut h);
    // hyper already answered `Expect: 100-continue` to the client when we read the body.
    h.remove(header::EXPECT);
    // `proxy_set_header Host $http_host`: the client's Host, port included, so the
    // registry builds absolute Location URLs that point back at us. HTTP/2 clients
    // send it as :authority.
    if let Some(v) = crate::clients::host(&parts.headers, &parts.uri)
        .and_then(|host| HeaderValue::from_str(host).ok())
    {
        h.insert(header::HOST, v);
    }
    let ip = client.ip().to_canonical().to_string();
    // `$proxy_add_x_forwarded_for`: the incoming list (all headers joined) + our peer.
    let xff: Vec<&str> = parts
        .headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    let xff = if xff.is_empty() {
        ip.clone()
    } else {
        format!("{}, {ip}", xff.join(", "))
    };
    if let Ok(v) = HeaderValue::from_str(&xff) {
        h.insert("x-forwarded-for", v);
    }
    if let Ok(v) = HeaderValue::from_str(&ip) {
        h.insert("x-real-ip", v);
    }
    h.insert("x-forwarded-proto", HeaderValue::from_static("https"));
    h
}

fn build_request(parts: &Parts, headers: &HeaderMap, peer: &Peer, body: Body) -> Request<Body> {
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let mut uri = peer.base.clone().into_parts();
    uri.path_and_query = path.parse().ok();
    let uri = Uri::from_parts(uri).unwrap_or_else(|_| peer.base.clone());
    let mut req = Request::new(body);
    *req.method_mut() = parts.method.clone();
    *req.uri_mut() = uri;
    *req.version_mut() = Version::HTTP_11;
    *req.headers_mut() = headers.clone();
    if !req.headers().contains_key(header::HOST) {
        if let Some(a) = peer.base.authority() {
            if let Ok(v) = HeaderValue::from_str(a.as_str()) {
                req.headers_mut().insert(header::HOST, v);
            }
        }
    }
    req
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_headers_like_nginx() {
        let req = Request::builder()
            .uri("https://reg.example:8443/v2/x/blobs/uploads/")
            .header("x-forwarded-for", "10.0.0.1")
            .header("connection", "keep-alive, x-private")
            .header("x-private", "1")
            .header("authorization", "Basic Zm9vOmJhcg==")
            .body(())
            .unwrap();
        let (parts, ()) = req.into_parts();
        let h = upstream_headers(&parts, "127.0.0.9:4000".parse().unwrap());
        assert_eq!(h["host"], "reg.example:8443");
        assert_eq!(h["x-forwarded-for"], "10.0.0.1, 127.0.0.9");
        assert_eq!(h["x-real-ip"], "127.0.0.9");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert!(!h.contains_key("connection") && !h.contains_key("x-private"));
        assert_eq!(
            h["authorization"], "Basic Zm9vOmJhcg==",
            "passed through as nginx does"
        );
    }

    #[test]
    fn host_header_wins_and_ipv4_mapped_peer_is_plain() {
        let req = Request::builder()
            .uri("/v2/")
            .header("host", "localhost:5443")
            .body(())
            .unwrap();
        let (parts, ()) = req.into_parts();
        let h = upstream_headers(&parts, "[::ffff:127.0.0.1]:1".parse().unwrap());
        assert_eq!(h["host"], "localhost:5443");
        assert_eq!(h["x-forwarded-for"], "127.0.0.1");
        let peer = Peer::new("http://127.0.0.1:5000".parse().unwrap());
        let r = build_request(&parts, &h, &peer, body::empty());
        assert_eq!(r.uri(), "http://127.0.0.1:5000/v2/");
        assert_eq!(r.version(), Version::HTTP_11);
    }
}
