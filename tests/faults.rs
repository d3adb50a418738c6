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
    let mut opts = Options::upstream(url);
    opts.read_timeout = "1s";
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
    let mut opts = Options::upstream(url);
    opts.read_timeout = "1s";
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
