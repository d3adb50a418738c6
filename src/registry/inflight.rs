//! What one process coordinates in memory among the registry's requests in flight: one
//! writer at a time per upload and per tag, the running hashes of uploads, and the
//! memory budget of manifest bodies. It lives as long as the process, across reloads,
//! so a PATCH before a SIGHUP and one after it share one lock. Every part is bounded
//! (see `locks`).

use super::locks::{KeyGuard, KeyLocks};
use super::upload::Uploads;
use std::sync::Arc;

/// Memory for manifest PUTs in flight, across the process. A manifest must be whole in
/// memory to be parsed and hashed, so without a budget N concurrent PUTs cost
/// N × `registry.max_manifest_size` and more. Each PUT reserves twice its size (body and
/// parsed form): 32 MiB admits four manifests of the default 4 MiB limit, or thousands of ordinary (few
/// KiB) ones, at a time; the others wait for their turn.
pub const MANIFEST_BUDGET: usize = 32 << 20;

pub struct InFlight {
    /// One writer at a time per upload in this process, and the running hashes of
    /// uploads (see `upload`).
    pub uploads: Uploads,
    /// One writer at a time per `<repository>:<tag>` (tag PUT and DELETE).
    tag_locks: KeyLocks,
    /// Permits are bytes of manifest bodies being held in memory (`MANIFEST_BUDGET`).
    pub manifest_budget: Arc<tokio::sync::Semaphore>,
}

impl Default for InFlight {
    fn default() -> InFlight {
        InFlight {
            uploads: Uploads::default(),
            tag_locks: KeyLocks::default(),
            manifest_budget: Arc::new(tokio::sync::Semaphore::new(MANIFEST_BUDGET)),
        }
    }
}

impl InFlight {
    /// Wait for the lock of `tag` in `repository`.
    pub async fn lock_tag(&self, repository: &str, tag: &str) -> KeyGuard<'_> {
        // Neither a repository name nor a tag holds ':', so the key is unambiguous.
        self.tag_locks.lock(format!("{repository}:{tag}")).await
    }
}
