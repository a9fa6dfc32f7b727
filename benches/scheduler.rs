//! Scheduler benchmarks: one `plan()` over random heterogeneous clusters, per policy and
//! selector. The full-size figures (5,000 agents × 100,000 sessions) come from
//! `examples/plan_throughput.rs`; these sizes keep a criterion run short.

// criterion's macros generate undocumented functions
#![allow(missing_docs)]

#[path = "../examples/common/cluster.rs"]
mod cluster;

use std::hint::black_box;

use bai_scheduler::{plan, Config, GroupConfig};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

fn config(policy: &str, selector: &str) -> Config {
    Config::default()
        .with_default(GroupConfig::from_names(policy, &serde_json::json!({}), selector).expect("built-in names"))
}

fn single_node(c: &mut Criterion) {
    let snapshot = cluster::random_cluster(1000, 20_000, 1, 7);
    let now = "2026-01-02T00:00:00Z".parse().expect("date");
    let mut group = c.benchmark_group("plan/1000-agents-20000-sessions");
    group.sample_size(10);
    group.throughput(Throughput::Elements(snapshot.pending.len() as u64));
    for (policy, selector) in [
        ("fifo", "dispersed"),
        ("fifo", "concentrated"),
        ("fifo", "roundrobin"),
        ("drf", "dispersed"),
        ("lifo", "legacy"),
    ] {
        let cfg = config(policy, selector);
        group.bench_with_input(BenchmarkId::new(policy, selector), &cfg, |b, cfg| {
            b.iter(|| plan(black_box(&snapshot), cfg, now))
        });
    }
    group.finish();
}

fn multi_node(c: &mut Criterion) {
    let snapshot = cluster::random_cluster(1000, 10_000, 4, 7);
    let now = "2026-01-02T00:00:00Z".parse().expect("date");
    let mut group = c.benchmark_group("plan/1000-agents-10000-sessions-4-kernels");
    group.sample_size(10);
    group.throughput(Throughput::Elements(snapshot.pending.len() as u64));
    for selector in ["dispersed", "concentrated"] {
        let cfg = config("fifo", selector);
        group.bench_with_input(BenchmarkId::new("fifo", selector), &cfg, |b, cfg| {
            b.iter(|| plan(black_box(&snapshot), cfg, now))
        });
    }
    group.finish();
}

criterion_group!(benches, single_node, multi_node);
criterion_main!(benches);
