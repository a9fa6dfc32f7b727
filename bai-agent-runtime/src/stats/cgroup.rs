//! The cgroup side of container statistics: which hierarchy the node uses, where a container's
//! cgroup directories are, and how to read its counters from them.

use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};

use bai_core::Decimal;
use serde::{Deserialize, Serialize};

use super::procfs::parse_u64;
use super::sample::ContainerSample;
use crate::error::{Error, Result};

/// The cgroup hierarchy a node uses for containers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CgroupVersion {
    /// One hierarchy per controller (`/sys/fs/cgroup/memory/…`, `/sys/fs/cgroup/cpuacct/…`).
    /// Hybrid nodes (v1 controllers plus an empty v2 tree at `/sys/fs/cgroup/unified`) are v1:
    /// that is where the engine puts containers.
    V1,
    /// The unified hierarchy (`/sys/fs/cgroup/cgroup.controllers` exists).
    V2,
}

impl CgroupVersion {
    /// Detects the version from a cgroup mount point (normally `/sys/fs/cgroup`): v2 when it
    /// holds `cgroup.controllers`, v1 when it holds a `memory` hierarchy.
    pub fn detect(cgroup_root: &Path) -> Result<Self> {
        if cgroup_root.join("cgroup.controllers").is_file() {
            Ok(Self::V2)
        } else if cgroup_root.join("memory").is_dir() {
            Ok(Self::V1)
        } else {
            Err(Error::invalid(
                "cgroup root",
                format!(
                    "{} holds neither cgroup.controllers (cgroup v2) nor a memory hierarchy (cgroup v1)",
                    cgroup_root.display()
                ),
            ))
        }
    }
}

/// Where one container's cgroup files are. With cgroup v2 every field is the same directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerCgroup {
    /// The hierarchy these paths belong to.
    pub version: CgroupVersion,
    /// The `memory` controller's directory.
    pub memory: PathBuf,
    /// The `cpuacct` controller's directory (CPU time).
    pub cpuacct: PathBuf,
    /// The `cpu` controller's directory (CPU quota).
    pub cpu: PathBuf,
    /// The `cpuset` controller's directory.
    pub cpuset: PathBuf,
    /// The `blkio` controller's directory (block I/O).
    pub blkio: PathBuf,
}

/// Checks a container id before it becomes a path component.
pub(crate) fn validate_container_id(id: &str) -> Result<()> {
    if id.is_empty()
        || id.len() > 128
        || id.starts_with('.')
        || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
    {
        return Err(Error::invalid(
            "container id",
            format!("{id:?}: expected 1 to 128 ASCII letters, digits, '_', '-' or '.', not starting with '.'"),
        ));
    }
    Ok(())
}

/// A cgroup path from `/proc/<pid>/cgroup` as a relative path, refusing `..`.
fn relative_cgroup_path(path: &str) -> Option<PathBuf> {
    let rel = Path::new(path.strip_prefix('/')?);
    rel.components().all(|c| matches!(c, Component::Normal(_))).then(|| rel.to_path_buf())
}

impl ContainerCgroup {
    /// The cgroup directories of one container.
    ///
    /// With a `pid`, they come from `<proc_root>/<pid>/cgroup`, which is right for any cgroup
    /// driver and parent. Without one, or if that file names a missing directory, the root
    /// cgroup or a path with `..` (another cgroup namespace), the engine's
    /// naming is tried: `docker/<id>` (cgroupfs driver) and `system.slice/docker-<id>.scope`
    /// (systemd driver), under each controller for v1 or under the root for v2.
    pub fn resolve(
        cgroup_root: &Path,
        proc_root: &Path,
        version: CgroupVersion,
        id: &str,
        pid: Option<u32>,
    ) -> Result<Self> {
        validate_container_id(id)?;
        if let Some(pid) = pid {
            if let Some(found) = Self::from_proc(cgroup_root, proc_root, version, pid) {
                return Ok(found);
            }
        }
        let candidates = match version {
            CgroupVersion::V1 => [format!("docker/{id}"), format!("system.slice/docker-{id}.scope")],
            CgroupVersion::V2 => [format!("system.slice/docker-{id}.scope"), format!("docker/{id}")],
        };
        for rel in candidates {
            let found = Self::uniform(cgroup_root, version, |_| Some(PathBuf::from(&rel)));
            if found.memory.is_dir() {
                return Ok(found);
            }
        }
        Err(Error::NotFound { kind: "container cgroup", id: id.to_owned() })
    }

    fn from_proc(cgroup_root: &Path, proc_root: &Path, version: CgroupVersion, pid: u32) -> Option<Self> {
        let text = std::fs::read_to_string(proc_root.join(pid.to_string()).join("cgroup")).ok()?;
        // Lines are `hierarchy-id:controller,list:/path`; v2's is `0::/path`.
        let lines: Vec<(&str, &str)> = text
            .lines()
            .filter_map(|l| {
                let (_, rest) = l.split_once(':')?;
                rest.split_once(':')
            })
            .collect();
        let path_of = |controller: &str| -> Option<PathBuf> {
            let (_, path) = lines.iter().find(|(controllers, _)| match version {
                CgroupVersion::V1 => controllers.split(',').any(|c| c == controller),
                CgroupVersion::V2 => controllers.is_empty(),
            })?;
            relative_cgroup_path(path)
        };
        let memory_rel = path_of("memory")?;
        if memory_rel.as_os_str().is_empty() {
            // A container is never in the root cgroup; "/" means the PID is in another cgroup
            // namespace's root, and reading the host's totals would be wrong.
            return None;
        }
        let found = Self::uniform(cgroup_root, version, |c| path_of(c).or_else(|| Some(memory_rel.clone())));
        found.memory.is_dir().then_some(found)
    }

    /// Builds the paths from a per-controller relative path.
    fn uniform(cgroup_root: &Path, version: CgroupVersion, rel: impl Fn(&str) -> Option<PathBuf>) -> Self {
        let dir = |controller: &str| -> PathBuf {
            let rel = rel(controller).unwrap_or_default();
            match version {
                CgroupVersion::V1 => cgroup_root.join(controller).join(rel),
                CgroupVersion::V2 => cgroup_root.join(rel),
            }
        };
        Self {
            version,
            memory: dir("memory"),
            cpuacct: dir("cpuacct"),
            cpu: dir("cpu"),
            cpuset: dir("cpuset"),
            blkio: dir("blkio"),
        }
    }

    /// Reads the container's counters (network counters are not in the cgroup; they are left
    /// `None`). `buf` is reused between files to avoid allocations.
    pub(crate) fn read(&self, buf: &mut String) -> Result<ContainerSample> {
        match self.version {
            CgroupVersion::V1 => self.read_v1(buf),
            CgroupVersion::V2 => self.read_v2(buf),
        }
    }

    fn read_v1(&self, buf: &mut String) -> Result<ContainerSample> {
        let cpu_used_ns = read_u64(&self.cpuacct.join("cpuacct.usage"), buf)?;
        let usage = read_u64(&self.memory.join("memory.usage_in_bytes"), buf)?;
        let limit = read_u64(&self.memory.join("memory.limit_in_bytes"), buf)?;
        let inactive = read_key_value(&self.memory.join("memory.stat"), "total_inactive_file", buf)?;
        let (io_read_bytes, io_write_bytes) =
            match read_optional(&self.blkio.join("blkio.throttle.io_service_bytes"), buf)? {
                // `8:0 Read 13918208`, `8:0 Write 0`, …, then `Total 13918208`.
                true => sum_blkio_v1(&self.blkio.join("blkio.throttle.io_service_bytes"), buf)?,
                false => (0, 0),
            };
        let cpuset = read_cpuset(&self.cpuset.join("cpuset.cpus"), buf)?;
        let quota = match read_optional(&self.cpu.join("cpu.cfs_quota_us"), buf)? {
            true => {
                let quota = buf.trim().to_owned();
                let period = read_optional(&self.cpu.join("cpu.cfs_period_us"), buf)?.then(|| buf.trim().to_owned());
                quota_cpus(&self.cpu.join("cpu.cfs_quota_us"), &quota, period.as_deref())?
            }
            false => None,
        };
        Ok(ContainerSample {
            cpu_used_ns,
            mem_used_bytes: usage.saturating_sub(inactive.unwrap_or(0)),
            // The kernel prints "unlimited" as the largest page-aligned i64.
            mem_limit_bytes: (limit < 1 << 62).then_some(limit),
            cpus: min_cpus(cpuset, quota),
            io_read_bytes,
            io_write_bytes,
            net_rx_bytes: None,
            net_tx_bytes: None,
        })
    }

    fn read_v2(&self, buf: &mut String) -> Result<ContainerSample> {
        let cpu_stat = self.cpuacct.join("cpu.stat");
        let usage_usec = read_key_value(&cpu_stat, "usage_usec", buf)?
            .ok_or_else(|| Error::invalid(cpu_stat.display().to_string(), "expected a usage_usec line"))?;
        let current = read_u64(&self.memory.join("memory.current"), buf)?;
        let max_path = self.memory.join("memory.max");
        read_file(&max_path, buf)?;
        let limit = match buf.trim() {
            "max" => None,
            s => Some(parse_u64(&max_path, "memory limit", s)?),
        };
        let inactive = read_key_value(&self.memory.join("memory.stat"), "inactive_file", buf)?;
        let (io_read_bytes, io_write_bytes) = match read_optional(&self.blkio.join("io.stat"), buf)? {
            // `8:0 rbytes=3387392 wbytes=176128 rios=103 wios=32 dbytes=0 dios=0`
            true => sum_io_stat_v2(&self.blkio.join("io.stat"), buf)?,
            false => (0, 0),
        };
        let cpuset = read_cpuset(&self.cpuset.join("cpuset.cpus.effective"), buf)?;
        let cpu_max = self.cpu.join("cpu.max");
        let quota = match read_optional(&cpu_max, buf)? {
            true => {
                let mut parts = buf.split_whitespace();
                let (q, p) = (parts.next().unwrap_or("max").to_owned(), parts.next().map(str::to_owned));
                quota_cpus(&cpu_max, &q, p.as_deref())?
            }
            false => None,
        };
        Ok(ContainerSample {
            cpu_used_ns: usage_usec.saturating_mul(1000),
            mem_used_bytes: current.saturating_sub(inactive.unwrap_or(0)),
            mem_limit_bytes: limit,
            cpus: min_cpus(cpuset, quota),
            io_read_bytes,
            io_write_bytes,
            net_rx_bytes: None,
            net_tx_bytes: None,
        })
    }
}

/// Reads a whole file into `buf` (cleared first).
pub(crate) fn read_file(path: &Path, buf: &mut String) -> Result<()> {
    buf.clear();
    std::fs::File::open(path).and_then(|mut f| f.read_to_string(buf)).map(drop).map_err(|e| Error::io("read", path, e))
}

/// Like [`read_file`], but a missing file is `Ok(false)`.
fn read_optional(path: &Path, buf: &mut String) -> Result<bool> {
    match read_file(path, buf) {
        Ok(()) => Ok(true),
        Err(Error::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

fn read_u64(path: &Path, buf: &mut String) -> Result<u64> {
    read_file(path, buf)?;
    parse_u64(path, "contents", buf)
}

/// The value of `key` in a `key value` file (`memory.stat`, `cpu.stat`).
fn read_key_value(path: &Path, key: &str, buf: &mut String) -> Result<Option<u64>> {
    read_file(path, buf)?;
    buf.lines()
        .find_map(|l| l.split_once(' ').filter(|(k, _)| *k == key))
        .map(|(k, v)| parse_u64(path, k, v))
        .transpose()
}

fn sum_blkio_v1(path: &Path, buf: &str) -> Result<(u64, u64)> {
    let (mut read, mut write) = (0u64, 0u64);
    for line in buf.lines() {
        let mut f = line.split_whitespace();
        let (Some(_dev), Some(op), Some(n)) = (f.next(), f.next(), f.next()) else { continue };
        match op {
            "Read" => read = read.saturating_add(parse_u64(path, "read bytes", n)?),
            "Write" => write = write.saturating_add(parse_u64(path, "written bytes", n)?),
            _ => {}
        }
    }
    Ok((read, write))
}

fn sum_io_stat_v2(path: &Path, buf: &str) -> Result<(u64, u64)> {
    let (mut read, mut write) = (0u64, 0u64);
    for field in buf.split_whitespace() {
        match field.split_once('=') {
            Some(("rbytes", n)) => read = read.saturating_add(parse_u64(path, "rbytes", n)?),
            Some(("wbytes", n)) => write = write.saturating_add(parse_u64(path, "wbytes", n)?),
            _ => {}
        }
    }
    Ok((read, write))
}

/// The number of CPUs in a cpuset file (`0-3,8`); `None` when the file is missing or empty.
fn read_cpuset(path: &Path, buf: &mut String) -> Result<Option<u32>> {
    if !read_optional(path, buf)? {
        return Ok(None);
    }
    count_cpuset(buf.trim()).map_err(|reason| Error::invalid(path.display().to_string(), reason))
}

/// Counts the CPUs of a cpuset list such as `0-3,8,10-11`.
pub(crate) fn count_cpuset(list: &str) -> Result<Option<u32>, String> {
    if list.is_empty() {
        return Ok(None);
    }
    let mut count = 0u32;
    for part in list.split(',') {
        let bad = || format!("{list:?}: expected a CPU list such as '0-3,8'");
        let (lo, hi) = match part.split_once('-') {
            Some((lo, hi)) => {
                (lo.trim().parse::<u32>().map_err(|_| bad())?, hi.trim().parse::<u32>().map_err(|_| bad())?)
            }
            None => {
                let n = part.trim().parse::<u32>().map_err(|_| bad())?;
                (n, n)
            }
        };
        if hi < lo {
            return Err(bad());
        }
        count = count.saturating_add(hi - lo + 1);
    }
    Ok(Some(count))
}

/// CPUs allowed by a CFS quota: `quota / period`, or `None` for no quota (`-1`, `max`).
fn quota_cpus(path: &Path, quota: &str, period: Option<&str>) -> Result<Option<Decimal>> {
    if quota == "max" || quota.starts_with('-') {
        return Ok(None);
    }
    let quota = parse_u64(path, "CPU quota", quota)?;
    let period = match period {
        Some(p) => parse_u64(path, "CPU period", p)?,
        None => return Ok(None),
    };
    if period == 0 {
        return Ok(None);
    }
    Ok(Decimal::from(quota).checked_div(Decimal::from(period)))
}

fn min_cpus(cpuset: Option<u32>, quota: Option<Decimal>) -> Option<Decimal> {
    match (cpuset.map(Decimal::from), quota) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpusets_are_counted() {
        assert_eq!(count_cpuset("0-3,8,10-11"), Ok(Some(7)));
        assert_eq!(count_cpuset("5"), Ok(Some(1)));
        assert_eq!(count_cpuset(""), Ok(None));
        assert!(count_cpuset("3-1").is_err());
        assert!(count_cpuset("a").is_err());
        assert!(count_cpuset("0-").is_err());
    }

    #[test]
    fn quotas_become_cpu_counts() {
        let p = Path::new("cpu.max");
        assert_eq!(quota_cpus(p, "max", Some("100000")).unwrap(), None);
        assert_eq!(quota_cpus(p, "-1", Some("100000")).unwrap(), None);
        assert_eq!(quota_cpus(p, "50000", Some("100000")).unwrap(), Some(Decimal::new(5, 1)));
        assert_eq!(quota_cpus(p, "50000", Some("0")).unwrap(), None);
        assert!(quota_cpus(p, "x", Some("1")).is_err());
        assert_eq!(min_cpus(Some(4), Some(Decimal::new(15, 1))), Some(Decimal::new(15, 1)));
        assert_eq!(min_cpus(Some(2), None), Some(Decimal::from(2)));
        assert_eq!(min_cpus(None, None), None);
    }

    #[test]
    fn container_ids_cannot_traverse() {
        assert!(validate_container_id("0123abcdef").is_ok());
        for bad in ["", "..", "../x", "a/b", "a\0b", ".hidden"] {
            assert!(validate_container_id(bad).is_err(), "{bad:?}");
        }
        assert_eq!(relative_cgroup_path("/docker/abc"), Some(PathBuf::from("docker/abc")));
        assert_eq!(relative_cgroup_path("/"), Some(PathBuf::new()));
        assert_eq!(relative_cgroup_path("/docker/../x"), None);
        assert_eq!(relative_cgroup_path("docker"), None);
    }

    #[test]
    fn detect_needs_a_cgroup_tree() {
        let dir = tempfile::tempdir().unwrap();
        assert!(CgroupVersion::detect(dir.path()).is_err());
        std::fs::create_dir(dir.path().join("memory")).unwrap();
        assert_eq!(CgroupVersion::detect(dir.path()).unwrap(), CgroupVersion::V1);
        std::fs::write(dir.path().join("cgroup.controllers"), "cpu memory io\n").unwrap();
        assert_eq!(CgroupVersion::detect(dir.path()).unwrap(), CgroupVersion::V2);
    }
}
