//! Load balancing over two real Debian docker-registry processes that share one
//! storage folder and one `http.secret` (the recipe's `upstream` block): skopeo round
//! trips under every strategy, the weight split, failover with zero failed requests,
//! health checks, and an HTTPS upstream.

mod support;

use bytes::Bytes;
use http::StatusCode;
use portcullis::body;
use std::time::{Duration, Instant};
use support::oci::*;
use support::*;

const ALICE: Option<(&str, &str)> = Some(BCRYPT_USER);

/// Two registries on one storage folder.
struct Pair {
    a: DockerRegistry,
    b: DockerRegistry,
    _root: tempfile::TempDir,
}

impl Pair {
    fn start() -> Pair {
        let root = tempfile::tempdir().unwrap();
        let a = DockerRegistry::start_with_root(root.path());
        let b = DockerRegistry::start_with_root(root.path());
        Pair { a, b, _root: root }
    }

    fn options(&self, balance: &str, a_extra: &str, b_extra: &str, extra: &str) -> Options {
        let mut o = Options::upstream(self.a.url());
        o.backend_toml = Some(format!(
            "[upstream]\nbalance = \"{balance}\"\n{extra}\n[[upstream.server]]\nurl = \"{}\"\n{a_extra}\n[[upstream.server]]\nurl = \"{}\"\n{b_extra}\n",
            self.a.url(),
            self.b.url()
        ));
        o
    }
}

fn pool(p: &Portcullis) -> std::sync::Arc<portcullis::upstream::Pool> {
    match &p.state.load().backend {
        portcullis::proxy::Backend::Upstream(pool) => pool.clone(),
        _ => panic!("upstream backend expected"),
    }
}

#[test]
fn skopeo_round_trip_under_every_strategy() {
    let pair = Pair::start();
    let work = tempfile::tempdir().unwrap();
    for balance in ["round_robin", "ip_hash", "least_conn", "repository_hash"] {
        let server = Server::start(
            &work.path().join(balance),
            &pair.options(balance, "", "", ""),
        );
        let img = image(
            &work.path().join(format!("src-{balance}")),
            &[2 << 20, 4096],
        );
        let repo = format!("lb/{balance}:v1");
        server.push(&img, &repo, false);
        let back = work.path().join(format!("back-{balance}"));
        server.pull(&repo, &back, false);
        assert_same_image(&back, &img);
    }
}

#[tokio::test]
async fn weights_split_requests_as_configured() {
    let pair = Pair::start();
    let p = Portcullis::start(pair.options("round_robin", "weight = 3", "weight = 1", "")).await;
    let c = Client::h2(&p.ca());
    for _ in 0..1000 {
        assert_eq!(c.get(&p.url("/v2/"), ALICE).await.status, StatusCode::OK);
    }
    let pool = pool(&p);
    let (a, b) = (pool.balancer().picks(0), pool.balancer().picks(1));
    assert_eq!(a + b, 1000);
    // Smooth weighted round-robin is exact; the issue allows 10%.
    assert!((675..=825).contains(&a), "a got {a}, b got {b}");
    assert_eq!((a, b), (750, 250));
}

/// Push one small image through `p` with plain API calls; returns (manifest digest,
/// layer digest).
async fn seed(c: &Client, p: &Portcullis, repo: &str) -> (String, String) {
    let mut digests = Vec::new();
    for data in [&b"{\"os\":\"linux\"}"[..], &[7u8; 50_000][..]] {
        let d = format!("sha256:{}", sha256_hex(data));
        // distribution 2.8 has no monolithic POST: open a session, PUT the data.
        let s = c
            .send(
                request("POST", &p.url(&format!("/v2/{repo}/blobs/uploads/")), ALICE)
                    .body(body::empty())
                    .unwrap(),
            )
            .await;
        assert_eq!(s.status, StatusCode::ACCEPTED, "{}", s.text());
        let a = c
            .send(
                request(
                    "PUT",
                    &format!("{}&digest={d}", s.header("location")),
                    ALICE,
                )
                .body(body::full(Bytes::copy_from_slice(data)))
                .unwrap(),
            )
            .await;
        assert_eq!(a.status, StatusCode::CREATED, "{}", a.text());
        digests.push((d, data.len()));
    }
    let manifest = serde_json::json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digests[0].0, "size": digests[0].1},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": digests[1].0, "size": digests[1].1}],
    });
    let m = serde_json::to_vec(&manifest).unwrap();
    let a = c
        .send(
            request("PUT", &p.url(&format!("/v2/{repo}/manifests/v1")), ALICE)
                .header("content-type", OCI_MANIFEST)
                .body(body::full(m.clone()))
                .unwrap(),
        )
        .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.text());
    (format!("sha256:{}", sha256_hex(&m)), digests[1].0.clone())
}

#[tokio::test]
async fn killing_an_upstream_mid_loop_fails_no_request() {
    for balance in ["round_robin", "least_conn", "ip_hash", "repository_hash"] {
        let mut pair = Pair::start();
        let p = Portcullis::start(pair.options(balance, "", "", "")).await;
        let c = Client::h1(&p.ca());
        let (manifest, layer) = seed(&c, &p, "read/loop").await;
        let mut failed = Vec::new();
        for n in 0..300 {
            if n == 100 {
                pair.a.kill();
            }
            let (method, path) = match n % 3 {
                0 => ("GET", format!("/v2/read/loop/manifests/{manifest}")),
                1 => ("HEAD", format!("/v2/read/loop/blobs/{layer}")),
                _ => ("GET", format!("/v2/read/loop/blobs/{layer}")),
            };
            let a = c
                .send(
                    request(method, &p.url(&path), ALICE)
                        .header("accept", OCI_MANIFEST)
                        .body(body::empty())
                        .unwrap(),
                )
                .await;
            if a.status != StatusCode::OK {
                failed.push((
                    n,
                    method,
                    a.status,
                    a.text().chars().take(200).collect::<String>(),
                ));
            }
        }
        assert!(
            failed.is_empty(),
            "{balance}: {} failed requests, first: {:?}",
            failed.len(),
            failed.first()
        );
        let pool = pool(&p);
        assert!(
            pool.balancer().picks(1) > 0,
            "{balance}: b served after a died"
        );
    }
}

#[test]
fn a_push_started_while_one_upstream_is_down_succeeds() {
    let mut pair = Pair::start();
    pair.a.kill();
    let work = tempfile::tempdir().unwrap();
    let server = Server::start(
        &work.path().join("p"),
        &pair.options("round_robin", "", "", ""),
    );
    let img = image(&work.path().join("src"), &[4 << 20, 4096]);
    server.push(&img, "down/push:v1", false);
    let back = work.path().join("back");
    server.pull("down/push:v1", &back, false);
    assert_same_image(&back, &img);
}

#[tokio::test]
async fn health_checks_take_a_dead_upstream_out_and_put_it_back() {
    let mut pair = Pair::start();
    let a_port = pair.a.port;
    let p = Portcullis::start(pair.options(
        "round_robin",
        "max_fails = 0",
        "max_fails = 0",
        "health_check = { interval = \"200ms\", path = \"/v2/\" }",
    ))
    .await;
    let pool = pool(&p);
    let c = Client::h1(&p.ca());
    assert!(pool.balancer().healthy(0));
    pair.a.kill();
    let deadline = Instant::now() + Duration::from_secs(5);
    while pool.balancer().healthy(0) {
        assert!(Instant::now() < deadline, "health check never noticed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // max_fails = 0 disables passive marking: only the health check keeps a out.
    let before = pool.balancer().picks(0);
    for _ in 0..20 {
        assert_eq!(c.get(&p.url("/v2/"), ALICE).await.status, StatusCode::OK);
    }
    assert_eq!(
        pool.balancer().picks(0),
        before,
        "no request tried the unhealthy peer"
    );
    let _a2 = DockerRegistry::start_on(a_port);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !pool.balancer().healthy(0) {
        assert!(Instant::now() < deadline, "never came back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for _ in 0..4 {
        assert_eq!(c.get(&p.url("/v2/"), ALICE).await.status, StatusCode::OK);
    }
    assert!(pool.balancer().picks(0) > before);
}

#[tokio::test]
async fn https_upstream_with_a_configured_ca() {
    let certs = tempfile::tempdir().unwrap();
    portcullis::certs::generate(
        &portcullis::certs::Layout::in_dir(certs.path()),
        &["127.0.0.1".to_string()],
        false,
    )
    .unwrap();
    let reg = DockerRegistry::start_tls(
        &certs.path().join("server.crt"),
        &certs.path().join("server.key"),
    );
    let mut o = Options::upstream("unused");
    o.backend_toml = Some(format!(
        "[upstream]\nca = \"{}\"\n[[upstream.server]]\nurl = \"https://127.0.0.1:{}\"\n",
        certs.path().join("ca.crt").display(),
        reg.port
    ));
    let p = Portcullis::start(o).await;
    let c = Client::h2(&p.ca());
    let a = c.get(&p.url("/v2/"), ALICE).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    let (_, layer) = seed(&c, &p, "tls/up").await;
    let blob = c
        .get(&p.url(&format!("/v2/tls/up/blobs/{layer}")), ALICE)
        .await;
    assert_eq!(blob.body.len(), 50_000);

    // Without the right CA the upstream is not trusted: 502, never plaintext.
    let other = tempfile::tempdir().unwrap();
    portcullis::certs::generate(
        &portcullis::certs::Layout::in_dir(other.path()),
        &["x".to_string()],
        false,
    )
    .unwrap();
    let mut o = Options::upstream("unused");
    o.backend_toml = Some(format!(
        "[upstream]\nca = \"{}\"\n[[upstream.server]]\nurl = \"https://127.0.0.1:{}\"\n",
        other.path().join("ca.crt").display(),
        reg.port
    ));
    let p2 = Portcullis::start(o).await;
    let a = Client::h1(&p2.ca()).get(&p2.url("/v2/"), ALICE).await;
    assert_eq!(a.status, StatusCode::BAD_GATEWAY);
}
