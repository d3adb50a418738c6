//! Bearer tokens of the built-in token endpoint (`/token`), used only when the access
//! policy lets anonymous callers in: docker sends credentials only after a challenge
//! at `/v2/`, and with a Basic challenge it refuses to go on without any ("no basic
//! auth credentials"), so anonymous pulls need the token flow of Docker's registry auth
//! spec — with credentials for users, without for anonymous callers.
//!
//! A token is `v1.<expiry>.<user>.<entry>.<mac>`: expiry in Unix seconds, the user name
//! and a digest of the user's htpasswd entry in URL-safe base64 (both empty for
//! anonymous; the entry digest makes a token die with its user's removal or password
//! change), and an HMAC-SHA256 of what precedes it. The
//! key is derived from the TLS private key, which every instance serving one name
//! holds, so a token minted by one instance is honoured by the others; it changes with
//! the key. A token says who the caller is, never what they may do: the policy is
//! applied to every request, so a SIGHUP that changes the rules applies at once.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use hmac::{KeyInit, Mac};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How long a token is good for (what Docker Hub gives; clients fetch a new one).
pub const LIFETIME: Duration = Duration::from_secs(300);

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// Mints and checks tokens with one key.
pub struct Tokens {
    key: [u8; 32],
}

/// Who a valid token speaks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bearer {
    /// A user, with the digest of their htpasswd entry when the token was issued
    /// (`Authenticator::credential_tag`): the token is good only while it is current.
    User(String, [u8; 8]),
    Anonymous,
}

impl Tokens {
    /// Derive the token key from secret material (the TLS private key's bytes).
    pub fn from_secret(secret: &[u8]) -> Tokens {
        let mut mac = mac(secret);
        mac.update(b"portcullis bearer token key v1");
        Tokens {
            key: mac.finalize().into_bytes().into(),
        }
    }

    /// A token for `user` and the tag of their entry (None: anonymous) valid for
    /// [`LIFETIME`] from `now`.
    pub fn issue(&self, user: Option<(&str, [u8; 8])>, now: SystemTime) -> String {
        let expiry = unix(now) + LIFETIME.as_secs();
        let (name, tag) = match user {
            Some((u, t)) => (B64.encode(u), B64.encode(t)),
            None => (String::new(), String::new()),
        };
        let body = format!("v1.{expiry}.{name}.{tag}");
        let tag = B64.encode(self.tag(&body));
        format!("{body}.{tag}")
    }

    /// Who the token speaks for, if it is ours, intact and not expired.
    pub fn verify(&self, token: &str, now: SystemTime) -> Option<Bearer> {
        let (body, tag) = token.rsplit_once('.')?;
        let tag = B64.decode(tag).ok()?;
        let mut m = mac(&self.key);
        m.update(body.as_bytes());
        m.verify_slice(&tag).ok()?;
        let mut parts = body.split('.');
        let (Some("v1"), Some(expiry), Some(user), Some(tag), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return None;
        };
        if expiry.parse::<u64>().ok()? <= unix(now) {
            return None;
        }
        let user = String::from_utf8(B64.decode(user).ok()?).ok()?;
        if user.is_empty() {
            return Some(Bearer::Anonymous);
        }
        let tag: [u8; 8] = B64.decode(tag).ok()?.try_into().ok()?;
        Some(Bearer::User(user, tag))
    }

    fn tag(&self, body: &str) -> Vec<u8> {
        let mut m = mac(&self.key);
        m.update(body.as_bytes());
        m.finalize().into_bytes().to_vec()
    }
}

fn mac(key: &[u8]) -> HmacSha256 {
    // HMAC takes keys of any length; `new_from_slice` cannot fail for it.
    <HmacSha256 as KeyInit>::new_from_slice(key)
        .unwrap_or_else(|_| <HmacSha256 as KeyInit>::new(&Default::default()))
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_name_their_user_until_they_expire_and_resist_edits() {
        let t = Tokens::from_secret(b"key material");
        let now = SystemTime::now();
        let alice = t.issue(Some(("alice", [7; 8])), now);
        assert_eq!(
            t.verify(&alice, now),
            Some(Bearer::User("alice".into(), [7; 8]))
        );
        let anon = t.issue(None, now);
        assert_eq!(t.verify(&anon, now), Some(Bearer::Anonymous));
        // Expired.
        assert_eq!(
            t.verify(&alice, now + LIFETIME + Duration::from_secs(1)),
            None
        );
        // Another key.
        assert_eq!(Tokens::from_secret(b"other").verify(&alice, now), None);
        // An anonymous token turned into alice's keeps the anonymous MAC.
        let (_, tag) = anon.rsplit_once('.').unwrap();
        let (body, _) = alice.rsplit_once('.').unwrap();
        assert_eq!(t.verify(&format!("{body}.{tag}"), now), None);
        // A later expiry with the old MAC.
        let forged = alice.replacen("v1.", "v1.9", 1);
        assert_eq!(t.verify(&forged, now), None);
        for junk in ["", ".", "v1", "v1.1.YQ.", "v1.1.YQ.x.", "a.b.c.d.e.f"] {
            assert_eq!(t.verify(junk, now), None, "{junk:?}");
        }
    }
}
