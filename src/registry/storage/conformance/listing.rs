//! The conformance checks of listings: sorted, paged, in name order on every backend.

use super::super::{Page, Storage};
use bytes::Bytes;
use std::sync::Arc;

pub(super) async fn lists_are_sorted_and_page<S: Storage>(s: Arc<S>) {
    assert!(
        s.list("l", Page::default()).await.unwrap().names.is_empty(),
        "absent lists empty"
    );
    for k in [
        "l/c", "l/a/x", "l/a-b", "l/a/y/z", "l/b", "l/e", "l/d/1", "lz/no",
    ] {
        s.put(k, Bytes::from_static(b".")).await.unwrap();
    }
    let l = s.list("l", Page::default()).await.unwrap();
    assert_eq!(
        l.names,
        ["a", "a-b", "b", "c", "d", "e"],
        "objects and folders, once each, sorted"
    );
    assert!(!l.truncated);
    let p = s
        .list(
            "l",
            Page {
                start_after: None,
                limit: 2,
            },
        )
        .await
        .unwrap();
    assert_eq!(p.names, ["a", "a-b"]);
    assert!(p.truncated, "more follow");
    let p = s
        .list(
            "l",
            Page {
                start_after: Some("a-b"),
                limit: 2,
            },
        )
        .await
        .unwrap();
    assert_eq!(p.names, ["b", "c"]);
    let p = s
        .list(
            "l",
            Page {
                start_after: Some("c"),
                limit: 2,
            },
        )
        .await
        .unwrap();
    assert_eq!(p.names, ["d", "e"]);
    assert!(!p.truncated, "the last page");
    assert_eq!(
        s.list_all("l").await.unwrap(),
        ["a", "a-b", "b", "c", "d", "e"]
    );
    assert_eq!(s.list_all("l/a").await.unwrap(), ["x", "y"]);
}

/// Pages of any size follow one another in name order, where an object store's key
/// order differs: the folder `a` (key `a/`) comes after `a-1`, `a.x` and `a-b-c`
/// ('-' and '.' sort before '/') but before them as a name.
pub(super) async fn pages_follow_name_order_not_key_order<S: Storage>(s: Arc<S>) {
    let folders = [
        "a", "a-1", "a-2", "a-3", "a.x", "a-b", "a-b-c", "a-b.d", "a0", "a_z", "b", "b-1",
    ];
    for f in folders {
        s.put(&format!("k/{f}/x"), Bytes::from_static(b"."))
            .await
            .unwrap();
    }
    // Objects beside them, one named like a folder's prefix.
    for o in ["a-", "b-0"] {
        s.put(&format!("k/{o}"), Bytes::from_static(b"."))
            .await
            .unwrap();
    }
    let mut all: Vec<&str> = folders.iter().copied().chain(["a-", "b-0"]).collect();
    all.sort_unstable();
    for limit in 1..=4 {
        let mut got: Vec<String> = Vec::new();
        for _ in 0..=all.len() {
            let page = Page {
                start_after: got.last().map(String::as_str),
                limit,
            };
            let l = s.list("k", page).await.unwrap();
            assert!(l.names.len() <= limit, "a page of {limit}: {:?}", l.names);
            got.extend(l.names);
            if !l.truncated {
                break;
            }
        }
        assert_eq!(got, all, "pages of {limit} in name order");
    }
    for (i, a) in all.iter().enumerate() {
        let page = Page {
            start_after: Some(a),
            limit: 3,
        };
        let l = s.list("k", page).await.unwrap();
        let want = &all[i + 1..(i + 4).min(all.len())];
        assert_eq!(l.names, want, "three after {a}");
        assert_eq!(l.truncated, i + 4 < all.len(), "more after {a}");
    }
}
