//! `dispersed`: spread sessions over the agents with the most free capacity.

use super::{pick_ranked, AgentSelector, AgentView, SelectionRequest, Strategy};

/// Among the agents that fit, fewest extras first, then the most free capacity slot by slot in
/// priority order; ties go to the first agent. The original's default strategy.
#[derive(Debug, Clone, Copy, Default)]
pub struct Dispersed;

impl AgentSelector for Dispersed {
    fn name(&self) -> &str {
        "dispersed"
    }

    fn select(&self, request: &SelectionRequest<'_>, agents: &[AgentView<'_>]) -> Option<usize> {
        pick_ranked(Strategy::Dispersed, request, agents)
    }

    fn strategy(&self) -> Option<Strategy> {
        Some(Strategy::Dispersed)
    }
}
