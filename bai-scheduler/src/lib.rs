//! A pure, embeddable session scheduler for bai (Backend.AI).
//!
//! [`plan`] takes an immutable [`Snapshot`] of agents, pending sessions, resource policies and
//! usage, a [`Config`] and the current time, and returns a [`Plan`]: where each placed session's
//! kernels go, a machine-readable [`BlockReason`] (with the numbers behind it) for every session
//! left waiting, and the sessions to cancel. A blocked session is data, not an error;
//! [`Plan::explain`] turns its reason into a sentence.
//!
//! Queue policies ([`queue`]: FIFO, LIFO, DRF) and agent selectors ([`selector`]: dispersed,
//! concentrated, round-robin, legacy) follow the original Backend.AI scheduler and are traits a
//! program can implement. Predicates ([`predicates`]) keep their original names.
//!
//! This crate must never do I/O, read a clock, or depend on tokio or on a database: time is an
//! input and the same inputs always give the same plan.

mod amount;
mod config;
mod error;
mod index;
mod plan;
mod planner;
pub mod predicates;
pub mod queue;
pub mod selector;
pub mod simulate;
mod snapshot;

pub use config::{BandMode, Config, GroupConfig};
pub use error::{Error, Result};
pub use plan::{
    explain_reason, BlockReason, Blocked, Cancellation, KernelPlacement, Placement, Plan, PredicateFailure,
    SlotShortage,
};
pub use planner::{plan, plan_with_decimal_amounts};
pub use simulate::{simulate, Arrival, KeyReport, SimulationOptions, SimulationReport};
pub use snapshot::{
    AgentSnapshot, DefaultForUnspecified, DependencyState, KernelRequest, KeypairPolicy, KeypairUsage, PendingSession,
    Policies, ResourceLimit, RoundRobinState, Snapshot, Usage,
};

pub use bai_core;
