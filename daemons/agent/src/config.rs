//! The agent's configuration: a TOML file (see `configs/agent.sample.toml`), overridden by
//! command-line flags and environment variables ([`Cli`]), with cluster-wide values (the RPC
//! token, the Redis address) read from etcd when etcd is configured and the file leaves them
//! unset.
//!
//! Every key is kebab-case; an unknown key is an error naming it, so a typo never silently
//! falls back to a default.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bai_agent_runtime::accelerator::mock::MockConfig;
use bai_core::BinarySize;
use serde::{Deserialize, Serialize};

use crate::error::{AgentError, Result};

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct AgentConfig {
    /// Identity and intervals.
    pub agent: AgentSection,
    /// The RPC server's authentication.
    pub rpc: RpcSection,
    /// Where events and heartbeats go.
    pub events: EventsSection,
    /// Cluster-wide settings.
    pub etcd: EtcdSection,
    /// Containers, ports and storage.
    pub container: ContainerSection,
    /// The node's resources.
    pub resource: ResourceSection,
    /// Log format and OpenTelemetry export.
    pub tracing: bai_telemetry::TracingConfig,
}

/// `[agent]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct AgentSection {
    /// The agent id; empty means `i-<hostname>`.
    pub id: String,
    /// The region reported in heartbeats.
    pub region: String,
    /// The scaling group (resource group) this agent serves.
    pub scaling_group: String,
    /// Where the gRPC server listens.
    pub rpc_listen: SocketAddr,
    /// The host the manager should call; empty means the listen address (or 127.0.0.1 when
    /// that is unspecified).
    pub advertised_host: String,
    /// Where `GET /metrics` is served.
    pub metrics_listen: SocketAddr,
    /// Seconds between heartbeats.
    pub heartbeat_interval: f64,
    /// Seconds between container lifecycle reconciliations.
    pub sync_interval: f64,
    /// Seconds between statistics sweeps.
    pub stat_interval: f64,
}

impl Default for AgentSection {
    fn default() -> Self {
        Self {
            id: String::new(),
            region: "local".into(),
            scaling_group: "default".into(),
            rpc_listen: SocketAddr::from(([0, 0, 0, 0], bai_agent_runtime::rpc::DEFAULT_RPC_PORT)),
            advertised_host: String::new(),
            metrics_listen: SocketAddr::from(([0, 0, 0, 0], 6003)),
            heartbeat_interval: 5.0,
            sync_interval: 10.0,
            stat_interval: 5.0,
        }
    }
}

/// `[rpc]`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct RpcSection {
    /// The shared token the manager presents (`authorization: Bearer <token>`).
    pub token: Option<String>,
    /// A file holding the token (its surrounding whitespace is ignored).
    pub token_file: Option<PathBuf>,
    /// PEM certificate of the server; with `tls-key`, the RPC is served over TLS.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of the server.
    pub tls_key: Option<PathBuf>,
    /// PEM CA bundle; when set, callers must present a client certificate it signed (mTLS).
    pub tls_client_ca: Option<PathBuf>,
}

/// The event transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EventBackend {
    /// Redis streams and pub/sub (a cluster).
    #[default]
    Redis,
    /// An in-process bus (the all-in-one embedded mode; events stay in this process).
    Memory,
}

/// `[events]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct EventsSection {
    /// `redis` or `memory`.
    pub backend: EventBackend,
    /// The Redis URL; empty means etcd's `config/redis/url`, else `redis://127.0.0.1:6379/4`.
    pub redis_url: String,
}

impl Default for EventsSection {
    fn default() -> Self {
        Self { backend: EventBackend::Redis, redis_url: String::new() }
    }
}

/// `[etcd]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct EtcdSection {
    /// etcd endpoints; empty means etcd is not used.
    pub endpoints: Vec<String>,
    /// The key namespace: keys are read under `/bai/<namespace>/`.
    pub namespace: String,
}

impl Default for EtcdSection {
    fn default() -> Self {
        Self { endpoints: Vec::new(), namespace: "local".into() }
    }
}

/// The container backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ContainerBackend {
    /// Docker Engine.
    #[default]
    Docker,
    /// Local processes (weak isolation; for machines without Docker).
    Process,
}

/// How kernel scratch space is provided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ScratchType {
    /// A sparse ext4 file per kernel, loop-mounted (quota enforced on disk).
    #[default]
    Hostfile,
    /// A sized tmpfs per kernel.
    Memory,
    /// A plain directory (no quota).
    Hostdir,
}

/// `[container]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct ContainerSection {
    /// `docker` or `process`.
    pub backend: ContainerBackend,
    /// The Docker address; empty means `DOCKER_HOST`, else the local socket.
    pub docker_host: String,
    /// The host address service ports are published on.
    pub bind_host: String,
    /// The host port range for service ports, inclusive.
    pub port_range: [u16; 2],
    /// Where kernels' scratch directories live.
    pub scratch_root: PathBuf,
    /// `hostfile`, `memory` or `hostdir`.
    pub scratch_type: ScratchType,
    /// The scratch quota of a kernel that does not ask for one (e.g. `10g`).
    pub scratch_size: BinarySize,
    /// The host directory virtual folders live under.
    pub vfolder_root: PathBuf,
    /// Seconds a container may take to stop before it is killed.
    pub stop_timeout: f64,
    /// Where the process backend keeps its kernels.
    pub process_root: PathBuf,
}

impl Default for ContainerSection {
    fn default() -> Self {
        Self {
            backend: ContainerBackend::Docker,
            docker_host: String::new(),
            bind_host: "0.0.0.0".into(),
            port_range: [30000, 31000],
            scratch_root: PathBuf::from("/var/lib/bai/scratch"),
            scratch_type: ScratchType::Hostfile,
            scratch_size: BinarySize::new(10 << 30),
            vfolder_root: PathBuf::from("/var/lib/bai/vfolders"),
            stop_timeout: 10.0,
            process_root: PathBuf::from("/var/lib/bai/process"),
        }
    }
}

/// `[resource]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct ResourceSection {
    /// CPUs kept for the host.
    pub reserved_cpu: rust_decimal::Decimal,
    /// Memory kept for the host.
    pub reserved_mem: BinarySize,
    /// Device allocation order (default `cuda, rocm, tpu, cpu, mem`).
    pub allocation_order: Vec<String>,
    /// Mock accelerators (`[[resource.mock-accelerator]]`), for demos and tests without GPUs.
    pub mock_accelerator: Vec<MockConfig>,
}

impl Default for ResourceSection {
    fn default() -> Self {
        Self {
            reserved_cpu: rust_decimal::Decimal::ONE,
            reserved_mem: BinarySize::new(1 << 30),
            allocation_order: Vec::new(),
            mock_accelerator: Vec::new(),
        }
    }
}

/// Command-line flags; each overrides the file's value and may come from the environment.
#[derive(Debug, Clone, Default, clap::Parser)]
#[command(name = "bai-agent", version = crate::VERSION, about = "The bai agent: runs the kernels of compute sessions on this node for the manager.")]
pub struct Cli {
    /// The TOML configuration file (see configs/agent.sample.toml).
    #[arg(long, short = 'c', env = "BAI_AGENT_CONFIG")]
    pub config: Option<PathBuf>,
    /// Print the documented sample configuration and exit.
    #[arg(long)]
    pub print_sample_config: bool,
    /// Check the configuration, print it resolved (token hidden) and exit.
    #[arg(long)]
    pub check_config: bool,
    /// The agent id (`[agent] id`).
    #[arg(long, env = "BAI_AGENT_ID")]
    pub id: Option<String>,
    /// The region reported in heartbeats (`[agent] region`).
    #[arg(long, env = "BAI_AGENT_REGION")]
    pub region: Option<String>,
    /// The scaling group this agent serves (`[agent] scaling-group`).
    #[arg(long, env = "BAI_AGENT_SCALING_GROUP")]
    pub scaling_group: Option<String>,
    /// The gRPC listen address (`[agent] rpc-listen`), default 0.0.0.0:6011.
    #[arg(long, env = "BAI_AGENT_RPC_LISTEN")]
    pub rpc_listen: Option<SocketAddr>,
    /// The host the manager should call (`[agent] advertised-host`).
    #[arg(long, env = "BAI_AGENT_ADVERTISED_HOST")]
    pub advertised_host: Option<String>,
    /// The metrics listen address (`[agent] metrics-listen`), default 0.0.0.0:6003.
    #[arg(long, env = "BAI_AGENT_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// Seconds between heartbeats (`[agent] heartbeat-interval`).
    #[arg(long, env = "BAI_AGENT_HEARTBEAT_INTERVAL")]
    pub heartbeat_interval: Option<f64>,
    /// Seconds between lifecycle reconciliations (`[agent] sync-interval`).
    #[arg(long, env = "BAI_AGENT_SYNC_INTERVAL")]
    pub sync_interval: Option<f64>,
    /// The shared RPC token (`[rpc] token`). Prefer the environment or a token file.
    #[arg(long, env = "BAI_AGENT_RPC_TOKEN", hide_env_values = true)]
    pub rpc_token: Option<String>,
    /// A file holding the RPC token (`[rpc] token-file`).
    #[arg(long, env = "BAI_AGENT_RPC_TOKEN_FILE")]
    pub rpc_token_file: Option<PathBuf>,
    /// The event transport, `redis` or `memory` (`[events] backend`).
    #[arg(long, env = "BAI_AGENT_EVENTS", value_parser = ["redis", "memory"])]
    pub events: Option<String>,
    /// The Redis URL (`[events] redis-url`).
    #[arg(long, env = "BAI_AGENT_REDIS_URL")]
    pub redis_url: Option<String>,
    /// etcd endpoints, comma-separated (`[etcd] endpoints`).
    #[arg(long, env = "BAI_AGENT_ETCD", value_delimiter = ',')]
    pub etcd: Option<Vec<String>>,
    /// The container backend, `docker` or `process` (`[container] backend`).
    #[arg(long, env = "BAI_AGENT_BACKEND", value_parser = ["docker", "process"])]
    pub backend: Option<String>,
    /// The Docker address (`[container] docker-host`).
    #[arg(long, env = "BAI_AGENT_DOCKER_HOST")]
    pub docker_host: Option<String>,
    /// The host address service ports are published on (`[container] bind-host`).
    #[arg(long, env = "BAI_AGENT_BIND_HOST")]
    pub bind_host: Option<String>,
    /// The scratch root directory (`[container] scratch-root`).
    #[arg(long, env = "BAI_AGENT_SCRATCH_ROOT")]
    pub scratch_root: Option<PathBuf>,
    /// The scratch type, `hostfile`, `memory` or `hostdir` (`[container] scratch-type`).
    #[arg(long, env = "BAI_AGENT_SCRATCH_TYPE", value_parser = ["hostfile", "memory", "hostdir"])]
    pub scratch_type: Option<String>,
    /// The virtual folder root (`[container] vfolder-root`).
    #[arg(long, env = "BAI_AGENT_VFOLDER_ROOT")]
    pub vfolder_root: Option<PathBuf>,
    /// The host port range for service ports, `FIRST-LAST` (`[container] port-range`).
    #[arg(long, env = "BAI_AGENT_PORT_RANGE")]
    pub port_range: Option<String>,
    /// The log format, `text` or `json` (`[tracing] log-format`).
    #[arg(long, env = "BAI_AGENT_LOG_FORMAT", value_parser = ["text", "json"])]
    pub log_format: Option<String>,
    /// The OTLP/gRPC endpoint spans are exported to (`[tracing] otlp-endpoint`), e.g.
    /// `http://otel-collector:4317`; unset means `OTEL_EXPORTER_OTLP_ENDPOINT`, else no export.
    #[arg(long, env = "BAI_AGENT_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
    /// Run something else than the agent.
    #[command(subcommand)]
    pub command: Option<SubCommand>,
}

/// `bai-agent <subcommand>`.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum SubCommand {
    /// Supervise the agent: run it, restart it after a crash, and let the manager or an
    /// operator start, stop and restart it over HTTP (default port 6009).
    Watcher(WatcherArgs),
}

/// `bai-agent watcher`.
#[derive(Debug, Clone, clap::Args)]
pub struct WatcherArgs {
    /// Where the watcher's API listens.
    #[arg(long, env = "BAI_WATCHER_LISTEN", default_value = "0.0.0.0:6009")]
    pub listen: SocketAddr,
    /// The token the watcher's API requires (`authorization: Bearer <token>`).
    #[arg(long, env = "BAI_WATCHER_TOKEN", hide_env_values = true)]
    pub token: String,
    /// The agent's arguments, after `--` (default: the same `--config` as the watcher's).
    #[arg(last = true)]
    pub agent_args: Vec<String>,
}

/// The documented sample configuration (`configs/agent.sample.toml`).
pub const SAMPLE: &str = include_str!("../configs/agent.sample.toml");

fn invalid(field: &str, reason: impl Into<String>) -> AgentError {
    AgentError::Config { field: field.to_string(), reason: reason.into() }
}

fn parse_enum<T: for<'de> Deserialize<'de>>(field: &str, value: &str) -> Result<T> {
    T::deserialize(serde::de::value::StrDeserializer::<serde::de::value::Error>::new(value))
        .map_err(|e| invalid(field, e.to_string()))
}

impl AgentConfig {
    /// Parses TOML text. Errors name the key and the line.
    pub fn from_toml(text: &str) -> Result<Self> {
        let config: Self = toml::from_str(text).map_err(|e| invalid("config file", e.to_string()))?;
        Ok(config)
    }

    /// Reads and parses a TOML file.
    pub fn load(path: &Path) -> Result<Self> {
        let text =
            std::fs::read_to_string(path).map_err(|e| invalid("config file", format!("{}: {e}", path.display())))?;
        Self::from_toml(&text).map_err(|e| match e {
            AgentError::Config { reason, .. } => invalid(&path.display().to_string(), reason),
            other => other,
        })
    }

    /// The file named by `cli` (or the defaults), with the flags applied, then validated.
    pub fn from_cli(cli: &Cli) -> Result<Self> {
        let mut config = match &cli.config {
            Some(path) => Self::load(path)?,
            None => Self::default(),
        };
        config.apply(cli)?;
        config.validate()?;
        Ok(config)
    }

    /// Applies the flags that were given.
    pub fn apply(&mut self, cli: &Cli) -> Result<()> {
        let set = |dst: &mut String, v: &Option<String>| {
            if let Some(v) = v {
                dst.clone_from(v);
            }
        };
        set(&mut self.agent.id, &cli.id);
        set(&mut self.agent.region, &cli.region);
        set(&mut self.agent.scaling_group, &cli.scaling_group);
        set(&mut self.agent.advertised_host, &cli.advertised_host);
        set(&mut self.events.redis_url, &cli.redis_url);
        set(&mut self.container.docker_host, &cli.docker_host);
        set(&mut self.container.bind_host, &cli.bind_host);
        if let Some(v) = cli.rpc_listen {
            self.agent.rpc_listen = v;
        }
        if let Some(v) = cli.metrics_listen {
            self.agent.metrics_listen = v;
        }
        if let Some(v) = cli.heartbeat_interval {
            self.agent.heartbeat_interval = v;
        }
        if let Some(v) = cli.sync_interval {
            self.agent.sync_interval = v;
        }
        if let Some(v) = &cli.rpc_token {
            self.rpc.token = Some(v.clone());
        }
        if let Some(v) = &cli.rpc_token_file {
            self.rpc.token_file = Some(v.clone());
        }
        if let Some(v) = &cli.events {
            self.events.backend = parse_enum("--events", v)?;
        }
        if let Some(v) = &cli.etcd {
            self.etcd.endpoints = v.iter().filter(|s| !s.trim().is_empty()).cloned().collect();
        }
        if let Some(v) = &cli.backend {
            self.container.backend = parse_enum("--backend", v)?;
        }
        if let Some(v) = &cli.scratch_type {
            self.container.scratch_type = parse_enum("--scratch-type", v)?;
        }
        if let Some(v) = &cli.scratch_root {
            self.container.scratch_root = v.clone();
        }
        if let Some(v) = &cli.vfolder_root {
            self.container.vfolder_root = v.clone();
        }
        if let Some(v) = &cli.log_format {
            self.tracing.log_format = v.parse().map_err(|e: bai_telemetry::Error| invalid("--log-format", e.reason))?;
        }
        if let Some(v) = &cli.otlp_endpoint {
            self.tracing.otlp_endpoint = v.trim().to_string();
        }
        if let Some(v) = &cli.port_range {
            let (a, b) =
                v.split_once('-').ok_or_else(|| invalid("--port-range", format!("{v:?} is not FIRST-LAST")))?;
            let parse = |s: &str| s.trim().parse::<u16>().map_err(|e| invalid("--port-range", format!("{s:?}: {e}")));
            self.container.port_range = [parse(a)?, parse(b)?];
        }
        Ok(())
    }

    /// Checks values that parse but make no sense.
    pub fn validate(&self) -> Result<()> {
        for (field, v) in [
            ("agent.heartbeat-interval", self.agent.heartbeat_interval),
            ("agent.sync-interval", self.agent.sync_interval),
            ("agent.stat-interval", self.agent.stat_interval),
            ("container.stop-timeout", self.container.stop_timeout),
        ] {
            if !(v.is_finite() && v > 0.0 && v <= 86_400.0) {
                return Err(invalid(field, format!("{v} is not a number of seconds in (0, 86400]")));
            }
        }
        if !self.agent.id.is_empty() {
            bai_core::AgentId::new(&self.agent.id).map_err(|e| invalid("agent.id", e.to_string()))?;
        }
        let [first, last] = self.container.port_range;
        if first == 0 || first > last {
            return Err(invalid(
                "container.port-range",
                format!("[{first}, {last}] is not a range of ports 1..=65535"),
            ));
        }
        if self.rpc.tls_cert.is_some() != self.rpc.tls_key.is_some() {
            return Err(invalid("rpc.tls-cert", "tls-cert and tls-key go together"));
        }
        if self.rpc.tls_client_ca.is_some() && self.rpc.tls_cert.is_none() {
            return Err(invalid("rpc.tls-client-ca", "mTLS needs tls-cert and tls-key too"));
        }
        self.tracing.validate("tracing").map_err(|e| invalid(&e.field, e.reason))?;
        Ok(())
    }

    /// The agent id: `[agent] id`, else `i-<hostname>`.
    pub fn agent_id(&self) -> Result<bai_core::AgentId> {
        let raw = if self.agent.id.is_empty() {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
            let host: String =
                host.trim().chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '-' }).collect();
            format!("i-{}", if host.is_empty() { "localhost" } else { host.as_str() })
        } else {
            self.agent.id.clone()
        };
        bai_core::AgentId::new(&raw).map_err(|e| invalid("agent.id", e.to_string()))
    }

    /// The host the manager should call.
    pub fn advertised_host(&self) -> String {
        if !self.agent.advertised_host.is_empty() {
            return self.agent.advertised_host.clone();
        }
        let ip = self.agent.rpc_listen.ip();
        if ip.is_unspecified() {
            "127.0.0.1".into()
        } else {
            ip.to_string()
        }
    }

    /// The RPC token from `[rpc] token` or `token-file`, if either is set.
    pub fn local_token(&self) -> Result<Option<String>> {
        if let Some(token) = &self.rpc.token {
            return Ok(Some(token.clone()));
        }
        match &self.rpc.token_file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| invalid("rpc.token-file", format!("{}: {e}", path.display())))?;
                Ok(Some(text.trim().to_string()))
            }
            None => Ok(None),
        }
    }

    /// Seconds → a duration (validated beforehand).
    pub fn seconds(v: f64) -> Duration {
        Duration::from_secs_f64(v)
    }
}

/// Cluster-wide values read from etcd: `/bai/<namespace>/config/agent/rpc-token` and
/// `/bai/<namespace>/config/redis/url`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GlobalConfig {
    /// The shared RPC token.
    pub rpc_token: Option<String>,
    /// The Redis URL.
    pub redis_url: Option<String>,
}

impl GlobalConfig {
    /// Reads the global values, or nothing when etcd is not configured.
    pub async fn fetch(etcd: &EtcdSection) -> Result<Self> {
        if etcd.endpoints.is_empty() {
            return Ok(Self::default());
        }
        let unreachable =
            |e: etcd_client::Error| invalid("etcd.endpoints", format!("{}: {e}", etcd.endpoints.join(",")));
        let mut client =
            tokio::time::timeout(Duration::from_secs(10), etcd_client::Client::connect(&etcd.endpoints, None))
                .await
                .map_err(|_| invalid("etcd.endpoints", format!("{}: no answer within 10 s", etcd.endpoints.join(","))))?
                .map_err(unreachable)?;
        let prefix = format!("/bai/{}/config", etcd.namespace);
        let mut values = Vec::new();
        for key in [format!("{prefix}/agent/rpc-token"), format!("{prefix}/redis/url")] {
            let reply = client.get(key, None).await.map_err(unreachable)?;
            values.push(reply.kvs().first().and_then(|kv| kv.value_str().ok()).map(|s| s.trim().to_string()));
        }
        let redis_url = values.pop().flatten();
        let rpc_token = values.pop().flatten();
        Ok(Self { rpc_token: rpc_token.filter(|s| !s.is_empty()), redis_url: redis_url.filter(|s| !s.is_empty()) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn the_sample_parses_and_validates() {
        let config = AgentConfig::from_toml(SAMPLE).unwrap();
        config.validate().unwrap();
        assert_eq!(config.agent.rpc_listen.port(), 6011);
        assert_eq!(config.agent.metrics_listen.port(), 6003);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_named() {
        let err = AgentConfig::from_toml("[agent]\nrpc-lsiten = \"0.0.0.0:1\"\n").unwrap_err().to_string();
        assert!(err.contains("rpc-lsiten"), "{err}");
        let mut config = AgentConfig::default();
        config.agent.heartbeat_interval = 0.0;
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("agent.heartbeat-interval"), "{err}");
        let err = AgentConfig::from_toml("[container]\nbackend = \"podman\"\n").unwrap_err().to_string();
        assert!(err.contains("podman"), "{err}");
    }

    #[test]
    fn flags_override_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.toml");
        std::fs::write(&path, "[agent]\nid = \"i-file\"\nregion = \"r1\"\n[events]\nbackend = \"memory\"\n").unwrap();
        let cli = Cli::parse_from([
            "bai-agent",
            "--config",
            path.to_str().unwrap(),
            "--id",
            "i-flag",
            "--port-range",
            "40000-40010",
            "--backend",
            "process",
        ]);
        let config = AgentConfig::from_cli(&cli).unwrap();
        assert_eq!(config.agent.id, "i-flag");
        assert_eq!(config.agent.region, "r1");
        assert_eq!(config.events.backend, EventBackend::Memory);
        assert_eq!(config.container.port_range, [40000, 40010]);
        assert_eq!(config.container.backend, ContainerBackend::Process);
        assert_eq!(config.tracing, bai_telemetry::TracingConfig::default());
        let traced = Cli::parse_from(["bai-agent", "--log-format", "json", "--otlp-endpoint", "http://127.0.0.1:4317"]);
        let config = AgentConfig::from_cli(&traced).unwrap();
        assert_eq!(config.tracing.log_format, bai_telemetry::LogFormat::Json);
        assert_eq!(config.tracing.otlp_endpoint, "http://127.0.0.1:4317");
        let err = AgentConfig::from_cli(&Cli::parse_from(["bai-agent", "--otlp-endpoint", "collector:4317"]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("tracing.otlp-endpoint"), "{err}");
        let err = AgentConfig::from_toml("[tracing]\nsample-ratio = 2\n").unwrap().validate().unwrap_err().to_string();
        assert!(err.contains("tracing.sample-ratio"), "{err}");
        let bad = Cli::parse_from(["bai-agent", "--port-range", "5-1"]);
        let err = AgentConfig::from_cli(&bad).unwrap_err().to_string();
        assert!(err.contains("container.port-range"), "{err}");
    }
}
