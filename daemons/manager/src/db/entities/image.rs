//! `images`: the kernel images the manager knows, per architecture, with the labels and
//! resource limits read from them.

use sea_orm::entity::prelude::*;
use serde::Serialize;

use super::{empty_object, or_set, FillDefaults};
use crate::db::types::{ImageType, Wire};

/// A row of `images`.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel, Serialize)]
#[sea_orm(table_name = "images")]
pub struct Model {
    /// The row's id (primary key).
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// The canonical reference, e.g. `cr.backend.ai/stable/python:3.11`; unique with the
    /// architecture.
    pub name: String,
    /// The path without the registry, e.g. `stable/python`.
    pub image: String,
    /// The registry project, e.g. `stable`.
    pub project: Option<String>,
    /// The tag, e.g. `3.11`.
    pub tag: Option<String>,
    /// The registry, e.g. `cr.backend.ai`.
    pub registry: String,
    /// The architecture, e.g. `x86_64`.
    pub architecture: String,
    /// The image configuration's digest.
    pub config_digest: String,
    /// The image's size in bytes.
    pub size_bytes: i64,
    /// `compute`, `system` or `service`.
    #[sea_orm(column_name = "type")]
    pub r#type: Wire<ImageType>,
    /// Accelerators the image supports, comma-separated.
    pub accelerators: Option<String>,
    /// The image's labels (`ai.backend.*`).
    pub labels: Json,
    /// Per-slot limits: `{"cpu": {"min": "1", "max": null}, …}`.
    pub resources: Json,
    /// Whether the image exists only on agents, not in a registry.
    pub is_local: bool,
    /// When the row was created.
    pub created_at: DateTimeUtc,
}

/// Relations of `images` (none is navigated from here).
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

impl FillDefaults for ActiveModel {
    fn fill_defaults(&mut self, now: DateTimeUtc) {
        or_set(&mut self.id, Uuid::new_v4);
        or_set(&mut self.architecture, || "x86_64".to_string());
        or_set(&mut self.config_digest, String::new);
        or_set(&mut self.size_bytes, || 0);
        or_set(&mut self.r#type, Default::default);
        or_set(&mut self.labels, empty_object);
        or_set(&mut self.resources, empty_object);
        or_set(&mut self.is_local, || false);
        or_set(&mut self.created_at, || now);
    }
}
