//! Runs every scenario script in `tests/scenarios/*.txt` (see `rolepax::harness::sim::script`
//! for the format) against the deterministic simulator, and compares what each step
//! printed with what the script recorded. All failing files are reported together.
//!
//! `UPDATE_SCENARIOS=1 cargo test --test scenarios` rewrites the recorded output in
//! place instead (`SCENARIO=word` limits either to the files whose name contains
//! `word`): read the diff (`git diff tests/scenarios`) before committing it.

use rolepax::harness::sim::script::{check_file, run_script, update_requested};
use std::path::PathBuf;

#[test]
fn scenarios() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/scenarios");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "txt"))
        .collect();
    files.sort();
    // `SCENARIO=word` runs only the files whose name contains `word`.
    if let Ok(only) = std::env::var("SCENARIO") {
        files.retain(|f| f.file_name().is_some_and(|n| n.to_string_lossy().contains(&only)));
        assert!(!files.is_empty(), "no scenario matches SCENARIO={only:?}");
    } else {
        assert!(
            files.len() >= 25,
            "expected at least 25 scenarios, found {}",
            files.len()
        );
    }
    let update = update_requested();
    let mut failures = Vec::new();
    for file in &files {
        if let Err(e) = check_file(file, update) {
            failures.push(e);
        }
    }
    // A script is a pure function of its text: two runs print the same.
    for file in &files {
        let Ok(text) = std::fs::read_to_string(file) else {
            continue;
        };
        let name = file.display().to_string();
        if let (Ok(a), Ok(b)) = (run_script(&name, &text), run_script(&name, &text))
            && a.rendered != b.rendered
        {
            failures.push(format!("{name}: two runs of the script printed different output"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} scenario(s) failed (UPDATE_SCENARIOS=1 rewrites the expected output):\n\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
}
