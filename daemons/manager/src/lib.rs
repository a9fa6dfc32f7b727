//! The bai manager as a library: the daemon `bai-manager` is a thin `main.rs` over it.
//!
//! This crate will own the manager's API (signed REST and GraphQL), its database (sea-orm
//! over PostgreSQL, or SQLite as the embedded default), the event bus, the scheduler loop that
//! drives [`bai_scheduler`], and the agent registry.
//!
//! Its integration tests already connect to the real services the manager will use
//! (PostgreSQL, Redis and etcd; see `tests/services.rs`).

pub mod agent_client;
pub mod api;
pub mod cli;
pub mod config;
pub mod db;
pub mod lifecycle;
pub mod manager;
pub mod metrics;
pub mod scheduler;
pub mod server;
pub mod sessions;
pub mod storage;

pub use bai_core;
pub use bai_scheduler;

/// The version string of this build, as the manager reports it.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
