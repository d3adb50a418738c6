//! Manifests by tag or digest: GET/HEAD, PUT (parsed, verified, every referenced blob
//! and child manifest present, stored data → revision → tag so a crash never leaves a
//! tag to nothing) and DELETE (a tag alone, or a revision with every tag on it).

use super::{empty, Answer};
use crate::body::{self, Body};
use crate::error::ApiError;
use crate::oci::{Algorithm, Digest, Hasher, Reference, Repository};
use crate::registry::hints::Kind;
use crate::registry::manifest;
use crate::registry::storage::{concurrently, Storage};
use crate::registry::{paths, store, Error, Registry, MANIFEST_BUDGET};
use bytes::Bytes;
use http::request::Parts;
use http::{header, HeaderMap, HeaderValue, Response, StatusCode};
use http_body_util::BodyExt;

/// How long a manifest PUT waits for its share of the budget before it is refused
/// with 429 (a client that sends slowly must not stall every other push forever).
const MANIFEST_BUDGET_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// Tries to commit a manifest within a snapshot's lease before answering 503.
const COMMIT_ATTEMPTS: u32 = 3;

fn manifest_unknown(repo: &Repository, reference: impl std::fmt::Display) -> Error {
    ApiError::unknown(
        "MANIFEST_UNKNOWN",
        format!("manifest {reference} unknown to repository {repo}"),
    )
    .into()
}

impl<S: Storage> Registry<S> {
    pub(in crate::registry) async fn get_manifest(
        &self,
        repo: &Repository,
        reference: &Reference,
    ) -> Answer {
        let d = self
            .resolve_hinted(repo, reference)
            .await?
            .ok_or_else(|| manifest_unknown(repo, reference))?;
        let bytes = self.whole_blob(repo, &d, None).await?.ok_or_else(|| {
            ApiError::unknown("MANIFEST_UNKNOWN", format!("manifest {d} data missing"))
        })?;
        let media_type = manifest::parse(None, &bytes)
            .map(|m| m.media_type)
            .unwrap_or_else(|_| manifest::OCI_MANIFEST.to_string());
        let len = bytes.len();
        let mut r = Response::new(body::full(bytes));
        let h = r.headers_mut();
        for (k, v) in [
            ("content-type", media_type),
            ("docker-content-digest", d.to_string()),
            ("etag", format!("\"{d}\"")),
            ("content-length", len.to_string()),
        ] {
            if let Ok(v) = HeaderValue::from_str(&v) {
                h.insert(k, v);
            }
        }
        Ok(r)
    }

    /// [`store::resolve`], with the revision answered by a live hint while no
    /// collection is announced (see `hints`). A tag is always read: tags move.
    async fn resolve_hinted(
        &self,
        repo: &Repository,
        reference: &Reference,
    ) -> Result<Option<Digest>, Error> {
        let snap = self.watch.snapshot(&self.store).await?;
        if !snap.quiet() {
            self.hints.clear();
            return Ok(store::resolve(&self.store, repo, reference).await?);
        }
        let d = match reference {
            Reference::Digest(d) => d.clone(),
            Reference::Tag(t) => {
                match store::read_link(&self.store, &paths::tag_current_link(repo, t)).await? {
                    Some(d) => d,
                    None => return Ok(None),
                }
            }
        };
        if self.hints.get(repo, &d, Kind::Manifest).is_some() {
            return Ok(Some(d));
        }
        let read = self.hints.reading();
        if !store::has_revision(&self.store, repo, &d).await? {
            return Ok(None);
        }
        self.hints
            .put(repo, &d, Kind::Manifest, 0, read, snap.taken());
        Ok(Some(d))
    }

    pub(in crate::registry) async fn put_manifest(
        &self,
        repo: &Repository,
        reference: &Reference,
        req: &Parts,
        body: Body,
        base: &str,
    ) -> Answer {
        let expected = match reference {
            Reference::Digest(d) => Some(d),
            Reference::Tag(_) => None,
        };
        let content_type = req
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        // Held until the manifest is stored: the bytes stay in memory that long.
        let (_budget, declared) = self.manifest_budget(&req.headers).await?;
        let bytes = read_limited(body, self.max_manifest_size, declared).await?;
        let m = manifest::parse(content_type.as_deref(), &bytes)
            .map_err(|e| ApiError::bad_request("MANIFEST_INVALID", e.0))?;
        let alg = expected.map_or(Algorithm::Sha256, |d| d.algorithm);
        let mut h = Hasher::new(alg);
        h.update(&bytes);
        let d = h.finish();
        if let Some(e) = expected {
            if *e != d {
                return Err(ApiError::bad_request(
                    "DIGEST_INVALID",
                    format!("manifest has digest {d}, not {e}"),
                )
                .into());
            }
        }
        // Vouch for everything the manifest stands on (its own blob, configs, layers,
        // children), check it is there, and commit within the snapshot's lease; a
        // commit that misses the deadline starts over (see `gc::epoch`).
        let refs: Vec<&Digest> = std::iter::once(&d)
            .chain(&m.blobs)
            .chain(&m.manifests)
            .collect();
        // The lock keeps this process's PUTs and DELETEs of one tag from racing on its
        // folder at all (`store::tag` says why the order suffices elsewhere). Taken
        // before the snapshot: waiting for the PUTs ahead must not spend the lease,
        // or with many PUTs of one tag on a slow store the last ones never commit.
        let _tag = match reference {
            Reference::Tag(t) => Some(self.inflight.lock_tag(repo, t).await),
            Reference::Digest(_) => None,
        };
        let mut attempt = 0;
        loop {
            attempt += 1;
            let snap = self
                .watch
                .vouch_now(&self.store, refs.iter().copied())
                .await?;
            self.check_references(repo, &m).await?;
            let commit = async {
                // Data first, then the revision link, then the tag: each step atomic,
                // so a crash leaves at worst an unreferenced blob, never a tag to
                // nothing.
                if self.store.stat(&paths::blob_data(&d)).await?.is_none() {
                    self.store.put(&paths::blob_data(&d), bytes.clone()).await?;
                }
                store::write_link(&self.store, &paths::revision_link(repo, &d), &d).await?;
                if let Reference::Tag(t) = reference {
                    store::tag(&self.store, repo, t, &d).await?;
                }
                Ok::<(), Error>(())
            };
            match tokio::time::timeout_at(snap.deadline().into(), commit).await {
                Ok(r) => {
                    r?;
                    break;
                }
                Err(_) if attempt < COMMIT_ATTEMPTS => continue,
                Err(_) => {
                    return Err(ApiError::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "UNKNOWN",
                        "the storage is too slow to store the manifest within its lease against garbage collection; retry",
                    )
                    .with_header("retry-after", "5")
                    .into())
                }
            }
        }
        let mut headers = vec![
            ("location", format!("{base}/v2/{repo}/manifests/{d}")),
            ("docker-content-digest", d.to_string()),
        ];
        if let Some(s) = &m.subject {
            headers.push(("oci-subject", s.to_string()));
        }
        Ok(empty(StatusCode::CREATED, &headers))
    }

    /// Every blob the manifest references is in the repository, and every child
    /// manifest is one of its revisions (400 MANIFEST_BLOB_UNKNOWN otherwise).
    async fn check_references(
        &self,
        repo: &Repository,
        m: &manifest::Manifest,
    ) -> Result<(), Error> {
        let blobs: Vec<_> = m
            .blobs
            .iter()
            .map(|b| async move {
                store::blob_in_repo(&self.store, repo, b)
                    .await
                    .map(|s| (b, s.is_some()))
            })
            .collect();
        let children: Vec<_> = m
            .manifests
            .iter()
            .map(|c| async move {
                store::has_revision(&self.store, repo, c)
                    .await
                    .map(|p| (c, p))
            })
            .collect();
        let blobs = concurrently(blobs, 16).await?;
        let children = concurrently(children, 16).await?;
        let missing = blobs
            .into_iter()
            .map(|(d, present)| ("blob", d, present))
            .chain(children.into_iter().map(|(d, p)| ("manifest", d, p)))
            .find(|(_, _, present)| !present);
        if let Some((what, d, _)) = missing {
            return Err(ApiError::bad_request(
                "MANIFEST_BLOB_UNKNOWN",
                format!("{what} {d} is not in repository {repo}"),
            )
            .into());
        }
        Ok(())
    }

    pub(in crate::registry) async fn delete_manifest(
        &self,
        repo: &Repository,
        reference: &Reference,
    ) -> Answer {
        self.deletes_refused()?;
        let d = match reference {
            Reference::Tag(t) => {
                // OCI 1.1: deleting a tag removes the tag only.
                let _tag = self.inflight.lock_tag(repo, t).await;
                // A tag folder without its `current` link (left by a crash, or by
                // distribution) is deleted too, as distribution 3 deletes the folder:
                // it could otherwise never be removed through the API.
                if self
                    .store
                    .list_all(&paths::tag_dir(repo, t))
                    .await?
                    .is_empty()
                {
                    return Err(
                        ApiError::unknown("MANIFEST_UNKNOWN", format!("tag {t} unknown")).into(),
                    );
                }
                store::untag(&self.store, repo, t).await?;
                return Ok(empty(StatusCode::ACCEPTED, &[]));
            }
            Reference::Digest(_) => store::resolve(&self.store, repo, reference)
                .await?
                .ok_or_else(|| manifest_unknown(repo, reference))?,
        };
        // As distribution: every tag pointing at it goes too, then the revision.
        for t in store::tag_folders(&self.store, repo).await? {
            let Some(t) = crate::oci::Tag::parse(&t) else {
                continue;
            };
            let _tag = self.inflight.lock_tag(repo, &t).await;
            if let Ok(Some(cur)) =
                store::read_link(&self.store, &paths::tag_current_link(repo, &t)).await
            {
                if cur == d {
                    store::untag(&self.store, repo, &t).await?;
                }
            }
        }
        self.store
            .delete_prefix(&paths::revision_dir(repo, &d))
            .await?;
        self.hints.forget(repo, &d);
        Ok(empty(StatusCode::ACCEPTED, &[]))
    }

    /// Wait for the share of `MANIFEST_BUDGET` a manifest PUT needs: its declared
    /// Content-Length, or the most a manifest may be when it declares none. Also
    /// returns the declared length, so the body buffer is allocated once.
    async fn manifest_budget(
        &self,
        headers: &HeaderMap,
    ) -> Result<(tokio::sync::OwnedSemaphorePermit, Option<usize>), Error> {
        let declared = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        let limit = self.max_manifest_size;
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
            _ => Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "TOOMANYREQUESTS",
                format!(
                    "too many manifest bytes are being received at once (budget {} MiB); retry shortly",
                    MANIFEST_BUDGET >> 20
                ),
            )
            .with_header("retry-after", "5")
            .into()),
        }
    }
}

/// A manifest over `registry.max_manifest_size`. distribution refuses it with
/// MANIFEST_INVALID ("http: request body too large", handlers/manifests.go through
/// copyFullPayload's MaxBytesReader); the code is kept, and the status says what it
/// is (413) rather than distribution's 400, so a client does not retry it as malformed.
fn too_large(limit: usize) -> Error {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "MANIFEST_INVALID",
        format!("manifest larger than {limit} bytes (registry.max_manifest_size)"),
    )
    .into()
}

/// Read a small body whole, refusing more than `limit` bytes (413). `declared` is the
/// Content-Length (already checked against `limit`); hyper ends the body there.
async fn read_limited(
    mut body: Body,
    limit: usize,
    declared: Option<usize>,
) -> Result<Bytes, Error> {
    let mut buf = Vec::with_capacity(declared.unwrap_or(0));
    while let Some(frame) = body.frame().await {
        let frame = frame
            .map_err(|e| ApiError::bad_request("MANIFEST_INVALID", format!("request body: {e}")))?;
        if let Ok(d) = frame.into_data() {
            if buf.len() + d.len() > limit {
                return Err(too_large(limit));
            }
            buf.extend_from_slice(&d);
        }
    }
    Ok(Bytes::from(buf))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::storage::memory::Memory;
    use crate::registry::InFlight;
    use std::sync::Arc;
    use std::time::Duration;

    /// A manifest pulled again by digest asks storage nothing; by tag, only the tag (tags
    /// move: a tag moved behind the process's back is followed at once); a DELETE
    /// here forgets it at once.
    #[tokio::test]
    async fn a_manifest_pulled_again_reads_only_its_tag_until_deleted() {
        let store = Memory::new();
        let registry = Registry::new(
            crate::registry::storage::counting::Counting::new(store.clone()),
            true,
            b"secret".to_vec(),
            Arc::new(InFlight::default()),
        );
        let repo = Repository::parse("hint/manifest").unwrap();
        let stored = |n: u32| {
            let m = Bytes::from(
                serde_json::to_vec(&serde_json::json!({
                    "schemaVersion": 2,
                    "mediaType": manifest::OCI_MANIFEST,
                    "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a", "size": 2},
                    "layers": [],
                    "annotations": {"n": n.to_string()},
                }))
                .unwrap(),
            );
            (Digest::sha256_of(&m), m)
        };
        let (d1, m1) = stored(1);
        let (d2, m2) = stored(2);
        for (d, m) in [(&d1, &m1), (&d2, &m2)] {
            store.put(&paths::blob_data(d), m.clone()).await.unwrap();
            store::write_link(&store, &paths::revision_link(&repo, d), d)
                .await
                .unwrap();
        }
        let tag = crate::oci::Tag::parse("v1").unwrap();
        store::tag(&store, &repo, &tag, &d1).await.unwrap();
        let get = |reference: Reference| {
            let registry = &registry;
            let repo = &repo;
            async move {
                match registry.get_manifest(repo, &reference).await {
                    Ok(r) => Some(r.into_body().collect().await.unwrap().to_bytes()),
                    Err(_) => None,
                }
            }
        };
        assert_eq!(get(Reference::Digest(d1.clone())).await, Some(m1.clone()));
        assert_eq!(get(Reference::Tag(tag.clone())).await, Some(m1.clone()));
        let looks = registry.storage().looks();
        assert_eq!(get(Reference::Digest(d1.clone())).await, Some(m1.clone()));
        assert_eq!(
            registry.storage().looks(),
            looks,
            "a manifest by digest went to storage again"
        );
        assert_eq!(get(Reference::Tag(tag.clone())).await, Some(m1.clone()));
        assert_eq!(
            registry.storage().looks(),
            looks + 1,
            "by tag: the tag alone is read"
        );
        // The tag moved elsewhere (another instance): followed at once.
        store::tag(&store, &repo, &tag, &d2).await.unwrap();
        assert_eq!(get(Reference::Tag(tag.clone())).await, Some(m2.clone()));
        let deleted = registry
            .delete_manifest(&repo, &Reference::Digest(d1.clone()))
            .await
            .unwrap();
        assert_eq!(deleted.status(), 202);
        assert_eq!(get(Reference::Digest(d1.clone())).await, None);
    }

    /// Many PUTs of one tag at once on a store whose tag writes are slow: each waits its
    /// turn for the tag's lock, and that wait does not spend its lease (`gc::epoch`).
    /// When it did, the PUTs queued behind more than three leases' worth of tag writes
    /// ran out of attempts and were answered 503.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn puts_queued_on_one_tag_do_not_spend_their_lease_waiting() {
        let store = Memory::new();
        let registry = Arc::new(Registry::new(
            store.clone(),
            true,
            b"secret".to_vec(),
            Arc::new(InFlight::default()),
        ));
        let repo = Repository::parse("slow/tag").unwrap();
        let config = Bytes::from_static(br#"{"architecture":"amd64","os":"linux"}"#);
        let cd = Digest::sha256_of(&config);
        store
            .put(&paths::blob_data(&cd), config.clone())
            .await
            .unwrap();
        store::write_link(&store, &paths::layer_link(&repo, &cd), &cd)
            .await
            .unwrap();
        // A tag write takes 200 ms: a lease (5 s) holds 25 of them, so 100 PUTs queue
        // for four leases' worth, more than the three attempts a PUT has.
        let write = Duration::from_millis(200);
        let n: u32 = 100;
        assert!(write * n > crate::registry::gc::epoch::LEASE * COMMIT_ATTEMPTS);
        store.slow_puts("/current/link", write);
        let puts: Vec<_> = (0..n)
            .map(|i| {
                let (registry, repo) = (registry.clone(), repo.clone());
                let m = serde_json::to_vec(&serde_json::json!({
                    "schemaVersion": 2,
                    "mediaType": manifest::OCI_MANIFEST,
                    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd.to_string(), "size": config.len()},
                    "layers": [],
                    "annotations": {"n": i.to_string()},
                }))
                .unwrap();
                tokio::spawn(async move {
                    let (parts, ()) = http::Request::builder()
                        .method("PUT")
                        .header(header::CONTENT_TYPE, manifest::OCI_MANIFEST)
                        .header(header::CONTENT_LENGTH, m.len())
                        .body(())
                        .unwrap()
                        .into_parts();
                    let tag = Reference::Tag(crate::oci::Tag::parse("latest").unwrap());
                    registry
                        .put_manifest(&repo, &tag, &parts, body::full(m), "https://x")
                        .await
                        .map_or_else(|e| e.into_response().status(), |r| r.status())
                })
            })
            .collect();
        let mut statuses = Vec::new();
        for p in puts {
            statuses.push(p.await.unwrap());
        }
        let refused = statuses
            .iter()
            .filter(|s| **s != StatusCode::CREATED)
            .count();
        assert_eq!(refused, 0, "{refused} of {n} PUTs refused: {statuses:?}");
    }
}
