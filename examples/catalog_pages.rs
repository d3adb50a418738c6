//! What a `_catalog?n=100` page costs at 10,000 repositories: the first page, one in
//! the middle and the last, each timed (median of several) through the library's
//! catalog walk, with the listings it made and the names they returned. Nine in ten
//! repositories are flat (`app-00042`, `lib-17`), one in ten nested three deep
//! (`team3/a/b40`); `lib-N/x` puts sub-repositories under a repository.
//!
//! Run: `cargo run --release --example catalog_pages -- fs [TOTAL]` (a temporary
//! folder), or `-- s3 [TOTAL]` (an `s3s-fs` from `$S3S_FS` or `~/.cargo/bin/s3s-fs`
//! on a free port of 127.0.0.1, filled through the object-store backend).

use bytes::Bytes;
use portcullis::config::{CreateOnly, Credentials, ObjectStore, StorageKind};
use portcullis::registry::paths;
use portcullis::registry::storage::counting::Counting;
use portcullis::registry::storage::fs::Fs;
use portcullis::registry::storage::object::Object;
use portcullis::registry::storage::{concurrently, Page, Storage};
use portcullis::registry::store;
use std::time::{Duration, Instant};

const N: usize = 100;
const RUNS: usize = 7;

fn names(total: usize) -> Vec<String> {
    (0..total)
        .map(|i| match i % 10 {
            0 => format!("team{}/a/b{i}", i % 7),
            1 => format!("lib-{i}/x"),
            2 => format!("lib-{i}"),
            _ => format!("app-{i:05}"),
        })
        .collect()
}

fn link_key(name: &str) -> String {
    format!(
        "{}/_manifests/tags/latest/current/link",
        paths::repository(name)
    )
}

async fn measure<S: Storage>(label: &str, s: &Counting<S>, total: usize) {
    let all = store::list_repositories(s).await.expect("list");
    assert_eq!(all.len(), total, "repositories stored");
    // The catalog's own order (component by component), which `last` follows.
    let mut order = all.clone();
    order.sort_by(|a, b| store::repository_order(a, b));
    for (which, last) in [
        ("first", None),
        ("middle", Some(order[total / 2].clone())),
        ("last", Some(order[total - N / 2].clone())),
    ] {
        let mut times: Vec<Duration> = Vec::new();
        let mut counts = (0, 0);
        for _ in 0..RUNS {
            s.reset();
            let t = Instant::now();
            let (page, _) = store::repositories_page(s, N, last.as_deref(), None)
                .await
                .expect("page");
            times.push(t.elapsed());
            counts = s.counts();
            assert!(!page.is_empty());
        }
        times.sort();
        println!(
            "| {label} | {total} | {which} | {:.2} ms | {} | {} |",
            times[RUNS / 2].as_secs_f64() * 1e3,
            counts.0,
            counts.1
        );
    }
    // What part of a page is the root folder's one listing (on a filesystem a pass
    // over all its entries, however small the page).
    let middle = order[total / 2]
        .split('/')
        .next()
        .unwrap_or_default()
        .to_string();
    let mut times: Vec<Duration> = Vec::new();
    for _ in 0..RUNS {
        let page = Page {
            start_after: Some(&middle),
            limit: N + 1,
        };
        let t = Instant::now();
        s.list(&paths::repositories(), page).await.expect("list");
        times.push(t.elapsed());
    }
    times.sort();
    println!(
        "| {label} | {total} | root folder alone (one list of {}) | {:.2} ms | 1 | {} |",
        N + 1,
        times[RUNS / 2].as_secs_f64() * 1e3,
        N + 1
    );
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let kind = args.get(1).map(String::as_str).unwrap_or("fs");
    let total: usize = args.get(2).and_then(|t| t.parse().ok()).unwrap_or(10_000);
    let names = names(total);
    println!("| backend | repositories | page (n={N}) | median time | list calls | names read |");
    println!("|---|---|---|---|---|---|");
    match kind {
        "fs" => {
            let dir = tempfile::tempdir().expect("tempdir");
            // Written directly (a push's fsyncs add nothing to what is measured).
            for n in &names {
                let key = dir.path().join(link_key(n));
                std::fs::create_dir_all(key.parent().expect("parent")).expect("mkdir");
                std::fs::write(&key, b"sha256:00").expect("write");
                let repo = dir.path().join(paths::repository(n));
                std::fs::create_dir_all(repo.join("_layers/sha256")).expect("mkdir");
                std::fs::create_dir_all(repo.join("_uploads")).expect("mkdir");
            }
            measure("fs", &Counting::new(Fs::new(dir.path())), total).await;
        }
        "s3" => {
            let bin = std::env::var("S3S_FS").unwrap_or_else(|_| {
                format!(
                    "{}/.cargo/bin/s3s-fs",
                    std::env::var("HOME").unwrap_or_default()
                )
            });
            let dir = tempfile::tempdir().expect("tempdir");
            std::fs::create_dir(dir.path().join("registry")).expect("bucket");
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("free port")
                .port();
            let mut child = std::process::Command::new(bin)
                .args(["--host", "127.0.0.1", "--port", &port.to_string()])
                .args(["--access-key", "BENCHKEY", "--secret-key", "benchsecret"])
                .arg(dir.path())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("start s3s-fs");
            for _ in 0..100 {
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let cfg = ObjectStore {
                bucket: "registry".into(),
                region: "us-east-1".into(),
                endpoint: Some(format!("http://127.0.0.1:{port}")),
                path_style: true,
                prefix: "b".into(),
                credentials: Credentials {
                    access_key_id: "BENCHKEY".into(),
                    secret_access_key: "benchsecret".into(),
                    session_token: None,
                },
                redirect: false,
                redirect_endpoint: None,
                create_only: Some(CreateOnly::Conditional),
            };
            let s = Object::new(StorageKind::S3, &cfg).expect("object store");
            let keys: Vec<String> = names.iter().map(|n| link_key(n)).collect();
            let puts = keys
                .iter()
                .map(|k| s.put_flag(k, Bytes::from_static(b"sha256:00")))
                .collect();
            concurrently(puts, 32).await.expect("fill");
            measure("s3s-fs", &Counting::new(s), total).await;
            let _ = child.kill();
            let _ = child.wait();
        }
        other => eprintln!("unknown backend {other}: fs or s3"),
    }
}
