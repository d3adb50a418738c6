//! Marking, the first half of a collection: walk every repository, read each stored
//! manifest as distribution's collector reads it, keep what tags (or, by default, every
//! revision) reach with index children and referrers, and note every layer link for the
//! sweep.

use super::{Options, Progress, Report, AT_ONCE};
use crate::oci::Digest;
use crate::registry::paths;
use crate::registry::storage::{concurrently, Result, Storage};
use crate::registry::store;
use futures_util::StreamExt;
use std::collections::{HashMap, HashSet};
use std::time::SystemTime;

/// What one stored manifest references.
#[derive(Debug, Default)]
pub struct Refs {
    pub blobs: Vec<Digest>,
    pub children: Vec<Digest>,
    pub subject: Option<Digest>,
}

/// The manifests of one repository that no tag reaches (with `delete_untagged`), with
/// what they reference: kept after all if a request rescues one.
pub(super) struct Untagged {
    pub(super) repo: String,
    pub(super) graph: HashMap<Digest, Refs>,
}

/// The marked blobs and what the sweep needs from the walk.
#[derive(Default)]
pub(super) struct Marks {
    pub(super) marked: HashSet<Digest>,
    /// Every layer link seen, by blob: removed with the blob, inside its handshake.
    pub(super) links: HashMap<Digest, Vec<u32>>,
    pub(super) repos: Vec<String>,
    pub(super) untagged: Vec<Untagged>,
}

/// Walk every repository: mark what kept manifests reference, note every layer link,
/// and (with `delete_untagged`) gather the manifests no tag reaches.
pub(super) async fn mark<S: Storage>(
    store: &S,
    opts: &Options,
    progress: &dyn Progress,
    report: &mut Report,
) -> Result<Marks> {
    let mut marks = Marks::default();
    let repos = store::list_repositories(store).await?;
    report.repositories = repos.len();
    progress.phase("marking repositories", repos.len() as u64);
    let now = SystemTime::now();
    let walks: Vec<_> = repos
        .iter()
        .map(|name| mark_repository(store, opts, name, now))
        .collect();
    let mut walks = futures_util::stream::iter(walks).buffered(REPOSITORIES_AT_ONCE);
    let mut i = 0u32;
    while let Some(walked) = walks.next().await {
        let walked = walked?;
        report.manifests += walked.manifests;
        marks.marked.extend(walked.marked);
        if !walked.untagged.is_empty() {
            marks.untagged.push(Untagged {
                repo: walked.name.clone(),
                graph: walked.untagged,
            });
        }
        for d in walked.links {
            marks.links.entry(d).or_default().push(i);
        }
        marks.repos.push(walked.name);
        i += 1;
        progress.advance(1);
    }
    Ok(marks)
}

/// Repositories marked at once (each reads its manifests 16 at a time).
const REPOSITORIES_AT_ONCE: usize = 8;

/// What marking found in one repository.
struct Walked {
    name: String,
    manifests: usize,
    marked: Vec<Digest>,
    untagged: HashMap<Digest, Refs>,
    links: Vec<Digest>,
}

async fn mark_repository<S: Storage>(
    store: &S,
    opts: &Options,
    name: &str,
    now: SystemTime,
) -> Result<Walked> {
    // Names are used as stored, never parsed: a folder this version would refuse must
    // still keep what it references.
    let repo = name;
    let revisions = store::digests_under(store, &paths::revisions_dir(repo)).await?;
    let reads = revisions
        .into_iter()
        .map(|d| read_revision(store, repo, d))
        .collect();
    let reads = concurrently(reads, AT_ONCE).await?;
    let mut walked = Walked {
        name: name.to_string(),
        manifests: 0,
        marked: Vec::new(),
        untagged: HashMap::new(),
        links: Vec::new(),
    };
    let mut graph: HashMap<Digest, Refs> = HashMap::new();
    for (d, bytes) in reads {
        // A revision folder without its link is a deleted manifest.
        let Some(bytes) = bytes else { continue };
        walked.manifests += 1;
        match bytes.and_then(|b| references(&b)) {
            Some(refs) => {
                graph.insert(d, refs);
            }
            // Data missing or not JSON: nothing to follow; the revision stays.
            None => walked.marked.push(d),
        }
    }
    let kept = if opts.delete_untagged {
        let mut roots = tagged(store, repo).await?;
        // Young untagged revisions stay (an index's children arrive before it).
        for d in graph.keys() {
            if roots.contains(d) {
                continue;
            }
            let young = store
                .stat(&paths::revision_link(repo, d))
                .await?
                .and_then(|m| m.modified)
                .and_then(|m| now.duration_since(m).ok())
                .is_none_or(|age| age < opts.grace);
            if young {
                roots.insert(d.clone());
            }
        }
        closure(&graph, roots.iter())
    } else {
        graph.keys().cloned().collect()
    };
    for (d, refs) in graph {
        if kept.contains(&d) {
            mark_refs(&mut walked.marked, &d, &refs);
        } else {
            walked.untagged.insert(d, refs);
        }
    }
    walked.links = store::digests_under(store, &paths::layers_dir(repo)).await?;
    Ok(walked)
}

/// A stored manifest's descriptors as distribution's collector reads them: config,
/// every layer, index entries, subject, a schema 1 manifest's `fsLayers` (this registry
/// refuses schema 1 PUTs, but storage migrated from distribution may hold them); none
/// of the checks a PUT gets. Stored data may not pass them and must still keep what it
/// references: distribution 2.8 accepts and stores a Docker schema 2 image without
/// layers (which `manifest::parse` refuses), and it marks foreign layers (with `urls`),
/// whose blob a client may have pushed anyway. None when the bytes are not a JSON object.
pub fn references(bytes: &[u8]) -> Option<Refs> {
    #[derive(serde::Deserialize)]
    struct Entry {
        digest: Option<String>,
    }
    #[derive(serde::Deserialize)]
    struct Stored {
        config: Option<Entry>,
        layers: Option<Vec<Entry>>,
        manifests: Option<Vec<Entry>>,
        subject: Option<Entry>,
        /// Docker schema 1: its layers (its config is inline).
        #[serde(rename = "fsLayers")]
        fs_layers: Option<Vec<Layer1>>,
    }
    #[derive(serde::Deserialize)]
    struct Layer1 {
        #[serde(rename = "blobSum")]
        blob_sum: Option<String>,
    }
    let m: Stored = serde_json::from_slice(bytes).ok()?;
    // A digest this version cannot parse names no blob it could delete either.
    let digest = |e: &Entry| e.digest.as_deref().and_then(|d| Digest::parse(d).ok());
    let all =
        |v: &Option<Vec<Entry>>| -> Vec<Digest> { v.iter().flatten().filter_map(digest).collect() };
    let mut blobs: Vec<Digest> = m.config.iter().filter_map(digest).collect();
    blobs.extend(all(&m.layers));
    blobs.extend(
        m.fs_layers
            .iter()
            .flatten()
            .filter_map(|l| l.blob_sum.as_deref().and_then(|d| Digest::parse(d).ok())),
    );
    Some(Refs {
        blobs,
        children: all(&m.manifests),
        subject: m.subject.as_ref().and_then(digest),
    })
}

/// A revision's manifest bytes: None when its folder has no link to it (a deleted
/// manifest: distribution leaves the folder when it deletes by digest), Some(None) when
/// its data is missing.
async fn read_revision<S: Storage>(
    store: &S,
    repo: &str,
    d: Digest,
) -> Result<(Digest, Option<Option<bytes::Bytes>>)> {
    if store::read_link(store, &paths::revision_link(repo, &d))
        .await?
        .as_ref()
        != Some(&d)
    {
        return Ok((d, None));
    }
    let b = store.read(&paths::blob_data(&d)).await?;
    Ok((d, Some(b)))
}

/// Mark a kept manifest: itself, its blobs and its children.
pub(super) fn mark_refs(marked: &mut impl Extend<Digest>, d: &Digest, refs: &Refs) {
    marked.extend([d.clone()]);
    marked.extend(refs.blobs.iter().cloned());
    marked.extend(refs.children.iter().cloned());
}

/// The revisions of a repository that a tag points at.
async fn tagged<S: Storage>(store: &S, repo: &str) -> Result<HashSet<Digest>> {
    let keys: Vec<String> = store
        .list_all(&paths::tags_dir(repo))
        .await?
        .into_iter()
        .map(|t| paths::tag_current_link(repo, &t))
        .collect();
    let reads = keys.iter().map(|k| store::read_link(store, k)).collect();
    Ok(concurrently(reads, AT_ONCE)
        .await?
        .into_iter()
        .flatten()
        .collect())
}

/// Everything reachable from `roots` in a repository's manifests: an index's children,
/// and the referrers (manifests whose `subject` is) of anything reached.
pub(super) fn closure<'a>(
    graph: &HashMap<Digest, Refs>,
    roots: impl Iterator<Item = &'a Digest>,
) -> HashSet<Digest> {
    let mut referrers: HashMap<&Digest, Vec<&Digest>> = HashMap::new();
    for (d, refs) in graph {
        if let Some(s) = &refs.subject {
            referrers.entry(s).or_default().push(d);
        }
    }
    let mut kept: HashSet<Digest> = HashSet::new();
    let mut todo: Vec<Digest> = roots.cloned().collect();
    while let Some(d) = todo.pop() {
        if !kept.insert(d.clone()) {
            continue;
        }
        if let Some(refs) = graph.get(&d) {
            todo.extend(refs.children.iter().cloned());
        }
        if let Some(rs) = referrers.get(&d) {
            todo.extend(rs.iter().map(|r| (*r).clone()));
        }
    }
    kept
}
