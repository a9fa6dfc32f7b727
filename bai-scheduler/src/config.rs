//! How the scheduler behaves, per scaling group.

use std::collections::HashMap;
use std::sync::Arc;

use bai_core::SessionType;
use chrono::TimeDelta;

use crate::error::{Error, Result};
use crate::queue::{self, QueuePolicy};
use crate::selector::{self, AgentSelector};

/// The scheduling options of one scaling group (the original's `scheduler` and
/// `scheduler_opts`).
#[derive(Debug, Clone)]
pub struct GroupConfig {
    /// The queue policy (`fifo`, `lifo`, `drf` or a custom one).
    pub queue: Arc<dyn QueuePolicy>,
    /// The agent selector (`dispersed`, `concentrated`, `roundrobin`, `legacy` or a custom one).
    pub selector: Arc<dyn AgentSelector>,
    /// Pending sessions older than this are cancelled; `None` waits forever.
    pub pending_timeout: Option<TimeDelta>,
    /// Session types this group accepts; `None` accepts every type.
    pub allowed_session_types: Option<Vec<SessionType>>,
}

impl Default for GroupConfig {
    /// FIFO, dispersed, no pending timeout, every session type.
    fn default() -> Self {
        Self {
            queue: Arc::new(queue::Fifo::default()),
            selector: Arc::new(selector::Dispersed),
            pending_timeout: None,
            allowed_session_types: None,
        }
    }
}

impl GroupConfig {
    /// Builds a group configuration from the names the original stores: the queue policy name
    /// with its options (e.g. `{"num_retries_to_skip": 5}`) and the agent selection strategy.
    ///
    /// ```
    /// let cfg = bai_scheduler::GroupConfig::from_names("drf", &serde_json::json!({}), "concentrated")?;
    /// assert_eq!(cfg.queue.name(), "drf");
    /// assert!(bai_scheduler::GroupConfig::from_names("fifo", &serde_json::json!({"num_retries_to_skip": -1}), "dispersed").is_err());
    /// # Ok::<(), bai_scheduler::Error>(())
    /// ```
    pub fn from_names(queue_policy: &str, options: &serde_json::Value, selector: &str) -> Result<Self> {
        let selector = selector::by_name(selector).ok_or_else(|| Error::InvalidConfig {
            field: "agent_selection_strategy".into(),
            reason: format!("unknown strategy {selector:?}: expected concentrated, dispersed, roundrobin or legacy"),
        })?;
        Ok(Self { queue: queue::by_name(queue_policy, options)?, selector, ..Self::default() })
    }
}

/// How priority bands are scheduled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BandMode {
    /// Only the highest band with pending sessions is tried; lower bands wait until it is
    /// empty (the original's behaviour).
    #[default]
    HighestOnly,
    /// Every band is tried, highest first, in one plan.
    AllBands,
}

/// The scheduler's configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The options of scaling groups without their own entry.
    pub default: GroupConfig,
    /// Options per scaling group.
    pub groups: HashMap<String, GroupConfig>,
    /// The slot priority the selectors rank by (default `cuda, rocm, tpu, cpu, mem`).
    pub resource_priority: Vec<String>,
    /// How priority bands are scheduled.
    pub bands: BandMode,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            default: GroupConfig::default(),
            groups: HashMap::new(),
            resource_priority: ["cuda", "rocm", "tpu", "cpu", "mem"].iter().map(|s| s.to_string()).collect(),
            bands: BandMode::default(),
        }
    }
}

impl Config {
    /// The options of a scaling group.
    pub fn group(&self, name: &str) -> &GroupConfig {
        self.groups.get(name).unwrap_or(&self.default)
    }

    /// The same configuration with another default queue policy and selector.
    pub fn with_default(mut self, group: GroupConfig) -> Self {
        self.default = group;
        self
    }
}
