//! Resource policies (keypair, user, project), resource presets and images.

use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder};

use super::{insert_new, shown};
use crate::db::entities::{
    image, image_alias, keypair_resource_policy, project_resource_policy, resource_preset, user_resource_policy,
};
use crate::db::Result;

/// Creates a keypair resource policy; a duplicate name is
/// [`DbError::Conflict`](crate::db::DbError::Conflict).
pub async fn create_keypair_resource_policy(
    db: &impl ConnectionTrait,
    row: keypair_resource_policy::ActiveModel,
) -> Result<keypair_resource_policy::Model> {
    let what = format!("keypair resource policy {}", shown(&row.name));
    insert_new(db, row, what).await
}

/// The keypair resource policy with this name.
pub async fn get_keypair_resource_policy(
    db: &impl ConnectionTrait,
    name: &str,
) -> Result<Option<keypair_resource_policy::Model>> {
    Ok(keypair_resource_policy::Entity::find_by_id(name).one(db).await?)
}

/// Every keypair resource policy, by name.
pub async fn list_keypair_resource_policies(db: &impl ConnectionTrait) -> Result<Vec<keypair_resource_policy::Model>> {
    Ok(keypair_resource_policy::Entity::find().order_by_asc(keypair_resource_policy::Column::Name).all(db).await?)
}

/// Creates a user resource policy; a duplicate name is
/// [`DbError::Conflict`](crate::db::DbError::Conflict).
pub async fn create_user_resource_policy(
    db: &impl ConnectionTrait,
    row: user_resource_policy::ActiveModel,
) -> Result<user_resource_policy::Model> {
    let what = format!("user resource policy {}", shown(&row.name));
    insert_new(db, row, what).await
}

/// The user resource policy with this name.
pub async fn get_user_resource_policy(
    db: &impl ConnectionTrait,
    name: &str,
) -> Result<Option<user_resource_policy::Model>> {
    Ok(user_resource_policy::Entity::find_by_id(name).one(db).await?)
}

/// Every user resource policy, by name.
pub async fn list_user_resource_policies(db: &impl ConnectionTrait) -> Result<Vec<user_resource_policy::Model>> {
    Ok(user_resource_policy::Entity::find().order_by_asc(user_resource_policy::Column::Name).all(db).await?)
}

/// Creates a project resource policy; a duplicate name is
/// [`DbError::Conflict`](crate::db::DbError::Conflict).
pub async fn create_project_resource_policy(
    db: &impl ConnectionTrait,
    row: project_resource_policy::ActiveModel,
) -> Result<project_resource_policy::Model> {
    let what = format!("project resource policy {}", shown(&row.name));
    insert_new(db, row, what).await
}

/// The project resource policy with this name.
pub async fn get_project_resource_policy(
    db: &impl ConnectionTrait,
    name: &str,
) -> Result<Option<project_resource_policy::Model>> {
    Ok(project_resource_policy::Entity::find_by_id(name).one(db).await?)
}

/// Every project resource policy, by name.
pub async fn list_project_resource_policies(db: &impl ConnectionTrait) -> Result<Vec<project_resource_policy::Model>> {
    Ok(project_resource_policy::Entity::find().order_by_asc(project_resource_policy::Column::Name).all(db).await?)
}

/// Creates a resource preset; a duplicate name is
/// [`DbError::Conflict`](crate::db::DbError::Conflict).
pub async fn create_resource_preset(
    db: &impl ConnectionTrait,
    row: resource_preset::ActiveModel,
) -> Result<resource_preset::Model> {
    let what = format!("resource preset {}", shown(&row.name));
    insert_new(db, row, what).await
}

/// The resource preset with this name.
pub async fn get_resource_preset(db: &impl ConnectionTrait, name: &str) -> Result<Option<resource_preset::Model>> {
    Ok(resource_preset::Entity::find_by_id(name).one(db).await?)
}

/// The resource presets, by name: with `Some(group)`, the global presets and those of that
/// scaling group; with `None`, every preset.
pub async fn list_resource_presets(
    db: &impl ConnectionTrait,
    scaling_group: Option<&str>,
) -> Result<Vec<resource_preset::Model>> {
    let mut query = resource_preset::Entity::find().order_by_asc(resource_preset::Column::Name);
    if let Some(scaling_group) = scaling_group {
        query = query.filter(
            resource_preset::Column::ScalingGroupName
                .is_null()
                .or(resource_preset::Column::ScalingGroupName.eq(scaling_group)),
        );
    }
    Ok(query.all(db).await?)
}

/// Creates an image row; a duplicate (name, architecture) is
/// [`DbError::Conflict`](crate::db::DbError::Conflict).
pub async fn create_image(db: &impl ConnectionTrait, row: image::ActiveModel) -> Result<image::Model> {
    let what = format!("image {} ({})", shown(&row.name), shown(&row.architecture));
    insert_new(db, row, what).await
}

/// The image with this canonical name and architecture, or behind this alias.
pub async fn find_image(
    db: &impl ConnectionTrait,
    name_or_alias: &str,
    architecture: &str,
) -> Result<Option<image::Model>> {
    let direct = image::Entity::find()
        .filter(image::Column::Name.eq(name_or_alias))
        .filter(image::Column::Architecture.eq(architecture))
        .one(db)
        .await?;
    if direct.is_some() {
        return Ok(direct);
    }
    let Some(alias) = image_alias::Entity::find().filter(image_alias::Column::Alias.eq(name_or_alias)).one(db).await?
    else {
        return Ok(None);
    };
    let Some(target) = image::Entity::find_by_id(alias.image).one(db).await? else {
        return Ok(None);
    };
    if target.architecture == architecture {
        return Ok(Some(target));
    }
    // The alias names one architecture's row; the same image may exist for others.
    Ok(image::Entity::find()
        .filter(image::Column::Name.eq(target.name))
        .filter(image::Column::Architecture.eq(architecture))
        .one(db)
        .await?)
}

/// Every image, by name and architecture.
pub async fn list_images(db: &impl ConnectionTrait) -> Result<Vec<image::Model>> {
    Ok(image::Entity::find()
        .order_by_asc(image::Column::Name)
        .order_by_asc(image::Column::Architecture)
        .all(db)
        .await?)
}

/// Names `image_id` with `alias`; an alias already in use is
/// [`DbError::Conflict`](crate::db::DbError::Conflict).
pub async fn create_image_alias(
    db: &impl ConnectionTrait,
    alias: &str,
    image_id: uuid::Uuid,
) -> Result<image_alias::Model> {
    let row = image_alias::ActiveModel {
        alias: sea_orm::ActiveValue::Set(alias.to_string()),
        image: sea_orm::ActiveValue::Set(image_id),
        ..Default::default()
    };
    insert_new(db, row, format!("image alias {alias}")).await
}
