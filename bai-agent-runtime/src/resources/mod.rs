//! Resources of the node: what it can give to kernels, and who holds what.
//!
//! This module owns capacity discovery ([`NodeCapacity`], from affinity, cgroup v1/v2 limits
//! and `/proc/meminfo`, minus a [`HostReserve`]) and the node's allocation maps ([`Allocator`]:
//! CPU cores, memory with shared memory, and the slots of the
//! [accelerator plugins](crate::accelerator)), which turn a kernel's slot request into an
//! [`Allocation`] — the cpuset, CFS limit, memory limits, device environment and Docker device
//! requests its container needs — and restore those allocations after an agent restart. It
//! never talks to a container engine itself.

pub mod allocator;
pub mod cpuset;
pub mod discovery;
mod slot_map;

pub use allocator::{Allocation, Allocator, AllocatorConfig, CPU_QUANTUM};
pub use cpuset::{format_cpu_list, parse_cpu_list};
pub use discovery::{current_affinity, detect_host, CgroupVersion, HostReserve, HostResources, NodeCapacity};
