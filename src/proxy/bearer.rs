//! The token flow, switched on when the access policy grants `anonymous` something
//! (see `auth::token` for why): 401s challenge with `Bearer realm="https://<host>/token"`
//! instead of Basic, `GET /token` hands out tokens (for the Basic credentials it is
//! given, or anonymous ones without), and `Authorization: Bearer` is accepted next to
//! Basic, which keeps working as before for clients that send it unasked (curl -u).

use crate::auth::token::{Bearer, LIFETIME};
use crate::body::Body;
use crate::state::State;
use http::{header, HeaderMap, HeaderValue, Response, StatusCode, Uri};
use std::net::SocketAddr;
use std::time::SystemTime;

/// Where tokens are handed out (outside `/v2/`, so no repository name can collide).
pub const PATH: &str = "/token";
/// The `service` of the challenge (clients send it back; one service here).
pub const SERVICE: &str = "portcullis";

/// `Bearer realm="https://<host>/token",service="portcullis"` for the host the client
/// addressed.
pub fn challenge(headers: &HeaderMap, uri: &Uri) -> HeaderValue {
    let host = crate::clients::host(headers, uri).unwrap_or("localhost");
    // A host that would break out of the quoted string is not one a client reached us by.
    let host = if host.contains(['"', '\\', ',']) {
        "localhost"
    } else {
        host
    };
    HeaderValue::from_str(&format!(
        r#"Bearer realm="https://{host}{PATH}",service="{SERVICE}""#
    ))
    .unwrap_or_else(|_| HeaderValue::from_static(r#"Bearer realm="/token",service="portcullis""#))
}

/// Turn a 401's Basic challenge into the Bearer one.
pub fn rechallenge(resp: &mut Response<Body>, headers: &HeaderMap, uri: &Uri) {
    if resp.status() == StatusCode::UNAUTHORIZED {
        resp.headers_mut()
            .insert(header::WWW_AUTHENTICATE, challenge(headers, uri));
    }
}

/// `Authorization: Bearer <token>`: None when the header is something else; Some(Err)
/// for a token that is not ours, altered, expired, or whose user has since been
/// removed or given a new password; else the user (None: anonymous).
pub fn read(state: &State, headers: &HeaderMap) -> Option<Result<Option<String>, ()>> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    Some(match state.tokens.verify(token.trim(), SystemTime::now()) {
        Some(Bearer::Anonymous) => Ok(None),
        Some(Bearer::User(u, tag)) if state.auth.credential_tag(&u) == Some(tag) => Ok(Some(u)),
        _ => Err(()),
    })
}

/// `GET /token`: a token for the Basic credentials given (checked like any other
/// request's, throttling included), or an anonymous one without credentials. The
/// answer is the Docker token spec's JSON (`token` and its OAuth2 twin `access_token`).
pub async fn endpoint(state: &State, headers: &HeaderMap, peer: SocketAddr) -> Response<Body> {
    let user = if super::authorize::without_credentials(headers) {
        None
    } else {
        match super::authenticate(&state.auth, headers, peer).await {
            Ok(u) => Some(u),
            Err(r) => return r,
        }
    };
    let now = SystemTime::now();
    let holder = match &user {
        Some(u) => match state.auth.credential_tag(u) {
            Some(tag) => Some((u.as_str(), tag)),
            // Removed between the check and here: no token.
            None => return state.auth.challenge(),
        },
        None => None,
    };
    let token = state.tokens.issue(holder, now);
    crate::metrics::get().tokens_issued.inc();
    let issued = crate::access_log::rfc3339(now);
    let mut r = crate::registry::api::json(
        StatusCode::OK,
        "application/json",
        &serde_json::json!({
            "token": token,
            "access_token": token,
            "expires_in": LIFETIME.as_secs(),
            "issued_at": issued,
        }),
    );
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}
