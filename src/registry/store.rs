//! The registry's meaning over storage, in one place: links (a small object holding a
//! digest), which blobs and manifests a repository holds, how a tag or digest resolves,
//! tags, and walks over every repository. The HTTP handlers and garbage collection both
//! go through here; `paths` builds every key.

use super::paths;
use super::storage::{Page, Result, Storage};
use crate::oci::{Algorithm, Digest, Reference, Repository, Tag};
use bytes::Bytes;
use futures_util::StreamExt;

/// The digest a link object holds; None when absent or not a digest.
pub async fn read_link<S: Storage>(store: &S, key: &str) -> Result<Option<Digest>> {
    Ok(store
        .read(key)
        .await?
        .and_then(|b| Digest::parse(String::from_utf8_lossy(&b).trim()).ok()))
}

pub async fn write_link<S: Storage>(store: &S, key: &str, d: &Digest) -> Result<()> {
    store.put(key, Bytes::from(d.to_string())).await
}

/// Does the link at `key` name exactly `d`?
async fn links_to<S: Storage>(store: &S, key: &str, d: &Digest) -> Result<bool> {
    Ok(read_link(store, key).await?.as_ref() == Some(d))
}

/// Is the blob part of this repository (a layer link, or a manifest revision) and
/// present? Its size when it is.
pub async fn blob_in_repo<S: Storage>(
    store: &S,
    repo: &Repository,
    d: &Digest,
) -> Result<Option<u64>> {
    let linked = links_to(store, &paths::layer_link(repo, d), d).await?
        || links_to(store, &paths::revision_link(repo, d), d).await?;
    if !linked {
        return Ok(None);
    }
    Ok(store.stat(&paths::blob_data(d)).await?.map(|m| m.size))
}

/// Is the manifest `d` a revision of this repository?
pub async fn has_revision<S: Storage>(store: &S, repo: &Repository, d: &Digest) -> Result<bool> {
    links_to(store, &paths::revision_link(repo, d), d).await
}

/// The manifest a reference names in the repository, if it holds it.
pub async fn resolve<S: Storage>(
    store: &S,
    repo: &Repository,
    reference: &Reference,
) -> Result<Option<Digest>> {
    let d = match reference {
        Reference::Digest(d) => d.clone(),
        Reference::Tag(t) => match read_link(store, &paths::tag_current_link(repo, t)).await? {
            Some(d) => d,
            None => return Ok(None),
        },
    };
    Ok(has_revision(store, repo, &d).await?.then_some(d))
}

/// Tag `d` in the repository. A tag exists when its `current` link does (tags listing
/// shows no other), so `current` is written last, as distribution does: every
/// interleaving with a removal of the tag, in this process or another sharing the
/// storage, ends with the tag resolving or absent, never a listed tag that resolves to
/// nothing. Callers hold the tag's lock.
pub async fn tag<S: Storage>(store: &S, repo: &Repository, t: &Tag, d: &Digest) -> Result<()> {
    write_link(store, &paths::tag_index_link(repo, t, d), d).await?;
    write_link(store, &paths::tag_current_link(repo, t), d).await
}

/// Remove a tag (its lock held): `current` first, which makes the tag absent in one
/// atomic step, then the rest of its folder (history links), which nothing reads once
/// `current` is gone.
pub async fn untag<S: Storage>(store: &S, repo: &Repository, t: &Tag) -> Result<()> {
    store.delete(&paths::tag_current_link(repo, t)).await?;
    store.delete_prefix(&paths::tag_dir(repo, t)).await
}

/// The folder names under a repository's tags (resolving or not).
pub async fn tag_folders<S: Storage>(store: &S, repo: &Repository) -> Result<Vec<String>> {
    store.list_all(&paths::tags_dir(repo)).await
}

/// The repository's tags that resolve, unsorted; None when the repository is unknown.
/// A folder without `current` is no tag (a PUT or DELETE in progress elsewhere, or a
/// crash), and listing it would offer clients a tag they cannot pull.
pub async fn tags<S: Storage>(store: &S, repo: &Repository) -> Result<Option<Vec<String>>> {
    let folders = tag_folders(store, repo).await?;
    if folders.is_empty() {
        let page = Page {
            start_after: None,
            limit: 1,
        };
        let known = !store
            .list(&paths::repository(repo), page)
            .await?
            .names
            .is_empty();
        return Ok(known.then(Vec::new));
    }
    present_tags(store, repo, folders).await.map(Some)
}

/// The tag folders of `candidates` that hold a tag (`current/link`), in their order.
async fn present_tags<S: Storage>(
    store: &S,
    repo: &Repository,
    candidates: Vec<String>,
) -> Result<Vec<String>> {
    futures_util::stream::iter(candidates)
        .map(|t| async move {
            let present = match Tag::parse(&t) {
                Some(tag) => store
                    .stat(&paths::tag_current_link(repo, &tag))
                    .await
                    .map(|m| m.is_some()),
                None => Ok(false),
            };
            present.map(|p| p.then_some(t))
        })
        .buffered(16)
        .filter_map(|r| async move { r.transpose() })
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect()
}

/// One page of a repository's tags in lexical order: at most `n` after `last`, and
/// whether more follow; None when the repository is unknown. Lists the tag names (a
/// thousand per request on an object store) but checks only the page's tags.
pub async fn tags_page<S: Storage>(
    store: &S,
    repo: &Repository,
    n: usize,
    last: Option<&str>,
) -> Result<Option<(Vec<String>, bool)>> {
    let mut folders = tag_folders(store, repo).await?;
    if folders.is_empty() {
        return Ok(tags(store, repo).await?.map(|_| (Vec::new(), false)));
    }
    folders.sort_unstable();
    folders.retain(|t| last.is_none_or(|l| t.as_str() > l));
    let mut page = Vec::new();
    let mut rest = folders.into_iter().peekable();
    while page.len() <= n && rest.peek().is_some() {
        // Check a few more than still needed: some folders may hold no tag.
        let want = (n + 1 - page.len()).clamp(1, 64);
        let batch: Vec<String> = rest.by_ref().take(want).collect();
        page.extend(present_tags(store, repo, batch).await?);
    }
    let more = page.len() > n;
    page.truncate(n);
    Ok(Some((page, more)))
}

/// The digests of a folder of `<alg>/<hex>` entries (manifest revisions, layer links).
pub async fn digests_under<S: Storage>(store: &S, dir: &str) -> Result<Vec<Digest>> {
    let mut out = Vec::new();
    for alg in [Algorithm::Sha256, Algorithm::Sha512] {
        for hex in store.list_all(&paths::algorithm_dir(dir, alg)).await? {
            if let Ok(d) = Digest::parse(&format!("{}:{hex}", alg.name())) {
                out.push(d);
            }
        }
    }
    Ok(out)
}

/// Every manifest revision of a repository.
pub async fn revisions<S: Storage>(store: &S, repo: &Repository) -> Result<Vec<Digest>> {
    digests_under(store, &paths::revisions_dir(repo)).await
}

/// Every repository name under the storage root (a folder holding `_manifests`).
pub async fn list_repositories<S: Storage>(store: &S) -> Result<Vec<String>> {
    repositories_with(store, "_manifests").await
}

/// Every repository folder that holds `marker` (`_manifests`, `_uploads`, ...), sorted.
pub async fn repositories_with<S: Storage>(store: &S, marker: &str) -> Result<Vec<String>> {
    let (mut repos, _) = walk(store, marker, usize::MAX, None, None).await?;
    repos.sort();
    Ok(repos)
}

/// Repository names compared by component (`a/c` before `a-b`): the order of a walk
/// over the folders, which pages of the catalog follow.
pub fn repository_order(a: &str, b: &str) -> std::cmp::Ordering {
    a.split('/').cmp(b.split('/'))
}

/// One page of the catalog: at most `n` repositories after `last` (in
/// [`repository_order`]) and whether more follow.
pub async fn repositories_page<S: Storage>(
    store: &S,
    n: usize,
    last: Option<&str>,
    visible: Visible<'_>,
) -> Result<(Vec<String>, bool)> {
    walk(store, "_manifests", n, last, visible).await
}

/// Which repositories a listing may show its caller (the access policy's pull right).
pub trait Visibility: Send + Sync {
    fn shows(&self, repository: &str) -> bool;
}

/// None: a listing shows every repository.
pub type Visible<'a> = Option<&'a dyn Visibility>;

/// The first listing of a folder asks for at least this many names.
const MIN_CHUNK: usize = 4;
/// And at most this many (what one S3 or OSS list request returns).
const MAX_CHUNK: usize = 1000;

/// At most `n` repository folders holding `marker` after `last` (in
/// [`repository_order`]) and whether more follow. Depth first, each folder read in
/// name order a chunk at a time from where `last` left it: the root and each folder
/// on the way to `last` after `last`'s component there, `last`'s own folder (its
/// sub-repositories follow it) and every folder entered from the start. The walk
/// stops at the `n + 1`st name, so a page costs listings of about its own size (plus
/// one chunk per level of `last`), not the 10,000 names of a large root.
async fn walk<S: Storage>(
    store: &S,
    marker: &str,
    n: usize,
    last: Option<&str>,
    visible: Visible<'_>,
) -> Result<(Vec<String>, bool)> {
    let root = paths::repositories();
    let chunk = n.saturating_add(1).clamp(MIN_CHUNK, MAX_CHUNK);
    // Folders still being read, the innermost last.
    let mut stack = resume(last, chunk);
    let mut out = Vec::new();
    while let Some(f) = stack.last_mut() {
        if let Some(c) = f.queue.pop() {
            if walkable(&c) {
                let sub = if f.rel.is_empty() {
                    c
                } else {
                    paths::child(&f.rel, &c)
                };
                stack.push(Folder::new(sub, None, chunk, true));
            }
            continue;
        }
        if f.read_all {
            stack.pop();
            continue;
        }
        let dir = if f.rel.is_empty() {
            root.clone()
        } else {
            paths::child(&root, &f.rel)
        };
        let page = Page {
            start_after: f.after.as_deref(),
            limit: f.chunk,
        };
        let l = store.list(&dir, page).await?;
        f.read_all = !l.truncated || l.names.is_empty();
        if let Some(a) = l.names.last() {
            f.after = Some(a.clone());
        }
        // A folder mostly hidden from the caller is read in growing chunks: few
        // listings of it, however little of it a page shows.
        f.chunk = f.chunk.saturating_mul(2).min(MAX_CHUNK);
        f.queue = l.names;
        f.queue.reverse();
        if std::mem::take(&mut f.fresh) {
            // A folder comes before everything below it (`a` before `a/b`): decide
            // now whether it is a repository. Its first chunk, sorted, usually
            // settles it (`_manifests` is in it, or a later name is); only
            // sub-folders sorting before `_manifests` (names starting with a digit)
            // filling the chunk leave it to one more listing.
            let settled = f.read_all || f.queue.first().is_some_and(|c| c.as_str() > marker);
            let is_repo = f.queue.iter().any(|c| c == marker)
                || (!settled && has_name(store, &dir, marker).await?);
            if is_repo && visible.is_none_or(|v| v.shows(&f.rel)) {
                if out.len() == n {
                    return Ok((out, true));
                }
                out.push(f.rel.clone());
            }
        }
    }
    Ok((out, false))
}

/// A folder below the repositories root, read a chunk at a time in name order.
struct Folder {
    /// Its path below the root ("" for the root).
    rel: String,
    /// Names read and not visited yet, the next one last.
    queue: Vec<String>,
    /// Where the next chunk starts (after this name).
    after: Option<String>,
    read_all: bool,
    /// The size of the next chunk.
    chunk: usize,
    /// Entered from the start: the folder itself may be a repository to report.
    fresh: bool,
}

impl Folder {
    fn new(rel: String, after: Option<&str>, chunk: usize, fresh: bool) -> Folder {
        Folder {
            rel,
            queue: Vec::new(),
            after: after.filter(|a| !a.is_empty()).map(str::to_string),
            read_all: false,
            chunk,
            fresh,
        }
    }
}

/// A folder name the walk enters: not a registry folder (`_manifests`, `_uploads`,
/// ...), not hidden, not empty.
fn walkable(name: &str) -> bool {
    !(name.is_empty() || name.starts_with('_') || name.starts_with('.'))
}

/// The folders a walk after `last` still has to read, the innermost last: for
/// `last = a/b/c`, the root after `a`, `a` after `b`, `a/b` after `c`, and `a/b/c`
/// from its start (its sub-repositories follow it). A component the walk would never
/// enter (`..`, `_x`, empty) ends the path: nothing below it can follow `last`, and no
/// path is built from it.
fn resume(last: Option<&str>, chunk: usize) -> Vec<Folder> {
    let mut stack = Vec::new();
    let Some(last) = last.filter(|l| !l.is_empty()) else {
        stack.push(Folder::new(String::new(), None, chunk, false));
        return stack;
    };
    let mut rel = String::new();
    for c in last.split('/') {
        stack.push(Folder::new(rel.clone(), Some(c), chunk, false));
        if !walkable(c) {
            // Everything after `c` in its folder still follows `last`.
            return stack;
        }
        rel = if rel.is_empty() {
            c.to_string()
        } else {
            paths::child(&rel, c)
        };
    }
    stack.push(Folder::new(rel, None, chunk, false));
    stack
}

/// Is `name` among the names directly under `dir`? Read from just before it (after
/// its prefix one character shorter), so it costs a listing of one or two names.
async fn has_name<S: Storage>(store: &S, dir: &str, name: &str) -> Result<bool> {
    let cut = name.char_indices().last().map_or(0, |(i, _)| i);
    let mut after = name[..cut].to_string();
    loop {
        let page = Page {
            start_after: Some(after.as_str()).filter(|a| !a.is_empty()),
            limit: MIN_CHUNK,
        };
        let l = store.list(dir, page).await?;
        if let Some(c) = l.names.iter().find(|c| c.as_str() >= name) {
            return Ok(c == name);
        }
        match l.names.last() {
            Some(c) if l.truncated => after = c.clone(),
            _ => return Ok(false),
        }
    }
}
