//! In-process coordination of the bundled registry: one writer at a time per upload
//! and per tag, and the running hashes of uploads. All of it is bounded: a lock lives
//! only while someone holds or waits on it, and the hash cache has a fixed number of
//! entries, so abandoned uploads cost nothing once their requests are over.

use crate::oci::Hasher;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

/// Named async locks. The map holds only weak references: the lock itself is owned by
/// its holder and its waiters, and disappears with the last of them.
#[derive(Default)]
pub struct KeyLocks {
    inner: Mutex<LockMap>,
}

#[derive(Default)]
struct LockMap {
    map: HashMap<String, Weak<tokio::sync::Mutex<()>>>,
    /// Size at which dead entries are swept. A guard removes its own entry when it is
    /// the last user; a waiter that gives up (its request cancelled) cannot, so its
    /// entry stays dead until this sweep. Doubling keeps the sweep amortised O(1).
    sweep_at: usize,
}

/// Smallest map that is ever swept: below it, dead entries are not worth a pass.
const SWEEP_MIN: usize = 64;

/// A held lock; dropping it releases the lock and forgets it when nobody else wants it.
pub struct KeyGuard<'a> {
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
    locks: &'a KeyLocks,
    key: String,
}

impl KeyLocks {
    /// Wait for the lock named `key`.
    pub async fn lock(&self, key: String) -> KeyGuard<'_> {
        let lock = {
            let mut m = self.inner.lock().unwrap_or_else(|p| p.into_inner());
            match m.map.get(&key).and_then(Weak::upgrade) {
                Some(l) => l,
                None => {
                    if m.map.len() >= m.sweep_at.max(SWEEP_MIN) {
                        m.map.retain(|_, w| w.strong_count() > 0);
                        m.sweep_at = m.map.len() * 2;
                    }
                    let l = Arc::new(tokio::sync::Mutex::new(()));
                    m.map.insert(key.clone(), Arc::downgrade(&l));
                    l
                }
            }
        };
        KeyGuard {
            guard: Some(lock.lock_owned().await),
            locks: self,
            key,
        }
    }

    /// Locks this process currently knows of (held, waited on, or not yet swept).
    pub fn len(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .map
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for KeyGuard<'_> {
    fn drop(&mut self) {
        // Release first, so that the strong count below counts only the others.
        drop(self.guard.take());
        let mut m = self.locks.inner.lock().unwrap_or_else(|p| p.into_inner());
        // New users upgrade under this same map lock, so a dead entry stays dead.
        if m.map.get(&self.key).is_some_and(|w| w.strong_count() == 0) {
            m.map.remove(&self.key);
        }
    }
}

/// How many uploads keep their running hash in memory. Each entry is a SHA-256 state
/// and an upload id (~250 bytes); an evicted or lost entry costs only reading the
/// state recorded with the upload's last commit (a rehash of the stored data for an
/// upload begun by an older version), never a wrong digest.
pub const HASH_CACHE_ENTRIES: usize = 1024;

/// The running SHA-256 of uploads by id, with the offset it covers; least recently
/// used entries are evicted beyond `HASH_CACHE_ENTRIES`.
#[derive(Default)]
pub struct HashCache {
    entries: HashMap<String, (u64, Hasher, u64)>,
    tick: u64,
}

impl HashCache {
    /// Take the upload's hash out (the caller owns it while it appends).
    pub fn take(&mut self, id: &str) -> Option<(u64, Hasher)> {
        self.entries.remove(id).map(|(off, h, _)| (off, h))
    }

    /// Keep `h`, covering the first `offset` bytes of upload `id`.
    pub fn put(&mut self, id: &str, offset: u64, h: Hasher) {
        self.tick += 1;
        self.entries.insert(id.to_string(), (offset, h, self.tick));
        if self.entries.len() > HASH_CACHE_ENTRIES {
            let oldest = self
                .entries
                .iter()
                .min_by_key(|(_, (_, _, t))| *t)
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                self.entries.remove(&k);
            }
        }
    }

    pub fn remove(&mut self, id: &str) {
        self.entries.remove(id);
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::Algorithm;

    /// Poll a future once; true when it finished.
    async fn poll_once<F: std::future::Future + Unpin>(f: &mut F) -> bool {
        std::future::poll_fn(|cx| {
            std::task::Poll::Ready(std::pin::Pin::new(&mut *f).poll(cx).is_ready())
        })
        .await
    }

    #[tokio::test]
    async fn a_lock_is_forgotten_when_nobody_holds_or_waits() {
        let locks = KeyLocks::default();
        let g = locks.lock("a".into()).await;
        assert_eq!(locks.len(), 1);
        drop(g);
        assert!(locks.is_empty());
        // A waiter keeps the entry alive past the holder, then removes it itself.
        let g = locks.lock("a".into()).await;
        let mut waiter = Box::pin(locks.lock("a".into()));
        assert!(!poll_once(&mut waiter).await);
        drop(g);
        assert_eq!(locks.len(), 1);
        drop(waiter.await);
        assert!(locks.is_empty());
    }

    #[tokio::test]
    async fn entries_of_cancelled_waiters_are_swept() {
        let locks = KeyLocks::default();
        for i in 0..10 * SWEEP_MIN {
            let g = locks.lock(format!("k{i}")).await;
            let mut waiter = Box::pin(locks.lock(format!("k{i}")));
            assert!(!poll_once(&mut waiter).await);
            drop(g);
            // The waiter's request is cancelled before it takes the lock: nobody is
            // left to remove the entry.
            drop(waiter);
        }
        assert!(locks.len() <= 2 * SWEEP_MIN, "{}", locks.len());
        // Live locks are never swept.
        let mut held = Vec::new();
        for i in 0..3 * SWEEP_MIN {
            held.push(locks.lock(format!("h{i}")).await);
        }
        assert!(locks.len() >= 3 * SWEEP_MIN);
        drop(held);
        assert!(locks.len() <= 2 * SWEEP_MIN, "{}", locks.len());
    }

    #[test]
    fn hash_cache_is_bounded_and_evicts_the_least_recently_used() {
        let mut c = HashCache::default();
        c.put("first", 1, Hasher::new(Algorithm::Sha256));
        for i in 0..HASH_CACHE_ENTRIES {
            c.put(&format!("u{i}"), 0, Hasher::new(Algorithm::Sha256));
            if i == 10 {
                // Used again: no longer the oldest.
                let (off, h) = c.take("first").unwrap();
                c.put("first", off, h);
            }
        }
        assert_eq!(c.len(), HASH_CACHE_ENTRIES);
        assert!(c.take("u0").is_none(), "oldest evicted");
        assert_eq!(c.take("first").map(|(o, _)| o), Some(1));
    }
}
