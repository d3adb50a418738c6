//! The crate's shape as tests (CONVENTIONS.md 3 and 14, issue 9): dependencies between
//! top-level modules run one way (no `crate::` import cycle), every source file opens
//! with a `//!` line saying what it owns, and no file carries more than
//! [`MAX_LINES`] lines of non-test code. Reads `src/` as text; nothing is compiled.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Most lines of non-test code (before the file's `#[cfg(test)]`) in one source file.
const MAX_LINES: usize = 600;

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under `src/`, as (path relative to the crate, text), sorted.
fn sources() -> Vec<(String, String)> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        for e in entries {
            let p = e
                .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
                .path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    let mut files = Vec::new();
    walk(&src_dir(), &mut files);
    files.sort();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out: Vec<(String, String)> = files
        .into_iter()
        .map(|p| {
            let text =
                std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            let rel = p
                .strip_prefix(root)
                .unwrap_or(&p)
                .to_string_lossy()
                .replace('\\', "/");
            (rel, text)
        })
        .collect();
    assert!(out.len() > 10, "found only {} files under src/", out.len());
    out
}

/// The code of a Rust file with comments blanked and the contents of string and
/// character literals blanked (newlines kept), so braces and paths can be read
/// without a parser being fooled by `"{"` or a doc comment that mentions `crate::x`.
fn code_only(src: &str) -> String {
    let b: Vec<char> = src.chars().collect();
    let mut out = String::with_capacity(src.len());
    let blank = |c: char| if c == '\n' { '\n' } else { ' ' };
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let next = b.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < b.len() && b[i] != '\n' {
                out.push(' ');
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < b.len() {
                if b[i] == '/' && b.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if b[i] == '*' && b.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    out.push(blank(b[i]));
                    i += 1;
                }
            }
        } else if (c == 'r' || c == 'b')
            && !b
                .get(i.wrapping_sub(1))
                .is_some_and(|p| p.is_alphanumeric() || *p == '_')
            && raw_string_start(&b, i).is_some()
        {
            // r"..", r#".."#, br#".."#: no escapes, ends at a quote and as many #.
            let (quote, hashes) = raw_string_start(&b, i).unwrap_or((i, 0));
            out.extend(std::iter::repeat_n(' ', quote + 1 - i));
            i = quote + 1;
            while i < b.len() {
                if b[i] == '"' && (1..=hashes).all(|k| b.get(i + k) == Some(&'#')) {
                    out.extend(std::iter::repeat_n(' ', hashes + 1));
                    i += hashes + 1;
                    break;
                }
                out.push(blank(b[i]));
                i += 1;
            }
        } else if c == '"' {
            out.push(' ');
            i += 1;
            while i < b.len() && b[i] != '"' {
                if b[i] == '\\' {
                    out.push(' ');
                    i += 1;
                }
                if i < b.len() {
                    out.push(blank(b[i]));
                    i += 1;
                }
            }
            out.push(' ');
            i += 1;
        } else if c == '\'' {
            // A character literal ('x', '\n', '\u{..}', '{') or a lifetime ('a).
            let end = if next == Some('\\') {
                (i + 2..b.len()).find(|&k| b[k] == '\'')
            } else if b.get(i + 2) == Some(&'\'') {
                Some(i + 2)
            } else {
                None
            };
            match end {
                Some(e) => {
                    out.extend(std::iter::repeat_n(' ', e + 1 - i));
                    i = e + 1;
                }
                None => {
                    out.push(c);
                    i += 1;
                }
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// At `i`, the start of a raw string literal: the index of its opening quote and the
/// number of `#`.
fn raw_string_start(b: &[char], i: usize) -> Option<(usize, usize)> {
    let mut k = i;
    if b.get(k) == Some(&'b') {
        k += 1;
    }
    if b.get(k) != Some(&'r') {
        return None;
    }
    k += 1;
    let mut hashes = 0;
    while b.get(k) == Some(&'#') {
        hashes += 1;
        k += 1;
    }
    (b.get(k) == Some(&'"')).then_some((k, hashes))
}

/// `code` without its `#[cfg(test)]` items (the `mod tests { .. }` blocks and any
/// other item so marked): what ships.
fn without_tests(code: &str) -> String {
    let mut out = code.to_string();
    while let Some(at) = out.find("#[cfg(test)]") {
        let after = at + "#[cfg(test)]".len();
        // The item ends at its first `;` before any `{`, or at the brace closing the
        // first `{`.
        let rest = &out[after..];
        let end = match (rest.find('{'), rest.find(';')) {
            (Some(open), semi) if semi.is_none_or(|s| s > open) => {
                let mut depth = 0usize;
                let mut end = rest.len();
                for (k, ch) in rest[open..].char_indices() {
                    match ch {
                        '{' => depth += 1,
                        '}' => {
                            depth -= 1;
                            if depth == 0 {
                                end = open + k + 1;
                                break;
                            }
                        }
                        _ => {}
                    }
                }
                end
            }
            (_, Some(semi)) => semi + 1,
            _ => rest.len(),
        };
        let blanked: String = out[at..after + end]
            .chars()
            .map(|c| if c == '\n' { '\n' } else { ' ' })
            .collect();
        out.replace_range(at..after + end, &blanked);
    }
    out
}

/// The top-level module a file belongs to: `src/upstream/forward.rs` → `upstream`.
/// `None` for the crate root and the binary.
fn family(rel: &str) -> Option<String> {
    let inner = rel.strip_prefix("src/")?;
    if inner == "lib.rs" || inner == "main.rs" {
        return None;
    }
    let first = inner.split('/').next()?;
    Some(first.trim_end_matches(".rs").to_string())
}

fn ident_at(code: &str, at: usize) -> &str {
    let rest = &code[at..];
    let end = rest
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(rest.len());
    &rest[..end]
}

/// The top-level modules (or the crate root, `lib`) that `code` names through
/// `crate::…`, in `use` lines, `use crate::{a, b::c}` groups and inline paths alike.
fn crate_references(code: &str, modules: &BTreeSet<String>) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut name = |n: &str| {
        if n.is_empty() || n == "self" {
            return;
        }
        // Anything at the crate root that is not a module is an item of lib.rs.
        found.insert(if modules.contains(n) {
            n.to_string()
        } else {
            "lib".to_string()
        });
    };
    let mut from = 0;
    while let Some(k) = code[from..].find("crate::") {
        let at = from + k;
        from = at + "crate::".len();
        let preceded = code[..at]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$');
        if preceded {
            continue;
        }
        let after = code[from..].trim_start();
        if let Some(group) = after.strip_prefix('{') {
            // One level of a use group: each element's first segment.
            let mut depth = 0usize;
            let mut start = 0;
            for (k, ch) in group.char_indices() {
                match ch {
                    '{' => depth += 1,
                    '}' if depth == 0 => {
                        name(ident_at(group[start..].trim_start(), 0));
                        break;
                    }
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        name(ident_at(group[start..].trim_start(), 0));
                        start = k + 1;
                    }
                    _ => {}
                }
            }
        } else {
            name(ident_at(after, 0));
        }
    }
    found
}

/// Edges between top-level modules (and `lib` for the crate root's own items), each
/// with the files that make it.
fn module_graph() -> Graph {
    let files = sources();
    let modules: BTreeSet<String> = files.iter().filter_map(|(p, _)| family(p)).collect();
    let mut graph: BTreeMap<String, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for (rel, text) in &files {
        if rel == "src/main.rs" {
            continue;
        }
        let code = without_tests(&code_only(text));
        let from = family(rel).unwrap_or_else(|| "lib".to_string());
        let mut targets = crate_references(&code, &modules);
        if from == "lib" {
            // The crate root names its modules without `crate::` (declarations apart).
            for line in code.lines() {
                let t = line.trim_start();
                if t.starts_with("pub mod ") || t.starts_with("mod ") {
                    continue;
                }
                for m in &modules {
                    let pat = format!("{m}::");
                    let mut s = 0;
                    while let Some(k) = t[s..].find(&pat) {
                        let at = s + k;
                        s = at + pat.len();
                        let prev = t[..at].chars().next_back();
                        if !prev.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                            targets.insert(m.clone());
                        }
                    }
                }
            }
        }
        for t in targets {
            if t != from {
                graph
                    .entry(from.clone())
                    .or_default()
                    .entry(t)
                    .or_default()
                    .insert(rel.clone());
            }
        }
    }
    graph
}

type Graph = BTreeMap<String, BTreeMap<String, BTreeSet<String>>>;

/// The shortest cycle through `start`, as the modules in order (`start` first and
/// last), if there is one.
fn shortest_cycle_through(graph: &Graph, start: &str) -> Option<Vec<String>> {
    let mut came_from: BTreeMap<&str, &str> = BTreeMap::new();
    let mut queue = std::collections::VecDeque::from([start]);
    while let Some(n) = queue.pop_front() {
        for next in graph.get(n).into_iter().flat_map(|e| e.keys()) {
            if next == start {
                // Walk back from `n` to `start`, then read it forwards.
                let mut back = vec![start.to_string()];
                let mut at = n;
                while at != start {
                    back.push(at.to_string());
                    at = came_from[at];
                }
                back.push(start.to_string());
                back.reverse();
                return Some(back);
            }
            if !came_from.contains_key(next.as_str()) {
                came_from.insert(next, n);
                queue.push_back(next);
            }
        }
    }
    None
}

/// Every module's shortest cycle, each cycle once (whichever module it is read from).
fn cycles(graph: &Graph) -> Vec<Vec<String>> {
    let mut seen: BTreeSet<Vec<String>> = BTreeSet::new();
    let mut out = Vec::new();
    for n in graph.keys() {
        if let Some(c) = shortest_cycle_through(graph, n) {
            let mut members = c[1..].to_vec();
            members.sort();
            if seen.insert(members) {
                out.push(c);
            }
        }
    }
    out
}

#[test]
fn no_import_cycle_between_top_level_modules() {
    let graph = module_graph();
    // The reader must see real edges, or the check proves nothing.
    assert!(
        graph.get("proxy").is_some_and(|e| e.contains_key("auth")),
        "the graph misses proxy → auth: {graph:?}"
    );
    let found = cycles(&graph);
    let spelled: Vec<String> = found
        .iter()
        .map(|cycle| {
            let steps: Vec<String> = cycle
                .windows(2)
                .map(|w| {
                    let files: Vec<&str> = graph[&w[0]][&w[1]].iter().map(String::as_str).collect();
                    format!("    {} → {} ({})", w[0], w[1], files.join(", "))
                })
                .collect();
            format!("  {}\n{}", cycle.join(" → "), steps.join("\n"))
        })
        .collect();
    assert!(
        found.is_empty(),
        "import cycles between top-level modules (`lib` = items of src/lib.rs):\n{}",
        spelled.join("\n")
    );
}

#[test]
fn lib_rs_only_declares_modules() {
    let text = std::fs::read_to_string(src_dir().join("lib.rs")).expect("src/lib.rs");
    let code = code_only(&text);
    let stray: Vec<&str> = code
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .filter(|l| !(l.starts_with("pub mod ") || l.starts_with("mod ") || l.starts_with("#![")))
        .collect();
    assert!(
        stray.is_empty(),
        "src/lib.rs holds more than module declarations: {stray:?}"
    );
}

#[test]
fn every_source_file_opens_with_a_module_doc_line() {
    let missing: Vec<String> = sources()
        .into_iter()
        .filter(|(_, text)| !text.starts_with("//!"))
        .map(|(p, _)| p)
        .collect();
    assert!(
        missing.is_empty(),
        "files without a leading `//!` line: {missing:?}"
    );
}

#[test]
fn no_source_file_exceeds_the_line_budget() {
    let over: Vec<String> = sources()
        .into_iter()
        .filter_map(|(p, text)| {
            let n = text
                .lines()
                // The test module's attribute, not one on a statement inside a function.
                .position(|l| l.starts_with("#[cfg(test)]"))
                .unwrap_or_else(|| text.lines().count());
            (n > MAX_LINES).then(|| format!("{p} ({n} lines)"))
        })
        .collect();
    assert!(
        over.is_empty(),
        "files over {MAX_LINES} lines of non-test code: {}",
        over.join(", ")
    );
}

#[test]
fn the_reader_sees_through_strings_comments_and_test_modules() {
    let modules: BTreeSet<String> = ["a", "b", "c", "d", "e"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let code = without_tests(&code_only(
        "//! mentions crate::a\nuse crate::{b, c::X};\nfn f() { let s = \"crate::d {\"; let c = '{'; crate::e::g(); }\n#[cfg(test)]\nmod tests { use crate::a; }\n",
    ));
    let found = crate_references(&code, &modules);
    let want: BTreeSet<String> = ["b", "c", "e"].iter().map(|s| s.to_string()).collect();
    assert_eq!(found, want);
}
