//! Memory does not grow with blob size or with the number of concurrent downloads
//! beyond a small bound per stream: measured on the real binary (peak RSS, VmHWM).

mod support;

use http_body_util::BodyExt;
use portcullis::body;
use std::sync::Arc;
use support::oci::Server;
use support::*;

const STREAMS: usize = 300;
const CONNECTIONS: usize = 3;
/// Larger than every buffer on the way (read chunk, HTTP/2 send buffer, TLS buffer)
/// many times over, so each stream holds as much as it ever can.
const BLOB: usize = 8 << 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hundred_concurrent_downloads_of_a_large_blob_stay_under_96_mib() {
    let work = tempfile::tempdir().unwrap();
    let server = Server::start(&work.path().join("p"), &Options::registry());
    let ca = server.dir.join("certs/ca.crt");
    let base = format!("https://127.0.0.1:{}", server.port);
    let data: Vec<u8> = (0..BLOB as u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let digest = format!("sha256:{}", sha256_hex(&data));
    let pushed = Client::h1(&ca)
        .send(
            request(
                "POST",
                &format!("{base}/v2/big/blobs/uploads/?digest={digest}"),
                Some(BCRYPT_USER),
            )
            .body(body::full(data))
            .unwrap(),
        )
        .await;
    assert_eq!(pushed.status, 201, "{}", pushed.text());
    let before = server.peak_rss_kib();

    let clients: Vec<Arc<Client>> = (0..CONNECTIONS)
        .map(|_| Arc::new(Client::h2(&ca)))
        .collect();
    let all_started = Arc::new(tokio::sync::Barrier::new(STREAMS));
    let mut tasks = Vec::new();
    for i in 0..STREAMS {
        let c = clients[i % CONNECTIONS].clone();
        let url = format!("{base}/v2/big/blobs/{digest}");
        let all_started = all_started.clone();
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
            // Every stream is open and the server fills whatever it buffers for each
            // one (the client reads nothing yet) before any of them reads on.
            all_started.wait().await;
            let mut b = resp.into_body();
            let mut n = 0;
            while let Some(f) = b.frame().await {
                n += f.unwrap().into_data().map_or(0, |d| d.len());
            }
            n
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), BLOB);
    }
    let peak = server.peak_rss_kib();
    eprintln!(
        "peak RSS: {} MiB before the downloads, {} MiB after {STREAMS} concurrent downloads of {} MiB",
        before / 1024,
        peak / 1024,
        BLOB >> 20
    );
    assert!(
        peak < 96 * 1024,
        "peak RSS {} MiB with {STREAMS} concurrent downloads",
        peak / 1024
    );
}
