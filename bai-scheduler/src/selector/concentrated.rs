//! `concentrated`: pack sessions onto the fewest agents.

use super::{pick_ranked, AgentSelector, AgentView, SelectionRequest, Strategy};

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
        pick_ranked(Strategy::Concentrated, request, agents)
    }

    fn strategy(&self) -> Option<Strategy> {
        Some(Strategy::Concentrated)
    }
}
