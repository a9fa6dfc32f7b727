//! `legacy`: the original's first strategy, ranking by total capacity.

use super::{num_extras, pick_min, priority_order, rank_value, AgentSelector, AgentView, SelectionRequest, Strategy};

/// Among the agents that fit, fewest extras first, then the largest **total** capacity slot by
/// slot in priority order (occupancy is ignored for ranking, not for fitting).
#[derive(Debug, Clone, Copy, Default)]
pub struct Legacy;

impl AgentSelector for Legacy {
    fn name(&self) -> &str {
        "legacy"
    }

    fn select(&self, request: &SelectionRequest<'_>, agents: &[AgentView<'_>]) -> Option<usize> {
        let order = priority_order(request.requested, request.resource_priority);
        pick_min(request, agents, |a| {
            let values: Vec<_> = order
                .iter()
                .map(|k| rank_value(a.available.contains(k), a.available.get(k), true))
                .collect();
            (num_extras(request.requested, a.available), values)
        })
    }

    fn strategy(&self) -> Option<Strategy> {
        Some(Strategy::Legacy)
    }
}
