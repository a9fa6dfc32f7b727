//! What a user asks for: session and kernel specifications.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::binary_size::BinarySize;
use crate::error::{Error, Result};
use crate::image_ref::ImageRef;
use crate::resource_slot::ResourceSlot;

/// What a session is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum SessionType {
    /// Used through a terminal, notebooks or the API until the user ends it (the default).
    #[default]
    Interactive,
    /// Runs its startup command and ends with it.
    Batch,
    /// Serves a model.
    Inference,
    /// A private session the system starts for itself (e.g. file transfer).
    System,
}

/// Whether a multi-kernel session lives on one agent or may span several.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ClusterMode {
    /// Every kernel on the same agent (the default).
    #[default]
    SingleNode,
    /// Kernels may be placed on different agents.
    MultiNode,
}

/// What a session may do with a mounted virtual folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum MountPermission {
    /// Read only.
    ReadOnly,
    /// Read and write, but not delete (the default).
    #[default]
    ReadWrite,
    /// Read, write and delete.
    ReadWriteDelete,
}

wire_names!(SessionType, "session type", |s| s.to_ascii_lowercase(), [
    Interactive => "interactive",
    Batch => "batch",
    Inference => "inference",
    System => "system",
]);
wire_names!(ClusterMode, "cluster mode", |s| s.to_ascii_lowercase(), [
    SingleNode => "single-node" | "single_node",
    MultiNode => "multi-node" | "multi_node",
]);
wire_names!(MountPermission, "mount permission", |s| s.to_ascii_lowercase(), [
    ReadOnly => "ro",
    ReadWrite => "rw",
    ReadWriteDelete => "wd" | "rw-delete" | "rwd",
]);

/// A virtual folder (or host path) mounted into a kernel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mount {
    /// The folder's name or id.
    pub source: String,
    /// The absolute path inside the container; `/home/work/<source>` when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// What the session may do with it.
    #[serde(default)]
    pub permission: MountPermission,
}

/// Per-kernel resource options that are not slots.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceOpts {
    /// Shared memory (`/dev/shm`), counted inside `mem`; the agent subtracts it from the memory
    /// limit and sets the container's `ShmSize`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shmem: Option<BinarySize>,
    /// Options this version does not interpret, kept as given.
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

/// One kernel (container) of a session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KernelSpec {
    /// The image to run.
    pub image: ImageRef,
    /// The resources this kernel requests.
    pub resources: ResourceSlot,
    /// Options such as `shmem`.
    #[serde(default)]
    pub resource_opts: ResourceOpts,
    /// `main` for the first kernel, `sub` for the others.
    #[serde(default = "default_role")]
    pub cluster_role: String,
    /// The kernel's index within its role, starting at 1.
    #[serde(default = "default_idx")]
    pub cluster_idx: u32,
}

fn default_role() -> String {
    "main".to_string()
}
fn default_idx() -> u32 {
    1
}

/// A session as a user requests it: the image, the resources per kernel and how many kernels.
///
/// [`SessionSpec::validate`] checks every field and names the first bad one;
/// [`SessionSpec::kernels`] expands the spec into its kernels.
///
/// ```
/// use bai_core::{SessionSpec, ClusterMode};
///
/// let spec: SessionSpec = serde_json::from_value(serde_json::json!({
///     "name": "train-1",
///     "image": "cr.backend.ai/stable/python:3.11",
///     "resources": {"cpu": "2", "mem": "4294967296"},
///     "cluster_size": 2,
///     "cluster_mode": "multi-node",
///     "mounts": [{"source": "data", "permission": "ro"}],
/// }))?;
/// spec.validate()?;
/// assert_eq!(spec.kernels().len(), 2);
/// assert_eq!(spec.cluster_mode, ClusterMode::MultiNode);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionSpec {
    /// A name unique among the owner's live sessions.
    pub name: String,
    /// The image every kernel runs.
    pub image: ImageRef,
    /// What the session is for.
    #[serde(default)]
    pub session_type: SessionType,
    /// The resources requested **per kernel**.
    pub resources: ResourceSlot,
    /// Options such as `shmem`, per kernel.
    #[serde(default)]
    pub resource_opts: ResourceOpts,
    /// How many kernels (containers) the session has.
    #[serde(default = "default_cluster_size")]
    pub cluster_size: u32,
    /// Whether kernels share one agent.
    #[serde(default)]
    pub cluster_mode: ClusterMode,
    /// Virtual folders to mount.
    #[serde(default)]
    pub mounts: Vec<Mount>,
    /// Environment variables for every kernel.
    #[serde(default)]
    pub environ: BTreeMap<String, String>,
    /// A shell script run once when a kernel starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bootstrap_script: Option<String>,
    /// The command a batch session runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub startup_command: Option<String>,
    /// The scaling group (resource group) to schedule in; the user's default when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scaling_group: Option<String>,
}

fn default_cluster_size() -> u32 {
    1
}

fn spec_err(field: impl Into<String>, reason: impl Into<String>) -> Error {
    Error::InvalidSpec { field: field.into(), reason: reason.into() }
}

/// The largest number of kernels a session may have.
pub const MAX_CLUSTER_SIZE: u32 = 1024;

impl SessionSpec {
    /// Checks every field; the error names the first bad field and says why.
    pub fn validate(&self) -> Result<()> {
        let name = &self.name;
        if name.is_empty() || name.len() > 64 {
            return Err(spec_err("name", "expected 1 to 64 characters"));
        }
        if !name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            || name.starts_with(['-', '.'])
        {
            return Err(spec_err(
                "name",
                format!("{name:?}: expected ASCII letters, digits, '-', '_' or '.', not starting with '-' or '.'"),
            ));
        }
        if self.cluster_size == 0 || self.cluster_size > MAX_CLUSTER_SIZE {
            return Err(spec_err(
                "cluster_size",
                format!("{} is out of range: expected 1 to {MAX_CLUSTER_SIZE}", self.cluster_size),
            ));
        }
        if self.resources.has_negative() {
            return Err(spec_err("resources", format!("{}: amounts must be zero or more", self.resources)));
        }
        if let Some(shmem) = self.resource_opts.shmem {
            let mem = self.resources.get("mem");
            if self.resources.contains("mem") && rust_decimal::Decimal::from(shmem) > mem {
                return Err(spec_err(
                    "resource_opts.shmem",
                    format!("{shmem} is larger than the requested memory ({mem} bytes)"),
                ));
            }
        }
        if self.session_type == SessionType::Batch
            && self.startup_command.as_deref().is_none_or(|c| c.trim().is_empty())
        {
            return Err(spec_err("startup_command", "a batch session needs a startup command"));
        }
        let mut targets = std::collections::BTreeSet::new();
        for (i, mount) in self.mounts.iter().enumerate() {
            if mount.source.is_empty() || mount.source.contains('/') || mount.source == ".." {
                return Err(spec_err(
                    format!("mounts[{i}].source"),
                    format!("{:?}: expected a folder name or id without '/'", mount.source),
                ));
            }
            let target = mount.target.clone().unwrap_or_else(|| format!("/home/work/{}", mount.source));
            validate_container_path(&target).map_err(|reason| spec_err(format!("mounts[{i}].target"), reason))?;
            if !targets.insert(target.clone()) {
                return Err(spec_err(format!("mounts[{i}].target"), format!("{target:?} is mounted twice")));
            }
        }
        for key in self.environ.keys() {
            if key.is_empty()
                || key.starts_with(|c: char| c.is_ascii_digit())
                || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            {
                return Err(spec_err(
                    format!("environ.{key}"),
                    "expected a name of ASCII letters, digits and '_', not starting with a digit",
                ));
            }
        }
        Ok(())
    }

    /// The session's kernels: one `main` kernel and `cluster_size - 1` `sub` kernels, each with
    /// the per-kernel resources.
    pub fn kernels(&self) -> Vec<KernelSpec> {
        (0..self.cluster_size)
            .map(|i| KernelSpec {
                image: self.image.clone(),
                resources: self.resources.clone(),
                resource_opts: self.resource_opts.clone(),
                cluster_role: if i == 0 { "main".into() } else { "sub".into() },
                cluster_idx: if i == 0 { 1 } else { i },
            })
            .collect()
    }

    /// The resources of the whole session: the per-kernel request times `cluster_size`.
    pub fn total_resources(&self) -> Result<ResourceSlot> {
        self.resources.checked_mul(self.cluster_size.into())
    }
}

/// Checks a path inside a container: absolute, normalised (no `.` or `..` components, no empty
/// components) and not one of the directories the system owns.
pub fn validate_container_path(path: &str) -> std::result::Result<(), String> {
    if !path.starts_with('/') {
        return Err(format!("{path:?} is not an absolute path"));
    }
    if path.len() > 4096 || path.contains('\0') {
        return Err(format!("{path:?} is too long or contains NUL"));
    }
    let components: Vec<&str> = path.split('/').skip(1).collect();
    if components.iter().any(|c| c.is_empty() || *c == "." || *c == "..") {
        return Err(format!("{path:?} must be normalised: no empty, '.' or '..' components"));
    }
    const RESERVED: [&str; 7] = ["bin", "etc", "lib", "proc", "sys", "usr", "opt/kernel"];
    let joined = components.join("/");
    if components.is_empty() || RESERVED.iter().any(|r| joined == *r || joined.starts_with(&format!("{r}/"))) {
        return Err(format!("{path:?} is a system directory"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(extra: serde_json::Value) -> Result<SessionSpec, serde_json::Error> {
        let mut base = json!({"name": "s1", "image": "python:3.11", "resources": {"cpu": "1", "mem": "1073741824"}});
        for (k, v) in extra.as_object().unwrap() {
            base[k] = v.clone();
        }
        serde_json::from_value(base)
    }

    #[test]
    fn enums_use_the_original_names() {
        assert_eq!(serde_json::to_string(&ClusterMode::SingleNode).unwrap(), "\"single-node\"");
        assert_eq!("SINGLE_NODE".parse::<ClusterMode>().unwrap(), ClusterMode::SingleNode);
        assert_eq!("rw-delete".parse::<MountPermission>().unwrap(), MountPermission::ReadWriteDelete);
        assert_eq!(MountPermission::ReadWriteDelete.as_str(), "wd");
        let err = "daemon".parse::<SessionType>().unwrap_err().to_string();
        assert_eq!(err, "invalid session type \"daemon\": expected one of interactive, batch, inference, system");
    }

    #[test]
    fn defaults_and_kernels() {
        let s = spec(json!({"cluster_size": 3, "resource_opts": {"shmem": "64m", "custom": 1}})).unwrap();
        s.validate().unwrap();
        assert_eq!(s.session_type, SessionType::Interactive);
        assert_eq!(s.resource_opts.shmem, Some(BinarySize::new(64 << 20)));
        assert_eq!(s.resource_opts.extra["custom"], json!(1));
        let kernels = s.kernels();
        let roles: Vec<_> = kernels.iter().map(|k| (k.cluster_role.as_str(), k.cluster_idx)).collect();
        assert_eq!(roles, [("main", 1), ("sub", 1), ("sub", 2)]);
        assert_eq!(s.total_resources().unwrap().get("cpu"), 3.into());
    }

    #[test]
    fn validation_names_the_field() {
        for (extra, field) in [
            (json!({"name": ""}), "invalid name"),
            (json!({"name": "a/b"}), "invalid name"),
            (json!({"cluster_size": 0}), "invalid cluster_size"),
            (json!({"resources": {"cpu": "-1"}}), "invalid resources"),
            (json!({"resource_opts": {"shmem": "2g"}}), "invalid resource_opts.shmem"),
            (json!({"session_type": "batch"}), "invalid startup_command"),
            (json!({"mounts": [{"source": "../x"}]}), "invalid mounts[0].source"),
            (json!({"mounts": [{"source": "d", "target": "/home/work/../../etc"}]}), "invalid mounts[0].target"),
            (json!({"mounts": [{"source": "d", "target": "relative"}]}), "invalid mounts[0].target"),
            (json!({"mounts": [{"source": "d", "target": "/usr/lib"}]}), "invalid mounts[0].target"),
            (
                json!({"mounts": [{"source": "d"}, {"source": "e", "target": "/home/work/d"}]}),
                "invalid mounts[1].target",
            ),
            (json!({"environ": {"1BAD": "x"}}), "invalid environ.1BAD"),
        ] {
            let err = spec(extra.clone()).unwrap().validate().unwrap_err().to_string();
            assert!(err.starts_with(field), "{extra}: {err}");
        }
        let bad_image = spec(json!({"image": "Bad Image"})).unwrap_err().to_string();
        assert!(bad_image.contains("invalid image reference"), "{bad_image}");
    }
}
