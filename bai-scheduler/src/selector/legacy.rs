//! `legacy`: the original's first strategy, ranking by total capacity.

use super::{pick_ranked, AgentSelector, AgentView, SelectionRequest, Strategy};

/// Among the agents that fit, fewest extras first, then the largest **total** capacity slot by
/// slot in priority order (occupancy is ignored for ranking, not for fitting).
#[derive(Debug, Clone, Copy, Default)]
pub struct Legacy;

impl AgentSelector for Legacy {
    fn name(&self) -> &str {
        "legacy"
    }

    fn select(&self, request: &SelectionRequest<'_>, agents: &[AgentView<'_>]) -> Option<usize> {
        pick_ranked(Strategy::Legacy, request, agents)
    }

    fn strategy(&self) -> Option<Strategy> {
        Some(Strategy::Legacy)
    }
}
