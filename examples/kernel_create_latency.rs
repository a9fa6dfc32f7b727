//! Kernel creation latency against a bare container start of the same image, in the same run.
//!
//! ```text
//! cargo run --release -p bai-examples --example kernel_create_latency -- [--image IMAGE] [--runs N]
//! ```
//!
//! For each run it times (a) a bare create + start of the image through the Docker API and
//! (b) `KernelRuntime::create_kernel` (resource allocation, host ports, a loop-mounted scratch
//! with its quota, labels, create + start), removing the containers afterwards. It needs a
//! Docker Engine (`DOCKER_HOST` or the default socket) and root (for the scratch mount). The
//! last line is `bare_ms=<median> kernel_ms=<median> ratio=<kernel/bare>`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bai_agent_runtime::kernel::{KernelConfig, KernelRuntime, NodeConfig};
use bai_agent_runtime::ports::PortPool;
use bai_agent_runtime::resources::{Allocator, AllocatorConfig, HostReserve, NodeCapacity};
use bai_agent_runtime::runtime::docker::DockerRuntime;
use bai_agent_runtime::runtime::ContainerRuntime;
use bai_agent_runtime::scratch::{ScratchManager, ScratchMode};
use bai_core::{AgentId, Decimal, KernelId, ResourceSlot, SessionId};

#[path = "common/bare.rs"]
mod bare;

use bare::{bare_start, median};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut image = "bai/python:3.11".to_string();
    let mut runs = 5usize;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        match flag.as_str() {
            "--image" => image = args.next().ok_or("--image needs a value")?,
            "--runs" => runs = args.next().ok_or("--runs needs a value")?.parse()?,
            other => return Err(format!("unknown argument {other:?}").into()),
        }
    }
    let docker = DockerRuntime::connect_default().await?;
    docker.inspect_image(&image).await.map_err(|e| format!("{e} (build it with scripts/build-kernel-images)"))?;
    let capacity = NodeCapacity::discover(&HostReserve::none())?;
    let allocator = Arc::new(Allocator::new(&capacity, Vec::new(), &AllocatorConfig::default())?);
    let scratch_dir = tempfile::tempdir()?;
    let vfolders = tempfile::tempdir()?;
    let kernels = KernelRuntime::new(
        Arc::new(docker.clone()),
        allocator,
        Arc::new(PortPool::new(32000..=32999)),
        ScratchManager::new(scratch_dir.path(), ScratchMode::LoopFile)?,
        NodeConfig {
            agent_id: AgentId::new(format!("i-latency-{}", std::process::id()))?,
            vfolder_root: vfolders.path().to_path_buf(),
            default_scratch_quota: 64 << 20,
            stop_timeout: Duration::from_secs(1),
            bind_host: "127.0.0.1".into(),
        },
    );
    let resources = ResourceSlot::from_pairs([("cpu", Decimal::from(1)), ("mem", Decimal::from(256u64 << 20))])?;
    let (mut bare, mut kernel) = (Vec::new(), Vec::new());
    for i in 0..runs {
        bare.push(bare_start(&docker, &image, format!("bai-latency-bare-{}-{i}", std::process::id())).await?);

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
        let started = Instant::now();
        let created = kernels.create_kernel(&config).await?;
        kernel.push(started.elapsed());
        kernels.destroy_kernel(created.kernel_id).await?;
    }
    let (b, k) = (median(bare), median(kernel));
    println!("image={image} runs={runs}");
    println!("bare_ms={b:.1} kernel_ms={k:.1} ratio={:.2}", k / b.max(f64::MIN_POSITIVE));
    Ok(())
}
