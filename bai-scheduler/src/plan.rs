//! The scheduler's output: placements, the reason for every session left waiting, cancellations.

use std::fmt::Write as _;

use bai_core::{AgentId, Decimal, KernelId, ResourceSlot, SessionId};
use serde::{Deserialize, Serialize};

use crate::snapshot::RoundRobinState;

/// Where one kernel goes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KernelPlacement {
    /// The kernel.
    pub kernel_id: KernelId,
    /// The agent that will run it.
    pub agent_id: AgentId,
    /// What it reserves on that agent.
    pub slots: ResourceSlot,
}

/// A session placed: every kernel has an agent (all or nothing).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Placement {
    /// The session.
    pub session_id: SessionId,
    /// Its scaling group.
    pub scaling_group: String,
    /// Its kernels, in the session's order.
    pub kernels: Vec<KernelPlacement>,
}

/// A predicate that failed, by the original's name, with its message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PredicateFailure {
    /// `reserved_time`, `dependencies`, `concurrency`, `pending_session_resource_limit`,
    /// `pending_session_count_limit`, `keypair_resource_limit`, `user_resource_limit`,
    /// `user_group_resource_limit` or `domain_resource_limit`.
    pub name: String,
    /// A sentence for the user, e.g. `You cannot run more than 2 concurrent sessions`.
    pub msg: String,
    /// For resource limits: by how much each slot would exceed the limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub excess: Option<ResourceSlot>,
}

/// One slot that no agent has enough of.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SlotShortage {
    /// The slot.
    pub slot: String,
    /// What the request (or kernel) needs.
    pub requested: Decimal,
    /// The most any considered agent has free.
    pub largest_free: Decimal,
}

/// Why a session was not placed. Every variant carries the numbers behind it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum BlockReason {
    /// A higher priority band is still waiting; only the highest band is scheduled.
    LowerPriority {
        /// This session's priority.
        priority: i32,
        /// The band being scheduled.
        scheduled_priority: i32,
    },
    /// The session's type is not accepted by its scaling group.
    SessionTypeNotAllowed {
        /// The session type.
        session_type: String,
    },
    /// The request is malformed (e.g. no kernels); it will never be placed as it is.
    InvalidRequest {
        /// What is wrong.
        reason: String,
    },
    /// Predicates failed (the original's `predicate-checks-failed`).
    PredicatesFailed {
        /// The failed predicates.
        failed: Vec<PredicateFailure>,
        /// The names of the predicates that passed.
        passed: Vec<String>,
    },
    /// The scaling group has no alive, schedulable agent of the session's architecture.
    NoAgents {
        /// The scaling group.
        scaling_group: String,
        /// The architecture required.
        architecture: String,
        /// Alive, schedulable agents in the group (any architecture).
        agents_in_group: usize,
    },
    /// A designated agent cannot take the session.
    DesignatedAgentUnavailable {
        /// The designated agents.
        agents: Vec<AgentId>,
        /// Why, e.g. `not alive` or the shortfall.
        reason: String,
    },
    /// No agent has room (the original's `no-available-instances`).
    NoResources {
        /// Agents considered (alive, schedulable, right group and architecture).
        agents_considered: usize,
        /// For multi-node sessions, the kernel (index in the session) that found no agent.
        kernel_index: Option<usize>,
        /// What was requested from one agent.
        requested: ResourceSlot,
        /// Slots that no considered agent has enough of; empty when every slot is free
        /// somewhere but never all on one agent (fragmentation).
        shortages: Vec<SlotShortage>,
    },
    /// A custom selector chose no agent although some had room, or chose one without room.
    SelectorDeclined {
        /// The selector's name.
        selector: String,
    },
}

impl BlockReason {
    /// The original's `status_info` string for this reason.
    pub fn status_info(&self) -> &'static str {
        match self {
            Self::PredicatesFailed { .. } => "predicate-checks-failed",
            Self::NoResources { .. }
            | Self::NoAgents { .. }
            | Self::DesignatedAgentUnavailable { .. }
            | Self::SelectorDeclined { .. } => "no-available-instances",
            Self::LowerPriority { .. } => "lower-priority",
            Self::SessionTypeNotAllowed { .. } | Self::InvalidRequest { .. } => "scheduler-error",
        }
    }

    /// Whether the manager should count this pass as a failed try (`retries += 1`): true when
    /// the session was actually tried.
    pub fn counts_as_retry(&self) -> bool {
        !matches!(self, Self::LowerPriority { .. })
    }
}

/// A session left waiting, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Blocked {
    /// The session.
    pub session_id: SessionId,
    /// Its scaling group.
    pub scaling_group: String,
    /// Why it was not placed.
    pub reason: BlockReason,
}

/// A session to cancel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cancellation {
    /// The session.
    pub session_id: SessionId,
    /// The original's reason string, e.g. `pending-timeout`.
    pub reason: String,
}

/// The result of one scheduling pass.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Plan {
    /// Sessions placed, in the order they were placed.
    pub placements: Vec<Placement>,
    /// Every pending session neither placed nor cancelled, with its reason.
    pub blocked: Vec<Blocked>,
    /// Sessions to cancel.
    pub cancellations: Vec<Cancellation>,
    /// Round-robin positions to keep for the next plan.
    pub roundrobin_next: Vec<RoundRobinState>,
}

impl Plan {
    /// The reason a session was left waiting, if it was.
    pub fn reason(&self, session: SessionId) -> Option<&BlockReason> {
        self.blocked.iter().find(|b| b.session_id == session).map(|b| &b.reason)
    }

    /// The placement of a session, if it was placed.
    pub fn placement(&self, session: SessionId) -> Option<&Placement> {
        self.placements.iter().find(|p| p.session_id == session)
    }

    /// One human sentence about a session: where it goes, why it waits, or why it is cancelled;
    /// `None` for a session this plan did not see.
    pub fn explain(&self, session: SessionId) -> Option<String> {
        if let Some(p) = self.placement(session) {
            return Some(p.explain());
        }
        if let Some(c) = self.cancellations.iter().find(|c| c.session_id == session) {
            return Some(c.explain());
        }
        self.reason(session).map(explain_reason)
    }

    /// The sentence of [`Plan::explain`] for every session of the plan, in one pass: placements
    /// first, then blocked sessions, then cancellations, each in the plan's order. Use it rather
    /// than calling `explain` per session, which searches the plan each time.
    pub fn explanations(&self) -> Vec<(SessionId, String)> {
        let placed = self.placements.iter().map(|p| (p.session_id, p.explain()));
        let blocked = self.blocked.iter().map(|b| (b.session_id, explain_reason(&b.reason)));
        let cancelled = self.cancellations.iter().map(|c| (c.session_id, c.explain()));
        placed.chain(blocked).chain(cancelled).collect()
    }
}

impl Placement {
    /// One human sentence: how many kernels go where, e.g.
    /// `Scheduled: 2 kernel(s) on i-1, i-2 in scaling group "default".`
    pub fn explain(&self) -> String {
        let mut agents: Vec<&str> = self.kernels.iter().map(|k| k.agent_id.as_str()).collect();
        agents.dedup();
        format!(
            "Scheduled: {} kernel(s) on {} in scaling group {:?}.",
            self.kernels.len(),
            agents.join(", "),
            self.scaling_group
        )
    }
}

impl Cancellation {
    /// One human sentence, e.g. `Cancelled (pending-timeout).`
    pub fn explain(&self) -> String {
        format!("Cancelled ({}).", self.reason)
    }
}

/// One human sentence for a block reason.
pub fn explain_reason(reason: &BlockReason) -> String {
    match reason {
        BlockReason::LowerPriority { priority, scheduled_priority } => format!(
            "Waiting: its priority {priority} is below {scheduled_priority}, the priority of other sessions still pending in its scaling group."
        ),
        BlockReason::SessionTypeNotAllowed { session_type } => {
            format!("Not schedulable: its scaling group does not accept {session_type} sessions.")
        }
        BlockReason::InvalidRequest { reason } => format!("Not schedulable: {reason}."),
        BlockReason::PredicatesFailed { failed, .. } => {
            let msgs: Vec<String> = failed.iter().map(|f| format!("{} ({})", f.msg, f.name)).collect();
            format!("Waiting: {}.", msgs.join("; "))
        }
        BlockReason::NoAgents { scaling_group, architecture, agents_in_group } => {
            if *agents_in_group == 0 {
                format!("Waiting: scaling group {scaling_group:?} has no alive, schedulable agent.")
            } else {
                format!(
                    "Waiting: none of the {agents_in_group} alive agent(s) of scaling group {scaling_group:?} runs {architecture}."
                )
            }
        }
        BlockReason::DesignatedAgentUnavailable { agents, reason } => {
            let ids: Vec<&str> = agents.iter().map(|a| a.as_str()).collect();
            format!("Waiting: the designated agent ({}) {reason}.", ids.join(", "))
        }
        BlockReason::NoResources { agents_considered, kernel_index, requested, shortages } => {
            let mut s = String::from("Waiting: ");
            if let Some(k) = kernel_index {
                let _ = write!(s, "kernel #{k} needs {requested}, and ");
            } else {
                let _ = write!(s, "it needs {requested}, and ");
            }
            if shortages.is_empty() {
                let _ = write!(
                    s,
                    "every slot is free on some of the {agents_considered} agent(s) considered, but not all on one."
                );
            } else {
                let parts: Vec<String> = shortages
                    .iter()
                    .map(|x| format!("{} {} (most free: {})", x.slot, x.requested.normalize(), x.largest_free.normalize()))
                    .collect();
                let _ = write!(s, "none of the {agents_considered} agent(s) considered has enough {}.", parts.join(", "));
            }
            s
        }
        BlockReason::SelectorDeclined { selector } => {
            format!("Waiting: the {selector} agent selector chose no agent with room.")
        }
    }
}
