// The bundled registry's API tests that hold for every storage backend: included by
// tests/registry.rs (filesystem) and tests/registry_s3.rs (S3 on s3s-fs), each of which
// defines `base_options()`, the registry configuration the tests start from.

const ALICE: Option<(&str, &str)> = Some(BCRYPT_USER);
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

struct Api {
    p: Portcullis,
    c: Client,
}

impl Api {
    async fn start() -> Api {
        Api::with(base_options()).await
    }

    async fn with(opts: Options) -> Api {
        let p = Portcullis::start(opts).await;
        let c = Client::h2(&p.ca());
        Api { p, c }
    }

    async fn call(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Answer {
        let url = if path.starts_with("https://") {
            path.to_string()
        } else {
            self.p.url(path)
        };
        let mut b = request(method, &url, ALICE);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        self.c.send(b.body(body::full(body.into())).unwrap()).await
    }

    async fn get(&self, path: &str) -> Answer {
        self.call("GET", path, &[], Bytes::new()).await
    }

    /// Monolithic upload; returns the digest.
    async fn push_blob(&self, repo: &str, data: &[u8]) -> String {
        let d = format!("sha256:{}", sha256_hex(data));
        let a = self
            .call(
                "POST",
                &format!("/v2/{repo}/blobs/uploads/?digest={d}"),
                &[],
                data.to_vec(),
            )
            .await;
        assert_eq!(a.status, StatusCode::CREATED, "{}", a.text());
        d
    }

    async fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        body: &[u8],
    ) -> Answer {
        self.call(
            "PUT",
            &format!("/v2/{repo}/manifests/{reference}"),
            &[("content-type", media_type)],
            body.to_vec(),
        )
        .await
    }

    /// A small OCI image in `repo`; returns (manifest bytes, manifest digest).
    async fn image(&self, repo: &str, tag: &str, seed: &str) -> (Vec<u8>, String) {
        let config = format!(r#"{{"architecture":"amd64","os":"linux","seed":"{seed}"}}"#);
        let layer = format!("layer of {seed}").into_bytes();
        let cd = self.push_blob(repo, config.as_bytes()).await;
        let ld = self.push_blob(repo, &layer).await;
        let m = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": config.len()},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": ld, "size": layer.len()}],
        }))
        .unwrap();
        let a = self.put_manifest(repo, tag, OCI_MANIFEST, &m).await;
        assert_eq!(a.status, StatusCode::CREATED, "{}", a.text());
        let d = format!("sha256:{}", sha256_hex(&m));
        assert_eq!(a.header("docker-content-digest"), d);
        (m, d)
    }
}

#[tokio::test]
async fn base_endpoint_needs_auth_and_answers_json() {
    let api = Api::start().await;
    let a = api.get("/v2/").await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.text(), "{}");
    assert_eq!(a.header("docker-distribution-api-version"), "registry/2.0");
    let anon = api.c.get(&api.p.url("/v2/"), None).await;
    assert_eq!(anon.status, StatusCode::UNAUTHORIZED);
    assert_eq!(anon.oci_code(), "UNAUTHORIZED");
}

#[tokio::test]
async fn blob_get_head_range_and_errors() {
    let api = Api::start().await;
    let data: Vec<u8> = (0..100_000u32).map(|i| (i % 253) as u8).collect();
    let d = api.push_blob("lib/a", &data).await;
    let url = format!("/v2/lib/a/blobs/{d}");

    let get = api.get(&url).await;
    assert_eq!(get.status, StatusCode::OK);
    assert_eq!(&get.body[..], &data[..]);
    assert_eq!(get.header("docker-content-digest"), d);
    assert_eq!(get.header("content-length"), data.len().to_string());
    assert_eq!(get.header("accept-ranges"), "bytes");
    assert_eq!(get.header("etag"), format!("\"{d}\""));
    assert_eq!(get.header("content-type"), "application/octet-stream");

    let head = api.call("HEAD", &url, &[], Bytes::new()).await;
    assert_eq!(head.status, StatusCode::OK);
    assert!(head.body.is_empty());
    assert_eq!(head.header("content-length"), data.len().to_string());

    let range = api
        .call("GET", &url, &[("range", "bytes=100-199")], Bytes::new())
        .await;
    assert_eq!(range.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(&range.body[..], &data[100..200]);
    assert_eq!(
        range.header("content-range"),
        format!("bytes 100-199/{}", data.len())
    );
    let tail = api
        .call("GET", &url, &[("range", "bytes=-10")], Bytes::new())
        .await;
    assert_eq!(&tail.body[..], &data[data.len() - 10..]);
    let bad = api
        .call("GET", &url, &[("range", "bytes=200000-")], Bytes::new())
        .await;
    assert_eq!(bad.status, StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(
        bad.header("content-range"),
        format!("bytes */{}", data.len())
    );

    // Content-addressed, but scoped to repositories: not linked into lib/b.
    let other = api.get(&format!("/v2/lib/b/blobs/{d}")).await;
    assert_eq!(other.status, StatusCode::NOT_FOUND);
    assert_eq!(other.oci_code(), "BLOB_UNKNOWN");
    let unknown = api
        .get(&format!("/v2/lib/a/blobs/sha256:{}", "0".repeat(64)))
        .await;
    assert_eq!(unknown.oci_code(), "BLOB_UNKNOWN");
    let invalid = api.get("/v2/lib/a/blobs/sha256:xyz").await;
    assert_eq!(invalid.status, StatusCode::BAD_REQUEST);
    assert_eq!(invalid.oci_code(), "DIGEST_INVALID");
}

#[tokio::test]
async fn chunked_upload_with_ranges_status_and_416() {
    let api = Api::start().await;
    let start = api
        .call("POST", "/v2/up/load/blobs/uploads/", &[], Bytes::new())
        .await;
    assert_eq!(start.status, StatusCode::ACCEPTED);
    assert_eq!(start.header("range"), "0-0");
    let uuid = start.header("docker-upload-uuid").to_string();
    let loc = start.header("location").to_string();
    assert!(
        loc.starts_with(&format!(
            "https://127.0.0.1:{}/v2/up/load/blobs/uploads/{uuid}?",
            api.p.addr.port()
        )),
        "{loc}"
    );

    let part1 = vec![1u8; 1000];
    let part2 = vec![2u8; 500];
    let a = api
        .call(
            "PATCH",
            &loc,
            &[
                ("content-range", "0-999"),
                ("content-type", "application/octet-stream"),
            ],
            part1.clone(),
        )
        .await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.text());
    assert_eq!(a.header("range"), "0-999");
    let loc = a.header("location").to_string();

    // Repeated and out-of-order chunks are refused with 416 and the current range.
    let again = api
        .call("PATCH", &loc, &[("content-range", "0-999")], part1.clone())
        .await;
    assert_eq!(again.status, StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(again.header("range"), "0-999");
    let gap = api
        .call(
            "PATCH",
            &loc,
            &[("content-range", "2000-2499")],
            part2.clone(),
        )
        .await;
    assert_eq!(gap.status, StatusCode::RANGE_NOT_SATISFIABLE);

    let status = api.get(&loc).await;
    assert_eq!(status.status, StatusCode::NO_CONTENT);
    assert_eq!(status.header("range"), "0-999");
    assert_eq!(status.header("docker-upload-uuid"), uuid);

    let a = api
        .call(
            "PATCH",
            &loc,
            &[("content-range", "1000-1499")],
            part2.clone(),
        )
        .await;
    assert_eq!(a.status, StatusCode::ACCEPTED);
    assert_eq!(a.header("range"), "0-1499");

    let mut all = part1.clone();
    all.extend_from_slice(&part2);
    let last = b"tail".to_vec();
    all.extend_from_slice(&last);
    let d = format!("sha256:{}", sha256_hex(&all));
    let put = api
        .call("PUT", &format!("{loc}&digest={d}"), &[], last)
        .await;
    assert_eq!(put.status, StatusCode::CREATED, "{}", put.text());
    assert_eq!(
        put.header("location"),
        format!(
            "https://127.0.0.1:{}/v2/up/load/blobs/{d}",
            api.p.addr.port()
        )
    );
    let get = api.get(&format!("/v2/up/load/blobs/{d}")).await;
    assert_eq!(get.body.to_vec(), all);
    // The session is gone once committed.
    let gone = api.get(&loc).await;
    assert_eq!(gone.oci_code(), "BLOB_UPLOAD_UNKNOWN");
}

#[tokio::test]
async fn post_then_put_digest_mismatch_cancel_and_forged_state() {
    let api = Api::start().await;
    let start = api
        .call("POST", "/v2/r/blobs/uploads/", &[], Bytes::new())
        .await;
    let loc = start.header("location").to_string();
    let wrong = format!("sha256:{}", "1".repeat(64));
    let bad = api
        .call(
            "PUT",
            &format!("{loc}&digest={wrong}"),
            &[],
            b"data".to_vec(),
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert_eq!(bad.oci_code(), "DIGEST_INVALID");
    assert_eq!(api.get(&format!("/v2/r/blobs/{wrong}")).await.status, 404);

    let start = api
        .call("POST", "/v2/r/blobs/uploads/", &[], Bytes::new())
        .await;
    let loc = start.header("location").to_string();
    let d = format!("sha256:{}", sha256_hex(b"whole"));
    let ok = api
        .call("PUT", &format!("{loc}&digest={d}"), &[], b"whole".to_vec())
        .await;
    assert_eq!(ok.status, StatusCode::CREATED);

    let start = api
        .call("POST", "/v2/r/blobs/uploads/", &[], Bytes::new())
        .await;
    let loc = start.header("location").to_string();
    let forged = loc.split("?_state=").next().unwrap().to_string() + "?_state=AAAA";
    assert_eq!(api.get(&forged).await.oci_code(), "BLOB_UPLOAD_UNKNOWN");
    // Another repository cannot use this session either.
    let elsewhere = loc.replace("/v2/r/", "/v2/s/");
    assert_eq!(
        api.call("PATCH", &elsewhere, &[], b"x".to_vec())
            .await
            .oci_code(),
        "BLOB_UPLOAD_UNKNOWN"
    );
    let cancel = api.call("DELETE", &loc, &[], Bytes::new()).await;
    assert_eq!(cancel.status, StatusCode::NO_CONTENT);
    assert_eq!(api.get(&loc).await.oci_code(), "BLOB_UPLOAD_UNKNOWN");

    // A closing PUT without `digest` on a live upload (holding data): the spec's answer
    // is 400 DIGEST_INVALID, and nothing is committed.
    let start = api
        .call("POST", "/v2/r/blobs/uploads/", &[], Bytes::new())
        .await;
    assert_eq!(start.status, StatusCode::ACCEPTED, "{}", start.text());
    let loc = start.header("location").to_string();
    let p = api
        .call("PATCH", &loc, &[], b"no digest given".to_vec())
        .await;
    assert_eq!(p.status, StatusCode::ACCEPTED, "{}", p.text());
    let loc = p.header("location").to_string();
    assert_eq!(api.get(&loc).await.status, StatusCode::NO_CONTENT, "live");
    let missing_digest = api.call("PUT", &loc, &[], Bytes::new()).await;
    assert_eq!(
        missing_digest.status,
        StatusCode::BAD_REQUEST,
        "{}",
        missing_digest.text()
    );
    assert_eq!(missing_digest.oci_code(), "DIGEST_INVALID");
}

#[tokio::test]
async fn cross_repository_mount_and_fallback() {
    let api = Api::start().await;
    let d = api.push_blob("src/repo", b"shared layer").await;
    let m = api
        .call(
            "POST",
            &format!("/v2/dst/repo/blobs/uploads/?mount={d}&from=src/repo"),
            &[],
            Bytes::new(),
        )
        .await;
    assert_eq!(m.status, StatusCode::CREATED);
    assert_eq!(m.header("docker-content-digest"), d);
    assert_eq!(
        api.get(&format!("/v2/dst/repo/blobs/{d}")).await.body,
        "shared layer"
    );
    let absent = format!("sha256:{}", "2".repeat(64));
    let f = api
        .call(
            "POST",
            &format!("/v2/dst/repo/blobs/uploads/?mount={absent}&from=src/repo"),
            &[],
            Bytes::new(),
        )
        .await;
    assert_eq!(
        f.status,
        StatusCode::ACCEPTED,
        "falls back to an upload session"
    );
    assert!(f.header("location").contains("/v2/dst/repo/blobs/uploads/"));
}

#[tokio::test]
async fn manifests_by_tag_and_digest_all_four_types() {
    let api = Api::start().await;
    let (m, d) = api.image("app", "v1", "one").await;
    for reference in ["v1", d.as_str()] {
        let get = api.get(&format!("/v2/app/manifests/{reference}")).await;
        assert_eq!(get.status, StatusCode::OK);
        assert_eq!(get.body.to_vec(), m);
        assert_eq!(get.header("content-type"), OCI_MANIFEST);
        assert_eq!(get.header("docker-content-digest"), d);
        assert_eq!(get.header("etag"), format!("\"{d}\""));
        let head = api
            .call(
                "HEAD",
                &format!("/v2/app/manifests/{reference}"),
                &[],
                Bytes::new(),
            )
            .await;
        assert_eq!(head.header("content-length"), m.len().to_string());
        assert!(head.body.is_empty());
    }

    // Docker schema 2 (no mediaType check games: it carries its own).
    let cfg = api.push_blob("app", b"{\"os\":\"linux\"}").await;
    let layer = api.push_blob("app", b"docker layer").await;
    let docker = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": cfg, "size": 15},
        "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "digest": layer, "size": 12}],
    }))
    .unwrap();
    let a = api
        .put_manifest("app", "docker", DOCKER_MANIFEST, &docker)
        .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.text());
    let dd = a.header("docker-content-digest").to_string();
    assert_eq!(
        api.get("/v2/app/manifests/docker")
            .await
            .header("content-type"),
        DOCKER_MANIFEST
    );

    // Docker manifest list and OCI index over those two.
    for (mt, tag) in [(DOCKER_LIST, "list"), (OCI_INDEX, "index")] {
        let list = serde_json::to_vec(&json!({
            "schemaVersion": 2, "mediaType": mt,
            "manifests": [
                {"mediaType": OCI_MANIFEST, "digest": d, "size": m.len(), "platform": {"architecture": "amd64", "os": "linux"}},
                {"mediaType": DOCKER_MANIFEST, "digest": dd, "size": docker.len(), "platform": {"architecture": "arm64", "os": "linux"}},
            ],
        }))
        .unwrap();
        let a = api.put_manifest("app", tag, mt, &list).await;
        assert_eq!(a.status, StatusCode::CREATED, "{}", a.text());
        let get = api.get(&format!("/v2/app/manifests/{tag}")).await;
        assert_eq!(get.header("content-type"), mt);
        assert_eq!(get.body.to_vec(), list);
    }
}

#[tokio::test]
async fn manifest_errors() {
    let api = Api::start().await;
    let (m, d) = api.image("app", "v1", "x").await;
    let missing = api.get("/v2/app/manifests/nope").await;
    assert_eq!(
        (missing.status, missing.oci_code().as_str()),
        (StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN")
    );
    let elsewhere = api.get(&format!("/v2/other/manifests/{d}")).await;
    assert_eq!(elsewhere.oci_code(), "MANIFEST_UNKNOWN");

    let unknown_blob = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": format!("sha256:{}", "3".repeat(64)), "size": 1},
        "layers": [],
    }))
    .unwrap();
    let a = api
        .put_manifest("app", "bad", OCI_MANIFEST, &unknown_blob)
        .await;
    assert_eq!(
        (a.status, a.oci_code().as_str()),
        (StatusCode::BAD_REQUEST, "MANIFEST_BLOB_UNKNOWN")
    );
    let a = api
        .put_manifest("app", "bad", OCI_MANIFEST, b"{not json")
        .await;
    assert_eq!(a.oci_code(), "MANIFEST_INVALID");
    let a = api.put_manifest("app", "bad", DOCKER_MANIFEST, &m).await;
    assert_eq!(
        a.oci_code(),
        "MANIFEST_INVALID",
        "mediaType and Content-Type disagree"
    );
    let a = api
        .put_manifest(
            "app",
            &format!("sha256:{}", "4".repeat(64)),
            OCI_MANIFEST,
            &m,
        )
        .await;
    assert_eq!(a.oci_code(), "DIGEST_INVALID");
    let a = api.put_manifest("app", &d, OCI_MANIFEST, &m).await;
    assert_eq!(a.status, StatusCode::CREATED, "PUT by the right digest");
    // Tags the route hands to the manifest endpoint (one path segment) but the tag
    // grammar `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}` refuses: a leading '.' or '-', a
    // character outside the set, one byte too long.
    for tag in [
        ".hidden".to_string(),
        "-dash".to_string(),
        "tag+plus".to_string(),
        "t".repeat(129),
    ] {
        let a = api.put_manifest("app", &tag, OCI_MANIFEST, &m).await;
        assert_eq!(
            a.status,
            StatusCode::BAD_REQUEST,
            "PUT /v2/app/manifests/{tag}: {}",
            a.text()
        );
        assert_eq!(a.oci_code(), "TAG_INVALID", "{tag}");
        let get = api.get(&format!("/v2/app/manifests/{tag}")).await;
        assert_ne!(get.status, StatusCode::OK, "{tag} was stored");
    }
    let big = vec![b' '; (4 << 20) + 1];
    let a = api.put_manifest("app", "big", OCI_MANIFEST, &big).await;
    assert_eq!(
        (a.status, a.oci_code().as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, "MANIFEST_INVALID")
    );
    // An index naming a manifest that is not there.
    let idx = serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [{"mediaType": OCI_MANIFEST, "digest": format!("sha256:{}", "5".repeat(64)), "size": 1}]})).unwrap();
    assert_eq!(
        api.put_manifest("app", "idx", OCI_INDEX, &idx)
            .await
            .oci_code(),
        "MANIFEST_BLOB_UNKNOWN"
    );
}

#[tokio::test]
async fn names_are_validated() {
    let api = Api::start().await;
    for path in [
        "/v2/UPPER/tags/list",
        "/v2/a/../b/tags/list",
        "/v2/a//b/tags/list",
        "/v2/-a/manifests/x",
    ] {
        let a = api.get(path).await;
        assert_eq!(
            (a.status, a.oci_code().as_str()),
            (StatusCode::BAD_REQUEST, "NAME_INVALID"),
            "{path}"
        );
    }
    // A read by a malformed reference names no manifest (404); a write is refused.
    let a = api.get("/v2/a/manifests/bad%20tag").await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    let a = api
        .call("PUT", "/v2/a/manifests/bad%20tag", &[], Bytes::new())
        .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn tags_and_catalog_paginate_with_link() {
    let api = Api::start().await;
    for (repo, tag) in [
        ("b/one", "v2"),
        ("b/one", "v10"),
        ("b/one", "latest"),
        ("a", "x"),
        ("c/d/e", "y"),
    ] {
        api.image(repo, tag, &format!("{repo}{tag}")).await;
    }
    let all = api.get("/v2/b/one/tags/list").await;
    assert_eq!(
        all.text(),
        r#"{"name":"b/one","tags":["latest","v10","v2"]}"#
    );
    let p1 = api.get("/v2/b/one/tags/list?n=2").await;
    assert_eq!(p1.text(), r#"{"name":"b/one","tags":["latest","v10"]}"#);
    assert_eq!(
        p1.header("link"),
        r#"</v2/b/one/tags/list?n=2&last=v10>; rel="next""#
    );
    let p2 = api.get("/v2/b/one/tags/list?n=2&last=v10").await;
    assert_eq!(p2.text(), r#"{"name":"b/one","tags":["v2"]}"#);
    assert!(p2.headers.get("link").is_none());
    let unknown = api.get("/v2/nope/tags/list").await;
    assert_eq!(
        (unknown.status, unknown.oci_code().as_str()),
        (StatusCode::NOT_FOUND, "NAME_UNKNOWN")
    );

    let cat = api.get("/v2/_catalog").await;
    assert_eq!(cat.text(), r#"{"repositories":["a","b/one","c/d/e"]}"#);
    let c1 = api.get("/v2/_catalog?n=1").await;
    assert_eq!(c1.text(), r#"{"repositories":["a"]}"#);
    assert_eq!(
        c1.header("link"),
        r#"</v2/_catalog?n=1&last=a>; rel="next""#
    );
    let c2 = api.get("/v2/_catalog?n=1&last=b%2Fone").await;
    assert_eq!(c2.text(), r#"{"repositories":["c/d/e"]}"#);
}

/// sha256 of `data` by coreutils' `sha256sum`, a hasher independent of the test's own.
fn sha256sum_tool(data: &[u8]) -> String {
    use std::io::Write;
    let mut child = std::process::Command::new(require("sha256sum"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run sha256sum");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(data)
        .expect("feed sha256sum");
    let out = child.wait_with_output().expect("sha256sum output");
    assert!(out.status.success(), "sha256sum failed: {out:?}");
    let text = String::from_utf8(out.stdout).expect("utf8");
    text.split_whitespace()
        .next()
        .expect("sha256sum printed a digest")
        .to_string()
}

#[tokio::test]
async fn artifacts_subject_and_referrers() {
    let api = Api::start().await;
    let (_, subject) = api.image("app", "v1", "base").await;
    // The empty descriptor `{}`, pushed under the digest coreutils' sha256sum gives
    // it: the server verifies the bytes against it and reports what it stored.
    let empty = format!("sha256:{}", sha256sum_tool(b"{}"));
    let a = api
        .call(
            "POST",
            &format!("/v2/app/blobs/uploads/?digest={empty}"),
            &[],
            b"{}".to_vec(),
        )
        .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.text());
    assert_eq!(a.header("docker-content-digest"), empty);
    assert_eq!(api.get(&format!("/v2/app/blobs/{empty}")).await.body, "{}");
    let mut digests = Vec::new();
    for (kind, payload) in [
        ("application/vnd.example.sig", "sig"),
        ("application/vnd.example.sbom+json", "sbom"),
    ] {
        let layer = api.push_blob("app", payload.as_bytes()).await;
        let m = serde_json::to_vec(&json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": kind,
            "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2},
            "layers": [{"mediaType": "application/octet-stream", "digest": layer, "size": payload.len()}],
            "subject": {"mediaType": OCI_MANIFEST, "digest": subject, "size": 1},
            "annotations": {"org.example.kind": payload},
        }))
        .unwrap();
        let d = format!("sha256:{}", sha256_hex(&m));
        let a = api.put_manifest("app", &d, OCI_MANIFEST, &m).await;
        assert_eq!(a.status, StatusCode::CREATED, "{}", a.text());
        assert_eq!(a.header("oci-subject"), subject);
        digests.push((kind, d, m.len()));
    }
    let r = api.get(&format!("/v2/app/referrers/{subject}")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("content-type"), OCI_INDEX);
    assert!(r.headers.get("oci-filters-applied").is_none());
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["mediaType"], OCI_INDEX);
    let list = v["manifests"].as_array().unwrap();
    assert_eq!(list.len(), 2);
    for (kind, d, size) in &digests {
        let e = list
            .iter()
            .find(|e| e["digest"] == d.as_str())
            .expect("referrer listed");
        assert_eq!(e["artifactType"], *kind);
        assert_eq!(e["size"], *size);
        assert_eq!(e["mediaType"], OCI_MANIFEST);
        assert!(e["annotations"]["org.example.kind"].is_string());
    }
    let f = api
        .get(&format!(
            "/v2/app/referrers/{subject}?artifactType=application/vnd.example.sbom%2Bjson"
        ))
        .await;
    assert_eq!(f.header("oci-filters-applied"), "artifactType");
    let v: serde_json::Value = serde_json::from_slice(&f.body).unwrap();
    assert_eq!(v["manifests"].as_array().unwrap().len(), 1);
    assert_eq!(
        v["manifests"][0]["artifactType"],
        "application/vnd.example.sbom+json"
    );
    let none = api
        .get(&format!("/v2/app/referrers/sha256:{}", "6".repeat(64)))
        .await;
    assert_eq!(none.status, StatusCode::OK);
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&none.body).unwrap()["manifests"],
        json!([])
    );
    let bad = api.get("/v2/app/referrers/nope").await;
    assert_eq!(bad.oci_code(), "DIGEST_INVALID");
}

#[tokio::test]
async fn deletes_of_manifests_tags_and_blobs() {
    let api = Api::start().await;
    let (_, d) = api.image("app", "v1", "a").await;
    api.put_manifest(
        "app",
        "v2",
        OCI_MANIFEST,
        &api.get("/v2/app/manifests/v1").await.body,
    )
    .await;
    // Tag delete removes only the tag.
    assert_eq!(
        api.call("DELETE", "/v2/app/manifests/v2", &[], Bytes::new())
            .await
            .status,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        api.get("/v2/app/manifests/v2").await.oci_code(),
        "MANIFEST_UNKNOWN"
    );
    assert_eq!(api.get("/v2/app/manifests/v1").await.status, 200);
    // Digest delete removes the revision and the tags on it.
    assert_eq!(
        api.call(
            "DELETE",
            &format!("/v2/app/manifests/{d}"),
            &[],
            Bytes::new()
        )
        .await
        .status,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        api.get(&format!("/v2/app/manifests/{d}")).await.oci_code(),
        "MANIFEST_UNKNOWN"
    );
    assert_eq!(
        api.get("/v2/app/manifests/v1").await.oci_code(),
        "MANIFEST_UNKNOWN"
    );
    assert_eq!(
        api.call(
            "DELETE",
            &format!("/v2/app/manifests/{d}"),
            &[],
            Bytes::new()
        )
        .await
        .status,
        404
    );

    let b = api.push_blob("app", b"to delete").await;
    assert_eq!(
        api.call("DELETE", &format!("/v2/app/blobs/{b}"), &[], Bytes::new())
            .await
            .status,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        api.get(&format!("/v2/app/blobs/{b}")).await.oci_code(),
        "BLOB_UNKNOWN"
    );
    assert_eq!(
        api.call("DELETE", &format!("/v2/app/blobs/{b}"), &[], Bytes::new())
            .await
            .oci_code(),
        "BLOB_UNKNOWN"
    );
}

#[tokio::test]
async fn delete_false_answers_405_unsupported() {
    let api = Api::with(base_options().delete(false)).await;
    let (_, d) = api.image("app", "v1", "a").await;
    for path in [
        format!("/v2/app/manifests/{d}"),
        "/v2/app/manifests/v1".into(),
        format!("/v2/app/blobs/{d}"),
    ] {
        let a = api.call("DELETE", &path, &[], Bytes::new()).await;
        assert_eq!(
            (a.status, a.oci_code().as_str()),
            (StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED"),
            "{path}"
        );
    }
    assert_eq!(api.get("/v2/app/manifests/v1").await.status, 200);
    // Cancelling an upload is not a deletion of content: still allowed.
    let s = api
        .call("POST", "/v2/app/blobs/uploads/", &[], Bytes::new())
        .await;
    assert_eq!(
        api.call("DELETE", s.header("location"), &[], Bytes::new())
            .await
            .status,
        StatusCode::NO_CONTENT
    );
}

#[tokio::test]
async fn concurrent_pushes_of_one_blob_and_one_tag_are_safe() {
    let api = std::sync::Arc::new(Api::start().await);
    let data: Vec<u8> = (0..2_000_000u32).map(|i| (i % 241) as u8).collect();
    let want = format!("sha256:{}", sha256_hex(&data));
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let api = api.clone();
        let (data, want) = (data.clone(), want.clone());
        tasks.push(tokio::spawn(async move {
            api.call(
                "POST",
                &format!("/v2/race/blobs/uploads/?digest={want}"),
                &[],
                data,
            )
            .await
        }));
    }
    // Every push is accepted and the server reports the content's digest.
    for t in tasks {
        let a = t.await.unwrap();
        assert_eq!(a.status, StatusCode::CREATED, "{}", a.text());
        assert_eq!(a.header("docker-content-digest"), want);
    }
    // What the server serves under that digest is the data, and re-hashes to it.
    let got = api.get(&format!("/v2/race/blobs/{want}")).await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.header("docker-content-digest"), want);
    assert_eq!(format!("sha256:{}", sha256_hex(&got.body)), want);
    assert_eq!(got.body.len(), data.len());
    assert!(
        got.body == data,
        "blob content differs from what was pushed"
    );

    let mut tasks = Vec::new();
    for i in 0..8 {
        let api = api.clone();
        tasks.push(tokio::spawn(async move {
            api.image("race", "latest", &format!("seed{i}")).await
        }));
    }
    let mut pushed = Vec::new();
    for t in tasks {
        pushed.push(t.await.unwrap().0);
    }
    // The tag resolves to one manifest the server stores whole: the digest it reports
    // is the hash of the bytes it serves, by tag and by digest alike.
    let cur = api.get("/v2/race/manifests/latest").await;
    assert_eq!(cur.status, StatusCode::OK);
    let d = cur.header("docker-content-digest").to_string();
    assert_eq!(format!("sha256:{}", sha256_hex(&cur.body)), d);
    let by_digest = api.get(&format!("/v2/race/manifests/{d}")).await;
    assert_eq!(by_digest.status, StatusCode::OK);
    assert_eq!(by_digest.body, cur.body);
    // ... and it is one of the manifests the tasks pushed, not a mix of them.
    assert!(
        pushed.iter().any(|m| *m == cur.body.to_vec()),
        "the tag points at a manifest nobody pushed: {}",
        cur.text()
    );
    // Every blob that manifest names is present and hashes to its digest.
    let m: serde_json::Value = serde_json::from_slice(&cur.body).unwrap();
    let mut blobs = vec![m["config"]["digest"].as_str().unwrap().to_string()];
    for l in m["layers"].as_array().unwrap() {
        blobs.push(l["digest"].as_str().unwrap().to_string());
    }
    for b in blobs {
        let got = api.get(&format!("/v2/race/blobs/{b}")).await;
        assert_eq!(
            got.status,
            StatusCode::OK,
            "blob {b} of the tagged manifest"
        );
        assert_eq!(format!("sha256:{}", sha256_hex(&got.body)), b);
    }
    // Every pushed manifest stays readable by its own digest.
    for m in &pushed {
        let d = format!("sha256:{}", sha256_hex(m));
        let got = api.get(&format!("/v2/race/manifests/{d}")).await;
        assert_eq!(got.status, StatusCode::OK, "{d}");
        assert_eq!(got.body.to_vec(), *m);
    }
}

/// OCI: a chunk (the closing PUT included) that does not start where the stored data
/// ends is 416, and the session survives so the client can ask and resume.
#[tokio::test]
async fn closing_put_with_a_range_that_does_not_follow_is_416_and_resumable() {
    let api = Api::start().await;
    let start = api
        .call("POST", "/v2/resume/me/blobs/uploads/", &[], Bytes::new())
        .await;
    let loc = start.header("location").to_string();
    let head = vec![3u8; 1000];
    let tail = b"the last chunk".to_vec();
    let a = api
        .call("PATCH", &loc, &[("content-range", "0-999")], head.clone())
        .await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.text());
    let loc = a.header("location").to_string();
    let mut all = head.clone();
    all.extend_from_slice(&tail);
    let d = format!("sha256:{}", sha256_hex(&all));

    let wrong = format!("2000-{}", 2000 + tail.len() - 1);
    let put = api
        .call(
            "PUT",
            &format!("{loc}&digest={d}"),
            &[("content-range", &wrong)],
            tail.clone(),
        )
        .await;
    assert_eq!(
        put.status,
        StatusCode::RANGE_NOT_SATISFIABLE,
        "{}",
        put.text()
    );
    assert_eq!(put.header("range"), "0-999");
    let status = api.get(&loc).await;
    assert_eq!(status.status, StatusCode::NO_CONTENT, "{}", status.text());
    assert_eq!(status.header("range"), "0-999");

    let right = format!("1000-{}", 1000 + tail.len() - 1);
    let put = api
        .call(
            "PUT",
            &format!("{loc}&digest={d}"),
            &[("content-range", &right)],
            tail,
        )
        .await;
    assert_eq!(put.status, StatusCode::CREATED, "{}", put.text());
    assert_eq!(
        api.get(&format!("/v2/resume/me/blobs/{d}"))
            .await
            .body
            .to_vec(),
        all
    );
}

/// distribution and the OCI conformance suite: reading a manifest by a malformed
/// reference is 404 MANIFEST_UNKNOWN; writing one is still 400 TAG_INVALID.
#[tokio::test]
async fn malformed_manifest_references_are_unknown_to_reads_and_invalid_to_writes() {
    let api = Api::start().await;
    let (m, _) = api.image("refs/app", "v1", "m").await;
    for reference in [".INVALID_MANIFEST_NAME", "sha256:xyz"] {
        let path = format!("/v2/refs/app/manifests/{reference}");
        let get = api.get(&path).await;
        assert_eq!(
            (get.status, get.oci_code().as_str()),
            (StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN"),
            "GET {reference}"
        );
        let head = api.call("HEAD", &path, &[], Bytes::new()).await;
        assert_eq!(head.status, StatusCode::NOT_FOUND, "HEAD {reference}");
    }
    let put = api
        .put_manifest("refs/app", ".INVALID_MANIFEST_NAME", OCI_MANIFEST, &m)
        .await;
    assert_eq!(
        (put.status, put.oci_code().as_str()),
        (StatusCode::BAD_REQUEST, "TAG_INVALID")
    );
}

/// RFC 9110 §14.2: a Range the server will not serve (several ranges, another unit,
/// an invalid specifier) is ignored: 200 and the whole blob.
#[tokio::test]
async fn ranges_we_do_not_serve_are_ignored_with_the_whole_blob() {
    let api = Api::start().await;
    let data: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
    let d = api.push_blob("ranges/app", &data).await;
    let url = format!("/v2/ranges/app/blobs/{d}");
    for range in ["bytes=0-1,5-6", "items=0-1", "bytes=9-3"] {
        let a = api
            .call("GET", &url, &[("range", range)], Bytes::new())
            .await;
        assert_eq!(a.status, StatusCode::OK, "{range}");
        assert_eq!(a.body.to_vec(), data, "{range}");
        assert_eq!(a.header("content-length"), data.len().to_string());
        assert!(a.headers.get("content-range").is_none(), "{range}");
        let h = api
            .call("HEAD", &url, &[("range", range)], Bytes::new())
            .await;
        assert_eq!(h.status, StatusCode::OK, "HEAD {range}");
    }
    // A single range is still served as one.
    let a = api
        .call("GET", &url, &[("range", "bytes=10-19")], Bytes::new())
        .await;
    assert_eq!(a.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(&a.body[..], &data[10..20]);
}

/// Regular files below `dir`, at any depth (0 when it is absent).
fn files_under(dir: &std::path::Path) -> usize {
    match std::fs::read_dir(dir) {
        Err(_) => 0,
        Ok(rd) => rd
            .flatten()
            .map(|e| match e.file_type() {
                Ok(t) if t.is_dir() => files_under(&e.path()),
                Ok(t) if t.is_file() => 1,
                _ => 0,
            })
            .sum(),
    }
}

fn portcullis_gc(config: &std::path::Path, dry_run: bool) -> String {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"));
    cmd.arg("gc").arg("-c").arg(config).env("RUST_LOG", "warn");
    if dry_run {
        cmd.arg("--dry-run");
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_deletes_only_what_no_manifest_references() {
    let api = Api::with(base_options().gc_grace(Duration::ZERO)).await;
    let (keep_m, _) = api.image("gc/app", "keep", "kept").await;
    let (_, drop_d) = api.image("gc/app", "drop", "dropped").await;
    let orphan = api.push_blob("gc/app", b"pushed, never referenced").await;
    let drop_manifest = api.get(&format!("/v2/gc/app/manifests/{drop_d}")).await;
    let drop_json: serde_json::Value = serde_json::from_slice(&drop_manifest.body).unwrap();
    let drop_layer = drop_json["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        api.call(
            "DELETE",
            &format!("/v2/gc/app/manifests/{drop_d}"),
            &[],
            Bytes::new()
        )
        .await
        .status,
        202
    );

    let config = api.p.dir.path().join("proxy.toml");
    let data = data_dir(&api).join("docker/registry/v2/blobs/sha256");
    let blob_file = |d: &str| data.join(&d[7..9]).join(&d[7..]).join("data");
    let dry = tokio::task::spawn_blocking({
        let config = config.clone();
        move || portcullis_gc(&config, true)
    })
    .await
    .unwrap();
    assert!(dry.contains(&format!("would delete blob {orphan}")), "{dry}");
    assert!(dry.contains(&format!("would delete blob {drop_layer}")), "{dry}");
    assert!(dry.contains(&format!("would delete blob {drop_d}")), "{dry}");
    assert!(dry.contains("would delete 0 untagged manifests and 4 blobs"), "{dry}");
    assert!(blob_file(&orphan).exists(), "a dry run deletes nothing");

    // The bytes freed are the swept blobs' sizes as stored.
    let drop_config = drop_json["config"]["digest"].as_str().unwrap().to_string();
    let freed: u64 = [&orphan, &drop_layer, &drop_d, &drop_config]
        .iter()
        .map(|d| std::fs::metadata(blob_file(d)).unwrap().len())
        .sum();
    let real = tokio::task::spawn_blocking(move || portcullis_gc(&config, false))
        .await
        .unwrap();
    assert!(real.contains("deleted 0 untagged manifests and 4 blobs"), "{real}");
    assert!(
        real.contains(&format!(", {freed} bytes freed")) || real.contains(&format!("({freed} bytes) freed")),
        "{real}"
    );
    for gone in [&orphan, &drop_layer, &drop_d] {
        assert!(!blob_file(gone).exists(), "{gone} should be gone");
    }
    assert_eq!(
        api.get(&format!("/v2/gc/app/blobs/{orphan}"))
            .await
            .oci_code(),
        "BLOB_UNKNOWN"
    );
    // What the kept tag needs is all there.
    let kept = api.get("/v2/gc/app/manifests/keep").await;
    assert_eq!(kept.body.to_vec(), keep_m);
    let kept_json: serde_json::Value = serde_json::from_slice(&keep_m).unwrap();
    for d in [
        &kept_json["config"]["digest"],
        &kept_json["layers"][0]["digest"],
    ] {
        let a = api
            .get(&format!("/v2/gc/app/blobs/{}", d.as_str().unwrap()))
            .await;
        assert_eq!(a.status, StatusCode::OK);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_spares_young_blobs_by_default() {
    let api = Api::start().await;
    let orphan = api
        .push_blob("gc/young", b"an upload whose manifest is still coming")
        .await;
    let config = api.p.dir.path().join("proxy.toml");
    let out = tokio::task::spawn_blocking(move || portcullis_gc(&config, false))
        .await
        .unwrap();
    assert!(
        out.contains("1 unreferenced but younger than 3600s, 0 vouched for by requests during the collection; deleted 0 untagged manifests and 0 blobs"),
        "{out}"
    );
    assert_eq!(
        api.get(&format!("/v2/gc/young/blobs/{orphan}"))
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn abandoned_uploads_are_purged_after_their_age() {
    // The age is the time every step on a young upload must fit in (the PATCH, the look
    // at its files, the fresh upload's rounds below): on a loaded machine one fsync'd
    // POST or PATCH can take a second, and at an age of 1 s the upload could be purged
    // before the test looked at it.
    let age = Duration::from_secs(10);
    let api = Api::with(base_options().upload_purge(age, Duration::from_millis(300))).await;
    let s = api
        .call("POST", "/v2/purge/me/blobs/uploads/", &[], Bytes::new())
        .await;
    let loc = s.header("location").to_string();
    assert_eq!(
        api.call("PATCH", &loc, &[("content-range", "0-2")], b"abc".to_vec())
            .await
            .status,
        202
    );
    let dir = data_dir(&api).join("docker/registry/v2/repositories/purge/me/_uploads");
    assert!(files_under(&dir) > 0, "the upload is stored");
    let deadline = std::time::Instant::now() + age + std::time::Duration::from_secs(60);
    loop {
        if api.get(&loc).await.status == StatusCode::NOT_FOUND {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the abandoned upload was never purged"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(files_under(&dir), 0, "nothing of the purged upload stays");
    // A fresh upload is younger than the age and survives the next rounds (a second:
    // three of them at 300 ms, far within the age).
    let fresh = api
        .call("POST", "/v2/purge/me/blobs/uploads/", &[], Bytes::new())
        .await;
    assert_eq!(fresh.status, StatusCode::ACCEPTED, "{}", fresh.text());
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    assert_eq!(
        api.get(fresh.header("location")).await.status,
        StatusCode::NO_CONTENT
    );
}

// ---- issue 8: concurrency, resumable closing PUT, reads of malformed references,
// ---- ignored ranges, bounded per-upload state, full storage, manifest memory.

/// A blob that is there stays there, whole, when it is pushed again under its digest,
/// and when other bytes are pushed under its digest (refused as DIGEST_INVALID): the
/// second push's leftovers never take the stored blob with them.
#[tokio::test]
async fn pushing_a_blob_again_or_wrongly_under_its_digest_keeps_it() {
    let api = Api::start().await;
    for size in [3000usize, (9 << 20) + 5] {
        let data: Vec<u8> = (0..size).map(|i| (i % 239) as u8).collect();
        let d = api.push_blob("keep/me", &data).await;
        assert_eq!(api.push_blob("keep/me", &data).await, d);
        let mut other = data.clone();
        other[size / 2] ^= 0xff;
        let bad = api
            .call("POST", &format!("/v2/keep/me/blobs/uploads/?digest={d}"), &[], other)
            .await;
        assert_eq!(bad.oci_code(), "DIGEST_INVALID");
        let got = api.get(&format!("/v2/keep/me/blobs/{d}")).await;
        assert_eq!(got.status, StatusCode::OK, "the stored blob is gone");
        assert!(got.body == data, "the stored blob changed");
    }
}

/// One step of a gc-racing push: what a client does for a layer it may already have
/// pushed (distribution's client: HEAD, else mount from where it was, else upload).
async fn ensure_layer(api: &Api, repo: &str, from: &str, d: &str, data: &[u8]) -> bool {
    if api.call("HEAD", &format!("/v2/{repo}/blobs/{d}"), &[], Bytes::new()).await.status == 200 {
        return true;
    }
    let m = api
        .call("POST", &format!("/v2/{repo}/blobs/uploads/?mount={d}&from={from}"), &[], Bytes::new())
        .await;
    if m.status == 201 {
        return true;
    }
    let u = api
        .call("POST", &format!("/v2/{repo}/blobs/uploads/?digest={d}"), &[], data.to_vec())
        .await;
    u.status == 201
}

/// Pull `repo:tag` as a client would, verifying it is manifest `digest` and that every
/// blob is served with its digest; what went wrong, if anything.
async fn pulls(api: &Api, repo: &str, tag: &str, digest: &str, blobs: &[String]) -> Vec<String> {
    let m = api.get(&format!("/v2/{repo}/manifests/{tag}")).await;
    if m.status != 200 || m.header("docker-content-digest") != digest {
        return vec![format!("{repo}:{tag}: manifest {} {}", m.status, m.header("docker-content-digest"))];
    }
    let mut failed = Vec::new();
    for b in blobs {
        let mut a = api.get(&format!("/v2/{repo}/blobs/{b}")).await;
        // 503 + Retry-After (a slow store, or a collection deciding this blob's batch
        // for longer than a request waits): a client retries; only a wrong or missing
        // blob is a failure.
        for _ in 0..30 {
            if a.status != StatusCode::SERVICE_UNAVAILABLE {
                break;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
            a = api.get(&format!("/v2/{repo}/blobs/{b}")).await;
        }
        if a.status != 200 || format!("sha256:{}", sha256_hex(&a.body)) != *b {
            failed.push(format!("{repo}:{tag} ({digest}): blob {b}: {}", a.status));
        }
    }
    failed
}

/// The issue-11 check: `portcullis gc` runs in a loop (with and without
/// `--delete-untagged`) on the storage two serving instances share, while workers push
/// images that reuse old unreferenced layers (HEAD, mount, upload onto an existing
/// blob), move tags and delete manifests. Afterwards every tag whose last PUT was
/// answered 201 resolves on both instances to that manifest, and every blob it
/// references is served with its digest: no accepted manifest lost a blob.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn gc_in_a_loop_while_two_instances_push_loses_no_accepted_manifest() {
    use futures_util::StreamExt;
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    let shared = tempfile::tempdir().unwrap();
    let opts = shared_storage(shared.path()).gc_grace(Duration::from_secs(1));
    let apis = Arc::new([Api::with(opts.clone()).await, Api::with(opts).await]);
    // Ballast walked after the workers' repositories ("zz" sorts last), so a
    // collection's marking lasts while pushes go on.
    futures_util::stream::iter(0..160)
        .for_each_concurrent(8, |n| {
            let apis = apis.clone();
            async move {
                apis[n % 2].image(&format!("zz/b{n}"), "v1", &format!("ballast {n}")).await;
            }
        })
        .await;
    // The pool: layers pushed once, referenced by no manifest, soon older than grace.
    let pool: Arc<Vec<(String, Vec<u8>)>> = Arc::new(
        futures_util::future::join_all((0..24u8).map(|i| {
            let apis = apis.clone();
            async move {
                let data = vec![i; 3000 + i as usize];
                let d = apis[0].push_blob("gc/pool", &data).await;
                (d, data)
            }
        }))
        .await,
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let stop = Arc::new(AtomicBool::new(false));
    let config = apis[0].p.dir.path().join("proxy.toml");
    // The reports of the collections finished so far, and the first one that failed:
    // the workers watch both (see `raced`).
    let runs: Arc<Mutex<Vec<String>>> = Default::default();
    let gc_failed: Arc<Mutex<Option<String>>> = Default::default();
    let collector = tokio::task::spawn_blocking({
        let (stop, runs, gc_failed) = (stop.clone(), runs.clone(), gc_failed.clone());
        move || {
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) {
                let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"));
                cmd.arg("gc").arg("-c").arg(&config).env("RUST_LOG", "warn");
                if i % 2 == 1 {
                    cmd.arg("--delete-untagged");
                }
                let out = cmd.output().unwrap();
                if !out.status.success() {
                    *gc_failed.lock().unwrap() = Some(String::from_utf8_lossy(&out.stderr).into_owned());
                    return;
                }
                runs.lock().unwrap().push(String::from_utf8(out.stdout).unwrap());
                i += 1;
            }
        }
    });

    let failures: Arc<Mutex<Vec<String>>> = Default::default();
    // (repository, tag) -> the manifest last accepted for it, with its blobs.
    type Tagged = HashMap<(String, String), (String, Vec<String>)>;
    let expected: Arc<Mutex<Tagged>> = Default::default();
    let accepted = Arc::new(AtomicUsize::new(0));
    let refused = Arc::new(AtomicUsize::new(0));
    /// The race was run: two whole collections while pushes went on, one of which
    /// deleted something, and enough pushes accepted (what the test asserts at the end).
    fn raced(runs: &Mutex<Vec<String>>, accepted: &AtomicUsize) -> bool {
        let runs = runs.lock().unwrap();
        runs.len() >= 2 && runs.iter().any(|r| r.contains("deleted blob ")) && accepted.load(Ordering::SeqCst) >= 20
    }
    // Pushes go on for 40 s, and on a slow machine (where one collection, its 12 s wait
    // included, can take most of that) until the race was run, within a bound; or until
    // a collection failed, which fails the test below.
    let at_least = std::time::Instant::now() + Duration::from_secs(40);
    let at_most = at_least + Duration::from_secs(240);
    let workers: Vec<_> = (0..4usize)
        .map(|w| {
            let (apis, pool, expected) = (apis.clone(), pool.clone(), expected.clone());
            let (accepted, refused, failures) = (accepted.clone(), refused.clone(), failures.clone());
            let (runs, gc_failed) = (runs.clone(), gc_failed.clone());
            tokio::spawn(async move {
                let repo = format!("gc/w{w}");
                let mut i = 0usize;
                loop {
                    let now = std::time::Instant::now();
                    let done = raced(&runs, &accepted) || gc_failed.lock().unwrap().is_some();
                    if now >= at_most || (now >= at_least && done) {
                        break;
                    }
                    let api = &apis[i % 2];
                    let tag = format!("t{}", i % 3);
                    // Still tagged, accepted with 201: it must pull whole.
                    let cur = expected.lock().unwrap().get(&(repo.clone(), tag.clone())).cloned();
                    if let Some((d, blobs)) = cur {
                        let failed = pulls(api, &repo, &tag, &d, &blobs).await;
                        failures.lock().unwrap().extend(failed);
                    }
                    let config = format!(r#"{{"worker":{w},"i":{i}}}"#).into_bytes();
                    let cd = api.push_blob(&repo, &config).await;
                    let own = format!("layer {w} {i}").into_bytes();
                    let od = api.push_blob(&repo, &own).await;
                    let mut layers = vec![(od, own.len())];
                    let mut ok = true;
                    for k in 0..3 {
                        let (d, data) = &pool[(w + i + 5 * k) % pool.len()];
                        ok &= ensure_layer(api, &repo, "gc/pool", d, data).await;
                        layers.push((d.clone(), data.len()));
                    }
                    if ok {
                        let m = serde_json::to_vec(&json!({
                            "schemaVersion": 2,
                            "mediaType": OCI_MANIFEST,
                            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": config.len()},
                            "layers": layers.iter().map(|(d, n)| json!({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d, "size": n})).collect::<Vec<_>>(),
                        }))
                        .unwrap();
                        let a = api.put_manifest(&repo, &tag, OCI_MANIFEST, &m).await;
                        if a.status == StatusCode::CREATED {
                            accepted.fetch_add(1, Ordering::SeqCst);
                            let mut blobs = vec![cd];
                            blobs.extend(layers.into_iter().map(|(d, _)| d));
                            let old = expected.lock().unwrap().insert(
                                (repo.clone(), tag.clone()),
                                (format!("sha256:{}", sha256_hex(&m)), blobs),
                            );
                            // The tag moved: its old manifest goes, so the pool's
                            // layers keep becoming garbage. Untagged since the PUT, it
                            // may already be gone: a `--delete-untagged` collection
                            // that marked this repository after the PUT collects it,
                            // rightly, and the DELETE then finds nothing (404).
                            if let Some((d, _)) = old {
                                let a = api
                                    .call("DELETE", &format!("/v2/{repo}/manifests/{d}"), &[], Bytes::new())
                                    .await;
                                assert!(
                                    a.status == StatusCode::ACCEPTED
                                        || (a.status == StatusCode::NOT_FOUND && a.oci_code() == "MANIFEST_UNKNOWN"),
                                    "{} {}",
                                    a.status,
                                    a.text()
                                );
                            }
                        } else {
                            // Refused: a layer a collection deleted first (400, no tag
                            // moved), or a store too slow for the commit's lease (503:
                            // like any timeout, the tag may or may not have moved, so
                            // nothing is expected of it any more).
                            assert!(
                                a.status == StatusCode::BAD_REQUEST || a.status == StatusCode::SERVICE_UNAVAILABLE,
                                "{} {}",
                                a.status,
                                a.text()
                            );
                            if a.status == StatusCode::SERVICE_UNAVAILABLE {
                                expected.lock().unwrap().remove(&(repo.clone(), tag.clone()));
                            }
                            refused.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                    if i % 4 == 3 {
                        // Delete another tag's manifest by digest: its layers become
                        // garbage again (unless another manifest holds them).
                        let other = format!("t{}", (i + 1) % 3);
                        let cur = expected.lock().unwrap().get(&(repo.clone(), other.clone())).cloned();
                        if let Some((d, _)) = cur {
                            let a = api
                                .call("DELETE", &format!("/v2/{repo}/manifests/{d}"), &[], Bytes::new())
                                .await;
                            assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.text());
                            expected.lock().unwrap().remove(&(repo.clone(), other));
                        }
                    }
                    i += 1;
                }
            })
        })
        .collect();
    for w in workers {
        w.await.unwrap();
    }
    stop.store(true, Ordering::SeqCst);
    collector.await.unwrap();
    if let Some(stderr) = gc_failed.lock().unwrap().take() {
        panic!("portcullis gc failed: {stderr}");
    }
    let runs = runs.lock().unwrap().clone();

    let swept: usize = runs.iter().map(|r| r.matches("deleted blob ").count()).sum();
    let expected = expected.lock().unwrap().clone();
    let mut failures = failures.lock().unwrap().clone();
    for ((repo, tag), (digest, blobs)) in &expected {
        for api in apis.iter() {
            failures.extend(pulls(api, repo, tag, digest, blobs).await);
        }
    }
    let accepted = accepted.load(Ordering::SeqCst);
    let refused = refused.load(Ordering::SeqCst);
    eprintln!(
        "{} collections, {swept} blobs deleted; {accepted} manifests accepted, {refused} refused; {} tags checked",
        runs.len(),
        expected.len()
    );
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n"));
    // The race was run: collections deleted garbage while pushes were accepted.
    assert!(runs.len() >= 2, "{runs:?}");
    assert!(swept > 0, "no collection deleted anything: {runs:?}");
    assert!(accepted >= 20, "only {accepted} pushes accepted");
    assert!(!expected.is_empty());
}
