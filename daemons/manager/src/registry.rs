//! Container registries: the images of a Docker Registry (HTTP API v2) become rows of
//! `images`, beside the images the agents report ([`crate::images`]).
//!
//! A scan walks `/v2/_catalog` (following `Link: <…>; rel="next"` pages), keeps the
//! repositories under the registry's projects (all when none is configured), lists each
//! repository's tags (`/v2/<repo>/tags/list`) and reads each tag's manifest: a Docker v2
//! schema 2 or OCI image manifest gives one row, a manifest list or OCI index one row per
//! architecture (entries whose platform is `unknown`, such as build attestations, are
//! skipped). The configuration blob gives the architecture and the labels (service ports,
//! `ai.backend.resource.min/max.*` limits); the size is the sum of the layers; the digest is
//! the configuration's, as for the agents' images. Rows are upserted with
//! [`repo::upsert_image`]: `registry` is the registry's configured name, `name` the reference
//! an engine pulls (`<host>/<repo>:<tag>`).
//!
//! Authentication follows the registry's `WWW-Authenticate` challenge: `Basic` with the
//! configured username and password, or `Bearer`, where a token is fetched from the realm (with
//! the credentials, when configured) for each scope and reused. Requests have timeouts;
//! repositories are scanned a few at a time ([`CONCURRENCY`]). A repository or a tag that
//! fails is reported and the scan goes on; only a catalog that cannot be read (unreachable,
//! refused credentials) fails the registry.
//!
//! Registries come from `[registries.<name>]` in the configuration file and, with etcd, from
//! the original's keys `config/docker/registry/<name>` (the URL) with `/type`, `/username`,
//! `/password` and `/project` ([`RegistrySources::resolve`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use futures::StreamExt;
use reqwest::header::{HeaderMap, ACCEPT, LINK, WWW_AUTHENTICATE};
use reqwest::{StatusCode, Url};
use sea_orm::DatabaseConnection;
use serde_json::{json, Value};

use crate::config::{ConfigError, EtcdSection, ManagerConfig, RegistrySection};
use crate::db::repo::{self, ScannedImage, Upserted};
use crate::db::DbError;

/// How many repositories (and tags) of one registry are read at once.
pub const CONCURRENCY: usize = 8;
/// How long one request to a registry may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// The most a manifest or configuration blob may weigh.
const MAX_DOCUMENT: usize = 16 << 20;

const MANIFEST_V2: &str = "application/vnd.docker.distribution.manifest.v2+json";
const MANIFEST_LIST_V2: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// A registry to scan.
#[derive(Clone, PartialEq, Eq)]
pub struct RegistryConfig {
    /// The name (`registry` of its image rows).
    pub name: String,
    /// The base URL.
    pub url: Url,
    /// The username, for basic auth or the token service.
    pub username: Option<String>,
    /// The password.
    pub password: Option<String>,
    /// Only repositories under these projects; empty: all.
    pub projects: Vec<String>,
}

impl std::fmt::Debug for RegistryConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryConfig")
            .field("name", &self.name)
            .field("url", &self.url.as_str())
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("projects", &self.projects)
            .finish()
    }
}

impl RegistryConfig {
    /// The registry `name` of a configuration section (checked).
    pub fn from_section(name: &str, section: &RegistrySection) -> Result<Self, ConfigError> {
        section.validate(name)?;
        let url = Url::parse(&section.url).map_err(|e| ConfigError {
            field: format!("registries.{name}.url"),
            reason: format!("{:?} is not a URL: {e}", section.url),
        })?;
        Ok(Self {
            name: name.to_string(),
            url,
            username: section.username.clone(),
            password: section.password.clone(),
            projects: section.project.clone(),
        })
    }

    /// `host[:port]`, the registry part of its images' references.
    pub fn host(&self) -> String {
        let host = self.url.host_str().unwrap_or_default();
        match self.url.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_string(),
        }
    }

    fn keeps(&self, repository: &str) -> bool {
        self.projects.is_empty()
            || repository.split_once('/').is_some_and(|(project, _)| self.projects.iter().any(|p| p == project))
    }
}

/// Why a registry could not be scanned (or configured).
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// A request failed: unreachable, an unexpected status, a document that is not what the
    /// API promises.
    #[error("registry {registry}: {url}: {reason}")]
    Http {
        /// The registry's name.
        registry: String,
        /// The URL asked.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// The registry (or its token service) refused the credentials, or wants some.
    #[error("registry {registry}: {url}: {reason}")]
    Unauthorized {
        /// The registry's name.
        registry: String,
        /// The URL asked.
        url: String,
        /// What the registry said.
        reason: String,
    },
    /// etcd could not be read, or holds an invalid registry.
    #[error("etcd: {0}")]
    Etcd(String),
    /// The database.
    #[error("database: {0}")]
    Db(#[from] DbError),
}

/// Where registries are configured: the configuration file, and etcd when the manager uses it.
#[derive(Debug, Clone, Default)]
pub struct RegistrySources {
    file: Vec<RegistryConfig>,
    etcd: Option<EtcdSection>,
}

impl RegistrySources {
    /// The registries of `config` (`[registries.*]`, and etcd when `[etcd] endpoints` is set).
    pub fn from_config(config: &ManagerConfig) -> Result<Self, ConfigError> {
        let file = config
            .registries
            .iter()
            .map(|(name, section)| RegistryConfig::from_section(name, section))
            .collect::<Result<Vec<_>, _>>()?;
        let etcd = (!config.etcd.endpoints.is_empty()).then(|| config.etcd.clone());
        Ok(Self { file, etcd })
    }

    /// Registries given directly (no etcd).
    pub fn fixed(registries: Vec<RegistryConfig>) -> Self {
        Self { file: registries, etcd: None }
    }

    /// The registries of the configuration file (without etcd's).
    pub fn file(&self) -> &[RegistryConfig] {
        &self.file
    }

    /// Every configured registry by name: the file's, then etcd's (read now) for names the
    /// file does not use.
    pub async fn resolve(&self) -> Result<Vec<RegistryConfig>, RegistryError> {
        let mut out = self.file.clone();
        if let Some(etcd) = &self.etcd {
            for registry in etcd_registries(etcd).await? {
                if !out.iter().any(|r| r.name == registry.name) {
                    out.push(registry);
                }
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }
}

/// The registries under `/bai/<namespace>/config/docker/registry/` in etcd: `<name>` is the
/// URL (the name percent-encoded, as the original writes hosts with ports), `<name>/type`
/// (`docker`; other types are refused), `<name>/username`, `<name>/password` and
/// `<name>/project` (comma-separated).
pub async fn etcd_registries(etcd: &EtcdSection) -> Result<Vec<RegistryConfig>, RegistryError> {
    let endpoints = etcd.endpoints.join(",");
    let unreachable = |e: etcd_client::Error| RegistryError::Etcd(format!("{endpoints}: {e}"));
    let mut client = tokio::time::timeout(Duration::from_secs(10), etcd_client::Client::connect(&etcd.endpoints, None))
        .await
        .map_err(|_| RegistryError::Etcd(format!("{endpoints}: no answer within 10 s")))?
        .map_err(unreachable)?;
    let prefix = format!("/bai/{}/config/docker/registry/", etcd.namespace);
    let reply = tokio::time::timeout(
        Duration::from_secs(10),
        client.get(prefix.as_str(), Some(etcd_client::GetOptions::new().with_prefix())),
    )
    .await
    .map_err(|_| RegistryError::Etcd(format!("{endpoints}: no answer within 10 s")))?
    .map_err(unreachable)?;
    let mut keys: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for kv in reply.kvs() {
        let (Ok(key), Ok(value)) = (kv.key_str(), kv.value_str()) else { continue };
        let Some(rest) = key.strip_prefix(&prefix) else { continue };
        let (name, attr) = rest.split_once('/').unwrap_or((rest, ""));
        let name = percent_encoding::percent_decode_str(name).decode_utf8_lossy().into_owned();
        keys.entry(name).or_default().insert(attr.to_string(), value.trim().to_string());
    }
    let mut out = Vec::new();
    for (name, attrs) in keys {
        let url = attrs.get("").cloned().unwrap_or_default();
        let section = RegistrySection {
            url,
            kind: attrs.get("type").cloned().unwrap_or_else(|| "docker".into()),
            username: attrs.get("username").cloned().filter(|s| !s.is_empty()),
            password: attrs.get("password").cloned().filter(|s| !s.is_empty()),
            project: attrs
                .get("project")
                .map(|p| p.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect())
                .unwrap_or_default(),
        };
        let registry = RegistryConfig::from_section(&name, &section)
            .map_err(|e| RegistryError::Etcd(format!("{prefix}{name}: {}: {}", e.field, e.reason)))?;
        out.push(registry);
    }
    Ok(out)
}

/// A step of a scan's progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step<'a> {
    /// More units of work found (tags to read).
    pub found: u64,
    /// Units of work finished.
    pub done: u64,
    /// What happened.
    pub message: &'a str,
}

/// Receives a scan's progress.
pub type OnStep<'a> = &'a (dyn Fn(Step<'_>) + Send + Sync);

/// The outcome of scanning one registry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegistryReport {
    /// The registry's name.
    pub registry: String,
    /// Repositories scanned (after the project filter).
    pub repositories: usize,
    /// Rows seen (a tag per architecture).
    pub images: usize,
    /// Rows added.
    pub added: usize,
    /// Rows brought up to date.
    pub updated: usize,
    /// Repositories or tags that could not be read, with why.
    pub failed: Vec<(String, String)>,
}

impl RegistryReport {
    /// One line: what was found and what failed.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "registry {}: {} image(s) in {} repositor{}: {} added, {} updated",
            self.registry,
            self.images,
            self.repositories,
            if self.repositories == 1 { "y" } else { "ies" },
            self.added,
            self.updated
        );
        if !self.failed.is_empty() {
            let failed: Vec<String> = self.failed.iter().map(|(what, why)| format!("{what}: {why}")).collect();
            s.push_str(&format!("; {} failed: {}", self.failed.len(), failed.join("; ")));
        }
        s
    }
}

/// An HTTP client for one registry, remembering the credentials its challenges asked for.
pub struct RegistryClient {
    http: reqwest::Client,
    registry: RegistryConfig,
    /// What to send, by scope; `""` holds basic auth, good for every scope.
    auth: Mutex<HashMap<String, Auth>>,
}

impl std::fmt::Debug for RegistryClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryClient").field("registry", &self.registry).finish_non_exhaustive()
    }
}

/// What a request carries to authenticate.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Auth {
    /// The configured username and password.
    Basic,
    /// A token from the registry's token service.
    Bearer(String),
}

/// A `WWW-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Challenge {
    Basic,
    Bearer { realm: String, service: Option<String>, scope: Option<String> },
}

/// Parses `Basic realm="…"` or `Bearer realm="…",service="…",scope="…"`.
fn parse_challenge(header: &str) -> Option<Challenge> {
    let (scheme, params) = header.trim().split_once(' ').unwrap_or((header.trim(), ""));
    let mut values = HashMap::new();
    let mut rest = params.trim();
    while !rest.is_empty() {
        let Some((key, after)) = rest.split_once('=') else { break };
        let key = key.trim().trim_start_matches(',').trim().to_ascii_lowercase();
        let after = after.trim_start();
        let (value, tail) = if let Some(quoted) = after.strip_prefix('"') {
            match quoted.find('"') {
                Some(end) => (&quoted[..end], &quoted[end + 1..]),
                None => (quoted, ""),
            }
        } else {
            match after.find(',') {
                Some(end) => (&after[..end], &after[end..]),
                None => (after, ""),
            }
        };
        values.insert(key, value.to_string());
        rest = tail.trim_start_matches([',', ' ']);
    }
    match scheme.to_ascii_lowercase().as_str() {
        "basic" => Some(Challenge::Basic),
        "bearer" => Some(Challenge::Bearer {
            realm: values.remove("realm")?,
            service: values.remove("service"),
            scope: values.remove("scope"),
        }),
        _ => None,
    }
}

/// The `rel="next"` target of a `Link` header, resolved against `base`.
fn next_link(headers: &HeaderMap, base: &Url) -> Option<Url> {
    for value in headers.get_all(LINK) {
        let Ok(text) = value.to_str() else { continue };
        for link in text.split(',') {
            let mut parts = link.split(';');
            let target = parts.next()?.trim().trim_start_matches('<').trim_end_matches('>');
            if parts.any(|p| p.trim().replace(' ', "") == "rel=\"next\"" || p.trim() == "rel=next") {
                return base.join(target).ok();
            }
        }
    }
    None
}

impl RegistryClient {
    /// A client for `registry`.
    pub fn new(registry: RegistryConfig) -> Result<Self, RegistryError> {
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("bai-manager/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| RegistryError::Http {
                registry: registry.name.clone(),
                url: registry.url.to_string(),
                reason: format!("cannot build an HTTP client: {e}"),
            })?;
        Ok(Self { http, registry, auth: Mutex::new(HashMap::new()) })
    }

    fn url(&self, path: &str) -> Url {
        let mut base = self.registry.url.clone();
        if !base.path().ends_with('/') {
            base.set_path(&format!("{}/", base.path()));
        }
        base.join(path.trim_start_matches('/')).unwrap_or(base)
    }

    fn http_error(&self, url: &Url, reason: impl Into<String>) -> RegistryError {
        RegistryError::Http { registry: self.registry.name.clone(), url: url.to_string(), reason: reason.into() }
    }

    fn unauthorized(&self, url: &Url, reason: impl Into<String>) -> RegistryError {
        RegistryError::Unauthorized {
            registry: self.registry.name.clone(),
            url: url.to_string(),
            reason: reason.into(),
        }
    }

    fn cached_auth(&self, scope: &str) -> Option<Auth> {
        let auth = self.auth.lock().unwrap_or_else(|p| p.into_inner());
        auth.get("").or_else(|| auth.get(scope)).cloned()
    }

    /// `request` with the configured credentials as basic auth, when there are some.
    fn with_basic(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.registry.username {
            Some(user) => request.basic_auth(user, self.registry.password.as_deref()),
            None => request,
        }
    }

    /// Fetches a token for `scope` from the challenge's realm.
    async fn token(&self, url: &Url, realm: &str, service: Option<&str>, scope: &str) -> Result<String, RegistryError> {
        let mut token_url = Url::parse(realm)
            .map_err(|e| self.unauthorized(url, format!("the token realm {realm:?} is not a URL: {e}")))?;
        {
            let mut query = token_url.query_pairs_mut();
            if let Some(service) = service {
                query.append_pair("service", service);
            }
            if !scope.is_empty() {
                query.append_pair("scope", scope);
            }
        }
        let reply = self
            .with_basic(self.http.get(token_url.clone()))
            .send()
            .await
            .map_err(|e| self.http_error(&token_url, format!("token service: {e}")))?;
        let status = reply.status();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(self.unauthorized(
                &token_url,
                format!(
                    "the token service refused the credentials (HTTP {status}){}",
                    if self.registry.username.is_none() { "; no username is configured" } else { "" }
                ),
            ));
        }
        if !status.is_success() {
            return Err(self.http_error(&token_url, format!("token service answered HTTP {status}")));
        }
        let body: Value =
            reply.json().await.map_err(|e| self.http_error(&token_url, format!("token service: not JSON: {e}")))?;
        body["token"]
            .as_str()
            .or_else(|| body["access_token"].as_str())
            .map(str::to_string)
            .ok_or_else(|| self.http_error(&token_url, "token service: the answer has no token"))
    }

    /// GETs `url` with `accept`, answering the registry's challenges for `scope` once.
    async fn get(&self, url: &Url, accept: &[&str], scope: &str) -> Result<reqwest::Response, RegistryError> {
        let mut auth = self.cached_auth(scope);
        for attempt in 0..2 {
            let mut request = self.http.get(url.clone());
            if !accept.is_empty() {
                request = request.header(ACCEPT, accept.join(", "));
            }
            match &auth {
                Some(Auth::Basic) => request = self.with_basic(request),
                Some(Auth::Bearer(token)) => request = request.bearer_auth(token),
                None => {}
            }
            let reply = request.send().await.map_err(|e| self.http_error(url, e.without_url().to_string()))?;
            if reply.status() != StatusCode::UNAUTHORIZED {
                if reply.status().is_success() {
                    return Ok(reply);
                }
                let status = reply.status();
                let body = reply.text().await.unwrap_or_default();
                let detail = serde_json::from_str::<Value>(&body)
                    .ok()
                    .and_then(|v| v["errors"][0]["message"].as_str().map(str::to_string))
                    .unwrap_or_else(|| body.chars().take(200).collect());
                return Err(self.http_error(url, format!("HTTP {status}: {}", detail.trim())));
            }
            let challenge =
                reply.headers().get(WWW_AUTHENTICATE).and_then(|v| v.to_str().ok()).and_then(parse_challenge);
            if attempt == 1 || challenge.is_none() {
                let reason = match (&self.registry.username, auth.is_some()) {
                    (None, _) => "HTTP 401: the registry wants credentials and none are configured".to_string(),
                    (Some(user), true) => format!("HTTP 401: the registry refused the credentials of {user:?}"),
                    (Some(_), false) => "HTTP 401 without a challenge the manager can answer".to_string(),
                };
                return Err(self.unauthorized(url, reason));
            }
            let value = match challenge.expect("checked above") {
                Challenge::Basic => {
                    if self.registry.username.is_none() {
                        return Err(
                            self.unauthorized(url, "HTTP 401: the registry wants credentials and none are configured")
                        );
                    }
                    self.auth.lock().unwrap_or_else(|p| p.into_inner()).insert(String::new(), Auth::Basic);
                    Auth::Basic
                }
                Challenge::Bearer { realm, service, scope: wanted } => {
                    let wanted = wanted.unwrap_or_else(|| scope.to_string());
                    let token = Auth::Bearer(self.token(url, &realm, service.as_deref(), &wanted).await?);
                    self.auth.lock().unwrap_or_else(|p| p.into_inner()).insert(scope.to_string(), token.clone());
                    token
                }
            };
            auth = Some(value);
        }
        unreachable!("the loop returns on its second attempt")
    }

    async fn get_json(&self, url: &Url, accept: &[&str], scope: &str) -> Result<(HeaderMap, Value), RegistryError> {
        let reply = self.get(url, accept, scope).await?;
        if reply.content_length().is_some_and(|n| n as usize > MAX_DOCUMENT) {
            return Err(self.http_error(url, format!("the document is larger than {MAX_DOCUMENT} bytes")));
        }
        let headers = reply.headers().clone();
        let bytes = reply.bytes().await.map_err(|e| self.http_error(url, e.without_url().to_string()))?;
        if bytes.len() > MAX_DOCUMENT {
            return Err(self.http_error(url, format!("the document is larger than {MAX_DOCUMENT} bytes")));
        }
        let value = serde_json::from_slice(&bytes).map_err(|e| self.http_error(url, format!("not JSON: {e}")))?;
        Ok((headers, value))
    }

    /// Every repository of the catalog, across its pages.
    pub async fn repositories(&self) -> Result<Vec<String>, RegistryError> {
        let mut url = self.url("v2/_catalog?n=100");
        let mut out = Vec::new();
        for _ in 0..10_000 {
            let (headers, body) = self.get_json(&url, &[], "registry:catalog:*").await?;
            let repos = body["repositories"]
                .as_array()
                .ok_or_else(|| self.http_error(&url, "the catalog has no `repositories` list"))?;
            out.extend(repos.iter().filter_map(|r| r.as_str().map(str::to_string)));
            match next_link(&headers, &url) {
                Some(next) => url = next,
                None => break,
            }
        }
        Ok(out)
    }

    /// The tags of `repository`, across their pages.
    pub async fn tags(&self, repository: &str) -> Result<Vec<String>, RegistryError> {
        let mut url = self.url(&format!("v2/{repository}/tags/list"));
        let scope = format!("repository:{repository}:pull");
        let mut out = Vec::new();
        for _ in 0..10_000 {
            let (headers, body) = self.get_json(&url, &[], &scope).await?;
            // A repository whose tags were all deleted answers `"tags": null`.
            if let Some(tags) = body["tags"].as_array() {
                out.extend(tags.iter().filter_map(|t| t.as_str().map(str::to_string)));
            }
            match next_link(&headers, &url) {
                Some(next) => url = next,
                None => break,
            }
        }
        Ok(out)
    }

    /// The images (one per architecture) `repository:tag` stands for.
    pub async fn images(&self, repository: &str, tag: &str) -> Result<Vec<ScannedImage>, RegistryError> {
        let scope = format!("repository:{repository}:pull");
        let accept = [MANIFEST_V2, OCI_MANIFEST, MANIFEST_LIST_V2, OCI_INDEX];
        let url = self.url(&format!("v2/{repository}/manifests/{tag}"));
        let (_, manifest) = self.get_json(&url, &accept, &scope).await?;
        let mut out = Vec::new();
        if let Some(entries) = manifest["manifests"].as_array() {
            for entry in entries {
                let arch = entry["platform"]["architecture"].as_str().unwrap_or("unknown");
                if arch == "unknown" || entry["platform"]["os"].as_str().is_some_and(|os| os != "linux") {
                    continue;
                }
                let digest = entry["digest"]
                    .as_str()
                    .ok_or_else(|| self.http_error(&url, "a manifest list entry has no digest"))?;
                let url = self.url(&format!("v2/{repository}/manifests/{digest}"));
                let (_, single) = self.get_json(&url, &accept, &scope).await?;
                out.push(self.image(repository, tag, &url, &single, &scope).await?);
            }
        } else {
            out.push(self.image(repository, tag, &url, &manifest, &scope).await?);
        }
        Ok(out)
    }

    /// The row of an image manifest.
    async fn image(
        &self,
        repository: &str,
        tag: &str,
        url: &Url,
        manifest: &Value,
        scope: &str,
    ) -> Result<ScannedImage, RegistryError> {
        if manifest["schemaVersion"].as_i64() == Some(1) {
            return Err(self.http_error(url, "schema 1 manifests are not supported"));
        }
        let config_digest = manifest["config"]["digest"]
            .as_str()
            .ok_or_else(|| self.http_error(url, "the manifest has no config digest"))?
            .to_string();
        let size: i64 = manifest["layers"]
            .as_array()
            .map(|layers| layers.iter().filter_map(|l| l["size"].as_i64()).sum())
            .unwrap_or_default();
        let blob_url = self.url(&format!("v2/{repository}/blobs/{config_digest}"));
        let (_, config) = self.get_json(&blob_url, &[], scope).await?;
        let raw_arch = config["architecture"].as_str().unwrap_or_default();
        let architecture = bai_core::image_ref::normalize_architecture(raw_arch).unwrap_or_else(|_| raw_arch.into());
        let labels: BTreeMap<String, String> = config["config"]["Labels"]
            .as_object()
            .map(|m| {
                m.iter().map(|(k, v)| (k.clone(), v.as_str().map_or_else(|| v.to_string(), str::to_string))).collect()
            })
            .unwrap_or_default();
        let project = repository.rsplit_once('/').map(|(project, _)| project.to_string());
        Ok(ScannedImage {
            name: format!("{}/{repository}:{tag}", self.registry.host()),
            image: repository.to_string(),
            project,
            tag: tag.to_string(),
            registry: self.registry.name.clone(),
            architecture,
            config_digest,
            size_bytes: size,
            resources: crate::images::resource_limits(labels.iter().map(|(k, v)| (k.as_str(), v.as_str()))),
            labels: json!(labels),
            is_local: false,
        })
    }
}

/// Scans `registry` into the image rows, reporting each tag read to `on_step`.
pub async fn scan_registry(
    db: &DatabaseConnection,
    registry: &RegistryConfig,
    on_step: OnStep<'_>,
) -> Result<RegistryReport, RegistryError> {
    let client = RegistryClient::new(registry.clone())?;
    let repositories: Vec<String> = client.repositories().await?.into_iter().filter(|r| registry.keeps(r)).collect();
    let mut report =
        RegistryReport { registry: registry.name.clone(), repositories: repositories.len(), ..Default::default() };
    on_step(Step {
        found: 0,
        done: 0,
        message: &format!("registry {}: {} repositories", registry.name, repositories.len()),
    });
    let client = &client;
    let mut tag_lists = futures::stream::iter(repositories)
        .map(|repo| async move {
            let tags = client.tags(&repo).await;
            (repo, tags)
        })
        .buffer_unordered(CONCURRENCY);
    let mut work = Vec::new();
    while let Some((repo, tags)) = tag_lists.next().await {
        match tags {
            Ok(tags) => {
                on_step(Step { found: tags.len() as u64, done: 0, message: &format!("{repo}: {} tag(s)", tags.len()) });
                work.extend(tags.into_iter().map(|tag| (repo.clone(), tag)));
            }
            Err(e) => report.failed.push((repo, e.to_string())),
        }
    }
    drop(tag_lists);
    let mut scans = futures::stream::iter(work)
        .map(|(repo, tag)| async move {
            let images = client.images(&repo, &tag).await;
            (repo, tag, images)
        })
        .buffer_unordered(CONCURRENCY);
    while let Some((repo, tag, images)) = scans.next().await {
        match images {
            Ok(images) => {
                for image in &images {
                    report.images += 1;
                    match repo::upsert_image(db, image).await? {
                        Upserted::Added => report.added += 1,
                        Upserted::Updated => report.updated += 1,
                        Upserted::Unchanged => {}
                    }
                }
                let arches: Vec<&str> = images.iter().map(|i| i.architecture.as_str()).collect();
                on_step(Step { found: 0, done: 1, message: &format!("{repo}:{tag} ({})", arches.join(", ")) });
            }
            Err(e) => {
                on_step(Step { found: 0, done: 1, message: &format!("{repo}:{tag}: {e}") });
                report.failed.push((format!("{repo}:{tag}"), e.to_string()));
            }
        }
    }
    tracing::info!(
        registry = %registry.name,
        repositories = report.repositories,
        images = report.images,
        added = report.added,
        updated = report.updated,
        failed = report.failed.len(),
        "registry scan"
    );
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn challenges_parse() {
        assert_eq!(parse_challenge(r#"Basic realm="basic-realm""#), Some(Challenge::Basic));
        assert_eq!(
            parse_challenge(
                r#"Bearer realm="https://auth.example.com/token",service="registry.example.com",scope="repository:a/b:pull""#
            ),
            Some(Challenge::Bearer {
                realm: "https://auth.example.com/token".into(),
                service: Some("registry.example.com".into()),
                scope: Some("repository:a/b:pull".into()),
            })
        );
        assert_eq!(parse_challenge("Bearer service=x"), None);
        assert_eq!(parse_challenge("Negotiate"), None);
    }

    #[test]
    fn next_links_resolve_against_the_page() {
        let base = Url::parse("http://127.0.0.1:5000/v2/_catalog?n=100").unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(LINK, HeaderValue::from_static(r#"</v2/_catalog?last=b&n=100>; rel="next""#));
        assert_eq!(next_link(&headers, &base).unwrap().as_str(), "http://127.0.0.1:5000/v2/_catalog?last=b&n=100");
        assert_eq!(next_link(&HeaderMap::new(), &base), None);
    }

    #[test]
    fn projects_filter_repositories() {
        let section = RegistrySection {
            url: "http://127.0.0.1:5000/".into(),
            kind: "docker".into(),
            username: None,
            password: None,
            project: vec!["stable".into()],
        };
        let r = RegistryConfig::from_section("local", &section).unwrap();
        assert_eq!(r.host(), "127.0.0.1:5000");
        assert!(r.keeps("stable/python") && !r.keeps("community/python") && !r.keeps("python"));
        assert!(!format!("{r:?}").contains("password: Some(\""));
    }
}
