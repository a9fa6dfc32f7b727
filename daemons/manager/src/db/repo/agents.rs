//! Agents: heartbeats, liveness, capacity.

use bai_core::{AgentId, AgentStatus, ResourceSlot};
use chrono::Utc;
use sea_orm::sea_query::OnConflict;
use sea_orm::{ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder};

use crate::db::entities::{agent, scaling_group, FillDefaults};
use crate::db::types::{JsonOf, Wire};
use crate::db::{DbError, Result};

/// What a heartbeat tells about an agent: everything the manager stores except
/// `occupied_slots`, which is never taken from a heartbeat.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentHeartbeatRow {
    /// The agent's id.
    pub id: AgentId,
    /// The region the node is in.
    pub region: String,
    /// The scaling group the agent serves; it must exist.
    pub scaling_group: String,
    /// The node's capacity.
    pub available_slots: ResourceSlot,
    /// The RPC address.
    pub addr: String,
    /// The host name users reach service ports at.
    pub public_host: Option<String>,
    /// The agent's public key for encrypted RPC.
    pub public_key: Option<String>,
    /// The machine architecture.
    pub architecture: String,
    /// The agent's version.
    pub version: String,
    /// The accelerator plugins and their metadata.
    pub compute_plugins: serde_json::Value,
    /// Whether the agent kills kernels reported as abusive.
    pub auto_terminate_abusing_kernel: bool,
}

impl AgentHeartbeatRow {
    /// An agent of this machine's architecture in region `local`, with no public host or key,
    /// no accelerators and version `sim` (tests, simulations and benchmarks register agents
    /// this way; set the fields to change the rest).
    pub fn new(id: AgentId, scaling_group: &str, available_slots: ResourceSlot, addr: &str) -> Self {
        Self {
            id,
            region: "local".into(),
            scaling_group: scaling_group.into(),
            available_slots,
            addr: addr.into(),
            public_host: None,
            public_key: None,
            architecture: std::env::consts::ARCH.into(),
            version: "sim".into(),
            compute_plugins: serde_json::json!({}),
            auto_terminate_abusing_kernel: false,
        }
    }
}

/// What a heartbeat did to the agent's row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpsertOutcome {
    /// The agent was unknown: it was inserted ALIVE with nothing occupied (the original
    /// then emits `agent_started`).
    Inserted,
    /// The agent was LOST, TERMINATED or RESTARTING and is ALIVE again (the original emits
    /// `agent_started("revived")`).
    Revived {
        /// The status it had.
        previous: AgentStatus,
    },
    /// The agent was ALIVE; its fields were refreshed.
    Updated {
        /// Whether any field differed from the stored row.
        changed: bool,
    },
}

/// The heartbeat's fields as an update (status and timestamps untouched).
fn heartbeat_fields(hb: &AgentHeartbeatRow) -> agent::ActiveModel {
    agent::ActiveModel {
        region: Set(hb.region.clone()),
        scaling_group: Set(hb.scaling_group.clone()),
        available_slots: Set(JsonOf(hb.available_slots.clone())),
        addr: Set(hb.addr.clone()),
        public_host: Set(hb.public_host.clone()),
        public_key: Set(hb.public_key.clone()),
        architecture: Set(hb.architecture.clone()),
        version: Set(hb.version.clone()),
        compute_plugins: Set(hb.compute_plugins.clone()),
        auto_terminate_abusing_kernel: Set(hb.auto_terminate_abusing_kernel),
        ..Default::default()
    }
}

fn differs(row: &agent::Model, hb: &AgentHeartbeatRow) -> bool {
    row.region != hb.region
        || row.scaling_group != hb.scaling_group
        || row.available_slots.0 != hb.available_slots
        || row.addr != hb.addr
        || row.public_host != hb.public_host
        || row.public_key != hb.public_key
        || row.architecture != hb.architecture
        || row.version != hb.version
        || row.compute_plugins != hb.compute_plugins
        || row.auto_terminate_abusing_kernel != hb.auto_terminate_abusing_kernel
}

/// Records a heartbeat, as the original does (scheduler-agent notes §2.6): an unknown agent
/// is inserted ALIVE with `occupied_slots = {}`; a LOST, TERMINATED or RESTARTING agent is
/// revived to ALIVE (and `lost_at` cleared); an ALIVE agent gets its fields refreshed.
///
/// An unknown scaling group is [`DbError::NotFound`]. Concurrent heartbeats of one agent are
/// safe: every write is conditional on the status just read, and a lost race is retried.
pub async fn upsert_agent_from_heartbeat(db: &impl ConnectionTrait, hb: AgentHeartbeatRow) -> Result<UpsertOutcome> {
    if scaling_group::Entity::find_by_id(hb.scaling_group.as_str()).one(db).await?.is_none() {
        return Err(DbError::not_found("scaling group", &hb.scaling_group));
    }
    let id = hb.id.as_str();
    for _ in 0..3 {
        let now = Utc::now();
        let Some(row) = agent::Entity::find_by_id(id).one(db).await? else {
            let mut new = heartbeat_fields(&hb);
            new.id = Set(id.to_string());
            new.status = Set(Wire(AgentStatus::Alive));
            new.status_changed = Set(Some(now));
            new.first_contact = Set(now);
            new.occupied_slots = Set(JsonOf(ResourceSlot::new()));
            new.fill_defaults(now);
            // `ON CONFLICT DO NOTHING`: when another heartbeat inserted the row first, nothing
            // is written (and a caller's transaction stays usable) and the loop updates it.
            let inserted = agent::Entity::insert(new)
                .on_conflict(OnConflict::column(agent::Column::Id).do_nothing().to_owned())
                .exec_without_returning(db)
                .await
                .map_err(|e| DbError::from_write(e, format!("agent {id}")))?;
            if inserted == 1 {
                return Ok(UpsertOutcome::Inserted);
            }
            continue;
        };
        let previous = row.status.0;
        let mut update = heartbeat_fields(&hb);
        let outcome = if previous == AgentStatus::Alive {
            UpsertOutcome::Updated { changed: differs(&row, &hb) }
        } else {
            update.status = Set(Wire(AgentStatus::Alive));
            update.status_changed = Set(Some(now));
            update.lost_at = Set(None);
            UpsertOutcome::Revived { previous }
        };
        if outcome == (UpsertOutcome::Updated { changed: false }) {
            return Ok(outcome);
        }
        let result = agent::Entity::update_many()
            .set(update)
            .filter(agent::Column::Id.eq(id))
            .filter(agent::Column::Status.eq(Wire(previous)))
            .exec(db)
            .await?;
        if result.rows_affected == 1 {
            return Ok(outcome);
        }
    }
    Err(DbError::conflict(format!("agent {id}: its status kept changing while recording a heartbeat")))
}

/// Sets an agent's status (and `status_changed`); LOST and TERMINATED also set `lost_at`.
/// Answers whether the status changed: setting the current status again is a no-op.
pub async fn set_agent_status(db: &impl ConnectionTrait, id: &AgentId, status: AgentStatus) -> Result<bool> {
    let row = agent::Entity::find_by_id(id.as_str()).one(db).await?.ok_or_else(|| DbError::not_found("agent", id))?;
    if row.status.0 == status {
        return Ok(false);
    }
    let now = Utc::now();
    let mut update =
        agent::ActiveModel { status: Set(Wire(status)), status_changed: Set(Some(now)), ..Default::default() };
    if matches!(status, AgentStatus::Lost | AgentStatus::Terminated) {
        update.lost_at = Set(Some(now));
    }
    let result = agent::Entity::update_many()
        .set(update)
        .filter(agent::Column::Id.eq(id.as_str()))
        .filter(agent::Column::Status.eq(row.status))
        .exec(db)
        .await?;
    Ok(result.rows_affected == 1)
}

/// Marks an agent LOST (silent past the heartbeat timeout); answers whether it changed.
pub async fn mark_agent_lost(db: &impl ConnectionTrait, id: &AgentId) -> Result<bool> {
    set_agent_status(db, id, AgentStatus::Lost).await
}

/// Marks an agent TERMINATED (it shut down); answers whether it changed.
pub async fn mark_agent_terminated(db: &impl ConnectionTrait, id: &AgentId) -> Result<bool> {
    set_agent_status(db, id, AgentStatus::Terminated).await
}

/// The agent with this id.
pub async fn get_agent(db: &impl ConnectionTrait, id: &AgentId) -> Result<Option<agent::Model>> {
    Ok(agent::Entity::find_by_id(id.as_str()).one(db).await?)
}

/// The agents, by id, optionally only those of one scaling group and/or in one status.
pub async fn list_agents(
    db: &impl ConnectionTrait,
    scaling_group: Option<&str>,
    status: Option<AgentStatus>,
) -> Result<Vec<agent::Model>> {
    let mut query = agent::Entity::find().order_by_asc(agent::Column::Id);
    if let Some(scaling_group) = scaling_group {
        query = query.filter(agent::Column::ScalingGroup.eq(scaling_group));
    }
    if let Some(status) = status {
        query = query.filter(agent::Column::Status.eq(Wire(status)));
    }
    Ok(query.all(db).await?)
}

/// Replaces an agent's `occupied_slots` (the scheduler's reservation, or a recount).
pub async fn set_agent_occupied_slots(db: &impl ConnectionTrait, id: &AgentId, occupied: &ResourceSlot) -> Result<()> {
    let result = agent::Entity::update_many()
        .set(agent::ActiveModel { occupied_slots: Set(JsonOf(occupied.clone())), ..Default::default() })
        .filter(agent::Column::Id.eq(id.as_str()))
        .exec(db)
        .await?;
    if result.rows_affected == 0 {
        return Err(DbError::not_found("agent", id));
    }
    Ok(())
}

/// Lets the scheduler place kernels on an agent, or stops it.
pub async fn set_agent_schedulable(db: &impl ConnectionTrait, id: &AgentId, schedulable: bool) -> Result<()> {
    let result = agent::Entity::update_many()
        .set(agent::ActiveModel { schedulable: Set(schedulable), ..Default::default() })
        .filter(agent::Column::Id.eq(id.as_str()))
        .exec(db)
        .await?;
    if result.rows_affected == 0 {
        return Err(DbError::not_found("agent", id));
    }
    Ok(())
}
