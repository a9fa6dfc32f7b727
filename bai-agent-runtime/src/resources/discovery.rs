//! What this node can give to kernels: usable CPU cores and memory, from the real host.
//!
//! Detection ([`detect_host`]) reads, under a root directory (`/` on a real host, a temporary
//! tree in tests):
//!
//! - **CPU cores**: the process's affinity (`sched_getaffinity`), or `sys/devices/system/cpu/online`
//!   when no affinity is given, intersected with the cgroup's cpuset — v2
//!   `cpuset.cpus.effective`, v1 `cpuset/…/cpuset.cpus`.
//! - **CPU quota**: a CFS quota caps the usable CPU count — v2 `cpu.max` (`max 100000` or
//!   `200000 100000`), v1 `cpu.cfs_quota_us / cpu.cfs_period_us` (`-1` = none). The smallest
//!   quota of the agent's cgroup and its ancestors wins.
//! - **Memory**: `proc/meminfo` `MemTotal`, capped by the cgroup limit — v2 `memory.max`
//!   (`max` = unlimited), v1 `memory.limit_in_bytes` — again the smallest along the ancestry.
//!
//! The agent's own cgroup comes from `proc/self/cgroup`; when that path does not exist under
//! the cgroup mount (a container with a cgroup namespace sees its own cgroup as the root), the
//! mount itself is used.
//!
//! [`NodeCapacity::from_host`] then subtracts the [`HostReserve`] (as the original: cpu 1,
//! mem 1 GiB by default; available = detected − reserved) and fails, naming the reserve, when
//! nothing is left for kernels.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use bai_core::{BinarySize, Decimal, ResourceSlot};
use serde::{Deserialize, Serialize};

use super::cpuset::{format_cpu_list, parse_cpu_list};
use crate::error::{Error, Result};

/// What the host keeps for itself (the agent, the container engine, the OS).
///
/// Deserialises from e.g. `{"cpu": "1", "mem": "1g"}`; missing fields take the defaults.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HostReserve {
    /// CPUs kept for the host (default 1). Its whole part also removes that many of the
    /// lowest-numbered cores from the cores kernels are pinned to.
    pub cpu: Decimal,
    /// Memory kept for the host (default 1 GiB).
    pub mem: BinarySize,
}

impl Default for HostReserve {
    fn default() -> Self {
        Self { cpu: Decimal::ONE, mem: BinarySize::new(1 << 30) }
    }
}

impl HostReserve {
    /// No reserve at all (tests, or a node dedicated to one kernel).
    pub fn none() -> Self {
        Self { cpu: Decimal::ZERO, mem: BinarySize::new(0) }
    }
}

/// The cgroup layout found on the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CgroupVersion {
    /// Separate hierarchies per controller (`/sys/fs/cgroup/cpuset`, `…/memory`, …).
    V1,
    /// The unified hierarchy (`/sys/fs/cgroup/cgroup.controllers` exists).
    V2,
    /// No cgroup filesystem was found; no cgroup limit applies.
    None,
}

/// What was detected on the host, before the reserve.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostResources {
    /// Usable core ids: the affinity intersected with the cgroup cpuset, sorted.
    pub cores: Vec<u32>,
    /// The CFS quota in CPUs (rounded down to 0.001), if any.
    pub cpu_quota: Option<Decimal>,
    /// `MemTotal` from `/proc/meminfo`, in bytes.
    pub mem_total: u64,
    /// The cgroup memory limit in bytes, if any.
    pub mem_limit: Option<u64>,
    /// The cgroup layout the limits came from.
    pub cgroup: CgroupVersion,
}

impl HostResources {
    /// The usable CPU count: the number of cores, capped by the CFS quota.
    pub fn cpu(&self) -> Decimal {
        let cores = Decimal::from(self.cores.len());
        match self.cpu_quota {
            Some(quota) if quota < cores => quota,
            _ => cores,
        }
    }

    /// The usable memory: `MemTotal`, capped by the cgroup limit.
    pub fn mem(&self) -> u64 {
        self.mem_limit.map_or(self.mem_total, |limit| limit.min(self.mem_total))
    }

    fn describe_cpu(&self) -> String {
        let quota = match self.cpu_quota {
            Some(q) => format!("a CFS quota of {} CPUs", q.normalize()),
            None => "no CFS quota".to_string(),
        };
        format!("{} usable CPUs (cores {:?}, {quota})", self.cpu().normalize(), format_cpu_list(&self.cores))
    }

    fn describe_mem(&self) -> String {
        let limit = match self.mem_limit {
            Some(l) => format!("a cgroup limit of {}", BinarySize::new(l)),
            None => "no cgroup limit".to_string(),
        };
        format!("{} usable (MemTotal {}, {limit})", BinarySize::new(self.mem()), BinarySize::new(self.mem_total))
    }
}

/// What kernels may use on this node: the cores they may be pinned to, the CPU count and the
/// memory, after the host reserve.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeCapacity {
    /// Core ids kernels may be pinned to, sorted and distinct.
    pub cores: Vec<u32>,
    /// The CPU count kernels may use in total; at most `cores.len()` (less under a CFS quota or
    /// a fractional reserve).
    pub cpu: Decimal,
    /// Memory for kernels, in bytes.
    pub mem: u64,
}

impl NodeCapacity {
    /// A capacity given by hand (tests, demos, a configured override). `cpu` must be positive
    /// and at most the number of cores; `mem` must be positive.
    ///
    /// ```
    /// use bai_agent_runtime::resources::NodeCapacity;
    ///
    /// let cap = NodeCapacity::new(vec![0, 1, 2, 3], 4.into(), 8 << 30)?;
    /// assert_eq!(cap.to_slots().get("cpu"), 4.into());
    /// # Ok::<(), bai_agent_runtime::Error>(())
    /// ```
    pub fn new(mut cores: Vec<u32>, cpu: Decimal, mem: u64) -> Result<Self> {
        cores.sort_unstable();
        cores.dedup();
        if cpu <= Decimal::ZERO || cpu > Decimal::from(cores.len()) {
            return Err(Error::invalid(
                "capacity.cpu",
                format!("{} must be positive and at most the {} cores given", cpu.normalize(), cores.len()),
            ));
        }
        if mem == 0 {
            return Err(Error::invalid("capacity.mem", "must be positive"));
        }
        Ok(Self { cores, cpu, mem })
    }

    /// Detects the real host (`/`, this process's affinity) and subtracts `reserve`.
    pub fn discover(reserve: &HostReserve) -> Result<Self> {
        let affinity = current_affinity();
        Self::discover_from(Path::new("/"), affinity.as_deref(), reserve)
    }

    /// Like [`NodeCapacity::discover`] with `/proc` and `/sys` read under `root`, and the
    /// affinity given (`None`: the online CPUs under `root`).
    pub fn discover_from(root: &Path, affinity: Option<&[u32]>, reserve: &HostReserve) -> Result<Self> {
        Self::from_host(&detect_host(root, affinity)?, reserve)
    }

    /// Subtracts `reserve` from what was detected: `cpu = detected − reserve.cpu`,
    /// `mem = detected − reserve.mem`, and the lowest `floor(reserve.cpu)` cores are left to the
    /// host. An error names the reserve when nothing would be left.
    pub fn from_host(host: &HostResources, reserve: &HostReserve) -> Result<Self> {
        if reserve.cpu.is_sign_negative() && !reserve.cpu.is_zero() {
            return Err(Error::invalid("reserved.cpu", format!("{} is negative", reserve.cpu)));
        }
        let cpu = host.cpu() - reserve.cpu;
        if cpu <= Decimal::ZERO {
            return Err(Error::invalid(
                "reserved.cpu",
                format!(
                    "the host reserve of {} CPUs leaves nothing for kernels: {} detected",
                    reserve.cpu.normalize(),
                    host.describe_cpu()
                ),
            ));
        }
        let mem = host.mem().saturating_sub(reserve.mem.bytes());
        if mem == 0 {
            return Err(Error::invalid(
                "reserved.mem",
                format!(
                    "the host reserve of {} leaves no memory for kernels: {} detected",
                    reserve.mem,
                    host.describe_mem()
                ),
            ));
        }
        // cpu <= cores - reserve <= cores - floor(reserve), so the kept cores always cover it.
        let drop = usize::try_from(reserve.cpu.floor()).unwrap_or(usize::MAX).min(host.cores.len());
        let cores = host.cores[drop..].to_vec();
        Ok(Self { cores, cpu, mem })
    }

    /// The capacity as slots: `cpu` (count) and `mem` (bytes).
    pub fn to_slots(&self) -> ResourceSlot {
        let mut slots = ResourceSlot::new();
        // both names are valid constants
        let _ = slots.set("cpu", self.cpu);
        let _ = slots.set("mem", Decimal::from(self.mem));
        slots
    }
}

/// The CPUs this process may run on, from `sched_getaffinity`; `None` if the call fails.
pub fn current_affinity() -> Option<Vec<u32>> {
    let set = nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0)).ok()?;
    let ids = (0..nix::sched::CpuSet::count())
        .filter(|&i| set.is_set(i).unwrap_or(false))
        .filter_map(|i| u32::try_from(i).ok())
        .collect();
    Some(ids)
}

/// Detects cores, CPU quota and memory under `root` (see the module docs). With `affinity`
/// `None`, the online CPUs (`sys/devices/system/cpu/online`) stand for the affinity.
pub fn detect_host(root: &Path, affinity: Option<&[u32]>) -> Result<HostResources> {
    let mut cores = match affinity {
        Some(ids) => {
            let mut ids = ids.to_vec();
            ids.sort_unstable();
            ids.dedup();
            ids
        }
        None => {
            let path = root.join("sys/devices/system/cpu/online");
            let text = std::fs::read_to_string(&path).map_err(|e| Error::io("read", &path, e))?;
            parse_cpu_list(&path.display().to_string(), &text)?
        }
    };
    let cgroup = Cgroups::locate(root)?;
    if let Some(cpuset) = cgroup.cpuset()? {
        cores.retain(|c| cpuset.binary_search(c).is_ok());
    }
    if cores.is_empty() {
        return Err(Error::invalid(
            "cpu",
            "no usable CPU core: the affinity and the cgroup cpuset have no core in common",
        ));
    }
    let cpu_quota = cgroup.cpu_quota()?;
    let mem_total = read_mem_total(root)?;
    let mem_limit = cgroup.mem_limit()?;
    Ok(HostResources { cores, cpu_quota, mem_total, mem_limit, cgroup: cgroup.version() })
}

fn read_mem_total(root: &Path) -> Result<u64> {
    let path = root.join("proc/meminfo");
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io("read", &path, e))?;
    let field = path.display().to_string();
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .ok_or_else(|| Error::invalid(&field, "no MemTotal line"))?;
    let mut parts = line.split_whitespace();
    let value: u64 = parts
        .next()
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| Error::invalid(&field, format!("MemTotal {line:?}: expected a number of kB")))?;
    let unit = match parts.next() {
        None => 1,
        Some(u) if u.eq_ignore_ascii_case("kb") => 1024,
        Some(u) => return Err(Error::invalid(&field, format!("MemTotal unit {u:?}: expected kB"))),
    };
    value.checked_mul(unit).ok_or_else(|| Error::invalid(&field, "MemTotal is too large"))
}

/// Reads a file that may be absent: `Ok(None)` when it does not exist.
fn read_optional(path: &Path) -> Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory) => Ok(None),
        Err(e) => Err(Error::io("read", path, e)),
    }
}

/// `dir` and its ancestors up to and including `base`, innermost first.
fn up_to(dir: &Path, base: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut current = Some(dir);
    while let Some(d) = current {
        out.push(d.to_path_buf());
        if d == base || !d.starts_with(base) {
            break;
        }
        current = d.parent();
    }
    out
}

/// The agent's cgroup directory for one hierarchy mounted at `mount`.
fn cgroup_dir(mount: &Path, rel: &str) -> PathBuf {
    let dir = mount.join(rel.trim_start_matches('/'));
    if dir.is_dir() && !rel.split('/').any(|c| c == "..") {
        dir
    } else {
        mount.to_path_buf()
    }
}

/// The cgroup directories that hold this process's limits.
enum Cgroups {
    V1 { cpuset: Option<(PathBuf, PathBuf)>, cpu: Option<(PathBuf, PathBuf)>, memory: Option<(PathBuf, PathBuf)> },
    V2 { base: PathBuf, dir: PathBuf },
    None,
}

impl Cgroups {
    fn locate(root: &Path) -> Result<Self> {
        let base = root.join("sys/fs/cgroup");
        let membership = read_optional(&root.join("proc/self/cgroup"))?.unwrap_or_default();
        // (controllers, path) per line of `hierarchy-id:controllers:path`
        let entries: Vec<(&str, &str)> = membership
            .lines()
            .filter_map(|l| {
                let mut parts = l.splitn(3, ':');
                let _id = parts.next()?;
                Some((parts.next()?, parts.next()?))
            })
            .collect();
        if base.join("cgroup.controllers").is_file() {
            let rel = entries.iter().find(|(c, _)| c.is_empty()).map_or("/", |(_, p)| p);
            return Ok(Self::V2 { dir: cgroup_dir(&base, rel), base });
        }
        let v1 = |controller: &str, mounts: &[&str]| -> Option<(PathBuf, PathBuf)> {
            let mount = mounts.iter().map(|m| base.join(m)).find(|m| m.is_dir())?;
            let rel = entries.iter().find(|(c, _)| c.split(',').any(|name| name == controller)).map_or("/", |(_, p)| p);
            Some((cgroup_dir(&mount, rel), mount))
        };
        let cpuset = v1("cpuset", &["cpuset"]);
        let cpu = v1("cpu", &["cpu,cpuacct", "cpu", "cpuacct,cpu"]);
        let memory = v1("memory", &["memory"]);
        if cpuset.is_none() && cpu.is_none() && memory.is_none() {
            return Ok(Self::None);
        }
        Ok(Self::V1 { cpuset, cpu, memory })
    }

    fn version(&self) -> CgroupVersion {
        match self {
            Self::V1 { .. } => CgroupVersion::V1,
            Self::V2 { .. } => CgroupVersion::V2,
            Self::None => CgroupVersion::None,
        }
    }

    /// The cpuset of the innermost directory that states one.
    fn cpuset(&self) -> Result<Option<Vec<u32>>> {
        let (dirs, names): (Vec<PathBuf>, &[&str]) = match self {
            Self::V2 { base, dir } => (up_to(dir, base), &["cpuset.cpus.effective"]),
            Self::V1 { cpuset: Some((dir, mount)), .. } => {
                (up_to(dir, mount), &["cpuset.effective_cpus", "cpuset.cpus"])
            }
            _ => return Ok(None),
        };
        for dir in dirs {
            for name in names {
                let path = dir.join(name);
                if let Some(text) = read_optional(&path)? {
                    if text.trim().is_empty() {
                        continue;
                    }
                    return parse_cpu_list(&path.display().to_string(), &text).map(Some);
                }
            }
        }
        Ok(None)
    }

    /// The smallest CFS quota along the ancestry, in CPUs.
    fn cpu_quota(&self) -> Result<Option<Decimal>> {
        let mut best: Option<Decimal> = None;
        let mut consider = |q: Decimal| best = Some(best.map_or(q, |b: Decimal| b.min(q)));
        match self {
            Self::V2 { base, dir } => {
                for d in up_to(dir, base) {
                    let path = d.join("cpu.max");
                    if let Some(text) = read_optional(&path)? {
                        if let Some(q) = parse_cpu_max(&path, &text)? {
                            consider(q);
                        }
                    }
                }
            }
            Self::V1 { cpu: Some((dir, mount)), .. } => {
                for d in up_to(dir, mount) {
                    let (qp, pp) = (d.join("cpu.cfs_quota_us"), d.join("cpu.cfs_period_us"));
                    if let (Some(quota), Some(period)) = (read_optional(&qp)?, read_optional(&pp)?) {
                        let quota: i64 = parse_number(&qp, &quota)?;
                        let period: i64 = parse_number(&pp, &period)?;
                        if quota > 0 {
                            consider(quota_to_cpus(&pp, quota, period)?);
                        }
                    }
                }
            }
            _ => {}
        }
        Ok(best)
    }

    /// The smallest memory limit along the ancestry, in bytes.
    fn mem_limit(&self) -> Result<Option<u64>> {
        let (dirs, name) = match self {
            Self::V2 { base, dir } => (up_to(dir, base), "memory.max"),
            Self::V1 { memory: Some((dir, mount)), .. } => (up_to(dir, mount), "memory.limit_in_bytes"),
            _ => return Ok(None),
        };
        let mut best: Option<u64> = None;
        for d in dirs {
            let path = d.join(name);
            let Some(text) = read_optional(&path)? else { continue };
            let text = text.trim();
            if text == "max" {
                continue;
            }
            let limit: u64 = parse_number(&path, text)?;
            if limit >= V1_UNLIMITED {
                continue;
            }
            best = Some(best.map_or(limit, |b| b.min(limit)));
        }
        Ok(best)
    }
}

/// cgroup v1 reports "no limit" as the largest page-aligned `i64` (`9223372036854771712` with
/// 4 KiB pages); anything from 2^62 up is taken as no limit.
const V1_UNLIMITED: u64 = 1 << 62;

fn parse_number<T: std::str::FromStr>(path: &Path, text: &str) -> Result<T> {
    text.trim()
        .parse()
        .map_err(|_| Error::invalid(path.display().to_string(), format!("{:?} is not a number", text.trim())))
}

/// `cpu.max`: `max <period>` (no quota) or `<quota> <period>`.
fn parse_cpu_max(path: &Path, text: &str) -> Result<Option<Decimal>> {
    let mut parts = text.split_whitespace();
    let quota = parts.next().unwrap_or("max");
    if quota == "max" {
        return Ok(None);
    }
    let quota: i64 = parse_number(path, quota)?;
    let period: i64 = parse_number(path, parts.next().unwrap_or("100000"))?;
    quota_to_cpus(path, quota, period).map(Some)
}

fn quota_to_cpus(path: &Path, quota: i64, period: i64) -> Result<Decimal> {
    if period <= 0 || quota <= 0 {
        return Err(Error::invalid(
            path.display().to_string(),
            format!("CFS quota {quota} / period {period}: expected positive numbers"),
        ));
    }
    let milli = Decimal::from(1000);
    let cpus = (Decimal::from(quota) * milli / Decimal::from(period)).floor() / milli;
    Ok(cpus.normalize())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    /// A fake `/` under a temporary directory.
    struct FakeRoot(tempfile::TempDir);

    impl FakeRoot {
        fn new() -> Self {
            let root = Self(tempfile::tempdir().unwrap());
            root.write("proc/meminfo", "MemTotal:       16384000 kB\nMemFree:  100 kB\n");
            root.write("sys/devices/system/cpu/online", "0-7\n");
            root
        }
        fn path(&self) -> &Path {
            self.0.path()
        }
        fn write(&self, rel: &str, text: &str) {
            let path = self.0.path().join(rel);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, text).unwrap();
        }
    }

    const MEM_TOTAL: u64 = 16_384_000 * 1024;
    const GIB: u64 = 1 << 30;

    #[test]
    fn no_cgroup_uses_online_cpus_and_memtotal() {
        let root = FakeRoot::new();
        let host = detect_host(root.path(), None).unwrap();
        assert_eq!(host.cgroup, CgroupVersion::None);
        assert_eq!(host.cores, (0..8).collect::<Vec<_>>());
        assert_eq!(host.cpu_quota, None);
        assert_eq!(host.mem(), MEM_TOTAL);
        // affinity wins over the online list
        let host = detect_host(root.path(), Some(&[6, 2, 2])).unwrap();
        assert_eq!(host.cores, vec![2, 6]);
    }

    #[test]
    fn cgroup_v2_cpuset_quota_and_memory_max() {
        let root = FakeRoot::new();
        root.write("sys/fs/cgroup/cgroup.controllers", "cpuset cpu memory\n");
        root.write("proc/self/cgroup", "0::/system.slice/agent.service\n");
        let dir = "sys/fs/cgroup/system.slice/agent.service";
        root.write(&format!("{dir}/cpuset.cpus.effective"), "2-5\n");
        root.write(&format!("{dir}/cpu.max"), "max 100000\n");
        root.write("sys/fs/cgroup/system.slice/cpu.max", "250000 100000\n");
        root.write(&format!("{dir}/memory.max"), "max\n");
        root.write("sys/fs/cgroup/system.slice/memory.max", &format!("{}\n", 4 * GIB));
        let host = detect_host(root.path(), Some(&[0, 1, 2, 3, 4, 5, 6, 7])).unwrap();
        assert_eq!(host.cgroup, CgroupVersion::V2);
        assert_eq!(host.cores, vec![2, 3, 4, 5]);
        assert_eq!(host.cpu_quota, Some(Decimal::new(25, 1)));
        assert_eq!(host.cpu(), Decimal::new(25, 1));
        assert_eq!(host.mem_limit, Some(4 * GIB));
        assert_eq!(host.mem(), 4 * GIB);

        let cap = NodeCapacity::from_host(&host, &HostReserve::default()).unwrap();
        assert_eq!(cap.cpu, Decimal::new(15, 1));
        assert_eq!(cap.cores, vec![3, 4, 5], "the lowest core is left to the host");
        assert_eq!(cap.mem, 3 * GIB);
        let slots = cap.to_slots();
        assert_eq!(slots.get("cpu"), Decimal::new(15, 1));
        assert_eq!(slots.get("mem"), Decimal::from(3 * GIB));
    }

    #[test]
    fn cgroup_v2_namespaced_root_and_unlimited() {
        let root = FakeRoot::new();
        root.write("sys/fs/cgroup/cgroup.controllers", "cpu memory\n");
        // the path from /proc/self/cgroup does not exist under the mount: use the mount
        root.write("proc/self/cgroup", "0::/docker/abcdef\n");
        root.write("sys/fs/cgroup/cpu.max", "max 100000\n");
        root.write("sys/fs/cgroup/memory.max", "max\n");
        let host = detect_host(root.path(), Some(&[0, 1, 2, 3])).unwrap();
        assert_eq!(host.cores.len(), 4);
        assert_eq!(host.cpu_quota, None);
        assert_eq!(host.mem_limit, None);
        assert_eq!(host.mem(), MEM_TOTAL);
    }

    #[test]
    fn cgroup_v1_cpuset_cfs_and_memory_limit() {
        let root = FakeRoot::new();
        root.write("proc/self/cgroup", "12:memory:/agent\n4:cpu,cpuacct:/agent\n3:cpuset:/agent\n1:name=systemd:/x\n");
        root.write("sys/fs/cgroup/cpuset/cpuset.cpus", "0-7\n");
        root.write("sys/fs/cgroup/cpuset/agent/cpuset.cpus", "0-1,6\n");
        root.write("sys/fs/cgroup/cpu,cpuacct/agent/cpu.cfs_quota_us", "-1\n");
        root.write("sys/fs/cgroup/cpu,cpuacct/agent/cpu.cfs_period_us", "100000\n");
        root.write("sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us", "150000\n");
        root.write("sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us", "100000\n");
        root.write("sys/fs/cgroup/memory/memory.limit_in_bytes", "9223372036854771712\n");
        root.write("sys/fs/cgroup/memory/agent/memory.limit_in_bytes", &format!("{}\n", 2 * GIB));
        let host = detect_host(root.path(), None).unwrap();
        assert_eq!(host.cgroup, CgroupVersion::V1);
        assert_eq!(host.cores, vec![0, 1, 6]);
        assert_eq!(host.cpu_quota, Some(Decimal::new(15, 1)));
        assert_eq!(host.mem(), 2 * GIB);

        let cap = NodeCapacity::from_host(&host, &HostReserve::none()).unwrap();
        assert_eq!((cap.cpu, cap.mem, cap.cores.clone()), (Decimal::new(15, 1), 2 * GIB, vec![0, 1, 6]));
    }

    #[test]
    fn cgroup_v1_unlimited_memory_falls_back_to_memtotal() {
        let root = FakeRoot::new();
        root.write("proc/self/cgroup", "12:memory:/\n");
        root.write("sys/fs/cgroup/memory/memory.limit_in_bytes", "9223372036854771712\n");
        let host = detect_host(root.path(), None).unwrap();
        assert_eq!(host.cgroup, CgroupVersion::V1);
        assert_eq!(host.mem_limit, None);
        assert_eq!(host.mem(), MEM_TOTAL);
        assert_eq!(host.cores.len(), 8);
    }

    #[test]
    fn reserve_arithmetic() {
        let host = HostResources {
            cores: vec![0, 1, 2, 3],
            cpu_quota: None,
            mem_total: 8 * GIB,
            mem_limit: None,
            cgroup: CgroupVersion::None,
        };
        let cap = NodeCapacity::from_host(&host, &HostReserve::default()).unwrap();
        assert_eq!((cap.cpu, cap.mem, cap.cores), (Decimal::from(3), 7 * GIB, vec![1, 2, 3]));

        let half = HostReserve { cpu: Decimal::new(5, 1), mem: BinarySize::new(GIB / 2) };
        let cap = NodeCapacity::from_host(&host, &half).unwrap();
        assert_eq!(cap.cpu, Decimal::new(35, 1));
        assert_eq!(cap.cores, vec![0, 1, 2, 3], "a fractional reserve keeps every core");
        assert_eq!(cap.mem, 8 * GIB - GIB / 2);

        let all_cpu = HostReserve { cpu: Decimal::from(4), mem: BinarySize::new(GIB) };
        let err = NodeCapacity::from_host(&host, &all_cpu).unwrap_err().to_string();
        assert!(err.contains("reserved.cpu") && err.contains("leaves nothing"), "{err}");

        let all_mem = HostReserve { cpu: Decimal::ONE, mem: BinarySize::new(9 * GIB) };
        let err = NodeCapacity::from_host(&host, &all_mem).unwrap_err().to_string();
        assert!(err.contains("reserved.mem") && err.contains("no memory"), "{err}");

        let negative = HostReserve { cpu: Decimal::from(-1), mem: BinarySize::new(0) };
        assert!(NodeCapacity::from_host(&host, &negative).is_err());
    }

    #[test]
    fn discover_from_applies_the_reserve() {
        let root = FakeRoot::new();
        let cap = NodeCapacity::discover_from(root.path(), Some(&[0, 1]), &HostReserve::default()).unwrap();
        assert_eq!((cap.cpu, cap.cores.clone()), (Decimal::ONE, vec![1]));
        assert_eq!(cap.mem, MEM_TOTAL - GIB);
        // one core and the default reserve: nothing left
        let err = NodeCapacity::discover_from(root.path(), Some(&[0]), &HostReserve::default()).unwrap_err();
        assert!(err.to_string().contains("1 usable CPUs"), "{err}");
    }

    #[test]
    fn broken_files_are_errors_not_panics() {
        let root = FakeRoot::new();
        root.write("proc/meminfo", "MemFree: 1 kB\n");
        assert!(detect_host(root.path(), None).unwrap_err().to_string().contains("MemTotal"));

        let root = FakeRoot::new();
        root.write("sys/fs/cgroup/cgroup.controllers", "\n");
        root.write("sys/fs/cgroup/cpu.max", "lots 100000\n");
        assert!(detect_host(root.path(), None).unwrap_err().to_string().contains("cpu.max"));

        let root = FakeRoot::new();
        root.write("sys/fs/cgroup/cgroup.controllers", "\n");
        root.write("sys/fs/cgroup/cpuset.cpus.effective", "9-10\n");
        let err = detect_host(root.path(), None).unwrap_err().to_string();
        assert!(err.contains("no usable CPU core"), "{err}");

        let empty = tempfile::tempdir().unwrap();
        let err = detect_host(empty.path(), Some(&[0])).unwrap_err();
        assert!(matches!(err, Error::Io { .. }), "{err}");
    }

    #[test]
    fn the_real_host_is_detected() {
        let cap = NodeCapacity::discover(&HostReserve::none()).unwrap();
        assert!(!cap.cores.is_empty());
        assert!(cap.cpu > Decimal::ZERO && cap.mem > 0);
    }

    #[test]
    fn reserve_deserialises_with_defaults() {
        let r: HostReserve = serde_json::from_str(r#"{"mem": "2g"}"#).unwrap();
        assert_eq!(r, HostReserve { cpu: Decimal::ONE, mem: BinarySize::new(2 * GIB) });
        assert!(serde_json::from_str::<HostReserve>(r#"{"disk": "8g"}"#).is_err());
    }
}
