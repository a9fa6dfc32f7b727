//! Sessions and kernels: enqueue, lookup, listing, status changes, placement.

use std::collections::HashMap;

use bai_core::{AgentId, KernelId, KernelStatus, ResourceSlot, SessionId, SessionStatus};
use chrono::Utc;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect, TransactionTrait,
};
use uuid::Uuid;

use super::insert_new;
use crate::db::entities::{agent, iso_timestamp, kernel, session, FillDefaults};
use crate::db::types::{JsonOf, Wire};
use crate::db::{DbError, Result};

/// Copies `value` into `field` when the field is unset.
fn inherit<V: Into<sea_orm::Value> + Clone>(field: &mut sea_orm::ActiveValue<V>, value: &sea_orm::ActiveValue<V>) {
    if field.is_not_set() {
        if let Some(v) = value.try_as_ref() {
            *field = Set(v.clone());
        }
    }
}

/// Enqueues a session with its kernels, atomically.
///
/// Unset columns get their defaults (a new id, PENDING, `status_history = {"PENDING": now}`,
/// priority 10, …). Each kernel inherits from the session what it leaves unset: the session
/// id, name, type, cluster mode and size, owner (domain, group, user, access key) and creation
/// time. The session's `cluster_size` becomes the number of kernels; when its
/// `requested_slots` is unset it becomes the sum of the kernels'. A session needs at least
/// one kernel and exactly one `main` kernel.
pub async fn insert_session_with_kernels<C: ConnectionTrait + TransactionTrait>(
    db: &C,
    mut session_row: session::ActiveModel,
    mut kernel_rows: Vec<kernel::ActiveModel>,
) -> Result<(session::Model, Vec<kernel::Model>)> {
    if kernel_rows.is_empty() {
        return Err(DbError::invalid("kernels", "a session needs at least one kernel"));
    }
    let now = Utc::now();
    let sum_requested = session_row.requested_slots.is_not_set();
    session_row.fill_defaults(now);
    session_row.cluster_size = Set(kernel_rows.len() as i32);
    for k in &mut kernel_rows {
        k.session_id = Set(*session_row.id.as_ref());
        inherit(&mut k.session_creation_id, &session_row.creation_id);
        if k.session_name.is_not_set() {
            k.session_name = Set(Some(session_row.name.try_as_ref().cloned().unwrap_or_default()));
        }
        inherit(&mut k.session_type, &session_row.session_type);
        inherit(&mut k.cluster_mode, &session_row.cluster_mode);
        inherit(&mut k.cluster_size, &session_row.cluster_size);
        inherit(&mut k.domain_name, &session_row.domain_name);
        inherit(&mut k.group_id, &session_row.group_id);
        inherit(&mut k.user_uuid, &session_row.user_uuid);
        inherit(&mut k.access_key, &session_row.access_key);
        inherit(&mut k.created_at, &session_row.created_at);
        inherit(&mut k.starts_at, &session_row.starts_at);
        k.fill_defaults(now);
    }
    let mains = kernel_rows.iter().filter(|k| k.cluster_role.as_ref() == "main").count();
    if mains != 1 {
        return Err(DbError::invalid("kernels", format!("a session needs exactly one main kernel, got {mains}")));
    }
    if sum_requested {
        let total: ResourceSlot = kernel_rows.iter().map(|k| &k.requested_slots.as_ref().0).sum();
        session_row.requested_slots = Set(JsonOf(total));
    }
    let session_id = *session_row.id.as_ref();
    let txn = db.begin().await?;
    let inserted = async {
        let session = insert_new(&txn, session_row, format!("session {session_id}")).await?;
        let mut kernels = Vec::with_capacity(kernel_rows.len());
        for k in kernel_rows {
            let what = format!("kernel {}", k.id.as_ref());
            kernels.push(insert_new(&txn, k, what).await?);
        }
        Ok::<_, DbError>((session, kernels))
    }
    .await;
    match inserted {
        Ok(rows) => {
            txn.commit().await?;
            Ok(rows)
        }
        Err(e) => {
            txn.rollback().await?;
            Err(e)
        }
    }
}

/// The session with this id.
pub async fn get_session(db: &impl ConnectionTrait, id: SessionId) -> Result<Option<session::Model>> {
    Ok(session::Entity::find_by_id(*id.as_uuid()).one(db).await?)
}

/// The kernel with this id.
pub async fn get_kernel(db: &impl ConnectionTrait, id: KernelId) -> Result<Option<kernel::Model>> {
    Ok(kernel::Entity::find_by_id(*id.as_uuid()).one(db).await?)
}

/// The kernels of a session: the main kernel first, then by role and index.
pub async fn list_kernels_of_session(db: &impl ConnectionTrait, id: SessionId) -> Result<Vec<kernel::Model>> {
    let mut kernels = kernel::Entity::find()
        .filter(kernel::Column::SessionId.eq(*id.as_uuid()))
        .order_by_asc(kernel::Column::ClusterRole)
        .order_by_asc(kernel::Column::ClusterIdx)
        .all(db)
        .await?;
    kernels.sort_by_key(|k| k.cluster_role != "main");
    Ok(kernels)
}

/// The session with this id and its kernels (main kernel first).
pub async fn get_session_with_kernels(
    db: &impl ConnectionTrait,
    id: SessionId,
) -> Result<Option<(session::Model, Vec<kernel::Model>)>> {
    let Some(session) = get_session(db, id).await? else {
        return Ok(None);
    };
    let kernels = list_kernels_of_session(db, id).await?;
    Ok(Some((session, kernels)))
}

fn not_dead() -> Condition {
    Condition::all()
        .add(session::Column::Status.is_not_in([Wire(SessionStatus::Terminated), Wire(SessionStatus::Cancelled)]))
}

/// The sessions a user's reference (`{ref}` in the API) matches, as the original resolves
/// it: when `reference` is a UUID, the session with that id; otherwise, or when none has it,
/// the sessions with that exact name. Only sessions of `access_key` count (any owner when
/// `None`, for administrators), and only live ones (not TERMINATED nor CANCELLED) unless
/// `include_dead`. Newest first.
pub async fn match_sessions(
    db: &impl ConnectionTrait,
    access_key: Option<&str>,
    reference: &str,
    include_dead: bool,
) -> Result<Vec<session::Model>> {
    let mut scope = Condition::all();
    if let Some(access_key) = access_key {
        scope = scope.add(session::Column::AccessKey.eq(access_key));
    }
    if !include_dead {
        scope = scope.add(not_dead());
    }
    let newest_first = |q: sea_orm::Select<session::Entity>| {
        q.order_by_desc(session::Column::CreatedAt).order_by_desc(session::Column::Id)
    };
    if let Ok(id) = Uuid::parse_str(reference.trim()) {
        let by_id = session::Entity::find().filter(scope.clone()).filter(session::Column::Id.eq(id)).all(db).await?;
        if !by_id.is_empty() {
            return Ok(by_id);
        }
    }
    Ok(newest_first(session::Entity::find().filter(scope).filter(session::Column::Name.eq(reference))).all(db).await?)
}

/// The one live session `reference` (a name or an id) designates among `access_key`'s
/// sessions (any owner's when `None`). None is [`DbError::NotFound`]; several are
/// [`DbError::Conflict`] (the API's `too-many-sessions-matched`).
pub async fn find_session_by_name_or_id(
    db: &impl ConnectionTrait,
    access_key: Option<&str>,
    reference: &str,
) -> Result<session::Model> {
    let mut matches = match_sessions(db, access_key, reference, false).await?;
    match matches.len() {
        0 => Err(DbError::not_found("session", reference)),
        1 => Ok(matches.remove(0)),
        n => Err(DbError::conflict(format!("{n} sessions match {reference:?}; use the session id"))),
    }
}

/// Which sessions [`list_sessions`] returns. The default lists every session, 20 at a time.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionFilter {
    /// Only the sessions of this keypair.
    pub access_key: Option<String>,
    /// Only the sessions of this domain.
    pub domain_name: Option<String>,
    /// Only the sessions of this group (project).
    pub group_id: Option<Uuid>,
    /// Only sessions in one of these statuses (empty: any status).
    pub statuses: Vec<SessionStatus>,
    /// At most this many rows.
    pub limit: u64,
    /// Skip this many rows first.
    pub offset: u64,
}

impl Default for SessionFilter {
    fn default() -> Self {
        Self { access_key: None, domain_name: None, group_id: None, statuses: Vec::new(), limit: 20, offset: 0 }
    }
}

/// One page of sessions, newest first, with the total number of sessions the filter
/// matches (the GraphQL `total_count`, exact).
pub async fn list_sessions(db: &impl ConnectionTrait, filter: &SessionFilter) -> Result<(Vec<session::Model>, u64)> {
    let mut condition = Condition::all();
    if let Some(access_key) = &filter.access_key {
        condition = condition.add(session::Column::AccessKey.eq(access_key.as_str()));
    }
    if let Some(domain_name) = &filter.domain_name {
        condition = condition.add(session::Column::DomainName.eq(domain_name.as_str()));
    }
    if let Some(group_id) = filter.group_id {
        condition = condition.add(session::Column::GroupId.eq(group_id));
    }
    if !filter.statuses.is_empty() {
        condition = condition.add(session::Column::Status.is_in(filter.statuses.iter().map(|s| Wire(*s))));
    }
    let total = session::Entity::find().filter(condition.clone()).count(db).await?;
    let rows = session::Entity::find()
        .filter(condition)
        .order_by_desc(session::Column::CreatedAt)
        .order_by_desc(session::Column::Id)
        .limit(filter.limit)
        .offset(filter.offset)
        .all(db)
        .await?;
    Ok((rows, total))
}

/// The PENDING sessions of a scaling group, oldest first, each with its kernels (main
/// first): the scheduler's queue.
pub async fn pending_sessions(
    db: &impl ConnectionTrait,
    scaling_group: &str,
) -> Result<Vec<(session::Model, Vec<kernel::Model>)>> {
    let sessions = session::Entity::find()
        .filter(session::Column::ScalingGroupName.eq(scaling_group))
        .filter(session::Column::Status.eq(Wire(SessionStatus::Pending)))
        .order_by_asc(session::Column::CreatedAt)
        .order_by_asc(session::Column::Id)
        .all(db)
        .await?;
    if sessions.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<Uuid> = sessions.iter().map(|s| s.id).collect();
    let mut by_session: HashMap<Uuid, Vec<kernel::Model>> = HashMap::new();
    for chunk in ids.chunks(500) {
        for k in kernel::Entity::find()
            .filter(kernel::Column::SessionId.is_in(chunk.iter().copied()))
            .order_by_asc(kernel::Column::ClusterRole)
            .order_by_asc(kernel::Column::ClusterIdx)
            .all(db)
            .await?
        {
            by_session.entry(k.session_id).or_default().push(k);
        }
    }
    Ok(sessions
        .into_iter()
        .map(|s| {
            let mut kernels = by_session.remove(&s.id).unwrap_or_default();
            kernels.sort_by_key(|k| k.cluster_role != "main");
            (s, kernels)
        })
        .collect())
}

/// The status history with `status` entered at `at`.
fn append_history(history: &serde_json::Value, status: &str, at: chrono::DateTime<Utc>) -> serde_json::Value {
    let mut map = history.as_object().cloned().unwrap_or_default();
    map.insert(status.to_string(), serde_json::Value::String(iso_timestamp(at)));
    serde_json::Value::Object(map)
}

/// How a status change treats the transition map.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Check {
    Map,
    None,
}

async fn change_session_status(
    db: &impl ConnectionTrait,
    id: SessionId,
    to: SessionStatus,
    status_info: Option<&str>,
    status_data: Option<serde_json::Value>,
    check: Check,
) -> Result<session::Model> {
    for _ in 0..3 {
        let mut row = get_session(db, id).await?.ok_or_else(|| DbError::not_found("session", id))?;
        let from = row.status.0;
        if check == Check::Map && from.transition(to).is_err() {
            return Err(DbError::conflict(format!("session {id}: illegal status transition from {from} to {to}")));
        }
        let now = Utc::now();
        row.status = Wire(to);
        row.status_changed = Some(now);
        row.status_history = append_history(&row.status_history, to.as_str(), now);
        let mut update = session::ActiveModel {
            status: Set(row.status),
            status_changed: Set(row.status_changed),
            status_history: Set(row.status_history.clone()),
            ..Default::default()
        };
        if let Some(info) = status_info {
            row.status_info = Some(info.to_string());
            update.status_info = Set(row.status_info.clone());
        }
        if let Some(data) = status_data.clone() {
            row.status_data = Some(data);
            update.status_data = Set(row.status_data.clone());
        }
        if to.is_terminal() {
            row.terminated_at = Some(now);
            update.terminated_at = Set(row.terminated_at);
        }
        let result = session::Entity::update_many()
            .set(update)
            .filter(session::Column::Id.eq(*id.as_uuid()))
            .filter(session::Column::Status.eq(Wire(from)))
            .exec(db)
            .await?;
        if result.rows_affected == 1 {
            return Ok(row);
        }
    }
    Err(DbError::conflict(format!("session {id}: its status kept changing concurrently")))
}

/// Moves a session to `to` if the original's session transition map allows it from the
/// current status; otherwise [`DbError::Conflict`] naming both statuses, and nothing changes.
///
/// Writes `status`, `status_changed` and `status_history[to] = now` (ISO 8601); writes
/// `status_info` and `status_data` only when given; sets `terminated_at` for TERMINATED and
/// CANCELLED. The write is conditional on the status read, so concurrent changes cannot both
/// apply. Answers the updated row.
pub async fn set_session_status(
    db: &impl ConnectionTrait,
    id: SessionId,
    to: SessionStatus,
    status_info: Option<&str>,
    status_data: Option<serde_json::Value>,
) -> Result<session::Model> {
    change_session_status(db, id, to, status_info, status_data, Check::Map).await
}

/// Like [`set_session_status`] without the transition map, as the original's scheduler sets
/// statuses in its bulk steps (PREPARED → CREATING has no edge in the map, for instance).
pub async fn force_session_status(
    db: &impl ConnectionTrait,
    id: SessionId,
    to: SessionStatus,
    status_info: Option<&str>,
    status_data: Option<serde_json::Value>,
) -> Result<session::Model> {
    change_session_status(db, id, to, status_info, status_data, Check::None).await
}

async fn change_kernel_status(
    db: &impl ConnectionTrait,
    id: KernelId,
    to: KernelStatus,
    status_info: Option<&str>,
    status_data: Option<serde_json::Value>,
    check: Check,
) -> Result<kernel::Model> {
    for _ in 0..3 {
        let mut row = get_kernel(db, id).await?.ok_or_else(|| DbError::not_found("kernel", id))?;
        let from = row.status.0;
        if check == Check::Map && from.transition(to).is_err() {
            return Err(DbError::conflict(format!("kernel {id}: illegal status transition from {from} to {to}")));
        }
        let now = Utc::now();
        row.status = Wire(to);
        row.status_changed = Some(now);
        row.status_history = append_history(&row.status_history, to.as_str(), now);
        let mut update = kernel::ActiveModel {
            status: Set(row.status),
            status_changed: Set(row.status_changed),
            status_history: Set(row.status_history.clone()),
            ..Default::default()
        };
        if let Some(info) = status_info {
            row.status_info = Some(info.to_string());
            update.status_info = Set(row.status_info.clone());
        }
        if let Some(data) = status_data.clone() {
            row.status_data = Some(data);
            update.status_data = Set(row.status_data.clone());
        }
        if to.is_terminal() {
            row.terminated_at = Some(now);
            update.terminated_at = Set(row.terminated_at);
        }
        let result = kernel::Entity::update_many()
            .set(update)
            .filter(kernel::Column::Id.eq(*id.as_uuid()))
            .filter(kernel::Column::Status.eq(Wire(from)))
            .exec(db)
            .await?;
        if result.rows_affected == 1 {
            return Ok(row);
        }
    }
    Err(DbError::conflict(format!("kernel {id}: its status kept changing concurrently")))
}

/// Moves a kernel to `to` if the original's kernel transition map allows it; otherwise
/// [`DbError::Conflict`] naming both statuses, and nothing changes. Writes the same columns
/// as [`set_session_status`]. Answers the updated row.
pub async fn set_kernel_status(
    db: &impl ConnectionTrait,
    id: KernelId,
    to: KernelStatus,
    status_info: Option<&str>,
    status_data: Option<serde_json::Value>,
) -> Result<kernel::Model> {
    change_kernel_status(db, id, to, status_info, status_data, Check::Map).await
}

/// Like [`set_kernel_status`] without the transition map (the scheduler's bulk steps).
pub async fn force_kernel_status(
    db: &impl ConnectionTrait,
    id: KernelId,
    to: KernelStatus,
    status_info: Option<&str>,
    status_data: Option<serde_json::Value>,
) -> Result<kernel::Model> {
    change_kernel_status(db, id, to, status_info, status_data, Check::None).await
}

/// Places a kernel on an agent: writes the kernel's `agent`, `agent_addr` and
/// `scaling_group` from the agent's row, and adds the agent to its session's `agent_ids`.
/// Statuses and occupied slots are left to the caller.
pub async fn assign_kernel_agent(
    db: &impl ConnectionTrait,
    kernel_id: KernelId,
    agent_id: &AgentId,
) -> Result<kernel::Model> {
    let target = agent::Entity::find_by_id(agent_id.as_str())
        .one(db)
        .await?
        .ok_or_else(|| DbError::not_found("agent", agent_id))?;
    let mut row = get_kernel(db, kernel_id).await?.ok_or_else(|| DbError::not_found("kernel", kernel_id))?;
    row.agent = Some(target.id.clone());
    row.agent_addr = Some(target.addr.clone());
    row.scaling_group = Some(target.scaling_group.clone());
    kernel::Entity::update_many()
        .set(kernel::ActiveModel {
            agent: Set(row.agent.clone()),
            agent_addr: Set(row.agent_addr.clone()),
            scaling_group: Set(row.scaling_group.clone()),
            ..Default::default()
        })
        .filter(kernel::Column::Id.eq(row.id))
        .exec(db)
        .await?;
    if let Some(session) = session::Entity::find_by_id(row.session_id).one(db).await? {
        let mut ids = session.agent_ids.map(JsonOf::into_inner).unwrap_or_default();
        if !ids.contains(&target.id) {
            ids.push(target.id.clone());
            session::Entity::update_many()
                .set(session::ActiveModel { agent_ids: Set(Some(JsonOf(ids))), ..Default::default() })
                .filter(session::Column::Id.eq(session.id))
                .exec(db)
                .await?;
        }
    }
    Ok(row)
}
