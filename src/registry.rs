//! The bundled registry: the OCI Distribution API v1.1 served in-process from
//! Docker distribution's storage layout. Nothing becomes visible before its digest is
//! verified; upload state lives only in storage, so any instance sharing the storage
//! and the secret can continue an upload another began.

// Handlers return a finished error response as `Err` (an early answer, like every
// request phase); boxing it would only add an allocation to the error path.
#![allow(clippy::result_large_err)]

pub mod gc;
pub mod locks;
pub mod manifest;
pub mod names;
pub mod paths;
pub mod storage;
pub mod upload;

use crate::body::{self, Body};
use crate::error::oci;
use bytes::Bytes;
use futures_util::StreamExt;
use hmac::Mac;
use http::request::Parts;
use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use locks::KeyLocks;
use names::{Algorithm, Digest, Hasher};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use storage::{ErrorKind, Storage, StorageError};
use upload::{UploadError, Uploads};

type Resp = Response<Body>;

/// Memory for manifest PUTs in flight, across the process. A manifest must be whole in
/// memory to be parsed and hashed, so without a budget N concurrent PUTs cost
/// N × `manifest::MAX_SIZE` and more. Each PUT reserves twice its size (body and
/// parsed form): 32 MiB admits four maximal manifests, or thousands of ordinary (few
/// KiB) ones, at a time; the others wait for their turn.
pub const MANIFEST_BUDGET: usize = 32 << 20;

/// How long a manifest PUT waits for its share of the budget before it is refused
/// with 429 (a client that sends slowly must not stall every other push forever).
const MANIFEST_BUDGET_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// The registry service over one storage.
pub struct Registry<S: Storage> {
    store: S,
    delete: bool,
    secret: Vec<u8>,
    /// Boxed: it is large, and the proxy's backend enum holds a `Registry` inline.
    inflight: Box<InFlight>,
    /// Online garbage collection; stops when this registry is dropped (reload).
    gc_task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl<S: Storage> Drop for Registry<S> {
    fn drop(&mut self) {
        if let Some(t) = self
            .gc_task
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            t.abort();
        }
    }
}

/// What this process coordinates in memory among requests in flight; every part is
/// bounded (see `locks`).
struct InFlight {
    /// One writer at a time per upload in this process, and the running hashes of
    /// uploads this process has seen (a cache: the state is in storage).
    uploads: Uploads,
    /// One writer at a time per `<repository>:<tag>` (tag PUT and DELETE).
    tag_locks: KeyLocks,
    /// Permits are bytes of manifest bodies being held in memory (`MANIFEST_BUDGET`).
    manifest_budget: Arc<tokio::sync::Semaphore>,
}

/// Which API endpoint a `/v2/...` path names.
#[derive(Debug, PartialEq, Eq)]
enum Endpoint<'a> {
    Base,
    Catalog,
    Tags(&'a str),
    Manifest(&'a str, &'a str),
    Blob(&'a str, &'a str),
    Uploads(&'a str),
    Upload(&'a str, &'a str),
    Referrers(&'a str, &'a str),
}

/// Split a path after `/v2/` into an endpoint. Repository names hold slashes, so the
/// endpoint is recognised from the end, as distribution's router does.
fn route(rest: &str) -> Option<Endpoint<'_>> {
    if rest.is_empty() {
        return Some(Endpoint::Base);
    }
    if rest == "_catalog" {
        return Some(Endpoint::Catalog);
    }
    if let Some(name) = rest.strip_suffix("/tags/list") {
        return Some(Endpoint::Tags(name));
    }
    if let Some(name) = rest.strip_suffix("/blobs/uploads/") {
        return Some(Endpoint::Uploads(name));
    }
    if let Some(name) = rest.strip_suffix("/blobs/uploads") {
        return Some(Endpoint::Uploads(name));
    }
    let (head, last) = rest.rsplit_once('/')?;
    if last.is_empty() {
        return None;
    }
    if let Some(name) = head.strip_suffix("/blobs/uploads") {
        return Some(Endpoint::Upload(name, last));
    }
    let (name, kind) = head.rsplit_once('/')?;
    match kind {
        "manifests" => Some(Endpoint::Manifest(name, last)),
        "blobs" => Some(Endpoint::Blob(name, last)),
        "referrers" => Some(Endpoint::Referrers(name, last)),
        _ => None,
    }
}

impl<'a> Endpoint<'a> {
    /// The repository name in the path, unvalidated.
    fn name(&self) -> Option<&'a str> {
        match *self {
            Endpoint::Base | Endpoint::Catalog => None,
            Endpoint::Tags(n)
            | Endpoint::Manifest(n, _)
            | Endpoint::Blob(n, _)
            | Endpoint::Uploads(n)
            | Endpoint::Upload(n, _)
            | Endpoint::Referrers(n, _) => Some(n),
        }
    }
}

/// The repository a `/v2/...` path addresses, if any (for `repository_hash` and logs).
pub fn repository_of(path: &str) -> Option<&str> {
    route(path.strip_prefix("/v2/")?)?
        .name()
        .filter(|n| names::valid_repository(n))
}

/// The route class of a path, for metrics: blob, manifest, upload, tags, catalog,
/// ping or other.
pub fn route_class(path: &str) -> &'static str {
    use crate::clients::Route;
    match crate::clients::route(path) {
        Route::Ping | Route::V2NoSlash => return "ping",
        Route::Other => return "other",
        Route::V2 => {}
    }
    match path.strip_prefix("/v2/").and_then(route) {
        Some(Endpoint::Blob(..)) => "blob",
        Some(Endpoint::Manifest(..)) | Some(Endpoint::Referrers(..)) => "manifest",
        Some(Endpoint::Uploads(..)) | Some(Endpoint::Upload(..)) => "upload",
        Some(Endpoint::Tags(..)) => "tags",
        Some(Endpoint::Catalog) => "catalog",
        Some(Endpoint::Base) => "ping",
        None => "other",
    }
}

fn err(status: StatusCode, code: &str, message: impl AsRef<str>) -> Resp {
    oci(status, code, message.as_ref())
}

/// The digests of a folder of `<alg>/<hex>` entries (manifest revisions, layer links).
pub async fn digests_under<S: Storage>(store: &S, dir: &str) -> storage::Result<Vec<Digest>> {
    let mut out = Vec::new();
    for alg in [Algorithm::Sha256, Algorithm::Sha512] {
        for hex in store.list_all(&format!("{dir}/{}", alg.name())).await? {
            if let Ok(d) = Digest::parse(&format!("{}:{hex}", alg.name())) {
                out.push(d);
            }
        }
    }
    Ok(out)
}

/// Every repository name under the storage root (a folder holding `_manifests`).
pub async fn list_repositories<S: Storage>(store: &S) -> storage::Result<Vec<String>> {
    repositories_with(store, "_manifests").await
}

/// Every repository folder that holds `marker` (`_manifests`, `_uploads`, ...).
pub async fn repositories_with<S: Storage>(
    store: &S,
    marker: &str,
) -> storage::Result<Vec<String>> {
    let root = paths::repositories();
    let mut repos = Vec::new();
    let mut stack = vec![String::new()];
    while let Some(rel) = stack.pop() {
        let dir = if rel.is_empty() {
            root.clone()
        } else {
            format!("{root}/{rel}")
        };
        for c in store.list_all(&dir).await? {
            if c == marker {
                repos.push(rel.clone());
            } else if !c.starts_with('_') && !c.starts_with('.') {
                stack.push(if rel.is_empty() {
                    c
                } else {
                    format!("{rel}/{c}")
                });
            }
        }
    }
    repos.sort();
    Ok(repos)
}

/// A digest from the client, or the spec's DIGEST_INVALID answer.
fn parse_digest(s: &str) -> Result<Digest, Resp> {
    Digest::parse(s).map_err(|e| err(StatusCode::BAD_REQUEST, "DIGEST_INVALID", e.0))
}

/// 404 with a spec code (BLOB_UNKNOWN, MANIFEST_UNKNOWN, ...).
fn unknown(code: &str, what: String) -> Resp {
    err(StatusCode::NOT_FOUND, code, what)
}

fn not_found() -> Resp {
    err(StatusCode::NOT_FOUND, "NOT_FOUND", "not found")
}

/// Out of space or quota: the one storage failure a client can be told about, since
/// it does not go away by retrying at once and an operator must act.
fn is_storage_full(e: &StorageError) -> bool {
    e.kind == ErrorKind::NoSpace
}

/// A storage failure as an answer. A full storage is 507 Insufficient Storage (RFC 4918
/// §11.5: the server cannot store what the request needs), a server-side status that
/// clients treat as retryable later, with distribution's catch-all code `UNKNOWN`: the
/// OCI table has no storage code, and `BLOB_UPLOAD_INVALID` would blame the client.
/// Everything else stays a bare 500 whose detail is only in the log.
fn storage_error(e: StorageError) -> Resp {
    crate::metrics::get().storage_errors.inc();
    if is_storage_full(&e) {
        // The error names the path (see `storage::fs`).
        tracing::error!(error = %e, "registry storage is full");
        return err(
            StatusCode::INSUFFICIENT_STORAGE,
            "UNKNOWN",
            "the registry's storage is full (no space left on the device); retry once space is freed",
        );
    }
    tracing::error!(error = %e, "registry storage error");
    err(
        StatusCode::INTERNAL_SERVER_ERROR,
        "UNKNOWN",
        "storage error; see the server log",
    )
}

/// A response with no body and the given headers.
fn empty(status: StatusCode, headers: &[(&'static str, String)]) -> Resp {
    let mut r = Response::new(body::empty());
    *r.status_mut() = status;
    for (k, v) in headers {
        if let Ok(v) = HeaderValue::from_str(v) {
            r.headers_mut().append(*k, v);
        }
    }
    if !r.headers().contains_key(header::CONTENT_LENGTH) {
        r.headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    }
    r
}

fn json(status: StatusCode, content_type: &str, value: &serde_json::Value) -> Resp {
    let bytes = serde_json::to_vec(value).unwrap_or_default();
    let mut r = Response::new(body::full(bytes));
    *r.status_mut() = status;
    if let Ok(v) = HeaderValue::from_str(content_type) {
        r.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    r
}

/// Decode `%XX` escapes of a query value (repository names in `last`, `from`).
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        // '+' stays '+': media types such as `application/vnd.x+json` carry it.
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn query(req: &Parts) -> HashMap<String, String> {
    req.uri
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (percent_decode(k), percent_decode(v)),
            None => (percent_decode(p), String::new()),
        })
        .collect()
}

/// `https://host[:port]` as the client addressed us, for absolute Location URLs
/// (what distribution builds from Host + X-Forwarded-Proto behind the recipe's nginx).
fn base_url(headers: &HeaderMap, uri: &http::Uri) -> String {
    crate::clients::host(headers, uri)
        .map(|h| format!("https://{h}"))
        .unwrap_or_default()
}

/// `n` items after `last`, sorted; the bool says whether more follow.
fn paginate(mut items: Vec<String>, n: Option<usize>, last: Option<&str>) -> (Vec<String>, bool) {
    items.sort();
    items.dedup();
    let start = match last {
        Some(l) => items.partition_point(|x| x.as_str() <= l),
        None => 0,
    };
    let rest = &items[start..];
    match n {
        Some(n) if n < rest.len() => (rest[..n].to_vec(), true),
        _ => (rest.to_vec(), false),
    }
}

fn pagination_args(q: &HashMap<String, String>) -> Result<(Option<usize>, Option<String>), Resp> {
    let n = match q.get("n") {
        None => None,
        Some(v) => Some(v.parse::<usize>().map_err(|_| {
            err(
                StatusCode::BAD_REQUEST,
                "PAGINATION_NUMBER_INVALID",
                format!("n={v:?} is not a number"),
            )
        })?),
    };
    Ok((n, q.get("last").cloned()))
}

/// Parse `Range: bytes=a-b | a- | -n` against `size`: Ok(None) = whole, Err = 416.
///
/// RFC 9110 §14.2: a server MUST ignore a range unit it does not understand and MAY
/// ignore a Range it will not serve, answering 200 with the whole representation.
/// Several ranges (multipart/byteranges) and malformed specifiers are ignored that way;
/// only a well-formed single range that misses the blob is 416.
fn parse_range(h: Option<&HeaderValue>, size: u64) -> Result<Option<(u64, u64)>, ()> {
    let Some(v) = h else { return Ok(None) };
    let Ok(v) = v.to_str() else { return Ok(None) };
    let Some(spec) = v.trim().strip_prefix("bytes=") else {
        return Ok(None);
    };
    let spec = spec.trim();
    if spec.contains(',') {
        return Ok(None);
    }
    let Some((a, b)) = spec.split_once('-') else {
        return Ok(None);
    };
    let number = |s: &str| -> Option<u64> {
        (!s.is_empty() && s.bytes().all(|c| c.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    let (a, b) = (a.trim(), b.trim());
    if (!a.is_empty() && number(a).is_none()) || (!b.is_empty() && number(b).is_none()) {
        return Ok(None);
    }
    let (start, end) = if a.is_empty() {
        let Some(n) = number(b) else { return Ok(None) };
        if n == 0 {
            return Err(());
        }
        (size.saturating_sub(n), size)
    } else {
        let Some(start) = number(a) else {
            return Ok(None);
        };
        let end = match number(b) {
            None => size,
            // last < first is an invalid specifier (§14.1.1), not an unsatisfiable one.
            Some(last) if last < start => return Ok(None),
            Some(last) => last.saturating_add(1).min(size),
        };
        (start, end)
    };
    if start >= size || start >= end {
        return Err(());
    }
    Ok(Some((start, end)))
}

impl<S: Storage> Registry<S> {
    pub fn new(store: S, delete: bool, secret: Vec<u8>) -> Registry<S> {
        Registry {
            store,
            delete,
            secret,
            inflight: Box::new(InFlight {
                uploads: Uploads::default(),
                tag_locks: KeyLocks::default(),
                manifest_budget: Arc::new(tokio::sync::Semaphore::new(MANIFEST_BUDGET)),
            }),
            gc_task: Mutex::new(None),
        }
    }

    /// Per-upload state this process keeps in memory: (upload locks, cached hashes).
    /// Both are bounded (see `locks`); exposed for tests and metrics.
    pub fn upload_state_entries(&self) -> (usize, usize) {
        self.inflight.uploads.entries()
    }

    /// Background upkeep while serving: garbage collection every `gc.0` sparing blobs
    /// younger than `gc.1`, and removal of uploads abandoned for `purge.0`, checked
    /// every `purge.1`. Stops when this registry is dropped (a reload builds a new one).
    pub fn start_maintenance(
        &self,
        gc: Option<(std::time::Duration, std::time::Duration)>,
        purge: Option<(std::time::Duration, std::time::Duration)>,
    ) where
        S: Clone,
    {
        if gc.is_none() && purge.is_none() {
            return;
        }
        let store = self.store.clone();
        let task = tokio::spawn(async move {
            let start = tokio::time::Instant::now();
            let mut next_gc = gc.map(|(every, _)| start + every);
            let mut next_purge = purge.map(|(_, every)| start + every);
            loop {
                let Some(wake) = [next_gc, next_purge].into_iter().flatten().min() else {
                    return;
                };
                tokio::time::sleep_until(wake).await;
                let now = tokio::time::Instant::now();
                if let (Some(at), Some((every, grace))) = (next_gc, gc) {
                    if at <= now {
                        next_gc = Some(now + every);
                        match gc::collect(&store, grace, false).await {
                            Ok(r) => tracing::info!(
                                manifests = r.manifests,
                                kept = r.marked,
                                young = r.young,
                                deleted = r.swept.len(),
                                bytes = r.bytes(),
                                "garbage collection done"
                            ),
                            Err(e) => {
                                crate::metrics::get().storage_errors.inc();
                                tracing::error!(error = %e, "garbage collection failed");
                            }
                        }
                    }
                }
                if let (Some(at), Some((age, every))) = (next_purge, purge) {
                    if at <= now {
                        next_purge = Some(now + every);
                        match gc::purge_uploads(&store, age, false).await {
                            Ok(p) if !p.is_empty() => {
                                tracing::info!(count = p.len(), "purged abandoned uploads")
                            }
                            Ok(_) => {}
                            Err(e) => {
                                crate::metrics::get().storage_errors.inc();
                                tracing::error!(error = %e, "upload purge failed");
                            }
                        }
                    }
                }
            }
        });
        *self.gc_task.lock().unwrap_or_else(|p| p.into_inner()) = Some(task);
    }

    pub fn storage(&self) -> &S {
        &self.store
    }

    /// Answer one request (already authenticated) for a path under `/v2/`.
    pub async fn handle(&self, req: Request<Body>) -> Resp {
        let (req, body) = req.into_parts();
        let path = req.uri.path().to_string();
        let Some(rest) = path.strip_prefix("/v2/") else {
            return not_found();
        };
        let Some(endpoint) = route(rest) else {
            return not_found();
        };
        if let Some(n) = endpoint.name() {
            if !names::valid_repository(n) {
                return err(
                    StatusCode::BAD_REQUEST,
                    "NAME_INVALID",
                    format!("invalid repository name {n:?}"),
                );
            }
        }
        let method = req.method.clone();
        let is_read = method == Method::GET || method == Method::HEAD;
        match (endpoint, method) {
            (Endpoint::Base, _) if is_read => {
                json(StatusCode::OK, "application/json", &serde_json::json!({}))
            }
            (Endpoint::Catalog, _) if is_read => self.catalog(&req).await,
            (Endpoint::Tags(n), _) if is_read => self.tags(n, &req).await,
            (Endpoint::Manifest(n, r), _) if is_read => self.get_manifest(n, r).await,
            (Endpoint::Manifest(n, r), Method::PUT) => self.put_manifest(n, r, &req, body).await,
            (Endpoint::Manifest(n, r), Method::DELETE) => self.delete_manifest(n, r).await,
            (Endpoint::Blob(n, d), _) if is_read => self.get_blob(n, d, &req).await,
            (Endpoint::Blob(n, d), Method::DELETE) => self.delete_blob(n, d).await,
            (Endpoint::Uploads(n), Method::POST) => self.start_upload(n, &req, body).await,
            (Endpoint::Upload(n, id), m) => self.upload(n, id, m, &req, body).await,
            (Endpoint::Referrers(n, d), _) if is_read => self.referrers(n, d, &req).await,
            _ => err(
                StatusCode::METHOD_NOT_ALLOWED,
                "UNSUPPORTED",
                "method not allowed on this endpoint",
            ),
        }
    }

    fn deletes_refused(&self) -> Option<Resp> {
        (!self.delete).then(|| {
            err(
                StatusCode::METHOD_NOT_ALLOWED,
                "UNSUPPORTED",
                "deletion is disabled on this registry (registry.delete = false)",
            )
        })
    }

    async fn read_link(&self, key: &str) -> storage::Result<Option<Digest>> {
        Ok(self
            .store
            .read(key)
            .await?
            .and_then(|b| Digest::parse(String::from_utf8_lossy(&b).trim()).ok()))
    }

    async fn write_link(&self, key: &str, d: &Digest) -> storage::Result<()> {
        self.store.put(key, Bytes::from(d.to_string())).await
    }

    /// Is the blob part of this repository (layer link, or a manifest revision) and present?
    async fn blob_in_repo(&self, name: &str, d: &Digest) -> storage::Result<Option<u64>> {
        let linked = self.read_link(&paths::layer_link(name, d)).await?.as_ref() == Some(d)
            || self
                .read_link(&paths::revision_link(name, d))
                .await?
                .as_ref()
                == Some(d);
        if !linked {
            return Ok(None);
        }
        Ok(self.store.stat(&paths::blob_data(d)).await?.map(|m| m.size))
    }

    // ---- blobs ----

    async fn get_blob(&self, name: &str, digest: &str, req: &Parts) -> Resp {
        let d = match parse_digest(digest) {
            Ok(d) => d,
            Err(r) => return r,
        };
        let size = match self.blob_in_repo(name, &d).await {
            Ok(Some(s)) => s,
            Ok(None) => {
                return unknown(
                    "BLOB_UNKNOWN",
                    format!("blob {d} unknown to repository {name}"),
                )
            }
            Err(e) => return storage_error(e),
        };
        let range = match parse_range(req.headers.get(header::RANGE), size) {
            Ok(r) => r,
            Err(()) => {
                return empty(
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    &[("content-range", format!("bytes */{size}"))],
                )
            }
        };
        let mut headers = vec![
            ("content-type", "application/octet-stream".to_string()),
            ("docker-content-digest", d.to_string()),
            ("etag", format!("\"{d}\"")),
            ("accept-ranges", "bytes".to_string()),
            ("cache-control", "max-age=31536000".to_string()),
        ];
        let (status, len) = match range {
            Some((a, b)) => {
                headers.push(("content-range", format!("bytes {a}-{}/{size}", b - 1)));
                (StatusCode::PARTIAL_CONTENT, b - a)
            }
            None => (StatusCode::OK, size),
        };
        headers.push(("content-length", len.to_string()));
        if req.method == Method::HEAD {
            return empty(status, &headers);
        }
        let stream = match self.store.get(&paths::blob_data(&d), range).await {
            Ok(Some(s)) => s,
            Ok(None) => return unknown("BLOB_UNKNOWN", format!("blob {d} unknown")),
            Err(e) => return storage_error(e),
        };
        let body = http_body_util::StreamBody::new(
            stream.map(|r| r.map(http_body::Frame::data).map_err(body::BoxError::from)),
        );
        let mut r = empty(status, &headers);
        *r.body_mut() = body::boxed(body);
        r
    }

    async fn delete_blob(&self, name: &str, digest: &str) -> Resp {
        if let Some(r) = self.deletes_refused() {
            return r;
        }
        let d = match parse_digest(digest) {
            Ok(d) => d,
            Err(r) => return r,
        };
        let link = paths::layer_link(name, &d);
        match self.read_link(&link).await {
            Ok(Some(l)) if l == d => {}
            Ok(_) => {
                return unknown(
                    "BLOB_UNKNOWN",
                    format!("blob {d} unknown to repository {name}"),
                )
            }
            Err(e) => return storage_error(e),
        }
        // As distribution: unlink from the repository; the data goes with garbage collection.
        match self
            .store
            .delete_prefix(link.trim_end_matches("/link"))
            .await
        {
            Ok(()) => empty(StatusCode::ACCEPTED, &[]),
            Err(e) => storage_error(e),
        }
    }

    // ---- uploads ----

    fn state_token(&self, name: &str, id: &str) -> String {
        use base64::Engine;
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&self.secret)
            .unwrap_or_else(|_| unreachable_hmac());
        mac.update(name.as_bytes());
        mac.update(b"\n");
        mac.update(id.as_bytes());
        let tag = mac.finalize().into_bytes();
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&tag[..18])
    }

    fn upload_location(&self, base: &str, name: &str, id: &str) -> String {
        format!(
            "{base}/v2/{name}/blobs/uploads/{id}?_state={}",
            self.state_token(name, id)
        )
    }

    /// An answer about an upload's progress: where to continue, and what is stored
    /// (`Range: 0-<size-1>`; distribution says `0-0` for an empty upload).
    fn upload_progress(
        &self,
        status: StatusCode,
        base: &str,
        name: &str,
        id: &str,
        size: u64,
    ) -> Resp {
        empty(
            status,
            &[
                ("location", self.upload_location(base, name, id)),
                ("range", format!("0-{}", size.saturating_sub(1))),
                ("docker-upload-uuid", id.to_string()),
            ],
        )
    }

    async fn start_upload(&self, name: &str, req: &Parts, body: Body) -> Resp {
        let q = query(req);
        let base = base_url(&req.headers, &req.uri);
        if let (Some(mount), Some(from)) = (q.get("mount"), q.get("from")) {
            if let (Ok(d), true) = (Digest::parse(mount), names::valid_repository(from)) {
                match self.blob_in_repo(from, &d).await {
                    Ok(Some(_)) => {
                        if let Err(e) = self.write_link(&paths::layer_link(name, &d), &d).await {
                            return storage_error(e);
                        }
                        return empty(
                            StatusCode::CREATED,
                            &[
                                ("location", format!("{base}/v2/{name}/blobs/{d}")),
                                ("docker-content-digest", d.to_string()),
                            ],
                        );
                    }
                    Ok(None) => {} // not there: fall back to an ordinary upload (spec)
                    Err(e) => return storage_error(e),
                }
            }
        }
        let monolithic = match q.get("digest").map(|d| parse_digest(d)) {
            Some(Ok(d)) => Some(d),
            Some(Err(r)) => return r,
            None => None,
        };
        let id = uuid::Uuid::new_v4().to_string();
        let started = crate::access::rfc3339(std::time::SystemTime::now());
        if let Err(e) = self
            .store
            .put(&paths::upload_started_at(name, &id), Bytes::from(started))
            .await
        {
            let _ = self.store.abort(&paths::upload_dir(name, &id)).await;
            return storage_error(e);
        }
        if let Some(d) = monolithic {
            // Monolithic upload: the whole blob in this POST. On failure the client has
            // no session to resume (it never saw a Location), so none is kept.
            let r = self
                .finish_upload(name, &id, d, &req.headers, body, &base)
                .await;
            if !r.status().is_success() {
                self.inflight.uploads.forget(&id);
                let _ = self.store.abort(&paths::upload_dir(name, &id)).await;
            }
            return r;
        }
        self.upload_progress(StatusCode::ACCEPTED, &base, name, &id, 0)
    }

    async fn upload(&self, name: &str, id: &str, method: Method, req: &Parts, body: Body) -> Resp {
        let q = query(req);
        let unknown = || {
            err(
                StatusCode::NOT_FOUND,
                "BLOB_UPLOAD_UNKNOWN",
                format!("upload {id} unknown"),
            )
        };
        let token_ok = q.get("_state").is_some_and(|t| {
            crate::auth::htpasswd::ct_eq(t.as_bytes(), self.state_token(name, id).as_bytes())
        });
        if !token_ok || uuid::Uuid::parse_str(id).is_err() {
            return unknown();
        }
        match self.store.stat(&paths::upload_started_at(name, id)).await {
            Ok(Some(_)) => {}
            Ok(None) => return unknown(),
            Err(e) => return storage_error(e),
        }
        let base = base_url(&req.headers, &req.uri);
        match method {
            Method::GET | Method::HEAD => {
                match Uploads::size(&self.store, &paths::upload_dir(name, id)).await {
                    Ok(size) => self.upload_progress(StatusCode::NO_CONTENT, &base, name, id, size),
                    Err(e) => storage_error(e),
                }
            }
            Method::DELETE => {
                let dir = paths::upload_dir(name, id);
                match self.inflight.uploads.cancel(&self.store, &dir, id).await {
                    Ok(()) => empty(StatusCode::NO_CONTENT, &[]),
                    Err(e) => storage_error(e),
                }
            }
            Method::PATCH => self.patch_upload(name, id, req, body, &base).await,
            Method::PUT => {
                let d = match q.get("digest").map(|d| parse_digest(d)) {
                    Some(Ok(d)) => d,
                    Some(Err(r)) => return r,
                    None => {
                        return err(
                            StatusCode::BAD_REQUEST,
                            "DIGEST_INVALID",
                            "digest parameter missing",
                        )
                    }
                };
                self.finish_upload(name, id, d, &req.headers, body, &base)
                    .await
            }
            _ => err(
                StatusCode::METHOD_NOT_ALLOWED,
                "UNSUPPORTED",
                "method not allowed on an upload",
            ),
        }
    }

    /// Check a chunk's `Content-Range` (and `Content-Length`) against the stored size:
    /// the byte count the body may have (None: no range given), or the answer. A chunk
    /// that does not start where the stored data ends is 416 with the current range,
    /// and the session stays as it was so the client can ask for it and resume (OCI
    /// distribution-spec, "Pushing a blob in chunks"; the same for the closing PUT).
    fn chunk_limit(
        &self,
        headers: &HeaderMap,
        size: u64,
        (name, id, base): (&str, &str, &str),
    ) -> Result<Option<u64>, Resp> {
        let Some(r) = headers
            .get(header::CONTENT_RANGE)
            .and_then(|v| v.to_str().ok())
        else {
            return Ok(None);
        };
        let r = r
            .trim()
            .trim_start_matches("bytes=")
            .trim_start_matches("bytes ");
        let parsed = r
            .split_once('-')
            .and_then(|(a, b)| Some((a.parse::<u64>().ok()?, b.parse::<u64>().ok()?)));
        let Some((start, end)) = parsed.filter(|(a, b)| a <= b) else {
            return Err(err(
                StatusCode::BAD_REQUEST,
                "BLOB_UPLOAD_INVALID",
                format!("bad Content-Range {r:?}"),
            ));
        };
        // Chunks must arrive in order, each exactly once (spec: 416 otherwise).
        if start != size {
            return Err(self.upload_progress(
                StatusCode::RANGE_NOT_SATISFIABLE,
                base,
                name,
                id,
                size,
            ));
        }
        let len = end - start + 1;
        if let Some(cl) = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
        {
            if cl != len {
                return Err(err(
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    "BLOB_UPLOAD_INVALID",
                    format!("Content-Length {cl} does not match Content-Range {r}"),
                ));
            }
        }
        Ok(Some(len))
    }

    /// An upload that did not go through, as its answer.
    fn upload_error(&self, e: UploadError, (name, id, base): (&str, &str, &str)) -> Resp {
        match e {
            UploadError::Storage(e) => storage_error(e),
            UploadError::Body(m) => err(
                StatusCode::BAD_REQUEST,
                "BLOB_UPLOAD_INVALID",
                format!("request body: {m}"),
            ),
            UploadError::TooLong => err(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "BLOB_UPLOAD_INVALID",
                "body longer than its Content-Range",
            ),
            // Another request got to this offset first (spec: 416 with the range).
            UploadError::Moved { size } => {
                self.upload_progress(StatusCode::RANGE_NOT_SATISFIABLE, base, name, id, size)
            }
            UploadError::Digest { actual, expected } => err(
                StatusCode::BAD_REQUEST,
                "DIGEST_INVALID",
                format!("uploaded content has digest {actual}, not {expected}"),
            ),
        }
    }

    async fn patch_upload(
        &self,
        name: &str,
        id: &str,
        req: &Parts,
        body: Body,
        base: &str,
    ) -> Resp {
        let dir = paths::upload_dir(name, id);
        let mut session = match self.inflight.uploads.open(&self.store, dir, id).await {
            Ok(s) => s,
            Err(e) => return storage_error(e),
        };
        let limit = match self.chunk_limit(&req.headers, session.size(), (name, id, base)) {
            Ok(l) => l,
            Err(r) => return r,
        };
        match session.append(body, limit).await {
            Ok(size) => self.upload_progress(StatusCode::ACCEPTED, base, name, id, size),
            Err(e) => self.upload_error(e, (name, id, base)),
        }
    }

    /// Append the last body (may be empty), verify the digest, compose the data into
    /// the blob store and link it into the repository.
    async fn finish_upload(
        &self,
        name: &str,
        id: &str,
        d: Digest,
        headers: &HeaderMap,
        body: Body,
        base: &str,
    ) -> Resp {
        let dir = paths::upload_dir(name, id);
        let mut session = match self
            .inflight
            .uploads
            .open(&self.store, dir.clone(), id)
            .await
        {
            Ok(s) => s,
            Err(e) => return storage_error(e),
        };
        // Checked before anything is read or appended: a refused closing PUT leaves
        // the data and the cached hash exactly as they were.
        let limit = match self.chunk_limit(headers, session.size(), (name, id, base)) {
            Ok(l) => l,
            Err(r) => return r,
        };
        if let Err(e) = session.append(body, limit).await {
            return self.upload_error(e, (name, id, base));
        }
        if let Err(e) = session.finish(&d, &paths::blob_data(&d)).await {
            return self.upload_error(e, (name, id, base));
        }
        if let Err(e) = self.write_link(&paths::layer_link(name, &d), &d).await {
            return storage_error(e);
        }
        let _ = self.store.abort(&dir).await;
        empty(
            StatusCode::CREATED,
            &[
                ("location", format!("{base}/v2/{name}/blobs/{d}")),
                ("docker-content-digest", d.to_string()),
            ],
        )
    }

    // ---- manifests ----

    /// Resolve a tag or digest reference to a digest stored in the repository.
    ///
    /// For a read (`read`), a malformed reference names no manifest: 404
    /// MANIFEST_UNKNOWN, as distribution answers (its route does not match) and the OCI
    /// conformance suite expects (`.INVALID_MANIFEST_NAME`). Writes keep the 400.
    async fn resolve(&self, name: &str, reference: &str, read: bool) -> Result<Digest, Resp> {
        let unknown = || {
            unknown(
                "MANIFEST_UNKNOWN",
                format!("manifest {reference} unknown to repository {name}"),
            )
        };
        let d = if reference.contains(':') {
            match parse_digest(reference) {
                Ok(d) => d,
                Err(_) if read => return Err(unknown()),
                Err(r) => return Err(r),
            }
        } else {
            if !names::valid_tag(reference) {
                if read {
                    return Err(unknown());
                }
                return Err(err(
                    StatusCode::BAD_REQUEST,
                    "TAG_INVALID",
                    format!("invalid tag {reference:?}"),
                ));
            }
            match self
                .read_link(&paths::tag_current_link(name, reference))
                .await
            {
                Ok(Some(d)) => d,
                Ok(None) => return Err(unknown()),
                Err(e) => return Err(storage_error(e)),
            }
        };
        match self.read_link(&paths::revision_link(name, &d)).await {
            Ok(Some(l)) if l == d => Ok(d),
            Ok(_) => Err(unknown()),
            Err(e) => Err(storage_error(e)),
        }
    }

    async fn get_manifest(&self, name: &str, reference: &str) -> Resp {
        let d = match self.resolve(name, reference, true).await {
            Ok(d) => d,
            Err(r) => return r,
        };
        let bytes = match self.store.read(&paths::blob_data(&d)).await {
            Ok(Some(b)) => b,
            Ok(None) => return unknown("MANIFEST_UNKNOWN", format!("manifest {d} data missing")),
            Err(e) => return storage_error(e),
        };
        let media_type = manifest::parse(None, &bytes)
            .map(|m| m.media_type)
            .unwrap_or_else(|_| manifest::OCI_MANIFEST.to_string());
        let mut r = Response::new(body::full(bytes.clone()));
        let h = r.headers_mut();
        for (k, v) in [
            ("content-type", media_type),
            ("docker-content-digest", d.to_string()),
            ("etag", format!("\"{d}\"")),
            ("content-length", bytes.len().to_string()),
        ] {
            if let Ok(v) = HeaderValue::from_str(&v) {
                h.insert(k, v);
            }
        }
        r
    }

    async fn put_manifest(&self, name: &str, reference: &str, req: &Parts, body: Body) -> Resp {
        let by_digest = reference.contains(':');
        let expected = if by_digest {
            match parse_digest(reference) {
                Ok(d) => Some(d),
                Err(r) => return r,
            }
        } else if !names::valid_tag(reference) {
            return err(
                StatusCode::BAD_REQUEST,
                "TAG_INVALID",
                format!("invalid tag {reference:?}"),
            );
        } else {
            None
        };
        let content_type = req
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let base = base_url(&req.headers, &req.uri);
        // Held until the manifest is stored: the bytes stay in memory that long.
        let (_budget, declared) = match self.manifest_budget(&req.headers).await {
            Ok(b) => b,
            Err(r) => return r,
        };
        let bytes = match read_limited(body, manifest::MAX_SIZE, declared).await {
            Ok(b) => b,
            Err(r) => return r,
        };
        let m = match manifest::parse(content_type.as_deref(), &bytes) {
            Ok(m) => m,
            Err(e) => return err(StatusCode::BAD_REQUEST, "MANIFEST_INVALID", e.0),
        };
        let alg = expected.as_ref().map_or(Algorithm::Sha256, |d| d.algorithm);
        let mut h = Hasher::new(alg);
        h.update(&bytes);
        let d = h.finish();
        if let Some(e) = &expected {
            if *e != d {
                return err(
                    StatusCode::BAD_REQUEST,
                    "DIGEST_INVALID",
                    format!("manifest has digest {d}, not {e}"),
                );
            }
        }
        for b in &m.blobs {
            match self.blob_in_repo(name, b).await {
                Ok(Some(_)) => {}
                Ok(None) => {
                    return err(
                        StatusCode::BAD_REQUEST,
                        "MANIFEST_BLOB_UNKNOWN",
                        format!("blob {b} is not in repository {name}"),
                    )
                }
                Err(e) => return storage_error(e),
            }
        }
        for sub in &m.manifests {
            match self.read_link(&paths::revision_link(name, sub)).await {
                Ok(Some(l)) if l == *sub => {}
                Ok(_) => {
                    return err(
                        StatusCode::BAD_REQUEST,
                        "MANIFEST_BLOB_UNKNOWN",
                        format!("manifest {sub} is not in repository {name}"),
                    )
                }
                Err(e) => return storage_error(e),
            }
        }
        // Data first, then the revision link, then the tag: each step atomic, so a
        // crash leaves at worst an unreferenced blob, never a tag to nothing.
        let stored = async {
            if self.store.stat(&paths::blob_data(&d)).await?.is_none() {
                self.store.put(&paths::blob_data(&d), bytes.clone()).await?;
            }
            self.write_link(&paths::revision_link(name, &d), &d).await?;
            if !by_digest {
                // A tag exists when its `current` link does (tags listing shows no
                // other), so `current` is written last, as distribution does: every
                // interleaving with a DELETE of the tag, in this process or another
                // sharing the storage, ends with the tag resolving or absent, never a
                // listed tag that resolves to nothing. The lock keeps this process's
                // PUTs and DELETEs of one tag from racing on its folder at all.
                let _tag = self
                    .inflight
                    .tag_locks
                    .lock(tag_lock_key(name, reference))
                    .await;
                self.write_link(&paths::tag_index_link(name, reference, &d), &d)
                    .await?;
                self.write_link(&paths::tag_current_link(name, reference), &d)
                    .await?;
            }
            Ok::<_, StorageError>(())
        }
        .await;
        if let Err(e) = stored {
            return storage_error(e);
        }
        let mut headers = vec![
            ("location", format!("{base}/v2/{name}/manifests/{d}")),
            ("docker-content-digest", d.to_string()),
        ];
        if let Some(s) = &m.subject {
            headers.push(("oci-subject", s.to_string()));
        }
        empty(StatusCode::CREATED, &headers)
    }

    async fn delete_manifest(&self, name: &str, reference: &str) -> Resp {
        if let Some(r) = self.deletes_refused() {
            return r;
        }
        if !reference.contains(':') {
            // OCI 1.1: deleting a tag removes the tag only.
            if !names::valid_tag(reference) {
                return err(
                    StatusCode::BAD_REQUEST,
                    "TAG_INVALID",
                    format!("invalid tag {reference:?}"),
                );
            }
            let _tag = self
                .inflight
                .tag_locks
                .lock(tag_lock_key(name, reference))
                .await;
            // A tag folder without its `current` link (left by a crash, or by
            // distribution) is deleted too, as distribution 3 deletes the folder: it
            // could otherwise never be removed through the API.
            return match self.store.list_all(&paths::tag_dir(name, reference)).await {
                Ok(entries) if !entries.is_empty() => match self.untag(name, reference).await {
                    Ok(()) => empty(StatusCode::ACCEPTED, &[]),
                    Err(e) => storage_error(e),
                },
                Ok(_) => unknown("MANIFEST_UNKNOWN", format!("tag {reference} unknown")),
                Err(e) => storage_error(e),
            };
        }
        let d = match self.resolve(name, reference, false).await {
            Ok(d) => d,
            Err(r) => return r,
        };
        // As distribution: every tag pointing at it goes too, then the revision.
        let tags = match self.store.list_all(&paths::tags_dir(name)).await {
            Ok(t) => t,
            Err(e) => return storage_error(e),
        };
        for t in tags {
            let _tag = self.inflight.tag_locks.lock(tag_lock_key(name, &t)).await;
            if let Ok(Some(cur)) = self.read_link(&paths::tag_current_link(name, &t)).await {
                if cur == d {
                    if let Err(e) = self.untag(name, &t).await {
                        return storage_error(e);
                    }
                }
            }
        }
        match self
            .store
            .delete_prefix(&paths::revision_dir(name, &d))
            .await
        {
            Ok(()) => empty(StatusCode::ACCEPTED, &[]),
            Err(e) => storage_error(e),
        }
    }

    /// Remove a tag (its lock held): `current` first, which makes the tag absent in
    /// one atomic step, then the rest of its folder (history links), which nothing
    /// reads once `current` is gone.
    async fn untag(&self, name: &str, tag: &str) -> storage::Result<()> {
        self.store
            .delete(&paths::tag_current_link(name, tag))
            .await?;
        self.store.delete_prefix(&paths::tag_dir(name, tag)).await
    }

    /// Wait for the share of `MANIFEST_BUDGET` a manifest PUT needs: its declared
    /// Content-Length, or the most a manifest may be when it declares none. Also
    /// returns the declared length, so the body buffer is allocated once.
    async fn manifest_budget(
        &self,
        headers: &HeaderMap,
    ) -> Result<(tokio::sync::OwnedSemaphorePermit, Option<usize>), Resp> {
        let declared = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        let limit = manifest::MAX_SIZE;
        if declared.is_some_and(|n| n > limit as u64) {
            return Err(too_large(limit));
        }
        let declared = declared.map(|n| n as usize);
        // Twice the body: the bytes and their parsed form (annotations and all) are
        // both held until the manifest is stored. At least one permit, so an empty
        // body still takes its turn; never more than the whole budget.
        let need = declared
            .unwrap_or(limit)
            .saturating_mul(2)
            .clamp(1, MANIFEST_BUDGET);
        let permits = u32::try_from(need).unwrap_or(u32::MAX);
        let wait = self
            .inflight
            .manifest_budget
            .clone()
            .acquire_many_owned(permits);
        match tokio::time::timeout(MANIFEST_BUDGET_WAIT, wait).await {
            Ok(Ok(p)) => Ok((p, declared)),
            // Closed never happens (nothing closes it); timed out: too busy.
            _ => {
                let mut r = err(
                    StatusCode::TOO_MANY_REQUESTS,
                    "TOOMANYREQUESTS",
                    format!(
                        "too many manifest bytes are being received at once (budget {} MiB); retry shortly",
                        MANIFEST_BUDGET >> 20
                    ),
                );
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
                Err(r)
            }
        }
    }

    async fn tags(&self, name: &str, req: &Parts) -> Resp {
        let q = query(req);
        let (n, last) = match pagination_args(&q) {
            Ok(p) => p,
            Err(r) => return r,
        };
        let folders = match self.store.list_all(&paths::tags_dir(name)).await {
            Ok(t) => t,
            Err(e) => return storage_error(e),
        };
        let empty_repo = folders.is_empty();
        // Only tags that resolve: a folder without `current` is no tag (a PUT or DELETE
        // in progress elsewhere, or a crash), and listing it would offer clients a tag
        // they cannot pull.
        let checked: storage::Result<Vec<String>> = futures_util::stream::iter(folders)
            .map(|t| async move {
                let present = self
                    .store
                    .stat(&paths::tag_current_link(name, &t))
                    .await
                    .map(|m| m.is_some());
                (t, present)
            })
            .buffer_unordered(16)
            .filter_map(|(t, present)| async move {
                match present {
                    Ok(true) => Some(Ok(t)),
                    Ok(false) => None,
                    Err(e) => Some(Err(e)),
                }
            })
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect();
        let all = match checked {
            Ok(t) => t,
            Err(e) => return storage_error(e),
        };
        if empty_repo {
            let known = matches!(self.store.list_all(&format!("{}/{name}", paths::repositories())).await, Ok(v) if !v.is_empty());
            if !known {
                return err(
                    StatusCode::NOT_FOUND,
                    "NAME_UNKNOWN",
                    format!("repository {name} unknown"),
                );
            }
        }
        let (page, more) = paginate(all, n, last.as_deref());
        let mut r = json(
            StatusCode::OK,
            "application/json",
            &serde_json::json!({"name": name, "tags": page}),
        );
        if more {
            if let (Some(n), Some(l)) = (n, page.last()) {
                link_next(&mut r, &format!("/v2/{name}/tags/list?n={n}&last={l}"));
            }
        }
        r
    }

    async fn catalog(&self, req: &Parts) -> Resp {
        let q = query(req);
        let (n, last) = match pagination_args(&q) {
            Ok(p) => p,
            Err(r) => return r,
        };
        let repos = match list_repositories(&self.store).await {
            Ok(r) => r,
            Err(e) => return storage_error(e),
        };
        let (page, more) = paginate(repos, n, last.as_deref());
        let mut r = json(
            StatusCode::OK,
            "application/json",
            &serde_json::json!({"repositories": page}),
        );
        if more {
            if let (Some(n), Some(l)) = (n, page.last()) {
                link_next(&mut r, &format!("/v2/_catalog?n={n}&last={l}"));
            }
        }
        r
    }

    async fn referrers(&self, name: &str, digest: &str, req: &Parts) -> Resp {
        let d = match parse_digest(digest) {
            Ok(d) => d,
            Err(r) => return r,
        };
        let filter = query(req).get("artifactType").cloned();
        let revisions = match digests_under(&self.store, &paths::revisions_dir(name)).await {
            Ok(r) => r,
            Err(e) => return storage_error(e),
        };
        let mut manifests = Vec::new();
        for rd in revisions {
            let Ok(Some(bytes)) = self.store.read(&paths::blob_data(&rd)).await else {
                continue;
            };
            let Ok(m) = manifest::parse(None, &bytes) else {
                continue;
            };
            if m.subject.as_ref() != Some(&d) {
                continue;
            }
            if filter.is_some() && m.artifact_type != filter {
                continue;
            }
            let mut desc = serde_json::json!({
                "mediaType": m.media_type,
                "digest": rd.to_string(),
                "size": bytes.len(),
            });
            if let Some(t) = &m.artifact_type {
                desc["artifactType"] = serde_json::json!(t);
            }
            if let Some(a) = &m.annotations {
                desc["annotations"] = serde_json::Value::Object(a.clone());
            }
            manifests.push(desc);
        }
        manifests.sort_by(|a, b| a["digest"].as_str().cmp(&b["digest"].as_str()));
        let mut r = json(
            StatusCode::OK,
            manifest::OCI_INDEX,
            &serde_json::json!({"schemaVersion": 2, "mediaType": manifest::OCI_INDEX, "manifests": manifests}),
        );
        if filter.is_some() {
            r.headers_mut().insert(
                "oci-filters-applied",
                HeaderValue::from_static("artifactType"),
            );
        }
        r
    }
}

fn link_next(r: &mut Resp, target: &str) {
    if let Ok(v) = HeaderValue::from_str(&format!("<{target}>; rel=\"next\"")) {
        r.headers_mut().insert(header::LINK, v);
    }
}

fn tag_lock_key(name: &str, tag: &str) -> String {
    // Neither a repository name nor a tag holds ':', so the key is unambiguous.
    format!("{name}:{tag}")
}

fn too_large(limit: usize) -> Resp {
    err(
        StatusCode::PAYLOAD_TOO_LARGE,
        "SIZE_INVALID",
        format!("manifest larger than {limit} bytes"),
    )
}

/// Read a small body whole, refusing more than `limit` bytes (413). `declared` is the
/// Content-Length (already checked against `limit`); hyper ends the body there.
async fn read_limited(
    mut body: Body,
    limit: usize,
    declared: Option<usize>,
) -> Result<Bytes, Resp> {
    let mut buf = Vec::with_capacity(declared.unwrap_or(0));
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            err(
                StatusCode::BAD_REQUEST,
                "MANIFEST_INVALID",
                format!("request body: {e}"),
            )
        })?;
        if let Ok(d) = frame.into_data() {
            if buf.len() + d.len() > limit {
                return Err(too_large(limit));
            }
            buf.extend_from_slice(&d);
        }
    }
    Ok(Bytes::from(buf))
}

/// HMAC takes keys of any length, so `new_from_slice` cannot fail; were it ever to,
/// a fixed all-zero key keeps the type total (tokens would then not verify across
/// instances, which fails safe).
fn unreachable_hmac() -> hmac::Hmac<sha2::Sha256> {
    <hmac::Hmac<sha2::Sha256> as hmac::digest::KeyInit>::new(&Default::default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_from_the_end() {
        assert_eq!(route(""), Some(Endpoint::Base));
        assert_eq!(route("_catalog"), Some(Endpoint::Catalog));
        assert_eq!(route("a/b/tags/list"), Some(Endpoint::Tags("a/b")));
        assert_eq!(route("a/manifests/v1"), Some(Endpoint::Manifest("a", "v1")));
        assert_eq!(
            route("a/blobs/sha256:x"),
            Some(Endpoint::Blob("a", "sha256:x"))
        );
        assert_eq!(route("a/b/blobs/uploads/"), Some(Endpoint::Uploads("a/b")));
        assert_eq!(
            route("a/b/blobs/uploads/123"),
            Some(Endpoint::Upload("a/b", "123"))
        );
        assert_eq!(
            route("a/referrers/sha256:x"),
            Some(Endpoint::Referrers("a", "sha256:x"))
        );
        assert_eq!(
            route("blobs/manifests/x"),
            Some(Endpoint::Manifest("blobs", "x"))
        );
        assert_eq!(route("a/other/x"), None);
        assert_eq!(route("a/manifests/"), None);
    }

    #[test]
    fn ranges() {
        let h = |s: &'static str| HeaderValue::from_static(s);
        assert_eq!(parse_range(None, 10), Ok(None));
        assert_eq!(parse_range(Some(&h("bytes=0-3")), 10), Ok(Some((0, 4))));
        assert_eq!(parse_range(Some(&h("bytes=5-")), 10), Ok(Some((5, 10))));
        assert_eq!(parse_range(Some(&h("bytes=-3")), 10), Ok(Some((7, 10))));
        assert_eq!(parse_range(Some(&h("bytes=8-100")), 10), Ok(Some((8, 10))));
        // Well-formed single ranges that miss the blob: 416.
        assert!(parse_range(Some(&h("bytes=10-")), 10).is_err());
        assert!(parse_range(Some(&h("bytes=-0")), 10).is_err());
        // RFC 9110 §14.2: ignored (whole blob, 200): several ranges, another unit,
        // an invalid specifier.
        assert_eq!(parse_range(Some(&h("bytes=0-1,3-4")), 10), Ok(None));
        assert_eq!(parse_range(Some(&h("items=0-1")), 10), Ok(None));
        assert_eq!(parse_range(Some(&h("bytes=5-3")), 10), Ok(None));
        assert_eq!(parse_range(Some(&h("bytes=a-b")), 10), Ok(None));
        assert_eq!(parse_range(Some(&h("bytes=-")), 10), Ok(None));
        assert_eq!(parse_range(Some(&h("bytes=+1-2")), 10), Ok(None));
    }

    #[test]
    fn pages() {
        let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(
            paginate(v(&["c", "a", "b"]), Some(2), None),
            (v(&["a", "b"]), true)
        );
        assert_eq!(
            paginate(v(&["c", "a", "b"]), Some(2), Some("b")),
            (v(&["c"]), false)
        );
        assert_eq!(paginate(v(&["a"]), Some(0), None), (v(&[]), true));
        assert_eq!(percent_decode("a%2Fb"), "a/b");
    }
}
