//! The password-hashing pool: a few dedicated threads fed from one FIFO queue.
//!
//! Why not `spawn_blocking`: tokio's blocking pool (64 threads in `serve`) also runs the bundled
//! registry's file I/O, and it starts a thread per waiting job, so a flood of bcrypt
//! checks would both run on every core at once and delay storage reads behind them.
//! Here at most [`Pool::size`] hashes run at a time, whatever the load, and a check whose
//! requester went away (its future was dropped: the client reset the stream) before a
//! worker reached it is skipped. bcrypt cannot be interrupted, so a check already
//! running finishes; that is the whole cost of a cancelled request.

use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, Once, OnceLock};
use tokio::sync::oneshot;

type Job = Box<dyn FnOnce() + Send>;

/// The process's hashing threads and their queue.
pub struct Pool {
    queue: Mutex<VecDeque<Job>>,
    ready: Condvar,
    size: usize,
    /// Workers actually started (thread creation can fail under resource limits).
    workers: AtomicUsize,
}

/// The process-wide pool, started on first use. One for the process rather than per
/// configuration snapshot, so a reload never adds threads.
pub fn get() -> &'static Pool {
    static POOL: OnceLock<Pool> = OnceLock::new();
    static STARTED: Once = Once::new();
    let pool = POOL.get_or_init(|| Pool {
        queue: Mutex::new(VecDeque::new()),
        ready: Condvar::new(),
        size: default_size(),
        workers: AtomicUsize::new(0),
    });
    STARTED.call_once(|| {
        for n in 0..pool.size {
            let spawned = std::thread::Builder::new()
                .name(format!("auth-hash-{n}"))
                .spawn(move || pool.work());
            match spawned {
                Ok(_) => {
                    pool.workers.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => tracing::error!(error = %e, "cannot start a password-hashing thread"),
            }
        }
    });
    pool
}

/// Half the cores, at least one: password checks may use that much of the machine
/// and no more, so requests with cached credentials and transfers keep running while
/// someone floods the server with wrong passwords.
fn default_size() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get() / 2)
        .unwrap_or(1)
        .max(1)
}

impl Pool {
    /// Hashes that can run at once.
    pub fn size(&self) -> usize {
        self.size
    }

    fn lock(&self) -> MutexGuard<'_, VecDeque<Job>> {
        // Jobs run outside the lock, so a panic can never poison it mid-update.
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Run `f` on a hashing thread, in arrival order. `None` if it panicked or no
    /// thread could be started. If the returned future is dropped before a worker
    /// takes the job, `f` never runs.
    pub async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Option<T> {
        if self.workers.load(Ordering::Relaxed) == 0 {
            return tokio::task::spawn_blocking(f).await.ok();
        }
        let (tx, rx) = oneshot::channel();
        self.lock().push_back(Box::new(move || {
            // Nobody waits for the answer any more: skip the hash.
            if tx.is_closed() {
                return;
            }
            let _ = tx.send(f());
        }));
        self.ready.notify_one();
        rx.await.ok()
    }

    fn work(&self) {
        loop {
            let job = {
                let mut q = self.lock();
                loop {
                    if let Some(job) = q.pop_front() {
                        break job;
                    }
                    q = self.ready.wait(q).unwrap_or_else(|p| p.into_inner());
                }
            };
            // A panicking check drops its sender (the waiter sees `None`); the
            // thread lives on for the next one.
            let _ = std::panic::catch_unwind(AssertUnwindSafe(job));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;
    use std::sync::Arc;
    use std::time::Duration;

    #[tokio::test]
    async fn dropped_requests_are_skipped_and_panics_are_survived() {
        let pool = get();
        // Occupy every worker until released, so the next jobs wait in the queue.
        let (release, gate) = std::sync::mpsc::channel::<()>();
        let gate = Arc::new(Mutex::new(gate));
        let mut blockers = Vec::new();
        let started = Arc::new(AtomicU64::new(0));
        for _ in 0..pool.size() {
            let gate = gate.clone();
            let started = started.clone();
            blockers.push(tokio::spawn(pool.run(move || {
                started.fetch_add(1, Ordering::SeqCst);
                let _ = gate.lock().map(|g| g.recv());
            })));
        }
        // Other tests share the pool: wait until ours hold the workers.
        while started.load(Ordering::SeqCst) < pool.size() as u64 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let ran = Arc::new(AtomicU64::new(0));
        for _ in 0..50 {
            let ran = ran.clone();
            let fut = pool.run(move || {
                ran.fetch_add(1, Ordering::SeqCst);
            });
            // Polled once (queued), then dropped: the requester went away.
            let _ = tokio::time::timeout(Duration::ZERO, fut).await;
        }
        for _ in 0..pool.size() {
            let _ = release.send(());
        }
        for b in blockers {
            b.await.expect("blocker");
        }
        assert_eq!(pool.run(|| 7).await, Some(7), "the queue drains past them");
        assert_eq!(ran.load(Ordering::SeqCst), 0, "no dropped job ran");
        assert_eq!(pool.run(|| -> u8 { panic!("boom") }).await, None);
        assert_eq!(pool.run(|| 8).await, Some(8), "workers survive a panic");
    }
}
