//! The `rolepax-bench` binary end to end: a short run against a real HTTP server over an
//! in-process three-node `Cluster` (JSON and CSV summaries parse, nonzero throughput, no
//! errors); exit code 2 for a bad URL, an unreachable endpoint and a server that is not
//! an etcd gateway; and a fake gateway (chunked answers) that dies mid-run, which the
//! run reports as errors instead of stopping. `plot` turns the CSV into an SVG.
//! `--requests N` ends a run after exactly `N` successes (a stub refusing some puts) or
//! at a given `--duration`; `sample` follows data directories and processes until they
//! exit, and `plot-disk` checks its rows against 3 x snapshot + 64 MiB.
//!
//! Leaves out open-loop accuracy and real etcd (see scripts/bench-report.sh).

use actix_web::{App, HttpServer, web};
use rolepax::Cluster;
use rolepax::app::service::Service;
use rolepax::http::{HttpState, configure};
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const DEADLINE: Duration = Duration::from_secs(120);

/// Serves the HTTP API of the leader of an in-process cluster on an ephemeral port, on a
/// thread of its own that lives as long as the test process.
fn start_server() -> SocketAddr {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let system = actix_rt::System::new();
        system.block_on(async move {
            let cluster = Cluster::<Service>::start_with(3, |cfg| {
                cfg.request_timeout = Duration::from_secs(20);
                cfg.retry_interval = Duration::from_millis(300);
                cfg.record_applied = false;
            })
            .await
            .expect("cluster starts");
            let leader = cluster.wait_for_leader().await.expect("a leader");
            let state = web::Data::new(HttpState::new(cluster.node(leader).clone(), "bench-test", 1 << 20));
            let server = HttpServer::new(move || App::new().app_data(state.clone()).configure(configure))
                .workers(2)
                .disable_signals()
                .bind("127.0.0.1:0")
                .expect("bind an ephemeral port");
            let addr = server.addrs()[0];
            let running = server.run();
            tx.send(addr).expect("test is waiting");
            let _ = running.await;
            drop(cluster);
        });
    });
    rx.recv_timeout(DEADLINE).expect("the server starts")
}

fn bench(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rolepax-bench"))
        .args(args)
        .output()
        .expect("run rolepax-bench")
}

/// Runs the bench with `args` and `--json`, expects exit 0; answers its output and summary.
fn bench_summary(args: &[&str]) -> (Output, Value) {
    let dir = tempfile::tempdir().expect("tempdir");
    let json = dir.path().join("run.json");
    let json_s = json.to_string_lossy().to_string();
    let out = bench(&[args, &["--json", &json_s]].concat());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let run = serde_json::from_str(std::fs::read_to_string(&json).expect("JSON written").trim()).expect("JSON parses");
    (out, run)
}

fn assert_stdout_has(out: &Output, wanted: &str) {
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(wanted),
        "stdout should contain {wanted:?}: {}",
        text(out)
    );
}

fn text(out: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn bench_runs_against_an_in_process_cluster() {
    let addr = start_server();
    let url = format!("http://{addr}");
    let dir = tempfile::tempdir().expect("tempdir");
    let (json, csv, svg) = (
        dir.path().join("runs.jsonl"),
        dir.path().join("runs.csv"),
        dir.path().join("b.svg"),
    );
    let (json_s, csv_s) = (json.to_string_lossy().to_string(), csv.to_string_lossy().to_string());

    // The cluster may still be settling: wait until a put through the API succeeds.
    let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(30)).build();
    let deadline = Instant::now() + DEADLINE;
    while agent
        .post(&format!("{url}/v3/kv/put"))
        .send_string(r#"{"key":"a2V5LTA=","value":"dg=="}"#)
        .is_err()
    {
        assert!(Instant::now() < deadline, "the server never accepted a put");
        std::thread::sleep(Duration::from_millis(100));
    }

    for (label, ratio) in [("mixed", "0.5"), ("reads", "1")] {
        let out = bench(&[
            "--endpoints",
            &url,
            "--clients",
            "4",
            "--duration",
            "2",
            "--warmup",
            "0.5",
            "--keys",
            "100",
            "--read-ratio",
            ratio,
            "--timeout",
            "30",
            "--label",
            label,
            "--json",
            &json_s,
            "--csv",
            &csv_s,
        ]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("throughput:"),
            "{}",
            text(&out)
        );
    }

    let lines = std::fs::read_to_string(&json).expect("JSON written");
    let runs: Vec<Value> = lines
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect();
    assert_eq!(runs.len(), 2, "{lines}");
    for run in &runs {
        assert!(run["throughput_rps"].as_f64().is_some_and(|t| t > 0.0), "{run}");
        assert_eq!(
            (&run["errors"], &run["non_2xx"]),
            (&Value::from(0), &Value::from(0)),
            "{run}"
        );
        assert_eq!(run["clients"], Value::from(4), "{run}");
        assert!(run["latency"]["p99_ms"].as_f64().is_some_and(|p| p > 0.0), "{run}");
    }
    assert_eq!(runs[0]["label"], "mixed");
    assert!(
        runs[0]["writes"]["count"].as_u64().is_some_and(|n| n > 0),
        "{}",
        runs[0]
    );
    assert!(
        runs[1]["writes"].is_null(),
        "a read-only run writes nothing: {}",
        runs[1]
    );

    let table = std::fs::read_to_string(&csv).expect("CSV written");
    let rows: Vec<&str> = table.lines().collect();
    assert_eq!(rows.len(), 3, "a header and one row per run: {table}");
    assert!(
        rows[0].starts_with("label,") && rows[1].starts_with("mixed,"),
        "{table}"
    );

    let out = bench(&["plot", "--out", &svg.to_string_lossy(), &csv_s]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let drawn = std::fs::read_to_string(&svg).expect("SVG written");
    assert!(drawn.starts_with("<svg") && drawn.contains("mixed"), "{drawn}");
}

#[test]
fn bad_input_exits_2_with_a_clear_message() {
    // A port nobody listens on: bind, note, release.
    let closed = TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr");
    // A server that is not an etcd gateway: answers 404 to everything.
    let not_etcd = TcpListener::bind("127.0.0.1:0").expect("bind");
    let not_etcd_addr = not_etcd.local_addr().expect("addr");
    std::thread::spawn(move || {
        for stream in not_etcd.incoming().flatten() {
            std::thread::spawn(move || {
                let _ = serve(stream, |_| (404, "not found".into(), false), &AtomicBool::new(false));
            });
        }
    });
    for (args, mentions) in [
        (vec!["--endpoints", "ftp://127.0.0.1:1"], "only http://".to_string()),
        (vec!["--endpoints", "http://127.0.0.1:notaport"], "bad port".into()),
        (vec!["--clients", "0"], "--clients".into()),
        (
            vec!["--endpoints", &format!("http://{closed}")],
            "cannot connect".into(),
        ),
        (
            vec!["--endpoints", &format!("http://{not_etcd_addr}")],
            "not an etcd".into(),
        ),
    ] {
        let out = bench(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&mentions),
            "{args:?}: stderr should mention {mentions:?}: {err}"
        );
    }
}

/// Reads requests off one connection and answers each with `answer(path)`:
/// (status, body, chunked). Stops (dropping the connection) once `dead` is set.
fn serve(stream: TcpStream, answer: impl Fn(&str) -> (u16, String, bool), dead: &AtomicBool) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_millis(100)))?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) => return Ok(()),
            Ok(_) => {}
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                if dead.load(Ordering::SeqCst) {
                    return Ok(());
                }
                continue;
            }
            Err(e) => return Err(e),
        }
        let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
        let mut length = 0;
        loop {
            let mut h = String::new();
            reader.read_line(&mut h)?;
            if h.trim().is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                length = v.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body)?;
        if dead.load(Ordering::SeqCst) {
            return Ok(());
        }
        let (status, text, chunked) = answer(&path);
        let reply = if chunked {
            let (a, b) = text.split_at(text.len() / 2);
            format!(
                "HTTP/1.1 {status} X\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{a}\r\n{:x}\r\n{b}\r\n0\r\n\r\n",
                a.len(),
                b.len()
            )
        } else {
            format!("HTTP/1.1 {status} X\r\nContent-Length: {}\r\n\r\n{text}", text.len())
        };
        writer.write_all(reply.as_bytes())?;
    }
}

#[test]
fn a_server_dying_mid_run_is_reported_as_errors() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    listener.set_nonblocking(true).expect("nonblocking");
    let dead = Arc::new(AtomicBool::new(false));
    let server_dead = dead.clone();
    let server = std::thread::spawn(move || {
        // Up for a second and a half after the first connection (the bench's probe), so
        // about 1 s of the measured window, then gone: the listener closes and every
        // open connection is dropped.
        let mut until = Instant::now() + DEADLINE;
        while Instant::now() < until {
            match listener.accept() {
                Ok((stream, _)) => {
                    until = until.min(Instant::now() + Duration::from_millis(1500));
                    let dead = server_dead.clone();
                    let _ = stream.set_nonblocking(false);
                    std::thread::spawn(move || {
                        let _ = serve(stream, |_| (200, r#"{"header":{"revision":"1"}}"#.into(), true), &dead);
                    });
                }
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
        server_dead.store(true, Ordering::SeqCst);
    });
    let (out, run) = bench_summary(&[
        "--endpoints",
        &format!("http://{addr}"),
        "--clients",
        "2",
        "--warmup",
        "0.5",
        "--duration",
        "3",
        "--timeout",
        "2",
    ]);
    server.join().expect("fake server thread");
    assert!(dead.load(Ordering::SeqCst));
    assert!(run["ok"].as_u64().is_some_and(|n| n > 0), "{run}");
    assert!(run["errors"].as_u64().is_some_and(|n| n > 0), "{run}");
    assert_stdout_has(&out, "errors:");
}

/// `--requests N` against a stub that refuses every third put with 503: exactly `N` puts
/// are answered 200 (failures give their ticket back and are sent again), the run ends
/// by itself without a `--duration`, and the report says so.
#[test]
fn requests_stops_after_exactly_n_successes() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (puts, ok_puts) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let (p, o) = (puts.clone(), ok_puts.clone());
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let (p, o) = (p.clone(), o.clone());
            std::thread::spawn(move || {
                let answer = |path: &str| {
                    if path != "/v3/kv/put" {
                        return (200, r#"{"header":{"revision":"1"}}"#.to_string(), false);
                    }
                    if p.fetch_add(1, Ordering::SeqCst) % 3 == 2 {
                        return (503, r#"{"error":"busy","code":503}"#.to_string(), false);
                    }
                    o.fetch_add(1, Ordering::SeqCst);
                    (200, r#"{"header":{"revision":"2"}}"#.to_string(), false)
                };
                let _ = serve(stream, answer, &AtomicBool::new(false));
            });
        }
    });
    let (out, run) = bench_summary(&[
        "--endpoints",
        &format!("http://{addr}"),
        "--clients",
        "8",
        "--warmup",
        "0",
        "--requests",
        "500",
    ]);
    assert_eq!(ok_puts.load(Ordering::SeqCst), 500, "{}", text(&out));
    assert!(
        puts.load(Ordering::SeqCst) >= 749,
        "every third put was refused: {}",
        text(&out)
    );
    assert_eq!(
        (&run["ok"], &run["target_requests"]),
        (&Value::from(500), &Value::from(500)),
        "{run}"
    );
    assert!(run["non_2xx"].as_u64().is_some_and(|n| n >= 249), "{run}");
    assert!(run["duration_s"].as_f64().is_some_and(|d| d > 0.0 && d < 60.0), "{run}");
    assert_stdout_has(&out, "until 500 requests succeeded");
}

/// `--requests` with `--duration`: the time limit ends a run that cannot reach `N`.
#[test]
fn requests_with_a_duration_stops_at_the_time_limit() {
    let addr = start_server();
    let (_, run) = bench_summary(&[
        "--endpoints",
        &format!("http://{addr}"),
        "--clients",
        "2",
        "--warmup",
        "0",
        "--timeout",
        "30",
        "--requests",
        "100000000",
        "--duration",
        "2",
    ]);
    assert!(run["ok"].as_u64().is_some_and(|n| n > 0 && n < 100_000_000), "{run}");
    assert!(
        run["duration_s"].as_f64().is_some_and(|d| (d - 2.0).abs() < 0.5),
        "{run}"
    );
}

/// `sample` measures two data directories while their processes run, stops by itself
/// once both are gone, and `plot-disk` draws the rows and checks the bound: a sparse
/// 80 MiB file with no snapshot breaks it (apparent size counts), a directory with a
/// snapshot stays within it.
#[test]
fn sample_follows_processes_and_plot_disk_checks_the_bound() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (small, sparse) = (dir.path().join("n1"), dir.path().join("n2"));
    std::fs::create_dir_all(small.join("sub")).expect("mkdir");
    std::fs::create_dir_all(&sparse).expect("mkdir");
    std::fs::write(small.join("snapshot.bin"), vec![7u8; 300_000]).expect("write");
    std::fs::write(small.join("sub").join("acceptor.wal.0"), vec![1u8; 100_000]).expect("write");
    std::fs::File::create(sparse.join("acceptor.wal.0"))
        .and_then(|f| f.set_len(80 << 20))
        .expect("sparse file");
    let sleeper = || Command::new("sleep").arg("60").spawn().expect("run sleep");
    let (mut a, mut b) = (sleeper(), sleeper());
    let csv = dir.path().join("samples.csv");
    let mut sampler = Command::new(env!("CARGO_BIN_EXE_rolepax-bench"))
        .args(["sample", "--interval-ms", "50", "--out"])
        .arg(&csv)
        .arg("--dirs")
        .arg(format!("{},{}", small.display(), sparse.display()))
        .arg("--pids")
        .arg(format!("{},{}", a.id(), b.id()))
        .spawn()
        .expect("run the sampler");
    let rows = |min: usize| std::fs::read_to_string(&csv).is_ok_and(|t| t.lines().count() > min);
    let deadline = Instant::now() + DEADLINE;
    while !rows(3) {
        assert!(Instant::now() < deadline, "the sampler wrote no rows");
        std::thread::sleep(Duration::from_millis(20));
    }
    for p in [&mut a, &mut b] {
        let _ = p.kill();
        let _ = p.wait();
    }
    let stopped = loop {
        if let Some(status) = sampler.try_wait().expect("sampler status") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the sampler did not stop after its processes"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(stopped.success(), "{stopped:?}");

    let table = std::fs::read_to_string(&csv).expect("samples written");
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].starts_with("time_s,unix_ms,disk_1,apparent_1,snapshot_1,rss_1,disk_2"),
        "{table}"
    );
    let first: Vec<&str> = lines[1].split(',').collect();
    let field = |i: usize| first[i].parse::<u64>().unwrap_or(0);
    assert!(
        field(2) >= 400_000 && field(3) == 400_000 && field(4) == 300_000,
        "{table}"
    );
    assert!(field(5) > 0, "a running process has a resident size: {table}");
    assert_eq!(field(7), 80 << 20, "{table}");

    let svg = dir.path().join("disk.svg");
    let out = bench(&[
        "plot-disk",
        "--title",
        "test run",
        "--out",
        &svg.to_string_lossy(),
        &csv.to_string_lossy(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let report = String::from_utf8_lossy(&out.stdout);
    let node = |n: &str| {
        report
            .lines()
            .find(|l| l.starts_with(n))
            .unwrap_or_default()
            .to_string()
    };
    assert!(node("1 ").contains("PASS") && node("2 ").contains("FAIL"), "{report}");
    let drawn = std::fs::read_to_string(&svg).expect("SVG written");
    assert!(
        drawn.starts_with("<svg") && drawn.contains("test run") && drawn.contains("node 2"),
        "{drawn}"
    );
}
