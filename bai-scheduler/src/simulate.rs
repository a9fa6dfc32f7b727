//! Simulation: step the scheduler over simulated time to answer "what if" questions — what if we
//! add ten GPU nodes, switch to DRF, or give a team a quota — before changing a real cluster.

use std::collections::{BTreeMap, HashMap};

use bai_core::{AccessKey, AgentId, Decimal, ResourceSlot, SessionId};
use chrono::{DateTime, TimeDelta, Utc};
use rust_decimal::prelude::ToPrimitive;
use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::planner::plan;
use crate::queue::dominant_share;
use crate::snapshot::{PendingSession, Snapshot};

/// A session that arrives at some time and runs for some duration once placed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Arrival {
    /// When it is submitted (its `created_at` is set to this).
    pub at: DateTime<Utc>,
    /// How long it runs once placed.
    pub duration: TimeDelta,
    /// The session.
    pub session: PendingSession,
}

/// How the simulation advances.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SimulationOptions {
    /// Time between scheduling passes (the original runs one every 10 s and on events).
    pub interval: TimeDelta,
    /// Stop after this much simulated time even if sessions are still waiting.
    pub horizon: TimeDelta,
}

impl Default for SimulationOptions {
    fn default() -> Self {
        Self { interval: TimeDelta::seconds(10), horizon: TimeDelta::days(7) }
    }
}

/// What one access key experienced.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct KeyReport {
    /// Sessions submitted.
    pub submitted: usize,
    /// Sessions that started.
    pub started: usize,
    /// Sessions cancelled (pending timeout).
    pub cancelled: usize,
    /// Mean wait of the started sessions, in seconds.
    pub mean_wait_secs: f64,
    /// Longest wait of a started session, in seconds.
    pub max_wait_secs: f64,
    /// The key's dominant share of all resource-time used in the simulation (0–1).
    pub usage_share: f64,
}

/// The outcome of a simulation.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SimulationReport {
    /// Scheduling passes run.
    pub passes: usize,
    /// Simulated time until the last session ended (or the horizon), in seconds.
    pub makespan_secs: f64,
    /// Per slot, the time-averaged fraction of the cluster's capacity in use (0–1).
    pub utilisation: BTreeMap<String, f64>,
    /// Per access key.
    pub keys: BTreeMap<AccessKey, KeyReport>,
    /// Jain's fairness index over the keys' usage shares (1 = perfectly even, 1/n = one key
    /// took everything).
    pub fairness: f64,
    /// Sessions still waiting at the end.
    pub still_waiting: usize,
}

struct Running {
    ends: DateTime<Utc>,
    access_key: AccessKey,
    total: ResourceSlot,
    on: Vec<(AgentId, ResourceSlot)>,
}

fn to_f64(d: Decimal) -> f64 {
    d.to_f64().unwrap_or(0.0)
}

/// Runs the scheduler every `options.interval` from the first arrival: arrivals join the queue,
/// sessions whose duration is over free their agents, and each plan's placements start at once.
/// `initial` supplies the agents (its pending sessions are queued at the start too).
///
/// The simulation is deterministic: the same inputs give the same report.
pub fn simulate(
    initial: &Snapshot,
    config: &Config,
    arrivals: &[Arrival],
    options: &SimulationOptions,
) -> SimulationReport {
    let mut arrivals: Vec<&Arrival> = arrivals.iter().collect();
    arrivals.sort_by_key(|a| (a.at, a.session.id));
    let mut snapshot = initial.clone();
    let start = arrivals.first().map(|a| a.at).or_else(|| snapshot.pending.iter().map(|s| s.created_at).min());
    let Some(start) = start else { return SimulationReport::default() };
    let interval = options.interval.max(TimeDelta::milliseconds(1));
    let end = start + options.horizon;

    let durations: HashMap<SessionId, TimeDelta> = arrivals.iter().map(|a| (a.session.id, a.duration)).collect();
    let capacity: ResourceSlot = snapshot.agents.iter().map(|a| &a.available_slots).sum();
    let mut report = SimulationReport::default();
    let mut waits: BTreeMap<AccessKey, Vec<f64>> = BTreeMap::new();
    let mut used_time: BTreeMap<AccessKey, ResourceSlot> = BTreeMap::new();
    let mut utilisation_sum: BTreeMap<String, f64> = BTreeMap::new();
    let mut running: Vec<Running> = Vec::new();
    let mut next = 0;
    let mut now = start;
    for a in &arrivals {
        report.keys.entry(a.session.access_key.clone()).or_default().submitted += 1;
    }
    for s in &snapshot.pending {
        report.keys.entry(s.access_key.clone()).or_default().submitted += 1;
    }
    let agent_index: HashMap<AgentId, usize> =
        snapshot.agents.iter().enumerate().map(|(i, a)| (a.id.clone(), i)).collect();

    while now <= end {
        // sessions that ended free their resources
        running.retain(|r| {
            if r.ends > now {
                return true;
            }
            for (agent, slots) in &r.on {
                if let Some(&i) = agent_index.get(agent) {
                    snapshot.agents[i].occupied_slots -= slots;
                }
            }
            if let Some(u) = snapshot.usage.keypairs.get_mut(&r.access_key) {
                u.occupied -= &r.total;
                u.running_sessions = u.running_sessions.saturating_sub(1);
            }
            false
        });
        while next < arrivals.len() && arrivals[next].at <= now {
            let mut s = arrivals[next].session.clone();
            s.created_at = arrivals[next].at;
            snapshot.pending.push(s);
            next += 1;
        }
        if next >= arrivals.len() && snapshot.pending.is_empty() && running.is_empty() {
            break;
        }
        let result = plan(&snapshot, config, now);
        report.passes += 1;
        let mut gone: HashMap<SessionId, ()> = HashMap::new();
        for c in &result.cancellations {
            if let Some(s) = snapshot.pending.iter().find(|s| s.id == c.session_id) {
                report.keys.entry(s.access_key.clone()).or_default().cancelled += 1;
            }
            gone.insert(c.session_id, ());
        }
        let by_id: HashMap<SessionId, usize> = snapshot.pending.iter().enumerate().map(|(i, s)| (s.id, i)).collect();
        for p in &result.placements {
            let s = &snapshot.pending[by_id[&p.session_id]];
            let total = s.total_requested();
            for k in &p.kernels {
                if let Some(&i) = agent_index.get(&k.agent_id) {
                    snapshot.agents[i].occupied_slots += &k.slots;
                }
            }
            let usage = snapshot.usage.keypairs.entry(s.access_key.clone()).or_default();
            usage.occupied += &total;
            usage.running_sessions += 1;
            let duration = durations.get(&s.id).copied().unwrap_or(TimeDelta::zero());
            let seconds = Decimal::from(duration.num_milliseconds()) / Decimal::from(1000);
            *used_time.entry(s.access_key.clone()).or_default() += &total.checked_mul(seconds).unwrap_or_default();
            waits
                .entry(s.access_key.clone())
                .or_default()
                .push((now - s.created_at).num_milliseconds() as f64 / 1000.0);
            running.push(Running {
                ends: now + duration,
                access_key: s.access_key.clone(),
                total,
                on: p.kernels.iter().map(|k| (k.agent_id.clone(), k.slots.clone())).collect(),
            });
            gone.insert(p.session_id, ());
        }
        for b in &result.blocked {
            if b.reason.counts_as_retry() {
                if let Some(&i) = by_id.get(&b.session_id) {
                    snapshot.pending[i].retries += 1;
                }
            }
        }
        snapshot.pending.retain(|s| !gone.contains_key(&s.id));
        snapshot.roundrobin_next = result.roundrobin_next;
        let occupied: ResourceSlot = snapshot.agents.iter().map(|a| &a.occupied_slots).sum();
        for (slot, cap) in capacity.iter() {
            if cap > Decimal::ZERO {
                *utilisation_sum.entry(slot.to_string()).or_default() += to_f64(occupied.get(slot) / cap);
            }
        }
        now += interval;
    }

    report.makespan_secs = (now.min(end) - start).num_milliseconds() as f64 / 1000.0;
    report.still_waiting = snapshot.pending.len();
    let passes = report.passes.max(1) as f64;
    report.utilisation = utilisation_sum.into_iter().map(|(k, v)| (k, v / passes)).collect();
    let total_time: ResourceSlot = used_time.values().sum();
    for (key, entry) in report.keys.iter_mut() {
        if let Some(w) = waits.get(key) {
            entry.started = w.len();
            entry.mean_wait_secs = w.iter().sum::<f64>() / w.len().max(1) as f64;
            entry.max_wait_secs = w.iter().copied().fold(0.0, f64::max);
        }
        entry.usage_share = used_time.get(key).map_or(0.0, |u| to_f64(dominant_share(u, &total_time)));
    }
    let shares: Vec<f64> = report.keys.values().map(|k| k.usage_share).collect();
    let (sum, sum_sq) = shares.iter().fold((0.0, 0.0), |(s, q), x| (s + x, q + x * x));
    report.fairness = if sum_sq > 0.0 { sum * sum / (shares.len() as f64 * sum_sq) } else { 1.0 };
    report
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::{AgentSnapshot, KernelRequest};
    use bai_core::{AgentStatus, ClusterMode, KernelId, SessionType};

    fn session(n: u128, key: &str, cpu: i64) -> PendingSession {
        PendingSession {
            id: SessionId::from_uuid(uuid::Uuid::from_u128(n)),
            name: format!("s{n}"),
            access_key: AccessKey::new(key).unwrap(),
            user: key.into(),
            group: "g".into(),
            domain: "d".into(),
            created_at: DateTime::UNIX_EPOCH,
            session_type: SessionType::Interactive,
            priority: 10,
            scaling_group: "sg".into(),
            architecture: "x86_64".into(),
            kernels: vec![KernelRequest {
                id: KernelId::from_uuid(uuid::Uuid::from_u128(n + 1_000_000)),
                requested_slots: ResourceSlot::from_pairs([("cpu", Decimal::from(cpu))]).unwrap(),
            }],
            cluster_mode: ClusterMode::SingleNode,
            designated_agents: vec![],
            depends_on: vec![],
            starts_at: None,
            retries: 0,
            endpoint_kernel_counts: None,
        }
    }

    #[test]
    fn a_full_cluster_makes_sessions_wait_their_turn() {
        let snapshot = Snapshot {
            agents: vec![AgentSnapshot {
                id: AgentId::new("i-1").unwrap(),
                scaling_group: "sg".into(),
                architecture: "x86_64".into(),
                status: AgentStatus::Alive,
                schedulable: true,
                available_slots: ResourceSlot::from_pairs([("cpu", Decimal::from(2))]).unwrap(),
                occupied_slots: ResourceSlot::new(),
            }],
            ..Snapshot::default()
        };
        let t0 = DateTime::UNIX_EPOCH;
        // three 2-CPU sessions of 60 s on a 2-CPU node: they run one after another
        let arrivals: Vec<Arrival> = (0..3)
            .map(|i| Arrival {
                at: t0,
                duration: TimeDelta::seconds(60),
                session: session(i, if i == 2 { "bbb" } else { "aaa" }, 2),
            })
            .collect();
        let report = simulate(&snapshot, &Config::default(), &arrivals, &SimulationOptions::default());
        let a = &report.keys[&AccessKey::new("aaa").unwrap()];
        let b = &report.keys[&AccessKey::new("bbb").unwrap()];
        assert_eq!((a.submitted, a.started, b.started), (2, 2, 1));
        assert_eq!(a.max_wait_secs, 60.0);
        assert_eq!(b.max_wait_secs, 120.0);
        assert_eq!(report.still_waiting, 0);
        assert!((report.utilisation["cpu"] - 1.0).abs() < 0.2, "{:?}", report.utilisation);
        assert!(report.fairness > 0.5 && report.fairness <= 1.0);
        // the same inputs give the same report
        assert_eq!(simulate(&snapshot, &Config::default(), &arrivals, &SimulationOptions::default()), report);
    }
}
