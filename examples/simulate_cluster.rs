//! "What if?" with the scheduler's simulator: the same day of work under FIFO and DRF, and with
//! ten more GPU nodes.
//!
//! Run with `cargo run --release -p bai-examples --example simulate_cluster`.

#[path = "common/cluster.rs"]
mod cluster;

use bai_core::{AgentId, Decimal};
use bai_scheduler::{simulate, Arrival, Config, GroupConfig, SimulationOptions, SimulationReport};
use chrono::TimeDelta;

fn summary(name: &str, report: &SimulationReport) {
    let waits: Vec<f64> = report.keys.values().filter(|k| k.started > 0).map(|k| k.mean_wait_secs).collect();
    let mean_wait = waits.iter().sum::<f64>() / waits.len().max(1) as f64;
    let worst = report.keys.values().map(|k| k.max_wait_secs).fold(0.0, f64::max);
    let util: Vec<String> = report.utilisation.iter().map(|(k, v)| format!("{k} {:.0}%", v * 100.0)).collect();
    println!(
        "{name:<28} mean wait {mean_wait:>7.0}s  worst wait {worst:>7.0}s  fairness {:.3}  utilisation {}  still waiting {}",
        report.fairness,
        util.join(", "),
        report.still_waiting
    );
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // 40 nodes and 4,000 sessions arriving over 4 hours, running 30 minutes to 4 hours
    let base = cluster::random_cluster(40, 4000, 1, 11);
    let mut rng = cluster::Rng::new(5);
    let start: chrono::DateTime<chrono::Utc> = "2026-01-01T09:00:00Z".parse()?;
    let arrivals: Vec<Arrival> = base
        .pending
        .iter()
        .map(|s| Arrival {
            at: start + TimeDelta::seconds(rng.range(0, 4 * 3600) as i64),
            duration: TimeDelta::minutes(rng.range(30, 240) as i64),
            session: s.clone(),
        })
        .collect();
    let mut agents_only = base.clone();
    agents_only.pending.clear();
    let options = SimulationOptions { interval: TimeDelta::seconds(30), horizon: TimeDelta::days(2) };

    let fifo = Config::default();
    let drf = Config::default().with_default(GroupConfig::from_names("drf", &serde_json::json!({}), "dispersed")?);
    summary("fifo, dispersed", &simulate(&agents_only, &fifo, &arrivals, &options));
    summary("drf, dispersed", &simulate(&agents_only, &drf, &arrivals, &options));

    // what if we add ten GPU nodes?
    let mut bigger = agents_only.clone();
    let template = bigger.agents.iter().find(|a| !a.available_slots.get("cuda.shares").is_zero()).cloned();
    if let Some(gpu_node) = template {
        for i in 0..10 {
            let mut node = gpu_node.clone();
            node.id = AgentId::new(format!("i-extra-{i}"))?;
            node.available_slots.set("cuda.shares", Decimal::from(8))?;
            bigger.agents.push(node);
        }
    }
    summary("drf, dispersed, +10 GPU nodes", &simulate(&bigger, &drf, &arrivals, &options));
    Ok(())
}
