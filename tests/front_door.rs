//! The front door in front of a real Debian docker-registry: auth, the nginx-recipe
//! rules, forwarding headers, streamed uploads, HTTP/1.1 and HTTP/2.

mod support;

use bytes::Bytes;
use http::{StatusCode, Version};
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use portcullis::body::{self, BoxError};
use support::*;

const ALICE: Option<(&str, &str)> = Some(BCRYPT_USER);

async fn setup() -> (DockerRegistry, Portcullis) {
    let reg = DockerRegistry::start();
    let p = Portcullis::start(Options::upstream(reg.url())).await;
    (reg, p)
}

#[tokio::test]
async fn v2_without_credentials_gets_oci_401_challenge() {
    let (_reg, p) = setup().await;
    for client in [Client::h1(&p.ca()), Client::h2(&p.ca())] {
        let a = client.get(&p.url("/v2/"), None).await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED);
        assert_eq!(
            a.header("www-authenticate"),
            "Basic realm=\"Registry Realm\""
        );
        assert_eq!(a.header("docker-distribution-api-version"), "registry/2.0");
        assert_eq!(a.count("docker-distribution-api-version"), 1);
        assert_eq!(a.oci_code(), "UNAUTHORIZED");
        assert!(a.header("content-type").starts_with("application/json"));

        let head = client
            .send(
                request("HEAD", &p.url("/v2/"), None)
                    .body(body::empty())
                    .unwrap(),
            )
            .await;
        assert_eq!(head.status, StatusCode::UNAUTHORIZED);
        assert!(head.body.is_empty(), "HEAD answers carry no body");
        assert_eq!(
            head.header("www-authenticate"),
            "Basic realm=\"Registry Realm\""
        );
    }
}

#[tokio::test]
async fn every_htpasswd_scheme_logs_in_and_wrong_ones_do_not() {
    let (_reg, p) = setup().await;
    let c = Client::h1(&p.ca());
    for user in [BCRYPT_USER, APR1_USER, SHA_USER] {
        let a = c.get(&p.url("/v2/"), Some(user)).await;
        assert_eq!(a.status, StatusCode::OK, "user {}", user.0);
        assert_eq!(a.text(), "{}");
        // The registry sends the header; the proxy must not add a second one.
        assert_eq!(a.count("docker-distribution-api-version"), 1);
        assert_eq!(a.header("x-content-type-options"), "nosniff");
        let wrong = c
            .get(&p.url("/v2/"), Some((user.0, "not-the-password")))
            .await;
        assert_eq!(
            wrong.status,
            StatusCode::UNAUTHORIZED,
            "wrong password for {}",
            user.0
        );
        assert_eq!(wrong.oci_code(), "UNAUTHORIZED");
    }
    let unknown = c
        .get(&p.url("/v2/"), Some(("mallory", "alice-secret")))
        .await;
    assert_eq!(unknown.status, StatusCode::UNAUTHORIZED);
    let garbage = c
        .send(
            request("GET", &p.url("/v2/"), None)
                .header("authorization", "Basic %%%not-base64")
                .body(body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(garbage.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_verified_credential_costs_one_hash() {
    let reg = DockerRegistry::start();
    let hash = portcullis::auth::htpasswd::hash_bcrypt("slow-secret", 10).unwrap();
    let opts = Options::upstream(reg.url()).htpasswd(format!("slow:{hash}\n"));
    let p = Portcullis::start(opts).await;
    let c = Client::h2(&p.ca());
    for _ in 0..20 {
        let a = c.get(&p.url("/v2/"), Some(("slow", "slow-secret"))).await;
        assert_eq!(a.status, StatusCode::OK);
    }
    let (hits, entries) = p.state.load().auth.cache_stats();
    assert_eq!((hits, entries), (19, 1), "one bcrypt, then cache hits");
}

#[tokio::test]
async fn old_docker_clients_get_404_before_auth() {
    let (_reg, p) = setup().await;
    let c = Client::h1(&p.ca());
    for ua in [
        "docker/1.5.0",
        "docker/1.4.1",
        "docker/1.3.0",
        "Go 1.1 package http",
    ] {
        for user in [None, ALICE] {
            let a = c
                .send(
                    request("GET", &p.url("/v2/"), user)
                        .header("user-agent", ua)
                        .body(body::empty())
                        .unwrap(),
                )
                .await;
            assert_eq!(a.status, StatusCode::NOT_FOUND, "{ua}");
            assert_eq!(a.header("docker-distribution-api-version"), "registry/2.0");
            assert_eq!(a.oci_code(), "NOT_FOUND");
        }
    }
    for ua in ["docker/1.5.1-dev", "Go-http-client/1.1", "docker/1.6.0"] {
        let a = c
            .send(
                request("GET", &p.url("/v2/"), ALICE)
                    .header("user-agent", ua)
                    .body(body::empty())
                    .unwrap(),
            )
            .await;
        assert_eq!(a.status, StatusCode::OK, "{ua}");
        let no_creds = c
            .send(
                request("GET", &p.url("/v2/"), None)
                    .header("user-agent", ua)
                    .body(body::empty())
                    .unwrap(),
            )
            .await;
        assert_eq!(
            no_creds.status,
            StatusCode::UNAUTHORIZED,
            "{ua} still needs credentials"
        );
    }
}

#[tokio::test]
async fn paths_outside_the_api() {
    let (_reg, p) = setup().await;
    let c = Client::h1(&p.ca());
    let redirect = c.get(&p.localhost_url("/v2"), None).await;
    assert_eq!(redirect.status, StatusCode::MOVED_PERMANENTLY);
    assert_eq!(
        redirect.header("location"),
        format!("https://localhost:{}/v2/", p.addr.port())
    );
    assert_eq!(
        redirect.header("docker-distribution-api-version"),
        "registry/2.0"
    );

    for path in ["/", "/v1/search", "/v2x", "/index.html"] {
        let a = c.get(&p.url(path), None).await;
        assert_eq!(a.status, StatusCode::NOT_FOUND, "{path}");
        assert!(
            a.headers.get("www-authenticate").is_none(),
            "{path}: no auth asked"
        );
    }

    // /_ping and /v1/_ping reach the registry without credentials: distribution 2.8
    // has no such route, so its own Go 404 comes back, not our 401.
    for path in ["/_ping", "/v1/_ping"] {
        let a = c.get(&p.url(path), None).await;
        assert_eq!(a.status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(
            a.text(),
            "404 page not found\n",
            "{path} answered by the registry"
        );
    }
}

/// A request body that arrives in pieces with no Content-Length (chunked on HTTP/1.1,
/// DATA frames without a length on HTTP/2).
fn streamed(chunks: Vec<Bytes>) -> portcullis::body::Body {
    let stream = futures_util::stream::iter(
        chunks
            .into_iter()
            .map(|c| Ok::<_, BoxError>(Frame::data(c))),
    );
    BodyExt::boxed_unsync(StreamBody::new(stream))
}

async fn upload_round_trip(client: &Client, p: &Portcullis, repo: &str) {
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let digest = format!("sha256:{}", sha256_hex(&data));

    let start = client
        .send(
            request(
                "POST",
                &p.localhost_url(&format!("/v2/{repo}/blobs/uploads/")),
                ALICE,
            )
            .body(body::empty())
            .unwrap(),
        )
        .await;
    assert_eq!(start.status, StatusCode::ACCEPTED, "{}", start.text());
    let location = start.header("location").to_string();
    let prefix = format!(
        "https://localhost:{}/v2/{repo}/blobs/uploads/",
        p.addr.port()
    );
    assert!(
        location.starts_with(&prefix),
        "Location {location} must point back at us ({prefix})"
    );
    assert_eq!(start.header("range"), "0-0");

    let chunks: Vec<Bytes> = data
        .chunks(256 * 1024)
        .map(Bytes::copy_from_slice)
        .collect();
    let patch = client
        .send(
            request("PATCH", &location, ALICE)
                .header("content-type", "application/octet-stream")
                .body(streamed(chunks))
                .unwrap(),
        )
        .await;
    assert_eq!(patch.status, StatusCode::ACCEPTED, "{}", patch.text());
    assert_eq!(patch.header("range"), format!("0-{}", data.len() - 1));
    let location = patch.header("location").to_string();
    assert!(location.starts_with(&prefix));

    let sep = if location.contains('?') { '&' } else { '?' };
    let put = client
        .send(
            request("PUT", &format!("{location}{sep}digest={digest}"), ALICE)
                .body(body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(put.status, StatusCode::CREATED, "{}", put.text());
    assert_eq!(put.header("docker-content-digest"), digest);
    assert_eq!(
        put.header("location"),
        format!(
            "https://localhost:{}/v2/{repo}/blobs/{digest}",
            p.addr.port()
        )
    );

    let get = client
        .get(&p.url(&format!("/v2/{repo}/blobs/{digest}")), ALICE)
        .await;
    assert_eq!(get.status, StatusCode::OK);
    assert_eq!(get.body.len(), data.len());
    assert_eq!(sha256_hex(&get.body), digest[7..]);
    assert_eq!(get.header("docker-content-digest"), digest);
    assert_eq!(get.count("docker-distribution-api-version"), 1);

    let head = client
        .send(
            request("HEAD", &p.url(&format!("/v2/{repo}/blobs/{digest}")), ALICE)
                .body(body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(head.header("content-length"), data.len().to_string());
    assert!(head.body.is_empty());

    let range = client
        .send(
            request("GET", &p.url(&format!("/v2/{repo}/blobs/{digest}")), ALICE)
                .header("range", "bytes=10-19")
                .body(body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(range.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(&range.body[..], &data[10..20]);
    assert_eq!(
        range.header("content-range"),
        format!("bytes 10-19/{}", data.len())
    );

    let missing = client
        .get(&p.url(&format!("/v2/{repo}/manifests/nope")), ALICE)
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.oci_code(), "MANIFEST_UNKNOWN");
}

#[tokio::test]
async fn chunked_upload_over_http1_and_location_points_back() {
    let (_reg, p) = setup().await;
    upload_round_trip(&Client::h1(&p.ca()), &p, "test/h1").await;
}

#[tokio::test]
async fn chunked_upload_over_http2_to_an_http1_upstream() {
    let (_reg, p) = setup().await;
    let c = Client::h2(&p.ca());
    let a = c.get(&p.url("/v2/"), ALICE).await;
    assert_eq!(a.version, Version::HTTP_2, "ALPN must pick h2");
    upload_round_trip(&c, &p, "test/h2").await;
    // Many concurrent streams on one connection share the upstream keep-alive pool.
    let mut tasks = Vec::new();
    let c = std::sync::Arc::new(c);
    for _ in 0..32 {
        let c = c.clone();
        let url = p.url("/v2/");
        tasks.push(tokio::spawn(async move { c.get(&url, ALICE).await.status }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), StatusCode::OK);
    }
}

#[tokio::test]
async fn htpasswd_changes_apply_without_restart() {
    let (_reg, p) = setup().await;
    let c = Client::h1(&p.ca());
    assert_eq!(
        c.get(&p.url("/v2/"), Some(("newbie", "fresh")))
            .await
            .status,
        401
    );
    let line = htpasswd_line("-B", "newbie", "fresh");
    // Replace the file the way editors and `portcullis passwd` do: new file, rename.
    let tmp = p.dir.path().join("htpasswd.new");
    std::fs::write(&tmp, format!("{line}\n")).unwrap();
    std::fs::rename(&tmp, p.htpasswd()).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let s = c
            .get(&p.url("/v2/"), Some(("newbie", "fresh")))
            .await
            .status;
        if s == StatusCode::OK {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "new user not accepted within 5 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // alice was removed by the rewrite, even though her credential was never cached.
    assert_eq!(c.get(&p.url("/v2/"), ALICE).await.status, 401);
}

#[tokio::test]
async fn unreachable_upstream_is_502_with_oci_error() {
    let dead = format!("http://127.0.0.1:{}", free_port());
    let p = Portcullis::start(Options::upstream(dead)).await;
    let c = Client::h1(&p.ca());
    let a = c.get(&p.url("/v2/"), ALICE).await;
    assert_eq!(a.status, StatusCode::BAD_GATEWAY);
    assert_eq!(a.oci_code(), "UNAVAILABLE");
    assert_eq!(a.header("docker-distribution-api-version"), "registry/2.0");
}

#[tokio::test]
async fn registry_killed_mid_session_gives_502_then_recovers() {
    let mut reg = DockerRegistry::start();
    let port = reg.port;
    let p = Portcullis::start(Options::upstream(reg.url())).await;
    let c = Client::h1(&p.ca());
    assert_eq!(c.get(&p.url("/v2/"), ALICE).await.status, 200);
    reg.kill();
    let a = c.get(&p.url("/v2/"), ALICE).await;
    assert_eq!(a.status, StatusCode::BAD_GATEWAY);
    assert_eq!(a.oci_code(), "UNAVAILABLE");
    // A one-server group is never marked failed (nginx): back as soon as it is.
    let _reg2 = DockerRegistry::start_on(port);
    assert_eq!(c.get(&p.url("/v2/"), ALICE).await.status, 200);
}
