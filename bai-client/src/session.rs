//! Compute sessions: create, list, info, destroy, restart, logs, files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::client::{seg, Body, Client};
use crate::error::{invalid, io_error, not_found, protocol, Result};
use crate::multipart;

/// `interactive` or `batch`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SessionType {
    /// Stays up until destroyed; code is run in it on request.
    #[default]
    Interactive,
    /// Runs its startup command and ends.
    Batch,
}

/// What to create: an image and everything optional, builder style.
///
/// ```
/// use bai_client::SessionSpec;
/// let spec = SessionSpec::new("python:3.11").name("train-1").resource("cpu", "2").resource("mem", "4g").env("SEED", "7");
/// assert_eq!(spec.to_body("default", "default")["config"]["resources"]["mem"], "4g");
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SessionSpec {
    /// The image reference or alias.
    pub image: String,
    /// The session name (4–64 characters); a random `bai-…` name when `None`.
    pub name: Option<String>,
    /// Interactive or batch.
    pub session_type: SessionType,
    /// Requested slots as typed: `{"cpu": "1", "mem": "1g"}`.
    pub resources: BTreeMap<String, String>,
    /// Resource options, e.g. `{"shmem": "64m"}`.
    pub resource_opts: BTreeMap<String, String>,
    /// Environment variables.
    pub environ: BTreeMap<String, String>,
    /// Folders to mount, by name.
    pub mounts: Vec<String>,
    /// Where to mount them (`name → path`; relative paths are under `/home/work`).
    pub mount_map: BTreeMap<String, String>,
    /// The scaling group; the manager picks one when `None`.
    pub scaling_group: Option<String>,
    /// Number of kernels.
    pub cluster_size: u32,
    /// The command a batch session runs.
    pub startup_command: Option<String>,
    /// A script run before the kernel starts.
    pub bootstrap_script: Option<String>,
    /// A free-form tag.
    pub tag: Option<String>,
    /// Return as soon as the session is queued.
    pub enqueue_only: bool,
    /// Give up waiting for RUNNING after this many seconds (0: wait as long as it takes).
    pub max_wait_seconds: u64,
    /// Reuse a running session of the same name and image instead of failing.
    pub reuse_if_exists: bool,
    /// Admins: create on behalf of this access key.
    pub owner_access_key: Option<String>,
    /// The project; the client's configured group when `None`.
    pub group: Option<String>,
    /// Ports to open in advance.
    pub preopen_ports: Vec<u16>,
    /// The architecture; this machine's when `None`.
    pub architecture: Option<String>,
}

impl SessionSpec {
    /// A session of `image` with defaults (interactive, one kernel, wait until running).
    pub fn new(image: impl Into<String>) -> Self {
        Self { image: image.into(), cluster_size: 1, reuse_if_exists: true, ..Self::default() }
    }

    /// Sets the name.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Requests `amount` of a slot (`cpu`, `mem`, `cuda.shares`, …).
    pub fn resource(mut self, slot: impl Into<String>, amount: impl Into<String>) -> Self {
        self.resources.insert(slot.into(), amount.into());
        self
    }

    /// Sets an environment variable.
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.environ.insert(key.into(), value.into());
        self
    }

    /// Mounts a folder (at `/home/work/<name>`).
    pub fn mount(mut self, folder: impl Into<String>) -> Self {
        self.mounts.push(folder.into());
        self
    }

    /// Makes it a batch session running `command`.
    pub fn batch(mut self, command: impl Into<String>) -> Self {
        self.session_type = SessionType::Batch;
        self.startup_command = Some(command.into());
        self
    }

    /// Returns as soon as the session is queued.
    pub fn enqueue_only(mut self) -> Self {
        self.enqueue_only = true;
        self
    }

    /// The request body, as the official client builds it.
    pub fn to_body(&self, domain: &str, group: &str) -> Value {
        let name = self.name.clone().unwrap_or_else(random_name);
        let mut resources = serde_json::Map::new();
        for (slot, amount) in &self.resources {
            // unitless memory is in MiB, as in the official client
            let amount = if slot == "mem" && amount.chars().all(|c| c.is_ascii_digit()) {
                format!("{amount}m")
            } else {
                amount.clone()
            };
            resources.insert(slot.clone(), Value::String(amount));
        }
        json!({
            "tag": self.tag,
            "name": name,
            "config": {
                "mounts": self.mounts,
                "environ": self.environ,
                "resources": resources,
                "resource_opts": self.resource_opts,
                "scalingGroup": self.scaling_group,
                "mount_map": self.mount_map,
                "preopen_ports": if self.preopen_ports.is_empty() { Value::Null } else { json!(self.preopen_ports) },
            },
            "dependencies": [],
            "callback_url": null,
            "architecture": self.architecture.clone().unwrap_or_else(|| std::env::consts::ARCH.to_string()),
            "clusterSize": self.cluster_size.max(1),
            "clusterMode": "single-node",
            "starts_at": null,
            "bootstrap_script": self.bootstrap_script,
            "owner_access_key": self.owner_access_key,
            "domain": domain,
            "group": self.group.as_deref().unwrap_or(group),
            "type": self.session_type,
            "enqueueOnly": self.enqueue_only,
            "maxWaitSeconds": self.max_wait_seconds,
            "reuseIfExists": self.reuse_if_exists,
            "startupCommand": self.startup_command,
            "image": self.image,
        })
    }
}

/// A random session name, `bai-` and 10 hex digits.
pub fn random_name() -> String {
    format!("bai-{}", &Uuid::new_v4().simple().to_string()[..10])
}

/// A service a session exposes (Jupyter, SSH, …).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct ServicePort {
    /// The service name.
    pub name: String,
    /// `http`, `tcp`, `pty`, …
    #[serde(default)]
    pub protocol: String,
    /// The container ports.
    #[serde(default)]
    pub ports: Vec<u16>,
}

/// What creating a session returned.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionCreated {
    /// The session id.
    pub session_id: Uuid,
    /// Its name.
    #[serde(default)]
    pub session_name: String,
    /// `RUNNING`, `PENDING` (queued), `TIMEOUT` (still queued after `max_wait_seconds`) or a
    /// terminal status such as `ERROR`.
    #[serde(default = "running")]
    pub status: String,
    /// The services it exposes.
    #[serde(default)]
    pub service_ports: Vec<ServicePort>,
    /// `false` when an existing session was reused.
    #[serde(default = "yes")]
    pub created: bool,
}

fn running() -> String {
    "RUNNING".into()
}

fn yes() -> bool {
    true
}

/// Which sessions a listing returns, by status.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum StatusFilter {
    /// Everything not yet ended (the default).
    #[default]
    Active,
    /// Preparing or running.
    Running,
    /// Ended: terminated or cancelled.
    Dead,
    /// All statuses.
    All,
    /// These statuses (upper case, e.g. `ERROR`).
    Only(Vec<String>),
}

impl StatusFilter {
    /// The comma-joined statuses the GraphQL `status` argument takes.
    pub fn statuses(&self) -> String {
        const ACTIVE: &str = "PENDING,SCHEDULED,PULLING,PREPARING,RUNNING,RUNNING_DEGRADED,TERMINATING,ERROR";
        match self {
            Self::Active => ACTIVE.into(),
            Self::Running => "PREPARING,RUNNING,RUNNING_DEGRADED".into(),
            Self::Dead => "CANCELLED,TERMINATED".into(),
            Self::All => format!("{ACTIVE},RESTARTING,TERMINATED,CANCELLED"),
            Self::Only(list) => list.iter().map(|s| s.to_ascii_uppercase()).collect::<Vec<_>>().join(","),
        }
    }
}

/// A page of a listing.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct Page<T> {
    /// The items of this page.
    pub items: Vec<T>,
    /// How many items match in all.
    pub total_count: u64,
}

/// One session in a listing.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct SessionSummary {
    /// The session id.
    pub id: Uuid,
    /// Its name.
    pub name: String,
    /// The owner's access key (shown to admins).
    #[serde(default)]
    pub access_key: Option<String>,
    /// The image.
    #[serde(default)]
    pub image: Option<String>,
    /// `INTERACTIVE` or `BATCH`.
    #[serde(default, rename = "type")]
    pub session_type: Option<String>,
    /// The status, e.g. `RUNNING`.
    pub status: String,
    /// Why it has that status.
    #[serde(default)]
    pub status_info: Option<String>,
    /// When it was created.
    #[serde(default)]
    pub created_at: Option<String>,
    /// What it occupies (`{"cpu": "1", "mem": "1073741824"}`).
    #[serde(default, deserialize_with = "crate::json_string::object")]
    pub occupying_slots: BTreeMap<String, Value>,
    /// `UNDEFINED`, `SUCCESS` or `FAILURE`.
    #[serde(default)]
    pub result: Option<String>,
}

/// A session's details.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct SessionInfo {
    /// The session id.
    pub id: Uuid,
    /// Its name.
    pub name: String,
    /// The image.
    #[serde(default)]
    pub image: Option<String>,
    /// The tag.
    #[serde(default)]
    pub tag: Option<String>,
    /// The status.
    pub status: String,
    /// Why it has that status.
    #[serde(default)]
    pub status_info: Option<String>,
    /// Details of the status (e.g. the scheduler's reasons).
    #[serde(default, deserialize_with = "crate::json_string::value")]
    pub status_data: Value,
    /// When it was created.
    #[serde(default)]
    pub created_at: Option<String>,
    /// When it ended.
    #[serde(default)]
    pub terminated_at: Option<String>,
    /// What it occupies.
    #[serde(default, deserialize_with = "crate::json_string::object")]
    pub occupying_slots: BTreeMap<String, Value>,
    /// Its kernels.
    #[serde(default)]
    pub containers: Vec<KernelInfo>,
}

/// One kernel of a session.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct KernelInfo {
    /// The kernel id.
    pub id: Uuid,
    /// `main` or `sub`.
    #[serde(default)]
    pub cluster_role: Option<String>,
    /// The index in its role.
    #[serde(default)]
    pub cluster_idx: Option<i64>,
    /// The status.
    #[serde(default)]
    pub status: Option<String>,
    /// The agent it runs on.
    #[serde(default)]
    pub agent: Option<String>,
    /// The container id on that agent.
    #[serde(default)]
    pub container_id: Option<String>,
    /// What it occupies.
    #[serde(default, deserialize_with = "crate::json_string::object")]
    pub occupied_slots: BTreeMap<String, Value>,
}

/// A file in a session or a folder.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct FileEntry {
    /// The file name.
    pub filename: String,
    /// Its size in bytes.
    #[serde(default)]
    pub size: u64,
    /// Its mode, e.g. `-rw-r--r--` (a leading `d` for directories).
    #[serde(default, deserialize_with = "mode_string")]
    pub mode: String,
    /// Its modification time, seconds since the epoch.
    #[serde(default)]
    pub mtime: f64,
}

impl FileEntry {
    /// Whether it is a directory.
    pub fn is_dir(&self) -> bool {
        self.mode.starts_with('d')
    }
}

fn mode_string<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::String(s) => s,
        Value::Null => String::new(),
        other => other.to_string(),
    })
}

/// Parses a `files` field: a JSON-encoded string of a list (or the list itself).
pub(crate) fn parse_files(what: &str, value: &Value) -> Result<Vec<FileEntry>> {
    let list = match value {
        Value::String(s) => serde_json::from_str(s).map_err(|e| protocol(what, e))?,
        Value::Array(_) => value.clone(),
        Value::Null => return Ok(Vec::new()),
        other => return Err(protocol(what, format!("`files` is {other}"))),
    };
    serde_json::from_value(list).map_err(|e| protocol(what, e))
}

const SUMMARY_FIELDS: &str = "name id access_key image type status status_info created_at occupying_slots result";

impl Client {
    /// Creates a session. Unless the spec says `enqueue_only`, the call returns when the
    /// session is running (or failed, or `max_wait_seconds` passed).
    pub async fn create_session(&self, spec: &SessionSpec) -> Result<SessionCreated> {
        if spec.image.trim().is_empty() {
            return Err(invalid("image", "is empty"));
        }
        let config = self.config();
        let mut spec = spec.clone();
        for mount in &config.vfolder_mounts {
            if !spec.mounts.contains(mount) {
                spec.mounts.push(mount.clone());
            }
        }
        let body = spec.to_body(&config.domain, &config.group);
        self.send_json(Method::POST, "/session", &[], Body::Json(body)).await
    }

    /// Creates a session and follows it until it runs, calling `on_event` with each of its
    /// events (scheduled, pulling the image, creating the kernel, …) — for progress displays.
    ///
    /// The session is queued first and then watched over the event stream, with a status
    /// check every second so nothing is missed. The result is as [`create_session`]'s:
    /// `RUNNING`, a terminal status such as `ERROR` or `CANCELLED`, or `TIMEOUT` after
    /// `max_wait_seconds` (the session stays queued). With `enqueue_only` it is
    /// [`create_session`] itself.
    ///
    /// [`create_session`]: Self::create_session
    pub async fn create_session_watched(
        &self,
        spec: &SessionSpec,
        mut on_event: impl FnMut(&crate::SessionEvent) + Send,
    ) -> Result<SessionCreated> {
        if spec.enqueue_only {
            return self.create_session(spec).await;
        }
        let mut queued = spec.clone();
        queued.enqueue_only = true;
        let mut created = self.create_session(&queued).await?;
        if created.status != "PENDING" {
            return Ok(created);
        }
        let id = created.session_id.to_string();
        let deadline = (spec.max_wait_seconds > 0)
            .then(|| tokio::time::Instant::now() + std::time::Duration::from_secs(spec.max_wait_seconds));
        let mut events = Some(self.session_events(&id, crate::EventScope::All).await?);
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        loop {
            let timeout = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            let event = async {
                match events.as_mut() {
                    Some(stream) => futures::StreamExt::next(stream).await,
                    None => std::future::pending().await,
                }
            };
            // Each tick, and each event that may end the wait, is a status check.
            tokio::select! {
                _ = timeout => {
                    created.status = "TIMEOUT".into();
                    return Ok(created);
                }
                event = event => match event {
                    Some(Ok(event)) => {
                        on_event(&event);
                        let decisive = matches!(
                            event.name.as_str(),
                            "session_started" | "session_terminated" | "session_cancelled" | "session_failure"
                                | "kernel_cancelled"
                        );
                        if !decisive {
                            continue;
                        }
                    }
                    Some(Err(e)) => return Err(e),
                    None => {
                        events = None; // the stream ended; the status checks carry on
                        continue;
                    }
                },
                _ = tick.tick() => {}
            }
            let (status, service_ports) = self.session_status(&id).await?;
            if matches!(
                status.as_str(),
                "RUNNING" | "RUNNING_DEGRADED" | "ERROR" | "TERMINATED" | "CANCELLED" | "TERMINATING"
            ) {
                created.status = status;
                created.service_ports = service_ports;
                return Ok(created);
            }
        }
    }

    /// A session's status and service ports, by id.
    async fn session_status(&self, id: &str) -> Result<(String, Vec<ServicePort>)> {
        let query = "query($id: UUID!) {\n  compute_session(id: $id) { status service_ports }\n}";
        let data = self.graphql(query, json!({ "id": id })).await?;
        let session = &data["compute_session"];
        let status =
            session["status"].as_str().ok_or_else(|| not_found(&format!("/session/{id}"), "No such session.", id))?;
        let ports = match &session["service_ports"] {
            Value::String(s) => serde_json::from_str(s).unwrap_or_default(),
            _ => Vec::new(),
        };
        Ok((status.to_string(), ports))
    }

    /// Lists sessions (GraphQL `compute_session_list`), newest first. Admins can narrow it to
    /// one owner's `access_key`.
    pub async fn list_sessions(
        &self,
        status: &StatusFilter,
        access_key: Option<&str>,
        limit: u32,
        offset: u32,
    ) -> Result<Page<SessionSummary>> {
        crate::admin::check_limit(limit)?;
        let query = format!(
            "query($limit:Int!, $offset:Int!, $status: String, $access_key: String, $order: String) {{\n  \
             compute_session_list(limit:$limit, offset:$offset, status:$status, access_key:$access_key, \
             order:$order) {{\n    items {{ {SUMMARY_FIELDS} }}\n    total_count\n  }}\n}}"
        );
        let vars = json!({
            "limit": limit, "offset": offset, "status": status.statuses(), "access_key": access_key,
            "order": "-created_at",
        });
        let mut data = self.graphql(&query, vars).await?;
        serde_json::from_value(data["compute_session_list"].take()).map_err(|e| protocol("compute_session_list", e))
    }

    /// Every session matching `status` (all pages).
    pub async fn all_sessions(&self, status: &StatusFilter, access_key: Option<&str>) -> Result<Vec<SessionSummary>> {
        let mut out = Vec::new();
        loop {
            let page = self.list_sessions(status, access_key, 100, out.len() as u32).await?;
            let done = page.items.is_empty() || out.len() + page.items.len() >= page.total_count as usize;
            out.extend(page.items);
            if done {
                return Ok(out);
            }
        }
    }

    /// Resolves a session name or id to its id: ids are taken as they are; a name matches
    /// the requester's sessions, the live one first, else the newest.
    pub async fn session_id(&self, reference: &str) -> Result<Uuid> {
        if let Ok(id) = Uuid::parse_str(reference) {
            return Ok(id);
        }
        let query = "query($limit:Int!, $offset:Int!, $status: String, $filter: String, $order: String) {\n  \
                     compute_session_list(limit:$limit, offset:$offset, status:$status, filter:$filter, order:$order) \
                     {\n    items { id status }\n    total_count\n  }\n}";
        let filter = format!("name == {}", serde_json::to_string(reference).unwrap_or_default());
        let vars = json!({"limit": 100, "offset": 0, "status": StatusFilter::All.statuses(), "filter": filter,
                          "order": "-created_at"});
        let data = self.graphql(query, vars).await?;
        let items = data["compute_session_list"]["items"].as_array().cloned().unwrap_or_default();
        let live = items.iter().find(|s| !matches!(s["status"].as_str(), Some("TERMINATED" | "CANCELLED")));
        let chosen = live.or(items.first()).and_then(|s| s["id"].as_str()).and_then(|s| Uuid::parse_str(s).ok());
        chosen.ok_or_else(|| not_found(&format!("/session/{reference}"), "No such session.", reference))
    }

    /// A session's details and kernels (GraphQL `compute_session`), by name or id.
    pub async fn session_info(&self, reference: &str) -> Result<SessionInfo> {
        let id = self.session_id(reference).await?;
        let query = "query($id: UUID!) {\n  compute_session(id: $id) {\n    name id image tag status status_info \
                     status_data created_at terminated_at occupying_slots\n    containers { id cluster_role \
                     cluster_idx status agent container_id occupied_slots }\n  }\n}";
        let mut data = self.graphql(query, json!({"id": id})).await?;
        let session = data["compute_session"].take();
        if session.is_null() {
            return Err(not_found(&format!("/session/{id}"), "No such session.", &id.to_string()));
        }
        serde_json::from_value(session).map_err(|e| protocol("compute_session", e))
    }

    /// Destroys a session (`forced`: even while it is being scheduled or created) and returns
    /// its last statistics when the server reports them.
    pub async fn destroy_session(&self, reference: &str, forced: bool) -> Result<Option<Value>> {
        let route = format!("/session/{}", seg(reference));
        let query = if forced { vec![("forced", "true".to_string())] } else { Vec::new() };
        let response = self.send(Method::DELETE, &route, &query, Body::Empty).await?;
        if response.status() == reqwest::StatusCode::OK {
            let body: Value = crate::client::read_json(&route, response).await?;
            return Ok(body.get("stats").cloned().filter(|s| !s.is_null()));
        }
        Ok(None)
    }

    /// Restarts a session's kernels in place.
    pub async fn restart_session(&self, reference: &str) -> Result<()> {
        self.send(Method::PATCH, &format!("/session/{}", seg(reference)), &[], Body::Empty).await?;
        Ok(())
    }

    /// The main kernel's console log (also for ended sessions).
    pub async fn session_logs(&self, reference: &str) -> Result<String> {
        let route = format!("/session/{}/logs", seg(reference));
        let body: Value = self.send_json(Method::GET, &route, &[], Body::Empty).await?;
        body["result"]["logs"].as_str().map(str::to_string).ok_or_else(|| protocol(route, "no result.logs"))
    }

    /// The files in a directory of the session (relative to `/home/work`).
    pub async fn session_files(&self, reference: &str, path: &str) -> Result<Vec<FileEntry>> {
        let route = format!("/session/{}/files", seg(reference));
        let body: Value = self.send_json(Method::GET, &route, &[], Body::Json(json!({ "path": path }))).await?;
        if let Some(errors) = body["errors"].as_str().filter(|e| !e.is_empty()) {
            return Err(invalid("path", errors.to_string()));
        }
        parse_files(&route, &body["files"])
    }

    /// Uploads local files into the session's `/home/work`, each under its given name
    /// (`(local path, name in the session)`; names may contain `/`).
    pub async fn upload_to_session(&self, reference: &str, files: &[(PathBuf, String)]) -> Result<()> {
        if files.is_empty() {
            return Err(invalid("files", "no file given"));
        }
        let mut parts = Vec::new();
        for (local, name) in files {
            let data = tokio::fs::read(local).await.map_err(io_error(local))?;
            parts.push(multipart::Part { name: "src".into(), filename: Some(name.clone()), data: Bytes::from(data) });
        }
        let (content_type, data) = multipart::encode(&parts);
        let route = format!("/session/{}/upload", seg(reference));
        self.send(Method::POST, &route, &[], Body::Bytes { content_type, data }).await?;
        Ok(())
    }

    /// Downloads files or directories (paths relative to `/home/work`) from the session into
    /// `dest`, each under its base name (as the agent archives it). Returns the paths written.
    pub async fn download_from_session(&self, reference: &str, files: &[String], dest: &Path) -> Result<Vec<PathBuf>> {
        if files.is_empty() {
            return Err(invalid("files", "no file given"));
        }
        let route = format!("/session/{}/download", seg(reference));
        let response = self.send(Method::GET, &route, &[], Body::Json(json!({ "files": files }))).await?;
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let body = response.bytes().await.map_err(|e| protocol(&route, e))?;
        let parts = multipart::decode(&content_type, &body).map_err(|e| protocol(&route, e))?;
        tokio::fs::create_dir_all(dest).await.map_err(io_error(dest))?;
        let dest = dest.to_path_buf();
        tokio::task::spawn_blocking(move || {
            let mut written = Vec::new();
            for part in parts {
                let mut archive = tar::Archive::new(&part.data[..]);
                let entries = archive.entries().map_err(io_error(&dest))?;
                for entry in entries {
                    let mut entry = entry.map_err(io_error(&dest))?;
                    let relative = entry.path().map_err(io_error(&dest))?.into_owned();
                    // unpack_in refuses paths that would leave `dest`
                    if entry.unpack_in(&dest).map_err(io_error(dest.join(&relative)))? {
                        written.push(dest.join(relative));
                    }
                }
            }
            Ok(written)
        })
        .await
        .map_err(|e| protocol("download", e))?
    }
}
