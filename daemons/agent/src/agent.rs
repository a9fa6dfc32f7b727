//! [`Agent`]: the daemon's state and every operation the RPC server exposes, independent of
//! gRPC so that it can be embedded and tested directly.
//!
//! Each kernel has a lifecycle lock: creation, destruction, self-termination handling and the
//! periodic reconciliation take it, so two of them never act on one kernel at once (the
//! reconciliation skips a kernel whose lock is held instead of waiting).
//!
//! Events (with the original names) go out through the [`EventBus`]; a bus failure is logged
//! and never fails the operation that produced the event.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bai_agent_runtime::bus::{Envelope, EventBus};
use bai_agent_runtime::exec::{self, ExecResult, KernelRunner, Mode};
use bai_agent_runtime::kernel::{Kernel, KernelConfig, KernelRuntime, VFolderRequest};
use bai_agent_runtime::labels::{self, ServicePort};
use bai_agent_runtime::rpc::{pb, slots_from_wire, slots_to_wire};
use bai_agent_runtime::runtime::{PullProgress, Termination};
use bai_agent_runtime::services::{ServiceLauncher, ServiceOptions, Started};
use bai_agent_runtime::stats::{ContainerMetrics, ContainerTarget, MetricValue, NodeStatCollector, StatCollector};
use bai_agent_runtime::Error as RuntimeError;
use bai_core::{AgentId, Event, KernelId, MountPermission, SessionId};
use serde_json::{json, Value};
use tokio::sync::Mutex as AsyncMutex;

use crate::error::{AgentError, Result};
use crate::metrics::{AgentMetrics, KernelMetricLabels, StatScope};

/// Identity and timing settings of an [`Agent`].
#[derive(Debug, Clone)]
pub struct AgentSettings {
    /// This agent's id.
    pub id: AgentId,
    /// The region reported in heartbeats.
    pub region: String,
    /// The scaling group.
    pub scaling_group: String,
    /// The address the manager calls (`host:port`).
    pub rpc_addr: String,
    /// The host service ports are reachable at.
    pub public_host: String,
    /// Seconds between heartbeats, reconciliations and statistics sweeps.
    pub heartbeat_interval: Duration,
    /// See above.
    pub sync_interval: Duration,
    /// See above.
    pub stat_interval: Duration,
}

/// Who owns a kernel (for metric labels).
#[derive(Debug, Clone, Default)]
struct Owner {
    user_id: String,
    project_id: String,
}

/// The agent. Share it as `Arc<Agent>`.
pub struct Agent {
    settings: AgentSettings,
    kernels: KernelRuntime,
    bus: Arc<dyn EventBus>,
    metrics: Arc<AgentMetrics>,
    locks: Mutex<HashMap<KernelId, Arc<AsyncMutex<()>>>>,
    runners: Mutex<HashMap<KernelId, Arc<KernelRunner>>>,
    runner_start: AsyncMutex<()>,
    watchers: Mutex<HashMap<KernelId, tokio::task::AbortHandle>>,
    owners: Mutex<HashMap<KernelId, Owner>>,
    stats: Mutex<StatState>,
    services: ServiceLauncher,
}

struct StatState {
    containers: StatCollector,
    node: NodeStatCollector,
    last: BTreeMap<KernelId, ContainerMetrics>,
    /// The main PID of each kernel's container, by container id, as last inspected. A sweep
    /// reads cgroups through it without asking the engine again; a container whose read fails
    /// (it restarted, exited, or the PID now belongs to someone else: the collector checks the
    /// PID's cgroup names the container) is inspected afresh on the next sweep.
    pids: HashMap<String, u32>,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent").field("id", &self.settings.id).field("kernels", &self.kernels).finish_non_exhaustive()
    }
}

fn now_unix() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Parses an id field of a request.
pub fn parse_id<T: std::str::FromStr>(field: &str, value: &str) -> Result<T>
where
    T::Err: std::fmt::Display,
{
    if value.is_empty() {
        return Err(AgentError::invalid(field, "is required"));
    }
    value.parse().map_err(|e: T::Err| AgentError::invalid(field, format!("{value:?}: {e}")))
}

fn exit_code(termination: Option<&Termination>) -> i32 {
    match termination {
        Some(t) => i32::try_from(t.exit_code()).unwrap_or(-1),
        None => -1,
    }
}

/// The working directory of kernels, where uploads and listings are confined.
pub const WORK_DIR: &str = "/home/work";

/// A path under [`WORK_DIR`], given relative to it or absolute under it, as its relative
/// components. Refuses `..`, and absolute paths elsewhere.
pub fn work_relative(field: &str, path: &str) -> Result<Vec<String>> {
    let rest = match path.strip_prefix(WORK_DIR) {
        Some(rest) if rest.is_empty() || rest.starts_with('/') => rest,
        _ if path.starts_with('/') => {
            return Err(AgentError::invalid(field, format!("{path:?} is outside {WORK_DIR}")));
        }
        _ => path,
    };
    let mut parts = Vec::new();
    for part in rest.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err(AgentError::invalid(field, format!("{path:?} must not contain `..`"))),
            p if p.contains('\0') => return Err(AgentError::invalid(field, "must not contain NUL")),
            p => parts.push(p.to_string()),
        }
    }
    Ok(parts)
}

impl Agent {
    /// An agent over `kernels`, sending events to `bus` and recording `metrics`. Call
    /// [`Agent::recover`] before serving.
    pub fn new(
        settings: AgentSettings,
        kernels: KernelRuntime,
        bus: Arc<dyn EventBus>,
        metrics: Arc<AgentMetrics>,
    ) -> Result<Self> {
        let containers = StatCollector::new("/")?;
        let node = NodeStatCollector::new("/", vec!["/".into()]);
        Ok(Self {
            settings,
            kernels,
            bus,
            metrics,
            locks: Mutex::new(HashMap::new()),
            runners: Mutex::new(HashMap::new()),
            runner_start: AsyncMutex::new(()),
            watchers: Mutex::new(HashMap::new()),
            owners: Mutex::new(HashMap::new()),
            stats: Mutex::new(StatState { containers, node, last: BTreeMap::new(), pids: HashMap::new() }),
            services: ServiceLauncher::default(),
        })
    }

    /// The settings.
    pub fn settings(&self) -> &AgentSettings {
        &self.settings
    }

    /// The kernel runtime.
    pub fn kernels(&self) -> &KernelRuntime {
        &self.kernels
    }

    /// The metrics.
    pub fn metrics(&self) -> &Arc<AgentMetrics> {
        &self.metrics
    }

    /// Sends an event; failures are logged, never returned.
    pub async fn emit(&self, event: Event) {
        let envelope = Envelope::new(self.settings.id.as_str(), event);
        if let Err(e) = self.bus.produce(&envelope).await {
            tracing::warn!(event = envelope.event.name(), error = %e, "could not send an event");
        }
    }

    fn kernel_lock(&self, kernel_id: KernelId) -> Arc<AsyncMutex<()>> {
        lock(&self.locks).entry(kernel_id).or_default().clone()
    }

    /// Whether an operation holds the kernel's lifecycle lock right now.
    fn is_busy(&self, kernel_id: &KernelId) -> bool {
        lock(&self.locks).get(kernel_id).is_some_and(|l| l.try_lock().is_err())
    }

    fn forget_lock(&self, kernel_id: KernelId) {
        let mut locks = lock(&self.locks);
        if let Some(l) = locks.get(&kernel_id) {
            // Only this holder and the map: nobody waits for it.
            if Arc::strong_count(l) <= 2 {
                locks.remove(&kernel_id);
            }
        }
    }

    /// Takes back the kernels that survived a restart of the agent; reports those that ended
    /// meanwhile as terminated (`self-terminated`) and watches the others.
    pub async fn recover(self: &Arc<Self>) -> Result<bai_agent_runtime::kernel::Recovery> {
        let report = self.kernels.recover().await?;
        for (kernel_id, termination) in &report.ended {
            // The session id is gone with the container; the labels were read by recover.
            tracing::info!(kernel = %kernel_id, ?termination, "kernel ended while the agent was down");
        }
        for kernel_id in &report.recovered {
            if let Some(kernel) = self.kernels.kernel(*kernel_id) {
                self.watch(&kernel);
                // Announced again: the `kernel_started` of a kernel created just before the
                // agent (or the manager with it) died may never have reached the manager,
                // which would keep its session PREPARING forever. A manager that already has
                // the kernel RUNNING ignores the repeat.
                self.emit(Event::KernelStarted {
                    kernel_id: kernel.kernel_id,
                    session_id: kernel.session_id,
                    reason: "recovered".into(),
                    creation_info: self.creation_info(&kernel),
                })
                .await;
            }
        }
        for (container, reason) in &report.failed {
            tracing::warn!(container = %container, reason = %reason, "could not take back a container");
        }
        self.metrics.set_kernel_count(self.kernels.kernel_ids().len() as i64);
        Ok(report)
    }

    /// Watches a kernel's container and cleans up when it ends by itself.
    fn watch(self: &Arc<Self>, kernel: &Kernel) {
        let agent = Arc::downgrade(self);
        let (kernel_id, container_id) = (kernel.kernel_id, kernel.container_id.clone());
        let runtime = self.kernels.runtime().clone();
        let task = tokio::spawn(async move {
            let termination = runtime.wait(&container_id).await.ok();
            if let Some(agent) = agent.upgrade() {
                lock(&agent.watchers).remove(&kernel_id);
                agent.clean_ended(kernel_id, "self-terminated", termination).await;
            }
        });
        lock(&self.watchers).insert(kernel_id, task.abort_handle());
    }

    fn unwatch(&self, kernel_id: KernelId) {
        if let Some(handle) = lock(&self.watchers).remove(&kernel_id) {
            handle.abort();
        }
    }

    /// Releases a kernel whose container ended (or vanished) without being asked to.
    async fn clean_ended(&self, kernel_id: KernelId, reason: &str, termination: Option<Termination>) {
        let guard = self.kernel_lock(kernel_id);
        let _held = guard.lock().await;
        let Some(kernel) = self.kernels.kernel(kernel_id) else { return };
        let termination = match self.kernels.destroy_kernel(kernel_id).await {
            Ok(t) => t.or(termination),
            Err(e) => {
                tracing::warn!(kernel = %kernel_id, error = %e, "could not clean up an ended kernel");
                termination
            }
        };
        self.after_destroy(kernel_id).await;
        self.emit(Event::KernelTerminated {
            kernel_id,
            session_id: kernel.session_id,
            reason: reason.to_string(),
            exit_code: exit_code(termination.as_ref()),
        })
        .await;
        drop(_held);
        self.forget_lock(kernel_id);
    }

    async fn after_destroy(&self, kernel_id: KernelId) {
        self.unwatch(kernel_id);
        let runner = lock(&self.runners).remove(&kernel_id);
        if let Some(runner) = runner {
            let _ = runner.close().await;
        }
        lock(&self.owners).remove(&kernel_id);
        lock(&self.stats).last.remove(&kernel_id);
        self.metrics.forget_kernel(&kernel_id.to_string());
        self.metrics.set_kernel_count(self.kernels.kernel_ids().len() as i64);
    }

    fn creation_info(&self, kernel: &Kernel) -> Value {
        json!({
            "id": kernel.kernel_id.to_string(),
            "container_id": kernel.container_id,
            "kernel_host": self.settings.public_host,
            "agent_addr": self.settings.rpc_addr,
            "scaling_group": self.settings.scaling_group,
            "service_ports": kernel.service_ports.iter().map(|s| {
                let mut port = json!({
                    "name": s.name,
                    "protocol": s.protocol,
                    "container_ports": s.container_ports,
                    "host_ports": s.container_ports.iter().filter_map(|c| kernel.host_ports.get(c)).collect::<Vec<_>>(),
                });
                if let Some(def) = kernel.service_defs.get(&s.name) {
                    if let Some(t) = &def.url_template {
                        port["url_template"] = json!(t);
                    }
                    if !def.allowed_arguments.is_empty() {
                        port["allowed_arguments"] = json!(def.allowed_arguments);
                    }
                    if !def.allowed_envs.is_empty() {
                        port["allowed_envs"] = json!(def.allowed_envs);
                    }
                }
                port
            }).collect::<Vec<_>>(),
            "resource_spec": kernel.allocation,
        })
    }

    fn created(&self, kernel: &Kernel) -> pb::KernelCreated {
        pb::KernelCreated {
            kernel_id: kernel.kernel_id.to_string(),
            container_id: kernel.container_id.clone(),
            kernel_host: self.settings.public_host.clone(),
            service_ports: service_ports(kernel),
            resource_spec_json: serde_json::to_string(&kernel.allocation).unwrap_or_default(),
            agent_addr: self.settings.rpc_addr.clone(),
            scaling_group: self.settings.scaling_group.clone(),
        }
    }

    /// Validates a creation request completely before anything is created.
    fn parse_creation(&self, request: &pb::CreateKernelsRequest) -> Result<(SessionId, Vec<(KernelConfig, Owner)>)> {
        let session_id: SessionId = parse_id("session_id", &request.session_id)?;
        if request.kernels.is_empty() {
            return Err(AgentError::invalid("kernels", "at least one kernel is required"));
        }
        match request.session_type.as_str() {
            "" | "interactive" | "batch" | "inference" => {}
            other => {
                return Err(AgentError::invalid(
                    "session_type",
                    format!("{other:?} is not interactive, batch or inference"),
                ))
            }
        }
        if request.session_type == "batch" && request.startup_command.trim().is_empty() {
            return Err(AgentError::invalid("startup_command", "a batch session needs a startup command"));
        }
        if !(request.batch_timeout.is_finite() && request.batch_timeout >= 0.0) {
            return Err(AgentError::invalid("batch_timeout", "must be a non-negative number of seconds"));
        }
        let mut seen = std::collections::BTreeSet::new();
        let mut configs = Vec::new();
        for (i, k) in request.kernels.iter().enumerate() {
            let field = |name: &str| format!("kernels[{i}].{name}");
            let kernel_id: KernelId = parse_id(&field("kernel_id"), &k.kernel_id)?;
            if !seen.insert(kernel_id) {
                return Err(AgentError::invalid(field("kernel_id"), "appears twice in the request"));
            }
            if k.image.trim().is_empty() {
                return Err(AgentError::invalid(field("image"), "is required"));
            }
            let resources = slots_from_wire(&field("resource_slots"), &k.resource_slots)?;
            let mounts = k
                .mounts
                .iter()
                .enumerate()
                .map(|(j, m)| {
                    let permission = match m.permission.as_str() {
                        "ro" => MountPermission::ReadOnly,
                        "rw" | "" => MountPermission::ReadWrite,
                        "wd" => MountPermission::ReadWriteDelete,
                        other => {
                            return Err(AgentError::invalid(
                                format!("kernels[{i}].mounts[{j}].permission"),
                                format!("{other:?} is not ro, rw or wd"),
                            ))
                        }
                    };
                    Ok(VFolderRequest { folder: m.folder.clone(), name: m.name.clone(), permission })
                })
                .collect::<Result<Vec<_>>>()?;
            let mut environ = k.environ.clone();
            environ.insert(
                "BACKENDAI_CLUSTER_ROLE".into(),
                if k.cluster_role.is_empty() { "main".into() } else { k.cluster_role.clone() },
            );
            environ.insert("BACKENDAI_CLUSTER_IDX".into(), k.cluster_idx.to_string());
            if !k.cluster_hostname.is_empty() {
                environ.insert("BACKENDAI_CLUSTER_HOST".into(), k.cluster_hostname.clone());
            }
            let config = KernelConfig {
                kernel_id,
                session_id,
                image: k.image.clone(),
                resources,
                shmem: (k.shmem > 0).then_some(k.shmem),
                environ,
                mounts,
                scratch_quota: (k.scratch_quota > 0).then_some(k.scratch_quota),
                owner_user_id: (!k.owner_user_id.is_empty()).then(|| k.owner_user_id.clone()),
                cmd: k.cmd.clone(),
            };
            configs.push((config, Owner { user_id: k.owner_user_id.clone(), project_id: k.owner_project_id.clone() }));
        }
        Ok((session_id, configs))
    }

    /// Creates the kernels of one session, all of them or none: when one fails, the ones
    /// already created are destroyed (`failed-to-create`) and the error is returned.
    pub async fn create_kernels(
        self: &Arc<Self>,
        request: &pb::CreateKernelsRequest,
    ) -> Result<Vec<pb::KernelCreated>> {
        let (session_id, configs) = self.parse_creation(request)?;
        let guards: Vec<_> = configs.iter().map(|(c, _)| self.kernel_lock(c.kernel_id)).collect();
        let mut held = Vec::new();
        for g in &guards {
            held.push(g.lock().await);
        }
        let mut created: Vec<Kernel> = Vec::new();
        // Kernels that exist already: the request was sent again (a manager re-dispatching a
        // creation whose outcome it lost, see the manager's `redispatch_stalled`). They are
        // answered and announced as they are, never created twice.
        let mut existing: Vec<Kernel> = Vec::new();
        let mut failure = None;
        for (config, owner) in &configs {
            let kernel_id = config.kernel_id;
            if let Some(kernel) = self.kernels.kernel(kernel_id) {
                tracing::info!(kernel = %kernel_id, "create_kernels for a kernel that exists: answering it as created");
                existing.push(kernel);
                continue;
            }
            let info = json!({});
            self.emit(Event::KernelPreparing {
                kernel_id,
                session_id,
                reason: String::new(),
                creation_info: info.clone(),
            })
            .await;
            if let Err(e) = self.ensure_image(kernel_id, session_id, &config.image).await {
                failure = Some(e);
                break;
            }
            self.emit(Event::KernelCreating { kernel_id, session_id, reason: String::new(), creation_info: info })
                .await;
            let container = tracing::info_span!("create_container", kernel_id = %kernel_id, image = %config.image);
            match tracing::Instrument::instrument(self.kernels.create_kernel(config), container).await {
                Ok(kernel) => {
                    lock(&self.owners).insert(kernel_id, owner.clone());
                    created.push(kernel);
                }
                Err(e) => {
                    failure = Some(AgentError::from(e));
                    break;
                }
            }
        }
        if let Some(error) = failure {
            for kernel in &created {
                if let Err(e) = self.kernels.destroy_kernel(kernel.kernel_id).await {
                    tracing::warn!(kernel = %kernel.kernel_id, error = %e, "could not undo a kernel of a failed creation");
                }
                self.after_destroy(kernel.kernel_id).await;
            }
            for (config, _) in configs.iter().filter(|(c, _)| !existing.iter().any(|k| k.kernel_id == c.kernel_id)) {
                self.emit(Event::KernelTerminated {
                    kernel_id: config.kernel_id,
                    session_id,
                    reason: "failed-to-create".into(),
                    exit_code: -1,
                })
                .await;
            }
            drop(held);
            for (config, _) in &configs {
                self.forget_lock(config.kernel_id);
            }
            return Err(error);
        }
        let mut replies = Vec::new();
        for kernel in &created {
            self.watch(kernel);
        }
        for kernel in created.iter().chain(&existing) {
            self.emit(Event::KernelStarted {
                kernel_id: kernel.kernel_id,
                session_id,
                reason: String::new(),
                creation_info: self.creation_info(kernel),
            })
            .await;
            replies.push(self.created(kernel));
        }
        self.metrics.set_kernel_count(self.kernels.kernel_ids().len() as i64);
        drop(held);
        for (config, _) in &configs {
            self.forget_lock(config.kernel_id);
        }
        // A batch job starts with its main kernel, only when that was created now.
        if request.session_type == "batch" && created.first().is_some_and(|k| k.kernel_id == configs[0].0.kernel_id) {
            let agent = self.clone();
            let main = created[0].clone();
            let command = request.startup_command.clone();
            let timeout = (request.batch_timeout > 0.0).then(|| Duration::from_secs_f64(request.batch_timeout));
            tokio::spawn(async move { agent.run_batch_session(main, command, timeout).await });
        }
        Ok(replies)
    }

    /// Pulls the image when it is missing, emitting `kernel_pulling`.
    async fn ensure_image(&self, kernel_id: KernelId, session_id: SessionId, image: &str) -> Result<()> {
        let runtime = self.kernels.runtime();
        match runtime.inspect_image(image).await {
            Ok(_) => Ok(()),
            Err(RuntimeError::NotFound { .. }) => {
                self.emit(Event::KernelPulling {
                    kernel_id,
                    session_id,
                    reason: String::new(),
                    creation_info: json!({}),
                })
                .await;
                runtime.pull_image(image, &|_| {}).await?;
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn run_batch_session(self: Arc<Self>, kernel: Kernel, command: String, timeout: Option<Duration>) {
        let session_id = kernel.session_id;
        self.emit(Event::ExecutionStarted { session_id }).await;
        let result =
            exec::run_batch(self.kernels.runtime().as_ref(), &kernel.container_id, None, &command, timeout).await;
        let (event, reason, code) = match &result {
            Ok(r) if r.status == exec::RunStatus::ExecTimeout => {
                (Event::ExecutionTimeout { session_id }, "task-timeout", -2)
            }
            Ok(r) => {
                let code = r.exit_code.and_then(|c| i32::try_from(c).ok()).unwrap_or(-1);
                (Event::ExecutionFinished { session_id }, if code == 0 { "task-finished" } else { "task-failed" }, code)
            }
            Err(e) => {
                tracing::warn!(session = %session_id, error = %e, "batch execution failed");
                (Event::ExecutionCancelled { session_id }, "task-cancelled", -2)
            }
        };
        self.emit(event).await;
        let end = if code == 0 {
            Event::SessionSuccess { session_id, reason: reason.into(), exit_code: code }
        } else {
            Event::SessionFailure { session_id, reason: reason.into(), exit_code: code }
        };
        self.emit(end).await;
    }

    /// Destroys a kernel. An unknown kernel is reported terminated (`already-terminated`) and
    /// answered normally, as the original does.
    pub async fn destroy_kernel(
        &self,
        kernel_id: KernelId,
        session_id: Option<SessionId>,
        reason: &str,
        suppress_events: bool,
    ) -> Result<(i32, String)> {
        let reason = if reason.is_empty() { "user-requested" } else { reason };
        let guard = self.kernel_lock(kernel_id);
        let held = guard.lock().await;
        let Some(kernel) = self.kernels.kernel(kernel_id) else {
            drop(held);
            self.forget_lock(kernel_id);
            if let (Some(session_id), false) = (session_id, suppress_events) {
                self.emit(Event::KernelTerminated {
                    kernel_id,
                    session_id,
                    reason: "already-terminated".into(),
                    exit_code: -1,
                })
                .await;
            }
            return Ok((-1, "already-terminated".into()));
        };
        if let Some(s) = session_id {
            if s != kernel.session_id {
                return Err(AgentError::invalid(
                    "session_id",
                    format!("kernel {kernel_id} belongs to session {}", kernel.session_id),
                ));
            }
        }
        if !suppress_events {
            self.emit(Event::KernelTerminating {
                kernel_id,
                session_id: kernel.session_id,
                reason: reason.into(),
                exit_code: -1,
            })
            .await;
        }
        // The watcher stays until the kernel is gone: if it wakes meanwhile it waits for the
        // lock and then finds nothing to clean; if destroying fails, it keeps watching.
        let termination = self.kernels.destroy_kernel(kernel_id).await?;
        self.after_destroy(kernel_id).await;
        let code = exit_code(termination.as_ref());
        if !suppress_events {
            self.emit(Event::KernelTerminated {
                kernel_id,
                session_id: kernel.session_id,
                reason: reason.into(),
                exit_code: code,
            })
            .await;
        }
        drop(held);
        self.forget_lock(kernel_id);
        Ok((code, reason.to_string()))
    }

    /// Restarts a kernel's container in place: the same resources, ports and scratch.
    pub async fn restart_kernel(self: &Arc<Self>, kernel_id: KernelId) -> Result<pb::KernelCreated> {
        let guard = self.kernel_lock(kernel_id);
        let _held = guard.lock().await;
        let kernel = self
            .kernels
            .kernel(kernel_id)
            .ok_or_else(|| RuntimeError::NotFound { kind: "kernel", id: kernel_id.to_string() })?;
        self.unwatch(kernel_id);
        let runner = lock(&self.runners).remove(&kernel_id);
        if let Some(runner) = runner {
            let _ = runner.close().await;
        }
        let runtime = self.kernels.runtime();
        runtime.stop(&kernel.container_id, Duration::from_secs(10)).await?;
        // Its main process changes: the statistics sweep must inspect it again.
        lock(&self.stats).pids.remove(&kernel.container_id);
        runtime.start(&kernel.container_id).await?;
        self.watch(&kernel);
        Ok(self.created(&kernel))
    }

    fn kernel_of(&self, field: &str, kernel_id: &str) -> Result<Kernel> {
        let kernel_id: KernelId = parse_id(field, kernel_id)?;
        self.kernels
            .kernel(kernel_id)
            .ok_or_else(|| RuntimeError::NotFound { kind: "kernel", id: kernel_id.to_string() }.into())
    }

    async fn runner(&self, kernel: &Kernel) -> Result<Arc<KernelRunner>> {
        if let Some(r) = lock(&self.runners).get(&kernel.kernel_id) {
            if r.ended().is_none() {
                return Ok(r.clone());
            }
        }
        let _starting = self.runner_start.lock().await;
        if let Some(r) = lock(&self.runners).get(&kernel.kernel_id) {
            if r.ended().is_none() {
                return Ok(r.clone());
            }
        }
        let runtime = self.kernels.runtime().clone();
        let config = if runtime.supports_bind_mounts() {
            exec::RunnerConfig::default()
        } else {
            // Only the working directory is reachable: the runner goes there.
            exec::RunnerConfig { runner_path: ".bai_runner.py".into(), ..Default::default() }
        };
        let runner = Arc::new(KernelRunner::start_with(runtime, &kernel.container_id, config).await?);
        lock(&self.runners).insert(kernel.kernel_id, runner.clone());
        Ok(runner)
    }

    /// Runs code: query, continue and input modes go through the kernel's runner, sending
    /// console records to `sink` as they arrive, for at most `flush_timeout` before answering
    /// `continued`; batch mode runs `code` (with `build` and `timeout` from the options) and
    /// returns when it ends.
    pub async fn execute(
        &self,
        request: &pb::ExecuteRequest,
        sink: &(dyn Fn(pb::ConsoleRecord) -> bool + Send + Sync),
    ) -> Result<pb::ExecuteResult> {
        let kernel = self.kernel_of("kernel_id", &request.kernel_id)?;
        if !request.session_id.is_empty() {
            let session_id: SessionId = parse_id("session_id", &request.session_id)?;
            if session_id != kernel.session_id {
                return Err(AgentError::invalid(
                    "session_id",
                    format!("kernel {} belongs to session {}", kernel.kernel_id, kernel.session_id),
                ));
            }
        }
        let flush = match request.flush_timeout {
            0.0 => Duration::from_secs(2),
            t if t.is_finite() && t > 0.0 && t <= 3600.0 => Duration::from_secs_f64(t),
            t => {
                return Err(AgentError::invalid(
                    "flush_timeout",
                    format!("{t} is not a number of seconds in (0, 3600]"),
                ))
            }
        };
        if request.mode == "batch" {
            return self.execute_batch(&kernel, request, sink).await;
        }
        let mode: Mode = request.mode.parse().map_err(AgentError::from)?;
        let runner = self.runner(&kernel).await?;
        let deadline = Instant::now() + flush;
        let mut run_id = (!request.run_id.is_empty()).then(|| request.run_id.clone());
        let mut mode = mode;
        let mut text = request.code.as_str();
        loop {
            let slice = deadline.saturating_duration_since(Instant::now()).min(Duration::from_millis(250));
            let result: ExecResult = runner.execute(run_id.clone(), mode, text, slice).await?;
            for item in &result.console {
                if !sink(console_record(item)) {
                    // The caller went away: the run goes on; its rest stays queued.
                    return Ok(result_message(&result));
                }
            }
            let more = result.status == exec::RunStatus::Continued && Instant::now() < deadline;
            if !more {
                if result.status == exec::RunStatus::ExecTimeout {
                    let _ = self.destroy_kernel(kernel.kernel_id, Some(kernel.session_id), "exec-timeout", false).await;
                }
                return Ok(result_message(&result));
            }
            run_id = Some(result.run_id.clone());
            mode = Mode::Continue;
            text = "";
        }
    }

    async fn execute_batch(
        &self,
        kernel: &Kernel,
        request: &pb::ExecuteRequest,
        sink: &(dyn Fn(pb::ConsoleRecord) -> bool + Send + Sync),
    ) -> Result<pb::ExecuteResult> {
        #[derive(serde::Deserialize, Default)]
        #[serde(deny_unknown_fields)]
        struct BatchOptions {
            build: Option<String>,
            exec: Option<String>,
            timeout: Option<f64>,
        }
        let options: BatchOptions = if request.options_json.trim().is_empty() {
            BatchOptions::default()
        } else {
            serde_json::from_str(&request.options_json)
                .map_err(|e| AgentError::invalid("options_json", e.to_string()))?
        };
        let command = options.exec.unwrap_or_else(|| request.code.clone());
        let timeout = match options.timeout {
            Some(t) if t.is_finite() && t > 0.0 => Some(Duration::from_secs_f64(t)),
            Some(0.0) | None => None,
            Some(t) => {
                return Err(AgentError::invalid(
                    "options_json.timeout",
                    format!("{t} is not a positive number of seconds"),
                ))
            }
        };
        let run_id = if request.run_id.is_empty() { exec::new_run_id() } else { request.run_id.clone() };
        let result = exec::run_batch(
            self.kernels.runtime().as_ref(),
            &kernel.container_id,
            options.build.as_deref(),
            &command,
            timeout,
        )
        .await?;
        for item in &result.console {
            if !sink(console_record(item)) {
                break;
            }
        }
        Ok(pb::ExecuteResult {
            run_id,
            status: result.status.as_str().to_string(),
            has_exit_code: result.exit_code.is_some(),
            exit_code: result.exit_code.unwrap_or(0),
            options_json: String::new(),
        })
    }

    /// Starts a service of a kernel (see [`bai_agent_runtime::services`]) unless it listens
    /// already. `opts_json` is `{"arguments": {..}, "envs": {..}}` or empty.
    pub async fn start_service(&self, kernel_id: &str, service: &str, opts_json: &str) -> Result<Started> {
        let kernel = self.kernel_of("kernel_id", kernel_id)?;
        let port = kernel_service(&kernel, service)?;
        let options: ServiceOptions = match opts_json.trim() {
            "" => ServiceOptions::default(),
            raw => serde_json::from_str(raw).map_err(|e| AgentError::invalid("opts_json", e.to_string()))?,
        };
        let runtime = self.kernels.runtime().as_ref();
        let started = self
            .services
            .start(
                runtime,
                &kernel.container_id,
                port,
                kernel.service_defs.get(service),
                kernel.runtime_path.as_deref(),
                &options,
            )
            .await?;
        tracing::info!(kernel = %kernel.kernel_id, service, status = started.as_str(), "start service");
        Ok(started)
    }

    /// Stops a service [`Agent::start_service`] started; not running is [`RuntimeError::NotFound`].
    pub async fn shutdown_service(&self, kernel_id: &str, service: &str) -> Result<()> {
        let kernel = self.kernel_of("kernel_id", kernel_id)?;
        kernel_service(&kernel, service)?;
        if self.services.stop(self.kernels.runtime().as_ref(), &kernel.container_id, service).await? {
            Ok(())
        } else {
            Err(RuntimeError::NotFound {
                kind: "running service",
                id: format!("{service} in kernel {}", kernel.kernel_id),
            }
            .into())
        }
    }

    /// Interrupts the code running in a kernel.
    pub async fn interrupt(&self, kernel_id: &str) -> Result<()> {
        let kernel = self.kernel_of("kernel_id", kernel_id)?;
        let runner = lock(&self.runners).get(&kernel.kernel_id).cloned();
        match runner {
            Some(r) => Ok(r.interrupt().await?),
            None => Ok(()),
        }
    }

    /// Writes a file under the kernel's working directory.
    pub async fn upload_file(&self, request: &pb::UploadFileRequest) -> Result<()> {
        let kernel = self.kernel_of("kernel_id", &request.kernel_id)?;
        let parts = work_relative("path", &request.path)?;
        if parts.is_empty() {
            return Err(AgentError::invalid("path", "names a directory, not a file"));
        }
        let mut builder = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_gnu();
        header.set_size(request.content.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(now_unix() as u64);
        header.set_cksum();
        builder
            .append_data(&mut header, parts.join("/"), request.content.as_slice())
            .map_err(|e| AgentError::invalid("path", e.to_string()))?;
        let archive = builder.into_inner().map_err(|e| AgentError::invalid("content", e.to_string()))?;
        // Directories on the way are created by the engine from the archive's path.
        self.kernels.runtime().copy_in(&kernel.container_id, WORK_DIR, archive).await?;
        Ok(())
    }

    /// Reads a file or directory of the kernel as a tar archive.
    pub async fn download_file(&self, request: &pb::DownloadFileRequest) -> Result<Vec<u8>> {
        let kernel = self.kernel_of("kernel_id", &request.kernel_id)?;
        if request.path.is_empty() {
            return Err(AgentError::invalid("path", "is required"));
        }
        let path =
            if request.path.starts_with('/') { request.path.clone() } else { format!("{WORK_DIR}/{}", request.path) };
        Ok(self.kernels.runtime().copy_out(&kernel.container_id, &path).await?)
    }

    /// Lists a directory under the kernel's working directory (read on the host, in the
    /// kernel's scratch, never following a symbolic link out of it).
    pub async fn list_files(&self, request: &pb::ListFilesRequest) -> Result<pb::ListFilesReply> {
        let kernel = self.kernel_of("kernel_id", &request.kernel_id)?;
        let parts = work_relative("path", &request.path)?;
        let root = self
            .kernels
            .runtime()
            .work_dir_on_host(&kernel.container_id)
            .unwrap_or_else(|| kernel.scratch.work.clone());
        let abspath = if parts.is_empty() { WORK_DIR.to_string() } else { format!("{WORK_DIR}/{}", parts.join("/")) };
        tokio::task::spawn_blocking(move || list_dir(&root, &parts, abspath))
            .await
            .map_err(|e| AgentError::invalid("path", e.to_string()))?
    }

    /// A kernel's container logs.
    pub async fn logs(&self, kernel_id: &str) -> Result<String> {
        let kernel = self.kernel_of("kernel_id", kernel_id)?;
        let bytes = self.kernels.runtime().logs(&kernel.container_id).await?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// The last statistics of one kernel or of all.
    pub fn container_stats(&self, kernel_id: &str) -> Result<Value> {
        let stats = lock(&self.stats);
        if kernel_id.is_empty() {
            return Ok(serde_json::to_value(&stats.last).unwrap_or(Value::Null));
        }
        let kernel = self.kernel_of("kernel_id", kernel_id)?;
        Ok(stats
            .last
            .get(&kernel.kernel_id)
            .map(|m| serde_json::to_value(m).unwrap_or(Value::Null))
            .unwrap_or(Value::Null))
    }

    /// Reconciles against the manager's expected kernels.
    pub async fn sync_kernels(&self, expected: &[pb::KernelRef]) -> Result<pb::SyncKernelsReply> {
        let mut want = BTreeMap::new();
        for (i, k) in expected.iter().enumerate() {
            let kernel_id: KernelId = parse_id(&format!("kernels[{i}].kernel_id"), &k.kernel_id)?;
            let session_id: SessionId = parse_id(&format!("kernels[{i}].session_id"), &k.session_id)?;
            want.insert(kernel_id, session_id);
        }
        let mut reply = pb::SyncKernelsReply::default();
        for (kernel_id, session_id) in &want {
            let busy = self.is_busy(kernel_id);
            if self.kernels.kernel(*kernel_id).is_none() && !busy {
                self.emit(Event::KernelTerminated {
                    kernel_id: *kernel_id,
                    session_id: *session_id,
                    reason: "already-terminated".into(),
                    exit_code: -1,
                })
                .await;
                reply.missing.push(kernel_id.to_string());
            }
        }
        for kernel_id in self.kernels.kernel_ids() {
            let busy = self.is_busy(&kernel_id);
            if !want.contains_key(&kernel_id) && !busy {
                self.destroy_kernel(kernel_id, None, "not-found-in-manager", true).await?;
                reply.destroyed.push(kernel_id.to_string());
            }
        }
        Ok(reply)
    }

    /// One container lifecycle reconciliation: kernels whose container ended or vanished are
    /// cleaned up; containers of this agent that no kernel claims are destroyed.
    pub async fn sync_containers(&self) -> Result<usize> {
        let runtime = self.kernels.runtime();
        let containers = runtime.list(&[(labels::OWNER, Some(self.settings.id.as_str()))]).await?;
        let mut by_kernel: HashMap<KernelId, (String, bool, Option<Termination>)> = HashMap::new();
        for c in &containers {
            match c.labels.get(labels::KERNEL_ID).and_then(|v| v.parse::<KernelId>().ok()) {
                Some(kid) => {
                    by_kernel.insert(kid, (c.id.clone(), c.state.is_active(), c.termination));
                }
                // Owned but not a kernel (no parsable kernel id): not ours to judge.
                None => tracing::debug!(container = %c.id, "owned container without a kernel id"),
            }
        }
        let mut checked = 0;
        for kernel_id in self.kernels.kernel_ids() {
            if self.is_busy(&kernel_id) {
                continue;
            }
            checked += 1;
            match by_kernel.get(&kernel_id) {
                Some((_, true, _)) => {}
                Some((_, false, termination)) => self.clean_ended(kernel_id, "self-terminated", *termination).await,
                None => self.clean_ended(kernel_id, "container-not-found", None).await,
            }
        }
        for (kernel_id, (container_id, _, termination)) in &by_kernel {
            if self.kernels.kernel(*kernel_id).is_some() || self.is_busy(kernel_id) {
                continue;
            }
            checked += 1;
            tracing::warn!(kernel = %kernel_id, container = %container_id, "destroying a container no kernel claims");
            let session_id = containers
                .iter()
                .find(|c| &c.id == container_id)
                .and_then(|c| c.labels.get(labels::SESSION_ID))
                .and_then(|s| s.parse::<SessionId>().ok());
            let _ = runtime.stop(container_id, Duration::from_secs(2)).await;
            runtime.destroy(container_id).await?;
            if let Some(session_id) = session_id {
                self.emit(Event::KernelTerminated {
                    kernel_id: *kernel_id,
                    session_id,
                    reason: "terminated-unknown-container".into(),
                    exit_code: exit_code(termination.as_ref()),
                })
                .await;
            }
        }
        Ok(checked)
    }

    /// Runs [`Agent::sync_containers`] and records the outcome in the metrics.
    pub async fn sync_once(&self) {
        self.metrics.sync_triggered();
        match self.sync_containers().await {
            Ok(n) => self.metrics.sync_succeeded(n as u64),
            Err(e) => {
                tracing::warn!(error = %e, "container lifecycle sync failed");
                self.metrics.sync_failed(e.class());
            }
        }
    }

    /// Makes sure images are present; each missing one is pulled by a background task that
    /// reports through `bgtask_*` and `image_pull_*` events. Returns image → task id.
    pub async fn check_and_pull(self: &Arc<Self>, images: &[pb::ImageToPull]) -> Result<BTreeMap<String, String>> {
        for (i, image) in images.iter().enumerate() {
            if image.image.trim().is_empty() {
                return Err(AgentError::invalid(format!("images[{i}].image"), "is required"));
            }
            if !matches!(image.auto_pull.as_str(), "" | "digest" | "tag" | "none") {
                return Err(AgentError::invalid(
                    format!("images[{i}].auto_pull"),
                    format!("{:?} is not digest, tag or none", image.auto_pull),
                ));
            }
        }
        let mut tasks = BTreeMap::new();
        for image in images {
            let task_id = uuid::Uuid::new_v4();
            tasks.insert(image.image.clone(), task_id.to_string());
            let agent = self.clone();
            let image = image.clone();
            tokio::spawn(async move { agent.pull_task(task_id, image).await });
        }
        Ok(tasks)
    }

    async fn pull_task(self: Arc<Self>, task_id: uuid::Uuid, image: pb::ImageToPull) {
        let runtime = self.kernels.runtime().clone();
        let agent_id = self.settings.id.clone();
        let present = runtime.inspect_image(&image.image).await;
        let needed = match (&present, image.auto_pull.as_str()) {
            (Err(RuntimeError::NotFound { .. }), "none") => {
                let msg = format!("image {} is not on this agent and auto-pull is none", image.image);
                self.emit(Event::ImagePullFailed { image: image.image.clone(), agent_id, msg: msg.clone() }).await;
                self.emit(Event::BgtaskFailed { task_id, message: Some(msg) }).await;
                return;
            }
            (Err(RuntimeError::NotFound { .. }), _) => true,
            (Ok(info), "digest" | "") => !image.digest.is_empty() && info.id != image.digest,
            (Ok(_), _) => false,
            (Err(e), _) => {
                let msg = e.to_string();
                self.emit(Event::ImagePullFailed { image: image.image.clone(), agent_id, msg: msg.clone() }).await;
                self.emit(Event::BgtaskFailed { task_id, message: Some(msg) }).await;
                return;
            }
        };
        if !needed {
            self.emit(Event::ImagePullFinished {
                image: image.image.clone(),
                agent_id,
                timestamp: now_unix(),
                msg: Some("Image already exists".into()),
            })
            .await;
            self.emit(Event::BgtaskDone { task_id, message: Some("Image already exists".into()) }).await;
            return;
        }
        self.emit(Event::ImagePullStarted {
            image: image.image.clone(),
            agent_id: agent_id.clone(),
            timestamp: now_unix(),
        })
        .await;
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<PullProgress>();
        let progress = move |p: PullProgress| {
            let _ = tx.send(p);
        };
        let forward = {
            let agent = self.clone();
            tokio::spawn(async move {
                let mut last = Instant::now() - Duration::from_secs(1);
                while let Some(p) = rx.recv().await {
                    if last.elapsed() >= Duration::from_millis(500) {
                        last = Instant::now();
                        let (current, total) = (p.current.unwrap_or(0) as f64, p.total.unwrap_or(0) as f64);
                        agent
                            .emit(Event::BgtaskUpdated { task_id, current, total, message: Some(p.status.clone()) })
                            .await;
                    }
                }
            })
        };
        let result = runtime.pull_image(&image.image, &progress).await;
        drop(progress);
        let _ = forward.await;
        match result {
            Ok(()) => {
                self.emit(Event::ImagePullFinished {
                    image: image.image.clone(),
                    agent_id,
                    timestamp: now_unix(),
                    msg: None,
                })
                .await;
                self.emit(Event::BgtaskDone { task_id, message: None }).await;
            }
            Err(e) => {
                let msg = e.to_string();
                self.emit(Event::ImagePullFailed { image: image.image.clone(), agent_id, msg: msg.clone() }).await;
                self.emit(Event::BgtaskFailed { task_id, message: Some(msg) }).await;
            }
        }
    }

    /// The images the container engine has.
    pub async fn list_images(&self) -> Result<Vec<pb::ImageInfo>> {
        let images = self.kernels.runtime().list_images().await?;
        Ok(images
            .into_iter()
            .map(|i| pb::ImageInfo {
                id: i.id,
                tags: i.tags,
                architecture: i.architecture,
                labels: i.labels.into_iter().collect(),
                size: i.size,
            })
            .collect())
    }

    /// Removes images; each gets its own result.
    pub async fn purge_images(&self, images: &[String]) -> Vec<pb::PurgeImageResult> {
        let mut out = Vec::new();
        for image in images {
            let error = if image.trim().is_empty() {
                "image name is empty".to_string()
            } else {
                match self.kernels.runtime().remove_image(image).await {
                    Ok(()) => String::new(),
                    Err(e) => e.to_string(),
                }
            };
            out.push(pb::PurgeImageResult { image: image.clone(), error });
        }
        out
    }

    /// Per-device hardware information.
    pub fn hwinfo(&self) -> Value {
        let mut out = serde_json::Map::new();
        let capacity = self.kernels.allocator().capacity();
        out.insert(
            "cpu".into(),
            json!({"status": "healthy", "status_info": null, "metadata": {"slots": slots_to_wire(&capacity)}}),
        );
        for plugin in self.kernels.allocator().plugins() {
            let devices: Vec<Value> = plugin
                .devices()
                .iter()
                .map(|d| json!({"id": d.id, "model": d.model, "memory": d.memory, "numa_node": d.numa_node}))
                .collect();
            out.insert(
                plugin.key().to_string(),
                json!({"status": "healthy", "status_info": null, "metadata": {"version": plugin.version(), "devices": devices}}),
            );
        }
        Value::Object(out)
    }

    /// The agent's status.
    pub fn status(&self) -> pb::AgentStatus {
        let allocations = self.kernels.allocator().allocations();
        let kernels = self
            .kernels
            .kernel_ids()
            .into_iter()
            .filter_map(|id| self.kernels.kernel(id))
            .map(|k| pb::KernelSummary {
                kernel_id: k.kernel_id.to_string(),
                session_id: k.session_id.to_string(),
                container_id: k.container_id.clone(),
                occupied_slots: allocations.get(&k.kernel_id).map(|a| slots_to_wire(&a.slots)).unwrap_or_default(),
                service_ports: service_ports(&k),
            })
            .collect();
        pb::AgentStatus {
            agent_id: self.settings.id.to_string(),
            version: crate::VERSION.to_string(),
            region: self.settings.region.clone(),
            scaling_group: self.settings.scaling_group.clone(),
            architecture: std::env::consts::ARCH.to_string(),
            rpc_addr: self.settings.rpc_addr.clone(),
            total_slots: slots_to_wire(&self.kernels.allocator().capacity()),
            occupied_slots: slots_to_wire(&self.kernels.allocator().occupied()),
            kernels,
            backend: self.kernels.runtime().name().to_string(),
            busy_kernels: lock(&self.locks)
                .iter()
                .filter(|(_, l)| l.try_lock().is_err())
                .map(|(id, _)| id.to_string())
                .collect(),
        }
    }

    /// The heartbeat's `agent_info`.
    pub async fn agent_info(&self) -> Value {
        let allocator = self.kernels.allocator();
        let known = allocator.known_slots();
        let resource_slots: serde_json::Map<String, Value> = slots_to_wire(&allocator.capacity())
            .into_iter()
            .map(|(slot, amount)| {
                let kind = known.get(&slot).map(|t| t.as_str().to_string()).unwrap_or_else(|| "count".into());
                (slot, json!([kind, amount]))
            })
            .collect();
        let images: Vec<Value> = match self.kernels.runtime().list_images().await {
            Ok(list) => {
                list.into_iter().flat_map(|i| i.tags.into_iter().map(move |t| json!([t, i.id.clone()]))).collect()
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not list images for the heartbeat");
                Vec::new()
            }
        };
        let compute_plugins: serde_json::Map<String, Value> =
            allocator.plugins().iter().map(|p| (p.key().to_string(), json!({"version": p.version()}))).collect();
        let host = self.settings.rpc_addr.rsplit_once(':').map(|(h, _)| h.to_string()).unwrap_or_default();
        json!({
            "id": self.settings.id.as_str(),
            "ip": host,
            "region": self.settings.region,
            "scaling_group": self.settings.scaling_group,
            "addr": format!("grpc://{}", self.settings.rpc_addr),
            "public_key": null,
            "public_host": self.settings.public_host,
            "resource_slots": resource_slots,
            "available_slots": slots_to_wire(&allocator.available()),
            "occupied_slots": slots_to_wire(&allocator.occupied()),
            "version": crate::VERSION,
            "compute_plugins": compute_plugins,
            "images": images,
            "architecture": std::env::consts::ARCH,
            "auto_terminate_abusing_kernel": false,
            "kernel_count": self.kernels.kernel_ids().len(),
            "backend": self.kernels.runtime().name(),
            // Each kernel's latest statistics: the manager's utilisation idle checker reads them.
            "kernel_stats": self.container_stats("").unwrap_or(Value::Null),
        })
    }

    /// Sends one heartbeat.
    pub async fn heartbeat(&self) {
        let info = self.agent_info().await;
        self.emit(Event::AgentHeartbeat { agent_info: info }).await;
        self.metrics.heartbeat(now_unix());
        self.metrics.set_kernel_count(self.kernels.kernel_ids().len() as i64);
    }

    /// One statistics sweep over the node and every kernel, into the metrics.
    pub async fn collect_stats(&self) {
        let known = lock(&self.stats).pids.clone();
        let mut targets = Vec::new();
        for kernel_id in self.kernels.kernel_ids() {
            if let Some(kernel) = self.kernels.kernel(kernel_id) {
                let pid = match known.get(&kernel.container_id) {
                    Some(pid) => Some(*pid),
                    None => self.kernels.runtime().inspect(&kernel.container_id).await.ok().and_then(|i| i.pid),
                };
                targets.push((kernel, pid));
            }
        }
        let owners = lock(&self.owners).clone();
        let now = Instant::now();
        let mut stats = lock(&self.stats);
        // Only the kernels of this sweep: removed ones are forgotten here.
        stats.pids = targets.iter().filter_map(|(k, pid)| Some((k.container_id.clone(), (*pid)?))).collect();
        self.metrics.stat_triggered(StatScope::Node);
        match stats.node.collect(now) {
            Ok(node) => {
                self.metrics.stat_succeeded(StatScope::Node);
                let n = node.node;
                for (name, mv) in [
                    ("cpu_util", n.cpu_util),
                    ("mem", n.mem),
                    ("disk", n.disk),
                    ("net_rx", n.net_rx),
                    ("net_tx", n.net_tx),
                ] {
                    set_values(|vt, v| self.metrics.set_device_metric(name, "root", vt, v), &mv);
                }
                let gpu = self.device_stats();
                self.metrics.set_usage(decimal_f64(n.cpu_util.pct), decimal_f64(n.mem.current), gpu);
            }
            Err(e) => self.metrics.stat_failed(StatScope::Node, AgentError::from(e).class()),
        }
        self.metrics.stat_triggered(StatScope::Container);
        let container_targets: Vec<ContainerTarget> =
            targets.iter().map(|(k, pid)| ContainerTarget::new(k.container_id.clone(), *pid)).collect();
        let sweep = stats.containers.collect(&container_targets, now);
        if sweep.errors.is_empty() {
            self.metrics.stat_succeeded(StatScope::Container);
        } else {
            for (container, e) in &sweep.errors {
                tracing::debug!(container = %container, error = %e, "container statistics");
                stats.pids.remove(container);
            }
            self.metrics.stat_failed(StatScope::Container, "StatCollectionError");
        }
        for (kernel, _) in &targets {
            let Some(m) = sweep.metrics.get(&kernel.container_id) else { continue };
            let owner = owners.get(&kernel.kernel_id).cloned().unwrap_or_default();
            let labels = KernelMetricLabels {
                kernel_id: kernel.kernel_id.to_string(),
                session_id: kernel.session_id.to_string(),
                user_id: owner.user_id,
                project_id: owner.project_id,
            };
            for (name, mv) in [
                ("cpu_used", m.cpu_used),
                ("cpu_util", m.cpu_util),
                ("mem", m.mem),
                ("io_read", m.io_read),
                ("io_write", m.io_write),
                ("net_rx", m.net_rx),
                ("net_tx", m.net_tx),
            ] {
                set_values(|vt, v| self.metrics.set_container_metric(&labels, name, vt, v), &mv);
            }
            stats.last.insert(kernel.kernel_id, *m);
        }
    }

    /// Device metrics from the accelerator plugins; returns the mean utilization (percent).
    fn device_stats(&self) -> f64 {
        let mut utils = Vec::new();
        for plugin in self.kernels.allocator().plugins() {
            let key = plugin.key();
            match plugin.device_metrics() {
                Ok(devices) => {
                    for d in devices {
                        if let Some(u) = d.utilization {
                            let u = decimal_f64(u);
                            utils.push(u);
                            self.metrics.set_device_metric(&format!("{key}_util"), &d.device_id, "current", u);
                        }
                        if let (Some(used), Some(total)) = (d.memory_used, d.memory_total) {
                            self.metrics.set_device_metric(&format!("{key}_mem"), &d.device_id, "current", used as f64);
                            self.metrics.set_device_metric(
                                &format!("{key}_mem"),
                                &d.device_id,
                                "capacity",
                                total as f64,
                            );
                        }
                        if let Some(t) = d.temperature {
                            self.metrics.set_device_metric(
                                &format!("{key}_temp"),
                                &d.device_id,
                                "current",
                                decimal_f64(t),
                            );
                        }
                        if let Some(p) = d.power {
                            self.metrics.set_device_metric(
                                &format!("{key}_power"),
                                &d.device_id,
                                "current",
                                decimal_f64(p),
                            );
                        }
                    }
                }
                Err(e) => tracing::debug!(plugin = key, error = %e, "device metrics"),
            }
        }
        if utils.is_empty() {
            0.0
        } else {
            utils.iter().sum::<f64>() / utils.len() as f64
        }
    }

    /// Stops watching containers and closes runners, leaving every container running (the
    /// next start takes them back).
    pub async fn detach(&self) {
        for (_, handle) in lock(&self.watchers).drain() {
            handle.abort();
        }
        let runners: Vec<_> = lock(&self.runners).drain().map(|(_, r)| r).collect();
        for r in runners {
            let _ = r.close().await;
        }
    }
}

fn decimal_f64(d: rust_decimal::Decimal) -> f64 {
    use rust_decimal::prelude::ToPrimitive;
    d.to_f64().unwrap_or(0.0)
}

fn set_values(mut set: impl FnMut(&str, f64), mv: &MetricValue) {
    set("current", decimal_f64(mv.current));
    if let Some(c) = mv.capacity {
        set("capacity", decimal_f64(c));
        set("pct", decimal_f64(mv.pct));
    }
}

/// The service `name` of `kernel`, or an error naming the services it has.
fn kernel_service<'k>(kernel: &'k Kernel, name: &str) -> Result<&'k ServicePort> {
    if name.is_empty() {
        return Err(AgentError::invalid("service", "is required"));
    }
    kernel.service_ports.iter().find(|p| p.name == name).ok_or_else(|| {
        let known: Vec<&str> = kernel.service_ports.iter().map(|p| p.name.as_str()).collect();
        RuntimeError::NotFound {
            kind: "service",
            id: format!("{name} in kernel {} (it has {known:?})", kernel.kernel_id),
        }
        .into()
    })
}

fn service_ports(kernel: &Kernel) -> Vec<pb::ServicePort> {
    kernel
        .service_ports
        .iter()
        .map(|s| pb::ServicePort {
            name: s.name.clone(),
            protocol: s.protocol.clone(),
            container_ports: s.container_ports.iter().map(|&p| u32::from(p)).collect(),
            host_ports: s
                .container_ports
                .iter()
                .filter_map(|c| kernel.host_ports.get(c))
                .map(|&p| u32::from(p))
                .collect(),
        })
        .collect()
}

fn console_record(item: &exec::ConsoleItem) -> pb::ConsoleRecord {
    let data = match serde_json::to_value(item) {
        Ok(Value::Array(mut pair)) if pair.len() == 2 => match pair.pop() {
            Some(Value::String(s)) => s,
            Some(other) => other.to_string(),
            None => String::new(),
        },
        _ => String::new(),
    };
    pb::ConsoleRecord { kind: item.kind().to_string(), data }
}

fn result_message(result: &ExecResult) -> pb::ExecuteResult {
    pb::ExecuteResult {
        run_id: result.run_id.clone(),
        status: result.status.as_str().to_string(),
        has_exit_code: result.exit_code.is_some(),
        exit_code: result.exit_code.unwrap_or(0),
        options_json: result.options.as_ref().map(|o| o.to_string()).unwrap_or_default(),
    }
}

fn list_dir(root: &std::path::Path, parts: &[String], abspath: String) -> Result<pb::ListFilesReply> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let mut dir = root.to_path_buf();
    for part in parts {
        dir.push(part);
        let meta =
            std::fs::symlink_metadata(&dir).map_err(|e| AgentError::invalid("path", format!("{abspath}: {e}")))?;
        if meta.file_type().is_symlink() {
            return Err(AgentError::invalid("path", format!("{abspath}: symbolic links are not followed")));
        }
    }
    let entries = std::fs::read_dir(&dir).map_err(|e| AgentError::invalid("path", format!("{abspath}: {e}")))?;
    let mut reply = pb::ListFilesReply { abspath, ..Default::default() };
    for entry in entries {
        let entry = match entry {
            Ok(e) => e,
            Err(e) => {
                reply.errors.push(e.to_string());
                continue;
            }
        };
        match entry.metadata() {
            Ok(meta) => reply.files.push(pb::FileEntry {
                filename: entry.file_name().to_string_lossy().into_owned(),
                size: meta.len(),
                mode: meta.permissions().mode() & 0o7777,
                mtime: meta.mtime() as f64,
                is_dir: meta.is_dir(),
                is_symlink: meta.file_type().is_symlink(),
            }),
            Err(e) => reply.errors.push(format!("{}: {e}", entry.file_name().to_string_lossy())),
        }
    }
    reply.files.sort_by(|a, b| a.filename.cmp(&b.filename));
    Ok(reply)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn work_paths_stay_under_the_working_directory() {
        assert_eq!(work_relative("path", "a/b.txt").unwrap(), vec!["a", "b.txt"]);
        assert_eq!(work_relative("path", "/home/work/a").unwrap(), vec!["a"]);
        assert!(work_relative("path", "/home/work").unwrap().is_empty());
        assert!(work_relative("path", "").unwrap().is_empty());
        for bad in ["../etc/passwd", "a/../../b", "/etc/passwd", "/home/workx/a"] {
            let err = work_relative("path", bad).unwrap_err().to_string();
            assert!(err.contains("path"), "{bad}: {err}");
        }
    }

    #[test]
    fn listing_refuses_symlinks_out() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f.txt"), b"hi").unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::os::unix::fs::symlink("/etc", dir.path().join("out")).unwrap();
        let reply = list_dir(dir.path(), &[], WORK_DIR.into()).unwrap();
        let names: Vec<_> = reply.files.iter().map(|f| f.filename.as_str()).collect();
        assert_eq!(names, ["f.txt", "out", "sub"]);
        assert!(reply.files[1].is_symlink && reply.files[2].is_dir && reply.files[0].size == 2);
        let err = list_dir(dir.path(), &["out".into()], "/home/work/out".into()).unwrap_err().to_string();
        assert!(err.contains("symbolic"), "{err}");
    }
}
