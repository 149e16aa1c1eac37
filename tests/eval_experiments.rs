//! `rolepax-bench experiment` and `rolepax-bench report` end to end, with tiny knobs:
//! two failover trials on a Paxos cluster of real `rolepax-node` processes (the CSV has
//! its header and two measured rows, every node is gone afterwards), then the report
//! over that CSV (it names every experiment, draws the failover chart, says which ones
//! were not measured). A cluster whose binary does not exist fails loudly with exit 2.
//!
//! Leaves out the other experiments' loads (they share the load loop the unit and
//! bench_cli tests cover) and the Raft engine (scripts/evaluate.sh runs both).

use std::process::Command;

fn bench(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_rolepax-bench"))
        .args(args)
        .output()
        .expect("run rolepax-bench")
}

fn text(o: &std::process::Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn eval_failover_two_trials_then_report() {
    let dir = tempfile::tempdir().expect("tempdir");
    let eval = dir.path().join("eval");
    let eval_s = eval.to_string_lossy().to_string();
    let out = bench(&[
        "experiment",
        "failover",
        "--engines",
        "paxos",
        "--trials",
        "2",
        "--ranges",
        "150-300",
        "--node-bin",
        env!("CARGO_BIN_EXE_rolepax-node"),
        "--out-dir",
        &eval_s,
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let csv = std::fs::read_to_string(eval.join("failover.csv")).expect("failover.csv written");
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 3, "{csv}");
    assert!(lines[0].starts_with("engine,range,"), "{csv}");
    for row in &lines[1..] {
        let f: Vec<&str> = row.split(',').collect();
        assert_eq!((f[0], f[1], f[13]), ("paxos", "150-300", "ok"), "{row}");
        let election: f64 = f[10].parse().expect("election_ms is a number");
        assert!(election > 0.0 && election < 20_000.0, "{row}");
    }
    // Every node it started is gone: no process still has the experiment's config open.
    let leftover = Command::new("pgrep")
        .args(["-f", "rolepax-eval-paxos-3"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    assert!(leftover.is_empty(), "nodes left running: {leftover}");

    let md = dir.path().join("EVALUATION.md");
    let md_s = md.to_string_lossy().to_string();
    let out = bench(&["report", "--dir", &eval_s, "--out", &md_s, "--commit", "test"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let report = std::fs::read_to_string(&md).expect("report written");
    for wanted in [
        "## 1. Headline",
        "## 2. Failover",
        "## 3. Throughput and latency against cluster size",
        "## 4. Read/write mixes",
        "## 5. Stragglers",
        "## 6. etcd",
        "| paxos | 150-300 | 10 / 50 / 150–300 | 2/2 |",
        "Not measured: `size.csv` is missing",
        "](eval/failover.svg)",
    ] {
        assert!(report.contains(wanted), "report lacks {wanted:?}:\n{report}");
    }
    let svg = std::fs::read_to_string(eval.join("failover.svg")).expect("failover.svg");
    assert!(svg.starts_with("<svg ") && svg.trim_end().ends_with("</svg>"));
}

#[test]
fn eval_missing_node_binary_fails_loudly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let eval_s = dir.path().to_string_lossy().to_string();
    let out = bench(&[
        "experiment",
        "size",
        "--engines",
        "paxos",
        "--sizes",
        "3",
        "--node-bin",
        "/nonexistent/rolepax-node",
        "--out-dir",
        &eval_s,
        "--duration",
        "1",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let csv = std::fs::read_to_string(dir.path().join("size.csv")).expect("size.csv written");
    assert!(csv.contains("error") && csv.contains("no rolepax-node binary"), "{csv}");
}
