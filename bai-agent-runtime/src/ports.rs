//! The host port pool from which kernels' service ports are published (30000–31000 by
//! default, configurable).

use std::collections::BTreeSet;
use std::ops::RangeInclusive;
use std::sync::Mutex;

use crate::error::{Error, Result};

/// A pool of host ports. All operations are atomic: concurrent kernel creations never get the
/// same port.
#[derive(Debug)]
pub struct PortPool {
    range: RangeInclusive<u16>,
    used: Mutex<BTreeSet<u16>>,
}

impl Default for PortPool {
    /// Ports 30000–31000, as the original.
    fn default() -> Self {
        Self::new(30000..=31000)
    }
}

impl PortPool {
    /// A pool over `range`.
    pub fn new(range: RangeInclusive<u16>) -> Self {
        Self { range, used: Mutex::new(BTreeSet::new()) }
    }

    /// The pool's range.
    pub fn range(&self) -> RangeInclusive<u16> {
        self.range.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeSet<u16>> {
        // a panic while holding the lock cannot leave the set inconsistent
        self.used.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Takes `count` free ports (lowest first), all or none.
    pub fn allocate(&self, count: usize) -> Result<Vec<u16>> {
        let mut used = self.lock();
        let free: Vec<u16> = self.range.clone().filter(|p| !used.contains(p)).take(count).collect();
        if free.len() < count {
            let available = self.range.clone().filter(|p| !used.contains(p)).count();
            return Err(Error::Insufficient {
                resource: format!("host ports in {}-{}", self.range.start(), self.range.end()),
                requested: count.to_string(),
                available: available.to_string(),
            });
        }
        used.extend(&free);
        Ok(free)
    }

    /// Gives ports back; ports not held are ignored.
    pub fn release(&self, ports: &[u16]) {
        let mut used = self.lock();
        for p in ports {
            used.remove(p);
        }
    }

    /// Marks ports held by an existing container (after a restart). Ports outside the range
    /// are ignored; a port already held is an error, as two containers cannot hold it.
    pub fn restore(&self, ports: &[u16]) -> Result<()> {
        let mut used = self.lock();
        if let Some(p) = ports.iter().find(|p| self.range.contains(p) && used.contains(p)) {
            return Err(Error::invalid("host port", format!("{p} is already held by another kernel")));
        }
        used.extend(ports.iter().filter(|p| self.range.contains(p)));
        Ok(())
    }

    /// How many ports are free.
    pub fn free(&self) -> usize {
        let used = self.lock();
        self.range.clone().filter(|p| !used.contains(p)).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocates_releases_and_reports_exhaustion() {
        let pool = PortPool::new(30000..=30003);
        assert_eq!(pool.allocate(3).unwrap(), [30000, 30001, 30002]);
        let err = pool.allocate(2).unwrap_err().to_string();
        assert_eq!(err, "insufficient host ports in 30000-30003: requested 2, available 1");
        assert_eq!(pool.free(), 1, "a failed allocation takes nothing");
        pool.release(&[30001]);
        assert_eq!(pool.allocate(2).unwrap(), [30001, 30003]);
        assert!(pool.restore(&[30001]).is_err());
        pool.release(&[30000, 30001, 30002, 30003]);
        pool.restore(&[30002, 40000]).unwrap();
        assert_eq!(pool.free(), 3);
    }

    #[test]
    fn concurrent_allocations_never_share_a_port() {
        let pool = std::sync::Arc::new(PortPool::new(30000..=30999));
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let pool = pool.clone();
                std::thread::spawn(move || (0..50).flat_map(|_| pool.allocate(2).unwrap()).collect::<Vec<_>>())
            })
            .collect();
        let mut all: Vec<u16> = handles.into_iter().flat_map(|h| h.join().unwrap()).collect();
        let n = all.len();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), n);
        assert_eq!(n, 800);
    }
}
