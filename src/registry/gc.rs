//! Garbage collection of the bundled registry's storage (distribution's
//! `garbage-collect`, made safe to run while serving): mark every blob a stored
//! manifest references, sweep the unmarked blobs older than a grace period (uploads in
//! progress and pushes whose manifest has not arrived yet are younger), and drop the
//! repositories' links to what was swept.

use super::manifest;
use super::paths;
use super::storage::Storage;
use crate::oci::Digest;
use std::collections::HashSet;
use std::io;
use std::time::{Duration, SystemTime};

/// What a collection found and did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    pub repositories: usize,
    pub manifests: usize,
    /// Blobs kept because a manifest references them.
    pub marked: usize,
    /// Unreferenced blobs left alone because they are younger than the grace period.
    pub young: usize,
    /// Blobs deleted (or that would be, on a dry run), with their sizes.
    pub swept: Vec<(Digest, u64)>,
}

impl Report {
    pub fn bytes(&self) -> u64 {
        self.swept.iter().map(|(_, n)| n).sum()
    }
}

/// Mark and sweep. With `dry_run` nothing is deleted and the report says what would be.
pub async fn collect<S: Storage>(store: &S, grace: Duration, dry_run: bool) -> io::Result<Report> {
    let mut report = Report::default();
    let mut marked: HashSet<Digest> = HashSet::new();
    let repos = super::list_repositories(store).await?;
    report.repositories = repos.len();
    for repo in &repos {
        let revisions = super::digests_under(store, &paths::revisions_dir(repo)).await?;
        for d in revisions {
            // Every stored revision is kept, tagged or not, as distribution does by
            // default: a digest someone pulls by must keep working.
            let Some(bytes) = store.read(&paths::blob_data(&d)).await? else {
                continue;
            };
            report.manifests += 1;
            marked.insert(d.clone());
            if let Ok(m) = manifest::parse(None, &bytes) {
                marked.extend(m.blobs);
                marked.extend(m.manifests);
            }
        }
    }
    report.marked = marked.len();

    let now = SystemTime::now();
    let root = "docker/registry/v2/blobs";
    let mut doomed = Vec::new();
    for alg in ["sha256", "sha512"] {
        for prefix in store.list(&format!("{root}/{alg}")).await? {
            for hex in store.list(&format!("{root}/{alg}/{prefix}")).await? {
                let Ok(d) = Digest::parse(&format!("{alg}:{hex}")) else {
                    continue;
                };
                if marked.contains(&d) {
                    continue;
                }
                let Some(meta) = store.stat(&paths::blob_data(&d)).await? else {
                    continue;
                };
                let age = meta
                    .modified
                    .and_then(|m| now.duration_since(m).ok())
                    .unwrap_or_default();
                if age < grace {
                    report.young += 1;
                    continue;
                }
                doomed.push((d, meta.size));
            }
        }
    }
    if !dry_run {
        let gone: HashSet<&Digest> = doomed.iter().map(|(d, _)| d).collect();
        for (d, _) in &doomed {
            let data = paths::blob_data(d);
            store.delete(data.trim_end_matches("/data")).await?;
        }
        // A repository's link to a swept blob would only ever answer BLOB_UNKNOWN.
        for repo in &repos {
            let layers = paths::layers_dir(repo);
            for d in super::digests_under(store, &layers).await? {
                if gone.contains(&d) {
                    store
                        .delete(&format!("{layers}/{}/{}", d.algorithm.name(), d.hex))
                        .await?;
                }
            }
        }
    }
    report.swept = doomed;
    Ok(report)
}

/// Upload sessions abandoned for longer than `age` (distribution's "upload purging":
/// by default a week): their `_uploads/<id>` folders are removed. Returns the
/// `repository/id` of each one purged (or that would be, on a dry run).
pub async fn purge_uploads<S: Storage>(
    store: &S,
    age: Duration,
    dry_run: bool,
) -> io::Result<Vec<String>> {
    let now = SystemTime::now();
    let mut purged = Vec::new();
    // Every repository folder with uploads, including those whose first push is still
    // in progress (they have `_uploads` but no `_manifests` yet).
    for repo in super::repositories_with(store, "_uploads").await? {
        let dir = format!("{}/{repo}/_uploads", paths::repositories());
        for id in store.list(&dir).await? {
            let started = match store.read(&paths::upload_started_at(&repo, &id)).await? {
                Some(b) => time::OffsetDateTime::parse(
                    String::from_utf8_lossy(&b).trim(),
                    &time::format_description::well_known::Rfc3339,
                )
                .ok()
                .map(SystemTime::from),
                None => None,
            };
            // No readable start time: fall back to the data's own age.
            let started = match started {
                Some(t) => Some(t),
                None => store
                    .stat(&paths::upload_data(&repo, &id))
                    .await?
                    .and_then(|m| m.modified),
            };
            let old = started
                .and_then(|t| now.duration_since(t).ok())
                .is_some_and(|a| a > age);
            if old {
                if !dry_run {
                    store.delete(&paths::upload_dir(&repo, &id)).await?;
                }
                purged.push(format!("{repo}/{id}"));
            }
        }
    }
    Ok(purged)
}
