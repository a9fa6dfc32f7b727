//! The scheduler's input: an immutable picture of agents, pending sessions, policies and usage.

use std::collections::HashMap;

use bai_core::{
    AccessKey, AgentId, AgentStatus, ClusterMode, KernelId, ResourceSlot, SessionId, SessionStatus, SessionType,
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// One agent (compute node) as the scheduler sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentSnapshot {
    /// The agent's id.
    pub id: AgentId,
    /// The scaling group (resource group) it serves.
    pub scaling_group: String,
    /// Its CPU architecture, e.g. `x86_64`.
    pub architecture: String,
    /// Its status; only ALIVE agents receive kernels.
    pub status: AgentStatus,
    /// Whether an operator allows new kernels on it.
    #[serde(default = "yes")]
    pub schedulable: bool,
    /// Its total capacity.
    pub available_slots: ResourceSlot,
    /// What its kernels already occupy.
    #[serde(default)]
    pub occupied_slots: ResourceSlot,
}

fn yes() -> bool {
    true
}

/// One kernel of a pending session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KernelRequest {
    /// The kernel's id.
    pub id: KernelId,
    /// The resources it requests.
    pub requested_slots: ResourceSlot,
}

/// The state of a session another session depends on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DependencyState {
    /// Its name, for messages.
    pub name: String,
    /// Its status.
    pub status: SessionStatus,
    /// Whether it ended successfully (`result == success`).
    pub succeeded: bool,
}

/// A session waiting in the queue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingSession {
    /// The session's id.
    pub id: SessionId,
    /// Its name, for messages.
    #[serde(default)]
    pub name: String,
    /// The owner's access key.
    pub access_key: AccessKey,
    /// The owner's user id.
    pub user: String,
    /// The project (group) it belongs to.
    pub group: String,
    /// The domain it belongs to.
    pub domain: String,
    /// When it was queued.
    pub created_at: DateTime<Utc>,
    /// What the session is for.
    #[serde(default)]
    pub session_type: SessionType,
    /// Higher goes first (0–100, default 10).
    #[serde(default = "default_priority")]
    pub priority: i32,
    /// The scaling group it must run in.
    pub scaling_group: String,
    /// The image's architecture, e.g. `x86_64`.
    pub architecture: String,
    /// Its kernels, the first being the main kernel.
    pub kernels: Vec<KernelRequest>,
    /// Whether kernels share one agent or may spread.
    #[serde(default)]
    pub cluster_mode: ClusterMode,
    /// Agents it must run on (chosen by a superadmin at creation); empty for any agent.
    #[serde(default)]
    pub designated_agents: Vec<AgentId>,
    /// Sessions that must have finished successfully first.
    #[serde(default)]
    pub depends_on: Vec<SessionId>,
    /// For batch sessions, the earliest start time.
    #[serde(default)]
    pub starts_at: Option<DateTime<Utc>>,
    /// How many scheduling passes already failed to place it.
    #[serde(default)]
    pub retries: u32,
    /// For inference sessions that spread replicas: kernels of the same endpoint per agent
    /// (the `concentrated` selector avoids agents with more).
    #[serde(default)]
    pub endpoint_kernel_counts: Option<HashMap<AgentId, u32>>,
}

fn default_priority() -> i32 {
    10
}

impl PendingSession {
    /// The sum of its kernels' requests.
    pub fn total_requested(&self) -> ResourceSlot {
        self.kernels.iter().map(|k| &k.requested_slots).sum()
    }
}

/// Whether slots a limit does not mention are unlimited or zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum DefaultForUnspecified {
    /// Unmentioned slots are not limited (the default).
    #[default]
    Unlimited,
    /// Unmentioned slots are limited to zero.
    Limited,
}

/// A limit on the total resources some scope (keypair, user, project, domain) may occupy.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ResourceLimit {
    /// The limit per slot.
    pub total_resource_slots: ResourceSlot,
    /// What slots missing from `total_resource_slots` are limited to.
    #[serde(default)]
    pub default_for_unspecified: DefaultForUnspecified,
}

impl ResourceLimit {
    /// The slots of `wanted` that exceed this limit, with the amount of the excess.
    pub fn excess(&self, wanted: &ResourceSlot) -> ResourceSlot {
        let mut out = ResourceSlot::new();
        for (slot, amount) in wanted.iter() {
            let limit = if self.total_resource_slots.contains(slot) {
                self.total_resource_slots.get(slot)
            } else if self.default_for_unspecified == DefaultForUnspecified::Limited {
                bai_core::Decimal::ZERO
            } else {
                continue;
            };
            if amount > limit {
                // slot names come from a valid ResourceSlot, so this cannot fail
                let _ = out.set(slot, amount - limit);
            }
        }
        out
    }
}

/// The policy of one keypair.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct KeypairPolicy {
    /// What the keypair's sessions may occupy together.
    #[serde(default)]
    pub limit: ResourceLimit,
    /// How many sessions may run at once; `None` is unlimited (the original's `0`).
    #[serde(default)]
    pub max_concurrent_sessions: Option<u32>,
    /// How many system (SFTP) sessions may run at once; `None` is unlimited.
    #[serde(default)]
    pub max_concurrent_sftp_sessions: Option<u32>,
    /// How many sessions may wait at once; `None` is unlimited.
    #[serde(default)]
    pub max_pending_session_count: Option<u32>,
    /// What waiting sessions may request together; `None` is unlimited.
    #[serde(default)]
    pub max_pending_session_resource_slots: Option<ResourceSlot>,
}

/// Resource policies by scope; a scope without an entry is unlimited.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Policies {
    /// By access key.
    #[serde(default)]
    pub keypairs: HashMap<AccessKey, KeypairPolicy>,
    /// By user id (the policy of the user's main keypair in the original).
    #[serde(default)]
    pub users: HashMap<String, ResourceLimit>,
    /// By project (group).
    #[serde(default)]
    pub groups: HashMap<String, ResourceLimit>,
    /// By domain.
    #[serde(default)]
    pub domains: HashMap<String, ResourceLimit>,
}

/// What one keypair's running sessions use now.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct KeypairUsage {
    /// Resources occupied by its non-system sessions.
    #[serde(default)]
    pub occupied: ResourceSlot,
    /// How many of its non-system sessions occupy resources.
    #[serde(default)]
    pub running_sessions: u32,
    /// How many of its system (SFTP) sessions occupy resources.
    #[serde(default)]
    pub running_sftp_sessions: u32,
}

/// Current usage by scope; a scope without an entry uses nothing.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Usage {
    /// By access key.
    #[serde(default)]
    pub keypairs: HashMap<AccessKey, KeypairUsage>,
    /// Resources occupied by user id.
    #[serde(default)]
    pub users: HashMap<String, ResourceSlot>,
    /// Resources occupied by project.
    #[serde(default)]
    pub groups: HashMap<String, ResourceSlot>,
    /// Resources occupied by domain.
    #[serde(default)]
    pub domains: HashMap<String, ResourceSlot>,
}

/// Everything the scheduler needs to make one plan.
///
/// The manager builds it from its database; a program embedding the scheduler can build one
/// by hand or deserialise it from JSON.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Snapshot {
    /// Every agent, in any status (the scheduler filters).
    pub agents: Vec<AgentSnapshot>,
    /// Every pending session.
    pub pending: Vec<PendingSession>,
    /// Resource policies.
    #[serde(default)]
    pub policies: Policies,
    /// Current usage.
    #[serde(default)]
    pub usage: Usage,
    /// The state of sessions that pending sessions depend on.
    #[serde(default)]
    pub dependencies: HashMap<SessionId, DependencyState>,
    /// Round-robin positions by `(scaling group, architecture)`; the plan returns the new ones.
    #[serde(default)]
    pub roundrobin_next: Vec<RoundRobinState>,
}

/// Where the round-robin selector continues in one scaling group and architecture.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoundRobinState {
    /// The scaling group.
    pub scaling_group: String,
    /// The architecture.
    pub architecture: String,
    /// The index (into the group's agents of that architecture sorted by id) to try first.
    pub next_index: usize,
}
