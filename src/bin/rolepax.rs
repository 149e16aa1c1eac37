//! # rolepax: the command-line client
//!
//! Talks to a cluster over its plain HTTP API (`/v1/kv`, `/v1/cas`, `/v1/locks`,
//! `/v1/sessions`, `/v1/members`, `/status`; see
//! `rolepax::http`) with blocking `ureq` calls. Each command tries the endpoints in
//! order and moves on when one is down (connection refused, timeout) or answers 503;
//! any other answer is final. `--help` lists the commands and exit codes.
//!
//! A write retried on another endpoint after a timeout or a 503 may be applied twice
//! (harmless for put and delete; a `cas` may then report a conflict with its own write).
//!
//! `member add|remove|replace` go to the first endpoint that accepts a connection and
//! are not retried elsewhere (a change that timed out may still be applied; `member
//! list` shows what happened). They wait until the new configuration is active (an added
//! node caught up, a leader of it known), up to `--timeout` or a minute, whichever is
//! longer.
//!
//! **Left out.** The etcd gateway (use curl), TLS, prefixes and ranges, watches.

use serde_json::{Value, json};
use std::io::{Read, Write};
use std::process::ExitCode;
use std::time::Duration;

const DEFAULT_ENDPOINTS: &str = "http://127.0.0.1:7201,http://127.0.0.1:7202,http://127.0.0.1:7203";

const USAGE: &str = "\
usage: rolepax [--endpoints URL,URL,...] [--timeout SECS] COMMAND

commands:
  put KEY VALUE            set KEY to VALUE
  get KEY                  print KEY's value (linearizable read)
  delete KEY               delete KEY
  cas KEY EXPECTED NEW     set KEY to NEW only if its value is EXPECTED
  status                   one row per node: id, role, leader (*), ballot, decided, applied
  lock NAME -- CMD [ARGS]  hold lock NAME while CMD runs (like flock): opens a session
                           (TTL 10 s, kept alive meanwhile), waits in line for the lock,
                           runs CMD with ROLEPAX_LOCK_NAME and ROLEPAX_LOCK_TOKEN (the
                           fencing token) set, releases, exits with CMD's status
  locks                    every lock with its holder, fencing token and waiters
  member list              one row per member: id, peer address, HTTP address, role,
                           configuration id
  member add ID --peer-addr IP:PORT --http-addr IP:PORT [--from ID,ID]
                           add node ID (started first with `rolepax-node --join`);
                           --from: members it pulls the state from (default: all)
  member remove ID         remove node ID from the cluster
  member replace OLD NEW --peer-addr IP:PORT --http-addr IP:PORT [--from ID,ID]
                           remove OLD and add NEW in one change

options:
  --endpoints URLS   comma-separated node HTTP addresses, tried in order
                     (default: http://127.0.0.1:7201,7202,7203)
  --timeout SECS     per-request timeout (default 10); member changes wait this long
                     (at least 60 s) for an added node to catch up
  --ttl SECS         lock: the session's time-to-live (default 10); a holder that dies
                     loses the lock this long after its last keep-alive
  -h, --help         this text

exit codes:
  0  ok
  1  key not found (get, delete) or compare failed (cas)
  2  usage error, or the server refused the request (4xx; for member changes: an
     id in use, a non-member, no majority left reachable, a new node that was not
     started with --join, ...; the reason on stderr)
  3  unavailable: no endpoint answered, or all answered 503 (member changes: 5xx, no
     connection, or a timeout; the change may or may not have been made)
  4  lock: the session expired, or no keep-alive was answered for most of the TTL, while
     CMD ran (CMD was killed: the lock may be someone else's)
  otherwise, for lock: CMD's exit status (127 if it could not be started)";

/// How a command ended; the exit code scripts rely on.
enum Outcome {
    Ok,
    Missing(String),
    Usage(String),
    Unavailable(String),
    /// Exit with this code (a locked command's status).
    Exit(u8),
}

impl Outcome {
    fn exit(self) -> ExitCode {
        match self {
            Outcome::Ok => ExitCode::SUCCESS,
            Outcome::Missing(m) => {
                eprintln!("rolepax: {m}");
                ExitCode::from(1)
            }
            Outcome::Usage(m) => {
                eprintln!("rolepax: {m}");
                ExitCode::from(2)
            }
            Outcome::Unavailable(m) => {
                eprintln!("rolepax: unavailable: {m}");
                ExitCode::from(3)
            }
            Outcome::Exit(code) => ExitCode::from(code),
        }
    }
}

struct Client {
    agent: ureq::Agent,
    endpoints: Vec<String>,
    /// The per-request timeout (`--timeout`).
    timeout: Duration,
    /// Session time-to-live for `lock`.
    ttl: Duration,
}

/// One HTTP answer: status and body.
struct Answer {
    status: u16,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    fn error(&self) -> String {
        match self.json().get("error").and_then(Value::as_str) {
            Some(e) => e.to_string(),
            None => format!("HTTP {}: {}", self.status, String::from_utf8_lossy(&self.body)),
        }
    }
}

/// Percent-encodes a key for the URL path, keeping `/` (the server matches the rest).
fn encode_key(key: &str) -> String {
    let mut out = String::new();
    for b in key.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl Client {
    /// Sends to each endpoint in turn until one answers something other than 503.
    fn request(&self, method: &str, path: &str, body: Option<&[u8]>) -> Result<Answer, String> {
        let mut failures = Vec::new();
        for endpoint in &self.endpoints {
            let url = format!("{}{path}", endpoint.trim_end_matches('/'));
            let req = self.agent.request(method, &url);
            let sent = match body {
                Some(b) => req.send_bytes(b),
                None => req.call(),
            };
            let (status, res) = match sent {
                Ok(res) => (res.status(), res),
                Err(ureq::Error::Status(code, res)) => (code, res),
                Err(ureq::Error::Transport(t)) => {
                    failures.push(format!("{endpoint}: {t}"));
                    continue;
                }
            };
            let mut body = Vec::new();
            if let Err(e) = res.into_reader().read_to_end(&mut body) {
                failures.push(format!("{endpoint}: reading the answer: {e}"));
                continue;
            }
            let answer = Answer { status, body };
            if status == 503 {
                failures.push(format!("{endpoint}: {}", answer.error()));
                continue;
            }
            return Ok(answer);
        }
        Err(failures.join("; "))
    }
}

fn run(client: &Client, command: &[String]) -> Outcome {
    let words: Vec<&str> = command.iter().map(String::as_str).collect();
    let unexpected = |a: &Answer| Outcome::Usage(a.error());
    match words.as_slice() {
        ["put", key, value] => {
            match client.request("PUT", &format!("/v1/kv/{}", encode_key(key)), Some(value.as_bytes())) {
                Ok(a) if a.status == 200 => {
                    println!("OK");
                    Outcome::Ok
                }
                Ok(a) => unexpected(&a),
                Err(e) => Outcome::Unavailable(e),
            }
        }
        ["get", key] => match client.request("GET", &format!("/v1/kv/{}", encode_key(key)), None) {
            Ok(a) if a.status == 200 => {
                let mut out = std::io::stdout().lock();
                let _ = out.write_all(&a.body).and_then(|_| out.write_all(b"\n"));
                Outcome::Ok
            }
            Ok(a) if a.status == 404 => Outcome::Missing(a.error()),
            Ok(a) => unexpected(&a),
            Err(e) => Outcome::Unavailable(e),
        },
        ["delete", key] => match client.request("DELETE", &format!("/v1/kv/{}", encode_key(key)), None) {
            Ok(a) if a.status == 200 => {
                println!("OK");
                Outcome::Ok
            }
            Ok(a) if a.status == 404 => Outcome::Missing(a.error()),
            Ok(a) => unexpected(&a),
            Err(e) => Outcome::Unavailable(e),
        },
        ["cas", key, expected, new] => {
            let body = json!({"expected": expected, "new": new}).to_string();
            match client.request("POST", &format!("/v1/cas/{}", encode_key(key)), Some(body.as_bytes())) {
                Ok(a) if a.status == 200 => {
                    println!("OK");
                    Outcome::Ok
                }
                Ok(a) if a.status == 409 => Outcome::Missing(a.error()),
                Ok(a) => unexpected(&a),
                Err(e) => Outcome::Unavailable(e),
            }
        }
        ["status"] => status(client),
        ["locks"] => list_locks(client),
        ["member", rest @ ..] => member(client, rest),
        ["lock", name, "--", cmd @ ..] if !cmd.is_empty() => lock(client, name, cmd),
        ["lock", ..] => Outcome::Usage(format!("usage: rolepax lock NAME -- COMMAND [ARGS...]\n\n{USAGE}")),
        [] => Outcome::Usage(format!("no command given\n\n{USAGE}")),
        _ => Outcome::Usage(format!("cannot understand {:?}\n\n{USAGE}", command.join(" "))),
    }
}

/// Asks every endpoint (not just the first that answers) for `/status`.
fn status(client: &Client) -> Outcome {
    let mut rows = vec![
        ["ID", "ROLE", "LEADER", "BALLOT/TERM", "DECIDED", "APPLIED", "ENDPOINT"]
            .map(String::from)
            .to_vec(),
    ];
    let mut answered = 0;
    for endpoint in &client.endpoints {
        let one = Client {
            agent: client.agent.clone(),
            endpoints: vec![endpoint.clone()],
            timeout: client.timeout,
            ttl: client.ttl,
        };
        let row = match one.request("GET", "/status", None) {
            Ok(a) if a.status == 200 => {
                answered += 1;
                let s = a.json();
                let num = |v: &Value| v.as_u64().map_or("-".to_string(), |n| n.to_string());
                let id = num(&s["node_id"]);
                let leads = s["leader_id"].as_u64().is_some() && s["leader_id"] == s["node_id"];
                let ballot = &s["elector"]["highest_ballot"];
                // A Raft node (`"engine": "raft"`) shows its term, and the last log index
                // it knows committed and the last it applied.
                let raft = s["engine"] == "raft";
                let (ballot, decided, applied) = if raft {
                    (
                        format!("t{}", num(&s["term"])),
                        num(&s["committed"]),
                        num(&s["applied"]),
                    )
                } else {
                    (
                        format!("{}.{}", num(&ballot["round"]), num(&ballot["node"])),
                        num(&s["learner"]["next_undecided"]),
                        num(&s["state_machine"]["applied"]),
                    )
                };
                vec![
                    format!("{id}{}", if leads { " *" } else { "" }),
                    s["role"]
                        .as_str()
                        .or_else(|| s["elector"]["role"].as_str())
                        .unwrap_or("?")
                        .to_string(),
                    num(&s["leader_id"]),
                    ballot,
                    decided,
                    applied,
                    endpoint.clone(),
                ]
            }
            Ok(a) => vec![
                "?".into(),
                format!("error: {}", a.error()),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                endpoint.clone(),
            ],
            Err(_) => vec![
                "?".into(),
                "down".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                endpoint.clone(),
            ],
        };
        rows.push(row);
    }
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0))
        .collect();
    for row in &rows {
        let cells: Vec<String> = row.iter().zip(&widths).map(|(cell, w)| format!("{cell:<w$}")).collect();
        println!("{}", cells.join("  ").trim_end());
    }
    if answered == 0 {
        Outcome::Unavailable("no node answered /status".into())
    } else {
        Outcome::Ok
    }
}

/// How long one acquire long-poll waits before asking again (the place in line is kept).
const LOCK_POLL_MS: u64 = 5_000;
const DEFAULT_SESSION_TTL: Duration = Duration::from_secs(10);

/// `rolepax lock NAME -- CMD`: session, keep-alive thread, acquire, run, release.
fn lock(client: &Client, name: &str, cmd: &[&str]) -> Outcome {
    let ttl = client.ttl;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let body = json!({"ttl_ms": ttl.as_millis() as u64}).to_string();
    // When the session was last proven alive: the send time of the last keep-alive the
    // cluster answered (to begin with, of the request that opened it).
    let alive_since = Arc::new(std::sync::Mutex::new(std::time::Instant::now()));
    let session = match client.request("POST", "/v1/sessions", Some(body.as_bytes())) {
        Ok(a) if a.status == 200 => match a.json().get("session").and_then(Value::as_u64) {
            Some(s) => s,
            None => return Outcome::Usage(format!("unexpected session answer: {}", a.error())),
        },
        Ok(a) => return Outcome::Usage(a.error()),
        Err(e) => return Outcome::Unavailable(e),
    };
    // Keep the session alive in the background until told to stop; note if it is lost.
    let (stop, lost) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
    let keeper = {
        let (stop, lost, alive_since) = (stop.clone(), lost.clone(), alive_since.clone());
        let client = Client {
            agent: client.agent.clone(),
            endpoints: client.endpoints.clone(),
            timeout: client.timeout,
            ttl,
        };
        std::thread::spawn(move || {
            let path = format!("/v1/sessions/{session}/keepalive");
            while !stop.load(Ordering::Relaxed) {
                let sent = std::time::Instant::now();
                match client.request("POST", &path, None) {
                    Ok(a) if a.status == 200 => {
                        if let Ok(mut t) = alive_since.lock() {
                            *t = sent;
                        }
                    }
                    Ok(a) if a.status == 404 => {
                        lost.store(true, Ordering::Relaxed);
                        return;
                    }
                    _ => {} // no answer: the main loop watches how long that lasts
                }
                for _ in 0..(ttl.as_millis() / 3 / 100).max(1) {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        })
    };
    let finish = |outcome: Outcome| {
        stop.store(true, Ordering::Relaxed);
        let _ = client.request("DELETE", &format!("/v1/sessions/{session}"), None);
        outcome
    };
    // Wait in line: each long-poll keeps our place; another endpoint sees the same wait.
    let path = format!("/v1/locks/{}/acquire", encode_key(name));
    let body = json!({"session": session, "wait_ms": LOCK_POLL_MS}).to_string();
    let token = loop {
        match client.request("POST", &path, Some(body.as_bytes())) {
            Ok(a) if a.status == 200 => break a.json().get("token").and_then(Value::as_u64).unwrap_or(0),
            Ok(a) if a.status == 202 => continue,
            Ok(a) => return finish(Outcome::Usage(a.error())),
            Err(e) => {
                if lost.load(Ordering::Relaxed) {
                    return finish(Outcome::Unavailable(format!("session expired while waiting: {e}")));
                }
                eprintln!("rolepax: no endpoint answered ({e}); still waiting for lock {name:?}");
                std::thread::sleep(Duration::from_millis(500));
            }
        }
    };
    eprintln!("rolepax: holding lock {name:?} (fencing token {token})");
    let mut child = match std::process::Command::new(cmd[0])
        .args(&cmd[1..])
        .env("ROLEPAX_LOCK_NAME", name)
        .env("ROLEPAX_LOCK_TOKEN", token.to_string())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("rolepax: cannot run {:?}: {e}", cmd[0]);
            release(client, name, session);
            return finish(Outcome::Exit(127));
        }
    };
    let code = loop {
        match child.try_wait() {
            Ok(Some(status)) => break exit_code(status),
            // Cut off from the cluster for most of the TTL: the session may have expired
            // without our hearing it, and the lock been granted to someone else.
            Ok(None)
                if alive_since
                    .lock()
                    .map(|t| t.elapsed() >= ttl - ttl / 10)
                    .unwrap_or(true) =>
            {
                eprintln!(
                    "rolepax: no keep-alive answered for {:?} (TTL {ttl:?}): the lock may be someone else's now; killing {:?}",
                    alive_since.lock().map(|t| t.elapsed()).unwrap_or_default(),
                    cmd[0]
                );
                let _ = child.kill();
                let _ = child.wait();
                // No goodbye to a cluster that does not answer: the session expires by itself.
                stop.store(true, Ordering::Relaxed);
                return Outcome::Exit(4);
            }
            Ok(None) if lost.load(Ordering::Relaxed) => {
                eprintln!(
                    "rolepax: session expired while {:?} ran: the lock may be someone else's now; killing it",
                    cmd[0]
                );
                let _ = child.kill();
                let _ = child.wait();
                return finish(Outcome::Exit(4));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => {
                eprintln!("rolepax: waiting for {:?}: {e}", cmd[0]);
                break 1;
            }
        }
    };
    release(client, name, session);
    let outcome = finish(Outcome::Exit(code));
    let _ = keeper.join();
    outcome
}

fn release(client: &Client, name: &str, session: u64) {
    let body = json!({"session": session}).to_string();
    match client.request(
        "POST",
        &format!("/v1/locks/{}/release", encode_key(name)),
        Some(body.as_bytes()),
    ) {
        Ok(a) if a.status == 200 => {}
        Ok(a) => eprintln!("rolepax: release of {name:?}: {}", a.error()),
        Err(e) => eprintln!("rolepax: release of {name:?}: {e} (the session's expiry will free it)"),
    }
}

/// A child's exit status as our exit code: its code, or 128 + signal like a shell.
fn exit_code(status: std::process::ExitStatus) -> u8 {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => c.clamp(0, 255) as u8,
        (None, Some(sig)) => (128 + sig).clamp(0, 255) as u8,
        _ => 1,
    }
}

const MEMBER_USAGE: &str = "\
usage: rolepax member list
       rolepax member add ID --peer-addr IP:PORT --http-addr IP:PORT [--from ID,ID]
       rolepax member remove ID
       rolepax member replace OLD NEW --peer-addr IP:PORT --http-addr IP:PORT [--from ID,ID]";

/// A node id argument.
fn member_id(text: &str) -> Result<u64, String> {
    match text.parse::<u64>() {
        Ok(id) if id > 0 => Ok(id),
        _ => Err(format!(
            "{text:?} is not a node id (a positive integer)\n\n{MEMBER_USAGE}"
        )),
    }
}

/// `--peer-addr`, `--http-addr` and `--from` of an add or replace: the request body.
fn new_member_body(id: u64, args: &[&str]) -> Result<Value, String> {
    let (mut peer, mut http, mut from) = (None, None, None);
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_string())),
            _ => (*arg, None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| args.next().map(|v| v.to_string()))
                .ok_or_else(|| format!("{flag} needs a value\n\n{MEMBER_USAGE}"))
        };
        match flag {
            "--peer-addr" => peer = Some(value()?),
            "--http-addr" => http = Some(value()?),
            "--from" => {
                let ids = value()?
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(member_id)
                    .collect::<Result<Vec<u64>, String>>()?;
                from = Some(ids);
            }
            other => return Err(format!("unknown argument {other:?}\n\n{MEMBER_USAGE}")),
        }
    }
    let peer = peer.ok_or_else(|| format!("--peer-addr IP:PORT is required\n\n{MEMBER_USAGE}"))?;
    let http = http.ok_or_else(|| format!("--http-addr IP:PORT is required\n\n{MEMBER_USAGE}"))?;
    let mut body = json!({"id": id, "peer_addr": peer, "http_addr": http});
    if let (Some(from), Value::Object(m)) = (from, &mut body) {
        m.insert("from".into(), json!(from));
    }
    Ok(body)
}

/// `rolepax member ...`.
fn member(client: &Client, args: &[&str]) -> Outcome {
    let request = match args {
        ["list"] => return member_list(client),
        ["add", id, rest @ ..] => member_id(id)
            .and_then(|id| new_member_body(id, rest))
            .map(|body| ("POST", "/v1/members".to_string(), Some(body))),
        ["remove", id] => member_id(id).map(|id| ("DELETE", format!("/v1/members/{id}"), None)),
        ["replace", old, new, rest @ ..] => member_id(old).and_then(|old| {
            let body = member_id(new).and_then(|new| new_member_body(new, rest))?;
            Ok(("POST", format!("/v1/members/{old}/replace"), Some(body)))
        }),
        [] => Err(format!("`member` needs list, add, remove or replace\n\n{MEMBER_USAGE}")),
        _ => Err(format!(
            "cannot understand `member {}`\n\n{MEMBER_USAGE}",
            args.join(" ")
        )),
    };
    let (method, path, body) = match request {
        Ok(r) => r,
        Err(e) => return Outcome::Usage(e),
    };
    let body = body.map(|b| b.to_string());
    // An added node may take long to pull a large state: the server waits for it up to
    // `--timeout` (at least a minute), and the request for that and half a minute more.
    let wait = client.timeout.max(Duration::from_secs(60));
    let path = format!("{path}?timeout={}", wait.as_secs_f64());
    match member_change(client, wait + Duration::from_secs(30), method, &path, body.as_deref()) {
        Ok(a) if a.status == 200 => {
            print_members(&a.json());
            Outcome::Ok
        }
        Ok(a) if a.status < 500 => Outcome::Usage(format!("refused: {}", a.error())),
        Ok(a) => Outcome::Unavailable(a.error()),
        Err(e) => Outcome::Unavailable(e),
    }
}

/// Sends a membership change to the first endpoint that takes the connection; no other
/// endpoint is tried once one has it (the change might be made twice otherwise). Waits
/// for the new configuration to be active, so with a long timeout.
fn member_change(
    client: &Client,
    timeout: Duration,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> Result<Answer, String> {
    let agent = ureq::AgentBuilder::new()
        .timeout_connect(Duration::from_secs(2))
        .timeout(timeout)
        .build();
    let mut failures = Vec::new();
    for endpoint in &client.endpoints {
        let url = format!("{}{path}", endpoint.trim_end_matches('/'));
        let req = agent.request(method, &url);
        let sent = match body {
            Some(b) => req.set("Content-Type", "application/json").send_string(b),
            None => req.call(),
        };
        let res = match sent {
            Ok(res) => res,
            Err(ureq::Error::Status(_, res)) => res,
            Err(ureq::Error::Transport(t))
                if matches!(t.kind(), ureq::ErrorKind::ConnectionFailed | ureq::ErrorKind::Dns) =>
            {
                failures.push(format!("{endpoint}: {t}"));
                continue;
            }
            Err(ureq::Error::Transport(t)) => {
                return Err(format!(
                    "{endpoint}: {t} (the change may or may not have been made: see `rolepax member list`)"
                ));
            }
        };
        let status = res.status();
        let mut bytes = Vec::new();
        if let Err(e) = res.into_reader().read_to_end(&mut bytes) {
            return Err(format!("{endpoint}: reading the answer: {e}"));
        }
        return Ok(Answer { status, body: bytes });
    }
    Err(failures.join("; "))
}

/// A `/v1/members` answer as a table.
fn print_members(v: &Value) {
    let config = v["config_id"].as_u64().map_or("-".to_string(), |c| c.to_string());
    let mut rows = vec![["ID", "PEER", "HTTP", "ROLE", "CONFIG"].map(String::from).to_vec()];
    for m in v["members"].as_array().map(Vec::as_slice).unwrap_or_default() {
        let text = |k: &str| m[k].as_str().unwrap_or("-").to_string();
        rows.push(vec![
            m["id"].as_u64().map_or("?".to_string(), |id| id.to_string()),
            text("peer_addr"),
            text("http_addr"),
            text("role"),
            config.clone(),
        ]);
    }
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0))
        .collect();
    let mut out = std::io::stdout().lock();
    for row in &rows {
        let cells: Vec<String> = row.iter().zip(&widths).map(|(cell, w)| format!("{cell:<w$}")).collect();
        let _ = writeln!(out, "{}", cells.join("  ").trim_end());
    }
}

/// `rolepax member list`: the members as the first node that answers sees them.
fn member_list(client: &Client) -> Outcome {
    match client.request("GET", "/v1/members", None) {
        Ok(a) if a.status == 200 => {
            let v = a.json();
            if v["removed"] == json!(true) {
                eprintln!(
                    "rolepax: note: node {} answered, and it was removed from the cluster: its list may be out of date",
                    v["node_id"]
                );
            }
            print_members(&v);
            Outcome::Ok
        }
        Ok(a) if a.status < 500 => Outcome::Usage(a.error()),
        Ok(a) => Outcome::Unavailable(a.error()),
        Err(e) => Outcome::Unavailable(e),
    }
}

/// `rolepax locks`: a table of every lock.
fn list_locks(client: &Client) -> Outcome {
    match client.request("GET", "/v1/locks", None) {
        Ok(a) if a.status == 200 => {
            let v = a.json();
            let locks = v.get("locks").and_then(Value::as_array).cloned().unwrap_or_default();
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{:<24} {:>8} {:>8}  QUEUE", "NAME", "HOLDER", "TOKEN");
            for l in &locks {
                let field = |k: &str| {
                    l.get(k)
                        .map(|v| if v.is_null() { "-".to_string() } else { v.to_string() })
                        .unwrap_or_default()
                };
                let name = l.get("name").and_then(Value::as_str).unwrap_or("?");
                let queue = l
                    .get("queue")
                    .and_then(Value::as_array)
                    .map(|q| q.iter().map(Value::to_string).collect::<Vec<_>>().join(","))
                    .unwrap_or_default();
                let _ = writeln!(
                    out,
                    "{:<24} {:>8} {:>8}  {}",
                    name,
                    field("holder"),
                    field("token"),
                    if queue.is_empty() { "-" } else { &queue }
                );
            }
            Outcome::Ok
        }
        Ok(a) => Outcome::Usage(a.error()),
        Err(e) => Outcome::Unavailable(e),
    }
}

fn main() -> ExitCode {
    let mut endpoints = DEFAULT_ENDPOINTS.to_string();
    let mut timeout = Duration::from_secs(10);
    let mut ttl = DEFAULT_SESSION_TTL;
    let mut command = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        match flag.as_str() {
            "-h" | "--help" if command.is_empty() => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            "--endpoints" if command.is_empty() => match inline.or_else(|| args.next()) {
                Some(v) => endpoints = v,
                None => return Outcome::Usage(format!("--endpoints needs a value\n\n{USAGE}")).exit(),
            },
            "--timeout" if command.is_empty() => match inline
                .or_else(|| args.next())
                .and_then(|v| v.parse::<f64>().ok())
            {
                Some(secs) if secs > 0.0 && secs.is_finite() => timeout = Duration::from_secs_f64(secs),
                _ => return Outcome::Usage(format!("--timeout needs a positive number of seconds\n\n{USAGE}")).exit(),
            },
            "--ttl" if command.is_empty() => match inline.or_else(|| args.next()).and_then(|v| v.parse::<f64>().ok()) {
                Some(secs) if (0.1..=3600.0).contains(&secs) => ttl = Duration::from_secs_f64(secs),
                _ => {
                    return Outcome::Usage(format!("--ttl needs a number of seconds from 0.1 to 3600\n\n{USAGE}"))
                        .exit();
                }
            },
            _ => command.push(arg),
        }
    }
    let endpoints: Vec<String> = endpoints
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(|e| {
            if e.contains("://") {
                e.to_string()
            } else {
                format!("http://{e}")
            }
        })
        .collect();
    if endpoints.is_empty() {
        return Outcome::Usage(format!("--endpoints is empty\n\n{USAGE}")).exit();
    }
    let agent = ureq::AgentBuilder::new()
        .timeout_connect(Duration::from_secs(2).min(timeout))
        .timeout(timeout)
        .build();
    run(
        &Client {
            agent,
            endpoints,
            timeout,
            ttl,
        },
        &command,
    )
    .exit()
}
