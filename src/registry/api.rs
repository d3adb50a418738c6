//! The registry's HTTP handlers, one file per endpoint family, and what they share:
//! absolute Locations, JSON and empty answers, `Range` and pagination. Handlers take
//! the typed endpoint's parts and return `Result<Response, Error>`; `Registry::handle`
//! turns an error into its answer.

mod blobs;
mod listing;
mod manifests;
mod referrers;
mod uploads;

use super::error::Error;
use crate::body::{self, Body};
use http::{header, HeaderMap, HeaderValue, Response, StatusCode};

pub use super::error::empty;

pub(super) type Resp = Response<Body>;
pub(super) type Answer = Result<Resp, Error>;

/// `https://host[:port]` as the client addressed us, for absolute Location URLs
/// (what distribution builds from Host + X-Forwarded-Proto behind the recipe's nginx).
pub fn base_url(headers: &HeaderMap, uri: &http::Uri) -> String {
    crate::clients::host(headers, uri)
        .map(|h| format!("https://{h}"))
        .unwrap_or_default()
}

pub fn json(status: StatusCode, content_type: &str, value: &serde_json::Value) -> Resp {
    let bytes = serde_json::to_vec(value).unwrap_or_default();
    let mut r = Response::new(body::full(bytes));
    *r.status_mut() = status;
    if let Ok(v) = HeaderValue::from_str(content_type) {
        r.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    r
}

/// `Link: <target>; rel="next"` for a listing with more pages.
fn link_next(r: &mut Resp, target: &str) {
    if let Ok(v) = HeaderValue::from_str(&format!("<{target}>; rel=\"next\"")) {
        r.headers_mut().insert(header::LINK, v);
    }
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

/// Parse `Range: bytes=a-b | a- | -n` against `size`: Ok(None) = whole, Err = 416.
///
/// RFC 9110 §14.2: a server MUST ignore a range unit it does not understand and MAY
/// ignore a Range it will not serve, answering 200 with the whole representation.
/// Several ranges (multipart/byteranges) and malformed specifiers are ignored that way;
/// only a well-formed single range that misses the blob is 416.
///
/// Public for the fuzz harness (fuzz/); the unit error is the one answer, 416.
#[allow(clippy::result_unit_err)]
pub fn parse_range(h: Option<&HeaderValue>, size: u64) -> Result<Option<(u64, u64)>, ()> {
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

/// Parse an upload chunk's `Content-Range: <first>-<last>` (inclusive byte offsets;
/// a `bytes=` or `bytes ` prefix is tolerated, as clients send either): the offset of
/// the chunk's first byte and its length, or None when malformed (400), which includes
/// a length past u64 (`0-18446744073709551615` is 2^64 bytes).
pub fn parse_content_range(value: &str) -> Option<(u64, u64)> {
    let r = value
        .trim()
        .trim_start_matches("bytes=")
        .trim_start_matches("bytes ");
    let (a, b) = r.split_once('-')?;
    let (start, end) = (a.parse::<u64>().ok()?, b.parse::<u64>().ok()?);
    if start > end {
        return None;
    }
    Some((start, (end - start).checked_add(1)?))
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn content_ranges() {
        assert_eq!(parse_content_range("0-1023"), Some((0, 1024)));
        assert_eq!(parse_content_range(" bytes=5-5"), Some((5, 1)));
        assert_eq!(parse_content_range("bytes 10-19"), Some((10, 10)));
        assert_eq!(parse_content_range("9-5"), None);
        assert_eq!(parse_content_range("a-b"), None);
        assert_eq!(parse_content_range("5"), None);
    }

    /// A chunk ending at the last u64 offset has 2^64 bytes, a length that overflowed
    /// (a panic with overflow checks, a zero-byte limit without). No chunk can be that
    /// long: 400.
    #[test]
    fn a_content_range_to_the_last_offset_is_malformed() {
        let max = u64::MAX;
        assert_eq!(parse_content_range(&format!("0-{max}")), None);
        assert_eq!(parse_content_range(&format!("1-{max}")), Some((1, max)));
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
    }
}
