//! The storage the configuration chose (`registry.storage`), as one enum dispatched
//! statically: a match per call, no `Box<dyn>` per chunk, and one constructor
//! ([`open`]) so nothing above this names a backend.

use super::fs::{Fs, FsSegment};
use super::memory::{Memory, MemorySegment};
use super::{ByteStream, Listing, Meta, Page, Result, Segment, SessionState, Storage};
use bytes::Bytes;

/// Every storage implementation.
#[derive(Debug, Clone)]
pub enum Backend {
    Fs(Fs),
    /// Tests only: not a configuration value.
    Memory(Memory),
}

/// Build the configured storage. `s3` never gets here: the configuration refuses it
/// until the object-store backend exists.
pub fn open(config: &crate::config::Registry) -> Backend {
    match config.storage {
        crate::config::StorageKind::Fs => Backend::Fs(Fs::new(&config.root)),
    }
}

impl Backend {
    /// The upload-state secret: `registry.secret` when configured, else the one kept
    /// in the storage (created once). Without a runtime: start-up and reload build
    /// their state on a plain thread.
    pub fn secret_blocking(&self, configured: Option<&str>) -> Result<Vec<u8>> {
        if let Some(s) = configured {
            return Ok(s.as_bytes().to_vec());
        }
        match self {
            Backend::Fs(f) => f.secret_blocking(),
            Backend::Memory(m) => Ok(m.secret_blocking()),
        }
    }
}

impl Backend {
    /// Would this storage serve, as far as can be told without changing it (`check`):
    /// one line saying why not.
    pub fn check_blocking(&self) -> std::result::Result<(), String> {
        match self {
            Backend::Fs(f) => f.check_blocking(),
            Backend::Memory(_) => Ok(()),
        }
    }
}

macro_rules! each {
    ($self:expr, $b:ident => $e:expr) => {
        match $self {
            Backend::Fs($b) => $e,
            Backend::Memory($b) => $e,
        }
    };
}

/// A segment of whichever backend began it.
pub enum BackendSegment {
    Fs(FsSegment),
    Memory(MemorySegment),
}

impl Segment for BackendSegment {
    async fn write(&mut self, data: Bytes) -> Result<()> {
        match self {
            BackendSegment::Fs(s) => s.write(data).await,
            BackendSegment::Memory(s) => s.write(data).await,
        }
    }

    async fn commit(self, state: Bytes) -> Result<u64> {
        match self {
            BackendSegment::Fs(s) => s.commit(state).await,
            BackendSegment::Memory(s) => s.commit(state).await,
        }
    }

    async fn abort(self) -> Result<()> {
        match self {
            BackendSegment::Fs(s) => s.abort().await,
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

    async fn list(&self, dir: &str, page: Page<'_>) -> Result<Listing> {
        each!(self, s => s.list(dir, page).await)
    }

    async fn delete(&self, key: &str) -> Result<()> {
        each!(self, s => s.delete(key).await)
    }

    async fn delete_prefix(&self, dir: &str) -> Result<()> {
        each!(self, s => s.delete_prefix(dir).await)
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
            Backend::Memory(s) => s.append(dir, offset).await.map(BackendSegment::Memory),
        }
    }

    async fn read_session(&self, dir: &str, end: u64) -> Result<ByteStream> {
        each!(self, s => s.read_session(dir, end).await)
    }

    async fn compose(&self, dir: &str, size: u64, to: &str) -> Result<()> {
        each!(self, s => s.compose(dir, size, to).await)
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
