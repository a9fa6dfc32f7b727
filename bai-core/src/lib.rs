//! Core types of bai, a Rust implementation of the Backend.AI cluster platform.
//!
//! This crate is *sans-IO*: it holds the vocabulary every other bai crate shares — resource
//! slots and their exact decimal arithmetic ([`ResourceSlot`]), human byte sizes
//! ([`BinarySize`]), identifiers, image references, session specifications, the status machines
//! of sessions, kernels and agents, the typed event catalogue, and the request-signing scheme
//! of the manager API ([`signing`]).
//!
//! It must never do I/O: no sockets, no files, no clocks (time is always an argument), and no
//! dependency on tokio. Programs that only need the types or the arithmetic can use it without
//! pulling in a runtime.

#[macro_use]
mod wire_enum;

pub mod binary_size;
pub mod error;
pub mod events;
pub mod ids;
pub mod image_ref;
pub mod resource_slot;
pub mod session;
pub mod signing;
pub mod status;

pub use binary_size::BinarySize;
pub use error::{Error, Result};
pub use events::{Event, KernelLifecycleReason};
pub use ids::{AccessKey, AgentId, KernelId, SessionId};
pub use image_ref::ImageRef;
pub use resource_slot::{KnownSlots, ResourceSlot, SlotType};
pub use session::{ClusterMode, KernelSpec, Mount, MountPermission, ResourceOpts, SessionSpec, SessionType};
pub use status::{derive_session_status, AgentStatus, KernelStatus, SessionStatus};

pub use rust_decimal::Decimal;
