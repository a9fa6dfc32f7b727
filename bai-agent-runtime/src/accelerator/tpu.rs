//! Google TPUs (feature `tpu`), detected through **sysfs**.
//!
//! Chips are the PCI functions with vendor `0x1ae0` under `/sys/bus/pci/devices`, in PCI
//! address order; the PCI device id gives the generation and its HBM size (v2/v3 `0x0027`
//! told apart by `subsystem_device`, v4 `0x005e`, v5e `0x0063`, v5p `0x0062`, v6e `0x006f`,
//! 7x `0x0076`). A chip's device node is `/dev/accel<N>` when the kernel's accel class lists it
//! (`<pci>/accel/accel<N>`), else `/dev/vfio/<iommu group>` (v5e and later use VFIO). When no
//! PCI entry is found, `/sys/class/accel/accel<N>` entries stand for chips of unknown model.
//!
//! The slot is `tpu.device` (whole chips). A container gets the chips' device nodes (plus
//! `/dev/vfio/vfio` for VFIO chips), `TPU_VISIBLE_DEVICES` and libtpu's `TPU_VISIBLE_CHIPS`,
//! both with the host chip indexes — device nodes keep their host names inside the
//! container. Utilisation and HBM usage come from libtpu's runtime metrics service inside the
//! workload, not from sysfs, so metrics report only the chips' HBM size.

use std::path::{Path, PathBuf};

use bai_core::{Decimal, SlotType};

use super::sysfs::{link_name, numa_node, numbered_entries, read};
use super::{
    AcceleratorDevice, AcceleratorPlugin, AllocationKind, DeviceAllocation, DeviceContainerConfig, DeviceMetrics,
    SlotDefinition,
};
use crate::error::{Error, Result};

/// Google's PCI vendor id.
pub const GOOGLE_VENDOR_ID: &str = "0x1ae0";

/// The plugin key.
pub const KEY: &str = "tpu";

const GIB: u64 = 1 << 30;

/// `(model, HBM bytes, uses VFIO)` for a PCI device id (and subsystem id for v2/v3).
fn generation(device: &str, subsystem: &str) -> Option<(&'static str, u64, bool)> {
    Some(match (device, subsystem) {
        ("0x0027", "0x004e") => ("TPU v2", 8 * GIB, false),
        ("0x0027", "0x004f") => ("TPU v3", 16 * GIB, false),
        ("0x005e", _) => ("TPU v4", 32 * GIB, false),
        ("0x0063", _) => ("TPU v5e", 16 * GIB, true),
        ("0x0062", _) => ("TPU v5p", 95 * GIB, true),
        ("0x006f", _) => ("TPU v6e", 32 * GIB, true),
        ("0x0076", _) => ("TPU7x", 192 * GIB, true),
        _ => return None,
    })
}

/// The TPU plugin.
#[derive(Debug, Clone)]
pub struct TpuPlugin {
    root: PathBuf,
    devices: Vec<AcceleratorDevice>,
}

impl TpuPlugin {
    /// Detects the host's TPU chips. A host without any has zero devices (not an error).
    pub fn open() -> Result<Self> {
        Self::open_at(Path::new("/"))
    }

    /// Like [`TpuPlugin::open`] with sysfs read under `root` (tests use a fake tree).
    pub fn open_at(root: &Path) -> Result<Self> {
        Ok(Self { root: root.to_path_buf(), devices: discover_at(root) })
    }
}

fn discover_at(root: &Path) -> Vec<AcceleratorDevice> {
    let mut out = Vec::new();
    let pci = root.join("sys/bus/pci/devices");
    let mut functions: Vec<PathBuf> = std::fs::read_dir(&pci)
        .map(|entries| entries.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    functions.sort();
    for dir in functions {
        if read(&dir.join("vendor")).as_deref() != Some(GOOGLE_VENDOR_ID) {
            continue;
        }
        let device_id = read(&dir.join("device")).unwrap_or_default();
        let subsystem = read(&dir.join("subsystem_device")).unwrap_or_default();
        let Some((model, memory, vfio)) = generation(&device_id, &subsystem) else { continue };
        let index = out.len();
        let mut device_nodes = Vec::new();
        if let Some((n, _)) = numbered_entries(&dir.join("accel"), "accel").into_iter().next() {
            device_nodes.push(format!("/dev/accel{n}"));
        } else if let Some(group) = link_name(&dir.join("iommu_group")) {
            device_nodes.push(format!("/dev/vfio/{group}"));
        } else if vfio {
            device_nodes.push(format!("/dev/vfio/{index}"));
        } else {
            device_nodes.push(format!("/dev/accel{index}"));
        }
        out.push(AcceleratorDevice {
            id: index.to_string(),
            hw_id: dir.file_name().and_then(|n| n.to_str()).map(str::to_string),
            model: model.to_string(),
            memory,
            processing_units: None,
            numa_node: numa_node(&dir),
            device_nodes,
        });
    }
    if out.is_empty() {
        for (n, entry) in numbered_entries(&root.join("sys/class/accel"), "accel") {
            let vendor = read(&entry.join("device/vendor"));
            if vendor.as_deref().is_some_and(|v| v != GOOGLE_VENDOR_ID) {
                continue;
            }
            out.push(AcceleratorDevice {
                id: out.len().to_string(),
                hw_id: link_name(&entry.join("device")),
                model: "TPU".to_string(),
                memory: 0,
                processing_units: None,
                numa_node: numa_node(&entry.join("device")),
                device_nodes: vec![format!("/dev/accel{n}")],
            });
        }
    }
    out
}

impl AcceleratorPlugin for TpuPlugin {
    fn key(&self) -> &str {
        KEY
    }

    fn devices(&self) -> &[AcceleratorDevice] {
        &self.devices
    }

    fn discover(&self) -> Result<Vec<AcceleratorDevice>> {
        Ok(discover_at(&self.root))
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
        for id in &ids {
            let device = self
                .devices
                .iter()
                .find(|d| &d.id == id)
                .ok_or_else(|| Error::NotFound { kind: "accelerator device", id: format!("{KEY}:{id}") })?;
            for node in &device.device_nodes {
                if node.starts_with("/dev/vfio/") && !config.device_nodes.iter().any(|n| n == "/dev/vfio/vfio") {
                    config.device_nodes.push("/dev/vfio/vfio".to_string());
                }
                config.device_nodes.push(node.clone());
            }
        }
        let list = ids.join(",");
        config.env.insert("TPU_VISIBLE_DEVICES".to_string(), list.clone());
        config.env.insert("TPU_VISIBLE_CHIPS".to_string(), list);
        Ok(config)
    }

    fn device_metrics(&self) -> Result<Vec<DeviceMetrics>> {
        Ok(self
            .devices
            .iter()
            .map(|d| DeviceMetrics { memory_total: Some(d.memory).filter(|m| *m > 0), ..DeviceMetrics::empty(&d.id) })
            .collect())
    }

    fn container_metrics(&self, allocation: &DeviceAllocation, _pids: &[u32]) -> Result<Vec<DeviceMetrics>> {
        let all = self.device_metrics()?;
        Ok(allocation.device_ids().iter().filter_map(|id| all.iter().find(|m| &m.device_id == id).cloned()).collect())
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

    fn alloc(ids: &[&str]) -> DeviceAllocation {
        let mut slots = BTreeMap::new();
        slots.insert("tpu.device".to_string(), ids.iter().map(|i| (i.to_string(), Decimal::ONE)).collect());
        DeviceAllocation { plugin: KEY.into(), slots }
    }

    #[test]
    fn v4_chips_use_accel_nodes() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        for (i, addr) in ["0000:00:05.0", "0000:00:04.0"].iter().enumerate() {
            let dir = format!("sys/bus/pci/devices/{addr}");
            write(root, &format!("{dir}/vendor"), "0x1ae0\n");
            write(root, &format!("{dir}/device"), "0x005e\n");
            write(root, &format!("{dir}/subsystem_device"), "0x0000\n");
            // the lower address gets accel0
            write(root, &format!("{dir}/accel/accel{}/dev", 1 - i), "");
        }
        write(root, "sys/bus/pci/devices/0000:00:01.0/vendor", "0x8086\n");
        let plugin = TpuPlugin::open_at(root).unwrap();
        let d = plugin.devices();
        assert_eq!(d.len(), 2);
        assert_eq!(
            (d[0].hw_id.as_deref(), d[0].model.as_str(), d[0].memory),
            (Some("0000:00:04.0"), "TPU v4", 32 * GIB)
        );
        assert_eq!(d[0].device_nodes, vec!["/dev/accel0"]);
        let config = plugin.container_config(&alloc(&["1"])).unwrap();
        assert_eq!(config.device_nodes, vec!["/dev/accel1"]);
        assert_eq!(config.env.get("TPU_VISIBLE_DEVICES").map(String::as_str), Some("1"));
        assert_eq!(config.env.get("TPU_VISIBLE_CHIPS").map(String::as_str), Some("1"));
        assert_eq!(plugin.slots()[0].total(), Decimal::from(2));
        assert_eq!(plugin.container_metrics(&alloc(&["1"]), &[]).unwrap()[0].memory_total, Some(32 * GIB));
    }

    #[test]
    fn v5e_chips_use_vfio() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        write(root, "sys/bus/pci/devices/0000:00:04.0/vendor", "0x1ae0\n");
        write(root, "sys/bus/pci/devices/0000:00:04.0/device", "0x0063\n");
        let plugin = TpuPlugin::open_at(root).unwrap();
        assert_eq!(plugin.devices()[0].model, "TPU v5e");
        let config = plugin.container_config(&alloc(&["0"])).unwrap();
        assert_eq!(config.device_nodes, vec!["/dev/vfio/vfio", "/dev/vfio/0"]);
        assert!(plugin.container_config(&alloc(&["5"])).is_err());
    }

    #[test]
    fn accel_class_fallback_and_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        write(root, "sys/class/accel/accel0/dev", "261:0\n");
        write(root, "sys/class/accel/accel1/device/vendor", "0x1e52\n"); // another vendor's NPU
        let plugin = TpuPlugin::open_at(root).unwrap();
        assert_eq!(plugin.devices().len(), 1);
        assert_eq!(plugin.devices()[0].device_nodes, vec!["/dev/accel0"]);

        let empty = tempfile::tempdir().unwrap();
        assert!(TpuPlugin::open_at(empty.path()).unwrap().devices().is_empty());
        assert!(TpuPlugin::open().is_ok());
    }
}
