//! Blobs: GET (or a 307 to the store's presigned URL) and HEAD (with a single `Range`), and DELETE (unlinks from the
//! repository; the data goes with garbage collection, as in distribution).

use super::{empty, parse_range, Answer};
use crate::body;
use crate::error::ApiError;
use crate::oci::{Digest, Repository};
use crate::registry::storage::Storage;
use crate::registry::{paths, store, Error, Registry};
use futures_util::StreamExt;
use http::request::Parts;
use http::{header, StatusCode};

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
        if head {
            return Ok(empty(status, &headers));
        }
        // The size was just read (`blob_in_repo`), and the range checked against it.
        let (start, end) = range.unwrap_or((0, size));
        let mut stream = self
            .store
            .get_range(&paths::blob_data(d), start, end)
            .await?
            .ok_or_else(|| ApiError::unknown("BLOB_UNKNOWN", format!("blob {d} unknown")))?;
        let mut r = empty(status, &headers);
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

    /// The size of blob `d` if `repo` holds it, vouched for against any garbage
    /// collection running (`gc::epoch`): a blob this answers for is not deleted by a
    /// collection that started before the answer.
    pub(in crate::registry) async fn blob_vouched(
        &self,
        repo: &Repository,
        d: &Digest,
    ) -> Result<Option<u64>, Error> {
        let Some(size) = store::blob_in_repo(&self.store, repo, d).await? else {
            return Ok(None);
        };
        if self.watch.vouch_now(&self.store, [d]).await?.quiet() {
            return Ok(Some(size));
        }
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
        Ok(empty(StatusCode::ACCEPTED, &[]))
    }
}
