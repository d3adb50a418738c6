//! Background upkeep of a serving registry: online garbage collection and the purge of
//! abandoned uploads, each on its own interval, on one task.

use super::gc;
use super::storage::Storage;
use std::time::Duration;

/// Start the upkeep task: gc every `gc.0` sparing blobs younger than `gc.1`; removal of
/// uploads abandoned for `purge.0`, checked every `purge.1`. None when neither is on.
pub fn start<S: Storage + Clone>(
    store: S,
    gc: Option<(Duration, Duration)>,
    purge: Option<(Duration, Duration)>,
) -> Option<tokio::task::JoinHandle<()>> {
    if gc.is_none() && purge.is_none() {
        return None;
    }
    Some(tokio::spawn(async move {
        let start = tokio::time::Instant::now();
        let mut next_gc = gc.map(|(every, _)| start + every);
        let mut next_purge = purge.map(|(_, every)| start + every);
        loop {
            let Some(wake) = [next_gc, next_purge].into_iter().flatten().min() else {
                return;
            };
            tokio::time::sleep_until(wake).await;
            let now = tokio::time::Instant::now();
            if let (Some(at), Some((every, grace))) = (next_gc, gc) {
                if at <= now {
                    next_gc = Some(now + every);
                    collect(&store, grace).await;
                }
            }
            if let (Some(at), Some((age, every))) = (next_purge, purge) {
                if at <= now {
                    next_purge = Some(now + every);
                    purge_uploads(&store, age).await;
                }
            }
        }
    }))
}

async fn collect<S: Storage>(store: &S, grace: Duration) {
    match gc::collect(store, &gc::Options::new(grace), &gc::Quiet).await {
        Ok(r) => tracing::info!(
            epoch = r.epoch.as_deref().unwrap_or(""),
            manifests = r.manifests,
            kept = r.marked,
            young = r.young,
            rescued = r.rescued,
            deleted = r.swept.len(),
            bytes = r.bytes(),
            "garbage collection done"
        ),
        // Another instance (or `portcullis gc`) is collecting this storage: its run
        // covers ours.
        Err(gc::GcError::Busy(other)) => tracing::info!(
            epoch = other.id,
            by = other.by,
            "garbage collection skipped: another collection is running"
        ),
        Err(e) => {
            crate::metrics::get().storage_errors.inc();
            tracing::error!(error = %e, "garbage collection failed");
        }
    }
}

async fn purge_uploads<S: Storage>(store: &S, age: Duration) {
    match gc::purge_uploads(store, age, false).await {
        Ok(p) if !p.is_empty() => tracing::info!(count = p.len(), "purged abandoned uploads"),
        Ok(_) => {}
        Err(e) => {
            crate::metrics::get().storage_errors.inc();
            tracing::error!(error = %e, "upload purge failed");
        }
    }
}
