//! The bundled registry through TLS and auth: every OCI Distribution v1.1 endpoint and
//! error code, as a client sees them.

mod support;

use bytes::Bytes;
use http::StatusCode;
use portcullis::body;
use serde_json::json;
use std::time::Duration;
use support::*;

/// The registry on the filesystem (`data` beside proxy.toml).
fn base_options() -> Options {
    Options::registry()
}

/// Where the registry's keys are files: its data folder.
fn data_dir(api: &Api) -> std::path::PathBuf {
    api.p.dir.path().join("data")
}

/// Options for several instances on one storage: the folder `dir`.
fn shared_storage(dir: &std::path::Path) -> Options {
    Options::registry().root(dir)
}

include!("registry_api/shared.rs");

#[tokio::test]
async fn sha512_blobs_are_verified() {
    let api = Api::start().await;
    use sha2::Digest;
    let data = b"sha512 content".to_vec();
    let d = format!("sha512:{}", hex::encode(sha2::Sha512::digest(&data)));
    let a = api
        .call(
            "POST",
            &format!("/v2/x/blobs/uploads/?digest={d}"),
            &[],
            data.clone(),
        )
        .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.text());
    let get = api.get(&format!("/v2/x/blobs/{d}")).await;
    assert_eq!(&get.body[..], &data[..]);
    let wrong = format!("sha512:{}", "a".repeat(128));
    let a = api
        .call(
            "POST",
            &format!("/v2/x/blobs/uploads/?digest={wrong}"),
            &[],
            data,
        )
        .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert_eq!(a.oci_code(), "DIGEST_INVALID");
}

#[tokio::test]
async fn an_upload_begun_on_one_instance_finishes_on_another() {
    let shared = tempfile::tempdir().unwrap();
    let o1 = Options::registry()
        .root(shared.path())
        .secret("shared-secret");
    let o2 = o1.clone();
    let a = Api::with(o1).await;
    let b = Api::with(o2).await;
    let s = a
        .call("POST", "/v2/ha/blobs/uploads/", &[], Bytes::new())
        .await;
    let loc = s.header("location").to_string();
    let p = a
        .call(
            "PATCH",
            &loc,
            &[("content-range", "0-4")],
            b"hello".to_vec(),
        )
        .await;
    assert_eq!(p.status, StatusCode::ACCEPTED);
    // Same path and state on the other instance (different port).
    let path = &loc[loc.find("/v2/").unwrap()..];
    let status = b.get(path).await;
    assert_eq!(status.header("range"), "0-4");
    let p = b
        .call(
            "PATCH",
            path,
            &[("content-range", "5-10")],
            b" world".to_vec(),
        )
        .await;
    assert_eq!(p.status, StatusCode::ACCEPTED, "{}", p.text());
    let d = format!("sha256:{}", sha256_hex(b"hello world"));
    let put = a
        .call("PUT", &format!("{path}&digest={d}"), &[], Bytes::new())
        .await;
    assert_eq!(put.status, StatusCode::CREATED, "{}", put.text());
    assert_eq!(
        b.get(&format!("/v2/ha/blobs/{d}")).await.body,
        "hello world"
    );
}

#[tokio::test]
async fn online_gc_runs_on_its_interval_while_serving() {
    let api = Api::with(
        Options::registry()
            .gc_interval(Duration::from_millis(300))
            .gc_grace(Duration::from_secs(1)),
    )
    .await;
    // Grace 1 s: the image's blobs are referenced long before they are that old, so
    // the collector can never catch them between upload and manifest.
    let (_, kept) = api.image("online/gc", "v1", "k").await;
    let orphan = api.push_blob("online/gc", b"nobody wants me").await;
    // Watched on disk: a GET would vouch for the blob and so keep it (gc::epoch).
    let file = data_dir(&api)
        .join("docker/registry/v2/blobs/sha256")
        .join(&orphan[7..9])
        .join(&orphan[7..])
        .join("data");
    assert!(file.exists());
    // The collection waits gc::epoch::WAIT (12 s) after announcing itself.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    loop {
        if !file.exists() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "online collection never ran"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(
        api.get(&format!("/v2/online/gc/blobs/{orphan}"))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        api.get(&format!("/v2/online/gc/manifests/{kept}"))
            .await
            .status,
        200
    );
}

/// PUT and DELETE of one tag at once, through two instances on one storage (each with
/// its own in-process locks, so the order of writes on storage is what is tested too):
/// never a 5xx, and after every round the tag resolves or is not listed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_put_and_delete_of_one_tag_leave_it_resolving_or_absent() {
    let shared = tempfile::tempdir().unwrap();
    let o1 = Options::registry()
        .root(shared.path())
        .secret("shared-secret");
    let o2 = o1.clone();
    let a = std::sync::Arc::new(Api::with(o1).await);
    let b = std::sync::Arc::new(Api::with(o2).await);
    let (m, _) = a.image("race/tag", "base", "r").await;
    let m = std::sync::Arc::new(m);
    let rounds = 200;
    let (mut listed_dangling, mut server_errors) = (0, Vec::new());
    for round in 0..rounds {
        let put = |api: std::sync::Arc<Api>, m: std::sync::Arc<Vec<u8>>| {
            tokio::spawn(async move { api.put_manifest("race/tag", "t", OCI_MANIFEST, &m).await })
        };
        let p1 = put(a.clone(), m.clone());
        let del = tokio::spawn({
            let b = b.clone();
            async move {
                b.call("DELETE", "/v2/race/tag/manifests/t", &[], Bytes::new())
                    .await
            }
        });
        let p2 = put(b.clone(), m.clone());
        for (what, r) in [
            ("PUT", p1.await.unwrap()),
            ("DELETE", del.await.unwrap()),
            ("PUT", p2.await.unwrap()),
        ] {
            if r.status.is_server_error() {
                server_errors.push(format!("round {round}: {what} {} {}", r.status, r.text()));
            } else if what == "PUT" {
                assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
            } else {
                assert!(
                    r.status == StatusCode::ACCEPTED || r.status == StatusCode::NOT_FOUND,
                    "{} {}",
                    r.status,
                    r.text()
                );
            }
        }
        let list = a.get("/v2/race/tag/tags/list").await;
        assert_eq!(list.status, StatusCode::OK, "{}", list.text());
        let tags: serde_json::Value = serde_json::from_slice(&list.body).unwrap();
        let listed = tags["tags"].as_array().unwrap().iter().any(|t| t == "t");
        let got = b.get("/v2/race/tag/manifests/t").await;
        if listed && got.status != StatusCode::OK {
            listed_dangling += 1;
        }
        if got.status == StatusCode::OK {
            assert_eq!(got.body.to_vec(), *m);
        }
    }
    assert!(
        server_errors.is_empty() && listed_dangling == 0,
        "{} server errors (first: {:?}); {listed_dangling} of {rounds} rounds ended with a listed tag that does not resolve",
        server_errors.len(),
        server_errors.first()
    );
    // Whatever state the last round left, the tag can be deleted and is then gone.
    let del = b
        .call("DELETE", "/v2/race/tag/manifests/t", &[], Bytes::new())
        .await;
    assert!(del.status == StatusCode::ACCEPTED || del.status == StatusCode::NOT_FOUND);
    let list = a.get("/v2/race/tag/tags/list").await;
    let tags: serde_json::Value = serde_json::from_slice(&list.body).unwrap();
    assert_eq!(tags["tags"], json!(["base"]));
}

/// A tag folder whose `current` link is missing (what a crash or the old race left):
/// not listed, not resolvable, and deletable (distribution 3 deletes the folder).
#[tokio::test]
async fn a_tag_folder_without_current_link_is_not_listed_and_is_deletable() {
    let api = Api::start().await;
    let (_, d) = api.image("ghost/repo", "v1", "g").await;
    let tags_dir = api
        .p
        .dir
        .path()
        .join("data/docker/registry/v2/repositories/ghost/repo/_manifests/tags");
    let hex = d.strip_prefix("sha256:").unwrap();
    let index = tags_dir.join("ghost/index/sha256").join(hex);
    std::fs::create_dir_all(&index).unwrap();
    std::fs::write(index.join("link"), &d).unwrap();

    let list = api.get("/v2/ghost/repo/tags/list").await;
    let tags: serde_json::Value = serde_json::from_slice(&list.body).unwrap();
    assert_eq!(tags["tags"], json!(["v1"]), "{}", list.text());
    let get = api.get("/v2/ghost/repo/manifests/ghost").await;
    assert_eq!(
        (get.status, get.oci_code().as_str()),
        (StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN")
    );
    let del = api
        .call(
            "DELETE",
            "/v2/ghost/repo/manifests/ghost",
            &[],
            Bytes::new(),
        )
        .await;
    assert_eq!(del.status, StatusCode::ACCEPTED, "{}", del.text());
    assert!(!tags_dir.join("ghost").exists(), "the folder is removed");
    let again = api
        .call(
            "DELETE",
            "/v2/ghost/repo/manifests/ghost",
            &[],
            Bytes::new(),
        )
        .await;
    assert_eq!(
        (again.status, again.oci_code().as_str()),
        (StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN")
    );
    assert_eq!(api.get("/v2/ghost/repo/manifests/v1").await.status, 200);
}

fn registry_of(p: &Portcullis) -> (usize, usize) {
    match &p.state.load().backend {
        portcullis::state::Backend::Registry(r) => r.upload_state_entries(),
        _ => panic!("not the bundled registry"),
    }
}

/// Uploads begun and abandoned leave no per-upload lock behind, and the cached hashes
/// stay within their bound; an upload whose hash was evicted still finishes right.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoned_uploads_leave_bounded_state_in_memory() {
    let api = std::sync::Arc::new(Api::start().await);
    let n = portcullis::registry::locks::HASH_CACHE_ENTRIES + 200;
    let mut first = None;
    let mut next = 0;
    while next < n {
        let batch: Vec<_> = (next..(next + 32).min(n))
            .map(|i| {
                let api = api.clone();
                tokio::spawn(async move {
                    let s = api
                        .call("POST", "/v2/abandon/blobs/uploads/", &[], Bytes::new())
                        .await;
                    assert_eq!(s.status, StatusCode::ACCEPTED);
                    let body = format!("upload {i}").into_bytes();
                    let range = format!("0-{}", body.len() - 1);
                    let p = api
                        .call(
                            "PATCH",
                            s.header("location"),
                            &[("content-range", &range)],
                            body.clone(),
                        )
                        .await;
                    assert_eq!(p.status, StatusCode::ACCEPTED, "{}", p.text());
                    (p.header("location").to_string(), body)
                })
            })
            .collect();
        for t in batch {
            let r = t.await.unwrap();
            first.get_or_insert(r);
        }
        next += 32;
    }
    let (locks, hashes) = registry_of(&api.p);
    assert_eq!(locks, 0, "locks of uploads nobody is working on");
    assert!(
        hashes < n,
        "{hashes} cached hashes for {n} abandoned uploads: unbounded"
    );
    // The oldest upload's hash is long evicted: it is rehashed from storage.
    let (loc, body) = first.unwrap();
    let d = format!("sha256:{}", sha256_hex(&body));
    let put = api
        .call("PUT", &format!("{loc}&digest={d}"), &[], Bytes::new())
        .await;
    assert_eq!(put.status, StatusCode::CREATED, "{}", put.text());
}

/// A small tmpfs mounted for one test (root only; CI runs as root), unmounted on drop.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(size: &str) -> SmallDisk {
        let dir = tempfile::tempdir().unwrap();
        let out = std::process::Command::new(require("mount"))
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "mount tmpfs (the test needs root): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        SmallDisk { dir }
    }

    fn path(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Bytes in every file below the mount (on tmpfs, the space in use).
    fn used(&self) -> u64 {
        fn walk(p: &std::path::Path) -> u64 {
            std::fs::read_dir(p)
                .map(|rd| {
                    rd.flatten()
                        .map(|e| match e.metadata() {
                            Ok(m) if m.is_dir() => walk(&e.path()),
                            Ok(m) => m.len(),
                            Err(_) => 0,
                        })
                        .sum()
                })
                .unwrap_or(0)
        }
        walk(self.path())
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// Disk full: 507 with an OCI error that says so, and the failed request's bytes are
/// gone (the upload is as before it, a monolithic POST leaves no session).
#[tokio::test]
async fn a_full_storage_answers_507_and_keeps_nothing_of_the_failed_request() {
    let disk = SmallDisk::mount("8m");
    let api = Api::with(Options::registry().root(disk.path())).await;
    let big: Vec<u8> = (0..12u32 << 20).map(|i| (i % 249) as u8).collect();
    let uploads = disk
        .path()
        .join("docker/registry/v2/repositories/full/disk/_uploads");

    let s = api
        .call("POST", "/v2/full/disk/blobs/uploads/", &[], Bytes::new())
        .await;
    let loc = s.header("location").to_string();
    let used_before = disk.used();
    let p = api.call("PATCH", &loc, &[], big.clone()).await;
    assert_eq!(p.status, StatusCode::INSUFFICIENT_STORAGE, "{}", p.text());
    assert_eq!(p.oci_code(), "UNKNOWN");
    assert!(p.text().contains("full"), "{}", p.text());
    assert!(
        disk.used() <= used_before,
        "the failed PATCH left {} bytes",
        disk.used() - used_before
    );
    let status = api.get(&loc).await;
    assert_eq!(status.status, StatusCode::NO_CONTENT);
    assert_eq!(status.header("range"), "0-0", "the upload is as before");

    let d = format!("sha256:{}", sha256_hex(&big));
    let sessions = std::fs::read_dir(&uploads).unwrap().count();
    let m = api
        .call(
            "POST",
            &format!("/v2/full/disk/blobs/uploads/?digest={d}"),
            &[],
            big,
        )
        .await;
    assert_eq!(m.status, StatusCode::INSUFFICIENT_STORAGE, "{}", m.text());
    assert!(m.text().contains("full"), "{}", m.text());
    assert_eq!(
        std::fs::read_dir(&uploads).unwrap().count(),
        sessions,
        "the failed monolithic POST keeps no session"
    );
    assert!(disk.used() <= used_before);

    // The space is free again: the same session takes a blob that fits.
    let small = vec![5u8; 3 << 20];
    let p = api.call("PATCH", &loc, &[], small.clone()).await;
    assert_eq!(p.status, StatusCode::ACCEPTED, "{}", p.text());
    let d = format!("sha256:{}", sha256_hex(&small));
    let put = api
        .call(
            "PUT",
            &format!("{}&digest={d}", p.header("location")),
            &[],
            Bytes::new(),
        )
        .await;
    assert_eq!(put.status, StatusCode::CREATED, "{}", put.text());
}

/// Sixty 4 MiB manifests PUT at once to the real binary: the bytes held in memory are
/// bounded by the process-wide manifest budget, not by the number of requests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_large_manifest_puts_stay_within_a_memory_budget() {
    use futures_util::StreamExt;
    let work = tempfile::tempdir().unwrap();
    let server = support::oci::Server::start(&work.path().join("p"), &Options::registry());
    // HTTP/1.1: one connection per request in flight, so all sixty bodies arrive at
    // once (one h2 connection would pace them through its flow-control window).
    let c = std::sync::Arc::new(Client::h1(&work.path().join("p/certs/ca.crt")));
    let url = |path: &str| format!("https://127.0.0.1:{}{path}", server.port);
    let config = br#"{"architecture":"amd64","os":"linux"}"#.to_vec();
    let cd = format!("sha256:{}", sha256_hex(&config));
    let a = c
        .send(
            request(
                "POST",
                &url(&format!("/v2/big/blobs/uploads/?digest={cd}")),
                ALICE,
            )
            .body(body::full(config.clone()))
            .unwrap(),
        )
        .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.text());
    let manifest = |i: usize, pad: usize| {
        serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": config.len()},
            "layers": [],
            "annotations": {"pad": format!("{i:04}{}", "x".repeat(pad))},
        }))
        .unwrap()
    };
    // Each body sends three quarters at once and the rest only at `release`: every
    // request is then in flight together, however fast the server reads, which is
    // when memory would hold all of them.
    let put = |tag: String, m: Vec<u8>, release: tokio::time::Instant| {
        let c = c.clone();
        let u = url(&format!("/v2/big/manifests/{tag}"));
        async move {
            let m = Bytes::from(m);
            let len = m.len();
            let cut = len * 3 / 4;
            let parts = [(m.slice(..cut), None), (m.slice(cut..), Some(release))];
            let parts = futures_util::stream::iter(parts).then(|(part, at)| async move {
                if let Some(at) = at {
                    tokio::time::sleep_until(at).await;
                }
                Ok::<_, body::BoxError>(http_body::Frame::data(part))
            });
            let a = c
                .send(
                    request("PUT", &u, ALICE)
                        .header("content-type", OCI_MANIFEST)
                        .header("content-length", len.to_string())
                        .body(body::boxed(http_body_util::StreamBody::new(parts)))
                        .unwrap(),
                )
                .await;
            (tag, a)
        }
    };
    // Warm up (TLS, allocator) before the baseline.
    let (_, warm) = put("warm".into(), manifest(0, 100), tokio::time::Instant::now()).await;
    assert_eq!(warm.status, StatusCode::CREATED, "{}", warm.text());
    let before = server.peak_rss_kib();

    let n = 60;
    let pad = (4 << 20) - 1024;
    // Bodies built first (slow in a debug build), so that none misses `release`.
    let bodies: Vec<_> = (0..n).map(|i| manifest(i, pad)).collect();
    assert!(bodies.iter().all(|m| m.len() <= 4 << 20));
    let release = tokio::time::Instant::now() + std::time::Duration::from_secs(3);
    let tasks: Vec<_> = bodies
        .into_iter()
        .enumerate()
        .map(|(i, m)| tokio::spawn(put(format!("t{i}"), m, release)))
        .collect();
    let mut created = 0;
    for t in tasks {
        let (tag, a) = t.await.unwrap();
        match a.status {
            StatusCode::CREATED => created += 1,
            // Waited too long for its share on a very busy machine: refused clearly.
            StatusCode::TOO_MANY_REQUESTS => assert_eq!(a.oci_code(), "TOOMANYREQUESTS"),
            s => panic!("{tag}: {s} {}", a.text()),
        }
    }
    let grew_mib = server.peak_rss_kib().saturating_sub(before) / 1024;
    eprintln!("{n} parallel 4 MiB manifest PUTs: peak RSS grew {grew_mib} MiB, {created} created");
    assert!(created >= 8, "only {created} of {n} were stored");
    // All sixty at once hold 180 MiB of bodies before `release`, and their buffers and
    // parsed copies grew past 400 MiB before the budget.
    assert!(
        grew_mib < 150,
        "peak RSS grew {grew_mib} MiB for {n} parallel 4 MiB manifests"
    );
}

/// The per-upload lock outlives a reload: a PATCH that arrives after SIGHUP's new
/// state waits for one still streaming into the same upload under the old state,
/// so their bytes never interleave and the upload ends with the right digest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_lock_is_shared_across_a_reload() {
    let api = Api::start().await;
    let start = api
        .call("POST", "/v2/reload/lock/blobs/uploads/", &[], Bytes::new())
        .await;
    assert_eq!(start.status, StatusCode::ACCEPTED);
    let loc = start.header("location").to_string();
    let first = Bytes::from(vec![b'a'; 256 << 10]);
    let second = Bytes::from(vec![b'b'; 64 << 10]);

    // PATCH A: half its body now, the rest when the test says.
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(2);
    let frames = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, body::BoxError>(http_body::Frame::data(b)), rx))
    });
    let patch_a = {
        let c = api.c.clone();
        let req = request("PATCH", &loc, ALICE)
            .body(body::boxed(http_body_util::StreamBody::new(frames)))
            .unwrap();
        tokio::spawn(async move { c.send(req).await })
    };
    tx.send(first.slice(..128 << 10)).await.unwrap();
    // A holds the upload's lock once the registry has begun appending it.
    let mut held = false;
    for _ in 0..600 {
        if registry_of(&api.p).0 == 1 {
            held = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(held, "the first PATCH never took the upload's lock");

    let config = api.p.dir.path().join("proxy.toml");
    portcullis::app::reload(&config, &api.p.state)
        .await
        .unwrap_or_else(|e| panic!("reload: {e}"));

    // PATCH B, served by the reloaded state, must wait for A.
    let patch_b = {
        let c = api.c.clone();
        let req = request("PATCH", &loc, ALICE)
            .body(body::full(second.clone()))
            .unwrap();
        tokio::spawn(async move { c.send(req).await })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        !patch_b.is_finished(),
        "a PATCH after the reload ran while one before it was still appending"
    );
    tx.send(first.slice(128 << 10..)).await.unwrap();
    drop(tx);
    let a = patch_a.await.unwrap();
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.text());
    let b = patch_b.await.unwrap();
    assert_eq!(b.status, StatusCode::ACCEPTED, "{}", b.text());
    assert_eq!(
        b.header("range"),
        format!("0-{}", first.len() + second.len() - 1)
    );
    let mut all = first.to_vec();
    all.extend_from_slice(&second);
    let put = api
        .call(
            "PUT",
            &format!(
                "{}&digest=sha256:{}",
                b.header("location"),
                sha256_hex(&all)
            ),
            &[],
            Bytes::new(),
        )
        .await;
    assert_eq!(put.status, StatusCode::CREATED, "{}", put.text());
}

/// `registry.read_only = true`: every write (upload, manifest PUT, deletes) answers
/// 405 UNSUPPORTED saying the registry is read-only, pulls keep working, and a reload
/// (what SIGHUP does) turns it on and off.
#[tokio::test]
async fn read_only_refuses_every_write_keeps_reads_and_reloads() {
    let api = Api::start().await;
    let (manifest, d) = api.image("ro/app", "v1", "before").await;
    let json: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
    let layer = json["layers"][0]["digest"].as_str().unwrap().to_string();
    let open = api
        .call("POST", "/v2/ro/app/blobs/uploads/", &[], Bytes::new())
        .await;
    let upload = open.header("location").to_string();

    let config = api.p.dir.path().join("proxy.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(text.contains("[registry]\n"), "{text}");
    std::fs::write(
        &config,
        text.replace("[registry]\n", "[registry]\nread_only = true\n"),
    )
    .unwrap();
    portcullis::app::reload(&config, &api.p.state)
        .await
        .unwrap_or_else(|e| panic!("reload: {e}"));

    let writes: Vec<(&str, String, Vec<u8>)> = vec![
        ("POST", "/v2/ro/app/blobs/uploads/".into(), vec![]),
        (
            "POST",
            format!("/v2/ro/app/blobs/uploads/?digest={layer}"),
            b"x".to_vec(),
        ),
        ("PATCH", upload.clone(), b"abc".to_vec()),
        ("PUT", format!("{upload}&digest={layer}"), vec![]),
        ("DELETE", upload.clone(), vec![]),
        ("PUT", "/v2/ro/app/manifests/v2".into(), manifest.clone()),
        ("DELETE", format!("/v2/ro/app/manifests/{d}"), vec![]),
        ("DELETE", "/v2/ro/app/manifests/v1".into(), vec![]),
        ("DELETE", format!("/v2/ro/app/blobs/{layer}"), vec![]),
    ];
    for (method, path, body) in writes {
        let a = api
            .call(method, &path, &[("content-type", OCI_MANIFEST)], body)
            .await;
        assert_eq!(
            (a.status, a.oci_code().as_str()),
            (StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED"),
            "{method} {path}"
        );
        assert!(a.text().contains("read-only"), "{}", a.text());
    }
    // Reads work, and nothing was changed.
    let got = api.get("/v2/ro/app/manifests/v1").await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.body.to_vec(), manifest);
    assert_eq!(
        api.get(&format!("/v2/ro/app/blobs/{layer}")).await.status,
        StatusCode::OK
    );
    assert_eq!(api.get("/v2/ro/app/tags/list").await.status, StatusCode::OK);
    assert_eq!(
        api.get(&upload).await.status,
        StatusCode::NO_CONTENT,
        "the upload survives"
    );

    // Back to read-write with the next reload.
    std::fs::write(&config, &text).unwrap();
    portcullis::app::reload(&config, &api.p.state)
        .await
        .unwrap_or_else(|e| panic!("reload: {e}"));
    api.image("ro/app", "v2", "after").await;
}

/// `portcullis gc` killed (-9) in the middle of deleting: what is tagged still pulls
/// whole, every blob still answered is whole, and the next collection starts at once
/// (the dead collector is of this machine), finishes the job and leaves no epoch
/// record or flag behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collection_killed_mid_sweep_leaves_only_garbage() {
    let api = Api::with(base_options().gc_grace(Duration::ZERO)).await;
    let (_, kept) = api.image("crash/app", "v1", "kept").await;
    let kept_json: serde_json::Value = serde_json::from_slice(
        &api.get(&format!("/v2/crash/app/manifests/{kept}"))
            .await
            .body,
    )
    .unwrap();
    let mut orphans = Vec::new();
    for i in 0..400u32 {
        let data = format!("orphan {i}").repeat(50).into_bytes();
        orphans.push(api.push_blob("crash/app", &data).await);
    }
    let config = api.p.dir.path().join("proxy.toml");
    let gc_dir = data_dir(&api).join("docker/registry/v2/gc");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["gc", "-c"])
        .arg(&config)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // The first "deleting" flags: the sweep has begun. Kill it there.
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let flagged = |dir: &std::path::Path| {
        std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .any(|e| e.file_name() != "epochs" && e.path().join("d").exists())
    };
    while !flagged(&gc_dir) {
        assert!(
            child.try_wait().unwrap().is_none(),
            "gc finished before it could be killed"
        );
        assert!(
            std::time::Instant::now() < deadline,
            "the sweep never began"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let left = |api: &Api| {
        let data = data_dir(api).join("docker/registry/v2/blobs/sha256");
        orphans
            .iter()
            .filter(|d| data.join(&d[7..9]).join(&d[7..]).join("data").exists())
            .count()
    };
    let after_kill = left(&api);
    assert!(
        after_kill > 0,
        "killed after deleting everything: the test lost its race"
    );

    // Every blob answered is whole; the tagged image pulls.
    for d in &orphans {
        let a = api.get(&format!("/v2/crash/app/blobs/{d}")).await;
        assert!(a.status == 200 || a.status == 404, "{d}: {}", a.status);
        if a.status == 200 {
            assert_eq!(format!("sha256:{}", sha256_hex(&a.body)), *d);
        }
    }
    async fn pulls(api: &Api, kept_json: &serde_json::Value, kept: &str) {
        let m = api.get("/v2/crash/app/manifests/v1").await;
        assert_eq!(m.header("docker-content-digest"), kept);
        for d in [
            &kept_json["config"]["digest"],
            &kept_json["layers"][0]["digest"],
        ] {
            let d = d.as_str().unwrap();
            let a = api.get(&format!("/v2/crash/app/blobs/{d}")).await;
            assert_eq!(format!("sha256:{}", sha256_hex(&a.body)), d);
        }
    }
    pulls(&api, &kept_json, &kept).await;

    // The next collection is not refused, deletes the rest and cleans up.
    let config2 = config.clone();
    let out = tokio::task::spawn_blocking(move || portcullis_gc(&config2, false))
        .await
        .unwrap();
    assert_eq!(left(&api), 0, "{out}");
    let rest: Vec<_> = std::fs::read_dir(&gc_dir)
        .map(|r| r.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    let records: Vec<_> = std::fs::read_dir(gc_dir.join("epochs"))
        .map(|r| r.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(records.is_empty(), "epoch records left: {records:?}");
    assert!(
        rest.iter().all(|p| p.ends_with("epochs")),
        "flags left: {rest:?}"
    );
    pulls(&api, &kept_json, &kept).await;
}

/// `portcullis gc` draws a progress bar on a terminal (here `script`'s pseudo-terminal)
/// and prints one plain line per phase otherwise.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_shows_progress_on_a_terminal_and_lines_otherwise() {
    support::require("script");
    let api = Api::start().await;
    api.image("progress/app", "v1", "p").await;
    let config = api.p.dir.path().join("proxy.toml");
    let bin = env!("CARGO_BIN_EXE_portcullis");
    let log = api.p.dir.path().join("tty.log");
    let command = format!("{bin} gc --dry-run -c {} >/dev/null", config.display());
    let tty = tokio::task::spawn_blocking({
        let log = log.clone();
        move || {
            std::process::Command::new("script")
                .args(["-qec", &command])
                .arg(&log)
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    assert!(
        tty.status.success(),
        "{}",
        String::from_utf8_lossy(&tty.stderr)
    );
    let drawn = std::fs::read_to_string(&log).unwrap();
    // Redrawn in place (carriage return, erase line), with a bar and a count.
    assert!(drawn.contains("\r\x1b[2Kmarking repositories"), "{drawn:?}");
    assert!(drawn.contains("] 1/1"), "{drawn:?}");
    assert!(
        drawn.contains("[##############################]"),
        "{drawn:?}"
    );

    let plain = tokio::task::spawn_blocking(move || {
        std::process::Command::new(bin)
            .args(["gc", "--dry-run", "-c"])
            .arg(&config)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let lines = String::from_utf8(plain.stderr).unwrap();
    assert!(lines.contains("marking repositories (1)\n"), "{lines}");
    assert!(!lines.contains('\x1b'), "{lines:?}");
}
