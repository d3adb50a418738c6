//! What can go wrong while the registry answers a request, as one type handlers return
//! with `?`, and the one place it becomes an answer: an OCI JSON error, an empty 416
//! that tells the client where it stands, or a storage failure (507 when full, else 500
//! with the detail only in the log).

use super::storage::{ErrorKind, StorageError};
use crate::body::{self, Body};
use crate::error::ApiError;
use http::{header, HeaderValue, Response, StatusCode};

/// A registry request's failure.
#[derive(Debug)]
pub enum Error {
    /// An answer from the spec's error table.
    Api(ApiError),
    /// 416 with no body and the headers that tell the client what is there (a blob's
    /// `Content-Range: bytes */size`; an upload's `Location` and `Range`).
    Unsatisfiable(Vec<(&'static str, String)>),
    /// The storage failed.
    Storage(StorageError),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<ApiError> for Error {
    fn from(e: ApiError) -> Error {
        Error::Api(e)
    }
}

impl From<StorageError> for Error {
    fn from(e: StorageError) -> Error {
        Error::Storage(e)
    }
}

impl Error {
    pub fn into_response(self) -> Response<Body> {
        match self {
            Error::Api(e) => e.into_response(),
            Error::Unsatisfiable(headers) => empty(StatusCode::RANGE_NOT_SATISFIABLE, &headers),
            Error::Storage(e) => storage_answer(e).into_response(),
        }
    }
}

/// A storage failure as an answer. A full storage is 507 Insufficient Storage (RFC 4918
/// §11.5: the server cannot store what the request needs), a server-side status that
/// clients treat as retryable later, with distribution's catch-all code `UNKNOWN`: the
/// OCI table has no storage code, and `BLOB_UPLOAD_INVALID` would blame the client.
/// A store still failing after retries (timeouts, throttling) is 503 with
/// `Retry-After`. Everything else stays a bare 500 whose detail is only in the log.
fn storage_answer(e: StorageError) -> ApiError {
    crate::metrics::get().storage_errors.inc();
    // Out of space or quota: the one storage failure a client can be told about, since
    // it does not go away by retrying at once and an operator must act.
    if e.kind == ErrorKind::NoSpace {
        // The error names the path (see `storage::fs`).
        tracing::error!(error = %e, "registry storage is full");
        return ApiError::new(
            StatusCode::INSUFFICIENT_STORAGE,
            "UNKNOWN",
            "the registry's storage is full (no space left on the device); retry once space is freed",
        );
    }
    if e.kind == ErrorKind::Transient {
        // Still failing after the object store client's retries (timeouts, throttling,
        // 5xx): the store, not this request, is at fault, and a later retry may pass.
        tracing::error!(error = %e, "registry storage unavailable");
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "UNKNOWN",
            "the registry's storage is unavailable; retry later",
        )
        .with_header("retry-after", "5");
    }
    tracing::error!(error = %e, "registry storage error");
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "UNKNOWN",
        "storage error; see the server log",
    )
}

/// A response with no body and the given headers (Content-Length 0 unless given).
pub fn empty(status: StatusCode, headers: &[(&'static str, String)]) -> Response<Body> {
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
