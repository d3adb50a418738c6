//! The Docker engine, the users' client: `docker login`, `push`, `rmi` and `pull`
//! through Portcullis with its CA trusted through /etc/docker/certs.d, in both modes:
//! the bundled registry (all-in-one) and in front of Debian's docker-registry.

mod support;

use http_body_util::BodyExt;
use std::path::Path;
use support::docker::*;
use support::*;

const SCHEMA2: &str = "application/vnd.docker.distribution.manifest.v2+json";
const OCI: &str = "application/vnd.oci.image.manifest.v1+json";

/// One layer of several MiB and a small one.
const LAYERS: [usize; 2] = [8 << 20, 64 << 10];

/// What a push left in the registry, as Portcullis' API reports it.
struct Pushed {
    /// `Docker-Content-Digest` of the tag.
    digest: String,
    manifest: serde_json::Value,
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn digest_of(data: &[u8]) -> String {
    format!("sha256:{}", sha256_hex(data))
}

/// HEAD and GET of `repo:v1` through Portcullis' API (127.0.0.1, the run's CA).
fn manifest_via_portcullis(server: &oci::Server, repo: &str) -> Pushed {
    let client = Client::h1(&server.dir.join("certs/ca.crt"));
    let url = format!("https://127.0.0.1:{}/v2/{repo}/manifests/v1", server.port);
    let accept = format!("{SCHEMA2}, {OCI}");
    let (head, get) = runtime().block_on(async {
        let send = |method: &str| {
            request(method, &url, Some(BCRYPT_USER))
                .header("accept", &accept)
                .body(portcullis::body::empty())
                .expect("request")
        };
        (
            client.send(send("HEAD")).await,
            client.send(send("GET")).await,
        )
    });
    assert_eq!(head.status, 200, "HEAD {url}: {}", head.text());
    assert_eq!(get.status, 200, "GET {url}: {}", get.text());
    let digest = head.header("docker-content-digest").to_string();
    assert_eq!(
        digest_of(&get.body),
        digest,
        "the manifest Portcullis serves hashes to the digest it reports"
    );
    let manifest = serde_json::from_slice(&get.body).expect("manifest JSON");
    Pushed { digest, manifest }
}

/// GET `repo:v1` straight from a plain-HTTP docker-registry: digest header and body.
fn manifest_from_registry(reg: &DockerRegistry, repo: &str) -> (String, bytes::Bytes) {
    let url = format!("{}/v2/{repo}/manifests/v1", reg.url());
    runtime().block_on(async {
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http::<http_body_util::Empty<bytes::Bytes>>();
        let req = http::Request::get(&url)
            .header("accept", format!("{SCHEMA2}, {OCI}"))
            .body(http_body_util::Empty::new())
            .expect("request");
        let resp = client.request(req).await.expect("GET from docker-registry");
        assert_eq!(resp.status(), 200, "GET {url}");
        let digest = resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .expect("docker-registry answers with Docker-Content-Digest")
            .to_string();
        let body = resp.into_body().collect().await.expect("body").to_bytes();
        (digest, body)
    })
}

/// Every blob the manifest names is stored, intact, under distribution's layout at `root`.
fn assert_blobs_stored(root: &Path, manifest: &serde_json::Value) {
    let layers = manifest["layers"].as_array().expect("layers");
    let blobs = layers.iter().chain([&manifest["config"]]);
    for b in blobs {
        let digest = b["digest"].as_str().expect("digest");
        let hex = digest.strip_prefix("sha256:").expect("sha256 digest");
        let path = root.join(format!(
            "docker/registry/v2/blobs/sha256/{}/{hex}/data",
            &hex[..2]
        ));
        assert!(path.is_file(), "{digest} not stored at {}", path.display());
        assert_eq!(oci::sha256_file(&path), hex, "{digest} stored intact");
    }
}

/// What a user does, and sees, with docker against `server`: the certificate refused
/// until the CA is in certs.d, push refused before login, a wrong password refused, then
/// login, push, remove the image locally, pull it back and get the same image.
fn docker_round_trip(docker: &Docker, server: &oci::Server, work: &Path, repo: &str) -> Pushed {
    let host = format!("{DOCKER_HOST_IP}:{}", server.port);
    let reference = format!("{host}/{repo}:v1");
    let (user, password) = BCRYPT_USER;

    // Without the CA docker must refuse the certificate: this is what shows that the
    // certs.d file below is what makes the rest work (TLS is really verified).
    let untrusted = docker.login(&host, user, password);
    assert!(
        !untrusted.success()
            && untrusted
                .stderr
                .contains("certificate signed by unknown authority"),
        "docker must not trust Portcullis before its CA is in certs.d: {untrusted:?}"
    );
    let _ca = TrustedCa::install(&host, &server.dir.join("certs/ca.crt"));

    let img = image_archive(work, &reference, &LAYERS);
    docker.ok(&["load", "-i", &img.path.display().to_string()]);
    let loaded = docker.inspect(&reference).expect("loaded image");
    assert_eq!(loaded["Id"], img.config_digest.as_str());

    let anonymous = docker.run(&["push", &reference], None);
    assert!(
        !anonymous.success() && anonymous.stderr.contains("no basic auth credentials"),
        "push before login must be refused: {anonymous:?}"
    );

    let wrong = docker.login(&host, user, "not-the-password");
    assert!(!wrong.success(), "login with a wrong password: {wrong:?}");
    assert!(
        wrong.stderr.to_lowercase().contains("unauthorized"),
        "wrong password refused as unauthorized: {wrong:?}"
    );

    let login = docker.login(&host, user, password);
    assert!(login.success(), "docker login as {user}: {login:?}");
    assert!(login.stdout.contains("Login Succeeded"), "{login:?}");

    let push = docker.ok(&["push", &reference]);
    let pushed = manifest_via_portcullis(server, repo);
    assert!(
        push.contains(&format!("v1: digest: {} ", pushed.digest)),
        "docker push reports the digest Portcullis serves ({}):\n{push}",
        pushed.digest
    );
    assert_eq!(
        pushed.manifest["config"]["digest"],
        img.config_digest.as_str(),
        "the pushed manifest's config is the image we loaded"
    );
    assert_eq!(
        pushed.manifest["layers"].as_array().map(Vec::len),
        Some(LAYERS.len())
    );

    // Gone locally, so the pull below has to fetch everything.
    docker.ok(&["rmi", &reference]);
    assert!(docker.inspect(&reference).is_none(), "{reference} removed");
    assert!(
        docker.inspect(&img.config_digest).is_none(),
        "image {} removed with its last tag",
        img.config_digest
    );

    let pull = docker.ok(&["pull", &reference]);
    assert!(
        pull.contains(&format!("Digest: {}", pushed.digest)),
        "docker pull reports the digest Portcullis serves ({}):\n{pull}",
        pushed.digest
    );
    let pulled = docker.inspect(&reference).expect("pulled image");
    assert_eq!(pulled["Id"], img.config_digest.as_str(), "same image ID");
    let repo_digests: Vec<&str> = pulled["RepoDigests"]
        .as_array()
        .expect("RepoDigests")
        .iter()
        .filter_map(|d| d.as_str())
        .collect();
    assert!(
        repo_digests.contains(&format!("{host}/{repo}@{}", pushed.digest).as_str()),
        "RepoDigests {repo_digests:?} name the manifest digest {}",
        pushed.digest
    );
    let layers: Vec<&str> = pulled["RootFS"]["Layers"]
        .as_array()
        .expect("RootFS.Layers")
        .iter()
        .filter_map(|d| d.as_str())
        .collect();
    assert_eq!(layers, img.diff_ids, "the same layers, byte for byte");
    docker.ok(&["rmi", &reference]);
    pushed
}

#[test]
fn docker_login_push_and_pull_with_the_bundled_registry() {
    let docker = Docker::new();
    let work = tempfile::tempdir().expect("tempdir");
    let server = portcullis_for_docker(&work.path().join("p"), &Options::registry());
    let pushed = docker_round_trip(&docker, &server, work.path(), "team/app");
    assert_blobs_stored(&server.dir.join("data"), &pushed.manifest);
}

/// The same with the registry on S3 (s3s-fs): the blobs land in the bucket under
/// distribution's keys (s3s-fs keeps object `k` as the file `<bucket>/k`).
#[test]
fn docker_login_push_and_pull_with_the_bundled_registry_on_s3() {
    let docker = Docker::new();
    let work = tempfile::tempdir().expect("tempdir");
    let s3 = support::s3::S3Server::start();
    let server = portcullis_for_docker(&work.path().join("p"), &Options::registry().s3(&s3, "d"));
    let pushed = docker_round_trip(&docker, &server, work.path(), "team/app");
    assert_blobs_stored(&s3.bucket_dir().join("d"), &pushed.manifest);
}

#[test]
fn docker_login_push_and_pull_through_portcullis_in_front_of_docker_registry() {
    let docker = Docker::new();
    let work = tempfile::tempdir().expect("tempdir");
    let reg = DockerRegistry::start();
    let server = portcullis_for_docker(&work.path().join("p"), &Options::upstream(reg.url()));
    let pushed = docker_round_trip(&docker, &server, work.path(), "team/app");

    // The data landed in docker-registry: it serves the same manifest for the tag
    // itself, and holds every blob.
    let (digest, body) = manifest_from_registry(&reg, "team/app");
    assert_eq!(
        digest, pushed.digest,
        "docker-registry's digest for the tag"
    );
    assert_eq!(digest_of(&body), pushed.digest);
    assert_blobs_stored(&reg.dir.path().join("data"), &pushed.manifest);
}

/// Per-repository rights with docker, through the token flow docker needs for
/// anonymous pulls: carol pushes anywhere, bob only pulls team/**, and callers without
/// a login pull public/** and are asked to log in for everything else.
#[test]
fn docker_follows_the_access_policy_for_pull_only_users_and_anonymous_pulls() {
    let docker = Docker::new();
    let work = tempfile::tempdir().expect("tempdir");
    let (bob, carol) = (("bob", "bob-secret"), ("carol", "carol-secret"));
    let users: String = [bob, carol]
        .iter()
        .map(|(u, p)| {
            format!(
                "{u}:{}\n",
                portcullis::auth::htpasswd::hash_bcrypt(p, 5).unwrap()
            )
        })
        .collect();
    let opts = Options::registry()
        .htpasswd(users)
        .access_default("none")
        .access_rule(&["team/**"], &["bob"], &["pull"])
        .access_rule(&["**"], &["carol"], &["push"])
        .access_rule(&["public/**"], &["anonymous", "*"], &["pull"]);
    let server = portcullis_for_docker(&work.path().join("p"), &opts);
    let host = format!("{DOCKER_HOST_IP}:{}", server.port);
    let _ca = TrustedCa::install(&host, &server.dir.join("certs/ca.crt"));
    let public = format!("{host}/public/base:v1");
    let team = format!("{host}/team/app:v1");
    let img = image_archive(work.path(), &public, &[1 << 20]);
    docker.ok(&["load", "-i", &img.path.display().to_string()]);
    docker.ok(&["tag", &public, &team]);
    let asked_to_log_in = |o: &Outcome| {
        let e = o.stderr.to_lowercase();
        !o.success()
            && (e.contains("unauthorized")
                || e.contains("authentication required")
                || e.contains("may require 'docker login'"))
    };

    let anonymous_push = docker.run(&["push", &public], None);
    assert!(asked_to_log_in(&anonymous_push), "{anonymous_push:?}");

    assert!(docker.login(&host, carol.0, carol.1).success());
    docker.ok(&["push", &public]);
    docker.ok(&["push", &team]);
    docker.ok(&["logout", &host]);
    docker.ok(&["rmi", &public, &team]);

    // No login: public/** pulls, team/** does not.
    docker.ok(&["pull", &public]);
    let pulled = docker.inspect(&public).expect("pulled image");
    assert_eq!(pulled["Id"], img.config_digest.as_str(), "the same image");
    let private = docker.run(&["pull", &team], None);
    assert!(asked_to_log_in(&private), "{private:?}");

    // bob pulls team/** and may not push there.
    assert!(docker.login(&host, bob.0, bob.1).success());
    docker.ok(&["pull", &team]);
    let v2 = format!("{host}/team/app:v2");
    docker.ok(&["tag", &team, &v2]);
    let denied = docker.run(&["push", &v2], None);
    assert!(
        !denied.success() && denied.stderr.contains("denied"),
        "bob's push is denied: {denied:?}"
    );
    docker.ok(&["rmi", &public, &team, &v2]);
}
