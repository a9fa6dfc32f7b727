//! The bai agent as a library: the daemon `bai-agent` is a thin `main.rs` over it.
//!
//! This crate will own the agent's gRPC server for the manager, heartbeats and events,
//! lifecycle synchronisation with the container runtime of [`bai_agent_runtime`], recovery
//! after restarts, and metrics.

pub use bai_agent_runtime;
pub use bai_core;

/// The version string of this build, as the agent reports it.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
