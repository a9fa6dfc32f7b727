//! [`ProcessRuntime`]: the embedded fallback for a machine without Docker. A "container" is a
//! local process tree started in its own directory.
//!
//! **Isolation is much weaker than Docker's**, and the runtime says so in a warning when it is
//! created: the processes run as the agent's user on the host's filesystem, network and PID
//! space. What it does provide:
//! - each container has its own directory `<root>/<id>/` holding `work/` (the working
//!   directory, standing in for `/home/work`), its log, its spec and its exit status, so the
//!   runtime can list and inspect containers after a restart;
//! - the main process and every exec run in their own process group, and stop/destroy signal
//!   the whole group;
//! - when the host has a writable cgroup v1 memory controller (`/sys/fs/cgroup/memory`), the
//!   container gets its own cgroup `bai/<id>` with the memory limit, so an over-allocation is
//!   killed and reported as out-of-memory as with Docker; elsewhere memory is not limited (and
//!   the warning says so);
//! - bind mounts, ports, devices, CPU sets and images are not supported: a spec that asks for
//!   them is refused with a clear error, except `image`, which must be `host` (the host's own
//!   programs).
//!
//! Paths in execs and copies that start with `/home/work` are mapped to the container's `work/`
//! directory; nothing outside it can be copied in or out.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncReadExt;
use tokio::process::{Child, Command};

use super::{
    ContainerInfo, ContainerRuntime, ContainerSpec, ContainerState, ContainerStats, ExecSession, ExecSpec, ImageInfo,
    Output, PullProgress, Termination,
};
use crate::error::{Error, Result};

/// The only image the process runtime runs: the host's own programs.
pub const HOST_IMAGE: &str = "host";

const WORK: &str = "/home/work";

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Record {
    id: String,
    spec: ContainerSpec,
    pid: Option<u32>,
    /// `Some((exit code, oom killed))` once it ended.
    ended: Option<(i64, bool)>,
}

/// Runs containers as local process trees. See the module documentation for what it does and
/// does not isolate.
#[derive(Debug, Clone)]
pub struct ProcessRuntime {
    root: PathBuf,
    memory_cgroup: Option<PathBuf>,
    execs: Arc<Mutex<BTreeMap<String, ExecState>>>,
    /// Containers whose main process this instance started and will reap.
    reaping: Arc<Mutex<std::collections::BTreeSet<String>>>,
}

#[derive(Debug, Default)]
struct ExecState {
    exit: Option<i64>,
}

fn io<'a>(operation: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> Error + 'a {
    move |e| Error::io(operation, path, e)
}

fn random_id() -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{:016x}{:08x}{:08x}", nanos as u64, std::process::id(), n)
}

impl ProcessRuntime {
    /// A runtime keeping its containers under `root` (created if needed).
    pub fn new(root: impl Into<PathBuf>) -> Result<Self> {
        let root = root.into();
        std::fs::create_dir_all(&root).map_err(io("create", &root))?;
        let cgroup = Path::new("/sys/fs/cgroup/memory");
        let memory_cgroup = cgroup.join("memory.limit_in_bytes").exists().then(|| cgroup.join("bai"));
        let memory_cgroup = memory_cgroup.filter(|dir| std::fs::create_dir_all(dir).is_ok());
        tracing::warn!(
            root = %root.display(),
            memory_limits = memory_cgroup.is_some(),
            "the process runtime isolates kernels far less than Docker: they run as host processes sharing the host's \
             filesystem, network and PIDs{}",
            if memory_cgroup.is_some() { "" } else { ", and memory is not limited on this host" }
        );
        Ok(Self {
            root,
            memory_cgroup,
            execs: Arc::new(Mutex::new(BTreeMap::new())),
            reaping: Arc::new(Mutex::new(Default::default())),
        })
    }

    /// Kills (SIGKILL, whole process group) every container still running under `root`.
    ///
    /// Kernels outlive their agent by design; this is for throwaway roots — tests and
    /// in-process clusters that must leave nothing behind.
    /// Entries that are not containers are skipped; the records stay for the runtime to reap.
    pub fn kill_all(root: &Path) {
        let Ok(entries) = std::fs::read_dir(root) else { return };
        for entry in entries.flatten() {
            let Ok(text) = std::fs::read_to_string(entry.path().join("record.json")) else { continue };
            let Ok(record) = serde_json::from_str::<Record>(&text) else { continue };
            let Some(pid) = record.pid.filter(|p| *p > 1 && Self::is_alive(*p)) else { continue };
            if let Ok(pid) = i32::try_from(pid) {
                let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
    }

    /// Whether containers get a memory limit through the cgroup hierarchy on this host.
    pub fn limits_memory(&self) -> bool {
        self.memory_cgroup.is_some()
    }

    fn dir(&self, id: &str) -> Result<PathBuf> {
        if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(Error::NotFound { kind: "container", id: id.to_string() });
        }
        Ok(self.root.join(id))
    }

    fn load(&self, id: &str) -> Result<Record> {
        let path = self.dir(id)?.join("record.json");
        let text =
            std::fs::read_to_string(&path).map_err(|_| Error::NotFound { kind: "container", id: id.to_string() })?;
        serde_json::from_str(&text).map_err(|e| Error::invalid(path.display().to_string(), e.to_string()))
    }

    fn save(&self, record: &Record) -> Result<()> {
        let dir = self.dir(&record.id)?;
        let tmp = dir.join("record.json.tmp");
        let text = serde_json::to_vec_pretty(record).map_err(|e| Error::invalid("record", e.to_string()))?;
        std::fs::write(&tmp, text).map_err(io("write", &tmp))?;
        std::fs::rename(&tmp, dir.join("record.json")).map_err(io("rename", &tmp))
    }

    fn cgroup(&self, id: &str) -> Option<PathBuf> {
        self.memory_cgroup.as_ref().map(|c| c.join(id))
    }

    fn oom_killed(&self, id: &str) -> bool {
        self.cgroup(id)
            .and_then(|c| std::fs::read_to_string(c.join("memory.oom_control")).ok())
            .is_some_and(|s| s.lines().any(|l| l.strip_prefix("oom_kill ").is_some_and(|n| n.trim() != "0")))
    }

    /// Maps a container path to the host: `/home/work/...` → `<dir>/work/...`; anything else,
    /// or anything that climbs out with `..`, is refused.
    fn host_path(&self, id: &str, path: &str) -> Result<PathBuf> {
        let rest = path.strip_prefix(WORK).ok_or_else(|| {
            Error::invalid("path", format!("{path:?}: the process runtime only reaches paths under {WORK}"))
        })?;
        if !(rest.is_empty() || rest.starts_with('/')) || rest.split('/').any(|c| c == "..") {
            return Err(Error::invalid("path", format!("{path:?} leaves {WORK}")));
        }
        Ok(self.dir(id)?.join("work").join(rest.trim_start_matches('/')))
    }

    fn is_alive(pid: u32) -> bool {
        // a zombie still has /proc/<pid>; its state letter is Z
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| s.rsplit_once(") ").map(|(_, rest)| !rest.starts_with('Z')))
            .unwrap_or(false)
    }

    fn info(&self, record: &Record) -> ContainerInfo {
        // a process that has just ended counts as running until its reaper records the status
        let running =
            record.ended.is_none() && record.pid.is_some_and(|p| Self::is_alive(p) || self.is_reaping(&record.id));
        let state = match (record.pid, running, record.ended) {
            (None, _, None) => ContainerState::Created,
            (_, true, _) => ContainerState::Running,
            _ => ContainerState::Exited,
        };
        let termination = match (state, record.ended) {
            (ContainerState::Exited, Some((code, oom))) => Some(Termination::classify(code, oom)),
            // the runtime restarted while the process ended: its status is lost
            (ContainerState::Exited, None) => Some(Termination::Exited { code: -1 }),
            _ => None,
        };
        ContainerInfo {
            id: record.id.clone(),
            name: record.spec.name.clone(),
            image: record.spec.image.clone(),
            labels: record.spec.labels.clone(),
            state,
            termination,
            pid: if running { record.pid } else { None },
            ports: Vec::new(),
        }
    }

    fn command(
        &self,
        id: &str,
        argv: &[String],
        env: &BTreeMap<String, String>,
        working_dir: Option<&str>,
    ) -> Result<Command> {
        let (program, args) = argv.split_first().ok_or_else(|| Error::invalid("cmd", "no command to run"))?;
        let cwd = self.host_path(id, working_dir.unwrap_or(WORK))?;
        let mut command = match self.cgroup(id) {
            // join the container's memory cgroup before running the program
            Some(cgroup) => {
                let mut c = Command::new("/bin/sh");
                c.arg("-c").arg(r#"echo $$ > "$0/cgroup.procs" && exec "$@""#).arg(cgroup).arg(program).args(args);
                c
            }
            None => {
                let mut c = Command::new(program);
                c.args(args);
                c
            }
        };
        command.current_dir(&cwd).envs(env).env("HOME", &cwd).process_group(0).kill_on_drop(false);
        Ok(command)
    }

    async fn reap(self, id: String, mut child: Child) {
        let status = child.wait().await;
        let code = match status {
            Ok(s) => s
                .code()
                .map(i64::from)
                .or_else(|| std::os::unix::process::ExitStatusExt::signal(&s).map(|sig| 128 + i64::from(sig))),
            Err(_) => None,
        }
        .unwrap_or(-1);
        let oom = self.oom_killed(&id);
        if let Ok(mut record) = self.load(&id) {
            record.ended = Some((code, oom));
            let _ = self.save(&record);
        }
        self.reaping.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
    }

    fn is_reaping(&self, id: &str) -> bool {
        self.reaping.lock().unwrap_or_else(|p| p.into_inner()).contains(id)
    }
}

fn unsupported(field: &str, what: &str) -> Error {
    Error::invalid(field, format!("the process runtime cannot provide {what}; use the Docker runtime"))
}

#[async_trait]
impl ContainerRuntime for ProcessRuntime {
    fn name(&self) -> &'static str {
        "process"
    }

    fn supports_bind_mounts(&self) -> bool {
        false
    }

    fn work_dir_on_host(&self, id: &str) -> Option<PathBuf> {
        self.dir(id).ok().map(|d| d.join("work"))
    }

    async fn create(&self, spec: &ContainerSpec) -> Result<String> {
        if spec.image != HOST_IMAGE {
            return Err(unsupported(
                "image",
                &format!("image {:?} (only {HOST_IMAGE:?}, the host's programs)", spec.image),
            ));
        }
        if !spec.mounts.is_empty() {
            return Err(unsupported("mounts", "bind mounts"));
        }
        if !spec.ports.is_empty() {
            return Err(unsupported("ports", "published ports"));
        }
        if !spec.devices.is_empty() || !spec.device_nodes.is_empty() {
            return Err(unsupported("devices", "devices"));
        }
        if spec.memory_limit.is_some() && self.memory_cgroup.is_none() {
            return Err(unsupported(
                "memory_limit",
                "a memory limit on this host (no writable cgroup memory controller)",
            ));
        }
        let id = random_id();
        let dir = self.dir(&id)?;
        std::fs::create_dir_all(dir.join("work")).map_err(io("create", &dir))?;
        // every container gets its own memory cgroup where the host allows (for its usage
        // figures), with the limit when one is asked for
        if let Some(cgroup) = self.cgroup(&id) {
            std::fs::create_dir_all(&cgroup).map_err(io("create cgroup", &cgroup))?;
            if let Some(limit) = spec.memory_limit {
                for file in ["memory.limit_in_bytes", "memory.memsw.limit_in_bytes"] {
                    let path = cgroup.join(file);
                    if path.exists() || file == "memory.limit_in_bytes" {
                        std::fs::write(&path, limit.to_string()).map_err(io("write", &path))?;
                    }
                }
            }
        }
        self.save(&Record { id: id.clone(), spec: spec.clone(), pid: None, ended: None })?;
        Ok(id)
    }

    async fn start(&self, id: &str) -> Result<()> {
        let mut record = self.load(id)?;
        if record.pid.is_some() {
            return Err(Error::invalid("container", format!("{id} was already started")));
        }
        let mut argv = record.spec.entrypoint.clone().unwrap_or_default();
        argv.extend(record.spec.cmd.iter().cloned());
        let log_path = self.dir(id)?.join("log");
        let log = std::fs::File::create(&log_path).map_err(io("create", &log_path))?;
        let log_err = log.try_clone().map_err(io("open", &log_path))?;
        let mut command = self.command(id, &argv, &record.spec.env, record.spec.working_dir.as_deref())?;
        command.stdin(Stdio::null()).stdout(log).stderr(log_err);
        let child = command.spawn().map_err(io("start", Path::new(&argv[0])))?;
        record.pid = child.id();
        self.save(&record)?;
        self.reaping.lock().unwrap_or_else(|p| p.into_inner()).insert(id.to_string());
        tokio::spawn(self.clone().reap(id.to_string(), child));
        Ok(())
    }

    async fn stop(&self, id: &str, timeout: Duration) -> Result<()> {
        let record = match self.load(id) {
            Ok(r) => r,
            Err(Error::NotFound { .. }) => return Ok(()),
            Err(e) => return Err(e),
        };
        let Some(pid) = record.pid.filter(|p| Self::is_alive(*p)) else { return Ok(()) };
        let group = Pid::from_raw(i32::try_from(pid).unwrap_or(i32::MAX));
        let _ = killpg(group, Signal::SIGTERM);
        let deadline = tokio::time::Instant::now() + timeout;
        while Self::is_alive(pid) && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if Self::is_alive(pid) {
            let _ = killpg(group, Signal::SIGKILL);
        }
        // let the reaper record the status
        while self.is_reaping(id) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    async fn destroy(&self, id: &str) -> Result<()> {
        self.stop(id, Duration::from_secs(0)).await?;
        let dir = self.dir(id)?;
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(io("remove", &dir))?;
        }
        if let Some(cgroup) = self.cgroup(id) {
            let _ = std::fs::remove_dir(cgroup);
        }
        Ok(())
    }

    async fn inspect(&self, id: &str) -> Result<ContainerInfo> {
        Ok(self.info(&self.load(id)?))
    }

    async fn list(&self, labels: &[(&str, Option<&str>)]) -> Result<Vec<ContainerInfo>> {
        let mut out = Vec::new();
        let entries = std::fs::read_dir(&self.root).map_err(io("list", &self.root))?;
        for entry in entries.flatten() {
            let Ok(record) = self.load(&entry.file_name().to_string_lossy()) else { continue };
            let matches = labels.iter().all(|(k, v)| match (record.spec.labels.get(*k), v) {
                (Some(actual), Some(wanted)) => actual == wanted,
                (Some(_), None) => true,
                (None, _) => false,
            });
            if matches {
                out.push(self.info(&record));
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    async fn wait(&self, id: &str) -> Result<Termination> {
        loop {
            let record = self.load(id)?;
            if let Some((code, oom)) = record.ended {
                return Ok(Termination::classify(code, oom));
            }
            match record.pid {
                None => return Err(Error::invalid("container", format!("{id} was never started"))),
                // started by an earlier instance of the runtime and gone: its status is lost
                Some(pid) if !Self::is_alive(pid) && !self.is_reaping(id) => {
                    return Ok(Termination::Exited { code: -1 })
                }
                _ => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    }

    async fn exec(&self, id: &str, spec: &ExecSpec) -> Result<ExecSession> {
        let record = self.load(id)?;
        if self.info(&record).state != ContainerState::Running {
            return Err(Error::invalid("container", format!("{id} is not running")));
        }
        let mut env = record.spec.env.clone();
        env.extend(spec.env.clone());
        let mut command =
            self.command(id, &spec.cmd, &env, spec.working_dir.as_deref().or(record.spec.working_dir.as_deref()))?;
        command
            .stdin(if spec.stdin { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child =
            command.spawn().map_err(|e| Error::io("exec", spec.cmd.first().map(String::as_str).unwrap_or(""), e))?;
        let exec_id = random_id();
        self.execs.lock().unwrap_or_else(|p| p.into_inner()).insert(exec_id.clone(), ExecState::default());
        let stdin = child.stdin.take().map(|s| Box::pin(s) as std::pin::Pin<Box<dyn tokio::io::AsyncWrite + Send>>);
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        let out = futures::stream::unfold(stdout, |pipe| async move {
            let mut pipe = pipe?;
            let mut buf = vec![0u8; 8192];
            match pipe.read(&mut buf).await {
                Ok(0) => None,
                Ok(n) => Some((Ok(Output::Stdout(bytes::Bytes::copy_from_slice(&buf[..n]))), Some(pipe))),
                Err(e) => Some((Err(Error::io("read exec output", "stdout", e)), None)),
            }
        });
        let err = futures::stream::unfold(stderr, |pipe| async move {
            let mut pipe = pipe?;
            let mut buf = vec![0u8; 8192];
            match pipe.read(&mut buf).await {
                Ok(0) => None,
                Ok(n) => Some((Ok(Output::Stderr(bytes::Bytes::copy_from_slice(&buf[..n]))), Some(pipe))),
                Err(e) => Some((Err(Error::io("read exec output", "stderr", e)), None)),
            }
        });
        let execs = self.execs.clone();
        let waiter_id = exec_id.clone();
        tokio::spawn(async move {
            let code = child.wait().await.ok().and_then(|s| {
                s.code()
                    .map(i64::from)
                    .or_else(|| std::os::unix::process::ExitStatusExt::signal(&s).map(|sig| 128 + i64::from(sig)))
            });
            if let Some(state) = execs.lock().unwrap_or_else(|p| p.into_inner()).get_mut(&waiter_id) {
                state.exit = Some(code.unwrap_or(-1));
            }
        });
        Ok(ExecSession { id: exec_id, stdin, output: Box::pin(futures::stream::select(out, err)) })
    }

    async fn exec_exit_code(&self, exec_id: &str) -> Result<Option<i64>> {
        // the output may end a moment before the waiter records the status
        for _ in 0..50 {
            let exit = {
                let execs = self.execs.lock().unwrap_or_else(|p| p.into_inner());
                match execs.get(exec_id) {
                    Some(state) => state.exit,
                    None => return Err(Error::NotFound { kind: "exec", id: exec_id.to_string() }),
                }
            };
            if exit.is_some() {
                return Ok(exit);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(None)
    }

    async fn logs(&self, id: &str) -> Result<Vec<u8>> {
        let path = self.dir(id)?.join("log");
        match std::fs::read(&path) {
            Ok(bytes) => Ok(bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                self.load(id)?;
                Ok(Vec::new())
            }
            Err(e) => Err(Error::io("read", &path, e)),
        }
    }

    async fn stats(&self, id: &str) -> Result<ContainerStats> {
        let record = self.load(id)?;
        let mut stats = ContainerStats::default();
        if let Some(cgroup) = self.cgroup(id) {
            let read =
                |f: &str| std::fs::read_to_string(cgroup.join(f)).ok().and_then(|s| s.trim().parse::<u64>().ok());
            stats.memory_bytes = read("memory.usage_in_bytes").unwrap_or(0);
            stats.memory_limit_bytes = read("memory.limit_in_bytes").unwrap_or(0);
        }
        if let Some(pid) = record.pid.filter(|p| Self::is_alive(*p)) {
            // utime + stime of the main process, in clock ticks (USER_HZ = 100 on Linux)
            if let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) {
                let fields: Vec<&str> = stat.rsplit_once(") ").map(|(_, r)| r.split(' ').collect()).unwrap_or_default();
                let ticks: u64 =
                    fields.get(11..13).map(|f| f.iter().filter_map(|v| v.parse::<u64>().ok()).sum()).unwrap_or(0);
                stats.cpu_used_ns = ticks * 10_000_000;
            }
            if let Ok(io) = std::fs::read_to_string(format!("/proc/{pid}/io")) {
                for line in io.lines() {
                    if let Some(v) = line.strip_prefix("read_bytes: ") {
                        stats.io_read_bytes = v.trim().parse().unwrap_or(0);
                    } else if let Some(v) = line.strip_prefix("write_bytes: ") {
                        stats.io_write_bytes = v.trim().parse().unwrap_or(0);
                    }
                }
            }
        }
        Ok(stats)
    }

    async fn copy_in(&self, id: &str, dir: &str, tar: Vec<u8>) -> Result<()> {
        let target = self.host_path(id, dir)?;
        std::fs::create_dir_all(&target).map_err(io("create", &target))?;
        let mut archive = tar::Archive::new(&tar[..]);
        // `unpack_in` refuses entries that would land outside `target`
        for entry in archive.entries().map_err(|e| Error::io("read archive", &target, e))? {
            let mut entry = entry.map_err(|e| Error::io("read archive", &target, e))?;
            let inside = entry.unpack_in(&target).map_err(|e| Error::io("unpack", &target, e))?;
            if !inside {
                return Err(Error::invalid("archive", "an entry points outside the target directory"));
            }
        }
        Ok(())
    }

    async fn copy_out(&self, id: &str, path: &str) -> Result<Vec<u8>> {
        let source = self.host_path(id, path)?;
        let name = source.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_else(|| "work".into());
        let mut builder = tar::Builder::new(Vec::new());
        builder.follow_symlinks(false);
        let meta = std::fs::symlink_metadata(&source).map_err(io("read", &source))?;
        if meta.is_dir() {
            builder.append_dir_all(&name, &source).map_err(io("archive", &source))?;
        } else {
            builder.append_path_with_name(&source, &name).map_err(io("archive", &source))?;
        }
        builder.into_inner().map_err(io("archive", &source))
    }

    async fn pull_image(&self, reference: &str, _progress: &(dyn Fn(PullProgress) + Send + Sync)) -> Result<()> {
        if reference == HOST_IMAGE {
            return Ok(());
        }
        Err(unsupported("image", &format!("image {reference:?}")))
    }

    async fn list_images(&self) -> Result<Vec<ImageInfo>> {
        Ok(vec![self.inspect_image(HOST_IMAGE).await?])
    }

    async fn remove_image(&self, reference: &str) -> Result<()> {
        if reference == HOST_IMAGE {
            return Err(Error::invalid("image", "the process backend's `host` image cannot be removed"));
        }
        Err(Error::NotFound { kind: "image", id: reference.to_string() })
    }

    async fn inspect_image(&self, reference: &str) -> Result<ImageInfo> {
        if reference != HOST_IMAGE {
            return Err(Error::NotFound { kind: "image", id: reference.to_string() });
        }
        Ok(ImageInfo {
            id: HOST_IMAGE.to_string(),
            tags: vec![HOST_IMAGE.to_string()],
            architecture: std::env::consts::ARCH.to_string(),
            labels: BTreeMap::new(),
            size: 0,
        })
    }
}
