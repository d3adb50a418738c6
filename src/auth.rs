//! Authentication: HTTP Basic credentials checked against an Apache htpasswd file,
//! with a cache of verified credentials so a bcrypt user costs one bcrypt, not one per
//! request, and a reload when the file changes on disk.

pub mod cache;
pub mod htpasswd;

use crate::body::Body;
use crate::error::{oci_error, Code};
use arc_swap::ArcSwap;
use base64::Engine;
use cache::Cache;
use htpasswd::Htpasswd;
use http::{header, HeaderValue, Response, StatusCode};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// How long a verified credential stays trusted without re-hashing. A removed user or a
/// changed password takes effect at once anyway: the file's generation is in the key.
pub const CACHE_TTL: Duration = Duration::from_secs(300);
/// Most credentials remembered at once (32 bytes + an instant each).
pub const CACHE_CAPACITY: usize = 10_000;

/// An htpasswd file that could not be read.
#[derive(Debug, thiserror::Error)]
#[error("{path}: cannot read htpasswd file: {words}")]
pub struct AuthError {
    pub path: PathBuf,
    pub words: String,
}

/// What identifies one version of the file on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    #[cfg(unix)]
    ino: u64,
    #[cfg(unix)]
    ctime: i64,
}

fn stamp(path: &Path) -> std::io::Result<Stamp> {
    let m = std::fs::metadata(path)?;
    #[cfg(unix)]
    use std::os::unix::fs::MetadataExt;
    Ok(Stamp {
        modified: m.modified().ok(),
        len: m.len(),
        #[cfg(unix)]
        ino: m.ino(),
        #[cfg(unix)]
        ctime: m.ctime_nsec() + m.ctime() * 1_000_000_000,
    })
}

struct Loaded {
    file: Arc<Htpasswd>,
    generation: u64,
    stamp: Option<Stamp>,
}

/// The result of checking a request's credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Verified; the user name.
    Allowed(String),
    /// No (usable) Authorization header: ask for credentials.
    Missing,
    /// Credentials given and refused. The name is for logs only (it may not exist).
    Refused(String),
}

/// Result of looking at the file on disk again.
#[derive(Debug, PartialEq, Eq)]
pub enum Refresh {
    Unchanged,
    Reloaded {
        users: usize,
        problems: usize,
    },
    /// The file is gone or unreadable; the last good version stays in force.
    Failed(String),
}

/// Checks Basic credentials. Cheap to share: one per configuration snapshot.
pub struct Authenticator {
    path: PathBuf,
    challenge: HeaderValue,
    loaded: ArcSwap<Loaded>,
    next_generation: AtomicU64,
    cache: Cache,
}

impl Authenticator {
    /// Read the htpasswd file. Bad lines are logged (and fail `check`); good ones load.
    pub fn load(path: &Path, realm: &str) -> Result<Authenticator, AuthError> {
        let (file, st) = read(path)?;
        for p in file.problems() {
            tracing::warn!(file = %path.display(), line = p.line, "htpasswd: {}", p.message);
        }
        let challenge = HeaderValue::from_str(&format!("Basic realm=\"{realm}\""))
            .unwrap_or_else(|_| HeaderValue::from_static("Basic realm=\"Registry Realm\""));
        Ok(Authenticator {
            path: path.to_path_buf(),
            challenge,
            loaded: ArcSwap::from_pointee(Loaded {
                file: Arc::new(file),
                generation: 0,
                stamp: Some(st),
            }),
            next_generation: AtomicU64::new(1),
            cache: Cache::new(CACHE_CAPACITY, CACHE_TTL),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Users in the current file.
    pub fn users(&self) -> usize {
        self.loaded.load().file.len()
    }

    /// Re-read the file if it changed on disk since it was last read.
    pub fn refresh(&self) -> Refresh {
        let current = self.loaded.load();
        let now = match stamp(&self.path) {
            Ok(s) => s,
            Err(e) => return Refresh::Failed(crate::io_error_words(&e)),
        };
        if current.stamp.as_ref() == Some(&now) {
            return Refresh::Unchanged;
        }
        match read(&self.path) {
            Ok((file, st)) => {
                let users = file.len();
                let problems = file.problems().len();
                for p in file.problems() {
                    tracing::warn!(file = %self.path.display(), line = p.line, "htpasswd: {}", p.message);
                }
                self.loaded.store(Arc::new(Loaded {
                    file: Arc::new(file),
                    generation: self.next_generation.fetch_add(1, Ordering::Relaxed),
                    stamp: Some(st),
                }));
                // Entries of the old generation can never hit again; free them now.
                self.cache.clear();
                Refresh::Reloaded { users, problems }
            }
            Err(e) => Refresh::Failed(e.words),
        }
    }

    /// Check an `Authorization` header value. Runs the password hash off the async
    /// threads (bcrypt cost 10 is ~60 ms of CPU) unless the credential is cached.
    pub async fn authenticate(&self, authorization: Option<&HeaderValue>) -> Outcome {
        let Some((user, password)) = authorization.and_then(parse_basic) else {
            return Outcome::Missing;
        };
        let loaded = self.loaded.load_full();
        let key = cache_key(loaded.generation, &user, &password);
        if self.cache.hit(&key, Instant::now()) {
            crate::metrics::get().auth_cache_hits.inc();
            return Outcome::Allowed(user);
        }
        let file = loaded.file.clone();
        let (user, ok) = match tokio::task::spawn_blocking(move || {
            let ok = file.verify(&user, &password);
            (user, ok)
        })
        .await
        {
            Ok(r) => r,
            Err(_) => return Outcome::Refused(String::new()),
        };
        if ok {
            self.cache.insert(key, Instant::now());
            Outcome::Allowed(user)
        } else {
            Outcome::Refused(user)
        }
    }

    /// Cache statistics for tests and metrics: (hits, entries).
    pub fn cache_stats(&self) -> (u64, usize) {
        (self.cache.hits(), self.cache.len())
    }

    /// The 401 answer: challenge, API version header, OCI JSON body.
    pub fn challenge(&self) -> Response<Body> {
        let mut resp = oci_error(
            StatusCode::UNAUTHORIZED,
            Code::Unauthorized,
            "authentication required",
        );
        resp.headers_mut()
            .insert(header::WWW_AUTHENTICATE, self.challenge.clone());
        resp
    }
}

/// Write an htpasswd file: it holds password hashes, so 0600 when created, and it is
/// replaced atomically so a running server never reads half of it.
pub fn write_file(path: &Path, text: &str) -> std::io::Result<()> {
    crate::files::write_atomic(path, text.as_bytes(), 0o600)
}

fn read(path: &Path) -> Result<(Htpasswd, Stamp), AuthError> {
    let err = |e: std::io::Error| AuthError {
        path: path.to_path_buf(),
        words: crate::io_error_words(&e),
    };
    // Stamp first: if the file changes while we read, the next refresh sees a newer
    // stamp and reads it again rather than missing the change.
    let st = stamp(path).map_err(err)?;
    let file = Htpasswd::load(path).map_err(err)?;
    Ok((file, st))
}

/// The cache key binds user, password and file generation, so a changed file
/// invalidates everything and a password never sits in memory in the clear.
fn cache_key(generation: u64, user: &str, password: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(generation.to_le_bytes());
    h.update((user.len() as u64).to_le_bytes());
    h.update(user.as_bytes());
    h.update(password.as_bytes());
    h.finalize().into()
}

/// Decode `Basic base64(user:password)`. The scheme is case-insensitive (RFC 7617);
/// the password may itself contain ':'.
pub fn parse_basic(v: &HeaderValue) -> Option<(String, String)> {
    let v = v.to_str().ok()?.trim();
    let (scheme, rest) = v.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    if user.is_empty() {
        return None;
    }
    Some((user.to_string(), password.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(user: &str, pass: &str) -> HeaderValue {
        let b = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
        HeaderValue::from_str(&format!("Basic {b}")).unwrap()
    }

    #[test]
    fn parse_basic_cases() {
        assert_eq!(
            parse_basic(&basic("a", "b:c")),
            Some(("a".into(), "b:c".into()))
        );
        assert_eq!(
            parse_basic(&HeaderValue::from_static("basic YTpi")),
            Some(("a".into(), "b".into()))
        );
        assert_eq!(parse_basic(&HeaderValue::from_static("Bearer x")), None);
        assert_eq!(parse_basic(&HeaderValue::from_static("Basic !!!")), None);
        assert_eq!(parse_basic(&basic("", "x")), None);
    }

    fn write_file(dir: &Path, text: &str) -> PathBuf {
        let p = dir.join("htpasswd");
        std::fs::write(&p, text).unwrap();
        p
    }

    #[tokio::test]
    async fn verified_credentials_are_cached_and_file_changes_invalidate() {
        let dir = tempfile::tempdir().unwrap();
        let h1 = htpasswd::hash_bcrypt("s3cret", 4).unwrap();
        let path = write_file(dir.path(), &format!("alice:{h1}\n"));
        let a = Authenticator::load(&path, "R").unwrap();
        assert_eq!(
            a.authenticate(Some(&basic("alice", "s3cret"))).await,
            Outcome::Allowed("alice".into())
        );
        assert_eq!(a.cache_stats(), (0, 1));
        assert_eq!(
            a.authenticate(Some(&basic("alice", "s3cret"))).await,
            Outcome::Allowed("alice".into())
        );
        assert_eq!(a.cache_stats(), (1, 1), "second request must hit the cache");
        assert_eq!(
            a.authenticate(Some(&basic("alice", "wrong"))).await,
            Outcome::Refused("alice".into())
        );
        assert_eq!(
            a.authenticate(Some(&basic("bob", "s3cret"))).await,
            Outcome::Refused("bob".into())
        );
        assert_eq!(a.authenticate(None).await, Outcome::Missing);

        // Replace the password: the cached credential must stop working at once.
        std::thread::sleep(Duration::from_millis(20));
        let h2 = htpasswd::hash_bcrypt("n3w", 4).unwrap();
        write_file(dir.path(), &format!("alice:{h2}\n"));
        assert_eq!(
            a.refresh(),
            Refresh::Reloaded {
                users: 1,
                problems: 0
            }
        );
        assert_eq!(a.cache_stats().1, 0);
        assert_eq!(
            a.authenticate(Some(&basic("alice", "s3cret"))).await,
            Outcome::Refused("alice".into())
        );
        assert_eq!(
            a.authenticate(Some(&basic("alice", "n3w"))).await,
            Outcome::Allowed("alice".into())
        );
        assert_eq!(a.refresh(), Refresh::Unchanged);

        // A vanished file keeps the last good one in force.
        std::fs::remove_file(&path).unwrap();
        assert!(matches!(a.refresh(), Refresh::Failed(_)));
        assert_eq!(
            a.authenticate(Some(&basic("alice", "n3w"))).await,
            Outcome::Allowed("alice".into())
        );
    }

    #[test]
    fn challenge_shape() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_file(dir.path(), "");
        let a = Authenticator::load(&path, "Registry Realm").unwrap();
        let r = a.challenge();
        assert_eq!(r.status(), 401);
        assert_eq!(
            r.headers()["www-authenticate"],
            "Basic realm=\"Registry Realm\""
        );
        assert_eq!(
            r.headers()["docker-distribution-api-version"],
            "registry/2.0"
        );
    }

    #[test]
    fn missing_file_is_an_error_naming_it() {
        let e = Authenticator::load(Path::new("/nonexistent/htpasswd"), "R")
            .err()
            .unwrap();
        assert_eq!(
            e.to_string(),
            "/nonexistent/htpasswd: cannot read htpasswd file: no such file or directory"
        );
    }
}
