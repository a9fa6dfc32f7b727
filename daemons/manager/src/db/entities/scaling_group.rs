//! `scaling_groups`: named pools of agents with their own scheduler and options. Which
//! domains, groups and keypairs may use a pool is in `sgroups_for_*`.

use sea_orm::entity::prelude::*;
use serde::Serialize;

use super::{empty_object, or_set, FillDefaults};

/// A row of `scaling_groups`.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel, Serialize)]
#[sea_orm(table_name = "scaling_groups")]
pub struct Model {
    /// The group's name (primary key), e.g. `default`.
    #[sea_orm(primary_key, auto_increment = false)]
    pub name: String,
    /// Free text.
    pub description: Option<String>,
    /// Whether sessions may be scheduled into it.
    pub is_active: bool,
    /// Whether every user of an associated domain/group may see it.
    pub is_public: bool,
    /// When the row was created.
    pub created_at: DateTimeUtc,
    /// The app proxy address for service ports.
    pub wsproxy_addr: Option<String>,
    /// The app proxy's API token.
    pub wsproxy_api_token: Option<String>,
    /// How agents join (`static`).
    pub driver: String,
    /// Driver options.
    pub driver_opts: Json,
    /// The queue policy: `fifo`, `lifo` or `drf`.
    pub scheduler: String,
    /// Scheduler options: `allowed_session_types`, `pending_timeout`, `config`,
    /// `agent_selection_strategy`, ….
    pub scheduler_opts: Json,
    /// Whether kernels use the host's network.
    pub use_host_network: bool,
}

/// Relations of `scaling_groups` (none is navigated from here).
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

impl FillDefaults for ActiveModel {
    fn fill_defaults(&mut self, now: DateTimeUtc) {
        or_set(&mut self.is_active, || true);
        or_set(&mut self.is_public, || true);
        or_set(&mut self.created_at, || now);
        or_set(&mut self.driver, || "static".to_string());
        or_set(&mut self.driver_opts, empty_object);
        or_set(&mut self.scheduler, || "fifo".to_string());
        or_set(&mut self.scheduler_opts, empty_object);
        or_set(&mut self.use_host_network, || false);
    }
}
