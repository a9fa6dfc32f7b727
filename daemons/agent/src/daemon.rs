//! Composition: from an [`AgentConfig`] to a running agent — container backend, resources,
//! event bus, recovery of surviving kernels, the RPC and metrics servers, and the heartbeat,
//! lifecycle-sync and statistics timers. [`start`] returns a [`RunningAgent`] handle;
//! [`RunningAgent::shutdown`] stops taking RPCs, leaves every container running and sends
//! `agent_terminated`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bai_agent_runtime::accelerator::{AcceleratorPlugin, MockAccelerator};
use bai_agent_runtime::bus::{EventBus, MemoryBus, RedisBus};
use bai_agent_runtime::kernel::{KernelRuntime, NodeConfig};
use bai_agent_runtime::ports::PortPool;
use bai_agent_runtime::resources::{Allocator, AllocatorConfig, HostReserve, NodeCapacity};
use bai_agent_runtime::runtime::docker::DockerRuntime;
use bai_agent_runtime::runtime::process::ProcessRuntime;
use bai_agent_runtime::runtime::ContainerRuntime;
use bai_agent_runtime::scratch::{ScratchManager, ScratchMode};
use bai_core::Event;
use tokio::task::JoinHandle;

use crate::agent::{Agent, AgentSettings};
use crate::config::{AgentConfig, ContainerBackend, EventBackend, GlobalConfig, ScratchType};
use crate::error::{AgentError, Result};
use crate::metrics::AgentMetrics;
use crate::rpc::{AgentService, TlsFiles};

/// The default Redis URL when neither the file nor etcd names one.
pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379/4";

/// A running agent.
#[derive(Debug)]
pub struct RunningAgent {
    /// The agent.
    pub agent: Arc<Agent>,
    /// Where the RPC server listens.
    pub rpc_addr: SocketAddr,
    /// Where `GET /metrics` is served.
    pub metrics_addr: SocketAddr,
    /// The token the manager must present.
    token: String,
    service: AgentService,
    stop: tokio::sync::watch::Sender<bool>,
    servers: Vec<JoinHandle<Result<()>>>,
    timers: Vec<JoinHandle<()>>,
}

impl RunningAgent {
    /// The RPC token (for embedding: the all-in-one manager calls with it).
    pub fn token(&self) -> &str {
        &self.token
    }

    /// Stops taking RPCs, stops the timers and servers, leaves containers running and sends
    /// `agent_terminated("shutdown")`.
    pub async fn shutdown(self) -> Result<()> {
        self.service.stop_accepting();
        for t in &self.timers {
            t.abort();
        }
        let _ = self.stop.send(true);
        for s in self.servers {
            match tokio::time::timeout(Duration::from_secs(15), s).await {
                Ok(Ok(Err(e))) => tracing::warn!(error = %e, "server ended with an error"),
                Ok(_) => {}
                Err(_) => tracing::warn!("a server did not stop within 15 s"),
            }
        }
        self.agent.detach().await;
        self.agent.emit(Event::AgentTerminated { reason: "shutdown".into() }).await;
        Ok(())
    }

    /// Resolves when a server stops by itself (an error), with that error.
    pub async fn failed(&mut self) -> AgentError {
        if self.servers.is_empty() {
            return std::future::pending().await;
        }
        let (result, index, _) = futures::future::select_all(self.servers.iter_mut()).await;
        self.servers.remove(index);
        match result {
            Ok(Ok(())) => AgentError::Serve { what: "server", reason: "stopped unexpectedly".into() },
            Ok(Err(e)) => e,
            Err(e) => AgentError::Serve { what: "server", reason: e.to_string() },
        }
    }
}

async fn container_runtime(config: &AgentConfig) -> Result<Arc<dyn ContainerRuntime>> {
    Ok(match config.container.backend {
        ContainerBackend::Docker => {
            let address = if config.container.docker_host.is_empty() {
                std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".into())
            } else {
                config.container.docker_host.clone()
            };
            Arc::new(DockerRuntime::connect(&address).await?)
        }
        ContainerBackend::Process => Arc::new(ProcessRuntime::new(config.container.process_root.clone())?),
    })
}

/// Builds the event bus the configuration names.
pub async fn event_bus(config: &AgentConfig, global: &GlobalConfig) -> Result<Arc<dyn EventBus>> {
    Ok(match config.events.backend {
        EventBackend::Memory => Arc::new(MemoryBus::default()),
        EventBackend::Redis => {
            let url = if !config.events.redis_url.is_empty() {
                config.events.redis_url.clone()
            } else {
                global.redis_url.clone().unwrap_or_else(|| DEFAULT_REDIS_URL.into())
            };
            Arc::new(RedisBus::connect(&url).await?)
        }
    })
}

fn every(
    interval: Duration,
    agent: &Arc<Agent>,
    what: fn(Arc<Agent>) -> futures::future::BoxFuture<'static, ()>,
) -> JoinHandle<()> {
    let agent = agent.clone();
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            what(agent.clone()).await;
        }
    })
}

/// Starts an agent from its configuration. `bus` overrides the configured event bus (the
/// all-in-one mode passes the manager's in-process bus).
pub async fn start(config: AgentConfig, bus: Option<Arc<dyn EventBus>>) -> Result<RunningAgent> {
    config.validate()?;
    let global = GlobalConfig::fetch(&config.etcd).await?;
    let token = match config.local_token()?.or(global.rpc_token.clone()) {
        Some(t) => t,
        None => {
            return Err(AgentError::Config {
                field: "rpc.token".into(),
                reason: "no RPC token: set [rpc] token or token-file, BAI_AGENT_RPC_TOKEN, or the etcd key config/agent/rpc-token"
                    .into(),
            })
        }
    };
    bai_agent_runtime::rpc::TokenCheck::new(&token)
        .map_err(|e| AgentError::Config { field: "rpc.token".into(), reason: e.to_string() })?;
    let id = config.agent_id()?;

    let runtime = container_runtime(&config).await?;
    let reserve = HostReserve { cpu: config.resource.reserved_cpu, mem: config.resource.reserved_mem };
    let capacity = NodeCapacity::discover(&reserve)?;
    let plugins = config
        .resource
        .mock_accelerator
        .iter()
        .map(|m| MockAccelerator::new(m.clone()).map(|p| Arc::new(p) as Arc<dyn AcceleratorPlugin>))
        .collect::<bai_agent_runtime::Result<Vec<_>>>()?;
    let allocator_config = if config.resource.allocation_order.is_empty() {
        AllocatorConfig::default()
    } else {
        AllocatorConfig { allocation_order: config.resource.allocation_order.clone() }
    };
    let allocator = Arc::new(Allocator::new(&capacity, plugins, &allocator_config)?);
    let [first, last] = config.container.port_range;
    let ports = Arc::new(PortPool::new(first..=last));
    let mode = match config.container.scratch_type {
        ScratchType::Hostfile => ScratchMode::LoopFile,
        ScratchType::Memory => ScratchMode::Tmpfs,
        ScratchType::Hostdir => ScratchMode::Unlimited,
    };
    let scratch = ScratchManager::new(&config.container.scratch_root, mode)?;
    let node = NodeConfig {
        agent_id: id.clone(),
        vfolder_root: config.container.vfolder_root.clone(),
        default_scratch_quota: config.container.scratch_size.bytes(),
        stop_timeout: AgentConfig::seconds(config.container.stop_timeout),
        bind_host: config.container.bind_host.clone(),
    };
    let kernels = KernelRuntime::new(runtime, allocator, ports, scratch, node);
    let bus = match bus {
        Some(b) => b,
        None => event_bus(&config, &global).await?,
    };

    let rpc_listener = tokio::net::TcpListener::bind(config.agent.rpc_listen).await.map_err(|e| AgentError::Serve {
        what: "RPC server",
        reason: format!("cannot listen on {}: {e}", config.agent.rpc_listen),
    })?;
    let metrics_listener =
        tokio::net::TcpListener::bind(config.agent.metrics_listen).await.map_err(|e| AgentError::Serve {
            what: "metrics server",
            reason: format!("cannot listen on {}: {e}", config.agent.metrics_listen),
        })?;
    let rpc_addr =
        rpc_listener.local_addr().map_err(|e| AgentError::Serve { what: "RPC server", reason: e.to_string() })?;
    let metrics_addr = metrics_listener
        .local_addr()
        .map_err(|e| AgentError::Serve { what: "metrics server", reason: e.to_string() })?;

    let settings = AgentSettings {
        id: id.clone(),
        region: config.agent.region.clone(),
        scaling_group: config.agent.scaling_group.clone(),
        rpc_addr: format!("{}:{}", config.advertised_host(), rpc_addr.port()),
        public_host: config.advertised_host(),
        heartbeat_interval: AgentConfig::seconds(config.agent.heartbeat_interval),
        sync_interval: AgentConfig::seconds(config.agent.sync_interval),
        stat_interval: AgentConfig::seconds(config.agent.stat_interval),
    };
    let metrics = Arc::new(AgentMetrics::new(id.as_str()));
    let agent = Arc::new(Agent::new(settings.clone(), kernels, bus.clone(), metrics.clone())?);
    let report = agent.recover().await?;
    tracing::info!(
        agent = %id,
        recovered = report.recovered.len(),
        ended = report.ended.len(),
        failed = report.failed.len(),
        backend = agent.kernels().runtime().name(),
        events = bus.name(),
        "agent state recovered"
    );

    let (stop, stopped) = tokio::sync::watch::channel(false);
    let wait_stop = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let service = AgentService::new(agent.clone());
    let tls = match (&config.rpc.tls_cert, &config.rpc.tls_key) {
        (Some(cert), Some(key)) => {
            Some(TlsFiles { cert: cert.clone(), key: key.clone(), client_ca: config.rpc.tls_client_ca.clone() })
        }
        _ => None,
    };
    let rpc_server = {
        let (service, token, shutdown) = (service.clone(), token.clone(), wait_stop(stopped.clone()));
        tokio::spawn(async move { crate::rpc::serve(rpc_listener, service, &token, tls, shutdown).await })
    };
    let metrics_server = {
        let shutdown = wait_stop(stopped.clone());
        let metrics = metrics.clone();
        tokio::spawn(async move {
            crate::metrics::serve(metrics_listener, metrics, shutdown)
                .await
                .map_err(|e| AgentError::Serve { what: "metrics server", reason: e.to_string() })
        })
    };

    agent.emit(Event::AgentStarted { reason: "self-started".into() }).await;
    let timers = vec![
        every(settings.heartbeat_interval, &agent, |a| Box::pin(async move { a.heartbeat().await })),
        every(settings.sync_interval, &agent, |a| Box::pin(async move { a.sync_once().await })),
        every(settings.stat_interval, &agent, |a| Box::pin(async move { a.collect_stats().await })),
    ];
    tracing::info!(agent = %id, rpc = %rpc_addr, metrics = %metrics_addr, "agent started");
    Ok(RunningAgent {
        agent,
        rpc_addr,
        metrics_addr,
        token,
        service,
        stop,
        servers: vec![rpc_server, metrics_server],
        timers,
    })
}
