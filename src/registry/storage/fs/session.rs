//! Upload sessions on the filesystem (see `fs`): claims, records, segments written
//! in place into `data`, and the compose into a blob by hard link.

use super::{at, create_only, joined, none_if_missing, sync_dir, DATA, RACE_RETRIES};
use crate::registry::storage::{Record, Result, Segment, SessionState, StorageError};
use bytes::Bytes;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Take the claim on a session's segment at `offset`: the locked claim file (the lock
/// lasts as long as it is open), or None when another live append holds it. A claim
/// left by a dead holder is unlocked and taken over; the caller then checks that the
/// session has not moved past `offset`.
// `File::try_lock` is std since 1.89; the toolchain is newer than `rust-version`.
#[allow(clippy::incompatible_msrv)]
pub(super) fn claim(dir: &Path, offset: u64) -> io::Result<Option<std::fs::File>> {
    let name = dir.join(format!("claim-{offset}"));
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".tmp-claim-{}", uuid::Uuid::new_v4().simple()));
    let f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)?;
    // Locked before the name appears, so nobody can find it unlocked while it is ours.
    let locked = f.try_lock();
    let linked = match locked {
        Ok(()) => std::fs::hard_link(&tmp, &name),
        Err(std::fs::TryLockError::Error(e)) => Err(e),
        Err(std::fs::TryLockError::WouldBlock) => Err(io::Error::other("fresh claim locked")),
    };
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => return Ok(Some(f)),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    drop(f);
    let f = std::fs::File::open(&name)?;
    match f.try_lock() {
        Ok(()) => Ok(Some(f)),
        Err(std::fs::TryLockError::WouldBlock) => Ok(None),
        Err(std::fs::TryLockError::Error(e)) => Err(e),
    }
}

/// Claim the session's `offset` for `op` and check, under the claim, that the session
/// stands there: the claim, or PreconditionFailed (`busy` when another holds it).
fn claim_at(dir: &Path, offset: u64, op: &'static str, busy: &str) -> Result<std::fs::File> {
    let Some(held) = claim(dir, offset).map_err(at("claim", dir))? else {
        return Err(StorageError::precondition(
            op,
            dir.display().to_string(),
            busy,
        ));
    };
    let size = session_state(dir).map_err(at("session", dir))?.size;
    if size != offset {
        return Err(StorageError::precondition(
            op,
            dir.display().to_string(),
            &format!("the session is at {size}, not {offset}"),
        ));
    }
    Ok(held)
}

/// The session's committed size and last state, from its `commit/<O>` records.
fn session_state(dir: &Path) -> io::Result<SessionState> {
    let records = dir.join("commit");
    let last = match none_if_missing(std::fs::read_dir(&records))? {
        None => None,
        Some(rd) => {
            let mut last = None;
            for e in rd {
                let e = e?;
                if let Some(o) = e.file_name().to_str().and_then(|n| n.parse::<u64>().ok()) {
                    last = last.max(Some(o));
                }
            }
            last
        }
    };
    let Some(offset) = last else {
        // An upload begun before sessions had records: its data is what it holds,
        // unless a claim at 0 says that data is an unrecorded (crashed) first append.
        let data = none_if_missing(std::fs::metadata(dir.join(DATA)))?;
        let legacy = data.filter(|_| !dir.join("claim-0").exists());
        return Ok(SessionState {
            size: legacy.map_or(0, |m| m.len()),
            state: Bytes::new(),
        });
    };
    let path = records.join(offset.to_string());
    let b = std::fs::read(&path)?;
    let (length, state) = Record::decode(&b).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: bad record", path.display()),
        )
    })?;
    Ok(SessionState {
        size: offset + length,
        state,
    })
}

/// Appends go to the file in pieces of this size: each file write is a hop to a
/// blocking thread, and a pushed layer arrives in 16 KiB HTTP/2 frames. Batching turns
/// ~16 hops per 256 KiB into one; the buffer is the only memory an upload holds.
const APPEND_BATCH: usize = 1 << 20;

/// The data file and the claim of a segment, shared with every blocking operation in
/// flight: the claim (its flock) is released only when the last of them ends. A request
/// dropped mid-write (client gone, connection timer) thus cannot let another append take
/// the offset over while one of its writes is still landing in the file.
struct Held {
    file: std::fs::File,
    _claim: std::fs::File,
}

/// A segment being written in place into the session's data file, under its claim.
pub struct FsSegment {
    held: Arc<Held>,
    buf: Vec<u8>,
    dir: PathBuf,
    path: PathBuf,
    offset: u64,
    /// Bytes accepted by `write` (some may still be in `buf`).
    written: u64,
    /// Bytes of this segment already in the file.
    flushed: u64,
}

/// Run `f` on a blocking thread with the segment's file and claim held until it ends,
/// even if the awaiting future is dropped.
async fn with_held<T: Send + 'static>(
    held: &Arc<Held>,
    f: impl FnOnce(&Held) -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    let h = held.clone();
    tokio::task::spawn_blocking(move || f(&h))
        .await
        .map_err(io::Error::other)?
}

/// Cut the data back to `offset`, where a segment began. Truncation frees blocks, so it
/// works on a full disk too. A session whose first bytes failed keeps no data file:
/// absent and empty mean the same (offset 0).
fn undo(h: &Held, path: &Path, offset: u64) -> io::Result<()> {
    if offset == 0 {
        return none_if_missing(std::fs::remove_file(path)).map(|_| ());
    }
    h.file.set_len(offset)?;
    h.file.sync_data()
}

impl FsSegment {
    /// Write `data` at the segment's end in the file.
    async fn write_at(&mut self, data: Bytes) -> io::Result<()> {
        use std::os::unix::fs::FileExt;
        let pos = self.offset + self.flushed;
        let n = data.len() as u64;
        with_held(&self.held, move |h| h.file.write_all_at(&data, pos)).await?;
        self.flushed += n;
        Ok(())
    }

    async fn flush_buf(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let buf = Bytes::from(std::mem::take(&mut self.buf));
        self.write_at(buf).await
    }

    async fn undo(&mut self) -> Result<()> {
        self.buf.clear();
        let (path, offset) = (self.path.clone(), self.offset);
        with_held(&self.held, move |h| undo(h, &path, offset))
            .await
            .map_err(at("abort", &self.path))
    }
}

impl Segment for FsSegment {
    async fn write(&mut self, data: Bytes) -> Result<()> {
        let n = data.len() as u64;
        if self.buf.len() + data.len() > APPEND_BATCH {
            self.flush_buf().await.map_err(at("append", &self.path))?;
        }
        if data.len() >= APPEND_BATCH {
            self.write_at(data)
                .await
                .map_err(at("append", &self.path))?;
        } else {
            self.buf.extend_from_slice(&data);
        }
        self.written += n;
        Ok(())
    }

    async fn commit(mut self, state: Bytes) -> Result<u64> {
        if self.written == 0 {
            return Ok(self.offset);
        }
        if let Err(e) = self.flush_buf().await {
            let e = at("append", &self.path)(e);
            let _ = self.undo().await;
            return Err(e);
        }
        // Sync, record and (on failure) undo in one blocking step that holds the claim:
        // whatever happens to this future, nobody else touches the offset meanwhile.
        let record = self.dir.join("commit").join(self.offset.to_string());
        let body = Record::encode(self.written, &state);
        let (rec, path, offset) = (record.clone(), self.path.clone(), self.offset);
        let done = with_held(&self.held, move |h| {
            let r = h
                .file
                .sync_data()
                .map_err(|e| ("append", e))
                .and_then(|()| create_only(&rec, &body, 0o644).map_err(|e| ("commit", e)));
            Ok(r.map_err(|(op, e)| {
                let _ = undo(h, &path, offset);
                (op, e)
            }))
        })
        .await
        .map_err(at("commit", &record))?;
        match done {
            Ok(()) => Ok(self.offset + self.written),
            Err(("append", e)) => Err(at("append", &self.path)(e)),
            Err((_, e)) => Err(at("commit", &record)(e)),
        }
    }

    async fn abort(mut self) -> Result<()> {
        self.undo().await
    }
}

/// Where the session in `d` stands.
pub(super) async fn state(d: PathBuf) -> Result<SessionState> {
    tokio::task::spawn_blocking(move || session_state(&d).map_err(at("session", &d)))
        .await
        .map_err(joined)?
}

/// Begin a segment at `offset` of the session in `d`: claimed, its data file open
/// and positioned.
pub(super) async fn append(d: PathBuf, offset: u64) -> Result<FsSegment> {
    let data = d.join(DATA);
    let (dd, path) = (d.clone(), data.clone());
    let opened = tokio::task::spawn_blocking(move || -> Result<_> {
        let fail = at("append", &path);
        let held = claim_at(
            &dd,
            offset,
            "append",
            "another append at this offset is in progress",
        )?;
        let mut tries = 0;
        let file = loop {
            let r = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path);
            match r {
                Err(e) if e.kind() == io::ErrorKind::NotFound && tries < RACE_RETRIES => {
                    tries += 1;
                    let _ = std::fs::create_dir_all(&dd);
                }
                r => break r.map_err(at("append", &path))?,
            }
        };
        let meta = file.metadata().map_err(at("append", &path))?;
        use std::os::unix::fs::MetadataExt;
        if meta.nlink() > 1 {
            // Already hard-linked into a blob by a closing PUT: writing would
            // change the blob.
            return Err(StorageError::precondition(
                "append",
                path.display().to_string(),
                "the upload is already finished",
            ));
        }
        if meta.len() < offset {
            return Err(fail(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("data holds {} bytes, its records {offset}", meta.len()),
            )));
        }
        if meta.len() > offset {
            // Bytes of an append that never committed (its process died).
            file.set_len(offset).map_err(at("append", &path))?;
        }
        Ok((file, held))
    })
    .await
    .map_err(joined)??;
    let (file, claim) = opened;
    Ok(FsSegment {
        held: Arc::new(Held {
            file,
            _claim: claim,
        }),
        buf: Vec::new(),
        dir: d,
        path: data,
        offset,
        written: 0,
        flushed: 0,
    })
}

/// Link the session's `size` bytes into `to` (see `Storage::compose`).
pub(super) async fn compose(d: PathBuf, size: u64, to: PathBuf) -> Result<()> {
    tokio::task::spawn_blocking(move || -> Result<()> {
        // Claim the end of the session: no append can run or begin meanwhile.
        let _held = claim_at(&d, size, "compose", "an append is in progress")?;
        let same = |to: &Path| std::fs::metadata(to).is_ok_and(|m| m.is_file() && m.len() == size);
        if same(&to) {
            return Ok(());
        }
        let data = d.join(DATA);
        if size == 0 {
            return match create_only(&to, b"", 0o644) {
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && same(&to) => Ok(()),
                r => r.map_err(at("compose", &to)),
            };
        }
        let len = std::fs::metadata(&data)
            .map_err(at("compose", &data))?
            .len();
        if len > size {
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(&data)
                .map_err(at("compose", &data))?;
            f.set_len(size).map_err(at("compose", &data))?;
            f.sync_data().map_err(at("compose", &data))?;
        }
        let parent = to.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(parent).map_err(at("compose", parent))?;
        // The data was fsync'd by its segments; the link makes it the blob in one
        // step, create-only, without copying a byte.
        match std::fs::hard_link(&data, &to) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                if !same(&to) {
                    // Not these bytes (a torn copy from elsewhere): replace it.
                    std::fs::rename(&data, &to).map_err(at("compose", &to))?;
                }
            }
            // A filesystem without hard links (some FUSE and SMB mounts): move the
            // data instead, as a rename is atomic too; the digest was verified, so a
            // blob put there meanwhile holds the same bytes.
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::Unsupported | io::ErrorKind::PermissionDenied
                ) =>
            {
                std::fs::rename(&data, &to).map_err(at("compose", &to))?;
            }
            Err(e) => return Err(at("compose", &to)(e)),
        }
        sync_dir(parent);
        let _ = std::fs::remove_file(&data);
        Ok(())
    })
    .await
    .map_err(joined)?
}
