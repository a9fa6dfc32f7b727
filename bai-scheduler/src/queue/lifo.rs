//! `lifo`: newest first.

use super::{Ordered, QueueContext, QueuePolicy, SessionQueue};
use crate::snapshot::PendingSession;

/// Newest first.
#[derive(Debug, Clone, Copy, Default)]
pub struct Lifo;

impl QueuePolicy for Lifo {
    fn name(&self) -> &str {
        "lifo"
    }

    fn start<'a>(&self, _ctx: QueueContext<'_>, mut band: Vec<&'a PendingSession>) -> Box<dyn SessionQueue<'a> + 'a> {
        band.reverse();
        Box::new(Ordered::new(band))
    }
}
