//! Repository globs of `[[access.rule]] repositories`: `*` stands for any characters
//! within one path component, `**` (a whole component) for any number of components.
//! `team-a/**` is every repository below `team-a/` (not `team-a` itself), `library/*`
//! the repositories one level below `library/`, `**` every repository.

/// One compiled glob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    /// `*`: any characters but `/`.
    Star,
    /// `**`: any characters, `/` included.
    Any,
}

impl Glob {
    /// Parse a glob, or say in words why it is not one (the config names the key).
    pub fn parse(text: &str) -> Result<Glob, String> {
        let bad = |why: &str| Err(format!("{text:?} is not a repository glob: {why}"));
        if text.is_empty() {
            return bad("it is empty");
        }
        if text.starts_with('/') || text.ends_with('/') || text.contains("//") {
            return bad("components are separated by single slashes, none at either end");
        }
        if let Some(c) = text
            .chars()
            .find(|c| !matches!(c, 'a'..='z' | '0'..='9' | '.' | '_' | '-' | '/' | '*'))
        {
            let why = if c.is_ascii_uppercase() {
                format!("{c:?}: repository names are lower case, so it would never match")
            } else {
                format!("{c:?} never occurs in a repository name (a-z 0-9 . _ - /, and * or **)")
            };
            return bad(&why);
        }
        let mut parts = Vec::new();
        for (i, component) in text.split('/').enumerate() {
            if i > 0 {
                push_literal(&mut parts, "/");
            }
            if component == "**" {
                parts.push(Part::Any);
                continue;
            }
            if component.contains("**") {
                return bad("** stands for whole components only (as in team-a/**)");
            }
            let mut rest = component;
            while let Some(at) = rest.find('*') {
                push_literal(&mut parts, &rest[..at]);
                parts.push(Part::Star);
                rest = &rest[at + 1..];
            }
            push_literal(&mut parts, rest);
        }
        Ok(Glob { parts })
    }

    /// Does the repository name match?
    pub fn matches(&self, name: &str) -> bool {
        matches(&self.parts, name.as_bytes())
    }

    /// Whether every name this glob matches is matched by `other` too; `false` when not
    /// sure (used only to report shadowed rules, so it may miss some).
    pub fn within(&self, other: &Glob) -> bool {
        if self == other || other.parts == [Part::Any] {
            return true;
        }
        // A glob without wildcards is one name.
        if let [Part::Literal(name)] = self.parts.as_slice() {
            return other.matches(name);
        }
        // `p/**` holds every glob that starts with the literal `p/`.
        if let [Part::Literal(prefix), Part::Any] = other.parts.as_slice() {
            if let Some(Part::Literal(mine)) = self.parts.first() {
                return mine.starts_with(prefix.as_str()) && mine.len() > prefix.len()
                    || mine == prefix && self.parts.len() > 1;
            }
        }
        false
    }
}

fn push_literal(parts: &mut Vec<Part>, s: &str) {
    if s.is_empty() {
        return;
    }
    if let Some(Part::Literal(l)) = parts.last_mut() {
        l.push_str(s);
    } else {
        parts.push(Part::Literal(s.to_string()));
    }
}

/// Wildcard matching with backtracking on the last `*`/`**` seen per level; names are
/// at most 255 bytes and globs a handful of parts, so this stays small.
fn matches(parts: &[Part], name: &[u8]) -> bool {
    match parts.split_first() {
        None => name.is_empty(),
        Some((Part::Literal(l), rest)) => {
            name.starts_with(l.as_bytes()) && matches(rest, &name[l.len()..])
        }
        Some((wild, rest)) => {
            let slash_ok = matches!(wild, Part::Any);
            // `**` must match at least one character: `a/**` is not `a/`.
            let least = usize::from(slash_ok);
            for take in least..=name.len() {
                if take > 0 && !slash_ok && name[take - 1] == b'/' {
                    return false;
                }
                if matches(rest, &name[take..]) {
                    return true;
                }
            }
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(glob: &str, name: &str) -> bool {
        Glob::parse(glob).unwrap().matches(name)
    }

    #[test]
    fn stars_stay_in_one_component_and_double_stars_cross_them() {
        assert!(m("library/*", "library/nginx"));
        assert!(!m("library/*", "library/nginx/alpine"));
        assert!(!m("library/*", "library"));
        assert!(m("team-a/**", "team-a/x"));
        assert!(m("team-a/**", "team-a/x/y/z"));
        assert!(!m("team-a/**", "team-a"));
        assert!(!m("team-a/**", "team-ab/x"));
        assert!(m("**", "a"));
        assert!(m("**", "a/b/c"));
        assert!(m("**/cache", "a/b/cache"));
        assert!(!m("**/cache", "cache"));
        assert!(m("app-*", "app-web"));
        assert!(!m("app-*", "app-web/x"));
        assert!(m("*/base", "ci/base"));
        assert!(m("a/*/c", "a/b/c"));
        assert!(!m("a/*/c", "a/b/b/c"));
        assert!(m("exact/name", "exact/name"));
        assert!(!m("exact/name", "exact/name2"));
        assert!(m("a*b*c", "axxbyyc"));
        assert!(!m("a*b*c", "axxbyy"));
    }

    #[test]
    fn malformed_globs_are_refused_with_a_reason() {
        for (g, why) in [
            ("", "empty"),
            ("/a", "slash"),
            ("a/", "slash"),
            ("a//b", "slash"),
            ("Team/*", "lower case"),
            ("a b", "never occurs"),
            ("a/**b", "whole components"),
            ("***", "whole components"),
            ("a?", "never occurs"),
        ] {
            let e = Glob::parse(g).unwrap_err();
            assert!(e.contains(why), "{g:?}: {e}");
        }
    }

    #[test]
    fn within_is_sure_or_says_no() {
        let w = |a: &str, b: &str| Glob::parse(a).unwrap().within(&Glob::parse(b).unwrap());
        assert!(w("a/b", "**"));
        assert!(w("a/b", "a/*"));
        assert!(w("a/b/**", "a/**"));
        assert!(w("a/*", "a/**"));
        assert!(w("a/b", "a/b"));
        assert!(!w("a/**", "a/*"));
        assert!(!w("ab/**", "a/**"));
        assert!(!w("**", "a/**"));
        assert!(!w("a/*", "b/**"));
    }
}
