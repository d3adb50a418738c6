//! The binary as a user runs it: `check`, `passwd`, `certs`, and `serve`'s start-up
//! errors and first start. Every failure is one line naming the file, exit 1, no panic.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use support::*;

fn portcullis() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_portcullis"));
    c.env_remove("PORTCULLIS_CONFIG").env("RUST_LOG", "warn");
    c
}

fn run(args: &[&str], dir: &Path) -> Output {
    portcullis()
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run portcullis")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn assert_clean_failure(o: &Output) -> Vec<String> {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(1), "exit 1 expected: {err}");
    assert!(
        !err.contains("panicked") && !err.contains("RUST_BACKTRACE"),
        "{err}"
    );
    err.lines().map(str::to_string).collect()
}

/// A configuration `check` accepts (nothing needs to listen on the upstream).
fn good_options() -> Options {
    Options::upstream("http://127.0.0.1:5000")
}

fn good_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), &good_options(), "127.0.0.1:0");
    dir
}

#[test]
fn check_accepts_a_good_configuration() {
    let dir = good_dir();
    // bcrypt only: apr1 and {SHA} entries draw advice (see check_names_weak_entries).
    let bcrypt = portcullis::auth::htpasswd::hash_bcrypt(BCRYPT_USER.1, 5).unwrap();
    std::fs::write(
        dir.path().join("auth/htpasswd"),
        format!("{}:{bcrypt}\n", BCRYPT_USER.0),
    )
    .unwrap();
    let o = run(&["check", "-c", "proxy.toml"], dir.path());
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "proxy.toml: configuration OK\n"
    );
}

#[test]
fn check_names_weak_entries_and_still_succeeds() {
    // default_htpasswd: line 1 bcrypt, line 2 apr1 (htpasswd -m), line 3 {SHA} (-s).
    let dir = good_dir();
    let o = run(&["check", "-c", "proxy.toml"], dir.path());
    assert!(
        o.status.success(),
        "weak hashes are advice, not failures: {}",
        stderr(&o)
    );
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    for (line, (user, _), scheme) in [(0, APR1_USER, "apr1"), (1, SHA_USER, "{SHA}")] {
        let l = lines[line];
        assert!(
            l.starts_with(&format!(
                "auth/htpasswd: line {}: user \"{user}\"",
                line + 2
            )),
            "{l}"
        );
        assert!(l.contains(scheme) && l.contains("weak"), "{l}");
        assert!(
            l.ends_with(&format!("rehash with: portcullis passwd add {user}")),
            "{l}"
        );
    }
    assert!(!lines.iter().any(|l| l.contains(BCRYPT_USER.0)), "{out}");
    assert_eq!(lines[2], "proxy.toml: configuration OK");
}

#[test]
fn check_reports_every_problem_one_line_each() {
    let dir = good_dir();
    let toml = std::fs::read_to_string(dir.path().join("proxy.toml")).unwrap();
    let bad = toml
        .replace("read_timeout = \"900s\"", "read_timeout = \"900\"")
        .replace("listen = \"127.0.0.1:0\"", "listen = \"localhost\"")
        .replace("balance = \"round_robin\"", "balance = \"random\"");
    std::fs::write(dir.path().join("proxy.toml"), bad).unwrap();
    let lines = assert_clean_failure(&run(&["check", "-c", "proxy.toml"], dir.path()));
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("proxy.toml: server.read_timeout: \"900\" has no unit")),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("proxy.toml: server.listen: \"localhost\" is not an address:port")),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("proxy.toml: upstream.balance: \"random\"")),
        "{lines:?}"
    );

    std::fs::write(
        dir.path().join("proxy.toml"),
        toml.replace("[auth]", "[auth]\npasswd = \"x\""),
    )
    .unwrap();
    let lines = assert_clean_failure(&run(&["check", "-c", "proxy.toml"], dir.path()));
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].contains("proxy.toml: auth.passwd: line ")
            && lines[0].contains("unknown field `passwd`"),
        "{lines:?}"
    );
}

#[test]
fn check_words_login_throttle_problems_one_line_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let opts = good_options().throttle(10, std::time::Duration::from_secs(6));
    write_config(dir.path(), &opts, "127.0.0.1:0");
    let toml = std::fs::read_to_string(dir.path().join("proxy.toml")).unwrap();
    assert!(toml.contains("refill = \"6s\""), "{toml}");
    let check = |text: String| {
        std::fs::write(dir.path().join("proxy.toml"), text).unwrap();
        run(&["check", "-c", "proxy.toml"], dir.path())
    };
    for (bad, want) in [
        (
            toml.replace("refill = \"6s\"", "refill = \"6\""),
            "proxy.toml: auth.throttle.refill: \"6\" has no unit",
        ),
        (
            toml.replace("refill = \"6s\"", "refil = \"6s\""),
            "proxy.toml: auth.throttle.refil: line ",
        ),
        (
            toml.replace("burst = 10", "burst = 0"),
            "proxy.toml: auth.throttle.burst: 0 is out of range",
        ),
    ] {
        let lines = assert_clean_failure(&check(bad));
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(lines[0].contains(want), "{want}: {lines:?}");
    }
    // Switched off with `enabled = false`.
    let o = check(toml.replace("burst = 10", "enabled = false"));
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn check_names_a_malformed_limit_in_one_line_and_accepts_units() {
    let dir = good_dir();
    let toml = std::fs::read_to_string(dir.path().join("proxy.toml")).unwrap();
    let with = |keys: &str| toml.replace("[server]\n", &format!("[server]\n{keys}\n"));
    std::fs::write(
        dir.path().join("proxy.toml"),
        with("max_header_size = \"12 parsecs\"\nmax_connections_per_address = 0\nhttp2_max_streams = -2"),
    )
    .unwrap();
    let lines = assert_clean_failure(&run(&["check", "-c", "proxy.toml"], dir.path()));
    assert_eq!(lines.len(), 3, "{lines:?}");
    for want in [
        "proxy.toml: server.max_header_size: \"12 parsecs\": unknown unit",
        "proxy.toml: server.max_connections_per_address: 0: must be at least 1",
        "proxy.toml: server.http2_max_streams: -2: must be at least 1",
    ] {
        assert!(lines.iter().any(|l| l.contains(want)), "{want}: {lines:?}");
    }
    std::fs::write(
        dir.path().join("proxy.toml"),
        with("max_header_size = \"64KiB\"\nmax_connections_per_address = 32\nhttp2_max_streams = 100"),
    )
    .unwrap();
    let o = run(&["check", "-c", "proxy.toml"], dir.path());
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn check_reports_bad_htpasswd_lines_and_missing_files() {
    let dir = good_dir();
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(dir.path().join("auth/htpasswd"))
        .unwrap();
    writeln!(f, "plain:secret\ndes:rl0uE3dU6ebwc").unwrap();
    let lines = assert_clean_failure(&run(&["check", "-c", "proxy.toml"], dir.path()));
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(
        lines[0].contains("auth/htpasswd: line 4:") && lines[0].contains("plain"),
        "{lines:?}"
    );
    assert!(
        lines[1].contains("auth/htpasswd: line 5:") && lines[1].contains("des"),
        "{lines:?}"
    );
    assert!(
        !lines
            .iter()
            .any(|l| l.contains("secret") || l.contains("rl0uE3dU6ebwc")),
        "no hashes or passwords in messages"
    );

    std::fs::remove_file(dir.path().join("certs/server.key")).unwrap();
    let lines = assert_clean_failure(&run(&["check", "-c", "proxy.toml"], dir.path()));
    assert!(
        lines
            .iter()
            .any(|l| l.contains("certs/server.key: cannot read: no such file or directory")),
        "{lines:?}"
    );

    let lines = assert_clean_failure(&run(&["check", "-c", "nope.toml"], dir.path()));
    assert_eq!(
        lines,
        vec!["portcullis: nope.toml: cannot read: no such file or directory"]
    );
}

#[test]
fn serve_refuses_a_key_that_does_not_match_the_certificate() {
    let dir = good_dir();
    let other = tempfile::tempdir().unwrap();
    portcullis::certs::generate(
        &portcullis::certs::Layout::in_dir(other.path()),
        &["localhost".into()],
        false,
    )
    .unwrap();
    std::fs::copy(
        other.path().join("server.key"),
        dir.path().join("certs/server.key"),
    )
    .unwrap();
    let lines = assert_clean_failure(&run(&["serve", "-c", "proxy.toml"], dir.path()));
    let last = lines.last().unwrap();
    assert!(
        last.contains("certs/server.key: private key does not match the certificate in")
            && last.contains("certs/server.crt"),
        "{lines:?}"
    );
}

#[test]
fn serve_refuses_an_expired_certificate() {
    let dir = good_dir();
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(2021, 1, 1);
    let cert = params.self_signed(&key).unwrap();
    std::fs::write(dir.path().join("certs/server.crt"), cert.pem()).unwrap();
    std::fs::write(dir.path().join("certs/server.key"), key.serialize_pem()).unwrap();
    let lines = assert_clean_failure(&run(&["serve", "-c", "proxy.toml"], dir.path()));
    assert!(
        lines
            .last()
            .unwrap()
            .contains("certs/server.crt: certificate expired on"),
        "{lines:?}"
    );
}

#[test]
fn serve_names_a_busy_listen_address() {
    let dir = good_dir();
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap().to_string();
    std::fs::write(dir.path().join("proxy.toml"), good_options().render(&addr)).unwrap();
    let lines = assert_clean_failure(&run(&["serve", "-c", "proxy.toml"], dir.path()));
    assert!(
        lines.last().unwrap().contains(&format!(
            "server.listen: cannot listen on {addr}: address already in use"
        )),
        "{lines:?}"
    );
}

fn passwd(dir: &Path, args: &[&str], stdin: &str) -> Output {
    let mut child = portcullis()
        .arg("passwd")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let written = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    // A command that refuses its arguments exits before reading standard input; on a
    // busy machine it is gone before we write.
    if let Err(e) = written {
        assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "{e}");
    }
    child.wait_with_output().unwrap()
}

#[test]
fn passwd_add_list_verify_remove() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let f = ["--file", "users"];
    let o = passwd(
        d,
        &["add", "bob", f[0], f[1], "--password-stdin", "--cost", "5"],
        "b0b pass\n",
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        std::fs::metadata(d.join("users"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    let o = passwd(
        d,
        &[
            "add",
            "carol",
            f[0],
            f[1],
            "--password-stdin",
            "--cost",
            "5",
        ],
        "c4rol\n",
    );
    assert!(o.status.success());
    let o = passwd(d, &["list", f[0], f[1]], "");
    assert_eq!(String::from_utf8_lossy(&o.stdout), "bob\ncarol\n");
    assert!(passwd(
        d,
        &["verify", "bob", f[0], f[1], "--password-stdin"],
        "b0b pass\n"
    )
    .status
    .success());
    assert_clean_failure(&passwd(
        d,
        &["verify", "bob", f[0], f[1], "--password-stdin"],
        "nope\n",
    ));

    // Apache's own tool accepts what we wrote.
    let ok = Command::new(require("htpasswd"))
        .args(["-vb", "users", "bob", "b0b pass"])
        .current_dir(d)
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "htpasswd -v: {}",
        String::from_utf8_lossy(&ok.stderr)
    );

    let o = passwd(d, &["remove", "bob", f[0], f[1]], "");
    assert!(o.status.success());
    assert_eq!(
        String::from_utf8_lossy(&passwd(d, &["list", f[0], f[1]], "").stdout),
        "carol\n"
    );
    let lines = assert_clean_failure(&passwd(d, &["remove", "bob", f[0], f[1]], ""));
    assert_eq!(lines, vec!["portcullis: users: no user \"bob\""]);
    let lines = assert_clean_failure(&passwd(
        d,
        &["add", "bad:name", f[0], f[1], "--password-stdin"],
        "x\n",
    ));
    assert!(lines[0].contains("bad:name"), "{lines:?}");
}

#[test]
fn certs_creates_a_ca_and_a_server_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let o = run(
        &[
            "certs",
            "--out",
            "c",
            "--host",
            "registry.example",
            "--host",
            "10.1.2.3",
        ],
        d,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    for (name, mode) in [
        ("ca.crt", 0o644),
        ("ca.key", 0o600),
        ("server.crt", 0o644),
        ("server.key", 0o600),
    ] {
        let m = std::fs::metadata(d.join("c").join(name))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(m, mode, "{name}");
    }
    // openssl agrees the chain verifies for the names asked for.
    let verify = Command::new(require("openssl"))
        .args([
            "verify",
            "-CAfile",
            "c/ca.crt",
            "-verify_hostname",
            "registry.example",
            "c/server.crt",
        ])
        .current_dir(d)
        .output()
        .expect("run openssl verify");
    assert!(
        verify.status.success(),
        "openssl verify: {}{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );
    let lines = assert_clean_failure(&run(&["certs", "--out", "c"], d));
    assert!(
        lines[0].contains("c/server.crt: already exists"),
        "{lines:?}"
    );
    let ca_before = std::fs::read(d.join("c/ca.crt")).unwrap();
    let o = run(&["certs", "--out", "c", "--force"], d);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("reused existing CA"));
    assert_eq!(
        std::fs::read(d.join("c/ca.crt")).unwrap(),
        ca_before,
        "clients keep trusting the CA"
    );
}

/// The shipped proxy.toml, untouched but for the port: first start creates
/// certificates, the admin user (password printed once) and the bundled registry's
/// storage, and it answers as a registry.
#[tokio::test]
async fn first_start_with_the_shipped_config() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let shipped =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/proxy.toml")).unwrap();
    assert!(shipped.contains("listen = \"127.0.0.1:5443\""));
    let toml = shipped.replace("127.0.0.1:5443", &format!("127.0.0.1:{port}"));
    std::fs::write(dir.path().join("proxy.toml"), toml).unwrap();
    let mut child = portcullis()
        .arg("serve")
        .current_dir(dir.path())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let password = loop {
        let line = lines.next().expect("password line").unwrap();
        if let Some(i) = line.find("and password: ") {
            break line[i + 14..].trim().to_string();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    wait_for_port(port, "portcullis");
    assert!(dir.path().join("certs/ca.crt").exists());
    let c = Client::h1(&dir.path().join("certs/ca.crt"));
    let url = format!("https://localhost:{port}/v2/");
    assert_eq!(c.get(&url, None).await.status, 401);
    let ok = c.get(&url, Some(("admin", &password))).await;
    assert_eq!(ok.status, 200);
    assert_eq!(ok.text(), "{}");
    let catalog = c
        .get(
            &format!("https://localhost:{port}/v2/_catalog"),
            Some(("admin", &password)),
        )
        .await;
    assert_eq!(catalog.text(), r#"{"repositories":[]}"#);
    assert!(dir.path().join("data/portcullis.secret").exists());
    let htpasswd = std::fs::read_to_string(dir.path().join("auth/htpasswd")).unwrap();
    assert!(htpasswd.starts_with("admin:$2y$10$") && !htpasswd.contains(&password));
    let _ = child.kill();
    let _ = child.wait();
}

/// Keys in every PEM form people have: PKCS#8 (rcgen), SEC1 (`openssl ec`), PKCS#1
/// (`openssl genrsa -traditional`). All load, and `check` accepts the RSA pair.
#[tokio::test]
async fn pkcs8_sec1_and_pkcs1_keys_load() {
    let dir = good_dir();
    let d = dir.path();
    let openssl = require("openssl");
    let run_openssl = |args: &[&str]| {
        let o = Command::new(&openssl)
            .args(args)
            .current_dir(d)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    };
    // SEC1 form of the generated EC key.
    run_openssl(&["ec", "-in", "certs/server.key", "-out", "certs/sec1.key"]);
    assert!(std::fs::read_to_string(d.join("certs/sec1.key"))
        .unwrap()
        .contains("BEGIN EC PRIVATE KEY"));
    portcullis::tls::load_server_config(&d.join("certs/server.crt"), &d.join("certs/sec1.key"))
        .expect("SEC1 key");
    portcullis::tls::load_server_config(&d.join("certs/server.crt"), &d.join("certs/server.key"))
        .expect("PKCS#8 key");
    // A self-signed RSA certificate with a PKCS#1 key, served for real.
    run_openssl(&["genrsa", "-traditional", "-out", "certs/rsa.key", "2048"]);
    assert!(std::fs::read_to_string(d.join("certs/rsa.key"))
        .unwrap()
        .contains("BEGIN RSA PRIVATE KEY"));
    run_openssl(&[
        "req",
        "-x509",
        "-new",
        "-key",
        "certs/rsa.key",
        "-out",
        "certs/rsa.crt",
        "-days",
        "2",
        "-subj",
        "/CN=localhost",
        "-addext",
        "subjectAltName=DNS:localhost,IP:127.0.0.1",
    ]);
    std::fs::write(
        d.join("proxy.toml"),
        good_options()
            .certificate("certs/rsa.crt")
            .key("certs/rsa.key")
            .render("127.0.0.1:0"),
    )
    .unwrap();
    let lines = run(&["check", "-c", "proxy.toml"], d);
    assert!(lines.status.success(), "{}", stderr(&lines));
}

/// `check` on a bucket: the probe writes and removes a key, and says how the store
/// makes writes create-only; no credential in anything it prints.
#[test]
fn check_probes_an_s3_bucket_and_names_what_fails() {
    let s3 = support::s3::S3Server::start();
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), &Options::registry().s3(&s3, "c"), "127.0.0.1:0");
    let o = run(&["check", "-c", "proxy.toml"], dir.path());
    let (out, err) = (String::from_utf8_lossy(&o.stdout).into_owned(), stderr(&o));
    assert!(o.status.success(), "{err}");
    assert!(
        out.contains(&format!(
            "s3 bucket \"registry\" at {}, prefix \"c\": reachable and writable; create-only writes: conditional PUT",
            s3.endpoint
        )),
        "{out}"
    );
    assert!(out.ends_with("proxy.toml: configuration OK\n"), "{out}");
    assert!(!out.contains(&s3.secret_key) && !out.contains(&s3.access_key));
    assert!(
        !s3.bucket_dir().join("c").exists() || files(&s3.bucket_dir().join("c")).is_empty(),
        "the probe leaves nothing: {:?}",
        files(&s3.bucket_dir())
    );

    // A wrong secret: one line naming the file, the key, the bucket and the operation.
    let text = std::fs::read_to_string(dir.path().join("proxy.toml")).unwrap();
    std::fs::write(
        dir.path().join("proxy.toml"),
        text.replace(&s3.secret_key, "not-the-secret-0123"),
    )
    .unwrap();
    let lines = assert_clean_failure(&run(&["check", "-c", "proxy.toml"], dir.path()));
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].contains(&format!(
            "proxy.toml: registry.bucket: s3 bucket \"registry\" at {}, prefix \"c\": probe portcullis.probe-",
            s3.endpoint
        )),
        "{lines:?}"
    );
    assert!(!lines[0].contains("not-the-secret-0123") && !lines[0].contains(&s3.access_key));
    assert!(
        lines[0].contains("SignatureDoesNotMatch"),
        "the store's answer: {lines:?}"
    );

    // serve refuses to start on it, in the same words.
    let lines = assert_clean_failure(&run(&["serve", "-c", "proxy.toml"], dir.path()));
    let last = lines.last().unwrap();
    assert!(
        last.contains("registry.bucket: s3 bucket \"registry\""),
        "{lines:?}"
    );
    assert!(!last.contains("not-the-secret-0123"), "{last}");
}

fn files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_type().unwrap().is_dir() {
                out.extend(files(&e.path()));
            } else {
                out.push(e.path());
            }
        }
    }
    out
}

/// Aliyun OSS natively: `check` takes a complete configuration (keys from the
/// environment, as the Aliyun tools name them) and goes as far as the network; a
/// missing key is named. No OSS server runs here: the request to the local S3
/// server is refused, in one line without a credential.
#[test]
fn check_takes_an_oss_configuration_and_names_a_missing_key() {
    let s3 = support::s3::S3Server::start();
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), &Options::registry(), "127.0.0.1:0");
    let text = std::fs::read_to_string(dir.path().join("proxy.toml")).unwrap();
    let base = text.split("[registry]").next().unwrap().to_string();
    let oss = format!(
        "{base}[registry]\nstorage = \"oss\"\nbucket = \"registry\"\nendpoint = \"{}\"\nroot = \"o\"\n",
        s3.endpoint
    );
    std::fs::write(dir.path().join("proxy.toml"), &oss).unwrap();
    let o = portcullis()
        .args(["check", "-c", "proxy.toml"])
        .current_dir(dir.path())
        .env("ALIBABA_CLOUD_ACCESS_KEY_ID", "LTAIoss-id-1234")
        .env("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "oss-secret-5678")
        .output()
        .unwrap();
    let lines = assert_clean_failure(&o);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].contains(&format!(
            "proxy.toml: registry.bucket: oss bucket \"registry\" at {}, prefix \"o\": probe portcullis.probe-",
            s3.endpoint
        )),
        "{lines:?}"
    );
    assert!(!lines[0].contains("oss-secret-5678") && !lines[0].contains("LTAIoss-id-1234"));

    // Without the endpoint and without keys: both named, nothing probed.
    let missing = oss.replace(&format!("endpoint = \"{}\"\n", s3.endpoint), "");
    std::fs::write(dir.path().join("proxy.toml"), missing).unwrap();
    let o = portcullis()
        .args(["check", "-c", "proxy.toml"])
        .current_dir(dir.path())
        .env_remove("ALIBABA_CLOUD_ACCESS_KEY_ID")
        .env_remove("ALIBABA_CLOUD_ACCESS_KEY_SECRET")
        .env_remove("OSS_ACCESS_KEY_ID")
        .env_remove("OSS_ACCESS_KEY_SECRET")
        .output()
        .unwrap();
    let lines = assert_clean_failure(&o);
    assert!(
        lines
            .iter()
            .any(|l| l.contains("proxy.toml: registry.endpoint: required with storage = \"oss\"")),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("proxy.toml: registry.access_key_id: no credentials")),
        "{lines:?}"
    );
}
