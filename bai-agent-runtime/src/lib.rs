//! Everything a bai agent does on its compute node, usable without the agent daemon.
//!
//! - [`runtime`]: the [`ContainerRuntime`](runtime::ContainerRuntime) trait and its Docker
//!   backend (bollard).
//! - [`resources`]: node capacity discovery and allocation maps (CPU cores, memory, shared
//!   memory), with [`accelerator`] plugins for devices.
//! - [`ports`]: the host port pool for service ports.
//! - [`scratch`] and [`vfolder`]: per-kernel scratch directories with an enforced quota, and
//!   virtual-folder mounts that cannot escape their host root.
//! - [`stats`]: per-container and node statistics from the cgroup hierarchy and /proc.
//! - [`exec`]: code execution inside kernels, in batch and query modes, through a small runner.
//! - [`services`]: services inside kernels (Jupyter, an HTTP or TCP server) started on demand.
//! - [`labels`]: the container labels from which an agent rebuilds its state.
//! - [`rpc`]: the manager ↔ agent gRPC protocol (generated client and server, token check).
//! - [`bus`]: the event bus (Redis streams, or in process) agents and the manager share.
//!
//! It must never depend on the manager: a platform team can drive containers through it
//! directly.

pub mod accelerator;
pub mod bus;
pub mod error;
pub mod exec;
pub mod kernel;
pub mod labels;
pub mod ports;
pub mod resources;
pub mod rpc;
pub mod runtime;
pub mod scratch;
pub mod services;
pub mod stats;
pub mod vfolder;

pub use bai_core;
pub use error::{Error, Result};
