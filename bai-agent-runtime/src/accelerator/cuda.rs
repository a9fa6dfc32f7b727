//! NVIDIA GPUs through NVML (feature `cuda`).
//!
//! `nvml-wrapper` loads `libnvidia-ml.so.1` when the plugin is opened, so this feature builds
//! on machines without a GPU or driver; there, [`CudaPlugin::open`] returns an error that says
//! the library could not be loaded (the agent logs it and runs without the plugin).
//!
//! The plugin provides either `cuda.device` (whole GPUs, the default) or `cuda.shares`
//! (fractions in steps of 0.01, `shares_per_device` per GPU); shares are an accounting of the
//! GPU — nothing here isolates the memory or compute of kernels sharing one.
//!
//! A container gets a Docker device request `driver: nvidia` with the GPUs' UUIDs and
//! capabilities `[["gpu"]]`; the NVIDIA runtime then shows only those GPUs, numbered from 0, so
//! `CUDA_VISIBLE_DEVICES` is `0,…,n-1`. Metrics come from NVML: utilisation, memory,
//! temperature and power per GPU; a container's memory is the sum over its processes (NVML's
//! running compute processes), its utilisation the GPU's.

use std::collections::BTreeSet;
use std::fmt;

use bai_core::{Decimal, SlotType};
use nvml_wrapper::enum_wrappers::device::TemperatureSensor;
use nvml_wrapper::enums::device::UsedGpuMemory;
use nvml_wrapper::{Device, Nvml};
use serde::{Deserialize, Serialize};

use super::{
    renumbered, visible_devices_env, AcceleratorDevice, AcceleratorPlugin, AllocationKind, DeviceAllocation,
    DeviceContainerConfig, DeviceMetrics, SlotDefinition,
};
use crate::error::{Error, Result};
use crate::runtime::DeviceRequest;

/// The plugin key.
pub const KEY: &str = "cuda";

/// The step of `cuda.shares`.
pub const SHARES_QUANTUM: Decimal = Decimal::from_parts(1, 0, 0, false, 2);

/// Which slot the CUDA plugin provides.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CudaMode {
    /// `cuda.device`: whole GPUs.
    #[default]
    Device,
    /// `cuda.shares`: fractions of GPUs (quantum 0.01).
    Shares,
}

/// Configuration of the CUDA plugin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CudaConfig {
    /// `device` (default) or `shares`.
    pub mode: CudaMode,
    /// Shares per GPU in `shares` mode (default 1, a positive multiple of 0.01).
    pub shares_per_device: Decimal,
}

impl Default for CudaConfig {
    fn default() -> Self {
        Self { mode: CudaMode::Device, shares_per_device: Decimal::ONE }
    }
}

/// The NVIDIA GPU plugin.
pub struct CudaPlugin {
    nvml: Nvml,
    config: CudaConfig,
    devices: Vec<AcceleratorDevice>,
}

impl fmt::Debug for CudaPlugin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CudaPlugin")
            .field("config", &self.config)
            .field("devices", &self.devices)
            .finish_non_exhaustive()
    }
}

fn nvml_error(operation: &'static str, what: impl fmt::Display, e: nvml_wrapper::error::NvmlError) -> Error {
    Error::io(operation, what.to_string(), std::io::Error::other(e.to_string()))
}

impl CudaPlugin {
    /// Loads NVML and lists the GPUs. Fails with a clear error when `libnvidia-ml.so.1`
    /// cannot be loaded or the driver does not answer.
    pub fn open(config: CudaConfig) -> Result<Self> {
        if config.shares_per_device <= Decimal::ZERO || !(config.shares_per_device % SHARES_QUANTUM).is_zero() {
            return Err(Error::invalid(
                "cuda.shares_per_device",
                format!("{}: expected a positive multiple of {SHARES_QUANTUM}", config.shares_per_device),
            ));
        }
        let nvml = Nvml::init().map_err(|e| {
            Error::io(
                "load NVML (is the NVIDIA driver installed?) from",
                "libnvidia-ml.so.1",
                std::io::Error::new(std::io::ErrorKind::NotFound, e.to_string()),
            )
        })?;
        let devices = list_devices(&nvml)?;
        Ok(Self { nvml, config, devices })
    }

    fn device(&self, id: &str) -> Result<Device<'_>> {
        let index: u32 =
            id.parse().map_err(|_| Error::NotFound { kind: "accelerator device", id: format!("{KEY}:{id}") })?;
        self.nvml.device_by_index(index).map_err(|e| nvml_error("query GPU", format!("{KEY}:{id}"), e))
    }

    fn capacity(&self) -> Decimal {
        match self.config.mode {
            CudaMode::Device => Decimal::ONE,
            CudaMode::Shares => self.config.shares_per_device,
        }
    }
}

fn list_devices(nvml: &Nvml) -> Result<Vec<AcceleratorDevice>> {
    let count = nvml.device_count().map_err(|e| nvml_error("count GPUs through", "NVML", e))?;
    let mut out = Vec::new();
    for index in 0..count {
        let device = nvml.device_by_index(index).map_err(|e| nvml_error("open GPU", index, e))?;
        out.push(AcceleratorDevice {
            id: index.to_string(),
            hw_id: device.uuid().ok(),
            model: device.name().unwrap_or_else(|_| "NVIDIA GPU".to_string()),
            memory: device.memory_info().map(|m| m.total).unwrap_or(0),
            processing_units: device.num_cores().ok(),
            numa_node: None,
            device_nodes: Vec::new(),
        });
    }
    Ok(out)
}

/// The container configuration for `ids` of `devices`: one `nvidia` device request with the
/// GPUs' UUIDs (indexes when unknown), capabilities `[["gpu"]]`, and `CUDA_VISIBLE_DEVICES`
/// as the container numbers them.
fn container_config_for(devices: &[AcceleratorDevice], ids: &[String]) -> Result<DeviceContainerConfig> {
    let mut config = DeviceContainerConfig::default();
    if ids.is_empty() {
        return Ok(config);
    }
    let mut device_ids = Vec::new();
    for id in ids {
        let device = devices
            .iter()
            .find(|d| &d.id == id)
            .ok_or_else(|| Error::NotFound { kind: "accelerator device", id: format!("{KEY}:{id}") })?;
        device_ids.push(device.hw_id.clone().unwrap_or_else(|| device.id.clone()));
    }
    config.device_requests.push(DeviceRequest {
        driver: "nvidia".to_string(),
        device_ids,
        capabilities: vec![vec!["gpu".to_string()]],
    });
    config.env.insert(visible_devices_env(KEY), renumbered(ids.len()));
    Ok(config)
}

fn metrics_of(id: &str, device: &Device<'_>) -> DeviceMetrics {
    let memory = device.memory_info().ok();
    DeviceMetrics {
        device_id: id.to_string(),
        utilization: device.utilization_rates().ok().map(|u| Decimal::from(u.gpu)),
        memory_used: memory.as_ref().map(|m| m.used),
        memory_total: memory.as_ref().map(|m| m.total),
        temperature: device.temperature(TemperatureSensor::Gpu).ok().map(Decimal::from),
        power: device.power_usage().ok().map(|mw| (Decimal::from(mw) / Decimal::from(1000)).normalize()),
    }
}

impl AcceleratorPlugin for CudaPlugin {
    fn key(&self) -> &str {
        KEY
    }

    fn devices(&self) -> &[AcceleratorDevice] {
        &self.devices
    }

    fn discover(&self) -> Result<Vec<AcceleratorDevice>> {
        list_devices(&self.nvml)
    }

    fn slots(&self) -> Vec<SlotDefinition> {
        let (name, kind) = match self.config.mode {
            CudaMode::Device => ("cuda.device", AllocationKind::Discrete),
            CudaMode::Shares => ("cuda.shares", AllocationKind::Fractional { quantum: SHARES_QUANTUM }),
        };
        vec![SlotDefinition {
            name: name.to_string(),
            slot_type: SlotType::Count,
            kind,
            per_device: self.devices.iter().map(|d| (d.id.clone(), self.capacity())).collect(),
        }]
    }

    fn container_config(&self, allocation: &DeviceAllocation) -> Result<DeviceContainerConfig> {
        container_config_for(&self.devices, &allocation.device_ids())
    }

    fn device_metrics(&self) -> Result<Vec<DeviceMetrics>> {
        self.devices.iter().map(|d| Ok(metrics_of(&d.id, &self.device(&d.id)?))).collect()
    }

    fn container_metrics(&self, allocation: &DeviceAllocation, pids: &[u32]) -> Result<Vec<DeviceMetrics>> {
        let pids: BTreeSet<u32> = pids.iter().copied().collect();
        let mut out = Vec::new();
        for id in allocation.device_ids() {
            let device = self.device(&id)?;
            let mut sample = metrics_of(&id, &device);
            sample.memory_used = device.running_compute_processes().ok().map(|procs| {
                procs
                    .iter()
                    .filter(|p| pids.contains(&p.pid))
                    .map(|p| match p.used_gpu_memory {
                        UsedGpuMemory::Used(bytes) => bytes,
                        UsedGpuMemory::Unavailable => 0,
                    })
                    .sum()
            });
            out.push(sample);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gpu(id: &str, uuid: Option<&str>) -> AcceleratorDevice {
        AcceleratorDevice {
            id: id.to_string(),
            hw_id: uuid.map(str::to_string),
            model: "NVIDIA A100".to_string(),
            memory: 40 << 30,
            processing_units: None,
            numa_node: None,
            device_nodes: Vec::new(),
        }
    }

    #[test]
    fn device_requests_use_uuids_and_renumbered_env() {
        let devices = [gpu("0", Some("GPU-aaa")), gpu("1", None), gpu("2", Some("GPU-ccc"))];
        let config = container_config_for(&devices, &["1".to_string(), "2".to_string()]).unwrap();
        assert_eq!(
            config.device_requests,
            vec![DeviceRequest {
                driver: "nvidia".into(),
                device_ids: vec!["1".into(), "GPU-ccc".into()],
                capabilities: vec![vec!["gpu".into()]],
            }]
        );
        assert_eq!(config.env.get("CUDA_VISIBLE_DEVICES").map(String::as_str), Some("0,1"));
        assert!(container_config_for(&devices, &["9".to_string()]).is_err());
        assert_eq!(container_config_for(&devices, &[]).unwrap(), DeviceContainerConfig::default());
    }

    #[test]
    fn opening_without_a_driver_is_a_clear_error() {
        match CudaPlugin::open(CudaConfig::default()) {
            // a machine with a GPU: the devices and slots are consistent
            Ok(plugin) => {
                assert_eq!(plugin.slots()[0].per_device.len(), plugin.devices().len());
                assert!(plugin.device_metrics().is_ok());
            }
            Err(e) => assert!(e.to_string().contains("NVML"), "{e}"),
        }
        let bad = CudaConfig { mode: CudaMode::Shares, shares_per_device: Decimal::new(5, 3) };
        assert!(CudaPlugin::open(bad).unwrap_err().to_string().contains("shares_per_device"));
        let parsed: CudaConfig = serde_json::from_str(r#"{"mode": "shares", "shares_per_device": "2"}"#).unwrap();
        assert_eq!(parsed.shares_per_device, Decimal::from(2));
    }
}
