//! Memory per concurrent download is bounded (issue 13's goal: at most 128 KiB per
//! stream), whatever the blob size, measured on the real binary as the rise of its peak
//! RSS (VmHWM) while hundreds of clients hold large downloads open without reading.

mod support;

use http_body_util::BodyExt;
use portcullis::body;
use sha2::Digest;
use std::sync::Arc;
use std::time::Duration;
use support::oci::Server;
use support::*;

/// Issue 13's goal for one concurrent large download.
const GOAL_PER_STREAM_KIB: u64 = 128;
/// Far larger than every buffer on the way (read chunk, HTTP/2 send buffer and
/// windows, TLS buffer, socket buffers), so each stream holds as much as it ever can.
const BLOB: usize = 100 << 20;
/// What every stream reads before holding: the server is well into each download.
const READ_FIRST: usize = 2 << 20;

/// The HTTP/2 clients' stream window: 4 times the server's send buffer, so what the
/// server holds per stream is bounded by its own limits, not by the client's window.
/// (Go's clients, Docker's and containerd's, use 4 MiB; smaller here only to keep the
/// test process's own memory for hundreds of held streams modest.)
const CLIENT_STREAM_WINDOW: u32 = 256 << 10;

/// How the clients come.
#[derive(Clone, Copy, Debug)]
enum Proto {
    /// HTTP/2, `connections` connections sharing the streams.
    H2 { connections: usize },
    /// HTTP/1.1, one connection per download.
    H1,
}

/// The outcome of one run.
struct Figures {
    /// Resident memory when the downloads start, KiB.
    before: u64,
    /// Peak resident memory while they are all held, KiB.
    peak: u64,
}

/// A blob of `len` bytes whose content is not compressible by anything on the way.
fn blob(len: usize) -> Vec<u8> {
    let mut data = vec![0u8; len];
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for c in data.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        c.copy_from_slice(&x.to_le_bytes()[..c.len()]);
    }
    data
}

fn status_kib(pid: u32, key: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("{key} in /proc/{pid}/status"))
}

/// Forget the peak so far (the push's), so the next VmHWM is the downloads' own.
fn reset_peak(pid: u32) {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").expect("reset VmHWM");
}

/// Push `data` to `big` (POST, then one PUT: distribution has no monolithic POST)
/// and return its digest.
async fn push(ca: &std::path::Path, base: &str, data: Vec<u8>) -> String {
    let digest = format!("sha256:{}", sha256_hex(&data));
    let client = Client::h1(ca);
    let started = client
        .send(
            request(
                "POST",
                &format!("{base}/v2/big/blobs/uploads/"),
                Some(BCRYPT_USER),
            )
            .body(body::empty())
            .unwrap(),
        )
        .await;
    assert_eq!(started.status, 202, "{}", started.text());
    let location = started.headers["location"].to_str().unwrap();
    let location = if location.starts_with('/') {
        format!("{base}{location}")
    } else {
        location.to_string()
    };
    let sep = if location.contains('?') { '&' } else { '?' };
    let pushed = client
        .send(
            request(
                "PUT",
                &format!("{location}{sep}digest={digest}"),
                Some(BCRYPT_USER),
            )
            .body(body::full(data))
            .unwrap(),
        )
        .await;
    assert_eq!(pushed.status, 201, "{}", pushed.text());
    digest
}

/// Open `streams` downloads of `digest` at once; each reads [`READ_FIRST`] bytes and
/// then holds its stream unread until all are open and the server's peak RSS has
/// settled. Then `whole` of them read on to the end (checking the SHA-256) and the
/// others are dropped mid-stream (cancelled).
async fn hold(
    server: &Server,
    ca: &std::path::Path,
    proto: Proto,
    streams: usize,
    whole: usize,
    digest: &str,
) -> Figures {
    let base = format!("https://127.0.0.1:{}", server.port);
    let pid = server.child.id();
    let clients: Vec<Arc<Client>> = match proto {
        Proto::H2 { connections } => (0..connections)
            .map(|_| Arc::new(Client::h2_windows(ca, CLIENT_STREAM_WINDOW, 1 << 30)))
            .collect(),
        // hyper's pool opens a connection per request in flight.
        Proto::H1 => vec![Arc::new(Client::h1(ca))],
    };
    reset_peak(pid);
    let before = status_kib(pid, "VmRSS:");
    let held = Arc::new(tokio::sync::Semaphore::new(0));
    let (release, released) = tokio::sync::watch::channel(false);
    let mut tasks = Vec::new();
    for i in 0..streams {
        let c = clients[i % clients.len()].clone();
        let url = format!("{base}/v2/big/blobs/{digest}");
        let (held, mut released) = (held.clone(), released.clone());
        tasks.push(tokio::spawn(async move {
            let resp = c
                .send_streaming(
                    request("GET", &url, Some(BCRYPT_USER))
                        .body(body::empty())
                        .unwrap(),
                )
                .await
                .expect("GET");
            assert_eq!(resp.status(), 200);
            let mut b = resp.into_body();
            let mut hash = sha2::Sha256::new();
            let mut n = 0;
            while n < READ_FIRST {
                let f = b.frame().await.expect("body ended early").unwrap();
                if let Some(d) = f.data_ref() {
                    hash.update(d);
                    n += d.len();
                }
            }
            held.add_permits(1);
            released.wait_for(|r| *r).await.unwrap();
            if i >= whole {
                return None;
            }
            while let Some(f) = b.frame().await {
                if let Some(d) = f.unwrap().data_ref() {
                    hash.update(d);
                    n += d.len();
                }
            }
            Some((n, format!("sha256:{}", hex::encode(hash.finalize()))))
        }));
    }
    // Every stream has read its first bytes (bounded: a stuck download fails the
    // test instead of hanging it).
    let all = u32::try_from(streams).unwrap();
    tokio::time::timeout(Duration::from_secs(120), held.acquire_many(all))
        .await
        .expect("all downloads under way within 120 s")
        .unwrap()
        .forget();
    // The server fills whatever it buffers for each held stream; wait until the peak
    // stops rising (bounded).
    let mut peak = status_kib(pid, "VmHWM:");
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(750)).await;
        let now = status_kib(pid, "VmHWM:");
        if now == peak {
            break;
        }
        peak = now;
    }
    eprintln!("server threads while held: {}", status_kib(pid, "Threads:"));
    release.send(true).unwrap();
    for t in tasks {
        if let Some((n, got)) = t.await.unwrap() {
            assert_eq!(n, BLOB, "whole blob read");
            assert_eq!(got, digest, "blob intact");
        }
    }
    let peak = status_kib(pid, "VmHWM:").max(peak);
    Figures { before, peak }
}

fn open_files(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

/// After the downloads were cancelled the server let go of them: their blob files and
/// connections are closed (bounded wait), only the clients' kept-alive connections stay.
async fn freed(server: &Server, files_before: usize, kept: usize) {
    let pid = server.child.id();
    let mut open = open_files(pid);
    for _ in 0..60 {
        if open <= files_before + kept {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        open = open_files(pid);
    }
    assert!(
        open <= files_before + kept,
        "{open} files open after the downloads were cancelled, {files_before} before them and {kept} kept-alive connections"
    );
}

async fn check(proto: Proto, streams: usize) {
    let work = tempfile::tempdir().unwrap();
    let server = Server::start(
        &work.path().join("p"),
        &Options::registry().max_connections_per_address(2 * streams as u64),
    );
    let ca = server.dir.join("certs/ca.crt");
    let base = format!("https://127.0.0.1:{}", server.port);
    let digest = push(&ca, &base, blob(BLOB)).await;
    let files_before = open_files(server.child.id());
    let f = hold(&server, &ca, proto, streams, 1, &digest).await;
    let per_stream = f.peak.saturating_sub(f.before) / streams as u64;
    eprintln!(
        "{proto:?}: RSS {} MiB before, peak {} MiB with {streams} downloads of {} MiB held: {per_stream} KiB per stream",
        f.before / 1024,
        f.peak / 1024,
        BLOB >> 20
    );
    let kept = match proto {
        Proto::H2 { connections } => connections,
        Proto::H1 => 1,
    };
    freed(&server, files_before, kept).await;
    assert!(
        f.peak - f.before <= streams as u64 * GOAL_PER_STREAM_KIB,
        "{proto:?}: peak RSS rose {} KiB with {streams} concurrent downloads ({per_stream} KiB per stream, goal {GOAL_PER_STREAM_KIB})",
        f.peak - f.before
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hundred_concurrent_http2_downloads_of_100_mib_cost_at_most_128_kib_each() {
    check(Proto::H2 { connections: 3 }, 300).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hundred_concurrent_http1_downloads_of_100_mib_cost_at_most_128_kib_each() {
    check(Proto::H1, 300).await;
}

/// The measurement behind bench/results/memory.md, not a check: `MEMORY_STREAMS`
/// (default 300), `MEMORY_PROTO` (`h2` or `h1`), `MEMORY_CONNECTIONS` (h2, default 4),
/// `MEMORY_UPSTREAM=1` for the proxy path (a Debian docker-registry behind Portcullis).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement for bench/results/memory.md; run by hand"]
async fn measure() {
    let env = |k: &str, d: &str| std::env::var(k).unwrap_or_else(|_| d.to_string());
    let streams: usize = env("MEMORY_STREAMS", "300").parse().unwrap();
    let proto = match env("MEMORY_PROTO", "h2").as_str() {
        "h1" => Proto::H1,
        _ => Proto::H2 {
            connections: env("MEMORY_CONNECTIONS", "4").parse().unwrap(),
        },
    };
    let work = tempfile::tempdir().unwrap();
    let upstream = (env("MEMORY_UPSTREAM", "0") == "1").then(DockerRegistry::start);
    let opts = match &upstream {
        Some(r) => Options::upstream(format!("http://127.0.0.1:{}", r.port)),
        None => Options::registry(),
    };
    let server = Server::start(
        &work.path().join("p"),
        &opts.max_connections_per_address(2 * streams as u64 + 8),
    );
    let ca = server.dir.join("certs/ca.crt");
    let base = format!("https://127.0.0.1:{}", server.port);
    let digest = push(&ca, &base, blob(BLOB)).await;
    let f = hold(&server, &ca, proto, streams, 0, &digest).await;
    let rise = f.peak.saturating_sub(f.before);
    println!(
        "MEASURE mode={} proto={proto:?} streams={streams} before_kib={} peak_kib={} rise_kib={rise} per_stream_kib={}",
        if upstream.is_some() { "proxy" } else { "registry" },
        f.before,
        f.peak,
        rise / streams as u64
    );
}
