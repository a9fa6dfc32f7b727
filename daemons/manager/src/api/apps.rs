//! Service access: reaching the services ("apps") inside a user's own running session —
//! Jupyter, TensorBoard, a TCP server — through the manager, as the official client's
//! `backend.ai app SESSION APP` and `backend.ai apps SESSION` commands do.
//!
//! Signed routes (the session is the caller's own; another user's session is 404 like an
//! unknown one, and an admin reaches someone else's only by naming `owner_access_key`):
//!
//! - `GET /stream/session/{ref}/apps` → `[{"name", "protocol", "ports", "url_template"?,
//!   "allowed_arguments"?, "allowed_envs"?}]`, the main kernel's services.
//! - `GET /stream/session/{ref}/tcpproxy?app=NAME[&arguments=JSON][&envs=JSON]` (and
//!   `httpproxy`, the same): a WebSocket carrying one TCP connection to the service in binary
//!   frames. The service is started first (the agent's `StartService`: started on demand,
//!   waited for until it listens) and the connection opened before the upgrade, so a bad app,
//!   a failed start or an unreachable kernel is an ordinary HTTP error. When either side
//!   closes, so does the other.
//! - `POST /stream/session/{ref}/apps/{app}/link` with an optional body `{"arguments",
//!   "envs"}` → `{"url": "/app-proxy/{token}/", "expires_at"}`: a link a browser can open
//!   without signing requests (the web console's path), for `http` and `preopen` services.
//!
//! Public route: `/app-proxy/{token}/{path…}` forwards any HTTP request (WebSocket upgrades
//! included) to the service as `/{path…}`. The token is sealed with the manager's token
//! secret ([`Storage::seal`]), names the session, its owner and the app, expires after
//! [`LINK_LIFETIME`], and stops working as soon as the session is no longer RUNNING. Services
//! should use relative links (or be told their base URL `/app-proxy/{token}/`).
//!
//! A link is a bearer credential for one app of one session: whoever holds it reaches the app
//! until it expires or the session ends. Pages served through it share the manager's host and
//! port, so every proxied response carries `Content-Security-Policy: sandbox …` (no
//! `allow-same-origin`): the app's pages run in an opaque origin and cannot use the web
//! console's session ([`super::console`]); the console cookie is stripped from forwarded
//! requests. Apps that need their own origin (cookies, storage) are better served behind a
//! host name of their own in front of `/app-proxy/`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{any, get, post};
use axum::{Json, Router};
use bai_agent_runtime::rpc::pb;
use bai_core::SessionStatus;
use futures::{SinkExt, StreamExt};
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use uuid::Uuid;

use super::session::query_params;
use super::{ApiError, ApiState, AuthContext, ErrorKind};
use crate::db::entities::{kernel, session};
use crate::db::repo;
use crate::manager::Manager;
use crate::sessions::{self, db_error, Fields};
use crate::storage::Storage;

/// How long a link from `POST …/apps/{app}/link` works (while the session runs).
pub const LINK_LIFETIME: std::time::Duration = std::time::Duration::from_secs(3600);

/// The path prefix of app links.
pub const PROXY_PREFIX: &str = "/app-proxy";

/// The signed routes of this module.
pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/stream/session/{reference}/apps", get(list_apps))
        .route("/stream/session/{reference}/tcpproxy", get(stream_proxy))
        .route("/stream/session/{reference}/httpproxy", get(stream_proxy))
        .route("/stream/session/{reference}/apps/{app}/link", post(create_link))
}

/// The public routes of this module (token-authorised app links).
pub fn public_routes() -> Router<ApiState> {
    Router::new()
        .route("/app-proxy/{token}", any(link_root))
        .route("/app-proxy/{token}/", any(app_proxy))
        .route("/app-proxy/{token}/{*path}", any(app_proxy))
}

/// A service of a kernel as the manager recorded it.
#[derive(Debug, Clone, PartialEq)]
struct App {
    name: String,
    protocol: String,
    host: String,
    host_port: u16,
}

/// The app `name` of a kernel, from its recorded `service_ports` and `kernel_host`.
fn kernel_app(kernel: &kernel::Model, name: &str) -> Result<App, ApiError> {
    find_app(kernel.service_ports.as_ref(), kernel.kernel_host.as_deref(), name)
}

fn find_app(service_ports: Option<&Value>, kernel_host: Option<&str>, name: &str) -> Result<App, ApiError> {
    let ports = service_ports.and_then(Value::as_array).cloned().unwrap_or_default();
    let found = ports.iter().find(|p| p.get("name").and_then(Value::as_str) == Some(name));
    let Some(port) = found else {
        let known: Vec<&str> = ports.iter().filter_map(|p| p.get("name").and_then(Value::as_str)).collect();
        return Err(ApiError::not_found("app")
            .with_title("No such app.")
            .with_msg(format!("the session has no app {name:?} (it has {known:?})")));
    };
    let host_port = port
        .get("host_ports")
        .and_then(Value::as_array)
        .and_then(|p| p.first())
        .and_then(Value::as_u64)
        .and_then(|p| u16::try_from(p).ok())
        .ok_or_else(|| ApiError::service_unavailable(format!("the app {name:?} has no host port")))?;
    let host = kernel_host
        .filter(|h| !h.is_empty())
        .map(str::to_string)
        .ok_or_else(|| ApiError::service_unavailable("the kernel's host is not known yet"))?;
    Ok(App {
        name: name.to_string(),
        protocol: port.get("protocol").and_then(Value::as_str).unwrap_or("tcp").to_string(),
        host,
        host_port,
    })
}

/// The caller's own session `reference` (or, for an admin naming `owner_access_key` in
/// `query`, that owner's), which must be RUNNING, and its main kernel.
async fn own_main_kernel(
    manager: &Manager,
    ctx: &AuthContext,
    reference: &str,
    query: &Map<String, Value>,
) -> Result<(session::Model, kernel::Model), ApiError> {
    let owner = Fields::new(query, "").string(&["owner_access_key"])?;
    let s = sessions::find_session(manager.db(), ctx, reference, owner.as_deref(), false).await?;
    if owner.is_none() && s.access_key.as_deref() != Some(ctx.access_key()) {
        // Admins find other users' sessions by name; apps are for the owner's hands only.
        return Err(ApiError::session_not_found());
    }
    require_running(&s)?;
    let kernel = sessions::main_kernel(manager.db(), s.id).await?;
    Ok((s, kernel))
}

fn require_running(s: &session::Model) -> Result<(), ApiError> {
    let status = s.status.0;
    if status.is_dead() || status == SessionStatus::Terminating {
        return Err(ApiError::session_not_found().with_msg(format!("the session {:?} has ended", s.name)));
    }
    if status != SessionStatus::Running {
        return Err(ApiError::conflict(format!(
            "the session {:?} is {}, and its apps are reachable only while it is RUNNING",
            s.name,
            s.status.0.as_str()
        )));
    }
    Ok(())
}

async fn list_apps(
    ctx: AuthContext,
    State(state): State<ApiState>,
    Path(reference): Path<String>,
    uri: Uri,
) -> Result<Json<Value>, ApiError> {
    let manager: Arc<Manager> = state.require_service::<Manager>()?;
    let (_, kernel) = own_main_kernel(&manager, &ctx, &reference, &query_params(&uri)).await?;
    Ok(Json(sessions::client_service_ports(kernel.service_ports.as_ref())))
}

/// `arguments` and `envs` as JSON objects (in a query string they are JSON text).
fn service_options(fields: &Map<String, Value>) -> Result<Value, ApiError> {
    let mut opts = Map::new();
    for key in ["arguments", "envs"] {
        let value = match fields.get(key) {
            None | Some(Value::Null) => continue,
            Some(Value::String(s)) if s.trim().is_empty() => continue,
            Some(Value::String(s)) => {
                serde_json::from_str(s).map_err(|e| ApiError::invalid(key, format!("is not JSON: {e}")))?
            }
            Some(other) => other.clone(),
        };
        if !value.is_object() {
            return Err(ApiError::invalid(key, "must be a JSON object"));
        }
        if key == "envs" && value.as_object().is_some_and(|m| m.values().any(|v| !v.is_string())) {
            return Err(ApiError::invalid(key, "values must be strings"));
        }
        opts.insert(key.to_string(), value);
    }
    Ok(Value::Object(opts))
}

/// Starts `app` in the session's main kernel (a no-op when it listens already).
async fn start_app(manager: &Manager, kernel: &kernel::Model, app: &App, opts: &Value) -> Result<String, ApiError> {
    let mut client = sessions::kernel_client(manager, kernel)?;
    let reply = client
        .start_service(pb::StartServiceRequest {
            kernel_id: kernel.id.to_string(),
            service: app.name.clone(),
            opts_json: opts.to_string(),
        })
        .await
        .map_err(|status| match status.code() {
            tonic::Code::Internal | tonic::Code::DeadlineExceeded => {
                ApiError::internal(format!("the app {:?} failed to start: {}", app.name, status.message()))
                    .with_title("Failed to launch the app service")
            }
            _ => sessions::agent_error(status),
        })?;
    Ok(reply.into_inner().status)
}

async fn connect(app: &App) -> Result<TcpStream, ApiError> {
    TcpStream::connect((app.host.as_str(), app.host_port)).await.map_err(|e| {
        ApiError::service_unavailable(format!(
            "cannot connect to the app {:?} at {}:{}: {e}",
            app.name, app.host, app.host_port
        ))
    })
}

async fn stream_proxy(
    ctx: AuthContext,
    State(state): State<ApiState>,
    Path(reference): Path<String>,
    uri: Uri,
    ws: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let manager: Arc<Manager> = state.require_service::<Manager>()?;
    let query = query_params(&uri);
    let name = Fields::new(&query, "").string(&["app"])?.ok_or_else(|| ApiError::invalid("app", "is required"))?;
    let opts = service_options(&query)?;
    let (s, kernel) = own_main_kernel(&manager, &ctx, &reference, &query).await?;
    let app = kernel_app(&kernel, &name)?;
    let status = start_app(&manager, &kernel, &app, &opts).await?;
    let stream = connect(&app).await?;
    tracing::info!(access_key = ctx.access_key(), session = %s.id, app = %app.name, status, "app proxy");
    // An open app connection keeps the session from being network-idle.
    let activity = manager.idle().connection(bai_core::SessionId::from_uuid(s.id));
    Ok(ws.on_upgrade(move |socket| async move {
        pump(socket, stream).await;
        drop(activity);
    }))
}

/// Copies bytes between the WebSocket (binary frames) and the TCP connection until either
/// side closes.
async fn pump(socket: WebSocket, stream: TcpStream) {
    let (mut ws_tx, mut ws_rx) = socket.split();
    let (mut tcp_rx, mut tcp_tx) = stream.into_split();
    let upstream = async {
        while let Some(Ok(msg)) = ws_rx.next().await {
            let data = match msg {
                Message::Binary(b) => b,
                Message::Text(t) => t.as_bytes().to_vec().into(),
                Message::Ping(_) | Message::Pong(_) => continue,
                Message::Close(_) => break,
            };
            if tcp_tx.write_all(&data).await.is_err() {
                break;
            }
        }
        let _ = tcp_tx.shutdown().await;
    };
    let downstream = async {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match tcp_rx.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if ws_tx.send(Message::Binary(buf[..n].to_vec().into())).await.is_err() {
                        return;
                    }
                }
            }
        }
        let _ = ws_tx.send(Message::Close(Some(CloseFrame { code: 1000, reason: "".into() }))).await;
    };
    tokio::select! {
        () = upstream => {}
        () = downstream => {}
    }
}

/// What an app link grants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct AppLink {
    /// The session.
    app_session: Uuid,
    /// Its owner's access key when the link was made.
    access_key: String,
    /// The app.
    app: String,
    /// The deadline, Unix seconds.
    exp: i64,
}

async fn create_link(
    ctx: AuthContext,
    State(state): State<ApiState>,
    Path((reference, name)): Path<(String, String)>,
    uri: Uri,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let manager: Arc<Manager> = state.require_service::<Manager>()?;
    let storage: Arc<Storage> = state.require_service::<Storage>()?;
    let params: Map<String, Value> = if body.iter().all(u8::is_ascii_whitespace) {
        Map::new()
    } else {
        serde_json::from_slice(&body).map_err(|e| ApiError::invalid("body", format!("is not a JSON object: {e}")))?
    };
    let opts = service_options(&params)?;
    let (s, kernel) = own_main_kernel(&manager, &ctx, &reference, &query_params(&uri)).await?;
    let app = kernel_app(&kernel, &name)?;
    if !matches!(app.protocol.as_str(), "http" | "preopen") {
        return Err(ApiError::invalid(
            "app",
            format!("{name:?} speaks {}, not HTTP; reach it through /stream/session/{{ref}}/tcpproxy", app.protocol),
        ));
    }
    start_app(&manager, &kernel, &app, &opts).await?;
    let exp = chrono::Utc::now() + LINK_LIFETIME;
    let token = storage.seal(&AppLink {
        app_session: s.id,
        access_key: s.access_key.clone().unwrap_or_default(),
        app: name,
        exp: exp.timestamp(),
    });
    Ok(Json(json!({
        "url": format!("{PROXY_PREFIX}/{token}/"),
        "expires_at": exp.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    })))
}

async fn link_root(Path(token): Path<String>) -> Redirect {
    Redirect::permanent(&format!("{PROXY_PREFIX}/{token}/"))
}

/// The session and app a link names, if it still may be used.
async fn open_link(state: &ApiState, token: &str) -> Result<(bai_core::SessionId, App), ApiError> {
    let manager: Arc<Manager> = state.require_service::<Manager>()?;
    let storage: Arc<Storage> = state.require_service::<Storage>()?;
    let forbidden = |why: &str| ApiError::new(ErrorKind::GenericForbidden).with_msg(format!("app link: {why}"));
    let link: AppLink = storage.open(token).map_err(|_| forbidden("invalid token"))?;
    if link.exp < chrono::Utc::now().timestamp() {
        return Err(forbidden("expired; ask for a new link"));
    }
    let s = repo::get_session(manager.db(), bai_core::SessionId::from_uuid(link.app_session))
        .await
        .map_err(db_error)?
        .filter(|s| s.access_key.as_deref() == Some(link.access_key.as_str()))
        .ok_or_else(ApiError::session_not_found)?;
    require_running(&s)?;
    let app = kernel_app(&sessions::main_kernel(manager.db(), s.id).await?, &link.app)?;
    Ok((bai_core::SessionId::from_uuid(s.id), app))
}

async fn app_proxy(
    State(state): State<ApiState>,
    Path(params): Path<HashMap<String, String>>,
    mut request: Request,
) -> Result<Response, ApiError> {
    let token = params.get("token").map(String::as_str).unwrap_or_default();
    let (session_id, app) = open_link(&state, token).await?;
    // App traffic: the request (and an upgraded connection while it lasts) keeps the session
    // from being network-idle.
    let manager: Arc<Manager> = state.require_service::<Manager>()?;
    let activity = manager.idle().connection(session_id);
    let stream = connect(&app).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| ApiError::service_unavailable(format!("the app {:?}: {e}", app.name)))?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(error = %e, "app proxy connection ended");
        }
    });

    let rest = params.get("path").map(String::as_str).unwrap_or_default();
    let path_and_query = match request.uri().query() {
        Some(q) => format!("/{rest}?{q}"),
        None => format!("/{rest}"),
    };
    let client_upgrade = request.extensions_mut().remove::<hyper::upgrade::OnUpgrade>();
    let (mut parts, body) = request.into_parts();
    parts.uri = path_and_query.parse().map_err(|_| ApiError::invalid("path", "is not a valid URI path"))?;
    parts.version = axum::http::Version::HTTP_11;
    parts.extensions = Default::default();
    if let Ok(host) = HeaderValue::from_str(&format!("{}:{}", app.host, app.host_port)) {
        parts.headers.insert(header::HOST, host);
    }
    // The visitor's console session is theirs, not the app's.
    super::console::strip_cookie(&mut parts.headers);
    let mut response = sender
        .send_request(Request::from_parts(parts, body))
        .await
        .map_err(|e| ApiError::service_unavailable(format!("the app {:?}: {e}", app.name)))?;

    if response.status() == StatusCode::SWITCHING_PROTOCOLS {
        let Some(client_upgrade) = client_upgrade else {
            return Err(ApiError::service_unavailable("the app switched protocols without being asked"));
        };
        let app_upgrade = hyper::upgrade::on(&mut response);
        tokio::spawn(async move {
            match tokio::try_join!(client_upgrade, app_upgrade) {
                Ok((client, app)) => {
                    let _ = tokio::io::copy_bidirectional(&mut TokioIo::new(client), &mut TokioIo::new(app)).await;
                }
                Err(e) => tracing::debug!(error = %e, "app proxy upgrade failed"),
            }
            drop(activity);
        });
        let (parts, _) = response.into_parts();
        return Ok(Response::from_parts(parts, Body::empty()));
    }
    let mut response = response.map(Body::new).into_response();
    // An opaque origin for the app's pages: they share the manager's host and port, and must
    // not reach the console's storage, frames or cookie (see `super::console`).
    response.headers_mut().insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(APP_SANDBOX));
    Ok(response)
}

/// The sandbox every app-link response is served in: scripts, forms, popups and downloads
/// work, but never as the manager's origin.
const APP_SANDBOX: &str = "sandbox allow-scripts allow-forms allow-popups allow-modals allow-downloads";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_options_take_json_objects_and_name_the_bad_field() {
        let mut q = Map::new();
        q.insert("arguments".into(), json!(r#"{"--dir": "/home/work"}"#));
        q.insert("envs".into(), json!({"GREETING": "hi"}));
        assert_eq!(
            service_options(&q).unwrap(),
            json!({"arguments": {"--dir": "/home/work"}, "envs": {"GREETING": "hi"}})
        );
        q.insert("arguments".into(), json!("[1]"));
        assert_eq!(service_options(&q).unwrap_err().msg(), Some("arguments: must be a JSON object"));
        q.insert("arguments".into(), json!("{nope"));
        assert!(service_options(&q).unwrap_err().msg().unwrap().starts_with("arguments: is not JSON"));
        q.remove("arguments");
        q.insert("envs".into(), json!({"N": 1}));
        assert_eq!(service_options(&q).unwrap_err().msg(), Some("envs: values must be strings"));
        assert_eq!(service_options(&Map::new()).unwrap(), json!({}));
    }

    #[test]
    fn apps_are_read_from_the_recorded_service_ports() {
        let ports = json!([
            {"name": "web", "protocol": "http", "container_ports": [8000], "host_ports": [30001]},
            {"name": "echo", "protocol": "tcp", "container_ports": [7000], "host_ports": []},
        ]);
        assert_eq!(
            find_app(Some(&ports), Some("10.0.0.5"), "web").unwrap(),
            App { name: "web".into(), protocol: "http".into(), host: "10.0.0.5".into(), host_port: 30001 }
        );
        let err = find_app(Some(&ports), Some("10.0.0.5"), "jupyter").unwrap_err();
        assert_eq!(err.status(), StatusCode::NOT_FOUND);
        assert_eq!(err.msg(), Some(r#"the session has no app "jupyter" (it has ["web", "echo"])"#));
        assert_eq!(find_app(Some(&ports), Some("h"), "echo").unwrap_err().status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(find_app(Some(&ports), None, "web").unwrap_err().status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            find_app(None, Some("h"), "web").unwrap_err().msg(),
            Some(r#"the session has no app "web" (it has [])"#)
        );
    }
}
