//! Password checks under attack, through the real binary over real TLS: cancelled
//! checks stop costing CPU, identical checks run once, failures take the same time
//! whatever the scheme or user, client-chosen names cannot forge log lines, and the
//! failed-login throttle answers guessing with 429 instead of bcrypt (per address and
//! per user name, other loopback addresses standing in for other clients).
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
        Server::start_with(Options::registry().htpasswd(htpasswd), log_format)
    }

    /// The same with more of the configuration chosen by the test.
    fn start_with(opts: Options, log_format: &str) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let metrics_port = free_port();
        let opts = opts
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
    // The hashing pool's own defence, without the failed-login throttle (which would
    // answer most of this flood 429 before it reached the pool).
    let server = Server::start_with(Options::registry().htpasswd(htpasswd).no_throttle(), "json");
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

// The failed-login throttle ([auth.throttle]). Other loopback addresses (127.0.0.2, ...)
// are other clients to the server, which listens on 127.0.0.1.

/// CPU time one check of `hash` costs on this host: five checks on a thread of their
/// own, timed by that thread's utime+stime (so neither other tests in this process nor
/// a busy host inflate it, as they do a wall-clock timing).
fn hash_cpu(hash: &str) -> Duration {
    const N: u32 = 5;
    let hash = hash.to_string();
    std::thread::spawn(move || {
        let ticks = || {
            let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
            let rest = &stat[stat.rfind(')').unwrap() + 2..];
            let f: Vec<&str> = rest.split(' ').collect();
            f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap()
        };
        let before = ticks();
        for _ in 0..N {
            let _ = portcullis::auth::htpasswd::verify_hash(&hash, "not-it");
        }
        Duration::from_secs_f64((ticks() - before) / clock_ticks() / f64::from(N))
    })
    .join()
    .unwrap()
}

/// 127.0.0.`n`.
fn local(n: u8) -> std::net::IpAddr {
    std::net::IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, n))
}

/// An htpasswd line for `user` with a bcrypt hash of `password` at `cost`.
fn bcrypt_line(user: &str, password: &str, cost: u32) -> String {
    let hash = portcullis::auth::htpasswd::hash_bcrypt(password, cost).unwrap();
    format!("{user}:{hash}\n")
}

/// A throttled answer as the contract words it: 429, `Retry-After` in whole seconds
/// (at least 1, at most one refill away), the registry's JSON error and API header.
fn assert_throttled(a: &Answer, refill: Duration, what: &str) {
    assert_eq!(
        a.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{what}: {}",
        a.text()
    );
    let retry: u64 = a
        .header("retry-after")
        .parse()
        .unwrap_or_else(|_| panic!("{what}: Retry-After {:?}", a.header("retry-after")));
    assert!(
        (1..=refill.as_secs().max(1)).contains(&retry),
        "{what}: Retry-After {retry} with refill {refill:?}"
    );
    assert_eq!(a.oci_code(), "TOOMANYREQUESTS", "{what}");
    assert!(
        a.text().contains("too many failed logins"),
        "{what}: {}",
        a.text()
    );
    assert_eq!(a.header("docker-distribution-api-version"), "registry/2.0");
}

impl Server {
    fn throttled(&self, by: &str) -> f64 {
        self.metric(&format!("portcullis_auth_throttled_total{{by=\"{by}\"}}"))
            .unwrap_or(0.0)
    }

    fn bcrypt_hashes(&self) -> f64 {
        self.hashes("bcrypt").unwrap_or(0.0)
    }
}

/// The contract's defaults (shared/DESIGN.md, `[auth.throttle]`): a server with no
/// `[auth.throttle]` table throttles with these.
const DEFAULT_BURST: usize = 10;
const DEFAULT_REFILL: Duration = Duration::from_secs(6);

/// Tokens that can have come back in `elapsed` at one per `refill` (rounded up).
fn refilled(elapsed: Duration, refill: Duration) -> usize {
    (elapsed.as_secs_f64() / refill.as_secs_f64()).ceil() as usize
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_passwords_beyond_the_burst_get_429_without_a_hash_and_others_are_served() {
    let (slow, hash) = slow_htpasswd();
    let htpasswd = format!(
        "{slow}{}{}",
        bcrypt_line("calm-a", "calm-secret", 10),
        bcrypt_line("calm-b", "calm-secret", 10)
    );
    // No [auth.throttle] table: the throttle is on by default.
    let server = Server::start(htpasswd, "json");
    let url = server.url("/v2/");
    let ca = server.ca();
    let one_hash = hash_cost(&hash);
    let hash_cpu = hash_cpu(&hash);

    // Another client's first login (a fresh connection and a hash), unloaded.
    let t = Instant::now();
    let a = Client::from_address(&ca, false, local(2))
        .get(&url, Some(("calm-a", "calm-secret")))
        .await;
    let unloaded = t.elapsed();
    assert_eq!(a.status, StatusCode::OK);

    let cpu_before = server.cpu_seconds();
    let hashes_before = server.bcrypt_hashes();
    let started = Instant::now();

    // 100 wrong passwords one after the other from 127.0.0.1 ...
    let attacker = Client::h1(&ca);
    let mut sequential = Vec::new();
    for i in 0..100 {
        sequential.push(
            attacker
                .get(&url, Some(("slow", &format!("wrong-{i}"))))
                .await,
        );
    }
    // ... then 100 at once over four HTTP/2 connections, while a user on another
    // address logs in for the first time.
    let h2: Arc<Vec<Client>> = Arc::new((0..4).map(|_| Client::h2(&ca)).collect());
    let flood: Vec<_> = (0..100)
        .map(|i| {
            let (h2, url) = (h2.clone(), url.clone());
            tokio::spawn(async move {
                h2[i % h2.len()]
                    .get(&url, Some(("slow", &format!("parallel-{i}"))))
                    .await
            })
        })
        .collect();
    let t = Instant::now();
    let legit = Client::from_address(&ca, false, local(2))
        .get(&url, Some(("calm-b", "calm-secret")))
        .await;
    let legit_took = t.elapsed();
    let mut parallel = Vec::new();
    for f in flood {
        parallel.push(f.await.unwrap());
    }
    let elapsed = started.elapsed();
    let cpu = server.cpu_when_idle().await - cpu_before;
    let hashes = server.bcrypt_hashes() - hashes_before;

    let all: Vec<&Answer> = sequential.iter().chain(&parallel).collect();
    let refused = all
        .iter()
        .filter(|a| a.status == StatusCode::UNAUTHORIZED)
        .count();
    let throttled = all.len() - refused;
    let allowance = DEFAULT_BURST + refilled(elapsed, DEFAULT_REFILL);
    eprintln!(
        "200 wrong passwords in {elapsed:?}: {refused} × 401, {throttled} × 429; server CPU {cpu:.3} s, \
         bcrypt hashes {hashes} (one hash here: {hash_cpu:?} CPU, {one_hash:?} wall; 200 hashes \
         would be {:.2} s CPU); other user's first login {legit_took:?} under the flood, {unloaded:?} unloaded",
        hash_cpu.as_secs_f64() * 200.0
    );

    // The first `burst` wrong passwords are checked (401), then 429 without a check.
    for (i, a) in sequential.iter().take(DEFAULT_BURST).enumerate() {
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "try {i}");
    }
    assert!(
        refused <= allowance,
        "{refused} tries were checked; the burst plus refills in {elapsed:?} is {allowance}"
    );
    for (i, a) in all.iter().enumerate() {
        if a.status != StatusCode::UNAUTHORIZED {
            assert_throttled(a, DEFAULT_REFILL, &format!("try {i}"));
        }
    }
    // Counted by the bucket that was empty (the user's may lag the address's by a
    // refill when one came back between two tries).
    assert_eq!(
        server.throttled("address") + server.throttled("user"),
        throttled as f64,
        "portcullis_auth_throttled_total"
    );
    assert!(server.throttled("address") >= 1.0);
    // Hashes: the checked wrong passwords and calm-b's one login.
    assert!(
        hashes <= (allowance + 1) as f64,
        "{hashes} bcrypt hashes for 200 wrong passwords (allowance {allowance})"
    );
    // CPU: those hashes (at twice the CPU cost this test measured) and half a second
    // for 200 requests' TLS and HTTP; 200 hashes would be far more.
    let bound = hash_cpu.as_secs_f64() * 2.0 * (allowance + 1) as f64 + 0.5;
    assert!(cpu < bound, "server CPU {cpu:.3} s, bound {bound:.3} s");

    // The other address was never throttled, and not slowed down beyond a few of the
    // burst's hashes queued ahead of its own.
    assert_eq!(legit.status, StatusCode::OK, "{}", legit.text());
    let bound = unloaded * 4 + one_hash * DEFAULT_BURST as u32;
    assert!(
        legit_took < bound,
        "other user's login took {legit_took:?} under the flood (unloaded {unloaded:?}, bound {bound:?})"
    );

    // Logs: one line per checked failure, none per throttled try; the throttle writes a
    // summary per interval (every 10 s), so the flood gives one or two lines.
    let deadline = Instant::now() + Duration::from_secs(30);
    let summaries = |l: &[String]| l.iter().filter(|l| l.contains("login throttle")).count();
    while summaries(&server.stderr()) == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let log = server.stderr();
    let lines = summaries(&log);
    let failed_lines = log
        .iter()
        .filter(|l| l.contains("authentication failed"))
        .count();
    assert!(
        (1..=2 + started.elapsed().as_secs() as usize / 10).contains(&lines),
        "{lines} summary lines: {log:#?}"
    );
    assert_eq!(
        failed_lines, refused,
        "one log line per checked failure: {log:#?}"
    );
    let summary = log.iter().find(|l| l.contains("login throttle")).unwrap();
    assert!(
        summary.contains("127.0.0.1"),
        "the top offender is named: {summary}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_users_own_parallel_logins_never_trip_the_throttle_and_known_ones_pass_it() {
    const USERS: usize = 20;
    const BURST: u32 = 3;
    const REFILL: Duration = Duration::from_secs(600);
    let htpasswd: String = (0..USERS)
        .map(|i| bcrypt_line(&format!("ci-{i}"), "ci-secret", 8))
        .chain(std::iter::once(bcrypt_line("late", "late-secret", 8)))
        .collect();
    let server = Server::start_with(
        Options::registry()
            .htpasswd(htpasswd)
            .throttle(BURST, REFILL),
        "json",
    );
    let url = server.url("/v2/");
    let clients: Arc<Vec<Client>> = Arc::new((0..10).map(|_| Client::h2(&server.ca())).collect());
    // Twenty users (more than the burst) log in for the first time at once, ten
    // parallel requests each, all from 127.0.0.1.
    let round = || {
        let tasks: Vec<_> = (0..USERS * 10)
            .map(|i| {
                let (clients, url) = (clients.clone(), url.clone());
                tokio::spawn(async move {
                    let user = format!("ci-{}", i % USERS);
                    clients[i % clients.len()]
                        .get(&url, Some((&user, "ci-secret")))
                        .await
                        .status
                })
            })
            .collect();
        futures_util::future::join_all(tasks)
    };
    for s in round().await {
        assert_eq!(
            s.unwrap(),
            StatusCode::OK,
            "a right password is never throttled"
        );
    }
    assert_eq!(server.throttled("address") + server.throttled("user"), 0.0);

    // The same address now guesses: the burst, then 429.
    let c = Client::h1(&server.ca());
    for i in 0..BURST {
        let a = c.get(&url, Some(("ci-0", &format!("wrong-{i}")))).await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    }
    let a = c.get(&url, Some(("ci-0", "wrong-again"))).await;
    assert_throttled(&a, REFILL, "after the burst");

    // Credentials already verified still pass from the throttled address (the cache
    // comes before the throttle, and costs no hash) ...
    let hashes = server.bcrypt_hashes();
    for s in round().await {
        assert_eq!(
            s.unwrap(),
            StatusCode::OK,
            "known credentials pass the throttle"
        );
    }
    assert_eq!(server.bcrypt_hashes(), hashes, "served from the cache");
    // ... but a credential never seen needs a check, and the address has no token.
    let a = c.get(&url, Some(("late", "late-secret"))).await;
    assert_throttled(&a, REFILL, "unverified credential from a throttled address");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_flood_on_one_http2_connection_costs_at_most_a_burst_of_hashes() {
    const BURST: u32 = 5;
    const REFILL: Duration = Duration::from_secs(600);
    const VOLLEYS: usize = 20;
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let (slow, hash) = slow_htpasswd();
    let htpasswd = format!(
        "{slow}{}{}",
        bcrypt_line("calm-a", "calm-secret", 10),
        bcrypt_line("calm-b", "calm-secret", 10)
    );
    let server = Server::start_with(
        Options::registry()
            .htpasswd(htpasswd)
            .throttle(BURST, REFILL),
        "json",
    );
    let url = server.url("/v2/");
    let one_hash = hash_cost(&hash);
    let hash_cpu = hash_cpu(&hash);
    let t = Instant::now();
    let a = Client::from_address(&server.ca(), false, local(3))
        .get(&url, Some(("calm-a", "calm-secret")))
        .await;
    let unloaded = t.elapsed();
    assert_eq!(a.status, StatusCode::OK);
    let cpu_before = server.cpu_seconds();
    let hashes_before = server.bcrypt_hashes();

    // 300 streams with distinct wrong passwords on one connection, in volleys of 15
    // reset at once, each reset after one hash's time (so the volley's first check
    // has started: resetting it must not undo its count).
    let mut send = h2_connect(server.port, &server.ca()).await;
    for v in 0..VOLLEYS {
        let mut streams = Vec::new();
        for s in 0..STREAMS_PER_CONNECTION {
            send = send.ready().await.expect("stream capacity");
            let req = http::Request::get(&url)
                .header("authorization", basic("slow", &format!("wrong-{v}-{s}")))
                .body(())
                .unwrap();
            streams.push(send.send_request(req, true).expect("send"));
        }
        tokio::time::sleep(one_hash).await;
        for (response, mut stream) in streams {
            stream.send_reset(h2::Reason::CANCEL);
            drop(response);
        }
    }

    // The server stays responsive: another client's first login.
    let t = Instant::now();
    let legit = Client::from_address(&server.ca(), false, local(2))
        .get(&url, Some(("calm-b", "calm-secret")))
        .await;
    let legit_took = t.elapsed();
    let cpu = server.cpu_when_idle().await - cpu_before;
    let hashes = server.bcrypt_hashes() - hashes_before;
    eprintln!(
        "{} reset streams on one connection: server CPU {cpu:.3} s, bcrypt hashes {hashes} \
         (one hash here: {hash_cpu:?} CPU, {one_hash:?} wall); other user's login {legit_took:?} \
         ({unloaded:?} unloaded)",
        VOLLEYS * STREAMS_PER_CONNECTION
    );
    assert_eq!(legit.status, StatusCode::OK);
    assert!(
        hashes <= f64::from(BURST) + 1.0,
        "{hashes} bcrypt hashes (burst {BURST}, plus calm-b's login)"
    );
    let bound = hash_cpu.as_secs_f64() * 2.0 * f64::from(BURST + 1) + 0.5;
    assert!(cpu < bound, "server CPU {cpu:.3} s, bound {bound:.3} s");
    let bound = unloaded * 4 + one_hash * BURST;
    assert!(
        legit_took < bound,
        "login took {legit_took:?}, bound {bound:?}"
    );
    // The checks that ran count although their streams were reset: the address is
    // out of tokens.
    let a = Client::h1(&server.ca())
        .get(&url, Some(("slow", "one-more")))
        .await;
    assert_throttled(&a, REFILL, "after the reset flood");
    drop(send);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guessing_one_user_from_many_addresses_is_limited_by_the_users_bucket() {
    const BURST: u32 = 4;
    const REFILL: Duration = Duration::from_secs(600);
    const ADDRESSES: std::ops::RangeInclusive<u8> = 2..=9;
    const ROUNDS: usize = 3;
    let (slow, _) = slow_htpasswd();
    let htpasswd = format!("{slow}{}", bcrypt_line("other", "other-secret", 8));
    let server = Server::start_with(
        Options::registry()
            .htpasswd(htpasswd)
            .throttle(BURST, REFILL),
        "json",
    );
    let url = server.url("/v2/");
    let clients: Vec<(u8, Client)> = ADDRESSES
        .map(|n| (n, Client::from_address(&server.ca(), false, local(n))))
        .collect();
    let hashes_before = server.bcrypt_hashes();
    // Each address guesses fewer times than its own burst; together far more.
    let mut statuses = Vec::new();
    for r in 0..ROUNDS {
        for (n, c) in &clients {
            let a = c.get(&url, Some(("slow", &format!("guess-{r}-{n}")))).await;
            if a.status != StatusCode::UNAUTHORIZED {
                assert_throttled(&a, REFILL, &format!("round {r}, 127.0.0.{n}"));
            }
            statuses.push(a.status);
        }
    }
    let hashes = server.bcrypt_hashes() - hashes_before;
    let checked = statuses
        .iter()
        .filter(|s| **s == StatusCode::UNAUTHORIZED)
        .count();
    // Once the user's bucket is empty, each address gets at most one more guess (a
    // failure from a clean address drains it).
    let most = (BURST as usize).max(clients.len());
    eprintln!(
        "{} guesses from {} addresses: {checked} checked, {hashes} hashes, throttled by user {} and by address {}",
        statuses.len(),
        clients.len(),
        server.throttled("user"),
        server.throttled("address")
    );
    assert!(checked <= most, "{checked} guesses checked: {statuses:?}");
    assert!(hashes <= most as f64, "{hashes} hashes");
    assert!(
        server.throttled("user") >= 1.0,
        "refused by the user's bucket"
    );

    // The owner, from a guessing address: no token for a check there ...
    let a = clients[1].1.get(&url, Some(("slow", "slow-secret"))).await;
    assert_throttled(&a, REFILL, "right password from a guessing address");
    // ... from a clean address: checked and served, not delayed by anyone's failures.
    let owner = Client::from_address(&server.ca(), false, local(10));
    let a = owner.get(&url, Some(("slow", "slow-secret"))).await;
    assert_eq!(
        a.status,
        StatusCode::OK,
        "right password from a clean address"
    );
    // Now verified, the credential passes even from the guessing address.
    let a = clients[1].1.get(&url, Some(("slow", "slow-secret"))).await;
    assert_eq!(a.status, StatusCode::OK, "verified credential");
    // A clean address that guesses the throttled user is drained by its one failure.
    let newcomer = Client::from_address(&server.ca(), false, local(11));
    let a = newcomer.get(&url, Some(("slow", "guess-new"))).await;
    assert_eq!(
        a.status,
        StatusCode::UNAUTHORIZED,
        "one guess from a clean address"
    );
    let a = newcomer.get(&url, Some(("other", "guess-other"))).await;
    assert_throttled(&a, REFILL, "the clean address after its guess");
}

/// Rewrite the server's proxy.toml with `text`, send SIGHUP and wait (bounded) until
/// it says it reloaded.
async fn reload(server: &Server, text: &str) {
    let reloads = |l: &[String]| l.iter().filter(|l| l.contains("reloaded status=")).count();
    let before = reloads(&server.stderr());
    std::fs::write(server.dir.path().join("proxy.toml"), text).unwrap();
    let sent = Command::new("kill")
        .args(["-HUP", &server.child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    while reloads(&server.stderr()) == before {
        assert!(
            Instant::now() < deadline,
            "no reload: {:#?}",
            server.stderr()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_throttle_survives_a_reload_and_takes_its_new_limits() {
    const REFILL: Duration = Duration::from_secs(600);
    let (slow, _) = slow_htpasswd();
    let server = Server::start_with(
        Options::registry().htpasswd(slow).throttle(3, REFILL),
        "text",
    );
    let url = server.url("/v2/");
    let c = Client::h1(&server.ca());
    let mut guesses = 0..;
    let mut guess = async || {
        let password = format!("guess-{}", guesses.next().unwrap());
        c.get(&url, Some(("slow", &password))).await
    };
    for _ in 0..3 {
        assert_eq!(guess().await.status, StatusCode::UNAUTHORIZED);
    }
    assert_throttled(&guess().await, REFILL, "after 3");

    // Same configuration: the buckets carry over to the new snapshot.
    let text = std::fs::read_to_string(server.dir.path().join("proxy.toml")).unwrap();
    assert!(text.contains("burst = 3"), "{text}");
    reload(&server, &text).await;
    assert_throttled(&guess().await, REFILL, "after a reload");
    // A larger burst applies to the failures already counted: 3 more tokens.
    reload(&server, &text.replace("burst = 3", "burst = 6")).await;
    for _ in 0..3 {
        assert_eq!(guess().await.status, StatusCode::UNAUTHORIZED);
    }
    assert_throttled(&guess().await, REFILL, "after 6");
}
