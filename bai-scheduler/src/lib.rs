//! Pure session scheduling for bai.
//!
//! This crate will own the scheduler: a function from an immutable snapshot of agents, pending
//! sessions and resource policies to a plan of placements, with a machine-readable reason for
//! every session it could not place. It must never do I/O, read a clock, or depend on tokio or
//! on a database: time is an input, and the manager (or any embedding program) builds the
//! snapshot.
//!
//! The resource arithmetic it schedules with lives in [`bai_core::ResourceSlot`].

pub use bai_core;
