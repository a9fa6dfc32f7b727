//! [`KernelRuntime`]: kernels as an agent runs them — a container plus everything it holds on
//! the node (cores, memory and devices from the [`Allocator`], host ports from the
//! [`PortPool`], a scratch directory with a quota, virtual-folder mounts) — created all or
//! nothing, released on destroy, and rebuilt from the containers' labels after a restart.
//!
//! Concurrency: creations and destructions of different kernels may run at once; the
//! allocator and the port pool are atomic, so no core, device or port is ever handed out
//! twice. Cancel safety: dropping a `create_kernel` future between its steps may leave a
//! container or a reservation behind; the next [`KernelRuntime::recover`] or
//! [`KernelRuntime::destroy_kernel`] of that kernel releases it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bai_core::{AgentId, KernelId, MountPermission, ResourceSlot, SessionId};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::labels::{self, KernelLabels, ServicePort};
use crate::ports::PortPool;
use crate::resources::allocator::{Allocation, Allocator};
use crate::runtime::{BindMount, ContainerRuntime, ContainerSpec, PortMapping, Termination};
use crate::scratch::{Scratch, ScratchManager};
use crate::services::{self, ServiceDef};
use crate::vfolder::VFolderMount;

/// Node-wide settings of a [`KernelRuntime`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeConfig {
    /// This agent's id; only containers labelled with it are ever touched.
    pub agent_id: AgentId,
    /// The host directory virtual folders live under.
    pub vfolder_root: PathBuf,
    /// The scratch quota of a kernel that does not ask for one, in bytes.
    pub default_scratch_quota: u64,
    /// How long a container may take to stop before it is killed.
    pub stop_timeout: Duration,
    /// The host address service ports are published on.
    pub bind_host: String,
}

/// A virtual folder to mount into a kernel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VFolderRequest {
    /// The folder's path relative to [`NodeConfig::vfolder_root`].
    pub folder: String,
    /// Its name in the container (`/home/work/<name>`).
    pub name: String,
    /// What the kernel may do with it.
    pub permission: MountPermission,
}

/// What to create.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KernelConfig {
    /// The kernel.
    pub kernel_id: KernelId,
    /// Its session.
    pub session_id: SessionId,
    /// The image (must be present locally).
    pub image: String,
    /// The resources it gets (`cpu` and `mem` at least).
    pub resources: ResourceSlot,
    /// Shared memory in bytes, counted inside `mem`.
    pub shmem: Option<u64>,
    /// Environment variables.
    pub environ: BTreeMap<String, String>,
    /// Virtual folders to mount.
    pub mounts: Vec<VFolderRequest>,
    /// The scratch quota in bytes; [`NodeConfig::default_scratch_quota`] when `None`.
    pub scratch_quota: Option<u64>,
    /// The owning user, recorded in a label.
    pub owner_user_id: Option<String>,
    /// The command; the image's when empty.
    pub cmd: Vec<String>,
}

/// A kernel the runtime holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Kernel {
    /// The kernel.
    pub kernel_id: KernelId,
    /// Its session.
    pub session_id: SessionId,
    /// Its container.
    pub container_id: String,
    /// What it holds.
    pub allocation: Allocation,
    /// The services its image declares.
    pub service_ports: Vec<ServicePort>,
    /// How to start them, by name (see [`services`](crate::services)).
    #[serde(default)]
    pub service_defs: BTreeMap<String, ServiceDef>,
    /// The image's `ai.backend.runtime-path`, for service commands.
    #[serde(default)]
    pub runtime_path: Option<String>,
    /// Host ports, by container port.
    pub host_ports: BTreeMap<u16, u16>,
    /// Its scratch directories.
    pub scratch: Scratch,
}

/// What [`KernelRuntime::recover`] found.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recovery {
    /// Running kernels taken back, with their resources, ports and scratch.
    pub recovered: Vec<KernelId>,
    /// Kernels whose container had ended while nobody watched; cleaned up.
    pub ended: Vec<(KernelId, Termination)>,
    /// Containers that could not be taken back, with the reason; left untouched.
    pub failed: Vec<(String, String)>,
}

/// Kernels on one node. See the module documentation.
pub struct KernelRuntime {
    runtime: Arc<dyn ContainerRuntime>,
    allocator: Arc<Allocator>,
    ports: Arc<PortPool>,
    scratch: ScratchManager,
    config: NodeConfig,
    kernels: Mutex<BTreeMap<KernelId, Kernel>>,
}

impl std::fmt::Debug for KernelRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KernelRuntime")
            .field("runtime", &self.runtime.name())
            .field("agent_id", &self.config.agent_id)
            .field("kernels", &self.kernel_ids())
            .finish_non_exhaustive()
    }
}

/// Undo steps run in reverse when a creation fails midway.
#[derive(Default)]
struct Rollback {
    allocation: Option<KernelId>,
    ports: Vec<u16>,
    scratch: Option<KernelId>,
    container: Option<String>,
}

impl KernelRuntime {
    /// A runtime over `runtime` with the node's allocator, port pool and scratch manager.
    /// Call [`KernelRuntime::recover`] next to take back kernels that are already running.
    pub fn new(
        runtime: Arc<dyn ContainerRuntime>,
        allocator: Arc<Allocator>,
        ports: Arc<PortPool>,
        scratch: ScratchManager,
        config: NodeConfig,
    ) -> Self {
        Self { runtime, allocator, ports, scratch, config, kernels: Mutex::new(BTreeMap::new()) }
    }

    fn registry(&self) -> std::sync::MutexGuard<'_, BTreeMap<KernelId, Kernel>> {
        self.kernels.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The container runtime.
    pub fn runtime(&self) -> &Arc<dyn ContainerRuntime> {
        &self.runtime
    }

    /// The allocator.
    pub fn allocator(&self) -> &Arc<Allocator> {
        &self.allocator
    }

    /// The port pool.
    pub fn ports(&self) -> &Arc<PortPool> {
        &self.ports
    }

    /// The kernels held, by id.
    pub fn kernel_ids(&self) -> Vec<KernelId> {
        self.registry().keys().copied().collect()
    }

    /// A kernel held.
    pub fn kernel(&self, kernel_id: KernelId) -> Option<Kernel> {
        self.registry().get(&kernel_id).cloned()
    }

    /// Creates and starts a kernel: resources, ports, scratch, mounts, then the container. Any
    /// failure undoes every step and is returned.
    pub async fn create_kernel(&self, config: &KernelConfig) -> Result<Kernel> {
        if self.registry().contains_key(&config.kernel_id) {
            return Err(Error::invalid(
                "kernel_id",
                format!("kernel {} already exists on this node", config.kernel_id),
            ));
        }
        let mut undo = Rollback::default();
        match self.create_steps(config, &mut undo).await {
            Ok(kernel) => {
                self.registry().insert(kernel.kernel_id, kernel.clone());
                Ok(kernel)
            }
            Err(e) => {
                self.rollback(undo).await;
                Err(e)
            }
        }
    }

    async fn rollback(&self, undo: Rollback) {
        if let Some(id) = undo.container {
            if let Err(e) = self.runtime.destroy(&id).await {
                tracing::warn!(container = %id, error = %e, "could not remove the container of a failed creation");
            }
        }
        if let Some(kid) = undo.scratch {
            if let Err(e) = self.scratch.remove(kid).await {
                tracing::warn!(kernel = %kid, error = %e, "could not remove the scratch of a failed creation");
            }
        }
        self.ports.release(&undo.ports);
        if let Some(kid) = undo.allocation {
            self.allocator.release(&kid);
        }
    }

    async fn create_steps(&self, config: &KernelConfig, undo: &mut Rollback) -> Result<Kernel> {
        let image = self.runtime.inspect_image(&config.image).await?;
        let service_ports = match image.labels.get(labels::SERVICE_PORTS) {
            Some(label) => labels::parse_service_ports(label)?,
            None => Vec::new(),
        };
        let service_defs = services::parse_service_defs(&image.labels, &service_ports)?;
        let bind_mounts = self.runtime.supports_bind_mounts();
        if !bind_mounts && !config.mounts.is_empty() {
            return Err(Error::invalid(
                "mounts",
                format!("the {} backend cannot mount folders into kernels", self.runtime.name()),
            ));
        }
        let mounts: Vec<BindMount> = config
            .mounts
            .iter()
            .map(|m| VFolderMount::resolve(&self.config.vfolder_root, &m.folder, &m.name, m.permission))
            .collect::<Result<_>>()?;

        let allocation = self.allocator.allocate(config.kernel_id, &config.resources, config.shmem)?;
        undo.allocation = Some(config.kernel_id);

        let container_ports: Vec<u16> = service_ports.iter().flat_map(|s| s.container_ports.iter().copied()).collect();
        let host = self.ports.allocate(container_ports.len())?;
        undo.ports = host.clone();
        let host_ports: BTreeMap<u16, u16> = container_ports.iter().copied().zip(host.iter().copied()).collect();

        let quota = config.scratch_quota.unwrap_or(self.config.default_scratch_quota);
        let scratch = self.scratch.create(config.kernel_id, quota).await?;
        undo.scratch = Some(config.kernel_id);

        let kernel_labels = KernelLabels {
            kernel_id: config.kernel_id,
            session_id: config.session_id,
            owner: self.config.agent_id.clone(),
            owner_user_id: config.owner_user_id.clone(),
            host_ports: host_ports.clone(),
            allocation: Some(
                serde_json::to_value(&allocation).map_err(|e| Error::invalid("allocation", e.to_string()))?,
            ),
            scratch_quota: Some(quota),
            service_ports: image.labels.get(labels::SERVICE_PORTS).cloned(),
        };
        let short_image =
            config.image.rsplit('/').next().unwrap_or(&config.image).split([':', '@']).next().unwrap_or("kernel");
        let mut spec = ContainerSpec {
            name: format!("kernel.{short_image}.{}", config.kernel_id),
            image: config.image.clone(),
            cmd: config.cmd.clone(),
            env: config.environ.clone(),
            labels: kernel_labels.to_labels(),
            working_dir: Some("/home/work".into()),
            hostname: Some(format!("k-{}", &config.kernel_id.to_string()[..8])),
            // Without bind mounts the runtime's own per-container directory is /home/work.
            mounts: if bind_mounts {
                [scratch.work_mount(), scratch.config_mount()].into_iter().chain(mounts).collect()
            } else {
                Vec::new()
            },
            ports: host_ports
                .iter()
                .map(|(c, h)| PortMapping { container_port: *c, host_port: *h, host_ip: self.config.bind_host.clone() })
                .collect(),
            init: true,
            ..Default::default()
        };
        allocation.apply_to(&mut spec);
        spec.env.insert("BACKENDAI_KERNEL_ID".into(), config.kernel_id.to_string());
        spec.env.insert("BACKENDAI_SESSION_ID".into(), config.session_id.to_string());
        spec.env.insert("BACKENDAI_KERNEL_IMAGE".into(), config.image.clone());

        let container_id = self.runtime.create(&spec).await?;
        undo.container = Some(container_id.clone());
        self.runtime.start(&container_id).await?;
        Ok(Kernel {
            kernel_id: config.kernel_id,
            session_id: config.session_id,
            container_id,
            allocation,
            service_ports,
            service_defs,
            runtime_path: image.labels.get(services::RUNTIME_PATH).cloned(),
            host_ports,
            scratch,
        })
    }

    /// Stops and removes a kernel's container and releases everything it held. Returns how
    /// its container ended. Destroying an unknown kernel is [`Error::NotFound`].
    pub async fn destroy_kernel(&self, kernel_id: KernelId) -> Result<Option<Termination>> {
        let kernel =
            self.kernel(kernel_id).ok_or_else(|| Error::NotFound { kind: "kernel", id: kernel_id.to_string() })?;
        self.runtime.stop(&kernel.container_id, self.config.stop_timeout).await?;
        let termination = match self.runtime.inspect(&kernel.container_id).await {
            Ok(info) => info.termination,
            Err(Error::NotFound { .. }) => None,
            Err(e) => return Err(e),
        };
        self.runtime.destroy(&kernel.container_id).await?;
        self.release(&kernel).await;
        Ok(termination)
    }

    async fn release(&self, kernel: &Kernel) {
        self.registry().remove(&kernel.kernel_id);
        if let Err(e) = self.scratch.remove(kernel.kernel_id).await {
            tracing::warn!(kernel = %kernel.kernel_id, error = %e, "could not remove the scratch");
        }
        self.ports.release(&kernel.host_ports.values().copied().collect::<Vec<_>>());
        self.allocator.release(&kernel.kernel_id);
    }

    /// Takes back this agent's kernels from the engine after a restart: running containers
    /// get their resources, ports and scratch back from their labels; ended ones are cleaned
    /// up and reported. Containers of other agents are never touched.
    pub async fn recover(&self) -> Result<Recovery> {
        let mut report = Recovery::default();
        let containers = self.runtime.list(&[(labels::OWNER, Some(self.config.agent_id.as_str()))]).await?;
        for info in containers {
            let parsed = KernelLabels::from_labels(&info.labels).and_then(|l| {
                let allocation: Allocation = match &l.allocation {
                    Some(v) => serde_json::from_value(v.clone())
                        .map_err(|e| Error::invalid(format!("label {}", labels::ALLOCATION), e.to_string()))?,
                    None => return Err(Error::invalid(format!("label {}", labels::ALLOCATION), "missing")),
                };
                Ok((l, allocation))
            });
            let (labels, allocation) = match parsed {
                Ok(p) => p,
                Err(e) => {
                    report.failed.push((info.id.clone(), e.to_string()));
                    continue;
                }
            };
            if self.registry().contains_key(&labels.kernel_id) {
                continue;
            }
            if !info.state.is_active() {
                let termination = info.termination.unwrap_or(Termination::Exited { code: -1 });
                self.runtime.destroy(&info.id).await?;
                self.scratch.remove(labels.kernel_id).await?;
                report.ended.push((labels.kernel_id, termination));
                continue;
            }
            let host: Vec<u16> = labels.host_ports.values().copied().collect();
            if let Err(e) = self.allocator.restore(labels.kernel_id, &allocation) {
                report.failed.push((info.id.clone(), e.to_string()));
                continue;
            }
            if let Err(e) = self.ports.restore(&host) {
                self.allocator.release(&labels.kernel_id);
                report.failed.push((info.id.clone(), e.to_string()));
                continue;
            }
            let service_ports =
                labels.service_ports.as_deref().map(labels::parse_service_ports).transpose()?.unwrap_or_default();
            // A container carries its image's labels, service definitions among them.
            let service_defs = services::parse_service_defs(&info.labels, &service_ports).unwrap_or_else(|e| {
                tracing::warn!(container = %info.id, error = %e, "ignoring the service definitions");
                BTreeMap::new()
            });
            let kernel = Kernel {
                kernel_id: labels.kernel_id,
                session_id: labels.session_id,
                container_id: info.id.clone(),
                allocation,
                service_ports,
                service_defs,
                runtime_path: info.labels.get(services::RUNTIME_PATH).cloned(),
                host_ports: labels.host_ports,
                scratch: self.scratch.paths(labels.kernel_id),
            };
            self.registry().insert(kernel.kernel_id, kernel);
            report.recovered.push(labels.kernel_id);
        }
        Ok(report)
    }
}
