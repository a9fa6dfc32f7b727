//! `/resource/*` (spec §9): resource presets, what a keypair may still allocate, and the
//! superadmin's usage recount.
//!
//! - `GET /resource/presets`: `{"presets": [{"name", "shared_memory", "resource_slots"}]}`;
//! - `POST /resource/check-presets` (optional `scaling_group`, `group` = `"default"`, from the
//!   query or a JSON body): the keypair's limits, usage and remaining slots, the remaining slots
//!   of each allowed scaling group, and each preset with `allocatable`;
//! - `POST /resource/recalculate-usage` (superadmin): recounts every agent's `occupied_slots`
//!   from its kernels and answers `{}`;
//! - `GET /resource/watcher?agent_id=ID`, `POST /resource/watcher/agent/start`, `…/stop`,
//!   `…/restart` with `{"agent_id": ID}` (superadmin): ask the agent's watcher
//!   ([`crate::watcher_client`], `[watcher]` in the configuration) for its status or to start,
//!   stop or restart the agent, and answer the watcher's status JSON. An unknown agent is 404
//!   `object-not-found`; a watcher that does not answer 503 `service-unavailable`; a watcher
//!   that answers an error (a wrong `[watcher] token`: 401) 502 `bad-gateway` with its status
//!   and answer in `data`; no `[watcher] token` 500 `server-misconfigured`.
//!
//! Slot values are decimal strings, `"Infinity"` for unlimited; the group figures are hidden as
//! `"NaN"`, as the original does unless `group_resource_visibility` is set.

use std::collections::{BTreeMap, BTreeSet};

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use bai_core::{AgentId, AgentStatus, Decimal, KernelStatus, KnownSlots, ResourceSlot, SessionStatus};
use sea_orm::{ColumnTrait, Condition, DatabaseConnection, EntityTrait, QueryFilter};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::{ApiError, ApiParams, ApiState, AuthContext, ErrorKind, SuperadminContext};
use crate::db::entities::{kernel, resource_preset, session};
use crate::db::repo;
use crate::db::types::{DefaultForUnspecified, Wire};
use crate::sessions::{db_error, known_slots};
use crate::watcher_client::{WatcherAction, WatcherClient, WatcherError};

/// The signed routes of this module.
pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/resource/presets", get(list_presets))
        .route("/resource/check-presets", post(check_presets))
        .route("/resource/recalculate-usage", post(recalculate_usage))
        .route("/resource/watcher", get(watcher_status))
        .route("/resource/watcher/agent/start", post(watcher_start))
        .route("/resource/watcher/agent/stop", post(watcher_stop))
        .route("/resource/watcher/agent/restart", post(watcher_restart))
}

/// An amount in a limit: a number, or unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Amount {
    Finite(Decimal),
    Unlimited,
}

impl Amount {
    fn min(self, other: Amount) -> Amount {
        match (self, other) {
            (Amount::Finite(a), Amount::Finite(b)) => Amount::Finite(a.min(b)),
            (Amount::Unlimited, x) | (x, Amount::Unlimited) => x,
        }
    }

    fn at_least(self, want: Decimal) -> bool {
        match self {
            Amount::Finite(have) => have >= want,
            Amount::Unlimited => true,
        }
    }

    fn render(self) -> Value {
        match self {
            Amount::Finite(d) => Value::String(d.normalize().to_string()),
            Amount::Unlimited => Value::String("Infinity".into()),
        }
    }
}

/// Limits per known slot.
type Limits = BTreeMap<String, Amount>;

/// The original's `ResourceSlot.from_policy`: the listed known slots, the other known slots
/// 0 (`LIMITED`) or unlimited (`UNLIMITED`).
fn limits_from_policy(total: &ResourceSlot, default: DefaultForUnspecified, known: &KnownSlots) -> Limits {
    known
        .iter()
        .map(|(name, _)| {
            let amount = if total.contains(name) {
                Amount::Finite(total.get(name))
            } else if default == DefaultForUnspecified::Limited {
                Amount::Finite(Decimal::ZERO)
            } else {
                Amount::Unlimited
            };
            (name.to_string(), amount)
        })
        .collect()
}

fn minus(limits: &Limits, using: &ResourceSlot) -> Limits {
    limits
        .iter()
        .map(|(name, amount)| {
            let left = match amount {
                Amount::Finite(d) => Amount::Finite(d.saturating_sub(using.get(name))),
                Amount::Unlimited => Amount::Unlimited,
            };
            (name.clone(), left)
        })
        .collect()
}

fn render_limits(limits: &Limits) -> Value {
    Value::Object(limits.iter().map(|(k, v)| (k.clone(), v.render())).collect())
}

/// Slots as `{slot: "decimal"}`, with every known slot present.
fn render_slots(slots: &ResourceSlot, known: &KnownSlots) -> Value {
    let slots = slots.normalize_ignoring_unknown(known);
    Value::Object(slots.iter().map(|(k, v)| (k.to_string(), Value::String(v.normalize().to_string()))).collect())
}

fn hidden(known: &KnownSlots) -> Value {
    Value::Object(known.iter().map(|(k, _)| (k.to_string(), Value::String("NaN".into()))).collect())
}

fn shared_memory(preset: &resource_preset::Model) -> Value {
    preset.shared_memory.map_or(Value::Null, |m| Value::String(m.to_string()))
}

fn database(state: &ApiState) -> Result<std::sync::Arc<DatabaseConnection>, ApiError> {
    state.require_service::<DatabaseConnection>()
}

#[derive(Debug, Default, Deserialize)]
struct PresetsParams {
    #[serde(default)]
    scaling_group: Option<String>,
}

/// `GET /resource/presets`: every resource preset (those of one scaling group and the global
/// ones with `?scaling_group=`), by name.
async fn list_presets(
    _ctx: AuthContext,
    State(state): State<ApiState>,
    ApiParams(params): ApiParams<PresetsParams>,
) -> Result<Json<Value>, ApiError> {
    let db = database(&state)?;
    let known = known_slots(&db).await?;
    let presets = repo::list_resource_presets(&*db, params.scaling_group.as_deref()).await.map_err(db_error)?;
    let presets: Vec<Value> = presets
        .iter()
        .map(|p| {
            json!({
                "name": p.name,
                "shared_memory": shared_memory(p),
                "resource_slots": render_slots(&p.resource_slots.0, &known),
            })
        })
        .collect();
    Ok(Json(json!({ "presets": presets })))
}

fn default_group() -> String {
    "default".into()
}

#[derive(Debug, Deserialize)]
struct CheckParams {
    #[serde(default)]
    scaling_group: Option<String>,
    #[serde(default = "default_group")]
    group: String,
}

/// What a session holds: its `occupying_slots` once set, else its `requested_slots` (what the
/// scheduler reserved for it).
fn held(s: &session::Model) -> &ResourceSlot {
    if s.occupying_slots.0.is_zero() {
        &s.requested_slots.0
    } else {
        &s.occupying_slots.0
    }
}

/// `POST /resource/check-presets`.
async fn check_presets(
    ctx: AuthContext,
    State(state): State<ApiState>,
    ApiParams(params): ApiParams<CheckParams>,
) -> Result<Json<Value>, ApiError> {
    let db = database(&state)?;
    let db = &*db;
    let cred = &ctx.credential;
    let known = known_slots(db).await?;

    // The group (project): by name in the caller's domain (or by id), and the caller a member.
    let group = match repo::find_group_by_name(db, &cred.domain_name, &params.group).await.map_err(db_error)? {
        Some(g) => Some(g),
        None => match params.group.parse::<uuid::Uuid>() {
            Ok(id) => repo::get_group(db, id).await.map_err(db_error)?.filter(|g| g.domain_name == cred.domain_name),
            Err(_) => None,
        },
    };
    let group = match group {
        Some(g) if repo::is_group_member(db, cred.user_id, g.id).await.map_err(db_error)? => g,
        _ => return Err(ApiError::with_kind_msg(ErrorKind::InvalidApiParameters, "Unknown user group")),
    };

    // The sessions holding resources of this keypair, user, group or domain.
    let sessions = session::Entity::find()
        .filter(
            Condition::any()
                .add(session::Column::DomainName.eq(cred.domain_name.as_str()))
                .add(session::Column::AccessKey.eq(cred.access_key.as_str()))
                .add(session::Column::UserUuid.eq(cred.user_id)),
        )
        .filter(session::Column::Status.is_not_in([
            Wire(SessionStatus::Pending),
            Wire(SessionStatus::Terminated),
            Wire(SessionStatus::Cancelled),
        ]))
        .all(db)
        .await
        .map_err(|e| ApiError::internal(format!("database: {e}")))?;
    let occupying = |s: &&session::Model| s.status.0.occupies_user_resources();
    let sum = |pick: &dyn Fn(&session::Model) -> bool| -> ResourceSlot {
        sessions.iter().filter(occupying).filter(|s| pick(s)).map(held).sum()
    };
    let keypair_using = sum(&|s| s.access_key.as_deref() == Some(cred.access_key.as_str()));
    let group_using = sum(&|s| s.group_id == group.id);
    let domain_using = sum(&|s| s.domain_name == cred.domain_name);

    // Limits: the keypair's resource policy, the group's and the domain's slots.
    let (kp_total, kp_default) =
        match repo::get_keypair_resource_policy(db, &cred.resource_policy).await.map_err(db_error)? {
            Some(p) => (p.total_resource_slots.0, p.default_for_unspecified.0),
            None => (ResourceSlot::new(), DefaultForUnspecified::Unlimited),
        };
    let keypair_limits = limits_from_policy(&kp_total, kp_default, &known);
    let group_limits = limits_from_policy(&group.total_resource_slots.0, DefaultForUnspecified::Unlimited, &known);
    let domain_total = repo::get_domain(db, &cred.domain_name)
        .await
        .map_err(db_error)?
        .map(|d| d.total_resource_slots.0)
        .unwrap_or_default();
    let domain_limits = limits_from_policy(&domain_total, DefaultForUnspecified::Unlimited, &known);
    let group_remaining = minus(&group_limits, &group_using);
    let domain_remaining = minus(&domain_limits, &domain_using);
    // As the original, the keypair's remaining slots are also capped by the group's and the
    // domain's.
    let keypair_remaining: Limits = minus(&keypair_limits, &keypair_using)
        .into_iter()
        .map(|(name, left)| {
            let capped = left.min(group_remaining[&name]).min(domain_remaining[&name]);
            (name, capped)
        })
        .collect();

    // The scaling groups the caller may use (or the one asked for).
    let allowed: Vec<String> = repo::allowed_scaling_groups(db, &cred.domain_name, group.id, &cred.access_key)
        .await
        .map_err(db_error)?
        .into_iter()
        .map(|g| g.name)
        .collect();
    let names: Vec<String> = match &params.scaling_group {
        Some(sg) if allowed.contains(sg) => vec![sg.clone()],
        Some(_) => return Err(ApiError::with_kind_msg(ErrorKind::InvalidApiParameters, "Unknown scaling group")),
        None => allowed,
    };
    let zero = ResourceSlot::new().normalize_ignoring_unknown(&known);
    let mut per_group: BTreeMap<String, (ResourceSlot, ResourceSlot)> =
        names.iter().map(|n| (n.clone(), (zero.clone(), zero.clone()))).collect();
    // What the caller's sessions hold in each group.
    for s in sessions.iter().filter(|s| s.user_uuid == cred.user_id && s.status.0.occupies_agent_resources()) {
        if let Some(entry) = s.scaling_group_name.as_ref().and_then(|sg| per_group.get_mut(sg)) {
            entry.0 += held(s);
        }
    }
    // What the ALIVE agents of each group have left.
    let mut agent_remaining = Vec::new();
    let mut total_remaining = zero.clone();
    for name in &names {
        for agent in repo::list_agents(db, Some(name), Some(AgentStatus::Alive)).await.map_err(db_error)? {
            let left = (&agent.available_slots.0 - &agent.occupied_slots.0).normalize_ignoring_unknown(&known);
            total_remaining += &left;
            if let Some(entry) = per_group.get_mut(name) {
                entry.1 += &left;
            }
            agent_remaining.push(left);
        }
    }
    let cap = |slots: &ResourceSlot| -> Value {
        Value::Object(
            slots
                .iter()
                .map(|(name, have)| {
                    let left =
                        keypair_remaining.get(name).copied().unwrap_or(Amount::Unlimited).min(Amount::Finite(have));
                    (name.to_string(), left.render())
                })
                .collect(),
        )
    };
    let scaling_groups: Map<String, Value> = per_group
        .iter()
        .map(|(name, (using, remaining))| {
            (name.clone(), json!({ "using": render_slots(using, &known), "remaining": cap(remaining) }))
        })
        .collect();

    // The presets, each allocatable when one agent has room for it and the keypair may take it.
    let presets = repo::list_resource_presets(db, params.scaling_group.as_deref()).await.map_err(db_error)?;
    let presets: Vec<Value> = presets
        .iter()
        .map(|p| {
            let slots = p.resource_slots.0.normalize_ignoring_unknown(&known);
            let within_limits =
                slots.iter().all(|(name, want)| keypair_remaining.get(name).is_none_or(|left| left.at_least(want)));
            let allocatable = within_limits && agent_remaining.iter().any(|left| slots.fits_in(left));
            json!({
                "name": p.name,
                "resource_slots": render_slots(&slots, &known),
                "shared_memory": shared_memory(p),
                "allocatable": allocatable,
            })
        })
        .collect();

    Ok(Json(json!({
        "keypair_limits": render_limits(&keypair_limits),
        "keypair_using": render_slots(&keypair_using, &known),
        "keypair_remaining": render_limits(&keypair_remaining),
        "group_limits": hidden(&known),
        "group_using": hidden(&known),
        "group_remaining": hidden(&known),
        "scaling_group_remaining": cap(&total_remaining),
        "scaling_groups": scaling_groups,
        "presets": presets,
    })))
}

/// `POST /resource/recalculate-usage` (superadmin): sets every agent's `occupied_slots` to what
/// its kernels in resource-holding statuses hold; answers `{}`.
async fn recalculate_usage(_ctx: SuperadminContext, State(state): State<ApiState>) -> Result<Json<Value>, ApiError> {
    let db = database(&state)?;
    let db = &*db;
    let kernels = kernel::Entity::find()
        .filter(kernel::Column::Agent.is_not_null())
        .filter(kernel::Column::Status.is_not_in([
            Wire(KernelStatus::Pending),
            Wire(KernelStatus::Terminated),
            Wire(KernelStatus::Cancelled),
        ]))
        .all(db)
        .await
        .map_err(|e| ApiError::internal(format!("database: {e}")))?;
    let mut per_agent: BTreeMap<String, ResourceSlot> = BTreeMap::new();
    for k in kernels.iter().filter(|k| k.status.0.occupies_agent_resources()) {
        let Some(agent) = &k.agent else { continue };
        let held = if k.occupied_slots.0.is_zero() { &k.requested_slots.0 } else { &k.occupied_slots.0 };
        *per_agent.entry(agent.clone()).or_default() += held;
    }
    let agents: BTreeSet<String> =
        repo::list_agents(db, None, None).await.map_err(db_error)?.into_iter().map(|a| a.id).collect();
    for id in agents {
        let occupied = per_agent.remove(&id).unwrap_or_default();
        let Ok(agent_id) = AgentId::new(&id) else { continue };
        repo::set_agent_occupied_slots(db, &agent_id, &occupied).await.map_err(db_error)?;
    }
    tracing::info!("recalculated the agents' resource usage");
    Ok(Json(json!({})))
}

#[derive(Debug, Deserialize)]
struct WatcherParams {
    agent_id: String,
}

/// `GET /resource/watcher?agent_id=` (superadmin): the agent's watcher's status.
async fn watcher_status(
    _ctx: SuperadminContext,
    State(state): State<ApiState>,
    ApiParams(params): ApiParams<WatcherParams>,
) -> Result<Json<Value>, ApiError> {
    call_watcher(&state, &params.agent_id, WatcherAction::Status).await
}

/// `POST /resource/watcher/agent/start` (superadmin): starts the agent; the watcher's status.
async fn watcher_start(
    _ctx: SuperadminContext,
    State(state): State<ApiState>,
    ApiParams(params): ApiParams<WatcherParams>,
) -> Result<Json<Value>, ApiError> {
    call_watcher(&state, &params.agent_id, WatcherAction::Start).await
}

/// `POST /resource/watcher/agent/stop` (superadmin): stops the agent; the watcher's status.
async fn watcher_stop(
    _ctx: SuperadminContext,
    State(state): State<ApiState>,
    ApiParams(params): ApiParams<WatcherParams>,
) -> Result<Json<Value>, ApiError> {
    call_watcher(&state, &params.agent_id, WatcherAction::Stop).await
}

/// `POST /resource/watcher/agent/restart` (superadmin): restarts the agent; the watcher's status.
async fn watcher_restart(
    _ctx: SuperadminContext,
    State(state): State<ApiState>,
    ApiParams(params): ApiParams<WatcherParams>,
) -> Result<Json<Value>, ApiError> {
    call_watcher(&state, &params.agent_id, WatcherAction::Restart).await
}

/// Finds the agent (any status: a LOST agent is what one restarts) and calls its watcher.
async fn call_watcher(state: &ApiState, agent_id: &str, action: WatcherAction) -> Result<Json<Value>, ApiError> {
    let watchers = state.require_service::<WatcherClient>()?;
    let db = database(state)?;
    let id = AgentId::new(agent_id).map_err(|e| ApiError::invalid("agent_id", e.to_string()))?;
    let agent = repo::get_agent(&*db, &id)
        .await
        .map_err(db_error)?
        .ok_or_else(|| ApiError::not_found("agent").with_msg(format!("agent {agent_id:?} is not registered")))?;
    tracing::info!(agent = %agent_id, action = action.path(), "calling the agent's watcher");
    match watchers.call(&agent.addr, action).await {
        Ok(status) => Ok(Json(status)),
        Err(e) => Err(watcher_error(agent_id, e)),
    }
}

fn watcher_error(agent_id: &str, e: WatcherError) -> ApiError {
    let msg = format!("agent {agent_id}: {e}");
    tracing::warn!(error = %msg, "watcher call failed");
    match e {
        WatcherError::NoToken => ApiError::misconfigured(msg),
        WatcherError::NoHost { .. } | WatcherError::Unreachable { .. } => ApiError::service_unavailable(msg),
        WatcherError::Status { url, status, body } => {
            let hint = if status == 401 { " (is [watcher] token the watcher's --token?)" } else { "" };
            ApiError::bad_gateway(format!("{msg}{hint}")).with_data(json!({
                "agent_id": agent_id,
                "url": url,
                "watcher_status": status,
                "watcher_response": body,
            }))
        }
        WatcherError::BadAnswer { url, .. } => {
            ApiError::bad_gateway(msg).with_data(json!({ "agent_id": agent_id, "url": url }))
        }
    }
}
