//! The fuzz harnesses: one function per target, shared by the AFL++ binaries in
//! `src/bin/` (through `afl::fuzz!`) and by the replay test, which runs every file of
//! `corpus/<target>/` through the same function. Each harness calls the library's own
//! entry point (no parser is re-implemented here) and, besides "no panic", checks the
//! invariants that are cheap to state: a parsed name displays as what was parsed and
//! parses back equal, a range lies inside the blob, the collector's reader keeps at
//! least what a PUT validated, a user just written into a file verifies.
//!
//! A violated invariant is a panic, which AFL++ records as a crash.

use std::path::Path;

use http::{HeaderValue, Method};
use portcullis::auth::htpasswd::{self, Htpasswd, Scheme};
use portcullis::config::Config;
use portcullis::oci::{Call, Digest, Endpoint, Reference, Repository, Tag};
use portcullis::registry::{api, gc, manifest};

/// A harness: one input, panics on a finding.
pub type Harness = fn(&[u8]);

/// Every target, by the name of its binary and its corpus folder.
pub const TARGETS: [(&str, Harness); 5] = [
    ("htpasswd", htpasswd),
    ("config", config),
    ("oci", oci),
    ("range", range),
    ("manifest", manifest),
];

/// Split `data` at the first NUL: the part before it and (if any) the part after.
fn split_nul(data: &[u8]) -> (&[u8], Option<&[u8]>) {
    match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], Some(&data[i + 1..])),
        None => (data, None),
    }
}

/// Highest bcrypt cost the harness verifies a password against. The parser accepts
/// costs up to 31 (bcrypt's own limit: `classify_bcrypt` refuses 32 and more), and
/// cost 31 takes hours per check, so a verification of a costlier hash would only stall
/// the fuzzer; its parsing is still exercised. Cost 6 is ~5 ms.
const MAX_FUZZ_COST: u32 = 6;

/// Hashes verified per input, at most: a file of a thousand cost-4 lines would
/// otherwise take a second per execution.
const MAX_VERIFICATIONS: usize = 3;

/// The password of the entry the harness writes into every file with `upsert`, and its
/// `{SHA}` hash from Debian's `htpasswd -nbs x fuzz-password`. SHA-1, not bcrypt: the
/// round trip checks the file handling, and a bcrypt check in every execution would
/// divide the executions per second by ten (bcrypt lines from the corpus are still
/// checked).
const FUZZ_PASSWORD: &str = "fuzz-password";
const FUZZ_HASH: &str = "{SHA}lV340LCKK3pW3HLpRTDhBhFIzHY=";

fn cheap(scheme: Option<Scheme>) -> bool {
    match scheme {
        Some(Scheme::Bcrypt { cost }) => cost <= MAX_FUZZ_COST,
        Some(_) => true,
        None => true,
    }
}

/// htpasswd file text, then NUL, a user name, NUL, a password (both optional).
///
/// Parses the file, checks the password against (a few of) its usable entries, and
/// writes a known user into the text with `upsert`: that user must then verify, other
/// users must keep their schemes, and `remove` must take the user out again.
pub fn htpasswd(data: &[u8]) {
    let (text, rest) = split_nul(data);
    let text = String::from_utf8_lossy(text);
    let (user, password) = match rest.map(split_nul) {
        Some((u, p)) => (
            String::from_utf8_lossy(u).into_owned(),
            String::from_utf8_lossy(p.unwrap_or_default()).into_owned(),
        ),
        None => ("fuzz".to_string(), String::new()),
    };

    let h = Htpasswd::parse(&text);
    let users = h.users();
    assert_eq!(users.len(), h.len());
    assert_eq!(h.is_empty(), users.is_empty());
    let lines = text.split('\n').count();
    for p in h.problems() {
        assert!(p.line >= 1 && p.line <= lines, "problem on line {}", p.line);
        let _ = p.to_string();
    }
    for w in h.weak_entries() {
        assert!(w.scheme.is_weak());
        let _ = w.to_string();
    }
    let mut seen = std::collections::HashSet::new();
    for u in &users {
        assert!(seen.insert(*u), "user {u:?} loaded twice");
        assert!(h.contains(u));
        assert!(h.scheme(u).is_some(), "loaded user {u:?} without a scheme");
    }
    let mut verified = 0;
    for u in users.iter().take(MAX_VERIFICATIONS) {
        let scheme = h.scheme(u);
        if cheap(scheme) {
            let checked = h.check(u, &password);
            assert_eq!(checked.hashed, scheme);
            assert_eq!(h.verify(u, &password), checked.matched);
            verified += 1;
        }
    }
    // An unknown user burns the costliest hash as a decoy.
    if verified < MAX_VERIFICATIONS && cheap(h.costliest()) && !h.contains(&user) {
        assert!(!h.verify(&user, &password));
        assert!(!h.check(&user, &password).matched);
    }

    // upsert/remove round trip, for a name the CLI would accept.
    if htpasswd::valid_user_name(&user).is_err() {
        return;
    }
    let written = htpasswd::upsert(&text, &user, FUZZ_HASH);
    let after = Htpasswd::parse(&written);
    assert_eq!(
        after.scheme(&user),
        Some(Scheme::Sha1),
        "upsert of {user:?} did not load"
    );
    assert!(after.check(&user, FUZZ_PASSWORD).matched);
    if password != FUZZ_PASSWORD {
        assert!(!after.check(&user, &password).matched);
    }
    for u in users.iter().filter(|u| **u != user) {
        assert_eq!(after.scheme(u), h.scheme(u), "upsert changed user {u:?}");
    }
    let (removed, found) = htpasswd::remove(&written, &user);
    assert!(found);
    assert!(!Htpasswd::parse(&removed).contains(&user));
}

/// Where the fuzzed configuration claims to live: a folder that does not exist, so
/// relative `*_file` keys name nothing on this machine.
const CONFIG_PATH: &str = "/nonexistent-portcullis-fuzz/proxy.toml";

/// proxy.toml text, through `Config::parse` (TOML, then every key validated).
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // Validation reads `*_file` keys (S3 secrets) from disk: a device file would block
    // or never end, which is the operator's choice, not a parser bug.
    if ["/dev", "/proc", "/sys"].iter().any(|d| text.contains(d)) {
        return;
    }
    match Config::parse(Path::new(CONFIG_PATH), text) {
        Ok(c) => {
            let _ = format!("{c:?}");
        }
        Err(problems) => {
            assert!(!problems.0.is_empty(), "an error without a problem");
            let shown = problems.to_string();
            assert!(!shown.is_empty());
        }
    }
}

const METHODS: [Method; 8] = [
    Method::GET,
    Method::HEAD,
    Method::PUT,
    Method::POST,
    Method::PATCH,
    Method::DELETE,
    Method::OPTIONS,
    Method::TRACE,
];

fn check_repository(s: &str) {
    if let Some(r) = Repository::parse(s) {
        assert_eq!(r.to_string(), s);
        assert_eq!(Repository::parse(r.as_str()).as_ref(), Some(&r));
        // What reaches a storage key must not escape the root.
        assert!(!s.starts_with('/') && !s.ends_with('/') && !s.contains("//"));
        assert!(s.split('/').all(|c| c != "." && c != ".."), "{s:?}");
        assert!(s.len() <= 255);
    }
}

fn check_tag(s: &str) {
    if let Some(t) = Tag::parse(s) {
        assert_eq!(t.to_string(), s);
        assert_eq!(Tag::parse(t.as_str()).as_ref(), Some(&t));
        assert!(!s.contains(['/', ':']) && s.len() <= 128);
    }
}

fn check_digest(s: &str) {
    if let Ok(d) = Digest::parse(s) {
        assert_eq!(d.to_string(), s);
        assert_eq!(Digest::parse(&d.to_string()), Ok(d.clone()));
        assert!(d
            .hex
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
    }
}

fn check_reference(r: &Reference) {
    let s = r.to_string();
    match r {
        Reference::Tag(t) => assert_eq!(Tag::parse(&s).as_ref(), Some(t)),
        Reference::Digest(d) => assert_eq!(Digest::parse(&s).as_ref(), Ok(d)),
    }
}

/// One method byte, then a request target (`/v2/...?query`).
///
/// The target goes through `Call::parse` twice: as the server sees it (split by
/// `http::Uri`, when it is a valid request target) and as raw text split at the first
/// `?`. The name parsers see the whole text and each of its `/` segments.
pub fn oci(data: &[u8]) {
    let Some((&m, rest)) = data.split_first() else {
        return;
    };
    let method = &METHODS[usize::from(m) % METHODS.len()];
    let text = String::from_utf8_lossy(rest);

    for s in std::iter::once(text.as_ref()).chain(text.split(['/', '?', '&', '='])) {
        check_repository(s);
        check_tag(s);
        check_digest(s);
    }

    let (path, query) = match text.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (text.as_ref(), None),
    };
    check_call(method, path, query);
    if let Ok(uri) = http::Uri::try_from(rest) {
        check_call(method, uri.path(), uri.query());
    }
}

fn check_call(method: &Method, path: &str, query: Option<&str>) {
    let call = Call::parse(method, path, query);
    let _ = call.class();
    if call.kind.is_none() {
        assert!(call.endpoint.is_err() && call.repository.is_none());
    }
    if let Some(r) = &call.repository {
        check_repository(r.as_str());
        assert!(path.contains(r.as_str()), "{r} not in {path:?}");
    }
    let Ok(endpoint) = &call.endpoint else {
        return;
    };
    assert!(call.kind.is_some());
    assert!(path.starts_with("/v2/"));
    let read = method == Method::GET || method == Method::HEAD;
    if endpoint.writes() {
        assert!(!read, "{method} {path} writes");
    }
    let same_repo = |r: &Repository| assert_eq!(call.repository.as_ref(), Some(r));
    match endpoint {
        Endpoint::Base | Endpoint::Catalog(_) => assert!(call.repository.is_none()),
        Endpoint::Tags(r, _) => same_repo(r),
        Endpoint::GetManifest {
            repository,
            reference,
            ..
        } => {
            same_repo(repository);
            check_reference(reference);
        }
        Endpoint::PutManifest(r, reference) | Endpoint::DeleteManifest(r, reference) => {
            same_repo(r);
            check_reference(reference);
            assert!(path.ends_with(&reference.to_string()));
        }
        Endpoint::GetBlob {
            repository, digest, ..
        } => {
            same_repo(repository);
            assert!(path.ends_with(&digest.to_string()));
        }
        Endpoint::DeleteBlob(r, d) => {
            same_repo(r);
            assert!(path.ends_with(&d.to_string()));
        }
        Endpoint::StartUpload {
            repository, mount, ..
        } => {
            same_repo(repository);
            if let Some((_, from)) = mount {
                check_repository(from.as_str());
            }
        }
        Endpoint::UploadStatus(u)
        | Endpoint::PatchUpload(u)
        | Endpoint::FinishUpload(u, _)
        | Endpoint::CancelUpload(u) => {
            same_repo(&u.repository);
            assert!(!u.id.is_empty() && !u.id.contains('/'));
        }
        Endpoint::Referrers {
            repository, digest, ..
        } => {
            same_repo(repository);
            assert!(path.ends_with(&digest.to_string()));
        }
    }
}

/// A blob size in decimal on the first line, then a header value: parsed as the
/// `Range` of a blob GET and as the `Content-Range` of an upload chunk.
pub fn range(data: &[u8]) {
    let (first, value) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (&b""[..], data),
    };
    let size = std::str::from_utf8(first)
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(1 << 20);
    // Only what hyper would hand over as a header value.
    let Ok(header) = HeaderValue::from_bytes(value) else {
        return;
    };
    if let Ok(Some((start, end))) = api::parse_range(Some(&header), size) {
        assert!(start < end && end <= size, "{start}..{end} of {size}");
    }
    if let Ok(v) = header.to_str() {
        if let Some((start, len)) = api::parse_content_range(v) {
            // A chunk holds at least one byte and its last byte is addressable.
            assert!(len >= 1);
            assert!(start.checked_add(len - 1).is_some());
        }
    }
}

/// A manifest: the raw JSON (content type unknown, as when read from storage), or a
/// Content-Type on the first line and the body after it (as a PUT).
///
/// Whatever `manifest::parse` accepts, the collector's reader must read too and
/// reference at least the same blobs, children and subject, or a collection would
/// delete what a pushed manifest needs.
pub fn manifest(data: &[u8]) {
    let (content_type, body) = if data.first() == Some(&b'{') {
        (None, data)
    } else {
        match data.iter().position(|&b| b == b'\n') {
            Some(i) => (std::str::from_utf8(&data[..i]).ok(), &data[i + 1..]),
            None => (None, data),
        }
    };
    let refs = gc::references(body);
    let Ok(m) = manifest::parse(content_type, body) else {
        return;
    };
    let refs = refs.expect("a manifest that parses is unreadable to the collector");
    for b in &m.blobs {
        assert!(refs.blobs.contains(b), "collector misses blob {b}");
    }
    for c in &m.manifests {
        assert!(refs.children.contains(c), "collector misses child {c}");
    }
    assert_eq!(m.subject, refs.subject);
    for d in m.blobs.iter().chain(&m.manifests).chain(&m.subject) {
        assert_eq!(Digest::parse(&d.to_string()).as_ref(), Ok(d));
    }
    // Read back from storage (no Content-Type), a manifest whose type it names itself
    // must reference the same blobs and children.
    if let Ok(again) = manifest::parse(None, body) {
        if again.media_type == m.media_type {
            assert_eq!(again.blobs, m.blobs);
            assert_eq!(again.manifests, m.manifests);
            assert_eq!(again.subject, m.subject);
        }
    }
}
