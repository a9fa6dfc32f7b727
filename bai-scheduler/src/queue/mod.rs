//! Queue policies: in which order the pending sessions of one priority band are tried.
//!
//! The planner hands a policy the band's sessions in FIFO order (oldest first, ties by id) and
//! asks for them one at a time; each session is tried once per plan, and a session that cannot
//! be placed does not block the ones after it. Policies that care how much each owner already
//! uses (DRF) are told about every placement.

mod drf;
mod fifo;
mod lifo;

use std::fmt;
use std::sync::Arc;

pub use drf::{dominant_share, Drf};
pub use fifo::Fifo;
pub use lifo::Lifo;

use bai_core::ResourceSlot;

use crate::error::{Error, Result};
use crate::snapshot::{PendingSession, Usage};

/// What a policy may look at when it orders a band.
#[derive(Debug, Clone, Copy)]
pub struct QueueContext<'a> {
    /// The scaling group being scheduled.
    pub scaling_group: &'a str,
    /// The group's capacity: the sum of its schedulable agents' available slots.
    pub capacity: &'a ResourceSlot,
    /// Current usage per keypair and scope, before this plan.
    pub usage: &'a Usage,
}

/// The order of one band in one plan.
pub trait SessionQueue<'a> {
    /// The next session to try, or `None` when the band is done.
    fn next(&mut self) -> Option<&'a PendingSession>;

    /// Told after the session returned by the last [`SessionQueue::next`] was placed, with
    /// what it was given.
    fn placed(&mut self, session: &'a PendingSession, allocated: &ResourceSlot) {
        let _ = (session, allocated);
    }
}

/// A queue policy.
///
/// ```
/// use bai_scheduler::queue::{QueueContext, QueuePolicy, SessionQueue};
/// use bai_scheduler::PendingSession;
///
/// /// Smallest sessions first (by number of kernels), then FIFO.
/// #[derive(Debug)]
/// struct SmallestFirst;
///
/// impl QueuePolicy for SmallestFirst {
///     fn name(&self) -> &str { "smallest-first" }
///     fn start<'a>(&self, _ctx: QueueContext<'_>, mut band: Vec<&'a PendingSession>)
///         -> Box<dyn SessionQueue<'a> + 'a>
///     {
///         band.sort_by_key(|s| s.kernels.len()); // stable: FIFO within a size
///         Box::new(bai_scheduler::queue::Ordered::new(band))
///     }
/// }
/// ```
pub trait QueuePolicy: Send + Sync + fmt::Debug {
    /// The name used in configuration, e.g. `fifo`.
    fn name(&self) -> &str;

    /// Starts ordering one band; `band` is in FIFO order.
    fn start<'a>(&self, ctx: QueueContext<'_>, band: Vec<&'a PendingSession>) -> Box<dyn SessionQueue<'a> + 'a>;
}

/// A queue that yields sessions in a fixed order.
#[derive(Debug)]
pub struct Ordered<'a> {
    sessions: std::vec::IntoIter<&'a PendingSession>,
}

impl<'a> Ordered<'a> {
    /// Yields `sessions` in the given order.
    pub fn new(sessions: Vec<&'a PendingSession>) -> Self {
        Self { sessions: sessions.into_iter() }
    }
}

impl<'a> SessionQueue<'a> for Ordered<'a> {
    fn next(&mut self) -> Option<&'a PendingSession> {
        self.sessions.next()
    }
}

/// The policy for a configuration name and its options (a JSON object):
/// `fifo` (option `num_retries_to_skip`, an integer ≥ 0), `lifo`, `drf`. Unknown options are
/// kept by the caller and ignored here.
pub fn by_name(name: &str, options: &serde_json::Value) -> Result<Arc<dyn QueuePolicy>> {
    match name {
        "fifo" => {
            let skip = match options.get("num_retries_to_skip") {
                None | Some(serde_json::Value::Null) => 0,
                Some(v) => v.as_u64().and_then(|n| u32::try_from(n).ok()).ok_or_else(|| Error::InvalidConfig {
                    field: "num_retries_to_skip".into(),
                    reason: format!("{v} is not an integer between 0 and {}", u32::MAX),
                })?,
            };
            Ok(Arc::new(Fifo { num_retries_to_skip: skip }))
        }
        "lifo" => Ok(Arc::new(Lifo)),
        "drf" => Ok(Arc::new(Drf)),
        other => Err(Error::InvalidConfig {
            field: "scheduler".into(),
            reason: format!("unknown queue policy {other:?}: expected fifo, lifo or drf"),
        }),
    }
}
