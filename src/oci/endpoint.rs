//! A `/v2/...` request understood once: which endpoint, for which repository, with its
//! path segments and query arguments parsed into types. The proxy takes the repository
//! and route class from it (logs, metrics, `repository_hash`); the bundled registry
//! dispatches on the endpoint. A request the API cannot serve carries the answer it gets
//! instead, in the order distribution checks: route, name, method, arguments.

use super::digest::Digest;
use super::name::{Reference, Repository, Tag};
use crate::error::ApiError;
use http::{Method, StatusCode};

/// Which family of endpoint a path names (also the `route` label of metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Base,
    Catalog,
    Tags,
    Manifest,
    Blob,
    /// `POST .../blobs/uploads/`
    Uploads,
    /// `.../blobs/uploads/<id>`
    Upload,
    Referrers,
}

impl Kind {
    /// The metrics route class: blob, manifest, upload, tags, catalog or ping.
    pub fn class(self) -> &'static str {
        match self {
            Kind::Blob => "blob",
            Kind::Manifest | Kind::Referrers => "manifest",
            Kind::Uploads | Kind::Upload => "upload",
            Kind::Tags => "tags",
            Kind::Catalog => "catalog",
            Kind::Base => "ping",
        }
    }
}

/// `n` and `last` of a listing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Page {
    pub n: Option<usize>,
    pub last: Option<String>,
}

/// An upload session as the client names it: repository, id (a UUID, as we hand
/// them out) and the state token of its Location (checked by the registry, which
/// holds the secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadRef {
    pub repository: Repository,
    pub id: String,
    pub state: Option<String>,
}

/// A request the API serves, with everything it needs from the path and query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    Base,
    Catalog(Page),
    Tags(Repository, Page),
    /// GET or HEAD (`head`: no body wanted).
    GetManifest {
        repository: Repository,
        reference: Reference,
        head: bool,
    },
    PutManifest(Repository, Reference),
    DeleteManifest(Repository, Reference),
    GetBlob {
        repository: Repository,
        digest: Digest,
        head: bool,
    },
    DeleteBlob(Repository, Digest),
    /// POST: a new session; `digest` = monolithic upload in this request; `mount` =
    /// cross-repository mount from another repository (ignored when malformed, as the
    /// spec falls back to an ordinary upload).
    StartUpload {
        repository: Repository,
        digest: Option<Digest>,
        mount: Option<(Digest, Repository)>,
    },
    UploadStatus(UploadRef),
    PatchUpload(UploadRef),
    /// The closing PUT. Its `digest` argument is judged only once the upload is known
    /// (an unknown upload is 404 whatever its arguments), so it is kept as the answer.
    FinishUpload(UploadRef, Result<Digest, ApiError>),
    CancelUpload(UploadRef),
    Referrers {
        repository: Repository,
        digest: Digest,
        artifact_type: Option<String>,
    },
}

impl Endpoint {
    /// Does it change what is stored (a push, a delete, an upload step)? What a
    /// read-only registry refuses.
    pub fn writes(&self) -> bool {
        matches!(
            self,
            Endpoint::PutManifest(..)
                | Endpoint::DeleteManifest(..)
                | Endpoint::DeleteBlob(..)
                | Endpoint::StartUpload { .. }
                | Endpoint::PatchUpload(..)
                | Endpoint::FinishUpload(..)
                | Endpoint::CancelUpload(..)
        )
    }
}

/// One `/v2/...` request, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    /// None: the path names no API endpoint.
    pub kind: Option<Kind>,
    /// The repository in the path, when it names a valid one.
    pub repository: Option<Repository>,
    pub endpoint: Result<Endpoint, ApiError>,
}

impl Call {
    /// Understand `method path?query`; `path` starts with `/v2/` for an API call.
    pub fn parse(method: &Method, path: &str, query: Option<&str>) -> Call {
        let Some(route) = path.strip_prefix("/v2/").and_then(route) else {
            return Call {
                kind: None,
                repository: None,
                endpoint: Err(ApiError::unknown("NOT_FOUND", "not found")),
            };
        };
        let kind = route.kind();
        let repository = match route.name() {
            None => None,
            Some(n) => match Repository::parse(n) {
                Some(r) => Some(r),
                None => {
                    return Call {
                        kind: Some(kind),
                        repository: None,
                        endpoint: Err(ApiError::bad_request(
                            "NAME_INVALID",
                            format!("invalid repository name {n:?}"),
                        )),
                    }
                }
            },
        };
        let endpoint = endpoint(route, repository.clone(), method, &Query::parse(query));
        Call {
            kind: Some(kind),
            repository,
            endpoint,
        }
    }

    /// The metrics route class of a `/v2/...` path.
    pub fn class(&self) -> &'static str {
        self.kind.map_or("other", Kind::class)
    }
}

/// The path split after `/v2/`, segments still raw.
#[derive(Debug, PartialEq, Eq)]
enum Route<'a> {
    Base,
    Catalog,
    Tags(&'a str),
    Manifest(&'a str, &'a str),
    Blob(&'a str, &'a str),
    Uploads(&'a str),
    Upload(&'a str, &'a str),
    Referrers(&'a str, &'a str),
}

/// Split a path after `/v2/` into a route. Repository names hold slashes, so the
/// endpoint is recognised from the end, as distribution's router does.
fn route(rest: &str) -> Option<Route<'_>> {
    if rest.is_empty() {
        return Some(Route::Base);
    }
    if rest == "_catalog" {
        return Some(Route::Catalog);
    }
    if let Some(name) = rest.strip_suffix("/tags/list") {
        return Some(Route::Tags(name));
    }
    if let Some(name) = rest.strip_suffix("/blobs/uploads/") {
        return Some(Route::Uploads(name));
    }
    if let Some(name) = rest.strip_suffix("/blobs/uploads") {
        return Some(Route::Uploads(name));
    }
    let (head, last) = rest.rsplit_once('/')?;
    if last.is_empty() {
        return None;
    }
    if let Some(name) = head.strip_suffix("/blobs/uploads") {
        return Some(Route::Upload(name, last));
    }
    let (name, kind) = head.rsplit_once('/')?;
    match kind {
        "manifests" => Some(Route::Manifest(name, last)),
        "blobs" => Some(Route::Blob(name, last)),
        "referrers" => Some(Route::Referrers(name, last)),
        _ => None,
    }
}

impl<'a> Route<'a> {
    fn kind(&self) -> Kind {
        match self {
            Route::Base => Kind::Base,
            Route::Catalog => Kind::Catalog,
            Route::Tags(_) => Kind::Tags,
            Route::Manifest(..) => Kind::Manifest,
            Route::Blob(..) => Kind::Blob,
            Route::Uploads(_) => Kind::Uploads,
            Route::Upload(..) => Kind::Upload,
            Route::Referrers(..) => Kind::Referrers,
        }
    }

    /// The repository name in the path, unvalidated.
    fn name(&self) -> Option<&'a str> {
        match *self {
            Route::Base | Route::Catalog => None,
            Route::Tags(n)
            | Route::Manifest(n, _)
            | Route::Blob(n, _)
            | Route::Uploads(n)
            | Route::Upload(n, _)
            | Route::Referrers(n, _) => Some(n),
        }
    }
}

/// The route with its method and arguments checked. `repo` is Some for every route
/// that names one (checked by the caller).
fn endpoint(
    route: Route<'_>,
    repo: Option<Repository>,
    method: &Method,
    q: &Query,
) -> Result<Endpoint, ApiError> {
    let read = method == Method::GET || method == Method::HEAD;
    let head = method == Method::HEAD;
    let repo = || {
        repo.clone()
            .ok_or_else(|| ApiError::unknown("NOT_FOUND", "not found"))
    };
    let refused = || ApiError::unsupported("method not allowed on this endpoint");
    Ok(match route {
        Route::Base if read => Endpoint::Base,
        Route::Catalog if read => Endpoint::Catalog(q.page()?),
        Route::Tags(_) if read => Endpoint::Tags(repo()?, q.page()?),
        Route::Manifest(name, r) => match *method {
            Method::GET | Method::HEAD => Endpoint::GetManifest {
                repository: repo()?,
                reference: read_reference(r, name)?,
                head,
            },
            Method::PUT => Endpoint::PutManifest(repo()?, write_reference(r)?),
            Method::DELETE => Endpoint::DeleteManifest(repo()?, write_reference(r)?),
            _ => return Err(refused()),
        },
        Route::Blob(_, d) => match *method {
            Method::GET | Method::HEAD => Endpoint::GetBlob {
                repository: repo()?,
                digest: digest(d)?,
                head,
            },
            Method::DELETE => Endpoint::DeleteBlob(repo()?, digest(d)?),
            _ => return Err(refused()),
        },
        Route::Uploads(_) if method == Method::POST => Endpoint::StartUpload {
            repository: repo()?,
            digest: q.get("digest").map(digest).transpose()?,
            mount: match (q.get("mount"), q.get("from")) {
                (Some(m), Some(f)) => Digest::parse(m).ok().zip(Repository::parse(f)),
                _ => None,
            },
        },
        Route::Upload(_, id) => {
            let upload = UploadRef {
                repository: repo()?,
                id: id.to_string(),
                state: q.get("_state").map(str::to_string),
            };
            match *method {
                Method::GET | Method::HEAD => Endpoint::UploadStatus(upload),
                Method::PATCH => Endpoint::PatchUpload(upload),
                Method::PUT => {
                    let d = match q.get("digest") {
                        Some(d) => digest(d),
                        None => Err(ApiError::bad_request(
                            "DIGEST_INVALID",
                            "digest parameter missing",
                        )),
                    };
                    Endpoint::FinishUpload(upload, d)
                }
                Method::DELETE => Endpoint::CancelUpload(upload),
                _ => return Err(ApiError::unsupported("method not allowed on an upload")),
            }
        }
        Route::Referrers(_, d) if read => Endpoint::Referrers {
            repository: repo()?,
            digest: digest(d)?,
            artifact_type: q.get("artifactType").map(str::to_string),
        },
        _ => return Err(refused()),
    })
}

/// A digest from the client, or the spec's DIGEST_INVALID answer.
fn digest(s: &str) -> Result<Digest, ApiError> {
    Digest::parse(s).map_err(|e| ApiError::bad_request("DIGEST_INVALID", e.0))
}

/// A manifest reference to read. A malformed one names no manifest: 404
/// MANIFEST_UNKNOWN, as distribution answers (its route does not match) and the OCI
/// conformance suite expects (`.INVALID_MANIFEST_NAME`).
fn read_reference(r: &str, repo: &str) -> Result<Reference, ApiError> {
    write_reference(r).map_err(|_| {
        ApiError::unknown(
            "MANIFEST_UNKNOWN",
            format!("manifest {r} unknown to repository {repo}"),
        )
    })
}

/// A manifest reference to write or delete: a malformed one is 400 (DIGEST_INVALID for
/// anything holding `:`, TAG_INVALID otherwise).
fn write_reference(r: &str) -> Result<Reference, ApiError> {
    if r.contains(':') {
        return digest(r).map(Reference::Digest);
    }
    Tag::parse(r)
        .map(Reference::Tag)
        .ok_or_else(|| ApiError::bad_request("TAG_INVALID", format!("invalid tag {r:?}")))
}

/// The query string, decoded once.
struct Query(Vec<(String, String)>);

impl Query {
    fn parse(q: Option<&str>) -> Query {
        Query(
            q.unwrap_or("")
                .split('&')
                .filter(|p| !p.is_empty())
                .map(|p| match p.split_once('=') {
                    Some((k, v)) => (percent_decode(k), percent_decode(v)),
                    None => (percent_decode(p), String::new()),
                })
                .collect(),
        )
    }

    /// The last value given for `key` (as a map built from the pairs would keep).
    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn page(&self) -> Result<Page, ApiError> {
        let n = match self.get("n") {
            None => None,
            Some(v) => Some(v.parse::<usize>().map_err(|_| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "PAGINATION_NUMBER_INVALID",
                    format!("n={v:?} is not a number"),
                )
            })?),
        };
        Ok(Page {
            n,
            last: self.get("last").map(str::to_string),
        })
    }
}

/// Decode `%XX` escapes of a query value (repository names in `last`, `from`).
fn percent_decode(s: &str) -> String {
    // Bytes, not `str` slices: the query may hold UTF-8 (http::Uri lets it through), and
    // a `%` before a multi-byte character must not cut that character in two.
    let hex = |c: u8| (c as char).to_digit(16);
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            if let (Some(hi), Some(lo)) = (
                b.get(i + 1).copied().and_then(hex),
                b.get(i + 2).copied().and_then(hex),
            ) {
                // Two hex digits: at most 0xff.
                out.push((hi * 16 + lo) as u8);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_from_the_end() {
        assert_eq!(route(""), Some(Route::Base));
        assert_eq!(route("_catalog"), Some(Route::Catalog));
        assert_eq!(route("a/b/tags/list"), Some(Route::Tags("a/b")));
        assert_eq!(route("a/manifests/v1"), Some(Route::Manifest("a", "v1")));
        assert_eq!(
            route("a/blobs/sha256:x"),
            Some(Route::Blob("a", "sha256:x"))
        );
        assert_eq!(route("a/b/blobs/uploads/"), Some(Route::Uploads("a/b")));
        assert_eq!(
            route("a/b/blobs/uploads/123"),
            Some(Route::Upload("a/b", "123"))
        );
        assert_eq!(
            route("a/referrers/sha256:x"),
            Some(Route::Referrers("a", "sha256:x"))
        );
        assert_eq!(
            route("blobs/manifests/x"),
            Some(Route::Manifest("blobs", "x"))
        );
        assert_eq!(route("a/other/x"), None);
        assert_eq!(route("a/manifests/"), None);
    }

    fn call(method: Method, target: &str) -> Call {
        let (path, query) = match target.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (target, None),
        };
        Call::parse(&method, path, query)
    }

    fn status(c: &Call) -> (u16, &'static str) {
        let e = c.endpoint.as_ref().unwrap_err();
        (e.status.as_u16(), e.code)
    }

    #[test]
    fn answers_in_distributions_order() {
        // No endpoint, then a bad name, then the method, then the arguments.
        assert_eq!(
            status(&call(Method::GET, "/v2/a/other/x")),
            (404, "NOT_FOUND")
        );
        assert_eq!(
            status(&call(Method::POST, "/v2/A/manifests/x:y")),
            (400, "NAME_INVALID")
        );
        assert_eq!(
            status(&call(Method::POST, "/v2/a/manifests/x:y")),
            (405, "UNSUPPORTED")
        );
        assert_eq!(
            status(&call(Method::GET, "/v2/a/manifests/x:y")),
            (404, "MANIFEST_UNKNOWN")
        );
        assert_eq!(
            status(&call(Method::PUT, "/v2/a/manifests/x:y")),
            (400, "DIGEST_INVALID")
        );
        assert_eq!(
            status(&call(Method::PUT, "/v2/a/manifests/-x")),
            (400, "TAG_INVALID")
        );
        assert_eq!(
            status(&call(Method::GET, "/v2/_catalog?n=x")),
            (400, "PAGINATION_NUMBER_INVALID")
        );
        let c = call(Method::GET, "/v2/a/b/blobs/sha256:zz");
        assert_eq!(status(&c), (400, "DIGEST_INVALID"));
        // The repository is known even when the arguments are not.
        assert_eq!(c.repository.as_ref().map(|r| r.as_str()), Some("a/b"));
        assert_eq!(c.class(), "blob");
    }

    #[test]
    fn query_arguments_are_decoded_once() {
        let d = Digest::sha256_of(b"x");
        let c = call(
            Method::POST,
            &format!("/v2/a/blobs/uploads/?mount={d}&from=lib%2Fb"),
        );
        assert_eq!(
            c.endpoint,
            Ok(Endpoint::StartUpload {
                repository: Repository::parse("a").unwrap(),
                digest: None,
                mount: Some((d.clone(), Repository::parse("lib/b").unwrap())),
            })
        );
        // A malformed mount is an ordinary upload (spec).
        let c = call(Method::POST, "/v2/a/blobs/uploads/?mount=x&from=lib");
        assert!(matches!(
            c.endpoint,
            Ok(Endpoint::StartUpload { mount: None, .. })
        ));
        let c = call(Method::GET, "/v2/a/tags/list?n=2&last=v%2B1");
        assert_eq!(
            c.endpoint,
            Ok(Endpoint::Tags(
                Repository::parse("a").unwrap(),
                Page {
                    n: Some(2),
                    last: Some("v+1".into())
                }
            ))
        );
        // The closing PUT's digest is judged later; its absence is kept as the answer.
        let c = call(Method::PUT, "/v2/a/blobs/uploads/u?_state=t");
        match c.endpoint {
            Ok(Endpoint::FinishUpload(u, Err(e))) => {
                assert_eq!(u.state.as_deref(), Some("t"));
                assert_eq!(e.code, "DIGEST_INVALID");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(percent_decode("a%2Fb"), "a/b");
    }

    /// Found by fuzzing (fuzz/, target `oci`): a `%` followed by one ASCII character
    /// and the first byte of a multi-byte one sliced the query inside that character
    /// and panicked. http::Uri passes UTF-8 in a query through, so any client could.
    #[test]
    fn a_percent_before_a_multibyte_character_is_kept_as_text() {
        for target in [
            "/v2/_catalog?last=%a\u{e9}",
            "/v2/_catalog?last=%\u{e9}\u{e9}",
        ] {
            let uri: http::Uri = target.parse().expect("http accepts UTF-8 in a query");
            let c = Call::parse(&Method::GET, uri.path(), uri.query());
            let last = target.split_once("last=").map(|(_, v)| v.to_string());
            assert_eq!(c.endpoint, Ok(Endpoint::Catalog(Page { n: None, last })));
        }
        // Only two hex digits make an escape (u8::from_str_radix also took "+1").
        assert_eq!(percent_decode("%+1%4"), "%+1%4");
        assert_eq!(percent_decode("%41%e9%c3%a9"), "A\u{fffd}\u{e9}");
    }
}
