//! Session creation through the manager's API against a bare container start of the same image,
//! in the same run: the whole path a user waits for — signed `POST /session`, the scheduler
//! pass, dispatch over gRPC, the agent's kernel creation (allocation, host ports, scratch,
//! labels, create + start) and the events that make the session RUNNING.
//!
//! ```text
//! cargo run --release -p bai-examples --example session_create_latency -- [--image IMAGE] [--runs N]
//! ```
//!
//! It starts an all-in-one manager (SQLite, an embedded agent on Docker at `DOCKER_HOST` or the
//! default socket) in a temporary directory. Each run times (a) a bare create + start of the
//! image through the Docker API, (b) `Client::create_session` until it answers RUNNING, then
//! destroys both. The last line is `bare_ms=<median> api_ms=<median> ratio=<api/bare>`.

use std::time::Instant;

use bai_agent::config::ContainerBackend;
use bai_agent_runtime::runtime::docker::DockerRuntime;
use bai_agent_runtime::runtime::ContainerRuntime;
use bai_client::{Client, Config, SessionSpec};
use bai_manager::local::{self, LocalManager, EXAMPLE_USER};

#[path = "common/bare.rs"]
mod bare;

use bare::{bare_start, median};

#[tokio::main(flavor = "multi_thread")]
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
    if runs == 0 {
        return Err("--runs must be at least 1".into());
    }
    let docker = DockerRuntime::connect_default().await?;
    docker.inspect_image(&image).await.map_err(|e| format!("{e} (build it with scripts/build-kernel-images)"))?;

    let dir = tempfile::tempdir()?;
    let (config, mut agent) = local::configs(dir.path());
    agent.agent.id = format!("i-create-latency-{}", std::process::id());
    agent.container.backend = ContainerBackend::Docker;
    agent.container.docker_host =
        std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".to_string());
    agent.container.port_range = [23600, 23639];
    let local = LocalManager::start_with(config, agent).await?;
    let mut client_config = Config::new(&local.endpoint(), EXAMPLE_USER.0, EXAMPLE_USER.1)?;
    client_config.read_timeout = None;
    let user = Client::new(client_config)?;

    let (mut bare, mut api) = (Vec::new(), Vec::new());
    for i in 0..runs {
        bare.push(bare_start(&docker, &image, format!("bai-create-latency-bare-{}-{i}", std::process::id())).await?);

        let name = format!("latency-{i}");
        let spec = SessionSpec::new(image.clone()).name(name.clone()).resource("cpu", "1").resource("mem", "256m");
        let started = Instant::now();
        let created = user.create_session(&spec).await?;
        let took = started.elapsed();
        if created.status != "RUNNING" {
            return Err(format!("run {i}: the session is {} ({created:?})", created.status).into());
        }
        api.push(took);
        user.destroy_session(&name, true).await?;
        eprintln!(
            "  run {}: bare {:.1} ms, API {:.1} ms",
            i + 1,
            bare[i].as_secs_f64() * 1000.0,
            took.as_secs_f64() * 1000.0
        );
    }
    local.shutdown().await;
    let (b, a) = (median(bare), median(api));
    println!("image={image} runs={runs}");
    println!("bare_ms={b:.1} api_ms={a:.1} ratio={:.2}", a / b.max(f64::MIN_POSITIVE));
    Ok(())
}
