//! One allocation map: how much of a slot each device (or CPU core) holds and how much is
//! taken, with the rule that splits a request over devices.
//!
//! **The rule** (the same for CPU cores, whole devices and device shares): a request must be a
//! positive multiple of the map's quantum (1 for whole devices, 0.01 for `cuda.shares`, 0.001
//! for `cpu`). The devices are ranked least loaded first (most free, then device order), the
//! fewest of them whose free amounts cover the request are chosen, and the request is spread
//! over them as evenly as their free amounts and the quantum allow (water-filling). So a request
//! of 2 on four idle cores takes two whole cores, 1.5 takes 0.75 of two cores, and a GPU share
//! of 0.5 lands on the emptiest GPU. The result depends only on the map, never on timing.
//!
//! A map may also have a total limit below the sum of its devices (a CFS quota on the node
//! caps `cpu` below its core count); a request never takes more than the limit leaves.

use std::collections::BTreeMap;
use std::fmt::Display;

use bai_core::Decimal;

use crate::error::{Error, Result};

#[derive(Debug, Clone)]
struct Entry<K> {
    id: K,
    capacity: Decimal,
    used: Decimal,
}

impl<K> Entry<K> {
    fn free(&self) -> Decimal {
        self.capacity - self.used
    }
}

/// The allocation map of one slot.
#[derive(Debug, Clone)]
pub(crate) struct SlotMap<K> {
    name: String,
    quantum: Decimal,
    entries: Vec<Entry<K>>,
    limit: Decimal,
    used: Decimal,
}

impl<K: Ord + Clone + Display> SlotMap<K> {
    /// A map of `name` over `(device, capacity)` in device order. Capacities must be
    /// non-negative multiples of `quantum`; ids must be distinct. `limit` caps the total
    /// (default: the sum of the capacities).
    pub(crate) fn new(
        name: &str,
        quantum: Decimal,
        per_device: Vec<(K, Decimal)>,
        limit: Option<Decimal>,
    ) -> Result<Self> {
        let field = || format!("slot {name}");
        if quantum <= Decimal::ZERO {
            return Err(Error::invalid(field(), format!("the quantum {quantum} must be positive")));
        }
        let mut seen = std::collections::BTreeSet::new();
        for (id, capacity) in &per_device {
            if !seen.insert(id.clone()) {
                return Err(Error::invalid(field(), format!("device {id} appears twice")));
            }
            if capacity.is_sign_negative() && !capacity.is_zero() || !(*capacity % quantum).is_zero() {
                return Err(Error::invalid(
                    field(),
                    format!("device {id} has capacity {capacity}: expected a non-negative multiple of {quantum}"),
                ));
            }
        }
        let sum: Decimal = per_device.iter().map(|(_, c)| *c).sum();
        let limit = limit.map_or(sum, |l| l.min(sum));
        let entries =
            per_device.into_iter().map(|(id, capacity)| Entry { id, capacity, used: Decimal::ZERO }).collect();
        Ok(Self { name: name.to_string(), quantum, entries, limit, used: Decimal::ZERO })
    }

    /// The total that may be taken.
    pub(crate) fn capacity(&self) -> Decimal {
        self.limit
    }

    /// The total taken.
    pub(crate) fn used(&self) -> Decimal {
        self.used
    }

    fn free(&self) -> Decimal {
        (self.limit - self.used).max(Decimal::ZERO)
    }

    fn insufficient(&self, requested: Decimal) -> Error {
        Error::Insufficient {
            resource: self.name.clone(),
            requested: requested.normalize().to_string(),
            available: self.free().normalize().to_string(),
        }
    }

    /// Checks that `amount` is positive and a multiple of the quantum.
    pub(crate) fn check_amount(&self, amount: Decimal) -> Result<()> {
        let field = || format!("resource_slots.{}", self.name);
        if amount <= Decimal::ZERO {
            return Err(Error::invalid(field(), format!("{} must be positive", amount.normalize())));
        }
        if !(amount % self.quantum).is_zero() {
            let reason = if self.quantum == Decimal::ONE {
                format!("{} is not a whole number: {} is allocated in whole units", amount.normalize(), self.name)
            } else {
                format!("{} is finer than the slot's step of {}", amount.normalize(), self.quantum.normalize())
            };
            return Err(Error::invalid(field(), reason));
        }
        Ok(())
    }

    /// Splits `amount` over devices by the module's rule, without taking anything.
    pub(crate) fn plan(&self, amount: Decimal) -> Result<BTreeMap<K, Decimal>> {
        self.check_amount(amount)?;
        if amount > self.free() {
            return Err(self.insufficient(amount));
        }
        // least loaded first: most free, then device order
        let mut ranked: Vec<usize> =
            (0..self.entries.len()).filter(|&i| self.entries[i].free() > Decimal::ZERO).collect();
        ranked.sort_by(|&a, &b| self.entries[b].free().cmp(&self.entries[a].free()).then(a.cmp(&b)));
        let mut covered = Decimal::ZERO;
        let mut chosen = Vec::new();
        for i in ranked {
            if covered >= amount {
                break;
            }
            covered += self.entries[i].free();
            chosen.push(i);
        }
        if covered < amount {
            return Err(self.insufficient(amount));
        }
        // water-fill: the device with the least free first, each taking its even part of what
        // is left (rounded up to the quantum) or all it has; the invariant "what is left fits
        // in the devices not yet visited" holds at every step, so the last one takes the rest.
        chosen.sort_by(|&a, &b| self.entries[a].free().cmp(&self.entries[b].free()).then(a.cmp(&b)));
        let mut remaining = amount;
        let mut out = BTreeMap::new();
        let n = chosen.len();
        for (visited, &i) in chosen.iter().enumerate() {
            let left = Decimal::from(n - visited);
            let even = (remaining / left / self.quantum).ceil() * self.quantum;
            let share = even.min(self.entries[i].free()).min(remaining);
            if share > Decimal::ZERO {
                out.insert(self.entries[i].id.clone(), share.normalize());
                remaining -= share;
            }
        }
        if remaining > Decimal::ZERO {
            return Err(self.insufficient(amount));
        }
        Ok(out)
    }

    /// Checks that `amounts` (e.g. from a stored allocation) can be taken now: known devices,
    /// positive multiples of the quantum, within each device's free amount and the limit.
    pub(crate) fn check(&self, amounts: &BTreeMap<K, Decimal>) -> Result<()> {
        let mut total = Decimal::ZERO;
        for (id, amount) in amounts {
            self.check_amount(*amount)?;
            let entry = self.entries.iter().find(|e| &e.id == id).ok_or_else(|| {
                Error::invalid(format!("allocation.{}", self.name), format!("device {id} is not on this node"))
            })?;
            if *amount > entry.free() {
                return Err(Error::Insufficient {
                    resource: format!("{} on device {id}", self.name),
                    requested: amount.normalize().to_string(),
                    available: entry.free().normalize().to_string(),
                });
            }
            total += *amount;
        }
        if total > self.free() {
            return Err(self.insufficient(total));
        }
        Ok(())
    }

    /// Takes `amounts`; call [`SlotMap::check`] first.
    pub(crate) fn mark(&mut self, amounts: &BTreeMap<K, Decimal>) {
        for (id, amount) in amounts {
            if let Some(entry) = self.entries.iter_mut().find(|e| &e.id == id) {
                entry.used += *amount;
                self.used += *amount;
            }
        }
    }

    /// Gives `amounts` back (never below zero).
    pub(crate) fn unmark(&mut self, amounts: &BTreeMap<K, Decimal>) {
        for (id, amount) in amounts {
            if let Some(entry) = self.entries.iter_mut().find(|e| &e.id == id) {
                let back = (*amount).min(entry.used);
                entry.used -= back;
                self.used = (self.used - back).max(Decimal::ZERO);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    fn cores(n: u32) -> SlotMap<u32> {
        SlotMap::new("cpu", d("0.001"), (0..n).map(|i| (i, Decimal::ONE)).collect(), None).unwrap()
    }

    fn plan_marked(map: &mut SlotMap<u32>, amount: &str) -> BTreeMap<u32, Decimal> {
        let p = map.plan(d(amount)).unwrap();
        map.check(&p).unwrap();
        map.mark(&p);
        p
    }

    #[test]
    fn whole_requests_take_whole_idle_units() {
        let mut map = cores(4);
        let p = plan_marked(&mut map, "2");
        assert_eq!(p, BTreeMap::from([(0, Decimal::ONE), (1, Decimal::ONE)]));
        let p = plan_marked(&mut map, "1");
        assert_eq!(p, BTreeMap::from([(2, Decimal::ONE)]));
        assert_eq!(map.used(), d("3"));
    }

    #[test]
    fn fractions_spread_evenly_over_the_least_loaded() {
        let mut map = cores(4);
        assert_eq!(plan_marked(&mut map, "1.5"), BTreeMap::from([(0, d("0.75")), (1, d("0.75"))]));
        // cores 2 and 3 are idle: 0.5 goes to core 2
        assert_eq!(plan_marked(&mut map, "0.5"), BTreeMap::from([(2, d("0.5"))]));
        // now the least loaded is core 3 (1.0 free), then 0 and 1 (0.25), then 2 (0.5)
        assert_eq!(plan_marked(&mut map, "1.2"), BTreeMap::from([(2, d("0.5")), (3, d("0.7"))]));
        // 0.3 + 0.25 + 0.25 left: a request of 0.9 does not fit, 0.6 does
        assert!(matches!(map.plan(d("0.9")), Err(Error::Insufficient { .. })));
        let p = plan_marked(&mut map, "0.6");
        assert_eq!(p.values().copied().sum::<Decimal>(), d("0.6"));
        assert_eq!(p.len(), 3);
        assert_eq!(map.used(), d("3.8"));
    }

    #[test]
    fn uneven_thirds_stay_on_the_quantum() {
        let map = SlotMap::new(
            "cuda.shares",
            d("0.01"),
            vec![("0".to_string(), d("1")), ("1".to_string(), d("1")), ("2".to_string(), d("1"))],
            None,
        )
        .unwrap();
        let p = map.plan(d("2.5")).unwrap();
        assert_eq!(p.values().copied().sum::<Decimal>(), d("2.5"));
        for v in p.values() {
            assert!((*v % d("0.01")).is_zero() && *v <= Decimal::ONE, "{v}");
        }
    }

    #[test]
    fn steps_and_limits_are_enforced() {
        let map = SlotMap::new("cuda.device", Decimal::ONE, vec![("0".to_string(), Decimal::ONE)], None).unwrap();
        let err = map.plan(d("0.5")).unwrap_err().to_string();
        assert!(err.contains("resource_slots.cuda.device") && err.contains("whole"), "{err}");
        let shares = SlotMap::new("cuda.shares", d("0.01"), vec![("0".to_string(), Decimal::ONE)], None).unwrap();
        let err = shares.plan(d("0.005")).unwrap_err().to_string();
        assert!(err.contains("finer than the slot's step of 0.01"), "{err}");
        assert!(shares.plan(d("-1")).is_err());

        let capped =
            SlotMap::new("cpu", d("0.001"), (0..4u32).map(|i| (i, Decimal::ONE)).collect(), Some(d("2.5"))).unwrap();
        assert_eq!(capped.capacity(), d("2.5"));
        assert!(matches!(capped.plan(d("3")), Err(Error::Insufficient { .. })));
        assert!(capped.plan(d("2.5")).is_ok());
    }

    #[test]
    fn check_refuses_conflicts_and_unknown_devices() {
        let mut map = cores(2);
        let p = plan_marked(&mut map, "1");
        assert!(map.check(&p).is_err(), "core 0 is taken");
        assert!(map.check(&BTreeMap::from([(9, Decimal::ONE)])).is_err());
        map.unmark(&p);
        assert!(map.check(&p).is_ok());
        map.unmark(&p);
        assert_eq!(map.used(), Decimal::ZERO, "never below zero");
    }

    #[test]
    fn random_churn_keeps_every_invariant() {
        // a small deterministic generator instead of a property-test dependency
        let mut seed: u64 = 0x5eed;
        let mut next = move |n: u64| {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (seed >> 33) % n
        };
        let quantum = d("0.01");
        let mut map =
            SlotMap::new("cuda.shares", quantum, (0..5u32).map(|i| (i, Decimal::from(1 + i % 2))).collect(), None)
                .unwrap();
        let mut held: Vec<BTreeMap<u32, Decimal>> = Vec::new();
        for _ in 0..3000 {
            if !held.is_empty() && next(3) == 0 {
                let gone = held.swap_remove(next(held.len() as u64) as usize);
                map.unmark(&gone);
            } else {
                let amount = Decimal::from(1 + next(250)) * quantum;
                match map.plan(amount) {
                    Ok(p) => {
                        assert_eq!(p.values().copied().sum::<Decimal>(), amount);
                        assert!(p.values().all(|v| *v > Decimal::ZERO && (*v % quantum).is_zero()));
                        map.check(&p).unwrap();
                        map.mark(&p);
                        held.push(p);
                    }
                    Err(Error::Insufficient { .. }) => assert!(amount > map.free()),
                    Err(e) => panic!("{e}"),
                }
            }
            let total: Decimal = held.iter().flat_map(|p| p.values()).copied().sum();
            assert_eq!(map.used(), total);
            assert!(map.entries.iter().all(|e| e.used >= Decimal::ZERO && e.used <= e.capacity));
        }
    }

    #[test]
    fn bad_maps_are_rejected() {
        assert!(SlotMap::new("x", Decimal::ZERO, vec![(0u32, Decimal::ONE)], None).is_err());
        assert!(SlotMap::new("x", Decimal::ONE, vec![(0u32, d("1.5"))], None).is_err());
        assert!(SlotMap::new("x", Decimal::ONE, vec![(0u32, Decimal::ONE), (0, Decimal::ONE)], None).is_err());
    }
}
