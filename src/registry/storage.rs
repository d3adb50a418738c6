//! The one small trait the registry API stores through (DESIGN.md "Bundled registry"):
//! atomic put, streamed get with range, stat, list, delete, links, and upload data
//! that grows by appends and is committed into place. The filesystem is the first
//! implementation; the API code assumes nothing that only a filesystem has.

pub mod fs;

use bytes::Bytes;
use futures_util::Stream;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::time::SystemTime;

/// A streamed object body.
pub type ByteStream = Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send>>;

/// What `stat` knows about an object.
#[derive(Debug, Clone, Copy)]
pub struct Meta {
    pub size: u64,
    pub modified: Option<SystemTime>,
}

/// Appends to one upload's data; the bytes are durable once `finish` returns.
pub trait Appender: Send {
    fn write(&mut self, data: Bytes) -> impl Future<Output = io::Result<()>> + Send;
    fn finish(&mut self) -> impl Future<Output = io::Result<()>> + Send;
    /// Discard everything written through this appender (a failed request's bytes must
    /// not stay in the upload, nor on a full disk): the data is as it was at `append`.
    fn abort(self) -> impl Future<Output = io::Result<()>> + Send;
}

/// Keys are `/`-separated paths below the storage root (see `paths`).
pub trait Storage: Send + Sync + 'static {
    type Appender: Appender;

    /// A small object whole (links, manifests, startedat); None when absent.
    fn read(&self, key: &str) -> impl Future<Output = io::Result<Option<Bytes>>> + Send;

    /// Store a small object atomically: readers see the old or the new content, never
    /// a part of it, even across a crash.
    fn put(&self, key: &str, data: Bytes) -> impl Future<Output = io::Result<()>> + Send;

    fn stat(&self, key: &str) -> impl Future<Output = io::Result<Option<Meta>>> + Send;

    /// Stream `[start, end)` (or all) of an object; None when absent.
    fn get(
        &self,
        key: &str,
        range: Option<(u64, u64)>,
    ) -> impl Future<Output = io::Result<Option<ByteStream>>> + Send;

    /// Names directly under a folder (files and folders), unsorted; empty when absent.
    fn list(&self, dir: &str) -> impl Future<Output = io::Result<Vec<String>>> + Send;

    /// Remove an object or a whole folder; absent is fine.
    fn delete(&self, key: &str) -> impl Future<Output = io::Result<()>> + Send;

    /// Open an upload's data object for appending (created when absent).
    fn append(&self, key: &str) -> impl Future<Output = io::Result<Self::Appender>> + Send;

    /// Move finished upload data to its final key in one step: before it the blob does
    /// not exist, after it the blob is whole.
    fn commit(&self, from: &str, to: &str) -> impl Future<Output = io::Result<()>> + Send;
}
