//! `sgroups_for_keypairs`: which scaling groups a keypair (`keypairs.access_key`) may use.

use sea_orm::entity::prelude::*;
use serde::Serialize;

use super::FillDefaults;

/// A row of `sgroups_for_keypairs`: `access_key` may use `scaling_group`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize)]
#[sea_orm(table_name = "sgroups_for_keypairs")]
pub struct Model {
    /// The scaling group (`scaling_groups.name`).
    #[sea_orm(primary_key, auto_increment = false)]
    pub scaling_group: String,
    /// The user of the scaling group: a keypair (`keypairs.access_key`).
    #[sea_orm(primary_key, auto_increment = false)]
    pub access_key: String,
}

/// Relations of `sgroups_for_keypairs` (none is navigated from here).
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

impl FillDefaults for ActiveModel {
    fn fill_defaults(&mut self, _now: DateTimeUtc) {}
}
