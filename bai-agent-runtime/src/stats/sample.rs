//! [`ContainerSample`]: the raw counters of one container at one instant, from either source.

use bai_core::Decimal;
use serde::{Deserialize, Serialize};

use crate::runtime::ContainerStats;

/// The raw counters of one container at one instant, read from its cgroup
/// ([`StatCollector::sample`](super::StatCollector::sample)) or converted from the engine's stats
/// API ([`ContainerStats`]). Metrics are computed from two of them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerSample {
    /// CPU time used since the container started, in nanoseconds.
    pub cpu_used_ns: u64,
    /// Memory in use, in bytes, without the inactive file cache (as the original counts it).
    pub mem_used_bytes: u64,
    /// The memory limit, in bytes; `None` when unlimited or unknown.
    pub mem_limit_bytes: Option<u64>,
    /// How many CPUs the container may use (its cpuset, capped by its CPU quota; fractional for
    /// a quota); `None` when unknown, and then the host's count is used.
    pub cpus: Option<Decimal>,
    /// Bytes read from block devices since the container started.
    pub io_read_bytes: u64,
    /// Bytes written to block devices since the container started.
    pub io_write_bytes: u64,
    /// Bytes received on the container's interfaces other than `lo`; `None` when its network
    /// namespace could not be read (no main PID).
    pub net_rx_bytes: Option<u64>,
    /// Bytes sent on the container's interfaces other than `lo`; `None` like `net_rx_bytes`.
    pub net_tx_bytes: Option<u64>,
}

/// The Docker stats API fallback: the engine's counters as a sample. A zero memory limit means
/// "unknown"; the engine does not report the CPU count, so the host's is used.
impl From<ContainerStats> for ContainerSample {
    fn from(s: ContainerStats) -> Self {
        Self {
            cpu_used_ns: s.cpu_used_ns,
            mem_used_bytes: s.memory_bytes,
            mem_limit_bytes: (s.memory_limit_bytes > 0).then_some(s.memory_limit_bytes),
            cpus: None,
            io_read_bytes: s.io_read_bytes,
            io_write_bytes: s.io_write_bytes,
            net_rx_bytes: Some(s.net_rx_bytes),
            net_tx_bytes: Some(s.net_tx_bytes),
        }
    }
}
