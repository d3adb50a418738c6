//! Blob uploads: POST (a session, a monolithic upload, or a cross-repository mount),
//! PATCH chunks in order (416 otherwise), status GET, cancel DELETE, and the closing PUT
//! that verifies the digest before anything becomes visible. The session's Location
//! carries an HMAC of (repository, id) so only its holder can continue it, on any
//! instance that shares the storage and the secret.

use super::{empty, Answer, Resp};
use crate::body::Body;
use crate::error::ApiError;
use crate::oci::endpoint::UploadRef;
use crate::oci::{Digest, Repository};
use crate::registry::storage::{ErrorKind, Storage};
use crate::registry::upload::{put_direct, UploadError, Uploads};
use crate::registry::{paths, store, Error, Registry};
use bytes::Bytes;
use hmac::{KeyInit, Mac};
use http::request::Parts;
use http::{header, HeaderMap, StatusCode};

fn upload_unknown(id: &str) -> Error {
    ApiError::unknown("BLOB_UPLOAD_UNKNOWN", format!("upload {id} unknown")).into()
}

fn created(base: &str, repo: &Repository, d: &Digest) -> Resp {
    empty(
        StatusCode::CREATED,
        &[
            ("location", format!("{base}/v2/{repo}/blobs/{d}")),
            ("docker-content-digest", d.to_string()),
        ],
    )
}

impl<S: Storage> Registry<S> {
    fn state_token(&self, repo: &str, id: &str) -> String {
        use base64::Engine;
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&self.secret)
            .unwrap_or_else(|_| unreachable_hmac());
        mac.update(repo.as_bytes());
        mac.update(b"\n");
        mac.update(id.as_bytes());
        let tag = mac.finalize().into_bytes();
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&tag[..18])
    }

    /// Where to continue, what is stored (`Range: 0-<size-1>`; distribution says `0-0`
    /// for an empty upload) and the id: the headers of every answer about a session.
    fn progress_headers(
        &self,
        base: &str,
        repo: &str,
        id: &str,
        size: u64,
    ) -> Vec<(&'static str, String)> {
        vec![
            (
                "location",
                format!(
                    "{base}/v2/{repo}/blobs/uploads/{id}?_state={}",
                    self.state_token(repo, id)
                ),
            ),
            ("range", format!("0-{}", size.saturating_sub(1))),
            ("docker-upload-uuid", id.to_string()),
        ]
    }

    fn upload_progress(&self, status: StatusCode, base: &str, u: &UploadRef, size: u64) -> Resp {
        empty(
            status,
            &self.progress_headers(base, &u.repository, &u.id, size),
        )
    }

    /// The session is ours (token), well-formed and still there.
    async fn known_upload(&self, u: &UploadRef) -> Result<(), Error> {
        let token_ok = u.state.as_deref().is_some_and(|t| {
            crate::auth::htpasswd::ct_eq(
                t.as_bytes(),
                self.state_token(&u.repository, &u.id).as_bytes(),
            )
        });
        if !token_ok || uuid::Uuid::parse_str(&u.id).is_err() {
            return Err(upload_unknown(&u.id));
        }
        match self
            .store
            .stat(&paths::upload_started_at(&u.repository, &u.id))
            .await?
        {
            Some(_) => Ok(()),
            None => Err(upload_unknown(&u.id)),
        }
    }

    pub(in crate::registry) async fn start_upload(
        &self,
        repo: &Repository,
        monolithic: Option<Digest>,
        mount: Option<(Digest, Repository)>,
        req: &Parts,
        body: Body,
        base: &str,
    ) -> Answer {
        if let Some((d, from)) = mount {
            if self.blob_vouched(&from, &d).await?.is_some() {
                store::write_link(&self.store, &paths::layer_link(repo, &d), &d).await?;
                return Ok(created(base, repo, &d));
            }
            // Not there: fall back to an ordinary upload (spec).
        }
        let id = uuid::Uuid::new_v4().to_string();
        if let Some(d) = &monolithic {
            // Digest known up front: straight into the blob key where the storage can
            // (no session, no copy); else the session below.
            let key = paths::blob_data(d);
            if let Some(w) = self.store.direct(&key).await? {
                // Vouched for first: a stored copy a collection is about to delete is
                // kept, or deleted before this write (which then stores it anew).
                self.watch.vouch_now(&self.store, [d]).await?;
                let u = UploadRef {
                    repository: repo.clone(),
                    id,
                    state: None,
                };
                put_direct(&self.store, w, d, &key, body)
                    .await
                    .map_err(|e| self.upload_error(e, &u, base))?;
                store::write_link(&self.store, &paths::layer_link(repo, d), d).await?;
                return Ok(created(base, repo, d));
            }
        }
        let started = crate::access_log::rfc3339(std::time::SystemTime::now());
        if let Err(e) = self
            .store
            .put(&paths::upload_started_at(repo, &id), Bytes::from(started))
            .await
        {
            let _ = self.store.abort(&paths::upload_dir(repo, &id)).await;
            return Err(e.into());
        }
        let u = UploadRef {
            repository: repo.clone(),
            id,
            state: None,
        };
        if let Some(d) = monolithic {
            // Monolithic upload: the whole blob in this POST. On failure the client has
            // no session to resume (it never saw a Location), so none is kept.
            let r = self.complete(&u, d, &req.headers, body, base).await;
            if r.is_err() {
                self.inflight.uploads.forget(&u.id);
                let _ = self.store.abort(&paths::upload_dir(repo, &u.id)).await;
            }
            return r;
        }
        Ok(self.upload_progress(StatusCode::ACCEPTED, base, &u, 0))
    }

    pub(in crate::registry) async fn upload_status(&self, u: &UploadRef, base: &str) -> Answer {
        self.known_upload(u).await?;
        let size = Uploads::size(&self.store, &paths::upload_dir(&u.repository, &u.id)).await?;
        Ok(self.upload_progress(StatusCode::NO_CONTENT, base, u, size))
    }

    pub(in crate::registry) async fn cancel_upload(&self, u: &UploadRef) -> Answer {
        self.known_upload(u).await?;
        let dir = paths::upload_dir(&u.repository, &u.id);
        self.inflight
            .uploads
            .cancel(&self.store, &dir, &u.id)
            .await?;
        Ok(empty(StatusCode::NO_CONTENT, &[]))
    }

    pub(in crate::registry) async fn patch_upload(
        &self,
        u: &UploadRef,
        req: &Parts,
        body: Body,
        base: &str,
    ) -> Answer {
        self.known_upload(u).await?;
        let dir = paths::upload_dir(&u.repository, &u.id);
        let mut session = self.inflight.uploads.open(&self.store, dir, &u.id).await?;
        let limit = self.chunk_limit(&req.headers, session.size(), u, base)?;
        let size = session
            .append(body, limit)
            .await
            .map_err(|e| self.upload_error(e, u, base))?;
        Ok(self.upload_progress(StatusCode::ACCEPTED, base, u, size))
    }

    pub(in crate::registry) async fn finish_upload(
        &self,
        u: &UploadRef,
        digest: Result<Digest, ApiError>,
        req: &Parts,
        body: Body,
        base: &str,
    ) -> Answer {
        self.known_upload(u).await?;
        let d = digest?;
        self.complete(u, d, &req.headers, body, base).await
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
        u: &UploadRef,
        base: &str,
    ) -> Result<Option<u64>, Error> {
        let Some(value) = headers
            .get(header::CONTENT_RANGE)
            .and_then(|v| v.to_str().ok())
        else {
            return Ok(None);
        };
        let r = value
            .trim()
            .trim_start_matches("bytes=")
            .trim_start_matches("bytes ");
        let Some((start, len)) = super::parse_content_range(value) else {
            return Err(ApiError::bad_request(
                "BLOB_UPLOAD_INVALID",
                format!("bad Content-Range {r:?}"),
            )
            .into());
        };
        // Chunks must arrive in order, each exactly once (spec: 416 otherwise).
        if start != size {
            return Err(Error::Unsatisfiable(self.progress_headers(
                base,
                &u.repository,
                &u.id,
                size,
            )));
        }
        if let Some(cl) = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
        {
            if cl != len {
                return Err(ApiError::new(
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    "BLOB_UPLOAD_INVALID",
                    format!("Content-Length {cl} does not match Content-Range {r}"),
                )
                .into());
            }
        }
        Ok(Some(len))
    }

    /// An upload that did not go through, as its answer.
    fn upload_error(&self, e: UploadError, u: &UploadRef, base: &str) -> Error {
        match e {
            // The session vanished under the request (cancelled or finished by another
            // request since it was found): the upload is gone, not the storage broken.
            UploadError::Storage(e) if e.kind == ErrorKind::NotFound => upload_unknown(&u.id),
            UploadError::Storage(e) => e.into(),
            UploadError::Body(m) => {
                ApiError::bad_request("BLOB_UPLOAD_INVALID", format!("request body: {m}")).into()
            }
            UploadError::TooLong => ApiError::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "BLOB_UPLOAD_INVALID",
                "body longer than its Content-Range",
            )
            .into(),
            // Another request got to this offset first (spec: 416 with the range).
            UploadError::Moved { size } => {
                Error::Unsatisfiable(self.progress_headers(base, &u.repository, &u.id, size))
            }
            UploadError::Digest { actual, expected } => ApiError::bad_request(
                "DIGEST_INVALID",
                format!("uploaded content has digest {actual}, not {expected}"),
            )
            .into(),
        }
    }

    /// Append the last body (may be empty), verify the digest, compose the data into
    /// the blob store and link it into the repository.
    async fn complete(
        &self,
        u: &UploadRef,
        d: Digest,
        headers: &HeaderMap,
        body: Body,
        base: &str,
    ) -> Answer {
        let (repo, id) = (&u.repository, u.id.as_str());
        let dir = paths::upload_dir(repo, id);
        let mut session = self
            .inflight
            .uploads
            .open(&self.store, dir.clone(), id)
            .await?;
        // Checked before anything is read or appended: a refused closing PUT leaves
        // the data and the cached hash exactly as they were.
        let limit = self.chunk_limit(headers, session.size(), u, base)?;
        session
            .append(body, limit)
            .await
            .map_err(|e| self.upload_error(e, u, base))?;
        // Vouched for before composing: a stored copy a collection is about to delete
        // is kept, or deleted before the compose, which then stores it anew.
        self.watch.vouch_now(&self.store, [&d]).await?;
        session
            .finish(&d, &paths::blob_data(&d))
            .await
            .map_err(|e| self.upload_error(e, u, base))?;
        store::write_link(&self.store, &paths::layer_link(repo, &d), &d).await?;
        let _ = self.store.abort(&dir).await;
        Ok(created(base, repo, &d))
    }
}

/// HMAC takes keys of any length, so `new_from_slice` cannot fail; were it ever to,
/// a fixed all-zero key keeps the type total (tokens would then not verify across
/// instances, which fails safe).
fn unreachable_hmac() -> hmac::Hmac<sha2::Sha256> {
    <hmac::Hmac<sha2::Sha256> as hmac::digest::KeyInit>::new(&Default::default())
}
