//! Folders mounted into sessions, end to end on Docker: the SDK creates a folder and uploads
//! to it, a session mounts it (by name, optionally at another directory), code in the kernel
//! reads and writes it, and the folder API sees what the kernel wrote. Needs
//! `BAI_TEST_DOCKER_HOST` and `BAI_TEST_KERNEL_IMAGE` (scripts/test sets them).

use std::time::Duration;

use bai_agent::config::ContainerBackend;
use bai_client::{Client, Config, NewVFolder, SessionSpec};
use bai_manager::local::{self, LocalManager, EXAMPLE_USER};
use bai_test_support::{service_env, AgentContainers};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn folders_mount_into_docker_sessions() {
    let (Some(docker), Some(image)) = (service_env("BAI_TEST_DOCKER_HOST"), service_env("BAI_TEST_KERNEL_IMAGE"))
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (config, mut agent) = local::configs(dir.path());
    agent.agent.id = format!("i-mounts-{}", std::process::id());
    agent.container.backend = ContainerBackend::Docker;
    agent.container.docker_host = docker.clone();
    let _containers = AgentContainers { docker, agent: agent.agent.id.clone() };
    let local = LocalManager::start_with(config, agent).await.unwrap();
    let user = Client::new(Config::new(&local.endpoint(), EXAMPLE_USER.0, EXAMPLE_USER.1).unwrap()).unwrap();

    user.create_vfolder(&NewVFolder { name: "mdata".into(), ..NewVFolder::default() }).await.unwrap();
    let input = dir.path().join("in.txt");
    std::fs::write(&input, "from the host").unwrap();
    user.vfolder_upload("mdata", &input, "in.txt", &bai_client::vfolder::no_progress).await.unwrap();

    // Refused before anything is stored: an unknown folder, a map entry without a mount, a
    // target outside /home/work.
    let bad = |spec: SessionSpec| {
        let user = user.clone();
        async move { user.create_session(&spec).await.unwrap_err() }
    };
    let base = || SessionSpec::new(&image).name("mounts-bad").resource("cpu", "1").resource("mem", "256m");
    let unknown = bad(base().mount("no-such-folder")).await;
    assert_eq!(unknown.status(), Some(404), "{unknown}");
    assert!(unknown.to_string().contains("no-such-folder"), "{unknown}");
    let mut unmounted = base();
    unmounted.mount_map.insert("mdata".into(), "/home/work/x".into());
    assert_eq!(bad(unmounted).await.status(), Some(400));
    let mut outside = base().mount("mdata");
    outside.mount_map.insert("mdata".into(), "/etc".into());
    let err = bad(outside).await;
    assert!(err.to_string().contains("config.mount_map.mdata"), "{err}");
    assert!(user.all_sessions(&bai_client::StatusFilter::All, None).await.unwrap().is_empty());

    // Mounted at /home/work/mdata and, in a second session, at /home/work/data.
    let mut spec =
        SessionSpec::new(&image).name("mounts-1").resource("cpu", "1").resource("mem", "256m").mount("mdata");
    spec.max_wait_seconds = 120;
    let created = user.create_session(&spec).await.unwrap();
    assert_eq!(created.status, "RUNNING", "{created:?}");
    let code =
        "print(open('/home/work/mdata/in.txt').read())\n_ = open('/home/work/mdata/out.txt', 'w').write('from the kernel')";
    let out = tokio::time::timeout(Duration::from_secs(60), user.run_code("mounts-1", code)).await.unwrap().unwrap();
    assert_eq!((out.stdout.as_str(), out.exit_code), ("from the host\n", 0), "{out:?}");
    let files = user.vfolder_files("mdata", ".").await.unwrap();
    assert!(files.iter().any(|f| f.filename == "out.txt" && f.size == 15), "{files:?}");

    let mut spec =
        SessionSpec::new(&image).name("mounts-2").resource("cpu", "1").resource("mem", "256m").mount("mdata");
    spec.mount_map.insert("mdata".into(), "/home/work/data".into());
    spec.max_wait_seconds = 120;
    assert_eq!(user.create_session(&spec).await.unwrap().status, "RUNNING");
    let out = user.run_code("mounts-2", "import os\nprint(sorted(os.listdir('/home/work/data')))").await.unwrap();
    assert_eq!(out.stdout, "['in.txt', 'out.txt']\n", "{out:?}");

    for name in ["mounts-1", "mounts-2"] {
        user.destroy_session(name, true).await.unwrap();
    }
    local.shutdown().await;
}
