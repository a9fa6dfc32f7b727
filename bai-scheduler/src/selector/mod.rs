//! Agent selectors: which agent gets a session (or a kernel) among those that can host it.
//!
//! The built-in strategies follow the original's rules:
//!
//! | strategy | choice among the agents whose free slots fit the request |
//! |---|---|
//! | [`Dispersed`] | fewest *extras* first, then the most free capacity, slot by slot in priority order |
//! | [`Concentrated`] | fewest endpoint replicas, fewest extras, then the least free capacity |
//! | [`Legacy`] | fewest extras, then the most *total* capacity |
//! | [`RoundRobin`] | the next agent (sorted by id) after the previous choice that fits |
//!
//! *Extras* are slots the request does not ask for (zero or absent) but the agent offers, so a
//! CPU-only session prefers a CPU-only node and leaves GPU nodes free. The slot priority order
//! comes from [`crate::Config::resource_priority`] (default `cuda, rocm, tpu, cpu, mem`).
//!
//! Custom strategies implement [`AgentSelector`]; the planner calls them with every eligible
//! agent. The built-ins are answered from a capacity index instead, which chooses exactly the
//! agent their [`AgentSelector::select`] would choose.

mod concentrated;
mod dispersed;
mod legacy;
mod roundrobin;

use std::cmp::Ordering;
use std::fmt;

use bai_core::{AgentId, Decimal, ResourceSlot};

pub use concentrated::Concentrated;
pub use dispersed::Dispersed;
pub use legacy::Legacy;
pub use roundrobin::RoundRobin;

use crate::snapshot::PendingSession;

/// One built-in strategy; lets the planner use its capacity index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Strategy {
    /// See [`Concentrated`].
    Concentrated,
    /// See [`Dispersed`].
    Dispersed,
    /// See [`Legacy`].
    Legacy,
    /// See [`RoundRobin`].
    RoundRobin,
}

/// What is being placed.
#[derive(Debug, Clone, Copy)]
pub struct SelectionRequest<'a> {
    /// The session being placed.
    pub session: &'a PendingSession,
    /// The resources to place on one agent: the whole session (single-node) or one kernel
    /// (multi-node).
    pub requested: &'a ResourceSlot,
    /// The slot priority list (e.g. `["cuda", "rocm", "tpu", "cpu", "mem"]`).
    pub resource_priority: &'a [String],
    /// For round-robin selection: the position (in the agents sorted by id) to start at.
    pub roundrobin_next: usize,
}

/// An eligible agent as a selector sees it: alive, schedulable, in the session's scaling group
/// and of its architecture.
#[derive(Debug, Clone)]
pub struct AgentView<'a> {
    /// The agent's id.
    pub id: &'a AgentId,
    /// Its total capacity.
    pub available: &'a ResourceSlot,
    /// What is free now: capacity minus occupancy, including placements made earlier in this
    /// plan.
    pub free: ResourceSlot,
    /// Kernels of the session's inference endpoint already on this agent (0 when not
    /// applicable).
    pub endpoint_kernels: u32,
}

/// Chooses an agent for a request.
///
/// ```
/// use bai_scheduler::selector::{AgentSelector, AgentView, SelectionRequest};
///
/// /// Picks the agent with the most free memory.
/// #[derive(Debug)]
/// struct MostMemory;
///
/// impl AgentSelector for MostMemory {
///     fn name(&self) -> &str { "most-memory" }
///     fn select(&self, req: &SelectionRequest<'_>, agents: &[AgentView<'_>]) -> Option<usize> {
///         agents
///             .iter()
///             .enumerate()
///             .filter(|(_, a)| req.requested.fits_in(&a.free))
///             .max_by_key(|(_, a)| a.free.get("mem"))
///             .map(|(i, _)| i)
///     }
/// }
/// ```
pub trait AgentSelector: Send + Sync + fmt::Debug {
    /// The name used in configuration, e.g. `dispersed`.
    fn name(&self) -> &str;

    /// The index (into `agents`) of the chosen agent, or `None` when no agent should take the
    /// request. `agents` are in snapshot order. The planner double-checks that the chosen agent
    /// has room, so a selector cannot over-commit an agent.
    fn select(&self, request: &SelectionRequest<'_>, agents: &[AgentView<'_>]) -> Option<usize>;

    /// Built-in selectors return their strategy so the planner can answer from its capacity
    /// index (same choice, without scanning every agent). Custom selectors keep the default.
    fn strategy(&self) -> Option<Strategy> {
        None
    }
}

/// The selector for a configuration name: `concentrated`, `dispersed`, `legacy`, `roundrobin`.
pub fn by_name(name: &str) -> Option<std::sync::Arc<dyn AgentSelector>> {
    match name {
        "concentrated" => Some(std::sync::Arc::new(Concentrated)),
        "dispersed" => Some(std::sync::Arc::new(Dispersed)),
        "legacy" => Some(std::sync::Arc::new(Legacy)),
        "roundrobin" | "round-robin" => Some(std::sync::Arc::new(RoundRobin)),
        _ => None,
    }
}

/// The device of a slot name: the text before the first `.` (`cuda` for `cuda.shares`).
pub fn device_of(slot: &str) -> &str {
    slot.split(['.', ':']).next().unwrap_or(slot)
}

/// The request's slots (those present, zero or not) in priority order: a slot named in the
/// priority list by its full name takes that place; a slot whose device is listed comes right
/// after the device; unlisted slots come last; ties by name.
pub fn priority_order(requested: &ResourceSlot, resource_priority: &[String]) -> Vec<String> {
    let mut keys: Vec<((usize, usize), &str)> =
        requested.iter().map(|(k, _)| (slot_rank(k, resource_priority), k)).collect();
    keys.sort();
    keys.into_iter().map(|(_, k)| k.to_string()).collect()
}

/// A slot's place in the priority list: `(i, 0)` when listed by its full name at `i`, `(i, 1)`
/// when its device is listed at `i`, `(usize::MAX, 0)` when unlisted.
pub(crate) fn slot_rank(slot: &str, resource_priority: &[String]) -> (usize, usize) {
    if let Some(i) = resource_priority.iter().position(|p| p == slot) {
        (i, 0)
    } else if let Some(i) = resource_priority.iter().position(|p| p == device_of(slot)) {
        (i, 1)
    } else {
        (usize::MAX, 0)
    }
}

/// Slots the request does not ask for (zero or absent) but the agent offers (available > 0).
pub fn num_extras(requested: &ResourceSlot, available: &ResourceSlot) -> u32 {
    available.iter().filter(|(k, v)| *v > Decimal::ZERO && requested.get(k).is_zero()).count() as u32
}

/// The linear reference choice of the ranked strategies (dispersed, concentrated, legacy):
/// among the agents whose free slots fit, the first with the smallest key
/// `(endpoint kernels, extras, ranked values…)`, where the ranked values are the free (legacy:
/// total) amounts of the request's slots in priority order, negated when larger is better, and
/// a slot the agent does not offer ranks last. Only `concentrated` counts endpoint kernels.
pub(crate) fn pick_ranked(
    strategy: Strategy,
    request: &SelectionRequest<'_>,
    agents: &[AgentView<'_>],
) -> Option<usize> {
    let order = priority_order(request.requested, request.resource_priority);
    let key = |a: &AgentView<'_>| {
        let values: Vec<Decimal> = order
            .iter()
            .map(|k| match strategy {
                _ if !a.available.contains(k) => Decimal::MAX,
                Strategy::Concentrated => a.free.get(k),
                Strategy::Legacy => -a.available.get(k),
                Strategy::Dispersed | Strategy::RoundRobin => -a.free.get(k),
            })
            .collect();
        let endpoint = if strategy == Strategy::Concentrated { a.endpoint_kernels } else { 0 };
        (endpoint, num_extras(request.requested, a.available), values)
    };
    let mut best: Option<(_, usize)> = None;
    for (i, agent) in agents.iter().enumerate() {
        if !request.requested.fits_in(&agent.free) {
            continue;
        }
        let k = key(agent);
        if best.as_ref().is_none_or(|(b, _)| k.cmp(b) == Ordering::Less) {
            best = Some((k, i));
        }
    }
    best.map(|(_, i)| i)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slots(pairs: &[(&str, i64)]) -> ResourceSlot {
        ResourceSlot::from_pairs(pairs.iter().map(|(k, v)| (*k, Decimal::from(*v)))).unwrap()
    }

    #[test]
    fn priority_order_follows_the_reference_example() {
        let prio: Vec<String> = ["cuda", "rocm", "tpu", "cpu", "mem"].iter().map(|s| s.to_string()).collect();
        let req = slots(&[("cpu", 1), ("mem", 1), ("cuda.shares", 0), ("rocm.devices", 1), ("fpga", 1)]);
        assert_eq!(priority_order(&req, &prio), ["cuda.shares", "rocm.devices", "cpu", "mem", "fpga"]);
    }

    #[test]
    fn extras_count_offered_but_unrequested_slots() {
        let agent = slots(&[("cpu", 4), ("mem", 4096), ("cuda.shares", 4), ("tpu.device", 0)]);
        // mem and cuda.shares are offered but not requested; tpu.device is not offered
        assert_eq!(num_extras(&slots(&[("cpu", 1)]), &agent), 2);
        assert_eq!(num_extras(&slots(&[("cpu", 1), ("mem", 1), ("cuda.shares", 0)]), &agent), 1);
    }
}
