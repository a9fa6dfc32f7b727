//! Plans a large random cluster once and reports the throughput.
//!
//! ```text
//! cargo run --release -p bai-examples --example plan_throughput -- \
//!     --agents 5000 --sessions 100000 --policy fifo --selector dispersed [--kernels 4] [--seed 7]
//! ```
//!
//! The last line is `placements=<n> elapsed_ms=<t> placements_per_sec=<r>`, where a placement
//! is one kernel put on an agent.

#[path = "common/cluster.rs"]
mod cluster;

use std::time::Instant;

use bai_scheduler::{BandMode, Config, GroupConfig};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut agents = 5000usize;
    let mut sessions = 100_000usize;
    let mut kernels = 1u32;
    let mut policy = "fifo".to_string();
    let mut selector = "dispersed".to_string();
    let mut seed = 7u64;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--agents" => agents = value()?.parse()?,
            "--sessions" => sessions = value()?.parse()?,
            "--kernels" => kernels = value()?.parse()?,
            "--policy" => policy = value()?,
            "--selector" => selector = value()?,
            "--seed" => seed = value()?.parse()?,
            "-h" | "--help" => {
                println!("usage: plan_throughput [--agents N] [--sessions M] [--kernels K] [--policy fifo|lifo|drf] [--selector concentrated|dispersed|roundrobin|legacy] [--seed S]");
                return Ok(());
            }
            other => return Err(format!("unknown argument {other:?}; see --help").into()),
        }
    }
    if kernels == 0 {
        return Err("--kernels must be at least 1".into());
    }
    let mut config =
        Config::default().with_default(GroupConfig::from_names(&policy, &serde_json::json!({}), &selector)?);
    config.bands = BandMode::HighestOnly;
    let snapshot = cluster::random_cluster(agents, sessions, kernels, seed);
    let now = "2026-01-02T00:00:00Z".parse()?;

    let started = Instant::now();
    let plan = bai_scheduler::plan(&snapshot, &config, now);
    let elapsed = started.elapsed();

    let placed_kernels = cluster::check_safety(&snapshot, &plan)?;
    println!(
        "agents={agents} sessions={sessions} kernels_per_session={kernels} policy={policy} selector={selector}: \
         {} sessions placed, {} waiting, safety check passed",
        plan.placements.len(),
        plan.blocked.len()
    );
    let ms = elapsed.as_secs_f64() * 1000.0;
    println!(
        "placements={placed_kernels} elapsed_ms={ms:.1} placements_per_sec={:.0}",
        placed_kernels as f64 / elapsed.as_secs_f64()
    );
    Ok(())
}
