//! `rolepax lock NAME -- CMD` against three real `rolepax-node` processes: holders never
//! overlap and get growing fencing tokens; a holder whose process dies loses the lock
//! once its session's TTL runs out; the command's exit status comes back.

mod common;

use common::procs::*;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn cluster() -> Procs {
    let mut p = Procs::new(3);
    p.start_all();
    p
}

fn rolepax(p: &Procs, ttl_secs: &str, args: &[&str]) -> Command {
    let endpoints = p.http.values().cloned().collect::<Vec<_>>().join(",");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rolepax"));
    cmd.args(["--endpoints", &endpoints, "--ttl", ttl_secs]).args(args);
    cmd
}

/// Waits for a child to exit, up to the deadline.
fn wait_exit(child: &mut Child, what: &str) -> i32 {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status.code().unwrap_or(-1);
        }
        assert!(Instant::now() < deadline, "{what} did not finish in time");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The holder of lock `name` as the cluster's first node sees it.
fn holder(p: &Procs, name: &str) -> Option<u64> {
    let url = format!("{}/v1/locks/{name}", p.http.values().next().expect("a node"));
    let v: serde_json::Value = p.agent.get(&url).call().ok()?.into_json().ok()?;
    v.get("holder").and_then(serde_json::Value::as_u64)
}

#[test]
fn lock_cli_holders_never_overlap_and_tokens_grow() {
    let p = cluster();
    let log = p.dir.path().join("critical.log");
    let script = format!(
        "echo start $ROLEPAX_LOCK_TOKEN >> {0}; sleep 0.3; echo end $ROLEPAX_LOCK_TOKEN >> {0}",
        log.display()
    );
    let mut children: Vec<Child> = (0..3)
        .map(|_| {
            rolepax(&p, "5", &["lock", "demo", "--", "sh", "-c", &script])
                .spawn()
                .expect("spawn")
        })
        .collect();
    for (i, c) in children.iter_mut().enumerate() {
        assert_eq!(
            wait_exit(c, &format!("locker {i}")),
            0,
            "locker {i} failed\n{}",
            p.logs()
        );
    }
    let text = std::fs::read_to_string(&log).expect("critical section log");
    let lines: Vec<(&str, u64)> = text
        .lines()
        .map(|l| {
            let (what, token) = l.split_once(' ').expect("`start T` or `end T`");
            (what, token.parse().expect("a token"))
        })
        .collect();
    assert_eq!(lines.len(), 6, "three critical sections: {text}");
    for (i, pair) in lines.chunks(2).enumerate() {
        assert_eq!(pair[0].0, "start", "sections interleaved: {text}");
        assert_eq!(pair[1], ("end", pair[0].1), "sections interleaved: {text}");
        if i > 0 {
            assert!(pair[0].1 > lines[2 * i - 1].1, "fencing tokens must grow: {text}");
        }
    }
}

#[test]
fn lock_cli_killed_holder_loses_lock_after_ttl() {
    let p = cluster();
    // The holder runs in its own process group, so one kill takes the CLI and its command.
    let mut holder_cli = rolepax(&p, "2", &["lock", "demo", "--", "sleep", "60"])
        .process_group(0)
        .spawn()
        .expect("spawn holder");
    let deadline = Instant::now() + DEADLINE;
    let first = loop {
        if let Some(h) = holder(&p, "demo") {
            break h;
        }
        assert!(Instant::now() < deadline, "the holder never got the lock\n{}", p.logs());
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut waiter = rolepax(&p, "5", &["lock", "demo", "--", "sh", "-c", "echo $ROLEPAX_LOCK_TOKEN"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn waiter");
    // Wait until the waiter is in line, then kill the holder's whole process group.
    let deadline = Instant::now() + DEADLINE;
    while holder(&p, "demo") == Some(first) && !waiting(&p, "demo") {
        assert!(Instant::now() < deadline, "the waiter never queued");
        std::thread::sleep(Duration::from_millis(50));
    }
    let killed_at = Instant::now();
    // SAFETY: kill(2) on the process group we created; no memory is involved.
    unsafe { libc::kill(-(holder_cli.id() as i32), libc::SIGKILL) };
    let _ = holder_cli.wait();
    assert_eq!(wait_exit(&mut waiter, "the waiter"), 0, "{}", p.logs());
    assert!(
        killed_at.elapsed() >= Duration::from_millis(1500),
        "the lock moved before the dead holder's TTL ran out"
    );
    let mut out = String::new();
    std::io::Read::read_to_string(&mut waiter.stdout.take().expect("stdout"), &mut out).expect("read");
    let token: u64 = out.trim().parse().expect("the waiter printed its token");
    assert!(token > 1, "the waiter's token {token} must follow the dead holder's");
}

fn waiting(p: &Procs, name: &str) -> bool {
    let url = format!("{}/v1/locks/{name}", p.http.values().next().expect("a node"));
    p.agent
        .get(&url)
        .call()
        .ok()
        .and_then(|r| r.into_json::<serde_json::Value>().ok())
        .and_then(|v| v.get("queue").and_then(|q| q.as_array()).map(|q| !q.is_empty()))
        .unwrap_or(false)
}

#[test]
fn lock_cli_returns_the_commands_exit_status() {
    let p = cluster();
    let mut seven = rolepax(&p, "5", &["lock", "x", "--", "sh", "-c", "exit 7"])
        .spawn()
        .expect("spawn");
    assert_eq!(wait_exit(&mut seven, "exit 7"), 7);
    let mut missing = rolepax(&p, "5", &["lock", "x", "--", "/nonexistent/command"])
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    assert_eq!(wait_exit(&mut missing, "a missing command"), 127);
    assert_eq!(holder(&p, "x"), None, "the lock is released after the command");
    let mut usage = rolepax(&p, "5", &["lock", "x"])
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    assert_eq!(wait_exit(&mut usage, "bad usage"), 2);
}

#[test]
fn lock_cli_cut_off_from_the_cluster_kills_the_command_before_the_ttl() {
    let p = cluster();
    let mut holder_cli = rolepax(&p, "2", &["lock", "demo", "--", "sleep", "60"])
        .spawn()
        .expect("spawn holder");
    let deadline = Instant::now() + DEADLINE;
    while holder(&p, "demo").is_none() {
        assert!(Instant::now() < deadline, "the holder never got the lock\n{}", p.logs());
        std::thread::sleep(Duration::from_millis(50));
    }
    // Freeze every node: keep-alives go unanswered; the session may expire unseen.
    let pids: Vec<i32> = p.children.values().map(|c| c.id() as i32).collect();
    // SAFETY: kill(2) on our own child processes; no memory is involved.
    pids.iter().for_each(|&pid| unsafe {
        libc::kill(pid, libc::SIGSTOP);
    });
    let frozen_at = Instant::now();
    let code = wait_exit(&mut holder_cli, "the cut-off holder");
    pids.iter().for_each(|&pid| unsafe {
        libc::kill(pid, libc::SIGCONT);
    });
    assert_eq!(code, 4, "cut off for most of the TTL: the command is killed");
    assert!(
        frozen_at.elapsed() < Duration::from_secs(30),
        "it did not wait for the sleep to finish"
    );
}
