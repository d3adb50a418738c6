//! Portcullis as a Linux service, driven as systemd would: a real unix datagram
//! NOTIFY_SOCKET, real signals, reload under load, graceful stop during an upload,
//! the metrics listener and the access log.

mod support;

use bytes::Bytes;
use http::StatusCode;
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use portcullis::body::{self, BoxError};
use std::io::{BufRead, BufReader};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::*;

const ALICE: Option<(&str, &str)> = Some(BCRYPT_USER);

/// The binary started like systemd starts it, with a notify socket to listen on.
struct Service {
    child: Child,
    port: u16,
    dir: PathBuf,
    notify: UnixDatagram,
    stdout: Option<std::process::ChildStdout>,
}

impl Service {
    fn start(dir: &Path, opts: &Options, env: &[(&str, &str)]) -> Service {
        let port = free_port();
        let config = write_config(dir, opts, &format!("127.0.0.1:{port}"));
        let sock_path = dir.join("notify.sock");
        let notify = UnixDatagram::bind(&sock_path).unwrap();
        notify
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_portcullis"));
        cmd.args(["serve", "-c"])
            .arg(&config)
            .env("NOTIFY_SOCKET", &sock_path)
            .env(
                "RUST_LOG",
                std::env::var("TEST_RUST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let stdout = child.stdout.take();
        // Tests that do not read the access log still drain it, like the journal would.
        let stdout = if env.iter().any(|(k, _)| *k == "KEEP_STDOUT") {
            stdout
        } else {
            if let Some(out) = stdout {
                std::thread::spawn(move || {
                    std::io::copy(&mut BufReader::new(out), &mut std::io::sink())
                });
            }
            None
        };
        Service {
            child,
            port,
            dir: dir.to_path_buf(),
            notify,
            stdout,
        }
    }

    /// Next sd_notify datagram.
    fn next_message(&self) -> String {
        let mut buf = [0u8; 4096];
        let n = self
            .notify
            .recv(&mut buf)
            .expect("an sd_notify message within 20 s");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    /// Skip messages until one contains `want`; return it.
    fn wait_for(&self, want: &str) -> String {
        loop {
            let m = self.next_message();
            if m.lines().any(|l| l == want) {
                return m;
            }
        }
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
    }

    fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.port)
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn unit_file_passes_systemd_analyze_verify() {
    let analyze = require("systemd-analyze");
    let dir = tempfile::tempdir().unwrap();
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/portcullis.service"
    ))
    .unwrap();
    for key in [
        "Type=notify",
        "DynamicUser=yes",
        "StateDirectory=",
        "ConfigurationDirectory=",
        "AmbientCapabilities=CAP_NET_BIND_SERVICE",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "Restart=on-failure",
        "WatchdogSec=",
    ] {
        assert!(unit.lines().any(|l| l.starts_with(key)), "unit lacks {key}");
    }
    // verify checks that ExecStart exists: point it at the binary under test.
    let unit = unit.replace(
        "/usr/local/bin/portcullis",
        env!("CARGO_BIN_EXE_portcullis"),
    );
    let path = dir.path().join("portcullis.service");
    std::fs::write(&path, unit).unwrap();
    let out = Command::new(analyze)
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{said}");
    assert!(
        !said.contains("portcullis.service"),
        "systemd-analyze complained: {said}"
    );
}

#[test]
fn sd_notify_ready_watchdog_reload_stopping_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::start(
        dir.path(),
        &Options::registry(),
        &[("WATCHDOG_USEC", "400000")],
    );
    let first = svc.next_message();
    assert!(first.lines().any(|l| l == "READY=1"), "{first}");
    let status = first
        .lines()
        .find(|l| l.starts_with("STATUS="))
        .expect("STATUS with READY");
    assert!(
        status.contains(&format!("127.0.0.1:{}", svc.port)) && status.contains("bundled registry"),
        "{status}"
    );
    svc.wait_for("WATCHDOG=1");

    svc.signal("-HUP");
    let reloading = svc.wait_for("RELOADING=1");
    assert!(
        reloading.lines().any(|l| l.starts_with("MONOTONIC_USEC=")),
        "{reloading}"
    );
    let ready = svc.wait_for("READY=1");
    assert!(ready.contains("STATUS=reloaded"), "{ready}");

    // A broken configuration is refused; the old one stays (and says so).
    let config = svc.dir.join("proxy.toml");
    let good = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, good.replace("[auth]", "[auth]\nbogus = 1")).unwrap();
    svc.signal("-HUP");
    svc.wait_for("RELOADING=1");
    let refused = svc.wait_for("READY=1");
    assert!(
        refused.contains("reload failed, old configuration kept") && refused.contains("auth.bogus"),
        "{refused}"
    );

    let mut svc = svc;
    svc.signal("-TERM");
    svc.wait_for("STOPPING=1");
    let status = svc.child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
}

#[test]
fn sighup_the_moment_ready_is_sent_reloads_instead_of_killing() {
    // systemd may send SIGHUP (ExecReload) as soon as it has read READY=1: the handler
    // must already be there. kill(2) straight from the notify socket's reader lands
    // within microseconds of READY; a few rounds make a late handler show.
    for round in 0..5 {
        let dir = tempfile::tempdir().unwrap();
        let mut svc = Service::start(dir.path(), &Options::registry(), &[]);
        let first = svc.next_message();
        let pid = rustix::process::Pid::from_raw(svc.child.id() as i32).unwrap();
        rustix::process::kill_process(pid, rustix::process::Signal::HUP).unwrap();
        assert!(first.lines().any(|l| l == "READY=1"), "{first}");
        let reloaded = svc.wait_for("RELOADING=1");
        assert!(reloaded.contains("RELOADING=1"));
        let ready = svc.wait_for("READY=1");
        assert!(ready.contains("STATUS=reloaded"), "round {round}: {ready}");
        assert!(
            svc.child.try_wait().unwrap().is_none(),
            "round {round}: the process died"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_under_load_swaps_users_and_certificate_with_no_failed_request() {
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::start(dir.path(), &Options::registry(), &[]);
    svc.wait_for("READY=1");
    let old_ca = dir.path().join("old-ca.crt");
    std::fs::copy(dir.path().join("certs/ca.crt"), &old_ca).unwrap();

    // A bounded load loop on kept-alive connections (HTTP/1.1 and HTTP/2).
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let done = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut load = Vec::new();
    for h2 in [false, true, false, true] {
        let (stop, done, failed) = (stop.clone(), done.clone(), failed.clone());
        let c = Client::new(&old_ca, h2);
        let url = svc.url("/v2/");
        load.push(tokio::spawn(async move {
            for _ in 0..5000 {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let a = c.get(&url, ALICE).await;
                if a.status != StatusCode::OK {
                    failed.lock().unwrap().push(a.status);
                }
                done.fetch_add(1, Ordering::SeqCst);
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    // New users file: bob added, alice kept (the load uses her), shah removed.
    let htpasswd = std::fs::read_to_string(dir.path().join("auth/htpasswd")).unwrap();
    let without_shah: String = htpasswd
        .lines()
        .filter(|l| !l.starts_with("shah:"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(
        dir.path().join("auth/htpasswd"),
        format!("{without_shah}{}\n", htpasswd_line("-B", "bob", "bob-pw")),
    )
    .unwrap();
    // New certificate from a new CA, written the way an operator would (atomic renames).
    let fresh = tempfile::tempdir().unwrap();
    portcullis::certs::generate(
        &portcullis::certs::Layout::in_dir(fresh.path()),
        &["127.0.0.1".into()],
        false,
    )
    .unwrap();
    for f in ["server.key", "server.crt"] {
        std::fs::copy(
            fresh.path().join(f),
            dir.path().join(format!("certs/{f}.new")),
        )
        .unwrap();
        std::fs::rename(
            dir.path().join(format!("certs/{f}.new")),
            dir.path().join(format!("certs/{f}")),
        )
        .unwrap();
    }
    let before = done.load(Ordering::SeqCst);
    svc.signal("-HUP");
    let ready = tokio::task::block_in_place(|| svc.wait_for("READY=1"));
    assert!(ready.contains("STATUS=reloaded"), "{ready}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::SeqCst);
    for t in load {
        t.await.unwrap();
    }
    let total = done.load(Ordering::SeqCst);
    assert!(
        total > before + 10,
        "load kept going across the reload ({before} → {total})"
    );
    assert!(
        failed.lock().unwrap().is_empty(),
        "failed requests: {:?}",
        failed.lock().unwrap()
    );

    // New handshakes get the new certificate: only the new CA verifies them.
    let new_client = Client::h1(&fresh.path().join("ca.crt"));
    assert_eq!(
        new_client
            .get(&svc.url("/v2/"), Some(("bob", "bob-pw")))
            .await
            .status,
        200,
        "new user works"
    );
    assert_eq!(
        new_client
            .get(&svc.url("/v2/"), Some(SHA_USER))
            .await
            .status,
        401,
        "removed user refused"
    );
    let old_client = Client::h1(&old_ca);
    let stale = old_client
        .send_streaming(
            request("GET", &svc.url("/v2/"), ALICE)
                .body(body::empty())
                .unwrap(),
        )
        .await;
    assert!(
        stale.is_err(),
        "a new handshake must not present the old certificate"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_an_upload_in_progress_finish_then_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let mut svc = Service::start(dir.path(), &Options::registry(), &[]);
    svc.wait_for("READY=1");
    let c = Client::h2(&dir.path().join("certs/ca.crt"));

    const SIZE: usize = 200 << 20;
    const CHUNK: usize = 1 << 20;
    let mut hasher = sha2::Sha256::default();
    let chunk_of = |i: usize| Bytes::from(vec![(i % 251) as u8; CHUNK]);
    for i in 0..SIZE / CHUNK {
        sha2::Digest::update(&mut hasher, chunk_of(i));
    }
    let digest = format!("sha256:{}", hex::encode(sha2::Digest::finalize(hasher)));
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, BoxError>>(4);
    let stream =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|f| (f, rx)) });
    let upload = {
        let url = svc.url(&format!("/v2/drain/test/blobs/uploads/?digest={digest}"));
        let req = request("POST", &url, ALICE)
            .body(BodyExt::boxed_unsync(StreamBody::new(stream)))
            .unwrap();
        tokio::spawn(async move { c.send(req).await })
    };
    for i in 0..SIZE / CHUNK {
        if i == 40 {
            // 40 MiB in: stop the service. The upload must still finish.
            svc.signal("-TERM");
            tokio::task::block_in_place(|| svc.wait_for("STOPPING=1"));
            tokio::time::sleep(Duration::from_millis(200)).await;
            let refused = tokio::net::TcpStream::connect(("127.0.0.1", svc.port)).await;
            assert!(
                refused.is_err(),
                "new connections are refused once stopping"
            );
        }
        tx.send(Ok(Frame::data(chunk_of(i)))).await.unwrap();
    }
    drop(tx);
    let answer = upload.await.unwrap();
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.text());
    let status = tokio::task::block_in_place(|| svc.child.wait()).unwrap();
    assert_eq!(status.code(), Some(0));
    let hex = &digest[7..];
    let blob = dir.path().join(format!(
        "data/docker/registry/v2/blobs/sha256/{}/{hex}/data",
        &hex[..2]
    ));
    assert_eq!(oci::sha256_file(&blob), hex, "the blob on disk verifies");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_known_traffic_and_the_access_log_records_it() {
    let dir = tempfile::tempdir().unwrap();
    let metrics_port = free_port();
    let opts = Options::registry()
        .metrics(format!("127.0.0.1:{metrics_port}"))
        .log_format("json");
    let mut svc = Service::start(dir.path(), &opts, &[("KEEP_STDOUT", "1")]);
    svc.wait_for("READY=1");
    let stdout = svc.stdout.take().unwrap();
    let lines = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    {
        let lines = lines.clone();
        std::thread::spawn(move || {
            for l in BufReader::new(stdout).lines().map_while(Result::ok) {
                lines.lock().unwrap().push(l);
            }
        });
    }
    let c = Client::h1(&dir.path().join("certs/ca.crt"));
    for _ in 0..3 {
        assert_eq!(c.get(&svc.url("/v2/"), ALICE).await.status, 200);
    }
    for _ in 0..2 {
        assert_eq!(
            c.get(&svc.url("/v2/"), Some(("alice", "wrong")))
                .await
                .status,
            401
        );
    }
    let data = vec![9u8; 4096];
    let d = format!("sha256:{}", sha256_hex(&data));
    let put = c
        .send(
            request(
                "POST",
                &svc.url(&format!("/v2/m/x/blobs/uploads/?digest={d}")),
                ALICE,
            )
            .body(body::full(data.clone()))
            .unwrap(),
        )
        .await;
    assert_eq!(put.status, 201);
    let get = c.get(&svc.url(&format!("/v2/m/x/blobs/{d}")), ALICE).await;
    assert_eq!(get.body.len(), 4096);

    let scrape = reqwest_like_get(metrics_port, "/metrics").await;
    let has = |needle: &str| scrape.lines().any(|l| l == needle);
    assert!(
        has(r#"portcullis_requests_total{method="GET",route="ping",status="200"} 3"#),
        "{scrape}"
    );
    assert!(
        has(r#"portcullis_requests_total{method="GET",route="ping",status="401"} 2"#),
        "{scrape}"
    );
    assert!(
        has(r#"portcullis_requests_total{method="POST",route="upload",status="201"} 1"#),
        "{scrape}"
    );
    assert!(
        has(r#"portcullis_requests_total{method="GET",route="blob",status="200"} 1"#),
        "{scrape}"
    );
    assert!(has("portcullis_auth_failures_total 2"), "{scrape}");
    assert!(has("portcullis_auth_successes_total 5"), "{scrape}");
    assert!(
        has("portcullis_auth_cache_hits_total 4"),
        "one bcrypt, then hits: {scrape}"
    );
    assert!(has("portcullis_received_bytes_total 4096"), "{scrape}");
    assert!(
        scrape.contains("portcullis_request_duration_seconds_bucket{le="),
        "{scrape}"
    );
    // The client keeps its connections alive (how many it opens is its business):
    // at least one handshake, never one per request, and those connections still open.
    let value = |name: &str| -> u64 {
        scrape
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} missing: {scrape}"))
    };
    let handshakes = value("portcullis_tls_handshakes_total ");
    assert!(
        (1..7).contains(&handshakes),
        "{handshakes} handshakes for 7 requests"
    );
    // Counted from accept, so a connection the client has just opened may not have
    // finished its handshake yet: at least the kept-alive one, at most one per request.
    let open = value("portcullis_active_connections ");
    assert!((1..=7).contains(&open), "{open} open: {scrape}");
    let sent: u64 = scrape
        .lines()
        .find_map(|l| l.strip_prefix("portcullis_sent_bytes_total "))
        .and_then(|v| v.parse().ok())
        .unwrap();
    assert!(sent >= 4096, "{sent}");
    assert_eq!(reqwest_like_get(metrics_port, "/healthz").await, "ok\n");
    assert_eq!(reqwest_like_get(metrics_port, "/readyz").await, "ready\n");

    // The access log: one JSON line per request, user and bytes, never a secret.
    let deadline = Instant::now() + Duration::from_secs(5);
    while lines.lock().unwrap().len() < 7 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let lines = lines.lock().unwrap().clone();
    assert_eq!(lines.len(), 7, "{lines:?}");
    let entries: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let upload = entries.iter().find(|e| e["method"] == "POST").unwrap();
    assert_eq!(upload["user"], "alice");
    assert_eq!(upload["status"], 201);
    assert_eq!(upload["bytes_in"], 4096);
    assert_eq!(upload["repository"], "m/x");
    let blob = entries
        .iter()
        .find(|e| e["path"] == format!("/v2/m/x/blobs/{d}"))
        .unwrap();
    assert_eq!(blob["bytes_out"], 4096);
    for l in &lines {
        assert!(
            !l.contains("alice-secret") && !l.to_lowercase().contains("basic "),
            "secret in log: {l}"
        );
    }
    svc.signal("-TERM");
    let _ = tokio::task::block_in_place(|| svc.child.wait());
}

/// A plain-HTTP GET on the metrics listener.
async fn reqwest_like_get(port: u16, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    body.to_string()
}

/// Socket activation: systemd (here `systemd-socket-activate`) binds the port and hands
/// it over in LISTEN_FDS; Portcullis serves on it instead of binding its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socket_activation_serves_on_the_inherited_listener() {
    let activate = require("systemd-socket-activate");
    let dir = tempfile::tempdir().unwrap();
    // The config names a port nobody will listen on; the inherited socket is another.
    let config = write_config(
        dir.path(),
        &Options::registry(),
        &format!("127.0.0.1:{}", free_port()),
    );
    let port = free_port();
    let mut child = Command::new(activate)
        .arg("-l")
        .arg(format!("127.0.0.1:{port}"))
        .arg(env!("CARGO_BIN_EXE_portcullis"))
        .args(["serve", "-c"])
        .arg(&config)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_port(port, "systemd-socket-activate");
    let c = Client::h1(&dir.path().join("certs/ca.crt"));
    let a = c.get(&format!("https://127.0.0.1:{port}/v2/"), ALICE).await;
    assert_eq!(a.status, StatusCode::OK);
    let _ = child.kill();
    let _ = child.wait();
}
