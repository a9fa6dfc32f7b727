//! Utilisation of each scaling group over time: the manager samples the occupied and available
//! slots of its ALIVE agents every [`SAMPLE_INTERVAL`] and keeps the last [`KEEP`] samples per
//! group in memory (an hour), so that the web console's plot has a past the moment it opens.
//! GraphQL serves them as `ScalingGroup.utilisation_history` (bai).
//!
//! The history is this manager's: it starts empty when the manager starts, and each of several
//! managers keeps its own (they read the same database, so their samples agree).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use bai_core::AgentStatus;
use chrono::{DateTime, Utc};
use rust_decimal::prelude::ToPrimitive;
use sea_orm::ConnectionTrait;
use serde::Serialize;

use crate::db::repo;
use crate::db::DbError;

/// How often [`crate::manager::Manager::spawn`]'s sampler records a sample.
pub const SAMPLE_INTERVAL: Duration = Duration::from_secs(10);

/// How many samples a group keeps (an hour at [`SAMPLE_INTERVAL`]).
pub const KEEP: usize = 360;

/// One sample of one scaling group.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Sample {
    /// When it was taken.
    pub at: DateTime<Utc>,
    /// How many of the group's agents were ALIVE.
    pub alive_agents: u32,
    /// The sum of their available slots, by slot name.
    pub capacity: BTreeMap<String, f64>,
    /// The sum of their occupied slots, by slot name.
    pub used: BTreeMap<String, f64>,
}

/// The samples of every scaling group.
#[derive(Debug)]
pub struct UtilisationHistory {
    keep: usize,
    groups: Mutex<HashMap<String, VecDeque<Sample>>>,
}

impl Default for UtilisationHistory {
    fn default() -> Self {
        Self::new(KEEP)
    }
}

impl UtilisationHistory {
    /// An empty history keeping `keep` samples per group (at least one).
    pub fn new(keep: usize) -> Self {
        Self { keep: keep.max(1), groups: Mutex::new(HashMap::new()) }
    }

    /// Records a sample, taken `at`, of every scaling group in `db` (groups without agents too).
    pub async fn sample(&self, db: &impl ConnectionTrait, at: DateTime<Utc>) -> Result<(), DbError> {
        let groups = repo::list_scaling_groups(db, None).await?;
        let agents = repo::list_agents(db, None, Some(AgentStatus::Alive)).await?;
        let mut samples: HashMap<String, Sample> = groups
            .into_iter()
            .map(|g| {
                let empty = Sample { at, alive_agents: 0, capacity: BTreeMap::new(), used: BTreeMap::new() };
                (g.name, empty)
            })
            .collect();
        for agent in agents {
            let Some(sample) = samples.get_mut(&agent.scaling_group) else { continue };
            sample.alive_agents += 1;
            for (slot, amount) in agent.available_slots.0.iter() {
                *sample.capacity.entry(slot.to_string()).or_default() += amount.to_f64().unwrap_or(0.0);
            }
            for (slot, amount) in agent.occupied_slots.0.iter() {
                *sample.used.entry(slot.to_string()).or_default() += amount.to_f64().unwrap_or(0.0);
            }
        }
        let mut all = self.groups.lock().unwrap_or_else(|e| e.into_inner());
        // A group that was removed stops being reported.
        all.retain(|name, _| samples.contains_key(name));
        for (name, sample) in samples {
            let series = all.entry(name).or_default();
            series.push_back(sample);
            while series.len() > self.keep {
                series.pop_front();
            }
        }
        Ok(())
    }

    /// The samples of `group`, oldest first (empty for a group never sampled).
    pub fn history(&self, group: &str) -> Vec<Sample> {
        let all = self.groups.lock().unwrap_or_else(|e| e.into_inner());
        all.get(group).map(|s| s.iter().cloned().collect()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::repo::AgentHeartbeatRow;
    use bai_core::{AgentId, ResourceSlot};
    use serde_json::json;

    #[tokio::test]
    async fn samples_sum_the_alive_agents_of_each_group_and_keep_the_newest() {
        let db = crate::db::connect("sqlite::memory:").await.unwrap();
        crate::db::migrate(&db).await.unwrap();
        let fixture: serde_json::Value = serde_json::from_str(crate::local::EXAMPLE_FIXTURE).unwrap();
        repo::populate_fixture(&db, &fixture).await.unwrap();
        for (id, cpu) in [("i-u1", "4"), ("i-u2", "2")] {
            let slots: ResourceSlot = serde_json::from_value(json!({"cpu": cpu, "mem": "1073741824"})).unwrap();
            let row = AgentHeartbeatRow::new(AgentId::new(id).unwrap(), "default", slots, "127.0.0.1:1");
            repo::upsert_agent_from_heartbeat(&db, row).await.unwrap();
        }
        let history = UtilisationHistory::new(2);
        let t0 = Utc::now();
        for i in 0..3 {
            history.sample(&db, t0 + chrono::Duration::seconds(i)).await.unwrap();
        }
        let samples = history.history("default");
        assert_eq!(samples.len(), 2, "only the newest two are kept");
        assert_eq!(samples[0].at, t0 + chrono::Duration::seconds(1));
        let last = samples.last().unwrap();
        assert_eq!(last.alive_agents, 2);
        assert_eq!(last.capacity["cpu"], 6.0);
        assert_eq!(last.capacity["mem"], 2.0 * 1073741824.0);
        assert_eq!(last.used.get("cpu").copied().unwrap_or(0.0), 0.0);
        assert!(history.history("no-such-group").is_empty());
    }
}
