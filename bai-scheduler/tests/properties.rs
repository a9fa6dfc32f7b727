//! Safety properties of the planner over random clusters and queues.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use bai_core::{AccessKey, AgentStatus, ClusterMode, Decimal, ResourceSlot};
use bai_scheduler::queue::dominant_share;
use bai_scheduler::selector::{self, AgentSelector, AgentView, SelectionRequest};
use bai_scheduler::{BandMode, Config, GroupConfig, KeypairPolicy, KeypairUsage, Plan, ResourceLimit, Snapshot};
use common::*;
use proptest::prelude::*;

const QUEUES: [&str; 3] = ["fifo", "lifo", "drf"];
const SELECTORS: [&str; 4] = ["dispersed", "concentrated", "legacy", "roundrobin"];
const KEYS: [&str; 3] = ["aaa", "bbb", "ccc"];

#[derive(Debug, Clone)]
struct AgentSpec {
    group: u8,
    arm: bool,
    alive: bool,
    cpu: u32,
    mem_gib: u32,
    gpu: Option<u32>,
    used_percent: u32,
}

#[derive(Debug, Clone)]
struct SessionSpec {
    key: usize,
    group: u8,
    arm: bool,
    priority: i32,
    kernels: u32,
    multi: bool,
    cpu: u32,
    mem_gib: u32,
    gpu_halves: Option<u32>,
}

fn agent_spec() -> impl Strategy<Value = AgentSpec> {
    (
        0u8..2,
        prop::bool::weighted(0.1),
        prop::bool::weighted(0.9),
        1u32..17,
        1u32..65,
        prop::option::of(0u32..5),
        0u32..120,
    )
        .prop_map(|(group, arm, alive, cpu, mem_gib, gpu, used_percent)| AgentSpec {
            group,
            arm,
            alive,
            cpu,
            mem_gib,
            gpu,
            used_percent,
        })
}

fn session_spec() -> impl Strategy<Value = SessionSpec> {
    (
        0usize..3,
        0u8..2,
        prop::bool::weighted(0.1),
        prop::sample::select(vec![5, 10, 10]),
        1u32..4,
        any::<bool>(),
        0u32..9,
        0u32..17,
        prop::option::of(0u32..3),
    )
        .prop_map(|(key, group, arm, priority, kernels, multi, cpu, mem_gib, gpu_halves)| SessionSpec {
            key,
            group,
            arm,
            priority,
            kernels,
            multi,
            cpu,
            mem_gib,
            gpu_halves,
        })
}

fn build(agents: &[AgentSpec], sessions: &[SessionSpec], limits: &[Option<(u32, u32)>]) -> Harness {
    let mut h = Harness::new();
    for (i, a) in agents.iter().enumerate() {
        let gib = (a.mem_gib as u64) << 30;
        let mut pairs = vec![("cpu".to_string(), a.cpu.to_string()), ("mem".to_string(), gib.to_string())];
        if let Some(g) = a.gpu {
            pairs.push(("cuda.shares".to_string(), g.to_string()));
        }
        let refs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let agent = h.agent(&format!("i-{i:02}"), &format!("sg{}", a.group), &refs);
        if a.arm {
            agent.architecture = "aarch64".into();
        }
        if !a.alive {
            agent.status = AgentStatus::Lost;
        }
        // up to 120% used: some agents start over-committed
        agent.occupied_slots = &agent.available_slots * (Decimal::from(a.used_percent) / Decimal::from(100));
    }
    for s in sessions {
        let mut pairs =
            vec![("cpu".to_string(), s.cpu.to_string()), ("mem".to_string(), ((s.mem_gib as u64) << 29).to_string())];
        if let Some(g) = s.gpu_halves {
            pairs.push(("cuda.shares".to_string(), (Decimal::from(g) / Decimal::from(2)).to_string()));
        }
        let refs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let session = h.session_with_kernels(KEYS[s.key], &format!("sg{}", s.group), &refs, s.kernels);
        session.priority = s.priority;
        if s.multi {
            session.cluster_mode = ClusterMode::MultiNode;
        }
        if s.arm {
            session.architecture = "aarch64".into();
        }
    }
    for (key, limit) in KEYS.iter().zip(limits) {
        if let Some((max_sessions, max_cpu)) = limit {
            let ak = AccessKey::new(*key).unwrap();
            h.snapshot.policies.keypairs.insert(
                ak.clone(),
                KeypairPolicy {
                    limit: ResourceLimit {
                        total_resource_slots: slots(&[("cpu", &max_cpu.to_string())]),
                        ..Default::default()
                    },
                    max_concurrent_sessions: Some(*max_sessions),
                    ..Default::default()
                },
            );
            h.snapshot.usage.keypairs.insert(
                ak,
                KeypairUsage { occupied: slots(&[("cpu", "1")]), running_sessions: 1, running_sftp_sessions: 0 },
            );
        }
    }
    h
}

fn config(queue: usize, selector: usize, all_bands: bool) -> Config {
    let mut c = Config::default()
        .with_default(GroupConfig::from_names(QUEUES[queue], &serde_json::json!({}), SELECTORS[selector]).unwrap());
    c.bands = if all_bands { BandMode::AllBands } else { BandMode::HighestOnly };
    c
}

/// Delegates to a built-in selector through the linear trait path (no capacity index).
#[derive(Debug)]
struct Linear(Arc<dyn AgentSelector>);

impl AgentSelector for Linear {
    fn name(&self) -> &str {
        self.0.name()
    }
    fn select(&self, request: &SelectionRequest<'_>, agents: &[AgentView<'_>]) -> Option<usize> {
        self.0.select(request, agents)
    }
}

fn check_safety(snapshot: &Snapshot, plan: &Plan) -> Result<(), TestCaseError> {
    // every pending session is accounted for exactly once
    let mut seen: HashMap<_, usize> = HashMap::new();
    for id in plan
        .placements
        .iter()
        .map(|p| p.session_id)
        .chain(plan.blocked.iter().map(|b| b.session_id))
        .chain(plan.cancellations.iter().map(|c| c.session_id))
    {
        *seen.entry(id).or_default() += 1;
    }
    prop_assert_eq!(seen.len(), snapshot.pending.len());
    prop_assert!(seen.values().all(|n| *n == 1));

    // gang and shape: every kernel placed, single-node on one agent, on an eligible agent
    let agents: HashMap<_, _> = snapshot.agents.iter().map(|a| (a.id.clone(), a)).collect();
    let mut added: HashMap<_, ResourceSlot> = HashMap::new();
    for p in &plan.placements {
        let s = snapshot.pending.iter().find(|s| s.id == p.session_id).unwrap();
        prop_assert_eq!(p.kernels.len(), s.kernels.len());
        for (k, pk) in s.kernels.iter().zip(&p.kernels) {
            prop_assert_eq!(k.id, pk.kernel_id);
            let agent = agents[&pk.agent_id];
            prop_assert!(agent.status == AgentStatus::Alive && agent.schedulable);
            prop_assert_eq!(&agent.scaling_group, &s.scaling_group);
            prop_assert_eq!(&agent.architecture, &s.architecture);
            *added.entry(pk.agent_id.clone()).or_default() += &pk.slots;
        }
        if s.cluster_mode == ClusterMode::SingleNode {
            prop_assert!(p.kernels.iter().all(|k| k.agent_id == p.kernels[0].agent_id));
        }
    }
    // never over-commit an agent in any slot
    for (id, extra) in &added {
        let a = agents[id];
        let total = &a.occupied_slots + extra;
        prop_assert!(
            total.fits_in(&a.available_slots),
            "agent {} over-committed: {} > {}",
            id,
            total,
            a.available_slots
        );
    }
    // keypair predicates hold for what was placed
    for (ak, policy) in &snapshot.policies.keypairs {
        let usage = snapshot.usage.keypairs.get(ak).cloned().unwrap_or_default();
        let placed: Vec<_> = plan
            .placements
            .iter()
            .filter(|p| snapshot.pending.iter().any(|s| s.id == p.session_id && &s.access_key == ak))
            .collect();
        if let Some(max) = policy.max_concurrent_sessions {
            prop_assert!(usage.running_sessions + placed.len() as u32 <= max.max(usage.running_sessions));
        }
        let mut occupied = usage.occupied.clone();
        for p in &placed {
            for k in &p.kernels {
                occupied += &k.slots;
            }
        }
        if !placed.is_empty() {
            prop_assert!(policy.limit.excess(&occupied).is_empty(), "keypair {} over its limit: {}", ak, occupied);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn plans_are_safe_and_deterministic(
        agents in prop::collection::vec(agent_spec(), 0..12),
        sessions in prop::collection::vec(session_spec(), 0..30),
        limits in prop::collection::vec(prop::option::of((1u32..4, 2u32..20)), 3),
        queue in 0usize..3,
        selector in 0usize..4,
        all_bands in any::<bool>(),
    ) {
        let h = build(&agents, &sessions, &limits);
        let cfg = config(queue, selector, all_bands);
        let plan = bai_scheduler::plan(&h.snapshot, &cfg, h.now);
        check_safety(&h.snapshot, &plan)?;

        // the same inputs, in another order, give the same plan
        let mut shuffled = h.snapshot.clone();
        shuffled.pending.reverse();
        prop_assert_eq!(&bai_scheduler::plan(&shuffled, &cfg, h.now), &plan);
        prop_assert_eq!(&bai_scheduler::plan(&h.snapshot, &cfg, h.now), &plan);
        // fixed-point and decimal amounts give the same plan
        prop_assert_eq!(&bai_scheduler::plan_with_decimal_amounts(&h.snapshot, &cfg, h.now), &plan);
    }

    #[test]
    fn the_capacity_index_chooses_like_the_reference_selectors(
        agents in prop::collection::vec(agent_spec(), 1..12),
        sessions in prop::collection::vec(session_spec(), 1..30),
        queue in 0usize..3,
        selector in 0usize..3,
    ) {
        let h = build(&agents, &sessions, &[None, None, None]);
        let indexed = config(queue, selector, true);
        let mut linear = indexed.clone();
        linear.default.selector = Arc::new(Linear(selector::by_name(SELECTORS[selector]).unwrap()));
        let a = bai_scheduler::plan(&h.snapshot, &indexed, h.now);
        let b = bai_scheduler::plan(&h.snapshot, &linear, h.now);
        prop_assert_eq!(a.placements, b.placements);
        prop_assert_eq!(a.blocked, b.blocked);
    }

    #[test]
    fn drf_always_serves_the_smallest_dominant_share(
        sessions in prop::collection::vec(session_spec(), 1..30),
        used in prop::collection::vec((0u32..16, 0u32..64), 3),
    ) {
        let mut h = build(&[], &sessions, &[None, None, None]);
        h.agent("i-big", "sg0", &[("cpu", "100000"), ("mem", "1000000000000000"), ("cuda.shares", "10000")]);
        h.agent("i-big-arm", "sg0", &[("cpu", "100000"), ("mem", "1000000000000000"), ("cuda.shares", "10000")]).architecture = "aarch64".into();
        h.agent("i-big-1", "sg1", &[("cpu", "100000"), ("mem", "1000000000000000"), ("cuda.shares", "10000")]);
        h.agent("i-big-arm-1", "sg1", &[("cpu", "100000"), ("mem", "1000000000000000"), ("cuda.shares", "10000")]).architecture = "aarch64".into();
        for (key, (cpu, mem)) in KEYS.iter().zip(&used) {
            h.snapshot.usage.keypairs.insert(AccessKey::new(*key).unwrap(), KeypairUsage {
                occupied: slots(&[("cpu", &(cpu * 1000).to_string()), ("mem", &((*mem as u64) << 40).to_string())]),
                ..Default::default()
            });
        }
        let cfg = config(2, 0, true);
        let plan = bai_scheduler::plan(&h.snapshot, &cfg, h.now);
        prop_assert_eq!(plan.placements.len(), h.snapshot.pending.len());
        // replay per scaling group and band
        let mut groups: BTreeMap<(String, i32), Vec<&bai_scheduler::Placement>> = BTreeMap::new();
        for p in &plan.placements {
            let s = h.snapshot.pending.iter().find(|s| s.id == p.session_id).unwrap();
            groups.entry((s.scaling_group.clone(), s.priority)).or_default().push(p);
        }
        for ((group, priority), placements) in groups {
            let capacity: ResourceSlot = h.snapshot.agents.iter().filter(|a| a.scaling_group == group).map(|a| &a.available_slots).sum();
            let mut used: HashMap<&AccessKey, ResourceSlot> = h.snapshot.usage.keypairs.iter().map(|(k, u)| (k, u.occupied.clone())).collect();
            let mut remaining: Vec<&bai_scheduler::PendingSession> = h.snapshot.pending.iter()
                .filter(|s| s.scaling_group == group && s.priority == priority).collect();
            for p in placements {
                let s = remaining.iter().position(|s| s.id == p.session_id).unwrap();
                let session = remaining.remove(s);
                let share = |k: &AccessKey, used: &HashMap<&AccessKey, ResourceSlot>| dominant_share(used.get(k).unwrap_or(&ResourceSlot::new()), &capacity);
                let mine = share(&session.access_key, &used);
                for other in &remaining {
                    prop_assert!(mine <= share(&other.access_key, &used), "{} ({}) served before {} ({})",
                        session.access_key, mine, other.access_key, share(&other.access_key, &used));
                }
                *used.entry(&session.access_key).or_default() += &session.total_requested();
            }
        }
    }
}
