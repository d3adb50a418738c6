//! `_catalog` pages at scale: a page reads about its own size from the storage (not
//! the whole tree), and pages of any size follow one another exactly, in component
//! order (`a/c` before `a-b`), on the filesystem, in memory and on S3 (s3s-fs).

mod support;

use bytes::Bytes;
use portcullis::config::{CreateOnly, StorageKind};
use portcullis::registry::paths;
use portcullis::registry::storage::counting::Counting;
use portcullis::registry::storage::fs::Fs;
use portcullis::registry::storage::memory::Memory;
use portcullis::registry::storage::object::Object;
use portcullis::registry::storage::Storage;
use portcullis::registry::store::{self, Visibility};

/// Make `name` a repository the way a push does: a tag link under `_manifests`.
async fn add_repository<S: Storage>(s: &S, name: &str) {
    let key = format!(
        "{}/_manifests/tags/latest/current/link",
        paths::repository(name)
    );
    s.put(&key, Bytes::from_static(b"sha256:00")).await.unwrap();
}

/// The order the catalog promises, computed here, not by the code under test:
/// component by component.
fn component_sorted(names: &[&str]) -> Vec<String> {
    let mut v: Vec<Vec<&str>> = names.iter().map(|n| n.split('/').collect()).collect();
    v.sort();
    v.into_iter().map(|c| c.join("/")).collect()
}

/// Every page of `n` after another, following `last` as a client follows `Link`.
async fn walk_pages<S: Storage>(
    s: &S,
    n: usize,
    visible: Option<&dyn Visibility>,
    most: usize,
) -> Vec<String> {
    let mut all = Vec::new();
    let mut last: Option<String> = None;
    for _ in 0..most {
        let (page, more) = store::repositories_page(s, n, last.as_deref(), visible)
            .await
            .unwrap();
        assert!(page.len() <= n, "a page of {} for n={n}", page.len());
        all.extend(page.iter().cloned());
        if !more {
            return all;
        }
        assert_eq!(page.len(), n, "a page before the last one is full");
        last = page.last().cloned();
    }
    panic!("more than {most} pages of {n}");
}

/// Names where bytewise key order and component order disagree (`a-b/` sorts
/// before `a/` as a key, after `a` as a name), nested repositories, a repository
/// inside a repository whose sub-folder sorts before `_manifests`, namespaces that
/// are no repository themselves.
const TRICKY: &[&str] = &[
    "a",
    "a-b",
    "a.b",
    "a/c",
    "a/c-d",
    "a/c/e",
    "a/c.d",
    "a0",
    "a_x",
    "b",
    "b-1",
    "b-2",
    "b-3",
    "b-4",
    "b-5",
    "b-6",
    "b-7",
    "b-8",
    "b-9",
    "b-10",
    "b-11",
    "b.x",
    "b/x",
    "b-1/y",
    "ns/only/leaf",
    "r",
    "r/1",
    "r/2",
    "r/2/3",
    "team/a/b",
    "team/a-b",
    "team/a/b-c",
    "team-a",
    "team.a/x",
    "x/y/z/w",
    "z",
];

/// Only names without a `-`, as an access policy might show.
struct NoDash;

impl Visibility for NoDash {
    fn shows(&self, repository: &str) -> bool {
        !repository.contains('-')
    }
}

async fn pages_concatenate_to_the_sorted_catalog<S: Storage>(s: &S) {
    for name in TRICKY {
        add_repository(s, name).await;
    }
    // Not repositories: a folder with only uploads, and a stray file.
    s.put(
        &format!("{}/_uploads/u1/startedat", paths::repository("up")),
        Bytes::from_static(b"x"),
    )
    .await
    .unwrap();
    let expected = component_sorted(TRICKY);
    for n in [1, 2, 7, 100] {
        assert_eq!(
            walk_pages(s, n, None, TRICKY.len() + 2).await,
            expected,
            "pages of {n}"
        );
    }
    let shown: Vec<String> = expected
        .iter()
        .filter(|r| !r.contains('-'))
        .cloned()
        .collect();
    for n in [1, 7] {
        assert_eq!(
            walk_pages(s, n, Some(&NoDash), TRICKY.len() + 2).await,
            shown,
            "visible pages of {n}"
        );
    }
    // A `last` that is no repository (or no valid name) still starts after it.
    for last in [
        "a-a",
        "a/c/",
        "b-10/zz",
        "team/a/b/c/d",
        "_x",
        "a/../b",
        "zz",
    ] {
        let (page, _) = store::repositories_page(s, 100, Some(last), None)
            .await
            .unwrap();
        let after: Vec<String> = expected
            .iter()
            .filter(|r| r.split('/').cmp(last.split('/')).is_gt())
            .cloned()
            .collect();
        assert_eq!(page, after, "after {last:?}");
    }
    // Other walks: every folder holding `_uploads`.
    assert_eq!(
        store::repositories_with(s, "_uploads").await.unwrap(),
        ["up"]
    );
}

#[tokio::test]
async fn memory_pages_concatenate_to_the_sorted_catalog() {
    pages_concatenate_to_the_sorted_catalog(&Memory::new()).await;
}

#[tokio::test]
async fn fs_pages_concatenate_to_the_sorted_catalog() {
    let dir = tempfile::tempdir().unwrap();
    pages_concatenate_to_the_sorted_catalog(&Fs::new(dir.path())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_pages_concatenate_to_the_sorted_catalog() {
    let s3 = support::s3::S3Server::start();
    let mut o = s3.object_store("cat");
    o.create_only = Some(CreateOnly::Conditional);
    let s = Object::new(StorageKind::S3, &o).unwrap();
    pages_concatenate_to_the_sorted_catalog(&s).await;
}

/// 10,000 repositories, some nested three deep: a page of 100 anywhere reads a
/// bounded multiple of its size from the listings, not the 10,000 names of the root.
#[tokio::test]
async fn a_page_reads_about_its_own_size() {
    const TOTAL: usize = 10_000;
    const N: usize = 100;
    const DEPTH: usize = 3;
    let s = Counting::new(Memory::new());
    let mut names = Vec::new();
    for i in 0..TOTAL {
        names.push(match i % 10 {
            0 => format!("team{}/a/b{i}", i % 7),
            1 => format!("lib-{i}/x"),
            2 => format!("lib-{i}"),
            _ => format!("app-{i:05}"),
        });
    }
    for n in &names {
        add_repository(&s, n).await;
    }
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let expected = component_sorted(&refs);
    // A bounded multiple of the page and the depth: each repository folder visited
    // holds a few names (`_manifests`, sub-repositories), each folder on the way to
    // `last` one chunk about the page's size.
    let bound = 8 * (N + DEPTH) as u64;
    for (label, start) in [
        ("first", None),
        ("middle", Some(TOTAL / 2)),
        ("end", Some(TOTAL - 50)),
    ] {
        let last = start.map(|i| expected[i].clone());
        s.reset();
        let (page, more) = store::repositories_page(&s, N, last.as_deref(), None)
            .await
            .unwrap();
        let (calls, read) = s.counts();
        let from = start.map_or(0, |i| i + 1);
        let want = &expected[from..(from + N).min(TOTAL)];
        assert_eq!(page, want, "the {label} page");
        assert_eq!(more, from + N < TOTAL, "more after the {label} page");
        assert!(
            read <= bound,
            "the {label} page read {read} names in {calls} listings (bound {bound})"
        );
    }
}
