//! `resource_presets`: named resource bundles users pick from (`01-small`, …), optionally
//! limited to one scaling group.

use sea_orm::entity::prelude::*;
use serde::Serialize;

use super::{or_set, FillDefaults};
use crate::db::types::Slots;

/// A row of `resource_presets`.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel, Serialize)]
#[sea_orm(table_name = "resource_presets")]
pub struct Model {
    /// The preset's name (primary key).
    #[sea_orm(primary_key, auto_increment = false)]
    pub name: String,
    /// The slots it requests.
    pub resource_slots: Slots,
    /// Shared memory in bytes.
    pub shared_memory: Option<i64>,
    /// The only scaling group it applies to (none: every group).
    pub scaling_group_name: Option<String>,
}

/// Relations of `resource_presets` (none is navigated from here).
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

impl FillDefaults for ActiveModel {
    fn fill_defaults(&mut self, _now: DateTimeUtc) {
        or_set(&mut self.resource_slots, Default::default);
    }
}
