//! A configurable accelerator without hardware, for tests and demos.
//!
//! [`MockAccelerator`] provides one slot, `<key>.device` (whole devices) or `<key>.shares`
//! (fractions of a device in steps of 0.01, each device holding `shares` of them), over devices
//! listed in its [`MockConfig`]. Containers get `<KEY>_VISIBLE_DEVICES=<host ids>` (e.g.
//! `CUDA_VISIBLE_DEVICES=0,2`; `HIP_VISIBLE_DEVICES` for `rocm`) and, by default, no Docker
//! device request, so they start on machines without a GPU runtime. Its metrics are the fixed
//! figures from the configuration; a container's figures are the device's scaled by the share of
//! the device it holds.
//!
//! ```
//! use bai_agent_runtime::accelerator::{AcceleratorPlugin, MockAccelerator, MockConfig};
//!
//! let config: MockConfig = serde_json::from_value(serde_json::json!({
//!     "key": "cuda",
//!     "slot": "shares",
//!     "devices": [{"id": "0", "memory": "16g"}, {"id": "1", "memory": "16g", "shares": "2"}],
//! }))?;
//! let gpu = MockAccelerator::new(config)?;
//! assert_eq!(gpu.slots()[0].name, "cuda.shares");
//! assert_eq!(gpu.slots()[0].total(), 3.into());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::{BTreeMap, BTreeSet};

use bai_core::{BinarySize, Decimal, SlotType};
use serde::{Deserialize, Serialize};

use super::{
    validate_key, visible_devices_env, AcceleratorDevice, AcceleratorPlugin, AllocationKind, DeviceAllocation,
    DeviceContainerConfig, DeviceMetrics, SlotDefinition,
};
use crate::error::{Error, Result};
use crate::runtime::DeviceRequest;

/// Which slot a [`MockAccelerator`] provides.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MockSlotKind {
    /// `<key>.device`: whole devices.
    #[default]
    Device,
    /// `<key>.shares`: fractions of devices, quantum 0.01.
    Shares,
}

/// Configuration of a [`MockAccelerator`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MockConfig {
    /// The plugin key, e.g. `cuda`.
    pub key: String,
    /// Which slot to provide (default `device`).
    #[serde(default)]
    pub slot: MockSlotKind,
    /// The model name of devices that do not name their own.
    #[serde(default = "default_model")]
    pub model: String,
    /// Whether containers get a Docker device request (`driver: <docker_driver>`, the
    /// allocated ids, capabilities `[["gpu"]]`); off by default so containers start without a
    /// GPU runtime.
    #[serde(default)]
    pub device_requests: bool,
    /// The Docker driver used when `device_requests` is on (default `nvidia`).
    #[serde(default = "default_driver")]
    pub docker_driver: String,
    /// The devices.
    pub devices: Vec<MockDevice>,
}

/// One device of a [`MockConfig`], with the fixed figures its metrics report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MockDevice {
    /// The device id, e.g. `0`.
    pub id: String,
    /// The model name; the config's `model` when absent.
    #[serde(default)]
    pub model: Option<String>,
    /// Device memory (a number of bytes or a size such as `"16g"`).
    #[serde(default)]
    pub memory: BinarySize,
    /// How many shares the device holds in `shares` mode (default 1, a multiple of 0.01).
    #[serde(default = "one")]
    pub shares: Decimal,
    /// The NUMA node.
    #[serde(default)]
    pub numa_node: Option<u32>,
    /// The utilisation its metrics report, in percent.
    #[serde(default)]
    pub utilization: Decimal,
    /// The memory in use its metrics report.
    #[serde(default)]
    pub memory_used: BinarySize,
    /// The temperature its metrics report, in °C.
    #[serde(default)]
    pub temperature: Option<Decimal>,
    /// The power draw its metrics report, in watts.
    #[serde(default)]
    pub power: Option<Decimal>,
}

fn default_model() -> String {
    "Mock Accelerator".to_string()
}

fn default_driver() -> String {
    "nvidia".to_string()
}

fn one() -> Decimal {
    Decimal::ONE
}

/// The step of `shares` slots.
pub const SHARES_QUANTUM: Decimal = Decimal::from_parts(1, 0, 0, false, 2);

impl MockConfig {
    /// `n` devices `0..n` of 16 GiB each under the key `cuda` (handy in tests and examples).
    pub fn example_cuda(n: usize, slot: MockSlotKind) -> Self {
        Self {
            key: "cuda".to_string(),
            slot,
            model: "Mock GPU 16GB".to_string(),
            device_requests: false,
            docker_driver: default_driver(),
            devices: (0..n)
                .map(|i| MockDevice {
                    id: i.to_string(),
                    model: None,
                    memory: BinarySize::new(16 << 30),
                    shares: Decimal::ONE,
                    numa_node: None,
                    utilization: Decimal::from(10 * (i as u64 % 10)),
                    memory_used: BinarySize::new(1 << 30),
                    temperature: Some(Decimal::from(40)),
                    power: Some(Decimal::from(75)),
                })
                .collect(),
        }
    }
}

/// An accelerator plugin whose devices come from configuration.
#[derive(Debug, Clone)]
pub struct MockAccelerator {
    config: MockConfig,
    devices: Vec<AcceleratorDevice>,
}

impl MockAccelerator {
    /// Validates the configuration: a valid key, distinct non-empty ids without `,`, and
    /// positive share capacities in steps of 0.01.
    pub fn new(config: MockConfig) -> Result<Self> {
        validate_key(&config.key)?;
        let mut seen = BTreeSet::new();
        for (i, d) in config.devices.iter().enumerate() {
            let field = format!("devices[{i}]");
            if d.id.is_empty() || d.id.contains([',', ' ']) {
                return Err(Error::invalid(
                    format!("{field}.id"),
                    format!("{:?}: expected a non-empty id without ',' or spaces", d.id),
                ));
            }
            if !seen.insert(d.id.as_str()) {
                return Err(Error::invalid(format!("{field}.id"), format!("{:?} appears twice", d.id)));
            }
            if d.shares <= Decimal::ZERO || !(d.shares % SHARES_QUANTUM).is_zero() {
                return Err(Error::invalid(
                    format!("{field}.shares"),
                    format!("{}: expected a positive multiple of {SHARES_QUANTUM}", d.shares),
                ));
            }
        }
        let devices = config
            .devices
            .iter()
            .map(|d| AcceleratorDevice {
                id: d.id.clone(),
                hw_id: None,
                model: d.model.clone().unwrap_or_else(|| config.model.clone()),
                memory: d.memory.bytes(),
                processing_units: None,
                numa_node: d.numa_node,
                device_nodes: Vec::new(),
            })
            .collect();
        Ok(Self { config, devices })
    }

    /// The configuration it was built from.
    pub fn config(&self) -> &MockConfig {
        &self.config
    }

    fn slot_name(&self) -> String {
        match self.config.slot {
            MockSlotKind::Device => format!("{}.device", self.config.key),
            MockSlotKind::Shares => format!("{}.shares", self.config.key),
        }
    }

    fn capacity_of(&self, d: &MockDevice) -> Decimal {
        match self.config.slot {
            MockSlotKind::Device => Decimal::ONE,
            MockSlotKind::Shares => d.shares,
        }
    }

    fn metrics_of(d: &MockDevice, fraction: Decimal) -> DeviceMetrics {
        let scale_bytes = |b: u64| -> u64 { u64::try_from((Decimal::from(b) * fraction).floor()).unwrap_or(b) };
        DeviceMetrics {
            device_id: d.id.clone(),
            utilization: Some((d.utilization * fraction).normalize()),
            memory_used: Some(scale_bytes(d.memory_used.bytes())),
            memory_total: Some(scale_bytes(d.memory.bytes())),
            temperature: d.temperature,
            power: d.power,
        }
    }
}

impl AcceleratorPlugin for MockAccelerator {
    fn key(&self) -> &str {
        &self.config.key
    }

    fn devices(&self) -> &[AcceleratorDevice] {
        &self.devices
    }

    fn discover(&self) -> Result<Vec<AcceleratorDevice>> {
        Ok(self.devices.clone())
    }

    fn slots(&self) -> Vec<SlotDefinition> {
        let kind = match self.config.slot {
            MockSlotKind::Device => AllocationKind::Discrete,
            MockSlotKind::Shares => AllocationKind::Fractional { quantum: SHARES_QUANTUM },
        };
        vec![SlotDefinition {
            name: self.slot_name(),
            slot_type: SlotType::Count,
            kind,
            per_device: self.config.devices.iter().map(|d| (d.id.clone(), self.capacity_of(d))).collect(),
        }]
    }

    fn container_config(&self, allocation: &DeviceAllocation) -> Result<DeviceContainerConfig> {
        let ids = allocation.device_ids();
        if let Some(unknown) = ids.iter().find(|id| !self.devices.iter().any(|d| &d.id == *id)) {
            return Err(Error::NotFound { kind: "accelerator device", id: format!("{}:{unknown}", self.config.key) });
        }
        let mut config = DeviceContainerConfig::default();
        if ids.is_empty() {
            return Ok(config);
        }
        config.env.insert(visible_devices_env(&self.config.key), ids.join(","));
        if self.config.device_requests {
            config.device_requests.push(DeviceRequest {
                driver: self.config.docker_driver.clone(),
                device_ids: ids,
                capabilities: vec![vec!["gpu".to_string()]],
            });
        }
        Ok(config)
    }

    fn device_metrics(&self) -> Result<Vec<DeviceMetrics>> {
        Ok(self.config.devices.iter().map(|d| Self::metrics_of(d, Decimal::ONE)).collect())
    }

    fn container_metrics(&self, allocation: &DeviceAllocation, _pids: &[u32]) -> Result<Vec<DeviceMetrics>> {
        let by_id: BTreeMap<&str, &MockDevice> = self.config.devices.iter().map(|d| (d.id.as_str(), d)).collect();
        let mut out = Vec::new();
        for id in allocation.device_ids() {
            let device = by_id.get(id.as_str()).ok_or_else(|| Error::NotFound {
                kind: "accelerator device",
                id: format!("{}:{id}", self.config.key),
            })?;
            let capacity = self.capacity_of(device);
            let fraction = (allocation.amount_of(&id) / capacity).min(Decimal::ONE);
            out.push(Self::metrics_of(device, fraction));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alloc(slot: &str, amounts: &[(&str, Decimal)]) -> DeviceAllocation {
        let mut slots = BTreeMap::new();
        slots.insert(slot.to_string(), amounts.iter().map(|(k, v)| (k.to_string(), *v)).collect());
        DeviceAllocation { plugin: "cuda".into(), slots }
    }

    #[test]
    fn device_mode_slots_and_env() {
        let gpu = MockAccelerator::new(MockConfig::example_cuda(3, MockSlotKind::Device)).unwrap();
        let slots = gpu.slots();
        assert_eq!(slots.len(), 1);
        assert_eq!(slots[0].name, "cuda.device");
        assert_eq!(slots[0].kind, AllocationKind::Discrete);
        assert_eq!(slots[0].total(), Decimal::from(3));
        let config = gpu.container_config(&alloc("cuda.device", &[("2", Decimal::ONE), ("0", Decimal::ONE)])).unwrap();
        assert_eq!(config.env.get("CUDA_VISIBLE_DEVICES").map(String::as_str), Some("0,2"));
        assert!(config.device_requests.is_empty(), "no Docker device request by default");
        assert!(config.device_nodes.is_empty());
        assert!(gpu.container_config(&alloc("cuda.device", &[("7", Decimal::ONE)])).is_err());
        assert_eq!(gpu.container_config(&DeviceAllocation::default()).unwrap(), DeviceContainerConfig::default());
    }

    #[test]
    fn shares_mode_from_json_with_device_requests_and_rocm_env() {
        let config: MockConfig = serde_json::from_value(serde_json::json!({
            "key": "rocm",
            "slot": "shares",
            "device_requests": true,
            "docker_driver": "amd",
            "devices": [
                {"id": "0", "memory": "8g", "shares": "1.5", "utilization": "40", "memory_used": "2g"},
                {"id": "1", "memory": 1024, "shares": 2}
            ]
        }))
        .unwrap();
        let gpu = MockAccelerator::new(config).unwrap();
        let slot = &gpu.slots()[0];
        assert_eq!(slot.name, "rocm.shares");
        assert_eq!(slot.kind, AllocationKind::Fractional { quantum: Decimal::new(1, 2) });
        assert_eq!(slot.total(), Decimal::new(35, 1));
        let a = alloc("rocm.shares", &[("0", Decimal::new(75, 2))]);
        let config = gpu.container_config(&a).unwrap();
        assert_eq!(config.env.get("HIP_VISIBLE_DEVICES").map(String::as_str), Some("0"));
        assert_eq!(config.device_requests[0].driver, "amd");
        assert_eq!(config.device_requests[0].capabilities, vec![vec!["gpu".to_string()]]);

        // half of device 0: half its utilisation and memory figures
        let m = gpu.container_metrics(&a, &[]).unwrap();
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].utilization, Some(Decimal::from(20)));
        assert_eq!(m[0].memory_used, Some(1 << 30));
        assert_eq!(m[0].memory_total, Some(4 << 30));
        let d = gpu.device_metrics().unwrap();
        assert_eq!(d[0].utilization, Some(Decimal::from(40)));
        assert_eq!(d[1].memory_total, Some(1024));
    }

    #[test]
    fn bad_configs_are_rejected() {
        let mut c = MockConfig::example_cuda(2, MockSlotKind::Shares);
        c.devices[1].id = "0".into();
        assert!(MockAccelerator::new(c).unwrap_err().to_string().contains("appears twice"));
        let mut c = MockConfig::example_cuda(1, MockSlotKind::Shares);
        c.devices[0].shares = Decimal::new(5, 3);
        assert!(MockAccelerator::new(c).unwrap_err().to_string().contains("devices[0].shares"));
        let mut c = MockConfig::example_cuda(1, MockSlotKind::Device);
        c.key = "cuda.device".into();
        assert!(MockAccelerator::new(c).is_err());
        assert!(serde_json::from_str::<MockConfig>(r#"{"key": "cuda", "devices": [], "gpus": 1}"#).is_err());
    }

    #[test]
    fn metrics_are_deterministic() {
        let gpu = MockAccelerator::new(MockConfig::example_cuda(2, MockSlotKind::Device)).unwrap();
        assert_eq!(gpu.device_metrics().unwrap(), gpu.device_metrics().unwrap());
        let m = gpu.device_metrics().unwrap();
        assert_eq!(m[1].utilization, Some(Decimal::from(10)));
        assert_eq!(m[1].temperature, Some(Decimal::from(40)));
        assert_eq!(gpu.discover().unwrap(), gpu.devices());
    }
}
