//! Content digests (`algorithm:hex`, sha256 and sha512) and the incremental hashing
//! that verifies them. A `Digest` holds only a valid value, so it is safe in a storage
//! path.

use std::fmt;

/// The digest algorithms we verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    Sha256,
    Sha512,
}

impl Algorithm {
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
        }
    }

    fn hex_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 64,
            Algorithm::Sha512 => 128,
        }
    }
}

/// A content digest, `algorithm:hex`, validated.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Digest {
    pub algorithm: Algorithm,
    pub hex: String,
}

/// Why a digest string was refused: an algorithm we do not implement is UNSUPPORTED in
/// spirit but the spec answers DIGEST_INVALID either way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadDigest(pub String);

impl Digest {
    pub fn parse(s: &str) -> Result<Digest, BadDigest> {
        let (alg, hex) = s
            .split_once(':')
            .ok_or_else(|| BadDigest(format!("{s:?} is not algorithm:hex")))?;
        let algorithm = match alg {
            "sha256" => Algorithm::Sha256,
            "sha512" => Algorithm::Sha512,
            other => return Err(BadDigest(format!("unsupported digest algorithm {other:?}"))),
        };
        if hex.len() != algorithm.hex_len()
            || !hex
                .bytes()
                .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
        {
            return Err(BadDigest(format!("{s:?}: bad {alg} hex")));
        }
        Ok(Digest {
            algorithm,
            hex: hex.to_string(),
        })
    }

    pub fn sha256_of(data: &[u8]) -> Digest {
        use sha2::Digest as _;
        Digest {
            algorithm: Algorithm::Sha256,
            hex: hex::encode(sha2::Sha256::digest(data)),
        }
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algorithm.name(), self.hex)
    }
}

/// Incremental hashing for either algorithm.
#[derive(Clone)]
pub enum Hasher {
    Sha256(sha2::Sha256),
    Sha512(sha2::Sha512),
}

impl Hasher {
    pub fn new(a: Algorithm) -> Hasher {
        use sha2::Digest as _;
        match a {
            Algorithm::Sha256 => Hasher::Sha256(sha2::Sha256::new()),
            Algorithm::Sha512 => Hasher::Sha512(sha2::Sha512::new()),
        }
    }

    pub fn update(&mut self, data: &[u8]) {
        use sha2::Digest as _;
        match self {
            Hasher::Sha256(h) => h.update(data),
            Hasher::Sha512(h) => h.update(data),
        }
    }

    pub fn finish(self) -> Digest {
        use sha2::Digest as _;
        match self {
            Hasher::Sha256(h) => Digest {
                algorithm: Algorithm::Sha256,
                hex: hex::encode(h.finalize()),
            },
            Hasher::Sha512(h) => Digest {
                algorithm: Algorithm::Sha512,
                hex: hex::encode(h.finalize()),
            },
        }
    }

    /// The running state as bytes, to continue the hash in another process (the
    /// upload's commit records): `STATE_TAG` then sha2's own serialisation. Only
    /// SHA-256 (uploads hash with it; sha512 is checked by one more pass).
    pub fn save(&self) -> Option<Vec<u8>> {
        use sha2::digest::common::hazmat::SerializableState;
        match self {
            Hasher::Sha256(h) => {
                let mut out = STATE_TAG.to_vec();
                out.extend_from_slice(h.serialize().as_slice());
                Some(out)
            }
            Hasher::Sha512(_) => None,
        }
    }

    /// A SHA-256 state saved by [`Hasher::save`]; None when the bytes are anything
    /// else (empty, another version, damaged), so the caller rehashes instead.
    pub fn restore(saved: &[u8]) -> Option<Hasher> {
        use sha2::digest::common::hazmat::{SerializableState, SerializedState};
        let rest = saved.strip_prefix(STATE_TAG)?;
        let state = SerializedState::<sha2::Sha256>::try_from(rest).ok()?;
        sha2::Sha256::deserialize(&state).ok().map(Hasher::Sha256)
    }
}

/// Marks a saved hash state: algorithm and format version.
const STATE_TAG: &[u8] = b"sha256-state-v1:";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests() {
        let d = Digest::sha256_of(b"");
        assert_eq!(
            d.to_string(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(Digest::parse(&d.to_string()).unwrap(), d);
        assert!(Digest::parse(
            "sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855"
        )
        .is_err());
        assert!(Digest::parse("md5:d41d8cd98f00b204e9800998ecf8427e").is_err());
        assert!(Digest::parse("sha256:../../etc").is_err());
        assert!(Digest::parse(&format!("sha512:{}", "a".repeat(128))).is_ok());
        let mut h = Hasher::new(Algorithm::Sha512);
        h.update(b"abc");
        assert!(h.finish().hex.starts_with("ddaf35a193617aba"));
        assert!(Hasher::new(Algorithm::Sha512).save().is_none());
    }

    #[test]
    fn a_saved_state_continues_where_it_stopped() {
        let mut h = Hasher::new(Algorithm::Sha256);
        h.update(&[7u8; 100]);
        let saved = h.save().unwrap();
        let mut back = Hasher::restore(&saved).unwrap();
        back.update(b" more");
        let mut whole = [7u8; 100].to_vec();
        whole.extend_from_slice(b" more");
        assert_eq!(back.finish(), Digest::sha256_of(&whole));
        assert!(Hasher::restore(b"").is_none());
        assert!(Hasher::restore(&saved[..saved.len() - 1]).is_none());
        assert!(Hasher::restore(&saved[1..]).is_none());
    }
}
