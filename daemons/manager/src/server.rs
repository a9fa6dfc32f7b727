//! Composition: from a [`ManagerConfig`] to a running manager — database, event bus, agent
//! clients, the [`Manager`] core and its loops, and the HTTP API. [`start`] returns a
//! [`RunningManager`]; with [`StartOptions::embedded_agent`] it also runs an agent in the same
//! process on the same in-process bus (the all-in-one mode of `bai-manager start-server
//! --all-in-one` and of the quickstart).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use bai_agent::config::AgentConfig;
use bai_agent::daemon::RunningAgent;
use bai_agent_runtime::bus::{EventBus, MemoryBus, RedisBus};
use sea_orm::DatabaseConnection;
use tokio::task::JoinHandle;

use crate::agent_client::AgentClients;
use crate::api::keypairs::DbKeypairs;
use crate::api::ratelimit::{RateLimiter, RedisRateLimiter};
use crate::api::{ApiRouter, ApiState, CachedKeypairs, InMemoryRateLimiter, KeypairStore};
use crate::config::{ConfigError, EventBackend, ManagerConfig};
use crate::manager::Manager;
use crate::metrics::{ManagerMetrics, ServiceDiscovery};
use crate::shared_config::{ManagerNode, Registration, SharedConfig};

/// Why the manager could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A configuration value.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The database.
    #[error("database: {0}")]
    Db(#[from] crate::db::DbError),
    /// The event bus or another node-side piece.
    #[error("{0}")]
    Runtime(#[from] bai_agent_runtime::Error),
    /// The embedded agent.
    #[error("embedded agent: {0}")]
    Agent(#[from] bai_agent::AgentError),
    /// The embedded agent did not register with the manager in time.
    #[error("the embedded agent did not register within 10 s")]
    AgentNotRegistered,
    /// A listener.
    #[error("cannot listen on {addr}: {reason}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        reason: String,
    },
    /// The agent clients.
    #[error("{0}")]
    Clients(#[from] crate::agent_client::AgentCallError),
    /// The API's TLS certificate or key (`[manager] ssl-cert`, `ssl-privkey`), naming the file.
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
}

/// Options beyond the configuration file.
#[derive(Debug, Clone, Default)]
pub struct StartOptions {
    /// Runs this agent in the same process, on the manager's bus, with the manager's agent
    /// token and the manager's storage root as its folder root (its `[rpc] token`, `[events]`
    /// and `[container] vfolder-root` settings are replaced).
    pub embedded_agent: Option<AgentConfig>,
    /// Loads this fixture (JSON text) after migrating, unless the database already has users.
    pub fixture: Option<String>,
}

/// A running manager.
#[derive(Debug)]
pub struct RunningManager {
    /// The core.
    pub manager: Arc<Manager>,
    /// Where the API listens.
    pub api_addr: SocketAddr,
    /// Whether the API is served over TLS (`[manager] ssl-enabled`).
    pub api_tls: bool,
    /// Where the Prometheus metrics (`/metrics`, `/metrics/service_discovery`) are served.
    pub metrics_addr: SocketAddr,
    /// The embedded agent, in the all-in-one mode.
    pub agent: Option<RunningAgent>,
    /// The cluster's shared configuration (etcd, the fallback file, or empty in memory).
    pub shared: Arc<SharedConfig>,
    /// This manager under `nodes/manager/<id>`, removed on shutdown.
    registration: Option<Registration>,
    stop: tokio::sync::watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    server: JoinHandle<std::io::Result<()>>,
}

impl RunningManager {
    /// The API endpoint: `https://<api_addr>` with TLS, else `http://<api_addr>` (with an
    /// unspecified listen address such as `0.0.0.0`, clients use a reachable host instead).
    pub fn endpoint(&self) -> String {
        format!("{}://{}", if self.api_tls { "https" } else { "http" }, self.api_addr)
    }

    /// Deregisters the manager (`nodes/manager/<id>`), stops the API, the loops, the shared
    /// configuration's watch and the embedded agent (whose kernels keep running).
    pub async fn shutdown(self) {
        if let Some(registration) = self.registration {
            registration.close().await;
        }
        self.shared.close();
        let _ = self.stop.send(true);
        for t in &self.tasks {
            t.abort();
        }
        let _ = tokio::time::timeout(std::time::Duration::from_secs(10), self.server).await;
        if let Some(agent) = self.agent {
            if let Err(e) = agent.shutdown().await {
                tracing::warn!(error = %e, "embedded agent shutdown");
            }
        }
    }

    /// Resolves if the API server stops by itself.
    pub async fn failed(&mut self) -> String {
        match (&mut self.server).await {
            Ok(Ok(())) => "the API server stopped".into(),
            Ok(Err(e)) => format!("the API server failed: {e}"),
            Err(e) => format!("the API server task failed: {e}"),
        }
    }
}

/// The agents' RPC clients of `config` (`[agent-rpc]`: TLS settings) sending `token`.
pub fn agent_clients(config: &ManagerConfig, token: &str) -> Result<Arc<AgentClients>, StartError> {
    let tls = match &config.agent_rpc.tls_ca {
        Some(ca) => {
            let client = config.agent_rpc.tls_cert.as_deref().zip(config.agent_rpc.tls_key.as_deref());
            Some(AgentClients::tls_from_files(ca, client)?)
        }
        None => None,
    };
    Ok(Arc::new(AgentClients::new(token, tls)?))
}

/// The API's state: keypairs from the database (cached), rate limits, and the manager core and
/// database as services (`state.service::<Manager>()`, `state.service::<DatabaseConnection>()`).
pub fn api_state(manager: Arc<Manager>, keypairs: Arc<dyn KeypairStore>) -> ApiState {
    api_state_with_rate_limiter(manager, keypairs, Arc::new(InMemoryRateLimiter::default()))
}

/// [`api_state`] with the given rate limiter ([`rate_limiter`] picks the configured one).
pub fn api_state_with_rate_limiter(
    manager: Arc<Manager>,
    keypairs: Arc<dyn KeypairStore>,
    rate_limiter: Arc<dyn RateLimiter>,
) -> ApiState {
    let state = ApiState::new(keypairs, rate_limiter)
        .with_manager_version(crate::VERSION)
        .with_service(Arc::new(manager.db().clone()));
    // The API request metrics (`state.service::<ManagerMetrics>()`), when the manager has them.
    let state = match manager.metrics() {
        Some(metrics) => state.with_service(metrics.clone()),
        None => state,
    };
    state.with_service(manager)
}

/// The rate limiter for this configuration: with `[events] backend = "redis"` (a cluster) a
/// [`RedisRateLimiter`] on the events' Redis, shared by every manager; otherwise one in this
/// process.
pub fn rate_limiter(config: &ManagerConfig) -> Result<Arc<dyn RateLimiter>, StartError> {
    Ok(match config.events.backend {
        EventBackend::Memory => Arc::new(InMemoryRateLimiter::default()),
        EventBackend::Redis => {
            // The same URL as the event bus (see `bus`).
            let url =
                if config.events.redis_url.is_empty() { "redis://127.0.0.1:6379/4" } else { &config.events.redis_url };
            let limiter = RedisRateLimiter::new(url, crate::api::ratelimit::DEFAULT_WINDOW)
                .map_err(|e| ConfigError { field: "events.redis-url".into(), reason: e.to_string() })?;
            Arc::new(limiter)
        }
    })
}

/// Every route of the API.
pub fn app(state: ApiState) -> Router {
    ApiRouter::new()
        .signed(
            Router::new()
                .merge(crate::api::session::routes())
                .merge(crate::api::events::routes())
                .merge(crate::api::stream::routes())
                .merge(crate::api::apps::routes())
                .merge(crate::api::gql::routes())
                .merge(crate::api::resource::routes())
                .merge(crate::api::vfolder::routes())
                .merge(crate::api::config::routes()),
        )
        .public(
            crate::api::vfolder::public_routes()
                .merge(crate::api::apps::public_routes())
                .merge(crate::api::console::public_routes())
                .merge(crate::api::openapi::routes()),
        )
        .build(state)
}

async fn bus(config: &ManagerConfig, redis_url: Option<String>) -> Result<Arc<dyn EventBus>, StartError> {
    Ok(match config.events.backend {
        EventBackend::Memory => Arc::new(MemoryBus::default()),
        EventBackend::Redis => {
            let url = if config.events.redis_url.is_empty() {
                redis_url.unwrap_or_else(|| "redis://127.0.0.1:6379/4".into())
            } else {
                config.events.redis_url.clone()
            };
            Arc::new(RedisBus::connect(&url).await?)
        }
    })
}

/// Connects to the database and migrates it (what `schema oneshot` does).
pub async fn database(config: &ManagerConfig) -> Result<DatabaseConnection, StartError> {
    if let Some(path) = config.db.url.strip_prefix("sqlite://").map(|p| p.split('?').next().unwrap_or(p)) {
        if let Some(dir) = std::path::Path::new(path).parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| ConfigError {
                field: "db.url".into(),
                reason: format!("cannot create {}: {e}", dir.display()),
            })?;
        }
    }
    let db = crate::db::connect(&config.db.url).await?;
    crate::db::migrate(&db).await?;
    Ok(db)
}

/// Starts a manager.
///
/// The shared configuration ([`SharedConfig::connect`]) is read first: where the file leaves
/// them unset, its `config/redis/…` gives the Redis URL, `config/agent/rpc-token` the agents'
/// token and `config/watcher/token` the watchers'. Its `volumes/` keys define the storage hosts
/// (live), and the manager registers itself under `nodes/manager/<id>`.
pub async fn start(mut config: ManagerConfig, options: StartOptions) -> Result<RunningManager, StartError> {
    config.validate()?;
    // Read the certificate first: a bad one stops the start before anything runs.
    let api_tls = match config.api_tls_files()? {
        Some((cert, key)) => Some(crate::tls::server_config(cert, key)?),
        None => None,
    };
    // The idle checkers' settings: the file's, replaced by etcd's where it has them.
    let mut idle_section = config.idle.clone();
    crate::idle::fetch_etcd(&config.etcd, &mut idle_section).await?;
    let idle = crate::idle::IdleConfig::from_section(&idle_section)?;
    let db = database(&config).await?;
    if let Some(fixture) = &options.fixture {
        if crate::db::repo::list_users(&db, None).await?.is_empty() {
            let value: serde_json::Value = serde_json::from_str(fixture)
                .map_err(|e| ConfigError { field: "fixture".into(), reason: e.to_string() })?;
            crate::db::repo::populate_fixture(&db, &value).await?;
        }
    }
    let shared = SharedConfig::connect(&config.etcd).await?;
    let global = shared.global();
    tracing::info!(source = %shared.source(), keys = shared.current().len(), "shared configuration loaded");
    if config.events.redis_url.is_empty() {
        config.events.redis_url = global.redis_url.clone().unwrap_or_default();
    }
    if config.watcher.token.is_empty() {
        if let Some(token) = &global.watcher_token {
            if !token.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(ConfigError {
                    field: crate::shared_config::keys::WATCHER_TOKEN.into(),
                    reason: "must be printable ASCII without spaces".into(),
                }
                .into());
            }
            config.watcher.token = token.clone();
        }
    }
    let token = match config.local_agent_token()?.or(global.agent_rpc_token) {
        Some(t) => t,
        None if options.embedded_agent.is_some() => random_token(),
        None => {
            return Err(ConfigError {
                field: "agent-rpc.token".into(),
                reason: "no token for the agents' RPC: set [agent-rpc] token or token-file, or the shared key config/agent/rpc-token".into(),
            }
            .into())
        }
    };
    let bus = bus(&config, None).await?;
    let clients = agent_clients(&config, &token)?;
    let manager = Manager::new(
        &config.manager.id,
        db.clone(),
        bus.clone(),
        clients,
        ManagerConfig::seconds(config.manager.heartbeat_timeout),
    );
    manager.set_dispatch_timeout(ManagerConfig::seconds(config.manager.dispatch_timeout));
    manager.set_registries(crate::registry::RegistrySources::from_config(&config)?);
    manager.idle().set_config(idle);
    let metrics = Arc::new(ManagerMetrics::new());
    manager.set_metrics(metrics.clone());
    let metrics_listener = tokio::net::TcpListener::bind(config.manager.metrics_listen)
        .await
        .map_err(|e| StartError::Listen { addr: config.manager.metrics_listen, reason: e.to_string() })?;
    let metrics_addr = metrics_listener
        .local_addr()
        .map_err(|e| StartError::Listen { addr: config.manager.metrics_listen, reason: e.to_string() })?;
    let mut tasks = manager.spawn(ManagerConfig::seconds(config.manager.schedule_interval));
    let agent = match options.embedded_agent {
        Some(mut agent_config) => {
            // The agent's first events (recovered kernels, its start) must find the consumer.
            if !manager.consuming(std::time::Duration::from_secs(10)).await {
                tracing::warn!("the event consumer has not started; the embedded agent starts anyway");
            }
            agent_config.rpc.token = Some(token.clone());
            agent_config.rpc.token_file = None;
            // Folders are mounted from where this manager keeps them.
            agent_config.container.vfolder_root = config.storage.root.clone();
            Some(bai_agent::daemon::start(agent_config, Some(bus.clone())).await?)
        }
        None => None,
    };
    let keypairs: Arc<dyn KeypairStore> = Arc::new(CachedKeypairs::new(DbKeypairs::new(db.clone())));
    let storage = Arc::new(crate::storage::Storage::new(&config.storage));
    let volumes = Arc::new(crate::volumes::Volumes::new((*storage).clone(), &shared));
    manager.set_volumes(volumes.clone());
    let watchers = Arc::new(crate::watcher_client::WatcherClient::new(&config.watcher)?);
    let router = app(api_state_with_rate_limiter(manager.clone(), keypairs, rate_limiter(&config)?)
        .with_service(storage)
        .with_service(volumes)
        .with_service(shared.clone())
        .with_service(watchers)
        .with_service(Arc::new(crate::api::Listener { tls: config.manager.ssl_enabled })));
    let listener = tokio::net::TcpListener::bind(config.manager.api_listen)
        .await
        .map_err(|e| StartError::Listen { addr: config.manager.api_listen, reason: e.to_string() })?;
    let api_addr = listener
        .local_addr()
        .map_err(|e| StartError::Listen { addr: config.manager.api_listen, reason: e.to_string() })?;
    let node = ManagerNode {
        id: config.manager.id.clone(),
        api: format!("{}://{api_addr}", if api_tls.is_some() { "https" } else { "http" }),
        version: crate::VERSION.to_string(),
    };
    let registration = shared
        .register_manager(node, ManagerConfig::seconds(config.etcd.lease_ttl))
        .await
        .map_err(|e| ConfigError { field: "etcd.endpoints".into(), reason: format!("registering the manager: {e}") })?;
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let shutdown = async move {
        let _ = stopped.wait_for(|s| *s).await;
    };
    let tls = api_tls.is_some();
    let server = match api_tls {
        Some(tls) => tokio::spawn(crate::api::serve_tls(listener, tls, router, shutdown)),
        None => tokio::spawn(crate::api::serve(listener, router, shutdown)),
    };
    let mut discovery = ServiceDiscovery::new(db.clone(), &config.manager.id, metrics_addr);
    if let Some(agent) = &agent {
        discovery = discovery.with_agent_metrics(agent.agent.settings().id.as_str(), agent.metrics_addr);
    }
    let mut metrics_stopped = stop.subscribe();
    tasks.push(tokio::spawn(async move {
        let shutdown = async move {
            let _ = metrics_stopped.wait_for(|s| *s).await;
        };
        if let Err(e) = crate::metrics::serve(metrics_listener, metrics, discovery, shutdown).await {
            tracing::warn!(error = %e, "the metrics server failed");
        }
    }));
    tracing::info!(api = %api_addr, tls, metrics = %metrics_addr, "manager started");
    Ok(RunningManager {
        manager,
        api_addr,
        api_tls: tls,
        metrics_addr,
        agent,
        shared,
        registration: Some(registration),
        stop,
        tasks,
        server,
    })
}

fn random_token() -> String {
    let mut bytes = [0u8; 24];
    getrandom::fill(&mut bytes).unwrap_or_default();
    hex::encode(bytes)
}
