//! Garbage collection of the bundled registry's storage (distribution's
//! `garbage-collect`, made safe to run while serving): mark every blob a stored
//! manifest references, sweep the unmarked blobs older than a grace period (uploads in
//! progress and pushes whose manifest has not arrived yet are younger), and drop the
//! repositories' links to what was swept. Works on any storage through the seam
//! (`storage::Storage`): listings, stats and deletes only.

use super::manifest;
use super::paths;
use super::storage::{Result, Storage};
use super::store;
use crate::oci::{Algorithm, Digest};
use std::collections::HashSet;
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
pub async fn collect<S: Storage>(store: &S, grace: Duration, dry_run: bool) -> Result<Report> {
    let mut report = Report::default();
    let mut marked: HashSet<Digest> = HashSet::new();
    let repos = store::list_repositories(store).await?;
    report.repositories = repos.len();
    for repo in &repos {
        let revisions = store::digests_under(store, &paths::revisions_dir(repo)).await?;
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
    let mut doomed = Vec::new();
    for alg in [Algorithm::Sha256, Algorithm::Sha512] {
        let blobs = paths::blobs_dir(alg);
        for prefix in store.list_all(&blobs).await? {
            for hex in store.list_all(&paths::child(&blobs, &prefix)).await? {
                let Ok(d) = Digest::parse(&format!("{}:{hex}", alg.name())) else {
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
            store.delete_prefix(&paths::blob_dir(d)).await?;
        }
        // A repository's link to a swept blob would only ever answer BLOB_UNKNOWN.
        for repo in &repos {
            for d in store::digests_under(store, &paths::layers_dir(repo)).await? {
                if gone.contains(&d) {
                    store.delete_prefix(&paths::layer_dir(repo, &d)).await?;
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
) -> Result<Vec<String>> {
    let now = SystemTime::now();
    let mut purged = Vec::new();
    // Every repository folder with uploads, including those whose first push is still
    // in progress (they have `_uploads` but no `_manifests` yet).
    for repo in store::repositories_with(store, "_uploads").await? {
        for id in store.list_all(&paths::uploads_dir(&repo)).await? {
            let started = match store.read(&paths::upload_started_at(&repo, &id)).await? {
                Some(b) => time::OffsetDateTime::parse(
                    String::from_utf8_lossy(&b).trim(),
                    &time::format_description::well_known::Rfc3339,
                )
                .ok()
                .map(SystemTime::from),
                None => None,
            };
            // No readable start time: fall back to the marker's own age, then to the
            // data's (an upload from before `startedat` was written first).
            let started = match started {
                Some(t) => Some(t),
                None => match store.stat(&paths::upload_started_at(&repo, &id)).await? {
                    Some(m) => m.modified,
                    None => store
                        .stat(&paths::upload_data(&repo, &id))
                        .await?
                        .and_then(|m| m.modified),
                },
            };
            let old = started
                .and_then(|t| now.duration_since(t).ok())
                .is_some_and(|a| a > age);
            if old {
                if !dry_run {
                    store.abort(&paths::upload_dir(&repo, &id)).await?;
                }
                purged.push(format!("{repo}/{id}"));
            }
        }
    }
    Ok(purged)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::storage::memory::Memory;
    use bytes::Bytes;

    const HOUR: Duration = Duration::from_secs(3600);

    /// A blob written `age` ago, linked into `repo`.
    async fn blob(store: &Memory, repo: &str, data: &[u8], age: Duration) -> Digest {
        let d = Digest::sha256_of(data);
        let key = paths::blob_data(&d);
        store.put(&key, Bytes::copy_from_slice(data)).await.unwrap();
        store.set_modified(&key, SystemTime::now() - age);
        store
            .put(&paths::layer_link(repo, &d), Bytes::from(d.to_string()))
            .await
            .unwrap();
        d
    }

    /// An OCI manifest in `repo` referencing `config` and `layers`, stored as a revision.
    async fn manifest(store: &Memory, repo: &str, config: &Digest, layers: &[&Digest]) -> Digest {
        let desc = |d: &Digest| {
            serde_json::json!({
                "mediaType": "application/vnd.oci.image.layer.v1.tar",
                "size": 1,
                "digest": d.to_string(),
            })
        };
        let m = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "size": 1,
                "digest": config.to_string(),
            },
            "layers": layers.iter().map(|d| desc(d)).collect::<Vec<_>>(),
        });
        let bytes = serde_json::to_vec(&m).unwrap();
        let d = Digest::sha256_of(&bytes);
        let key = paths::blob_data(&d);
        store.put(&key, Bytes::from(bytes)).await.unwrap();
        store.set_modified(&key, SystemTime::now() - 10 * HOUR);
        store
            .put(&paths::revision_link(repo, &d), Bytes::from(d.to_string()))
            .await
            .unwrap();
        d
    }

    struct World {
        store: Memory,
        kept: Vec<Digest>,
        old: Digest,
        young: Digest,
    }

    async fn world() -> World {
        let store = Memory::new();
        let config = blob(&store, "app", b"config", 10 * HOUR).await;
        let layer = blob(&store, "app", b"layer", 10 * HOUR).await;
        let m = manifest(&store, "app", &config, &[&layer]).await;
        let old = blob(&store, "app", b"orphan, old", 10 * HOUR).await;
        let young = blob(&store, "other", b"orphan, just pushed", Duration::ZERO).await;
        World {
            store,
            kept: vec![config, layer, m],
            old,
            young,
        }
    }

    async fn exists(store: &Memory, d: &Digest) -> bool {
        store.stat(&paths::blob_data(d)).await.unwrap().is_some()
    }

    #[tokio::test]
    async fn unreferenced_old_blobs_are_swept_with_their_links() {
        let w = world().await;
        let r = collect(&w.store, HOUR, false).await.unwrap();
        assert_eq!(
            r.swept.iter().map(|(d, _)| d).collect::<Vec<_>>(),
            vec![&w.old]
        );
        assert_eq!(r.bytes(), b"orphan, old".len() as u64);
        assert!(!exists(&w.store, &w.old).await, "swept blob still stored");
        for d in &w.kept {
            assert!(exists(&w.store, d).await, "referenced {d} was deleted");
        }
        assert!(
            exists(&w.store, &w.young).await,
            "a blob younger than grace was deleted"
        );
        assert_eq!(r.young, 1);
        // The repository no longer links what is gone; its other links stay.
        assert!(w.store.keys(&paths::layer_link("app", &w.old)).is_empty());
        assert_eq!(
            w.store
                .read(&paths::layer_link("app", &w.kept[1]))
                .await
                .unwrap()
                .unwrap(),
            w.kept[1].to_string()
        );
    }

    #[tokio::test]
    async fn a_dry_run_deletes_nothing() {
        let w = world().await;
        let before = w.store.keys("");
        let r = collect(&w.store, HOUR, true).await.unwrap();
        assert_eq!(r.swept.len(), 1);
        assert_eq!(w.store.keys(""), before);
    }

    #[tokio::test]
    async fn abandoned_uploads_are_purged_by_age() {
        let store = Memory::new();
        let started = |t: SystemTime| Bytes::from(crate::access_log::rfc3339(t));
        let old = SystemTime::now() - 10 * HOUR;
        store
            .put(&paths::upload_started_at("r", "old"), started(old))
            .await
            .unwrap();
        store
            .put(
                &paths::upload_started_at("r", "new"),
                started(SystemTime::now()),
            )
            .await
            .unwrap();
        let mut s = store
            .append(&paths::upload_dir("r", "old"), 0)
            .await
            .unwrap();
        crate::registry::storage::Segment::write(&mut s, Bytes::from_static(b"x"))
            .await
            .unwrap();
        crate::registry::storage::Segment::commit(s, Bytes::new())
            .await
            .unwrap();
        assert_eq!(
            purge_uploads(&store, HOUR, true).await.unwrap(),
            vec!["r/old"]
        );
        assert!(!store.keys(&paths::upload_dir("r", "old")).is_empty());
        assert_eq!(
            purge_uploads(&store, HOUR, false).await.unwrap(),
            vec!["r/old"]
        );
        assert!(store.keys(&paths::upload_dir("r", "old")).is_empty());
        assert!(!store.keys(&paths::upload_dir("r", "new")).is_empty());
    }
}
