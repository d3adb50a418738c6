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

/// At most `n` repository folders holding `marker` after `last` (in
/// [`repository_order`]) and whether more follow. A walk that lists one folder per
/// step and skips every subtree that ends before `last`, so a page costs about its
/// own size in listings, not the whole tree.
async fn walk<S: Storage>(
    store: &S,
    marker: &str,
    n: usize,
    last: Option<&str>,
    visible: Visible<'_>,
) -> Result<(Vec<String>, bool)> {
    use std::cmp::Ordering::Greater;
    let root = paths::repositories();
    // Folders still to visit, the next one last.
    let mut stack = vec![String::new()];
    let mut out = Vec::new();
    while let Some(rel) = stack.pop() {
        let dir = if rel.is_empty() {
            root.clone()
        } else {
            paths::child(&root, &rel)
        };
        let mut children = store.list_all(&dir).await?;
        children.sort_unstable();
        let is_repo = children.iter().any(|c| c == marker);
        if is_repo
            && !rel.is_empty()
            && last.is_none_or(|l| repository_order(&rel, l) == Greater)
            && visible.is_none_or(|v| v.shows(&rel))
        {
            if out.len() == n {
                return Ok((out, true));
            }
            out.push(rel.clone());
        }
        for c in children.iter().rev() {
            if c.starts_with('_') || c.starts_with('.') {
                continue;
            }
            let sub = if rel.is_empty() {
                c.clone()
            } else {
                paths::child(&rel, c)
            };
            // A subtree holds names from `sub` on; it may hold names after `last` if
            // it sorts after it or leads to it.
            let may_follow = last.is_none_or(|l| {
                repository_order(&sub, l) == Greater
                    || l.strip_prefix(sub.as_str())
                        .is_some_and(|r| r.starts_with('/'))
            });
            if may_follow {
                stack.push(sub);
            }
        }
    }
    Ok((out, false))
}
