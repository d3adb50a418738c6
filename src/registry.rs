//! The bundled registry: the OCI Distribution API v1.1 served in-process from
//! Docker distribution's storage layout. Nothing becomes visible before its digest is
//! verified; upload state lives only in storage, so any instance sharing the storage
//! and the secret can continue an upload another began.
//!
//! Layers, as distribution has them: `api` (HTTP handlers by family) → `store` (the
//! registry's meaning over storage: links, membership, resolve, walks) → `paths` (every
//! key) → `storage` (the seam and its implementations). `gc` and `maintenance` use
//! `store` too; `inflight` is what this process coordinates in memory.

pub mod api;
pub mod error;
pub mod gc;
pub mod hints;
pub mod inflight;
pub mod locks;
pub mod maintenance;
pub mod manifest;
pub mod paths;
pub mod storage;
pub mod store;
pub mod upload;

pub use error::Error;
pub use inflight::{InFlight, MANIFEST_BUDGET};

use crate::body::Body;
use crate::oci::{Call, Endpoint};
use http::{Request, Response};
use std::sync::{Arc, Mutex};
use storage::Storage;

/// The registry service over one storage.
pub struct Registry<S: Storage> {
    store: S,
    delete: bool,
    /// Refuse every write (`registry.read_only`).
    read_only: bool,
    /// `registry.max_manifest_size`: a larger manifest PUT answers 413.
    max_manifest_size: usize,
    secret: Vec<u8>,
    /// Shared with the registries of later reloads (see `inflight`).
    inflight: Arc<InFlight>,
    /// The requests' side of online garbage collection (`gc::epoch`).
    watch: Box<gc::epoch::Watch>,
    /// What storage said moments ago (links, blob sizes, small blobs' bytes), shared
    /// with the next reload's registry when the storage is the same (`hints`).
    hints: Arc<hints::Hints>,
    /// Online garbage collection and upload purge; stops when this registry is dropped
    /// (a reload builds a new one).
    maintenance: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl<S: Storage> Drop for Registry<S> {
    fn drop(&mut self) {
        if let Some(t) = self
            .maintenance
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            t.abort();
        }
    }
}

impl<S: Storage> Registry<S> {
    /// A registry over `store`. `inflight` is the process's coordination: pass the
    /// previous registry's (`Registry::inflight`) on a reload so locks carry over.
    pub fn new(store: S, delete: bool, secret: Vec<u8>, inflight: Arc<InFlight>) -> Registry<S> {
        Registry {
            store,
            delete,
            read_only: false,
            max_manifest_size: crate::config::DEFAULT_MAX_MANIFEST_SIZE,
            secret,
            inflight,
            watch: Box::default(),
            hints: Arc::default(),
            maintenance: Mutex::new(None),
        }
    }

    /// `registry.read_only`: every write answers 405; reads keep working.
    pub fn with_read_only(mut self, on: bool) -> Registry<S> {
        self.read_only = on;
        self
    }

    /// `registry.max_manifest_size`: the largest manifest a PUT may carry.
    pub fn with_max_manifest_size(mut self, bytes: usize) -> Registry<S> {
        self.max_manifest_size = bytes;
        self
    }

    pub fn read_only(&self) -> bool {
        self.read_only
    }

    /// Take over `previous`'s hints when both serve the same storage (a reload that
    /// changed nothing there), so a reload costs no storage round trips.
    pub fn with_hints_of(mut self, previous: &Registry<S>) -> Registry<S> {
        if previous.store.describe() == self.store.describe() {
            self.hints = previous.hints.clone();
        }
        self
    }

    /// (hints, kept small blobs): for tests.
    pub fn hint_entries(&self) -> (usize, usize) {
        self.hints.entries()
    }

    /// The in-memory coordination, for the next reload's registry.
    pub fn inflight(&self) -> Arc<InFlight> {
        self.inflight.clone()
    }

    /// Per-upload state this process keeps in memory: (upload locks, cached hashes).
    /// Both are bounded (see `locks`); exposed for tests and metrics.
    pub fn upload_state_entries(&self) -> (usize, usize) {
        self.inflight.uploads.entries()
    }

    pub fn storage(&self) -> &S {
        &self.store
    }

    /// Background upkeep while serving: garbage collection every `gc.0` sparing blobs
    /// younger than `gc.1`, and removal of uploads abandoned for `purge.0`, checked
    /// every `purge.1`. Stops when this registry is dropped.
    pub fn start_maintenance(
        &self,
        gc: Option<(std::time::Duration, std::time::Duration)>,
        purge: Option<(std::time::Duration, std::time::Duration)>,
    ) where
        S: Clone,
    {
        if let Some(task) = maintenance::start(self.store.clone(), gc, purge) {
            *self.maintenance.lock().unwrap_or_else(|p| p.into_inner()) = Some(task);
        }
    }

    /// Answer one request (already authenticated) for the endpoint `call` names.
    /// `visible`: the repositories `_catalog` may list to this caller (None: all).
    pub async fn handle(
        &self,
        call: Call,
        req: Request<Body>,
        visible: store::Visible<'_>,
    ) -> Response<Body> {
        let endpoint = match call.endpoint {
            Ok(e) => e,
            Err(e) => return e.into_response(),
        };
        if self.read_only && endpoint.writes() {
            return crate::error::ApiError::unsupported(
                "the registry is read-only (registry.read_only = true): pushes, deletes and uploads are refused; pulls work",
            )
            .into_response();
        }
        let (req, body) = req.into_parts();
        // Absolute Locations only for the answers that carry one.
        let base = || api::base_url(&req.headers, &req.uri);
        let answer = match endpoint {
            Endpoint::Base => Ok(api::json(
                http::StatusCode::OK,
                "application/json",
                &serde_json::json!({}),
            )),
            Endpoint::Catalog(page) => self.catalog(page, visible).await,
            Endpoint::Tags(repo, page) => self.tags(&repo, page).await,
            Endpoint::GetManifest {
                repository,
                reference,
                ..
            } => self.get_manifest(&repository, &reference).await,
            Endpoint::PutManifest(repo, reference) => {
                self.put_manifest(&repo, &reference, &req, body, &base())
                    .await
            }
            Endpoint::DeleteManifest(repo, reference) => {
                self.delete_manifest(&repo, &reference).await
            }
            Endpoint::GetBlob {
                repository,
                digest,
                head,
            } => self.get_blob(&repository, &digest, &req, head).await,
            Endpoint::DeleteBlob(repo, digest) => self.delete_blob(&repo, &digest).await,
            Endpoint::StartUpload {
                repository,
                digest,
                mount,
            } => {
                self.start_upload(&repository, digest, mount, &req, body, &base())
                    .await
            }
            Endpoint::UploadStatus(u) => self.upload_status(&u, &base()).await,
            Endpoint::PatchUpload(u) => self.patch_upload(&u, &req, body, &base()).await,
            Endpoint::FinishUpload(u, digest) => {
                self.finish_upload(&u, digest, &req, body, &base()).await
            }
            Endpoint::CancelUpload(u) => self.cancel_upload(&u).await,
            Endpoint::Referrers {
                repository,
                digest,
                artifact_type,
            } => self.referrers(&repository, &digest, artifact_type).await,
        };
        answer.unwrap_or_else(Error::into_response)
    }

    fn deletes_refused(&self) -> Result<(), Error> {
        if self.delete {
            return Ok(());
        }
        Err(crate::error::ApiError::unsupported(
            "deletion is disabled on this registry (registry.delete = false)",
        )
        .into())
    }
}
