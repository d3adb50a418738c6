//! OCI Distribution error responses: the JSON body every error answer carries.

use crate::body::{self, Body};
use http::{header, HeaderValue, Response, StatusCode};

/// The `Docker-Distribution-Api-Version` header name and the one value we speak.
pub const API_VERSION_HEADER: &str = "docker-distribution-api-version";
pub const API_VERSION: HeaderValue = HeaderValue::from_static("registry/2.0");

/// An OCI error code (distribution-spec "Error Codes"), with the status it maps to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    Unauthorized,
    NotFound,
    /// Not in the spec's table; distribution uses it for 503 and so do we for upstream failures.
    Unavailable,
}

impl Code {
    pub fn as_str(self) -> &'static str {
        match self {
            Code::Unauthorized => "UNAUTHORIZED",
            Code::NotFound => "NOT_FOUND",
            Code::Unavailable => "UNAVAILABLE",
        }
    }
}

/// Build `{"errors":[{"code":..,"message":..,"detail":null}]}` with the given status.
///
/// HEAD requests must not carry a body; the caller strips it (hyper does so for HEAD
/// automatically while keeping Content-Length).
pub fn oci_error(status: StatusCode, code: Code, message: &str) -> Response<Body> {
    oci(status, code.as_str(), message)
}

/// The same with any spec code (`BLOB_UNKNOWN`, `MANIFEST_INVALID`, ...).
pub fn oci(status: StatusCode, code: &str, message: &str) -> Response<Body> {
    let json = format!(
        r#"{{"errors":[{{"code":"{code}","message":{},"detail":null}}]}}"#,
        json_string(message)
    );
    let mut resp = Response::new(body::full(json));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    h.insert(API_VERSION_HEADER, API_VERSION);
    resp
}

/// An OCI error answer not yet rendered: status, spec code, message and any headers
/// the answer must carry (`Retry-After`, ...). Handlers return it with `?`; one place
/// (`into_response`) turns it into the JSON body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub headers: Vec<(&'static str, String)>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            headers: Vec::new(),
        }
    }

    /// 400 with a spec code (DIGEST_INVALID, TAG_INVALID, ...).
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 404 with a spec code (BLOB_UNKNOWN, MANIFEST_UNKNOWN, ...).
    pub fn unknown(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, code, message)
    }

    /// 405 UNSUPPORTED.
    pub fn unsupported(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED", message)
    }

    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> ApiError {
        self.headers.push((name, value.into()));
        self
    }

    pub fn into_response(self) -> Response<Body> {
        let mut r = oci(self.status, self.code, &self.message);
        for (k, v) in self.headers {
            if let Ok(v) = HeaderValue::from_str(&v) {
                r.headers_mut().append(k, v);
            }
        }
        r
    }
}

/// Minimal JSON string encoder: messages are ours, but may quote a path or host.
pub fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_string_escapes() {
        assert_eq!(json_string("a\"b\\c\n\u{1}"), r#""a\"b\\c\n\u0001""#);
    }

    #[test]
    fn error_has_oci_shape() {
        let r = oci_error(
            StatusCode::UNAUTHORIZED,
            Code::Unauthorized,
            "authentication required",
        );
        assert_eq!(r.status(), 401);
        assert_eq!(r.headers()[API_VERSION_HEADER], "registry/2.0");
    }
}
