//! `agents`: compute nodes as the manager last saw them. Heartbeats insert and refresh rows;
//! the scheduler adds to `occupied_slots` when it places kernels.

use bai_core::AgentStatus;
use sea_orm::entity::prelude::*;
use serde::Serialize;

use super::{empty_object, or_set, FillDefaults};
use crate::db::types::{Slots, Wire};

/// A row of `agents`.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel, Serialize)]
#[sea_orm(table_name = "agents")]
pub struct Model {
    /// The agent's id (primary key), e.g. `i-node01`.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    /// `ALIVE`, `LOST`, `RESTARTING` or `TERMINATED`.
    pub status: Wire<AgentStatus>,
    /// When the status last changed.
    pub status_changed: Option<DateTimeUtc>,
    /// The region the node is in.
    pub region: String,
    /// The scaling group the agent serves (`scaling_groups.name`).
    pub scaling_group: String,
    /// Whether the scheduler may place new kernels on it.
    pub schedulable: bool,
    /// The node's capacity.
    pub available_slots: Slots,
    /// What the kernels placed on it hold.
    pub occupied_slots: Slots,
    /// The RPC address, e.g. `tcp://10.0.0.5:6011`.
    pub addr: String,
    /// The host name users reach service ports at.
    pub public_host: Option<String>,
    /// The agent's public key for encrypted RPC.
    pub public_key: Option<String>,
    /// When the first heartbeat arrived.
    pub first_contact: DateTimeUtc,
    /// When the agent was last marked LOST or TERMINATED.
    pub lost_at: Option<DateTimeUtc>,
    /// The agent's version.
    pub version: String,
    /// The machine architecture, e.g. `x86_64`, `aarch64`.
    pub architecture: String,
    /// The accelerator plugins and their metadata.
    pub compute_plugins: Json,
    /// Whether the agent kills kernels reported as abusive.
    pub auto_terminate_abusing_kernel: bool,
}

/// Relations of `agents` (none is navigated from here).
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

impl FillDefaults for ActiveModel {
    fn fill_defaults(&mut self, now: DateTimeUtc) {
        or_set(&mut self.status, || Wire(AgentStatus::Alive));
        or_set(&mut self.status_changed, || Some(now));
        or_set(&mut self.region, || "local".to_string());
        or_set(&mut self.scaling_group, || "default".to_string());
        or_set(&mut self.schedulable, || true);
        or_set(&mut self.available_slots, Default::default);
        or_set(&mut self.occupied_slots, Default::default);
        or_set(&mut self.first_contact, || now);
        or_set(&mut self.version, String::new);
        or_set(&mut self.architecture, || "x86_64".to_string());
        or_set(&mut self.compute_plugins, empty_object);
        or_set(&mut self.auto_terminate_abusing_kernel, || false);
    }
}
