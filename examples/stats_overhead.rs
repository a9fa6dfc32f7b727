//! The agent's statistics overhead at 100 containers, against the Docker Engine's own stats API
//! for the same containers, in the same run.
//!
//! ```text
//! cargo run --release -p bai-examples --example stats_overhead -- [--image IMAGE] [--containers N] [--sweeps N]
//! ```
//!
//! It starts N kernels (default 100) of the image (default `bai/python:3.11`, each with 0.01
//! CPU and 64 MiB) through `KernelRuntime`, then times `--sweeps` (default 20) back-to-back sweeps of each:
//!
//! - **bai**: `Agent::collect_stats` — one statistics sweep of the agent daemon over the node
//!   and every kernel (cgroup and `/proc` reads, the metrics it exports);
//! - **baseline**: a one-shot `GET /containers/{id}/stats` through the Docker API for every
//!   container, all at once (what a collector built on the engine's stats pays).
//!
//! For each it reports the mean wall time of a sweep and its CPU: this process's and that of
//! the engine's processes (`dockerd`, `containerd`, the shims; from `/proc/<pid>/stat`, 10 ms
//! ticks, so use enough sweeps), and the share of one core that a sweep every 5 s costs. The kernels
//! are removed at the end. It needs a Docker Engine (`DOCKER_HOST` or the default socket). The
//! last line is `bai_ms=… bai_cpu_ms=… engine_ms=… engine_cpu_ms=… cpu_ratio=<bai/engine>`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bai_agent::agent::{Agent, AgentSettings};
use bai_agent::metrics::AgentMetrics;
use bai_agent_runtime::bus::MemoryBus;
use bai_agent_runtime::kernel::{KernelConfig, KernelRuntime, NodeConfig};
use bai_agent_runtime::ports::PortPool;
use bai_agent_runtime::resources::{Allocator, AllocatorConfig, HostReserve, NodeCapacity};
use bai_agent_runtime::runtime::docker::DockerRuntime;
use bai_agent_runtime::runtime::ContainerRuntime;
use bai_agent_runtime::scratch::{ScratchManager, ScratchMode};
use bai_core::{AgentId, Decimal, KernelId, ResourceSlot, SessionId};

/// How often the agent sweeps by default (`agent.stat-interval`).
const INTERVAL: Duration = Duration::from_secs(5);

/// The processes whose CPU counts: this one (the agent's side) and the container engine's
/// (`dockerd`, `containerd` and the per-container shims), found once at start.
fn engine_pids() -> Vec<u32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if matches!(comm.trim(), "dockerd" | "containerd") || comm.starts_with("containerd-shim") {
            pids.push(pid);
        }
    }
    pids
}

/// User + system CPU time of a process so far, in milliseconds (0 once it is gone).
fn cpu_ms(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command (which may hold spaces) start after the last ')'.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the command; USER_HZ is
    // 100 on Linux.
    (ticks(11) + ticks(12)) as f64 * 10.0
}

/// CPU used by the engine's processes and by this one, in milliseconds. This process is read
/// last on the way in and first on the way out, so the reading itself is not counted.
struct CpuMeter {
    engine: Vec<String>,
}

impl CpuMeter {
    fn start(&self) -> (f64, f64) {
        let engine = self.engine.iter().map(|p| cpu_ms(p)).sum();
        (engine, cpu_ms("self"))
    }

    fn stop(&self, (engine, own): (f64, f64)) -> (f64, f64) {
        let own = cpu_ms("self") - own;
        (self.engine.iter().map(|p| cpu_ms(p)).sum::<f64>() - engine, own)
    }
}

/// `sweeps` runs of `sweep`: the mean wall time of one, and the mean CPU of one (this process,
/// the engine), in milliseconds.
async fn measure<F, Fut>(meter: &CpuMeter, sweeps: usize, mut sweep: F) -> Result<Figures, Box<dyn std::error::Error>>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), Box<dyn std::error::Error>>>,
{
    let mut wall = Duration::ZERO;
    let cpu = meter.start();
    for _ in 0..sweeps {
        let started = Instant::now();
        sweep().await?;
        wall += started.elapsed();
    }
    let (engine, own) = meter.stop(cpu);
    let n = sweeps as f64;
    Ok(Figures { wall_ms: wall.as_secs_f64() * 1000.0 / n, own_cpu_ms: own / n, engine_cpu_ms: engine / n })
}

/// Means per sweep, in milliseconds.
struct Figures {
    wall_ms: f64,
    own_cpu_ms: f64,
    engine_cpu_ms: f64,
}

impl Figures {
    fn cpu_ms(&self) -> f64 {
        self.own_cpu_ms + self.engine_cpu_ms
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut image = "bai/python:3.11".to_string();
    let mut containers = 100usize;
    let mut sweeps = 20usize;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        match flag.as_str() {
            "--image" => image = args.next().ok_or("--image needs a value")?,
            "--containers" => containers = args.next().ok_or("--containers needs a value")?.parse()?,
            "--sweeps" => sweeps = args.next().ok_or("--sweeps needs a value")?.parse()?,
            other => return Err(format!("unknown argument {other:?}").into()),
        }
    }
    if containers == 0 || sweeps == 0 {
        return Err("--containers and --sweeps must be at least 1".into());
    }
    let docker = DockerRuntime::connect_default().await?;
    docker.inspect_image(&image).await.map_err(|e| format!("{e} (build it with scripts/build-kernel-images)"))?;
    let capacity = NodeCapacity::discover(&HostReserve::none())?;
    let allocator = Arc::new(Allocator::new(&capacity, Vec::new(), &AllocatorConfig::default())?);
    let scratch_dir = tempfile::tempdir()?;
    let vfolders = tempfile::tempdir()?;
    let id = AgentId::new(format!("i-stats-{}", std::process::id()))?;
    let kernels = KernelRuntime::new(
        Arc::new(docker.clone()),
        allocator,
        Arc::new(PortPool::new(33000..=33999)),
        ScratchManager::new(scratch_dir.path(), ScratchMode::Unlimited)?,
        NodeConfig {
            agent_id: id.clone(),
            vfolder_root: vfolders.path().to_path_buf(),
            default_scratch_quota: 64 << 20,
            stop_timeout: Duration::from_secs(1),
            bind_host: "127.0.0.1".into(),
        },
    );
    let settings = AgentSettings {
        id: id.clone(),
        region: "local".into(),
        scaling_group: "default".into(),
        rpc_addr: "127.0.0.1:0".into(),
        public_host: "127.0.0.1".into(),
        heartbeat_interval: INTERVAL,
        sync_interval: INTERVAL,
        stat_interval: INTERVAL,
    };
    let agent =
        Agent::new(settings, kernels, Arc::new(MemoryBus::new(1024)), Arc::new(AgentMetrics::new(id.as_str())))?;
    let resources =
        ResourceSlot::from_pairs([("cpu", "0.01".parse::<Decimal>()?), ("mem", Decimal::from(64u64 << 20))])?;

    eprintln!("starting {containers} kernels of {image}");
    let mut ids = Vec::new();
    let outcome = async {
        for i in 0..containers {
            let config = KernelConfig {
                kernel_id: KernelId::new_random(),
                session_id: SessionId::new_random(),
                image: image.clone(),
                resources: resources.clone(),
                shmem: None,
                environ: BTreeMap::new(),
                mounts: Vec::new(),
                scratch_quota: None,
                owner_user_id: None,
                cmd: Vec::new(),
            };
            let kernel = agent.kernels().create_kernel(&config).await?;
            ids.push((kernel.kernel_id, kernel.container_id));
            if (i + 1) % 20 == 0 {
                eprintln!("  {} running", i + 1);
            }
        }
        // Let the containers settle (their first seconds of start-up are not idle).
        tokio::time::sleep(Duration::from_secs(3)).await;
        // The first sweep has no previous sample; it is not measured.
        agent.collect_stats().await;
        let meter = CpuMeter { engine: engine_pids().iter().map(u32::to_string).collect() };
        let bai = measure(&meter, sweeps, || async {
            agent.collect_stats().await;
            Ok(())
        })
        .await?;
        let engine = measure(&meter, sweeps, || async {
            let calls = ids.iter().map(|(_, container)| docker.stats(container));
            for result in futures::future::join_all(calls).await {
                result?;
            }
            Ok(())
        })
        .await?;
        Ok::<_, Box<dyn std::error::Error>>((bai, engine))
    }
    .await;
    for (kernel_id, _) in &ids {
        if let Err(e) = agent.kernels().destroy_kernel(*kernel_id).await {
            eprintln!("removing kernel {kernel_id}: {e}");
        }
    }
    let (bai, engine) = outcome?;
    let share = |cpu_ms: f64| cpu_ms / INTERVAL.as_secs_f64() / 10.0; // percent of one core
    println!("image={image} containers={containers} sweeps={sweeps} (means per sweep)");
    for (label, f) in [("bai Agent::collect_stats", &bai), ("Docker stats API (baseline)", &engine)] {
        println!(
            "{label:<28} {:8.1} ms wall {:8.1} ms CPU ({:.1} own + {:.1} engine) = {:.2} % of a core at one sweep per {} s",
            f.wall_ms,
            f.cpu_ms(),
            f.own_cpu_ms,
            f.engine_cpu_ms,
            share(f.cpu_ms()),
            INTERVAL.as_secs()
        );
    }
    println!(
        "bai_ms={:.1} bai_cpu_ms={:.1} engine_ms={:.1} engine_cpu_ms={:.1} cpu_ratio={:.3}",
        bai.wall_ms,
        bai.cpu_ms(),
        engine.wall_ms,
        engine.cpu_ms(),
        bai.cpu_ms() / engine.cpu_ms().max(f64::MIN_POSITIVE)
    );
    Ok(())
}
