//! `KernelRuntime` on a real Docker Engine: a kernel gets its cores, memory, GPU (mock),
//! ports, scratch quota and folders; read-only folders and the scratch quota hold inside the
//! container; port exhaustion fails cleanly; a new runtime object rebuilds everything from
//! the containers' labels.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bai_agent_runtime::accelerator::{AcceleratorPlugin, MockAccelerator, MockConfig};
use bai_agent_runtime::kernel::{KernelConfig, KernelRuntime, NodeConfig, VFolderRequest};
use bai_agent_runtime::ports::PortPool;
use bai_agent_runtime::resources::{Allocator, AllocatorConfig, NodeCapacity};
use bai_agent_runtime::runtime::docker::DockerRuntime;
use bai_agent_runtime::runtime::{ContainerRuntime, ExecSpec, Output};
use bai_agent_runtime::scratch::{ScratchManager, ScratchMode};
use bai_core::{AgentId, Decimal, KernelId, MountPermission, ResourceSlot, SessionId};
use common::*;
use futures::StreamExt;

const SERVICE_IMAGE: &str = "bai-test/busybox-svc:1";

/// The busybox image with two declared service ports.
async fn service_image(rt: &DockerRuntime) -> String {
    if rt.inspect_image(SERVICE_IMAGE).await.is_ok() {
        return SERVICE_IMAGE.into();
    }
    let base = busybox_image(rt).await;
    let archive = {
        // export the base image's filesystem through a container
        let id = rt
            .create(&bai_agent_runtime::runtime::ContainerSpec {
                name: unique_name("export"),
                image: base,
                cmd: vec!["true".into()],
                ..Default::default()
            })
            .await
            .unwrap();
        let mut stream = rt.client().export_container(&id);
        let mut tar = Vec::new();
        while let Some(chunk) = stream.next().await {
            tar.extend_from_slice(&chunk.unwrap());
        }
        rt.destroy(&id).await.unwrap();
        tar
    };
    let options = bollard::query_parameters::CreateImageOptions {
        from_src: Some("-".into()),
        repo: Some("bai-test/busybox-svc".into()),
        tag: Some("1".into()),
        changes: vec![
            "LABEL ai.backend.service-ports=web:http:8080,admin:tcp:9000".into(),
            "CMD [\"sleep\", \"600\"]".into(),
        ],
        ..Default::default()
    };
    let mut stream = rt.client().create_image(Some(options), Some(bollard::body_full(archive.into())), None);
    while let Some(item) = stream.next().await {
        item.unwrap();
    }
    SERVICE_IMAGE.into()
}

/// Removes an agent's containers and unmounts its scratch when the test ends, pass or fail.
struct Cleanup {
    agent: String,
    scratch: std::path::PathBuf,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let host = std::env::var("BAI_TEST_DOCKER_HOST").unwrap_or_default();
        let list = std::process::Command::new("docker")
            .args(["-H", &host, "ps", "-aq", "--filter", &format!("label=ai.backend.owner={}", self.agent)])
            .output();
        if let Ok(out) = list {
            for id in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = std::process::Command::new("docker").args(["-H", &host, "rm", "-f", id]).output();
            }
        }
        let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
        let root = self.scratch.to_string_lossy().into_owned();
        for target in mounts.lines().filter_map(|l| l.split(' ').nth(1)).filter(|t| t.starts_with(&root)) {
            let _ = std::process::Command::new("umount").args(["-l", target]).output();
        }
    }
}

struct Node {
    _cleanup: Cleanup,
    kernels: KernelRuntime,
    _dirs: (tempfile::TempDir, tempfile::TempDir),
    vfolders: std::path::PathBuf,
}

fn allocator() -> Arc<Allocator> {
    let capacity = NodeCapacity::new(vec![0, 1], Decimal::from(2), 4 << 30).unwrap();
    let gpu: MockConfig = serde_json::from_value(serde_json::json!({
        "key": "cuda", "slot": "shares", "devices": [{"id": "0", "memory": "16g"}]
    }))
    .unwrap();
    let plugins: Vec<Arc<dyn AcceleratorPlugin>> = vec![Arc::new(MockAccelerator::new(gpu).unwrap())];
    Arc::new(Allocator::new(&capacity, plugins, &AllocatorConfig::default()).unwrap())
}

fn node(
    rt: &DockerRuntime,
    agent: &str,
    ports: Arc<PortPool>,
    dirs: Option<(tempfile::TempDir, tempfile::TempDir)>,
) -> Node {
    let (scratch_dir, vfolder_dir) =
        dirs.unwrap_or_else(|| (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()));
    let scratch = ScratchManager::new(scratch_dir.path(), ScratchMode::LoopFile).unwrap();
    let config = NodeConfig {
        agent_id: AgentId::new(agent).unwrap(),
        vfolder_root: vfolder_dir.path().to_path_buf(),
        default_scratch_quota: 16 << 20,
        stop_timeout: Duration::from_secs(2),
        bind_host: "127.0.0.1".into(),
    };
    let vfolders = vfolder_dir.path().to_path_buf();
    let cleanup = Cleanup { agent: agent.to_string(), scratch: scratch_dir.path().to_path_buf() };
    Node {
        _cleanup: cleanup,
        kernels: KernelRuntime::new(Arc::new(rt.clone()), allocator(), ports, scratch, config),
        _dirs: (scratch_dir, vfolder_dir),
        vfolders,
    }
}

fn request(pairs: &[(&str, &str)]) -> ResourceSlot {
    ResourceSlot::from_pairs(pairs.iter().map(|(k, v)| (*k, v.parse::<Decimal>().unwrap()))).unwrap()
}

fn config(image: &str, mounts: Vec<VFolderRequest>) -> KernelConfig {
    KernelConfig {
        kernel_id: KernelId::new_random(),
        session_id: SessionId::new_random(),
        image: image.into(),
        resources: request(&[("cpu", "0.5"), ("mem", "268435456"), ("cuda.shares", "0.5")]),
        shmem: Some(64 << 20),
        environ: BTreeMap::new(),
        mounts,
        scratch_quota: None,
        owner_user_id: Some("user-1".into()),
        cmd: Vec::new(),
    }
}

async fn sh(rt: &dyn ContainerRuntime, id: &str, script: &str) -> (i64, String) {
    let mut session = rt
        .exec(id, &ExecSpec { cmd: vec!["sh".into(), "-c".into(), script.into()], ..Default::default() })
        .await
        .unwrap();
    let mut out = Vec::new();
    while let Some(chunk) = session.output.next().await {
        match chunk.unwrap() {
            Output::Stdout(b) | Output::Stderr(b) => out.extend_from_slice(&b),
        }
    }
    (rt.exec_exit_code(&session.id).await.unwrap().unwrap_or(-1), String::from_utf8_lossy(&out).into_owned())
}

#[tokio::test]
async fn kernels_hold_and_release_what_they_get() {
    let Some(rt) = docker().await else { return };
    let image = service_image(&rt).await;
    let agent = format!("i-test-{}", std::process::id());
    let node = node(&rt, &agent, Arc::new(PortPool::new(31500..=31503)), None);
    std::fs::create_dir_all(node.vfolders.join("u1/data")).unwrap();
    std::fs::write(node.vfolders.join("u1/data/input.txt"), "read me").unwrap();
    std::fs::create_dir_all(node.vfolders.join("u1/out")).unwrap();
    let mounts = vec![
        VFolderRequest { folder: "u1/data".into(), name: "data".into(), permission: MountPermission::ReadOnly },
        VFolderRequest { folder: "u1/out".into(), name: "out".into(), permission: MountPermission::ReadWrite },
    ];
    let cfg = config(&image, mounts);
    let kernel = node.kernels.create_kernel(&cfg).await.expect("create kernel");
    let rt_dyn: &dyn ContainerRuntime = &rt;
    let info = rt.inspect(&kernel.container_id).await.unwrap();
    assert!(info.state.is_active());
    assert_eq!(kernel.host_ports.len(), 2);
    assert_eq!(info.ports.len(), 2, "both service ports are published");
    assert_eq!(info.labels["ai.backend.owner"], agent);
    assert_eq!(node.kernels.allocator().occupied().get("cpu"), "0.5".parse::<Decimal>().unwrap());
    assert_eq!(node.kernels.ports().free(), 2);

    // the container sees its GPU, its folders and its limits
    let (code, env) =
        sh(rt_dyn, &kernel.container_id, "echo $CUDA_VISIBLE_DEVICES; cat /home/work/data/input.txt").await;
    assert_eq!(code, 0, "{env}");
    assert!(env.starts_with("0\nread me"), "{env}");
    let (code, out) = sh(rt_dyn, &kernel.container_id, "touch /home/work/data/x").await;
    assert_ne!(code, 0, "a read-only folder refuses writes: {out}");
    let (code, _) = sh(rt_dyn, &kernel.container_id, "echo result > /home/work/out/r.txt").await;
    assert_eq!(code, 0);
    assert_eq!(std::fs::read_to_string(node.vfolders.join("u1/out/r.txt")).unwrap(), "result\n");
    // the scratch quota (16 MiB) holds inside the kernel
    let (code, out) = sh(rt_dyn, &kernel.container_id, "dd if=/dev/zero of=/home/work/big bs=1M count=64").await;
    assert_ne!(code, 0, "writing 64 MiB into a 16 MiB scratch fails: {out}");
    assert!(out.contains("No space left"), "{out}");

    // a second kernel needs 2 more ports, and only 2 are left; a third finds none
    let second = node.kernels.create_kernel(&config(&image, vec![])).await.expect("second kernel");
    let mut third = config(&image, vec![]);
    third.resources = request(&[("cpu", "0.5"), ("mem", "268435456")]);
    let err = node.kernels.create_kernel(&third).await.unwrap_err().to_string();
    assert!(err.contains("host ports"), "{err}");
    assert_eq!(
        node.kernels.allocator().occupied().get("cpu"),
        Decimal::from(1),
        "the failed creation released its CPU"
    );
    assert_eq!(node.kernels.kernel_ids().len(), 2);

    // destroy releases everything
    node.kernels.destroy_kernel(second.kernel_id).await.unwrap();
    node.kernels.destroy_kernel(kernel.kernel_id).await.unwrap();
    assert_eq!(node.kernels.ports().free(), 4);
    assert!(node.kernels.allocator().occupied().is_zero());
    assert!(matches!(rt.inspect(&kernel.container_id).await, Err(bai_agent_runtime::Error::NotFound { .. })));
    assert!(!kernel.scratch.dir.exists(), "the scratch is removed");
}

#[tokio::test]
async fn a_new_runtime_object_recovers_kernels_from_labels() {
    let Some(rt) = docker().await else { return };
    let image = service_image(&rt).await;
    let agent = format!("i-recover-{}", std::process::id());
    let first = node(&rt, &agent, Arc::new(PortPool::new(31600..=31609)), None);
    let kernel = first.kernels.create_kernel(&config(&image, vec![])).await.expect("create kernel");
    let occupied = first.kernels.allocator().occupied();
    let Node { kernels, _dirs, _cleanup, .. } = first;
    drop(kernels); // the agent "restarts"; the container keeps running

    let second = node(&rt, &agent, Arc::new(PortPool::new(31600..=31609)), Some(_dirs));
    let _first_cleanup = _cleanup; // kept to the end: dropping it would remove the containers
    let report = second.kernels.recover().await.unwrap();
    assert_eq!(report.recovered, [kernel.kernel_id], "{report:?}");
    assert!(report.failed.is_empty(), "{report:?}");
    let recovered = second.kernels.kernel(kernel.kernel_id).unwrap();
    assert_eq!(recovered.host_ports, kernel.host_ports);
    assert_eq!(recovered.allocation, kernel.allocation);
    assert_eq!(second.kernels.allocator().occupied(), occupied);
    assert_eq!(second.kernels.ports().free(), 8, "the recovered kernel's ports are held again");
    // another agent's runtime sees nothing of it
    let stranger = node(&rt, "i-someone-else", Arc::new(PortPool::new(31700..=31709)), None);
    assert!(stranger.kernels.recover().await.unwrap().recovered.is_empty());

    second.kernels.destroy_kernel(kernel.kernel_id).await.unwrap();
    assert!(second.kernels.allocator().occupied().is_zero());
    assert_eq!(second.kernels.ports().free(), 10);
}

#[tokio::test]
async fn bad_requests_change_nothing() {
    let Some(rt) = docker().await else { return };
    let image = service_image(&rt).await;
    let node = node(&rt, &format!("i-bad-{}", std::process::id()), Arc::new(PortPool::new(31800..=31809)), None);
    let mut cfg = config(
        &image,
        vec![VFolderRequest { folder: "../etc".into(), name: "x".into(), permission: MountPermission::ReadOnly }],
    );
    assert!(node.kernels.create_kernel(&cfg).await.is_err());
    cfg.mounts.clear();
    cfg.resources = request(&[("cpu", "64"), ("mem", "268435456")]);
    let err = node.kernels.create_kernel(&cfg).await.unwrap_err().to_string();
    assert!(err.contains("cpu"), "{err}");
    cfg.resources = request(&[("cpu", "1"), ("mem", "268435456"), ("tpu.device", "1")]);
    assert!(node.kernels.create_kernel(&cfg).await.unwrap_err().to_string().contains("tpu.device"));
    cfg.resources = request(&[("cpu", "1"), ("mem", "268435456")]);
    cfg.image = "bai-no-such/image:0".into();
    assert!(matches!(node.kernels.create_kernel(&cfg).await, Err(bai_agent_runtime::Error::NotFound { .. })));
    assert!(node.kernels.allocator().occupied().is_zero());
    assert_eq!(node.kernels.ports().free(), 10);
    assert!(node.kernels.kernel_ids().is_empty());
}
