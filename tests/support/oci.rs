//! OCI image layouts made on the fly (random layers), skopeo as the client, and the
//! Portcullis binary as a child process whose memory can be read.

use serde_json::json;
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// One blob in an OCI layout: digest hex and size.
#[derive(Debug, Clone)]
pub struct Blob {
    pub hex: String,
    pub size: usize,
}

/// An image in a local OCI layout, ready for `skopeo copy oci:<layout>:<tag>`.
#[derive(Debug, Clone)]
pub struct Image {
    pub layout: PathBuf,
    pub tag: String,
    /// Digest hex of what the tag points at (manifest, or index).
    pub top: String,
    /// Every blob hex the image consists of (layers, configs, child manifests).
    pub blobs: Vec<String>,
}

impl Image {
    pub fn source(&self) -> String {
        format!("oci:{}:{}", self.layout.display(), self.tag)
    }
}

fn init_layout(layout: &Path) {
    std::fs::create_dir_all(layout.join("blobs/sha256")).unwrap();
    std::fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
}

/// Write a blob through `fill`, hashing as it goes.
pub fn write_blob(layout: &Path, fill: impl FnOnce(&mut dyn Write)) -> Blob {
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
    let tmp = layout.join(format!("blobs/sha256/tmp-{}", uuid::Uuid::new_v4()));
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
pub fn random_layer(layout: &Path, n: usize) -> Blob {
    write_blob(layout, |w| {
        let mut gz = flate2::write::GzEncoder::new(w, flate2::Compression::none());
        let mut urandom = std::fs::File::open("/dev/urandom").unwrap().take(n as u64);
        std::io::copy(&mut urandom, &mut gz).unwrap();
        gz.finish().unwrap();
    })
}

/// An OCI image manifest of `config` and `layers`, written into the layout as a blob.
pub fn write_manifest(layout: &Path, config: &Blob, layers: &[Blob]) -> Blob {
    let body = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": format!("sha256:{}", config.hex), "size": config.size},
        "layers": layers.iter().map(|l| json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": format!("sha256:{}", l.hex),
            "size": l.size,
        })).collect::<Vec<_>>(),
    }))
    .unwrap();
    write_blob(layout, |w| w.write_all(&body).unwrap())
}

/// One platform's image manifest with layers of the given sizes.
fn manifest(layout: &Path, layer_sizes: &[usize], arch: &str) -> (Blob, Vec<String>) {
    let layers: Vec<Blob> = layer_sizes
        .iter()
        .map(|&n| random_layer(layout, n))
        .collect();
    let config = serde_json::to_vec(&json!({
        "architecture": arch,
        "os": "linux",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|l| format!("sha256:{}", l.hex)).collect::<Vec<_>>()},
    }))
    .unwrap();
    let config_blob = write_blob(layout, |w| w.write_all(&config).unwrap());
    let m = write_manifest(layout, &config_blob, &layers);
    let mut blobs: Vec<String> = layers.into_iter().map(|l| l.hex).collect();
    blobs.push(config_blob.hex);
    blobs.push(m.hex.clone());
    (m, blobs)
}

fn write_index(layout: &Path, media_type: &str, top: &Blob, tag: &str) {
    let index = json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": media_type,
            "digest": format!("sha256:{}", top.hex),
            "size": top.size,
            "annotations": {"org.opencontainers.image.ref.name": tag},
        }],
    });
    std::fs::write(
        layout.join("index.json"),
        serde_json::to_vec(&index).unwrap(),
    )
    .unwrap();
}

/// A single-platform image with layers of the given sizes.
pub fn image(layout: &Path, layer_sizes: &[usize]) -> Image {
    init_layout(layout);
    let (m, blobs) = manifest(layout, layer_sizes, "amd64");
    write_index(layout, OCI_MANIFEST, &m, "v1");
    Image {
        layout: layout.to_path_buf(),
        tag: "v1".into(),
        top: m.hex,
        blobs,
    }
}

/// A two-platform image (amd64, arm64) under one OCI index.
pub fn two_platform_image(layout: &Path, layer_sizes: &[usize]) -> Image {
    init_layout(layout);
    let mut entries = Vec::new();
    let mut blobs = Vec::new();
    for arch in ["amd64", "arm64"] {
        let (m, b) = manifest(layout, layer_sizes, arch);
        entries.push(json!({
            "mediaType": OCI_MANIFEST,
            "digest": format!("sha256:{}", m.hex),
            "size": m.size,
            "platform": {"architecture": arch, "os": "linux"},
        }));
        blobs.extend(b);
    }
    let body = serde_json::to_vec(
        &json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}),
    )
    .unwrap();
    let idx = write_blob(layout, |w| w.write_all(&body).unwrap());
    write_index(layout, OCI_INDEX, &idx, "v1");
    blobs.push(idx.hex.clone());
    Image {
        layout: layout.to_path_buf(),
        tag: "v1".into(),
        top: idx.hex,
        blobs,
    }
}

/// Run skopeo (with `--insecure-policy`: no policy.json needed); panic with its output.
pub fn skopeo(args: &[&str]) {
    let out = Command::new(super::require("skopeo"))
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

pub fn sha256_file(p: &Path) -> String {
    let mut f = std::fs::File::open(p).unwrap();
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = std::io::Read::read(&mut f, &mut buf).unwrap();
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    hex::encode(h.finalize())
}

/// A layout pulled back by skopeo holds the same top digest and every blob intact.
pub fn assert_same_image(pulled: &Path, want: &Image) {
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(pulled.join("index.json")).unwrap()).unwrap();
    assert_eq!(
        index["manifests"][0]["digest"],
        format!("sha256:{}", want.top),
        "top digest"
    );
    for hex in &want.blobs {
        let p = pulled.join("blobs/sha256").join(hex);
        assert!(p.exists(), "blob {hex} missing from the pulled image");
        assert_eq!(sha256_file(&p), *hex, "blob {hex} pulled back intact");
    }
}

/// The Portcullis binary serving a config written by `write_config`, killed on drop.
pub struct Server {
    pub child: Child,
    pub port: u16,
    pub dir: PathBuf,
}

impl Server {
    pub fn start(dir: &Path, opts: &super::Options) -> Server {
        let port = super::free_port();
        std::fs::create_dir_all(dir).unwrap();
        let config = super::write_config(dir, opts, &format!("127.0.0.1:{port}"));
        Server::start_config(dir, &config, port)
    }

    /// Start on an existing config (restarts keep certificates and users).
    pub fn start_config(dir: &Path, config: &Path, port: u16) -> Server {
        let child = Command::new(env!("CARGO_BIN_EXE_portcullis"))
            .args(["serve", "-c"])
            .arg(config)
            .env("RUST_LOG", "warn")
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        super::wait_for_port(port, "portcullis");
        Server {
            child,
            port,
            dir: dir.to_path_buf(),
        }
    }

    /// A folder holding only the CA: skopeo reads every *.crt in --cert-dir as a CA
    /// and refuses a *.key without a *.cert, so `certs/` itself will not do.
    pub fn trust_dir(&self) -> String {
        let trust = self.dir.join("trust");
        std::fs::create_dir_all(&trust).unwrap();
        std::fs::copy(self.dir.join("certs/ca.crt"), trust.join("ca.crt")).unwrap();
        trust.display().to_string()
    }

    /// `skopeo copy` an image to `repo` (`name:tag`) through this server; `all` copies
    /// every platform of an index.
    pub fn push(&self, img: &Image, repo: &str, all: bool) {
        let (trust, dst, src) = (self.trust_dir(), self.reference(repo), img.source());
        let mut args = vec!["copy", "--dest-creds", CREDS, "--dest-cert-dir", &trust];
        if all {
            args.push("--all");
        }
        args.extend([src.as_str(), dst.as_str()]);
        skopeo(&args);
    }

    /// `skopeo copy` `repo` back into an OCI layout at `to` (tag `v1`).
    pub fn pull(&self, repo: &str, to: &Path, all: bool) {
        let (trust, src) = (self.trust_dir(), self.reference(repo));
        let dst = format!("oci:{}:v1", to.display());
        let mut args = vec!["copy", "--src-creds", CREDS, "--src-cert-dir", &trust];
        if all {
            args.push("--all");
        }
        args.extend([src.as_str(), dst.as_str()]);
        skopeo(&args);
    }

    pub fn reference(&self, repo: &str) -> String {
        format!("docker://127.0.0.1:{}/{repo}", self.port)
    }

    /// Peak resident memory so far (VmHWM), KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM")
    }

    /// SIGKILL: no chance to clean up, as in a crash.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

pub const CREDS: &str = "alice:alice-secret";
