//! `GET /events/session`: session and kernel lifecycle events as server-sent events
//! (`spec/client-wire.md` §6.7), for `backend.ai session events` and `session watch`.
//!
//! Query parameters (the original's, with both spellings of the owner key):
//! `sessionName` (`name`, default `*`), `sessionId` (wins over the name), `ownerAccessKey`
//! (`owner_access_key`, default the requester; users may only name themselves, else 403),
//! `group` (`groupName`, a project name, default `*`) and `scope` (`*`, `session` or
//! `kernel`).
//!
//! Each frame is `event: <name>` with `data: {"reason", "sessionName", "ownerAccessKey",
//! "sessionId", "exitCode"}` (plus `kernelId`, `clusterRole`, `clusterIdx` on kernel events).
//! Users see the events of their own sessions, domain admins those of their domain,
//! superadmins all. A stream about one session (by id or by name) ends after that session's
//! `session_terminated` or `session_cancelled` with `event: server_close` and `data: {}`, so
//! the client stops instead of reconnecting; a `*` stream runs until the client leaves.
//! Comment lines keep idle connections alive.
//!
//! `GET /events/background-task?taskId=<uuid>` (`task_id` is what the 23.09 client sends)
//! follows a background task ([`crate::bgtask`]): `bgtask_updated` frames as it progresses, then
//! one of `bgtask_done`, `bgtask_failed` or `bgtask_cancelled`, each with data
//! `{"task_id", "status", "current_progress", "total_progress", "message"}`, then
//! `server_close` `{}`. A task that already finished (and is still retained) answers its
//! outcome at once. Only its starter and superadmins may follow a task; an unknown or
//! forgotten task is 404.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::Uri;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use bai_agent_runtime::bus::EventStream;
use bai_core::{Event, KernelId, SessionId};
use futures::StreamExt;
use sea_orm::DatabaseConnection;
use serde_json::{json, Map, Value};
use uuid::Uuid;

use super::session::query_params;
use super::{ApiError, ApiState, AuthContext, Role};
use crate::db::repo;
use crate::manager::Manager;
use crate::sessions::{self, Fields};

/// The signed routes of this module.
pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/events/session", get(session_events))
        .route("/events/background-task", get(background_task_events))
}

/// Which events a stream carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// `*`: session and kernel events.
    All,
    /// `session`: only `session_*`.
    Session,
    /// `kernel`: only `kernel_*`.
    Kernel,
}

/// A parsed `GET /events/session` request.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionEventFilter {
    /// `sessionId`: only this session.
    pub session_id: Option<Uuid>,
    /// `sessionName`: only sessions of this name owned by `owner_access_key` (`*`: any).
    pub session_name: String,
    /// The owner a name refers to.
    pub owner_access_key: String,
    /// `group`: only sessions of this project (`None`: any).
    pub group_id: Option<Uuid>,
    /// `scope`.
    pub scope: Scope,
    /// The requester's role, user id and domain (visibility).
    pub role: Role,
    /// The requester's user id.
    pub user_id: Uuid,
    /// The requester's domain.
    pub domain_name: String,
}

impl SessionEventFilter {
    /// Whether the stream is about one session (and ends with it).
    pub fn single_session(&self) -> bool {
        self.session_id.is_some() || self.session_name != "*"
    }
}

/// What the filter needs to know about the session of an event.
#[derive(Debug, Clone)]
struct SessionFacts {
    id: Uuid,
    name: String,
    access_key: String,
    domain_name: String,
    user_id: Uuid,
    group_id: Uuid,
}

async fn parse_filter(db: &DatabaseConnection, ctx: &AuthContext, uri: &Uri) -> Result<SessionEventFilter, ApiError> {
    let query = query_params(uri);
    let f = Fields::new(&query, "");
    let session_name = f.string(&["sessionName", "name"])?.filter(|n| !n.is_empty()).unwrap_or_else(|| "*".into());
    let session_id = match f.string(&["sessionId"])?.filter(|s| !s.is_empty()) {
        Some(id) => Some(
            Uuid::parse_str(id.trim())
                .map_err(|e| ApiError::invalid("sessionId", format!("{id:?} is not a UUID: {e}")))?,
        ),
        None => None,
    };
    let owner_access_key = f
        .string(&["ownerAccessKey", "owner_access_key"])?
        .filter(|k| !k.is_empty())
        .unwrap_or_else(|| ctx.access_key().to_string());
    if ctx.role() == Role::User && owner_access_key != ctx.access_key() {
        return Err(ApiError::forbidden("Only admins can watch the sessions of other users."));
    }
    let scope = match f.string(&["scope"])?.as_deref() {
        None | Some("*") | Some("") => Scope::All,
        Some("session") => Scope::Session,
        Some("kernel") => Scope::Kernel,
        Some(other) => return Err(ApiError::invalid("scope", format!("{other:?} is not one of *, session, kernel"))),
    };
    let group_id = match f.string(&["group", "groupName"])?.filter(|g| !g.is_empty() && g != "*") {
        None => None,
        Some(name) => {
            let mut found =
                repo::find_group_by_name(db, &ctx.credential.domain_name, &name).await.map_err(sessions::db_error)?;
            if found.is_none() {
                found =
                    repo::list_groups(db, None).await.map_err(sessions::db_error)?.into_iter().find(|g| g.name == name);
            }
            Some(found.ok_or_else(|| ApiError::not_found("group"))?.id)
        }
    };
    Ok(SessionEventFilter {
        session_id,
        session_name,
        owner_access_key,
        group_id,
        scope,
        role: ctx.role(),
        user_id: ctx.credential.user_id,
        domain_name: ctx.credential.domain_name.clone(),
    })
}

/// The reason and exit code an event carries for the client.
fn reason_and_exit(event: &Event) -> (String, Option<i32>) {
    match event {
        Event::KernelPreparing { reason, .. }
        | Event::KernelPulling { reason, .. }
        | Event::KernelCreating { reason, .. }
        | Event::KernelStarted { reason, .. }
        | Event::KernelCancelled { reason, .. }
        | Event::SessionEnqueued { reason, .. }
        | Event::SessionScheduled { reason, .. }
        | Event::SessionPreparing { reason, .. }
        | Event::SessionCancelled { reason, .. }
        | Event::SessionStarted { reason, .. }
        | Event::SessionTerminating { reason, .. }
        | Event::SessionTerminated { reason, .. } => (reason.clone(), None),
        Event::KernelTerminating { reason, exit_code, .. }
        | Event::KernelTerminated { reason, exit_code, .. }
        | Event::SessionSuccess { reason, exit_code, .. }
        | Event::SessionFailure { reason, exit_code, .. } => (reason.clone(), Some(*exit_code)),
        _ => (String::new(), None),
    }
}

fn kernel_of(event: &Event) -> Option<KernelId> {
    match event {
        Event::KernelPreparing { kernel_id, .. }
        | Event::KernelPulling { kernel_id, .. }
        | Event::KernelCreating { kernel_id, .. }
        | Event::KernelStarted { kernel_id, .. }
        | Event::KernelCancelled { kernel_id, .. }
        | Event::KernelTerminating { kernel_id, .. }
        | Event::KernelTerminated { kernel_id, .. } => Some(*kernel_id),
        _ => None,
    }
}

struct Pump {
    db: DatabaseConnection,
    bus: EventStream,
    filter: SessionEventFilter,
    sessions: HashMap<Uuid, Option<SessionFacts>>,
    kernels: HashMap<KernelId, Option<(String, i32)>>,
    ending: Ending,
}

impl Pump {
    async fn facts(&mut self, id: SessionId) -> Option<SessionFacts> {
        let key = *id.as_uuid();
        if let Some(known) = self.sessions.get(&key) {
            return known.clone();
        }
        let facts = match repo::get_session(&self.db, id).await {
            Ok(Some(s)) => Some(SessionFacts {
                id: s.id,
                name: s.name,
                access_key: s.access_key.unwrap_or_default(),
                domain_name: s.domain_name,
                user_id: s.user_uuid,
                group_id: s.group_id,
            }),
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(session = %id, error = %e, "session events: cannot read the session");
                return None;
            }
        };
        if self.sessions.len() > 10_000 {
            self.sessions.clear();
        }
        self.sessions.insert(key, facts.clone());
        facts
    }

    async fn kernel_position(&mut self, id: KernelId) -> Option<(String, i32)> {
        if let Some(known) = self.kernels.get(&id) {
            return known.clone();
        }
        let found = repo::get_kernel(&self.db, id).await.ok().flatten().map(|k| (k.cluster_role, k.cluster_idx));
        if self.kernels.len() > 10_000 {
            self.kernels.clear();
        }
        self.kernels.insert(id, found.clone());
        found
    }

    fn visible(&self, s: &SessionFacts) -> bool {
        let f = &self.filter;
        let allowed = match f.role {
            Role::Superadmin => true,
            Role::Admin => s.domain_name == f.domain_name,
            Role::User => s.user_id == f.user_id && s.domain_name == f.domain_name,
        };
        if !allowed || f.group_id.is_some_and(|g| g != s.group_id) {
            return false;
        }
        match f.session_id {
            Some(id) => s.id == id,
            None => f.session_name == "*" || (s.name == f.session_name && s.access_key == f.owner_access_key),
        }
    }

    /// The next frame to send, or `None` when the stream ends.
    async fn next_frame(&mut self) -> Option<SseEvent> {
        if let Some(last) = self.ending.step() {
            return last;
        }
        loop {
            let envelope = match self.bus.next().await? {
                Ok(envelope) => envelope,
                Err(e) => {
                    tracing::debug!(error = %e, "session events: missed some events");
                    continue;
                }
            };
            let event = &envelope.event;
            let Some(name) = sessions::client_event_name(event) else { continue };
            let is_kernel = name.starts_with("kernel_");
            match self.filter.scope {
                Scope::Session if is_kernel => continue,
                Scope::Kernel if !is_kernel => continue,
                _ => {}
            }
            let Some(session_id) = event.session_id() else { continue };
            let Some(facts) = self.facts(session_id).await else { continue };
            if !self.visible(&facts) {
                continue;
            }
            let (reason, exit_code) = reason_and_exit(event);
            let mut data = Map::new();
            data.insert("reason".into(), Value::String(reason));
            data.insert("sessionName".into(), Value::String(facts.name.clone()));
            data.insert("ownerAccessKey".into(), Value::String(facts.access_key.clone()));
            data.insert("sessionId".into(), Value::String(facts.id.to_string()));
            data.insert("exitCode".into(), exit_code.map_or(Value::Null, |c| json!(c)));
            if let Some(kernel_id) = kernel_of(event) {
                data.insert("kernelId".into(), Value::String(kernel_id.to_string()));
                if let Some((role, idx)) = self.kernel_position(kernel_id).await {
                    data.insert("clusterRole".into(), Value::String(role));
                    if idx != 0 {
                        data.insert("clusterIdx".into(), json!(idx));
                    }
                }
            }
            if self.filter.single_session() && matches!(name, "session_terminated" | "session_cancelled") {
                self.ending.closing = true;
            }
            return Some(SseEvent::default().event(name).data(Value::Object(data).to_string()));
        }
    }
}

async fn session_events(ctx: AuthContext, State(state): State<ApiState>, uri: Uri) -> Result<Response, ApiError> {
    let manager: Arc<Manager> = state.require_service::<Manager>()?;
    let db = manager.db().clone();
    let filter = parse_filter(&db, &ctx, &uri).await?;
    tracing::info!(access_key = ctx.access_key(), session = %filter.session_name, id = ?filter.session_id, "session events stream opened");
    let bus = manager.bus().subscribe().await.map_err(|e| ApiError::service_unavailable(format!("event bus: {e}")))?;
    let pump = Pump { db, bus, filter, sessions: HashMap::new(), kernels: HashMap::new(), ending: Ending::default() };
    Ok(sse(pump))
}

/// How an event stream ends: after the frame that closes it, one `server_close` frame (as the
/// original sends), then nothing.
#[derive(Default)]
struct Ending {
    closing: bool,
    done: bool,
}

impl Ending {
    /// `Some(last)` once the stream is closing: the `server_close` frame the first time, `None`
    /// (the end) after it; `None` while the stream goes on.
    fn step(&mut self) -> Option<Option<SseEvent>> {
        if self.done {
            return Some(None);
        }
        if self.closing {
            self.done = true;
            return Some(Some(server_close()));
        }
        None
    }
}

fn server_close() -> SseEvent {
    SseEvent::default().event("server_close").data("{}")
}

/// A source of SSE frames; `None` ends the stream.
trait Frames: Send + 'static {
    fn next_frame(&mut self) -> impl std::future::Future<Output = Option<SseEvent>> + Send;
}

impl Frames for Pump {
    fn next_frame(&mut self) -> impl std::future::Future<Output = Option<SseEvent>> + Send {
        Pump::next_frame(self)
    }
}

impl Frames for TaskPump {
    fn next_frame(&mut self) -> impl std::future::Future<Output = Option<SseEvent>> + Send {
        TaskPump::next_frame(self)
    }
}

/// The streaming response of `frames`, with a `ping` comment every 15 s.
fn sse(frames: impl Frames) -> Response {
    let stream = futures::stream::unfold(frames, |mut frames| async move {
        let frame = frames.next_frame().await?;
        Some((Ok::<_, Infallible>(frame), frames))
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)).text("ping")).into_response()
}

/// Where a background-task stream is.
struct TaskPump {
    state: tokio::sync::watch::Receiver<crate::bgtask::TaskState>,
    first: bool,
    ending: Ending,
}

impl TaskPump {
    fn frame(&mut self, state: &crate::bgtask::TaskState) -> SseEvent {
        if state.status.is_finished() {
            self.ending.closing = true;
        }
        SseEvent::default().event(state.status.event_name()).data(state.to_json().to_string())
    }

    async fn next_frame(&mut self) -> Option<SseEvent> {
        if let Some(last) = self.ending.step() {
            return last;
        }
        if self.first {
            self.first = false;
            let state = self.state.borrow_and_update().clone();
            if state.status.is_finished() {
                return Some(self.frame(&state));
            }
        }
        // A running task's state is sent on its next change, as the original does: the 23.09
        // CLI's progress display breaks on a `bgtask_updated` that arrives with the response's
        // headers, before its spinner has started.
        if self.state.changed().await.is_err() {
            // The task was forgotten without a final state (cannot happen while it is retained).
            self.ending.done = true;
            return Some(server_close());
        }
        let state = self.state.borrow_and_update().clone();
        Some(self.frame(&state))
    }
}

async fn background_task_events(
    ctx: AuthContext,
    State(state): State<ApiState>,
    uri: Uri,
) -> Result<Response, ApiError> {
    let manager: Arc<Manager> = state.require_service::<Manager>()?;
    let query = query_params(&uri);
    let f = Fields::new(&query, "");
    let raw = f
        .string(&["taskId", "task_id"])?
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| ApiError::invalid("taskId", "is required"))?;
    let id =
        Uuid::parse_str(raw.trim()).map_err(|e| ApiError::invalid("taskId", format!("{raw:?} is not a UUID: {e}")))?;
    let subscription = manager.bgtasks().subscribe(id).ok_or_else(|| ApiError::not_found("background task"))?;
    if ctx.role() != Role::Superadmin && subscription.owner.is_some_and(|owner| owner != ctx.credential.user_id) {
        return Err(ApiError::not_found("background task"));
    }
    tracing::info!(access_key = ctx.access_key(), task = %id, "background task stream opened");
    Ok(sse(TaskPump { state: subscription.state, first: true, ending: Ending::default() }))
}
