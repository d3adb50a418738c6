//! Hints: what this process read from storage moments ago — that a repository links a
//! blob (or holds a manifest revision) and how large the blob is — and the bytes of
//! small blobs, so that pulling the same blob again answers without a storage round
//! trip (on the filesystem, without any hop to a blocking thread: the profile of a
//! small-blob GET was dominated by those hops).
//!
//! A hint is never a source of truth for existence after a delete:
//! - **Only what was found is kept**, never an absence: a push anywhere is seen at once.
//! - **A delete in this process** (blob or manifest DELETE) forgets its hints before it
//!   answers.
//! - **Garbage collection**, in any process on the storage: a hint is used only while
//!   the request's snapshot of announced collections (`gc::epoch::Watch`) is quiet, and
//!   only for [`TTL`] after the quiet snapshot under which it was read. A collection
//!   deletes nothing until [`gc::epoch::WAIT`](super::gc::epoch::WAIT) after announcing
//!   itself, and it was not announced when that snapshot was taken, so every hint has
//!   expired before the first deletion of a collection it did not see; while one is
//!   announced, requests bypass (and drop) the hints and vouch as before.
//! - **Another instance's DELETE, an offline collection, a hand edit**: nothing tells
//!   this process, so a hint outlives them by at most [`TTL`] (distribution's own
//!   in-memory blob-descriptor cache keeps such entries for good).
//!
//! Blob bytes are content-addressed: kept bytes can never be wrong, and they are served
//! only after the blob's presence was established (from a live hint or storage).

use crate::oci::{Digest, Repository};
use bytes::Bytes;
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a hint lives after the quiet snapshot it was read under. Shorter than
/// garbage collection's wait between announcing and marking, with room to spare.
pub const TTL: Duration = Duration::from_secs(5);

/// Blobs up to this size have their bytes kept.
pub const SMALL: u64 = 64 << 10;

/// The bytes of small blobs kept, in all (first kept, first dropped).
const CONTENT_BUDGET: usize = 8 << 20;

/// Hints kept per shard; a full shard starts over (it only costs a storage read each).
const SHARD_MAX: usize = 8_192;
const SHARDS: usize = 16;

/// What a hint says about a (repository, digest).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// The repository links the blob (layer link or manifest revision) and its data is
    /// present: the value is its size.
    Blob,
    /// The digest is a manifest revision of the repository.
    Manifest,
}

struct Hint {
    repository: Box<str>,
    digest: Digest,
    kind: Kind,
    size: u64,
    until: Instant,
}

/// The hints of one registry (a reload starts with none).
pub struct Hints {
    shards: Box<[Mutex<HashMap<u64, Hint>>]>,
    keys: std::collections::hash_map::RandomState,
    content: Mutex<Content>,
    /// Bumped by every [`Hints::forget`]: a read that began before a forget must not
    /// leave a hint after it (the read may have seen what was then deleted).
    forgets: AtomicU64,
}

/// Taken before a storage read whose outcome may become a hint.
#[derive(Debug, Clone, Copy)]
pub struct Reading {
    began: Instant,
    forgets: u64,
}

#[derive(Default)]
struct Content {
    blobs: HashMap<Digest, Bytes>,
    order: VecDeque<Digest>,
    bytes: usize,
}

impl Default for Hints {
    fn default() -> Hints {
        Hints {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            keys: Default::default(),
            content: Mutex::default(),
            forgets: AtomicU64::new(0),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Hints {
    fn key(&self, repo: &Repository, d: &Digest, kind: Kind) -> (u64, usize) {
        let mut h = self.keys.build_hasher();
        repo.as_str().hash(&mut h);
        d.hash(&mut h);
        kind.hash(&mut h);
        let k = h.finish();
        (k, (k as usize) % SHARDS)
    }

    /// The live hint for (repo, d, kind): the blob's size.
    pub fn get(&self, repo: &Repository, d: &Digest, kind: Kind) -> Option<u64> {
        let (k, shard) = self.key(repo, d, kind);
        let shard = lock(&self.shards[shard]);
        let h = shard.get(&k)?;
        (h.until > Instant::now()
            && h.kind == kind
            && h.digest == *d
            && *h.repository == *repo.as_str())
        .then_some(h.size)
    }

    /// Call before the storage read whose outcome [`Hints::put`] may keep.
    pub fn reading(&self) -> Reading {
        Reading {
            began: Instant::now(),
            forgets: self.forgets.load(Ordering::SeqCst),
        }
    }

    /// Remember what a storage read begun at `read` said, under a quiet snapshot taken
    /// at `quiet`: the hint lives [`TTL`] from the older of the two (see the module's
    /// argument), and not at all if something was forgotten since the read began.
    pub fn put(
        &self,
        repo: &Repository,
        d: &Digest,
        kind: Kind,
        size: u64,
        read: Reading,
        quiet: Instant,
    ) {
        let until = read.began.min(quiet) + TTL;
        if until <= Instant::now() {
            return;
        }
        let (k, shard) = self.key(repo, d, kind);
        let mut shard = lock(&self.shards[shard]);
        // Checked under the shard's lock, which `forget` takes after counting.
        if self.forgets.load(Ordering::SeqCst) != read.forgets {
            return;
        }
        if shard.len() >= SHARD_MAX {
            shard.clear();
        }
        shard.insert(
            k,
            Hint {
                repository: repo.as_str().into(),
                digest: d.clone(),
                kind,
                size,
                until,
            },
        );
    }

    /// Forget every hint about (repo, d): it is being deleted.
    pub fn forget(&self, repo: &Repository, d: &Digest) {
        self.forgets.fetch_add(1, Ordering::SeqCst);
        for kind in [Kind::Blob, Kind::Manifest] {
            let (k, shard) = self.key(repo, d, kind);
            lock(&self.shards[shard]).remove(&k);
        }
    }

    /// Forget every hint (a collection is announced).
    pub fn clear(&self) {
        for s in self.shards.iter() {
            let mut s = lock(s);
            if !s.is_empty() {
                s.clear();
            }
        }
    }

    /// The kept bytes of blob `d`.
    pub fn bytes(&self, d: &Digest) -> Option<Bytes> {
        lock(&self.content).blobs.get(d).cloned()
    }

    /// Keep the bytes of a small blob (checked against its digest by the caller's
    /// storage contract: blob data is only ever written once its digest verified).
    pub fn keep_bytes(&self, d: &Digest, bytes: &Bytes) {
        if bytes.len() as u64 > SMALL {
            return;
        }
        let mut c = lock(&self.content);
        if c.blobs.contains_key(d) {
            return;
        }
        while c.bytes + bytes.len() > CONTENT_BUDGET {
            let Some(old) = c.order.pop_front() else {
                break;
            };
            if let Some(b) = c.blobs.remove(&old) {
                c.bytes -= b.len();
            }
        }
        c.bytes += bytes.len();
        c.order.push_back(d.clone());
        // Owned, so a slice of a larger buffer does not keep that buffer alive.
        c.blobs.insert(d.clone(), Bytes::copy_from_slice(bytes));
    }

    /// Hints and kept bytes (for tests).
    pub fn entries(&self) -> (usize, usize) {
        let hints = self.shards.iter().map(|s| lock(s).len()).sum();
        (hints, lock(&self.content).blobs.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo(s: &str) -> Repository {
        Repository::parse(s).unwrap()
    }

    #[test]
    fn a_hint_names_its_repository_digest_and_kind_and_expires() {
        let h = Hints::default();
        let (a, b) = (Digest::sha256_of(b"a"), Digest::sha256_of(b"b"));
        let now = Instant::now();
        h.put(&repo("x/y"), &a, Kind::Blob, 7, h.reading(), now);
        assert_eq!(h.get(&repo("x/y"), &a, Kind::Blob), Some(7));
        assert_eq!(h.get(&repo("x/y"), &a, Kind::Manifest), None);
        assert_eq!(h.get(&repo("x/z"), &a, Kind::Blob), None);
        assert_eq!(h.get(&repo("x/y"), &b, Kind::Blob), None);
        h.forget(&repo("x/y"), &a);
        assert_eq!(h.get(&repo("x/y"), &a, Kind::Blob), None);
        // Read under a snapshot older than the TTL: never kept.
        h.put(&repo("x/y"), &b, Kind::Blob, 1, h.reading(), now - TTL);
        assert_eq!(h.get(&repo("x/y"), &b, Kind::Blob), None);
        // A read that began before a forget (of anything) leaves no hint.
        let read = h.reading();
        h.forget(&repo("x/y"), &a);
        h.put(&repo("x/y"), &b, Kind::Blob, 1, read, now);
        assert_eq!(h.get(&repo("x/y"), &b, Kind::Blob), None);
        h.put(&repo("x/y"), &b, Kind::Blob, 1, h.reading(), now);
        assert_eq!(h.get(&repo("x/y"), &b, Kind::Blob), Some(1));
        h.clear();
        assert_eq!(h.entries().0, 0);
    }

    #[test]
    fn kept_bytes_stay_within_the_budget() {
        let h = Hints::default();
        let blob = Bytes::from(vec![1u8; SMALL as usize]);
        let n = CONTENT_BUDGET / SMALL as usize;
        let ds: Vec<Digest> = (0..2 * n)
            .map(|i| Digest::sha256_of(&i.to_be_bytes()))
            .collect();
        for d in &ds {
            h.keep_bytes(d, &blob);
        }
        assert_eq!(h.entries().1, n);
        assert!(h.bytes(&ds[0]).is_none(), "the first kept went first");
        assert_eq!(h.bytes(&ds[2 * n - 1]).as_deref(), Some(&blob[..]));
        h.keep_bytes(&ds[0], &Bytes::from(vec![0u8; SMALL as usize + 1]));
        assert!(h.bytes(&ds[0]).is_none(), "a large blob is not kept");
    }
}
