//! The configurable limits with real TLS clients: the largest request head
//! (`server.max_header_size`, HTTP/1.1 and HTTP/2), connections per client address
//! (`server.max_connections_per_address`, refused before TLS), the HTTP/2 streams a
//! connection may open (`server.http2_max_streams`, as advertised in SETTINGS) and the
//! largest manifest (`registry.max_manifest_size`).

mod support;

use bytes::Bytes;
use http::StatusCode;
use portcullis::body;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Far longer than anything under test takes on a loaded machine.
const PATIENCE: Duration = Duration::from_secs(30);

/// A request for `/v2/` with good credentials and one `x-pad` header of `pad` bytes.
fn padded(p: &Portcullis, pad: usize) -> http::Request<body::Body> {
    request("GET", &p.url("/v2/"), Some(BCRYPT_USER))
        .header("x-pad", "p".repeat(pad))
        .body(body::empty())
        .unwrap()
}

/// Status of a request whose answer may also be a refusal of the stream or connection.
async fn status_of(c: &Client, req: http::Request<body::Body>) -> Result<StatusCode, String> {
    match tokio::time::timeout(PATIENCE, c.send_streaming(req)).await {
        Err(_) => panic!("no answer within {PATIENCE:?}"),
        Ok(Ok(r)) => Ok(r.status()),
        Ok(Err(e)) => Err(format!("{e:?}")),
    }
}

/// The bytes a raw HTTP/1.1 request with an `x-pad` header of `pad` bytes gets back,
/// read until the server closes or the head of the answer is complete.
async fn raw_h1(p: &Portcullis, pad: usize) -> String {
    let auth = {
        use base64::Engine;
        let (u, pw) = BCRYPT_USER;
        base64::engine::general_purpose::STANDARD.encode(format!("{u}:{pw}"))
    };
    let head = format!(
        "GET /v2/ HTTP/1.1\r\nHost: localhost\r\nAuthorization: Basic {auth}\r\nX-Pad: {}\r\n\r\n",
        "p".repeat(pad)
    );
    let mut s = tls_connect(&p.ca(), p.addr, &[b"http/1.1"]).await;
    // The server may answer and close before it has read all of an oversized head.
    let _ = s.write_all(head.as_bytes()).await;
    let _ = s.flush().await;
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    let _ = tokio::time::timeout(PATIENCE, async {
        while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    String::from_utf8_lossy(&seen).into_owned()
}

#[tokio::test]
async fn a_request_head_over_max_header_size_gets_431_on_http1_and_http2() {
    // Above hyper's HTTP/2 default (16 KiB), far below its HTTP/1 buffer (~400 KiB):
    // only the configured value passes the first and refuses the second.
    let limit = 24 << 10;
    let p = Portcullis::start(Options::registry().max_header_size(limit)).await;
    let under = 20 << 10;
    let over = 28 << 10;

    let ok = raw_h1(&p, under).await;
    assert!(
        ok.starts_with("HTTP/1.1 200"),
        "{under}-byte pad: {ok:.200}"
    );
    let refused = raw_h1(&p, over).await;
    assert!(
        refused.starts_with("HTTP/1.1 431"),
        "{over}-byte pad over HTTP/1.1: {refused:.200}"
    );

    let c = Client::h2(&p.ca());
    assert_eq!(status_of(&c, padded(&p, under)).await, Ok(StatusCode::OK));
    let big = status_of(&c, padded(&p, over)).await;
    assert!(
        big == Ok(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE),
        "{over}-byte pad over HTTP/2: {big:?}"
    );
    // A stream error: the client's connection goes on serving.
    assert_eq!(status_of(&c, padded(&p, under)).await, Ok(StatusCode::OK));
}

/// A TCP connection to `addr` from `from` (any 127/8 address is the loopback).
async fn tcp_from(from: IpAddr, addr: SocketAddr) -> tokio::net::TcpStream {
    let s = tokio::net::TcpSocket::new_v4().unwrap();
    s.bind(SocketAddr::new(from, 0)).unwrap();
    s.connect(addr).await.unwrap()
}

/// An authenticated `GET /v2/` over HTTP/1.1 on a new connection from `from`: its
/// status, or what failed (the TLS handshake, when the server closed at once).
async fn served_from(p: &Portcullis, from: IpAddr) -> Result<StatusCode, String> {
    let tcp = tcp_from(from, p.addr).await;
    let tls = tokio::time::timeout(
        PATIENCE,
        tls_connector(&p.ca(), &[b"http/1.1"]).connect("localhost".try_into().unwrap(), tcp),
    )
    .await
    .expect("the handshake ends either way")
    .map_err(|e| format!("TLS handshake: {e}"))?;
    let (mut send, conn) =
        hyper::client::conn::http1::handshake::<_, body::Body>(hyper_util::rt::TokioIo::new(tls))
            .await
            .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let req = request("GET", "/v2/", Some(BCRYPT_USER))
        .header("host", "localhost")
        .body(body::empty())
        .unwrap();
    let r = send.send_request(req).await.map_err(|e| e.to_string())?;
    Ok(r.status())
}

/// The server closes a fresh connection from `from` without a byte: it never waited
/// for a TLS ClientHello (an admitted one would, until `header_timeout`).
async fn closed_before_tls(p: &Portcullis, from: IpAddr) -> bool {
    let mut tcp = tcp_from(from, p.addr).await;
    let mut buf = [0u8; 64];
    matches!(
        tokio::time::timeout(PATIENCE, tcp.read(&mut buf)).await,
        Ok(Ok(0) | Err(_))
    )
}

fn refused_total(limit: &str) -> u64 {
    let text = portcullis::metrics::get().encode();
    let series = format!("portcullis_connections_refused_total{{limit=\"{limit}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&series))
        .map_or(0, |v| v.trim().parse().unwrap())
}

#[tokio::test]
async fn connections_beyond_the_per_address_cap_are_closed_before_tls() {
    let cap = 3;
    let p = Portcullis::start(
        Options::registry()
            .max_connections_per_address(cap)
            .header_timeout(Duration::from_secs(60)),
    )
    .await;
    let local: IpAddr = "127.0.0.1".parse().unwrap();
    let other: IpAddr = "127.0.0.2".parse().unwrap();
    let before = refused_total("max_connections_per_address");
    // `cap` connections from one address, each through TLS and held open.
    let mut held = Vec::new();
    for _ in 0..cap {
        let tcp = tcp_from(local, p.addr).await;
        held.push(
            tls_connector(&p.ca(), &[b"http/1.1"])
                .connect("localhost".try_into().unwrap(), tcp)
                .await
                .expect("a connection within the cap completes TLS"),
        );
    }
    assert!(
        closed_before_tls(&p, local).await,
        "connection {} from {local} was not closed at once",
        cap + 1
    );
    assert!(refused_total("max_connections_per_address") > before);
    // Another address is not affected.
    assert_eq!(served_from(&p, other).await, Ok(StatusCode::OK));

    // A slot given back is usable again (the server notices the close on its own time).
    held.pop();
    let t = Instant::now();
    while served_from(&p, local).await != Ok(StatusCode::OK) {
        assert!(t.elapsed() < PATIENCE, "the freed slot never came back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A reload raises the cap for the next connection.
    let config = p.dir.path().join("proxy.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    let raised = text.replace(
        &format!("max_connections_per_address = {cap}"),
        &format!("max_connections_per_address = {}", cap + 5),
    );
    assert_ne!(text, raised, "the key is in the file");
    std::fs::write(&config, raised).unwrap();
    portcullis::app::reload(&config, &p.state).await.unwrap();
    let more: Vec<_> = {
        let mut v = Vec::new();
        for _ in 0..cap {
            let tcp = tcp_from(local, p.addr).await;
            v.push(
                tls_connector(&p.ca(), &[b"http/1.1"])
                    .connect("localhost".try_into().unwrap(), tcp)
                    .await
                    .expect("within the raised cap"),
            );
        }
        v
    };
    assert_eq!(served_from(&p, local).await, Ok(StatusCode::OK));
    drop(more);
    drop(held);
}

#[tokio::test]
async fn http2_settings_advertise_the_configured_stream_limit() {
    let streams = 7;
    let p = Portcullis::start(Options::registry().http2_max_streams(streams)).await;
    let tls = tls_connect(&p.ca(), p.addr, &[b"h2"]).await;
    let (mut send, mut conn) = h2::client::handshake(tls).await.unwrap();
    let req = http::Request::get("https://localhost/v2/")
        .body(())
        .unwrap();
    let (resp, _) = send.send_request(req, true).unwrap();
    // The server's SETTINGS come first on the connection; once an answer is in, they
    // have been read.
    let answered = tokio::time::timeout(PATIENCE, async {
        tokio::pin!(resp);
        tokio::select! {
            r = &mut resp => r.unwrap().status(),
            c = &mut conn => panic!("connection ended: {c:?}"),
        }
    })
    .await
    .expect("an answer");
    assert_eq!(answered, StatusCode::UNAUTHORIZED);
    assert_eq!(conn.max_concurrent_send_streams(), streams as usize);
}

/// An OCI image manifest of exactly `size` bytes (padded with an annotation) naming
/// `config`, a blob of `config_len` bytes.
fn manifest_of_size(config: &str, config_len: usize, size: usize) -> Vec<u8> {
    let with = |pad: &str| {
        serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": config,
                "size": config_len,
            },
            "layers": [],
            "annotations": {"pad": pad},
        }))
        .unwrap()
    };
    let bare = with("").len();
    assert!(bare <= size, "a manifest needs {bare} bytes");
    let m = with(&"p".repeat(size - bare));
    assert_eq!(m.len(), size);
    m
}

#[tokio::test]
async fn a_manifest_over_max_manifest_size_gets_413_and_one_at_the_limit_is_stored() {
    let limit = 6000;
    let p = Portcullis::start(Options::registry().max_manifest_size(limit as u64)).await;
    let c = Client::h2(&p.ca());
    let config = b"{}".to_vec();
    let d = format!("sha256:{}", sha256_hex(&config));
    let a = c
        .send(
            request(
                "POST",
                &p.url(&format!("/v2/app/blobs/uploads/?digest={d}")),
                Some(BCRYPT_USER),
            )
            .body(body::full(config.clone()))
            .unwrap(),
        )
        .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.text());
    let put = |m: Vec<u8>, tag: &str| {
        request(
            "PUT",
            &p.url(&format!("/v2/app/manifests/{tag}")),
            Some(BCRYPT_USER),
        )
        .header("content-type", "application/vnd.oci.image.manifest.v1+json")
        .body(body::full(m))
        .unwrap()
    };
    let a = c.send(put(manifest_of_size(&d, 2, limit), "at")).await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.text());
    let a = c
        .send(put(manifest_of_size(&d, 2, limit + 1), "over"))
        .await;
    assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", a.text());
    assert_eq!(a.oci_code(), "MANIFEST_INVALID");
    // Without a Content-Length the body is read up to the limit, and no further.
    let m = Bytes::from(manifest_of_size(&d, 2, limit + 1));
    let chunks: Vec<Result<http_body::Frame<Bytes>, std::convert::Infallible>> = m
        .chunks(1000)
        .map(|b| Ok(http_body::Frame::data(Bytes::copy_from_slice(b))))
        .collect();
    let streamed = body::boxed(http_body_util::StreamBody::new(futures_util::stream::iter(
        chunks,
    )));
    let req = request(
        "PUT",
        &p.url("/v2/app/manifests/streamed"),
        Some(BCRYPT_USER),
    )
    .header("content-type", "application/vnd.oci.image.manifest.v1+json")
    .body(streamed)
    .unwrap();
    let a = c.send(req).await;
    assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", a.text());
    assert_eq!(a.oci_code(), "MANIFEST_INVALID");
    let a = c
        .get(&p.url("/v2/app/manifests/over"), Some(BCRYPT_USER))
        .await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
}
