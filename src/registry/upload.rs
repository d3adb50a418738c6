//! Upload sessions over the storage seam: offsets, the running hash, one segment per
//! request body, and the compose into the blob at the closing PUT. HTTP stays with the
//! handlers: they turn an [`UploadError`] into the answer.
//!
//! Where the state lives: the storage's session (its committed size and the SHA-256
//! state recorded with the last segment) is the truth, so any instance sharing the
//! storage continues an upload without reading its data again. The running hash is
//! also cached in this process ([`HashCache`]) to skip that read; only a session whose
//! record holds no usable state (begun by an older version) is rehashed.

use super::locks::{HashCache, KeyGuard, KeyLocks};
use super::storage::{ErrorKind, Segment, Storage, StorageError};
use crate::body::Body;
use crate::oci::{Algorithm, Digest, Hasher};
use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::BodyExt;
use std::sync::Mutex;

/// Why an append or a finish did not go through; the handler picks the answer.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The client's body failed mid-way; what arrived before is kept.
    #[error("request body: {0}")]
    Body(String),
    /// More bytes than the Content-Range announced; none of them is kept.
    #[error("body longer than its Content-Range")]
    TooLong,
    /// Another request moved the session first (two appends at one offset): the
    /// session is at `size`; this request's bytes are gone.
    #[error("the upload is at {size}")]
    Moved { size: u64 },
    /// The data does not have the digest the client named; the upload is cancelled.
    #[error("uploaded content has digest {actual}, not {expected}")]
    Digest { actual: Digest, expected: Digest },
}

/// What this process keeps about uploads: one writer at a time per upload id (a fast
/// path; the storage's create-only commits are the guard across processes) and the
/// cached running hashes. Both are bounded (see `locks`).
#[derive(Default)]
pub struct Uploads {
    locks: KeyLocks,
    hashes: Mutex<HashCache>,
}

/// One upload opened by a request: its lock held, its committed size read under it.
pub struct Session<'a, S: Storage> {
    store: &'a S,
    uploads: &'a Uploads,
    dir: String,
    id: String,
    size: u64,
    /// The hash state recorded with the last commit (empty: none).
    state: Bytes,
    _guard: KeyGuard<'a>,
}

impl Uploads {
    /// (upload locks, cached hashes) held now; for tests and metrics.
    pub fn entries(&self) -> (usize, usize) {
        (self.locks.len(), self.cache().len())
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashCache> {
        self.hashes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Take the upload's lock and read its committed size under it.
    pub async fn open<'a, S: Storage>(
        &'a self,
        store: &'a S,
        dir: String,
        id: &str,
    ) -> Result<Session<'a, S>, StorageError> {
        let guard = self.locks.lock(id.to_string()).await;
        let now = store.session(&dir).await?;
        Ok(Session {
            store,
            uploads: self,
            dir,
            id: id.to_string(),
            size: now.size,
            state: now.state,
            _guard: guard,
        })
    }

    /// Bytes committed so far (the status GET; no lock needed to read).
    pub async fn size<S: Storage>(store: &S, dir: &str) -> Result<u64, StorageError> {
        Ok(store.session(dir).await?.size)
    }

    /// Cancel an upload: nothing of it stays.
    pub async fn cancel<S: Storage>(
        &self,
        store: &S,
        dir: &str,
        id: &str,
    ) -> Result<(), StorageError> {
        let _g = self.locks.lock(id.to_string()).await;
        self.forget(id);
        store.abort(dir).await
    }

    /// The upload is over (committed or cancelled): drop its cached hash.
    pub fn forget(&self, id: &str) {
        self.cache().remove(id);
    }
}

/// Stream a body whose digest the client gave up front straight into its blob key
/// (object stores: no session, no copy), hashing as it streams; the blob becomes
/// visible only when the digest matches. `w` is the storage's direct writer for `key`.
pub async fn put_direct<S: Storage>(
    store: &S,
    mut w: S::Segment,
    expected: &Digest,
    key: &str,
    body: Body,
) -> Result<u64, UploadError> {
    let mut h = Hasher::new(expected.algorithm);
    let mut n = 0u64;
    let mut body = body;
    let mut failure = None;
    while let Some(frame) = body.frame().await {
        let data = match frame.map(|f| f.into_data()) {
            Ok(Ok(d)) if !d.is_empty() => d,
            Ok(_) => continue,
            Err(e) => {
                failure = Some(UploadError::Body(e.to_string()));
                break;
            }
        };
        h.update(&data);
        n += data.len() as u64;
        if let Err(e) = w.write(data).await {
            failure = Some(e.into());
            break;
        }
    }
    if failure.is_none() {
        let actual = h.finish();
        if &actual != expected {
            failure = Some(UploadError::Digest {
                actual,
                expected: expected.clone(),
            });
        }
    }
    if let Some(f) = failure {
        if let Err(e) = w.abort().await {
            tracing::warn!(error = %e, "could not take back a direct blob write");
        }
        return Err(f);
    }
    if store.stat(key).await?.is_some_and(|m| m.size == n) {
        // Already there (the digest names the bytes): nothing to replace.
        w.abort().await?;
        return Ok(n);
    }
    w.commit(Bytes::new()).await?;
    Ok(n)
}

/// Hash the first `size` committed bytes of a session.
async fn hash_session<S: Storage>(
    store: &S,
    dir: &str,
    size: u64,
    alg: Algorithm,
) -> Result<Hasher, StorageError> {
    let mut h = Hasher::new(alg);
    if size > 0 {
        let mut s = store.read_session(dir, size).await?;
        while let Some(chunk) = s.next().await {
            h.update(&chunk.map_err(|e| StorageError::io("rehash", dir, e))?);
        }
    }
    Ok(h)
}

impl<'a, S: Storage> Session<'a, S> {
    /// Bytes committed (the offset the next chunk must start at).
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The SHA-256 of what is committed: cached, restored from the last commit's
    /// record, or (no usable record) rehashed from storage.
    async fn hasher(&self) -> Result<Hasher, StorageError> {
        let cached = self.uploads.cache().take(&self.id);
        if let Some((off, h)) = cached {
            if off == self.size {
                return Ok(h);
            }
        }
        if self.size == 0 {
            return Ok(Hasher::new(Algorithm::Sha256));
        }
        if let Some(h) = Hasher::restore(&self.state) {
            return Ok(h);
        }
        hash_session(self.store, &self.dir, self.size, Algorithm::Sha256).await
    }

    /// The session's size now, after another request moved it.
    async fn moved(&self) -> UploadError {
        match self.store.session(&self.dir).await {
            Ok(s) => UploadError::Moved { size: s.size },
            Err(e) => e.into(),
        }
    }

    fn storage_or_moved(e: StorageError) -> Result<(), StorageError> {
        if e.kind == ErrorKind::PreconditionFailed {
            Ok(())
        } else {
            Err(e)
        }
    }

    /// Append a request body as one segment, hashing as it streams (at most `limit`
    /// bytes when the client gave a range). A storage failure, a body longer than its
    /// range or a lost race takes back every byte of this request (the upload is as
    /// before it); a body cut short by the client keeps what arrived, which the client
    /// can see and resume from. Returns the new size.
    pub async fn append(&mut self, body: Body, limit: Option<u64>) -> Result<u64, UploadError> {
        let mut hasher = self.hasher().await?;
        // What the cache gets back if this request's bytes are taken back.
        let before = hasher.clone();
        let mut written = 0u64;
        let mut body = body;
        let mut segment: Option<S::Segment> = None;
        let mut failure: Option<UploadError> = None;
        let mut undo = false;
        while let Some(frame) = body.frame().await {
            let data = match frame {
                Ok(f) => match f.into_data() {
                    Ok(d) => d,
                    Err(_) => continue,
                },
                Err(e) => {
                    failure = Some(UploadError::Body(e.to_string()));
                    break;
                }
            };
            if data.is_empty() {
                continue;
            }
            if limit.is_some_and(|l| written + data.len() as u64 > l) {
                failure = Some(UploadError::TooLong);
                undo = true;
                break;
            }
            if segment.is_none() {
                match self.store.append(&self.dir, self.size).await {
                    Ok(s) => segment = Some(s),
                    Err(e) => {
                        failure = Some(match Self::storage_or_moved(e) {
                            Ok(()) => self.moved().await,
                            Err(e) => e.into(),
                        });
                        break;
                    }
                }
            }
            if let Some(s) = segment.as_mut() {
                if let Err(e) = s.write(data.clone()).await {
                    failure = Some(e.into());
                    undo = true;
                    break;
                }
            }
            hasher.update(&data);
            written += data.len() as u64;
        }
        let Some(segment) = segment else {
            self.uploads.cache().put(&self.id, self.size, before);
            return match failure {
                Some(f) => Err(f),
                None => Ok(self.size),
            };
        };
        if undo {
            if let Err(e) = segment.abort().await {
                // The data may now hold bytes nobody hashed: no cached hash, so the next
                // request starts from what is really committed (its recorded state).
                tracing::error!(error = %e, upload = %self.id, "could not take back a failed append");
                return Err(failure.unwrap_or(e.into()));
            }
            self.uploads.cache().put(&self.id, self.size, before);
            return Err(failure.unwrap_or(UploadError::TooLong));
        }
        let state = Bytes::from(hasher.save().unwrap_or_default());
        match segment.commit(state.clone()).await {
            Ok(size) => {
                self.size = size;
                self.state = state;
            }
            Err(e) => {
                // The segment is gone (the backend took it back): as before.
                self.uploads.cache().put(&self.id, self.size, before);
                return Err(match Self::storage_or_moved(e) {
                    Ok(()) => self.moved().await,
                    Err(e) => e.into(),
                });
            }
        }
        self.uploads.cache().put(&self.id, self.size, hasher);
        match failure {
            Some(f) => Err(f),
            None => Ok(self.size),
        }
    }

    /// Verify the committed data against `expected` and compose it into `blob`
    /// (create-only; a blob already there with this size is the same bytes). On a
    /// mismatch the upload is cancelled, as distribution does. The caller links the
    /// blob and then ends the session.
    pub async fn finish(self, expected: &Digest, blob: &str) -> Result<u64, UploadError> {
        let actual = match expected.algorithm {
            Algorithm::Sha256 => self.hasher().await?.finish(),
            // sha512: one more pass over the committed bytes.
            alg => hash_session(self.store, &self.dir, self.size, alg)
                .await?
                .finish(),
        };
        self.uploads.forget(&self.id);
        if &actual != expected {
            let _ = self.store.abort(&self.dir).await;
            return Err(UploadError::Digest {
                actual,
                expected: expected.clone(),
            });
        }
        match self.store.compose(&self.dir, self.size, blob).await {
            Ok(()) => Ok(self.size),
            Err(e) if e.kind == ErrorKind::PreconditionFailed => Err(self.moved().await),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::storage::memory::Memory;

    fn body(parts: &[&'static [u8]]) -> Body {
        let frames: Vec<Result<http_body::Frame<Bytes>, crate::body::BoxError>> = parts
            .iter()
            .map(|p| Ok(http_body::Frame::data(Bytes::from_static(p))))
            .collect();
        crate::body::boxed(http_body_util::StreamBody::new(futures_util::stream::iter(
            frames,
        )))
    }

    #[tokio::test]
    async fn chunks_hash_and_compose_and_a_stale_offset_moves() {
        let store = Memory::new();
        let uploads = Uploads::default();
        let mut s = uploads.open(&store, "u".into(), "u").await.unwrap();
        assert_eq!(s.append(body(&[b"hello ", b"wor"]), None).await.unwrap(), 9);
        assert!(matches!(
            s.append(body(&[b"ld!"]), Some(2)).await,
            Err(UploadError::TooLong)
        ));
        assert_eq!(s.size(), 9);
        drop(s);
        let mut s = uploads.open(&store, "u".into(), "u").await.unwrap();
        assert_eq!(s.append(body(&[b"ld"]), Some(2)).await.unwrap(), 11);
        let d = Digest::sha256_of(b"hello world");
        s.finish(&d, "blob").await.unwrap();
        assert_eq!(store.read("blob").await.unwrap().unwrap(), "hello world");

        // Another writer got to the offset first: this one is told where it is.
        let mut a = uploads.open(&store, "v".into(), "v").await.unwrap();
        let mut seg = store.append("v", 0).await.unwrap();
        seg.write(Bytes::from_static(b"abc")).await.unwrap();
        seg.commit(Bytes::new()).await.unwrap();
        assert!(matches!(
            a.append(body(&[b"xyz"]), None).await,
            Err(UploadError::Moved { size: 3 })
        ));
    }
}
