//! The storage the configuration chose (`registry.storage`), as one enum dispatched
//! statically: a match per call, no `Box<dyn>` per chunk, and one constructor
//! ([`open`]) so nothing above this names a backend.

use super::fs::{Fs, FsSegment};
use super::memory::{Memory, MemorySegment};
use super::object::{Object, ObjectSegment};
use super::{
    ByteStream, ErrorKind, Listing, Meta, Page, Result, Segment, SessionState, Storage,
    StorageError,
};
use crate::config::StorageKind;
use bytes::Bytes;
use std::future::Future;

/// Every storage implementation.
#[derive(Debug, Clone)]
pub enum Backend {
    Fs(Fs),
    /// S3-compatible or OSS.
    Object(Object),
    /// Tests only: not a configuration value.
    Memory(Memory),
}

/// Build the configured storage (no request is made yet).
pub fn open(config: &crate::config::Registry) -> Result<Backend> {
    match (config.storage, &config.object) {
        (StorageKind::Fs, _) | (_, None) => Ok(Backend::Fs(Fs::new(&config.root))),
        (kind, Some(o)) => Object::new(kind, o).map(Backend::Object),
    }
}

/// Run a storage future from synchronous code (start-up, reload, `check`): on the
/// process's multi-threaded runtime when there is one (so the object-store client's
/// connections live on it), else on a runtime of its own, in a thread either way.
fn run_blocking<T: Send>(f: impl Future<Output = Result<T>> + Send) -> Result<T> {
    let handle = tokio::runtime::Handle::try_current()
        .ok()
        .filter(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
    std::thread::scope(|s| {
        s.spawn(|| match handle {
            Some(h) => h.block_on(f),
            None => tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| StorageError::new(ErrorKind::Other, "start", "runtime", e))?
                .block_on(f),
        })
        .join()
        .unwrap_or_else(|_| {
            Err(StorageError::new(
                ErrorKind::Other,
                "start",
                "storage",
                std::io::Error::other("the storage thread panicked"),
            ))
        })
    })
}

impl Backend {
    /// Make the storage ready to serve and return the upload-state secret:
    /// `registry.secret` when configured, else the one kept in the storage (created
    /// once). An object store is probed first (reachable, writable, create-only
    /// writes honoured or not). Synchronous: start-up and reload build their state
    /// outside the request path.
    pub fn prepare_blocking(&self, configured: Option<&str>) -> Result<Vec<u8>> {
        let configured = configured.map(|s| s.as_bytes().to_vec());
        match (self, configured) {
            (Backend::Object(o), configured) => run_blocking(async {
                o.prepare().await?;
                match configured {
                    Some(s) => Ok(s),
                    None => o.secret().await,
                }
            }),
            (_, Some(s)) => Ok(s),
            (Backend::Fs(f), None) => f.secret_blocking(),
            (Backend::Memory(m), None) => Ok(m.secret_blocking()),
        }
    }

    /// Would this storage serve (`check`): one line saying why not. The filesystem is
    /// checked without changing it; an object store is probed (a key written and
    /// removed).
    pub fn check_blocking(&self) -> std::result::Result<String, String> {
        match self {
            Backend::Fs(f) => f.check_blocking().map(|()| String::new()),
            Backend::Memory(_) => Ok(String::new()),
            Backend::Object(o) => run_blocking(async {
                let how = o.prepare().await?;
                o.read(super::SECRET_KEY).await?;
                Ok(how)
            })
            .map(|how| match how {
                super::object::CreateOnly::Conditional => {
                    "reachable and writable; create-only writes: conditional PUT".to_string()
                }
                super::object::CreateOnly::Listing => {
                    "reachable and writable; create-only writes: claimed by listing".to_string()
                }
            })
            .map_err(|e| e.words()),
        }
    }
}

macro_rules! each {
    ($self:expr, $b:ident => $e:expr) => {
        match $self {
            Backend::Fs($b) => $e,
            Backend::Object($b) => $e,
            Backend::Memory($b) => $e,
        }
    };
}

/// A segment of whichever backend began it.
pub enum BackendSegment {
    Fs(FsSegment),
    Object(ObjectSegment),
    Memory(MemorySegment),
}

impl Segment for BackendSegment {
    async fn write(&mut self, data: Bytes) -> Result<()> {
        match self {
            BackendSegment::Fs(s) => s.write(data).await,
            BackendSegment::Object(s) => s.write(data).await,
            BackendSegment::Memory(s) => s.write(data).await,
        }
    }

    async fn commit(self, state: Bytes) -> Result<u64> {
        match self {
            BackendSegment::Fs(s) => s.commit(state).await,
            BackendSegment::Object(s) => s.commit(state).await,
            BackendSegment::Memory(s) => s.commit(state).await,
        }
    }

    async fn abort(self) -> Result<()> {
        match self {
            BackendSegment::Fs(s) => s.abort().await,
            BackendSegment::Object(s) => s.abort().await,
            BackendSegment::Memory(s) => s.abort().await,
        }
    }
}

impl Storage for Backend {
    type Segment = BackendSegment;

    async fn read(&self, key: &str) -> Result<Option<Bytes>> {
        each!(self, s => s.read(key).await)
    }

    async fn put(&self, key: &str, data: Bytes) -> Result<()> {
        each!(self, s => s.put(key, data).await)
    }

    async fn put_if_absent(&self, key: &str, data: Bytes) -> Result<()> {
        each!(self, s => s.put_if_absent(key, data).await)
    }

    async fn stat(&self, key: &str) -> Result<Option<Meta>> {
        each!(self, s => s.stat(key).await)
    }

    async fn get(&self, key: &str, range: Option<(u64, u64)>) -> Result<Option<ByteStream>> {
        each!(self, s => s.get(key, range).await)
    }

    async fn get_range(&self, key: &str, start: u64, end: u64) -> Result<Option<ByteStream>> {
        each!(self, s => s.get_range(key, start, end).await)
    }

    async fn list(&self, dir: &str, page: Page<'_>) -> Result<Listing> {
        each!(self, s => s.list(dir, page).await)
    }

    async fn list_all(&self, dir: &str) -> Result<Vec<String>> {
        each!(self, s => s.list_all(dir).await)
    }

    async fn delete(&self, key: &str) -> Result<()> {
        each!(self, s => s.delete(key).await)
    }

    async fn delete_prefix(&self, dir: &str) -> Result<()> {
        each!(self, s => s.delete_prefix(dir).await)
    }

    async fn put_flag(&self, key: &str, data: Bytes) -> Result<()> {
        each!(self, s => s.put_flag(key, data).await)
    }

    async fn delete_folder_of(&self, key: &str) -> Result<()> {
        each!(self, s => s.delete_folder_of(key).await)
    }

    async fn copy(&self, from: &str, to: &str) -> Result<()> {
        each!(self, s => s.copy(from, to).await)
    }

    async fn session(&self, dir: &str) -> Result<SessionState> {
        each!(self, s => s.session(dir).await)
    }

    async fn append(&self, dir: &str, offset: u64) -> Result<BackendSegment> {
        match self {
            Backend::Fs(s) => s.append(dir, offset).await.map(BackendSegment::Fs),
            Backend::Object(s) => s.append(dir, offset).await.map(BackendSegment::Object),
            Backend::Memory(s) => s.append(dir, offset).await.map(BackendSegment::Memory),
        }
    }

    async fn direct(&self, key: &str) -> Result<Option<BackendSegment>> {
        Ok(match self {
            Backend::Object(s) => s.direct(key).await?.map(BackendSegment::Object),
            Backend::Fs(s) => s.direct(key).await?.map(BackendSegment::Fs),
            Backend::Memory(s) => s.direct(key).await?.map(BackendSegment::Memory),
        })
    }

    async fn read_session(&self, dir: &str, end: u64) -> Result<ByteStream> {
        each!(self, s => s.read_session(dir, end).await)
    }

    async fn compose(&self, dir: &str, size: u64, to: &str) -> Result<()> {
        each!(self, s => s.compose(dir, size, to).await)
    }

    async fn redirect(&self, key: &str) -> Result<Option<String>> {
        each!(self, s => s.redirect(key).await)
    }

    async fn secret(&self) -> Result<Vec<u8>> {
        each!(self, s => s.secret().await)
    }

    async fn ready(&self) -> std::result::Result<(), String> {
        each!(self, s => s.ready().await)
    }

    fn describe(&self) -> String {
        each!(self, s => s.describe())
    }
}
