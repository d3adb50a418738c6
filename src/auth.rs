//! Authentication: HTTP Basic credentials checked against an Apache htpasswd file,
//! with a cache of verified credentials so a bcrypt user costs one bcrypt, not one per
//! request, and a reload when the file changes on disk.
//!
//! Password checks run on the bounded [`pool`]; concurrent identical checks (same file
//! generation, user and password) share one computation ("single flight"), so a
//! restart followed by 300 parallel requests of one user costs one hash; and every
//! failed check is answered no sooner than [`Authenticator::failure_delay`] after it
//! began, by sleeping, so neither the user's scheme nor their existence shows in the
//! response time, without spending CPU to hide it. Failed checks are also rationed per
//! client address and per user name by the [`throttle`]: beyond its buckets a guess is
//! answered 429 without a hash.

pub mod cache;
pub mod htpasswd;
pub mod pool;
pub mod throttle;
pub mod token;

use crate::body::Body;
use crate::error::{oci_error, Code};
use arc_swap::ArcSwap;
use base64::Engine;
use cache::Cache;
use futures_util::future::{BoxFuture, FutureExt, Shared, WeakShared};
use htpasswd::Htpasswd;
use http::{header, HeaderValue, Response, StatusCode};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use throttle::{Admission, Throttle};

/// How long a verified credential stays trusted without re-hashing. A removed user or a
/// changed password takes effect at once anyway: the file's generation is in the key.
pub const CACHE_TTL: Duration = Duration::from_secs(300);
/// Most credentials remembered at once (32 bytes + an instant each).
pub const CACHE_CAPACITY: usize = 10_000;
/// Shortest time to answer a failed check. A file of only apr1/{SHA} users would
/// otherwise answer wrong guesses in well under a millisecond.
pub const FAILURE_FLOOR: Duration = Duration::from_millis(100);
/// The failure delay follows hashes that run slower than calibrated (a loaded host),
/// up to this.
pub const FAILURE_CEILING: Duration = Duration::from_secs(2);
/// Weak entries named one by one in the log; beyond this, one summary line.
const WEAK_LOGGED: usize = 10;

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

/// What authentication decided about a request's credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Verified; the user name.
    Allowed(String),
    /// No (usable) Authorization header: ask for credentials.
    Missing,
    /// Credentials given and refused. The name, for logs, only if the file has it: an
    /// unknown "name" is often a password typed into the wrong field.
    Refused(Option<String>),
    /// Too many failed logins from this address or for this name: refused without a
    /// check; answer [`Authenticator::throttled`] (429 with `Retry-After`).
    Throttled { retry_after: Duration },
}

/// What [`Authenticator::join`] found for one credential.
enum Joined {
    /// Verified recently: no check.
    Cached,
    /// The check to await (a new one, or one in flight with the same credentials).
    Flight(Flight),
    /// The throttle refused a new check.
    Throttled(Duration),
    /// The throttle's last tokens are promised to checks in flight: ask again later.
    Wait,
}

/// What one shared check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Match,
    Mismatch,
    /// The check could not run (it panicked): refused, like a mismatch.
    Failed,
}

/// One check in progress, awaited by every request with the same credentials.
type Flight = Shared<BoxFuture<'static, Verdict>>;

/// Checks in progress by cache key. Weak, so that when every request waiting for a
/// check is gone the check's future is dropped, and with it its place in the pool's
/// queue. The number tells a replaced entry from its successor.
type Flights = Mutex<HashMap<[u8; 32], (u64, WeakShared<BoxFuture<'static, Verdict>>)>>;

/// Removes a finished or abandoned check from [`Flights`] (unless a newer check for
/// the same key has taken its place).
struct Landed {
    flights: Arc<Flights>,
    key: [u8; 32],
    id: u64,
}

impl Drop for Landed {
    fn drop(&mut self) {
        let mut map = self.flights.lock().unwrap_or_else(|p| p.into_inner());
        if map.get(&self.key).is_some_and(|(id, _)| *id == self.id) {
            map.remove(&self.key);
        }
    }
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
    cache: Arc<Cache>,
    flights: Arc<Flights>,
    next_flight: AtomicU64,
    /// Nanoseconds a failed check takes at least; see [`Authenticator::failure_delay`].
    failure_delay: Arc<AtomicU64>,
    /// Password hashes computed (not cache hits, not skipped or unknown-user checks).
    hashes: Arc<AtomicU64>,
    /// Failed-login buckets; shared with the next snapshot's authenticator on reload.
    throttle: Arc<Throttle>,
}

impl Authenticator {
    /// Read the htpasswd file. Bad lines are logged (and fail `check`); good ones load.
    /// Failed checks are rationed by `throttle` (a new one, or the previous snapshot's).
    ///
    /// Also measures the file's most expensive hash (one hash, ~60-90 ms for bcrypt
    /// cost 10) to set the failure delay.
    pub fn load(
        path: &Path,
        realm: &str,
        throttle: Arc<Throttle>,
    ) -> Result<Authenticator, AuthError> {
        let (file, st) = read(path)?;
        for p in file.problems() {
            tracing::warn!(file = %path.display(), line = p.line, "htpasswd: {}", p.message);
        }
        warn_weak(path, &file);
        let challenge = HeaderValue::from_str(&format!("Basic realm=\"{realm}\""))
            .unwrap_or_else(|_| HeaderValue::from_static("Basic realm=\"Registry Realm\""));
        let a = Authenticator {
            path: path.to_path_buf(),
            challenge,
            loaded: ArcSwap::from_pointee(Loaded {
                file: Arc::new(file),
                generation: 0,
                stamp: Some(st),
            }),
            next_generation: AtomicU64::new(1),
            cache: Arc::new(Cache::new(CACHE_CAPACITY, CACHE_TTL)),
            flights: Arc::new(Mutex::new(HashMap::new())),
            next_flight: AtomicU64::new(0),
            failure_delay: Arc::new(AtomicU64::new(0)),
            hashes: Arc::new(AtomicU64::new(0)),
            throttle,
        };
        a.calibrate(&a.loaded.load().file);
        Ok(a)
    }

    /// Set the failure delay from a fresh measurement of `file`'s costliest hash.
    fn calibrate(&self, file: &Htpasswd) {
        let d = file.calibrate().clamp(FAILURE_FLOOR, FAILURE_CEILING);
        self.failure_delay
            .store(d.as_nanos() as u64, Ordering::Relaxed);
        crate::metrics::get()
            .auth_failure_delay
            .set(d.as_secs_f64());
    }

    /// The least time a failed check takes: the measured cost of the file's most
    /// expensive hash (raised when real hashes run slower), at least
    /// [`FAILURE_FLOOR`]. A wrong password of a cheap apr1/{SHA} user and an unknown
    /// user look like a wrong bcrypt password, and the wait is a timer, not CPU.
    pub fn failure_delay(&self) -> Duration {
        Duration::from_nanos(self.failure_delay.load(Ordering::Relaxed))
    }

    /// Password hashes this authenticator has computed.
    pub fn hashes(&self) -> u64 {
        self.hashes.load(Ordering::Relaxed)
    }

    /// The failed-login throttle (carried over to the next snapshot on reload).
    pub fn throttle(&self) -> &Arc<Throttle> {
        &self.throttle
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Users in the current file.
    pub fn users(&self) -> usize {
        self.loaded.load().file.len()
    }

    /// A short digest of `user`'s current htpasswd entry, or None when the file has no
    /// usable entry for them: tokens carry it, so a token dies with its user's removal
    /// or password change, as cached credentials do.
    pub fn credential_tag(&self, user: &str) -> Option<[u8; 8]> {
        use sha2::Digest;
        let loaded = self.loaded.load();
        let hash = loaded.file.hash_of(user)?;
        let d = sha2::Sha256::digest(hash.as_bytes());
        let mut tag = [0u8; 8];
        tag.copy_from_slice(&d[..8]);
        Some(tag)
    }

    /// Re-read the file if it changed on disk since it was last read.
    pub fn refresh(&self) -> Refresh {
        let current = self.loaded.load();
        let now = match stamp(&self.path) {
            Ok(s) => s,
            Err(e) => return Refresh::Failed(crate::files::io_error_words(&e)),
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
                warn_weak(&self.path, &file);
                // Re-measure only when the costliest scheme changed (a new cost or
                // kind): one hash on this thread, once per such edit.
                if file.costliest() != current.file.costliest() {
                    self.calibrate(&file);
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

    /// Check an `Authorization` header value sent from `peer`. A credential verified
    /// recently is allowed at once (even while throttled); otherwise the [`throttle`]
    /// may refuse it without a check; a check waits for its turn in the hashing
    /// [`pool`], shared with identical checks in progress; a refusal comes no sooner
    /// than [`Self::failure_delay`] after the call. Dropping the future gives up the
    /// turn (the hash is skipped unless another request still waits for it).
    pub async fn authenticate(
        &self,
        authorization: Option<&HeaderValue>,
        peer: IpAddr,
    ) -> Decision {
        let Some((user, password)) = authorization.and_then(parse_basic) else {
            return Decision::Missing;
        };
        let started = Instant::now();
        let loaded = self.loaded.load_full();
        let key = cache_key(loaded.generation, &user, &password);
        let flight = loop {
            // Listening before asking, so a settlement in between is not missed.
            let settled = self.throttle.settled();
            tokio::pin!(settled);
            settled.as_mut().enable();
            match self.join(key, &loaded, &user, &password, peer) {
                Joined::Cached => {
                    crate::metrics::get().auth_cache_hits.inc();
                    return Decision::Allowed(user);
                }
                Joined::Flight(f) => break f,
                Joined::Throttled(retry_after) => return Decision::Throttled { retry_after },
                // Bounded, in case a settlement is lost: ask again at least each second.
                Joined::Wait => {
                    let _ = tokio::time::timeout(Duration::from_secs(1), settled).await;
                }
            }
        };
        if flight.await == Verdict::Match {
            return Decision::Allowed(user);
        }
        // Pad from this request's own start: the pool slot is already free, so a
        // flood of failures costs timers, not hashing threads.
        tokio::time::sleep_until((started + self.failure_delay()).into()).await;
        Decision::Refused(loaded.file.contains(&user).then_some(user))
    }

    /// Whether the credential is cached; else the check in progress for `key`, or a
    /// new one if the throttle admits it (joining a check in flight costs no hash and
    /// takes no token). The cache is consulted under the flights lock, and a check
    /// caches its success before it leaves the map, so a request arriving as a check
    /// lands finds one or the other and never starts a second hash.
    fn join(
        &self,
        key: [u8; 32],
        loaded: &Arc<Loaded>,
        user: &str,
        password: &str,
        peer: IpAddr,
    ) -> Joined {
        let mut map = self.flights.lock().unwrap_or_else(|p| p.into_inner());
        if self.cache.hit(&key, Instant::now()) {
            return Joined::Cached;
        }
        if let Some(flight) = map.get(&key).and_then(|(_, weak)| weak.upgrade()) {
            return Joined::Flight(flight);
        }
        let mut reservation = match self.throttle.admit(peer, user) {
            Admission::Go(r) => r,
            Admission::Throttled { retry_after, .. } => return Joined::Throttled(retry_after),
            Admission::Wait => return Joined::Wait,
        };
        let password = password.to_string();
        let id = self.next_flight.fetch_add(1, Ordering::Relaxed);
        let landed = Landed {
            flights: self.flights.clone(),
            key,
            id,
        };
        let file = loaded.file.clone();
        let user = user.to_string();
        let cache = self.cache.clone();
        let hashes = self.hashes.clone();
        let delay = self.failure_delay.clone();
        let flight = async move {
            // Dropped last: after the success is cached (see `join`).
            let _landed = landed;
            let checked = pool::get()
                .run(move || {
                    // Settled by this hash's outcome, even if its requester is gone
                    // by then; a job skipped before it ran hands its tokens back.
                    if let Some(r) = reservation.as_mut() {
                        r.start();
                    }
                    let began = Instant::now();
                    let checked = file.check(&user, &password);
                    if let Some(r) = reservation {
                        r.settle(!checked.matched);
                    }
                    if let Some(scheme) = checked.hashed {
                        let took = began.elapsed().min(FAILURE_CEILING);
                        hashes.fetch_add(1, Ordering::Relaxed);
                        crate::metrics::get()
                            .auth_hashes
                            .get_or_create(&crate::metrics::SchemeLabels {
                                scheme: scheme.label(),
                            })
                            .inc();
                        // A hash slower than the calibrated delay (the host is busy)
                        // would make a known user's failure stand out: follow it.
                        let before = delay.fetch_max(took.as_nanos() as u64, Ordering::Relaxed);
                        if (took.as_nanos() as u64) > before {
                            crate::metrics::get()
                                .auth_failure_delay
                                .set(took.as_secs_f64());
                        }
                    }
                    checked.matched
                })
                .await;
            match checked {
                Some(true) => {
                    cache.insert(key, Instant::now());
                    Verdict::Match
                }
                Some(false) => Verdict::Mismatch,
                None => Verdict::Failed,
            }
        }
        .boxed()
        .shared();
        if let Some(weak) = flight.downgrade() {
            map.insert(key, (id, weak));
        }
        Joined::Flight(flight)
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

    /// The 429 answer of a throttled login: `Retry-After` in whole seconds, API
    /// version header, OCI JSON body (distribution-spec code TOOMANYREQUESTS).
    pub fn throttled(&self, retry_after: Duration) -> Response<Body> {
        let mut resp = crate::error::oci(
            StatusCode::TOO_MANY_REQUESTS,
            "TOOMANYREQUESTS",
            "too many failed logins from this address or for this user; retry later",
        );
        resp.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from(retry_after.as_secs().max(1)),
        );
        resp
    }
}

/// Log each weak (apr1, MD5-crypt, {SHA}) entry with how to fix it, at start-up and
/// whenever the file is read again.
fn warn_weak(path: &Path, file: &Htpasswd) {
    let weak = file.weak_entries();
    for w in weak.iter().take(WEAK_LOGGED) {
        tracing::warn!(file = %path.display(), "htpasswd: {w}");
    }
    if weak.len() > WEAK_LOGGED {
        tracing::warn!(
            file = %path.display(),
            count = weak.len(),
            "htpasswd: more users with weak password hashes; `portcullis check` lists them all"
        );
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
        words: crate::files::io_error_words(&e),
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

    const PEER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    /// No throttle: these tests are about checks, not rationing them.
    fn off() -> Arc<Throttle> {
        Arc::new(Throttle::new(None))
    }

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
        let a = Authenticator::load(&path, "R", off()).unwrap();
        assert_eq!(
            a.authenticate(Some(&basic("alice", "s3cret")), PEER).await,
            Decision::Allowed("alice".into())
        );
        assert_eq!(a.cache_stats(), (0, 1));
        assert_eq!(
            a.authenticate(Some(&basic("alice", "s3cret")), PEER).await,
            Decision::Allowed("alice".into())
        );
        assert_eq!(a.cache_stats(), (1, 1), "second request must hit the cache");
        assert_eq!(
            a.authenticate(Some(&basic("alice", "wrong")), PEER).await,
            Decision::Refused(Some("alice".into()))
        );
        assert_eq!(
            a.authenticate(Some(&basic("bob", "s3cret")), PEER).await,
            Decision::Refused(None),
            "an unknown name is not handed to the log"
        );
        assert_eq!(a.authenticate(None, PEER).await, Decision::Missing);

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
            a.authenticate(Some(&basic("alice", "s3cret")), PEER).await,
            Decision::Refused(Some("alice".into()))
        );
        assert_eq!(
            a.authenticate(Some(&basic("alice", "n3w")), PEER).await,
            Decision::Allowed("alice".into())
        );
        assert_eq!(a.refresh(), Refresh::Unchanged);

        // A vanished file keeps the last good one in force.
        std::fs::remove_file(&path).unwrap();
        assert!(matches!(a.refresh(), Refresh::Failed(_)));
        assert_eq!(
            a.authenticate(Some(&basic("alice", "n3w")), PEER).await,
            Decision::Allowed("alice".into())
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn identical_concurrent_checks_hash_once() {
        let dir = tempfile::tempdir().unwrap();
        let h = htpasswd::hash_bcrypt("s3cret", 8).unwrap();
        let path = write_file(dir.path(), &format!("alice:{h}\n"));
        let a = Arc::new(Authenticator::load(&path, "R", off()).unwrap());
        let run = |password: &'static str| {
            let tasks: Vec<_> = (0..100)
                .map(|_| {
                    let a = a.clone();
                    tokio::spawn(async move {
                        a.authenticate(Some(&basic("alice", password)), PEER).await
                    })
                })
                .collect();
            futures_util::future::join_all(tasks)
        };
        for r in run("s3cret").await {
            assert_eq!(r.unwrap(), Decision::Allowed("alice".into()));
        }
        assert_eq!(a.hashes(), 1, "100 parallel first requests, one hash");
        for r in run("wrong").await {
            assert_eq!(r.unwrap(), Decision::Refused(Some("alice".into())));
        }
        assert!(
            a.hashes() <= 10,
            "100 parallel identical wrong passwords share their hash: {}",
            a.hashes()
        );
        assert!(
            a.flights.lock().unwrap().is_empty(),
            "finished checks leave"
        );
    }

    #[tokio::test]
    async fn failures_are_padded_and_cheap_schemes_and_unknown_users_burn_no_bcrypt() {
        let dir = tempfile::tempdir().unwrap();
        let bcrypt = htpasswd::hash_bcrypt("b", 6).unwrap();
        // apr1 and {SHA} of "x" (from htpasswd -m / -s).
        let path = write_file(
            dir.path(),
            &format!(
                "bee:{bcrypt}\napril:$apr1$ShcGw6fg$r3./BPJyOvSJJdpsR1gFl/\nshah:{{SHA}}EfatjsUqKYSrqv18O1FlA3hcIHI=\n"
            ),
        );
        let a = Authenticator::load(&path, "R", off()).unwrap();
        let delay = a.failure_delay();
        assert!(delay > Duration::ZERO);
        for (user, hashed) in [("bee", 1), ("april", 1), ("shah", 1), ("nobody", 0)] {
            let before = a.hashes();
            let t = Instant::now();
            let out = a.authenticate(Some(&basic(user, "wrong")), PEER).await;
            let took = t.elapsed();
            assert!(matches!(out, Decision::Refused(_)), "{user}");
            assert!(took >= delay, "{user}: refused after {took:?} < {delay:?}");
            assert_eq!(a.hashes() - before, hashed, "{user}");
        }
        // Successes are not padded: the apr1 user's right password is one MD5-crypt.
        let t = Instant::now();
        assert_eq!(
            a.authenticate(Some(&basic("april", "x")), PEER).await,
            Decision::Allowed("april".into())
        );
        assert!(t.elapsed() < delay, "{:?}", t.elapsed());
    }

    #[test]
    fn challenge_shape() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_file(dir.path(), "");
        let a = Authenticator::load(&path, "Registry Realm", off()).unwrap();
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
        let e = Authenticator::load(Path::new("/nonexistent/htpasswd"), "R", off())
            .err()
            .unwrap();
        assert_eq!(
            e.to_string(),
            "/nonexistent/htpasswd: cannot read htpasswd file: no such file or directory"
        );
    }
}
