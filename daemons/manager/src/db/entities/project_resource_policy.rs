//! `project_resource_policies`: per-group (project) limits on storage and networks.

use sea_orm::entity::prelude::*;
use serde::Serialize;

use super::{or_set, FillDefaults};

/// A row of `project_resource_policies`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize)]
#[sea_orm(table_name = "project_resource_policies")]
pub struct Model {
    /// The policy's name (primary key).
    #[sea_orm(primary_key, auto_increment = false)]
    pub name: String,
    /// When the row was created.
    pub created_at: DateTimeUtc,
    /// Vfolders a project may own (0: unlimited).
    pub max_vfolder_count: i32,
    /// Bytes per quota scope (-1: unlimited).
    pub max_quota_scope_size: i64,
    /// Container networks a project may create.
    pub max_network_count: i32,
}

/// Relations of `project_resource_policies` (none is navigated from here).
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

impl FillDefaults for ActiveModel {
    fn fill_defaults(&mut self, now: DateTimeUtc) {
        or_set(&mut self.created_at, || now);
        or_set(&mut self.max_vfolder_count, || 0);
        or_set(&mut self.max_quota_scope_size, || -1);
        or_set(&mut self.max_network_count, || 3);
    }
}
