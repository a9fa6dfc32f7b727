//! The compute-session API against an all-in-one manager (SQLite, in-process bus, an embedded
//! agent on the process backend): create, info, execution over REST and WebSocket, files,
//! logs, events, destroy, visibility between users and input validation.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use bai_core::signing::{self, RequestToSign, API_VERSION};
use bai_core::AccessKey;
use bai_manager::db::repo;
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

/// A create body as `backend.ai session create` sends it, for image `host`.
fn create_body(name: &str, extra: Value) -> Value {
    let mut body = json!({"tag": null, "name": name,
        "config": {"mounts": [], "environ": {"FOO": "bar"},
                   "resources": {"cpu": "1", "mem": "256m"}, "resource_opts": {},
                   "scalingGroup": null, "mount_map": {}, "preopen_ports": null},
        "dependencies": [], "callback_url": null, "architecture": std::env::consts::ARCH,
        "clusterSize": 1, "clusterMode": "single-node", "starts_at": null, "bootstrap_script": null,
        "owner_access_key": null, "domain": "default", "group": "default", "type": "interactive",
        "enqueueOnly": false, "maxWaitSeconds": 0, "reuseIfExists": true, "startupCommand": null,
        "image": "host"});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    body
}

async fn create(addr: SocketAddr, key: (&str, &str), body: Value) -> common::Reply {
    common::request(addr, Some(key), "POST", "/session", Some(&body)).await
}

fn data_key(reply: &common::Reply) -> String {
    reply.json()["data"].as_object().and_then(|d| d.keys().next().cloned()).unwrap_or_default()
}

/// Signed headers for a request without a body or content type (WebSocket, SSE).
fn signed_headers(
    addr: SocketAddr,
    key: (&str, &str),
    method: &str,
    path: &str,
    content_type: &str,
) -> Vec<(String, String)> {
    let host = addr.to_string();
    let date = signing::format_request_date(chrono::Utc::now());
    let to_sign = RequestToSign {
        method,
        path_and_query: path,
        date: &date,
        host: &host,
        content_type,
        api_version: API_VERSION,
    };
    let authorization =
        signing::authorization_header(&AccessKey::new(key.0).unwrap(), &signing::sign(key.1, &to_sign).unwrap());
    vec![
        ("Date".into(), date),
        ("X-BackendAI-Version".into(), API_VERSION.into()),
        ("Authorization".into(), authorization),
    ]
}

/// Sends a signed request with any content type and body, returns (status, headers, body).
async fn raw_request(
    addr: SocketAddr,
    key: (&str, &str),
    method: &str,
    path: &str,
    content_type: Option<&str>,
    body: &[u8],
) -> (u16, String, Vec<u8>) {
    let sign_type = content_type.unwrap_or(signing::DEFAULT_CONTENT_TYPE);
    let mut head =
        format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n", body.len());
    if let Some(ct) = content_type {
        head.push_str(&format!("Content-Type: {ct}\r\n"));
    }
    for (k, v) in signed_headers(addr, key, method, path, sign_type) {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(60), stream.read_to_end(&mut raw))
        .await
        .expect("response in time")
        .unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("a header block");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut body = raw[split + 4..].to_vec();
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        body = dechunk(&body);
    }
    (status, head, body)
}

fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = body.windows(2).position(|w| w == b"\r\n") {
        let size = std::str::from_utf8(&body[..eol]).ok().and_then(|s| usize::from_str_radix(s.trim(), 16).ok());
        let Some(n) = size else { break };
        let rest = &body[eol + 2..];
        if n == 0 || rest.len() < n {
            break;
        }
        out.extend_from_slice(&rest[..n]);
        body = rest[n..].strip_prefix(b"\r\n").unwrap_or(&rest[n..]);
    }
    out
}

/// Runs code through the REST execute loop as the SDK does; `inputs` answer `waiting-input`.
/// Returns the stdout and the last result.
async fn run_code(addr: SocketAddr, key: (&str, &str), session: &str, code: &str, inputs: &[&str]) -> (String, Value) {
    let path = format!("/session/{session}");
    let mut inputs = inputs.iter();
    let mut request = json!({"mode": "query", "code": code, "runId": null});
    let mut stdout = String::new();
    for _ in 0..200 {
        let reply = common::request(addr, Some(key), "POST", &path, Some(&request)).await;
        assert_eq!(reply.status, 200, "{reply:?}");
        let result = reply.json()["result"].clone();
        for item in result["console"].as_array().expect("console is a list") {
            if item[0] == "stdout" {
                stdout.push_str(item[1].as_str().unwrap());
            }
        }
        let run_id = result["runId"].as_str().expect("a run id").to_string();
        match result["status"].as_str().unwrap() {
            "finished" => return (stdout, result),
            "waiting-input" => {
                let line = inputs.next().expect("an input for waiting-input");
                request = json!({"mode": "input", "code": line, "runId": run_id});
            }
            _ => request = json!({"mode": "continue", "code": "", "runId": run_id}),
        }
    }
    panic!("the run did not finish");
}

async fn session_count(running: &bai_manager::server::RunningManager) -> u64 {
    repo::list_sessions(running.manager.db(), &repo::SessionFilter::default()).await.unwrap().1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_execute_files_logs_and_destroy() {
    let dir = tempfile::tempdir().unwrap();
    let running = common::all_in_one(dir.path()).await;
    let addr = running.api_addr;

    // Blocking create: the answer comes once the session runs.
    let reply = create(addr, common::USER, create_body("sess-main", json!({}))).await;
    assert_eq!(reply.status, 201, "{reply:?}");
    assert!(reply.header("content-type").unwrap().starts_with("application/json"));
    let created = reply.json();
    assert_eq!(created["status"], "RUNNING", "{created}");
    assert_eq!(created["created"], true);
    assert_eq!(created["sessionName"], "sess-main");
    assert!(created["servicePorts"].is_array());
    let id = created["sessionId"].as_str().unwrap().to_string();
    uuid::Uuid::parse_str(&id).expect("sessionId is a UUID");

    // Info, by name and by id.
    for reference in ["sess-main", id.as_str()] {
        let info = common::request(addr, Some(common::USER), "GET", &format!("/session/{reference}"), None).await;
        assert_eq!(info.status, 200, "{info:?}");
        let info = info.json();
        assert_eq!(info["status"], "RUNNING");
        assert_eq!(info["image"], "host");
        assert_eq!(info["domainName"], "default");
        assert_eq!(info["userId"], "dfa9da54-4b28-432f-be29-c0d680c7a412");
        assert!(info["requestedSlots"].as_str().unwrap().contains("'cpu': '1'"), "{info}");
        assert!(info["environ"].as_str().unwrap().contains("'FOO': 'bar'"), "{info}");
        assert!(info["age"].as_i64().unwrap() >= 0);
        for key in [
            "groupId",
            "lang",
            "architecture",
            "registry",
            "tag",
            "containerId",
            "occupiedSlots",
            "occupyingSlots",
            "occupiedShares",
            "resourceOpts",
            "statusInfo",
            "statusData",
            "creationTime",
            "terminationTime",
            "numQueriesExecuted",
            "lastStat",
            "idleChecks",
        ] {
            assert!(info.get(key).is_some(), "info lacks {key}: {info}");
        }
    }

    // REST execution: query mode, then a run that asks for input.
    let (stdout, last) = run_code(addr, common::USER, &id, "print(1+1)", &[]).await;
    assert_eq!(stdout.trim(), "2", "{last}");
    assert_eq!(last["exitCode"], 0, "{last}");
    let (stdout, _) = run_code(addr, common::USER, "sess-main", "x = input('name? ')\nprint('hi', x)", &["bai"]).await;
    assert!(stdout.contains("hi bai"), "{stdout:?}");
    let bad = common::request(
        addr,
        Some(common::USER),
        "POST",
        &format!("/session/{id}"),
        Some(&json!({"mode": "continue", "code": "", "runId": null})),
    )
    .await;
    assert_eq!(bad.status, 400, "{bad:?}");
    assert_eq!(data_key(&bad), "runId");

    // Files: upload (multipart, percent-encoded names), list, download.
    let boundary = "XyZzY0123";
    let mut form = Vec::new();
    for (name, content) in [("hello.txt", "hello file\n"), ("sub%2Fnested.txt", "nested\n")] {
        form.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"src\"; filename=\"{name}\"\r\nContent-Type: application/octet-stream\r\n\r\n{content}\r\n")
                .as_bytes(),
        );
    }
    form.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    let ct = format!("multipart/form-data; boundary={boundary}");
    let (status, head, body) =
        raw_request(addr, common::USER, "POST", "/session/sess-main/upload", Some(&ct), &form).await;
    assert_eq!(status, 204, "{head} {}", String::from_utf8_lossy(&body));
    let listing =
        common::request(addr, Some(common::USER), "GET", "/session/sess-main/files", Some(&json!({"path": "."}))).await;
    assert_eq!(listing.status, 200, "{listing:?}");
    let listing = listing.json();
    assert_eq!(listing["errors"], "");
    let files: Value = serde_json::from_str(listing["files"].as_str().expect("files is a JSON string")).unwrap();
    let hello = files.as_array().unwrap().iter().find(|f| f["filename"] == "hello.txt").expect("hello.txt listed");
    assert_eq!(hello["size"], 11);
    assert_eq!(hello["mode"].as_str().unwrap().len(), 10);
    assert!(files
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f["filename"] == "sub" && f["mode"].as_str().unwrap().starts_with('d')));
    let (stdout, _) = run_code(addr, common::USER, &id, "print(open('sub/nested.txt').read())", &[]).await;
    assert!(stdout.contains("nested"), "{stdout:?}");
    let (status, head, body) = raw_request(
        addr,
        common::USER,
        "GET",
        "/session/sess-main/download",
        Some("application/json"),
        json!({"files": ["hello.txt"]}).to_string().as_bytes(),
    )
    .await;
    assert_eq!(status, 200, "{head}");
    assert!(head.to_ascii_lowercase().contains("content-type: multipart/mixed; boundary="), "{head}");
    assert!(body.windows(10).any(|w| w == b"hello file"), "the part carries the tar archive");

    // Logs and the status history.
    let logs = common::request(addr, Some(common::USER), "GET", "/session/sess-main/logs", None).await;
    assert_eq!(logs.status, 200, "{logs:?}");
    assert!(logs.json()["result"]["logs"].is_string());
    let history = common::request(addr, Some(common::USER), "GET", "/session/sess-main/status-history", None).await;
    assert_eq!(history.status, 200, "{history:?}");
    for status in ["PENDING", "SCHEDULED", "RUNNING"] {
        assert!(history.json()["result"].get(status).is_some(), "{history:?}");
    }

    // Another user cannot see it; the superadmin can (by id, or with owner_access_key).
    let other = common::request(addr, Some(common::ADMIN), "GET", "/session/sess-main", None).await;
    assert_eq!(other.status, 200, "the superadmin sees every session: {other:?}");
    let delegated = common::request(
        addr,
        Some(common::ADMIN),
        "GET",
        &format!("/session/sess-main?owner_access_key={}", common::USER.0),
        None,
    )
    .await;
    assert_eq!(delegated.status, 200, "{delegated:?}");
    let admins = create(addr, common::ADMIN, create_body("sess-admin", json!({"enqueueOnly": true}))).await;
    assert_eq!(admins.status, 201, "{admins:?}");
    let admin_id = admins.json()["sessionId"].as_str().unwrap().to_string();
    for reference in ["sess-admin", admin_id.as_str()] {
        let hidden = common::request(addr, Some(common::USER), "GET", &format!("/session/{reference}"), None).await;
        assert_eq!(hidden.status, 404, "{hidden:?}");
        assert_eq!(hidden.json()["title"], "No such session.");
        let hidden = common::request(addr, Some(common::USER), "DELETE", &format!("/session/{reference}"), None).await;
        assert_eq!(hidden.status, 404, "{hidden:?}");
        let exec = common::request(
            addr,
            Some(common::USER),
            "POST",
            &format!("/session/{reference}"),
            Some(&json!({"mode": "query", "code": "1", "runId": null})),
        )
        .await;
        assert_eq!(exec.status, 404, "{exec:?}");
    }
    let forbidden = common::request(
        addr,
        Some(common::USER),
        "GET",
        &format!("/session/sess-admin?owner_access_key={}", common::ADMIN.0),
        None,
    )
    .await;
    assert_eq!(forbidden.status, 403, "{forbidden:?}");

    // Destroy: 200 with stats, the session TERMINATED and gone from lookups.
    let gone = common::request(addr, Some(common::USER), "DELETE", "/session/sess-main", None).await;
    assert_eq!(gone.status, 200, "{gone:?}");
    assert_eq!(gone.json()["stats"]["status"], "terminated", "{gone:?}");
    let row = repo::get_session(running.manager.db(), id.parse().unwrap()).await.unwrap().unwrap();
    assert_eq!(row.status.0, bai_core::SessionStatus::Terminated);
    let after = common::request(addr, Some(common::USER), "GET", "/session/sess-main", None).await;
    assert_eq!(after.status, 404, "{after:?}");
    let logs = common::request(addr, Some(common::USER), "GET", "/session/sess-main/logs", None).await;
    assert_eq!(logs.status, 200, "logs of a dead session: {logs:?}");
    let exec = common::request(
        addr,
        Some(common::USER),
        "POST",
        &format!("/session/{id}"),
        Some(&json!({"mode": "query", "code": "1", "runId": null})),
    )
    .await;
    assert_eq!(exec.status, 404, "{exec:?}");
    let gone = common::request(addr, Some(common::ADMIN), "DELETE", "/session/sess-admin?forced=true", None).await;
    assert_eq!(gone.status, 200, "{gone:?}");
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enqueue_only_and_session_events() {
    let dir = tempfile::tempdir().unwrap();
    let running = common::all_in_one(dir.path()).await;
    let addr = running.api_addr;

    // The SSE stream is open before the session exists; it ends after session_terminated.
    let path = "/events/session?sessionName=sess-events&scope=*";
    let sse = tokio::spawn(raw_request(addr, common::USER, "GET", path, None, b""));
    tokio::time::sleep(Duration::from_millis(500)).await;
    // A stream of another user's events is refused for regular users.
    let (status, _, _) = raw_request(
        addr,
        common::USER,
        "GET",
        &format!("/events/session?ownerAccessKey={}", common::ADMIN.0),
        None,
        b"",
    )
    .await;
    assert_eq!(status, 403);

    let reply = create(addr, common::USER, create_body("sess-events", json!({"enqueueOnly": true}))).await;
    assert_eq!(reply.status, 201, "{reply:?}");
    assert_eq!(reply.json()["status"], "PENDING");
    assert_eq!(reply.json()["created"], true);
    let id = reply.json()["sessionId"].as_str().unwrap().to_string();
    let mut status = String::new();
    for _ in 0..100 {
        let info = common::request(addr, Some(common::USER), "GET", &format!("/session/{id}"), None).await;
        status = info.json()["status"].as_str().unwrap_or_default().to_string();
        if status == "RUNNING" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(status, "RUNNING");
    let gone = common::request(addr, Some(common::USER), "DELETE", &format!("/session/{id}"), None).await;
    assert_eq!(gone.status, 200, "{gone:?}");

    let (status, head, body) =
        tokio::time::timeout(Duration::from_secs(60), sse).await.expect("the stream ends").unwrap();
    assert_eq!(status, 200, "{head}");
    assert!(head.to_ascii_lowercase().contains("content-type: text/event-stream"), "{head}");
    let text = String::from_utf8(body).unwrap();
    let mut names = Vec::new();
    let mut name = String::new();
    for line in text.lines() {
        if let Some(n) = line.strip_prefix("event: ").or_else(|| line.strip_prefix("event:")) {
            name = n.trim().to_string();
        } else if let Some(d) = line.strip_prefix("data: ").or_else(|| line.strip_prefix("data:")) {
            let data: Value = serde_json::from_str(d.trim()).unwrap_or_else(|e| panic!("data is not JSON ({e}): {d}"));
            if name != "server_close" {
                assert_eq!(data["sessionName"], "sess-events", "{data}");
                assert_eq!(data["sessionId"], id.as_str(), "{data}");
                assert_eq!(data["ownerAccessKey"], common::USER.0, "{data}");
                assert!(data.get("reason").is_some() && data.get("exitCode").is_some(), "{data}");
                if name.starts_with("kernel_") {
                    assert_eq!(data["clusterRole"], "main", "{data}");
                    assert!(data["kernelId"].is_string(), "{data}");
                }
                if name == "kernel_terminated" {
                    assert!(data["exitCode"].is_i64(), "{data}");
                }
            } else {
                assert_eq!(data, json!({}));
            }
            names.push(name.clone());
        }
    }
    for expected in [
        "session_enqueued",
        "session_scheduled",
        "kernel_started",
        "session_started",
        "session_terminating",
        "kernel_terminated",
        "session_terminated",
        "server_close",
    ] {
        assert!(names.iter().any(|n| n == expected), "no {expected} in {names:?}");
    }
    assert_eq!(names.last().map(String::as_str), Some("server_close"), "{names:?}");
    let started = names.iter().position(|n| n == "session_started").unwrap();
    let enqueued = names.iter().position(|n| n == "session_enqueued").unwrap();
    assert!(enqueued < started, "{names:?}");

    // A batch session: the create answers RUNNING, the stream (scope=session) carries
    // session_success with the exit code, then session_terminated and server_close.
    let path = "/events/session?sessionName=sess-batch&scope=session";
    let sse = tokio::spawn(raw_request(addr, common::USER, "GET", path, None, b""));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let body = create_body("sess-batch", json!({"type": "batch", "startupCommand": "echo batch; sleep 1; exit 3"}));
    let reply = create(addr, common::USER, body).await;
    assert_eq!(reply.status, 201, "{reply:?}");
    assert_eq!(reply.json()["status"], "RUNNING", "{reply:?}");
    let (_, _, body) = tokio::time::timeout(Duration::from_secs(60), sse).await.expect("the stream ends").unwrap();
    let text = String::from_utf8(body).unwrap();
    assert!(!text.contains("event: kernel_"), "scope=session: {text}");
    let failure = text.find("event: session_failure").unwrap_or_else(|| panic!("no session_failure: {text}"));
    assert!(text[failure..].lines().nth(1).unwrap().contains("\"exitCode\":3"), "{text}");
    let terminated = text.find("event: session_terminated").unwrap_or_else(|| panic!("no session_terminated: {text}"));
    assert!(failure < terminated && text.trim_end().ends_with("data: {}"), "{text}");

    // A bad scope is 400.
    let (status, _, _) = raw_request(addr, common::USER, "GET", "/events/session?scope=nope", None, b"").await;
    assert_eq!(status, 400);
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_execution() {
    let dir = tempfile::tempdir().unwrap();
    let running = common::all_in_one(dir.path()).await;
    let addr = running.api_addr;
    let reply = create(addr, common::USER, create_body("sess-ws", json!({}))).await;
    assert_eq!(reply.status, 201, "{reply:?}");
    assert_eq!(reply.json()["status"], "RUNNING");
    let id = reply.json()["sessionId"].as_str().unwrap().to_string();

    let connect = |path: String| async move {
        let mut request = format!("ws://{addr}{path}").into_client_request().unwrap();
        for (k, v) in signed_headers(addr, common::USER, "GET", &path, signing::DEFAULT_CONTENT_TYPE) {
            request.headers_mut().insert(
                tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        tokio_tungstenite::connect_async(request).await.map(|(ws, _)| ws)
    };
    let path = format!("/stream/session/{id}/execute");

    // Query mode with input: the server asks, the client answers with a raw text frame.
    let mut ws = connect(path.clone()).await.expect("upgrade");
    let code = "import time\nprint('hello')\ntime.sleep(0.5)\nx = input()\nprint(x * 2)";
    ws.send(Message::Text(json!({"code": code, "mode": "query", "options": {}}).to_string().into())).await.unwrap();
    let mut stdout = String::new();
    let mut statuses = Vec::new();
    let mut closed = false;
    while let Some(msg) = tokio::time::timeout(Duration::from_secs(60), ws.next()).await.expect("a frame in time") {
        match msg.unwrap() {
            Message::Text(text) => {
                let frame: Value = serde_json::from_str(text.as_str()).unwrap();
                let console = frame["console"].as_array().expect("console is always a list");
                for item in console {
                    if item[0] == "stdout" {
                        stdout.push_str(item[1].as_str().unwrap());
                    }
                }
                let status = frame["status"].as_str().unwrap().to_string();
                if status == "waiting-input" {
                    assert!(frame["options"].is_object(), "{frame}");
                    ws.send(Message::Text("ab".into())).await.unwrap();
                }
                if status == "finished" {
                    assert_eq!(frame["exitCode"], 0, "{frame}");
                }
                statuses.push(status);
            }
            Message::Close(_) => {
                closed = true;
                break;
            }
            _ => {}
        }
    }
    assert!(closed || statuses.last().map(String::as_str) == Some("finished"), "{statuses:?}");
    assert_eq!(statuses.last().map(String::as_str), Some("finished"), "{statuses:?}");
    assert!(statuses.iter().any(|s| s == "waiting-input"), "{statuses:?}");
    assert!(stdout.contains("hello") && stdout.contains("abab"), "{stdout:?}");

    // Batch mode runs a command.
    let mut ws = connect(path.clone()).await.expect("upgrade");
    let first = json!({"code": "", "mode": "batch", "options": {"clean": "*", "build": null, "buildLog": false, "exec": "echo batch-ok"}});
    ws.send(Message::Text(first.to_string().into())).await.unwrap();
    let mut out = String::new();
    let mut last = Value::Null;
    while let Some(Ok(msg)) = tokio::time::timeout(Duration::from_secs(60), ws.next()).await.expect("a frame in time") {
        if let Message::Text(text) = msg {
            last = serde_json::from_str(text.as_str()).unwrap();
            for item in last["console"].as_array().unwrap() {
                out.push_str(item[1].as_str().unwrap_or_default());
            }
        }
    }
    assert_eq!(last["status"], "finished", "{last}");
    assert!(out.contains("batch-ok"), "{out:?}");

    // A bad first message is an error frame, then a close.
    let mut ws = connect(path.clone()).await.expect("upgrade");
    ws.send(Message::Text("{\"mode\": \"nope\"}".into())).await.unwrap();
    let msg = tokio::time::timeout(Duration::from_secs(30), ws.next()).await.unwrap().unwrap().unwrap();
    let frame: Value = serde_json::from_str(msg.to_text().unwrap()).unwrap();
    assert_eq!(frame["status"], "error", "{frame}");

    // Unsigned upgrades and other users' sessions are refused before the upgrade.
    let unsigned = tokio_tungstenite::connect_async(format!("ws://{addr}{path}")).await;
    assert!(unsigned.is_err());
    let mut request = format!("ws://{addr}{path}").into_client_request().unwrap();
    for (k, v) in signed_headers(addr, common::ADMIN, "GET", &path, signing::DEFAULT_CONTENT_TYPE) {
        request.headers_mut().insert(
            tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    assert!(tokio_tungstenite::connect_async(request).await.is_ok(), "the superadmin may run code in any session");
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_requests_are_refused_without_a_trace() {
    let dir = tempfile::tempdir().unwrap();
    let running = common::all_in_one(dir.path()).await;
    let addr = running.api_addr;
    let cases: Vec<(Value, &str)> = vec![
        (
            create_body("sess-bad", json!({"config": {"resources": {"cpu": "1", "mem": "lots"}}})),
            "config.resources.mem",
        ),
        (create_body("sess-bad", json!({"config": {"resources": {"cpu": "-1"}}})), "config.resources.cpu"),
        (create_body("sess-bad", json!({"config": {"resources": {"cpu": "1", "gpu": "1"}}})), "config.resources.gpu"),
        (create_body("sess-bad", json!({"config": {"resources": {"shmem": "64m"}}})), "config.resources.shmem"),
        (create_body("sess-bad", json!({"clusterSize": 0})), "clusterSize"),
        (create_body("sess-bad", json!({"clusterSize": "many"})), "clusterSize"),
        (create_body("sess-bad", json!({"clusterMode": "everywhere"})), "clusterMode"),
        (create_body("sess-bad", json!({"image": null})), "image"),
        (create_body("sess-bad", json!({"image": "bad image"})), "image"),
        (create_body("ab", json!({})), "name"),
        (create_body("-bad-name", json!({})), "name"),
        (create_body("sess-bad", json!({"type": "batch"})), "startupCommand"),
        (create_body("sess-bad", json!({"type": "weird"})), "type"),
        (create_body("sess-bad", json!({"starts_at": "1h"})), "starts_at"),
        (create_body("sess-bad", json!({"maxWaitSeconds": -1})), "maxWaitSeconds"),
        (create_body("sess-bad", json!({"enqueueOnly": "perhaps"})), "enqueueOnly"),
        (create_body("sess-bad", json!({"group": "no-such-group"})), "group"),
        (create_body("sess-bad", json!({"domain": "elsewhere"})), "domain"),
        (create_body("sess-bad", json!({"config": {"scalingGroup": "nowhere"}})), "config.scalingGroup"),
        (create_body("sess-bad", json!({"config": {"environ": {"1BAD": "x"}}})), "config.environ.1BAD"),
        (create_body("sess-bad", json!({"config": {"preopen_ports": ["80"]}})), "config.preopen_ports[0]"),
        (
            create_body(
                "sess-bad",
                json!({"config": {"resources": {"cpu": "1", "mem": "256m"}, "resource_opts": {"shmem": "1g"}}}),
            ),
            "config.resource_opts.shmem",
        ),
    ];
    for (body, field) in &cases {
        let reply = create(addr, common::USER, body.clone()).await;
        assert_eq!(reply.status, 400, "{field}: {reply:?}");
        let json = reply.json();
        assert_eq!(json["type"], "https://api.backend.ai/probs/invalid-api-params", "{field}: {json}");
        assert_eq!(data_key(&reply), *field, "{json}");
        assert!(json["title"].is_string());
    }
    let not_json = common::request(addr, Some(common::USER), "POST", "/session", None).await;
    assert_eq!(not_json.status, 400, "{not_json:?}");
    let agents = create(addr, common::USER, create_body("sess-bad", json!({"config": {"agentList": ["i-x"]}}))).await;
    assert_eq!(agents.status, 403, "{agents:?}");
    assert_eq!(session_count(&running).await, 0, "no session row may be inserted by a refused request");

    // Names: reuse, refusal, another image.
    let first = create(addr, common::USER, create_body("sess-dup", json!({"enqueueOnly": true}))).await;
    assert_eq!(first.status, 201, "{first:?}");
    let id = first.json()["sessionId"].as_str().unwrap().to_string();
    let again =
        create(addr, common::USER, create_body("sess-dup", json!({"enqueueOnly": true, "reuseIfExists": false}))).await;
    assert_eq!(again.status, 400, "{again:?}");
    assert_eq!(again.json()["type"], "https://api.backend.ai/probs/session-already-exists");
    assert_eq!(again.json()["data"]["existingSessionId"], id.as_str());
    let other_image =
        create(addr, common::USER, create_body("sess-dup", json!({"enqueueOnly": true, "image": "python:3.11"}))).await;
    assert_eq!(other_image.status, 400, "{other_image:?}");
    assert_eq!(other_image.json()["data"]["existingSessionId"], id.as_str());
    let reused = create(addr, common::USER, create_body("sess-dup", json!({}))).await;
    assert_eq!(reused.status, 201, "{reused:?}");
    assert_eq!(reused.json()["created"], false);
    assert_eq!(reused.json()["sessionId"], id.as_str());
    // Another owner may use the same name.
    let admins = create(addr, common::ADMIN, create_body("sess-dup", json!({"enqueueOnly": true}))).await;
    assert_eq!(admins.status, 201, "{admins:?}");
    assert_eq!(admins.json()["created"], true);
    assert_eq!(session_count(&running).await, 2);

    // The superadmin sees both sessions named sess-dup only through ids or owner keys; the
    // user's own reference stays unambiguous.
    let mine = common::request(addr, Some(common::USER), "GET", "/session/sess-dup", None).await;
    assert_eq!(mine.status, 200, "{mine:?}");
    // Not-forced destroy of a session still being created may be refused; forced always works.
    for (key, reference) in
        [(common::USER, id.clone()), (common::ADMIN, admins.json()["sessionId"].as_str().unwrap().to_string())]
    {
        let gone = common::request(addr, Some(key), "DELETE", &format!("/session/{reference}?forced=true"), None).await;
        assert_eq!(gone.status, 200, "{gone:?}");
    }
    // The name is free again once the session is gone.
    let fresh =
        create(addr, common::USER, create_body("sess-dup", json!({"enqueueOnly": true, "reuseIfExists": false}))).await;
    assert_eq!(fresh.status, 201, "{fresh:?}");
    assert_ne!(fresh.json()["sessionId"], id.as_str());
    // A time-limited wait that cannot be met answers TIMEOUT and leaves the session queued.
    let huge = create(
        addr,
        common::USER,
        create_body("sess-huge", json!({"maxWaitSeconds": 1, "config": {"resources": {"cpu": "4096", "mem": "1g"}}})),
    )
    .await;
    assert_eq!(huge.status, 201, "{huge:?}");
    assert_eq!(huge.json()["status"], "TIMEOUT", "{huge:?}");
    let pending = common::request(addr, Some(common::USER), "DELETE", "/session/sess-huge", None).await;
    assert_eq!(pending.status, 200, "{pending:?}");
    assert_eq!(pending.json()["stats"]["status"], "cancelled", "{pending:?}");
    running.shutdown().await;
}
