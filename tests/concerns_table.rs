//! The separation-of-concerns table (`scripts/eval/concerns_table.txt`) stays whole:
//! every non-test source file of `src/roles`, `src/actors` and `src/raft` (and the other
//! files the evaluation counts) has a rule, no function rule has gone stale, and every
//! message type the report lists still exists. `scripts/eval/concerns.py check` does the
//! work; these tests run it (python3, stdlib only) and show that it can fail.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn check(table: Option<&Path>) -> Output {
    let mut cmd = Command::new("python3");
    cmd.arg(root().join("scripts/eval/concerns.py")).arg("check");
    if let Some(t) = table {
        cmd.env("CONCERNS_TABLE", t);
    }
    match cmd.output() {
        Ok(out) => out,
        Err(e) => panic!("cannot run python3 for scripts/eval/concerns.py: {e}"),
    }
}

fn table_text() -> String {
    std::fs::read_to_string(root().join("scripts/eval/concerns_table.txt"))
        .unwrap_or_else(|e| panic!("read the table: {e}"))
}

fn write_table(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rolepax-concerns-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("temp dir: {e}"));
    let path = dir.join("table.txt");
    std::fs::write(&path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    path
}

#[test]
fn concerns_table_covers_every_counted_file() {
    let out = check(None);
    assert!(
        out.status.success(),
        "concerns.py check failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn concerns_table_without_a_file_rule_fails() {
    // As if src/roles/elector.rs were a new file nobody classified.
    let text: String = table_text()
        .lines()
        .filter(|l| !l.contains("src/roles/elector.rs"))
        .map(|l| format!("{l}\n"))
        .collect();
    let path = write_table("missing", &text);
    let out = check(Some(&path));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the check passed without a rule for elector.rs");
    assert!(
        err.contains("src/roles/elector.rs"),
        "the failure does not name the file: {err}"
    );
}

#[test]
fn concerns_table_with_a_stale_function_rule_fails() {
    let text = format!(
        "{}\npaxos src/roles/elector.rs  Elector::no_such_function  election\n",
        table_text()
    );
    let path = write_table("stale", &text);
    let out = check(Some(&path));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the check passed with a rule matching nothing");
    assert!(
        err.contains("no_such_function"),
        "the failure does not name the rule: {err}"
    );
}
