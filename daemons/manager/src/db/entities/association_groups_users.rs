//! `association_groups_users`: which users belong to which groups.

use sea_orm::entity::prelude::*;
use serde::Serialize;

use super::FillDefaults;

/// A row of `association_groups_users`: `user_id` is a member of `group_id`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize)]
#[sea_orm(table_name = "association_groups_users")]
pub struct Model {
    /// The member (`users.uuid`).
    #[sea_orm(primary_key, auto_increment = false)]
    pub user_id: Uuid,
    /// The group (`groups.id`).
    #[sea_orm(primary_key, auto_increment = false)]
    pub group_id: Uuid,
}

/// Relations of `association_groups_users` (none is navigated from here).
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

impl FillDefaults for ActiveModel {
    fn fill_defaults(&mut self, _now: DateTimeUtc) {}
}
