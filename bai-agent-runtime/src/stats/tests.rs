//! The collector against fake cgroup v1 and v2 trees in a temporary directory.

use std::path::Path;
use std::time::{Duration, Instant};

use bai_core::Decimal;

use super::*;

fn write(path: impl AsRef<Path>, text: &str) {
    let path = path.as_ref();
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn net_dev(rx: u64, tx: u64) -> String {
    format!(
        "Inter-| Receive | Transmit\n face |bytes packets|bytes packets\n    lo: 777 1 0 0 0 0 0 0 777 1 0 0 0 0 0 0\n  eth0: {rx} 1 0 0 0 0 0 0 {tx} 1 0 0 0 0 0 0\n"
    )
}

fn proc_stat(root: &Path, cpus: usize) {
    let mut text = String::from("cpu 1 0 1 10 0 0 0 0\n");
    for i in 0..cpus {
        text.push_str(&format!("cpu{i} 1 0 1 10 0 0 0 0\n"));
    }
    write(root.join("proc/stat"), &text);
}

/// A v1 container under `docker/<id>` (cgroupfs driver).
fn v1_container(root: &Path, id: &str, cpu_ns: u64, mem: u64, io: (u64, u64)) {
    let cg = root.join("sys/fs/cgroup");
    write(cg.join("cpuacct/docker").join(id).join("cpuacct.usage"), &format!("{cpu_ns}\n"));
    let memdir = cg.join("memory/docker").join(id);
    write(memdir.join("memory.usage_in_bytes"), &format!("{mem}\n"));
    write(memdir.join("memory.limit_in_bytes"), "1073741824\n");
    write(memdir.join("memory.stat"), "cache 100\nrss 200\ninactive_file 5\ntotal_inactive_file 1048576\n");
    write(
        cg.join("blkio/docker").join(id).join("blkio.throttle.io_service_bytes"),
        &format!(
            "8:0 Read {}\n8:0 Write {}\n8:0 Sync 0\n8:0 Total 1\n8:16 Read 1\n8:16 Write 2\nTotal 3\n",
            io.0, io.1
        ),
    );
    write(cg.join("cpuset/docker").join(id).join("cpuset.cpus"), "0-3\n");
    write(cg.join("cpu/docker").join(id).join("cpu.cfs_quota_us"), "-1\n");
    write(cg.join("cpu/docker").join(id).join("cpu.cfs_period_us"), "100000\n");
}

#[test]
fn v1_tree_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    proc_stat(root, 8);
    std::fs::create_dir_all(root.join("sys/fs/cgroup/memory")).unwrap();
    // Hybrid layout, as on this project's CI machine: an empty v2 tree beside the v1 ones.
    write(root.join("sys/fs/cgroup/unified/cgroup.controllers"), "");
    let id = "a".repeat(64);
    v1_container(root, &id, 2_000_000_000, 101 << 20, (4096, 100));
    write(root.join("proc/4242/net/dev"), &net_dev(1000, 50));

    let mut c = StatCollector::new(root).unwrap();
    assert_eq!(c.version(), CgroupVersion::V1);
    assert_eq!(c.host_cpus(), Decimal::from(8));
    let targets = [ContainerTarget::new(id.clone(), Some(4242))];
    let t0 = Instant::now();
    let sweep = c.collect(&targets, t0);
    assert!(sweep.errors.is_empty(), "{:?}", sweep.errors);
    let m = sweep.metrics[&id];
    assert_eq!(m.cpu_used.current_str(), "2000");
    assert_eq!(m.mem.current, Decimal::from(100u64 << 20), "inactive file cache excluded");
    assert_eq!(m.mem.capacity_str().as_deref(), Some("1073741824"));
    assert_eq!(m.io_read.current_str(), "4097");
    assert_eq!(m.io_write.current_str(), "102");
    assert_eq!(m.cpu_util.capacity, Some(Decimal::from(400)), "cpuset 0-3, no quota");

    // Five seconds later: 2.5 s more CPU, 5000 more bytes received.
    v1_container(root, &id, 4_500_000_000, 101 << 20, (4096, 100));
    write(root.join("proc/4242/net/dev"), &net_dev(6000, 50));
    let m = c.collect(&targets, t0 + Duration::from_secs(5)).metrics[&id];
    assert_eq!(
        serde_json::to_value(m.cpu_util).unwrap(),
        serde_json::json!({"current": "50", "capacity": "400", "pct": "12.5"})
    );
    assert_eq!(m.net_rx.current_str(), "1000");
    assert_eq!(m.net_tx.current_str(), "0");
    assert_eq!(m.net_tx.pct_str(), "0.00");
}

#[test]
fn v1_quota_and_unlimited_memory() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    proc_stat(root, 2);
    let id = "b".repeat(64);
    v1_container(root, &id, 0, 10, (0, 0));
    let cg = root.join("sys/fs/cgroup");
    write(cg.join("cpu/docker").join(&id).join("cpu.cfs_quota_us"), "150000\n");
    write(cg.join("memory/docker").join(&id).join("memory.limit_in_bytes"), "9223372036854771712\n");
    std::fs::remove_file(cg.join("blkio/docker").join(&id).join("blkio.throttle.io_service_bytes")).unwrap();
    let mut c = StatCollector::new(root).unwrap();
    let s = c.sample(&ContainerTarget::new(id.clone(), None)).unwrap();
    assert_eq!(s.cpus, Some(Decimal::new(15, 1)));
    assert_eq!(s.mem_limit_bytes, None);
    assert_eq!(s.mem_used_bytes, 0, "saturates rather than going negative");
    assert_eq!((s.io_read_bytes, s.net_rx_bytes), (0, None), "no blkio file, no pid");
}

/// A v2 container under `system.slice/docker-<id>.scope` (systemd driver).
fn v2_container(root: &Path, id: &str, usage_usec: u64) {
    let dir = root.join("sys/fs/cgroup/system.slice").join(format!("docker-{id}.scope"));
    write(dir.join("cpu.stat"), &format!("usage_usec {usage_usec}\nuser_usec 1\nsystem_usec 2\n"));
    write(dir.join("memory.current"), "3145728\n");
    write(dir.join("memory.max"), "max\n");
    write(dir.join("memory.stat"), "anon 1\nfile 2\ninactive_file 1048576\nactive_file 4\n");
    write(dir.join("io.stat"), "8:16 rbytes=1459200 wbytes=314773504 rios=192 wios=353 dbytes=0 dios=0\n8:0 rbytes=100 wbytes=4 rios=1 wios=1 dbytes=0 dios=0\n");
    write(dir.join("cpuset.cpus.effective"), "0-7\n");
    write(dir.join("cpu.max"), "50000 100000\n");
}

#[test]
fn v2_tree_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    proc_stat(root, 8);
    write(root.join("sys/fs/cgroup/cgroup.controllers"), "cpuset cpu io memory pids\n");
    let id = "c".repeat(64);
    v2_container(root, &id, 1_000_000);
    let mut c = StatCollector::new(root).unwrap();
    assert_eq!(c.version(), CgroupVersion::V2);
    let target = ContainerTarget::new(id.clone(), None);
    let t0 = Instant::now();
    let m = c.collect(std::slice::from_ref(&target), t0).metrics[&id];
    assert_eq!(m.cpu_used.current_str(), "1000");
    assert_eq!(m.mem.current, Decimal::from(2u64 << 20));
    assert_eq!(m.mem.capacity, None, "memory.max is 'max'");
    assert_eq!(m.mem.pct_str(), "0.00");
    assert_eq!(m.io_read.current_str(), "1459300");
    assert_eq!(m.io_write.current_str(), "314773508");
    assert_eq!(m.cpu_util.capacity, Some(Decimal::from(50)), "half a CPU by quota");

    v2_container(root, &id, 1_000_000 + 2_000_000);
    let m = c.collect(&[target], t0 + Duration::from_secs(4)).metrics[&id];
    // 2 s of CPU in 4 s: 50 % of one CPU, the whole half-CPU quota.
    assert_eq!(m.cpu_util.current_str(), "50");
    assert_eq!(m.cpu_util.pct_str(), "100");
}

#[test]
fn cgroups_are_found_through_the_pid() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    proc_stat(root, 2);
    write(root.join("sys/fs/cgroup/cgroup.controllers"), "cpu memory\n");
    // Some other runtime's layout: only /proc/<pid>/cgroup knows it.
    let cg = root.join("sys/fs/cgroup/kubepods/pod1/ctr");
    write(cg.join("cpu.stat"), "usage_usec 5\n");
    write(cg.join("memory.current"), "7\n");
    write(cg.join("memory.max"), "100\n");
    write(cg.join("memory.stat"), "inactive_file 0\n");
    write(root.join("proc/99/cgroup"), "0::/kubepods/pod1/ctr\n");
    write(root.join("proc/99/net/dev"), &net_dev(1, 2));
    let mut c = StatCollector::new(root).unwrap();
    let s = c.sample(&ContainerTarget::new("ctr", Some(99))).unwrap();
    assert_eq!((s.cpu_used_ns, s.mem_used_bytes, s.mem_limit_bytes), (5000, 7, Some(100)));
    assert_eq!((s.net_rx_bytes, s.net_tx_bytes), (Some(1), Some(2)));
    assert_eq!(s.cpus, None);

    // A PID in the root cgroup (another cgroup namespace) is not taken for a container.
    write(root.join("sys/fs/cgroup/memory.current"), "1\n");
    write(root.join("proc/97/cgroup"), "0::/\n");
    assert!(c.sample(&ContainerTarget::new("rooted", Some(97))).is_err());

    // A /proc/<pid>/cgroup that tries to climb out is ignored.
    write(root.join("proc/98/cgroup"), "0::/../../etc\n");
    let err = c.sample(&ContainerTarget::new("other", Some(98))).unwrap_err();
    assert!(matches!(err, crate::Error::NotFound { kind: "container cgroup", .. }), "{err}");
}

#[test]
fn vanished_containers_are_errors_and_are_forgotten() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    proc_stat(root, 2);
    std::fs::create_dir_all(root.join("sys/fs/cgroup/memory")).unwrap();
    let (a, b) = ("a1".to_owned(), "b2".to_owned());
    v1_container(root, &a, 1, 1, (0, 0));
    v1_container(root, &b, 1, 1, (0, 0));
    let mut c = StatCollector::new(root).unwrap();
    let both = [ContainerTarget::new(a.clone(), None), ContainerTarget::new(b.clone(), None)];
    assert_eq!(c.collect(&both, Instant::now()).metrics.len(), 2);

    std::fs::remove_file(root.join("sys/fs/cgroup/cpuacct/docker").join(&b).join("cpuacct.usage")).unwrap();
    let sweep = c.collect(&both, Instant::now());
    assert_eq!(sweep.metrics.len(), 1);
    assert!(sweep.errors[&b].to_string().contains("cpuacct.usage"), "{}", sweep.errors[&b]);

    // Bad ids never become paths.
    let sweep = c.collect(&[ContainerTarget::new("../../etc", None)], Instant::now());
    assert!(matches!(sweep.errors["../../etc"], crate::Error::Invalid { .. }));

    // Garbage in a counter file is an error naming the file, not a panic.
    write(root.join("sys/fs/cgroup/memory/docker").join(&a).join("memory.usage_in_bytes"), "lots\n");
    let sweep = c.collect(&both[..1], Instant::now());
    let err = sweep.errors[&a].to_string();
    assert!(err.contains("memory.usage_in_bytes") && err.contains("\"lots\""), "{err}");
}

/// The real hierarchy of the machine running the tests, through this process's own cgroup:
/// checks the detection and the paths on a real kernel, without needing a container.
#[test]
fn this_machine_reads_its_own_cgroup() {
    if !Path::new("/sys/fs/cgroup").is_dir() || !Path::new("/proc/self/cgroup").is_file() {
        eprintln!("skipped: no /sys/fs/cgroup here");
        return;
    }
    let mut c = match StatCollector::new("/") {
        Ok(c) => c,
        Err(e) => {
            eprintln!("skipped: {e}");
            return;
        }
    };
    let pid = std::process::id();
    match c.sample(&ContainerTarget::new("self", Some(pid))) {
        Ok(s) => {
            assert!(s.mem_used_bytes > 0 || s.cpu_used_ns > 0, "{s:?}");
            assert!(s.net_rx_bytes.is_some());
        }
        // Some sandboxes hide controllers; say so rather than fail.
        Err(e) => eprintln!("could not read this process's cgroup ({:?}): {e}", c.version()),
    }
}
