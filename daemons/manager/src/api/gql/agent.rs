//! Agents (superadmin only): the roots `agent(agent_id)` and `agent_list(…)` (what
//! `admin agent info` and `admin agent list` read), and the types `Agent` and `AgentList`.
//!
//! Values follow the original: `status` is `ALIVE`, `LOST`, `RESTARTING` or `TERMINATED`;
//! `available_slots` and `occupied_slots` are JSONStrings, never null; `cpu_cur_pct` and
//! `mem_cur_bytes` are numbers (the manager keeps no live node statistics: `cpu_cur_pct` is 0
//! and `mem_cur_bytes` the memory the agent's kernels hold); `live_stat` is null.

use async_graphql::{Context, Error, Object, Result, ID};
use bai_core::AgentStatus;
use sea_orm::sea_query::{Order, SimpleExpr};
use sea_orm::{ColumnTrait, Condition, ConnectionTrait};

use super::filter::{self, column, FieldSpec, Kind, Target};
use super::scalars::{DateTime, JsonString};
use super::{db_error, require_superadmin, GqlContext};
use crate::db::entities::agent;
use crate::db::repo;
use crate::db::types::Wire;

fn wire_of<T: std::str::FromStr + std::fmt::Display>(text: &str) -> std::result::Result<String, String>
where
    T::Err: std::fmt::Display,
{
    text.parse::<T>().map(|v| v.to_string()).map_err(|e| e.to_string())
}

/// The fields `agent_list` can filter and order by.
pub fn agent_fields() -> Vec<FieldSpec> {
    use agent::Column as C;
    let col = |c: C| Target::Column(column(agent::Entity, c));
    let spec = |name, kind, target| FieldSpec { name, kind, target };
    vec![
        spec("id", Kind::Text, col(C::Id)),
        spec("status", Kind::Enum(wire_of::<AgentStatus>), col(C::Status)),
        spec("status_changed", Kind::Time, col(C::StatusChanged)),
        spec("region", Kind::Text, col(C::Region)),
        spec("scaling_group", Kind::Text, col(C::ScalingGroup)),
        spec("schedulable", Kind::Bool, col(C::Schedulable)),
        spec("addr", Kind::Text, col(C::Addr)),
        spec("public_host", Kind::Text, col(C::PublicHost)),
        spec("first_contact", Kind::Time, col(C::FirstContact)),
        spec("lost_at", Kind::Time, col(C::LostAt)),
        spec("version", Kind::Text, col(C::Version)),
        spec("architecture", Kind::Text, col(C::Architecture)),
    ]
}

/// An agent.
#[derive(Debug, Clone)]
pub struct Agent(agent::Model);

impl Agent {
    fn mem_used(&self) -> f64 {
        self.0.occupied_slots.0.get("mem").to_string().parse::<f64>().unwrap_or(0.0)
    }
}

#[Object(name = "Agent", serial, rename_fields = "snake_case", rename_args = "snake_case")]
impl Agent {
    /// The agent's id.
    async fn id(&self) -> ID {
        ID(self.0.id.clone())
    }
    /// `ALIVE`, `LOST`, `RESTARTING` or `TERMINATED`.
    async fn status(&self) -> String {
        self.0.status.to_string()
    }
    /// When the status last changed.
    async fn status_changed(&self) -> Option<DateTime> {
        self.0.status_changed.map(DateTime)
    }
    /// The region the node is in.
    async fn region(&self) -> &str {
        &self.0.region
    }
    /// The scaling group it serves.
    async fn scaling_group(&self) -> &str {
        &self.0.scaling_group
    }
    /// Whether the scheduler may place kernels on it.
    async fn schedulable(&self) -> bool {
        self.0.schedulable
    }
    /// The node's capacity.
    async fn available_slots(&self) -> JsonString {
        JsonString::serialize(&self.0.available_slots.0)
    }
    /// What its kernels hold.
    async fn occupied_slots(&self) -> JsonString {
        JsonString::serialize(&self.0.occupied_slots.0)
    }
    /// The RPC address.
    async fn addr(&self) -> &str {
        &self.0.addr
    }
    /// The host name users reach service ports at.
    async fn public_host(&self) -> Option<&str> {
        self.0.public_host.as_deref()
    }
    /// The machine architecture.
    async fn architecture(&self) -> &str {
        &self.0.architecture
    }
    /// When the first heartbeat arrived.
    async fn first_contact(&self) -> DateTime {
        DateTime(self.0.first_contact)
    }
    /// When it was last marked LOST or TERMINATED.
    async fn lost_at(&self) -> Option<DateTime> {
        self.0.lost_at.map(DateTime)
    }
    /// The agent's version.
    async fn version(&self) -> &str {
        &self.0.version
    }
    /// The accelerator plugins and their metadata.
    async fn compute_plugins(&self) -> JsonString {
        JsonString::of(&self.0.compute_plugins)
    }
    /// Hardware details per plugin (the accelerator plugins' metadata).
    async fn hardware_metadata(&self) -> JsonString {
        JsonString::of(&self.0.compute_plugins)
    }
    /// What the agent reported about its configuration.
    async fn local_config(&self) -> JsonString {
        JsonString::of(&serde_json::json!({
            "agent": {
                "id": self.0.id,
                "region": self.0.region,
                "scaling-group": self.0.scaling_group,
                "addr": self.0.addr,
                "public-host": self.0.public_host,
                "version": self.0.version,
                "architecture": self.0.architecture,
                "auto-terminate-abusing-kernel": self.0.auto_terminate_abusing_kernel,
            },
        }))
    }
    /// When this manager last heard the agent's heartbeat (bai; null when it has not since
    /// it started, or has no agent registry).
    async fn last_heartbeat(&self, ctx: &Context<'_>) -> Result<Option<DateTime>> {
        let gql = ctx.data::<GqlContext>()?;
        Ok(gql.manager.as_ref().and_then(|m| m.registry().last_seen(&self.0.id)).map(DateTime))
    }
    /// Live node statistics (not collected by the manager: null).
    async fn live_stat(&self) -> Option<JsonString> {
        None
    }
    /// CPU utilisation in percent (not collected by the manager: 0).
    async fn cpu_cur_pct(&self) -> f64 {
        0.0
    }
    /// Memory in use, in bytes: what the agent's kernels hold.
    async fn mem_cur_bytes(&self) -> f64 {
        self.mem_used()
    }
    /// Whether the agent kills kernels reported as abusive.
    async fn auto_terminate_abusing_kernel(&self) -> bool {
        self.0.auto_terminate_abusing_kernel
    }
}

/// A page of agents and how many match in all.
#[derive(Debug)]
pub struct AgentList {
    items: Vec<Agent>,
    total_count: i32,
}

#[Object(name = "AgentList", serial, rename_fields = "snake_case", rename_args = "snake_case")]
impl AgentList {
    /// The page.
    async fn items(&self) -> &[Agent] {
        &self.items
    }
    /// How many agents match in all.
    async fn total_count(&self) -> i32 {
        self.total_count
    }
}

/// Parses a comma-separated list of agent statuses.
fn parse_agent_statuses(text: &str) -> std::result::Result<Vec<AgentStatus>, String> {
    text.split(',')
        .map(|part| {
            part.trim().to_ascii_uppercase().parse::<AgentStatus>().map_err(|_| {
                format!(
                    "invalid agent status {:?} in status: expected ALIVE, LOST, RESTARTING or TERMINATED",
                    part.trim()
                )
            })
        })
        .collect()
}

/// Sort keys: expressions and directions, first first.
pub(crate) type SortKeys = Vec<(SimpleExpr, Order)>;

/// The `filter` and `order` arguments as a condition and sort keys over `specs`.
pub(crate) fn filter_and_order(
    db: &impl ConnectionTrait,
    specs: &[FieldSpec],
    filter: Option<&str>,
    order: Option<&str>,
) -> Result<(Option<SimpleExpr>, SortKeys)> {
    let backend = db.get_database_backend();
    let condition = match filter.filter(|f| !f.trim().is_empty()) {
        Some(text) => {
            let parsed = filter::parse_filter(text).map_err(Error::new)?;
            Some(filter::to_condition(&parsed, specs, backend).map_err(Error::new)?)
        }
        None => None,
    };
    let mut ordering = Vec::new();
    if let Some(text) = order {
        for key in filter::parse_order(text).map_err(Error::new)? {
            let expr = filter::order_expr(&key, specs, backend).map_err(Error::new)?;
            ordering.push((expr, if key.descending { Order::Desc } else { Order::Asc }));
        }
    }
    Ok((condition, ordering))
}

/// `limit` and `offset` checked as the original checks them.
pub(crate) fn page_bounds(limit: i32, offset: i32) -> Result<(u64, u64)> {
    if limit < 0 {
        return Err(Error::new(format!("limit must be 0 or more, got {limit}")));
    }
    if offset < 0 {
        return Err(Error::new(format!("offset must be 0 or more, got {offset}")));
    }
    Ok((limit as u64, offset as u64))
}

/// The agent roots.
#[derive(Debug, Default)]
pub struct AgentQuery;

#[Object(rename_fields = "snake_case", rename_args = "snake_case")]
impl AgentQuery {
    /// The agent with this id, or null (superadmin only).
    async fn agent(&self, ctx: &Context<'_>, agent_id: String) -> Result<Option<Agent>> {
        let gql = ctx.data::<GqlContext>()?;
        require_superadmin(&gql.auth)?;
        let Ok(id) = bai_core::AgentId::new(&agent_id) else { return Ok(None) };
        Ok(repo::get_agent(gql.db.as_ref(), &id).await.map_err(db_error)?.map(Agent))
    }

    /// A page of agents (superadmin only): those in `status` (comma-separated; `ALIVE` unless
    /// given, every status when null) and `scaling_group`, by id unless `order` says otherwise.
    #[allow(clippy::too_many_arguments)]
    async fn agent_list(
        &self,
        ctx: &Context<'_>,
        limit: i32,
        offset: i32,
        filter: Option<String>,
        order: Option<String>,
        scaling_group: Option<String>,
        #[graphql(default_with = "Some(\"ALIVE\".to_string())")] status: Option<String>,
    ) -> Result<AgentList> {
        let gql = ctx.data::<GqlContext>()?;
        require_superadmin(&gql.auth)?;
        let (limit, offset) = page_bounds(limit, offset)?;
        let db = gql.db.as_ref();
        let specs = agent_fields();
        let (extra, order) = filter_and_order(db, &specs, filter.as_deref(), order.as_deref())?;
        let mut condition = Condition::all();
        if let Some(status) = status.filter(|s| !s.trim().is_empty()) {
            let statuses = parse_agent_statuses(&status).map_err(Error::new)?;
            condition = condition.add(agent::Column::Status.is_in(statuses.into_iter().map(Wire)));
        }
        if let Some(sg) = scaling_group {
            condition = condition.add(agent::Column::ScalingGroup.eq(sg));
        }
        if let Some(extra) = extra {
            condition = condition.add(extra);
        }
        let page = repo::Page { limit, offset, order };
        let (rows, total) = repo::agent_page(db, condition, &page).await.map_err(db_error)?;
        Ok(AgentList {
            items: rows.into_iter().map(Agent).collect(),
            total_count: i32::try_from(total).unwrap_or(i32::MAX),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_statuses_parse() {
        assert_eq!(parse_agent_statuses("ALIVE").unwrap(), vec![AgentStatus::Alive]);
        assert_eq!(parse_agent_statuses("alive, LOST").unwrap(), vec![AgentStatus::Alive, AgentStatus::Lost]);
        assert!(parse_agent_statuses("SLEEPING").unwrap_err().contains("SLEEPING"));
    }
}
