//! Fault injection with small stub upstreams (raw TCP on 127.0.0.1): what exactly is
//! forwarded, and what the client sees when the upstream stalls or resets.

mod support;

use http::StatusCode;
use portcullis::body;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const ALICE: Option<(&str, &str)> = Some(BCRYPT_USER);

#[derive(Clone, Copy)]
enum Mode {
    /// Answer 200 with the request head as the body.
    Echo,
    /// Read the request, never answer.
    Stall,
    /// Promise 1 MB, send 1 KB, close the socket.
    Reset,
    /// Promise 1 MB, send 1 KB, then go silent.
    StallBody,
    /// Read the request and its body (Content-Length), then close without answering.
    Swallow,
    /// Answer with both Content-Length and Transfer-Encoding (RFC 9112 §6.3: invalid).
    BothLengths,
    /// Read whatever body arrives until the connection ends; never answer.
    Sink,
}

/// A stub upstream; returns its URL and a count of requests it received.
async fn stub(mode: Mode) -> (String, Arc<AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    let seen = Arc::new(AtomicUsize::new(0));
    let count = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = l.accept().await else { return };
            let count = count.clone();
            tokio::spawn(async move { serve_stub(s, mode, count).await });
        }
    });
    (url, seen)
}

async fn serve_stub(mut s: TcpStream, mode: Mode, count: Arc<AtomicUsize>) {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
        count.fetch_add(1, Ordering::SeqCst);
        let end = head.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        let this: Vec<u8> = head.drain(..end).collect();
        match mode {
            Mode::Echo => {
                let resp = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\r\n",
                    this.len()
                );
                if s.write_all(resp.as_bytes()).await.is_err() || s.write_all(&this).await.is_err()
                {
                    return;
                }
            }
            Mode::Stall => {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                return;
            }
            Mode::BothLengths => {
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
                    .await;
                continue;
            }
            Mode::Sink => {
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                }
                return;
            }
            Mode::Swallow => {
                let text = String::from_utf8_lossy(&this).to_ascii_lowercase();
                let len: usize = text
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                let mut got = head.len();
                while got < len {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => got += n,
                    }
                }
                return;
            }
            Mode::Reset | Mode::StallBody => {
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 1000000\r\n\r\n")
                    .await;
                let _ = s.write_all(&[b'x'; 1024]).await;
                if let Mode::StallBody = mode {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                }
                return;
            }
        }
    }
}

#[tokio::test]
async fn forwarded_headers_are_the_recipes() {
    let (url, _) = stub(Mode::Echo).await;
    let p = Portcullis::start(Options::upstream(url)).await;
    for client in [Client::h1(&p.ca()), Client::h2(&p.ca())] {
        let a = client
            .send(
                request(
                    "GET",
                    &p.localhost_url("/v2/some/repo/tags/list?n=10"),
                    ALICE,
                )
                .header("x-forwarded-for", "203.0.113.7")
                .body(body::empty())
                .unwrap(),
            )
            .await;
        assert_eq!(a.status, StatusCode::OK);
        let head = a.text().to_ascii_lowercase();
        let lines: Vec<&str> = head.lines().collect();
        assert_eq!(
            lines[0], "get /v2/some/repo/tags/list?n=10 http/1.1",
            "{head}"
        );
        let host = format!("host: localhost:{}", p.addr.port());
        assert!(
            lines.contains(&host.as_str()),
            "Host passed unchanged, port included: {head}"
        );
        assert!(
            lines.contains(&"x-forwarded-for: 203.0.113.7, 127.0.0.1"),
            "{head}"
        );
        assert!(lines.contains(&"x-real-ip: 127.0.0.1"), "{head}");
        assert!(lines.contains(&"x-forwarded-proto: https"), "{head}");
        assert!(
            lines.iter().any(|l| l.starts_with("authorization: basic ")),
            "{head}"
        );
        assert_eq!(
            lines.iter().filter(|l| l.starts_with("host:")).count(),
            1,
            "{head}"
        );
        // The echo came from the stub, which sends no API-version header: we add it.
        assert_eq!(a.header("docker-distribution-api-version"), "registry/2.0");
    }
}

#[tokio::test]
async fn stalled_upstream_times_out_with_504() {
    let (url, seen) = stub(Mode::Stall).await;
    let opts = Options::upstream(url).read_timeout(Duration::from_secs(1));
    let p = Portcullis::start(opts).await;
    let c = Client::h1(&p.ca());
    let t = Instant::now();
    let a = c.get(&p.url("/v2/"), ALICE).await;
    assert_eq!(a.status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(a.oci_code(), "UNAVAILABLE");
    assert!(t.elapsed() >= Duration::from_millis(900) && t.elapsed() < Duration::from_secs(10));
    assert_eq!(seen.load(Ordering::SeqCst), 1);
}

async fn read_all_body(c: &Client, url: &str) -> Result<usize, String> {
    let resp = c
        .send_streaming(request("GET", url, ALICE).body(body::empty()).unwrap())
        .await
        .map_err(|e| e.to_string())?;
    assert_eq!(resp.status(), StatusCode::OK);
    let mut b = resp.into_body();
    let mut n = 0;
    use http_body_util::BodyExt;
    while let Some(f) = b.frame().await {
        match f {
            Ok(f) => n += f.data_ref().map_or(0, |d| d.len()),
            Err(e) => return Err(format!("after {n} bytes: {e}")),
        }
    }
    Ok(n)
}

#[tokio::test]
async fn reset_mid_response_is_passed_on_not_retried() {
    let (url, seen) = stub(Mode::Reset).await;
    let p = Portcullis::start(Options::upstream(url)).await;
    for client in [Client::h1(&p.ca()), Client::h2(&p.ca())] {
        let r = read_all_body(&client, &p.url("/v2/x/blobs/sha256:00")).await;
        assert!(
            r.is_err(),
            "a truncated body must reach the client as an error, got {r:?}"
        );
    }
    assert_eq!(
        seen.load(Ordering::SeqCst),
        2,
        "one upstream request per client request"
    );
}

#[tokio::test]
async fn upstream_silent_mid_body_hits_the_read_timeout() {
    let (url, _) = stub(Mode::StallBody).await;
    let opts = Options::upstream(url).read_timeout(Duration::from_secs(1));
    let p = Portcullis::start(opts).await;
    let c = Client::h1(&p.ca());
    let t = Instant::now();
    let r = read_all_body(&c, &p.url("/v2/x/blobs/sha256:00")).await;
    assert!(r.is_err(), "{r:?}");
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "cut after the read timeout"
    );
}

fn two(first: String, second: String) -> Options {
    Options::upstream(first).server(second)
}

#[tokio::test]
async fn refused_connection_fails_over_to_the_next_peer() {
    let dead = format!("http://127.0.0.1:{}", free_port());
    let (echo, seen) = stub(Mode::Echo).await;
    let p = Portcullis::start(two(dead, echo)).await;
    let c = Client::h1(&p.ca());
    // The first pick is the dead peer: a request body not yet sent moves on with the
    // request to the next one (POST/PATCH rule).
    let a = c
        .send(
            request("PATCH", &p.url("/v2/x/blobs/uploads/u"), ALICE)
                .body(body::full(vec![1u8; 10_000]))
                .unwrap(),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    assert!(a.text().starts_with("PATCH "), "the echo got the request");
    for _ in 0..3 {
        let a = c.get(&p.url("/v2/"), ALICE).await;
        assert_eq!(a.status, StatusCode::OK);
    }
    assert_eq!(seen.load(Ordering::SeqCst), 4);
    let pool = match &p.state.load().backend {
        portcullis::state::Backend::Upstream(pool) => pool.clone(),
        _ => unreachable!(),
    };
    assert_eq!(
        pool.balancer().fails(0),
        1,
        "the refusal counted toward max_fails"
    );
}

#[tokio::test]
async fn a_stalled_peer_times_out_and_the_next_one_answers() {
    let (stall, stalled) = stub(Mode::Stall).await;
    let (echo, _) = stub(Mode::Echo).await;
    let o = two(stall, echo).read_timeout(Duration::from_secs(1));
    let p = Portcullis::start(o).await;
    let c = Client::h1(&p.ca());
    let t = Instant::now();
    let a = c.get(&p.url("/v2/"), ALICE).await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(
        t.elapsed() >= Duration::from_millis(900),
        "went to the stalled peer first"
    );
    assert_eq!(stalled.load(Ordering::SeqCst), 1);
    // The stalled peer is now failed for fail_timeout: the next request goes straight on.
    let t = Instant::now();
    assert_eq!(c.get(&p.url("/v2/"), ALICE).await.status, StatusCode::OK);
    assert!(t.elapsed() < Duration::from_millis(900));
}

#[tokio::test]
async fn no_retry_once_response_bytes_reached_the_client() {
    let (reset, _) = stub(Mode::Reset).await;
    let (echo, echoed) = stub(Mode::Echo).await;
    let p = Portcullis::start(two(reset, echo)).await;
    let c = Client::h1(&p.ca());
    let r = read_all_body(&c, &p.url("/v2/x/blobs/sha256:00")).await;
    assert!(r.is_err(), "{r:?}");
    assert_eq!(
        echoed.load(Ordering::SeqCst),
        0,
        "a response already under way is never replayed"
    );
}

#[tokio::test]
async fn no_retry_once_request_body_bytes_were_sent() {
    let (swallow, swallowed) = stub(Mode::Swallow).await;
    let (echo, echoed) = stub(Mode::Echo).await;
    let p = Portcullis::start(two(swallow, echo)).await;
    let c = Client::h1(&p.ca());
    let a = c
        .send(
            request("PATCH", &p.url("/v2/x/blobs/uploads/u"), ALICE)
                .body(body::full(vec![2u8; 100_000]))
                .unwrap(),
        )
        .await;
    assert_eq!(a.status, StatusCode::BAD_GATEWAY);
    assert_eq!(a.oci_code(), "UNAVAILABLE");
    assert_eq!(swallowed.load(Ordering::SeqCst), 1);
    assert_eq!(
        echoed.load(Ordering::SeqCst),
        0,
        "the body was sent once; it is not replayed"
    );
}

#[tokio::test]
async fn all_peers_failed_is_502_naming_each() {
    let d1 = format!("http://127.0.0.1:{}", free_port());
    let d2 = format!("http://127.0.0.1:{}", free_port());
    let p = Portcullis::start(two(d1, d2)).await;
    let a = Client::h1(&p.ca()).get(&p.url("/v2/"), ALICE).await;
    assert_eq!(a.status, StatusCode::BAD_GATEWAY);
    assert_eq!(a.oci_code(), "UNAVAILABLE");
    assert_eq!(
        a.text().matches("connect failed").count(),
        2,
        "{}",
        a.text()
    );
}

fn pool(p: &Portcullis) -> std::sync::Arc<portcullis::upstream::Pool> {
    match &p.state.load().backend {
        portcullis::state::Backend::Upstream(pool) => pool.clone(),
        _ => unreachable!(),
    }
}

/// Send raw HTTP/1.1 bytes over TLS and read what comes back until the server closes
/// or `limit` passes.
async fn raw_exchange(p: &Portcullis, bytes: &[u8], then_close: bool, limit: Duration) -> String {
    let mut s = tls_connect(&p.ca(), p.addr, &[b"http/1.1"]).await;
    s.write_all(bytes).await.unwrap();
    s.flush().await.unwrap();
    if then_close {
        // A client that aborts mid-upload: the rest never comes.
        drop(s);
        return String::new();
    }
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let _ = tokio::time::timeout(limit, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    out.extend_from_slice(&buf[..n]);
                    if out.windows(4).any(|w| w == b"\r\n\r\n") {
                        return;
                    }
                }
            }
        }
    })
    .await;
    String::from_utf8_lossy(&out).into_owned()
}

fn auth_header() -> String {
    use base64::Engine;
    let (u, pw) = BCRYPT_USER;
    format!(
        "Authorization: Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{u}:{pw}"))
    )
}

#[tokio::test]
async fn client_faults_never_count_against_upstreams() {
    let (a, _) = stub(Mode::Sink).await;
    let (b, _) = stub(Mode::Sink).await;
    let o = two(a, b).read_timeout(Duration::from_secs(2));
    let p = Portcullis::start(o).await;
    let host = format!("Host: localhost:{}", p.addr.port());
    let auth = auth_header();

    // A malformed chunked body: the client's 400, not the upstream's fault.
    let malformed = format!(
        "PATCH /v2/x/blobs/uploads/u HTTP/1.1\r\n{host}\r\n{auth}\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n"
    );
    let answer = raw_exchange(&p, malformed.as_bytes(), false, Duration::from_secs(20)).await;
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 400"),
        "{answer}"
    );

    // A client that aborts mid-upload.
    let aborted = format!(
        "PATCH /v2/x/blobs/uploads/u HTTP/1.1\r\n{host}\r\n{auth}\r\nContent-Length: 100000\r\n\r\n{}",
        "x".repeat(1000)
    );
    raw_exchange(&p, aborted.as_bytes(), true, Duration::ZERO).await;

    // A client that stops sending: the body's read timeout is the client's 408.
    let stalled = format!(
        "PATCH /v2/x/blobs/uploads/u HTTP/1.1\r\n{host}\r\n{auth}\r\nContent-Length: 100000\r\n\r\n{}",
        "x".repeat(1000)
    );
    let answer = raw_exchange(&p, stalled.as_bytes(), false, Duration::from_secs(30)).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");

    // Give the aborted request time to be noticed, then look: no peer was blamed.
    let pool = pool(&p);
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(3) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        (pool.balancer().fails(0), pool.balancer().fails(1)),
        (0, 0),
        "client faults counted against an upstream"
    );
}

#[tokio::test]
async fn a_response_with_both_content_length_and_transfer_encoding_is_a_502() {
    let (url, seen) = stub(Mode::BothLengths).await;
    let p = Portcullis::start(Options::upstream(url)).await;
    for client in [Client::h1(&p.ca()), Client::h2(&p.ca())] {
        let a = client.get(&p.url("/v2/x/tags/list"), ALICE).await;
        assert_eq!(a.status, StatusCode::BAD_GATEWAY, "{}", a.text());
        assert!(
            a.text().contains("Content-Length and Transfer-Encoding"),
            "{}",
            a.text()
        );
    }
    assert!(seen.load(Ordering::SeqCst) >= 2);
}

#[tokio::test]
async fn a_post_that_timed_out_is_not_sent_to_the_next_peer() {
    let (stall, stalled) = stub(Mode::Stall).await;
    let (echo, echoed) = stub(Mode::Echo).await;
    let o = two(stall, echo).read_timeout(Duration::from_secs(1));
    let p = Portcullis::start(o).await;
    let c = Client::h1(&p.ca());
    // The first pick is the stalled peer (round-robin, equal weights).
    let a = c
        .send(
            request("POST", &p.url("/v2/x/blobs/uploads/"), ALICE)
                .body(body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(a.status, StatusCode::GATEWAY_TIMEOUT, "{}", a.text());
    assert_eq!(stalled.load(Ordering::SeqCst), 1);
    assert_eq!(
        echoed.load(Ordering::SeqCst),
        0,
        "a POST that was sent is never sent again"
    );
    // The stalled peer now counts as failed: the next request goes to the other.
    let a = c.get(&p.url("/v2/"), ALICE).await;
    assert_eq!(a.status, StatusCode::OK);
}
