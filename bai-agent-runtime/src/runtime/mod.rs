//! The container runtime abstraction and its types.
//!
//! [`ContainerRuntime`] is everything the agent asks of a container engine. [`docker`] implements
//! it over the Docker Engine API (bollard); other backends implement the same trait and pass the
//! same tests where they apply.

pub mod docker;
pub mod process;

use std::collections::BTreeMap;
use std::pin::Pin;
use std::time::Duration;

use async_trait::async_trait;
use futures::Stream;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWrite;

use crate::error::Result;

/// A host path mounted into a container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BindMount {
    /// The absolute host path.
    pub source: String,
    /// The absolute path inside the container.
    pub target: String,
    /// Whether the container may only read it.
    pub read_only: bool,
}

/// A container port published on the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortMapping {
    /// The port inside the container.
    pub container_port: u16,
    /// The port on the host.
    pub host_port: u16,
    /// The host address to bind (`0.0.0.0`, `127.0.0.1`).
    pub host_ip: String,
}

/// A device (accelerator) handed to a container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceRequest {
    /// The driver, e.g. `nvidia`; empty for plain device nodes.
    pub driver: String,
    /// Device ids (e.g. GPU UUIDs or indexes).
    pub device_ids: Vec<String>,
    /// Capabilities, e.g. `[["gpu"]]`.
    pub capabilities: Vec<Vec<String>>,
}

/// Everything needed to create a container.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ContainerSpec {
    /// The container's name.
    pub name: String,
    /// The image reference to run.
    pub image: String,
    /// The entrypoint; the image's when `None`.
    pub entrypoint: Option<Vec<String>>,
    /// The command; the image's when empty.
    pub cmd: Vec<String>,
    /// Environment variables.
    pub env: BTreeMap<String, String>,
    /// Labels (the agent rebuilds its state from them).
    pub labels: BTreeMap<String, String>,
    /// The working directory inside the container.
    pub working_dir: Option<String>,
    /// The hostname.
    pub hostname: Option<String>,
    /// Host paths to mount.
    pub mounts: Vec<BindMount>,
    /// Memory limit in bytes (also the memory+swap limit: no swap).
    pub memory_limit: Option<u64>,
    /// `/dev/shm` size in bytes.
    pub shm_size: Option<u64>,
    /// CPU cores the container may use, e.g. `0-1,4`.
    pub cpuset_cpus: Option<String>,
    /// CPU time limit in billionths of a CPU (for fractional CPU requests).
    pub nano_cpus: Option<i64>,
    /// Ports to publish.
    pub ports: Vec<PortMapping>,
    /// Devices to hand over through a device driver (e.g. NVIDIA's).
    pub devices: Vec<DeviceRequest>,
    /// Host device nodes to expose at the same path (e.g. `/dev/kfd`, `/dev/dri/renderD128`).
    pub device_nodes: Vec<String>,
    /// Run an init process as PID 1 (reaps zombies, forwards signals).
    pub init: bool,
    /// Keep stdin open (for runners that talk over stdin).
    pub open_stdin: bool,
}

/// The state of a container, as the engine reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ContainerState {
    /// Created, never started.
    Created,
    /// Running.
    Running,
    /// Paused.
    Paused,
    /// Restarting.
    Restarting,
    /// Being removed.
    Removing,
    /// Exited.
    Exited,
    /// Dead (failed removal).
    Dead,
}

impl ContainerState {
    /// Running, restarting or paused: the original's "active" states.
    pub fn is_active(self) -> bool {
        matches!(self, Self::Running | Self::Restarting | Self::Paused)
    }
}

/// Why a container's main process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Termination {
    /// It exited by itself with this code.
    Exited {
        /// The exit code.
        code: i64,
    },
    /// The memory cgroup killed it (exit 137 with the engine's OOM flag).
    OutOfMemory,
    /// It died of SIGBUS (exit 135), which is how writing past `/dev/shm`'s size shows.
    SharedMemoryExceeded,
    /// It was killed by another signal (exit 128 + signal).
    Signalled {
        /// The signal number.
        signal: i64,
    },
}

impl Termination {
    /// Classifies an exit: 137 with the OOM flag is [`Termination::OutOfMemory`], 135 is
    /// [`Termination::SharedMemoryExceeded`], other codes above 128 are signals.
    pub fn classify(exit_code: i64, oom_killed: bool) -> Self {
        match exit_code {
            137 if oom_killed => Self::OutOfMemory,
            135 => Self::SharedMemoryExceeded,
            c if c > 128 && c < 160 => Self::Signalled { signal: c - 128 },
            c => Self::Exited { code: c },
        }
    }

    /// The exit code reported for this termination.
    pub fn exit_code(self) -> i64 {
        match self {
            Self::Exited { code } => code,
            Self::OutOfMemory => 137,
            Self::SharedMemoryExceeded => 135,
            Self::Signalled { signal } => 128 + signal,
        }
    }

    /// The lifecycle reason string for this termination.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Exited { .. } => "self-terminated",
            Self::OutOfMemory => "out-of-memory",
            Self::SharedMemoryExceeded => "shared-memory-exceeded",
            Self::Signalled { .. } => "killed-by-signal",
        }
    }
}

/// What the engine knows about a container.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContainerInfo {
    /// The engine's id.
    pub id: String,
    /// The name (without a leading `/`).
    pub name: String,
    /// The image it runs.
    pub image: String,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// Its state.
    pub state: ContainerState,
    /// How it ended, once it has.
    pub termination: Option<Termination>,
    /// The host PID of its main process while running.
    pub pid: Option<u32>,
    /// Published ports.
    pub ports: Vec<PortMapping>,
}

/// What to run with [`ContainerRuntime::exec`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecSpec {
    /// The command and its arguments.
    pub cmd: Vec<String>,
    /// Extra environment variables.
    pub env: BTreeMap<String, String>,
    /// The working directory.
    pub working_dir: Option<String>,
    /// The user to run as (`uid[:gid]` or a name); the container's default when `None`.
    pub user: Option<String>,
    /// Attach a stdin the caller can write to.
    pub stdin: bool,
}

/// A chunk of output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// From stdout.
    Stdout(bytes::Bytes),
    /// From stderr.
    Stderr(bytes::Bytes),
}

/// A stream of output chunks.
pub type OutputStream = Pin<Box<dyn Stream<Item = Result<Output>> + Send>>;

/// A running exec: write to `stdin` (when requested), read `output` until it ends, then ask
/// [`ContainerRuntime::exec_exit_code`] with `id`.
pub struct ExecSession {
    /// The exec's id.
    pub id: String,
    /// Its stdin, when [`ExecSpec::stdin`] was set.
    pub stdin: Option<Pin<Box<dyn AsyncWrite + Send>>>,
    /// Its stdout and stderr.
    pub output: OutputStream,
}

impl std::fmt::Debug for ExecSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecSession")
            .field("id", &self.id)
            .field("stdin", &self.stdin.is_some())
            .finish_non_exhaustive()
    }
}

/// One progress report of an image pull.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullProgress {
    /// The layer, when the report is about one.
    pub layer: Option<String>,
    /// The engine's status text, e.g. `Downloading`.
    pub status: String,
    /// Bytes done for the layer.
    pub current: Option<u64>,
    /// Bytes in the layer.
    pub total: Option<u64>,
}

/// What the engine knows about an image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageInfo {
    /// The image id (`sha256:…`).
    pub id: String,
    /// Its tags (`repo:tag`).
    pub tags: Vec<String>,
    /// Its architecture, e.g. `amd64`.
    pub architecture: String,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// Its size in bytes.
    pub size: u64,
}

/// Raw resource counters of one container.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerStats {
    /// CPU time used, in nanoseconds.
    pub cpu_used_ns: u64,
    /// Memory in use, in bytes.
    pub memory_bytes: u64,
    /// Memory limit, in bytes.
    pub memory_limit_bytes: u64,
    /// Bytes read from block devices.
    pub io_read_bytes: u64,
    /// Bytes written to block devices.
    pub io_write_bytes: u64,
    /// Bytes received on the network.
    pub net_rx_bytes: u64,
    /// Bytes sent on the network.
    pub net_tx_bytes: u64,
}

/// Everything the agent asks of a container engine.
///
/// Cancel safety: every method is a single request to the engine; dropping its future may
/// leave the engine-side operation done or not done, never half-recorded by this crate.
#[async_trait]
pub trait ContainerRuntime: Send + Sync {
    /// A short name for logs, e.g. `docker`.
    fn name(&self) -> &'static str;
    /// Whether containers can have bind mounts (scratch and folder mounts). A runtime without
    /// them gives each container a working directory of its own instead.
    fn supports_bind_mounts(&self) -> bool {
        true
    }
    /// The host directory that is a container's `/home/work`, when the runtime keeps one of its
    /// own (runtimes without bind mounts); `None` when the agent's scratch is mounted there.
    fn work_dir_on_host(&self, _id: &str) -> Option<std::path::PathBuf> {
        None
    }
    /// Creates a container (not started); returns its id.
    async fn create(&self, spec: &ContainerSpec) -> Result<String>;
    /// Starts a created container.
    async fn start(&self, id: &str) -> Result<()>;
    /// Stops a container: the stop signal, then a kill after `timeout`. Stopping a stopped or
    /// missing container is not an error.
    async fn stop(&self, id: &str, timeout: Duration) -> Result<()>;
    /// Removes a container and its anonymous volumes, killing it if needed. Removing a missing
    /// container is not an error.
    async fn destroy(&self, id: &str) -> Result<()>;
    /// Inspects a container.
    async fn inspect(&self, id: &str) -> Result<ContainerInfo>;
    /// Lists containers (running or not) that carry every given label (`value == None` matches
    /// any value).
    async fn list(&self, labels: &[(&str, Option<&str>)]) -> Result<Vec<ContainerInfo>>;
    /// Waits until a container stops and returns how it ended.
    async fn wait(&self, id: &str) -> Result<Termination>;
    /// Runs a command inside a running container with attached output (and stdin on request).
    async fn exec(&self, id: &str, spec: &ExecSpec) -> Result<ExecSession>;
    /// The exit code of a finished exec; `None` while it runs.
    async fn exec_exit_code(&self, exec_id: &str) -> Result<Option<i64>>;
    /// The container's logs so far (stdout and stderr, interleaved as written).
    async fn logs(&self, id: &str) -> Result<Vec<u8>>;
    /// One sample of the container's resource counters.
    async fn stats(&self, id: &str) -> Result<ContainerStats>;
    /// Unpacks a tar archive into a directory of the container.
    async fn copy_in(&self, id: &str, dir: &str, tar: Vec<u8>) -> Result<()>;
    /// Packs a path of the container into a tar archive.
    async fn copy_out(&self, id: &str, path: &str) -> Result<Vec<u8>>;
    /// Pulls an image, reporting progress.
    async fn pull_image(&self, reference: &str, progress: &(dyn Fn(PullProgress) + Send + Sync)) -> Result<()>;
    /// Lists local images.
    async fn list_images(&self) -> Result<Vec<ImageInfo>>;
    /// Inspects a local image.
    async fn inspect_image(&self, reference: &str) -> Result<ImageInfo>;
    /// Removes an image (never forced: an image a container uses is refused by the engine).
    async fn remove_image(&self, reference: &str) -> Result<()>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminations_are_told_apart() {
        assert_eq!(Termination::classify(137, true), Termination::OutOfMemory);
        assert_eq!(Termination::classify(137, false), Termination::Signalled { signal: 9 });
        assert_eq!(Termination::classify(135, false), Termination::SharedMemoryExceeded);
        assert_eq!(Termination::classify(0, false), Termination::Exited { code: 0 });
        assert_eq!(Termination::classify(3, false).exit_code(), 3);
        assert_ne!(Termination::OutOfMemory.reason(), Termination::SharedMemoryExceeded.reason());
    }
}
