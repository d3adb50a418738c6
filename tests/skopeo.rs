//! skopeo, the real client, pushing a multi-layer image (one layer of 100 MiB random
//! bytes) through the Portcullis binary to Debian's docker-registry and pulling it
//! back: digests compared, and the proxy's peak memory measured while it streams.

mod support;

use serde_json::json;
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use support::*;

const BIG: usize = 100 << 20;

/// One blob in an OCI layout: digest hex and size.
struct Blob {
    hex: String,
    size: usize,
}

/// Write `data` chunks as a blob, returning its digest.
fn write_blob(layout: &Path, fill: impl FnOnce(&mut dyn Write)) -> Blob {
    struct Hashing<W> {
        inner: W,
        hash: Sha256,
        size: usize,
    }
    impl<W: Write> Write for Hashing<W> {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            let n = self.inner.write(b)?;
            self.hash.update(&b[..n]);
            self.size += n;
            Ok(n)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            self.inner.flush()
        }
    }
    let tmp = layout.join("blobs/sha256/tmp");
    let mut h = Hashing {
        inner: std::io::BufWriter::new(std::fs::File::create(&tmp).unwrap()),
        hash: Sha256::new(),
        size: 0,
    };
    fill(&mut h);
    h.flush().unwrap();
    let hex = hex::encode(h.hash.finalize());
    std::fs::rename(&tmp, layout.join("blobs/sha256").join(&hex)).unwrap();
    Blob { hex, size: h.size }
}

/// A gzip layer of `n` random bytes (stored, not compressed: fast, and skopeo sees a
/// compressed layer so it copies it byte for byte instead of recompressing).
fn random_layer(layout: &Path, n: usize) -> Blob {
    write_blob(layout, |w| {
        let mut gz = flate2::write::GzEncoder::new(w, flate2::Compression::none());
        let mut urandom = std::fs::File::open("/dev/urandom").unwrap().take(n as u64);
        std::io::copy(&mut urandom, &mut gz).unwrap();
        gz.finish().unwrap();
    })
}

/// An OCI image layout with three layers; returns (layout dir, manifest digest, layer digests).
fn build_image(dir: &Path) -> (PathBuf, String, Vec<String>) {
    let layout = dir.join("src-image");
    std::fs::create_dir_all(layout.join("blobs/sha256")).unwrap();
    std::fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    let layers = [
        random_layer(&layout, 10 << 10),
        random_layer(&layout, BIG),
        random_layer(&layout, 1 << 20),
    ];
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|l| format!("sha256:{}", l.hex)).collect::<Vec<_>>()},
    }))
    .unwrap();
    let config_blob = write_blob(&layout, |w| w.write_all(&config).unwrap());
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": format!("sha256:{}", config_blob.hex), "size": config_blob.size},
        "layers": layers.iter().map(|l| json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": format!("sha256:{}", l.hex),
            "size": l.size,
        })).collect::<Vec<_>>(),
    }))
    .unwrap();
    let m = write_blob(&layout, |w| w.write_all(&manifest).unwrap());
    let index = json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": format!("sha256:{}", m.hex),
            "size": m.size,
            "annotations": {"org.opencontainers.image.ref.name": "v1"},
        }],
    });
    std::fs::write(
        layout.join("index.json"),
        serde_json::to_vec(&index).unwrap(),
    )
    .unwrap();
    let mut digests: Vec<String> = layers.iter().map(|l| l.hex.clone()).collect();
    digests.push(config_blob.hex);
    (layout, m.hex, digests)
}

fn skopeo(args: &[&str]) {
    let out = Command::new(require("skopeo"))
        .arg("--insecure-policy")
        .args(args)
        .output()
        .expect("run skopeo");
    assert!(
        out.status.success(),
        "skopeo {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn peak_rss_kib(child: &Child) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM")
}

fn sha256_file(p: &Path) -> String {
    let mut f = std::fs::File::open(p).unwrap();
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h).unwrap();
    hex::encode(h.finalize())
}

#[test]
fn skopeo_push_and_pull_a_multi_layer_image_through_portcullis() {
    let reg = DockerRegistry::start();
    let work = tempfile::tempdir().unwrap();
    let port = free_port();
    let pdir = work.path().join("portcullis");
    std::fs::create_dir_all(&pdir).unwrap();
    let config = write_config(
        &pdir,
        &Options::upstream(reg.url()),
        &format!("127.0.0.1:{port}"),
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["serve", "-c"])
        .arg(&config)
        .env("RUST_LOG", "warn")
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    wait_for_port(port, "portcullis");
    let guard = KillOnDrop(&mut child);

    // skopeo reads every *.crt in --cert-dir as a CA; give it only the CA.
    let trust = work.path().join("trust");
    std::fs::create_dir_all(&trust).unwrap();
    std::fs::copy(pdir.join("certs/ca.crt"), trust.join("ca.crt")).unwrap();
    let trust = trust.to_str().unwrap();
    let creds = format!("{}:{}", BCRYPT_USER.0, BCRYPT_USER.1);
    let (layout, manifest, blobs) = build_image(work.path());

    let rss_before = peak_rss_kib(guard.0);
    let dest = format!("docker://127.0.0.1:{port}/test/big:v1");
    skopeo(&[
        "copy",
        "--dest-creds",
        &creds,
        "--dest-cert-dir",
        trust,
        &format!("oci:{}:v1", layout.display()),
        &dest,
    ]);
    let back = work.path().join("pulled");
    skopeo(&[
        "copy",
        "--src-creds",
        &creds,
        "--src-cert-dir",
        trust,
        &dest,
        &format!("oci:{}:v1", back.display()),
    ]);
    let rss_after = peak_rss_kib(guard.0);

    // Same manifest digest, and every blob present and intact.
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(back.join("index.json")).unwrap()).unwrap();
    assert_eq!(
        index["manifests"][0]["digest"],
        format!("sha256:{manifest}")
    );
    for hex in blobs.iter().chain(std::iter::once(&manifest)) {
        let p = back.join("blobs/sha256").join(hex);
        assert_eq!(sha256_file(&p), *hex, "blob {hex} pulled back intact");
    }
    // The registry itself holds the 100 MiB layer byte for byte.
    let big = &blobs[1];
    let stored = reg.dir.path().join(format!(
        "data/docker/registry/v2/blobs/sha256/{}/{big}/data",
        &big[..2]
    ));
    assert!(std::fs::metadata(&stored).unwrap().len() > BIG as u64);

    // Streaming: the proxy moved > 200 MiB (push + pull) without its memory following.
    eprintln!("portcullis peak RSS: {rss_before} KiB before, {rss_after} KiB after pushing and pulling {} MiB", (2 * BIG) >> 20);
    assert!(
        rss_after < 48 * 1024,
        "peak RSS {rss_after} KiB: bodies must stream, not buffer"
    );
    assert!(
        rss_after - rss_before < 24 * 1024,
        "memory grew by {} KiB with a 100 MiB layer",
        rss_after - rss_before
    );
}

struct KillOnDrop<'a>(&'a mut Child);

impl Drop for KillOnDrop<'_> {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
