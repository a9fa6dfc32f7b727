//! Set-based writes for the scheduler's hot path: a pass places thousands of kernels, and a
//! statement per row (a round trip each) is what limited it. Each function here writes up to
//! [`CHUNK`] rows per statement — `UPDATE … FROM (VALUES …)`, which PostgreSQL and SQLite
//! (3.33 and later) both run — with the same columns and the same conditional-on-status
//! semantics as the per-row functions of [`super::sessions`]: `status`, `status_changed`,
//! `status_history[<STATUS>] = now` (ISO 8601), `status_info`/`status_data` when given.
//!
//! Rows whose status is not the expected one are left alone and not counted; callers that
//! need all or nothing compare the count and roll their transaction back.

use std::collections::{BTreeMap, BTreeSet};

use bai_core::{KernelStatus, ResourceSlot, SessionStatus};
use chrono::{DateTime, Utc};
use sea_orm::{ColumnTrait, ConnectionTrait, DatabaseBackend, EntityTrait, QueryFilter, QuerySelect, Statement, Value};
use uuid::Uuid;

use crate::db::entities::{iso_timestamp, kernel, session};
use crate::db::types::{JsonOf, Wire};
use crate::db::Result;

/// Rows per statement: well under the bind-parameter limits of both backends (PostgreSQL
/// 65,535; SQLite 32,766) at the widest row written here (4 values).
pub const CHUNK: usize = 500;

/// A statement being built: SQL text with the backend's placeholders, and its values.
struct Sql {
    backend: DatabaseBackend,
    text: String,
    values: Vec<Value>,
}

impl Sql {
    fn new(backend: DatabaseBackend) -> Self {
        Self { backend, text: String::with_capacity(4096), values: Vec::new() }
    }

    fn push(&mut self, sql: &str) -> &mut Self {
        self.text.push_str(sql);
        self
    }

    /// Appends a placeholder for `value`.
    fn bind(&mut self, value: impl Into<Value>) -> &mut Self {
        self.values.push(value.into());
        match self.backend {
            DatabaseBackend::Postgres => {
                let n = self.values.len();
                self.text.push('$');
                self.text.push_str(&n.to_string());
            }
            _ => self.text.push('?'),
        }
        self
    }

    /// `(VALUES (…), (…)) AS v`: one row per item, its values from `row`.
    fn values_table<T>(&mut self, items: &[T], mut row: impl FnMut(&mut Sql, &T)) -> &mut Self {
        self.push("(VALUES ");
        for (i, item) in items.iter().enumerate() {
            if i > 0 {
                self.push(", ");
            }
            self.push("(");
            row(self, item);
            self.push(")");
        }
        self.push(") AS v")
    }

    /// `column = <status>, status_changed = <now>, status_history = <history with status>`,
    /// then `status_info`/`status_data` when given.
    fn set_status(
        &mut self,
        status: &str,
        now: DateTime<Utc>,
        info: Option<&str>,
        data: Option<&serde_json::Value>,
    ) -> &mut Self {
        self.push("status = ").bind(status.to_string());
        self.push(", status_changed = ").bind(now);
        // The key is one of our status names (upper-case letters and `_`), never user input.
        debug_assert!(status.bytes().all(|b| b.is_ascii_uppercase() || b == b'_'));
        match self.backend {
            DatabaseBackend::Postgres => {
                self.push(", status_history = status_history || jsonb_build_object('");
                self.push(status).push("', ").bind(iso_timestamp(now)).push("::text)");
            }
            _ => {
                self.push(", status_history = json_set(status_history, '$.");
                self.push(status).push("', ").bind(iso_timestamp(now)).push(")");
            }
        }
        if let Some(info) = info {
            self.push(", status_info = ").bind(info.to_string());
        }
        if let Some(data) = data {
            self.push(", status_data = ").bind(data.clone());
        }
        self
    }

    fn statement(self) -> Statement {
        Statement::from_sql_and_values(self.backend, self.text, self.values)
    }
}

/// A kernel placed by a scheduling pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelPlacement {
    /// The kernel.
    pub kernel_id: Uuid,
    /// Its agent's id.
    pub agent: String,
    /// Its agent's RPC address.
    pub agent_addr: String,
    /// Its agent's scaling group.
    pub scaling_group: String,
}

/// Places PENDING kernels: writes each one's agent, address and scaling group and moves it to
/// SCHEDULED (`status_info` "scheduled", `status_data` `{}`). Answers how many were PENDING
/// and changed.
pub async fn place_kernels(db: &impl ConnectionTrait, rows: &[KernelPlacement], now: DateTime<Utc>) -> Result<u64> {
    let mut changed = 0;
    let empty = serde_json::json!({});
    for chunk in rows.chunks(CHUNK) {
        let mut sql = Sql::new(db.get_database_backend());
        sql.push("UPDATE kernels SET agent = v.column2, agent_addr = v.column3, scaling_group = v.column4, ");
        sql.set_status(KernelStatus::Scheduled.as_str(), now, Some("scheduled"), Some(&empty));
        sql.push(" FROM ");
        sql.values_table(chunk, |sql, r| {
            sql.bind(r.kernel_id).push(", ").bind(r.agent.clone()).push(", ").bind(r.agent_addr.clone());
            sql.push(", ").bind(r.scaling_group.clone());
        });
        sql.push(" WHERE kernels.id = v.column1 AND kernels.status = ").bind(Wire(KernelStatus::Pending));
        changed += db.execute(sql.statement()).await?.rows_affected();
    }
    Ok(changed)
}

/// A session placed by a scheduling pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionPlacement {
    /// The session.
    pub session_id: Uuid,
    /// The agent of each of its kernels, in kernel order (an agent appears once per kernel).
    pub agent_ids: Vec<String>,
    /// The scaling group it was placed in.
    pub scaling_group: String,
}

/// Places PENDING sessions: writes `agent_ids` and `scaling_group_name` and moves each to
/// SCHEDULED (`status_info` "scheduled", `status_data` `{}`). Answers how many were PENDING
/// and changed.
pub async fn place_sessions(db: &impl ConnectionTrait, rows: &[SessionPlacement], now: DateTime<Utc>) -> Result<u64> {
    let mut changed = 0;
    let empty = serde_json::json!({});
    for chunk in rows.chunks(CHUNK) {
        let mut sql = Sql::new(db.get_database_backend());
        sql.push("UPDATE sessions SET agent_ids = v.column2, scaling_group_name = v.column3, ");
        sql.set_status(SessionStatus::Scheduled.as_str(), now, Some("scheduled"), Some(&empty));
        sql.push(" FROM ");
        sql.values_table(chunk, |sql, r| {
            sql.bind(r.session_id).push(", ").bind(JsonOf(r.agent_ids.clone()));
            sql.push(", ").bind(r.scaling_group.clone());
        });
        sql.push(" WHERE sessions.id = v.column1 AND sessions.status = ").bind(Wire(SessionStatus::Pending));
        changed += db.execute(sql.statement()).await?.rows_affected();
    }
    Ok(changed)
}

/// The scheduler's explanation of a session it left waiting.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingExplanation {
    /// The session.
    pub session_id: Uuid,
    /// Its new `status_info`.
    pub status_info: String,
    /// Its new `status_data`.
    pub status_data: serde_json::Value,
}

/// Writes `status_info` and `status_data` of sessions that are still PENDING (the status
/// itself does not change). Answers how many were written.
pub async fn explain_pending(db: &impl ConnectionTrait, rows: &[PendingExplanation]) -> Result<u64> {
    let mut changed = 0;
    for chunk in rows.chunks(CHUNK) {
        let mut sql = Sql::new(db.get_database_backend());
        sql.push("UPDATE sessions SET status_info = v.column2, status_data = v.column3 FROM ");
        sql.values_table(chunk, |sql, r| {
            sql.bind(r.session_id).push(", ").bind(r.status_info.clone()).push(", ").bind(r.status_data.clone());
        });
        sql.push(" WHERE sessions.id = v.column1 AND sessions.status = ").bind(Wire(SessionStatus::Pending));
        changed += db.execute(sql.statement()).await?.rows_affected();
    }
    Ok(changed)
}

/// Moves the sessions of `ids` that are `from` to `to` (no `status_info`/`status_data`
/// change) and answers the ids that moved: a claim, when several managers may try the same
/// sessions (each row moves once).
pub async fn claim_sessions(
    db: &impl ConnectionTrait,
    ids: &[Uuid],
    from: SessionStatus,
    to: SessionStatus,
    now: DateTime<Utc>,
) -> Result<Vec<Uuid>> {
    let mut claimed = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(CHUNK) {
        let mut sql = Sql::new(db.get_database_backend());
        sql.push("UPDATE sessions SET ");
        sql.set_status(to.as_str(), now, None, None);
        sql.push(" WHERE sessions.status = ").bind(Wire(from)).push(" AND sessions.id IN (");
        for (i, id) in chunk.iter().enumerate() {
            if i > 0 {
                sql.push(", ");
            }
            sql.bind(*id);
        }
        sql.push(") RETURNING id");
        for row in db.query_all(sql.statement()).await? {
            claimed.push(row.try_get_by_index::<Uuid>(0)?);
        }
    }
    Ok(claimed)
}

/// Moves the kernels of the sessions of `sessions` that are `from` to `to` (no
/// `status_info`/`status_data` change). Answers how many moved.
pub async fn move_kernels_of_sessions(
    db: &impl ConnectionTrait,
    sessions: &[Uuid],
    from: KernelStatus,
    to: KernelStatus,
    now: DateTime<Utc>,
) -> Result<u64> {
    let mut changed = 0;
    for chunk in sessions.chunks(CHUNK) {
        let mut sql = Sql::new(db.get_database_backend());
        sql.push("UPDATE kernels SET ");
        sql.set_status(to.as_str(), now, None, None);
        sql.push(" WHERE kernels.status = ").bind(Wire(from)).push(" AND kernels.session_id IN (");
        for (i, id) in chunk.iter().enumerate() {
            if i > 0 {
                sql.push(", ");
            }
            sql.bind(*id);
        }
        sql.push(")");
        changed += db.execute(sql.statement()).await?.rows_affected();
    }
    Ok(changed)
}

/// Recomputes the occupied slots of `agents` from the kernels that hold resources on them
/// (every agent of the list is written, an agent without such kernels with `{}`), in a few
/// statements. Answers the new figures.
pub async fn recompute_occupancy(
    db: &impl ConnectionTrait,
    agents: &BTreeSet<String>,
) -> Result<BTreeMap<String, ResourceSlot>> {
    let occupying: Vec<Wire<KernelStatus>> =
        KernelStatus::ALL.iter().copied().filter(|s| s.occupies_agent_resources()).map(Wire).collect();
    let agents: Vec<&String> = agents.iter().collect();
    let mut totals: BTreeMap<String, ResourceSlot> =
        agents.iter().map(|a| ((*a).clone(), ResourceSlot::new())).collect();
    for chunk in agents.chunks(CHUNK) {
        let rows: Vec<(Option<String>, JsonOf<ResourceSlot>)> = kernel::Entity::find()
            .select_only()
            .column(kernel::Column::Agent)
            .column(kernel::Column::RequestedSlots)
            .filter(kernel::Column::Agent.is_in(chunk.iter().map(|a| a.as_str())))
            .filter(kernel::Column::Status.is_in(occupying.clone()))
            .into_tuple()
            .all(db)
            .await?;
        for (agent, slots) in rows {
            if let Some(total) = agent.and_then(|a| totals.get_mut(&a)) {
                *total += &slots.0;
            }
        }
    }
    let written: Vec<(&String, &ResourceSlot)> = totals.iter().collect();
    for chunk in written.chunks(CHUNK) {
        let mut sql = Sql::new(db.get_database_backend());
        sql.push("UPDATE agents SET occupied_slots = v.column2 FROM ");
        sql.values_table(chunk, |sql, (agent, slots)| {
            sql.bind((*agent).clone()).push(", ").bind(JsonOf((*slots).clone()));
        });
        sql.push(" WHERE agents.id = v.column1");
        db.execute(sql.statement()).await?;
    }
    Ok(totals)
}

/// The sessions of `ids` with their kernels (in cluster order), in a few statements; missing
/// ids are left out.
pub async fn sessions_with_kernels(
    db: &impl ConnectionTrait,
    ids: &[Uuid],
) -> Result<Vec<(session::Model, Vec<kernel::Model>)>> {
    let mut out = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(CHUNK) {
        let sessions = session::Entity::find().filter(session::Column::Id.is_in(chunk.iter().copied())).all(db).await?;
        let kernels =
            kernel::Entity::find().filter(kernel::Column::SessionId.is_in(chunk.iter().copied())).all(db).await?;
        let mut by_session: BTreeMap<Uuid, Vec<kernel::Model>> = BTreeMap::new();
        for k in kernels {
            by_session.entry(k.session_id).or_default().push(k);
        }
        for s in sessions {
            let mut ks = by_session.remove(&s.id).unwrap_or_default();
            // As `list_kernels_of_session` orders them: the main kernel first.
            ks.sort_by(|a, b| {
                (a.cluster_role != "main", &a.cluster_role, a.cluster_idx).cmp(&(
                    b.cluster_role != "main",
                    &b.cluster_role,
                    b.cluster_idx,
                ))
            });
            out.push((s, ks));
        }
    }
    Ok(out)
}
