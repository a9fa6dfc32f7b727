//! The Rust SDK for the bai (Backend.AI) manager API, and later the `bai` command line.
//!
//! This crate will own request signing on the client side (through
//! [`bai_core::signing`]), typed calls for sessions, virtual folders and administration,
//! streamed execution and events. It speaks the same protocol as the official Python client.

pub use bai_core;
