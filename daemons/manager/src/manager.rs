//! [`Manager`]: the manager's running core — the event consumer (group `manager` on the bus),
//! the scheduler loop (every `schedule-interval`, and at once on `do_schedule`), dispatch of
//! placed sessions to agents, the agent-loss sweeper, and session destruction.
//!
//! Cancel safety: each loop iteration finishes its database transaction before the next
//! `.await` on the bus or the timer, so aborting a loop task loses at most the event being
//! handled, which the bus redelivers because it was not acknowledged.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bai_agent_runtime::bus::{Envelope, EventBus};
use bai_agent_runtime::rpc::pb;
use bai_core::{Event, KernelId, KernelStatus, SessionId, SessionStatus};
use chrono::Utc;
use futures::StreamExt;
use sea_orm::{ConnectionTrait, DatabaseConnection, TransactionTrait};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::agent_client::AgentClients;
use crate::db::repo;
use crate::db::DbError;
use crate::lifecycle::{self, Registry};
use crate::metrics::{ErrorInfo, ManagerMetrics};
use crate::scheduler::{self, PassReport};

/// The consumer group managers read anycast events in.
pub const EVENT_GROUP: &str = "manager";

/// The core of a manager. Share it as `Arc<Manager>`.
pub struct Manager {
    db: DatabaseConnection,
    bus: Arc<dyn EventBus>,
    clients: Arc<AgentClients>,
    registry: Registry,
    scheduler: bai_scheduler::Config,
    wake_scheduler: Notify,
    id: String,
    metrics: OnceLock<Arc<ManagerMetrics>>,
    /// A fingerprint of each agent's last reported image set; a change triggers an image scan.
    image_sets: std::sync::Mutex<std::collections::HashMap<String, u64>>,
    /// Set once the event consumer reads the bus (see [`Manager::consuming`]).
    consuming: tokio::sync::watch::Sender<bool>,
    /// Each scaling group's utilisation over the last hour.
    utilisation: crate::utilisation::UtilisationHistory,
    /// How long (ms) a session may stay PREPARING/PULLING/CREATING before
    /// [`Manager::redispatch_stalled`] looks at it.
    dispatch_timeout_ms: std::sync::atomic::AtomicU64,
    /// Sessions a re-dispatch of this manager is sending right now.
    redispatching: std::sync::Mutex<std::collections::HashSet<SessionId>>,
    /// The storage hosts folders are mounted from (see [`Manager::set_volumes`]).
    volumes: OnceLock<Arc<crate::volumes::Volumes>>,
    /// The trace context (`traceparent`) of the request that created each session still
    /// waiting for its dispatch, which continues that trace (see
    /// [`Manager::remember_creation_trace`]).
    creation_traces: std::sync::Mutex<std::collections::HashMap<SessionId, String>>,
    /// Long operations started through the API (image rescans), with their progress.
    bgtasks: crate::bgtask::BackgroundTasks,
    /// The container registries image rescans walk (see [`Manager::set_registries`]).
    registries: OnceLock<crate::registry::RegistrySources>,
    /// What the idle checkers read besides the database.
    idle: Arc<crate::idle::IdleState>,
}

/// How many ordered lanes handle events concurrently (see [`Manager::spawn`]).
pub const EVENT_LANES: usize = 16;

/// The lane of a delivery: by its session, else by its source (an agent's own events stay in
/// order), so that what must stay ordered does.
fn lane_of(delivery: &bai_agent_runtime::bus::Delivery, lanes: usize) -> usize {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    match &delivery.envelope {
        Ok(envelope) => match envelope.event.session_id() {
            Some(session) => session.hash(&mut h),
            None => envelope.source.hash(&mut h),
        },
        Err(_) => delivery.id.hash(&mut h),
    }
    (h.finish() % lanes.max(1) as u64) as usize
}

/// How many placed sessions one scheduling pass sends to their agents at once.
pub const DISPATCH_CONCURRENCY: usize = 64;

/// The most creation trace contexts a manager keeps (see [`Manager::remember_creation_trace`]);
/// past that, new sessions' dispatches start traces of their own.
pub const MAX_CREATION_TRACES: usize = 10_000;

/// The default of [`Manager::set_dispatch_timeout`] (`[manager] dispatch-timeout`).
pub const DISPATCH_TIMEOUT: Duration = Duration::from_secs(60);

impl std::fmt::Debug for Manager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Manager").field("id", &self.id).finish_non_exhaustive()
    }
}

impl Manager {
    /// A manager core over `db`, reading and writing events on `bus` and calling agents with
    /// `clients`; agents silent for `heartbeat_timeout` become LOST.
    pub fn new(
        id: &str,
        db: DatabaseConnection,
        bus: Arc<dyn EventBus>,
        clients: Arc<AgentClients>,
        heartbeat_timeout: Duration,
    ) -> Arc<Self> {
        Arc::new(Self {
            db,
            bus,
            clients,
            registry: Registry::new(heartbeat_timeout, Utc::now()),
            scheduler: bai_scheduler::Config::default(),
            wake_scheduler: Notify::new(),
            id: id.to_string(),
            metrics: OnceLock::new(),
            image_sets: Default::default(),
            consuming: tokio::sync::watch::channel(false).0,
            utilisation: Default::default(),
            dispatch_timeout_ms: std::sync::atomic::AtomicU64::new(DISPATCH_TIMEOUT.as_millis() as u64),
            redispatching: Default::default(),
            volumes: OnceLock::new(),
            creation_traces: Default::default(),
            bgtasks: Default::default(),
            registries: OnceLock::new(),
            idle: Default::default(),
        })
    }

    /// The background tasks of this manager.
    pub fn bgtasks(&self) -> &crate::bgtask::BackgroundTasks {
        &self.bgtasks
    }

    /// Sets where the container registries are configured (only the first call has an
    /// effect; without one, there are none).
    pub fn set_registries(&self, sources: crate::registry::RegistrySources) {
        let _ = self.registries.set(sources);
    }

    /// Where the container registries are configured.
    pub fn registries(&self) -> crate::registry::RegistrySources {
        self.registries.get().cloned().unwrap_or_default()
    }

    /// Keeps the trace context of the current span (the API request creating `session_id`) so
    /// that the session's dispatch, in a later scheduling pass, continues the same trace. Does
    /// nothing when spans are not exported. Kept in this process only: a session placed by
    /// another manager starts a trace of its own there.
    pub fn remember_creation_trace(&self, session_id: SessionId) {
        let Some(traceparent) = bai_telemetry::propagation::traceparent(&tracing::Span::current()) else { return };
        let mut traces = lock(&self.creation_traces);
        if traces.len() < MAX_CREATION_TRACES {
            traces.insert(session_id, traceparent);
        }
    }

    /// The span of a session's dispatch: `dispatch` with `session_id` (and `user_id`, recorded
    /// by [`scheduler::dispatch_observed`]). A child of the request that created the session
    /// when its trace context is known, linked to the current span (the scheduling pass);
    /// else a child of the current span.
    fn dispatch_span(&self, session_id: SessionId) -> tracing::Span {
        let span = tracing::info_span!(
            "dispatch",
            session_id = %session_id,
            user_id = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
        );
        if let Some(traceparent) = lock(&self.creation_traces).remove(&session_id) {
            bai_telemetry::propagation::set_parent_from_traceparent(&span, &traceparent);
            bai_telemetry::propagation::add_link(&span, &tracing::Span::current());
        }
        span
    }

    /// Waits (up to `limit`) until the event consumer [`spawn`](Self::spawn) starts reads the
    /// bus; whether it does. On the in-process bus an event sent before that is lost: an
    /// embedded agent is started only after this (its recovery announces kernels at once).
    pub async fn consuming(&self, limit: Duration) -> bool {
        let mut rx = self.consuming.subscribe();
        tokio::time::timeout(limit, rx.wait_for(|c| *c)).await.is_ok_and(|r| r.is_ok())
    }

    /// Records events, actions and agent calls in `metrics` from now on (only the first
    /// call has an effect).
    pub fn set_metrics(&self, metrics: Arc<ManagerMetrics>) {
        self.bgtasks.set_metrics(metrics.clone());
        let _ = self.metrics.set(metrics);
    }

    /// The metrics, once [`Manager::set_metrics`] gave them.
    pub fn metrics(&self) -> Option<&Arc<ManagerMetrics>> {
        self.metrics.get()
    }

    /// Mounts folders from these storage hosts (only the first call has an effect); without
    /// it, every folder is taken to be directly under the storage root.
    pub fn set_volumes(&self, volumes: Arc<crate::volumes::Volumes>) {
        let _ = self.volumes.set(volumes);
    }

    /// The storage hosts, once [`Manager::set_volumes`] gave them.
    pub fn volumes(&self) -> Option<&Arc<crate::volumes::Volumes>> {
        self.volumes.get()
    }

    /// Records an action (`entity_type`, `operation_type`) that started at `started`.
    fn observe_action<T>(
        &self,
        entity_type: &str,
        operation_type: &str,
        started: Instant,
        result: &Result<T, DbError>,
    ) {
        if let Some(m) = self.metrics() {
            let error = result.as_ref().err().map(|e| ErrorInfo::from_db(e, operation_type));
            m.observe_action(entity_type, operation_type, started.elapsed(), error.as_ref());
        }
    }

    /// The database.
    pub fn db(&self) -> &DatabaseConnection {
        &self.db
    }

    /// The clients of the agents' RPC.
    pub fn clients(&self) -> &Arc<AgentClients> {
        &self.clients
    }

    /// The event bus.
    pub fn bus(&self) -> &Arc<dyn EventBus> {
        &self.bus
    }

    /// The agent registry.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Each scaling group's utilisation, sampled by [`Manager::spawn`]'s sampler.
    pub fn utilisation(&self) -> &crate::utilisation::UtilisationHistory {
        &self.utilisation
    }

    /// The idle checkers' settings and state: the API records sessions' traffic there.
    pub fn idle(&self) -> &Arc<crate::idle::IdleState> {
        &self.idle
    }

    /// Starts an image scan of `agent` in the background when the image set its heartbeat
    /// reports differs from the last one (the first heartbeat counts as a change).
    fn scan_images_if_changed(&self, agent: &str, agent_info: &serde_json::Value) {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        agent_info["images"].to_string().hash(&mut hasher);
        let fingerprint = hasher.finish();
        let changed = {
            let mut sets = self.image_sets.lock().unwrap_or_else(|p| p.into_inner());
            sets.insert(agent.to_string(), fingerprint) != Some(fingerprint)
        };
        let Some(addr) = agent_info["addr"].as_str().filter(|_| changed).map(str::to_string) else { return };
        let (db, clients, agent) = (self.db.clone(), self.clients.clone(), agent.to_string());
        tokio::spawn(async move {
            if let Err(e) = crate::images::scan_agent(&db, &clients, &agent, &addr).await {
                tracing::warn!(agent, error = %e, "image scan failed");
            }
        });
    }

    /// Asks the scheduler loop for a pass now.
    pub fn schedule_soon(&self) {
        self.wake_scheduler.notify_one();
    }

    /// Handles one event.
    pub async fn handle(&self, envelope: &Envelope) -> Result<(), DbError> {
        let now = Utc::now();
        match &envelope.event {
            Event::AgentHeartbeat { agent_info } => {
                self.registry.heartbeat(&self.db, &envelope.source, agent_info, now).await?;
                self.scan_images_if_changed(&envelope.source, agent_info);
                self.idle.record_heartbeat(agent_info);
            }
            Event::AgentStarted { .. } => self.registry.started(&self.db, &envelope.source, now).await?,
            Event::AgentTerminated { reason } => {
                self.registry.terminated(&self.db, &envelope.source, reason).await?;
                self.schedule_soon();
            }
            Event::DoSchedule {} => self.schedule_soon(),
            Event::SessionSuccess { session_id, .. } | Event::SessionFailure { session_id, .. } => {
                let success = matches!(envelope.event, Event::SessionSuccess { .. });
                lifecycle::batch_result(&self.db, *session_id, success).await?;
                self.destroy_session(*session_id, false, "task-finished").await?;
            }
            event => match lifecycle::apply_kernel_event(&self.db, event).await? {
                lifecycle::KernelEventOutcome::Applied(Some(status)) => {
                    tracing::info!(session = ?event.session_id(), %status, "session status");
                    if let Some(session_id) = event.session_id() {
                        if status == SessionStatus::Running {
                            // The network-idle timeout counts from here until traffic comes.
                            self.idle.touch(session_id);
                        }
                        self.announce(session_id, status).await;
                    }
                    if status.is_dead() {
                        // Resources came back: waiting sessions may fit now.
                        self.schedule_soon();
                    }
                }
                lifecycle::KernelEventOutcome::Applied(None) => {}
                lifecycle::KernelEventOutcome::StartedAfterEnd => {
                    // A kernel started for a session that has ended (destroyed while a creation
                    // was re-sent, or forced down while its agent was away): it must not keep
                    // running.
                    if let Event::KernelStarted { kernel_id, session_id, .. } = event {
                        self.destroy_orphan(&envelope.source, *kernel_id, *session_id);
                    }
                }
            },
        }
        Ok(())
    }

    /// Asks `agent` (in the background) to destroy a kernel the database has as ended.
    fn destroy_orphan(&self, agent: &str, kernel_id: KernelId, session_id: SessionId) {
        let (db, clients, agent) = (self.db.clone(), self.clients.clone(), agent.to_string());
        tokio::spawn(async move {
            let addr = match bai_core::AgentId::new(&agent) {
                Ok(id) => repo::get_agent(&db, &id).await.ok().flatten().map(|a| a.addr),
                Err(_) => None,
            };
            let Some(addr) = addr else {
                tracing::warn!(%agent, kernel = %kernel_id, "an ended kernel started on an unknown agent");
                return;
            };
            tracing::warn!(%agent, kernel = %kernel_id, "an ended kernel started again; destroying it");
            let request = pb::DestroyKernelRequest {
                kernel_id: kernel_id.to_string(),
                session_id: session_id.to_string(),
                reason: "session-ended".into(),
                suppress_events: true,
            };
            match clients.client(&addr) {
                Ok(mut c) => {
                    if let Err(e) = c.destroy_kernel(request).await {
                        tracing::warn!(%agent, kernel = %kernel_id, error = %e, "could not destroy an ended kernel");
                    }
                }
                Err(e) => tracing::warn!(%agent, error = %e, "no client for the agent"),
            }
        });
    }

    /// Sends the `session_*` event of a session's new status, when it has one.
    pub async fn announce(&self, session_id: SessionId, status: SessionStatus) {
        let creation_id = match repo::get_session(&self.db, session_id).await {
            Ok(Some(s)) => s.creation_id.unwrap_or_default(),
            _ => String::new(),
        };
        self.announce_as(session_id, status, creation_id).await;
    }

    /// [`announce`](Self::announce) with the session's `creation_id` already known.
    async fn announce_as(&self, session_id: SessionId, status: SessionStatus, creation_id: String) {
        let reason = String::new();
        let event = match status {
            SessionStatus::Pending => Event::SessionEnqueued { session_id, creation_id, reason },
            SessionStatus::Scheduled => Event::SessionScheduled { session_id, creation_id, reason },
            SessionStatus::Preparing | SessionStatus::Pulling | SessionStatus::Prepared | SessionStatus::Creating => {
                Event::SessionPreparing { session_id, creation_id, reason }
            }
            SessionStatus::Running => Event::SessionStarted { session_id, creation_id, reason },
            SessionStatus::Cancelled => Event::SessionCancelled { session_id, creation_id, reason },
            SessionStatus::Terminating | SessionStatus::Terminated | SessionStatus::Error => {
                let reason = match repo::get_session(&self.db, session_id).await {
                    Ok(Some(s)) => s.status_info.unwrap_or_default(),
                    _ => String::new(),
                };
                if status == SessionStatus::Terminating {
                    Event::SessionTerminating { session_id, reason }
                } else {
                    Event::SessionTerminated { session_id, reason }
                }
            }
            _ => return,
        };
        self.emit(event).await;
    }

    /// One scheduling pass and the dispatch of what it placed. A pass that placed or
    /// cancelled something runs the rest in a `scheduler_pass` span (empty passes, every
    /// `schedule-interval`, leave no trace), each placed session's dispatch in its own
    /// [`dispatch` span](Self::dispatch_span).
    pub async fn schedule_once(&self) -> Result<PassReport, DbError> {
        let started = Instant::now();
        let report = scheduler::schedule_pass(&self.db, &self.scheduler, Utc::now()).await;
        self.observe_action("session", "schedule", started, &report);
        let report = report?;
        if report.scheduled.is_empty() && report.cancelled.is_empty() {
            return Ok(report);
        }
        let pass = tracing::info_span!(
            "scheduler_pass",
            scheduled = report.scheduled.len(),
            cancelled = report.cancelled.len(),
            blocked = report.blocked,
            plan_ms = started.elapsed().as_millis() as u64,
        );
        tracing::Instrument::instrument(self.dispatch_placed(report), pass).await
    }

    async fn dispatch_placed(&self, report: PassReport) -> Result<PassReport, DbError> {
        for session_id in &report.cancelled {
            lock(&self.creation_traces).remove(session_id);
            self.announce(*session_id, SessionStatus::Cancelled).await;
        }
        // Claimed for dispatch all at once (a few statements whatever their number), then sent
        // to their agents concurrently: sessions are independent once placed (a slow agent, or
        // a long image pull behind its create_kernels, holds up only its own).
        let started = Instant::now();
        let claimed = scheduler::claim_for_dispatch(&self.db, &report.scheduled).await;
        self.observe_action("session", "claim", started, &claimed);
        let claimed = claimed?;
        for (session_id, e) in &claimed.failed {
            tracing::warn!(session = %session_id, error = %e, "dispatch failed");
        }
        for session_id in &claimed.skipped {
            tracing::info!(session = %session_id, "no longer SCHEDULED; not dispatched");
        }
        futures::stream::iter(claimed.ready.iter())
            .for_each_concurrent(DISPATCH_CONCURRENCY, |ready| {
                let span = self.dispatch_span(ready.session_id);
                let dispatch = async move {
                    self.announce_as(ready.session_id, SessionStatus::Scheduled, ready.creation_id.clone()).await;
                    let started = Instant::now();
                    let dispatched =
                        scheduler::send_creation(&self.db, &self.clients, ready, self.metrics().map(|m| m.as_ref()))
                            .await;
                    self.observe_action("session", "dispatch", started, &dispatched);
                    if let Err(e) = dispatched {
                        tracing::Span::current().record("otel.status_code", "ERROR");
                        tracing::warn!(session = %ready.session_id, error = %e, "dispatch failed");
                    }
                };
                tracing::Instrument::instrument(dispatch, span)
            })
            .await;
        Ok(report)
    }

    /// The sessions left SCHEDULED: placed by a scheduling pass whose manager died (`kill -9`,
    /// a crash) before it sent them to their agents. Nothing else ever dispatches them, so
    /// [`resume_scheduled`](Self::resume_scheduled) must, or they would hold their agents'
    /// slots forever. Read once when the loops start, before this manager places anything.
    pub async fn left_scheduled(&self) -> Result<Vec<SessionId>, DbError> {
        let filter = repo::SessionFilter {
            statuses: vec![SessionStatus::Scheduled],
            limit: 100_000,
            ..repo::SessionFilter::default()
        };
        let (sessions, _) = repo::list_sessions(&self.db, &filter).await?;
        // Oldest first, as they were placed.
        Ok(sessions.iter().rev().map(|s| SessionId::from_uuid(s.id)).collect())
    }

    /// Dispatches the sessions of `left` (see [`left_scheduled`](Self::left_scheduled)) whose
    /// agents this manager has heard from since it started — so their addresses are current —
    /// and returns those still waiting for theirs. Sessions no longer SCHEDULED are dropped.
    /// Safe next to another manager dispatching the same session: dispatch claims each kernel
    /// by moving it SCHEDULED → PREPARING with the transition check, so only one goes on.
    pub async fn resume_scheduled(&self, left: Vec<SessionId>) -> Vec<SessionId> {
        let mut waiting = Vec::new();
        for session_id in left {
            let (s, kernels) = match repo::get_session_with_kernels(&self.db, session_id).await {
                Ok(Some(found)) => found,
                Ok(None) => continue,
                Err(e) => {
                    tracing::warn!(session = %session_id, error = %e, "cannot read a session left SCHEDULED");
                    waiting.push(session_id);
                    continue;
                }
            };
            if s.status.0 != SessionStatus::Scheduled {
                continue;
            }
            let agents: Vec<&String> = kernels.iter().filter_map(|k| k.agent.as_ref()).collect();
            if agents.len() != kernels.len() || agents.iter().any(|a| self.registry.last_seen(a).is_none()) {
                waiting.push(session_id);
                continue;
            }
            tracing::info!(session = %session_id, "dispatching a session a previous run left SCHEDULED");
            // The agent may listen elsewhere since it was placed there: take its address now.
            for k in &kernels {
                let Some(agent) = k.agent.as_deref().and_then(|a| bai_core::AgentId::new(a).ok()) else { continue };
                if let Err(e) = repo::assign_kernel_agent(&self.db, KernelId::from_uuid(k.id), &agent).await {
                    tracing::warn!(kernel = %k.id, error = %e, "cannot refresh a kernel's agent address");
                }
            }
            let dispatched = tracing::Instrument::instrument(
                scheduler::dispatch_observed(&self.db, &self.clients, session_id, self.metrics().map(|m| m.as_ref())),
                self.dispatch_span(session_id),
            )
            .await;
            if let Err(e) = dispatched {
                tracing::warn!(session = %session_id, error = %e, "dispatch failed");
            }
        }
        waiting
    }

    /// Sets how long a session may stay between dispatch and RUNNING (PREPARING, PULLING,
    /// CREATING) without news before [`redispatch_stalled`](Self::redispatch_stalled) checks
    /// on it. Call before [`spawn`](Self::spawn).
    pub fn set_dispatch_timeout(&self, timeout: Duration) {
        let ms = timeout.as_millis().clamp(1, u64::MAX as u128) as u64;
        self.dispatch_timeout_ms.store(ms, std::sync::atomic::Ordering::Relaxed);
    }

    /// See [`set_dispatch_timeout`](Self::set_dispatch_timeout).
    pub fn dispatch_timeout(&self) -> Duration {
        Duration::from_millis(self.dispatch_timeout_ms.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// Sends again the creations that were lost: sessions PREPARING, PULLING or CREATING for
    /// longer than the dispatch timeout whose agents (each heard from since this manager
    /// started) neither hold all their kernels nor are working on them. That happens when a
    /// manager died between claiming a session and its `create_kernels` reaching the agent, or
    /// when an agent died while creating (its restart recovers only the containers that
    /// exist), or when the `kernel_started` event was lost. The agent's `create_kernels`
    /// answers kernels that exist as they are and announces them again, so sending twice
    /// never creates twice. Calls run in the background; the sessions sent are returned.
    pub async fn redispatch_stalled(self: &Arc<Self>) -> Result<Vec<SessionId>, DbError> {
        let filter = repo::SessionFilter {
            statuses: SessionStatus::BEING_CREATED.to_vec(),
            limit: 100_000,
            ..repo::SessionFilter::default()
        };
        let (sessions, _) = repo::list_sessions(&self.db, &filter).await?;
        let timeout = chrono::Duration::from_std(self.dispatch_timeout()).unwrap_or(chrono::Duration::MAX);
        let now = Utc::now();
        // One status call per agent and pass.
        let mut agent_status: std::collections::HashMap<String, Option<pb::AgentStatus>> = Default::default();
        let mut sent = Vec::new();
        for s in sessions {
            let session_id = SessionId::from_uuid(s.id);
            if s.status_changed.is_some_and(|at| now - at < timeout) {
                continue;
            }
            if lock(&self.redispatching).contains(&session_id) {
                continue;
            }
            let kernels = repo::list_kernels_of_session(&self.db, session_id).await?;
            let mut lost = false;
            let mut ready = true;
            for k in kernels.iter().filter(|k| !k.status.0.is_terminal()) {
                let (Some(agent), Some(addr)) = (k.agent.as_deref(), k.agent_addr.as_deref()) else {
                    ready = false;
                    break;
                };
                if self.registry.last_seen(agent).is_none() {
                    ready = false; // its address may be stale; wait for its heartbeat
                    break;
                }
                let status = match agent_status.get(addr) {
                    Some(status) => status.clone(),
                    None => {
                        let status = match self.clients.client(addr) {
                            Ok(mut c) => c.get_status(pb::GetStatusRequest {}).await.ok().map(|r| r.into_inner()),
                            Err(_) => None,
                        };
                        agent_status.insert(addr.to_string(), status.clone());
                        status
                    }
                };
                let Some(status) = status else {
                    ready = false; // unreachable: LOST handling is the sweeper's
                    break;
                };
                let id = k.id.to_string();
                if status.busy_kernels.contains(&id) {
                    ready = false; // being created (an image pull takes its time)
                    break;
                }
                if k.status.0 != KernelStatus::Running {
                    lost = true;
                }
            }
            if !ready || !lost {
                continue;
            }
            lock(&self.redispatching).insert(session_id);
            tracing::warn!(session = %session_id, status = %s.status.0, "the session's creation stalled; sending it to its agents again");
            sent.push(session_id);
            let me = self.clone();
            let span = tracing::info_span!("redispatch", session_id = %session_id);
            let resend = async move {
                if let Err(e) = scheduler::resend_creation(&me.db, &me.clients, session_id).await {
                    tracing::warn!(session = %session_id, error = %e, "re-sending the creation failed; trying again later");
                }
                lock(&me.redispatching).remove(&session_id);
            };
            tokio::spawn(tracing::Instrument::instrument(resend, span));
        }
        Ok(sent)
    }

    /// Destroys a session: PENDING (and not yet dispatched) sessions are cancelled at once;
    /// others go TERMINATING and their kernels are destroyed on the agents, whose
    /// `kernel_terminated` events finish the job. `forced` also terminates kernels whose agent
    /// cannot be reached.
    pub async fn destroy_session(
        &self,
        session_id: SessionId,
        forced: bool,
        reason: &str,
    ) -> Result<SessionStatus, DbError> {
        let started = Instant::now();
        let result = self.destroy_session_inner(session_id, forced, reason, None).await;
        self.observe_action("session", "destroy", started, &result);
        result
    }

    /// [`destroy_session`](Self::destroy_session) (not forced) by the manager itself, with
    /// `status_data` saying why (an idle checker's findings); counted as the action
    /// `session`/`terminate_idle`.
    pub async fn destroy_session_for(
        &self,
        session_id: SessionId,
        reason: &str,
        status_data: serde_json::Value,
    ) -> Result<SessionStatus, DbError> {
        let started = Instant::now();
        let result = self.destroy_session_inner(session_id, false, reason, Some(status_data)).await;
        self.observe_action("session", "terminate_idle", started, &result);
        result
    }

    async fn destroy_session_inner(
        &self,
        session_id: SessionId,
        forced: bool,
        reason: &str,
        status_data: Option<serde_json::Value>,
    ) -> Result<SessionStatus, DbError> {
        let (s, kernels) = repo::get_session_with_kernels(&self.db, session_id)
            .await?
            .ok_or_else(|| DbError::not_found("session", session_id))?;
        let status = s.status.0;
        if status.is_terminal() {
            return Ok(status);
        }
        let (status, kernels) = if matches!(status, SessionStatus::Pending) {
            // Cancel only if it is still PENDING, serialised with scheduling passes (the same
            // advisory lock on PostgreSQL; SQLite has one writer), so a session being placed
            // right now is destroyed the normal way instead.
            let txn = self.db.begin().await?;
            if txn.get_database_backend() == sea_orm::DatabaseBackend::Postgres {
                txn.execute_unprepared(&format!("SELECT pg_advisory_xact_lock({})", scheduler::SCHEDULING_LOCK))
                    .await?;
            }
            let current = repo::get_session(&txn, session_id).await?.map(|s| s.status.0).unwrap_or(status);
            if current == SessionStatus::Pending {
                for k in &kernels {
                    repo::force_kernel_status(
                        &txn,
                        KernelId::from_uuid(k.id),
                        KernelStatus::Cancelled,
                        Some(reason),
                        None,
                    )
                    .await?;
                }
                repo::force_session_status(&txn, session_id, SessionStatus::Cancelled, Some(reason), status_data)
                    .await?;
                txn.commit().await?;
                lock(&self.creation_traces).remove(&session_id);
                self.announce(session_id, SessionStatus::Cancelled).await;
                return Ok(SessionStatus::Cancelled);
            }
            txn.rollback().await?;
            let (s, kernels) = repo::get_session_with_kernels(&self.db, session_id)
                .await?
                .ok_or_else(|| DbError::not_found("session", session_id))?;
            (s.status.0, kernels)
        } else {
            (status, kernels)
        };
        if status.is_terminal() {
            return Ok(status);
        }
        if status != SessionStatus::Terminating {
            repo::force_session_status(&self.db, session_id, SessionStatus::Terminating, Some(reason), status_data)
                .await?;
            self.announce(session_id, SessionStatus::Terminating).await;
        }
        for k in &kernels {
            if k.status.0.is_terminal() {
                continue;
            }
            let kernel_id = KernelId::from_uuid(k.id);
            let Some(addr) = &k.agent_addr else {
                repo::force_kernel_status(&self.db, kernel_id, KernelStatus::Cancelled, Some(reason), None).await?;
                continue;
            };
            let layer_op = self.metrics().map(|m| m.layer_operation("client", "agent_client", "destroy_kernel"));
            let call = async {
                let mut client =
                    self.clients.client(addr).map_err(|e| ("invalid_address".to_string(), e.to_string()))?;
                client
                    .destroy_kernel(pb::DestroyKernelRequest {
                        kernel_id: kernel_id.to_string(),
                        session_id: session_id.to_string(),
                        reason: reason.to_string(),
                        suppress_events: false,
                    })
                    .await
                    .map_err(|s| {
                        (format!("{:?}", s.code()).to_ascii_lowercase(), format!("{}: {}", s.code(), s.message()))
                    })
            };
            let call = call.await;
            if let Some(op) = layer_op {
                op.finish(call.as_ref().err().map(|(code, _)| code.as_str()));
            }
            let call = call.map_err(|(_, msg)| msg);
            match call {
                Ok(reply) => {
                    // The agent answered after the container was gone; apply it now rather
                    // than wait for the event (which then changes nothing).
                    let reply = reply.into_inner();
                    let event = Event::KernelTerminated {
                        kernel_id,
                        session_id,
                        reason: reply.reason,
                        exit_code: reply.exit_code,
                    };
                    if let Some(status) = lifecycle::kernel_event(&self.db, &event).await? {
                        self.announce(session_id, status).await;
                    }
                }
                Err(e) if forced => {
                    tracing::warn!(kernel = %kernel_id, error = %e, "agent unreachable; forcing the kernel terminated");
                    let event = Event::KernelTerminated {
                        kernel_id,
                        session_id,
                        reason: "force-terminated".into(),
                        exit_code: -1,
                    };
                    if let Some(status) = lifecycle::kernel_event(&self.db, &event).await? {
                        self.announce(session_id, status).await;
                    }
                }
                Err(e) => {
                    tracing::warn!(kernel = %kernel_id, error = %e, "destroy_kernel failed; the session stays TERMINATING")
                }
            }
        }
        if let Some(status) = lifecycle::update_session(&self.db, session_id).await? {
            self.announce(session_id, status).await;
        }
        let now = repo::get_session(&self.db, session_id).await?.map(|s| s.status.0).unwrap_or(status);
        self.schedule_soon();
        Ok(now)
    }

    /// Marks silent agents LOST (their kernels stay as they are: a returning agent's
    /// reconciliation decides their fate).
    pub async fn sweep_agents(&self) -> Result<(), DbError> {
        let started = Instant::now();
        let lost = self.registry.sweep(&self.db, Utc::now()).await;
        self.observe_action("agent", "sweep", started, &lost);
        for agent in lost? {
            tracing::warn!(agent = %agent, "agent lost");
        }
        Ok(())
    }

    /// Handles one delivered event (errors are logged and counted) and acknowledges it.
    async fn handle_delivery(&self, delivery: &bai_agent_runtime::bus::Delivery) {
        match &delivery.envelope {
            Ok(envelope) => {
                let started = Instant::now();
                let handled = self.handle(envelope).await;
                if let Some(m) = self.metrics() {
                    let error = handled.as_ref().err().map(|e| ErrorInfo::from_db(e, "handle"));
                    m.observe_event(envelope.event.name(), started.elapsed(), error.as_ref());
                }
                if let Err(e) = handled {
                    tracing::warn!(event = envelope.event.name(), error = %e, "event handler failed");
                }
            }
            Err(e) => tracing::warn!(error = %e, "undecodable event dropped"),
        }
        if let Err(e) = self.bus.ack(EVENT_GROUP, &delivery.id).await {
            tracing::warn!(error = %e, "could not acknowledge an event");
        }
    }

    /// Starts the event consumer, the scheduler loop, the sweeper, the utilisation sampler,
    /// the check for stalled creations ([`Manager::redispatch_stalled`]) and the idle checks
    /// ([`crate::idle::check_sessions`], every `[idle] check-interval`).
    pub fn spawn(self: &Arc<Self>, schedule_interval: Duration) -> Vec<JoinHandle<()>> {
        // Events are handled in EVENT_LANES ordered lanes: those of one session (or, for agent
        // events, of one agent) always in the same lane, in the order they arrived; different
        // sessions concurrently, so a burst of creations is not handled one event at a time.
        let lanes: Vec<tokio::sync::mpsc::Sender<bai_agent_runtime::bus::Delivery>> = (0..EVENT_LANES)
            .map(|_| {
                let (tx, mut rx) = tokio::sync::mpsc::channel::<bai_agent_runtime::bus::Delivery>(256);
                let me = self.clone();
                tokio::spawn(async move {
                    while let Some(delivery) = rx.recv().await {
                        me.handle_delivery(&delivery).await;
                    }
                });
                tx
            })
            .collect();
        let events = {
            let me = self.clone();
            tokio::spawn(async move {
                loop {
                    let mut deliveries = match me.bus.consume(EVENT_GROUP, &me.id).await {
                        Ok(d) => {
                            me.consuming.send_replace(true);
                            d
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "cannot consume events; retrying in 1 s");
                            tokio::time::sleep(Duration::from_secs(1)).await;
                            continue;
                        }
                    };
                    while let Some(item) = deliveries.next().await {
                        let delivery = match item {
                            Ok(d) => d,
                            Err(e) => {
                                // The stream's connection may be dead for good (Redis
                                // restarted: the connection is gone, and so is the consumer
                                // group if Redis kept no data). Consume anew: a new connection,
                                // the group re-created, this consumer's pending entries first.
                                tracing::warn!(error = %e, "event stream error; reconnecting in 1 s");
                                tokio::time::sleep(Duration::from_secs(1)).await;
                                break;
                            }
                        };
                        let lane = lane_of(&delivery, lanes.len());
                        if lanes[lane].send(delivery).await.is_err() {
                            tracing::error!("an event lane stopped; events are no longer handled");
                            return;
                        }
                    }
                }
            })
        };
        let scheduler = {
            let me = self.clone();
            tokio::spawn(async move {
                let mut left = me.left_scheduled().await.unwrap_or_else(|e| {
                    tracing::warn!(error = %e, "cannot list the sessions left SCHEDULED");
                    Vec::new()
                });
                loop {
                    let _ = tokio::time::timeout(schedule_interval, me.wake_scheduler.notified()).await;
                    if !left.is_empty() {
                        left = me.resume_scheduled(left).await;
                    }
                    if let Err(e) = me.schedule_once().await {
                        tracing::warn!(error = %e, "scheduling pass failed");
                    }
                }
            })
        };
        let sweeper = {
            let me = self.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(1));
                loop {
                    tick.tick().await;
                    if let Err(e) = me.sweep_agents().await {
                        tracing::warn!(error = %e, "agent sweep failed");
                    }
                }
            })
        };
        let sampler = {
            let me = self.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(crate::utilisation::SAMPLE_INTERVAL);
                loop {
                    tick.tick().await;
                    if let Err(e) = me.utilisation.sample(&me.db, Utc::now()).await {
                        tracing::warn!(error = %e, "utilisation sample failed");
                    }
                }
            })
        };
        let redispatcher = {
            let me = self.clone();
            tokio::spawn(async move {
                let every = (me.dispatch_timeout() / 2).clamp(Duration::from_millis(200), Duration::from_secs(10));
                let mut tick = tokio::time::interval(every);
                loop {
                    tick.tick().await;
                    if let Err(e) = me.redispatch_stalled().await {
                        tracing::warn!(error = %e, "checking stalled creations failed");
                    }
                }
            })
        };
        let idle = {
            let me = self.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(me.idle.config().check_interval);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    let started = Instant::now();
                    let checked = crate::idle::check_sessions(&me).await;
                    me.observe_action("session", "idle_check", started, &checked);
                    if let Err(e) = checked {
                        tracing::warn!(error = %e, "idle check failed");
                    }
                    me.idle.pass_done();
                }
            })
        };
        vec![events, scheduler, sweeper, sampler, redispatcher, idle]
    }

    /// Sends an event from the manager.
    pub async fn emit(&self, event: Event) {
        lifecycle::emit(self.bus.as_ref(), event).await;
    }
}

/// A std mutex's guard, poisoned or not (the data stays consistent: every critical section is
/// a single insert or remove).
fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
