//! `vfolder_permissions`: users other than the owner who may use a folder, and how — folders
//! shared with them (`share`, or an accepted invitation), and per-user overrides on project
//! folders.

use bai_core::MountPermission;
use sea_orm::entity::prelude::*;
use serde::Serialize;

use super::{or_set, FillDefaults};
use crate::db::types::Wire;

/// A row of `vfolder_permissions`: `user` may use `vfolder` with `permission`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize)]
#[sea_orm(table_name = "vfolder_permissions")]
pub struct Model {
    /// The folder (`vfolders.id`).
    #[sea_orm(primary_key, auto_increment = false)]
    pub vfolder: Uuid,
    /// The user it is shared with (`users.uuid`).
    #[sea_orm(primary_key, auto_increment = false)]
    pub user: Uuid,
    /// `ro`, `rw` or `wd`.
    pub permission: Wire<MountPermission>,
}

/// Relations of `vfolder_permissions` (none is navigated from here).
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

impl FillDefaults for ActiveModel {
    fn fill_defaults(&mut self, _now: DateTimeUtc) {
        or_set(&mut self.permission, || Wire(MountPermission::ReadOnly));
    }
}
