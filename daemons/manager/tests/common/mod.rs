//! Shared by the manager's integration tests: an all-in-one manager (SQLite, in-process bus,
//! an embedded agent on the process backend) and a client that signs requests as the
//! official client does.

#![allow(dead_code, unused_imports, unused_macros)]

pub mod backends;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bai_core::signing::{self, RequestToSign, API_VERSION};
use bai_core::{AccessKey, SessionId};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The example fixture's keypairs: (access key, secret key).
pub const ADMIN: (&str, &str) = bai_manager::local::EXAMPLE_ADMIN;
/// The regular user of the example fixture.
pub const USER: (&str, &str) = bai_manager::local::EXAMPLE_USER;
/// The example fixture.
pub const FIXTURE: &str = bai_manager::local::EXAMPLE_FIXTURE;

/// The storage-token secret of [`all_in_one`] managers (their folders live in `<dir>/vfolders`).
pub const STORAGE_SECRET: &str = bai_manager::local::STORAGE_SECRET;

/// A running all-in-one manager whose kernels are killed when the test is done with it.
pub type AllInOne = bai_manager::local::LocalManager;

/// An all-in-one manager in `dir` with an embedded agent on the process backend (kernels run
/// the host's programs; use image `host`).
pub async fn all_in_one(dir: &std::path::Path) -> AllInOne {
    bai_manager::local::LocalManager::start(dir).await.expect("all-in-one manager")
}

/// A response: status, lower-cased headers, body.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    /// The body as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    /// A header.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// Sends a request signed with `key` (or unsigned with `None`) over a fresh connection.
pub async fn request(
    addr: SocketAddr,
    key: Option<(&str, &str)>,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> Reply {
    request_with(addr, key, method, path, body, &[]).await
}

/// [`request`] with `extra` headers.
pub async fn request_with(
    addr: SocketAddr,
    key: Option<(&str, &str)>,
    method: &str,
    path: &str,
    body: Option<&Value>,
    extra: &[(&str, &str)],
) -> Reply {
    let host = addr.to_string();
    let date = signing::format_request_date(chrono::Utc::now());
    let payload = body.map(|b| b.to_string()).unwrap_or_default();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nDate: {date}\r\nX-BackendAI-Version: {API_VERSION}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
        payload.len()
    );
    if let Some(key) = key {
        head.push_str(&format!("Authorization: {}\r\n", authorization(method, path, &host, &date, key)));
    }
    for (name, value) in extra {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect to the manager");
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(payload.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines.next().and_then(|l| l.split(' ').nth(1)).and_then(|s| s.parse().ok()).unwrap_or(0);
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let chunked = headers.iter().any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
    let body = if chunked { dechunk(body) } else { body.to_string() };
    Reply { status, headers, body }
}

/// Joins the chunks of a `Transfer-Encoding: chunked` body.
pub fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else { break };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// The `Authorization` header the official client sends for a JSON request to `host`.
pub fn authorization(method: &str, path: &str, host: &str, date: &str, key: (&str, &str)) -> String {
    let to_sign = RequestToSign {
        method,
        path_and_query: path,
        date,
        host,
        content_type: "application/json",
        api_version: API_VERSION,
    };
    signing::authorization_header(&AccessKey::new(key.0).unwrap(), &signing::sign(key.1, &to_sign).unwrap())
}

/// A create body as `backend.ai session create` sends it.
pub fn create_body(name: &str, image: &str, cpu: &str, mem: &str, enqueue_only: bool) -> Value {
    json!({"tag": null, "name": name,
        "config": {"mounts": [], "environ": {}, "resources": {"cpu": cpu, "mem": mem}, "resource_opts": {},
                   "scalingGroup": null, "mount_map": {}, "preopen_ports": null},
        "dependencies": [], "callback_url": null, "architecture": std::env::consts::ARCH,
        "clusterSize": 1, "clusterMode": "single-node", "starts_at": null, "bootstrap_script": null,
        "owner_access_key": null, "domain": "default", "group": "default", "type": "interactive",
        "enqueueOnly": enqueue_only, "maxWaitSeconds": if enqueue_only { 0 } else { 60 }, "reuseIfExists": false,
        "startupCommand": null, "image": image})
}

/// Creates a session as the example user and returns its id (panics unless the API accepts it).
pub async fn create_session(
    addr: SocketAddr,
    name: &str,
    image: &str,
    cpu: &str,
    mem: &str,
    enqueue_only: bool,
) -> SessionId {
    let reply =
        request(addr, Some(USER), "POST", "/session", Some(&create_body(name, image, cpu, mem, enqueue_only))).await;
    assert!(matches!(reply.status, 200 | 201), "creating {name}: {reply:?}");
    reply.json()["sessionId"].as_str().unwrap_or_else(|| panic!("no sessionId: {reply:?}")).parse().unwrap()
}

/// Polls `what` every 200 ms until it returns `Ok`, failing with `message` (and the last
/// value seen) after `limit`.
pub async fn wait_for<T, F, Fut>(limit: Duration, message: &str, mut what: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + limit;
    loop {
        match what().await {
            Ok(v) => return v,
            Err(last) if Instant::now() >= deadline => panic!("{message} within {limit:?}; last seen: {last}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}
