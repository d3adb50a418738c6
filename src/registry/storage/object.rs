//! Object storage (DESIGN.md "Scale-out and object storage"): an S3-compatible bucket or
//! Aliyun OSS through OpenDAL, shared by any number of stateless instances.
//!
//! Finished data sits under distribution's keys below the configured prefix, so a
//! bucket written by `registry:2` (or an `fs` tree copied into one) serves as is. Every
//! write of a finished object is one PUT, atomic for readers. Upload sessions are the
//! object-store shape of `session`: each append streams into its own immutable segment
//! object and is committed by a create-only record (see [`session`]). Create-only means
//! the store's conditional PUT (`If-None-Match: *`) where the store honours it, probed
//! at start-up; otherwise a claim by listing ([`CreateOnly::Listing`]).
//!
//! Errors name the operation and key and never carry a credential: the store's own
//! messages are scrubbed of the configured key id and secret.

mod listing;
mod session;

pub use session::ObjectSegment;

use super::{
    ByteStream, ErrorKind, Listing, Meta, Page, Result, SessionState, Storage, StorageError,
};
use crate::config::{ObjectStore, StorageKind};
use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use opendal::Operator;
use std::io;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

/// How long a presigned blob URL stays valid (distribution's `redirect` uses 20 min).
const PRESIGN_FOR: Duration = Duration::from_secs(20 * 60);

/// Part size of multipart writes and server-side part copies: the memory one upload
/// holds at most (S3's minimum part is 5 MiB; 10 000 parts reach 80 GiB).
pub const PART: usize = 8 << 20;

pub use crate::config::CreateOnly;

/// Rounds of claiming by listing before giving up (the pauses grow to ~320 ms).
const CLAIM_ATTEMPTS: u32 = 10;
/// A claim this old whose key never appeared belongs to a claimer that died.
const CLAIM_DEAD: Duration = Duration::from_secs(60);

/// A bucket (and prefix) of an object store. Clones share the client.
#[derive(Clone)]
pub struct Object {
    op: Arc<Operator>,
    /// Signs redirects (for `redirect_endpoint` when set); None: no redirects.
    presigner: Option<Arc<Operator>>,
    /// Set by the configuration or by the first probe.
    create_only: Arc<OnceLock<CreateOnly>>,
    describe: Arc<str>,
    /// Strings never to show (the access key id and secret).
    hidden: Arc<[String]>,
}

impl std::fmt::Debug for Object {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Object")
            .field("at", &self.describe)
            .finish_non_exhaustive()
    }
}

fn operator(kind: StorageKind, o: &ObjectStore, endpoint: Option<&str>) -> Result<Operator> {
    let c = &o.credentials;
    let root = format!("/{}", o.prefix);
    let built = match kind {
        StorageKind::Oss => {
            let mut b = opendal::services::Oss::default()
                .bucket(&o.bucket)
                .root(&root)
                .access_key_id(&c.access_key_id)
                .access_key_secret(&c.secret_access_key);
            if let Some(e) = endpoint {
                b = b.endpoint(e);
            }
            Operator::new(b)
        }
        _ => {
            let mut b = opendal::services::S3::default()
                .bucket(&o.bucket)
                .region(&o.region)
                .root(&root)
                .access_key_id(&c.access_key_id)
                .secret_access_key(&c.secret_access_key)
                .disable_config_load()
                .disable_ec2_metadata();
            if let Some(t) = &c.session_token {
                b = b.session_token(t);
            }
            if let Some(e) = endpoint {
                b = b.endpoint(e);
            }
            if !o.path_style {
                b = b.enable_virtual_host_style();
            }
            Operator::new(b)
        }
    };
    let op = built.map_err(|e| {
        StorageError::new(
            ErrorKind::Other,
            "configure",
            o.bucket.clone(),
            io::Error::other(e.to_string()),
        )
    })?;
    Ok(op
        .layer(
            opendal::layers::RetryLayer::new()
                .with_max_times(4)
                .with_min_delay(Duration::from_millis(50))
                .with_max_delay(Duration::from_secs(2))
                .with_jitter(),
        )
        .layer(
            opendal::layers::TimeoutLayer::new()
                .with_timeout(Duration::from_secs(60))
                .with_io_timeout(Duration::from_secs(60)),
        ))
}

impl Object {
    /// The configured bucket (no request is made here).
    pub fn new(kind: StorageKind, o: &ObjectStore) -> Result<Object> {
        // The process-wide HTTP client (reqwest over rustls); idempotent.
        opendal::install_default();
        let op = operator(kind, o, o.endpoint.as_deref())?;
        let presigner = if o.redirect {
            match &o.redirect_endpoint {
                Some(e) => Some(Arc::new(operator(kind, o, Some(e))?)),
                None => Some(Arc::new(op.clone())),
            }
        } else {
            None
        };
        let hidden: Vec<String> = [
            &o.credentials.access_key_id,
            &o.credentials.secret_access_key,
        ]
        .into_iter()
        .filter(|s| s.len() >= 4)
        .cloned()
        .collect();
        let store = Object {
            op: Arc::new(op),
            presigner,
            create_only: Arc::new(OnceLock::new()),
            describe: o.describe(kind).into(),
            hidden: hidden.into(),
        };
        Ok(match o.create_only {
            Some(how) => store.with_create_only(how),
            None => store,
        })
    }

    /// Use this create-only method from now on (the configuration's `create_only`,
    /// tests; otherwise start-up probes).
    pub fn with_create_only(self, how: CreateOnly) -> Object {
        let _ = self.create_only.set(how);
        self
    }

    pub fn create_only(&self) -> Option<CreateOnly> {
        self.create_only.get().copied()
    }

    /// An OpenDAL error as a storage error: kind, operation, key; the message scrubbed
    /// of credentials.
    fn error(&self, op: &'static str, key: &str, e: opendal::Error) -> StorageError {
        use opendal::ErrorKind as K;
        let kind = match e.kind() {
            K::NotFound => ErrorKind::NotFound,
            K::ConditionNotMatch | K::AlreadyExists => ErrorKind::PreconditionFailed,
            K::RateLimited => ErrorKind::Transient,
            // Still temporary after the retry layer gave up: the store is down or
            // overloaded (tests/registry_s3.rs: a store answering 503 SlowDown).
            _ if e.is_temporary() => ErrorKind::Transient,
            _ => ErrorKind::Other,
        };
        // The kind and the store's own answer; OpenDAL's context (URL, headers) is left
        // out: the operation and key say where.
        let mut words = format!("{}: {}", e.kind(), e.message());
        if let Some(source) = std::error::Error::source(&e) {
            words = format!("{words}: {source}");
        }
        for h in self.hidden.iter() {
            words = words.replace(h.as_str(), "<redacted>");
        }
        let io_kind = match kind {
            ErrorKind::NotFound => io::ErrorKind::NotFound,
            ErrorKind::PreconditionFailed => io::ErrorKind::AlreadyExists,
            ErrorKind::Transient => io::ErrorKind::TimedOut,
            _ => io::ErrorKind::Other,
        };
        StorageError::new(kind, op, key, io::Error::new(io_kind, words))
    }

    fn none_if_missing<T>(
        &self,
        op: &'static str,
        key: &str,
        r: std::result::Result<T, opendal::Error>,
    ) -> Result<Option<T>> {
        match r {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.kind() == opendal::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.error(op, key, e)),
        }
    }

    /// Is the store reachable, writable, and does it honour create-only writes? Writes
    /// a probe key twice create-only (the second must be refused), then removes it;
    /// remembers the answer for this backend.
    pub async fn probe(&self) -> Result<CreateOnly> {
        let key = format!("portcullis.probe-{}", nonce());
        let first = self
            .op
            .write_with(&key, Bytes::from_static(b"probe"))
            .if_not_exists(true)
            .await;
        let how = match first {
            Ok(_) => {
                let second = self
                    .op
                    .write_with(&key, Bytes::from_static(b"probe"))
                    .if_not_exists(true)
                    .await;
                match second {
                    Err(e)
                        if matches!(
                            e.kind(),
                            opendal::ErrorKind::ConditionNotMatch
                                | opendal::ErrorKind::AlreadyExists
                        ) =>
                    {
                        CreateOnly::Conditional
                    }
                    Ok(_) => CreateOnly::Listing,
                    Err(e) => {
                        let _ = self.op.delete(&key).await;
                        return Err(self.error("probe", &key, e));
                    }
                }
            }
            Err(e) if e.kind() == opendal::ErrorKind::Unsupported => {
                self.op
                    .write(&key, Bytes::from_static(b"probe"))
                    .await
                    .map_err(|e| self.error("probe", &key, e))?;
                CreateOnly::Listing
            }
            Err(e) => return Err(self.error("probe", &key, e)),
        };
        self.op
            .delete(&key)
            .await
            .map_err(|e| self.error("probe", &key, e))?;
        Ok(how)
    }

    /// Probe (start-up, reload): the store must be reachable and writable; unless the
    /// configuration chose, the answer decides how writes are made create-only.
    pub async fn prepare(&self) -> Result<CreateOnly> {
        let how = self.probe().await?;
        Ok(*self.create_only.get_or_init(|| {
            if how == CreateOnly::Listing {
                tracing::warn!(
                    store = %self.describe,
                    "the store ignores create-only writes (If-None-Match): claiming by listing instead"
                );
            }
            how
        }))
    }

    /// Write `data` at `key` only if the key is free; of concurrent creators exactly
    /// one succeeds. A retried request that finds its own earlier write succeeds.
    async fn create(&self, op: &'static str, key: &str, data: Bytes) -> Result<()> {
        match self.create_only().unwrap_or(CreateOnly::Conditional) {
            CreateOnly::Conditional => {
                match self
                    .op
                    .write_with(key, data.clone())
                    .if_not_exists(true)
                    .await
                {
                    Ok(_) => Ok(()),
                    Err(e) => {
                        let err = self.error(op, key, e);
                        if err.kind == ErrorKind::PreconditionFailed
                            && self.read(key).await.ok().flatten().as_ref() == Some(&data)
                        {
                            // Our own write, answered late and retried.
                            return Ok(());
                        }
                        Err(err)
                    }
                }
            }
            CreateOnly::Listing => self.create_by_listing(op, key, data).await,
        }
    }

    /// Claim by listing: write `<key>.claims/<nonce>`, list the claims, and go on only
    /// when ours is the only one. Each claimer writes before it lists, so of two the
    /// later one always sees the earlier: at most one is ever alone. Losers remove their
    /// claim and try again after a random pause (claimers that saw each other all step
    /// back); the winner's claim stays, so later claimers lose while its key is
    /// written. A claim older than [`CLAIM_DEAD`] whose key never appeared is a dead
    /// winner's: removed.
    async fn create_by_listing(&self, op: &'static str, key: &str, data: Bytes) -> Result<()> {
        let claims = format!("{key}.claims");
        for attempt in 0..CLAIM_ATTEMPTS {
            if self.stat(key).await?.is_some() {
                return Err(StorageError::precondition(op, key, "already exists"));
            }
            let mine = nonce();
            let mine_key = format!("{claims}/{mine}");
            self.put(&mine_key, Bytes::new()).await?;
            let all = self.list_all(&claims).await?;
            if all == [mine.clone()] {
                if self.stat(key).await?.is_some() {
                    return Err(StorageError::precondition(op, key, "already exists"));
                }
                return self.put(key, data).await;
            }
            self.delete(&mine_key).await?;
            for other in all.iter().filter(|c| **c != mine) {
                let k = format!("{claims}/{other}");
                let dead = self
                    .stat(&k)
                    .await?
                    .and_then(|m| m.modified)
                    .is_some_and(|t| {
                        SystemTime::now().duration_since(t).unwrap_or_default() > CLAIM_DEAD
                    });
                if dead && self.stat(key).await?.is_none() {
                    self.delete(&k).await?;
                }
            }
            // Claimers that all saw each other all stepped back: try again after a
            // random pause, so one of them comes first. A live winner's claim stays,
            // and its key appears: then the loop ends above.
            let pause = {
                use rand::Rng;
                rand::thread_rng().gen_range(5..=20u64 << attempt.min(4))
            };
            tokio::time::sleep(Duration::from_millis(pause)).await;
        }
        Err(StorageError::precondition(
            op,
            key,
            "another writer claimed it",
        ))
    }
}

/// A random name part (64 bits): it tells apart writers contending for one key, and
/// stays short because some stores limit key lengths in practice (s3s-fs names a
/// metadata file after the whole key).
fn nonce() -> String {
    use rand::RngCore;
    format!("{:016x}", rand::rngs::OsRng.next_u64())
}

impl Storage for Object {
    type Segment = ObjectSegment;

    async fn read(&self, key: &str) -> Result<Option<Bytes>> {
        Ok(self
            .none_if_missing("read", key, self.op.read(key).await)?
            .map(|b| b.to_bytes()))
    }

    async fn put(&self, key: &str, data: Bytes) -> Result<()> {
        self.op
            .write(key, data)
            .await
            .map(|_| ())
            .map_err(|e| self.error("put", key, e))
    }

    async fn put_if_absent(&self, key: &str, data: Bytes) -> Result<()> {
        self.create("create", key, data).await
    }

    async fn stat(&self, key: &str) -> Result<Option<Meta>> {
        Ok(self
            .none_if_missing("stat", key, self.op.stat(key).await)?
            .filter(|m| !m.is_dir())
            .map(|m| Meta {
                size: m.content_length(),
                modified: m.last_modified().map(SystemTime::from),
            }))
    }

    async fn get(&self, key: &str, range: Option<(u64, u64)>) -> Result<Option<ByteStream>> {
        let Some(meta) = self.stat(key).await? else {
            return Ok(None);
        };
        let (start, end) = range.unwrap_or((0, meta.size));
        // Past the end: what there is, then nothing (as a file reads).
        self.get_range(key, start, end.min(meta.size)).await
    }

    async fn get_range(&self, key: &str, start: u64, end: u64) -> Result<Option<ByteStream>> {
        if start >= end {
            return Ok(Some(Box::pin(futures_util::stream::empty())));
        }
        let absent = |e: &opendal::Error| e.kind() == opendal::ErrorKind::NotFound;
        let reader = match self.op.reader_with(key).await {
            Err(e) if absent(&e) => return Ok(None),
            r => r.map_err(|e| self.error("get", key, e))?,
        };
        let mut stream = match reader.into_bytes_stream(start..end).await {
            Err(e) if absent(&e) => return Ok(None),
            r => r.map_err(|e| self.error("get", key, e))?,
        };
        // The first chunk tells a key that has gone (the request may be lazy).
        match stream.next().await {
            None => Ok(Some(Box::pin(futures_util::stream::empty()))),
            Some(Err(e)) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Some(Err(e)) => Err(StorageError::io("get", key, e)),
            Some(Ok(first)) => Ok(Some(Box::pin(
                futures_util::stream::once(async move { Ok(first) }).chain(stream),
            ))),
        }
    }

    async fn list(&self, dir: &str, page: Page<'_>) -> Result<Listing> {
        self.list_page(dir, page).await
    }

    async fn list_all(&self, dir: &str) -> Result<Vec<String>> {
        // One listing, continued by the store's own tokens (no `start_after` by name:
        // the store orders `a-1/` before `a/`).
        self.list_page(dir, Page::default()).await.map(|l| l.names)
    }

    async fn delete(&self, key: &str) -> Result<()> {
        self.op
            .delete(key)
            .await
            .map_err(|e| self.error("delete", key, e))
    }

    async fn delete_folder_of(&self, key: &str) -> Result<()> {
        // No folders here: the key is all there is.
        self.delete(key).await
    }

    async fn delete_prefix(&self, dir: &str) -> Result<()> {
        let prefix = format!("{dir}/");
        match self.op.delete_with(&prefix).recursive(true).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == opendal::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(self.error("delete", dir, e)),
        }
    }

    async fn copy(&self, from: &str, to: &str) -> Result<()> {
        self.op
            .copy(from, to)
            .await
            .map(|_| ())
            .map_err(|e| self.error("copy", from, e))
    }

    async fn session(&self, dir: &str) -> Result<SessionState> {
        session::state(self, dir).await
    }

    async fn append(&self, dir: &str, offset: u64) -> Result<ObjectSegment> {
        session::append(self, dir, offset).await
    }

    async fn read_session(&self, dir: &str, end: u64) -> Result<ByteStream> {
        session::read(self, dir, end).await
    }

    async fn direct(&self, key: &str) -> Result<Option<ObjectSegment>> {
        Ok(Some(session::direct(self, key)))
    }

    async fn compose(&self, dir: &str, size: u64, to: &str) -> Result<()> {
        session::compose(self, dir, size, to).await
    }

    /// A presigned GET of `key`, valid for [`PRESIGN_FOR`]; None when redirects are off.
    async fn redirect(&self, key: &str) -> Result<Option<String>> {
        let Some(p) = &self.presigner else {
            return Ok(None);
        };
        let r = p
            .presign_read(key, PRESIGN_FOR)
            .await
            .map_err(|e| self.error("presign", key, e))?;
        Ok(Some(r.uri().to_string()))
    }

    async fn ready(&self) -> std::result::Result<(), String> {
        match self.op.lister_with("/").limit(1).await {
            Ok(mut l) => match l.try_next().await {
                Ok(_) => Ok(()),
                Err(e) => Err(self.error("list", "/", e).words()),
            },
            Err(e) => Err(self.error("list", "/", e).words()),
        }
    }

    fn describe(&self) -> String {
        match self.create_only() {
            Some(CreateOnly::Listing) => format!("{} (create-only by listing)", self.describe),
            _ => self.describe.to_string(),
        }
    }
}
