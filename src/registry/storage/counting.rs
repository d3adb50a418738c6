//! A store that counts what its listings cost (calls and names returned) and how many
//! objects it was asked to read (reads, stats, gets) around another store: how tests
//! and `examples/catalog_pages.rs` show that a catalog page reads about its own size,
//! and that a repeated pull asks storage nothing. Everything else passes straight
//! through.

use super::{ByteStream, Listing, Meta, Page, Result, SessionState, Storage};
use bytes::Bytes;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// `inner`, counting its `list` calls and the names they return.
#[derive(Debug, Default)]
pub struct Counting<S> {
    pub inner: S,
    calls: AtomicU64,
    names: AtomicU64,
    looks: AtomicU64,
}

impl<S> Counting<S> {
    pub fn new(inner: S) -> Counting<S> {
        Counting {
            inner,
            calls: AtomicU64::new(0),
            names: AtomicU64::new(0),
            looks: AtomicU64::new(0),
        }
    }

    /// (list calls, names returned) since the last `reset`.
    pub fn counts(&self) -> (u64, u64) {
        (self.calls.load(Relaxed), self.names.load(Relaxed))
    }

    /// Reads, stats and gets so far.
    pub fn looks(&self) -> u64 {
        self.looks.load(Relaxed)
    }

    pub fn reset(&self) {
        self.calls.store(0, Relaxed);
        self.names.store(0, Relaxed);
    }
}

impl<S: Storage> Storage for Counting<S> {
    type Segment = S::Segment;

    async fn read(&self, key: &str) -> Result<Option<Bytes>> {
        self.looks.fetch_add(1, Relaxed);
        self.inner.read(key).await
    }

    async fn put(&self, key: &str, data: Bytes) -> Result<()> {
        self.inner.put(key, data).await
    }

    async fn put_if_absent(&self, key: &str, data: Bytes) -> Result<()> {
        self.inner.put_if_absent(key, data).await
    }

    async fn stat(&self, key: &str) -> Result<Option<Meta>> {
        self.looks.fetch_add(1, Relaxed);
        self.inner.stat(key).await
    }

    async fn get(&self, key: &str, range: Option<(u64, u64)>) -> Result<Option<ByteStream>> {
        self.looks.fetch_add(1, Relaxed);
        self.inner.get(key, range).await
    }

    async fn get_range(&self, key: &str, start: u64, end: u64) -> Result<Option<ByteStream>> {
        self.looks.fetch_add(1, Relaxed);
        self.inner.get_range(key, start, end).await
    }

    async fn list(&self, dir: &str, page: Page<'_>) -> Result<Listing> {
        let l = self.inner.list(dir, page).await?;
        self.calls.fetch_add(1, Relaxed);
        self.names.fetch_add(l.names.len() as u64, Relaxed);
        Ok(l)
    }

    // `list_all` is left to the trait's default, page by page through `list`, so
    // every name any listing returns is counted (an object store's own `list_all`
    // would bypass the count).

    async fn delete(&self, key: &str) -> Result<()> {
        self.inner.delete(key).await
    }

    async fn delete_prefix(&self, dir: &str) -> Result<()> {
        self.inner.delete_prefix(dir).await
    }

    async fn put_flag(&self, key: &str, data: Bytes) -> Result<()> {
        self.inner.put_flag(key, data).await
    }

    async fn delete_folder_of(&self, key: &str) -> Result<()> {
        self.inner.delete_folder_of(key).await
    }

    async fn copy(&self, from: &str, to: &str) -> Result<()> {
        self.inner.copy(from, to).await
    }

    async fn session(&self, dir: &str) -> Result<SessionState> {
        self.inner.session(dir).await
    }

    async fn append(&self, dir: &str, offset: u64) -> Result<S::Segment> {
        self.inner.append(dir, offset).await
    }

    async fn direct(&self, key: &str) -> Result<Option<S::Segment>> {
        self.inner.direct(key).await
    }

    async fn read_session(&self, dir: &str, end: u64) -> Result<ByteStream> {
        self.inner.read_session(dir, end).await
    }

    async fn compose(&self, dir: &str, size: u64, to: &str) -> Result<()> {
        self.inner.compose(dir, size, to).await
    }

    async fn redirect(&self, key: &str) -> Result<Option<String>> {
        self.inner.redirect(key).await
    }

    async fn abort(&self, dir: &str) -> Result<()> {
        self.inner.abort(dir).await
    }

    async fn secret(&self) -> Result<Vec<u8>> {
        self.inner.secret().await
    }

    async fn ready(&self) -> std::result::Result<(), String> {
        self.inner.ready().await
    }

    fn describe(&self) -> String {
        self.inner.describe()
    }
}
