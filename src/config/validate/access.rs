//! `[access]`: the file's rules handed to `access::Policy::build`, which words each
//! problem (unknown action or group, malformed glob, empty list) for its key.

use super::super::file;
use super::Validator;

impl Validator {
    pub(super) fn access(&mut self, a: file::Access) -> crate::access::Policy {
        let specs: Vec<crate::access::RuleSpec> = a
            .rule
            .into_iter()
            .map(|r| crate::access::RuleSpec {
                repositories: r.repositories,
                who: r.who,
                actions: r.actions,
            })
            .collect();
        crate::access::Policy::build(a.default.as_deref(), &a.groups, &specs, &mut |k, m| {
            self.problem(&k, m)
        })
    }
}
