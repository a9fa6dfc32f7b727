//! The baseline of the creation-latency examples: a bare create + start of an image through the
//! Docker API, and the median of a series of timings.

use std::time::{Duration, Instant};

use bai_agent_runtime::runtime::docker::DockerRuntime;
use bai_agent_runtime::runtime::{ContainerRuntime, ContainerSpec};

/// The median of `xs`, in milliseconds (0 for none).
pub fn median(mut xs: Vec<Duration>) -> f64 {
    xs.sort();
    xs.get(xs.len() / 2).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

/// Creates and starts `image` as container `name`, times that, and removes it.
pub async fn bare_start(
    docker: &DockerRuntime,
    image: &str,
    name: String,
) -> Result<Duration, Box<dyn std::error::Error>> {
    let spec = ContainerSpec { name, image: image.to_string(), init: true, ..Default::default() };
    let started = Instant::now();
    let id = docker.create(&spec).await?;
    docker.start(&id).await?;
    let took = started.elapsed();
    docker.destroy(&id).await?;
    Ok(took)
}
