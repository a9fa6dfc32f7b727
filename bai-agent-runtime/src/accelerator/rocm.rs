//! AMD GPUs (feature `rocm`), discovered and monitored through **sysfs**.
//!
//! Why sysfs and not the `rocm_smi_lib` crate: its build script (0.3.2) runs bindgen, which
//! needs libclang, and links `librocm_smi64` at build time, so the crate cannot be built on a
//! machine without ROCm installed — this feature must build everywhere. The amdgpu driver
//! exposes what the plugin needs without any library:
//!
//! - devices: `/sys/class/drm/card<N>/device` whose `vendor` is `0x1002`, in card order;
//!   `mem_info_vram_total`, `product_name` (else the PCI `device` id), `numa_node`, the PCI
//!   address (the `device` link) and the render node (`device/drm/renderD<M>`);
//! - metrics: `gpu_busy_percent`, `mem_info_vram_used`/`_total`, and `hwmon*/temp1_input`
//!   (m°C) and `power1_average` (µW).
//!
//! The slot is `rocm.device` (whole GPUs). A container gets `HIP_VISIBLE_DEVICES=0,…,n-1`
//! (ROCm only enumerates the GPUs whose render nodes it can open, renumbered from 0) and the
//! device nodes `/dev/kfd` plus each GPU's `/dev/dri/renderD<M>`; Docker has no device-request
//! driver for AMD GPUs, so nothing goes into device requests (see
//! [`DeviceContainerConfig::device_nodes`]). sysfs cannot attribute usage to processes, so
//! container metrics are the devices' figures.

use std::path::{Path, PathBuf};

use bai_core::{Decimal, SlotType};

use super::sysfs::{hwmon_dir, link_name, numa_node, numbered_entries, read, read_scaled, read_u64};
use super::{
    renumbered, visible_devices_env, AcceleratorDevice, AcceleratorPlugin, AllocationKind, DeviceAllocation,
    DeviceContainerConfig, DeviceMetrics, SlotDefinition,
};
use crate::error::{Error, Result};

/// AMD's PCI vendor id.
pub const AMD_VENDOR_ID: &str = "0x1002";

/// The plugin key.
pub const KEY: &str = "rocm";

/// The AMD GPU plugin.
#[derive(Debug, Clone)]
pub struct RocmPlugin {
    root: PathBuf,
    devices: Vec<AcceleratorDevice>,
    sysfs: Vec<PathBuf>,
}

impl RocmPlugin {
    /// Discovers the host's AMD GPUs. A host without any has zero devices (not an error).
    pub fn open() -> Result<Self> {
        Self::open_at(Path::new("/"))
    }

    /// Like [`RocmPlugin::open`] with sysfs read under `root` (tests use a fake tree).
    pub fn open_at(root: &Path) -> Result<Self> {
        let found = discover_at(root);
        let (devices, sysfs) = found.into_iter().unzip();
        Ok(Self { root: root.to_path_buf(), devices, sysfs })
    }

    fn sysfs_of(&self, id: &str) -> Result<&Path> {
        self.devices
            .iter()
            .position(|d| d.id == id)
            .and_then(|i| self.sysfs.get(i))
            .map(PathBuf::as_path)
            .ok_or_else(|| Error::NotFound { kind: "accelerator device", id: format!("{KEY}:{id}") })
    }

    fn metrics_at(id: &str, dir: &Path) -> DeviceMetrics {
        let hwmon = hwmon_dir(dir);
        DeviceMetrics {
            device_id: id.to_string(),
            utilization: read_u64(&dir.join("gpu_busy_percent")).map(Decimal::from),
            memory_used: read_u64(&dir.join("mem_info_vram_used")),
            memory_total: read_u64(&dir.join("mem_info_vram_total")),
            temperature: hwmon.as_ref().and_then(|h| read_scaled(&h.join("temp1_input"), 1000)),
            power: hwmon.as_ref().and_then(|h| {
                read_scaled(&h.join("power1_average"), 1_000_000)
                    .or_else(|| read_scaled(&h.join("power1_input"), 1_000_000))
            }),
        }
    }
}

/// `(device, its sysfs directory)` for every AMD GPU under `root`.
fn discover_at(root: &Path) -> Vec<(AcceleratorDevice, PathBuf)> {
    let mut out = Vec::new();
    for (_, card) in numbered_entries(&root.join("sys/class/drm"), "card") {
        let dir = card.join("device");
        if read(&dir.join("vendor")).as_deref() != Some(AMD_VENDOR_ID) {
            continue;
        }
        let model = read(&dir.join("product_name"))
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| format!("AMD GPU {}", read(&dir.join("device")).unwrap_or_default()));
        let device_nodes = numbered_entries(&dir.join("drm"), "renderD")
            .into_iter()
            .map(|(n, _)| format!("/dev/dri/renderD{n}"))
            .collect();
        let device = AcceleratorDevice {
            id: out.len().to_string(),
            hw_id: link_name(&dir).or_else(|| read(&dir.join("unique_id"))),
            model,
            memory: read_u64(&dir.join("mem_info_vram_total")).unwrap_or(0),
            processing_units: None,
            numa_node: numa_node(&dir),
            device_nodes,
        };
        out.push((device, dir));
    }
    out
}

impl AcceleratorPlugin for RocmPlugin {
    fn key(&self) -> &str {
        KEY
    }

    fn devices(&self) -> &[AcceleratorDevice] {
        &self.devices
    }

    fn discover(&self) -> Result<Vec<AcceleratorDevice>> {
        Ok(discover_at(&self.root).into_iter().map(|(d, _)| d).collect())
    }

    fn slots(&self) -> Vec<SlotDefinition> {
        vec![SlotDefinition {
            name: format!("{KEY}.device"),
            slot_type: SlotType::Count,
            kind: AllocationKind::Discrete,
            per_device: self.devices.iter().map(|d| (d.id.clone(), Decimal::ONE)).collect(),
        }]
    }

    fn container_config(&self, allocation: &DeviceAllocation) -> Result<DeviceContainerConfig> {
        let ids = allocation.device_ids();
        let mut config = DeviceContainerConfig::default();
        if ids.is_empty() {
            return Ok(config);
        }
        config.device_nodes.push("/dev/kfd".to_string());
        for id in &ids {
            let device = self
                .devices
                .iter()
                .find(|d| &d.id == id)
                .ok_or_else(|| Error::NotFound { kind: "accelerator device", id: format!("{KEY}:{id}") })?;
            config.device_nodes.extend(device.device_nodes.iter().cloned());
        }
        config.env.insert(visible_devices_env(KEY), renumbered(ids.len()));
        Ok(config)
    }

    fn device_metrics(&self) -> Result<Vec<DeviceMetrics>> {
        Ok(self.devices.iter().zip(&self.sysfs).map(|(d, dir)| Self::metrics_at(&d.id, dir)).collect())
    }

    fn container_metrics(&self, allocation: &DeviceAllocation, _pids: &[u32]) -> Result<Vec<DeviceMetrics>> {
        allocation.device_ids().iter().map(|id| Ok(Self::metrics_at(id, self.sysfs_of(id)?))).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::fs;

    fn write(root: &Path, rel: &str, text: &str) {
        let path = root.join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
    }

    fn fake_tree() -> tempfile::TempDir {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        // card0: an NVIDIA GPU (ignored); card1, card2: AMD; card1-DP-1: a connector
        write(root, "sys/class/drm/card0/device/vendor", "0x10de\n");
        for (card, render, vram) in [(1, 129, 68_702_699_520u64), (2, 130, 34_351_349_760)] {
            let dev = format!("sys/class/drm/card{card}/device");
            write(root, &format!("{dev}/vendor"), "0x1002\n");
            write(root, &format!("{dev}/device"), "0x740f\n");
            write(root, &format!("{dev}/mem_info_vram_total"), &format!("{vram}\n"));
            write(root, &format!("{dev}/mem_info_vram_used"), "1048576\n");
            write(root, &format!("{dev}/gpu_busy_percent"), "37\n");
            write(root, &format!("{dev}/numa_node"), "-1\n");
            write(root, &format!("{dev}/drm/renderD{render}/dev"), "226:129\n");
            write(root, &format!("{dev}/hwmon/hwmon3/temp1_input"), "45000\n");
            write(root, &format!("{dev}/hwmon/hwmon3/power1_average"), "95000000\n");
        }
        write(root, "sys/class/drm/card1/device/product_name", "AMD Instinct MI210\n");
        write(root, "sys/class/drm/card1-DP-1/status", "disconnected\n");
        tmp
    }

    #[test]
    fn discovers_amd_gpus_from_sysfs() {
        let tmp = fake_tree();
        let plugin = RocmPlugin::open_at(tmp.path()).unwrap();
        let devices = plugin.devices();
        assert_eq!(devices.len(), 2);
        assert_eq!((devices[0].id.as_str(), devices[0].model.as_str()), ("0", "AMD Instinct MI210"));
        assert_eq!(devices[0].memory, 68_702_699_520);
        assert_eq!(devices[0].device_nodes, vec!["/dev/dri/renderD129"]);
        assert_eq!(devices[1].model, "AMD GPU 0x740f");
        assert_eq!(devices[1].numa_node, None);
        assert_eq!(plugin.discover().unwrap(), devices);
        let slots = plugin.slots();
        assert_eq!((slots[0].name.as_str(), slots[0].total()), ("rocm.device", Decimal::from(2)));

        let metrics = plugin.device_metrics().unwrap();
        assert_eq!(metrics[0].utilization, Some(Decimal::from(37)));
        assert_eq!(metrics[0].memory_used, Some(1_048_576));
        assert_eq!(metrics[0].temperature, Some(Decimal::from(45)));
        assert_eq!(metrics[0].power, Some(Decimal::from(95)));
    }

    #[test]
    fn container_gets_hip_env_and_device_nodes() {
        let tmp = fake_tree();
        let plugin = RocmPlugin::open_at(tmp.path()).unwrap();
        let mut slots = BTreeMap::new();
        slots.insert("rocm.device".to_string(), BTreeMap::from([("1".to_string(), Decimal::ONE)]));
        let alloc = DeviceAllocation { plugin: KEY.into(), slots };
        let config = plugin.container_config(&alloc).unwrap();
        assert_eq!(config.env.get("HIP_VISIBLE_DEVICES").map(String::as_str), Some("0"));
        assert_eq!(config.device_nodes, vec!["/dev/kfd", "/dev/dri/renderD130"]);
        assert!(config.device_requests.is_empty());
        let m = plugin.container_metrics(&alloc, &[1]).unwrap();
        assert_eq!((m.len(), m[0].device_id.as_str()), (1, "1"));
    }

    #[test]
    fn no_gpus_is_zero_devices() {
        let tmp = tempfile::tempdir().unwrap();
        let plugin = RocmPlugin::open_at(tmp.path()).unwrap();
        assert!(plugin.devices().is_empty());
        assert!(plugin.slots()[0].total().is_zero());
        let real = RocmPlugin::open().unwrap();
        assert!(real.device_metrics().is_ok());
    }
}
