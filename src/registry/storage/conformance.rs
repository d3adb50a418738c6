//! The storage conformance suite (distribution's `storage/driver/testsuites`): one
//! set of checks, generic over the seam, that every backend must pass unchanged
//! (CONVENTIONS.md 15). A backend's tests call [`run`] with a factory giving a fresh,
//! empty store (and whatever must live as long as it, such as a temporary folder).
//! It panics on the first failed check, naming it.

use super::{ErrorKind, Segment, Storage};
use bytes::Bytes;
use futures_util::StreamExt;
use sha2::Digest as _;
use std::future::Future;
use std::sync::Arc;

mod listing;
use listing::{lists_are_sorted_and_page, pages_follow_name_order_not_key_order};

/// The largest chunk a streamed get may yield: a download holds a few at a time,
/// so this bounds the memory of every blob GET.
pub const MAX_STREAM_CHUNK: usize = 1 << 20;

/// Concurrent contenders in the race checks.
const RACERS: usize = 16;

/// Run one check on a fresh store from `$fresh` (kept alive with its guard).
macro_rules! check {
    ($fresh:ident, $f:ident) => {{
        let (s, _guard) = $fresh().await;
        $f(Arc::new(s)).await;
    }};
}

/// Run every check, each on a fresh store from `fresh`.
pub async fn run<S, G, F, Fut>(fresh: F)
where
    S: Storage,
    G: Send + 'static,
    F: Fn() -> Fut,
    Fut: Future<Output = (S, G)>,
{
    check!(fresh, put_if_absent_has_exactly_one_winner);
    check!(fresh, many_appends_at_one_offset_have_one_winner);
    run_sequential(fresh).await;
}

/// Every check but the two where many tasks create one key at the same instant: for
/// a store whose create-only write is only as atomic as the server under test makes it
/// (see tests/storage_s3.rs). Losers that come after the winner are still checked.
pub async fn run_sequential<S, G, F, Fut>(fresh: F)
where
    S: Storage,
    G: Send + 'static,
    F: Fn() -> Fut,
    Fut: Future<Output = (S, G)>,
{
    check!(fresh, objects_are_written_and_read_back);
    check!(fresh, ranges_are_served);
    check!(fresh, lists_are_sorted_and_page);
    check!(fresh, pages_follow_name_order_not_key_order);
    check!(fresh, deletes_objects_and_prefixes);
    check!(fresh, copies);
    check!(fresh, sessions_append_commit_and_compose);
    check!(fresh, two_appends_at_one_offset_have_one_winner);
    check!(fresh, a_dropped_segment_leaves_its_offset_to_the_next);
    check!(fresh, concurrent_sessions_stay_apart);
    check!(fresh, aborts_leave_nothing_behind);
    check!(fresh, large_objects_stream_in_bounded_chunks);
    check!(fresh, uneven_segments_compose_in_order);
    check!(fresh, storage_level_operations);
}

async fn all<S: Storage>(s: &S, key: &str, range: Option<(u64, u64)>) -> Option<Vec<u8>> {
    let mut stream = s.get(key, range).await.expect("get")?;
    let mut out = Vec::new();
    while let Some(c) = stream.next().await {
        let c = c.expect("stream chunk");
        assert!(c.len() <= MAX_STREAM_CHUNK, "a chunk of {} bytes", c.len());
        out.extend_from_slice(&c);
    }
    Some(out)
}

async fn session_bytes<S: Storage>(s: &S, dir: &str) -> Vec<u8> {
    let size = s.session(dir).await.expect("session").size;
    let mut stream = s.read_session(dir, size).await.expect("read_session");
    let mut out = Vec::new();
    while let Some(c) = stream.next().await {
        out.extend_from_slice(&c.expect("session chunk"));
    }
    out
}

/// Append one segment with `data` at `offset`; the new size, or the error kind.
async fn segment<S: Storage>(s: &S, dir: &str, offset: u64, data: &[u8]) -> Result<u64, ErrorKind> {
    let mut seg = s.append(dir, offset).await.map_err(|e| e.kind)?;
    for c in data.chunks(7000) {
        seg.write(Bytes::copy_from_slice(c))
            .await
            .map_err(|e| e.kind)?;
    }
    seg.commit(Bytes::from(format!("state@{}", offset + data.len() as u64)))
        .await
        .map_err(|e| e.kind)
}

fn pattern(n: usize, seed: u8) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8 ^ seed).collect()
}

async fn objects_are_written_and_read_back<S: Storage>(s: Arc<S>) {
    assert!(
        s.read("o/a").await.unwrap().is_none(),
        "absent reads as None"
    );
    assert!(
        s.stat("o/a").await.unwrap().is_none(),
        "absent stats as None"
    );
    assert!(all(&*s, "o/a", None).await.is_none(), "absent gets as None");
    // Flags are objects too, replaced whole.
    s.put_flag("o/f/1", Bytes::from_static(b"1")).await.unwrap();
    s.put_flag("o/f/1", Bytes::from_static(b"22"))
        .await
        .unwrap();
    assert_eq!(s.read("o/f/1").await.unwrap().unwrap(), "22");
    s.put_flag("o/f/2/e", Bytes::new()).await.unwrap();
    s.put_flag("o/f/2/e", Bytes::new()).await.unwrap();
    assert_eq!(s.stat("o/f/2/e").await.unwrap().map(|m| m.size), Some(0));
    s.delete_prefix("o/f").await.unwrap();
    s.put("o/a", Bytes::from_static(b"first")).await.unwrap();
    s.put("o/a", Bytes::from_static(b"second")).await.unwrap();
    assert_eq!(
        s.read("o/a").await.unwrap().unwrap(),
        "second",
        "put replaces"
    );
    let m = s.stat("o/a").await.unwrap().unwrap();
    assert_eq!(m.size, 6);
    assert!(m.modified.is_some(), "stat knows the time");
    s.put("o/empty", Bytes::new()).await.unwrap();
    assert_eq!(s.stat("o/empty").await.unwrap().unwrap().size, 0);
    assert_eq!(all(&*s, "o/empty", None).await.unwrap(), b"");
    let e = s
        .put_if_absent("o/a", Bytes::from_static(b"third"))
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::PreconditionFailed, "{e}");
    assert_eq!(
        s.read("o/a").await.unwrap().unwrap(),
        "second",
        "a refused create changes nothing"
    );
}

async fn put_if_absent_has_exactly_one_winner<S: Storage>(s: Arc<S>) {
    let start = Arc::new(tokio::sync::Barrier::new(RACERS));
    let tasks: Vec<_> = (0..RACERS)
        .map(|i| {
            let (s, start) = (s.clone(), start.clone());
            tokio::spawn(async move {
                start.wait().await;
                let r = s
                    .put_if_absent("race/key", Bytes::from(format!("racer {i}")))
                    .await;
                (i, r.map_err(|e| e.kind))
            })
        })
        .collect();
    let mut winners = Vec::new();
    for t in tasks {
        match t.await.unwrap() {
            (i, Ok(())) => winners.push(i),
            (_, Err(k)) => assert_eq!(k, ErrorKind::PreconditionFailed),
        }
    }
    assert_eq!(winners.len(), 1, "winners: {winners:?}");
    assert_eq!(
        s.read("race/key").await.unwrap().unwrap(),
        format!("racer {}", winners[0]),
        "the winner's content is stored"
    );
}

async fn ranges_are_served<S: Storage>(s: Arc<S>) {
    let data = pattern(300_000, 1);
    s.put("r/o", Bytes::from(data.clone())).await.unwrap();
    assert_eq!(all(&*s, "r/o", None).await.unwrap(), data, "whole");
    let n = data.len() as u64;
    for (a, b) in [(0, 10), (1000, 250_000), (n - 7, n), (n - 1, n)] {
        assert_eq!(
            all(&*s, "r/o", Some((a, b))).await.unwrap(),
            &data[a as usize..b as usize],
            "range {a}-{b}"
        );
    }
    // Past the end: what there is, then nothing.
    assert_eq!(
        all(&*s, "r/o", Some((n - 5, n + 100))).await.unwrap(),
        &data[data.len() - 5..]
    );
    assert_eq!(all(&*s, "r/o", Some((n + 10, n + 20))).await.unwrap(), b"");
}

async fn deletes_objects_and_prefixes<S: Storage>(s: Arc<S>) {
    for k in ["d/a/1", "d/a/2/3", "d/ab", "d/b"] {
        s.put(k, Bytes::from_static(b".")).await.unwrap();
    }
    s.delete("d/b").await.unwrap();
    s.delete("d/b").await.unwrap();
    s.delete("d/never").await.unwrap();
    assert!(s.stat("d/b").await.unwrap().is_none(), "object deleted");
    s.delete_prefix("d/a").await.unwrap();
    s.delete_prefix("d/a").await.unwrap();
    assert!(
        s.list_all("d/a").await.unwrap().is_empty(),
        "prefix emptied"
    );
    assert!(s.stat("d/a/2/3").await.unwrap().is_none());
    assert_eq!(
        s.list_all("d").await.unwrap(),
        ["ab"],
        "a sibling sharing the prefix stays"
    );
    // A folder holding one key (a blob's data, a link) goes with the key.
    for k in ["f/x/data", "f/xy/data"] {
        s.put(k, Bytes::from_static(b".")).await.unwrap();
    }
    s.delete_folder_of("f/x/data").await.unwrap();
    s.delete_folder_of("f/x/data").await.unwrap();
    assert!(s.stat("f/x/data").await.unwrap().is_none());
    assert_eq!(
        s.list_all("f").await.unwrap(),
        ["xy"],
        "the folder is gone, not its sibling"
    );
}

async fn copies<S: Storage>(s: Arc<S>) {
    s.put("c/from", Bytes::from_static(b"copied"))
        .await
        .unwrap();
    s.put("c/to/x", Bytes::from_static(b"old")).await.unwrap();
    s.copy("c/from", "c/to/x").await.unwrap();
    s.copy("c/from", "c/new/y").await.unwrap();
    assert_eq!(s.read("c/to/x").await.unwrap().unwrap(), "copied");
    assert_eq!(s.read("c/new/y").await.unwrap().unwrap(), "copied");
    assert_eq!(
        s.read("c/from").await.unwrap().unwrap(),
        "copied",
        "the source stays"
    );
    assert!(
        s.copy("c/none", "c/z").await.is_err(),
        "copying nothing fails"
    );
}

async fn sessions_append_commit_and_compose<S: Storage>(s: Arc<S>) {
    let dir = "up/one";
    s.put(&format!("{dir}/startedat"), Bytes::from_static(b"now"))
        .await
        .unwrap();
    assert_eq!(
        s.session(dir).await.unwrap().size,
        0,
        "a new session is empty"
    );
    let parts = [pattern(100_000, 2), pattern(1, 3), pattern(70_001, 4)];
    let mut size = 0u64;
    for p in &parts {
        size = segment(&*s, dir, size, p).await.unwrap();
    }
    let whole = parts.concat();
    let st = s.session(dir).await.unwrap();
    assert_eq!(st.size, whole.len() as u64);
    assert_eq!(st.state, format!("state@{size}"), "the last commit's state");
    assert_eq!(session_bytes(&*s, dir).await, whole);
    // A segment not at the session's end is refused, and changes nothing.
    for off in [0, size - 1, size + 1] {
        assert_eq!(
            segment(&*s, dir, off, b"late").await,
            Err(ErrorKind::PreconditionFailed)
        );
    }
    assert_eq!(s.session(dir).await.unwrap().size, size);
    // An empty segment commits nothing.
    let seg = s.append(dir, size).await.unwrap();
    assert_eq!(seg.commit(Bytes::new()).await.unwrap(), size);
    assert_eq!(s.session(dir).await.unwrap().size, size);

    s.compose(dir, size, "blobs/one").await.unwrap();
    assert_eq!(all(&*s, "blobs/one", None).await.unwrap(), whole);
    // Already there with this size: success, and the blob is untouched.
    s.abort(dir).await.unwrap();
    let again = "up/again";
    let n = segment(&*s, again, 0, &whole).await.unwrap();
    s.compose(again, n, "blobs/one").await.unwrap();
    assert_eq!(all(&*s, "blobs/one", None).await.unwrap(), whole);
    s.abort(again).await.unwrap();
    // An empty upload composes into an empty object.
    s.compose("up/empty", 0, "blobs/empty").await.unwrap();
    assert_eq!(s.stat("blobs/empty").await.unwrap().unwrap().size, 0);
    s.abort("up/empty").await.unwrap();
    assert!(
        s.list_all("up").await.unwrap().is_empty(),
        "nothing left: {:?}",
        s.list_all("up").await
    );
}

async fn two_appends_at_one_offset_have_one_winner<S: Storage>(s: Arc<S>) {
    let dir = "up/race";
    let first = segment(&*s, dir, 0, b"head:").await.unwrap();
    // Interleaved in one task: both begin before either commits.
    let a = s.append(dir, first).await;
    let b = s.append(dir, first).await;
    let mut results = Vec::new();
    for (seg, data) in [(a, b"aaaa".as_slice()), (b, b"bbbbbbbb".as_slice())] {
        let r = match seg {
            Err(e) => Err(e.kind),
            Ok(mut seg) => {
                seg.write(Bytes::copy_from_slice(data)).await.unwrap();
                seg.commit(Bytes::new()).await.map_err(|e| e.kind)
            }
        };
        results.push((r, data));
    }
    let won: Vec<_> = results.iter().filter(|(r, _)| r.is_ok()).collect();
    assert_eq!(won.len(), 1, "{results:?}");
    for (r, _) in &results {
        if let Err(k) = r {
            assert_eq!(*k, ErrorKind::PreconditionFailed);
        }
    }
    let expect = [b"head:".as_slice(), won[0].1].concat();
    assert_eq!(
        session_bytes(&*s, dir).await,
        expect,
        "only the winner's bytes"
    );
    s.abort(dir).await.unwrap();
    assert!(
        s.list_all(dir).await.unwrap().is_empty(),
        "the loser left nothing"
    );
}

async fn many_appends_at_one_offset_have_one_winner<S: Storage>(s: Arc<S>) {
    let dir = "up/race";
    let expect = b"head:".to_vec();
    let at = segment(&*s, dir, 0, &expect).await.unwrap();
    // Many tasks at once, at the same offset.
    let start = Arc::new(tokio::sync::Barrier::new(RACERS));
    let tasks: Vec<_> = (0..RACERS)
        .map(|i| {
            let (s, start) = (s.clone(), start.clone());
            tokio::spawn(async move {
                start.wait().await;
                let data = pattern(20_000 + i, i as u8);
                (segment(&*s, dir, at, &data).await, data)
            })
        })
        .collect();
    let mut winners = Vec::new();
    for t in tasks {
        match t.await.unwrap() {
            (Ok(n), data) => winners.push((n, data)),
            (Err(k), _) => assert_eq!(k, ErrorKind::PreconditionFailed),
        }
    }
    assert_eq!(winners.len(), 1, "{} winners", winners.len());
    let (n, data) = winners.pop().unwrap();
    let expect = [expect, data].concat();
    assert_eq!(n, expect.len() as u64);
    assert_eq!(s.session(dir).await.unwrap().size, n);
    assert_eq!(
        session_bytes(&*s, dir).await,
        expect,
        "no loser's byte in the session"
    );
    s.compose(dir, n, "blobs/race").await.unwrap();
    assert_eq!(all(&*s, "blobs/race", None).await.unwrap(), expect);
    s.abort(dir).await.unwrap();
    assert!(
        s.list_all(dir).await.unwrap().is_empty(),
        "the losers left nothing"
    );
}

/// A request cut off mid-body drops its segment without commit or abort (the handler's
/// future is dropped): its bytes are not part of the session, and the next append at
/// the same offset takes the offset over and is the only one in the session.
async fn a_dropped_segment_leaves_its_offset_to_the_next<S: Storage>(s: Arc<S>) {
    let dir = "up/dropped";
    let first = segment(&*s, dir, 0, b"head:").await.unwrap();
    {
        let mut seg = s.append(dir, first).await.unwrap();
        seg.write(Bytes::from(pattern(3 << 20, 7))).await.unwrap();
        seg.write(Bytes::from_static(b"tail of a request that never ends"))
            .await
            .unwrap();
        // Dropped here: neither committed nor aborted.
    }
    assert_eq!(s.session(dir).await.unwrap().size, first);
    let n = segment(&*s, dir, first, b"retry").await.unwrap();
    assert_eq!(
        session_bytes(&*s, dir).await,
        b"head:retry",
        "only the retry's bytes follow the committed ones"
    );
    s.compose(dir, n, "blobs/dropped").await.unwrap();
    assert_eq!(
        all(&*s, "blobs/dropped", None).await.unwrap(),
        b"head:retry"
    );
    s.abort(dir).await.unwrap();
}

async fn concurrent_sessions_stay_apart<S: Storage>(s: Arc<S>) {
    let tasks: Vec<_> = (0..8u8)
        .map(|i| {
            let s = s.clone();
            tokio::spawn(async move {
                let dir = format!("up/s{i}");
                let data = pattern(50_000 + i as usize, i);
                let mut size = 0;
                for c in data.chunks(9_999) {
                    size = segment(&*s, &dir, size, c).await.unwrap();
                }
                let key = format!("blobs/s{i}");
                s.compose(&dir, size, &key).await.unwrap();
                s.abort(&dir).await.unwrap();
                (key, data)
            })
        })
        .collect();
    for t in tasks {
        let (key, data) = t.await.unwrap();
        assert_eq!(all(&*s, &key, None).await.unwrap(), data, "{key}");
    }
    assert!(s.list_all("up").await.unwrap().is_empty());
}

async fn aborts_leave_nothing_behind<S: Storage>(s: Arc<S>) {
    let dir = "up/gone";
    let n = segment(&*s, dir, 0, b"kept").await.unwrap();
    let mut seg = s.append(dir, n).await.unwrap();
    seg.write(Bytes::from(pattern(3 << 20, 9))).await.unwrap();
    seg.abort().await.unwrap();
    assert_eq!(
        s.session(dir).await.unwrap().size,
        n,
        "an aborted segment is not part of it"
    );
    assert_eq!(session_bytes(&*s, dir).await, b"kept");
    // The next segment goes where the aborted one began.
    assert_eq!(segment(&*s, dir, n, b"!").await, Ok(n + 1));
    s.abort(dir).await.unwrap();
    assert_eq!(s.session(dir).await.unwrap().size, 0);
    assert!(
        s.list_all("up").await.unwrap().is_empty(),
        "{:?}",
        s.list_all("up").await
    );
}

async fn large_objects_stream_in_bounded_chunks<S: Storage>(s: Arc<S>) {
    const SIZE: usize = 64 << 20;
    const PIECE: usize = 1 << 20;
    let dir = "up/large";
    let mut h = sha2::Sha256::new();
    let mut size = 0u64;
    // Eight segments of 8 MiB, each written 1 MiB at a time: the writer never holds more.
    for seg_no in 0..8u8 {
        let mut seg = s.append(dir, size).await.unwrap();
        for piece in 0..8u8 {
            let p = pattern(PIECE, seg_no.wrapping_mul(8).wrapping_add(piece));
            h.update(&p);
            seg.write(Bytes::from(p)).await.unwrap();
        }
        size = seg.commit(Bytes::new()).await.unwrap();
    }
    assert_eq!(size, SIZE as u64);
    s.compose(dir, size, "blobs/large").await.unwrap();
    s.abort(dir).await.unwrap();
    assert_eq!(
        s.stat("blobs/large").await.unwrap().unwrap().size,
        SIZE as u64
    );
    let mut stream = s.get("blobs/large", None).await.unwrap().unwrap();
    let mut back = sha2::Sha256::new();
    let mut got = 0usize;
    while let Some(c) = stream.next().await {
        let c = c.unwrap();
        assert!(c.len() <= MAX_STREAM_CHUNK, "a chunk of {} bytes", c.len());
        got += c.len();
        back.update(&c);
    }
    assert_eq!(got, SIZE);
    assert_eq!(
        back.finalize(),
        h.finalize(),
        "the large object reads back the same"
    );
    let mid = all(
        &*s,
        "blobs/large",
        Some((SIZE as u64 / 2, SIZE as u64 / 2 + 3)),
    )
    .await;
    assert_eq!(mid.unwrap().len(), 3);
}

/// Segments of sizes that straddle any multipart part size (the object store copies
/// whole parts server-side and streams the rest): the composed blob is the segments
/// in order, byte for byte.
async fn uneven_segments_compose_in_order<S: Storage>(s: Arc<S>) {
    let dir = "up/uneven";
    let sizes = [3 << 20, (20 << 20) + 1, (5 << 20) - 3, 1, 7 << 20];
    let mut whole = Vec::new();
    let mut size = 0u64;
    for (i, n) in sizes.into_iter().enumerate() {
        let p = pattern(n, 40 + i as u8);
        size = segment(&*s, dir, size, &p).await.unwrap();
        whole.extend_from_slice(&p);
    }
    s.compose(dir, size, "blobs/uneven").await.unwrap();
    s.abort(dir).await.unwrap();
    let got = all(&*s, "blobs/uneven", None).await.unwrap();
    assert_eq!(got.len(), whole.len());
    assert!(
        got == whole,
        "the composed blob differs from its segments in order"
    );
}

async fn storage_level_operations<S: Storage>(s: Arc<S>) {
    let a = s.secret().await.unwrap();
    assert!(!a.is_empty());
    assert_eq!(s.secret().await.unwrap(), a, "the secret is created once");
    assert!(s.ready().await.is_ok());
    assert!(!s.describe().is_empty());
}
