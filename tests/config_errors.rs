//! Broken configuration files are refused with a message naming the key: through
//! `Settings::load`, and through the real `rolepax-node` binary (exit code 2, the key on
//! stderr); so is a data directory of the older layout whose ballot is only in sled
//! (exit code 1). Leaves out valid files (unit tests in `src/config.rs`).

use rolepax::config::Settings;
use std::path::{Path, PathBuf};
use std::process::Command;

const NODES: &str = r#"
[[nodes]]
id = 1
peer_addr = "127.0.0.1:7101"
http_addr = "127.0.0.1:7201"
[[nodes]]
id = 2
peer_addr = "127.0.0.1:7102"
http_addr = "127.0.0.1:7202"
"#;

/// (case, file text, id to start, what the message must name)
fn broken() -> Vec<(&'static str, String, u64, &'static str)> {
    vec![
        ("bad toml", format!("cluster_id = \"x\n{NODES}"), 1, "TOML"),
        ("unknown id", NODES.to_string(), 7, "`id`"),
        ("duplicate ids", NODES.replace("id = 2", "id = 1"), 1, "nodes[1].id"),
        (
            "bad address",
            NODES.replace("127.0.0.1:7202", "127.0.0.1:http"),
            1,
            "nodes[1].http_addr",
        ),
        (
            "duplicate address",
            NODES.replace("127.0.0.1:7202", "127.0.0.1:7101"),
            1,
            "nodes[1].http_addr",
        ),
        (
            "election min >= max",
            format!("election_min_ms = 500\nelection_max_ms = 400\n{NODES}"),
            1,
            "election_min_ms",
        ),
        ("zero tick", format!("tick_ms = 0\n{NODES}"), 1, "tick_ms"),
        ("unknown key", format!("heartbeat = 5\n{NODES}"), 1, "heartbeat"),
        ("wrong type", format!("max_batch = \"many\"\n{NODES}"), 1, "max_batch"),
        ("unknown engine", format!("engine = \"zab\"\n{NODES}"), 1, "engine"),
    ]
}

fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> PathBuf {
    let path = dir.path().join(format!("{}.toml", name.replace(' ', "-")));
    std::fs::write(&path, text).expect("write the config file");
    path
}

#[test]
fn config_broken_files_are_refused_naming_the_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (case, text, id, key) in broken() {
        let path = write(&dir, case, &text);
        let result = Settings::load(&path, Vec::new()).and_then(|s| s.for_node(id, None));
        match result {
            Ok(_) => panic!("{case}: accepted"),
            Err(e) => assert!(e.to_string().contains(key), "{case}: {e:?} does not name {key}"),
        }
    }
    let missing = Settings::load(&dir.path().join("absent.toml"), Vec::new());
    assert!(missing.is_err_and(|e| e.to_string().contains("absent.toml")));
}

#[test]
fn config_node_binary_exits_2_naming_the_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bin = env!("CARGO_BIN_EXE_rolepax-node");
    for (case, text, id, key) in broken() {
        let path = write(&dir, case, &text);
        let out = Command::new(bin)
            .args(["--config", &path.to_string_lossy(), "--id", &id.to_string()])
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .env_remove("RUST_LOG")
            .output()
            .expect("run rolepax-node");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{case}: stderr {stderr}");
        assert!(stderr.contains(key), "{case}: stderr {stderr:?} does not name {key}");
    }
    // Bad usage and a bad environment override are refused the same way.
    let good = write(&dir, "good", NODES);
    for (args, env, key) in [
        (vec!["--config", "x.toml"], None, "--id"),
        (vec!["--config", &*good.to_string_lossy(), "--id", "one"], None, "--id"),
        (
            vec!["--config", &*good.to_string_lossy(), "--id", "1"],
            Some(("ROLEPAX_TICK_MS", "0")),
            "tick_ms",
        ),
        (
            vec!["--config", &*good.to_string_lossy(), "--id", "1"],
            Some(("ROLEPAX_TIKC_MS", "5")),
            "ROLEPAX_TIKC_MS",
        ),
    ] {
        let mut cmd = Command::new(bin);
        cmd.args(&args).env_remove("RUST_LOG");
        if let Some((k, v)) = env {
            cmd.env(k, v);
        }
        let out = cmd.output().expect("run rolepax-node");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(key), "{args:?}: {stderr:?} does not name {key}");
    }
}

#[test]
fn node_binary_refuses_a_data_directory_whose_ballot_is_in_sled() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Port 0: the node must fail on its data directory, not on a port in use.
    let any_ports = ["7101", "7102", "7201", "7202"]
        .iter()
        .fold(NODES.to_string(), |text, port| text.replace(port, "0"));
    let config = write(&dir, "any ports", &any_ports);
    let data = dir.path().join("old");
    std::fs::create_dir_all(data.join("sled")).expect("an old layout's sled directory");
    let out = Command::new(env!("CARGO_BIN_EXE_rolepax-node"))
        .args(["--config", &config.to_string_lossy(), "--id", "1", "--data-dir"])
        .arg(&data)
        .env_remove("RUST_LOG")
        .output()
        .expect("run rolepax-node");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr {stderr}");
    for says in ["older layout", "sled", "ballot", "unsafe"] {
        assert!(stderr.contains(says), "{says:?} missing in {stderr:?}");
    }
    let left: Vec<_> = std::fs::read_dir(&data)
        .expect("read the data directory")
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(left, vec!["sled"], "the refused data directory is left as it was");
}

/// Runs `rolepax-node --config CONFIG --id 1 --engine ENGINE [--data-dir DATA]` to its exit.
fn run_node(config: &Path, engine: &str, data: Option<&Path>) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rolepax-node"));
    cmd.args(["--config", &config.to_string_lossy(), "--id", "1", "--engine", engine])
        .env_remove("RUST_LOG");
    if let Some(data) = data {
        cmd.arg("--data-dir").arg(data);
    }
    cmd.output().expect("run rolepax-node")
}

#[test]
fn node_binary_refuses_a_data_directory_of_the_other_engine() {
    let dir = tempfile::tempdir().expect("tempdir");
    let any_ports = ["7101", "7102", "7201", "7202"]
        .iter()
        .fold(NODES.to_string(), |text, port| text.replace(port, "0"));
    let config = write(&dir, "any ports", &any_ports);
    for (holds, started) in [("raft", "paxos"), ("paxos", "raft")] {
        let data = dir.path().join(holds);
        std::fs::create_dir_all(&data).expect("data directory");
        std::fs::write(data.join("engine"), holds).expect("engine mark");
        let out = run_node(&config, started, Some(&data));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "stderr {stderr}");
        for says in [format!("state of the {holds} engine"), format!("engine {started}")] {
            assert!(stderr.contains(&says), "{says:?} missing in {stderr:?}");
        }
    }
    // A directory of the older layout (before two engines) is Paxos's.
    let old = dir.path().join("old");
    std::fs::create_dir_all(&old).expect("data directory");
    std::fs::write(old.join("acceptor.wal.0000000000000000"), b"").expect("a Paxos log");
    let out = run_node(&config, "raft", Some(&old));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("state of the paxos engine"), "{stderr:?}");
    // A bad engine name is bad usage.
    let out = run_node(&config, "zab", None);
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
}
