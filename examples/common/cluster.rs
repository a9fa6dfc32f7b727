//! A random heterogeneous cluster and queue for the scheduler examples and benchmarks.

// each example uses part of this module
#![allow(dead_code)]

use bai_core::{AccessKey, AgentId, AgentStatus, ClusterMode, Decimal, KernelId, ResourceSlot, SessionId, SessionType};
use bai_scheduler::{AgentSnapshot, KernelRequest, PendingSession, Plan, Snapshot};
use chrono::{DateTime, TimeDelta, Utc};

/// A small deterministic generator (xorshift64*), so runs are repeatable without a dependency.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

const GIB: u64 = 1 << 30;

fn slots(cpu: u64, mem_gib: u64, gpu: Option<Decimal>) -> ResourceSlot {
    let mut s = ResourceSlot::new();
    s.set("cpu", Decimal::from(cpu)).expect("valid name");
    s.set("mem", Decimal::from(mem_gib * GIB)).expect("valid name");
    if let Some(g) = gpu {
        s.set("cuda.shares", g).expect("valid name");
    }
    s
}

/// `agents` agents (60% CPU nodes, 30% GPU nodes, 10% small nodes) in one scaling group and
/// `sessions` pending sessions of `kernels` kernels each (multi-node when `kernels > 1`), from
/// 100 access keys; about one session in five asks for GPU shares.
pub fn random_cluster(agents: usize, sessions: usize, kernels: u32, seed: u64) -> Snapshot {
    let mut rng = Rng::new(seed);
    let mut snapshot = Snapshot::default();
    for i in 0..agents {
        let kind = rng.range(0, 9);
        let available = match kind {
            0..=5 => slots(rng.range(4, 16) * 8, rng.range(8, 32) * 16, None),
            6..=8 => slots(rng.range(4, 8) * 8, rng.range(16, 32) * 16, Some(Decimal::from(rng.range(4, 8)))),
            _ => slots(rng.range(2, 8), rng.range(4, 16), None),
        };
        snapshot.agents.push(AgentSnapshot {
            id: AgentId::new(format!("i-{i:06}")).expect("valid id"),
            scaling_group: "default".into(),
            architecture: "x86_64".into(),
            status: AgentStatus::Alive,
            schedulable: true,
            available_slots: available,
            occupied_slots: ResourceSlot::new(),
        });
    }
    let start: DateTime<Utc> = "2026-01-01T00:00:00Z".parse().expect("date");
    for i in 0..sessions {
        let gpu = (rng.range(0, 4) == 0).then(|| Decimal::new(rng.range(1, 4) as i64 * 5, 1));
        let per_kernel = slots(rng.range(1, 4), rng.range(1, 16), gpu);
        let id = SessionId::from_uuid(uuid_from(i as u64, 1));
        snapshot.pending.push(PendingSession {
            id,
            name: format!("s{i}"),
            access_key: AccessKey::new(format!("AK{:04}", rng.range(0, 99))).expect("valid key"),
            user: String::new(),
            group: "default".into(),
            domain: "default".into(),
            created_at: start + TimeDelta::milliseconds(i as i64),
            session_type: SessionType::Interactive,
            priority: 10,
            scaling_group: "default".into(),
            architecture: "x86_64".into(),
            kernels: (0..kernels)
                .map(|k| KernelRequest {
                    id: KernelId::from_uuid(uuid_from(i as u64, 2 + k as u64)),
                    requested_slots: per_kernel.clone(),
                })
                .collect(),
            cluster_mode: if kernels > 1 { ClusterMode::MultiNode } else { ClusterMode::SingleNode },
            designated_agents: Vec::new(),
            depends_on: Vec::new(),
            starts_at: None,
            retries: 0,
            endpoint_kernel_counts: None,
        });
    }
    snapshot
}

fn uuid_from(n: u64, tag: u64) -> uuid::Uuid {
    uuid::Uuid::from_u64_pair(tag, n)
}

/// Checks that no agent is over-committed by the plan; returns the number of kernels placed.
pub fn check_safety(snapshot: &Snapshot, plan: &Plan) -> Result<usize, String> {
    let mut added: std::collections::HashMap<&AgentId, ResourceSlot> = std::collections::HashMap::new();
    let mut kernels = 0;
    for p in &plan.placements {
        for k in &p.kernels {
            *added.entry(&k.agent_id).or_default() += &k.slots;
            kernels += 1;
        }
    }
    for a in &snapshot.agents {
        if let Some(extra) = added.get(&a.id) {
            let total = &a.occupied_slots + extra;
            if !total.fits_in(&a.available_slots) {
                return Err(format!("agent {} over-committed: {total} > {}", a.id, a.available_slots));
            }
        }
    }
    let accounted = plan.placements.len() + plan.blocked.len() + plan.cancellations.len();
    if accounted != snapshot.pending.len() {
        return Err(format!("{accounted} sessions accounted for, {} pending", snapshot.pending.len()));
    }
    Ok(kernels)
}
