//! The password hash schemes an htpasswd file may hold: bcrypt (`$2y$`, `$2a$`, `$2b$`),
//! Apache MD5 (`$apr1$`), MD5-crypt (`$1$`) and `{SHA}`: recognising a hash,
//! verifying a password against it in constant time, and making new bcrypt hashes.

use std::fmt;

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
    pub(super) fn work(&self) -> u32 {
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

/// Why a hash cannot be used. Never carries the hash itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum HashError {
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
pub(super) fn is_crypt64(b: u8) -> bool {
    b == b'.' || b == b'/' || b.is_ascii_alphanumeric()
}

pub(super) const CRYPT64: &[u8; 64] =
    b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Longest password that is ever hashed; see [`verify_hash`].
pub(super) const MAX_PASSWORD_BYTES: usize = 4096;

/// `$2y$` (crypt_blowfish, PHP, htpasswd) and `$2b$` (OpenBSD, libxcrypt) are
/// the same algorithm. `$2a$` only differs through crypt_blowfish's
/// countermeasure against its old sign-extension bug, which can only change
/// the result for passwords containing the byte 0xFF; that byte never occurs
/// in UTF-8, so for `&str` passwords all three agree. `$2x$` marks hashes made
/// with the bug itself and would verify differently, so it is rejected.
pub(super) const BCRYPT_PREFIXES: [&str; 3] = ["$2y$", "$2a$", "$2b$"];

/// Real bcrypt implementations ignore the unused low bits of the last salt
/// and digest characters; the strict default engine would reject such hashes.
pub(super) const BCRYPT_B64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::BCRYPT,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_allow_trailing_bits(true)
        .with_decode_padding_mode(DecodePaddingMode::RequireNone),
);

/// Fully validate a hash and name its scheme, so that a file's problems are
/// all reported at load time rather than at the first login attempt.
pub(super) fn classify(hash: &str) -> Result<Scheme, HashError> {
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

pub(super) fn classify_bcrypt(hash: &str) -> Result<Scheme, HashError> {
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
pub(super) fn split_md5_crypt<'a>(
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
pub(super) fn unsupported_kind(hash: &str) -> &'static str {
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
    super::tests::count_hash_run();
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
pub(super) fn verify_bcrypt(hash: &str, cost: u32, password: &[u8]) -> Result<bool, String> {
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
pub(super) fn md5_crypt(password: &[u8], salt: &[u8], magic: &[u8]) -> [u8; 22] {
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

pub(super) fn encode_crypt64(mut v: u32, out: &mut [u8]) {
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
