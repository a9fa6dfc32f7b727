//! `GET /stream/session/{ref}/execute`: code execution over a WebSocket, as `backend.ai run`
//! speaks it (`spec/client-wire.md` §6.6).
//!
//! The upgrade request is signed like any other (no `Content-Type`, so the client signs
//! `application/octet-stream`); the session is resolved before the upgrade, so an unknown one
//! is an ordinary 404. One connection is one run, with a run id the server generates:
//!
//! 1. the client's first text frame is JSON `{"code", "mode": "query"|"batch", "options"}`;
//! 2. the server calls the agent repeatedly and sends each result as a text frame
//!    `{"status", "console", "exitCode", "options", "files"}` (`console` is always a list;
//!    empty `continued` results are not sent);
//! 3. after `waiting-input` the client's next frame (raw text, not JSON) is the input;
//! 4. after `finished` the server closes the connection. An error is
//!    `{"status": "error", "msg"}`, then a close. A client that leaves mid-run gets its code
//!    interrupted.

use std::sync::Arc;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::http::Uri;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use bai_agent_runtime::rpc::pb;
use serde_json::{json, Value};

use super::session::query_params;
use super::{ApiError, ApiState, AuthContext};
use crate::db::entities::session;
use crate::manager::Manager;
use crate::sessions::{self, Fields};

/// How long the agent gathers output before answering `continued` (the original's 0.2 s).
const FLUSH_TIMEOUT: f64 = 0.2;

/// The signed routes of this module.
pub fn routes() -> Router<ApiState> {
    Router::new().route("/stream/session/{reference}/execute", get(stream_execute))
}

async fn stream_execute(
    ctx: AuthContext,
    State(state): State<ApiState>,
    Path(reference): Path<String>,
    uri: Uri,
    ws: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let manager: Arc<Manager> = state.require_service::<Manager>()?;
    let query = query_params(&uri);
    let owner = Fields::new(&query, "").string(&["owner_access_key"])?;
    let s = sessions::find_session(manager.db(), &ctx, &reference, owner.as_deref(), false).await?;
    tracing::info!(access_key = ctx.access_key(), session = %s.id, "stream execute");
    Ok(ws.on_upgrade(move |socket| async move {
        run(manager, s, socket).await;
    }))
}

/// The next text the client sends (binary frames are read as UTF-8); `None` when it leaves.
async fn receive_text(socket: &mut WebSocket) -> Option<String> {
    loop {
        match socket.recv().await? {
            Ok(Message::Text(text)) => return Some(text.as_str().to_string()),
            Ok(Message::Binary(bytes)) => return Some(String::from_utf8_lossy(&bytes).into_owned()),
            Ok(Message::Ping(_) | Message::Pong(_)) => continue,
            Ok(Message::Close(_)) | Err(_) => return None,
        }
    }
}

async fn send_json(socket: &mut WebSocket, value: &Value) -> bool {
    socket.send(Message::Text(value.to_string().into())).await.is_ok()
}

async fn fail(socket: &mut WebSocket, msg: impl Into<String>) {
    let _ = send_json(socket, &json!({"status": "error", "msg": msg.into()})).await;
    let _ = socket.send(Message::Close(None)).await;
}

async fn interrupt(manager: &Manager, s: &session::Model) {
    if let Ok(k) = sessions::main_kernel(manager.db(), s.id).await {
        if let Ok(mut client) = sessions::kernel_client(manager, &k) {
            let _ = client.interrupt_kernel(pb::KernelRequest { kernel_id: k.id.to_string() }).await;
        }
    }
}

async fn run(manager: Arc<Manager>, s: session::Model, mut socket: WebSocket) {
    let Some(first) = receive_text(&mut socket).await else { return };
    let params: Value = match serde_json::from_str(&first) {
        Ok(v @ Value::Object(_)) => v,
        Ok(other) => {
            return fail(&mut socket, format!("Invalid API parameters: expected a JSON object, got {other}")).await
        }
        Err(e) => return fail(&mut socket, format!("Invalid API parameters: {e}")).await,
    };
    let mut mode = match params.get("mode").and_then(Value::as_str) {
        Some(m @ ("query" | "batch")) => m.to_string(),
        Some(other) => {
            return fail(&mut socket, format!("Invalid API parameters: mode {other:?} is not query or batch")).await
        }
        None => return fail(&mut socket, "Invalid API parameters: mode is missing or empty").await,
    };
    let mut code = params.get("code").and_then(Value::as_str).unwrap_or_default().to_string();
    let mut options = params.get("options").filter(|o| o.is_object()).cloned().unwrap_or_else(|| json!({}));
    let run_id = sessions::random_hex(8);
    loop {
        let result = match sessions::execute(&manager, &s, &mode, &run_id, &code, &options, FLUSH_TIMEOUT).await {
            Ok(r) => r,
            Err(e) => {
                tracing::info!(session = %s.id, error = %e, "stream execute failed");
                return fail(&mut socket, e.msg().map(str::to_string).unwrap_or_else(|| e.title().to_string())).await;
            }
        };
        let status = result.get("status").and_then(Value::as_str).unwrap_or("finished").to_string();
        let empty = result.get("console").and_then(Value::as_array).is_none_or(Vec::is_empty);
        if !(status == "continued" && empty) {
            let frame = json!({
                "status": status,
                "console": result.get("console").cloned().unwrap_or_else(|| json!([])),
                "exitCode": result.get("exitCode").cloned().unwrap_or(Value::Null),
                "options": result.get("options").cloned().unwrap_or_else(|| json!({})),
                "files": result.get("files").cloned().unwrap_or_else(|| json!([])),
            });
            if !send_json(&mut socket, &frame).await {
                interrupt(&manager, &s).await;
                return;
            }
        }
        match status.as_str() {
            "finished" => {
                let _ = socket.send(Message::Close(None)).await;
                return;
            }
            "waiting-input" => {
                let Some(input) = receive_text(&mut socket).await else {
                    interrupt(&manager, &s).await;
                    return;
                };
                mode = "input".into();
                code = input;
            }
            _ => {
                mode = "continue".into();
                code.clear();
            }
        }
        options = json!({});
    }
}
