//! Connection limits with real TLS clients: silent, slow and idle clients are closed
//! on time (`server.header_timeout`, `server.idle_timeout`), and an early answer to a
//! request with a body (a 401 before credentials, say) leaves an HTTP/1.1 connection
//! usable for the client's next request.

mod support;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::time::{Duration, Instant};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Far longer than any timer under test: a connection still open then was never closed.
const NEVER: Duration = Duration::from_secs(40);

/// Wait for the server to close `s` (EOF or reset); how long it took from `since`.
async fn closed_after<S: tokio::io::AsyncRead + Unpin>(s: &mut S, since: Instant) -> Duration {
    let mut buf = vec![0u8; 64 << 10];
    let waited = tokio::time::timeout(NEVER, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(waited.is_ok(), "the server never closed the connection");
    since.elapsed()
}

/// The client side of a connection ends (the server closed it) no sooner than `min`
/// from now and well before [`NEVER`].
async fn ends_after<T>(conn: tokio::task::JoinHandle<T>, min: Duration, what: &str) {
    let since = Instant::now();
    let ended = tokio::time::timeout(NEVER, conn).await;
    assert!(ended.is_ok(), "{what} was never closed");
    assert!(
        since.elapsed() >= min,
        "{what} closed after {:?}",
        since.elapsed()
    );
}

#[tokio::test]
async fn a_client_silent_after_tls_is_closed_after_the_header_timeout() {
    let p = Portcullis::start(
        Options::registry()
            .header_timeout(Duration::from_secs(2))
            .idle_timeout(Duration::from_secs(60)),
    )
    .await;
    for alpn in [&[&b"http/1.1"[..]][..], &[&b"h2"[..]][..], &[][..]] {
        let t = Instant::now();
        let mut s = tls_connect(&p.ca(), p.addr, alpn).await;
        let took = closed_after(&mut s, t).await;
        assert!(
            took >= Duration::from_millis(1900),
            "closed too early: {took:?}"
        );
    }
}

#[tokio::test]
async fn half_an_http2_preface_or_a_slow_request_head_is_cut_off() {
    let p = Portcullis::start(
        Options::registry()
            .header_timeout(Duration::from_secs(2))
            .idle_timeout(Duration::from_secs(60)),
    )
    .await;
    let t = Instant::now();
    let mut s = tls_connect(&p.ca(), p.addr, &[b"h2"]).await;
    s.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();
    s.flush().await.unwrap();
    closed_after(&mut s, t).await;

    // One header byte every 300 ms never completes a head within 2 s.
    let t = Instant::now();
    let mut s = tls_connect(&p.ca(), p.addr, &[b"http/1.1"]).await;
    let slow = async {
        for b in b"GET /v2/ HTTP/1.1\r\nHost: localhost\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n" {
            if s.write_all(&[*b]).await.is_err() || s.flush().await.is_err() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        false
    };
    let cut = tokio::time::timeout(NEVER, slow).await.expect("bounded");
    assert!(cut, "a head trickled over {:?} was accepted", t.elapsed());
}

/// An HTTP/1.1 connection over TLS to `p`, driven by hyper's client.
async fn h1_connection(
    p: &Portcullis,
) -> (
    hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    tokio::task::JoinHandle<Result<(), hyper::Error>>,
) {
    let s = tls_connect(&p.ca(), p.addr, &[b"http/1.1"]).await;
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(s))
        .await
        .unwrap();
    (send, tokio::spawn(conn))
}

fn get(p: &Portcullis, path: &str, user: Option<(&str, &str)>) -> Request<Full<Bytes>> {
    with_body(p, "GET", path, user, Vec::new())
}

fn with_body(
    p: &Portcullis,
    method: &str,
    path: &str,
    user: Option<(&str, &str)>,
    data: Vec<u8>,
) -> Request<Full<Bytes>> {
    let (parts, _) = request(method, &p.localhost_url(path), user)
        .header("host", format!("localhost:{}", p.addr.port()))
        .header("content-length", data.len())
        .body(())
        .unwrap()
        .into_parts();
    let mut r = Request::from_parts(parts, Full::new(Bytes::from(data)));
    // Origin form on the wire, as a real client sends it.
    *r.uri_mut() = path.parse().unwrap();
    r
}

/// An authenticated request's answer: sent on the connection it was given, 200, body
/// read to the end.
async fn expect_ok(
    sent: impl std::future::Future<Output = Result<http::Response<hyper::body::Incoming>, hyper::Error>>,
    what: &str,
) {
    let r = sent.await.unwrap_or_else(|e| panic!("{what}: {e}"));
    assert_eq!(r.status(), StatusCode::OK, "{what}");
    r.into_body().collect().await.unwrap();
}

#[tokio::test]
async fn http1_keep_alive_lasts_the_idle_timeout_not_the_header_timeout() {
    let p = Portcullis::start(
        Options::registry()
            .header_timeout(Duration::from_secs(1))
            .idle_timeout(Duration::from_secs(4)),
    )
    .await;
    let (mut send, conn) = h1_connection(&p).await;
    expect_ok(
        send.send_request(get(&p, "/v2/", Some(BCRYPT_USER))),
        "first request",
    )
    .await;
    // Idle for twice the header timeout: the connection is still there.
    tokio::time::sleep(Duration::from_secs(2)).await;
    expect_ok(
        send.send_request(get(&p, "/v2/", Some(BCRYPT_USER))),
        "a kept-alive connection outlives header_timeout",
    )
    .await;
    ends_after(
        conn,
        Duration::from_millis(3900),
        "an idle HTTP/1.1 connection",
    )
    .await;
}

#[tokio::test]
async fn an_idle_http2_connection_answering_pings_gets_goaway_after_the_idle_timeout() {
    let p = Portcullis::start(
        Options::registry()
            .header_timeout(Duration::from_secs(2))
            .idle_timeout(Duration::from_secs(3)),
    )
    .await;
    let s = tls_connect(&p.ca(), p.addr, &[b"h2"]).await;
    let (mut send, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        // The client pings every 500 ms and answers the server's pings: traffic, but
        // no request.
        .keep_alive_interval(Duration::from_millis(500))
        .keep_alive_while_idle(true)
        .handshake(TokioIo::new(s))
        .await
        .unwrap();
    let conn = tokio::spawn(conn);
    expect_ok(
        send.send_request(get(&p, "/v2/", Some(BCRYPT_USER))),
        "a request",
    )
    .await;
    ends_after(
        conn,
        Duration::from_millis(2900),
        "an idle HTTP/2 connection kept alive by pings",
    )
    .await;
    assert!(send.is_closed(), "the server said GOAWAY");
}

#[tokio::test]
async fn silent_connections_cannot_lock_out_legitimate_clients() {
    let p = Portcullis::start(
        Options::registry()
            .header_timeout(Duration::from_secs(2))
            .max_connections(16),
    )
    .await;
    let mut silent = Vec::new();
    for _ in 0..16 {
        silent.push(tls_connect(&p.ca(), p.addr, &[b"h2"]).await);
    }
    // Every slot is taken by a client that says nothing. Within the header timeout
    // they are gone and a real client gets in.
    let t = Instant::now();
    let served = tokio::time::timeout(NEVER, async {
        loop {
            let c = Client::h1(&p.ca());
            let req = request("GET", &p.url("/v2/"), Some(BCRYPT_USER))
                .body(portcullis::body::empty())
                .unwrap();
            let ok = tokio::time::timeout(Duration::from_secs(5), c.send_streaming(req))
                .await
                .ok()
                .and_then(Result::ok)
                .map(|r| r.status());
            if ok == Some(StatusCode::OK) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
    assert!(served.is_ok(), "locked out for {:?}", t.elapsed());
    drop(silent);
}

#[tokio::test]
async fn a_401_to_a_request_with_a_body_keeps_the_http1_connection_usable() {
    let p = Portcullis::start(Options::registry()).await;
    let (mut send, _conn) = h1_connection(&p).await;
    for method in ["POST", "PATCH", "PUT"] {
        let r = send
            .send_request(with_body(
                &p,
                method,
                "/v2/app/blobs/uploads/",
                None,
                vec![7u8; 100_000],
            ))
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert!(!r.headers().contains_key("connection"), "{:?}", r.headers());
        r.into_body().collect().await.unwrap();
        // The client's authenticated retry, on the same connection.
        expect_ok(
            send.send_request(get(&p, "/v2/", Some(BCRYPT_USER))),
            &format!("{method}: the connection died after the 401"),
        )
        .await;
    }
    // An authenticated request the registry refuses before reading its body (an
    // unknown upload) keeps the connection too.
    let r = send
        .send_request(with_body(
            &p,
            "PATCH",
            "/v2/app/blobs/uploads/00000000-0000-4000-8000-000000000000?_state=x",
            Some(BCRYPT_USER),
            vec![1u8; 50_000],
        ))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    r.into_body().collect().await.unwrap();
    expect_ok(
        send.send_request(get(&p, "/v2/", Some(BCRYPT_USER))),
        "the connection after a 404",
    )
    .await;
}

#[tokio::test]
async fn a_401_to_a_large_body_says_connection_close_and_closes_cleanly() {
    let p = Portcullis::start(Options::registry()).await;
    let (mut send, conn) = h1_connection(&p).await;
    let r = send
        .send_request(with_body(
            &p,
            "PATCH",
            "/v2/app/blobs/uploads/",
            None,
            vec![7u8; 8 << 20],
        ))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(r.headers()["connection"], "close");
    let body = r.into_body().collect().await.unwrap().to_bytes();
    assert!(body.starts_with(b"{\"errors\""), "{body:?}");
    ends_after(
        conn,
        Duration::ZERO,
        "a connection answered with Connection: close",
    )
    .await;
}

#[tokio::test]
async fn a_slow_head_on_a_kept_alive_connection_is_cut_after_the_header_timeout() {
    let p = Portcullis::start(
        Options::registry()
            .header_timeout(Duration::from_secs(1))
            .idle_timeout(Duration::from_secs(60)),
    )
    .await;
    let mut s = tls_connect(&p.ca(), p.addr, &[b"http/1.1"]).await;
    let auth = {
        use base64::Engine;
        let (u, pw) = BCRYPT_USER;
        base64::engine::general_purpose::STANDARD.encode(format!("{u}:{pw}"))
    };
    let first =
        format!("GET /v2/ HTTP/1.1\r\nHost: localhost\r\nAuthorization: Basic {auth}\r\n\r\n");
    s.write_all(first.as_bytes()).await.unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !seen.ends_with(b"\r\n\r\n{}") {
        let n = s.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed before the first answer");
        seen.extend_from_slice(&buf[..n]);
    }
    assert!(
        seen.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&seen)
    );
    // The next request's head arrives a byte every 300 ms: cut about a second after its
    // first byte, not when the 60 s idle timer would have run out.
    let (mut rd, mut wr) = tokio::io::split(s);
    let t = Instant::now();
    let closed = tokio::spawn(async move {
        let mut buf = [0u8; 1024];
        while let Ok(n) = rd.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
        t.elapsed()
    });
    for b in b"GET /v2/ HTTP/1.1\r\nHost: localhost\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n" {
        if closed.is_finished() || wr.write_all(&[*b]).await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let took = tokio::time::timeout(NEVER, closed)
        .await
        .expect("closed")
        .unwrap();
    assert!(took >= Duration::from_millis(900), "{took:?}");
    assert!(took < Duration::from_secs(20), "cut only after {took:?}");
}
