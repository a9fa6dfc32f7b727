//! [`StatCollector`]: per-container metrics from two consecutive samples.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bai_core::Decimal;
use serde::{Deserialize, Serialize};

use super::cgroup::{read_file, validate_container_id, CgroupVersion, ContainerCgroup};
use super::metric::MetricValue;
use super::procfs::{parse_net_dev, parse_proc_stat};
use super::sample::ContainerSample;
use crate::error::{Error, Result};

/// A network rate above 100 Gbit/s (12.5 GB/s) is a bogus reading (e.g. counters of the host's
/// namespace after a PID was reused); it is reported as zero, as the original does.
pub const NET_RATE_CEILING_BYTES_PER_SEC: u64 = 12_500_000_000;

/// A container to sample: its engine id and, while it runs, the host PID of its main process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerTarget {
    /// The engine's full container id.
    pub id: String,
    /// The host PID of its main process; used to find its cgroup and to read its network
    /// namespace's `/proc/<pid>/net/dev`. Without it the network metrics stay at zero.
    pub pid: Option<u32>,
}

impl ContainerTarget {
    /// A target.
    pub fn new(id: impl Into<String>, pid: Option<u32>) -> Self {
        Self { id: id.into(), pid }
    }
}

/// The original's per-container metrics; the JSON form is `{"cpu_used": {…}, "cpu_util": {…},
/// …}` with a [`MetricValue`] under each key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ContainerMetrics {
    /// CPU time used since the container started, in milliseconds; no capacity.
    pub cpu_used: MetricValue,
    /// CPU use over the interval between the last two samples, in percent of one CPU (150 =
    /// one and a half CPUs busy); capacity `100 × the CPUs the container may use`, so `pct` is
    /// the share of its allocation. Zero on the first sample.
    pub cpu_util: MetricValue,
    /// Memory in use (without inactive file cache), in bytes; capacity the memory limit, or
    /// none when unlimited.
    pub mem: MetricValue,
    /// Bytes read from block devices since the container started; no capacity.
    pub io_read: MetricValue,
    /// Bytes written to block devices since the container started; no capacity.
    pub io_write: MetricValue,
    /// Bytes received per second over the last interval (interfaces other than `lo`).
    pub net_rx: MetricValue,
    /// Bytes sent per second over the last interval (interfaces other than `lo`).
    pub net_tx: MetricValue,
}

impl ContainerMetrics {
    /// Metrics from the current sample and, for the rates, the previous one with the time
    /// elapsed since it. `default_cpus` is the CPU count used when the sample has none.
    ///
    /// Rates are zero on the first sample, when no time has passed, and when a counter went
    /// backwards (the container restarted), as the original's `MovingStatistics.rate` does.
    pub fn from_samples(
        previous: Option<(&ContainerSample, Duration)>,
        current: &ContainerSample,
        default_cpus: Decimal,
    ) -> Self {
        let per_sec = |prev: Option<u64>, cur: Option<u64>| -> Decimal {
            match (previous, prev, cur) {
                (Some((_, dt)), Some(p), Some(c)) => rate(p, c, dt, 1_000_000_000),
                _ => Decimal::ZERO,
            }
        };
        let net = |prev: Option<u64>, cur: Option<u64>| {
            let r = per_sec(prev, cur);
            if r > Decimal::from(NET_RATE_CEILING_BYTES_PER_SEC) {
                tracing::debug!(rate = %r, "network rate above 100 Gbit/s ignored");
                Decimal::ZERO
            } else {
                r
            }
        };
        let prev = previous.map(|(s, _)| *s);
        let cpus = current.cpus.unwrap_or(default_cpus);
        let cpu_util = match previous {
            // ns of CPU per ns of wall time, × 100: percent of one CPU.
            Some((p, dt)) => rate(p.cpu_used_ns, current.cpu_used_ns, dt, 100),
            None => Decimal::ZERO,
        };
        Self {
            cpu_used: MetricValue::uncapped(Decimal::from(current.cpu_used_ns) / Decimal::from(1_000_000u32)),
            cpu_util: MetricValue::new(cpu_util, cpus.checked_mul(Decimal::ONE_HUNDRED)),
            mem: MetricValue::new(Decimal::from(current.mem_used_bytes), current.mem_limit_bytes.map(Decimal::from)),
            io_read: MetricValue::uncapped(Decimal::from(current.io_read_bytes)),
            io_write: MetricValue::uncapped(Decimal::from(current.io_write_bytes)),
            net_rx: MetricValue::uncapped(net(prev.and_then(|p| p.net_rx_bytes), current.net_rx_bytes)),
            net_tx: MetricValue::uncapped(net(prev.and_then(|p| p.net_tx_bytes), current.net_tx_bytes)),
        }
    }
}

/// `(current - previous) × scale / elapsed_ns`; zero when the counter went backwards or no time
/// passed.
fn rate(previous: u64, current: u64, elapsed: Duration, scale: u64) -> Decimal {
    let Some(delta) = current.checked_sub(previous) else { return Decimal::ZERO };
    let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
    if nanos == 0 {
        return Decimal::ZERO;
    }
    Decimal::from(delta)
        .checked_mul(Decimal::from(scale))
        .and_then(|x| x.checked_div(Decimal::from(nanos)))
        .unwrap_or(Decimal::ZERO)
}

/// The result of one sweep over the containers.
#[derive(Debug, Default)]
pub struct Sweep {
    /// Metrics of each container that could be read, by id.
    pub metrics: BTreeMap<String, ContainerMetrics>,
    /// Why each other container could not be read, by id (typically it exited mid-sweep).
    pub errors: BTreeMap<String, Error>,
}

#[derive(Debug, Clone, Copy)]
struct Previous {
    sample: ContainerSample,
    at: Instant,
}

/// Collects per-container metrics straight from the cgroup hierarchy, keeping each container's
/// previous sample to compute rates.
///
/// Every path is taken under a root (`/` on a real node), so tests and benchmarks can build a
/// fake tree: `<root>/sys/fs/cgroup/…` and `<root>/proc/…`.
///
/// Reads are plain blocking file reads of pseudo-files, which the kernel answers from memory;
/// call [`collect`](Self::collect) from `tokio::task::spawn_blocking` (or a dedicated thread) in
/// an async agent. A sweep costs about 0.1 ms per container (9 small files), so 100
/// containers every 5 s use about 0.2 % of one core (`benches/agent_stats.rs`).
///
/// ```
/// # fn main() -> bai_agent_runtime::Result<()> {
/// use std::time::{Duration, Instant};
/// use bai_agent_runtime::runtime::ContainerStats;
/// use bai_agent_runtime::stats::StatCollector;
///
/// // The Docker stats API fallback: feed the engine's counters in.
/// let mut stats = StatCollector::with_version("/", bai_agent_runtime::stats::CgroupVersion::V2);
/// let t0 = Instant::now();
/// let first = ContainerStats { cpu_used_ns: 1_000_000_000, ..Default::default() };
/// stats.observe("c1", first.into(), t0);
/// let later = ContainerStats { cpu_used_ns: 6_000_000_000, ..Default::default() };
/// let m = stats.observe("c1", later.into(), t0 + Duration::from_secs(10));
/// assert_eq!(m.cpu_util.current_str(), "50"); // half a CPU over 10 s
/// assert_eq!(m.cpu_used.current_str(), "6000"); // ms
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct StatCollector {
    cgroup_root: PathBuf,
    proc_root: PathBuf,
    version: CgroupVersion,
    host_cpus: Decimal,
    previous: HashMap<String, Previous>,
    cgroups: HashMap<String, ContainerCgroup>,
    buf: String,
}

impl StatCollector {
    /// A collector for the node whose filesystem is at `root` (`/` normally), detecting the
    /// cgroup version under `<root>/sys/fs/cgroup`.
    pub fn new(root: impl AsRef<Path>) -> Result<Self> {
        let version = CgroupVersion::detect(&root.as_ref().join("sys/fs/cgroup"))?;
        Ok(Self::with_version(root, version))
    }

    /// A collector with a known cgroup version (e.g. the engine's `CgroupVersion`).
    pub fn with_version(root: impl AsRef<Path>, version: CgroupVersion) -> Self {
        let root = root.as_ref();
        let proc_root = root.join("proc");
        let host_cpus = host_cpu_count(&proc_root);
        Self {
            cgroup_root: root.join("sys/fs/cgroup"),
            proc_root,
            version,
            host_cpus: Decimal::from(host_cpus),
            previous: HashMap::new(),
            cgroups: HashMap::new(),
            buf: String::with_capacity(4096),
        }
    }

    /// The cgroup version in use.
    pub fn version(&self) -> CgroupVersion {
        self.version
    }

    /// The CPU count used for a container whose cgroup names none (the host's `cpuN` lines).
    pub fn host_cpus(&self) -> Decimal {
        self.host_cpus
    }

    /// Overrides the CPU count used for containers whose cgroup names none.
    pub fn set_host_cpus(&mut self, cpus: Decimal) {
        self.host_cpus = cpus;
    }

    /// Reads one container's counters now, without touching the previous samples.
    pub fn sample(&mut self, target: &ContainerTarget) -> Result<ContainerSample> {
        validate_container_id(&target.id)?;
        let cgroup = match self.cgroups.get(&target.id) {
            Some(c) => c,
            None => {
                let c =
                    ContainerCgroup::resolve(&self.cgroup_root, &self.proc_root, self.version, &target.id, target.pid)?;
                self.cgroups.entry(target.id.clone()).or_insert(c)
            }
        };
        let mut sample = match cgroup.read(&mut self.buf) {
            Ok(s) => s,
            Err(e) => {
                // The container may have been re-created; resolve again next time.
                self.cgroups.remove(&target.id);
                return Err(e);
            }
        };
        if let Some(pid) = target.pid {
            let path = self.proc_root.join(pid.to_string()).join("net/dev");
            read_file(&path, &mut self.buf)?;
            let (rx, tx) = parse_net_dev(&path, &self.buf)?;
            sample.net_rx_bytes = Some(rx);
            sample.net_tx_bytes = Some(tx);
        }
        Ok(sample)
    }

    /// Samples every target and computes its metrics against its previous sample. Containers
    /// not among `targets` are forgotten, so call it with every container each time.
    pub fn collect(&mut self, targets: &[ContainerTarget], now: Instant) -> Sweep {
        let mut sweep = Sweep::default();
        for target in targets {
            match self.sample(target) {
                Ok(sample) => {
                    let metrics = self.observe(&target.id, sample, now);
                    sweep.metrics.insert(target.id.clone(), metrics);
                }
                Err(e) => {
                    sweep.errors.insert(target.id.clone(), e);
                }
            }
        }
        let wanted: HashSet<&str> = targets.iter().map(|t| t.id.as_str()).collect();
        self.previous.retain(|id, _| wanted.contains(id.as_str()));
        self.cgroups.retain(|id, _| wanted.contains(id.as_str()));
        sweep
    }

    /// Records a sample taken elsewhere (e.g. converted from the engine's stats API with
    /// `ContainerSample::from(stats)`) and returns the metrics against the previous one.
    pub fn observe(&mut self, id: &str, sample: ContainerSample, now: Instant) -> ContainerMetrics {
        let previous = self.previous.get(id).map(|p| (&p.sample, now.saturating_duration_since(p.at)));
        let metrics = ContainerMetrics::from_samples(previous, &sample, self.host_cpus);
        self.previous.insert(id.to_owned(), Previous { sample, at: now });
        metrics
    }

    /// Drops what is kept about a container (call it when the container is removed).
    pub fn forget(&mut self, id: &str) {
        self.previous.remove(id);
        self.cgroups.remove(id);
    }
}

/// The number of `cpuN` lines of `<proc_root>/stat`; the thread count the OS gives this process
/// when that file cannot be read.
fn host_cpu_count(proc_root: &Path) -> usize {
    let path = proc_root.join("stat");
    let from_proc = std::fs::read_to_string(&path)
        .map_err(|e| Error::io("read", &path, e))
        .and_then(|text| parse_proc_stat(&path, &text))
        .map(|s| s.per_cpu.len());
    match from_proc {
        Ok(n) if n > 0 => n,
        other => {
            let fallback = std::thread::available_parallelism().map_or(1, |n| n.get());
            tracing::warn!(error = ?other.err(), fallback, "cannot count CPUs from /proc/stat");
            fallback
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    #[test]
    fn metrics_follow_the_original_units() {
        let s0 = ContainerSample {
            cpu_used_ns: 2_000_000_000,
            mem_used_bytes: 512 << 20,
            mem_limit_bytes: Some(1 << 30),
            cpus: Some(d("2")),
            io_read_bytes: 100,
            io_write_bytes: 200,
            net_rx_bytes: Some(1000),
            net_tx_bytes: Some(10),
        };
        let first = ContainerMetrics::from_samples(None, &s0, d("8"));
        assert_eq!(first.cpu_used.current_str(), "2000");
        assert_eq!(first.cpu_util.current, Decimal::ZERO);
        assert_eq!(first.cpu_util.capacity, Some(d("200")));
        assert_eq!(first.net_rx.current, Decimal::ZERO);
        assert_eq!(first.mem.pct_str(), "50");

        let s1 = ContainerSample {
            cpu_used_ns: 9_500_000_000,
            io_read_bytes: 4196,
            net_rx_bytes: Some(6000),
            net_tx_bytes: Some(5),
            ..s0
        };
        let m = ContainerMetrics::from_samples(Some((&s0, Duration::from_secs(5))), &s1, d("8"));
        // 7.5 s of CPU in 5 s = 1.5 CPUs = 150 % of one, 75 % of the two allowed.
        assert_eq!(
            serde_json::to_value(m.cpu_util).unwrap(),
            serde_json::json!({"current": "150", "capacity": "200", "pct": "75"})
        );
        assert_eq!(m.io_read.current_str(), "4196");
        assert_eq!(m.net_rx.current_str(), "1000");
        // tx went backwards: a restart, so zero rather than a negative rate.
        assert_eq!(m.net_tx.current, Decimal::ZERO);
        assert_eq!(m.net_tx.pct_str(), "0.00");
        let json = serde_json::to_value(m).unwrap();
        let keys: Vec<&str> = json.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys, ["cpu_used", "cpu_util", "mem", "io_read", "io_write", "net_rx", "net_tx"]);
    }

    #[test]
    fn default_cpus_and_zero_intervals() {
        let s = ContainerSample { cpu_used_ns: 10, ..Default::default() };
        let m = ContainerMetrics::from_samples(Some((&s, Duration::ZERO)), &s, d("4"));
        assert_eq!(m.cpu_util.capacity, Some(d("400")));
        assert_eq!(m.cpu_util.current, Decimal::ZERO);
        assert_eq!(m.mem.capacity, None);
        let huge = ContainerSample { net_rx_bytes: Some(u64::MAX), ..s };
        let zero = ContainerSample { net_rx_bytes: Some(0), ..s };
        let m = ContainerMetrics::from_samples(Some((&zero, Duration::from_secs(1))), &huge, d("4"));
        assert_eq!(m.net_rx.current, Decimal::ZERO, "above the ceiling");
    }

    #[test]
    fn docker_stats_convert() {
        let stats = crate::runtime::ContainerStats {
            cpu_used_ns: 3_000_000,
            memory_bytes: 10,
            memory_limit_bytes: 0,
            io_read_bytes: 1,
            io_write_bytes: 2,
            net_rx_bytes: 3,
            net_tx_bytes: 4,
        };
        let sample = ContainerSample::from(stats);
        assert_eq!(sample.mem_limit_bytes, None);
        assert_eq!(sample.net_tx_bytes, Some(4));
        let mut c = StatCollector::with_version("/nonexistent-root", CgroupVersion::V1);
        c.set_host_cpus(d("2"));
        let m = c.observe("x", sample, Instant::now());
        assert_eq!(m.cpu_used.current_str(), "3");
        assert_eq!(m.cpu_util.capacity, Some(d("200")));
    }
}
