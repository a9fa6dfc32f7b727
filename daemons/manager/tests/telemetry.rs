//! Tracing end to end: an all-in-one manager (its embedded agent serving real gRPC over
//! loopback) exports to a collector inside the test; one `POST /session` gives one trace — the
//! API request, the session's dispatch, the manager's `create_kernels` call, the agent's
//! handler of it and the container creation, each the child of the one before — and JSON log
//! lines that carry the session and the user. Without an endpoint, nothing is exported.
//!
//! Each test runs the manager on a runtime whose threads use the test's own subscriber (no
//! global one), and the exporter on a second runtime, so its gRPC calls are never traced.

mod common;

use std::time::Duration;

use bai_test_support::otlp::{kind, Collector, Span};
use serde_json::{json, Value};
use tracing_subscriber::layer::SubscriberExt;

/// The example user's id (the fixture's `user@lablup.com`).
const USER_ID: &str = "dfa9da54-4b28-432f-be29-c0d680c7a412";

/// Log lines written by the layer under test.
use bai_test_support::log_lines::LogLines as Lines;

/// A runtime whose every thread (workers and blocking pool) logs and traces to `dispatch`.
fn traced_runtime(dispatch: tracing::Dispatch) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .on_thread_start(move || {
            // For the thread's whole life.
            std::mem::forget(tracing::dispatcher::set_default(&dispatch));
        })
        .build()
        .unwrap()
}

fn create_body(name: &str) -> Value {
    json!({"name": name, "image": "host", "type": "interactive", "group": "default", "domain": "default",
           "clusterSize": 1, "clusterMode": "single-node", "enqueueOnly": false, "maxWaitSeconds": 0,
           "config": {"resources": {"cpu": "1", "mem": "256m"}}})
}

/// Starts an all-in-one manager, creates a session as the example user and waits until it
/// runs; returns the session id.
async fn create_a_session(dir: &std::path::Path) -> String {
    let running = common::all_in_one(dir).await;
    let reply =
        common::request(running.api_addr, Some(common::USER), "POST", "/session", Some(&create_body("traced"))).await;
    assert_eq!(reply.status, 201, "{reply:?}");
    let created = reply.json();
    assert_eq!(created["status"], "RUNNING", "{created}");
    let id = created["sessionId"].as_str().unwrap().to_string();
    running.shutdown().await;
    id
}

fn find<'a>(spans: &'a [Span], what: &str, pick: impl Fn(&Span) -> bool) -> &'a Span {
    spans.iter().find(|s| pick(s)).unwrap_or_else(|| panic!("no {what} span among {spans:#?}"))
}

#[test]
fn one_trace_runs_from_post_session_to_the_agents_container() {
    // The exporter's side: the collector and the exporter's channel.
    let plain = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let collector = plain.block_on(Collector::start());
    let config = bai_telemetry::TracingConfig {
        log_format: bai_telemetry::LogFormat::Json,
        otlp_endpoint: collector.endpoint(),
        service_name: "bai-manager-under-test".into(),
        sample_ratio: 1.0,
    };
    let lines = Lines::default();
    let (layers, telemetry) = {
        let _entered = plain.enter();
        bai_telemetry::layers("manager", &config, lines.clone()).unwrap()
    };
    assert!(telemetry.exporting());
    let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(layers));
    let _main = tracing::dispatcher::set_default(&dispatch);
    let runtime = traced_runtime(dispatch.clone());

    let dir = tempfile::tempdir().unwrap();
    let session_id = runtime.block_on(create_a_session(dir.path()));
    // Blocks until the collector answered: on a blocking thread, the exporter on `plain`.
    runtime.block_on(async { tokio::task::spawn_blocking(move || telemetry.flush()).await }).unwrap().unwrap();
    let spans = plain.block_on(
        collector.wait_for(Duration::from_secs(10), |spans| spans.iter().any(|s| s.name == "create_container")),
    );

    let api = find(&spans, "POST /session", |s| s.name == "POST /session");
    assert_eq!(api.kind, kind::SERVER);
    assert_eq!(api.parent_span_id, "", "the request starts the trace");
    assert_eq!(api.attr("http.request.method"), Some("POST"));
    assert_eq!(api.attr("http.route"), Some("/session"));
    assert_eq!(api.attr("http.response.status_code"), Some("201"));
    assert_eq!(api.attr("access_key"), Some(common::USER.0));
    assert_eq!(api.attr("user_id"), Some(USER_ID));
    assert_eq!(api.attr("session_id"), Some(session_id.as_str()));
    assert_eq!(api.service_name, "bai-manager-under-test");

    let dispatch_span =
        find(&spans, "dispatch", |s| s.name == "dispatch" && s.attr("session_id") == Some(session_id.as_str()));
    assert_eq!(dispatch_span.trace_id, api.trace_id, "the dispatch continues the request's trace");
    assert_eq!(dispatch_span.parent_span_id, api.span_id);
    assert_eq!(dispatch_span.attr("user_id"), Some(USER_ID));
    let pass = find(&spans, "scheduler_pass", |s| s.name == "scheduler_pass" && s.links.is_empty());
    assert_eq!(dispatch_span.links, vec![pass.span_id.clone()], "the dispatch links to the pass that placed it");
    assert_eq!(pass.attr("scheduled"), Some("1"));

    let rpc = "bai.agent.v1.Agent/CreateKernels";
    let client = find(&spans, "agent_rpc client", |s| s.name == rpc && s.kind == kind::CLIENT);
    assert_eq!((&client.trace_id, &client.parent_span_id), (&api.trace_id, &dispatch_span.span_id));
    assert_eq!(client.attr("rpc.system"), Some("grpc"));
    assert_eq!(client.attr("rpc.grpc.status_code"), Some("0"));
    assert!(!client.error);

    // The agent's side: its handler joined through the `traceparent` in the call's metadata.
    let server = find(&spans, "agent_rpc_server", |s| s.name == rpc && s.kind == kind::SERVER);
    assert_eq!((&server.trace_id, &server.parent_span_id), (&api.trace_id, &client.span_id));
    assert_eq!(server.attr("session_id"), Some(session_id.as_str()));
    let container = find(&spans, "create_container", |s| s.name == "create_container");
    assert_eq!((&container.trace_id, &container.parent_span_id), (&api.trace_id, &server.span_id));
    assert_eq!(container.attr("image"), Some("host"));

    // The JSON log lines of the same run name the session and the user.
    let lines = lines.json();
    let enqueued = lines
        .iter()
        .find(|l| l["message"] == "session enqueued")
        .unwrap_or_else(|| panic!("no 'session enqueued' line in {lines:#?}"));
    assert_eq!(enqueued["component"], "manager");
    assert_eq!(enqueued["level"], "info");
    assert_eq!(enqueued["session_id"], session_id.as_str());
    assert_eq!(enqueued["user_id"], USER_ID);
    assert_eq!(enqueued["access_key"], common::USER.0);
    assert!(lines.iter().all(|l| l["component"] == "manager" || l["component"] == "agent"), "{lines:#?}");
    assert!(lines.iter().any(|l| l["component"] == "agent"), "the embedded agent logs as the agent: {lines:#?}");
}

#[test]
fn without_an_endpoint_nothing_is_exported() {
    let plain = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let collector = plain.block_on(Collector::start());
    let (layers, telemetry) = {
        let _entered = plain.enter();
        bai_telemetry::layers("manager", &bai_telemetry::TracingConfig::default(), std::io::sink).unwrap()
    };
    assert!(!telemetry.exporting());
    let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(layers));
    let _main = tracing::dispatcher::set_default(&dispatch);
    let runtime = traced_runtime(dispatch.clone());
    let dir = tempfile::tempdir().unwrap();
    runtime.block_on(create_a_session(dir.path()));
    telemetry.flush().unwrap();
    telemetry.shutdown();
    // No exporter exists, so the collector was never called.
    assert_eq!((collector.exports(), collector.spans().len()), (0, 0));
}
