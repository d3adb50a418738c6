//! The bundled registry with skopeo: round trips of a multi-layer image and of a
//! two-platform index, the on-disk layout shared both ways with Debian's
//! docker-registry, and a kill -9 in the middle of a large push.

mod support;

use std::time::{Duration, Instant};
use support::oci::*;
use support::*;

const BIG: usize = 100 << 20;

fn registry_options(root: &std::path::Path) -> Options {
    let mut o = Options::registry();
    o.backend_toml = Some(format!("[registry]\nroot = \"{}\"\n", root.display()));
    o
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
    if blob.exists() {
        assert_eq!(
            sha256_file(&blob),
            big,
            "a blob that exists must be complete"
        );
    }
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
