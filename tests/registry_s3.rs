//! The bundled registry on S3 (a real s3s-fs): every API test of the filesystem
//! backend (tests/registry_api/shared.rs), and what object storage adds: distribution's
//! keys exactly (a bucket written by registry:2 serves, and the other way round; an
//! `fs` tree copied into a bucket serves), presigned redirects, listings that page.

mod support;

use bytes::Bytes;
use http::StatusCode;
use portcullis::body;
use serde_json::json;
use std::time::Duration;
use support::oci::{assert_same_image, image, skopeo, two_platform_image, Server};
use support::s3::S3Server;
use support::*;

thread_local! {
    /// The S3 servers of this test (one per registry it starts); killed with the
    /// test's thread.
    static STORES: std::cell::RefCell<Vec<S3Server>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The registry on a fresh bucket of its own, below the prefix `registry`.
fn base_options() -> Options {
    let s3 = S3Server::start();
    let o = Options::registry().s3(&s3, "registry");
    STORES.with(|v| v.borrow_mut().push(s3));
    o
}

/// Where the registry's keys are files: s3s-fs keeps object `k` of the bucket as the
/// file `<bucket>/k`.
fn data_dir(_api: &Api) -> std::path::PathBuf {
    STORES.with(|v| {
        v.borrow()
            .last()
            .expect("a registry on S3")
            .bucket_dir()
            .join("registry")
    })
}

/// Options for several instances on one storage: one bucket (`dir` is not needed).
fn shared_storage(_dir: &std::path::Path) -> Options {
    base_options()
}

include!("registry_api/shared.rs");

/// On moto: distribution's S3 driver resumes its uploads with ListMultipartUploads,
/// which s3s-fs lacks.
#[test]
fn a_bucket_written_by_docker_registry_is_served_and_the_other_way_round() {
    let work = tempfile::tempdir().unwrap();
    let s3 = S3Server::moto();
    let mut reg = DockerRegistry::start_s3(&s3, "shared");
    let img = image(&work.path().join("src"), &[6 << 20, 2048]);
    let dst = format!("docker://127.0.0.1:{}/old/app:v1", reg.port);
    skopeo(&["copy", "--dest-tls-verify=false", &img.source(), &dst]);
    reg.kill();

    let opts = Options::registry().s3(&s3, "shared");
    let server = Server::start(&work.path().join("p"), &opts);
    let back = work.path().join("back");
    server.pull("old/app:v1", &back, false);
    assert_same_image(&back, &img);

    let two = two_platform_image(&work.path().join("src2"), &[7 << 20, 4096]);
    server.push(&two, "new/app:v1", true);
    let reg = DockerRegistry::start_s3(&s3, "shared");
    let back2 = work.path().join("back2");
    let src = format!("docker://127.0.0.1:{}/new/app:v1", reg.port);
    skopeo(&[
        "copy",
        "--all",
        "--src-tls-verify=false",
        &src,
        &format!("oci:{}:v1", back2.display()),
    ]);
    assert_same_image(&back2, &two);
}

fn copy_tree(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let (src, dst) = (e.path(), to.join(e.file_name()));
        if e.file_type().unwrap().is_dir() {
            copy_tree(&src, &dst);
        } else {
            std::fs::copy(&src, &dst).unwrap();
        }
    }
}

#[test]
fn a_filesystem_tree_copied_into_a_bucket_serves() {
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("fs-data");
    let img = image(&work.path().join("src"), &[2 << 20, 1000]);
    {
        let server = Server::start(&work.path().join("fs"), &Options::registry().root(&root));
        server.push(&img, "moved/app:v1", false);
    }
    let s3 = S3Server::start();
    copy_tree(&root.join("docker"), &s3.bucket_dir().join("moved/docker"));
    let server = Server::start(
        &work.path().join("p"),
        &Options::registry().s3(&s3, "moved"),
    );
    let back = work.path().join("back");
    server.pull("moved/app:v1", &back, false);
    assert_same_image(&back, &img);
}

/// GET a plain-HTTP URL with no credential of ours (a presigned URL).
async fn fetch(url: &str) -> (StatusCode, Bytes) {
    use http_body_util::BodyExt;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Empty<Bytes>>();
    let r = client.get(url.parse().unwrap()).await.unwrap();
    let status = r.status();
    (status, r.into_body().collect().await.unwrap().to_bytes())
}

#[tokio::test]
async fn redirect_answers_blob_gets_with_a_presigned_url_and_keeps_head_local() {
    let api = Api::with(base_options().redirect(true)).await;
    let data = vec![42u8; 3 << 20];
    let d = api.push_blob("re/direct", &data).await;
    let get = api.get(&format!("/v2/re/direct/blobs/{d}")).await;
    assert_eq!(get.status, StatusCode::TEMPORARY_REDIRECT, "{}", get.text());
    assert_eq!(get.header("docker-content-digest"), d);
    let location = get.header("location").to_string();
    assert!(location.contains("X-Amz-Signature="), "{location}");
    let (status, body) = fetch(&location).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(format!("sha256:{}", sha256_hex(&body)), d);
    let head = api
        .call(
            "HEAD",
            &format!("/v2/re/direct/blobs/{d}"),
            &[],
            Bytes::new(),
        )
        .await;
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(head.header("content-length"), data.len().to_string());
    // Blobs unknown to the repository are still 404 here, never a redirect.
    let other = api.get(&format!("/v2/re/other/blobs/{d}")).await;
    assert_eq!(other.oci_code(), "BLOB_UNKNOWN");
}

/// A 200 MiB layer pushed and pulled with skopeo through an instance on S3: the
/// instance holds at most a multipart part and a few frames of it at a time.
#[test]
fn a_large_layer_streams_through_an_instance_on_s3_with_flat_memory() {
    const BIG: usize = 200 << 20;
    let work = tempfile::tempdir().unwrap();
    let s3 = S3Server::start();
    let server = Server::start(&work.path().join("p"), &Options::registry().s3(&s3, "m"));
    let img = image(&work.path().join("src"), &[10 << 10, BIG, 1 << 20]);
    let before = server.peak_rss_kib();
    server.push(&img, "m/a:v1", false);
    let back = work.path().join("back");
    server.pull("m/a:v1", &back, false);
    let after = server.peak_rss_kib();
    assert_same_image(&back, &img);
    eprintln!(
        "registry on S3, peak RSS: {before} KiB before, {after} KiB after a {} MiB push and pull",
        (2 * BIG) >> 20
    );
    assert!(after < 64 * 1024, "peak RSS {after} KiB");
    assert!(
        after - before < 40 * 1024,
        "memory grew by {} KiB",
        after - before
    );
}

/// A monolithic upload (digest given up front) goes straight to the blob key: while
/// its body streams in, no upload session exists in the bucket; nothing is visible when
/// the digest is wrong; small and large (multipart) alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_digest_given_up_front_streams_straight_into_the_blob_key() {
    let api = Api::start().await;
    let blobs = data_dir(&api).join("docker/registry/v2/blobs/sha256");
    let uploads = data_dir(&api).join("docker/registry/v2/repositories/d/m/_uploads");
    for size in [1000usize, (12 << 20) + 7] {
        let data: Vec<u8> = (0..size).map(|i| (i % 241) as u8).collect();
        let d = format!("sha256:{}", sha256_hex(&data));
        // All but the last byte, then a look at the bucket, then the last byte.
        let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(2);
        let first = Bytes::copy_from_slice(&data[..size - 1]);
        let stream =
            futures_util::stream::unfold((Some(first), rx), |(first, mut rx)| async move {
                let chunk = match first {
                    Some(f) => f,
                    None => rx.recv().await?,
                };
                Some((
                    Ok::<_, body::BoxError>(http_body::Frame::data(chunk)),
                    (None, rx),
                ))
            });
        let req = request(
            "POST",
            &api.p.url(&format!("/v2/d/m/blobs/uploads/?digest={d}")),
            ALICE,
        )
        .header("content-length", size.to_string())
        .body(body::boxed(http_body_util::StreamBody::new(stream)))
        .unwrap();
        let c = api.c.clone();
        let sent = tokio::spawn(async move { c.send_streaming(req).await.map(|r| r.status()) });
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(
            files_under(&uploads),
            0,
            "no session while a monolithic upload streams"
        );
        tx.send(Bytes::copy_from_slice(&data[size - 1..]))
            .await
            .unwrap();
        drop(tx); // the body's end (HTTP/2 ends a stream by flag, not by length)
        assert_eq!(sent.await.unwrap().unwrap(), StatusCode::CREATED);
        let hex = &d[7..];
        let stored = std::fs::read(blobs.join(&hex[..2]).join(hex).join("data")).unwrap();
        assert!(stored == data, "the blob key holds the bytes");

        let wrong = format!("sha256:{}", "ab".repeat(32));
        let mut other = data.clone();
        other[0] ^= 1;
        let a = api
            .call(
                "POST",
                &format!("/v2/d/m/blobs/uploads/?digest={wrong}"),
                &[],
                other,
            )
            .await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.text());
        assert_eq!(a.oci_code(), "DIGEST_INVALID");
        assert!(
            !blobs.join("ab").exists(),
            "nothing visible under a wrong digest"
        );
        assert_eq!(files_under(&uploads), 0);
    }
}

/// A store that keeps failing (503 SlowDown on every request, after the client's own
/// retries) answers 503 with `Retry-After` and an OCI error, not 500; once the store is
/// back, so is the registry, with nothing lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_keeps_failing_answers_503_and_the_registry_recovers() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s3 = S3Server::start();
    let api = Api::with(Options::registry().s3(&s3, "u")).await;
    let (manifest, _) = api.image("u/a", "v1", "kept").await;
    s3.stop();
    let stub = tokio::net::TcpListener::bind(("127.0.0.1", s3.port()))
        .await
        .unwrap();
    let stub = tokio::spawn(async move {
        while let Ok((mut c, _)) = stub.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                let _ = c.read(&mut buf).await;
                let body = "<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>";
                let _ = c
                    .write_all(format!("HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/xml\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len()).as_bytes())
                    .await;
            });
        }
    });
    let a = api.get("/v2/u/a/manifests/v1").await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE, "{}", a.text());
    assert_eq!(a.header("retry-after"), "5");
    assert_eq!(a.oci_code(), "UNKNOWN");
    assert!(!a.text().contains(&s3.secret_key));
    stub.abort();
    let _ = stub.await;
    s3.restart();
    let back = api.get("/v2/u/a/manifests/v1").await;
    assert_eq!(back.status, StatusCode::OK);
    assert_eq!(back.body.to_vec(), manifest);
}
