//! An in-memory store implementing the whole seam, for unit tests: objects in one
//! sorted map, sessions as segment objects (`<dir>/seg/<O>`) committed create-only by
//! their records (`<dir>/commit/<O>`), as an object store would hold them.

use super::{
    ByteStream, ErrorKind, Listing, Meta, Page, Record, Result, Segment, SessionState, Storage,
    StorageError,
};
use bytes::Bytes;
use futures_util::StreamExt;
use std::collections::BTreeMap;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

/// Chunks a get yields: slices of the stored bytes, never a copy of the whole.
pub const CHUNK: usize = 64 << 10;

#[derive(Debug, Clone)]
struct Obj {
    data: Bytes,
    modified: SystemTime,
}

/// The store; clones share the same objects.
#[derive(Debug, Clone, Default)]
pub struct Memory {
    objects: Arc<Mutex<BTreeMap<String, Obj>>>,
    /// Puts of keys with this suffix first wait this long (tests of a slow store).
    slow_puts: Arc<Mutex<Option<(String, std::time::Duration)>>>,
}

fn missing(op: &'static str, key: &str) -> StorageError {
    StorageError::new(ErrorKind::NotFound, op, key, io::ErrorKind::NotFound.into())
}

impl Memory {
    pub fn new() -> Memory {
        Memory::default()
    }

    fn map(&self) -> MutexGuard<'_, BTreeMap<String, Obj>> {
        self.objects.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Pretend an object was written at `t` (tests of age rules such as gc's grace).
    pub fn set_modified(&self, key: &str, t: SystemTime) {
        if let Some(o) = self.map().get_mut(key) {
            o.modified = t;
        }
    }

    /// Make every later put of a key ending with `suffix` take `d` before it lands
    /// (tests of what a slow store does to requests).
    pub fn slow_puts(&self, suffix: &str, d: std::time::Duration) {
        *self.slow_puts.lock().unwrap_or_else(|p| p.into_inner()) = Some((suffix.to_string(), d));
    }

    /// Every key below `prefix` (tests: what is left behind).
    pub fn keys(&self, prefix: &str) -> Vec<String> {
        self.map()
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// The secret, without a runtime (start-up builds its state outside one).
    pub fn secret_blocking(&self) -> Vec<u8> {
        let mut m = self.map();
        m.entry(super::SECRET_KEY.to_string())
            .or_insert_with(|| Obj {
                data: super::new_secret(),
                modified: SystemTime::now(),
            })
            .data
            .to_vec()
    }

    fn insert(m: &mut BTreeMap<String, Obj>, key: &str, data: Bytes) {
        m.insert(
            key.to_string(),
            Obj {
                data,
                modified: SystemTime::now(),
            },
        );
    }

    /// Committed segments of a session in order: (offset, record, data).
    fn segments(m: &BTreeMap<String, Obj>, dir: &str) -> Vec<(u64, u64, Bytes, Bytes)> {
        let prefix = format!("{dir}/commit/");
        let mut out: Vec<_> = m
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .filter_map(|(k, o)| {
                let off = k[prefix.len()..].parse::<u64>().ok()?;
                let (len, state) = Record::decode(&o.data)?;
                let data = m.get(&format!("{dir}/seg/{off}"))?.data.clone();
                Some((off, len, state, data))
            })
            .collect();
        out.sort_by_key(|s| s.0);
        out
    }

    fn state(m: &BTreeMap<String, Obj>, dir: &str) -> SessionState {
        Memory::segments(m, dir)
            .pop()
            .map(|(off, len, state, _)| SessionState {
                size: off + len,
                state,
            })
            .unwrap_or_default()
    }

    /// The first `end` committed bytes of a session, as the segments' own slices.
    fn session_bytes(m: &BTreeMap<String, Obj>, dir: &str, end: u64) -> Vec<Bytes> {
        let mut out = Vec::new();
        for (off, _, _, data) in Memory::segments(m, dir) {
            if off >= end {
                break;
            }
            let take = usize::try_from((end - off).min(data.len() as u64)).unwrap_or(0);
            out.push(data.slice(..take));
        }
        out
    }
}

fn stream(parts: Vec<Bytes>) -> ByteStream {
    let chunks: Vec<io::Result<Bytes>> = parts
        .into_iter()
        .flat_map(|b| {
            (0..b.len())
                .step_by(CHUNK)
                .map(move |i| Ok(b.slice(i..(i + CHUNK).min(b.len()))))
                .collect::<Vec<_>>()
        })
        .collect();
    futures_util::stream::iter(chunks).boxed()
}

/// A segment buffered until it commits: the memory store holds every byte anyway.
pub struct MemorySegment {
    store: Memory,
    dir: String,
    offset: u64,
    buf: Vec<u8>,
}

impl Segment for MemorySegment {
    async fn write(&mut self, data: Bytes) -> Result<()> {
        self.buf.extend_from_slice(&data);
        Ok(())
    }

    async fn commit(self, state: Bytes) -> Result<u64> {
        let len = self.buf.len() as u64;
        if len == 0 {
            return Ok(self.offset);
        }
        let mut m = self.store.map();
        let record = format!("{}/commit/{}", self.dir, self.offset);
        if m.contains_key(&record) || Memory::state(&m, &self.dir).size != self.offset {
            return Err(StorageError::precondition(
                "commit",
                record,
                "another segment committed at this offset",
            ));
        }
        let seg = format!("{}/seg/{}", self.dir, self.offset);
        Memory::insert(&mut m, &seg, Bytes::from(self.buf));
        Memory::insert(&mut m, &record, Record::encode(len, &state));
        Ok(self.offset + len)
    }

    async fn abort(self) -> Result<()> {
        Ok(())
    }
}

impl Storage for Memory {
    type Segment = MemorySegment;

    async fn read(&self, key: &str) -> Result<Option<Bytes>> {
        Ok(self.map().get(key).map(|o| o.data.clone()))
    }

    async fn put(&self, key: &str, data: Bytes) -> Result<()> {
        let slow = self
            .slow_puts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .filter(|(suffix, _)| key.ends_with(suffix.as_str()))
            .map(|(_, d)| *d);
        if let Some(d) = slow {
            tokio::time::sleep(d).await;
        }
        Memory::insert(&mut self.map(), key, data);
        Ok(())
    }

    async fn put_if_absent(&self, key: &str, data: Bytes) -> Result<()> {
        let mut m = self.map();
        if m.contains_key(key) {
            return Err(StorageError::precondition("put_if_absent", key, "exists"));
        }
        Memory::insert(&mut m, key, data);
        Ok(())
    }

    async fn stat(&self, key: &str) -> Result<Option<Meta>> {
        Ok(self.map().get(key).map(|o| Meta {
            size: o.data.len() as u64,
            modified: Some(o.modified),
        }))
    }

    async fn get(&self, key: &str, range: Option<(u64, u64)>) -> Result<Option<ByteStream>> {
        let Some(data) = self.map().get(key).map(|o| o.data.clone()) else {
            return Ok(None);
        };
        let len = data.len() as u64;
        let (a, b) = range.unwrap_or((0, len));
        let (a, b) = (a.min(len) as usize, b.min(len) as usize);
        Ok(Some(stream(vec![data.slice(a..b.max(a))])))
    }

    async fn list(&self, dir: &str, page: Page<'_>) -> Result<Listing> {
        let prefix = format!("{dir}/");
        // Names, not keys, are sorted: "a-b" sorts after the folder "a" although its
        // key comes before "a/x".
        let names: std::collections::BTreeSet<String> = self
            .map()
            .range(prefix.clone()..)
            .map_while(|(k, _)| k.strip_prefix(&prefix))
            .map(|rest| rest.split('/').next().unwrap_or(rest))
            .filter(|n| page.start_after.is_none_or(|a| *n > a))
            .map(str::to_string)
            .collect();
        let mut names: Vec<String> = names.into_iter().collect();
        let truncated = page.limit > 0 && names.len() > page.limit;
        if truncated {
            names.truncate(page.limit);
        }
        Ok(Listing { names, truncated })
    }

    async fn delete(&self, key: &str) -> Result<()> {
        self.map().remove(key);
        Ok(())
    }

    async fn delete_prefix(&self, dir: &str) -> Result<()> {
        let prefix = format!("{dir}/");
        let mut m = self.map();
        m.remove(dir);
        m.retain(|k, _| !k.starts_with(&prefix));
        Ok(())
    }

    async fn copy(&self, from: &str, to: &str) -> Result<()> {
        let mut m = self.map();
        let data = m
            .get(from)
            .ok_or_else(|| missing("copy", from))?
            .data
            .clone();
        Memory::insert(&mut m, to, data);
        Ok(())
    }

    async fn session(&self, dir: &str) -> Result<SessionState> {
        Ok(Memory::state(&self.map(), dir))
    }

    async fn append(&self, dir: &str, offset: u64) -> Result<MemorySegment> {
        let size = Memory::state(&self.map(), dir).size;
        if size != offset {
            return Err(StorageError::precondition(
                "append",
                dir,
                &format!("the session is at {size}, not {offset}"),
            ));
        }
        Ok(MemorySegment {
            store: self.clone(),
            dir: dir.to_string(),
            offset,
            buf: Vec::new(),
        })
    }

    async fn read_session(&self, dir: &str, end: u64) -> Result<ByteStream> {
        Ok(stream(Memory::session_bytes(&self.map(), dir, end)))
    }

    async fn compose(&self, dir: &str, size: u64, to: &str) -> Result<()> {
        let mut m = self.map();
        let at = Memory::state(&m, dir).size;
        if at != size {
            return Err(StorageError::precondition(
                "compose",
                dir,
                &format!("the session is at {at}, not {size}"),
            ));
        }
        if m.get(to).is_some_and(|o| o.data.len() as u64 == size) {
            return Ok(());
        }
        let whole: Vec<u8> = Memory::session_bytes(&m, dir, size).concat();
        Memory::insert(&mut m, to, Bytes::from(whole));
        let seg = format!("{dir}/seg/");
        m.retain(|k, _| !k.starts_with(&seg));
        Ok(())
    }

    async fn secret(&self) -> Result<Vec<u8>> {
        Ok(self.secret_blocking())
    }

    async fn ready(&self) -> std::result::Result<(), String> {
        Ok(())
    }

    fn describe(&self) -> String {
        "memory".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn conformance() {
        super::super::conformance::run(|| async { (Memory::new(), ()) }).await;
    }
}
