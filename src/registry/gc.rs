//! Garbage collection of the bundled registry's storage (distribution's
//! `garbage-collect`, made safe to run while serving, by any number of instances on one
//! storage): mark every blob a kept manifest references, then delete the unmarked blobs
//! older than a grace period, each only after the handshake of `epoch` (where the
//! protocol and the argument for its safety live). Deleting a tag keeps its manifest;
//! `delete_untagged` also collects manifests no tag reaches (distribution's
//! `--delete-untagged`), keeping an index's children and the referrers of kept
//! subjects. Works on any storage through the seam: listings, stats, reads, puts and
//! deletes only.

pub mod epoch;
mod mark;

use super::paths;
use super::storage::{concurrently, Meta, Result, Storage, StorageError};
use super::store;
use crate::oci::{Algorithm, Digest};
use epoch::{Announced, Epoch};
use mark::{closure, mark, mark_refs};
/// The collector's reader of a stored manifest, public for the fuzz harness (fuzz/).
pub use mark::{references, Refs};
use std::collections::HashSet;
use std::time::{Duration, SystemTime};

/// How a collection runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// Never delete a blob (or, with `delete_untagged`, a revision) younger than this.
    pub grace: Duration,
    /// Report what would go; write nothing (no epoch, no wait).
    pub dry_run: bool,
    /// Also remove manifest revisions no tag reaches, and what only they referenced.
    pub delete_untagged: bool,
    /// The wait after announcing the epoch. Always [`epoch::WAIT`], which the protocol's
    /// safety rests on; only unit tests over one in-process store shorten it.
    #[doc(hidden)]
    pub wait: Duration,
}

impl Options {
    pub fn new(grace: Duration) -> Options {
        Options {
            grace,
            dry_run: false,
            delete_untagged: false,
            wait: epoch::WAIT,
        }
    }
}

/// Where a collection is, for a progress bar or a log.
pub trait Progress: Sync {
    /// A phase begins; `total` steps when known (0: unknown).
    fn phase(&self, _name: &str, _total: u64) {}
    /// `n` more steps of the phase are done.
    fn advance(&self, _n: u64) {}
}

/// No progress shown.
pub struct Quiet;
impl Progress for Quiet {}

/// Why a collection did not run or did not finish.
#[derive(Debug, thiserror::Error)]
pub enum GcError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("another garbage collection is running (epoch {}, {}); try again once it ends (one that stops renewing its record is ignored after a minute)", .0.id, .0.by)]
    Busy(Announced),
}

/// What a collection found and did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    pub repositories: usize,
    pub manifests: usize,
    /// Blobs kept because a kept manifest references them.
    pub marked: usize,
    /// Unreferenced blobs left alone because they are younger than the grace period.
    pub young: usize,
    /// Candidates a request vouched for during the collection (kept).
    pub rescued: usize,
    /// Blobs deleted (or that would be, on a dry run), with their sizes.
    pub swept: Vec<(Digest, u64)>,
    /// Untagged manifest revisions removed (or that would be), per repository.
    pub untagged: Vec<(String, Digest)>,
    /// The epoch this collection announced (None on a dry run).
    pub epoch: Option<String>,
}

impl Report {
    pub fn bytes(&self) -> u64 {
        self.swept.iter().map(|(_, n)| n).sum()
    }
}

/// Collect garbage. With `dry_run` nothing is written and the report says what would go.
pub async fn collect<S: Storage>(
    store: &S,
    opts: &Options,
    progress: &dyn Progress,
) -> Result<Report, GcError> {
    let mut report = Report::default();
    if opts.dry_run {
        sweep(store, opts, progress, &mut report, None).await?;
        return Ok(report);
    }
    epoch::clean_stale(store).await?;
    // Collections running at once would be safe (each has its own handshake), only
    // wasteful: wait for one that is alive; one whose collector died is ignored (its
    // record expires; requests honour it until then).
    let now = SystemTime::now();
    if let Some(other) = epoch::announced(store)
        .await?
        .into_iter()
        .find(|a| a.running(now))
    {
        return Err(GcError::Busy(other));
    }
    let e = Epoch::announce(store).await?;
    report.epoch = Some(e.id.clone());
    let work = async {
        progress.phase(
            &format!(
                "announced epoch {}; waiting {} s for requests begun before it",
                e.id,
                opts.wait.as_secs()
            ),
            0,
        );
        tokio::time::sleep(opts.wait).await;
        sweep(store, opts, progress, &mut report, Some(&e)).await
    };
    // The record is renewed on a timer beside the work, whatever step is slow.
    let result = tokio::select! {
        r = work => r,
        () = e.keep_renewed() => unreachable!("keep_renewed never returns"),
    };
    // Ended even when the sweep failed: requests stop paying for the handshake.
    let ended = e.end().await;
    result?;
    ended?;
    Ok(report)
}

async fn sweep<S: Storage>(
    store: &S,
    opts: &Options,
    progress: &dyn Progress,
    report: &mut Report,
    epoch: Option<&Epoch<'_, S>>,
) -> Result<()> {
    let mut marks = mark(store, opts, progress, report).await?;

    // Untagged revisions first: one a request rescues is kept with all it reaches, so
    // its blobs are marked before blob candidates are chosen.
    let revisions: Vec<Digest> = {
        let mut all: Vec<Digest> = marks
            .untagged
            .iter()
            .flat_map(|u| u.graph.keys().cloned())
            .collect();
        all.sort_by_key(|d| d.to_string());
        all.dedup();
        all
    };
    if !revisions.is_empty() {
        progress.phase("deciding untagged manifests", revisions.len() as u64);
        let decided = match epoch {
            Some(e) => {
                let (batch, flags) = e.decide(&revisions).await?;
                let rescued: HashSet<Digest> = revisions
                    .iter()
                    .zip(flags)
                    .filter(|(_, r)| *r)
                    .map(|(d, _)| d.clone())
                    .collect();
                Some((batch, rescued))
            }
            None => None,
        };
        let none = HashSet::new();
        let rescued = decided.as_ref().map_or(&none, |(_, r)| r);
        let mut doomed: Vec<(&str, &Digest)> = Vec::new();
        for u in &marks.untagged {
            let roots: Vec<Digest> = rescued
                .iter()
                .filter(|d| u.graph.contains_key(*d))
                .cloned()
                .collect();
            let kept = closure(&u.graph, roots.iter());
            for (d, refs) in &u.graph {
                if kept.contains(d) {
                    mark_refs(&mut marks.marked, d, refs);
                } else {
                    doomed.push((&u.repo, d));
                }
            }
            progress.advance(u.graph.len() as u64);
        }
        if let Some(e) = epoch {
            let deletes = doomed
                .iter()
                .map(|(repo, d)| delete_checked(store, e, paths::revision_link(repo, d)))
                .collect();
            concurrently(deletes, AT_ONCE).await?;
        }
        report.untagged.extend(
            doomed
                .into_iter()
                .map(|(repo, d)| (repo.to_string(), d.clone())),
        );
        if let (Some(e), Some((batch, rescued))) = (epoch, &decided) {
            report.rescued += rescued.len();
            e.done(*batch).await?;
        }
    }
    report.marked = marks.marked.len();

    // Blob candidates: unmarked and older than the grace period.
    let now = SystemTime::now();
    let mut candidates = Vec::new();
    for alg in [Algorithm::Sha256, Algorithm::Sha512] {
        let blobs = paths::blobs_dir(alg);
        let prefixes = store.list_all(&blobs).await?;
        progress.phase(
            &format!("listing {} blobs", alg.name()),
            prefixes.len() as u64,
        );
        for prefix in prefixes {
            let hexes = store.list_all(&paths::child(&blobs, &prefix)).await?;
            let unmarked: Vec<Digest> = hexes
                .iter()
                .filter_map(|hex| Digest::parse(&format!("{}:{hex}", alg.name())).ok())
                .filter(|d| !marks.marked.contains(d))
                .collect();
            let stats = unmarked.into_iter().map(|d| stat_blob(store, d)).collect();
            for (d, meta) in concurrently(stats, AT_ONCE).await? {
                let Some(meta) = meta else { continue };
                let age = meta
                    .modified
                    .and_then(|m| now.duration_since(m).ok())
                    .unwrap_or_default();
                if age < opts.grace {
                    report.young += 1;
                } else {
                    candidates.push((d, meta.size));
                }
            }
            progress.advance(1);
        }
    }

    let Some(e) = epoch else {
        report.swept = candidates;
        return Ok(());
    };
    progress.phase(
        "deciding and deleting unreferenced blobs",
        candidates.len() as u64,
    );
    for batch in candidates.chunks(BATCH) {
        let digests: Vec<Digest> = batch.iter().map(|(d, _)| d.clone()).collect();
        let (n, rescued) = e.decide(&digests).await?;
        let mut doomed = Vec::new();
        for ((d, size), rescued) in batch.iter().zip(rescued) {
            if rescued {
                report.rescued += 1;
            } else {
                doomed.push((d, *size));
            }
        }
        let deletes = doomed
            .iter()
            .map(|(d, _)| {
                let repos = marks
                    .links
                    .get(*d)
                    .map(Vec::as_slice)
                    .unwrap_or(&[])
                    .iter()
                    .map(|&r| marks.repos[r as usize].as_str())
                    .collect();
                delete_blob(store, e, d, repos)
            })
            .collect();
        concurrently(deletes, AT_ONCE).await?;
        report
            .swept
            .extend(doomed.into_iter().map(|(d, size)| (d.clone(), size)));
        e.done(n).await?;
        progress.advance(batch.len() as u64);
    }
    Ok(())
}

/// Delete a blob the handshake gave up: the links to it first (a link without its blob
/// answers "unknown" anyway; the blob's own folder is the last trace), then its folder.
async fn delete_blob<S: Storage>(
    store: &S,
    e: &Epoch<'_, S>,
    d: &Digest,
    linked_from: Vec<&str>,
) -> Result<()> {
    for repo in linked_from {
        delete_checked(store, e, paths::layer_link(repo, d)).await?;
    }
    delete_checked(store, e, paths::blob_data(d)).await
}

/// Delete the folder of `key`, if the epoch still allows deleting (each deletion is
/// checked: a batch may outlast the epoch's renewals on a slow store).
async fn delete_checked<S: Storage>(store: &S, e: &Epoch<'_, S>, key: String) -> Result<()> {
    e.check()?;
    store.delete_folder_of(&key).await
}

/// Candidates decided per handshake: a request that finds one being decided waits for
/// its whole batch.
const BATCH: usize = 64;

/// Storage operations of a collection run at once (stats, deletes, reads).
pub(crate) const AT_ONCE: usize = 16;

async fn stat_blob<S: Storage>(store: &S, d: Digest) -> Result<(Digest, Option<Meta>)> {
    let m = store.stat(&paths::blob_data(&d)).await?;
    Ok((d, m))
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

    fn opts(grace: Duration, dry_run: bool) -> Options {
        Options {
            dry_run,
            wait: Duration::ZERO,
            ..Options::new(grace)
        }
    }

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

    /// `m` stored as an old revision of `repo` (tagged `tag` if given).
    async fn revision(
        store: &Memory,
        repo: &str,
        m: serde_json::Value,
        tag: Option<&str>,
    ) -> Digest {
        let bytes = serde_json::to_vec(&m).unwrap();
        let d = Digest::sha256_of(&bytes);
        let old = SystemTime::now() - 10 * HOUR;
        let key = paths::blob_data(&d);
        store.put(&key, Bytes::from(bytes)).await.unwrap();
        store.set_modified(&key, old);
        let link = paths::revision_link(repo, &d);
        store.put(&link, Bytes::from(d.to_string())).await.unwrap();
        store.set_modified(&link, old);
        if let Some(t) = tag {
            store
                .put(
                    &paths::tag_current_link(repo, t),
                    Bytes::from(d.to_string()),
                )
                .await
                .unwrap();
        }
        d
    }

    fn desc(d: &Digest) -> serde_json::Value {
        serde_json::json!({"mediaType": "application/vnd.oci.image.manifest.v1+json", "size": 1, "digest": d.to_string()})
    }

    /// An image manifest: config, layers, maybe a subject.
    fn image(config: &Digest, layers: &[&Digest], subject: Option<&Digest>) -> serde_json::Value {
        let mut m = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "size": 1, "digest": config.to_string()},
            "layers": layers.iter().map(|d| desc(d)).collect::<Vec<_>>(),
        });
        if let Some(s) = subject {
            m["subject"] = desc(s);
        }
        m
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
        let r = collect(&w.store, &opts(HOUR, false), &Quiet).await.unwrap();
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
        let r = collect(&w.store, &opts(HOUR, true), &Quiet).await.unwrap();
        assert_eq!(r.swept.len(), 1);
        assert_eq!(w.store.keys(""), before);
    }

    fn untagged_opts() -> Options {
        Options {
            delete_untagged: true,
            ..opts(HOUR, false)
        }
    }

    #[tokio::test]
    async fn deleting_a_tag_keeps_its_manifest_unless_untagged_ones_are_collected() {
        let store = Memory::new();
        let old = 10 * HOUR;
        let shared = blob(&store, "app", b"shared layer", old).await;
        let (c1, u1) = (
            blob(&store, "app", b"c1", old).await,
            blob(&store, "app", b"u1", old).await,
        );
        let (c2, u2) = (
            blob(&store, "app", b"c2", old).await,
            blob(&store, "app", b"u2", old).await,
        );
        // v1's tag was deleted: its manifest is an untagged revision.
        let m1 = revision(&store, "app", image(&c1, &[&shared, &u1], None), None).await;
        let m2 = revision(&store, "app", image(&c2, &[&shared, &u2], None), Some("v2")).await;

        let r = collect(&store, &opts(HOUR, false), &Quiet).await.unwrap();
        assert!(r.swept.is_empty() && r.untagged.is_empty(), "{r:?}");
        assert!(exists(&store, &m1).await && exists(&store, &u1).await);

        let r = collect(&store, &untagged_opts(), &Quiet).await.unwrap();
        assert_eq!(r.untagged, vec![("app".to_string(), m1.clone())]);
        let mut swept: Vec<_> = r.swept.iter().map(|(d, _)| d.clone()).collect();
        swept.sort_by_key(|d| d.to_string());
        let mut want = vec![m1.clone(), c1, u1];
        want.sort_by_key(|d| d.to_string());
        assert_eq!(swept, want, "the untagged manifest and what only it used");
        assert!(store.keys(&paths::revision_dir("app", &m1)).is_empty());
        for d in [&shared, &m2, &c2, &u2] {
            assert!(
                exists(&store, d).await,
                "{d} of the tagged image was deleted"
            );
        }
    }

    #[tokio::test]
    async fn untagged_children_of_a_tagged_index_and_referrers_of_kept_subjects_stay() {
        let store = Memory::new();
        let old = 10 * HOUR;
        let mut blobs = Vec::new();
        for name in ["ca", "la", "cb", "lb", "cr", "lr", "cx", "lx"] {
            blobs.push(blob(&store, "app", name.as_bytes(), old).await);
        }
        let a = revision(&store, "app", image(&blobs[0], &[&blobs[1]], None), None).await;
        let b = revision(&store, "app", image(&blobs[2], &[&blobs[3]], None), None).await;
        let index = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [desc(&a), desc(&b)],
        });
        let i = revision(&store, "app", index, Some("multi")).await;
        // A signature of child `a` (untagged, as referrers are).
        let sig = revision(
            &store,
            "app",
            image(&blobs[4], &[&blobs[5]], Some(&a)),
            None,
        )
        .await;
        // A referrer whose subject is gone: collected.
        let gone = Digest::sha256_of(b"a deleted subject");
        let x = revision(
            &store,
            "app",
            image(&blobs[6], &[&blobs[7]], Some(&gone)),
            None,
        )
        .await;

        let r = collect(&store, &untagged_opts(), &Quiet).await.unwrap();
        assert_eq!(r.untagged, vec![("app".to_string(), x.clone())]);
        for d in [&i, &a, &b, &sig].into_iter().chain(&blobs[..6]) {
            assert!(exists(&store, d).await, "{d} was deleted");
        }
        for d in [&x, &blobs[6], &blobs[7]] {
            assert!(!exists(&store, d).await, "{d} should be gone");
        }
    }

    #[tokio::test]
    async fn a_blob_vouched_for_during_the_collection_is_kept() {
        let w = world().await;
        // The wait leaves the request below time to see the epoch (a snapshot is at
        // most REFRESH old) before anything is decided.
        let slow = Options {
            wait: 5 * epoch::REFRESH,
            ..opts(HOUR, false)
        };
        let store = w.store.clone();
        let gc = tokio::spawn(async move { collect(&store, &slow, &Quiet).await });
        // A request during the wait: it sees the epoch and vouches for the orphan.
        let watch = epoch::Watch::default();
        let mut tries = 0;
        let snap = loop {
            let s = watch.snapshot(&w.store).await.unwrap();
            if !s.quiet() {
                break s;
            }
            tries += 1;
            assert!(tries < 5, "the collection's epoch never showed");
            tokio::time::sleep(epoch::REFRESH).await;
        };
        assert_eq!(
            watch.vouch(&w.store, &snap, &w.old).await.unwrap(),
            epoch::Vouched::Safe
        );
        let r = gc.await.unwrap().unwrap();
        assert!(r.swept.is_empty(), "{r:?}");
        assert_eq!(r.rescued, 1);
        assert!(exists(&w.store, &w.old).await);
        // The collection ended: no record, no flags.
        assert!(w.store.keys(&paths::gc_root()).is_empty());
        // The next one, with nobody vouching, deletes it.
        let r = collect(&w.store, &opts(HOUR, false), &Quiet).await.unwrap();
        assert_eq!(r.swept.len(), 1);
    }

    #[tokio::test]
    async fn a_request_that_finds_its_blob_being_deleted_waits_for_the_outcome() {
        let w = world().await;
        let e = Epoch::announce(&w.store).await.unwrap();
        let (batch, rescued) = e.decide(std::slice::from_ref(&w.old)).await.unwrap();
        assert_eq!(rescued, vec![false]);
        let watch = epoch::Watch::default();
        let snap = watch.snapshot(&w.store).await.unwrap();
        assert!(!snap.quiet());
        let vouch = watch.vouch(&w.store, &snap, &w.old);
        tokio::pin!(vouch);
        // Undecided: the request waits (it can only finish once the batch is done).
        assert!(
            tokio::time::timeout(Duration::from_millis(300), &mut vouch)
                .await
                .is_err(),
            "the request did not wait for the collector"
        );
        w.store
            .delete_prefix(&paths::blob_dir(&w.old))
            .await
            .unwrap();
        e.done(batch).await.unwrap();
        assert_eq!(vouch.await.unwrap(), epoch::Vouched::Decided);
        assert!(!exists(&w.store, &w.old).await);
        e.end().await.unwrap();
    }

    #[tokio::test]
    async fn a_second_collection_does_not_start_while_one_runs_and_stale_epochs_are_cleaned() {
        let w = world().await;
        let e = Epoch::announce(&w.store).await.unwrap();
        match collect(&w.store, &opts(HOUR, false), &Quiet).await {
            Err(GcError::Busy(other)) => assert_eq!(other.id, e.id),
            r => panic!("{r:?}"),
        }
        // A dry run writes nothing and needs no epoch.
        assert_eq!(
            collect(&w.store, &opts(HOUR, true), &Quiet)
                .await
                .unwrap()
                .swept
                .len(),
            1
        );
        e.end().await.unwrap();
        // A crashed collection: an expired record and its flags, from long ago.
        let stale = "00000000001-deadbeef";
        let record = serde_json::json!({"expires": "2020-01-01T00:00:00Z", "started": "2020-01-01T00:00:00Z", "by": "x"});
        w.store
            .put(
                &paths::child(&paths::gc_epochs(), stale),
                Bytes::from(record.to_string()),
            )
            .await
            .unwrap();
        w.store
            .put(&paths::gc_rescued(stale, &w.old), Bytes::new())
            .await
            .unwrap();
        let r = collect(&w.store, &opts(HOUR, false), &Quiet).await.unwrap();
        assert_eq!(r.swept.len(), 1, "an expired epoch's flags rescue nothing");
        assert!(
            w.store.keys(&paths::gc_root()).is_empty(),
            "{:?}",
            w.store.keys(&paths::gc_root())
        );
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
