//! Hostile requests a fuzzer does not aim at on purpose: bodies far over the limit, a request
//! replayed with its original (now stale) date, a signature for another request. Each gets a
//! 4xx problem document and changes nothing. (tests/hostile/run.sh fuzzes every operation of
//! `/openapi.json` in scripts/test; traversal of folder paths is in `api_vfolder.rs`.)

use std::net::SocketAddr;

use bai_core::signing::{self, API_VERSION};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

mod common;

/// Sends `method path` with `body`, signed for `date` as the example user for `signed_path`.
async fn raw(addr: SocketAddr, method: &str, path: &str, date: &str, body: &[u8], signed_path: &str) -> (u16, Value) {
    let host = addr.to_string();
    let auth = common::authorization(method, signed_path, &host, date, common::USER);
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nDate: {date}\r\nX-BackendAI-Version: {API_VERSION}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nAuthorization: {auth}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw).await;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let body = if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        common::dechunk(body)
    } else {
        body.to_string()
    };
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

async fn sessions_and_folders(addr: SocketAddr) -> (usize, usize) {
    let gql = json!({"query": "{ compute_session_list(limit: 100, offset: 0, status: \"PENDING,SCHEDULED,PREPARING,RUNNING,TERMINATING,TERMINATED,CANCELLED,ERROR\") { total_count } }"});
    let sessions = common::request(addr, Some(common::USER), "POST", "/admin/gql", Some(&gql)).await.json();
    let folders = common::request(addr, Some(common::USER), "GET", "/folders", None).await.json();
    (
        sessions["data"]["compute_session_list"]["total_count"].as_u64().expect("a total") as usize,
        folders.as_array().expect("a list").len(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_replayed_and_misdirected_requests_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let m = common::all_in_one(dir.path()).await;
    let addr = m.api_addr;
    let before = sessions_and_folders(addr).await;
    let now = signing::format_request_date(chrono::Utc::now());

    // Just over the 2 MiB a JSON body may have (sent whole, so the server reads it all and the
    // answer is not lost to a reset connection): 413, a problem document.
    let mut huge = common::create_body("hostile-huge", "host", "0.1", "64m", true);
    huge["bootstrap_script"] = json!("x".repeat((2 << 20) + 4096));
    let huge = huge.to_string();
    for path in ["/session", "/folders", "/admin/gql"] {
        let (status, problem) = raw(addr, "POST", path, &now, huge.as_bytes(), path).await;
        assert_eq!(status, 413, "{path}: status {status}, {problem}");
        assert!(problem["type"].as_str().is_some_and(|t| t.ends_with("request-too-large")), "{path}: {problem}");
    }

    // A valid creation replayed 20 minutes later with its original date and signature.
    let stale = signing::format_request_date(chrono::Utc::now() - chrono::Duration::minutes(20));
    let body = json!({"name": "replayed", "host": null}).to_string();
    let (status, problem) = raw(addr, "POST", "/folders", &stale, body.as_bytes(), "/folders").await;
    assert_eq!(status, 400, "{problem}");
    assert!(problem["type"].as_str().is_some_and(|t| t.ends_with("invalid-auth-params")), "{problem}");
    assert!(problem["msg"].as_str().is_some_and(|m| m.contains("sync")), "{problem}");

    // A signature made for one path, sent to another.
    let (status, problem) = raw(addr, "DELETE", "/folders/anything", &now, b"", "/folders/other").await;
    assert_eq!(status, 401, "{problem}");

    assert_eq!(sessions_and_folders(addr).await, before, "a refused request changed stored state");
    m.shutdown().await;
}
