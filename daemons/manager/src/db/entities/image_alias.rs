//! `image_aliases`: short names for images (`python` → `cr.backend.ai/stable/python:3.11`).

use sea_orm::entity::prelude::*;
use serde::Serialize;

use super::{or_set, FillDefaults};

/// A row of `image_aliases`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize)]
#[sea_orm(table_name = "image_aliases")]
pub struct Model {
    /// The row's id (primary key).
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// The alias (unique).
    pub alias: String,
    /// The image it names (`images.id`).
    pub image: Uuid,
}

/// Relations of `image_aliases` (none is navigated from here).
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

impl FillDefaults for ActiveModel {
    fn fill_defaults(&mut self, _now: DateTimeUtc) {
        or_set(&mut self.id, Uuid::new_v4);
    }
}
