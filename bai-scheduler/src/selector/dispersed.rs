//! `dispersed`: spread sessions over the agents with the most free capacity.

use super::{num_extras, pick_min, priority_order, rank_value, AgentSelector, AgentView, SelectionRequest, Strategy};

/// Among the agents that fit, fewest extras first, then the most free capacity slot by slot in
/// priority order; ties go to the first agent. The original's default strategy.
#[derive(Debug, Clone, Copy, Default)]
pub struct Dispersed;

impl AgentSelector for Dispersed {
    fn name(&self) -> &str {
        "dispersed"
    }

    fn select(&self, request: &SelectionRequest<'_>, agents: &[AgentView<'_>]) -> Option<usize> {
        let order = priority_order(request.requested, request.resource_priority);
        pick_min(request, agents, |a| {
            let values: Vec<_> = order
                .iter()
                .map(|k| rank_value(a.available.contains(k), a.free.get(k), true))
                .collect();
            (num_extras(request.requested, a.available), values)
        })
    }

    fn strategy(&self) -> Option<Strategy> {
        Some(Strategy::Dispersed)
    }
}
