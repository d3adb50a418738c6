//! `portcullis gc` cross-checked against the real thing: Debian's docker-registry 2.8
//! `garbage-collect` run on the same storage folder. Before our collection both must
//! name the same blobs (and, with `--delete-untagged`, the same manifests); after it,
//! distribution must find nothing more to collect, and every remaining tag must still
//! pull. The one deliberate difference, an index's untagged children (distribution#3178),
//! is shown and asserted too. Expected sets come from the scenario and from
//! distribution, never from our collector.

mod support;

use serde_json::json;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use support::oci::*;
use support::*;

type Set = BTreeSet<String>;

/// What one collector reported.
#[derive(Debug)]
struct Verdict {
    /// Blob digests deleted or eligible for deletion.
    blobs: Set,
    /// Manifest digests deleted or eligible for deletion (untagged ones, with `-m`).
    manifests: Set,
    /// The counts of the summary line: (manifests, blobs).
    counted: (usize, usize),
    out: String,
}

fn sha256_in(line: &str, prefix: &str) -> Option<String> {
    let rest = line.strip_prefix(prefix)?;
    let d: String = rest.chars().take(7 + 64).collect();
    let ok =
        d.len() == 71 && d.starts_with("sha256:") && d[7..].chars().all(|c| c.is_ascii_hexdigit());
    assert!(ok, "no sha256 digest after {prefix:?} in {line:?}");
    Some(d)
}

/// Debian's `docker-registry garbage-collect` on `root` (a filesystem storage folder).
fn distribution_gc(root: &Path, dry_run: bool, delete_untagged: bool) -> Verdict {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.yml");
    std::fs::write(
        &cfg,
        format!(
            "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {}\n",
            root.display()
        ),
    )
    .unwrap();
    let mut cmd = Command::new(require("docker-registry"));
    cmd.arg("garbage-collect");
    if dry_run {
        cmd.arg("--dry-run");
    }
    if delete_untagged {
        cmd.arg("--delete-untagged");
    }
    let out = cmd.arg(&cfg).output().expect("run docker-registry");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "docker-registry garbage-collect failed:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary = regex::Regex::new(
        r"(?m)^(\d+) blobs marked, (\d+) blobs and (\d+) manifests eligible for deletion$",
    )
    .unwrap();
    let c = summary
        .captures(&text)
        .unwrap_or_else(|| panic!("no summary line in distribution's output:\n{text}"));
    let mut v = Verdict {
        blobs: Set::new(),
        manifests: Set::new(),
        counted: (c[3].parse().unwrap(), c[2].parse().unwrap()),
        out: text.clone(),
    };
    for line in text.lines() {
        if let Some(d) = sha256_in(line, "blob eligible for deletion: ") {
            v.blobs.insert(d);
        } else if let Some(d) = sha256_in(line, "manifest eligible for deletion: ") {
            v.manifests.insert(d);
        }
    }
    assert_eq!(
        v.blobs.len(),
        v.counted.1,
        "every eligible blob is listed once:\n{text}"
    );
    v
}

/// `portcullis gc` on the configuration `config`.
fn portcullis_gc(config: &Path, dry_run: bool, delete_untagged: bool) -> Verdict {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_portcullis"));
    cmd.arg("gc").arg("-c").arg(config).env("RUST_LOG", "warn");
    if dry_run {
        cmd.arg("--dry-run");
    }
    if delete_untagged {
        cmd.arg("--delete-untagged");
    }
    let out = cmd.output().expect("run portcullis gc");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "portcullis gc failed:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let verb = if dry_run { "would delete" } else { "deleted" };
    let summary = regex::Regex::new(&format!(
        r"(?m); {verb} (\d+) untagged manifests and (\d+) blobs, .* freed$"
    ))
    .unwrap();
    let c = summary
        .captures(&text)
        .unwrap_or_else(|| panic!("no summary line in our output:\n{text}"));
    let mut v = Verdict {
        blobs: Set::new(),
        manifests: Set::new(),
        counted: (c[1].parse().unwrap(), c[2].parse().unwrap()),
        out: text.clone(),
    };
    let manifest_line = format!("{verb} untagged manifest ");
    for line in text.lines() {
        if let Some(d) = sha256_in(line, &format!("{verb} blob ")) {
            v.blobs.insert(d);
        } else if let Some(rest) = line.strip_prefix(&manifest_line) {
            let at = rest.find("@sha256:").expect("repository@digest");
            v.manifests.insert(sha256_in(&rest[at..], "@").unwrap());
        }
    }
    assert_eq!(
        v.blobs.len(),
        v.counted.1,
        "every blob is listed once:\n{text}"
    );
    v
}

fn digests(hexes: &[&String]) -> Set {
    hexes.iter().map(|h| format!("sha256:{h}")).collect()
}

fn all_of(img: &Image) -> Set {
    img.blobs.iter().map(|h| format!("sha256:{h}")).collect()
}

/// A single-platform image whose layers are some of other images' layers (by index into
/// their `blobs`, whose layers come first) followed by fresh random layers of `fresh`
/// sizes. At least one fresh layer keeps its config, and so its manifest, unique.
fn layered_image(layout: &Path, shared: &[(&Image, usize)], fresh: &[usize]) -> Image {
    assert!(!fresh.is_empty(), "a fresh layer makes the image unique");
    std::fs::create_dir_all(layout.join("blobs/sha256")).unwrap();
    std::fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    let mut layers = Vec::new();
    for (img, i) in shared {
        let hex = img.blobs[*i].clone();
        let from = img.layout.join("blobs/sha256").join(&hex);
        let size = std::fs::copy(&from, layout.join("blobs/sha256").join(&hex)).unwrap();
        layers.push(Blob {
            hex,
            size: size as usize,
        });
    }
    layers.extend(fresh.iter().map(|&n| random_layer(layout, n)));
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|l| format!("sha256:{}", l.hex)).collect::<Vec<_>>()},
        // One entry per layer: skopeo needs them to write the image as schema 1.
        "history": layers.iter().map(|l| json!({"created_by": format!("add {}", l.hex)})).collect::<Vec<_>>(),
    }))
    .unwrap();
    let config = write_blob(layout, |w| w.write_all(&config).unwrap());
    let m = write_manifest(layout, &config, &layers);
    let index = json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": OCI_MANIFEST,
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
    let mut blobs: Vec<String> = layers.into_iter().map(|l| l.hex).collect();
    blobs.push(config.hex);
    blobs.push(m.hex.clone());
    Image {
        layout: layout.to_path_buf(),
        tag: "v1".into(),
        top: m.hex,
        blobs,
    }
}

/// A registry the scenario writes through: Portcullis (HTTPS, Basic auth) or Debian's
/// docker-registry (plain HTTP).
enum Target<'a> {
    Portcullis(&'a Server),
    Distribution(&'a DockerRegistry),
}

impl Target<'_> {
    fn base(&self) -> String {
        match self {
            Target::Portcullis(s) => format!("https://127.0.0.1:{}", s.port),
            Target::Distribution(r) => r.url(),
        }
    }

    fn reference(&self, name: &str) -> String {
        match self {
            Target::Portcullis(s) => s.reference(name),
            Target::Distribution(r) => format!("docker://127.0.0.1:{}/{name}", r.port),
        }
    }

    /// skopeo's flags to talk to this registry (`dest`, `src` or none for `delete`).
    fn flags(&self, side: &str) -> Vec<String> {
        let side = if side.is_empty() {
            String::new()
        } else {
            format!("{side}-")
        };
        match self {
            Target::Portcullis(s) => vec![
                format!("--{side}creds={CREDS}"),
                format!("--{side}cert-dir={}", s.trust_dir()),
            ],
            Target::Distribution(_) => vec![format!("--{side}tls-verify=false")],
        }
    }

    fn push(&self, img: &Image, name: &str) {
        let mut args = vec!["copy".to_string()];
        args.extend(self.flags("dest"));
        args.extend([img.source(), self.reference(name)]);
        skopeo(&args.iter().map(String::as_str).collect::<Vec<_>>());
    }

    /// Pull `name` (a tag or a digest reference) and check it is `want`, whole.
    fn pull_and_check(&self, name: &str, want: &Image, all: bool, work: &Path) {
        let to = work.join(format!("pulled-{}", uuid::Uuid::new_v4()));
        let mut args = vec!["copy".to_string()];
        args.extend(self.flags("src"));
        if all {
            args.push("--all".into());
        }
        args.extend([self.reference(name), format!("oci:{}:v1", to.display())]);
        skopeo(&args.iter().map(String::as_str).collect::<Vec<_>>());
        assert_same_image(&to, want);
    }

    /// DELETE a manifest by digest (distribution 2.8's only way).
    fn delete_manifest(&self, repo: &str, img: &Image) {
        let mut args = vec!["delete".to_string()];
        args.extend(self.flags(""));
        args.push(self.reference(&format!("{repo}@sha256:{}", img.top)));
        skopeo(&args.iter().map(String::as_str).collect::<Vec<_>>());
    }

    fn client(&self) -> Http {
        match self {
            Target::Portcullis(s) => Http::Tls(Client::h1(&s.dir.join("certs/ca.crt"))),
            Target::Distribution(_) => Http::Plain(
                hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                    .build_http(),
            ),
        }
    }

    /// Push a blob no manifest references; its digest.
    fn push_orphan_blob(&self, repo: &str) -> String {
        self.push_blob(
            repo,
            format!("an orphan blob, {}", uuid::Uuid::new_v4()).into_bytes(),
        )
    }

    /// Push a blob (POST, then PUT with the digest: both registries take that); its digest.
    fn push_blob(&self, repo: &str, data: Vec<u8>) -> String {
        let digest = format!("sha256:{}", sha256_hex(&data));
        let (base, client) = (self.base(), self.client());
        runtime().block_on(async {
            let (status, headers, _) = client
                .send(
                    "POST",
                    &format!("{base}/v2/{repo}/blobs/uploads/"),
                    "application/octet-stream",
                    Vec::new(),
                )
                .await;
            assert_eq!(status, 202, "start an upload");
            let loc = headers
                .get("location")
                .and_then(|v| v.to_str().ok())
                .expect("Location")
                .to_string();
            let loc = if loc.starts_with('/') {
                format!("{base}{loc}")
            } else {
                loc
            };
            let sep = if loc.contains('?') { '&' } else { '?' };
            let (status, _, _) = client
                .send(
                    "PUT",
                    &format!("{loc}{sep}digest={digest}"),
                    "application/octet-stream",
                    data,
                )
                .await;
            assert_eq!(status, 201, "finish the upload");
        });
        digest
    }

    /// PUT a manifest (JSON) as `media_type` under `reference`; its digest.
    fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        m: &serde_json::Value,
    ) -> String {
        let body = serde_json::to_vec(m).unwrap();
        let digest = format!("sha256:{}", sha256_hex(&body));
        let (base, client) = (self.base(), self.client());
        runtime().block_on(async {
            let (status, _, _) = client
                .send(
                    "PUT",
                    &format!("{base}/v2/{repo}/manifests/{reference}"),
                    media_type,
                    body,
                )
                .await;
            assert_eq!(status, 201, "PUT manifest {repo}:{reference}");
        });
        digest
    }

    /// GET a blob: its status and bytes.
    fn get_blob(&self, repo: &str, digest: &str) -> (http::StatusCode, Vec<u8>) {
        let (base, client) = (self.base(), self.client());
        runtime().block_on(async {
            let (status, _, body) = client
                .send(
                    "GET",
                    &format!("{base}/v2/{repo}/blobs/{digest}"),
                    "application/octet-stream",
                    Vec::new(),
                )
                .await;
            (status, body)
        })
    }

    /// DELETE a tag only (Portcullis; distribution 2.8 answers 400).
    fn delete_tag(&self, repo: &str, tag: &str) {
        let (base, client) = (self.base(), self.client());
        runtime().block_on(async {
            let (status, _, _) = client
                .send(
                    "DELETE",
                    &format!("{base}/v2/{repo}/manifests/{tag}"),
                    "application/octet-stream",
                    Vec::new(),
                )
                .await;
            assert_eq!(status, 202, "delete tag {repo}:{tag}");
        });
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

enum Http {
    Tls(Client),
    Plain(
        hyper_util::client::legacy::Client<
            hyper_util::client::legacy::connect::HttpConnector,
            portcullis::body::Body,
        >,
    ),
}

impl Http {
    async fn send(
        &self,
        method: &str,
        url: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> (http::StatusCode, http::HeaderMap, Vec<u8>) {
        let req = request(method, url, Some(BCRYPT_USER))
            .header("content-type", content_type)
            .body(portcullis::body::full(body))
            .unwrap();
        match self {
            Http::Tls(c) => {
                let a = c.send(req).await;
                (a.status, a.headers, a.body.to_vec())
            }
            Http::Plain(c) => {
                let r = c.request(req).await.expect("request to docker-registry");
                let (parts, body) = r.into_parts();
                let body = http_body_util::BodyExt::collect(body)
                    .await
                    .expect("read body")
                    .to_bytes();
                (parts.status, parts.headers, body.to_vec())
            }
        }
    }
}

/// What the scenario left behind, and what a correct collector must remove.
struct Scenario {
    /// `(reference, image)` that must still pull after any collection.
    tagged: Vec<(String, Image)>,
    /// `(repository@digest, image)` of untagged revisions: kept without
    /// `--delete-untagged` (and still pullable by digest), removed with it.
    untagged: Vec<(String, Image)>,
    /// Blobs no manifest references at all: the deleted manifest's own and the orphan.
    unreferenced: Set,
    /// What only the untagged revisions reference (their manifests included).
    only_untagged: Set,
}

/// Single-platform images in four repositories, some sharing layers; a tag overwritten;
/// a manifest deleted by digest; (on Portcullis) a tag deleted; an orphan blob.
fn single_arch_scenario(t: &Target, work: &Path, delete_a_tag: bool) -> Scenario {
    let src = work.join("src");
    let base = layered_image(&src.join("base"), &[], &[300 << 10, 40 << 10]);
    // Shares base's first layer.
    let app1 = layered_image(&src.join("app1"), &[(&base, 0)], &[50 << 10]);
    // Shares base's second layer; overwrites app1's tag.
    let app2 = layered_image(&src.join("app2"), &[(&base, 1)], &[20 << 10, 1 << 10]);
    // Shares base's first layer; deleted by digest.
    let tool = layered_image(&src.join("tool"), &[(&base, 0)], &[60 << 10]);
    // Shares app1's own layer (untagged either way below).
    let old = layered_image(&src.join("old"), &[(&app1, 1)], &[10 << 10]);

    t.push(&base, "team/base:v1");
    t.push(&base, "mirror/base:v1");
    t.push(&app1, "team/app:v1");
    t.push(&app2, "team/app:v1");
    t.push(&tool, "other/tool:v1");
    t.delete_manifest("other/tool", &tool);
    let mut untagged = vec![(format!("team/app@sha256:{}", app1.top), app1.clone())];
    let mut only_untagged = digests(&[&app1.blobs[1], &app1.blobs[2], &app1.blobs[3]]);
    if delete_a_tag {
        t.push(&old, "team/old:v1");
        t.delete_tag("team/old", "v1");
        only_untagged.extend(digests(&[&old.blobs[1], &old.blobs[2], &old.blobs[3]]));
        untagged.push((format!("team/old@sha256:{}", old.top), old));
    }
    let orphan = t.push_orphan_blob("team/app");
    // The tool's shared layer stays (base references it).
    let mut unreferenced = digests(&[&tool.blobs[1], &tool.blobs[2], &tool.blobs[3]]);
    unreferenced.insert(orphan);
    Scenario {
        tagged: vec![
            ("team/base:v1".into(), base.clone()),
            ("mirror/base:v1".into(), base),
            ("team/app:v1".into(), app2),
        ],
        untagged,
        unreferenced,
        only_untagged,
    }
}

fn untagged_manifests(s: &Scenario) -> Set {
    s.untagged
        .iter()
        .map(|(_, img)| format!("sha256:{}", img.top))
        .collect()
}

/// Same blobs (and manifests) named by both collectors, and what the scenario meant.
fn assert_agree(ours: &Verdict, theirs: &Verdict, want_blobs: &Set, want_manifests: &Set) {
    assert_eq!(
        &theirs.blobs, want_blobs,
        "distribution's eligible blobs are not what the scenario left unreferenced (the test's premise):\n{}",
        theirs.out
    );
    assert_eq!(
        &theirs.manifests, want_manifests,
        "distribution's eligible manifests:\n{}",
        theirs.out
    );
    assert_eq!(
        ours.blobs, theirs.blobs,
        "blobs: ours (left) vs distribution's (right)\nours:\n{}\ndistribution:\n{}",
        ours.out, theirs.out
    );
    assert_eq!(
        ours.manifests, theirs.manifests,
        "untagged manifests: ours (left) vs distribution's (right)\nours:\n{}\ndistribution:\n{}",
        ours.out, theirs.out
    );
    assert_eq!(
        ours.counted, theirs.counted,
        "(manifests, blobs) counted by ours (left) and distribution (right)"
    );
}

fn assert_nothing_left(root: &Path, delete_untagged: bool) {
    let after = distribution_gc(root, true, delete_untagged);
    assert_eq!(
        after.counted,
        (0, 0),
        "distribution still finds garbage after ours:\n{}",
        after.out
    );
    assert!(after.blobs.is_empty() && after.manifests.is_empty());
}

fn portcullis_options(root: &Path) -> Options {
    Options::registry().root(root).gc_grace(Duration::ZERO)
}

fn cross_check_single_arch(delete_untagged: bool) {
    let started = Instant::now();
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("data");
    let server = Server::start(&work.path().join("p"), &portcullis_options(&root));
    let config = server.dir.join("proxy.toml");
    let t = Target::Portcullis(&server);
    let s = single_arch_scenario(&t, work.path(), true);

    let mut want_blobs = s.unreferenced.clone();
    let mut want_manifests = Set::new();
    if delete_untagged {
        want_blobs.extend(s.only_untagged.iter().cloned());
        want_manifests = untagged_manifests(&s);
    }
    let theirs = distribution_gc(&root, true, delete_untagged);
    let ours = portcullis_gc(&config, true, delete_untagged);
    assert_agree(&ours, &theirs, &want_blobs, &want_manifests);

    let done = portcullis_gc(&config, false, delete_untagged);
    assert_eq!(done.blobs, theirs.blobs, "what the real run deleted");
    assert_eq!(done.manifests, theirs.manifests);
    assert_nothing_left(&root, delete_untagged);

    for (name, img) in &s.tagged {
        t.pull_and_check(name, img, false, work.path());
    }
    if !delete_untagged {
        for (name, img) in &s.untagged {
            t.pull_and_check(name, img, false, work.path());
        }
    }
    // And Debian's registry serves what is left from the same folder.
    let reg = DockerRegistry::start_with_root(&root);
    for (name, img) in &s.tagged {
        Target::Distribution(&reg).pull_and_check(name, img, false, work.path());
    }
    eprintln!("took {:?}", started.elapsed());
}

#[test]
fn after_portcullis_gc_distribution_finds_nothing_more_to_collect() {
    cross_check_single_arch(false);
}

#[test]
fn delete_untagged_collects_the_same_manifests_and_blobs_as_distribution() {
    cross_check_single_arch(true);
}

/// The child manifests of the index `img`, and the blobs only they reference.
fn children_of(img: &Image) -> (Set, Set) {
    let blob = |hex: &str| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(img.layout.join("blobs/sha256").join(hex)).unwrap())
            .unwrap()
    };
    let index = blob(&img.top);
    let mut manifests = Set::new();
    let mut blobs = Set::new();
    for m in index["manifests"].as_array().unwrap() {
        let d = m["digest"].as_str().unwrap().to_string();
        let child = blob(&d["sha256:".len()..]);
        blobs.insert(child["config"]["digest"].as_str().unwrap().to_string());
        for l in child["layers"].as_array().unwrap() {
            blobs.insert(l["digest"].as_str().unwrap().to_string());
        }
        manifests.insert(d);
    }
    (manifests, blobs)
}

#[test]
fn an_index_keeps_its_untagged_children_unlike_distribution() {
    let started = Instant::now();
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("data");
    let server = Server::start(&work.path().join("p"), &portcullis_options(&root));
    let config = server.dir.join("proxy.toml");
    let t = Target::Portcullis(&server);
    let index = two_platform_image(&work.path().join("src/multi"), &[200 << 10, 4096]);
    server.push(&index, "multi/app:v1", true);
    // Something --delete-untagged must collect, so both collectors are seen at work.
    let one = layered_image(&work.path().join("src/one"), &[], &[30 << 10]);
    let two = layered_image(&work.path().join("src/two"), &[], &[31 << 10]);
    t.push(&one, "single/app:v1");
    t.push(&two, "single/app:v1");
    let (children, child_blobs) = children_of(&index);
    assert_eq!(children.len(), 2);

    let theirs = distribution_gc(&root, true, true);
    let ours = portcullis_gc(&config, true, true);
    // Distribution would delete the index's children (it lists them as untagged) and
    // with them every layer and config of the tagged multi-arch image.
    let mut want = children.clone();
    want.insert(format!("sha256:{}", one.top));
    assert_eq!(theirs.manifests, want, "{}", theirs.out);
    assert_eq!(theirs.blobs, &all_of(&one) | &child_blobs, "{}", theirs.out);
    // Ours: the same, less the children and what only they reference.
    assert_eq!(
        ours.manifests,
        &theirs.manifests - &children,
        "{}",
        ours.out
    );
    assert_eq!(ours.blobs, &theirs.blobs - &child_blobs, "{}", ours.out);

    let done = portcullis_gc(&config, false, true);
    assert_eq!(done.manifests, ours.manifests, "{}", done.out);
    assert_eq!(done.blobs, ours.blobs, "{}", done.out);
    // The whole index still pulls, every platform.
    t.pull_and_check("multi/app:v1", &index, true, work.path());
    t.pull_and_check("single/app:v1", &two, false, work.path());
    // What distribution would still collect is exactly the divergence.
    let after = distribution_gc(&root, true, true);
    assert_eq!(after.manifests, children, "{}", after.out);
    assert_eq!(after.blobs, child_blobs, "{}", after.out);
    // Without -m, distribution agrees there is nothing left.
    assert_nothing_left(&root, false);
    eprintln!("took {:?}", started.elapsed());
}

#[test]
fn data_written_by_distribution_is_collected_the_same() {
    let started = Instant::now();
    let work = tempfile::tempdir().unwrap();
    let mut reg = DockerRegistry::start();
    let root: PathBuf = reg.dir.path().join("data");
    let s = single_arch_scenario(&Target::Distribution(&reg), work.path(), false);
    reg.kill();
    // Distribution leaves the deleted manifest's revision folder behind, empty.
    let tool_revisions =
        root.join("docker/registry/v2/repositories/other/tool/_manifests/revisions/sha256");
    let left: Vec<_> = std::fs::read_dir(&tool_revisions)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(
        std::fs::read_dir(&left[0]).unwrap().count(),
        0,
        "empty revision folder"
    );

    let server = Server::start(&work.path().join("p"), &portcullis_options(&root));
    let config = server.dir.join("proxy.toml");
    let theirs = distribution_gc(&root, true, false);
    let ours = portcullis_gc(&config, true, false);
    assert_agree(&ours, &theirs, &s.unreferenced, &Set::new());
    // With -m too (still a dry run).
    let theirs_m = distribution_gc(&root, true, true);
    let ours_m = portcullis_gc(&config, true, true);
    assert_agree(
        &ours_m,
        &theirs_m,
        &(&s.unreferenced | &s.only_untagged),
        &untagged_manifests(&s),
    );

    let done = portcullis_gc(&config, false, false);
    assert_eq!(done.blobs, theirs.blobs, "what the real run deleted");
    assert_nothing_left(&root, false);
    let t = Target::Portcullis(&server);
    for (name, img) in s.tagged.iter().chain(&s.untagged) {
        t.pull_and_check(name, img, false, work.path());
    }
    eprintln!("took {:?}", started.elapsed());
}

/// Stored manifests that a PUT to Portcullis would refuse, or whose references a PUT
/// does not require, keep what they reference as distribution's collector keeps it: a
/// Docker schema 2 image without layers (distribution 2.8 stores it; `manifest::parse`
/// refuses it), a Docker schema 1 image (from a registry with schema 1 enabled), and a
/// foreign layer (with `urls`) whose blob was pushed anyway.
#[test]
fn manifests_a_put_would_not_check_keep_their_blobs_as_in_distribution() {
    let started = Instant::now();
    let work = tempfile::tempdir().unwrap();
    let mut reg = DockerRegistry::start();
    let root: PathBuf = reg.dir.path().join("data");
    let desc = |mt: &str, d: &str, n: usize| json!({"mediaType": mt, "digest": d, "size": n});
    let unique = || uuid::Uuid::new_v4().to_string();

    // Written by distribution: a layerless Docker schema 2 image, and an orphan.
    let t = Target::Distribution(&reg);
    let config = json!({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}, "comment": unique()});
    let config = serde_json::to_vec(&config).unwrap();
    let (layerless_config, n) = (t.push_blob("odd/empty", config.clone()), config.len());
    let docker_v2 = "application/vnd.docker.distribution.manifest.v2+json";
    let m = json!({"schemaVersion": 2, "mediaType": docker_v2,
        "config": desc("application/vnd.docker.container.image.v1+json", &layerless_config, n),
        "layers": []});
    t.put_manifest("odd/empty", "v1", docker_v2, &m);
    let mut orphans = Set::new();
    orphans.insert(t.push_orphan_blob("odd/empty"));
    reg.kill();

    // Written by distribution with schema 1 still enabled: a schema 1 image, whose
    // layers are its `fsLayers`, and an orphan.
    let mut old = DockerRegistry::start_schema1();
    let t = Target::Distribution(&old);
    let v1 = layered_image(&work.path().join("src/v1"), &[], &[20 << 10]);
    let mut args = vec!["copy".to_string(), "--format=v2s1".into()];
    args.extend(t.flags("dest"));
    args.extend([v1.source(), t.reference("odd/schema1:v1")]);
    skopeo(&args.iter().map(String::as_str).collect::<Vec<_>>());
    orphans.insert(t.push_orphan_blob("odd/schema1"));
    let schema1_layer = format!("sha256:{}", v1.blobs[0]);
    old.kill();
    copy_tree(&old.dir.path().join("data"), &root);

    // Written by Portcullis: an image with a foreign layer whose blob is stored too.
    let server = Server::start(&work.path().join("p"), &portcullis_options(&root));
    let gc_config = server.dir.join("proxy.toml");
    let t = Target::Portcullis(&server);
    let config = format!(
        r#"{{"architecture":"amd64","os":"linux","comment":"{}"}}"#,
        unique()
    );
    let c = t.push_blob("odd/foreign", config.clone().into_bytes());
    let layer = format!("a layer, {}", unique()).into_bytes();
    let (l, nl) = (t.push_blob("odd/foreign", layer.clone()), layer.len());
    let foreign = format!("a foreign layer, {}", unique()).into_bytes();
    let (f, nf) = (t.push_blob("odd/foreign", foreign.clone()), foreign.len());
    let mut fdesc = desc(
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
        &f,
        nf,
    );
    fdesc["urls"] = json!(["https://example.com/foreign-layer"]);
    let m = json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": desc("application/vnd.oci.image.config.v1+json", &c, config.len()),
        "layers": [desc("application/vnd.oci.image.layer.v1.tar+gzip", &l, nl), fdesc]});
    t.put_manifest("odd/foreign", "v1", OCI_MANIFEST, &m);
    orphans.insert(t.push_orphan_blob("odd/foreign"));

    let theirs = distribution_gc(&root, true, false);
    let ours = portcullis_gc(&gc_config, true, false);
    assert_agree(&ours, &theirs, &orphans, &Set::new());
    let done = portcullis_gc(&gc_config, false, false);
    assert_eq!(done.blobs, orphans, "{}", done.out);
    assert_nothing_left(&root, false);
    for (repo, d) in [
        ("odd/empty", &layerless_config),
        ("odd/foreign", &f),
        ("odd/schema1", &schema1_layer),
    ] {
        let (status, body) = t.get_blob(repo, d);
        assert_eq!(status, 200, "{repo}: blob {d} after the collection");
        assert_eq!(format!("sha256:{}", sha256_hex(&body)), *d);
    }
    eprintln!("took {:?}", started.elapsed());
}

/// Copy the files under `from` into `to` (folders merged).
fn copy_tree(from: &Path, to: &Path) {
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dst = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&dst).unwrap();
            copy_tree(&e.path(), &dst);
        } else {
            std::fs::copy(e.path(), &dst).unwrap();
        }
    }
}
