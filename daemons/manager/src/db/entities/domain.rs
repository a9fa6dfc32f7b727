//! `domains`: the top of the organisation tree; users and groups belong to one domain.

use sea_orm::entity::prelude::*;
use serde::Serialize;

use super::{empty_object, or_set, FillDefaults};
use crate::db::types::{JsonOf, Slots, StringList};

/// A row of `domains`.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel, Serialize)]
#[sea_orm(table_name = "domains")]
pub struct Model {
    /// The domain's name (primary key), e.g. `default`.
    #[sea_orm(primary_key, auto_increment = false)]
    pub name: String,
    /// Free text.
    pub description: Option<String>,
    /// Whether the domain may be used.
    pub is_active: bool,
    /// When the row was created.
    pub created_at: DateTimeUtc,
    /// When the row was last changed.
    pub modified_at: DateTimeUtc,
    /// The domain's resource limit (missing slots are unlimited).
    pub total_resource_slots: Slots,
    /// Storage hosts the domain may use, with the permissions on each.
    pub allowed_vfolder_hosts: Json,
    /// Registries the domain may pull images from.
    pub allowed_docker_registries: StringList,
    /// An identifier in an external system.
    pub integration_id: Option<String>,
}

/// Relations of `domains` (none is navigated from here).
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

impl FillDefaults for ActiveModel {
    fn fill_defaults(&mut self, now: DateTimeUtc) {
        or_set(&mut self.is_active, || true);
        or_set(&mut self.created_at, || now);
        or_set(&mut self.modified_at, || now);
        or_set(&mut self.total_resource_slots, Default::default);
        or_set(&mut self.allowed_vfolder_hosts, empty_object);
        or_set(&mut self.allowed_docker_registries, || JsonOf(Vec::new()));
    }
}
