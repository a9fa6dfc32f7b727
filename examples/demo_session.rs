//! A demo session against a running manager, with nothing but `bai-core`'s request signing:
//! create a session, run `print(1+1)` in it, show the output, destroy it.
//!
//! ```sh
//! export BACKEND_ENDPOINT=http://127.0.0.1:8081 BACKEND_ACCESS_KEY=… BACKEND_SECRET_KEY=…
//! cargo run -p bai-examples --example demo_session -- bai/python:3.11
//! ```
//!
//! The same variables configure the official `backend.ai` client, which works against the
//! same manager.

use std::time::Duration;

use bai_core::signing::{self, RequestToSign, API_VERSION};
use bai_core::AccessKey;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Client {
    host: String,
    access_key: String,
    secret_key: String,
}

impl Client {
    fn from_env() -> Result<Self, String> {
        let var = |name: &str| std::env::var(name).map_err(|_| format!("{name} is not set"));
        let endpoint = var("BACKEND_ENDPOINT")?;
        let host = endpoint
            .strip_prefix("http://")
            .ok_or_else(|| format!("BACKEND_ENDPOINT {endpoint:?}: this demo speaks plain http:// only"))?
            .trim_end_matches('/')
            .to_string();
        Ok(Self { host, access_key: var("BACKEND_ACCESS_KEY")?, secret_key: var("BACKEND_SECRET_KEY")? })
    }

    /// One signed request; returns the status and the JSON body (or `null`).
    async fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Result<(u16, Value), String> {
        let date = signing::format_request_date(chrono::Utc::now());
        let to_sign = RequestToSign {
            method,
            path_and_query: path,
            date: &date,
            host: &self.host,
            content_type: "application/json",
            api_version: API_VERSION,
        };
        let access_key = AccessKey::new(&self.access_key).map_err(|e| e.to_string())?;
        let signature = signing::sign(&self.secret_key, &to_sign).map_err(|e| e.to_string())?;
        let payload = body.map(Value::to_string).unwrap_or_default();
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {host}\r\nDate: {date}\r\nX-BackendAI-Version: {API_VERSION}\r\n\
             Content-Type: application/json\r\nAuthorization: {auth}\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n{payload}",
            host = self.host,
            auth = signing::authorization_header(&access_key, &signature),
            len = payload.len(),
        );
        let mut stream =
            tokio::net::TcpStream::connect(&self.host).await.map_err(|e| format!("connect {}: {e}", self.host))?;
        stream.write_all(request.as_bytes()).await.map_err(|e| e.to_string())?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.map_err(|e| e.to_string())?;
        let text = String::from_utf8_lossy(&raw);
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        let body = if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
            dechunk(body)
        } else {
            body.to_string()
        };
        Ok((status, serde_json::from_str(&body).unwrap_or(Value::Null)))
    }
}

fn dechunk(mut body: &str) -> String {
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

async fn demo(image: &str) -> Result<(), String> {
    let client = Client::from_env()?;
    let name = format!("demo-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    println!("creating session {name} ({image}) …");
    let create = json!({
        "name": name, "image": image, "type": "interactive", "group": "default", "domain": "default",
        "config": {"resources": {"cpu": "1", "mem": "512m"}}, "clusterSize": 1, "clusterMode": "single-node",
        "enqueueOnly": false, "maxWaitSeconds": 120, "reuseIfExists": false,
    });
    let (status, body) = client.call("POST", "/session", Some(&create)).await?;
    if status != 201 {
        return Err(format!("session create answered {status}: {body}"));
    }
    let id = body["sessionId"].as_str().ok_or_else(|| format!("no sessionId in {body}"))?.to_string();
    println!("session {id} is {}", body["status"].as_str().unwrap_or("?"));

    let mut request = json!({"mode": "query", "code": "print(1+1)", "runId": null});
    let mut output = String::new();
    for _ in 0..60 {
        let (status, body) = client.call("POST", &format!("/session/{id}"), Some(&request)).await?;
        if status != 200 {
            return Err(format!("execute answered {status}: {body}"));
        }
        let result = &body["result"];
        for item in result["console"].as_array().into_iter().flatten() {
            if item[0] == "stdout" {
                output.push_str(item[1].as_str().unwrap_or(""));
            }
        }
        match result["status"].as_str() {
            Some("finished") => break,
            _ => {
                request = json!({"mode": "continue", "code": "", "runId": result["runId"]});
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    println!("print(1+1) printed: {}", output.trim_end());

    let (status, body) = client.call("DELETE", &format!("/session/{id}"), None).await?;
    if !(200..300).contains(&status) {
        return Err(format!("destroy answered {status}: {body}"));
    }
    println!("session {id} destroyed");
    if output.trim() != "2" {
        return Err(format!("expected the output 2, got {output:?}"));
    }
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    let image = std::env::args().nth(1).unwrap_or_else(|| "bai/python:3.11".into());
    match demo(&image).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("demo_session: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
