//! Apache htpasswd files: parsing, checking a user's password and editing. The hash
//! schemes themselves (bcrypt, apr1, MD5-crypt, {SHA}) are in [`hash`].
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

mod hash;

pub(crate) use hash::ct_eq;
use hash::{classify, MAX_PASSWORD_BYTES};
pub use hash::{hash_bcrypt, scheme_of, verify_hash, Scheme};

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::path::Path;

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

    /// The stored hash of a loaded user (what a token is bound to: it changes with the
    /// password and vanishes with the user).
    pub fn hash_of(&self, user: &str) -> Option<&str> {
        let i = self.index.get(user)?.entry?;
        self.entries.get(i).map(|e| e.hash.0.as_str())
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
        let user = crate::access_log::Escaped(self.user);
        write!(
            f,
            "line {}: user \"{user}\": {} is a weak password hash, fast to guess if the \
             file leaks; rehash with: portcullis passwd add {user}",
            self.line, self.scheme
        )
    }
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
    use super::hash::BCRYPT_B64;
    use super::*;
    use base64::Engine as _;
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
