//! The `ContainerRuntime` contract, run against every backend where it applies: `DockerRuntime`
//! on a real Docker Engine and `ProcessRuntime` on this host. The container life cycle, exec,
//! logs, stats, copies, labels, and telling an out-of-memory kill apart from other exits.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use bai_agent_runtime::runtime::process::{ProcessRuntime, HOST_IMAGE};
use bai_agent_runtime::runtime::{ContainerRuntime, ContainerSpec, ContainerState, ExecSpec, Output, Termination};
use common::*;
use futures::StreamExt;
use tokio::io::AsyncWriteExt;

fn spec(image: &str, name: &str, cmd: &[&str]) -> ContainerSpec {
    let mut labels = BTreeMap::new();
    labels.insert("ai.backend.bai.test".to_string(), name.to_string());
    ContainerSpec {
        name: name.to_string(),
        image: image.to_string(),
        cmd: cmd.iter().map(|s| s.to_string()).collect(),
        labels,
        working_dir: Some("/home/work".into()),
        init: true,
        ..Default::default()
    }
}

/// Removes the container when dropped, whatever the test did.
struct Cleanup(String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = std::process::Command::new("docker")
            .args(["-H", &std::env::var("BAI_TEST_DOCKER_HOST").unwrap_or_default(), "rm", "-f", &self.0])
            .output();
    }
}

/// A process runtime in a fresh directory (kept alive by the returned guard).
fn process_runtime() -> (ProcessRuntime, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    (ProcessRuntime::new(dir.path()).unwrap(), dir)
}

#[tokio::test]
async fn docker_container_life_cycle() {
    let Some(rt) = docker().await else { return };
    let image = busybox_image(&rt).await;
    let name = unique_name("life");
    let _cleanup = Cleanup(name.clone());
    life_cycle(&rt, &image, &name, true).await;
}

#[tokio::test]
async fn process_container_life_cycle() {
    let (rt, _dir) = process_runtime();
    let limits = rt.limits_memory();
    life_cycle(&rt, HOST_IMAGE, &unique_name("life"), limits).await;
}

async fn life_cycle(rt: &dyn ContainerRuntime, image: &str, name: &str, limit_memory: bool) {
    let mut s = spec(image, name, &["sleep", "300"]);
    if limit_memory {
        s.memory_limit = Some(64 << 20);
    }
    s.env.insert("GREETING".into(), "hello".into());
    let id = rt.create(&s).await.expect("create");
    assert_eq!(rt.inspect(&id).await.unwrap().state, ContainerState::Created);
    rt.start(&id).await.expect("start");
    let info = rt.inspect(&id).await.unwrap();
    assert_eq!(info.state, ContainerState::Running);
    assert_eq!(info.name, name);
    assert!(info.pid.is_some());

    // found by label, and only by its own label value
    let listed = rt.list(&[("ai.backend.bai.test", Some(name))]).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, id);

    // exec with output, environment and exit code
    let mut session = rt
        .exec(
            &id,
            &ExecSpec {
                cmd: vec!["sh".into(), "-c".into(), "echo $GREETING; echo oops >&2; exit 3".into()],
                ..Default::default()
            },
        )
        .await
        .expect("exec");
    let (mut out, mut err) = (Vec::new(), Vec::new());
    while let Some(chunk) = session.output.next().await {
        match chunk.unwrap() {
            Output::Stdout(b) => out.extend_from_slice(&b),
            Output::Stderr(b) => err.extend_from_slice(&b),
        }
    }
    assert_eq!(String::from_utf8_lossy(&out), "hello\n");
    assert_eq!(String::from_utf8_lossy(&err), "oops\n");
    assert_eq!(rt.exec_exit_code(&session.id).await.unwrap(), Some(3));

    // exec with stdin
    let mut session =
        rt.exec(&id, &ExecSpec { cmd: vec!["cat".into()], stdin: true, ..Default::default() }).await.unwrap();
    let mut stdin = session.stdin.take().expect("stdin requested");
    stdin.write_all(b"through stdin\n").await.unwrap();
    stdin.shutdown().await.unwrap();
    drop(stdin);
    let mut echoed = Vec::new();
    while let Some(Ok(Output::Stdout(b))) = session.output.next().await {
        echoed.extend_from_slice(&b);
    }
    assert_eq!(String::from_utf8_lossy(&echoed), "through stdin\n");

    // copy a file in and back out
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(5);
    header.set_mode(0o644);
    header.set_cksum();
    builder.append_data(&mut header, "note.txt", &b"12345"[..]).unwrap();
    rt.copy_in(&id, "/home/work", builder.into_inner().unwrap()).await.expect("copy in");
    let archive = rt.copy_out(&id, "/home/work/note.txt").await.expect("copy out");
    let mut entries = tar::Archive::new(&archive[..]);
    let mut entry = entries.entries().unwrap().next().unwrap().unwrap();
    let mut content = String::new();
    std::io::Read::read_to_string(&mut entry, &mut content).unwrap();
    assert_eq!(content, "12345");

    let stats = rt.stats(&id).await.expect("stats");
    if limit_memory {
        assert_eq!(stats.memory_limit_bytes, 64 << 20);
        assert!(stats.memory_bytes > 0);
    }

    rt.stop(&id, Duration::from_secs(5)).await.expect("stop");
    let info = rt.inspect(&id).await.unwrap();
    assert_eq!(info.state, ContainerState::Exited);
    assert!(info.termination.is_some());
    rt.stop(&id, Duration::from_secs(1)).await.expect("stopping twice is fine");
    rt.destroy(&id).await.expect("destroy");
    assert!(matches!(rt.inspect(&id).await, Err(bai_agent_runtime::Error::NotFound { .. })));
    rt.destroy(&id).await.expect("destroying twice is fine");
}

#[tokio::test]
async fn docker_exits_and_logs_are_reported() {
    let Some(rt) = docker().await else { return };
    let image = busybox_image(&rt).await;
    let name = unique_name("exit");
    let _cleanup = Cleanup(name.clone());
    exits_and_logs(&rt, &image, &name).await;
}

#[tokio::test]
async fn process_exits_and_logs_are_reported() {
    let (rt, _dir) = process_runtime();
    exits_and_logs(&rt, HOST_IMAGE, &unique_name("exit")).await;
}

async fn exits_and_logs(rt: &dyn ContainerRuntime, image: &str, name: &str) {
    let id = rt.create(&spec(image, name, &["sh", "-c", "echo to-the-log; exit 7"])).await.unwrap();
    rt.start(&id).await.unwrap();
    assert_eq!(rt.wait(&id).await.unwrap(), Termination::Exited { code: 7 });
    let logs = rt.logs(&id).await.unwrap();
    assert!(String::from_utf8_lossy(&logs).contains("to-the-log"));
    rt.destroy(&id).await.unwrap();
}

#[tokio::test]
async fn docker_out_of_memory_is_told_apart() {
    let Some(rt) = docker().await else { return };
    let image = busybox_image(&rt).await;
    let name = unique_name("oom");
    let _cleanup = Cleanup(name.clone());
    out_of_memory(&rt, &image, &name).await;
}

#[tokio::test]
async fn process_out_of_memory_is_told_apart() {
    let (rt, _dir) = process_runtime();
    if !rt.limits_memory() {
        eprintln!("skipping: this host has no writable cgroup v1 memory controller, so the process runtime cannot limit memory");
        return;
    }
    out_of_memory(&rt, HOST_IMAGE, &unique_name("oom")).await;
}

async fn out_of_memory(rt: &dyn ContainerRuntime, image: &str, name: &str) {
    // a 200 MiB buffer in a container limited to 64 MiB
    let mut s = spec(image, name, &["dd", "if=/dev/zero", "of=/dev/null", "bs=200M", "count=1"]);
    s.memory_limit = Some(64 << 20);
    let id = rt.create(&s).await.unwrap();
    rt.start(&id).await.unwrap();
    let termination = rt.wait(&id).await.unwrap();
    assert_eq!(termination, Termination::OutOfMemory);
    assert_eq!(termination.exit_code(), 137);
    rt.destroy(&id).await.unwrap();
}

#[tokio::test]
async fn process_runtime_refuses_what_it_cannot_do() {
    let (rt, _dir) = process_runtime();
    let mut s = spec("python:3.11", &unique_name("refuse"), &["true"]);
    assert!(rt.create(&s).await.unwrap_err().to_string().contains("python:3.11"));
    s.image = HOST_IMAGE.into();
    s.mounts.push(bai_agent_runtime::runtime::BindMount {
        source: "/etc".into(),
        target: "/etc".into(),
        read_only: true,
    });
    assert!(rt.create(&s).await.unwrap_err().to_string().contains("bind mounts"));
    s.mounts.clear();
    let id = rt.create(&s).await.unwrap();
    let err = rt.copy_out(&id, "/etc/passwd").await.unwrap_err().to_string();
    assert!(err.contains("/home/work"), "{err}");
    let err = rt.copy_out(&id, "/home/work/../../x").await.unwrap_err().to_string();
    assert!(err.contains("leaves"), "{err}");
    rt.destroy(&id).await.unwrap();
    assert!(matches!(rt.inspect(&id).await, Err(bai_agent_runtime::Error::NotFound { .. })));
    assert!(matches!(rt.inspect("../etc").await, Err(bai_agent_runtime::Error::NotFound { .. })));
}

#[tokio::test]
async fn missing_things_are_clear_errors() {
    let Some(rt) = docker().await else { return };
    let err = rt.inspect("bai-no-such-container").await.unwrap_err();
    assert!(matches!(err, bai_agent_runtime::Error::NotFound { kind: "container", .. }), "{err}");
    let err = rt.inspect_image("bai-no-such/image:0").await.unwrap_err();
    assert!(matches!(err, bai_agent_runtime::Error::NotFound { kind: "image", .. }), "{err}");
    let err = rt.create(&spec("bai-no-such/image:0", &unique_name("noimage"), &["true"])).await.unwrap_err();
    assert!(err.to_string().contains("bai-no-such/image"), "{err}");
    let err = bai_agent_runtime::runtime::docker::DockerRuntime::connect("unix:///nonexistent/docker.sock")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("/nonexistent/docker.sock"), "{err}");
}

#[tokio::test]
async fn docker_shared_memory_overflow_is_told_apart() {
    let Some(rt) = docker().await else { return };
    let Some(image) = service_env("BAI_TEST_KERNEL_IMAGE") else { return };
    let name = unique_name("shm");
    let _cleanup = Cleanup(name.clone());
    // touch 64 MiB of a /dev/shm mapping limited to 16 MiB: SIGBUS, exit 135
    let script = "import mmap, os\n\
                  fd = os.open('/dev/shm/big', os.O_CREAT | os.O_RDWR)\n\
                  os.ftruncate(fd, 64 << 20)\n\
                  m = mmap.mmap(fd, 64 << 20)\n\
                  for i in range(0, 64 << 20, 4096):\n    m[i] = 1\n";
    let mut s = spec(&image, &name, &["python3", "-c", script]);
    s.memory_limit = Some(512 << 20);
    s.shm_size = Some(16 << 20);
    let id = rt.create(&s).await.unwrap();
    rt.start(&id).await.unwrap();
    let termination = rt.wait(&id).await.unwrap();
    assert_eq!(termination, Termination::SharedMemoryExceeded);
    assert_eq!(termination.exit_code(), 135);
    assert_ne!(termination.reason(), Termination::OutOfMemory.reason());
    rt.destroy(&id).await.unwrap();
}
