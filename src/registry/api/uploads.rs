//! Blob uploads: POST (a session, a monolithic upload, or a cross-repository mount),
//! PATCH chunks in order (416 otherwise), status GET, cancel DELETE, and the closing PUT
//! that verifies the digest before anything becomes visible. The session's Location
//! carries an HMAC of (repository, id) so only its holder can continue it, on any
//! instance that shares the storage and the secret.

use super::{empty, Answer, Resp};
use crate::body::Body;
use crate::error::ApiError;
use crate::oci::endpoint::UploadRef;
use crate::oci::{Algorithm, Digest, Hasher, Repository};
use crate::registry::locks::KeyGuard;
use crate::registry::storage::{Appender, Storage};
use crate::registry::{paths, store, Error, Registry};
use bytes::Bytes;
use futures_util::StreamExt;
use hmac::Mac;
use http::request::Parts;
use http::{header, HeaderMap, StatusCode};
use http_body_util::BodyExt;

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

    /// Take the upload's lock (one writer at a time in this process) and read its
    /// offset under it.
    async fn open_upload(&self, id: &str, key: &str) -> Result<(KeyGuard<'_>, u64), Error> {
        let guard = self.inflight.lock_upload(id).await;
        let size = self.upload_size(key).await?;
        Ok((guard, size))
    }

    /// Bytes stored so far in an upload (its offset).
    async fn upload_size(&self, key: &str) -> std::io::Result<u64> {
        Ok(self.store.stat(key).await?.map_or(0, |m| m.size))
    }

    /// Hash the first `size` stored bytes of `key`.
    async fn hash_stored(&self, key: &str, size: u64, alg: Algorithm) -> std::io::Result<Hasher> {
        let mut h = Hasher::new(alg);
        if size > 0 {
            if let Some(mut s) = self.store.get(key, Some((0, size))).await? {
                while let Some(chunk) = s.next().await {
                    h.update(&chunk?);
                }
            }
        }
        Ok(h)
    }

    /// The upload is over (committed or cancelled): drop its cached hash.
    fn forget(&self, id: &str) {
        self.inflight.hashes().remove(id);
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
            if store::blob_in_repo(&self.store, &from, &d).await?.is_some() {
                store::write_link(&self.store, &paths::layer_link(repo, &d), &d).await?;
                return Ok(created(base, repo, &d));
            }
            // Not there: fall back to an ordinary upload (spec).
        }
        let id = uuid::Uuid::new_v4().to_string();
        let started = crate::access_log::rfc3339(std::time::SystemTime::now());
        if let Err(e) = self
            .store
            .put(&paths::upload_started_at(repo, &id), Bytes::from(started))
            .await
        {
            let _ = self.store.delete(&paths::upload_dir(repo, &id)).await;
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
                self.forget(&u.id);
                let _ = self.store.delete(&paths::upload_dir(repo, &u.id)).await;
            }
            return r;
        }
        Ok(self.upload_progress(StatusCode::ACCEPTED, base, &u, 0))
    }

    pub(in crate::registry) async fn upload_status(&self, u: &UploadRef, base: &str) -> Answer {
        self.known_upload(u).await?;
        let size = self
            .upload_size(&paths::upload_data(&u.repository, &u.id))
            .await?;
        Ok(self.upload_progress(StatusCode::NO_CONTENT, base, u, size))
    }

    pub(in crate::registry) async fn cancel_upload(&self, u: &UploadRef) -> Answer {
        self.known_upload(u).await?;
        let _g = self.inflight.lock_upload(&u.id).await;
        self.forget(&u.id);
        self.store
            .delete(&paths::upload_dir(&u.repository, &u.id))
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
        let key = paths::upload_data(&u.repository, &u.id);
        let (_guard, size) = self.open_upload(&u.id, &key).await?;
        let limit = self.chunk_limit(&req.headers, size, u, base)?;
        let (new_size, h) = self.append_body(&u.id, &key, body, size, limit).await?;
        self.inflight.hashes().put(&u.id, new_size, h);
        Ok(self.upload_progress(StatusCode::ACCEPTED, base, u, new_size))
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

    /// Bring the cached hash to the data's current size, rehashing stored bytes when
    /// this process has not seen them (upload begun elsewhere, or before a restart).
    async fn hasher_at(
        &self,
        key: &str,
        cached: Option<(u64, Hasher)>,
        size: u64,
    ) -> std::io::Result<Hasher> {
        if let Some((off, h)) = cached {
            if off == size {
                return Ok(h);
            }
        }
        self.hash_stored(key, size, Algorithm::Sha256).await
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
        let len = end - start + 1;
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

    /// Append a request body to an upload, hashing as it streams. Called with the
    /// upload's lock held. A storage failure, or a body longer than its range, takes
    /// back every byte of this request (the upload is as before it); a body cut short
    /// by the client keeps what arrived, which the client can see and resume from.
    async fn append_body(
        &self,
        id: &str,
        key: &str,
        body: Body,
        size: u64,
        limit: Option<u64>,
    ) -> Result<(u64, Hasher), Error> {
        let cached = self.inflight.hashes().take(id);
        let mut hasher = self.hasher_at(key, cached, size).await?;
        // What the cache gets back if this request's bytes are taken back.
        let before = hasher.clone();
        let mut written = 0u64;
        let mut body = body;
        let mut appender: Option<S::Appender> = None;
        let mut failure: Option<Error> = None;
        let mut undo = false;
        while let Some(frame) = body.frame().await {
            let data = match frame {
                Ok(f) => match f.into_data() {
                    Ok(d) => d,
                    Err(_) => continue,
                },
                Err(e) => {
                    failure = Some(
                        ApiError::bad_request("BLOB_UPLOAD_INVALID", format!("request body: {e}"))
                            .into(),
                    );
                    break;
                }
            };
            if data.is_empty() {
                continue;
            }
            if limit.is_some_and(|l| written + data.len() as u64 > l) {
                failure = Some(
                    ApiError::new(
                        StatusCode::RANGE_NOT_SATISFIABLE,
                        "BLOB_UPLOAD_INVALID",
                        "body longer than its Content-Range",
                    )
                    .into(),
                );
                undo = true;
                break;
            }
            if appender.is_none() {
                match self.store.append(key).await {
                    Ok(a) => appender = Some(a),
                    Err(e) => {
                        failure = Some(e.into());
                        break;
                    }
                }
            }
            if let Some(a) = appender.as_mut() {
                if let Err(e) = a.write(data.clone()).await {
                    failure = Some(e.into());
                    undo = true;
                    break;
                }
            }
            hasher.update(&data);
            written += data.len() as u64;
        }
        if let Some(a) = appender.as_mut() {
            if !undo {
                if let Err(e) = a.finish().await {
                    failure.get_or_insert(e.into());
                    undo = true;
                }
            }
        }
        if undo {
            if let Some(a) = appender {
                if let Err(e) = a.abort().await {
                    // The upload now holds bytes nobody hashed: let the next request
                    // rehash what is really stored.
                    tracing::error!(error = %e, upload = id, "could not take back a failed append");
                    return Err(failure.unwrap_or(Error::Storage(e)));
                }
            }
            self.inflight.hashes().put(id, size, before);
            return Err(failure.unwrap_or_else(|| std::io::Error::other("append").into()));
        }
        match failure {
            Some(r) => {
                // Whatever was stored is now part of the upload; the hash follows it.
                self.inflight.hashes().put(id, size + written, hasher);
                Err(r)
            }
            None => Ok((size + written, hasher)),
        }
    }

    /// Append the last body (may be empty), verify the digest, move the data into the
    /// blob store and link it into the repository.
    async fn complete(
        &self,
        u: &UploadRef,
        d: Digest,
        headers: &HeaderMap,
        body: Body,
        base: &str,
    ) -> Answer {
        let (repo, id) = (&u.repository, u.id.as_str());
        let key = paths::upload_data(repo, id);
        let (_guard, size) = self.open_upload(id, &key).await?;
        // Checked before anything is read or appended: a refused closing PUT leaves
        // the data and the cached hash exactly as they were.
        let limit = self.chunk_limit(headers, size, u, base)?;
        let (size, h) = self.append_body(id, &key, body, size, limit).await?;
        let actual = match d.algorithm {
            Algorithm::Sha256 => h.finish(),
            // sha512: one more pass over the stored bytes.
            _ => self.hash_stored(&key, size, d.algorithm).await?.finish(),
        };
        self.forget(id);
        if actual != d {
            // distribution cancels the upload on a digest mismatch; so do we.
            let _ = self.store.delete(&paths::upload_dir(repo, id)).await;
            return Err(ApiError::bad_request(
                "DIGEST_INVALID",
                format!("uploaded content has digest {actual}, not {d}"),
            )
            .into());
        }
        if size == 0 {
            // No data object was ever appended: make the empty blob exist.
            self.store.put(&paths::blob_data(&d), Bytes::new()).await?;
        } else {
            let exists = matches!(self.store.stat(&paths::blob_data(&d)).await, Ok(Some(m)) if m.size == size);
            if !exists {
                self.store.commit(&key, &paths::blob_data(&d)).await?;
            }
        }
        store::write_link(&self.store, &paths::layer_link(repo, &d), &d).await?;
        let _ = self.store.delete(&paths::upload_dir(repo, id)).await;
        Ok(created(base, repo, &d))
    }
}

/// HMAC takes keys of any length, so `new_from_slice` cannot fail; were it ever to,
/// a fixed all-zero key keeps the type total (tokens would then not verify across
/// instances, which fails safe).
fn unreachable_hmac() -> hmac::Hmac<sha2::Sha256> {
    <hmac::Hmac<sha2::Sha256> as hmac::digest::KeyInit>::new(&Default::default())
}
