//! Upload sessions on an object store, with no upload id kept between requests and
//! no reliance on `ListMultipartUploads` (some stores lack it):
//!
//! - `<dir>/seg/<O>-<nonce>`: the bytes one append brought at offset O, streamed into
//!   a new immutable object (multipart with a fixed part size: bounded memory).
//! - `<dir>/commit/<O>`: written create-only once the segment is whole, holding the
//!   segment's length, its nonce and the caller's state (the serialised SHA-256 state
//!   after it). Of two appends at one offset exactly one commit succeeds; the loser
//!   deletes its segment and reports `PreconditionFailed`.
//! - The session's size is the last commit's end. Only committed segments count, so
//!   the bytes of an append cut short (a dropped request, a killed instance) are never
//!   part of the session; they go with the session's folder.
//! - `compose` writes the committed segments into the final key in order: one
//!   server-side copy for a single segment up to 512 MiB, else a multipart write whose parts are
//!   copied server-side (`UploadPartCopy`) where the store has it, streamed through
//!   in bounded memory where not.

use super::{nonce, Object, PART};
use crate::registry::storage::{
    ByteStream, ErrorKind, Result, Segment, SessionState, Storage, StorageError,
};
use bytes::Bytes;
use futures_util::StreamExt;
use std::io;

/// The largest range one server-side copy request takes. S3 allows 5 GiB, but a copy
/// is one request the store works on before it answers (a 5 GiB copy outlasted the
/// client's 60 s timeout on s3s-fs): pieces of 512 MiB answer within seconds, and
/// 10,000 parts of them still reach 5 TiB, S3's largest object.
const COPY_MAX: u64 = 512 << 20;

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Record {
    length: u64,
    nonce: String,
    /// Hex of the caller's state bytes.
    state: String,
}

/// A committed segment of a session.
#[derive(Debug, Clone)]
struct Committed {
    offset: u64,
    length: u64,
    nonce: String,
}

fn segment_key(dir: &str, offset: u64, nonce: &str) -> String {
    format!("{dir}/seg/{offset}-{nonce}")
}

fn commit_key(dir: &str, offset: u64) -> String {
    format!("{dir}/commit/{offset}")
}

fn damaged(dir: &str, why: String) -> StorageError {
    StorageError::new(ErrorKind::Other, "session", dir, io::Error::other(why))
}

/// The offsets that have a commit record, in order.
async fn commit_offsets(store: &Object, dir: &str) -> Result<Vec<u64>> {
    let mut offsets: Vec<u64> = store
        .list_all(&format!("{dir}/commit"))
        .await?
        .iter()
        .filter_map(|n| n.parse().ok())
        .collect();
    offsets.sort_unstable();
    Ok(offsets)
}

/// The commit record at `offset`; None when it was removed (the session is being
/// cancelled or finished).
async fn record(store: &Object, dir: &str, offset: u64) -> Result<Option<Record>> {
    let Some(raw) = store.read(&commit_key(dir, offset)).await? else {
        return Ok(None);
    };
    serde_json::from_slice(&raw)
        .map(Some)
        .map_err(|e| damaged(dir, format!("commit record {offset}: {e}")))
}

/// Every committed segment in offset order, checked to follow one another from 0.
async fn committed(store: &Object, dir: &str) -> Result<Vec<Committed>> {
    let offsets = commit_offsets(store, dir).await?;
    let mut out: Vec<Committed> = Vec::with_capacity(offsets.len());
    for offset in offsets {
        let Some(r) = record(store, dir, offset).await? else {
            return Err(StorageError::new(
                ErrorKind::NotFound,
                "session",
                dir,
                io::ErrorKind::NotFound.into(),
            ));
        };
        let end = out.last().map_or(0, |c| c.offset + c.length);
        if offset != end {
            return Err(damaged(
                dir,
                format!("commit at {offset} follows the end {end}"),
            ));
        }
        out.push(Committed {
            offset,
            length: r.length,
            nonce: r.nonce,
        });
    }
    Ok(out)
}

pub(super) async fn state(store: &Object, dir: &str) -> Result<SessionState> {
    // The last record alone says where the session stands: list, read one.
    let Some(&offset) = commit_offsets(store, dir).await?.last() else {
        return Ok(SessionState::default());
    };
    let Some(r) = record(store, dir, offset).await? else {
        return Ok(SessionState::default());
    };
    Ok(SessionState {
        size: offset + r.length,
        state: Bytes::from(hex::decode(&r.state).unwrap_or_default()),
    })
}

pub(super) async fn append(store: &Object, dir: &str, offset: u64) -> Result<ObjectSegment> {
    let now = state(store, dir).await?;
    if now.size != offset {
        return Err(StorageError::precondition(
            "append",
            dir,
            &format!("the session is at {}, not {offset}", now.size),
        ));
    }
    let nonce = nonce();
    Ok(ObjectSegment {
        store: store.clone(),
        key: segment_key(dir, offset, &nonce),
        commit: Some(commit_key(dir, offset)),
        offset,
        nonce,
        writer: None,
        written: 0,
    })
}

/// A segment whose object is the final key itself, with no commit record: a multipart
/// upload completed (or a small object PUT) only at `commit`, so nothing is visible
/// before the caller has verified the digest.
pub(super) fn direct(store: &Object, key: &str) -> ObjectSegment {
    ObjectSegment {
        store: store.clone(),
        key: key.to_string(),
        commit: None,
        offset: 0,
        nonce: String::new(),
        writer: None,
        written: 0,
    }
}

/// One append's segment object being written.
pub struct ObjectSegment {
    store: Object,
    key: String,
    /// The record that makes it part of its session; None: a direct write.
    commit: Option<String>,
    offset: u64,
    nonce: String,
    writer: Option<Box<opendal::Writer>>,
    written: u64,
}

impl ObjectSegment {
    /// Take the written bytes back: the unfinished write is aborted and a segment
    /// object removed. A direct write's key is the blob itself, which another request
    /// may have stored meanwhile: only the unfinished write is aborted (nothing of it
    /// was ever visible).
    async fn discard(&mut self) -> Result<()> {
        if let Some(mut w) = self.writer.take() {
            let _ = w.abort().await;
        }
        if self.commit.is_none() {
            return Ok(());
        }
        self.store.delete(&self.key).await
    }
}

impl Segment for ObjectSegment {
    async fn write(&mut self, data: Bytes) -> Result<()> {
        if self.writer.is_none() {
            let w = self
                .store
                .op
                .writer_with(&self.key)
                .chunk(PART)
                .await
                .map_err(|e| self.store.error("write", &self.key, e))?;
            self.writer = Some(Box::new(w));
        }
        let n = data.len() as u64;
        if let Some(w) = self.writer.as_mut() {
            if let Err(e) = w.write(data).await {
                return Err(self.store.error("write", &self.key, e));
            }
        }
        self.written += n;
        Ok(())
    }

    async fn commit(mut self, state: Bytes) -> Result<u64> {
        match self.writer.as_mut() {
            Some(w) => {
                if let Err(e) = w.close().await {
                    let err = self.store.error("write", &self.key, e);
                    let _ = self.discard().await;
                    return Err(err);
                }
            }
            None => self.store.put(&self.key, Bytes::new()).await?,
        }
        self.writer = None;
        let Some(key) = self.commit.take() else {
            return Ok(self.written);
        };
        let record = Record {
            length: self.written,
            nonce: self.nonce.clone(),
            state: hex::encode(&state),
        };
        let body = Bytes::from(serde_json::to_vec(&record).unwrap_or_default());
        match self.store.create("commit", &key, body).await {
            Ok(()) => Ok(self.offset + self.written),
            Err(e) => {
                // Lost the offset (or could not tell): the segment must not linger.
                if let Err(d) = self.discard().await {
                    tracing::warn!(error = %d, "could not remove a segment that lost its offset");
                }
                Err(e)
            }
        }
    }

    async fn abort(mut self) -> Result<()> {
        self.discard().await
    }
}

pub(super) async fn read(store: &Object, dir: &str, end: u64) -> Result<ByteStream> {
    let parts: Vec<(String, u64)> = committed(store, dir)
        .await?
        .into_iter()
        .take_while(|c| c.offset < end)
        .map(|c| {
            let len = c.length.min(end - c.offset);
            (segment_key(dir, c.offset, &c.nonce), len)
        })
        .collect();
    let store = store.clone();
    let stream = futures_util::stream::iter(parts)
        .then(move |(key, len)| {
            let store = store.clone();
            async move {
                match store.get_range(&key, 0, len).await {
                    Ok(Some(s)) => s,
                    Ok(None) => Box::pin(futures_util::stream::once(async move {
                        Err(io::Error::new(
                            io::ErrorKind::NotFound,
                            format!("segment {key} is gone"),
                        ))
                    })) as ByteStream,
                    Err(e) => Box::pin(futures_util::stream::once(async move { Err(e.source) })),
                }
            }
        })
        .flatten();
    Ok(Box::pin(stream))
}

pub(super) async fn compose(store: &Object, dir: &str, size: u64, to: &str) -> Result<()> {
    if let Some(m) = store.stat(to).await? {
        // The digest names the bytes: a blob already there with this size is this one.
        return if m.size == size {
            Ok(())
        } else {
            Err(damaged(
                to,
                format!("holds {} bytes, the upload {size}", m.size),
            ))
        };
    }
    let parts: Vec<Committed> = committed(store, dir)
        .await?
        .into_iter()
        .take_while(|c| c.offset < size)
        .collect();
    let total = parts.last().map_or(0, |c| c.offset + c.length);
    if total != size {
        return Err(StorageError::precondition(
            "compose",
            dir,
            &format!("the session holds {total} bytes, not {size}"),
        ));
    }
    if size == 0 {
        return store.put(to, Bytes::new()).await;
    }
    if let [only] = parts.as_slice() {
        if only.length <= COPY_MAX {
            // Content-addressed and verified: a concurrent finish of the same digest
            // writes the same bytes, so a plain copy is as good as create-only.
            return store
                .copy(&segment_key(dir, only.offset, &only.nonce), to)
                .await;
        }
    }
    // No fixed part size here: OpenDAL's exact chunking issues a part copy before
    // flushing the bytes buffered ahead of it (out of order, seen with 0.59.5). Without
    // it, streamed boundaries are flushed as soon as they reach the store's minimum
    // part and the rest of each segment is one server-side part copy.
    let mut w = store
        .op
        .writer(to)
        .await
        .map_err(|e| store.error("compose", to, e))?;
    for c in &parts {
        let key = segment_key(dir, c.offset, &c.nonce);
        let mut at = 0u64;
        while at < c.length {
            let n = (c.length - at).min(COPY_MAX);
            if let Err(e) = w.copy_from(&key, at..at + n).await {
                let _ = w.abort().await;
                return Err(store.error("compose", &key, e));
            }
            at += n;
        }
    }
    w.close()
        .await
        .map(|_| ())
        .map_err(|e| store.error("compose", to, e))
}
