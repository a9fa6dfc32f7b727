//! The compute-session REST API (`spec/client-wire.md` §6.1–§6.5).
//!
//! | route | what |
//! |---|---|
//! | `POST /session`, `POST /session/_/create` | create (or reuse) a session, [`sessions::create_session`] |
//! | `GET /session/{ref}` | information (camelCase keys, slots as Python-repr strings) |
//! | `DELETE /session/{ref}` | destroy (`forced`, `recursive`, `owner_access_key`) → `{"stats": …}` |
//! | `PATCH /session/{ref}` | restart the kernels in place → 204 |
//! | `POST /session/{ref}` | execute code (`query`, `batch`, `continue`, `input`, legacy `complete`) |
//! | `GET /session/{ref}/logs` | the main kernel's container logs → `{"result": {"logs"}}` |
//! | `GET /session/{ref}/status-history` | `{"result": {STATUS: iso time}}` |
//! | `POST /session/{ref}/rename?name=NEW` | rename a RUNNING session → 204 |
//! | `POST /session/{ref}/interrupt` | interrupt running code → 204 |
//! | `POST /session/{ref}/complete` | code completion (none) → `{"result": {"status", "completions"}}` |
//! | `GET /session/{ref}/files` | list a directory → `{"files": "<JSON text>", "errors", "abspath"}` |
//! | `POST /session/{ref}/upload` | multipart upload (≤ 20 files under 1 MiB) → 204 |
//! | `GET /session/{ref}/download` | files as tar archives in a `multipart/mixed` body |
//!
//! Parameters come from the JSON body when there is one, else from the query (§2); the query's
//! `owner_access_key` applies to every route. Users see only their own sessions: another
//! user's session is 404 "No such session." (see [`sessions::find_session`]).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, FromRequest, Multipart, Path, Request, State};
use axum::http::{header, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bai_agent_runtime::rpc::pb;
use bai_core::{SessionId, SessionStatus};
use chrono::Utc;
use sea_orm::{ActiveValue::Set, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter};
use serde_json::{json, Map, Value};

use super::extract::parse_json;
use super::{ApiError, ApiJson, ApiState, AuthContext};
use crate::db::entities::{kernel, session, session_dependency};
use crate::manager::Manager;
use crate::sessions::{self, Fields};

/// The signed routes of this module.
pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/session", post(create))
        .route("/session/_/create", post(create))
        .route("/session/{reference}", get(info).delete(destroy).patch(restart).post(execute))
        .route("/session/{reference}/logs", get(logs))
        .route("/session/{reference}/status-history", get(status_history))
        .route("/session/{reference}/rename", post(rename))
        .route("/session/{reference}/interrupt", post(interrupt))
        .route("/session/{reference}/complete", post(complete))
        .route("/session/{reference}/files", get(list_files))
        .route("/session/{reference}/upload", post(upload).layer(DefaultBodyLimit::max(MAX_UPLOAD_BODY)))
        .route("/session/{reference}/download", get(download))
}

/// The most files one upload may carry (the original's limit).
pub const MAX_UPLOAD_FILES: usize = 20;
/// Each uploaded file must be smaller than this (the original's limit).
pub const MAX_UPLOAD_FILE_SIZE: usize = 1 << 20;
/// The most files one download may ask for (the original's limit).
pub const MAX_DOWNLOAD_FILES: usize = 5;
const MAX_UPLOAD_BODY: usize = MAX_UPLOAD_FILES * MAX_UPLOAD_FILE_SIZE + (1 << 20);

/// Request parameters as the original reads them: the JSON body's object when the body is not
/// empty, with the query's parameters (as strings) filling in keys the body does not have.
#[derive(Debug, Clone, Default)]
pub struct Params(pub Map<String, Value>);

impl Params {
    /// The fields, for typed reading.
    pub fn fields(&self) -> Fields<'_> {
        Fields::new(&self.0, "")
    }

    /// `owner_access_key` (also spelled `ownerAccessKey`).
    pub fn owner_access_key(&self) -> Result<Option<String>, ApiError> {
        Ok(self.fields().string(&["owner_access_key", "ownerAccessKey"])?.filter(|k| !k.is_empty()))
    }
}

/// The query string's parameters as JSON strings (the last of repeated keys wins).
pub fn query_params(uri: &Uri) -> Map<String, Value> {
    form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
        .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
        .collect()
}

impl FromRequest<ApiState> for Params {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &ApiState) -> Result<Self, ApiError> {
        let mut params = query_params(req.uri());
        let bytes = super::extract::read_body(req, state).await?;
        if !bytes.iter().all(u8::is_ascii_whitespace) {
            match parse_json::<Value>(&bytes)? {
                Value::Object(body) => params.extend(body),
                other => return Err(ApiError::invalid("body", format!("expected a JSON object, got {other}"))),
            }
        }
        Ok(Params(params))
    }
}

fn manager(state: &ApiState) -> Result<Arc<Manager>, ApiError> {
    state.require_service::<Manager>()
}

async fn create(
    ctx: AuthContext,
    State(state): State<ApiState>,
    ApiJson(body): ApiJson<Value>,
) -> Result<Response, ApiError> {
    let manager = manager(&state)?;
    let request = sessions::CreateRequest::from_json(&body, Utc::now())?;
    let created = sessions::create_session(&manager, &ctx, request).await?;
    Ok((StatusCode::CREATED, Json(created.body)).into_response())
}

/// A JSON value as Python's `str()` prints it (the original's `str(dict)` fields).
pub fn py_repr(value: &Value) -> String {
    fn quote(s: &str) -> String {
        let mut out = String::with_capacity(s.len() + 2);
        out.push('\'');
        for c in s.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '\'' => out.push_str("\\'"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                c if (c as u32) < 0x20 => out.push_str(&format!("\\x{:02x}", c as u32)),
                c => out.push(c),
            }
        }
        out.push('\'');
        out
    }
    match value {
        Value::Null => "None".into(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => quote(s),
        Value::Array(items) => format!("[{}]", items.iter().map(py_repr).collect::<Vec<_>>().join(", ")),
        Value::Object(map) => {
            format!(
                "{{{}}}",
                map.iter().map(|(k, v)| format!("{}: {}", quote(k), py_repr(v))).collect::<Vec<_>>().join(", ")
            )
        }
    }
}

/// A time as Python's `str(datetime)` prints it: `2024-05-01 12:34:56.123456+00:00`.
fn py_time(at: chrono::DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M:%S%.6f+00:00").to_string()
}

async fn info(
    ctx: AuthContext,
    State(state): State<ApiState>,
    Path(reference): Path<String>,
    params: Params,
) -> Result<Json<Value>, ApiError> {
    let manager = manager(&state)?;
    let db = manager.db();
    let owner = params.owner_access_key()?;
    let (s, k) = sessions::find_session_with_main_kernel(db, &ctx, &reference, owner.as_deref(), false).await?;
    let slots = |v: &bai_core::ResourceSlot| py_repr(&serde_json::to_value(v).unwrap_or(Value::Null));
    let age = (Utc::now() - s.created_at).num_milliseconds().max(0);
    Ok(Json(json!({
        "sessionId": s.id.to_string(),
        "sessionName": s.name,
        "domainName": s.domain_name,
        "groupId": s.group_id.to_string(),
        "userId": s.user_uuid.to_string(),
        "lang": k.as_ref().and_then(|k| k.image.clone()),
        "image": k.as_ref().and_then(|k| k.image.clone()),
        "architecture": k.as_ref().map(|k| k.architecture.clone()),
        "registry": k.as_ref().and_then(|k| k.registry.clone()),
        "tag": s.tag,
        "containerId": k.as_ref().and_then(|k| k.container_id.clone()).unwrap_or_else(|| "None".into()),
        "occupiedSlots": k.as_ref().map(|k| slots(&k.occupied_slots.0)).unwrap_or_else(|| "{}".into()),
        "occupyingSlots": slots(&s.occupying_slots.0),
        "requestedSlots": slots(&s.requested_slots.0),
        "occupiedShares": k.as_ref().map(|k| py_repr(&k.occupied_shares)).unwrap_or_else(|| "{}".into()),
        "environ": py_repr(&s.environ),
        "resourceOpts": k.as_ref().map(|k| py_repr(&k.resource_opts)).unwrap_or_else(|| "{}".into()),
        "status": s.status.0.as_str(),
        "statusInfo": s.status_info.clone().unwrap_or_else(|| "None".into()),
        "statusData": s.status_data,
        "age": age,
        "creationTime": py_time(s.created_at),
        "terminationTime": s.terminated_at.map(py_time),
        "numQueriesExecuted": s.num_queries,
        "lastStat": k.as_ref().and_then(|k| k.last_stat.clone()).or(s.last_stat.clone()),
        "idleChecks": crate::idle::report(&manager, &s).await.map_err(sessions::db_error)?,
    })))
}

/// The statuses a session may not be destroyed from without `forced` (403 in the original).
fn needs_force(status: SessionStatus) -> bool {
    use SessionStatus as S;
    matches!(status, S::Scheduled | S::Preparing | S::Pulling | S::Prepared | S::Creating | S::Terminating | S::Error)
}

/// The sessions that depend on `root`, transitively.
async fn dependents(db: &DatabaseConnection, root: uuid::Uuid) -> Result<Vec<uuid::Uuid>, ApiError> {
    let mut found = Vec::new();
    let mut frontier = vec![root];
    while let Some(id) = frontier.pop() {
        let rows = session_dependency::Entity::find()
            .filter(session_dependency::Column::DependsOn.eq(id))
            .all(db)
            .await
            .map_err(|e| sessions::db_error(e.into()))?;
        for row in rows {
            if row.session_id != root && !found.contains(&row.session_id) {
                found.push(row.session_id);
                frontier.push(row.session_id);
            }
        }
    }
    Ok(found)
}

async fn destroy_one(manager: &Manager, s: &session::Model, forced: bool) -> Result<Value, ApiError> {
    if !forced && needs_force(s.status.0) {
        return Err(ApiError::forbidden(format!(
            "The session is {}; it can only be destroyed with forced=true.",
            s.status.0
        )));
    }
    let status = manager
        .destroy_session(SessionId::from_uuid(s.id), forced, "user-requested")
        .await
        .map_err(sessions::db_error)?;
    tracing::info!(session = %s.id, %status, forced, "session destroyed on request");
    // A PENDING session the scheduler placed while it was being cancelled keeps its agent's
    // slots counted (the cancel does not recompute them): give them back.
    if status.is_terminal() {
        let kernels = crate::db::repo::list_kernels_of_session(manager.db(), SessionId::from_uuid(s.id))
            .await
            .map_err(sessions::db_error)?;
        let agents: std::collections::BTreeSet<String> = kernels.into_iter().filter_map(|k| k.agent).collect();
        for agent in agents {
            if let Err(e) = crate::scheduler::recompute_agent_occupancy(manager.db(), &agent).await {
                tracing::warn!(agent = %agent, error = %e, "could not recompute the agent's occupied slots");
            }
        }
    }
    // The CLI's stats printer (`-s`) pops `status` and reads the rest as version-1 integers
    // unless `version` is 2 with complete metrics; the manager keeps no statistics, so the
    // answer is the minimal one it always accepts.
    let mut stats = Map::new();
    stats.insert("status".into(), Value::String(status.as_str().to_ascii_lowercase()));
    Ok(Value::Object(stats))
}

async fn destroy(
    ctx: AuthContext,
    State(state): State<ApiState>,
    Path(reference): Path<String>,
    params: Params,
) -> Result<Response, ApiError> {
    let manager = manager(&state)?;
    let db = manager.db();
    let f = params.fields();
    let forced = f.boolean(&["forced"], false)?;
    let recursive = f.boolean(&["recursive"], false)?;
    let owner = params.owner_access_key()?;
    let s = sessions::find_session(db, &ctx, &reference, owner.as_deref(), false).await?;
    if !recursive {
        let stats = destroy_one(&manager, &s, forced).await?;
        return Ok(Json(json!({ "stats": stats })).into_response());
    }
    let mut all = Vec::new();
    for id in dependents(db, s.id).await? {
        if let Some(dep) =
            crate::db::repo::get_session(db, SessionId::from_uuid(id)).await.map_err(sessions::db_error)?
        {
            if dep.status.0.is_terminal() {
                continue;
            }
            match destroy_one(&manager, &dep, forced).await {
                Ok(stats) => all.push(stats),
                Err(e) => tracing::info!(session = %id, error = %e, "dependent session left alone"),
            }
        }
    }
    all.push(destroy_one(&manager, &s, forced).await?);
    Ok(Json(Value::Array(all)).into_response())
}

async fn restart(
    ctx: AuthContext,
    State(state): State<ApiState>,
    Path(reference): Path<String>,
    params: Params,
) -> Result<StatusCode, ApiError> {
    let manager = manager(&state)?;
    let db = manager.db();
    let s = sessions::find_session(db, &ctx, &reference, params.owner_access_key()?.as_deref(), false).await?;
    let kernels =
        crate::db::repo::list_kernels_of_session(db, SessionId::from_uuid(s.id)).await.map_err(sessions::db_error)?;
    for k in kernels.iter().filter(|k| !k.status.0.is_terminal()) {
        let mut client = sessions::kernel_client(&manager, k)?;
        client
            .restart_kernel(pb::RestartKernelRequest { session_id: s.id.to_string(), kernel_id: k.id.to_string() })
            .await
            .map_err(sessions::agent_error)?;
    }
    tracing::info!(session = %s.id, "session restarted on request");
    Ok(StatusCode::NO_CONTENT)
}

async fn execute(
    ctx: AuthContext,
    State(state): State<ApiState>,
    Path(reference): Path<String>,
    uri: Uri,
    ApiJson(body): ApiJson<Value>,
) -> Result<Json<Value>, ApiError> {
    let manager = manager(&state)?;
    let Value::Object(map) = &body else {
        return Err(ApiError::invalid("body", "expected a JSON object"));
    };
    let query = query_params(&uri);
    let owner = Fields::new(&query, "").string(&["owner_access_key"])?;
    let s = sessions::find_session(manager.db(), &ctx, &reference, owner.as_deref(), false).await?;
    let f = Fields::new(map, "");
    let mode = f
        .string(&["mode"])?
        .filter(|m| !m.is_empty())
        .ok_or_else(|| ApiError::invalid("mode", "is missing or empty"))?;
    let code = f.string(&["code"])?.unwrap_or_default();
    let run_id = f.string(&["runId"])?.filter(|r| !r.is_empty());
    let options = f.get(&["options"]).cloned().unwrap_or_else(|| json!({}));
    match mode.as_str() {
        "complete" => return Ok(Json(json!({"result": {"status": "finished", "completions": []}}))),
        "continue" | "input" if run_id.is_none() => {
            return Err(ApiError::invalid("runId", "continuation requires explicit run ID"));
        }
        "query" | "batch" | "continue" | "input" => {}
        other => {
            return Err(ApiError::invalid(
                "mode",
                format!("{other:?} is not one of query, batch, complete, continue, input"),
            ));
        }
    }
    let run_id = run_id.unwrap_or_else(|| sessions::random_hex(8));
    let result = sessions::execute(&manager, &s, &mode, &run_id, &code, &options, 2.0).await?;
    Ok(Json(json!({ "result": result })))
}

async fn logs(
    ctx: AuthContext,
    State(state): State<ApiState>,
    Path(reference): Path<String>,
    params: Params,
) -> Result<Json<Value>, ApiError> {
    let manager = manager(&state)?;
    let db = manager.db();
    let s = sessions::find_session(db, &ctx, &reference, params.owner_access_key()?.as_deref(), true).await?;
    let k = sessions::main_kernel(db, s.id).await?;
    let dead = s.status.0.is_dead() || k.status.0.is_terminal();
    let logs = match sessions::kernel_client(&manager, &k) {
        Ok(mut client) => match client.get_logs(pb::KernelRequest { kernel_id: k.id.to_string() }).await {
            Ok(reply) => reply.into_inner().logs,
            // The container is gone with its logs (they are not kept after termination).
            Err(status) if dead || status.code() == tonic::Code::NotFound => String::new(),
            Err(status) => return Err(sessions::agent_error(status)),
        },
        Err(_) if dead => String::new(),
        Err(e) => return Err(e),
    };
    Ok(Json(json!({"result": {"logs": logs}})))
}

async fn status_history(
    ctx: AuthContext,
    State(state): State<ApiState>,
    Path(reference): Path<String>,
    params: Params,
) -> Result<Json<Value>, ApiError> {
    let manager = manager(&state)?;
    let s = sessions::find_session(manager.db(), &ctx, &reference, params.owner_access_key()?.as_deref(), true).await?;
    Ok(Json(json!({"result": s.status_history})))
}

async fn rename(
    ctx: AuthContext,
    State(state): State<ApiState>,
    Path(reference): Path<String>,
    params: Params,
) -> Result<StatusCode, ApiError> {
    let manager = manager(&state)?;
    let db = manager.db();
    let new_name = params
        .fields()
        .string(&["name", "session_name", "clientSessionToken"])?
        .ok_or_else(|| ApiError::invalid("name", "is required"))?;
    sessions::validate_session_name(&new_name).map_err(|r| ApiError::invalid("name", r))?;
    let s = sessions::find_session(db, &ctx, &reference, params.owner_access_key()?.as_deref(), false).await?;
    if s.status.0 != SessionStatus::Running {
        return Err(ApiError::invalid("name", "Can't change name of not running session"));
    }
    if new_name != s.name {
        let clash = crate::db::repo::match_sessions(db, s.access_key.as_deref(), &new_name, false)
            .await
            .map_err(sessions::db_error)?;
        if let Some(other) = clash.iter().find(|o| o.name == new_name && o.id != s.id) {
            return Err(ApiError::session_already_exists(other.id));
        }
    }
    let fail = |e: sea_orm::DbErr| sessions::db_error(e.into());
    session::Entity::update_many()
        .set(session::ActiveModel { name: Set(new_name.clone()), ..Default::default() })
        .filter(session::Column::Id.eq(s.id))
        .exec(db)
        .await
        .map_err(fail)?;
    kernel::Entity::update_many()
        .set(kernel::ActiveModel { session_name: Set(Some(new_name.clone())), ..Default::default() })
        .filter(kernel::Column::SessionId.eq(s.id))
        .exec(db)
        .await
        .map_err(fail)?;
    tracing::info!(session = %s.id, from = %s.name, to = %new_name, "session renamed");
    Ok(StatusCode::NO_CONTENT)
}

async fn interrupt(
    ctx: AuthContext,
    State(state): State<ApiState>,
    Path(reference): Path<String>,
    uri: Uri,
) -> Result<StatusCode, ApiError> {
    let manager = manager(&state)?;
    let db = manager.db();
    let query = query_params(&uri);
    let owner = Fields::new(&query, "").string(&["owner_access_key"])?;
    let s = sessions::find_session(db, &ctx, &reference, owner.as_deref(), false).await?;
    let k = sessions::main_kernel(db, s.id).await?;
    let mut client = sessions::kernel_client(&manager, &k)?;
    client.interrupt_kernel(pb::KernelRequest { kernel_id: k.id.to_string() }).await.map_err(sessions::agent_error)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn complete(
    ctx: AuthContext,
    State(state): State<ApiState>,
    Path(reference): Path<String>,
    params: Params,
) -> Result<Json<Value>, ApiError> {
    let manager = manager(&state)?;
    sessions::find_session(manager.db(), &ctx, &reference, params.owner_access_key()?.as_deref(), false).await?;
    // The agents have no completion engine: the original's empty answer.
    Ok(Json(json!({"result": {"status": "finished", "completions": []}})))
}

/// `ls -l`'s mode string for permission bits and a file type.
pub fn mode_string(mode: u32, is_dir: bool, is_symlink: bool) -> String {
    let mut out = String::with_capacity(10);
    out.push(if is_symlink {
        'l'
    } else if is_dir {
        'd'
    } else {
        '-'
    });
    for shift in [6u32, 3, 0] {
        let bits = (mode >> shift) & 0o7;
        out.push(if bits & 4 != 0 { 'r' } else { '-' });
        out.push(if bits & 2 != 0 { 'w' } else { '-' });
        out.push(if bits & 1 != 0 { 'x' } else { '-' });
    }
    out
}

async fn list_files(
    ctx: AuthContext,
    State(state): State<ApiState>,
    Path(reference): Path<String>,
    params: Params,
) -> Result<Json<Value>, ApiError> {
    let manager = manager(&state)?;
    let db = manager.db();
    let path = params.fields().string(&["path"])?.unwrap_or_else(|| ".".into());
    let s = sessions::find_session(db, &ctx, &reference, params.owner_access_key()?.as_deref(), false).await?;
    manager.idle().touch(SessionId::from_uuid(s.id));
    let k = sessions::main_kernel(db, s.id).await?;
    let mut client = sessions::kernel_client(&manager, &k)?;
    let agent_path = if path == "." { String::new() } else { path.clone() };
    let reply = client
        .list_files(pb::ListFilesRequest { kernel_id: k.id.to_string(), path: agent_path })
        .await
        .map_err(|status| match status.code() {
            tonic::Code::InvalidArgument => ApiError::invalid("path", status.message().to_string()),
            _ => sessions::agent_error(status),
        })?
        .into_inner();
    let files: Vec<Value> = reply
        .files
        .iter()
        .map(|f| {
            json!({
                "filename": f.filename,
                "size": f.size,
                "mode": mode_string(f.mode, f.is_dir, f.is_symlink),
                "mtime": f.mtime,
                "ctime": f.mtime,
                "atime": f.mtime,
            })
        })
        .collect();
    Ok(Json(json!({
        "files": Value::Array(files).to_string(),
        "errors": reply.errors.join("\n"),
        "abspath": reply.abspath,
    })))
}

async fn upload(
    ctx: AuthContext,
    State(state): State<ApiState>,
    Path(reference): Path<String>,
    uri: Uri,
    mut multipart: Multipart,
) -> Result<StatusCode, ApiError> {
    let manager = manager(&state)?;
    let db = manager.db();
    let query = query_params(&uri);
    let owner = Fields::new(&query, "").string(&["owner_access_key"])?;
    let s = sessions::find_session(db, &ctx, &reference, owner.as_deref(), false).await?;
    let _activity = manager.idle().connection(SessionId::from_uuid(s.id));
    let k = sessions::main_kernel(db, s.id).await?;
    let mut files = Vec::new();
    while let Some(field) = multipart.next_field().await.map_err(|e| ApiError::invalid("body", e.body_text()))? {
        if files.len() == MAX_UPLOAD_FILES {
            return Err(ApiError::invalid("src", format!("Too many files (at most {MAX_UPLOAD_FILES})")));
        }
        let raw_name = field.file_name().unwrap_or_default().to_string();
        let name = percent_encoding::percent_decode_str(&raw_name).decode_utf8_lossy().into_owned();
        if name.trim().is_empty() {
            return Err(ApiError::invalid("src", "a part has no file name"));
        }
        let content = field.bytes().await.map_err(|e| ApiError::invalid("src", e.body_text()))?;
        if content.len() >= MAX_UPLOAD_FILE_SIZE {
            return Err(ApiError::invalid("src", format!("Too large file: {name} (files must be under 1 MiB)")));
        }
        files.push((name, content));
    }
    let mut client = sessions::kernel_client(&manager, &k)?;
    for (name, content) in files {
        client
            .upload_file(pb::UploadFileRequest {
                kernel_id: k.id.to_string(),
                path: name.clone(),
                content: content.to_vec(),
            })
            .await
            .map_err(|status| match status.code() {
                tonic::Code::InvalidArgument => ApiError::invalid("src", format!("{name}: {}", status.message())),
                _ => sessions::agent_error(status),
            })?;
    }
    Ok(StatusCode::NO_CONTENT)
}

async fn download(
    ctx: AuthContext,
    State(state): State<ApiState>,
    Path(reference): Path<String>,
    params: Params,
) -> Result<Response, ApiError> {
    let manager = manager(&state)?;
    let db = manager.db();
    let names: Vec<String> = match params.fields().get(&["files"]) {
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, v)| {
                v.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| ApiError::invalid(format!("files[{i}]"), "expected a path"))
            })
            .collect::<Result<_, _>>()?,
        Some(Value::String(one)) => vec![one.clone()],
        Some(other) => return Err(ApiError::invalid("files", format!("expected a list of paths, got {other}"))),
        None => return Err(ApiError::invalid("files", "is required")),
    };
    if names.is_empty() {
        return Err(ApiError::invalid("files", "is empty"));
    }
    if names.len() > MAX_DOWNLOAD_FILES {
        return Err(ApiError::invalid("files", format!("Too many files (at most {MAX_DOWNLOAD_FILES})")));
    }
    let s = sessions::find_session(db, &ctx, &reference, params.owner_access_key()?.as_deref(), false).await?;
    let _activity = manager.idle().connection(SessionId::from_uuid(s.id));
    let k = sessions::main_kernel(db, s.id).await?;
    let mut client = sessions::kernel_client(&manager, &k)?;
    let boundary = sessions::random_hex(16);
    let mut body = Vec::new();
    for name in &names {
        let tar = client
            .download_file(pb::DownloadFileRequest { kernel_id: k.id.to_string(), path: name.clone() })
            .await
            .map_err(|status| match status.code() {
                tonic::Code::InvalidArgument | tonic::Code::NotFound => {
                    ApiError::invalid("files", format!("The file is not found: {name} ({})", status.message()))
                }
                _ => sessions::agent_error(status),
            })?
            .into_inner()
            .tar;
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n", tar.len())
                .as_bytes(),
        );
        body.extend_from_slice(&tar);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    let mut response = Response::new(Body::from(body));
    let content_type = HeaderValue::from_str(&format!("multipart/mixed; boundary={boundary}"))
        .map_err(|e| ApiError::internal(format!("content type: {e}")))?;
    response.headers_mut().insert(header::CONTENT_TYPE, content_type);
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_repr() {
        assert_eq!(py_repr(&json!({"cpu": "1", "x": [true, null, 2]})), "{'cpu': '1', 'x': [True, None, 2]}");
        assert_eq!(py_repr(&json!("it's")), r"'it\'s'");
    }

    #[test]
    fn mode_strings() {
        assert_eq!(mode_string(0o644, false, false), "-rw-r--r--");
        assert_eq!(mode_string(0o755, true, false), "drwxr-xr-x");
        assert_eq!(mode_string(0o777, false, true), "lrwxrwxrwx");
    }
}
