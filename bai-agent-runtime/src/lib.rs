//! Everything a bai agent does on its compute node, usable without the agent daemon.
//!
//! This crate will own the container runtime trait and its Docker (bollard) and local-process
//! backends, node resource discovery and allocation, accelerator plugins, scratch storage,
//! service ports, code execution and monitoring. It must never depend on the manager.
//!
//! Its integration tests already talk to a real Docker Engine through bollard (see
//! `tests/docker.rs`), so the test environment proves Docker is reachable.

pub use bai_core;
