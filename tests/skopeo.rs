//! skopeo, the real client, pushing a multi-layer image (one layer of 100 MiB random
//! bytes) through the Portcullis binary to Debian's docker-registry and pulling it
//! back: digests compared, and the proxy's peak memory measured while it streams.

mod support;

use support::oci::*;
use support::*;

const BIG: usize = 100 << 20;

#[test]
fn skopeo_push_and_pull_a_multi_layer_image_through_portcullis() {
    let reg = DockerRegistry::start();
    let work = tempfile::tempdir().unwrap();
    let server = Server::start(
        &work.path().join("portcullis"),
        &Options::upstream(reg.url()),
    );
    let img = image(&work.path().join("src"), &[10 << 10, BIG, 1 << 20]);

    let rss_before = server.peak_rss_kib();
    server.push(&img, "test/big:v1", false);
    let back = work.path().join("pulled");
    server.pull("test/big:v1", &back, false);
    let rss_after = server.peak_rss_kib();
    assert_same_image(&back, &img);

    // The registry itself holds the 100 MiB layer byte for byte.
    let big = &img.blobs[1];
    let stored = reg.dir.path().join(format!(
        "data/docker/registry/v2/blobs/sha256/{}/{big}/data",
        &big[..2]
    ));
    assert_eq!(sha256_file(&stored), *big);

    // Streaming: the proxy moved > 200 MiB (push + pull) without its memory following.
    eprintln!(
        "portcullis peak RSS: {rss_before} KiB before, {rss_after} KiB after pushing and pulling {} MiB",
        (2 * BIG) >> 20
    );
    assert!(
        rss_after < 48 * 1024,
        "peak RSS {rss_after} KiB: bodies must stream, not buffer"
    );
    assert!(
        rss_after - rss_before < 24 * 1024,
        "memory grew by {} KiB with a 100 MiB layer",
        rss_after - rss_before
    );
}
