//! The etcd v3 JSON gateway subset, conformance-checked: the same requests go to a real
//! etcd (Debian's etcd-server, one member on ephemeral loopback ports) and to a fresh
//! 3-node rolepax cluster, and the answers are compared field by field. Only the fields
//! that legitimately differ are ignored: `header.cluster_id`, `header.member_id` and
//! `header.raft_term`. Both stores start empty at revision 1 and see the same writes in
//! the same order, so revisions, versions and create/mod revisions must agree exactly.
//!
//! etcd is found on the PATH; if it is missing and we are root, it is installed with
//! apt-get (as `../shared/bench/etcd-cluster.sh` does), so the test runs on a fresh machine.

mod common;

use common::procs::*;
use serde_json::{Value, json};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Etcd {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn etcd_binary() -> String {
    let found = |name: &str| {
        Command::new("sh")
            .args(["-c", &format!("command -v {name}")])
            .output()
            .ok()
            .filter(|o| o.status.success())
    };
    if let Some(out) = found("etcd") {
        return String::from_utf8_lossy(&out.stdout).trim().to_string();
    }
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    assert!(
        root,
        "etcd is not installed and we are not root: install Debian's etcd-server (apt-get install etcd-server)"
    );
    let installed = Command::new("sh")
        .args([
            "-c",
            "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server",
        ])
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(installed, "could not install etcd-server with apt-get");
    let out = found("etcd").expect("etcd on the PATH after installing etcd-server");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn start_etcd(agent: &ureq::Agent) -> Etcd {
    let bin = etcd_binary();
    let dir = tempfile::tempdir().expect("tempdir");
    let ports = free_ports(2);
    let (client, peer) = (
        format!("http://127.0.0.1:{}", ports[0]),
        format!("http://127.0.0.1:{}", ports[1]),
    );
    let child = Command::new(bin)
        .args(["--name", "conformance", "--data-dir"])
        .arg(dir.path().join("etcd"))
        .args(["--listen-client-urls", &client, "--advertise-client-urls", &client])
        .args(["--listen-peer-urls", &peer, "--initial-advertise-peer-urls", &peer])
        .args(["--initial-cluster", &format!("conformance={peer}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start etcd");
    let etcd = Etcd {
        child,
        url: client,
        _dir: dir,
    };
    let deadline = Instant::now() + DEADLINE;
    while agent
        .post(&format!("{}/v3/kv/range", etcd.url))
        .send_json(json!({"key": "AA=="}))
        .is_err()
    {
        assert!(Instant::now() < deadline, "etcd did not come up");
        std::thread::sleep(Duration::from_millis(100));
    }
    etcd
}

fn b64(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// Sends one gateway request; returns status and JSON body.
fn call(agent: &ureq::Agent, base: &str, path: &str, body: &Value) -> (u16, Value) {
    let res = match agent.post(&format!("{base}{path}")).send_json(body.clone()) {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("{base}{path}: {e}"),
    };
    let status = res.status();
    (status, res.into_json().unwrap_or(Value::Null))
}

/// Drops the header fields that legitimately differ between two clusters.
fn normalize(mut v: Value) -> Value {
    fn strip(v: &mut Value) {
        match v {
            Value::Object(m) => {
                if let Some(Value::Object(h)) = m.get_mut("header") {
                    h.remove("cluster_id");
                    h.remove("member_id");
                    h.remove("raft_term");
                }
                m.values_mut().for_each(strip);
            }
            Value::Array(a) => a.iter_mut().for_each(strip),
            _ => {}
        }
    }
    strip(&mut v);
    v
}

#[test]
fn etcd_gateway_answers_match_a_real_etcd_field_by_field() {
    gateway_matches_etcd("paxos");
}

/// The same script against the Raft engine: the front is the same, the engine beneath
/// it must not show.
#[test]
fn etcd_raft_gateway_answers_match_a_real_etcd_field_by_field() {
    gateway_matches_etcd("raft");
}

fn gateway_matches_etcd(engine: &str) {
    let mut procs = Procs::with_settings(3, &common::procs::engine(engine));
    let leader = procs.start_all();
    let etcd = start_etcd(&procs.agent);
    let rolepax = procs.http[&leader].clone();
    let (k_foo, k_foo2, k_foo3) = (b64("foo"), b64("foo/2"), b64("foo/3"));
    let steps: Vec<(&str, Value)> = vec![
        ("/v3/kv/put", json!({"key": k_foo, "value": b64("bar")})),
        (
            "/v3/kv/put",
            json!({"key": k_foo, "value": b64("baz"), "prev_kv": true}),
        ),
        ("/v3/kv/range", json!({"key": k_foo})),
        ("/v3/kv/range", json!({"key": b64("missing")})),
        ("/v3/kv/put", json!({"key": k_foo2, "value": b64("two")})),
        ("/v3/kv/put", json!({"key": k_foo3, "value": b64("three")})),
        ("/v3/kv/range", json!({"key": b64("foo/"), "range_end": b64("foo0")})),
        (
            "/v3/kv/range",
            json!({"key": b64("foo/"), "range_end": b64("foo0"), "limit": 1}),
        ),
        (
            "/v3/kv/range",
            json!({"key": b64("foo/"), "range_end": b64("foo0"), "count_only": true}),
        ),
        (
            "/v3/kv/range",
            json!({"key": b64("foo/"), "range_end": b64("foo0"), "keys_only": true}),
        ),
        ("/v3/kv/range", json!({"key": k_foo, "serializable": true})),
        (
            "/v3/kv/txn",
            json!({"compare": [{"key": k_foo, "target": "VALUE", "result": "EQUAL", "value": b64("baz")}],
                   "success": [{"request_put": {"key": k_foo, "value": b64("qux")}}],
                   "failure": [{"request_range": {"key": k_foo}}]}),
        ),
        (
            "/v3/kv/txn",
            json!({"compare": [{"key": k_foo, "target": "VERSION", "result": "GREATER", "version": "10"}],
                   "success": [{"request_delete_range": {"key": k_foo}}],
                   "failure": [{"request_range": {"key": k_foo}}, {"request_put": {"key": k_foo2, "value": b64("2b")}}]}),
        ),
        (
            "/v3/kv/txn",
            json!({"compare": [{"key": b64("missing"), "target": "CREATE", "result": "EQUAL", "create_revision": "0"}],
                   "success": [{"request_put": {"key": b64("missing"), "value": b64("now")}}]}),
        ),
        ("/v3/kv/deleterange", json!({"key": k_foo, "prev_kv": true})),
        (
            "/v3/kv/deleterange",
            json!({"key": b64("foo/"), "range_end": b64("foo0")}),
        ),
        ("/v3/kv/deleterange", json!({"key": b64("nothing")})),
        ("/v3/kv/range", json!({"key": "AA==", "range_end": "AA=="})),
    ];
    let mut mismatches = Vec::new();
    for (i, (path, body)) in steps.iter().enumerate() {
        let (es, ev) = call(&procs.agent, &etcd.url, path, body);
        let (rs, rv) = call(&procs.agent, &rolepax, path, body);
        let (ev, rv) = (normalize(ev), normalize(rv));
        if es != rs || ev != rv {
            mismatches.push(format!(
                "step {i} {path} {body}\n  etcd    {es} {ev}\n  rolepax {rs} {rv}"
            ));
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} answers differ from etcd's:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
}
