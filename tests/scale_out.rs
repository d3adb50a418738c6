//! Scale-out (DESIGN.md "Scale-out and object storage"): three stateless Portcullis
//! instances on one bucket of a real S3 server (s3s-fs), behind a fourth Portcullis as
//! their balancer. Any instance takes any request: an upload begun on one continues on
//! the others, two PATCHes at one offset on two instances give one 202 and one 416,
//! and losing an instance (kill -9) costs the balancer's clients no read.

mod support;

use bytes::Bytes;
use http::StatusCode;
use portcullis::body;
use std::path::PathBuf;
use std::time::Duration;
use support::oci::{assert_same_image, image, Server};
use support::s3::S3Server;
use support::*;

const ALICE: Option<(&str, &str)> = Some(BCRYPT_USER);

/// The instances, their balancer, and what they stand on.
struct Fleet {
    instances: Vec<Server>,
    balancer: Server,
    /// The CA of every instance's and the balancer's certificate.
    ca: PathBuf,
    _s3: S3Server,
    _work: tempfile::TempDir,
}

impl Fleet {
    fn start(n: usize) -> Fleet {
        let work = tempfile::tempdir().unwrap();
        let s3 = S3Server::start();
        let certs = work.path().join("certs");
        portcullis::certs::generate(
            &portcullis::certs::Layout::in_dir(&certs),
            &["127.0.0.1".to_string(), "localhost".to_string()],
            false,
        )
        .unwrap();
        let tls = |o: Options| {
            o.certificate(certs.join("server.crt"))
                .key(certs.join("server.key"))
        };
        let instances: Vec<Server> = (0..n)
            .map(|i| {
                let o = tls(Options::registry().s3(&s3, "f"));
                Server::start(&work.path().join(format!("i{i}")), &o)
            })
            .collect();
        let mut o = Options::upstream(format!("https://127.0.0.1:{}", instances[0].port));
        for s in &instances[1..] {
            o = o.server(format!("https://127.0.0.1:{}", s.port));
        }
        let o = tls(o.upstream_ca(certs.join("ca.crt")));
        let balancer = Server::start(&work.path().join("balancer"), &o);
        for s in instances.iter().chain([&balancer]) {
            // skopeo's trust folder of each server: the shared CA.
            std::fs::create_dir_all(s.dir.join("certs")).unwrap();
            std::fs::copy(certs.join("ca.crt"), s.dir.join("certs/ca.crt")).unwrap();
        }
        Fleet {
            instances,
            balancer,
            ca: certs.join("ca.crt"),
            _s3: s3,
            _work: work,
        }
    }

    fn url(s: &Server, path: &str) -> String {
        if path.starts_with("https://") {
            return path.to_string();
        }
        format!("https://127.0.0.1:{}{path}", s.port)
    }
}

async fn call(
    c: &Client,
    s: &Server,
    method: &str,
    path: &str,
    h: &[(&str, &str)],
    b: Bytes,
) -> Answer {
    let mut r = request(method, &Fleet::url(s, path), ALICE);
    for (k, v) in h {
        r = r.header(*k, *v);
    }
    c.send(r.body(body::full(b)).unwrap()).await
}

/// The closing PUT of an upload at `loc` with its digest.
async fn finish(c: &Client, s: &Server, loc: &str, digest: &str) -> Answer {
    let sep = if loc.contains('?') { '&' } else { '?' };
    let url = format!("{loc}{sep}digest={digest}");
    call(c, s, "PUT", &url, &[], Bytes::new()).await
}

/// The path of an upload's Location, whatever host it names: the state token in it
/// is good on every instance.
fn path_of(location: &str) -> String {
    match location.strip_prefix("https://") {
        Some(rest) => rest[rest.find('/').unwrap()..].to_string(),
        None => location.to_string(),
    }
}

fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 % 251) as u8).collect()
}

#[test]
fn skopeo_round_trips_through_the_balancer() {
    let fleet = Fleet::start(3);
    let work = tempfile::tempdir().unwrap();
    let img = image(&work.path().join("src"), &[9 << 20, 3 << 20, 4096]);
    fleet.balancer.push(&img, "f/a:v1", false);
    // Pulled back through the balancer, and from each instance directly.
    for (i, s) in [&fleet.balancer]
        .into_iter()
        .chain(&fleet.instances)
        .enumerate()
    {
        let back = work.path().join(format!("back{i}"));
        s.pull("f/a:v1", &back, false);
        assert_same_image(&back, &img);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_moves_between_instances_and_finishes_on_a_third() {
    let fleet = tokio::task::spawn_blocking(|| Fleet::start(3))
        .await
        .unwrap();
    let c = Client::h1(&fleet.ca);
    let [a, b, third] = [
        &fleet.instances[0],
        &fleet.instances[1],
        &fleet.instances[2],
    ];
    let data = pattern((12 << 20) + 12345);
    let digest = format!("sha256:{}", sha256_hex(&data));
    let cut = [0, 5 << 20, 9 << 20, data.len()];

    let start = call(&c, a, "POST", "/v2/m/m/blobs/uploads/", &[], Bytes::new()).await;
    assert_eq!(start.status, StatusCode::ACCEPTED, "{}", start.text());
    let mut loc = path_of(start.header("location"));
    for (i, w) in cut.windows(2).enumerate() {
        // The PATCHes alternate between the first two instances.
        let s = [a, b][i % 2];
        let range = format!("{}-{}", w[0], w[1] - 1);
        let p = call(
            &c,
            s,
            "PATCH",
            &loc,
            &[("content-range", range.as_str())],
            Bytes::copy_from_slice(&data[w[0]..w[1]]),
        )
        .await;
        assert_eq!(p.status, StatusCode::ACCEPTED, "PATCH {i}: {}", p.text());
        assert_eq!(p.header("range"), format!("0-{}", w[1] - 1));
        loc = path_of(p.header("location"));
    }
    // Where the upload stands, asked of the instance that saw none of it.
    let st = call(&c, third, "GET", &loc, &[], Bytes::new()).await;
    assert_eq!(st.status, StatusCode::NO_CONTENT);
    assert_eq!(st.header("range"), format!("0-{}", data.len() - 1));
    let put = finish(&c, third, &loc, &digest).await;
    assert_eq!(put.status, StatusCode::CREATED, "{}", put.text());
    for s in [a, b, third] {
        let got = call(
            &c,
            s,
            "GET",
            &format!("/v2/m/m/blobs/{digest}"),
            &[],
            Bytes::new(),
        )
        .await;
        assert_eq!(got.status, StatusCode::OK);
        assert_eq!(format!("sha256:{}", sha256_hex(&got.body)), digest);
    }
}

/// A PATCH whose body is held open: the request streams all but the last byte (in
/// 1 MiB frames, counted as the client hands them to the connection), the rest when
/// asked.
struct HeldPatch {
    last: tokio::sync::mpsc::Sender<Bytes>,
    sent: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    answer: tokio::task::JoinHandle<Option<(StatusCode, http::HeaderMap)>>,
}

fn held_patch(c: &Client, url: String, offset: usize, data: Vec<u8>) -> HeldPatch {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(4);
    let n = data.len();
    let data = Bytes::from(data);
    let frames: std::collections::VecDeque<Bytes> = (0..n - 1)
        .step_by(1 << 20)
        .map(|at| data.slice(at..(at + (1 << 20)).min(n - 1)))
        .collect();
    let sent = std::sync::Arc::new(AtomicUsize::new(0));
    let counter = sent.clone();
    let stream = futures_util::stream::unfold(
        (frames, rx, counter),
        |(mut frames, mut rx, counter)| async move {
            let chunk = match frames.pop_front() {
                Some(f) => f,
                None => rx.recv().await?,
            };
            counter.fetch_add(chunk.len(), Ordering::Relaxed);
            Some((
                Ok::<_, body::BoxError>(http_body::Frame::data(chunk)),
                (frames, rx, counter),
            ))
        },
    );
    let req = request("PATCH", &url, ALICE)
        .header("content-range", format!("{offset}-{}", offset + n - 1))
        .header("content-length", n.to_string())
        .body(body::boxed(http_body_util::StreamBody::new(stream)))
        .unwrap();
    let c = c.clone();
    let answer = tokio::spawn(async move {
        let r = c.send_streaming(req).await.ok()?;
        Some((r.status(), r.headers().clone()))
    });
    HeldPatch {
        last: tx,
        sent,
        answer,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_patches_at_one_offset_on_two_instances_give_one_202_and_one_416() {
    let fleet = tokio::task::spawn_blocking(|| Fleet::start(2))
        .await
        .unwrap();
    let c = Client::h1(&fleet.ca);
    let [a, b] = [&fleet.instances[0], &fleet.instances[1]];
    let start = call(&c, a, "POST", "/v2/r/m/blobs/uploads/", &[], Bytes::new()).await;
    let loc = path_of(start.header("location"));
    let one = pattern(3 << 20);
    let other: Vec<u8> = one.iter().map(|x| x ^ 0x55).collect();
    // Both PATCHes begin at offset 0 and send all but their last byte before either
    // ends: both passed the offset check, and only the commit can tell them apart.
    let pa = held_patch(&c, Fleet::url(a, &loc), 0, one.clone());
    let pb = held_patch(&c, Fleet::url(b, &loc), 0, other.clone());
    tokio::time::sleep(Duration::from_millis(500)).await;
    pa.last
        .send(Bytes::copy_from_slice(&one[one.len() - 1..]))
        .await
        .unwrap();
    let (sa, ha) = pa.answer.await.unwrap().unwrap();
    assert_eq!(sa, StatusCode::ACCEPTED);
    assert_eq!(ha["range"], format!("0-{}", one.len() - 1).as_str());
    pb.last
        .send(Bytes::copy_from_slice(&other[other.len() - 1..]))
        .await
        .unwrap();
    let (sb, hb) = pb.answer.await.unwrap().unwrap();
    assert_eq!(sb, StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(
        hb["range"],
        format!("0-{}", one.len() - 1).as_str(),
        "the loser is told where the upload is"
    );
    // Only the winner's bytes are in the upload.
    let digest = format!("sha256:{}", sha256_hex(&one));
    let put = finish(&c, b, &loc, &digest).await;
    assert_eq!(put.status, StatusCode::CREATED, "{}", put.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_killed_mid_run_costs_no_failed_read_through_the_balancer() {
    let mut fleet = tokio::task::spawn_blocking(|| Fleet::start(3))
        .await
        .unwrap();
    let c = Client::h1(&fleet.ca);
    let bal = &fleet.balancer;
    let blobs: Vec<(String, usize)> = {
        let mut out = Vec::new();
        for i in 0..8usize {
            let data = pattern(1000 + i * 3000);
            let d = format!("sha256:{}", sha256_hex(&data));
            let a = call(
                &c,
                bal,
                "POST",
                &format!("/v2/r/r/blobs/uploads/?digest={d}"),
                &[],
                Bytes::from(data.clone()),
            )
            .await;
            assert_eq!(a.status, StatusCode::CREATED, "{}", a.text());
            out.push((d, data.len()));
        }
        out
    };
    let bal_port = bal.port;
    let reader = {
        let c = c.clone();
        let blobs = blobs.clone();
        tokio::spawn(async move {
            let mut failed = Vec::new();
            let mut reads = 0;
            for round in 0..60 {
                for (d, len) in &blobs {
                    let url = format!("https://127.0.0.1:{bal_port}/v2/r/r/blobs/{d}");
                    let a = c.get(&url, ALICE).await;
                    reads += 1;
                    if a.status != StatusCode::OK || a.body.len() != *len {
                        failed.push(format!(
                            "round {round}: {d}: {} ({} bytes)",
                            a.status,
                            a.body.len()
                        ));
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            (reads, failed)
        })
    };
    tokio::time::sleep(Duration::from_millis(600)).await;
    fleet.instances[1].kill();
    let (reads, failed) = reader.await.unwrap();
    assert_eq!(reads, 60 * blobs.len());
    assert!(
        failed.is_empty(),
        "{} of {reads} reads failed: {failed:?}",
        failed.len()
    );
}

/// The size an instance reports for an upload (its `Range` end + 1).
fn committed(a: &Answer) -> usize {
    a.header("range")
        .rsplit('-')
        .next()
        .and_then(|e| e.parse::<usize>().ok())
        .map_or(0, |e| e + 1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_patch_then_the_upload_resumes_on_another_instance() {
    let mut fleet = tokio::task::spawn_blocking(|| Fleet::start(2))
        .await
        .unwrap();
    let c = Client::h1(&fleet.ca);
    let data = pattern(24 << 20);
    let digest = format!("sha256:{}", sha256_hex(&data));
    let head = 4 << 20;
    let a = &fleet.instances[0];
    let start = call(&c, a, "POST", "/v2/c/m/blobs/uploads/", &[], Bytes::new()).await;
    let loc = path_of(start.header("location"));
    let p = call(
        &c,
        a,
        "PATCH",
        &loc,
        &[("content-range", &format!("0-{}", head - 1))],
        Bytes::copy_from_slice(&data[..head]),
    )
    .await;
    assert_eq!(p.status, StatusCode::ACCEPTED);
    let loc = path_of(p.header("location"));

    // The rest goes to the other instance, which dies with most of it received.
    let b_port = fleet.instances[1].port;
    let held = held_patch(
        &c,
        format!("https://127.0.0.1:{b_port}{loc}"),
        head,
        data[head..].to_vec(),
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    // Most of it handed to the connection (at most a few MiB still in buffers): the
    // instance has received, and begun storing, well over one part.
    while held.sent.load(std::sync::atomic::Ordering::Relaxed) < 16 << 20 {
        assert!(
            !held.answer.is_finished(),
            "the PATCH was answered before its end: {:?}",
            held.answer.await
        );
        assert!(
            std::time::Instant::now() < deadline,
            "the PATCH never streamed"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    fleet.instances[1].kill();
    drop(held.last);
    let _ = held.answer.await;

    // The survivor says where the upload stands: only the first PATCH counts.
    let a = &fleet.instances[0];
    let st = call(&c, a, "GET", &loc, &[], Bytes::new()).await;
    assert_eq!(st.status, StatusCode::NO_CONTENT);
    assert_eq!(committed(&st), head);
    let p = call(
        &c,
        a,
        "PATCH",
        &loc,
        &[("content-range", &format!("{head}-{}", data.len() - 1))],
        Bytes::copy_from_slice(&data[head..]),
    )
    .await;
    assert_eq!(p.status, StatusCode::ACCEPTED, "{}", p.text());
    let loc = path_of(p.header("location"));
    let put = finish(&c, a, &loc, &digest).await;
    assert_eq!(put.status, StatusCode::CREATED, "{}", put.text());
    let got = call(
        &c,
        a,
        "GET",
        &format!("/v2/c/m/blobs/{digest}"),
        &[],
        Bytes::new(),
    )
    .await;
    assert_eq!(format!("sha256:{}", sha256_hex(&got.body)), digest);
}

/// Two instances on one filesystem root: what one remembers of the storage (hints:
/// links, sizes, small blobs' bytes) never hides another's push, and another's delete
/// is seen within the hints' lifetime, not never.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_instance_sees_another_ones_push_at_once_and_its_delete_within_the_hint_lifetime() {
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("shared");
    let o = Options::registry()
        .root(&root)
        .delete(true)
        .secret("one-secret");
    let a = Server::start(&work.path().join("a"), &o);
    let b = Server::start(&work.path().join("b"), &o);
    let (ca, cb) = (
        Client::h1(&a.dir.join("certs/ca.crt")),
        Client::h1(&b.dir.join("certs/ca.crt")),
    );
    let data = Bytes::from_static(b"a small blob both instances serve");
    let digest = format!("sha256:{}", sha256_hex(&data));
    let blob = format!("/v2/hint/shared/blobs/{digest}");
    let url = |s: &Server, p: &str| format!("https://127.0.0.1:{}{p}", s.port);
    async fn get(c: &Client, u: &str) -> Answer {
        c.send(request("GET", u, ALICE).body(body::empty()).unwrap())
            .await
    }
    let (on_a, on_b) = (url(&a, &blob), url(&b, &blob));
    // Absent, looked at on a: then pushed through b, a sees it at once (no absence is
    // remembered).
    assert_eq!(get(&ca, &on_a).await.status, 404);
    let push = request(
        "POST",
        &url(
            &b,
            &format!("/v2/hint/shared/blobs/uploads/?digest={digest}"),
        ),
        ALICE,
    )
    .body(body::full(data.clone()))
    .unwrap();
    assert_eq!(cb.send(push).await.status, 201);
    let got = get(&ca, &on_a).await;
    assert_eq!((got.status.as_u16(), got.body.clone()), (200, data.clone()));
    // Deleted through b: b answers 404 at once; a within the hints' lifetime.
    let del = request("DELETE", &url(&b, &blob), ALICE)
        .body(body::empty())
        .unwrap();
    assert_eq!(cb.send(del).await.status, 202);
    assert_eq!(get(&cb, &on_b).await.status, 404);
    let deleted = std::time::Instant::now();
    let lifetime = portcullis::registry::hints::TTL;
    loop {
        if get(&ca, &on_a).await.status == 404 {
            break;
        }
        assert!(
            deleted.elapsed() < lifetime + Duration::from_secs(10),
            "instance a still serves a blob deleted through b {:?} ago",
            deleted.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
