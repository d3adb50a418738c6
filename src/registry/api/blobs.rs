//! Blobs: GET (or a 307 to the store's presigned URL) and HEAD (with a single `Range`), and DELETE (unlinks from the
//! repository; the data goes with garbage collection, as in distribution).

use super::{empty, parse_range, Answer};
use crate::body;
use crate::error::ApiError;
use crate::oci::{Digest, Repository};
use crate::registry::hints::{self, Kind};
use crate::registry::storage::Storage;
use crate::registry::{paths, store, Error, Registry};
use bytes::Bytes;
use futures_util::StreamExt;
use http::request::Parts;
use http::{header, HeaderName, HeaderValue, Response, StatusCode};

const DOCKER_CONTENT_DIGEST: HeaderName = HeaderName::from_static("docker-content-digest");

/// Blobs (or ranges) up to this size are read whole before the answer starts.
const WHOLE_BELOW: u64 = 64 << 10;

fn blob_unknown(repo: &Repository, d: &Digest) -> ApiError {
    ApiError::unknown(
        "BLOB_UNKNOWN",
        format!("blob {d} unknown to repository {repo}"),
    )
}

impl<S: Storage> Registry<S> {
    pub(in crate::registry) async fn get_blob(
        &self,
        repo: &Repository,
        d: &Digest,
        req: &Parts,
        head: bool,
    ) -> Answer {
        let size = self
            .blob_vouched(repo, d)
            .await?
            .ok_or_else(|| blob_unknown(repo, d))?;
        if !head {
            // `redirect = true`: the store serves the bytes; HEAD stays here.
            if let Some(url) = self.store.redirect(&paths::blob_data(d)).await? {
                return Ok(empty(
                    StatusCode::TEMPORARY_REDIRECT,
                    &[("location", url), ("docker-content-digest", d.to_string())],
                ));
            }
        }
        let range = parse_range(req.headers.get(header::RANGE), size).map_err(|()| {
            Error::Unsatisfiable(vec![("content-range", format!("bytes */{size}"))])
        })?;
        let (status, len) = match range {
            Some((a, b)) => (StatusCode::PARTIAL_CONTENT, b - a),
            None => (StatusCode::OK, size),
        };
        // Built from typed names and static values: every pull answers with these.
        let mut r = Response::new(body::empty());
        *r.status_mut() = status;
        let h = r.headers_mut();
        let digest = d.to_string();
        h.insert(
            header::ETAG,
            HeaderValue::from_str(&format!("\"{digest}\"")).map_err(|_| blob_unknown(repo, d))?,
        );
        h.insert(
            DOCKER_CONTENT_DIGEST,
            HeaderValue::from_str(&digest).map_err(|_| blob_unknown(repo, d))?,
        );
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
        h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
        h.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("max-age=31536000"),
        );
        if let Some((a, b)) = range {
            let v = format!("bytes {a}-{}/{size}", b - 1);
            if let Ok(v) = HeaderValue::from_str(&v) {
                h.insert(header::CONTENT_RANGE, v);
            }
        }
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
        if head {
            return Ok(r);
        }
        // The size was just read (`blob_in_repo`), and the range checked against it.
        let (start, end) = range.unwrap_or((0, size));
        if size <= hints::SMALL {
            // Small: the whole blob in one read (or none: its bytes may be kept), the
            // answer sliced from it and sent whole.
            let whole = self
                .whole_blob(repo, d, Some(size))
                .await?
                .ok_or_else(|| blob_unknown(repo, d))?;
            *r.body_mut() = body::full(whole.slice(start as usize..end as usize));
            return Ok(r);
        }
        let mut stream = self
            .store
            .get_range(&paths::blob_data(d), start, end)
            .await?
            .ok_or_else(|| ApiError::unknown("BLOB_UNKNOWN", format!("blob {d} unknown")))?;
        if len <= WHOLE_BELOW {
            // Small: read it all before answering, so the answer goes out whole (head
            // and body in one write). A store that fails mid-read is then a clean 5xx
            // a balancer can retry elsewhere, never a cut-off 200; it is also one frame.
            let mut whole = bytes::BytesMut::with_capacity(len as usize);
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| {
                    crate::registry::storage::StorageError::io("get", paths::blob_data(d), e)
                })?;
                whole.extend_from_slice(&chunk);
            }
            *r.body_mut() = body::full(whole.freeze());
            return Ok(r);
        }
        let body = http_body_util::StreamBody::new(
            stream.map(|r| r.map(http_body::Frame::data).map_err(body::BoxError::from)),
        );
        *r.body_mut() = body::boxed(body);
        Ok(r)
    }

    /// The bytes of blob `d` (of `size`, when known), which `repo` was just found to
    /// hold: the kept bytes when there are, else read whole and kept when small. None
    /// when it is gone (or not what it was) since that look: its hints are forgotten.
    pub(in crate::registry) async fn whole_blob(
        &self,
        repo: &Repository,
        d: &Digest,
        size: Option<u64>,
    ) -> Result<Option<Bytes>, Error> {
        if let Some(b) = self.hints.bytes(d) {
            return Ok(Some(b));
        }
        let read = self.store.read(&paths::blob_data(d)).await?;
        let Some(b) = read.filter(|b| size.is_none_or(|n| b.len() as u64 == n)) else {
            self.hints.forget(repo, d);
            return Ok(None);
        };
        self.hints.keep_bytes(d, &b);
        Ok(Some(b))
    }

    /// The size of blob `d` if `repo` holds it, vouched for against any garbage
    /// collection running (`gc::epoch`): a blob this answers for is not deleted by a
    /// collection that started before the answer.
    pub(in crate::registry) async fn blob_vouched(
        &self,
        repo: &Repository,
        d: &Digest,
    ) -> Result<Option<u64>, Error> {
        // While no collection is announced, a live hint answers (see `hints`).
        if self.watch.snapshot(&self.store).await?.quiet() {
            if let Some(size) = self.hints.get(repo, d, Kind::Blob) {
                return Ok(Some(size));
            }
        } else {
            self.hints.clear();
        }
        let read = self.hints.reading();
        let Some(size) = store::blob_in_repo(&self.store, repo, d).await? else {
            return Ok(None);
        };
        let snap = self.watch.vouch_now(&self.store, [d]).await?;
        if snap.quiet() {
            self.hints
                .put(repo, d, Kind::Blob, size, read, snap.taken());
            return Ok(Some(size));
        }
        self.hints.clear();
        // Looked at again once vouched for: a collection may have deleted it between
        // the first look and the vouch (another request of this process may have
        // vouched before, and waited for that deletion).
        Ok(store::blob_in_repo(&self.store, repo, d).await?)
    }

    pub(in crate::registry) async fn delete_blob(&self, repo: &Repository, d: &Digest) -> Answer {
        self.deletes_refused()?;
        let link = paths::layer_link(repo, d);
        if store::read_link(&self.store, &link).await?.as_ref() != Some(d) {
            return Err(blob_unknown(repo, d).into());
        }
        self.store.delete_prefix(&paths::layer_dir(repo, d)).await?;
        self.hints.forget(repo, d);
        Ok(empty(StatusCode::ACCEPTED, &[]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::gc::epoch::{Epoch, REFRESH};
    use crate::registry::storage::counting::Counting;
    use crate::registry::storage::memory::Memory;
    use crate::registry::InFlight;
    use bytes::Bytes;
    use http_body_util::BodyExt;
    use std::sync::Arc;

    /// A registry over `store` (clones share its objects), counting what it reads.
    fn registry(store: &Memory) -> Registry<Counting<Memory>> {
        Registry::new(
            Counting::new(store.clone()),
            true,
            b"secret".to_vec(),
            Arc::new(InFlight::default()),
        )
    }

    async fn pushed(store: &Memory, repo: &Repository, data: &'static [u8]) -> Digest {
        let d = Digest::sha256_of(data);
        store
            .put(&paths::blob_data(&d), Bytes::from_static(data))
            .await
            .unwrap();
        store::write_link(store, &paths::layer_link(repo, &d), &d)
            .await
            .unwrap();
        d
    }

    /// (status, body) of a GET of the blob.
    async fn get(r: &Registry<Counting<Memory>>, repo: &Repository, d: &Digest) -> (u16, Bytes) {
        let (parts, ()) = http::Request::new(()).into_parts();
        match r.get_blob(repo, d, &parts, false).await {
            Ok(resp) => (
                resp.status().as_u16(),
                resp.into_body().collect().await.unwrap().to_bytes(),
            ),
            Err(e) => (e.into_response().status().as_u16(), Bytes::new()),
        }
    }

    #[tokio::test]
    async fn a_small_blob_pulled_again_asks_nothing_of_storage_until_deleted() {
        let store = Memory::new();
        let r = registry(&store);
        let repo = Repository::parse("hint/small").unwrap();
        let d = pushed(&store, &repo, b"a small blob").await;
        assert_eq!(
            get(&r, &repo, &d).await,
            (200, Bytes::from_static(b"a small blob"))
        );
        let looks = r.storage().looks();
        for _ in 0..3 {
            assert_eq!(get(&r, &repo, &d).await.0, 200);
        }
        assert_eq!(r.storage().looks(), looks, "repeated GETs went to storage");
        // A DELETE here forgets at once.
        let deleted = r.delete_blob(&repo, &d).await.unwrap();
        assert_eq!(deleted.status(), 202);
        assert_eq!(get(&r, &repo, &d).await.0, 404);
    }

    #[tokio::test]
    async fn a_link_removed_by_another_instance_is_seen_once_the_hint_expires() {
        let store = Memory::new();
        let r = registry(&store);
        let repo = Repository::parse("hint/other").unwrap();
        let d = pushed(&store, &repo, b"another instance deletes this").await;
        assert_eq!(get(&r, &repo, &d).await.0, 200);
        // Another process on the same storage removes the link: nothing tells this one.
        store
            .delete_prefix(&paths::layer_dir(&repo, &d))
            .await
            .unwrap();
        tokio::time::sleep(crate::registry::hints::TTL + std::time::Duration::from_millis(200))
            .await;
        assert_eq!(get(&r, &repo, &d).await.0, 404, "a hint outlived its TTL");
    }

    #[tokio::test]
    async fn hints_are_not_used_while_a_collection_is_announced() {
        let store = Memory::new();
        let r = registry(&store);
        let repo = Repository::parse("hint/gc").unwrap();
        let d = pushed(&store, &repo, b"a collection deletes this").await;
        assert_eq!(get(&r, &repo, &d).await.0, 200);
        let epoch = Epoch::announce(&store).await.unwrap();
        // Once this process's snapshot has seen the epoch (refreshed each second),
        // storage is asked again: the link's removal is seen before the hint expires.
        store
            .delete_prefix(&paths::layer_dir(&repo, &d))
            .await
            .unwrap();
        tokio::time::sleep(REFRESH + std::time::Duration::from_millis(100)).await;
        assert_eq!(
            get(&r, &repo, &d).await.0,
            404,
            "a hint answered during a collection"
        );
        assert_eq!(r.hint_entries().0, 0, "the hints were not dropped");
        epoch.end().await.unwrap();
    }
}
