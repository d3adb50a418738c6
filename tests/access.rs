//! Who may do what (`[access]`): a pull-only user, anonymous pulls where a rule allows
//! them (through the token flow docker and skopeo follow), delete rights, mounts,
//! the filtered catalog, SIGHUP, in all-in-one mode and in front of Debian's
//! docker-registry; skopeo as the client, and raw HTTP for the exact answers.

mod support;

use portcullis::body;
use std::path::Path;
use std::process::Command;
use support::oci::*;
use support::*;

const ALICE: (&str, &str) = ("alice", "alice-secret");
const BOB: (&str, &str) = ("bob", "bob-secret");
const CAROL: (&str, &str) = ("carol", "carol-secret");

fn users() -> String {
    [ALICE, BOB, CAROL]
        .iter()
        .map(|(u, p)| {
            let h = portcullis::auth::htpasswd::hash_bcrypt(p, 5).expect("bcrypt");
            format!("{u}:{h}\n")
        })
        .collect()
}

/// alice (in group ci) pushes to team/**, bob only pulls there, carol may do anything
/// anywhere, and everyone — anonymous callers too — may pull public/**.
fn policy(o: Options) -> Options {
    o.htpasswd(users())
        .access_default("none")
        .access_group("ci", &["alice"])
        .access_rule(&["team/**"], &["@ci"], &["push"])
        .access_rule(&["team/**"], &["bob"], &["pull"])
        .access_rule(&["**"], &["carol"], &["push", "delete"])
        .access_rule(&["public/**"], &["anonymous", "*"], &["pull"])
}

/// Run skopeo; its output whether or not it succeeded.
fn skopeo_run(args: &[&str]) -> (bool, String) {
    let out = Command::new(require("skopeo"))
        .arg("--insecure-policy")
        .args(args)
        .output()
        .expect("run skopeo");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn creds((u, p): (&str, &str)) -> String {
    format!("{u}:{p}")
}

fn push_as(server: &Server, who: Option<(&str, &str)>, img: &Image, repo: &str) -> (bool, String) {
    let (trust, dst, src) = (server.trust_dir(), server.reference(repo), img.source());
    let c = who.map(creds);
    let mut args = vec!["copy", "--dest-cert-dir", &trust];
    match &c {
        Some(c) => args.extend(["--dest-creds", c.as_str()]),
        None => args.push("--dest-no-creds"),
    }
    args.extend([src.as_str(), dst.as_str()]);
    skopeo_run(&args)
}

fn pull_as(server: &Server, who: Option<(&str, &str)>, repo: &str, to: &Path) -> (bool, String) {
    let (trust, src) = (server.trust_dir(), server.reference(repo));
    let dst = format!("oci:{}:v1", to.display());
    let c = who.map(creds);
    let mut args = vec!["copy", "--src-cert-dir", &trust];
    match &c {
        Some(c) => args.extend(["--src-creds", c.as_str()]),
        None => args.push("--src-no-creds"),
    }
    args.extend([src.as_str(), dst.as_str()]);
    skopeo_run(&args)
}

/// skopeo words a 403 as "denied" (from the OCI body) or as "403 (Forbidden)" (a HEAD
/// has no body).
fn refused_as_denied(out: &(bool, String)) -> bool {
    !out.0 && (out.1.contains("denied") || out.1.contains("403 (Forbidden)"))
}

fn refused_as_unauthorized(out: &(bool, String)) -> bool {
    let text = out.1.to_lowercase();
    !out.0 && (text.contains("unauthorized") || text.contains("authentication required"))
}

/// What users see with skopeo, in the bundled registry and in front of docker-registry.
fn pull_only_push_and_anonymous_pull_with_skopeo(opts: Options) {
    let work = tempfile::tempdir().unwrap();
    let server = Server::start(&work.path().join("p"), &policy(opts));
    let img = image(&work.path().join("src"), &[4 << 10, 1 << 20]);

    let pushed = push_as(&server, Some(ALICE), &img, "team/app:v1");
    assert!(pushed.0, "alice pushes to team/**: {}", pushed.1);
    let back = work.path().join("bob");
    let pulled = pull_as(&server, Some(BOB), "team/app:v1", &back);
    assert!(pulled.0, "bob pulls from team/**: {}", pulled.1);
    assert_same_image(&back, &img);
    let bob_push = push_as(&server, Some(BOB), &img, "team/app:v2");
    assert!(
        refused_as_denied(&bob_push),
        "bob may only pull: {}",
        bob_push.1
    );
    let alice_elsewhere = push_as(&server, Some(ALICE), &img, "other/app:v1");
    assert!(
        refused_as_denied(&alice_elsewhere),
        "alice has no rule for other/ and the default is none: {}",
        alice_elsewhere.1
    );

    let carol = push_as(&server, Some(CAROL), &img, "public/base:v1");
    assert!(carol.0, "carol pushes anywhere: {}", carol.1);
    let anon = work.path().join("anon");
    let pulled = pull_as(&server, None, "public/base:v1", &anon);
    assert!(pulled.0, "anonymous pull of public/**: {}", pulled.1);
    assert_same_image(&anon, &img);
    let private = pull_as(&server, None, "team/app:v1", &work.path().join("x"));
    assert!(
        refused_as_unauthorized(&private),
        "anonymous pull outside public/** is asked for credentials: {}",
        private.1
    );
    let anon_push = push_as(&server, None, &img, "public/base:v2");
    assert!(
        refused_as_unauthorized(&anon_push),
        "anonymous push is asked for credentials: {}",
        anon_push.1
    );
    // A user's pull of public/** works too (the "*" of the same rule).
    let alice_public = pull_as(
        &server,
        Some(ALICE),
        "public/base:v1",
        &work.path().join("a"),
    );
    assert!(alice_public.0, "{}", alice_public.1);
}

#[test]
fn skopeo_sees_the_policy_of_the_bundled_registry() {
    pull_only_push_and_anonymous_pull_with_skopeo(Options::registry());
}

#[test]
fn skopeo_sees_the_policy_in_front_of_docker_registry() {
    let reg = DockerRegistry::start();
    pull_only_push_and_anonymous_pull_with_skopeo(Options::upstream(reg.url()));
}

// Raw HTTP: the exact answers.

fn json_of(a: &Answer) -> serde_json::Value {
    serde_json::from_slice(&a.body).unwrap_or_else(|e| panic!("{e}: {}", a.text()))
}

async fn send(
    c: &Client,
    method: &str,
    url: &str,
    who: Option<(&str, &str)>,
    content_type: Option<&str>,
    data: Vec<u8>,
) -> Answer {
    let mut b = request(method, url, who);
    if let Some(t) = content_type {
        b = b.header("content-type", t);
    }
    c.send(b.body(body::full(data)).unwrap()).await
}

/// Push a one-layer image to `repo:tag` over HTTP as `who`; the manifest PUT's answer.
async fn push_http(p: &Portcullis, c: &Client, who: (&str, &str), repo: &str, tag: &str) -> Answer {
    let layer = format!("layer of {repo}").into_bytes();
    let config = br#"{"architecture":"amd64","os":"linux"}"#.to_vec();
    for blob in [&layer, &config] {
        // POST then PUT: distribution 2.8 has no monolithic POST.
        let url = p.url(&format!("/v2/{repo}/blobs/uploads/"));
        let a = send(c, "POST", &url, Some(who), None, vec![]).await;
        if a.status != 202 {
            return a;
        }
        let location = a.header("location");
        let location = match location.starts_with('/') {
            true => p.url(location),
            false => location.to_string(),
        };
        let sep = if location.contains('?') { '&' } else { '?' };
        let d = format!("sha256:{}", sha256_hex(blob));
        let url = format!("{location}{sep}digest={d}");
        let a = send(c, "PUT", &url, Some(who), None, blob.clone()).await;
        if a.status != 201 {
            return a;
        }
    }
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": format!("sha256:{}", sha256_hex(&config)), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": format!("sha256:{}", sha256_hex(&layer)), "size": layer.len()}],
    });
    let url = p.url(&format!("/v2/{repo}/manifests/{tag}"));
    send(
        c,
        "PUT",
        &url,
        Some(who),
        Some(OCI_MANIFEST),
        serde_json::to_vec(&manifest).unwrap(),
    )
    .await
}

/// What each caller of `policy` sees in the catalog of private/x, public/base, team/app.
async fn catalogs_follow_the_policy(c: &Client, p: &Portcullis) {
    assert_eq!(
        catalog(c, p, Some(CAROL)).await,
        ["private/x", "public/base", "team/app"]
    );
    assert_eq!(catalog(c, p, Some(BOB)).await, ["public/base", "team/app"]);
    assert_eq!(catalog(c, p, None).await, ["public/base"]);
}

async fn catalog(c: &Client, p: &Portcullis, who: Option<(&str, &str)>) -> Vec<String> {
    let a = c.get(&p.url("/v2/_catalog"), who).await;
    assert_eq!(a.status, 200, "{}", a.text());
    json_of(&a)["repositories"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denials_are_403_for_users_and_challenges_for_anonymous_callers() {
    let p = Portcullis::start(policy(Options::registry())).await;
    let c = Client::h1(&p.ca());
    let denied_before = portcullis::metrics::get().access_denied.get();
    for (who, repo) in [
        (ALICE, "team/app"),
        (CAROL, "private/x"),
        (CAROL, "public/base"),
    ] {
        let a = push_http(&p, &c, who, repo, "v1").await;
        assert_eq!(a.status, 201, "{} pushes {repo}: {}", who.0, a.text());
    }

    // bob: pull yes, push and delete no: 403 DENIED with the OCI body.
    let manifest = c.get(&p.url("/v2/team/app/manifests/v1"), Some(BOB)).await;
    assert_eq!(manifest.status, 200);
    let digest = manifest.header("docker-content-digest").to_string();
    let a = push_http(&p, &c, BOB, "team/app", "v2").await;
    assert_eq!(a.status, 403, "{}", a.text());
    assert_eq!(a.oci_code(), "DENIED");
    let url = p.url(&format!("/v2/team/app/manifests/{digest}"));
    let a = send(&c, "DELETE", &url, Some(BOB), None, vec![]).await;
    assert_eq!((a.status.as_u16(), a.oci_code()), (403, "DENIED".into()));
    // alice may push but not delete; carol may delete.
    let a = send(&c, "DELETE", &url, Some(ALICE), None, vec![]).await;
    assert_eq!(a.status, 403, "{}", a.text());
    let a = send(&c, "DELETE", &url, Some(CAROL), None, vec![]).await;
    assert_eq!(a.status, 202, "{}", a.text());

    // A mount needs pull on its source: alice cannot pull private/x.
    let layer = format!("sha256:{}", sha256_hex(b"layer of private/x"));
    let url = p.url(&format!(
        "/v2/team/app/blobs/uploads/?mount={layer}&from=private/x"
    ));
    let a = send(&c, "POST", &url, Some(ALICE), None, vec![]).await;
    assert_eq!((a.status.as_u16(), a.oci_code()), (403, "DENIED".into()));
    let layer = format!("sha256:{}", sha256_hex(b"layer of public/base"));
    let url = p.url(&format!(
        "/v2/team/app/blobs/uploads/?mount={layer}&from=public/base"
    ));
    let a = send(&c, "POST", &url, Some(ALICE), None, vec![]).await;
    assert_eq!(
        a.status,
        201,
        "mount from a repository alice may pull: {}",
        a.text()
    );

    // Anonymous: /v2/ challenges for a token; public pulls work; the rest is 401.
    let ping = c.get(&p.url("/v2/"), None).await;
    assert_eq!(ping.status, 401);
    let challenge = ping.header("www-authenticate");
    let realm = format!("Bearer realm=\"https://127.0.0.1:{}/token\"", p.addr.port());
    assert!(challenge.starts_with(&realm), "{challenge}");
    let a = c.get(&p.url("/v2/public/base/manifests/v1"), None).await;
    assert_eq!(a.status, 200, "{}", a.text());
    let a = c.get(&p.url("/v2/team/app/tags/list"), None).await;
    assert_eq!(
        (a.status.as_u16(), a.oci_code()),
        (401, "UNAUTHORIZED".into())
    );
    assert!(a.header("www-authenticate").starts_with(&realm));
    let a = push_http(&p, &c, ("", ""), "public/base", "v2").await;
    assert_eq!(a.status, 401, "anonymous push: {}", a.text());

    // Six refusals so far (other tests in this binary may add theirs).
    let denied = portcullis::metrics::get().access_denied.get() - denied_before;
    assert!(denied >= 6, "access_denied counted {denied}");

    // Tokens: anonymous without credentials, a user's with them, none for a wrong password.
    let t = c
        .get(
            &p.url("/token?service=portcullis&scope=repository:team/app:pull"),
            None,
        )
        .await;
    assert_eq!(t.status, 200, "{}", t.text());
    let anon_token = json_of(&t)["token"].as_str().unwrap().to_string();
    let t = c.get(&p.url("/token?service=portcullis"), Some(BOB)).await;
    let bob_token = json_of(&t)["access_token"].as_str().unwrap().to_string();
    let wrong = c.get(&p.url("/token"), Some((BOB.0, "nope"))).await;
    assert_eq!(wrong.status, 401);
    let with = |token: &str, path: &str| {
        request("GET", &p.url(path), None)
            .header("authorization", format!("Bearer {token}"))
            .body(body::empty())
            .unwrap()
    };
    assert_eq!(c.send(with(&anon_token, "/v2/")).await.status, 200);
    assert_eq!(
        c.send(with(&anon_token, "/v2/team/app/tags/list"))
            .await
            .status,
        401
    );
    assert_eq!(
        c.send(with(&bob_token, "/v2/team/app/tags/list"))
            .await
            .status,
        200
    );
    let forged = format!("{bob_token}x");
    assert_eq!(
        c.send(with(&forged, "/v2/team/app/tags/list")).await.status,
        401
    );

    // The catalog lists what each caller may pull.
    catalogs_follow_the_policy(&c, &p).await;
    // Pagination counts visible names only.
    let a = c.get(&p.url("/v2/_catalog?n=1"), Some(BOB)).await;
    assert_eq!(
        json_of(&a)["repositories"],
        serde_json::json!(["public/base"])
    );
    let link = a.header("link").to_string();
    assert!(link.contains("last=public/base"), "{link}");
    let a = c
        .get(&p.url("/v2/_catalog?n=1&last=public/base"), Some(BOB))
        .await;
    assert_eq!(json_of(&a)["repositories"], serde_json::json!(["team/app"]));

    // A new password for bob ends his token (as it ends his cached credentials); the
    // server reads the file again within a second.
    let text = std::fs::read_to_string(p.htpasswd()).unwrap();
    let changed: String = text
        .lines()
        .map(|l| match l.starts_with("bob:") {
            true => format!(
                "bob:{}\n",
                portcullis::auth::htpasswd::hash_bcrypt("new", 5).unwrap()
            ),
            false => format!("{l}\n"),
        })
        .collect();
    std::fs::write(p.htpasswd(), changed).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let status = c
            .send(with(&bob_token, "/v2/team/app/tags/list"))
            .await
            .status;
        if status == 401 {
            break;
        }
        assert_eq!(status, 200);
        assert!(
            std::time::Instant::now() < deadline,
            "bob's token outlived his password"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_anonymous_rules_basic_auth_stays_as_in_the_recipe() {
    let opts = Options::registry()
        .htpasswd(users())
        .access_rule(&["**"], &["*"], &["pull"]);
    let p = Portcullis::start(opts).await;
    let c = Client::h1(&p.ca());
    let ping = c.get(&p.url("/v2/"), None).await;
    assert_eq!(ping.status, 401);
    assert!(ping.header("www-authenticate").starts_with("Basic realm="));
    assert_eq!(c.get(&p.url("/token"), None).await.status, 404);
    // A user who may only pull is refused a push.
    let a = push_http(&p, &c, ALICE, "team/app", "v1").await;
    assert_eq!(a.status, 403, "{}", a.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_upstream_catalog_is_filtered_too() {
    let reg = DockerRegistry::start();
    let p = Portcullis::start(policy(Options::upstream(reg.url()))).await;
    let c = Client::h1(&p.ca());
    for repo in ["private/x", "public/base", "team/app"] {
        let a = push_http(&p, &c, CAROL, repo, "v1").await;
        assert_eq!(a.status, 201, "{}", a.text());
    }
    catalogs_follow_the_policy(&c, &p).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rule_change_takes_effect_on_reload() {
    let p = Portcullis::start(policy(Options::registry())).await;
    let c = Client::h1(&p.ca());
    assert_eq!(push_http(&p, &c, BOB, "team/app", "v1").await.status, 403);
    // bob joins ci: the same file with one more member, reloaded as SIGHUP does.
    let config = p.dir.path().join("proxy.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    let changed = text.replace(r#"ci = ["alice"]"#, r#"ci = ["alice", "bob"]"#);
    assert_ne!(text, changed, "the group is in the file as written");
    std::fs::write(&config, changed).unwrap();
    portcullis::app::reload(&config, &p.state)
        .await
        .expect("reload");
    let a = push_http(&p, &c, BOB, "team/app", "v1").await;
    assert_eq!(a.status, 201, "{}", a.text());
}

#[test]
fn check_reports_unknown_groups_malformed_globs_and_shadowed_rules() {
    let dir = tempfile::tempdir().unwrap();
    let write =
        |name: &str, opts: &Options| write_config(&dir.path().join(name), opts, "127.0.0.1:5443");
    let check = |path: &Path| {
        let out = Command::new(env!("CARGO_BIN_EXE_portcullis"))
            .args(["check", "-c"])
            .arg(path)
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.code(), text)
    };
    let bad =
        Options::registry()
            .htpasswd(users())
            .access_rule(&["Team/**"], &["@nobody"], &["pull"]);
    let (code, text) = check(&write("bad", &bad));
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("access.rule[1].repositories") && text.contains("lower case"),
        "{text}"
    );
    assert!(
        text.contains("access.rule[1].who") && text.contains("@nobody"),
        "{text}"
    );

    let shadowed = Options::registry()
        .htpasswd(users())
        .access_rule(&["team/**"], &["*"], &["pull"])
        .access_rule(&["team/app"], &["alice"], &["push"])
        .access_rule(&["x/*"], &["mallory"], &["pull"]);
    let (code, text) = check(&write("shadowed", &shadowed));
    assert_eq!(code, Some(0), "warnings do not fail check: {text}");
    assert!(text.contains("access.rule[2] is never used"), "{text}");
    assert!(text.contains("\"mallory\", who is not in"), "{text}");
}
