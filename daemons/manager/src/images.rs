//! Image scans: the images on the agents' container engines become rows of `images` (with
//! their labels, size and the resource limits the labels declare), so the API can list them.
//!
//! A scan asks an agent for its images (`ListImages` RPC) and upserts one row per tag and
//! architecture. The manager scans an agent when its heartbeat reports a different image set
//! than before (so on registration too), and [`scan_all`] scans every live agent on request.
//! [`rescan`] scans the agents and the configured container registries ([`crate::registry`])
//! together, reporting progress (`bai-manager image rescan`, and the GraphQL `rescan_images`
//! mutation as a background task). Rows are never deleted by a scan: an image that left one
//! agent may still be on another.

use std::collections::BTreeMap;

use bai_agent_runtime::rpc::pb;
use bai_core::{AgentStatus, ImageRef};
use sea_orm::DatabaseConnection;
use serde_json::{json, Value};

use crate::agent_client::{AgentCallError, AgentClients};
use crate::db::repo::{self, ScannedImage, Upserted};
use crate::db::DbError;
use crate::registry::{OnStep, RegistryConfig, RegistryError, RegistryReport, Step};

/// The outcome of scanning one agent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScanReport {
    /// The agent.
    pub agent: String,
    /// Tags seen.
    pub images: usize,
    /// Rows added.
    pub added: usize,
    /// Rows brought up to date.
    pub updated: usize,
}

/// Why a scan failed.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    /// The agent could not be asked.
    #[error("{0}")]
    Agent(#[from] AgentCallError),
    /// The database.
    #[error("database: {0}")]
    Db(#[from] DbError),
}

/// The label prefix of per-slot resource limits: `ai.backend.resource.min.cpu = 1`.
const RESOURCE_LABEL: &str = "ai.backend.resource.";

/// The per-slot limits image labels declare (`ai.backend.resource.min.cpu = 1`):
/// `{"cpu": {"min": "1", "max": null}, …}`.
pub fn resource_limits<'a>(labels: impl IntoIterator<Item = (&'a str, &'a str)>) -> Value {
    let mut resources: BTreeMap<String, Value> = BTreeMap::new();
    for (key, value) in labels {
        let Some(rest) = key.strip_prefix(RESOURCE_LABEL) else { continue };
        let Some((bound, slot)) = rest.split_once('.') else { continue };
        if matches!(bound, "min" | "max") && !slot.is_empty() {
            let entry = resources.entry(slot.to_string()).or_insert_with(|| json!({"min": null, "max": null}));
            entry[bound] = Value::String(value.to_string());
        }
    }
    json!(resources)
}

/// The rows an agent's image stands for: one per tag (untagged images are skipped).
pub fn scanned_rows(info: &pb::ImageInfo) -> Vec<ScannedImage> {
    let architecture = bai_core::image_ref::normalize_architecture(&info.architecture)
        .unwrap_or_else(|_| std::env::consts::ARCH.to_string());
    let labels: BTreeMap<&String, &String> = info.labels.iter().collect();
    let resources = resource_limits(info.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let mut rows = Vec::new();
    for tag in info.tags.iter().filter(|t| !t.starts_with("<none>")) {
        let (name, image, project, tag_name, registry) = match tag.parse::<ImageRef>() {
            Ok(r) => {
                let path = match r.project() {
                    Some(p) => format!("{p}/{}", r.name()),
                    None => r.name().to_string(),
                };
                (r.canonical(), path, r.project().map(str::to_string), r.tag().to_string(), r.registry().to_string())
            }
            // Names no registry would accept (the process backend's `host`) are kept as given.
            Err(_) => (tag.clone(), tag.clone(), None, String::new(), "local".to_string()),
        };
        rows.push(ScannedImage {
            name,
            image,
            project,
            tag: tag_name,
            registry,
            architecture: architecture.clone(),
            config_digest: info.id.clone(),
            size_bytes: i64::try_from(info.size).unwrap_or(i64::MAX),
            labels: json!(labels),
            resources: resources.clone(),
            is_local: true,
        });
    }
    rows
}

/// Scans one agent at `addr`.
pub async fn scan_agent(
    db: &DatabaseConnection,
    clients: &AgentClients,
    agent: &str,
    addr: &str,
) -> Result<ScanReport, ScanError> {
    let mut client = clients.client(addr)?;
    let reply = client
        .list_images(pb::ListImagesRequest {})
        .await
        .map_err(|status| AgentClients::status(addr, status))?
        .into_inner();
    let mut report = ScanReport { agent: agent.to_string(), ..ScanReport::default() };
    for info in &reply.images {
        for row in scanned_rows(info) {
            report.images += 1;
            match repo::upsert_image(db, &row).await? {
                Upserted::Added => report.added += 1,
                Upserted::Updated => report.updated += 1,
                Upserted::Unchanged => {}
            }
        }
    }
    tracing::info!(agent, images = report.images, added = report.added, updated = report.updated, "image scan");
    Ok(report)
}

/// Scans every live agent; an agent that fails is reported and the others still scanned.
pub async fn scan_all(
    db: &DatabaseConnection,
    clients: &AgentClients,
) -> Result<Vec<Result<ScanReport, (String, ScanError)>>, DbError> {
    let agents = repo::list_agents(db, None, Some(AgentStatus::Alive)).await?;
    let mut out = Vec::new();
    for agent in agents {
        out.push(scan_agent(db, clients, &agent.id, &agent.addr).await.map_err(|e| (agent.id.clone(), e)));
    }
    Ok(out)
}

/// What a rescan found, per agent and per registry.
#[derive(Debug, Default)]
pub struct RescanReport {
    /// The agents asked (none when only registries were scanned).
    pub agents: Vec<Result<ScanReport, (String, ScanError)>>,
    /// The registries scanned.
    pub registries: Vec<Result<RegistryReport, RegistryError>>,
    /// Whether the agents were asked at all.
    pub asked_agents: bool,
}

impl RescanReport {
    /// Whether every agent and every registry could be scanned (a registry may still report
    /// repositories it could not read).
    pub fn ok(&self) -> bool {
        self.agents.iter().all(Result::is_ok) && self.registries.iter().all(Result::is_ok)
    }

    /// What was found and what failed, in one line.
    pub fn summary(&self) -> String {
        let mut parts = Vec::new();
        if self.asked_agents {
            let (mut images, mut added, mut updated, mut failed) = (0, 0, 0, Vec::new());
            for report in &self.agents {
                match report {
                    Ok(r) => (images, added, updated) = (images + r.images, added + r.added, updated + r.updated),
                    Err((agent, e)) => failed.push(format!("{agent}: {e}")),
                }
            }
            let mut s = format!(
                "scanned {images} image tag(s) on {} agent(s): {added} added, {updated} updated",
                self.agents.len() - failed.len()
            );
            if !failed.is_empty() {
                s.push_str(&format!("; failed: {}", failed.join("; ")));
            }
            parts.push(s);
        }
        for registry in &self.registries {
            parts.push(match registry {
                Ok(report) => report.summary(),
                Err(e) => format!("failed: {e}"),
            });
        }
        if parts.is_empty() {
            return "nothing to scan: no registry is configured".into();
        }
        parts.join("; ")
    }
}

/// Rescans the images of every live agent (when `agents` is given) and of `registries`,
/// reporting progress to `on_step`: one unit per agent and per tag of a registry. A failing
/// agent or registry is reported and the others are still scanned.
pub async fn rescan(
    db: &DatabaseConnection,
    agents: Option<&AgentClients>,
    registries: &[RegistryConfig],
    on_step: OnStep<'_>,
) -> Result<RescanReport, DbError> {
    let mut report = RescanReport { asked_agents: agents.is_some(), ..Default::default() };
    if let Some(clients) = agents {
        let alive = repo::list_agents(db, None, Some(AgentStatus::Alive)).await?;
        on_step(Step { found: alive.len() as u64, done: 0, message: &format!("{} agent(s)", alive.len()) });
        for agent in alive {
            let result = scan_agent(db, clients, &agent.id, &agent.addr).await;
            let message = match &result {
                Ok(r) => format!("agent {}: {} image tag(s)", agent.id, r.images),
                Err(e) => format!("agent {}: {e}", agent.id),
            };
            on_step(Step { found: 0, done: 1, message: &message });
            report.agents.push(result.map_err(|e| (agent.id.clone(), e)));
        }
    }
    for registry in registries {
        let result = crate::registry::scan_registry(db, registry, on_step).await;
        if let Err(e) = &result {
            tracing::warn!(registry = %registry.name, error = %e, "registry scan failed");
            on_step(Step { found: 0, done: 0, message: &e.to_string() });
        }
        report.registries.push(result);
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_row_per_tag_with_limits_from_labels() {
        let info = pb::ImageInfo {
            id: "sha256:abc".into(),
            tags: vec!["bai/python:3.11".into(), "cr.example.com/stable/python:latest".into(), "<none>:<none>".into()],
            architecture: "amd64".into(),
            labels: [
                ("ai.backend.resource.min.cpu".to_string(), "1".to_string()),
                ("ai.backend.resource.min.mem".to_string(), "256m".to_string()),
                ("ai.backend.resource.max.cuda.device".to_string(), "2".to_string()),
                ("ai.backend.kernelspec".to_string(), "1".to_string()),
            ]
            .into_iter()
            .collect(),
            size: 123,
        };
        let rows = scanned_rows(&info);
        assert_eq!(rows.len(), 2);
        assert_eq!(
            (rows[0].name.as_str(), rows[0].image.as_str(), rows[0].registry.as_str(), rows[0].tag.as_str()),
            ("docker.io/bai/python:3.11", "bai/python", "docker.io", "3.11")
        );
        assert_eq!(rows[1].project.as_deref(), Some("stable"));
        assert_eq!(rows[0].architecture, "x86_64");
        assert_eq!(
            rows[0].resources,
            json!({"cpu": {"min": "1", "max": null}, "cuda.device": {"min": null, "max": "2"}, "mem": {"min": "256m", "max": null}})
        );
        assert_eq!(rows[0].labels["ai.backend.kernelspec"], "1");
        let host = pb::ImageInfo { tags: vec!["host".into()], architecture: "x86_64".into(), ..Default::default() };
        assert_eq!(scanned_rows(&host)[0].name, "docker.io/host:latest");
    }
}
