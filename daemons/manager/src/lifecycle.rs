//! What the manager does with events: the agent registry (heartbeats register and update
//! agents; `agent_started`/`agent_terminated` change their status; silent agents become LOST)
//! and the kernel lifecycle (agent events move kernels through their statuses, and a session's
//! status is derived from its kernels' as in the original).
//!
//! Handlers are idempotent: a redelivered event finds the row already in its target status
//! and changes nothing.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use bai_agent_runtime::bus::{Envelope, EventBus};
use bai_core::{
    derive_session_status, AgentId, AgentStatus, Event, KernelId, KernelStatus, ResourceSlot, SessionId, SessionStatus,
};
use chrono::{DateTime, Utc};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, Set};
use serde_json::{json, Value};

use crate::db::entities::{kernel, session};
use crate::db::repo;
use crate::db::repo::AgentHeartbeatRow;
use crate::db::types::{JsonOf, Wire};
use crate::db::DbError;
use crate::scheduler::recompute_agent_occupancy;

/// When each agent was last heard from. In one process this map is the truth; several
/// managers behind Redis share heartbeats through the consumer group, so each of them only
/// marks agents LOST that nobody has heard from (see [`Registry::sweep`]).
#[derive(Debug, Default)]
pub struct LastSeen {
    seen: Mutex<HashMap<String, DateTime<Utc>>>,
}

impl LastSeen {
    /// Records a heartbeat.
    pub fn touch(&self, agent: &str, at: DateTime<Utc>) {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).insert(agent.to_string(), at);
    }

    /// When `agent` was last heard from.
    pub fn get(&self, agent: &str) -> Option<DateTime<Utc>> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).get(agent).copied()
    }

    /// Forgets an agent.
    pub fn forget(&self, agent: &str) {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).remove(agent);
    }
}

/// Parses a heartbeat's `agent_info`; errors name the field.
pub fn heartbeat_row(source: &str, info: &Value) -> Result<AgentHeartbeatRow, DbError> {
    let text = |key: &str| info.get(key).and_then(Value::as_str).map(str::to_owned);
    let id = text("id").unwrap_or_else(|| source.to_string());
    let id = AgentId::new(&id).map_err(|e| DbError::invalid("agent_info.id", e.to_string()))?;
    let mut available = ResourceSlot::new();
    if let Some(slots) = info.get("resource_slots").and_then(Value::as_object) {
        for (name, value) in slots {
            // `{slot: [type, "amount"]}` as the original sends, or `{slot: "amount"}`.
            let amount = value.get(1).unwrap_or(value);
            let amount = match amount {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            let parsed: ResourceSlot = serde_json::from_value(json!({ name: amount }))
                .map_err(|e| DbError::invalid(format!("agent_info.resource_slots.{name}"), e.to_string()))?;
            available += &parsed;
        }
    }
    Ok(AgentHeartbeatRow {
        id,
        region: text("region").unwrap_or_default(),
        scaling_group: text("scaling_group").unwrap_or_else(|| "default".into()),
        available_slots: available,
        addr: text("addr").ok_or_else(|| DbError::invalid("agent_info.addr", "missing"))?,
        public_host: text("public_host"),
        public_key: text("public_key"),
        architecture: text("architecture").unwrap_or_else(|| std::env::consts::ARCH.into()),
        version: text("version").unwrap_or_default(),
        compute_plugins: info.get("compute_plugins").cloned().unwrap_or(json!({})),
        auto_terminate_abusing_kernel: info
            .get("auto_terminate_abusing_kernel")
            .and_then(Value::as_bool)
            .unwrap_or(false),
    })
}

/// The agent registry.
#[derive(Debug)]
pub struct Registry {
    last_seen: LastSeen,
    timeout: Duration,
    started: DateTime<Utc>,
}

impl Registry {
    /// A registry that marks agents LOST after `timeout` without a heartbeat.
    pub fn new(timeout: Duration, now: DateTime<Utc>) -> Self {
        Self { last_seen: LastSeen::default(), timeout, started: now }
    }

    /// When this registry last heard from `agent` (`None`: not since the manager started).
    pub fn last_seen(&self, agent: &str) -> Option<DateTime<Utc>> {
        self.last_seen.get(agent)
    }

    /// Registers or updates the agent of a heartbeat.
    pub async fn heartbeat(
        &self,
        db: &impl ConnectionTrait,
        source: &str,
        info: &Value,
        now: DateTime<Utc>,
    ) -> Result<(), DbError> {
        let row = heartbeat_row(source, info)?;
        let id = row.id.to_string();
        let outcome = repo::upsert_agent_from_heartbeat(db, row).await?;
        tracing::debug!(agent = %id, ?outcome, "heartbeat");
        self.last_seen.touch(&id, now);
        Ok(())
    }

    /// `agent_terminated`: `agent-lost` → LOST, `agent-restart` → RESTARTING, else TERMINATED.
    pub async fn terminated(&self, db: &impl ConnectionTrait, source: &str, reason: &str) -> Result<(), DbError> {
        let Ok(id) = AgentId::new(source) else { return Ok(()) };
        if repo::get_agent(db, &id).await?.is_none() {
            return Ok(());
        }
        let status = AgentStatus::after_termination(reason);
        repo::set_agent_status(db, &id, status).await?;
        if status != AgentStatus::Restarting {
            self.last_seen.forget(source);
        }
        Ok(())
    }

    /// `agent_started`: a known agent is ALIVE again.
    pub async fn started(&self, db: &impl ConnectionTrait, source: &str, now: DateTime<Utc>) -> Result<(), DbError> {
        let Ok(id) = AgentId::new(source) else { return Ok(()) };
        if repo::get_agent(db, &id).await?.is_some() {
            repo::set_agent_status(db, &id, AgentStatus::Alive).await?;
            self.last_seen.touch(source, now);
        }
        Ok(())
    }

    /// Marks ALIVE agents not heard from within the timeout (counted from this manager's start
    /// for agents it never heard from) as LOST, and returns them.
    pub async fn sweep(&self, db: &impl ConnectionTrait, now: DateTime<Utc>) -> Result<Vec<AgentId>, DbError> {
        let timeout = chrono::Duration::from_std(self.timeout).unwrap_or(chrono::Duration::MAX);
        let mut lost = Vec::new();
        for a in repo::list_agents(db, None, Some(AgentStatus::Alive)).await? {
            let last = self.last_seen.get(&a.id).unwrap_or(self.started);
            if now - last > timeout {
                let id = AgentId::new(&a.id).map_err(|e| DbError::invalid("agents.id", e.to_string()))?;
                repo::mark_agent_lost(db, &id).await?;
                self.last_seen.forget(&a.id);
                lost.push(id);
            }
        }
        Ok(lost)
    }
}

/// The kernel status an agent event moves a kernel to, and the intermediate statuses the
/// transition map requires on the way.
fn kernel_path(event: &Event) -> Option<&'static [KernelStatus]> {
    use KernelStatus as K;
    Some(match event {
        Event::KernelPreparing { .. } => &[K::Preparing],
        Event::KernelPulling { .. } => &[K::Pulling],
        Event::KernelCreating { .. } => &[K::Prepared, K::Creating],
        Event::KernelStarted { .. } => &[K::Running],
        Event::KernelTerminating { .. } => &[K::Terminating],
        Event::KernelTerminated { .. } => &[K::Terminated],
        Event::KernelCancelled { .. } => &[K::Cancelled],
        _ => return None,
    })
}

/// What [`apply_kernel_event`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KernelEventOutcome {
    /// Applied (or nothing to do); the session's new status when it changed.
    Applied(Option<SessionStatus>),
    /// A `kernel_started` for a kernel the database has as ended: the agent runs a kernel
    /// nobody wants any more (a creation that arrived after its session ended).
    StartedAfterEnd,
}

/// Applies a kernel lifecycle event and re-derives the session's status (see
/// [`apply_kernel_event`]); the session's new status when it changed.
pub async fn kernel_event(db: &impl ConnectionTrait, event: &Event) -> Result<Option<SessionStatus>, DbError> {
    Ok(match apply_kernel_event(db, event).await? {
        KernelEventOutcome::Applied(status) => status,
        KernelEventOutcome::StartedAfterEnd => None,
    })
}

/// Applies a kernel lifecycle event and re-derives the session's status. Unknown kernels are
/// ignored (a manager sees events of kernels it never created, e.g. after a database reset);
/// an ended kernel stays ended, and one that reports having started is flagged.
pub async fn apply_kernel_event(db: &impl ConnectionTrait, event: &Event) -> Result<KernelEventOutcome, DbError> {
    use KernelEventOutcome::Applied;
    let Some(path) = kernel_path(event) else { return Ok(Applied(None)) };
    let (kernel_id, session_id) = match event {
        Event::KernelPreparing { kernel_id, session_id, .. }
        | Event::KernelPulling { kernel_id, session_id, .. }
        | Event::KernelCreating { kernel_id, session_id, .. }
        | Event::KernelStarted { kernel_id, session_id, .. }
        | Event::KernelCancelled { kernel_id, session_id, .. }
        | Event::KernelTerminating { kernel_id, session_id, .. }
        | Event::KernelTerminated { kernel_id, session_id, .. } => (*kernel_id, *session_id),
        _ => return Ok(Applied(None)),
    };
    let Some(row) = repo::get_kernel(db, kernel_id).await? else { return Ok(Applied(None)) };
    let target = *path.last().unwrap_or(&row.status.0);
    let from = row.status.0;
    if from.is_terminal() {
        return Ok(match event {
            Event::KernelStarted { .. } => KernelEventOutcome::StartedAfterEnd,
            _ => Applied(None),
        });
    }
    if from == target {
        // A repeat (an agent announces the kernels it recovered again): nothing changes for
        // the kernel, but the session may lag behind it — a manager that died between the
        // kernel's and the session's update left it so.
        return update_session(db, session_id).await.map(Applied);
    }
    match event {
        Event::KernelStarted { creation_info, .. } => record_creation(db, kernel_id, creation_info).await?,
        Event::KernelTerminated { reason, exit_code, .. } => {
            kernel::Entity::update_many()
                .set(kernel::ActiveModel { exit_code: Set(Some(*exit_code)), ..Default::default() })
                .filter(kernel::Column::Id.eq(*kernel_id.as_uuid()))
                .exec(db)
                .await?;
            let data = json!({"kernel": {"exit_code": exit_code}});
            repo::force_kernel_status(db, kernel_id, KernelStatus::Terminated, Some(reason), Some(data)).await?;
            if let Some(agent) = &row.agent {
                recompute_agent_occupancy(db, agent).await?;
            }
            return update_session(db, session_id).await.map(Applied);
        }
        _ => {}
    }
    let reason = match event {
        Event::KernelTerminating { reason, .. } | Event::KernelCancelled { reason, .. } => Some(reason.as_str()),
        _ => None,
    };
    let mut status = from;
    for step in path {
        if *step == status {
            continue;
        }
        if status.can_transition_to(*step) {
            repo::set_kernel_status(db, kernel_id, *step, reason, None).await?;
        } else {
            // Events can skip steps the map wants (an image already present skips PULLING);
            // the agent is the authority on where its kernel is.
            repo::force_kernel_status(db, kernel_id, *step, reason, None).await?;
        }
        status = *step;
    }
    update_session(db, session_id).await.map(Applied)
}

async fn record_creation(db: &impl ConnectionTrait, kernel_id: KernelId, info: &Value) -> Result<(), DbError> {
    let mut update = kernel::ActiveModel::default();
    if let Some(cid) = info.get("container_id").and_then(Value::as_str) {
        update.container_id = Set(Some(cid.to_string()));
    }
    if let Some(host) = info.get("kernel_host").and_then(Value::as_str) {
        update.kernel_host = Set(Some(host.to_string()));
    }
    if let Some(ports) = info.get("service_ports") {
        update.service_ports = Set(Some(ports.clone()));
    }
    if let Some(spec) = info.get("resource_spec") {
        if let Some(slots) = spec.get("slots").and_then(|s| serde_json::from_value::<ResourceSlot>(s.clone()).ok()) {
            update.occupied_slots = Set(JsonOf(slots));
        }
        update.attached_devices = Set(spec.get("devices").cloned().unwrap_or(json!([])));
    }
    kernel::Entity::update_many().set(update).filter(kernel::Column::Id.eq(*kernel_id.as_uuid())).exec(db).await?;
    Ok(())
}

/// Re-derives a session's status from its kernels and stores it when it changed. RUNNING
/// also records the occupied slots.
pub async fn update_session(
    db: &impl ConnectionTrait,
    session_id: SessionId,
) -> Result<Option<SessionStatus>, DbError> {
    let Some((s, kernels)) = repo::get_session_with_kernels(db, session_id).await? else { return Ok(None) };
    if s.status.0.is_terminal() {
        return Ok(None);
    }
    let statuses: Vec<KernelStatus> = kernels.iter().map(|k| k.status.0).collect();
    let derived = match derive_session_status(&statuses) {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!(session = %session_id, error = %e, "cannot derive the session status");
            return Ok(None);
        }
    };
    if derived == s.status.0 {
        return Ok(None);
    }
    // Kernels start at their own pace; a session never shows less progress than it did (a
    // pull shown over a slower kernel's SCHEDULED is not taken back).
    if let (Some(now), Some(next)) = (s.status.0.creation_progress(), derived.creation_progress()) {
        if next < now {
            return Ok(None);
        }
    }
    if matches!(derived, SessionStatus::Running | SessionStatus::Creating) {
        let occupying: ResourceSlot = kernels.iter().map(|k| &k.occupied_slots.0).sum();
        session::Entity::update_many()
            .set(session::ActiveModel { occupying_slots: Set(JsonOf(occupying)), ..Default::default() })
            .filter(session::Column::Id.eq(*session_id.as_uuid()))
            .exec(db)
            .await?;
    }
    let main = kernels.iter().find(|k| k.cluster_role == "main").or(kernels.first());
    let info = if derived.is_dead() { main.and_then(|k| k.status_info.clone()) } else { None };
    repo::force_session_status(db, session_id, derived, info.as_deref(), None).await?;
    Ok(Some(derived))
}

/// A batch session ended: records its result and exit code.
pub async fn batch_result(db: &impl ConnectionTrait, session_id: SessionId, success: bool) -> Result<(), DbError> {
    use crate::db::types::SessionResult;
    let result = if success { SessionResult::Success } else { SessionResult::Failure };
    session::Entity::update_many()
        .set(session::ActiveModel { result: Set(Wire(result)), ..Default::default() })
        .filter(session::Column::Id.eq(*session_id.as_uuid()))
        .exec(db)
        .await?;
    Ok(())
}

/// Sends an event from the manager; failures are logged.
pub async fn emit(bus: &dyn EventBus, event: Event) {
    if let Err(e) = bus.produce(&Envelope::new("manager", event)).await {
        tracing::warn!(error = %e, "could not send an event");
    }
}
