//! Apache htpasswd files: parsing, verification (bcrypt, apr1, {SHA}) and editing.
//!
//! The parser follows what Apache's `mod_authn_file` and nginx's `auth_basic`
//! actually do with a file, so that a file which works behind nginx works here
//! too, and anything they would silently misread is reported as a
//! [`LineProblem`] instead:
//!
//! * lines are split on `'\n'` with an optional trailing `'\r'`; blank lines and
//!   lines whose first non-blank character is `#` are comments;
//! * `user:hash` is split at the first `':'`, and the hash ends at the next
//!   `':'`. Anything after that is ignored, because both servers stop reading
//!   the hash there (Apache via `ap_getword(.., ':')`, nginx's state machine
//!   ends the password field on `':'`), and old tooling wrote
//!   `user:hash:comment` or `/etc/passwd`-style extra fields;
//! * the first line for a user wins, as in both servers; later ones are
//!   reported as duplicates.
//!
//! Supported hashes are what `htpasswd` writes by default or with `-B`/`-s`,
//! plus `openssl passwd -1` output: bcrypt (`$2y$`, `$2a$`, `$2b$`), Apache
//! MD5 (`$apr1$`), MD5-crypt (`$1$`) and unsalted SHA-1 (`{SHA}`). Everything
//! else is rejected: crypt(3) DES only looks at 8 characters of the password,
//! plaintext needs no comment, and the rest (SHA-crypt, yescrypt, Argon2)
//! reach Apache and nginx only through the host's `crypt()`, so whether they
//! work depends on the platform.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::path::Path;

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::engine::DecodePaddingMode;
use base64::{alphabet, Engine as _};
use md5::{Digest as _, Md5};
use sha1::Sha1;

/// A supported password hash format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// bcrypt (`$2y$`, `$2a$` or `$2b$`) with its cost factor (log2 of the rounds).
    Bcrypt {
        /// Cost factor parsed from the hash, 4..=31.
        cost: u32,
    },
    /// Apache's MD5 variant, `$apr1$salt$digest` (what `htpasswd -m` writes).
    Apr1,
    /// FreeBSD/glibc MD5-crypt, `$1$salt$digest` (nginx accepts it through `crypt()`).
    Md5Crypt,
    /// `{SHA}` followed by base64 of the unsalted SHA-1 of the password.
    Sha1,
}

impl Scheme {
    /// Whether the scheme is too cheap to resist offline guessing if the file
    /// leaks; callers can use this to nudge operators towards bcrypt.
    pub fn is_weak(&self) -> bool {
        !matches!(self, Scheme::Bcrypt { .. })
    }

    /// Short lowercase name, for metric labels.
    pub fn label(&self) -> &'static str {
        match self {
            Scheme::Bcrypt { .. } => "bcrypt",
            Scheme::Apr1 => "apr1",
            Scheme::Md5Crypt => "md5crypt",
            Scheme::Sha1 => "sha1",
        }
    }

    /// Relative cost of one verification, used to pick the decoy hash for
    /// unknown users. bcrypt doubles its work per cost step and is far more
    /// expensive than 1000 MD5 rounds at any cost.
    fn work(&self) -> u32 {
        match self {
            Scheme::Sha1 => 0,
            Scheme::Apr1 | Scheme::Md5Crypt => 1,
            Scheme::Bcrypt { cost } => 2 + cost,
        }
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scheme::Bcrypt { cost } => write!(f, "bcrypt (cost {cost})"),
            Scheme::Apr1 => f.write_str("apr1 (Apache MD5)"),
            Scheme::Md5Crypt => f.write_str("MD5-crypt ($1$)"),
            Scheme::Sha1 => f.write_str("{SHA} (unsalted SHA-1)"),
        }
    }
}

/// A line of an htpasswd file that could not be used.
///
/// The message names the user when there is one, but never contains the hash
/// or any password, so it is safe to log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineProblem {
    /// 1-based line number.
    pub line: usize,
    /// Human-readable description, e.g. `user "bob": unsupported password hash
    /// format (crypt DES); use bcrypt (htpasswd -B)`.
    pub message: String,
}

impl fmt::Display for LineProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

/// A stored hash. Its `Debug` output is redacted because hashes of weak
/// schemes are as good as passwords once they end up in a log.
#[derive(Clone)]
struct StoredHash(String);

impl fmt::Debug for StoredHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StoredHash(<redacted>)")
    }
}

#[derive(Debug, Clone)]
struct Entry {
    user: String,
    hash: StoredHash,
    scheme: Scheme,
    /// 1-based line number, for messages about the entry.
    line: usize,
}

/// First definition of a user name. `entry` is `None` when that definition is
/// unusable: the user must then stay locked out rather than fall through to a
/// later line, because nginx and Apache would also stop at the first one.
#[derive(Debug, Clone, Copy)]
struct FirstSeen {
    line: usize,
    entry: Option<usize>,
}

/// A parsed htpasswd file.
#[derive(Debug, Clone)]
pub struct Htpasswd {
    entries: Vec<Entry>,
    index: HashMap<String, FirstSeen>,
    problems: Vec<LineProblem>,
    /// Entry whose hash is checked (and the result discarded) for unknown
    /// users, so that a wrong user name costs as much as a wrong password.
    decoy: Option<usize>,
}

impl Htpasswd {
    /// Parse file text. Bad lines are recorded as problems; every good line still loads.
    pub fn parse(text: &str) -> Htpasswd {
        let mut entries: Vec<Entry> = Vec::new();
        let mut index: HashMap<String, FirstSeen> = HashMap::new();
        let mut problems = Vec::new();

        for (i, raw) in text.split('\n').enumerate() {
            let line_no = i + 1;
            let line = raw.strip_suffix('\r').unwrap_or(raw);
            if is_comment_or_blank(line) {
                continue;
            }
            let mut problem = |message: String| {
                problems.push(LineProblem {
                    line: line_no,
                    message,
                })
            };
            if line_no == 1 && line.starts_with('\u{feff}') {
                // Neither server strips a BOM, so it silently becomes part of
                // the first user name; loading it as-is keeps us consistent.
                problem(
                    "file starts with a UTF-8 byte order mark, which becomes part of the \
                     first user name; save the file without it"
                        .to_string(),
                );
            }
            let Some((user, rest)) = line.split_once(':') else {
                problem("no ':' between user name and password hash".to_string());
                continue;
            };
            let hash = rest.split_once(':').map_or(rest, |(hash, _)| hash);
            if user.is_empty() {
                problem("empty user name".to_string());
                continue;
            }
            if user.trim() != user {
                // Apache trims the line, nginx does not: the servers disagree
                // on who this user is, so refuse to guess.
                problem(format!(
                    "user {user:?}: user name has leading or trailing whitespace"
                ));
                continue;
            }
            if let Some(first) = index.get(user) {
                let message = if first.entry.is_some() {
                    format!(
                        "user {user:?}: duplicate user, first definition on line {} is used",
                        first.line
                    )
                } else {
                    format!(
                        "user {user:?}: duplicate user ignored; the first definition on line {} \
                         takes precedence and is unusable, so the user cannot log in",
                        first.line
                    )
                };
                problem(message);
                continue;
            }
            let checked = if hash.is_empty() {
                Err("empty password hash".to_string())
            } else if hash.trim() != hash {
                Err("password hash has leading or trailing whitespace".to_string())
            } else {
                classify(hash).map_err(|e| e.to_string())
            };
            let entry = match checked {
                Ok(scheme) => {
                    entries.push(Entry {
                        user: user.to_string(),
                        hash: StoredHash(hash.to_string()),
                        scheme,
                        line: line_no,
                    });
                    Some(entries.len() - 1)
                }
                Err(message) => {
                    problem(format!("user {user:?}: {message}"));
                    None
                }
            };
            index.insert(
                user.to_string(),
                FirstSeen {
                    line: line_no,
                    entry,
                },
            );
        }

        // The most expensive hash in the file: an unknown user must never be
        // answered faster than any real one.
        let decoy = entries
            .iter()
            .enumerate()
            .max_by_key(|(_, e)| e.scheme.work())
            .map(|(i, _)| i);

        Htpasswd {
            entries,
            index,
            problems,
            decoy,
        }
    }

    /// Read and parse a file.
    pub fn load(path: &Path) -> io::Result<Htpasswd> {
        let bytes = std::fs::read(path)?;
        let text = String::from_utf8(bytes).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: htpasswd file is not valid UTF-8", path.display()),
            )
        })?;
        Ok(Self::parse(&text))
    }

    /// The loaded entry of `user` (its first line, as Apache uses), if usable.
    fn entry(&self, user: &str) -> Option<&Entry> {
        self.index
            .get(user)
            .and_then(|first| first.entry)
            .and_then(|i| self.entries.get(i))
    }

    /// `true` if `user` exists and `password` matches its hash.
    ///
    /// An unknown user costs the same as a known user with a wrong password:
    /// the password is checked against the file's most expensive hash and the
    /// result thrown away, so response times do not reveal which names exist.
    pub fn verify(&self, user: &str, password: &str) -> bool {
        match self.entry(user) {
            Some(entry) => verify_hash(&entry.hash.0, password).unwrap_or(false),
            None => {
                if let Some(decoy) = self.decoy.and_then(|i| self.entries.get(i)) {
                    // black_box keeps the optimiser from discarding the
                    // otherwise unused (and side-effect free) computation.
                    std::hint::black_box(verify_hash(&decoy.hash.0, password).ok());
                }
                false
            }
        }
    }

    /// Check a password without a decoy: an unknown user costs nothing here, because
    /// the server hides the difference by padding every failure to the same duration
    /// (see `auth::Authenticator`) instead of burning a hash. `hashed` says which
    /// scheme was computed, if any, so callers can count real work.
    pub fn check(&self, user: &str, password: &str) -> Checked {
        match self.entry(user) {
            Some(entry) if password.len() <= MAX_PASSWORD_BYTES => Checked {
                matched: verify_hash(&entry.hash.0, password).unwrap_or(false),
                hashed: Some(entry.scheme),
            },
            _ => Checked {
                matched: false,
                hashed: None,
            },
        }
    }

    /// Whether the file names `user` (even on an unusable line): such a name may be
    /// logged, while an unknown one could be a mistyped password and must not be.
    pub fn contains(&self, user: &str) -> bool {
        self.index.contains_key(user)
    }

    /// How long one check of the file's most expensive hash takes on this host
    /// right now (zero for an empty file). The hash is of a fixed non-password, so
    /// the result is thrown away.
    pub fn calibrate(&self) -> std::time::Duration {
        let Some(decoy) = self.decoy.and_then(|i| self.entries.get(i)) else {
            return std::time::Duration::ZERO;
        };
        let started = std::time::Instant::now();
        std::hint::black_box(verify_hash(&decoy.hash.0, "calibration").ok());
        started.elapsed()
    }

    /// The scheme of the most expensive hash in the file.
    pub fn costliest(&self) -> Option<Scheme> {
        self.decoy
            .and_then(|i| self.entries.get(i))
            .map(|e| e.scheme)
    }

    /// Loaded entries whose scheme is weak ([`Scheme::is_weak`]), in file order.
    pub fn weak_entries(&self) -> Vec<WeakEntry<'_>> {
        self.entries
            .iter()
            .filter(|e| e.scheme.is_weak())
            .map(|e| WeakEntry {
                line: e.line,
                user: &e.user,
                scheme: e.scheme,
            })
            .collect()
    }

    /// Loaded user names, in file order.
    pub fn users(&self) -> Vec<&str> {
        self.entries.iter().map(|e| e.user.as_str()).collect()
    }

    /// The hash scheme of a loaded user.
    pub fn scheme(&self, user: &str) -> Option<Scheme> {
        let i = self.index.get(user)?.entry?;
        self.entries.get(i).map(|e| e.scheme)
    }

    /// Lines that could not be used, in file order.
    pub fn problems(&self) -> &[LineProblem] {
        &self.problems
    }

    /// Number of loaded users.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no user could be loaded.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// The result of [`Htpasswd::check`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checked {
    /// The user exists, is usable and the password matched.
    pub matched: bool,
    /// The scheme whose hash was computed; `None` when nothing was hashed
    /// (unknown or unusable user, oversized password).
    pub hashed: Option<Scheme>,
}

/// A loaded user whose hash is cheap to guess (apr1, MD5-crypt, {SHA}).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WeakEntry<'a> {
    /// 1-based line number.
    pub line: usize,
    pub user: &'a str,
    pub scheme: Scheme,
}

impl fmt::Display for WeakEntry<'_> {
    /// The advice `check` prints and the server logs: the name is escaped (it comes
    /// from the file and may hold control characters), the hash never appears.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let user = crate::access::Escaped(self.user);
        write!(
            f,
            "line {}: user \"{user}\": {} is a weak password hash, fast to guess if the \
             file leaks; rehash with: portcullis passwd add {user}",
            self.line, self.scheme
        )
    }
}

/// Why a hash cannot be used. Never carries the hash itself.
#[derive(Debug, Clone, PartialEq, Eq)]
enum HashError {
    /// A format we deliberately do not support.
    Unsupported(&'static str),
    /// A supported format with a broken body.
    Malformed(&'static str, &'static str),
}

impl fmt::Display for HashError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HashError::Unsupported(what) => write!(
                f,
                "unsupported password hash format ({what}); use bcrypt (htpasswd -B)"
            ),
            HashError::Malformed(scheme, why) => write!(
                f,
                "malformed {scheme} hash ({why}); regenerate it with htpasswd -B"
            ),
        }
    }
}

/// The alphabet of crypt(3)'s base64 ("./0-9A-Za-z"); bcrypt uses the same
/// characters in a different order, so one membership test serves both.
fn is_crypt64(b: u8) -> bool {
    b == b'.' || b == b'/' || b.is_ascii_alphanumeric()
}

const CRYPT64: &[u8; 64] = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Longest password that is ever hashed; see [`verify_hash`].
const MAX_PASSWORD_BYTES: usize = 4096;

/// `$2y$` (crypt_blowfish, PHP, htpasswd) and `$2b$` (OpenBSD, libxcrypt) are
/// the same algorithm. `$2a$` only differs through crypt_blowfish's
/// countermeasure against its old sign-extension bug, which can only change
/// the result for passwords containing the byte 0xFF; that byte never occurs
/// in UTF-8, so for `&str` passwords all three agree. `$2x$` marks hashes made
/// with the bug itself and would verify differently, so it is rejected.
const BCRYPT_PREFIXES: [&str; 3] = ["$2y$", "$2a$", "$2b$"];

/// Real bcrypt implementations ignore the unused low bits of the last salt
/// and digest characters; the strict default engine would reject such hashes.
const BCRYPT_B64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::BCRYPT,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_allow_trailing_bits(true)
        .with_decode_padding_mode(DecodePaddingMode::RequireNone),
);

/// Fully validate a hash and name its scheme, so that a file's problems are
/// all reported at load time rather than at the first login attempt.
fn classify(hash: &str) -> Result<Scheme, HashError> {
    if BCRYPT_PREFIXES.iter().any(|p| hash.starts_with(p)) {
        return classify_bcrypt(hash);
    }
    if let Some(rest) = hash.strip_prefix("$apr1$") {
        return split_md5_crypt(rest, "apr1").map(|_| Scheme::Apr1);
    }
    if let Some(rest) = hash.strip_prefix("$1$") {
        return split_md5_crypt(rest, "MD5-crypt").map(|_| Scheme::Md5Crypt);
    }
    if let Some(rest) = hash.strip_prefix("{SHA}") {
        return match STANDARD.decode(rest) {
            Ok(digest) if digest.len() == 20 => Ok(Scheme::Sha1),
            _ => Err(HashError::Malformed(
                "{SHA}",
                "expected base64 of a 20-byte SHA-1 digest",
            )),
        };
    }
    Err(HashError::Unsupported(unsupported_kind(hash)))
}

fn classify_bcrypt(hash: &str) -> Result<Scheme, HashError> {
    const SCHEME: &str = "bcrypt";
    let bytes = hash.as_bytes();
    if bytes.len() != 60 {
        return Err(HashError::Malformed(SCHEME, "expected 60 characters"));
    }
    let cost = match (bytes[4], bytes[5], bytes[6]) {
        (tens @ b'0'..=b'9', units @ b'0'..=b'9', b'$') => {
            u32::from(tens - b'0') * 10 + u32::from(units - b'0')
        }
        _ => return Err(HashError::Malformed(SCHEME, "cost must be two digits")),
    };
    if !(4..=31).contains(&cost) {
        return Err(HashError::Malformed(
            SCHEME,
            "cost must be between 04 and 31",
        ));
    }
    if !bytes[7..].iter().copied().all(is_crypt64) {
        return Err(HashError::Malformed(
            SCHEME,
            "salt and digest must use the characters ./0-9A-Za-z",
        ));
    }
    Ok(Scheme::Bcrypt { cost })
}

/// Split the part after the magic of an MD5-crypt hash into salt and digest.
fn split_md5_crypt<'a>(
    rest: &'a str,
    scheme: &'static str,
) -> Result<(&'a str, &'a str), HashError> {
    let Some((salt, digest)) = rest.split_once('$') else {
        return Err(HashError::Malformed(scheme, "missing '$' after the salt"));
    };
    // Both Apache and glibc cut the salt at 8 bytes, so a longer one could
    // never reproduce the stored string.
    if salt.len() > 8 {
        return Err(HashError::Malformed(
            scheme,
            "salt longer than 8 characters",
        ));
    }
    if digest.len() != 22 || !digest.bytes().all(is_crypt64) {
        return Err(HashError::Malformed(
            scheme,
            "digest must be 22 characters of ./0-9A-Za-z",
        ));
    }
    Ok((salt, digest))
}

/// Name an unsupported format precisely enough for the operator to see what
/// produced it.
fn unsupported_kind(hash: &str) -> &'static str {
    const PREFIXES: [(&str, &str); 12] = [
        (
            "$2x$",
            "bcrypt $2x$, the marker for hashes from the buggy pre-2011 crypt_blowfish",
        ),
        ("$2$", "original bcrypt $2$"),
        ("$5$", "SHA-256 crypt"),
        ("$6$", "SHA-512 crypt"),
        ("$y$", "yescrypt"),
        ("$gy$", "gost-yescrypt"),
        ("$7$", "scrypt"),
        ("$argon2", "Argon2"),
        ("$md5", "Sun MD5 crypt"),
        ("$sha1$", "NetBSD SHA-1 crypt"),
        ("{SSHA}", "salted SHA-1"),
        ("{PLAIN}", "{PLAIN} plaintext"),
    ];
    if let Some((_, kind)) = PREFIXES.iter().find(|(p, _)| hash.starts_with(p)) {
        return kind;
    }
    let bytes = hash.as_bytes();
    if bytes.len() == 13 && bytes.iter().copied().all(is_crypt64) {
        return "crypt DES";
    }
    if bytes.len() == 20 && bytes[0] == b'_' && bytes[1..].iter().copied().all(is_crypt64) {
        return "BSDi extended DES";
    }
    if hash.starts_with('$') {
        return "unknown crypt scheme";
    }
    "unrecognised, possibly a plaintext password"
}

/// Verify one password against one stored hash string. `Err(message)` if the
/// hash format is unsupported or malformed.
///
/// The message never contains the hash or the password. Passwords longer
/// than 4096 bytes never match.
pub fn verify_hash(hash: &str, password: &str) -> Result<bool, String> {
    let scheme = classify(hash).map_err(|e| e.to_string())?;
    // MD5-crypt hashes the password ~3000 times, so a huge one would be a
    // cheap way to burn CPU. No real password is this long (htpasswd itself
    // refuses more than 256 bytes), and rejecting before any hashing takes the same
    // time for known and unknown users.
    if password.len() > MAX_PASSWORD_BYTES {
        return Ok(false);
    }
    #[cfg(test)]
    tests::count_hash_run();
    let pw = password.as_bytes();
    match scheme {
        Scheme::Bcrypt { cost } => verify_bcrypt(hash, cost, pw),
        Scheme::Apr1 | Scheme::Md5Crypt => {
            let (magic, rest) = if scheme == Scheme::Apr1 {
                ("$apr1$", &hash[6..])
            } else {
                ("$1$", &hash[3..])
            };
            let (salt, digest) = split_md5_crypt(rest, "MD5").map_err(|e| e.to_string())?;
            let computed = md5_crypt(pw, salt.as_bytes(), magic.as_bytes());
            Ok(ct_eq(&computed, digest.as_bytes()))
        }
        Scheme::Sha1 => {
            let stored = STANDARD
                .decode(&hash[5..])
                .map_err(|_| "malformed {SHA} hash".to_string())?;
            Ok(ct_eq(&Sha1::digest(pw), &stored))
        }
    }
}

/// bcrypt through the crate's salted hash rather than `bcrypt::verify`, so
/// that the lenient decoding above applies and the comparison is our own
/// constant-time one.
fn verify_bcrypt(hash: &str, cost: u32, password: &[u8]) -> Result<bool, String> {
    let malformed = || HashError::Malformed("bcrypt", "undecodable salt or digest").to_string();
    // Layout (validated by classify): "$2y$NN$" + 22 salt chars + 31 digest chars.
    let salt: [u8; 16] = BCRYPT_B64
        .decode(&hash[7..29])
        .ok()
        .and_then(|s| s.try_into().ok())
        .ok_or_else(malformed)?;
    let stored = BCRYPT_B64.decode(&hash[29..]).map_err(|_| malformed())?;
    let computed = bcrypt::hash_with_salt(password, cost, salt)
        .map_err(|e| format!("bcrypt failed: {e}"))?
        .format_for_version(bcrypt::Version::TwoY);
    let computed = computed
        .get(29..)
        .and_then(|d| BCRYPT_B64.decode(d).ok())
        .ok_or_else(|| "bcrypt produced an unexpected hash layout".to_string())?;
    Ok(ct_eq(&computed, &stored))
}

/// The FreeBSD/Apache MD5-crypt algorithm (`$1$` and `$apr1$` differ only in
/// the magic string), returning the 22-character encoded digest.
fn md5_crypt(password: &[u8], salt: &[u8], magic: &[u8]) -> [u8; 22] {
    let alternate = Md5::new()
        .chain_update(password)
        .chain_update(salt)
        .chain_update(password)
        .finalize();

    let mut ctx = Md5::new()
        .chain_update(password)
        .chain_update(magic)
        .chain_update(salt);
    for chunk in password.chunks(16) {
        ctx.update(&alternate[..chunk.len()]);
    }
    // The original code hashes a byte of a zeroed buffer for each set bit of
    // the length and the password's first byte for each clear bit.
    let mut bits = password.len();
    while bits != 0 {
        if bits & 1 == 1 {
            ctx.update([0u8]);
        } else {
            ctx.update(&password[..1]);
        }
        bits >>= 1;
    }
    let mut digest = ctx.finalize();

    // Deliberate slowdown from the original design.
    for round in 0..1000 {
        let mut ctx = Md5::new();
        if round % 2 == 1 {
            ctx.update(password);
        } else {
            ctx.update(digest);
        }
        if round % 3 != 0 {
            ctx.update(salt);
        }
        if round % 7 != 0 {
            ctx.update(password);
        }
        if round % 2 == 1 {
            ctx.update(digest);
        } else {
            ctx.update(password);
        }
        digest = ctx.finalize();
    }

    // crypt's own byte shuffle and little-endian base64.
    let d = digest;
    let groups = [
        (d[0], d[6], d[12]),
        (d[1], d[7], d[13]),
        (d[2], d[8], d[14]),
        (d[3], d[9], d[15]),
        (d[4], d[10], d[5]),
    ];
    let mut out = [0u8; 22];
    for (i, &(a, b, c)) in groups.iter().enumerate() {
        let v = (u32::from(a) << 16) | (u32::from(b) << 8) | u32::from(c);
        encode_crypt64(v, &mut out[i * 4..i * 4 + 4]);
    }
    encode_crypt64(u32::from(d[11]), &mut out[20..22]);
    out
}

fn encode_crypt64(mut v: u32, out: &mut [u8]) {
    for slot in out {
        *slot = CRYPT64[(v & 0x3f) as usize];
        v >>= 6;
    }
}

/// Equality whose running time depends only on the lengths, which are fixed
/// per scheme and therefore public. (The registry compares upload tokens with it too.)
pub(crate) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// Recognise a hash's scheme (None = unsupported).
///
/// A hash of a supported scheme that is malformed also yields `None`.
pub fn scheme_of(hash: &str) -> Option<Scheme> {
    classify(hash).ok()
}

/// New bcrypt hash with "$2y$" prefix (what `htpasswd -B` writes), cost 4..=31.
///
/// Refuses passwords that bcrypt cannot represent faithfully: longer than 72
/// bytes (the rest would be silently ignored) or containing NUL (C
/// implementations such as nginx's `crypt()` stop there, so the hash would not
/// verify elsewhere).
pub fn hash_bcrypt(password: &str, cost: u32) -> Result<String, String> {
    if !(4..=31).contains(&cost) {
        return Err(format!("bcrypt cost must be between 4 and 31, not {cost}"));
    }
    if password.len() > 72 {
        return Err(
            "password is longer than 72 bytes; bcrypt would ignore everything after that"
                .to_string(),
        );
    }
    if password.contains('\0') {
        return Err("password must not contain NUL characters".to_string());
    }
    bcrypt::hash_with_result(password, cost)
        .map(|parts| parts.format_for_version(bcrypt::Version::TwoY))
        .map_err(|e| format!("bcrypt failed: {e}"))
}

fn is_comment_or_blank(line: &str) -> bool {
    let trimmed = line.trim_start();
    trimmed.is_empty() || trimmed.starts_with('#')
}

/// The user a raw line (possibly with its line ending) defines, using the
/// same rules as [`Htpasswd::parse`].
fn line_user(segment: &str) -> Option<&str> {
    let line = segment.strip_suffix('\n').unwrap_or(segment);
    let line = line.strip_suffix('\r').unwrap_or(line);
    if is_comment_or_blank(line) {
        return None;
    }
    line.split_once(':').map(|(user, _)| user)
}

/// Return new file text with `user`'s line replaced (or appended) by
/// `user:hash`; every other line (including comments, blank lines and bad
/// lines) is kept byte for byte, and the text ends with a newline.
///
/// Later duplicate lines for `user` are dropped: they were already ignored,
/// and keeping a stale second hash around only invites confusion. The
/// replacement keeps the replaced line's ending; an appended line uses the
/// file's first line ending (`\r\n` or `\n`). Callers must pass a user
/// name checked with [`valid_user_name`] (when adding) and a hash from
/// [`hash_bcrypt`]; a newline in either would inject lines.
pub fn upsert(text: &str, user: &str, hash: &str) -> String {
    // Not valid_user_name: updating a legacy name that predates its rules is fine.
    debug_assert!(
        !user.is_empty() && !user.contains([':', '\n', '\r']),
        "user must be a single non-empty field"
    );
    debug_assert!(
        !hash.contains([':', '\n', '\r']),
        "hash must be a single field"
    );
    let eol = match text.find('\n') {
        Some(i) if text[..i].ends_with('\r') => "\r\n",
        _ => "\n",
    };
    let mut out = String::with_capacity(text.len() + user.len() + hash.len() + 3);
    let mut done = false;
    for segment in text.split_inclusive('\n') {
        if line_user(segment) != Some(user) {
            out.push_str(segment);
            continue;
        }
        if !done {
            out.push_str(user);
            out.push(':');
            out.push_str(hash);
            out.push_str(if segment.ends_with("\r\n") {
                "\r\n"
            } else {
                eol
            });
            done = true;
        }
    }
    if !out.is_empty() && !out.ends_with('\n') {
        out.push_str(eol);
    }
    if !done {
        out.push_str(user);
        out.push(':');
        out.push_str(hash);
        out.push_str(eol);
    }
    out
}

/// Return new file text without `user`'s line(s), and whether one was removed.
///
/// Every other line is kept byte for byte.
pub fn remove(text: &str, user: &str) -> (String, bool) {
    if user.is_empty() {
        return (text.to_string(), false);
    }
    let mut out = String::with_capacity(text.len());
    let mut removed = false;
    for segment in text.split_inclusive('\n') {
        if line_user(segment) == Some(user) {
            removed = true;
        } else {
            out.push_str(segment);
        }
    }
    (out, removed)
}

/// Validate a user name for adding: non-empty, no `':'`, no whitespace or
/// control characters, at most 255 bytes.
///
/// A leading `#` is refused as well, since the line would read as a comment.
pub fn valid_user_name(user: &str) -> Result<(), String> {
    if user.is_empty() {
        return Err("user name is empty".to_string());
    }
    if user.len() > 255 {
        return Err("user name is longer than 255 bytes".to_string());
    }
    if user.contains(':') {
        return Err("user name must not contain ':'".to_string());
    }
    if user.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("user name must not contain whitespace or control characters".to_string());
    }
    if user.starts_with('#') {
        return Err("user name must not start with '#' (the line would be a comment)".to_string());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    const VECTORS: &str = include_str!("../../tests/data/htpasswd/vectors.htpasswd");
    const PASSWORDS: &str = include_str!("../../tests/data/htpasswd/passwords.txt");
    const UNSUPPORTED: &str = include_str!("../../tests/data/htpasswd/unsupported.htpasswd");

    thread_local! {
        // Per thread, so parallel tests do not see each other's hashing.
        static HASH_RUNS: Cell<usize> = const { Cell::new(0) };
    }

    pub(super) fn count_hash_run() {
        HASH_RUNS.with(|c| c.set(c.get() + 1));
    }

    fn hash_runs() -> usize {
        HASH_RUNS.with(Cell::get)
    }

    /// (user, password) pairs from passwords.txt.
    fn passwords() -> Vec<(&'static str, &'static str)> {
        PASSWORDS
            .lines()
            .filter(|l| !l.is_empty())
            .map(|l| {
                l.split_once('\t')
                    .expect("passwords.txt line without a tab")
            })
            .collect()
    }

    #[test]
    fn fixture_vectors_verify() {
        let h = Htpasswd::parse(VECTORS);
        assert_eq!(h.problems(), &[]);
        let pairs = passwords();
        assert_eq!(h.len(), pairs.len());
        assert_eq!(
            h.users(),
            pairs.iter().map(|(u, _)| *u).collect::<Vec<_>>(),
            "users in file order"
        );
        for (user, password) in &pairs {
            assert!(h.verify(user, password), "{user} with its password");
            // Prepended, so that it also differs within bcrypt's 72 bytes.
            let wrong = format!("!{password}");
            assert!(!h.verify(user, &wrong), "{user} with a wrong password");
            if !password.is_empty() {
                assert!(!h.verify(user, ""), "{user} with an empty password");
            }
            assert!(!h.verify(&format!("{user}x"), password), "unknown user");
        }
        // Another user's (correct) password must not work.
        assert!(!h.verify("bcrypt-one", "correct horse battery staple"));
        assert!(!h.verify("apr1-plain", "x"));
    }

    #[test]
    fn fixture_schemes_and_costs() {
        let h = Htpasswd::parse(VECTORS);
        for (user, _) in passwords() {
            let expected = match user {
                "bcrypt-cost4" => Scheme::Bcrypt { cost: 4 },
                "bcrypt-cost7" => Scheme::Bcrypt { cost: 7 },
                "bcrypt-2a" => Scheme::Bcrypt { cost: 6 },
                "bcrypt-2a-utf8" => Scheme::Bcrypt { cost: 4 },
                u if u.starts_with("bcrypt-") => Scheme::Bcrypt { cost: 5 },
                u if u.starts_with("apr1-") => Scheme::Apr1,
                u if u.starts_with("sha-") => Scheme::Sha1,
                u if u.starts_with("md5-") => Scheme::Md5Crypt,
                u => panic!("unexpected fixture user {u}"),
            };
            assert_eq!(h.scheme(user), Some(expected), "{user}");
        }
        assert_eq!(h.scheme("nobody"), None);
        assert_eq!(
            h.decoy.map(|i| h.entries[i].scheme),
            Some(Scheme::Bcrypt { cost: 7 })
        );
    }

    #[test]
    fn bcrypt_truncates_at_72_bytes_but_md5_does_not() {
        let h = Htpasswd::parse(VECTORS);
        let long = passwords()
            .into_iter()
            .find(|(u, _)| *u == "bcrypt-long")
            .map(|(_, p)| p)
            .expect("bcrypt-long in passwords.txt");
        assert!(long.len() > 72);
        let same_prefix = format!("{}different tail", &long[..72]);
        assert!(h.verify("bcrypt-long", &same_prefix));
        assert!(!h.verify("bcrypt-long", &long[..71]));
        assert!(!h.verify("apr1-long", &same_prefix));
        assert!(!h.verify("md5-long", &same_prefix));
        assert!(!h.verify("sha-long", &same_prefix));
    }

    #[test]
    fn unsupported_formats_are_reported() {
        let h = Htpasswd::parse(UNSUPPORTED);
        assert_eq!(h.users(), vec!["ok"]);
        assert!(h.verify("ok", "secret"));
        let expected = [
            (2, "\"des\"", "crypt DES"),
            (3, "\"sha256\"", "SHA-256 crypt"),
            (4, "\"sha512\"", "SHA-512 crypt"),
            (5, "\"plain\"", "plaintext"),
            (6, "\"bcrypt-2x\"", "$2x$"),
        ];
        assert_eq!(h.problems().len(), expected.len(), "{:?}", h.problems());
        for (problem, (line, user, kind)) in h.problems().iter().zip(expected) {
            assert_eq!(problem.line, line);
            assert!(
                problem.message.starts_with(&format!("user {user}: ")),
                "{problem}"
            );
            assert!(problem.message.contains(kind), "{problem}");
            assert!(
                problem.message.contains("use bcrypt (htpasswd -B)"),
                "{problem}"
            );
        }
        // Messages must not leak hashes or passwords.
        for (problem, line) in h.problems().iter().zip(UNSUPPORTED.lines().skip(1)) {
            let (_, hash) = line.split_once(':').expect("fixture line");
            assert!(!problem.message.contains(hash), "{problem}");
            assert!(!problem.message.contains("secret"), "{problem}");
        }
        // A user whose line is unusable is locked out, still at full cost.
        let before = hash_runs();
        assert!(!h.verify("plain", "secret"));
        assert_eq!(hash_runs() - before, 1);
        assert_eq!(
            h.problems()[0].message,
            "user \"des\": unsupported password hash format (crypt DES); use bcrypt (htpasswd -B)"
        );
    }

    #[test]
    fn malformed_lines_are_reported_and_good_lines_load() {
        // Both hashes are of the password "x".
        let good = "$apr1$ShcGw6fg$r3./BPJyOvSJJdpsR1gFl/";
        let sha_x = "{SHA}EfatjsUqKYSrqv18O1FlA3hcIHI=";

        // Line by line: 1 comment, 2 blank, 3 good (CRLF), 4 no colon,
        // 5 empty user, 6 empty hash, 7 duplicate of the unusable line 6,
        // 8 duplicate of the good line 3, 9 whitespace only, 10 indented
        // comment, 11 good with a trailing comment field, 12 bcrypt cost 99,
        // 13 apr1 salt too long, 14 leading space in the user name,
        // 15 trailing space after the hash, 16 short bcrypt, 17 bad {SHA},
        // 18 good.
        let text = [
            "# comment".to_string(),
            String::new(),
            format!("alice:{good}\r"),
            "no colon here".to_string(),
            format!(":{good}"),
            "bob:".to_string(),
            format!("bob:{good}"),
            format!("alice:{sha_x}"),
            "   \t".to_string(),
            "  # indented comment".to_string(),
            format!("carol:{sha_x}:Carol Smith, room 12"),
            format!("dave:$2y$99${}", "a".repeat(53)),
            "erin:$apr1$toolongsalt$r3./BPJyOvSJJdpsR1gFl/".to_string(),
            format!(" frank:{good}"),
            format!("gina:{good} "),
            "hank:$2y$05$short".to_string(),
            "ivan:{SHA}not base64!".to_string(),
            format!("judy:{good}"),
        ]
        .join("\n");
        let h = Htpasswd::parse(&text);
        assert_eq!(h.users(), vec!["alice", "carol", "judy"]);
        assert!(h.verify("alice", "x"));
        assert!(h.verify("carol", "x"));
        assert!(h.verify("judy", "x"));
        assert!(!h.verify("bob", "x"));
        assert_eq!(h.scheme("bob"), None);
        let lines: Vec<usize> = h.problems().iter().map(|p| p.line).collect();
        assert_eq!(lines, vec![4, 5, 6, 7, 8, 12, 13, 14, 15, 16, 17]);
        let messages: Vec<&str> = h.problems().iter().map(|p| p.message.as_str()).collect();
        assert_eq!(messages[0], "no ':' between user name and password hash");
        assert_eq!(messages[1], "empty user name");
        assert_eq!(messages[2], "user \"bob\": empty password hash");
        assert!(messages[3].contains("first definition on line 6 takes precedence"));
        assert_eq!(
            messages[4],
            "user \"alice\": duplicate user, first definition on line 3 is used"
        );
        assert!(messages[5].contains("cost must be between 04 and 31"));
        assert!(messages[6].contains("salt longer than 8"));
        assert!(messages[7].contains("leading or trailing whitespace"));
        assert!(messages[8].contains("leading or trailing whitespace"));
        assert!(messages[9].contains("expected 60 characters"));
        assert!(messages[10].contains("malformed {SHA} hash"));
        for m in &messages {
            assert!(!m.contains("r3./BPJ") && !m.contains("Efatj"), "{m}");
        }
    }

    #[test]
    fn empty_and_comment_only_files() {
        for text in ["", "\n", "# nothing\n\n", "\r\n"] {
            let h = Htpasswd::parse(text);
            assert!(h.is_empty());
            assert_eq!(h.problems(), &[]);
            assert!(!h.verify("anyone", ""));
        }
    }

    #[test]
    fn unknown_user_runs_one_hash_like_a_wrong_password() {
        let h = Htpasswd::parse(VECTORS);
        let before = hash_runs();
        assert!(!h.verify("bcrypt-cost7", "wrong"));
        assert_eq!(hash_runs() - before, 1);

        let before = hash_runs();
        assert!(!h.verify("nobody", "wrong"));
        assert_eq!(hash_runs() - before, 1);

        // The decoy is the most expensive hash, so unknown users are never cheaper.
        let decoy = h.decoy.and_then(|i| h.entries.get(i)).expect("decoy");
        assert_eq!(decoy.scheme, Scheme::Bcrypt { cost: 7 });
        // Even the decoy's own password does not let an unknown user in.
        assert!(!h.verify("nobody", "seven"));

        // Oversized passwords are refused before any hashing, for everyone.
        let huge = "x".repeat(MAX_PASSWORD_BYTES + 1);
        let before = hash_runs();
        assert!(!h.verify("apr1-one", &huge));
        assert!(!h.verify("nobody", &huge));
        assert_eq!(hash_runs(), before);
        assert_eq!(
            verify_hash("{SHA}2jmj7l5rSw0yVb/vlWAYkK/YBwk=", &huge),
            Ok(false)
        );
    }

    #[test]
    fn check_hashes_only_known_users_and_names_weak_entries() {
        let h = Htpasswd::parse(VECTORS);
        let before = hash_runs();
        assert_eq!(
            h.check("nobody", "x"),
            Checked {
                matched: false,
                hashed: None
            }
        );
        assert_eq!(hash_runs(), before, "no decoy hash for an unknown user");
        for (user, password) in passwords() {
            let c = h.check(user, password);
            assert!(c.matched, "{user}");
            assert_eq!(c.hashed, h.scheme(user), "{user}");
            assert!(!h.check(user, &format!("!{password}")).matched, "{user}");
        }
        assert!(h.contains("apr1-one") && !h.contains("nobody"));

        let text =
            "a:$apr1$ShcGw6fg$r3./BPJyOvSJJdpsR1gFl/\n# c\nb:{SHA}EfatjsUqKYSrqv18O1FlA3hcIHI=\n\
                    c:$2y$04$LKnam/B0MB/FLIJveQJGh.yRi6mTLPlAUcDY9hhqBnHXpW0.5xBPm\n\
                    e\x1bvil:{SHA}EfatjsUqKYSrqv18O1FlA3hcIHI=\n";
        let h = Htpasswd::parse(text);
        let weak: Vec<String> = h.weak_entries().iter().map(ToString::to_string).collect();
        assert_eq!(weak.len(), 3, "{weak:?}");
        assert!(weak[0].starts_with("line 1: user \"a\": apr1"), "{weak:?}");
        assert!(weak[1].starts_with("line 3: user \"b\": {SHA}"), "{weak:?}");
        assert!(
            weak[2].starts_with("line 5: user \"e\\x1bvil\""),
            "escaped: {weak:?}"
        );
        for w in &weak {
            assert!(w.contains("rehash with: portcullis passwd add "), "{w}");
            assert!(!w.contains("EfatjsU") && !w.contains("r3./BPJ"), "{w}");
        }
        assert_eq!(h.costliest(), Some(Scheme::Bcrypt { cost: 4 }));
        assert!(h.calibrate() > std::time::Duration::ZERO);
    }

    #[test]
    fn verify_hash_and_scheme_of() {
        assert_eq!(
            verify_hash("$apr1$ShcGw6fg$r3./BPJyOvSJJdpsR1gFl/", "x"),
            Ok(true)
        );
        assert_eq!(
            verify_hash("$apr1$ShcGw6fg$r3./BPJyOvSJJdpsR1gFl/", "y"),
            Ok(false)
        );
        assert_eq!(
            verify_hash("{SHA}2jmj7l5rSw0yVb/vlWAYkK/YBwk=", ""),
            Ok(true)
        );
        let err = verify_hash("1pGEt75apGPoM", "secret").expect_err("DES");
        assert!(err.contains("crypt DES"));
        assert!(!err.contains("1pGEt75apGPoM"));
        assert!(verify_hash("", "x").is_err());
        assert!(verify_hash("$2y$05$", "x").is_err());

        assert_eq!(
            scheme_of("$1$ab$PWFe.4jfVLEwjtxrg4ZHB0"),
            Some(Scheme::Md5Crypt)
        );
        assert_eq!(
            scheme_of("$apr1$$QskffWo62y3Yvg7NJvtpG0"),
            Some(Scheme::Apr1)
        );
        assert_eq!(
            scheme_of("$2b$12$SsqIbIzx8EBRZHSR/wZju.C43OO4VCzJffNiWuqTArS42zcpFpIde"),
            Some(Scheme::Bcrypt { cost: 12 })
        );
        assert_eq!(
            scheme_of("$2y$3$SsqIbIzx8EBRZHSR/wZju.C43OO4VCzJffNiWuqTArS42zcpFpIde"),
            None
        );
        assert_eq!(scheme_of("$6$salt$x"), None);
        assert_eq!(scheme_of("{SHA}AAAA"), None);
        assert!(Scheme::Sha1.is_weak() && !Scheme::Bcrypt { cost: 10 }.is_weak());
    }

    #[test]
    fn bcrypt_tolerates_nonzero_trailing_bits() {
        // The last salt character of this cost-4 hash from htpasswd, with one
        // of its 4 unused low bits set ('.' -> '/' in the bcrypt alphabet),
        // must still verify, as it does with C bcrypt.
        let canonical = "$2y$04$LKnam/B0MB/FLIJveQJGh.yRi6mTLPlAUcDY9hhqBnHXpW0.5xBPm";
        assert_eq!(verify_hash(canonical, "secret"), Ok(true));
        let mut odd = canonical.to_string();
        odd.replace_range(28..29, "/");
        assert_eq!(
            BCRYPT_B64.decode(&odd[7..29]).ok(),
            BCRYPT_B64.decode(&canonical[7..29]).ok()
        );
        assert_eq!(verify_hash(&odd, "secret"), Ok(true));
    }

    #[test]
    fn hash_bcrypt_output() {
        let hash = hash_bcrypt("pa:ss wörd", 4).expect("hash");
        assert!(hash.starts_with("$2y$04$"), "{hash}");
        assert_eq!(scheme_of(&hash), Some(Scheme::Bcrypt { cost: 4 }));
        assert_eq!(verify_hash(&hash, "pa:ss wörd"), Ok(true));
        assert_eq!(verify_hash(&hash, "pa:ss word"), Ok(false));
        assert_ne!(
            hash_bcrypt("pa:ss wörd", 4).expect("hash"),
            hash,
            "random salt"
        );
        assert!(hash_bcrypt("x", 3).is_err());
        assert!(hash_bcrypt("x", 32).is_err());
        assert!(hash_bcrypt(&"x".repeat(72), 4).is_ok());
        assert!(hash_bcrypt(&"x".repeat(73), 4).is_err());
        assert!(hash_bcrypt("a\0b", 4).is_err());
    }

    #[test]
    fn upsert_replaces_in_place_and_keeps_other_bytes() {
        let text = "# users\r\n\r\nalice:{SHA}old\r\nbroken line\r\nbob:$apr1$x$y\r\nalice:dup\r\n";
        let out = upsert(text, "alice", "NEW");
        assert_eq!(
            out,
            "# users\r\n\r\nalice:NEW\r\nbroken line\r\nbob:$apr1$x$y\r\n"
        );

        let out = upsert(text, "carol", "NEW");
        assert_eq!(out, format!("{text}carol:NEW\r\n"));

        // Missing final newline is added before appending.
        assert_eq!(upsert("a:1", "b", "2"), "a:1\nb:2\n");
        assert_eq!(upsert("a:1", "a", "2"), "a:2\n");
        assert_eq!(upsert("a:1\nb:2", "a", "3"), "a:3\nb:2\n");
        assert_eq!(upsert("", "a", "1"), "a:1\n");
        // Comments that look like the user are not touched; a user with a
        // trailing comment field is.
        assert_eq!(
            upsert("#a:1\n a:2\na:3:comment\n", "a", "4"),
            "#a:1\n a:2\na:4\n"
        );
        // Prefixes of other names must not match.
        assert_eq!(upsert("ab:1\n", "a", "2"), "ab:1\na:2\n");

        let h = Htpasswd::parse(&upsert(
            VECTORS,
            "new",
            &hash_bcrypt("pw", 4).expect("hash"),
        ));
        assert!(h.verify("new", "pw"));
        assert_eq!(h.len(), passwords().len() + 1);
    }

    #[test]
    fn remove_keeps_other_bytes() {
        let text = "# c\nalice:1\n\nbob:2\r\nalice:3\nbad\ncarol:4";
        assert_eq!(
            remove(text, "alice"),
            ("# c\n\nbob:2\r\nbad\ncarol:4".to_string(), true)
        );
        assert_eq!(
            remove(text, "carol"),
            ("# c\nalice:1\n\nbob:2\r\nalice:3\nbad\n".to_string(), true)
        );
        assert_eq!(remove(text, "dave"), (text.to_string(), false));
        assert_eq!(remove(text, ""), (text.to_string(), false));
        assert_eq!(remove("bad\n", "bad"), ("bad\n".to_string(), false));

        let (out, removed) = remove(VECTORS, "apr1-one");
        assert!(removed);
        let h = Htpasswd::parse(&out);
        assert_eq!(h.problems(), &[]);
        assert!(!h.users().contains(&"apr1-one"));
        assert_eq!(h.len(), passwords().len() - 1);
    }

    #[test]
    fn user_name_validation() {
        assert!(valid_user_name("alice").is_ok());
        assert!(valid_user_name("ci-bot@example.com").is_ok());
        assert!(valid_user_name("jürgen").is_ok());
        assert!(valid_user_name(&"a".repeat(255)).is_ok());
        for bad in [
            "", "a:b", "a b", "a\tb", "a\nb", "a\u{7f}", "#root", "\u{a0}x",
        ] {
            assert!(valid_user_name(bad).is_err(), "{bad:?}");
        }
        assert!(valid_user_name(&"a".repeat(256)).is_err());
    }

    #[test]
    fn debug_output_redacts_hashes() {
        let h = Htpasswd::parse(VECTORS);
        let debug = format!("{h:?}");
        assert!(!debug.contains("$2y$"));
        assert!(!debug.contains("{SHA}"));
        assert!(debug.contains("bcrypt-one"));
    }

    #[test]
    fn constant_time_eq() {
        assert!(ct_eq(b"", b""));
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"ab"));
    }

    #[test]
    fn load_reads_files() {
        let dir = std::env::temp_dir().join(format!("htpasswd-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("users");
        std::fs::write(&path, VECTORS).expect("write");
        let h = Htpasswd::load(&path).expect("load");
        assert_eq!(h.len(), passwords().len());
        std::fs::write(&path, b"bad:\xff\n").expect("write");
        let err = Htpasswd::load(&path).expect_err("not UTF-8");
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(Htpasswd::load(&dir.join("missing")).is_err());
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
