//! The planner's working state: agents' free capacity as dense vectors, grouped by scaling group
//! and architecture, with ordered indexes that answer the built-in selectors without scanning
//! every agent.
//!
//! Invariant: for every built-in strategy, [`Cluster::select`] returns the agent the strategy's
//! linear reference implementation ([`crate::selector`]) would return for the same state. The
//! property tests check this on random clusters.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use bai_core::{AgentStatus, Decimal, ResourceSlot};

use crate::plan::SlotShortage;
use crate::selector::{priority_order, Strategy};
use crate::snapshot::{AgentSnapshot, Snapshot};

/// Slot names to dense indexes.
#[derive(Debug, Default)]
pub(crate) struct SlotSpace {
    names: Vec<String>,
    index: HashMap<String, usize>,
}

impl SlotSpace {
    pub(crate) fn from_snapshot(snapshot: &Snapshot) -> Self {
        let mut names = std::collections::BTreeSet::new();
        for a in &snapshot.agents {
            names.extend(a.available_slots.iter().map(|(k, _)| k.to_string()));
            names.extend(a.occupied_slots.iter().map(|(k, _)| k.to_string()));
        }
        for s in &snapshot.pending {
            for k in &s.kernels {
                names.extend(k.requested_slots.iter().map(|(k, _)| k.to_string()));
            }
        }
        let names: Vec<String> = names.into_iter().collect();
        let index = names.iter().enumerate().map(|(i, n)| (n.clone(), i)).collect();
        Self { names, index }
    }

    pub(crate) fn len(&self) -> usize {
        self.names.len()
    }

    pub(crate) fn name(&self, i: usize) -> &str {
        &self.names[i]
    }

    pub(crate) fn dense(&self, slots: &ResourceSlot) -> Vec<Decimal> {
        let mut out = vec![Decimal::ZERO; self.names.len()];
        for (k, v) in slots.iter() {
            if let Some(&i) = self.index.get(k) {
                out[i] = v;
            }
        }
        out
    }

    pub(crate) fn sparse(&self, dense: &[Decimal], keep: impl Fn(usize) -> bool) -> ResourceSlot {
        let mut out = ResourceSlot::new();
        for (i, v) in dense.iter().enumerate() {
            if keep(i) || !v.is_zero() {
                // names come from valid ResourceSlots
                let _ = out.set(&self.names[i], *v);
            }
        }
        out
    }

    /// The request's present slots in priority order, as dense indexes.
    fn order(&self, request: &ResourceSlot, resource_priority: &[String]) -> Vec<usize> {
        priority_order(request, resource_priority).iter().filter_map(|k| self.index.get(k).copied()).collect()
    }
}

/// One agent's dense state.
#[derive(Debug)]
pub(crate) struct AgentState {
    pub(crate) available: Vec<Decimal>,
    /// Whether the agent's `available_slots` names the slot at all.
    pub(crate) has: Vec<bool>,
    pub(crate) free: Vec<Decimal>,
    /// The partition this agent is eligible in, and its position there.
    pub(crate) partition: Option<(usize, usize)>,
}

type Key = (u32, Box<[Decimal]>, usize);

/// An ordered index of a partition's agents for one strategy and request shape.
#[derive(Debug)]
struct ShapeIndex {
    strategy: Strategy,
    order: Vec<usize>,
    set: BTreeSet<Key>,
    keys: Vec<Key>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ShapeKey {
    strategy: Strategy,
    order: Vec<usize>,
    nonzero: Vec<usize>,
}

/// The eligible agents of one scaling group and architecture.
#[derive(Debug)]
pub(crate) struct Partition {
    /// Agent indexes in snapshot order.
    pub(crate) agents: Vec<usize>,
    /// Positions (into `agents`) sorted by agent id.
    by_id: Vec<usize>,
    /// For each position, its rank in `by_id`.
    rank_of: Vec<usize>,
    pub(crate) rr_next: usize,
    /// Per slot, the multiset of the agents' free amounts.
    free_values: Vec<BTreeMap<Decimal, u32>>,
    shapes: HashMap<ShapeKey, ShapeIndex>,
    /// Requests that found no agent; free capacity only shrinks while they are kept, so any
    /// request at least as large fails too.
    failed: Vec<Vec<Decimal>>,
}

const MAX_FAILED_MEMO: usize = 64;

/// The planner's view of every agent.
#[derive(Debug)]
pub(crate) struct Cluster {
    pub(crate) slots: SlotSpace,
    pub(crate) agents: Vec<AgentState>,
    pub(crate) partitions: Vec<Partition>,
    partition_index: HashMap<(String, String), usize>,
    /// Alive, schedulable agents per scaling group (any architecture), and their capacity.
    groups: HashMap<String, (usize, ResourceSlot)>,
}

fn extras(request: &[Decimal], agent: &AgentState) -> u32 {
    agent.available.iter().zip(request).filter(|(a, r)| **a > Decimal::ZERO && r.is_zero()).count() as u32
}

pub(crate) fn fits(request: &[Decimal], free: &[Decimal]) -> bool {
    request.iter().zip(free).all(|(r, f)| r <= f)
}

impl Cluster {
    pub(crate) fn new(snapshot: &Snapshot) -> Self {
        let slots = SlotSpace::from_snapshot(snapshot);
        let mut agents = Vec::with_capacity(snapshot.agents.len());
        let mut partitions: Vec<Partition> = Vec::new();
        let mut partition_index: HashMap<(String, String), usize> = HashMap::new();
        let mut groups: HashMap<String, (usize, ResourceSlot)> = HashMap::new();
        for (i, a) in snapshot.agents.iter().enumerate() {
            let available = slots.dense(&a.available_slots);
            let occupied = slots.dense(&a.occupied_slots);
            let free: Vec<Decimal> = available.iter().zip(&occupied).map(|(a, o)| a.saturating_sub(*o)).collect();
            let has = (0..slots.len()).map(|s| a.available_slots.contains(slots.name(s))).collect();
            let eligible = is_eligible(a);
            let mut partition = None;
            if eligible {
                let entry = groups.entry(a.scaling_group.clone()).or_default();
                entry.0 += 1;
                entry.1 += &a.available_slots;
                let key = (a.scaling_group.clone(), a.architecture.clone());
                let p = *partition_index.entry(key).or_insert_with(|| {
                    partitions.push(Partition {
                        agents: Vec::new(),
                        by_id: Vec::new(),
                        rank_of: Vec::new(),
                        rr_next: 0,
                        free_values: vec![BTreeMap::new(); slots.len()],
                        shapes: HashMap::new(),
                        failed: Vec::new(),
                    });
                    partitions.len() - 1
                });
                let part = &mut partitions[p];
                for (s, v) in free.iter().enumerate() {
                    *part.free_values[s].entry(*v).or_insert(0) += 1;
                }
                part.agents.push(i);
                partition = Some((p, part.agents.len() - 1));
            }
            agents.push(AgentState { available, has, free, partition });
        }
        for part in &mut partitions {
            let mut by_id: Vec<usize> = (0..part.agents.len()).collect();
            by_id.sort_by(|x, y| snapshot.agents[part.agents[*x]].id.cmp(&snapshot.agents[part.agents[*y]].id));
            part.rank_of = vec![0; by_id.len()];
            for (rank, pos) in by_id.iter().enumerate() {
                part.rank_of[*pos] = rank;
            }
            part.by_id = by_id;
        }
        for state in &snapshot.roundrobin_next {
            if let Some(&p) = partition_index.get(&(state.scaling_group.clone(), state.architecture.clone())) {
                partitions[p].rr_next = state.next_index;
            }
        }
        Self { slots, agents, partitions, partition_index, groups }
    }

    pub(crate) fn partition(&self, scaling_group: &str, architecture: &str) -> Option<usize> {
        self.partition_index.get(&(scaling_group.to_string(), architecture.to_string())).copied()
    }

    /// Alive, schedulable agents in a scaling group and their summed capacity.
    pub(crate) fn group(&self, scaling_group: &str) -> (usize, ResourceSlot) {
        self.groups.get(scaling_group).cloned().unwrap_or_default()
    }

    /// The free amounts of an agent as a `ResourceSlot` (slots it offers or has non-zero).
    pub(crate) fn free_slots(&self, agent: usize) -> ResourceSlot {
        let a = &self.agents[agent];
        self.slots.sparse(&a.free, |s| a.has[s])
    }

    /// Slots whose request exceeds the largest free amount among the partition's agents.
    pub(crate) fn shortages(&self, p: usize, request: &[Decimal]) -> Vec<SlotShortage> {
        let part = &self.partitions[p];
        let mut out = Vec::new();
        for (s, r) in request.iter().enumerate() {
            if r.is_zero() {
                continue;
            }
            let largest = part.free_values[s].keys().next_back().copied().unwrap_or(Decimal::ZERO);
            if *r > largest {
                out.push(SlotShortage { slot: self.slots.name(s).to_string(), requested: *r, largest_free: largest });
            }
        }
        out
    }

    /// Whether a request at least as large as this one already failed in the partition.
    pub(crate) fn known_to_fail(&self, p: usize, request: &[Decimal]) -> bool {
        self.partitions[p].failed.iter().any(|f| f.iter().zip(request).all(|(f, r)| r >= f))
    }

    /// Remembers that a request found no agent (only valid while no reservation is tentative).
    pub(crate) fn remember_failure(&mut self, p: usize, request: &[Decimal]) {
        let part = &mut self.partitions[p];
        if part.failed.len() < MAX_FAILED_MEMO {
            part.failed.push(request.to_vec());
        }
    }

    /// The agent a built-in strategy picks in partition `p`, by index.
    pub(crate) fn select(
        &mut self,
        p: usize,
        strategy: Strategy,
        request: &[Decimal],
        request_slots: &ResourceSlot,
        resource_priority: &[String],
    ) -> Option<usize> {
        if strategy == Strategy::RoundRobin {
            let part = &self.partitions[p];
            let n = part.by_id.len();
            if n == 0 {
                return None;
            }
            let start = part.rr_next % n;
            let found = (0..n)
                .map(|step| part.agents[part.by_id[(start + step) % n]])
                .find(|&a| fits(request, &self.agents[a].free))?;
            return Some(found);
        }
        let nonzero: Vec<usize> = (0..request.len()).filter(|&s| !request[s].is_zero()).collect();
        let shape = ShapeKey { strategy, order: self.slots.order(request_slots, resource_priority), nonzero };
        if !self.partitions[p].shapes.contains_key(&shape) {
            let index = self.build_shape(p, &shape, request);
            self.partitions[p].shapes.insert(shape.clone(), index);
        }
        let index = &self.partitions[p].shapes[&shape];
        let agents = &self.agents;
        let part = &self.partitions[p];
        let first = index.order.first().map(|&s| request[s]);
        let max_extras = self.slots.len() as u32;
        for e in 0..=max_extras {
            let lower: Key = match (strategy, first) {
                // ascending free: skip agents with less than the request of the first slot
                (Strategy::Concentrated, Some(r)) => (e, Box::new([r]), 0),
                _ => (e, Box::new([]), 0),
            };
            let upper: Key = (e + 1, Box::new([]), 0);
            for (_, key, pos) in index.set.range(lower..upper) {
                let agent = part.agents[*pos];
                if let (Strategy::Dispersed, Some(r)) = (strategy, first) {
                    // descending free: past the request of the first slot nothing fits
                    if !r.is_zero() && key[0] > -r {
                        break;
                    }
                }
                if fits(request, &agents[agent].free) {
                    return Some(agent);
                }
            }
        }
        None
    }

    fn shape_key(&self, agent: usize, pos: usize, shape: &ShapeKey, strategy: Strategy, request_extras: u32) -> Key {
        let a = &self.agents[agent];
        let values: Box<[Decimal]> = shape
            .order
            .iter()
            .map(|&s| match strategy {
                _ if !a.has[s] => Decimal::MAX,
                Strategy::Concentrated => a.free[s],
                Strategy::Legacy => -a.available[s],
                _ => -a.free[s],
            })
            .collect();
        (request_extras, values, pos)
    }

    fn build_shape(&self, p: usize, shape: &ShapeKey, request: &[Decimal]) -> ShapeIndex {
        let part = &self.partitions[p];
        let mut keys = Vec::with_capacity(part.agents.len());
        for (pos, &agent) in part.agents.iter().enumerate() {
            let e = extras(request, &self.agents[agent]);
            keys.push(self.shape_key(agent, pos, shape, shape.strategy, e));
        }
        ShapeIndex { strategy: shape.strategy, order: shape.order.clone(), set: keys.iter().cloned().collect(), keys }
    }

    /// Adds `delta` to an agent's occupancy (a reservation, or its reversal with a negative
    /// delta), keeping the partition's indexes current.
    pub(crate) fn apply(&mut self, agent: usize, delta: &[Decimal], reserve: bool) {
        let old_free = self.agents[agent].free.clone();
        for (f, d) in self.agents[agent].free.iter_mut().zip(delta) {
            *f = if reserve { f.saturating_sub(*d) } else { f.saturating_add(*d) };
        }
        let Some((p, pos)) = self.agents[agent].partition else { return };
        let new_free = self.agents[agent].free.clone();
        let part = &mut self.partitions[p];
        for (s, (old, new)) in old_free.iter().zip(&new_free).enumerate() {
            if old != new {
                let values = &mut part.free_values[s];
                if let Some(count) = values.get_mut(old) {
                    *count -= 1;
                    if *count == 0 {
                        values.remove(old);
                    }
                }
                *values.entry(*new).or_insert(0) += 1;
            }
        }
        if !reserve {
            // capacity grew back: earlier failures may now fit
            part.failed.clear();
        }
        let has = &self.agents[agent].has;
        for index in part.shapes.values_mut() {
            if index.strategy == Strategy::Legacy {
                continue;
            }
            let old_key = index.keys[pos].clone();
            let values: Box<[Decimal]> = index
                .order
                .iter()
                .map(|&s| match index.strategy {
                    _ if !has[s] => Decimal::MAX,
                    Strategy::Concentrated => new_free[s],
                    _ => -new_free[s],
                })
                .collect();
            let new_key = (old_key.0, values, pos);
            index.set.remove(&old_key);
            index.set.insert(new_key.clone());
            index.keys[pos] = new_key;
        }
    }

    /// Moves the round-robin position of a partition past the chosen agent.
    pub(crate) fn advance_roundrobin(&mut self, p: usize, agent: usize) {
        let part = &mut self.partitions[p];
        if let Some((_, pos)) = self.agents[agent].partition {
            part.rr_next = (part.rank_of[pos] + 1) % part.by_id.len();
        }
    }

    pub(crate) fn partition_keys(&self) -> Vec<(&(String, String), usize)> {
        let mut keys: Vec<_> = self.partition_index.iter().map(|(k, v)| (k, *v)).collect();
        keys.sort();
        keys
    }
}

pub(crate) fn is_eligible(agent: &AgentSnapshot) -> bool {
    agent.status == AgentStatus::Alive && agent.schedulable
}
