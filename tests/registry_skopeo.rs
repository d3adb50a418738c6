//! The bundled registry with skopeo: round trips of a multi-layer image and of a
//! two-platform index, the on-disk layout shared both ways with Debian's
//! docker-registry, and a kill -9 in the middle of a large push and during its closing PUT.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};
use support::oci::*;
use support::*;

const BIG: usize = 100 << 20;

fn registry_options(root: &std::path::Path) -> Options {
    Options::registry().root(root)
}

#[test]
fn multi_layer_round_trip_streams_with_flat_memory() {
    let work = tempfile::tempdir().unwrap();
    let server = Server::start(&work.path().join("p"), &Options::registry());
    let img = image(&work.path().join("src"), &[10 << 10, BIG, 1 << 20]);
    let before = server.peak_rss_kib();
    server.push(&img, "team/app:v1", false);
    let back = work.path().join("back");
    server.pull("team/app:v1", &back, false);
    let after = server.peak_rss_kib();
    assert_same_image(&back, &img);
    eprintln!(
        "bundled registry peak RSS: {before} KiB before, {after} KiB after a {} MiB push and pull",
        (2 * BIG) >> 20
    );
    assert!(after < 48 * 1024, "peak RSS {after} KiB");
    assert!(
        after - before < 24 * 1024,
        "memory grew by {} KiB",
        after - before
    );
}

#[test]
fn two_platform_index_round_trip() {
    let work = tempfile::tempdir().unwrap();
    let server = Server::start(&work.path().join("p"), &Options::registry());
    let img = two_platform_image(&work.path().join("src"), &[2 << 20, 4096]);
    server.push(&img, "multi/arch:v1", true);
    let back = work.path().join("back");
    server.pull("multi/arch:v1", &back, true);
    assert_same_image(&back, &img);
}

/// Data written by Debian's docker-registry, served by Portcullis: "point at the same
/// directory" is the whole migration.
#[test]
fn data_written_by_docker_registry_is_served_by_portcullis() {
    let work = tempfile::tempdir().unwrap();
    let mut reg = DockerRegistry::start();
    let img = image(&work.path().join("src"), &[3 << 20, 2048]);
    let dst = format!("docker://127.0.0.1:{}/old/app:v1", reg.port);
    skopeo(&["copy", "--dest-tls-verify=false", &img.source(), &dst]);
    let root = reg.dir.path().join("data");
    reg.kill();

    let server = Server::start(&work.path().join("p"), &registry_options(&root));
    let back = work.path().join("back");
    server.pull("old/app:v1", &back, false);
    assert_same_image(&back, &img);
}

/// And the other way: what Portcullis wrote, docker-registry serves.
#[test]
fn data_written_by_portcullis_is_served_by_docker_registry() {
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("shared-data");
    let img = two_platform_image(&work.path().join("src"), &[3 << 20, 2048]);
    {
        let server = Server::start(&work.path().join("p"), &registry_options(&root));
        server.push(&img, "new/app:v1", true);
    }
    let reg = DockerRegistry::start_with_root(&root);
    let back = work.path().join("back");
    let src = format!("docker://127.0.0.1:{}/new/app:v1", reg.port);
    skopeo(&[
        "copy",
        "--all",
        "--src-tls-verify=false",
        &src,
        &format!("oci:{}:v1", back.display()),
    ]);
    assert_same_image(&back, &img);
}

/// kill -9 while a large layer streams in: afterwards the blob is absent or complete
/// (never partial), and the same push retried succeeds.
#[test]
fn kill_during_a_large_push_leaves_nothing_partial() {
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("data");
    let pdir = work.path().join("p");
    let mut server = Server::start(&pdir, &registry_options(&root));
    let port = server.port;
    let trust = server.trust_dir();
    let img = image(&work.path().join("src"), &[4096, 200 << 20]);
    let big = img.blobs[1].clone();

    let mut push = std::process::Command::new(require("skopeo"))
        .args([
            "--insecure-policy",
            "copy",
            "--dest-creds",
            CREDS,
            "--dest-cert-dir",
            &trust,
        ])
        .arg(img.source())
        .arg(server.reference("crash/app:v1"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Wait until part of the big layer is in an upload, then pull the plug.
    let uploads = root.join("docker/registry/v2/repositories/crash/app/_uploads");
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = 0;
    while Instant::now() < deadline && seen < (20 << 20) {
        seen = std::fs::read_dir(&uploads)
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .filter_map(|e| std::fs::metadata(e.path().join("data")).ok())
                    .map(|m| m.len())
                    .max()
                    .unwrap_or(0)
            })
            .unwrap_or(0);
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(
        seen >= 20 << 20,
        "the push never got going (saw {seen} bytes)"
    );
    server.kill();
    let _ = push.wait();

    let blob = root.join(format!(
        "docker/registry/v2/blobs/sha256/{}/{big}/data",
        &big[..2]
    ));
    assert_every_blob_whole(&root);
    assert!(
        !root
            .join("docker/registry/v2/repositories/crash/app/_manifests/tags/v1")
            .exists(),
        "no tag for an image whose push was cut"
    );

    let config = pdir.join("proxy.toml");
    let server = Server::start_config(&pdir, &config, port);
    server.push(&img, "crash/app:v1", false);
    assert_eq!(sha256_file(&blob), big);
    let back = work.path().join("back");
    server.pull("crash/app:v1", &back, false);
    assert_same_image(&back, &img);
}

/// Hex digest of a file by algorithm name (`sha256`, `sha512`).
fn hash_file(alg: &str, p: &Path) -> String {
    use sha2::Digest;
    match alg {
        "sha256" => sha256_file(p),
        "sha512" => hex::encode(sha2::Sha512::digest(std::fs::read(p).unwrap())),
        other => panic!("unknown digest algorithm folder {other:?} under blobs/"),
    }
}

fn entries(dir: &Path) -> Vec<std::path::PathBuf> {
    match std::fs::read_dir(dir) {
        Ok(rd) => rd.map(|e| e.unwrap().path()).collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => panic!("{}: {e}", dir.display()),
    }
}

fn name_of(p: &Path) -> String {
    p.file_name().unwrap().to_string_lossy().into_owned()
}

/// The crash invariant over the whole storage root: EVERY blob file under
/// `docker/registry/v2/blobs` hashes to the name it is stored under, and every layer
/// link in every repository names a blob that is there. Temporary files of an
/// interrupted write (`.tmp-*`) are allowed: nothing serves them. Returns the number of
/// blobs checked.
fn assert_every_blob_whole(root: &Path) -> usize {
    let v2 = root.join("docker/registry/v2");
    let mut checked = 0;
    for alg in entries(&v2.join("blobs")) {
        let alg_name = name_of(&alg);
        for prefix in entries(&alg) {
            for dir in entries(&prefix) {
                let hex = name_of(&dir);
                assert!(
                    hex.starts_with(&name_of(&prefix)),
                    "{} is under the wrong prefix",
                    dir.display()
                );
                for f in entries(&dir) {
                    let n = name_of(&f);
                    if n == "data" {
                        assert_eq!(
                            hash_file(&alg_name, &f),
                            hex,
                            "{}: a blob that exists must be complete",
                            f.display()
                        );
                        checked += 1;
                    } else {
                        assert!(n.starts_with(".tmp-"), "stray file {}", f.display());
                    }
                }
            }
        }
    }
    // Links: a repository may only point at blobs that are whole and present.
    let mut stack = vec![v2.join("repositories")];
    while let Some(d) = stack.pop() {
        for e in entries(&d) {
            if !e.is_dir() {
                continue;
            }
            if name_of(&e) != "_layers" {
                stack.push(e);
                continue;
            }
            for alg in entries(&e) {
                for link_dir in entries(&alg) {
                    let link = link_dir.join("link");
                    let Ok(target) = std::fs::read_to_string(&link) else {
                        continue;
                    };
                    let (a, hex) = target.split_once(':').expect("alg:hex in a link");
                    let data = v2.join(format!("blobs/{a}/{}/{hex}/data", &hex[..2]));
                    assert!(
                        data.is_file(),
                        "{} names {target}, which is not stored",
                        link.display()
                    );
                }
            }
        }
    }
    checked
}

/// Bytes read by process `pid` so far (`rchar` in /proc/<pid>/io): rises while the
/// server re-reads an upload to hash it.
fn read_bytes(pid: u32) -> u64 {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).unwrap_or_default();
    io.lines()
        .find_map(|l| l.strip_prefix("rchar:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// Where the kill lands.
#[derive(Debug, Clone, Copy)]
enum Moment {
    /// The server restarted after the data arrived: the closing PUT continues from
    /// the hash state recorded with the last commit, never reading the data back.
    /// Killed once it has answered.
    Restarted,
    /// The closing PUT carries the last part: kill as soon as the upload file holds
    /// every byte (the server is syncing, hashing, about to commit).
    Received,
    /// The closing PUT carries the last part: kill as soon as anything exists at the
    /// blob's final path (the commit is under way or just done; the link may not be).
    Committing,
}

/// kill -9 during the closing PUT of a large upload, at the moments above and in a
/// bounded loop: whatever moment the kill hits, every stored blob is whole, and after
/// a restart the blob can be finished and is served intact.
#[test]
fn kill_during_the_closing_put_leaves_nothing_partial() {
    const SIZE: usize = 64 << 20;
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("data");
    let pdir = work.path().join("p");
    let mut server = Server::start(&pdir, &registry_options(&root));
    let (port, config, ca) = (
        server.port,
        pdir.join("proxy.toml"),
        pdir.join("certs/ca.crt"),
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let url = |path: &str| format!("https://127.0.0.1:{port}{path}");
    let alice = Some(BCRYPT_USER);
    let send = |c: &Client, method: &str, url: &str, data: bytes::Bytes| {
        let req = request(method, url, alice)
            .body(portcullis::body::full(data))
            .unwrap();
        rt.block_on(c.send(req))
    };

    let plan = [
        Moment::Restarted,
        Moment::Received,
        Moment::Committing,
        Moment::Restarted,
        Moment::Committing,
    ];
    for (attempt, moment) in plan.into_iter().enumerate() {
        let mut data = vec![0u8; SIZE];
        rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut data);
        let data = bytes::Bytes::from(data);
        let digest = format!("sha256:{}", sha256_hex(&data));
        let repo = format!("cut/put{attempt}");
        let c = Client::h1(&ca);
        let start = send(
            &c,
            "POST",
            &url(&format!("/v2/{repo}/blobs/uploads/")),
            bytes::Bytes::new(),
        );
        assert_eq!(start.status, 202, "{}", start.text());
        let loc = start.header("location").to_string();
        let id = loc
            .split('?')
            .next()
            .and_then(|p| p.rsplit('/').next())
            .unwrap()
            .to_string();
        let blob_file = root.join(format!(
            "docker/registry/v2/blobs/sha256/{}/{}/data",
            &digest[7..9],
            &digest[7..]
        ));
        let upload_file = root.join(format!(
            "docker/registry/v2/repositories/{repo}/_uploads/{id}/data"
        ));
        let (first, last) = match moment {
            Moment::Restarted => (data.clone(), bytes::Bytes::new()),
            Moment::Received | Moment::Committing => {
                (data.slice(..SIZE / 2), data.slice(SIZE / 2..))
            }
        };
        let p = send(&c, "PATCH", &loc, first);
        assert_eq!(p.status, 202, "{}", p.text());
        let loc = p.header("location").to_string();
        if matches!(moment, Moment::Restarted) {
            // A fresh process has no running hash of this upload in memory.
            server.kill();
            server = Server::start_config(&pdir, &config, port);
        }

        // The closing PUT, on its own thread; the kill comes from here.
        let pid = server.child.id();
        let before = read_bytes(pid);
        let put_url = format!("{loc}&digest={digest}");
        let put = std::thread::spawn({
            let ca = ca.clone();
            move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                let c = Client::h1(&ca);
                let req = request("PUT", &put_url, Some(BCRYPT_USER))
                    .body(portcullis::body::full(last))
                    .unwrap();
                rt.block_on(async {
                    match c.send_streaming(req).await {
                        Ok(r) => Some(r.status()),
                        Err(_) => None,
                    }
                })
            }
        });
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let ready = match moment {
                Moment::Restarted => false,
                Moment::Received => {
                    std::fs::metadata(&upload_file).map_or(true, |m| m.len() >= SIZE as u64)
                }
                Moment::Committing => blob_file.exists(),
            };
            if ready || put.is_finished() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{moment:?}: the PUT neither progressed nor finished"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        if matches!(moment, Moment::Restarted) {
            let read = read_bytes(pid).saturating_sub(before);
            assert!(
                read < (SIZE / 8) as u64,
                "the closing PUT after a restart read {read} bytes of a {SIZE}-byte upload"
            );
            assert!(!upload_file.exists(), "the finished upload was left behind");
        }
        server.kill();
        let answered = put.join().unwrap();
        eprintln!("attempt {attempt}: kill at {moment:?}, PUT answered {answered:?}");
        assert!(
            answered.is_none() || answered == Some(http::StatusCode::CREATED),
            "{answered:?}"
        );
        assert_every_blob_whole(&root);

        // After a restart the blob is in the repository whole, or a client pushing
        // again (as skopeo does on retry) succeeds.
        server = Server::start_config(&pdir, &config, port);
        let c = Client::h1(&ca);
        let head = send(
            &c,
            "HEAD",
            &url(&format!("/v2/{repo}/blobs/{digest}")),
            bytes::Bytes::new(),
        );
        if head.status != 200 {
            let a = send(
                &c,
                "POST",
                &url(&format!("/v2/{repo}/blobs/uploads/?digest={digest}")),
                data.clone(),
            );
            assert_eq!(a.status, 201, "{}", a.text());
        }
        let got = send(
            &c,
            "GET",
            &url(&format!("/v2/{repo}/blobs/{digest}")),
            bytes::Bytes::new(),
        );
        assert_eq!(got.status, 200);
        assert!(got.body == data, "blob served after the crash differs");
        assert!(assert_every_blob_whole(&root) > attempt);
    }
}
