//! The manager's Prometheus metrics against an all-in-one manager: API calls and a session's
//! life, then `GET /metrics` (OpenMetrics text; names, types, labels and buckets of the
//! Backend.AI manager specification) and `GET /metrics/service_discovery` (Prometheus HTTP-SD
//! JSON listing the manager and the embedded agent).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;

use bai_test_support::openmetrics::{parse, Exposition, Sample};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A plain GET over raw TCP: (status line, head, body).
async fn http_get(addr: SocketAddr, path: &str) -> (String, String, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.expect("read");
    let text = String::from_utf8(response).expect("utf-8 response");
    let (head, body) = text.split_once("\r\n\r\n").expect("head and body");
    let body = if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        common::dechunk(body)
    } else {
        body.to_owned()
    };
    (head.lines().next().unwrap_or_default().to_owned(), head.to_owned(), body)
}

const DURATION_BUCKETS: [&str; 10] = ["0.001", "0.01", "0.1", "0.5", "1.0", "2.0", "5.0", "10.0", "30.0", "+Inf"];

/// (family, type, labels) of every family of the specification this manager produces.
const FAMILIES: &[(&str, &str, &[&str])] = &[
    (
        "backendai_api_request_count",
        "counter",
        &["method", "endpoint", "domain", "operation", "error_detail", "status_code"],
    ),
    (
        "backendai_api_request_duration_sec",
        "histogram",
        &["method", "endpoint", "domain", "operation", "error_detail", "status_code"],
    ),
    (
        "backendai_graphql_request_count",
        "counter",
        &[
            "operation_type",
            "field_name",
            "parent_type",
            "operation_name",
            "domain",
            "operation",
            "error_detail",
            "success",
        ],
    ),
    (
        "backendai_graphql_request_duration_sec",
        "histogram",
        &[
            "operation_type",
            "field_name",
            "parent_type",
            "operation_name",
            "domain",
            "operation",
            "error_detail",
            "success",
        ],
    ),
    ("backendai_event_count", "counter", &["event_type"]),
    ("backendai_event_failure_count", "counter", &["event_type", "exception", "domain", "operation", "error_detail"]),
    (
        "backendai_event_processing_time_sec",
        "histogram",
        &["event_type", "status", "domain", "operation", "error_detail"],
    ),
    (
        "backendai_action_count",
        "counter",
        &["entity_type", "operation_type", "status", "domain", "operation", "error_detail"],
    ),
    (
        "backendai_action_duration_sec",
        "histogram",
        &["entity_type", "operation_type", "status", "domain", "operation", "error_detail"],
    ),
    ("backendai_layer_operation_triggered_count", "gauge", &["domain", "layer", "operation"]),
    ("backendai_layer_operation_count", "counter", &["domain", "layer", "operation", "success"]),
    ("backendai_layer_operation_error_count", "counter", &["domain", "layer", "operation", "error_code"]),
    ("backendai_layer_retry_count", "counter", &["domain", "layer", "operation"]),
    ("backendai_layer_operation_duration_sec", "histogram", &["domain", "layer", "operation", "success"]),
    ("backendai_async_task_count", "gauge", &[]),
    ("backendai_cpu_usage_percent", "gauge", &[]),
    ("backendai_memory_used_rss", "gauge", &[]),
    ("backendai_memory_used_vms", "gauge", &[]),
];

/// Families whose series only exist after a failure or a retry, which this test does not
/// provoke.
const FAILURE_ONLY: &[&str] =
    &["backendai_event_failure_count", "backendai_layer_operation_error_count", "backendai_layer_retry_count"];

/// A series' labels without `le`.
type SeriesKey = Vec<(String, String)>;

/// Checks the sample names, label names and (for histograms) buckets of a family.
fn check_family(exposition: &Exposition, family: &str, kind: &str, labels: &[&str]) {
    let expected: BTreeSet<&str> = labels.iter().copied().collect();
    let names: Vec<String> = match kind {
        "counter" => vec![format!("{family}_total")],
        "gauge" => vec![family.to_owned()],
        "histogram" => vec![format!("{family}_bucket"), format!("{family}_sum"), format!("{family}_count")],
        other => panic!("unexpected kind {other}"),
    };
    for name in &names {
        let samples = exposition.named(name);
        if FAILURE_ONLY.contains(&family) {
            continue;
        }
        assert!(!samples.is_empty(), "{family}: no {name} sample");
        for s in samples {
            let mut got: BTreeSet<&str> = s.labels.keys().map(String::as_str).collect();
            if name.ends_with("_bucket") {
                assert!(got.remove("le"), "{name} without le: {s:?}");
            }
            assert_eq!(got, expected, "{name}: labels of {s:?}");
        }
    }
    if kind == "histogram" {
        // Every series has exactly the specified buckets, cumulative, +Inf equal to _count.
        let mut series: BTreeMap<SeriesKey, Vec<(String, f64)>> = BTreeMap::new();
        for s in exposition.named(&format!("{family}_bucket")) {
            let mut key: Vec<(String, String)> = s.labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            key.retain(|(k, _)| k != "le");
            series.entry(key).or_default().push((s.labels["le"].clone(), s.value));
        }
        for (key, buckets) in series {
            let les: Vec<&str> = buckets.iter().map(|(le, _)| le.as_str()).collect();
            assert_eq!(les, DURATION_BUCKETS, "{family} {key:?}");
            assert!(buckets.windows(2).all(|w| w[0].1 <= w[1].1), "{family} {key:?} not cumulative");
            let pairs: Vec<(&str, &str)> = key.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            let count = exposition.find(&format!("{family}_count"), &pairs);
            assert_eq!(count.len(), 1, "{family} {key:?}");
            assert_eq!(count[0].value, buckets.last().unwrap().1, "{family} {key:?}: +Inf != _count");
        }
    }
}

async fn scrape(addr: SocketAddr) -> Exposition {
    let (status, head, body) = http_get(addr, "/metrics").await;
    assert_eq!(status, "HTTP/1.1 200 OK", "{head}");
    assert!(
        head.to_ascii_lowercase().contains("content-type: application/openmetrics-text; version=1.0.0; charset=utf-8"),
        "{head}"
    );
    parse(&body)
}

/// A create body as `backend.ai session create` sends it, for image `host`.
fn create_body(name: &str) -> Value {
    json!({"tag": null, "name": name,
        "config": {"mounts": [], "environ": {}, "resources": {"cpu": "1", "mem": "256m"}, "resource_opts": {},
                   "scalingGroup": null, "mount_map": {}, "preopen_ports": null},
        "dependencies": [], "callback_url": null, "architecture": std::env::consts::ARCH,
        "clusterSize": 1, "clusterMode": "single-node", "starts_at": null, "bootstrap_script": null,
        "owner_access_key": null, "domain": "default", "group": "default", "type": "interactive",
        "enqueueOnly": false, "maxWaitSeconds": 0, "reuseIfExists": true, "startupCommand": null,
        "image": "host"})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_follow_the_specification() {
    let dir = tempfile::tempdir().unwrap();
    let running = common::all_in_one(dir.path()).await;
    let addr = running.api_addr;
    let metrics = running.metrics_addr;
    assert_ne!(metrics.port(), addr.port());

    // A few API calls: public, signed, refused, unknown.
    assert_eq!(common::request(addr, None, "GET", "/", None).await.status, 200);
    assert_eq!(common::request(addr, Some(common::USER), "GET", "/bai/whoami", None).await.status, 200);
    assert_eq!(common::request(addr, None, "GET", "/bai/whoami", None).await.status, 401);
    assert_eq!(common::request(addr, Some(common::USER), "GET", "/no/such/path", None).await.status, 404);
    let missing = common::request(addr, Some(common::USER), "GET", "/session/no-such-session", None).await;
    assert_eq!(missing.status, 404, "{missing:?}");

    // GraphQL: a named query of one root field.
    let body =
        json!({"query": "query Me { keypair { access_key is_admin } }", "variables": null, "operationName": "Me"});
    let gql = common::request(addr, Some(common::USER), "POST", "/admin/gql", Some(&body)).await;
    assert_eq!(gql.status, 200, "{gql:?}");
    assert!(gql.json().get("errors").is_none_or(|e| e.as_array().is_some_and(|a| a.is_empty())), "{gql:?}");

    // A session's life: scheduling, dispatch (create_kernels), destroy (destroy_kernel).
    let created =
        common::request(addr, Some(common::USER), "POST", "/session", Some(&create_body("sess-metrics"))).await;
    assert_eq!(created.status, 201, "{created:?}");
    let gone = common::request(addr, Some(common::USER), "DELETE", "/session/sess-metrics", None).await;
    assert_eq!(gone.status, 200, "{gone:?}");
    tokio::time::sleep(Duration::from_millis(500)).await;

    let exposition = scrape(metrics).await;

    // Names and types: exactly the families this manager produces, nothing else.
    let expected: BTreeMap<String, String> =
        FAMILIES.iter().map(|(n, k, _)| ((*n).to_owned(), (*k).to_owned())).collect();
    let present: BTreeMap<String, String> = exposition
        .types
        .iter()
        .filter(|(n, _)| !FAILURE_ONLY.contains(&n.as_str()))
        .map(|(n, k)| (n.clone(), k.clone()))
        .collect();
    let expected_present: BTreeMap<String, String> = expected
        .iter()
        .filter(|(n, _)| !FAILURE_ONLY.contains(&n.as_str()))
        .map(|(n, k)| (n.clone(), k.clone()))
        .collect();
    assert_eq!(present, expected_present);
    for (name, kind) in &exposition.types {
        assert_eq!(expected.get(name), Some(kind), "unexpected family {name} {kind}");
    }
    for (family, kind, labels) in FAMILIES {
        check_family(&exposition, family, kind, labels);
    }

    // API requests: route patterns, status codes, error labels only on errors.
    let ok = exposition.find(
        "backendai_api_request_count_total",
        &[
            ("method", "GET"),
            ("endpoint", "/bai/whoami"),
            ("status_code", "200"),
            ("domain", ""),
            ("operation", ""),
            ("error_detail", ""),
        ],
    );
    assert_eq!(ok.len(), 1, "{ok:?}");
    assert_eq!(ok[0].value, 1.0);
    let refused = exposition.find(
        "backendai_api_request_count_total",
        &[
            ("method", "GET"),
            ("endpoint", "/bai/whoami"),
            ("status_code", "401"),
            ("domain", "bai"),
            ("operation", "read"),
            ("error_detail", "auth-failed"),
        ],
    );
    assert_eq!(refused.len(), 1, "{:?}", exposition.named("backendai_api_request_count_total"));
    let unknown = exposition.find(
        "backendai_api_request_count_total",
        &[("endpoint", "unmatched"), ("status_code", "404"), ("error_detail", "url-not-found")],
    );
    assert_eq!(unknown.len(), 1, "{:?}", exposition.named("backendai_api_request_count_total"));
    let all: Vec<&Sample> = exposition.named("backendai_api_request_count_total");
    assert!(all.iter().all(|s| !s.labels["endpoint"].contains("no-such")), "raw paths leak into endpoint: {all:?}");
    assert!(
        all.iter().any(|s| s.labels["endpoint"].starts_with("/session/")
            && s.labels["status_code"] == "404"
            && s.labels["domain"] == "session"),
        "{all:?}"
    );
    assert!(
        all.iter().any(|s| s.labels["method"] == "POST"
            && s.labels["endpoint"] == "/session"
            && s.labels["status_code"] == "201"),
        "{all:?}"
    );
    assert!(all.iter().any(|s| s.labels["method"] == "DELETE" && s.labels["status_code"] == "200"), "{all:?}");
    let root = exposition.find(
        "backendai_api_request_duration_sec_count",
        &[("method", "GET"), ("endpoint", "/"), ("status_code", "200")],
    );
    assert_eq!(root.len(), 1);
    assert!(root[0].value >= 1.0);

    // GraphQL: one series per root field, nested fields not counted.
    let fields = exposition.named("backendai_graphql_request_count_total");
    assert_eq!(fields.len(), 1, "{fields:?}");
    let expected: BTreeMap<String, String> = [
        ("operation_type", "query"),
        ("field_name", "keypair"),
        ("parent_type", "Query"),
        ("operation_name", "Me"),
        ("domain", ""),
        ("operation", ""),
        ("error_detail", ""),
        ("success", "True"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    assert_eq!(fields[0].labels, expected);
    assert_eq!(fields[0].value, 1.0);

    // Events: the embedded agent's heartbeats and its kernel's life.
    let heartbeats = exposition.find("backendai_event_count_total", &[("event_type", "agent_heartbeat")]);
    assert_eq!(heartbeats.len(), 1);
    assert!(heartbeats[0].value >= 1.0);
    assert!(
        !exposition.find("backendai_event_count_total", &[("event_type", "kernel_started")]).is_empty(),
        "{:?}",
        exposition.named("backendai_event_count_total")
    );
    let timed = exposition.find(
        "backendai_event_processing_time_sec_count",
        &[("event_type", "agent_heartbeat"), ("status", "success"), ("domain", "")],
    );
    assert_eq!(timed.len(), 1);

    // Actions: scheduling passes, dispatch, destroy, agent sweeps.
    for (entity, op) in [("session", "schedule"), ("session", "dispatch"), ("session", "destroy"), ("agent", "sweep")] {
        let found = exposition.find(
            "backendai_action_count_total",
            &[("entity_type", entity), ("operation_type", op), ("status", "success")],
        );
        assert_eq!(found.len(), 1, "action {entity}/{op}: {:?}", exposition.named("backendai_action_count_total"));
        assert!(found[0].value >= 1.0);
    }

    // Layer operations: the agent RPC calls.
    for op in ["create_kernels", "destroy_kernel"] {
        let done = exposition.find(
            "backendai_layer_operation_count_total",
            &[("domain", "client"), ("layer", "agent_client"), ("operation", op), ("success", "True")],
        );
        assert_eq!(done.len(), 1, "{op}: {:?}", exposition.named("backendai_layer_operation_count_total"));
        assert_eq!(done[0].value, 1.0);
        let running_now = exposition.find("backendai_layer_operation_triggered_count", &[("operation", op)]);
        assert_eq!(running_now.len(), 1);
        assert_eq!(running_now[0].value, 0.0, "{op} still in progress");
    }

    // System gauges.
    assert!(exposition.named("backendai_async_task_count")[0].value >= 1.0);
    assert!(exposition.named("backendai_memory_used_rss")[0].value > 0.0);
    assert!(
        exposition.named("backendai_memory_used_vms")[0].value
            >= exposition.named("backendai_memory_used_rss")[0].value
    );
    assert!(exposition.named("backendai_cpu_usage_percent")[0].value >= 0.0);

    // Scrapes are not API requests; a second scrape sees the counters only grow.
    let again = scrape(metrics).await;
    let count = |e: &Exposition| e.find("backendai_event_count_total", &[("event_type", "agent_heartbeat")])[0].value;
    assert!(count(&again) >= count(&exposition));

    // Service discovery: HTTP-SD JSON, the manager and the embedded agent.
    let (status, head, body) = http_get(metrics, "/metrics/service_discovery").await;
    assert_eq!(status, "HTTP/1.1 200 OK", "{head}");
    assert!(head.to_ascii_lowercase().contains("content-type: application/json"), "{head}");
    let groups: Value = serde_json::from_str(&body).expect("JSON");
    let groups = groups.as_array().expect("an array of target groups");
    for g in groups {
        let targets = g["targets"].as_array().expect("targets");
        assert!(!targets.is_empty());
        for t in targets {
            let t = t.as_str().expect("target is a string");
            let (host, port) = t.rsplit_once(':').expect("host:port");
            assert!(!host.is_empty() && port.parse::<u16>().is_ok(), "{t}");
        }
        for (k, v) in g["labels"].as_object().expect("labels") {
            assert!(k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'), "{k}");
            assert!(v.is_string(), "label {k} is not a string: {v}");
        }
    }
    let manager = groups.iter().find(|g| g["labels"]["service_group"] == "manager").expect("the manager");
    assert_eq!(manager["targets"], json!([metrics.to_string()]));
    assert_eq!(manager["labels"]["service_id"], "manager-1");
    let agent = running.agent.as_ref().unwrap();
    let agent_id = agent.agent.settings().id.as_str().to_owned();
    let listed = groups.iter().find(|g| g["labels"]["service_group"] == "agent").expect("the agent");
    assert_eq!(listed["labels"]["service_id"], agent_id.as_str());
    assert_eq!(listed["targets"], json!([agent.metrics_addr.to_string()]));
    assert_eq!(groups.len(), 2, "{groups:?}");

    // The agent's target really serves its metrics.
    let (status, _, body) = http_get(agent.metrics_addr, "/metrics").await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(body.contains("backendai_rpc_requests_total"), "{body}");

    // Anything else on the metrics port is 404.
    assert_eq!(http_get(metrics, "/").await.0, "HTTP/1.1 404 Not Found");

    running.shutdown().await;
}
