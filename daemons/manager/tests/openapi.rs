//! `GET /openapi.json` describes the API the manager serves: every documented operation reaches
//! a handler of a running manager (no 404 `url-not-found`, no 405), and the document itself is
//! served without a signature.

use std::time::Duration;

use bai_manager::api::openapi::{operations, Access};
use serde_json::Value;

mod common;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_operation_reaches_a_handler() {
    let dir = tempfile::tempdir().unwrap();
    let m = common::all_in_one(dir.path()).await;
    let addr = m.api_addr;

    let doc = common::request(addr, None, "GET", "/openapi.json", None).await;
    assert_eq!(doc.status, 200, "{}", doc.body);
    let doc = doc.json();
    assert_eq!(doc["openapi"], "3.0.3");
    assert!(doc["paths"]["/session"]["post"].is_object());

    let mut problems = Vec::new();
    for op in operations() {
        let path = op.path.replace("{*path}", "x/y").replace(['{', '}'], "");
        let path = if op.access == Access::Token { format!("{path}?token=bogus") } else { path };
        let key = (op.access == Access::Signed).then_some(common::ADMIN);
        let reply =
            tokio::time::timeout(Duration::from_secs(5), common::request(addr, key, op.method, &path, None)).await;
        let Ok(reply) = reply else {
            // Still streaming after 5 s: a handler answered.
            assert!(op.streaming, "{} {} hung without being a stream", op.method, op.path);
            continue;
        };
        let kind = serde_json::from_str::<Value>(&reply.body)
            .ok()
            .and_then(|v| v["type"].as_str().map(str::to_string))
            .unwrap_or_default();
        if reply.status == 405 || kind.ends_with("url-not-found") || reply.status >= 500 {
            problems.push(format!("{} {} → {} {}", op.method, op.path, reply.status, reply.body));
        }
    }
    assert!(problems.is_empty(), "documented operations the manager does not serve:\n{}", problems.join("\n"));
    m.shutdown().await;
}
