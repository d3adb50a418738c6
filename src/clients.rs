//! The nginx-recipe client rules: which paths exist, and the user-agent rule that
//! turns pre-1.6 docker clients away with 404.

/// What a request path is, before any authentication.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `/_ping` or `/v1/_ping`: forwarded without authentication (recipe locations).
    Ping,
    /// Exactly `/v2`: nginx answers 301 to `/v2/` for a `location /v2/` prefix.
    V2NoSlash,
    /// `/v2/` and everything under it: the registry API.
    V2,
    /// Anything else: 404, no authentication asked (nginx's default server answer).
    Other,
}

/// Classify a request path (without query).
pub fn route(path: &str) -> Route {
    match path {
        "/_ping" | "/v1/_ping" => Route::Ping,
        "/v2" => Route::V2NoSlash,
        p if p.starts_with("/v2/") => Route::V2,
        _ => Route::Other,
    }
}

/// The host the client addressed, port included: `Host` (nginx's `$http_host`), or
/// `:authority` for HTTP/2. It goes upstream unchanged and into absolute `Location`s.
pub fn host<'a>(headers: &'a http::HeaderMap, uri: &'a http::Uri) -> Option<&'a str> {
    headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| uri.authority().map(|a| a.as_str()))
}

/// The recipe's rule, `if ($http_user_agent ~ "^(docker\/1\.(3|4|5(?!\.[0-9]-dev))|Go ).*$")
/// { return 404; }`, without the look-ahead Rust's `regex` lacks.
///
/// nginx's `~` is case-sensitive and anchored at the start; `.*$` matches any rest of a
/// header value (values cannot hold newlines). So: reject when the agent starts with
/// `Go ` (Go 1.1's "Go 1.1 package http"), `docker/1.3`, `docker/1.4`, or `docker/1.5`
/// *unless* the next three characters are `.<digit>-dev` (1.5.x-dev builds speak v2).
/// A missing user agent is an empty string and passes, as in nginx.
pub fn is_old_docker(user_agent: &[u8]) -> bool {
    if user_agent.starts_with(b"Go ") {
        return true;
    }
    let Some(rest) = user_agent.strip_prefix(b"docker/1.") else {
        return false;
    };
    match rest.first() {
        Some(b'3') | Some(b'4') => true,
        Some(b'5') => {
            !matches!(&rest[1..], [b'.', d, b'-', b'd', b'e', b'v', ..] if d.is_ascii_digit())
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// The recipe's own pattern, run by a regex engine that has look-ahead.
    const NGINX_PATTERN: &str = r"^(docker\/1\.(3|4|5(?!\.[0-9]-dev))|Go ).*$";

    #[test]
    fn issue_examples() {
        for ok in [
            "docker/1.5.1-dev",
            "Go-http-client/1.1",
            "docker/1.6.0",
            "",
            "skopeo/1.9.3",
            "containerd/1.7",
        ] {
            assert!(!is_old_docker(ok.as_bytes()), "{ok} must pass");
        }
        for old in [
            "docker/1.5.0",
            "docker/1.4.1",
            "docker/1.3.0",
            "Go 1.1 package http",
        ] {
            assert!(is_old_docker(old.as_bytes()), "{old} must be refused");
        }
    }

    #[test]
    fn routes() {
        assert_eq!(route("/_ping"), Route::Ping);
        assert_eq!(route("/v1/_ping"), Route::Ping);
        assert_eq!(route("/v2"), Route::V2NoSlash);
        assert_eq!(route("/v2/"), Route::V2);
        assert_eq!(route("/v2/a/b/manifests/x"), Route::V2);
        assert_eq!(route("/"), Route::Other);
        assert_eq!(route("/v2x"), Route::Other);
        assert_eq!(route("/v1/search"), Route::Other);
    }

    /// Strings built from the pieces that matter to the rule, so that the interesting
    /// boundaries (`docker/1.5` followed by almost `.N-dev`) come up often.
    fn generated(rng: &mut impl Rng) -> String {
        const PIECES: &[&str] = &[
            "docker/",
            "docker/1.",
            "1.",
            "3",
            "4",
            "5",
            "6",
            "15",
            ".",
            "-dev",
            "-de",
            "dev",
            "0",
            "9",
            "a",
            "Go",
            "Go ",
            " ",
            "/",
            "Docker/1.5",
            "docker/1.5",
            ".1-dev",
            ".x-dev",
            "-",
            "\t",
            "é",
            "Go-http-client/1.1",
            "docker/1.5.",
            "docker/1.4",
            "docker/1.3",
        ];
        let n = rng.gen_range(0..6);
        (0..n)
            .map(|_| PIECES[rng.gen_range(0..PIECES.len())])
            .collect()
    }

    #[test]
    fn agrees_with_nginx_pattern_on_generated_agents() {
        let oracle = fancy_regex::Regex::new(NGINX_PATTERN).unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed);
        let mut refused = 0;
        for _ in 0..200_000 {
            let ua = generated(&mut rng);
            let want = oracle.is_match(&ua).unwrap();
            assert_eq!(is_old_docker(ua.as_bytes()), want, "user agent {ua:?}");
            refused += usize::from(want);
        }
        // The generator must exercise both answers, or the comparison proves little.
        assert!(refused > 10_000, "only {refused} refused agents generated");
    }

    #[test]
    fn agrees_with_nginx_pattern_on_all_short_tails() {
        let oracle = fancy_regex::Regex::new(NGINX_PATTERN).unwrap();
        let alphabet = ['.', '-', 'd', 'e', 'v', '0', '5', '9', 'x', ' '];
        for prefix in [
            "docker/1.3",
            "docker/1.4",
            "docker/1.5",
            "docker/1.6",
            "Go",
            "Go ",
        ] {
            let mut tails = vec![String::new()];
            for _ in 0..5 {
                let next: Vec<String> = tails
                    .iter()
                    .flat_map(|t| alphabet.iter().map(move |c| format!("{t}{c}")))
                    .collect();
                for t in &next {
                    let ua = format!("{prefix}{t}");
                    assert_eq!(
                        is_old_docker(ua.as_bytes()),
                        oracle.is_match(&ua).unwrap(),
                        "{ua:?}"
                    );
                }
                tails = next;
            }
        }
    }
}
