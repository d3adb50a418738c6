//! The storage conformance suite against a real S3-compatible server (s3s-fs), in
//! both ways of making a write create-only, plus what only an object store has: the
//! start-up probe, presigned redirects, and credentials kept out of errors.

mod support;

use portcullis::config::{CreateOnly, StorageKind};
use portcullis::registry::storage::object::Object;
use portcullis::registry::storage::{conformance, ErrorKind, Storage};
use support::s3::S3Server;

fn store(s3: &S3Server, prefix: &str, how: Option<CreateOnly>) -> Object {
    let mut o = s3.object_store(prefix);
    o.create_only = how;
    Object::new(StorageKind::S3, &o).unwrap()
}

/// Claims by listing need only read-after-write consistency, which s3s-fs has: the
/// whole suite, races included, holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn claiming_by_listing_passes_the_whole_suite() {
    let s3 = std::sync::Arc::new(S3Server::start());
    let n = std::sync::atomic::AtomicUsize::new(0);
    conformance::run(|| {
        let prefix = format!(
            "listing-{}",
            n.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let s = store(&s3, &prefix, Some(CreateOnly::Listing));
        async move { (s, ()) }
    })
    .await;
}

/// With conditional PUTs. s3s-fs checks `If-None-Match` and then writes, not
/// atomically, so truly simultaneous creators can both pass there (AWS S3, MinIO and
/// OSS decide atomically): the suite runs without its many-racer checks, which the
/// listing claim above covers; a sequential loser is refused here as anywhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conditional_puts_pass_the_suite_but_its_simultaneous_races() {
    let s3 = std::sync::Arc::new(S3Server::start());
    let n = std::sync::atomic::AtomicUsize::new(0);
    conformance::run_sequential(|| {
        let prefix = format!(
            "conditional-{}",
            n.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let s = store(&s3, &prefix, Some(CreateOnly::Conditional));
        async move { (s, ()) }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_probe_finds_conditional_puts_and_leaves_no_key() {
    let s3 = S3Server::start();
    let s = store(&s3, "probe", None);
    assert_eq!(s.create_only(), None);
    assert_eq!(s.prepare().await.unwrap(), CreateOnly::Conditional);
    assert_eq!(s.create_only(), Some(CreateOnly::Conditional));
    assert!(
        s.list_all("").await.unwrap().is_empty(),
        "the probe key was removed"
    );
    // A configured choice wins over the probe.
    let forced = store(&s3, "probe", Some(CreateOnly::Listing));
    assert_eq!(forced.prepare().await.unwrap(), CreateOnly::Listing);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_key_is_a_clear_error_without_the_key() {
    let s3 = S3Server::start();
    let mut o = s3.object_store("x");
    o.credentials.secret_access_key = "WRONGSECRETvalue123".into();
    let s = Object::new(StorageKind::S3, &o).unwrap();
    let e = s.prepare().await.unwrap_err();
    let words = e.words();
    assert_ne!(e.kind, ErrorKind::NotFound, "{words}");
    assert!(words.starts_with("probe portcullis.probe-"), "{words}");
    assert!(!words.contains("WRONGSECRETvalue123"), "{words}");
    assert!(!words.contains(&s3.access_key), "{words}");
    assert!(s.ready().await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_are_presigned_urls_that_serve_the_object() {
    let s3 = S3Server::start();
    let mut o = s3.object_store("r");
    o.redirect = true;
    let s = Object::new(StorageKind::S3, &o).unwrap();
    s.put("a/blob", bytes::Bytes::from_static(b"presigned bytes"))
        .await
        .unwrap();
    let url = s.redirect("a/blob").await.unwrap().unwrap();
    assert!(
        url.starts_with(&format!("{}/{}/r/a/blob?", s3.endpoint, s3.bucket)),
        "{url}"
    );
    assert!(url.contains("X-Amz-Signature="), "{url}");
    assert!(!url.contains(&s3.secret_key));
    let got = reqwest_free_get(&url).await;
    assert_eq!(got, b"presigned bytes");
    // Off by default.
    assert!(store(&s3, "r", None)
        .redirect("a/blob")
        .await
        .unwrap()
        .is_none());
    // Signed for the endpoint clients reach when it is not the one this process uses.
    o.redirect_endpoint = Some("https://s3.public.example:8443".into());
    let public = Object::new(StorageKind::S3, &o).unwrap();
    let url = public.redirect("a/blob").await.unwrap().unwrap();
    assert!(
        url.starts_with(&format!(
            "https://s3.public.example:8443/{}/r/a/blob?",
            s3.bucket
        )),
        "{url}"
    );
}

/// GET a URL with hyper (plain HTTP): the presigned URL needs no other credential.
async fn reqwest_free_get(url: &str) -> Vec<u8> {
    use http_body_util::BodyExt;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Empty<bytes::Bytes>>();
    let r = client.get(url.parse().unwrap()).await.unwrap();
    assert_eq!(r.status(), 200);
    r.into_body().collect().await.unwrap().to_bytes().to_vec()
}
