//! A test harness with fixture builders, in the style of Nomad's scheduler tests.

#![allow(dead_code)]

use std::str::FromStr;

use bai_core::{AccessKey, AgentId, AgentStatus, ClusterMode, Decimal, KernelId, ResourceSlot, SessionId, SessionType};
use bai_scheduler::{AgentSnapshot, Config, KernelRequest, PendingSession, Plan, Snapshot};
use chrono::{DateTime, TimeDelta, Utc};
use uuid::Uuid;

/// `[("cpu", "2"), ("mem", "1024")]` as slots.
pub fn slots(pairs: &[(&str, &str)]) -> ResourceSlot {
    ResourceSlot::from_pairs(pairs.iter().map(|(k, v)| (*k, Decimal::from_str(v).expect("decimal"))))
        .expect("slot names")
}

pub fn sid(n: u32) -> SessionId {
    SessionId::from_uuid(Uuid::from_u128(0x5e55_0000_0000_0000_0000_0000_0000_0000 | n as u128))
}

pub fn kid(session: u32, kernel: u32) -> KernelId {
    KernelId::from_uuid(Uuid::from_u128(
        0x6e6e_0000_0000_0000_0000_0000_0000_0000 | ((session as u128) << 16) | kernel as u128,
    ))
}

pub fn epoch() -> DateTime<Utc> {
    "2020-06-29T00:00:00Z".parse().expect("date")
}

pub struct Harness {
    pub snapshot: Snapshot,
    pub config: Config,
    pub now: DateTime<Utc>,
    next_session: u32,
}

impl Default for Harness {
    fn default() -> Self {
        Self::new()
    }
}

impl Harness {
    pub fn new() -> Self {
        Self { snapshot: Snapshot::default(), config: Config::default(), now: epoch(), next_session: 0 }
    }

    /// An ALIVE, schedulable x86_64 agent in scaling group `sg`.
    pub fn agent(&mut self, id: &str, sg: &str, available: &[(&str, &str)]) -> &mut AgentSnapshot {
        self.snapshot.agents.push(AgentSnapshot {
            id: AgentId::new(id).expect("agent id"),
            scaling_group: sg.into(),
            architecture: "x86_64".into(),
            status: AgentStatus::Alive,
            schedulable: true,
            available_slots: slots(available),
            occupied_slots: ResourceSlot::new(),
        });
        self.snapshot.agents.last_mut().expect("just pushed")
    }

    /// A single-kernel interactive session of `access_key` in `sg`, created one second after
    /// the previous one.
    pub fn session(&mut self, access_key: &str, sg: &str, requested: &[(&str, &str)]) -> &mut PendingSession {
        self.session_with_kernels(access_key, sg, requested, 1)
    }

    /// A session with `n` identical kernels (single-node unless changed).
    pub fn session_with_kernels(
        &mut self,
        access_key: &str,
        sg: &str,
        requested: &[(&str, &str)],
        n: u32,
    ) -> &mut PendingSession {
        let i = self.next_session;
        self.next_session += 1;
        self.snapshot.pending.push(PendingSession {
            id: sid(i),
            name: format!("s{i}"),
            access_key: AccessKey::new(access_key).expect("access key"),
            user: format!("user-{access_key}"),
            group: "default".into(),
            domain: "default".into(),
            created_at: epoch() + TimeDelta::seconds(i as i64),
            session_type: SessionType::Interactive,
            priority: 10,
            scaling_group: sg.into(),
            architecture: "x86_64".into(),
            kernels: (0..n).map(|k| KernelRequest { id: kid(i, k), requested_slots: slots(requested) }).collect(),
            cluster_mode: ClusterMode::SingleNode,
            designated_agents: Vec::new(),
            depends_on: Vec::new(),
            starts_at: None,
            retries: 0,
            endpoint_kernel_counts: None,
        });
        self.snapshot.pending.last_mut().expect("just pushed")
    }

    pub fn plan(&self) -> Plan {
        bai_scheduler::plan(&self.snapshot, &self.config, self.now)
    }
}

/// The agent of each placed session's first kernel, in placement order, by session index.
pub fn placed_on(plan: &Plan) -> Vec<(SessionId, String)> {
    plan.placements.iter().map(|p| (p.session_id, p.kernels[0].agent_id.to_string())).collect()
}
