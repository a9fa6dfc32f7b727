//! `vfolders`: virtual folders (persistent storage), owned by a user or a group.

use bai_core::MountPermission;
use sea_orm::entity::prelude::*;
use serde::Serialize;

use super::{or_set, FillDefaults};
use crate::db::types::{VFolderOwnershipType, VFolderStatus, VFolderUsageMode, Wire};

/// A row of `vfolders`.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel, Serialize)]
#[sea_orm(table_name = "vfolders")]
pub struct Model {
    /// The folder's id (primary key).
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// The storage host, e.g. `local:volume1`.
    pub host: String,
    /// The quota scope on the storage, e.g. `user:<uuid>`.
    pub quota_scope_id: Option<String>,
    /// The name, unique among the owner's folders.
    pub name: String,
    /// `general`, `model` or `data`.
    pub usage_mode: Wire<VFolderUsageMode>,
    /// What the owner may do: `ro`, `rw` or `wd`.
    pub permission: Wire<MountPermission>,
    /// The most files it may hold (0: unlimited).
    pub max_files: i32,
    /// The quota in bytes (none: unlimited).
    pub max_size: Option<i64>,
    /// How many files it holds.
    pub num_files: i32,
    /// How many bytes it holds.
    pub cur_size: i64,
    /// When the row was created.
    pub created_at: DateTimeUtc,
    /// When it was last mounted.
    pub last_used: Option<DateTimeUtc>,
    /// The creator's e-mail address.
    pub creator: Option<String>,
    /// A host path for unmanaged folders.
    pub unmanaged_path: Option<String>,
    /// `user` or `group`.
    pub ownership_type: Wire<VFolderOwnershipType>,
    /// The owning user (`users.uuid`), for user folders.
    pub user: Option<Uuid>,
    /// The owning group (`groups.id`), for group folders.
    pub group: Option<Uuid>,
    /// Whether others may clone it.
    pub cloneable: bool,
    /// `ready`, `performing`, `delete-pending`, ….
    pub status: Wire<VFolderStatus>,
}

/// Relations of `vfolders` (none is navigated from here).
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

impl FillDefaults for ActiveModel {
    fn fill_defaults(&mut self, now: DateTimeUtc) {
        or_set(&mut self.id, Uuid::new_v4);
        or_set(&mut self.usage_mode, Default::default);
        or_set(&mut self.permission, Default::default);
        or_set(&mut self.max_files, || 0);
        or_set(&mut self.num_files, || 0);
        or_set(&mut self.cur_size, || 0);
        or_set(&mut self.created_at, || now);
        or_set(&mut self.ownership_type, Default::default);
        or_set(&mut self.cloneable, || false);
        or_set(&mut self.status, Default::default);
    }
}
