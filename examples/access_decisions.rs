//! What one `[access]` decision costs, apart from everything else a request does: the
//! access suite's 50-rule worst case (the caller's rule last, every rule before it
//! naming the caller), asked 2,000,000 times, once through the table of remembered
//! decisions (the same caller and repository again, as in a pull) and once walking the
//! rules every time. Run: `cargo run --release --example access_decisions`.

use portcullis::access::{Action, Policy, Principal, RuleSpec};
use std::collections::BTreeMap;
fn main() {
    let mut groups = BTreeMap::new();
    groups.insert(
        "bench".to_string(),
        vec!["bench-bcrypt".to_string(), "someone-else".to_string()],
    );
    let mut specs = Vec::new();
    for i in 1..50 {
        let who = if i % 2 == 1 {
            "bench-bcrypt".to_string()
        } else {
            "@bench".to_string()
        };
        specs.push(RuleSpec {
            repositories: vec![
                format!("team-{i}/**"),
                format!("lib-{i}/*"),
                format!("app-{i}"),
            ],
            who: vec![who, format!("other-{i}")],
            actions: vec!["push".into()],
        });
    }
    specs.push(RuleSpec {
        repositories: vec!["bench/**".into()],
        who: vec!["@bench".into()],
        actions: vec!["pull".into()],
    });
    let p = Policy::build(Some("none"), &groups, &specs, &mut |k, m| {
        panic!("{k}: {m}")
    });
    let n = 2_000_000;
    let mut ok = 0;
    let t = std::time::Instant::now();
    for _ in 0..n {
        let who = Principal::User(std::hint::black_box("bench-bcrypt"));
        if p.allows(who, std::hint::black_box("bench/small"), Action::Pull) {
            ok += 1;
        }
    }
    let remembered = t.elapsed().as_nanos() as f64 / n as f64;
    let t = std::time::Instant::now();
    for _ in 0..n {
        let who = Principal::User(std::hint::black_box("bench-bcrypt"));
        if p.walk_rules(who, std::hint::black_box("bench/small"))
            .allows(Action::Pull)
        {
            ok += 1;
        }
    }
    let walked = t.elapsed().as_nanos() as f64 / n as f64;
    assert_eq!(ok, 2 * n, "the bench user may pull bench/**");
    println!("{remembered:.1} ns per remembered decision, {walked:.1} ns per walk over the rules");
}
