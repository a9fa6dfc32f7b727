//! The bai manager as a library: the daemon `bai-manager` is a thin `main.rs` over it.
//!
//! Layers, top down: [`api`] (the Backend.AI client protocol: signed REST, GraphQL, SSE,
//! WebSocket, the storage side channel) → services ([`sessions`], [`manager`] with the
//! [`scheduler`] loop and [`lifecycle`] event handling, [`storage`]) → [`db`] (repositories over
//! sea-orm entities, PostgreSQL or SQLite). [`server`] composes a running manager (optionally
//! with an embedded agent), [`local`] a self-contained one in a directory, [`cli`] is the
//! command line, [`metrics`] the Prometheus endpoint, [`agent_client`] the agents' RPC
//! clients, [`watcher_client`] the agents' watchers' and [`tls`] the API listener's optional
//! TLS. [`shared_config`] is the cluster's shared configuration (etcd or a file) and
//! [`volumes`] the storage hosts it defines; [`registry`] scans container registries into the
//! image list, [`bgtask`] runs long operations in the background with progress, [`idle`] the idle checkers.
//! See docs/ARCHITECTURE.md for the invariants.

pub mod agent_client;
pub mod api;
pub mod bgtask;
pub mod cli;
pub mod config;
pub mod db;
pub mod idle;
pub mod images;
pub mod lifecycle;
pub mod local;
pub mod manager;
pub mod metrics;
pub mod registry;
pub mod scheduler;
pub mod server;
pub mod sessions;
pub mod shared_config;
pub mod storage;
pub mod tls;
pub mod utilisation;
pub mod volumes;
pub mod watcher_client;

pub use bai_core;
pub use bai_scheduler;

/// The version string of this build, as the manager reports it.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
