//! `concentrated`: pack sessions onto the fewest agents.

use super::{num_extras, pick_min, priority_order, rank_value, AgentSelector, AgentView, SelectionRequest, Strategy};

/// Among the agents that fit, fewest kernels of the same inference endpoint first (when the
/// session spreads replicas), then fewest extras, then the least free capacity slot by slot in
/// priority order; ties go to the first agent.
#[derive(Debug, Clone, Copy, Default)]
pub struct Concentrated;

impl AgentSelector for Concentrated {
    fn name(&self) -> &str {
        "concentrated"
    }

    fn select(&self, request: &SelectionRequest<'_>, agents: &[AgentView<'_>]) -> Option<usize> {
        let order = priority_order(request.requested, request.resource_priority);
        pick_min(request, agents, |a| {
            let values: Vec<_> = order
                .iter()
                .map(|k| rank_value(a.available.contains(k), a.free.get(k), false))
                .collect();
            (a.endpoint_kernels, num_extras(request.requested, a.available), values)
        })
    }

    fn strategy(&self) -> Option<Strategy> {
        Some(Strategy::Concentrated)
    }
}
