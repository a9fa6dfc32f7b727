//! `images`: rows written by image scans.

use sea_orm::{ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter};
use serde_json::Value;

use super::insert_new;
use crate::db::entities::image;
use crate::db::{DbError, Result};

/// What a scan found about one image (one tag on one architecture).
#[derive(Debug, Clone, PartialEq)]
pub struct ScannedImage {
    /// The canonical reference, e.g. `docker.io/bai/python:3.11`.
    pub name: String,
    /// The path without the registry, e.g. `bai/python`.
    pub image: String,
    /// The registry project.
    pub project: Option<String>,
    /// The tag.
    pub tag: String,
    /// The registry.
    pub registry: String,
    /// The normalised architecture (`x86_64`, `aarch64`).
    pub architecture: String,
    /// The engine's image id or the manifest's config digest.
    pub config_digest: String,
    /// The size in bytes.
    pub size_bytes: i64,
    /// The labels.
    pub labels: Value,
    /// Per-slot limits read from the labels.
    pub resources: Value,
    /// Found on an agent rather than in a registry.
    pub is_local: bool,
}

/// What [`upsert_image`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upserted {
    /// A new row.
    Added,
    /// An existing row changed.
    Updated,
    /// The row already said all of it.
    Unchanged,
}

/// Records a scanned image: a new row for a new (name, architecture), else the existing row
/// brought up to date. A registry's scan (`is_local: false`) also claims a row an agent
/// reported first (its `registry` and `is_local`); an agent's scan never takes a registry's
/// row back.
pub async fn upsert_image(db: &impl ConnectionTrait, scanned: &ScannedImage) -> Result<Upserted> {
    let find = || {
        image::Entity::find()
            .filter(image::Column::Name.eq(&scanned.name))
            .filter(image::Column::Architecture.eq(&scanned.architecture))
            .one(db)
    };
    let row = match find().await? {
        Some(row) => row,
        None => {
            let row = image::ActiveModel {
                name: Set(scanned.name.clone()),
                image: Set(scanned.image.clone()),
                project: Set(scanned.project.clone()),
                tag: Set(Some(scanned.tag.clone())),
                registry: Set(scanned.registry.clone()),
                architecture: Set(scanned.architecture.clone()),
                config_digest: Set(scanned.config_digest.clone()),
                size_bytes: Set(scanned.size_bytes),
                labels: Set(scanned.labels.clone()),
                resources: Set(scanned.resources.clone()),
                is_local: Set(scanned.is_local),
                ..Default::default()
            };
            match insert_new(db, row, format!("image {} ({})", scanned.name, scanned.architecture)).await {
                Ok(_) => return Ok(Upserted::Added),
                // Another agent's scan added it meanwhile (agents register at once): that row
                // is brought up to date instead.
                Err(e @ DbError::Conflict { .. }) => find().await?.ok_or(e)?,
                Err(e) => return Err(e),
            }
        }
    };
    let claim = !scanned.is_local && (row.is_local || row.registry != scanned.registry);
    if row.config_digest == scanned.config_digest
        && row.size_bytes == scanned.size_bytes
        && row.labels == scanned.labels
        && row.resources == scanned.resources
        && !claim
    {
        return Ok(Upserted::Unchanged);
    }
    let mut active: image::ActiveModel = row.into();
    if claim {
        active.registry = Set(scanned.registry.clone());
        active.is_local = Set(false);
        active.project = Set(scanned.project.clone());
        active.image = Set(scanned.image.clone());
    }
    active.config_digest = Set(scanned.config_digest.clone());
    active.size_bytes = Set(scanned.size_bytes);
    active.labels = Set(scanned.labels.clone());
    active.resources = Set(scanned.resources.clone());
    active.update(db).await?;
    Ok(Upserted::Updated)
}

/// The images named `name` (one per architecture), by architecture.
pub async fn images_named(db: &impl ConnectionTrait, name: &str) -> Result<Vec<image::Model>> {
    use sea_orm::QueryOrder;
    Ok(image::Entity::find()
        .filter(image::Column::Name.eq(name))
        .order_by_asc(image::Column::Architecture)
        .all(db)
        .await?)
}

/// The alias `alias`, if it exists.
pub async fn get_image_alias(
    db: &impl ConnectionTrait,
    alias: &str,
) -> Result<Option<crate::db::entities::image_alias::Model>> {
    use crate::db::entities::image_alias;
    Ok(image_alias::Entity::find().filter(image_alias::Column::Alias.eq(alias)).one(db).await?)
}

/// Removes the alias `alias`; whether it existed.
pub async fn delete_image_alias(db: &impl ConnectionTrait, alias: &str) -> Result<bool> {
    use crate::db::entities::image_alias;
    let deleted = image_alias::Entity::delete_many().filter(image_alias::Column::Alias.eq(alias)).exec(db).await?;
    Ok(deleted.rows_affected > 0)
}
