//! `fifo`: oldest first, with a head-of-line skip for sessions that keep failing.

use super::{Ordered, QueueContext, QueuePolicy, SessionQueue};
use crate::snapshot::PendingSession;

/// Oldest first. With `num_retries_to_skip = N > 0`, sessions that already failed `N` or more
/// passes go after the others (still oldest first), so one session that never fits does not
/// take first claim on resources forever. It is the original's rule ("the first candidate with
/// fewer than N retries, else the first candidate") applied to a whole band at once.
#[derive(Debug, Clone, Copy, Default)]
pub struct Fifo {
    /// Failed passes after which a session yields its place; 0 never skips.
    pub num_retries_to_skip: u32,
}

impl QueuePolicy for Fifo {
    fn name(&self) -> &str {
        "fifo"
    }

    fn start<'a>(&self, _ctx: QueueContext<'_>, mut band: Vec<&'a PendingSession>) -> Box<dyn SessionQueue<'a> + 'a> {
        if self.num_retries_to_skip > 0 {
            let n = self.num_retries_to_skip;
            band.sort_by_key(|s| s.retries >= n); // stable: FIFO within each half
        }
        Box::new(Ordered::new(band))
    }
}
