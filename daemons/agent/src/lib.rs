//! The bai agent as a library: the daemon `bai-agent` is a thin `main.rs` over it.
//!
//! - [`config`]: the configuration (TOML file, flags, environment, etcd).
//! - [`agent`]: [`Agent`](agent::Agent), the state and every operation the manager can ask
//!   for (create, destroy, execute, files, statistics, reconciliation, image pulls), with the
//!   lifecycle events it sends.
//! - [`rpc`]: the gRPC service (default port 6011) in front of it, behind the shared-token
//!   check.
//! - [`metrics`]: the Prometheus metrics and their endpoint (default port 6003).
//! - [`watcher`]: `bai-agent watcher`, the supervisor that restarts a crashed agent (port 6009).
//! - [`daemon`]: composition — [`daemon::start`] builds everything from a configuration and
//!   returns a handle whose `shutdown` leaves the kernels running.
//!
//! The node-side work (containers, resources, execution), the protocol and the event bus
//! live in [`bai_agent_runtime`].

pub mod agent;
pub mod config;
pub mod daemon;
pub mod error;
pub mod metrics;
pub mod rpc;
pub mod watcher;

pub use bai_agent_runtime;
pub use bai_core;
pub use error::{AgentError, Result};

/// The version string of this build, as the agent reports it.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
