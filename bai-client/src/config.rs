//! Client configuration: the official client's environment variables, a config file, or code.
//!
//! [`Config::load`] reads, lowest precedence first:
//! 1. defaults;
//! 2. the TOML file at `$BAI_CONFIG`, else `$XDG_CONFIG_HOME/bai/config.toml`, else
//!    `~/.config/bai/config.toml` (absent is fine);
//! 3. the environment, with the official client's names: `BACKEND_ENDPOINT`,
//!    `BACKEND_ACCESS_KEY`, `BACKEND_SECRET_KEY`, `BACKEND_DOMAIN`, `BACKEND_GROUP`,
//!    `BACKEND_VFOLDER_MOUNTS`, `BACKEND_SKIP_SSLCERT_VALIDATION`,
//!    `BACKEND_CONNECTION_TIMEOUT`, `BACKEND_READ_TIMEOUT` (each also as `SORNA_<KEY>`), plus
//!    `BACKEND_MAX_RETRIES` and `BACKEND_CA_FILE` (a PEM bundle of extra CAs to trust).
//!
//! The file uses the same keys in lower case without the prefix:
//!
//! ```toml
//! endpoint = "http://127.0.0.1:8081"
//! access_key = "AKIAIOSFODNN7EXAMPLE"
//! secret_key = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
//! domain = "default"
//! group = "default"
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use url::Url;

use crate::error::{Error, Result};

/// Where and as whom the client talks to a manager.
#[derive(Clone, PartialEq)]
pub struct Config {
    /// The managers' base URLs; a path prefix is kept. On connection errors the client moves
    /// on to the next one.
    pub endpoints: Vec<Url>,
    /// The access key; empty means anonymous (requests are not signed).
    pub access_key: String,
    /// The secret key.
    pub secret_key: String,
    /// The domain sent with requests and session creation.
    pub domain: String,
    /// The project (group) name sessions are created in.
    pub group: String,
    /// Folders mounted into every session this client creates.
    pub vfolder_mounts: Vec<String>,
    /// Accept any TLS certificate.
    pub skip_ssl_verification: bool,
    /// A PEM file of extra certificate authorities to trust, for a manager whose certificate a
    /// private CA signed (`BACKEND_CA_FILE`, file key `ca_file`; bai only). The public roots stay
    /// trusted.
    pub ca_file: Option<PathBuf>,
    /// Connect timeout.
    pub connection_timeout: Duration,
    /// Read timeout; `None` waits as long as the server takes (session creation blocks).
    pub read_timeout: Option<Duration>,
    /// How many times a request is retried after `429 Too Many Requests`,
    /// `503 Service Unavailable` or a connection error, with exponential backoff.
    pub max_retries: u32,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("endpoints", &self.endpoints.iter().map(Url::as_str).collect::<Vec<_>>())
            .field("access_key", &self.access_key)
            .field("secret_key", &if self.secret_key.is_empty() { "" } else { "<redacted>" })
            .field("domain", &self.domain)
            .field("group", &self.group)
            .field("vfolder_mounts", &self.vfolder_mounts)
            .field("skip_ssl_verification", &self.skip_ssl_verification)
            .field("ca_file", &self.ca_file)
            .field("connection_timeout", &self.connection_timeout)
            .field("read_timeout", &self.read_timeout)
            .field("max_retries", &self.max_retries)
            .finish()
    }
}

/// The official client's default endpoint.
pub const DEFAULT_ENDPOINT: &str = "https://api.cloud.backend.ai";

impl Default for Config {
    fn default() -> Self {
        Self {
            endpoints: vec![Url::parse(DEFAULT_ENDPOINT).expect("a valid URL")],
            access_key: String::new(),
            secret_key: String::new(),
            domain: "default".into(),
            group: "default".into(),
            vfolder_mounts: Vec::new(),
            skip_ssl_verification: false,
            ca_file: None,
            connection_timeout: Duration::from_secs(10),
            read_timeout: None,
            max_retries: 3,
        }
    }
}

/// The config file's keys.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    endpoint: Option<String>,
    access_key: Option<String>,
    secret_key: Option<String>,
    domain: Option<String>,
    group: Option<String>,
    vfolder_mounts: Option<Vec<String>>,
    skip_sslcert_validation: Option<bool>,
    ca_file: Option<PathBuf>,
    connection_timeout: Option<f64>,
    read_timeout: Option<f64>,
    max_retries: Option<u32>,
}

impl Config {
    /// A configuration for `endpoint` with a keypair.
    pub fn new(endpoint: &str, access_key: &str, secret_key: &str) -> Result<Self> {
        Ok(Self {
            endpoints: parse_endpoints("endpoint", endpoint)?,
            access_key: access_key.to_string(),
            secret_key: secret_key.to_string(),
            ..Self::default()
        })
    }

    /// Defaults, then the config file, then the environment (see the module docs).
    pub fn load() -> Result<Self> {
        let mut config = Self::default();
        if let Some(path) = Self::file_path().filter(|p| p.exists()) {
            config.apply_file(&path)?;
        }
        config.apply_env(|key| std::env::var(key).ok())?;
        Ok(config)
    }

    /// Defaults, then the environment only.
    pub fn from_env() -> Result<Self> {
        let mut config = Self::default();
        config.apply_env(|key| std::env::var(key).ok())?;
        Ok(config)
    }

    /// The config file [`load`](Self::load) reads (which may not exist).
    pub fn file_path() -> Option<PathBuf> {
        if let Some(path) = std::env::var_os("BAI_CONFIG").filter(|p| !p.is_empty()) {
            return Some(PathBuf::from(path));
        }
        let base = std::env::var_os("XDG_CONFIG_HOME")
            .filter(|p| !p.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
        Some(base.join("bai").join("config.toml"))
    }

    /// Overrides with the keys of a TOML config file.
    pub fn apply_file(&mut self, path: &Path) -> Result<()> {
        let text = std::fs::read_to_string(path).map_err(crate::error::io_error(path))?;
        let file: FileConfig = toml::from_str(&text)
            .map_err(|e| Error::Config { field: path.display().to_string(), reason: e.message().to_string() })?;
        let field = |key: &str| format!("{}: {key}", path.display());
        if let Some(v) = file.endpoint {
            self.endpoints = parse_endpoints(&field("endpoint"), &v)?;
        }
        self.access_key = file.access_key.unwrap_or(std::mem::take(&mut self.access_key));
        self.secret_key = file.secret_key.unwrap_or(std::mem::take(&mut self.secret_key));
        self.domain = file.domain.unwrap_or(std::mem::take(&mut self.domain));
        self.group = file.group.unwrap_or(std::mem::take(&mut self.group));
        self.vfolder_mounts = file.vfolder_mounts.unwrap_or(std::mem::take(&mut self.vfolder_mounts));
        self.skip_ssl_verification = file.skip_sslcert_validation.unwrap_or(self.skip_ssl_verification);
        if let Some(ca) = file.ca_file {
            self.ca_file = Some(ca);
        }
        if let Some(v) = file.connection_timeout {
            self.connection_timeout = seconds(&field("connection_timeout"), v)?;
        }
        if let Some(v) = file.read_timeout {
            self.read_timeout = Some(seconds(&field("read_timeout"), v)?).filter(|d| !d.is_zero());
        }
        self.max_retries = file.max_retries.unwrap_or(self.max_retries);
        Ok(())
    }

    /// Overrides with environment variables, read through `get` (`BACKEND_<KEY>`, then
    /// `SORNA_<KEY>`).
    pub fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) -> Result<()> {
        let var = |key: &str| -> Option<(String, String)> {
            [format!("BACKEND_{key}"), format!("SORNA_{key}")]
                .into_iter()
                .find_map(|name| get(&name).map(|value| (name, value)))
        };
        if let Some((name, v)) = var("ENDPOINT") {
            self.endpoints = parse_endpoints(&name, &v)?;
        }
        if let Some((_, v)) = var("ACCESS_KEY") {
            self.access_key = v;
        }
        if let Some((_, v)) = var("SECRET_KEY") {
            self.secret_key = v;
        }
        if let Some((_, v)) = var("DOMAIN") {
            self.domain = v;
        }
        if let Some((_, v)) = var("GROUP") {
            self.group = v;
        }
        if let Some((_, v)) = var("VFOLDER_MOUNTS") {
            self.vfolder_mounts = v.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect();
        }
        if let Some((name, v)) = var("SKIP_SSLCERT_VALIDATION") {
            self.skip_ssl_verification = parse_bool(&name, &v)?;
        }
        if let Some((_, v)) = var("CA_FILE") {
            self.ca_file = Some(PathBuf::from(v)).filter(|p| !p.as_os_str().is_empty());
        }
        if let Some((name, v)) = var("CONNECTION_TIMEOUT") {
            self.connection_timeout = seconds(&name, parse_number(&name, &v)?)?;
        }
        if let Some((name, v)) = var("READ_TIMEOUT") {
            self.read_timeout = Some(seconds(&name, parse_number(&name, &v)?)?).filter(|d| !d.is_zero());
        }
        if let Some((name, v)) = var("MAX_RETRIES") {
            self.max_retries = v
                .trim()
                .parse()
                .map_err(|_| Error::Config { field: name, reason: format!("{v:?} is not a non-negative integer") })?;
        }
        Ok(())
    }

    /// Whether requests are signed.
    pub fn is_anonymous(&self) -> bool {
        self.access_key.is_empty()
    }
}

fn parse_endpoints(field: &str, text: &str) -> Result<Vec<Url>> {
    let mut out = Vec::new();
    for part in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let url = Url::parse(part).map_err(|e| Error::Config {
            field: field.into(),
            reason: format!("{part:?} is not an absolute URL ({e})"),
        })?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(Error::Config {
                field: field.into(),
                reason: format!("{part:?} must be an http:// or https:// URL with a host"),
            });
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(Error::Config { field: field.into(), reason: format!("{part:?} must not have a query") });
        }
        out.push(url);
    }
    if out.is_empty() {
        return Err(Error::Config { field: field.into(), reason: "no endpoint given".into() });
    }
    Ok(out)
}

fn parse_bool(field: &str, text: &str) -> Result<bool> {
    match text.trim().to_ascii_lowercase().as_str() {
        "y" | "yes" | "t" | "true" | "1" | "on" => Ok(true),
        "n" | "no" | "f" | "false" | "0" | "off" | "" => Ok(false),
        _ => Err(Error::Config { field: field.into(), reason: format!("{text:?} is not yes/no/true/false/1/0") }),
    }
}

fn parse_number(field: &str, text: &str) -> Result<f64> {
    text.trim()
        .parse()
        .map_err(|_| Error::Config { field: field.into(), reason: format!("{text:?} is not a number of seconds") })
}

fn seconds(field: &str, v: f64) -> Result<Duration> {
    Duration::try_from_secs_f64(v).map_err(|_| Error::Config {
        field: field.into(),
        reason: format!("{v} is not a non-negative number of seconds"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let pairs: Vec<(String, String)> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |key| pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())
    }

    #[test]
    fn reads_the_official_variables_with_the_legacy_fallback() {
        let mut c = Config::default();
        c.apply_env(env(&[
            ("BACKEND_ENDPOINT", "http://a:8081/prefix, http://b:8081"),
            ("SORNA_ACCESS_KEY", "AK"),
            ("BACKEND_SECRET_KEY", "SK"),
            ("BACKEND_VFOLDER_MOUNTS", "data, ,models"),
            ("BACKEND_SKIP_SSLCERT_VALIDATION", "Yes"),
            ("BACKEND_READ_TIMEOUT", "0"),
            ("BACKEND_CONNECTION_TIMEOUT", "2.5"),
        ]))
        .unwrap();
        assert_eq!(c.endpoints.iter().map(Url::as_str).collect::<Vec<_>>(), ["http://a:8081/prefix", "http://b:8081/"]);
        assert_eq!((c.access_key.as_str(), c.secret_key.as_str()), ("AK", "SK"));
        assert_eq!(c.vfolder_mounts, ["data", "models"]);
        assert!(c.skip_ssl_verification);
        assert_eq!(c.read_timeout, None);
        assert_eq!(c.connection_timeout, Duration::from_millis(2500));
    }

    #[test]
    fn bad_values_name_the_variable() {
        let cases = [
            ("BACKEND_ENDPOINT", "localhost:8081", "BACKEND_ENDPOINT"),
            ("BACKEND_ENDPOINT", "ftp://x", "must be an http"),
            ("BACKEND_SKIP_SSLCERT_VALIDATION", "maybe", "yes/no"),
            ("BACKEND_CONNECTION_TIMEOUT", "-1", "non-negative"),
            ("BACKEND_MAX_RETRIES", "lots", "BACKEND_MAX_RETRIES"),
        ];
        for (key, value, expected) in cases {
            let err = Config::default().apply_env(env(&[(key, value)])).unwrap_err().to_string();
            assert!(err.contains(expected), "{key}={value}: {err}");
            assert!(err.contains(key), "{err}");
        }
    }

    #[test]
    fn the_file_is_overridden_by_the_environment_and_refuses_unknown_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, "endpoint = \"http://file:1\"\naccess_key = \"FILEAK\"\nmax_retries = 0\n").unwrap();
        let mut c = Config::default();
        c.apply_file(&path).unwrap();
        c.apply_env(env(&[("BACKEND_ACCESS_KEY", "ENVAK")])).unwrap();
        assert_eq!(c.endpoints[0].as_str(), "http://file:1/");
        assert_eq!(c.access_key, "ENVAK");
        assert_eq!(c.max_retries, 0);
        std::fs::write(&path, "endpiont = \"x\"\n").unwrap();
        let err = Config::default().apply_file(&path).unwrap_err().to_string();
        assert!(err.contains("unknown field `endpiont`"), "{err}");
    }

    #[test]
    fn debug_output_hides_the_secret() {
        let c = Config::new("http://x", "AK", "very-secret").unwrap();
        assert!(!format!("{c:?}").contains("very-secret"));
    }
}
