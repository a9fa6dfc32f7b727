//! [`NodeStatCollector`]: node-wide metrics from /proc and statvfs.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Instant;

use bai_core::Decimal;
use serde::{Deserialize, Serialize};

use super::collector::NET_RATE_CEILING_BYTES_PER_SEC;
use super::metric::MetricValue;
use super::procfs::{parse_meminfo, parse_net_dev, parse_proc_stat, CpuTime, ProcStat};
use crate::error::{Error, Result};

/// The node's own metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct NodeMetrics {
    /// CPU use over the last interval, in percent of one CPU, out of `100 × CPUs` (so `pct`
    /// is the node's load share). From `/proc/stat` busy/total ticks, zero on the first sample.
    pub cpu_util: MetricValue,
    /// Memory in use (`MemTotal - MemAvailable`) out of `MemTotal`, in bytes.
    pub mem: MetricValue,
    /// Disk space in use out of the size, in bytes, summed over the configured filesystems.
    pub disk: MetricValue,
    /// Bytes received per second over the last interval, over interfaces other than `lo`.
    pub net_rx: MetricValue,
    /// Bytes sent per second over the last interval, over interfaces other than `lo`.
    pub net_tx: MetricValue,
}

/// Node metrics in the original's heartbeat shape: `{"node": {m: MV}, "devices": {m: {dev:
/// MV}}}`, with per-CPU `cpu_util` (each out of 100), `mem` under `root` and `disk` per path.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct NodeStats {
    /// Whole-node metrics.
    pub node: NodeMetrics,
    /// Per-device metrics by metric name, then device id.
    pub devices: BTreeMap<String, BTreeMap<String, MetricValue>>,
}

#[derive(Debug, Clone)]
struct PreviousNode {
    cpu: ProcStat,
    net: (u64, u64),
    at: Instant,
}

/// Collects node metrics, keeping the previous sample for rates.
#[derive(Debug)]
pub struct NodeStatCollector {
    proc_root: PathBuf,
    disk_paths: Vec<PathBuf>,
    previous: Option<PreviousNode>,
}

impl NodeStatCollector {
    /// A collector reading `<root>/proc` (`root` is `/` normally), measuring the filesystems
    /// holding `disk_paths` (e.g. `/` and the scratch root; each filesystem counts once).
    pub fn new(root: impl AsRef<Path>, disk_paths: Vec<PathBuf>) -> Self {
        Self { proc_root: root.as_ref().join("proc"), disk_paths, previous: None }
    }

    /// One sample of the node.
    pub fn collect(&mut self, now: Instant) -> Result<NodeStats> {
        let stat_path = self.proc_root.join("stat");
        let cpu = parse_proc_stat(&stat_path, &read(&stat_path)?)?;
        let mem_path = self.proc_root.join("meminfo");
        let (mem_total, mem_available) = parse_meminfo(&mem_path, &read(&mem_path)?)?;
        let net_path = self.proc_root.join("net/dev");
        let net = parse_net_dev(&net_path, &read(&net_path)?)?;

        let mut devices: BTreeMap<String, BTreeMap<String, MetricValue>> = BTreeMap::new();
        let ncpu = Decimal::from(cpu.per_cpu.len().max(1) as u64);
        let prev = self.previous.as_ref();
        let cpu_util = MetricValue::new(
            prev.map_or(Decimal::ZERO, |p| busy_share(p.cpu.all, cpu.all) * ncpu),
            Some(Decimal::ONE_HUNDRED * ncpu),
        );
        let per_cpu = devices.entry("cpu_util".into()).or_default();
        for (idx, time) in &cpu.per_cpu {
            let before = prev.and_then(|p| p.cpu.per_cpu.iter().find(|(i, _)| i == idx)).map(|(_, t)| *t);
            let share = before.map_or(Decimal::ZERO, |b| busy_share(b, *time));
            per_cpu.insert(idx.clone(), MetricValue::new(share, Some(Decimal::ONE_HUNDRED)));
        }

        let mem =
            MetricValue::new(Decimal::from(mem_total.saturating_sub(mem_available)), Some(Decimal::from(mem_total)));
        devices.entry("mem".into()).or_default().insert("root".into(), mem);

        let (mut used, mut size) = (0u64, 0u64);
        let mut seen = HashSet::new();
        let per_disk = devices.entry("disk".into()).or_default();
        for path in &self.disk_paths {
            let st = nix::sys::statvfs::statvfs(path.as_path())
                .map_err(|e| Error::io("statvfs", path, std::io::Error::from(e)))?;
            let frsize = st.fragment_size();
            let blocks = st.blocks();
            let d_size = frsize.saturating_mul(blocks);
            let d_used = frsize.saturating_mul(blocks.saturating_sub(st.blocks_available()));
            per_disk.insert(
                path.display().to_string(),
                MetricValue::new(Decimal::from(d_used), Some(Decimal::from(d_size))),
            );
            if seen.insert(st.filesystem_id()) {
                used = used.saturating_add(d_used);
                size = size.saturating_add(d_size);
            }
        }
        let disk = MetricValue::new(Decimal::from(used), Some(Decimal::from(size)));

        let net_rate = |before: u64, after: u64| -> Decimal {
            let Some(p) = prev else { return Decimal::ZERO };
            let nanos = u64::try_from(now.saturating_duration_since(p.at).as_nanos()).unwrap_or(u64::MAX);
            let r = match after.checked_sub(before) {
                Some(delta) if nanos > 0 => Decimal::from(delta)
                    .checked_mul(Decimal::from(1_000_000_000u64))
                    .and_then(|x| x.checked_div(Decimal::from(nanos)))
                    .unwrap_or(Decimal::ZERO),
                _ => Decimal::ZERO,
            };
            if r > Decimal::from(NET_RATE_CEILING_BYTES_PER_SEC) {
                Decimal::ZERO
            } else {
                r
            }
        };
        let (rx0, tx0) = prev.map_or(net, |p| p.net);
        let net_rx = MetricValue::uncapped(net_rate(rx0, net.0));
        let net_tx = MetricValue::uncapped(net_rate(tx0, net.1));

        self.previous = Some(PreviousNode { cpu, net, at: now });
        Ok(NodeStats { node: NodeMetrics { cpu_util, mem, disk, net_rx, net_tx }, devices })
    }
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| Error::io("read", path, e))
}

/// Busy ticks over total ticks between two readings, in percent; zero if nothing moved or a
/// counter went backwards.
fn busy_share(before: CpuTime, after: CpuTime) -> Decimal {
    match (after.busy.checked_sub(before.busy), after.total.checked_sub(before.total)) {
        (Some(busy), Some(total)) if total > 0 => (Decimal::from(busy) * Decimal::ONE_HUNDRED)
            .checked_div(Decimal::from(total))
            .unwrap_or(Decimal::ZERO)
            .min(Decimal::ONE_HUNDRED),
        _ => Decimal::ZERO,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn write_proc(root: &Path, stat: &str, rx: u64) {
        let proc = root.join("proc");
        std::fs::create_dir_all(proc.join("net")).unwrap();
        std::fs::write(proc.join("stat"), stat).unwrap();
        std::fs::write(proc.join("meminfo"), "MemTotal: 4000 kB\nMemFree: 100 kB\nMemAvailable: 1000 kB\n").unwrap();
        std::fs::write(
            proc.join("net/dev"),
            format!("h\nh\n lo: 5 0 0 0 0 0 0 0 5 0 0 0 0 0 0 0\n eth0: {rx} 0 0 0 0 0 0 0 7 0 0 0 0 0 0 0\n"),
        )
        .unwrap();
    }

    #[test]
    fn node_metrics_from_a_fake_proc() {
        let dir = tempfile::tempdir().unwrap();
        write_proc(dir.path(), "cpu 0 0 0 0 0 0 0 0\ncpu0 0 0 0 0\ncpu1 0 0 0 0\n", 1000);
        let mut c = NodeStatCollector::new(dir.path(), vec![dir.path().to_path_buf(), dir.path().join("proc")]);
        let t0 = Instant::now();
        let first = c.collect(t0).unwrap();
        assert_eq!(first.node.cpu_util.current, Decimal::ZERO);
        assert_eq!(first.node.cpu_util.capacity, Some(Decimal::from(200)));
        assert_eq!(first.node.mem.current, Decimal::from(3000 * 1024));
        assert_eq!(first.node.mem.pct_str(), "75");
        // Both paths are on one filesystem: counted once in the total, listed per path.
        assert_eq!(first.devices["disk"].len(), 2);
        assert!(first.node.disk.capacity.unwrap() > Decimal::ZERO);
        assert_eq!(first.devices["disk"][&dir.path().display().to_string()].capacity, first.node.disk.capacity);

        // cpu0 fully busy, cpu1 idle for the interval: one CPU of two.
        write_proc(dir.path(), "cpu 100 0 0 100 0 0 0 0\ncpu0 100 0 0 0\ncpu1 0 0 0 100\n", 6000);
        let second = c.collect(t0 + Duration::from_secs(5)).unwrap();
        assert_eq!(second.node.cpu_util.current_str(), "100");
        assert_eq!(second.node.cpu_util.pct_str(), "50");
        assert_eq!(second.devices["cpu_util"]["0"].current_str(), "100");
        assert_eq!(second.devices["cpu_util"]["1"].current_str(), "0");
        assert_eq!(second.node.net_rx.current_str(), "1000");
        assert_eq!(second.node.net_tx.current_str(), "0");
        let json = serde_json::to_value(&second).unwrap();
        assert_eq!(json["node"]["mem"]["capacity"], "4096000");
        assert_eq!(json["devices"]["mem"]["root"]["pct"], "75");
    }

    #[test]
    fn missing_files_are_errors_not_panics() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = NodeStatCollector::new(dir.path(), vec![]);
        let err = c.collect(Instant::now()).unwrap_err();
        assert!(err.to_string().contains("proc/stat"), "{err}");
    }
}
