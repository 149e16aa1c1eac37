//! The layering the crate promises (docs/ARCHITECTURE.md, src/lib.rs), checked on the
//! source text:
//!
//! * a role core (anything under `src/roles/`) names no actix, tokio, file system,
//!   network or clock (`Instant`, `SystemTime`), not even in a comment;
//! * a role (acceptor, proposer, learner, elector, state machine) imports no other role,
//!   only the support modules beside them (ready, quorum, runs, rng, bugs);
//! * the crate's top-level modules import each other without a loop.
//!
//! Imports are read from the text, not from the compiler: every `crate::`, `super::`
//! and `self::` path (and `rolepax::` in `src/bin/`), groups in braces expanded, comments
//! left out. A path spelled another way (a `use` alias of a module, a macro building one)
//! is not seen.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// A source file: its path from the package root (`src/roles/acceptor.rs`) and its text.
type File = (String, String);

/// The role modules under `src/roles/`; the other modules there are support modules.
const ROLES: &[&str] = &["acceptor", "proposer", "learner", "elector", "state_machine"];

/// What a core must not name: the actor runtime, I/O, and the clock.
const CORE_FORBIDDEN: &[&str] = &["actix", "tokio", "std::fs", "std::net", "Instant", "SystemTime"];

/// Every `.rs` file under `src/`, paths with `/` separators, sorted.
fn source_tree() -> Vec<File> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<File>) {
        let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()));
        for entry in entries {
            let path = entry
                .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
                .path();
            if path.is_dir() {
                walk(root, &path, out);
            } else if path.extension().is_some_and(|x| x == "rs") {
                let text =
                    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
                let rel = path.strip_prefix(root).unwrap_or(&path);
                let parts: Vec<String> = rel
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect();
                out.push((parts.join("/"), text));
            }
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    walk(root, &root.join("src"), &mut files);
    files.sort();
    files
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// `text` with `//` and `/* */` comments blanked out (line numbers kept). Strings are
/// not parsed: a `//` inside one cuts the rest of its line, which no path spans.
fn without_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    let mut block = 0;
    while let Some(c) = chars.next() {
        match (c, chars.peek()) {
            ('/', Some('*')) => {
                chars.next();
                block += 1;
            }
            ('*', Some('/')) if block > 0 => {
                chars.next();
                block -= 1;
            }
            ('/', Some('/')) if block == 0 => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        out.push('\n');
                        break;
                    }
                }
            }
            ('\n', _) => out.push('\n'),
            _ if block == 0 => out.push(c),
            _ => {}
        }
    }
    out
}

/// The paths of `text` that begin with the segment `root` (not as the tail of a longer
/// path or identifier), as (line, segments) with groups in braces expanded:
/// `crate::a::{b, c::d}` gives `[crate, a, b]` and `[crate, a, c, d]`.
fn paths(text: &str, root: &str) -> Vec<(usize, Vec<String>)> {
    let mut found = Vec::new();
    let needle = format!("{root}::");
    for (at, _) in text.match_indices(&needle) {
        let before = text[..at].chars().next_back();
        if before.is_some_and(|c| is_ident(c) || c == ':') {
            continue;
        }
        let line = text[..at].matches('\n').count() + 1;
        let mut rest = text[at + needle.len()..].chars().peekable();
        for tail in path_tail(&mut rest) {
            let mut segments = vec![root.to_string()];
            // `a::{self, b}`: the `self` is `a`.
            segments.extend(tail.into_iter().filter(|s| s != "self"));
            found.push((line, segments));
        }
    }
    found
}

/// The segments after a `::`: an identifier and what follows it, or a group in braces.
fn path_tail(rest: &mut std::iter::Peekable<std::str::Chars<'_>>) -> Vec<Vec<String>> {
    while rest.next_if(|c| c.is_whitespace()).is_some() {}
    if rest.next_if_eq(&'{').is_some() {
        let mut all = Vec::new();
        loop {
            while rest.next_if(|c| c.is_whitespace() || *c == ',').is_some() {}
            if rest.peek().is_none() || rest.next_if_eq(&'}').is_some() {
                return all;
            }
            let before = all.len();
            all.extend(path_tail(rest));
            if all.len() == before {
                // Not a path (`*`, `self as x`): skip to the next item of the group.
                while rest.next_if(|c| !matches!(c, ',' | '}')).is_some() {}
            }
        }
    }
    let mut ident = String::new();
    while let Some(c) = rest.next_if(|c| is_ident(*c)) {
        ident.push(c);
    }
    if ident.is_empty() {
        return Vec::new();
    }
    let mut probe = rest.clone();
    if probe.next() == Some(':') && probe.next() == Some(':') {
        *rest = probe;
        let tails = path_tail(rest);
        if !tails.is_empty() {
            return tails
                .into_iter()
                .map(|t| std::iter::once(ident.clone()).chain(t).collect())
                .collect();
        }
    }
    vec![vec![ident]]
}

/// The module a file under `src/` is, as segments from the crate root
/// (`src/roles/proposer/mod.rs` is `[roles, proposer]`).
fn module_of(path: &str) -> Vec<String> {
    let inner = path.strip_prefix("src/").unwrap_or(path).trim_end_matches(".rs");
    let mut segments: Vec<String> = inner.split('/').map(str::to_string).collect();
    if segments.last().is_some_and(|s| s == "mod" || s == "lib") {
        segments.pop();
    }
    segments
}

/// The crate-relative paths a file mentions (`crate::`, `super::`, `self::`), each with
/// its line; `super::` and `self::` are resolved from the file's module (a `super::` in
/// an inline module, `mod tests`, is taken as the file's own).
fn crate_paths(path: &str, text: &str) -> Vec<(usize, Vec<String>)> {
    let code = without_comments(text);
    let module = module_of(path);
    let mut all: Vec<(usize, Vec<String>)> = paths(&code, "crate")
        .into_iter()
        .map(|(line, p)| (line, p[1..].to_vec()))
        .collect();
    for root in ["super", "self"] {
        for (line, p) in paths(&code, root) {
            let ups = p.iter().take_while(|s| *s == "super").count();
            let Some(keep) = module.len().checked_sub(ups) else {
                continue; // above the crate root: not a path of this crate
            };
            let rest = p.iter().skip(if root == "self" { 1 } else { ups });
            all.push((line, module[..keep].iter().cloned().chain(rest.cloned()).collect()));
        }
    }
    all.sort();
    all
}

/// (a): a file under `src/roles/` that names the runtime, I/O or the clock.
fn core_io_violations(files: &[File]) -> Vec<String> {
    let mut found = Vec::new();
    for (path, text) in files.iter().filter(|(p, _)| p.starts_with("src/roles/")) {
        for (n, line) in text.lines().enumerate() {
            for word in CORE_FORBIDDEN {
                let named = line.match_indices(word).any(|(at, _)| {
                    let before = line[..at].chars().next_back();
                    let after = line[at + word.len()..].chars().next();
                    !before.is_some_and(is_ident) && !after.is_some_and(char::is_alphanumeric)
                });
                if named {
                    found.push(format!(
                        "{path}:{}: a role core names `{word}` (cores do no I/O and read no clock): {}",
                        n + 1,
                        line.trim()
                    ));
                }
            }
        }
        // `use std::{fs, net}` names them too.
        for (line, p) in paths(&without_comments(text), "std") {
            if let Some(m) = p.get(1).filter(|m| *m == "fs" || *m == "net") {
                found.push(format!("{path}:{line}: a role core names `std::{m}` (through a group)"));
            }
        }
    }
    found.sort();
    found.dedup();
    found
}

/// (b): a role module that imports another role module.
fn role_import_violations(files: &[File]) -> Vec<String> {
    let mut found = Vec::new();
    for (path, text) in files {
        let module = module_of(path);
        let Some(own) = module
            .get(1)
            .filter(|r| module[0] == "roles" && ROLES.contains(&r.as_str()))
        else {
            continue;
        };
        for (line, p) in crate_paths(path, text) {
            if let [top, other, ..] = p.as_slice()
                && top == "roles"
                && other != own
                && ROLES.contains(&other.as_str())
            {
                found.push(format!(
                    "{path}:{line}: role `{own}` imports role `{other}` (`{}`); roles talk by messages, and share only roles::{{ready, quorum, runs, rng, bugs}}",
                    p.join("::")
                ));
            }
        }
    }
    found.dedup();
    found
}

/// The top-level module a file belongs to (`src/actors/node.rs`: `actors`), none for
/// the crate root.
fn top_module(path: &str) -> Option<String> {
    module_of(path).first().cloned()
}

/// The top-level modules and, for each import of one by another, where it first is:
/// `edges[from][to] = "src/x.rs:3 crate::to::Thing"`.
fn module_graph(files: &[File]) -> BTreeMap<String, BTreeMap<String, String>> {
    let modules: BTreeSet<String> = files.iter().filter_map(|(p, _)| top_module(p)).collect();
    let mut edges: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for (path, text) in files {
        let Some(from) = top_module(path) else { continue };
        let mut mentions = crate_paths(path, text);
        if from == "bin" {
            let code = without_comments(text);
            mentions.extend(paths(&code, "rolepax").into_iter().map(|(l, p)| (l, p[1..].to_vec())));
        }
        for (line, p) in mentions {
            let Some(to) = p.first().filter(|to| **to != from && modules.contains(*to)) else {
                continue;
            };
            edges
                .entry(from.clone())
                .or_default()
                .entry(to.clone())
                .or_insert_with(|| format!("{path}:{line} `{}`", p.join("::")));
        }
    }
    edges
}

/// (c): every import loop between top-level modules (each one once, whatever module it
/// is entered by), with where each of its imports is.
fn import_loops(files: &[File]) -> Vec<String> {
    let edges = module_graph(files);
    let mut loops = BTreeSet::new();
    for start in edges.keys() {
        // Depth-first from `start`, through modules above it only: each loop is found
        // from its least module, once per distinct path.
        let mut stack = vec![(start.clone(), vec![start.clone()])];
        while let Some((at, trail)) = stack.pop() {
            for to in edges.get(&at).into_iter().flat_map(BTreeMap::keys) {
                if to == start {
                    loops.insert(trail.clone());
                } else if to > start && !trail.contains(to) {
                    let mut longer = trail.clone();
                    longer.push(to.clone());
                    stack.push((to.clone(), longer));
                }
            }
        }
    }
    loops
        .into_iter()
        .map(|trail| {
            let hops: Vec<String> = trail
                .iter()
                .zip(trail.iter().skip(1).chain(trail.first()))
                .map(|(a, b)| format!("  {a} -> {b}: {}", edges[a][b]))
                .collect();
            format!(
                "import loop {} -> {}:\n{}",
                trail.join(" -> "),
                trail[0],
                hops.join("\n")
            )
        })
        .collect()
}

fn assert_none(what: &str, found: Vec<String>) {
    assert!(found.is_empty(), "{what}:\n{}", found.join("\n"));
}

#[test]
fn architecture_role_cores_do_no_io() {
    assert_none(
        "role cores that name I/O or a clock",
        core_io_violations(&source_tree()),
    );
}

#[test]
fn architecture_roles_do_not_import_each_other() {
    assert_none("roles that import another role", role_import_violations(&source_tree()));
}

#[test]
fn architecture_top_level_modules_have_no_import_loop() {
    let files = source_tree();
    assert!(
        module_graph(&files).len() > 5,
        "the module graph is nearly empty: are the sources where this test looks?"
    );
    assert_none("import loops between top-level modules", import_loops(&files));
}

/// `found` is one report per entry of `expected`, each beginning as that entry does.
fn assert_reports(found: Vec<String>, expected: &[&str]) {
    for e in expected {
        assert!(found.iter().any(|f| f.starts_with(e)), "{e:?} not in {found:#?}");
    }
    assert_eq!(found.len(), expected.len(), "{found:#?}");
}

/// Each check fails on a tree that breaks it, at the right file and line.
#[test]
fn architecture_checks_catch_a_broken_tree() {
    let file = |path: &str, text: &str| (path.to_string(), text.to_string());
    let fake = vec![
        file("src/lib.rs", "pub mod alpha;\npub mod beta;\npub mod roles;\n"),
        file(
            "src/roles/acceptor.rs",
            "use super::ready::Ready;\nuse actix::prelude::*;\n// when: Instant::now()\nuse std::{collections::BTreeMap, fs};\n",
        ),
        file(
            "src/roles/learner.rs",
            "use super::{bugs::PlantedBugs, acceptor::Acceptor};\nuse crate::roles::quorum::Quorum;\n",
        ),
        file("src/roles/proposer/mod.rs", "mod batch;\nuse super::rng::SeededRng;\n"),
        file(
            "src/roles/proposer/batch.rs",
            "use super::Proposer;\nuse super::super::elector::Elector;\nfn f() -> crate::roles::state_machine::X { X }\n",
        ),
        file(
            "src/roles/ready.rs",
            "use super::acceptor::Acceptor; // support modules are not checked\n",
        ),
        file("src/alpha.rs", "use crate::beta::B;\nuse crate::alpha::A;\n"),
        file("src/beta/mod.rs", "mod inner;\n"),
        file(
            "src/beta/inner.rs",
            "// crate::gamma is only a comment\nuse crate::{roles::ready, alpha::A};\n",
        ),
        file("src/bin/tool.rs", "use rolepax::alpha::A;\n"),
    ];

    assert_reports(
        core_io_violations(&fake),
        &[
            "src/roles/acceptor.rs:2: a role core names `actix`",
            "src/roles/acceptor.rs:3: a role core names `Instant`",
            "src/roles/acceptor.rs:4: a role core names `std::fs`",
        ],
    );
    assert_reports(
        role_import_violations(&fake),
        &[
            "src/roles/learner.rs:1: role `learner` imports role `acceptor`",
            "src/roles/proposer/batch.rs:2: role `proposer` imports role `elector`",
            "src/roles/proposer/batch.rs:3: role `proposer` imports role `state_machine`",
        ],
    );

    let loops = import_loops(&fake);
    assert_eq!(loops.len(), 1, "{loops:#?}");
    assert!(
        loops[0].starts_with("import loop alpha -> beta -> alpha:"),
        "{}",
        loops[0]
    );
    assert!(
        loops[0].contains("alpha -> beta: src/alpha.rs:1 `beta::B`"),
        "{}",
        loops[0]
    );
    assert!(
        loops[0].contains("beta -> alpha: src/beta/inner.rs:2 `alpha::A`"),
        "{}",
        loops[0]
    );
}
