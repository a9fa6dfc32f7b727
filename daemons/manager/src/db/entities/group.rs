//! `groups`: projects (the original's table keeps the old name). Sessions and group-owned
//! vfolders belong to one group.

use sea_orm::entity::prelude::*;
use serde::Serialize;

use super::{empty_object, or_set, FillDefaults};
use crate::db::types::{GroupType, Slots, Wire};

/// A row of `groups`.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel, Serialize)]
#[sea_orm(table_name = "groups")]
pub struct Model {
    /// The group's id (primary key).
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// The name, unique within the domain.
    pub name: String,
    /// Free text.
    pub description: Option<String>,
    /// Whether the group may be used.
    pub is_active: bool,
    /// When the row was created.
    pub created_at: DateTimeUtc,
    /// When the row was last changed.
    pub modified_at: DateTimeUtc,
    /// An identifier in an external system.
    pub integration_id: Option<String>,
    /// The domain the group belongs to.
    pub domain_name: String,
    /// The group's resource limit (missing slots are unlimited).
    pub total_resource_slots: Slots,
    /// Storage hosts the group may use, with the permissions on each.
    pub allowed_vfolder_hosts: Json,
    /// The project resource policy (`project_resource_policies.name`).
    pub resource_policy: String,
    /// `general` or `model-store`.
    #[sea_orm(column_name = "type")]
    pub r#type: Wire<GroupType>,
}

/// Relations of `groups` (none is navigated from here).
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

impl FillDefaults for ActiveModel {
    fn fill_defaults(&mut self, now: DateTimeUtc) {
        or_set(&mut self.id, Uuid::new_v4);
        or_set(&mut self.is_active, || true);
        or_set(&mut self.created_at, || now);
        or_set(&mut self.modified_at, || now);
        or_set(&mut self.total_resource_slots, Default::default);
        or_set(&mut self.allowed_vfolder_hosts, empty_object);
        or_set(&mut self.resource_policy, || "default".to_string());
        or_set(&mut self.r#type, Default::default);
    }
}
