//! Password checks under attack, through the real binary over real TLS: cancelled
//! checks stop costing CPU, identical checks run once, failures take the same time
//! whatever the scheme or user, and client-chosen names cannot forge log lines.
//!
//! The server runs as its own process (`portcullis serve`), so its CPU time, its
//! metrics and its logs are its own, not shared with other tests in this binary.

mod support;

use bytes::Bytes;
use http::StatusCode;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::*;

/// The portcullis binary serving the bundled registry, with a metrics listener; its
/// standard output (the access log) and standard error (tracing) are collected.
struct Server {
    child: Child,
    port: u16,
    metrics_port: u16,
    dir: tempfile::TempDir,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<Vec<String>>>,
}

fn collect(from: impl Read + Send + 'static) -> Arc<Mutex<Vec<String>>> {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = lines.clone();
    std::thread::spawn(move || {
        let mut r = BufReader::new(from);
        let mut buf = Vec::new();
        // Split on '\n' only, keeping every other byte, so a forged line or a raw
        // escape character shows up exactly as the log reader would see it.
        while r
            .read_until(b'\n', &mut buf)
            .map(|n| n > 0)
            .unwrap_or(false)
        {
            let line = String::from_utf8_lossy(&buf)
                .trim_end_matches('\n')
                .to_string();
            sink.lock().unwrap().push(line);
            buf.clear();
        }
    });
    lines
}

impl Server {
    fn start(htpasswd: String, log_format: &str) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let metrics_port = free_port();
        let opts = Options::registry()
            .htpasswd(htpasswd)
            .metrics(format!("127.0.0.1:{metrics_port}"))
            .log_format(log_format);
        let config = write_config(dir.path(), &opts, &format!("127.0.0.1:{port}"));
        let mut child = Command::new(env!("CARGO_BIN_EXE_portcullis"))
            .args(["serve", "-c"])
            .arg(&config)
            .env_remove("NOTIFY_SOCKET")
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start portcullis");
        let stdout = collect(child.stdout.take().unwrap());
        let stderr = collect(child.stderr.take().unwrap());
        wait_for_port(port, "portcullis");
        wait_for_port(metrics_port, "portcullis metrics");
        Server {
            child,
            port,
            metrics_port,
            dir,
            stdout,
            stderr,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.port)
    }

    fn ca(&self) -> std::path::PathBuf {
        self.dir.path().join("certs/ca.crt")
    }

    /// The value of one sample line of `/metrics`, if present.
    fn metric(&self, sample: &str) -> Option<f64> {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.metrics_port)).unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(sample)?.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok())
    }

    fn hashes(&self, scheme: &str) -> Option<f64> {
        self.metric(&format!(
            "portcullis_auth_hashes_total{{scheme=\"{scheme}\"}}"
        ))
    }

    /// User + system CPU seconds the server process has used.
    fn cpu_seconds(&self) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap();
        // Fields after the parenthesised command name: state is field 3, utime 14, stime 15.
        let rest = &stat[stat.rfind(')').unwrap() + 2..];
        let f: Vec<&str> = rest.split(' ').collect();
        let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
        ticks / clock_ticks()
    }

    /// Wait (bounded) until the server stops using CPU; return its CPU seconds then.
    async fn cpu_when_idle(&self) -> f64 {
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut last = self.cpu_seconds();
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let now = self.cpu_seconds();
            if now - last < 0.05 || Instant::now() > deadline {
                return now;
            }
            last = now;
        }
    }

    fn stdout(&self) -> Vec<String> {
        self.stdout.lock().unwrap().clone()
    }

    fn stderr(&self) -> Vec<String> {
        self.stderr.lock().unwrap().clone()
    }

    /// Wait (bounded) until `pred` holds for the access log; return the log.
    async fn access_log_until(&self, pred: impl Fn(&[String]) -> bool) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let lines = self.stdout();
            if pred(&lines) || Instant::now() > deadline {
                return lines;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn clock_ticks() -> f64 {
    let out = Command::new("getconf").arg("CLK_TCK").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

fn basic(user: &str, password: &str) -> String {
    use base64::Engine;
    let v = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {v}")
}

/// Best of three timings of one check of `hash` in this process: a lower estimate of
/// what one such hash costs on this host.
fn hash_cost(hash: &str) -> Duration {
    (0..3)
        .map(|_| {
            let t = Instant::now();
            let _ = portcullis::auth::htpasswd::verify_hash(hash, "not-it");
            t.elapsed()
        })
        .min()
        .unwrap()
}

/// An HTTP/2 connection of our own, so streams can be reset at will.
async fn h2_connect(port: u16, ca: &Path) -> h2::client::SendRequest<Bytes> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let mut cfg = rustls::ClientConfig::builder_with_provider(portcullis::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(name, tcp)
        .await
        .unwrap();
    let (send, conn) = h2::client::handshake(tls).await.unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    send
}

fn slow_htpasswd() -> (String, String) {
    let hash = portcullis::auth::htpasswd::hash_bcrypt("slow-secret", 10).unwrap();
    (format!("slow:{hash}\n"), hash)
}

const FLOOD: usize = 300;
/// Streams per connection: below h2's limit of 20 streams reset before the server
/// accepted them, so the server never answers the flood with GOAWAY and every stream
/// reaches the request handler.
const STREAMS_PER_CONNECTION: usize = 15;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_streams_do_not_keep_hashing_and_are_logged_499() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let (htpasswd, hash) = slow_htpasswd();
    let server = Server::start(htpasswd, "json");
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let one_hash = hash_cost(&hash);
    let cpu_before = server.cpu_seconds();
    let hashes_before = server.hashes("bcrypt").unwrap_or(0.0);

    // 300 streams with distinct wrong passwords (so no two share a check), each reset
    // right after it is sent.
    let mut conns = Vec::new();
    for c in 0..FLOOD / STREAMS_PER_CONNECTION {
        let port = server.port;
        let ca = server.ca();
        conns.push(tokio::spawn(async move {
            let mut send = h2_connect(port, &ca).await;
            for s in 0..STREAMS_PER_CONNECTION {
                send = send.ready().await.expect("stream capacity");
                let req = http::Request::get(format!("https://127.0.0.1:{port}/v2/"))
                    .header("authorization", basic("slow", &format!("wrong-{c}-{s}")))
                    .body(())
                    .unwrap();
                let (response, mut stream) = send.send_request(req, true).expect("send");
                stream.send_reset(h2::Reason::CANCEL);
                drop(response);
            }
            // Keep the connection open: the server must see resets, not a hang-up.
            send
        }));
    }
    let mut keep = Vec::new();
    for c in conns {
        keep.push(c.await.unwrap());
    }

    // A legitimate user, another client, right after.
    let t = Instant::now();
    let ok = Client::h1(&server.ca())
        .get(&server.url("/v2/"), Some(("slow", "slow-secret")))
        .await;
    let legit = t.elapsed();

    let log = server
        .access_log_until(|l| l.iter().filter(|l| l.contains("\"status\":499")).count() >= FLOOD)
        .await;
    let cpu = server.cpu_when_idle().await - cpu_before;
    let hashes = server.hashes("bcrypt").map(|h| h - hashes_before);
    eprintln!(
        "reset flood: server CPU {cpu:.2} s, bcrypt hashes {hashes:?}, legitimate request {legit:?} (one hash here: {one_hash:?}, {cores} cores)"
    );

    assert_eq!(ok.status, StatusCode::OK);
    // 300 hashes spread over every core take 300 * one_hash / cores; a third of that
    // (and never less than 20 hashes' time) separates "waited for the flood" from
    // "waited for a hash or two" even when both cores are busy with other work.
    let bound = (one_hash * FLOOD as u32 / cores as u32 / 3).max(one_hash * 20);
    assert!(
        legit < bound,
        "legitimate request took {legit:?} (bound {bound:?})"
    );
    let hashes = hashes.expect("portcullis_auth_hashes_total{scheme=\"bcrypt\"} is exported");
    assert!(
        hashes <= (30 + cores) as f64,
        "{hashes} bcrypt hashes for {FLOOD} reset streams"
    );
    let reset_lines: Vec<serde_json::Value> = log
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["status"] == 499)
        .collect();
    assert_eq!(
        reset_lines.len(),
        FLOOD,
        "one access-log line per reset request: {:?}",
        &log[..log.len().min(5)]
    );
    for v in &reset_lines {
        assert_eq!(v["path"], "/v2/");
        assert_eq!(v["method"], "GET");
    }
    drop(keep);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_first_requests_of_one_user_cost_one_hash() {
    let (htpasswd, _) = slow_htpasswd();
    let server = Server::start(htpasswd.clone(), "json");
    let clients: Vec<Client> = (0..10).map(|_| Client::h2(&server.ca())).collect();
    let clients = Arc::new(clients);

    let round = || {
        let tasks: Vec<_> = (0..FLOOD)
            .map(|i| {
                let clients = clients.clone();
                let url = server.url("/v2/");
                tokio::spawn(async move {
                    clients[i % clients.len()]
                        .get(&url, Some(("slow", "slow-secret")))
                        .await
                        .status
                })
            })
            .collect();
        futures_util::future::join_all(tasks)
    };

    // Just started: nothing cached.
    let cpu_before = server.cpu_seconds();
    let hashes_before = server.hashes("bcrypt").unwrap_or(0.0);
    for s in round().await {
        assert_eq!(s.unwrap(), StatusCode::OK);
    }
    let cpu = server.cpu_when_idle().await - cpu_before;
    let after_start = server.hashes("bcrypt").map(|h| h - hashes_before);
    eprintln!(
        "{FLOOD} parallel first requests: server CPU {cpu:.2} s, bcrypt hashes {after_start:?}"
    );

    // The file changes (same users, new generation): everything is checked again.
    std::thread::sleep(Duration::from_millis(20));
    std::fs::write(server.dir.path().join("auth/htpasswd"), &htpasswd).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !server
        .stderr()
        .iter()
        .any(|l| l.contains("htpasswd file changed; reloaded"))
    {
        assert!(
            Instant::now() < deadline,
            "no reload: {:?}",
            server.stderr()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let before = server.hashes("bcrypt").unwrap_or(0.0);
    for s in round().await {
        assert_eq!(s.unwrap(), StatusCode::OK);
    }
    let after_change = server.hashes("bcrypt").map(|h| h - before);

    assert_eq!(after_start, Some(1.0), "one bcrypt after a restart");
    assert_eq!(
        after_change,
        Some(1.0),
        "one bcrypt after an htpasswd change"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_checks_take_the_same_time_whatever_the_scheme_or_user() {
    let (slow, hash) = slow_htpasswd();
    let htpasswd = format!(
        "{slow}{}\n{}\n",
        htpasswd_line("-m", APR1_USER.0, APR1_USER.1),
        htpasswd_line("-s", SHA_USER.0, SHA_USER.1)
    );
    let server = Server::start(htpasswd, "json");
    let c = Client::h1(&server.ca());
    // Warm the connection, so timings below are the check, not the handshake.
    assert_eq!(c.get(&server.url("/"), None).await.status, 404);
    // The costliest hash in the file, as this test measures it (an underestimate on a
    // busy host is fine: it is only a floor).
    let bcrypt = hash_cost(&hash);
    let schemes = ["bcrypt", "apr1", "sha1"];
    let cases = [
        ("wrong apr1 password", (APR1_USER.0, "wrong"), Some("apr1")),
        ("wrong {SHA} password", (SHA_USER.0, "wrong"), Some("sha1")),
        ("unknown user", ("mallory", "slow-secret"), None),
        ("wrong bcrypt password", ("slow", "wrong"), Some("bcrypt")),
    ];
    for (what, user, hashed) in cases {
        let delay = server.metric("portcullis_auth_failure_delay_seconds");
        let before: Vec<f64> = schemes
            .iter()
            .map(|s| server.hashes(s).unwrap_or(0.0))
            .collect();
        let t = Instant::now();
        let a = c.get(&server.url("/v2/"), Some(user)).await;
        let took = t.elapsed();
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{what}");
        // As slow as a bcrypt check (half of the best measured time leaves room for
        // a host that was busier while this test measured than while the server did).
        assert!(
            took >= bcrypt / 2,
            "{what}: refused after {took:?}; one bcrypt takes {bcrypt:?}"
        );
        let delay = delay.expect("portcullis_auth_failure_delay_seconds is exported");
        assert!(
            delay >= bcrypt.as_secs_f64() / 2.0,
            "failure delay {delay} s is below the cost of the file's bcrypt ({bcrypt:?})"
        );
        assert!(
            took.as_secs_f64() >= delay,
            "{what}: refused after {took:?}, failure delay {delay} s"
        );
        // The wait is a timer: only the user's own hash ran, and an unknown user
        // ran none (no decoy bcrypt).
        for (i, s) in schemes.iter().enumerate() {
            let ran = server.hashes(s).unwrap_or(0.0) - before[i];
            let expected = if hashed == Some(*s) { 1.0 } else { 0.0 };
            assert_eq!(ran, expected, "{what}: {s} hashes");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_names_cannot_forge_log_lines() {
    // A known user whose name holds an escape sequence and a carriage return (both
    // survive the htpasswd format, which only splits lines on '\n').
    let known = "bob\u{1b}[31mRED\rX";
    let line = htpasswd_line("-s", "placeholder", "bob-secret");
    let htpasswd = format!("{}\n", line.replacen("placeholder", known, 1));
    let server = Server::start(htpasswd, "text");
    let c = Client::h1(&server.ca());
    let unknown = "mallory\n2030-01-01T00:00:00Z INFO forged: admin logged in\u{1b}[2J";
    for user in [(unknown, "x"), (known, "wrong")] {
        let a = c.get(&server.url("/v2/"), Some(user)).await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    }
    // Both failures are logged before their answers leave; give the pipe a moment.
    let deadline = Instant::now() + Duration::from_secs(10);
    let failed = |l: &Vec<String>| {
        l.iter()
            .filter(|l| l.contains("authentication failed"))
            .count()
    };
    while failed(&server.stderr()) < 2 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = server.access_log_until(|l| l.len() >= 2).await;
    let logs: Vec<String> = server.stderr().into_iter().chain(server.stdout()).collect();
    for l in &logs {
        assert!(
            !l.contains(['\u{1b}', '\r']),
            "raw control character in log line {l:?}"
        );
        assert!(!l.contains("forged"), "forged line: {l:?}");
        assert!(
            !l.contains("mallory"),
            "an unknown user name was logged: {l:?}"
        );
    }
    assert_eq!(failed(&logs), 2, "{logs:#?}");
    assert!(
        logs.iter()
            .any(|l| l.contains("authentication failed") && l.contains("bob\\x1b[31mRED\\rX")),
        "the known user's failure names them, escaped: {logs:#?}"
    );
}
