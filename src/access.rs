//! Who may do what: the per-repository access policy of `[access]`. Rules map users,
//! `@groups`, `*` (any authenticated user) and `anonymous` to `pull`, `push` (which
//! implies pull) and `delete` on repository globs; the first rule that names the caller
//! and matches the repository decides, whatever it grants; an authenticated caller no
//! rule names gets `default`, an anonymous one nothing. No `[access]` table: every
//! authenticated user may do everything, as with the htpasswd file alone.
//!
//! The policy is built once per configuration (groups expanded into user sets), so a
//! request costs a set lookup and a few glob matches per rule it passes.

pub mod glob;

pub use glob::Glob;

use crate::oci::{Call, Repository};
use http::Method;
use std::collections::{BTreeMap, HashSet};
use std::fmt;

/// What a request needs on one repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Pull,
    Push,
    Delete,
}

impl Action {
    fn bit(self) -> u8 {
        match self {
            Action::Pull => 1,
            Action::Push => 2,
            Action::Delete => 4,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Pull => "pull",
            Action::Push => "push",
            Action::Delete => "delete",
        }
    }
}

/// A set of actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Rights(u8);

impl Rights {
    pub const NONE: Rights = Rights(0);

    /// From the words of `actions` / `default`; push implies pull.
    pub fn parse(word: &str) -> Option<Rights> {
        Some(match word {
            "none" => Rights::NONE,
            "pull" => Rights(1),
            "push" => Rights(1 | 2),
            "delete" => Rights(4),
            _ => return None,
        })
    }

    pub fn allows(self, a: Action) -> bool {
        self.0 & a.bit() != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl std::ops::BitOr for Rights {
    type Output = Rights;
    fn bitor(self, o: Rights) -> Rights {
        Rights(self.0 | o.0)
    }
}

impl fmt::Display for Rights {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = [Action::Pull, Action::Push, Action::Delete]
            .into_iter()
            .filter(|a| self.allows(*a))
            .map(Action::as_str)
            .collect();
        if names.is_empty() {
            f.write_str("none")
        } else {
            f.write_str(&names.join(", "))
        }
    }
}

/// Who is asking: an authenticated user, or nobody.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Principal<'a> {
    User(&'a str),
    Anonymous,
}

/// The callers one rule names, with groups already expanded.
#[derive(Debug, Clone, Default)]
struct Who {
    /// `*`: any authenticated user.
    users_all: bool,
    anonymous: bool,
    users: HashSet<String>,
}

impl Who {
    fn names(&self, p: Principal<'_>) -> bool {
        match p {
            Principal::Anonymous => self.anonymous,
            Principal::User(u) => self.users_all || self.users.contains(u),
        }
    }

    /// Does this one name everyone `other` names? (for shadowed-rule reports)
    fn covers(&self, other: &Who) -> bool {
        (self.anonymous || !other.anonymous)
            && (self.users_all
                || (!other.users_all && other.users.iter().all(|u| self.users.contains(u))))
    }
}

#[derive(Debug, Clone)]
struct Rule {
    repositories: Vec<Glob>,
    who: Who,
    rights: Rights,
}

/// One `[[access.rule]]` as the file gives it (the config module's serde mirror is
/// turned into this before the policy is built).
#[derive(Debug, Clone, Default)]
pub struct RuleSpec {
    pub repositories: Vec<String>,
    pub who: Vec<String>,
    pub actions: Vec<String>,
}

/// The compiled `[access]` table.
#[derive(Debug)]
pub struct Policy {
    default: Rights,
    rules: Vec<Rule>,
    /// For each user a rule names (directly or through a group): the rules that name
    /// them, in order, `*` rules included; so a request looks its caller up once and
    /// checks only the globs of rules that concern it.
    by_user: std::collections::HashMap<String, Vec<usize>>,
    /// The rules of any other authenticated user (`*` rules), and of anonymous callers.
    any_user: Vec<usize>,
    anonymous_rules: Vec<usize>,
    /// Does any rule grant `anonymous` something? Then requests without credentials
    /// are let through to the rules instead of being asked for them.
    anonymous: bool,
    warnings: Vec<String>,
    /// Recent decisions: a request asks about the same caller and repository as the
    /// requests before it (a pull is dozens of blob GETs), so most decisions are one
    /// hash and one slot read instead of a walk over the rules.
    decided: Decisions,
}

/// A fixed table of recent decisions, indexed by a keyed hash of (caller, repository).
/// A slot holds the names themselves, so a hit is exact; a miss walks the rules and
/// overwrites the slot. Lock-free reads (arc-swap); bounded size whatever callers send.
struct Decisions {
    slots: Box<[arc_swap::ArcSwapOption<Decided>]>,
    hasher: std::collections::hash_map::RandomState,
}

struct Decided {
    user: Option<Box<str>>,
    repository: Box<str>,
    rights: Rights,
}

const DECISION_SLOTS: usize = 4096;

impl Decisions {
    fn new() -> Decisions {
        Decisions {
            slots: (0..DECISION_SLOTS).map(|_| Default::default()).collect(),
            hasher: Default::default(),
        }
    }

    fn slot(&self, who: Principal<'_>, repository: &str) -> &arc_swap::ArcSwapOption<Decided> {
        use std::hash::BuildHasher;
        let user = match who {
            Principal::User(u) => Some(u),
            Principal::Anonymous => None,
        };
        let h = self.hasher.hash_one((user, repository));
        &self.slots[h as usize % DECISION_SLOTS]
    }
}

impl fmt::Debug for Decisions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Decisions({DECISION_SLOTS} slots)")
    }
}

impl Policy {
    /// Build from the file's words. `problem(key, message)` receives every mistake
    /// (unknown action or group, malformed glob, empty list); what comes back is
    /// usable only when none was reported.
    pub fn build(
        default: Option<&str>,
        groups: &BTreeMap<String, Vec<String>>,
        specs: &[RuleSpec],
        problem: &mut dyn FnMut(String, String),
    ) -> Policy {
        let default = match default {
            None => Rights::NONE,
            Some(w) => Rights::parse(w).unwrap_or_else(|| {
                problem(
                    "access.default".into(),
                    format!("{w:?} is not one of none, pull, push, delete"),
                );
                Rights::NONE
            }),
        };
        for (name, members) in groups {
            for m in members {
                if m.starts_with('@') || m == "*" || m == "anonymous" || m.is_empty() {
                    problem(
                        format!("access.groups.{name}"),
                        format!("{m:?}: a group lists user names only (no @group, * or anonymous)"),
                    );
                }
            }
        }
        let mut rules = Vec::new();
        for (i, spec) in specs.iter().enumerate() {
            let key = |k: &str| format!("access.rule[{}].{k}", i + 1);
            let mut repositories = Vec::new();
            if spec.repositories.is_empty() {
                problem(
                    key("repositories"),
                    "is empty: name at least one repository glob such as \"team-a/**\"".into(),
                );
            }
            for g in &spec.repositories {
                match Glob::parse(g) {
                    Ok(g) => repositories.push(g),
                    Err(e) => problem(key("repositories"), e),
                }
            }
            let mut who = Who::default();
            if spec.who.is_empty() {
                problem(
                    key("who"),
                    "is empty: name users, @groups, \"*\" or \"anonymous\"".into(),
                );
            }
            for w in &spec.who {
                match w.as_str() {
                    "*" => who.users_all = true,
                    "anonymous" => who.anonymous = true,
                    g if g.starts_with('@') => match groups.get(&g[1..]) {
                        Some(members) => who.users.extend(members.iter().cloned()),
                        None => problem(
                            key("who"),
                            format!("{g:?}: no such group in [access.groups]"),
                        ),
                    },
                    "" => problem(key("who"), "\"\" is not a user name".into()),
                    u => {
                        who.users.insert(u.to_string());
                    }
                }
            }
            let mut rights = Rights::NONE;
            if spec.actions.is_empty() {
                problem(
                    key("actions"),
                    "is empty: give pull, push or delete (or \"none\" to deny)".into(),
                );
            }
            for a in &spec.actions {
                match Rights::parse(a) {
                    Some(r) => rights = rights | r,
                    None => problem(
                        key("actions"),
                        format!("{a:?} is not one of pull, push, delete, none"),
                    ),
                }
            }
            rules.push(Rule {
                repositories,
                who,
                rights,
            });
        }
        let anonymous = rules
            .iter()
            .any(|r| r.who.anonymous && !r.rights.is_empty());
        let warnings = shadowed(&rules);
        let naming = |p: Principal<'_>| -> Vec<usize> {
            (0..rules.len())
                .filter(|&i| rules[i].who.names(p))
                .collect()
        };
        let by_user = rules
            .iter()
            .flat_map(|r| r.who.users.iter())
            .map(|u| (u.clone(), naming(Principal::User(u))))
            .collect();
        // A name no rule mentions: only `*` rules name it.
        let any_user = (0..rules.len())
            .filter(|&i| rules[i].who.users_all)
            .collect();
        let anonymous_rules = naming(Principal::Anonymous);
        Policy {
            default,
            rules,
            by_user,
            any_user,
            anonymous_rules,
            anonymous,
            warnings,
            decided: Decisions::new(),
        }
    }

    /// What `who` may do on `repository`.
    pub fn rights(&self, who: Principal<'_>, repository: &str) -> Rights {
        let slot = self.decided.slot(who, repository);
        if let Some(d) = slot.load().as_deref() {
            let same_caller = match who {
                Principal::User(u) => d.user.as_deref() == Some(u),
                Principal::Anonymous => d.user.is_none(),
            };
            if same_caller && &*d.repository == repository {
                return d.rights;
            }
        }
        let rights = self.walk(who, repository);
        slot.store(Some(std::sync::Arc::new(Decided {
            user: match who {
                Principal::User(u) => Some(u.into()),
                Principal::Anonymous => None,
            },
            repository: repository.into(),
            rights,
        })));
        rights
    }

    /// The rules, in order, for one decision, without the table of remembered ones
    /// (what `rights` does on a miss; public for `examples/access_decisions.rs`).
    pub fn walk_rules(&self, who: Principal<'_>, repository: &str) -> Rights {
        self.walk(who, repository)
    }

    /// The rules, in order, for one decision.
    fn walk(&self, who: Principal<'_>, repository: &str) -> Rights {
        let concerned = match who {
            Principal::User(u) => self.by_user.get(u).unwrap_or(&self.any_user),
            Principal::Anonymous => &self.anonymous_rules,
        };
        for &i in concerned {
            let r = &self.rules[i];
            if r.repositories.iter().any(|g| g.matches(repository)) {
                return r.rights;
            }
        }
        match who {
            Principal::User(_) => self.default,
            Principal::Anonymous => Rights::NONE,
        }
    }

    pub fn allows(&self, who: Principal<'_>, repository: &str, action: Action) -> bool {
        self.rights(who, repository).allows(action)
    }

    /// Does some rule let requests without credentials do something?
    pub fn anonymous(&self) -> bool {
        self.anonymous
    }

    /// Rules no request can ever reach (an earlier rule names all their callers and
    /// all their repositories), one line each, for `check` and the log.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// What `check` says of the policy beside its errors, one line each: rules that are
    /// never used, and user names the htpasswd file does not hold (`known` says which
    /// it holds; taken as a function so that access does not depend on auth).
    pub fn advice(
        &self,
        config: &std::path::Path,
        known: impl Fn(&str) -> bool,
        htpasswd: &std::path::Path,
    ) -> Vec<String> {
        let mut unknown: Vec<&str> = self
            .by_user
            .keys()
            .map(String::as_str)
            .filter(|u| !known(u))
            .collect();
        unknown.sort_unstable();
        let at = config.display();
        self.warnings
            .iter()
            .map(|w| format!("{at}: {w}"))
            .chain(unknown.into_iter().map(|u| {
                format!(
                    "{at}: [access] names user {u:?}, who is not in {}",
                    htpasswd.display()
                )
            }))
            .collect()
    }
}

/// What one API call needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need<'a> {
    /// `/v2/`: being let in is enough.
    Nothing,
    /// `_catalog`: answered, listing only the repositories the caller may pull.
    Listing,
    /// An action on a repository; a cross-repository mount also needs pull on its
    /// source (distribution asks its token server for both).
    On {
        repository: &'a Repository,
        action: Action,
        source: Option<&'a Repository>,
    },
    /// A path that names no repository the API knows: answered with the call's own
    /// error, never passed on (an upstream might serve what the policy cannot judge).
    Refuse,
}

/// Read the need off a parsed call: GET/HEAD of tags, manifests, blobs and referrers
/// pull; uploads and manifest PUT push; DELETE deletes. A call the API refuses but
/// that names a repository needs what its method would (the backend then answers it).
pub fn need<'a>(call: &'a Call, method: &Method) -> Need<'a> {
    use crate::oci::endpoint::{Endpoint as E, Kind};
    let on = |repository, action, source| Need::On {
        repository,
        action,
        source,
    };
    match &call.endpoint {
        Ok(E::Base) => Need::Nothing,
        Ok(E::Catalog(_)) => Need::Listing,
        Ok(E::Tags(r, _)) => on(r, Action::Pull, None),
        Ok(E::GetManifest { repository, .. } | E::GetBlob { repository, .. }) => {
            on(repository, Action::Pull, None)
        }
        Ok(E::Referrers { repository, .. }) => on(repository, Action::Pull, None),
        Ok(E::PutManifest(r, _)) => on(r, Action::Push, None),
        Ok(E::DeleteManifest(r, _) | E::DeleteBlob(r, _)) => on(r, Action::Delete, None),
        Ok(E::StartUpload {
            repository, mount, ..
        }) => on(
            repository,
            Action::Push,
            mount.as_ref().map(|(_, from)| from),
        ),
        Ok(E::UploadStatus(u) | E::PatchUpload(u) | E::FinishUpload(u, _) | E::CancelUpload(u)) => {
            on(&u.repository, Action::Push, None)
        }
        Err(_) => match (&call.repository, call.kind) {
            (Some(r), _) => {
                let action = match *method {
                    Method::GET | Method::HEAD => Action::Pull,
                    Method::DELETE => Action::Delete,
                    _ => Action::Push,
                };
                on(r, action, None)
            }
            (None, Some(Kind::Base | Kind::Catalog)) => Need::Nothing,
            (None, _) => Need::Refuse,
        },
    }
}

fn shadowed(rules: &[Rule]) -> Vec<String> {
    let mut out = Vec::new();
    for (j, later) in rules.iter().enumerate() {
        let by = rules[..j].iter().position(|earlier| {
            earlier.who.covers(&later.who)
                && later
                    .repositories
                    .iter()
                    .all(|g| earlier.repositories.iter().any(|e| g.within(e)))
        });
        if let Some(i) = by {
            out.push(format!(
                "access.rule[{}] is never used: access.rule[{}] comes first and matches every caller and repository it names (first match wins)",
                j + 1,
                i + 1
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(repos: &[&str], who: &[&str], actions: &[&str]) -> RuleSpec {
        let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect();
        RuleSpec {
            repositories: v(repos),
            who: v(who),
            actions: v(actions),
        }
    }

    fn policy(default: &str, specs: &[RuleSpec]) -> (Policy, Vec<(String, String)>) {
        let mut groups = BTreeMap::new();
        groups.insert(
            "ci".to_string(),
            vec!["builder".to_string(), "deployer".to_string()],
        );
        let mut problems = Vec::new();
        let p = Policy::build(Some(default), &groups, specs, &mut |k, m| {
            problems.push((k, m))
        });
        (p, problems)
    }

    #[test]
    fn first_matching_rule_decides_and_default_covers_the_rest() {
        let (p, problems) = policy(
            "pull",
            &[
                spec(&["team-a/secret"], &["*"], &["none"]),
                spec(&["team-a/**", "library/*"], &["@ci", "alice"], &["push"]),
                spec(&["**"], &["admin"], &["push", "delete"]),
                spec(&["public/**"], &["anonymous"], &["pull"]),
            ],
        );
        assert!(problems.is_empty(), "{problems:?}");
        let u = Principal::User;
        // The deny rule comes first, even for alice and admin.
        assert_eq!(p.rights(u("alice"), "team-a/secret"), Rights::NONE);
        assert_eq!(p.rights(u("admin"), "team-a/secret"), Rights::NONE);
        // Group members and named users; push implies pull.
        assert!(p.allows(u("builder"), "team-a/app", Action::Push));
        assert!(p.allows(u("builder"), "team-a/app", Action::Pull));
        assert!(!p.allows(u("builder"), "team-a/app", Action::Delete));
        assert!(p.allows(u("alice"), "library/nginx", Action::Push));
        // No rule for bob on team-a: the default.
        assert_eq!(
            p.rights(u("bob"), "team-a/app"),
            Rights::parse("pull").unwrap()
        );
        assert!(p.allows(u("admin"), "x/y", Action::Delete));
        // Anonymous: only its own rule, never the default.
        assert!(p.anonymous());
        assert!(p.allows(Principal::Anonymous, "public/base", Action::Pull));
        assert!(!p.allows(Principal::Anonymous, "public/base", Action::Push));
        assert_eq!(p.rights(Principal::Anonymous, "team-a/app"), Rights::NONE);
        // "*" does not include anonymous.
        assert_eq!(
            p.rights(Principal::Anonymous, "team-a/secret"),
            Rights::NONE
        );
    }

    #[test]
    fn mistakes_are_named_by_key() {
        let (_, problems) = policy(
            "maybe",
            &[
                spec(&["Team/**"], &["@nobody"], &["write"]),
                spec(&[], &[], &[]),
            ],
        );
        let keys: Vec<&str> = problems.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "access.default",
                "access.rule[1].repositories",
                "access.rule[1].who",
                "access.rule[1].actions",
                "access.rule[2].repositories",
                "access.rule[2].who",
                "access.rule[2].actions",
            ]
        );
        assert!(problems[2].1.contains("@nobody"));
    }

    #[test]
    fn remembered_decisions_are_the_rules_decisions() {
        let (p, _) = policy(
            "pull",
            &[
                spec(&["team/**"], &["@ci"], &["push"]),
                spec(&["team/x*"], &["*"], &["none"]),
                spec(&["public/**"], &["anonymous"], &["pull"]),
            ],
        );
        // More (caller, repository) pairs than slots, asked three times over, in an
        // order that makes pairs share slots: every answer is what the rules say.
        let users = ["builder", "deployer", "alice", "bob"];
        for round in 0..3 {
            for i in 0..3000 {
                let repo = match i % 3 {
                    0 => format!("team/x{i}"),
                    1 => format!("public/p{i}"),
                    _ => format!("team/a{i}"),
                };
                for who in users
                    .iter()
                    .map(|u| Principal::User(u))
                    .chain([Principal::Anonymous])
                {
                    assert_eq!(
                        p.rights(who, &repo),
                        p.walk(who, &repo),
                        "{round} {who:?} {repo}"
                    );
                }
            }
        }
    }

    #[test]
    fn the_need_comes_from_method_and_route() {
        let need_of = |method: &str, path: &str, query: Option<&str>| {
            let m = Method::from_bytes(method.as_bytes()).unwrap();
            let call = Call::parse(&m, path, query);
            match need(&call, &m) {
                Need::On {
                    repository,
                    action,
                    source,
                } => format!(
                    "{} {}{}",
                    action.as_str(),
                    repository.as_str(),
                    source
                        .map(|s| format!(" from {}", s.as_str()))
                        .unwrap_or_default()
                ),
                other => format!("{other:?}"),
            }
        };
        let d = format!("sha256:{}", "a".repeat(64));
        let cases = [
            ("GET", "/v2/".to_string(), None, "Nothing"),
            ("GET", "/v2/_catalog".into(), None, "Listing"),
            ("GET", "/v2/a/b/tags/list".into(), None, "pull a/b"),
            ("HEAD", "/v2/a/manifests/v1".into(), None, "pull a"),
            ("GET", format!("/v2/a/blobs/{d}"), None, "pull a"),
            ("GET", format!("/v2/a/referrers/{d}"), None, "pull a"),
            ("PUT", "/v2/a/manifests/v1".into(), None, "push a"),
            ("POST", "/v2/a/blobs/uploads/".into(), None, "push a"),
            (
                "PATCH",
                "/v2/a/blobs/uploads/some-id".into(),
                None,
                "push a",
            ),
            ("DELETE", "/v2/a/manifests/v1".into(), None, "delete a"),
            ("DELETE", format!("/v2/a/blobs/{d}"), None, "delete a"),
            // A method the route does not take still needs what the method would.
            ("POST", "/v2/a/tags/list".into(), None, "push a"),
            ("GET", "/v2/NOT-A-NAME/tags/list".into(), None, "Refuse"),
            ("GET", "/v2/a/nothing-here".into(), None, "Refuse"),
        ];
        for (method, path, query, want) in cases {
            assert_eq!(need_of(method, &path, query), want, "{method} {path}");
        }
        let mount = format!("mount={d}&from=lib/base");
        assert_eq!(
            need_of("POST", "/v2/a/blobs/uploads/", Some(&mount)),
            "push a from lib/base"
        );
    }

    #[test]
    fn shadowed_rules_are_reported() {
        let (p, _) = policy(
            "none",
            &[
                spec(&["team-a/**"], &["*"], &["pull"]),
                spec(&["team-a/app"], &["alice"], &["push"]),
                spec(&["team-a/app"], &["anonymous"], &["pull"]),
                spec(&["**"], &["@ci"], &["push"]),
                spec(&["library/*"], &["builder"], &["push"]),
            ],
        );
        assert_eq!(p.warnings().len(), 2, "{:?}", p.warnings());
        assert!(p.warnings()[0].starts_with("access.rule[2] is never used: access.rule[1]"));
        assert!(p.warnings()[1].starts_with("access.rule[5] is never used: access.rule[4]"));
    }
}
