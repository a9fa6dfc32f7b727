//! The planner's working state: agents' free capacity as dense vectors of exact amounts,
//! grouped by scaling group and architecture, with ordered indexes that answer the built-in
//! selectors without scanning every agent.
//!
//! Invariant: for every built-in strategy, [`Cluster::select`] returns the agent the strategy's
//! linear reference implementation ([`crate::selector`]) would return for the same state. The
//! property tests check this on random clusters.
//!
//! Each (strategy, request shape) index orders a partition's agents by the strategy's key
//! `(extras, v1, v2, …, position)`, where `v` are the free (or, for `legacy`, total) amounts of
//! the request's slots in priority order — negated when larger is better — and a slot the agent
//! does not offer sorts last. Agents are bucketed by `(extras, v1)`, and each bucket is ordered
//! by `(v2, …)`, so a selection skips whole buckets and bucket prefixes that cannot fit the first
//! two slots of the request instead of scanning them agent by agent.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use bai_core::{AgentStatus, ResourceSlot};

use crate::amount::Amount;
use crate::plan::SlotShortage;
#[cfg(doc)]
use crate::selector::priority_order;
use crate::selector::{slot_rank, Strategy};
use crate::snapshot::{AgentSnapshot, Snapshot};

/// Slot names to dense indexes, and the fixed-point scale of the snapshot.
#[derive(Debug, Default)]
pub(crate) struct SlotSpace {
    /// Sorted slot names.
    names: Vec<String>,
    pub(crate) scale: u32,
}

impl SlotSpace {
    pub(crate) fn from_snapshot(snapshot: &Snapshot) -> Self {
        let mut names: BTreeSet<&str> = BTreeSet::new();
        let mut scale = 0;
        let all_slots = snapshot
            .agents
            .iter()
            .flat_map(|a| [&a.available_slots, &a.occupied_slots])
            .chain(snapshot.pending.iter().flat_map(|s| s.kernels.iter().map(|k| &k.requested_slots)));
        for slots in all_slots {
            for (k, v) in slots.iter() {
                scale = scale.max(v.normalize().scale());
                names.insert(k);
            }
        }
        let names: Vec<String> = names.into_iter().map(str::to_string).collect();
        Self { names, scale }
    }

    /// The dense index of a slot name (names are sorted).
    fn position(&self, name: &str) -> Option<usize> {
        self.names.binary_search_by(|n| n.as_str().cmp(name)).ok()
    }

    pub(crate) fn len(&self) -> usize {
        self.names.len()
    }

    pub(crate) fn name(&self, i: usize) -> &str {
        &self.names[i]
    }

    /// The dense form of `slots`; `None` when a value has no exact representation in `V`.
    pub(crate) fn dense<V: Amount>(&self, slots: &ResourceSlot) -> Option<Vec<V>> {
        let mut out = vec![V::ZERO; self.names.len()];
        for (k, v) in slots.iter() {
            if let Some(i) = self.position(k) {
                out[i] = V::from_decimal(v, self.scale)?;
            }
        }
        Some(out)
    }

    pub(crate) fn sparse<V: Amount>(&self, dense: &[V], keep: impl Fn(usize) -> bool) -> ResourceSlot {
        let mut out = ResourceSlot::new();
        for (i, v) in dense.iter().enumerate() {
            if keep(i) || !v.is_zero() {
                // names come from valid ResourceSlots
                let _ = out.set(&self.names[i], v.to_decimal(self.scale));
            }
        }
        out
    }

    /// The request's present slots in priority order, as dense indexes (see
    /// [`priority_order`], which this matches).
    fn order(&self, request: &ResourceSlot, ranks: &[(usize, usize)]) -> Vec<usize> {
        let mut order: Vec<usize> = request.iter().filter_map(|(k, _)| self.position(k)).collect();
        // names are sorted, so the dense index breaks ties by name as `priority_order` does
        order.sort_by_key(|&s| (ranks[s], s));
        order
    }

    /// Each slot's place in the priority list, as `priority_order` ranks it.
    pub(crate) fn ranks(&self, resource_priority: &[String]) -> Vec<(usize, usize)> {
        self.names.iter().map(|n| slot_rank(n, resource_priority)).collect()
    }
}

/// One agent's dense state.
#[derive(Debug)]
pub(crate) struct AgentState<V> {
    pub(crate) available: Vec<V>,
    /// Whether the agent's `available_slots` names the slot at all.
    pub(crate) has: Vec<bool>,
    pub(crate) free: Vec<V>,
    /// The partition this agent is eligible in, and its position there.
    pub(crate) partition: Option<(usize, usize)>,
}

/// A trie over the ranking key: one level per ranked slot, positions at the leaves.
#[derive(Debug)]
enum Node<V> {
    Inner(BTreeMap<V, Node<V>>),
    Leaf(BTreeSet<usize>),
}

impl<V: Amount> Node<V> {
    fn new(depth: usize) -> Self {
        if depth == 0 {
            Node::Leaf(BTreeSet::new())
        } else {
            Node::Inner(BTreeMap::new())
        }
    }

    fn insert(&mut self, path: &[V], pos: usize) {
        match self {
            Node::Leaf(set) => {
                set.insert(pos);
            }
            Node::Inner(map) => {
                // paths are as deep as the trie; a shorter one has nowhere to go
                let Some((first, rest)) = path.split_first() else { return };
                map.entry(*first).or_insert_with(|| Node::new(rest.len())).insert(rest, pos);
            }
        }
    }

    /// Removes a position; returns whether this node became empty.
    fn remove(&mut self, path: &[V], pos: usize) -> bool {
        match self {
            Node::Leaf(set) => {
                set.remove(&pos);
                set.is_empty()
            }
            Node::Inner(map) => {
                if let Some((first, rest)) = path.split_first() {
                    if map.get_mut(first).is_some_and(|child| child.remove(rest, pos)) {
                        map.remove(first);
                    }
                }
                map.is_empty()
            }
        }
    }
}

/// An ordered index of a partition's agents for one strategy and request shape.
#[derive(Debug)]
struct ShapeIndex<V> {
    strategy: Strategy,
    order: Vec<usize>,
    /// Levels: extras, then the ranked value of each slot of `order`.
    root: BTreeMap<u32, Node<V>>,
    /// Each position's current extras and ranked values.
    keys: Vec<(u32, Box<[V]>)>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ShapeKey {
    strategy: Strategy,
    order: Vec<usize>,
    nonzero: Vec<usize>,
}

/// The eligible agents of one scaling group and architecture.
#[derive(Debug)]
pub(crate) struct Partition<V> {
    /// Agent indexes in snapshot order.
    pub(crate) agents: Vec<usize>,
    /// Positions (into `agents`) sorted by agent id.
    by_id: Vec<usize>,
    /// For each position, its rank in `by_id`.
    rank_of: Vec<usize>,
    pub(crate) rr_next: usize,
    /// Per slot, the multiset of the agents' free amounts.
    free_values: Vec<BTreeMap<V, u32>>,
    shapes: Vec<(ShapeKey, ShapeIndex<V>)>,
    /// Requests that found no agent; free capacity only shrinks while they are kept, so any
    /// request at least as large fails too.
    failed: Vec<Vec<V>>,
}

const MAX_FAILED_MEMO: usize = 64;

/// The planner's view of every agent.
#[derive(Debug)]
pub(crate) struct Cluster<V> {
    pub(crate) slots: SlotSpace,
    pub(crate) agents: Vec<AgentState<V>>,
    pub(crate) partitions: Vec<Partition<V>>,
    /// Partitions by scaling group, then architecture.
    partition_index: HashMap<String, Vec<(String, usize)>>,
    /// Alive, schedulable agents per scaling group (any architecture), and their capacity.
    groups: HashMap<String, (usize, ResourceSlot)>,
    /// The dense total request of each pending session, by index.
    pub(crate) session_totals: Vec<Vec<V>>,
}

pub(crate) fn fits<V: Amount>(request: &[V], free: &[V]) -> bool {
    request.iter().zip(free).all(|(r, f)| r <= f)
}

fn extras<V: Amount>(request: &[V], agent: &AgentState<V>) -> u32 {
    agent.available.iter().zip(request).filter(|(a, r)| **a > V::ZERO && r.is_zero()).count() as u32
}

/// The ranking value of one slot for a strategy (see the module documentation).
fn rank<V: Amount>(strategy: Strategy, has: bool, free: V, available: V) -> V {
    match strategy {
        _ if !has => V::MAX,
        Strategy::Concentrated => free,
        Strategy::Legacy => available.negated(),
        Strategy::Dispersed | Strategy::RoundRobin => free.negated(),
    }
}

impl<V: Amount> Cluster<V> {
    /// The cluster in representation `V`; `None` when some value (including a session total
    /// in `totals`) has no exact representation.
    pub(crate) fn new(snapshot: &Snapshot, totals: &[ResourceSlot]) -> Option<Self> {
        let slots = SlotSpace::from_snapshot(snapshot);
        let mut agents = Vec::with_capacity(snapshot.agents.len());
        let mut partitions: Vec<Partition<V>> = Vec::new();
        let mut partition_index: HashMap<String, Vec<(String, usize)>> = HashMap::new();
        let mut groups: HashMap<String, (usize, ResourceSlot)> = HashMap::new();
        for (i, a) in snapshot.agents.iter().enumerate() {
            let available: Vec<V> = slots.dense(&a.available_slots)?;
            let occupied: Vec<V> = slots.dense(&a.occupied_slots)?;
            let free: Vec<V> = available.iter().zip(&occupied).map(|(a, o)| a.minus(*o)).collect();
            let has = (0..slots.len()).map(|s| a.available_slots.contains(slots.name(s))).collect();
            let mut partition = None;
            if is_eligible(a) {
                let entry = groups.entry(a.scaling_group.clone()).or_default();
                entry.0 += 1;
                entry.1 += &a.available_slots;
                let archs = partition_index.entry(a.scaling_group.clone()).or_default();
                let known = archs.iter().find(|(arch, _)| *arch == a.architecture).map(|(_, p)| *p);
                let p = known.unwrap_or_else(|| {
                    partitions.push(Partition {
                        agents: Vec::new(),
                        by_id: Vec::new(),
                        rank_of: Vec::new(),
                        rr_next: 0,
                        free_values: vec![BTreeMap::new(); slots.len()],
                        shapes: Vec::new(),
                        failed: Vec::new(),
                    });
                    archs.push((a.architecture.clone(), partitions.len() - 1));
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
        let session_totals = totals.iter().map(|t| slots.dense::<V>(t)).collect::<Option<Vec<_>>>()?;
        let mut cluster = Self { slots, agents, partitions, partition_index, groups, session_totals };
        for state in &snapshot.roundrobin_next {
            if let Some(p) = cluster.partition(&state.scaling_group, &state.architecture) {
                cluster.partitions[p].rr_next = state.next_index;
            }
        }
        Some(cluster)
    }

    pub(crate) fn partition(&self, scaling_group: &str, architecture: &str) -> Option<usize> {
        self.partition_index.get(scaling_group)?.iter().find(|(arch, _)| arch == architecture).map(|(_, p)| *p)
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
    pub(crate) fn shortages(&self, p: usize, request: &[V]) -> Vec<SlotShortage> {
        let part = &self.partitions[p];
        let mut out = Vec::new();
        for (s, r) in request.iter().enumerate() {
            if r.is_zero() {
                continue;
            }
            let largest = part.free_values[s].keys().next_back().copied().unwrap_or(V::ZERO);
            if *r > largest {
                out.push(SlotShortage {
                    slot: self.slots.name(s).to_string(),
                    requested: r.to_decimal(self.slots.scale),
                    largest_free: largest.to_decimal(self.slots.scale),
                });
            }
        }
        out
    }

    /// Whether a request at least as large as this one already failed in the partition.
    pub(crate) fn known_to_fail(&self, p: usize, request: &[V]) -> bool {
        self.partitions[p].failed.iter().any(|f| f.iter().zip(request).all(|(f, r)| r >= f))
    }

    /// Remembers that a request found no agent (only valid while no reservation is tentative).
    pub(crate) fn remember_failure(&mut self, p: usize, request: &[V]) {
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
        request: &[V],
        request_slots: &ResourceSlot,
        ranks: &[(usize, usize)],
    ) -> Option<usize> {
        if strategy == Strategy::RoundRobin {
            let part = &self.partitions[p];
            let n = part.by_id.len();
            if n == 0 {
                return None;
            }
            let start = part.rr_next % n;
            return (0..n)
                .map(|step| part.agents[part.by_id[(start + step) % n]])
                .find(|&a| fits(request, &self.agents[a].free));
        }
        let nonzero: Vec<usize> = (0..request.len()).filter(|&s| !request[s].is_zero()).collect();
        let shape = ShapeKey { strategy, order: self.slots.order(request_slots, ranks), nonzero };
        let found = self.partitions[p].shapes.iter().position(|(k, _)| *k == shape);
        let at = match found {
            Some(at) => at,
            None => {
                let index = self.build_shape(p, &shape, request);
                self.partitions[p].shapes.push((shape, index));
                self.partitions[p].shapes.len() - 1
            }
        };
        let index = &self.partitions[p].shapes[at].1;
        let part = &self.partitions[p];
        let search = Search { strategy, request, order: &index.order, agents: &self.agents, positions: &part.agents };
        index.root.values().find_map(|node| search.find(node, 0))
    }

    fn key(&self, agent: usize, order: &[usize], strategy: Strategy) -> Box<[V]> {
        let a = &self.agents[agent];
        order.iter().map(|&s| rank(strategy, a.has[s], a.free[s], a.available[s])).collect()
    }

    fn build_shape(&self, p: usize, shape: &ShapeKey, request: &[V]) -> ShapeIndex<V> {
        let part = &self.partitions[p];
        let mut index = ShapeIndex {
            strategy: shape.strategy,
            order: shape.order.clone(),
            root: BTreeMap::new(),
            keys: Vec::new(),
        };
        for (pos, &agent) in part.agents.iter().enumerate() {
            let e = extras(request, &self.agents[agent]);
            let values = self.key(agent, &shape.order, shape.strategy);
            index.root.entry(e).or_insert_with(|| Node::new(values.len())).insert(&values, pos);
            index.keys.push((e, values));
        }
        index
    }

    /// Reserves `delta` on an agent (or, with `reserve == false`, gives it back), keeping the
    /// partition's indexes current.
    pub(crate) fn apply(&mut self, agent: usize, delta: &[V], reserve: bool) {
        let partition = self.agents[agent].partition;
        let state = &mut self.agents[agent];
        for (s, d) in delta.iter().enumerate() {
            if d.is_zero() {
                continue;
            }
            let old = state.free[s];
            let new = if reserve { old.minus(*d) } else { old.plus(*d) };
            state.free[s] = new;
            if let Some((p, _)) = partition {
                let values = &mut self.partitions[p].free_values[s];
                if let Some(count) = values.get_mut(&old) {
                    *count -= 1;
                    if *count == 0 {
                        values.remove(&old);
                    }
                }
                *values.entry(new).or_insert(0) += 1;
            }
        }
        let Some((p, pos)) = partition else { return };
        let part = &mut self.partitions[p];
        let state = &self.agents[agent];
        if !reserve {
            // capacity grew back: earlier failures may fit now
            part.failed.clear();
        }
        for (_, index) in part.shapes.iter_mut() {
            if index.strategy == Strategy::Legacy {
                continue; // ranked by total capacity, which does not change
            }
            let (e, values) = &mut index.keys[pos];
            if let Some(node) = index.root.get_mut(e) {
                if node.remove(values, pos) {
                    index.root.remove(e);
                }
            }
            for (value, &s) in values.iter_mut().zip(&index.order) {
                *value = rank(index.strategy, state.has[s], state.free[s], state.available[s]);
            }
            index.root.entry(*e).or_insert_with(|| Node::new(values.len())).insert(values, pos);
        }
    }

    /// Moves the round-robin position of a partition past the chosen agent.
    pub(crate) fn advance_roundrobin(&mut self, p: usize, agent: usize) {
        let part = &mut self.partitions[p];
        if let Some((_, pos)) = self.agents[agent].partition {
            part.rr_next = (part.rank_of[pos] + 1) % part.by_id.len();
        }
    }

    /// `(scaling group, architecture, partition)` in name order.
    pub(crate) fn partition_keys(&self) -> Vec<(&str, &str, usize)> {
        let mut keys: Vec<_> = self
            .partition_index
            .iter()
            .flat_map(|(group, archs)| archs.iter().map(move |(arch, p)| (group.as_str(), arch.as_str(), *p)))
            .collect();
        keys.sort();
        keys
    }
}

/// A depth-first walk of a shape's trie in key order, skipping subtrees whose ranked value
/// cannot fit the request.
struct Search<'s, V> {
    strategy: Strategy,
    request: &'s [V],
    order: &'s [usize],
    agents: &'s [AgentState<V>],
    positions: &'s [usize],
}

impl<V: Amount> Search<'_, V> {
    fn find(&self, node: &Node<V>, level: usize) -> Option<usize> {
        match node {
            Node::Leaf(set) => {
                set.iter().map(|&pos| self.positions[pos]).find(|&a| fits(self.request, &self.agents[a].free))
            }
            Node::Inner(map) => {
                let r = self.request[self.order[level]];
                match self.strategy {
                    // ascending free amounts: start at the request
                    Strategy::Concentrated => self.first(map.range(r..).map(|(_, n)| n), level),
                    // descending free amounts (negated): stop below the request
                    Strategy::Dispersed if !r.is_zero() => self.first(map.range(..=r.negated()).map(|(_, n)| n), level),
                    _ => self.first(map.values(), level),
                }
            }
        }
    }

    fn first<'n>(&self, children: impl Iterator<Item = &'n Node<V>>, level: usize) -> Option<usize>
    where
        V: 'n,
    {
        children.into_iter().find_map(|child| self.find(child, level + 1))
    }
}

pub(crate) fn is_eligible(agent: &AgentSnapshot) -> bool {
    agent.status == AgentStatus::Alive && agent.schedulable
}
