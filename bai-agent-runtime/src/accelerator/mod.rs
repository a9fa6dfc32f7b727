//! Accelerator plugins: what devices a node has, which slots they provide, and how an
//! allocation of them is handed to a container.
//!
//! This module owns the [`AcceleratorPlugin`] trait and its vocabulary ([`AcceleratorDevice`],
//! [`SlotDefinition`], [`DeviceAllocation`], [`DeviceContainerConfig`], [`DeviceMetrics`]),
//! plus the plugins themselves: [`mock::MockAccelerator`] (always built; GPUs from
//! configuration, for tests and demos), and behind features `cuda` (NVML through
//! `nvml-wrapper`), `rocm` (sysfs) and `tpu` (sysfs).
//!
//! **Plugins hold no allocation state.** A plugin describes its devices and, per slot, how
//! much of each device there is and how requests are split ([`AllocationKind`]); the
//! [`Allocator`](crate::resources::Allocator) keeps every allocation map of the node (CPU
//! cores, memory and each plugin slot) behind one lock, so that concurrent kernel creations
//! cannot hand out a device twice and a failed request rolls back in one place. A plugin then
//! turns a finished [`DeviceAllocation`] into environment variables, Docker device requests and
//! device nodes ([`AcceleratorPlugin::container_config`]) and reports metrics.
//!
//! A plugin's devices are fixed for its lifetime (detected when it is opened);
//! [`AcceleratorPlugin::discover`] probes the hardware again without changing them, for health
//! reports. Every plugin compiles without its vendor library and reports a missing library or
//! driver as an error, never a panic.

pub mod mock;

#[cfg(feature = "cuda")]
pub mod cuda;
#[cfg(feature = "rocm")]
pub mod rocm;
#[cfg(any(feature = "rocm", feature = "tpu"))]
mod sysfs;
#[cfg(feature = "tpu")]
pub mod tpu;

use std::collections::BTreeMap;
use std::fmt;

use bai_core::{Decimal, SlotType};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::runtime::DeviceRequest;

pub use mock::{MockAccelerator, MockConfig, MockDevice, MockSlotKind};

/// One accelerator device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AcceleratorDevice {
    /// The id used in allocation maps and `*_VISIBLE_DEVICES` on the host, e.g. `0`.
    pub id: String,
    /// A stable hardware identity when known (GPU UUID, PCI address).
    pub hw_id: Option<String>,
    /// The model name, e.g. `NVIDIA A100-SXM4-40GB`.
    pub model: String,
    /// Device memory in bytes (0 when unknown).
    pub memory: u64,
    /// Streaming multiprocessors / compute units, when known.
    pub processing_units: Option<u32>,
    /// The NUMA node the device hangs off, when known.
    pub numa_node: Option<u32>,
    /// Host device nodes a container needs for this device, e.g. `/dev/dri/renderD128`.
    pub device_nodes: Vec<String>,
}

/// How a slot's requests are split over devices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "kind")]
pub enum AllocationKind {
    /// Whole units only (`cuda.device`: whole GPUs); a request must be a whole number.
    Discrete,
    /// Fractions in steps of `quantum` (`cuda.shares`: 0.01 of a GPU); a request finer than
    /// the quantum is rejected.
    Fractional {
        /// The smallest step, e.g. `0.01`.
        quantum: Decimal,
    },
}

impl AllocationKind {
    /// The step a request and every per-device share must be a multiple of (1 for discrete).
    pub fn quantum(self) -> Decimal {
        match self {
            Self::Discrete => Decimal::ONE,
            Self::Fractional { quantum } => quantum,
        }
    }
}

/// A slot a plugin provides, with how much of it each device has.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotDefinition {
    /// The slot name, `<key>.<kind>`, e.g. `cuda.shares`.
    pub name: String,
    /// How the cluster counts it (`count` for every slot the built-in plugins provide).
    pub slot_type: SlotType,
    /// How requests are split over devices.
    pub kind: AllocationKind,
    /// `(device id, capacity)` in device order; the order breaks ties when allocating. A
    /// device appears in at most one slot of a plugin.
    pub per_device: Vec<(String, Decimal)>,
}

impl SlotDefinition {
    /// The slot's total: the sum of the device capacities.
    pub fn total(&self) -> Decimal {
        self.per_device.iter().map(|(_, c)| *c).sum()
    }
}

/// What one kernel holds from one plugin: per slot, the amount taken from each device.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceAllocation {
    /// The plugin's key, e.g. `cuda`.
    pub plugin: String,
    /// Slot name → device id → amount (only non-zero amounts).
    pub slots: BTreeMap<String, BTreeMap<String, Decimal>>,
}

impl DeviceAllocation {
    /// The ids of the devices with a non-zero amount in any slot, sorted and distinct.
    pub fn device_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .slots
            .values()
            .flat_map(|m| m.iter().filter(|(_, a)| !a.is_zero()).map(|(id, _)| id.clone()))
            .collect();
        ids.sort_by(|a, b| natural_cmp(a, b));
        ids.dedup();
        ids
    }

    /// The amount taken from `device` over all slots.
    pub fn amount_of(&self, device: &str) -> Decimal {
        self.slots.values().filter_map(|m| m.get(device)).copied().sum()
    }
}

/// What a [`DeviceAllocation`] adds to a container.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceContainerConfig {
    /// Environment variables, e.g. `CUDA_VISIBLE_DEVICES=0,1`.
    pub env: BTreeMap<String, String>,
    /// Docker device requests, e.g. `driver: nvidia` with capabilities `[["gpu"]]`.
    pub device_requests: Vec<DeviceRequest>,
    /// Host device nodes to pass through as they are (Docker `HostConfig.Devices`), e.g.
    /// `/dev/kfd`. [`ContainerSpec`](crate::runtime::ContainerSpec) has no field for them
    /// yet, so [`Allocation::apply_to`](crate::resources::Allocation::apply_to) leaves them to
    /// the caller.
    pub device_nodes: Vec<String>,
}

/// One sample of a device's (or a container's share of a device's) usage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceMetrics {
    /// The device id.
    pub device_id: String,
    /// Busy time in percent (0–100), when the driver reports it.
    pub utilization: Option<Decimal>,
    /// Device memory in use, in bytes.
    pub memory_used: Option<u64>,
    /// Device memory in total, in bytes.
    pub memory_total: Option<u64>,
    /// Temperature in °C.
    pub temperature: Option<Decimal>,
    /// Power draw in watts.
    pub power: Option<Decimal>,
}

impl DeviceMetrics {
    /// A sample with only the device id set.
    pub fn empty(device_id: impl Into<String>) -> Self {
        Self {
            device_id: device_id.into(),
            utilization: None,
            memory_used: None,
            memory_total: None,
            temperature: None,
            power: None,
        }
    }
}

/// An accelerator plugin (object-safe: the agent keeps `Arc<dyn AcceleratorPlugin>`s).
///
/// Implementations hold no allocation state (see the module docs) and must not panic on what
/// the hardware or the driver reports.
pub trait AcceleratorPlugin: Send + Sync + fmt::Debug {
    /// The device name slots start with, e.g. `cuda`; also the key in `allocation-order`.
    fn key(&self) -> &str;

    /// The plugin's version, reported in heartbeats (`compute_plugins`).
    fn version(&self) -> String {
        env!("CARGO_PKG_VERSION").to_string()
    }

    /// The devices found when the plugin was opened.
    fn devices(&self) -> &[AcceleratorDevice];

    /// Probes the hardware again and returns what is there now (the allocation maps keep using
    /// [`AcceleratorPlugin::devices`]).
    fn discover(&self) -> Result<Vec<AcceleratorDevice>>;

    /// The slots this plugin provides, with their types and per-device capacities.
    fn slots(&self) -> Vec<SlotDefinition>;

    /// The environment, Docker device requests and device nodes a container needs for
    /// `allocation`.
    fn container_config(&self, allocation: &DeviceAllocation) -> Result<DeviceContainerConfig>;

    /// One sample per device.
    fn device_metrics(&self) -> Result<Vec<DeviceMetrics>>;

    /// One sample per device in `allocation`, for the container whose processes are `pids`
    /// (host PIDs). Where the driver cannot attribute usage to processes, device-wide figures
    /// are reported.
    fn container_metrics(&self, allocation: &DeviceAllocation, pids: &[u32]) -> Result<Vec<DeviceMetrics>>;
}

/// The environment variable that lists visible devices for a plugin key:
/// `CUDA_VISIBLE_DEVICES`, `HIP_VISIBLE_DEVICES` (rocm), `TPU_VISIBLE_DEVICES`, otherwise
/// `<KEY>_VISIBLE_DEVICES`.
pub fn visible_devices_env(key: &str) -> String {
    match key {
        "rocm" => "HIP_VISIBLE_DEVICES".to_string(),
        other => format!("{}_VISIBLE_DEVICES", other.to_ascii_uppercase().replace(['-', '.'], "_")),
    }
}

/// Checks a plugin key: a valid slot-name prefix without `.` or `:` (e.g. `cuda`).
pub fn validate_key(key: &str) -> Result<()> {
    if key.is_empty() || key.contains(['.', ':']) || key == "cpu" || key == "mem" {
        return Err(Error::invalid(
            "accelerator key",
            format!("{key:?}: expected a device name such as \"cuda\", without '.' or ':' and not cpu or mem"),
        ));
    }
    bai_core::resource_slot::validate_slot_name(key)?;
    Ok(())
}

/// Compares device ids numerically when both are numbers (`2` < `10`), else as text.
pub(crate) fn natural_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    match (a.parse::<u64>(), b.parse::<u64>()) {
        (Ok(x), Ok(y)) => x.cmp(&y),
        _ => a.cmp(b),
    }
}

/// `0,1,…,n-1`: what the container sees when only `n` devices are handed over and the
/// runtime renumbers them (NVIDIA container runtime, ROCm render nodes).
#[cfg(any(feature = "cuda", feature = "rocm"))]
pub(crate) fn renumbered(n: usize) -> String {
    (0..n).map(|i| i.to_string()).collect::<Vec<_>>().join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_names_per_key() {
        assert_eq!(visible_devices_env("cuda"), "CUDA_VISIBLE_DEVICES");
        assert_eq!(visible_devices_env("rocm"), "HIP_VISIBLE_DEVICES");
        assert_eq!(visible_devices_env("tpu"), "TPU_VISIBLE_DEVICES");
        assert_eq!(visible_devices_env("my-npu"), "MY_NPU_VISIBLE_DEVICES");
    }

    #[test]
    fn keys_are_checked() {
        assert!(validate_key("cuda").is_ok());
        for bad in ["", "cuda.device", "a:b", "Cuda", "cpu", "mem", "1x"] {
            assert!(validate_key(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn device_ids_sort_naturally() {
        let mut a = DeviceAllocation { plugin: "cuda".into(), slots: BTreeMap::new() };
        let mut m = BTreeMap::new();
        for id in ["10", "2", "0"] {
            m.insert(id.to_string(), Decimal::ONE);
        }
        m.insert("3".to_string(), Decimal::ZERO);
        a.slots.insert("cuda.device".into(), m);
        assert_eq!(a.device_ids(), vec!["0", "2", "10"]);
        assert_eq!(a.amount_of("2"), Decimal::ONE);
        assert_eq!(a.amount_of("3"), Decimal::ZERO);
    }

    #[test]
    fn the_trait_is_object_safe() {
        fn takes(_: &dyn AcceleratorPlugin) {}
        let mock = MockAccelerator::new(MockConfig::example_cuda(2, MockSlotKind::Device)).unwrap();
        takes(&mock);
    }
}
