//! Phase: authorize (after authenticate, before the backend). The `[access]` policy
//! judges the parsed call; `_catalog` answers are cut down to what the caller may
//! pull, by the bundled registry while it lists and here for an upstream's answer.

use crate::access::{Action, Need, Policy, Principal};
use crate::auth::Authenticator;
use crate::body::{self, Body};
use crate::oci::Call;
use http::{header, HeaderMap, Method, Response, StatusCode};
use http_body_util::BodyExt;

/// Requests without credentials: no Authorization header, or Basic with an empty
/// user name and password (what containers/image sends after a Basic challenge when
/// it has no credentials).
pub fn without_credentials(headers: &HeaderMap) -> bool {
    use base64::Engine;
    let Some(v) = headers.get(header::AUTHORIZATION) else {
        return true;
    };
    let Some((scheme, rest)) = v.to_str().ok().and_then(|v| v.trim().split_once(' ')) else {
        return false;
    };
    scheme.eq_ignore_ascii_case("basic")
        && base64::engine::general_purpose::STANDARD
            .decode(rest.trim())
            .is_ok_and(|d| d == b":")
}

/// May `user` (None: anonymous) make this call? The refusal is 403 DENIED for a user
/// and the 401 challenge for anonymous callers (credentials may help them). (A large
/// `Err` is fine: it is the answer, built only on refusal.)
#[allow(clippy::result_large_err)]
pub fn authorize(
    policy: &Policy,
    auth: &Authenticator,
    user: Option<&str>,
    call: &Call,
    method: &Method,
) -> Result<(), Response<Body>> {
    let who = user.map_or(Principal::Anonymous, Principal::User);
    let (repository, action, source) = match crate::access::need(call, method) {
        Need::Nothing | Need::Listing => return Ok(()),
        Need::Refuse => {
            return Err(match &call.endpoint {
                Err(e) => e.clone().into_response(),
                Ok(_) => denied(auth, user, "this request", Action::Pull),
            })
        }
        Need::On {
            repository,
            action,
            source,
        } => (repository, action, source),
    };
    if !policy.allows(who, repository.as_str(), action) {
        return Err(denied(auth, user, repository.as_str(), action));
    }
    if let Some(from) = source {
        if !policy.allows(who, from.as_str(), Action::Pull) {
            return Err(denied(auth, user, from.as_str(), Action::Pull));
        }
    }
    Ok(())
}

fn denied(auth: &Authenticator, user: Option<&str>, what: &str, action: Action) -> Response<Body> {
    crate::metrics::get().access_denied.inc();
    match user {
        None => auth.challenge(),
        Some(u) => crate::error::oci(
            StatusCode::FORBIDDEN,
            "DENIED",
            &format!(
                "requested access to the resource is denied: user {u} may not {} {what}",
                action.as_str()
            ),
        ),
    }
}

/// The caller a listing is filtered for.
/// (Owned: a future holding references with nested lifetimes trips rustc's `Send`
/// inference at the connection task.)
pub struct Viewer {
    pub policy: std::sync::Arc<Policy>,
    pub user: Option<String>,
}

impl Viewer {
    pub fn may_pull(&self, repository: &str) -> bool {
        let who = match self.user.as_deref() {
            Some(u) => Principal::User(u),
            None => Principal::Anonymous,
        };
        self.policy.allows(who, repository, Action::Pull)
    }
}

impl crate::registry::store::Visibility for Viewer {
    fn shows(&self, repository: &str) -> bool {
        self.may_pull(repository)
    }
}

/// The most of an upstream `_catalog` page read to filter it: distribution caps a page
/// at 1,000 names of at most 255 bytes.
const CATALOG_LIMIT: usize = 4 << 20;

/// An upstream's `_catalog` answer, read to be filtered by [`cut`] (a non-200 answer
/// comes back as it is, in `Err`). Reading and filtering are apart so that no future
/// holds the policy across the read.
pub async fn read_catalog(
    resp: Response<Body>,
) -> Result<(http::response::Parts, serde_json::Value), Response<Body>> {
    if resp.status() != StatusCode::OK {
        return Err(resp);
    }
    let (parts, b) = resp.into_parts();
    let mut b = b;
    let mut buf = Vec::new();
    while let Some(frame) = b.frame().await {
        let Ok(frame) = frame else {
            return Err(unreadable_catalog());
        };
        if let Ok(d) = frame.into_data() {
            if buf.len() + d.len() > CATALOG_LIMIT {
                return Err(unreadable_catalog());
            }
            buf.extend_from_slice(&d);
        }
    }
    match serde_json::from_slice::<serde_json::Value>(&buf) {
        Ok(v) => Ok((parts, v)),
        Err(_) => Err(unreadable_catalog()),
    }
}

fn unreadable_catalog() -> Response<Body> {
    crate::error::oci_error(
        StatusCode::BAD_GATEWAY,
        crate::error::Code::Unavailable,
        "the upstream's catalog could not be read",
    )
}

/// Keep only the repositories `viewer` may pull in an upstream's `_catalog` page.
/// The `Link` to the next page stays as the upstream gave it (it continues after the
/// last name the upstream listed, which is right whatever was cut), so a page may
/// hold fewer than `n` names.
pub fn cut(
    mut parts: http::response::Parts,
    mut v: serde_json::Value,
    viewer: &Viewer,
) -> Response<Body> {
    if let Some(list) = v.get_mut("repositories").and_then(|r| r.as_array_mut()) {
        list.retain(|name| name.as_str().is_some_and(|n| viewer.may_pull(n)));
    }
    let text = v.to_string();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.remove(header::TRANSFER_ENCODING);
    parts
        .headers
        .insert(header::CONTENT_LENGTH, text.len().into());
    Response::from_parts(parts, body::full(text))
}
