//! Forwarding one request: the headers the recipe's nginx set (`Host` unchanged,
//! `X-Forwarded-For` appended, `X-Real-IP`, `X-Forwarded-Proto`), hop-by-hop headers
//! dropped both ways, bodies streamed both ways with an idle timeout, and failover to
//! the next peer while nothing has been sent.

use super::{Peer, Pool};
use crate::body::{self, Body, Idle};
use crate::error::{oci_error, Code};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::request::Parts;
use http::{Request, Response, StatusCode, Uri, Version};
use http_body::Body as _;
use std::net::SocketAddr;
use std::time::Instant;

/// What the forwarding did, for the access log.
#[derive(Debug, Default, Clone)]
pub struct Outcome {
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

impl Pool {
    /// Send `req` to the group. `peer` is the client's address.
    pub async fn forward(
        &self,
        req: Request<Body>,
        client: SocketAddr,
    ) -> (Response<Body>, Outcome) {
        let (parts, body) = req.into_parts();
        // A request without a body can be replayed on the next peer; one with a body
        // only as long as none of it has been sent, which we cannot know once hyper
        // has it, so it gets exactly one attempt (DESIGN.md: POST/PATCH rule).
        let replayable = body.is_end_stream();
        let mut body = Some(body);
        let headers = upstream_headers(&parts, client);
        let mut outcome = Outcome::default();
        let mut selection = self.balancer.select();
        let mut last_status = StatusCode::BAD_GATEWAY;
        while let Some(i) = selection.next_at(Instant::now()) {
            let peer = &self.peers[i];
            outcome.upstream = Some(peer.label.clone());
            let b = if replayable {
                body::empty()
            } else {
                match body.take() {
                    Some(b) => b,
                    None => break,
                }
            };
            let upstream_req = build_request(&parts, &headers, peer, b);
            let attempt =
                tokio::time::timeout(self.read_timeout, self.client.request(upstream_req)).await;
            match attempt {
                Ok(Ok(resp)) => {
                    self.balancer.finish(i, false, Instant::now());
                    let (mut rparts, rbody) = resp.into_parts();
                    strip_hop_by_hop(&mut rparts.headers);
                    rparts.version = Version::default();
                    let rbody = body::boxed(Idle::new(rbody, self.read_timeout));
                    return (Response::from_parts(rparts, rbody), outcome);
                }
                Ok(Err(e)) => {
                    self.balancer.finish(i, true, Instant::now());
                    let why = describe(&e);
                    tracing::warn!(upstream = %peer.label, error = %why, "upstream request failed");
                    outcome.retries.push(format!("{}: {why}", peer.label));
                    last_status = StatusCode::BAD_GATEWAY;
                }
                Err(_) => {
                    self.balancer.finish(i, true, Instant::now());
                    tracing::warn!(upstream = %peer.label, timeout = ?self.read_timeout, "upstream timed out");
                    outcome.retries.push(format!(
                        "{}: no response head within {:?}",
                        peer.label, self.read_timeout
                    ));
                    last_status = StatusCode::GATEWAY_TIMEOUT;
                }
            }
            if !replayable {
                break;
            }
        }
        let message = if outcome.retries.is_empty() {
            "no upstream registry is available".to_string()
        } else {
            format!(
                "upstream registry unavailable ({})",
                outcome.retries.join("; ")
            )
        };
        (oci_error(last_status, Code::Unavailable, &message), outcome)
    }
}

/// Put an error chain in a few words without leaking anything but the cause.
fn describe(e: &hyper_util::client::legacy::Error) -> String {
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
    if !h.contains_key(header::HOST) {
        if let Some(a) = parts.uri.authority() {
            if let Ok(v) = HeaderValue::from_str(a.as_str()) {
                h.insert(header::HOST, v);
            }
        }
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
        let peer = Peer {
            base: "http://127.0.0.1:5000".parse().unwrap(),
            label: "127.0.0.1:5000".into(),
        };
        let r = build_request(&parts, &h, &peer, body::empty());
        assert_eq!(r.uri(), "http://127.0.0.1:5000/v2/");
        assert_eq!(r.version(), Version::HTTP_11);
    }
}
