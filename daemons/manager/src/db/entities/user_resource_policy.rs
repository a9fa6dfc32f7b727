//! `user_resource_policies`: per-user limits on storage and model services.

use sea_orm::entity::prelude::*;
use serde::Serialize;

use super::{or_set, FillDefaults};

/// A row of `user_resource_policies`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize)]
#[sea_orm(table_name = "user_resource_policies")]
pub struct Model {
    /// The policy's name (primary key).
    #[sea_orm(primary_key, auto_increment = false)]
    pub name: String,
    /// When the row was created.
    pub created_at: DateTimeUtc,
    /// Vfolders a user may create (0: unlimited).
    pub max_vfolder_count: i32,
    /// Bytes per quota scope (-1: unlimited).
    pub max_quota_scope_size: i64,
    /// Sessions per model service.
    pub max_session_count_per_model_session: i32,
    /// Customised images a user may keep.
    pub max_customized_image_count: i32,
}

/// Relations of `user_resource_policies` (none is navigated from here).
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

impl FillDefaults for ActiveModel {
    fn fill_defaults(&mut self, now: DateTimeUtc) {
        or_set(&mut self.created_at, || now);
        or_set(&mut self.max_vfolder_count, || 0);
        or_set(&mut self.max_quota_scope_size, || -1);
        or_set(&mut self.max_session_count_per_model_session, || 10);
        or_set(&mut self.max_customized_image_count, || 3);
    }
}
