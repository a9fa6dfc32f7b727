//! Per-container and node statistics, read straight from the cgroup hierarchy and /proc, in
//! the original's metric format.
//!
//! This module owns turning raw counters into the original's metrics: it detects the cgroup
//! version ([`CgroupVersion`]), finds a container's cgroup directories ([`ContainerCgroup`]),
//! reads its counters into a [`ContainerSample`] (or converts the engine's stats API
//! [`ContainerStats`](crate::runtime::ContainerStats) into one), and computes
//! [`ContainerMetrics`] — `cpu_used`, `cpu_util`, `mem`, `io_read`, `io_write`, `net_rx`,
//! `net_tx`, each a [`MetricValue`] — against the previous sample kept by [`StatCollector`].
//! [`NodeStatCollector`] does the same for the node from `/proc/stat`, `/proc/meminfo`,
//! `/proc/net/dev` and statvfs. Publishing (Redis, Prometheus) is the agent's job.
//!
//! Files read per container:
//!
//! | metric | cgroup v1 | cgroup v2 |
//! |---|---|---|
//! | `cpu_used`, `cpu_util` | `cpuacct/…/cpuacct.usage` (ns) | `cpu.stat` `usage_usec` |
//! | `cpu_util` capacity | `cpuset/…/cpuset.cpus`, `cpu/…/cpu.cfs_quota_us` ÷ `cpu.cfs_period_us` | `cpuset.cpus.effective`, `cpu.max` |
//! | `mem` | `memory/…/memory.usage_in_bytes` − `total_inactive_file`, `memory.limit_in_bytes` | `memory.current` − `inactive_file`, `memory.max` |
//! | `io_read`, `io_write` | `blkio/…/blkio.throttle.io_service_bytes` | `io.stat` `rbytes`, `wbytes` |
//! | `net_rx`, `net_tx` | `/proc/<pid>/net/dev` (not `lo`) | the same |
//!
//! Differences from the original, on purpose: the container `cpu_util` is in percent of one CPU
//! with capacity `100 × allowed CPUs` (the original reports msec/s with capacity 1000, whose
//! `pct` is the same percent of one CPU); the node `cpu_util` is in the same unit (the original
//! reports msec over the interval). `unit_hint` and the `stats.*` moving statistics are not
//! produced.

mod cgroup;
mod collector;
mod metric;
mod node;
mod procfs;
mod sample;

pub use cgroup::{CgroupVersion, ContainerCgroup};
pub use collector::{ContainerMetrics, ContainerTarget, StatCollector, Sweep, NET_RATE_CEILING_BYTES_PER_SEC};
pub use metric::MetricValue;
pub use node::{NodeMetrics, NodeStatCollector, NodeStats};
pub use sample::ContainerSample;

#[cfg(test)]
mod tests;
