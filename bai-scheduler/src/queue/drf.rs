//! `drf`: dominant resource fairness between access keys.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};

use bai_core::{AccessKey, Decimal, ResourceSlot};

use super::{QueueContext, QueuePolicy, SessionQueue};
use crate::snapshot::PendingSession;

/// Dominant resource fairness: the access key whose dominant share is smallest goes next, with
/// its oldest pending session.
///
/// A key's dominant share is the largest, over the slots the scaling group has, of
/// `occupied[slot] / capacity[slot]`, where `occupied` is what the key's running sessions use.
/// Unlike the original (which sorts once per pass, so one key can take a whole pass), each
/// placement made in this plan is added to its key's usage before the next pick: progressive
/// filling. Ties go to the smaller access key.
#[derive(Debug, Clone, Copy, Default)]
pub struct Drf;

/// The dominant share of `used` over `capacity` (slots with zero capacity are ignored).
pub fn dominant_share(used: &ResourceSlot, capacity: &ResourceSlot) -> Decimal {
    let mut share = Decimal::ZERO;
    for (slot, cap) in capacity.iter() {
        if cap > Decimal::ZERO {
            if let Some(s) = used.get(slot).checked_div(cap) {
                share = share.max(s);
            }
        }
    }
    share
}

struct DrfQueue<'a> {
    capacity: ResourceSlot,
    keys: Vec<&'a AccessKey>,
    used: Vec<ResourceSlot>,
    waiting: Vec<VecDeque<&'a PendingSession>>,
    heap: BinaryHeap<Reverse<(Decimal, &'a AccessKey, usize)>>,
    in_flight: Option<usize>,
}

impl QueuePolicy for Drf {
    fn name(&self) -> &str {
        "drf"
    }

    fn start<'a>(&self, ctx: QueueContext<'_>, band: Vec<&'a PendingSession>) -> Box<dyn SessionQueue<'a> + 'a> {
        let mut index: HashMap<&'a AccessKey, usize> = HashMap::new();
        let mut queue = DrfQueue {
            capacity: ctx.capacity.clone(),
            keys: Vec::new(),
            used: Vec::new(),
            waiting: Vec::new(),
            heap: BinaryHeap::new(),
            in_flight: None,
        };
        for session in band {
            let i = *index.entry(&session.access_key).or_insert_with(|| {
                queue.keys.push(&session.access_key);
                queue
                    .used
                    .push(ctx.usage.keypairs.get(&session.access_key).map(|u| u.occupied.clone()).unwrap_or_default());
                queue.waiting.push(VecDeque::new());
                queue.keys.len() - 1
            });
            queue.waiting[i].push_back(session);
        }
        for i in 0..queue.keys.len() {
            queue.push(i);
        }
        Box::new(queue)
    }
}

impl DrfQueue<'_> {
    fn push(&mut self, i: usize) {
        if !self.waiting[i].is_empty() {
            let share = dominant_share(&self.used[i], &self.capacity);
            self.heap.push(Reverse((share, self.keys[i], i)));
        }
    }
}

impl<'a> SessionQueue<'a> for DrfQueue<'a> {
    fn next(&mut self) -> Option<&'a PendingSession> {
        if let Some(i) = self.in_flight.take() {
            self.push(i);
        }
        let Reverse((_, _, i)) = self.heap.pop()?;
        self.in_flight = Some(i);
        self.waiting[i].pop_front()
    }

    fn placed(&mut self, session: &'a PendingSession, allocated: &ResourceSlot) {
        if let Some(i) = self.in_flight.filter(|i| self.keys[*i] == &session.access_key) {
            self.used[i] += allocated;
        }
    }
}
