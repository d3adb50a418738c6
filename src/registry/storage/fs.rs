//! Filesystem storage: what only a filesystem has (rename, hard links, fsync,
//! positioned reads) makes every write atomic and every read a stream.
//!
//! Upload sessions (`_uploads/<id>/`) keep distribution's single `data` file, appended
//! in place, so a closing PUT never copies: the data is hard-linked into the blob key.
//! A segment is claimed before it is written, create-only: `claim-<O>` is linked into
//! place from a temporary file already holding an exclusive `flock`, so of two appends
//! at one offset (in one process or two sharing the folder) exactly one gets it; the
//! other is refused before writing anything. A claim whose holder died (its lock is
//! gone) is taken over when the session has not moved past it. A finished segment is
//! recorded create-only as `commit/<O>` (length and the caller's state) after the data
//! is fsync'd; the session's size is the last record's end, never the file's length,
//! so bytes of an append cut short by a crash are ignored and cut off by the next one.

mod session;

pub use session::FsSegment;

use super::{
    ByteStream, ErrorKind, Listing, Meta, Page, Result, SessionState, Storage, StorageError,
};
use bytes::Bytes;
use futures_util::StreamExt;
use std::io;
use std::path::{Path, PathBuf};

/// A storage root on the local filesystem (distribution's `rootdirectory`).
#[derive(Debug, Clone)]
pub struct Fs {
    root: PathBuf,
}

/// Read sizes for streamed gets. A download holds a few chunks at a time (the one
/// being read, the one the connection is sending, the one it has queued), so memory is
/// a small multiple of the chunk size times the downloads in flight. Few downloads
/// read in large chunks (fewer hops to a blocking thread per MiB); many share
/// [`READ_BUDGET`], down to [`MIN_CHUNK`]: with the connection's own buffers that
/// keeps a held download under issue 13's 128 KiB from about 100 downloads on
/// (tests/memory.rs, bench/results/memory.md), while one alone still reads 256 KiB
/// at a time.
pub const MAX_CHUNK: usize = 256 << 10;
const MIN_CHUNK: usize = 16 << 10;
const READ_BUDGET: usize = 2 << 20;

/// What a read chunk starts as (in .bss: the kernel's zero page until written, which
/// nothing does).
static ZEROS: [u8; MAX_CHUNK] = [0; MAX_CHUNK];

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

/// The session's data file: distribution's name, so tools see an upload grow.
const DATA: &str = "data";

impl Fs {
    /// Replace the object at `key` with `write` (whole, atomic for readers), in one
    /// hop to a blocking thread for the whole write, not one per file call.
    async fn replace(
        &self,
        key: &str,
        data: Bytes,
        write: fn(&Path, &[u8], u32) -> io::Result<()>,
    ) -> Result<()> {
        let path = self.path(key);
        tokio::task::spawn_blocking(move || {
            let mut tries = 0;
            loop {
                match write(&path, &data, 0o644) {
                    // The folder went away between creating it and writing into it (a
                    // concurrent tag delete): create it again.
                    Err(e) if e.kind() == io::ErrorKind::NotFound && tries < RACE_RETRIES => {
                        tries += 1;
                    }
                    r => return r.map_err(at("put", &path)),
                }
            }
        })
        .await
        .map_err(joined)?
    }

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

    /// Would this folder serve, without changing anything (`check`): the root must be a
    /// writable folder, or creatable.
    pub fn check_blocking(&self) -> std::result::Result<(), String> {
        let mut p: &Path = &self.root;
        loop {
            match std::fs::metadata(p) {
                Ok(m) if !m.is_dir() => return Err("not a folder".into()),
                Ok(m) => {
                    return if m.permissions().readonly() {
                        Err("not writable".into())
                    } else {
                        Ok(())
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => match p.parent() {
                    Some(parent) if !parent.as_os_str().is_empty() => p = parent,
                    _ => return Ok(()),
                },
                Err(e) => return Err(crate::files::io_error_words(&e)),
            }
        }
    }

    /// The secret, read or created once, on this thread (start-up and reload build
    /// their state outside the runtime). The file is private (0600).
    pub fn secret_blocking(&self) -> Result<Vec<u8>> {
        let path = self.path(super::SECRET_KEY);
        let fail = at("secret", &path);
        std::fs::create_dir_all(&self.root).map_err(at("secret", &self.root))?;
        match std::fs::read(&path) {
            Ok(s) if !s.is_empty() => return Ok(s),
            // An empty file (a crash before the atomic write existed): replace it.
            Ok(_) => {
                crate::files::write_atomic(&path, &super::new_secret(), 0o600)
                    .map_err(at("secret", &path))?;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                match create_only(&path, &super::new_secret(), 0o600) {
                    // Another instance won the race to create it: use theirs.
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                    r => r.map_err(at("secret", &path))?,
                }
            }
            Err(e) => return Err(fail(e)),
        }
        std::fs::read(&path).map_err(at("secret", &path))
    }
}

fn none_if_missing<T>(r: io::Result<T>) -> io::Result<Option<T>> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// The error, naming the operation and the file it is about, so a log line names the
/// path at fault (a full disk, a permission).
fn at<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> StorageError + 'a {
    move |e| StorageError::io(op, path.display().to_string(), e)
}

/// The first `limit` names (0: all) after `after` in a folder, sorted. A folder can
/// only be read whole (readdir has no "start after"), so a page of a large folder costs
/// one pass over its entries: one `getdents64` per batch of entries and, for an entry
/// before `after` or beyond the page, no `stat` and no name kept, only the two small
/// copies std makes of every name (into the entry, and by `file_name`). The page itself is the smallest `limit + 1` names, kept in a bounded heap
/// and sorted at the end, not every name after `after`.
fn list_folder(p: &Path, after: Option<&str>, limit: usize) -> Result<Listing> {
    use std::collections::BinaryHeap;
    let Some(rd) = none_if_missing(std::fs::read_dir(p)).map_err(at("list", p))? else {
        return Ok(Listing::default());
    };
    let keep = if limit == 0 { usize::MAX } else { limit + 1 };
    // The greatest kept name on top: a smaller one replaces it.
    let mut kept: BinaryHeap<String> = BinaryHeap::new();
    for e in rd {
        let e = e.map_err(at("list", p))?;
        let name = e.file_name();
        let Some(n) = name.to_str() else { continue };
        // Temporary files of writes in progress (or cut short by a crash).
        if n.starts_with(".tmp-") || after.is_some_and(|a| n <= a) {
            continue;
        }
        if kept.len() == keep {
            if kept.peek().is_some_and(|top| n >= top.as_str()) {
                continue;
            }
            kept.pop();
        }
        kept.push(n.to_string());
    }
    let mut names = kept.into_sorted_vec();
    let truncated = limit > 0 && names.len() > limit;
    if truncated {
        names.truncate(limit);
    }
    Ok(Listing { names, truncated })
}

fn joined(e: tokio::task::JoinError) -> StorageError {
    StorageError::new(ErrorKind::Other, "task", "", io::Error::other(e))
}

/// How often a write or a delete is retried when a concurrent delete or create of the
/// same folder (another request, or another instance on the same storage) gets in
/// between its steps: `create_dir_all` then open, or `remove_dir_all` racing a new
/// file. Each retry starts over, so a few are enough; the bound keeps a real fault
/// from spinning.
const RACE_RETRIES: usize = 5;

fn sync_dir(dir: &Path) {
    // Makes a rename or link itself durable. Best effort: some filesystems refuse it.
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Write a whole file at `path` only if nothing is there: written and fsync'd under a
/// temporary name, then hard-linked into place (link never replaces), so the name
/// appears whole or not at all and exactly one of concurrent creators gets it.
fn create_only(path: &Path, data: &[u8], mode: u32) -> io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tries = 0;
    loop {
        std::fs::create_dir_all(dir)?;
        let tmp = dir.join(format!(".tmp-{}", uuid::Uuid::new_v4().simple()));
        let r = (|| {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(mode)
                .open(&tmp)?;
            f.write_all(data)?;
            f.sync_all()?;
            std::fs::hard_link(&tmp, path)
        })();
        let _ = std::fs::remove_file(&tmp);
        match r {
            // The folder went away in between (a concurrent delete): again.
            Err(e) if e.kind() == io::ErrorKind::NotFound && tries < RACE_RETRIES => tries += 1,
            Err(e) => return Err(e),
            Ok(()) => {
                sync_dir(dir);
                return Ok(());
            }
        }
    }
}

impl Storage for Fs {
    type Segment = FsSegment;

    async fn read(&self, key: &str) -> Result<Option<Bytes>> {
        let p = self.path(key);
        Ok(none_if_missing(tokio::fs::read(&p).await)
            .map_err(at("read", &p))?
            .map(Bytes::from))
    }

    async fn put(&self, key: &str, data: Bytes) -> Result<()> {
        self.replace(key, data, crate::files::write_atomic).await
    }

    async fn put_flag(&self, key: &str, data: Bytes) -> Result<()> {
        if !data.is_empty() {
            return self
                .replace(key, data, crate::files::write_atomic_volatile)
                .await;
        }
        // An empty flag is whole once it exists: created in place, with no temporary
        // file and rename (each of which takes the folder's lock).
        let path = self.path(key);
        tokio::task::spawn_blocking(move || {
            let create = |p: &Path| {
                std::fs::OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .open(p)
                    .map(|_| ())
            };
            match create(&path) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    if let Some(dir) = path.parent() {
                        std::fs::create_dir_all(dir).map_err(at("put", dir))?;
                    }
                    create(&path).map_err(at("put", &path))
                }
                r => r.map_err(at("put", &path)),
            }
        })
        .await
        .map_err(joined)?
    }

    async fn put_if_absent(&self, key: &str, data: Bytes) -> Result<()> {
        let path = self.path(key);
        tokio::task::spawn_blocking(move || {
            create_only(&path, &data, 0o644).map_err(at("put_if_absent", &path))
        })
        .await
        .map_err(joined)?
    }

    async fn stat(&self, key: &str) -> Result<Option<Meta>> {
        let p = self.path(key);
        let m = none_if_missing(tokio::fs::metadata(&p).await).map_err(at("stat", &p))?;
        Ok(m.filter(|m| m.is_file()).map(|m| Meta {
            size: m.len(),
            modified: m.modified().ok(),
        }))
    }

    async fn get(&self, key: &str, range: Option<(u64, u64)>) -> Result<Option<ByteStream>> {
        let path = self.path(key);
        let p = path.clone();
        // Open and size in one hop to a blocking thread.
        let opened = tokio::task::spawn_blocking(move || {
            let f = std::fs::File::open(p)?;
            let len = f.metadata()?.len();
            Ok::<_, io::Error>((f, len))
        })
        .await
        .map_err(joined)?;
        let Some((file, len)) = none_if_missing(opened).map_err(at("get", &path))? else {
            return Ok(None);
        };
        // A range past the end yields what there is (callers check ranges first).
        let (start, end) = range.map_or((0, len), |(a, b)| (a.min(len), b.min(len)));
        let file = std::sync::Arc::new(file);
        let path: std::sync::Arc<Path> = path.into();
        let reading = std::sync::Arc::new(Reading::start());
        // Positioned reads of one chunk each, only when the client is ready for more:
        // no read-ahead buffer and no copy, so a stream holds at most the chunk in hand
        // and what the connection has queued.
        let stream = futures_util::stream::try_unfold(start, move |pos| {
            let file = file.clone();
            let reading = reading.clone();
            let path = path.clone();
            async move {
                if pos >= end {
                    return Ok(None);
                }
                let chunk = reading.chunk();
                let n = usize::try_from((end - pos).min(chunk as u64)).unwrap_or(chunk);
                // Allocated here, on a runtime worker, and filled on the blocking
                // thread: glibc serves an allocation from the allocating thread's
                // arena, and buffers allocated on hundreds of blocking threads spread
                // over every arena, each keeping its own free memory resident.
                let mut buf = Vec::with_capacity(n);
                let chunk = tokio::task::spawn_blocking(move || {
                    use std::os::unix::fs::FileExt;
                    // Zeroed by a copy (a memcpy even in debug builds, where
                    // `resize` is a byte loop), off the runtime's workers.
                    buf.extend_from_slice(&ZEROS[..n]);
                    file.read_exact_at(&mut buf, pos).map_err(|e| {
                        io::Error::new(e.kind(), format!("{}: {e}", path.display()))
                    })?;
                    Ok::<_, io::Error>(Bytes::from(buf))
                })
                .await
                .map_err(io::Error::other)??;
                Ok(Some((chunk, pos + n as u64)))
            }
        });
        Ok(Some(stream.boxed()))
    }

    async fn list(&self, dir: &str, page: Page<'_>) -> Result<Listing> {
        let p = self.path(dir);
        let after = page.start_after.map(str::to_string);
        let limit = page.limit;
        // One blocking task for the whole folder (tokio's `read_dir` hops to the
        // blocking pool every 32 entries).
        tokio::task::spawn_blocking(move || list_folder(&p, after.as_deref(), limit))
            .await
            .map_err(joined)?
    }

    async fn delete(&self, key: &str) -> Result<()> {
        let p = self.path(key);
        none_if_missing(tokio::fs::remove_file(&p).await)
            .map(|_| ())
            .map_err(at("delete", &p))
    }

    async fn delete_prefix(&self, dir: &str) -> Result<()> {
        let p = self.path(dir);
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
                r => return r.map_err(at("delete", &p)),
            }
        }
    }

    async fn copy(&self, from: &str, to: &str) -> Result<()> {
        let (from, to) = (self.path(from), self.path(to));
        tokio::task::spawn_blocking(move || {
            let dir = to.parent().unwrap_or(Path::new("."));
            std::fs::create_dir_all(dir).map_err(at("copy", dir))?;
            let tmp = dir.join(format!(".tmp-{}", uuid::Uuid::new_v4().simple()));
            let r = (|| {
                std::fs::copy(&from, &tmp)?;
                std::fs::File::open(&tmp)?.sync_all()?;
                std::fs::rename(&tmp, &to)
            })();
            if let Err(e) = r {
                let _ = std::fs::remove_file(&tmp);
                return Err(at("copy", &from)(e));
            }
            sync_dir(dir);
            Ok(())
        })
        .await
        .map_err(joined)?
    }

    async fn session(&self, dir: &str) -> Result<SessionState> {
        session::state(self.path(dir)).await
    }

    async fn append(&self, dir: &str, offset: u64) -> Result<FsSegment> {
        session::append(self.path(dir), offset).await
    }

    async fn read_session(&self, dir: &str, end: u64) -> Result<ByteStream> {
        if end == 0 {
            return Ok(futures_util::stream::empty().boxed());
        }
        let key = format!("{dir}/{DATA}");
        self.get(&key, Some((0, end))).await?.ok_or_else(|| {
            StorageError::io(
                "read_session",
                self.path(&key).display().to_string(),
                io::ErrorKind::NotFound.into(),
            )
        })
    }

    async fn compose(&self, dir: &str, size: u64, to: &str) -> Result<()> {
        session::compose(self.path(dir), size, self.path(to)).await
    }

    async fn secret(&self) -> Result<Vec<u8>> {
        let fs = self.clone();
        tokio::task::spawn_blocking(move || fs.secret_blocking())
            .await
            .map_err(joined)?
    }

    async fn ready(&self) -> std::result::Result<(), String> {
        match tokio::fs::metadata(&self.root).await {
            Ok(m) if m.is_dir() => Ok(()),
            Ok(_) => Err("storage root is not a folder".into()),
            Err(e) => Err(format!(
                "storage root: {}",
                crate::files::io_error_words(&e)
            )),
        }
    }

    fn describe(&self) -> String {
        self.root.display().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::session::claim;
    use super::*;
    use crate::registry::storage::Segment;

    async fn fs() -> (tempfile::TempDir, Fs) {
        let dir = tempfile::tempdir().unwrap();
        let fs = Fs::new(dir.path());
        (dir, fs)
    }

    #[tokio::test]
    async fn conformance() {
        super::super::conformance::run(|| async {
            let (dir, fs) = fs().await;
            (fs, dir)
        })
        .await;
    }

    #[tokio::test]
    async fn a_single_segment_upload_is_linked_not_copied() {
        use std::os::unix::fs::MetadataExt;
        let (_dir, fs) = fs().await;
        let mut s = fs.append("u", 0).await.unwrap();
        s.write(Bytes::from_static(b"whole")).await.unwrap();
        s.commit(Bytes::new()).await.unwrap();
        let ino = std::fs::metadata(fs.path("u/data")).unwrap().ino();
        fs.compose("u", 5, "blobs/x/data").await.unwrap();
        assert_eq!(
            std::fs::metadata(fs.path("blobs/x/data")).unwrap().ino(),
            ino
        );
    }

    #[tokio::test]
    async fn a_claim_held_by_another_process_refuses_and_a_dead_one_is_taken_over() {
        use std::io::BufRead;
        let (_dir, fs) = fs().await;
        // A claim as an append that began and was dropped leaves it: free.
        drop(fs.append("u", 0).await.unwrap());
        // Another process holds it (util-linux flock(1) takes the same flock(2)).
        /// Killed however the test ends: a live child would keep the lock and the
        /// test's output open.
        struct Other(std::process::Child);
        impl Drop for Other {
            fn drop(&mut self) {
                let _ = self.0.kill();
                let _ = self.0.wait();
            }
        }
        let mut other = std::process::Command::new("flock")
            // No fork: the process that holds the lock is the one killed below.
            .args(["--nonblock", "--no-fork"])
            .arg(fs.path("u/claim-0"))
            .args(["sh", "-c", "echo locked; exec sleep 600"])
            .stderr(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .map(Other)
            .expect("flock(1) (util-linux) must be installed");
        let mut line = String::new();
        std::io::BufReader::new(other.0.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "locked");
        let e = fs.append("u", 0).await.err().unwrap();
        assert_eq!(e.kind, ErrorKind::PreconditionFailed, "{e}");
        // The other process dies with bytes written and nothing committed.
        std::fs::write(fs.path("u/data"), b"partial").unwrap();
        drop(other);
        assert_eq!(fs.session("u").await.unwrap().size, 0);
        let mut s = fs.append("u", 0).await.unwrap();
        s.write(Bytes::from_static(b"ok")).await.unwrap();
        assert_eq!(s.commit(Bytes::new()).await.unwrap(), 2);
        assert_eq!(fs.read("u/data").await.unwrap().unwrap(), "ok");
        // A claim held in this process by another open file refuses the same way.
        let held = claim(&fs.path("u"), 2).unwrap().unwrap();
        let e = fs.append("u", 2).await.err().unwrap();
        assert_eq!(e.kind, ErrorKind::PreconditionFailed, "{e}");
        drop(held);
    }

    #[tokio::test]
    async fn the_secret_is_private_and_kept() {
        use std::os::unix::fs::PermissionsExt;
        let (_dir, fs) = fs().await;
        let a = fs.secret().await.unwrap();
        assert_eq!(fs.secret().await.unwrap(), a);
        let m = std::fs::metadata(fs.path(super::super::SECRET_KEY)).unwrap();
        assert_eq!(m.permissions().mode() & 0o777, 0o600);
    }
}
