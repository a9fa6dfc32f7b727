//! The `bai-manager` command line: `schema oneshot`, `fixture populate FILE`, `keypair create`,
//! `start-server [--all-in-one]`. `main.rs` parses [`Cli`] and calls [`run_once`] or [`start`].

use std::path::PathBuf;

use serde_json::json;

use crate::config::{ConfigError, EventBackend, ManagerConfig, SAMPLE};
use crate::db::repo;
use crate::server::{self, StartError, StartOptions};

/// The command line.
#[derive(Debug, clap::Parser)]
#[command(name = "bai-manager", version = crate::VERSION, about = "The bai manager: the API users and the official Backend.AI client talk to, the scheduler and the agent registry.")]
pub struct Cli {
    /// The TOML configuration file (see configs/manager.sample.toml).
    #[arg(long, short = 'c', env = "BAI_MANAGER_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// The database URL (`[db] url`): postgres://… or sqlite://PATH?mode=rwc.
    #[arg(long, env = "BAI_MANAGER_DB_URL", global = true)]
    pub db_url: Option<String>,
    /// The log format, `text` or `json` (`[tracing] log-format`).
    #[arg(long, env = "BAI_MANAGER_LOG_FORMAT", global = true, value_parser = ["text", "json"])]
    pub log_format: Option<String>,
    /// The OTLP/gRPC endpoint spans are exported to (`[tracing] otlp-endpoint`), e.g.
    /// `http://otel-collector:4317`; unset means `OTEL_EXPORTER_OTLP_ENDPOINT`, else no export.
    #[arg(long, env = "BAI_MANAGER_OTLP_ENDPOINT", global = true)]
    pub otlp_endpoint: Option<String>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Database schema commands.
    Schema {
        /// `oneshot`: create or migrate the schema.
        #[command(subcommand)]
        action: SchemaAction,
    },
    /// Fixture commands.
    Fixture {
        /// `populate FILE`.
        #[command(subcommand)]
        action: FixtureAction,
    },
    /// Keypair commands.
    Keypair {
        /// `create`.
        #[command(subcommand)]
        action: KeypairAction,
    },
    /// Image commands.
    Image {
        /// `rescan`.
        #[command(subcommand)]
        action: ImageAction,
    },
    /// Runs the manager.
    StartServer(StartArgs),
    /// Prints the documented sample configuration.
    PrintSampleConfig,
}

/// `schema …`.
#[derive(Debug, clap::Subcommand)]
pub enum SchemaAction {
    /// Creates or migrates the schema (idempotent).
    Oneshot,
}

/// `fixture …`.
#[derive(Debug, clap::Subcommand)]
pub enum FixtureAction {
    /// Loads a JSON fixture (the original's layout: table name → rows) in one transaction.
    Populate {
        /// The fixture file.
        file: PathBuf,
    },
}

/// `image …`.
#[derive(Debug, clap::Subcommand)]
pub enum ImageAction {
    /// Records the images of every live agent (needs `[agent-rpc] token`) and of every
    /// configured container registry (`[registries.*]`, etcd), printing progress; with
    /// `--registry`, that registry only.
    Rescan {
        /// Scan only this configured registry (and no agent).
        #[arg(long, short = 'r')]
        registry: Option<String>,
    },
}

/// `keypair …`.
#[derive(Debug, clap::Subcommand)]
pub enum KeypairAction {
    /// Creates a keypair and prints it. Creates the user (and the default domain, group,
    /// policy and scaling group) when missing.
    Create {
        /// A superadmin keypair.
        #[arg(long)]
        admin: bool,
        /// The owner's email (default admin@localhost with --admin).
        #[arg(long)]
        email: Option<String>,
        /// The keypair resource policy.
        #[arg(long, default_value = "default")]
        resource_policy: String,
    },
}

/// `start-server`.
#[derive(Debug, Clone, clap::Args)]
pub struct StartArgs {
    /// Also runs an agent in this process on an in-process bus (a whole cluster in one
    /// process); Docker is used when reachable, else local processes.
    #[arg(long)]
    pub all_in_one: bool,
    /// The API listen address (`[manager] api-listen`), default 0.0.0.0:8081.
    #[arg(long, env = "BAI_MANAGER_API_LISTEN")]
    pub api_listen: Option<std::net::SocketAddr>,
    /// The agents' RPC token (`[agent-rpc] token`).
    #[arg(long, env = "BAI_MANAGER_AGENT_TOKEN", hide_env_values = true)]
    pub agent_token: Option<String>,
    /// The Redis URL (`[events] redis-url`).
    #[arg(long, env = "BAI_MANAGER_REDIS_URL")]
    pub redis_url: Option<String>,
    /// Loads this fixture at start when the database has no users yet.
    #[arg(long)]
    pub fixture: Option<PathBuf>,
    /// The embedded agent's configuration file (with --all-in-one).
    #[arg(long)]
    pub agent_config: Option<PathBuf>,
}

/// A command's failure.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Configuration.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Start-up.
    #[error(transparent)]
    Start(#[from] StartError),
    /// Database.
    #[error("database: {0}")]
    Db(#[from] crate::db::DbError),
    /// Reading a file.
    #[error("{path}: {reason}")]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The command ran but did not succeed completely.
    #[error("{0}")]
    Failed(String),
}

fn load_config(cli: &Cli) -> Result<ManagerConfig, CliError> {
    let mut config = match &cli.config {
        Some(path) => ManagerConfig::load(path)?,
        None => ManagerConfig::default(),
    };
    if let Some(url) = &cli.db_url {
        config.db.url = url.clone();
    }
    if let Some(format) = &cli.log_format {
        config.tracing.log_format = format
            .parse()
            .map_err(|e: bai_telemetry::Error| ConfigError { field: "--log-format".into(), reason: e.reason })?;
    }
    if let Some(endpoint) = &cli.otlp_endpoint {
        config.tracing.otlp_endpoint = endpoint.trim().to_string();
    }
    config.validate()?;
    Ok(config)
}

/// The logging and tracing settings of this command line: the file's `[tracing]` with the
/// flags applied and the `OTEL_*` variables filling what both leave empty. Spans are exported
/// only by `start-server`; the other commands just log.
pub fn tracing_config(cli: &Cli) -> Result<bai_telemetry::TracingConfig, CliError> {
    if matches!(cli.command, Command::PrintSampleConfig) {
        return Ok(bai_telemetry::TracingConfig::default());
    }
    let mut tracing = load_config(cli)?.tracing.with_env(|k| std::env::var(k).ok());
    if !matches!(cli.command, Command::StartServer(_)) {
        tracing.otlp_endpoint.clear();
    }
    tracing.validate("tracing").map_err(|e| ConfigError { field: e.field, reason: e.reason })?;
    Ok(tracing)
}

fn read(path: &PathBuf) -> Result<String, CliError> {
    std::fs::read_to_string(path).map_err(|e| CliError::File { path: path.clone(), reason: e.to_string() })
}

/// Runs a command that ends (everything but `start-server`), printing its result.
pub async fn run_once(cli: &Cli) -> Result<(), CliError> {
    match &cli.command {
        Command::PrintSampleConfig => print!("{SAMPLE}"),
        Command::Schema { action: SchemaAction::Oneshot } => {
            let config = load_config(cli)?;
            server::database(&config).await?;
            println!("schema is up to date ({})", crate::config::redact(&config.db.url));
        }
        Command::Fixture { action: FixtureAction::Populate { file } } => {
            let config = load_config(cli)?;
            let db = server::database(&config).await?;
            let text = read(file)?;
            let value: serde_json::Value = serde_json::from_str(&text)
                .map_err(|e| CliError::File { path: file.clone(), reason: e.to_string() })?;
            for (table, rows) in repo::populate_fixture(&db, &value).await? {
                println!("{table}: {rows} rows");
            }
        }
        Command::Keypair { action: KeypairAction::Create { admin, email, resource_policy } } => {
            let config = load_config(cli)?;
            let db = server::database(&config).await?;
            let email = match (email, admin) {
                (Some(e), _) => e.clone(),
                (None, true) => "admin@localhost".to_string(),
                (None, false) => {
                    return Err(
                        ConfigError { field: "--email".into(), reason: "required without --admin".into() }.into()
                    )
                }
            };
            let user = match repo::find_user_by_email(&db, &email).await? {
                Some(u) => u,
                None => {
                    repo::populate_fixture(&db, &bootstrap_fixture(&db, &email, *admin).await?).await?;
                    repo::find_user_by_email(&db, &email)
                        .await?
                        .ok_or_else(|| crate::db::DbError::not_found("user", &email))?
                }
            };
            let (access_key, secret_key) = repo::create_keypair(&db, user.uuid, *admin, resource_policy).await?;
            println!("Access key: {access_key}");
            println!("Secret key: {secret_key}");
            println!("User:       {email}");
        }
        Command::Image { action: ImageAction::Rescan { registry } } => {
            let config = load_config(cli)?;
            let db = server::database(&config).await?;
            let sources = crate::registry::RegistrySources::from_config(&config)?;
            let configured = sources.resolve().await.map_err(|e| CliError::Failed(e.to_string()))?;
            let (clients, registries) = match registry.as_deref().filter(|r| !r.is_empty()) {
                Some(name) => {
                    let found = configured.iter().find(|r| r.name == name).cloned().ok_or_else(|| {
                        let names: Vec<&str> = configured.iter().map(|r| r.name.as_str()).collect();
                        CliError::Failed(format!(
                            "--registry: no registry named {name:?} is configured (configured: {})",
                            if names.is_empty() { "none".to_string() } else { names.join(", ") }
                        ))
                    })?;
                    (None, vec![found])
                }
                None => {
                    let token = config.local_agent_token()?.ok_or_else(|| ConfigError {
                        field: "agent-rpc.token".into(),
                        reason: "the agents' RPC token is needed to ask them: set [agent-rpc] token or token-file"
                            .into(),
                    })?;
                    (Some(server::agent_clients(&config, &token)?), configured)
                }
            };
            let progress = std::sync::Mutex::new((0u64, 0u64));
            let on_step = |step: crate::registry::Step<'_>| {
                let mut p = progress.lock().unwrap_or_else(|p| p.into_inner());
                p.0 += step.found;
                p.1 += step.done;
                println!("[{}/{}] {}", p.1, p.0.max(p.1), step.message);
            };
            let report = crate::images::rescan(&db, clients.as_deref(), &registries, &on_step).await?;
            println!("{}", report.summary());
            if !report.ok() {
                return Err(CliError::Failed("some agents or registries could not be scanned".into()));
            }
        }
        Command::StartServer(_) => unreachable!("start-server is run by `serve`"),
    }
    Ok(())
}

/// The rows `keypair create` adds for a new user: the user, and the default domain, group,
/// policies and scaling group when they are missing.
async fn bootstrap_fixture(
    db: &sea_orm::DatabaseConnection,
    email: &str,
    admin: bool,
) -> Result<serde_json::Value, CliError> {
    let mut fixture = serde_json::Map::new();
    let group_id = match repo::find_group_by_name(db, "default", "default").await? {
        Some(g) => g.id,
        None => {
            let id = uuid::Uuid::new_v4();
            if repo::get_domain(db, "default").await?.is_none() {
                fixture.insert(
                    "domains".into(),
                    json!([{"name": "default", "description": "The default domain", "is_active": true}]),
                );
                fixture.insert(
                    "scaling_groups".into(),
                    json!([{"name": "default", "is_active": true, "driver": "static", "scheduler": "fifo"}]),
                );
                fixture
                    .insert("sgroups_for_domains".into(), json!([{"scaling_group": "default", "domain": "default"}]));
            }
            if repo::get_keypair_resource_policy(db, "default").await?.is_none() {
                fixture.insert(
                    "keypair_resource_policies".into(),
                    json!([{"name": "default", "default_for_unspecified": "UNLIMITED", "total_resource_slots": {}}]),
                );
                fixture.insert("user_resource_policies".into(), json!([{"name": "default"}]));
                fixture.insert("project_resource_policies".into(), json!([{"name": "default"}]));
            }
            fixture.insert(
                "groups".into(),
                json!([{"id": id.to_string(), "name": "default", "domain_name": "default", "is_active": true, "resource_policy": "default"}]),
            );
            id
        }
    };
    let user_id = uuid::Uuid::new_v4();
    let username = email.split('@').next().unwrap_or(email);
    fixture.insert(
        "users".into(),
        json!([{"uuid": user_id.to_string(), "username": username, "email": email, "status": "active",
                "domain_name": "default", "role": if admin { "superadmin" } else { "user" }, "resource_policy": "default"}]),
    );
    fixture.insert(
        "association_groups_users".into(),
        json!([{"group_id": group_id.to_string(), "user_id": user_id.to_string()}]),
    );
    Ok(serde_json::Value::Object(fixture))
}

/// `start-server`: starts the manager (and, with `--all-in-one`, an agent) and returns the
/// handle; the caller waits for a signal and shuts it down.
pub async fn start(cli: &Cli, args: &StartArgs) -> Result<server::RunningManager, CliError> {
    let mut config = load_config(cli)?;
    if let Some(addr) = args.api_listen {
        config.manager.api_listen = addr;
    }
    if let Some(t) = &args.agent_token {
        config.agent_rpc.token = Some(t.clone());
    }
    if let Some(url) = &args.redis_url {
        config.events.redis_url = url.clone();
    }
    let mut options = StartOptions::default();
    if let Some(path) = &args.fixture {
        options.fixture = Some(read(path)?);
    }
    if args.all_in_one {
        config.events.backend = EventBackend::Memory;
        let mut agent = match &args.agent_config {
            Some(path) => bai_agent::config::AgentConfig::load(path)
                .map_err(|e| ConfigError { field: "--agent-config".into(), reason: e.to_string() })?,
            None => bai_agent::config::AgentConfig::default(),
        };
        agent.events.backend = bai_agent::config::EventBackend::Memory;
        if args.agent_config.is_none() {
            let docker = std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".into());
            if bai_agent_runtime::runtime::docker::DockerRuntime::connect(&docker).await.is_err() {
                tracing::warn!(
                    "Docker is not reachable at {docker}; the embedded agent runs kernels as local processes"
                );
                agent.container.backend = bai_agent::config::ContainerBackend::Process;
            }
        }
        options.embedded_agent = Some(agent);
    }
    Ok(server::start(config, options).await?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[tokio::test]
    async fn keypair_create_bootstraps_an_empty_database() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("m.db").display());
        let cli = Cli::parse_from(["bai-manager", "--db-url", &url, "keypair", "create", "--admin"]);
        run_once(&cli).await.unwrap();
        let again =
            Cli::parse_from(["bai-manager", "--db-url", &url, "keypair", "create", "--email", "alice@example.com"]);
        run_once(&again).await.unwrap();
        let db = crate::db::connect(&url).await.unwrap();
        let admin = repo::find_user_by_email(&db, "admin@localhost").await.unwrap().unwrap();
        assert_eq!(admin.role.0, crate::db::types::UserRole::Superadmin);
        assert_eq!(repo::list_keypairs(&db, Some(admin.uuid)).await.unwrap().len(), 1);
        assert!(repo::find_user_by_email(&db, "alice@example.com").await.unwrap().is_some());
        let bad = Cli::parse_from(["bai-manager", "--db-url", &url, "keypair", "create"]);
        assert!(run_once(&bad).await.unwrap_err().to_string().contains("--email"));
    }
}
