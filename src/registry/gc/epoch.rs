//! The handshake that makes garbage collection safe while pushes run, on any storage
//! with read-after-write consistency, with no lock and no database (DESIGN.md "Garbage
//! collection online"). Both sides live here: the collector's [`Epoch`] and the
//! requests' [`Watch`].
//!
//! # The protocol
//!
//! 1. **Announce.** A collector writes an epoch record `gc/epochs/<id>` holding its expiry
//!    (renewed while it runs), then waits [`WAIT`] before it reads anything.
//! 2. **Requests look.** A request about to vouch for blob X (answer that X exists in a
//!    repository, mount X, finish an upload onto X, accept a manifest that references
//!    X) takes a [`Snapshot`] of the announced epochs: a listing started at most
//!    [`REFRESH`] ago. For every epoch in it, the request writes "rescued X"
//!    (`gc/<id>/r/X`) and *then* reads "deleting X" (`gc/<id>/d/X`). Absent: X is safe
//!    for the whole epoch. Present: the collector is deciding X's batch; the request
//!    waits until the batch is done (`gc/<id>/done/<batch>`) and then looks again at
//!    whether X exists (deleted means absent: the manifest is refused, the upload
//!    writes X anew, HEAD says 404).
//! 3. **Commit within the lease.** A manifest PUT writes its revision link and tag before
//!    `snapshot start + LEASE`, or starts over with a fresh snapshot (the write itself is
//!    cut off at the deadline and answered 503).
//! 4. **Mark.** After the wait, the collector marks every blob reachable from every
//!    manifest revision (image indexes to their children, configs, layers; with
//!    `--delete-untagged` from every tag, plus referrers of kept subjects).
//! 5. **Decide, per batch of candidates** (unmarked, older than the grace period): write
//!    "deleting X" for each, *then* read "rescued X"; delete only those with no rescue
//!    flag, then write `done/<batch>`. Then the epoch record goes, then its flags.
//!
//! # Why no accepted manifest loses a blob
//!
//! Take a manifest PUT answered 201 that references X, and a collector that deletes X.
//! - If the PUT's snapshot listed that collector's epoch, the PUT wrote "rescued X" before
//!   reading "deleting X", and the collector wrote "deleting X" before reading "rescued X".
//!   Whichever write came first, the other side's later read sees it (read-after-write):
//!   either the collector saw the rescue and kept X, or the PUT saw "deleting X", waited
//!   for the outcome, found X gone and refused the manifest (400 MANIFEST_BLOB_UNKNOWN).
//!   Both contradict the premise.
//! - If the snapshot did not list it, the epoch record was not yet visible when the
//!   snapshot's listing began (at `s`), so the collector began marking after `s + WAIT`.
//!   The PUT's revision link and tag were written by `s + LEASE < s + WAIT`, so the
//!   marking saw the manifest and marked X: not a candidate. Contradiction.
//!
//! The same holds for the manifest's own blob, its children (an index) and, with
//! `--delete-untagged`, its revision: the collector decides untagged revisions by the same
//! handshake before it chooses blob candidates, and marks everything a rescued revision
//! reaches. A blob a request vouched for in an epoch (HEAD, mount, finished upload) is
//! kept for that epoch, so a push that checks its layers during a collection succeeds;
//! a client that learned of X before the epoch and sends its manifest after X was
//! deleted gets 400 and pushes X again (never a 201 for a manifest that cannot be
//! pulled).
//!
//! **Interrupted collections** leave only garbage: a blob is deleted only after its
//! handshake, so a crash at any point leaves undeleted garbage, stale flags and a record
//! that expires ([`EXPIRY`]); the next collection removes stale epochs' flags. A
//! collector stops deleting once its record may have expired (its last renewal older
//! than [`DELETE_WITHIN`]), so requests that stop honouring an expired epoch are never
//! wrong. A request waits at most [`OUTCOME_WAIT`] for an outcome (503 after that).
//!
//! Costs: outside collections a request pays nothing but a cached snapshot (one listing
//! of `gc/epochs` per [`REFRESH`] per process); during one, a blob costs one write and
//! one read per process and epoch (remembered afterwards).

use crate::oci::Digest;
use crate::registry::paths;
use crate::registry::storage::{concurrently, ErrorKind, Result, Storage, StorageError};
use bytes::Bytes;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// How long after its snapshot began a request may still commit what it vouched for
/// under it (a manifest's revision link and tag).
pub const LEASE: Duration = Duration::from_secs(5);
/// How long a collector waits after announcing its epoch before it reads anything:
/// longer than [`LEASE`] with room for a write sent just before the deadline to land.
pub const WAIT: Duration = Duration::from_secs(12);
/// How long a snapshot of the announced epochs is reused.
pub const REFRESH: Duration = Duration::from_secs(1);
/// An epoch record's lifetime from its last renewal; requests ignore expired records.
pub const EXPIRY: Duration = Duration::from_secs(300);
/// How often a running collector renews its record.
pub const RENEW: Duration = Duration::from_secs(30);
/// A collector deletes only while its last renewal is younger than this: an
/// [`EXPIRY`] margin of three minutes covers clock differences between machines.
pub const DELETE_WITHIN: Duration = Duration::from_secs(120);
/// Longest a request waits for the outcome of a batch it found being decided.
pub const OUTCOME_WAIT: Duration = Duration::from_secs(30);
/// Most flags written or read at once.
const PARALLEL: usize = 16;

/// An epoch record: when it expires, and who announced it (for operators).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Record {
    expires: String,
    started: String,
    by: String,
}

fn record_bytes(started: SystemTime, by: &str) -> Bytes {
    let r = Record {
        expires: crate::access_log::rfc3339(SystemTime::now() + EXPIRY),
        started: crate::access_log::rfc3339(started),
        by: by.to_string(),
    };
    Bytes::from(serde_json::to_vec(&r).unwrap_or_default())
}

fn parse_time(s: &str) -> Option<SystemTime> {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(SystemTime::from)
}

/// A collection someone announced, as a reader sees it.
#[derive(Debug, Clone)]
pub struct Announced {
    pub id: String,
    pub started: Option<SystemTime>,
    pub expires: Option<SystemTime>,
    pub by: String,
}

impl Announced {
    /// Its collector renewed the record lately (it renews every [`RENEW`]), and is not a
    /// process of this machine known to be gone: a collection worth waiting for.
    pub fn running(&self, now: SystemTime) -> bool {
        let renewed = self.expires.map(|e| e - EXPIRY);
        let lately = renewed.is_none_or(|r| now.duration_since(r).unwrap_or_default() < 2 * RENEW);
        lately && !self.gone_here()
    }

    /// Announced by a process of this machine and process namespace that no longer
    /// exists (killed, crashed): it will delete nothing more, so its epoch can be
    /// dropped at once. Unknown places (another machine, another container sharing the
    /// host name, an unreadable `/proc`) are never judged.
    pub fn gone_here(&self) -> bool {
        let Some(here) = place() else { return false };
        let Some((who, rest)) = self.by.split_once(" pid ") else {
            return false;
        };
        let Some((pid, there)) = rest.split_once(' ') else {
            return false;
        };
        who == hostname().unwrap_or_default()
            && there == here
            && pid.parse::<u32>().is_ok_and(|p| {
                p != std::process::id() && !std::path::Path::new(&format!("/proc/{p}")).exists()
            })
    }

    fn live(&self, now: SystemTime) -> bool {
        // A record that cannot be read is honoured until its id's time says it is old.
        let expires = self
            .expires
            .or_else(|| id_time(&self.id).map(|t| t + EXPIRY));
        expires.is_none_or(|e| now < e)
    }
}

/// Epoch ids start with the announcing time (milliseconds, hex), so stale flag folders
/// can be aged without their record.
fn id_time(id: &str) -> Option<SystemTime> {
    let ms = u64::from_str_radix(id.split('-').next()?, 16).ok()?;
    Some(SystemTime::UNIX_EPOCH + Duration::from_millis(ms))
}

/// Every announced epoch whose record has not expired.
pub async fn announced<S: Storage>(store: &S) -> Result<Vec<Announced>> {
    let ids = store.list_all(&paths::gc_epochs()).await?;
    let now = SystemTime::now();
    let mut out = Vec::new();
    for id in ids {
        // None: ended meanwhile.
        if let Some(a) = read_announced(store, &id).await? {
            if a.live(now) {
                out.push(a);
            }
        }
    }
    Ok(out)
}

/// One epoch's record as a reader sees it; None when there is none (ended). A record
/// that cannot be parsed still counts, aged by its id.
async fn read_announced<S: Storage>(store: &S, id: &str) -> Result<Option<Announced>> {
    let Some(bytes) = store.read(&paths::child(&paths::gc_epochs(), id)).await? else {
        return Ok(None);
    };
    let rec: Option<Record> = serde_json::from_slice(&bytes).ok();
    Ok(Some(Announced {
        started: rec.as_ref().and_then(|r| parse_time(&r.started)),
        expires: rec.as_ref().and_then(|r| parse_time(&r.expires)),
        by: rec.map(|r| r.by).unwrap_or_default(),
        id: id.to_string(),
    }))
}

/// Remove what crashed or expired collections left: records past their expiry or whose
/// collector is a process of this machine that is gone, and flag folders with no live
/// record. Returns how many epochs were cleaned.
pub async fn clean_stale<S: Storage>(store: &S) -> Result<usize> {
    let now = SystemTime::now();
    // Listed before the live records are read: a folder or record that appears
    // meanwhile belongs to a collection announced meanwhile, and is not listed.
    let records = store.list_all(&paths::gc_epochs()).await?;
    let folders = store.list_all(&paths::gc_root()).await?;
    let live: HashSet<String> = announced(store)
        .await?
        .into_iter()
        .filter(|a| !a.gone_here())
        .map(|a| a.id)
        .collect();
    let mut cleaned = 0;
    for id in records {
        if !live.contains(&id) {
            store
                .delete(&paths::child(&paths::gc_epochs(), &id))
                .await?;
        }
    }
    for name in folders {
        if name == "epochs" || live.contains(&name) {
            continue;
        }
        // A request with an old snapshot may still write a rescue flag into a folder
        // just ended; only folders older than a snapshot's use are removed.
        let old = id_time(&name)
            .and_then(|t| now.duration_since(t).ok())
            .is_none_or(|age| age > LEASE);
        if old {
            store.delete_prefix(&paths::gc_flags(&name)).await?;
            cleaned += 1;
        }
    }
    Ok(cleaned)
}

/// The collector's side: an announced epoch, renewed every [`RENEW`] by
/// [`Epoch::keep_renewed`] while the collection runs. Every method takes `&self`, so the
/// renewal runs beside the work in the same task.
pub struct Epoch<'a, S: Storage> {
    store: &'a S,
    pub id: String,
    started: SystemTime,
    by: String,
    /// The last renewal that landed: when it began (monotonic and wall clock; a
    /// suspended machine stops the first, not the second).
    renewed: Mutex<(Instant, SystemTime)>,
    /// A renewal came too late once: requests may have treated the epoch as expired
    /// meanwhile, so nothing may be deleted any more, even after a later renewal.
    lapsed: std::sync::atomic::AtomicBool,
    batches: std::sync::atomic::AtomicU64,
}

impl<'a, S: Storage> Epoch<'a, S> {
    /// Write the record. The caller then waits [`WAIT`] before reading the registry.
    pub async fn announce(store: &'a S) -> Result<Epoch<'a, S>> {
        let started = SystemTime::now();
        let ms = started
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis();
        // Short: flag keys hold it, and some stores limit key length.
        let id = format!("{ms:011x}-{:04x}", rand::random::<u16>());
        let by = format!(
            "{} pid {} {}",
            hostname().unwrap_or_else(|| "?".into()),
            std::process::id(),
            place().unwrap_or_else(|| "(?)".into())
        );
        let e = Epoch {
            store,
            id,
            started,
            by,
            renewed: Mutex::new((Instant::now(), started)),
            lapsed: Default::default(),
            batches: Default::default(),
        };
        e.write().await?;
        Ok(e)
    }

    async fn write(&self) -> Result<()> {
        self.store
            .put(
                &paths::child(&paths::gc_epochs(), &self.id),
                record_bytes(self.started, &self.by),
            )
            .await
    }

    /// How long since the last renewal began, by the longer of the two clocks.
    fn since_renewal(&self) -> Duration {
        let (at, wall) = *self.renewed.lock().unwrap_or_else(|p| p.into_inner());
        let wall = SystemTime::now().duration_since(wall).unwrap_or_default();
        at.elapsed().max(wall)
    }

    /// Renew the record. A renewal later than [`DELETE_WITHIN`] is refused and marks
    /// the epoch lapsed for good: meanwhile requests may have stopped honouring it.
    pub async fn renew(&self) -> Result<()> {
        if self.since_renewal() >= DELETE_WITHIN {
            self.lapsed.store(true, std::sync::atomic::Ordering::SeqCst);
            return self.may_delete();
        }
        let began = (Instant::now(), SystemTime::now());
        self.write().await?;
        *self.renewed.lock().unwrap_or_else(|p| p.into_inner()) = began;
        Ok(())
    }

    /// Renew every [`RENEW`], forever: run it beside the collection (`select!`) and
    /// drop it when the collection is over. A failed renewal is retried at the next
    /// tick; deletions stop by themselves when renewals fail for too long.
    pub async fn keep_renewed(&self) {
        loop {
            tokio::time::sleep(RENEW).await;
            if let Err(e) = self.renew().await {
                tracing::warn!(epoch = %self.id, error = %e, "garbage collection: epoch record not renewed");
            }
        }
    }

    /// Refuse to delete when requests may already treat the epoch as expired.
    fn may_delete(&self) -> Result<()> {
        let lapsed = self.lapsed.load(std::sync::atomic::Ordering::SeqCst);
        if !lapsed && self.since_renewal() < DELETE_WITHIN {
            return Ok(());
        }
        self.lapsed.store(true, std::sync::atomic::Ordering::SeqCst);
        Err(StorageError::new(
            ErrorKind::Other,
            "gc",
            paths::child(&paths::gc_epochs(), &self.id),
            std::io::Error::other(
                "the collection's epoch record could not be renewed in time; stopped before deleting more",
            ),
        ))
    }

    /// The handshake for one batch of candidates: write "deleting X" for each, then
    /// read "rescued X". Returns the batch and, in order, whether each was rescued.
    /// Deleting what was not rescued is then safe until [`Epoch::done`], each
    /// deletion after [`Epoch::check`].
    pub async fn decide(&self, candidates: &[Digest]) -> Result<(u64, Vec<bool>)> {
        self.may_delete()?;
        let batch = 1 + self
            .batches
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let id = self.id.as_str();
        let store = self.store;
        let marker = Bytes::from(batch.to_string());
        let writes = candidates
            .iter()
            .map(|d| put(store, paths::gc_deleting(id, d), marker.clone()))
            .collect();
        concurrently(writes, PARALLEL).await?;
        // Every "deleting" flag is written before any "rescued" flag is read.
        let reads = candidates
            .iter()
            .map(|d| exists(store, paths::gc_rescued(id, d)))
            .collect();
        Ok((batch, concurrently(reads, PARALLEL).await?))
    }

    /// The batch is decided and carried out: requests waiting on it go on.
    pub async fn done(&self, batch: u64) -> Result<()> {
        self.store
            .put_flag(&paths::gc_done(&self.id, batch), Bytes::new())
            .await
    }

    /// Before each deletion: still within the epoch's safe time?
    pub fn check(&self) -> Result<()> {
        self.may_delete()
    }

    /// End the collection: the record first (requests stop writing flags), then the
    /// flags.
    pub async fn end(self) -> Result<()> {
        self.store
            .delete(&paths::child(&paths::gc_epochs(), &self.id))
            .await?;
        self.store.delete_prefix(&paths::gc_flags(&self.id)).await
    }
}

async fn put<S: Storage>(store: &S, key: String, data: Bytes) -> Result<()> {
    store.put_flag(&key, data).await
}

async fn exists<S: Storage>(store: &S, key: String) -> Result<bool> {
    Ok(store.stat(&key).await?.is_some())
}

/// Which boot of which machine, and which process namespace, this process runs in:
/// `(<boot id> <pid namespace>)`. Pids are only comparable within one.
/// Read once per process: it is asked on every poll of a waiting request.
fn place() -> Option<String> {
    static PLACE: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    PLACE
        .get_or_init(|| {
            let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
            let ns = std::fs::read_link("/proc/self/ns/pid").ok()?;
            Some(format!("({} {})", boot.trim(), ns.display()))
        })
        .clone()
}

/// The machine's host name, read once per process.
fn hostname() -> Option<String> {
    static HOST: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    HOST.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
    })
    .clone()
}

/// The epochs announced as one request saw them, and when its look began.
#[derive(Debug, Clone)]
pub struct Snapshot {
    epochs: Arc<[String]>,
    taken: Instant,
}

impl Snapshot {
    /// No collection is running (as of the snapshot).
    pub fn quiet(&self) -> bool {
        self.epochs.is_empty()
    }

    /// When the look began.
    pub fn taken(&self) -> Instant {
        self.taken
    }

    /// By when what was vouched for under this snapshot must be committed.
    pub fn deadline(&self) -> Instant {
        self.taken + LEASE
    }
}

/// The requests' side, one per registry: the cached snapshot, and which blobs this
/// process has already vouched for in which epoch (bounded).
#[derive(Default)]
pub struct Watch {
    /// The last snapshot, read without a lock by every request.
    current: arc_swap::ArcSwapOption<Snapshot>,
    /// Held by the one request that refreshes a stale snapshot.
    snapshot: tokio::sync::Mutex<Option<Snapshot>>,
    vouched: Mutex<HashSet<(Arc<str>, Digest)>>,
}

/// Most (epoch, blob) pairs remembered as vouched for; beyond, the set starts over
/// (it is only a saving: forgetting costs one more write and read).
const VOUCHED_MAX: usize = 100_000;

/// What vouching found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vouched {
    /// Nothing can delete it during the snapshot's epochs.
    Safe,
    /// A collection was deciding it and is through: it may be gone; look again.
    Decided,
}

impl Watch {
    /// The announced epochs, as of at most [`REFRESH`] ago.
    pub async fn snapshot<S: Storage>(&self, store: &S) -> Result<Snapshot> {
        if let Some(s) = self.current.load().as_deref() {
            if s.taken.elapsed() < REFRESH {
                return Ok(s.clone());
            }
        }
        let mut cached = self.snapshot.lock().await;
        if let Some(s) = cached.as_ref().filter(|s| s.taken.elapsed() < REFRESH) {
            return Ok(s.clone());
        }
        let taken = Instant::now();
        let epochs: Arc<[String]> = announced(store).await?.into_iter().map(|a| a.id).collect();
        let s = Snapshot { epochs, taken };
        {
            let mut v = self.vouched.lock().unwrap_or_else(|p| p.into_inner());
            v.retain(|(e, _)| s.epochs.iter().any(|x| **x == **e));
        }
        *cached = Some(s.clone());
        self.current.store(Some(Arc::new(s.clone())));
        Ok(s)
    }

    /// Vouch for `d` in every epoch of the snapshot (see the protocol above). Errors
    /// with a transient storage error when a batch's outcome takes longer than
    /// [`OUTCOME_WAIT`].
    pub async fn vouch<S: Storage>(
        &self,
        store: &S,
        snap: &Snapshot,
        d: &Digest,
    ) -> Result<Vouched> {
        let mut found = Vouched::Safe;
        for epoch in snap.epochs.iter() {
            let key: (Arc<str>, Digest) = (Arc::from(epoch.as_str()), d.clone());
            if self.remembered(&key) {
                continue;
            }
            store
                .put_flag(&paths::gc_rescued(epoch, d), Bytes::new())
                .await?;
            // Written "rescued" before reading "deleting": the handshake's order.
            if let Some(batch) = store.read(&paths::gc_deleting(epoch, d)).await? {
                let batch: u64 = String::from_utf8_lossy(&batch).trim().parse().unwrap_or(0);
                wait_for_outcome(store, epoch, batch).await?;
                found = Vouched::Decided;
            }
            self.remember(key);
        }
        Ok(found)
    }

    /// Take a snapshot and vouch under it for blobs `ds`, which the caller then looks
    /// at (whether they exist) and, for a manifest, commits by the snapshot's deadline.
    pub async fn vouch_now<'d, S: Storage>(
        &self,
        store: &S,
        ds: impl IntoIterator<Item = &'d Digest>,
    ) -> Result<Snapshot> {
        let snap = self.snapshot(store).await?;
        if !snap.quiet() {
            let all = ds
                .into_iter()
                .map(|d| self.vouch(store, &snap, d))
                .collect();
            concurrently(all, PARALLEL).await?;
        }
        Ok(snap)
    }

    fn remembered(&self, key: &(Arc<str>, Digest)) -> bool {
        self.vouched
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(key)
    }

    fn remember(&self, key: (Arc<str>, Digest)) {
        let mut v = self.vouched.lock().unwrap_or_else(|p| p.into_inner());
        if v.len() >= VOUCHED_MAX {
            v.clear();
        }
        v.insert(key);
    }
}

/// Wait until the collector is through with `batch` (or its epoch ended or expired).
async fn wait_for_outcome<S: Storage>(store: &S, epoch: &str, batch: u64) -> Result<()> {
    let start = Instant::now();
    loop {
        if store.stat(&paths::gc_done(epoch, batch)).await?.is_some() {
            return Ok(());
        }
        // Waiting ends when the collection ended, expired, or its collector is a
        // process of this machine that is gone (it deletes nothing more).
        let live = read_announced(store, epoch)
            .await?
            .is_some_and(|a| a.live(SystemTime::now()) && !a.gone_here());
        if !live {
            return Ok(());
        }
        if start.elapsed() > OUTCOME_WAIT {
            return Err(StorageError::new(
                ErrorKind::Transient,
                "gc",
                paths::gc_done(epoch, batch),
                std::io::Error::other("a garbage collection is deciding this blob; retry"),
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::storage::memory::Memory;

    fn set_renewed<S: Storage>(e: &Epoch<'_, S>, ago_monotonic: Duration, ago_wall: Duration) {
        *e.renewed.lock().unwrap() = (
            Instant::now().checked_sub(ago_monotonic).unwrap(),
            SystemTime::now() - ago_wall,
        );
    }

    #[tokio::test]
    async fn an_epoch_renewed_too_late_never_deletes_again() {
        let store = Memory::new();
        let e = Epoch::announce(&store).await.unwrap();
        assert!(e.check().is_ok());
        // The collector stalled past DELETE_WITHIN: requests may have let the epoch go.
        set_renewed(&e, DELETE_WITHIN, DELETE_WITHIN);
        assert!(e.renew().await.is_err(), "a late renewal must be refused");
        assert!(e.check().is_err());
        // Even a renewal that looks fresh again does not bring it back.
        set_renewed(&e, Duration::ZERO, Duration::ZERO);
        assert!(e.check().is_err(), "a lapsed epoch deleted again");
        assert!(e.decide(&[Digest::sha256_of(b"x")]).await.is_err());
    }

    #[tokio::test]
    async fn a_suspended_machine_counts_by_the_wall_clock() {
        let store = Memory::new();
        let e = Epoch::announce(&store).await.unwrap();
        // The monotonic clock stood still (suspend); the wall clock moved on.
        set_renewed(&e, Duration::ZERO, DELETE_WITHIN);
        assert!(e.check().is_err());
    }

    #[tokio::test]
    async fn renewals_on_time_keep_the_epoch_alive() {
        let store = Memory::new();
        let e = Epoch::announce(&store).await.unwrap();
        set_renewed(&e, DELETE_WITHIN / 2, DELETE_WITHIN / 2);
        e.renew().await.unwrap();
        assert!(e.check().is_ok());
        assert!(e.since_renewal() < DELETE_WITHIN / 2);
    }
}
