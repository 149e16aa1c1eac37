//! A cluster of real `rolepax-node` processes on loopback, for tests: ephemeral ports,
//! a temporary directory with the config and each node's data and log, helpers to
//! start, SIGKILL and query nodes. Children are killed on drop, even when a test panics.
#![allow(dead_code)]

use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const DEADLINE: Duration = Duration::from_secs(120);

/// Free loopback ports (bound, then released: another process could take one in between,
/// which only makes the test fail loudly, not wrongly).
pub fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().expect("local addr").port())
        .collect()
}

/// The config line that selects an engine (`"paxos"` or `"raft"`), for
/// [`Procs::with_settings`].
pub fn engine(name: &str) -> String {
    format!("engine = \"{name}\"\n")
}

pub struct Procs {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub http: BTreeMap<u64, String>,
    /// (peer, HTTP) address of every node, `IP:port`.
    pub addrs: BTreeMap<u64, (String, String)>,
    pub children: BTreeMap<u64, Child>,
    pub agent: ureq::Agent,
    /// Environment every node is started with (e.g. a planted bug).
    pub env: Vec<(String, String)>,
}

impl Procs {
    pub fn new(n: u64) -> Self {
        Self::with_settings(n, "")
    }

    /// A cluster whose config file gets `extra` top-level TOML lines.
    pub fn with_settings(n: u64, extra: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let ports = free_ports(2 * n as usize);
        let mut toml = String::from(
            "cluster_id = \"process-test\"\ntick_ms = 10\nheartbeat_ms = 50\nelection_min_ms = 300\n\
             election_max_ms = 600\nrequest_timeout_ms = 4000\nretry_interval_ms = 300\nlog_level = \"info\"\n",
        );
        toml.push_str(extra);
        let mut http = BTreeMap::new();
        let mut addrs = BTreeMap::new();
        for id in 1..=n {
            let (peer, web) = (ports[2 * (id as usize - 1)], ports[2 * (id as usize - 1) + 1]);
            toml.push_str(&format!(
                "\n[[nodes]]\nid = {id}\npeer_addr = \"127.0.0.1:{peer}\"\nhttp_addr = \"127.0.0.1:{web}\"\n"
            ));
            http.insert(id, format!("http://127.0.0.1:{web}"));
            addrs.insert(id, (format!("127.0.0.1:{peer}"), format!("127.0.0.1:{web}")));
        }
        let config = dir.path().join("cluster.toml");
        std::fs::write(&config, toml).expect("write config");
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_secs(2))
            .timeout(Duration::from_secs(10))
            .build();
        Procs {
            dir,
            config,
            http,
            addrs,
            children: BTreeMap::new(),
            agent,
            env: Vec::new(),
        }
    }

    /// Starts every node and waits for a leader; returns it.
    pub fn start_all(&mut self) -> u64 {
        let ids: Vec<u64> = self.http.keys().copied().collect();
        for id in ids {
            self.start(id);
        }
        self.wait_for_leader()
    }

    pub fn start(&mut self, id: u64) {
        self.start_with_env(id, &[]);
    }

    /// Starts node `id` with extra environment variables (a failpoint, a setting).
    pub fn start_with_env(&mut self, id: u64, env: &[(&str, &str)]) {
        let mut args = vec!["--config".to_string(), self.config.display().to_string(), "--id".into()];
        args.push(id.to_string());
        self.spawn(id, &args, env);
    }

    /// Spawns `rolepax-node ARGS --data-dir <its dir>` as node `id`, its log appended to
    /// `node-ID.log`.
    fn spawn(&mut self, id: u64, args: &[String], env: &[(&str, &str)]) {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join(format!("node-{id}.log")))
            .expect("log file");
        let mut command = Command::new(env!("CARGO_BIN_EXE_rolepax-node"));
        // The test's own ROLEPAX_* variables (ROLEPAX_CHAOS_SEED, ...) are not settings:
        // a node would refuse them as unknown keys.
        for (name, _) in std::env::vars().filter(|(k, _)| k.starts_with("ROLEPAX_")) {
            command.env_remove(name);
        }
        let child = command
            .args(args)
            .arg("--data-dir")
            .arg(self.dir.path().join(format!("data-{id}")))
            .env("RUST_LOG", "info")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn rolepax-node");
        self.children.insert(id, child);
    }

    /// SIGKILL: no chance to flush or say goodbye.
    pub fn kill(&mut self, id: u64) {
        if let Some(mut child) = self.children.remove(&id) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn running(&self) -> Vec<u64> {
        self.children.keys().copied().collect()
    }

    pub fn status(&self, id: u64) -> Option<Value> {
        let res = self.agent.get(&format!("{}/status", self.http[&id])).call().ok()?;
        res.into_json().ok()
    }

    /// Waits until every running node names the same running leader, which leads.
    pub fn wait_for_leader(&self) -> u64 {
        self.try_wait_for_leader(DEADLINE).unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`Procs::wait_for_leader`], up to `within`; `Err` says what the nodes said.
    pub fn try_wait_for_leader(&self, within: Duration) -> Result<u64, String> {
        let deadline = Instant::now() + within;
        loop {
            let statuses: Vec<Option<Value>> = self.running().iter().map(|id| self.status(*id)).collect();
            let leaders: Vec<Option<u64>> = statuses
                .iter()
                .map(|s| s.as_ref().and_then(|s| s["leader_id"].as_u64()))
                .collect();
            if let Some(Some(l)) = leaders.first()
                && self.children.contains_key(l)
                && leaders.iter().all(|x| *x == Some(*l))
                && self.status(*l).is_some_and(|s| s["is_leader"] == json!(true))
            {
                return Ok(*l);
            }
            if Instant::now() >= deadline {
                return Err(format!("no agreed leader: {leaders:?}\n{}", self.logs()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn put(&self, id: u64, key: &str, value: &str) -> Result<(), String> {
        let url = format!("{}/v1/kv/{key}", self.http[&id]);
        match self.agent.put(&url).send_string(value) {
            Ok(_) => Ok(()),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Puts until acknowledged, through whichever of `via` answers.
    pub fn put_retrying(&self, via: &[u64], key: &str, value: &str) {
        let deadline = Instant::now() + DEADLINE;
        let mut errors = Vec::new();
        for id in via.iter().cycle() {
            match self.put(*id, key, value) {
                Ok(()) => return,
                Err(e) => errors.push(e),
            }
            assert!(
                Instant::now() < deadline,
                "put {key} never acknowledged: {errors:?}\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A linearizable read through the log.
    pub fn get(&self, id: u64, key: &str) -> Option<String> {
        let res = self.agent.get(&format!("{}/v1/kv/{key}", self.http[&id])).call().ok()?;
        res.into_string().ok()
    }

    /// A local read: `?stale=true` on odd keys, the etcd gateway's `serializable` on even.
    pub fn get_local(&self, id: u64, key: &str, etcd: bool) -> Option<String> {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD;
        if etcd {
            let res = self
                .agent
                .post(&format!("{}/v3/kv/range", self.http[&id]))
                .send_json(json!({"key": b64.encode(key), "serializable": true}))
                .ok()?;
            let v: Value = res.into_json().ok()?;
            let value = v["kvs"][0]["value"].as_str()?;
            String::from_utf8(b64.decode(value).ok()?).ok()
        } else {
            let res = self
                .agent
                .get(&format!("{}/v1/kv/{key}?stale=true", self.http[&id]))
                .call()
                .ok()?;
            res.into_string().ok()
        }
    }

    pub fn logs(&self) -> String {
        let mut out = String::new();
        for id in self.http.keys() {
            let text = std::fs::read_to_string(self.dir.path().join(format!("node-{id}.log"))).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(30).collect();
            out.push_str(&format!("--- node {id} (last lines)\n"));
            for line in tail.into_iter().rev() {
                out.push_str(line);
                out.push('\n');
            }
        }
        out
    }
}

impl Drop for Procs {
    fn drop(&mut self) {
        let ids = self.running();
        for id in ids {
            self.kill(id);
        }
    }
}

/// Joining nodes and the operator's `rolepax member` commands (issue #16).
impl Procs {
    /// Starts node `id` in joining mode (`--join` naming the HTTP addresses of `via`),
    /// with fresh ports and its own data directory; returns its (peer, HTTP) addresses.
    /// With `tuning`, the cluster's config file is given too (its timings and cluster id;
    /// a joining node ignores its `[[nodes]]`).
    pub fn start_joining(&mut self, id: u64, via: &[u64], tuning: bool) -> (String, String) {
        let ports = free_ports(2);
        let (peer, web) = (format!("127.0.0.1:{}", ports[0]), format!("127.0.0.1:{}", ports[1]));
        self.http.insert(id, format!("http://{web}"));
        self.addrs.insert(id, (peer.clone(), web.clone()));
        self.restart_joining(id, via, tuning);
        (peer, web)
    }

    /// Starts node `id` again in joining mode, at the addresses it had (a node whose data
    /// directory holds a membership file ignores `--join` and restarts as it was).
    pub fn restart_joining(&mut self, id: u64, via: &[u64], tuning: bool) {
        let (peer, web) = self.addrs[&id].clone();
        let join: Vec<String> = via.iter().map(|v| self.http[v].clone()).collect();
        let mut args = Vec::new();
        if tuning {
            args.extend(["--config".to_string(), self.config.display().to_string()]);
        }
        for (flag, value) in [("--id", id.to_string()), ("--peer-addr", peer), ("--http-addr", web)] {
            args.extend([flag.to_string(), value]);
        }
        args.extend(["--join".to_string(), join.join(",")]);
        self.spawn(id, &args, &[]);
    }

    /// Runs `rolepax --endpoints <via> member ARGS...`; returns (exit code, stdout, stderr).
    pub fn member(&self, via: &[u64], args: &[&str]) -> (i32, String, String) {
        let endpoints: Vec<String> = via.iter().map(|v| self.http[v].clone()).collect();
        let out = Command::new(env!("CARGO_BIN_EXE_rolepax"))
            .args(["--endpoints", &endpoints.join(","), "--timeout", "90", "member"])
            .args(args)
            .output()
            .expect("run rolepax member");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// `GET /v1/members` of node `id`.
    pub fn members(&self, id: u64) -> Option<Value> {
        let res = self.agent.get(&format!("{}/v1/members", self.http[&id])).call().ok()?;
        res.into_json().ok()
    }
}
