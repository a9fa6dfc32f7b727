//! Shared helpers of the integration tests: the Docker address from `scripts/test`, and small
//! images built locally (never pulled).

#![allow(dead_code)]

use std::io::Cursor;

use bai_agent_runtime::runtime::docker::DockerRuntime;
use bai_agent_runtime::runtime::ContainerRuntime;
use futures::StreamExt;

pub use bai_test_support::service_env;

/// The Docker runtime of `BAI_TEST_DOCKER_HOST`, or `None` when the tests run without services.
pub async fn docker() -> Option<DockerRuntime> {
    let host = service_env("BAI_TEST_DOCKER_HOST")?;
    Some(DockerRuntime::connect(&host).await.unwrap_or_else(|e| panic!("cannot connect to Docker at {host}: {e}")))
}

/// The tag of a tiny image made of the host's static busybox.
pub const BUSYBOX_IMAGE: &str = "bai-test/busybox:1";

/// Imports [`BUSYBOX_IMAGE`] from `/bin/busybox` (Debian's busybox-static) unless it exists.
pub async fn busybox_image(runtime: &DockerRuntime) -> String {
    if runtime.inspect_image(BUSYBOX_IMAGE).await.is_ok() {
        return BUSYBOX_IMAGE.to_string();
    }
    let busybox =
        std::fs::read("/bin/busybox").expect("/bin/busybox (Debian's busybox-static; scripts/test installs it)");
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(busybox.len() as u64);
    header.set_mode(0o755);
    header.set_cksum();
    builder.append_data(&mut header, "bin/busybox", Cursor::new(&busybox)).expect("tar");
    for applet in
        ["sh", "echo", "cat", "dd", "sleep", "head", "ls", "mkdir", "touch", "id", "kill", "true", "false", "env"]
    {
        let mut link = tar::Header::new_gnu();
        link.set_entry_type(tar::EntryType::Symlink);
        link.set_size(0);
        link.set_mode(0o777);
        builder.append_link(&mut link, format!("bin/{applet}"), "busybox").expect("tar");
    }
    for dir in ["tmp", "dev", "proc", "sys", "etc", "home/work"] {
        let mut d = tar::Header::new_gnu();
        d.set_entry_type(tar::EntryType::Directory);
        d.set_size(0);
        d.set_mode(0o1777);
        builder.append_data(&mut d, dir, std::io::empty()).expect("tar");
    }
    let tar = builder.into_inner().expect("tar");
    let options = bollard::query_parameters::CreateImageOptions {
        from_src: Some("-".into()),
        repo: Some("bai-test/busybox".into()),
        tag: Some("1".into()),
        ..Default::default()
    };
    let mut stream = runtime.client().create_image(Some(options), Some(bollard::body_full(tar.into())), None);
    while let Some(item) = stream.next().await {
        item.expect("docker import of the busybox image");
    }
    BUSYBOX_IMAGE.to_string()
}

/// A unique container name for a test.
pub fn unique_name(test: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!("bai-test-{test}-{}-{nanos}", std::process::id())
}
