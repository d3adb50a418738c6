//! The verified-credential cache: SHA-256 keys, bounded size, time-to-live.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Remembers credentials that verified, keyed by a hash (never the password itself).
pub struct Cache {
    entries: Mutex<HashMap<[u8; 32], Instant>>,
    capacity: usize,
    ttl: Duration,
    hits: AtomicU64,
}

impl Cache {
    pub fn new(capacity: usize, ttl: Duration) -> Cache {
        Cache {
            entries: Mutex::new(HashMap::new()),
            capacity: capacity.max(1),
            ttl,
            hits: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Instant>> {
        // A panic while holding this lock cannot leave the map inconsistent
        // (single insert/remove calls), so poisoning is safe to ignore.
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// True if `key` was verified less than the TTL before `now`.
    pub fn hit(&self, key: &[u8; 32], now: Instant) -> bool {
        let mut map = self.lock();
        match map.get(key) {
            Some(&at) if now.saturating_duration_since(at) < self.ttl => {
                self.hits.fetch_add(1, Ordering::Relaxed);
                true
            }
            Some(_) => {
                map.remove(key);
                false
            }
            None => false,
        }
    }

    /// Remember a verified key. When full, expired entries go first, then the oldest.
    pub fn insert(&self, key: [u8; 32], now: Instant) {
        let mut map = self.lock();
        if map.len() >= self.capacity && !map.contains_key(&key) {
            let ttl = self.ttl;
            map.retain(|_, at| now.saturating_duration_since(*at) < ttl);
            if map.len() >= self.capacity {
                if let Some(oldest) = map.iter().min_by_key(|(_, at)| **at).map(|(k, _)| *k) {
                    map.remove(&oldest);
                }
            }
        }
        map.insert(key, now);
    }

    pub fn clear(&self) {
        self.lock().clear();
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hit_then_expiry() {
        let c = Cache::new(10, Duration::from_secs(60));
        let t0 = Instant::now();
        let k = [1u8; 32];
        assert!(!c.hit(&k, t0));
        c.insert(k, t0);
        assert!(c.hit(&k, t0 + Duration::from_secs(59)));
        assert!(
            !c.hit(&k, t0 + Duration::from_secs(60)),
            "expired at the TTL"
        );
        assert!(c.is_empty(), "expired entry is dropped");
        assert_eq!(c.hits(), 1);
    }

    #[test]
    fn bounded_size_evicts_expired_then_oldest() {
        let c = Cache::new(3, Duration::from_secs(60));
        let t0 = Instant::now();
        for i in 0..3u8 {
            c.insert([i; 32], t0 + Duration::from_secs(u64::from(i)));
        }
        c.insert([9; 32], t0 + Duration::from_secs(10));
        assert_eq!(c.len(), 3);
        assert!(
            !c.hit(&[0; 32], t0 + Duration::from_secs(10)),
            "oldest evicted"
        );
        assert!(c.hit(&[1; 32], t0 + Duration::from_secs(10)));
        // Everything but the newest has expired: the insert sweeps them.
        c.insert([8; 32], t0 + Duration::from_secs(65));
        assert_eq!(c.len(), 2);
    }
}
