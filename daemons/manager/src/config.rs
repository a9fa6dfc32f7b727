//! The manager's configuration: a TOML file (`configs/manager.sample.toml`), overridden by
//! flags and `BAI_MANAGER_*` environment variables, with the agents' RPC token, the Redis URL
//! and the watchers' token taken from the shared configuration ([`crate::shared_config`]:
//! etcd, or its fallback file) when the file leaves them unset.
//!
//! Every key is kebab-case; an unknown key is an error naming it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A configuration value that is missing or invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("configuration: {field}: {reason}")]
pub struct ConfigError {
    /// The key or flag.
    pub field: String,
    /// What is wrong.
    pub reason: String,
}

fn invalid(field: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError { field: field.to_string(), reason: reason.into() }
}

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct ManagerConfig {
    /// The API server and timers.
    pub manager: ManagerSection,
    /// The database.
    pub db: DbSection,
    /// The event bus.
    pub events: EventsSection,
    /// Cluster-wide settings.
    pub etcd: EtcdSection,
    /// How the manager calls agents.
    pub agent_rpc: AgentRpcSection,
    /// Virtual-folder storage.
    pub storage: StorageSection,
    /// How the manager calls the agents' watchers.
    pub watcher: WatcherSection,
    /// Log format and OpenTelemetry export.
    pub tracing: bai_telemetry::TracingConfig,
    /// Container registries (Docker Registry HTTP API v2) whose images `rescan_images` lists,
    /// by name: `[registries.<name>]`.
    pub registries: std::collections::BTreeMap<String, RegistrySection>,
    /// The idle checkers, which terminate sessions left idle (see [`crate::idle`]).
    pub idle: IdleSection,
}

/// `[manager]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct ManagerSection {
    /// This manager's id (several managers may share a database).
    pub id: String,
    /// Where the client API listens.
    pub api_listen: SocketAddr,
    /// Where Prometheus metrics (`/metrics`, `/metrics/service_discovery`) are served.
    pub metrics_listen: SocketAddr,
    /// Seconds without a heartbeat before an agent is LOST.
    pub heartbeat_timeout: f64,
    /// Seconds between scheduler passes (a `do_schedule` event runs one at once).
    pub schedule_interval: f64,
    /// Seconds a session may stay PREPARING, PULLING or CREATING without news before the
    /// manager asks its agents and, when they neither hold nor are creating its kernels, sends
    /// the creation again (a creation lost with a crashed manager or agent).
    pub dispatch_timeout: f64,
    /// Serves the API over TLS (HTTPS, and WSS for the streaming routes) with `ssl-cert` and
    /// `ssl-privkey`.
    pub ssl_enabled: bool,
    /// The PEM certificate chain of the API (the server's certificate first); required when
    /// `ssl-enabled`.
    pub ssl_cert: Option<PathBuf>,
    /// The PEM private key of `ssl-cert`; required when `ssl-enabled`.
    pub ssl_privkey: Option<PathBuf>,
}

impl Default for ManagerSection {
    fn default() -> Self {
        Self {
            id: "manager-1".into(),
            api_listen: SocketAddr::from(([0, 0, 0, 0], 8081)),
            metrics_listen: SocketAddr::from(([0, 0, 0, 0], 18080)),
            heartbeat_timeout: 40.0,
            schedule_interval: 2.0,
            dispatch_timeout: 60.0,
            ssl_enabled: false,
            ssl_cert: None,
            ssl_privkey: None,
        }
    }
}

/// `[db]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct DbSection {
    /// `postgres://user:password@host:port/db`, or `sqlite://path?mode=rwc` (the embedded
    /// default).
    pub url: String,
}

impl Default for DbSection {
    fn default() -> Self {
        Self { url: "sqlite:///var/lib/bai/manager.db?mode=rwc".into() }
    }
}

/// The event transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EventBackend {
    /// Redis streams and pub/sub.
    #[default]
    Redis,
    /// In process (the all-in-one mode).
    Memory,
}

/// `[events]`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct EventsSection {
    /// `redis` or `memory`.
    pub backend: EventBackend,
    /// The Redis URL; empty means etcd's `config/redis/url`, else `redis://127.0.0.1:6379/4`.
    pub redis_url: String,
}

/// `[etcd]`: the cluster's shared configuration ([`crate::shared_config`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct EtcdSection {
    /// Endpoints; empty means etcd is not used.
    pub endpoints: Vec<String>,
    /// Keys are read under `/bai/<namespace>/`.
    pub namespace: String,
    /// Without endpoints: a TOML file that stands in for etcd, its tables laid out as the
    /// keys (`[config.redis] url = …` is `config/redis/url`); re-read when it changes.
    pub fallback_file: Option<PathBuf>,
    /// Seconds between checks of `fallback-file` for changes.
    pub fallback_poll_interval: f64,
    /// Seconds the manager's key `nodes/manager/<id>` outlives the manager (its etcd lease).
    pub lease_ttl: f64,
}

impl Default for EtcdSection {
    fn default() -> Self {
        Self {
            endpoints: Vec::new(),
            namespace: "local".into(),
            fallback_file: None,
            fallback_poll_interval: 5.0,
            lease_ttl: 15.0,
        }
    }
}

/// `[agent-rpc]`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct AgentRpcSection {
    /// The token agents accept.
    pub token: Option<String>,
    /// A file holding it.
    pub token_file: Option<PathBuf>,
    /// PEM CA that signed the agents' server certificates; set when agents serve TLS.
    pub tls_ca: Option<PathBuf>,
    /// PEM client certificate presented to agents (mTLS).
    pub tls_cert: Option<PathBuf>,
    /// PEM key of the client certificate.
    pub tls_key: Option<PathBuf>,
}

/// `[storage]`: the local storage host that holds virtual folders.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct StorageSection {
    /// The directory holding one directory per folder.
    pub root: PathBuf,
    /// The name of the storage host, `proxy:volume`.
    pub default_host: String,
    /// The secret that signs upload and download tokens; unset means a random one per start
    /// (tokens then die with the process; set it when several managers serve one cluster).
    pub token_secret: Option<String>,
    /// Seconds an upload or download token stays valid.
    pub token_lifetime: f64,
}

impl Default for StorageSection {
    fn default() -> Self {
        Self {
            root: PathBuf::from("/var/lib/bai/vfolders"),
            default_host: "local:volume1".into(),
            token_secret: None,
            token_lifetime: 86_400.0,
        }
    }
}

/// `[watcher]`: the agents' watchers (`bai-agent watcher`), which the superadmin's
/// `/resource/watcher` routes call to report, start, stop and restart an agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct WatcherSection {
    /// The port every agent's watcher listens on, on the host of the agent's RPC address.
    pub port: u16,
    /// The token the watchers require (their `--token`); empty means the watcher routes answer
    /// 500 `server-misconfigured`.
    pub token: String,
    /// Seconds a watcher call may take (a stop waits up to the watcher's grace period). The
    /// original's key `file-io-timeout` is accepted for it.
    #[serde(alias = "file-io-timeout")]
    pub timeout: f64,
}

impl Default for WatcherSection {
    fn default() -> Self {
        Self { port: 6009, token: String::new(), timeout: 60.0 }
    }
}

/// `[registries.<name>]`: a Docker Registry (HTTP API v2) whose repositories an image rescan
/// walks. The name is what the image rows' `registry` column and domains'
/// `allowed_docker_registries` say; name it after its host, as the original does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct RegistrySection {
    /// The registry's base URL, e.g. `https://cr.example.com` or `http://127.0.0.1:5000`.
    pub url: String,
    /// The registry's API: only `docker` (the Docker Registry HTTP API v2) is supported.
    #[serde(rename = "type", default = "docker_registry_type")]
    pub kind: String,
    /// The user for basic auth or for the token service.
    #[serde(default)]
    pub username: Option<String>,
    /// Its password.
    #[serde(default)]
    pub password: Option<String>,
    /// Only the repositories under these projects (the first path component); empty: all.
    #[serde(default)]
    pub project: Vec<String>,
}

fn docker_registry_type() -> String {
    "docker".into()
}

impl RegistrySection {
    /// Checks the section of registry `name`; errors name `registries.<name>.<key>`.
    pub fn validate(&self, name: &str) -> Result<(), ConfigError> {
        let field = |key: &str| format!("registries.{name}.{key}");
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':')) {
            return Err(invalid(
                &format!("registries.{name}"),
                "a registry name is letters, digits, '.', '-', '_' or ':' (e.g. its host)",
            ));
        }
        if self.kind != "docker" {
            return Err(invalid(&field("type"), format!("{:?} is not supported: expected \"docker\"", self.kind)));
        }
        match reqwest::Url::parse(&self.url) {
            Ok(url) if matches!(url.scheme(), "http" | "https") && url.host_str().is_some() => {}
            Ok(_) => return Err(invalid(&field("url"), format!("{:?} is not an http:// or https:// URL", self.url))),
            Err(e) => return Err(invalid(&field("url"), format!("{:?} is not a URL: {e}", self.url))),
        }
        if self.password.is_some() && self.username.is_none() {
            return Err(invalid(&field("password"), "a password needs a username"));
        }
        if let Some(p) = self.project.iter().find(|p| p.is_empty() || p.contains('/')) {
            return Err(invalid(&field("project"), format!("{p:?} is not a project name (one path component)")));
        }
        Ok(())
    }
}

/// A duration in the configuration: a number of seconds, or text such as `"90s"`, `"10m"`,
/// `"1.5h"`, `"2d"` (units `ms`, `s`, `m`, `h`, `d`, `w`; none means seconds), as the
/// original's `TimeDuration`. Checked by [`ManagerConfig::validate`], naming the key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum DurationValue {
    /// Seconds.
    Seconds(f64),
    /// Text with a unit.
    Text(String),
}

impl DurationValue {
    /// The duration, or why it is not one.
    pub fn parse(&self) -> Result<Duration, String> {
        match self {
            DurationValue::Seconds(s) if s.is_finite() && *s >= 0.0 && *s <= 1e12 => Ok(Duration::from_secs_f64(*s)),
            DurationValue::Seconds(s) => Err(format!("{s} is not a number of seconds >= 0")),
            DurationValue::Text(t) => parse_duration(t),
        }
    }
}

/// Parses `"10m"`-style durations (see [`DurationValue`]).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let bad = || format!("invalid duration {text:?}: expected a number with an optional unit ms, s, m, h, d or w");
    let value: f64 = number.parse().map_err(|_| bad())?;
    let scale = match unit.trim() {
        "ms" => 0.001,
        "" | "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        "d" => 86_400.0,
        "w" => 604_800.0,
        _ => return Err(bad()),
    };
    let seconds = value * scale;
    if !(seconds.is_finite() && seconds <= 1e12) {
        return Err(bad());
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// `[idle]`: the idle checkers (the original's etcd `config/idle/enabled` and
/// `config/idle/checkers`, which replace these settings when etcd has them).
/// `session_lifetime` (the keypair resource policy's `max_session_lifetime`) always runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct IdleSection {
    /// How often every RUNNING session is checked.
    pub check_interval: DurationValue,
    /// The checkers that run besides `session_lifetime`: `network_timeout`, `utilization`.
    pub enabled: Vec<String>,
    /// Each checker's settings, in the original's JSON shape.
    pub checkers: IdleCheckersSection,
}

impl Default for IdleSection {
    fn default() -> Self {
        Self { check_interval: DurationValue::Text("15s".into()), enabled: Vec::new(), checkers: Default::default() }
    }
}

/// `[idle.checkers]`: keyed by the checkers' names, as in etcd's `config/idle/checkers`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IdleCheckersSection {
    /// `network_timeout`.
    #[serde(alias = "network-timeout", skip_serializing_if = "Option::is_none")]
    pub network_timeout: Option<NetworkTimeoutSection>,
    /// `utilization`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub utilization: Option<UtilizationSection>,
    /// `session_lifetime` takes no settings (its limit is the resource policy's).
    #[serde(alias = "session-lifetime", skip_serializing_if = "Option::is_none")]
    pub session_lifetime: Option<EmptySection>,
}

/// A checker without settings.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmptySection {}

/// `[idle.checkers.network_timeout]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct NetworkTimeoutSection {
    /// How long a session may go without traffic when its keypair's resource policy has a
    /// negative (undefined) `idle_timeout`; the policy's value wins otherwise, 0 meaning never.
    pub threshold: DurationValue,
}

impl Default for NetworkTimeoutSection {
    fn default() -> Self {
        Self { threshold: DurationValue::Text("10m".into()) }
    }
}

/// `[idle.checkers.utilization]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct UtilizationSection {
    /// The window averages are taken over when the resource policy's `idle_timeout` is
    /// negative (undefined); the policy's value wins otherwise, 0 turning the check off.
    pub time_window: DurationValue,
    /// How long after its creation a session is left alone.
    pub initial_grace_period: DurationValue,
    /// `and`: idle when every resource is under its threshold; `or`: when any is.
    pub thresholds_check_operator: String,
    /// Per metric (`cpu_util`, `mem`, `cuda_util`, `cuda_mem`, `atom_mem`): `{average = pct}`
    /// or nothing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource_thresholds: Option<std::collections::BTreeMap<String, Option<AverageThreshold>>>,
}

impl Default for UtilizationSection {
    fn default() -> Self {
        Self {
            time_window: DurationValue::Text("10m".into()),
            initial_grace_period: DurationValue::Text("5m".into()),
            thresholds_check_operator: "and".into(),
            resource_thresholds: None,
        }
    }
}

/// `{average = 30}`: the least average utilisation (percent) that counts as in use.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AverageThreshold {
    /// Percent.
    pub average: f64,
}

/// The documented sample configuration.
pub const SAMPLE: &str = include_str!("../configs/manager.sample.toml");

impl ManagerConfig {
    /// Parses TOML text; errors name the key and the line.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e| invalid("config file", e.to_string()))
    }

    /// Reads and parses a file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|e| invalid("config file", format!("{}: {e}", path.display())))?;
        Self::from_toml(&text).map_err(|e| invalid(&path.display().to_string(), e.reason))
    }

    /// Checks values that parse but make no sense.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (field, v) in [
            ("manager.heartbeat-timeout", self.manager.heartbeat_timeout),
            ("manager.schedule-interval", self.manager.schedule_interval),
            ("manager.dispatch-timeout", self.manager.dispatch_timeout),
            ("storage.token-lifetime", self.storage.token_lifetime),
            ("watcher.timeout", self.watcher.timeout),
            ("etcd.fallback-poll-interval", self.etcd.fallback_poll_interval),
        ] {
            if !(v.is_finite() && v > 0.0 && v <= 86_400.0) {
                return Err(invalid(field, format!("{v} is not a number of seconds in (0, 86400]")));
            }
        }
        if !(self.db.url.starts_with("postgres://")
            || self.db.url.starts_with("postgresql://")
            || self.db.url.starts_with("sqlite:"))
        {
            return Err(invalid("db.url", format!("{:?} is neither postgres://… nor sqlite:…", redact(&self.db.url))));
        }
        if !self.storage.default_host.contains(':') {
            return Err(invalid(
                "storage.default-host",
                format!("{:?} is not of the form proxy:volume", self.storage.default_host),
            ));
        }
        if !(self.etcd.lease_ttl.is_finite() && (2.0..=3600.0).contains(&self.etcd.lease_ttl)) {
            return Err(invalid(
                "etcd.lease-ttl",
                format!("{} is not a number of seconds in [2, 3600]", self.etcd.lease_ttl),
            ));
        }
        if self.etcd.namespace.is_empty() || self.etcd.namespace.contains('/') {
            return Err(invalid(
                "etcd.namespace",
                format!("{:?} must be non-empty and without '/'", self.etcd.namespace),
            ));
        }
        if self.manager.id.is_empty() || self.manager.id.contains('/') {
            return Err(invalid("manager.id", format!("{:?} must be non-empty and without '/'", self.manager.id)));
        }
        if self.agent_rpc.tls_cert.is_some() != self.agent_rpc.tls_key.is_some() {
            return Err(invalid("agent-rpc.tls-cert", "tls-cert and tls-key go together"));
        }
        self.api_tls_files()?;
        if self.watcher.port == 0 {
            return Err(invalid("watcher.port", "0 is not a port"));
        }
        if !self.watcher.token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(invalid("watcher.token", "must be printable ASCII without spaces"));
        }
        self.tracing.validate("tracing").map_err(|e| invalid(&e.field, e.reason))?;
        for (name, registry) in &self.registries {
            registry.validate(name)?;
        }
        crate::idle::IdleConfig::from_section(&self.idle)?;
        Ok(())
    }

    /// The API's certificate and key files when `[manager] ssl-enabled` is set (`None` when
    /// it is not); either file unset is an error naming it. The files are read at start
    /// ([`crate::tls::server_config`]).
    pub fn api_tls_files(&self) -> Result<Option<(&Path, &Path)>, ConfigError> {
        if !self.manager.ssl_enabled {
            return Ok(None);
        }
        fn file<'a>(value: &'a Option<PathBuf>, field: &str) -> Result<&'a Path, ConfigError> {
            match value {
                Some(p) if !p.as_os_str().is_empty() => Ok(p.as_path()),
                _ => Err(invalid(field, "ssl-enabled is true but no PEM file is set")),
            }
        }
        Ok(Some((
            file(&self.manager.ssl_cert, "manager.ssl-cert")?,
            file(&self.manager.ssl_privkey, "manager.ssl-privkey")?,
        )))
    }

    /// The agents' RPC token from the file or its token file, if set.
    pub fn local_agent_token(&self) -> Result<Option<String>, ConfigError> {
        if let Some(t) = &self.agent_rpc.token {
            return Ok(Some(t.clone()));
        }
        match &self.agent_rpc.token_file {
            Some(path) => std::fs::read_to_string(path)
                .map(|t| Some(t.trim().to_string()))
                .map_err(|e| invalid("agent-rpc.token-file", format!("{}: {e}", path.display()))),
            None => Ok(None),
        }
    }

    /// Seconds → a duration (validated beforehand).
    pub fn seconds(v: f64) -> Duration {
        Duration::from_secs_f64(v)
    }
}

pub use bai_agent_runtime::bus::redact;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sample_parses_and_validates() {
        let c = ManagerConfig::from_toml(SAMPLE).unwrap();
        c.validate().unwrap();
        assert_eq!(c.manager.api_listen.port(), 8081);
        assert_eq!(c.manager.metrics_listen.port(), 18080);
        // The sample says its values are the defaults.
        assert_eq!(c, ManagerConfig::default());
    }

    #[test]
    fn bad_values_are_named() {
        let err = ManagerConfig::from_toml("[db]\nurll = \"x\"\n").unwrap_err().to_string();
        assert!(err.contains("urll"), "{err}");
        let mut c = ManagerConfig::default();
        c.db.url = "mysql://u:secret@h/db".into();
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("db.url") && !err.contains("secret"), "{err}");
    }

    #[test]
    fn the_watcher_section_takes_the_original_keys() {
        let c = ManagerConfig::default();
        assert_eq!((c.watcher.port, c.watcher.token.as_str(), c.watcher.timeout), (6009, "", 60.0));
        let c = ManagerConfig::from_toml("[watcher]\nport = 6099\ntoken = \"s3cret\"\nfile-io-timeout = 5\n").unwrap();
        c.validate().unwrap();
        assert_eq!((c.watcher.port, c.watcher.token.as_str(), c.watcher.timeout), (6099, "s3cret", 5.0));
        let c = ManagerConfig::from_toml("[watcher]\ntimeout = 0\n").unwrap();
        assert_eq!(c.validate().unwrap_err().field, "watcher.timeout");
        let c = ManagerConfig::from_toml("[watcher]\ntoken = \"two words\"\n").unwrap();
        assert_eq!(c.validate().unwrap_err().field, "watcher.token");
        let err = ManagerConfig::from_toml("[watcher]\naddr = \"x\"\n").unwrap_err().to_string();
        assert!(err.contains("addr"), "{err}");
    }

    #[test]
    fn the_tracing_section_is_checked() {
        let c = ManagerConfig::from_toml(
            "[tracing]\nlog-format = \"json\"\notlp-endpoint = \"http://127.0.0.1:4317\"\nsample-ratio = 0.5\n",
        )
        .unwrap();
        c.validate().unwrap();
        assert_eq!(c.tracing.log_format, bai_telemetry::LogFormat::Json);
        let c = ManagerConfig::from_toml("[tracing]\notlp-endpoint = \"127.0.0.1:4317\"\n").unwrap();
        assert_eq!(c.validate().unwrap_err().field, "tracing.otlp-endpoint");
        let c = ManagerConfig::from_toml("[tracing]\nsample-ratio = -0.1\n").unwrap();
        assert_eq!(c.validate().unwrap_err().field, "tracing.sample-ratio");
        let err = ManagerConfig::from_toml("[tracing]\nlog-format = \"xml\"\n").unwrap_err().to_string();
        assert!(err.contains("xml"), "{err}");
    }

    #[test]
    fn registries_are_checked() {
        let c = ManagerConfig::from_toml(
            "[registries.\"cr.example.com\"]\nurl = \"https://cr.example.com\"\nusername = \"u\"\npassword = \"p\"\nproject = [\"stable\"]\n",
        )
        .unwrap();
        c.validate().unwrap();
        let r = &c.registries["cr.example.com"];
        assert_eq!((r.kind.as_str(), r.project.as_slice()), ("docker", &["stable".to_string()][..]));
        let bad = |text: &str| ManagerConfig::from_toml(text).unwrap().validate().unwrap_err().field;
        assert_eq!(bad("[registries.r]\nurl = \"ftp://x\"\n"), "registries.r.url");
        assert_eq!(bad("[registries.r]\nurl = \"http://x\"\ntype = \"harbor2\"\n"), "registries.r.type");
        assert_eq!(bad("[registries.r]\nurl = \"http://x\"\npassword = \"p\"\n"), "registries.r.password");
        assert_eq!(bad("[registries.\"a b\"]\nurl = \"http://x\"\n"), "registries.a b");
        let err = ManagerConfig::from_toml("[registries.r]\nurl = \"http://x\"\nuser = \"u\"\n").unwrap_err();
        assert!(err.to_string().contains("user"), "{err}");
    }

    #[test]
    fn ssl_needs_both_files() {
        let c = ManagerConfig::from_toml("[manager]\nssl-enabled = true\nssl-privkey = \"/k.pem\"\n").unwrap();
        let err = c.validate().unwrap_err();
        assert_eq!(err.field, "manager.ssl-cert");
        assert_eq!(err.to_string(), "configuration: manager.ssl-cert: ssl-enabled is true but no PEM file is set");
        let c = ManagerConfig::from_toml("[manager]\nssl-enabled = true\nssl-cert = \"/c.pem\"\nssl-privkey = \"\"\n")
            .unwrap();
        assert_eq!(c.validate().unwrap_err().field, "manager.ssl-privkey");
        let c = ManagerConfig::from_toml(
            "[manager]\nssl-enabled = true\nssl-cert = \"/c.pem\"\nssl-privkey = \"/k.pem\"\n",
        )
        .unwrap();
        c.validate().unwrap();
        assert_eq!(c.api_tls_files().unwrap(), Some((Path::new("/c.pem"), Path::new("/k.pem"))));
        // Files without ssl-enabled are kept but unused, as in the original.
        let c = ManagerConfig::from_toml("[manager]\nssl-cert = \"/c.pem\"\n").unwrap();
        c.validate().unwrap();
        assert_eq!(c.api_tls_files().unwrap(), None);
    }
}
