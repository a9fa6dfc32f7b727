//! The scheduler loop's steps: build a [`bai_scheduler::Snapshot`] from the database, run the
//! pure planner, persist its plan in one transaction, and dispatch the placed sessions to their
//! agents (one `create_kernels` call per agent; agent events drive the rest).
//!
//! Persisting is all or nothing per pass: placements (kernels assigned, sessions and kernels
//! SCHEDULED, agents' occupied slots recomputed), pending-timeout cancellations, and the
//! scheduler's explanation of every waiting session (`status_info` and
//! `status_data.scheduler`). Two managers never place at once: on PostgreSQL each pass holds
//! the advisory lock [`SCHEDULING_LOCK`] for its transaction; SQLite has a single writer.

use std::collections::{BTreeMap, HashMap};

use bai_agent_runtime::rpc::{pb, slots_to_wire};
use bai_core::{AccessKey, AgentId, AgentStatus, KernelId, KernelStatus, ResourceSlot, SessionId, SessionStatus};
use bai_scheduler::{
    AgentSnapshot, KernelRequest, KeypairPolicy, KeypairUsage, PendingSession, Plan, ResourceLimit, Snapshot,
};
use chrono::{DateTime, Utc};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, TransactionTrait};
use serde_json::json;

use crate::agent_client::AgentClients;
use crate::db::entities::{agent, kernel, keypair, keypair_resource_policy, session};
use crate::db::repo;
use crate::db::DbError;

/// The PostgreSQL advisory lock a scheduling pass holds; anything that must not interleave with
/// a pass (cancelling a PENDING session) takes it too.
pub const SCHEDULING_LOCK: i64 = 7_305_257;

/// What one pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PassReport {
    /// Sessions placed (now SCHEDULED).
    pub scheduled: Vec<SessionId>,
    /// Sessions left waiting.
    pub blocked: usize,
    /// Sessions cancelled (pending timeout).
    pub cancelled: Vec<SessionId>,
}

fn occupying(status: KernelStatus) -> bool {
    status.occupies_agent_resources()
}

/// Builds the scheduler's snapshot: alive agents, pending sessions with their kernels, keypair
/// policies and what each keypair uses now.
pub async fn build_snapshot(db: &impl ConnectionTrait) -> Result<Snapshot, DbError> {
    let mut snapshot = Snapshot::default();
    for a in repo::list_agents(db, None, Some(AgentStatus::Alive)).await? {
        snapshot.agents.push(AgentSnapshot {
            id: AgentId::new(&a.id).map_err(|e| DbError::invalid("agents.id", e.to_string()))?,
            scaling_group: a.scaling_group.clone(),
            architecture: a.architecture.clone(),
            status: a.status.0,
            schedulable: a.schedulable,
            available_slots: a.available_slots.0.clone(),
            occupied_slots: a.occupied_slots.0.clone(),
        });
    }
    let groups: Vec<String> = repo::list_scaling_groups(db, Some(true)).await?.into_iter().map(|g| g.name).collect();
    for group in &groups {
        for (s, kernels) in repo::pending_sessions(db, group).await? {
            snapshot.pending.push(pending_session(&s, &kernels)?);
        }
    }
    // Keypair policies of the keypairs that have pending sessions, and their usage.
    let keys: std::collections::BTreeSet<String> = snapshot.pending.iter().map(|p| p.access_key.to_string()).collect();
    for ak in keys {
        let Some(kp) = keypair::Entity::find_by_id(ak.as_str()).one(db).await? else { continue };
        let Some(policy) = keypair_resource_policy::Entity::find_by_id(kp.resource_policy.as_str()).one(db).await?
        else {
            continue;
        };
        let access_key = AccessKey::new(&ak).map_err(|e| DbError::invalid("keypairs.access_key", e.to_string()))?;
        let positive = |v: i32| u32::try_from(v).ok().filter(|v| *v > 0);
        snapshot.policies.keypairs.insert(
            access_key.clone(),
            KeypairPolicy {
                limit: ResourceLimit {
                    total_resource_slots: policy.total_resource_slots.0.clone(),
                    default_for_unspecified: match policy.default_for_unspecified.0 {
                        crate::db::types::DefaultForUnspecified::Limited => {
                            bai_scheduler::DefaultForUnspecified::Limited
                        }
                        crate::db::types::DefaultForUnspecified::Unlimited => {
                            bai_scheduler::DefaultForUnspecified::Unlimited
                        }
                    },
                },
                max_concurrent_sessions: positive(policy.max_concurrent_sessions),
                max_concurrent_sftp_sessions: positive(policy.max_concurrent_sftp_sessions),
                max_pending_session_count: policy.max_pending_session_count.and_then(|v| u32::try_from(v).ok()),
                max_pending_session_resource_slots: policy.max_pending_session_resource_slots.map(|s| s.0),
            },
        );
        let mut usage = KeypairUsage::default();
        let running = session::Entity::find().filter(session::Column::AccessKey.eq(ak.as_str())).all(db).await?;
        for s in running.iter().filter(|s| s.status.0.occupies_user_resources()) {
            usage.occupied += &s.requested_slots.0;
            usage.running_sessions += 1;
        }
        snapshot.usage.keypairs.insert(access_key, usage);
    }
    Ok(snapshot)
}

fn pending_session(s: &session::Model, kernels: &[kernel::Model]) -> Result<PendingSession, DbError> {
    let bad = |field: &str, e: &dyn std::fmt::Display| DbError::invalid(format!("sessions.{field}"), e.to_string());
    let access_key = s.access_key.clone().unwrap_or_default();
    let retries =
        s.status_data.as_ref().and_then(|d| d.pointer("/scheduler/retries")).and_then(|r| r.as_u64()).unwrap_or(0);
    Ok(PendingSession {
        id: SessionId::from_uuid(s.id),
        name: s.name.clone(),
        access_key: AccessKey::new(&access_key).map_err(|e| bad("access_key", &e))?,
        user: s.user_uuid.to_string(),
        group: s.group_id.to_string(),
        domain: s.domain_name.clone(),
        created_at: s.created_at,
        session_type: s.session_type.0,
        priority: s.priority,
        scaling_group: s.scaling_group_name.clone().unwrap_or_default(),
        architecture: kernels
            .first()
            .map(|k| k.architecture.clone())
            .unwrap_or_else(|| std::env::consts::ARCH.to_string()),
        kernels: kernels
            .iter()
            .map(|k| KernelRequest { id: KernelId::from_uuid(k.id), requested_slots: k.requested_slots.0.clone() })
            .collect(),
        cluster_mode: s.cluster_mode.0,
        designated_agents: s
            .agent_ids
            .as_ref()
            .map(|ids| ids.0.iter().filter_map(|a| AgentId::new(a).ok()).collect())
            .unwrap_or_default(),
        depends_on: Vec::new(),
        starts_at: s.starts_at,
        retries: u32::try_from(retries).unwrap_or(u32::MAX),
        endpoint_kernel_counts: None,
    })
}

/// Recomputes an agent's occupied slots from the kernels that hold resources on it.
pub async fn recompute_agent_occupancy(db: &impl ConnectionTrait, agent_id: &str) -> Result<ResourceSlot, DbError> {
    let kernels = kernel::Entity::find().filter(kernel::Column::Agent.eq(agent_id)).all(db).await?;
    let mut total = ResourceSlot::new();
    for k in kernels.iter().filter(|k| occupying(k.status.0)) {
        total += &k.requested_slots.0;
    }
    let id = AgentId::new(agent_id).map_err(|e| DbError::invalid("agent", e.to_string()))?;
    repo::set_agent_occupied_slots(db, &id, &total).await?;
    Ok(total)
}

/// Persists a plan inside the caller's transaction (the one `snapshot` was read in), in a few
/// set-based statements per step ([`repo::bulk`]): kernels placed and SCHEDULED, sessions
/// SCHEDULED with their agents, the touched agents' occupied slots recomputed, cancellations,
/// and the explanation of every session left waiting. A placed session or kernel that is no
/// longer PENDING fails the whole pass (the caller's transaction is then rolled back).
pub async fn persist(
    txn: &impl ConnectionTrait,
    snapshot: &Snapshot,
    plan: &Plan,
    now: DateTime<Utc>,
) -> Result<PassReport, DbError> {
    let mut report = PassReport { blocked: plan.blocked.len(), ..Default::default() };
    let touched: std::collections::BTreeSet<String> =
        plan.placements.iter().flat_map(|p| p.kernels.iter().map(|k| k.agent_id.to_string())).collect();
    let mut agents: HashMap<String, agent::Model> = HashMap::with_capacity(touched.len());
    let touched_list: Vec<&str> = touched.iter().map(String::as_str).collect();
    for chunk in touched_list.chunks(repo::bulk::CHUNK) {
        for a in agent::Entity::find().filter(agent::Column::Id.is_in(chunk.iter().copied())).all(txn).await? {
            agents.insert(a.id.clone(), a);
        }
    }
    let mut kernels = Vec::new();
    let mut sessions = Vec::with_capacity(plan.placements.len());
    for placement in &plan.placements {
        for k in &placement.kernels {
            let a = agents.get(k.agent_id.as_str()).ok_or_else(|| DbError::not_found("agent", &k.agent_id))?;
            kernels.push(repo::bulk::KernelPlacement {
                kernel_id: *k.kernel_id.as_uuid(),
                agent: a.id.clone(),
                agent_addr: a.addr.clone(),
                scaling_group: a.scaling_group.clone(),
            });
        }
        sessions.push(repo::bulk::SessionPlacement {
            session_id: *placement.session_id.as_uuid(),
            agent_ids: placement.kernels.iter().map(|k| k.agent_id.to_string()).collect(),
            scaling_group: placement.scaling_group.clone(),
        });
        report.scheduled.push(placement.session_id);
    }
    let placed = repo::bulk::place_kernels(txn, &kernels, now).await?;
    if placed != kernels.len() as u64 {
        return Err(DbError::conflict(format!(
            "{} of {} placed kernels were no longer PENDING",
            kernels.len() as u64 - placed,
            kernels.len()
        )));
    }
    let placed = repo::bulk::place_sessions(txn, &sessions, now).await?;
    if placed != sessions.len() as u64 {
        return Err(DbError::conflict(format!(
            "{} of {} placed sessions were no longer PENDING",
            sessions.len() as u64 - placed,
            sessions.len()
        )));
    }
    repo::bulk::recompute_occupancy(txn, &touched).await?;
    for c in &plan.cancellations {
        for k in repo::list_kernels_of_session(txn, c.session_id).await? {
            repo::set_kernel_status(txn, KernelId::from_uuid(k.id), KernelStatus::Cancelled, Some(&c.reason), None)
                .await?;
        }
        repo::set_session_status(txn, c.session_id, SessionStatus::Cancelled, Some(&c.reason), None).await?;
        report.cancelled.push(c.session_id);
    }
    let retries: HashMap<SessionId, u32> = snapshot.pending.iter().map(|p| (p.id, p.retries)).collect();
    let explanations: Vec<repo::bulk::PendingExplanation> = plan
        .blocked
        .iter()
        .map(|b| {
            let retries = u64::from(retries.get(&b.session_id).copied().unwrap_or(0));
            let retries = if b.reason.counts_as_retry() { retries + 1 } else { retries };
            repo::bulk::PendingExplanation {
                session_id: *b.session_id.as_uuid(),
                status_info: b.reason.status_info().to_string(),
                status_data: json!({"scheduler": {
                    "retries": retries,
                    "last_try": now.to_rfc3339(),
                    "msg": plan.explain(b.session_id).unwrap_or_default(),
                    "reason": b.reason,
                }}),
            }
        })
        .collect();
    repo::bulk::explain_pending(txn, &explanations).await?;
    Ok(report)
}

/// One scheduling pass: in one transaction (serialised across managers on PostgreSQL by an
/// advisory lock), snapshot, plan and persist. Returns what was placed; dispatching is the
/// caller's next step.
pub async fn schedule_pass<C: ConnectionTrait + TransactionTrait>(
    db: &C,
    config: &bai_scheduler::Config,
    now: DateTime<Utc>,
) -> Result<PassReport, DbError> {
    let txn = db.begin().await?;
    if txn.get_database_backend() == sea_orm::DatabaseBackend::Postgres {
        txn.execute_unprepared(&format!("SELECT pg_advisory_xact_lock({SCHEDULING_LOCK})")).await?;
    }
    let snapshot = build_snapshot(&txn).await?;
    let mut config = config.clone();
    for sg in repo::list_scaling_groups(&txn, Some(true)).await? {
        config.groups.insert(sg.name.clone(), group_config(&sg));
    }
    let plan = bai_scheduler::plan(&snapshot, &config, now);
    let report = persist(&txn, &snapshot, &plan, now).await?;
    txn.commit().await?;
    Ok(report)
}

/// A scaling group's scheduler settings: `scheduler` (fifo, lifo, drf) and `scheduler_opts`
/// (`config` for the queue policy, `agent_selection_strategy`, `pending_timeout` in seconds,
/// `allowed_session_types`) as the original stores them. A bad value is logged and the
/// defaults are used, so one misconfigured group never stops scheduling elsewhere.
pub fn group_config(sg: &crate::db::entities::scaling_group::Model) -> bai_scheduler::GroupConfig {
    let opts = &sg.scheduler_opts;
    let selector = opts.get("agent_selection_strategy").and_then(|v| v.as_str()).unwrap_or("dispersed");
    let queue_opts = opts.get("config").cloned().unwrap_or_else(|| json!({}));
    let mut group = match bai_scheduler::GroupConfig::from_names(&sg.scheduler, &queue_opts, selector) {
        Ok(g) => g,
        Err(e) => {
            tracing::warn!(scaling_group = %sg.name, error = %e, "bad scheduler settings; using the defaults");
            bai_scheduler::GroupConfig::default()
        }
    };
    if let Some(secs) = opts.get("pending_timeout").and_then(|v| v.as_f64()).filter(|s| s.is_finite() && *s > 0.0) {
        group.pending_timeout = chrono::TimeDelta::try_milliseconds((secs * 1000.0) as i64);
    }
    if let Some(types) = opts.get("allowed_session_types").and_then(|v| v.as_array()) {
        let parsed: Vec<bai_core::SessionType> = types.iter().filter_map(|t| t.as_str()?.parse().ok()).collect();
        if !parsed.is_empty() {
            group.allowed_session_types = Some(parsed);
        }
    }
    group
}

/// One creation request per agent for a SCHEDULED session.
pub async fn creation_requests(
    db: &impl ConnectionTrait,
    session_id: SessionId,
) -> Result<BTreeMap<(String, String), pb::CreateKernelsRequest>, DbError> {
    let (s, kernels) = repo::get_session_with_kernels(db, session_id)
        .await?
        .ok_or_else(|| DbError::not_found("session", session_id))?;
    requests_of(&s, &kernels)
}

/// [`creation_requests`] from a session's rows (kernels in cluster order), keyed by
/// `(agent id, agent address)`.
pub fn requests_of(
    s: &session::Model,
    kernels: &[kernel::Model],
) -> Result<BTreeMap<(String, String), pb::CreateKernelsRequest>, DbError> {
    let mut per_agent: BTreeMap<(String, String), pb::CreateKernelsRequest> = BTreeMap::new();
    for k in kernels {
        let (Some(agent), Some(addr)) = (k.agent.clone(), k.agent_addr.clone()) else {
            return Err(DbError::invalid("kernels.agent", format!("kernel {} has no agent", k.id)));
        };
        let environ: BTreeMap<String, String> = k
            .environ
            .as_ref()
            .or(Some(&s.environ))
            .and_then(|e| serde_json::from_value(e.clone()).ok())
            .unwrap_or_default();
        let request = per_agent.entry((agent, addr)).or_insert_with(|| pb::CreateKernelsRequest {
            session_id: s.id.to_string(),
            kernels: Vec::new(),
            session_type: s.session_type.0.as_str().to_string(),
            startup_command: s.startup_command.clone().unwrap_or_default(),
            batch_timeout: s.batch_timeout.map(|t| t as f64).unwrap_or(0.0),
        });
        let cmd: Vec<String> = k
            .internal_data
            .as_ref()
            .and_then(|d| d.get("cmd"))
            .and_then(|c| serde_json::from_value(c.clone()).ok())
            .unwrap_or_default();
        request.kernels.push(pb::KernelCreationConfig {
            kernel_id: k.id.to_string(),
            image: k.image.clone().unwrap_or_default(),
            resource_slots: slots_to_wire(&k.requested_slots.0),
            environ,
            owner_user_id: k.user_uuid.to_string(),
            owner_project_id: k.group_id.to_string(),
            cluster_role: k.cluster_role.clone(),
            cluster_idx: u32::try_from(k.cluster_idx).unwrap_or(0),
            cluster_hostname: k.cluster_hostname.clone(),
            cmd,
            mounts: kernel_mounts(k),
            ..Default::default()
        });
    }
    Ok(per_agent)
}

/// The folders a kernel mounts, from its `vfolder_mounts` (written by session creation).
fn kernel_mounts(k: &kernel::Model) -> Vec<pb::VFolderMount> {
    let mounts: Vec<crate::sessions::SessionMount> =
        k.vfolder_mounts.clone().and_then(|v| serde_json::from_value(v).ok()).unwrap_or_default();
    mounts
        .into_iter()
        .map(|m| pb::VFolderMount { folder: m.folder, name: m.target, permission: m.permission.to_string() })
        .collect()
}

/// Sends a scheduled session's kernels to their agents. The session and its kernels move to
/// PREPARING first; a failed call moves the session to ERROR (`agent-error (...)`), cancels its
/// other kernels on the agents and releases its resources.
pub async fn dispatch(
    db: &sea_orm::DatabaseConnection,
    clients: &AgentClients,
    session_id: SessionId,
) -> Result<(), DbError> {
    dispatch_observed(db, clients, session_id, None).await
}

/// [`dispatch`], recording each `create_kernels` call as a layer operation (`client`,
/// `agent_client`) in `metrics`.
pub async fn dispatch_observed(
    db: &sea_orm::DatabaseConnection,
    clients: &AgentClients,
    session_id: SessionId,
    metrics: Option<&crate::metrics::ManagerMetrics>,
) -> Result<(), DbError> {
    let mut claimed = claim_for_dispatch(db, &[session_id]).await?;
    match claimed.ready.pop() {
        Some(ready) => send_creation(db, clients, &ready, metrics).await,
        None => Err(claimed
            .failed
            .pop()
            .map(|(_, e)| e)
            .unwrap_or_else(|| DbError::conflict(format!("session {session_id}: no longer SCHEDULED")))),
    }
}

/// A session claimed for dispatch (now PREPARING) and what to send to its agents.
#[derive(Debug, Clone)]
pub struct Ready {
    /// The session.
    pub session_id: SessionId,
    /// Its `creation_id` (for its events).
    pub creation_id: String,
    /// One `create_kernels` request per `(agent id, agent address)`.
    pub requests: BTreeMap<(String, String), pb::CreateKernelsRequest>,
}

/// What [`claim_for_dispatch`] did with the sessions it was given.
#[derive(Debug, Default)]
pub struct Claimed {
    /// Claimed: SCHEDULED → PREPARING with their kernels; send them with [`send_creation`].
    pub ready: Vec<Ready>,
    /// Left alone because their creation requests could not be built.
    pub failed: Vec<(SessionId, DbError)>,
    /// No longer SCHEDULED (destroyed meanwhile, or claimed by another manager); their agents'
    /// occupied slots were recomputed.
    pub skipped: Vec<SessionId>,
}

/// Claims SCHEDULED sessions for dispatch in a few statements whatever their number: reads
/// them with their kernels, builds their creation requests, and in one transaction moves
/// those still SCHEDULED, and their kernels, to PREPARING. A manager dying after this leaves
/// them PREPARING, and [`crate::manager::Manager::redispatch_stalled`] sends them again; two
/// managers never both claim a session (the move is conditional on SCHEDULED).
pub async fn claim_for_dispatch(db: &sea_orm::DatabaseConnection, ids: &[SessionId]) -> Result<Claimed, DbError> {
    let uuids: Vec<uuid::Uuid> = ids.iter().map(|id| *id.as_uuid()).collect();
    let rows = repo::bulk::sessions_with_kernels(db, &uuids).await?;
    let mut out = Claimed::default();
    let mut ready: HashMap<uuid::Uuid, Ready> = HashMap::with_capacity(rows.len());
    let mut agents_of: HashMap<uuid::Uuid, Vec<String>> = HashMap::with_capacity(rows.len());
    for (s, kernels) in &rows {
        let session_id = SessionId::from_uuid(s.id);
        agents_of.insert(s.id, kernels.iter().filter_map(|k| k.agent.clone()).collect());
        match requests_of(s, kernels) {
            Ok(requests) => {
                let creation_id = s.creation_id.clone().unwrap_or_default();
                ready.insert(s.id, Ready { session_id, creation_id, requests });
            }
            Err(e) => out.failed.push((session_id, e)),
        }
    }
    let candidates: Vec<uuid::Uuid> = uuids.iter().copied().filter(|id| ready.contains_key(id)).collect();
    let now = Utc::now();
    let txn = db.begin().await?;
    let claimed =
        repo::bulk::claim_sessions(&txn, &candidates, SessionStatus::Scheduled, SessionStatus::Preparing, now).await?;
    repo::bulk::move_kernels_of_sessions(&txn, &claimed, KernelStatus::Scheduled, KernelStatus::Preparing, now).await?;
    txn.commit().await?;
    let claimed: std::collections::HashSet<uuid::Uuid> = claimed.into_iter().collect();
    let mut release = std::collections::BTreeSet::new();
    for id in &uuids {
        match ready.remove(id) {
            Some(r) if claimed.contains(id) => out.ready.push(r),
            Some(r) => {
                // Destroyed meanwhile: give its slots back.
                release.extend(agents_of.remove(id).unwrap_or_default());
                out.skipped.push(r.session_id);
            }
            None => {}
        }
    }
    if !release.is_empty() {
        repo::bulk::recompute_occupancy(db, &release).await?;
    }
    Ok(out)
}

/// Sends a claimed session's `create_kernels` to each of its agents. A failed call moves the
/// session to ERROR (`agent-error (...)`), cancels its other kernels on the agents and
/// releases its resources; each call is recorded as a layer operation in `metrics`.
pub async fn send_creation(
    db: &sea_orm::DatabaseConnection,
    clients: &AgentClients,
    ready: &Ready,
    metrics: Option<&crate::metrics::ManagerMetrics>,
) -> Result<(), DbError> {
    let (session_id, requests) = (ready.session_id, &ready.requests);
    // The dispatch span (see `Manager::schedule_once`) and its log lines name the owner.
    if let Some(owner) = requests.values().flat_map(|r| &r.kernels).map(|k| &k.owner_user_id).next() {
        tracing::Span::current().record("user_id", owner.as_str());
    }
    let mut failure = None;
    for ((agent, addr), request) in requests {
        let layer_op = metrics.map(|m| m.layer_operation("client", "agent_client", "create_kernels"));
        let result = match clients.client(addr) {
            Ok(mut c) => c.create_kernels(request.clone()).await.map(|_| ()).map_err(|s| {
                (format!("{:?}", s.code()).to_ascii_lowercase(), format!("{}: {}", s.code(), s.message()))
            }),
            Err(e) => Err(("invalid_address".to_string(), e.to_string())),
        };
        if let Some(op) = layer_op {
            op.finish(result.as_ref().err().map(|(code, _)| code.as_str()));
        }
        if let Err((code, e)) = result {
            tracing::warn!(session = %session_id, agent = %agent, error = %e, "create_kernels failed");
            failure = Some((agent.clone(), code, e));
            break;
        }
    }
    if let Some((agent, code, error)) = failure {
        // The agent had less room than the manager thought (a kernel destroyed by force still
        // holding its slots there, for instance): the session waits for another pass, a few
        // times, instead of failing.
        let requeue = code == "resourceexhausted"
            && dispatch_retries(&repo::list_kernels_of_session(db, session_id).await?) < MAX_DISPATCH_RETRIES;
        for ((_, addr), request) in requests {
            for k in &request.kernels {
                if let Ok(mut c) = clients.client(addr) {
                    let _ = c
                        .destroy_kernel(pb::DestroyKernelRequest {
                            kernel_id: k.kernel_id.clone(),
                            session_id: session_id.to_string(),
                            reason: "failed-to-create".into(),
                            suppress_events: true,
                        })
                        .await;
                }
            }
        }
        if requeue && requeue_session(db, session_id, &agent, &error).await? {
            for (agent, _) in requests.keys() {
                recompute_agent_occupancy(db, agent).await?;
            }
            return Ok(());
        }
        let info = format!("agent-error ({error})");
        let data = json!({"error": {"src": "agent", "name": "AgentError", "repr": error, "agent_id": agent}});
        for k in repo::list_kernels_of_session(db, session_id).await? {
            if !k.status.0.is_terminal() {
                repo::force_kernel_status(
                    db,
                    KernelId::from_uuid(k.id),
                    KernelStatus::Error,
                    Some(&info),
                    Some(data.clone()),
                )
                .await?;
            }
        }
        repo::force_session_status(db, session_id, SessionStatus::Error, Some(&info), Some(data)).await?;
        for (agent, _) in requests.keys() {
            recompute_agent_occupancy(db, agent).await?;
        }
    }
    Ok(())
}

/// How many times a session is put back in the queue after agents refused its kernels for
/// lack of resources, before it fails like any other creation error.
pub const MAX_DISPATCH_RETRIES: u64 = 3;

/// How many times the session of `kernels` went back to the queue this way (kept in its
/// kernels' `internal_data`, which scheduling passes leave alone).
fn dispatch_retries(kernels: &[kernel::Model]) -> u64 {
    kernels.iter().filter_map(|k| k.internal_data.as_ref()?.get("dispatch_retries")?.as_u64()).max().unwrap_or(0)
}

/// Puts a claimed session whose agent refused its kernels for lack of resources back in the
/// queue: its kernels and itself PENDING again, without agents, `status_info`
/// `no-available-instances` and `status_data.scheduler` saying which agent refused and how
/// many times this happened. Answers false (and changes nothing) when the session is no longer
/// being created (destroyed meanwhile).
async fn requeue_session(
    db: &sea_orm::DatabaseConnection,
    session_id: SessionId,
    agent: &str,
    error: &str,
) -> Result<bool, DbError> {
    let txn = db.begin().await?;
    let Some(s) = repo::get_session(&txn, session_id).await? else { return Ok(false) };
    if !s.status.0.is_being_created() {
        return Ok(false);
    }
    let kernels = repo::list_kernels_of_session(&txn, session_id).await?;
    let retries = dispatch_retries(&kernels) + 1;
    let msg = format!("agent {agent} refused the kernels ({error}); waiting for another pass");
    let data = json!({"scheduler": {
        "retries": s.status_data.as_ref().and_then(|d| d.pointer("/scheduler/retries")).and_then(|r| r.as_u64()).unwrap_or(0),
        "dispatch_retries": retries,
        "last_try": Utc::now().to_rfc3339(),
        "msg": msg,
    }});
    for k in kernels {
        let mut internal = k.internal_data.clone().filter(|d| d.is_object()).unwrap_or_else(|| json!({}));
        internal["dispatch_retries"] = json!(retries);
        kernel::Entity::update_many()
            .set(kernel::ActiveModel {
                agent: sea_orm::ActiveValue::Set(None),
                agent_addr: sea_orm::ActiveValue::Set(None),
                internal_data: sea_orm::ActiveValue::Set(Some(internal)),
                ..Default::default()
            })
            .filter(kernel::Column::Id.eq(k.id))
            .exec(&txn)
            .await?;
        repo::force_kernel_status(
            &txn,
            KernelId::from_uuid(k.id),
            KernelStatus::Pending,
            Some("no-available-instances"),
            None,
        )
        .await?;
    }
    session::Entity::update_many()
        .set(session::ActiveModel { agent_ids: sea_orm::ActiveValue::Set(None), ..Default::default() })
        .filter(session::Column::Id.eq(s.id))
        .exec(&txn)
        .await?;
    repo::force_session_status(&txn, session_id, SessionStatus::Pending, Some("no-available-instances"), Some(data))
        .await?;
    txn.commit().await?;
    tracing::info!(session = %session_id, %agent, retries, "agent out of resources; the session waits again");
    Ok(true)
}

/// Sends a session's `create_kernels` again to each of its agents, as it is (no status change
/// here: the agents' events move it on). For [`crate::manager::Manager::redispatch_stalled`].
pub async fn resend_creation(
    db: &sea_orm::DatabaseConnection,
    clients: &AgentClients,
    session_id: SessionId,
) -> Result<(), String> {
    // Destroyed (or started) since it was found stalled: nothing to send.
    let still = repo::get_session(db, session_id)
        .await
        .map_err(|e| e.to_string())?
        .is_some_and(|s| s.status.0.is_being_created());
    if !still {
        return Ok(());
    }
    let requests = creation_requests(db, session_id).await.map_err(|e| e.to_string())?;
    // Kernels that ended stay ended.
    let ended: std::collections::HashSet<String> = repo::list_kernels_of_session(db, session_id)
        .await
        .map_err(|e| e.to_string())?
        .into_iter()
        .filter(|k| k.status.0.is_terminal())
        .map(|k| k.id.to_string())
        .collect();
    for ((agent, addr), mut request) in requests {
        request.kernels.retain(|k| !ended.contains(&k.kernel_id));
        if request.kernels.is_empty() {
            continue;
        }
        let mut client = clients.client(&addr).map_err(|e| format!("agent {agent}: {e}"))?;
        client.create_kernels(request).await.map_err(|s| format!("agent {agent}: {}: {}", s.code(), s.message()))?;
    }
    Ok(())
}

/// Keys per agent of the kernels of a session (for destroy calls).
pub fn kernels_by_agent(kernels: &[kernel::Model]) -> HashMap<String, Vec<&kernel::Model>> {
    let mut out: HashMap<String, Vec<&kernel::Model>> = HashMap::new();
    for k in kernels {
        if let Some(addr) = &k.agent_addr {
            out.entry(addr.clone()).or_default().push(k);
        }
    }
    out
}

/// The columns of an agent row the scheduler reads, for tests.
pub type AgentRow = agent::Model;
