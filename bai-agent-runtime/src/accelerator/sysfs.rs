//! Small readers for sysfs attributes, shared by the sysfs-based plugins. A missing or
//! unreadable attribute is `None`: drivers differ in what they expose.

use std::path::{Path, PathBuf};

#[cfg(feature = "rocm")]
use bai_core::Decimal;

/// The trimmed text of an attribute.
pub(crate) fn read(path: &Path) -> Option<String> {
    std::fs::read_to_string(path).ok().map(|s| s.trim().to_string())
}

/// An attribute as an unsigned number (decimal, or hex with `0x`).
#[cfg(feature = "rocm")]
pub(crate) fn read_u64(path: &Path) -> Option<u64> {
    let text = read(path)?;
    match text.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => text.parse().ok(),
    }
}

/// An attribute in thousandths (`temp1_input` in m°C) or millionths (`power1_average` in µW)
/// as a decimal in whole units.
#[cfg(feature = "rocm")]
pub(crate) fn read_scaled(path: &Path, divisor: u64) -> Option<Decimal> {
    let raw = read_u64(path)?;
    Some((Decimal::from(raw) / Decimal::from(divisor.max(1))).normalize())
}

/// Entries of a directory whose names start with `prefix` followed by a number, sorted by
/// that number: `card0`, `card1`, `card10` (not `card0-DP-1`).
pub(crate) fn numbered_entries(dir: &Path, prefix: &str) -> Vec<(u32, PathBuf)> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut out: Vec<(u32, PathBuf)> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let n: u32 = name.strip_prefix(prefix)?.parse().ok()?;
            Some((n, e.path()))
        })
        .collect();
    out.sort_by_key(|(n, _)| *n);
    out
}

/// The file name a symlink points at (`device` → `0000:03:00.0`, `iommu_group` → `12`).
pub(crate) fn link_name(path: &Path) -> Option<String> {
    let target = std::fs::read_link(path).ok()?;
    target.file_name()?.to_str().map(str::to_string)
}

/// The first `hwmon*` directory of a device.
#[cfg(feature = "rocm")]
pub(crate) fn hwmon_dir(device: &Path) -> Option<PathBuf> {
    numbered_entries(&device.join("hwmon"), "hwmon").into_iter().next().map(|(_, p)| p)
}

/// A NUMA node attribute (`-1` = none).
pub(crate) fn numa_node(device: &Path) -> Option<u32> {
    read(&device.join("numa_node"))?.parse::<i64>().ok().and_then(|n| u32::try_from(n).ok())
}
