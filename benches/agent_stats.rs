//! The agent's statistics sweep: `StatCollector::collect` over 100 containers.
//!
//! Budget: the agent samples every container every 5 s, and that should cost **less than 1 %
//! of one core at 100 containers**. 1 % of a core over 5 s is 50 ms of CPU, so one sweep over
//! 100 containers must take under 50 ms (0.5 ms per container). A sweep is a single thread
//! reading pseudo-files, which the kernel answers from memory without sleeping, so its wall
//! time is its CPU time. Before criterion runs, this bench times a few hundred sweeps and
//! prints `sweep time / 50 ms` — the fraction of the budget used (below 1 meets it) — and the
//! resulting share of a core.
//!
//! Trees measured:
//! - `fake-v1`, `fake-v2`: 100 containers in a temporary directory laid out like cgroup v1
//!   (cgroupfs driver, `docker/<id>`) and v2 (`system.slice/docker-<id>.scope`), each with
//!   `/proc/<pid>/cgroup` and `/proc/<pid>/net/dev`. These measure parsing and the syscalls,
//!   on a regular filesystem.
//! - `real-own-cgroup`: 100 targets that all point at this process's own cgroup on the real
//!   `/sys/fs/cgroup` (skipped where it cannot be read). This includes the kernel's cost of
//!   generating `memory.stat` and friends, which is what a real sweep pays.

// criterion's macros generate undocumented functions
#![allow(missing_docs)]

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bai_agent_runtime::stats::{ContainerTarget, NodeStatCollector, StatCollector};
use criterion::{BenchmarkId, Criterion, Throughput};

const CONTAINERS: usize = 100;
const INTERVAL: Duration = Duration::from_secs(5);
const BUDGET: Duration = Duration::from_millis(50); // 1 % of one core over INTERVAL

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, text).expect("write");
}

fn net_dev(i: usize) -> String {
    format!(
        "Inter-|   Receive                                                |  Transmit\n face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    lo:    1234      10    0    0    0     0          0         0     1234      10    0    0    0     0       0          0\n  eth0: {}    {}    0    0    0     0          0         0 {}   {}    0    0    0     0       0          0\n",
        1_000_000 + i,
        900 + i,
        2_000_000 + i,
        800 + i
    )
}

/// A memory.stat about as long as the kernel's (v1 prints ~36 lines).
fn memory_stat(prefix: &str) -> String {
    let keys = [
        "cache",
        "rss",
        "rss_huge",
        "shmem",
        "mapped_file",
        "dirty",
        "writeback",
        "pgpgin",
        "pgpgout",
        "pgfault",
        "pgmajfault",
        "inactive_anon",
        "active_anon",
        "inactive_file",
        "active_file",
        "unevictable",
    ];
    let mut text = String::new();
    for k in keys {
        text.push_str(&format!("{k} 123456\n"));
    }
    for k in keys {
        text.push_str(&format!("{prefix}{k} 654321\n"));
    }
    text
}

struct FakeNode {
    root: PathBuf,
    targets: Vec<ContainerTarget>,
}

impl Drop for FakeNode {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

fn fake_node(v2: bool) -> FakeNode {
    let root =
        std::env::temp_dir().join(format!("bai-bench-stats-{}-{}", std::process::id(), if v2 { "v2" } else { "v1" }));
    let _ = std::fs::remove_dir_all(&root);
    let cg = root.join("sys/fs/cgroup");
    let mut stat = String::from("cpu 100 0 100 1000 0 0 0 0 0 0\n");
    for i in 0..64 {
        stat.push_str(&format!("cpu{i} 1 0 1 10 0 0 0 0 0 0\n"));
    }
    write(&root.join("proc/stat"), &stat);
    if v2 {
        write(&cg.join("cgroup.controllers"), "cpuset cpu io memory pids\n");
    }
    let mut targets = Vec::new();
    for i in 0..CONTAINERS {
        let id = format!("{i:064x}");
        let pid = 10_000 + i as u32;
        write(&root.join(format!("proc/{pid}/net/dev")), &net_dev(i));
        if v2 {
            let rel = format!("system.slice/docker-{id}.scope");
            let dir = cg.join(&rel);
            write(
                &dir.join("cpu.stat"),
                &format!(
                    "usage_usec {}\nuser_usec 1\nsystem_usec 1\nnr_periods 0\nnr_throttled 0\nthrottled_usec 0\n",
                    1_000_000 * i
                ),
            );
            write(&dir.join("memory.current"), &format!("{}\n", 100 << 20));
            write(&dir.join("memory.max"), "1073741824\n");
            write(&dir.join("memory.stat"), &memory_stat("workingset_"));
            write(&dir.join("io.stat"), "8:0 rbytes=3387392 wbytes=176128 rios=103 wios=32 dbytes=0 dios=0\n");
            write(&dir.join("cpuset.cpus.effective"), "0-3\n");
            write(&dir.join("cpu.max"), "max 100000\n");
            write(&root.join(format!("proc/{pid}/cgroup")), &format!("0::/{rel}\n"));
        } else {
            let rel = format!("docker/{id}");
            write(&cg.join("cpuacct").join(&rel).join("cpuacct.usage"), &format!("{}\n", 1_000_000_000 * i as u64));
            let mem = cg.join("memory").join(&rel);
            write(&mem.join("memory.usage_in_bytes"), &format!("{}\n", 100 << 20));
            write(&mem.join("memory.limit_in_bytes"), "1073741824\n");
            write(&mem.join("memory.stat"), &memory_stat("total_"));
            write(&cg.join("blkio").join(&rel).join("blkio.throttle.io_service_bytes"), "8:0 Read 13918208\n8:0 Write 0\n8:0 Sync 0\n8:0 Async 13918208\n8:0 Discard 0\n8:0 Total 13918208\nTotal 13918208\n");
            write(&cg.join("cpuset").join(&rel).join("cpuset.cpus"), "0-3\n");
            write(&cg.join("cpu").join(&rel).join("cpu.cfs_quota_us"), "-1\n");
            write(&cg.join("cpu").join(&rel).join("cpu.cfs_period_us"), "100000\n");
            let lines = ["memory", "cpu,cpuacct", "cpuset", "blkio"]
                .iter()
                .enumerate()
                .map(|(n, c)| format!("{}:{c}:/{rel}\n", n + 1))
                .collect::<String>();
            write(&root.join(format!("proc/{pid}/cgroup")), &lines);
        }
        targets.push(ContainerTarget::new(id, Some(pid)));
    }
    FakeNode { root, targets }
}

/// 100 targets that all read this process's own cgroup on the real hierarchy.
fn real_targets() -> Option<(StatCollector, Vec<ContainerTarget>)> {
    let mut collector = StatCollector::new("/").ok()?;
    let pid = std::process::id();
    let targets: Vec<_> = (0..CONTAINERS).map(|i| ContainerTarget::new(format!("self-{i}"), Some(pid))).collect();
    let sweep = collector.collect(&targets, Instant::now());
    if !sweep.errors.is_empty() {
        eprintln!(
            "real-own-cgroup skipped: {}",
            sweep.errors.values().next().map(ToString::to_string).unwrap_or_default()
        );
        return None;
    }
    Some((collector, targets))
}

/// Times `rounds` sweeps by hand and prints the per-sweep time against the budget.
fn report(name: &str, collector: &mut StatCollector, targets: &[ContainerTarget]) {
    let rounds = 300;
    let mut t = Instant::now();
    let start = Instant::now();
    for _ in 0..rounds {
        t += INTERVAL;
        let sweep = collector.collect(black_box(targets), t);
        assert_eq!(sweep.metrics.len(), targets.len(), "{:?}", sweep.errors.values().next());
    }
    let per_sweep = start.elapsed() / rounds;
    let ratio = per_sweep.as_secs_f64() / BUDGET.as_secs_f64();
    let core_share = per_sweep.as_secs_f64() / INTERVAL.as_secs_f64() * 100.0;
    println!(
        "stats budget [{name}]: {CONTAINERS} containers in {:.3} ms per sweep = {ratio:.4} of the 50 ms budget \
         ({core_share:.4} % of one core at one sweep per 5 s; {:.1} µs per container) -> {}",
        per_sweep.as_secs_f64() * 1e3,
        per_sweep.as_secs_f64() * 1e6 / CONTAINERS as f64,
        if ratio < 1.0 { "within budget" } else { "OVER BUDGET" },
    );
}

fn main() {
    let v1 = fake_node(false);
    let v2 = fake_node(true);
    let mut c1 = StatCollector::new(&v1.root).expect("v1 tree");
    let mut c2 = StatCollector::new(&v2.root).expect("v2 tree");
    let mut real = real_targets();

    report("fake-v1", &mut c1, &v1.targets);
    report("fake-v2", &mut c2, &v2.targets);
    if let Some((collector, targets)) = real.as_mut() {
        report("real-own-cgroup", collector, targets);
    }

    let mut criterion = Criterion::default().configure_from_args();
    {
        let mut group = criterion.benchmark_group("stats/sweep");
        group.throughput(Throughput::Elements(CONTAINERS as u64));
        let mut t = Instant::now();
        for (name, collector, targets) in [("fake-v1", &mut c1, &v1.targets), ("fake-v2", &mut c2, &v2.targets)] {
            group.bench_function(BenchmarkId::new(name, CONTAINERS), |b| {
                b.iter(|| {
                    t += INTERVAL;
                    collector.collect(black_box(targets), t)
                })
            });
        }
        if let Some((collector, targets)) = real.as_mut() {
            group.bench_function(BenchmarkId::new("real-own-cgroup", CONTAINERS), |b| {
                b.iter(|| {
                    t += INTERVAL;
                    collector.collect(black_box(targets), t)
                })
            });
        }
        group.finish();
    }
    let mut node = NodeStatCollector::new("/", vec![PathBuf::from("/")]);
    if node.collect(Instant::now()).is_ok() {
        criterion.bench_function("stats/node/real", |b| b.iter(|| node.collect(Instant::now())));
    }
    criterion.final_summary();
}
