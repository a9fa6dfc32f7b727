//! A user-written agent selector through the `AgentSelector` trait: keep GPU nodes for GPU work
//! by sending CPU-only sessions to the CPU node with the most free memory.
//!
//! Run with `cargo run -p bai-examples --example custom_selector`.

#[path = "common/cluster.rs"]
mod cluster;

use std::sync::Arc;

use bai_scheduler::selector::{AgentSelector, AgentView, SelectionRequest};
use bai_scheduler::{plan, Config};

#[derive(Debug)]
struct GpuAware;

impl AgentSelector for GpuAware {
    fn name(&self) -> &str {
        "gpu-aware"
    }

    fn select(&self, req: &SelectionRequest<'_>, agents: &[AgentView<'_>]) -> Option<usize> {
        let wants_gpu = !req.requested.get("cuda.shares").is_zero();
        agents
            .iter()
            .enumerate()
            .filter(|(_, a)| req.requested.fits_in(&a.free))
            // CPU work: CPU nodes first; GPU work can only go to GPU nodes anyway
            .min_by_key(|(_, a)| {
                (!wants_gpu && !a.available.get("cuda.shares").is_zero(), std::cmp::Reverse(a.free.get("mem")))
            })
            .map(|(i, _)| i)
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let snapshot = cluster::random_cluster(20, 200, 1, 42);
    let mut config = Config::default();
    config.default.selector = Arc::new(GpuAware);
    let result = plan(&snapshot, &config, "2026-01-02T00:00:00Z".parse()?);
    cluster::check_safety(&snapshot, &result)?;

    let gpu_nodes: std::collections::HashSet<_> = snapshot
        .agents
        .iter()
        .filter(|a| !a.available_slots.get("cuda.shares").is_zero())
        .map(|a| a.id.clone())
        .collect();
    let cpu_work_on_gpu_nodes = result
        .placements
        .iter()
        .filter(|p| {
            let s = snapshot.pending.iter().find(|s| s.id == p.session_id).expect("placed sessions are pending");
            s.total_requested().get("cuda.shares").is_zero() && gpu_nodes.contains(&p.kernels[0].agent_id)
        })
        .count();
    println!(
        "{} of {} sessions placed by {}; {} CPU-only sessions had to use a GPU node",
        result.placements.len(),
        snapshot.pending.len(),
        config.default.selector.name(),
        cpu_work_on_gpu_nodes
    );
    Ok(())
}
