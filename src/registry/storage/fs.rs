//! Filesystem storage: what only a filesystem has (rename, fsync, positioned reads)
//! makes every write atomic and every read a stream.

use super::{Appender, ByteStream, Meta, Storage};
use bytes::Bytes;
use futures_util::StreamExt;
use std::io;
use std::path::{Path, PathBuf};
use tokio::io::AsyncWriteExt;

/// A storage root on the local filesystem (distribution's `rootdirectory`).
#[derive(Debug, Clone)]
pub struct Fs {
    root: PathBuf,
}

/// Read sizes for streamed gets. A download holds a few chunks at a time (the one
/// being read, the ones its connection has queued), so memory is a small multiple of
/// the chunk size times the downloads in flight. Few downloads read in large chunks
/// (fewer hops to a blocking thread per MiB); many share [`READ_BUDGET`], down to
/// [`MIN_CHUNK`]: 300 concurrent downloads of any size stay in tens of MiB
/// (tests/memory.rs).
const MAX_CHUNK: usize = 256 << 10;
const MIN_CHUNK: usize = 32 << 10;
const READ_BUDGET: usize = 8 << 20;

/// Streamed gets in flight in this process, for the chunk size.
static READING: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// One streamed get in flight; counted while it lives.
struct Reading;

impl Reading {
    fn start() -> Reading {
        READING.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Reading
    }

    /// The next chunk's size: the budget shared by every download in flight.
    fn chunk(&self) -> usize {
        let n = READING.load(std::sync::atomic::Ordering::Relaxed).max(1);
        (READ_BUDGET / n).clamp(MIN_CHUNK, MAX_CHUNK)
    }
}

impl Drop for Reading {
    fn drop(&mut self) {
        READING.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Fs {
    pub fn new(root: impl Into<PathBuf>) -> Fs {
        Fs { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, key: &str) -> PathBuf {
        // Keys come from `paths` over validated names; refuse anything else outright.
        debug_assert!(!key.split('/').any(|c| c == ".." || c.is_empty()), "{key}");
        self.root.join(key)
    }
}

fn none_if_missing<T>(r: io::Result<T>) -> io::Result<Option<T>> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// The same error, its message prefixed with the file it is about, so a log line names
/// the path at fault (a full disk, a permission). The kind is kept: callers classify
/// by it.
fn at(path: &Path, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

/// How often a write or a delete is retried when a concurrent delete or create of the
/// same folder (another request, or another instance on the same storage) gets in
/// between its steps: `create_dir_all` then open, or `remove_dir_all` racing a new
/// file. Each retry starts over, so a few are enough; the bound keeps a real fault
/// from spinning.
const RACE_RETRIES: usize = 5;

async fn sync_dir(dir: &Path) {
    // Makes the rename itself durable. Best effort: some filesystems refuse it.
    if let Ok(d) = tokio::fs::File::open(dir).await {
        let _ = d.sync_all().await;
    }
}

/// Appends go to the file in pieces of this size: each file write is a hop to a
/// blocking thread, and a pushed layer arrives in 16 KiB HTTP/2 frames. Batching turns
/// ~16 hops per 256 KiB into one; the buffer is the only memory an upload holds.
const APPEND_BATCH: usize = 1 << 20;

pub struct FsAppender {
    file: tokio::fs::File,
    buf: Vec<u8>,
    path: PathBuf,
    /// The file's length when opened: `abort` cuts it back to this.
    start: u64,
}

impl FsAppender {
    async fn flush_buf(&mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            self.file.write_all(&self.buf).await?;
            self.buf.clear();
        }
        Ok(())
    }
}

impl Appender for FsAppender {
    async fn write(&mut self, data: Bytes) -> io::Result<()> {
        if self.buf.len() + data.len() > APPEND_BATCH {
            self.flush_buf().await.map_err(|e| at(&self.path, e))?;
        }
        if data.len() >= APPEND_BATCH {
            return self
                .file
                .write_all(&data)
                .await
                .map_err(|e| at(&self.path, e));
        }
        self.buf.extend_from_slice(&data);
        Ok(())
    }

    async fn finish(&mut self) -> io::Result<()> {
        async {
            self.flush_buf().await?;
            self.file.flush().await?;
            self.file.sync_data().await
        }
        .await
        .map_err(|e| at(&self.path, e))
    }

    async fn abort(mut self) -> io::Result<()> {
        self.buf.clear();
        // An upload whose first bytes failed leaves no empty file behind: absent and
        // empty mean the same (offset 0).
        if self.start == 0 {
            drop(self.file);
            return none_if_missing(tokio::fs::remove_file(&self.path).await)
                .map(|_| ())
                .map_err(|e| at(&self.path, e));
        }
        // Truncation frees blocks, so it works on a full disk too.
        async {
            self.file.set_len(self.start).await?;
            self.file.sync_data().await
        }
        .await
        .map_err(|e| at(&self.path, e))
    }
}

impl Storage for Fs {
    type Appender = FsAppender;

    async fn read(&self, key: &str) -> io::Result<Option<Bytes>> {
        Ok(none_if_missing(tokio::fs::read(self.path(key)).await)?.map(Bytes::from))
    }

    async fn put(&self, key: &str, data: Bytes) -> io::Result<()> {
        // One hop to a blocking thread for the whole write, not one per file call.
        let path = self.path(key);
        tokio::task::spawn_blocking(move || {
            let mut tries = 0;
            loop {
                match crate::files::write_atomic(&path, &data, 0o644) {
                    // The folder went away between creating it and writing into it (a
                    // concurrent tag delete): create it again.
                    Err(e) if e.kind() == io::ErrorKind::NotFound && tries < RACE_RETRIES => {
                        tries += 1;
                    }
                    r => return r.map_err(|e| at(&path, e)),
                }
            }
        })
        .await
        .map_err(io::Error::other)?
    }

    async fn stat(&self, key: &str) -> io::Result<Option<Meta>> {
        let m = none_if_missing(tokio::fs::metadata(self.path(key)).await)?;
        Ok(m.filter(|m| m.is_file()).map(|m| Meta {
            size: m.len(),
            modified: m.modified().ok(),
        }))
    }

    async fn get(&self, key: &str, range: Option<(u64, u64)>) -> io::Result<Option<ByteStream>> {
        let path = self.path(key);
        // Open and size in one hop to a blocking thread.
        let opened = tokio::task::spawn_blocking(move || {
            let f = std::fs::File::open(path)?;
            let len = f.metadata()?.len();
            Ok::<_, io::Error>((f, len))
        })
        .await
        .map_err(io::Error::other)?;
        let Some((file, len)) = none_if_missing(opened)? else {
            return Ok(None);
        };
        let (start, end) = range.unwrap_or((0, len));
        let file = std::sync::Arc::new(file);
        let reading = std::sync::Arc::new(Reading::start());
        // Positioned reads of one chunk each, only when the client is ready for more:
        // no read-ahead buffer and no copy, so a stream holds at most the chunk in hand
        // and what the connection has queued.
        let stream = futures_util::stream::try_unfold(start, move |pos| {
            let file = file.clone();
            let reading = reading.clone();
            async move {
                if pos >= end {
                    return Ok(None);
                }
                let chunk = reading.chunk();
                let n = usize::try_from((end - pos).min(chunk as u64)).unwrap_or(chunk);
                let chunk = tokio::task::spawn_blocking(move || {
                    use std::os::unix::fs::FileExt;
                    let mut buf = vec![0u8; n];
                    file.read_exact_at(&mut buf, pos)?;
                    Ok::<_, io::Error>(Bytes::from(buf))
                })
                .await
                .map_err(io::Error::other)??;
                Ok(Some((chunk, pos + n as u64)))
            }
        });
        Ok(Some(stream.boxed()))
    }

    async fn list(&self, dir: &str) -> io::Result<Vec<String>> {
        let Some(mut rd) = none_if_missing(tokio::fs::read_dir(self.path(dir)).await)? else {
            return Ok(Vec::new());
        };
        let mut names = Vec::new();
        while let Some(e) = rd.next_entry().await? {
            if let Some(n) = e.file_name().to_str() {
                // Temporary files of writes in progress (or cut short by a crash).
                if !n.starts_with(".tmp-") {
                    names.push(n.to_string());
                }
            }
        }
        Ok(names)
    }

    async fn delete(&self, key: &str) -> io::Result<()> {
        let p = self.path(key);
        let mut tries = 0;
        loop {
            let r = match tokio::fs::symlink_metadata(&p).await {
                Ok(m) if m.is_dir() => {
                    none_if_missing(tokio::fs::remove_dir_all(&p).await).map(|_| ())
                }
                Ok(_) => none_if_missing(tokio::fs::remove_file(&p).await).map(|_| ()),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(e),
            };
            match r {
                // A file appeared in the folder while it was being emptied (a write
                // by another instance): empty it again.
                Err(e) if e.kind() == io::ErrorKind::DirectoryNotEmpty && tries < RACE_RETRIES => {
                    tries += 1;
                }
                r => return r.map_err(|e| at(&p, e)),
            }
        }
    }

    async fn append(&self, key: &str) -> io::Result<FsAppender> {
        let p = self.path(key);
        let opened = async {
            if let Some(dir) = p.parent() {
                tokio::fs::create_dir_all(dir).await?;
            }
            let file = tokio::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&p)
                .await?;
            let start = file.metadata().await?.len();
            Ok::<_, io::Error>((file, start))
        }
        .await;
        let (file, start) = opened.map_err(|e| at(&p, e))?;
        Ok(FsAppender {
            file,
            buf: Vec::new(),
            path: p,
            start,
        })
    }

    async fn commit(&self, from: &str, to: &str) -> io::Result<()> {
        let (from, to) = (self.path(from), self.path(to));
        let dir = to.parent().unwrap_or(Path::new("."));
        tokio::fs::create_dir_all(dir)
            .await
            .map_err(|e| at(dir, e))?;
        // The upload data was fsync'd by its appender; rename makes it the blob in
        // one step. A concurrent commit of the same digest renames identical bytes.
        tokio::fs::rename(&from, &to)
            .await
            .map_err(|e| at(&from, e))?;
        sync_dir(dir).await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn put_get_range_list_delete_commit() {
        let dir = tempfile::tempdir().unwrap();
        let fs = Fs::new(dir.path());
        assert!(fs.read("a/b").await.unwrap().is_none());
        fs.put("a/b", Bytes::from_static(b"hello world"))
            .await
            .unwrap();
        assert_eq!(fs.read("a/b").await.unwrap().unwrap(), "hello world");
        assert_eq!(fs.stat("a/b").await.unwrap().unwrap().size, 11);
        let mut s = fs.get("a/b", Some((6, 11))).await.unwrap().unwrap();
        let mut got = Vec::new();
        while let Some(c) = s.next().await {
            got.extend_from_slice(&c.unwrap());
        }
        assert_eq!(got, b"world");
        assert_eq!(fs.list("a").await.unwrap(), vec!["b".to_string()]);
        let mut ap = fs.append("u/data").await.unwrap();
        ap.write(Bytes::from_static(b"xy")).await.unwrap();
        ap.finish().await.unwrap();
        let mut ap = fs.append("u/data").await.unwrap();
        ap.write(Bytes::from_static(b"z")).await.unwrap();
        ap.finish().await.unwrap();
        // An aborted append leaves the data as it was, flushed or not.
        let mut ap = fs.append("u/data").await.unwrap();
        ap.write(Bytes::from(vec![7u8; APPEND_BATCH + 1]))
            .await
            .unwrap();
        ap.write(Bytes::from_static(b"more")).await.unwrap();
        ap.abort().await.unwrap();
        assert_eq!(fs.read("u/data").await.unwrap().unwrap(), "xyz");
        let mut ap = fs.append("v/data").await.unwrap();
        ap.write(Bytes::from_static(b"first")).await.unwrap();
        ap.abort().await.unwrap();
        assert!(fs.stat("v/data").await.unwrap().is_none());
        fs.commit("u/data", "blobs/x/data").await.unwrap();
        assert_eq!(fs.read("blobs/x/data").await.unwrap().unwrap(), "xyz");
        assert!(fs.stat("u/data").await.unwrap().is_none());
        fs.delete("a").await.unwrap();
        fs.delete("a").await.unwrap();
        assert!(fs.list("a").await.unwrap().is_empty());
    }
}
