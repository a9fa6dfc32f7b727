//! The cluster's shared configuration: the key tree every manager (and agent) of a cluster
//! reads, in etcd under `/bai/<namespace>/`, or — without etcd — in a TOML file laid out the
//! same way, or (neither configured) empty.
//!
//! Key layout (relative to the namespace):
//!
//! | key | meaning |
//! | --- | --- |
//! | `config/redis/url` | the Redis URL of the event bus (else `config/redis/addr` `host:port` and `config/redis/password`) |
//! | `config/agent/rpc-token` | the token agents accept on their RPC port |
//! | `config/watcher/token` | the token of the agents' watchers |
//! | `volumes/default_host` | the storage host new folders go to, `proxy:volume` |
//! | `volumes/hosts/<proxy:volume>/path` | a storage host: its directory under `[storage] root` (see [`crate::volumes`]) |
//! | `nodes/manager/<id>` | `up` while the manager `<id>` runs, with `…/<id>/api` (its endpoint), `…/<id>/version` and `…/<id>/started-at`; kept by a lease |
//!
//! Other modules plug in by deriving what they need from a [`Snapshot`]:
//!
//! ```no_run
//! # async fn demo(shared: std::sync::Arc<bai_manager::shared_config::SharedConfig>) {
//! // A typed view of `config/idle/checkers/…`, recomputed when any key changes and published
//! // only when the view itself changed.
//! let mut checkers = shared.derive(|s| {
//!     s.under("config/idle/checkers/").map(|(k, v)| (k.to_string(), v.to_string())).collect::<Vec<_>>()
//! });
//! let now = checkers.borrow().clone();
//! while checkers.changed().await.is_ok() {
//!     let updated = checkers.borrow_and_update().clone();
//!     // apply `updated`
//! #   let _ = (&now, updated);
//! }
//! # }
//! ```
//!
//! [`SharedConfig::current`] reads once, [`SharedConfig::subscribe`] gives every snapshot and
//! [`SharedConfig::derive`] a typed, de-duplicated view (`tokio::sync::watch`); the manager
//! registers its `SharedConfig` as an API service (`state.service::<SharedConfig>()`).
//!
//! The etcd backend loads the whole prefix, then watches it from the next revision. A lost
//! watch (etcd restarted, a network fault, a compacted revision) is logged and retried with
//! exponential backoff (0.2 s to 10 s); each new connection reloads the whole prefix, so no
//! change is missed. The file backend re-reads its file every `[etcd] fallback-poll-interval`;
//! a file that fails to parse is logged and the last good snapshot stays. Nothing here
//! panics on bad data: a value that does not parse is the reader's to report.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use etcd_client::{Client, ConnectOptions, EventType, GetOptions, PutOptions, WatchOptions};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::{ConfigError, EtcdSection};

/// The keys the manager reads, relative to the namespace.
pub mod keys {
    /// The Redis URL.
    pub const REDIS_URL: &str = "config/redis/url";
    /// The Redis address, `host:port` (the original's key; `REDIS_URL` wins).
    pub const REDIS_ADDR: &str = "config/redis/addr";
    /// The Redis password, with `REDIS_ADDR`.
    pub const REDIS_PASSWORD: &str = "config/redis/password";
    /// The agents' RPC token.
    pub const AGENT_RPC_TOKEN: &str = "config/agent/rpc-token";
    /// The watchers' token (the original's key).
    pub const WATCHER_TOKEN: &str = "config/watcher/token";
    /// The default storage host.
    pub const DEFAULT_HOST: &str = "volumes/default_host";
    /// The storage hosts: `volumes/hosts/<proxy:volume>/<setting>`.
    pub const VOLUME_HOSTS: &str = "volumes/hosts/";
    /// The managers: `nodes/manager/<id>`.
    pub const MANAGER_NODES: &str = "nodes/manager/";
}

/// How long a single etcd request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// The first and the longest pause before a lost watch or lease is retried.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(200), Duration::from_secs(10));

/// Why the shared configuration could not be read or written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SharedConfigError {
    /// etcd did not answer or refused.
    #[error("etcd {endpoints}: {reason}")]
    Etcd {
        /// The endpoints, comma-separated.
        endpoints: String,
        /// What failed.
        reason: String,
    },
    /// The file backend is read-only.
    #[error("the shared configuration is the file {0}; edit the file instead")]
    ReadOnly(PathBuf),
    /// A key that cannot be written.
    #[error("key {key:?}: {reason}")]
    InvalidKey {
        /// The key.
        key: String,
        /// What is wrong.
        reason: String,
    },
}

/// One state of the key tree: keys relative to the namespace (`config/redis/url`) → values.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    keys: BTreeMap<String, String>,
}

impl Snapshot {
    /// A snapshot of these pairs.
    pub fn from_pairs<K: Into<String>, V: Into<String>>(pairs: impl IntoIterator<Item = (K, V)>) -> Self {
        Self { keys: pairs.into_iter().map(|(k, v)| (k.into(), v.into())).collect() }
    }

    /// The raw value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.keys.get(key).map(String::as_str)
    }

    /// The value of `key` trimmed, `None` when missing or blank.
    pub fn text(&self, key: &str) -> Option<&str> {
        self.get(key).map(str::trim).filter(|v| !v.is_empty())
    }

    /// The keys under `prefix` (which should end with `/`), relative to it, in key order.
    pub fn under<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
        self.keys
            .range::<str, _>((std::ops::Bound::Included(prefix), std::ops::Bound::Unbounded))
            .map_while(move |(k, v)| k.strip_prefix(prefix).map(|rest| (rest, v.as_str())))
    }

    /// Every key and value.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.keys.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// How many keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether there is no key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The keys of a TOML document: nested tables are path segments (`[config.redis] url` is
    /// `config/redis/url`); strings are taken as they are, other scalars as TOML writes them,
    /// arrays as JSON text.
    pub fn from_toml(text: &str) -> Result<Self, String> {
        fn flatten(prefix: &str, table: &toml::Table, out: &mut BTreeMap<String, String>) {
            for (k, v) in table {
                let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}/{k}") };
                match v {
                    toml::Value::Table(t) => flatten(&key, t, out),
                    toml::Value::String(s) => {
                        out.insert(key, s.clone());
                    }
                    toml::Value::Array(items) => {
                        let json = serde_json::to_string(items).unwrap_or_default();
                        out.insert(key, json);
                    }
                    other => {
                        out.insert(key, other.to_string());
                    }
                }
            }
        }
        let table: toml::Table = toml::from_str(text).map_err(|e| e.to_string())?;
        let mut keys = BTreeMap::new();
        flatten("", &table, &mut keys);
        Ok(Self { keys })
    }
}

/// The `config/` values the manager itself uses, read at start.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GlobalConfig {
    /// `config/redis/url`, or a URL made of `config/redis/addr` and `config/redis/password`
    /// (database 4, as the manager's default).
    pub redis_url: Option<String>,
    /// `config/agent/rpc-token`.
    pub agent_rpc_token: Option<String>,
    /// `config/watcher/token`.
    pub watcher_token: Option<String>,
}

impl GlobalConfig {
    /// The values in `snapshot`.
    pub fn from_snapshot(snapshot: &Snapshot) -> Self {
        let redis_url = snapshot.text(keys::REDIS_URL).map(str::to_string).or_else(|| {
            let addr = snapshot.text(keys::REDIS_ADDR)?;
            let auth = match snapshot.text(keys::REDIS_PASSWORD) {
                Some(pw) => {
                    format!(":{}@", percent_encoding::utf8_percent_encode(pw, percent_encoding::NON_ALPHANUMERIC))
                }
                None => String::new(),
            };
            Some(format!("redis://{auth}{addr}/4"))
        });
        Self {
            redis_url,
            agent_rpc_token: snapshot.text(keys::AGENT_RPC_TOKEN).map(str::to_string),
            watcher_token: snapshot.text(keys::WATCHER_TOKEN).map(str::to_string),
        }
    }
}

/// What a manager publishes about itself under `nodes/manager/<id>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagerNode {
    /// The manager's id (`[manager] id`).
    pub id: String,
    /// Its API endpoint, e.g. `http://10.0.0.5:8081`.
    pub api: String,
    /// Its version.
    pub version: String,
}

impl ManagerNode {
    /// The keys and values of the registration.
    pub fn pairs(&self) -> Vec<(String, String)> {
        let base = format!("{}{}", keys::MANAGER_NODES, self.id);
        vec![
            (base.clone(), "up".to_string()),
            (format!("{base}/api"), self.api.clone()),
            (format!("{base}/version"), self.version.clone()),
            (format!("{base}/started-at"), chrono::Utc::now().to_rfc3339()),
        ]
    }
}

enum Backend {
    Etcd { endpoints: Vec<String>, prefix: String, client: Box<Client> },
    File { path: PathBuf },
    Memory,
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Backend::Etcd { endpoints, prefix, .. } => {
                f.debug_struct("Etcd").field("endpoints", endpoints).field("prefix", prefix).finish_non_exhaustive()
            }
            Backend::File { path } => f.debug_struct("File").field("path", path).finish(),
            Backend::Memory => f.write_str("Memory"),
        }
    }
}

/// The shared configuration: the current [`Snapshot`], kept up to date, and writes.
#[derive(Debug)]
pub struct SharedConfig {
    backend: Backend,
    snapshot: Arc<watch::Sender<Arc<Snapshot>>>,
    stop: watch::Sender<bool>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

fn etcd_options() -> ConnectOptions {
    ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(5))
        .with_keep_alive(Duration::from_secs(5), Duration::from_secs(5))
        .with_keep_alive_while_idle(true)
}

async fn connect_etcd(endpoints: &[String]) -> Result<Client, String> {
    match tokio::time::timeout(REQUEST_TIMEOUT, Client::connect(endpoints, Some(etcd_options()))).await {
        Ok(Ok(client)) => Ok(client),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {} s", REQUEST_TIMEOUT.as_secs())),
    }
}

/// Runs one etcd request with [`REQUEST_TIMEOUT`].
async fn timed<T>(fut: impl std::future::Future<Output = Result<T, etcd_client::Error>>) -> Result<T, String> {
    match tokio::time::timeout(REQUEST_TIMEOUT, fut).await {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(_) => Err(format!("no answer within {} s", REQUEST_TIMEOUT.as_secs())),
    }
}

/// The whole prefix and the revision it was read at.
async fn load_prefix(client: &mut Client, prefix: &str) -> Result<(Snapshot, i64), String> {
    let reply = timed(client.get(prefix, Some(GetOptions::new().with_prefix()))).await?;
    let revision = reply.header().map(|h| h.revision()).unwrap_or_default();
    let mut keys = BTreeMap::new();
    for kv in reply.kvs() {
        let (Ok(key), Ok(value)) = (kv.key_str(), kv.value_str()) else { continue };
        if let Some(rel) = key.strip_prefix(prefix) {
            keys.insert(rel.to_string(), value.to_string());
        }
    }
    Ok((Snapshot { keys }, revision))
}

/// Publishes `new` if it differs from the current snapshot.
fn publish(tx: &watch::Sender<Arc<Snapshot>>, new: Snapshot) {
    tx.send_if_modified(|cur| {
        if **cur == new {
            return false;
        }
        *cur = Arc::new(new);
        true
    });
}

/// Sleeps `pause` unless stopped first; whether to go on.
async fn pause_unless_stopped(pause: Duration, stop: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(pause) => {}
        _ = stop.wait_for(|s| *s) => return false,
    }
    !*stop.borrow()
}

/// One watch of the prefix on a fresh connection: reloads the prefix, then applies events
/// until the stream fails (the error says why).
async fn watch_once(
    endpoints: &[String],
    prefix: &str,
    tx: &watch::Sender<Arc<Snapshot>>,
    retrying: &mut bool,
) -> String {
    let mut client = match connect_etcd(endpoints).await {
        Ok(c) => c,
        Err(e) => return e,
    };
    let (snapshot, revision) = match load_prefix(&mut client, prefix).await {
        Ok(r) => r,
        Err(e) => return e,
    };
    publish(tx, snapshot);
    let options = WatchOptions::new().with_prefix().with_start_revision(revision + 1);
    let mut stream = match timed(client.watch(prefix, Some(options))).await {
        Ok(s) => s,
        Err(e) => return e,
    };
    if std::mem::take(retrying) {
        tracing::info!(prefix, "etcd watch re-established; the shared configuration is reloaded");
    }
    loop {
        let reply = match stream.message().await {
            Ok(Some(r)) => r,
            Ok(None) => return "the watch stream ended".into(),
            Err(e) => return e.to_string(),
        };
        if reply.canceled() {
            return format!(
                "the watch was cancelled ({:?}, compacted at {})",
                reply.cancel_reason(),
                reply.compact_revision()
            );
        }
        if reply.events().is_empty() {
            continue;
        }
        let mut next = (**tx.borrow()).clone();
        for event in reply.events() {
            let Some(kv) = event.kv() else { continue };
            let Some(key) = kv.key_str().ok().and_then(|k| k.strip_prefix(prefix)) else { continue };
            match event.event_type() {
                EventType::Put => match kv.value_str() {
                    Ok(v) => {
                        next.keys.insert(key.to_string(), v.to_string());
                    }
                    Err(_) => {
                        tracing::warn!(key, "etcd value is not UTF-8; the key is ignored");
                        next.keys.remove(key);
                    }
                },
                EventType::Delete => {
                    next.keys.remove(key);
                }
            }
        }
        publish(tx, next);
    }
}

async fn etcd_watch_loop(
    endpoints: Vec<String>,
    prefix: String,
    tx: Arc<watch::Sender<Arc<Snapshot>>>,
    mut stop: watch::Receiver<bool>,
) {
    let mut backoff = BACKOFF.0;
    let mut retrying = false;
    loop {
        let started = tokio::time::Instant::now();
        let reason = tokio::select! {
            reason = watch_once(&endpoints, &prefix, &tx, &mut retrying) => reason,
            _ = stop.wait_for(|s| *s) => return,
        };
        // A watch that ran a while before failing starts the backoff over.
        if started.elapsed() > BACKOFF.1 {
            backoff = BACKOFF.0;
        }
        tracing::warn!(endpoints = %endpoints.join(","), %reason, retry_in = ?backoff, "etcd watch lost; reconnecting");
        retrying = true;
        if !pause_unless_stopped(backoff, &mut stop).await {
            return;
        }
        backoff = (backoff * 2).min(BACKOFF.1);
    }
}

async fn read_file_snapshot(path: &Path) -> Result<(String, Snapshot), String> {
    let text = tokio::fs::read_to_string(path).await.map_err(|e| e.to_string())?;
    let snapshot = Snapshot::from_toml(&text)?;
    Ok((text, snapshot))
}

async fn file_poll_loop(
    path: PathBuf,
    mut last: String,
    every: Duration,
    tx: Arc<watch::Sender<Arc<Snapshot>>>,
    mut stop: watch::Receiver<bool>,
) {
    let mut failing: Option<String> = None;
    while pause_unless_stopped(every, &mut stop).await {
        let text = match tokio::fs::read_to_string(&path).await {
            Ok(t) => t,
            Err(e) => {
                let reason = e.to_string();
                if failing.as_ref() != Some(&reason) {
                    tracing::warn!(file = %path.display(), %reason, "cannot read the shared configuration file; keeping the last one read");
                    failing = Some(reason);
                }
                continue;
            }
        };
        if text == last {
            continue;
        }
        match Snapshot::from_toml(&text) {
            Ok(snapshot) => {
                tracing::info!(file = %path.display(), keys = snapshot.len(), "shared configuration file reloaded");
                publish(&tx, snapshot);
                failing = None;
            }
            Err(reason) => {
                tracing::warn!(file = %path.display(), %reason, "the shared configuration file does not parse; keeping the last good one");
            }
        }
        last = text;
    }
}

fn check_key(key: &str) -> Result<(), SharedConfigError> {
    let bad = |reason: &str| Err(SharedConfigError::InvalidKey { key: key.to_string(), reason: reason.to_string() });
    if key.is_empty() {
        return bad("is empty");
    }
    if key.starts_with('/') {
        return bad("must be relative to the namespace (no leading '/')");
    }
    if key.split('/').any(|s| s.is_empty() || s == "..") {
        return bad("has an empty or '..' segment");
    }
    Ok(())
}

impl SharedConfig {
    /// The shared configuration of `[etcd]`: etcd when `endpoints` is set (an unreachable etcd
    /// is an error naming `etcd.endpoints`), else `fallback-file` (which must exist and parse),
    /// else an empty in-memory tree.
    pub async fn connect(section: &EtcdSection) -> Result<Arc<Self>, ConfigError> {
        if !section.endpoints.is_empty() {
            return Self::etcd(&section.endpoints, &section.namespace).await.map_err(|e| ConfigError {
                field: "etcd.endpoints".into(),
                reason: match e {
                    SharedConfigError::Etcd { endpoints, reason } => format!("{endpoints}: {reason}"),
                    other => other.to_string(),
                },
            });
        }
        if let Some(path) = &section.fallback_file {
            return Self::file(path, Duration::from_secs_f64(section.fallback_poll_interval.max(0.01))).await;
        }
        Ok(Self::memory(Snapshot::default()))
    }

    fn with_backend(backend: Backend, initial: Snapshot) -> Self {
        Self {
            backend,
            snapshot: Arc::new(watch::channel(Arc::new(initial)).0),
            stop: watch::channel(false).0,
            tasks: Mutex::new(Vec::new()),
        }
    }

    fn spawn(&self, task: impl std::future::Future<Output = ()> + Send + 'static) {
        self.tasks.lock().unwrap_or_else(|e| e.into_inner()).push(tokio::spawn(task));
    }

    /// etcd at `endpoints`, keys under `/bai/<namespace>/`: loads them and watches them.
    pub async fn etcd(endpoints: &[String], namespace: &str) -> Result<Arc<Self>, SharedConfigError> {
        let fail = |reason: String| SharedConfigError::Etcd { endpoints: endpoints.join(","), reason };
        let prefix = format!("/bai/{namespace}/");
        let mut client = connect_etcd(endpoints).await.map_err(fail)?;
        let (initial, _) = load_prefix(&mut client, &prefix).await.map_err(fail)?;
        let endpoints = endpoints.to_vec();
        let this = Self::with_backend(
            Backend::Etcd { endpoints: endpoints.clone(), prefix: prefix.clone(), client: Box::new(client) },
            initial,
        );
        // The loop reloads the prefix on connecting, so nothing between the load above and
        // its watch is missed.
        this.spawn(etcd_watch_loop(endpoints, prefix, this.snapshot.clone(), this.stop.subscribe()));
        Ok(Arc::new(this))
    }

    /// A TOML file standing in for etcd, re-read every `poll` when it changed. It must exist
    /// and parse now (an error names `etcd.fallback-file`).
    pub async fn file(path: &Path, poll: Duration) -> Result<Arc<Self>, ConfigError> {
        let (text, initial) = read_file_snapshot(path).await.map_err(|reason| ConfigError {
            field: "etcd.fallback-file".into(),
            reason: format!("{}: {reason}", path.display()),
        })?;
        let this = Self::with_backend(Backend::File { path: path.to_path_buf() }, initial);
        this.spawn(file_poll_loop(path.to_path_buf(), text, poll, this.snapshot.clone(), this.stop.subscribe()));
        Ok(Arc::new(this))
    }

    /// An in-memory tree starting as `initial` ([`put`](Self::put) and
    /// [`delete`](Self::delete) change it).
    pub fn memory(initial: Snapshot) -> Arc<Self> {
        Arc::new(Self::with_backend(Backend::Memory, initial))
    }

    /// Where the configuration comes from, for logs: `etcd <endpoints> /bai/<ns>/`,
    /// `file <path>` or `memory`.
    pub fn source(&self) -> String {
        match &self.backend {
            Backend::Etcd { endpoints, prefix, .. } => format!("etcd {} {prefix}", endpoints.join(",")),
            Backend::File { path } => format!("file {}", path.display()),
            Backend::Memory => "memory".into(),
        }
    }

    /// Whether this is etcd.
    pub fn is_etcd(&self) -> bool {
        matches!(self.backend, Backend::Etcd { .. })
    }

    /// The current snapshot.
    pub fn current(&self) -> Arc<Snapshot> {
        self.snapshot.borrow().clone()
    }

    /// Every new snapshot (a changed key tree) from now on.
    pub fn subscribe(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.snapshot.subscribe()
    }

    /// The `config/` values the manager uses, as they are now.
    pub fn global(&self) -> GlobalConfig {
        GlobalConfig::from_snapshot(&self.current())
    }

    /// A view `f` of the snapshots: computed now and again on each change, and published only
    /// when it differs from the last one. The task behind it ends when every receiver is
    /// dropped or the shared configuration is closed.
    pub fn derive<T, F>(&self, f: F) -> watch::Receiver<T>
    where
        T: PartialEq + Send + Sync + 'static,
        F: Fn(&Snapshot) -> T + Send + 'static,
    {
        let mut snapshots = self.subscribe();
        let first = f(&snapshots.borrow_and_update());
        let (tx, rx) = watch::channel(first);
        self.spawn(async move {
            loop {
                tokio::select! {
                    changed = snapshots.changed() => if changed.is_err() { return },
                    _ = tx.closed() => return,
                }
                let view = f(&snapshots.borrow_and_update());
                tx.send_if_modified(|cur| {
                    if *cur == view {
                        return false;
                    }
                    *cur = view;
                    true
                });
            }
        });
        rx
    }

    /// Sets `key` (relative to the namespace). The file backend refuses.
    pub async fn put(&self, key: &str, value: &str) -> Result<(), SharedConfigError> {
        self.put_with(key, value, None).await
    }

    async fn put_with(&self, key: &str, value: &str, lease: Option<i64>) -> Result<(), SharedConfigError> {
        check_key(key)?;
        match &self.backend {
            Backend::Etcd { endpoints, prefix, client } => {
                let options = lease.map(|l| PutOptions::new().with_lease(l));
                timed(client.clone().put(format!("{prefix}{key}"), value, options))
                    .await
                    .map_err(|reason| SharedConfigError::Etcd { endpoints: endpoints.join(","), reason })?;
            }
            Backend::File { path } => return Err(SharedConfigError::ReadOnly(path.clone())),
            Backend::Memory => self.snapshot.send_modify(|s| {
                let mut next = (**s).clone();
                next.keys.insert(key.to_string(), value.to_string());
                *s = Arc::new(next);
            }),
        }
        Ok(())
    }

    /// Deletes `key`, and with `prefix` every key under `key/` too.
    pub async fn delete(&self, key: &str, prefix: bool) -> Result<(), SharedConfigError> {
        check_key(key)?;
        match &self.backend {
            Backend::Etcd { endpoints, prefix: ns, client } => {
                let fail = |reason| SharedConfigError::Etcd { endpoints: endpoints.join(","), reason };
                let mut client = client.clone();
                timed(client.delete(format!("{ns}{key}"), None)).await.map_err(fail)?;
                if prefix {
                    let options = etcd_client::DeleteOptions::new().with_prefix();
                    timed(client.delete(format!("{ns}{key}/"), Some(options))).await.map_err(fail)?;
                }
            }
            Backend::File { path } => return Err(SharedConfigError::ReadOnly(path.clone())),
            Backend::Memory => self.snapshot.send_modify(|s| {
                let mut next = (**s).clone();
                let under = format!("{key}/");
                next.keys.retain(|k, _| k != key && !(prefix && k.starts_with(&under)));
                *s = Arc::new(next);
            }),
        }
        Ok(())
    }

    /// Registers a manager under `nodes/manager/<id>` until [`Registration::close`].
    ///
    /// On etcd the keys hang on a lease of `ttl` (at least 2 s) renewed every third of it, so
    /// a manager that dies without closing disappears once the lease expires; a lease lost
    /// while etcd was unreachable is granted again and the keys put again. In memory the keys
    /// are set until closed; with the file backend nothing is registered.
    pub async fn register_manager(
        self: &Arc<Self>,
        node: ManagerNode,
        ttl: Duration,
    ) -> Result<Registration, SharedConfigError> {
        if node.id.is_empty() || node.id.contains('/') {
            return Err(SharedConfigError::InvalidKey {
                key: format!("{}{}", keys::MANAGER_NODES, node.id),
                reason: "the manager id must be non-empty and without '/'".into(),
            });
        }
        let pairs = node.pairs();
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let task = match &self.backend {
            Backend::File { .. } => None,
            Backend::Memory => {
                for (k, v) in &pairs {
                    self.put(k, v).await?;
                }
                let this = self.clone();
                Some(tokio::spawn(async move {
                    let _ = stopped.await;
                    let _ = this.delete(&pairs[0].0, true).await;
                }))
            }
            Backend::Etcd { endpoints, .. } => {
                let ttl = ttl.as_secs().max(2) as i64;
                let lease = self.grant_and_put(&pairs, ttl).await?;
                tracing::info!(key = %pairs[0].0, lease, ttl, "manager registered in etcd");
                let this = self.clone();
                let endpoints = endpoints.join(",");
                Some(tokio::spawn(async move { this.keep_registered(pairs, ttl, lease, stopped, endpoints).await }))
            }
        };
        Ok(Registration { stop: Some(stop), task })
    }

    async fn grant_and_put(&self, pairs: &[(String, String)], ttl: i64) -> Result<i64, SharedConfigError> {
        let Backend::Etcd { endpoints, client, .. } = &self.backend else { return Ok(0) };
        let lease = timed(client.clone().lease_grant(ttl, None))
            .await
            .map_err(|reason| SharedConfigError::Etcd { endpoints: endpoints.join(","), reason })?
            .id();
        for (k, v) in pairs {
            self.put_with(k, v, Some(lease)).await?;
        }
        Ok(lease)
    }

    /// Renews `lease` until `stopped`, granting a new one (and putting `pairs` again) when it
    /// is lost; then revokes it and deletes the keys.
    async fn keep_registered(
        &self,
        pairs: Vec<(String, String)>,
        ttl: i64,
        mut lease: i64,
        mut stopped: tokio::sync::oneshot::Receiver<()>,
        endpoints: String,
    ) {
        let Backend::Etcd { client, .. } = &self.backend else { return };
        let every = Duration::from_secs_f64(ttl as f64 / 3.0);
        let mut backoff = BACKOFF.0;
        'outer: loop {
            let failure = match timed(client.clone().lease_keep_alive(lease)).await {
                Err(e) => e,
                Ok((mut keeper, mut replies)) => loop {
                    tokio::select! {
                        _ = &mut stopped => break 'outer,
                        _ = tokio::time::sleep(every) => {}
                    }
                    if let Err(e) = timed(keeper.keep_alive()).await {
                        break e;
                    }
                    match tokio::time::timeout(REQUEST_TIMEOUT, replies.message()).await {
                        Ok(Ok(Some(r))) if r.ttl() > 0 => backoff = BACKOFF.0,
                        Ok(Ok(Some(_))) => break "the lease expired".to_string(),
                        Ok(Ok(None)) => break "the keep-alive stream ended".to_string(),
                        Ok(Err(e)) => break e.to_string(),
                        Err(_) => break format!("no keep-alive answer within {} s", REQUEST_TIMEOUT.as_secs()),
                    }
                },
            };
            tracing::warn!(%endpoints, key = %pairs[0].0, reason = %failure, retry_in = ?backoff, "the manager's etcd lease is lost; registering again");
            // Register again (a new lease) until it works or the manager stops.
            loop {
                tokio::select! {
                    _ = &mut stopped => break 'outer,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(BACKOFF.1);
                match self.grant_and_put(&pairs, ttl).await {
                    Ok(l) => {
                        lease = l;
                        tracing::info!(key = %pairs[0].0, lease, "manager registered in etcd again");
                        continue 'outer;
                    }
                    Err(e) => tracing::warn!(error = %e, retry_in = ?backoff, "cannot register the manager in etcd"),
                }
            }
        }
        let _ = timed(client.clone().lease_revoke(lease)).await;
        if let Err(e) = self.delete(&pairs[0].0, true).await {
            tracing::warn!(error = %e, "cannot remove the manager's keys from etcd; they go with its lease");
        }
        tracing::info!(key = %pairs[0].0, "manager deregistered from etcd");
    }

    /// Stops the watch and every derived view (their receivers keep the last value).
    pub fn close(&self) {
        let _ = self.stop.send(true);
        for task in self.tasks.lock().unwrap_or_else(|e| e.into_inner()).drain(..) {
            task.abort();
        }
    }
}

impl Drop for SharedConfig {
    fn drop(&mut self) {
        self.close();
    }
}

/// A manager's registration under `nodes/manager/<id>` ([`SharedConfig::register_manager`]).
#[derive(Debug)]
pub struct Registration {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Registration {
    /// Deregisters: revokes the lease and deletes the keys (waits up to 10 s).
    pub async fn close(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
        }
    }

    /// Stops renewing without deregistering, as a crashed manager would: on etcd the keys
    /// stay until the lease expires.
    pub fn abandon(mut self) {
        self.stop.take();
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        // Dropped without close: deregister in the background.
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_tables_are_key_paths() {
        let s = Snapshot::from_toml(
            "[config.redis]\nurl = \" redis://h:1/2 \"\n[config.idle]\nchecks = [\"a\", \"b\"]\nn = 3\n\
             [volumes]\ndefault_host = \"local:v2\"\n[volumes.hosts.\"local:v2\"]\npath = \"v2\"\n",
        )
        .unwrap();
        assert_eq!(s.text(keys::REDIS_URL), Some("redis://h:1/2"));
        assert_eq!(s.get("config/idle/checks"), Some("[\"a\",\"b\"]"));
        assert_eq!(s.get("config/idle/n"), Some("3"));
        assert_eq!(s.get("volumes/hosts/local:v2/path"), Some("v2"));
        let under: Vec<_> = s.under("volumes/").collect();
        assert_eq!(under, vec![("default_host", "local:v2"), ("hosts/local:v2/path", "v2")]);
        assert!(Snapshot::from_toml("[config\n").unwrap_err().contains("line 1"));
    }

    #[test]
    fn global_values() {
        let g = GlobalConfig::from_snapshot(&Snapshot::from_pairs([
            (keys::REDIS_ADDR, "10.0.0.1:6379"),
            (keys::REDIS_PASSWORD, "p@ss"),
            (keys::AGENT_RPC_TOKEN, " tok \n"),
            (keys::WATCHER_TOKEN, ""),
        ]));
        assert_eq!(g.redis_url.as_deref(), Some("redis://:p%40ss@10.0.0.1:6379/4"));
        assert_eq!(g.agent_rpc_token.as_deref(), Some("tok"));
        assert_eq!(g.watcher_token, None);
        let g = GlobalConfig::from_snapshot(&Snapshot::from_pairs([
            (keys::REDIS_ADDR, "10.0.0.1:6379"),
            (keys::REDIS_URL, "redis://x/1"),
        ]));
        assert_eq!(g.redis_url.as_deref(), Some("redis://x/1"));
    }

    #[tokio::test]
    async fn derived_views_follow_changes_and_skip_equal_ones() {
        let shared = SharedConfig::memory(Snapshot::from_pairs([("config/a", "1")]));
        let mut a = shared.derive(|s| s.get("config/a").map(str::to_string));
        assert_eq!(a.borrow_and_update().as_deref(), Some("1"));
        shared.put("config/b", "x").await.unwrap();
        shared.put("config/a", "2").await.unwrap();
        a.changed().await.unwrap();
        assert_eq!(a.borrow_and_update().as_deref(), Some("2"));
        // A change elsewhere is not published as a change of the view.
        shared.put("config/b", "y").await.unwrap();
        shared.delete("config/a", false).await.unwrap();
        a.changed().await.unwrap();
        assert_eq!(*a.borrow_and_update(), None);
        assert_eq!(shared.current().get("config/b"), Some("y"));
        let err = shared.put("/abs", "v").await.unwrap_err();
        assert!(err.to_string().contains("\"/abs\""), "{err}");
        assert!(shared.put("a//b", "v").await.is_err());
    }

    #[tokio::test]
    async fn memory_registration_until_closed() {
        let shared = SharedConfig::memory(Snapshot::default());
        let node = ManagerNode { id: "m-1".into(), api: "http://h:1".into(), version: "0".into() };
        let reg = shared.register_manager(node.clone(), Duration::from_secs(5)).await.unwrap();
        assert_eq!(shared.current().get("nodes/manager/m-1"), Some("up"));
        assert_eq!(shared.current().get("nodes/manager/m-1/api"), Some("http://h:1"));
        shared.put("nodes/manager/m-10", "up").await.unwrap();
        reg.close().await;
        let now = shared.current();
        assert_eq!(now.under("nodes/manager/").collect::<Vec<_>>(), vec![("m-10", "up")]);
        let bad = ManagerNode { id: "a/b".into(), ..node };
        assert!(shared.register_manager(bad, Duration::from_secs(5)).await.is_err());
    }
}
