//! [`DockerRuntime`]: the [`ContainerRuntime`] over the Docker Engine API (bollard), for
//! Docker Engine 20.10 and newer on a unix socket (or TCP). The API version is negotiated at
//! connect time, so an engine that only speaks API 1.41 works.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use async_trait::async_trait;
use bollard::errors::Error as BollardError;
use bollard::exec::{CreateExecOptions, StartExecOptions, StartExecResults};
use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, ContainerStateStatusEnum, HostConfig, PortBinding,
};
use bollard::query_parameters::{
    CreateContainerOptions, CreateImageOptions, DownloadFromContainerOptions, ListContainersOptions, ListImagesOptions,
    LogsOptions, RemoveContainerOptions, StatsOptions, StopContainerOptions, UploadToContainerOptions,
    WaitContainerOptions,
};
use bollard::Docker;
use futures::StreamExt;

use super::{
    ContainerInfo, ContainerRuntime, ContainerSpec, ContainerState, ContainerStats, ExecSession, ExecSpec, ImageInfo,
    Output, PortMapping, PullProgress, Termination,
};
use crate::error::{Error, Result};

/// The Docker Engine through bollard.
#[derive(Debug, Clone)]
pub struct DockerRuntime {
    docker: Docker,
    address: String,
}

fn engine(operation: &'static str) -> impl Fn(BollardError) -> Error {
    move |e| match e {
        BollardError::DockerResponseServerError { status_code: 404, message } => {
            Error::NotFound { kind: "container or image", id: message }
        }
        BollardError::DockerResponseServerError { message, .. } => Error::Engine { operation, message },
        other => Error::Engine { operation, message: other.to_string() },
    }
}

fn status_of(e: &BollardError) -> Option<u16> {
    match e {
        BollardError::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

impl DockerRuntime {
    /// Connects to `address` (`unix:///var/run/docker.sock`, a bare socket path, or
    /// `tcp://host:port` / `http://host:port`), negotiates the API version and pings.
    pub async fn connect(address: &str) -> Result<Self> {
        let unreachable = |message: String| Error::Unreachable { address: address.to_string(), message };
        let docker = if let Some(path) = address.strip_prefix("unix://") {
            Docker::connect_with_unix(path, 120, bollard::API_DEFAULT_VERSION)
        } else if address.starts_with('/') {
            Docker::connect_with_unix(address, 120, bollard::API_DEFAULT_VERSION)
        } else if let Some(rest) = address.strip_prefix("tcp://") {
            Docker::connect_with_http(&format!("http://{rest}"), 120, bollard::API_DEFAULT_VERSION)
        } else {
            Docker::connect_with_http(address, 120, bollard::API_DEFAULT_VERSION)
        }
        .map_err(|e| unreachable(e.to_string()))?;
        let docker = docker.negotiate_version().await.map_err(|e| unreachable(e.to_string()))?;
        docker.ping().await.map_err(|e| unreachable(e.to_string()))?;
        Ok(Self { docker, address: address.to_string() })
    }

    /// Connects to `DOCKER_HOST` or the default socket.
    pub async fn connect_default() -> Result<Self> {
        let address = std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".to_string());
        Self::connect(&address).await
    }

    /// The address this runtime talks to.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// The bollard client, for calls this trait does not cover.
    pub fn client(&self) -> &Docker {
        &self.docker
    }

    /// The engine's version string, e.g. `20.10.24+dfsg1`.
    pub async fn engine_version(&self) -> Result<String> {
        let v = self.docker.version().await.map_err(engine("version"))?;
        Ok(v.version.unwrap_or_default())
    }
}

fn create_body(spec: &ContainerSpec) -> ContainerCreateBody {
    let mut port_bindings: HashMap<String, Option<Vec<PortBinding>>> = HashMap::new();
    let mut exposed = Vec::new();
    for p in &spec.ports {
        let key = format!("{}/tcp", p.container_port);
        exposed.push(key.clone());
        port_bindings
            .entry(key)
            .or_insert_with(|| Some(Vec::new()))
            .get_or_insert_with(Vec::new)
            .push(PortBinding { host_ip: Some(p.host_ip.clone()), host_port: Some(p.host_port.to_string()) });
    }
    let binds: Vec<String> = spec
        .mounts
        .iter()
        .map(|m| format!("{}:{}:{}", m.source, m.target, if m.read_only { "ro" } else { "rw" }))
        .collect();
    let device_requests: Vec<bollard::models::DeviceRequest> = spec
        .devices
        .iter()
        .map(|d| bollard::models::DeviceRequest {
            driver: Some(d.driver.clone()),
            device_ids: Some(d.device_ids.clone()),
            capabilities: Some(d.capabilities.clone()),
            ..Default::default()
        })
        .collect();
    let device_nodes: Vec<bollard::models::DeviceMapping> = spec
        .device_nodes
        .iter()
        .map(|path| bollard::models::DeviceMapping {
            path_on_host: Some(path.clone()),
            path_in_container: Some(path.clone()),
            cgroup_permissions: Some("rwm".into()),
        })
        .collect();
    let host_config = HostConfig {
        devices: (!device_nodes.is_empty()).then_some(device_nodes),
        binds: (!binds.is_empty()).then_some(binds),
        memory: spec.memory_limit.and_then(|m| i64::try_from(m).ok()),
        memory_swap: spec.memory_limit.and_then(|m| i64::try_from(m).ok()),
        shm_size: spec.shm_size.and_then(|m| i64::try_from(m).ok()),
        cpuset_cpus: spec.cpuset_cpus.clone(),
        nano_cpus: spec.nano_cpus,
        port_bindings: (!port_bindings.is_empty()).then_some(port_bindings),
        device_requests: (!device_requests.is_empty()).then_some(device_requests),
        init: Some(spec.init),
        cap_add: Some(vec!["IPC_LOCK".into(), "SYS_NICE".into()]),
        ..Default::default()
    };
    ContainerCreateBody {
        image: Some(spec.image.clone()),
        entrypoint: spec.entrypoint.clone(),
        cmd: (!spec.cmd.is_empty()).then(|| spec.cmd.clone()),
        env: Some(spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
        labels: Some(spec.labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect()),
        working_dir: spec.working_dir.clone(),
        hostname: spec.hostname.clone(),
        exposed_ports: (!exposed.is_empty()).then_some(exposed),
        open_stdin: Some(spec.open_stdin),
        tty: Some(false),
        host_config: Some(host_config),
        ..Default::default()
    }
}

fn info_from(inspect: ContainerInspectResponse) -> ContainerInfo {
    let state = inspect.state.unwrap_or_default();
    let status = match state.status {
        Some(ContainerStateStatusEnum::CREATED) => ContainerState::Created,
        Some(ContainerStateStatusEnum::RUNNING) => ContainerState::Running,
        Some(ContainerStateStatusEnum::PAUSED) => ContainerState::Paused,
        Some(ContainerStateStatusEnum::RESTARTING) => ContainerState::Restarting,
        Some(ContainerStateStatusEnum::REMOVING) => ContainerState::Removing,
        Some(ContainerStateStatusEnum::DEAD) => ContainerState::Dead,
        Some(ContainerStateStatusEnum::STOPPING) => ContainerState::Running,
        _ => ContainerState::Exited,
    };
    let termination = matches!(status, ContainerState::Exited | ContainerState::Dead)
        .then(|| Termination::classify(state.exit_code.unwrap_or(0), state.oom_killed.unwrap_or(false)));
    let config = inspect.config.unwrap_or_default();
    let mut ports = Vec::new();
    if let Some(map) = inspect.network_settings.and_then(|n| n.ports) {
        for (key, bindings) in map {
            let Some(container_port) = key.split('/').next().and_then(|p| p.parse().ok()) else { continue };
            for b in bindings.unwrap_or_default() {
                if let Some(host_port) = b.host_port.and_then(|p| p.parse().ok()) {
                    ports.push(PortMapping { container_port, host_port, host_ip: b.host_ip.unwrap_or_default() });
                }
            }
        }
    }
    ports.sort_by_key(|p| (p.container_port, p.host_port));
    ContainerInfo {
        id: inspect.id.unwrap_or_default(),
        name: inspect.name.unwrap_or_default().trim_start_matches('/').to_string(),
        image: config.image.unwrap_or_default(),
        labels: config.labels.unwrap_or_default().into_iter().collect::<BTreeMap<_, _>>(),
        state: status,
        termination,
        pid: state.pid.filter(|p| *p > 0).and_then(|p| u32::try_from(p).ok()),
        ports,
    }
}

#[async_trait]
impl ContainerRuntime for DockerRuntime {
    fn name(&self) -> &'static str {
        "docker"
    }

    async fn create(&self, spec: &ContainerSpec) -> Result<String> {
        let options = CreateContainerOptions { name: Some(spec.name.clone()), ..Default::default() };
        let created =
            self.docker.create_container(Some(options), create_body(spec)).await.map_err(engine("create container"))?;
        Ok(created.id)
    }

    async fn start(&self, id: &str) -> Result<()> {
        self.docker.start_container(id, None).await.map_err(engine("start container"))
    }

    async fn stop(&self, id: &str, timeout: Duration) -> Result<()> {
        let options =
            StopContainerOptions { t: Some(i32::try_from(timeout.as_secs()).unwrap_or(i32::MAX)), signal: None };
        match self.docker.stop_container(id, Some(options)).await {
            Ok(()) => Ok(()),
            // already stopped, or gone
            Err(e) if matches!(status_of(&e), Some(304 | 404)) => Ok(()),
            Err(e) => Err(engine("stop container")(e)),
        }
    }

    async fn destroy(&self, id: &str) -> Result<()> {
        let options = RemoveContainerOptions { force: true, v: true, link: false };
        match self.docker.remove_container(id, Some(options)).await {
            Ok(()) => Ok(()),
            // gone already, or its removal is already in progress
            Err(e) if matches!(status_of(&e), Some(404 | 409)) => Ok(()),
            Err(e) => Err(engine("remove container")(e)),
        }
    }

    async fn inspect(&self, id: &str) -> Result<ContainerInfo> {
        match self.docker.inspect_container(id, None).await {
            Ok(inspect) => Ok(info_from(inspect)),
            Err(e) if status_of(&e) == Some(404) => Err(Error::NotFound { kind: "container", id: id.to_string() }),
            Err(e) => Err(engine("inspect container")(e)),
        }
    }

    async fn list(&self, labels: &[(&str, Option<&str>)]) -> Result<Vec<ContainerInfo>> {
        let filter: Vec<String> = labels
            .iter()
            .map(|(k, v)| match v {
                Some(v) => format!("{k}={v}"),
                None => k.to_string(),
            })
            .collect();
        let mut filters = HashMap::new();
        if !filter.is_empty() {
            filters.insert("label".to_string(), filter);
        }
        let options = ListContainersOptions { all: true, filters: Some(filters), ..Default::default() };
        let summaries = self.docker.list_containers(Some(options)).await.map_err(engine("list containers"))?;
        let mut out = Vec::with_capacity(summaries.len());
        for s in summaries {
            let Some(id) = s.id else { continue };
            match self.inspect(&id).await {
                Ok(info) => out.push(info),
                // removed between the list and the inspect
                Err(Error::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    async fn wait(&self, id: &str) -> Result<Termination> {
        let options = WaitContainerOptions { condition: "not-running".to_string() };
        let mut stream = self.docker.wait_container(id, Some(options));
        match stream.next().await {
            // bollard reports a non-zero exit as an error carrying the code: the exit itself
            // is read back from the inspection below, with the OOM flag
            None | Some(Ok(_)) | Some(Err(BollardError::DockerContainerWaitError { .. })) => {}
            Some(Err(e)) if status_of(&e) == Some(404) => {
                return Err(Error::NotFound { kind: "container", id: id.to_string() })
            }
            Some(Err(e)) => return Err(engine("wait for container")(e)),
        }
        let info = self.inspect(id).await?;
        info.termination.ok_or_else(|| Error::Engine {
            operation: "wait for container",
            message: "the container is still running".into(),
        })
    }

    async fn exec(&self, id: &str, spec: &ExecSpec) -> Result<ExecSession> {
        let env: Vec<String> = spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let options = CreateExecOptions {
            cmd: Some(spec.cmd.clone()),
            env: (!env.is_empty()).then_some(env),
            working_dir: spec.working_dir.clone(),
            user: spec.user.clone(),
            attach_stdin: Some(spec.stdin),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            tty: Some(false),
            ..Default::default()
        };
        let created = self.docker.create_exec(id, options).await.map_err(engine("create exec"))?;
        let started = self
            .docker
            .start_exec(&created.id, Some(StartExecOptions { detach: false, tty: false, output_capacity: None }))
            .await
            .map_err(engine("start exec"))?;
        match started {
            StartExecResults::Attached { output, input } => {
                let output = output.filter_map(|item| async move {
                    match item {
                        Ok(bollard::container::LogOutput::StdOut { message }) => Some(Ok(Output::Stdout(message))),
                        Ok(bollard::container::LogOutput::StdErr { message }) => Some(Ok(Output::Stderr(message))),
                        Ok(bollard::container::LogOutput::Console { message }) => Some(Ok(Output::Stdout(message))),
                        Ok(bollard::container::LogOutput::StdIn { .. }) => None,
                        Err(e) => Some(Err(engine("read exec output")(e))),
                    }
                });
                Ok(ExecSession { id: created.id, stdin: spec.stdin.then_some(input), output: Box::pin(output) })
            }
            StartExecResults::Detached => {
                Err(Error::Engine { operation: "start exec", message: "the engine detached the exec".into() })
            }
        }
    }

    async fn exec_exit_code(&self, exec_id: &str) -> Result<Option<i64>> {
        let inspect = self.docker.inspect_exec(exec_id).await.map_err(engine("inspect exec"))?;
        Ok(if inspect.running.unwrap_or(false) { None } else { inspect.exit_code })
    }

    async fn logs(&self, id: &str) -> Result<Vec<u8>> {
        let options = LogsOptions { stdout: true, stderr: true, tail: "all".into(), ..Default::default() };
        let mut stream = self.docker.logs(id, Some(options));
        let mut out = Vec::new();
        while let Some(item) = stream.next().await {
            out.extend_from_slice(&item.map_err(engine("read logs"))?.into_bytes());
        }
        Ok(out)
    }

    async fn stats(&self, id: &str) -> Result<ContainerStats> {
        let options = StatsOptions { stream: false, one_shot: true };
        let mut stream = self.docker.stats(id, Some(options));
        let Some(sample) = stream.next().await else {
            return Err(Error::Engine { operation: "read stats", message: "no sample".into() });
        };
        let s = sample.map_err(engine("read stats"))?;
        let cpu = s.cpu_stats.and_then(|c| c.cpu_usage).and_then(|u| u.total_usage).unwrap_or(0);
        let mem = s.memory_stats.unwrap_or_default();
        let (mut read, mut write) = (0, 0);
        for e in s.blkio_stats.and_then(|b| b.io_service_bytes_recursive).unwrap_or_default() {
            match e.op.as_deref().map(str::to_ascii_lowercase).as_deref() {
                Some("read") => read += e.value.unwrap_or(0),
                Some("write") => write += e.value.unwrap_or(0),
                _ => {}
            }
        }
        let (mut rx, mut tx) = (0, 0);
        for n in s.networks.unwrap_or_default().values() {
            rx += n.rx_bytes.unwrap_or(0);
            tx += n.tx_bytes.unwrap_or(0);
        }
        Ok(ContainerStats {
            cpu_used_ns: cpu,
            memory_bytes: mem.usage.unwrap_or(0),
            memory_limit_bytes: mem.limit.unwrap_or(0),
            io_read_bytes: read,
            io_write_bytes: write,
            net_rx_bytes: rx,
            net_tx_bytes: tx,
        })
    }

    async fn copy_in(&self, id: &str, dir: &str, tar: Vec<u8>) -> Result<()> {
        let options = UploadToContainerOptions { path: dir.to_string(), ..Default::default() };
        self.docker
            .upload_to_container(id, Some(options), bollard::body_full(tar.into()))
            .await
            .map_err(engine("copy into container"))
    }

    async fn copy_out(&self, id: &str, path: &str) -> Result<Vec<u8>> {
        let options = DownloadFromContainerOptions { path: path.to_string() };
        let mut stream = self.docker.download_from_container(id, Some(options));
        let mut out = Vec::new();
        while let Some(chunk) = stream.next().await {
            out.extend_from_slice(&chunk.map_err(engine("copy out of container"))?);
        }
        Ok(out)
    }

    async fn pull_image(&self, reference: &str, progress: &(dyn Fn(PullProgress) + Send + Sync)) -> Result<()> {
        let options = CreateImageOptions { from_image: Some(reference.to_string()), ..Default::default() };
        let mut stream = self.docker.create_image(Some(options), None, None);
        while let Some(item) = stream.next().await {
            let info = item.map_err(engine("pull image"))?;
            if let Some(message) = info.error_detail.and_then(|d| d.message) {
                return Err(Error::Engine { operation: "pull image", message });
            }
            let detail = info.progress_detail.unwrap_or_default();
            progress(PullProgress {
                layer: info.id,
                status: info.status.unwrap_or_default(),
                current: detail.current.and_then(|c| u64::try_from(c).ok()),
                total: detail.total.and_then(|t| u64::try_from(t).ok()),
            });
        }
        Ok(())
    }

    async fn list_images(&self) -> Result<Vec<ImageInfo>> {
        let images =
            self.docker.list_images(Some(ListImagesOptions::default())).await.map_err(engine("list images"))?;
        let mut out = Vec::with_capacity(images.len());
        for image in images {
            match self.inspect_image(&image.id).await {
                Ok(info) => out.push(info),
                Err(Error::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    async fn inspect_image(&self, reference: &str) -> Result<ImageInfo> {
        match self.docker.inspect_image(reference).await {
            Ok(image) => Ok(ImageInfo {
                id: image.id.unwrap_or_default(),
                tags: image.repo_tags.unwrap_or_default(),
                architecture: image.architecture.unwrap_or_default(),
                labels: image.config.and_then(|c| c.labels).unwrap_or_default().into_iter().collect(),
                size: image.size.and_then(|s| u64::try_from(s).ok()).unwrap_or(0),
            }),
            Err(e) if status_of(&e) == Some(404) => Err(Error::NotFound { kind: "image", id: reference.to_string() }),
            Err(e) => Err(engine("inspect image")(e)),
        }
    }

    async fn remove_image(&self, reference: &str) -> Result<()> {
        let options =
            bollard::query_parameters::RemoveImageOptionsBuilder::default().force(false).noprune(false).build();
        match self.docker.remove_image(reference, Some(options), None).await {
            Ok(_) => Ok(()),
            Err(e) if status_of(&e) == Some(404) => Err(Error::NotFound { kind: "image", id: reference.to_string() }),
            Err(e) => Err(engine("remove image")(e)),
        }
    }
}
