//! # Clusters of real `rolepax-node` processes, for the experiments
//!
//! [`Cluster::start`] writes a TOML config (like `config/local-3.toml`, with the engine,
//! the timing keys and ephemeral ports on 127.0.0.1) into a fresh temporary directory,
//! starts one `rolepax-node` process per node (each with its data directory and its log
//! file under that directory) and waits until one node leads and a put through it is
//! acknowledged. It can SIGKILL a node, restart it, and SIGSTOP/SIGCONT it.
//!
//! **Cleaning up.** Every child's pid sits in a fixed table of atomics ([`CHILDREN`]);
//! dropping a `Cluster` (also while a panic unwinds) SIGKILLs its processes and waits
//! for them, and [`install_signal_handlers`] makes SIGINT, SIGTERM and SIGHUP SIGKILL
//! every registered child before the benchmark exits (only async-signal-safe calls in
//! the handler). The temporary directory goes with the `Cluster`, unless
//! `ROLEPAX_EVAL_KEEP=1` keeps it for its logs.
//!
//! **Errors.** A node that exits at the start (a Raft node before that engine exists, a
//! bad setting) makes `start` fail with the tail of its log, so an experiment can write
//! the failure into its CSV and go on with the next engine.
//!
//! **Left out.** Nodes on other machines, membership changes, TLS.

use crate::{Conn, Endpoint, Response};
use serde_json::Value;
use std::fmt::Write as _;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Pids of every node process this benchmark started and has not reaped (0: free slot).
static CHILDREN: [AtomicU32; 256] = [const { AtomicU32::new(0) }; 256];

fn register(pid: u32) {
    for slot in &CHILDREN {
        if slot
            .compare_exchange(0, pid, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
        {
            return;
        }
    }
    eprintln!("rolepax-bench: warning: more than 256 live children; pid {pid} is not tracked for Ctrl-C");
}

fn unregister(pid: u32) {
    for slot in &CHILDREN {
        if slot
            .compare_exchange(pid, 0, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
        {
            return;
        }
    }
}

extern "C" fn on_signal(sig: libc::c_int) {
    for slot in &CHILDREN {
        let pid = slot.load(Ordering::SeqCst);
        if pid != 0 {
            // SAFETY: kill(2) and _exit(2) are async-signal-safe.
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGKILL);
            }
        }
    }
    // SAFETY: as above.
    unsafe { libc::_exit(128 + sig) }
}

/// SIGINT, SIGTERM and SIGHUP kill every node this process started, then exit.
pub fn install_signal_handlers() {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: the handler only calls async-signal-safe functions.
        unsafe {
            libc::signal(sig, on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t);
        }
    }
}

/// The election timing of a cluster, as the config file's keys.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Timing {
    pub tick_ms: u64,
    pub heartbeat_ms: u64,
    pub election_min_ms: u64,
    pub election_max_ms: u64,
}

impl Timing {
    /// The nodes' defaults (see `config/local-3.toml`).
    pub const DEFAULT: Timing = Timing {
        tick_ms: 10,
        heartbeat_ms: 50,
        election_min_ms: 300,
        election_max_ms: 600,
    };
}

/// What to start.
#[derive(Clone, Debug)]
pub struct Spec {
    pub engine: String,
    pub nodes: usize,
    pub timing: Timing,
    /// `retry_interval_ms` (None: the default).
    pub retry_ms: Option<u64>,
    pub bin: PathBuf,
}

pub struct Node {
    pub id: u64,
    pub http: SocketAddr,
    child: Option<Child>,
    log: PathBuf,
}

impl Node {
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn endpoint(&self) -> Endpoint {
        Endpoint {
            url: format!("http://{}", self.http),
            host: self.http.ip().to_string(),
            port: self.http.port(),
        }
    }
}

pub struct Cluster {
    pub spec: Spec,
    pub nodes: Vec<Node>,
    config: PathBuf,
    dir: Option<tempfile::TempDir>,
}

/// `n` distinct free ports on 127.0.0.1 (held until all are chosen, then released).
fn free_ports(n: usize) -> Result<Vec<u16>, String> {
    let held: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<_, _>>()
        .map_err(|e| format!("cannot find a free port: {e}"))?;
    held.iter()
        .map(|l| l.local_addr().map(|a| a.port()).map_err(|e| e.to_string()))
        .collect()
}

/// The last `n` lines of a log file, for error messages.
fn log_tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// One HTTP GET of `path` on `addr` with a fresh connection; the JSON body of a 2xx.
pub fn get_json(addr: SocketAddr, path: &str, timeout: Duration) -> Option<Value> {
    let mut conn = Conn::open(&[addr], timeout).ok()?;
    json_of(conn.get(&addr.to_string(), path).ok()?)
}

pub fn json_of(r: Response) -> Option<Value> {
    if (200..300).contains(&r.status) {
        serde_json::from_slice(&r.body).ok()
    } else {
        None
    }
}

/// Whether a `/status` answer says its node leads.
pub fn says_leader(status: &Value) -> bool {
    match status.get("is_leader").and_then(Value::as_bool) {
        Some(b) => b,
        None => {
            status.get("leader_id").and_then(Value::as_u64).is_some()
                && status.get("leader_id") == status.get("node_id")
        }
    }
}

/// One put of `key` through the JSON gateway on a fresh connection: whether it was acknowledged.
pub fn put_once(addr: SocketAddr, key: &str, timeout: Duration) -> bool {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let body = format!("{{\"key\":\"{}\",\"value\":\"{}\"}}", b64.encode(key), b64.encode("x"));
    let Ok(mut conn) = Conn::open(&[addr], timeout) else {
        return false;
    };
    conn.post(&addr.to_string(), "/v3/kv/put", body.as_bytes(), &mut Vec::new())
        .is_ok_and(|r| (200..300).contains(&r.status))
}

impl Cluster {
    /// Starts the cluster and waits (up to `deadline`) until it has a leader that commits.
    pub fn start(spec: &Spec, deadline: Duration) -> Result<Cluster, String> {
        if !spec.bin.is_file() {
            return Err(format!("{}: no rolepax-node binary there", spec.bin.display()));
        }
        let dir = tempfile::Builder::new()
            .prefix(&format!("rolepax-eval-{}-{}.", spec.engine, spec.nodes))
            .tempdir()
            .map_err(|e| format!("cannot make a temporary directory: {e}"))?;
        let ports = free_ports(2 * spec.nodes)?;
        let t = spec.timing;
        let mut toml = String::new();
        let _ = writeln!(toml, "# written by rolepax-bench experiment");
        let _ = writeln!(toml, "cluster_id = \"eval-{}-{}\"", spec.engine, spec.nodes);
        let _ = writeln!(toml, "engine = \"{}\"", spec.engine);
        let _ = writeln!(toml, "data_dir = \"{}/node-{{id}}\"", dir.path().display());
        let _ = writeln!(toml, "tick_ms = {}", t.tick_ms);
        let _ = writeln!(toml, "heartbeat_ms = {}", t.heartbeat_ms);
        let _ = writeln!(toml, "election_min_ms = {}", t.election_min_ms);
        let _ = writeln!(toml, "election_max_ms = {}", t.election_max_ms);
        if let Some(r) = spec.retry_ms {
            let _ = writeln!(toml, "retry_interval_ms = {r}");
        }
        let _ = writeln!(toml, "log_level = \"warn\"");
        let mut nodes = Vec::new();
        for i in 0..spec.nodes {
            let id = i as u64 + 1;
            let (peer, http) = (ports[2 * i], ports[2 * i + 1]);
            let _ = writeln!(
                toml,
                "\n[[nodes]]\nid = {id}\npeer_addr = \"127.0.0.1:{peer}\"\nhttp_addr = \"127.0.0.1:{http}\""
            );
            nodes.push(Node {
                id,
                http: SocketAddr::from(([127, 0, 0, 1], http)),
                child: None,
                log: dir.path().join(format!("node-{id}.log")),
            });
        }
        let config = dir.path().join("cluster.toml");
        std::fs::write(&config, toml).map_err(|e| format!("cannot write {}: {e}", config.display()))?;
        let mut c = Cluster {
            spec: spec.clone(),
            nodes,
            config,
            dir: Some(dir),
        };
        for id in 1..=spec.nodes as u64 {
            c.spawn(id)?;
        }
        c.wait_stable(deadline)?;
        // The binary must run the engine asked for (an older one ignores `engine`).
        for n in c.running() {
            let said = c
                .status(n.id)
                .and_then(|s| s.get("engine").and_then(Value::as_str).map(str::to_string));
            if said.as_deref() != Some(spec.engine.as_str()) {
                return Err(format!(
                    "node {} runs engine {}, not {} (a rolepax-node without engine support?)",
                    n.id,
                    said.unwrap_or_else(|| "(not said in /status)".into()),
                    spec.engine
                ));
            }
        }
        Ok(c)
    }

    fn node_mut(&mut self, id: u64) -> Result<&mut Node, String> {
        self.nodes
            .iter_mut()
            .find(|n| n.id == id)
            .ok_or_else(|| format!("no node {id}"))
    }

    pub fn node(&self, id: u64) -> Option<&Node> {
        self.nodes.iter().find(|n| n.id == id)
    }

    fn spawn(&mut self, id: u64) -> Result<(), String> {
        let (bin, config) = (self.spec.bin.clone(), self.config.clone());
        let node = self.node_mut(id)?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log)
            .map_err(|e| format!("cannot open {}: {e}", node.log.display()))?;
        let log2 = log.try_clone().map_err(|e| e.to_string())?;
        let mut cmd = Command::new(&bin);
        cmd.arg("--config")
            .arg(&config)
            .arg("--id")
            .arg(id.to_string())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .env("RUST_LOG", "warn");
        // The file decides every setting: no ROLEPAX_* from the benchmark's environment.
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("ROLEPAX_") {
                cmd.env_remove(k);
            }
        }
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
        register(child.id());
        node.child = Some(child);
        Ok(())
    }

    /// Nodes whose process has exited on its own, with their logs' tails.
    fn dead(&mut self) -> Option<String> {
        for n in &mut self.nodes {
            if let Some(child) = n.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                unregister(child.id());
                n.child = None;
                return Some(format!(
                    "node {} exited ({status}); its log ends:\n{}",
                    n.id,
                    log_tail(&n.log, 8)
                ));
            }
        }
        None
    }

    pub fn running(&self) -> impl Iterator<Item = &Node> {
        self.nodes.iter().filter(|n| n.child.is_some())
    }

    pub fn status(&self, id: u64) -> Option<Value> {
        get_json(self.node(id)?.http, "/status", Duration::from_millis(500))
    }

    /// The running node that says it leads, if exactly one does.
    pub fn leader(&self) -> Option<u64> {
        let leaders: Vec<u64> = self
            .running()
            .filter(|n| self.status(n.id).is_some_and(|s| says_leader(&s)))
            .map(|n| n.id)
            .collect();
        match leaders[..] {
            [one] => Some(one),
            _ => None,
        }
    }

    /// Waits until one running node leads, every running node names it, and a put
    /// through it is acknowledged; answers the leader.
    pub fn wait_stable(&mut self, deadline: Duration) -> Result<u64, String> {
        let until = Instant::now() + deadline;
        let mut probe = 0u64;
        loop {
            if let Some(why) = self.dead() {
                return Err(why);
            }
            if let Some(l) = self.leader() {
                let agree = self.running().all(|n| {
                    self.status(n.id)
                        .and_then(|s| s.get("leader_id").and_then(Value::as_u64))
                        == Some(l)
                });
                probe += 1;
                if agree
                    && let Some(node) = self.node(l)
                    && put_once(node.http, &format!("eval-probe-{probe}"), Duration::from_secs(5))
                {
                    return Ok(l);
                }
            }
            if Instant::now() >= until {
                let states: Vec<String> = self
                    .running()
                    .map(|n| match self.status(n.id) {
                        Some(s) => format!(
                            "node {}: leader_id {} is_leader {}",
                            n.id,
                            s.get("leader_id").unwrap_or(&Value::Null),
                            s.get("is_leader").unwrap_or(&Value::Null)
                        ),
                        None => format!("node {}: no /status answer", n.id),
                    })
                    .collect();
                return Err(format!(
                    "{} cluster of {}: no stable leader within {:?} ({})",
                    self.spec.engine,
                    self.spec.nodes,
                    deadline,
                    states.join("; ")
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILLs node `id` and reaps it.
    pub fn kill(&mut self, id: u64) -> Result<(), String> {
        let node = self.node_mut(id)?;
        if let Some(mut child) = node.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            unregister(child.id());
        }
        Ok(())
    }

    pub fn restart(&mut self, id: u64) -> Result<(), String> {
        self.kill(id)?;
        self.spawn(id)
    }

    /// Sends `sig` (SIGSTOP, SIGCONT) to node `id`'s process.
    pub fn signal(&self, id: u64, sig: libc::c_int) {
        if let Some(pid) = self.node(id).and_then(Node::pid) {
            // SAFETY: plain kill(2) of our own child.
            unsafe {
                libc::kill(pid as libc::pid_t, sig);
            }
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            if let Some(mut child) = n.child.take() {
                let _ = child.kill();
                let _ = child.wait();
                unregister(child.id());
            }
        }
        if std::env::var("ROLEPAX_EVAL_KEEP").is_ok_and(|v| v == "1")
            && let Some(dir) = self.dir.take()
        {
            eprintln!("rolepax-bench: kept {}", dir.keep().display());
        }
    }
}
