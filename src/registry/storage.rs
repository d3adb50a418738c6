//! The storage seam (DESIGN.md "Bundled registry", "Scale-out and object storage"):
//! finished objects (read, atomic put, put-if-absent, ranged streaming get, stat, paged
//! list, delete, copy), upload sessions shaped for object stores (segments committed
//! create-only with the hash state, composed into the final key), typed storage errors,
//! and the storage-level operations (secret, readiness, description). The filesystem,
//! object stores (S3, OSS) and the in-memory store implement it; [`Backend`] is the one the configuration chooses,
//! dispatched statically (no `Box<dyn>` on the blob path). The API code assumes nothing
//! that only a filesystem has.

pub mod backend;
#[doc(hidden)]
pub mod conformance;
#[doc(hidden)]
pub mod counting;
pub mod fs;
pub mod memory;
pub mod object;

pub use backend::{open, Backend};

use bytes::Bytes;
use futures_util::Stream;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::time::SystemTime;

/// A streamed object body.
pub type ByteStream = Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send>>;

pub type Result<T, E = StorageError> = std::result::Result<T, E>;

/// What went wrong, as far as a caller must tell failures apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    NotFound,
    /// A create-only write found the key taken, or a session is not where the caller
    /// thought (another append at that offset won).
    PreconditionFailed,
    /// Out of space or quota: an operator must act (507 upstream).
    NoSpace,
    /// Worth retrying as is (timeouts, throttling, resets).
    Transient,
    Other,
}

/// A storage failure: its kind, the operation and the key (or path) it was about, so
/// one log line says everything. Never carries credentials.
#[derive(Debug, thiserror::Error)]
#[error("{op} {key}: {source}")]
pub struct StorageError {
    pub kind: ErrorKind,
    pub op: &'static str,
    pub key: String,
    #[source]
    pub source: io::Error,
}

impl StorageError {
    pub fn new(
        kind: ErrorKind,
        op: &'static str,
        key: impl Into<String>,
        source: io::Error,
    ) -> Self {
        StorageError {
            kind,
            op,
            key: key.into(),
            source,
        }
    }

    /// An I/O failure, its kind read from the error.
    pub fn io(op: &'static str, key: impl Into<String>, source: io::Error) -> Self {
        StorageError::new(classify(&source), op, key, source)
    }

    pub fn precondition(op: &'static str, key: impl Into<String>, why: &str) -> Self {
        StorageError::new(
            ErrorKind::PreconditionFailed,
            op,
            key,
            io::Error::new(io::ErrorKind::AlreadyExists, why.to_string()),
        )
    }

    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The message without the OS error number (for `check` and start-up lines).
    pub fn words(&self) -> String {
        format!(
            "{} {}: {}",
            self.op,
            self.key,
            crate::files::io_error_words(&self.source)
        )
    }
}

fn classify(e: &io::Error) -> ErrorKind {
    use io::ErrorKind as K;
    match e.kind() {
        K::NotFound => ErrorKind::NotFound,
        K::StorageFull | K::QuotaExceeded => ErrorKind::NoSpace,
        K::AlreadyExists => ErrorKind::PreconditionFailed,
        K::Interrupted | K::TimedOut | K::WouldBlock | K::ConnectionReset => ErrorKind::Transient,
        _ => ErrorKind::Other,
    }
}

/// What `stat` knows about an object.
#[derive(Debug, Clone, Copy)]
pub struct Meta {
    pub size: u64,
    pub modified: Option<SystemTime>,
}

/// One page of a listing: names after `start_after`, at most `limit` (0: no limit).
#[derive(Debug, Clone, Copy, Default)]
pub struct Page<'a> {
    pub start_after: Option<&'a str>,
    pub limit: usize,
}

/// Names directly under a folder (objects and sub-folders, as an object store lists
/// with a `/` delimiter), sorted; `truncated` when more follow the last one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listing {
    pub names: Vec<String>,
    pub truncated: bool,
}

/// Where an upload session stands: the bytes committed so far and the opaque state
/// recorded with the last commit (the caller's hash state; empty before any commit).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionState {
    pub size: u64,
    pub state: Bytes,
}

/// The record a segment commit stores: its length and the caller's state after it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct Record {
    pub length: u64,
    /// Hex of the opaque state bytes.
    pub state: String,
}

impl Record {
    pub(crate) fn encode(length: u64, state: &[u8]) -> Bytes {
        let r = Record {
            length,
            state: hex::encode(state),
        };
        Bytes::from(serde_json::to_vec(&r).unwrap_or_default())
    }

    pub(crate) fn decode(b: &[u8]) -> Option<(u64, Bytes)> {
        let r: Record = serde_json::from_slice(b).ok()?;
        Some((r.length, Bytes::from(hex::decode(r.state).ok()?)))
    }
}

/// One segment of an upload session being written at its offset. Bytes are streamed
/// through (bounded memory outside the memory store); nothing is part of the session
/// before `commit`.
pub trait Segment: Send {
    fn write(&mut self, data: Bytes) -> impl Future<Output = Result<()>> + Send;

    /// Make the written bytes the session's next segment, create-only at its offset:
    /// of two segments at one offset exactly one commits, the other gets
    /// `PreconditionFailed` and leaves nothing behind. Returns the new session size.
    fn commit(self, state: Bytes) -> impl Future<Output = Result<u64>> + Send;

    /// Throw the segment away: the session is as it was before `append`.
    fn abort(self) -> impl Future<Output = Result<()>> + Send;
}

/// Keys are `/`-separated paths below the storage root (see `paths`); a session is
/// named by its folder (`_uploads/<id>`), whose inner layout belongs to the backend.
pub trait Storage: Send + Sync + 'static {
    type Segment: Segment;

    /// A small object whole (links, manifests, startedat); None when absent.
    fn read(&self, key: &str) -> impl Future<Output = Result<Option<Bytes>>> + Send;

    /// Store a small object atomically: readers see the old or the new content, never
    /// a part of it, even across a crash.
    fn put(&self, key: &str, data: Bytes) -> impl Future<Output = Result<()>> + Send;

    /// Store an object only if the key is free: of concurrent creators exactly one
    /// wins, the others get `PreconditionFailed`.
    fn put_if_absent(&self, key: &str, data: Bytes) -> impl Future<Output = Result<()>> + Send;

    fn stat(&self, key: &str) -> impl Future<Output = Result<Option<Meta>>> + Send;

    /// Stream `[start, end)` (or all) of an object; None when absent.
    fn get(
        &self,
        key: &str,
        range: Option<(u64, u64)>,
    ) -> impl Future<Output = Result<Option<ByteStream>>> + Send;

    /// Stream `[start, end)` of an object whose size the caller has just read
    /// (`end` ≤ that size), without looking it up again (an object store's `get`
    /// asks for the size first); None when it has gone meanwhile.
    fn get_range(
        &self,
        key: &str,
        start: u64,
        end: u64,
    ) -> impl Future<Output = Result<Option<ByteStream>>> + Send {
        self.get(key, Some((start, end)))
    }

    /// One page of the names directly under `dir`; empty when absent.
    fn list(&self, dir: &str, page: Page<'_>) -> impl Future<Output = Result<Listing>> + Send;

    /// Remove one object; absent is fine.
    fn delete(&self, key: &str) -> impl Future<Output = Result<()>> + Send;

    /// Remove everything under `dir`; absent is fine.
    fn delete_prefix(&self, dir: &str) -> impl Future<Output = Result<()>> + Send;

    /// Write a small marker object: replaced whole for readers like [`Storage::put`], but
    /// it needs only to be visible to other processes while they run, not to survive a
    /// power loss (garbage collection's flags), so a filesystem may skip the fsyncs.
    fn put_flag(&self, key: &str, data: Bytes) -> impl Future<Output = Result<()>> + Send {
        self.put(key, data)
    }

    /// Remove the folder holding `key`, which holds nothing else (a blob's `data`, a
    /// link): on an object store, where folders are only key prefixes, one delete of
    /// the key instead of a listing and a delete. Absent is fine.
    fn delete_folder_of(&self, key: &str) -> impl Future<Output = Result<()>> + Send {
        let dir = key.rsplit_once('/').map_or(key, |(d, _)| d).to_string();
        async move { self.delete_prefix(&dir).await }
    }

    /// Copy an object to another key (replacing it).
    fn copy(&self, from: &str, to: &str) -> impl Future<Output = Result<()>> + Send;

    /// Where the session in `dir` stands (size 0 when nothing was committed).
    fn session(&self, dir: &str) -> impl Future<Output = Result<SessionState>> + Send;

    /// Begin a segment at `offset`. `PreconditionFailed` when the session is not at
    /// `offset` (or, where the backend claims first, another append holds it).
    fn append(&self, dir: &str, offset: u64) -> impl Future<Output = Result<Self::Segment>> + Send;

    /// Stream the first `end` committed bytes of a session (to rehash them).
    fn read_session(&self, dir: &str, end: u64) -> impl Future<Output = Result<ByteStream>> + Send;

    /// Put the session's `size` committed bytes at `to`, create-only: an object
    /// already there with that size is success (same digest, same bytes). Nothing of
    /// the session is removed but its data; `abort` clears the rest.
    fn compose(&self, dir: &str, size: u64, to: &str) -> impl Future<Output = Result<()>> + Send;

    /// A segment written straight to `key` (a blob whose digest the client gave up
    /// front), invisible until `commit` and gone after `abort`; its state is ignored.
    /// None: the backend has nothing cheaper than a session (the filesystem appends in
    /// place and links the finished file).
    fn direct(&self, _key: &str) -> impl Future<Output = Result<Option<Self::Segment>>> + Send {
        async { Ok(None) }
    }

    /// Where a client may fetch `key` itself (a presigned URL) instead of through this
    /// process; None: serve it here.
    fn redirect(&self, _key: &str) -> impl Future<Output = Result<Option<String>>> + Send {
        async { Ok(None) }
    }

    /// End a session (finished or cancelled): nothing of it remains.
    fn abort(&self, dir: &str) -> impl Future<Output = Result<()>> + Send {
        self.delete_prefix(dir)
    }

    /// Every name under `dir`, page after page.
    fn list_all(&self, dir: &str) -> impl Future<Output = Result<Vec<String>>> + Send {
        async move {
            let mut out: Vec<String> = Vec::new();
            loop {
                let page = Page {
                    start_after: out.last().map(String::as_str),
                    limit: 1000,
                };
                let l = self.list(dir, page).await?;
                let done = !l.truncated || l.names.is_empty();
                out.extend(l.names);
                if done {
                    return Ok(out);
                }
            }
        }
    }

    /// The upload-state secret kept in the storage (`portcullis.secret` in the
    /// root), created once: of instances starting together, one creates it and all
    /// use that one.
    fn secret(&self) -> impl Future<Output = Result<Vec<u8>>> + Send {
        async move {
            if let Some(s) = self.read(SECRET_KEY).await?.filter(|s| !s.is_empty()) {
                return Ok(s.to_vec());
            }
            match self.put_if_absent(SECRET_KEY, new_secret()).await {
                Ok(()) => {}
                Err(e) if e.kind == ErrorKind::PreconditionFailed => {}
                Err(e) => return Err(e),
            }
            self.read(SECRET_KEY)
                .await?
                .map(|s| s.to_vec())
                .ok_or_else(|| StorageError::io("read", SECRET_KEY, io::ErrorKind::NotFound.into()))
        }
    }

    /// Can the storage take requests now (`/readyz`)? Why not, when it cannot.
    fn ready(&self) -> impl Future<Output = std::result::Result<(), String>> + Send;

    /// One line for the status line and `check` (never a credential).
    fn describe(&self) -> String;
}

/// Where the secret lives below the root: the name existing data folders already use.
pub const SECRET_KEY: &str = "portcullis.secret";

/// Run storage operations `at_once` at a time: their results in order, or the first
/// error (the operations still running are dropped).
pub async fn concurrently<T, F>(ops: Vec<F>, at_once: usize) -> Result<Vec<T>>
where
    F: Future<Output = Result<T>>,
{
    use futures_util::{StreamExt, TryStreamExt};
    futures_util::stream::iter(ops)
        .buffered(at_once)
        .try_collect()
        .await
}

/// A fresh secret: 32 random bytes, hex (the format of existing secret files).
pub fn new_secret() -> Bytes {
    use rand::RngCore;
    let mut key = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut key);
    Bytes::from(hex::encode(key))
}
