//! `roundrobin`: take turns.

use super::{AgentSelector, AgentView, SelectionRequest, Strategy};

/// Sorts the agents by id, starts at [`SelectionRequest::roundrobin_next`] and takes the first
/// agent, cyclically, whose free slots fit. The planner keeps the position per scaling group and
/// architecture, moving it past each chosen agent, and returns it in the plan.
#[derive(Debug, Clone, Copy, Default)]
pub struct RoundRobin;

impl AgentSelector for RoundRobin {
    fn name(&self) -> &str {
        "roundrobin"
    }

    fn select(&self, request: &SelectionRequest<'_>, agents: &[AgentView<'_>]) -> Option<usize> {
        if agents.is_empty() {
            return None;
        }
        let mut by_id: Vec<usize> = (0..agents.len()).collect();
        by_id.sort_by(|a, b| agents[*a].id.cmp(agents[*b].id));
        let start = request.roundrobin_next % agents.len();
        (0..agents.len())
            .map(|step| by_id[(start + step) % agents.len()])
            .find(|i| request.requested.fits_in(&agents[*i].free))
    }

    fn strategy(&self) -> Option<Strategy> {
        Some(Strategy::RoundRobin)
    }
}
