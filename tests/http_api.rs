//! The HTTP API over an in-process `Cluster`: etcd gateway round trips (base64 keys,
//! string integers, omitted zero fields), the plain `/v1` API, error shapes and codes,
//! `/status` and `/metrics`. Requests go to a follower, so forwarding to the leader is
//! exercised too. Leaves out real sockets (see `process_cluster.rs`).

use actix_web::http::StatusCode;
use actix_web::{App, test, web};
use rolepax::Cluster;
use rolepax::app::service::Service;
use rolepax::http::{HttpState, configure};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const DEADLINE: Duration = Duration::from_secs(60);
const MAX_BODY: usize = 4096;

async fn cluster(request_timeout: Duration) -> (Cluster<Service>, u64, u64) {
    let cluster = Cluster::start_with(3, |cfg| {
        cfg.request_timeout = request_timeout;
        cfg.retry_interval = Duration::from_millis(300);
    })
    .await
    .expect("cluster starts");
    let leader = cluster.wait_for_leader().await.expect("a leader");
    let follower = cluster.ids().into_iter().find(|id| *id != leader).expect("a follower");
    (cluster, leader, follower)
}

fn state(cluster: &Cluster<Service>, id: u64) -> web::Data<HttpState> {
    web::Data::new(HttpState::new(cluster.node(id).clone(), "test-cluster", MAX_BODY))
}

/// The app over one node (a macro: the service's request type has no public name).
macro_rules! app {
    ($st:expr) => {
        test::init_service(App::new().app_data($st).configure(configure)).await
    };
}

/// Sends a `TestRequest`; answers (status, headers, body).
macro_rules! call {
    ($svc:expr, $req:expr $(,)?) => {{
        let res = test::call_service(&$svc, $req.to_request()).await;
        let (status, headers) = (res.status(), res.headers().clone());
        (status, headers, test::read_body(res).await.to_vec())
    }};
}

/// POSTs a body; answers (status, JSON body).
macro_rules! post {
    ($svc:expr, $path:expr, $body:expr $(,)?) => {{
        let (status, _, body) = call!(
            $svc,
            test::TestRequest::post().uri($path).set_payload(String::from($body))
        );
        (status, to_json(&body))
    }};
}

fn to_json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(bytes).into()))
}

fn b64(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn assert_error(status: StatusCode, body: &Value, want: StatusCode, mentions: &str) {
    assert_eq!(status, want, "{body}");
    assert_eq!(body["code"], json!(want.as_u16()), "{body}");
    let msg = body["error"].as_str().unwrap_or_default();
    assert!(msg.contains(mentions), "error {msg:?} should mention {mentions:?}");
}

#[actix_rt::test]
async fn http_etcd_put_range_delete_round_trip() {
    let (cluster, _leader, follower) = cluster(Duration::from_secs(10)).await;
    let svc = app!(state(&cluster, follower));

    let (s, v) = post!(
        svc,
        "/v3/kv/put",
        json!({"key": b64("foo"), "value": b64("bar")}).to_string(),
    );
    assert_eq!(s, StatusCode::OK, "{v}");
    let header = &v["header"];
    assert_eq!(header["member_id"], json!(follower.to_string()));
    assert_eq!(header["revision"], json!("2"), "{v}");
    assert!(
        header["cluster_id"].is_string() && header["raft_term"].is_string(),
        "{v}"
    );
    assert!(v.get("prev_kv").is_none(), "prev_kv only when asked: {v}");

    let (_, v) = post!(
        svc,
        "/v3/kv/put",
        json!({"key": b64("foo"), "value": b64("baz"), "prev_kv": true}).to_string(),
    );
    assert_eq!(v["prev_kv"]["value"], json!(b64("bar")), "{v}");
    assert_eq!(v["prev_kv"]["version"], json!("1"), "{v}");

    let (_, v) = post!(svc, "/v3/kv/range", json!({"key": b64("foo")}).to_string());
    assert_eq!(v["count"], json!("1"), "{v}");
    let kv = &v["kvs"][0];
    assert_eq!((&kv["key"], &kv["value"]), (&json!(b64("foo")), &json!(b64("baz"))));
    assert_eq!(
        (&kv["create_revision"], &kv["mod_revision"], &kv["version"]),
        (&json!("2"), &json!("3"), &json!("2"))
    );
    assert!(v.get("more").is_none(), "false is omitted: {v}");

    // A prefix range with a limit; camelCase names are accepted too.
    post!(
        svc,
        "/v3/kv/put",
        json!({"key": b64("fop"), "value": b64("x")}).to_string(),
    );
    let (_, v) = post!(
        svc,
        "/v3/kv/range",
        json!({"key": b64("fo"), "rangeEnd": b64("fp"), "limit": "1"}).to_string(),
    );
    assert_eq!((&v["count"], &v["more"]), (&json!("2"), &json!(true)), "{v}");
    assert_eq!(v["kvs"].as_array().map(Vec::len), Some(1), "{v}");

    // A serializable read answers locally: poll until this follower has applied.
    let deadline = Instant::now() + DEADLINE;
    loop {
        let (_, v) = post!(
            svc,
            "/v3/kv/range",
            json!({"key": b64("fop"), "serializable": true}).to_string(),
        );
        if v["count"] == json!("1") {
            break;
        }
        assert!(Instant::now() < deadline, "serializable read never saw fop: {v}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let (s, v) = post!(
        svc,
        "/v3/kv/deleterange",
        json!({"key": b64("foo"), "prev_kv": true}).to_string(),
    );
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["deleted"], json!("1"), "{v}");
    assert_eq!(v["prev_kvs"][0]["value"], json!(b64("baz")), "{v}");
    let (_, v) = post!(svc, "/v3/kv/range", json!({"key": b64("foo")}).to_string());
    assert!(
        v.get("kvs").is_none() && v.get("count").is_none(),
        "empty range omits kvs and count: {v}"
    );
    assert_eq!(v["header"]["revision"], json!("5"), "{v}");
}

#[actix_rt::test]
async fn http_etcd_txn_compares_choose_branch() {
    let (cluster, leader, _) = cluster(Duration::from_secs(10)).await;
    let svc = app!(state(&cluster, leader));
    post!(
        svc,
        "/v3/kv/put",
        json!({"key": b64("k"), "value": b64("v1")}).to_string(),
    );
    let txn = json!({
        "compare": [{"key": b64("k"), "target": "VALUE", "result": "EQUAL", "value": b64("v1")},
                    {"key": b64("k"), "target": "MOD", "result": "GREATER", "mod_revision": "0"}],
        "success": [{"request_put": {"key": b64("k"), "value": b64("v2"), "prev_kv": true}}],
        "failure": [{"request_range": {"key": b64("k")}}]
    })
    .to_string();
    let (s, v) = post!(svc, "/v3/kv/txn", txn.clone());
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["succeeded"], json!(true), "{v}");
    assert_eq!(
        v["responses"][0]["response_put"]["prev_kv"]["value"],
        json!(b64("v1")),
        "{v}"
    );
    let (_, v) = post!(svc, "/v3/kv/txn", txn);
    assert!(v.get("succeeded").is_none(), "false is omitted: {v}");
    let range = &v["responses"][0]["response_range"];
    assert_eq!(range["kvs"][0]["value"], json!(b64("v2")), "{v}");
    assert_eq!(range["kvs"][0]["version"], json!("2"), "{v}");
    // VERSION compare with a number and NOT_EQUAL / LESS by number (etcd enums also by value).
    let txn = json!({
        "compare": [{"key": b64("k"), "target": 0, "result": 3, "version": 7},
                    {"key": b64("absent"), "target": "CREATE", "result": "LESS", "create_revision": "1"}],
        "success": [{"requestDeleteRange": {"key": b64("k")}}]
    });
    let (_, v) = post!(svc, "/v3/kv/txn", txn.to_string());
    assert_eq!(v["succeeded"], json!(true), "{v}");
    assert_eq!(v["responses"][0]["response_delete_range"]["deleted"], json!("1"), "{v}");
}

#[actix_rt::test]
async fn http_bad_input_is_400_naming_the_problem() {
    let (cluster, leader, _) = cluster(Duration::from_secs(10)).await;
    let svc = app!(state(&cluster, leader));
    let (s, v) = post!(svc, "/v3/kv/put", r#"{"key": "not base64!", "value": "YmFy"}"#);
    assert_error(s, &v, StatusCode::BAD_REQUEST, "bad base64 in `key`");
    let (s, v) = post!(svc, "/v3/kv/put", r#"{"key": "Zm9v", "value": "#);
    assert_error(s, &v, StatusCode::BAD_REQUEST, "bad JSON");
    let (s, v) = post!(svc, "/v3/kv/range", r#"{"limit": "3"}"#);
    assert_error(s, &v, StatusCode::BAD_REQUEST, "missing key");
    let (s, v) = post!(svc, "/v3/kv/range", r#"{"key": "Zm9v", "limit": "-1"}"#);
    assert_error(s, &v, StatusCode::BAD_REQUEST, "limit");
    let (s, v) = post!(svc, "/v3/kv/range", r#"{"key": "Zm9v", "sort_order": "DESCEND"}"#);
    assert_error(s, &v, StatusCode::BAD_REQUEST, "sort_order");
    let (s, v) = post!(svc, "/v3/kv/put", r#"{"key": "Zm9v", "valeu": "YmFy"}"#);
    assert_error(s, &v, StatusCode::BAD_REQUEST, "valeu");
    let (s, v) = post!(
        svc,
        "/v3/kv/txn",
        r#"{"success": [{"request_put": {"key": "Zm9v"}, "request_range": {}}]}"#,
    );
    assert_error(s, &v, StatusCode::BAD_REQUEST, "success[0]");
    let (s, v) = post!(svc, "/v1/cas/k", r#"{"new": "x"}"#);
    assert_error(s, &v, StatusCode::BAD_REQUEST, "expected");
    let (s, _, body) = call!(svc, test::TestRequest::get().uri("/v1/kv/k?stale=maybe"));
    let v: Value = serde_json::from_slice(&body).expect("json error");
    assert_error(s, &v, StatusCode::BAD_REQUEST, "stale");
}

#[actix_rt::test]
async fn http_oversized_body_is_413() {
    let (cluster, leader, _) = cluster(Duration::from_secs(10)).await;
    let svc = app!(state(&cluster, leader));
    let big = "x".repeat(MAX_BODY + 1);
    let (s, _, body) = call!(svc, test::TestRequest::put().uri("/v1/kv/big").set_payload(big.clone()),);
    let v: Value = serde_json::from_slice(&body).expect("json error");
    assert_error(s, &v, StatusCode::PAYLOAD_TOO_LARGE, "max_body_bytes");
    let (s, v) = post!(
        svc,
        "/v3/kv/put",
        json!({"key": b64("k"), "value": b64(&big)}).to_string(),
    );
    assert_error(s, &v, StatusCode::PAYLOAD_TOO_LARGE, "max_body_bytes");
}

#[actix_rt::test]
async fn http_plain_put_get_delete_and_404() {
    let (cluster, _leader, follower) = cluster(Duration::from_secs(10)).await;
    let svc = app!(state(&cluster, follower));
    let (s, _, body) = call!(
        svc,
        test::TestRequest::put().uri("/v1/kv/dir/a%20b").set_payload("hello"),
    );
    assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    let v: Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(v["created"], json!(true));
    let (s, headers, body) = call!(svc, test::TestRequest::get().uri("/v1/kv/dir/a%20b"));
    assert_eq!((s, body.as_slice()), (StatusCode::OK, &b"hello"[..]));
    assert!(headers.contains_key("x-revision"));
    // The same key through the etcd API: the path was percent-decoded.
    let (_, v) = post!(svc, "/v3/kv/range", json!({"key": b64("dir/a b")}).to_string());
    assert_eq!(v["kvs"][0]["value"], json!(b64("hello")), "{v}");

    let deadline = Instant::now() + DEADLINE;
    loop {
        let (s, _, body) = call!(svc, test::TestRequest::get().uri("/v1/kv/dir/a%20b?stale=true"));
        if s == StatusCode::OK {
            assert_eq!(body, b"hello");
            break;
        }
        assert!(Instant::now() < deadline, "stale read never saw the key: {s}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let (s, _, _) = call!(svc, test::TestRequest::delete().uri("/v1/kv/dir/a%20b"));
    assert_eq!(s, StatusCode::OK);
    for req in [
        test::TestRequest::get().uri("/v1/kv/dir/a%20b"),
        test::TestRequest::delete().uri("/v1/kv/dir/a%20b"),
        test::TestRequest::get().uri("/no/such/endpoint"),
    ] {
        let (s, _, body) = call!(svc, req);
        let v: Value = serde_json::from_slice(&body).expect("json error");
        assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
        assert_eq!(v["code"], json!(404), "{v}");
    }
}

#[actix_rt::test]
async fn http_failed_cas_is_409() {
    let (cluster, leader, _) = cluster(Duration::from_secs(10)).await;
    let svc = app!(state(&cluster, leader));
    let (s, v) = post!(svc, "/v1/cas/lock", json!({"expected": null, "new": "a"}).to_string());
    assert_eq!((s, &v["succeeded"]), (StatusCode::OK, &json!(true)), "{v}");
    let (s, v) = post!(svc, "/v1/cas/lock", json!({"expected": null, "new": "b"}).to_string());
    assert_error(s, &v, StatusCode::CONFLICT, "\"a\"");
    let (s, v) = post!(svc, "/v1/cas/lock", json!({"expected": "zzz", "new": "b"}).to_string());
    assert_error(s, &v, StatusCode::CONFLICT, "compare failed");
    let (s, v) = post!(svc, "/v1/cas/lock", json!({"expected": "a", "new": "b"}).to_string());
    assert_eq!(s, StatusCode::OK, "{v}");
    let (_, _, body) = call!(svc, test::TestRequest::get().uri("/v1/kv/lock"));
    assert_eq!(body, b"b");
}

#[actix_rt::test]
async fn http_status_health_and_metrics() {
    let (cluster, leader, follower) = cluster(Duration::from_secs(10)).await;
    // A transport's counters as `rolepax-node` reports them, so its series are checked too.
    let transport = json!({
        "sent": 3, "received": 4, "dropped": 0, "rejected_connections": 0,
        "peers": {
            "1": {"connected": true, "sent": 1, "received": 2, "dropped": 0},
            "3": {"connected": false, "sent": 2, "received": 2, "dropped": 0},
        },
    });
    let st = HttpState::new(cluster.node(follower).clone(), "test-cluster", MAX_BODY)
        .with_transport(std::sync::Arc::new(move || transport.clone()));
    let svc = app!(web::Data::new(st));
    post!(
        svc,
        "/v3/kv/put",
        json!({"key": b64("m"), "value": b64("1")}).to_string(),
    );

    let (s, _, body) = call!(svc, test::TestRequest::get().uri("/status"));
    assert_eq!(s, StatusCode::OK);
    let v: Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(v["node_id"], json!(follower), "{v}");
    assert_eq!(v["leader_id"], json!(leader), "{v}");
    for role in ["elector", "proposer", "acceptor", "learner", "state_machine"] {
        assert!(v[role].is_object(), "{role} missing in {v}");
    }
    assert!(v.get("transport").is_some(), "{v}");

    let (s, _, body) = call!(svc, test::TestRequest::get().uri("/health"));
    assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&body));

    let (s, headers, body) = call!(svc, test::TestRequest::get().uri("/metrics"));
    assert_eq!(s, StatusCode::OK);
    assert!(
        headers
            .get("content-type")
            .and_then(|h| h.to_str().ok())
            .is_some_and(|h| h.starts_with("text/plain"))
    );
    let text = String::from_utf8(body).expect("utf-8");
    for name in [
        "rolepax_messages_handled_total{role=\"acceptor\"}",
        "rolepax_messages_handled_total{role=\"elector\"}",
        "rolepax_messages_rejected_total{role=\"acceptor\"}",
        "rolepax_slots_decided_total",
        "rolepax_slots_applied",
        "rolepax_acceptor_flushes_total",
        "rolepax_acceptor_largest_batch",
        "rolepax_proposer_batches_total",
        "rolepax_proposer_batched_values_total",
        "rolepax_commit_latency_seconds_bucket{le=\"+Inf\"} 1",
        "rolepax_commit_latency_seconds_count 1",
        "rolepax_commit_latency_seconds_sum",
        "# TYPE rolepax_commit_latency_seconds histogram",
        "rolepax_is_leader 0",
        "rolepax_transport_peer_sent_total{peer=\"3\"} 2",
    ] {
        assert!(text.contains(name), "{name} missing in:\n{text}");
    }
    let repeated = repeated_series(&text);
    assert!(repeated.is_empty(), "repeated in /metrics: {repeated:?}\n{text}");
}

/// Every series of a Prometheus text (its name and labels, the value cut off) that
/// appears more than once, and every family declared (`# TYPE`) more than once.
fn repeated_series(text: &str) -> Vec<String> {
    let mut seen = std::collections::BTreeSet::new();
    let mut repeated = Vec::new();
    for line in text.lines() {
        let key = match line.strip_prefix("# TYPE ") {
            Some(family) => format!("# TYPE {}", family.split(' ').next().unwrap_or(family)),
            None if line.starts_with('#') || line.trim().is_empty() => continue,
            None => line
                .rsplit_once(' ')
                .map_or(line, |(series, _value)| series)
                .to_string(),
        };
        if !seen.insert(key.clone()) {
            repeated.push(key);
        }
    }
    repeated
}

#[actix_rt::test]
async fn http_repeated_series_finds_repeats() {
    let text = "# TYPE a gauge\na 1\nb{x=\"1\"} 2\nb{x=\"2\"} 2\n# TYPE a gauge\nb{x=\"1\"} 3\n";
    assert_eq!(repeated_series(text), vec!["# TYPE a", "b{x=\"1\"}"]);
}

#[actix_rt::test]
async fn http_no_quorum_is_503_with_retry_after() {
    let (mut cluster, leader, follower) = cluster(Duration::from_millis(1500)).await;
    let svc = app!(state(&cluster, follower));
    cluster.crash(leader);
    let third = cluster
        .ids()
        .into_iter()
        .find(|id| *id != leader && *id != follower)
        .expect("a third node");
    cluster.crash(third);
    let (s, headers, body) = call!(svc, test::TestRequest::put().uri("/v1/kv/k").set_payload("v"));
    let v: Value = serde_json::from_slice(&body).expect("json error");
    assert_error(s, &v, StatusCode::SERVICE_UNAVAILABLE, "unavailable");
    assert_eq!(headers.get("retry-after").and_then(|h| h.to_str().ok()), Some("1"));
}
