//! One scheduling pass: `plan(&Snapshot, &Config, now) -> Plan`.

use std::cmp::Reverse;
use std::collections::BTreeMap;

use bai_core::{ClusterMode, Decimal, ResourceSlot};
use chrono::{DateTime, Utc};

use crate::amount::Amount;
use crate::config::{BandMode, Config, GroupConfig};
use crate::index::{fits, is_eligible, Cluster};
use crate::plan::{BlockReason, Blocked, Cancellation, KernelPlacement, Placement, Plan};
use crate::predicates::Ledger;
use crate::queue::QueueContext;
use crate::selector::{AgentView, SelectionRequest, Strategy};
use crate::snapshot::{PendingSession, RoundRobinState, Snapshot};

/// Plans one scheduling pass over `snapshot` at time `now`.
///
/// For each scaling group (in name order): pending sessions older than the group's
/// `pending_timeout` are cancelled; sessions of a type the group does not accept, or with a
/// malformed request, are blocked; the remaining sessions are split into priority bands
/// (highest first; with [`BandMode::HighestOnly`] the lower bands wait). Within a band the
/// queue policy decides the order; each session is tried once: its predicates are checked
/// against usage including earlier placements of this plan, then its kernels are placed on
/// agents chosen by the group's selector — all on one agent for a single-node session, each
/// kernel on its own choice for a multi-node session, all or nothing. A session that cannot
/// be placed never blocks the sessions after it.
///
/// The function is pure and deterministic: no clock, no I/O, and the same inputs give the
/// same plan. It never over-commits an agent: every placement fits the agent's free capacity
/// after all earlier placements of the plan.
///
/// ```
/// use bai_scheduler::{plan, Config, Snapshot};
///
/// let snapshot: Snapshot = serde_json::from_value(serde_json::json!({
///     "agents": [{"id": "i-1", "scaling_group": "default", "architecture": "x86_64",
///                 "status": "ALIVE", "available_slots": {"cpu": "4", "mem": "8589934592"}}],
///     "pending": [{"id": "5f0e5c44-7a36-4b55-8c5a-9f0e0a1b2c3d", "access_key": "AKTEST",
///                  "user": "u1", "group": "g1", "domain": "default",
///                  "created_at": "2026-01-01T00:00:00Z", "scaling_group": "default",
///                  "architecture": "x86_64",
///                  "kernels": [{"id": "0b1d8f5e-3c2a-4e6f-9a7b-1c2d3e4f5a6b",
///                               "requested_slots": {"cpu": "2", "mem": "4294967296"}}]}]
/// }))?;
/// let now = "2026-01-01T00:01:00Z".parse()?;
/// let result = plan(&snapshot, &Config::default(), now);
/// assert_eq!(result.placements.len(), 1);
/// assert_eq!(result.placements[0].kernels[0].agent_id.as_str(), "i-1");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn plan(snapshot: &Snapshot, config: &Config, now: DateTime<Utc>) -> Plan {
    let totals: Vec<ResourceSlot> = snapshot.pending.iter().map(PendingSession::total_requested).collect();
    match Cluster::<i128>::new(snapshot, &totals) {
        Some(cluster) => run(snapshot, config, now, cluster, &totals),
        None => plan_with_decimal_amounts(snapshot, config, now),
    }
}

/// [`plan`] computed on `Decimal` amounts throughout. `plan` uses it when some amount of the
/// snapshot has no exact fixed-point form; it gives the same plan, only slower.
#[doc(hidden)]
pub fn plan_with_decimal_amounts(snapshot: &Snapshot, config: &Config, now: DateTime<Utc>) -> Plan {
    let totals: Vec<ResourceSlot> = snapshot.pending.iter().map(PendingSession::total_requested).collect();
    match Cluster::<Decimal>::new(snapshot, &totals) {
        Some(cluster) => run(snapshot, config, now, cluster, &totals),
        // unreachable: every Decimal is its own exact representation
        None => Plan {
            blocked: snapshot
                .pending
                .iter()
                .map(|s| Blocked {
                    session_id: s.id,
                    scaling_group: s.scaling_group.clone(),
                    reason: BlockReason::InvalidRequest { reason: "resource amounts out of range".into() },
                })
                .collect(),
            ..Plan::default()
        },
    }
}

fn run<V: Amount>(
    snapshot: &Snapshot,
    config: &Config,
    now: DateTime<Utc>,
    cluster: Cluster<V>,
    totals: &[ResourceSlot],
) -> Plan {
    let mut planner = Planner {
        snapshot,
        config,
        cluster,
        ledger: Ledger::new(snapshot, totals),
        ranks: Vec::new(),
        totals,
        band_of: vec![0; snapshot.pending.len()],
        tried: vec![false; snapshot.pending.len()],
        out: Plan::default(),
    };
    planner.ranks = planner.cluster.slots.ranks(&config.resource_priority);
    let mut by_group: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, s) in snapshot.pending.iter().enumerate() {
        by_group.entry(s.scaling_group.as_str()).or_default().push(i);
    }
    let mut band_serial = 0;
    for (group, mut sessions) in by_group {
        sessions.sort_by_key(|&i| (snapshot.pending[i].created_at, snapshot.pending[i].id));
        planner.plan_group(group, sessions, now, &mut band_serial);
    }
    planner.finish()
}

struct Planner<'a, V: Amount> {
    snapshot: &'a Snapshot,
    config: &'a Config,
    cluster: Cluster<V>,
    ledger: Ledger<'a>,
    /// Each dense slot's place in the configured priority list.
    ranks: Vec<(usize, usize)>,
    /// The total request of each pending session, by index.
    totals: &'a [ResourceSlot],
    /// The band (serial number, 0 for none) each pending session is in.
    band_of: Vec<u32>,
    /// Whether each pending session was already tried.
    tried: Vec<bool>,
    out: Plan,
}

impl<'a, V: Amount> Planner<'a, V> {
    fn block(&mut self, s: &PendingSession, reason: BlockReason) {
        self.out.blocked.push(Blocked { session_id: s.id, scaling_group: s.scaling_group.clone(), reason });
    }

    /// The index in `snapshot.pending` of a session a queue policy returned, if it is one.
    fn index_of(&self, s: &PendingSession) -> Option<usize> {
        let base = self.snapshot.pending.as_ptr() as usize;
        let offset = (s as *const PendingSession as usize).checked_sub(base)?;
        let i = offset / std::mem::size_of::<PendingSession>().max(1);
        (i < self.snapshot.pending.len() && std::ptr::eq(&self.snapshot.pending[i], s)).then_some(i)
    }

    fn plan_group(&mut self, group: &'a str, sessions: Vec<usize>, now: DateTime<Utc>, band_serial: &mut u32) {
        let snapshot = self.snapshot;
        let gcfg = self.config.group(group);
        let mut bands: BTreeMap<Reverse<i32>, Vec<usize>> = BTreeMap::new();
        for i in sessions {
            let s = &snapshot.pending[i];
            if let Some(timeout) = gcfg.pending_timeout {
                if timeout > chrono::TimeDelta::zero() && now - s.created_at >= timeout {
                    self.out.cancellations.push(Cancellation { session_id: s.id, reason: "pending-timeout".into() });
                    self.ledger.left_queue(s, &self.totals[i]);
                    continue;
                }
            }
            if let Some(allowed) = &gcfg.allowed_session_types {
                if !allowed.contains(&s.session_type) {
                    self.block(s, BlockReason::SessionTypeNotAllowed { session_type: s.session_type.to_string() });
                    continue;
                }
            }
            if let Some(reason) = invalid_request(s) {
                self.block(s, BlockReason::InvalidRequest { reason });
                continue;
            }
            bands.entry(Reverse(s.priority)).or_default().push(i);
        }
        let (_, capacity) = self.cluster.group(group);
        let mut top = None;
        for (Reverse(priority), band) in bands {
            let scheduled_priority = *top.get_or_insert(priority);
            if self.config.bands == BandMode::HighestOnly && priority != scheduled_priority {
                for i in band {
                    self.block(&snapshot.pending[i], BlockReason::LowerPriority { priority, scheduled_priority });
                }
                continue;
            }
            *band_serial += 1;
            for &i in &band {
                self.band_of[i] = *band_serial;
            }
            let ctx = QueueContext { scaling_group: group, capacity: &capacity, usage: &snapshot.usage };
            let mut queue = gcfg.queue.start(ctx, band.iter().map(|&i| &snapshot.pending[i]).collect());
            while let Some(s) = queue.next() {
                // a custom policy may return a stranger or a session twice: ignore those
                let Some(i) = self.index_of(s).filter(|&i| self.band_of[i] == *band_serial && !self.tried[i]) else {
                    continue;
                };
                self.tried[i] = true;
                let total = &self.totals[i];
                if let Err((failed, passed)) = self.ledger.check(s, total, now) {
                    self.block(s, BlockReason::PredicatesFailed { failed, passed });
                    continue;
                }
                match self.place(i, gcfg) {
                    Ok(placement) => {
                        self.ledger.placed(s, total);
                        queue.placed(s, total);
                        self.out.placements.push(placement);
                    }
                    Err(reason) => self.block(s, reason),
                }
            }
            for i in band {
                if !self.tried[i] {
                    self.block(
                        &snapshot.pending[i],
                        BlockReason::InvalidRequest {
                            reason: format!("the {} queue policy never offered this session", gcfg.queue.name()),
                        },
                    );
                }
            }
        }
    }

    fn place(&mut self, i: usize, gcfg: &GroupConfig) -> Result<Placement, BlockReason> {
        let s = &self.snapshot.pending[i];
        let single = s.cluster_mode == ClusterMode::SingleNode || s.kernels.len() == 1;
        let requests: Vec<&ResourceSlot> =
            if single { vec![&self.totals[i]] } else { s.kernels.iter().map(|k| &k.requested_slots).collect() };
        let mut chosen: Vec<usize> = Vec::with_capacity(requests.len());
        let mut reserved: Vec<(usize, Vec<V>)> = Vec::new();
        for (i_request, request) in requests.iter().enumerate() {
            let converted = if single {
                Some(self.cluster.session_totals[i].clone())
            } else {
                self.cluster.slots.dense::<V>(request)
            };
            let Some(dense) = converted else {
                for (agent, dense) in reserved.iter().rev() {
                    self.cluster.apply(*agent, dense, false);
                }
                return Err(BlockReason::InvalidRequest { reason: "resource amounts out of range".into() });
            };
            let result = self.choose(s, gcfg, request, &dense, !reserved.is_empty()).map_err(|mut reason| {
                if let BlockReason::NoResources { kernel_index, .. } = &mut reason {
                    *kernel_index = (!single).then_some(i_request);
                }
                reason
            });
            match result {
                Ok(agent) => {
                    self.cluster.apply(agent, &dense, true);
                    reserved.push((agent, dense));
                    chosen.push(agent);
                }
                Err(reason) => {
                    for (agent, dense) in reserved.iter().rev() {
                        self.cluster.apply(*agent, dense, false);
                    }
                    return Err(reason);
                }
            }
        }
        if gcfg.selector.strategy() == Some(Strategy::RoundRobin) && s.designated_agents.is_empty() {
            if let Some(p) = self.cluster.partition(&s.scaling_group, &s.architecture) {
                for &agent in &chosen {
                    self.cluster.advance_roundrobin(p, agent);
                }
            }
        }
        let kernels = s
            .kernels
            .iter()
            .enumerate()
            .map(|(i, k)| KernelPlacement {
                kernel_id: k.id,
                agent_id: self.snapshot.agents[chosen[if single { 0 } else { i }]].id.clone(),
                slots: k.requested_slots.clone(),
            })
            .collect();
        Ok(Placement { session_id: s.id, scaling_group: s.scaling_group.clone(), kernels })
    }

    /// Chooses one agent for `request`; `tentative` is true while other kernels of the same
    /// session hold reservations that may be rolled back.
    fn choose(
        &mut self,
        s: &'a PendingSession,
        gcfg: &GroupConfig,
        request: &ResourceSlot,
        dense: &[V],
        tentative: bool,
    ) -> Result<usize, BlockReason> {
        if !s.designated_agents.is_empty() {
            return self.choose_designated(s, gcfg, request, dense);
        }
        let Some(p) = self.cluster.partition(&s.scaling_group, &s.architecture) else {
            return Err(BlockReason::NoAgents {
                scaling_group: s.scaling_group.clone(),
                architecture: s.architecture.clone(),
                agents_in_group: self.cluster.group(&s.scaling_group).0,
            });
        };
        let considered = self.cluster.partitions[p].agents.len();
        let no_resources = |shortages| BlockReason::NoResources {
            agents_considered: considered,
            kernel_index: None,
            requested: request.clone(),
            shortages,
        };
        let shortages = self.cluster.shortages(p, dense);
        if !shortages.is_empty() {
            return Err(no_resources(shortages));
        }
        let spreads = s.endpoint_kernel_counts.as_ref().is_some_and(|c| !c.is_empty());
        match gcfg.selector.strategy() {
            Some(strategy) if !(spreads && strategy == Strategy::Concentrated) => {
                if self.cluster.known_to_fail(p, dense) {
                    return Err(no_resources(Vec::new()));
                }
                let picked = self.cluster.select(p, strategy, dense, request, &self.ranks);
                if picked.is_none() && !tentative {
                    self.cluster.remember_failure(p, dense);
                }
                picked.ok_or_else(|| no_resources(Vec::new()))
            }
            _ => {
                let agents = self.cluster.partitions[p].agents.clone();
                let rr = self.cluster.partitions[p].rr_next;
                self.choose_linear(s, gcfg, request, dense, &agents, rr).map_err(|declined| {
                    if declined {
                        BlockReason::SelectorDeclined { selector: gcfg.selector.name().to_string() }
                    } else {
                        no_resources(Vec::new())
                    }
                })
            }
        }
    }

    /// Asks the selector with every candidate in view; `Err(true)` when it declined although
    /// an agent had room, `Err(false)` when none had.
    fn choose_linear(
        &self,
        s: &'a PendingSession,
        gcfg: &GroupConfig,
        request: &ResourceSlot,
        dense: &[V],
        agents: &[usize],
        roundrobin_next: usize,
    ) -> Result<usize, bool> {
        let views: Vec<AgentView<'_>> = agents
            .iter()
            .map(|&a| {
                let snap = &self.snapshot.agents[a];
                AgentView {
                    id: &snap.id,
                    available: &snap.available_slots,
                    free: self.cluster.free_slots(a),
                    endpoint_kernels: s
                        .endpoint_kernel_counts
                        .as_ref()
                        .and_then(|c| c.get(&snap.id).copied())
                        .unwrap_or(0),
                }
            })
            .collect();
        let req = SelectionRequest {
            session: s,
            requested: request,
            resource_priority: &self.config.resource_priority,
            roundrobin_next,
        };
        match gcfg.selector.select(&req, &views) {
            Some(i) if i < agents.len() && fits(dense, &self.cluster.agents[agents[i]].free) => Ok(agents[i]),
            _ => Err(agents.iter().any(|&a| fits(dense, &self.cluster.agents[a].free))),
        }
    }

    fn choose_designated(
        &self,
        s: &'a PendingSession,
        gcfg: &GroupConfig,
        request: &ResourceSlot,
        dense: &[V],
    ) -> Result<usize, BlockReason> {
        let unavailable =
            |reason: String| BlockReason::DesignatedAgentUnavailable { agents: s.designated_agents.clone(), reason };
        let agents: Vec<usize> = self
            .snapshot
            .agents
            .iter()
            .enumerate()
            .filter(|(_, a)| s.designated_agents.contains(&a.id) && is_eligible(a))
            .map(|(i, _)| i)
            .collect();
        if agents.is_empty() {
            return Err(unavailable("is not alive and schedulable".into()));
        }
        self.choose_linear(s, gcfg, request, dense, &agents, 0).map_err(|declined| {
            if declined {
                unavailable(format!("was declined by the {} selector", gcfg.selector.name()))
            } else {
                let short = request.shortfall(&self.cluster.free_slots(agents[0]));
                unavailable(format!("does not have enough free capacity (short by {short})"))
            }
        })
    }

    fn finish(mut self) -> Plan {
        let mut states: BTreeMap<(String, String), usize> = self
            .snapshot
            .roundrobin_next
            .iter()
            .map(|s| ((s.scaling_group.clone(), s.architecture.clone()), s.next_index))
            .collect();
        for (group, arch, p) in self.cluster.partition_keys() {
            let next = self.cluster.partitions[p].rr_next;
            let key = (group.to_string(), arch.to_string());
            let uses_roundrobin = self.config.group(group).selector.strategy() == Some(Strategy::RoundRobin);
            if uses_roundrobin || states.contains_key(&key) {
                states.insert(key, next);
            }
        }
        self.out.roundrobin_next = states
            .into_iter()
            .map(|((scaling_group, architecture), next_index)| RoundRobinState {
                scaling_group,
                architecture,
                next_index,
            })
            .collect();
        self.out
    }
}

fn invalid_request(s: &PendingSession) -> Option<String> {
    if s.kernels.is_empty() {
        return Some("the session has no kernels".into());
    }
    for (i, k) in s.kernels.iter().enumerate() {
        if k.requested_slots.has_negative() {
            return Some(format!("kernel #{i} requests a negative amount ({})", k.requested_slots));
        }
    }
    None
}
