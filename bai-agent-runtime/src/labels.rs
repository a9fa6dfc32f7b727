//! The container labels from which an agent rebuilds its state after a restart.
//!
//! Every kernel container carries the original's labels (`ai.backend.kernel-id`,
//! `ai.backend.session-id`, `ai.backend.owner`, …) plus bai's own under `ai.backend.bai.*`: the
//! resource allocation and the host ports it holds, as JSON. Only containers whose
//! `ai.backend.owner` is this agent are ever enumerated or touched.

use std::collections::BTreeMap;

use bai_core::{AgentId, KernelId, SessionId};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The kernel id.
pub const KERNEL_ID: &str = "ai.backend.kernel-id";
/// The session id.
pub const SESSION_ID: &str = "ai.backend.session-id";
/// The agent that owns the container.
pub const OWNER: &str = "ai.backend.owner";
/// The agent id (newer originals add it beside `owner`).
pub const AGENT_ID: &str = "ai.backend.agent-id";
/// The user who owns the session.
pub const OWNER_USER_ID: &str = "ai.backend.owner-user-id";
/// The service ports, `name:proto:port,…`.
pub const SERVICE_PORTS: &str = "ai.backend.service-ports";
/// Whether service ports are blocked (`1`/`0`).
pub const BLOCK_SERVICE_PORTS: &str = "ai.backend.internal.block-service-ports";
/// bai: the resource allocation (JSON).
pub const ALLOCATION: &str = "ai.backend.bai.allocation";
/// bai: the host ports held, by container port (JSON object).
pub const HOST_PORTS: &str = "ai.backend.bai.host-ports";
/// bai: the scratch quota in bytes.
pub const SCRATCH_QUOTA: &str = "ai.backend.bai.scratch-quota";

/// What the labels of a kernel container say.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KernelLabels {
    /// The kernel.
    pub kernel_id: KernelId,
    /// Its session.
    pub session_id: SessionId,
    /// The agent that owns it.
    pub owner: AgentId,
    /// The owning user, when known.
    pub owner_user_id: Option<String>,
    /// Host ports held, by container port.
    pub host_ports: BTreeMap<u16, u16>,
    /// The resource allocation, as the allocator serialised it.
    pub allocation: Option<serde_json::Value>,
    /// The scratch quota in bytes.
    pub scratch_quota: Option<u64>,
    /// The declared service ports label, kept as given.
    pub service_ports: Option<String>,
}

impl KernelLabels {
    /// The labels to put on the container.
    pub fn to_labels(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        out.insert(KERNEL_ID.to_string(), self.kernel_id.to_string());
        out.insert(SESSION_ID.to_string(), self.session_id.to_string());
        out.insert(OWNER.to_string(), self.owner.to_string());
        out.insert(AGENT_ID.to_string(), self.owner.to_string());
        if let Some(user) = &self.owner_user_id {
            out.insert(OWNER_USER_ID.to_string(), user.clone());
        }
        let ports: BTreeMap<String, u16> = self.host_ports.iter().map(|(c, h)| (c.to_string(), *h)).collect();
        out.insert(HOST_PORTS.to_string(), serde_json::to_string(&ports).unwrap_or_else(|_| "{}".into()));
        if let Some(allocation) = &self.allocation {
            out.insert(ALLOCATION.to_string(), allocation.to_string());
        }
        if let Some(quota) = self.scratch_quota {
            out.insert(SCRATCH_QUOTA.to_string(), quota.to_string());
        }
        if let Some(sp) = &self.service_ports {
            out.insert(SERVICE_PORTS.to_string(), sp.clone());
        }
        out.insert(BLOCK_SERVICE_PORTS.to_string(), "0".to_string());
        out
    }

    /// Reads the labels of a container; an error names the missing or malformed label.
    pub fn from_labels(labels: &BTreeMap<String, String>) -> Result<Self> {
        let get = |key: &str| labels.get(key).ok_or_else(|| Error::invalid(format!("label {key}"), "missing"));
        let ports_raw = labels.get(HOST_PORTS).map(String::as_str).unwrap_or("{}");
        let ports: BTreeMap<String, u16> = serde_json::from_str(ports_raw)
            .map_err(|e| Error::invalid(format!("label {HOST_PORTS}"), e.to_string()))?;
        let mut host_ports = BTreeMap::new();
        for (c, h) in ports {
            let c: u16 =
                c.parse().map_err(|_| Error::invalid(format!("label {HOST_PORTS}"), format!("{c:?} is not a port")))?;
            host_ports.insert(c, h);
        }
        let allocation = match labels.get(ALLOCATION) {
            Some(raw) => Some(
                serde_json::from_str(raw).map_err(|e| Error::invalid(format!("label {ALLOCATION}"), e.to_string()))?,
            ),
            None => None,
        };
        let scratch_quota = match labels.get(SCRATCH_QUOTA) {
            Some(raw) => Some(raw.parse().map_err(|_| {
                Error::invalid(format!("label {SCRATCH_QUOTA}"), format!("{raw:?} is not a byte count"))
            })?),
            None => None,
        };
        Ok(Self {
            kernel_id: get(KERNEL_ID)?.parse()?,
            session_id: get(SESSION_ID)?.parse()?,
            owner: AgentId::new(get(OWNER)?.as_str())?,
            owner_user_id: labels.get(OWNER_USER_ID).cloned(),
            host_ports,
            allocation,
            scratch_quota,
            service_ports: labels.get(SERVICE_PORTS).cloned(),
        })
    }
}

/// A service an image declares in its `ai.backend.service-ports` label.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServicePort {
    /// The service's name, e.g. `jupyter`.
    pub name: String,
    /// `http`, `tcp`, `pty` or `preopen`.
    pub protocol: String,
    /// Its ports inside the container.
    pub container_ports: Vec<u16>,
}

/// Container ports the agent keeps for itself, which images may not declare.
pub const RESERVED_CONTAINER_PORTS: [u16; 6] = [2000, 2001, 2002, 2003, 2200, 7681];

/// Parses `name:proto:port` or `name:proto:[p1,p2]` entries, comma-separated (brackets may hold
/// commas). Protocols are `http`, `tcp`, `pty` and `preopen`; ports must be in 1025–65534 and
/// not reserved; a port may be declared once.
pub fn parse_service_ports(label: &str) -> Result<Vec<ServicePort>> {
    let field = |reason: String| Error::invalid(format!("label {SERVICE_PORTS}"), reason);
    let mut entries = Vec::new();
    let (mut depth, mut start) = (0usize, 0usize);
    for (i, c) in label.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                entries.push(&label[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    entries.push(&label[start..]);
    let mut out = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for entry in entries.into_iter().map(str::trim).filter(|e| !e.is_empty()) {
        let mut parts = entry.splitn(3, ':');
        let (Some(name), Some(protocol), Some(ports)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(field(format!("{entry:?}: expected name:protocol:port")));
        };
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')) {
            return Err(field(format!("{entry:?}: invalid service name")));
        }
        if !matches!(protocol, "http" | "tcp" | "pty" | "preopen") {
            return Err(field(format!("{entry:?}: protocol must be http, tcp, pty or preopen")));
        }
        let list = ports.strip_prefix('[').and_then(|p| p.strip_suffix(']')).unwrap_or(ports);
        let mut container_ports = Vec::new();
        for p in list.split(',') {
            let port: u16 = p.trim().parse().map_err(|_| field(format!("{entry:?}: {p:?} is not a port number")))?;
            if !(1025..=65534).contains(&port) || RESERVED_CONTAINER_PORTS.contains(&port) {
                return Err(field(format!("{entry:?}: port {port} is reserved or outside 1025-65534")));
            }
            if !seen.insert(port) {
                return Err(field(format!("{entry:?}: port {port} is declared twice")));
            }
            container_ports.push(port);
        }
        out.push(ServicePort { name: name.to_string(), protocol: protocol.to_string(), container_ports });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_ports_parse_like_the_original() {
        let ports = parse_service_ports("jupyter:http:8080, tensorboard:http:6006,vscode:http:[8180,8181]").unwrap();
        assert_eq!(ports.len(), 3);
        assert_eq!(ports[2].container_ports, [8180, 8181]);
        assert_eq!(parse_service_ports("").unwrap(), []);
        for bad in ["x:http", "x:udp:9000", "x:http:2200", "x:http:80", "x:http:9000,y:tcp:9000", "x y:http:9000"] {
            let err = parse_service_ports(bad).unwrap_err().to_string();
            assert!(err.contains(SERVICE_PORTS), "{bad}: {err}");
        }
    }

    #[test]
    fn labels_round_trip() {
        let labels = KernelLabels {
            kernel_id: KernelId::new_random(),
            session_id: SessionId::new_random(),
            owner: AgentId::new("i-node1").unwrap(),
            owner_user_id: Some("u1".into()),
            host_ports: [(2200, 30001), (8080, 30002)].into_iter().collect(),
            allocation: Some(serde_json::json!({"cpuset": "0-1"})),
            scratch_quota: Some(1 << 30),
            service_ports: Some("jupyter:http:8080".into()),
        };
        let map = labels.to_labels();
        assert_eq!(map[OWNER], "i-node1");
        assert_eq!(map[HOST_PORTS], r#"{"2200":30001,"8080":30002}"#);
        assert_eq!(KernelLabels::from_labels(&map).unwrap(), labels);
    }

    #[test]
    fn bad_labels_are_named() {
        let mut map = BTreeMap::new();
        map.insert(KERNEL_ID.to_string(), "nope".to_string());
        let err = KernelLabels::from_labels(&map).unwrap_err().to_string();
        assert!(err.contains(SESSION_ID) || err.contains("kernel id"), "{err}");
        let mut ok = KernelLabels {
            kernel_id: KernelId::new_random(),
            session_id: SessionId::new_random(),
            owner: AgentId::new("a").unwrap(),
            owner_user_id: None,
            host_ports: BTreeMap::new(),
            allocation: None,
            scratch_quota: None,
            service_ports: None,
        }
        .to_labels();
        ok.insert(HOST_PORTS.to_string(), r#"{"x": 1}"#.to_string());
        let err = KernelLabels::from_labels(&ok).unwrap_err().to_string();
        assert!(err.contains(HOST_PORTS), "{err}");
    }
}
